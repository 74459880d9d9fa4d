//! `musubi-relay bundle import`: merges a sync bundle written by `musubi bundle export`
//! (carried on a USB stick) into the relay's store.
//!
//! The bundle passphrase comes from env `MUSUBI_BUNDLE_PASSPHRASE`, else a prompt. The
//! whole bundle is decrypted and checked before the store is opened; documents of offices
//! this relay does not serve are left out and counted; every other document must pass the
//! rules of a relay session (`admit::rules::Rules`: the document rules, and the card
//! evidence of a new registration, whose statement must name a device enrolled for its
//! office), or the whole bundle is refused; everything is written in one transaction, so
//! devices receive it at their next sync. Exit codes: 2 refused bundle
//! (nothing written), 3 wrong bundle passphrase.

use std::collections::HashMap;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use musubi_engine::store::SecretString;
use musubi_engine::sync::admission::Uploader;
use musubi_engine::sync::bundle::{self, BundleError};
use musubi_relay::RelayDir;

/// Env variable holding the bundle passphrase.
const PASSPHRASE_ENV: &str = "MUSUBI_BUNDLE_PASSPHRASE";

#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Merge a bundle from `musubi bundle export` into the relay store: all of it or,
    /// if anything is wrong with it, nothing (passphrase from MUSUBI_BUNDLE_PASSPHRASE
    /// or a prompt).
    Import {
        /// The relay directory.
        #[arg(long, env = "MUSUBI_RELAY_DIR", value_name = "DIR")]
        dir: PathBuf,
        /// The bundle file.
        file: PathBuf,
        /// Machine-readable summary.
        #[arg(long)]
        json: bool,
        /// TEST RELAYS ONLY: also trust this root (PEM) for My Number card evidence, as
        /// `serve --test-trust-anchor`. Without it only the bundled J-LIS roots count.
        #[arg(long, value_name = "FILE")]
        test_trust_anchor: Option<PathBuf>,
    },
}

/// The exit code for a bundle error in an error chain: 3 wrong bundle passphrase, 2
/// refused bundle (nothing written), 1 anything else; `None` if not a bundle error.
pub fn exit_code(cause: &(dyn std::error::Error + 'static)) -> Option<u8> {
    let e = cause.downcast_ref::<BundleError>()?;
    Some(if e.is_wrong_passphrase() {
        3
    } else if e.is_invalid_input() {
        2
    } else {
        1
    })
}

fn passphrase() -> Result<SecretString> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV)
        && !p.is_empty()
    {
        return Ok(SecretString::from(p));
    }
    if !std::io::stdin().is_terminal() {
        return Err(BundleError::BadPassphrase(
            "was not given: set MUSUBI_BUNDLE_PASSPHRASE (there is no terminal to ask on)",
        )
        .into());
    }
    let answer = rpassword::prompt_password("bundle passphrase: ")
        .context("reading the bundle passphrase")?;
    if answer.is_empty() {
        return Err(BundleError::BadPassphrase("is empty").into());
    }
    Ok(SecretString::from(answer))
}

/// Runs a bundle subcommand.
pub fn run(cmd: BundleCommand) -> Result<()> {
    match cmd {
        BundleCommand::Import {
            dir,
            file,
            json,
            test_trust_anchor,
        } => import(&dir, &file, json, test_trust_anchor.as_deref()),
    }
}

fn import(dir: &Path, file: &Path, json: bool, test_trust_anchor: Option<&Path>) -> Result<()> {
    let relay = RelayDir::open(dir)?;
    // The rules of a relay session: every document rule, and card evidence for a new
    // registration checked against this relay's roots.
    let rules = musubi_relay::serve::admission_rules(test_trust_anchor)?;
    let pass = passphrase()?;
    let parsed = bundle::read_file(file, &pass)
        .with_context(|| format!("reading the bundle {}", file.display()))?;
    let offices = relay.offices_served()?;
    // A bundle carries no device identity: who may have written a registration's card
    // statement are the devices enrolled (and not revoked) for the document's office.
    let mut enrolled: HashMap<String, Vec<String>> = HashMap::new();
    for d in relay.devices()?.devices.iter().filter(|d| d.is_active()) {
        enrolled
            .entry(d.office.clone())
            .or_default()
            .push(d.id.clone());
    }
    let uploader = |office: &str| {
        Uploader::Bundle(enrolled.get(office).map(Vec::as_slice).unwrap_or_default())
    };
    let store = relay.open_relay_store()?;
    let report = bundle::import(&*store.sync(), &parsed, &offices, &rules, &uploader)
        .with_context(|| format!("importing the bundle {}", file.display()))?;
    store.close()?;
    let m = &parsed.manifest;
    tracing::info!(
        store = %m.store,
        documents = m.docs,
        new = report.new,
        updated = report.updated,
        unchanged = report.unchanged,
        other_office = report.other_office,
        conflicted = report.conflicted.len(),
        "bundle imported"
    );
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({
            "store": m.store,
            "offices": m.offices,
            "created_ms": m.created_ms,
            "documents": m.docs,
            "new": report.new,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "other_office": report.other_office,
            "conflicted": report.conflicted.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "bundle of office {} from store {}: {} documents — new {}, updated {}, unchanged {}",
        m.offices.join(", "),
        m.store,
        m.docs,
        report.new,
        report.updated,
        report.unchanged
    )?;
    if report.other_office > 0 {
        writeln!(
            out,
            "{} documents of offices this relay does not serve were not imported",
            report.other_office
        )?;
    }
    if !report.conflicted.is_empty() {
        writeln!(
            out,
            "{} documents now hold conflicting values; devices show them with `musubi doc conflicts ID`",
            report.conflicted.len()
        )?;
    }
    Ok(())
}
