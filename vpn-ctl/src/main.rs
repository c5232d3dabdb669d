//! `vpn-ctl`: parse the command line, set up logging, call into the library.
use std::process::ExitCode;

use clap::Parser as _;
use vpn_ctl::cli::{Cli, Command};

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
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Diag(args) => {
            let options = args.options()?;
            let mut stdout = std::io::stdout();
            let report = runtime.block_on(vpn_ctl::diag::run(&options, &mut stdout))?;
            if args.json {
                serde_json::to_writer_pretty(&mut stdout, &report)?;
                println!();
            } else {
                print!("{}", vpn_ctl::diag::view::render_report(&report));
            }
            Ok(())
        }
    }
}
