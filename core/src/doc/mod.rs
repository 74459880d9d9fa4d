//! Typed care documents over automerge.
//!
//! A document's automerge tree mirrors its interchange JSON, guided by the schema:
//! objects are maps, arrays are lists, except arrays marked `x-crdt: "set"` (multi-select
//! items) which are maps from code to `true` so that concurrent choices merge as a set;
//! strings marked `x-crdt: "text"` are automerge text so concurrent typing merges
//! character by character. Every change carries a JSON message naming the device and the
//! staff member, and a timestamp in unix milliseconds: the audit history is read back
//! from the document itself, so it travels with the document wherever it syncs.

mod history;
mod json_patch;
mod snapshot;
pub mod types;

pub use history::{Attested, FieldChange, HistoryEntry, attest_history, history_actors};
pub use json_patch::apply_pointer;
pub use snapshot::{Snapshot, SnapshotError, check_chunk, load_strict};

use crate::ids::DocId;
use crate::schema::{DocKind, Node, Pointer, Registry, SchemaError};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, AutoCommit, ObjId, ObjType, Prop, ReadDoc, ScalarValue, Value as AmValue, hydrate,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Errors of document handling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocError {
    /// The automerge data is damaged or an operation failed.
    #[error("document data could not be processed: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    /// The embedded schemas are broken (a bug).
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A JSON pointer does not name a place in the document.
    #[error("{path}: {reason}")]
    BadPath {
        /// The pointer.
        path: String,
        /// Why.
        reason: String,
    },
    /// The stored document has no usable `kind`.
    #[error("document has no valid kind")]
    NoKind,
    /// automerge failed on the data instead of reporting an error ([`contain_panic`]).
    #[error("document data could not be decoded")]
    Undecodable,
    /// Maps and lists nest deeper than [`MAX_DOC_DEPTH`] under `field` (a top-level key).
    #[error("{field}: maps and lists nest deeper than {MAX_DOC_DEPTH} levels")]
    TooDeep {
        /// The top-level field under which the nesting goes too deep (a JSON pointer).
        field: String,
    },
}

/// The deepest nesting of maps and lists a document may have: the documents of every
/// schema nest a few levels (a survey's 特記事項 entry is at the third). Reading a document
/// recurses once per level, and automerge stores a nested map in about two bytes, so
/// without a bound a crafted document of 200 KB (well inside the intake bounds), nested a
/// hundred thousand levels, overflows the reading thread's stack: an abort that no
/// `catch_unwind` contains, ending the whole relay process.
pub const MAX_DOC_DEPTH: usize = 32;

/// Nesting past [`MAX_DOC_DEPTH`] found while reading; the top-level key it is under,
/// once known.
struct TooDeep(Option<String>);

/// automerge panicked while decoding bytes from outside (see [`contain_panic`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the automerge data could not be decoded (the decoder failed on it)")]
pub struct DecodePanic;

/// Runs an automerge decode of bytes from outside this store.
///
/// automerge and its column decoder can panic on crafted input instead of returning an
/// error: the `automerge_load` fuzz target found 31 bytes that reach an `unwrap` in the
/// run-length decoder (`hexane` 1.0.0-alpha.5, `rle/decoder.rs`). A panic here would end
/// a relay session, or with `panic = "abort"` the whole relay, on one device's say. The
/// panic is caught and becomes [`DecodePanic`]; the caller must discard the document it
/// was decoding into, which may be half changed. The workspace builds with
/// `panic = "unwind"` for this.
pub fn contain_panic<T>(decode: impl FnOnce() -> T) -> Result<T, DecodePanic> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).map_err(|_| {
        tracing::warn!("automerge panicked while decoding outside data; the data is refused");
        DecodePanic
    })
}

/// Who makes a change, recorded in every automerge change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    /// Device id (random hex).
    pub device: String,
    /// Human name of the device.
    pub device_name: String,
    /// The staff member using it, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staff: Option<String>,
    /// What kind of action (import, set, …).
    pub action: String,
    /// Unix time in milliseconds (set by the caller: the core reads no clock).
    #[serde(skip)]
    pub time_ms: i64,
}

impl Author {
    fn options(&self) -> CommitOptions {
        let message = serde_json::to_string(self).unwrap_or_default();
        CommitOptions::default()
            .with_message(message)
            .with_time(self.time_ms)
    }
}

/// One care document.
pub struct CareDoc {
    id: DocId,
    kind: DocKind,
    doc: AutoCommit,
}

impl std::fmt::Debug for CareDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print content.
        f.debug_struct("CareDoc")
            .field("id", &self.id.short())
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Concurrent values of one field.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conflict {
    /// JSON pointer of the field.
    pub path: String,
    /// Each competing value with its origin; the one automerge currently shows has
    /// `current: true`.
    pub values: Vec<ConflictValue>,
}

/// One competing value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConflictValue {
    /// The value.
    pub value: Value,
    /// Device name that wrote it.
    pub device: String,
    /// Device id.
    pub device_id: String,
    /// Staff member, if recorded.
    pub staff: Option<String>,
    /// When (unix ms).
    pub time_ms: i64,
    /// automerge actor (hex).
    pub actor: String,
    /// Whether this is the value currently shown.
    pub current: bool,
}

fn registry() -> Result<&'static Registry, DocError> {
    Ok(Registry::embedded()?)
}

fn scalar_to_json(s: &ScalarValue) -> Value {
    match s {
        ScalarValue::Str(s) => Value::String(s.to_string()),
        ScalarValue::Int(i) => Value::from(*i),
        ScalarValue::Uint(u) => Value::from(*u),
        ScalarValue::F64(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        ScalarValue::Boolean(b) => Value::Bool(*b),
        ScalarValue::Null => Value::Null,
        ScalarValue::Counter(c) => Value::from(i64::from(c)),
        ScalarValue::Timestamp(t) => Value::from(*t),
        ScalarValue::Bytes(b) => Value::String(hex::encode(b)),
        ScalarValue::Unknown { .. } => Value::Null,
    }
}

fn json_to_scalar(v: &Value) -> Option<ScalarValue> {
    Some(match v {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                ScalarValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                ScalarValue::Uint(u)
            } else {
                ScalarValue::F64(n.as_f64()?)
            }
        }
        Value::String(s) => ScalarValue::Str(s.as_str().into()),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

fn set_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn set_member(key: &str) -> Value {
    key.parse::<i64>()
        .map(Value::from)
        .unwrap_or_else(|_| Value::String(key.to_owned()))
}

/// Writes `value` as a new child at `prop` of `obj`.
fn put_new(
    doc: &mut AutoCommit,
    obj: &ObjId,
    prop: Prop,
    value: &Value,
    node: Option<Node<'_>>,
    reg: &Registry,
) -> Result<(), DocError> {
    let hint = node.and_then(|n| reg.crdt_hint(n));
    let insert = |doc: &mut AutoCommit, t: ObjType| -> Result<ObjId, DocError> {
        Ok(match &prop {
            Prop::Map(k) => doc.put_object(obj, k.as_str(), t)?,
            Prop::Seq(i) => doc.insert_object(obj, *i, t)?,
        })
    };
    match value {
        Value::Object(map) => {
            let child = insert(doc, ObjType::Map)?;
            for (k, v) in map {
                let sub = node.and_then(|n| reg.property(n, k));
                put_new(doc, &child, Prop::Map(k.clone()), v, sub, reg)?;
            }
        }
        Value::Array(list) if hint == Some("set") => {
            let child = insert(doc, ObjType::Map)?;
            for v in list {
                doc.put(&child, set_key(v), true)?;
            }
        }
        Value::Array(list) => {
            let child = insert(doc, ObjType::List)?;
            let sub = node.and_then(|n| reg.items(n));
            for (i, v) in list.iter().enumerate() {
                put_new(doc, &child, Prop::Seq(i), v, sub, reg)?;
            }
        }
        Value::String(s) if hint == Some("text") => {
            let child = insert(doc, ObjType::Text)?;
            doc.splice_text(&child, 0, 0, s)?;
        }
        scalar => {
            let sv = json_to_scalar(scalar).unwrap_or(ScalarValue::Null);
            match prop {
                Prop::Map(k) => doc.put(obj, k.as_str(), sv)?,
                Prop::Seq(i) => doc.insert(obj, i, sv)?,
            }
        }
    }
    Ok(())
}

/// `value` as the automerge tree [`put_new`] builds for it, for a batch insertion: maps,
/// lists, text where the schema says `x-crdt: text`, a map of members where it says
/// `x-crdt: set`, scalars elsewhere.
fn to_hydrate(
    value: &Value,
    node: Option<Node<'_>>,
    reg: &Registry,
    encoding: automerge::TextEncoding,
) -> hydrate::Value {
    let hint = node.and_then(|n| reg.crdt_hint(n));
    match value {
        Value::Object(map) => hydrate::Value::Map(hydrate::Map::from(
            map.iter()
                .map(|(k, v)| {
                    let sub = node.and_then(|n| reg.property(n, k));
                    (k.clone(), to_hydrate(v, sub, reg, encoding))
                })
                .collect::<HashMap<String, hydrate::Value>>(),
        )),
        Value::Array(list) if hint == Some("set") => hydrate::Value::Map(hydrate::Map::from(
            list.iter()
                .map(|v| {
                    (
                        set_key(v),
                        hydrate::Value::Scalar(ScalarValue::Boolean(true)),
                    )
                })
                .collect::<HashMap<String, hydrate::Value>>(),
        )),
        Value::Array(list) => {
            let sub = node.and_then(|n| reg.items(n));
            hydrate::Value::List(hydrate::List::from(
                list.iter()
                    .map(|v| to_hydrate(v, sub, reg, encoding))
                    .collect::<Vec<_>>(),
            ))
        }
        Value::String(s) if hint == Some("text") => {
            hydrate::Value::Text(hydrate::Text::new(encoding, s))
        }
        scalar => hydrate::Value::Scalar(json_to_scalar(scalar).unwrap_or(ScalarValue::Null)),
    }
}

/// Whether any field of the document holds concurrent values: a key of a map (or table)
/// or an element of a list with more than one value, at any depth. The interchange JSON
/// reader finds the same while it reads ([`json_and_conflicts_of`]; a relay takes it from
/// its admission); `conflicts_are_found_in_maps_nested_maps_and_lists` checks that both
/// agree.
pub(crate) fn has_conflicts<R: ReadDoc>(doc: &R) -> bool {
    conflicts_under(doc, &ObjId::Root, 0)
}

/// Whether any map (or table) key or list element in `obj` or the maps, tables and lists
/// under it holds more than one value; `depth` is how many maps and lists contain `obj`
/// (the document itself: 0). One pass over each object (its range reports the conflict),
/// not a lookup per key. The walk stops at [`MAX_DOC_DEPTH`]: deeper documents are refused
/// by admission, and it must not recurse without a bound on one that was not admitted.
fn conflicts_under<R: ReadDoc>(doc: &R, obj: &ObjId, depth: usize) -> bool {
    if depth >= MAX_DOC_DEPTH {
        return false;
    }
    let nested = |value: &automerge::ValueRef<'_>| {
        matches!(
            value,
            automerge::ValueRef::Object(ObjType::Map | ObjType::Table | ObjType::List)
        )
    };
    match doc.object_type(obj) {
        Ok(ObjType::Map | ObjType::Table) => doc.map_range(obj, ..).any(|item| {
            item.conflict || (nested(&item.value) && conflicts_under(doc, &item.id(), depth + 1))
        }),
        Ok(ObjType::List) => doc.list_range(obj, ..).any(|item| {
            item.conflict || (nested(&item.value) && conflicts_under(doc, &item.id(), depth + 1))
        }),
        _ => false,
    }
}

/// Reads a document as JSON, noting on the way whether any map key or list element it
/// ranges over holds concurrent values (automerge's `conflict` flag): the same fact
/// [`has_conflicts`] walks a document for, so a relay that has read a
/// document for its rules need not walk it again.
struct Reader<'a, R> {
    doc: &'a R,
    reg: &'a Registry,
    conflict: bool,
}

impl<R: ReadDoc> Reader<'_, R> {
    /// The automerge value `(v, id)` as JSON; `depth` is how many maps and lists contain
    /// it.
    fn value(
        &mut self,
        v: &AmValue<'_>,
        id: &ObjId,
        node: Option<Node<'_>>,
        depth: usize,
    ) -> Result<Value, TooDeep> {
        if matches!(v, AmValue::Object(t) if *t != ObjType::Text) && depth >= MAX_DOC_DEPTH {
            return Err(TooDeep(None));
        }
        let (doc, reg) = (self.doc, self.reg);
        Ok(match v {
            AmValue::Scalar(s) => scalar_to_json(s),
            AmValue::Object(ObjType::Text) => Value::String(doc.text(id).unwrap_or_default()),
            AmValue::Object(ObjType::Map | ObjType::Table) => {
                if node.and_then(|n| reg.crdt_hint(n)) == Some("set") {
                    let mut members: Vec<Value> = Vec::new();
                    for item in doc.map_range(id, ..) {
                        self.conflict |= item.conflict;
                        let v: AmValue<'static> = item.value.clone().into();
                        match v {
                            AmValue::Scalar(s)
                                if matches!(s.as_ref(), ScalarValue::Boolean(true)) =>
                            {
                                members.push(set_member(item.key.as_ref()));
                            }
                            // Not a member, and not read; its conflicts still count (as
                            // `conflicts_under` counts them).
                            AmValue::Object(_) if !self.conflict => {
                                self.conflict = conflicts_under(doc, &item.id(), depth + 1);
                            }
                            _ => {}
                        }
                    }
                    members.sort_by(|a, b| match (a.as_i64(), b.as_i64()) {
                        (Some(x), Some(y)) => x.cmp(&y),
                        _ => a.to_string().cmp(&b.to_string()),
                    });
                    return Ok(Value::Array(members));
                }
                self.map(id, node, depth + 1)?
            }
            AmValue::Object(ObjType::List) => {
                let sub = node.and_then(|n| reg.items(n));
                let mut out = Vec::new();
                for item in doc.list_range(id, ..) {
                    self.conflict |= item.conflict;
                    let am: AmValue<'static> = item.value.clone().into();
                    out.push(self.value(&am, &item.id(), sub, depth + 1)?);
                }
                Value::Array(out)
            }
        })
    }

    /// A map, its keys in the order the schema lists them (form order), others after;
    /// `depth` is how many maps and lists contain its values.
    fn map(&mut self, id: &ObjId, node: Option<Node<'_>>, depth: usize) -> Result<Value, TooDeep> {
        let (doc, reg) = (self.doc, self.reg);
        // The node's `$ref` chain, followed once for all its keys (as `Registry::property`
        // and `Registry::keyword` would follow it for each).
        let chain = node.and_then(|n| reg.chain(n).ok()).unwrap_or_default();
        let properties = || {
            chain
                .iter()
                .filter_map(|n| Some((n, n.schema.get("properties")?)))
        };
        let mut present: BTreeMap<String, Value> = BTreeMap::new();
        for item in doc.map_range(id, ..) {
            self.conflict |= item.conflict;
            let key = item.key.to_string();
            let sub = properties().find_map(|(n, props)| {
                props.get(key.as_str()).map(|schema| Node {
                    file: n.file,
                    schema,
                })
            });
            let am: AmValue<'static> = item.value.clone().into();
            let value = self
                .value(&am, &item.id(), sub, depth)
                .map_err(|e| match e {
                    TooDeep(None) if depth == 1 => TooDeep(Some(key.clone())),
                    e => e,
                })?;
            present.insert(key, value);
        }
        let mut out = serde_json::Map::new();
        if let Some(props) = properties().next().and_then(|(_, p)| p.as_object()) {
            for key in props.keys() {
                if let Some(v) = present.remove(key) {
                    out.insert(key.clone(), v);
                }
            }
        }
        out.extend(present);
        Ok(Value::Object(out))
    }
}

/// [`DocError::TooDeep`] naming the top-level key (shortened: it is the sender's).
fn too_deep(key: Option<String>) -> DocError {
    let mut field = Pointer::root();
    field.push(key.unwrap_or_default().chars().take(64).collect::<String>());
    DocError::TooDeep {
        field: field.to_string(),
    }
}

/// The interchange JSON of any readable automerge document of `kind` (a stored document,
/// a fork at some heads, a document being received), read as [`CareDoc::to_json`] does.
pub fn json_of<R: ReadDoc>(doc: &R, kind: DocKind) -> Result<Value, DocError> {
    json_and_conflicts_of(doc, kind).map(|(json, _)| json)
}

/// [`json_of`], and whether the document holds concurrent values anywhere (a map key or
/// list element with more than one value): what `has_conflicts` finds,
/// learnt in the same pass.
pub fn json_and_conflicts_of<R: ReadDoc>(
    doc: &R,
    kind: DocKind,
) -> Result<(Value, bool), DocError> {
    let reg = registry()?;
    let root = reg.root(kind)?;
    let mut reader = Reader {
        doc,
        reg,
        conflict: false,
    };
    let json = reader
        .map(&ObjId::Root, Some(root), 1)
        .map_err(|TooDeep(key)| too_deep(key))?;
    Ok((json, reader.conflict))
}

impl CareDoc {
    /// Creates a document from validated interchange JSON in a single change.
    pub fn create(
        id: DocId,
        kind: DocKind,
        json: &Value,
        actor: ActorId,
        author: &Author,
    ) -> Result<CareDoc, DocError> {
        let reg = registry()?;
        let root = reg.root(kind)?;
        let mut doc = AutoCommit::new().with_actor(actor);
        if let Value::Object(map) = json {
            // The whole tree in one batch (two op-set splices instead of one per value: the
            // import of a survey is mostly this). The same values and types as `put_new`
            // writes one by one.
            let encoding = doc.text_encoding();
            let tree: HashMap<String, hydrate::Value> = map
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        to_hydrate(v, reg.property(root, k), reg, encoding),
                    )
                })
                .collect();
            doc.init_root_from_hydrate(&hydrate::Map::from(tree))?;
        }
        doc.commit_with(author.options());
        Ok(CareDoc { id, kind, doc })
    }

    /// Loads from stored chunks (a snapshot followed by change chunks).
    pub fn load(id: DocId, chunks: &[Vec<u8>], actor: ActorId) -> Result<CareDoc, DocError> {
        let mut doc = AutoCommit::new();
        for chunk in chunks {
            contain_panic(|| doc.load_incremental(chunk)).map_err(|_| DocError::Undecodable)??;
        }
        doc.set_actor(actor);
        let kind = match doc.get(ObjId::Root, "kind")? {
            Some((AmValue::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Str(k) => DocKind::parse(k).ok_or(DocError::NoKind)?,
                _ => return Err(DocError::NoKind),
            },
            _ => return Err(DocError::NoKind),
        };
        Ok(CareDoc { id, kind, doc })
    }

    /// The id.
    pub fn id(&self) -> DocId {
        self.id
    }

    /// The kind.
    pub fn kind(&self) -> DocKind {
        self.kind
    }

    /// The full document as one automerge save.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// The full document as one automerge save, as a [`Snapshot`] a store keeps without
    /// decoding it again.
    pub fn snapshot(&mut self) -> Snapshot {
        Snapshot::of_autocommit(&mut self.doc)
    }

    /// Current heads, hex.
    pub fn heads_hex(&mut self) -> Vec<String> {
        self.doc.get_heads().iter().map(|h| h.to_string()).collect()
    }

    /// Access to the automerge document (for sync and merging).
    pub fn automerge(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    /// The interchange JSON.
    pub fn to_json(&self) -> Result<Value, DocError> {
        json_of(&self.doc, self.kind)
    }

    /// A short human title for listings (person's name and date where known).
    pub fn title(&self) -> String {
        title_of(self.kind, &self.to_json().unwrap_or(Value::Null))
    }

    /// Sets the value at `pointer` to `value` (the caller has validated the resulting
    /// document). Returns the raw bytes of the new change, or `None` if nothing changed.
    pub fn set(
        &mut self,
        pointer: &Pointer,
        value: &Value,
        author: &Author,
    ) -> Result<Option<Vec<u8>>, DocError> {
        let reg = registry()?;
        let root = reg.root(self.kind)?;
        let Some((parent_ptr, last)) = pointer.split_last() else {
            return Err(DocError::BadPath {
                path: String::new(),
                reason: "the whole document cannot be replaced; name a field".to_owned(),
            });
        };
        // Walk to the parent object.
        let mut obj = ObjId::Root;
        let mut walked: Vec<String> = Vec::new();
        for token in parent_ptr.tokens() {
            let node = reg.node_at(root, &walked);
            let is_set = node.and_then(|n| reg.crdt_hint(n)) == Some("set");
            let next = match self.doc.object_type(&obj) {
                Ok(ObjType::List) => {
                    let idx: usize = token
                        .parse()
                        .map_err(|_| bad_path(pointer, "not a list index"))?;
                    self.doc.get(&obj, idx)?
                }
                Ok(ObjType::Map) if !is_set => self.doc.get(&obj, token.as_str())?,
                _ => None,
            };
            match next {
                Some((AmValue::Object(_), id)) => obj = id,
                _ => return Err(bad_path(pointer, "the parent of this field does not exist")),
            }
            walked.push(token.clone());
        }
        let before = self.doc.get_heads();
        let parent_node = reg.node_at(root, &walked);
        let target_node = {
            let mut p = walked.clone();
            p.push(last.to_owned());
            reg.node_at(root, &p)
        };
        match self.doc.object_type(&obj)? {
            ObjType::List => {
                let len = self.doc.length(&obj);
                if last == "-" {
                    put_new(&mut self.doc, &obj, Prop::Seq(len), value, target_node, reg)?;
                } else {
                    let idx: usize = last
                        .parse()
                        .map_err(|_| bad_path(pointer, "not a list index"))?;
                    if idx >= len {
                        return Err(bad_path(pointer, "list index out of range"));
                    }
                    self.update(&obj, Prop::Seq(idx), value, target_node, reg)?;
                }
            }
            ObjType::Map | ObjType::Table => {
                if parent_node.and_then(|n| reg.crdt_hint(n)) == Some("set") {
                    return Err(bad_path(
                        pointer,
                        "set the whole multi-select item as an array",
                    ));
                }
                self.update(&obj, Prop::Map(last.to_owned()), value, target_node, reg)?;
            }
            ObjType::Text => return Err(bad_path(pointer, "text has no fields")),
        }
        self.doc.commit_with(author.options());
        let after = self.doc.get_heads();
        if after == before {
            return Ok(None);
        }
        Ok(self
            .doc
            .get_last_local_change()
            .map(|c| c.raw_bytes().to_vec()))
    }

    /// Updates `prop` of `obj` to `value` with the smallest automerge change.
    fn update(
        &mut self,
        obj: &ObjId,
        prop: Prop,
        value: &Value,
        node: Option<Node<'_>>,
        reg: &Registry,
    ) -> Result<(), DocError> {
        let hint = node.and_then(|n| reg.crdt_hint(n));
        // A field with concurrent values is resolved by writing it afresh, even when the
        // chosen value equals the one currently shown: that is what clears the conflict.
        let conflicted = self.doc.get_all(obj, prop.clone())?.len() > 1;
        let existing = if conflicted {
            None
        } else {
            self.doc.get(obj, prop.clone())?
        };
        match (existing, value) {
            (Some((AmValue::Object(ObjType::Text), id)), Value::String(s)) => {
                self.doc.update_text(&id, s)?;
            }
            (Some((AmValue::Object(ObjType::Map), id)), Value::Array(list))
                if hint == Some("set") =>
            {
                let wanted: Vec<String> = list.iter().map(set_key).collect();
                let have: Vec<String> = self.doc.keys(&id).collect();
                for k in &have {
                    if !wanted.contains(k) {
                        self.doc.delete(&id, k.as_str())?;
                    }
                }
                for k in &wanted {
                    let present = matches!(
                        self.doc.get(&id, k.as_str())?,
                        Some((AmValue::Scalar(s), _)) if matches!(s.as_ref(), ScalarValue::Boolean(true))
                    );
                    if !present {
                        self.doc.put(&id, k.as_str(), true)?;
                    }
                }
            }
            (Some((AmValue::Object(ObjType::Map), id)), Value::Object(map))
                if hint != Some("set") =>
            {
                let have: Vec<String> = self.doc.keys(&id).collect();
                for k in &have {
                    if !map.contains_key(k) {
                        self.doc.delete(&id, k.as_str())?;
                    }
                }
                for (k, v) in map {
                    let sub = node.and_then(|n| reg.property(n, k));
                    self.update(&id, Prop::Map(k.clone()), v, sub, reg)?;
                }
            }
            (Some((AmValue::Object(ObjType::List), id)), Value::Array(list))
                if hint != Some("set") =>
            {
                let sub = node.and_then(|n| reg.items(n));
                let len = self.doc.length(&id);
                for (i, v) in list.iter().enumerate() {
                    if i < len {
                        self.update(&id, Prop::Seq(i), v, sub, reg)?;
                    } else {
                        put_new(&mut self.doc, &id, Prop::Seq(i), v, sub, reg)?;
                    }
                }
                for i in (list.len()..len).rev() {
                    self.doc.delete(&id, i)?;
                }
            }
            (Some((AmValue::Scalar(old), _)), new)
                if !new.is_object() && !new.is_array() && hint != Some("text") =>
            {
                let sv = json_to_scalar(new).unwrap_or(ScalarValue::Null);
                if old.as_ref() != &sv {
                    match prop {
                        Prop::Map(k) => self.doc.put(obj, k.as_str(), sv)?,
                        Prop::Seq(i) => self.doc.put(obj, i, sv)?,
                    }
                }
            }
            (_, new) => {
                // Absent or of another shape: write afresh.
                if let Prop::Seq(i) = prop {
                    self.doc.delete(obj, i)?;
                }
                put_new(&mut self.doc, obj, prop, new, node, reg)?;
            }
        }
        Ok(())
    }

    /// Merges another copy of this document (e.g. from another device).
    pub fn merge(&mut self, other: &mut CareDoc) -> Result<(), DocError> {
        self.doc.merge(&mut other.doc)?;
        Ok(())
    }

    /// A copy with its own actor (for tests and simulations of another device).
    pub fn fork_with_actor(&mut self, actor: ActorId) -> CareDoc {
        CareDoc {
            id: self.id,
            kind: self.kind,
            doc: self.doc.fork().with_actor(actor),
        }
    }

    /// Every field that currently holds concurrent values.
    pub fn conflicts(&mut self) -> Result<Vec<Conflict>, DocError> {
        let reg = registry()?;
        let root = reg.root(self.kind)?;
        let origins = history::OriginIndex::build(&mut self.doc);
        let mut out = Vec::new();
        let mut path = Pointer::root();
        self.collect_conflicts(&ObjId::Root, Some(root), reg, &origins, &mut path, &mut out)?;
        Ok(out)
    }

    fn collect_conflicts(
        &self,
        obj: &ObjId,
        node: Option<Node<'_>>,
        reg: &Registry,
        origins: &history::OriginIndex,
        path: &mut Pointer,
        out: &mut Vec<Conflict>,
    ) -> Result<(), DocError> {
        // `path` holds a token per enclosing map or list (the document itself has none).
        let depth = path.tokens().len() + 1;
        if depth > MAX_DOC_DEPTH {
            return Err(too_deep(path.tokens().first().cloned()));
        }
        let props: Vec<Prop> = match self.doc.object_type(obj)? {
            ObjType::Map | ObjType::Table => self.doc.keys(obj).map(Prop::Map).collect(),
            ObjType::List => (0..self.doc.length(obj)).map(Prop::Seq).collect(),
            ObjType::Text => return Ok(()),
        };
        for prop in props {
            let token = match &prop {
                Prop::Map(k) => k.clone(),
                Prop::Seq(i) => i.to_string(),
            };
            let sub = node.and_then(|n| match &prop {
                Prop::Map(k) => reg.property(n, k),
                Prop::Seq(_) => reg.items(n),
            });
            path.push(token);
            let all = self.doc.get_all(obj, prop.clone())?;
            let winner = self.doc.get(obj, prop.clone())?.map(|(_, id)| id);
            if all.len() > 1 {
                let values: Vec<ConflictValue> = all
                    .iter()
                    .map(|(v, id)| {
                        let origin = origins.origin_of(id);
                        let mut reader = Reader {
                            doc: &self.doc,
                            reg,
                            conflict: false,
                        };
                        let value = reader
                            .value(v, id, sub, depth)
                            .map_err(|_| too_deep(path.tokens().first().cloned()))?;
                        Ok(ConflictValue {
                            value,
                            device: origin.device_name.clone(),
                            device_id: origin.device.clone(),
                            staff: origin.staff.clone(),
                            time_ms: origin.time_ms,
                            actor: origin.actor.clone(),
                            current: winner.as_ref() == Some(id),
                        })
                    })
                    .collect::<Result<_, DocError>>()?;
                let first = &values[0].value;
                if values.iter().any(|v| &v.value != first) {
                    out.push(Conflict {
                        path: path.to_string(),
                        values,
                    });
                }
            }
            if let Some((AmValue::Object(t), id)) = self.doc.get(obj, prop)? {
                let is_set = sub.and_then(|n| reg.crdt_hint(n)) == Some("set");
                if t != ObjType::Text && !is_set {
                    self.collect_conflicts(&id, sub, reg, origins, path, out)?;
                }
            }
            path.pop();
        }
        Ok(())
    }

    /// The audit history, oldest first.
    pub fn history(&mut self) -> Result<Vec<HistoryEntry>, DocError> {
        history::history(self)
    }
}

/// Where a document's title takes the person's name from, first found wins.
pub(crate) const TITLE_NAMES: &[&[&str]] = &[&["subject", "name"], &["person", "name"]];

/// Where a document's title takes its date from, first found wins: the survey, the
/// visit, the application, the consent, the notice.
pub(crate) const TITLE_DATES: &[&[&str]] = &[
    &["overview", "conducted", "date"],
    &["visit", "date"],
    &["application", "date"],
    &["consent", "date"],
    &["filed_date"],
];

/// The listing title of a document's interchange JSON: kind, person's name, main date.
pub fn title_of(kind: DocKind, json: &Value) -> String {
    let pick = |path: &[&str]| {
        let ptr: String = path.iter().map(|p| format!("/{p}")).collect();
        json.pointer(&ptr)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let name = TITLE_NAMES.iter().find_map(|p| pick(p));
    let date = TITLE_DATES.iter().find_map(|p| pick(p));
    let mut parts = vec![kind.label().to_owned()];
    parts.extend(name);
    parts.extend(date);
    parts.join(" ")
}

fn bad_path(pointer: &Pointer, reason: &str) -> DocError {
    DocError::BadPath {
        path: pointer.to_string(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree of a document with each object's automerge type, for comparing how two
    /// documents are built (not only what they read as).
    fn typed(doc: &AutoCommit, obj: &ObjId) -> Value {
        let entry = |v: AmValue<'_>, id: ObjId| match v {
            AmValue::Object(t) => serde_json::json!({ format!("{t:?}"): typed(doc, &id) }),
            AmValue::Scalar(s) => scalar_to_json(&s),
        };
        match doc.object_type(obj) {
            Ok(ObjType::List) => Value::Array(
                (0..doc.length(obj))
                    .filter_map(|i| doc.get(obj, i).ok().flatten())
                    .map(|(v, id)| entry(v, id))
                    .collect(),
            ),
            Ok(ObjType::Text) => Value::String(doc.text(obj).unwrap_or_default()),
            _ => Value::Object(
                doc.keys(obj)
                    .filter_map(|k| doc.get(obj, k.as_str()).ok().flatten().map(|v| (k, v)))
                    .map(|(k, (v, id))| (k, entry(v, id)))
                    .collect(),
            ),
        }
    }

    /// `CareDoc::create` writes the tree in one batch; it must build exactly the objects,
    /// types and values that writing it value by value (`put_new`, which edits use) builds.
    #[test]
    fn a_document_created_in_one_batch_equals_one_built_value_by_value() {
        let reg = registry().unwrap();
        for (kind, file) in [
            (
                DocKind::Survey,
                include_str!("../../../schemas/examples/survey.json"),
            ),
            (
                DocKind::Subject,
                include_str!("../../../schemas/examples/subject.json"),
            ),
            (
                DocKind::Case,
                include_str!("../../../schemas/examples/case.json"),
            ),
            (
                DocKind::VisitRecord,
                include_str!("../../../schemas/examples/visit-record.json"),
            ),
            (
                DocKind::Registration,
                include_str!("../../../schemas/examples/registration.json"),
            ),
            (
                DocKind::PlanRequest,
                include_str!("../../../schemas/examples/plan-request.json"),
            ),
        ] {
            let json: Value = serde_json::from_str(file).unwrap();
            let author = Author {
                device: "d".into(),
                device_name: "t".into(),
                staff: None,
                action: "import".into(),
                time_ms: 1,
            };
            let batch =
                CareDoc::create(DocId::random(), kind, &json, ActorId::random(), &author).unwrap();
            let root = reg.root(kind).unwrap();
            let mut one_by_one = AutoCommit::new();
            for (k, v) in json.as_object().unwrap() {
                let sub = reg.property(root, k);
                put_new(
                    &mut one_by_one,
                    &ObjId::Root,
                    Prop::Map(k.clone()),
                    v,
                    sub,
                    reg,
                )
                .unwrap();
            }
            assert_eq!(
                typed(&batch.doc, &ObjId::Root),
                typed(&one_by_one, &ObjId::Root),
                "{kind:?}"
            );
            assert_eq!(
                batch.to_json().unwrap(),
                json,
                "{kind:?} reads back as given"
            );
        }
    }

    /// A survey whose `items` holds a chain of `levels` nested maps, each level holding
    /// an alternate value written concurrently by a second actor (so every level is a
    /// conflict too).
    fn nested(levels: usize) -> AutoCommit {
        let mut doc = AutoCommit::new().with_actor(ActorId::from(vec![1; 16]));
        doc.put(ObjId::Root, "kind", "survey").unwrap();
        doc.put(ObjId::Root, "office", "1370100016").unwrap();
        let mut obj = doc.put_object(ObjId::Root, "items", ObjType::Map).unwrap();
        for _ in 1..levels {
            obj = doc.put_object(&obj, "x", ObjType::Map).unwrap();
        }
        doc.commit();
        doc
    }

    /// Catches: reading a document recursing once per level with no bound (a crafted
    /// document overflowed the stack: an abort of the relay).
    #[test]
    fn documents_nested_past_the_limit_are_refused_without_exhausting_the_stack() {
        // Root, then `items`, then the chain: exactly MAX_DOC_DEPTH maps in all.
        let at_limit = nested(MAX_DOC_DEPTH - 1);
        json_of(&at_limit, DocKind::Survey).unwrap();
        let over = nested(MAX_DOC_DEPTH);
        let err = json_of(&over, DocKind::Survey).unwrap_err();
        assert!(
            matches!(&err, DocError::TooDeep { field } if field == "/items"),
            "{err:?}"
        );
        // A hundred thousand levels (about 200 KB, well inside the intake bounds) overflowed
        // the stack; a thread with the stack of a relay's worker (tokio's 2 MiB) now reads
        // them, and lists their conflicts, without overflowing it.
        let mut deep = nested(100_000);
        let bytes = deep.save();
        assert!(bytes.len() < 1 << 20, "{}", bytes.len());
        let mut other = deep.fork().with_actor(ActorId::from(vec![2; 16]));
        other.put(ObjId::Root, "office", "1370100024").unwrap();
        deep.put(ObjId::Root, "office", "1370100016").unwrap();
        deep.merge(&mut other).unwrap();
        let doc = CareDoc {
            id: DocId::random(),
            kind: DocKind::Survey,
            doc: deep,
        };
        let read = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let mut doc = doc;
                let json = doc.to_json().map(drop);
                let conflicts = doc.conflicts().map(drop);
                (json, conflicts)
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(
            matches!(read.0, Err(DocError::TooDeep { .. })),
            "{:?}",
            read.0
        );
        assert!(
            matches!(read.1, Err(DocError::TooDeep { .. })),
            "{:?}",
            read.1
        );
    }
}
