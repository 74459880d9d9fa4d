//! The bounds tables in the documentation say what the code does: each value in
//! docs/relay.md "Limits" and docs/protocol.md "Bounds" is read here and compared with the
//! constant it describes, so changing one without the other fails.

#![allow(clippy::unwrap_used)]

use musubi_engine::doc::MAX_DOC_DEPTH;
use musubi_engine::sync::MAX_FRAME_BYTES;
use musubi_engine::sync::frame::{
    MAX_WANT_DOCS, MAX_WANT_IDS, WANT_WINDOW_BYTES, WANT_WINDOW_FRAMES,
};
use musubi_engine::sync::inflate::MAX_DECODED_ROWS;
use musubi_engine::sync::limits::{
    DEFAULT_DEVICE_BYTES, DEFAULT_DEVICE_DOCS, DEFAULT_OFFICE_BYTES, DEFAULT_OFFICE_DOCS,
    DEFAULT_SESSION_BYTES, DEFAULT_SESSION_DECODED, DEFAULT_SESSION_DOCS, IntakeLimits,
    MAX_DECODED_FRAME, MAX_DOC_BYTES, MAX_DOC_CHANGES, MAX_DOC_OPS,
};
use musubi_relay::serve::{
    DEFAULT_FRAME_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_DEADLINE,
    GRACE, MAX_HANDSHAKES, MAX_SESSIONS_PER_DEVICE, POLICY_RECHECK,
};
use std::path::Path;

fn doc(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs")
            .join(name),
    )
    .unwrap()
}

/// The value cell (second column) of the table row whose first cell starts with `bound`.
fn value(text: &str, bound: &str) -> String {
    text.lines()
        .filter(|l| l.starts_with("| "))
        .find_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells.len() > 2 && cells[1].starts_with(bound)).then(|| cells[2].to_owned())
        })
        .unwrap_or_else(|| panic!("no row for {bound:?}"))
}

fn number(cell: &str) -> u64 {
    let digits: String = cell
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number in {cell:?}"))
}

#[test]
fn relay_limits_table_matches_the_code() {
    let t = doc("relay.md");
    assert_eq!(
        number(&value(&t, "frame size")) * 1024 * 1024,
        MAX_FRAME_BYTES as u64
    );
    assert_eq!(
        number(&value(&t, "next frame")),
        DEFAULT_IDLE_TIMEOUT.as_secs()
    );
    assert_eq!(
        number(&value(&t, "finishing a frame")),
        DEFAULT_FRAME_TIMEOUT.as_secs()
    );
    assert_eq!(
        number(&value(&t, "one session")) * 60,
        DEFAULT_SESSION_DEADLINE.as_secs()
    );
    assert_eq!(
        number(&value(&t, "sessions per device")),
        MAX_SESSIONS_PER_DEVICE as u64
    );
    assert_eq!(
        number(&value(&t, "sessions in all")),
        DEFAULT_MAX_SESSIONS as u64
    );
    assert_eq!(
        number(&value(&t, "handshakes in progress")),
        MAX_HANDSHAKES as u64
    );
    assert!(value(&t, "revocation of an open session").contains("every second"));
    assert_eq!(POLICY_RECHECK.as_secs(), 1);
    assert_eq!(number(&value(&t, "shutdown grace")), GRACE.as_secs());
}

#[test]
fn protocol_bounds_table_matches_the_code() {
    let t = doc("protocol.md");
    assert_eq!(number(&value(&t, "ids per `want`")), MAX_WANT_IDS as u64);
    assert_eq!(
        number(&value(&t, "distinct ids asked for")),
        MAX_WANT_DOCS as u64
    );
    let window = value(&t, "outgoing window");
    assert_eq!(number(&window), WANT_WINDOW_FRAMES as u64);
    assert!(
        window.contains(&format!("{} MiB", WANT_WINDOW_BYTES / 1024 / 1024)),
        "{window}"
    );
}

/// "64 MiB", "2 GiB", "10,000": the number of the cell in units.
fn amount(cell: &str) -> u64 {
    let n = number(cell);
    let rest: String = cell
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .skip_while(|c| c.is_ascii_digit() || *c == ',')
        .take(5)
        .collect();
    match rest.trim_start() {
        r if r.starts_with("MiB") => n << 20,
        r if r.starts_with("GiB") => n << 30,
        _ => n,
    }
}

#[test]
fn intake_bounds_and_relay_toml_example_match_the_code() {
    let t = doc("protocol.md");
    let rows = [
        ("decoded size of one frame", MAX_DECODED_FRAME),
        ("bytes per document", MAX_DOC_BYTES),
        ("changes per document", MAX_DOC_CHANGES),
        ("operations per document", MAX_DOC_OPS),
        ("operations or changes in one frame", MAX_DECODED_ROWS),
        ("nesting of maps and lists", MAX_DOC_DEPTH as u64),
        ("documents written per session", DEFAULT_SESSION_DOCS),
        ("bytes written per session", DEFAULT_SESSION_BYTES),
        (
            "decoded bytes received per session",
            DEFAULT_SESSION_DECODED,
        ),
        ("documents per device", DEFAULT_DEVICE_DOCS),
        ("bytes per device", DEFAULT_DEVICE_BYTES),
        ("documents per office", DEFAULT_OFFICE_DOCS),
        ("bytes per office", DEFAULT_OFFICE_BYTES),
    ];
    for (bound, constant) in rows {
        assert_eq!(amount(&value(&t, bound)), constant, "{bound}");
    }
    // The `[limits]` example of docs/relay.md parses as relay.toml's table and names
    // exactly the defaults.
    let relay = doc("relay.md");
    let start = relay.find("[limits]\n").unwrap();
    let end = start + relay[start..].find("```").unwrap();
    #[derive(serde::Deserialize)]
    struct File {
        limits: musubi_relay::config::LimitsConfig,
    }
    let file: File = toml::from_str(&relay[start..end]).unwrap();
    assert_eq!(file.limits.intake(), IntakeLimits::default());
    assert!(file.limits.doc_bytes.is_some() && file.limits.office_bytes.is_some());
}
