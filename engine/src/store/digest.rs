//! The SQL functions behind the per-office catalog digest (migration 0007): triggers on
//! `docs` keep `office_digest` equal to [`catalog_digest`](crate::sync::catalog_digest) of
//! each office's documents, computed by the same Rust functions a session uses
//! ([`entry_digest`], [`xor_into`]), so the rule is written once.
//!
//! - `musubi_entry(id, heads)`: one document's part, [`entry_digest`] of its 16-byte id and
//!   packed heads;
//! - `musubi_xor(a, b)`: two 32-byte digests combined;
//! - `musubi_xor_all(x)`: the aggregate, for filling the table once at migration.
//!
//! They are registered on the store's connection before migrations run; a malformed
//! argument is an SQL error (the write is refused, nothing half-done), never a panic.

use rusqlite::Connection;
use rusqlite::functions::{Aggregate, Context, FunctionFlags};

use crate::ids::DocId;
use crate::sync::storage::unpack_heads;
use crate::sync::{entry_digest, xor_into};

/// A malformed argument of one of the functions.
#[derive(Debug, thiserror::Error)]
#[error("catalog digest: {0}")]
struct BadArgument(&'static str);

fn bad(what: &'static str) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(Box::new(BadArgument(what)))
}

/// A 32-byte digest argument.
fn digest_arg(ctx: &Context<'_>, i: usize) -> rusqlite::Result<[u8; 32]> {
    let bytes: Vec<u8> = ctx.get(i)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| bad("a digest is not 32 bytes"))
}

/// The part of the document whose id and packed heads are the arguments.
fn entry(ctx: &Context<'_>) -> rusqlite::Result<Vec<u8>> {
    let id: Vec<u8> = ctx.get(0)?;
    let id =
        <[u8; 16]>::try_from(id.as_slice()).map_err(|_| bad("a document id is not 16 bytes"))?;
    let heads: Vec<u8> = ctx.get(1)?;
    let heads = unpack_heads(&heads).ok_or_else(|| bad("stored heads are malformed"))?;
    Ok(entry_digest(DocId::from_bytes(id), &heads).to_vec())
}

fn xor(ctx: &Context<'_>) -> rusqlite::Result<Vec<u8>> {
    let mut a = digest_arg(ctx, 0)?;
    xor_into(&mut a, &digest_arg(ctx, 1)?);
    Ok(a.to_vec())
}

/// `musubi_xor_all`: the XOR of every row's digest.
struct XorAll;

impl Aggregate<[u8; 32], Vec<u8>> for XorAll {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<[u8; 32]> {
        Ok([0; 32])
    }

    fn step(&self, ctx: &mut Context<'_>, acc: &mut [u8; 32]) -> rusqlite::Result<()> {
        xor_into(acc, &digest_arg(ctx, 0)?);
        Ok(())
    }

    fn finalize(&self, _: &mut Context<'_>, acc: Option<[u8; 32]>) -> rusqlite::Result<Vec<u8>> {
        Ok(acc.unwrap_or([0; 32]).to_vec())
    }
}

/// Registers the functions on `conn`.
pub(super) fn register(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("musubi_entry", 2, flags, entry)?;
    conn.create_scalar_function("musubi_xor", 2, flags, xor)?;
    conn.create_aggregate_function("musubi_xor_all", 1, flags, XorAll)
}
