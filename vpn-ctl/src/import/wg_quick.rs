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
mod tests;
