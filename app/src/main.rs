//! `musubi`: the tablet app (no subcommand) and its command-line interface (headless
//! subcommands).
//!
//! Exit codes: one table in `exit.rs` (shown by every `--help`).

#![allow(clippy::print_stdout, clippy::print_stderr)]

/// `println!` that returns an error instead of panicking when stdout is closed
/// (e.g. `musubi doc export ID | head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod bundle;
mod card;
mod care;
mod cli;
mod common;
mod enroll;
mod exit;
mod export;
mod output;
mod plan_request;
mod secrets;
mod sync;

use std::process::ExitCode;

fn main() -> ExitCode {
    let matches = cli::command().get_matches();
    let args = match <cli::Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    init_logging(cli::data_dir(&args.global).ok().as_deref());
    // Only the command's name and its exit code: never its arguments (ids, files, values).
    let name = command_name(&matches);
    let result = cli::run(args);
    match &result {
        Ok(()) => tracing::info!(command = %name, "command done"),
        Err(err) => tracing::info!(
            command = %name,
            exit = exit::of(err).code(),
            "command failed"
        ),
    }
    match result {
        Ok(()) => ExitCode::from(exit::Exit::Success.code()),
        Err(err) if exit::is_broken_pipe(&err) => ExitCode::from(exit::Exit::Success.code()),
        Err(err) => {
            eprintln!("error: {}", output::describe_error(&err));
            ExitCode::from(exit::of(&err).code())
        }
    }
}

/// Standard error gets what `MUSUBI_LOG` asks for (default: warnings); the log file in the
/// data directory (`musubi_app::logfile`) gets musubi's own events from `info` up, so a
/// problem reported from the field can be read afterwards. Neither carries personal data.
fn init_logging(data_dir: Option<&std::path::Path>) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let stderr_filter = tracing_subscriber::EnvFilter::try_from_env("MUSUBI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(stderr_filter);
    let file = data_dir.map(|dir| {
        let log = musubi_app::logfile::RotatingFile::new(
            dir,
            musubi_app::logfile::MAX_BYTES,
            musubi_app::logfile::KEEP,
        );
        tracing_subscriber::fmt::layer()
            .with_writer(std::sync::Mutex::new(log))
            .with_ansi(false)
            .with_filter(tracing_subscriber::EnvFilter::new("warn,musubi=info"))
    });
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .init();
}

/// `musubi doc import` for `musubi … doc import FILE…`: subcommand names only.
fn command_name(matches: &clap::ArgMatches) -> String {
    let mut name = String::from("musubi");
    let mut m = matches;
    while let Some((sub, next)) = m.subcommand() {
        name.push(' ');
        name.push_str(sub);
        m = next;
    }
    name
}
