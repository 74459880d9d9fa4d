//! `musubi`: the tablet app (no subcommand) and its command-line interface (headless
//! subcommands).
//!
//! Exit codes: 0 success; 1 other failure; 2 invalid input (nothing was written);
//! 3 wrong passphrase or recovery identity (nothing was changed); 4 the store cannot be
//! used (not initialised, quarantined, newer schema); 5 the My Number card verification
//! failed (wrong PIN, locked, certificate, signature, corrupt card data, mismatch; nothing
//! written); 6 no reader, no card, card removed or in use.

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
mod enroll;
mod export;
mod output;
mod plan_request;
mod secrets;
mod sync;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = <cli::Cli as clap::Parser>::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("MUSUBI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if cli::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let code = cli::exit_code(&err);
            eprintln!("error: {}", output::describe_error(&err));
            ExitCode::from(code)
        }
    }
}
