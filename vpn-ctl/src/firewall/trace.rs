//! Follows a probe packet through every nftables base chain on a hook, the way the kernel
//! would: by priority, across all tables (an accept in one table does not override a drop
//! in another), into jumped-to chains and back, down to a rule or a chain policy.
//!
//! What the probe cannot answer (a `fib` lookup, a mark, a rate limit, a protocol it does
//! not name) is "maybe": the walk carries on as if the rule did not match and remembers the
//! rule, so a report can say "dropped by X, unless Y accepts it".

use std::{fmt, net::IpAddr};

use ipnet::IpNet;
use serde_json::Value;

use super::{
    needs::{Family, Hook, Match, Need},
    ruleset::{Chain, Rule, Ruleset},
};

/// A packet, as much as the check knows of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub hook: Hook,
    pub family: Family,
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub l4: L4,
    pub saddr: Option<IpAddr>,
    pub daddr: Option<IpAddr>,
}

/// The probe's transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Udp(u16),
    Esp,
    /// Any protocol (forwarded traffic between networks).
    Any,
}

impl Probe {
    /// The packet that must get through for `need`, in `family`: a new connection.
    pub fn for_need(need: &Need, family: Family) -> Probe {
        let mut probe = Probe {
            hook: need.hook,
            family,
            iif: None,
            oif: None,
            l4: L4::Any,
            saddr: None,
            daddr: None,
        };
        for m in &need.matches {
            match m {
                Match::Iif(name) => probe.iif = Some(name.clone()),
                Match::Oif(name) => probe.oif = Some(name.clone()),
                Match::Udp(port) => probe.l4 = L4::Udp(*port),
                Match::Esp => probe.l4 = L4::Esp,
                Match::Saddr(net) => probe.saddr = Some(host_in(net)),
                Match::Daddr(net) => probe.daddr = Some(host_in(net)),
            }
        }
        probe
    }
}

/// An address inside `net` that is not its network address where there is room.
fn host_in(net: &IpNet) -> IpAddr {
    match net.hosts().next() {
        Some(host) => host,
        None => net.addr(),
    }
}

/// Where a verdict came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Blame {
    pub family: String,
    pub table: String,
    /// The chain holding the rule or the policy.
    pub chain: String,
    /// The chains walked to get there, from the base chain (empty for the base chain).
    pub via: Vec<String>,
    /// `None`: the base chain's policy.
    pub rule: Option<(u64, String)>,
    /// The base chain's policy, for policy blames.
    pub policy: String,
}

impl Blame {
    /// `nft insert rule FAMILY TABLE CHAIN` for the base chain the packet entered by.
    fn base_chain(&self) -> &str {
        self.via.first().unwrap_or(&self.chain)
    }

    /// The command that puts `rule` first in the base chain the packet entered by, ahead of
    /// whatever this blames.
    pub fn insert(&self, rule: &str) -> String {
        format!(
            "nft insert rule {} {} {} {rule}",
            self.family,
            self.table,
            self.base_chain()
        )
    }
}

impl fmt::Display for Blame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Blame {
            family,
            table,
            chain,
            ..
        } = self;
        match &self.rule {
            None => write!(
                f,
                "chain {chain} of table {family} {table} (policy {})",
                self.policy
            )?,
            Some((_, text)) => write!(f, "`{text}` in chain {chain} of table {family} {table}")?,
        }
        if !self.via.is_empty() {
            write!(f, " (reached from {})", self.via.join(" → "))?;
        }
        Ok(())
    }
}

/// What happens to the probe.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// It gets through every chain. `maybe_dropped_by`: rules the probe could not answer
    /// that would drop it.
    Passes { maybe_dropped_by: Vec<Blame> },
    /// A rule or a policy drops (or rejects) it; `unless`: rules before it that might
    /// accept it.
    Dropped { by: Blame, unless: Vec<Blame> },
    /// A NAT rule rewrites its source.
    Natted { by: Blame },
}

/// Runs `probe` through the base chains on its hook. `nat`: follow only NAT chains (to see
/// who source-NATs it), else every chain (to see who drops it).
pub fn trace(ruleset: &Ruleset, probe: &Probe, nat: bool) -> Fate {
    let mut bases: Vec<&Chain> = ruleset
        .chains
        .iter()
        .filter(|c| applies(c, probe, nat))
        .collect();
    bases.sort_by_key(|c| c.base.as_ref().map(|b| b.priority).unwrap_or_default());
    let mut walk = Walk {
        ruleset,
        probe,
        maybe_accept: Vec::new(),
        maybe_drop: Vec::new(),
        steps: 0,
    };
    for base in bases {
        match walk.chain(base, &mut Vec::new(), 0) {
            Flow::Continue => {
                let policy = base
                    .base
                    .as_ref()
                    .map(|b| b.policy.as_str())
                    .unwrap_or("accept");
                if policy == "drop" {
                    return Fate::Dropped {
                        by: walk.blame(base, &[], None),
                        unless: walk.maybe_accept,
                    };
                }
            }
            Flow::Accept => {}
            Flow::Drop(by) => {
                return Fate::Dropped {
                    by,
                    unless: walk.maybe_accept,
                };
            }
            Flow::Nat(by) => return Fate::Natted { by },
        }
        // An accept ends this base chain only; the next one sees the packet afresh.
        walk.maybe_accept.clear();
    }
    Fate::Passes {
        maybe_dropped_by: walk.maybe_drop,
    }
}

/// Whether a base chain sees the probe.
fn applies(chain: &Chain, probe: &Probe, nat: bool) -> bool {
    let Some(base) = &chain.base else {
        return false;
    };
    if nat != (base.kind == "nat") {
        return false;
    }
    let family_ok = match chain.family.as_str() {
        "inet" => true,
        "ip" => probe.family == Family::V4,
        "ip6" => probe.family == Family::V6,
        // Ingress on the port the probe arrives by drops before any inet chain.
        "netdev" => {
            probe.hook == Hook::Input
                && base.hook == "ingress"
                && (base.device.is_none() || base.device == probe.iif)
        }
        _ => false,
    };
    let hook_ok = chain.family == "netdev" || base.hook == probe.hook.name();
    family_ok && hook_ok
}

enum Flow {
    /// Fell off the end of the chain or returned.
    Continue,
    Accept,
    Drop(Blame),
    Nat(Blame),
}

/// Three-valued matching: the probe does not know everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tri {
    Yes,
    No,
    Maybe,
}

impl Tri {
    fn and(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::No, _) | (_, Tri::No) => Tri::No,
            (Tri::Yes, Tri::Yes) => Tri::Yes,
            _ => Tri::Maybe,
        }
    }
    fn not(self) -> Tri {
        match self {
            Tri::Yes => Tri::No,
            Tri::No => Tri::Yes,
            Tri::Maybe => Tri::Maybe,
        }
    }
    fn any(values: impl IntoIterator<Item = Tri>) -> Tri {
        let mut out = Tri::No;
        for v in values {
            match v {
                Tri::Yes => return Tri::Yes,
                Tri::Maybe => out = Tri::Maybe,
                Tri::No => {}
            }
        }
        out
    }
}

/// A value of the probe, as a rule's left-hand side reads it.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Num(u64),
    Addr(IpAddr),
    /// The header is not there (a port of an ESP packet, an IPv4 address of an IPv6
    /// packet): nft's implicit protocol dependency makes the rule not match, whatever the
    /// operator.
    Absent,
    Unknown,
}

/// Protocol numbers nft prints by name.
const PROTOCOLS: &[(&str, u64)] = &[
    ("icmp", 1),
    ("igmp", 2),
    ("tcp", 6),
    ("udp", 17),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("icmpv6", 58),
    ("sctp", 132),
    ("udplite", 136),
];

/// Chains entered and rules read in one [`trace`], at most. A walk follows every path of
/// jumps (16 deep, as the kernel's jump stack), so chains that jump to each other several
/// times would take exponential time; the kernel refuses loops, but a listing is only text.
/// A real ruleset needs hundreds to a few thousand steps; past the budget a jump is not
/// followed, as past the depth limit.
const STEP_BUDGET: usize = 10_000;

struct Walk<'a> {
    ruleset: &'a Ruleset,
    probe: &'a Probe,
    maybe_accept: Vec<Blame>,
    maybe_drop: Vec<Blame>,
    /// Chains entered and rules read so far (see [`STEP_BUDGET`]).
    steps: usize,
}

impl Walk<'_> {
    fn blame(&self, chain: &Chain, via: &[String], rule: Option<&Rule>) -> Blame {
        let policy = if via.is_empty() {
            chain
                .base
                .as_ref()
                .map(|b| b.policy.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Blame {
            family: chain.family.clone(),
            table: chain.table.clone(),
            chain: chain.name.clone(),
            via: via.to_vec(),
            rule: rule.map(|r| (r.handle, r.text.clone())),
            policy,
        }
    }

    fn chain(&mut self, chain: &Chain, via: &mut Vec<String>, depth: usize) -> Flow {
        self.steps += 1;
        if depth > 16 || self.steps > STEP_BUDGET {
            return Flow::Continue;
        }
        for rule in self.ruleset.rules_of(chain) {
            self.steps += 1;
            if let Some(flow) = self.rule(chain, rule, via, depth) {
                return flow;
            }
        }
        Flow::Continue
    }

    /// `None`: go on with the next rule.
    fn rule(
        &mut self,
        chain: &Chain,
        rule: &Rule,
        via: &mut Vec<String>,
        depth: usize,
    ) -> Option<Flow> {
        let mut cond = Tri::Yes;
        for stmt in &rule.expr {
            let Some((kind, body)) = stmt.as_object().and_then(|o| o.iter().next()) else {
                continue;
            };
            let verdict = match kind.as_str() {
                "match" => {
                    cond = cond.and(self.matches(chain, body));
                    if cond == Tri::No {
                        return None;
                    }
                    continue;
                }
                "counter" | "log" | "comment" | "mangle" | "meta" | "ct" | "notrack" | "set"
                | "quota" => continue,
                "limit" | "xt" | "queue" | "synproxy" => {
                    cond = cond.and(Tri::Maybe);
                    continue;
                }
                "vmap" => match self.vmap(chain, body) {
                    Some((tri, verdict)) => {
                        cond = cond.and(tri);
                        verdict
                    }
                    None => continue,
                },
                "accept" | "drop" | "reject" | "return" | "jump" | "goto" | "masquerade"
                | "snat" | "continue" => stmt.clone(),
                // A statement this walk does not know: it cannot say it matches.
                _ => {
                    cond = cond.and(Tri::Maybe);
                    continue;
                }
            };
            return self.verdict(chain, rule, &verdict, cond, via, depth);
        }
        None
    }

    fn verdict(
        &mut self,
        chain: &Chain,
        rule: &Rule,
        verdict: &Value,
        cond: Tri,
        via: &mut Vec<String>,
        depth: usize,
    ) -> Option<Flow> {
        let (kind, body) = verdict.as_object()?.iter().next()?;
        let blame = self.blame(chain, via, Some(rule));
        let sure = cond == Tri::Yes;
        match kind.as_str() {
            "accept" if sure => Some(Flow::Accept),
            "accept" => {
                self.maybe_accept.push(blame);
                None
            }
            "drop" | "reject" if sure => Some(Flow::Drop(blame)),
            "drop" | "reject" => {
                self.maybe_drop.push(blame);
                None
            }
            "masquerade" | "snat" if sure => Some(Flow::Nat(blame)),
            "masquerade" | "snat" => {
                self.maybe_drop.push(blame);
                None
            }
            "return" if sure => Some(Flow::Continue),
            "jump" | "goto" => {
                let target = body["target"].as_str()?;
                let sub = self
                    .ruleset
                    .chain(&chain.family, &chain.table, target)?
                    .clone();
                via.push(chain.name.clone());
                let flow = self.chain(&sub, via, depth + 1);
                via.pop();
                if !sure {
                    match flow {
                        Flow::Drop(b) | Flow::Nat(b) => self.maybe_drop.push(b),
                        Flow::Accept => self.maybe_accept.push(blame),
                        Flow::Continue => {}
                    }
                    return None;
                }
                match flow {
                    // A goto does not come back here: falling off its end ends this chain.
                    Flow::Continue if kind == "goto" => Some(Flow::Continue),
                    Flow::Continue => None,
                    other => Some(other),
                }
            }
            _ => None,
        }
    }

    /// `ct state vmap { established : accept, invalid : drop }`: the element the probe
    /// matches, with how sure that is.
    fn vmap(&self, chain: &Chain, body: &Value) -> Option<(Tri, Value)> {
        let left = self.value(&body["key"]);
        let elements = match &body["data"] {
            Value::String(name) if name.starts_with('@') => self
                .ruleset
                .set(&chain.family, &chain.table, &name[1..])
                .map(|s| s.elements.clone())
                .unwrap_or_default(),
            data => data["set"].as_array().cloned().unwrap_or_default(),
        };
        for element in elements {
            let pair = element.as_array()?;
            let key = pair.first()?;
            let tri = compare(&left, key);
            if tri != Tri::No {
                return Some((tri, pair.get(1)?.clone()));
            }
        }
        None
    }

    fn matches(&self, chain: &Chain, body: &Value) -> Tri {
        let left = self.value(&body["left"]);
        if left == Val::Absent {
            return Tri::No;
        }
        let right = match &body["right"] {
            Value::String(name) if name.starts_with('@') => {
                match self.ruleset.set(&chain.family, &chain.table, &name[1..]) {
                    Some(set) => serde_json::json!({ "set": set.elements }),
                    None => return Tri::Maybe,
                }
            }
            right => right.clone(),
        };
        let tri = compare(&left, &right);
        match body["op"].as_str().unwrap_or("==") {
            "==" | "in" => tri,
            "!=" => tri.not(),
            _ => Tri::Maybe,
        }
    }

    fn value(&self, left: &Value) -> Val {
        let p = self.probe;
        if let Some(meta) = left.get("meta") {
            return match meta["key"].as_str().unwrap_or_default() {
                "iifname" | "iif" => p.iif.clone().map_or(Val::Unknown, Val::Str),
                "oifname" | "oif" => p.oif.clone().map_or(Val::Unknown, Val::Str),
                "nfproto" => Val::Str(p.family.nfproto().into()),
                "protocol" => Val::Str(p.family.nft().into()),
                "l4proto" => self.l4proto(),
                _ => Val::Unknown,
            };
        }
        if let Some(payload) = left.get("payload") {
            let field = payload["field"].as_str().unwrap_or_default();
            return match payload["protocol"].as_str().unwrap_or_default() {
                "ip" | "ip6" if payload["protocol"] != p.family.nft() => Val::Absent,
                "ip" | "ip6" => match field {
                    "saddr" => p.saddr.map_or(Val::Unknown, Val::Addr),
                    "daddr" => p.daddr.map_or(Val::Unknown, Val::Addr),
                    "protocol" | "nexthdr" => self.l4proto(),
                    _ => Val::Unknown,
                },
                "udp" | "th" => match (p.l4, field) {
                    (L4::Udp(port), "dport") => Val::Num(port.into()),
                    (L4::Esp, _) => Val::Absent,
                    _ => Val::Unknown,
                },
                "esp" => match p.l4 {
                    L4::Esp => Val::Unknown,
                    L4::Udp(_) => Val::Absent,
                    L4::Any => Val::Unknown,
                },
                _ => match p.l4 {
                    // tcp, icmp, sctp, ...: not a header of a UDP or ESP probe.
                    L4::Udp(_) | L4::Esp => Val::Absent,
                    L4::Any => Val::Unknown,
                },
            };
        }
        if let Some(ct) = left.get("ct")
            && ct["key"] == "state"
        {
            // The probe opens a connection.
            return Val::Str("new".into());
        }
        Val::Unknown
    }

    fn l4proto(&self) -> Val {
        match self.probe.l4 {
            L4::Udp(_) => Val::Num(17),
            L4::Esp => Val::Num(50),
            L4::Any => Val::Unknown,
        }
    }
}

/// Whether `left` equals (or lies in) `right`: a literal, a list, an anonymous set, a
/// prefix or a range.
fn compare(left: &Val, right: &Value) -> Tri {
    if *left == Val::Unknown {
        return Tri::Maybe;
    }
    if *left == Val::Absent {
        return Tri::No;
    }
    match right {
        Value::Array(items) => Tri::any(items.iter().map(|i| compare(left, i))),
        Value::Object(o) if o.contains_key("set") => compare(left, &o["set"]),
        Value::Object(o) if o.contains_key("prefix") => {
            let prefix = &o["prefix"];
            let net = format!(
                "{}/{}",
                prefix["addr"].as_str().unwrap_or_default(),
                prefix["len"]
            );
            match (left, net.parse::<IpNet>()) {
                (Val::Addr(addr), Ok(net)) => tri(net.contains(addr)),
                _ => Tri::Maybe,
            }
        }
        Value::Object(o) if o.contains_key("range") => {
            let range = o["range"].as_array().cloned().unwrap_or_default();
            match (left, range.as_slice()) {
                (Val::Num(n), [lo, hi]) => match (number(lo), number(hi)) {
                    (Some(lo), Some(hi)) => tri(lo <= *n && *n <= hi),
                    _ => Tri::Maybe,
                },
                (Val::Addr(a), [lo, hi]) => match (
                    lo.as_str().and_then(|s| s.parse::<IpAddr>().ok()),
                    hi.as_str().and_then(|s| s.parse::<IpAddr>().ok()),
                ) {
                    (Some(lo), Some(hi)) => tri(lo <= *a && *a <= hi),
                    _ => Tri::Maybe,
                },
                _ => Tri::Maybe,
            }
        }
        Value::String(s) => match left {
            Val::Str(l) => match s.strip_suffix('*') {
                Some(prefix) => tri(l.starts_with(prefix)),
                None => tri(l == s),
            },
            Val::Num(n) => match number(right) {
                Some(r) => tri(*n == r),
                None => Tri::Maybe,
            },
            Val::Addr(a) => match s.parse::<IpAddr>() {
                Ok(r) => tri(*a == r),
                Err(_) => Tri::Maybe,
            },
            Val::Absent | Val::Unknown => Tri::Maybe,
        },
        Value::Number(_) => match (left, number(right)) {
            (Val::Num(n), Some(r)) => tri(*n == r),
            _ => Tri::Maybe,
        },
        _ => Tri::Maybe,
    }
}

/// A number, or a protocol name nft prints instead of it.
fn number(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        let s = v.as_str()?;
        s.parse()
            .ok()
            .or_else(|| PROTOCOLS.iter().find(|(n, _)| *n == s).map(|(_, p)| *p))
    })
}

fn tri(b: bool) -> Tri {
    if b { Tri::Yes } else { Tri::No }
}

#[cfg(test)]
mod tests;
