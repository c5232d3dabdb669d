//! `cargo xtask COMMAND`: project tasks. Run `cargo xtask --help`.
//!
//! xtask does not depend on `vpn-ctl`, so it builds and runs on a fresh machine before the
//! eBPF toolchain that `vpn-ctl`'s build script needs is installed.

mod demo;
mod guest;
mod setup;

use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the prerequisites (Debian packages, bpf-linker, the `debian-web` rustup
    /// toolchain). Idempotent: on a ready machine it checks and changes nothing.
    Setup,
    /// Install the prerequisites, then run the whole test suite (needs root): the host suite
    /// (`cargo test`), the demo (`demo`), the guest suite in a QEMU guest with Debian's kernel
    /// (`guest`), and the guest harness's self-check (a deliberately failing guest test must
    /// fail the run).
    Test {
        /// Run the host suite and the demo only.
        #[arg(long)]
        host_only: bool,
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Install the prerequisites, then run the privileged integration tests inside a QEMU guest
    /// booting Debian's kernel, which has kernel WireGuard and ESP (needs root).
    Guest(guest::Options),
    /// Install the prerequisites, then print the XDP classifier's per-packet cost next to an
    /// empty XDP program's (BPF_PROG_TEST_RUN), the daemon's scrape latency and memory with
    /// 10,000 peers, and `vpn-ctl up` at 1,000 and 10,000 peers next to `wg setconf` in the
    /// QEMU guest (needs root).
    Bench,
    /// Install the prerequisites, build vpn-ctl, and bring up the first seed's network in
    /// namespaces: a phone on the internet reaches a LAN host through the ISP's port forward
    /// and vpn-ctl's WireGuard router; then status, diag and a metrics scrape (needs root;
    /// leaves nothing behind; fails if the phone cannot reach the LAN host).
    Demo,
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> anyhow::Result<()> {
    match task {
        Task::Setup => setup::run(),
        Task::Test { host_only, args } => {
            setup::run()?;
            cargo(&["test", "--locked"], &args)?;
            // `cargo test` built vpn-ctl for its integration tests; a `cargo build` here would
            // build it again with other features.
            demo::run(&vpn_ctl_debug())?;
            if host_only {
                return Ok(());
            }
            let root = workspace_root();
            guest::run(&root, &guest::Options::default())?;
            guest::run(
                &root,
                &guest::Options {
                    expect_failure: true,
                    ..guest::Options::default()
                },
            )
        }
        Task::Guest(options) => {
            setup::run()?;
            guest::run(&workspace_root(), &options)
        }
        Task::Bench => {
            setup::run()?;
            cargo(
                &["bench", "--locked", "-p", "vpn-ctl", "--bench", "xdp"],
                &[],
            )?;
            cargo(
                &["bench", "--locked", "-p", "vpn-ctl", "--bench", "daemon"],
                &[],
            )?;
            guest::run(
                &workspace_root(),
                &guest::Options {
                    bench: Some("wireguard".into()),
                    ..guest::Options::default()
                },
            )
        }
        Task::Demo => {
            setup::run()?;
            demo()
        }
    }
}

/// Builds vpn-ctl and runs the demo with it.
fn demo() -> anyhow::Result<()> {
    cargo(&["build", "--locked", "-p", "vpn-ctl"], &[])?;
    demo::run(&vpn_ctl_debug())
}

fn vpn_ctl_debug() -> std::path::PathBuf {
    workspace_root().join("target/debug/vpn-ctl")
}

/// Runs `cargo ARGS -- EXTRA` in the workspace, failing when it fails.
fn cargo(args: &[&str], extra: &[String]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(args).current_dir(workspace_root());
    if !extra.is_empty() {
        cmd.arg("--").args(extra);
    }
    eprintln!("xtask: running {cmd:?}");
    step(&mut cmd)
}

/// Runs a command with inherited output, failing when it fails.
fn step(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}
