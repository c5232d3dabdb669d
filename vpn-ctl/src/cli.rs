//! The command line.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use vpn_common::{Ports, Service};

use crate::{
    diag,
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

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch VPN packets arrive on the WAN port (XDP), check what listens on the VPN ports,
    /// and say what is wrong. Replaces `tcpdump -i wan udp port 51820` and `netstat -nulp`.
    Diag(DiagArgs),
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
        let Command::Diag(args) = cli.command;
        let o = args.options().unwrap();
        assert_eq!(o.policy, Policy::default());
        assert_eq!(o.duration, None);
        assert!(o.live);
    }
}
