//! `serve` under systemd, against a real process: the sd_notify messages on a
//! `NOTIFY_SOCKET` bound by the test (READY, WATCHDOG at half of WATCHDOG_USEC,
//! RELOADING/READY around SIGHUP, STOPPING), and a reload (SIGHUP) that applies the log
//! level and `[limits]` to the next session, names what needs a restart, and keeps
//! everything when the file is invalid.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{OFFICE, add_surveys, enrolled, ok, relay_cmd, s, sync, tablet};

fn kill(child: &Child, signal: &str) {
    let st = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "serve did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `serve --listen 127.0.0.1:0` with `env`; the child, its stdout and its address.
fn serve(dir: &Path, log: &Path, env: &[(&str, &str)]) -> (Child, BufReader<ChildStdout>, String) {
    let mut cmd = relay_cmd();
    cmd.args(["serve", "--dir", s(dir), "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let listen = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line:?}: {}", std::fs::read_to_string(log).unwrap()))
        .to_owned();
    (child, out, listen)
}

/// The next notification, within `limit`.
fn recv(sock: &UnixDatagram, limit: Duration) -> Option<String> {
    sock.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8(buf[..n].to_vec()).unwrap()),
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut =>
        {
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Notifications until one starts with `prefix` (within 10 s); the ones skipped too.
fn until(sock: &UnixDatagram, prefix: &str) -> (String, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut skipped = Vec::new();
    while Instant::now() < deadline {
        if let Some(m) = recv(sock, Duration::from_millis(500)) {
            if m.starts_with(prefix) {
                return (m, skipped);
            }
            skipped.push(m);
        }
    }
    panic!("no {prefix:?} notification; got {skipped:?}")
}

#[test]
fn serve_tells_systemd_ready_watchdog_reload_and_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("relay");
    ok(&["init", "--dir", s(&dir), "--office", OFFICE]);
    let path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let log = tmp.path().join("relay.log");
    // 400 ms: the relay pings every 200 ms.
    let (mut child, _out, listen) = serve(
        &dir,
        &log,
        &[("NOTIFY_SOCKET", s(&path)), ("WATCHDOG_USEC", "400000")],
    );

    let (ready, before) = until(&sock, "READY=1");
    assert!(before.is_empty(), "{before:?}");
    assert!(
        ready.contains(&format!("STATUS=serving on {listen}")),
        "{ready}"
    );

    // Pings at about half the interval.
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        if recv(&sock, Duration::from_millis(300)).as_deref() == Some("WATCHDOG=1") {
            pings += 1;
        }
    }
    // About 7; a loaded machine may delay a few, never double them.
    assert!((3..=12).contains(&pings), "{pings} pings in 1.5 s");

    // SIGSTOP stops the loop, so the pings stop (systemd would restart the relay).
    kill(&child, "-STOP");
    std::thread::sleep(Duration::from_millis(100));
    while recv(&sock, Duration::from_millis(50)).is_some() {}
    assert_eq!(recv(&sock, Duration::from_millis(800)), None);
    kill(&child, "-CONT");
    until(&sock, "WATCHDOG=1");

    // Reload: RELOADING=1 with the monotonic time, then READY=1 again.
    kill(&child, "-HUP");
    let (reloading, _) = until(&sock, "RELOADING=1");
    assert!(reloading.contains("\nMONOTONIC_USEC="), "{reloading}");
    let (ready, _) = until(&sock, "READY=1");
    assert!(ready.contains("configuration reloaded"), "{ready}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP stopped the relay"
    );

    // Stop: STOPPING=1 first, then a clean exit.
    kill(&child, "-TERM");
    until(&sock, "STOPPING=1");
    assert!(wait_exit(&mut child).success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("systemd watchdog on"), "{text}");

    // A watchdog meant for another process (WATCHDOG_PID) is not pinged; without
    // NOTIFY_SOCKET nothing is sent at all.
    let (mut child, _out, _) = serve(
        &dir,
        &log,
        &[
            ("NOTIFY_SOCKET", s(&path)),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    until(&sock, "READY=1");
    assert_eq!(recv(&sock, Duration::from_millis(600)), None);
    kill(&child, "-TERM");
    until(&sock, "STOPPING=1");
    assert!(wait_exit(&mut child).success());
    let (mut child, _out, _) = serve(&dir, &log, &[("WATCHDOG_USEC", "200000")]);
    assert_eq!(recv(&sock, Duration::from_millis(600)), None);
    kill(&child, "-TERM");
    assert!(wait_exit(&mut child).success());
}

/// The log text after `from` bytes, waiting (at most 10 s) until it holds `needle`.
fn log_after(log: &Path, from: usize, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap();
        let tail = text.get(from..).unwrap_or_default().to_owned();
        if tail.contains(needle) {
            return tail;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in\n{tail}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_applies_the_log_level_and_limits_to_the_next_session() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("relay");
    ok(&["init", "--dir", s(&dir), "--office", OFFICE]);
    let serve_toml = dir.join("serve.toml");
    let template = std::fs::read_to_string(&serve_toml).unwrap();
    std::fs::write(
        &serve_toml,
        template.replace("# log_level = \"info\"", "log_level = \"warn\""),
    )
    .unwrap();
    let log = tmp.path().join("relay.log");
    let (mut child, _out, listen) = serve(&dir, &log, &[]);
    let pid_before = child.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let creds = enrolled(&rt, &dir, "tablet-1", &listen);
    let store = tablet(&tmp.path().join("tablet"), "tablet-1");

    // At warn, a session is not logged.
    add_surveys(&store, 1);
    assert_eq!(sync(&rt, &store, &creds, &listen).docs_sent, 1);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap()
            .contains("sync session")
    );

    // Reload with log_level info, [limits] doc_bytes = 100 in relay.toml and a changed
    // metrics_listen (needs a restart).
    let mark = std::fs::read_to_string(&log).unwrap().len();
    std::fs::write(
        &serve_toml,
        template.replace(
            "# metrics_listen = \"127.0.0.1:9433\"",
            "metrics_listen = \"127.0.0.1:0\"",
        ),
    )
    .unwrap();
    let relay_toml = dir.join("relay.toml");
    let relay_text = std::fs::read_to_string(&relay_toml).unwrap();
    std::fs::write(
        &relay_toml,
        format!("{relay_text}\n[limits]\ndoc_bytes = 100\n"),
    )
    .unwrap();
    kill(&child, "-HUP");
    let tail = log_after(&log, mark, "configuration reloaded");
    assert!(tail.contains("metrics_listen"), "{tail}");
    assert!(tail.contains("after a restart"), "{tail}");
    assert!(tail.contains("intake_changed=true"), "{tail}");

    // The next session: logged, and the new survey is refused as too large.
    add_surveys(&store, 1);
    let refused = sync(&rt, &store, &creds, &listen);
    assert_eq!(refused.rejected.len(), 1, "{refused:?}");
    assert_eq!(refused.rejected[0].1, "too_large", "{refused:?}");
    log_after(&log, mark, "sync session");

    // An invalid file changes nothing: still info, still the limit.
    let mark = std::fs::read_to_string(&log).unwrap().len();
    std::fs::write(&serve_toml, "max_sessions = 0\n").unwrap();
    kill(&child, "-HUP");
    let tail = log_after(&log, mark, "configuration not reloaded");
    assert!(tail.contains("max_sessions must be at least 1"), "{tail}");
    let still = sync(&rt, &store, &creds, &listen);
    assert_eq!(still.rejected.len(), 1, "{still:?}");
    log_after(&log, mark, "sync session");

    // The limit lifted by another reload: the survey goes through, same process.
    std::fs::write(&serve_toml, &template).unwrap();
    std::fs::write(&relay_toml, &relay_text).unwrap();
    let mark = std::fs::read_to_string(&log).unwrap().len();
    kill(&child, "-HUP");
    log_after(&log, mark, "configuration reloaded");
    let through = sync(&rt, &store, &creds, &listen);
    assert!(through.rejected.is_empty(), "{through:?}");
    assert_eq!(through.docs_sent, 1);
    // A reload while a session runs leaves it alone.
    for _ in 0..10 {
        add_surveys(&store, 1);
    }
    let running = {
        let (store, creds, listen) = (Arc::clone(&store), creds.clone(), listen.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            sync(&rt, &store, &creds, &listen)
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    kill(&child, "-HUP");
    let during = running.join().unwrap();
    assert_eq!(during.docs_sent, 10, "{during:?}");
    assert!(during.rejected.is_empty(), "{during:?}");
    assert_eq!(child.id(), pid_before);
    assert!(child.try_wait().unwrap().is_none());
    kill(&child, "-TERM");
    assert!(wait_exit(&mut child).success());
}
