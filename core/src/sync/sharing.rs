//! Registration-gated sharing: which documents of *other* offices a device may read.
//!
//! An office sees a person's documents held by another office only while it has a valid
//! registration for that person (本人確認 with the My Number card + consent, not withdrawn).
//! The relay derives, for every stored document, a few [`ShareKeys`] from its content:
//!
//! - `person`: a pseudonymous key of the insured person, SHA-256 over 保険者番号 and
//!   被保険者番号 (surveys: `subject.*`; subjects: `person.*`; cases: `application.*`), so the
//!   index holds no insured number in the clear;
//! - `subject_ref`: the subject document a registration or visit record points at;
//! - `reg_valid`: for a registration, whether consent is recorded and not withdrawn.
//!
//! What the content says about the card check counts for nothing: a registration grants
//! sharing only with the *attested person* the relay verified from its card evidence when
//! it first stored it ([`super::admission::EvidenceVerdict`]), and only while that person
//! is the current person of the subject document the registration points at (a subject
//! re-pointed to another person voids it).
//!
//! A device of offices `O` may then read a document `d` of another office when `d` is not a
//! registration and `d`'s person (directly, or through the subject it points at) is the
//! person of a subject document that a valid, attested registration of `O` points at.
//! Sharing is read-only: changes to another office's document are refused like any other
//! write outside the device's offices. Withdrawing consent stops further sharing; what a
//! device already received stays on it (a CRDT cannot be recalled).

use std::collections::{HashMap, HashSet};

use automerge::{Automerge, ObjType, ReadDoc, Value};
use sha2::{Digest, Sha256};

use crate::ids::DocId;

/// What the sharing rule needs to know of one document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShareKeys {
    /// Pseudonymous person key (lower-case hex SHA-256), if the document names one.
    pub person: Option<String>,
    /// The subject document a registration or visit record points at.
    pub subject_ref: Option<DocId>,
    /// A registration with consent recorded and not withdrawn (its card evidence is
    /// judged separately, by the relay).
    pub reg_valid: bool,
}

/// The kind of document that grants sharing.
pub const REGISTRATION_KIND: &str = "registration";

/// The pseudonymous person key of an insured person.
pub fn person_key(insurer_number: &str, insured_number: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"musubi person v1\0");
    h.update(insurer_number.trim().as_bytes());
    h.update(b"\0");
    h.update(insured_number.trim().as_bytes());
    hex::encode(h.finalize())
}

fn get_obj(
    doc: &Automerge,
    obj: &automerge::ObjId,
    key: &str,
) -> Option<(Value<'static>, automerge::ObjId)> {
    doc.get(obj, key)
        .ok()
        .flatten()
        .map(|(v, id)| (v.into_owned(), id))
}

fn map_at(doc: &Automerge, path: &[&str]) -> Option<automerge::ObjId> {
    let mut obj = automerge::ROOT;
    for key in path {
        match get_obj(doc, &obj, key)? {
            (Value::Object(ObjType::Map), id) => obj = id,
            _ => return None,
        }
    }
    Some(obj)
}

fn str_at(doc: &Automerge, path: &[&str]) -> Option<String> {
    let (last, parents) = path.split_last()?;
    let obj = map_at(doc, parents)?;
    match get_obj(doc, &obj, last)? {
        (Value::Scalar(s), _) => match s.as_ref() {
            automerge::ScalarValue::Str(v) => Some(v.to_string()),
            _ => None,
        },
        (Value::Object(ObjType::Text), id) => doc.text(&id).ok(),
        _ => None,
    }
}

fn person_at(doc: &Automerge, block: &str) -> Option<String> {
    let insurer = str_at(doc, &[block, "insurer_number"])?;
    let insured = str_at(doc, &[block, "insured_number"])?;
    (!insurer.trim().is_empty() && !insured.trim().is_empty())
        .then(|| person_key(&insurer, &insured))
}

/// Whether a registration document's consent stands (consent recorded, no withdrawal).
fn registration_valid(doc: &Automerge) -> bool {
    let consented = map_at(doc, &["consent"])
        .is_some_and(|c| str_at(doc, &["consent", "date"]).is_some() && doc.length(&c) > 0);
    let withdrawn = match get_obj(doc, &automerge::ROOT, "withdrawals") {
        Some((Value::Object(ObjType::List), id)) => doc.length(&id) > 0,
        // Anything else in the place of the list is not a clean registration.
        Some(_) => true,
        None => false,
    };
    consented && !withdrawn
}

/// Derives the sharing keys of a document of `kind`.
pub fn share_keys(doc: &Automerge, kind: &str) -> ShareKeys {
    let subject_ref = || str_at(doc, &["subject_id"]).and_then(|s| s.trim().parse::<DocId>().ok());
    match kind {
        "survey" => ShareKeys {
            person: person_at(doc, "subject"),
            ..ShareKeys::default()
        },
        "subject" => ShareKeys {
            person: person_at(doc, "person"),
            ..ShareKeys::default()
        },
        "case" => ShareKeys {
            person: person_at(doc, "application"),
            subject_ref: subject_ref(),
            ..ShareKeys::default()
        },
        REGISTRATION_KIND => ShareKeys {
            person: None,
            subject_ref: subject_ref(),
            reg_valid: registration_valid(doc),
        },
        _ => ShareKeys {
            subject_ref: subject_ref(),
            ..ShareKeys::default()
        },
    }
}

/// One stored document as the sharing rule sees it.
#[derive(Clone, Debug)]
pub struct ShareRow {
    /// The document.
    pub id: DocId,
    /// Its kind.
    pub kind: String,
    /// Its owning office.
    pub office: String,
    /// Its keys.
    pub keys: ShareKeys,
    /// For a registration: the person key its card evidence was verified for by this relay
    /// (`None`: not verified here, grants nothing).
    pub attested_person: Option<String>,
}

/// The documents of other offices that a device of `offices` may read (the rule of the
/// module documentation), computed over every stored document. The SQLCipher store
/// answers the same question in SQL; this is the reference used by the in-memory store.
pub fn shared_ids(rows: &[ShareRow], offices: &[String]) -> HashSet<DocId> {
    let by_id: HashMap<DocId, &ShareRow> = rows.iter().map(|r| (r.id, r)).collect();
    let persons: HashSet<&str> = rows
        .iter()
        .filter(|r| r.kind == REGISTRATION_KIND && r.keys.reg_valid && offices.contains(&r.office))
        .filter_map(|r| {
            let subject = by_id.get(&r.keys.subject_ref?)?;
            let person = subject.keys.person.as_deref()?;
            (r.attested_person.as_deref() == Some(person)).then_some(person)
        })
        .collect();
    if persons.is_empty() {
        return HashSet::new();
    }
    fn person_of<'a>(r: &'a ShareRow, by_id: &HashMap<DocId, &'a ShareRow>) -> Option<&'a str> {
        r.keys.person.as_deref().or_else(|| {
            r.keys
                .subject_ref
                .and_then(|s| by_id.get(&s))
                .and_then(|s| s.keys.person.as_deref())
        })
    }
    rows.iter()
        .filter(|r| r.kind != REGISTRATION_KIND && !offices.contains(&r.office))
        .filter(|r| person_of(r, &by_id).is_some_and(|p| persons.contains(p)))
        .map(|r| r.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;

    fn doc(build: impl FnOnce(&mut automerge::transaction::Transaction<'_>)) -> Automerge {
        let mut d = Automerge::new();
        let mut tx = d.transaction();
        build(&mut tx);
        tx.commit();
        d
    }

    fn registration(withdrawals: usize, result: &str, consent: bool) -> Automerge {
        doc(|tx| {
            tx.put(automerge::ROOT, "kind", "registration").ok();
            tx.put(
                automerge::ROOT,
                "subject_id",
                "5f0c2a9e7b3d41c68e2f90a1b4c7d3e2",
            )
            .ok();
            if let Ok(v) = tx.put_object(automerge::ROOT, "verification", ObjType::Map) {
                tx.put(&v, "result", result).ok();
            }
            if consent && let Ok(c) = tx.put_object(automerge::ROOT, "consent", ObjType::Map) {
                tx.put(&c, "date", "2026-09-01").ok();
            }
            if let Ok(w) = tx.put_object(automerge::ROOT, "withdrawals", ObjType::List) {
                for i in 0..withdrawals {
                    if let Ok(m) = tx.insert_object(&w, i, ObjType::Map) {
                        tx.put(&m, "date", "2026-10-01").ok();
                    }
                }
            }
        })
    }

    #[test]
    fn registration_validity_needs_consent_and_no_withdrawal_and_ignores_the_claimed_result() {
        assert!(share_keys(&registration(0, "verified", true), "registration").reg_valid);
        assert!(!share_keys(&registration(1, "verified", true), "registration").reg_valid);
        assert!(!share_keys(&registration(0, "verified", false), "registration").reg_valid);
        // The device's claim is no evidence: the relay's own verdict decides (shared_ids).
        assert_eq!(
            share_keys(&registration(0, "failed", true), "registration").reg_valid,
            share_keys(&registration(0, "verified", true), "registration").reg_valid
        );
        let keys = share_keys(&registration(0, "verified", true), "registration");
        assert_eq!(
            keys.subject_ref.map(|d| d.to_string()).as_deref(),
            Some("5f0c2a9e7b3d41c68e2f90a1b4c7d3e2")
        );
    }

    #[test]
    fn survey_and_subject_of_one_person_share_a_key_that_hides_the_number() {
        let survey = doc(|tx| {
            if let Ok(s) = tx.put_object(automerge::ROOT, "subject", ObjType::Map) {
                tx.put(&s, "insurer_number", "131011").ok();
                tx.put(&s, "insured_number", "0000012345").ok();
            }
        });
        let subject = doc(|tx| {
            if let Ok(s) = tx.put_object(automerge::ROOT, "person", ObjType::Map) {
                tx.put(&s, "insurer_number", "131011").ok();
                tx.put(&s, "insured_number", "0000012345").ok();
            }
        });
        let a = share_keys(&survey, "survey").person;
        let b = share_keys(&subject, "subject").person;
        assert!(a.is_some());
        assert_eq!(a, b);
        assert!(!a.unwrap_or_default().contains("12345"));
        assert_ne!(
            person_key("131011", "0000012345"),
            person_key("131011", "0000012346")
        );
    }

    #[test]
    fn a_plan_request_is_shared_through_its_subject_like_a_visit_record() {
        let subject = DocId::random();
        let keys_of = |kind: &str| {
            let mut doc = Automerge::new();
            doc.transact::<_, _, automerge::AutomergeError>(|tx| {
                tx.put(automerge::ROOT, "kind", kind)?;
                tx.put(automerge::ROOT, "subject_id", subject.to_string())?;
                Ok(())
            })
            .ok();
            share_keys(&doc, kind)
        };
        let notice = keys_of("plan-request");
        assert_eq!(notice.subject_ref, Some(subject));
        assert_eq!(
            (notice.person, notice.reg_valid),
            (None, false),
            "a notice grants nothing"
        );
        assert_eq!(
            keys_of("visit-record").subject_ref,
            notice.subject_ref,
            "gated as a visit record is"
        );
    }

    fn row(id: DocId, kind: &str, office: &str, keys: ShareKeys) -> ShareRow {
        ShareRow {
            id,
            kind: kind.to_owned(),
            office: office.to_owned(),
            keys,
            attested_person: None,
        }
    }

    #[test]
    fn shared_only_with_a_valid_registration_of_the_reading_office() {
        let p = person_key("131011", "0000012345");
        let other = person_key("131011", "0000099999");
        let (a_survey, a_subject, a_reg, a_visit) = (
            DocId::random(),
            DocId::random(),
            DocId::random(),
            DocId::random(),
        );
        let (b_subject, b_reg, a_other) = (DocId::random(), DocId::random(), DocId::random());
        let mut rows = vec![
            row(
                a_survey,
                "survey",
                "A",
                ShareKeys {
                    person: Some(p.clone()),
                    ..Default::default()
                },
            ),
            row(
                a_subject,
                "subject",
                "A",
                ShareKeys {
                    person: Some(p.clone()),
                    ..Default::default()
                },
            ),
            row(
                a_reg,
                "registration",
                "A",
                ShareKeys {
                    subject_ref: Some(a_subject),
                    reg_valid: true,
                    ..Default::default()
                },
            ),
            row(
                a_visit,
                "visit-record",
                "A",
                ShareKeys {
                    subject_ref: Some(a_subject),
                    ..Default::default()
                },
            ),
            row(
                a_other,
                "survey",
                "A",
                ShareKeys {
                    person: Some(other.clone()),
                    ..Default::default()
                },
            ),
            row(
                b_subject,
                "subject",
                "B",
                ShareKeys {
                    person: Some(p.clone()),
                    ..Default::default()
                },
            ),
        ];
        if let Some(r) = rows.iter_mut().find(|r| r.id == a_reg) {
            r.attested_person = Some(p.clone());
        }
        let b = vec!["B".to_owned()];
        assert!(
            shared_ids(&rows, &b).is_empty(),
            "no registration, nothing shared"
        );
        rows.push(row(
            b_reg,
            "registration",
            "B",
            ShareKeys {
                subject_ref: Some(b_subject),
                reg_valid: false,
                ..Default::default()
            },
        ));
        assert!(
            shared_ids(&rows, &b).is_empty(),
            "an invalid registration shares nothing"
        );
        if let Some(r) = rows.last_mut() {
            r.keys.reg_valid = true;
        }
        assert!(
            shared_ids(&rows, &b).is_empty(),
            "a registration whose card evidence the relay did not verify shares nothing"
        );
        if let Some(r) = rows.last_mut() {
            r.attested_person = Some(other.clone());
        }
        assert!(
            shared_ids(&rows, &b).is_empty(),
            "evidence for another person than the subject's shares nothing"
        );
        if let Some(r) = rows.last_mut() {
            r.attested_person = Some(p.clone());
        }
        let shared = shared_ids(&rows, &b);
        let want: HashSet<DocId> = [a_survey, a_subject, a_visit].into_iter().collect();
        assert_eq!(
            shared, want,
            "the person's documents, not A's registration, not others"
        );
        // A's own valid registration gives A the person's documents at B.
        let for_a: HashSet<DocId> = [b_subject].into_iter().collect();
        assert_eq!(shared_ids(&rows, &["A".to_owned()]), for_a);
        // B's subject re-pointed to another person: B's registration voids at once.
        if let Some(r) = rows.iter_mut().find(|r| r.id == b_subject) {
            r.keys.person = Some(other.clone());
        }
        assert!(
            shared_ids(&rows, &b).is_empty(),
            "a re-pointed subject still shares"
        );
    }
}
