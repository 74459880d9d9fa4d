//! `musubi enroll FILE`: installs the enrollment file made by `musubi-relay enroll` (device
//! certificate and key, office CA, relay address) inside this device's encrypted store.
//!
//! The one-time code comes from env `MUSUBI_ENROLL_CODE`, else a prompt. The file is
//! opened and checked completely before the store is opened, and the store is written
//! only if the enrollment is for the store's office: a bad file, a wrong code or another
//! office's enrollment changes nothing (exit code 2).

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use musubi_engine::net::enroll::{self, MAX_ENROLLMENT_BYTES};
use musubi_engine::net::{NetError, Zeroizing};
use musubi_engine::store::Store;

use crate::cli::InputError;
use crate::secrets;

/// Arguments of `musubi enroll`.
#[derive(Args, Debug)]
pub struct EnrollArgs {
    /// The enrollment file from the office (`musubi-relay enroll --out FILE`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

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
    let bytes = read_file(&args.file)?;
    let code = code()?;
    let creds = enroll::open(&bytes, &code).map_err(|e| -> anyhow::Error {
        if e.is_bad_enrollment() {
            InputError(format!("{}: {e}; nothing was written", args.file.display())).into()
        } else {
            e.into()
        }
    })?;

    let pass = secrets::current(passphrase_file)?;
    let store = Store::open(data_dir, &pass)?;
    let store_office = store.info().office.clone();
    if store_office != creds.office {
        store.close()?;
        return Err(InputError(format!(
            "this enrollment is for office {} but this device's store belongs to office {store_office}; nothing was written",
            creds.office
        ))
        .into());
    }
    let previous = enroll::load_credentials(&store).or_else(|e| match e {
        // Damaged earlier credentials are simply replaced.
        NetError::DamagedCredentials { .. } => Ok(None),
        other => Err(other),
    })?;
    enroll::store_credentials(&store, &creds)?;
    store.close()?;
    if let Some(prev) = previous
        && prev.device_id != creds.device_id
    {
        eprintln!(
            "replaced the earlier enrollment (device id {})",
            prev.device_id
        );
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
