//! Builds the XDP program (`vpn-ebpf`) for `bpfel-unknown-none` and leaves the object in
//! `OUT_DIR`, where `src/xdp.rs` embeds it with `aya::include_bytes_aligned!`.
//!
//! The eBPF crate is compiled by Debian's `rustc-web` (linked into rustup as the `debian-web`
//! toolchain) with its prebuilt `core` for the BPF target, and linked by `bpf-linker`; see
//! TOOLCHAIN.md §1. `cargo xtask setup` installs all of it.
use std::process::Command;

use anyhow::{Context as _, bail};
use aya_build::{Package, Toolchain};

/// The rustup toolchain name `cargo xtask setup` links Debian's compiler under.
const TOOLCHAIN: &str = "debian-web";

fn main() -> anyhow::Result<()> {
    check_prerequisites()?;
    // aya-ebpf uses `#![feature(...)]`. Scoping RUSTC_BOOTSTRAP to that crate lets the stable
    // Debian compiler accept it while aya-build still sees a stable channel and does not ask
    // for `-Z build-std` (the prebuilt `core` from libstd-rust-web-dev-bpf is used instead).
    // SAFETY: build scripts are single-threaded at this point.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "aya_ebpf") };
    let package = Package {
        name: "vpn-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../vpn-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::Custom(TOOLCHAIN))
        .context("building the XDP program (vpn-ebpf) failed")
}

fn check_prerequisites() -> anyhow::Result<()> {
    let missing = |what: &str| {
        format!(
            "{what} is missing; run `cargo xtask setup` (installs the eBPF toolchain), then build again"
        )
    };
    if which_bpf_linker().is_none() {
        bail!(missing("bpf-linker"));
    }
    let toolchains = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .context("running `rustup toolchain list`")?;
    if !String::from_utf8_lossy(&toolchains.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(TOOLCHAIN))
    {
        bail!(missing(&format!(
            "the rustup toolchain `{TOOLCHAIN}` (Debian's rustc-web)"
        )));
    }
    Ok(())
}

fn which_bpf_linker() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("bpf-linker"))
        .find(|p| p.is_file())
}
