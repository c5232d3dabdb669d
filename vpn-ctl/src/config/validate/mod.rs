//! Checks the raw file and builds the validated model.
//!
//! Every check runs even after one has failed, so the user sees all problems at once, each
//! at the line and column of the value at fault and with what to do about it. Key files are
//! read here (relative paths start at the configuration's directory); DNS is never resolved.

use std::{
    collections::HashMap,
    io::Read as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    ops::Range,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use toml::Spanned;

use super::{
    Config, Daemon, DaemonXdp, Diagnostic, Endpoint, Error, FirewallMode, Peer, Router,
    WgInterface,
    file::{Raw, RawDaemon, RawInterface, RawPeer, RawRouter, RawSite},
    ipsec::{
        self, AlgorithmKind, Gateway, Identity, IkeKeying, IkeVersion, IpsecSite, Keying, Proposal,
        ProposalError, ProposalFor, SecretBytes, StaticAead, StaticKeying, WEAK_ALGORITHMS,
    },
};
use crate::{
    files,
    key::{PublicKey, Secret},
    link,
};

/// The smallest MTU of an interface with an IPv6 address (RFC 8200 §5).
const MTU_MIN_IPV6: i64 = 1280;
/// The smallest MTU for IPv4 hosts (RFC 791's 576-byte datagram).
const MTU_MIN_IPV4: i64 = 576;
/// A key file is 45 bytes; anything much longer is not one, and is not read further.
const KEY_FILE_READ_MAX: u64 = 256;
/// A pre-shared key file is a line of text; one this long is something else.
const PSK_FILE_READ_MAX: u64 = 1024;
/// The longest peer name, in characters.
pub const PEER_NAME_MAX: usize = 64;
/// The longest IPsec site name (it names the strongSwan connection and the FRITZ!Box's).
const SITE_NAME_MAX: usize = 32;
/// SPIs 1-255 are reserved by IANA (RFC 4303 §2.1); 0 means "no SA".
const SPI_MIN: u32 = 0x100;
/// The range of `ike_lifetime` and `esp_lifetime`, seconds: a minute to a week.
const LIFETIME_RANGE: std::ops::RangeInclusive<i64> = 60..=604_800;
/// The longest `dpd` interval, seconds.
const DPD_MAX: i64 = 3600;

pub(super) fn validate(path: &Path, text: &str, raw: Raw) -> Result<Config, Error> {
    let mut v = Validator {
        path,
        text,
        dir: match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        },
        diagnostics: Vec::new(),
        warnings: Vec::new(),
        lan: Vec::new(),
        ports: Vec::new(),
        public_keys: HashMap::new(),
        newlines: text.match_indices('\n').map(|(i, _)| i).collect(),
        wg_subnets: Vec::new(),
        remote_subnets: Vec::new(),
        spis: Vec::new(),
    };
    let router = v.router(raw.router.unwrap_or_default());
    v.lan.clone_from(&router.lan);
    let mut interfaces: Vec<_> = raw.wireguard.unwrap_or_default().into_iter().collect();
    interfaces.sort_by_key(|(name, _)| name.span().start);
    let wireguard: Vec<WgInterface> = interfaces
        .into_iter()
        .filter_map(|(name, iface)| v.interface(name, iface))
        .collect();
    let mut sites: Vec<_> = raw.ipsec.unwrap_or_default().into_iter().collect();
    sites.sort_by_key(|(name, _)| name.span().start);
    let ipsec: Vec<IpsecSite> = sites
        .into_iter()
        .filter_map(|(name, site)| v.site(name, site, &router.lan))
        .collect();
    let daemon = v.daemon(raw.daemon.unwrap_or_default(), &router);
    v.warnings.sort_by_key(|d| (d.line, d.column));
    if v.diagnostics.is_empty() {
        Ok(Config {
            path: path.to_path_buf(),
            router,
            wireguard,
            ipsec,
            daemon,
            unterminated_line: None,
            warnings: v.warnings,
        })
    } else {
        let mut diagnostics = v.diagnostics;
        diagnostics.sort_by_key(|d| (d.line, d.column));
        Err(Error::from(diagnostics))
    }
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    /// Where relative key file paths start.
    dir: PathBuf,
    diagnostics: Vec<Diagnostic>,
    /// What is accepted but may not be meant; sorted like the diagnostics.
    warnings: Vec<Diagnostic>,
    /// `[router] lan`.
    lan: Vec<IpNet>,
    /// Listen ports seen so far: port, interface, line.
    ports: Vec<(u16, String, usize)>,
    /// Peers' public keys seen so far, on every interface: who has it, and the line.
    public_keys: HashMap<PublicKey, (String, usize)>,
    /// Byte offsets of the text's newlines, so that a line number costs a binary search
    /// (a 10,000-peer file asks for one per peer).
    newlines: Vec<usize>,
    /// The WireGuard interfaces' subnets, with the interface's name and the line.
    wg_subnets: Vec<(IpNet, String, usize)>,
    /// IPsec sites' remote subnets so far: a network is reachable through one tunnel only.
    remote_subnets: Vec<SubnetClaim>,
    /// SPIs of static sites so far: value, whose ("site office's spi_out"), line.
    spis: Vec<(u32, String, usize)>,
}

/// A remote subnet of an IPsec site.
struct SubnetClaim {
    net: IpNet,
    site: String,
    line: usize,
}

/// The two keying modes, before their fields are checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyingMode {
    Ike,
    Static,
}

impl KeyingMode {
    fn name(self) -> &'static str {
        match self {
            KeyingMode::Ike => "ike",
            KeyingMode::Static => "static",
        }
    }
}

/// The parts of an interface its peers are checked against.
struct InterfaceContext {
    name: String,
    addresses: Vec<IpNet>,
    public_key: Option<PublicKey>,
}

/// An allowed IP claimed by an earlier peer of the same interface.
struct Claim {
    net: IpNet,
    peer: String,
    line: usize,
}

/// The allowed IPs claimed so far on an interface. Host addresses (the usual road-warrior
/// peer) are looked up by address, so checking 10,000 peers stays linear; the rarer
/// networks are compared one by one.
#[derive(Default)]
struct Claims {
    hosts: HashMap<IpAddr, Claim>,
    networks: Vec<Claim>,
}

impl Claims {
    /// An earlier claim that overlaps `net`.
    fn overlapping(&self, net: &IpNet) -> Option<&Claim> {
        let overlaps = |c: &&Claim| c.net.contains(net) || net.contains(&c.net);
        if net.prefix_len() == net.max_prefix_len() {
            self.hosts
                .get(&net.addr())
                .or_else(|| self.networks.iter().find(overlaps))
        } else {
            self.networks
                .iter()
                .find(overlaps)
                .or_else(|| self.hosts.values().filter(overlaps).min_by_key(|c| c.line))
        }
    }

    fn push(&mut self, claim: Claim) {
        if claim.net.prefix_len() == claim.net.max_prefix_len() {
            self.hosts.entry(claim.net.addr()).or_insert(claim);
        } else {
            self.networks.push(claim);
        }
    }
}

/// What a secret file is, for the messages about it.
struct SecretFileKind<'a> {
    field: &'a str,
    /// A file name for examples.
    example: &'a str,
    /// The shell command that prints a new one.
    make: &'a str,
    /// What the file holds: "one key".
    holds: &'a str,
}

/// A secret file as read: its first bytes and its permission bits.
struct SecretFile {
    path: PathBuf,
    bytes: Vec<u8>,
    mode: u32,
}

#[derive(Clone, Copy)]
enum KeyKind {
    Private,
    Preshared,
}

impl KeyKind {
    fn field(self) -> &'static str {
        match self {
            KeyKind::Private => "private_key_file",
            KeyKind::Preshared => "preshared_key_file",
        }
    }

    /// The `vpn-ctl` command that makes one.
    fn generate(self) -> &'static str {
        match self {
            KeyKind::Private => "vpn-ctl genkey",
            KeyKind::Preshared => "vpn-ctl genpsk",
        }
    }
}

mod ike;
mod names;
mod router;
mod site;
mod static_keying;
#[cfg(test)]
mod tests;
mod wireguard;

use super::hostname::hostname_problem;
pub use names::peer_name_problem;
use names::site_name_problem;

/// What every part of the validation uses: diagnostics, secret files, ports, addresses.
impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>, help: impl Into<String>) {
        self.diagnostics.push(Diagnostic::at(
            self.path, self.text, span.start, message, help,
        ));
    }

    fn warning(&mut self, span: Range<usize>, message: impl Into<String>, help: impl Into<String>) {
        self.warnings.push(Diagnostic::at(
            self.path, self.text, span.start, message, help,
        ));
    }

    fn line(&self, span: &Range<usize>) -> usize {
        self.newlines.partition_point(|&nl| nl < span.start) + 1
    }

    /// Reads and checks a key file: readable, one key, mode 0600 or stricter.
    fn key_file(&mut self, value: &Spanned<String>, kind: KeyKind) -> Option<(Secret, PathBuf)> {
        let file = self.read_secret_file(
            value,
            &SecretFileKind {
                field: kind.field(),
                example: "wg0.key",
                make: kind.generate(),
                holds: "one key",
            },
            KEY_FILE_READ_MAX,
        )?;
        let key = std::str::from_utf8(&file.bytes)
            .ok()
            .and_then(|s| s.parse::<Secret>().ok());
        if key.is_none() {
            self.error(
                value.span(),
                format!("{} does not hold a WireGuard key", file.path.display()),
                format!(
                    "a key file holds one key of 44 base64 characters, as `{}` prints it; \
                     write a new one with `{} > {}`",
                    kind.generate(),
                    kind.generate(),
                    shell_quote(&file.path)
                ),
            );
        }
        let key = key.filter(|key| {
            if key.is_zero() {
                let message = match kind {
                    KeyKind::Private => "an all-zero key, which is no private key at all",
                    KeyKind::Preshared => {
                        "an all-zero preshared key, which WireGuard treats as none"
                    }
                };
                self.error(
                    value.span(),
                    format!("{} holds {message}", file.path.display()),
                    format!(
                        "write a new key with `{} > {}`",
                        kind.generate(),
                        shell_quote(&file.path)
                    ),
                );
            }
            !key.is_zero()
        });
        if !self.owner_only(value, &file) {
            return None;
        }
        Some((key?, file.path))
    }

    /// Reads at most `limit` bytes of the secret file `value` names (relative to the
    /// configuration's directory); an empty name or an unreadable file is reported.
    fn read_secret_file(
        &mut self,
        value: &Spanned<String>,
        kind: &SecretFileKind<'_>,
        limit: u64,
    ) -> Option<SecretFile> {
        let field = kind.field;
        if value.get_ref().is_empty() {
            self.error(
                value.span(),
                format!("{field} is empty"),
                format!(
                    "name the file that holds the key, e.g. {field} = \"{}\"",
                    kind.example
                ),
            );
            return None;
        }
        let path = self.dir.join(value.get_ref());
        let shown = shell_quote(&path);
        let mut bytes = Vec::new();
        let read = files::open_regular(&path).and_then(|mut file| {
            file.by_ref().take(limit).read_to_end(&mut bytes)?;
            file.metadata()
        });
        match read {
            Ok(metadata) => Some(SecretFile {
                path,
                bytes,
                mode: metadata.permissions().mode() & 0o7777,
            }),
            Err(e) => {
                let help = match e.kind() {
                    std::io::ErrorKind::NotFound => format!(
                        "create it with `(umask 077; {} > {shown})`, or correct the path \
                         (relative paths start at {})",
                        kind.make,
                        self.dir.display()
                    ),
                    std::io::ErrorKind::PermissionDenied => {
                        "run vpn-ctl as root: key files are readable by their owner only"
                            .to_string()
                    }
                    _ if files::NotRegular::of(&e).is_some() => format!(
                        "{field} must name a regular file that holds {}: vpn-ctl does not read \
                         FIFOs or devices (one could block it forever)",
                        kind.holds
                    ),
                    _ => format!(
                        "{field} must name a readable file that holds {}",
                        kind.holds
                    ),
                };
                self.error(
                    value.span(),
                    format!("cannot read {}: {e}", path.display()),
                    help,
                );
                None
            }
        }
    }

    /// Whether only the secret file's owner may access it; if not, says how to fix it.
    fn owner_only(&mut self, value: &Spanned<String>, file: &SecretFile) -> bool {
        let mode = file.mode;
        if mode & 0o077 != 0 {
            self.error(
                value.span(),
                format!(
                    "{} is accessible to other users (mode {mode:04o})",
                    file.path.display()
                ),
                format!(
                    "`chmod 600 {}`: only its owner may read a key",
                    shell_quote(&file.path)
                ),
            );
            return false;
        }
        true
    }

    fn port_out_of_range(&mut self, port: &Spanned<i64>) {
        self.error(
            port.span(),
            format!(
                "listen_port {} is not a port number (1-65535)",
                port.get_ref()
            ),
            "use a free UDP port, e.g. listen_port = 51820, or leave listen_port out for a \
             random one",
        );
    }

    /// A network (an allowed IP, a LAN): a prefix with no bits set after its length. A bare
    /// address is one host, as in wg(8).
    fn network(&mut self, value: &Spanned<String>) -> Option<IpNet> {
        let text = value.get_ref().trim();
        let net = match text.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => match text.parse::<IpAddr>() {
                Ok(addr) => IpNet::from(addr),
                Err(_) => {
                    self.error(
                        value.span(),
                        format!("{text:?} is not an IP prefix"),
                        "write an address and prefix length, e.g. \"10.8.0.2/32\" or \
                         \"192.168.1.0/24\"",
                    );
                    return None;
                }
            },
        };
        if net != net.trunc() {
            let host = IpNet::from(net.addr());
            self.error(
                value.span(),
                format!(
                    "{net} has bits set after its prefix length (its network is {})",
                    net.trunc()
                ),
                format!("did you mean {host} or {}?", net.trunc()),
            );
            return None;
        }
        Some(net)
    }

    fn endpoint(&mut self, value: &Spanned<String>, help: &str) -> Option<Endpoint> {
        match value.get_ref().parse::<Endpoint>() {
            Ok(endpoint) => Some(endpoint),
            Err(message) => {
                self.error(value.span(), message, help);
                None
            }
        }
    }
}

fn family(addr: &IpAddr) -> &'static str {
    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// The first address of `net` a host can have (the network address itself for /31, /32,
/// /127 and /128).
fn first_host(net: &IpNet) -> IpAddr {
    if net.prefix_len() + 1 >= net.max_prefix_len() {
        return net.network();
    }
    match net.network() {
        IpAddr::V4(a) => IpAddr::from(Ipv4Addr::from(u32::from(a) + 1)),
        IpAddr::V6(a) => IpAddr::from(Ipv6Addr::from(u128::from(a) + 1)),
    }
}

/// `path` as a shell word, for commands in help texts.
pub(super) fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
