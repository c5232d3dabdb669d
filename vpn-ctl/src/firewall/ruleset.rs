//! The kernel's whole nftables ruleset, as nft(8) lists it: its JSON form (`nft -j list
//! ruleset`) for the checker, and its text form with handles (`nft -a list ruleset`) so
//! reports quote a rule the way the user wrote it.

use std::{collections::HashMap, process::Command};

use anyhow::Context as _;
use serde_json::Value;

/// A base or regular chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    pub family: String,
    pub table: String,
    pub name: String,
    /// For base chains: hook, type, priority, policy (and device for netdev chains).
    pub base: Option<Base>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Base {
    pub hook: String,
    pub kind: String,
    pub priority: i64,
    /// `accept` or `drop`.
    pub policy: String,
    pub device: Option<String>,
}

/// One rule: its statements as nft's JSON has them.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub handle: u64,
    pub comment: Option<String>,
    pub expr: Vec<Value>,
    /// The rule as `nft list ruleset` prints it (without the handle comment).
    pub text: String,
}

/// A named set's elements, for `@set` lookups.
#[derive(Debug, Clone, PartialEq)]
pub struct Set {
    pub family: String,
    pub table: String,
    pub name: String,
    pub elements: Vec<Value>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ruleset {
    pub chains: Vec<Chain>,
    pub rules: Vec<Rule>,
    pub sets: Vec<Set>,
    /// `family name` of each table, in listing order.
    pub tables: Vec<(String, String)>,
    /// The kernel has no nf_tables at all: nothing here was read, and a firewall, if any,
    /// is an iptables (legacy) one that vpn-ctl does not read.
    pub no_nf_tables: bool,
}

impl Ruleset {
    /// Lists the kernel's ruleset with `nft` (it talks netlink; its JSON is the stable,
    /// documented reading of rules that `libnftables-json(5)` describes).
    ///
    /// The kernel is asked first how many tables it has (netlink, no process): on a router
    /// without nf_tables or without any table, `nft` is neither needed nor run.
    pub fn read() -> anyhow::Result<Ruleset> {
        match super::table::count_tables()? {
            None => {
                return Ok(Ruleset {
                    no_nf_tables: true,
                    ..Ruleset::default()
                });
            }
            Some(0) => return Ok(Ruleset::default()),
            Some(_) => {}
        }
        let json = nft(&["-j", "list", "ruleset"])?;
        let text = nft(&["-a", "list", "ruleset"])?;
        Ruleset::parse(&json, &text)
    }

    pub fn parse(json: &str, text: &str) -> anyhow::Result<Ruleset> {
        let texts = rule_texts(text);
        let doc: Value = serde_json::from_str(json).context("nft's JSON output")?;
        let objects = doc["nftables"]
            .as_array()
            .context("nft's JSON output has no \"nftables\" array")?;
        let mut out = Ruleset::default();
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        for object in objects {
            if let Some(t) = object.get("table") {
                out.tables.push((s(&t["family"]), s(&t["name"])));
            } else if let Some(c) = object.get("chain") {
                let base = c.get("hook").map(|hook| Base {
                    hook: s(hook),
                    kind: s(&c["type"]),
                    priority: c["prio"].as_i64().unwrap_or_default(),
                    policy: c
                        .get("policy")
                        .map(s)
                        .unwrap_or_else(|| "accept".to_string()),
                    device: c.get("dev").map(s),
                });
                out.chains.push(Chain {
                    family: s(&c["family"]),
                    table: s(&c["table"]),
                    name: s(&c["name"]),
                    base,
                });
            } else if let Some(r) = object.get("rule") {
                let (family, table, chain) = (s(&r["family"]), s(&r["table"]), s(&r["chain"]));
                let handle = r["handle"].as_u64().unwrap_or_default();
                let text = texts
                    .get(&(family.clone(), table.clone(), chain.clone(), handle))
                    .cloned()
                    .unwrap_or_else(|| format!("rule handle {handle}"));
                out.rules.push(Rule {
                    family,
                    table,
                    chain,
                    handle,
                    comment: r.get("comment").map(s),
                    expr: r["expr"].as_array().cloned().unwrap_or_default(),
                    text,
                });
            } else if let Some(set) = object.get("set").or_else(|| object.get("map")) {
                out.sets.push(Set {
                    family: s(&set["family"]),
                    table: s(&set["table"]),
                    name: s(&set["name"]),
                    elements: set["elem"].as_array().cloned().unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }

    pub fn has_table(&self, family: &str, name: &str) -> bool {
        self.tables.iter().any(|(f, n)| f == family && n == name)
    }

    pub fn chain(&self, family: &str, table: &str, name: &str) -> Option<&Chain> {
        self.chains
            .iter()
            .find(|c| c.family == family && c.table == table && c.name == name)
    }

    pub fn rules_of<'a>(&'a self, chain: &'a Chain) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| {
            r.family == chain.family && r.table == chain.table && r.chain == chain.name
        })
    }

    pub fn set(&self, family: &str, table: &str, name: &str) -> Option<&Set> {
        self.sets
            .iter()
            .find(|s| s.family == family && s.table == table && s.name == name)
    }
}

fn nft(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("nft").args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "nft is not installed, so vpn-ctl cannot read the firewall: install nftables \
                 (apt install nftables / opkg install nftables-json), or set firewall = \"off\""
            )
        } else {
            anyhow::Error::new(e).context("running nft")
        }
    })?;
    if !output.status.success() {
        anyhow::bail!(
            "`nft {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).context("nft's output is not UTF-8")
}

/// `(family, table, chain, handle)` → the rule's text, from `nft -a list ruleset`.
fn rule_texts(text: &str) -> HashMap<(String, String, String, u64), String> {
    let mut out = HashMap::new();
    let (mut family, mut table, mut chain) = (String::new(), String::new(), String::new());
    for line in text.lines() {
        let line = line.trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["table", f, t, ..] => {
                family = f.to_string();
                table = t.to_string();
            }
            ["chain", c, ..] => chain = c.to_string(),
            _ => {
                if let Some((rule, handle)) = line.rsplit_once(" # handle ")
                    && let Ok(handle) = handle.trim().parse()
                    && !rule.starts_with("type ")
                {
                    out.insert(
                        (family.clone(), table.clone(), chain.clone(), handle),
                        without_counts(rule.trim()),
                    );
                }
            }
        }
    }
    out
}

/// `counter packets 12 bytes 960 accept` → `counter accept`: reports quote the rule, not
/// how often it ran.
fn without_counts(rule: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut words = rule.split(' ');
    while let Some(word) = words.next() {
        if matches!(word, "packets" | "bytes") && out.last() == Some(&"counter") {
            words.next();
            continue;
        }
        out.push(word);
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_left_out_of_quoted_rules() {
        assert_eq!(
            without_counts("iifname \"wan\" counter packets 12 bytes 960 reject"),
            "iifname \"wan\" counter reject"
        );
        assert_eq!(
            without_counts("meta l4proto esp accept"),
            "meta l4proto esp accept"
        );
    }

    #[test]
    fn rule_texts_are_keyed_by_table_chain_and_handle() {
        let text = "table inet fw4 { # handle 1\n\tchain input { # handle 1\n\t\ttype filter hook \
                    input priority filter; policy drop;\n\t\tiifname \"lo\" accept comment \"!fw4: \
                    lo\" # handle 10\n\t}\n}\ntable ip nat { # handle 2\n\tchain input { # handle \
                    1\n\t\tudp dport 53 accept # handle 10\n\t}\n}\n";
        let texts = rule_texts(text);
        assert_eq!(
            texts[&("inet".into(), "fw4".into(), "input".into(), 10)],
            "iifname \"lo\" accept comment \"!fw4: lo\""
        );
        assert_eq!(
            texts[&("ip".into(), "nat".into(), "input".into(), 10)],
            "udp dport 53 accept"
        );
        assert_eq!(texts.len(), 2);
    }
}
