//! The first seed's road-warrior server end to end, on kernel WireGuard (run in the QEMU
//! guest by `cargo xtask guest`; skipped on a host without the module):
//!
//! ```text
//!  phone ──veth── router (vpn-ctl up: wg0 10.8.0.1/24) ──veth── LAN host 192.168.1.10
//! ```
//!
//! `peer add` on the router gives the phone its wg-quick config; the phone brings it up with
//! wg-quick's own tools and pings the LAN host through the tunnel.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

#[path = "common/cli.rs"]
#[allow(dead_code, reason = "shared by the end-to-end tests; each uses some")]
mod cli;

use cli::{VPN_CTL, phone_up_with_vpn_ctl, stdout, vpn_ctl};
use vpn_ctl_tests::{
    Netns, VethPair,
    kernel::{Feature, kernel_has},
    lan_behind, run,
};

/// `wg show wg0 dump` peer lines: public key -> (latest handshake, rx, tx).
fn peer_dump(ns: &Netns, dev: &str) -> Vec<(String, String, String, String)> {
    let dump = stdout(run(ns.command("wg").args(["show", dev, "dump"])));
    dump.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].into(), f[4].into(), f[5].into(), f[6].into())
        })
        .collect()
}

struct Site {
    net: VethPair,
    lan: Netns,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Site {
    fn router(&self) -> &Netns {
        &self.net.b
    }
    fn phone(&self) -> &Netns {
        &self.net.a
    }
}

/// The router (`net.b`, WAN towards the phone `net.a`) with a LAN host behind it, and a
/// config for wg0 with one placeholder peer ("laptop").
fn site() -> Site {
    site_with("wg0")
}

fn site_with(iface: &str) -> Site {
    let net = VethPair::new();
    let router = &net.b;
    let lan = lan_behind(router, "192.168.1");

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("wg0.key");
    let private = stdout(run(router.command(VPN_CTL).arg("genkey")));
    fs::write(&key, private).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let laptop = stdout(run(router.command("wg").arg("genkey")));
    let laptop = pubkey(router, &laptop);
    let config = dir.path().join("vpn.toml");
    fs::write(
        &config,
        format!(
            r#"# The road-warrior server of the first seed.
[router]
lan = ["192.168.1.0/24"]

[wireguard.{iface}]
private_key_file = "wg0.key"
listen_port = 51820
addresses = ["10.8.0.1/24"]
public_endpoint = "{wan}:51820"

# A laptop that is not part of this test.
[[wireguard.{iface}.peers]]
name = "laptop"
public_key = "{laptop}"
allowed_ips = ["10.8.0.50/32"]
"#,
            wan = net.b_addr,
        ),
    )
    .unwrap();
    Site {
        net,
        lan,
        dir,
        config,
    }
}

fn pubkey(ns: &Netns, private: &str) -> String {
    use std::io::Write as _;
    let mut child = ns
        .command("wg")
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(private.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Brings the phone's side up from the client config that `peer add` printed, with `wg` and
/// `ip` as wg-quick would (`wg setconf` on the stripped config, Address, routes for
/// AllowedIPs).
fn phone_up(phone: &Netns, client_config: &str, dir: &Path) {
    let interface = section(client_config, "[Interface]");
    let address = value(&interface, "Address");
    let allowed = value(&section(client_config, "[Peer]"), "AllowedIPs");
    // `wg-quick strip`: drop the keys wg(8) does not know.
    let stripped: String = client_config
        .lines()
        .filter(|l| !l.starts_with("Address") && !l.starts_with("DNS"))
        .map(|l| format!("{l}\n"))
        .collect();
    let conf = dir.join("phone.conf");
    fs::write(&conf, stripped).unwrap();
    phone.ip(&["link", "add", "wg0", "type", "wireguard"]);
    run(phone.command("wg").args(["setconf", "wg0"]).arg(&conf));
    for a in address.split(',') {
        phone.ip(&["addr", "add", a.trim(), "dev", "wg0"]);
    }
    phone.ip(&["link", "set", "wg0", "up"]);
    for net in allowed.split(',') {
        phone.ip(&["route", "replace", net.trim(), "dev", "wg0"]);
    }
}

fn section(text: &str, name: &str) -> String {
    text.split(name)
        .nth(1)
        .unwrap_or("")
        .split("\n[")
        .next()
        .unwrap()
        .to_string()
}

fn value(section: &str, key: &str) -> String {
    section
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("{key} missing in {section}"))
}

#[test]
fn phone_reaches_the_lan_through_the_router_and_up_converges_minimally() {
    if !kernel_has(Feature::WireGuard) {
        return;
    }
    let site = site();
    let (router, phone) = (site.router(), site.phone());

    // The phone gets a peer entry, a key pair and a config.
    let client = vpn_ctl(
        router,
        &site.config,
        &["peer", "add", "phone", "--split-tunnel"],
    );
    assert!(
        client.contains("[Interface]") && client.contains("[Peer]"),
        "{client}"
    );
    let config_text = fs::read_to_string(&site.config).unwrap();
    assert!(config_text.starts_with("# The road-warrior server of the first seed."));
    assert!(config_text.contains("name = \"phone\""), "{config_text}");

    let applied = vpn_ctl(router, &site.config, &["up"]);
    assert!(applied.contains("wg0: created the link"), "{applied}");
    phone_up(phone, &client, site.dir.path());
    run(phone
        .command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "5", "192.168.1.10"]));
    let before = peer_dump(router, "wg0");
    let phone_line = before
        .iter()
        .find(|p| p.1 != "0")
        .expect("a peer has handshaked");

    // A second `up` changes nothing: same handshake, same counters.
    let again = vpn_ctl(router, &site.config, &["up"]);
    assert_eq!(
        again.trim(),
        "everything already matches the config; nothing changed"
    );
    let after = peer_dump(router, "wg0");
    assert_eq!(before, after);

    // Status names the peers and their state.
    let status = vpn_ctl(router, &site.config, &["status"]);
    assert!(status.contains("peer phone"), "{status}");
    assert!(status.contains("peer laptop"), "{status}");
    assert!(status.contains("latest handshake: never"), "{status}");
    let json: serde_json::Value =
        serde_json::from_str(&vpn_ctl(router, &site.config, &["status", "--json"])).unwrap();
    assert_eq!(json["wireguard"][0]["name"], "wg0");

    // One peer changed, one removed: only those two changes, the phone's session stays.
    let text = fs::read_to_string(&site.config).unwrap();
    let start = text.find("# A laptop").unwrap();
    let end = text[start..].find("allowed_ips").unwrap() + start;
    let end = text[end..].find('\n').unwrap() + end + 1;
    let mut changed = format!("{}{}", &text[..start], &text[end..]);
    changed = changed.replacen(
        "name = \"phone\"",
        "name = \"phone\"\npersistent_keepalive = 25",
        1,
    );
    fs::write(&site.config, changed).unwrap();
    let diff = vpn_ctl(router, &site.config, &["up"]);
    let lines: Vec<&str> = diff.lines().collect();
    assert_eq!(lines.len(), 2, "{diff}");
    assert!(
        lines.iter().any(|l| l.starts_with("wg0: remove peer")),
        "{diff}"
    );
    assert!(
        lines.contains(&"wg0: update peer phone: keepalive 25"),
        "{diff}"
    );
    let now = peer_dump(router, "wg0");
    assert_eq!(now.len(), 1);
    assert_eq!(
        now[0].1, phone_line.1,
        "the phone's handshake was disturbed"
    );
    run(phone
        .command("ping")
        .args(["-c", "1", "-W", "5", "192.168.1.10"]));

    // `down` removes the link, and with it its addresses and routes.
    vpn_ctl(router, &site.config, &["down"]);
    let links = stdout(router.ip(&["link", "show"]));
    assert!(!links.contains("wg0"), "{links}");
    let routes = stdout(router.ip(&["route", "show", "proto", "87"]));
    assert!(routes.trim().is_empty(), "{routes}");
    drop(site.lan);
}

#[test]
fn up_refuses_a_link_it_did_not_create_and_changes_nothing() {
    if !kernel_has(Feature::WireGuard) {
        return;
    }
    let site = site();
    let router = site.router();
    router.ip(&["link", "add", "wg0", "type", "wireguard"]);
    let out = router
        .command(VPN_CTL)
        .arg("--config")
        .arg(&site.config)
        .arg("up")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vpn-ctl did not create it"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    let dump = stdout(run(router.command("wg").args(["show", "wg0", "dump"])));
    assert_eq!(dump.lines().count(), 1, "peers were added: {dump}");
}

/// The same road-warrior path on the userspace backend, for kernels without WireGuard (the
/// host here): router and phone both run vpn-ctl's built-in implementation.
#[test]
fn phone_reaches_the_lan_over_the_userspace_backend() {
    // The UAPI socket directory is not per namespace: unique names.
    let (router_if, phone_if) = (
        vpn_ctl_tests::unique_name("wgr"),
        vpn_ctl_tests::unique_name("wgp"),
    );
    let site = site_with(&router_if);
    let (router, phone) = (site.router(), site.phone());
    let client = vpn_ctl(
        router,
        &site.config,
        &["peer", "add", "phone", "--split-tunnel"],
    );
    let applied = vpn_ctl(router, &site.config, &["up", "--backend", "userspace"]);
    assert!(applied.contains("created the link (userspace"), "{applied}");
    let phone_config = phone_up_with_vpn_ctl(phone, &client, site.dir.path(), &phone_if);

    run(phone
        .command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "5", "192.168.1.10"]));

    let again = vpn_ctl(router, &site.config, &["up"]);
    assert_eq!(
        again.trim(),
        "everything already matches the config; nothing changed"
    );
    let status = vpn_ctl(router, &site.config, &["status"]);
    assert!(status.contains("(userspace, up)"), "{status}");
    let phone_peer = status.split("peer phone").nth(1).expect("phone in status");
    let handshake = phone_peer
        .lines()
        .find(|l| l.contains("latest handshake:"))
        .unwrap();
    assert!(handshake.ends_with("ago"), "{status}");

    vpn_ctl(phone, &phone_config, &["down"]);
    vpn_ctl(router, &site.config, &["down"]);
    for (ns, iface) in [(router, &router_if), (phone, &phone_if)] {
        let links = stdout(ns.ip(&["link", "show"]));
        assert!(!links.contains(iface.as_str()), "{links}");
        assert!(!std::path::Path::new(&format!("/var/run/wireguard/{iface}.sock")).exists());
    }
}

#[path = "common/many_peers.rs"]
mod many_peers;

/// 10,000 peers go in (split across netlink messages), a second `up` changes nothing, a
/// one-peer change is one change, and `down` removes the link quickly (peers first).
#[test]
fn ten_thousand_peers_apply_converge_and_come_down() {
    if !kernel_has(Feature::WireGuard) {
        return;
    }
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let many = many_peers::ManyPeers::new(dir.path(), 10_000);
    let applied = vpn_ctl(&ns, &many.config, &["up"]);
    assert_eq!(
        applied
            .lines()
            .filter(|l| l.starts_with("wg0: add peer"))
            .count(),
        10_000
    );
    let peers = stdout(run(ns.command("wg").args(["show", "wg0", "peers"])));
    assert_eq!(peers.lines().count(), 10_000);
    let allowed = stdout(run(ns.command("wg").args(["show", "wg0", "allowed-ips"])));
    let last = &many.peers[9_999];
    assert!(
        allowed.contains(&format!("{}\t{}", last.0, last.1)),
        "the last peer's allowed IP is missing"
    );

    let again = vpn_ctl(&ns, &many.config, &["up"]);
    assert_eq!(
        again.trim(),
        "everything already matches the config; nothing changed"
    );
    many.write(Some(25));
    let changed = vpn_ctl(&ns, &many.config, &["up"]);
    assert_eq!(changed.trim(), "wg0: update peer p0: keepalive 25");

    vpn_ctl(&ns, &many.config, &["down"]);
    let links = stdout(ns.ip(&["link", "show"]));
    assert!(!links.contains("wg0"), "{links}");
}
