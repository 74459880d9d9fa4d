//! A hostile enrolled device against a real `musubi-relay serve` (issue 15, second part):
//! decompression bombs and quota exhaustion, with the relay's resident memory read from
//! /proc while an honest tablet syncs beside the attacker. The client writes its frames
//! itself (tests/src/raw_client.rs). Stated bounds: the relay's peak resident memory
//! (VmHWM) stays under [`RSS_BOUND_KIB`]; the honest sync completes within
//! [`HONEST_WITHIN`]; nothing of a refused document is written.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use musubi_engine::doc::{Author, CareDoc};
use musubi_engine::ids::DocId;
use musubi_engine::schema::DocKind;
use musubi_engine::sync::Frame;
use musubi_tests::e2e::{Device, OFFICE, Relay, RelayProcess, survey_path};
use musubi_tests::raw_client::{RawClient, credentials};
use serde_bytes::ByteBuf;
use serde_json::json;

/// Peak resident memory of the relay process: a bomb inflated without a bound would take
/// at least its 512 MiB.
const RSS_BOUND_KIB: u64 = 256 * 1024;
/// The honest tablet's sync beside the attack.
const HONEST_WITHIN: Duration = Duration::from_secs(20);
/// What the bomb inflates to.
const BOMB_BYTES: u64 = 512 << 20;

struct World {
    _tmp: tempfile::TempDir,
    _relay: Relay,
    server: RelayProcess,
    honest: Device,
    mallory: musubi_engine::net::tls::DeviceCredentials,
}

/// A relay whose `relay.toml` sets `limits` (a `[limits]` table body), a tablet with one
/// survey, and mallory's stolen credentials.
fn world(limits: &str) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = Relay::init(root, OFFICE);
    let toml = relay.dir.join("relay.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(&format!("\n[limits]\n{limits}\n"));
    std::fs::write(&toml, text).unwrap();
    let server = relay.serve_with("127.0.0.1:0", &[]);
    let addr = server.addr.to_string();
    let honest = Device::init(root, "tablet-a", OFFICE);
    let (file, code) = relay.enroll("tablet-a", Some(OFFICE), &addr);
    honest.enroll(&file, &code);
    honest.import(&[&survey_path()]);
    let (file, code) = relay.enroll("mallory", Some(OFFICE), &addr);
    let mallory = credentials(&file, &code);
    World {
        _tmp: tmp,
        _relay: relay,
        server,
        honest,
        mallory,
    }
}

fn assert_relay_small(w: &mut World) {
    w.server.assert_up_and_small(RSS_BOUND_KIB);
}

fn honest_sync_completes(w: &World) {
    w.honest.sync_within(HONEST_WITHIN);
}

/// Raw DEFLATE (fixed Huffman codes) of `n` zero bytes: one literal, then copies of 258
/// bytes at distance 1 (13 bits each), so 512 MiB take about 3.4 MB.
fn deflate_zeros(n: u64) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        len: u32,
    }
    impl Bits {
        /// `len` bits of `v`, least significant first (header fields).
        fn put(&mut self, v: u64, len: u32) {
            self.acc |= v << self.len;
            self.len += len;
            while self.len >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.len -= 8;
            }
        }
        /// A Huffman code, most significant bit first.
        fn code(&mut self, code: u64, len: u32) {
            for i in (0..len).rev() {
                self.put((code >> i) & 1, 1);
            }
        }
    }
    let mut b = Bits {
        out: Vec::new(),
        acc: 0,
        len: 0,
    };
    b.put(1, 1); // final block
    b.put(1, 2); // fixed Huffman codes
    b.code(0x30, 8); // literal 0
    let mut left = n - 1;
    while left >= 258 {
        b.code(0b1100_0101, 8); // length 258 (code 285)
        b.code(0, 5); // distance 1
        left -= 258;
    }
    for _ in 0..left {
        b.code(0x30, 8);
    }
    b.code(0, 7); // end of block
    b.put(0, 7);
    b.out
}

/// An automerge compressed-change chunk (type 2) whose body is `deflated`.
fn compressed_chunk(deflated: &[u8]) -> Vec<u8> {
    let mut out = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 2];
    let mut n = deflated.len() as u64;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(deflated);
    out
}

fn rejected_code(frames: &[Frame], id: DocId) -> Option<String> {
    frames.iter().find_map(|f| match f {
        Frame::DocRejected { id: r, code } if r.as_slice() == id.as_bytes() => Some(code.clone()),
        _ => None,
    })
}

/// `want` of `id`: the relay's answer (`Some(code)` for a refusal, `None` when it sent
/// the document).
fn want(raw: &mut RawClient, id: DocId) -> Option<String> {
    raw.send(&Frame::Want {
        ids: vec![ByteBuf::from(id.as_bytes().to_vec())],
    });
    // An `idle` owed for earlier frames may come first: read on to the answer.
    let mut frames = Vec::new();
    for _ in 0..3 {
        frames.extend(raw.until_idle());
        if frames
            .iter()
            .any(|f| matches!(f, Frame::DocData { id: d, .. } if d.as_slice() == id.as_bytes()))
        {
            return None;
        }
        if let Some(code) = rejected_code(&frames, id) {
            return Some(code);
        }
    }
    panic!("no answer to want: {frames:?}")
}

fn survey_bytes(office: &str) -> Vec<u8> {
    let mut json = musubi_tests::example("survey");
    json["office"] = json!(office);
    let author = Author {
        device: "mallory".into(),
        device_name: "mallory".into(),
        staff: None,
        action: "import".into(),
        time_ms: 1_800_000_000_000,
    };
    CareDoc::create(
        DocId::random(),
        DocKind::Survey,
        &json,
        automerge::ActorId::random(),
        &author,
    )
    .unwrap()
    .save()
}

#[test]
fn a_decompression_bomb_is_refused_before_it_is_inflated() {
    let mut w = world("");
    let bomb = compressed_chunk(&deflate_zeros(BOMB_BYTES));
    assert!(bomb.len() < 4 << 20, "{}", bomb.len());
    let creds = w.mallory.clone();
    let addr = w.server.addr.to_string();
    let ids: Vec<DocId> = (0..6).map(|_| DocId::random()).collect();
    let sent = ids.clone();
    // Mallory sends bombs as document data and inside sync messages while the honest
    // tablet syncs.
    let attack = std::thread::spawn(move || {
        let mut raw = RawClient::connect(&creds, &addr);
        raw.hello(automerge::ActorId::random().to_bytes());
        let mut codes = Vec::new();
        for (i, id) in sent.iter().enumerate() {
            let frame = if i % 2 == 0 {
                Frame::DocData {
                    id: ByteBuf::from(id.as_bytes().to_vec()),
                    bytes: ByteBuf::from(bomb.clone()),
                }
            } else {
                let msg = automerge::sync::Message {
                    heads: Vec::new(),
                    need: Vec::new(),
                    have: Vec::new(),
                    changes: vec![bomb.clone()].into(),
                    flags: None,
                    version: automerge::sync::MessageVersion::V1,
                };
                Frame::DocSync {
                    id: ByteBuf::from(id.as_bytes().to_vec()),
                    msg: ByteBuf::from(msg.encode()),
                }
            };
            raw.send(&frame);
            codes.push(rejected_code(&raw.until_idle(), *id));
        }
        let unknown: Vec<Option<String>> = sent.iter().map(|id| want(&mut raw, *id)).collect();
        raw.finish();
        (codes, unknown)
    });
    honest_sync_completes(&w);
    let (codes, unknown) = attack.join().unwrap();
    assert_relay_small(&mut w);
    assert!(
        codes.iter().all(|c| c.as_deref() == Some("too_large")),
        "{codes:?}"
    );
    // Nothing was written: every id is still unknown to the relay.
    assert!(
        unknown.iter().all(|c| c.as_deref() == Some("unknown")),
        "{unknown:?}"
    );
    honest_sync_completes(&w);
}

/// A survey of `office` (kind and office at the root, as a new document needs) whose
/// `items` is a chain of `levels` nested maps: about two bytes a level.
fn nested_survey(office: &str, levels: usize) -> Vec<u8> {
    use automerge::transaction::Transactable as _;
    let mut doc = automerge::AutoCommit::new();
    doc.put(automerge::ROOT, "kind", "survey").unwrap();
    doc.put(automerge::ROOT, "office", office).unwrap();
    let mut obj = doc
        .put_object(automerge::ROOT, "items", automerge::ObjType::Map)
        .unwrap();
    for _ in 1..levels {
        obj = doc.put_object(&obj, "x", automerge::ObjType::Map).unwrap();
    }
    doc.save()
}

/// Catches: the relay reading a document for its rules with a recursion per nesting level
/// and no bound. A survey nested 100,000 maps deep (200 KB, inside every intake bound)
/// overflowed the stack of the relay's worker, an abort of the whole process.
#[test]
fn a_document_nested_past_the_depth_limit_is_refused_and_the_relay_stays_up() {
    let mut w = world("");
    let levels = 100_000;
    let bytes = nested_survey(OFFICE, levels);
    assert!(bytes.len() < 1 << 20, "{}", bytes.len());
    let mut raw = RawClient::connect(&w.mallory, &w.server.addr.to_string());
    raw.hello(automerge::ActorId::random().to_bytes());
    let id = DocId::random();
    assert_eq!(raw.push(id, bytes).as_deref(), Some("invalid"));
    // Nothing of it was written, and the same session goes on.
    assert_eq!(want(&mut raw, id).as_deref(), Some("unknown"));
    raw.finish();
    assert_relay_small(&mut w);
    honest_sync_completes(&w);
    let log = w.server.log_text();
    assert!(
        log.contains("refused a document that breaks a rule") && log.contains("/items"),
        "{log}"
    );
}

#[test]
fn quota_exhaustion_is_refused_in_japanese_and_writes_nothing() {
    let mut w = world("device_docs = 3");
    let mut raw = RawClient::connect(&w.mallory, &w.server.addr.to_string());
    raw.hello(automerge::ActorId::random().to_bytes());
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = DocId::random();
        assert_eq!(raw.push(id, survey_bytes(OFFICE)), None);
        ids.push(id);
    }
    let over = DocId::random();
    assert_eq!(
        raw.push(over, survey_bytes(OFFICE)).as_deref(),
        Some("quota")
    );
    // Nothing of it was written; reads still work.
    assert_eq!(want(&mut raw, over).as_deref(), Some("unknown"));
    raw.finish();
    // A fresh session (cursor 0) receives the office's documents whole: reads go on.
    let mut raw = RawClient::connect(&w.mallory, &w.server.addr.to_string());
    let got = raw.hello(automerge::ActorId::random().to_bytes());
    let read: Vec<DocId> = got.docs.iter().map(|(id, _)| *id).collect();
    assert!(
        ids.iter().all(|id| read.contains(id)),
        "a device over its quota cannot read"
    );
    assert!(!read.contains(&over));
    raw.finish();

    // The honest tablet has its own quota: its survey syncs (and mallory's arrive).
    honest_sync_completes(&w);
    // Over its own quota, the tablet shows the refusal in Japanese and keeps the survey.
    for _ in 0..3 {
        w.honest.import(&[&survey_path()]);
    }
    let out = w.honest.sync(&[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("中継サーバーの保存容量の上限"),
        "no Japanese quota refusal: {text}"
    );
    assert!(text.contains("[quota]"), "{text}");
    assert_relay_small(&mut w);
}

/// Starts `n` connections to the relay and abandons each once the relay has answered its
/// first flight (the relay's handshake data arrived, after a QUIC retry if the relay asked
/// for one), without closing it: the relay holds each as a pending handshake until its
/// handshake timeout, or, where the client's last flight had already left, as an idle
/// connection without a stream (a flood of idle connections). Returns how many the relay
/// answered.
fn abandon_handshakes(
    creds: &musubi_engine::net::tls::DeviceCredentials,
    addr: &str,
    n: usize,
) -> usize {
    let config = musubi_engine::net::tls::client_config(creds).unwrap();
    abandon_handshakes_with(&config, addr, n)
}

/// `n` handshakes with `config` (50 at a time), each abandoned before its last flight;
/// how many the relay answered.
fn abandon_handshakes_with(config: &rustls::ClientConfig, addr: &str, n: usize) -> usize {
    use musubi_engine::net::{quic, tls};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let remote: std::net::SocketAddr = addr.parse().unwrap();
    rt.block_on(async {
        let mut answered = 0;
        for _ in 0..n.div_ceil(50) {
            let endpoint =
                quic::client_endpoint(config.clone(), remote, &quic::TransportSettings::default())
                    .unwrap();
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..50 {
                let mut connecting = endpoint.connect(remote, tls::RELAY_SERVER_NAME).unwrap();
                tasks.spawn(async move {
                    let got =
                        tokio::time::timeout(Duration::from_secs(3), connecting.handshake_data())
                            .await;
                    // Abandoned here: the client never sends its last flight.
                    drop(connecting);
                    matches!(got, Ok(Ok(_)))
                });
            }
            while let Some(r) = tasks.join_next().await {
                answered += usize::from(r.unwrap_or(false));
            }
            drop(endpoint);
        }
        answered
    })
}

#[test]
fn abandoned_handshakes_do_not_keep_an_honest_tablet_out() {
    let mut w = world("");
    let addr = w.server.addr.to_string();
    // 400 half-open handshakes (more than the relay holds: past half of its 256 it asks
    // for a retry, which this client answers, and past 256 it refuses), then the honest
    // tablet syncs while they are still pending at the relay (10 s handshake timeout).
    let answered = abandon_handshakes(&w.mallory, &addr, 400);
    assert!(
        answered >= 128,
        "the relay answered only {answered} handshakes"
    );
    honest_sync_completes(&w);
    assert_relay_small(&mut w);
    // And again, while the first flood's connections are still timing out.
    let _ = abandon_handshakes(&w.mallory, &addr, 400);
    honest_sync_completes(&w);
    assert_relay_small(&mut w);
}

/// A host with no credentials of the office at all (a self-signed certificate of its own,
/// as any host can make, offering the sync or the enrollment protocol) floods the relay
/// with handshakes it abandons: they are bounded before any certificate is looked at, so
/// the honest tablet still syncs and the relay stays small.
#[test]
fn handshakes_without_any_office_credentials_do_not_keep_an_honest_tablet_out() {
    use musubi_engine::net::pki::DeviceKey;
    use musubi_engine::net::tls;
    let mut w = world("");
    let addr = w.server.addr.to_string();
    let key = DeviceKey::generate().unwrap();
    let stranger = key.enrollment_cert(&"5".repeat(32)).unwrap();
    for alpn in [tls::ALPN, tls::ALPN_ENROLL] {
        let mut config = tls::enroll_client_config(&w.mallory.office_ca_pem, &stranger).unwrap();
        config.alpn_protocols = vec![alpn.to_vec()];
        let answered = abandon_handshakes_with(&config, &addr, 400);
        assert!(
            answered >= 128,
            "the relay answered only {answered} handshakes"
        );
        honest_sync_completes(&w);
        assert_relay_small(&mut w);
    }
}

/// A frame body with its 4-byte length prefix.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[test]
fn malformed_and_out_of_order_frames_end_only_that_session() {
    use musubi_engine::net::quic::close;
    let mut w = world("");
    let addr = w.server.addr.to_string();
    let id = ByteBuf::from(DocId::random().as_bytes().to_vec());
    // Each attack on its own connection; each must end that session with a protocol close.
    type Attack<'a> = (&'a str, Box<dyn Fn(&mut RawClient) + 'a>);
    let attacks: Vec<Attack> = vec![
        (
            "a length prefix over the frame limit",
            Box::new(|raw| raw.send_bytes(&u32::MAX.to_be_bytes())),
        ),
        (
            "garbage instead of CBOR",
            Box::new(|raw| raw.send_bytes(&framed(&[0xff; 64]))),
        ),
        (
            "an unknown frame type",
            Box::new(|raw| {
                // {"nonsense": {}}
                let mut body = vec![0xa1, 0x68];
                body.extend_from_slice(b"nonsense");
                body.push(0xa0);
                raw.send_bytes(&framed(&body));
            }),
        ),
        (
            "document data before hello",
            Box::new(|raw| {
                raw.send(&Frame::DocData {
                    id: id.clone(),
                    bytes: ByteBuf::from(survey_bytes(OFFICE)),
                })
            }),
        ),
        (
            "a want naming one id twice",
            Box::new(|raw| {
                raw.hello(automerge::ActorId::random().to_bytes());
                raw.send(&Frame::Want {
                    ids: vec![id.clone(), id.clone()],
                });
            }),
        ),
        (
            "a want of more ids than a frame may carry",
            Box::new(|raw| {
                raw.hello(automerge::ActorId::random().to_bytes());
                let ids = (0..5_000u32)
                    .map(|i| {
                        let mut b = [0u8; 16];
                        b[..4].copy_from_slice(&i.to_be_bytes());
                        ByteBuf::from(b.to_vec())
                    })
                    .collect();
                raw.send(&Frame::Want { ids });
            }),
        ),
    ];
    for (what, attack) in &attacks {
        let mut raw = RawClient::connect(&w.mallory, &addr);
        attack(&mut raw);
        let closed = raw.closed_within(Duration::from_secs(10));
        assert!(
            matches!(&closed, Some((code, _)) if *code == u64::from(close::PROTOCOL)),
            "{what}: {closed:?}"
        );
    }
    // The relay is up and served nothing of it: the honest tablet syncs, and a fresh
    // session of the office holds only the honest survey.
    honest_sync_completes(&w);
    let mut raw = RawClient::connect(&w.mallory, &addr);
    let got = raw.hello(automerge::ActorId::random().to_bytes());
    assert_eq!(got.docs.len(), 1, "something of the attacks was stored");
    raw.finish();
    assert_relay_small(&mut w);
}

/// A session that reaches its cap ends with `error: limit`; an honest tablet's one
/// `musubi sync` goes on in new sessions instead of failing, and everything arrives.
/// Catches also: the relay answered documents its flush then left unwritten, the tablet
/// kept those answers as sync state and never sent the documents again (one of five was
/// missing at the relay in about one run of three before `forget_states_after_limit`).
#[test]
fn an_honest_sync_larger_than_the_session_cap_completes_over_several_sessions() {
    let mut w = world("session_docs = 2");
    for _ in 0..4 {
        w.honest.import(&[&survey_path()]);
    }
    let s = w.honest.sync_ok(&[]);
    // Five documents over a cap of two: the cap ended at least one session (the relay
    // counts at each flush, so how many is not fixed), and the sync went on.
    assert!(s["connections"].as_u64() >= Some(2), "{s}");
    // A fresh tablet of the office receives all five from the relay.
    let fresh = Device::init(w._tmp.path(), "tablet-c", OFFICE);
    let (file, code) = w
        ._relay
        .enroll("tablet-c", Some(OFFICE), &w.server.addr.to_string());
    fresh.enroll(&file, &code);
    let got = fresh.sync_ok(&[]);
    assert_eq!(got["docs_received"], 5, "{got}");
    assert_relay_small(&mut w);
}
