//! Differential property test of the loaded XDP classifier (issue 12): frames built layer
//! by layer, mutated, and random (`common/frames.rs`: VLAN tags, IPv4 with options and
//! fragments, IPv6 with fragment headers, UDP to 51820/500/4500 and other ports with right
//! and wrong lengths, ESP, WireGuard/IKE/NAT-T payloads of every size) run through the real
//! program with `BPF_PROG_TEST_RUN` and through the host build of the same rules
//! (`vpn_common::classify`), which must agree on the class (the (service, kind, action)
//! counter slot that moves, or none for traffic that is not VPN) and on the verdict
//! (`XDP_PASS`/`XDP_DROP`), under three policies at once, each in its own copy of the
//! program:
//!
//! - monitor mode (everything passes, everything VPN is counted);
//! - enforce mode with the default ports (malformed VPN packets are dropped);
//! - enforce mode with the ports moved around, a deny list and allow-lists (deny, then
//!   allow-list, then malformed, in the program's order).
//!
//! Needs root (CAP_BPF, CAP_NET_ADMIN) and a kernel with XDP and `BPF_PROG_TEST_RUN`, as
//! `xdp_test_run.rs`. Frames shorter than 14 bytes are left out (the kernel refuses them;
//! `vpn-common/tests/fuzz_classify.rs` runs them on the host). Default 1500 frames; longer:
//! `PROPTEST_CASES=100000 cargo test -p vpn-ctl --test fuzz_xdp -- --nocapture`.

mod common;
#[path = "common/frames.rs"]
mod frames;

use std::{
    cell::RefCell,
    collections::BTreeMap,
    net::{IpAddr, Ipv6Addr},
};

use common::*;
use ipnet::IpNet;
use proptest::prelude::*;
use vpn_common::{Action, Classified, Counter, Kind, Ports, Service, address_octets, classify};
use vpn_ctl::xdp::{Counters, Mode, Policy, WanProgram};
use vpn_ctl_tests::mutate;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

type Slot = (Service, Kind, Action);

fn net(s: &str) -> IpNet {
    s.parse().expect("a prefix")
}

fn policies() -> Vec<(&'static str, Policy)> {
    vec![
        ("monitor", Policy::default()),
        (
            "enforce",
            Policy {
                mode: Mode::Enforce,
                ..Policy::default()
            },
        ),
        (
            "enforce with lists and moved ports",
            Policy {
                mode: Mode::Enforce,
                ports: Ports {
                    wireguard: 4500,
                    ike: 51820,
                    natt: 500,
                },
                deny: vec![net("198.51.100.7/32"), net("2001:db8:2::/48")],
                allow: vec![
                    (Service::WireGuard, net("192.0.2.0/24")),
                    (Service::WireGuard, net("2001:db8:1::/64")),
                    (Service::NatT, net("0.0.0.0/0")),
                    (Service::Esp, net("192.0.2.10/32")),
                ],
                rate_limit: None,
            },
        ),
    ]
}

/// The source as the program keys it: IPv4-mapped addresses are IPv4.
fn source(c: &Classified) -> IpAddr {
    let v6 = Ipv6Addr::from(address_octets(c.source));
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// Enforce mode's decision, by the program's documented order: fragments pass, then the
/// deny list, the allow-lists, malformed packets (no rate limit is configured here).
fn enforce(policy: &Policy, c: &Classified) -> Action {
    if c.kind == Kind::Fragment {
        return Action::Pass;
    }
    let src = source(c);
    if policy.deny.iter().any(|n| n.contains(&src)) {
        return Action::DropDenied;
    }
    let listed = policy.allow.iter().filter(|(s, _)| *s == c.service);
    if listed.clone().next().is_some() && !listed.clone().any(|(_, n)| n.contains(&src)) {
        return Action::DropNotAllowed;
    }
    if c.kind == Kind::Malformed {
        return Action::DropMalformed;
    }
    Action::Pass
}

/// The slot the host rules put `frame` in under `policy`, `None` for non-VPN traffic.
fn expected(frame: &[u8], policy: &Policy) -> Option<Slot> {
    let c = classify(frame, &policy.ports)?;
    let action = match policy.mode {
        Mode::Monitor => Action::Pass,
        Mode::Enforce => enforce(policy, &c),
    };
    Some((c.service, c.kind, action))
}

/// The slots that changed between two snapshots, with what they gained.
fn delta(before: &Counters, after: &Counters) -> BTreeMap<Slot, Counter> {
    after
        .0
        .iter()
        .filter_map(|(slot, c)| {
            let b = before.0.get(slot).copied().unwrap_or_default();
            (*c != b).then(|| {
                (
                    *slot,
                    Counter {
                        packets: c.packets - b.packets,
                        bytes: c.bytes - b.bytes,
                    },
                )
            })
        })
        .collect()
}

/// A loaded copy of the program under one policy, with its last counter snapshot.
struct Loaded {
    name: &'static str,
    policy: Policy,
    program: WanProgram,
    counters: Counters,
}

#[test]
fn the_loaded_program_and_the_host_rules_agree_on_every_frame() {
    let loaded: Vec<RefCell<Loaded>> = policies()
        .into_iter()
        .map(|(name, policy)| {
            let mut program = WanProgram::load(1024)
                .expect("loading the XDP program (needs root, BPF and XDP support)");
            program.set_policy(&policy).expect("setting the policy");
            let counters = program.counters().expect("reading the counters");
            RefCell::new(Loaded {
                name,
                policy,
                program,
                counters,
            })
        })
        .collect();
    let seen = RefCell::new(BTreeMap::<&str, usize>::new());
    mutate::check(
        "XDP program vs host rules",
        1500,
        frames::frame(),
        |frame| {
            if frame.len() < ETH_LEN {
                return Ok(());
            }
            for l in &loaded {
                let mut l = l.borrow_mut();
                let verdict = l
                    .program
                    .test_run(&frame)
                    .expect("BPF_PROG_TEST_RUN of the WAN program");
                let after = l.program.counters().expect("reading the counters");
                let moved = delta(&l.counters, &after);
                l.counters = after;
                let slot = expected(&frame, &l.policy);
                let want: BTreeMap<Slot, Counter> = slot
                    .into_iter()
                    .map(|s| {
                        let c = Counter {
                            packets: 1,
                            bytes: frame.len() as u64,
                        };
                        (s, c)
                    })
                    .collect();
                let want_verdict = match slot {
                    Some((_, _, action)) if action != Action::Pass => XDP_DROP,
                    _ => XDP_PASS,
                };
                prop_assert_eq!(
                    (verdict, &moved),
                    (want_verdict, &want),
                    "{}: the program (left) and the host rules (right) disagree on a frame of {} \
                 bytes: {:02x?}",
                    l.name,
                    frame.len(),
                    frame
                );
                if let Some((_, _, action)) = slot {
                    *seen.borrow_mut().entry(action.name()).or_default() += 1;
                }
            }
            Ok(())
        },
    );
    // Every action of the policies was taken by both sides.
    let seen = seen.into_inner();
    if mutate::default_run() {
        for action in ["pass", "drop_malformed", "drop_denied", "drop_not_allowed"] {
            assert!(
                seen.get(action).copied().unwrap_or(0) > 10,
                "{action}: {seen:?}"
            );
        }
    }
}
