//! The declarative configuration: one TOML file (default `/etc/vpn-ctl/vpn.toml`).
//!
//! [`load`] reads the file, checks everything (syntax, unknown fields, keys, key files and
//! their permissions, overlaps, clashes) before anything touches the kernel, and returns the
//! validated model below, which the rest of vpn-ctl uses. Errors name the file, line and
//! column and say what to do; all problems are reported at once.
//!
//! ```toml
//! [router]
//! wan = "eth0"                      # where VPN packets arrive
//! lan = ["192.168.1.0/24"]          # networks behind the router (split-tunnel clients)
//! firewall = "check"                # or "manage" / "off" (see crate::firewall)
//!
//! [wireguard.wg0]
//! private_key_file = "wg0.key"      # relative to this file's directory; mode 0600
//! listen_port = 51820
//! addresses = ["10.8.0.1/24", "fd08::1/64"]
//! mtu = 1420                        # optional
//! fwmark = 0x5182                   # optional
//! public_endpoint = "home.example.org:51820"   # what clients dial (for `peer add`)
//! client_dns = ["192.168.1.1"]      # DNS handed to clients by `peer add`
//! internet = true                   # clients may reach the internet through the router
//!
//! [[wireguard.wg0.peers]]
//! name = "phone"
//! public_key = "base64..."
//! preshared_key_file = "wg0-phone.psk"   # optional
//! allowed_ips = ["10.8.0.2/32", "fd08::2/128"]
//! endpoint = "peer.example.org:51820"    # optional; host may be a DNS name
//! persistent_keepalive = 25              # optional, seconds
//! route = true                           # route allowed IPs via wg0 (default true)
//! ```
//!
//! `[ipsec.NAME]` site-to-site connections sit beside these (see [`ipsec`]), and the
//! settings of `vpn-ctl daemon`:
//!
//! ```toml
//! [daemon]
//! metrics_listen = "127.0.0.1:9586"      # Prometheus /metrics; "off" turns it off
//! metrics_max_peers = 10000              # per-peer series at most (cardinality cap)
//! tick = 30                              # seconds between periodic converges and checks
//! xdp = "count"                          # count VPN packets on [router] wan; "off"
//! ```

mod error;
mod file;
pub mod hostname;
pub mod ipsec;
mod validate;

use std::{
    fmt,
    net::{IpAddr, SocketAddr, ToSocketAddrs as _},
    path::{Path, PathBuf},
};

use ipnet::IpNet;

pub use error::{Diagnostic, Error};
pub(crate) use error::{decode_text, write_diagnostics};
pub use validate::{PEER_NAME_MAX, peer_name_problem};

use crate::key::{PublicKey, Secret};

/// Where the configuration lives unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/vpn-ctl/vpn.toml";

/// The longest configuration file vpn-ctl reads; 10,000 peers take about 2 MB.
pub const READ_MAX: u64 = 64 << 20;

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, Error> {
    let text = read(path)?;
    parse(path, &text)
}

/// The text of the configuration file at `path`, not yet checked: a regular file (a FIFO is
/// refused, not waited on) of at most [`READ_MAX`] bytes of UTF-8 without NUL bytes.
pub fn read(path: &Path) -> Result<String, Error> {
    let bytes =
        crate::files::read_regular(path, READ_MAX).map_err(|e| Error::unreadable(path, &e))?;
    decode_text(path, bytes).map_err(|d| Error::from(vec![d]))
}

/// Validates configuration text as if read from `path` (relative key files are resolved
/// against `path`'s directory and read from disk).
pub fn parse(path: &Path, text: &str) -> Result<Config, Error> {
    let raw = file::parse(path, text)?;
    let mut config = validate::validate(path, text, raw)?;
    config.unterminated_line =
        (!text.is_empty() && !text.ends_with('\n')).then(|| text.lines().count());
    Ok(config)
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub router: Router,
    /// WireGuard interfaces, in file order.
    pub wireguard: Vec<WgInterface>,
    /// IPsec site-to-site connections, in file order.
    pub ipsec: Vec<ipsec::IpsecSite>,
    /// `[daemon]`, defaults when absent.
    pub daemon: Daemon,
    /// The number of the file's last line when it does not end with a newline: a sign the
    /// file may have been cut short (see [`crate::guard`]).
    pub unterminated_line: Option<usize>,
    /// What is accepted but may not be meant (a peer whose allowed IPs cover the LAN), for
    /// `up` and the daemon to print as warnings.
    pub warnings: Vec<Diagnostic>,
}

impl Config {
    pub fn interface(&self, name: &str) -> Option<&WgInterface> {
        self.wireguard.iter().find(|i| i.name == name)
    }
}

/// `[router]`: the router's own ports and networks.
#[derive(Debug, Clone, Default)]
pub struct Router {
    /// The WAN interface, where VPN packets arrive.
    pub wan: Option<String>,
    /// Networks behind the router that VPN clients may reach.
    pub lan: Vec<IpNet>,
    /// What vpn-ctl does about the firewall openings its tunnels need.
    pub firewall: FirewallMode,
}

/// `[router] firewall`: what vpn-ctl does about the firewall openings its tunnels need
/// (see [`crate::firewall`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FirewallMode {
    /// Install them (an nftables table of vpn-ctl's own, or fw4 includes on OpenWrt).
    Manage,
    /// Only inspect the ruleset and report what would block the tunnels.
    #[default]
    Check,
    /// Leave the firewall alone and say nothing about it.
    Off,
}

impl FirewallMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FirewallMode::Manage => "manage",
            FirewallMode::Check => "check",
            FirewallMode::Off => "off",
        }
    }
}

impl std::str::FromStr for FirewallMode {
    type Err = ();
    fn from_str(s: &str) -> Result<FirewallMode, ()> {
        match s {
            "manage" => Ok(FirewallMode::Manage),
            "check" => Ok(FirewallMode::Check),
            "off" => Ok(FirewallMode::Off),
            _ => Err(()),
        }
    }
}

/// `[daemon]`: how `vpn-ctl daemon` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    /// Where `/metrics` is served; `None`: not at all.
    pub metrics_listen: Option<SocketAddr>,
    /// At most this many peers get per-peer series.
    pub metrics_max_peers: usize,
    /// Between periodic converges, DNS re-resolution and watchdog passes.
    pub tick: std::time::Duration,
    /// Whether the XDP program counts VPN packets on `[router] wan`.
    pub xdp: DaemonXdp,
}

impl Daemon {
    /// The exporter's port, as prometheus_wireguard_exporter's.
    pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9586";
    pub const DEFAULT_METRICS_MAX_PEERS: usize = 10_000;
    pub const DEFAULT_TICK: std::time::Duration = std::time::Duration::from_secs(30);
}

impl Default for Daemon {
    fn default() -> Daemon {
        Daemon {
            metrics_listen: Some(
                Daemon::DEFAULT_METRICS_LISTEN
                    .parse()
                    .expect("the default is an address"),
            ),
            metrics_max_peers: Daemon::DEFAULT_METRICS_MAX_PEERS,
            tick: Daemon::DEFAULT_TICK,
            xdp: DaemonXdp::Count,
        }
    }
}

/// `[daemon] xdp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonXdp {
    /// Attach the classifier to `[router] wan` in monitor mode (when `wan` is set).
    Count,
    Off,
}

/// `[wireguard.NAME]`: one WireGuard interface.
#[derive(Debug, Clone)]
pub struct WgInterface {
    pub name: String,
    pub private_key: Secret,
    pub private_key_file: PathBuf,
    pub listen_port: Option<u16>,
    /// The interface's own addresses with their prefix length, e.g. `10.8.0.1/24`.
    pub addresses: Vec<IpNet>,
    pub mtu: Option<u32>,
    pub fwmark: Option<u32>,
    /// How clients reach this interface from the internet, for client configs.
    pub public_endpoint: Option<Endpoint>,
    /// DNS servers handed to clients in their configs.
    pub client_dns: Vec<IpAddr>,
    /// Whether clients may use the router for internet access (full tunnel, `peer add`'s
    /// default): the firewall then forwards their traffic to the WAN and masquerades it.
    pub internet: bool,
    pub peers: Vec<Peer>,
    /// Whether the section names its peers (`[[wireguard.NAME.peers]]` tables, or an explicit
    /// `peers = []`); an interface without either may be a file cut short (see
    /// [`crate::guard`]).
    pub peers_listed: bool,
}

impl WgInterface {
    pub fn public_key(&self) -> PublicKey {
        self.private_key.public_key()
    }
}

/// `[[wireguard.NAME.peers]]`: one peer.
#[derive(Debug, Clone)]
pub struct Peer {
    /// A friendly name, unique on its interface.
    pub name: String,
    pub public_key: PublicKey,
    pub preshared_key: Option<Secret>,
    pub preshared_key_file: Option<PathBuf>,
    pub allowed_ips: Vec<IpNet>,
    pub endpoint: Option<Endpoint>,
    /// Seconds; `None` is off.
    pub persistent_keepalive: Option<u16>,
    /// Whether `up` routes the allowed IPs through the interface (those not already covered
    /// by the interface's own subnets).
    pub route: bool,
}

/// `host:port`, where host is an address or a DNS name (`[v6]:port` for IPv6 literals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Resolves the host (a DNS lookup when it is a name); the first address wins, IPv4
    /// first as wg(8) does.
    pub fn resolve(&self) -> std::io::Result<SocketAddr> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port).to_socket_addrs()?.collect();
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} has no address", self.host),
                )
            })
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Endpoint, String> {
        let (host, port) = s.rsplit_once(':').ok_or_else(|| {
            format!("{s:?} has no port: write host:port, e.g. vpn.example.org:51820")
        })?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{port:?} in {s:?} is not a port number (1-65535)"))?;
        if port == 0 {
            return Err(format!(
                "port 0 in {s:?}: use the peer's real port (1-65535)"
            ));
        }
        let host = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            v6.parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("{v6:?} in {s:?} is not an IPv6 address"))?;
            v6
        } else if host.contains(':') {
            return Err(format!(
                "{s:?}: write IPv6 endpoints in brackets, e.g. [2001:db8::1]:51820"
            ));
        } else {
            host
        };
        if host.is_empty() {
            return Err(format!("{s:?} has no host"));
        }
        if host.parse::<std::net::IpAddr>().is_err()
            && let Some(problem) = hostname::hostname_problem(host)
        {
            return Err(format!(
                "{host:?} in {s:?} is not an IP address or a DNS name: {problem}"
            ));
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::files::tests::{mkfifo, within_5_seconds};

    /// `load`'s error, the directory written `DIR`.
    fn load_error(dir: &Path, path: &Path) -> String {
        load(path)
            .unwrap_err()
            .to_string()
            .replace(dir.to_str().unwrap(), "DIR")
    }

    #[test]
    fn a_configuration_that_is_a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vpn.toml");
        mkfifo(&path);
        let error = within_5_seconds(move || {
            let error = load_error(dir.path(), &path);
            drop(dir);
            error
        });
        assert_eq!(
            error,
            "DIR/vpn.toml: cannot read the configuration: it is a FIFO, not a regular file\n  \
             help: give the path of the configuration file itself: vpn-ctl reads only regular \
             files (reading a FIFO or a device could block it forever)"
        );
    }

    #[test]
    fn text_that_is_not_utf8_is_pointed_at() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vpn.toml");
        // "Köln" in Latin-1 on line 2, after 8 characters.
        fs::write(&path, b"[router]\nwan = \"K\xf6ln\"\n").unwrap();
        assert_eq!(
            load_error(dir.path(), &path),
            "DIR/vpn.toml:2:9: not UTF-8 text: byte 0xf6\n  help: the file must be UTF-8 \
             text; it may be damaged (a power loss?) or saved in another encoding: look at the \
             line (`sed -n 2p DIR/vpn.toml | od -c`) and retype what is wrong, or convert the \
             whole file (e.g. `iconv -f latin1 -t utf-8`)"
        );
        // Characters before it count as one column each.
        fs::write(
            &path,
            "# Grüße\n# ".bytes().chain(*b"\xff").collect::<Vec<u8>>(),
        )
        .unwrap();
        assert!(
            load_error(dir.path(), &path)
                .starts_with("DIR/vpn.toml:2:3: not UTF-8 text: byte 0xff\n")
        );
    }

    #[test]
    fn a_nul_byte_is_pointed_at() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vpn.toml");
        // What a power loss can leave: the end of the file zeroed.
        fs::write(&path, b"[router]\nwan = \"eth0\"\0\0\0\n").unwrap();
        assert_eq!(
            load_error(dir.path(), &path),
            "DIR/vpn.toml:2:13: a NUL byte (0x00) in the text\n  help: the file must be UTF-8 \
             text; it may be damaged (a power loss?) or saved in another encoding: look at the \
             line (`sed -n 2p DIR/vpn.toml | od -c`) and retype what is wrong, or convert the \
             whole file (e.g. `iconv -f latin1 -t utf-8`)"
        );
    }
}
