//! The demo (`cargo xtask demo`, `xtask/src/demo.rs`) on kernel WireGuard.
//!
//! `cargo xtask test` runs the demo on the host, whose kernel has no WireGuard module, so there
//! the router and the phone run the userspace backend. This runs the same code in the QEMU
//! guest (`cargo xtask guest`), where the router uses kernel WireGuard through `vpn-ctl up` and
//! the phone sets up its side from the printed client config with `ip link add type wireguard`
//! and `wg setconf`, as a stock client would. On the host it is skipped, as the demo already
//! ran there.

#[path = "../../xtask/src/demo.rs"]
mod demo;

use vpn_ctl_tests::kernel::{Feature, GUEST_ENV, kernel_has};

#[test]
fn the_demo_runs_on_kernel_wireguard() {
    if std::env::var_os(GUEST_ENV).is_none() {
        eprintln!(
            "skipped: `cargo xtask test` runs the demo on this host; `cargo xtask guest` runs it \
             here on kernel WireGuard"
        );
        return;
    }
    assert!(kernel_has(Feature::WireGuard));
    if let Err(e) = demo::run(std::path::Path::new(env!("CARGO_BIN_EXE_vpn-ctl"))) {
        panic!("the demo failed: {e:#}");
    }
}
