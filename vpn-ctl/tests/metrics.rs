//! `metrics::SystemSource` on real kernel objects (needs root; runs on the host):
//!
//! ```text
//!  phone (userspace WireGuard) ──veth── router: WAN port with the XDP program (count mode),
//!                                        userspace WireGuard wgr… on udp/51820
//! ```
//!
//! The phone handshakes and pings the router through the tunnel; a scrape read in the
//! router's namespace shows the phone's traffic and handshake, a configured peer that never
//! connected as `0`, the listener on 51820 and the WireGuard packets the XDP program counted.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use vpn_ctl::{
    config,
    metrics::{self, Options, Source as _, SystemSource},
    xdp::{AttachMode, WanProgram},
};
#[path = "common/cli.rs"]
#[allow(dead_code, reason = "shared by the end-to-end tests; each uses some")]
mod cli;

use cli::{VPN_CTL, vpn_ctl};
use vpn_ctl_tests::{Netns, VethPair, run, unique_name};

/// Takes the devices down however the test ends (the namespaces go with their guards).
struct Down<'a>(Vec<(&'a Netns, PathBuf)>);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        for (ns, config) in &self.0 {
            let _ = ns
                .command(VPN_CTL)
                .arg("--config")
                .arg(config)
                .arg("down")
                .output();
        }
    }
}

/// The value of the one sample of `metric` whose line contains every one of `parts`.
fn sample(text: &str, metric: &str, parts: &[&str]) -> f64 {
    let found: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {metric} sample with {parts:?}, found {found:?} in:\n{text}"
    );
    found[0].rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_scrape_shows_the_phones_session_the_listener_and_the_wan_counters() {
    let net = VethPair::new();
    let (phone, router) = (&net.a, &net.b);
    let (router_if, phone_if) = (unique_name("wgr"), unique_name("wgp"));
    let dir = tempfile::tempdir().unwrap();

    // The router: a WireGuard interface with two peers, the phone and a laptop that never
    // connects.
    let key = dir.path().join("wg0.key");
    fs::write(&key, run(router.command(VPN_CTL).arg("genkey")).stdout).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let config_path = dir.path().join("vpn.toml");
    fs::write(
        &config_path,
        format!(
            r#"[router]
wan = "{wan}"

[wireguard.{router_if}]
private_key_file = "wg0.key"
listen_port = 51820
addresses = ["10.8.0.1/24"]
public_endpoint = "{addr}:51820"
"#,
            wan = net.b_dev,
            addr = net.b_addr,
        ),
    )
    .unwrap();
    let client = vpn_ctl(
        router,
        &config_path,
        &["peer", "add", "phone", "--split-tunnel"],
    );
    vpn_ctl(router, &config_path, &["peer", "add", "laptop"]);

    // The XDP program on the router's WAN port, counting, before any VPN packet arrives.
    let mut program = WanProgram::load(64).expect("loading the XDP program");
    let program = router.enter(|| {
        program
            .attach(&net.b_dev, AttachMode::Auto)
            .expect("attaching the XDP program to the WAN port");
        program
    });
    let program = Arc::new(Mutex::new(program));

    let mut down = Down(Vec::new());
    vpn_ctl(router, &config_path, &["up", "--backend", "userspace"]);
    down.0.push((router, config_path.clone()));

    // The phone, from the client config `peer add` printed.
    let phone_dir = dir.path().join("phone");
    fs::create_dir(&phone_dir).unwrap();
    let conf = phone_dir.join(format!("{phone_if}.conf"));
    fs::write(&conf, &client).unwrap();
    let phone_config = phone_dir.join("vpn.toml");
    run(phone
        .command(VPN_CTL)
        .arg("--config")
        .arg(&phone_config)
        .args(["import", "wg-quick"])
        .arg(&conf));
    vpn_ctl(phone, &phone_config, &["up", "--backend", "userspace"]);
    down.0.push((phone, phone_config));

    run(phone
        .command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "5", "10.8.0.1"]));

    // Scrape in the router's namespace, as the daemon would.
    let config = config::load(&config_path).expect("the config peer add wrote");
    let (_keep, config_rx) = tokio::sync::watch::channel(Arc::new(config));
    let source = SystemSource::new(config_rx, Some(program.clone()), None);
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let snapshot = router.enter(|| source.collect()).expect("collecting");
    let text = metrics::render(&snapshot, &Options::default());

    let iface = format!("interface=\"{router_if}\"");
    let phone_peer = [
        iface.as_str(),
        "friendly_name=\"phone\"",
        "allowed_ips=\"10.8.0.2/32\"",
    ];
    assert!(sample(&text, "wireguard_received_bytes_total", &phone_peer) > 0.0);
    assert!(sample(&text, "wireguard_sent_bytes_total", &phone_peer) > 0.0);
    let handshake = sample(&text, "wireguard_latest_handshake_seconds", &phone_peer);
    assert!(
        (before as f64 - 120.0..=before as f64 + 5.0).contains(&handshake),
        "handshake at {handshake}, scrape at {before}"
    );
    assert!(
        sample(
            &text,
            "wireguard_latest_handshake_delay_seconds",
            &phone_peer
        ) < 120.0
    );

    let laptop = [iface.as_str(), "friendly_name=\"laptop\""];
    assert_eq!(
        sample(&text, "wireguard_latest_handshake_seconds", &laptop),
        0.0
    );
    assert!(
        !text.lines().any(
            |l| l.starts_with("wireguard_latest_handshake_delay_seconds")
                && l.contains("friendly_name=\"laptop\"")
        ),
        "{text}"
    );
    assert_eq!(
        sample(&text, "vpnctl_wireguard_interface_up", &[&iface]),
        1.0
    );
    assert_eq!(sample(&text, "vpnctl_wireguard_peers", &[&iface]), 2.0);

    assert_eq!(
        sample(
            &text,
            "vpnctl_listener_up",
            &[
                "service=\"wireguard\"",
                "port=\"51820\"",
                "protocol=\"udp\""
            ]
        ),
        1.0
    );

    let wan = format!("interface=\"{}\"", net.b_dev);
    let wan_wg = |kind: &str| {
        sample(
            &text,
            "vpnctl_wan_packets_total",
            &[&wan, "service=\"wireguard\"", kind, "action=\"pass\""],
        )
    };
    assert!(wan_wg("kind=\"handshake_initiation\"") >= 1.0, "{text}");
    // The handshake and three echo requests at least, whatever their kind: the
    // classifier calls boringtun's data packets `malformed` (it does not pad them to a
    // multiple of 16 bytes), which is not this test's business.
    let wireguard_wan = |metric: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with(&format!("{metric}{{"))
                    && l.contains(&wan)
                    && l.contains("service=\"wireguard\"")
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert!(wireguard_wan("vpnctl_wan_packets_total") >= 4.0, "{text}");
    assert!(
        wireguard_wan("vpnctl_wan_bytes_total") >= 4.0 * 74.0,
        "{text}"
    );

    for collector in ["wireguard", "listeners", "xdp"] {
        assert_eq!(
            sample(
                &text,
                "vpnctl_scrape_collector_success",
                &[&format!("collector=\"{collector}\"")]
            ),
            1.0,
            "{text}"
        );
    }

    // After `down` the interface is gone: it shows as down and its port as unlistened, which
    // is no collection failure.
    drop(down);
    let snapshot = router.enter(|| source.collect()).expect("collecting");
    let text = metrics::render(&snapshot, &Options::default());
    assert_eq!(
        sample(&text, "vpnctl_wireguard_interface_up", &[&iface]),
        0.0
    );
    assert_eq!(
        sample(&text, "vpnctl_listener_up", &["port=\"51820\""]),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            "vpnctl_scrape_collector_success",
            &["collector=\"wireguard\""]
        ),
        1.0
    );
}
