//! What a store admits from outside: the rules every document must pass when it arrives
//! from another device (a relay session) or on a bundle, checked on the state the incoming
//! changes produce. The relay trusts no device: every rule a tablet enforces on its own
//! edits is enforced again here, and a registration counts only on card evidence the
//! receiving side verified itself.
//!
//! The sync core only knows the [`Admission`] trait; the rules themselves live in
//! [`crate::admit`] (schema, 個人番号 guard, care rules, append-only registrations, card
//! evidence), so no rule is written twice.

use automerge::{Automerge, ChangeHash};

use crate::ids::DocId;

/// Who brought the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uploader<'a> {
    /// A device authenticated by its certificate (relay session): its device id.
    Device(&'a str),
    /// A bundle imported by an administrator at the relay: the device ids enrolled for
    /// the document's office (a registration's statement must name one of them).
    Bundle(&'a [String]),
    /// A bundle imported on a tablet (no device identity can be checked).
    TabletBundle,
}

/// A document's new state, as it arrives.
pub struct Incoming<'a> {
    /// The document.
    pub id: DocId,
    /// Its `kind`.
    pub kind: &'a str,
    /// Its owning office (as stored, or from its `office` field when new).
    pub office: &'a str,
    /// Who brought it.
    pub uploader: Uploader<'a>,
    /// The document as this store held it before (`None`: new to this store).
    pub stored: Option<&'a Automerge>,
    /// The document with the incoming changes merged.
    pub merged: &'a Automerge,
    /// The heads of the changes new to this store (their own view of the document is
    /// `merged` at these heads); empty when nothing new arrived.
    pub own_heads: &'a [ChangeHash],
}

/// What the receiving side verified of a registration's card evidence (kept with the
/// document; a device's own `result` counts for nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidenceVerdict {
    /// The person key the card signed for (see [`super::sharing::person_key`]).
    pub person: String,
    /// SHA-256 (lower-case hex) of the card's user-authentication certificate.
    pub cert_fingerprint: String,
    /// The device the statement names.
    pub device: String,
}

/// An admitted document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admitted {
    /// For a registration new to this store: its verified evidence.
    pub evidence: Option<EvidenceVerdict>,
}

/// A refused document: a stable code (sent as `doc_rejected`, rendered in Japanese by
/// [`crate::admit::rejection_text`]) and the field concerned, never a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}{}", field.as_deref().map(|f| format!(" at {f}")).unwrap_or_default())]
pub struct Refused {
    /// Stable code.
    pub code: &'static str,
    /// The JSON path or field concerned, if any.
    pub field: Option<String>,
}

impl Refused {
    /// A refusal with a code and no field.
    pub fn new(code: &'static str) -> Refused {
        Refused { code, field: None }
    }

    /// A refusal with a code naming a field.
    pub fn at(code: &'static str, field: impl Into<String>) -> Refused {
        Refused {
            code,
            field: Some(field.into()),
        }
    }
}

/// The rules a store applies to what arrives from outside.
pub trait Admission: Send + Sync {
    /// Admits or refuses `incoming`.
    fn admit(&self, incoming: &Incoming<'_>) -> Result<Admitted, Refused>;
}

/// Admits everything. Only for the seeded simulations and benchmarks, whose generated
/// documents are not care documents; a relay or a bundle import never uses it.
#[derive(Clone, Copy, Debug, Default)]
pub struct AdmitAllForSimulation;

impl Admission for AdmitAllForSimulation {
    fn admit(&self, _: &Incoming<'_>) -> Result<Admitted, Refused> {
        Ok(Admitted::default())
    }
}

/// The heads of the changes in `merged` that `stored` does not have: the tips of what
/// arrived (empty when nothing new).
pub fn incoming_heads(stored: Option<&Automerge>, merged: &Automerge) -> Vec<ChangeHash> {
    let have = stored.map(Automerge::get_heads).unwrap_or_default();
    let new = merged.get_changes(&have);
    let hashes: std::collections::HashSet<ChangeHash> = new.iter().map(|c| c.hash()).collect();
    let mut referenced = std::collections::HashSet::new();
    for c in &new {
        for d in c.deps() {
            if hashes.contains(d) {
                referenced.insert(*d);
            }
        }
    }
    let mut tips: Vec<ChangeHash> = hashes
        .into_iter()
        .filter(|h| !referenced.contains(h))
        .collect();
    tips.sort();
    tips
}
