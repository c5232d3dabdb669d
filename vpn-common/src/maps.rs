//! Names and layouts of the XDP program's maps, shared by the program and user space.

use crate::classify::{KINDS, Kind, SERVICES, Service};

/// The WAN classifier program.
pub const PROG_WAN: &str = "vpn_wan";
/// An XDP program that only returns `XDP_PASS`: the baseline of the benchmark.
pub const PROG_EMPTY: &str = "vpn_empty";

/// `PERCPU_ARRAY` of [`Counter`], indexed by [`counter_index`].
pub const MAP_COUNTERS: &str = "COUNTERS";
/// `ARRAY` with one [`XdpConfig`].
pub const MAP_CONFIG: &str = "CONFIG";
/// `LRU_HASH` from source [`crate::classify::Address`] (IPv4-mapped) to [`SourceStats`].
pub const MAP_SOURCES: &str = "SOURCES";
/// `LPM_TRIE` of denied source prefixes: key data is [`LpmAddress`], value `u8`.
pub const MAP_DENY: &str = "DENY";
/// `LPM_TRIE` of allowed source prefixes per service: key data is [`AllowKey`], value `u8`.
pub const MAP_ALLOW: &str = "ALLOW";
/// `LRU_HASH` from source [`crate::classify::Address`] to [`RateState`].
pub const MAP_RATE: &str = "RATE";

/// `PERCPU_ARRAY` with one [`PendingSource`]: transport data from the source that last sent
/// data on this CPU, not yet added to [`MAP_SOURCES`].
pub const MAP_PENDING: &str = "PENDING";
/// Pending data packets are added to the source table at least this often (per CPU).
pub const PENDING_FLUSH_PACKETS: u64 = 64;

/// Default size of the per-source table: 4096 entries of ~100 bytes with the kernel's overhead.
pub const DEFAULT_SOURCES: u32 = 4096;
/// Entries of the rate-limit table.
pub const RATE_ENTRIES: u32 = 4096;
/// Entries of each prefix list.
pub const PREFIX_ENTRIES: u32 = 1024;

/// What the program did with a classified packet.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Pass = 0,
    /// Enforce mode: the packet broke its service's rules.
    DropMalformed = 1,
    /// Enforce mode: the source is on the deny list.
    DropDenied = 2,
    /// Enforce mode: the service has an allow-list and the source is not on it.
    DropNotAllowed = 3,
    /// Enforce mode: the source sent handshake initiations faster than the limit.
    DropRateLimited = 4,
}

/// Number of [`Action`] values.
pub const ACTIONS: usize = 5;

impl Action {
    pub const ALL: [Action; ACTIONS] = [
        Action::Pass,
        Action::DropMalformed,
        Action::DropDenied,
        Action::DropNotAllowed,
        Action::DropRateLimited,
    ];

    /// The name used in counters, metrics and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::DropMalformed => "drop_malformed",
            Action::DropDenied => "drop_denied",
            Action::DropNotAllowed => "drop_not_allowed",
            Action::DropRateLimited => "drop_rate_limited",
        }
    }

    pub const fn from_index(index: u8) -> Option<Action> {
        if (index as usize) < ACTIONS {
            Some(Self::ALL[index as usize])
        } else {
            None
        }
    }
}

/// Slots in [`MAP_COUNTERS`].
pub const COUNTER_SLOTS: u32 = (SERVICES * KINDS * ACTIONS) as u32;

/// The slot of (service, kind, action) in [`MAP_COUNTERS`].
#[inline(always)]
pub const fn counter_index(service: Service, kind: Kind, action: Action) -> u32 {
    ((service as u32 * KINDS as u32) + kind as u32) * ACTIONS as u32 + action as u32
}

/// The (service, kind, action) of a slot in [`MAP_COUNTERS`].
pub const fn counter_key(index: u32) -> (Service, Kind, Action) {
    let action = (index % ACTIONS as u32) as u8;
    let kind = ((index / ACTIONS as u32) % KINDS as u32) as u8;
    let service = (index / (ACTIONS * KINDS) as u32) as u8;
    match (
        Service::from_index(service),
        Kind::from_index(kind),
        Action::from_index(action),
    ) {
        (Some(s), Some(k), Some(a)) => (s, k, a),
        _ => panic!("counter index out of range"),
    }
}

/// Packets and bytes (whole frames) of one counter slot on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

impl core::ops::Add for Counter {
    type Output = Counter;

    fn add(self, other: Counter) -> Counter {
        Counter {
            packets: self.packets + other.packets,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// [`XdpConfig::mode`]: count only, pass everything.
pub const MODE_MONITOR: u32 = 0;
/// [`XdpConfig::mode`]: drop malformed, denied, not-allowed and rate-limited VPN packets.
pub const MODE_ENFORCE: u32 = 1;

/// Run-time settings of the program, changed by user space without reloading it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpConfig {
    /// [`MODE_MONITOR`] or [`MODE_ENFORCE`].
    pub mode: u32,
    /// Bit `1 << service` set: that service only accepts sources on the allow-list.
    pub allow_services: u32,
    pub wireguard_port: u16,
    pub ike_port: u16,
    pub natt_port: u16,
    pub _pad: u16,
    /// Token-bucket cost of one initial message per source, in nanoseconds of credit
    /// (`1e9 / rate`); 0 disables the rate limit.
    pub rate_cost_ns: u64,
    /// Bucket size in nanoseconds of credit (`burst * rate_cost_ns`).
    pub rate_burst_ns: u64,
}

impl Default for XdpConfig {
    fn default() -> Self {
        XdpConfig {
            mode: MODE_MONITOR,
            allow_services: 0,
            wireguard_port: crate::Ports::DEFAULT_WIREGUARD,
            ike_port: crate::Ports::DEFAULT_IKE,
            natt_port: crate::Ports::DEFAULT_NATT,
            _pad: 0,
            rate_cost_ns: 0,
            rate_burst_ns: 0,
        }
    }
}

impl XdpConfig {
    #[inline(always)]
    pub const fn ports(&self) -> crate::Ports {
        crate::Ports {
            wireguard: self.wireguard_port,
            ike: self.ike_port,
            natt: self.natt_port,
        }
    }
}

/// Per-source statistics, in [`MAP_SOURCES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) of the first and the latest packet.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// SPI of the latest ESP or ESP-in-UDP packet.
    pub last_spi: u32,
    pub last_service: u8,
    pub last_kind: u8,
    pub last_action: u8,
    pub _pad: u8,
}

/// An address as LPM-trie key data: the bytes in network order (each word of a
/// [`crate::classify::Address`] passed through `u32::to_be`). IPv4 prefixes are keyed in the
/// mapped range: prefix length `96 + len`.
pub type LpmAddress = [u32; 4];

/// Transport data (WireGuard data, ESP, ESP-in-UDP) from one source, accumulated per CPU
/// while that source keeps sending, and added to [`MAP_SOURCES`] when another source sends or
/// after [`PENDING_FLUSH_PACKETS`]. A steady flow so costs no hash lookup and no clock read per
/// packet; user space adds the pending slots when it reads the table, so counts stay exact.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingSource {
    pub source: crate::classify::Address,
    /// 0: the slot is empty.
    pub packets: u64,
    pub bytes: u64,
    /// `bpf_ktime_get_ns` of the slot's first packet.
    pub first_ns: u64,
    pub last_spi: u32,
    pub last_service: u8,
    pub last_kind: u8,
    pub _pad: [u8; 2],
}

/// Key data of [`MAP_ALLOW`]: the service (a network-order word), then the address. The LPM
/// prefix length is `32 + address prefix length`.
pub type AllowKey = [u32; 5];

/// The [`LpmAddress`] of an address.
#[inline(always)]
pub fn lpm_address(a: crate::classify::Address) -> LpmAddress {
    [a[0].to_be(), a[1].to_be(), a[2].to_be(), a[3].to_be()]
}

/// The [`AllowKey`] data of a service and address.
#[inline(always)]
pub fn allow_key(service: Service, a: crate::classify::Address) -> AllowKey {
    let l = lpm_address(a);
    [(service as u32).to_be(), l[0], l[1], l[2], l[3]]
}

/// Token-bucket state per source, in [`MAP_RATE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateState {
    /// Credit in nanoseconds.
    pub credit_ns: u64,
    pub last_ns: u64,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` integers with explicit padding; every bit pattern is valid.
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::XdpConfig {}
    unsafe impl aya::Pod for super::SourceStats {}
    unsafe impl aya::Pod for super::RateState {}
    unsafe impl aya::Pod for super::PendingSource {}
}
