//! Prometheus metrics: what `vpn-ctl daemon` serves on `/metrics` (default
//! `127.0.0.1:9586`, the port of prometheus_wireguard_exporter, whose metric names most
//! Grafana dashboards use).
//!
//! Everything is read at scrape time by a [`Source`]: the real one, [`SystemSource`], reads
//! the kernel over netlink (WireGuard over generic netlink or the userspace backend's UAPI
//! socket, XFRM SAs, `sock_diag` for listeners), `/proc/net/xfrm_stat` and the XDP program's
//! maps; it never starts a process. A [`Snapshot`] is plain data, so [`render`] is a pure
//! function and the tests feed it fake sources and compare the text exactly.
//!
//! | metric | labels |
//! |---|---|
//! | `wireguard_sent_bytes_total`, `wireguard_received_bytes_total` | `interface`, `public_key`, `allowed_ips`, `friendly_name` |
//! | `wireguard_latest_handshake_seconds` (UNIX time, 0 = never) | same |
//! | `wireguard_latest_handshake_delay_seconds` (age; peers that had a handshake) | same |
//! | `vpnctl_wireguard_interface_up`, `vpnctl_wireguard_peers` | `interface` |
//! | `vpnctl_metrics_peers_omitted` (peers beyond [`Options::max_peer_series`]) | |
//! | `ipsec_site_up` | `site` |
//! | `ipsec_sa_installed`, `ipsec_sa_bytes_total`, `ipsec_sa_packets_total`, `ipsec_sa_established_seconds` | `site`, `spi`, `direction` |
//! | `vpnctl_wan_packets_total`, `vpnctl_wan_bytes_total` | `interface`, `service`, `kind`, `action` |
//! | `vpnctl_listener_up` | `service`, `port`, `protocol` |
//! | `vpnctl_xfrm_errors_total` | `counter` (`/proc/net/xfrm_stat` names) |
//! | `vpnctl_scrape_collector_success` | `collector` |
//! | `vpnctl_scrape_duration_seconds`, `vpnctl_build_info{version}` | |
//!
//! No label carries a source address or port: their number is unbounded.

mod http;
mod render;
mod system;
#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime};

use ipnet::IpNet;

pub use self::{
    http::{CONTENT_TYPE, Limits, serve, serve_with},
    render::render,
    system::SystemSource,
};
use crate::{
    ike::renewal::{Renewal, Tally},
    xdp::Counters,
    xfrm::plan::SaDir,
};

/// The default listen address of `/metrics` (prometheus_wireguard_exporter's port).
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9586";

/// How the exposition is shaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// At most this many WireGuard peers get per-peer series (over all interfaces, in the
    /// order the devices list them); the rest are counted in `vpnctl_metrics_peers_omitted`.
    /// Default: 10,000.
    pub max_peer_series: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_peer_series: 10_000,
        }
    }
}

/// Where a scrape's numbers come from.
pub trait Source: Send + Sync + 'static {
    /// Reads everything a scrape shows, now. May block (netlink, sockets): [`serve`] calls it
    /// on tokio's blocking pool.
    fn collect(&self) -> anyhow::Result<Snapshot>;
}

/// Everything one scrape shows, as plain data.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// When it was read; handshake ages are relative to it.
    pub time: SystemTime,
    /// The config's WireGuard interfaces, in config order.
    pub wireguard: Vec<WgInterface>,
    /// The config's IPsec sites, in config order.
    pub ipsec: Vec<IpsecSite>,
    /// Per IKE site and kind, the renewals charon reported since the daemon started.
    pub renewals: Vec<(String, Renewal, Tally)>,
    /// The XDP program's counters on the WAN port, when it runs.
    pub wan: Option<Wan>,
    /// Whether something listens on each VPN port the config uses.
    pub listeners: Vec<Listener>,
    /// `/proc/net/xfrm_stat`, in the kernel's order; empty when unreadable.
    pub xfrm_errors: Vec<(String, u64)>,
    /// Which parts were read and whether that worked.
    pub collectors: Vec<Collector>,
    /// How long collecting took; [`serve`] measures and fills it in.
    pub duration: Option<Duration>,
}

impl Snapshot {
    /// An empty snapshot taken at `time`.
    pub fn new(time: SystemTime) -> Snapshot {
        Snapshot {
            time,
            wireguard: Vec::new(),
            ipsec: Vec::new(),
            renewals: Vec::new(),
            wan: None,
            listeners: Vec::new(),
            xfrm_errors: Vec::new(),
            collectors: Vec::new(),
            duration: None,
        }
    }
}

/// One WireGuard interface of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgInterface {
    pub name: String,
    /// The link exists, is up, and its device could be read.
    pub up: bool,
    /// In the order the device lists them.
    pub peers: Vec<WgPeer>,
}

/// One peer as the device reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeer {
    /// Base64, as `wg` prints it.
    pub public_key: String,
    /// The peer's `name` in the config; empty for a peer the config does not have.
    pub friendly_name: String,
    pub allowed_ips: Vec<IpNet>,
    /// `None`: never.
    pub latest_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// One IPsec site of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsecSite {
    pub name: String,
    /// Its SAs: the ones the config expects (static keying, installed or not) or the ones the
    /// IKE daemon installed.
    pub sas: Vec<IpsecSa>,
}

/// One SA (one direction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsecSa {
    /// `None` when it cannot be told from the gateways.
    pub direction: Option<SaDir>,
    pub spi: u32,
    pub installed: bool,
    pub bytes: u64,
    pub packets: u64,
    /// Since the SA was added to the kernel.
    pub age: Option<Duration>,
}

/// The XDP counters of the WAN port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wan {
    pub interface: String,
    pub counters: Counters,
}

/// A VPN port and whether some socket listens on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `wireguard`, `ike`, `natt` (the XDP program's service names).
    pub service: &'static str,
    pub port: u16,
    /// `udp`.
    pub protocol: &'static str,
    pub up: bool,
}

/// One part of the collection: `wireguard`, `ipsec`, `xfrm_stat`, `listeners`, `xdp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collector {
    pub name: &'static str,
    pub ok: bool,
}
