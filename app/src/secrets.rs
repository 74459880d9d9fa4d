//! Where passphrases come from: env `MUSUBI_PASSPHRASE`, else `--passphrase-file`, else a
//! prompt on the terminal. New passphrases: env `MUSUBI_NEW_PASSPHRASE`, else
//! `--new-passphrase-file`, else a prompt asked twice.

use anyhow::{Context, Result, bail};
use musubi_engine::ExposeSecret;
use musubi_engine::store::SecretString;
use std::io::IsTerminal;
use std::path::Path;

fn from_file(path: &Path) -> Result<SecretString> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the passphrase file {}", path.display()))?;
    let line = text.lines().next().unwrap_or("").to_owned();
    if line.is_empty() {
        bail!("the passphrase file {} is empty", path.display());
    }
    Ok(SecretString::from(line))
}

fn prompt(question: &str) -> Result<SecretString> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "no passphrase given: set MUSUBI_PASSPHRASE or use --passphrase-file (no terminal to ask on)"
        );
    }
    let answer = rpassword::prompt_password(question).context("reading the passphrase")?;
    Ok(SecretString::from(answer))
}

/// The current passphrase.
pub fn current(file: Option<&Path>) -> Result<SecretString> {
    if let Ok(p) = std::env::var("MUSUBI_PASSPHRASE")
        && !p.is_empty()
    {
        return Ok(SecretString::from(p));
    }
    match file {
        Some(f) => from_file(f),
        None => prompt("パスフレーズ (passphrase): "),
    }
}

/// A new passphrase (`env_name` is `MUSUBI_PASSPHRASE` for `init`, `MUSUBI_NEW_PASSPHRASE`
/// when changing or recovering).
pub fn new(env_name: &str, file: Option<&Path>) -> Result<SecretString> {
    if let Ok(p) = std::env::var(env_name)
        && !p.is_empty()
    {
        return check_strength(SecretString::from(p));
    }
    if let Some(f) = file {
        return check_strength(from_file(f)?);
    }
    let first = prompt("新しいパスフレーズ (new passphrase): ")?;
    let second = prompt("もう一度 (again): ")?;
    if first.expose_secret() != second.expose_secret() {
        bail!("the two passphrases differ; nothing was changed");
    }
    check_strength(first)
}

fn check_strength(p: SecretString) -> Result<SecretString> {
    if p.expose_secret().chars().count() < 8 {
        bail!("the passphrase must be at least 8 characters long");
    }
    Ok(p)
}
