//! The FRITZ!Box's side of an `[ipsec.NAME]` site: its `vpncfg` import file
//! (`vpn-ctl export fritzbox NAME`), uploaded under "VPN > Add VPN connection > import a VPN
//! configuration from an existing VPN settings file".
//!
//! The file describes the connection from the FRITZ!Box's point of view, so our local side
//! is its remote one and the other way round. Its layout is AVM's, as in the second seed
//! (an OpenWrt router and a FRITZ!Box joined by IKEv1 with a pre-shared key):
//!
//! ```text
//! vpncfg {
//!         connections {
//!                 enabled = yes;
//!                 conn_type = conntype_lan;
//!                 name = "SiteToSite";
//!                 ...
//!                 remotehostname = "left.domain.com";     # our local_gateway
//!                 localid { fqdn = "right.domain.com"; }  # our remote_id
//!                 remoteid { fqdn = "left.domain.com"; }  # our local_id
//!                 mode = phase1_mode_aggressive;          # or phase1_mode_idp (main mode)
//!                 phase1ss = "all/all/all";               # from ike_proposals
//!                 key = "...";                            # the pre-shared key
//!                 use_nat_t = yes;                        # nat_traversal
//!                 phase2localid { ipnet { ... } }         # our remote subnet
//!                 phase2remoteid { ipnet { ... } }        # our local subnet
//!                 phase2ss = "esp-all-all/ah-none/comp-all/pfs";  # from esp_proposals
//!                 accesslist = "permit ip any 192.168.2.0 255.255.255.0";
//!         }
//!         ike_forward_rules = "udp 0.0.0.0:500 0.0.0.0:500",
//!                             "udp 0.0.0.0:4500 0.0.0.0:4500";
//! }
//! ```
//!
//! What the file cannot say is refused with what to change: static keying, IKEv2, more than
//! one subnet per side, IPv6, proposals outside the FRITZ!Box's suites, and strings with
//! characters the format has no escape for. The FRITZ!Box keeps its own lifetimes and DPD.

use std::net::IpAddr;

use anyhow::{Context as _, bail};
use ipnet::IpNet;

use crate::config::ipsec::{
    Gateway, Identity, IkeKeying, IkeVersion, IpsecSite, Keying, Proposal, ProposalFor, SecretBytes,
};

/// One indentation step of AVM's files.
const INDENT: &str = "        ";

/// The FRITZ!Box's phase 1 suites (Diffie-Hellman group / cipher / hash) vpn-ctl can name:
/// "all/all/all" offers DH group 2 (modp1024) with AES, 3DES or DES and SHA-1 or MD5, what
/// the seed's FRITZ!Box accepts for aes256-sha1-modp1024; "dh14/aes/sha" is DH group 14
/// (modp2048) with AES and SHA-1.
const PHASE1_ALL: &str = "all/all/all";
const PHASE1_DH14: &str = "dh14/aes/sha";

/// The `vpncfg` file for `site`, whose pre-shared key is `psk` (the site's own, normally:
/// `vpncfg(site, &ike.psk)`).
pub fn vpncfg(site: &IpsecSite, psk: &SecretBytes) -> anyhow::Result<String> {
    let name = &site.name;
    let ike = match &site.keying {
        Keying::Ike(ike) => ike,
        Keying::Static(_) => bail!(
            "site {name} uses static keying, but a FRITZ!Box negotiates its keys with IKE: \
             set keying = \"ike\" with ike_version = \"ikev1-aggressive\" and a psk_file"
        ),
    };
    let mode = match ike.version {
        IkeVersion::V1Aggressive => "phase1_mode_aggressive",
        IkeVersion::V1Main => "phase1_mode_idp",
        IkeVersion::V2 => bail!(
            "site {name} uses IKEv2, but the FRITZ!Box's import file describes IKEv1 \
             connections: set ike_version = \"ikev1-aggressive\" (the FRITZ!Box's LAN-to-LAN \
             mode) or \"ikev1-main\""
        ),
    };
    let ours = one_ipv4_subnet(name, "local_subnets", &site.local_subnets)?;
    let theirs = one_ipv4_subnet(name, "remote_subnets", &site.remote_subnets)?;

    // Where the FRITZ!Box finds us, and who we are.
    let Some(local_gateway) = &site.local_gateway else {
        bail!(
            "site {name} has no local_gateway, but the FRITZ!Box needs to know where to find \
             this router: set local_gateway to its DNS name (e.g. its dynamic DNS name) or \
             public IPv4 address"
        );
    };
    let (remoteip, remotehostname) = match local_gateway {
        Gateway::Address(IpAddr::V4(addr)) => (addr.to_string(), String::new()),
        Gateway::Name(host) => ("0.0.0.0".to_string(), host.clone()),
        Gateway::Address(IpAddr::V6(addr)) => bail!(
            "site {name}'s local_gateway {addr} is IPv6, but the FRITZ!Box's LAN-to-LAN \
             connections use IPv4: give this router's IPv4 address or DNS name"
        ),
    };
    // Identities default to the gateways, as strongSwan's do.
    let our_id = ike
        .local_id
        .clone()
        .unwrap_or_else(|| gateway_identity(local_gateway));
    let their_id = ike
        .remote_id
        .clone()
        .unwrap_or_else(|| gateway_identity(&site.remote_gateway));
    let (phase1, group) = phase1(name, ike)?;
    let phase2 = phase2(name, ike, &group)?;

    let key = std::str::from_utf8(psk.expose())
        .ok()
        .filter(|key| key.chars().all(|c| c.is_ascii_graphic() || c == ' '))
        .filter(|key| !key.contains(['"', '\\']))
        .with_context(|| {
            format!(
                "site {name}'s pre-shared key has characters the FRITZ!Box's file cannot hold \
                 (quotes, backslashes, control characters or non-ASCII): write a key of \
                 letters, digits and punctuation into its psk_file, e.g. with `vpn-ctl genpsk`, \
                 and use it on both sides"
            )
        })?;

    let mut out = String::new();
    let mut line = |depth: usize, text: &str| {
        out.push_str(&INDENT.repeat(depth));
        out.push_str(text);
        out.push('\n');
    };
    line(0, "vpncfg {");
    line(1, "connections {");
    for setting in [
        "enabled = yes;",
        "conn_type = conntype_lan;",
        &format!("name = \"{name}\";"),
        "always_renew = no;",
        "reject_not_encrypted = no;",
        "dont_filter_netbios = yes;",
        "localip = 0.0.0.0;",
        "local_virtualip = 0.0.0.0;",
        &format!("remoteip = {remoteip};"),
        "remote_virtualip = 0.0.0.0;",
        &format!("remotehostname = \"{remotehostname}\";"),
    ] {
        line(2, setting);
    }
    for (block, id) in [("localid", &their_id), ("remoteid", &our_id)] {
        line(2, &format!("{block} {{"));
        line(3, &identity(name, id)?);
        line(2, "}");
    }
    for setting in [
        &format!("mode = {mode};"),
        &format!("phase1ss = \"{phase1}\";"),
        "keytype = connkeytype_pre_shared;",
        &format!("key = \"{key}\";"),
        "cert_do_server_auth = no;",
        &format!(
            "use_nat_t = {};",
            if ike.nat_traversal { "yes" } else { "no" }
        ),
        "use_xauth = no;",
        "use_cfgmode = no;",
    ] {
        line(2, setting);
    }
    for (block, net) in [("phase2localid", theirs), ("phase2remoteid", ours)] {
        line(2, &format!("{block} {{"));
        line(3, "ipnet {");
        line(4, &format!("ipaddr = {};", net.network()));
        line(4, &format!("mask = {};", net.netmask()));
        line(3, "}");
        line(2, "}");
    }
    line(2, &format!("phase2ss = \"{phase2}\";"));
    line(
        2,
        &format!(
            "accesslist = \"permit ip any {} {}\";",
            ours.network(),
            ours.netmask()
        ),
    );
    line(1, "}");
    // IKE and NAT-T reach the FRITZ!Box's own IKE daemon.
    line(1, "ike_forward_rules = \"udp 0.0.0.0:500 0.0.0.0:500\",");
    let continuation = " ".repeat("ike_forward_rules = ".len());
    line(
        1,
        &format!("{continuation}\"udp 0.0.0.0:4500 0.0.0.0:4500\";"),
    );
    line(0, "}");
    Ok(out)
}

/// The one IPv4 subnet of a side: a FRITZ!Box LAN-to-LAN connection joins two networks.
fn one_ipv4_subnet(name: &str, field: &str, subnets: &[IpNet]) -> anyhow::Result<IpNet> {
    match subnets {
        [net @ IpNet::V4(_)] => Ok(*net),
        [IpNet::V6(net)] => bail!(
            "site {name}'s {field} {net} is IPv6, but the FRITZ!Box's LAN-to-LAN connections \
             carry IPv4 only"
        ),
        _ => bail!(
            "site {name} has {} {field}, but a FRITZ!Box connection joins one network on \
             each side: list one in {field}",
            subnets.len()
        ),
    }
}

/// The identity a gateway stands for when none is configured.
fn gateway_identity(gateway: &Gateway) -> Identity {
    match gateway {
        Gateway::Name(host) => Identity::Fqdn(host.clone()),
        Gateway::Address(addr) => Identity::Address(*addr),
    }
}

/// `fqdn = "...";` or `ipaddr = ...;`.
fn identity(name: &str, id: &Identity) -> anyhow::Result<String> {
    match id {
        // Validated as DNS names: letters, digits, '-' and '.'.
        Identity::Fqdn(fqdn) => Ok(format!("fqdn = \"{fqdn}\";")),
        Identity::Address(IpAddr::V4(addr)) => Ok(format!("ipaddr = {addr};")),
        Identity::Address(IpAddr::V6(addr)) => bail!(
            "site {name} has the IPv6 identity {addr}, but the FRITZ!Box's file takes IPv4 \
             addresses or DNS names as identities: set local_id and remote_id to DNS names"
        ),
    }
}

/// The FRITZ!Box's phase 1 suite for the first IKE proposal it accepts, and that
/// proposal's Diffie-Hellman group (phase 2's PFS uses the same).
fn phase1(name: &str, ike: &IkeKeying) -> anyhow::Result<(&'static str, String)> {
    for text in &ike.ike_proposals {
        let Ok(p) = Proposal::parse(text, ProposalFor::Ike) else {
            continue;
        };
        let [group] = &p.key_exchange[..] else {
            continue;
        };
        let all =
            |keywords: &[String], accepted: fn(&str) -> bool| keywords.iter().all(|k| accepted(k));
        let prf = p.prf.iter().all(|k| {
            k.strip_prefix("prf")
                .is_some_and(|h| is_sha1(h) || is_md5(h))
        });
        let suite = match group.as_str() {
            "modp1024"
                if all(&p.encryption, is_fritzbox_cipher)
                    && all(&p.integrity, |k| is_sha1(k) || is_md5(k))
                    && prf =>
            {
                PHASE1_ALL
            }
            "modp2048" if all(&p.encryption, is_aes_cbc) && all(&p.integrity, is_sha1) && prf => {
                PHASE1_DH14
            }
            _ => continue,
        };
        return Ok((suite, group.clone()));
    }
    bail!(
        "none of site {name}'s ike_proposals ({}) is one the FRITZ!Box offers: it takes AES, \
         3DES or DES with SHA-1 or MD5 and DH group 2 (e.g. \"aes256-sha1-modp1024\", with \
         allow_weak = [\"sha1\", \"modp1024\"]), or AES with SHA-1 and DH group 14 \
         (\"aes256-sha1-modp2048\")",
        ike.ike_proposals.join(", ")
    )
}

/// The FRITZ!Box's phase 2 suite for the ESP proposals: ESP with any of its ciphers and
/// hashes, no AH, compression allowed; PFS when the first proposal it accepts has a group,
/// which must be phase 1's.
fn phase2(name: &str, ike: &IkeKeying, group: &str) -> anyhow::Result<&'static str> {
    for text in &ike.esp_proposals {
        let Ok(p) = Proposal::parse(text, ProposalFor::Esp) else {
            continue;
        };
        let accepted = p.encryption.iter().all(|k| is_fritzbox_cipher(k))
            && p.integrity.iter().all(|k| is_sha1(k) || is_md5(k))
            && p.esn.iter().all(|k| k == "noesn");
        match &p.key_exchange[..] {
            [] if accepted => return Ok("esp-all-all/ah-none/comp-all/no-pfs"),
            [pfs] if accepted && pfs == group => return Ok("esp-all-all/ah-none/comp-all/pfs"),
            _ => {}
        }
    }
    bail!(
        "none of site {name}'s esp_proposals ({}) is one the FRITZ!Box offers: it takes AES, \
         3DES or DES with SHA-1 or MD5, and for PFS the group of phase 1 ({group}), e.g. \
         \"aes256-sha1-{group}\"",
        ike.esp_proposals.join(", ")
    )
}

/// AES in CBC mode: strongSwan's `aes`, `aes128`, `aes192`, `aes256`.
fn is_aes_cbc(keyword: &str) -> bool {
    matches!(keyword, "aes" | "aes128" | "aes192" | "aes256")
}

/// The ciphers the FRITZ!Box's "all" offers.
fn is_fritzbox_cipher(keyword: &str) -> bool {
    is_aes_cbc(keyword) || matches!(keyword, "3des" | "des")
}

fn is_sha1(keyword: &str) -> bool {
    matches!(keyword, "sha" | "sha1" | "sha1_160")
}

fn is_md5(keyword: &str) -> bool {
    matches!(keyword, "md5" | "md5_128")
}

#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::PermissionsExt as _};

    use super::*;
    use crate::config;

    /// The seed's FRITZ!Box file, verbatim: name "SiteToSite", key "VPNPassword", FQDN
    /// identities, main mode (`phase1_mode_idp`).
    const SEED_VPNCFG: &str = r#"vpncfg {
        connections {
                enabled = yes;
                conn_type = conntype_lan;
                name = "SiteToSite";
                always_renew = no;
                reject_not_encrypted = no;
                dont_filter_netbios = yes;
                localip = 0.0.0.0;
                local_virtualip = 0.0.0.0;
                remoteip = 0.0.0.0;
                remote_virtualip = 0.0.0.0;
                remotehostname = "left.domain.com";
                localid {
                        fqdn = "right.domain.com";
                }
                remoteid {
                        fqdn = "left.domain.com";
                }
                mode = phase1_mode_idp;
                phase1ss = "all/all/all";
                keytype = connkeytype_pre_shared;
                key = "VPNPassword";
                cert_do_server_auth = no;
                use_nat_t = yes;
                use_xauth = no;
                use_cfgmode = no;
                phase2localid {
                        ipnet {
                                ipaddr = 192.168.1.0;
                                mask = 255.255.255.0;
                        }
                }
                phase2remoteid {
                        ipnet {
                                ipaddr = 192.168.2.0;
                                mask = 255.255.255.0;
                        }
                }
                phase2ss = "esp-all-all/ah-none/comp-all/pfs";
                accesslist = "permit ip any 192.168.2.0 255.255.255.0";
        }
        ike_forward_rules = "udp 0.0.0.0:500 0.0.0.0:500", 
                            "udp 0.0.0.0:4500 0.0.0.0:4500";
}
"#;

    /// The seed's OpenWrt side as a site named like the seed's FRITZ!Box connection.
    const SEED_SITE: &str = r#"[ipsec.SiteToSite]
keying = "ike"
local_gateway = "left.domain.com"
remote_gateway = "right.domain.com"
local_subnets = ["192.168.2.0/24"]
remote_subnets = ["192.168.1.0/24"]
local_id = "left.domain.com"
remote_id = "right.domain.com"
psk_file = "site.psk"
ike_version = "ikev1-aggressive"
ike_proposals = ["aes256-sha1-modp1024"]
esp_proposals = ["aes256-sha1-modp1024"]
allow_weak = ["modp1024", "sha1"]
ike_lifetime = 3600
esp_lifetime = 28800
dpd = 30
watchdog_probe = "192.168.1.1"
"#;

    /// The site `text` describes, with `psk` in its key file.
    fn site(text: &str, psk: &str) -> IpsecSite {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("site.psk");
        fs::write(&file, psk).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let config = config::parse(&dir.path().join("vpn.toml"), text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        config.ipsec.into_iter().next().unwrap()
    }

    /// `text` with `from` replaced by `to`, which must be there.
    fn with(text: &str, from: &str, to: &str) -> String {
        assert!(text.contains(from), "{from}");
        text.replace(from, to)
    }

    fn render(text: &str) -> anyhow::Result<String> {
        let site = site(text, "VPNPassword\n");
        let Keying::Ike(ike) = &site.keying else {
            return vpncfg(&site, &SecretBytes::new(Vec::new()));
        };
        vpncfg(&site, &ike.psk)
    }

    /// The seed's file with its one trailing space (after the first forwarding rule's
    /// comma) dropped: vpn-ctl writes no trailing whitespace.
    fn seed_vpncfg() -> String {
        SEED_VPNCFG
            .lines()
            .map(|l| format!("{}\n", l.trim_end()))
            .collect()
    }

    #[test]
    fn seed_connection_in_main_mode_renders_the_seed_file() {
        let text = with(SEED_SITE, "\"ikev1-aggressive\"", "\"ikev1-main\"");
        assert_eq!(render(&text).unwrap(), seed_vpncfg());
    }

    /// The seed's OpenWrt side uses aggressive mode (`aggressive=yes`) while its FRITZ!Box
    /// file says main mode (`phase1_mode_idp`); vpn-ctl writes the mode the site uses.
    #[test]
    fn seed_connection_in_aggressive_mode_differs_only_in_the_mode() {
        assert_eq!(
            render(SEED_SITE).unwrap(),
            with(
                &seed_vpncfg(),
                "mode = phase1_mode_idp;",
                "mode = phase1_mode_aggressive;"
            )
        );
    }

    #[test]
    fn addresses_dh14_and_no_pfs() {
        let text = with(
            SEED_SITE,
            "local_gateway = \"left.domain.com\"",
            "local_gateway = \"198.51.100.1\"",
        );
        let text = with(&text, "local_id = \"left.domain.com\"\n", "");
        let text = with(
            &text,
            "remote_id = \"right.domain.com\"",
            "remote_id = \"203.0.113.1\"",
        );
        let text = with(
            &text,
            "ike_version = \"ikev1-aggressive\"",
            "ike_version = \"ikev1-main\"",
        );
        let text = with(
            &text,
            "[\"aes256-sha1-modp1024\"]\nesp_proposals",
            "[\"aes128-sha1-modp2048\"]\nesp_proposals",
        );
        let text = with(
            &text,
            "esp_proposals = [\"aes256-sha1-modp1024\"]",
            "esp_proposals = [\"aes256-sha1\"]",
        );
        let text = with(
            &text,
            "allow_weak = [\"modp1024\", \"sha1\"]",
            "allow_weak = [\"sha1\"]\nnat_traversal = false",
        );
        let out = render(&text).unwrap();
        let expected = with(
            &seed_vpncfg(),
            "remoteip = 0.0.0.0;",
            "remoteip = 198.51.100.1;",
        );
        let expected = with(
            &expected,
            "remotehostname = \"left.domain.com\";",
            "remotehostname = \"\";",
        );
        let expected = with(
            &expected,
            "fqdn = \"right.domain.com\";",
            "ipaddr = 203.0.113.1;",
        );
        let expected = with(
            &expected,
            "fqdn = \"left.domain.com\";",
            "ipaddr = 198.51.100.1;",
        );
        let expected = with(&expected, "\"all/all/all\"", "\"dh14/aes/sha\"");
        let expected = with(&expected, "use_nat_t = yes;", "use_nat_t = no;");
        let expected = with(&expected, "comp-all/pfs", "comp-all/no-pfs");
        assert_eq!(out, expected);
    }

    #[test]
    fn first_proposal_the_fritzbox_takes_wins() {
        let text = with(
            SEED_SITE,
            "ike_proposals = [\"aes256-sha1-modp1024\"]",
            "ike_proposals = [\"aes256-sha256-ecp256\", \"aes256-sha1-modp1024\"]",
        );
        assert!(
            render(&text)
                .unwrap()
                .contains("phase1ss = \"all/all/all\";")
        );
    }

    fn refused(text: &str) -> String {
        render(text).unwrap_err().to_string()
    }

    #[test]
    fn refuses_ikev2() {
        let text = with(SEED_SITE, "ike_version = \"ikev1-aggressive\"\n", "");
        let text = with(&text, "ike_proposals = [\"aes256-sha1-modp1024\"]\n", "");
        let text = with(&text, "esp_proposals = [\"aes256-sha1-modp1024\"]\n", "");
        let text = with(&text, "allow_weak = [\"modp1024\", \"sha1\"]\n", "");
        assert_eq!(
            refused(&text),
            "site SiteToSite uses IKEv2, but the FRITZ!Box's import file describes IKEv1 \
            connections: set ike_version = \"ikev1-aggressive\" (the FRITZ!Box's LAN-to-LAN \
            mode) or \"ikev1-main\""
        );
    }

    #[test]
    fn refuses_several_subnets_and_ipv6() {
        let text = with(
            SEED_SITE,
            "remote_subnets = [\"192.168.1.0/24\"]",
            "remote_subnets = [\"192.168.1.0/24\", \"192.168.5.0/24\"]",
        );
        assert_eq!(
            refused(&text),
            "site SiteToSite has 2 remote_subnets, but a FRITZ!Box connection joins one \
            network on each side: list one in remote_subnets"
        );
        let text = with(SEED_SITE, "[\"192.168.2.0/24\"]", "[\"fd00:2::/64\"]");
        let text = with(&text, "[\"192.168.1.0/24\"]", "[\"fd00:1::/64\"]");
        let text = with(&text, "watchdog_probe = \"192.168.1.1\"\n", "");
        assert_eq!(
            refused(&text),
            "site SiteToSite's local_subnets fd00:2::/64 is IPv6, but the FRITZ!Box's \
            LAN-to-LAN connections carry IPv4 only"
        );
        let text = with(
            SEED_SITE,
            "local_gateway = \"left.domain.com\"",
            "local_gateway = \"2001:db8::2\"",
        );
        assert_eq!(
            refused(&text),
            "site SiteToSite's local_gateway 2001:db8::2 is IPv6, but the FRITZ!Box's \
            LAN-to-LAN connections use IPv4: give this router's IPv4 address or DNS name"
        );
    }

    #[test]
    fn refuses_a_site_without_local_gateway() {
        assert_eq!(
            refused(&with(
                SEED_SITE,
                "local_gateway = \"left.domain.com\"\n",
                ""
            )),
            "site SiteToSite has no local_gateway, but the FRITZ!Box needs to know where \
            to find this router: set local_gateway to its DNS name (e.g. its dynamic \
            DNS name) or public IPv4 address"
        );
    }

    #[test]
    fn refuses_proposals_outside_the_fritzbox_suites() {
        let text = with(
            SEED_SITE,
            "ike_proposals = [\"aes256-sha1-modp1024\"]",
            "ike_proposals = [\"aes256-sha256-modp2048\"]",
        );
        assert_eq!(
            refused(&text),
            "none of site SiteToSite's ike_proposals (aes256-sha256-modp2048) is one the \
            FRITZ!Box offers: it takes AES, 3DES or DES with SHA-1 or MD5 and DH group 2 \
            (e.g. \"aes256-sha1-modp1024\", with allow_weak = [\"sha1\", \"modp1024\"]), or \
            AES with SHA-1 and DH group 14 (\"aes256-sha1-modp2048\")"
        );
        let text = with(
            SEED_SITE,
            "esp_proposals = [\"aes256-sha1-modp1024\"]",
            "esp_proposals = [\"aes256gcm16-modp1024\", \"aes256-sha1-ecp256\"]",
        );
        assert_eq!(
            refused(&text),
            "none of site SiteToSite's esp_proposals (aes256gcm16-modp1024, \
            aes256-sha1-ecp256) is one the FRITZ!Box offers: it takes AES, 3DES or DES with \
            SHA-1 or MD5, and for PFS the group of phase 1 (modp1024), e.g. \
            \"aes256-sha1-modp1024\""
        );
    }

    #[test]
    fn refuses_static_keying() {
        let dir = tempfile::tempdir().unwrap();
        for (file, key) in [("out.key", "11"), ("in.key", "22")] {
            let path = dir.path().join(file);
            fs::write(&path, key.repeat(36)).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        let text = "[ipsec.office]\nkeying = \"static\"\nlocal_gateway = \"198.51.100.1\"\n\
                    remote_gateway = \"203.0.113.1\"\nlocal_subnets = [\"192.168.2.0/24\"]\n\
                    remote_subnets = [\"192.168.3.0/24\"]\nesp = \"aes256gcm16\"\n\
                    spi_out = 0x1001\nspi_in = 0x1002\nkey_out_file = \"out.key\"\n\
                    key_in_file = \"in.key\"\n";
        let config = config::parse(&dir.path().join("vpn.toml"), text).unwrap();
        assert_eq!(
            vpncfg(&config.ipsec[0], &SecretBytes::new(b"x".to_vec()))
                .unwrap_err()
                .to_string(),
            "site office uses static keying, but a FRITZ!Box negotiates its keys with \
            IKE: set keying = \"ike\" with ike_version = \"ikev1-aggressive\" and a \
            psk_file"
        );
    }

    #[test]
    fn refuses_keys_that_would_break_the_file() {
        let site = site(SEED_SITE, "VPNPassword\n");
        let message = vpncfg(&site, &SecretBytes::new(b"say \"hi\"".to_vec()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "site SiteToSite's pre-shared key has characters the FRITZ!Box's file cannot \
            hold (quotes, backslashes, control characters or non-ASCII): write a key of \
            letters, digits and punctuation into its psk_file, e.g. with `vpn-ctl genpsk`, \
            and use it on both sides"
        );
        for key in ["back\\slash", "tab\there", "grüße", "\u{7f}"] {
            assert_eq!(
                vpncfg(&site, &SecretBytes::new(key.as_bytes().to_vec()))
                    .unwrap_err()
                    .to_string(),
                message,
                "{key:?}"
            );
        }
        // Spaces and other punctuation are fine.
        let out = vpncfg(&site, &SecretBytes::new(b"a b;c{d}e'f".to_vec())).unwrap();
        assert!(out.contains("key = \"a b;c{d}e'f\";"), "{out}");
    }
}
