//! Renewals of IKE sites as charon reports them over VICI: which re-authentications and
//! rekeys happened, which failed, and why.
//!
//! charon raises an event for every change of an SA (`swanctl --log` shows them):
//!
//! | event | when |
//! |---|---|
//! | `ike-updown` | an IKE SA was established (`up = yes`) or ended |
//! | `ike-rekey` | an IKEv2 IKE SA was rekeyed in place (old and new SA) |
//! | `child-updown` | a CHILD SA was installed (`up = yes`) or ended, unless it was rekeyed |
//! | `child-rekey` | a CHILD SA was replaced by a new one (IKEv1 quick mode, IKEv2 CREATE_CHILD_SA) |
//! | `log` | charon's log lines at level 1 and below, tagged with the IKE SA |
//!
//! IKEv1 cannot rekey an IKE SA: charon re-authenticates instead, with a new IKE SA that
//! takes over the CHILD SAs, and there is no `ike-rekey` for it. So a re-authentication is an
//! `ike-updown` up for a site that still has an established IKE SA, by either side (a
//! FRITZ!Box re-authenticates on its own schedule too). A renewal failed when
//!
//! - a new IKE SA for a site that still has one ends without being established (the
//!   re-authentication was refused or not answered; the old SA carries on until it expires),
//! - the site's last IKE SA ends after its renewal time without a successor,
//! - a CHILD SA ends at the end of its lifetime without having been replaced.
//!
//! Why comes from the log lines charon gave for the SA ([`super::vici::hint_for_log`] turns
//! the common ones into advice). [`Renewals`] keeps a count of each per site and a few log
//! lines per site, nothing that grows with time; sites leave with the config
//! ([`Renewals::retain`]).

use std::{
    collections::{BTreeMap, VecDeque},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{FutureExt as _, StreamExt as _};
use tokio::sync::watch;

use super::{
    conn::site_of,
    vici::{IkeSa, Vici, ViciValue, hint_for_log, ike_sas_from_event},
};
use crate::config::{Config, ipsec::Keying};

/// The events [`Renewals::event`] reads, for `register`.
pub const EVENTS: &[&str] = &[
    "ike-updown",
    "ike-rekey",
    "child-updown",
    "child-rekey",
    "log",
];

/// How many of charon's log lines are kept per site for the reason of a failure.
const LOG_LINES: usize = 12;
/// How many failed and started IKE SAs are remembered per site (each failure is said once,
/// with the side that started the SA).
const FAILED_KEPT: usize = 8;

/// A kind of renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Renewal {
    /// IKEv2: the IKE SA rekeyed in place.
    IkeRekey,
    /// A new IKE SA replaced the old one (IKEv1's only way; IKEv2 when `reauth_time` is set).
    IkeReauth,
    /// A new CHILD SA (new ESP keys) replaced the old one.
    ChildRekey,
}

impl Renewal {
    pub const ALL: [Renewal; 3] = [Renewal::IkeRekey, Renewal::IkeReauth, Renewal::ChildRekey];

    /// The label value in the metrics (`kind="ike_reauth"`).
    pub fn label(self) -> &'static str {
        match self {
            Renewal::IkeRekey => "ike_rekey",
            Renewal::IkeReauth => "ike_reauth",
            Renewal::ChildRekey => "child_rekey",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Renewal::IkeRekey => "rekeying the IKE SA",
            Renewal::IkeReauth => "re-authentication",
            Renewal::ChildRekey => "rekeying the CHILD SA",
        }
    }
}

/// How many renewals of a kind succeeded and failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub done: u64,
    pub failed: u64,
}

/// What a renewal event means for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// A renewal or an SA coming up: `info`.
    Info(String),
    /// A renewal failed or the site lost its IKE SA: `warn`.
    Warn(String),
}

/// What is remembered of an IKE SA between its events.
#[derive(Debug, Clone)]
struct IkeSeen {
    established: bool,
    /// Its renewal time has come (charon is re-authenticating or rekeying it, or the time
    /// has passed).
    due: bool,
    /// A failed renewal of it was already counted.
    failure_counted: bool,
}

impl IkeSeen {
    fn of(sa: &IkeSa) -> IkeSeen {
        IkeSeen {
            established: sa.is_established(),
            due: sa.state == "REKEYING" || (sa.rekey_time.is_none() && sa.reauth_time.is_none()),
            failure_counted: false,
        }
    }
}

#[derive(Debug, Default)]
struct Site {
    ike: BTreeMap<u64, IkeSeen>,
    tallies: BTreeMap<Renewal, Tally>,
    /// charon's recent log lines about the site: (IKE SA unique id, text).
    log: VecDeque<(Option<u64>, String)>,
    /// The last IKE SAs whose failure was said (a failure is seen in the log and again in
    /// its `ike-updown`).
    /// With whether its reason was said (charon's VICI logger sends log lines from a queue, so
    /// the line with the reason can come after the SA's `ike-updown`).
    failed: VecDeque<(u64, bool)>,
    /// The last IKE SAs whose start charon logged, and which side started them.
    started: VecDeque<(u64, &'static str)>,
}

impl Site {
    fn count(&mut self, kind: Renewal, ok: bool) {
        let tally = self.tallies.entry(kind).or_default();
        if ok {
            tally.done += 1;
        } else {
            tally.failed += 1;
        }
    }

    /// IKE SA `id` (started by `by`) failed before it was established: a failed
    /// re-authentication when the site still has an established SA, a failed attempt
    /// otherwise. Said once per SA.
    fn attempt_failed(&mut self, name: &str, id: u64, by: Option<&str>) -> Option<Said> {
        if self.failed.iter().any(|(f, _)| *f == id) {
            return None;
        }
        let explained = hint_for_log(&self.lines_of(id)).is_some();
        push_bounded(&mut self.failed, FAILED_KEPT, (id, explained));
        let by = by.map_or(String::new(), |by| format!(" (started by {by})"));
        let Some(old) = self.other_established(id) else {
            return Some(Said::Warn(format!(
                "site {name}: establishing an IKE SA failed{by}: {}",
                self.reason(id)
            )));
        };
        // A re-authentication that never got through; the old SA carries on.
        self.count(Renewal::IkeReauth, false);
        for seen in self.ike.values_mut() {
            seen.failure_counted = true;
        }
        Some(Said::Warn(format!(
            "site {name}: re-authentication failed{by}: {}; IKE SA #{old} \
             carries the traffic until it expires",
            self.reason(id)
        )))
    }

    /// Whether another IKE SA than `except` is established.
    fn other_established(&self, except: u64) -> Option<u64> {
        self.ike
            .iter()
            .find(|(id, seen)| **id != except && seen.established)
            .map(|(id, _)| *id)
    }

    /// Why IKE SA `id` failed, from charon's log lines about it (or the site's, when there are
    /// none about it).
    fn lines_of(&self, id: u64) -> Vec<String> {
        self.log
            .iter()
            .filter(|(sa, _)| *sa == Some(id))
            .map(|(_, text)| text.clone())
            .collect()
    }

    fn reason(&self, id: u64) -> String {
        let mut lines = self.lines_of(id);
        if lines.is_empty() {
            lines = self.log.iter().map(|(_, text)| text.clone()).collect();
        }
        let last = lines
            .iter()
            .rev()
            .find(|l| !l.starts_with("sending packet") && !l.starts_with("received packet"))
            .cloned();
        match (hint_for_log(&lines), last) {
            (Some(hint), Some(last)) => format!("charon: \"{last}\"; {hint}"),
            (Some(hint), None) => hint.to_string(),
            (None, Some(last)) => format!("charon: \"{last}\""),
            (None, None) => "charon logged no reason".to_string(),
        }
    }
}

/// The renewal counts and recent log lines of vpn-ctl's IKE sites.
#[derive(Debug, Default)]
pub struct Renewals {
    sites: BTreeMap<String, Site>,
}

impl Renewals {
    pub fn new() -> Renewals {
        Renewals::default()
    }

    /// Starts from charon's current SAs (`list-sas`), as after (re)connecting to it: events
    /// of SAs established before then are read against these.
    pub fn seed(&mut self, sas: &[IkeSa]) {
        for site in self.sites.values_mut() {
            site.ike.clear();
        }
        for sa in sas {
            if let Some(name) = site_of(&sa.name) {
                let site = self.sites.entry(name.to_string()).or_default();
                site.ike.insert(sa.unique_id, IkeSeen::of(sa));
            }
        }
    }

    /// Counts exactly these sites (the config's IKE sites): new ones start at zero, the
    /// others are forgotten.
    pub fn sites(&mut self, names: &[String]) {
        self.sites.retain(|name, _| names.contains(name));
        for name in names {
            self.sites.entry(name.clone()).or_default();
        }
    }

    /// Every site's tally of each kind, zeros included once a site has been seen.
    pub fn tallies(&self) -> Vec<(String, Renewal, Tally)> {
        self.sites
            .iter()
            .flat_map(|(name, site)| {
                Renewal::ALL.into_iter().map(move |kind| {
                    (
                        name.clone(),
                        kind,
                        site.tallies.get(&kind).copied().unwrap_or_default(),
                    )
                })
            })
            .collect()
    }

    /// Reads one event (`name` is its registration name) and says what it means.
    pub fn event(&mut self, name: &str, event: &ViciValue) -> Vec<Said> {
        match name {
            "log" => self.log(event).into_iter().collect(),
            "ike-updown" => self.ike_updown(event),
            "ike-rekey" => self.ike_rekey(event),
            "child-rekey" => self.child_rekey(event),
            "child-updown" => self.child_updown(event),
            _ => Vec::new(),
        }
    }

    /// An event in a few words for the debug log: `vpn-ctl-site[7] ESTABLISHED initiator`
    /// for each IKE SA in it, `up` when it says so.
    pub fn summary(event: &ViciValue) -> String {
        let mut parts: Vec<String> = Vec::new();
        if event.yes("up") {
            parts.push("up".into());
        }
        for (name, v) in event.entries() {
            let Some(id) = v.str("uniqueid") else {
                continue;
            };
            let children: Vec<String> = v
                .get("child-sas")
                .into_iter()
                .flat_map(ViciValue::entries)
                .map(|(key, c)| format!("{key}:{}", c.str("state").unwrap_or("?")))
                .collect();
            parts.push(format!(
                "{name}[{id}] {}{} children=[{}]",
                v.str("state").unwrap_or("?"),
                if v.yes("initiator") { " initiator" } else { "" },
                children.join(",")
            ));
        }
        parts.join(" ")
    }

    /// Keeps a line of charon's log about one of vpn-ctl's sites. A line that says an IKE SA
    /// that never came up has failed (charon raises no `ike-updown` for every such failure)
    /// is a failed attempt.
    fn log(&mut self, event: &ViciValue) -> Option<Said> {
        let name = event.str("ikesa-name").and_then(site_of)?;
        // The encoder's and the network's lines say nothing a user can act on.
        if matches!(event.str("group"), Some("ENC" | "NET" | "ASN" | "LIB")) {
            return None;
        }
        let msg = event.str("msg")?;
        let id = event.u64("ikesa-uniqueid");
        let site = self.sites.entry(name.to_string()).or_default();
        push_bounded(&mut site.log, LOG_LINES, (id, msg.to_string()));
        let id = id?;
        // Who started it: charon says "initiating Aggressive Mode IKE_SA NAME[ID] to ..." for
        // its own (logged under the old SA when it re-authenticates, hence the id from the
        // text), "X is initiating a ... IKE_SA" for the peer's.
        let started = if msg.starts_with("initiating ") {
            started_id(msg).map(|id| (id, "this side"))
        } else if msg.contains(" is initiating ") {
            Some((id, "the other side"))
        } else {
            None
        };
        if let Some(started) = started {
            push_bounded(&mut site.started, FAILED_KEPT, started);
        }
        // A retransmit is not a failure yet; giving up after them is.
        let failed = !msg.contains("retransmit") || msg.contains("giving up");
        let hint = hint_for_log(&[msg.to_string()]).filter(|_| failed)?;
        // Its failure was said already, without the reason, which came late: say the reason.
        if let Some(entry) = site.failed.iter_mut().find(|(f, _)| *f == id) {
            if entry.1 {
                return None;
            }
            entry.1 = true;
            return Some(Said::Warn(format!(
                "site {name}: IKE SA #{id} failed because: charon: \"{msg}\"; {hint}"
            )));
        }
        if site.ike.get(&id).is_some_and(|seen| seen.established) {
            return None;
        }
        let by = site
            .started
            .iter()
            .find(|(sa, _)| *sa == id)
            .map(|(_, by)| *by);
        site.attempt_failed(name, id, by)
    }

    /// The IKE SAs of vpn-ctl's sites in an event (the sections named like a connection).
    fn sas_of(event: &ViciValue) -> Vec<(String, IkeSa)> {
        let sections = ViciValue::Section(
            event
                .entries()
                .filter(|(_, v)| matches!(v, ViciValue::Section(_)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        ike_sas_from_event(&sections)
            .unwrap_or_else(|e| {
                log::debug!("charon event not understood: {e:#}");
                Vec::new()
            })
            .into_iter()
            .filter_map(|sa| Some((site_of(&sa.name)?.to_string(), sa)))
            .collect()
    }

    fn ike_updown(&mut self, event: &ViciValue) -> Vec<Said> {
        let up = event.yes("up");
        let mut said = Vec::new();
        for (name, sa) in Self::sas_of(event) {
            let site = self.sites.entry(name.clone()).or_default();
            let id = sa.unique_id;
            let by = if sa.initiator {
                "this side"
            } else {
                "the other side"
            };
            if up {
                if let Some(old) = site.other_established(id) {
                    site.count(Renewal::IkeReauth, true);
                    said.push(Said::Info(format!(
                        "site {name}: re-authenticated (started by {by}): IKE SA #{id} \
                         replaces #{old}"
                    )));
                } else {
                    said.push(Said::Info(format!(
                        "site {name}: IKE SA #{id} established (started by {by})"
                    )));
                }
                site.ike.insert(id, IkeSeen::of(&sa));
                continue;
            }
            // What the event says now, with what was remembered of it.
            let now = IkeSeen::of(&sa);
            let seen = match site.ike.remove(&id) {
                Some(before) => IkeSeen {
                    established: before.established || now.established,
                    due: before.due || now.due,
                    failure_counted: before.failure_counted,
                },
                None => now,
            };
            let other = site.other_established(id);
            if !seen.established && !sa.is_established() {
                said.extend(site.attempt_failed(&name, id, Some(by)));
            } else if other.is_none() {
                let kind = if sa.version == 2 {
                    Renewal::IkeRekey
                } else {
                    Renewal::IkeReauth
                };
                if seen.due && !seen.failure_counted {
                    site.count(kind, false);
                    said.push(Said::Warn(format!(
                        "site {name}: IKE SA #{id} expired without a successor, {} failed: {}; \
                         the tunnel is down until it is negotiated again",
                        kind.words(),
                        site.reason(id)
                    )));
                } else {
                    said.push(Said::Warn(format!(
                        "site {name}: IKE SA #{id} ended and none replaces it; the tunnel is \
                         down until it is negotiated again"
                    )));
                }
            }
        }
        said
    }

    fn ike_rekey(&mut self, event: &ViciValue) -> Vec<Said> {
        let mut said = Vec::new();
        for (conn, pair) in event.entries() {
            let Some(name) = site_of(conn) else {
                continue;
            };
            let one = |which: &str| {
                let v = pair.get(which)?;
                let wrapped = ViciValue::Section([(conn.clone(), v.clone())].into_iter().collect());
                ike_sas_from_event(&wrapped).ok()?.into_iter().next()
            };
            let (Some(old), Some(new)) = (one("old"), one("new")) else {
                continue;
            };
            let site = self.sites.entry(name.to_string()).or_default();
            site.count(Renewal::IkeRekey, true);
            site.ike.remove(&old.unique_id);
            site.ike.insert(new.unique_id, IkeSeen::of(&new));
            said.push(Said::Info(format!(
                "site {name}: IKE SA rekeyed: #{} replaces #{}",
                new.unique_id, old.unique_id
            )));
        }
        said
    }

    fn child_rekey(&mut self, event: &ViciValue) -> Vec<Said> {
        let mut said = Vec::new();
        for (name, ike) in Self::named_sections(event) {
            for (_, pair) in ike
                .get("child-sas")
                .into_iter()
                .flat_map(ViciValue::entries)
            {
                let spis = |which: &str| {
                    let v = pair.get(which)?;
                    Some(format!(
                        "{}_i {}_o",
                        v.str("spi-in")?.trim_start_matches("0x"),
                        v.str("spi-out")?.trim_start_matches("0x")
                    ))
                };
                let site = self.sites.entry(name.clone()).or_default();
                site.count(Renewal::ChildRekey, true);
                said.push(Said::Info(format!(
                    "site {name}: CHILD SA rekeyed: SPIs {} replace {}",
                    spis("new").unwrap_or_else(|| "?".into()),
                    spis("old").unwrap_or_else(|| "?".into())
                )));
            }
        }
        said
    }

    fn child_updown(&mut self, event: &ViciValue) -> Vec<Said> {
        if event.yes("up") {
            return Vec::new();
        }
        let mut said = Vec::new();
        for (name, sa) in Self::sas_of(event) {
            let site = self.sites.entry(name.clone()).or_default();
            for child in &sa.children {
                // Ended at the end of its lifetime, with its IKE SA alive: no rekey replaced it.
                let expired = child.life_time.is_none_or(|t| t <= 1);
                if sa.state == "ESTABLISHED" && expired {
                    site.count(Renewal::ChildRekey, false);
                    said.push(Said::Warn(format!(
                        "site {name}: CHILD SA {{{}}} expired without a successor, rekeying the \
                         CHILD SA failed: {}",
                        child.unique_id,
                        site.reason(sa.unique_id)
                    )));
                }
            }
        }
        said
    }

    /// The sections of an event named after vpn-ctl's connections: (site, section).
    fn named_sections(event: &ViciValue) -> Vec<(String, &ViciValue)> {
        event
            .entries()
            .filter_map(|(k, v)| Some((site_of(k)?.to_string(), v)))
            .collect()
    }
}

/// How long the follower waits before connecting to charon again after losing it (charon
/// restarted, or is not running yet).
const RECONNECT: Duration = Duration::from_secs(3);

/// Follows charon's events for the IKE sites of `config` (its current value, as the daemon
/// reloads it) until the task is dropped: logs each renewal (`info`) and each failed one with
/// charon's reason (`warn`), and keeps the counts in `renewals` for the metrics. Without IKE
/// sites it only waits for the config to have some; a charon that is gone is looked for again
/// every few seconds, quietly (`up` and the watchdog say when charon is missing).
pub async fn follow(
    socket: PathBuf,
    mut config: watch::Receiver<Arc<Config>>,
    renewals: Arc<Mutex<Renewals>>,
) {
    loop {
        if !count_sites(&config, &renewals) {
            if config.changed().await.is_err() {
                return;
            }
            continue;
        }
        let mut vici = match Vici::connect(&socket).await {
            Ok(vici) => vici,
            Err(e) => {
                log::debug!("renewal events: {e:#}; trying again in {RECONNECT:?}");
                tokio::time::sleep(RECONNECT).await;
                continue;
            }
        };
        let mut events = vici.subscribe(EVENTS);
        match vici.list_sas(None).await {
            Ok(sas) => renewals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .seed(&sas),
            Err(e) => log::debug!("renewal events: listing the SAs failed: {e:#}"),
        }
        log::debug!("renewal events: following charon on {}", socket.display());
        loop {
            tokio::select! {
                event = events.next() => {
                    // Each event name is its own stream, so an `ike-updown` can come out before
                    // the log lines charon sent ahead of it (its reason). Those are already
                    // waiting (rsvici hands packets on in order): take everything that is
                    // ready and read the log lines first.
                    let mut batch = vec![event];
                    while let Some(next) = events.next().now_or_never() {
                        batch.push(next);
                    }
                    batch.sort_by_key(|e| !matches!(e, Some(Ok(("log", _)))));
                    let mut ended = false;
                    for event in batch {
                        match event {
                            Some(Ok((name, message))) => {
                                if name != "log" {
                                    log::debug!(
                                        "charon event {name}: {}",
                                        Renewals::summary(&message)
                                    );
                                }
                                let said = renewals
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .event(name, &message);
                                for line in said {
                                    match line {
                                        Said::Info(text) => log::info!("{text}"),
                                        Said::Warn(text) => log::warn!("{text}"),
                                    }
                                }
                            }
                            Some(Err(e)) => {
                                log::debug!("renewal events: {e:#}; reconnecting");
                                ended = true;
                            }
                            None => ended = true,
                        }
                    }
                    if ended {
                        break;
                    }
                }
                changed = config.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if !count_sites(&config, &renewals) {
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

/// Appends `item`, dropping the oldest entry once `queue` holds `cap`: what keeps the per-site
/// memory from growing with time.
fn push_bounded<T>(queue: &mut VecDeque<T>, cap: usize, item: T) {
    if queue.len() == cap {
        queue.pop_front();
    }
    queue.push_back(item);
}

/// The id in charon's "initiating ... IKE_SA NAME[ID] to ADDRESS".
fn started_id(msg: &str) -> Option<u64> {
    let (_, after) = msg.split_once("IKE_SA ")?;
    let (_, id) = after.split_once('[')?;
    id.split_once(']')?.0.parse().ok()
}

/// Counts exactly the IKE sites of the current config ([`Renewals::sites`]); whether it has any.
fn count_sites(config: &watch::Receiver<Arc<Config>>, renewals: &Mutex<Renewals>) -> bool {
    let sites = ike_sites(&config.borrow());
    renewals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .sites(&sites);
    !sites.is_empty()
}

/// The names of the config's IKE sites.
fn ike_sites(config: &Config) -> Vec<String> {
    config
        .ipsec
        .iter()
        .filter(|s| matches!(s.keying, Keying::Ike(_)))
        .map(|s| s.name.clone())
        .collect()
}

#[cfg(test)]
mod tests;
