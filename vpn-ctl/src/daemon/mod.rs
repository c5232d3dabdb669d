//! `vpn-ctl daemon`: keeps the kernel converged to the config, serves Prometheus metrics and
//! counts VPN packets on the WAN port.
//!
//! It converges with the same library code as `vpn-ctl up` ([`crate::commands::converge`]):
//! - at start;
//! - on `SIGHUP`, after reading the config again: a diff, so unchanged peers keep their
//!   sessions; a config with problems is reported as `up` reports it, and the running
//!   config stays;
//! - when the kernel reports that one of its links, addresses, routes, or (for static IPsec
//!   sites) SAs or policies was removed or changed underneath it ([`events`]), after
//!   [`DEBOUNCE`] of quiet;
//! - every `[daemon] tick`, which also re-resolves the DNS names of peers whose handshake is
//!   stale ([`crate::wireguard::RERESOLVE_AFTER`], as wireguard-tools' `reresolve-dns.sh`)
//!   and of IKE sites' gateways ([`resolve`]), and runs the IPsec watchdog.
//!
//! For IKE sites it follows charon's events ([`renewal::follow`]): every re-authentication
//! and rekey is logged, a failed one as a warning with charon's reason, and counted in
//! `vpnctl_ipsec_renewals_total` and `vpnctl_ipsec_renewal_failures_total`.
//!
//! A failed converge is logged and retried with backoff. `SIGTERM` or `SIGINT` stops the
//! metrics server, detaches the XDP program and exits 0; the tunnels stay up (as a service
//! restart should not cut every client off); `vpn-ctl down` removes them. Under systemd
//! (`Type=notify`) it reports `READY=1` after the first converge, `RELOADING=1` and
//! `READY=1` around a reload, `STOPPING=1`, and a one-line `STATUS=`.
//!
//! Logs are plain words with `key=value` fields, e.g.
//! `converged reason=sighup changes=1 "wg0: update peer laptop: keepalive 30"`.

pub mod events;
pub mod resolve;

use std::{
    collections::HashSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use sd_notify::NotifyState;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot, watch},
    time::Instant,
};

use self::events::{Event, Managed};
use crate::{
    config::{self, Config, DaemonXdp, ipsec::Keying},
    ike::renewal::{self, Renewals},
    key::PublicKey,
    link::Netlink,
    metrics,
    watchdog::Watchdog,
    wireguard::{self, BackendChoice, Endpoints, UpOptions},
    xdp::{AttachMode, WanProgram},
};

/// Quiet time after a kernel notification before converging: one change underneath usually
/// comes as several messages (a deleted link takes its addresses and routes with it).
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// The first wait before retrying a failed converge; it doubles up to the tick.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// How many changes one converge's log line lists.
const LOGGED_CHANGES: usize = 20;
/// How long shutdown waits for the metrics server to finish its answers.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Runs the daemon until `SIGTERM` or `SIGINT`. A config with problems at start is an error
/// (with the same diagnostics as `up`); later problems are logged and survived.
pub fn run(config_path: &Path, backend: BackendChoice) -> anyhow::Result<()> {
    let config = config::load(config_path)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let daemon = Daemon::start(config_path, config, backend).await?;
        daemon.run().await
    })
}

/// Why a converge runs, for the log.
#[derive(Debug, Clone)]
enum Reason {
    Start,
    Sighup,
    Event(String),
    Tick,
    Retry,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Start => f.write_str("start"),
            Reason::Sighup => f.write_str("sighup"),
            Reason::Event(what) => write!(f, "event event=\"{what}\""),
            Reason::Tick => f.write_str("tick"),
            Reason::Retry => f.write_str("retry"),
        }
    }
}

struct Daemon {
    path: PathBuf,
    backend: BackendChoice,
    config: watch::Sender<Arc<Config>>,
    nl: Netlink,
    xdp: Option<Arc<Mutex<WanProgram>>>,
    xdp_on: Option<String>,
    metrics_listen: Option<SocketAddr>,
    metrics: Option<(
        oneshot::Sender<()>,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    )>,
    events: mpsc::UnboundedReceiver<Event>,
    managed: Managed,
    /// Peers whose configured endpoint was edited and not yet applied.
    edited: HashSet<(String, PublicKey)>,
    watchdog: Option<Watchdog>,
    gateways: resolve::Gateways,
    /// The next converge that is waiting (debounce or retry), and why.
    pending: Option<(Instant, Reason)>,
    retry: Duration,
    last_converge: String,
    /// The warnings of the last converge (firewall findings), logged when they change.
    last_warnings: Vec<String>,
    /// The IKE sites' renewals, counted from charon's events by `renewal_events`.
    renewals: Arc<Mutex<Renewals>>,
    renewal_events: Option<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    async fn start(path: &Path, config: Config, backend: BackendChoice) -> anyhow::Result<Daemon> {
        let settings = config.daemon.clone();
        let (config_tx, config_rx) = watch::channel(Arc::new(config));
        let nl = Netlink::connect()?;
        // Subscribe before the first converge, so nothing in between is missed.
        let events = events::subscribe()?;
        let mut daemon = Daemon {
            path: path.to_path_buf(),
            backend,
            config: config_tx,
            nl,
            xdp: None,
            xdp_on: None,
            metrics_listen: settings.metrics_listen,
            metrics: None,
            events,
            managed: Managed::default(),
            edited: HashSet::new(),
            watchdog: Some(Watchdog::new(
                settings.tick,
                crate::ike::DEFAULT_SOCKET.into(),
            )),
            gateways: resolve::Gateways::default(),
            pending: None,
            retry: RETRY_FIRST,
            last_converge: "not converged yet".into(),
            last_warnings: Vec::new(),
            renewals: Arc::new(Mutex::new(Renewals::new())),
            renewal_events: None,
        };
        daemon.apply_xdp();
        daemon.renewal_events = Some(tokio::spawn(renewal::follow(
            crate::ike::DEFAULT_SOCKET.into(),
            config_rx.clone(),
            daemon.renewals.clone(),
        )));
        if let Some(addr) = settings.metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!(
                    "cannot serve metrics on {addr} (in use by another exporter? not an address \
                     of this host?): change [daemon] metrics_listen in {}, or set it to \"off\"",
                    path.display()
                )
            })?;
            let source: Arc<dyn metrics::Source> = Arc::new(metrics::SystemSource::new(
                config_rx.clone(),
                daemon.xdp.clone(),
                Some(daemon.renewals.clone()),
            ));
            let options = metrics::Options {
                max_peer_series: settings.metrics_max_peers,
            };
            let (stop, stopped) = oneshot::channel::<()>();
            let server = tokio::spawn(metrics::serve(listener, source, options, async move {
                let _ = stopped.await;
            }));
            daemon.metrics = Some((stop, server));
            log::info!("metrics listening address={addr} path=/metrics");
        }
        Ok(daemon)
    }

    async fn run(mut self) -> anyhow::Result<()> {
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        self.converge(Reason::Start).await;
        notify(&[NotifyState::Ready, NotifyState::Status(&self.status_line())]);
        log::info!(
            "daemon ready pid={} config={}",
            std::process::id(),
            self.path.display()
        );
        let mut tick = self.ticker();
        let stop = loop {
            let pending = self.pending.as_ref().map(|(at, _)| *at);
            tokio::select! {
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
                _ = hup.recv() => {
                    if self.reload().await {
                        tick = self.ticker();
                    }
                }
                Some(event) = self.events.recv() => {
                    if let Some(what) = event.concerns(&self.managed) {
                        log::debug!("kernel notification concerns the config what=\"{what}\"");
                        // Debounce: wait for quiet, but keep an earlier retry's time.
                        let at = Instant::now() + DEBOUNCE;
                        match &mut self.pending {
                            Some((when, Reason::Event(_))) => *when = at,
                            Some(_) => {}
                            None => self.pending = Some((at, Reason::Event(what))),
                        }
                    }
                }
                () = sleep_until(pending) => {
                    if let Some((_, reason)) = self.pending.take() {
                        self.converge(reason).await;
                    }
                }
                _ = tick.tick() => self.on_tick().await,
            }
        };
        log::info!("stopping signal={stop}; the tunnels stay up (`vpn-ctl down` removes them)");
        notify(&[NotifyState::Stopping]);
        self.shutdown().await;
        Ok(())
    }

    fn ticker(&self) -> tokio::time::Interval {
        let period = self.config.borrow().daemon.tick;
        let mut tick = tokio::time::interval_at(Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    }

    /// Converges to the current config (in a blocking thread: DNS lookups and the userspace
    /// device's start are blocking), logs what changed, and schedules a retry on failure.
    async fn converge(&mut self, reason: Reason) {
        // This pass covers every notification and retry that was waiting for one.
        self.pending = None;
        let config = self.config.borrow().clone();
        let options = UpOptions {
            backend: self.backend,
            endpoints: Endpoints::Reresolve {
                fresh: wireguard::RERESOLVE_AFTER,
                force: self.edited.clone(),
            },
        };
        let result =
            blocking(move || async move { crate::commands::converge(&config, &options).await })
                .await;
        match result {
            Ok(crate::commands::Converged { changes, warnings }) => {
                // The same findings on every tick are said once, again when they change.
                if warnings != self.last_warnings {
                    for warning in &warnings {
                        log::warn!("{warning}");
                    }
                    self.last_warnings = warnings;
                }
                self.edited.clear();
                self.retry = RETRY_FIRST;
                if changes.is_empty() {
                    log::debug!("converged reason={reason} changes=0");
                } else {
                    log::info!(
                        "converged reason={reason} changes={} {}",
                        changes.len(),
                        quote_changes(&changes)
                    );
                }
                self.last_converge = format!("converged ({} changes at the last)", changes.len());
            }
            Err(e) => {
                let tick = self.config.borrow().daemon.tick;
                log::warn!(
                    "converge failed reason={reason} retry_in={}s error=\"{e:#}\"",
                    self.retry.as_secs()
                );
                self.pending = Some((Instant::now() + self.retry, Reason::Retry));
                self.retry = (self.retry * 2).min(tick);
                self.last_converge = format!("converge failed: {e:#}");
            }
        }
        if let Err(e) = self.refresh_managed().await {
            log::warn!("reading the managed links failed error=\"{e:#}\"");
        }
        notify(&[NotifyState::Status(&self.status_line())]);
    }

    /// The indices the config's links have now (they change when a link is re-created).
    async fn refresh_managed(&mut self) -> anyhow::Result<()> {
        let config = self.config.borrow().clone();
        let mut managed = Managed {
            names: config.wireguard.iter().map(|i| i.name.clone()).collect(),
            indices: HashSet::new(),
            static_ipsec: config
                .ipsec
                .iter()
                .any(|s| matches!(s.keying, Keying::Static(_))),
        };
        for iface in &config.wireguard {
            if let Some(link) = self.nl.interface(&iface.name).await? {
                managed.indices.insert(link.index);
            }
        }
        self.managed = managed;
        Ok(())
    }

    /// Reads the config again and applies it. Returns whether the tick changed.
    async fn reload(&mut self) -> bool {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => notify(&[NotifyState::Reloading, now]),
            Err(_) => notify(&[NotifyState::Reloading]),
        }
        let new = match config::load(&self.path) {
            Ok(new) => new,
            Err(e) => {
                log::error!(
                    "reload refused: {} has problems; the daemon keeps the config it runs \
                     with\n{e}",
                    self.path.display()
                );
                notify(&[
                    NotifyState::Ready,
                    NotifyState::Status("reload refused: the config has problems (see the log)"),
                ]);
                return false;
            }
        };
        let old = self.config.borrow().clone();
        self.edited.extend(resolve::edited_endpoints(&old, &new));
        let tick_changed = old.daemon.tick != new.daemon.tick;
        if old.daemon.metrics_listen != new.daemon.metrics_listen
            || old.daemon.metrics_max_peers != new.daemon.metrics_max_peers
        {
            log::warn!(
                "metrics settings changed in the config; they apply when the daemon restarts \
                 listening={}",
                self.metrics_listen
                    .map_or("off".to_string(), |a| a.to_string())
            );
        }
        self.config.send_replace(Arc::new(new));
        self.apply_xdp();
        log::info!("reloaded config={}", self.path.display());
        self.converge(Reason::Sighup).await;
        notify(&[NotifyState::Ready, NotifyState::Status(&self.status_line())]);
        tick_changed
    }

    /// The periodic pass: converge (which re-resolves stale peers' names), IKE gateways whose
    /// names moved, the IPsec watchdog.
    async fn on_tick(&mut self) {
        self.converge(Reason::Tick).await;
        let config = self.config.borrow().clone();
        if config.ipsec.is_empty() {
            return;
        }
        let moved: Vec<(String, String)> = self
            .gateways
            .changed(&config)
            .into_iter()
            .map(|(site, what)| (site.name.clone(), what))
            .collect();
        let Some(mut watchdog) = self.watchdog.take() else {
            return;
        };
        let (watchdog, result) = blocking(move || async move {
            let socket = std::path::Path::new(crate::ike::DEFAULT_SOCKET);
            for (name, what) in &moved {
                log::info!("gateway moved site={name} what=\"{what}\"; renegotiating");
                let site = config.ipsec.iter().find(|s| &s.name == name);
                if let Some(site) = site
                    && let Err(e) = crate::watchdog::restart_ike(site, socket).await
                {
                    log::warn!("renegotiating failed site={name} error=\"{e:#}\"");
                }
            }
            let result = match Netlink::connect() {
                Ok(nl) => watchdog.pass(&nl, &config).await,
                Err(e) => Err(e),
            };
            (watchdog, result)
        })
        .await;
        self.watchdog = Some(watchdog);
        if let Err(e) = result {
            log::warn!("watchdog pass failed error=\"{e:#}\"");
        }
    }

    /// Attaches or detaches the XDP program as `[daemon] xdp` and `[router] wan` say. A
    /// failure to attach is a warning: the rest of the daemon works without it.
    fn apply_xdp(&mut self) {
        let config = self.config.borrow().clone();
        let want = match (config.daemon.xdp, &config.router.wan) {
            (DaemonXdp::Count, Some(wan)) => Some(wan.clone()),
            _ => None,
        };
        if want == self.xdp_on {
            return;
        }
        if let (Some(program), Some(wan)) = (&self.xdp, &self.xdp_on) {
            match program.lock().expect("XDP lock").detach() {
                Ok(()) => log::info!("xdp detached interface={wan}"),
                Err(e) => log::warn!("xdp detach failed interface={wan} error=\"{e:#}\""),
            }
            self.xdp_on = None;
        }
        let Some(wan) = want else {
            return;
        };
        if self.xdp.is_none() {
            match WanProgram::load(vpn_common::DEFAULT_SOURCES) {
                Ok(p) => self.xdp = Some(Arc::new(Mutex::new(p))),
                Err(e) => {
                    log::warn!(
                        "xdp unavailable error=\"{e:#}\"; metrics go on without WAN counters"
                    );
                    return;
                }
            }
        }
        let program = self.xdp.as_ref().expect("loaded above");
        match program
            .lock()
            .expect("XDP lock")
            .attach(&wan, AttachMode::Auto)
        {
            Ok(mode) => {
                log::info!(
                    "xdp counting interface={wan} mode={} (monitor: every packet passes)",
                    mode.name()
                );
                self.xdp_on = Some(wan);
            }
            Err(e) => log::warn!(
                "xdp attach failed interface={wan} error=\"{e:#}\"; metrics go on without WAN \
                 counters (is another XDP program on {wan}? `vpn-ctl diag` shows it)"
            ),
        }
    }

    fn status_line(&self) -> String {
        let config = self.config.borrow();
        let peers: usize = config.wireguard.iter().map(|i| i.peers.len()).sum();
        format!(
            "{}; {} WireGuard interface(s), {peers} peer(s), {} IPsec site(s); metrics {}; xdp {}",
            self.last_converge,
            config.wireguard.len(),
            config.ipsec.len(),
            self.metrics_listen
                .map_or("off".to_string(), |a| a.to_string()),
            self.xdp_on.as_deref().unwrap_or("off"),
        )
    }

    async fn shutdown(mut self) {
        if let Some(task) = self.renewal_events.take() {
            task.abort();
        }
        if let Some((stop, server)) = self.metrics.take() {
            let _ = stop.send(());
            match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
                Ok(Ok(Err(e))) => log::warn!("metrics server ended error=\"{e:#}\""),
                Ok(_) => {}
                Err(_) => log::warn!("metrics server did not stop in time; leaving it"),
            }
        }
        if let (Some(program), Some(wan)) = (self.xdp.take(), self.xdp_on.take()) {
            match program.lock().expect("XDP lock").detach() {
                Ok(()) => log::info!("xdp detached interface={wan}"),
                Err(e) => log::warn!("xdp detach failed interface={wan} error=\"{e:#}\""),
            }
        }
        log::info!("stopped");
    }
}

/// Runs an async job on a blocking thread of the runtime: converging makes blocking calls
/// (DNS, the userspace device's start, ping), which must not stall the metrics server.
async fn blocking<F, Fut, T>(job: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(job()))
        .await
        .expect("the blocking job panicked")
}

/// The changes of a converge for its log line, each quoted; at most [`LOGGED_CHANGES`] of
/// them (a first start with 10,000 peers is 10,000 changes).
fn quote_changes(changes: &[String]) -> String {
    let mut out: Vec<String> = changes
        .iter()
        .take(LOGGED_CHANGES)
        .map(|c| format!("{c:?}"))
        .collect();
    if changes.len() > LOGGED_CHANGES {
        out.push(format!("(and {} more)", changes.len() - LOGGED_CHANGES));
    }
    out.join(" ")
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Tells systemd (when `NOTIFY_SOCKET` is set; otherwise does nothing).
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        log::debug!("sd_notify failed error=\"{e}\"");
    }
}
