//! Classification of WAN packets into VPN services and message kinds.
//!
//! The rules, in the order they are applied:
//! - Ethernet, up to two VLAN tags (802.1Q `0x8100`, 802.1ad `0x88a8`);
//! - IPv4 with any header length (non-first fragments are [`Kind::Fragment`], never parsed as
//!   UDP) or IPv6 (fixed header, optionally followed by a fragment header);
//! - ESP (IP protocol 50): [`Service::Esp`];
//! - UDP to one of the configured ports: WireGuard, IKE or NAT-T, each with its message rules.
//!
//! A packet that is not VPN traffic, or that is cut short before its destination port is
//! known, is not classified ([`classify`] returns `None`) and is always passed.
//!
//! WireGuard message sizes follow the protocol paper (Donenfeld, "WireGuard: Next Generation
//! Kernel Network Tunnel", NDSS 2017, §5.4) and are checked together with the message type,
//! as boringtun does. IKE header fields follow RFC 2408 §3.1 (IKEv1) and RFC 7296 §3.1 (IKEv2);
//! NAT-T framing follows RFC 3948 §2.

/// Read access to a packet's bytes, bounds-checked on every access.
///
/// The rules read each header's fields in increasing offset order and prove the header is
/// complete by loading its last field, so every load carries its own bounds check: the
/// verifier tracks packet ranges per pointer, and a check LLVM could prove redundant with an
/// earlier one (on a recomputed pointer) would be removed and the program refused.
///
/// The XDP program implements it over the frame (`data`..`data_end`); host code implements it
/// for byte slices. Offsets are always relative to the start of the frame. Loads are typed
/// and big-endian: one load instruction each in the XDP program, where byte arrays would cost
/// a load per byte.
#[expect(
    clippy::len_without_is_empty,
    reason = "a frame is never empty; the length bounds UDP payload checks"
)]
pub trait Packet {
    /// Frame length in bytes.
    fn len(&self) -> usize;
    /// The byte at `offset`, or `None` past the end of the frame.
    fn u8_at(&self, offset: usize) -> Option<u8>;
    /// The big-endian u16 at `offset`, or `None` when the frame is shorter than `offset + 2`.
    fn u16_at(&self, offset: usize) -> Option<u16>;
    /// The big-endian u32 at `offset`, or `None` when the frame is shorter than `offset + 4`.
    fn u32_at(&self, offset: usize) -> Option<u32>;
}

impl Packet for [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn u8_at(&self, offset: usize) -> Option<u8> {
        self.get(offset).copied()
    }

    fn u16_at(&self, offset: usize) -> Option<u16> {
        let b = self.get(offset..offset.checked_add(2)?)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32_at(&self, offset: usize) -> Option<u32> {
        let b = self.get(offset..offset.checked_add(4)?)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// An IPv6 address, or an IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`), as four
/// big-endian 32-bit words. Words, not bytes: the XDP program builds and hashes it with four
/// moves instead of sixteen.
pub type Address = [u32; 4];

/// The IPv4-mapped form of an IPv4 address given as a big-endian u32.
#[inline(always)]
pub const fn ipv4_mapped(v4: u32) -> Address {
    [0, 0, 0x0000_ffff, v4]
}

/// The sixteen bytes of an [`Address`], in network order.
pub fn address_octets(a: Address) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, w) in a.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// The [`Address`] of sixteen network-order bytes.
pub fn address_from_octets(o: [u8; 16]) -> Address {
    let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

/// A VPN service, identified by IP protocol and UDP destination port.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// WireGuard, UDP (default port 51820).
    WireGuard = 0,
    /// IKE, UDP (default port 500).
    Ike = 1,
    /// NAT traversal, UDP (default port 4500): IKE after a non-ESP marker, ESP-in-UDP, keepalives.
    NatT = 2,
    /// ESP, IP protocol 50.
    Esp = 3,
    /// Non-first IP fragments of UDP or ESP: their ports are unknown, so they are only counted.
    Fragment = 4,
}

impl Service {
    /// Every service, in index order.
    pub const ALL: [Service; SERVICES] = [
        Service::WireGuard,
        Service::Ike,
        Service::NatT,
        Service::Esp,
        Service::Fragment,
    ];

    /// The name used in counters, metrics and JSON (`wireguard`, `ike`, `natt`, `esp`, `fragment`).
    pub const fn name(self) -> &'static str {
        match self {
            Service::WireGuard => "wireguard",
            Service::Ike => "ike",
            Service::NatT => "natt",
            Service::Esp => "esp",
            Service::Fragment => "fragment",
        }
    }

    /// The service for an index, as stored in maps.
    pub const fn from_index(index: u8) -> Option<Service> {
        if (index as usize) < SERVICES {
            Some(Self::ALL[index as usize])
        } else {
            None
        }
    }
}

/// Number of [`Service`] values.
pub const SERVICES: usize = 5;

/// The kind of message within a service.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// On a VPN port (or ESP) but breaks the service's rules.
    Malformed = 0,
    /// WireGuard handshake initiation (type 1, 148 bytes).
    WgHandshakeInit = 1,
    /// WireGuard handshake response (type 2, 92 bytes).
    WgHandshakeResponse = 2,
    /// WireGuard cookie reply (type 3, 64 bytes).
    WgCookieReply = 3,
    /// WireGuard transport data (type 4, at least 32 bytes; padding to 16 is not required).
    WgData = 4,
    /// IKEv1 Identity Protection (main mode), exchange type 2.
    IkeV1Main = 5,
    /// IKEv1 Aggressive mode, exchange type 4.
    IkeV1Aggressive = 6,
    /// IKEv1 Informational, exchange type 5.
    IkeV1Informational = 7,
    /// IKEv1 Quick mode, exchange type 32.
    IkeV1Quick = 8,
    /// IKEv1 with another exchange type.
    IkeV1Other = 9,
    /// IKEv2 IKE_SA_INIT, exchange type 34.
    IkeV2SaInit = 10,
    /// IKEv2 IKE_AUTH, exchange type 35.
    IkeV2Auth = 11,
    /// IKEv2 CREATE_CHILD_SA, exchange type 36.
    IkeV2CreateChildSa = 12,
    /// IKEv2 INFORMATIONAL, exchange type 37.
    IkeV2Informational = 13,
    /// IKEv2 with another exchange type.
    IkeV2Other = 14,
    /// NAT-T keepalive: a single 0xFF byte (RFC 3948 §2.3).
    NattKeepalive = 15,
    /// ESP inside UDP (RFC 3948 §2.1): a non-zero SPI where the non-ESP marker would be.
    EspInUdp = 16,
    /// ESP (IP protocol 50) with a non-zero SPI.
    Esp = 17,
    /// A non-first IP fragment.
    Fragment = 18,
}

/// Number of [`Kind`] values.
pub const KINDS: usize = 19;

impl Kind {
    /// Every kind, in index order.
    pub const ALL: [Kind; KINDS] = [
        Kind::Malformed,
        Kind::WgHandshakeInit,
        Kind::WgHandshakeResponse,
        Kind::WgCookieReply,
        Kind::WgData,
        Kind::IkeV1Main,
        Kind::IkeV1Aggressive,
        Kind::IkeV1Informational,
        Kind::IkeV1Quick,
        Kind::IkeV1Other,
        Kind::IkeV2SaInit,
        Kind::IkeV2Auth,
        Kind::IkeV2CreateChildSa,
        Kind::IkeV2Informational,
        Kind::IkeV2Other,
        Kind::NattKeepalive,
        Kind::EspInUdp,
        Kind::Esp,
        Kind::Fragment,
    ];

    /// The name used in counters, metrics and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Malformed => "malformed",
            Kind::WgHandshakeInit => "handshake_initiation",
            Kind::WgHandshakeResponse => "handshake_response",
            Kind::WgCookieReply => "cookie_reply",
            Kind::WgData => "data",
            Kind::IkeV1Main => "ikev1_main_mode",
            Kind::IkeV1Aggressive => "ikev1_aggressive_mode",
            Kind::IkeV1Informational => "ikev1_informational",
            Kind::IkeV1Quick => "ikev1_quick_mode",
            Kind::IkeV1Other => "ikev1_other",
            Kind::IkeV2SaInit => "ikev2_ike_sa_init",
            Kind::IkeV2Auth => "ikev2_ike_auth",
            Kind::IkeV2CreateChildSa => "ikev2_create_child_sa",
            Kind::IkeV2Informational => "ikev2_informational",
            Kind::IkeV2Other => "ikev2_other",
            Kind::NattKeepalive => "keepalive",
            Kind::EspInUdp => "esp_in_udp",
            Kind::Esp => "esp",
            Kind::Fragment => "fragment",
        }
    }

    /// The kind for an index, as stored in maps.
    pub const fn from_index(index: u8) -> Option<Kind> {
        if (index as usize) < KINDS {
            Some(Self::ALL[index as usize])
        } else {
            None
        }
    }
}

/// The UDP destination ports that identify the VPN services, in host byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub wireguard: u16,
    pub ike: u16,
    pub natt: u16,
}

impl Ports {
    /// WireGuard's conventional port.
    pub const DEFAULT_WIREGUARD: u16 = 51820;
    /// IKE (RFC 7296 §2).
    pub const DEFAULT_IKE: u16 = 500;
    /// IKE and ESP with NAT traversal (RFC 3948).
    pub const DEFAULT_NATT: u16 = 4500;
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            wireguard: Self::DEFAULT_WIREGUARD,
            ike: Self::DEFAULT_IKE,
            natt: Self::DEFAULT_NATT,
        }
    }
}

/// What [`classify`] found out about a VPN packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    pub service: Service,
    pub kind: Kind,
    /// Source address; IPv4 as an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`).
    pub source: Address,
    /// ESP SPI (ESP and ESP-in-UDP), 0 otherwise.
    pub spi: u32,
    /// A message that opens a new session: a WireGuard handshake initiation, or the first
    /// message of an IKE exchange that creates an IKE SA (responder SPI still zero). These are
    /// what a per-source rate limit applies to.
    pub initial: bool,
}

pub const ETH_HLEN: usize = 14;
pub const VLAN_HLEN: usize = 4;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
/// VLAN tags parsed before giving up on a frame.
pub const MAX_VLAN_TAGS: usize = 2;

pub const IPV4_MIN_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const IPV6_FRAG_HLEN: usize = 8;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ESP: u8 = 50;
pub const IPPROTO_IPV6_FRAGMENT: u8 = 44;
pub const UDP_HLEN: usize = 8;
/// SPI and sequence number (RFC 4303 §2).
pub const ESP_HLEN: usize = 8;

pub const WG_HANDSHAKE_INIT: (u8, usize) = (1, 148);
pub const WG_HANDSHAKE_RESPONSE: (u8, usize) = (2, 92);
pub const WG_COOKIE_REPLY: (u8, usize) = (3, 64);
pub const WG_DATA: u8 = 4;
/// Transport header (16) and the Poly1305 tag (16): a keepalive carries nothing else.
pub const WG_DATA_MIN_LEN: usize = 32;

/// IKE header: SPIs (16), next payload, version, exchange type, flags, message ID, length.
pub const IKE_HLEN: usize = 28;
/// The four zero bytes before an IKE header on the NAT-T port (RFC 3948 §2.2).
pub const NON_ESP_MARKER_LEN: usize = 4;
pub const NATT_KEEPALIVE: u8 = 0xff;

/// Where the network layer of a frame starts, and with which ethertype.
#[inline(always)]
fn network_layer<P: Packet + ?Sized>(pkt: &P) -> Option<(u16, usize)> {
    let mut ethertype = pkt.u16_at(ETH_HLEN - 2)?;
    let mut offset = ETH_HLEN;
    // A constant trip count: the loop is unrolled, so the verifier sees constant offsets.
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        // The tag: TCI (2 bytes), then the encapsulated ethertype.
        ethertype = pkt.u16_at(offset + 2)?;
        offset += VLAN_HLEN;
    }
    Some((ethertype, offset))
}

/// The transport layer of an IP packet.
struct Transport {
    protocol: u8,
    offset: usize,
    source: Address,
    /// A fragment that is not the first: no transport header in it.
    later_fragment: bool,
    /// Part of a fragmented datagram: the UDP length cannot be checked against the frame.
    fragmented: bool,
}

#[inline(always)]
fn ipv4<P: Packet + ?Sized>(pkt: &P, offset: usize) -> Option<Transport> {
    let version_ihl = pkt.u8_at(offset)?;
    if version_ihl >> 4 != 4 {
        return None;
    }
    // IHL counts 32-bit words; the mask keeps the offset provably small for the verifier.
    let hlen = ((version_ihl & 0x0f) as usize) * 4;
    if hlen < IPV4_MIN_HLEN {
        return None;
    }
    let flags_fragment = pkt.u16_at(offset + 6)?;
    let protocol = pkt.u8_at(offset + 9)?;
    let source = pkt.u32_at(offset + 12)?;
    // The destination address ends the fixed header.
    pkt.u32_at(offset + 16)?;
    let more_fragments = flags_fragment & 0x2000 != 0;
    let fragment_offset = flags_fragment & 0x1fff;
    Some(Transport {
        protocol,
        offset: offset + hlen,
        source: ipv4_mapped(source),
        later_fragment: fragment_offset != 0,
        fragmented: more_fragments || fragment_offset != 0,
    })
}

#[inline(always)]
fn ipv6<P: Packet + ?Sized>(pkt: &P, offset: usize) -> Option<Transport> {
    if pkt.u8_at(offset)? >> 4 != 6 {
        return None;
    }
    let protocol = pkt.u8_at(offset + 6)?;
    let source = [
        pkt.u32_at(offset + 8)?,
        pkt.u32_at(offset + 12)?,
        pkt.u32_at(offset + 16)?,
        pkt.u32_at(offset + 20)?,
    ];
    // The last word of the destination address ends the fixed header.
    pkt.u32_at(offset + IPV6_HLEN - 4)?;
    let mut transport = Transport {
        protocol,
        offset: offset + IPV6_HLEN,
        source,
        later_fragment: false,
        fragmented: false,
    };
    if transport.protocol == IPPROTO_IPV6_FRAGMENT {
        // RFC 8200 §4.5: next header, reserved, offset (13 bits) | res | M, identification.
        transport.protocol = pkt.u8_at(transport.offset)?;
        let offset_flags = pkt.u16_at(transport.offset + 2)?;
        pkt.u32_at(transport.offset + IPV6_FRAG_HLEN - 4)?;
        transport.offset += IPV6_FRAG_HLEN;
        transport.later_fragment = offset_flags >> 3 != 0;
        transport.fragmented = true;
    }
    Some(transport)
}

/// Classifies a frame. `None` means "not VPN traffic": pass it, count nothing.
#[inline(always)]
pub fn classify<P: Packet + ?Sized>(pkt: &P, ports: &Ports) -> Option<Classified> {
    let (ethertype, l3) = network_layer(pkt)?;
    let t = match ethertype {
        ETH_P_IP => ipv4(pkt, l3)?,
        ETH_P_IPV6 => ipv6(pkt, l3)?,
        _ => return None,
    };
    let mut c = Classified {
        service: Service::Fragment,
        kind: Kind::Fragment,
        source: t.source,
        spi: 0,
        initial: false,
    };
    if t.protocol != IPPROTO_UDP && t.protocol != IPPROTO_ESP {
        return None;
    }
    if t.later_fragment {
        return Some(c);
    }
    if t.protocol == IPPROTO_ESP {
        c.service = Service::Esp;
        let spi = pkt.u32_at(t.offset);
        // The sequence number ends the header.
        let complete = pkt.u32_at(t.offset + ESP_HLEN - 4).is_some();
        c.kind = match spi {
            Some(spi) if spi != 0 && complete => {
                c.spi = spi;
                Kind::Esp
            }
            _ => Kind::Malformed,
        };
        return Some(c);
    }

    // UDP: the destination port picks the service; a frame cut before it is not classified.
    let port = pkt.u16_at(t.offset + 2)?;
    c.service = if port == ports.wireguard {
        Service::WireGuard
    } else if port == ports.ike {
        Service::Ike
    } else if port == ports.natt {
        Service::NatT
    } else {
        return None;
    };
    let udp_len = pkt.u16_at(t.offset + 4)? as usize;
    // The checksum ends the header.
    pkt.u16_at(t.offset + 6)?;
    let payload = t.offset + UDP_HLEN;
    // The UDP length must cover the header and, unless the datagram is fragmented, must not
    // claim more bytes than the frame holds (Ethernet padding may make the frame longer).
    if udp_len < UDP_HLEN || (!t.fragmented && payload + (udp_len - UDP_HLEN) > pkt.len()) {
        c.kind = Kind::Malformed;
        return Some(c);
    }
    let payload_len = udp_len - UDP_HLEN;
    match c.service {
        Service::WireGuard => {
            c.kind = wireguard(pkt, payload, payload_len);
            c.initial = c.kind == Kind::WgHandshakeInit;
        }
        Service::Ike => (c.kind, c.initial) = ike(pkt, payload, payload_len),
        _ => natt(pkt, payload, payload_len, &mut c),
    }
    Some(c)
}

/// WireGuard: the message type and the exact payload length decide together.
#[inline(always)]
fn wireguard<P: Packet + ?Sized>(pkt: &P, payload: usize, len: usize) -> Kind {
    // The type is a little-endian u32 whose upper three bytes are reserved zeros.
    let Some(word) = pkt.u32_at(payload) else {
        return Kind::Malformed;
    };
    // Read big-endian, the little-endian type byte is the top byte.
    if word & 0x00ff_ffff != 0 {
        return Kind::Malformed;
    }
    match ((word >> 24) as u8, len) {
        WG_HANDSHAKE_INIT => Kind::WgHandshakeInit,
        WG_HANDSHAKE_RESPONSE => Kind::WgHandshakeResponse,
        WG_COOKIE_REPLY => Kind::WgCookieReply,
        // The paper pads transport data to a multiple of 16 bytes (§5.4.6), but boringtun
        // (vpn-ctl's userspace backend, and many phones' apps) does not, and the kernel
        // accepts unpadded messages: any length from a keepalive up is data.
        (WG_DATA, len) if len >= WG_DATA_MIN_LEN => Kind::WgData,
        _ => Kind::Malformed,
    }
}

/// IKE header at `offset` with `len` bytes of IKE message: the kind, and whether the message
/// opens a new IKE SA (responder SPI zero in a main, aggressive or IKE_SA_INIT exchange).
#[inline(always)]
fn ike<P: Packet + ?Sized>(pkt: &P, offset: usize, len: usize) -> (Kind, bool) {
    if len < IKE_HLEN {
        return (Kind::Malformed, false);
    }
    let Some(spi_r0) = pkt.u32_at(offset + 8) else {
        return (Kind::Malformed, false);
    };
    let Some(spi_r1) = pkt.u32_at(offset + 12) else {
        return (Kind::Malformed, false);
    };
    // Next payload, version (major << 4 | minor), exchange type, flags.
    let Some(word) = pkt.u32_at(offset + 16) else {
        return (Kind::Malformed, false);
    };
    // The length of the whole IKE message ends the header.
    let Some(message_len) = pkt.u32_at(offset + IKE_HLEN - 4) else {
        return (Kind::Malformed, false);
    };
    if message_len as usize != len {
        return (Kind::Malformed, false);
    }
    let responder_spi_zero = spi_r0 == 0 && spi_r1 == 0;
    let major = (word >> 20) as u8 & 0x0f;
    let exchange = (word >> 8) as u8;
    let kind = match (major, exchange) {
        (1, 2) => Kind::IkeV1Main,
        (1, 4) => Kind::IkeV1Aggressive,
        (1, 5) => Kind::IkeV1Informational,
        (1, 32) => Kind::IkeV1Quick,
        (1, _) => Kind::IkeV1Other,
        (2, 34) => Kind::IkeV2SaInit,
        (2, 35) => Kind::IkeV2Auth,
        (2, 36) => Kind::IkeV2CreateChildSa,
        (2, 37) => Kind::IkeV2Informational,
        (2, _) => Kind::IkeV2Other,
        _ => return (Kind::Malformed, false),
    };
    let initial = responder_spi_zero
        && matches!(
            kind,
            Kind::IkeV1Main | Kind::IkeV1Aggressive | Kind::IkeV2SaInit
        );
    (kind, initial)
}

/// NAT-T port: keepalive, IKE after the non-ESP marker, or ESP-in-UDP.
#[inline(always)]
fn natt<P: Packet + ?Sized>(pkt: &P, payload: usize, len: usize, c: &mut Classified) {
    if len == 1 {
        c.kind = match pkt.u8_at(payload) {
            Some(NATT_KEEPALIVE) => Kind::NattKeepalive,
            _ => Kind::Malformed,
        };
        return;
    }
    let spi = match pkt.u32_at(payload) {
        Some(marker) if len >= NON_ESP_MARKER_LEN => marker,
        _ => {
            c.kind = Kind::Malformed;
            return;
        }
    };
    if spi == 0 {
        (c.kind, c.initial) = ike(pkt, payload + NON_ESP_MARKER_LEN, len - NON_ESP_MARKER_LEN);
    } else if len >= ESP_HLEN {
        c.kind = Kind::EspInUdp;
        c.spi = spi;
    } else {
        c.kind = Kind::Malformed;
    }
}
