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
    let filter = tracing_subscriber::EnvFilter::try_from_env("MUSUBI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match cli::run(args) {
        Ok(()) => ExitCode::from(exit::Exit::Success.code()),
        Err(err) if exit::is_broken_pipe(&err) => ExitCode::from(exit::Exit::Success.code()),
        Err(err) => {
            eprintln!("error: {}", output::describe_error(&err));
            ExitCode::from(exit::of(&err).code())
        }
    }
}

