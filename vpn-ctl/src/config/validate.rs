//! Checks the raw file and builds the validated model.
//!
//! Every check runs even after one has failed, so the user sees all problems at once, each
//! at the line and column of the value at fault and with what to do about it. Key files are
//! read here (relative paths start at the configuration's directory); DNS is never resolved.

use std::{
    collections::HashMap,
    fs::File,
    io::Read as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    ops::Range,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use toml::Spanned;

use super::{
    Config, Diagnostic, Endpoint, Error, Peer, Router, WgInterface,
    file::{Raw, RawInterface, RawPeer, RawRouter},
};
use crate::key::{PublicKey, Secret};

/// Linux's `IFNAMSIZ` less the terminating NUL.
const IFNAME_MAX: usize = 15;
/// The smallest MTU of an interface with an IPv6 address (RFC 8200 §5).
const MTU_MIN_IPV6: i64 = 1280;
/// The smallest MTU for IPv4 hosts (RFC 791's 576-byte datagram).
const MTU_MIN_IPV4: i64 = 576;
/// A key file is 45 bytes; anything much longer is not one, and is not read further.
const KEY_FILE_READ_MAX: u64 = 256;

pub(super) fn validate(path: &Path, text: &str, raw: Raw) -> Result<Config, Error> {
    let mut v = Validator {
        path,
        text,
        dir: match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        },
        diagnostics: Vec::new(),
        ports: Vec::new(),
        public_keys: HashMap::new(),
        newlines: text.match_indices('\n').map(|(i, _)| i).collect(),
    };
    let router = v.router(raw.router.unwrap_or_default());
    let mut interfaces: Vec<_> = raw.wireguard.unwrap_or_default().into_iter().collect();
    interfaces.sort_by_key(|(name, _)| name.span().start);
    let wireguard: Vec<WgInterface> = interfaces
        .into_iter()
        .filter_map(|(name, iface)| v.interface(name, iface))
        .collect();
    if v.diagnostics.is_empty() {
        Ok(Config {
            path: path.to_path_buf(),
            router,
            wireguard,
            ipsec: Vec::new(),
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
    /// Listen ports seen so far: port, interface, line.
    ports: Vec<(u16, String, usize)>,
    /// Peers' public keys seen so far, on every interface: who has it, and the line.
    public_keys: HashMap<PublicKey, (String, usize)>,
    /// Byte offsets of the text's newlines, so that a line number costs a binary search
    /// (a 10,000-peer file asks for one per peer).
    newlines: Vec<usize>,
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

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>, help: impl Into<String>) {
        self.diagnostics.push(Diagnostic::at(
            self.path, self.text, span.start, message, help,
        ));
    }

    fn line(&self, span: &Range<usize>) -> usize {
        self.newlines.partition_point(|&nl| nl < span.start) + 1
    }

    fn router(&mut self, raw: RawRouter) -> Router {
        let wan_problem = raw
            .wan
            .as_ref()
            .and_then(|wan| Some((wan.span(), ifname_problem(wan.get_ref())?)));
        if let Some((span, problem)) = wan_problem {
            self.error(
                span,
                format!("wan {problem}"),
                "give the WAN port's name as `ip link` shows it, e.g. wan = \"eth0\"",
            );
        }
        let lan = raw.lan.iter().filter_map(|net| self.network(net)).collect();
        Router {
            wan: raw.wan.map(Spanned::into_inner),
            lan,
        }
    }

    fn interface(
        &mut self,
        name: Spanned<String>,
        raw: Spanned<RawInterface>,
    ) -> Option<WgInterface> {
        let header = raw.span();
        let raw = raw.into_inner();
        if let Some(problem) = ifname_problem(name.get_ref()) {
            self.error(
                name.span(),
                format!("interface name {problem}"),
                "choose a name of at most 15 bytes without '/', ':' or spaces (iproute2's \
                 rules), e.g. [wireguard.wg0]",
            );
        }
        let name = name.into_inner();
        let private_key = match &raw.private_key_file {
            Some(file) => self.key_file(file, KeyKind::Private),
            None => {
                let file = self.dir.join(format!("{name}.key"));
                self.error(
                    header.clone(),
                    format!("interface {name} has no private_key_file"),
                    format!(
                        "add private_key_file = \"{name}.key\" and make the key with `(umask \
                         077; vpn-ctl genkey > {})`",
                        shell_quote(&file)
                    ),
                );
                None
            }
        };
        let listen_port = raw
            .listen_port
            .as_ref()
            .and_then(|port| self.listen_port(&name, port));
        let addresses: Vec<IpNet> = raw
            .addresses
            .iter()
            .filter_map(|address| self.interface_address(&name, address))
            .collect();
        let mtu = raw
            .mtu
            .as_ref()
            .and_then(|mtu| self.mtu(&name, &addresses, mtu));
        let fwmark = raw.fwmark.as_ref().and_then(|mark| self.fwmark(mark));
        let public_endpoint = raw.public_endpoint.as_ref().and_then(|e| {
            self.endpoint(
                e,
                "write how clients reach this router from the internet as host:port, e.g. \
                 public_endpoint = \"home.example.org:51820\"",
            )
        });
        let client_dns = raw
            .client_dns
            .iter()
            .filter_map(|dns| self.dns_server(dns))
            .collect();

        let context = InterfaceContext {
            name: name.clone(),
            addresses: addresses.clone(),
            public_key: private_key.as_ref().map(|(key, _)| key.public_key()),
        };
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut claims = Claims::default();
        let peers: Vec<Peer> = raw
            .peers
            .into_iter()
            .filter_map(|peer| self.peer(&context, &mut names, &mut claims, peer))
            .collect();

        let (private_key, private_key_file) = private_key?;
        Some(WgInterface {
            name,
            private_key,
            private_key_file,
            listen_port,
            addresses,
            mtu,
            fwmark,
            public_endpoint,
            client_dns,
            peers,
        })
    }

    /// Reads and checks a key file: readable, one key, mode 0600 or stricter.
    fn key_file(&mut self, value: &Spanned<String>, kind: KeyKind) -> Option<(Secret, PathBuf)> {
        let field = kind.field();
        if value.get_ref().is_empty() {
            self.error(
                value.span(),
                format!("{field} is empty"),
                format!("name the file that holds the key, e.g. {field} = \"wg0.key\""),
            );
            return None;
        }
        let path = self.dir.join(value.get_ref());
        let shown = shell_quote(&path);
        let mut bytes = Vec::new();
        let read = File::open(&path).and_then(|mut file| {
            file.by_ref()
                .take(KEY_FILE_READ_MAX)
                .read_to_end(&mut bytes)?;
            file.metadata()
        });
        let metadata = match read {
            Ok(metadata) => metadata,
            Err(e) => {
                let help = match e.kind() {
                    std::io::ErrorKind::NotFound => format!(
                        "create it with `(umask 077; {} > {shown})`, or correct the path \
                         (relative paths start at {})",
                        kind.generate(),
                        self.dir.display()
                    ),
                    std::io::ErrorKind::PermissionDenied => {
                        "run vpn-ctl as root: key files are readable by their owner only"
                            .to_string()
                    }
                    _ => format!("{field} must name a readable file that holds one key"),
                };
                self.error(
                    value.span(),
                    format!("cannot read {}: {e}", path.display()),
                    help,
                );
                return None;
            }
        };
        let key = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.parse::<Secret>().ok());
        if key.is_none() {
            self.error(
                value.span(),
                format!("{} does not hold a WireGuard key", path.display()),
                format!(
                    "a key file holds one key of 44 base64 characters, as `{}` prints it; \
                     write a new one with `{} > {shown}`",
                    kind.generate(),
                    kind.generate()
                ),
            );
        }
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            self.error(
                value.span(),
                format!(
                    "{} is accessible to other users (mode {mode:04o})",
                    path.display()
                ),
                format!("`chmod 600 {shown}`: only its owner may read a key"),
            );
            return None;
        }
        Some((key?, path))
    }

    fn listen_port(&mut self, iface: &str, port: &Spanned<i64>) -> Option<u16> {
        let Ok(value) = u16::try_from(*port.get_ref()) else {
            self.port_out_of_range(port);
            return None;
        };
        if value == 0 {
            self.port_out_of_range(port);
            return None;
        }
        let line = self.line(&port.span());
        if let Some((_, other, other_line)) = self.ports.iter().find(|(p, ..)| *p == value) {
            let message =
                format!("listen_port {value} is already used by {other} (line {other_line})");
            let free = (1..=u16::MAX)
                .map(|i| value.wrapping_add(i))
                .find(|p| *p != 0 && !self.ports.iter().any(|(used, ..)| used == p))
                .unwrap_or(value);
            self.error(
                port.span(),
                message,
                format!("each interface needs a UDP port of its own, e.g. listen_port = {free}"),
            );
        }
        self.ports.push((value, iface.to_string(), line));
        Some(value)
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

    /// An interface's own address: an address with its subnet's prefix length.
    fn interface_address(&mut self, iface: &str, value: &Spanned<String>) -> Option<IpNet> {
        let text = value.get_ref().trim();
        let Ok(net) = text.parse::<IpNet>() else {
            let help = match text.parse::<IpAddr>() {
                Ok(addr) => {
                    let example = IpNet::new(addr, if addr.is_ipv4() { 24 } else { 64 })
                        .expect("a valid prefix length");
                    format!("add the prefix length of {iface}'s subnet, e.g. \"{example}\"")
                }
                Err(_) => "write an address with its subnet's prefix length, e.g. \
                           \"10.8.0.1/24\" or \"fd08::1/64\""
                    .to_string(),
            };
            let message = if text.parse::<IpAddr>().is_ok() {
                format!("address {text:?} of {iface} has no prefix length")
            } else {
                format!("{text:?} is not an address with a prefix length")
            };
            self.error(value.span(), message, help);
            return None;
        };
        // /31, /32, /127 and /128 have no network or broadcast address to avoid.
        if net.prefix_len() + 1 < net.max_prefix_len() {
            let first_host = match net.network() {
                IpAddr::V4(a) => IpAddr::from(Ipv4Addr::from(u32::from(a) + 1)),
                IpAddr::V6(a) => IpAddr::from(Ipv6Addr::from(u128::from(a) + 1)),
            };
            let suggestion = IpNet::new(first_host, net.prefix_len()).expect("same prefix");
            let what = if net.addr() == net.network() {
                Some("network address")
            } else if net.addr() == net.broadcast() && net.addr().is_ipv4() {
                Some("broadcast address")
            } else {
                None
            };
            if let Some(what) = what {
                self.error(
                    value.span(),
                    format!("{net} is the {what} of its subnet, not an address {iface} can have"),
                    format!(
                        "give {iface} an address inside the subnet: did you mean {suggestion}?"
                    ),
                );
                return None;
            }
        }
        Some(net)
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

    fn mtu(&mut self, iface: &str, addresses: &[IpNet], mtu: &Spanned<i64>) -> Option<u32> {
        let value = *mtu.get_ref();
        let ipv6 = addresses.iter().any(|a| a.addr().is_ipv6());
        let min = if ipv6 { MTU_MIN_IPV6 } else { MTU_MIN_IPV4 };
        let message = if value < min && ipv6 {
            format!("mtu {value} is below 1280, the minimum for IPv6 ({iface} has an IPv6 address)")
        } else if value < min {
            format!("mtu {value} is below 576, the minimum for IPv4")
        } else if value > 65535 {
            format!("mtu {value} is above 65535, the largest an IP packet can be")
        } else {
            return u32::try_from(value).ok();
        };
        self.error(
            mtu.span(),
            message,
            format!("use {min}-65535, e.g. mtu = 1420 (WireGuard's default), or leave mtu out"),
        );
        None
    }

    fn fwmark(&mut self, mark: &Spanned<i64>) -> Option<u32> {
        match u32::try_from(*mark.get_ref()) {
            Ok(0) => None,
            Ok(value) => Some(value),
            Err(_) => {
                self.error(
                    mark.span(),
                    format!("fwmark {} does not fit in 32 bits", mark.get_ref()),
                    "use 1 to 0xffffffff, e.g. fwmark = 0x5182, or leave fwmark out",
                );
                None
            }
        }
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

    fn dns_server(&mut self, value: &Spanned<String>) -> Option<IpAddr> {
        match value.get_ref().trim().parse::<IpAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.error(
                    value.span(),
                    format!("{:?} is not an IP address", value.get_ref()),
                    "client_dns lists DNS servers by address, e.g. client_dns = \
                     [\"192.168.1.1\"]",
                );
                None
            }
        }
    }

    fn peer(
        &mut self,
        iface: &InterfaceContext,
        names: &mut HashMap<String, usize>,
        claims: &mut Claims,
        raw: Spanned<RawPeer>,
    ) -> Option<Peer> {
        let header = raw.span();
        let header_line = self.line(&header);
        let raw = raw.into_inner();
        let iface_name = &iface.name;

        let name = match &raw.name {
            None => {
                self.error(
                    header.clone(),
                    format!("this peer of {iface_name} has no name"),
                    "add a name that tells the peer apart, e.g. name = \"phone\"",
                );
                None
            }
            Some(name) if name.get_ref().trim().is_empty() => {
                self.error(
                    name.span(),
                    "a peer's name cannot be empty",
                    "give the peer a name, e.g. name = \"phone\"",
                );
                None
            }
            Some(name) => {
                let line = self.line(&name.span());
                if let Some(first) = names.get(name.get_ref()) {
                    self.error(
                        name.span(),
                        format!(
                            "{iface_name} already has a peer named {:?} (line {first})",
                            name.get_ref()
                        ),
                        "give each peer of an interface a name of its own",
                    );
                } else {
                    names.insert(name.get_ref().clone(), line);
                }
                Some(name.get_ref().clone())
            }
        };
        let label = match &name {
            Some(name) => format!("peer {name:?}"),
            None => format!("the peer at line {header_line}"),
        };

        let public_key = match &raw.public_key {
            None => {
                self.error(
                    header.clone(),
                    format!("{label} of {iface_name} has no public_key"),
                    "add the public key the peer's private key gives (`wg pubkey` on the \
                     peer), e.g. public_key = \"...\"",
                );
                None
            }
            Some(key) => self.public_key(iface, &label, key),
        };
        let preshared_key = raw
            .preshared_key_file
            .as_ref()
            .and_then(|file| self.key_file(file, KeyKind::Preshared));

        let mut allowed_ips = Vec::new();
        let mut own_claims = Vec::new();
        for value in &raw.allowed_ips {
            let Some(net) = self.network(value) else {
                continue;
            };
            self.allowed_ip(iface, &label, claims, value.span(), net);
            allowed_ips.push(net);
            own_claims.push(Claim {
                net,
                peer: label.clone(),
                line: self.line(&value.span()),
            });
        }
        for claim in own_claims {
            claims.push(claim);
        }

        let endpoint = raw.endpoint.as_ref().and_then(|e| {
            self.endpoint(
                e,
                "write the peer's address as host:port, e.g. endpoint = \
                 \"peer.example.org:51820\" or \"[2001:db8::1]:51820\"",
            )
        });
        let persistent_keepalive = raw.persistent_keepalive.as_ref().and_then(|seconds| {
            let value = *seconds.get_ref();
            match u16::try_from(value) {
                Ok(0) => {
                    self.error(
                        seconds.span(),
                        "persistent_keepalive must be 1-65535 seconds, not 0",
                        "leave persistent_keepalive out to turn keepalive off",
                    );
                    None
                }
                Ok(value) => Some(value),
                Err(_) => {
                    self.error(
                        seconds.span(),
                        format!("persistent_keepalive must be 1-65535 seconds, not {value}"),
                        "25 keeps most NAT mappings open: persistent_keepalive = 25",
                    );
                    None
                }
            }
        });

        let (preshared_key, preshared_key_file) = match (preshared_key, &raw.preshared_key_file) {
            (Some((key, path)), _) => (Some(key), Some(path)),
            // The file was named but is unusable: reported already.
            (None, Some(_)) => return None,
            (None, None) => (None, None),
        };
        Some(Peer {
            name: name?,
            public_key: public_key?,
            preshared_key,
            preshared_key_file,
            allowed_ips,
            endpoint,
            persistent_keepalive,
            route: raw.route.unwrap_or(true),
        })
    }

    fn public_key(
        &mut self,
        iface: &InterfaceContext,
        label: &str,
        value: &Spanned<String>,
    ) -> Option<PublicKey> {
        let iface_name = &iface.name;
        let Ok(key) = value.get_ref().parse::<PublicKey>() else {
            self.error(
                value.span(),
                format!("the public_key of {label} is not a WireGuard key"),
                format!(
                    "a public key is 44 characters of base64, as `wg pubkey` prints it; this \
                     one has {}",
                    value.get_ref().trim().chars().count()
                ),
            );
            return None;
        };
        let line = self.line(&value.span());
        if iface.public_key.as_ref() == Some(&key) {
            self.error(
                value.span(),
                format!("the public_key of {label} is {iface_name}'s own public key"),
                format!(
                    "use the key of the peer's private key (`wg pubkey` on the peer), not the \
                     one of {iface_name}'s private_key_file"
                ),
            );
        }
        if let Some((first, first_line)) = self.public_keys.get(&key) {
            self.error(
                value.span(),
                format!("{label} has the same public key as {first} (line {first_line})"),
                "every peer needs a key pair of its own: check which of the two keys was \
                 copied, and give the peer the public key of its own private key",
            );
        } else {
            self.public_keys
                .insert(key.clone(), (format!("{label} of {iface_name}"), line));
        }
        Some(key)
    }

    /// The allowed IP `net` of a peer against the interface's subnets and the other peers.
    fn allowed_ip(
        &mut self,
        iface: &InterfaceContext,
        label: &str,
        claims: &Claims,
        span: Range<usize>,
        net: IpNet,
    ) {
        let iface_name = &iface.name;
        let subnets: Vec<IpNet> = iface
            .addresses
            .iter()
            .filter(|a| a.addr().is_ipv4() == net.addr().is_ipv4())
            .map(IpNet::trunc)
            .collect();
        let listed = subnets
            .iter()
            .map(IpNet::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        // A host address, i.e. the peer's own address in the tunnel.
        if net.prefix_len() == net.max_prefix_len() && !subnets.is_empty() {
            if iface.addresses.iter().any(|a| a.addr() == net.addr()) {
                self.error(
                    span.clone(),
                    format!("{net} is {iface_name}'s own address"),
                    format!("give {label} another address in {listed}"),
                );
            } else if !subnets.iter().any(|s| s.contains(&net.addr())) {
                let plural = if subnets.len() > 1 { "s" } else { "" };
                self.error(
                    span.clone(),
                    format!("{net} is outside {iface_name}'s subnet{plural} {listed}"),
                    format!(
                        "a peer's own address must be in {iface_name}'s subnet{plural}: use \
                         one from {listed}, or widen {iface_name}'s address (a network behind \
                         a peer may be anywhere)"
                    ),
                );
            }
        }
        if let Some(claim) = claims.overlapping(&net) {
            let message = format!(
                "{net} overlaps {} of {} (line {})",
                claim.net, claim.peer, claim.line
            );
            self.error(
                span,
                message,
                format!(
                    "the kernel sends each address to one peer only, so one of the two would \
                     silently lose it: give {label} and {} separate ranges",
                    claim.peer
                ),
            );
        }
    }
}

/// Why `name` cannot be a Linux interface name (iproute2's `check_ifname`, and the kernel's
/// `dev_valid_name`), as the end of a sentence about it.
fn ifname_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".to_string());
    }
    if name.len() > IFNAME_MAX {
        return Some(format!(
            "{name:?} is {} bytes long; Linux allows at most {IFNAME_MAX}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Some(format!("{name:?} is not allowed"));
    }
    // C's isspace(), as iproute2 uses.
    name.chars()
        .find(|c| matches!(c, '/' | ':' | ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'))
        .map(|c| format!("{name:?} contains {c:?}"))
}

/// `path` as a shell word, for commands in help texts.
fn shell_quote(path: &Path) -> String {
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

#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::PermissionsExt as _};

    use super::*;
    use crate::config::parse;

    /// An interface with both families; 4 lines, so what follows starts at line 5.
    const WG0: &str = "[wireguard.wg0]
private_key_file = \"wg0.key\"
listen_port = 51820
addresses = [\"10.8.0.1/24\", \"fd08::1/64\"]
";

    /// A directory holding a configuration's key files (mode 0600), and peers' keys.
    struct Fixture {
        dir: tempfile::TempDir,
        wg0: Secret,
        phone: PublicKey,
        laptop: PublicKey,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let wg0 = Secret::generate_private();
            write(
                &dir.path().join("wg0.key"),
                &format!("{}\n", wg0.expose_base64()),
                0o600,
            );
            let wg1 = Secret::generate_private().expose_base64();
            write(&dir.path().join("wg1.key"), &format!("{wg1}\n"), 0o600);
            let psk = Secret::generate_preshared().expose_base64();
            write(&dir.path().join("phone.psk"), &psk, 0o400);
            Fixture {
                dir,
                wg0,
                phone: Secret::generate_private().public_key(),
                laptop: Secret::generate_private().public_key(),
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// Reads `text` as `DIR/vpn.toml`, with `<phone>`, `<laptop>` and `<wg0>` standing
        /// for those public keys; an error is rendered, the directory written `DIR`.
        fn parse(&self, text: &str) -> Result<Config, String> {
            let text = text
                .replace("<phone>", &self.phone.to_base64())
                .replace("<laptop>", &self.laptop.to_base64())
                .replace("<wg0>", &self.wg0.public_key().to_base64());
            parse(&self.path("vpn.toml"), &text).map_err(|e| {
                e.to_string()
                    .replace(self.dir.path().to_str().unwrap(), "DIR")
            })
        }

        fn error(&self, text: &str) -> String {
            match self.parse(text) {
                Ok(config) => panic!("accepted:\n{text}\n{config:#?}"),
                Err(e) => e,
            }
        }
    }

    fn write(path: &Path, contents: &str, mode: u32) {
        fs::write(path, contents).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn full_example_is_valid() {
        let fx = Fixture::new();
        let config = fx
            .parse(
                r#"
[router]
wan = "eth0"
lan = ["192.168.1.0/24", "fd00:1::/64"]

[wireguard.wg0]
private_key_file = "wg0.key"
listen_port = 51820
addresses = ["10.8.0.1/24", "fd08::1/64"]
mtu = 1420
fwmark = 0x5182
public_endpoint = "home.example.org:51820"
client_dns = ["192.168.1.1", "fd08::1"]

[[wireguard.wg0.peers]]
name = "phone"
preshared_key_file = "phone.psk"
allowed_ips = ["10.8.0.2/32", "fd08::2/128"]
persistent_keepalive = 25
public_key = "<phone>"

[[wireguard.wg0.peers]]
name = "office"
allowed_ips = ["10.8.0.3", "192.168.2.0/24"]
endpoint = "[2001:db8::7]:51820"
route = false
public_key = "<laptop>"

[wireguard.wg1]
private_key_file = "wg1.key"
listen_port = 51821
fwmark = 0
"#,
            )
            .unwrap();
        assert_eq!(config.path, fx.path("vpn.toml"));
        assert_eq!(config.router.wan.as_deref(), Some("eth0"));
        assert_eq!(
            config.router.lan,
            [
                "192.168.1.0/24".parse().unwrap(),
                "fd00:1::/64".parse().unwrap()
            ] as [IpNet; 2]
        );
        assert_eq!(config.wireguard.len(), 2);
        let wg0 = config.interface("wg0").unwrap();
        assert_eq!(wg0.private_key, fx.wg0);
        assert_eq!(wg0.public_key(), fx.wg0.public_key());
        assert_eq!(wg0.private_key_file, fx.path("wg0.key"));
        assert_eq!(wg0.listen_port, Some(51820));
        assert_eq!(
            wg0.addresses,
            [
                "10.8.0.1/24".parse().unwrap(),
                "fd08::1/64".parse().unwrap()
            ] as [IpNet; 2]
        );
        assert_eq!(wg0.mtu, Some(1420));
        assert_eq!(wg0.fwmark, Some(0x5182));
        assert_eq!(
            wg0.public_endpoint,
            Some(Endpoint {
                host: "home.example.org".into(),
                port: 51820
            })
        );
        assert_eq!(
            wg0.client_dns,
            [
                "192.168.1.1".parse::<IpAddr>().unwrap(),
                "fd08::1".parse().unwrap()
            ]
        );

        let [phone, office] = &wg0.peers[..] else {
            panic!("{:?}", wg0.peers)
        };
        assert_eq!(phone.name, "phone");
        assert_eq!(phone.public_key, fx.phone);
        let psk = fs::read_to_string(fx.path("phone.psk")).unwrap();
        assert_eq!(phone.preshared_key.as_ref().unwrap().expose_base64(), psk);
        assert_eq!(phone.preshared_key_file, Some(fx.path("phone.psk")));
        assert_eq!(
            phone.allowed_ips,
            [
                "10.8.0.2/32".parse().unwrap(),
                "fd08::2/128".parse().unwrap()
            ] as [IpNet; 2]
        );
        assert_eq!(phone.endpoint, None);
        assert_eq!(phone.persistent_keepalive, Some(25));
        assert!(phone.route, "route defaults to true");

        assert_eq!(office.name, "office");
        assert_eq!(office.public_key, fx.laptop);
        assert_eq!(
            (
                office.preshared_key.is_none(),
                office.preshared_key_file.is_none()
            ),
            (true, true)
        );
        assert_eq!(
            office.allowed_ips,
            [
                "10.8.0.3/32".parse().unwrap(),
                "192.168.2.0/24".parse().unwrap()
            ] as [IpNet; 2]
        );
        assert_eq!(
            office.endpoint.as_ref().unwrap().to_string(),
            "[2001:db8::7]:51820"
        );
        assert_eq!(office.persistent_keepalive, None);
        assert!(!office.route);

        let wg1 = &config.wireguard[1];
        assert_eq!(
            (wg1.name.as_str(), wg1.listen_port, wg1.fwmark),
            ("wg1", Some(51821), None)
        );
        assert!(wg1.addresses.is_empty() && wg1.peers.is_empty() && wg1.mtu.is_none());
    }

    #[test]
    fn empty_file_or_no_wireguard_is_valid() {
        let fx = Fixture::new();
        for text in [
            "",
            "# later\n",
            "[router]\nwan = \"eth0\"\n",
            "[wireguard]\n",
        ] {
            let config = fx.parse(text).unwrap();
            assert!(config.wireguard.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn interfaces_keep_file_order_and_absolute_key_paths() {
        let fx = Fixture::new();
        let text = format!(
            "[wireguard.wg9]\nprivate_key_file = {:?}\n[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\n",
            fx.path("wg1.key").display()
        );
        let config = fx.parse(&text).unwrap();
        let names: Vec<&str> = config.wireguard.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["wg9", "wg0"]);
        assert_eq!(config.wireguard[0].private_key_file, fx.path("wg1.key"));
    }

    #[test]
    fn interface_names_follow_iproute2() {
        let fx = Fixture::new();
        let help = "help: choose a name of at most 15 bytes without '/', ':' or spaces \
                    (iproute2's rules), e.g. [wireguard.wg0]";
        for (header, column, problem) in [
            (
                "[wireguard.wireguard-home10]",
                12,
                r#""wireguard-home10" is 16 bytes long; Linux allows at most 15"#,
            ),
            ("[wireguard.\"wg/0\"]", 12, r#""wg/0" contains '/'"#),
            ("[wireguard.\"wg 0\"]", 12, r#""wg 0" contains ' '"#),
            ("[wireguard.\"wg:0\"]", 12, r#""wg:0" contains ':'"#),
            ("[wireguard.'..']", 12, r#"".." is not allowed"#),
            ("[wireguard.\"\"]", 12, "is empty"),
        ] {
            assert_eq!(
                fx.error(&format!("{header}\nprivate_key_file = \"wg0.key\"\n")),
                format!("DIR/vpn.toml:1:{column}: interface name {problem}\n  {help}"),
            );
        }
        // 15 bytes is the most, and non-ASCII is the kernel's business.
        fx.parse("[wireguard.wireguard-home0]\nprivate_key_file = \"wg0.key\"\n")
            .unwrap();
    }

    #[test]
    fn wan_name_follows_iproute2() {
        let fx = Fixture::new();
        assert_eq!(
            fx.error("[router]\nwan = \"eth 0\"\n"),
            "DIR/vpn.toml:2:7: wan \"eth 0\" contains ' '\n  help: give the WAN port's name \
             as `ip link` shows it, e.g. wan = \"eth0\""
        );
    }

    #[test]
    fn port_clash_is_reported_at_the_second_interface() {
        let fx = Fixture::new();
        assert_eq!(
            fx.error(&format!(
                "{WG0}\n[wireguard.wg1]\nprivate_key_file = \"wg1.key\"\nlisten_port = 51820\n"
            )),
            "DIR/vpn.toml:8:15: listen_port 51820 is already used by wg0 (line 3)\n  \
             help: each interface needs a UDP port of its own, e.g. listen_port = 51821"
        );
    }

    #[test]
    fn listen_port_must_be_a_port() {
        let fx = Fixture::new();
        for port in ["0", "65536", "-1"] {
            assert_eq!(
                fx.error(&format!(
                    "[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\nlisten_port = {port}\n"
                )),
                format!(
                    "DIR/vpn.toml:3:15: listen_port {port} is not a port number (1-65535)\n  \
                     help: use a free UDP port, e.g. listen_port = 51820, or leave \
                     listen_port out for a random one"
                )
            );
        }
    }

    #[test]
    fn missing_key_file_says_how_to_make_one() {
        let fx = Fixture::new();
        assert_eq!(
            fx.error("[wireguard.wg0]\nprivate_key_file = \"keys/wg0.key\"\n"),
            "DIR/vpn.toml:2:20: cannot read DIR/keys/wg0.key: No such file or directory (os \
             error 2)\n  help: create it with `(umask 077; vpn-ctl genkey > DIR/keys/wg0.key)`, \
             or correct the path (relative paths start at DIR)"
        );
        assert_eq!(
            fx.error(&format!(
                "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npreshared_key_file = \"my phone.psk\"\npublic_key = \"<phone>\"\n"
            )),
            "DIR/vpn.toml:7:22: cannot read DIR/my phone.psk: No such file or directory (os \
             error 2)\n  help: create it with `(umask 077; vpn-ctl genpsk > 'DIR/my \
             phone.psk')`, or correct the path (relative paths start at DIR)"
        );
    }

    #[test]
    fn key_file_without_a_key_is_refused() {
        let fx = Fixture::new();
        let public = fx.phone.to_base64();
        for contents in [
            "",
            "not a key\n",
            &format!("{public}\n{public}\n"),
            &format!("[Interface]\nPrivateKey = {public}\n"),
            "\u{fffd}".repeat(1000).as_str(),
        ] {
            write(&fx.path("wg0.key"), contents, 0o600);
            assert_eq!(
                fx.error("[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\n"),
                "DIR/vpn.toml:2:20: DIR/wg0.key does not hold a WireGuard key\n  help: a key \
                 file holds one key of 44 base64 characters, as `vpn-ctl genkey` prints it; \
                 write a new one with `vpn-ctl genkey > DIR/wg0.key`",
                "{contents:?}"
            );
        }
        fs::write(fx.path("wg0.key"), [0xff, 0xfe, b'\n']).unwrap();
        assert!(
            fx.error("[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\n")
                .contains("does not hold")
        );
        // Without the trailing newline it is still the key.
        write(&fx.path("wg0.key"), &fx.wg0.expose_base64(), 0o600);
        fx.parse("[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\n")
            .unwrap();
    }

    #[test]
    fn key_file_others_may_read_is_refused() {
        let fx = Fixture::new();
        for mode in [0o644, 0o640, 0o604, 0o620, 0o601] {
            fs::set_permissions(fx.path("wg0.key"), fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(
                fx.error("[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\n"),
                format!(
                    "DIR/vpn.toml:2:20: DIR/wg0.key is accessible to other users (mode \
                     {mode:04o})\n  help: `chmod 600 DIR/wg0.key`: only its owner may read a key"
                )
            );
        }
        fs::set_permissions(fx.path("wg0.key"), fs::Permissions::from_mode(0o400)).unwrap();
        fx.parse("[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\n")
            .unwrap();
    }

    #[test]
    fn preshared_key_file_is_checked_like_a_private_one() {
        let fx = Fixture::new();
        write(&fx.path("phone.psk"), "secret\n", 0o644);
        assert_eq!(
            fx.error(&format!(
                "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npreshared_key_file = \"phone.psk\"\npublic_key = \"<phone>\"\n"
            )),
            "DIR/vpn.toml:7:22: DIR/phone.psk does not hold a WireGuard key\n  help: a key \
             file holds one key of 44 base64 characters, as `vpn-ctl genpsk` prints it; write \
             a new one with `vpn-ctl genpsk > DIR/phone.psk`\n\
             DIR/vpn.toml:7:22: DIR/phone.psk is accessible to other users (mode 0644)\n  \
             help: `chmod 600 DIR/phone.psk`: only its owner may read a key\n\
             2 problems; nothing was applied"
        );
    }

    #[test]
    fn key_file_that_is_a_directory_is_unreadable() {
        let fx = Fixture::new();
        fs::create_dir(fx.path("keys")).unwrap();
        assert_eq!(
            fx.error("[wireguard.wg0]\nprivate_key_file = \"keys\"\n"),
            "DIR/vpn.toml:2:20: cannot read DIR/keys: Is a directory (os error 21)\n  \
             help: private_key_file must name a readable file that holds one key"
        );
    }

    #[test]
    fn empty_key_file_name() {
        let fx = Fixture::new();
        assert_eq!(
            fx.error("[wireguard.wg0]\nprivate_key_file = \"\"\n"),
            "DIR/vpn.toml:2:20: private_key_file is empty\n  help: name the file that holds \
             the key, e.g. private_key_file = \"wg0.key\""
        );
    }

    #[test]
    fn required_fields() {
        let fx = Fixture::new();
        assert_eq!(
            fx.error("[wireguard.wg0]\nlisten_port = 51820\n"),
            "DIR/vpn.toml:1:1: interface wg0 has no private_key_file\n  help: add \
             private_key_file = \"wg0.key\" and make the key with `(umask 077; vpn-ctl genkey \
             > DIR/wg0.key)`"
        );
        assert_eq!(
            fx.error(&format!("{WG0}\n[[wireguard.wg0.peers]]\nname = \"phone\"\n\n[[wireguard.wg0.peers]]\npublic_key = \"<phone>\"\n")),
            "DIR/vpn.toml:6:1: peer \"phone\" of wg0 has no public_key\n  help: add the public \
             key the peer's private key gives (`wg pubkey` on the peer), e.g. public_key = \
             \"...\"\n\
             DIR/vpn.toml:9:1: this peer of wg0 has no name\n  help: add a name that tells the \
             peer apart, e.g. name = \"phone\"\n\
             2 problems; nothing was applied"
        );
    }

    #[test]
    fn malformed_public_key_is_pointed_at() {
        let fx = Fixture::new();
        let short = &fx.phone.to_base64()[..43];
        assert_eq!(
            fx.error(&format!(
                "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npublic_key = \"{short}\"\n"
            )),
            "DIR/vpn.toml:7:14: the public_key of peer \"phone\" is not a WireGuard key\n  \
             help: a public key is 44 characters of base64, as `wg pubkey` prints it; this one \
             has 43"
        );
        assert_eq!(
            fx.error(&format!(
                "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npublic_key = \"{}!\"\n",
                &short[..43]
            )),
            "DIR/vpn.toml:7:14: the public_key of peer \"phone\" is not a WireGuard key\n  \
             help: a public key is 44 characters of base64, as `wg pubkey` prints it; this one \
             has 44"
        );
    }

    #[test]
    fn same_public_key_on_two_peers_names_the_first() {
        let fx = Fixture::new();
        let text = format!(
            "{WG0}
[[wireguard.wg0.peers]]
name = \"phone\"
public_key = \"<phone>\"

[wireguard.wg1]
private_key_file = \"wg1.key\"

[[wireguard.wg1.peers]]
name = \"tablet\"
public_key = \"<phone>\"
"
        );
        assert_eq!(
            fx.error(&text),
            "DIR/vpn.toml:15:14: peer \"tablet\" has the same public key as peer \"phone\" of \
             wg0 (line 8)\n  help: every peer needs a key pair of its own: check which of the \
             two keys was copied, and give the peer the public key of its own private key"
        );
    }

    #[test]
    fn peer_with_the_interface_s_own_key_is_refused() {
        let fx = Fixture::new();
        assert_eq!(
            fx.error(&format!(
                "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npublic_key = \"<wg0>\"\n"
            )),
            "DIR/vpn.toml:7:14: the public_key of peer \"phone\" is wg0's own public key\n  \
             help: use the key of the peer's private key (`wg pubkey` on the peer), not the \
             one of wg0's private_key_file"
        );
    }

    #[test]
    fn peer_names_are_non_empty_and_unique_per_interface() {
        let fx = Fixture::new();
        let text = format!(
            "{WG0}
[[wireguard.wg0.peers]]
name = \"phone\"
public_key = \"<phone>\"

[[wireguard.wg0.peers]]
name = \"phone\"
public_key = \"<laptop>\"

[[wireguard.wg0.peers]]
name = \" \"
"
        );
        assert_eq!(
            fx.error(&text),
            "DIR/vpn.toml:11:8: wg0 already has a peer named \"phone\" (line 7)\n  help: give \
             each peer of an interface a name of its own\n\
             DIR/vpn.toml:14:1: the peer at line 14 of wg0 has no public_key\n  help: add the \
             public key the peer's private key gives (`wg pubkey` on the peer), e.g. \
             public_key = \"...\"\n\
             DIR/vpn.toml:15:8: a peer's name cannot be empty\n  help: give the peer a name, \
             e.g. name = \"phone\"\n\
             3 problems; nothing was applied"
        );
        // The same name on two interfaces is fine.
        fx.parse(&format!(
            "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npublic_key = \"<phone>\"\n\
             [wireguard.wg1]\nprivate_key_file = \"wg1.key\"\n\
             [[wireguard.wg1.peers]]\nname = \"phone\"\npublic_key = \"<laptop>\"\n"
        ))
        .unwrap();
    }

    /// A peer of wg0 at line 5 with `allowed` as its allowed IPs (line 7).
    fn peer_with(allowed: &str) -> String {
        format!(
            "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\nallowed_ips = {allowed}\npublic_key = \"<phone>\"\n"
        )
    }

    #[test]
    fn allowed_ips_have_no_host_bits() {
        let fx = Fixture::new();
        assert_eq!(
            fx.error(&peer_with(r#"["10.8.0.2/24", "fd08::2/64"]"#)),
            "DIR/vpn.toml:7:16: 10.8.0.2/24 has bits set after its prefix length (its network \
             is 10.8.0.0/24)\n  help: did you mean 10.8.0.2/32 or 10.8.0.0/24?\n\
             DIR/vpn.toml:7:31: fd08::2/64 has bits set after its prefix length (its network \
             is fd08::/64)\n  help: did you mean fd08::2/128 or fd08::/64?\n\
             2 problems; nothing was applied"
        );
    }

    #[test]
    fn allowed_ips_must_be_prefixes() {
        let fx = Fixture::new();
        assert_eq!(
            fx.error(&peer_with(r#"["10.8.0.2/33", "phone"]"#)),
            "DIR/vpn.toml:7:16: \"10.8.0.2/33\" is not an IP prefix\n  help: write an address \
             and prefix length, e.g. \"10.8.0.2/32\" or \"192.168.1.0/24\"\n\
             DIR/vpn.toml:7:31: \"phone\" is not an IP prefix\n  help: write an address and \
             prefix length, e.g. \"10.8.0.2/32\" or \"192.168.1.0/24\"\n\
             2 problems; nothing was applied"
        );
    }

    #[test]
    fn overlapping_allowed_ips_name_both_peers() {
        let fx = Fixture::new();
        let text = format!(
            "{WG0}
[[wireguard.wg0.peers]]
name = \"phone\"
allowed_ips = [\"10.8.0.2/32\", \"192.168.2.0/24\"]
public_key = \"<phone>\"

[[wireguard.wg0.peers]]
name = \"laptop\"
allowed_ips = [\"10.8.0.3/32\", \"192.168.0.0/16\", \"10.8.0.2\"]
public_key = \"<laptop>\"
"
        );
        assert_eq!(
            fx.error(&text),
            "DIR/vpn.toml:13:31: 192.168.0.0/16 overlaps 192.168.2.0/24 of peer \"phone\" (line \
             8)\n  help: the kernel sends each address to one peer only, so one of the two \
             would silently lose it: give peer \"laptop\" and peer \"phone\" separate ranges\n\
             DIR/vpn.toml:13:49: 10.8.0.2/32 overlaps 10.8.0.2/32 of peer \"phone\" (line 8)\n  \
             help: the kernel sends each address to one peer only, so one of the two would \
             silently lose it: give peer \"laptop\" and peer \"phone\" separate ranges\n\
             2 problems; nothing was applied"
        );
        // The same ranges on two interfaces do not meet in the kernel.
        fx.parse(&format!(
            "{WG0}[[wireguard.wg0.peers]]\nname = \"a\"\nallowed_ips = [\"192.168.2.0/24\"]\npublic_key = \"<phone>\"\n\
             [wireguard.wg1]\nprivate_key_file = \"wg1.key\"\n\
             [[wireguard.wg1.peers]]\nname = \"b\"\nallowed_ips = [\"192.168.2.0/24\"]\npublic_key = \"<laptop>\"\n"
        ))
        .unwrap();
    }

    #[test]
    fn host_addresses_must_be_in_the_interface_subnet() {
        let fx = Fixture::new();
        assert_eq!(
            fx.error(&peer_with(
                r#"["10.9.0.2/32", "fd09::2/128", "10.8.0.1/32"]"#
            )),
            "DIR/vpn.toml:7:16: 10.9.0.2/32 is outside wg0's subnet 10.8.0.0/24\n  help: a \
             peer's own address must be in wg0's subnet: use one from 10.8.0.0/24, or widen \
             wg0's address (a network behind a peer may be anywhere)\n\
             DIR/vpn.toml:7:31: fd09::2/128 is outside wg0's subnet fd08::/64\n  help: a \
             peer's own address must be in wg0's subnet: use one from fd08::/64, or widen \
             wg0's address (a network behind a peer may be anywhere)\n\
             DIR/vpn.toml:7:46: 10.8.0.1/32 is wg0's own address\n  help: give peer \"phone\" \
             another address in 10.8.0.0/24\n\
             3 problems; nothing was applied"
        );
        // Networks behind a peer may be anywhere, and so may full-tunnel routes.
        fx.parse(&peer_with(
            r#"["10.8.0.2/32", "192.168.2.0/24", "0.0.0.0/0", "::/0"]"#,
        ))
        .unwrap();
    }

    #[test]
    fn host_addresses_with_several_subnets() {
        let fx = Fixture::new();
        let text = "[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\naddresses = [\"10.8.0.1/24\", \"10.9.0.1/24\"]\n\
                    [[wireguard.wg0.peers]]\nname = \"phone\"\nallowed_ips = [\"10.9.0.2/32\", \"10.7.0.2/32\", \"fd08::2/128\"]\npublic_key = \"<phone>\"\n";
        assert_eq!(
            fx.error(text),
            "DIR/vpn.toml:6:31: 10.7.0.2/32 is outside wg0's subnets 10.8.0.0/24, 10.9.0.0/24\n  \
             help: a peer's own address must be in wg0's subnets: use one from 10.8.0.0/24, \
             10.9.0.0/24, or widen wg0's address (a network behind a peer may be anywhere)"
        );
    }

    #[test]
    fn interface_addresses_are_addresses_in_a_subnet() {
        let fx = Fixture::new();
        let text = "[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\naddresses = [\
                    \"10.8.0.1\", \"10.8.0.0/24\", \"10.9.0.255/24\", \"fd08::/64\", \"wg0\", \
                    \"10.10.0.1/32\", \"10.11.0.1/31\"]\n";
        assert_eq!(
            fx.error(text),
            "DIR/vpn.toml:3:14: address \"10.8.0.1\" of wg0 has no prefix length\n  help: add \
             the prefix length of wg0's subnet, e.g. \"10.8.0.1/24\"\n\
             DIR/vpn.toml:3:26: 10.8.0.0/24 is the network address of its subnet, not an \
             address wg0 can have\n  help: give wg0 an address inside the subnet: did you mean \
             10.8.0.1/24?\n\
             DIR/vpn.toml:3:41: 10.9.0.255/24 is the broadcast address of its subnet, not an \
             address wg0 can have\n  help: give wg0 an address inside the subnet: did you mean \
             10.9.0.1/24?\n\
             DIR/vpn.toml:3:58: fd08::/64 is the network address of its subnet, not an address \
             wg0 can have\n  help: give wg0 an address inside the subnet: did you mean \
             fd08::1/64?\n\
             DIR/vpn.toml:3:71: \"wg0\" is not an address with a prefix length\n  help: write \
             an address with its subnet's prefix length, e.g. \"10.8.0.1/24\" or \
             \"fd08::1/64\"\n\
             5 problems; nothing was applied"
        );
    }

    #[test]
    fn mtu_minimum_depends_on_ipv6() {
        let fx = Fixture::new();
        let v6 = format!("{WG0}mtu = 1279\n");
        assert_eq!(
            fx.error(&v6),
            "DIR/vpn.toml:5:7: mtu 1279 is below 1280, the minimum for IPv6 (wg0 has an IPv6 \
             address)\n  help: use 1280-65535, e.g. mtu = 1420 (WireGuard's default), or leave \
             mtu out"
        );
        let v4 = "[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\naddresses = [\"10.8.0.1/24\"]\n";
        assert_eq!(
            fx.parse(&format!("{v4}mtu = 1279\n")).unwrap().wireguard[0].mtu,
            Some(1279)
        );
        assert_eq!(
            fx.error(&format!("{v4}mtu = 575\n")),
            "DIR/vpn.toml:4:7: mtu 575 is below 576, the minimum for IPv4\n  help: use \
             576-65535, e.g. mtu = 1420 (WireGuard's default), or leave mtu out"
        );
        assert_eq!(
            fx.error(&format!("{v4}mtu = 65536\n")),
            "DIR/vpn.toml:4:7: mtu 65536 is above 65535, the largest an IP packet can be\n  \
             help: use 576-65535, e.g. mtu = 1420 (WireGuard's default), or leave mtu out"
        );
        assert_eq!(
            fx.parse(&format!("{WG0}mtu = 65535\n")).unwrap().wireguard[0].mtu,
            Some(65535)
        );
    }

    #[test]
    fn persistent_keepalive_zero_is_refused() {
        let fx = Fixture::new();
        let peer = |keepalive: &str| {
            format!(
                "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npublic_key = \"<phone>\"\npersistent_keepalive = {keepalive}\n"
            )
        };
        assert_eq!(
            fx.error(&peer("0")),
            "DIR/vpn.toml:8:24: persistent_keepalive must be 1-65535 seconds, not 0\n  help: \
             leave persistent_keepalive out to turn keepalive off"
        );
        assert_eq!(
            fx.error(&peer("65536")),
            "DIR/vpn.toml:8:24: persistent_keepalive must be 1-65535 seconds, not 65536\n  \
             help: 25 keeps most NAT mappings open: persistent_keepalive = 25"
        );
        let config = fx.parse(&peer("65535")).unwrap();
        assert_eq!(
            config.wireguard[0].peers[0].persistent_keepalive,
            Some(65535)
        );
    }

    #[test]
    fn fwmark_is_any_u32_and_zero_is_none() {
        let fx = Fixture::new();
        let mark = |fwmark: &str| format!("{WG0}fwmark = {fwmark}\n");
        assert_eq!(fx.parse(&mark("0")).unwrap().wireguard[0].fwmark, None);
        assert_eq!(
            fx.parse(&mark("0xffffffff")).unwrap().wireguard[0].fwmark,
            Some(u32::MAX)
        );
        for bad in ["-1", "0x100000000"] {
            assert_eq!(
                fx.error(&mark(bad)),
                format!(
                    "DIR/vpn.toml:5:10: fwmark {} does not fit in 32 bits\n  help: use 1 to \
                     0xffffffff, e.g. fwmark = 0x5182, or leave fwmark out",
                    if bad == "-1" { "-1" } else { "4294967296" }
                )
            );
        }
    }

    #[test]
    fn endpoints_are_checked_but_not_resolved() {
        let fx = Fixture::new();
        let text = format!(
            "{WG0}public_endpoint = \"home.example.org\"\n\
             [[wireguard.wg0.peers]]\nname = \"phone\"\npublic_key = \"<phone>\"\nendpoint = \"2001:db8::1:51820\"\n"
        );
        assert_eq!(
            fx.error(&text),
            "DIR/vpn.toml:5:19: \"home.example.org\" has no port: write host:port, e.g. \
             vpn.example.org:51820\n  help: write how clients reach this router from the \
             internet as host:port, e.g. public_endpoint = \"home.example.org:51820\"\n\
             DIR/vpn.toml:9:12: \"2001:db8::1:51820\": write IPv6 endpoints in brackets, e.g. \
             [2001:db8::1]:51820\n  help: write the peer's address as host:port, e.g. \
             endpoint = \"peer.example.org:51820\" or \"[2001:db8::1]:51820\"\n\
             2 problems; nothing was applied"
        );
        // A name that does not resolve is fine: only `up` looks it up.
        let config = fx
            .parse(&format!(
                "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npublic_key = \"<phone>\"\nendpoint = \"peer.invalid:51820\"\n"
            ))
            .unwrap();
        assert_eq!(
            config.wireguard[0].peers[0].endpoint.as_ref().unwrap().host,
            "peer.invalid"
        );
    }

    #[test]
    fn lan_and_client_dns_are_checked() {
        let fx = Fixture::new();
        let text = format!(
            "[router]\nlan = [\"192.168.1.1/24\", \"lan\"]\n\n{WG0}client_dns = [\"192.168.1.1:53\"]\n"
        );
        assert_eq!(
            fx.error(&text),
            "DIR/vpn.toml:2:8: 192.168.1.1/24 has bits set after its prefix length (its \
             network is 192.168.1.0/24)\n  help: did you mean 192.168.1.1/32 or \
             192.168.1.0/24?\n\
             DIR/vpn.toml:2:26: \"lan\" is not an IP prefix\n  help: write an address and \
             prefix length, e.g. \"10.8.0.2/32\" or \"192.168.1.0/24\"\n\
             DIR/vpn.toml:8:15: \"192.168.1.1:53\" is not an IP address\n  help: client_dns \
             lists DNS servers by address, e.g. client_dns = [\"192.168.1.1\"]\n\
             3 problems; nothing was applied"
        );
    }

    /// Every problem is reported, in file order, however they are spread.
    #[test]
    fn all_problems_are_reported_at_once() {
        let fx = Fixture::new();
        let text = "[wireguard.wg1]
private_key_file = \"missing.key\"
listen_port = 0
addresses = [\"10.8.1.1/24\"]

[[wireguard.wg1.peers]]
name = \"phone\"
public_key = \"nope\"
allowed_ips = [\"10.8.1.2/24\"]
persistent_keepalive = 0

[wireguard.wg0]
private_key_file = \"wg0.key\"
mtu = 100
";
        assert_eq!(
            fx.error(text),
            "DIR/vpn.toml:2:20: cannot read DIR/missing.key: No such file or directory (os \
             error 2)\n  help: create it with `(umask 077; vpn-ctl genkey > DIR/missing.key)`, \
             or correct the path (relative paths start at DIR)\n\
             DIR/vpn.toml:3:15: listen_port 0 is not a port number (1-65535)\n  help: use a \
             free UDP port, e.g. listen_port = 51820, or leave listen_port out for a random \
             one\n\
             DIR/vpn.toml:8:14: the public_key of peer \"phone\" is not a WireGuard key\n  \
             help: a public key is 44 characters of base64, as `wg pubkey` prints it; this one \
             has 4\n\
             DIR/vpn.toml:9:16: 10.8.1.2/24 has bits set after its prefix length (its network \
             is 10.8.1.0/24)\n  help: did you mean 10.8.1.2/32 or 10.8.1.0/24?\n\
             DIR/vpn.toml:10:24: persistent_keepalive must be 1-65535 seconds, not 0\n  help: \
             leave persistent_keepalive out to turn keepalive off\n\
             DIR/vpn.toml:14:7: mtu 100 is below 576, the minimum for IPv4\n  help: use \
             576-65535, e.g. mtu = 1420 (WireGuard's default), or leave mtu out\n\
             6 problems; nothing was applied"
        );
    }

    #[test]
    fn syntax_errors_come_before_validation() {
        let fx = Fixture::new();
        assert_eq!(
            fx.error("[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\nlisten_port = \"51820\"\n"),
            "DIR/vpn.toml:3:15: `listen_port` must be an integer, not the string \"51820\"\n  \
             help: write it like this: listen_port = 51820"
        );
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            shell_quote(Path::new("/etc/vpn-ctl/wg0.key")),
            "/etc/vpn-ctl/wg0.key"
        );
        assert_eq!(
            shell_quote(Path::new("/etc/my keys/it's")),
            r"'/etc/my keys/it'\''s'"
        );
    }
}
