//! wg-quick(8) configuration files (`/etc/wireguard/wg0.conf`).
//!
//! ```text
//! [Interface]
//! PrivateKey = ...
//! ListenPort = 51820
//! Address = 10.8.0.1/24, fd08::1/64     # comma-separated, and may repeat
//! PostUp = iptables -A FORWARD -i %i -j ACCEPT
//!
//! # phone                               # a comment just above [Peer] names the peer
//! [Peer]
//! PublicKey = ...
//! AllowedIPs = 10.8.0.2/32
//! ```
//!
//! Read as wg-quick and wg(8) read it: keys and section headers in any case, `#` starts a
//! comment anywhere, whitespace inside wg(8)'s values (keys, ports, addresses) is ignored,
//! `Address`, `AllowedIPs` and `DNS` add up when repeated, and otherwise the last value
//! wins. The interface's name is the file's (`wg0.conf` is `wg0`) unless one is given.
//!
//! Carried over: PrivateKey, ListenPort, Address, MTU, FwMark; PublicKey, PresharedKey,
//! AllowedIPs, Endpoint, PersistentKeepalive; `Table = off` as `route = false`. Noted and
//! not carried over: DNS (wg-quick points this machine's resolver at it; vpn-ctl does not
//! touch the router's DNS), other Table values, Pre/PostUp and Pre/PostDown commands,
//! `SaveConfig = true`, and keys wg-quick does not know.
//!
//! Keys are never shown: not in notes (values of settings named like secrets are redacted),
//! not in errors (a line that starts with PrivateKey or PresharedKey but is not `Field = KEY`,
//! such as `PresharedKey: KEY`, is refused without being quoted), and whatever is quoted of a
//! line has its key-like runs of base64 redacted.

use std::path::Path;

use anyhow::bail;

use super::{
    Error, Format, Imported, ImportedInterface, ImportedPeer, KEY_HELP, Problems, allowed_ip,
    check_duplicate_peers, check_host, excerpt, holds_key, parse_fwmark, parse_keepalive,
    parse_net, parse_port, redact_keys, settle_peer_names,
};
use crate::{
    config::Endpoint,
    key::{PublicKey, Secret},
    link,
};

/// Reads a wg-quick file. The interface is called `name`, or after the file (`wg0.conf`
/// is `wg0`).
pub fn import_wg_quick(path: &Path, name: Option<&str>) -> anyhow::Result<Imported> {
    let (name, from) = match name {
        Some(name) => (name.to_string(), "--name".to_string()),
        None => match path
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| f.strip_suffix(".conf"))
        {
            Some(stem) => (
                stem.to_string(),
                format!("the file name {}", path.display()),
            ),
            None => bail!(
                "cannot take an interface name from {}: wg-quick files are called NAME.conf\n  \
                 help: give the interface's name explicitly",
                path.display()
            ),
        },
    };
    // The name also names the key file (`NAME.key`): `--name .` would write `..key`.
    if let Some(problem) = link::name_problem(&name) {
        bail!(
            "interface name {problem} (from {from})\n  help: give the interface a name of {} \
             with --name",
            link::NAME_RULES
        );
    }
    let text = super::read_source(path)?;
    Ok(from_text(path, &name, &text)?)
}

/// [`import_wg_quick`] on text read from `path`, for the interface `name`.
pub fn from_text(path: &Path, name: &str, text: &str) -> Result<Imported, Error> {
    Parser::new(path).run(name, text)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    /// Before the first header.
    Nothing,
    Interface,
    Peer,
    /// An unknown header, already reported.
    Unknown,
}

/// A `[Peer]` section as read so far.
struct PeerDraft {
    line: usize,
    hint: Option<String>,
    /// Whether a PublicKey line was seen (it may not have parsed).
    has_public_key: bool,
    public_key: Option<PublicKey>,
    preshared_key: Option<Secret>,
    allowed_ips: Vec<ipnet::IpNet>,
    endpoint: Option<Endpoint>,
    persistent_keepalive: Option<u16>,
}

struct Parser<'f> {
    problems: Problems<'f>,
    notes: Vec<String>,
    interface_line: Option<usize>,
    /// Whether a PrivateKey line was seen (it may not have parsed).
    has_private_key: bool,
    private_key: Option<Secret>,
    listen_port: Option<u16>,
    addresses: Vec<ipnet::IpNet>,
    mtu: Option<u32>,
    fwmark: Option<u32>,
    /// `Table = off`: wg-quick adds no routes.
    table_off: bool,
    peers: Vec<PeerDraft>,
}

/// One `Key = Value` line.
struct Entry<'t> {
    line: usize,
    /// Of the value, 1-based, in characters.
    column: usize,
    key: &'t str,
    /// Trimmed, comment removed.
    value: &'t str,
}

impl Entry<'_> {
    /// The value as wg(8) reads it: with no whitespace at all.
    fn compact(&self) -> String {
        self.value.split_whitespace().collect()
    }

    /// The key, for messages: whole when it is one plain word, else an excerpt (a line
    /// without its `=` is split at a key's `=` padding, and its "name" holds the key).
    fn name(&self) -> String {
        if self.key.len() <= 32
            && self
                .key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.key.to_string()
        } else if matches!(redact_keys(self.key), std::borrow::Cow::Owned(_)) {
            // Not even the first characters of what looks like a key.
            "(redacted)".to_string()
        } else {
            excerpt(self.key)
        }
    }

    /// The line, for notes; values of keys that may be secret are left out, and so are
    /// values that hold a WireGuard key (a private key under a mistyped name). A name that
    /// is not one word (a line without its `=`, split at a key's `=` padding) is cut short.
    fn quoted(&self) -> String {
        let lower = self.key.to_ascii_lowercase();
        let name = self.name();
        if lower.contains("key")
            || lower.contains("psk")
            || lower.contains("password")
            || holds_key(self.value)
        {
            format!("`{name} = (redacted)`")
        } else {
            format!("`{name} = {}`", redact_keys(self.value))
        }
    }
}

impl<'f> Parser<'f> {
    fn new(path: &'f Path) -> Parser<'f> {
        Parser {
            problems: Problems::new(path),
            notes: Vec::new(),
            interface_line: None,
            has_private_key: false,
            private_key: None,
            listen_port: None,
            addresses: Vec::new(),
            mtu: None,
            fwmark: None,
            table_off: false,
            peers: Vec::new(),
        }
    }

    fn run(mut self, name: &str, text: &str) -> Result<Imported, Error> {
        let mut section = Section::Nothing;
        // Comment-only lines directly above the current one.
        let mut comments: Vec<&str> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let (content, comment) = match raw.split_once('#') {
                Some((content, comment)) => (content, Some(comment)),
                None => (raw, None),
            };
            let trimmed = content.trim();
            if trimmed.is_empty() {
                match comment {
                    Some(comment) => comments.push(comment),
                    None => comments.clear(),
                }
                continue;
            }
            let above = std::mem::take(&mut comments);
            let column = |s: &str| {
                raw[..s.as_ptr() as usize - raw.as_ptr() as usize]
                    .chars()
                    .count()
                    + 1
            };

            if trimmed.starts_with('[') {
                section = match trimmed.to_ascii_lowercase().as_str() {
                    "[interface]" => {
                        self.interface_line.get_or_insert(line);
                        Section::Interface
                    }
                    "[peer]" => {
                        self.peers.push(PeerDraft {
                            line,
                            hint: above.iter().rev().find_map(|c| name_from_comment(c)),
                            has_public_key: false,
                            public_key: None,
                            preshared_key: None,
                            allowed_ips: Vec::new(),
                            endpoint: None,
                            persistent_keepalive: None,
                        });
                        Section::Peer
                    }
                    _ => {
                        // Only the header: a header that lost its newline or its `]` runs
                        // on into a setting, maybe `PrivateKey = ...`.
                        let header = section_header(trimmed);
                        let message = if header.len() == trimmed.len() {
                            format!("unknown section {trimmed}")
                        } else {
                            format!(
                                "unknown section {header}... (the rest of the line is not shown: \
                                 it may hold a key)"
                            )
                        };
                        self.problems.push(
                            line,
                            column(trimmed),
                            message,
                            Some(
                                "wg-quick files have [Interface] and [Peer] sections only, each \
                                 header alone on its line",
                            ),
                        );
                        Section::Unknown
                    }
                };
                continue;
            }
            // A line that starts with a secret field's name is shown in no message unless it
            // is exactly `Field = value`: `PresharedKey: KEY` or `PresharedKey KEY=` would
            // otherwise split at the key's `=` padding and show the key.
            let (key, value) = match (trimmed.split_once('='), secret_field(trimmed)) {
                (Some((key, value)), Some(field)) if key.trim().eq_ignore_ascii_case(field) => {
                    (key, value)
                }
                (_, Some(field)) => {
                    self.problems.push(
                        line,
                        column(trimmed),
                        format!(
                            "this {field} line is not `{field} = KEY` (it is not shown: it may \
                             hold a key)"
                        ),
                        Some(&format!(
                            "write it as `{field} = ` followed by the key, as wg(8) reads it"
                        )),
                    );
                    continue;
                }
                (Some((key, value)), None) => (key, value),
                (None, None) => {
                    self.problems.push(
                        line,
                        column(trimmed),
                        format!("expected `Key = Value`, found {}", excerpt(trimmed)),
                        Some("comment the line out with # if it is not a setting"),
                    );
                    continue;
                }
            };
            let value = value.trim();
            let entry = Entry {
                line,
                column: if value.is_empty() {
                    column(trimmed)
                } else {
                    column(value)
                },
                key: key.trim(),
                value,
            };
            match section {
                Section::Nothing => self.problems.push(
                    line,
                    1,
                    format!("{} before the first section", entry.name()),
                    Some("put it under [Interface] or [Peer]"),
                ),
                Section::Interface => self.interface_entry(&entry),
                Section::Peer => self.peer_entry(&entry),
                Section::Unknown => {}
            }
        }
        self.finish(name)
    }

    /// Records `Err(message)` at the entry's value.
    fn check<T>(&mut self, entry: &Entry<'_>, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(message) => {
                self.problems.push(
                    entry.line,
                    entry.column,
                    format!("{}: {message}", entry.name()),
                    None,
                );
                None
            }
        }
    }

    fn key<T: std::str::FromStr<Err = crate::key::InvalidKey>>(
        &mut self,
        entry: &Entry<'_>,
    ) -> Option<T> {
        match entry.compact().parse() {
            Ok(key) => Some(key),
            Err(e) => {
                self.problems.push(
                    entry.line,
                    entry.column,
                    format!("{}: {e}", entry.name()),
                    Some(KEY_HELP),
                );
                None
            }
        }
    }

    fn interface_entry(&mut self, e: &Entry<'_>) {
        let line = e.line;
        match e.key.to_ascii_lowercase().as_str() {
            "privatekey" => {
                self.has_private_key = true;
                self.private_key = self.key(e);
            }
            "listenport" => {
                let v = e.compact();
                let port = if v == "0" {
                    Ok(None)
                } else {
                    parse_port(&v).map(Some)
                };
                self.listen_port = self.check(e, port).flatten();
            }
            "fwmark" => self.fwmark = self.check(e, parse_fwmark(&e.compact())).flatten(),
            "mtu" => {
                let v = e.compact();
                let mtu = v
                    .parse::<u32>()
                    .map_err(|_| format!("{v:?} is not an MTU (a number of bytes, e.g. 1420)"));
                self.mtu = self.check(e, mtu);
            }
            "address" => {
                for part in e.value.split(|c: char| c == ',' || c.is_whitespace()) {
                    if part.is_empty() {
                        continue;
                    }
                    if let Some(net) = self.check(e, parse_net(part)) {
                        self.addresses.push(net);
                    }
                }
            }
            "dns" => self.notes.push(format!(
                "not carried over: line {line}: {}: wg-quick points this machine's resolver at \
                 it while the interface is up, and vpn-ctl leaves the router's DNS alone (to \
                 hand DNS servers to clients, set client_dns)",
                e.quoted()
            )),
            "table" => match e.compact().to_ascii_lowercase().as_str() {
                "auto" => {}
                "off" => {
                    self.table_off = true;
                    self.notes.push(format!(
                        "line {line}: `Table = off` (wg-quick adds no routes) is written as \
                         route = false on every peer"
                    ));
                }
                _ => self.notes.push(format!(
                    "not carried over: line {line}: {}: wg-quick puts the routes in that table; \
                     vpn-ctl routes allowed IPs in the main table",
                    e.quoted()
                )),
            },
            "preup" | "postup" | "predown" | "postdown" => self.notes.push(format!(
                "not carried over: line {line}: {}: vpn-ctl runs no scripts; firewall rules and \
                 NAT belong in the router's firewall",
                e.quoted()
            )),
            "saveconfig" => {
                if e.compact() == "true" {
                    self.notes.push(format!(
                        "not carried over: line {line}: `SaveConfig = true`: vpn-ctl never \
                         writes the running state back; peers added with `wg set` are lost \
                         unless added to the configuration"
                    ));
                }
            }
            _ => self.unknown(e, "[Interface]"),
        }
    }

    fn peer_entry(&mut self, e: &Entry<'_>) {
        let i = self.peers.len() - 1;
        match e.key.to_ascii_lowercase().as_str() {
            "publickey" => {
                let key = self.key(e);
                self.peers[i].has_public_key = true;
                self.peers[i].public_key = key;
            }
            "presharedkey" => {
                let key = self.key(e);
                self.peers[i].preshared_key = key;
            }
            "allowedips" => {
                for part in e.compact().split(',') {
                    if part.is_empty() {
                        continue;
                    }
                    if let Some(net) = self.check(e, parse_net(part)) {
                        let net = allowed_ip(net, e.line, &mut self.notes);
                        self.peers[i].allowed_ips.push(net);
                    }
                }
            }
            "endpoint" => {
                let endpoint = e
                    .compact()
                    .parse::<Endpoint>()
                    .and_then(|ep| check_host(&ep.host).map(|()| ep));
                let endpoint = self.check(e, endpoint);
                self.peers[i].endpoint = endpoint;
            }
            "persistentkeepalive" => {
                let keepalive = self.check(e, parse_keepalive(&e.compact())).flatten();
                self.peers[i].persistent_keepalive = keepalive;
            }
            _ => self.unknown(e, "[Peer]"),
        }
    }

    fn unknown(&mut self, e: &Entry<'_>, section: &str) {
        self.notes.push(format!(
            "not carried over: line {}: {} in {section} (not a wg-quick setting)",
            e.line,
            e.quoted()
        ));
    }

    fn finish(mut self, name: &str) -> Result<Imported, Error> {
        let Some(interface_line) = self.interface_line else {
            self.problems.push(
                0,
                0,
                "no [Interface] section: this is not a wg-quick file".to_string(),
                Some("wg-quick files start with [Interface] and its PrivateKey"),
            );
            return Err(Error {
                diagnostics: self.problems.diagnostics,
            });
        };
        if !self.has_private_key {
            self.problems.push(
                interface_line,
                1,
                "[Interface] has no PrivateKey".to_string(),
                Some("add `PrivateKey = ` with the interface's key (`wg genkey` makes a new one)"),
            );
        }
        let mut peers = Vec::new();
        let mut hints = Vec::new();
        for draft in self.peers {
            if !draft.has_public_key {
                self.problems.push(
                    draft.line,
                    1,
                    "[Peer] has no PublicKey".to_string(),
                    Some("add `PublicKey = ` with the peer's public key, or remove the section"),
                );
            }
            let Some(public_key) = draft.public_key else {
                continue;
            };
            let route = !self.table_off;
            if route && draft.allowed_ips.iter().any(|net| net.prefix_len() == 0) {
                self.notes.push(format!(
                    "line {}: this peer's AllowedIPs include a default route: wg-quick sends \
                     all traffic through the tunnel with its own routing table and rules, \
                     which are not carried over; check the router's routes after `vpn-ctl up`",
                    draft.line
                ));
            }
            peers.push(ImportedPeer {
                name: String::new(),
                line: draft.line,
                public_key,
                preshared_key: draft.preshared_key,
                allowed_ips: draft.allowed_ips,
                endpoint: draft.endpoint,
                persistent_keepalive: draft.persistent_keepalive,
                route,
            });
            hints.push(draft.hint);
        }
        let (Some(private_key), true) = (self.private_key, self.problems.diagnostics.is_empty())
        else {
            return Err(Error {
                diagnostics: self.problems.diagnostics,
            });
        };
        let mut iface = ImportedInterface {
            name: name.to_string(),
            line: interface_line,
            private_key,
            listen_port: self.listen_port,
            addresses: self.addresses,
            mtu: self.mtu,
            fwmark: self.fwmark,
            peers,
        };
        settle_peer_names(&mut iface, &hints, &mut self.notes);
        check_duplicate_peers(&iface, &mut self.problems);
        let source = self.problems.file.to_path_buf();
        self.problems.finish(Imported {
            source,
            format: Format::WgQuick,
            interfaces: vec![iface],
            notes: self.notes,
        })
    }
}

/// The settings whose values are secret keys.
const SECRET_FIELDS: [&str; 2] = ["PrivateKey", "PresharedKey"];

/// The secret field `line` starts with, in any case and however spaced or punctuated
/// (`PrivateKey:`, `Private Key`, `private_key`), if any.
fn secret_field(line: &str) -> Option<&'static str> {
    let letters: String = line
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take("presharedkey".len())
        .collect::<String>()
        .to_ascii_lowercase();
    SECRET_FIELDS
        .into_iter()
        .find(|field| letters.starts_with(&field.to_ascii_lowercase()))
}

/// The header at the start of a line that starts with `[`: up to its `]`, or up to the
/// first space or `=` when that comes first (`[PrivateKey = ...]` is no header).
fn section_header(line: &str) -> &str {
    match line.find(|c: char| c == ']' || c == '=' || c.is_whitespace()) {
        Some(end) if line[end..].starts_with(']') => &line[..=end],
        Some(end) => &line[..end],
        None => line,
    }
}

/// A peer's name from a comment line above its `[Peer]`: `# phone`, `# Name = phone`, and
/// the forms generators write: `### begin phone ###` (PiVPN), `### Client phone`
/// (wireguard-install). `None` for a commented-out setting (`# Endpoint = ...`) or the
/// `### end phone ###` that closes the previous peer.
fn name_from_comment(comment: &str) -> Option<String> {
    let text = comment.trim_matches(|c: char| c == '#' || c.is_whitespace());
    let lower = text.to_ascii_lowercase();
    let named = ["name=", "name =", "name:", "name :"]
        .iter()
        .find_map(|prefix| {
            lower
                .starts_with(prefix)
                .then(|| text[prefix.len()..].trim())
        });
    let text = match named {
        Some(name) => name,
        None if lower.starts_with("end ") || text.contains('=') => return None,
        None => ["begin ", "client "]
            .iter()
            .find_map(|prefix| {
                lower
                    .starts_with(prefix)
                    .then(|| text[prefix.len()..].trim())
            })
            .unwrap_or(text),
    };
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    const PRIVATE: &str = "YAnz6N7eLtwMXw9JOuZUy0ohmrhCoQeZQXbaMFoc6mE=";
    const PHONE: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const LAPTOP: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";
    const PSK: &str = "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE=";

    fn path() -> &'static Path {
        Path::new("/etc/wireguard/wg0.conf")
    }

    /// Every field wg-quick knows, in the mixed case people write.
    fn full() -> String {
        format!(
            "[Interface]
PrivateKey = {PRIVATE}
ListenPort = 51820
Address = 10.8.0.1/24, fd08::1/64
address = 10.9.0.1
MTU = 1420
FwMark = 0xca6c
DNS = 192.168.1.1, lan
Table = 1234
PreUp = sysctl -w net.ipv4.ip_forward=1
PostUp = iptables -A FORWARD -i %i -j ACCEPT; iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
PreDown = logger wg0 going down
PostDown = iptables -D FORWARD -i %i -j ACCEPT
SaveConfig = true

# phone
[Peer]
PublicKey = {PHONE}
PresharedKey = {PSK}
AllowedIPs = 10.8.0.2/32, fd08::2/128
AllowedIPs = 10.8.1.0/24
PersistentKeepalive = 25

### begin laptop ###
[peer]
publickey = {LAPTOP}
allowedips = 0.0.0.0/0
endpoint = [2001:db8::7]:51821   # the office
persistentkeepalive = off
"
        )
    }

    #[test]
    fn every_field_of_a_wg_quick_file_is_read() {
        let imported = from_text(path(), "wg0", &full()).unwrap();
        assert_eq!(imported.format, Format::WgQuick);
        assert_eq!(imported.source, path());
        let iface = &imported.interfaces[0];
        assert_eq!(iface.name, "wg0");
        assert_eq!(iface.private_key, PRIVATE.parse().unwrap());
        assert_eq!(iface.listen_port, Some(51820));
        let addresses: Vec<_> = iface.addresses.iter().map(ToString::to_string).collect();
        assert_eq!(addresses, ["10.8.0.1/24", "fd08::1/64", "10.9.0.1/32"]);
        assert_eq!(iface.mtu, Some(1420));
        assert_eq!(iface.fwmark, Some(0xca6c));

        let [phone, laptop] = &iface.peers[..] else {
            panic!("two peers: {:?}", iface.peers)
        };
        assert_eq!(phone.name, "phone");
        assert_eq!(phone.line, 17);
        assert_eq!(phone.public_key, PHONE.parse().unwrap());
        assert_eq!(phone.preshared_key, Some(PSK.parse().unwrap()));
        let allowed: Vec<_> = phone.allowed_ips.iter().map(ToString::to_string).collect();
        assert_eq!(allowed, ["10.8.0.2/32", "fd08::2/128", "10.8.1.0/24"]);
        assert_eq!(phone.endpoint, None);
        assert_eq!(phone.persistent_keepalive, Some(25));
        assert!(phone.route);

        assert_eq!(laptop.name, "laptop");
        assert_eq!(laptop.public_key, LAPTOP.parse().unwrap());
        assert_eq!(laptop.preshared_key, None);
        assert_eq!(
            laptop.endpoint,
            Some("[2001:db8::7]:51821".parse().unwrap())
        );
        assert_eq!(laptop.persistent_keepalive, None);
    }

    #[test]
    fn what_has_no_vpn_ctl_equivalent_is_noted() {
        let imported = from_text(path(), "wg0", &full()).unwrap();
        let notes = imported.notes.join("\n");
        for expected in [
            "line 8: `DNS = 192.168.1.1, lan`",
            "line 9: `Table = 1234`",
            "line 10: `PreUp = sysctl -w net.ipv4.ip_forward=1`",
            "line 11: `PostUp = iptables -A FORWARD -i %i -j ACCEPT; iptables -t nat -A \
             POSTROUTING -o eth0 -j MASQUERADE`",
            "line 12: `PreDown = logger wg0 going down`",
            "line 13: `PostDown = iptables -D FORWARD -i %i -j ACCEPT`",
            "line 14: `SaveConfig = true`",
            "line 25: this peer's AllowedIPs include a default route",
        ] {
            assert!(notes.contains(expected), "missing {expected:?} in\n{notes}");
        }
        assert_eq!(imported.notes.len(), 8, "{notes}");
    }

    #[test]
    fn table_off_means_no_routes() {
        let text = full().replace("Table = 1234", "Table = off");
        let imported = from_text(path(), "wg0", &text).unwrap();
        assert!(imported.interfaces[0].peers.iter().all(|p| !p.route));
        assert!(imported.notes.iter().any(|n| n.contains("`Table = off`")));
        // No default-route warning: wg-quick added no routes either.
        assert!(!imported.notes.iter().any(|n| n.contains("default route")));
    }

    #[test]
    fn unknown_keys_are_noted_with_secrets_redacted() {
        let text = format!(
            "[Interface]\nPrivateKey = {PRIVATE}\nJc = 4\n[Peer]\nPublicKey = {PHONE}\n\
             WrongKey = {PSK}\n"
        );
        let imported = from_text(path(), "awg0", &text).unwrap();
        assert_eq!(
            imported.notes,
            [
                "not carried over: line 3: `Jc = 4` in [Interface] (not a wg-quick setting)",
                "not carried over: line 6: `WrongKey = (redacted)` in [Peer] (not a wg-quick \
                 setting)",
            ]
        );
        assert_eq!(imported.interfaces[0].peers[0].name, "peer1");
    }

    /// A key on a line that is not `Field = KEY` was split at its `=` padding, and the note
    /// about the "unknown setting" showed the whole key, on the terminal and in the header
    /// comment of the written vpn.toml.
    #[test]
    fn malformed_secret_lines_never_show_the_key() {
        let fresh = || Secret::generate_preshared().expose_base64();
        // Where the key goes: KEY.
        let forms = [
            ("[Peer]", "PresharedKey KEY"),
            ("[Peer]", "PresharedKey: KEY"),
            ("[Peer]", "presharedkey\tKEY"),
            ("[Peer]", "Preshared Key = KEY"),
            ("[Peer]", "PresharedKeyKEY"),
            ("[Interface]", "PrivateKey: KEY"),
            ("[Interface]", "PrivateKey KEY"),
            ("[Interface]", "private_key = KEY"),
            ("[Tunnel]", "PrivateKey KEY"),
            ("", "PrivateKey: KEY"),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (i, (section, form)) in forms.iter().enumerate() {
            let key = fresh();
            let line = form.replace("KEY", &key);
            let text = format!(
                "[Interface]\nPrivateKey = {PRIVATE}\n[Peer]\nPublicKey = {PHONE}\n\
                 {section}\n{line}\n"
            );
            let text = if section.is_empty() {
                format!("{line}\n{text}")
            } else {
                text
            };
            let file = dir.path().join(format!("wg{i}.conf"));
            fs::write(&file, &text).unwrap();
            let mut shown = String::new();
            match import_wg_quick(&file, None) {
                Ok(imported) => {
                    shown.push_str(&imported.notes.join("\n"));
                    let out = dir.path().join(format!("out{i}"));
                    match crate::import::write(&imported, &out, "vpn.toml") {
                        Ok(written) => {
                            shown.push_str(&fs::read_to_string(written.config).unwrap());
                        }
                        Err(e) => shown.push_str(&format!("{e:#}")),
                    }
                }
                Err(e) => shown.push_str(&format!("{e:#}")),
            }
            for part in [&key[..], &key[..20], &key[23..43], &key[24..]] {
                assert!(!shown.contains(part), "{line:?} shows {part:?}:\n{shown}");
            }
        }
        // Each is refused (wg-quick refuses them too), and the message names the field.
        let err = from_text(
            path(),
            "wg0",
            &format!("[Interface]\nPrivateKey = {PRIVATE}\n[Peer]\nPublicKey = {PHONE}\nPresharedKey: {PSK}\n"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/wireguard/wg0.conf:5:1: this PresharedKey line is not `PresharedKey = KEY` (it \
             is not shown: it may hold a key)\n  help: write it as `PresharedKey = ` followed \
             by the key, as wg(8) reads it"
        );
    }

    #[test]
    fn what_is_shown_of_a_line_never_holds_a_key_like_run() {
        assert_eq!(redact_keys("PostUp = echo hi"), "PostUp = echo hi");
        assert_eq!(
            redact_keys(&format!("Jc {PSK} and {PHONE}x")),
            "Jc (redacted) and (redacted)x"
        );
        // 39 base64 characters are not a key; hyphens and dots break runs.
        let short = "a".repeat(39);
        assert_eq!(redact_keys(&short), short);
        let script = "/usr/local/lib/wireguard-scripts/post-up.d/firewall.sh";
        assert_eq!(redact_keys(script), script);
        // A key in a malformed line, an unknown setting or a script is not shown.
        let bare = &PHONE[..43];
        let text = format!("[Interface]\nPrivateKey = {PRIVATE}\n{bare} garbage\n");
        let err = from_text(path(), "wg0", &text).unwrap_err().to_string();
        assert!(err.contains("expected `Key = Value`, found \""), "{err}");
        assert!(!err.contains(&PHONE[..12]), "{err}");
        let text =
            format!("[Interface]\nPrivateKey = {PRIVATE}\nPostUp = echo {PSK}\n{PHONE} garbage\n");
        let notes = from_text(path(), "wg0", &text).unwrap().notes.join("\n");
        assert!(notes.contains("`PostUp = (redacted)`"), "{notes}");
        assert!(notes.contains("`(redacted) = garbage`"), "{notes}");
        assert!(
            !notes.contains(&PSK[..20]) && !notes.contains(&PHONE[..20]),
            "{notes}"
        );
    }

    #[test]
    fn malformed_lines_are_reported_together_with_line_and_column() {
        let text = format!(
            "ListenPort = 1
[Interface]
PrivateKey = {PRIVATE}
ListenPort = 70000
Address = 10.8.0.1/33
MTU = big
garbage here
[Peer]
PublicKey = not-a-key
AllowedIPs = 10.8.0.2/32, 10.8.0.300
Endpoint = vpn.example.org
PersistentKeepalive = -1
[Peer]
AllowedIPs = 10.8.0.3/32
[Tunnel]
Foo = bar
"
        );
        let err = from_text(path(), "wg0", &text).unwrap_err();
        let at: Vec<_> = err.diagnostics.iter().map(|d| (d.line, d.column)).collect();
        assert_eq!(
            at,
            [
                (1, 1),
                (4, 14),
                (5, 11),
                (6, 7),
                (7, 1),
                (9, 13),
                (10, 14),
                (11, 12),
                (12, 23),
                (15, 1),
                (13, 1),
            ],
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("/etc/wireguard/wg0.conf:9:13: PublicKey: not a WireGuard key"),
            "{text}"
        );
        assert!(text.contains("[Peer] has no PublicKey"), "{text}");
        assert!(!text.contains("not-a-key"), "{text}");
    }

    #[test]
    fn a_file_without_a_private_key_or_interface_is_refused() {
        let err = from_text(path(), "wg0", "[Interface]\nListenPort = 51820\n").unwrap_err();
        assert_eq!(err.diagnostics[0].line, 1);
        assert!(err.to_string().contains("no PrivateKey"), "{err}");
        let err = from_text(path(), "wg0", "# nothing\n").unwrap_err();
        assert!(err.to_string().contains("no [Interface] section"), "{err}");
    }

    #[test]
    fn peer_names_come_from_the_comment_just_above() {
        for (comment, name) in [
            ("# phone", Some("phone")),
            ("#Name = Dad's phone", Some("Dad's phone")),
            ("### begin tablet ###", Some("tablet")),
            ("### Client work", Some("work")),
            ("### end tablet ###", None),
            ("# Endpoint = vpn.example.org:51820", None),
            ("#", None),
        ] {
            assert_eq!(name_from_comment(comment).as_deref(), name, "{comment:?}");
        }
        // A blank line between the comment and [Peer] breaks the link.
        let text = format!(
            "[Interface]\nPrivateKey = {PRIVATE}\n# phone\n\n[Peer]\nPublicKey = {PHONE}\n"
        );
        let imported = from_text(path(), "wg0", &text).unwrap();
        assert_eq!(imported.interfaces[0].peers[0].name, "peer1");
    }

    #[test]
    fn a_key_under_a_mistyped_name_is_not_noted() {
        // Found by tests/fuzz_parsers.rs (the UCI importer's twin): the note on the unknown
        // setting quoted its value, a private key.
        let text = format!("[Interface]\nPrivateKey = {PRIVATE}\nPrivatKee = {PSK}\n");
        let notes = from_text(path(), "wg0", &text).unwrap().notes.join("\n");
        assert!(notes.contains("`PrivatKee = (redacted)`"), "{notes}");
        let text = format!("[Interface]\nPrivateKey = {PRIVATE}\nSecret = {PSK}\n");
        let notes = from_text(path(), "wg0", &text).unwrap().notes.join("\n");
        assert!(notes.contains("`Secret = (redacted)`"), "{notes}");
        // Found by a longer run: `PresharedKey <key>` without its `=` is split at the key's
        // own `=` padding, and the note quoted the "name", key included. Such a line is now
        // refused, and not shown.
        let text = format!(
            "[Interface]\nPrivateKey = {PRIVATE}\n[Peer]\nPublicKey = {PHONE}\nPresharedKey \0 {PSK}\n"
        );
        let err = from_text(path(), "wg0", &text).unwrap_err().to_string();
        assert!(!err.contains(&PSK[..12]), "{err}");
        assert!(
            err.contains("this PresharedKey line is not `PresharedKey = KEY`"),
            "{err}"
        );
        // The same before the first section, and a key given where an address belongs.
        let text = format!("PrivateKey < {PRIVATE}\n[Interface]\nAddress = {PSK}\n");
        let err = from_text(path(), "wg0", &text).unwrap_err().to_string();
        assert!(
            !err.contains(&PRIVATE[..12]) && !err.contains(&PSK[..12]),
            "{err}"
        );
        assert!(
            err.contains("a value that holds a key (not shown) is not an IP"),
            "{err}"
        );
    }

    #[test]
    fn a_header_that_runs_on_into_a_setting_does_not_show_the_setting() {
        // Found by tests/fuzz_parsers.rs: `[Interfa` (or a header whose newline was lost)
        // followed by `PrivateKey = ...` put the private key into the error message.
        for (text, shown) in [
            (format!("[Interfa PrivateKey = {PRIVATE}\n"), "[Interfa..."),
            (format!("[PrivateKey = {PRIVATE}Peer]\n"), "[PrivateKey..."),
            (
                format!("[Interfa\0\0PrivateKey={PRIVATE}\n"),
                "[Interfa\0\0PrivateKey...",
            ),
            (
                format!("[Interface] PrivateKey = {PRIVATE}\n"),
                "[Interface]...",
            ),
        ] {
            let err = from_text(path(), "wg0", &text).unwrap_err().to_string();
            assert!(!err.contains(&PRIVATE[..12]), "{err}");
            assert!(err.contains(&format!("unknown section {shown}")), "{err}");
        }
        // Found the same way: a setting without `=` was quoted whole.
        let text = format!(
            "[Interface]\nPrivateKey {}\n",
            PRIVATE.trim_end_matches('=')
        );
        let err = from_text(path(), "wg0", &text).unwrap_err().to_string();
        assert!(!err.contains(&PRIVATE[..12]), "{err}");
        assert!(
            err.contains("this PrivateKey line is not `PrivateKey = KEY`"),
            "{err}"
        );
        // A header alone on its line is shown whole.
        let text = format!("[Interface]\nPrivateKey = {PRIVATE}\n[Peers]\n");
        let err = from_text(path(), "wg0", &text).unwrap_err().to_string();
        assert!(err.contains("unknown section [Peers]\n"), "{err}");
    }

    #[test]
    fn the_interface_is_named_after_the_file_unless_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("home.conf");
        std::fs::write(&file, format!("[Interface]\nPrivateKey = {PRIVATE}\n")).unwrap();
        assert_eq!(
            import_wg_quick(&file, None).unwrap().interfaces[0].name,
            "home"
        );
        assert_eq!(
            import_wg_quick(&file, Some("wg7")).unwrap().interfaces[0].name,
            "wg7"
        );
        let err = import_wg_quick(&file, Some("a-name-longer-than-15")).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "interface name \"a-name-longer-than-15\" is 21 bytes long; Linux allows at \
                 most 15 (from --name)\n  help: give the interface a name of 1 to 15 bytes"
            ),
            "{err}"
        );
        for bad in [".", "..", "-wg0", "wg/0"] {
            let err = import_wg_quick(&file, Some(bad)).unwrap_err();
            assert!(
                err.to_string().starts_with("interface name ")
                    && err.to_string().contains("(from --name)"),
                "{bad:?}: {err}"
            );
        }
        let dotted = dir.path().join("..conf");
        std::fs::write(&dotted, format!("[Interface]\nPrivateKey = {PRIVATE}\n")).unwrap();
        let err = import_wg_quick(&dotted, None).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "interface name \".\" is not allowed (from the file name {})",
                dotted.display()
            )),
            "{err}"
        );

        let other = dir.path().join("home.txt");
        std::fs::write(&other, "").unwrap();
        let err = import_wg_quick(&other, None).unwrap_err();
        assert!(err.to_string().contains("NAME.conf"), "{err}");
    }
}
