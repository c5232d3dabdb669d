//! Smoke tests of the kernel features the host kernel lacks, with `ip` and `wg` (vpn-ctl's own
//! netlink code replaces them as it arrives). On a host without them they are skipped with a
//! message; `cargo xtask guest` runs them against Debian's kernel in QEMU.

use std::{fs, net::Ipv4Addr, os::unix::fs::PermissionsExt as _, process::Command};

use vpn_ctl_tests::{
    VethPair,
    kernel::{Feature, kernel_has},
    run,
};

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout)
        .unwrap()
        .trim()
        .to_string()
}

/// A WireGuard key pair made by `wg genkey | wg pubkey`.
struct KeyPair {
    private: String,
    public: String,
}

fn key_pair() -> KeyPair {
    let private = stdout(Command::new("wg").arg("genkey"));
    let mut pubkey = Command::new("wg")
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start wg pubkey");
    use std::io::Write as _;
    pubkey
        .stdin
        .take()
        .unwrap()
        .write_all(private.as_bytes())
        .unwrap();
    let out = pubkey.wait_with_output().unwrap();
    assert!(out.status.success(), "wg pubkey failed");
    KeyPair {
        private,
        public: String::from_utf8(out.stdout).unwrap().trim().to_string(),
    }
}

#[test]
fn wireguard_link_between_namespaces_handshakes_and_pings() {
    if !kernel_has(Feature::WireGuard) {
        return;
    }
    let net = VethPair::new();
    let keys = tempfile::tempdir().unwrap();
    let (a_keys, b_keys) = (key_pair(), key_pair());
    let (a_inner, b_inner) = (
        Ipv4Addr::new(192, 168, 77, 1),
        Ipv4Addr::new(192, 168, 77, 2),
    );
    let sides = [
        (&net.a, &a_keys, &b_keys, net.b_addr, a_inner, b_inner),
        (&net.b, &b_keys, &a_keys, net.a_addr, b_inner, a_inner),
    ];
    for (ns, own, peer, peer_outer, inner, peer_inner) in sides {
        let key_file = keys.path().join(ns.name());
        fs::write(&key_file, &own.private).unwrap();
        fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).unwrap();
        ns.ip(&["link", "add", "wg0", "type", "wireguard"]);
        run(ns
            .command("wg")
            .args(["set", "wg0", "listen-port", "51820", "private-key"])
            .arg(&key_file)
            .args(["peer", &peer.public, "allowed-ips"])
            .arg(format!("{peer_inner}/32"))
            .arg("endpoint")
            .arg(format!("{peer_outer}:51820")));
        ns.ip(&["addr", "add", &format!("{inner}/24"), "dev", "wg0"]);
        ns.ip(&["link", "set", "wg0", "up"]);
    }

    run(net
        .a
        .command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "5"])
        .arg(b_inner.to_string()));

    for (ns, peer) in [(&net.a, &b_keys), (&net.b, &a_keys)] {
        // `wg show wg0 latest-handshakes`: "PUBLIC-KEY<TAB>UNIX-TIME", 0 when none.
        let handshakes = stdout(ns.command("wg").args(["show", "wg0", "latest-handshakes"]));
        let (key, time) = handshakes.split_once('\t').expect("one peer line");
        assert_eq!(key, peer.public);
        assert_ne!(time, "0", "{}: no handshake recorded", ns.name());
        // `wg show wg0 transfer`: "PUBLIC-KEY<TAB>RX<TAB>TX".
        let transfer = stdout(ns.command("wg").args(["show", "wg0", "transfer"]));
        let bytes: Vec<u64> = transfer
            .split('\t')
            .skip(1)
            .map(|n| n.parse().unwrap())
            .collect();
        assert!(
            bytes.iter().all(|&n| n > 0),
            "{}: transfer {transfer}",
            ns.name()
        );
    }
}

/// One direction of an ESP tunnel: the SA and the policy template both name it.
struct Direction {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    spi: &'static str,
    reqid: &'static str,
    key: &'static str,
}

#[test]
fn esp_tunnel_mode_sa_pair_carries_pings() {
    if !kernel_has(Feature::Esp) {
        return;
    }
    let net = VethPair::new();
    let (a_lan, b_lan) = ("192.168.10.1", "192.168.20.1");
    let (a_net, b_net) = ("192.168.10.0/24", "192.168.20.0/24");
    let a_to_b = Direction {
        src: net.a_addr,
        dst: net.b_addr,
        spi: "0x1001",
        reqid: "1",
        key: "0x0102030405060708090a0b0c0d0e0f1011121314",
    };
    let b_to_a = Direction {
        src: net.b_addr,
        dst: net.a_addr,
        spi: "0x1002",
        reqid: "2",
        key: "0x2122232425262728292a2b2c2d2e2f3031323334",
    };
    let sides = [
        (
            &net.a, &net.a_dev, a_lan, a_net, b_net, &a_to_b, &b_to_a, net.b_addr,
        ),
        (
            &net.b, &net.b_dev, b_lan, b_net, a_net, &b_to_a, &a_to_b, net.a_addr,
        ),
    ];
    for (ns, dev, lan, own_net, far_net, out, inbound, gateway) in sides {
        // Each side has both SAs (one to send with, one to receive with).
        for d in [out, inbound] {
            ns.ip(&[
                "xfrm",
                "state",
                "add",
                "src",
                &d.src.to_string(),
                "dst",
                &d.dst.to_string(),
                "proto",
                "esp",
                "spi",
                d.spi,
                "reqid",
                d.reqid,
                "mode",
                "tunnel",
                "aead",
                "rfc4106(gcm(aes))",
                d.key,
                "128",
            ]);
        }
        for (dir, src, dst, d) in [
            ("out", own_net, far_net, out),
            ("in", far_net, own_net, inbound),
        ] {
            ns.ip(&[
                "xfrm",
                "policy",
                "add",
                "src",
                src,
                "dst",
                dst,
                "dir",
                dir,
                "tmpl",
                "src",
                &d.src.to_string(),
                "dst",
                &d.dst.to_string(),
                "proto",
                "esp",
                "reqid",
                d.reqid,
                "mode",
                "tunnel",
            ]);
        }
        ns.ip(&["addr", "add", &format!("{lan}/32"), "dev", "lo"]);
        ns.ip(&[
            "route",
            "add",
            far_net,
            "via",
            &gateway.to_string(),
            "dev",
            dev,
            "src",
            lan,
        ]);
    }

    run(net
        .a
        .command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "5", "-I", a_lan, b_lan]));

    // Both SAs carried the pings: `ip -s xfrm state get ...` shows "N(bytes), M(packets)"
    // under "lifetime current:".
    for d in [&a_to_b, &b_to_a] {
        let state = stdout(net.b.command("ip").args([
            "-s",
            "xfrm",
            "state",
            "get",
            "src",
            &d.src.to_string(),
            "dst",
            &d.dst.to_string(),
            "proto",
            "esp",
            "spi",
            d.spi,
        ]));
        let current = state
            .split("lifetime current:")
            .nth(1)
            .expect("lifetime current section");
        let packets: u64 = current
            .split_whitespace()
            .find_map(|w| w.strip_suffix("(packets)"))
            .expect("packet count")
            .parse()
            .unwrap();
        assert!(
            packets >= 3,
            "SA {} carried {packets} packets:\n{state}",
            d.spi
        );
    }
}
