//! `vpn-ctl watchdog`: keeps IPsec sites up and says in plain words why one was down.
//!
//! It replaces the seed's shell loop (ping the far side, restart everything when it fails) with
//! a check that tells the failure modes apart: the remote gateway's name no longer resolves; the
//! kernel has no SA (flushed, or never installed); the SAs are there but the probe gets no
//! answer (and whether anything arrives through the tunnel at all). What vpn-ctl can repair, it
//! repairs, with backoff: a static site is re-applied (the same diff as `up`), an IKE site is
//! terminated and initiated again through charon.

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, ToSocketAddrs as _},
    process::Command,
    time::Duration,
};

use anyhow::Context as _;

use crate::{
    config::{
        Config,
        ipsec::{Gateway, IpsecSite, Keying},
    },
    ike,
    link::Netlink,
    xfrm::{self, SaDir},
};

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The probe answered through the tunnel.
    Up { probe: IpAddr },
    /// SAs are installed and no probe is configured: as far as can be told, up.
    Installed,
    /// The remote gateway is a DNS name that does not resolve.
    Unresolvable { name: String, error: String },
    /// SAs the site needs are not in the kernel.
    NoSa { missing: Vec<String> },
    /// SAs are there but the probe got no answer.
    NoReply {
        probe: IpAddr,
        /// Whether packets arrived through the inbound SA during the probe.
        inbound_moving: bool,
    },
}

impl Health {
    pub fn is_up(&self) -> bool {
        matches!(self, Health::Up { .. } | Health::Installed)
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Up { probe } => write!(f, "up ({probe} answered through the tunnel)"),
            Health::Installed => write!(
                f,
                "SAs installed (no watchdog_probe set, so traffic was not checked)"
            ),
            Health::Unresolvable { name, error } => write!(
                f,
                "the remote gateway {name} does not resolve ({error}): check its dynamic DNS"
            ),
            Health::NoSa { missing } => {
                write!(f, "no SA in the kernel ({} missing)", missing.join(", "))
            }
            Health::NoReply {
                probe,
                inbound_moving: false,
            } => write!(
                f,
                "SAs are installed but nothing comes back: {probe} did not answer and no packet \
                 arrived through the tunnel (is the remote side up, with the same keys and \
                 SPIs?)"
            ),
            Health::NoReply {
                probe,
                inbound_moving: true,
            } => write!(
                f,
                "packets arrive through the tunnel but {probe} did not answer (is the probe \
                 address right, and does its host answer pings?)"
            ),
        }
    }
}

/// Checks one site: name resolution, SAs, and the probe (pinged from this router's address
/// inside the local subnets, so the reply comes back through the tunnel).
pub async fn check(nl: &Netlink, site: &IpsecSite) -> anyhow::Result<Health> {
    if let Gateway::Name(name) = &site.remote_gateway
        && let Err(e) = (name.as_str(), 0).to_socket_addrs()
    {
        return Ok(Health::Unresolvable {
            name: name.clone(),
            error: e.to_string(),
        });
    }
    let status = xfrm::status(std::slice::from_ref(site))?;
    let sas = &status.sites.first().context("status lists the site")?.sas;
    let missing: Vec<String> = sas
        .iter()
        .filter(|sa| !sa.installed)
        .map(|sa| format!("{} SA spi {:#x}", direction(sa.direction), sa.spi))
        .collect();
    if !missing.is_empty() || sas.is_empty() {
        return Ok(Health::NoSa {
            missing: if missing.is_empty() {
                vec!["every SA".to_string()]
            } else {
                missing
            },
        });
    }
    let Some(probe) = site.watchdog_probe else {
        return Ok(Health::Installed);
    };
    let inbound = |sas: &[xfrm::SaStatus]| -> u64 {
        sas.iter()
            .filter(|sa| sa.direction == Some(SaDir::In))
            .map(|sa| sa.packets)
            .sum()
    };
    let before = inbound(sas);
    let source = local_source(nl, site).await?;
    if ping(probe, source) {
        return Ok(Health::Up { probe });
    }
    let after = xfrm::status(std::slice::from_ref(site))?;
    let after = inbound(&after.sites[0].sas);
    Ok(Health::NoReply {
        probe,
        inbound_moving: after > before,
    })
}

fn direction(dir: Option<SaDir>) -> &'static str {
    match dir {
        Some(SaDir::Out) => "outbound",
        Some(SaDir::In) => "inbound",
        None => "an",
    }
}

/// This router's address inside the site's local subnets, if it has one.
async fn local_source(nl: &Netlink, site: &IpsecSite) -> anyhow::Result<Option<IpAddr>> {
    for link in nl.interfaces().await? {
        for net in nl.addresses(&link).await? {
            if site.local_subnets.iter().any(|s| s.contains(&net.addr())) {
                return Ok(Some(net.addr()));
            }
        }
    }
    Ok(None)
}

/// `ping -c 3 -i 0.3 -W 2 [-I SOURCE] PROBE`: whether any reply came.
fn ping(probe: IpAddr, source: Option<IpAddr>) -> bool {
    let mut cmd = Command::new("ping");
    cmd.args(["-q", "-c", "3", "-i", "0.3", "-W", "2"]);
    if let Some(source) = source {
        cmd.arg("-I").arg(source.to_string());
    }
    cmd.arg(probe.to_string())
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Options of `vpn-ctl watchdog`.
#[derive(Debug, Clone)]
pub struct Options {
    /// One pass (check, repair, check again), then return.
    pub once: bool,
    pub interval: Duration,
    /// charon's VICI socket, for restarting IKE sites.
    pub vici_socket: std::path::PathBuf,
}

/// The longest wait between repairs of a site that stays down.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Checks every IPsec site, repairs what it can, logs what it found. With `once`, returns
/// whether every site is up after one pass; otherwise runs until killed.
pub async fn run(config: &Config, options: &Options) -> anyhow::Result<bool> {
    let nl = Netlink::connect()?;
    let mut watchdog = Watchdog::new(options.interval, options.vici_socket.clone());
    // Running on, it also says when charon's renewals of the IKE sites fail, and why.
    let (_config, config_rx) = tokio::sync::watch::channel(std::sync::Arc::new(config.clone()));
    let _renewals = (!options.once).then(|| {
        AbortOnDrop(tokio::spawn(ike::renewal::follow(
            options.vici_socket.clone(),
            config_rx,
            Default::default(),
        )))
    });
    loop {
        let all_up = watchdog.pass(&nl, config).await?;
        if options.once {
            return Ok(all_up);
        }
        tokio::time::sleep(options.interval).await;
    }
}

/// The watchdog's state between passes: per site, the current wait after a failed repair
/// and when to look next. Sites are known by name, so a reloaded config keeps the backoff of
/// the sites it still has. `vpn-ctl watchdog` runs passes in a loop, the daemon one per tick.
#[derive(Debug)]
pub struct Watchdog {
    interval: Duration,
    vici_socket: std::path::PathBuf,
    backoff: HashMap<String, Duration>,
    next: HashMap<String, tokio::time::Instant>,
    /// Whether each site was up at its last check.
    up: HashMap<String, bool>,
}

impl Watchdog {
    pub fn new(interval: Duration, vici_socket: std::path::PathBuf) -> Watchdog {
        Watchdog {
            interval,
            vici_socket,
            backoff: HashMap::new(),
            next: HashMap::new(),
            up: HashMap::new(),
        }
    }

    /// One pass over the sites that are due: check, repair when down, check again, log.
    /// Returns whether every site checked is up.
    pub async fn pass(&mut self, nl: &Netlink, config: &Config) -> anyhow::Result<bool> {
        self.backoff
            .retain(|name, _| config.ipsec.iter().any(|s| &s.name == name));
        self.next
            .retain(|name, _| config.ipsec.iter().any(|s| &s.name == name));
        self.up
            .retain(|name, _| config.ipsec.iter().any(|s| &s.name == name));
        let mut all_up = true;
        for site in &config.ipsec {
            if self
                .next
                .get(&site.name)
                .is_some_and(|next| tokio::time::Instant::now() < *next)
            {
                continue;
            }
            let health = check(nl, site).await?;
            let after = if health.is_up() {
                health
            } else {
                log::warn!("site {}: {health}", site.name);
                match repair(config, site, &health, &self.vici_socket).await? {
                    Some(what) => {
                        log::warn!("site {}: {what}", site.name);
                        check(nl, site).await?
                    }
                    None => health,
                }
            };
            let backoff = self
                .backoff
                .entry(site.name.clone())
                .or_insert(self.interval);
            if after.is_up() {
                // Said once when a site comes up, not on every pass.
                if self.up.insert(site.name.clone(), true) == Some(true) {
                    log::debug!("site {}: {after}", site.name);
                } else {
                    log::info!("site {}: {after}", site.name);
                }
                *backoff = self.interval;
            } else {
                all_up = false;
                self.up.insert(site.name.clone(), false);
                *backoff = (*backoff * 2).min(MAX_BACKOFF);
                log::warn!(
                    "site {}: still down: {after}; next attempt in {} s",
                    site.name,
                    backoff.as_secs()
                );
            }
            // A site that is up is looked at on every pass; one that stays down after a repair
            // only when its backoff has passed.
            if after.is_up() {
                self.next.remove(&site.name);
            } else {
                let next = tokio::time::Instant::now() + *backoff;
                self.next.insert(site.name.clone(), next);
            }
        }
        Ok(all_up)
    }
}

/// A task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What can be done about `health` from this side; `None` when nothing can.
async fn repair(
    config: &Config,
    site: &IpsecSite,
    health: &Health,
    vici_socket: &std::path::Path,
) -> anyhow::Result<Option<String>> {
    match (&site.keying, health) {
        (Keying::Static(_), Health::NoSa { .. }) => {
            let changes = xfrm::up(&config.ipsec)?;
            Ok(Some(format!(
                "re-applied the static SAs and policies ({} changes)",
                changes.len()
            )))
        }
        // Static keys: a remote side that does not answer needs fixing over there; re-adding
        // the same SAs here changes nothing.
        (Keying::Static(_), _) => Ok(None),
        // A name that does not resolve: charon cannot reach the peer either; wait for DNS.
        (Keying::Ike(_), Health::Unresolvable { .. }) => Ok(None),
        // Otherwise renegotiate: terminate what is left and initiate again through charon.
        (Keying::Ike(_), _) => Ok(Some(restart_ike(site, vici_socket).await?)),
    }
}

/// Renegotiates an IKE site through charon: terminates what is left of its IKE SA and
/// initiates it again (`swanctl --terminate --ike NAME; swanctl --initiate --child NAME`).
/// Returns what was done, in words.
pub async fn restart_ike(
    site: &IpsecSite,
    vici_socket: &std::path::Path,
) -> anyhow::Result<String> {
    let mut vici = ike::Vici::connect(vici_socket).await?;
    let name = ike::conn_name(&site.name);
    let timeout = ike::UpOptions::default().timeout;
    vici.terminate_ike(&name, timeout).await?;
    vici.initiate(&name, &name, timeout).await?;
    Ok(format!(
        "restarted the IKE connection {name} through charon"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finding_reads_as_a_sentence_with_what_to_check() {
        let probe: IpAddr = "192.168.3.10".parse().unwrap();
        assert_eq!(
            Health::NoSa {
                missing: vec!["inbound SA spi 0x1002".into()]
            }
            .to_string(),
            "no SA in the kernel (inbound SA spi 0x1002 missing)"
        );
        assert!(
            Health::NoReply {
                probe,
                inbound_moving: false
            }
            .to_string()
            .contains("no packet arrived through the tunnel")
        );
        assert!(
            Health::Unresolvable {
                name: "right.domain.com".into(),
                error: "no such host".into()
            }
            .to_string()
            .contains("check its dynamic DNS")
        );
        assert!(Health::Up { probe }.is_up());
        assert!(!Health::NoSa { missing: vec![] }.is_up());
    }
}
