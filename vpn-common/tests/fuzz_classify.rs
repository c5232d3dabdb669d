//! Property tests of the classification rules on the host (issue 12): frames built layer by
//! layer, mutated, and random (`vpn-ctl/tests/common/frames.rs`) through
//! `vpn_common::classify`, which must never panic and must give consistent answers:
//!
//! - a kind of the service, an SPI exactly for ESP and ESP-in-UDP, "initial" exactly for
//!   handshake initiations and IKE SA openers;
//! - the source address of the IP header (IPv4 mapped);
//! - bytes after a well-formed message (Ethernet padding) change nothing;
//! - where etherparse, an independent parser, finds UDP to a VPN port or ESP in a plain
//!   (unfragmented, no extension header) packet, the rules classify it as that service.
//!
//! Default 4000 cases (about a second); longer:
//! `PROPTEST_CASES=1000000 cargo test -p vpn-common --test fuzz_classify --release`.
//! The loaded XDP program is held to the same rules by `vpn-ctl/tests/fuzz_xdp.rs`.

#[path = "../../vpn-ctl/tests/common/mod.rs"]
mod common;
#[path = "../../vpn-ctl/tests/common/frames.rs"]
mod frames;

use etherparse::{LinkExtSlice, NetSlice, SlicedPacket, TransportSlice};
use proptest::prelude::*;
use vpn_common::{Classified, Kind, Ports, Service, address_octets, classify};
use vpn_ctl_tests::mutate;

/// The kinds each service may give.
fn kind_fits(service: Service, kind: Kind) -> bool {
    use Kind as K;
    let ike = matches!(
        kind,
        K::IkeV1Main
            | K::IkeV1Aggressive
            | K::IkeV1Informational
            | K::IkeV1Quick
            | K::IkeV1Other
            | K::IkeV2SaInit
            | K::IkeV2Auth
            | K::IkeV2CreateChildSa
            | K::IkeV2Informational
            | K::IkeV2Other
    );
    match service {
        Service::WireGuard => matches!(
            kind,
            K::Malformed
                | K::WgHandshakeInit
                | K::WgHandshakeResponse
                | K::WgCookieReply
                | K::WgData
        ),
        Service::Ike => kind == K::Malformed || ike,
        Service::NatT => matches!(kind, K::Malformed | K::NattKeepalive | K::EspInUdp) || ike,
        Service::Esp => matches!(kind, K::Malformed | K::Esp),
        Service::Fragment => kind == K::Fragment,
    }
}

fn check_consistent(frame: &[u8], c: &Classified) {
    assert!(kind_fits(c.service, c.kind), "{c:?}");
    assert_eq!(
        c.spi != 0,
        matches!(c.kind, Kind::Esp | Kind::EspInUdp),
        "SPI of {c:?}"
    );
    if c.initial {
        assert!(
            matches!(
                c.kind,
                Kind::WgHandshakeInit | Kind::IkeV1Main | Kind::IkeV1Aggressive | Kind::IkeV2SaInit
            ) && c.service != Service::Fragment,
            "initial {c:?}"
        );
    }
    if c.kind == Kind::WgHandshakeInit {
        assert!(c.initial, "{c:?}");
    }
    // The source is the IP header's (after the tags the rules parse).
    let octets = address_octets(c.source);
    let found = frame.windows(4).any(|w| w == &octets[12..])
        && (octets[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
            || frame.windows(16).any(|w| w == octets));
    assert!(found, "source {octets:02x?} is not in the frame");
}

/// What etherparse says the rules must find: the service of a plain UDP or ESP packet.
fn etherparse_service(frame: &[u8], ports: &Ports) -> Option<Service> {
    let packet = SlicedPacket::from_ethernet(frame).ok()?;
    if packet.link_exts.len() > 2
        || packet
            .link_exts
            .iter()
            .any(|e| !matches!(e, LinkExtSlice::Vlan(_)))
    {
        return None;
    }
    let protocol = match packet.net.as_ref()? {
        NetSlice::Ipv4(ip) => {
            if ip.is_payload_fragmented() || ip.header().protocol() != ip.payload().ip_number {
                return None;
            }
            ip.payload().ip_number
        }
        NetSlice::Ipv6(ip) => {
            if ip.is_payload_fragmented() || ip.header().next_header() != ip.payload().ip_number {
                return None;
            }
            ip.payload().ip_number
        }
        NetSlice::Arp(_) => return None,
    };
    if protocol == etherparse::IpNumber::ENCAPSULATING_SECURITY_PAYLOAD {
        return Some(Service::Esp);
    }
    let Some(TransportSlice::Udp(udp)) = &packet.transport else {
        return None;
    };
    let port = udp.destination_port();
    if port == ports.wireguard {
        Some(Service::WireGuard)
    } else if port == ports.ike {
        Some(Service::Ike)
    } else if port == ports.natt {
        Some(Service::NatT)
    } else {
        None
    }
}

#[test]
fn classify_is_consistent_on_built_mutated_and_random_frames() {
    let ports = Ports::default();
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let oracle = std::sync::atomic::AtomicUsize::new(0);
    mutate::check("classify (frames)", 4000, frames::frame(), |frame| {
        let c = classify(frame.as_slice(), &ports);
        if let Some(c) = &c {
            seen.lock().unwrap().insert(c.kind);
            check_consistent(&frame, c);
            // Padding after a well-formed message changes nothing.
            if c.kind != Kind::Malformed {
                let mut padded = frame.clone();
                padded.extend_from_slice(&[0; 18]);
                prop_assert_eq!(classify(padded.as_slice(), &ports), Some(*c));
            }
        }
        if let Some(service) = etherparse_service(&frame, &ports) {
            oracle.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            prop_assert_eq!(
                c.map(|c| c.service),
                Some(service),
                "etherparse finds {:?} in {:02x?}",
                service,
                frame
            );
        }
        Ok(())
    });
    // The generators reach every kind, and the oracle has a say in many cases.
    let seen = seen.into_inner().unwrap();
    if mutate::default_run() {
        let missing: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| !seen.contains(k))
            .collect();
        assert!(missing.is_empty(), "no frame was classified as {missing:?}");
        assert!(
            oracle.into_inner() > 1000,
            "etherparse judged too few frames"
        );
    }
}

#[test]
fn classify_follows_the_configured_ports() {
    // The same frames with the ports moved: a frame is classified by its port's service.
    let moved = Ports {
        wireguard: 500,
        ike: 4500,
        natt: 51820,
    };
    mutate::check(
        "classify (moved ports)",
        1000,
        frames::layered_frame(),
        |frame| {
            let c = classify(frame.as_slice(), &moved);
            if let Some(c) = &c {
                check_consistent(&frame, c);
            }
            if let Some(service) = etherparse_service(&frame, &moved) {
                prop_assert_eq!(c.map(|c| c.service), Some(service));
            }
            Ok(())
        },
    );
}
