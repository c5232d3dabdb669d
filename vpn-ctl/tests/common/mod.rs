//! Packet builders shared by the host tests of the classification rules
//! (`vpn-common/tests/classify.rs`, which includes this file with `#[path]`) and the kernel
//! tests of the loaded XDP program (`vpn-ctl/tests/xdp_test_run.rs`).
//!
//! Payload builders (`wg`, `ike`, `natt_ike`, `esp`) return the bytes after the UDP header (or
//! after the IP header for ESP). Frame builders return whole Ethernet frames. Regular frames
//! are built with etherparse's `PacketBuilder`; what it cannot express (IPv4 options, IPv4 and
//! IPv6 fragments, wrong length fields, truncations) is built by hand.
//!
//! [`cases`] is one table of frames and the classification the rules must give them; the host
//! tests check it against `vpn_common::classify`, the kernel tests against the program's
//! verdicts and counters, so both sides are held to the same expectations.
#![allow(dead_code)]

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv6Type, IpNumber, PacketBuilder, VlanId,
};
use vpn_common::{Kind, Service};

pub const MAC_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const MAC_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// The default source of every IPv4 frame (TEST-NET-1).
pub const SRC4: [u8; 4] = [192, 0, 2, 10];
/// Another IPv4 source (TEST-NET-2).
pub const OTHER4: [u8; 4] = [198, 51, 100, 7];
/// The router's WAN address (TEST-NET-3).
pub const DST4: [u8; 4] = [203, 0, 113, 1];
/// The default source of every IPv6 frame: 2001:db8:1::10.
pub const SRC6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
/// Another IPv6 source: 2001:db8:2::20.
pub const OTHER6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20,
];
/// 2001:db8:ffff::1.
pub const DST6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
];

/// The UDP source port of every frame (an ephemeral port, not a VPN port).
pub const SPORT: u16 = 40000;
pub const WG_PORT: u16 = 51820;
pub const IKE_PORT: u16 = 500;
pub const NATT_PORT: u16 = 4500;

pub const ETH_LEN: usize = 14;
pub const IPV4_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;
pub const UDP_LEN: usize = 8;

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_GRE: u8 = 47;
pub const IPPROTO_ESP: u8 = 50;
pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_FRAGMENT: u8 = 44;

/// IKEv1 exchange types (RFC 2408 §3.1, RFC 2409 §5.5).
pub const IKEV1_BASE: u8 = 1;
pub const IKEV1_MAIN: u8 = 2;
pub const IKEV1_AGGRESSIVE: u8 = 4;
pub const IKEV1_INFORMATIONAL: u8 = 5;
pub const IKEV1_QUICK: u8 = 32;
/// IKEv2 exchange types (RFC 7296 §3.1).
pub const IKEV2_SA_INIT: u8 = 34;
pub const IKEV2_AUTH: u8 = 35;
pub const IKEV2_CREATE_CHILD_SA: u8 = 36;
pub const IKEV2_INFORMATIONAL: u8 = 37;
/// IKE_SESSION_RESUME (RFC 5723).
pub const IKEV2_SESSION_RESUME: u8 = 38;

/// `a.b.c.d` as the IPv4-mapped IPv6 address `::ffff:a.b.c.d`.
pub fn mapped(v4: [u8; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[10] = 0xff;
    out[11] = 0xff;
    out[12..].copy_from_slice(&v4);
    out
}

// ---------------------------------------------------------------------------------------------
// Payloads: the generic builders (`wg`, `ike`, `natt_ike`, `natt_keepalive`, `esp`, `filler`,
// ...) are the test bed's, so every test, the benchmark and the demo send the same messages.
// ---------------------------------------------------------------------------------------------

pub use vpn_ctl_tests::payload::*;

pub fn wg_init() -> Vec<u8> {
    wg(1, 148)
}

pub fn wg_response() -> Vec<u8> {
    wg(2, 92)
}

pub fn wg_cookie() -> Vec<u8> {
    wg(3, 64)
}

/// Transport data of `len` bytes (32 is a keepalive).
pub fn wg_data(len: usize) -> Vec<u8> {
    wg(4, len)
}

/// An IKEv2 IKE_SA_INIT request of 300 bytes, the usual session opener.
pub fn ike_sa_init() -> Vec<u8> {
    ike(2, IKEV2_SA_INIT, true, 300)
}

// ---------------------------------------------------------------------------------------------
// Frames built with etherparse
// ---------------------------------------------------------------------------------------------

fn vlan_id(id: u16) -> VlanId {
    VlanId::try_new(id).expect("VLAN id below 4096")
}

/// Ethernet / IPv4 / UDP from [`SRC4`] to `dst_port`.
pub fn udp4(dst_port: u16, payload: &[u8]) -> Vec<u8> {
    udp4_from(SRC4, dst_port, payload)
}

/// Ethernet / IPv4 / UDP from `src` to `dst_port`.
pub fn udp4_from(src: [u8; 4], dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ipv4(src, DST4, 64)
        .udp(SPORT, dst_port)
        .write(&mut out, payload)
        .expect("etherparse writes an IPv4/UDP frame");
    out
}

/// Ethernet / IPv4 / UDP with explicit source and destination ports.
pub fn udp4_ports(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ipv4(SRC4, DST4, 64)
        .udp(src_port, dst_port)
        .write(&mut out, payload)
        .expect("etherparse writes an IPv4/UDP frame");
    out
}

/// Ethernet / IPv6 / UDP from [`SRC6`] to `dst_port`.
pub fn udp6(dst_port: u16, payload: &[u8]) -> Vec<u8> {
    udp6_from(SRC6, dst_port, payload)
}

/// Ethernet / IPv6 / UDP from `src` to `dst_port`.
pub fn udp6_from(src: [u8; 16], dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ipv6(src, DST6, 64)
        .udp(SPORT, dst_port)
        .write(&mut out, payload)
        .expect("etherparse writes an IPv6/UDP frame");
    out
}

/// Ethernet / 802.1Q (VLAN 100) / IPv4 / UDP.
pub fn vlan(dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .single_vlan(vlan_id(100))
        .ipv4(SRC4, DST4, 64)
        .udp(SPORT, dst_port)
        .write(&mut out, payload)
        .expect("etherparse writes a VLAN frame");
    out
}

/// Ethernet / 802.1Q (VLAN 100) / IPv6 / UDP.
pub fn vlan6(dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .single_vlan(vlan_id(100))
        .ipv6(SRC6, DST6, 64)
        .udp(SPORT, dst_port)
        .write(&mut out, payload)
        .expect("etherparse writes a VLAN IPv6 frame");
    out
}

/// A single VLAN tag whose TPID is `tpid` (0x8100 or 0x88a8), then IPv4 / UDP.
pub fn vlan_tpid(tpid: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vlan(dst_port, payload);
    out[12..14].copy_from_slice(&tpid.to_be_bytes());
    out
}

/// Two VLAN tags (outer 200, inner 100) with the outer TPID `outer_tpid` (802.1ad 0x88a8 as
/// etherparse writes it, or 802.1Q 0x8100 as some switches do), then IPv4 / UDP.
pub fn qinq(outer_tpid: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .double_vlan(vlan_id(200), vlan_id(100))
        .ipv4(SRC4, DST4, 64)
        .udp(SPORT, dst_port)
        .write(&mut out, payload)
        .expect("etherparse writes a double VLAN frame");
    assert_eq!(&out[12..14], &[0x88, 0xa8], "etherparse's outer TPID");
    assert_eq!(&out[16..18], &[0x81, 0x00], "etherparse's inner TPID");
    out[12..14].copy_from_slice(&outer_tpid.to_be_bytes());
    out
}

/// Three VLAN tags (one more than the rules parse), then IPv4 / UDP.
pub fn triple_vlan(dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let inner = qinq(0x88a8, dst_port, payload);
    let mut out = inner[..14].to_vec();
    // Outer tag: TPID 0x88a8 (already at 12..14), TCI 300, then the next TPID 0x8100.
    out.extend_from_slice(&[0x01, 0x2c, 0x81, 0x00]);
    out.extend_from_slice(&inner[14..]);
    out
}

/// Ethernet / IPv4 with protocol `protocol` and `payload` after the IP header (for ESP, GRE).
pub fn ip4_proto(src: [u8; 4], protocol: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ipv4(src, DST4, 64)
        .write(&mut out, IpNumber(protocol), payload)
        .expect("etherparse writes an IPv4 frame");
    out
}

/// Ethernet / IPv6 with next header `next_header` and `payload` after the fixed header.
pub fn ip6_proto(src: [u8; 16], next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ipv6(src, DST6, 64)
        .write(&mut out, IpNumber(next_header), payload)
        .expect("etherparse writes an IPv6 frame");
    out
}

/// ESP (IP protocol 50) from [`SRC4`] with a 64-byte ESP packet.
pub fn esp4(spi: u32) -> Vec<u8> {
    esp4_from(SRC4, spi)
}

pub fn esp4_from(src: [u8; 4], spi: u32) -> Vec<u8> {
    ip4_proto(src, IPPROTO_ESP, &esp(spi, 64))
}

/// ESP (next header 50) from [`SRC6`] with a 64-byte ESP packet.
pub fn esp6(spi: u32) -> Vec<u8> {
    ip6_proto(SRC6, IPPROTO_ESP, &esp(spi, 64))
}

/// Ethernet / IPv4 / TCP SYN to `dst_port`, carrying `payload`.
pub fn tcp4(dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ipv4(SRC4, DST4, 64)
        .tcp(SPORT, dst_port, 1, 65535)
        .syn()
        .write(&mut out, payload)
        .expect("etherparse writes a TCP frame");
    out
}

/// Ethernet / IPv4 / ICMP echo request.
pub fn icmp4_echo() -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ipv4(SRC4, DST4, 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut out, &filler(32))
        .expect("etherparse writes an ICMP frame");
    out
}

/// An ARP request for [`DST4`].
pub fn arp_request() -> Vec<u8> {
    let mut out = Vec::new();
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &MAC_SRC,
        &SRC4,
        &[0; 6],
        &DST4,
    )
    .expect("a valid ARP request");
    PacketBuilder::ethernet2(MAC_SRC, [0xff; 6])
        .arp(arp)
        .write(&mut out)
        .expect("etherparse writes an ARP frame");
    out
}

/// Ethernet / IPv6 / ICMPv6 neighbor solicitation for [`DST6`] (IPv6 ND).
pub fn icmpv6_neighbor_solicitation() -> Vec<u8> {
    let mut out = Vec::new();
    // Target address, then a source link-layer address option (type 1, length 1 = 8 bytes).
    let mut body = DST6.to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&MAC_SRC);
    PacketBuilder::ethernet2(MAC_SRC, [0x33, 0x33, 0xff, 0, 0, 1])
        .ipv6(SRC6, DST6, 255)
        .icmpv6(Icmpv6Type::NeighborSolicitation)
        .write(&mut out, &body)
        .expect("etherparse writes an ICMPv6 frame");
    out
}

/// An Ethernet frame with `ethertype` and `payload` (LLDP and other non-IP traffic).
pub fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAC_DST);
    out.extend_from_slice(&MAC_SRC);
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

// ---------------------------------------------------------------------------------------------
// Frames built by hand
// ---------------------------------------------------------------------------------------------

/// A UDP header (source [`SPORT`]) with the length field `length` (normally 8 + payload).
pub fn udp_header(dst_port: u16, length: u16) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[0..2].copy_from_slice(&SPORT.to_be_bytes());
    h[2..4].copy_from_slice(&dst_port.to_be_bytes());
    h[4..6].copy_from_slice(&length.to_be_bytes());
    // Checksum 0: none (allowed for IPv4; the rules do not check it).
    h
}

/// A UDP datagram (header + payload) with a correct length field.
pub fn udp_datagram(dst_port: u16, payload: &[u8]) -> Vec<u8> {
    udp_datagram_with_length(dst_port, payload, (UDP_LEN + payload.len()) as u16)
}

/// A UDP datagram whose length field is `length`, whatever the payload.
pub fn udp_datagram_with_length(dst_port: u16, payload: &[u8], length: u16) -> Vec<u8> {
    let mut d = udp_header(dst_port, length).to_vec();
    d.extend_from_slice(payload);
    d
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet / IPv4 built by hand: header length `ihl` words (options filled with NOPs and an
/// End of Options List), the flags/fragment-offset field `flags_fragment` (`0x2000` = MF,
/// `0x4000` = DF, low 13 bits = offset in 8-byte units), protocol `protocol`, then `l4`.
/// The total length field covers the header and `l4`; the checksum is correct.
pub fn raw_ipv4(src: [u8; 4], ihl: u8, flags_fragment: u16, protocol: u8, l4: &[u8]) -> Vec<u8> {
    let hlen = usize::from(ihl) * 4;
    let mut ip = vec![0u8; hlen.max(IPV4_LEN)];
    ip[0] = 0x40 | (ihl & 0x0f);
    let total = (hlen.max(IPV4_LEN) + l4.len()) as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    ip[6..8].copy_from_slice(&flags_fragment.to_be_bytes());
    ip[8] = 64;
    ip[9] = protocol;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&DST4);
    if hlen > IPV4_LEN {
        // NOP options, the last byte End of Options List.
        ip[IPV4_LEN..hlen].fill(0x01);
        ip[hlen - 1] = 0x00;
    }
    let hlen_real = hlen.clamp(IPV4_LEN, ip.len());
    let checksum = ipv4_checksum(&ip[..hlen_real]);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    let mut out = ethernet(0x0800, &ip);
    out.extend_from_slice(l4);
    out
}

/// IPv4 with header length `ihl` (6..=15 carry options) and a UDP datagram to `dst_port`.
pub fn udp4_with_options(ihl: u8, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    raw_ipv4(SRC4, ihl, 0, IPPROTO_UDP, &udp_datagram(dst_port, payload))
}

/// An IPv4 fragment: `more_fragments`, offset `offset_units` (8-byte units), protocol
/// `protocol`, and `bytes` as the fragment's data (a UDP header only in a first fragment).
pub fn ipv4_fragment(
    src: [u8; 4],
    protocol: u8,
    offset_units: u16,
    more_fragments: bool,
    bytes: &[u8],
) -> Vec<u8> {
    let flags = if more_fragments { 0x2000 } else { 0 } | (offset_units & 0x1fff);
    raw_ipv4(src, 5, flags, protocol, bytes)
}

/// The first fragment (offset 0, MF) of a UDP datagram to `dst_port` whose payload is
/// `payload`: the UDP length covers the whole payload, the frame only its first `carried`
/// bytes.
pub fn udp4_first_fragment(dst_port: u16, payload: &[u8], carried: usize) -> Vec<u8> {
    let datagram = udp_datagram(dst_port, payload);
    ipv4_fragment(SRC4, IPPROTO_UDP, 0, true, &datagram[..UDP_LEN + carried])
}

/// Ethernet / IPv6 built by hand with next header `next_header` and `rest` after the fixed
/// header (extension headers included); the payload length field covers `rest`.
pub fn raw_ipv6(src: [u8; 16], next_header: u8, rest: &[u8]) -> Vec<u8> {
    let mut ip = vec![0u8; IPV6_LEN];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&(rest.len() as u16).to_be_bytes());
    ip[6] = next_header;
    ip[7] = 64;
    ip[8..24].copy_from_slice(&src);
    ip[24..40].copy_from_slice(&DST6);
    let mut out = ethernet(0x86dd, &ip);
    out.extend_from_slice(rest);
    out
}

/// An IPv6 fragment header (RFC 8200 §4.5).
pub fn ipv6_fragment_header(next_header: u8, offset_units: u16, more_fragments: bool) -> [u8; 8] {
    let offset_flags = (offset_units << 3) | u16::from(more_fragments);
    let mut h = [0u8; 8];
    h[0] = next_header;
    h[2..4].copy_from_slice(&offset_flags.to_be_bytes());
    h[4..8].copy_from_slice(&0xcafe_f00du32.to_be_bytes());
    h
}

/// IPv6 / fragment header / `bytes` (the fragment's data).
pub fn ipv6_fragment(
    src: [u8; 16],
    protocol: u8,
    offset_units: u16,
    more_fragments: bool,
    bytes: &[u8],
) -> Vec<u8> {
    let mut rest = ipv6_fragment_header(protocol, offset_units, more_fragments).to_vec();
    rest.extend_from_slice(bytes);
    raw_ipv6(src, IPPROTO_FRAGMENT, &rest)
}

/// The first IPv6 fragment (offset 0, M) of a UDP datagram to `dst_port`, carrying the UDP
/// header and the first `carried` bytes of `payload`.
pub fn udp6_first_fragment(dst_port: u16, payload: &[u8], carried: usize) -> Vec<u8> {
    let datagram = udp_datagram(dst_port, payload);
    ipv6_fragment(SRC6, IPPROTO_UDP, 0, true, &datagram[..UDP_LEN + carried])
}

/// `frame` with the UDP length field (at `udp_offset` in the frame) replaced by `length`.
pub fn with_udp_length(mut frame: Vec<u8>, udp_offset: usize, length: u16) -> Vec<u8> {
    frame[udp_offset + 4..udp_offset + 6].copy_from_slice(&length.to_be_bytes());
    frame
}

/// `frame` cut to its first `len` bytes (length fields unchanged).
pub fn truncated(frame: &[u8], len: usize) -> Vec<u8> {
    frame[..len].to_vec()
}

/// `frame` padded with zeros to `len` bytes, as a NIC pads a short Ethernet frame to 60.
pub fn padded(mut frame: Vec<u8>, len: usize) -> Vec<u8> {
    if frame.len() < len {
        frame.resize(len, 0);
    }
    frame
}

/// Where the UDP header starts in an untagged IPv4 frame without options.
pub const UDP4_OFFSET: usize = ETH_LEN + IPV4_LEN;
/// Where the UDP header starts in an untagged IPv6 frame without extension headers.
pub const UDP6_OFFSET: usize = ETH_LEN + IPV6_LEN;

// ---------------------------------------------------------------------------------------------
// The shared table
// ---------------------------------------------------------------------------------------------

/// What the rules must make of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expect {
    pub service: Service,
    pub kind: Kind,
    /// A session-opening message (what the rate limit applies to).
    pub initial: bool,
    /// ESP SPI, 0 when there is none.
    pub spi: u32,
}

/// A frame and what the rules must make of it (`None`: not VPN traffic).
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub frame: Vec<u8>,
    pub expect: Option<Expect>,
}

fn case(name: impl Into<String>, frame: Vec<u8>, expect: Option<Expect>) -> Case {
    Case {
        name: name.into(),
        frame,
        expect,
    }
}

/// A classified packet that is neither initial nor carries an SPI.
pub fn is(service: Service, kind: Kind) -> Option<Expect> {
    Some(Expect {
        service,
        kind,
        initial: false,
        spi: 0,
    })
}

/// A classified session-opening packet.
pub fn initial(service: Service, kind: Kind) -> Option<Expect> {
    Some(Expect {
        service,
        kind,
        initial: true,
        spi: 0,
    })
}

/// A classified packet with an ESP SPI.
pub fn with_spi(service: Service, kind: Kind, spi: u32) -> Option<Expect> {
    Some(Expect {
        service,
        kind,
        initial: false,
        spi,
    })
}

pub fn malformed(service: Service) -> Option<Expect> {
    is(service, Kind::Malformed)
}

pub fn fragment() -> Option<Expect> {
    is(Service::Fragment, Kind::Fragment)
}

/// Every class of frame the rules distinguish, on the default ports, all at least 14 bytes
/// long (the kernel's `BPF_PROG_TEST_RUN` refuses shorter frames). Frames come from
/// [`SRC4`] or [`SRC6`].
pub fn cases() -> Vec<Case> {
    use Kind as K;
    use Service as S;
    let mut c = Vec::new();

    // WireGuard: type and exact length together.
    let wg_sizes = [
        (1, 148, K::WgHandshakeInit),
        (2, 92, K::WgHandshakeResponse),
        (3, 64, K::WgCookieReply),
        (4, 32, K::WgData),
        (4, 48, K::WgData),
        (4, 1440, K::WgData),
        // boringtun does not pad to 16 bytes: a 116-byte ping in a tunnel is data too.
        (4, 116, K::WgData),
        (4, 33, K::WgData),
    ];
    for (t, len, kind) in wg_sizes {
        let expect = if kind == K::WgHandshakeInit {
            initial(S::WireGuard, kind)
        } else {
            is(S::WireGuard, kind)
        };
        c.push(case(
            format!("wireguard type {t} of {len} bytes"),
            udp4(WG_PORT, &wg(t, len)),
            expect,
        ));
        // Handshake messages have one length; data any from a keepalive's up.
        let bad: &[usize] = match t {
            4 if len == 32 => &[31],
            4 => &[],
            _ => &[len - 1, len + 1],
        };
        for &bad in bad {
            c.push(case(
                format!("wireguard type {t} of {bad} bytes"),
                udp4(WG_PORT, &wg(t, bad)),
                malformed(S::WireGuard),
            ));
        }
    }
    c.push(case(
        "wireguard data of 16 bytes (shorter than a keepalive)",
        udp4(WG_PORT, &wg_data(16)),
        malformed(S::WireGuard),
    ));
    for i in 0..3 {
        let mut reserved = [0u8; 3];
        reserved[i] = 1;
        c.push(case(
            format!("wireguard initiation with reserved byte {} set", i + 1),
            udp4(WG_PORT, &wg_reserved(1, reserved, 148)),
            malformed(S::WireGuard),
        ));
    }
    for t in [0u8, 5, 0xff] {
        c.push(case(
            format!("wireguard unknown type {t} of 148 bytes"),
            udp4(WG_PORT, &wg(t, 148)),
            malformed(S::WireGuard),
        ));
    }
    c.push(case(
        "wireguard type 2 with the initiation's size",
        udp4(WG_PORT, &wg(2, 148)),
        malformed(S::WireGuard),
    ));
    c.push(case(
        "wireguard empty datagram",
        udp4(WG_PORT, &[]),
        malformed(S::WireGuard),
    ));
    c.push(case(
        "wireguard initiation over IPv6",
        udp6(WG_PORT, &wg_init()),
        initial(S::WireGuard, K::WgHandshakeInit),
    ));
    c.push(case(
        "wireguard data over IPv6",
        udp6(WG_PORT, &wg_data(64)),
        is(S::WireGuard, K::WgData),
    ));

    // IKE on port 500.
    let ike_kinds = [
        (1, IKEV1_MAIN, K::IkeV1Main, true),
        (1, IKEV1_AGGRESSIVE, K::IkeV1Aggressive, true),
        (1, IKEV1_INFORMATIONAL, K::IkeV1Informational, false),
        (1, IKEV1_QUICK, K::IkeV1Quick, false),
        (1, IKEV1_BASE, K::IkeV1Other, false),
        (2, IKEV2_SA_INIT, K::IkeV2SaInit, true),
        (2, IKEV2_AUTH, K::IkeV2Auth, false),
        (2, IKEV2_CREATE_CHILD_SA, K::IkeV2CreateChildSa, false),
        (2, IKEV2_INFORMATIONAL, K::IkeV2Informational, false),
        (2, IKEV2_SESSION_RESUME, K::IkeV2Other, false),
    ];
    for (version, exchange, kind, opens) in ike_kinds {
        for (service, port, wrap) in [(S::Ike, IKE_PORT, false), (S::NatT, NATT_PORT, true)] {
            for responder_spi_zero in [true, false] {
                let message = ike(version, exchange, responder_spi_zero, 200);
                let payload = if wrap { natt_ike(&message) } else { message };
                let expect = if opens && responder_spi_zero {
                    initial(service, kind)
                } else {
                    is(service, kind)
                };
                c.push(case(
                    format!(
                        "IKEv{version} exchange {exchange} on port {port}, responder SPI {}",
                        if responder_spi_zero { "zero" } else { "set" }
                    ),
                    udp4(port, &payload),
                    expect,
                ));
            }
        }
    }
    c.push(case(
        "IKEv2 IKE_SA_INIT over IPv6",
        udp6(IKE_PORT, &ike_sa_init()),
        initial(S::Ike, K::IkeV2SaInit),
    ));
    c.push(case(
        "IKEv2 with minor version 1",
        udp4(IKE_PORT, &with_ike_version_byte(ike_sa_init(), 0x21)),
        initial(S::Ike, K::IkeV2SaInit),
    ));
    for version in [0u8, 3, 15] {
        for (service, port, wrap) in [(S::Ike, IKE_PORT, false), (S::NatT, NATT_PORT, true)] {
            let message = ike(version, IKEV2_SA_INIT, true, 200);
            let payload = if wrap { natt_ike(&message) } else { message };
            c.push(case(
                format!("IKE version {version} on port {port}"),
                udp4(port, &payload),
                malformed(service),
            ));
        }
    }
    for len in [0usize, 1, 20, 27] {
        c.push(case(
            format!("IKE of {len} bytes (shorter than the header)"),
            udp4(IKE_PORT, &ike(2, IKEV2_SA_INIT, true, len)),
            malformed(S::Ike),
        ));
        c.push(case(
            format!("NAT-T marker and IKE of {len} bytes"),
            udp4(NATT_PORT, &natt_ike(&ike(2, IKEV2_SA_INIT, true, len))),
            malformed(S::NatT),
        ));
    }
    c.push(case(
        "IKE header alone (28 bytes, no payloads)",
        udp4(IKE_PORT, &ike(2, IKEV2_INFORMATIONAL, false, 28)),
        is(S::Ike, K::IkeV2Informational),
    ));
    for field in [0u32, 28, 199, 201, 0xffff_ffff] {
        c.push(case(
            format!("IKE length field {field} for a 200-byte message"),
            udp4(IKE_PORT, &with_ike_length(ike_sa_init_of(200), field)),
            malformed(S::Ike),
        ));
        c.push(case(
            format!("NAT-T IKE length field {field} for a 200-byte message"),
            udp4(
                NATT_PORT,
                &natt_ike(&with_ike_length(ike_sa_init_of(200), field)),
            ),
            malformed(S::NatT),
        ));
    }
    c.push(case(
        "NAT-T IKE whose length field counts the non-ESP marker",
        udp4(
            NATT_PORT,
            &natt_ike(&with_ike_length(ike_sa_init_of(200), 204)),
        ),
        malformed(S::NatT),
    ));

    // NAT-T framing.
    c.push(case(
        "NAT-T keepalive 0xff",
        udp4(NATT_PORT, &natt_keepalive()),
        is(S::NatT, K::NattKeepalive),
    ));
    c.push(case(
        "NAT-T keepalive padded to the Ethernet minimum",
        padded(udp4(NATT_PORT, &natt_keepalive()), 60),
        is(S::NatT, K::NattKeepalive),
    ));
    for byte in [0x00u8, 0x01, 0xfe] {
        c.push(case(
            format!("NAT-T single byte {byte:#04x}"),
            udp4(NATT_PORT, &[byte]),
            malformed(S::NatT),
        ));
    }
    for payload in [
        vec![0xff, 0xff],
        vec![0xff, 0xff, 0xff],
        vec![0, 0],
        vec![0, 0, 0],
        vec![0x12, 0x34, 0x56],
    ] {
        c.push(case(
            format!("NAT-T payload {payload:02x?}"),
            udp4(NATT_PORT, &payload),
            malformed(S::NatT),
        ));
    }
    c.push(case(
        "NAT-T empty datagram",
        udp4(NATT_PORT, &[]),
        malformed(S::NatT),
    ));
    c.push(case(
        "NAT-T non-ESP marker alone",
        udp4(NATT_PORT, &[0, 0, 0, 0]),
        malformed(S::NatT),
    ));
    for len in [8usize, 100, 1400] {
        c.push(case(
            format!("ESP-in-UDP of {len} bytes"),
            udp4(NATT_PORT, &esp(0x1234_5678, len)),
            with_spi(S::NatT, K::EspInUdp, 0x1234_5678),
        ));
    }
    for len in [4usize, 5, 7] {
        c.push(case(
            format!("ESP-in-UDP of {len} bytes (shorter than the ESP header)"),
            udp4(NATT_PORT, &esp(0x1234_5678, len)),
            malformed(S::NatT),
        ));
    }
    c.push(case(
        "ESP-in-UDP over IPv6",
        udp6(NATT_PORT, &esp(0xabcd_0001, 80)),
        with_spi(S::NatT, K::EspInUdp, 0xabcd_0001),
    ));

    // ESP, IP protocol 50.
    c.push(case(
        "ESP over IPv4",
        esp4(0xdead_beef),
        with_spi(S::Esp, K::Esp, 0xdead_beef),
    ));
    c.push(case(
        "ESP over IPv6",
        esp6(0x0000_0101),
        with_spi(S::Esp, K::Esp, 0x0000_0101),
    ));
    c.push(case(
        "ESP with exactly the 8-byte header",
        ip4_proto(SRC4, IPPROTO_ESP, &esp(0x42, 8)),
        with_spi(S::Esp, K::Esp, 0x42),
    ));
    c.push(case("ESP with SPI 0", esp4(0), malformed(S::Esp)));
    for len in [0usize, 4, 7] {
        c.push(case(
            format!("ESP of {len} bytes (shorter than the header)"),
            ip4_proto(SRC4, IPPROTO_ESP, &esp(0xdead_beef, len)),
            malformed(S::Esp),
        ));
    }

    // VLAN tags.
    c.push(case(
        "802.1Q tagged wireguard initiation",
        vlan(WG_PORT, &wg_init()),
        initial(S::WireGuard, K::WgHandshakeInit),
    ));
    c.push(case(
        "802.1ad (0x88a8) single tag",
        vlan_tpid(0x88a8, WG_PORT, &wg_init()),
        initial(S::WireGuard, K::WgHandshakeInit),
    ));
    c.push(case(
        "802.1Q tagged IPv6 wireguard data",
        vlan6(WG_PORT, &wg_data(32)),
        is(S::WireGuard, K::WgData),
    ));
    c.push(case(
        "double tag, outer 0x88a8",
        qinq(0x88a8, WG_PORT, &wg_init()),
        initial(S::WireGuard, K::WgHandshakeInit),
    ));
    c.push(case(
        "double tag, outer 0x8100",
        qinq(0x8100, WG_PORT, &wg_init()),
        initial(S::WireGuard, K::WgHandshakeInit),
    ));
    c.push(case(
        "double tag malformed wireguard",
        qinq(0x88a8, WG_PORT, &wg_init()[..100]),
        malformed(S::WireGuard),
    ));
    c.push(case(
        "three tags (more than parsed)",
        triple_vlan(WG_PORT, &wg_init()),
        None,
    ));

    // IPv4 header options.
    for ihl in 6u8..=15 {
        c.push(case(
            format!("IPv4 IHL {ihl} wireguard initiation"),
            udp4_with_options(ihl, WG_PORT, &wg_init()),
            initial(S::WireGuard, K::WgHandshakeInit),
        ));
    }
    c.push(case(
        "IPv4 IHL 15 ESP",
        raw_ipv4(SRC4, 15, 0, IPPROTO_ESP, &esp(0x77, 32)),
        with_spi(S::Esp, K::Esp, 0x77),
    ));
    for ihl in [0u8, 4] {
        c.push(case(
            format!("IPv4 IHL {ihl} (below the minimum)"),
            raw_ipv4(
                SRC4,
                ihl,
                0,
                IPPROTO_UDP,
                &udp_datagram(WG_PORT, &wg_init()),
            ),
            None,
        ));
    }
    let mut version6_in_ipv4 = udp4(WG_PORT, &wg_init());
    version6_in_ipv4[ETH_LEN] = 0x65;
    c.push(case(
        "ethertype IPv4 with IP version 6",
        version6_in_ipv4,
        None,
    ));
    let mut version4_in_ipv6 = udp6(WG_PORT, &wg_init());
    version4_in_ipv6[ETH_LEN] = 0x45;
    c.push(case(
        "ethertype IPv6 with IP version 4",
        version4_in_ipv6,
        None,
    ));
    c.push(case(
        "IPv4 with DF set",
        raw_ipv4(
            SRC4,
            5,
            0x4000,
            IPPROTO_UDP,
            &udp_datagram(WG_PORT, &wg_init()),
        ),
        initial(S::WireGuard, K::WgHandshakeInit),
    ));

    // IPv4 fragments.
    let wg_looking = udp_datagram(WG_PORT, &wg_init());
    c.push(case(
        "IPv4 last fragment that looks like a wireguard initiation",
        ipv4_fragment(SRC4, IPPROTO_UDP, 185, false, &wg_looking),
        fragment(),
    ));
    c.push(case(
        "IPv4 middle fragment (MF) that looks like a wireguard initiation",
        ipv4_fragment(SRC4, IPPROTO_UDP, 1, true, &wg_looking),
        fragment(),
    ));
    c.push(case(
        "IPv4 later fragment that looks like malformed wireguard",
        ipv4_fragment(
            SRC4,
            IPPROTO_UDP,
            3,
            false,
            &udp_datagram(WG_PORT, &[1, 2, 3]),
        ),
        fragment(),
    ));
    c.push(case(
        "IPv4 later fragment of ESP",
        ipv4_fragment(SRC4, IPPROTO_ESP, 100, false, &esp(0, 40)),
        fragment(),
    ));
    c.push(case(
        "IPv4 later fragment of TCP",
        ipv4_fragment(SRC4, IPPROTO_TCP, 100, false, &filler(40)),
        None,
    ));
    c.push(case(
        "IPv4 later fragment with no data",
        ipv4_fragment(SRC4, IPPROTO_UDP, 100, false, &[]),
        fragment(),
    ));
    c.push(case(
        "IPv4 first fragment (MF) of a wireguard initiation",
        udp4_first_fragment(WG_PORT, &wg_init(), 64),
        initial(S::WireGuard, K::WgHandshakeInit),
    ));
    c.push(case(
        "IPv4 first fragment (MF) of an IKE_SA_INIT",
        udp4_first_fragment(IKE_PORT, &ike(2, IKEV2_SA_INIT, true, 1200), 200),
        initial(S::Ike, K::IkeV2SaInit),
    ));
    c.push(case(
        "IPv4 first fragment (MF) of NAT-T IKE_AUTH",
        udp4_first_fragment(NATT_PORT, &natt_ike(&ike(2, IKEV2_AUTH, false, 1500)), 400),
        is(S::NatT, K::IkeV2Auth),
    ));
    c.push(case(
        "IPv4 first fragment (MF) of ESP",
        ipv4_fragment(SRC4, IPPROTO_ESP, 0, true, &esp(0x99, 64)),
        with_spi(S::Esp, K::Esp, 0x99),
    ));
    c.push(case(
        "IPv4 first fragment with UDP length below 8",
        with_udp_length(udp4_first_fragment(WG_PORT, &wg_init(), 64), UDP4_OFFSET, 7),
        malformed(S::WireGuard),
    ));

    // UDP length field.
    let wg_frame = udp4(WG_PORT, &wg_init());
    c.push(case(
        "UDP length one byte beyond the frame",
        with_udp_length(wg_frame.clone(), UDP4_OFFSET, 8 + 149),
        malformed(S::WireGuard),
    ));
    c.push(case(
        "UDP length 0xffff",
        with_udp_length(wg_frame.clone(), UDP4_OFFSET, 0xffff),
        malformed(S::WireGuard),
    ));
    for len in [0u16, 1, 7] {
        c.push(case(
            format!("UDP length {len}"),
            with_udp_length(wg_frame.clone(), UDP4_OFFSET, len),
            malformed(S::WireGuard),
        ));
        c.push(case(
            format!("UDP length {len} on the IKE port"),
            with_udp_length(udp4(IKE_PORT, &ike_sa_init()), UDP4_OFFSET, len),
            malformed(S::Ike),
        ));
    }
    c.push(case(
        "UDP length beyond an IPv6 frame",
        with_udp_length(udp6(WG_PORT, &wg_init()), UDP6_OFFSET, 8 + 200),
        malformed(S::WireGuard),
    ));
    c.push(case(
        "UDP length shorter than the frame (trailing padding)",
        padded(udp4(WG_PORT, &wg_init()), 200 + 14 + 20 + 8),
        initial(S::WireGuard, K::WgHandshakeInit),
    ));
    c.push(case(
        "UDP length 8 followed by a wireguard initiation in the padding",
        with_udp_length(wg_frame.clone(), UDP4_OFFSET, 8),
        malformed(S::WireGuard),
    ));

    // IPv6 fragment header.
    c.push(case(
        "IPv6 first fragment (M) of a wireguard initiation",
        udp6_first_fragment(WG_PORT, &wg_init(), 64),
        initial(S::WireGuard, K::WgHandshakeInit),
    ));
    c.push(case(
        "IPv6 atomic fragment (offset 0, no M)",
        ipv6_fragment(
            SRC6,
            IPPROTO_UDP,
            0,
            false,
            &udp_datagram(WG_PORT, &wg_data(48)),
        ),
        is(S::WireGuard, K::WgData),
    ));
    c.push(case(
        "IPv6 first fragment of an IKE_SA_INIT",
        udp6_first_fragment(IKE_PORT, &ike(2, IKEV2_SA_INIT, true, 1300), 100),
        initial(S::Ike, K::IkeV2SaInit),
    ));
    c.push(case(
        "IPv6 first fragment of ESP",
        ipv6_fragment(SRC6, IPPROTO_ESP, 0, true, &esp(0x31, 64)),
        with_spi(S::Esp, K::Esp, 0x31),
    ));
    c.push(case(
        "IPv6 later fragment that looks like a wireguard initiation",
        ipv6_fragment(
            SRC6,
            IPPROTO_UDP,
            185,
            false,
            &udp_datagram(WG_PORT, &wg_init()),
        ),
        fragment(),
    ));
    c.push(case(
        "IPv6 middle fragment (M) of UDP",
        ipv6_fragment(SRC6, IPPROTO_UDP, 1, true, &filler(64)),
        fragment(),
    ));
    c.push(case(
        "IPv6 later fragment of ESP",
        ipv6_fragment(SRC6, IPPROTO_ESP, 50, false, &filler(64)),
        fragment(),
    ));
    c.push(case(
        "IPv6 later fragment of TCP",
        ipv6_fragment(SRC6, IPPROTO_TCP, 50, false, &filler(64)),
        None,
    ));
    c.push(case(
        "IPv6 hop-by-hop header before UDP (not parsed)",
        raw_ipv6(SRC6, IPPROTO_HOPOPTS, &{
            let mut rest = vec![IPPROTO_UDP, 0, 1, 4, 0, 0, 0, 0];
            rest.extend_from_slice(&udp_datagram(WG_PORT, &wg_init()));
            rest
        }),
        None,
    ));

    // Truncations: before the destination port is known, not VPN; after, malformed.
    let wg4 = udp4(WG_PORT, &wg_init());
    let wg6 = udp6(WG_PORT, &wg_init());
    c.push(case("Ethernet header only", truncated(&wg4, 14), None));
    c.push(case(
        "VLAN tag cut short",
        truncated(&vlan(WG_PORT, &wg_init()), 16),
        None,
    ));
    c.push(case(
        "second VLAN tag cut short",
        truncated(&qinq(0x88a8, WG_PORT, &wg_init()), 20),
        None,
    ));
    for len in [15usize, 33] {
        c.push(case(
            format!("IPv4 header cut at {len} bytes"),
            truncated(&wg4, len),
            None,
        ));
    }
    c.push(case(
        "IPv4 options cut short",
        truncated(&udp4_with_options(15, WG_PORT, &wg_init()), ETH_LEN + 40),
        None,
    ));
    for len in [15usize, 53] {
        c.push(case(
            format!("IPv6 header cut at {len} bytes"),
            truncated(&wg6, len),
            None,
        ));
    }
    c.push(case(
        "IPv6 fragment header cut short",
        truncated(
            &udp6_first_fragment(WG_PORT, &wg_init(), 64),
            UDP6_OFFSET + 4,
        ),
        None,
    ));
    for len in [UDP4_OFFSET, UDP4_OFFSET + 4, UDP4_OFFSET + 7] {
        c.push(case(
            format!("IPv4 UDP header cut at {len} bytes"),
            truncated(&wg4, len),
            None,
        ));
    }
    for len in [UDP6_OFFSET, UDP6_OFFSET + 7] {
        c.push(case(
            format!("IPv6 UDP header cut at {len} bytes"),
            truncated(&wg6, len),
            None,
        ));
    }
    for len in [
        UDP4_OFFSET + 8,
        UDP4_OFFSET + 10,
        UDP4_OFFSET + 100,
        wg4.len() - 1,
    ] {
        c.push(case(
            format!("wireguard initiation cut at {len} bytes"),
            truncated(&wg4, len),
            malformed(S::WireGuard),
        ));
    }
    let ike4 = udp4(IKE_PORT, &ike_sa_init());
    for len in [
        UDP4_OFFSET + 8,
        UDP4_OFFSET + 20,
        UDP4_OFFSET + 36,
        ike4.len() - 1,
    ] {
        c.push(case(
            format!("IKE_SA_INIT cut at {len} bytes"),
            truncated(&ike4, len),
            malformed(S::Ike),
        ));
    }
    let natt4 = udp4(NATT_PORT, &esp(0x55, 100));
    for len in [UDP4_OFFSET + 8, UDP4_OFFSET + 10, natt4.len() - 1] {
        c.push(case(
            format!("ESP-in-UDP cut at {len} bytes"),
            truncated(&natt4, len),
            malformed(S::NatT),
        ));
    }
    let esp4_frame = esp4(0x66);
    for len in [UDP4_OFFSET, UDP4_OFFSET + 4, UDP4_OFFSET + 7] {
        c.push(case(
            format!("ESP cut at {len} bytes"),
            truncated(&esp4_frame, len),
            malformed(S::Esp),
        ));
    }

    // Not VPN traffic.
    c.push(case(
        "TCP to the wireguard port carrying an initiation",
        tcp4(WG_PORT, &wg_init()),
        None,
    ));
    c.push(case("TCP to the IKE port", tcp4(IKE_PORT, &[]), None));
    c.push(case("ICMP echo request", icmp4_echo(), None));
    c.push(case("ARP request", arp_request(), None));
    c.push(case(
        "IPv6 neighbor solicitation",
        icmpv6_neighbor_solicitation(),
        None,
    ));
    c.push(case("GRE", ip4_proto(SRC4, IPPROTO_GRE, &filler(40)), None));
    c.push(case("LLDP", ethernet(0x88cc, &filler(46)), None));
    for port in [53u16, 51819, 51821, 501, 4501] {
        c.push(case(
            format!("UDP to port {port} carrying a wireguard initiation"),
            udp4(port, &wg_init()),
            None,
        ));
    }
    c.push(case(
        "UDP from the wireguard port to an ephemeral port",
        udp4_ports(WG_PORT, SPORT, &wg_init()),
        None,
    ));
    c.push(case("IPv6 UDP to port 53", udp6(53, &filler(40)), None));

    c
}

/// An IKE_SA_INIT request of `len` bytes.
pub fn ike_sa_init_of(len: usize) -> Vec<u8> {
    ike(2, IKEV2_SA_INIT, true, len)
}
