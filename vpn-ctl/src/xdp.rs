//! The WAN XDP program in user space: load it, set its policy, attach it, read its counters.
//!
//! The object is built from `vpn-ebpf` by this crate's build script and embedded in the
//! binary, so nothing has to be installed next to `vpn-ctl`.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, lpm_trie::Key},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use ipnet::IpNet;
use serde::Serialize;
use vpn_common::{
    ACTIONS, Action, Address, AllowKey, COUNTER_SLOTS, Counter, Kind, LpmAddress, MAP_ALLOW,
    MAP_CONFIG, MAP_COUNTERS, MAP_DENY, MAP_PENDING, MAP_SOURCES, MODE_ENFORCE, MODE_MONITOR,
    PROG_EMPTY, PROG_WAN, PendingSource, Ports, Service, SourceStats, XdpConfig,
    address_from_octets, address_octets, counter_key, lpm_address,
};

/// The eBPF object (`vpn-ebpf`), built by `build.rs`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vpn-ebpf"));

/// What the program does with VPN traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Count only; every packet is passed.
    #[default]
    Monitor,
    /// Drop malformed VPN packets, denied sources, sources missing from a service's
    /// allow-list and sources over the handshake rate limit.
    Enforce,
}

/// How to attach to the interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic mode when the driver cannot.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (SKB) mode: works on every interface, costs more per packet.
    Generic,
}

/// The mode the program ended up attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attached {
    Native,
    Generic,
}

impl Attached {
    pub fn name(self) -> &'static str {
        match self {
            Attached::Native => "native",
            Attached::Generic => "generic",
        }
    }
}

/// A per-source rate limit of session-opening messages (WireGuard handshake initiations and
/// IKE initial exchanges).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// Everything that decides the program's verdicts; changeable while it is attached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    pub ports: Ports,
    /// Sources dropped on every VPN service (enforce mode).
    pub deny: Vec<IpNet>,
    /// Per service: when a service has entries, only those sources may use it (enforce mode).
    pub allow: Vec<(Service, IpNet)>,
    pub rate_limit: Option<RateLimit>,
}

impl Policy {
    fn config(&self) -> XdpConfig {
        let allow_services = self
            .allow
            .iter()
            .fold(0u32, |mask, (service, _)| mask | 1 << *service as u32);
        let (rate_cost_ns, rate_burst_ns) = match self.rate_limit {
            Some(RateLimit { per_second, burst }) if per_second > 0 => {
                let cost = 1_000_000_000 / u64::from(per_second);
                (cost, cost * u64::from(burst.max(1)))
            }
            _ => (0, 0),
        };
        XdpConfig {
            mode: match self.mode {
                Mode::Monitor => MODE_MONITOR,
                Mode::Enforce => MODE_ENFORCE,
            },
            allow_services,
            wireguard_port: self.ports.wireguard,
            ike_port: self.ports.ike,
            natt_port: self.ports.natt,
            _pad: 0,
            rate_cost_ns,
            rate_burst_ns,
        }
    }
}

/// An address as the program keys it: IPv4 as an IPv4-mapped IPv6 address.
fn address_key(addr: IpAddr) -> Address {
    address_from_octets(match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    })
}

fn address_from_key(key: Address) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(address_octets(key));
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// A prefix as an LPM key over the mapped address space.
fn prefix_key(net: IpNet) -> (Address, u32) {
    let net = net.trunc();
    let len = match net {
        IpNet::V4(n) => 96 + u32::from(n.prefix_len()),
        IpNet::V6(n) => u32::from(n.prefix_len()),
    };
    (address_key(net.addr()), len)
}

fn allow_prefix_key(service: Service, net: IpNet) -> Key<AllowKey> {
    let (addr, len) = prefix_key(net);
    Key::new(32 + len, vpn_common::allow_key(service, addr))
}

/// The classifier, loaded into the kernel and possibly attached to an interface.
pub struct WanProgram {
    ebpf: Ebpf,
    attachment: Option<(XdpLinkId, Attached)>,
}

impl std::fmt::Debug for WanProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WanProgram")
            .field("attachment", &self.attachment)
            .finish_non_exhaustive()
    }
}

impl WanProgram {
    /// Loads the program (and the empty baseline program) into the kernel, with a per-source
    /// table of `sources` entries, in monitor mode on the default ports.
    ///
    /// Like `bpftool prog load`; nothing is attached yet.
    pub fn load(sources: u32) -> anyhow::Result<Self> {
        let mut ebpf = EbpfLoader::new()
            // The object carries no CO-RE relocations, so kernel BTF is never needed.
            .btf(None)
            .map_max_entries(MAP_SOURCES, sources.max(1))
            .load(OBJECT)
            .context(
                "loading the XDP program's maps failed; the kernel needs BPF support \
                 (CONFIG_BPF_SYSCALL) and vpn-ctl must run as root (CAP_BPF and CAP_NET_ADMIN)",
            )?;
        for name in [PROG_WAN, PROG_EMPTY] {
            let program: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("program {name} missing from the embedded object"))?
                .try_into()?;
            program.load().map_err(|e| verifier_error(name, e))?;
        }
        let mut wan = WanProgram {
            ebpf,
            attachment: None,
        };
        wan.set_policy(&Policy::default())?;
        Ok(wan)
    }

    /// Sets the mode, ports, prefix lists and rate limit. Takes effect on the next packet;
    /// the program is not reloaded and its counters are kept.
    ///
    /// Prefix lists are updated as a diff (add the new entries, then remove the stale ones),
    /// so an allow-list is never empty for a moment while it is being replaced.
    pub fn set_policy(&mut self, policy: &Policy) -> anyhow::Result<()> {
        let context = "updating the XDP program's policy maps";
        {
            let mut deny: LpmTrie<&mut MapData, LpmAddress, u8> = self.map_mut(MAP_DENY)?;
            let wanted: BTreeSet<_> = policy.deny.iter().map(|n| prefix_key(*n)).collect();
            let keys = wanted.iter().map(|(a, l)| Key::new(*l, lpm_address(*a)));
            sync_trie(&mut deny, keys).context(context)?;
        }
        {
            let mut allow: LpmTrie<&mut MapData, AllowKey, u8> = self.map_mut(MAP_ALLOW)?;
            let wanted = policy.allow.iter().map(|(s, n)| allow_prefix_key(*s, *n));
            sync_trie(&mut allow, wanted).context(context)?;
        }
        let mut config: Array<&mut MapData, XdpConfig> = self.map_mut(MAP_CONFIG)?;
        config.set(0, policy.config(), 0).context(context)?;
        Ok(())
    }

    /// Attaches to `interface` (`ip link set dev IFACE xdpdrv|xdpgeneric obj ...`).
    ///
    /// In [`AttachMode::Auto`], native mode is tried first and generic mode used when the
    /// driver cannot run XDP itself. The attachment is a BPF link owned by this process: it
    /// goes away when the program is dropped or the process exits, however it exits.
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> anyhow::Result<Attached> {
        if let Some((_, attached)) = self.attachment {
            bail!(
                "the XDP program is already attached ({} mode)",
                attached.name()
            );
        }
        let program: &mut Xdp = self
            .ebpf
            .program_mut(PROG_WAN)
            .context(PROG_WAN)?
            .try_into()?;
        let (id, attached) = match mode {
            AttachMode::Native => (
                program.attach(interface, XdpMode::Driver).map_err(|e| {
                    attach_error(interface, "native", e)
                        .context("the driver may not support native XDP; try --xdp-mode generic")
                })?,
                Attached::Native,
            ),
            AttachMode::Generic => (
                program
                    .attach(interface, XdpMode::Skb)
                    .map_err(|e| attach_error(interface, "generic", e))?,
                Attached::Generic,
            ),
            AttachMode::Auto => match program.attach(interface, XdpMode::Driver) {
                Ok(id) => (id, Attached::Native),
                Err(native) => {
                    log::info!(
                        "{interface}: native XDP not available ({native}); using generic mode"
                    );
                    let id = program
                        .attach(interface, XdpMode::Skb)
                        .map_err(|e| attach_error(interface, "generic", e))?;
                    (id, Attached::Generic)
                }
            },
        };
        self.attachment = Some((id, attached));
        Ok(attached)
    }

    /// Detaches from the interface (`ip link set dev IFACE xdp off`, for this program only).
    pub fn detach(&mut self) -> anyhow::Result<()> {
        if let Some((id, _)) = self.attachment.take() {
            let program: &mut Xdp = self
                .ebpf
                .program_mut(PROG_WAN)
                .context(PROG_WAN)?
                .try_into()?;
            program
                .detach(id)
                .context("detaching the XDP program failed")?;
        }
        Ok(())
    }

    /// The counters, summed over CPUs (`bpftool map dump name COUNTERS`).
    pub fn counters(&self) -> anyhow::Result<Counters> {
        let map: PerCpuArray<&MapData, Counter> = self.map(MAP_COUNTERS)?;
        let mut counters = Counters::default();
        for index in 0..COUNTER_SLOTS {
            let per_cpu = map
                .get(&index, 0)
                .with_context(|| format!("reading XDP counter slot {index}"))?;
            let sum = per_cpu.iter().fold(Counter::default(), |acc, c| acc + *c);
            if sum.packets != 0 {
                counters.0.insert(counter_key(index), sum);
            }
        }
        Ok(counters)
    }

    /// The per-source table, most recently seen first (`bpftool map dump name SOURCES`).
    pub fn sources(&self) -> anyhow::Result<Vec<Source>> {
        let map: HashMap<&MapData, Address, SourceStats> = self.map(MAP_SOURCES)?;
        let now = monotonic_ns();
        let mut table: BTreeMap<Address, SourceStats> = BTreeMap::new();
        for entry in map.iter() {
            // An LRU entry evicted between the key walk and the lookup is simply skipped.
            let Ok((key, s)) = entry else { continue };
            table.insert(key, s);
        }
        // Transport data not yet added to the table by the program (one slot per CPU).
        let pending: PerCpuArray<&MapData, PendingSource> = self.map(MAP_PENDING)?;
        for p in pending
            .get(&0, 0)
            .context("reading the pending source slots")?
            .iter()
        {
            if p.packets == 0 {
                continue;
            }
            let s = table.entry(p.source).or_insert(SourceStats {
                first_seen_ns: p.first_ns,
                last_seen_ns: p.first_ns,
                last_action: Action::Pass as u8,
                ..SourceStats::default()
            });
            s.packets += p.packets;
            s.bytes += p.bytes;
            // The slot's later packets carry no time; its first one is a lower bound.
            if p.first_ns >= s.last_seen_ns {
                s.last_seen_ns = p.first_ns;
                s.last_service = p.last_service;
                s.last_kind = p.last_kind;
                s.last_action = Action::Pass as u8;
            }
            if p.last_spi != 0 {
                s.last_spi = p.last_spi;
            }
        }
        let mut sources = Vec::new();
        for (key, s) in table {
            sources.push(Source {
                address: address_from_key(key),
                packets: s.packets,
                bytes: s.bytes,
                drops: s.drops,
                first_seen_secs_ago: ns_to_secs(now.saturating_sub(s.first_seen_ns)),
                last_seen_secs_ago: ns_to_secs(now.saturating_sub(s.last_seen_ns)),
                last_service: Service::from_index(s.last_service).map_or("?", Service::name),
                last_kind: Kind::from_index(s.last_kind).map_or("?", Kind::name),
                last_action: Action::from_index(s.last_action).map_or("?", Action::name),
                last_spi: (s.last_spi != 0).then_some(s.last_spi),
            });
        }
        sources.sort_by(|a, b| a.last_seen_secs_ago.total_cmp(&b.last_seen_secs_ago));
        Ok(sources)
    }

    /// Runs the classifier once on `frame` with `BPF_PROG_TEST_RUN` and returns the XDP
    /// action (`XDP_PASS` = 2, `XDP_DROP` = 1). Counters and tables are updated as for a
    /// real packet.
    pub fn test_run(&self, frame: &[u8]) -> anyhow::Result<u32> {
        Ok(self.run(PROG_WAN, frame, 1)?.0)
    }

    /// Runs `program` ([`vpn_common::PROG_WAN`] or [`vpn_common::PROG_EMPTY`]) `repeat` times
    /// on `frame` in the kernel and returns the action and the mean time per run.
    pub fn run(&self, program: &str, frame: &[u8], repeat: u32) -> anyhow::Result<(u32, Duration)> {
        let prog: &Xdp = self
            .ebpf
            .program(program)
            .with_context(|| format!("no program {program}"))?
            .try_into()?;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = repeat;
        let result = prog
            .test_run(opts)
            .with_context(|| format!("BPF_PROG_TEST_RUN of {program} failed"))?;
        Ok((result.return_value, result.duration))
    }

    fn map<'a, T>(&'a self, name: &str) -> anyhow::Result<T>
    where
        T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self
            .ebpf
            .map(name)
            .with_context(|| format!("map {name} missing"))?;
        T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
    }

    fn map_mut<'a, T>(&'a mut self, name: &str) -> anyhow::Result<T>
    where
        T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self
            .ebpf
            .map_mut(name)
            .with_context(|| format!("map {name} missing"))?;
        T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
    }
}

/// Makes an LPM trie hold exactly `wanted`: inserts first, then removes what is stale.
fn sync_trie<K: aya::Pod + Ord>(
    trie: &mut LpmTrie<&mut MapData, K, u8>,
    wanted: impl Iterator<Item = Key<K>>,
) -> anyhow::Result<()> {
    let wanted: BTreeMap<(u32, K), Key<K>> =
        wanted.map(|k| ((k.prefix_len(), k.data()), k)).collect();
    for key in wanted.values() {
        trie.insert(key, 1, 0)?;
    }
    let stale: Vec<Key<K>> = trie
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !wanted.contains_key(&(k.prefix_len(), k.data())))
        .collect();
    for key in stale {
        trie.remove(&key)?;
    }
    Ok(())
}

fn verifier_error(program: &str, e: ProgramError) -> anyhow::Error {
    // The verifier log is long; keep its tail, which names the failing instruction.
    let detail = match &e {
        ProgramError::LoadError { verifier_log, .. } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        }
        other => other.to_string(),
    };
    anyhow!(
        "the kernel refused to load the XDP program {program}: {detail}\n\
         vpn-ctl needs root (CAP_BPF, CAP_NET_ADMIN) and a kernel with XDP support (4.8 or newer)"
    )
}

fn attach_error(interface: &str, mode: &str, e: ProgramError) -> anyhow::Error {
    let detail = match &e {
        ProgramError::UnknownInterface { .. } => {
            return anyhow!(
                "interface {interface} does not exist (it may have vanished); `ip link` lists the interfaces"
            );
        }
        ProgramError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::EBUSY) => {
            "another XDP program is attached; detach it or run with --force".to_string()
        }
        other => format!(
            "{other}: {}",
            std::error::Error::source(other).map_or(String::new(), |s| s.to_string())
        ),
    };
    anyhow!("attaching the XDP program to {interface} in {mode} mode failed: {detail}")
}

/// The kernel's `CLOCK_MONOTONIC`, the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn ns_to_secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// The program's counters, summed over CPUs; only non-zero slots are present.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub BTreeMap<(Service, Kind, Action), Counter>);

impl Counters {
    /// All packets of a service, whatever their kind and action.
    pub fn service(&self, service: Service) -> Counter {
        self.sum(|s, _, _| s == service)
    }

    /// All packets of a service and kind, whatever the action.
    pub fn kind(&self, service: Service, kind: Kind) -> Counter {
        self.sum(|s, k, _| s == service && k == kind)
    }

    /// All dropped packets.
    pub fn drops(&self) -> Counter {
        self.sum(|_, _, a| a != Action::Pass)
    }

    /// One slot.
    pub fn get(&self, service: Service, kind: Kind, action: Action) -> Counter {
        self.0
            .get(&(service, kind, action))
            .copied()
            .unwrap_or_default()
    }

    pub fn sum(&self, mut pred: impl FnMut(Service, Kind, Action) -> bool) -> Counter {
        self.0
            .iter()
            .filter(|((s, k, a), _)| pred(*s, *k, *a))
            .fold(Counter::default(), |acc, (_, c)| acc + *c)
    }

    /// Rows for display and JSON, in (service, kind, action) order.
    pub fn rows(&self) -> Vec<CounterRow> {
        self.0
            .iter()
            .map(|((s, k, a), c)| CounterRow {
                service: s.name(),
                kind: k.name(),
                action: a.name(),
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect()
    }
}

/// One counter slot, named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CounterRow {
    pub service: &'static str,
    pub kind: &'static str,
    pub action: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// One entry of the per-source table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Source {
    pub address: IpAddr,
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
    pub first_seen_secs_ago: f64,
    pub last_seen_secs_ago: f64,
    pub last_service: &'static str,
    pub last_kind: &'static str,
    pub last_action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_spi: Option<u32>,
}

const _: () = assert!(ACTIONS == Action::ALL.len());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_prefixes_are_keyed_in_the_mapped_range() {
        let (addr, len) = prefix_key("192.0.2.77/24".parse().unwrap());
        assert_eq!(len, 120);
        assert_eq!(&address_octets(addr)[10..], &[0xff, 0xff, 192, 0, 2, 0]);
        // LPM key data is in network byte order in memory.
        let lpm = lpm_address(addr);
        assert_eq!(lpm[3].to_ne_bytes(), [192, 0, 2, 0]);
        assert_eq!(
            address_from_key(addr),
            "192.0.2.0".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn ipv6_prefixes_keep_their_length() {
        let (addr, len) = prefix_key("2001:db8::1/48".parse().unwrap());
        assert_eq!(len, 48);
        assert_eq!(
            address_from_key(addr),
            "2001:db8::".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn allow_keys_put_the_service_first() {
        let key = allow_prefix_key(Service::Ike, "10.0.0.0/8".parse().unwrap());
        assert_eq!(key.prefix_len(), 32 + 96 + 8);
        assert_eq!(key.data()[0].to_ne_bytes(), [0, 0, 0, Service::Ike as u8]);
    }

    #[test]
    fn policy_maps_to_the_kernel_config() {
        let policy = Policy {
            mode: Mode::Enforce,
            ports: Ports {
                wireguard: 51821,
                ike: 500,
                natt: 4500,
            },
            deny: vec![],
            allow: vec![(Service::WireGuard, "10.0.0.0/8".parse().unwrap())],
            rate_limit: Some(RateLimit {
                per_second: 10,
                burst: 5,
            }),
        };
        let c = policy.config();
        assert_eq!(c.mode, MODE_ENFORCE);
        assert_eq!(c.wireguard_port, 51821);
        assert_eq!(c.allow_services, 1 << Service::WireGuard as u32);
        assert_eq!(c.rate_cost_ns, 100_000_000);
        assert_eq!(c.rate_burst_ns, 500_000_000);
    }
}
