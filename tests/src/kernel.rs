//! Kernel features a test needs, probed for real, and the rule for tests that need one the
//! running kernel lacks: on a host they are skipped with a line naming the command that runs
//! them (`cargo xtask guest`); inside that guest (`VPN_CTL_GUEST=1`) a missing feature is a
//! failure, so no guest test can skip silently.

use std::{io::Write as _, sync::OnceLock};

use crate::Netns;

/// The environment variable the QEMU guest harness sets for the tests it runs.
pub const GUEST_ENV: &str = "VPN_CTL_GUEST";

/// A kernel capability that the host kernel here lacks (TOOLCHAIN.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// The WireGuard module: `ip link add ... type wireguard`.
    WireGuard,
    /// ESP with AES-GCM: `ip xfrm state add ... proto esp ... aead 'rfc4106(gcm(aes))'`.
    Esp,
}

impl Feature {
    fn describe(self) -> &'static str {
        match self {
            Feature::WireGuard => "WireGuard",
            Feature::Esp => "ESP (IPsec)",
        }
    }

    /// Whether the running kernel has the feature, by creating the object in a throwaway
    /// namespace. Probed once per process.
    pub fn available(self) -> bool {
        static WIREGUARD: OnceLock<bool> = OnceLock::new();
        static ESP: OnceLock<bool> = OnceLock::new();
        let cell = match self {
            Feature::WireGuard => &WIREGUARD,
            Feature::Esp => &ESP,
        };
        *cell.get_or_init(|| self.probe())
    }

    fn probe(self) -> bool {
        let ns = Netns::new();
        let args: &[&str] = match self {
            Feature::WireGuard => &["link", "add", "probe0", "type", "wireguard"],
            Feature::Esp => &[
                "xfrm",
                "state",
                "add",
                "src",
                "192.0.2.1",
                "dst",
                "192.0.2.2",
                "proto",
                "esp",
                "spi",
                "0x100",
                "mode",
                "tunnel",
                "aead",
                "rfc4106(gcm(aes))",
                "0x0102030405060708090a0b0c0d0e0f1011121314",
                "128",
            ],
        };
        ns.command("ip")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

/// Returns whether the test may go on: true when the kernel has `feature`. When it does not,
/// prints a skip line (past the test harness's output capture) and returns false on a host,
/// and panics inside the guest, whose kernel must have it.
///
/// ```ignore
/// if !kernel_has(Feature::WireGuard) { return; }
/// ```
pub fn kernel_has(feature: Feature) -> bool {
    if feature.available() {
        return true;
    }
    let what = feature.describe();
    assert!(
        std::env::var_os(GUEST_ENV).is_none(),
        "the guest's kernel lacks {what}: the harness should have loaded its modules"
    );
    let _ = writeln!(
        std::io::stderr(),
        "skipped: this kernel lacks {what}; `cargo xtask guest` runs this test in a QEMU guest \
         with Debian's kernel"
    );
    false
}
