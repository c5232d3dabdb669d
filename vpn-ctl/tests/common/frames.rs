//! Frame generators for the property tests of the classifier: the host rules
//! (`vpn-common/tests/fuzz_classify.rs`) and the loaded XDP program against them
//! (`vpn-ctl/tests/fuzz_xdp.rs`). Both include this file beside `common/mod.rs`.
//!
//! A frame is built layer by layer from choices that matter to the rules (0 to 3 VLAN tags
//! of either TPID, IPv4 with any header length and fragment field, IPv6 with or without a
//! fragment header, UDP to the VPN ports or others with a right or an edge length field,
//! ESP, other protocols; WireGuard, IKE, NAT-T and ESP payloads of right and wrong sizes),
//! then mutated (`vpn_ctl_tests::mutate`: bit flips, edge bytes and fields, insertions,
//! deletions, truncations).

use proptest::prelude::*;
use vpn_ctl_tests::mutate;

use crate::common::*;

/// What follows the IP header(s).
#[derive(Debug, Clone)]
pub enum Transport {
    /// UDP to `port`; `length`: the UDP length field, `None` for the right one.
    Udp {
        port: u16,
        payload: Vec<u8>,
        length: Option<u16>,
    },
    /// `protocol` (ESP, or another) with these bytes.
    Ip(u8, Vec<u8>),
}

/// The network layer.
#[derive(Debug, Clone)]
pub enum Network {
    V4 {
        src: [u8; 4],
        ihl: u8,
        flags_fragment: u16,
    },
    /// `fragment`: a fragment header with (offset in 8-byte units, more fragments).
    V6 {
        src: [u8; 16],
        fragment: Option<(u16, bool)>,
    },
    /// Another ethertype, with these bytes.
    Other(u16, Vec<u8>),
}

/// A frame before mutation.
#[derive(Debug, Clone)]
pub struct Layers {
    /// VLAN TPIDs, outermost first.
    pub tags: Vec<u16>,
    pub network: Network,
    pub transport: Transport,
}

impl Layers {
    pub fn build(&self) -> Vec<u8> {
        let l4 = match &self.transport {
            Transport::Udp {
                port,
                payload,
                length,
            } => {
                let right = (UDP_LEN + payload.len()) as u16;
                udp_datagram_with_length(*port, payload, length.unwrap_or(right))
            }
            Transport::Ip(_, bytes) => bytes.clone(),
        };
        let protocol = match &self.transport {
            Transport::Udp { .. } => IPPROTO_UDP,
            Transport::Ip(p, _) => *p,
        };
        let untagged = match &self.network {
            Network::V4 {
                src,
                ihl,
                flags_fragment,
            } => raw_ipv4(*src, *ihl, *flags_fragment, protocol, &l4),
            Network::V6 {
                src,
                fragment: None,
            } => raw_ipv6(*src, protocol, &l4),
            Network::V6 {
                src,
                fragment: Some((offset, more)),
            } => ipv6_fragment(*src, protocol, *offset, *more, &l4),
            Network::Other(ethertype, bytes) => ethernet(*ethertype, bytes),
        };
        // Tags go between the MAC addresses and the ethertype.
        let mut frame = untagged[..12].to_vec();
        for (i, tpid) in self.tags.iter().enumerate() {
            frame.extend_from_slice(&tpid.to_be_bytes());
            frame.extend_from_slice(&(100 + i as u16).to_be_bytes());
        }
        frame.extend_from_slice(&untagged[12..]);
        frame
    }
}

fn wireguard_payload() -> impl Strategy<Value = Vec<u8>> {
    let len = prop_oneof![
        prop::sample::select(vec![
            0usize, 1, 3, 4, 31, 32, 33, 63, 64, 65, 91, 92, 93, 147, 148, 149
        ]),
        0usize..300,
    ];
    prop_oneof![
        (1u8..=5, len.clone()).prop_map(|(t, len)| wg(t, len.max(4))),
        (1u8..=4, any::<[u8; 3]>(), len).prop_map(|(t, r, len)| wg_reserved(t, r, len.max(4))),
    ]
}

fn ike_message() -> impl Strategy<Value = Vec<u8>> {
    let exchange = prop_oneof![
        prop::sample::select(vec![1u8, 2, 4, 5, 32, 33, 34, 35, 36, 37, 38]),
        any::<u8>(),
    ];
    (
        prop::sample::select(vec![0u8, 1, 2, 3, 15]),
        exchange,
        any::<bool>(),
        prop::sample::select(vec![20usize, 27, 28, 29, 60, 300]),
        prop::option::weighted(
            0.2,
            prop::sample::select(vec![0u32, 27, 28, 29, 301, u32::MAX]),
        ),
    )
        .prop_map(|(major, exchange, initial, len, length_field)| {
            let message = ike(major, exchange, initial, len.max(28));
            let message = match length_field {
                Some(l) => with_ike_length(message, l),
                None => message,
            };
            if len < 28 {
                message[..len].to_vec()
            } else {
                message
            }
        })
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => wireguard_payload(),
        3 => ike_message(),
        2 => ike_message().prop_map(|m| natt_ike(&m)),
        1 => Just(natt_keepalive()),
        1 => Just(vec![0xfe]),
        2 => (prop::sample::select(vec![0u32, 1, 0x1234, u32::MAX]), 0usize..80)
            .prop_map(|(spi, len)| esp(spi, len)),
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ]
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![
        6 => prop::sample::select(vec![WG_PORT, IKE_PORT, NATT_PORT]),
        1 => prop::sample::select(vec![53u16, 0, 4501, 51821, 65535]),
        1 => any::<u16>(),
    ]
}

fn transport() -> impl Strategy<Value = Transport> {
    let length = prop::option::weighted(
        0.2,
        prop_oneof![
            prop::sample::select(vec![0u16, 1, 7, 8, 9, 36, 40, 100, 156, 65535]),
            any::<u16>(),
        ],
    );
    prop_oneof![
        6 => (port(), payload(), length).prop_map(|(port, payload, length)| Transport::Udp {
            port,
            payload,
            length
        }),
        2 => (prop::sample::select(vec![0u32, 1, 0xdead_beef, u32::MAX]), 0usize..64)
            .prop_map(|(spi, len)| Transport::Ip(IPPROTO_ESP, esp(spi, len))),
        1 => (0usize..8).prop_map(|n| Transport::Ip(IPPROTO_ESP, vec![0xab; n])),
        1 => (
            prop::sample::select(vec![IPPROTO_TCP, IPPROTO_GRE, IPPROTO_HOPOPTS, IPPROTO_FRAGMENT, 1, 58]),
            prop::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(p, bytes)| Transport::Ip(p, bytes)),
    ]
}

fn network() -> impl Strategy<Value = Network> {
    let src4 = prop_oneof![Just(SRC4), Just(OTHER4), any::<[u8; 4]>()];
    let src6 = prop_oneof![
        Just(SRC6),
        Just(OTHER6),
        Just(mapped(SRC4)),
        any::<[u8; 16]>()
    ];
    let ihl = prop_oneof![8 => Just(5u8), 2 => 6u8..=15, 1 => 0u8..5];
    let flags = prop_oneof![
        6 => Just(0u16),
        1 => Just(0x4000u16),
        1 => Just(0x2000u16),
        1 => prop::sample::select(vec![1u16, 0x2001, 0x1fff, 0x3fff, 0x8000]),
        1 => any::<u16>(),
    ];
    prop_oneof![
        6 => (src4, ihl, flags).prop_map(|(src, ihl, flags_fragment)| Network::V4 {
            src,
            ihl,
            flags_fragment
        }),
        3 => (
            src6,
            prop::option::weighted(0.3, (prop_oneof![Just(0u16), 1u16..0x1fff], any::<bool>()))
        )
            .prop_map(|(src, fragment)| Network::V6 { src, fragment }),
        1 => (
            prop::sample::select(vec![0x0806u16, 0x8847, 0x88cc, 0x0800, 0x86dd, 0x8100]),
            prop::collection::vec(any::<u8>(), 0..60)
        )
            .prop_map(|(t, b)| Network::Other(t, b)),
    ]
}

/// Frames as [`Layers`] build them.
pub fn layered_frame() -> impl Strategy<Value = Vec<u8>> {
    let tags = prop_oneof![
        6 => Just(vec![]),
        2 => prop::collection::vec(prop::sample::select(vec![ETH_P_8021Q, ETH_P_8021AD]), 1..=2),
        1 => prop::collection::vec(prop::sample::select(vec![ETH_P_8021Q, ETH_P_8021AD]), 3..=3),
    ];
    (tags, network(), transport()).prop_map(|(tags, network, transport)| {
        Layers {
            tags,
            network,
            transport,
        }
        .build()
    })
}

pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

/// Built frames, mutated or not, the table's frames mutated, and random bytes.
pub fn frame() -> impl Strategy<Value = Vec<u8>> {
    let table: Vec<Vec<u8>> = cases().into_iter().map(|c| c.frame).collect();
    let from_table = (prop::sample::select(table.clone()), mutate::mutations(4));
    let table = std::sync::Arc::new(table);
    prop_oneof![
        5 => layered_frame().prop_map(|f| (f, Vec::new())),
        3 => (layered_frame(), mutate::mutations(3)),
        2 => from_table,
        1 => prop::collection::vec(any::<u8>(), 0..120).prop_map(|f| (f, Vec::new())),
    ]
    .prop_map(
        move |(frame, mutations): (Vec<u8>, Vec<mutate::Mutation>)| {
            let mut frame = frame;
            for m in &mutations {
                mutate::apply(
                    &mut frame,
                    m,
                    &table,
                    &[b"\x81\x00", b"\x88\xa8", b"\x00\x00\x00\x00", b"\xff"],
                );
            }
            frame
        },
    )
}
