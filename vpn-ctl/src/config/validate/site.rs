//! `[ipsec.NAME]`: a site's gateways, identities, subnets and probe; its keying is checked
//! in [`super::static_keying`] or [`super::ike`].

use super::*;

/// `[ipsec.NAME]`: IPsec site-to-site connections.
impl Validator<'_> {
    pub(super) fn site(
        &mut self,
        name: Spanned<String>,
        raw: Spanned<RawSite>,
        lan: &[IpNet],
    ) -> Option<IpsecSite> {
        let header = raw.span();
        let raw = raw.into_inner();
        if let Some(problem) = site_name_problem(name.get_ref()) {
            self.error(
                name.span(),
                format!("site name {problem}"),
                format!(
                    "use at most {SITE_NAME_MAX} letters, digits, '_', '.' or '-', e.g. \
                     [ipsec.fritzbox]"
                ),
            );
        }
        let name = name.into_inner();
        let keying_help = "use keying = \"ike\" to have strongSwan negotiate the keys (with a \
                           FRITZ!Box or any other IKE router), or keying = \"static\" for \
                           fixed keys from files between two Linux routers";
        let mode = match &raw.keying {
            None => {
                self.error(
                    header.clone(),
                    format!("site {name} has no keying"),
                    keying_help,
                );
                None
            }
            Some(keying) => match keying.get_ref().trim() {
                "ike" => Some(KeyingMode::Ike),
                "static" => Some(KeyingMode::Static),
                other => {
                    self.error(
                        keying.span(),
                        format!("keying {other:?} is neither \"ike\" nor \"static\""),
                        keying_help,
                    );
                    None
                }
            },
        };
        if let Some(mode) = mode {
            self.fields_of_the_other_keying(&name, mode, &raw);
        }

        let local_gateway = raw
            .local_gateway
            .as_ref()
            .and_then(|g| self.gateway(g, "local_gateway"));
        let remote_gateway = match &raw.remote_gateway {
            None => {
                self.error(
                    header.clone(),
                    format!("site {name} has no remote_gateway"),
                    "add the other router's public address or DNS name, e.g. remote_gateway \
                     = \"right.domain.com\"",
                );
                None
            }
            Some(g) => self.gateway(g, "remote_gateway"),
        };
        if let (Some(Gateway::Address(local)), Some(Gateway::Address(remote)), Some(value)) =
            (&local_gateway, &remote_gateway, &raw.remote_gateway)
            && local.is_ipv4() != remote.is_ipv4()
        {
            self.error(
                value.span(),
                format!(
                    "remote_gateway {remote} is {}, local_gateway {local} is {}",
                    family(remote),
                    family(local)
                ),
                "a tunnel's two ends speak the same IP version: give both gateways IPv4 \
                 addresses, or both IPv6",
            );
        }

        let local_subnets = self.subnets(&name, &header, raw.local_subnets.as_ref(), Side::Local);
        let remote_subnets =
            self.subnets(&name, &header, raw.remote_subnets.as_ref(), Side::Remote);
        self.remote_subnet_overlaps(&name, &local_subnets, &remote_subnets, lan);
        self.subnet_families(&name, &local_subnets, &remote_subnets);
        let local_subnets: Vec<IpNet> = local_subnets.into_iter().map(|(net, _)| net).collect();
        let remote_subnets: Vec<IpNet> = remote_subnets.into_iter().map(|(net, _)| net).collect();
        let watchdog_probe = raw
            .watchdog_probe
            .as_ref()
            .and_then(|probe| self.watchdog_probe(&name, probe, &remote_subnets));

        let keying = match mode? {
            KeyingMode::Static => Keying::Static(self.static_keying(
                &name,
                &header,
                &raw,
                local_gateway.as_ref(),
                remote_gateway.as_ref(),
            )?),
            KeyingMode::Ike => {
                Keying::Ike(self.ike_keying(&name, &header, &raw, local_gateway.as_ref())?)
            }
        };
        Some(IpsecSite {
            name,
            local_gateway,
            remote_gateway: remote_gateway?,
            local_subnets,
            remote_subnets,
            keying,
            watchdog_probe,
        })
    }

    /// Fields that only the other keying mode has are errors that name the right one.
    pub(super) fn fields_of_the_other_keying(
        &mut self,
        name: &str,
        mode: KeyingMode,
        raw: &RawSite,
    ) {
        let list = |v: &Option<Spanned<Vec<Spanned<String>>>>| v.as_ref().map(Spanned::span);
        let string = |v: &Option<Spanned<String>>| v.as_ref().map(Spanned::span);
        let integer = |v: &Option<Spanned<i64>>| v.as_ref().map(Spanned::span);
        let foreign: Vec<(&str, Option<Range<usize>>)> = match mode {
            KeyingMode::Static => vec![
                ("local_id", string(&raw.local_id)),
                ("remote_id", string(&raw.remote_id)),
                ("psk_file", string(&raw.psk_file)),
                ("ike_version", string(&raw.ike_version)),
                ("ike_proposals", list(&raw.ike_proposals)),
                ("esp_proposals", list(&raw.esp_proposals)),
                ("allow_weak", list(&raw.allow_weak)),
                ("ike_lifetime", integer(&raw.ike_lifetime)),
                ("esp_lifetime", integer(&raw.esp_lifetime)),
                ("dpd", integer(&raw.dpd)),
                (
                    "nat_traversal",
                    raw.nat_traversal.as_ref().map(Spanned::span),
                ),
            ],
            KeyingMode::Ike => vec![
                ("esp", string(&raw.esp)),
                ("spi_out", integer(&raw.spi_out)),
                ("spi_in", integer(&raw.spi_in)),
                ("key_out_file", string(&raw.key_out_file)),
                ("key_in_file", string(&raw.key_in_file)),
            ],
        };
        for (field, span) in foreign {
            let Some(span) = span else { continue };
            let (other, help) = match mode {
                KeyingMode::Static => (
                    KeyingMode::Ike,
                    format!(
                        "static keying installs fixed keys from key_out_file and key_in_file \
                         and negotiates nothing: remove {field}, or set keying = \"ike\""
                    ),
                ),
                KeyingMode::Ike if field == "esp" => (
                    KeyingMode::Static,
                    "with IKE, ESP's algorithms are negotiated: write them as proposals, e.g. \
                     esp_proposals = [\"aes256gcm16-ecp256\"], or set keying = \"static\""
                        .to_string(),
                ),
                KeyingMode::Ike => (
                    KeyingMode::Static,
                    format!(
                        "with IKE, keys and SPIs are negotiated: remove {field}, or set keying \
                         = \"static\""
                    ),
                ),
            };
            self.error(
                span,
                format!(
                    "`{field}` is for keying = \"{}\", but site {name} has keying = \"{}\"",
                    other.name(),
                    mode.name()
                ),
                help,
            );
        }
    }

    /// A gateway: an address, or a DNS name (resolved when applied, never here).
    pub(super) fn gateway(&mut self, value: &Spanned<String>, field: &str) -> Option<Gateway> {
        let text = value.get_ref().trim();
        if let Ok(addr) = text.parse::<IpAddr>() {
            return Some(Gateway::Address(addr));
        }
        let Some(problem) = hostname_problem(text) else {
            return Some(Gateway::Name(text.to_string()));
        };
        let example = match field {
            "local_gateway" => "local_gateway = \"left.domain.com\"",
            _ => "remote_gateway = \"right.domain.com\"",
        };
        let unbracketed = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
        let help = if let Some(v6) = unbracketed.filter(|t| t.parse::<IpAddr>().is_ok()) {
            format!("write IPv6 addresses without brackets: {field} = \"{v6}\"")
        } else if let Some((host, port)) = text.rsplit_once(':')
            && port.parse::<u16>().is_ok()
            && (host.parse::<IpAddr>().is_ok() || hostname_problem(host).is_none())
        {
            format!("leave the port out (IKE uses UDP ports 500 and 4500): {field} = \"{host}\"")
        } else {
            let whose = match field {
                "local_gateway" => "this router's",
                _ => "the other router's",
            };
            format!("write {whose} public IP address or DNS name, e.g. {example}")
        };
        self.error(
            value.span(),
            format!("{field} {text:?} is not an IP address or a DNS name: {problem}"),
            help,
        );
        None
    }

    /// An IKE identity: a DNS name (FQDN) or an address.
    pub(super) fn identity(&mut self, value: &Spanned<String>, field: &str) -> Option<Identity> {
        let text = value.get_ref().trim();
        if let Ok(addr) = text.parse::<IpAddr>() {
            return Some(Identity::Address(addr));
        }
        if let Some(name) = text.strip_prefix('@') {
            self.error(
                value.span(),
                format!("{field} {text:?} starts with '@'"),
                format!(
                    "write the name without it: {field} = \"{name}\" (in strongSwan's files '@' \
                     means \"a name, not to be resolved\"; vpn-ctl always sends a name as an \
                     FQDN identity)"
                ),
            );
            return None;
        }
        match hostname_problem(text) {
            None => Some(Identity::Fqdn(text.to_string())),
            Some(problem) => {
                self.error(
                    value.span(),
                    format!("{field} {text:?} is not a DNS name or an IP address: {problem}"),
                    "an identity is a DNS name (FQDN) such as \"left.domain.com\", or an IP \
                     address, and must match what the other side has configured",
                );
                None
            }
        }
    }

    /// `local_subnets` or `remote_subnets`: one prefix or more, each with its span.
    pub(super) fn subnets(
        &mut self,
        name: &str,
        header: &Range<usize>,
        value: Option<&Spanned<Vec<Spanned<String>>>>,
        side: Side,
    ) -> Vec<(IpNet, Range<usize>)> {
        let field = side.field();
        let help = match side {
            Side::Local => {
                "list the networks behind this router that the tunnel joins, e.g. \
                 local_subnets = [\"192.168.2.0/24\"]"
            }
            Side::Remote => {
                "list the networks behind the other router, e.g. remote_subnets = \
                 [\"192.168.1.0/24\"]"
            }
        };
        match value {
            None => {
                self.error(header.clone(), format!("site {name} has no {field}"), help);
                Vec::new()
            }
            Some(list) if list.get_ref().is_empty() => {
                self.error(list.span(), format!("{field} is empty"), help);
                Vec::new()
            }
            Some(list) => list
                .get_ref()
                .iter()
                .filter_map(|v| Some((self.network(v)?, v.span())))
                .collect(),
        }
    }

    /// A remote subnet must not overlap the site's local ones, this router's LAN, a
    /// WireGuard subnet, or another remote subnet: the router could not tell where an
    /// address in both belongs.
    pub(super) fn remote_subnet_overlaps(
        &mut self,
        name: &str,
        local: &[(IpNet, Range<usize>)],
        remote: &[(IpNet, Range<usize>)],
        lan: &[IpNet],
    ) {
        let overlaps = |a: &IpNet, b: &IpNet| a.contains(b) || b.contains(a);
        for (net, span) in remote {
            let line = self.line(span);
            let wg = self
                .wg_subnets
                .iter()
                .find(|(s, ..)| overlaps(s, net))
                .cloned();
            let claim = self
                .remote_subnets
                .iter()
                .find(|c| overlaps(&c.net, net))
                .map(|c| (c.net, c.site.clone(), c.line));
            let problem = if let Some((l, _)) = local.iter().find(|(l, _)| overlaps(l, net)) {
                Some((
                    format!("remote subnet {net} overlaps the local subnet {l}"),
                    "local_subnets are the networks behind this router, remote_subnets those \
                     behind the other one; a network cannot be on both sides (are the two \
                     swapped?)"
                        .to_string(),
                ))
            } else if let Some(l) = lan.iter().find(|l| overlaps(l, net)) {
                Some((
                    format!("remote subnet {net} overlaps this router's LAN {l} ([router] lan)"),
                    "both sides would use the same addresses, and the router could not tell \
                     which side an address is on: renumber one of the two LANs"
                        .to_string(),
                ))
            } else if let Some((w, iface, _)) = wg {
                Some((
                    format!("remote subnet {net} overlaps {iface}'s subnet {w}"),
                    format!(
                        "addresses there would belong both to the tunnel and to {iface}: give \
                         the other site's network and {iface} separate ranges"
                    ),
                ))
            } else if let Some((other, site, other_line)) = claim {
                if site == name {
                    Some((
                        format!(
                            "remote subnet {net} overlaps {other}, listed before (line \
                             {other_line})"
                        ),
                        "list each network once".to_string(),
                    ))
                } else {
                    Some((
                        format!(
                            "remote subnet {net} overlaps {other} of site {site} (line \
                             {other_line})"
                        ),
                        "a network is reachable through one tunnel only: give each site's \
                         remote_subnets their own ranges"
                            .to_string(),
                    ))
                }
            } else {
                None
            };
            if let Some((message, help)) = problem {
                self.error(span.clone(), message, help);
            }
            self.remote_subnets.push(SubnetClaim {
                net: *net,
                site: name.to_string(),
                line,
            });
        }
    }

    /// Traffic flows between a local and a remote subnet of the same IP version: a subnet
    /// with no partner on the other side would carry nothing.
    pub(super) fn subnet_families(
        &mut self,
        name: &str,
        local: &[(IpNet, Range<usize>)],
        remote: &[(IpNet, Range<usize>)],
    ) {
        if local.is_empty() || remote.is_empty() {
            return;
        }
        for (side, own, other) in [(Side::Local, local, remote), (Side::Remote, remote, local)] {
            for (net, span) in own {
                let v4 = net.addr().is_ipv4();
                if other.iter().all(|(o, _)| o.addr().is_ipv4() != v4) {
                    let version = if v4 { "IPv4" } else { "IPv6" };
                    let other_field = side.other().field();
                    self.error(
                        span.clone(),
                        format!(
                            "{} subnet {net} is {version}, but site {name} has no {version} \
                             {other_field}",
                            side.word()
                        ),
                        format!(
                            "traffic flows between a local and a remote subnet of the same IP \
                             version: add an {version} network to {other_field}, or remove \
                             this one"
                        ),
                    );
                }
            }
        }
    }

    pub(super) fn watchdog_probe(
        &mut self,
        name: &str,
        value: &Spanned<String>,
        remote: &[IpNet],
    ) -> Option<IpAddr> {
        let example = remote
            .first()
            .map_or("192.168.1.1".parse().expect("an address"), first_host);
        let Ok(addr) = value.get_ref().trim().parse::<IpAddr>() else {
            self.error(
                value.span(),
                format!("watchdog_probe {:?} is not an IP address", value.get_ref()),
                format!(
                    "name an address behind the other router that answers ping, e.g. its LAN \
                     address: watchdog_probe = \"{example}\""
                ),
            );
            return None;
        };
        if !remote.is_empty() && !remote.iter().any(|net| net.contains(&addr)) {
            let listed: Vec<String> = remote.iter().map(IpNet::to_string).collect();
            self.error(
                value.span(),
                format!(
                    "watchdog_probe {addr} is outside the remote subnets of site {name} ({})",
                    listed.join(", ")
                ),
                format!(
                    "the watchdog pings through the tunnel, so the address must be behind the \
                     other router, e.g. watchdog_probe = \"{example}\""
                ),
            );
        }
        Some(addr)
    }
}

/// Which end of the tunnel a subnet is on.
#[derive(Clone, Copy)]
pub(super) enum Side {
    Local,
    Remote,
}

impl Side {
    pub(super) fn field(self) -> &'static str {
        match self {
            Side::Local => "local_subnets",
            Side::Remote => "remote_subnets",
        }
    }

    pub(super) fn word(self) -> &'static str {
        match self {
            Side::Local => "local",
            Side::Remote => "remote",
        }
    }

    pub(super) fn other(self) -> Side {
        match self {
            Side::Local => Side::Remote,
            Side::Remote => Side::Local,
        }
    }
}
