//! `musubi-relay`: the office relay (hub) for musubi devices.
//!
//! Exit codes: 0 success; 1 other failure; 2 invalid input (nothing was changed; also a
//! damaged or foreign backup file); 3 wrong bundle or backup passphrase (nothing was
//! changed); 4 the directory is not a relay directory or its store cannot be used.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use musubi_engine::store::{SecretString, StoreError};
use musubi_relay::config::{LogFormat, SERVE_TOML, ServeFileConfig};
use musubi_relay::dir::{EnrollRequest, InitOptions, Status};
use musubi_relay::{RelayDir, RelayError};

mod bundle_cmd;

/// Exit codes, shown by `--help` and in the man pages.
const EXIT_CODES: &str = "Exit codes: 0 success; 1 other failure; 2 invalid input, nothing changed (also a damaged or foreign backup file); 3 wrong bundle or backup passphrase, nothing changed; 4 not a relay directory, or its store cannot be opened (e.g. missing store key).

Documentation: /usr/share/doc/musubi-relay/relay.md (docs/relay.md in the sources).";

#[derive(Parser, Debug)]
#[command(
    name = "musubi-relay",
    version,
    about = "musubi office relay: the hub tablets sync with (office CA, enrollment, revocation, QUIC server)",
    after_long_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct DirArg {
    /// The relay directory.
    #[arg(long, env = "MUSUBI_RELAY_DIR", value_name = "DIR")]
    dir: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a relay directory: office CA, relay certificate, encrypted store.
    Init {
        #[command(flatten)]
        dir: DirArg,
        /// 事業所番号 of the first office served (more: `office add`).
        #[arg(long, value_name = "事業所番号")]
        office: String,
        /// Host name or IP address devices use to reach the relay (repeatable; the
        /// first is the default address in enrollment files). localhost and 127.0.0.1
        /// are always included.
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// Default UDP listen address of `serve` (default 127.0.0.1:4433).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// scrypt cost of the store key file, for tests only.
        #[arg(long, hide = true, env = "MUSUBI_KDF_WORK_FACTOR")]
        kdf_work_factor: Option<u8>,
        /// A cluster relay: keep documents in this PostgreSQL database instead of the
        /// embedded store (`postgresql://user@host:port/db`, or
        /// `host=/run/postgresql port=5432 user=musubi dbname=musubi`). Creates the schema.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
    },
    /// Offices served by this relay.
    #[command(subcommand)]
    Office(OfficeCommand),
    /// Enroll a device: records a pending enrollment, writes its enrollment file (no key:
    /// the tablet makes its own and redeems the file once, online) and prints the
    /// one-time code on the last line of standard output.
    Enroll {
        #[command(flatten)]
        dir: DirArg,
        /// Name of the device (e.g. tablet-3), unique among active devices.
        #[arg(long, value_name = "NAME")]
        device: String,
        /// Office of the device (default: the only office served).
        #[arg(long, value_name = "事業所番号")]
        office: Option<String>,
        /// Relay address for the device, HOST:PORT (default: the first host and the
        /// listen port).
        #[arg(long, value_name = "HOST:PORT")]
        address: Option<String>,
        /// Where to write the enrollment file (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Re-enroll the active device of this name (e.g. its certificate expired): it
        /// keeps its id, office and everything on the tablet; only its key and
        /// certificate are replaced once the tablet redeems the new file.
        #[arg(long)]
        renew: bool,
    },
    /// Revoke a device: it is refused from its next connection on.
    Revoke {
        #[command(flatten)]
        dir: DirArg,
        /// Name (or id) of the active device.
        #[arg(long, value_name = "NAME")]
        device: String,
    },
    /// Offices, devices and document counts.
    Status {
        #[command(flatten)]
        dir: DirArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Sync bundles carried from devices on a USB stick (`musubi bundle export`).
    #[command(subcommand)]
    Bundle(bundle_cmd::BundleCommand),
    /// Write an encrypted backup of the relay directory and a consistent snapshot of its
    /// store, while the relay may be serving (passphrase from MUSUBI_BACKUP_PASSPHRASE,
    /// --passphrase-file or a prompt). The store key is not included unless asked for;
    /// a cluster relay's database is never included (use pg_dump).
    ///
    /// Example: musubi-relay backup --dir /var/lib/musubi-relay/relay --to /backup/relay-2026-10-19.musubi-backup
    Backup {
        #[command(flatten)]
        dir: DirArg,
        /// The backup file to write (must not exist).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// Read the backup passphrase from the first line of FILE (when
        /// MUSUBI_BACKUP_PASSPHRASE is not set).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// Also put the store key (store.key or the systemd credential; a cluster's
        /// data.key) in the backup: the backup and its passphrase then open every
        /// document.
        #[arg(long)]
        include_store_key: bool,
        /// scrypt cost of the backup file, for tests only.
        #[arg(long, hide = true, env = "MUSUBI_KDF_WORK_FACTOR")]
        kdf_work_factor: Option<u8>,
    },
    /// Make a new relay directory from a backup (refuses an existing, non-empty
    /// directory; all or nothing).
    ///
    /// Example: musubi-relay restore --from /backup/relay-2026-10-19.musubi-backup --dir /var/lib/musubi-relay/relay
    Restore {
        /// The backup file.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The new relay directory (must not exist, or be empty).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Read the backup passphrase from the first line of FILE (when
        /// MUSUBI_BACKUP_PASSPHRASE is not set).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
    /// Write the man pages, shell completions (bash, zsh, fish) and an example
    /// serve.toml into DIR (for packaging).
    #[command(hide = true)]
    GenerateAssets {
        /// The output directory (created; must not hold these files yet).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Run the QUIC server until SIGINT or SIGTERM.
    Serve {
        #[command(flatten)]
        dir: DirArg,
        /// UDP listen address (overrides the config file and relay.toml).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Configuration file (TOML; every key is in the serve.toml `init` writes).
        /// Default: DIR/serve.toml if it exists.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// TCP address for GET /metrics (Prometheus) and GET /healthz, e.g.
        /// 127.0.0.1:9433 (no authentication: loopback or an admin network only).
        #[arg(long = "metrics", value_name = "ADDR")]
        metrics: Option<SocketAddr>,
        /// Log format on standard error (default text).
        #[arg(long, value_enum, value_name = "FORMAT")]
        log_format: Option<LogFormat>,
        /// TEST RELAYS ONLY: also trust this root (PEM) for My Number card evidence, e.g.
        /// musubi-vcard's trust-anchor.pem. Without it only the bundled J-LIS roots count.
        #[arg(long, value_name = "FILE")]
        test_trust_anchor: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum OfficeCommand {
    /// Serve one more office.
    Add {
        #[command(flatten)]
        dir: DirArg,
        /// 事業所番号 of the office.
        #[arg(long, value_name = "事業所番号")]
        office: String,
    },
    /// List the offices served.
    List {
        #[command(flatten)]
        dir: DirArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `println!` that returns an error instead of panicking when stdout is closed.
macro_rules! outln {
    ($($arg:tt)*) => {{
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

fn init_logging(default: &str, format: LogFormat) {
    musubi_relay::logging::init(default, format);
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            ExitCode::from(exit_code(&err))
        }
    }
}

fn describe(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<RelayError>() {
            return match e {
                e if e.is_invalid_input() => 2,
                RelayError::BackupWrongPassphrase => 3,
                RelayError::NotARelayDir { .. } | RelayError::StoreKeyMissing { .. } => 4,
                RelayError::Store(s) => store_code(s),
                _ => 1,
            };
        }
        if let Some(s) = cause.downcast_ref::<StoreError>() {
            return store_code(s);
        }
        if let Some(code) = bundle_cmd::exit_code(cause) {
            return code;
        }
    }
    1
}

fn store_code(e: &StoreError) -> u8 {
    match e {
        StoreError::WrongPassphrase
        | StoreError::NotInitialised { .. }
        | StoreError::Quarantined { .. }
        | StoreError::NewerSchema { .. }
        | StoreError::DatabaseMissing { .. } => 4,
        _ => 1,
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve {
            dir,
            listen,
            config,
            metrics,
            log_format,
            test_trust_anchor,
        } => serve(
            &dir.dir,
            ServeArgs {
                listen,
                config,
                metrics,
                log_format,
                test_trust_anchor,
            },
        ),
        other => {
            // Administration commands print their own summary; logs only for problems.
            init_logging("warn", LogFormat::Text);
            admin(other)
        }
    }
}

fn admin(command: Command) -> Result<()> {
    match command {
        Command::Init {
            dir,
            office,
            hosts,
            listen,
            kdf_work_factor,
            database,
        } => {
            let relay = RelayDir::init(InitOptions {
                dir: dir.dir,
                office,
                hosts,
                listen,
                store_kdf_work_factor: kdf_work_factor,
                database,
            })?;
            let c = relay.config();
            eprintln!(
                "relay directory created: {} (relay id {}, office {}, listen {}, hosts {})",
                relay.path().display(),
                c.relay_id,
                c.offices.join(", "),
                c.listen,
                c.hosts.join(", ")
            );
            eprintln!(
                "serve settings: {} (every key commented out with its default)",
                relay.path().join(SERVE_TOML).display()
            );
            eprintln!(
                "next: `musubi-relay enroll --dir {} --device NAME --out FILE` for each tablet, then `musubi-relay serve --dir {}`",
                relay.path().display(),
                relay.path().display()
            );
            Ok(())
        }
        Command::Office(OfficeCommand::Add { dir, office }) => {
            let mut relay = RelayDir::open(&dir.dir)?;
            relay.add_office(&office)?;
            eprintln!(
                "office {office} added; this relay now serves {} offices",
                relay.offices_served()?.len()
            );
            Ok(())
        }
        Command::Office(OfficeCommand::List { dir, json }) => {
            let relay = RelayDir::open(&dir.dir)?;
            let offices = relay.offices_served()?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&offices)?);
            } else {
                for office in &offices {
                    outln!("{office}");
                }
            }
            Ok(())
        }
        Command::Enroll {
            dir,
            device,
            office,
            address,
            out,
            renew,
        } => {
            let relay = RelayDir::open(&dir.dir)?;
            let enrollment = relay.enroll(&EnrollRequest {
                device_name: device,
                office,
                address,
                out: out.clone(),
                reenroll: renew,
            })?;
            let r = &enrollment.record;
            eprintln!(
                "{} device {} (id {}) for office {}; relay address {}; the tablet must redeem it online (relay running) before {}",
                if r.reenroll {
                    "re-enrollment made for"
                } else {
                    "enrollment made for"
                },
                r.name,
                r.id,
                r.office,
                enrollment.relay_address,
                r.expires_at
            );
            eprintln!(
                "enrollment file: {} — on the tablet run `musubi enroll {}` and type the one-time code below; give the file and the code separately",
                out.display(),
                out.file_name().map_or_else(
                    || out.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                )
            );
            outln!("{}", enrollment.code.grouped().as_str());
            Ok(())
        }
        Command::Revoke { dir, device } => {
            let relay = RelayDir::open(&dir.dir)?;
            let r = relay.revoke(&device)?;
            eprintln!(
                "revoked device {} (id {}, office {}); it is refused from its next connection",
                r.name, r.id, r.office
            );
            Ok(())
        }
        Command::Status { dir, json } => {
            let relay = RelayDir::open(&dir.dir)?;
            let status = relay.status()?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status)?;
            }
            Ok(())
        }
        Command::Bundle(cmd) => bundle_cmd::run(cmd),
        Command::Backup {
            dir,
            to,
            passphrase_file,
            include_store_key,
            kdf_work_factor,
        } => {
            let relay = RelayDir::open(&dir.dir)?;
            let passphrase = backup_passphrase(passphrase_file.as_deref(), true)?;
            let report = musubi_relay::backup::backup(
                &relay,
                &musubi_relay::backup::BackupOptions {
                    to: to.clone(),
                    passphrase,
                    include_store_key,
                    work_factor: kdf_work_factor,
                },
            )?;
            let m = &report.manifest;
            let store = m.files.iter().find(|f| f.path == "store/musubi.db");
            eprintln!(
                "backup written: {} ({} bytes; relay {}, {} files{})",
                to.display(),
                report.file_bytes,
                m.relay_id,
                m.files.len(),
                store.map_or_else(String::new, |f| format!(
                    ", store snapshot {} bytes",
                    f.bytes
                ))
            );
            if m.kind == "cluster" {
                eprintln!(
                    "NOT in this backup: the documents and the device registry, which are in PostgreSQL. Back the database up with `pg_dump -Fc` or continuous archiving (PITR); see docs/relay.md \"Cluster\".\n文書と端末台帳は PostgreSQL にあり、このバックアップには含まれません。pg_dump か PITR でデータベースをバックアップしてください。"
                );
            }
            if m.store_key_included {
                eprintln!(
                    "the store key IS in this backup: the file and its passphrase open every document; keep both apart and offline"
                );
            } else {
                eprintln!(
                    "the store key is NOT in this backup: keep {} (or the systemd credential) separately; a restore needs it",
                    if m.kind == "cluster" {
                        "data.key"
                    } else {
                        "store.key"
                    }
                );
            }
            Ok(())
        }
        Command::Restore {
            from,
            dir,
            passphrase_file,
        } => {
            let passphrase = backup_passphrase(passphrase_file.as_deref(), false)?;
            let report = musubi_relay::backup::restore(&from, &passphrase, &dir)?;
            let m = &report.manifest;
            eprintln!(
                "relay directory restored: {} (relay {}, backup taken {}, {} files)",
                dir.display(),
                m.relay_id,
                m.created_at,
                m.files.len()
            );
            if !m.store_key_included {
                eprintln!(
                    "the backup holds no store key: put the relay's {} into {} (or provide the systemd credential {}) before `musubi-relay serve`",
                    if m.kind == "cluster" {
                        "data.key"
                    } else {
                        "store.key"
                    },
                    dir.display(),
                    if m.kind == "cluster" {
                        "musubi-relay-data-key"
                    } else {
                        musubi_relay::dir::STORE_KEY_CREDENTIAL
                    }
                );
            }
            if m.kind == "cluster" {
                eprintln!(
                    "this is a cluster relay: restore its PostgreSQL database (pg_restore or PITR) separately; the documents and the device registry are there"
                );
            }
            Ok(())
        }
        Command::GenerateAssets { out } => generate_assets(&out),
        Command::Serve { .. } => Ok(()),
    }
}

/// Man pages (`man/`), completions (`completions/`) and `serve.toml.example` under `out`,
/// all from the clap definitions and the template `init` writes.
fn generate_assets(out: &Path) -> Result<()> {
    use clap::CommandFactory as _;
    use clap_complete::Shell;
    let man = out.join("man");
    let completions = out.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    clap_mangen::generate_to(Cli::command(), &man)
        .with_context(|| format!("writing the man pages into {}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), "musubi-relay", &completions)
            .with_context(|| format!("writing the {shell} completions"))?;
    }
    let example = out.join("serve.toml.example");
    std::fs::write(&example, musubi_relay::config::serve_toml_template())
        .with_context(|| format!("writing {}", example.display()))?;
    let unit = out.join("musubi-relay.service");
    std::fs::write(&unit, packaged_unit()?)
        .with_context(|| format!("writing {}", unit.display()))?;
    eprintln!(
        "man pages, completions, serve.toml.example and musubi-relay.service written to {}",
        out.display()
    );
    Ok(())
}

/// The example unit (`relay/musubi-relay.service`).
const EXAMPLE_UNIT: &str = include_str!("../musubi-relay.service");

/// The unit the Debian package installs: the example unit with the binary in /usr/bin,
/// the documentation where the package puts it, and the encrypted credential line
/// commented out (the store key stays in the relay directory until the operator moves
/// it: a unit naming a credential file that does not exist would not start).
fn packaged_unit() -> Result<String> {
    let mut out = String::from(
        "# Installed by the musubi-relay package, which created the user musubi-relay and\n\
         # /var/lib/musubi-relay: steps 2, 4 and 5 below remain. For step 3, add the\n\
         # LoadCredentialEncrypted= line (commented out below) with `systemctl edit musubi-relay`.\n#\n",
    );
    let mut changed = [false; 3];
    for line in EXAMPLE_UNIT.lines() {
        let line = if let Some(rest) = line.strip_prefix("ExecStart=/usr/local/bin/") {
            changed[0] = true;
            format!("ExecStart=/usr/bin/{rest}")
        } else if line.starts_with("LoadCredentialEncrypted=") {
            changed[1] = true;
            format!("#{line}")
        } else if line.starts_with("Documentation=") {
            changed[2] = true;
            "Documentation=man:musubi-relay(1) file:///usr/share/doc/musubi-relay/relay.md"
                .to_owned()
        } else {
            line.to_owned()
        };
        out.push_str(&line);
        out.push('\n');
    }
    if changed.contains(&false) {
        anyhow::bail!(
            "relay/musubi-relay.service no longer has the ExecStart, LoadCredentialEncrypted and Documentation lines the package rewrites"
        );
    }
    Ok(out)
}

/// Env variable holding the backup passphrase.
const BACKUP_PASSPHRASE_ENV: &str = "MUSUBI_BACKUP_PASSPHRASE";

/// The backup passphrase: `MUSUBI_BACKUP_PASSPHRASE`, else the first line of
/// `--passphrase-file`, else a prompt on the terminal (twice when `confirm`).
fn backup_passphrase(file: Option<&Path>, confirm: bool) -> Result<SecretString> {
    use musubi_engine::ExposeSecret as _;
    if let Ok(p) = std::env::var(BACKUP_PASSPHRASE_ENV)
        && !p.is_empty()
    {
        return Ok(SecretString::from(p));
    }
    if let Some(path) = file {
        let text = musubi_engine::net::Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the passphrase file {}", path.display()))?,
        );
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err(RelayError::BackupPassphrase {
                problem: "file is empty",
            }
            .into());
        }
        return Ok(SecretString::from(line.to_owned()));
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(RelayError::BackupPassphrase {
            problem: "was not given: set MUSUBI_BACKUP_PASSPHRASE or use --passphrase-file (there is no terminal to ask on)",
        }
        .into());
    }
    let first = SecretString::from(
        rpassword::prompt_password("backup passphrase: ")
            .context("reading the backup passphrase")?,
    );
    if confirm {
        let again = SecretString::from(
            rpassword::prompt_password("backup passphrase again: ")
                .context("reading the backup passphrase")?,
        );
        if first.expose_secret() != again.expose_secret() {
            return Err(RelayError::BackupPassphrase {
                problem: "was typed differently the second time",
            }
            .into());
        }
    }
    Ok(first)
}

fn print_status(s: &Status) -> Result<()> {
    outln!(
        "relay {}  listen {}  hosts {}",
        s.relay_id,
        s.listen,
        s.hosts.join(", ")
    );
    outln!("offices:");
    for o in &s.offices {
        outln!(
            "  {}  documents {}  devices {} active, {} revoked",
            o.office,
            o.documents,
            o.active_devices,
            o.revoked_devices
        );
    }
    if s.other_documents > 0 {
        outln!("  (other offices)  documents {}", s.other_documents);
    }
    outln!("devices:");
    if s.devices.is_empty() {
        outln!("  (none enrolled)");
    }
    for d in &s.devices {
        let state = match &d.revoked_at {
            Some(t) => format!("revoked {t}"),
            None => format!("active until {}", d.not_after),
        };
        let reused = if d.enrollment_reused > 0 {
            format!(
                "  ENROLLMENT REUSED {} time(s): its enrollment file and code were tried on another tablet",
                d.enrollment_reused
            )
        } else {
            String::new()
        };
        outln!(
            "  {}  id {}  office {}  enrolled {}  {}{}",
            d.name,
            d.id,
            d.office,
            d.enrolled_at,
            state,
            reused
        );
    }
    if !s.enrollments.is_empty() {
        outln!("enrollments:");
    }
    for e in &s.enrollments {
        let mut extra = String::new();
        if e.reenroll {
            extra.push_str("  (re-enrollment)");
        }
        if e.failures > 0 {
            extra.push_str(&format!("  wrong secrets {}", e.failures));
        }
        if e.reuse_attempts > 0 {
            extra.push_str(&format!("  REUSED {} time(s)", e.reuse_attempts));
        }
        outln!(
            "  {}  id {}  office {}  {}  made {}  expires {}{}",
            e.name,
            e.id,
            e.office,
            e.state,
            e.created_at,
            e.expires_at,
            extra
        );
    }
    Ok(())
}

/// The command-line options of `serve`.
struct ServeArgs {
    listen: Option<SocketAddr>,
    config: Option<PathBuf>,
    metrics: Option<SocketAddr>,
    log_format: Option<LogFormat>,
    test_trust_anchor: Option<PathBuf>,
}

fn serve(dir: &Path, args: ServeArgs) -> Result<()> {
    use musubi_relay::serve::{ReloadSource, ServeOptions, serve_config_path};
    // `--config FILE`, else the relay directory's serve.toml (written by `init`; a
    // directory made before it may have none: the defaults apply).
    let config = serve_config_path(dir, args.config.as_deref());
    let file = match &config {
        Some(path) => ServeFileConfig::read(path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?,
        None => ServeFileConfig::default(),
    };
    let live = file
        .live()
        .with_context(|| "reading the serve configuration".to_owned())?;
    let log = musubi_relay::logging::init(
        &live.log_level,
        args.log_format.or(file.log_format).unwrap_or_default(),
    );
    if let Some(path) = &config {
        tracing::info!(config = %path.display(), "serve configuration read");
    }
    if live.test_cert_validity {
        tracing::warn!(
            seconds = live.cert_validity.as_secs(),
            "TEST RELAY: device certificates are issued for a few seconds only; never use this in production"
        );
    }
    // Fail early with a clear message if the directory is not usable.
    RelayDir::open(dir)?;
    let from_cli = [
        args.listen.is_some(),
        args.metrics.is_some(),
        args.log_format.is_some(),
        args.test_trust_anchor.is_some(),
    ];
    let opts = ServeOptions {
        dir: dir.to_path_buf(),
        listen: args.listen.or(file.listen),
        test_trust_anchor: args
            .test_trust_anchor
            .or_else(|| file.test_trust_anchor.clone()),
        metrics_listen: args.metrics.or(file.metrics_listen),
        live,
        reload: Some(ReloadSource {
            config: args.config,
            at_start: file,
            from_cli,
            log: Some(log),
        }),
    };
    musubi_relay::serve::run(opts)?;
    Ok(())
}
