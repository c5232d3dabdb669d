//! Kernel tests of the loaded WAN XDP program: every test loads its own copy of the real
//! program (`WanProgram::load`), runs frames through it with `BPF_PROG_TEST_RUN` and checks
//! the XDP verdict, the per-(service, kind, action) counters and the per-source table.
//!
//! Needs root (CAP_BPF, CAP_NET_ADMIN) and a kernel with XDP and `BPF_PROG_TEST_RUN`. Nothing
//! is attached to an interface and no map is pinned, so the tests run in parallel.
//!
//! `BPF_PROG_TEST_RUN` refuses frames shorter than an Ethernet header (14 bytes), so those
//! truncations are only tested on the host (`vpn-common/tests/classify.rs`).

mod common;

use std::{collections::BTreeMap, net::IpAddr};

use common::*;
use ipnet::IpNet;
use vpn_common::{Action, Counter, Kind, PROG_WAN, Ports, Service};
use vpn_ctl::xdp::{Counters, Mode, Policy, RateLimit, Source, WanProgram};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

type Slot = (Service, Kind, Action);

fn load() -> WanProgram {
    WanProgram::load(1024)
        .expect("loading the XDP program (needs root, BPF and XDP support in the kernel)")
}

fn set_policy(program: &mut WanProgram, policy: &Policy) {
    program
        .set_policy(policy)
        .expect("updating the program's policy maps");
}

fn enforce() -> Policy {
    Policy {
        mode: Mode::Enforce,
        ..Policy::default()
    }
}

fn net(s: &str) -> IpNet {
    s.parse().expect("a valid prefix")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("a valid address")
}

fn counters(program: &WanProgram) -> Counters {
    program.counters().expect("reading the COUNTERS map")
}

fn sources(program: &WanProgram) -> Vec<Source> {
    program.sources().expect("reading the SOURCES map")
}

fn source(program: &WanProgram, address: IpAddr) -> Source {
    sources(program)
        .into_iter()
        .find(|s| s.address == address)
        .unwrap_or_else(|| panic!("{address} missing from the sources table"))
}

fn run(program: &WanProgram, frame: &[u8]) -> u32 {
    program
        .test_run(frame)
        .expect("BPF_PROG_TEST_RUN of the WAN program")
}

fn verdict_name(v: u32) -> String {
    match v {
        XDP_DROP => "XDP_DROP".to_string(),
        XDP_PASS => "XDP_PASS".to_string(),
        other => format!("XDP action {other}"),
    }
}

/// The slots that changed between two snapshots, with what they gained.
fn delta(before: &Counters, after: &Counters) -> BTreeMap<Slot, Counter> {
    let mut out = BTreeMap::new();
    for (slot, c) in &after.0 {
        let b = before.0.get(slot).copied().unwrap_or_default();
        assert!(
            c.packets >= b.packets && c.bytes >= b.bytes,
            "counter {slot:?} went backwards: {b:?} -> {c:?}"
        );
        if *c != b {
            out.insert(
                *slot,
                Counter {
                    packets: c.packets - b.packets,
                    bytes: c.bytes - b.bytes,
                },
            );
        }
    }
    for slot in before.0.keys() {
        assert!(after.0.contains_key(slot), "counter {slot:?} disappeared");
    }
    out
}

/// Total packets in the sources table.
fn source_packets(program: &WanProgram) -> u64 {
    sources(program).iter().map(|s| s.packets).sum()
}

/// Runs `frame` once and checks the verdict, that the counters moved exactly in `slot` (one
/// packet, the frame's length in bytes) or nowhere when `slot` is `None`, and that the sources
/// table counted the packet only when it was classified.
fn check(program: &WanProgram, what: &str, frame: &[u8], verdict: u32, slot: Option<Slot>) {
    let before = counters(program);
    let source_before = source_packets(program);
    let got = run(program, frame);
    let moved = delta(&before, &counters(program));
    let source_after = source_packets(program);
    let expected: BTreeMap<Slot, Counter> = slot
        .into_iter()
        .map(|s| {
            (
                s,
                Counter {
                    packets: 1,
                    bytes: frame.len() as u64,
                },
            )
        })
        .collect();
    assert_eq!(
        (verdict_name(got), &moved),
        (verdict_name(verdict), &expected),
        "{what}: frame of {} bytes {:02x?}",
        frame.len(),
        frame
    );
    assert_eq!(
        source_after - source_before,
        u64::from(slot.is_some()),
        "{what}: sources table packet count"
    );
}

fn pass(program: &WanProgram, what: &str, frame: &[u8], service: Service, kind: Kind) {
    check(
        program,
        what,
        frame,
        XDP_PASS,
        Some((service, kind, Action::Pass)),
    );
}

fn drop_as(
    program: &WanProgram,
    what: &str,
    frame: &[u8],
    service: Service,
    kind: Kind,
    action: Action,
) {
    assert_ne!(action, Action::Pass);
    check(
        program,
        what,
        frame,
        XDP_DROP,
        Some((service, kind, action)),
    );
}

fn pass_uncounted(program: &WanProgram, what: &str, frame: &[u8]) {
    check(program, what, frame, XDP_PASS, None);
}

// ---------------------------------------------------------------------------------------------
// Every class of frame
// ---------------------------------------------------------------------------------------------

#[test]
fn a_fresh_program_is_in_monitor_mode_with_empty_counters_and_sources() {
    let program = load();
    assert!(counters(&program).0.is_empty(), "counters start at zero");
    assert!(sources(&program).is_empty(), "no source seen yet");
    // Monitor mode: a malformed packet passes.
    pass(
        &program,
        "malformed wireguard",
        &udp4(WG_PORT, &wg(1, 147)),
        Service::WireGuard,
        Kind::Malformed,
    );
}

#[test]
fn monitor_mode_passes_every_frame_and_counts_it_in_its_slot() {
    let program = load();
    let cases = cases();
    for case in &cases {
        let slot = case.expect.map(|e| (e.service, e.kind, Action::Pass));
        check(&program, &case.name, &case.frame, XDP_PASS, slot);
    }
    let total = counters(&program);
    let classified = cases.iter().filter(|c| c.expect.is_some()).count() as u64;
    assert_eq!(total.sum(|_, _, _| true).packets, classified);
    assert_eq!(
        total.drops(),
        Counter::default(),
        "monitor mode drops nothing"
    );
}

#[test]
fn enforce_mode_drops_malformed_vpn_packets_and_passes_everything_else() {
    let mut program = load();
    set_policy(&mut program, &enforce());
    for case in &cases() {
        let (verdict, slot) = match case.expect {
            None => (XDP_PASS, None),
            Some(e) if e.kind == Kind::Malformed => {
                (XDP_DROP, Some((e.service, e.kind, Action::DropMalformed)))
            }
            Some(e) => (XDP_PASS, Some((e.service, e.kind, Action::Pass))),
        };
        check(&program, &case.name, &case.frame, verdict, slot);
    }
}

#[test]
fn counters_add_one_packet_and_the_frame_length_per_run() {
    let program = load();
    let init = udp4(WG_PORT, &wg_init());
    let data = udp6(WG_PORT, &wg_data(1440));
    for _ in 0..3 {
        assert_eq!(run(&program, &init), XDP_PASS);
    }
    for _ in 0..2 {
        assert_eq!(run(&program, &data), XDP_PASS);
    }
    let c = counters(&program);
    let expected: BTreeMap<Slot, Counter> = [
        (
            (Service::WireGuard, Kind::WgHandshakeInit, Action::Pass),
            Counter {
                packets: 3,
                bytes: 3 * init.len() as u64,
            },
        ),
        (
            (Service::WireGuard, Kind::WgData, Action::Pass),
            Counter {
                packets: 2,
                bytes: 2 * data.len() as u64,
            },
        ),
    ]
    .into();
    assert_eq!(c.0, expected);
    assert_eq!(
        c.service(Service::WireGuard),
        Counter {
            packets: 5,
            bytes: 3 * init.len() as u64 + 2 * data.len() as u64
        }
    );
    assert_eq!(
        c.kind(Service::WireGuard, Kind::WgData).packets,
        2,
        "kind()"
    );
    assert_eq!(c.service(Service::Ike), Counter::default());
    assert_eq!(c.drops(), Counter::default());
}

#[test]
fn repeated_test_runs_count_every_run() {
    let program = load();
    let frame = udp4(NATT_PORT, &esp(0x1234, 120));
    let (action, _) = program
        .run(PROG_WAN, &frame, 50)
        .expect("BPF_PROG_TEST_RUN with repeat");
    assert_eq!(action, XDP_PASS);
    assert_eq!(
        counters(&program).get(Service::NatT, Kind::EspInUdp, Action::Pass),
        Counter {
            packets: 50,
            bytes: 50 * frame.len() as u64
        }
    );
    let s = source(&program, IpAddr::from(SRC4));
    assert_eq!((s.packets, s.bytes), (50, 50 * frame.len() as u64));
}

// ---------------------------------------------------------------------------------------------
// Malformed and valid VPN packets in enforce mode
// ---------------------------------------------------------------------------------------------

#[test]
fn enforce_mode_drops_malformed_packets_of_every_vpn_service() {
    let mut program = load();
    set_policy(&mut program, &enforce());
    let malformed = [
        (
            "wireguard 147 bytes",
            udp4(WG_PORT, &wg(1, 147)),
            Service::WireGuard,
        ),
        (
            "wireguard over IPv6",
            udp6(WG_PORT, &wg_data(31)),
            Service::WireGuard,
        ),
        (
            "wireguard reserved byte",
            udp4(WG_PORT, &wg_reserved(2, [0, 0, 1], 92)),
            Service::WireGuard,
        ),
        (
            "IKE version 3",
            udp4(IKE_PORT, &ike(3, IKEV2_SA_INIT, true, 200)),
            Service::Ike,
        ),
        (
            "IKE too short",
            udp4(IKE_PORT, &ike(2, IKEV2_AUTH, false, 27)),
            Service::Ike,
        ),
        (
            "IKE length field",
            udp4(IKE_PORT, &with_ike_length(ike_sa_init(), 299)),
            Service::Ike,
        ),
        ("NAT-T single 0x00", udp4(NATT_PORT, &[0]), Service::NatT),
        (
            "NAT-T three bytes",
            udp4(NATT_PORT, &[0xff; 3]),
            Service::NatT,
        ),
        (
            "NAT-T short ESP-in-UDP",
            udp4(NATT_PORT, &esp(0x99, 6)),
            Service::NatT,
        ),
        (
            "NAT-T bad IKE",
            udp4(NATT_PORT, &natt_ike(&ike(0, IKEV2_SA_INIT, true, 100))),
            Service::NatT,
        ),
        ("ESP SPI 0", esp4(0), Service::Esp),
        ("ESP SPI 0 over IPv6", esp6(0), Service::Esp),
        (
            "ESP cut short",
            ip4_proto(SRC4, IPPROTO_ESP, &esp(0x10, 5)),
            Service::Esp,
        ),
        (
            "UDP length beyond the frame",
            with_udp_length(udp4(WG_PORT, &wg_init()), UDP4_OFFSET, 500),
            Service::WireGuard,
        ),
        (
            "UDP length 4",
            with_udp_length(udp4(IKE_PORT, &ike_sa_init()), UDP4_OFFSET, 4),
            Service::Ike,
        ),
    ];
    for (what, frame, service) in &malformed {
        drop_as(
            &program,
            what,
            frame,
            *service,
            Kind::Malformed,
            Action::DropMalformed,
        );
    }
    let drops = counters(&program).drops();
    assert_eq!(drops.packets, malformed.len() as u64);
    assert_eq!(
        drops.bytes,
        malformed
            .iter()
            .map(|(_, f, _)| f.len() as u64)
            .sum::<u64>()
    );
}

#[test]
fn enforce_mode_passes_valid_vpn_packets() {
    let mut program = load();
    set_policy(&mut program, &enforce());
    let valid = [
        (
            "initiation",
            udp4(WG_PORT, &wg_init()),
            Service::WireGuard,
            Kind::WgHandshakeInit,
        ),
        (
            "response",
            udp4(WG_PORT, &wg_response()),
            Service::WireGuard,
            Kind::WgHandshakeResponse,
        ),
        (
            "cookie",
            udp4(WG_PORT, &wg_cookie()),
            Service::WireGuard,
            Kind::WgCookieReply,
        ),
        (
            "keepalive",
            udp4(WG_PORT, &wg_data(32)),
            Service::WireGuard,
            Kind::WgData,
        ),
        (
            "data",
            udp6(WG_PORT, &wg_data(1440)),
            Service::WireGuard,
            Kind::WgData,
        ),
        (
            "IKE_SA_INIT",
            udp4(IKE_PORT, &ike_sa_init()),
            Service::Ike,
            Kind::IkeV2SaInit,
        ),
        (
            "IKEv1 quick",
            udp4(IKE_PORT, &ike(1, IKEV1_QUICK, false, 180)),
            Service::Ike,
            Kind::IkeV1Quick,
        ),
        (
            "NAT-T IKE_AUTH",
            udp4(NATT_PORT, &natt_ike(&ike(2, IKEV2_AUTH, false, 500))),
            Service::NatT,
            Kind::IkeV2Auth,
        ),
        (
            "NAT-T keepalive",
            udp4(NATT_PORT, &natt_keepalive()),
            Service::NatT,
            Kind::NattKeepalive,
        ),
        (
            "ESP-in-UDP",
            udp4(NATT_PORT, &esp(7, 100)),
            Service::NatT,
            Kind::EspInUdp,
        ),
        ("ESP", esp4(8), Service::Esp, Kind::Esp),
        ("ESP over IPv6", esp6(9), Service::Esp, Kind::Esp),
        (
            "Q-in-Q",
            qinq(0x8100, WG_PORT, &wg_data(64)),
            Service::WireGuard,
            Kind::WgData,
        ),
        (
            "IPv4 options",
            udp4_with_options(15, WG_PORT, &wg_response()),
            Service::WireGuard,
            Kind::WgHandshakeResponse,
        ),
        (
            "first fragment",
            udp4_first_fragment(WG_PORT, &wg_init(), 64),
            Service::WireGuard,
            Kind::WgHandshakeInit,
        ),
    ];
    for (what, frame, service, kind) in &valid {
        pass(&program, what, frame, *service, *kind);
    }
    assert_eq!(counters(&program).drops(), Counter::default());
}

// ---------------------------------------------------------------------------------------------
// Deny list
// ---------------------------------------------------------------------------------------------

#[test]
fn deny_list_ipv4_prefix_drops_sources_inside_and_passes_sources_outside() {
    let mut program = load();
    set_policy(
        &mut program,
        &Policy {
            deny: vec![net("192.0.2.0/24")],
            ..enforce()
        },
    );
    drop_as(
        &program,
        "denied initiation",
        &udp4_from(SRC4, WG_PORT, &wg_init()),
        Service::WireGuard,
        Kind::WgHandshakeInit,
        Action::DropDenied,
    );
    drop_as(
        &program,
        "denied .255",
        &udp4_from([192, 0, 2, 255], WG_PORT, &wg_data(32)),
        Service::WireGuard,
        Kind::WgData,
        Action::DropDenied,
    );
    pass(
        &program,
        "outside the prefix",
        &udp4_from(OTHER4, WG_PORT, &wg_init()),
        Service::WireGuard,
        Kind::WgHandshakeInit,
    );
    pass(
        &program,
        "neighbouring /24",
        &udp4_from([192, 0, 3, 10], WG_PORT, &wg_init()),
        Service::WireGuard,
        Kind::WgHandshakeInit,
    );
    let denied = source(&program, ip("192.0.2.10"));
    assert_eq!(denied.drops, 1);
    assert_eq!(denied.last_action, "drop_denied");
    assert_eq!(source(&program, IpAddr::from(OTHER4)).drops, 0);
}

#[test]
fn deny_list_ipv6_prefix_drops_sources_inside_and_passes_sources_outside() {
    let mut program = load();
    set_policy(
        &mut program,
        &Policy {
            deny: vec![net("2001:db8:1::/48")],
            ..enforce()
        },
    );
    drop_as(
        &program,
        "denied IPv6",
        &udp6_from(SRC6, IKE_PORT, &ike_sa_init()),
        Service::Ike,
        Kind::IkeV2SaInit,
        Action::DropDenied,
    );
    drop_as(
        &program,
        "denied IPv6 ESP",
        &esp6(0x42),
        Service::Esp,
        Kind::Esp,
        Action::DropDenied,
    );
    pass(
        &program,
        "IPv6 outside",
        &udp6_from(OTHER6, IKE_PORT, &ike_sa_init()),
        Service::Ike,
        Kind::IkeV2SaInit,
    );
    pass(
        &program,
        "IPv4 source",
        &udp4(IKE_PORT, &ike_sa_init()),
        Service::Ike,
        Kind::IkeV2SaInit,
    );
}

#[test]
fn deny_list_applies_to_every_vpn_service() {
    let mut program = load();
    set_policy(
        &mut program,
        &Policy {
            deny: vec![net("192.0.2.10/32")],
            ..enforce()
        },
    );
    for (what, frame, service, kind) in [
        (
            "wireguard",
            udp4(WG_PORT, &wg_data(48)),
            Service::WireGuard,
            Kind::WgData,
        ),
        (
            "IKE",
            udp4(IKE_PORT, &ike(2, IKEV2_AUTH, false, 300)),
            Service::Ike,
            Kind::IkeV2Auth,
        ),
        (
            "NAT-T keepalive",
            udp4(NATT_PORT, &natt_keepalive()),
            Service::NatT,
            Kind::NattKeepalive,
        ),
        (
            "ESP-in-UDP",
            udp4(NATT_PORT, &esp(3, 64)),
            Service::NatT,
            Kind::EspInUdp,
        ),
        ("ESP", esp4(4), Service::Esp, Kind::Esp),
    ] {
        drop_as(&program, what, &frame, service, kind, Action::DropDenied);
    }
    pass(
        &program,
        "the next address",
        &udp4_from([192, 0, 2, 11], WG_PORT, &wg_data(48)),
        Service::WireGuard,
        Kind::WgData,
    );
}

#[test]
fn deny_list_takes_precedence_over_malformed_and_allow_list() {
    let mut program = load();
    set_policy(
        &mut program,
        &Policy {
            deny: vec![net("192.0.2.0/24")],
            allow: vec![(Service::WireGuard, net("192.0.2.0/24"))],
            ..enforce()
        },
    );
    drop_as(
        &program,
        "malformed from a denied source",
        &udp4(WG_PORT, &wg(1, 147)),
        Service::WireGuard,
        Kind::Malformed,
        Action::DropDenied,
    );
    drop_as(
        &program,
        "valid from a denied but allowed source",
        &udp4(WG_PORT, &wg_init()),
        Service::WireGuard,
        Kind::WgHandshakeInit,
        Action::DropDenied,
    );
}

#[test]
fn ipv4_deny_prefix_does_not_match_ipv6_sources() {
    let mut program = load();
    set_policy(
        &mut program,
        &Policy {
            deny: vec![net("0.0.0.0/0")],
            ..enforce()
        },
    );
    drop_as(
        &program,
        "every IPv4 source",
        &udp4_from(OTHER4, WG_PORT, &wg_init()),
        Service::WireGuard,
        Kind::WgHandshakeInit,
        Action::DropDenied,
    );
    pass(
        &program,
        "IPv6 source",
        &udp6(WG_PORT, &wg_init()),
        Service::WireGuard,
        Kind::WgHandshakeInit,
    );
}

#[test]
fn deny_list_is_ignored_in_monitor_mode() {
    let mut program = load();
    set_policy(
        &mut program,
        &Policy {
            deny: vec![net("192.0.2.0/24"), net("2001:db8::/32")],
            ..Policy::default()
        },
    );
    pass(
        &program,
        "denied IPv4 in monitor mode",
        &udp4(WG_PORT, &wg_init()),
        Service::WireGuard,
        Kind::WgHandshakeInit,
    );
    pass(
        &program,
        "denied IPv6 malformed in monitor mode",
        &udp6(WG_PORT, &wg(9, 10)),
        Service::WireGuard,
        Kind::Malformed,
    );
}

#[test]
fn removing_a_deny_prefix_lets_the_source_pass_again() {
    let mut program = load();
    let denied = Policy {
        deny: vec![net("192.0.2.0/24"), net("2001:db8:1::/48")],
        ..enforce()
    };
    set_policy(&mut program, &denied);
    let frame = udp4(WG_PORT, &wg_data(32));
    let frame6 = udp6(WG_PORT, &wg_data(32));
    assert_eq!(run(&program, &frame), XDP_DROP);
    assert_eq!(run(&program, &frame6), XDP_DROP);
    set_policy(
        &mut program,
        &Policy {
            deny: vec![net("2001:db8:1::/48")],
            ..enforce()
        },
    );
    assert_eq!(run(&program, &frame), XDP_PASS, "IPv4 prefix removed");
    assert_eq!(run(&program, &frame6), XDP_DROP, "IPv6 prefix kept");
    set_policy(&mut program, &enforce());
    assert_eq!(run(&program, &frame6), XDP_PASS, "IPv6 prefix removed");
    let c = counters(&program);
    assert_eq!(
        c.get(Service::WireGuard, Kind::WgData, Action::DropDenied)
            .packets,
        3
    );
    assert_eq!(
        c.get(Service::WireGuard, Kind::WgData, Action::Pass)
            .packets,
        2
    );
}

// ---------------------------------------------------------------------------------------------
// Allow-list
// ---------------------------------------------------------------------------------------------

fn wireguard_allow_list() -> Policy {
    Policy {
        allow: vec![
            (Service::WireGuard, net("10.0.0.0/8")),
            (Service::WireGuard, net("2001:db8:1::/48")),
        ],
        ..enforce()
    }
}

#[test]
fn wireguard_allow_list_drops_sources_outside_on_51820_but_not_on_other_services() {
    let mut program = load();
    set_policy(&mut program, &wireguard_allow_list());
    drop_as(
        &program,
        "IPv4 outside on 51820",
        &udp4_from(OTHER4, WG_PORT, &wg_init()),
        Service::WireGuard,
        Kind::WgHandshakeInit,
        Action::DropNotAllowed,
    );
    drop_as(
        &program,
        "IPv6 outside on 51820",
        &udp6_from(OTHER6, WG_PORT, &wg_data(64)),
        Service::WireGuard,
        Kind::WgData,
        Action::DropNotAllowed,
    );
    pass(
        &program,
        "IPv4 outside on 500",
        &udp4_from(OTHER4, IKE_PORT, &ike_sa_init()),
        Service::Ike,
        Kind::IkeV2SaInit,
    );
    pass(
        &program,
        "IPv4 outside on 4500",
        &udp4_from(OTHER4, NATT_PORT, &esp(0x11, 64)),
        Service::NatT,
        Kind::EspInUdp,
    );
    pass(
        &program,
        "IPv4 outside, ESP",
        &esp4_from(OTHER4, 0x12),
        Service::Esp,
        Kind::Esp,
    );
    let s = source(&program, IpAddr::from(OTHER4));
    assert_eq!((s.packets, s.drops), (4, 1));
}

#[test]
fn wireguard_allow_list_passes_sources_inside() {
    let mut program = load();
    set_policy(&mut program, &wireguard_allow_list());
    pass(
        &program,
        "10.1.2.3",
        &udp4_from([10, 1, 2, 3], WG_PORT, &wg_init()),
        Service::WireGuard,
        Kind::WgHandshakeInit,
    );
    pass(
        &program,
        "10.255.255.255",
        &udp4_from([10, 255, 255, 255], WG_PORT, &wg_data(32)),
        Service::WireGuard,
        Kind::WgData,
    );
    pass(
        &program,
        "2001:db8:1::10",
        &udp6_from(SRC6, WG_PORT, &wg_response()),
        Service::WireGuard,
        Kind::WgHandshakeResponse,
    );
    drop_as(
        &program,
        "11.0.0.1",
        &udp4_from([11, 0, 0, 1], WG_PORT, &wg_init()),
        Service::WireGuard,
        Kind::WgHandshakeInit,
        Action::DropNotAllowed,
    );
}

#[test]
fn allow_list_is_checked_before_malformed() {
    let mut program = load();
    set_policy(&mut program, &wireguard_allow_list());
    drop_as(
        &program,
        "malformed from outside",
        &udp4_from(OTHER4, WG_PORT, &wg(1, 147)),
        Service::WireGuard,
        Kind::Malformed,
        Action::DropNotAllowed,
    );
    drop_as(
        &program,
        "malformed from inside",
        &udp4_from([10, 0, 0, 1], WG_PORT, &wg(1, 147)),
        Service::WireGuard,
        Kind::Malformed,
        Action::DropMalformed,
    );
}

#[test]
fn allow_list_on_ike_does_not_restrict_nat_t() {
    let mut program = load();
    set_policy(
        &mut program,
        &Policy {
            allow: vec![(Service::Ike, net("10.0.0.0/8"))],
            ..enforce()
        },
    );
    drop_as(
        &program,
        "IKE from outside",
        &udp4(IKE_PORT, &ike_sa_init()),
        Service::Ike,
        Kind::IkeV2SaInit,
        Action::DropNotAllowed,
    );
    pass(
        &program,
        "NAT-T IKE from outside",
        &udp4(NATT_PORT, &natt_ike(&ike_sa_init())),
        Service::NatT,
        Kind::IkeV2SaInit,
    );
    pass(
        &program,
        "wireguard from outside",
        &udp4(WG_PORT, &wg_init()),
        Service::WireGuard,
        Kind::WgHandshakeInit,
    );
}

// ---------------------------------------------------------------------------------------------
// Rate limit
// ---------------------------------------------------------------------------------------------

fn rate_limited() -> Policy {
    Policy {
        rate_limit: Some(RateLimit {
            per_second: 1,
            burst: 3,
        }),
        ..enforce()
    }
}

#[test]
fn rate_limit_drops_the_fourth_handshake_initiation_from_one_source() {
    let mut program = load();
    set_policy(&mut program, &rate_limited());
    let init = udp4(WG_PORT, &wg_init());
    for i in 1..=3 {
        pass(
            &program,
            &format!("initiation {i}"),
            &init,
            Service::WireGuard,
            Kind::WgHandshakeInit,
        );
    }
    drop_as(
        &program,
        "initiation 4",
        &init,
        Service::WireGuard,
        Kind::WgHandshakeInit,
        Action::DropRateLimited,
    );
    pass(
        &program,
        "data from the same source",
        &udp4(WG_PORT, &wg_data(128)),
        Service::WireGuard,
        Kind::WgData,
    );
    pass(
        &program,
        "response from the same source",
        &udp4(WG_PORT, &wg_response()),
        Service::WireGuard,
        Kind::WgHandshakeResponse,
    );
    drop_as(
        &program,
        "initiation 5",
        &init,
        Service::WireGuard,
        Kind::WgHandshakeInit,
        Action::DropRateLimited,
    );
    pass(
        &program,
        "initiation from another source",
        &udp4_from(OTHER4, WG_PORT, &wg_init()),
        Service::WireGuard,
        Kind::WgHandshakeInit,
    );
    pass(
        &program,
        "initiation from an IPv6 source",
        &udp6(WG_PORT, &wg_init()),
        Service::WireGuard,
        Kind::WgHandshakeInit,
    );
    let s = source(&program, IpAddr::from(SRC4));
    assert_eq!((s.packets, s.drops), (7, 2));
}

#[test]
fn rate_limit_drops_the_fourth_ike_initial_exchange_from_one_source() {
    let mut program = load();
    set_policy(&mut program, &rate_limited());
    // One source per kind of initial message, so each has its own bucket.
    let initials = [
        (
            [192, 0, 2, 21],
            IKE_PORT,
            ike(1, IKEV1_MAIN, true, 180),
            Service::Ike,
            Kind::IkeV1Main,
        ),
        (
            [192, 0, 2, 22],
            IKE_PORT,
            ike(1, IKEV1_AGGRESSIVE, true, 400),
            Service::Ike,
            Kind::IkeV1Aggressive,
        ),
        (
            [192, 0, 2, 23],
            IKE_PORT,
            ike_sa_init(),
            Service::Ike,
            Kind::IkeV2SaInit,
        ),
        (
            [192, 0, 2, 24],
            NATT_PORT,
            natt_ike(&ike_sa_init()),
            Service::NatT,
            Kind::IkeV2SaInit,
        ),
    ];
    for (src, port, payload, service, kind) in &initials {
        let frame = udp4_from(*src, *port, payload);
        for i in 1..=3 {
            pass(
                &program,
                &format!("{kind:?} {i} from {src:?}"),
                &frame,
                *service,
                *kind,
            );
        }
        drop_as(
            &program,
            &format!("{kind:?} 4 from {src:?}"),
            &frame,
            *service,
            *kind,
            Action::DropRateLimited,
        );
    }
    // Messages of an established exchange are never limited.
    let src = [192, 0, 2, 23];
    for (what, port, payload, service, kind) in [
        (
            "IKE_SA_INIT response (responder SPI set)",
            IKE_PORT,
            ike(2, IKEV2_SA_INIT, false, 300),
            Service::Ike,
            Kind::IkeV2SaInit,
        ),
        (
            "IKE_AUTH",
            IKE_PORT,
            ike(2, IKEV2_AUTH, false, 300),
            Service::Ike,
            Kind::IkeV2Auth,
        ),
        (
            "INFORMATIONAL with responder SPI zero",
            IKE_PORT,
            ike(2, IKEV2_INFORMATIONAL, true, 80),
            Service::Ike,
            Kind::IkeV2Informational,
        ),
        (
            "IKEv1 quick mode",
            IKE_PORT,
            ike(1, IKEV1_QUICK, true, 160),
            Service::Ike,
            Kind::IkeV1Quick,
        ),
        (
            "NAT-T CREATE_CHILD_SA",
            NATT_PORT,
            natt_ike(&ike(2, IKEV2_CREATE_CHILD_SA, false, 300)),
            Service::NatT,
            Kind::IkeV2CreateChildSa,
        ),
    ] {
        pass(
            &program,
            what,
            &udp4_from(src, port, &payload),
            service,
            kind,
        );
    }
    pass(
        &program,
        "IKE_SA_INIT from another source",
        &udp4_from(OTHER4, IKE_PORT, &ike_sa_init()),
        Service::Ike,
        Kind::IkeV2SaInit,
    );
}

#[test]
fn rate_limit_is_ignored_in_monitor_mode() {
    let mut program = load();
    set_policy(
        &mut program,
        &Policy {
            mode: Mode::Monitor,
            ..rate_limited()
        },
    );
    let init = udp4(WG_PORT, &wg_init());
    for i in 1..=10 {
        pass(
            &program,
            &format!("initiation {i}"),
            &init,
            Service::WireGuard,
            Kind::WgHandshakeInit,
        );
    }
}

#[test]
fn without_a_rate_limit_initiations_are_not_limited() {
    let mut program = load();
    set_policy(&mut program, &enforce());
    let init = udp4(WG_PORT, &wg_init());
    for i in 1..=10 {
        pass(
            &program,
            &format!("initiation {i}"),
            &init,
            Service::WireGuard,
            Kind::WgHandshakeInit,
        );
    }
}

#[test]
fn malformed_initiations_do_not_use_up_the_rate_limit() {
    let mut program = load();
    set_policy(&mut program, &rate_limited());
    for _ in 0..5 {
        drop_as(
            &program,
            "malformed initiation",
            &udp4(WG_PORT, &wg(1, 149)),
            Service::WireGuard,
            Kind::Malformed,
            Action::DropMalformed,
        );
    }
    for i in 1..=3 {
        pass(
            &program,
            &format!("initiation {i}"),
            &udp4(WG_PORT, &wg_init()),
            Service::WireGuard,
            Kind::WgHandshakeInit,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Non-VPN traffic and fragments in enforce mode
// ---------------------------------------------------------------------------------------------

fn deny_everything() -> Policy {
    Policy {
        deny: vec![net("0.0.0.0/0"), net("::/0")],
        allow: vec![
            (Service::WireGuard, net("127.0.0.1/32")),
            (Service::Ike, net("127.0.0.1/32")),
            (Service::NatT, net("127.0.0.1/32")),
            (Service::Esp, net("127.0.0.1/32")),
        ],
        rate_limit: Some(RateLimit {
            per_second: 1,
            burst: 1,
        }),
        ..enforce()
    }
}

#[test]
fn non_vpn_traffic_passes_in_enforce_mode_from_a_denied_source_and_is_not_counted() {
    let mut program = load();
    set_policy(&mut program, &deny_everything());
    let wg4 = udp4(WG_PORT, &wg(1, 147));
    for (what, frame) in [
        (
            "TCP to 51820 with a malformed initiation",
            tcp4(WG_PORT, &wg(1, 147)),
        ),
        ("TCP to 500", tcp4(IKE_PORT, &[])),
        ("ICMP", icmp4_echo()),
        ("ARP", arp_request()),
        ("IPv6 ND", icmpv6_neighbor_solicitation()),
        ("GRE", ip4_proto(SRC4, IPPROTO_GRE, &[0; 40])),
        ("UDP 53 with a malformed initiation", udp4(53, &wg(1, 147))),
        ("UDP 51821", udp4(51821, &wg(1, 147))),
        ("IPv6 UDP 53", udp6(53, &[0; 40])),
        ("three VLAN tags", triple_vlan(WG_PORT, &wg(1, 147))),
        ("Ethernet header only", truncated(&wg4, ETH_LEN)),
        ("IPv4 header cut", truncated(&wg4, ETH_LEN + 19)),
        ("UDP header cut", truncated(&wg4, UDP4_OFFSET + 7)),
        (
            "IPv6 header cut",
            truncated(&udp6(WG_PORT, &wg_init()), ETH_LEN + 39),
        ),
        (
            "VLAN tag cut",
            truncated(&vlan(WG_PORT, &wg_init()), ETH_LEN + 2),
        ),
        (
            "IPv6 fragment header cut",
            truncated(
                &udp6_first_fragment(WG_PORT, &wg_init(), 64),
                UDP6_OFFSET + 7,
            ),
        ),
        (
            "IPv4 later fragment of TCP",
            ipv4_fragment(SRC4, IPPROTO_TCP, 10, false, &[0; 40]),
        ),
    ] {
        pass_uncounted(&program, what, &frame);
    }
    assert!(
        sources(&program).is_empty(),
        "non-VPN traffic has no sources entry"
    );
}

#[test]
fn fragments_pass_in_enforce_mode_from_a_denied_source_and_are_counted() {
    let mut program = load();
    set_policy(&mut program, &deny_everything());
    for (what, frame) in [
        (
            "IPv4 later fragment that looks like a malformed initiation",
            ipv4_fragment(
                SRC4,
                IPPROTO_UDP,
                185,
                false,
                &udp_datagram(WG_PORT, &wg(1, 147)),
            ),
        ),
        (
            "IPv4 middle fragment",
            ipv4_fragment(SRC4, IPPROTO_UDP, 1, true, &[0; 64]),
        ),
        (
            "IPv4 later ESP fragment with SPI 0",
            ipv4_fragment(SRC4, IPPROTO_ESP, 90, false, &esp(0, 64)),
        ),
        (
            "IPv6 later fragment",
            ipv6_fragment(
                SRC6,
                IPPROTO_UDP,
                185,
                false,
                &udp_datagram(WG_PORT, &wg_init()),
            ),
        ),
        (
            "IPv6 later ESP fragment",
            ipv6_fragment(SRC6, IPPROTO_ESP, 7, true, &[0; 64]),
        ),
    ] {
        pass(&program, what, &frame, Service::Fragment, Kind::Fragment);
    }
    let s = source(&program, IpAddr::from(SRC4));
    assert_eq!((s.packets, s.drops), (3, 0));
    assert_eq!(
        (s.last_service, s.last_kind, s.last_action),
        ("fragment", "fragment", "pass")
    );
    // A first fragment is classified by its port and gets the usual verdict.
    drop_as(
        &program,
        "first fragment from a denied source",
        &udp4_first_fragment(WG_PORT, &wg_init(), 64),
        Service::WireGuard,
        Kind::WgHandshakeInit,
        Action::DropDenied,
    );
}

// ---------------------------------------------------------------------------------------------
// Mode changes
// ---------------------------------------------------------------------------------------------

#[test]
fn changing_the_mode_changes_the_verdict_without_reloading_and_keeps_counters() {
    let mut program = load();
    let malformed = udp4(WG_PORT, &wg(2, 91));
    let valid = udp4(WG_PORT, &wg_response());
    let bytes = malformed.len() as u64;

    pass(
        &program,
        "monitor",
        &malformed,
        Service::WireGuard,
        Kind::Malformed,
    );
    pass(
        &program,
        "monitor valid",
        &valid,
        Service::WireGuard,
        Kind::WgHandshakeResponse,
    );

    set_policy(&mut program, &enforce());
    drop_as(
        &program,
        "enforce",
        &malformed,
        Service::WireGuard,
        Kind::Malformed,
        Action::DropMalformed,
    );
    pass(
        &program,
        "enforce valid",
        &valid,
        Service::WireGuard,
        Kind::WgHandshakeResponse,
    );

    set_policy(&mut program, &Policy::default());
    pass(
        &program,
        "monitor again",
        &malformed,
        Service::WireGuard,
        Kind::Malformed,
    );

    let c = counters(&program);
    let expected: BTreeMap<Slot, Counter> = [
        (
            (Service::WireGuard, Kind::Malformed, Action::Pass),
            Counter {
                packets: 2,
                bytes: 2 * bytes,
            },
        ),
        (
            (Service::WireGuard, Kind::Malformed, Action::DropMalformed),
            Counter { packets: 1, bytes },
        ),
        (
            (Service::WireGuard, Kind::WgHandshakeResponse, Action::Pass),
            Counter {
                packets: 2,
                bytes: 2 * valid.len() as u64,
            },
        ),
    ]
    .into();
    assert_eq!(c.0, expected, "counters kept across policy changes");
    let s = source(&program, IpAddr::from(SRC4));
    assert_eq!((s.packets, s.drops), (5, 1));
    assert_eq!(s.last_action, "pass");
}

// ---------------------------------------------------------------------------------------------
// Sources table
// ---------------------------------------------------------------------------------------------

#[test]
fn sources_table_shows_ipv4_sources_unmapped_with_counts_and_last_kind() {
    let program = load();
    let data = udp4(WG_PORT, &wg_data(64));
    let init = udp4(WG_PORT, &wg_init());
    run(&program, &data);
    run(&program, &data);
    run(&program, &init);
    let all = sources(&program);
    assert_eq!(all.len(), 1, "one source: {all:?}");
    let s = &all[0];
    assert_eq!(s.address, ip("192.0.2.10"));
    assert!(s.address.is_ipv4(), "IPv4 sources are shown unmapped");
    assert_eq!(s.packets, 3);
    assert_eq!(s.bytes, 2 * data.len() as u64 + init.len() as u64);
    assert_eq!(s.drops, 0);
    assert_eq!(s.last_service, "wireguard");
    assert_eq!(s.last_kind, "handshake_initiation");
    assert_eq!(s.last_action, "pass");
    assert_eq!(s.last_spi, None);
    assert!(
        s.first_seen_secs_ago >= s.last_seen_secs_ago && s.last_seen_secs_ago >= 0.0,
        "first seen {} s ago, last seen {} s ago",
        s.first_seen_secs_ago,
        s.last_seen_secs_ago
    );
    assert!(s.first_seen_secs_ago < 60.0);
}

#[test]
fn sources_table_shows_ipv6_sources_as_they_are() {
    let program = load();
    run(&program, &udp6_from(OTHER6, IKE_PORT, &ike_sa_init()));
    run(
        &program,
        &udp4_from(OTHER4, IKE_PORT, &ike(1, IKEV1_MAIN, true, 200)),
    );
    let v6 = source(&program, ip("2001:db8:2::20"));
    assert_eq!(v6.packets, 1);
    assert_eq!(v6.last_service, "ike");
    assert_eq!(v6.last_kind, "ikev2_ike_sa_init");
    let v4 = source(&program, ip("198.51.100.7"));
    assert_eq!(v4.last_kind, "ikev1_main_mode");
    assert_eq!(sources(&program).len(), 2);
    // Most recently seen first.
    assert_eq!(sources(&program)[0].address, ip("198.51.100.7"));
}

#[test]
fn sources_table_keeps_the_last_esp_spi() {
    let program = load();
    run(&program, &esp4(0x0101_0101));
    assert_eq!(
        source(&program, IpAddr::from(SRC4)).last_spi,
        Some(0x0101_0101)
    );
    run(&program, &udp4(NATT_PORT, &esp(0x0202_0202, 64)));
    let s = source(&program, IpAddr::from(SRC4));
    assert_eq!(s.last_spi, Some(0x0202_0202));
    assert_eq!((s.last_service, s.last_kind), ("natt", "esp_in_udp"));
    // A packet without an SPI keeps the last one.
    run(&program, &udp4(NATT_PORT, &natt_keepalive()));
    let s = source(&program, IpAddr::from(SRC4));
    assert_eq!(s.last_spi, Some(0x0202_0202));
    assert_eq!(s.last_kind, "keepalive");
    assert_eq!(s.packets, 3);
    run(&program, &esp6(0xfeed));
    let s = source(&program, IpAddr::from(SRC6));
    assert_eq!(
        (s.last_service, s.last_kind, s.last_spi),
        ("esp", "esp", Some(0xfeed))
    );
}

#[test]
fn sources_table_counts_drops_and_the_last_action() {
    let mut program = load();
    set_policy(&mut program, &enforce());
    run(&program, &udp4(WG_PORT, &wg_init()));
    run(&program, &udp4(WG_PORT, &wg(1, 100)));
    run(&program, &esp4(0));
    let s = source(&program, IpAddr::from(SRC4));
    assert_eq!((s.packets, s.drops), (3, 2));
    assert_eq!(
        (s.last_service, s.last_kind, s.last_action),
        ("esp", "malformed", "drop_malformed")
    );
    assert_eq!(s.last_spi, None, "SPI 0 is not recorded");
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

#[test]
fn custom_ports_from_the_policy_replace_the_defaults() {
    let mut program = load();
    set_policy(
        &mut program,
        &Policy {
            ports: Ports {
                wireguard: 51821,
                ike: 1500,
                natt: 14500,
            },
            ..enforce()
        },
    );
    pass(
        &program,
        "wireguard on 51821",
        &udp4(51821, &wg_init()),
        Service::WireGuard,
        Kind::WgHandshakeInit,
    );
    drop_as(
        &program,
        "malformed wireguard on 51821",
        &udp4(51821, &wg(1, 147)),
        Service::WireGuard,
        Kind::Malformed,
        Action::DropMalformed,
    );
    pass_uncounted(&program, "malformed on 51820", &udp4(WG_PORT, &wg(1, 147)));
    pass(
        &program,
        "IKE on 1500",
        &udp4(1500, &ike_sa_init()),
        Service::Ike,
        Kind::IkeV2SaInit,
    );
    pass_uncounted(&program, "malformed on 500", &udp4(IKE_PORT, &[0; 3]));
    pass(
        &program,
        "NAT-T on 14500",
        &udp4(14500, &natt_keepalive()),
        Service::NatT,
        Kind::NattKeepalive,
    );
    pass_uncounted(&program, "malformed on 4500", &udp4(NATT_PORT, &[0]));
    pass(
        &program,
        "ESP is not a port",
        &esp4(1),
        Service::Esp,
        Kind::Esp,
    );

    // Back to the defaults on the same program.
    set_policy(&mut program, &enforce());
    drop_as(
        &program,
        "malformed on 51820 again",
        &udp4(WG_PORT, &wg(1, 147)),
        Service::WireGuard,
        Kind::Malformed,
        Action::DropMalformed,
    );
    pass_uncounted(&program, "51821 again", &udp4(51821, &wg(1, 147)));
}

/// Transport data is accumulated per CPU and added to the source table when another source
/// sends or every 64 packets; `sources()` adds what is still pending, so counts stay exact
/// across both kinds of flush.
#[test]
fn data_counts_per_source_stay_exact_across_pending_flushes() {
    let program = load();
    let a = udp4_from([198, 51, 100, 1], WG_PORT, &wg_data(64));
    let b = udp4_from([198, 51, 100, 2], WG_PORT, &wg_data(64));
    let run = |frame: &[u8], n: usize| {
        for _ in 0..n {
            assert_eq!(program.test_run(frame).expect("test run"), XDP_PASS);
        }
    };
    run(&a, 150); // two flushes of 64 inside, 22 pending
    run(&b, 3); // flushes a's 22, b pending
    run(&a, 1); // flushes b, a pending again
    let sources = program.sources().expect("read sources");
    let packets = |addr: &str| {
        let addr: IpAddr = addr.parse().unwrap();
        sources
            .iter()
            .find(|s| s.address == addr)
            .unwrap_or_else(|| panic!("{addr} missing from {sources:#?}"))
    };
    let sa = packets("198.51.100.1");
    assert_eq!((sa.packets, sa.bytes), (151, 151 * a.len() as u64));
    assert_eq!(sa.last_kind, "data");
    let sb = packets("198.51.100.2");
    assert_eq!((sb.packets, sb.bytes), (3, 3 * b.len() as u64));
}
