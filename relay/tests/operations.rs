//! Relay operations against a real `musubi-relay` process: the serve.toml that `init`
//! writes, `/metrics` and `/healthz` over HTTP after a real device sync and a refused
//! handshake, malformed HTTP requests, and JSON log lines.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use musubi_engine::net::quic::sync_once;
use musubi_engine::store::Store;
use musubi_relay::config::{LogFormat, ServeFileConfig};

use common::{OFFICE, Serving, add_surveys, enrolled, ok, relay_cmd, sync_options, tablet};

/// A tablet store holding the example survey.
fn tablet_with_survey(dir: &Path) -> Arc<Store> {
    let store = tablet(dir, "tablet-1");
    add_surveys(&store, 1);
    store
}

fn init(dir: &Path) {
    ok(&["init", "--dir", dir.to_str().unwrap(), "--office", OFFICE]);
}

/// The `# key = value` lines of a serve.toml with the `# ` removed (the documented keys).
fn uncommented_keys(text: &str) -> (String, Vec<String>) {
    let mut keys = Vec::new();
    let mut out = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ")
            && let Some((key, _)) = rest.split_once(" = ")
            && !key.is_empty()
            && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            keys.push(key.to_owned());
            out.push_str(rest);
            out.push('\n');
        }
    }
    (out, keys)
}

#[test]
fn init_writes_every_serve_key_commented_with_its_default() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("relay");
    init(&dir);
    let text = std::fs::read_to_string(dir.join("serve.toml")).unwrap();

    // As written, every key is commented out: the defaults apply.
    let as_written = ServeFileConfig::read(&dir.join("serve.toml")).unwrap();
    assert_eq!(as_written, ServeFileConfig::default());

    // Uncommented, every key parses (no unknown or misspelled key: the struct refuses
    // unknown fields), each once, each with a comment above it.
    let (uncommented, keys) = uncommented_keys(&text);
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        keys.len(),
        "a key twice in serve.toml: {keys:?}"
    );
    for key in &keys {
        let pos = text.find(&format!("\n# {key} = ")).unwrap();
        let above = text[..pos].lines().last().unwrap_or_default();
        assert!(
            above.starts_with("# ") && !above.contains(" = "),
            "{key} has no explanation above it"
        );
    }
    let file = tmp.path().join("all.toml");
    std::fs::write(&file, &uncommented).unwrap();
    let all = ServeFileConfig::read(&file).unwrap();

    // Every field of ServeFileConfig is in the template. A new field makes this pattern
    // fail to compile: add the field to `config::serve_toml_template` (commented, with
    // its default and meaning) and here.
    let ServeFileConfig {
        listen,
        metrics_listen,
        log_level,
        log_format,
        max_sessions,
        test_trust_anchor,
        idle_timeout_s,
        frame_timeout_s,
        session_deadline_s,
        device_cert_days,
        test_device_cert_seconds,
    } = all;
    assert!(listen.is_some());
    assert!(metrics_listen.is_some_and(|a| a.ip().is_loopback()));
    assert!(test_trust_anchor.is_some());
    assert!(test_device_cert_seconds.is_some());
    // The values shown are the defaults the relay applies.
    let d = musubi_relay::serve::SessionLimits::default();
    assert_eq!(log_level.as_deref(), Some("info"));
    assert_eq!(log_format, Some(LogFormat::Text));
    assert_eq!(
        max_sessions,
        Some(musubi_relay::serve::DEFAULT_MAX_SESSIONS)
    );
    assert_eq!(idle_timeout_s, Some(d.idle.as_secs()));
    assert_eq!(frame_timeout_s, Some(d.frame.as_secs()));
    assert_eq!(session_deadline_s, Some(d.session.as_secs()));
    assert_eq!(
        device_cert_days.map(|days| u64::from(days) * 24 * 3600),
        Some(musubi_relay::enrollment::DEFAULT_DEVICE_CERT_VALIDITY.as_secs())
    );
    assert_eq!(keys.len(), 11);

    // The systemd unit uses the file init writes: no --config pointing elsewhere.
    let unit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("musubi-relay.service"))
            .unwrap();
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(exec.contains(" serve --dir "), "{exec}");
    assert!(!exec.contains("--config"), "{exec}");
}

/// A running `musubi-relay serve` with metrics and JSON logs.
fn serve_with_metrics(dir: &Path, log: PathBuf) -> Serving {
    let mut cmd = relay_cmd();
    cmd.args(["serve", "--dir", dir.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .args(["--log-format", "json"]);
    Serving::spawn(cmd, log, true)
}

/// Sends `request` as is; the status code and body of the answer.
fn http(addr: &str, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8(answer).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

fn get(addr: &str, path: &str) -> (u16, String) {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: relay\r\n\r\n").as_bytes(),
    )
}

/// The value of one sample line (`name{labels}` exactly as written).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_and_healthz_answer_after_a_sync_and_a_refused_handshake() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("relay");
    init(&dir);
    let mut relay = serve_with_metrics(&dir, tmp.path().join("relay.log"));
    let metrics_addr = relay.metrics.clone().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let (status, body) = get(&metrics_addr, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, before) = get(&metrics_addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(sample(&before, "musubi_relay_sessions_live"), 0.0);
    assert_eq!(sample(&before, "musubi_relay_store_up"), 1.0);
    assert_eq!(sample(&before, "musubi_relay_store_documents"), 0.0);

    // One device sync brings one survey.
    let creds = enrolled(&rt, &dir, "tablet-1", &relay.listen);
    let store = tablet_with_survey(&tmp.path().join("tablet-1"));
    let report = rt
        .block_on(sync_once(
            Arc::clone(&store),
            &creds,
            &sync_options(&relay.listen),
            |_| {},
        ))
        .unwrap();
    assert_eq!(report.outcome.docs_sent, 1);

    // A revoked device is refused in the TLS handshake.
    let revoked = enrolled(&rt, &dir, "tablet-2", &relay.listen);
    ok(&[
        "revoke",
        "--dir",
        dir.to_str().unwrap(),
        "--device",
        "tablet-2",
    ]);
    let other = tmp.path().join("tablet-2");
    std::fs::create_dir_all(&other).unwrap();
    let refused = rt.block_on(sync_once(
        tablet_with_survey(&other),
        &revoked,
        &sync_options(&relay.listen),
        |_| {},
    ));
    assert!(refused.is_err(), "{refused:?}");

    // The session is counted when the relay has closed it (the device closes last).
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let (status, text) = get(&metrics_addr, "/metrics");
        assert_eq!(status, 200);
        if sample(&text, "musubi_relay_sessions_total{outcome=\"finished\"}") >= 1.0
            && sample(
                &text,
                "musubi_relay_handshake_failures_total{reason=\"tls\"}",
            ) >= 1.0
        {
            break text;
        }
        assert!(Instant::now() < deadline, "metrics never counted:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(sample(&metrics, "musubi_relay_sessions_live"), 0.0);
    assert_eq!(
        sample(&metrics, "musubi_relay_sessions_total{outcome=\"failed\"}"),
        0.0
    );
    assert_eq!(
        sample(&metrics, "musubi_relay_documents_received_total"),
        1.0
    );
    assert!(sample(&metrics, "musubi_relay_bytes_received_total") > 1000.0);
    assert!(sample(&metrics, "musubi_relay_bytes_sent_total") > 0.0);
    assert_eq!(
        sample(&metrics, "musubi_relay_session_duration_seconds_count"),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            "musubi_relay_doc_rejected_total{code=\"invalid\"}"
        ),
        0.0
    );
    assert_eq!(
        sample(
            &metrics,
            "musubi_relay_errors_sent_total{code=\"protocol\"}"
        ),
        0.0
    );
    assert_eq!(sample(&metrics, "musubi_relay_store_documents"), 1.0);
    assert!(sample(&metrics, "musubi_relay_store_bytes") > 1000.0);
    // Counters only: no device id or name, no office anywhere in the text.
    assert!(!metrics.contains("tablet"), "{metrics}");
    assert!(!metrics.contains(OFFICE), "{metrics}");
    assert!(!metrics.contains(&creds.device_id), "{metrics}");
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(series.starts_with("musubi_relay_"), "{line}");
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }

    // Anything but one GET of a known path is answered 400, 404 or 405; the relay stays up.
    let m = metrics_addr.clone();
    assert_eq!(http(&m, b"BLAH\r\n\r\n").0, 400);
    assert_eq!(http(&m, b"GET /metrics HTTP/9\r\n\r\n").0, 400);
    assert_eq!(http(&m, b"GET /metrics\r\n\r\n").0, 400);
    assert_eq!(http(&m, b"\x00\xff\xfe\r\n\r\n").0, 400);
    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.resize(64 * 1024, b'a');
    let mut s = TcpStream::connect(&m).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(&huge);
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    assert_eq!(http(&m, b"POST /metrics HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(get(&m, "/").0, 404);
    assert_eq!(get(&m, "/metrics/../healthz").0, 404);
    // A client that connects and says nothing holds nothing for long.
    let silent = TcpStream::connect(&m).unwrap();
    assert_eq!(get(&m, "/healthz").0, 200);
    drop(silent);
    assert!(
        relay.child.try_wait().unwrap().is_none(),
        "the relay stopped"
    );

    // The sync still works after all that, and a second sync sends nothing new.
    let again = rt
        .block_on(sync_once(
            store,
            &creds,
            &sync_options(&relay.listen),
            |_| {},
        ))
        .unwrap();
    assert_eq!(again.outcome.docs_sent, 0);

    // JSON logs: every line is one JSON object; the session line has its fields.
    relay.stop();
    let log = std::fs::read_to_string(&relay.log).unwrap();
    let mut sessions = 0;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        if v["message"] == "sync session" {
            assert_eq!(v["result"], "ok", "{line}");
            assert!(v["bytes_in"].as_u64().is_some_and(|b| b > 0), "{line}");
            sessions += 1;
        }
    }
    assert_eq!(sessions, 2, "{log}");
    assert!(log.contains("relay stopped"), "{log}");
}

#[test]
fn metrics_listen_and_log_format_come_from_serve_toml() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("relay");
    init(&dir);
    // The operator uncomments two keys of the file init wrote; serve reads it without
    // --config.
    let path = dir.join("serve.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(
            "# metrics_listen = \"127.0.0.1:9433\"",
            "metrics_listen = \"127.0.0.1:0\"",
        )
        .replace("# log_format = \"text\"", "log_format = \"json\"")
        .replace("# listen = \"0.0.0.0:4433\"", "listen = \"127.0.0.1:0\"");
    std::fs::write(&path, text).unwrap();
    let log = tmp.path().join("relay.log");
    let mut child = relay_cmd()
        .args(["serve", "--dir", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    let mut second = String::new();
    stdout.read_line(&mut first).unwrap();
    stdout.read_line(&mut second).unwrap();
    let metrics = second.trim().strip_prefix("metrics on ").map(str::to_owned);
    if let Some(addr) = &metrics {
        assert_eq!(get(addr, "/healthz").0, 200);
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(first.starts_with("listening on 127.0.0.1:"), "{first}");
    assert!(metrics.is_some(), "{second}");
    assert!(status.success());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("serve.toml"), "{log}");
    for line in log.lines() {
        let _: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
}

#[test]
fn generate_assets_writes_man_pages_completions_and_the_packaged_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("assets");
    ok(&["generate-assets", "--out", out.to_str().unwrap()]);
    // One man page per visible command, with the exit codes on the main one.
    for name in [
        "musubi-relay",
        "musubi-relay-init",
        "musubi-relay-enroll",
        "musubi-relay-serve",
        "musubi-relay-backup",
        "musubi-relay-restore",
        "musubi-relay-office-add",
        "musubi-relay-bundle-import",
    ] {
        let page = std::fs::read_to_string(out.join("man").join(format!("{name}.1"))).unwrap();
        assert!(page.starts_with(".ie") || page.contains(".TH"), "{name}");
    }
    let main = std::fs::read_to_string(out.join("man/musubi-relay.1")).unwrap();
    assert!(main.contains("Exit codes"), "{main}");
    assert!(!out.join("man/musubi-relay-generate-assets.1").exists());
    for f in ["musubi-relay.bash", "_musubi-relay", "musubi-relay.fish"] {
        let text = std::fs::read_to_string(out.join("completions").join(f)).unwrap();
        assert!(text.contains("backup") && text.contains("restore"), "{f}");
    }
    assert_eq!(
        std::fs::read_to_string(out.join("serve.toml.example")).unwrap(),
        musubi_relay::config::serve_toml_template()
    );
    // The packaged unit: the example's with /usr/bin and no credential file required.
    let unit = std::fs::read_to_string(out.join("musubi-relay.service")).unwrap();
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("musubi-relay.service"))
            .unwrap();
    assert!(
        unit.contains(
            "\nExecStart=/usr/bin/musubi-relay serve --dir /var/lib/musubi-relay/relay\n"
        )
    );
    assert!(
        !unit
            .lines()
            .any(|l| l.starts_with("LoadCredentialEncrypted="))
    );
    for key in [
        "Type=notify",
        "WatchdogSec=30",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(example.lines().any(|l| l == key), "{key}");
        assert!(unit.lines().any(|l| l == key), "{key}");
    }
}
