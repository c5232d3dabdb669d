//! OpenWrt's UCI files (`/etc/config/network`), and the WireGuard setup in them.
//!
//! The syntax is libuci's (`uci export network` prints it):
//!
//! ```text
//! config interface 'wg0'                 # a section: TYPE and optional NAME
//!         option proto 'wireguard'       # a single value
//!         list addresses '10.8.0.1/24'   # one more value of a list
//!
//! config wireguard_wg0                   # an anonymous section: a peer of wg0
//!         option public_key '...'
//! ```
//!
//! Values are unquoted, `'single'` (no escapes) or `"double"` quoted (`\` escapes the next
//! character), and quoted parts join (`'it'\''s'` is `it's`); quotes may span lines and `\`
//! at the end of a line continues it. `#` outside quotes starts a comment, `;` ends a
//! command. A later `option` replaces an earlier one; `option NAME ''` removes it.
//!
//! WireGuard lives in `config interface` sections with `option proto 'wireguard'`, read by
//! netifd's `wireguard.sh`, whose defaults this follows: peers are the `wireguard_IFACE`
//! sections, `endpoint_port` defaults to 51820, `route_allowed_ips` to off, and peers with
//! `option disabled '1'` or without a public key are left out.

use std::path::Path;

use super::{
    Error, Format, Imported, ImportedInterface, ImportedPeer, KEY_HELP, Problems,
    check_duplicate_peers, excerpt, holds_key, parse_fwmark, parse_keepalive, parse_net,
    parse_port, settle_peer_names,
};
use crate::{
    config::{Diagnostic, Endpoint},
    key::{PublicKey, Secret},
    link,
};

/// Reads OpenWrt's network configuration (normally `/etc/config/network`) and returns its
/// WireGuard interfaces and peers, with a note for every other section and option.
pub fn import_uci(path: &Path) -> anyhow::Result<Imported> {
    let text = super::read_source(path)?;
    Ok(from_text(path, &text)?)
}

/// [`import_uci`] on text read from `path`.
pub fn from_text(path: &Path, text: &str) -> Result<Imported, Error> {
    let sections = parse(path, text).map_err(|d| Error {
        diagnostics: vec![d],
    })?;
    extract(path, &sections)
}

/// A word of a UCI file, unquoted, with where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
}

/// One `config TYPE ['NAME']` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The TYPE: `interface`, `wireguard_wg0`, `device`...
    pub kind: Word,
    /// `None` for an anonymous section.
    pub name: Option<Word>,
    /// Options in the order they first appear.
    pub options: Vec<UciOption>,
}

impl Section {
    pub fn line(&self) -> usize {
        self.kind.line
    }

    pub fn option(&self, name: &str) -> Option<&UciOption> {
        self.options.iter().find(|o| o.name.text == name)
    }

    /// `config interface 'wg0'` or `config wireguard_wg0`, for notes.
    fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("config {} '{}'", self.kind.text, name.text),
            None => format!("config {}", self.kind.text),
        }
    }
}

/// An `option` (one value) or a `list` (its values in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UciOption {
    pub name: Word,
    pub is_list: bool,
    pub values: Vec<Word>,
}

/// Parses UCI text into its sections (a later section with the same name adds to the
/// earlier one, as libuci does). Stops at the first syntax error.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Section>, Diagnostic> {
    // A message quotes words of the file; a key pasted where a command was expected is not.
    let error = |at: (usize, usize), message: String, help: &str| Diagnostic {
        file: path.to_path_buf(),
        line: at.0,
        column: at.1,
        message: super::redact_keys(&message).into_owned(),
        help: Some(help.to_string()),
    };
    let mut sections: Vec<Section> = Vec::new();
    // The section that `option` and `list` add to.
    let mut current: Option<usize> = None;

    let commands = commands(text).map_err(|unclosed| {
        let help = if unclosed.quote == '\'' {
            "close the quote; a ' inside '...' is written '\\''"
        } else {
            "close the quote; a \" inside \"...\" is written \\\""
        };
        error(
            unclosed.at,
            format!("{} is never closed", unclosed.quote),
            help,
        )
    })?;
    for command in commands {
        let verb = &command[0];
        let args = &command[1..];
        let at = |w: &Word| (w.line, w.column);
        let max_args = |n: usize| -> Result<(), Diagnostic> {
            match args.get(n) {
                Some(extra) => Err(error(
                    at(extra),
                    format!("too many arguments to {}", verb.text),
                    "quote values that contain spaces: option description 'my phone'",
                )),
                None => Ok(()),
            }
        };
        match verb.text.as_str() {
            "package" | "p" => {
                if args.is_empty() {
                    return Err(error(
                        at(verb),
                        "package without a name".into(),
                        "write: package network",
                    ));
                }
                max_args(1)?;
            }
            "config" | "c" => {
                let Some(kind) = args.first() else {
                    return Err(error(
                        at(verb),
                        "config without a type".into(),
                        "write: config TYPE 'NAME', e.g. config interface 'wg0'",
                    ));
                };
                if kind.text.is_empty() || !kind.text.chars().all(is_type_char) {
                    return Err(error(
                        at(kind),
                        format!("invalid section type {}", excerpt(&kind.text)),
                        "a type has letters, digits, '_' and '-' only",
                    ));
                }
                let name = args.get(1).filter(|n| !n.text.is_empty());
                if let Some(name) = name
                    && !name.text.chars().all(is_name_char)
                {
                    return Err(error(
                        at(name),
                        format!("invalid section name {}", excerpt(&name.text)),
                        "a section name has letters, digits and '_' only",
                    ));
                }
                max_args(2)?;
                let existing = name.and_then(|name| {
                    sections
                        .iter()
                        .position(|s| s.name.as_ref().is_some_and(|n| n.text == name.text))
                });
                current = Some(match existing {
                    Some(i) if sections[i].kind.text != kind.text => {
                        return Err(error(
                            at(kind),
                            format!(
                                "section '{}' is a {} at line {} and a {} here",
                                name.map_or("", |n| &n.text),
                                sections[i].kind.text,
                                sections[i].line(),
                                kind.text
                            ),
                            "rename one of the sections",
                        ));
                    }
                    Some(i) => i,
                    None => {
                        sections.push(Section {
                            kind: kind.clone(),
                            name: name.cloned(),
                            options: Vec::new(),
                        });
                        sections.len() - 1
                    }
                });
            }
            "option" | "o" | "list" | "l" => {
                let is_list = verb.text.starts_with('l');
                let Some(section) = current else {
                    return Err(error(
                        at(verb),
                        format!("{} before the first section", verb.text),
                        "options belong to a section: put a `config TYPE 'NAME'` line above",
                    ));
                };
                let Some(name) = args.first() else {
                    return Err(error(
                        at(verb),
                        format!("{} without a name", verb.text),
                        "write: option NAME 'VALUE'",
                    ));
                };
                if name.text.is_empty() || !name.text.chars().all(is_name_char) {
                    return Err(error(
                        at(name),
                        format!("invalid option name {}", excerpt(&name.text)),
                        "an option name has letters, digits and '_' only",
                    ));
                }
                max_args(2)?;
                let value = args.get(1).cloned().unwrap_or_else(|| Word {
                    text: String::new(),
                    ..name.clone()
                });
                set(&mut sections[section].options, name, value, is_list);
            }
            other => {
                return Err(error(
                    at(verb),
                    format!("unknown command {}", excerpt(other)),
                    "a UCI line starts with config, option, list or package (or # for a comment)",
                ));
            }
        }
    }
    Ok(sections)
}

/// `option` and `list` as libuci applies them.
fn set(options: &mut Vec<UciOption>, name: &Word, value: Word, is_list: bool) {
    let existing = options.iter().position(|o| o.name.text == name.text);
    match (existing, is_list) {
        // `option NAME ''` removes the option.
        (Some(i), false) if value.text.is_empty() => {
            options.remove(i);
        }
        (None, false) if value.text.is_empty() => {}
        (Some(i), false) => {
            options[i] = UciOption {
                name: name.clone(),
                is_list: false,
                values: vec![value],
            };
        }
        // `list` after `option` turns the option into a list.
        (Some(i), true) => {
            options[i].is_list = true;
            options[i].values.push(value);
        }
        (None, is_list) => options.push(UciOption {
            name: name.clone(),
            is_list,
            values: vec![value],
        }),
    }
}

fn is_type_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Walks the text character by character, knowing each one's line and column.
struct Cursor {
    chars: Vec<char>,
    i: usize,
    line: usize,
    column: usize,
}

impl Cursor {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek2(&self) -> Option<char> {
        self.chars.get(self.i + 1).copied()
    }

    fn at(&self) -> (usize, usize) {
        (self.line, self.column)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    /// A `\` that ends the line (`\` newline, or `\` CR LF): the line continues.
    fn at_continuation(&self) -> bool {
        self.peek() == Some('\\')
            && match self.peek2() {
                Some('\n') => true,
                Some('\r') => self.chars.get(self.i + 2) == Some(&'\n'),
                _ => false,
            }
    }

    fn skip_continuation(&mut self) {
        while self.bump().is_some_and(|c| c != '\n') {}
    }
}

/// A quote that is never closed: where it opens, and which it is.
struct Unclosed {
    at: (usize, usize),
    quote: char,
}

/// Splits text into commands (lists of words): a command ends at a newline outside
/// quotes, or at `;`. Errors carry the line and column of an unterminated quote.
fn commands(text: &str) -> Result<Vec<Vec<Word>>, Unclosed> {
    let mut cur = Cursor {
        chars: text.chars().collect(),
        i: 0,
        line: 1,
        column: 1,
    };
    let mut commands = Vec::new();
    let mut words: Vec<Word> = Vec::new();
    let mut end = |words: &mut Vec<Word>| {
        if !words.is_empty() {
            commands.push(std::mem::take(words));
        }
    };
    loop {
        match cur.peek() {
            None => {
                end(&mut words);
                break;
            }
            Some('\n' | ';') => {
                cur.bump();
                end(&mut words);
            }
            Some('#') => {
                while cur.peek().is_some_and(|c| c != '\n') {
                    cur.bump();
                }
            }
            Some(_) if cur.at_continuation() => cur.skip_continuation(),
            Some(c) if c.is_whitespace() => {
                cur.bump();
            }
            Some(_) => words.push(word(&mut cur)?),
        }
    }
    Ok(commands)
}

/// One word, its quoted and unquoted parts joined.
fn word(cur: &mut Cursor) -> Result<Word, Unclosed> {
    let (line, column) = cur.at();
    let mut text = String::new();
    loop {
        match cur.peek() {
            None | Some(';' | '#') => break,
            Some(c) if c.is_whitespace() => break,
            Some(quote @ ('\'' | '"')) => {
                let opened = cur.at();
                cur.bump();
                loop {
                    match cur.bump() {
                        None => return Err(Unclosed { at: opened, quote }),
                        Some(c) if c == quote => break,
                        Some('\\') if quote == '"' => match cur.peek() {
                            Some('\n') => {
                                cur.bump();
                            }
                            Some(_) => text.extend(cur.bump()),
                            None => return Err(Unclosed { at: opened, quote }),
                        },
                        Some(c) => text.push(c),
                    }
                }
            }
            Some('\\') => {
                if cur.at_continuation() {
                    cur.skip_continuation();
                } else {
                    cur.bump();
                    text.extend(cur.bump());
                }
            }
            Some(c) => {
                cur.bump();
                text.push(c);
            }
        }
    }
    Ok(Word { text, line, column })
}

/// netifd's booleans (`config_get_bool`).
fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "on" | "true" | "yes" | "enabled" => Ok(true),
        "0" | "off" | "false" | "no" | "disabled" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (1 or 0)")),
    }
}

/// Options of a WireGuard interface section that are carried over.
const INTERFACE_OPTIONS: &[&str] = &[
    "proto",
    "private_key",
    "listen_port",
    "addresses",
    "mtu",
    "fwmark",
];

/// Options of a peer section that are carried over (or decide whether it is).
const PEER_OPTIONS: &[&str] = &[
    "description",
    "public_key",
    "preshared_key",
    "allowed_ips",
    "endpoint_host",
    "endpoint_port",
    "persistent_keepalive",
    "route_allowed_ips",
    "disabled",
];

/// Reads a section's options, recording problems and what is left over.
struct Reader<'s, 'p, 'f> {
    section: &'s Section,
    problems: &'p mut Problems<'f>,
}

impl<'s> Reader<'s, '_, '_> {
    /// The value of a single-valued option (the last one given).
    fn single(&mut self, name: &str) -> Option<&'s Word> {
        let option = self.section.option(name)?;
        if option.values.len() > 1 {
            let extra = &option.values[1];
            self.problems.push(
                extra.line,
                extra.column,
                format!("{name} takes one value, but has {}", option.values.len()),
                Some("keep one `option` line for it"),
            );
        }
        option.values.last()
    }

    /// Every value of an option or list, each split at whitespace (netifd reads
    /// `option addresses '10.8.0.1/24 fd08::1/64'` as two).
    fn many(&self, name: &str) -> Vec<(&'s Word, &'s str)> {
        self.section.option(name).map_or(Vec::new(), |o| {
            o.values
                .iter()
                .flat_map(|w| w.text.split_whitespace().map(move |part| (w, part)))
                .collect()
        })
    }

    /// Parses an option's value, recording a problem at the value when it does not parse.
    fn parsed<T>(&mut self, name: &str, parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        let word = self.single(name)?;
        match parse(&word.text) {
            Ok(v) => Some(v),
            Err(message) => {
                self.problems
                    .push(word.line, word.column, format!("{name}: {message}"), None);
                None
            }
        }
    }
}

/// Notes for the options of `section` not in `known`.
fn leftover_options(section: &Section, known: &[&str], notes: &mut Vec<String>) {
    for option in &section.options {
        if known.contains(&option.name.text.as_str()) {
            continue;
        }
        // A value that holds a WireGuard key may be a private key under a mistyped name, or
        // one swallowed by a quote left open.
        let is_key = |w: &Word| holds_key(&w.text);
        let values: Vec<String> =
            if is_secret(&option.name.text) || option.values.iter().any(is_key) {
                vec!["(redacted)".to_string()]
            } else {
                option
                    .values
                    .iter()
                    .map(|v| format!("'{}'", v.text))
                    .collect()
            };
        notes.push(format!(
            "not carried over: line {}: {} {} {} of {}",
            option.name.line,
            if option.is_list { "list" } else { "option" },
            option.name.text,
            values.join(" "),
            section.describe()
        ));
    }
}

/// Options whose values are not shown in notes.
fn is_secret(option: &str) -> bool {
    option.contains("key") || option.contains("psk") || option.contains("password")
}

/// The WireGuard interfaces and peers of parsed UCI sections.
fn extract(path: &Path, sections: &[Section]) -> Result<Imported, Error> {
    let mut problems = Problems::new(path);
    let mut notes = Vec::new();

    let is_wireguard = |s: &Section| {
        s.kind.text == "interface"
            && s.option("proto")
                .and_then(|o| o.values.last())
                .is_some_and(|v| v.text == "wireguard")
    };
    let iface_names: Vec<&str> = sections
        .iter()
        .filter(|s| is_wireguard(s))
        .filter_map(|s| s.name.as_ref().map(|n| n.text.as_str()))
        .collect();

    let mut interfaces = Vec::new();
    for section in sections {
        if is_wireguard(section) {
            match &section.name {
                Some(name) => {
                    if let Some(iface) =
                        interface(section, name, sections, &mut problems, &mut notes)
                    {
                        interfaces.push(iface);
                    }
                }
                None => notes.push(format!(
                    "not carried over: line {}: an anonymous `config interface` with proto \
                     wireguard (netifd needs a name to create the interface)",
                    section.line()
                )),
            }
        } else if let Some(owner) = section.kind.text.strip_prefix("wireguard_") {
            if !iface_names.contains(&owner) {
                notes.push(format!(
                    "not carried over: line {}: {} (a peer of '{owner}', which is not a \
                     WireGuard interface in this file)",
                    section.line(),
                    section.describe()
                ));
            }
        } else {
            let proto = section
                .option("proto")
                .and_then(|o| o.values.last())
                .map(|v| format!(", proto {}", v.text))
                .unwrap_or_default();
            notes.push(format!(
                "not carried over: line {}: {}{proto} (not WireGuard)",
                section.line(),
                section.describe()
            ));
        }
    }

    if interfaces.is_empty() && problems.diagnostics.is_empty() {
        problems.push(
            0,
            0,
            "no WireGuard interface here: no `config interface` has `option proto 'wireguard'`"
                .to_string(),
            Some("import the router's /etc/config/network; `uci show network` shows what it holds"),
        );
    }
    for iface in &interfaces {
        check_duplicate_peers(iface, &mut problems);
    }
    problems.finish(Imported {
        source: path.to_path_buf(),
        format: Format::Uci,
        interfaces,
        notes,
    })
}

/// One `config interface 'NAME'` with proto wireguard, and its `config wireguard_NAME`
/// peers.
fn interface(
    section: &Section,
    name: &Word,
    sections: &[Section],
    problems: &mut Problems<'_>,
    notes: &mut Vec<String>,
) -> Option<ImportedInterface> {
    let before = problems.diagnostics.len();
    if let Some(problem) = link::name_problem(&name.text) {
        problems.push(
            name.line,
            name.column,
            format!("interface name {problem}"),
            Some(&format!(
                "rename the section (and its wireguard_NAME peer sections): use {}",
                link::NAME_RULES
            )),
        );
    }
    let mut r = Reader { section, problems };

    // netifd's wireguard.sh generates a key for an empty private_key or 'generate'.
    let private_key = match r.single("private_key") {
        Some(w) if !w.text.is_empty() && w.text != "generate" => match w.text.parse::<Secret>() {
            Ok(key) => Some(key),
            Err(e) => {
                r.problems.push(
                    w.line,
                    w.column,
                    format!("private_key: {e}"),
                    Some(KEY_HELP),
                );
                None
            }
        },
        _ => {
            notes.push(format!(
                "line {}: interface '{}' has no private key yet (OpenWrt makes one when it \
                 first brings it up); a new one was generated, so its peers need the new \
                 public key",
                section.line(),
                name.text
            ));
            Some(Secret::generate_private())
        }
    };
    let listen_port = r.parsed("listen_port", |s| {
        // 0 asks the kernel for a random port, as leaving it out does.
        if s == "0" {
            Ok(None)
        } else {
            parse_port(s).map(Some)
        }
    });
    let mtu = r.parsed("mtu", |s| {
        s.parse::<u32>()
            .map_err(|_| format!("{s:?} is not an MTU (a number of bytes, e.g. 1420)"))
    });
    let fwmark = r.parsed("fwmark", parse_fwmark);
    let mut addresses = Vec::new();
    for (word, part) in r.many("addresses") {
        match parse_net(part) {
            Ok(net) => addresses.push(net),
            Err(e) => r
                .problems
                .push(word.line, word.column, format!("addresses: {e}"), None),
        }
    }
    leftover_options(section, INTERFACE_OPTIONS, notes);

    let kind = format!("wireguard_{}", name.text);
    let mut peers = Vec::new();
    let mut hints = Vec::new();
    for s in sections.iter().filter(|s| s.kind.text == kind) {
        if let Some((peer, hint)) = peer(s, &name.text, problems, notes) {
            peers.push(peer);
            hints.push(hint);
        }
    }

    if problems.diagnostics.len() > before {
        return None;
    }
    let mut iface = ImportedInterface {
        name: name.text.clone(),
        line: section.line(),
        private_key: private_key?,
        listen_port: listen_port.flatten(),
        addresses,
        mtu,
        fwmark: fwmark.flatten(),
        peers,
    };
    settle_peer_names(&mut iface, &hints, notes);
    Some(iface)
}

/// One `config wireguard_IFACE` section, and the name it suggests (`description`, else
/// the section's name). `None` when it is left out or has problems.
fn peer(
    section: &Section,
    iface: &str,
    problems: &mut Problems<'_>,
    notes: &mut Vec<String>,
) -> Option<(ImportedPeer, Option<String>)> {
    let before = problems.diagnostics.len();
    let mut r = Reader { section, problems };
    let description = r.single("description").map(|w| w.text.clone());
    let hint = description.or_else(|| section.name.as_ref().map(|n| n.text.clone()));
    let called = hint
        .as_ref()
        .map_or_else(String::new, |h| format!(" {h:?}"));

    if r.parsed("disabled", parse_bool) == Some(true) {
        // Not shown when it is not a public key but holds a key: a quote left open may have
        // swallowed the private key.
        let public_key = section
            .option("public_key")
            .and_then(|o| o.values.last())
            .map_or("none".to_string(), |w| {
                if w.text.parse::<PublicKey>().is_err() && holds_key(&w.text) {
                    "(not shown: it holds a key)".to_string()
                } else {
                    w.text.clone()
                }
            });
        let allowed: Vec<&str> = r.many("allowed_ips").into_iter().map(|(_, p)| p).collect();
        notes.push(format!(
            "not carried over: line {}: peer{called} of {iface} is disabled (option disabled \
             '1'); public key {public_key}, allowed IPs {}",
            section.line(),
            if allowed.is_empty() {
                "none".to_string()
            } else {
                allowed.join(", ")
            }
        ));
        return None;
    }
    let Some(public_key) = r.single("public_key") else {
        notes.push(format!(
            "not carried over: line {}: peer{called} of {iface} has no public_key, so OpenWrt \
             ignores it",
            section.line()
        ));
        return None;
    };
    let public_key = match public_key.text.parse::<PublicKey>() {
        Ok(key) => Some(key),
        Err(e) => {
            r.problems.push(
                public_key.line,
                public_key.column,
                format!("public_key: {e}"),
                Some(KEY_HELP),
            );
            None
        }
    };
    let preshared_key = r
        .single("preshared_key")
        .and_then(|w| match w.text.parse::<Secret>() {
            Ok(key) => Some(key),
            Err(e) => {
                r.problems.push(
                    w.line,
                    w.column,
                    format!("preshared_key: {e}"),
                    Some(KEY_HELP),
                );
                None
            }
        });
    let mut allowed_ips = Vec::new();
    for (word, part) in r.many("allowed_ips") {
        match parse_net(part) {
            Ok(net) => allowed_ips.push(super::allowed_ip(net, word.line, notes)),
            Err(e) => r
                .problems
                .push(word.line, word.column, format!("allowed_ips: {e}"), None),
        }
    }
    let port = r.parsed("endpoint_port", parse_port);
    let endpoint = match r.single("endpoint_host") {
        Some(host) => {
            // wireguard.sh writes an IPv6 host in brackets; Endpoint keeps it bare.
            let bare = host.text.trim_start_matches('[').trim_end_matches(']');
            match super::check_host(bare) {
                Ok(()) => Some(Endpoint {
                    host: bare.to_string(),
                    port: port.unwrap_or(51820),
                }),
                Err(e) => {
                    r.problems.push(
                        host.line,
                        host.column,
                        format!("endpoint_host: {e}"),
                        Some(
                            "write the peer's address or DNS name, or remove the option: a \
                             peer that connects to this router (a phone) needs no endpoint",
                        ),
                    );
                    None
                }
            }
        }
        None => {
            if let Some(w) = section
                .option("endpoint_port")
                .and_then(|o| o.values.last())
            {
                notes.push(format!(
                    "not carried over: line {}: endpoint_port '{}' without an endpoint_host \
                     (OpenWrt ignores it too)",
                    w.line, w.text
                ));
            }
            None
        }
    };
    let persistent_keepalive = r.parsed("persistent_keepalive", parse_keepalive).flatten();
    let route = r.parsed("route_allowed_ips", parse_bool).unwrap_or(false);
    leftover_options(section, PEER_OPTIONS, notes);

    if problems.diagnostics.len() > before {
        return None;
    }
    let peer = ImportedPeer {
        name: String::new(),
        line: section.line(),
        public_key: public_key?,
        preshared_key,
        allowed_ips,
        endpoint,
        persistent_keepalive,
        route,
    };
    Some((peer, hint))
}

#[cfg(test)]
mod tests;
