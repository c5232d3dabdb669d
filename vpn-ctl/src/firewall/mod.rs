//! Firewall openings: what the tunnels need from the firewall, installed (`firewall =
//! "manage"`) or checked (`"check"`, the default).
//!
//! The needs are derived from the configuration ([`needs`]): the WireGuard listen ports and,
//! for IPsec sites, ESP and udp/500 and udp/4500 from the WAN; forwarding between each tunnel
//! and the LAN (and the WAN for clients that use the router for internet access);
//! masquerading those clients on the WAN; no NAT for traffic to an IPsec remote subnet.
//!
//! - On nftables systems vpn-ctl keeps its rules in a table of its own, `inet vpn_ctl`
//!   ([`table`]), replaced atomically over netlink and deleted by `down`.
//! - On OpenWrt (fw4 owns `table inet fw4`) the rules go into fw4's include directories and
//!   fw4 is reloaded ([`fw4`]).
//!
//! Either way, and in `check` mode instead, every need is traced through all base chains
//! of every table ([`trace`]): an accept in one table does not override a drop in another,
//! so the report names the rule or chain policy that still drops the traffic, and the fix.

pub mod fw4;
pub mod needs;
pub mod ruleset;
pub mod table;
pub mod trace;

use std::fmt;

use serde::Serialize;

use crate::config::{Config, FirewallMode};
use needs::{Expect, Family, Hook, Match, Need};
use ruleset::Ruleset;
use trace::{Fate, Probe};

/// Which mechanism holds vpn-ctl's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// vpn-ctl's own table `inet vpn_ctl`.
    Nftables,
    /// fw4's include directories (OpenWrt).
    Fw4,
}

impl Backend {
    /// fw4 when its table is there, else plain nftables.
    pub fn detect(ruleset: &Ruleset) -> Backend {
        if ruleset.has_table("inet", "fw4") {
            Backend::Fw4
        } else {
            Backend::Nftables
        }
    }
}

/// Something the firewall does to a tunnel's traffic that it should not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What the opening is for: "WireGuard wg0".
    pub purpose: String,
    /// What happens, in plain words, naming the rule or chain policy.
    pub problem: String,
    /// What to do.
    pub fix: String,
    /// False when the rule that does it depends on something the check cannot know.
    pub certain: bool,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n      fix: {}", self.problem, self.fix)
    }
}

/// What `up` did to the firewall and what still blocks the tunnels.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub changes: Vec<String>,
    pub findings: Vec<Finding>,
    /// Why the check could not run, if it could not.
    pub warnings: Vec<String>,
}

/// `up`: in `manage` mode installs the needs (vpn-ctl's table, or fw4 includes), in
/// `check` mode only checks; either way returns what still blocks the tunnels.
pub fn up(config: &Config) -> anyhow::Result<Report> {
    let mode = config.router.firewall;
    if mode == FirewallMode::Off {
        return Ok(Report::default());
    }
    let needs = needs::needs(config);
    // Without nft vpn-ctl cannot read the ruleset: it still installs its table (netlink
    // needs no nft), but cannot compare or check.
    let observed = Ruleset::read();
    let backend = match &observed {
        Ok(ruleset) => Backend::detect(ruleset),
        Err(_) => Backend::Nftables,
    };
    let mut changes = Vec::new();
    if mode == FirewallMode::Manage {
        match backend {
            Backend::Nftables => {
                let installed = observed.as_ref().ok().map(installed_comments);
                if installed != Some(desired_comments(&needs)) {
                    if needs.is_empty() {
                        if table::remove()? {
                            changes.push(format!(
                                "firewall: removed table inet {} (nothing needs it)",
                                table::TABLE
                            ));
                        }
                    } else {
                        table::install(&needs)?;
                        changes.push(format!(
                            "firewall: table inet {} with {} rules: {}",
                            table::TABLE,
                            needs.len(),
                            summary(&needs)
                        ));
                    }
                }
            }
            Backend::Fw4 => {
                let dir = fw4::includes_dir();
                let files = fw4::write(&dir, &needs)?;
                if !files.is_empty() {
                    fw4::reload()?;
                    changes.push(format!(
                        "firewall: fw4 includes {} ({}); fw4 reloaded",
                        paths(&files),
                        summary(&needs)
                    ));
                }
            }
        }
    }
    let ruleset = if changes.is_empty() {
        observed
    } else {
        Ruleset::read()
    };
    Ok(match ruleset {
        Ok(ruleset) if ruleset.no_nf_tables => Report {
            changes,
            findings: Vec::new(),
            warnings: vec![format!("firewall: not checked: {}", not_checked(&needs))],
        },
        Ok(ruleset) => Report {
            changes,
            findings: check_ruleset(&ruleset, &needs, mode, backend),
            warnings: Vec::new(),
        },
        Err(e) => Report {
            changes,
            findings: Vec::new(),
            warnings: vec![format!("cannot check the firewall: {e:#}")],
        },
    })
}

/// Why nothing was checked where the kernel has no nf_tables, and what a firewall of another
/// kind must let through.
fn not_checked(needs: &[Need]) -> String {
    let mut text = "this kernel has no nf_tables, so there is no nftables firewall to read \
                    (an iptables firewall, such as OpenWrt's fw3, is not read)"
        .to_string();
    if !needs.is_empty() {
        text.push_str(&format!(
            "; if a firewall runs, it must let through: {}",
            summary(needs)
        ));
    }
    text
}

fn paths(files: &[std::path::PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `down`: removes vpn-ctl's table and fw4 includes, whatever the mode is now (the config
/// may have changed since they were installed).
pub fn down() -> anyhow::Result<Vec<String>> {
    let mut changes = Vec::new();
    if table::remove()? {
        changes.push(format!("firewall: removed table inet {}", table::TABLE));
    }
    let dir = fw4::includes_dir();
    if dir.exists() {
        let files = fw4::write(&dir, &[])?;
        if !files.is_empty() {
            fw4::reload()?;
            changes.push(format!(
                "firewall: removed fw4 includes {}; fw4 reloaded",
                paths(&files)
            ));
        }
    }
    Ok(changes)
}

/// `status` / `diag`: what in the current ruleset blocks the configured tunnels.
pub fn check(config: &Config) -> anyhow::Result<Vec<Finding>> {
    if config.router.firewall == FirewallMode::Off {
        return Ok(Vec::new());
    }
    let ruleset = Ruleset::read()?;
    let needs = needs::needs(config);
    anyhow::ensure!(!ruleset.no_nf_tables, "{}", not_checked(&needs));
    let backend = Backend::detect(&ruleset);
    Ok(check_ruleset(
        &ruleset,
        &needs,
        config.router.firewall,
        backend,
    ))
}

/// Traces every need through `ruleset`, for IPv4 and IPv6 unless the need names one.
pub fn check_ruleset(
    ruleset: &Ruleset,
    needs: &[Need],
    mode: FirewallMode,
    backend: Backend,
) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for need in needs {
        let families = match need.family() {
            Some(f) => vec![f],
            None => vec![Family::V4, Family::V6],
        };
        // (problem, fix, certain) per family, merged when both families say the same.
        let mut per_family: Vec<(Family, Finding)> = Vec::new();
        for family in families {
            let probe = Probe::for_need(need, family);
            let nat = need.expect != Expect::Passes;
            let fate = trace::trace(ruleset, &probe, nat);
            if let Some(finding) = judge(need, &fate, mode, backend) {
                per_family.push((family, finding));
            }
        }
        match per_family.as_slice() {
            [] => {}
            [(family, only)] if need.family().is_none() => {
                let mut f = only.clone();
                f.problem = format!("{} ({})", f.problem, family.label());
                out.push(f);
            }
            [(_, first), rest @ ..] => {
                out.push(first.clone());
                for (family, f) in rest {
                    if f.problem != first.problem {
                        let mut f = f.clone();
                        f.problem = format!("{} ({})", f.problem, family.label());
                        out.push(f);
                    }
                }
            }
        }
    }
    out
}

/// The finding for a need's fate, if the fate is wrong for it.
fn judge(need: &Need, fate: &Fate, mode: FirewallMode, backend: Backend) -> Option<Finding> {
    let what = describe(need);
    let rule = need.nft_text();
    let manage_hint = match (mode, backend) {
        (FirewallMode::Manage, _) => None,
        (_, Backend::Fw4) => Some(format!(
            "set firewall = \"manage\" in [router] and run `vpn-ctl up` (vpn-ctl adds `{rule}` \
             through fw4's includes), or add it as a traffic rule in LuCI (Network → Firewall)"
        )),
        (_, Backend::Nftables) => Some(format!(
            "set firewall = \"manage\" in [router] and run `vpn-ctl up` (vpn-ctl adds `{rule}` \
             in its own table inet vpn_ctl)"
        )),
    };
    match (need.expect, fate) {
        (Expect::Passes, Fate::Dropped { by, unless }) => {
            let insert = by.insert(&rule);
            let fix = if by.table == "fw4" && by.family == "inet" {
                match &manage_hint {
                    Some(hint) => hint.clone(),
                    None => format!(
                        "fw4 should have vpn-ctl's include: check {} and run `fw4 reload`",
                        fw4::includes_dir().display()
                    ),
                }
            } else {
                format!(
                    "accept it before that drop: `{insert}` (and in the file your ruleset is \
                     loaded from, e.g. /etc/nftables.conf); an accept in vpn-ctl's own table \
                     cannot override a drop in another table"
                )
            };
            let mut problem = format!("{what} is dropped by {by}");
            if let Some(first) = unless.first() {
                problem.push_str(&format!(
                    ", unless {first} accepts it (the check cannot tell)"
                ));
            }
            Some(Finding {
                purpose: need.purpose.clone(),
                problem,
                fix,
                certain: unless.is_empty(),
            })
        }
        (Expect::Passes, Fate::Passes { maybe_dropped_by }) => {
            let by = maybe_dropped_by.first()?;
            Some(Finding {
                purpose: need.purpose.clone(),
                problem: format!("{what} may be dropped by {by} (the check cannot tell)"),
                fix: format!(
                    "make sure that rule does not match it, or accept it before: `{}`",
                    by.insert(&rule)
                ),
                certain: false,
            })
        }
        (Expect::Masqueraded, Fate::Passes { .. }) => Some(Finding {
            purpose: need.purpose.clone(),
            problem: format!(
                "{what} leaves without masquerading, so replies cannot find the way back"
            ),
            fix: manage_hint
                .unwrap_or_else(|| format!("add `{rule}` to a NAT chain on postrouting")),
            certain: true,
        }),
        (Expect::NotNatted, Fate::Natted { by }) if by.table != table::TABLE => Some(Finding {
            purpose: need.purpose.clone(),
            problem: format!(
                "{what} is source-NATed by {by}: NAT takes it out of the IPsec policy, so it \
                 leaves unencrypted or not at all"
            ),
            fix: format!(
                "exempt it before that rule: `{}`",
                by.insert(&exempt_text(need))
            ),
            certain: true,
        }),
        (Expect::Masqueraded | Expect::NotNatted, Fate::Dropped { by, .. }) => Some(Finding {
            purpose: need.purpose.clone(),
            problem: format!("{what} is dropped by {by} on the way out"),
            fix: "accept it in that chain".into(),
            certain: true,
        }),
        _ => None,
    }
}

/// The rule that exempts a need's traffic from NAT, without the outgoing interface.
fn exempt_text(need: &Need) -> String {
    let mut words: Vec<String> = need
        .matches
        .iter()
        .filter(|m| matches!(m, Match::Saddr(_) | Match::Daddr(_)))
        .map(Match::to_string)
        .collect();
    words.push("accept".into());
    words.join(" ")
}

/// A need's traffic in plain words: "udp/51820 from the WAN (WireGuard wg0)".
fn describe(need: &Need) -> String {
    let wan = need.iif().map(|i| format!("the WAN ({i})"));
    match need.hook {
        Hook::Input => {
            let proto = need.inbound().unwrap_or_else(|| "traffic".into());
            format!(
                "{proto} from {} for {}",
                wan.unwrap_or_else(|| "the WAN".into()),
                need.purpose
            )
        }
        Hook::Forward => format!("forwarded traffic ({})", need.purpose),
        Hook::Postrouting => format!("traffic of {}", need.purpose),
    }
}

/// "udp/51820 in, 2 forwards, masquerading".
fn summary(needs: &[Need]) -> String {
    let inputs: Vec<String> = needs
        .iter()
        .filter(|n| n.hook == Hook::Input)
        .filter_map(|n| Some(n.inbound()?.to_lowercase()))
        .collect();
    let forwards = needs.iter().filter(|n| n.hook == Hook::Forward).count();
    let masq = needs
        .iter()
        .filter(|n| n.expect == Expect::Masqueraded)
        .count();
    let exempt = needs
        .iter()
        .filter(|n| n.expect == Expect::NotNatted)
        .count();
    let mut parts = Vec::new();
    if !inputs.is_empty() {
        parts.push(format!("{} in from the WAN", inputs.join(" ")));
    }
    if forwards > 0 {
        parts.push(format!("{forwards} forwarding rules"));
    }
    if masq > 0 {
        parts.push(format!("{masq} masquerading"));
    }
    if exempt > 0 {
        parts.push(format!("{exempt} NAT exemptions"));
    }
    parts.join(", ")
}

/// `(chain, comment)` of every rule in vpn-ctl's table, `None` without the table.
fn installed_comments(ruleset: &Ruleset) -> Option<Vec<(String, String)>> {
    if !ruleset.has_table("inet", table::TABLE) {
        return None;
    }
    Some(
        ruleset
            .rules
            .iter()
            .filter(|r| r.family == "inet" && r.table == table::TABLE)
            .map(|r| (r.chain.clone(), r.comment.clone().unwrap_or_default()))
            .collect(),
    )
}

/// The same for the table `needs` make, in the order [`table::install`] adds them.
fn desired_comments(needs: &[Need]) -> Option<Vec<(String, String)>> {
    if needs.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for hook in [Hook::Input, Hook::Forward, Hook::Postrouting] {
        out.extend(
            needs
                .iter()
                .filter(|n| n.hook == hook)
                .map(|n| (hook.name().to_string(), n.comment())),
        );
    }
    Some(out)
}

/// The findings for `status`, one per line with its fix.
pub fn render(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "firewall: nothing in the ruleset blocks the tunnels\n".into();
    }
    let mut out = String::from("firewall:\n");
    for f in findings {
        out.push_str(&format!("  {f}\n"));
    }
    out
}
