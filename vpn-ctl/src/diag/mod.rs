//! `vpn-ctl diag`: watch VPN packets arrive on the WAN port, and say what that means.
//!
//! Replaces `tcpdump -i wan udp port 51820` and `netstat -nulp`: the XDP program counts every
//! VPN packet by service, message kind and source; sock_diag tells what listens on the ports;
//! [`verdict`] turns both into plain-language findings.

pub mod verdict;
pub mod view;

use std::{
    io::{IsTerminal as _, Write},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};
use vpn_common::Ports;

use crate::{
    link::{Interface, Netlink},
    sockets::{self, UdpListener},
    xdp::{AttachMode, Attached, CounterRow, Counters, Mode, Policy, Source, WanProgram},
};
pub use verdict::{Level, Verdict};

/// What `diag` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// The WAN interface.
    pub wan: String,
    /// Stop after this long; run until Ctrl-C or SIGTERM when `None`.
    pub duration: Option<Duration>,
    /// Refresh interval of the live view.
    pub interval: Duration,
    /// Show the live view (otherwise only the final report).
    pub live: bool,
    pub attach: AttachMode,
    /// Detach another XDP program that is already on the interface.
    pub force: bool,
    pub policy: Policy,
    /// Size of the per-source table.
    pub sources: u32,
    /// Sources shown in the view.
    pub top: usize,
}

/// What `diag` saw: the `--json` output.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub interface: String,
    pub attach_mode: Attached,
    pub mode: Mode,
    pub ports: PortsJson,
    pub elapsed_secs: f64,
    /// Whether the interface was up (administratively) when diag started.
    pub interface_up: bool,
    pub counters: Vec<CounterRow>,
    /// The same counters, keyed, for rendering and verdicts.
    #[serde(skip)]
    pub totals: Counters,
    pub sources: Vec<Source>,
    /// What listens on the VPN ports; `None` (JSON `null`) when the kernel cannot say (no
    /// UDP sock_diag: a verdict says what to load).
    pub listeners: Option<Vec<UdpListener>>,
    pub verdicts: Vec<Verdict>,
    /// What the firewall does to the configured tunnels' traffic (when a config was read):
    /// XDP sees packets before the firewall, so a packet counted here may still be dropped.
    pub firewall: Vec<crate::firewall::Finding>,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct PortsJson {
    pub wireguard: u16,
    pub ike: u16,
    pub natt: u16,
}

impl From<Ports> for PortsJson {
    fn from(p: Ports) -> Self {
        PortsJson {
            wireguard: p.wireguard,
            ike: p.ike,
            natt: p.natt,
        }
    }
}

/// Runs the diagnostic: attach, watch, detach, report. The program is detached on every way
/// out (end of duration, Ctrl-C, SIGTERM, an error): the attachment is a BPF link owned by
/// this process and dropped with it.
pub async fn run(opts: &Options, out: &mut impl Write) -> anyhow::Result<Report> {
    let netlink = Netlink::connect()?;
    let iface = wan_interface(&netlink, opts).await?;
    if !iface.up {
        log::warn!(
            "{} is down: no packet can arrive until it is up (`ip link set {} up`)",
            iface.name,
            iface.name
        );
    }

    let mut program = WanProgram::load(opts.sources)?;
    program.set_policy(&opts.policy)?;
    let attached = program.attach(&iface.name, opts.attach)?;
    if attached == Attached::Generic && opts.attach == AttachMode::Auto {
        log::info!(
            "{}: the driver cannot run XDP natively; attached in generic mode",
            iface.name
        );
    }

    let watched = watch(opts, &netlink, &program, attached, out).await;
    program.detach()?;
    let (counters, sources, elapsed) = watched?;

    // A router kernel without UDP sock_diag (OpenWrt installs kmod-inet-diag only on
    // request) still gets its counters and verdicts; only the listener check is missing.
    let listeners = sockets::udp_listeners(&[
        opts.policy.ports.wireguard,
        opts.policy.ports.ike,
        opts.policy.ports.natt,
    ])
    .map_err(|e| format!("{e:#}"));
    let verdicts = verdict::verdicts(&verdict::Findings {
        interface: &iface.name,
        interface_up: iface.up,
        ports: opts.policy.ports,
        elapsed,
        counters: &counters,
        sources: &sources,
        listeners: listeners.as_deref().map_err(String::as_str),
        attached,
        mode: opts.policy.mode,
    });
    Ok(Report {
        interface: iface.name.clone(),
        attach_mode: attached,
        mode: opts.policy.mode,
        ports: opts.policy.ports.into(),
        elapsed_secs: elapsed.as_secs_f64(),
        interface_up: iface.up,
        counters: counters.rows(),
        totals: counters.clone(),
        sources: sources.into_iter().take(opts.top).collect(),
        listeners: listeners.ok(),
        verdicts,
        firewall: Vec::new(),
    })
}

/// The WAN interface, checked: it exists, and no other XDP program is on it (or `--force`).
async fn wan_interface(netlink: &Netlink, opts: &Options) -> anyhow::Result<Interface> {
    let Some(mut iface) = netlink.interface(&opts.wan).await? else {
        bail!(
            "interface {} does not exist in this network namespace; `ip link` lists the \
             interfaces (the WAN port is often eth0, wan, or pppoe-wan on OpenWrt)",
            opts.wan
        );
    };
    if let Some(other) = &iface.xdp {
        let name = other.program_name().unwrap_or_else(|| "unnamed".into());
        if !opts.force {
            bail!(
                "{} already has an XDP program attached (id {}, {name}, {} mode); diag would have \
                 to replace it. Detach it with `ip link set dev {} xdp off`, or run diag with \
                 --force to detach it (it is not restored afterwards)",
                iface.name,
                other.program_id,
                other.mode,
                iface.name
            );
        }
        log::warn!(
            "{}: detaching XDP program {} ({name}) as asked by --force; it is not restored afterwards",
            iface.name,
            other.program_id
        );
        netlink.detach_xdp(&iface).await?;
        iface.xdp = None;
    }
    Ok(iface)
}

/// The live loop: refresh the view every interval until the duration ends or a signal comes.
async fn watch(
    opts: &Options,
    netlink: &Netlink,
    program: &WanProgram,
    attached: Attached,
    out: &mut impl Write,
) -> anyhow::Result<(Counters, Vec<Source>, Duration)> {
    let started = Instant::now();
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut ticker = tokio::time::interval(opts.interval);
    ticker.tick().await;
    let deadline = opts
        .duration
        .map(|d| tokio::time::Instant::from_std(started + d));
    let sleep_until_deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep_until_deadline);
    let tty = std::io::stdout().is_terminal();
    let mut previous = Counters::default();
    let mut previous_at = started;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut sleep_until_deadline => break,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
        if netlink.interface(&opts.wan).await?.is_none() {
            bail!(
                "interface {} vanished during the run (deleted or moved to another namespace); \
                 diag stopped",
                opts.wan
            );
        }
        if opts.live {
            let counters = program.counters()?;
            let sources = program.sources()?;
            let now = Instant::now();
            let frame = view::Frame {
                interface: &opts.wan,
                attached,
                mode: opts.policy.mode,
                elapsed: now - started,
                counters: &counters,
                previous: &previous,
                since_previous: now - previous_at,
                sources: &sources,
                top: opts.top,
            };
            if tty {
                // Clear the screen and redraw in place.
                write!(out, "\x1b[H\x1b[2J")?;
            }
            write!(out, "{}", view::render(&frame))?;
            out.flush()?;
            previous = counters;
            previous_at = now;
        }
    }
    Ok((program.counters()?, program.sources()?, started.elapsed()))
}
