//! `vpn-ctl diag` end to end: real UDP packets across a veth pair between two fresh network
//! namespaces, the real binary attached to the receiving end. Needs root (as CI runs).

use std::{
    net::{SocketAddr, UdpSocket},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use vpn_ctl_tests::{Netns, VethPair, payload, receive_all, send_udp};

const BIN: &str = env!("CARGO_BIN_EXE_vpn-ctl");
/// Ethernet + IPv4 + UDP headers in front of each payload.
const V4_OVERHEAD: u64 = 14 + 20 + 8;
const V6_OVERHEAD: u64 = 14 + 40 + 8;

/// Starts `vpn-ctl diag` in `ns` and waits until its program is attached to `dev`.
fn start_diag(ns: &Netns, dev: &str, args: &[&str]) -> Child {
    let child = ns
        .command(BIN)
        .args(["diag", "--wan", dev])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vpn-ctl diag");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ns.has_xdp(dev) {
        assert!(
            Instant::now() < deadline,
            "diag did not attach to {dev} within 20s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn finish(child: Child) -> Output {
    let out = child.wait_with_output().expect("wait for vpn-ctl diag");
    assert!(
        out.status.success(),
        "vpn-ctl diag failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "diag --json printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// (packets, bytes) of one counter row, (0, 0) when absent.
fn counter(report: &Value, service: &str, kind: &str, action: &str) -> (u64, u64) {
    report["counters"]
        .as_array()
        .expect("counters")
        .iter()
        .find(|r| r["service"] == service && r["kind"] == kind && r["action"] == action)
        .map_or((0, 0), |r| {
            (r["packets"].as_u64().unwrap(), r["bytes"].as_u64().unwrap())
        })
}

fn bytes(payloads: &[Vec<u8>], overhead: u64) -> u64 {
    payloads.iter().map(|p| p.len() as u64 + overhead).sum()
}

fn bind(ns: &Netns, port: u16) -> UdpSocket {
    ns.udp_socket(SocketAddr::from(([0u16; 8], port)))
}

#[test]
fn monitor_mode_counts_every_packet_and_passes_it_on() {
    let net = VethPair::new();
    // Dual-stack listeners on the router side, as a WireGuard interface and charon would have.
    let wg = bind(&net.b, 51820);
    let ike = bind(&net.b, 500);
    let natt = bind(&net.b, 4500);
    let other = bind(&net.b, 5353);
    let diag = start_diag(&net.b, &net.b_dev, &["--duration", "3", "--json"]);

    let to = |port| SocketAddr::from((net.b_addr, port));
    let inits: Vec<_> = (0..3).map(|_| payload::wg(1, 148)).collect();
    let data: Vec<_> = (0..10).map(|i| payload::wg(4, 32 + 16 * i)).collect();
    let malformed = vec![b"hello".to_vec(), payload::wg(1, 149)];
    let sa_init = vec![payload::ike(2, 34, true, 300)];
    let natt_msgs = vec![payload::natt_keepalive(), payload::esp(0x1234, 72)];
    let dns: Vec<_> = (0..4).map(|_| b"not vpn".to_vec()).collect();
    send_udp(&net.a, to(51820), &inits);
    send_udp(&net.a, to(51820), &data);
    send_udp(&net.a, to(51820), &malformed);
    send_udp(&net.a, to(500), &sa_init);
    send_udp(&net.a, to(4500), &natt_msgs);
    send_udp(&net.a, to(5353), &dns);
    let data6: Vec<_> = (0..2).map(|_| payload::wg(4, 48)).collect();
    send_udp(&net.a, SocketAddr::from((net.b_addr6, 51820)), &data6);

    // Monitor mode passes everything: every datagram reaches its socket.
    let quiet = Duration::from_millis(300);
    assert_eq!(receive_all(&wg, quiet).len(), 3 + 10 + 2 + 2);
    assert_eq!(receive_all(&ike, quiet).len(), 1);
    assert_eq!(receive_all(&natt, quiet).len(), 2);
    assert_eq!(receive_all(&other, quiet).len(), 4);

    let out = finish(diag);
    let r = json(&out);
    assert_eq!(r["mode"], "monitor");
    assert_eq!(r["attach_mode"], "native", "veth supports native XDP");
    let wg_data = (bytes(&data, V4_OVERHEAD), bytes(&data6, V6_OVERHEAD));
    assert_eq!(
        counter(&r, "wireguard", "handshake_initiation", "pass"),
        (3, bytes(&inits, V4_OVERHEAD))
    );
    assert_eq!(
        counter(&r, "wireguard", "data", "pass"),
        (12, wg_data.0 + wg_data.1)
    );
    assert_eq!(
        counter(&r, "wireguard", "malformed", "pass"),
        (2, bytes(&malformed, V4_OVERHEAD))
    );
    assert_eq!(
        counter(&r, "ike", "ikev2_ike_sa_init", "pass"),
        (1, bytes(&sa_init, V4_OVERHEAD))
    );
    assert_eq!(counter(&r, "natt", "keepalive", "pass").0, 1);
    assert_eq!(counter(&r, "natt", "esp_in_udp", "pass").0, 1);
    // Nothing else was counted: not the other port, not ARP or neighbour discovery.
    let total: u64 = r["counters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 3 + 12 + 2 + 1 + 2);

    // Per source: the IPv4 and the IPv6 address of the sender.
    let sources = r["sources"].as_array().unwrap();
    let source = |addr: String| {
        sources
            .iter()
            .find(|s| s["address"] == addr)
            .unwrap_or_else(|| panic!("source {addr} missing from {sources:#?}"))
    };
    assert_eq!(
        source(net.a_addr.to_string())["packets"],
        3 + 10 + 2 + 1 + 2
    );
    assert_eq!(source(net.a_addr6.to_string())["packets"], 2);
    assert_eq!(source(net.a_addr6.to_string())["last_kind"], "data");

    // The listening check sees this test's sockets, owned by this process.
    let listeners = r["listeners"].as_array().unwrap();
    for port in [51820, 500, 4500] {
        let l = listeners
            .iter()
            .find(|l| l["local"].as_str().unwrap().ends_with(&format!(":{port}")))
            .unwrap_or_else(|| panic!("no listener on {port} in {listeners:#?}"));
        assert_eq!(l["owner"]["pid"], std::process::id());
    }
    assert!(
        !net.b.has_xdp(&net.b_dev),
        "diag left its XDP program on the link"
    );
}

#[test]
fn enforce_mode_drops_malformed_packets_and_passes_valid_ones() {
    let net = VethPair::new();
    let wg = bind(&net.b, 51820);
    let diag = start_diag(
        &net.b,
        &net.b_dev,
        &["--duration", "3", "--json", "--mode", "enforce"],
    );
    let valid: Vec<_> = (0..5).map(|i| payload::wg(4, 32 + 16 * i)).collect();
    let malformed = vec![payload::wg(1, 147), payload::wg(4, 31), payload::wg(9, 64)];
    let to = SocketAddr::from((net.b_addr, 51820));
    send_udp(&net.a, to, &malformed);
    send_udp(&net.a, to, &valid);

    let got = receive_all(&wg, Duration::from_millis(300));
    assert_eq!(got, valid, "exactly the valid packets arrive, in order");
    let r = json(&finish(diag));
    assert_eq!(counter(&r, "wireguard", "malformed", "drop_malformed").0, 3);
    assert_eq!(counter(&r, "wireguard", "data", "pass").0, 5);
    assert!(!net.b.has_xdp(&net.b_dev));
}

#[test]
fn no_packet_at_all_points_at_the_port_forward() {
    let net = VethPair::new();
    let _wg = bind(&net.b, 51820);
    let out = finish(start_diag(&net.b, &net.b_dev, &["--duration", "1"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("VERDICT"), "{text}");
    assert!(
        text.contains("No WireGuard packet reached") && text.contains("port forward"),
        "{text}"
    );
}

#[test]
fn sigterm_and_sigkill_leave_no_program_behind() {
    for signal in ["TERM", "KILL"] {
        let net = VethPair::new();
        let diag = start_diag(&net.b, &net.b_dev, &[]);
        // `ip netns exec` execs the binary, so the child's pid is vpn-ctl's.
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &diag.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let out = diag.wait_with_output().unwrap();
        if signal == "TERM" {
            assert!(
                out.status.success(),
                "SIGTERM is a normal end: {:?}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("VERDICT"));
        }
        // The attachment is a BPF link owned by the process: the kernel removes it with the
        // process, even on SIGKILL.
        let deadline = Instant::now() + Duration::from_secs(5);
        while net.b.has_xdp(&net.b_dev) {
            assert!(
                Instant::now() < deadline,
                "XDP program still attached after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_missing_interface_is_named_plainly() {
    let ns = Netns::new();
    let out = ns
        .command(BIN)
        .args(["diag", "--wan", "wan-missing0", "--duration", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("interface wan-missing0 does not exist") && err.contains("ip link"),
        "{err}"
    );
}

#[test]
fn a_second_program_is_refused_without_force() {
    let net = VethPair::new();
    let first = start_diag(&net.b, &net.b_dev, &["--duration", "4"]);
    let out = net
        .b
        .command(BIN)
        .args(["diag", "--wan", &net.b_dev, "--duration", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already has an XDP program attached") && err.contains("--force"),
        "{err}"
    );
    finish(first);
    assert!(!net.b.has_xdp(&net.b_dev));
}

#[test]
fn a_driver_without_native_xdp_falls_back_to_generic_mode() {
    let ns = Netns::new();
    // The bridge driver has no native XDP support (and this kernel has no dummy driver).
    ns.ip(&["link", "add", "wan0", "type", "bridge"]);
    ns.ip(&["link", "set", "wan0", "up"]);
    let out = finish(start_diag(&ns, "wan0", &["--duration", "1", "--json"]));
    let r = json(&out);
    assert_eq!(r["attach_mode"], "generic");
    assert!(
        r["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["message"].as_str().unwrap().contains("generic XDP mode")),
        "{r:#}"
    );

    // Asking for native mode only fails with a hint.
    let out = ns
        .command(BIN)
        .args([
            "diag",
            "--wan",
            "wan0",
            "--duration",
            "1",
            "--xdp-mode",
            "native",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--xdp-mode generic"), "{err}");
}

#[test]
fn a_down_interface_is_reported() {
    let ns = Netns::new();
    ns.ip(&["link", "add", "wan0", "type", "bridge"]);
    let out = finish(start_diag(&ns, "wan0", &["--duration", "1", "--json"]));
    let r = json(&out);
    assert_eq!(r["interface_up"], false);
    let problem = r["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["level"] == "problem" && v["topic"] == "interface")
        .unwrap_or_else(|| panic!("no interface problem in {r:#}"));
    assert!(
        problem["message"]
            .as_str()
            .unwrap()
            .contains("ip link set wan0 up")
    );
}
