//! The file's raw shape: what serde reads from the TOML, before any checking.
//!
//! Every value an error may point at is a [`Spanned`], so the validator can name its line and
//! column. Integers are read as `i64` and fields the model requires are `Option`s here: range
//! checks and missing fields are the validator's, which reports all of them at once, with
//! better words than serde's. What serde itself refuses (TOML syntax, unknown fields, a wrong
//! type) stops the parse at the first problem; [`parse`] turns it into a [`Diagnostic`].

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;
use toml::Spanned;

use super::{Diagnostic, Error};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub router: Option<RawRouter>,
    /// Interfaces by name, the name spanned where it is first written. Map order is not file
    /// order: sort by the names' spans.
    pub wireguard: Option<BTreeMap<Spanned<String>, Spanned<RawInterface>>>,
    /// IPsec sites by name, like `wireguard`.
    pub ipsec: Option<BTreeMap<Spanned<String>, Spanned<RawSite>>>,
    /// `[daemon]`.
    pub daemon: Option<RawDaemon>,
}

/// `[daemon]`: settings of `vpn-ctl daemon`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub metrics_listen: Option<Spanned<String>>,
    pub metrics_max_peers: Option<Spanned<i64>>,
    pub tick: Option<Spanned<i64>>,
    pub xdp: Option<Spanned<String>>,
}

/// `[router]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouter {
    pub wan: Option<Spanned<String>>,
    #[serde(default)]
    pub lan: Vec<Spanned<String>>,
    pub firewall: Option<Spanned<String>>,
}

/// `[wireguard.NAME]`; its span is the table's header.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterface {
    pub private_key_file: Option<Spanned<String>>,
    pub listen_port: Option<Spanned<i64>>,
    #[serde(default)]
    pub addresses: Vec<Spanned<String>>,
    pub mtu: Option<Spanned<i64>>,
    pub fwmark: Option<Spanned<i64>>,
    pub public_endpoint: Option<Spanned<String>>,
    #[serde(default)]
    pub client_dns: Vec<Spanned<String>>,
    pub internet: Option<bool>,
    /// `None` when the section has no `peers` at all (see `crate::guard`).
    pub peers: Option<Vec<Spanned<RawPeer>>>,
}

/// `[[wireguard.NAME.peers]]`; its span is the table's header.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPeer {
    pub name: Option<Spanned<String>>,
    pub public_key: Option<Spanned<String>>,
    pub preshared_key_file: Option<Spanned<String>>,
    #[serde(default)]
    pub allowed_ips: Vec<Spanned<String>>,
    pub endpoint: Option<Spanned<String>>,
    pub persistent_keepalive: Option<Spanned<i64>>,
    pub route: Option<bool>,
}

/// `[ipsec.NAME]`; its span is the table's header. Lists are spanned as a whole too, so
/// that an empty one, or one that belongs to the other keying, can be pointed at.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSite {
    pub keying: Option<Spanned<String>>,
    pub local_gateway: Option<Spanned<String>>,
    pub remote_gateway: Option<Spanned<String>>,
    pub local_subnets: Option<Spanned<Vec<Spanned<String>>>>,
    pub remote_subnets: Option<Spanned<Vec<Spanned<String>>>>,
    pub watchdog_probe: Option<Spanned<String>>,
    // keying = "ike"
    pub local_id: Option<Spanned<String>>,
    pub remote_id: Option<Spanned<String>>,
    pub psk_file: Option<Spanned<String>>,
    pub ike_version: Option<Spanned<String>>,
    pub ike_proposals: Option<Spanned<Vec<Spanned<String>>>>,
    pub esp_proposals: Option<Spanned<Vec<Spanned<String>>>>,
    pub allow_weak: Option<Spanned<Vec<Spanned<String>>>>,
    pub ike_lifetime: Option<Spanned<i64>>,
    pub esp_lifetime: Option<Spanned<i64>>,
    pub dpd: Option<Spanned<i64>>,
    pub nat_traversal: Option<Spanned<bool>>,
    // keying = "static"
    pub esp: Option<Spanned<String>>,
    pub spi_out: Option<Spanned<i64>>,
    pub spi_in: Option<Spanned<i64>>,
    pub key_out_file: Option<Spanned<String>>,
    pub key_in_file: Option<Spanned<String>>,
}

/// The fields of each table, for telling where a misplaced field belongs. A test checks
/// them against the ones serde accepts.
const ROUTER_FIELDS: &[&str] = &["wan", "lan", "firewall"];
const DAEMON_FIELDS: &[&str] = &["metrics_listen", "metrics_max_peers", "tick", "xdp"];
const INTERFACE_FIELDS: &[&str] = &[
    "private_key_file",
    "listen_port",
    "addresses",
    "mtu",
    "fwmark",
    "public_endpoint",
    "client_dns",
    "internet",
    "peers",
];
const PEER_FIELDS: &[&str] = &[
    "name",
    "public_key",
    "preshared_key_file",
    "allowed_ips",
    "endpoint",
    "persistent_keepalive",
    "route",
];
const SITE_FIELDS: &[&str] = &[
    "keying",
    "local_gateway",
    "remote_gateway",
    "local_subnets",
    "remote_subnets",
    "watchdog_probe",
    "local_id",
    "remote_id",
    "psk_file",
    "ike_version",
    "ike_proposals",
    "esp_proposals",
    "allow_weak",
    "ike_lifetime",
    "esp_lifetime",
    "dpd",
    "nat_traversal",
    "esp",
    "spi_out",
    "spi_in",
    "key_out_file",
    "key_in_file",
];

/// How each field is written, for the help of a wrong type.
const EXAMPLES: &[(&str, &str)] = &[
    ("router", "[router]"),
    ("wireguard", "[wireguard.wg0]"),
    ("wan", r#"wan = "eth0""#),
    ("lan", r#"lan = ["192.168.1.0/24"]"#),
    ("firewall", r#"firewall = "manage""#),
    ("internet", "internet = true"),
    ("private_key_file", r#"private_key_file = "wg0.key""#),
    ("listen_port", "listen_port = 51820"),
    ("addresses", r#"addresses = ["10.8.0.1/24", "fd08::1/64"]"#),
    ("mtu", "mtu = 1420"),
    ("fwmark", "fwmark = 0x5182"),
    (
        "public_endpoint",
        r#"public_endpoint = "home.example.org:51820""#,
    ),
    ("client_dns", r#"client_dns = ["192.168.1.1"]"#),
    ("name", r#"name = "phone""#),
    ("public_key", r#"public_key = "<the peer's `wg pubkey`>""#),
    (
        "preshared_key_file",
        r#"preshared_key_file = "wg0-phone.psk""#,
    ),
    (
        "allowed_ips",
        r#"allowed_ips = ["10.8.0.2/32", "fd08::2/128"]"#,
    ),
    ("endpoint", r#"endpoint = "peer.example.org:51820""#),
    ("persistent_keepalive", "persistent_keepalive = 25"),
    ("route", "route = true"),
    ("ipsec", "[ipsec.fritzbox]"),
    ("keying", r#"keying = "ike""#),
    ("local_gateway", r#"local_gateway = "left.domain.com""#),
    ("remote_gateway", r#"remote_gateway = "right.domain.com""#),
    ("local_subnets", r#"local_subnets = ["192.168.2.0/24"]"#),
    ("remote_subnets", r#"remote_subnets = ["192.168.1.0/24"]"#),
    ("watchdog_probe", r#"watchdog_probe = "192.168.1.1""#),
    ("local_id", r#"local_id = "left.domain.com""#),
    ("remote_id", r#"remote_id = "right.domain.com""#),
    ("psk_file", r#"psk_file = "fritzbox.psk""#),
    ("ike_version", r#"ike_version = "ikev2""#),
    (
        "ike_proposals",
        r#"ike_proposals = ["aes256gcm16-prfsha256-ecp256"]"#,
    ),
    ("esp_proposals", r#"esp_proposals = ["aes256gcm16-ecp256"]"#),
    ("allow_weak", r#"allow_weak = ["modp1024", "sha1"]"#),
    ("ike_lifetime", "ike_lifetime = 28800"),
    ("esp_lifetime", "esp_lifetime = 3600"),
    ("dpd", "dpd = 30"),
    ("nat_traversal", "nat_traversal = true"),
    ("esp", r#"esp = "aes256gcm16""#),
    ("spi_out", "spi_out = 0x1001"),
    ("spi_in", "spi_in = 0x1002"),
    ("key_out_file", r#"key_out_file = "office-out.key""#),
    ("key_in_file", r#"key_in_file = "office-in.key""#),
    ("daemon", "[daemon]"),
    ("metrics_listen", r#"metrics_listen = "127.0.0.1:9586""#),
    ("metrics_max_peers", "metrics_max_peers = 10000"),
    ("tick", "tick = 30"),
    ("xdp", r#"xdp = "count""#),
];

/// wg-quick's names (and other likely guesses) for our fields, normalized as by
/// [`normalize`].
const ALIASES: &[(&str, &str)] = &[
    ("privatekey", "private_key_file"),
    ("presharedkey", "preshared_key_file"),
    ("psk", "preshared_key_file"),
    ("address", "addresses"),
    ("dns", "client_dns"),
    ("port", "listen_port"),
    ("keepalive", "persistent_keepalive"),
    ("endpoint", "public_endpoint"),
    ("peer", "peers"),
    // strongSwan's ipsec.conf and swanctl.conf names.
    ("psk", "psk_file"),
    ("secret", "psk_file"),
    ("local", "local_gateway"),
    ("left", "local_gateway"),
    ("localaddrs", "local_gateway"),
    ("remote", "remote_gateway"),
    ("right", "remote_gateway"),
    ("remoteaddrs", "remote_gateway"),
    ("endpoint", "remote_gateway"),
    ("leftsubnet", "local_subnets"),
    ("localts", "local_subnets"),
    ("rightsubnet", "remote_subnets"),
    ("remotets", "remote_subnets"),
    ("leftid", "local_id"),
    ("rightid", "remote_id"),
    ("keyexchange", "ike_version"),
    ("version", "ike_version"),
    ("aggressive", "ike_version"),
    ("ike", "ike_proposals"),
    ("proposals", "ike_proposals"),
    ("ikelifetime", "ike_lifetime"),
    ("keylife", "esp_lifetime"),
    ("lifetime", "esp_lifetime"),
    ("dpddelay", "dpd"),
    ("encap", "nat_traversal"),
    ("natt", "nat_traversal"),
];

/// Reads the TOML into the raw shape; syntax errors, unknown fields and wrong types become a
/// diagnostic at their place in `text`.
pub(super) fn parse(path: &Path, text: &str) -> Result<Raw, Error> {
    toml::from_str(text).map_err(|e| Error::from(vec![diagnostic(path, text, &e)]))
}

fn diagnostic(path: &Path, text: &str, e: &toml::de::Error) -> Diagnostic {
    let (message, help) = explain(text, e);
    match e.span() {
        Some(span) => Diagnostic::at(path, text, span.start, message, help),
        None => Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message,
            help: Some(help),
        },
    }
}

/// The message and help for a toml error.
fn explain(text: &str, e: &toml::de::Error) -> (String, String) {
    let message = e.message();
    let keys = key_path(e);
    // serde's words: "unknown field `x`, expected one of `a`, `b`" and "invalid type:
    // string \"x\", expected i64".
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'));
    if let Some((field, expected)) = unknown {
        return unknown_field(field, &backquoted(expected), &keys);
    }
    let invalid = message
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.rsplit_once(", expected "));
    if let Some((found, expected)) = invalid {
        return wrong_type(found, expected, &keys);
    }
    if message == "duplicate key" {
        let span = e.span().unwrap_or_default();
        let key = text.get(span.clone()).unwrap_or_default();
        return if let Some(header) = header_at(text, span.start) {
            (
                format!("table {header} is already defined above"),
                "a [table] header may appear once: merge the two tables".to_string(),
            )
        } else {
            (
                format!("`{key}` is already set above in this table"),
                "a key may appear once per table: remove one of them".to_string(),
            )
        };
    }
    if message.starts_with("string values must be quoted") {
        return (
            "a string value must be in quotes".to_string(),
            r#"write it as "...", e.g. wan = "eth0""#.to_string(),
        );
    }
    (
        format!("not valid TOML: {message}"),
        "see https://toml.io for the syntax; the README shows a complete example".to_string(),
    )
}

/// The `[table]` header on the line of byte `offset`, if that line is one.
fn header_at(text: &str, offset: usize) -> Option<&str> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?.trim_start();
    if !line.starts_with('[') {
        return None;
    }
    let end = line.find(']')?;
    let brackets = line[end..].chars().take_while(|c| *c == ']').count();
    Some(&line[..end + brackets])
}

/// The names of the keys leading to the failed value, e.g. `["wireguard", "wg0", "mtu"]`.
/// toml's error keeps them privately and prints them, as "in `a.b`", only when it has no
/// input to quote, so that is how they are read.
fn key_path(e: &toml::de::Error) -> Vec<String> {
    let mut e = e.clone();
    e.set_input(None);
    let rendered = e.to_string();
    rendered
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("in `")?.strip_suffix('`'))
        .map(|path| path.split('.').map(str::to_string).collect())
        .unwrap_or_default()
}

/// The `quoted` names in serde's list of expected fields.
fn backquoted(s: &str) -> Vec<String> {
    s.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Where a table is, in the words of the file: `[router]`, `a peer of wg0`.
fn describe_table(keys: &[String]) -> String {
    match keys {
        [] => "at the top level".to_string(),
        [wg, iface, peers] if wg == "wireguard" && peers == "peers" => {
            format!("in a peer of {iface} ([[wireguard.{iface}.peers]])")
        }
        _ => format!("in [{}]", keys.join(".")),
    }
}

fn unknown_field(field: &str, accepted: &[String], keys: &[String]) -> (String, String) {
    let message = format!("unknown field `{field}` {}", describe_table(keys));
    let iface = match keys {
        [wg, iface, ..] if wg == "wireguard" => iface.as_str(),
        _ => "wg0",
    };
    let mut help = Vec::new();
    if let Some(near) = closest(field, accepted) {
        help.push(format!("did you mean `{near}`?"));
        if matches!(
            near,
            "private_key_file" | "preshared_key_file" | "psk_file" | "key_out_file" | "key_in_file"
        ) {
            help.push(format!(
                "vpn-ctl reads keys from files of mode 0600, never from this file: \
                 {near} = \"...\""
            ));
        }
    } else {
        // A field of another table, written in the wrong place.
        let home = if ROUTER_FIELDS.contains(&field) {
            Some("[router]".to_string())
        } else if INTERFACE_FIELDS.contains(&field) {
            Some(format!("the interface's table [wireguard.{iface}]"))
        } else if PEER_FIELDS.contains(&field) {
            Some(format!("a peer's table [[wireguard.{iface}.peers]]"))
        } else if SITE_FIELDS.contains(&field) {
            Some("an IPsec site's table, e.g. [ipsec.fritzbox]".to_string())
        } else if DAEMON_FIELDS.contains(&field) {
            Some("[daemon]".to_string())
        } else {
            None
        };
        if let Some(home) = home {
            help.push(format!("`{field}` belongs in {home}"));
            if keys.last().is_some_and(|k| k == "peers") {
                help.push(format!(
                    "in TOML every key after a [[wireguard.{iface}.peers]] header belongs to \
                     that peer, so write the interface's fields above its first peer"
                ));
            }
        }
    }
    help.push(format!(
        "the fields accepted here: {}",
        if accepted.is_empty() {
            "none".to_string()
        } else {
            accepted.join(", ")
        }
    ));
    (message, help.join("; "))
}

/// The accepted name `field` is most likely a misspelling of: one or two letters off, or
/// another spelling (`ListenPort`, `AllowedIPs`, `PrivateKey`).
fn closest<'a>(field: &str, accepted: &'a [String]) -> Option<&'a str> {
    let wanted = normalize(field);
    let alias = ALIASES
        .iter()
        .filter(|(alias, _)| *alias == wanted)
        .find_map(|(_, name)| accepted.iter().find(|a| a == name));
    if let Some(alias) = alias {
        return Some(alias);
    }
    let limit = if wanted.chars().count() >= 5 { 2 } else { 1 };
    accepted
        .iter()
        .map(|a| (edit_distance(&wanted, &normalize(a)), a))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a.as_str())
}

/// Lower case without `_` and `-`, so that `ListenPort`, `listen-port` and `listen_port`
/// compare equal.
fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Edit distance counting a swap of two neighbours as one edit (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

fn wrong_type(found: &str, expected: &str, keys: &[String]) -> (String, String) {
    let what = match keys {
        [] => "the file".to_string(),
        [wg, iface] if wg == "wireguard" => format!("interface {iface}"),
        [ipsec, site] if ipsec == "ipsec" => format!("site {site}"),
        _ => format!("`{}`", keys.last().map_or("", String::as_str)),
    };
    // serde's words for TOML's types.
    let expected = match expected {
        "i64" => "an integer",
        "a boolean" => "true or false",
        "a sequence" => "an array",
        e if e == "a map" || e.starts_with("struct ") => "a table",
        e => e,
    };
    let (found, out_of_range) = match found.split_once(" as ") {
        Some((number, _)) => (number, true),
        None => (found, false),
    };
    let found = match found {
        "sequence" => "an array".to_string(),
        "map" => "a table".to_string(),
        f => match f.split_once(' ') {
            Some(("string", value)) => format!("the string {value}"),
            // "integer `1`", "floating point `1.5`"
            _ => f.replace('`', ""),
        },
    };
    let message = if out_of_range {
        format!(
            "{what} is out of range: {}",
            found.trim_start_matches("integer ")
        )
    } else {
        format!("{what} must be {expected}, not {found}")
    };
    let field = keys.last().map_or("", String::as_str);
    let help = match keys {
        [wg, iface] if wg == "wireguard" => {
            format!(
                "each interface is a table: write its fields under a [wireguard.{iface}] header"
            )
        }
        [ipsec, site] if ipsec == "ipsec" => {
            format!("each IPsec site is a table: write its fields under an [ipsec.{site}] header")
        }
        [wg, iface, peers] if wg == "wireguard" && peers == "peers" => format!(
            "peers are an array of tables: start each peer with a [[wireguard.{iface}.peers]] \
             header (double brackets)"
        ),
        _ => match EXAMPLES.iter().find(|(name, _)| *name == field) {
            Some((_, example)) => format!("write it like this: {example}"),
            None => "see the README's example".to_string(),
        },
    };
    (message, help)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rendered error for `text`, read as `/etc/vpn-ctl/vpn.toml`.
    fn error(text: &str) -> String {
        match parse(Path::new("/etc/vpn-ctl/vpn.toml"), text) {
            Ok(raw) => panic!("{text:?} parsed: {raw:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_file_is_an_empty_configuration() {
        let raw = parse(Path::new("vpn.toml"), "").unwrap();
        assert!(raw.router.is_none() && raw.wireguard.is_none());
        let raw = parse(Path::new("vpn.toml"), "# nothing yet\n\n[wireguard]\n").unwrap();
        assert!(raw.wireguard.unwrap().is_empty());
    }

    #[test]
    fn values_keep_their_spans() {
        let text =
            "[wireguard.wg0]\nlisten_port = 51820\n\n[[wireguard.wg0.peers]]\nname = \"phone\"\n";
        let raw = parse(Path::new("vpn.toml"), text).unwrap();
        let (name, iface) = raw.wireguard.unwrap().into_iter().next().unwrap();
        assert_eq!(&text[name.span()], "wg0");
        assert_eq!(&text[iface.span()], "[wireguard.wg0]");
        let port = iface.get_ref().listen_port.as_ref().unwrap();
        assert_eq!((&text[port.span()], *port.get_ref()), ("51820", 51820));
        let peer = &iface.get_ref().peers.as_ref().unwrap()[0];
        assert_eq!(&text[peer.span()], "[[wireguard.wg0.peers]]");
        assert_eq!(
            &text[peer.get_ref().name.as_ref().unwrap().span()],
            "\"phone\""
        );
    }

    #[test]
    fn syntax_error_points_at_the_place() {
        assert_eq!(
            error("[router]\nwan = \"eth0\n"),
            "/etc/vpn-ctl/vpn.toml:2:12: not valid TOML: invalid basic string, expected `\"`\n  \
             help: see https://toml.io for the syntax; the README shows a complete example"
        );
        assert_eq!(
            error("[router\nwan = \"eth0\"\n"),
            "/etc/vpn-ctl/vpn.toml:1:8: not valid TOML: unclosed table, expected `]`\n  \
             help: see https://toml.io for the syntax; the README shows a complete example"
        );
    }

    #[test]
    fn unquoted_string_says_to_quote_it() {
        assert_eq!(
            error("[router]\nwan = eth0\n"),
            "/etc/vpn-ctl/vpn.toml:2:7: a string value must be in quotes\n  \
             help: write it as \"...\", e.g. wan = \"eth0\""
        );
    }

    #[test]
    fn duplicate_key_and_duplicate_table() {
        assert_eq!(
            error("[router]\nwan = \"eth0\"\nwan = \"eth1\"\n"),
            "/etc/vpn-ctl/vpn.toml:3:1: `wan` is already set above in this table\n  \
             help: a key may appear once per table: remove one of them"
        );
        assert_eq!(
            error("[router]\n[wireguard.wg0]\n[router]\n"),
            "/etc/vpn-ctl/vpn.toml:3:2: table [router] is already defined above\n  \
             help: a [table] header may appear once: merge the two tables"
        );
        assert_eq!(
            error("[wireguard.wg0]\nmtu = 1420\n\n  [wireguard.wg0] # again\n"),
            "/etc/vpn-ctl/vpn.toml:4:14: table [wireguard.wg0] is already defined above\n  \
             help: a [table] header may appear once: merge the two tables"
        );
    }

    #[test]
    fn unknown_field_suggests_the_near_name_and_lists_the_accepted() {
        assert_eq!(
            error("[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\nlisten_prot = 51820\n"),
            "/etc/vpn-ctl/vpn.toml:3:1: unknown field `listen_prot` in [wireguard.wg0]\n  \
             help: did you mean `listen_port`?; the fields accepted here: private_key_file, \
             listen_port, addresses, mtu, fwmark, public_endpoint, client_dns, internet, peers"
        );
        assert_eq!(
            error("[[wireguard.wg0.peers]]\nnmae = \"phone\"\n"),
            "/etc/vpn-ctl/vpn.toml:2:1: unknown field `nmae` in a peer of wg0 \
             ([[wireguard.wg0.peers]])\n  help: did you mean `name`?; the fields accepted \
             here: name, public_key, preshared_key_file, allowed_ips, endpoint, \
             persistent_keepalive, route"
        );
    }

    #[test]
    fn wg_quick_names_map_to_ours() {
        assert_eq!(
            error("[[wireguard.wg0.peers]]\nAllowedIPs = [\"10.8.0.2/32\"]\n"),
            "/etc/vpn-ctl/vpn.toml:2:1: unknown field `AllowedIPs` in a peer of wg0 \
             ([[wireguard.wg0.peers]])\n  help: did you mean `allowed_ips`?; the fields \
             accepted here: name, public_key, preshared_key_file, allowed_ips, endpoint, \
             persistent_keepalive, route"
        );
        assert_eq!(
            error("[wireguard.wg0]\nPrivateKey = \"abc\"\n"),
            "/etc/vpn-ctl/vpn.toml:2:1: unknown field `PrivateKey` in [wireguard.wg0]\n  \
             help: did you mean `private_key_file`?; vpn-ctl reads keys from files of mode \
             0600, never from this file: private_key_file = \"...\"; the fields accepted \
             here: private_key_file, listen_port, addresses, mtu, fwmark, public_endpoint, \
             client_dns, internet, peers"
        );
    }

    #[test]
    fn field_in_the_wrong_table_says_where_it_belongs() {
        assert_eq!(
            error("wan = \"eth0\"\n"),
            "/etc/vpn-ctl/vpn.toml:1:1: unknown field `wan` at the top level\n  \
             help: `wan` belongs in [router]; the fields accepted here: router, wireguard, ipsec, \
             daemon"
        );
        // The classic TOML slip: an interface field after the first peer's header.
        assert_eq!(
            error("[wireguard.wg1]\n[[wireguard.wg1.peers]]\nname = \"phone\"\nmtu = 1420\n"),
            "/etc/vpn-ctl/vpn.toml:4:1: unknown field `mtu` in a peer of wg1 \
             ([[wireguard.wg1.peers]])\n  help: `mtu` belongs in the interface's table \
             [wireguard.wg1]; in TOML every key after a [[wireguard.wg1.peers]] header \
             belongs to that peer, so write the interface's fields above its first peer; the \
             fields accepted here: name, public_key, preshared_key_file, allowed_ips, \
             endpoint, persistent_keepalive, route"
        );
    }

    #[test]
    fn sections_that_do_not_exist_are_refused() {
        assert_eq!(
            error("[firewall2]\nlisten = \"127.0.0.1:9586\"\n"),
            "/etc/vpn-ctl/vpn.toml:1:2: unknown field `firewall2` at the top level\n  \
             help: the fields accepted here: router, wireguard, ipsec, daemon"
        );
        assert_eq!(
            error("[daemon]\nlisten = \"127.0.0.1:9586\"\n"),
            "/etc/vpn-ctl/vpn.toml:2:1: unknown field `listen` in [daemon]\n  \
             help: the fields accepted here: metrics_listen, metrics_max_peers, tick, xdp"
        );
    }

    #[test]
    fn ipsec_sites_keep_their_spans() {
        let text = "[ipsec.fritzbox]\nkeying = \"ike\"\nremote_subnets = [\"192.168.1.0/24\"]\n\
                    spi_in = 0x1002\nnat_traversal = false\n";
        let raw = parse(Path::new("vpn.toml"), text).unwrap();
        let (name, site) = raw.ipsec.unwrap().into_iter().next().unwrap();
        assert_eq!(&text[name.span()], "fritzbox");
        assert_eq!(&text[site.span()], "[ipsec.fritzbox]");
        let site = site.into_inner();
        let remote = site.remote_subnets.unwrap();
        assert_eq!(&text[remote.span()], "[\"192.168.1.0/24\"]");
        assert_eq!(&text[remote.get_ref()[0].span()], "\"192.168.1.0/24\"");
        assert_eq!(*site.spi_in.unwrap().get_ref(), 0x1002);
        assert!(!site.nat_traversal.unwrap().into_inner());
        assert!(site.local_subnets.is_none() && site.psk_file.is_none());
    }

    #[test]
    fn strongswan_names_in_a_site_map_to_ours() {
        let accepted = "keying, local_gateway, remote_gateway, local_subnets, remote_subnets, \
                        watchdog_probe, local_id, remote_id, psk_file, ike_version, \
                        ike_proposals, esp_proposals, allow_weak, ike_lifetime, esp_lifetime, \
                        dpd, nat_traversal, esp, spi_out, spi_in, key_out_file, key_in_file";
        assert_eq!(
            error("[ipsec.fritzbox]\nremote = \"203.0.113.1\"\n"),
            format!(
                "/etc/vpn-ctl/vpn.toml:2:1: unknown field `remote` in [ipsec.fritzbox]\n  \
                 help: did you mean `remote_gateway`?; the fields accepted here: {accepted}"
            )
        );
        assert_eq!(
            error("[ipsec.fritzbox]\nleftsubnet = \"192.168.2.0/24\"\n"),
            format!(
                "/etc/vpn-ctl/vpn.toml:2:1: unknown field `leftsubnet` in [ipsec.fritzbox]\n  \
                 help: did you mean `local_subnets`?; the fields accepted here: {accepted}"
            )
        );
        // `psk` in a peer is the WireGuard preshared key, in a site the IPsec one.
        assert_eq!(
            error("[ipsec.fritzbox]\npsk = \"VPNPassword\"\n"),
            format!(
                "/etc/vpn-ctl/vpn.toml:2:1: unknown field `psk` in [ipsec.fritzbox]\n  \
                 help: did you mean `psk_file`?; vpn-ctl reads keys from files of mode 0600, \
                 never from this file: psk_file = \"...\"; the fields accepted here: {accepted}"
            )
        );
        assert_eq!(
            error("[ipsec.fritzbox]\nlisten_port = 500\n"),
            format!(
                "/etc/vpn-ctl/vpn.toml:2:1: unknown field `listen_port` in [ipsec.fritzbox]\n  \
                 help: `listen_port` belongs in the interface's table [wireguard.wg0]; the \
                 fields accepted here: {accepted}"
            )
        );
        assert_eq!(
            error("[wireguard.wg0]\nremote_gateway = \"right.domain.com\"\n"),
            "/etc/vpn-ctl/vpn.toml:2:1: unknown field `remote_gateway` in [wireguard.wg0]\n  \
             help: `remote_gateway` belongs in an IPsec site's table, e.g. [ipsec.fritzbox]; the \
             fields accepted here: private_key_file, listen_port, addresses, mtu, fwmark, \
             public_endpoint, client_dns, internet, peers"
        );
    }

    #[test]
    fn site_fields_of_the_wrong_type() {
        assert_eq!(
            error("[ipsec]\nfritzbox = \"right.domain.com\"\n"),
            "/etc/vpn-ctl/vpn.toml:2:12: site fritzbox must be a table, not the string \
             \"right.domain.com\"\n  help: each IPsec site is a table: write its fields under \
             an [ipsec.fritzbox] header"
        );
        assert_eq!(
            error("[ipsec.fritzbox]\nremote_subnets = \"192.168.1.0/24\"\n"),
            "/etc/vpn-ctl/vpn.toml:2:18: `remote_subnets` must be an array, not the string \
             \"192.168.1.0/24\"\n  help: write it like this: remote_subnets = \
             [\"192.168.1.0/24\"]"
        );
        assert_eq!(
            error("[ipsec.office]\nspi_out = \"0x1001\"\n"),
            "/etc/vpn-ctl/vpn.toml:2:11: `spi_out` must be an integer, not the string \
             \"0x1001\"\n  help: write it like this: spi_out = 0x1001"
        );
        assert_eq!(
            error("[ipsec.fritzbox]\nnat_traversal = \"yes\"\n"),
            "/etc/vpn-ctl/vpn.toml:2:17: `nat_traversal` must be true or false, not the string \
             \"yes\"\n  help: write it like this: nat_traversal = true"
        );
        assert_eq!(
            error("[ipsec.fritzbox]\ndpd = \"30s\"\n"),
            "/etc/vpn-ctl/vpn.toml:2:7: `dpd` must be an integer, not the string \"30s\"\n  \
             help: write it like this: dpd = 30"
        );
    }

    #[test]
    fn wrong_types_name_the_field_and_show_its_form() {
        assert_eq!(
            error("[wireguard.wg0]\nlisten_port = \"51820\"\n"),
            "/etc/vpn-ctl/vpn.toml:2:15: `listen_port` must be an integer, not the string \
             \"51820\"\n  help: write it like this: listen_port = 51820"
        );
        assert_eq!(
            error("[router]\nlan = \"192.168.1.0/24\"\n"),
            "/etc/vpn-ctl/vpn.toml:2:7: `lan` must be an array, not the string \
             \"192.168.1.0/24\"\n  help: write it like this: lan = [\"192.168.1.0/24\"]"
        );
        assert_eq!(
            error("[[wireguard.wg0.peers]]\nallowed_ips = [\"10.8.0.2/32\", 10]\n"),
            "/etc/vpn-ctl/vpn.toml:2:31: `allowed_ips` must be a string, not integer 10\n  \
             help: write it like this: allowed_ips = [\"10.8.0.2/32\", \"fd08::2/128\"]"
        );
        assert_eq!(
            error("[[wireguard.wg0.peers]]\nroute = \"yes\"\n"),
            "/etc/vpn-ctl/vpn.toml:2:9: `route` must be true or false, not the string \
             \"yes\"\n  help: write it like this: route = true"
        );
        assert_eq!(
            error("router = \"eth0\"\n"),
            "/etc/vpn-ctl/vpn.toml:1:10: `router` must be a table, not the string \"eth0\"\n  \
             help: write it like this: [router]"
        );
        assert_eq!(
            error("[wireguard.wg0]\nmtu = 1420.5\n"),
            "/etc/vpn-ctl/vpn.toml:2:7: `mtu` must be an integer, not floating point 1420.5\n  \
             help: write it like this: mtu = 1420"
        );
    }

    #[test]
    fn interface_and_peers_must_be_tables() {
        assert_eq!(
            error("[wireguard]\nwg0 = 51820\n"),
            "/etc/vpn-ctl/vpn.toml:2:7: interface wg0 must be a table, not integer 51820\n  \
             help: each interface is a table: write its fields under a [wireguard.wg0] header"
        );
        // One pair of brackets instead of two.
        assert_eq!(
            error("[wireguard.wg0.peers]\nname = \"phone\"\n"),
            "/etc/vpn-ctl/vpn.toml:1:1: `peers` must be an array, not a table\n  help: peers \
             are an array of tables: start each peer with a [[wireguard.wg0.peers]] header \
             (double brackets)"
        );
    }

    #[test]
    fn huge_integer_is_out_of_range() {
        assert_eq!(
            error("[wireguard.wg0]\nfwmark = 99999999999999999999\n"),
            "/etc/vpn-ctl/vpn.toml:2:10: `fwmark` is out of range: 99999999999999999999\n  \
             help: write it like this: fwmark = 0x5182"
        );
    }

    #[test]
    fn column_counts_characters_not_bytes() {
        assert_eq!(
            error("# Grüße aus Köln\n[router] # Ünïcödé\nwan = \"eth0\" ; lan = []\n"),
            "/etc/vpn-ctl/vpn.toml:3:14: not valid TOML: unexpected key or value, \
             expected newline, `#`\n  help: see https://toml.io for the syntax; the README \
             shows a complete example"
        );
        assert_eq!(
            error("[router]\nwan = \"äöü\"; x = 1\n"),
            "/etc/vpn-ctl/vpn.toml:2:12: not valid TOML: unexpected key or value, \
             expected newline, `#`\n  help: see https://toml.io for the syntax; the README \
             shows a complete example"
        );
    }

    /// The field lists used for "belongs in" are the ones serde accepts.
    #[test]
    fn field_lists_match_the_raw_types() {
        let accepted = |text: &str| -> Vec<String> {
            let e = toml::from_str::<Raw>(text).unwrap_err();
            let (_, list) = e.message().split_once(", expected").unwrap();
            backquoted(list)
        };
        assert_eq!(
            accepted("zzz = 1"),
            ["router", "wireguard", "ipsec", "daemon"]
        );
        assert_eq!(accepted("[daemon]\nzzz = 1"), DAEMON_FIELDS);
        assert_eq!(accepted("[router]\nzzz = 1"), ROUTER_FIELDS);
        assert_eq!(accepted("[wireguard.wg0]\nzzz = 1"), INTERFACE_FIELDS);
        assert_eq!(accepted("[[wireguard.wg0.peers]]\nzzz = 1"), PEER_FIELDS);
        assert_eq!(accepted("[ipsec.fritzbox]\nzzz = 1"), SITE_FIELDS);
        for (field, _) in EXAMPLES {
            assert!(
                [
                    &["router", "wireguard", "ipsec", "daemon"],
                    ROUTER_FIELDS,
                    DAEMON_FIELDS,
                    INTERFACE_FIELDS,
                    PEER_FIELDS,
                    SITE_FIELDS
                ]
                .iter()
                .any(|fields| fields.contains(field)),
                "{field}"
            );
        }
        for field in SITE_FIELDS {
            assert!(EXAMPLES.iter().any(|(f, _)| f == field), "{field}");
        }
    }

    #[test]
    fn near_names() {
        let accepted: Vec<String> = INTERFACE_FIELDS.iter().map(|s| s.to_string()).collect();
        assert_eq!(closest("ListenPort", &accepted), Some("listen_port"));
        assert_eq!(closest("adresses", &accepted), Some("addresses"));
        assert_eq!(closest("Address", &accepted), Some("addresses"));
        assert_eq!(closest("DNS", &accepted), Some("client_dns"));
        assert_eq!(closest("endpoint", &accepted), Some("public_endpoint"));
        assert_eq!(closest("colour", &accepted), None);
        assert_eq!(closest("mt", &accepted), Some("mtu"));
        assert_eq!(closest("m", &accepted), None);
        assert_eq!(edit_distance("listenprot", "listenport"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
