//! Host tests of the shared classification rules (`vpn_common::classify`) on byte slices, and
//! of the token bucket (`vpn_common::rate`). No privileges needed.
//!
//! The same frames (`common::cases`) are run through the loaded XDP program by
//! `vpn-ctl/tests/xdp_test_run.rs`.

#[path = "../../vpn-ctl/tests/common/mod.rs"]
mod common;

use common::*;
use vpn_common::{Classified, Kind, Ports, RateState, Service, classify, rate};

/// A classified source address as sixteen network-order bytes, whatever its in-memory
/// representation (bytes, or big-endian 32-bit words).
trait Octets {
    fn octets(self) -> [u8; 16];
}

impl Octets for [u8; 16] {
    fn octets(self) -> [u8; 16] {
        self
    }
}

impl Octets for [u32; 4] {
    fn octets(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (i, w) in self.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

fn classify_default(frame: &[u8]) -> Option<Classified> {
    classify(frame, &Ports::default())
}

/// Service and kind, or `None` for "not VPN traffic".
fn class(frame: &[u8]) -> Option<(Service, Kind)> {
    classify_default(frame).map(|c| (c.service, c.kind))
}

/// Classifies `frame` and expects a VPN packet, with `what` in the panic message.
fn classified(frame: &[u8], what: &str) -> Classified {
    classify_default(frame).unwrap_or_else(|| panic!("{what}: expected a VPN packet, got None"))
}

fn assert_class(frame: &[u8], expected: Option<(Service, Kind)>, what: &str) {
    assert_eq!(
        class(frame),
        expected,
        "{what} (frame of {} bytes)",
        frame.len()
    );
}

fn assert_malformed(frame: &[u8], service: Service, what: &str) {
    assert_class(frame, Some((service, Kind::Malformed)), what);
}

// ---------------------------------------------------------------------------------------------
// The shared table
// ---------------------------------------------------------------------------------------------

#[test]
fn every_shared_case_is_classified_as_expected() {
    let cases = cases();
    assert!(cases.len() > 100, "the table holds {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let got = classify_default(&case.frame).map(|c| Expect {
            service: c.service,
            kind: c.kind,
            initial: c.initial,
            spi: c.spi,
        });
        if got != case.expect {
            failures.push(format!(
                "{}: expected {:?}, got {:?}",
                case.name, case.expect, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shared_cases_have_unique_names() {
    let mut names: Vec<String> = cases().into_iter().map(|c| c.name).collect();
    let total = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), total, "duplicate case names");
}

// ---------------------------------------------------------------------------------------------
// WireGuard
// ---------------------------------------------------------------------------------------------

const WG_VALID: [(u8, usize, Kind); 6] = [
    (1, 148, Kind::WgHandshakeInit),
    (2, 92, Kind::WgHandshakeResponse),
    (3, 64, Kind::WgCookieReply),
    (4, 32, Kind::WgData),
    (4, 48, Kind::WgData),
    (4, 1440, Kind::WgData),
];

#[test]
fn wireguard_messages_of_their_exact_size_are_valid() {
    for (t, len, kind) in WG_VALID {
        assert_class(
            &udp4(WG_PORT, &wg(t, len)),
            Some((Service::WireGuard, kind)),
            &format!("type {t}, {len} bytes"),
        );
    }
}

#[test]
fn wireguard_handshake_messages_one_byte_short_or_long_are_malformed() {
    for (t, len, _) in WG_VALID.into_iter().filter(|(t, _, _)| *t != 4) {
        for bad in [len - 1, len + 1] {
            assert_malformed(
                &udp4(WG_PORT, &wg(t, bad)),
                Service::WireGuard,
                &format!("type {t}, {bad} bytes"),
            );
        }
    }
}

#[test]
fn wireguard_data_is_at_least_32_bytes_padded_to_16_or_not() {
    for len in [0, 4, 16, 31] {
        assert_malformed(
            &udp4(WG_PORT, &wg_data(len)),
            Service::WireGuard,
            &format!("data of {len} bytes"),
        );
    }
    // The paper pads to 16 bytes; boringtun does not (a 56-byte ping makes 116 bytes).
    for len in (32..=1440).step_by(16).chain([33, 40, 47, 116, 1441]) {
        assert_class(
            &udp4(WG_PORT, &wg_data(len)),
            Some((Service::WireGuard, Kind::WgData)),
            &format!("data of {len} bytes"),
        );
    }
}

#[test]
fn wireguard_nonzero_reserved_bytes_are_malformed() {
    for (t, len, _) in WG_VALID {
        for i in 0..3 {
            for value in [0x01, 0x80, 0xff] {
                let mut reserved = [0u8; 3];
                reserved[i] = value;
                assert_malformed(
                    &udp4(WG_PORT, &wg_reserved(t, reserved, len)),
                    Service::WireGuard,
                    &format!("type {t} with reserved byte {} = {value:#x}", i + 1),
                );
            }
        }
    }
}

#[test]
fn wireguard_wrong_type_for_the_size_is_malformed() {
    for t in [0u8, 5, 6, 0x10, 0xff] {
        for len in [148, 92, 64, 32] {
            assert_malformed(
                &udp4(WG_PORT, &wg(t, len)),
                Service::WireGuard,
                &format!("type {t}, {len} bytes"),
            );
        }
    }
    // A known type with another known type's size.
    for (t, len) in [
        (1u8, 92usize),
        (2, 148),
        (3, 92),
        (2, 64),
        (1, 64),
        (3, 148),
    ] {
        assert_malformed(
            &udp4(WG_PORT, &wg(t, len)),
            Service::WireGuard,
            &format!("type {t}, {len} bytes"),
        );
    }
    // Types 1..3 at a data size.
    for t in 1u8..=3 {
        assert_malformed(&udp4(WG_PORT, &wg(t, 32)), Service::WireGuard, "type at 32");
    }
}

#[test]
fn wireguard_empty_and_tiny_datagrams_are_malformed() {
    for len in 0..4 {
        assert_malformed(
            &udp4(WG_PORT, &wg(1, len)),
            Service::WireGuard,
            &format!("{len} bytes"),
        );
    }
}

#[test]
fn only_wireguard_handshake_initiation_is_initial() {
    for (t, len, kind) in WG_VALID {
        let c = classified(&udp4(WG_PORT, &wg(t, len)), "valid wireguard");
        assert_eq!(c.kind, kind);
        assert_eq!(c.initial, kind == Kind::WgHandshakeInit, "type {t}");
        assert_eq!(c.spi, 0, "type {t} has no SPI");
    }
    let c = classified(&udp4(WG_PORT, &wg(1, 149)), "malformed initiation");
    assert!(!c.initial, "a malformed initiation is not initial");
}

// ---------------------------------------------------------------------------------------------
// IKE
// ---------------------------------------------------------------------------------------------

const IKE_EXCHANGES: [(u8, u8, Kind); 12] = [
    (1, IKEV1_MAIN, Kind::IkeV1Main),
    (1, IKEV1_AGGRESSIVE, Kind::IkeV1Aggressive),
    (1, IKEV1_INFORMATIONAL, Kind::IkeV1Informational),
    (1, IKEV1_QUICK, Kind::IkeV1Quick),
    (1, IKEV1_BASE, Kind::IkeV1Other),
    (1, 0, Kind::IkeV1Other),
    (2, IKEV2_SA_INIT, Kind::IkeV2SaInit),
    (2, IKEV2_AUTH, Kind::IkeV2Auth),
    (2, IKEV2_CREATE_CHILD_SA, Kind::IkeV2CreateChildSa),
    (2, IKEV2_INFORMATIONAL, Kind::IkeV2Informational),
    (2, IKEV2_SESSION_RESUME, Kind::IkeV2Other),
    (2, IKEV1_MAIN, Kind::IkeV2Other),
];

#[test]
fn ike_exchange_types_map_to_kinds_on_port_500() {
    for (version, exchange, kind) in IKE_EXCHANGES {
        for spi_zero in [true, false] {
            for len in [28, 200, 1200] {
                assert_class(
                    &udp4(IKE_PORT, &ike(version, exchange, spi_zero, len)),
                    Some((Service::Ike, kind)),
                    &format!("IKEv{version} exchange {exchange}, {len} bytes"),
                );
            }
        }
    }
    // IKEv1 exchange types 32 and 2 are not IKEv2 kinds and vice versa.
    assert_class(
        &udp4(IKE_PORT, &ike(1, IKEV2_SA_INIT, true, 100)),
        Some((Service::Ike, Kind::IkeV1Other)),
        "IKEv1 with exchange 34",
    );
}

#[test]
fn ike_initial_only_for_responder_spi_zero_main_aggressive_and_sa_init() {
    for (version, exchange, kind) in IKE_EXCHANGES {
        let opens = matches!(
            kind,
            Kind::IkeV1Main | Kind::IkeV1Aggressive | Kind::IkeV2SaInit
        );
        for spi_zero in [true, false] {
            let c = classified(
                &udp4(IKE_PORT, &ike(version, exchange, spi_zero, 300)),
                "IKE",
            );
            assert_eq!(
                c.initial,
                opens && spi_zero,
                "IKEv{version} exchange {exchange}, responder SPI zero: {spi_zero}"
            );
            let c = classified(
                &udp4(NATT_PORT, &natt_ike(&ike(version, exchange, spi_zero, 300))),
                "NAT-T IKE",
            );
            assert_eq!(
                c.initial,
                opens && spi_zero,
                "NAT-T IKEv{version} exchange {exchange}, responder SPI zero: {spi_zero}"
            );
        }
    }
}

#[test]
fn ike_responder_spi_with_only_one_nonzero_byte_is_not_initial() {
    for byte in 8..16 {
        let mut message = ike_sa_init();
        message[byte] = 1;
        let c = classified(&udp4(IKE_PORT, &message), "IKE_SA_INIT");
        assert_eq!(c.kind, Kind::IkeV2SaInit);
        assert!(!c.initial, "responder SPI byte {byte} set");
    }
    // The initiator SPI does not matter.
    let mut message = ike_sa_init();
    message[0..8].fill(0);
    assert!(classified(&udp4(IKE_PORT, &message), "zero initiator SPI").initial);
}

#[test]
fn ike_versions_other_than_1_and_2_are_malformed() {
    for major in [0u8, 3, 4, 15] {
        assert_malformed(
            &udp4(IKE_PORT, &ike(major, IKEV2_SA_INIT, true, 200)),
            Service::Ike,
            &format!("major version {major}"),
        );
    }
    assert_malformed(
        &udp4(IKE_PORT, &with_ike_version_byte(ike_sa_init(), 0x30)),
        Service::Ike,
        "version byte 0x30",
    );
}

#[test]
fn ike_minor_version_is_ignored() {
    for minor in [0u8, 1, 15] {
        assert_class(
            &udp4(
                IKE_PORT,
                &with_ike_version_byte(ike_sa_init(), 0x20 | minor),
            ),
            Some((Service::Ike, Kind::IkeV2SaInit)),
            &format!("IKEv2 minor {minor}"),
        );
        assert_class(
            &udp4(
                IKE_PORT,
                &with_ike_version_byte(ike(1, IKEV1_MAIN, true, 200), 0x10 | minor),
            ),
            Some((Service::Ike, Kind::IkeV1Main)),
            &format!("IKEv1 minor {minor}"),
        );
    }
}

#[test]
fn ike_shorter_than_its_header_is_malformed() {
    for len in 0..28 {
        assert_malformed(
            &udp4(IKE_PORT, &ike(2, IKEV2_SA_INIT, true, len)),
            Service::Ike,
            &format!("{len} bytes"),
        );
    }
    assert_class(
        &udp4(IKE_PORT, &ike(2, IKEV2_SA_INIT, true, 28)),
        Some((Service::Ike, Kind::IkeV2SaInit)),
        "exactly the header",
    );
}

#[test]
fn ike_length_field_must_equal_the_udp_payload() {
    for field in [0u32, 1, 27, 28, 199, 201, 228, 1 << 16, u32::MAX] {
        assert_malformed(
            &udp4(IKE_PORT, &with_ike_length(ike_sa_init_of(200), field)),
            Service::Ike,
            &format!("length field {field} for 200 bytes"),
        );
    }
    // The UDP payload longer than the message the header describes (trailing bytes).
    let mut payload = ike_sa_init_of(200);
    payload.extend_from_slice(&[0; 4]);
    assert_malformed(&udp4(IKE_PORT, &payload), Service::Ike, "4 trailing bytes");
}

// ---------------------------------------------------------------------------------------------
// NAT-T
// ---------------------------------------------------------------------------------------------

#[test]
fn natt_non_esp_marker_then_ike_gives_the_ike_kinds() {
    for (version, exchange, kind) in IKE_EXCHANGES {
        assert_class(
            &udp4(NATT_PORT, &natt_ike(&ike(version, exchange, false, 250))),
            Some((Service::NatT, kind)),
            &format!("NAT-T IKEv{version} exchange {exchange}"),
        );
    }
}

#[test]
fn natt_ike_follows_the_ike_rules() {
    assert_malformed(
        &udp4(NATT_PORT, &natt_ike(&ike(3, IKEV2_SA_INIT, true, 200))),
        Service::NatT,
        "version 3",
    );
    for len in 0..28 {
        assert_malformed(
            &udp4(NATT_PORT, &natt_ike(&ike(2, IKEV2_SA_INIT, true, len))),
            Service::NatT,
            &format!("{len}-byte IKE after the marker"),
        );
    }
    // The length field covers the IKE message, not the marker.
    assert_malformed(
        &udp4(
            NATT_PORT,
            &natt_ike(&with_ike_length(ike_sa_init_of(200), 204)),
        ),
        Service::NatT,
        "length field counting the marker",
    );
    assert_class(
        &udp4(NATT_PORT, &natt_ike(&ike_sa_init_of(200))),
        Some((Service::NatT, Kind::IkeV2SaInit)),
        "length field of the IKE message",
    );
}

#[test]
fn natt_single_ff_byte_is_a_keepalive() {
    let c = classified(&udp4(NATT_PORT, &natt_keepalive()), "keepalive");
    assert_eq!((c.service, c.kind), (Service::NatT, Kind::NattKeepalive));
    assert!(!c.initial);
    assert_eq!(c.spi, 0);
}

#[test]
fn natt_single_byte_other_than_ff_is_malformed() {
    for byte in 0u8..0xff {
        assert_malformed(
            &udp4(NATT_PORT, &[byte]),
            Service::NatT,
            &format!("single byte {byte:#04x}"),
        );
    }
}

#[test]
fn natt_two_and_three_byte_payloads_are_malformed() {
    for payload in [
        &[0xff, 0xff][..],
        &[0xff, 0xff, 0xff],
        &[0, 0],
        &[0, 0, 0],
        &[0x12, 0x34],
        &[0x12, 0x34, 0x56],
    ] {
        assert_malformed(
            &udp4(NATT_PORT, payload),
            Service::NatT,
            &format!("{payload:02x?}"),
        );
        // Padding after the datagram must not complete a marker or an SPI.
        assert_malformed(
            &padded(udp4(NATT_PORT, payload), 80),
            Service::NatT,
            &format!("{payload:02x?} padded"),
        );
    }
    assert_malformed(&udp4(NATT_PORT, &[]), Service::NatT, "empty");
}

#[test]
fn natt_esp_in_udp_records_the_spi() {
    for (spi, len) in [(1u32, 8usize), (0x1234_5678, 100), (u32::MAX, 1400)] {
        let c = classified(&udp4(NATT_PORT, &esp(spi, len)), "ESP-in-UDP");
        assert_eq!((c.service, c.kind), (Service::NatT, Kind::EspInUdp));
        assert_eq!(c.spi, spi);
        assert!(!c.initial);
    }
}

#[test]
fn natt_esp_in_udp_shorter_than_the_esp_header_is_malformed() {
    for len in 4..8 {
        assert_malformed(
            &udp4(NATT_PORT, &esp(0x1234_5678, len)),
            Service::NatT,
            &format!("{len} bytes"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// ESP
// ---------------------------------------------------------------------------------------------

#[test]
fn esp_records_the_spi() {
    for spi in [1u32, 0x100, 0xdead_beef, u32::MAX] {
        let c = classified(&esp4(spi), "ESP");
        assert_eq!((c.service, c.kind, c.spi), (Service::Esp, Kind::Esp, spi));
        assert!(!c.initial);
        let c = classified(&esp6(spi), "ESP over IPv6");
        assert_eq!((c.service, c.kind, c.spi), (Service::Esp, Kind::Esp, spi));
    }
}

#[test]
fn esp_with_spi_zero_is_malformed() {
    let c = classified(&esp4(0), "ESP SPI 0");
    assert_eq!(
        (c.service, c.kind, c.spi),
        (Service::Esp, Kind::Malformed, 0)
    );
    assert_malformed(&esp6(0), Service::Esp, "ESP SPI 0 over IPv6");
}

#[test]
fn esp_shorter_than_its_header_is_malformed() {
    for len in 0..8 {
        assert_malformed(
            &ip4_proto(SRC4, IPPROTO_ESP, &esp(0xdead_beef, len)),
            Service::Esp,
            &format!("{len} bytes of ESP"),
        );
    }
    assert_class(
        &ip4_proto(SRC4, IPPROTO_ESP, &esp(0xdead_beef, 8)),
        Some((Service::Esp, Kind::Esp)),
        "exactly the header",
    );
}

#[test]
fn esp_ignores_udp_ports() {
    // ESP has no ports; custom UDP ports do not affect it.
    let ports = Ports {
        wireguard: 1,
        ike: 2,
        natt: 3,
    };
    let c = classify(&esp4(7)[..], &ports).expect("ESP on custom ports");
    assert_eq!((c.service, c.kind, c.spi), (Service::Esp, Kind::Esp, 7));
}

// ---------------------------------------------------------------------------------------------
// Link and network layers
// ---------------------------------------------------------------------------------------------

#[test]
fn single_vlan_tag_is_skipped() {
    for tpid in [0x8100u16, 0x88a8] {
        assert_class(
            &vlan_tpid(tpid, WG_PORT, &wg_init()),
            Some((Service::WireGuard, Kind::WgHandshakeInit)),
            &format!("TPID {tpid:#06x}"),
        );
    }
    assert_class(
        &vlan6(IKE_PORT, &ike_sa_init()),
        Some((Service::Ike, Kind::IkeV2SaInit)),
        "VLAN IPv6",
    );
}

#[test]
fn double_vlan_tags_are_skipped_with_either_outer_tpid() {
    for outer in [0x88a8u16, 0x8100] {
        let c = classified(&qinq(outer, WG_PORT, &wg_init()), "Q-in-Q");
        assert_eq!(
            (c.service, c.kind),
            (Service::WireGuard, Kind::WgHandshakeInit)
        );
        assert_eq!(c.source.octets(), mapped(SRC4), "outer TPID {outer:#06x}");
        assert_malformed(
            &qinq(outer, WG_PORT, &wg(1, 147)),
            Service::WireGuard,
            &format!("Q-in-Q malformed, outer TPID {outer:#06x}"),
        );
    }
}

#[test]
fn third_vlan_tag_is_not_parsed() {
    assert_class(&triple_vlan(WG_PORT, &wg_init()), None, "three tags");
}

#[test]
fn ipv4_source_is_recorded_as_ipv4_mapped_ipv6() {
    let c = classified(&udp4_from(OTHER4, WG_PORT, &wg_init()), "IPv4");
    let expected = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 7];
    assert_eq!(c.source.octets(), expected);
    assert_eq!(
        std::net::Ipv6Addr::from(c.source.octets()).to_ipv4_mapped(),
        Some(std::net::Ipv4Addr::from(OTHER4))
    );
    let c = classified(&esp4_from(OTHER4, 9), "ESP");
    assert_eq!(c.source.octets(), expected);
    let c = classified(
        &ipv4_fragment(OTHER4, IPPROTO_UDP, 10, false, &[0; 16]),
        "fragment",
    );
    assert_eq!(
        c.source.octets(),
        expected,
        "fragments carry the source too"
    );
}

#[test]
fn ipv6_source_address_is_recorded_as_is() {
    let c = classified(&udp6_from(OTHER6, WG_PORT, &wg_init()), "IPv6");
    assert_eq!(
        (c.service, c.kind),
        (Service::WireGuard, Kind::WgHandshakeInit)
    );
    assert_eq!(c.source.octets(), OTHER6);
    assert!(c.initial);
    let c = classified(&esp6(5), "ESP over IPv6");
    assert_eq!(c.source.octets(), SRC6);
}

#[test]
fn ipv6_first_fragment_is_classified_by_port() {
    let c = classified(
        &udp6_first_fragment(WG_PORT, &wg_init(), 64),
        "first fragment",
    );
    assert_eq!(
        (c.service, c.kind),
        (Service::WireGuard, Kind::WgHandshakeInit)
    );
    assert!(c.initial);
    assert_eq!(c.source.octets(), SRC6);
    assert_class(
        &udp6_first_fragment(NATT_PORT, &esp(0x10, 1400), 8),
        Some((Service::NatT, Kind::EspInUdp)),
        "first fragment of ESP-in-UDP with the ESP header",
    );
}

#[test]
fn ipv6_later_fragment_is_a_fragment() {
    for (offset, more) in [(1u16, true), (185, false), (8191, false)] {
        let c = classified(
            &ipv6_fragment(
                SRC6,
                IPPROTO_UDP,
                offset,
                more,
                &udp_datagram(WG_PORT, &wg_init()),
            ),
            "later fragment",
        );
        assert_eq!((c.service, c.kind), (Service::Fragment, Kind::Fragment));
        assert_eq!(c.source.octets(), SRC6);
        assert!(!c.initial);
    }
    assert_class(
        &ipv6_fragment(SRC6, IPPROTO_ESP, 20, false, &esp(0, 40)),
        Some((Service::Fragment, Kind::Fragment)),
        "later ESP fragment",
    );
    assert_class(
        &ipv6_fragment(SRC6, IPPROTO_TCP, 20, false, &[0; 40]),
        None,
        "later TCP fragment",
    );
}

#[test]
fn ipv6_extension_headers_other_than_fragment_are_not_parsed() {
    let mut rest = vec![IPPROTO_UDP, 0, 1, 4, 0, 0, 0, 0];
    rest.extend_from_slice(&udp_datagram(WG_PORT, &wg_init()));
    assert_class(&raw_ipv6(SRC6, IPPROTO_HOPOPTS, &rest), None, "hop-by-hop");
}

#[test]
fn ipv4_header_options_ihl_6_to_15_are_skipped() {
    for ihl in 5u8..=15 {
        let c = classified(&udp4_with_options(ihl, WG_PORT, &wg_init()), "options");
        assert_eq!(
            (c.service, c.kind),
            (Service::WireGuard, Kind::WgHandshakeInit),
            "IHL {ihl}"
        );
        assert_eq!(c.source.octets(), mapped(SRC4));
        assert_malformed(
            &udp4_with_options(ihl, WG_PORT, &wg(1, 150)),
            Service::WireGuard,
            &format!("IHL {ihl} malformed"),
        );
        assert_class(
            &udp4_with_options(ihl, IKE_PORT, &ike_sa_init()),
            Some((Service::Ike, Kind::IkeV2SaInit)),
            &format!("IHL {ihl} IKE"),
        );
        assert_class(
            &raw_ipv4(SRC4, ihl, 0, IPPROTO_ESP, &esp(3, 16)),
            Some((Service::Esp, Kind::Esp)),
            &format!("IHL {ihl} ESP"),
        );
    }
}

#[test]
fn ipv4_header_length_below_20_is_not_vpn() {
    for ihl in 0u8..5 {
        assert_class(
            &raw_ipv4(
                SRC4,
                ihl,
                0,
                IPPROTO_UDP,
                &udp_datagram(WG_PORT, &wg_init()),
            ),
            None,
            &format!("IHL {ihl}"),
        );
    }
}

#[test]
fn ipv4_later_fragment_is_a_fragment_even_if_it_looks_like_wireguard() {
    let looks_like_wg = udp_datagram(WG_PORT, &wg_init());
    for (offset, more) in [(1u16, true), (1, false), (185, false), (0x1fff, true)] {
        let c = classified(
            &ipv4_fragment(SRC4, IPPROTO_UDP, offset, more, &looks_like_wg),
            "later fragment",
        );
        assert_eq!(
            (c.service, c.kind),
            (Service::Fragment, Kind::Fragment),
            "offset {offset}, MF {more}"
        );
        assert!(!c.initial, "a fragment is never initial");
        assert_eq!(c.spi, 0);
    }
    // Also with DF set (contradictory, but the offset decides).
    assert_class(
        &raw_ipv4(SRC4, 5, 0x4000 | 10, IPPROTO_UDP, &looks_like_wg),
        Some((Service::Fragment, Kind::Fragment)),
        "DF and an offset",
    );
}

#[test]
fn ipv4_later_fragment_of_esp_is_a_fragment_and_of_tcp_is_not_vpn() {
    assert_class(
        &ipv4_fragment(SRC4, IPPROTO_ESP, 50, false, &esp(0xabc, 40)),
        Some((Service::Fragment, Kind::Fragment)),
        "ESP",
    );
    assert_class(
        &ipv4_fragment(SRC4, IPPROTO_TCP, 50, false, &[0; 40]),
        None,
        "TCP",
    );
    assert_class(&ipv4_fragment(SRC4, 1, 50, false, &[0; 40]), None, "ICMP");
}

#[test]
fn ipv4_first_fragment_with_udp_length_beyond_the_frame_is_classified() {
    let frame = udp4_first_fragment(WG_PORT, &wg_init(), 64);
    assert!(frame.len() < UDP4_OFFSET + 8 + 148, "the frame is cut");
    let c = classified(&frame, "first fragment");
    assert_eq!(
        (c.service, c.kind),
        (Service::WireGuard, Kind::WgHandshakeInit)
    );
    assert!(c.initial);
    // The same bytes without MF are a datagram cut short.
    let mut unfragmented = frame.clone();
    unfragmented[ETH_LEN + 6] = 0;
    assert_malformed(&unfragmented, Service::WireGuard, "without MF");
    assert_class(
        &udp4_first_fragment(IKE_PORT, &ike(2, IKEV2_SA_INIT, true, 1400), 100),
        Some((Service::Ike, Kind::IkeV2SaInit)),
        "IKE first fragment",
    );
}

#[test]
fn unfragmented_udp_length_beyond_the_frame_is_malformed() {
    let frame = udp4(WG_PORT, &wg_init());
    for len in [157u16, 200, 0xffff] {
        assert_malformed(
            &with_udp_length(frame.clone(), UDP4_OFFSET, len),
            Service::WireGuard,
            &format!("UDP length {len}"),
        );
    }
    assert_malformed(
        &with_udp_length(udp6(IKE_PORT, &ike_sa_init()), UDP6_OFFSET, 8 + 301),
        Service::Ike,
        "IPv6",
    );
}

#[test]
fn udp_length_below_the_header_size_is_malformed() {
    for len in 0u16..8 {
        assert_malformed(
            &with_udp_length(udp4(WG_PORT, &wg_init()), UDP4_OFFSET, len),
            Service::WireGuard,
            &format!("UDP length {len}"),
        );
        assert_malformed(
            &with_udp_length(udp4(NATT_PORT, &natt_keepalive()), UDP4_OFFSET, len),
            Service::NatT,
            &format!("NAT-T UDP length {len}"),
        );
    }
}

#[test]
fn bytes_after_the_udp_length_are_ignored() {
    // Ethernet padding of short frames, or any trailer.
    for (port, payload, kind, service) in [
        (
            NATT_PORT,
            natt_keepalive(),
            Kind::NattKeepalive,
            Service::NatT,
        ),
        (WG_PORT, wg_data(32), Kind::WgData, Service::WireGuard),
        (
            WG_PORT,
            wg_init(),
            Kind::WgHandshakeInit,
            Service::WireGuard,
        ),
        (IKE_PORT, ike_sa_init(), Kind::IkeV2SaInit, Service::Ike),
    ] {
        let frame = udp4(port, &payload);
        for extra in [0usize, 1, 18, 64] {
            assert_class(
                &padded(frame.clone(), frame.len().max(60) + extra),
                Some((service, kind)),
                &format!("{kind:?} with {extra} trailing bytes"),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Truncations
// ---------------------------------------------------------------------------------------------

#[test]
fn frames_shorter_than_an_ethernet_header_are_not_vpn() {
    let frame = udp4(WG_PORT, &wg_init());
    for len in 0..ETH_LEN {
        assert_class(&frame[..len], None, &format!("{len} bytes"));
    }
    assert_class(&[], None, "empty frame");
}

/// Cuts `frame` at every length: before the UDP destination port is fully known (`port_end`,
/// the end of the UDP header) it is not VPN traffic, after it malformed.
fn assert_truncations(frame: &[u8], udp_end: usize, service: Service, what: &str) {
    assert!(
        class(frame).is_some_and(|(_, k)| k != Kind::Malformed),
        "{what} whole"
    );
    for len in 0..udp_end {
        assert_class(&frame[..len], None, &format!("{what} cut at {len}"));
    }
    for len in udp_end..frame.len() {
        assert_malformed(&frame[..len], service, &format!("{what} cut at {len}"));
    }
}

#[test]
fn truncation_before_the_udp_header_ends_is_not_vpn_and_after_it_is_malformed() {
    assert_truncations(
        &udp4(WG_PORT, &wg_init()),
        UDP4_OFFSET + 8,
        Service::WireGuard,
        "IPv4 wireguard",
    );
    assert_truncations(
        &udp6(WG_PORT, &wg_init()),
        UDP6_OFFSET + 8,
        Service::WireGuard,
        "IPv6 wireguard",
    );
    assert_truncations(
        &vlan(IKE_PORT, &ike_sa_init()),
        UDP4_OFFSET + 4 + 8,
        Service::Ike,
        "VLAN IKE",
    );
    assert_truncations(
        &qinq(0x88a8, NATT_PORT, &esp(0x44, 64)),
        UDP4_OFFSET + 8 + 8,
        Service::NatT,
        "Q-in-Q ESP-in-UDP",
    );
    assert_truncations(
        &udp4_with_options(15, NATT_PORT, &natt_ike(&ike_sa_init())),
        ETH_LEN + 60 + 8,
        Service::NatT,
        "IHL 15 NAT-T IKE",
    );
    // The fragment header is cut: not VPN (the length field is not consulted).
    let frag = udp6_first_fragment(WG_PORT, &wg_init(), 148);
    for len in 0..UDP6_OFFSET + 8 + 8 {
        assert_class(&frag[..len], None, &format!("IPv6 fragment cut at {len}"));
    }
}

#[test]
fn truncated_esp_is_malformed_once_the_ip_header_is_complete() {
    let frame = esp4(0x1234);
    for len in 0..UDP4_OFFSET {
        assert_class(&frame[..len], None, &format!("ESP cut at {len}"));
    }
    for len in UDP4_OFFSET..UDP4_OFFSET + 8 {
        assert_malformed(&frame[..len], Service::Esp, &format!("ESP cut at {len}"));
    }
    for len in UDP4_OFFSET + 8..=frame.len() {
        assert_class(
            &frame[..len],
            Some((Service::Esp, Kind::Esp)),
            &format!("ESP cut at {len} (after the header)"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Not VPN traffic
// ---------------------------------------------------------------------------------------------

#[test]
fn non_vpn_traffic_is_not_classified() {
    for (what, frame) in [
        ("TCP to 51820", tcp4(WG_PORT, &wg_init())),
        ("TCP to 500", tcp4(IKE_PORT, &ike_sa_init())),
        ("TCP to 4500", tcp4(NATT_PORT, &[0xff])),
        ("ICMP", icmp4_echo()),
        ("ARP", arp_request()),
        ("IPv6 ND", icmpv6_neighbor_solicitation()),
        ("GRE", ip4_proto(SRC4, IPPROTO_GRE, &[0; 40])),
        ("IPv6 TCP", ip6_proto(SRC6, IPPROTO_TCP, &[0; 40])),
        ("LLDP", ethernet(0x88cc, &[0; 46])),
        ("UDP 53", udp4(53, &wg_init())),
        ("UDP 53 over IPv6", udp6(53, &wg_init())),
        ("UDP 51821", udp4(51821, &wg_init())),
        ("UDP from 51820", udp4_ports(WG_PORT, SPORT, &wg_init())),
        (
            "UDP from 500 to 4501",
            udp4_ports(IKE_PORT, 4501, &ike_sa_init()),
        ),
    ] {
        assert_class(&frame, None, what);
    }
}

#[test]
fn no_udp_port_outside_the_three_is_classified() {
    let payload = wg_init();
    for port in 0..=u16::MAX {
        let expected = match port {
            WG_PORT => Some((Service::WireGuard, Kind::WgHandshakeInit)),
            IKE_PORT => Some((Service::Ike, Kind::Malformed)),
            NATT_PORT => Some((Service::NatT, Kind::EspInUdp)),
            _ => None,
        };
        assert_class(&udp4(port, &payload), expected, &format!("port {port}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Custom ports
// ---------------------------------------------------------------------------------------------

#[test]
fn custom_ports_replace_the_defaults() {
    let ports = Ports {
        wireguard: 51821,
        ..Ports::default()
    };
    let at = |frame: Vec<u8>| classify(&frame[..], &ports).map(|c| (c.service, c.kind));
    assert_eq!(
        at(udp4(51821, &wg_init())),
        Some((Service::WireGuard, Kind::WgHandshakeInit))
    );
    assert_eq!(
        at(udp4(WG_PORT, &wg_init())),
        None,
        "51820 is no longer wireguard"
    );
    assert_eq!(
        at(udp4(IKE_PORT, &ike_sa_init())),
        Some((Service::Ike, Kind::IkeV2SaInit)),
        "IKE keeps its default"
    );

    let ports = Ports {
        wireguard: 443,
        ike: 1500,
        natt: 14500,
    };
    let at = |frame: Vec<u8>| classify(&frame[..], &ports).map(|c| (c.service, c.kind));
    assert_eq!(
        at(udp4(443, &wg(1, 149))),
        Some((Service::WireGuard, Kind::Malformed))
    );
    assert_eq!(
        at(udp4(1500, &ike(1, IKEV1_MAIN, true, 100))),
        Some((Service::Ike, Kind::IkeV1Main))
    );
    assert_eq!(
        at(udp4(14500, &natt_keepalive())),
        Some((Service::NatT, Kind::NattKeepalive))
    );
    assert_eq!(at(udp4(WG_PORT, &wg_init())), None);
    assert_eq!(at(udp4(IKE_PORT, &ike_sa_init())), None);
    assert_eq!(at(udp4(NATT_PORT, &natt_keepalive())), None);
}

#[test]
fn default_ports_are_51820_500_and_4500() {
    assert_eq!(
        Ports::default(),
        Ports {
            wireguard: 51820,
            ike: 500,
            natt: 4500
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Token bucket
// ---------------------------------------------------------------------------------------------

const COST: u64 = 1_000_000_000;
const BURST: u64 = 3 * COST;

#[test]
fn token_bucket_allows_a_burst_then_refuses() {
    // The first message creates the bucket and is charged.
    let mut state = rate::new_bucket(10, COST, BURST);
    assert_eq!(state.credit_ns, BURST - COST);
    assert_eq!(state.last_ns, 10);
    assert!(rate::take(&mut state, 10, COST, BURST), "second message");
    assert!(rate::take(&mut state, 10, COST, BURST), "third message");
    assert!(!rate::take(&mut state, 10, COST, BURST), "fourth message");
    assert!(!rate::take(&mut state, 11, COST, BURST), "fifth message");
    assert_eq!(state.credit_ns, 1, "a refusal charges nothing");
}

#[test]
fn token_bucket_refills_with_time() {
    let mut state = rate::new_bucket(0, COST, BURST);
    assert!(rate::take(&mut state, 0, COST, BURST));
    assert!(rate::take(&mut state, 0, COST, BURST));
    assert!(!rate::take(&mut state, 0, COST, BURST));
    assert!(
        !rate::take(&mut state, COST - 1, COST, BURST),
        "one ns short"
    );
    assert!(
        rate::take(&mut state, COST, COST, BURST),
        "one token after 1 s"
    );
    assert!(!rate::take(&mut state, COST, COST, BURST));
    assert!(rate::take(&mut state, 3 * COST, COST, BURST), "after 2 s");
    assert!(
        rate::take(&mut state, 3 * COST, COST, BURST),
        "second token after 2 s"
    );
    assert!(!rate::take(&mut state, 3 * COST, COST, BURST));
}

#[test]
fn token_bucket_credit_is_capped_at_the_burst() {
    let mut state = rate::new_bucket(0, COST, BURST);
    // An hour of idling gives no more than the burst.
    let later = 3600 * COST;
    for i in 0..3 {
        assert!(rate::take(&mut state, later, COST, BURST), "message {i}");
    }
    assert!(
        !rate::take(&mut state, later, COST, BURST),
        "beyond the burst"
    );
    // Near u64::MAX the arithmetic saturates instead of wrapping.
    let mut state = RateState {
        credit_ns: u64::MAX - 5,
        last_ns: 0,
    };
    assert!(rate::take(&mut state, u64::MAX, COST, BURST));
    assert_eq!(state.credit_ns, BURST - COST);
}

#[test]
fn token_bucket_does_not_refill_when_the_clock_goes_back() {
    let mut state = rate::new_bucket(5 * COST, COST, BURST);
    assert!(rate::take(&mut state, 5 * COST, COST, BURST));
    assert!(rate::take(&mut state, 5 * COST, COST, BURST));
    assert!(!rate::take(&mut state, 1, COST, BURST));
    assert_eq!(state.credit_ns, 0);
}

#[test]
fn token_bucket_with_burst_below_cost_refuses_after_the_first() {
    // A new source's first message is always let through (the bucket is created for it).
    let mut state = rate::new_bucket(0, COST, COST / 2);
    assert_eq!(state.credit_ns, 0);
    assert!(!rate::take(&mut state, 10 * COST, COST, COST / 2));
}
