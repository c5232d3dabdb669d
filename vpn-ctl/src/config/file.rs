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
mod tests;
