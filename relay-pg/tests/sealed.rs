//! What PostgreSQL holds of a relay's data: after a day's worth of realistic documents
//! (every example of schemas/examples, with their registration evidence, actor bindings
//! with device names and sync state), a `pg_dump --data-only` of the database shows no
//! name, address, insured number, note text, office number, title, person key or card
//! certificate — neither as text nor as the hex of its UTF-8 bytes (how bytea dumps).

#![allow(clippy::unwrap_used)]

use musubi_engine::doc::{Author, CareDoc, title_of};
use musubi_engine::ids::DocId;
use musubi_engine::schema::DocKind;
use musubi_engine::sync::admission::EvidenceVerdict;
use musubi_engine::sync::frame::heads_of;
use musubi_engine::sync::sharing::{person_key, share_keys};
use musubi_engine::sync::storage::{PeerRecord, SyncWrite};
use musubi_engine::sync::{SyncBatch, SyncStorage};
use musubi_relay_pg::{DataKeys, PgError, PgOptions, PgStorage};

fn example(kind: &str) -> serde_json::Value {
    let path = format!(
        "{}/../schemas/examples/{kind}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn open(url: &str, hex: &str) -> Result<PgStorage, PgError> {
    PgStorage::open(&PgOptions::new(url), DataKeys::from_hex(hex)?)
}

#[test]
fn a_dump_of_the_database_holds_no_personal_data_in_the_clear() {
    let db = musubi_pgtest::database();
    let key = DataKeys::generate_hex().unwrap();
    let store = open(&db.url(), &key).unwrap();
    let author = Author {
        device: "0123456789abcdef0123456789abcdef".into(),
        device_name: "結城さん担当タブレット".into(),
        staff: Some("架空 太郎".into()),
        action: "import".into(),
        time_ms: 1_788_000_000_000,
    };
    let subject_id: DocId = "5f0c2a9e7b3d41c68e2f90a1b4c7d3e2".parse().unwrap();
    let mut writes = Vec::new();
    let mut titles = Vec::new();
    // A day: each example several times (different ids), as tablets of two offices sync.
    for round in 0..20 {
        for name in ["subject", "survey", "registration", "visit-record", "case"] {
            let json = example(name);
            let kind = DocKind::parse(name).unwrap();
            let id = if name == "subject" && round == 0 {
                subject_id
            } else {
                DocId::random()
            };
            let mut doc =
                CareDoc::create(id, kind, &json, automerge::ActorId::random(), &author).unwrap();
            let (bytes, am) = musubi_engine::doc::Snapshot::load(doc.save()).unwrap();
            let title = title_of(kind, &json);
            titles.push(title.clone());
            writes.push(SyncWrite::Insert {
                id,
                kind: name.to_owned(),
                office: json["office"].as_str().unwrap().to_owned(),
                title,
                bytes,
                heads: heads_of(&am),
                keys: share_keys(&am, name),
            });
            writes.push(SyncWrite::State {
                id,
                state: vec![0x42; 40],
                in_sync: true,
                heads: heads_of(&am),
            });
            if name == "registration" {
                writes.push(SyncWrite::Evidence {
                    id,
                    verdict: EvidenceVerdict {
                        person: person_key("131011", "0000012345"),
                        cert_fingerprint:
                            "3b7e0c1d9a2f4e6b8c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d"
                                .into(),
                        device: author.device.clone(),
                    },
                });
            }
        }
    }
    writes.push(SyncWrite::BindActor {
        actor: vec![9; 16],
        device: author.device.clone(),
        device_name: Some(author.device_name.clone()),
    });
    store
        .commit(SyncBatch {
            peer: author.device.clone(),
            reset_peer: false,
            writes,
            peer_record: Some(PeerRecord {
                epoch: Some(store.store_id()),
                cursor: 1,
                pushed_seq: 1,
                last_ok_ms: Some(1),
            }),
        })
        .unwrap();
    // The store works on what it sealed: the registration shares with its office.
    assert_eq!(store.catalog(&["1370100016".to_owned()]).unwrap().len(), 80);
    assert_eq!(
        store
            .cert_person("3b7e0c1d9a2f4e6b8c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d")
            .unwrap(),
        Some(person_key("131011", "0000012345"))
    );
    assert!(
        !store
            .shared_for_peer("x", &["1370100016".to_owned()], false)
            .unwrap()
            .ids
            .is_empty(),
        "the visit records of the other office are shared through the attested registration"
    );

    let dump = db.dump();
    assert!(
        dump.contains("COPY public.docs"),
        "the dump holds the tables"
    );
    let mut needles: Vec<String> = [
        "結城 花子",
        "ユウキ ハナコ",
        "結城",
        "架空 太郎",
        "結城 美咲",
        "架空 春香",
        "東京都千代田区架空町",
        "03-0000-1205",
        "090-0000-0000",
        "0000012345",
        "1944-05-12",
        "膝が痛む",
        "雨の日",
        "夜間",
        "1370100016",
        "1360100018",
        "結城さん担当タブレット",
        "3b7e0c1d9a2f4e6b8c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d",
        "survey",
        "registration",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    needles.push(person_key("131011", "0000012345"));
    needles.extend(titles.iter().filter(|t| t.chars().count() >= 4).cloned());
    for n in &needles {
        assert!(!dump.contains(n.as_str()), "{n:?} appears in the dump");
        assert!(
            !dump.contains(&hex::encode(n.as_bytes())),
            "{n:?} appears (hex) in the dump"
        );
    }

    // Another data key cannot open the database.
    drop(store);
    let err = open(&db.url(), &DataKeys::generate_hex().unwrap()).unwrap_err();
    assert!(matches!(err, PgError::WrongKey), "{err}");
    assert!(open(&db.url(), &key).is_ok());
}

/// Migrations from every earlier version (v0: an empty database) reach the latest, and
/// a database newer than this build is refused.
#[test]
fn migrations_run_from_every_earlier_version() {
    use musubi_relay_pg::schema::{LATEST, MIGRATIONS, migrate, migrate_to, version};
    assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(LATEST));
    for (i, (v, _)) in MIGRATIONS.iter().enumerate() {
        assert_eq!(
            *v,
            i32::try_from(i).unwrap() + 1,
            "migrations are numbered 1, 2, …"
        );
    }
    for start in 0..LATEST {
        let db = musubi_pgtest::database();
        let mut c = postgres::Client::connect(&db.url(), postgres::NoTls).unwrap();
        migrate_to(&mut c, start).unwrap();
        assert_eq!(version(&mut c).unwrap(), start);
        let key = DataKeys::generate_hex().unwrap();
        let keys = DataKeys::from_hex(&key).unwrap();
        // A document written at this version (v1 columns), which later versions keep.
        let id = DocId::random();
        let mut doc = automerge::AutoCommit::new();
        automerge::transaction::Transactable::put(&mut doc, automerge::ROOT, "kind", "survey")
            .unwrap();
        let bytes = doc.save();
        if start >= 1 {
            let idb = id.as_bytes().as_slice();
            // With its heads, so migration 4 (or from v4 on, the trigger) gives it its part
            // of the office's catalog digest.
            let heads = musubi_engine::sync::storage::pack_heads(&heads_of(doc.document()));
            c.execute(
                "INSERT INTO docs (id, kind_tag, office_tag, label, title, snapshot, seq, heads)
                 VALUES ($1, $2, $3, $4, $5, $6, 1, $7)",
                &[
                    &idb,
                    &keys.tag("kind", "survey"),
                    &keys.tag("office", "1370100016"),
                    &keys
                        .seal("docs.label", idb, br#"["survey","1370100016"]"#)
                        .unwrap(),
                    &keys.seal("docs.title", idb, b"t").unwrap(),
                    &keys.seal("docs.snapshot", idb, &bytes).unwrap(),
                    &heads,
                ],
            )
            .unwrap();
            c.execute("UPDATE seq_counter SET value = 1", &[]).unwrap();
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('store_id', 'x'), ('key_check', $1)",
                &[&hex::encode(
                    keys.seal("meta.key_check", b"", &keys.tag("check", "key check"))
                        .unwrap(),
                )],
            )
            .unwrap();
        }
        assert_eq!(migrate(&mut c).unwrap(), start);
        assert_eq!(version(&mut c).unwrap(), LATEST);
        drop(c);
        let s = open(&db.url(), &key).unwrap();
        assert_eq!(s.schema_version().unwrap(), LATEST);
        // v3: the device registry table, empty until a first change.
        assert_eq!(s.registry_version().unwrap(), None);
        if start >= 1 {
            assert_eq!(s.current_seq().unwrap(), 1);
            assert_eq!(
                s.lookup(&[id]).unwrap().len(),
                1,
                "the v{start} document is read"
            );
            let offices = ["1370100016".to_owned()];
            let digest = s.catalog_digest(&offices).unwrap();
            assert_eq!(
                digest,
                musubi_engine::sync::catalog_digest(&s.catalog(&offices).unwrap()),
                "the catalog digest of the v{start} document"
            );
            assert_ne!(digest, [0; 32]);
            // Written behind the storage's back: only migration 2 counts it.
            if start < 2 {
                let u = s.usage("1370100016", "nobody").unwrap();
                assert_eq!(
                    (u.office_docs, u.office_bytes),
                    (1, bytes.len() as u64),
                    "usage backfilled"
                );
            }
        } else {
            assert_eq!(s.current_seq().unwrap(), 0);
        }
    }
    let db = musubi_pgtest::database();
    let mut c = postgres::Client::connect(&db.url(), postgres::NoTls).unwrap();
    migrate(&mut c).unwrap();
    c.execute(
        "INSERT INTO schema_version (version) VALUES ($1)",
        &[&(LATEST + 1)],
    )
    .unwrap();
    let err = open(&db.url(), &DataKeys::generate_hex().unwrap()).unwrap_err();
    assert!(matches!(err, PgError::NewerSchema { .. }), "{err}");
}

/// The device registry row: changes through two nodes at once serialise (none lost), each
/// bumps the version, the text is sealed, and a row moved to another version does not open.
#[test]
fn registry_changes_serialise_across_nodes_and_stay_sealed() {
    let db = musubi_pgtest::database();
    let key = DataKeys::generate_hex().unwrap();
    let a = open(&db.url(), &key).unwrap();
    let b = open(&db.url(), &key).unwrap();
    assert_eq!(a.registry_load().unwrap(), None);
    // A change that declines writes nothing; an error writes nothing either.
    assert_eq!(a.registry_modify(|_| Ok::<_, ()>(None)).unwrap(), Ok(None));
    assert_eq!(
        a.registry_modify(|_| Err::<Option<Vec<u8>>, _>("no"))
            .unwrap(),
        Err("no")
    );
    assert_eq!(b.registry_version().unwrap(), None);
    std::thread::scope(|s| {
        for node in [&a, &b] {
            s.spawn(move || {
                for _ in 0..20 {
                    node.registry_modify(|cur| {
                        let mut text = cur.unwrap_or_default();
                        text.extend_from_slice(b"secret-device-name;");
                        Ok::<_, ()>(Some(text))
                    })
                    .unwrap()
                    .unwrap();
                }
            });
        }
    });
    let (version, text) = b.registry_load().unwrap().unwrap();
    assert_eq!(version, 40);
    assert_eq!(
        text.len(),
        40 * b"secret-device-name;".len(),
        "no change lost"
    );
    assert!(
        !db.dump().contains("secret-device-name"),
        "the registry is sealed"
    );
    // Rolled to another version, the sealed text no longer opens.
    let mut c = postgres::Client::connect(&db.url(), postgres::NoTls).unwrap();
    c.execute("UPDATE device_registry SET version = 39", &[])
        .unwrap();
    assert!(matches!(a.registry_load(), Err(PgError::Unsealable(_))));
    // Back at its own version it opens again.
    c.execute("UPDATE device_registry SET version = 40", &[])
        .unwrap();
    assert!(a.registry_load().is_ok());
}
