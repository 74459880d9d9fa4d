//! The command line's own documentation: every command's `--help` has an example and the
//! exit codes; `generate-assets` writes a man page per command and the bash, zsh and fish
//! completions; the exit codes are the documented ones in every command family.

use super::*;

fn musubi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_musubi"))
        .args(args)
        .env_remove("MUSUBI_DATA_DIR")
        .env_remove("MUSUBI_PASSPHRASE")
        .output()
        .unwrap()
}

/// The names under "Commands:" in a help text (clap's built-in `help` left out).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim_end() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l[2..].starts_with(' '))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|n| n != "help")
        .collect()
}

/// Every command, by its words after `musubi` (the root is the empty path), walked from
/// the binary's own help.
fn command_tree() -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let o = musubi(&args);
        assert!(o.status.success(), "musubi {args:?}: {}", stderr(&o));
        let help = String::from_utf8(o.stdout).unwrap();
        for sub in subcommands(&help) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        out.push((path, help));
    }
    out
}

#[test]
fn every_command_help_has_an_example_and_the_exit_codes() {
    let tree = command_tree();
    // The walk really went down: every family and their subcommands.
    assert!(tree.len() > 40, "only {} commands found", tree.len());
    for family in [
        "init",
        "doc",
        "passphrase",
        "recover",
        "recovery-key",
        "enroll",
        "sync",
        "bundle",
        "survey",
        "case",
        "visit",
        "request",
        "plan-request",
        "export",
        "card",
        "register",
    ] {
        assert!(
            tree.iter().any(|(p, _)| p.len() == 1 && p[0] == family),
            "{family} not listed in musubi --help"
        );
    }
    assert!(
        !tree
            .iter()
            .any(|(p, _)| p.iter().any(|w| w == "generate-assets")),
        "the packaging command stays hidden"
    );
    for (path, help) in &tree {
        let name = std::iter::once("musubi")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let example: Vec<&str> = help
            .lines()
            .skip_while(|l| !l.starts_with("Example / 例:"))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .collect();
        assert!(
            example
                .iter()
                .any(|l| l.contains(&format!("{name} ")) || l.trim_end().ends_with(&name)),
            "`{name} --help` has no example of {name}:\n{help}"
        );
        for code in [
            "Exit codes / 終了コード:",
            "  0  success",
            "  1  other failure",
            "  2  invalid input, nothing written",
            "  3  wrong passphrase",
            "  4  store unusable",
            "  5  My Number card check failed",
            "  6  no reader, no card",
        ] {
            assert!(
                help.contains(code),
                "`{name} --help` lacks {code:?}:\n{help}"
            );
        }
    }
}

#[test]
fn generate_assets_writes_a_man_page_per_command_and_three_completions() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("assets");
    let o = musubi(&["generate-assets", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let tree = command_tree();
    for (path, _) in &tree {
        let page = std::iter::once("musubi")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("-");
        let text = std::fs::read_to_string(out.join("man").join(format!("{page}.1")))
            .unwrap_or_else(|e| panic!("man page {page}.1: {e}"));
        assert!(text.contains(".TH"), "{page}.1 is a man page");
        assert!(text.contains("Exit codes"), "{page}.1 names the exit codes");
        assert!(text.contains("Example"), "{page}.1 has the example");
    }
    let pages = std::fs::read_dir(out.join("man")).unwrap().count();
    assert_eq!(
        pages,
        tree.len(),
        "one page per command, none for hidden ones"
    );
    assert!(!out.join("man/musubi-generate-assets.1").exists());
    for f in ["musubi.bash", "_musubi", "musubi.fish"] {
        let text = std::fs::read_to_string(out.join("completions").join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"));
        for word in ["survey", "plan-request", "dismiss", "data-dir"] {
            assert!(text.contains(word), "{f} completes {word}");
        }
    }
}

#[test]
fn exit_codes_are_the_same_in_every_command_family() {
    let t = Tablet::new();
    let id = t.import(&example());
    let csv = t.tmp.path().join("out.csv");
    let csv = csv.to_str().unwrap();
    let code = |mut c: Command, args: &[&str]| {
        let o = c.args(args).output().unwrap();
        (o.status.code(), stderr(&o))
    };
    // 2: refused input, in each family that takes an id.
    for args in [
        &["doc", "export", "not-an-id"][..],
        &["survey", "check", "not-an-id"],
        &["case", "show", "not-an-id"],
        &["visit", "check", "not-an-id"],
        &["export", "pdf", "not-an-id", "--out", csv],
        &[
            "plan-request",
            "new",
            "--subject",
            "not-an-id",
            "--category",
            "新規",
            "--plan",
            "居宅",
            "--provider-type",
            "居宅介護支援事業所",
            "--provider-number",
            "1370100016",
            "--provider-name",
            "結び",
            "--start",
            "2026-11-01",
            "--filer",
            "本人",
        ],
        &["card", "verify", "--subject", "not-an-id"],
        &["register", "status", "--registration", "not-an-id"],
        &["survey", "dismiss", &id, "01", "--reason", ""],
    ] {
        let (c, err) = code(t.cmd(), args);
        assert_eq!(c, Some(2), "{args:?}: {err}");
    }
    // 3: a wrong passphrase, whichever family opens the store.
    for args in [
        &["doc", "list"][..],
        &["survey", "check", &id],
        &["case", "list"],
        &["export", "csv", "--out", csv],
    ] {
        let mut c = t.cmd();
        c.env("MUSUBI_PASSPHRASE", "not the passphrase");
        let (c, err) = code(c, args);
        assert_eq!(c, Some(3), "{args:?}: {err}");
    }
    // 4: no store in the data directory.
    let empty = tempfile::tempdir().unwrap();
    for args in [
        &["doc", "list"][..],
        &["survey", "check", &id],
        &["case", "list"],
        &["export", "csv", "--out", csv],
        &["sync"],
    ] {
        let mut c = Command::new(env!("CARGO_BIN_EXE_musubi"));
        c.arg("--data-dir")
            .arg(empty.path().join("none"))
            .env("MUSUBI_PASSPHRASE", PASS);
        let (c, err) = code(c, args);
        assert_eq!(c, Some(4), "{args:?}: {err}");
    }
    assert!(!std::path::Path::new(csv).exists(), "nothing was written");
}
