//! The vpn-ctl WAN classifier.
//!
//! Classifies every frame with the shared rules of `vpn_common::classify`, counts VPN traffic
//! per (service, kind, action) in a per-CPU array and per source in an LRU table, and in
//! enforce mode drops malformed, denied, not-allowed and rate-limited VPN packets. Anything
//! that is not VPN traffic is passed untouched, in every mode.
//!
//! No CO-RE relocations and legacy map definitions only, so the object loads on kernels
//! without BTF (most OpenWrt builds).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::{Array, LpmTrie, LruHashMap, PerCpuArray, lpm_trie::Key},
    programs::XdpContext,
};
use vpn_common::{
    Action, Address, AllowKey, COUNTER_SLOTS, Classified, Counter, DEFAULT_SOURCES, Kind,
    LpmAddress, MODE_ENFORCE, PENDING_FLUSH_PACKETS, PREFIX_ENTRIES, Packet, PendingSource,
    RATE_ENTRIES, RateState, SourceStats, XdpConfig, allow_key, classify, counter_index,
    lpm_address, rate,
};

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

#[map(name = "CONFIG")]
static CONFIG: Array<XdpConfig> = Array::with_max_entries(1, 0);

/// Resized by user space at load time (`--sources`).
#[map(name = "SOURCES")]
static SOURCES: LruHashMap<Address, SourceStats> = LruHashMap::with_max_entries(DEFAULT_SOURCES, 0);

#[map(name = "DENY")]
static DENY: LpmTrie<LpmAddress, u8> = LpmTrie::with_max_entries(PREFIX_ENTRIES, BPF_F_NO_PREALLOC);

#[map(name = "ALLOW")]
static ALLOW: LpmTrie<AllowKey, u8> = LpmTrie::with_max_entries(PREFIX_ENTRIES, BPF_F_NO_PREALLOC);

#[map(name = "PENDING")]
static PENDING: PerCpuArray<PendingSource> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "RATE")]
static RATE: LruHashMap<Address, RateState> = LruHashMap::with_max_entries(RATE_ENTRIES, 0);

/// LPM tries must be created without preallocation.
const BPF_F_NO_PREALLOC: u32 = 1;

/// The frame, bounds-checked against `data_end` on every load.
struct Frame<'a>(&'a XdpContext);

impl Frame<'_> {
    /// A pointer to a `T` at `offset`, if the frame holds it.
    #[inline(always)]
    fn at<T>(&self, offset: usize) -> Option<*const T> {
        let start = self.0.data();
        let end = self.0.data_end();
        // LLVM rewrites `p + 1 > end` as `p >= end`, from which the verifier learns no packet
        // range (a zero offset with an open right bound gives none). A volatile read of the
        // length keeps the `+ 1` on the pointer; the verifier still sees the constant.
        let size = if size_of::<T>() == 1 {
            let size = 1usize;
            // SAFETY: a read of a local.
            unsafe { core::ptr::read_volatile(&size) }
        } else {
            size_of::<T>()
        };
        if start + offset + size > end {
            return None;
        }
        Some((start + offset) as *const T)
    }
}

impl Packet for Frame<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.0.data_end() - self.0.data()
    }

    #[inline(always)]
    fn u8_at(&self, offset: usize) -> Option<u8> {
        // SAFETY: `at` checked the byte against `data_end`.
        self.at::<u8>(offset).map(|p| unsafe { *p })
    }

    // Plain (aligned) loads, as C XDP programs do: header fields sit at their natural
    // alignment once the driver's NET_IP_ALIGN is counted, the verifier checks that where the
    // architecture needs it, and an unaligned load would be compiled to one load per byte.
    #[inline(always)]
    fn u16_at(&self, offset: usize) -> Option<u16> {
        // SAFETY: `at` checked the bytes against `data_end`.
        self.at::<u16>(offset)
            .map(|p| u16::from_be(unsafe { p.read() }))
    }

    #[inline(always)]
    fn u32_at(&self, offset: usize) -> Option<u32> {
        // SAFETY: `at` checked the bytes against `data_end`.
        self.at::<u32>(offset)
            .map(|p| u32::from_be(unsafe { p.read() }))
    }
}

#[xdp]
pub fn vpn_wan(ctx: XdpContext) -> u32 {
    let frame = Frame(&ctx);
    let Some(config) = CONFIG.get(0) else {
        return XDP_PASS;
    };
    let Some(c) = classify(&frame, &config.ports()) else {
        return XDP_PASS;
    };
    let bytes = frame.len() as u64;
    let action = if config.mode == MODE_ENFORCE {
        enforce(config, &c)
    } else {
        Action::Pass
    };
    count(&c, action, bytes);
    if action == Action::Pass && matches!(c.kind, Kind::WgData | Kind::Esp | Kind::EspInUdp) {
        record_data(&c, bytes);
    } else {
        let update = SourceUpdate {
            source: c.source,
            packets: 1,
            bytes,
            dropped: (action != Action::Pass) as u64,
            spi: c.spi,
            service: c.service as u8,
            kind: c.kind as u8,
            action: action as u8,
        };
        record_source(&update, now());
    }
    match action {
        Action::Pass => XDP_PASS,
        _ => XDP_DROP,
    }
}

/// The baseline for the benchmark: the cheapest possible XDP program.
#[xdp]
pub fn vpn_empty(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

/// Enforce mode's decision, in order: deny list, allow-list, malformed, rate limit.
/// Fragments cannot be attributed to a service and are never dropped.
#[inline(always)]
fn enforce(config: &XdpConfig, c: &Classified) -> Action {
    if c.kind == Kind::Fragment {
        return Action::Pass;
    }
    if DENY.get(Key::new(128, lpm_address(c.source))).is_some() {
        return Action::DropDenied;
    }
    if config.allow_services & (1 << c.service as u32) != 0 {
        if ALLOW
            .get(Key::new(160, allow_key(c.service, c.source)))
            .is_none()
        {
            return Action::DropNotAllowed;
        }
    }
    if c.kind == Kind::Malformed {
        return Action::DropMalformed;
    }
    if c.initial && config.rate_cost_ns != 0 {
        let now = now();
        match RATE.get_ptr_mut(c.source) {
            // SAFETY: a valid map value pointer; concurrent updates may lose a token, which
            // only makes the limit slightly more lenient.
            Some(state) => {
                if !rate::take(
                    unsafe { &mut *state },
                    now,
                    config.rate_cost_ns,
                    config.rate_burst_ns,
                ) {
                    return Action::DropRateLimited;
                }
            }
            None => {
                let state = rate::new_bucket(now, config.rate_cost_ns, config.rate_burst_ns);
                let _ = RATE.insert(c.source, state, 0);
            }
        }
    }
    Action::Pass
}

#[inline(always)]
fn count(c: &Classified, action: Action, bytes: u64) {
    if let Some(counter) = COUNTERS.get_ptr_mut(counter_index(c.service, c.kind, action)) {
        // SAFETY: per-CPU slot, no other writer while this program runs on this CPU.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds. Costs as much as the rest of the classifier on some
/// machines, so it is read only where a time is stored.
#[inline(always)]
fn now() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// Transport data: accumulate in this CPU's pending slot while the same source keeps sending;
/// add the slot to the source table when another source sends or the slot is full.
#[inline(always)]
fn record_data(c: &Classified, bytes: u64) {
    let Some(pending) = PENDING.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot; nothing else writes it while the program runs here.
    let p = unsafe { &mut *pending };
    if p.packets != 0 && p.packets < PENDING_FLUSH_PACKETS && p.source == c.source {
        p.packets += 1;
        p.bytes += bytes;
        p.last_kind = c.kind as u8;
        p.last_service = c.service as u8;
        if c.spi != 0 {
            p.last_spi = c.spi;
        }
        return;
    }
    let now = now();
    if p.packets != 0 {
        let update = SourceUpdate {
            source: p.source,
            packets: p.packets,
            bytes: p.bytes,
            dropped: 0,
            spi: p.last_spi,
            service: p.last_service,
            kind: p.last_kind,
            action: Action::Pass as u8,
        };
        record_source(&update, now);
    }
    *p = PendingSource {
        source: c.source,
        packets: 1,
        bytes,
        first_ns: now,
        last_spi: c.spi,
        last_service: c.service as u8,
        last_kind: c.kind as u8,
        _pad: [0; 2],
    };
}

/// Packets from one source to add to the source table.
struct SourceUpdate {
    source: Address,
    packets: u64,
    bytes: u64,
    dropped: u64,
    spi: u32,
    service: u8,
    kind: u8,
    action: u8,
}

#[inline(always)]
fn record_source(u: &SourceUpdate, now: u64) {
    match SOURCES.get_ptr_mut(u.source) {
        Some(s) => {
            // SAFETY: a valid map value pointer. Another CPU may update the same source at the
            // same time; these are diagnostic counters, so a rare lost increment is accepted
            // in exchange for not serialising the hot path.
            unsafe {
                (*s).packets += u.packets;
                (*s).bytes += u.bytes;
                (*s).drops += u.dropped;
                (*s).last_seen_ns = now;
                (*s).last_service = u.service;
                (*s).last_kind = u.kind;
                (*s).last_action = u.action;
                if u.spi != 0 {
                    (*s).last_spi = u.spi;
                }
            }
        }
        None => {
            let stats = SourceStats {
                packets: u.packets,
                bytes: u.bytes,
                drops: u.dropped,
                first_seen_ns: now,
                last_seen_ns: now,
                last_spi: u.spi,
                last_service: u.service,
                last_kind: u.kind,
                last_action: u.action,
                _pad: 0,
            };
            let _ = SOURCES.insert(u.source, stats, 0);
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
