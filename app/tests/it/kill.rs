//! `kill -9` at random moments during a stream of imports: every id printed before the
//! kill is there afterwards and exports intact, and the store always reopens.

use super::*;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::io::Read;
use std::time::Duration;

#[test]
fn kill_9_during_imports_loses_nothing_acknowledged() {
    let t = Tablet::new();
    let seed: u64 = std::env::var("MUSUBI_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("kill test seed {seed} (rerun with MUSUBI_KILL_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rounds: usize = std::env::var("MUSUBI_KILL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);

    // Files to import: distinct surveys so every id maps to a known name.
    let mut files = Vec::new();
    for i in 0..6 {
        let mut s = example();
        s["subject"]["name"] = json!(format!("試験 {i}"));
        files.push(t.write_json(&format!("s{i}.json"), &s));
    }
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    let mut killed = 0;
    for round in 0..rounds {
        // A stream: one process importing files one batch after another via a shell loop,
        // so the kill can land in any phase (unlock, validation, commit, printing).
        let batch = rng.random_range(1..=3);
        let chosen: Vec<usize> = (0..batch)
            .map(|_| rng.random_range(0..files.len()))
            .collect();
        let mut script = String::new();
        for _ in 0..4 {
            script.push_str(&format!(
                "\"{}\" --data-dir \"{}\" doc import",
                env!("CARGO_BIN_EXE_musubi"),
                t.data_dir().display()
            ));
            for &c in &chosen {
                script.push_str(&format!(" \"{}\"", files[c].display()));
            }
            script.push_str(" || exit 0\n");
        }
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec 2>/dev/null\n{script}"))
            .env("MUSUBI_PASSPHRASE", PASS)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
        // kill -9 the whole process group member that is running musubi, and the shell.
        let _ = std::process::Command::new("pkill")
            .args(["-9", "-P", &child.id().to_string()])
            .status();
        let _ = child.kill();
        let status = child.wait().unwrap();
        if !status.success() {
            killed += 1;
        }
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        // Only complete lines were acknowledged.
        let complete = if out.ends_with('\n') {
            out.as_str()
        } else {
            out.rsplit_once('\n').map(|(a, _)| a).unwrap_or("")
        };
        let lines: Vec<&str> = complete.lines().filter(|l| !l.is_empty()).collect();
        // Lines come in batches of `chosen.len()`, in file order.
        for (n, line) in lines.iter().enumerate() {
            let file = chosen[n % chosen.len()];
            acknowledged.push((line.to_string(), format!("試験 {file}")));
        }
        // The store reopens after every kill.
        let list = t.run(&["doc", "list", "--json"]);
        assert!(
            list.status.success(),
            "round {round}: store must reopen: {}",
            stderr(&list)
        );
    }
    let listed: Value = t.list();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    for (id, name) in &acknowledged {
        assert!(
            ids.contains(&id.as_str()),
            "acknowledged id {id} lost (seed {seed})"
        );
        let doc = t.export(id);
        assert_eq!(&doc["subject"]["name"], name, "seed {seed}");
        let mut expected = example();
        expected["subject"]["name"] = json!(name);
        expected["office"] = doc["office"].clone();
        assert_eq!(doc, expected, "document intact (seed {seed})");
    }
    eprintln!(
        "{} rounds, {killed} killed mid-way, {} ids acknowledged, {} stored",
        rounds,
        acknowledged.len(),
        ids.len()
    );
    assert!(!acknowledged.is_empty(), "some imports completed");
}
