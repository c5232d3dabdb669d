//! The command line.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use vpn_common::{Ports, Service};

use crate::{
    config, diag,
    wireguard::BackendChoice,
    xdp::{AttachMode, Mode, Policy, RateLimit},
};

/// A VPN control plane for Linux routers: kernel WireGuard and IPsec, an XDP view of the WAN
/// port, Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "vpn-ctl", version, propagate_version = true)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// The configuration file.
    #[arg(long, global = true, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch VPN packets arrive on the WAN port (XDP), check what listens on the VPN ports,
    /// and say what is wrong. Replaces `tcpdump -i wan udp port 51820` and `netstat -nulp`.
    Diag(DiagArgs),

    /// Bring the config's WireGuard interfaces up, or bring them in line with the config:
    /// only what differs is changed; a second run changes nothing.
    Up {
        /// kernel: the WireGuard module; userspace: vpn-ctl's built-in implementation on a
        /// TUN device; auto: the kernel's when it has the module.
        #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
        backend: BackendChoice,
    },

    /// Remove what `up` created (links, and with them their addresses and routes).
    Down,

    /// Interfaces and peers: endpoint, allowed IPs, latest handshake, transfer, and hints.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },

    /// Print a new private key (base64, as `wg genkey`).
    Genkey,

    /// Read a private key on stdin and print its public key (as `wg pubkey`).
    Pubkey,

    /// Print a new preshared key (as `wg genpsk`).
    Genpsk,

    /// Add or remove a road-warrior peer (phone, laptop) in the config file.
    Peer {
        #[command(subcommand)]
        action: PeerAction,
    },

    /// Turn another tool's WireGuard config into a vpn-ctl config (written to --config, with
    /// key files beside it; nothing is overwritten), reporting what could not be carried over.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },

    /// Watch the IPsec sites: ping each site's watchdog_probe through the tunnel, check its
    /// SAs, repair what can be repaired (with backoff), and say why a site was down.
    Watchdog {
        /// One pass, then exit: 0 when every site is up (after repairs), 1 otherwise.
        #[arg(long)]
        once: bool,
        /// Seconds between checks.
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        interval: u64,
    },

    /// Run as a service: converge to the config at start, on SIGHUP (a diff: unchanged peers
    /// keep their sessions), when a managed link, address, route or SA is changed underneath,
    /// and every `[daemon] tick`; re-resolve stale peers' DNS endpoints; run the IPsec
    /// watchdog; serve Prometheus metrics; count VPN packets on the WAN port (XDP). SIGTERM
    /// stops it and leaves the tunnels up (`vpn-ctl down` removes them).
    Daemon {
        /// Which WireGuard implementation links it creates get (as for `up`).
        #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
        backend: BackendChoice,
    },

    /// Write the import file another device needs for a connection of the config.
    Export {
        #[command(subcommand)]
        target: ExportTarget,
    },

    /// Run a userspace WireGuard device in this process (started by `up --backend
    /// userspace`; not for direct use).
    #[command(hide = true)]
    UserspaceDevice { name: String },
}

#[derive(Debug, Subcommand)]
pub enum PeerAction {
    /// Add a peer: picks its tunnel address, makes its key pair and a preshared key, adds it
    /// to the config (comments and layout kept), and prints the client's wg-quick config and
    /// a QR code to scan with the WireGuard app. Then run `vpn-ctl up`.
    Add {
        /// A name for the peer (letters, digits, `-`, `_`, `.`), e.g. anna-phone.
        name: String,
        /// The WireGuard interface (needed when the config has several).
        #[arg(long, value_name = "IFACE")]
        interface: Option<String>,
        /// The client's tunnel address (default: the next free one; repeat for IPv4 and IPv6).
        #[arg(long, value_name = "ADDR")]
        ip: Vec<std::net::IpAddr>,
        /// DNS server for the client (repeatable; default: the interface's client_dns).
        #[arg(long, value_name = "ADDR")]
        dns: Vec<std::net::IpAddr>,
        /// Send everything through the router (the default).
        #[arg(long, conflicts_with = "split_tunnel")]
        full_tunnel: bool,
        /// Send only the VPN subnets and the router's LAN through the tunnel.
        #[arg(long)]
        split_tunnel: bool,
        /// Also write the QR code as a PNG image (mode 0600: it holds the private key).
        #[arg(long, value_name = "FILE")]
        qr_png: Option<PathBuf>,
        /// Keep the client's private key beside the config (IFACE-NAME.key, mode 0600);
        /// without this it is shown once and not stored.
        #[arg(long)]
        store_private_key: bool,
    },
    /// Remove a peer and its key files from the config. Then run `vpn-ctl up`.
    Remove {
        name: String,
        #[arg(long, value_name = "IFACE")]
        interface: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportTarget {
    /// The FRITZ!Box `vpncfg` file for IPsec site NAME (upload it under Internet > Permit
    /// Access > VPN > "Add VPN connection" > "Import a VPN configuration from an existing
    /// VPN settings file"). It contains the pre-shared key: keep it private.
    Fritzbox {
        /// The `[ipsec.NAME]` site.
        name: String,
        /// Write to this file (mode 0600) instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportSource {
    /// OpenWrt's /etc/config/network (`proto 'wireguard'` interfaces and their
    /// `wireguard_<iface>` peer sections).
    Uci { file: PathBuf },
    /// A wg-quick config (e.g. /etc/wireguard/wg0.conf).
    WgQuick {
        file: PathBuf,
        /// The interface name (default: the file name without `.conf`).
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct DiagArgs {
    /// The WAN interface, where the VPN packets arrive (e.g. eth0, wan, pppoe-wan).
    #[arg(long, value_name = "IFACE")]
    pub wan: String,

    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Refresh the live view every this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub interval: f64,

    /// Print a machine-readable report at the end instead of the live view.
    #[arg(long)]
    pub json: bool,

    /// monitor: count only, pass everything. enforce: also drop malformed VPN packets and
    /// sources refused by --deny, --allow and --rate-limit.
    #[arg(long, value_enum, default_value_t = Mode::Monitor)]
    pub mode: Mode,

    /// How to attach: auto tries native XDP and falls back to generic.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    pub xdp_mode: AttachMode,

    /// Detach an XDP program that is already on the interface.
    #[arg(long)]
    pub force: bool,

    /// WireGuard port.
    #[arg(long, value_name = "PORT", default_value_t = Ports::DEFAULT_WIREGUARD)]
    pub wireguard_port: u16,

    /// IKE port.
    #[arg(long, value_name = "PORT", default_value_t = Ports::DEFAULT_IKE)]
    pub ike_port: u16,

    /// NAT-T port (IKE and ESP in UDP).
    #[arg(long, value_name = "PORT", default_value_t = Ports::DEFAULT_NATT)]
    pub natt_port: u16,

    /// Enforce mode: drop VPN packets from this source prefix (repeatable).
    #[arg(long, value_name = "PREFIX", value_parser = parse_prefix)]
    pub deny: Vec<IpNet>,

    /// Enforce mode: SERVICE accepts only sources in PREFIX (repeatable; SERVICE is
    /// wireguard, ike, natt or esp), e.g. --allow ike=198.51.100.0/24.
    #[arg(long, value_name = "SERVICE=PREFIX", value_parser = parse_allow)]
    pub allow: Vec<(Service, IpNet)>,

    /// Enforce mode: at most this many handshake initiations / IKE initial messages per
    /// second from one source.
    #[arg(long, value_name = "PER_SEC")]
    pub rate_limit: Option<u32>,

    /// Burst allowed above --rate-limit.
    #[arg(long, value_name = "N", default_value_t = 5, requires = "rate_limit")]
    pub rate_burst: u32,

    /// Entries in the per-source table (LRU; ~100 bytes each).
    #[arg(long, value_name = "N", default_value_t = vpn_common::DEFAULT_SOURCES)]
    pub sources: u32,

    /// Sources shown.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
}

impl DiagArgs {
    pub fn options(&self) -> anyhow::Result<diag::Options> {
        let secs = |what: &str, v: f64| -> anyhow::Result<Duration> {
            Duration::try_from_secs_f64(v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    anyhow::anyhow!("--{what} must be a positive number of seconds, not {v}")
                })
        };
        Ok(diag::Options {
            wan: self.wan.clone(),
            duration: self.duration.map(|d| secs("duration", d)).transpose()?,
            interval: secs("interval", self.interval)?,
            live: !self.json,
            attach: self.xdp_mode,
            force: self.force,
            policy: Policy {
                mode: self.mode,
                ports: Ports {
                    wireguard: self.wireguard_port,
                    ike: self.ike_port,
                    natt: self.natt_port,
                },
                deny: self.deny.clone(),
                allow: self.allow.clone(),
                rate_limit: self.rate_limit.map(|per_second| RateLimit {
                    per_second,
                    burst: self.rate_burst,
                }),
            },
            sources: self.sources,
            top: self.top,
        })
    }
}

fn parse_prefix(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("`{s}` is not an address or prefix (e.g. 198.51.100.0/24, 2001:db8::/32)")
        })
}

fn parse_allow(s: &str) -> Result<(Service, IpNet), String> {
    let (service, prefix) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected SERVICE=PREFIX, e.g. wireguard=0.0.0.0/0"))?;
    let service = [
        Service::WireGuard,
        Service::Ike,
        Service::NatT,
        Service::Esp,
    ]
    .into_iter()
    .find(|x| x.name() == service)
    .ok_or_else(|| format!("`{service}`: the service is one of wireguard, ike, natt, esp"))?;
    Ok((service, parse_prefix(prefix)?))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn allow_and_deny_parse_prefixes_and_addresses() {
        assert_eq!(parse_allow("ike=198.51.100.0/24").unwrap().0, Service::Ike);
        assert_eq!(parse_prefix("2001:db8::1").unwrap().prefix_len(), 128);
        assert!(
            parse_allow("ssh=10.0.0.0/8")
                .unwrap_err()
                .contains("one of wireguard")
        );
        assert!(
            parse_prefix("10.0.0.300")
                .unwrap_err()
                .contains("not an address")
        );
    }

    #[test]
    fn diag_defaults_to_monitor_on_the_standard_ports() {
        let cli = Cli::try_parse_from(["vpn-ctl", "diag", "--wan", "eth0"]).unwrap();
        let Command::Diag(args) = cli.command else {
            panic!("parsed as another command");
        };
        let o = args.options().unwrap();
        assert_eq!(o.policy, Policy::default());
        assert_eq!(o.duration, None);
        assert!(o.live);
    }
}
