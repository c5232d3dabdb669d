//! `[wireguard.NAME]`: interfaces and their peers.

use super::*;

impl Validator<'_> {
    pub(super) fn interface(
        &mut self,
        name: Spanned<String>,
        raw: Spanned<RawInterface>,
    ) -> Option<WgInterface> {
        let header = raw.span();
        let raw = raw.into_inner();
        if let Some(problem) = link::name_problem(name.get_ref()) {
            self.error(
                name.span(),
                format!("interface name {problem}"),
                format!(
                    "choose a name of {}, e.g. [wireguard.wg0]",
                    link::NAME_RULES
                ),
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
        let addresses: Vec<(IpNet, Range<usize>)> = raw
            .addresses
            .iter()
            .filter_map(|address| Some((self.interface_address(&name, address)?, address.span())))
            .collect();
        self.claim_wg_subnets(&name, &addresses);
        let addresses: Vec<IpNet> = addresses.into_iter().map(|(a, _)| a).collect();
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
        let peers_listed = raw.peers.is_some();
        let peers: Vec<Peer> = raw
            .peers
            .unwrap_or_default()
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
            internet: raw.internet.unwrap_or(true),
            peers,
            peers_listed,
        })
    }

    pub(super) fn listen_port(&mut self, iface: &str, port: &Spanned<i64>) -> Option<u16> {
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

    /// Records the subnets of `iface`'s addresses, and reports one that overlaps another
    /// interface's: the kernel would send those addresses out of one of the two only.
    pub(super) fn claim_wg_subnets(&mut self, iface: &str, addresses: &[(IpNet, Range<usize>)]) {
        for (address, span) in addresses {
            let subnet = address.trunc();
            let other = self
                .wg_subnets
                .iter()
                .find(|(s, owner, _)| owner != iface && (s.contains(&subnet) || subnet.contains(s)))
                .cloned();
            if let Some((other, owner, line)) = other {
                self.error(
                    span.clone(),
                    format!("{address} of {iface} overlaps {owner}'s subnet {other} (line {line})"),
                    format!(
                        "the kernel routes each address out of one interface only, so one of \
                         the two would silently lose it: give {iface} and {owner} separate \
                         subnets"
                    ),
                );
            }
            let line = self.line(span);
            self.wg_subnets.push((subnet, iface.to_string(), line));
        }
    }

    /// An interface's own address: an address with its subnet's prefix length.
    pub(super) fn interface_address(
        &mut self,
        iface: &str,
        value: &Spanned<String>,
    ) -> Option<IpNet> {
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
        if net.prefix_len() == 0 {
            let example = IpNet::new(net.addr(), if net.addr().is_ipv4() { 24 } else { 64 })
                .expect("a valid prefix length");
            self.error(
                value.span(),
                format!(
                    "address {net} of {iface} has prefix length 0: its subnet would be every {} \
                     address",
                    family(&net.addr())
                ),
                format!("give the prefix length of {iface}'s subnet, e.g. \"{example}\""),
            );
            return None;
        }
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

    pub(super) fn mtu(
        &mut self,
        iface: &str,
        addresses: &[IpNet],
        mtu: &Spanned<i64>,
    ) -> Option<u32> {
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

    pub(super) fn fwmark(&mut self, mark: &Spanned<i64>) -> Option<u32> {
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

    pub(super) fn dns_server(&mut self, value: &Spanned<String>) -> Option<IpAddr> {
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

    pub(super) fn peer(
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
                if let Some(problem) = peer_name_problem(name.get_ref()) {
                    self.error(
                        name.span(),
                        format!("peer name {problem}"),
                        format!(
                            "use at most {PEER_NAME_MAX} characters, without control \
                             characters or Unicode direction controls, e.g. name = \"phone\""
                        ),
                    );
                } else if let Some(first) = names.get(name.get_ref()) {
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
            self.covers_the_lan(iface, &label, value.span(), net);
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

    pub(super) fn public_key(
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
        if key.has_small_order() {
            self.error(
                value.span(),
                format!(
                    "the public_key of {label} is a point of small order, not a usable key: \
                     every handshake with it would fail"
                ),
                "Diffie-Hellman with it gives all zeros, which WireGuard refuses; use the \
                 public key of the peer's own private key (`wg pubkey` on the peer)",
            );
            return None;
        }
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

    /// Warns when the allowed IP `net` of a peer is or contains a network of `[router] lan`:
    /// right for a site-to-site link that reaches the LAN through the peer, and otherwise a
    /// peer that may send from LAN addresses, and a route for them into the tunnel.
    pub(super) fn covers_the_lan(
        &mut self,
        iface: &InterfaceContext,
        label: &str,
        span: Range<usize>,
        net: IpNet,
    ) {
        let Some(lan) = self.lan.iter().find(|lan| net.contains(*lan)).copied() else {
            return;
        };
        let iface_name = &iface.name;
        let what = if net == lan { "is" } else { "contains" };
        self.warning(
            span,
            format!("allowed IP {net} of {label} {what} this router's LAN {lan} ([router] lan)"),
            format!(
                "the peer may then send from LAN addresses, and with route = true {net} is \
                 routed into {iface_name}: right if the LAN is meant to be reached through this \
                 peer (site-to-site), otherwise list only the peer's own addresses"
            ),
        );
    }

    /// The allowed IP `net` of a peer against the interface's subnets and the other peers.
    pub(super) fn allowed_ip(
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
