//! The real [`Source`]: the kernel and the XDP program, read at scrape time.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use tokio::sync::watch;

use super::{Collector, IpsecSa, IpsecSite, Listener, Snapshot, Source, Wan, WgInterface, WgPeer};
use crate::{
    config::{Config, ipsec::Keying},
    ike::renewal::Renewals,
    key::PublicKey,
    link::Netlink,
    wireguard::{self, Backend},
    xdp::WanProgram,
};

/// The real source: reads the kernel (WireGuard over generic netlink or the userspace
/// backend's UAPI socket, XFRM over netlink, `/proc/net/xfrm_stat`, `sock_diag` for
/// listeners) and the XDP maps. It never starts a process.
///
/// Everything is read in the network namespace of the thread that calls [`Source::collect`],
/// which blocks (it runs its own small runtime for rtnetlink): call it from a blocking thread,
/// as [`super::serve`] does (`spawn_blocking`), never from inside an async task.
/// A part that fails (an unreadable device, no XFRM support, ...) does not fail the scrape:
/// it shows as `vpnctl_scrape_collector_success{collector="..."} 0`, and the log says why
/// when it starts failing and when it recovers.
pub struct SystemSource {
    config: watch::Receiver<Arc<Config>>,
    xdp: Option<Arc<Mutex<WanProgram>>>,
    /// The renewal counts of the IKE sites, when something follows charon's events.
    renewals: Option<Arc<Mutex<Renewals>>>,
    /// Each collector's last outcome, to log changes rather than every scrape.
    health: Mutex<BTreeMap<&'static str, bool>>,
}

impl SystemSource {
    /// Reads the config's interfaces and sites (the current value of `config` at each
    /// scrape), `xdp`'s counters when the program runs (labelled with `router.wan`), and
    /// the counts of `renewals` ([`crate::ike::renewal::follow`] keeps them).
    pub fn new(
        config: watch::Receiver<Arc<Config>>,
        xdp: Option<Arc<Mutex<WanProgram>>>,
        renewals: Option<Arc<Mutex<Renewals>>>,
    ) -> SystemSource {
        SystemSource {
            config,
            xdp,
            renewals,
            health: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records a collector's outcome and logs when it changes.
    fn record<T>(
        &self,
        snapshot: &mut Snapshot,
        name: &'static str,
        result: anyhow::Result<T>,
    ) -> Option<T> {
        let ok = result.is_ok();
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let before = health.insert(name, ok);
        match &result {
            Err(e) if before != Some(false) => {
                log::warn!("metrics: reading {name} failed: {e:#}");
            }
            Ok(_) if before == Some(false) => log::info!("metrics: reading {name} works again"),
            _ => {}
        }
        snapshot.collectors.push(Collector { name, ok });
        result.ok()
    }
}

impl Source for SystemSource {
    fn collect(&self) -> anyhow::Result<Snapshot> {
        let config = self.config.borrow().clone();
        let mut snapshot = Snapshot::new(SystemTime::now());

        if !config.wireguard.is_empty() {
            let (interfaces, result) = read_wireguard(&config);
            snapshot.wireguard = interfaces;
            self.record(&mut snapshot, "wireguard", result);
        }

        if !config.ipsec.is_empty() {
            let sites = crate::xfrm::status::status(&config.ipsec).map(|s| ipsec_sites(&s));
            snapshot.ipsec = self
                .record(&mut snapshot, "ipsec", sites)
                .unwrap_or_default();
        }

        if let Some(renewals) = &self.renewals {
            snapshot.renewals = renewals.lock().unwrap_or_else(|e| e.into_inner()).tallies();
        }

        // The counters are worth showing with or without IPsec sites; their absence (a kernel
        // without CONFIG_XFRM_STATISTICS) only counts as a failure when there are sites.
        match crate::xfrm::stat::xfrm_stat() {
            Ok(stats) => {
                snapshot.xfrm_errors = stats;
                self.record(&mut snapshot, "xfrm_stat", Ok(()));
            }
            Err(e) if !config.ipsec.is_empty() => {
                self.record::<()>(&mut snapshot, "xfrm_stat", Err(e));
            }
            Err(_) => {}
        }

        let wanted = vpn_ports(&config);
        if !wanted.is_empty() {
            let ports: Vec<u16> = wanted.iter().map(|(_, port)| *port).collect();
            let bound = crate::sockets::udp_bound_ports(&ports);
            if let Some(bound) = self.record(&mut snapshot, "listeners", bound) {
                snapshot.listeners = wanted
                    .into_iter()
                    .map(|(service, port)| Listener {
                        service,
                        port,
                        protocol: "udp",
                        up: bound.contains(&port),
                    })
                    .collect();
            }
        }

        if let Some(xdp) = &self.xdp {
            let counters = xdp
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .counters()
                .context("reading the XDP program's counters");
            snapshot.wan = self
                .record(&mut snapshot, "xdp", counters)
                .map(|counters| Wan {
                    interface: config.router.wan.clone().unwrap_or_default(),
                    counters,
                });
        }
        Ok(snapshot)
    }
}

/// Every configured WireGuard interface, with its peers when it could be read; the error is
/// the first failure (the other interfaces are still read).
fn read_wireguard(config: &Config) -> (Vec<WgInterface>, anyhow::Result<()>) {
    let mut first_error = None;
    let links = links(config);
    let interfaces = config
        .wireguard
        .iter()
        .map(|iface| {
            let mut out = WgInterface {
                name: iface.name.clone(),
                up: false,
                peers: Vec::new(),
            };
            let link = match &links {
                Ok(links) => links.get(&iface.name),
                Err(e) => {
                    first_error.get_or_insert_with(|| anyhow::anyhow!("{e:#}"));
                    return out;
                }
            };
            let Some(link) = link else {
                return out; // not there: `up` shows 0, which is no collection failure
            };
            match wireguard::observe(&iface.name, Backend::of(link)) {
                Ok(device) => {
                    let names: HashMap<&PublicKey, &str> = iface
                        .peers
                        .iter()
                        .map(|p| (&p.public_key, p.name.as_str()))
                        .collect();
                    out.up = link.up;
                    out.peers = device
                        .peers
                        .into_iter()
                        .map(|p| WgPeer {
                            friendly_name: names
                                .get(&p.public_key)
                                .map_or(String::new(), |n| (*n).to_string()),
                            public_key: p.public_key.to_base64(),
                            allowed_ips: p.allowed_ips,
                            latest_handshake: p.last_handshake,
                            rx_bytes: p.rx_bytes,
                            tx_bytes: p.tx_bytes,
                        })
                        .collect();
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
            out
        })
        .collect();
    (interfaces, first_error.map_or(Ok(()), Err))
}

/// The config's WireGuard links that exist, by name (`ip link show NAME` for each).
///
/// rtnetlink is asynchronous. Called on a blocking thread of the daemon's runtime (as
/// [`super::serve`] does), it runs there, on that runtime; the socket is still opened in this
/// thread's network namespace. Only a caller without a runtime (a test, a one-off command)
/// gets a small one of its own.
fn links(config: &Config) -> anyhow::Result<HashMap<String, crate::link::Interface>> {
    let lookup = async {
        let nl = Netlink::connect()?;
        let mut links = HashMap::new();
        for iface in &config.wireguard {
            let link = tokio::time::timeout(Duration::from_secs(5), nl.interface(&iface.name))
                .await
                .with_context(|| format!("no answer from rtnetlink about {}", iface.name))??;
            if let Some(link) = link {
                links.insert(iface.name.clone(), link);
            }
        }
        Ok(links)
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(lookup),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .context("starting a runtime for rtnetlink")?
            .block_on(lookup),
    }
}

fn ipsec_sites(status: &crate::xfrm::status::Status) -> Vec<IpsecSite> {
    status
        .sites
        .iter()
        .map(|site| IpsecSite {
            name: site.name.clone(),
            sas: site
                .sas
                .iter()
                .map(|sa| IpsecSa {
                    direction: sa.direction,
                    spi: sa.spi,
                    installed: sa.installed,
                    bytes: sa.bytes,
                    packets: sa.packets,
                    age: sa.age_secs.map(Duration::from_secs),
                })
                .collect(),
        })
        .collect()
}

/// The UDP ports something should listen on: each WireGuard interface's port, and IKE's
/// 500 and 4500 (charon always uses both) when a site uses IKE keying.
fn vpn_ports(config: &Config) -> Vec<(&'static str, u16)> {
    let mut ports: Vec<(&'static str, u16)> = config
        .wireguard
        .iter()
        .filter_map(|i| i.listen_port.map(|p| ("wireguard", p)))
        .collect();
    if config
        .ipsec
        .iter()
        .any(|s| matches!(s.keying, Keying::Ike(_)))
    {
        ports.extend([("ike", 500), ("natt", 4500)]);
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}
