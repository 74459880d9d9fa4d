//! Command-line parsing and dispatch. Every subcommand is a thin call into the engine.

use crate::common::{InputError, now_ms, parse_id};
use crate::{output, secrets};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use musubi_engine::schema::Pointer;
use musubi_engine::store::{InitOptions, Store};
use musubi_engine::{Engine, EngineError};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Largest interchange file accepted (a survey is a few KB).
const MAX_IMPORT_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Parser, Debug)]
#[command(
    name = "musubi",
    version,
    about = "musubi (結び): field-side care records — 認定調査票 and 訪問看護記録 on an encrypted tablet store"
)]
// Every command's `after_help` (an example and the exit codes) is added by `command()`.
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    /// Without a subcommand, the tablet app opens.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug)]
pub struct Global {
    /// Data directory (default: the platform data directory).
    #[arg(long, global = true, env = "MUSUBI_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// File whose first line is the passphrase (used when MUSUBI_PASSPHRASE is not set).
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Staff member recorded in the audit history (default: the one given at init).
    #[arg(long, global = true, env = "MUSUBI_STAFF", value_name = "NAME")]
    pub staff: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new encrypted store for this device.
    Init(InitArgs),
    /// Work with documents.
    #[command(subcommand)]
    Doc(DocCommand),
    /// Passphrase management.
    #[command(subcommand)]
    Passphrase(PassphraseCommand),
    /// Set a new passphrase using the office recovery identity.
    Recover(RecoverArgs),
    /// Office recovery keys.
    #[command(subcommand, name = "recovery-key")]
    RecoveryKey(RecoveryKeyCommand),
    /// Enroll this device with the office relay: redeem an enrollment file online (code:
    /// MUSUBI_ENROLL_CODE or a prompt); the key pair is made here.
    Enroll(crate::enroll::EnrollArgs),
    /// Sync with the office relay now (both directions, until caught up).
    Sync(crate::sync::SyncArgs),
    /// Encrypted sync bundles for when there is no network (USB stick).
    #[command(subcommand)]
    Bundle(crate::bundle::BundleCommand),
    /// 認定調査票: checks (警告コード), completion, submission, amendments.
    #[command(subcommand)]
    Survey(crate::care::SurveyCommand),
    /// 要介護認定の進捗: create, advance, exceptions, the care manager's listing.
    #[command(subcommand)]
    Case(crate::care::CaseCommand),
    /// 訪問看護記録書Ⅱ: vital-sign checks.
    #[command(subcommand)]
    Visit(crate::care::VisitCommand),
    /// The municipality's survey requests (保険者番号, 被保険者番号, 申請区分, 申請日 …).
    #[command(subcommand)]
    Request(crate::care::RequestCommand),
    /// 居宅サービス計画作成依頼（変更）届出書: create one for a subject (print it with
    /// `export pdf`).
    #[command(subcommand, name = "plan-request")]
    PlanRequest(crate::plan_request::PlanRequestCommand),
    /// 認定調査票 as PDF (official layout, A4) or surveys as CSV (UTF-8 or Shift_JIS).
    #[command(subcommand)]
    Export(crate::export::ExportCommand),
    /// My Number card: readers, PIN status, offline 本人確認 (creates a registration).
    #[command(subcommand)]
    Card(crate::card::CardCommand),
    /// Registrations (担当事業所登録): consent and its withdrawal.
    #[command(subcommand)]
    Register(crate::card::RegisterCommand),
    /// Write man pages and shell completions (packaging; `scripts/deb.sh`).
    #[command(hide = true, name = "generate-assets")]
    GenerateAssets {
        /// Directory to write `man/` and `completions/` into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// 事業所番号 of the office this device belongs to (10 characters).
    #[arg(long, value_name = "事業所番号")]
    pub office: String,
    /// Office recovery recipient (age1…), so the office can recover a forgotten passphrase.
    #[arg(long, value_name = "AGE_RECIPIENT")]
    pub recovery_recipient: Option<String>,
    /// Name of this device as shown in the audit history.
    #[arg(long, value_name = "NAME")]
    pub device_name: Option<String>,
    /// File whose first line is the new passphrase (else MUSUBI_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub new_passphrase_file: Option<PathBuf>,
    /// scrypt cost as log2(N), for tests and benchmarks only (default: age's calibrated cost).
    #[arg(long, hide = true, env = "MUSUBI_KDF_WORK_FACTOR")]
    pub kdf_work_factor: Option<u8>,
}

#[derive(Subcommand, Debug)]
pub enum DocCommand {
    /// Import interchange JSON files (all or nothing); prints each new id on its own line.
    Import {
        /// Files to import.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a document as interchange JSON.
    Export { id: String },
    /// List documents.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Set one field: `musubi doc set ID /items/1-3 2` (the value is JSON).
    Set {
        id: String,
        /// JSON pointer, e.g. /items/1-3 or /special_notes/- to append.
        pointer: String,
        /// JSON value, e.g. 2, "text" or [2,4].
        value: String,
    },
    /// Who changed what, when, on which device.
    History {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Fields with concurrent values from different devices.
    Conflicts {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum PassphraseCommand {
    /// Change the passphrase (new one from MUSUBI_NEW_PASSPHRASE, --new-passphrase-file or a prompt).
    Change {
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// The office recovery identity file (AGE-SECRET-KEY-1…).
    #[arg(long, value_name = "FILE")]
    pub identity: PathBuf,
    /// File with the new passphrase (else MUSUBI_NEW_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub new_passphrase_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum RecoveryKeyCommand {
    /// Create an office recovery identity file and print its recipient (age1…).
    Generate {
        /// Where to write the identity (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// The clap definitions with every command's help completed: an example (from
/// [`example`]) and the exit-code table ([`crate::exit::HELP`]). Parsing, the man pages and
/// the completions all use this.
pub fn command() -> clap::Command {
    use clap::CommandFactory as _;
    decorate(Cli::command(), "musubi")
}

/// Adds the example and the exit codes to `cmd` (whose full name is `path`) and to each
/// of its subcommands.
fn decorate(cmd: clap::Command, path: &str) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    let mut help = String::new();
    if let Some(example) = example(path) {
        help.push_str("Example / 例:\n");
        for line in example.lines() {
            help.push_str("  ");
            help.push_str(line);
            help.push('\n');
        }
        help.push('\n');
    }
    help.push_str(crate::exit::HELP);
    let mut cmd = cmd.after_help(help);
    for name in names {
        let sub_path = format!("{path} {name}");
        cmd = cmd.mut_subcommand(&name, |c| decorate(c, &sub_path));
    }
    cmd
}

/// The example shown by `musubi … --help` for each command (by its full name).
fn example(path: &str) -> Option<&'static str> {
    Some(match path {
        "musubi" => {
            "musubi --data-dir /var/tmp/musubi          # the tablet app\nmusubi doc list --json                     # a subcommand"
        }
        "musubi init" => {
            "musubi init --office 1370100016 --recovery-recipient age1… --device-name tablet-3"
        }
        "musubi doc" => "musubi doc import schemas/examples/survey.json",
        "musubi doc import" => {
            "musubi doc import schemas/examples/survey.json schemas/examples/visit.json"
        }
        "musubi doc export" => "musubi doc export ID > survey.json",
        "musubi doc list" => "musubi doc list --json",
        "musubi doc set" => {
            "musubi doc set ID /items/1-3 2\nmusubi doc set ID /special_notes/- '{\"item\":\"1-3\",\"text\":\"…\"}'"
        }
        "musubi doc history" => "musubi doc history ID --json",
        "musubi doc conflicts" => "musubi doc conflicts ID",
        "musubi passphrase" | "musubi passphrase change" => {
            "MUSUBI_NEW_PASSPHRASE=… musubi passphrase change"
        }
        "musubi recover" => "musubi recover --identity office-recovery.txt",
        "musubi recovery-key" | "musubi recovery-key generate" => {
            "musubi recovery-key generate --out office-recovery.txt   # prints age1…"
        }
        "musubi enroll" => "MUSUBI_ENROLL_CODE=… musubi enroll tablet-3.enroll",
        "musubi sync" => "musubi sync --relay relay.example.lan:4433",
        "musubi bundle" | "musubi bundle export" => {
            "musubi bundle export --to /media/usb/tablet-3.bundle"
        }
        "musubi bundle import" => "musubi bundle import /media/usb/tablet-3.bundle",
        "musubi survey" | "musubi survey check" => "musubi survey check ID --json",
        "musubi survey complete" => "musubi survey complete ID",
        "musubi survey reopen" => "musubi survey reopen ID",
        "musubi survey submit" => "musubi survey submit ID",
        "musubi survey amend" => "musubi survey amend ID /items/1-3 2 --reason \"記入誤り\"",
        "musubi survey dismiss" => {
            "musubi survey dismiss ID 01 --reason \"確認済み\" --items 1-3,1-10"
        }
        "musubi case" | "musubi case list" => "musubi case list --today 2026-10-19 --flagged",
        "musubi case new" => "musubi case new --subject ID --date 2026-09-18 --kind 2",
        "musubi case advance" => "musubi case advance ID survey_visited 2026-10-14",
        "musubi case exception" => {
            "musubi case exception ID 延期通知 --date 2026-10-10 --expected-by 2026-11-10 --reason \"主治医意見書の遅れ\""
        }
        "musubi case waive" => {
            "musubi case waive ID --agreed-on 2026-09-20 --current-valid-to 2026-12-31"
        }
        "musubi case details" => {
            "musubi case details ID --insured-category 2 --specified-disease 13 --physician \"架空 一郎\" --institution \"架空病院\""
        }
        "musubi case show" => "musubi case show ID --json",
        "musubi visit" | "musubi visit check" => "musubi visit check ID --json",
        "musubi request" | "musubi request import" => "musubi request import requests.csv --json",
        "musubi plan-request" | "musubi plan-request new" => {
            "musubi plan-request new --subject ID --category 新規 --plan 居宅 \\\n  --provider-type 居宅介護支援事業所 --provider-number 1370100016 \\\n  --provider-name ケアプランセンター結び --start 2026-11-01 --filer 本人"
        }
        "musubi export" | "musubi export pdf" => "musubi export pdf ID --out survey.pdf",
        "musubi export csv" => "musubi export csv --out surveys.csv --encoding shift_jis",
        "musubi card" | "musubi card verify" => "MUSUBI_CARD_PIN=… musubi card verify --subject ID",
        "musubi card readers" => "musubi card readers",
        "musubi card status" => "musubi card status --wait 30",
        "musubi register" | "musubi register consent" => {
            "musubi register consent --registration ID --consented-by \"架空 花子\" --scope 認定調査 --method signature"
        }
        "musubi register withdraw" => {
            "musubi register withdraw --registration ID --reason \"本人の申し出\""
        }
        "musubi register status" => "musubi register status --registration ID",
        _ => return None,
    })
}

/// Man pages (`man/`, one per command) and bash, zsh and fish completions
/// (`completions/`) under `out`, from [`command`].
fn generate_assets(out: &Path) -> Result<()> {
    use clap_complete::Shell;
    let man = out.join("man");
    let completions = out.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    clap_mangen::generate_to(command(), &man)
        .with_context(|| format!("writing the man pages into {}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command(), "musubi", &completions)
            .with_context(|| format!("writing the {shell} completions"))?;
    }
    eprintln!("man pages and completions written to {}", out.display());
    Ok(())
}

/// The data directory: `--data-dir`, `MUSUBI_DATA_DIR`, else the platform's data
/// directory from `directories` (`$XDG_DATA_HOME/musubi`, else `~/.local/share/musubi` on
/// Linux).
pub fn data_dir(global: &Global) -> Result<PathBuf> {
    if let Some(d) = &global.data_dir {
        return Ok(d.clone());
    }
    let dirs = directories::ProjectDirs::from("", "", "musubi")
        .context("no home directory to find the data directory; pass --data-dir")?;
    Ok(dirs.data_dir().to_path_buf())
}

fn open(global: &Global) -> Result<Engine> {
    let dir = data_dir(global)?;
    let pass = secrets::current(global.passphrase_file.as_deref())?;
    let store = Store::open(&dir, &pass).map_err(EngineError::from)?;
    Ok(Engine::new(store, global.staff.clone())?)
}

fn read_json_file(path: &Path) -> Result<Value> {
    let name = path.display();
    let meta =
        std::fs::metadata(path).map_err(|e| InputError(format!("{name}: cannot read: {e}")))?;
    if meta.len() > MAX_IMPORT_BYTES {
        return Err(InputError(format!(
            "{name}: file too large ({} bytes; limit {MAX_IMPORT_BYTES})",
            meta.len()
        ))
        .into());
    }
    let bytes = std::fs::read(path).map_err(|e| InputError(format!("{name}: cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        InputError(format!(
            "{name}: not UTF-8 text (interchange JSON must be UTF-8)"
        ))
    })?;
    serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|e| {
        // serde_json syntax errors carry only a position, never content.
        InputError(format!("{name}: not valid JSON: {e}")).into()
    })
}

/// Runs one command.
pub fn run(cli: Cli) -> Result<()> {
    let global = &cli.global;
    let Some(command) = cli.command else {
        // No subcommand: the tablet app.
        #[cfg(not(feature = "gui"))]
        return Err(InputError(
            "この musubi は画面なしで作られています（gui 機能なし）。コマンドを指定してください（musubi --help）。"
                .to_owned(),
        )
        .into());
        #[cfg(feature = "gui")]
        return musubi_app::ui::run(musubi_app::ui::WorkerConfig {
            data_dir: data_dir(global)?,
            staff: global.staff.clone(),
            background_sync: true,
            relay: std::env::var("MUSUBI_RELAY").ok().filter(|r| !r.is_empty()),
            card: musubi_app::ui::CardAccess::Pcsc {
                reader: std::env::var("MUSUBI_CARD_READER")
                    .ok()
                    .filter(|r| !r.is_empty()),
            },
            trust_anchors: std::env::var_os("MUSUBI_TRUST_ANCHOR")
                .map(|v| std::env::split_paths(&v).collect())
                .unwrap_or_default(),
        });
    };
    match command {
        Command::Init(args) => init(global, args),
        Command::Doc(cmd) => doc(global, cmd),
        Command::Passphrase(PassphraseCommand::Change {
            new_passphrase_file,
        }) => {
            let dir = data_dir(global)?;
            let old = secrets::current(global.passphrase_file.as_deref())?;
            let new = secrets::new("MUSUBI_NEW_PASSPHRASE", new_passphrase_file.as_deref())?;
            Store::change_passphrase(&dir, &old, &new)?;
            eprintln!("パスフレーズを変更しました (passphrase changed).");
            Ok(())
        }
        Command::Recover(args) => {
            let dir = data_dir(global)?;
            let identity = std::fs::read_to_string(&args.identity).with_context(|| {
                format!("reading the recovery identity {}", args.identity.display())
            })?;
            let new = secrets::new("MUSUBI_NEW_PASSPHRASE", args.new_passphrase_file.as_deref())?;
            Store::recover(&dir, &identity, &new)?;
            eprintln!("新しいパスフレーズを設定しました (recovered: a new passphrase is set).");
            Ok(())
        }
        Command::Enroll(args) => {
            crate::enroll::run(&data_dir(global)?, global.passphrase_file.as_deref(), args)
        }
        Command::Sync(args) => {
            crate::sync::run(&data_dir(global)?, global.passphrase_file.as_deref(), args)
        }
        Command::Bundle(cmd) => crate::bundle::run(cmd, || open(global)),
        Command::Survey(cmd) => crate::care::survey(cmd, || open(global)),
        Command::Case(cmd) => crate::care::case_cmd(cmd, || open(global)),
        Command::Visit(cmd) => crate::care::visit_cmd(cmd, || open(global)),
        Command::Request(cmd) => crate::care::request_cmd(cmd, || open(global)),
        Command::PlanRequest(cmd) => crate::plan_request::run(cmd, || open(global)),
        Command::Export(cmd) => crate::export::run(cmd, || open(global)),
        Command::Card(cmd) => crate::card::run_card(global.staff.clone(), cmd, || open(global)),
        Command::Register(cmd) => crate::card::run_register(cmd, || open(global)),
        Command::GenerateAssets { out } => generate_assets(&out),
        Command::RecoveryKey(RecoveryKeyCommand::Generate { out }) => {
            let (identity, recipient) = musubi_engine::store::generate_recovery_identity();
            write_new_private_file(&out, identity.as_bytes())?;
            outln!("{recipient}");
            Ok(())
        }
    }
}

/// Writes a new private (0600) file with the durable write; an existing file is kept.
fn write_new_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    musubi_engine::fsutil::write_file(path, bytes, musubi_engine::fsutil::Existing::Refuse)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))
}

fn init(global: &Global, args: InitArgs) -> Result<()> {
    let dir = data_dir(global)?;
    if let musubi_engine::identifiers::Verdict::Invalid(m) =
        musubi_engine::identifiers::check_office_number(&args.office)
    {
        return Err(InputError(format!("--office: {m}")).into());
    }
    let pass = secrets::new(
        "MUSUBI_PASSPHRASE",
        args.new_passphrase_file
            .as_deref()
            .or(global.passphrase_file.as_deref()),
    )?;
    let device_name = args.device_name.unwrap_or_else(|| "tablet".to_owned());
    let store = Store::init(
        &dir,
        &pass,
        InitOptions {
            office: args.office,
            device_name,
            staff: global.staff.clone(),
            recovery_recipient: args.recovery_recipient,
            kdf_work_factor: args.kdf_work_factor,
        },
    )?;
    let info = store.info().clone();
    store.close()?;
    eprintln!(
        "初期化しました (store created) in {} — 事業所番号 {}, device {} ({}){}",
        dir.display(),
        info.office,
        info.device_name,
        &info.device_id,
        if info.recovery_recipient.is_some() {
            ", office recovery enabled"
        } else {
            ", no office recovery key"
        }
    );
    Ok(())
}

fn doc(global: &Global, cmd: DocCommand) -> Result<()> {
    match cmd {
        DocCommand::Import { files } => {
            // Read and parse every file before opening the store: bad input changes nothing.
            let mut inputs = Vec::with_capacity(files.len());
            for f in &files {
                inputs.push((f.display().to_string(), read_json_file(f)?));
            }
            let engine = open(global)?;
            let outcome = engine.import(&inputs, now_ms())?;
            for (name, w) in &outcome.warnings {
                eprintln!(
                    "warning: {name}: {}: {}",
                    w.path,
                    crate::output::issue_text(w)
                );
            }
            engine.close()?;
            for id in outcome.ids {
                outln!("{id}");
            }
            Ok(())
        }
        DocCommand::Export { id } => {
            let id = parse_id(&id)?;
            let engine = open(global)?;
            let json = engine.export(id)?;
            outln!("{}", serde_json::to_string_pretty(&json)?);
            Ok(())
        }
        DocCommand::List { json } => {
            let engine = open(global)?;
            let docs = engine.list()?;
            output::print_list(&docs, json)
        }
        DocCommand::Set { id, pointer, value } => {
            let id = parse_id(&id)?;
            let ptr = Pointer::parse(&pointer).map_err(|e| InputError(format!("pointer: {e}")))?;
            let value: Value = serde_json::from_str(&value).map_err(|e| {
                InputError(format!(
                    "value for {ptr}: not valid JSON ({e}); strings need quotes, e.g. '\"text\"'"
                ))
            })?;
            let engine = open(global)?;
            let outcome = engine.set(id, &ptr, value, now_ms())?;
            for w in &outcome.warnings {
                eprintln!("warning: {}: {}", w.path, crate::output::issue_text(w));
            }
            engine.close()?;
            if !outcome.changed {
                eprintln!("変更なし (the value was already set; nothing recorded)");
            }
            Ok(())
        }
        DocCommand::History { id, json } => {
            let id = parse_id(&id)?;
            let engine = open(global)?;
            let doc = engine.load(id)?;
            let kind = doc.kind();
            let entries = engine.history(id)?;
            output::print_history(kind, &entries, json)
        }
        DocCommand::Conflicts { id, json } => {
            let id = parse_id(&id)?;
            let engine = open(global)?;
            let conflicts = engine.conflicts(id)?;
            output::print_conflicts(&conflicts, json)
        }
    }
}
