//! A router kernel without the optional parts: no nf_tables (no nftables firewall, or an
//! iptables one) and no UDP sock_diag (OpenWrt installs kmod-inet-diag only on request).
//! `up`, `status`, `down` and `diag` work there, and say once, in plain words, what they could
//! not check.
//!
//! The guest runs this binary first, before anything loads either module and with module
//! autoloading off (`cargo xtask guest`), so its kernel really lacks both. Where they are
//! there (the host), the test says so and returns: it cannot take them away.

use std::{
    process::{Output, Stdio},
    time::{Duration, Instant},
};

#[path = "common/cli.rs"]
#[allow(dead_code, reason = "shared by the end-to-end tests; each uses some")]
mod cli;

use cli::{VPN_CTL, pubkey, vpn_ctl_texts as vpn_ctl};
use vpn_ctl_tests::{VethPair, payload, send_udp, unique_name};

/// Whether this kernel lacks both nf_tables and UDP sock_diag, as vpn-ctl sees it.
fn lacks_both() -> bool {
    let no_nf_tables = matches!(vpn_ctl::firewall::table::count_tables(), Ok(None));
    let no_udp_diag = vpn_ctl::sockets::udp_listeners(&[51820]).is_err();
    if !(no_nf_tables && no_udp_diag) {
        eprintln!(
            "skipped: this kernel has nf_tables ({}) or UDP sock_diag ({}); the guest runs \
             this test without them",
            !no_nf_tables, !no_udp_diag
        );
    }
    no_nf_tables && no_udp_diag
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn up_status_diag_and_down_work_without_nf_tables_and_udp_diag() {
    if !lacks_both() {
        return;
    }
    let net = VethPair::new();
    let router = &net.b;
    let iface = unique_name("wga");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("wg.key");
    let private = cli::base64(&[7u8; 32]);
    std::fs::write(&key, &private).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = dir.path().join("vpn.toml");
    std::fs::write(
        &config,
        format!(
            "[router]\nwan = \"{wan}\"\n\n[wireguard.{iface}]\nprivate_key_file = \"wg.key\"\n\
             listen_port = 51820\naddresses = [\"10.8.0.1/24\"]\n\n\
             [[wireguard.{iface}.peers]]\nname = \"phone\"\npublic_key = \"{peer}\"\n\
             allowed_ips = [\"10.8.0.2/32\"]\n",
            wan = net.b_dev,
            peer = pubkey(&cli::base64(&[9u8; 32])),
        ),
    )
    .unwrap();

    // up: the tunnel is made; the firewall check says once why it did not run and what a
    // firewall of another kind must let through.
    let (up, warnings) = vpn_ctl(router, &config, &["up"]);
    assert!(up.contains(&format!("{iface}: created the link")), "{up}");
    assert!(
        warnings.contains("firewall: not checked: this kernel has no nf_tables")
            && warnings.contains("udp/51820"),
        "{warnings}"
    );
    assert_eq!(warnings.matches("no nf_tables").count(), 1, "{warnings}");

    let (status, _) = vpn_ctl(router, &config, &["status"]);
    assert!(status.contains(&iface), "{status}");
    assert!(
        status.contains("firewall: cannot check it: this kernel has no nf_tables"),
        "{status}"
    );

    // diag: the counts and the verdicts, and a plain word on the missing listener check.
    let diag = router
        .command(VPN_CTL)
        .args(["diag", "--wan", &net.b_dev, "--duration", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !router.has_xdp(&net.b_dev) {
        assert!(Instant::now() < deadline, "diag did not attach");
        std::thread::sleep(Duration::from_millis(50));
    }
    let to = std::net::SocketAddr::from((net.b_addr, 51820));
    send_udp(&net.a, to, &[payload::wg(1, 148), payload::wg(1, 148)]);
    let out = diag.wait_with_output().unwrap();
    let (report, errors) = texts(&out);
    assert!(out.status.success(), "diag failed:\n{report}{errors}");
    assert!(report.contains("LISTENING (udp)\n  unknown"), "{report}");
    assert!(
        report.contains("is not known") && report.contains("kmod-inet-diag"),
        "{report}"
    );
    assert!(report.contains("handshake"), "the counts: {report}");

    // down: removes the tunnel, and nothing fails over a firewall vpn-ctl never made.
    let (down, errors) = vpn_ctl(router, &config, &["down"]);
    assert!(down.contains(&iface), "{down}");
    assert!(!errors.contains("Protocol not supported"), "{errors}");
    let gone = router
        .command("ip")
        .args(["link", "show", &iface])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!gone.success(), "{iface} is still there after down");
}
