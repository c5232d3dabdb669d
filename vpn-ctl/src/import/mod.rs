//! `vpn-ctl import`: bring an existing WireGuard setup under vpn-ctl.
//!
//! Two sources, one result:
//!
//! - [`import_uci`] reads OpenWrt's `/etc/config/network` (what LuCI writes, and what
//!   `uci show network` shows), see [`uci`];
//! - [`import_wg_quick`] reads a wg-quick file such as `/etc/wireguard/wg0.conf`, see
//!   [`wg_quick`].
//!
//! Both return an [`Imported`]: the WireGuard interfaces and peers with validated keys and
//! addresses, plus notes on everything that has no vpn-ctl equivalent and was not carried
//! over (other interfaces, PostUp scripts, disabled peers...). Nothing is dropped without a
//! note. [`write`] then writes the vpn-ctl configuration and its key files into a directory:
//!
//! ```text
//! vpn-ctl import uci /etc/config/network --out /etc/vpn-ctl
//!   /etc/vpn-ctl/vpn.toml          the configuration, with where it came from in a comment
//!   /etc/vpn-ctl/wg0.key           the interface's private key (mode 0600)
//!   /etc/vpn-ctl/wg0-phone.psk     a peer's preshared key (mode 0600)
//! ```
//!
//! Existing files are never overwritten.

pub mod uci;
pub mod wg_quick;

use std::{
    collections::HashSet,
    fmt, fs,
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use ipnet::IpNet;

pub use uci::import_uci;
pub use wg_quick::import_wg_quick;

use crate::{
    config::{Diagnostic, Endpoint},
    key::{PublicKey, Secret},
};

/// The shortest run of base64 characters [`redact_keys`] hides; a key is 43 of them and `=`.
const KEY_LIKE_RUN: usize = 40;

/// `text` with every run of [`KEY_LIKE_RUN`] or more base64 characters (and the `=` padding
/// after it) replaced by "(redacted)": what a message shows of a line never shows a key, even
/// from a line no rule expected.
pub(crate) fn redact_keys(text: &str) -> std::borrow::Cow<'_, str> {
    let base64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    let mut out = String::new();
    let mut shown = 0;
    let mut rest = text.char_indices().peekable();
    while let Some((start, c)) = rest.next() {
        if !base64(c) {
            continue;
        }
        let mut end = start + 1;
        while let Some(&(i, c)) = rest.peek().filter(|(_, c)| base64(*c)) {
            end = i + c.len_utf8();
            rest.next();
        }
        if end - start >= KEY_LIKE_RUN {
            while let Some(&(i, _)) = rest.peek().filter(|(_, c)| *c == '=') {
                end = i + 1;
                rest.next();
            }
            out.push_str(&text[shown..start]);
            out.push_str("(redacted)");
            shown = end;
        }
    }
    if shown == 0 {
        return std::borrow::Cow::Borrowed(text);
    }
    out.push_str(&text[shown..]);
    std::borrow::Cow::Owned(out)
}

/// What an importer found: WireGuard interfaces in vpn-ctl's terms, and notes on the rest.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The file it was read from.
    pub source: PathBuf,
    pub format: Format,
    /// In file order.
    pub interfaces: Vec<ImportedInterface>,
    /// Everything not carried over, and every liberty taken (a generated key, a renamed
    /// peer), one sentence each, with the source line.
    pub notes: Vec<String>,
}

/// The kind of file an [`Imported`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenWrt's `/etc/config/network`.
    Uci,
    /// A wg-quick `.conf` file.
    WgQuick,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Uci => "OpenWrt UCI",
            Format::WgQuick => "wg-quick",
        })
    }
}

/// One WireGuard interface, as `[wireguard.NAME]` will describe it.
#[derive(Debug, Clone)]
pub struct ImportedInterface {
    pub name: String,
    /// The source line where the interface is defined.
    pub line: usize,
    pub private_key: Secret,
    pub listen_port: Option<u16>,
    pub addresses: Vec<IpNet>,
    pub mtu: Option<u32>,
    pub fwmark: Option<u32>,
    pub peers: Vec<ImportedPeer>,
}

/// One peer, as `[[wireguard.NAME.peers]]` will describe it.
#[derive(Debug, Clone)]
pub struct ImportedPeer {
    /// Unique on its interface, usable in a file name.
    pub name: String,
    /// The source line where the peer is defined.
    pub line: usize,
    pub public_key: PublicKey,
    pub preshared_key: Option<Secret>,
    pub allowed_ips: Vec<IpNet>,
    pub endpoint: Option<Endpoint>,
    pub persistent_keepalive: Option<u16>,
    pub route: bool,
}

/// Why a file could not be imported, or the import could not be written: every problem
/// found, each at its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::config::write_diagnostics(f, &self.diagnostics, "nothing was written")
    }
}

impl std::error::Error for Error {}

/// What [`write`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The vpn-ctl configuration.
    pub config: PathBuf,
    /// Private and preshared key files, mode 0600.
    pub key_files: Vec<PathBuf>,
    /// The importer's notes (also in the configuration's header comment).
    pub notes: Vec<String>,
    /// What vpn-ctl's configuration check ([`crate::config::load`]) says about the written
    /// configuration, `None` when it accepts it. An import translates what the source says;
    /// problems the source already had (overlapping allowed IPs, an MTU too small for
    /// IPv6...) show up here, to be fixed in the written file.
    pub problems: Option<crate::config::Error>,
}

/// Writes `imported` into `out_dir` (created if missing): the configuration as
/// `config_name` and one key file per private or preshared key (`IFACE.key`,
/// `IFACE-PEER.psk`, mode 0600, referred to relative to the configuration).
///
/// Refuses, before writing anything, when one of those files exists already; if writing
/// fails halfway, the files written so far are removed.
pub fn write(imported: &Imported, out_dir: &Path, config_name: &str) -> anyhow::Result<Written> {
    if config_name.is_empty() || config_name.contains('/') || config_name.starts_with('.') {
        anyhow::bail!(
            "{config_name:?} is not a file name: give the configuration's name alone, e.g. \
             vpn.toml, and the directory separately"
        );
    }
    // Interface names name the key files (`NAME.key`): `.` would write `..key`.
    for iface in &imported.interfaces {
        if let Some(problem) = crate::link::name_problem(&iface.name) {
            anyhow::bail!(
                "interface name {problem}: nothing was written; give the interface a name of {}",
                crate::link::NAME_RULES
            );
        }
    }
    let plan = Plan::new(imported);
    let config = out_dir.join(config_name);

    let existing: Vec<Diagnostic> = std::iter::once(config.clone())
        .chain(plan.keys.iter().map(|(name, _)| out_dir.join(name)))
        .filter(|p| p.symlink_metadata().is_ok())
        .map(|p| Diagnostic {
            file: p,
            line: 0,
            column: 0,
            message: "exists already; vpn-ctl import does not overwrite files".to_string(),
            help: Some(
                "choose another output directory, or remove the file if it is not needed"
                    .to_string(),
            ),
        })
        .collect();
    if !existing.is_empty() {
        return Err(Error {
            diagnostics: existing,
        }
        .into());
    }

    fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create the directory {}", out_dir.display()))?;

    let toml = render(imported, &plan);
    let mut created = Created(Vec::new());
    for (name, secret) in &plan.keys {
        let path = out_dir.join(name);
        let contents = format!("{}\n", secret.expose_base64());
        create_file(&path, 0o600, contents.as_bytes(), &mut created)?;
    }
    create_file(&config, 0o644, toml.as_bytes(), &mut created)?;

    let key_files = created.0.drain(..).filter(|p| *p != config).collect();
    let problems = crate::config::parse(&config, &toml).err();
    Ok(Written {
        config,
        key_files,
        notes: imported
            .notes
            .iter()
            .map(|n| redact_keys(n).into_owned())
            .collect(),
        problems,
    })
}

/// Files written by one [`write`], removed again unless it succeeds.
struct Created(Vec<PathBuf>);

impl Drop for Created {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

/// Creates `path` with `mode` (never replacing a file) and writes `contents` to disk.
fn create_file(
    path: &Path,
    mode: u32,
    contents: &[u8],
    created: &mut Created,
) -> anyhow::Result<()> {
    crate::files::create_new(path, mode, contents)
        .with_context(|| format!("cannot create {}", path.display()))?;
    created.0.push(path.to_path_buf());
    Ok(())
}

/// The key files to write, named before anything is written.
struct Plan<'a> {
    /// File name (relative to the output directory) and key.
    keys: Vec<(String, &'a Secret)>,
    /// Per interface: its private key file name, and per peer its preshared key file name.
    names: Vec<(String, Vec<Option<String>>)>,
}

impl<'a> Plan<'a> {
    fn new(imported: &'a Imported) -> Plan<'a> {
        let mut taken = HashSet::new();
        let mut unique = |stem: String, ext: &str| {
            let mut name = format!("{stem}.{ext}");
            let mut n = 2;
            while !taken.insert(name.clone()) {
                name = format!("{stem}-{n}.{ext}");
                n += 1;
            }
            name
        };
        let mut keys = Vec::new();
        let mut names = Vec::new();
        for iface in &imported.interfaces {
            let key_file = unique(iface.name.clone(), "key");
            keys.push((key_file.clone(), &iface.private_key));
            let psks = iface
                .peers
                .iter()
                .map(|peer| {
                    peer.preshared_key.as_ref().map(|psk| {
                        let name = unique(format!("{}-{}", iface.name, peer.name), "psk");
                        keys.push((name.clone(), psk));
                        name
                    })
                })
                .collect();
            names.push((key_file, psks));
        }
        Plan { keys, names }
    }
}

/// The configuration text: `[wireguard.NAME]` tables and their `[[...peers]]`, under a
/// header comment that says where they came from and what was not carried over.
fn render(imported: &Imported, plan: &Plan<'_>) -> String {
    use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

    let strings = |items: &mut dyn Iterator<Item = String>| -> Item {
        Item::Value(toml_edit::Value::Array(items.collect::<Array>()))
    };

    let mut doc = DocumentMut::new();
    doc.decor_mut().set_prefix(header(imported));
    let mut wireguard = Table::new();
    wireguard.set_implicit(true);
    for (iface, (key_file, psk_files)) in imported.interfaces.iter().zip(&plan.names) {
        let mut t = Table::new();
        t.insert("private_key_file", value(key_file.as_str()));
        if let Some(port) = iface.listen_port {
            t.insert("listen_port", value(i64::from(port)));
        }
        t.insert(
            "addresses",
            strings(&mut iface.addresses.iter().map(IpNet::to_string)),
        );
        if let Some(mtu) = iface.mtu {
            t.insert("mtu", value(i64::from(mtu)));
        }
        if let Some(fwmark) = iface.fwmark {
            // Hexadecimal, as `wg show` prints it.
            let hex: toml_edit::Value = format!("{fwmark:#x}").parse().expect("a TOML integer");
            t.insert("fwmark", Item::Value(hex));
        }
        let mut peers = ArrayOfTables::new();
        for (peer, psk_file) in iface.peers.iter().zip(psk_files) {
            let mut p = Table::new();
            p.insert("name", value(peer.name.as_str()));
            p.insert("public_key", value(peer.public_key.to_base64()));
            if let Some(psk_file) = psk_file {
                p.insert("preshared_key_file", value(psk_file.as_str()));
            }
            p.insert(
                "allowed_ips",
                strings(&mut peer.allowed_ips.iter().map(IpNet::to_string)),
            );
            if let Some(endpoint) = &peer.endpoint {
                p.insert("endpoint", value(endpoint.to_string()));
            }
            if let Some(keepalive) = peer.persistent_keepalive {
                p.insert("persistent_keepalive", value(i64::from(keepalive)));
            }
            p.insert("route", value(peer.route));
            peers.push(p);
        }
        if !peers.is_empty() {
            t.insert("peers", Item::ArrayOfTables(peers));
        }
        wireguard.insert(&iface.name, Item::Table(t));
    }
    doc.insert("wireguard", Item::Table(wireguard));
    doc.to_string()
}

/// Where the header's notes wrap.
const HEADER_WIDTH: usize = 92;

fn header(imported: &Imported) -> String {
    let mut h = format!(
        "# vpn-ctl configuration, imported from {} ({} format) by `vpn-ctl import`.\n\
         # The keys are in the files named by private_key_file and preshared_key_file,\n\
         # next to this file (mode 0600).\n",
        imported.source.display(),
        imported.format,
    );
    if !imported.notes.is_empty() {
        h.push_str("#\n# Import notes:\n");
        for note in &imported.notes {
            // A note may quote a multi-line value; every line stays a comment.
            let note: String = redact_keys(note)
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let mut line = String::from("# -");
            for word in note.split(' ').filter(|w| !w.is_empty()) {
                if line.len() + 1 + word.len() > HEADER_WIDTH && line.len() > 4 {
                    h.push_str(&line);
                    h.push('\n');
                    line = String::from("#  ");
                }
                line.push(' ');
                line.push_str(word);
            }
            h.push_str(&line);
            h.push('\n');
        }
    }
    h.push('\n');
    h
}

/// Collects diagnostics for one source file.
struct Problems<'a> {
    file: &'a Path,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Problems<'a> {
    fn new(file: &'a Path) -> Problems<'a> {
        Problems {
            file,
            diagnostics: Vec::new(),
        }
    }

    fn push(&mut self, line: usize, column: usize, message: String, help: Option<&str>) {
        self.diagnostics.push(Diagnostic {
            file: self.file.to_path_buf(),
            line,
            column,
            message,
            help: help.map(str::to_string),
        });
    }

    /// `Ok(value)` when no problem was found.
    fn finish<T>(self, value: T) -> Result<T, Error> {
        if self.diagnostics.is_empty() {
            Ok(value)
        } else {
            Err(Error {
                diagnostics: self.diagnostics,
            })
        }
    }
}

/// The largest source file an import reads; a router's network configuration is far smaller.
const READ_MAX: u64 = 16 << 20;

/// The text of the source file `path`: a regular file (a FIFO is refused, not waited on) of
/// UTF-8 text.
fn read_source(path: &Path) -> anyhow::Result<String> {
    let bytes = crate::files::read_regular(path, READ_MAX)
        .with_context(|| format!("cannot read {}", path.display()))?;
    crate::config::decode_text(path, bytes).map_err(|d| {
        Error {
            diagnostics: vec![d],
        }
        .into()
    })
}

/// What to write about a key that does not parse.
const KEY_HELP: &str = "copy the key again from its source; `wg show` prints the public keys \
                        in use, and `wg pubkey` computes one from a private key";

/// An address or network as `ip` and `wg` accept it: `10.8.0.1/24`, or a bare address,
/// which stands for itself (`/32`, `/128`).
fn parse_net(s: &str) -> Result<IpNet, String> {
    let invalid = || {
        format!(
            "{} is not an IP address or network (e.g. 10.8.0.2/32 or fd08::2/128)",
            shown(s)
        )
    };
    // std's address parser, as strict as inet_pton(3): no `10.0.0.03`.
    let (addr, prefix) = match s.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
    match prefix {
        None => Ok(IpNet::from(addr)),
        Some(prefix) => prefix
            .parse::<u8>()
            .ok()
            .and_then(|len| IpNet::new(addr, len).ok())
            .ok_or_else(invalid),
    }
}

/// A firewall mark as wg(8) accepts it: decimal, `0x` hexadecimal, or `off` (also 0).
fn parse_fwmark(s: &str) -> Result<Option<u32>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let mark = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|_| {
        format!(
            "{} is not a firewall mark (a number such as 51820 or 0xca6c, or off)",
            shown(s)
        )
    })?;
    Ok((mark != 0).then_some(mark))
}

/// A persistent keepalive as wg(8) accepts it: seconds, or `off` (also 0).
fn parse_keepalive(s: &str) -> Result<Option<u16>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let secs: u16 = s.parse().map_err(|_| {
        format!(
            "{} is not a keepalive interval (seconds, 1-65535, or off)",
            shown(s)
        )
    })?;
    Ok((secs != 0).then_some(secs))
}

/// A UDP port other than 0.
fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{} is not a UDP port (1-65535)", shown(s))),
        Ok(port) => Ok(port),
    }
}

/// Checks an endpoint's host: an IP address or a DNS name, by the configuration's one rule
/// ([`crate::config::hostname::hostname_problem`]).
fn check_host(host: &str) -> Result<(), String> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    match crate::config::hostname::hostname_problem(host) {
        None => Ok(()),
        Some(problem) => Err(format!(
            "{} is not an IP address or a DNS name: {problem}",
            shown(host)
        )),
    }
}

/// Allowed IPs as wg(8) keeps them: host bits cleared (`10.8.0.5/24` is `10.8.0.0/24`).
fn allowed_ip(net: IpNet, line: usize, notes: &mut Vec<String>) -> IpNet {
    let trunc = net.trunc();
    if trunc != net {
        notes.push(format!(
            "line {line}: allowed IP {net} has host bits set; written as {trunc}, which is what \
             WireGuard uses"
        ));
    }
    trunc
}

/// A peer's name from what the source calls it, if anything: letters, digits, `.`, `_`
/// and `-`, so it can be part of a file name; other characters become `-`.
fn sanitize_name(raw: &str) -> String {
    let mut name = String::new();
    for c in raw.trim().chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    name.trim_matches(|c| c == '-' || c == '.')
        .chars()
        .take(64)
        .collect()
}

/// Gives every peer of `iface` a unique, file-name-safe name: the source's name (in
/// `hints`, one per peer) when it has one, else `peerN` for the Nth peer.
fn settle_peer_names(
    iface: &mut ImportedInterface,
    hints: &[Option<String>],
    notes: &mut Vec<String>,
) {
    let mut taken = HashSet::new();
    for (i, (peer, hint)) in iface.peers.iter_mut().zip(hints).enumerate() {
        let base = match hint {
            Some(raw) => {
                let clean = sanitize_name(raw);
                if clean.is_empty() {
                    notes.push(format!(
                        "line {}: peer name {raw:?} has no usable characters; named peer{}",
                        peer.line,
                        i + 1
                    ));
                } else if clean != *raw {
                    notes.push(format!(
                        "line {}: peer {raw:?} is named {clean:?} (letters, digits, '.', '_' and \
                         '-' only, as it is part of a file name)",
                        peer.line
                    ));
                }
                clean
            }
            None => String::new(),
        };
        let base = if base.is_empty() {
            format!("peer{}", i + 1)
        } else {
            base
        };
        let mut name = base.clone();
        let mut n = 2;
        while !taken.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        if name != base {
            notes.push(format!(
                "line {}: a second peer is called {base:?}; this one is named {name:?}",
                peer.line
            ));
        }
        peer.name = name;
    }
}

/// Text of the source for an error message, quoted: whole when it is one short word, else
/// its first few characters. What a parser took for one word or line may have run on (an
/// unclosed quote, a lost newline) over a key, which must not be shown.
fn excerpt(text: &str) -> String {
    const WHOLE_UP_TO: usize = 20;
    const START: usize = 8;
    if text.chars().count() <= WHOLE_UP_TO && !text.contains(char::is_whitespace) {
        format!("{text:?}")
    } else {
        let start: String = text
            .chars()
            .take_while(|c| !c.is_whitespace())
            .take(START)
            .collect();
        format!("{start:?}...")
    }
}

/// Whether `text` holds a WireGuard key (44 base64 characters ending in `=`) anywhere: a
/// private key in a value that ran on over several lines, or under a mistyped name.
fn holds_key(text: &str) -> bool {
    const KEY_LEN: usize = 44;
    text.char_indices().any(|(end, c)| {
        c == '='
            && end + 1 >= KEY_LEN
            && text
                .get(end + 1 - KEY_LEN..=end)
                .is_some_and(|w| w.parse::<Secret>().is_ok())
    })
}

/// A value for an error message: quoted, unless it holds a key (a quote left open or a
/// lost newline can put a private key into any value).
fn shown(value: &str) -> String {
    if holds_key(value) {
        "a value that holds a key (not shown)".to_string()
    } else {
        format!("{value:?}")
    }
}

/// Two peers of one interface with the same public key are one peer to WireGuard.
fn check_duplicate_peers(iface: &ImportedInterface, problems: &mut Problems<'_>) {
    for (i, peer) in iface.peers.iter().enumerate() {
        if let Some(first) = iface.peers[..i]
            .iter()
            .find(|p| p.public_key == peer.public_key)
        {
            problems.push(
                peer.line,
                1,
                format!(
                    "this peer of {} has the same public key as the peer at line {}",
                    iface.name, first.line
                ),
                Some("remove one of them; WireGuard would merge them into one peer"),
            );
        }
    }
}

#[cfg(test)]
mod tests;
