//! Shared pieces of the musubi fuzz targets.

use automerge::ActorId;
use musubi_core::doc::Author;
use musubi_core::ids::DocId;
use musubi_core::schema::{DocKind, Node, Registry};
use serde_json::Value;

/// Lets a panic that `musubi_core::doc::contain_panic` catches stay caught.
///
/// libfuzzer-sys installs a panic hook that aborts on every panic, even one the engine
/// catches on purpose (automerge can panic on crafted data; the engine turns that into a
/// refusal). This hook only prints; a panic that is *not* caught still unwinds to
/// libfuzzer-sys, which aborts and reports it as a crash. Call it first in a target.
pub fn keep_contained_panics_caught() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("panic (caught by the engine unless libFuzzer reports a crash): {info}");
        }));
    });
}

/// The example survey (interchange JSON), as the tests and benches use it.
pub const SURVEY_JSON: &str = include_str!("../../schemas/examples/survey.json");

/// The example survey, parsed.
pub fn example_survey() -> Value {
    serde_json::from_str(SURVEY_JSON).expect("the example survey is JSON")
}

/// A fixed document id.
pub fn doc_id() -> DocId {
    DocId::from_bytes([0x6d; 16])
}

/// A fixed actor.
pub fn actor() -> ActorId {
    ActorId::from(vec![0x01; 16])
}

/// A fixed author for changes.
pub fn author() -> Author {
    Author {
        device: "0123456789abcdef0123456789abcdef".to_owned(),
        device_name: "fuzz".to_owned(),
        staff: Some("ファズ".to_owned()),
        action: "fuzz".to_owned(),
        time_ms: 1_790_000_000_000,
    }
}

/// Places in the example survey where `survey_fields` splices fuzzed JSON: scalars, codes,
/// set-like arrays (x-crdt: set), text fields (x-crdt: text), objects and list elements.
pub const SPLICE_POINTERS: &[&str] = &[
    "/subject/name",
    "/subject/name_kana",
    "/subject/birth_date",
    "/subject/sex",
    "/subject/insurer_number",
    "/subject/insured_number",
    "/subject/phone",
    "/subject",
    "/status",
    "/office",
    "/if_version",
    "/overview/conducted",
    "/overview/conducted/date",
    "/overview/conducted/time",
    "/overview/history/family_contact",
    "/overview/services/1",
    "/overview/services/23",
    "/overview/facility",
    "/overview/environment/family",
    "/overview/environment/other",
    "/items",
    "/items/1-1",
    "/items/1-2",
    "/items/1-3",
    "/items/2-1",
    "/items/5-6",
    "/items/6",
    "/items/7-1",
    "/special_notes",
    "/special_notes/0",
    "/special_notes/0/text",
    "/special_notes/0/item",
    "/special_notes/-",
];

/// Splits `data` at the first newline: (text before, bytes after).
pub fn split_line(data: &[u8]) -> Option<(&str, &[u8])> {
    let nl = data.iter().position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(&data[..nl]).ok()?;
    Some((head, &data[nl + 1..]))
}

/// Whether `MUSUBI_FUZZ_STRICT_SET_ORDER=1`: compare set-like arrays (`x-crdt: set`) in
/// their input order too. By default the round-trip oracles sort them on both sides,
/// because `CareDoc` stores them as maps of code → true and `to_json()` returns them
/// sorted (see README.md, "Findings"), which would otherwise stop every run at once.
pub fn strict_set_order() -> bool {
    std::env::var("MUSUBI_FUZZ_STRICT_SET_ORDER").is_ok_and(|v| v == "1")
}

/// `value` with every `x-crdt: set` array of a `kind` document sorted (numbers by value,
/// anything else by its JSON text). Duplicates are kept, so a set that silently drops one
/// still shows as a difference. Unchanged when [`strict_set_order`] is on.
pub fn canonical_sets(kind: DocKind, value: &Value) -> Value {
    let mut out = value.clone();
    if strict_set_order() {
        return out;
    }
    let registry = Registry::embedded().expect("embedded schemas load");
    let root = registry.root(kind).expect("every kind has a schema");
    sort_sets(registry, Some(root), &mut out);
    out
}

fn sort_sets<'a>(registry: &'a Registry, node: Option<Node<'a>>, value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                let sub = node.and_then(|n| registry.property(n, key));
                sort_sets(registry, sub, child);
            }
        }
        Value::Array(list) => {
            if node.and_then(|n| registry.crdt_hint(n)) == Some("set") {
                list.sort_by(|a, b| match (a.as_f64(), b.as_f64()) {
                    (Some(x), Some(y)) => x.total_cmp(&y),
                    _ => a.to_string().cmp(&b.to_string()),
                });
            }
            let item = node.and_then(|n| registry.items(n));
            for child in list {
                sort_sets(registry, item, child);
            }
        }
        _ => {}
    }
}

/// The fixed identity and key material of the enrollment targets (`fixtures/enroll/`,
/// written once by `cargo run --features net --example make_enroll_fixtures`; test keys only). Feature
/// `net`.
#[cfg(feature = "net")]
pub mod enroll_fixture {
    use musubi_engine::net::pki::{DeviceKey, DeviceSubject, OfficeCa};

    /// The device id of the fixtures.
    pub const DEVICE_ID: &str = "0123456789abcdef0123456789abcdef";
    /// The device name of the fixtures.
    pub const DEVICE_NAME: &str = "訪問用タブレット";
    /// The office of the fixtures.
    pub const OFFICE: &str = "1370100016";
    /// The relay address of the fixtures.
    pub const RELAY_ADDRESS: &str = "relay.example.jp:4433";
    /// The office CA certificate (PEM).
    pub const OFFICE_CA_PEM: &str = include_str!("../fixtures/enroll/office_ca.pem");
    /// The office CA key (PEM).
    pub const OFFICE_CA_KEY_PEM: &str = include_str!("../fixtures/enroll/office_ca_key.pem");
    /// The device's key pair (PEM).
    pub const DEVICE_KEY_PEM: &str = include_str!("../fixtures/enroll/device_key.pem");
    /// A certificate the office CA issued for the device key and [`subject`] (PEM).
    pub const DEVICE_CERT_PEM: &str = include_str!("../fixtures/enroll/device_cert.pem");
    /// The self-signed enrollment certificate of the device key (DER).
    pub const ENROLL_REQUEST_DER: &[u8] = include_bytes!("../fixtures/enroll/enroll_request.der");

    /// The identity of the fixtures.
    pub fn subject() -> DeviceSubject {
        DeviceSubject {
            device_id: DEVICE_ID.to_owned(),
            device_name: DEVICE_NAME.to_owned(),
            office: OFFICE.to_owned(),
        }
    }

    /// The office CA.
    pub fn office_ca() -> OfficeCa {
        OfficeCa::from_pem(OFFICE_CA_PEM, OFFICE_CA_KEY_PEM).expect("fixture office CA")
    }

    /// The device key.
    pub fn device_key() -> DeviceKey {
        DeviceKey::from_pem(DEVICE_KEY_PEM).expect("fixture device key")
    }
}
