//! Engine integration tests: the schema against an independent table, documents over
//! automerge (round trip, edits, conflicts, history) and property tests.

#![allow(clippy::unwrap_used)]

mod admin_fields;
mod bundle;
mod care;
mod doc_limits;
mod docs;
mod export;
mod japanese_issues;
mod properties;
mod schema_table;
mod sync_bounds;
mod sync_intake;
mod sync_props;
mod sync_sim;

use musubi_engine::sync::{Frame, Session, SyncStorage};
use serde_bytes::ByteBuf;
use serde_json::Value;
use std::path::Path;

/// A device's `hello` at the relay store's current cursor and epoch: nothing is sent
/// unasked in answer.
pub fn hello_at_current_cursor<S: SyncStorage>(store: &S) -> Frame {
    Frame::Hello {
        protocol: 1,
        actor: ByteBuf::from(vec![0xA1; 16]),
        epoch: Some(store.store_id()),
        cursor: store.current_seq().unwrap().max(1),
        changed: Vec::new(),
        digest: ByteBuf::from(vec![0; 32]),
        caps: Vec::new(),
    }
}

/// Every frame a session has queued, decoded.
pub fn drain<S: SyncStorage>(s: &mut Session<S>) -> Vec<Frame> {
    std::iter::from_fn(|| s.poll_transmit())
        .map(|b| Frame::decode(&b).unwrap())
        .collect()
}

pub fn example(kind: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../schemas/examples/{kind}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}
