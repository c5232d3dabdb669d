//! `vpn-ctl`: parse the command line, set up logging, call into the library.
use std::process::ExitCode;

use clap::Parser as _;
use vpn_ctl::{cli::Cli, commands};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_target(false)
        .format_timestamp(None)
        .init();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`vpn-ctl status | head`): nothing to say.
        Err(e) if commands::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
