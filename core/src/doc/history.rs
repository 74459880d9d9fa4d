//! Audit history, read back from the automerge changes themselves.

use super::{Author, CareDoc, DocError};
use crate::sync::storage::ActorBinding;
use automerge::{AutoCommit, ChangeHash, ObjId};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

/// Where a change came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// Device id.
    pub device: String,
    /// Device name.
    pub device_name: String,
    /// Staff member.
    pub staff: Option<String>,
    /// Unix ms.
    pub time_ms: i64,
    /// Actor hex.
    pub actor: String,
    /// What kind of action.
    pub action: String,
}

fn origin_from(change: &automerge::Change) -> Origin {
    let author: Option<Author> = change.message().and_then(|m| serde_json::from_str(m).ok());
    let actor = change.actor_id().to_hex_string();
    match author {
        Some(a) => Origin {
            device: a.device,
            device_name: a.device_name,
            staff: a.staff,
            time_ms: change.timestamp(),
            actor,
            action: a.action,
        },
        None => Origin {
            device: String::new(),
            device_name: "(unknown device)".to_owned(),
            staff: None,
            time_ms: change.timestamp(),
            actor,
            action: String::new(),
        },
    }
}

/// Maps operation ids to the change (and so the device and staff) that made them.
pub(crate) struct OriginIndex {
    by_actor: HashMap<automerge::ActorId, Vec<(u64, u64, Origin)>>,
}

impl OriginIndex {
    pub(crate) fn build(doc: &mut AutoCommit) -> OriginIndex {
        let mut by_actor: HashMap<automerge::ActorId, Vec<(u64, u64, Origin)>> = HashMap::new();
        for change in doc.get_changes(&[]) {
            let start = change.start_op().get();
            let end = start + change.len() as u64;
            by_actor
                .entry(change.actor_id().clone())
                .or_default()
                .push((start, end, origin_from(&change)));
        }
        OriginIndex { by_actor }
    }

    pub(crate) fn origin_of(&self, id: &ObjId) -> Origin {
        if let ObjId::Id(counter, actor, _) = id {
            if let Some(list) = self.by_actor.get(actor)
                && let Some((_, _, o)) = list.iter().find(|(s, e, _)| (*s..*e).contains(counter))
            {
                return o.clone();
            }
            return Origin {
                actor: actor.to_hex_string(),
                device_name: "(unknown device)".to_owned(),
                ..Origin::default()
            };
        }
        Origin::default()
    }
}

/// One field that a change altered.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    /// JSON pointer.
    pub path: String,
    /// Value before (absent if the field was added).
    pub before: Option<Value>,
    /// Value after (absent if the field was removed).
    pub after: Option<Value>,
}

/// The device the relay attests for a change: the device whose certificate first sent
/// changes under the change's automerge actor (the relay's actor binding).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attested {
    /// Device id from the certificate.
    pub device: String,
    /// Device name from the certificate (none for bindings made before names were kept).
    pub name: Option<String>,
}

/// One change in the audit history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// Change hash (hex).
    pub hash: String,
    /// Who, where, when, as the change declares it itself (its `Author` message).
    #[serde(flatten)]
    pub origin: Origin,
    /// What changed, field by field.
    pub fields: Vec<FieldChange>,
    /// The device the relay attests for the change's actor; `None` until a sync brought
    /// the binding (or when the relay has none, e.g. for a bundle imported there).
    pub attested: Option<Attested>,
    /// Whether the declared device name (`origin.device_name`) differs from the attested
    /// certificate's name.
    pub declared_differs: bool,
}

/// Fills [`HistoryEntry::attested`] and [`HistoryEntry::declared_differs`] from actor
/// bindings (those of other actors are ignored).
pub fn attest_history(entries: &mut [HistoryEntry], bindings: &[ActorBinding]) {
    let by_actor: HashMap<String, Attested> = bindings
        .iter()
        .map(|b| {
            (
                hex::encode(&b.actor),
                Attested {
                    device: b.device.clone(),
                    name: b.device_name.clone(),
                },
            )
        })
        .collect();
    for e in entries {
        e.attested = by_actor.get(&e.origin.actor).cloned();
        // A change without an author message declares nothing, so nothing can differ.
        let declared = !e.origin.device.is_empty();
        e.declared_differs = declared
            && e.attested
                .as_ref()
                .and_then(|a| a.name.as_deref())
                .is_some_and(|name| name != e.origin.device_name);
    }
}

/// The distinct actors of history entries, as bytes (for looking up their bindings).
pub fn history_actors(entries: &[HistoryEntry]) -> Vec<Vec<u8>> {
    let mut actors: Vec<Vec<u8>> = entries
        .iter()
        .filter_map(|e| hex::decode(&e.origin.actor).ok())
        .collect();
    actors.sort_unstable();
    actors.dedup();
    actors
}

fn diff(path: &str, before: Option<&Value>, after: Option<&Value>, out: &mut Vec<FieldChange>) {
    let empty = serde_json::Map::new();
    match (before, after) {
        // A new object is listed field by field, like an existing one.
        (None, Some(Value::Object(b))) => {
            for (k, vb) in b {
                let p = format!("{path}/{}", crate::schema::escape_token(k));
                diff(&p, empty.get(k), Some(vb), out);
            }
        }
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            for (k, va) in a {
                let p = format!("{path}/{}", crate::schema::escape_token(k));
                diff(&p, Some(va), b.get(k), out);
            }
            for (k, vb) in b {
                if !a.contains_key(k) {
                    let p = format!("{path}/{}", crate::schema::escape_token(k));
                    diff(&p, None, Some(vb), out);
                }
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b)))
            if a.iter().chain(b).any(|v| v.is_object() || v.is_array()) =>
        {
            for i in 0..a.len().max(b.len()) {
                diff(&format!("{path}/{i}"), a.get(i), b.get(i), out);
            }
        }
        (a, b) if a != b => out.push(FieldChange {
            path: path.to_owned(),
            before: a.cloned(),
            after: b.cloned(),
        }),
        _ => {}
    }
}

pub(super) fn history(doc: &mut CareDoc) -> Result<Vec<HistoryEntry>, DocError> {
    let changes = doc.doc.get_changes(&[]);
    let mut out = Vec::with_capacity(changes.len());
    for change in &changes {
        let deps: Vec<ChangeHash> = change.deps().to_vec();
        let before = if deps.is_empty() {
            None
        } else {
            let fork = CareDoc {
                id: doc.id,
                kind: doc.kind,
                doc: doc.doc.fork_at(&deps)?,
            };
            Some(fork.to_json()?)
        };
        let after = CareDoc {
            id: doc.id,
            kind: doc.kind,
            doc: doc.doc.fork_at(&[change.hash()])?,
        }
        .to_json()?;
        let mut fields = Vec::new();
        diff("", before.as_ref(), Some(&after), &mut fields);
        if before.is_none() {
            // A creation: list every leaf as added.
            fields.retain(|f| f.after.is_some());
        }
        out.push(HistoryEntry {
            hash: change.hash().to_string(),
            origin: origin_from(change),
            fields,
            attested: None,
            declared_differs: false,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(actor: u8, device: &str, device_name: &str) -> HistoryEntry {
        HistoryEntry {
            hash: "00".into(),
            origin: Origin {
                device: device.into(),
                device_name: device_name.into(),
                actor: hex::encode([actor; 16]),
                ..Origin::default()
            },
            fields: Vec::new(),
            attested: None,
            declared_differs: false,
        }
    }

    #[test]
    fn attestation_is_filled_per_actor_and_a_differing_claim_is_flagged() {
        let mut entries = vec![
            entry(1, "store-a", "tablet-a"),
            entry(2, "store-b", "tablet-a"),
            entry(3, "store-c", "tablet-c"),
            entry(4, "", "(unknown device)"),
            entry(5, "store-e", "tablet-e"),
        ];
        let bindings = vec![
            ActorBinding {
                actor: vec![1; 16],
                device: "dev-a".into(),
                device_name: Some("tablet-a".into()),
            },
            // Actor 2 was bound to tablet-b, yet its change claims tablet-a.
            ActorBinding {
                actor: vec![2; 16],
                device: "dev-b".into(),
                device_name: Some("tablet-b".into()),
            },
            // A binding without a name cannot be compared.
            ActorBinding {
                actor: vec![5; 16],
                device: "dev-e".into(),
                device_name: None,
            },
            ActorBinding {
                actor: vec![4; 16],
                device: "dev-d".into(),
                device_name: Some("tablet-d".into()),
            },
        ];
        assert_eq!(
            history_actors(&entries),
            (1..=5).map(|n| vec![n; 16]).collect::<Vec<_>>()
        );
        attest_history(&mut entries, &bindings);
        let got: Vec<(Option<&str>, bool)> = entries
            .iter()
            .map(|e| {
                (
                    e.attested.as_ref().map(|a| a.device.as_str()),
                    e.declared_differs,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("dev-a"), false),
                (Some("dev-b"), true),
                (None, false),
                // No author message: nothing declared, nothing differs.
                (Some("dev-d"), false),
                (Some("dev-e"), false),
            ]
        );
        let json = serde_json::to_value(&entries[1]).unwrap();
        assert_eq!(
            json["attested"],
            serde_json::json!({"device": "dev-b", "name": "tablet-b"})
        );
        assert_eq!(json["declared_differs"], true);
        assert_eq!(
            serde_json::to_value(&entries[2]).unwrap()["attested"],
            Value::Null
        );
    }
}
