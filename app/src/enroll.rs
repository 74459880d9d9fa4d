//! `musubi enroll FILE`: redeems the enrollment file made by `musubi-relay enroll` at the
//! office relay and keeps the resulting credentials inside this device's encrypted store.
//!
//! The one-time code comes from env `MUSUBI_ENROLL_CODE`, else a prompt. The file is
//! opened and checked completely before the store is opened; an enrollment for another
//! office is refused before anything is written (exit code 2). Then this device makes its
//! own key pair (kept in the store, so a retry after a lost answer uses the same key),
//! connects to the relay (the office CA from the file pinned) and redeems the enrollment
//! once: the relay issues the certificate for this key. A file and code already used by
//! another tablet, expired or locked are refused with a Japanese explanation (exit 2);
//! a relay that cannot be reached is exit 1 and the command can simply be run again.
//!
//! Re-enrolling (the office ran `musubi-relay enroll --renew`, e.g. after the certificate
//! expired) replaces only the credentials: documents and unsent changes stay.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use musubi_engine::net::certx::{self, EnrollFailure};
use musubi_engine::net::enroll::{self, MAX_ENROLLMENT_BYTES};
use musubi_engine::net::quic::TransportSettings;
use musubi_engine::net::{NetError, Zeroizing, tls};
use musubi_engine::store::Store;

use crate::common::InputError;
use crate::secrets;

/// Arguments of `musubi enroll`.
#[derive(Args, Debug)]
pub struct EnrollArgs {
    /// The enrollment file from the office (`musubi-relay enroll --out FILE`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Relay address HOST:PORT (default: the one in the enrollment file).
    #[arg(long, value_name = "HOST:PORT")]
    pub relay: Option<String>,
}

/// The relay refused the enrollment, or it could not be completed (the reason is the
/// source). Shown in Japanese first.
#[derive(Debug, thiserror::Error)]
#[error("登録できませんでした：{ja} ({0})", ja = .0.japanese())]
pub struct EnrollRefused(pub EnrollFailure);

/// Environment variable holding the one-time enrollment code.
pub const CODE_ENV: &str = "MUSUBI_ENROLL_CODE";

fn read_file(path: &Path) -> Result<Vec<u8>> {
    let name = path.display();
    let f = std::fs::File::open(path)
        .map_err(|e| InputError(format!("{name}: cannot read the enrollment file: {e}")))?;
    let mut bytes = Vec::new();
    f.take(MAX_ENROLLMENT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| InputError(format!("{name}: cannot read the enrollment file: {e}")))?;
    Ok(bytes)
}

fn code() -> Result<Zeroizing<String>> {
    if let Ok(c) = std::env::var(CODE_ENV)
        && !c.trim().is_empty()
    {
        return Ok(Zeroizing::new(c));
    }
    if !std::io::stdin().is_terminal() {
        return Err(InputError(format!(
            "no enrollment code given: set {CODE_ENV} (no terminal to ask on)"
        ))
        .into());
    }
    let answer =
        rpassword::prompt_password("登録コード (enrollment code, XXXXX-XXXXX-XXXXX-XXXXX): ")
            .context("reading the enrollment code")?;
    Ok(Zeroizing::new(answer))
}

/// Runs `musubi enroll` on the store in `data_dir`.
pub fn run(data_dir: &Path, passphrase_file: Option<&Path>, args: EnrollArgs) -> Result<()> {
    if let Some(addr) = &args.relay {
        tls::split_host_port(addr).map_err(|e| InputError(format!("--relay: {e}")))?;
    }
    let bytes = read_file(&args.file)?;
    let code = code()?;
    let ticket = enroll::open(&bytes, &code).map_err(|e| -> anyhow::Error {
        if e.is_bad_enrollment() {
            InputError(format!("{}: {e}; nothing was written", args.file.display())).into()
        } else {
            e.into()
        }
    })?;

    let pass = secrets::current(passphrase_file)?;
    let store = Store::open(data_dir, &pass)?;
    let store_office = store.info().office.clone();
    if store_office != ticket.office {
        store.close()?;
        return Err(InputError(format!(
            "this enrollment is for office {} but this device's store belongs to office {store_office}; nothing was written",
            ticket.office
        ))
        .into());
    }
    let previous = enroll::load_credentials(&store).or_else(|e| match e {
        // Damaged earlier credentials are simply replaced.
        NetError::DamagedCredentials { .. } => Ok(None),
        other => Err(other),
    })?;
    let redeemed = redeem(&store, &ticket, args.relay.as_deref());
    let creds = match redeemed {
        Ok(c) => c,
        Err(e) => {
            store.close()?;
            return Err(e);
        }
    };
    enroll::complete_enrollment(&store, &creds)?;
    store.close()?;
    if let Some(prev) = previous {
        if prev.device_id == creds.device_id {
            eprintln!(
                "証明書を更新しました (re-enrolled: new key and certificate; documents and unsent changes are kept)"
            );
        } else {
            eprintln!(
                "replaced the earlier enrollment (device id {})",
                prev.device_id
            );
        }
    }
    outln!(
        "登録しました (enrolled): device {} (id {}), office {}, relay {}",
        creds.device_name,
        creds.device_id,
        creds.office,
        creds.relay_address
    );
    Ok(())
}

/// Makes (or takes the kept) key pair and redeems the enrollment at the relay.
fn redeem(
    store: &Store,
    ticket: &enroll::EnrollmentTicket,
    relay: Option<&str>,
) -> Result<musubi_engine::net::tls::DeviceCredentials> {
    let key = enroll::enrollment_key(store, &ticket.device_id)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the network runtime")?;
    let result = runtime.block_on(certx::redeem(
        ticket,
        &key,
        relay,
        &TransportSettings::default(),
    ));
    drop(runtime);
    result.map_err(|f| EnrollRefused(f).into())
}
