//! `musubi bundle export` / `musubi bundle import`: encrypted sync bundles carried on a
//! USB stick when there is no network at all.
//!
//! The bundle passphrase comes from env `MUSUBI_BUNDLE_PASSPHRASE`, else a prompt (asked
//! twice when exporting). An import reads, decrypts and checks the whole bundle before
//! the store is even opened, checks every document against the rules a relay applies
//! (`admit::rules::Rules`; one refused document refuses the bundle), then writes
//! everything new in one transaction.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use musubi_engine::Engine;
use musubi_engine::ExposeSecret;
use musubi_engine::admit::rules::Rules;
use musubi_engine::card::roots::TrustStore;
use musubi_engine::store::SecretString;
use musubi_engine::sync::admission::Uploader;
use musubi_engine::sync::bundle::{self, ImportReport, Manifest};

use crate::common::{InputError, now_ms};

/// Env variable holding the bundle passphrase.
const PASSPHRASE_ENV: &str = "MUSUBI_BUNDLE_PASSPHRASE";

#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Write every document of this device's office into one encrypted bundle file
    /// (passphrase from MUSUBI_BUNDLE_PASSPHRASE or a prompt).
    Export {
        /// Where to write the bundle, e.g. a file on a USB stick.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// Replace FILE if it already exists.
        #[arg(long)]
        force: bool,
        /// scrypt cost as log2(N), for tests only (default: about one second of work).
        #[arg(long, hide = true, env = "MUSUBI_KDF_WORK_FACTOR")]
        kdf_work_factor: Option<u8>,
    },
    /// Merge a bundle into this device's store: all of it or, if anything is wrong with
    /// it, nothing (passphrase from MUSUBI_BUNDLE_PASSPHRASE or a prompt).
    Import {
        /// The bundle file.
        file: PathBuf,
        /// Machine-readable summary.
        #[arg(long)]
        json: bool,
        /// Extra trusted root (PEM) for the card evidence of registrations, e.g.
        /// musubi-vcard's DIR/trust-anchor.pem (tests). Repeatable.
        #[arg(long, value_name = "FILE")]
        trust_anchor: Vec<PathBuf>,
    },
}

fn prompt(question: &str) -> Result<SecretString> {
    if !std::io::stdin().is_terminal() {
        return Err(InputError(format!(
            "no bundle passphrase given: set {PASSPHRASE_ENV} (there is no terminal to ask on)"
        ))
        .into());
    }
    let answer = rpassword::prompt_password(question).context("reading the bundle passphrase")?;
    if answer.is_empty() {
        return Err(InputError("the bundle passphrase is empty".to_owned()).into());
    }
    Ok(SecretString::from(answer))
}

fn from_env() -> Option<SecretString> {
    std::env::var(PASSPHRASE_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .map(SecretString::from)
}

/// The passphrase of an existing bundle.
fn passphrase() -> Result<SecretString> {
    match from_env() {
        Some(p) => Ok(p),
        None => prompt("バンドルのパスフレーズ (bundle passphrase): "),
    }
}

/// The passphrase for a new bundle (asked twice on a terminal).
fn new_passphrase() -> Result<SecretString> {
    if let Some(p) = from_env() {
        return Ok(p);
    }
    let first = prompt("バンドルの新しいパスフレーズ (new bundle passphrase): ")?;
    let second = prompt("もう一度 (again): ")?;
    if first.expose_secret() != second.expose_secret() {
        return Err(InputError(
            "the two bundle passphrases differ; nothing was written".to_owned(),
        )
        .into());
    }
    Ok(first)
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|| "(unknown time)".to_owned())
}

/// Runs a bundle subcommand; `open` opens this device's store (asking for its
/// passphrase), called only once the bundle side is ready.
pub fn run(cmd: BundleCommand, open: impl FnOnce() -> Result<Engine>) -> Result<()> {
    match cmd {
        BundleCommand::Export {
            to,
            force,
            kdf_work_factor,
        } => export(&to, force, kdf_work_factor, open),
        BundleCommand::Import {
            file,
            json,
            trust_anchor,
        } => import(&file, json, &trust_anchor, open),
    }
}

fn export(
    to: &Path,
    force: bool,
    work_factor: Option<u8>,
    open: impl FnOnce() -> Result<Engine>,
) -> Result<()> {
    if !force && to.exists() {
        return Err(InputError(format!(
            "{} already exists; choose another file or add --force to replace it",
            to.display()
        ))
        .into());
    }
    let engine = open()?;
    let pass = new_passphrase()?;
    let office = engine.store().info().office.clone();
    let summary = bundle::write_file(
        engine.store(),
        std::slice::from_ref(&office),
        now_ms(),
        &pass,
        work_factor,
        to,
        force,
    )
    .with_context(|| format!("writing the bundle {}", to.display()))?;
    engine.close()?;
    eprintln!(
        "バンドルを書き出しました (bundle written): {} documents of office {} in {}",
        summary.docs,
        office,
        to.display()
    );
    eprintln!(
        "next: on the other tablet run `musubi bundle import FILE`, at the office `musubi-relay bundle import --dir DIR FILE`, with the same bundle passphrase"
    );
    Ok(())
}

/// The rules of a receiving store: the bundled J-LIS roots plus `--trust-anchor` files.
fn rules(anchors: &[PathBuf]) -> Result<Rules> {
    let mut trust = TrustStore::bundled().context("loading the bundled J-LIS roots")?;
    for f in anchors {
        let text = std::fs::read_to_string(f)
            .map_err(|e| InputError(format!("--trust-anchor {}: cannot read: {e}", f.display())))?;
        trust
            .add_pem(&text)
            .map_err(|e| InputError(format!("--trust-anchor {}: {e}", f.display())))?;
    }
    Ok(Rules::new(trust))
}

fn import(
    file: &Path,
    json: bool,
    anchors: &[PathBuf],
    open: impl FnOnce() -> Result<Engine>,
) -> Result<()> {
    let rules = rules(anchors)?;
    // Decrypt and check the whole bundle before the store is touched.
    let pass = passphrase()?;
    let parsed = bundle::read_file(file, &pass)
        .with_context(|| format!("reading the bundle {}", file.display()))?;
    let engine = open()?;
    let office = engine.store().info().office.clone();
    // Every document must pass the rules a relay applies (the rules this tablet applies
    // to its own writes, and card evidence for a new registration).
    let report = bundle::import(
        engine.store(),
        &parsed,
        std::slice::from_ref(&office),
        &rules,
        &|_| Uploader::TabletBundle,
    )
    .with_context(|| format!("importing the bundle {}", file.display()))?;
    engine.close()?;
    print_report(&parsed.manifest, &report, json)
}

fn print_report(m: &Manifest, r: &ImportReport, json: bool) -> Result<()> {
    if json {
        let v = serde_json::json!({
            "store": m.store,
            "offices": m.offices,
            "created_ms": m.created_ms,
            "documents": m.docs,
            "new": r.new,
            "updated": r.updated,
            "unchanged": r.unchanged,
            "other_office": r.other_office,
            "conflicted": r.conflicted.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!(
        "bundle of office {} written {} by store {}: {} documents",
        m.offices.join(", "),
        when(m.created_ms),
        m.store,
        m.docs
    );
    outln!(
        "新規 (new) {}, 更新 (updated) {}, 変更なし (unchanged) {}",
        r.new,
        r.updated,
        r.unchanged
    );
    if r.other_office > 0 {
        outln!(
            "{} documents of other offices were not imported",
            r.other_office
        );
    }
    if !r.conflicted.is_empty() {
        outln!(
            "競合 (conflicts) in {} documents — see `musubi doc conflicts ID`:",
            r.conflicted.len()
        );
        for id in &r.conflicted {
            outln!("  {id}");
        }
    }
    Ok(())
}
