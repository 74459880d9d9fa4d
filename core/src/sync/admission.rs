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
    /// Whether the merged document holds concurrent values, when the rules read all of
    /// it (`None`: not read). The session reports conflicts from it instead of walking
    /// the document again while its heads are still those admitted.
    pub conflicts: Option<bool>,
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
/// arrived (empty when nothing new). `merged` holds everything `stored` holds.
///
/// These are the heads of `merged` that are not heads of `stored`, so no change is read: a
/// new change that no other new change builds on has no successor at all (a stored change
/// cannot depend on a change the store lacks), and a head of `merged` that `stored` holds
/// is a head of `stored` too.
pub fn incoming_heads(stored: Option<&Automerge>, merged: &Automerge) -> Vec<ChangeHash> {
    let have = stored.map(Automerge::get_heads).unwrap_or_default();
    let mut tips: Vec<ChangeHash> = merged
        .get_heads()
        .into_iter()
        .filter(|h| !have.contains(h))
        .collect();
    tips.sort();
    tips
}

#[cfg(test)]
mod tests {
    use super::incoming_heads;
    use automerge::transaction::Transactable as _;
    use automerge::{ActorId, AutoCommit, ChangeHash, ROOT};
    use std::collections::HashSet;

    /// The definition: the new changes that no other new change depends on.
    fn tips_by_walking(stored: &[ChangeHash], merged: &mut AutoCommit) -> Vec<ChangeHash> {
        let new = merged.get_changes(stored);
        let hashes: HashSet<ChangeHash> = new.iter().map(|c| c.hash()).collect();
        let referenced: HashSet<ChangeHash> =
            new.iter().flat_map(|c| c.deps().iter().copied()).collect();
        let mut tips: Vec<ChangeHash> = hashes.difference(&referenced).copied().collect();
        tips.sort();
        tips
    }

    fn edit(doc: &mut AutoCommit, key: &str, v: i64) {
        doc.put(ROOT, key, v).unwrap();
        doc.commit();
    }

    #[test]
    fn incoming_heads_are_the_tips_of_what_arrived() {
        let mut base = AutoCommit::new().with_actor(ActorId::from(&[1u8; 16][..]));
        edit(&mut base, "a", 1);
        let mut left = base.fork().with_actor(ActorId::from(&[2u8; 16][..]));
        let mut right = base.fork().with_actor(ActorId::from(&[3u8; 16][..]));
        edit(&mut left, "l", 1);
        edit(&mut right, "r", 1);
        // Stored: two concurrent heads.
        let mut stored = left.fork();
        stored.merge(&mut right).unwrap();
        // Arriving: a change on one stored head only, a branch from the old base, and a
        // merge of both stored heads.
        let mut on_left = left.fork().with_actor(ActorId::from(&[4u8; 16][..]));
        edit(&mut on_left, "x", 2);
        let mut from_base = base.fork().with_actor(ActorId::from(&[5u8; 16][..]));
        edit(&mut from_base, "y", 3);
        edit(&mut from_base, "y", 4);
        let mut on_both = stored.fork().with_actor(ActorId::from(&[6u8; 16][..]));
        edit(&mut on_both, "z", 5);
        let cases: Vec<Vec<AutoCommit>> = vec![
            vec![],
            vec![on_left.fork()],
            vec![from_base.fork()],
            vec![on_both.fork()],
            vec![on_left.fork(), from_base.fork(), on_both.fork()],
        ];
        let have = stored.get_heads();
        let mut seen_new = 0;
        for arrivals in cases {
            let mut merged = stored.fork();
            for mut a in arrivals {
                merged.merge(&mut a).unwrap();
            }
            let want = tips_by_walking(&have, &mut merged);
            let got = incoming_heads(Some(stored.document()), merged.document());
            assert_eq!(got, want);
            seen_new += want.len();
            // A whole new document: every head arrived.
            let mut all = merged.get_heads();
            all.sort();
            assert_eq!(incoming_heads(None, merged.document()), all);
        }
        assert_eq!(seen_new, 1 + 1 + 1 + 3, "every case brought what it should");
    }
}
