//! What the tunnels need from the firewall, derived from the configuration.
//!
//! Each [`Need`] is one rule vpn-ctl would install (`firewall = "manage"`) and the packet the
//! check sends through the other tables' chains (`firewall = "check"`, and after installing).
//! The same list renders as nft text (fw4 includes, messages and fixes) and as netlink
//! expressions ([`super::table`]).

use std::{fmt, net::IpAddr};

use ipnet::IpNet;

use crate::config::{Config, ipsec::Keying};

/// The hook a need concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    /// Packets to the router itself (the VPN services).
    Input,
    /// Packets the router forwards (between a tunnel and the LAN or the WAN).
    Forward,
    /// Source NAT on the way out.
    Postrouting,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Postrouting => "postrouting",
        }
    }

    /// fw4's chain for the hook, where its `chain-pre` includes go.
    pub fn fw4_chain(self) -> &'static str {
        match self {
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Postrouting => "srcnat",
        }
    }
}

/// One condition of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Match {
    /// `iifname "eth0"`
    Iif(String),
    /// `oifname "eth0"`
    Oif(String),
    /// `udp dport 51820`
    Udp(u16),
    /// `meta l4proto esp`
    Esp,
    /// `ip saddr 10.8.0.0/24` / `ip6 saddr fd08::/64`
    Saddr(IpNet),
    /// `ip daddr 192.168.1.0/24`
    Daddr(IpNet),
}

/// What a rule does with a matching packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Accept,
    Masquerade,
}

/// One opening a tunnel needs: a rule in vpn-ctl's table, and a probe for the check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Need {
    pub hook: Hook,
    pub matches: Vec<Match>,
    pub action: Action,
    /// What it is for, in plain words: "WireGuard wg0", "wg0 clients to the internet".
    pub purpose: String,
    /// What the check looks for: a packet that must pass (accept needs), must be
    /// masqueraded, or must leave without NAT.
    pub expect: Expect,
}

/// What the check expects of the probe packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expect {
    /// Not dropped or rejected by any table.
    Passes,
    /// Source-NATed on the way out (clients using the router for internet access).
    Masqueraded,
    /// Leaves without source NAT (traffic to an IPsec remote subnet; NAT would take it out
    /// of the policy's selector and send it unencrypted).
    NotNatted,
}

impl Need {
    /// The rule as nft(8) writes it, without a comment.
    pub fn nft_text(&self) -> String {
        let mut words: Vec<String> = self.matches.iter().map(Match::to_string).collect();
        words.push("counter".into());
        words.push(
            match self.action {
                Action::Accept => "accept",
                Action::Masquerade => "masquerade",
            }
            .into(),
        );
        words.join(" ")
    }

    /// The rule with its comment, as it goes into vpn-ctl's table or an fw4 include.
    pub fn nft_rule(&self) -> String {
        format!("{} comment \"{}\"", self.nft_text(), self.comment())
    }

    /// The rule's comment: its purpose and a short fingerprint of the rule, so that `up`
    /// can tell an unchanged table from the listing alone.
    pub fn comment(&self) -> String {
        use blake2::{Blake2s256, Digest as _};
        let digest = Blake2s256::digest(format!("{:?} {}", self.hook, self.nft_text()));
        let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        format!("vpn-ctl: {} [{tag}]", self.purpose)
    }

    /// The IP family the rule is limited to, if any.
    pub fn family(&self) -> Option<Family> {
        self.matches.iter().find_map(|m| match m {
            Match::Saddr(net) | Match::Daddr(net) => Some(Family::of(&net.addr())),
            _ => None,
        })
    }

    /// What an inbound need lets in: "udp/51820", "ESP".
    pub fn inbound(&self) -> Option<String> {
        self.matches.iter().find_map(|m| match m {
            Match::Udp(port) => Some(format!("udp/{port}")),
            Match::Esp => Some("ESP".into()),
            _ => None,
        })
    }

    pub fn iif(&self) -> Option<&str> {
        self.matches.iter().find_map(|m| match m {
            Match::Iif(name) => Some(name.as_str()),
            _ => None,
        })
    }

    pub fn oif(&self) -> Option<&str> {
        self.matches.iter().find_map(|m| match m {
            Match::Oif(name) => Some(name.as_str()),
            _ => None,
        })
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::Iif(name) => write!(f, "iifname \"{name}\""),
            Match::Oif(name) => write!(f, "oifname \"{name}\""),
            Match::Udp(port) => write!(f, "udp dport {port}"),
            Match::Esp => write!(f, "meta l4proto esp"),
            Match::Saddr(net) => write!(f, "{} saddr {net}", Family::of(&net.addr()).nft()),
            Match::Daddr(net) => write!(f, "{} daddr {net}", Family::of(&net.addr()).nft()),
        }
    }
}

/// IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    /// The payload protocol name in nft: `ip` / `ip6`.
    pub fn nft(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    /// `nfproto` as nft writes it.
    pub fn nfproto(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// Every opening the configuration's tunnels need, in the order the rules go into the table
/// (NAT exemptions before masquerading).
pub fn needs(config: &Config) -> Vec<Need> {
    let wan = config.router.wan.clone();
    let lan = &config.router.lan;
    let mut out = Vec::new();
    let from_wan = |mut matches: Vec<Match>| {
        if let Some(wan) = &wan {
            matches.insert(0, Match::Iif(wan.clone()));
        }
        matches
    };
    let accept = |hook, matches, purpose: String| Need {
        hook,
        matches,
        action: Action::Accept,
        purpose,
        expect: Expect::Passes,
    };

    for iface in &config.wireguard {
        let name = &iface.name;
        if let Some(port) = iface.listen_port {
            out.push(accept(
                Hook::Input,
                from_wan(vec![Match::Udp(port)]),
                format!("WireGuard {name}"),
            ));
        }
        for net in lan {
            out.push(accept(
                Hook::Forward,
                vec![Match::Iif(name.clone()), Match::Daddr(*net)],
                format!("{name} clients to the LAN {net}"),
            ));
            out.push(accept(
                Hook::Forward,
                vec![Match::Oif(name.clone()), Match::Saddr(*net)],
                format!("the LAN {net} to {name} clients"),
            ));
        }
        if iface.internet
            && let Some(wan) = &wan
        {
            out.push(accept(
                Hook::Forward,
                vec![Match::Iif(name.clone()), Match::Oif(wan.clone())],
                format!("{name} clients to the internet"),
            ));
        }
    }

    for site in &config.ipsec {
        let name = &site.name;
        out.push(accept(
            Hook::Input,
            from_wan(vec![Match::Esp]),
            format!("IPsec {name}"),
        ));
        if matches!(site.keying, Keying::Ike(_)) {
            out.push(accept(
                Hook::Input,
                from_wan(vec![Match::Udp(500)]),
                format!("IPsec {name} (IKE)"),
            ));
            out.push(accept(
                Hook::Input,
                from_wan(vec![Match::Udp(4500)]),
                format!("IPsec {name} (NAT-T)"),
            ));
        }
        for local in &site.local_subnets {
            for remote in site.remote_subnets.iter().filter(|r| same_family(local, r)) {
                out.push(accept(
                    Hook::Forward,
                    vec![Match::Saddr(*local), Match::Daddr(*remote)],
                    format!("IPsec {name}: {local} to {remote}"),
                ));
                out.push(accept(
                    Hook::Forward,
                    vec![Match::Saddr(*remote), Match::Daddr(*local)],
                    format!("IPsec {name}: {remote} to {local}"),
                ));
            }
        }
    }

    // Source NAT: exemptions first, so vpn-ctl's own masquerading never takes traffic to a
    // remote subnet out of its IPsec policy.
    let Some(wan) = &wan else { return out };
    for site in &config.ipsec {
        for local in &site.local_subnets {
            for remote in site.remote_subnets.iter().filter(|r| same_family(local, r)) {
                out.push(Need {
                    hook: Hook::Postrouting,
                    matches: vec![
                        Match::Oif(wan.clone()),
                        Match::Saddr(*local),
                        Match::Daddr(*remote),
                    ],
                    action: Action::Accept,
                    purpose: format!("IPsec {}: no NAT from {local} to {remote}", site.name),
                    expect: Expect::NotNatted,
                });
            }
        }
    }
    for iface in config.wireguard.iter().filter(|i| i.internet) {
        for addr in &iface.addresses {
            let net = addr.trunc();
            out.push(Need {
                hook: Hook::Postrouting,
                matches: vec![Match::Oif(wan.clone()), Match::Saddr(net)],
                action: Action::Masquerade,
                purpose: format!("{} clients to the internet ({net})", iface.name),
                expect: Expect::Masqueraded,
            });
        }
    }
    out
}

fn same_family(a: &IpNet, b: &IpNet) -> bool {
    a.addr().is_ipv4() == b.addr().is_ipv4()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("wg0.key");
        std::fs::write(&key, "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n").unwrap();
        std::fs::write(
            dir.path().join("fritz.psk"),
            "a-long-pre-shared-secret-of-32-bytes!!\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        for f in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::set_permissions(f.unwrap().path(), std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
        let path = dir.path().join("vpn.toml");
        crate::config::parse(&path, text).unwrap_or_else(|e| panic!("{e}"))
    }

    const BASE: &str = r#"
[router]
wan = "eth0"
lan = ["192.168.1.0/24"]

[wireguard.wg0]
private_key_file = "wg0.key"
listen_port = 51820
addresses = ["10.8.0.1/24", "fd08::1/64"]
"#;

    const SITE: &str = r#"
[ipsec.fritz]
keying = "ike"
remote_gateway = "203.0.113.7"
local_subnets = ["192.168.1.0/24"]
remote_subnets = ["192.168.178.0/24"]
local_id = "openwrt.example.org"
remote_id = "fritz.example.org"
psk_file = "fritz.psk"
ike_version = "ikev1-aggressive"
ike_proposals = ["aes256-sha1-modp1024"]
esp_proposals = ["aes256-sha1-modp1024"]
allow_weak = ["modp1024", "sha1"]
"#;

    fn rules(config: &Config) -> Vec<String> {
        needs(config)
            .iter()
            .map(|n| format!("{} {}", n.hook.name(), n.nft_text()))
            .collect()
    }

    #[test]
    fn road_warrior_needs_its_port_the_lan_the_internet_and_masquerading() {
        assert_eq!(
            rules(&config(BASE)),
            [
                "input iifname \"eth0\" udp dport 51820 counter accept",
                "forward iifname \"wg0\" ip daddr 192.168.1.0/24 counter accept",
                "forward oifname \"wg0\" ip saddr 192.168.1.0/24 counter accept",
                "forward iifname \"wg0\" oifname \"eth0\" counter accept",
                "postrouting oifname \"eth0\" ip saddr 10.8.0.0/24 counter masquerade",
                "postrouting oifname \"eth0\" ip6 saddr fd08::/64 counter masquerade",
            ]
        );
    }

    #[test]
    fn split_tunnel_only_interface_is_not_forwarded_to_the_wan_or_masqueraded() {
        let text = BASE.replace(
            "listen_port = 51820",
            "listen_port = 51820\ninternet = false",
        );
        let rules = rules(&config(&text));
        assert!(
            rules.iter().all(|r| !r.contains("masquerade")),
            "{rules:#?}"
        );
        assert!(
            rules.iter().all(|r| !r.contains("oifname \"eth0\"")),
            "{rules:#?}"
        );
        assert_eq!(rules.len(), 3, "{rules:#?}");
    }

    #[test]
    fn ike_site_needs_esp_ike_nat_t_forwarding_and_a_nat_exemption_before_masquerading() {
        let rules = rules(&config(&format!("{BASE}{SITE}")));
        let expected = [
            "input iifname \"eth0\" meta l4proto esp counter accept",
            "input iifname \"eth0\" udp dport 500 counter accept",
            "input iifname \"eth0\" udp dport 4500 counter accept",
            "forward ip saddr 192.168.1.0/24 ip daddr 192.168.178.0/24 counter accept",
            "forward ip saddr 192.168.178.0/24 ip daddr 192.168.1.0/24 counter accept",
            "postrouting oifname \"eth0\" ip saddr 192.168.1.0/24 ip daddr 192.168.178.0/24 \
             counter accept",
        ];
        for e in expected {
            assert!(rules.iter().any(|r| r == e), "missing {e:?} in {rules:#?}");
        }
        let exempt = rules
            .iter()
            .position(|r| r.starts_with("postrouting") && r.ends_with("accept"));
        let masq = rules.iter().position(|r| r.ends_with("masquerade"));
        assert!(exempt < masq, "{rules:#?}");
    }

    #[test]
    fn family_of_a_rule_is_its_prefixes_family() {
        let masq = needs(&config(BASE)).pop().unwrap();
        assert_eq!(
            masq.nft_text(),
            "oifname \"eth0\" ip6 saddr fd08::/64 counter masquerade"
        );
        assert_eq!(masq.family(), Some(Family::V6));
        assert_eq!(needs(&config(BASE))[0].family(), None);
    }

    #[test]
    fn comments_change_when_the_rule_does() {
        let a = needs(&config(BASE));
        let b = needs(&config(&BASE.replace("51820", "51821")));
        assert_ne!(a[0].comment(), b[0].comment());
        assert_eq!(a[1].comment(), b[1].comment());
        assert!(
            a[0].comment().starts_with("vpn-ctl: WireGuard wg0 ["),
            "{}",
            a[0].comment()
        );
    }
}
