//! Exit codes of `musubi`, in one place: every command family returns typed errors and
//! this module alone decides the code. The table is printed by every `--help`, the man
//! pages and the README ("Exit codes").

use musubi_engine::EngineError;
use musubi_engine::card::{CardError, TransportError, VerifyError};
use musubi_engine::export::ExportError;
use musubi_engine::net::certx::EnrollFailure;
use musubi_engine::store::StoreError;
use musubi_engine::sync::bundle::BundleError;

use crate::common::InputError;

/// One exit code and what it means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// 0: done.
    Success = 0,
    /// 1: any other failure (for `sync` and `enroll`: relay unreachable, refused, …; try again).
    Failure = 1,
    /// 2: invalid input; nothing was written.
    Invalid = 2,
    /// 3: wrong passphrase, bundle passphrase or recovery identity; nothing was changed.
    WrongSecret = 3,
    /// 4: the store cannot be used (not initialised, quarantined, newer schema), or for
    /// `sync` the device is not enrolled.
    Unusable = 4,
    /// 5: the My Number card check failed (wrong PIN, locked, certificate, signature,
    /// corrupt card data, mismatch, evidence); nothing was written.
    CardFailed = 5,
    /// 6: no card reader, no card, card removed or in use.
    NoCard = 6,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The table shown by every `--help` and in the man pages (English + Japanese).
pub const HELP: &str = "\
Exit codes / 終了コード:
  0  success / 成功
  1  other failure (sync, enroll: relay unreachable or refused; try again) / その他の失敗
  2  invalid input, nothing written / 入力が不正（何も書き込んでいません）
  3  wrong passphrase, bundle passphrase or recovery identity, nothing changed / パスフレーズ等が違います
  4  store unusable (not initialised, quarantined, newer version) or, for sync, not enrolled / 保存領域を使えません
  5  My Number card check failed, nothing written / マイナンバーカードの確認に失敗
  6  no reader, no card, card removed or in use / カードリーダー・カードがありません";

/// The exit code of a failed command: the first error in the chain that has one.
pub fn of(err: &anyhow::Error) -> Exit {
    err.chain().find_map(cause).unwrap_or(Exit::Failure)
}

fn store(e: &StoreError) -> Exit {
    match e {
        StoreError::WrongPassphrase | StoreError::WrongRecoveryIdentity => Exit::WrongSecret,
        StoreError::NotInitialised { .. }
        | StoreError::Quarantined { .. }
        | StoreError::NewerSchema { .. }
        | StoreError::DatabaseMissing { .. } => Exit::Unusable,
        _ => Exit::Failure,
    }
}

fn cause(c: &(dyn std::error::Error + 'static)) -> Option<Exit> {
    if let Some(e) = c.downcast_ref::<EngineError>() {
        return Some(match e {
            EngineError::Invalid { .. } => Exit::Invalid,
            EngineError::Store(s) => store(s),
            _ => Exit::Failure,
        });
    }
    if let Some(s) = c.downcast_ref::<StoreError>() {
        return Some(store(s));
    }
    if c.downcast_ref::<InputError>().is_some() {
        return Some(Exit::Invalid);
    }
    if let Some(e) = c.downcast_ref::<BundleError>() {
        return Some(if e.is_wrong_passphrase() {
            Exit::WrongSecret
        } else if e.is_invalid_input() {
            Exit::Invalid
        } else {
            Exit::Failure
        });
    }
    if let Some(e) = c.downcast_ref::<ExportError>() {
        return Some(match e {
            ExportError::NotASurvey { .. }
            | ExportError::WrongKind { .. }
            | ExportError::Invalid { .. }
            | ExportError::Unencodable { .. } => Exit::Invalid,
            _ => Exit::Failure,
        });
    }
    if let Some(crate::card::CardFailed(e)) = c.downcast_ref::<crate::card::CardFailed>() {
        return Some(match e {
            VerifyError::Card(CardError::Transport(_)) => Exit::NoCard,
            _ => Exit::CardFailed,
        });
    }
    if c.downcast_ref::<TransportError>().is_some() {
        return Some(Exit::NoCard);
    }
    if c.downcast_ref::<CardError>().is_some()
        || c.downcast_ref::<crate::card::Mismatch>().is_some()
        || c.downcast_ref::<crate::card::EvidenceRefused>().is_some()
    {
        return Some(Exit::CardFailed);
    }
    if c.downcast_ref::<crate::sync::NotEnrolled>().is_some() {
        return Some(Exit::Unusable);
    }
    if let Some(crate::enroll::EnrollRefused(f)) = c.downcast_ref::<crate::enroll::EnrollRefused>()
    {
        // A file that can never be used is invalid input; anything else: try again.
        return Some(match f {
            EnrollFailure::AlreadyUsed
            | EnrollFailure::Unknown
            | EnrollFailure::Expired
            | EnrollFailure::Locked => Exit::Invalid,
            _ => Exit::Failure,
        });
    }
    None
}

/// True when the error is only that stdout was closed by the reader (`musubi doc export
/// ID | head`): not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
