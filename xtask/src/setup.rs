//! Installs what building and testing vpn-ctl needs, from the package registries only
//! (TOOLCHAIN.md §1): Debian's `rustc-web` with the prebuilt `core` for the BPF target,
//! LLVM 22 for `bpf-linker`, `bpf-linker` 0.13.0 from crates.io, the tools the tests use, and
//! what the QEMU guest harness (`cargo xtask guest`, TOOLCHAIN.md §3) needs to boot Debian's
//! kernel.
//!
//! Every step checks first and only acts when something is missing, so a second run on a
//! ready machine takes a second and changes nothing.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::step;

/// Debian packages: the eBPF compiler and its `core`, LLVM for bpf-linker, the tools the
/// tests use, the guest harness's emulator, module tools and initramfs pieces, libnftnl (the
/// firewall's netlink library) and Prometheus (the metrics tests scrape with it).
const PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "iproute2",
    "iputils-ping",
    "wireguard-tools",
    "strongswan-charon",
    "strongswan-swanctl",
    "libstrongswan-standard-plugins",
    "qemu-system-x86",
    "kmod",
    "cpio",
    "busybox-static",
    "nftables",
    "conntrack",
    "libnftnl-dev",
    "libmnl-dev",
    "pkg-config",
    "prometheus",
];
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The rustup name under which Debian's compiler is linked; vpn-ctl's build.rs uses it.
const TOOLCHAIN: &str = "debian-web";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

pub fn run() -> anyhow::Result<()> {
    packages()?;
    bpf_linker()?;
    toolchain()?;
    say("prerequisites ready");
    Ok(())
}

fn say(msg: &str) {
    eprintln!("xtask setup: {msg}");
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout) == "install ok installed")
}

fn packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        say(&format!("Debian packages present: {}", PACKAGES.join(" ")));
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "Debian packages missing: {}; run `cargo xtask setup` as root (it uses apt-get)",
            missing.join(" ")
        );
    }
    say(&format!(
        "installing Debian packages: {}",
        missing.join(" ")
    ));
    step(Command::new("apt-get").args(["update", "-q"]))?;
    step(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn bpf_linker() -> anyhow::Result<()> {
    let version = Command::new("bpf-linker").arg("--version").output();
    if let Ok(out) = &version {
        let text = String::from_utf8_lossy(&out.stdout);
        if text.split_whitespace().any(|w| w == BPF_LINKER_VERSION) {
            say(&format!("bpf-linker {BPF_LINKER_VERSION} present"));
            return Ok(());
        }
    }
    say(&format!(
        "installing bpf-linker {BPF_LINKER_VERSION} from crates.io against LLVM 22 (about a minute)"
    ));
    step(
        Command::new("cargo")
            .args([
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
            ])
            .args(["--no-default-features", "--features", "llvm-22", "--force"])
            // Without these the build finds /usr/bin/llvm-config (LLVM 14) and fails to link.
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX),
    )
}

fn toolchain() -> anyhow::Result<()> {
    let list = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .context("running `rustup toolchain list`; rustup is required")?;
    if String::from_utf8_lossy(&list.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(TOOLCHAIN))
    {
        say(&format!("rustup toolchain {TOOLCHAIN} present"));
        return Ok(());
    }
    say(&format!(
        "linking Debian's rustc-web as rustup toolchain {TOOLCHAIN}"
    ));
    step(Command::new("rustup").args(["toolchain", "link", TOOLCHAIN, "/usr"]))
}
