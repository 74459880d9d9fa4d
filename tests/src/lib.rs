//! musubi cross-crate tests. Scenarios live in `tests/tests/`; shared helpers here:
//! engine-level tablets ([`tablet`], [`example`]), the real binaries and relay processes
//! ([`e2e`]), the virtual My Number card through pcscd ([`card`]), a modified client that
//! writes the frames itself ([`raw_client`]) and a fault-injecting UDP proxy
//! ([`udp_proxy`]).

pub mod card;
pub mod e2e;
pub mod raw_client;
pub mod udp_proxy;

use musubi_engine::Engine;
use musubi_engine::store::{InitOptions, SecretString, Store};
use std::path::Path;

/// A test store on a real SQLCipher file with a cheap KDF (tests only).
pub fn tablet(dir: &Path, office: &str, device: &str, staff: &str) -> Engine {
    let pass = SecretString::from("test passphrase".to_owned());
    let store = Store::init(
        dir,
        &pass,
        InitOptions {
            office: office.to_owned(),
            device_name: device.to_owned(),
            staff: Some(staff.to_owned()),
            recovery_recipient: None,
            kdf_work_factor: Some(10),
        },
    )
    .unwrap_or_else(|e| panic!("init {device}: {e}"));
    Engine::new(store, None).unwrap_or_else(|e| panic!("engine {device}: {e}"))
}

/// The synthetic example of a kind from `schemas/examples/`.
pub fn example(kind: &str) -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../schemas/examples/{kind}.json"));
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("example {kind}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("example {kind}: {e}"))
}
