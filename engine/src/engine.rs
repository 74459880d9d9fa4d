//! The engine facade: validated imports, edits, exports, history and conflicts over the
//! encrypted store. The CLI and the app call only this.

use crate::doc::{Author, CareDoc, Conflict, DocError, HistoryEntry, apply_pointer, title_of};
use crate::ids::DocId;
use crate::schema::{self, DocKind, Issue, Pointer, Report, SchemaError, Severity};
use crate::store::{DocSummary, NewDoc, Store, StoreError};
use automerge::ActorId;
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// Errors of engine operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Input failed validation; nothing was written.
    #[error("{source_name}: invalid input")]
    Invalid {
        /// Which input (file name, or "value").
        source_name: String,
        /// The problems, each naming a JSON path.
        issues: Vec<Issue>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Document data failed.
    #[error(transparent)]
    Doc(#[from] DocError),
    /// Embedded schemas are broken.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// No such document.
    #[error("no document with id {0}")]
    NotFound(DocId),
}

/// What an import produced.
#[derive(Debug, Default)]
pub struct ImportOutcome {
    /// New ids, in input order.
    pub ids: Vec<DocId>,
    /// Non-blocking warnings, with the input name.
    pub warnings: Vec<(String, Issue)>,
}

/// What a `set` produced.
#[derive(Debug, Default)]
pub struct SetOutcome {
    /// False when the value was already there.
    pub changed: bool,
    /// Non-blocking warnings about the resulting document.
    pub warnings: Vec<Issue>,
    /// The document after the edit, as validated: what [`Engine::export`] returns now, so
    /// a caller that shows it (the app's form) need not read and decode it again.
    pub doc: Value,
}

/// The engine over one open store.
pub struct Engine {
    store: Arc<Store>,
    actor: ActorId,
    staff: Option<String>,
    /// The document last edited with [`Engine::set`], kept decoded: the form edits one
    /// document at a time, and reading and decoding it again for every field is most of
    /// an edit's time.
    open: Mutex<Option<OpenDoc>>,
}

/// A document kept decoded between edits, with the store's sequence number it is the
/// state of: any other write to the document (a sync, another engine) changes the number,
/// and the next edit reads the document again.
struct OpenDoc {
    id: DocId,
    seq: u64,
    doc: CareDoc,
    json: Value,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

fn invalid(source_name: &str, report: Report) -> EngineError {
    EngineError::Invalid {
        source_name: source_name.to_owned(),
        issues: report
            .issues
            .into_iter()
            .filter(|i| i.severity == Severity::Error)
            .collect(),
    }
}

/// Why a registration cannot be written through the generic paths.
/// Why a registration cannot be written through the generic paths: (Japanese, English).
const REGISTRATION_CREATE_ONLY_BY_CARD: (&str, &str) = (
    "本人確認・事業所登録は musubi card verify（アプリの本人確認）でのみ作成できます。",
    "a registration is created only by musubi card verify",
);
const REGISTRATION_CHANGE_ONLY_BY_REGISTER: (&str, &str) = (
    "本人確認・事業所登録は同意の記録（musubi register consent）と同意の撤回（musubi register withdraw）でのみ変更できます。",
    "a registration changes only by recording consent or a withdrawal",
);

fn refused_registration(source_name: &str, path: &str, (ja, en): (&str, &str)) -> EngineError {
    EngineError::Invalid {
        source_name: source_name.to_owned(),
        issues: vec![Issue::error(
            "registration",
            path,
            format!("{ja} ({en})"),
            ja,
        )],
    }
}

/// Most threads one import shares its checking and building among.
const MAX_IMPORT_THREADS: usize = 8;

/// What every input of one import shares.
struct ImportJob<'a> {
    office: &'a str,
    author: &'a Author,
    actor: &'a ActorId,
    allow_registration: bool,
}

/// One input, checked and built, ready to be written.
struct Prepared {
    doc: NewDoc,
    warnings: Vec<(String, Issue)>,
}

impl ImportJob<'_> {
    /// Checks one input (office filled in, schema, care guards, admission) and builds its
    /// automerge snapshot. Writes nothing.
    fn prepare(
        &self,
        (name, id, original): &(String, DocId, Value),
    ) -> Result<Prepared, EngineError> {
        let mut value = original.clone();
        if let Value::Object(map) = &mut value
            && !map.contains_key("office")
            && map.contains_key("kind")
        {
            map.insert("office".to_owned(), Value::String(self.office.to_owned()));
        }
        let (kind, report) = schema::validate_document(&value)?;
        if kind == DocKind::Registration && !self.allow_registration {
            return Err(refused_registration(
                name,
                "/kind",
                REGISTRATION_CREATE_ONLY_BY_CARD,
            ));
        }
        if !report.is_ok() {
            return Err(invalid(name, report));
        }
        let domain = crate::care::guard_import(kind, &value);
        if !domain.is_empty() {
            return Err(EngineError::Invalid {
                source_name: name.clone(),
                issues: domain,
            });
        }
        admission_rules(name, kind, None, &value)?;
        let warnings = report
            .warnings()
            .cloned()
            .map(|w| (name.clone(), w))
            .collect();
        let mut doc = CareDoc::create(*id, kind, &value, self.actor.clone(), self.author)?;
        let doc_office = value
            .get("office")
            .and_then(Value::as_str)
            .unwrap_or(self.office)
            .to_owned();
        Ok(Prepared {
            doc: NewDoc {
                id: *id,
                kind: kind.as_str().to_owned(),
                office: doc_office,
                title: title_of(kind, &value),
                keys: Some(crate::sync::sharing::share_keys(
                    doc.automerge().document(),
                    kind.as_str(),
                )),
                bytes: doc.snapshot(),
            },
            warnings,
        })
    }
}

/// The admission rules the engine's own validation does not already apply
/// ([`crate::admit::document`]): a tablet writes nothing the relay would refuse.
fn admission_rules(
    source_name: &str,
    kind: DocKind,
    before: Option<&Value>,
    candidate: &Value,
) -> Result<(), EngineError> {
    crate::admit::document::check_local(kind, before, candidate).map_err(|refused| {
        let (ja, en) = crate::admit::rejection_text(refused.code);
        EngineError::Invalid {
            source_name: source_name.to_owned(),
            issues: vec![Issue::error(
                refused.code,
                refused.field.unwrap_or_default(),
                format!("{ja} ({en})"),
                ja,
            )],
        }
    })
}

impl Engine {
    /// Wraps an open store. `staff` overrides the store's default staff member.
    pub fn new(store: Store, staff: Option<String>) -> Result<Engine, EngineError> {
        Engine::with_shared_store(Arc::new(store), staff)
    }

    /// Like [`Engine::new`] over a store that is shared, e.g. with the app's background
    /// sync ([`crate::net::sync_loop::SyncLoop`] takes an `Arc<Store>` too).
    pub fn with_shared_store(
        store: Arc<Store>,
        staff: Option<String>,
    ) -> Result<Engine, EngineError> {
        let info = store.info();
        let actor_bytes =
            hex::decode(&info.actor_hex).map_err(|_| StoreError::BadConfig { field: "actor" })?;
        let staff = staff.or_else(|| info.staff.clone());
        Ok(Engine {
            actor: ActorId::from(actor_bytes),
            store,
            staff,
            open: Mutex::new(None),
        })
    }

    /// The store underneath.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The shared store underneath (for the background sync).
    pub fn shared_store(&self) -> Arc<Store> {
        Arc::clone(&self.store)
    }

    /// Closes the store cleanly. If another owner still shares the store, it closes when
    /// the last one drops it (the store thread shuts down cleanly on drop).
    pub fn close(self) -> Result<(), EngineError> {
        match Arc::try_unwrap(self.store) {
            Ok(store) => Ok(store.close()?),
            Err(_) => Ok(()),
        }
    }

    fn author(&self, action: &str, now_ms: i64) -> Author {
        let info = self.store.info();
        Author {
            device: info.device_id.clone(),
            device_name: info.device_name.clone(),
            staff: self.staff.clone(),
            action: action.to_owned(),
            time_ms: now_ms,
        }
    }

    /// Who is recorded for workflow steps: the staff member, else the device name.
    pub fn who(&self) -> String {
        self.staff
            .clone()
            .unwrap_or_else(|| self.store.info().device_name.clone())
    }

    /// Validates every input first; if all pass, writes them in one transaction.
    /// Inputs are `(name, parsed JSON)`; the name is used in messages.
    pub fn import(
        &self,
        inputs: &[(String, Value)],
        now_ms: i64,
    ) -> Result<ImportOutcome, EngineError> {
        let with_ids: Vec<(String, DocId, Value)> = inputs
            .iter()
            .map(|(n, v)| (n.clone(), DocId::random(), v.clone()))
            .collect();
        self.import_with_ids(&with_ids, now_ms)
    }

    /// [`Engine::import`] with ids chosen by the caller (so documents can refer to each
    /// other, e.g. a case to its subject).
    ///
    /// A `registration` is refused: it is created only by [`crate::card::register`],
    /// from a card verification.
    pub fn import_with_ids(
        &self,
        inputs: &[(String, DocId, Value)],
        now_ms: i64,
    ) -> Result<ImportOutcome, EngineError> {
        self.import_checked(inputs, now_ms, false)
    }

    /// [`Engine::import_with_ids`] that may write a registration: only
    /// `card::register`, after a card verification, calls it.
    #[cfg_attr(not(feature = "card"), allow(dead_code))]
    pub(crate) fn import_registration_with_ids(
        &self,
        inputs: &[(String, DocId, Value)],
        now_ms: i64,
    ) -> Result<ImportOutcome, EngineError> {
        self.import_checked(inputs, now_ms, true)
    }

    fn import_checked(
        &self,
        inputs: &[(String, DocId, Value)],
        now_ms: i64,
        allow_registration: bool,
    ) -> Result<ImportOutcome, EngineError> {
        let office = self.store.info().office.clone();
        let author = self.author("import", now_ms);
        let job = ImportJob {
            office: &office,
            author: &author,
            actor: &self.actor,
            allow_registration,
        };
        // Each input is checked and built on its own, so the work is shared among the
        // cores (in input order: the first refused input is the one reported); nothing is
        // written unless every input passed.
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(MAX_IMPORT_THREADS);
        let chunk = inputs.len().div_ceil(threads).max(1);
        let prepared: Vec<Result<Vec<Prepared>, EngineError>> = if inputs.len() <= chunk {
            vec![inputs.iter().map(|input| job.prepare(input)).collect()]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = inputs
                    .chunks(chunk)
                    .map(|part| {
                        let job = &job;
                        scope.spawn(move || part.iter().map(|input| job.prepare(input)).collect())
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    })
                    .collect()
            })
        };
        let mut outcome = ImportOutcome::default();
        let mut docs = Vec::with_capacity(inputs.len());
        for part in prepared {
            for p in part? {
                outcome.warnings.extend(p.warnings);
                outcome.ids.push(p.doc.id);
                docs.push(p.doc);
            }
        }
        self.store.insert_docs(docs)?;
        Ok(outcome)
    }

    /// Loads a document.
    pub fn load(&self, id: DocId) -> Result<CareDoc, EngineError> {
        let stored = self.store.load_doc(id)?.ok_or(EngineError::NotFound(id))?;
        Ok(CareDoc::load(id, &stored.chunks, self.actor.clone())?)
    }

    /// The interchange JSON of a document.
    pub fn export(&self, id: DocId) -> Result<Value, EngineError> {
        Ok(self.load(id)?.to_json()?)
    }

    /// All documents.
    pub fn list(&self) -> Result<Vec<DocSummary>, EngineError> {
        Ok(self.store.list_docs()?)
    }

    /// Another office's document reaches this store only through registration-gated
    /// sharing, read-only: an edit here would never be accepted by the relay.
    fn guard_own_office(&self, source_name: &str, doc: &Value) -> Result<(), EngineError> {
        match doc.get("office").and_then(Value::as_str) {
            Some(office) if office != self.store.info().office => Err(EngineError::Invalid {
                source_name: source_name.to_owned(),
                issues: vec![Issue::error(
                    "read_only",
                    "/office",
                    "this document belongs to another office and is shared read-only \
                     (他の事業所の文書は閲覧のみです)",
                    "他の事業所の文書は閲覧のみです（変更できません）。",
                )],
            }),
            _ => Ok(()),
        }
    }

    /// Sets one field, validating the whole resulting document first.
    ///
    /// A registration is refused: it changes only through `card::register`
    /// (`record_consent`, `record_withdrawal`).
    pub fn set(
        &self,
        id: DocId,
        pointer: &Pointer,
        value: Value,
        now_ms: i64,
    ) -> Result<SetOutcome, EngineError> {
        self.set_checked(id, pointer, value, now_ms, false)
    }

    /// [`Engine::set`] on a registration, for `card::register`'s consent and withdrawal;
    /// the append-only rules of a registration still hold.
    #[cfg_attr(not(feature = "card"), allow(dead_code))]
    pub(crate) fn set_registration(
        &self,
        id: DocId,
        pointer: &Pointer,
        value: Value,
        now_ms: i64,
    ) -> Result<SetOutcome, EngineError> {
        self.set_checked(id, pointer, value, now_ms, true)
    }

    /// The document to edit and its JSON: the one kept from the last edit if nothing has
    /// written it since, else read and decoded from the store. Also its sequence number.
    fn open_for_edit(&self, id: DocId) -> Result<(CareDoc, Value, u64), EngineError> {
        let seq = self.store.doc_seq(id)?.ok_or(EngineError::NotFound(id))?;
        let kept = self
            .open
            .lock()
            .ok()
            .and_then(|mut open| open.take())
            .filter(|o| o.id == id && o.seq == seq);
        if let Some(o) = kept {
            return Ok((o.doc, o.json, o.seq));
        }
        // Read after the number: if a write lands in between, the document is newer than
        // `seq` says, and the next edit only reads it again.
        let doc = self.load(id)?;
        let json = doc.to_json()?;
        Ok((doc, json, seq))
    }

    /// Keeps `doc` decoded for the next edit, as the state of the store at `seq`.
    fn keep_open(&self, id: DocId, seq: u64, doc: CareDoc, json: Value) {
        if let Ok(mut open) = self.open.lock() {
            *open = Some(OpenDoc { id, seq, doc, json });
        }
    }

    fn set_checked(
        &self,
        id: DocId,
        pointer: &Pointer,
        value: Value,
        now_ms: i64,
        registration: bool,
    ) -> Result<SetOutcome, EngineError> {
        let (mut doc, before, seq) = self.open_for_edit(id)?;
        let source_name = format!("value for {pointer}");
        if (doc.kind() == DocKind::Registration) != registration {
            return Err(refused_registration(
                &source_name,
                &pointer.to_string(),
                if registration {
                    (
                        "本人確認・事業所登録ではありません。",
                        "not a registration document",
                    )
                } else {
                    REGISTRATION_CHANGE_ONLY_BY_REGISTER
                },
            ));
        }
        let mut candidate = before.clone();
        self.guard_own_office(&source_name, &candidate)?;
        if let Err(reason) = apply_pointer(&mut candidate, pointer, value.clone()) {
            return Err(EngineError::Invalid {
                source_name,
                issues: vec![Issue::error(
                    "path",
                    pointer.to_string(),
                    reason,
                    "この項目には書き込めません（書類の形と合いません）。",
                )],
            });
        }
        if pointer.tokens().first().map(String::as_str) == Some("kind") {
            return Err(EngineError::Invalid {
                source_name,
                issues: vec![Issue::error(
                    "kind_change",
                    "/kind",
                    "the kind of a document cannot be changed",
                    "書類の種類は変更できません。",
                )],
            });
        }
        let (kind, report) = schema::validate_document(&candidate)?;
        if kind != doc.kind() || !report.is_ok() {
            return Err(invalid(&source_name, report));
        }
        let domain = crate::care::guard_set(kind, &before, &candidate, pointer);
        if !domain.is_empty() {
            return Err(EngineError::Invalid {
                source_name,
                issues: domain,
            });
        }
        admission_rules(&source_name, kind, Some(&before), &candidate)?;
        let mut warnings: Vec<Issue> = report.warnings().cloned().collect();
        if kind == DocKind::Survey {
            // The consistency warnings, live on every edit (never blocking).
            warnings.extend(crate::care::open_warnings_as_issues(&candidate));
        }
        let author = self.author("set", now_ms);
        let change = doc.set(pointer, &value, &author)?;
        let changed = change.is_some();
        let now = match change {
            Some(bytes) => {
                let appended =
                    self.store
                        .append_changes(id, vec![bytes], title_of(kind, &candidate))?;
                // Kept only if the store held exactly this document plus the change: a
                // write in between (a sync) is merged by the store, not in `doc`.
                (appended.previous_seq == seq).then_some(appended.seq)
            }
            None => Some(seq),
        };
        if let Some(now) = now {
            self.keep_open(id, now, doc, candidate.clone());
        }
        Ok(SetOutcome {
            changed,
            warnings,
            doc: candidate,
        })
    }

    /// Applies several edits as one batch (the care workflow: complete, submit, amend,
    /// dismiss). The resulting document must pass its schema and the domain rules of
    /// [`crate::care::guard_import`]; the caller has applied the workflow rules. The
    /// history records `action`. Returns false when nothing changed.
    pub fn apply_edits(
        &self,
        id: DocId,
        edits: &[(Pointer, Value)],
        action: &str,
        now_ms: i64,
    ) -> Result<bool, EngineError> {
        let mut doc = self.load(id)?;
        let source_name = format!("{action} of {id}");
        if doc.kind() == DocKind::Registration {
            return Err(refused_registration(
                &source_name,
                "/kind",
                REGISTRATION_CHANGE_ONLY_BY_REGISTER,
            ));
        }
        let before = doc.to_json()?;
        let mut candidate = before.clone();
        self.guard_own_office(&source_name, &candidate)?;
        if let Some(message) = crate::care::workflow::guard_batch(doc.kind(), &candidate, action) {
            return Err(EngineError::Invalid {
                source_name,
                issues: vec![Issue::error(
                    "workflow",
                    "/status",
                    message.clone(),
                    message,
                )],
            });
        }
        for (pointer, value) in edits {
            if let Err(reason) = apply_pointer(&mut candidate, pointer, value.clone()) {
                return Err(EngineError::Invalid {
                    source_name,
                    issues: vec![Issue::error(
                        "path",
                        pointer.to_string(),
                        reason,
                        "この項目には書き込めません（書類の形と合いません）。",
                    )],
                });
            }
        }
        let (kind, report) = schema::validate_document(&candidate)?;
        if kind != doc.kind() || !report.is_ok() {
            return Err(invalid(&source_name, report));
        }
        let domain = crate::care::guard_import(kind, &candidate);
        if !domain.is_empty() {
            return Err(EngineError::Invalid {
                source_name,
                issues: domain,
            });
        }
        admission_rules(&source_name, kind, Some(&before), &candidate)?;
        let author = self.author(action, now_ms);
        let mut changes = Vec::new();
        for (pointer, value) in edits {
            if let Some(bytes) = doc.set(pointer, value, &author)? {
                changes.push(bytes);
            }
        }
        let changed = !changes.is_empty();
        if changed {
            self.store
                .append_changes(id, changes, title_of(kind, &candidate))?;
        }
        Ok(changed)
    }

    /// The audit history of a document, each change with the device the relay attests
    /// for it (from the actor bindings the relay sent at sync).
    pub fn history(&self, id: DocId) -> Result<Vec<HistoryEntry>, EngineError> {
        let mut entries = self.load(id)?.history()?;
        let bindings = self
            .store
            .actor_bindings(&crate::doc::history_actors(&entries))?;
        crate::doc::attest_history(&mut entries, &bindings);
        Ok(entries)
    }

    /// Fields with concurrent values.
    pub fn conflicts(&self, id: DocId) -> Result<Vec<Conflict>, EngineError> {
        Ok(self.load(id)?.conflicts()?)
    }

    /// Merges another copy of a document (e.g. from another device) and stores the
    /// changes this store did not have. Returns how many changes were new.
    pub fn merge_from(&self, other: &mut CareDoc) -> Result<usize, EngineError> {
        let id = other.id();
        let mut doc = self.load(id)?;
        let before = doc.automerge().get_heads();
        doc.merge(other)?;
        let new_changes: Vec<Vec<u8>> = doc
            .automerge()
            .get_changes(&before)
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect();
        let n = new_changes.len();
        if n > 0 {
            self.store.append_changes(id, new_changes, doc.title())?;
        }
        Ok(n)
    }

    /// The kind of a document without loading it all.
    pub fn kind_of(&self, id: DocId) -> Result<DocKind, EngineError> {
        Ok(self.load(id)?.kind())
    }

    /// The name of a case's person from its subject document, if that is in this store.
    pub fn case_subject_name(&self, case: &Value) -> Option<String> {
        let id: DocId = case.get("subject_id")?.as_str()?.parse().ok()?;
        let subject = self.export(id).ok()?;
        subject
            .pointer("/person/name")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// The listing rows of every case in the store, by application date: the care
    /// manager's listing of `musubi case list` and the app's progress board. The rules
    /// themselves are the pure `care::case::row`.
    pub fn case_rows(
        &self,
        today: &str,
        rules: &crate::care::case::CaseRules,
    ) -> Result<Vec<crate::care::case::CaseRow>, EngineError> {
        let mut rows = Vec::new();
        for d in self.list()? {
            if d.kind != DocKind::Case.as_str() {
                continue;
            }
            let doc = self.export(d.id)?;
            let name = self.case_subject_name(&doc);
            rows.push(crate::care::case::row(
                &d.id.to_string(),
                &doc,
                name,
                today,
                rules,
            ));
        }
        rows.sort_by(|a, b| a.application_date.cmp(&b.application_date));
        Ok(rows)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::{InitOptions, SecretString};
    use serde_json::json;

    const OFFICE: &str = "1370100016";

    fn engine(dir: &tempfile::TempDir) -> Engine {
        let store = Store::init(
            &dir.path().join("data"),
            &SecretString::from("passphrase for tests".to_owned()),
            InitOptions {
                office: OFFICE.to_owned(),
                device_name: "tablet-a".to_owned(),
                staff: Some("職員".to_owned()),
                kdf_work_factor: Some(10),
                ..InitOptions::default()
            },
        )
        .unwrap();
        Engine::new(store, None).unwrap()
    }

    /// A registration as written before card evidence existed, without its office (the
    /// store fills it in).
    fn registration() -> Value {
        let mut r: Value = serde_json::from_str(include_str!(
            "../tests/data/registration-without-evidence.json"
        ))
        .unwrap();
        r.as_object_mut().unwrap().remove("office");
        r
    }

    fn subject() -> Value {
        serde_json::from_str(include_str!("../../schemas/examples/subject.json")).unwrap()
    }

    fn ptr(p: &str) -> Pointer {
        Pointer::parse(p).unwrap()
    }

    fn refusal(r: Result<impl std::fmt::Debug, EngineError>) -> Issue {
        match r {
            Err(EngineError::Invalid { mut issues, .. }) => issues.remove(0),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// What the store holds: every document's JSON and history length, the sequence.
    fn state(e: &Engine) -> Vec<(DocId, Value, usize)> {
        let mut out: Vec<_> = e
            .list()
            .unwrap()
            .into_iter()
            .map(|d| {
                (
                    d.id,
                    e.export(d.id).unwrap(),
                    e.history(d.id).unwrap().len(),
                )
            })
            .collect();
        out.sort_by_key(|x| x.0);
        out
    }

    #[test]
    fn registrations_are_created_only_by_the_card_path() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(&dir);
        let issue = refusal(e.import(&[("reg.json".to_owned(), registration())], 1));
        assert_eq!(issue.path, "/kind");
        assert!(issue.message.contains("musubi card verify"), "{issue:?}");
        // Also inside a batch with a valid document: nothing is written.
        let r = e.import_with_ids(
            &[
                ("s.json".to_owned(), DocId::random(), subject()),
                ("r.json".to_owned(), DocId::random(), registration()),
            ],
            1,
        );
        refusal(r);
        assert!(e.list().unwrap().is_empty());
        // The crate-private path (card::register) writes it.
        let id = DocId::random();
        e.import_registration_with_ids(&[("r".to_owned(), id, registration())], 1)
            .unwrap();
        assert_eq!(e.export(id).unwrap()["office"], OFFICE);
    }

    #[test]
    fn registrations_change_only_by_consent_and_withdrawal_append_only() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(&dir);
        let id = DocId::random();
        e.import_registration_with_ids(&[("r".to_owned(), id, registration())], 1)
            .unwrap();
        let before = state(&e);
        // The generic paths refuse every edit of a registration.
        let issue = refusal(e.set(id, &ptr("/verification/result"), json!("failed"), 2));
        assert!(
            issue.message.contains("musubi register consent"),
            "{issue:?}"
        );
        refusal(e.set(id, &ptr("/withdrawals/-"), json!({"date": "2026-10-01"}), 2));
        refusal(e.apply_edits(id, &[(ptr("/withdrawals"), json!([]))], "amend", 2));
        assert_eq!(state(&e), before);
        // The registration path obeys the append-only rules.
        let issue =
            refusal(e.set_registration(id, &ptr("/verification/result"), json!("failed"), 2));
        assert_eq!(issue.path, "/verification");
        assert!(
            issue.message.starts_with("本人確認・担当事業所登録は"),
            "{issue:?}"
        );
        refusal(e.set_registration(
            id,
            &ptr("/subject_id"),
            json!("00000000000000000000000000000001"),
            2,
        ));
        assert_eq!(state(&e), before);
        let consent = json!({"consented_by": "試験 花子", "scope": ["閲覧"],
                             "date": "2026-09-01", "method": "signature"});
        assert!(
            e.set_registration(id, &ptr("/consent"), consent, 3)
                .unwrap()
                .changed
        );
        let issue = refusal(e.set_registration(id, &ptr("/consent/method"), json!("verbal"), 4));
        assert_eq!(issue.path, "/consent");
        assert!(
            e.set_registration(id, &ptr("/withdrawals/-"), json!({"date": "2026-10-01"}), 5)
                .unwrap()
                .changed
        );
        let issue =
            refusal(e.set_registration(id, &ptr("/withdrawals/0/date"), json!("2026-10-02"), 6));
        assert_eq!(issue.path, "/withdrawals");
        let doc = e.export(id).unwrap();
        assert_eq!(doc["consent"]["method"], "signature");
        assert_eq!(doc["withdrawals"], json!([{"date": "2026-10-01"}]));
        // And it is for registrations only.
        let other = e.import(&[("s".to_owned(), subject())], 1).unwrap().ids[0];
        refusal(e.set_registration(other, &ptr("/person/name"), json!("試験 一郎"), 7));
    }

    /// The document a set returns is the one the store now holds, for every shape of
    /// edit the form makes: a choice, a nested field, a new object, a text, an appended
    /// note, a number replaced by the same number as a float.
    #[test]
    fn a_set_returns_what_export_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(&dir);
        let mut survey: Value =
            serde_json::from_str(include_str!("../../schemas/examples/survey.json")).unwrap();
        survey["status"] = json!("draft");
        let id = e.import(&[("s".to_owned(), survey)], 1).unwrap().ids[0];
        let edits = [
            ("/items/1-3", json!(2)),
            ("/items/1-1", json!([2, 4])),
            ("/overview/conducted/date", json!("2026-11-30")),
            ("/subject/name_kana", json!("かくう はなこ")),
            (
                "/special_notes/-",
                json!({"item": "1-3", "text": "寝返りは柵につかまって行う。"}),
            ),
            ("/items/1-4", json!(1.0)),
        ];
        for (n, (p, v)) in edits.into_iter().enumerate() {
            let out = e.set(id, &ptr(p), v, 10 + n as i64).unwrap();
            assert_eq!(out.doc, e.export(id).unwrap(), "after {p}");
        }
    }

    /// Catches: the document kept decoded between edits going stale: another writer (a
    /// second engine on the same store, as the app's background sync is) changes it
    /// between two edits, and the second edit must build on that write, not lose it.
    #[test]
    fn an_edit_after_another_writer_builds_on_its_write() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(&dir);
        let other = Engine::with_shared_store(e.shared_store(), None).unwrap();
        let mut survey: Value =
            serde_json::from_str(include_str!("../../schemas/examples/survey.json")).unwrap();
        survey["status"] = json!("draft");
        let id = e.import(&[("s".to_owned(), survey)], 1).unwrap().ids[0];
        e.set(id, &ptr("/items/1-3"), json!(2), 10).unwrap();
        // Kept: the next edit of the same document starts from it.
        e.set(id, &ptr("/items/1-4"), json!(2), 11).unwrap();
        other.set(id, &ptr("/items/1-5"), json!(2), 12).unwrap();
        let out = e.set(id, &ptr("/items/1-6"), json!(2), 13).unwrap();
        for item in ["1-3", "1-4", "1-5", "1-6"] {
            assert_eq!(
                out.doc["items"][item],
                json!(2),
                "{item} in what set returned"
            );
        }
        assert_eq!(out.doc, e.export(id).unwrap());
        // And an edit of another document in between does not confuse them.
        let second = e.import(&[("t".to_owned(), subject())], 14).unwrap().ids[0];
        e.set(second, &ptr("/person/name"), json!("試験 花子"), 15)
            .unwrap();
        let out = e.set(id, &ptr("/items/1-7"), json!(2), 16).unwrap();
        assert_eq!(out.doc, e.export(id).unwrap());
    }

    #[test]
    fn local_writes_pass_the_admission_rules() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(&dir);
        let id = e.import(&[("s".to_owned(), subject())], 1).unwrap().ids[0];
        // The office of a document never changes, not even to a valid office number.
        let issue = refusal(e.set(id, &ptr("/office"), json!("1370100024"), 2));
        assert_eq!(issue.path, "/office");
        assert!(issue.message.contains("forbidden") || issue.message.contains("書き込めません"));
        assert_eq!(e.export(id).unwrap()["office"], OFFICE);
    }
}
