//! WireGuard interfaces from the config: `up` (converge), `down`, `status`.
//!
//! `up` reads what is there, diffs it against the config and changes only what differs, so a
//! second `up` changes nothing: no handshake, counter or session is disturbed. Links,
//! addresses and MTU go over rtnetlink; keys, port, mark and peers over the kernel's
//! WireGuard generic-netlink family (wireguard-control, which splits large peer lists across
//! messages), or over the UAPI socket of the userspace backend.
//!
//! vpn-ctl only changes links it created: they carry the alias [`MANAGED_ALIAS`], and its
//! routes carry the protocol number [`crate::route::PROTOCOL`].

pub mod diff;

use std::{
    collections::HashSet,
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, bail};
use ipnet::IpNet;
use serde::Serialize;
use wireguard_control::{
    AllowedIp, Backend as WgBackend, Device, DeviceUpdate, InterfaceName, PeerConfigBuilder,
};

pub use self::diff::{
    DesiredDevice, DesiredPeer, DevicePlan, ObservedDevice, ObservedPeer, PeerChange,
};
use crate::{
    config::{Config, WgInterface},
    key::{PublicKey, Secret},
    link::{Interface, MANAGED_ALIAS, Netlink},
};

/// Which WireGuard implementation runs an interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// The kernel's module when it has one, the userspace implementation otherwise.
    #[default]
    Auto,
    Kernel,
    Userspace,
}

/// The implementation actually used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Kernel,
    Userspace,
}

impl Backend {
    /// The backend of an existing link: kernel WireGuard links have kind `wireguard`, the
    /// userspace implementation runs on a TUN device.
    pub(crate) fn of(link: &Interface) -> Backend {
        if link.kind.as_deref() == Some("wireguard") {
            Backend::Kernel
        } else {
            Backend::Userspace
        }
    }
}

/// What `up` or `down` did, one line per change.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub changes: Vec<String>,
}

impl Report {
    fn note(&mut self, iface: &str, what: impl std::fmt::Display) {
        self.changes.push(format!("{iface}: {what}"));
    }
}

/// How a converge treats the endpoints the config gives peers.
#[derive(Debug, Clone, Default)]
pub enum Endpoints {
    /// Resolve every configured endpoint and set it where the device has another one; a name
    /// that does not resolve is an error (`vpn-ctl up`).
    #[default]
    Set,
    /// The daemon's rule, wireguard-tools' `reresolve-dns.sh`: a peer whose latest handshake
    /// is younger than `fresh` keeps the endpoint the device has (the peer may have roamed;
    /// its name is not looked up); the others' names are resolved again and the endpoint
    /// set when the address changed. Peers listed in `force` (interface, public key) are
    /// resolved and set whatever their handshake (their configured endpoint was edited). A
    /// name that does not resolve keeps the device's endpoint, with a warning.
    Reresolve {
        fresh: Duration,
        force: HashSet<(String, PublicKey)>,
    },
}

/// wireguard-tools' `reresolve-dns.sh` re-resolves a peer's endpoint when its latest
/// handshake is older than this: REJECT_AFTER_TIME (180 s) less a margin, 135 s in the
/// script.
pub const RERESOLVE_AFTER: Duration = Duration::from_secs(135);

/// What a converge does besides the config: which implementation new links get, and how
/// endpoints are treated.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    pub backend: BackendChoice,
    pub endpoints: Endpoints,
}

/// Converges every WireGuard interface of the config. On an error, the message says what
/// was applied before it; running `up` again converges from there.
pub async fn up(config: &Config, choice: BackendChoice) -> anyhow::Result<Report> {
    up_with(
        config,
        &UpOptions {
            backend: choice,
            endpoints: Endpoints::Set,
        },
    )
    .await
}

/// [`up`] with the daemon's choices (see [`UpOptions`]).
pub async fn up_with(config: &Config, options: &UpOptions) -> anyhow::Result<Report> {
    let nl = Netlink::connect()?;
    let mut report = Report::default();
    let result = async {
        for iface in &config.wireguard {
            up_interface(&nl, iface, options, &mut report).await?;
        }
        remove_unconfigured(&nl, config, &mut report).await
    }
    .await;
    match result {
        Ok(()) => Ok(report),
        Err(e) => Err(crate::journal::failed(e, "up", &report.changes)),
    }
}

async fn up_interface(
    nl: &Netlink,
    iface: &WgInterface,
    options: &UpOptions,
    report: &mut Report,
) -> anyhow::Result<()> {
    let name = &iface.name;
    // `up` resolves every name before it touches anything; the daemon only the stale peers'.
    let resolved = match &options.endpoints {
        Endpoints::Set => Some(desired_device(iface)?),
        Endpoints::Reresolve { .. } => None,
    };
    let link = match nl.interface(name).await? {
        Some(link) if !link.is_managed() && crate::creation::exists(name) => {
            nl.mark_managed(&link).await?;
            crate::creation::forget(name);
            report.note(
                name,
                "adopted the link an interrupted `vpn-ctl up` was creating",
            );
            Interface {
                alias: Some(MANAGED_ALIAS.to_string()),
                ..link
            }
        }
        Some(link) if !link.is_managed() => bail!(
            "interface {name} exists but vpn-ctl did not create it (wg-quick, or by hand?); \
             vpn-ctl leaves it alone. Remove it (`wg-quick down {name}` or `ip link del {name}`) \
             or give the interface another name in the config"
        ),
        Some(link) => link,
        None => {
            let backend = resolve_backend(options.backend)?;
            let link = create_link(nl, name, backend).await?;
            report.note(name, format!("created the link ({})", describe(backend)));
            link
        }
    };
    let backend = Backend::of(&link);

    // Device: keys, port, mark, peers.
    let observed = observe(name, backend)?;
    let desired = match (resolved, &options.endpoints) {
        (Some(desired), _) => desired,
        (None, Endpoints::Reresolve { fresh, force }) => {
            reresolved_device(iface, &observed, *fresh, force, SystemTime::now())
        }
        (None, Endpoints::Set) => unreachable!("resolved above"),
    };
    let plan = diff::diff(&desired, Some(&observed));
    if !plan.is_empty() {
        apply(name, backend, &plan, &desired)?;
        for line in plan.describe() {
            report.note(name, line);
        }
    }

    if let Some(mtu) = iface.mtu
        && link.mtu != Some(mtu)
    {
        nl.set_mtu(&link, mtu).await?;
        report.note(name, format!("set MTU {mtu}"));
    }

    let have = nl.addresses(&link).await?;
    for net in &iface.addresses {
        if !have.contains(net) {
            nl.add_address(&link, *net).await?;
            report.note(name, format!("added address {net}"));
        }
    }
    for net in have.iter().filter(|n| !iface.addresses.contains(n)) {
        nl.delete_address(&link, *net).await?;
        report.note(name, format!("removed address {net}"));
    }

    if !link.up {
        nl.set_up(&link).await?;
        report.note(name, "set the link up");
    }

    let want = routes(iface)?;
    let have = nl.managed_routes(&link).await?;
    for net in want.iter().filter(|n| !have.contains(n)) {
        nl.add_route(&link, *net).await?;
        report.note(name, format!("added route {net}"));
    }
    for net in have.iter().filter(|n| !want.contains(n)) {
        nl.delete_route(&link, *net).await?;
        report.note(name, format!("removed route {net}"));
    }
    Ok(())
}

/// Deletes the links vpn-ctl created for interfaces the config no longer has.
async fn remove_unconfigured(
    nl: &Netlink,
    config: &Config,
    report: &mut Report,
) -> anyhow::Result<()> {
    for link in nl.interfaces().await? {
        if is_ours(&link) && config.interface(&link.name).is_none() {
            delete_link(nl, &link).await?;
            report.note(&link.name, "deleted the link (no longer in the config)");
        }
    }
    Ok(())
}

/// Removes what `up` created for the config's interfaces: the links vpn-ctl made (their
/// addresses and routes go with them). Links vpn-ctl did not create are left alone.
pub async fn down(config: &Config) -> anyhow::Result<Report> {
    let nl = Netlink::connect()?;
    let mut report = Report::default();
    for iface in &config.wireguard {
        match nl.interface(&iface.name).await? {
            Some(link) if is_ours(&link) => {
                delete_link(&nl, &link).await?;
                report.note(&iface.name, "deleted the link");
            }
            Some(_) => report.note(&iface.name, "left alone: vpn-ctl did not create it"),
            None => {}
        }
    }
    // And vpn-ctl's links the config no longer names (an emptied config included).
    remove_unconfigured(&nl, config, &mut report).await?;
    Ok(report)
}

/// Whether vpn-ctl created `link`: it carries the mark, or an interrupted `up` was creating
/// it (see [`crate::creation`]).
pub fn is_ours(link: &Interface) -> bool {
    link.is_managed() || crate::creation::exists(&link.name)
}

/// `ip link del NAME`, after removing the peers in one message: deleting an interface that
/// still has thousands of peers takes minutes in the kernel (TOOLCHAIN.md §5), replacing the
/// peer list with nothing takes milliseconds (`wg set NAME` with the replace-peers flag).
async fn delete_link(nl: &Netlink, link: &Interface) -> anyhow::Result<()> {
    let deleted = match Backend::of(link) {
        Backend::Kernel => {
            let name = interface_name(&link.name)?;
            DeviceUpdate::new()
                .replace_peers()
                .apply(&name, WgBackend::Kernel)
                .with_context(|| format!("removing the peers of {} failed", link.name))?;
            nl.delete(link).await
        }
        Backend::Userspace => crate::userspace::stop(&link.name),
    };
    if deleted.is_ok() {
        crate::creation::forget(&link.name);
    }
    deleted
}

fn resolve_backend(choice: BackendChoice) -> anyhow::Result<Backend> {
    Ok(match choice {
        BackendChoice::Kernel => Backend::Kernel,
        BackendChoice::Userspace => Backend::Userspace,
        BackendChoice::Auto => {
            if kernel_has_wireguard() {
                Backend::Kernel
            } else {
                log::warn!(
                    "this kernel has no WireGuard module; running the interface on vpn-ctl's \
                     built-in userspace WireGuard (slower; `modprobe wireguard` or a kernel with \
                     CONFIG_WIREGUARD gives the kernel backend)"
                );
                Backend::Userspace
            }
        }
    })
}

fn describe(backend: Backend) -> &'static str {
    match backend {
        Backend::Kernel => "kernel WireGuard",
        Backend::Userspace => "userspace WireGuard, as this kernel has no WireGuard module",
    }
}

/// Whether the kernel's WireGuard generic-netlink family exists or can be loaded.
fn kernel_has_wireguard() -> bool {
    std::path::Path::new("/sys/module/wireguard").exists()
        || std::process::Command::new("modprobe")
            .args(["-q", "wireguard"])
            .status()
            .is_ok_and(|s| s.success())
}

/// Creates the link `name`, recorded first (see [`crate::creation`]) so that an `up` killed
/// before the link carries the mark leaves a link the next `up` adopts and `down` deletes.
async fn create_link(nl: &Netlink, name: &str, backend: Backend) -> anyhow::Result<Interface> {
    let record = crate::creation::Record::begin(name)?;
    let link = match backend {
        Backend::Kernel => nl.create_wireguard(name).await,
        Backend::Userspace => {
            async {
                crate::userspace::start(name, None)?;
                let link = nl
                    .interface(name)
                    .await?
                    .with_context(|| format!("the userspace device did not create {name}"))?;
                nl.mark_managed(&link).await?;
                Ok(Interface {
                    alias: Some(MANAGED_ALIAS.to_string()),
                    ..link
                })
            }
            .await
        }
    };
    // Created and marked, or failed with the link removed again (`create_wireguard`) or never
    // made: either way the record has done its work. A userspace device that started but could
    // not be marked keeps its record, so the next `up` adopts it.
    if link.is_ok() || nl.interface(name).await.is_ok_and(|l| l.is_none()) {
        record.finish();
    }
    link
}

/// The device `iface` asks for, each peer's endpoint as `endpoint` decides (resolved, kept
/// from the device, or left out): the one place the config becomes a [`DesiredDevice`].
fn desired(
    iface: &WgInterface,
    mut endpoint: impl FnMut(&crate::config::Peer) -> Option<std::net::SocketAddr>,
) -> DesiredDevice {
    DesiredDevice {
        private_key: iface.private_key.clone(),
        listen_port: iface.listen_port,
        fwmark: iface.fwmark,
        peers: iface
            .peers
            .iter()
            .map(|p| DesiredPeer {
                name: p.name.clone(),
                public_key: p.public_key.clone(),
                preshared_key: p.preshared_key.clone(),
                endpoint: endpoint(p),
                persistent_keepalive: p.persistent_keepalive,
                allowed_ips: p.allowed_ips.clone(),
            })
            .collect(),
    }
}

/// The device the config asks for, with endpoint names resolved (DNS).
pub fn desired_device(iface: &WgInterface) -> anyhow::Result<DesiredDevice> {
    let mut resolved = std::collections::HashMap::new();
    for p in &iface.peers {
        if let Some(e) = &p.endpoint {
            let addr = e.resolve().with_context(|| {
                format!(
                    "resolving the endpoint {e} of peer {} on {} failed; check the name or use \
                     an address",
                    p.name, iface.name
                )
            })?;
            resolved.insert(&p.public_key, addr);
        }
    }
    Ok(desired(iface, |p| resolved.get(&p.public_key).copied()))
}

/// The device the config asks for under [`Endpoints::Reresolve`]: fresh peers keep the
/// endpoint `observed` has, the others' names are resolved again.
fn reresolved_device(
    iface: &WgInterface,
    observed: &ObservedDevice,
    fresh: Duration,
    force: &HashSet<(String, PublicKey)>,
    now: SystemTime,
) -> DesiredDevice {
    let have: std::collections::HashMap<&PublicKey, &ObservedPeer> =
        observed.peers.iter().map(|p| (&p.public_key, p)).collect();
    desired(iface, |p| {
        let seen = have.get(&p.public_key);
        let is_fresh = seen.is_some_and(|o| {
            o.endpoint.is_some()
                && o.last_handshake
                    .is_some_and(|t| now.duration_since(t).unwrap_or_default() < fresh)
        });
        let forced = force.contains(&(iface.name.clone(), p.public_key.clone()));
        let current = seen.and_then(|o| o.endpoint);
        match &p.endpoint {
            None => None,
            Some(_) if is_fresh && !forced => current,
            Some(e) => match e.resolve() {
                Ok(addr) => Some(addr),
                Err(err) => {
                    log::warn!(
                        "endpoint unresolved interface={} peer={} endpoint={e} error=\"{err}\" \
                         keeping={}: check the name, or its dynamic DNS",
                        iface.name,
                        p.name,
                        current.map_or("none".to_string(), |c| c.to_string())
                    );
                    current
                }
            },
        }
    })
}

/// The routes `up` adds: allowed IPs of peers with `route = true` that the interface's own
/// subnets do not already cover.
pub fn routes(iface: &WgInterface) -> anyhow::Result<Vec<IpNet>> {
    let mut routes: Vec<IpNet> = Vec::new();
    for peer in iface.peers.iter().filter(|p| p.route) {
        for net in &peer.allowed_ips {
            if net.prefix_len() == 0 {
                bail!(
                    "peer {} on {} allows {net} with route = true: routing everything through \
                     {} would cut the router off. Set `route = false` for this peer",
                    peer.name,
                    iface.name,
                    iface.name
                );
            }
            let covered = iface.addresses.iter().any(|a| a.trunc().contains(net));
            if !covered && !routes.contains(&net.trunc()) {
                routes.push(net.trunc());
            }
        }
    }
    Ok(routes)
}

fn interface_name(name: &str) -> anyhow::Result<InterfaceName> {
    crate::link::check_name(name)?;
    name.parse()
        .map_err(|e| anyhow::anyhow!("{name} is not a valid interface name: {e}"))
}

/// Reads a device (`wg show NAME dump`).
pub fn observe(name: &str, backend: Backend) -> anyhow::Result<ObservedDevice> {
    match backend {
        Backend::Kernel => {
            let device = Device::get(&interface_name(name)?, WgBackend::Kernel)
                .with_context(|| format!("reading WireGuard device {name} failed"))?;
            Ok(observed_from(&device))
        }
        Backend::Userspace => Ok(observed_from_uapi(&crate::userspace::get(name)?)),
    }
}

/// The userspace device's answer. It never reads keys back: the private key shows as its
/// public key, a preshared key only as present.
fn observed_from_uapi(state: &crate::userspace::DeviceState) -> ObservedDevice {
    let now = SystemTime::now();
    ObservedDevice {
        private_key: None,
        public_key: state.public_key.clone(),
        listen_port: state.listen_port,
        fwmark: state.fwmark,
        peers: state
            .peers
            .iter()
            .map(|p| ObservedPeer {
                public_key: p.public_key.clone(),
                preshared_key: None,
                preshared_key_hidden: p.has_preshared_key,
                endpoint: p.endpoint,
                persistent_keepalive: p.persistent_keepalive,
                allowed_ips: p.allowed_ips.clone(),
                last_handshake: p.since_last_handshake.and_then(|d| now.checked_sub(d)),
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
            })
            .collect(),
    }
}

fn nonzero(key: &Option<wireguard_control::Key>) -> Option<&wireguard_control::Key> {
    key.as_ref().filter(|k| k.0 != [0; 32])
}

fn observed_from(device: &Device) -> ObservedDevice {
    ObservedDevice {
        private_key: nonzero(&device.private_key).map(Secret::from_wg),
        public_key: nonzero(&device.public_key).map(PublicKey::from_wg),
        listen_port: device.listen_port.filter(|&p| p != 0),
        fwmark: device.fwmark.filter(|&m| m != 0),
        peers: device
            .peers
            .iter()
            .map(|p| ObservedPeer {
                public_key: PublicKey::from_wg(&p.config.public_key),
                preshared_key: nonzero(&p.config.preshared_key).map(Secret::from_wg),
                preshared_key_hidden: false,
                endpoint: p.config.endpoint,
                persistent_keepalive: p.config.persistent_keepalive_interval.filter(|&k| k != 0),
                allowed_ips: p
                    .config
                    .allowed_ips
                    .iter()
                    .filter_map(|a| IpNet::new(a.address, a.cidr).ok())
                    .collect(),
                last_handshake: p.stats.last_handshake_time,
                rx_bytes: p.stats.rx_bytes,
                tx_bytes: p.stats.tx_bytes,
            })
            .collect(),
    }
}

/// Sends a plan (`wg set NAME ...`): to the kernel in as few messages as fit, to the
/// userspace device over its UAPI socket.
fn apply(
    name: &str,
    backend: Backend,
    plan: &DevicePlan,
    desired: &DesiredDevice,
) -> anyhow::Result<()> {
    match backend {
        Backend::Kernel => apply_kernel(name, plan),
        Backend::Userspace => apply_uapi(name, plan, desired),
    }
}

fn apply_kernel(name: &str, plan: &DevicePlan) -> anyhow::Result<()> {
    let mut update = DeviceUpdate::new();
    if let Some(key) = &plan.private_key {
        update = update.set_private_key(key.to_wg());
    }
    if let Some(port) = plan.listen_port {
        update = update.set_listen_port(port);
    }
    if let Some(mark) = plan.fwmark {
        update = update.set_fwmark(mark);
    }
    let peers: Vec<PeerConfigBuilder> = plan.peers.iter().map(peer_update).collect();
    update = update.add_peers(&peers);
    update
        .apply(&interface_name(name)?, WgBackend::Kernel)
        .with_context(|| format!("configuring WireGuard device {name} failed"))
}

/// boringtun cannot change an existing peer in place (it panics), so a changed peer is
/// removed and added again in full: its session restarts with its next packet.
fn apply_uapi(name: &str, plan: &DevicePlan, desired: &DesiredDevice) -> anyhow::Result<()> {
    use crate::userspace::SetRequest;
    let mut request = SetRequest::new();
    if let Some(key) = &plan.private_key {
        request = request.private_key(key);
    }
    if let Some(port) = plan.listen_port {
        request = request.listen_port(port);
    }
    if let Some(mark) = plan.fwmark {
        request = request.fwmark(mark);
    }
    let add = |request: SetRequest, p: &DesiredPeer| {
        request.peer(&p.public_key, |mut r| {
            if let Some(psk) = &p.preshared_key {
                r = r.preshared_key(psk);
            }
            if let Some(e) = p.endpoint {
                r = r.endpoint(e);
            }
            if let Some(k) = p.persistent_keepalive {
                r = r.persistent_keepalive(k);
            }
            for net in &p.allowed_ips {
                r = r.allowed_ip(*net);
            }
            r
        })
    };
    for change in &plan.peers {
        request = match change {
            PeerChange::Add(p) => add(request, p),
            PeerChange::Remove(key) => request.peer(key, |r| r.remove()),
            PeerChange::Update { public_key, .. } => {
                let p = desired
                    .peers
                    .iter()
                    .find(|p| &p.public_key == public_key)
                    .expect("an updated peer is a desired one");
                add(request.peer(public_key, |r| r.remove()), p)
            }
        };
    }
    crate::userspace::set(name, request.as_uapi())
        .with_context(|| format!("configuring userspace WireGuard device {name} failed"))
}

fn allowed(ips: &[IpNet]) -> Vec<AllowedIp> {
    ips.iter()
        .map(|n| AllowedIp {
            address: n.addr(),
            cidr: n.prefix_len(),
        })
        .collect()
}

fn peer_update(change: &PeerChange) -> PeerConfigBuilder {
    match change {
        PeerChange::Add(p) => {
            let mut b = PeerConfigBuilder::new(&p.public_key.to_wg())
                .replace_allowed_ips()
                .add_allowed_ips(&allowed(&p.allowed_ips));
            if let Some(psk) = &p.preshared_key {
                b = b.set_preshared_key(psk.to_wg());
            }
            if let Some(e) = p.endpoint {
                b = b.set_endpoint(e);
            }
            if let Some(k) = p.persistent_keepalive {
                b = b.set_persistent_keepalive_interval(k);
            }
            b
        }
        PeerChange::Update {
            public_key,
            preshared_key,
            endpoint,
            persistent_keepalive,
            allowed_ips,
            ..
        } => {
            let mut b = PeerConfigBuilder::new(&public_key.to_wg());
            match preshared_key {
                Some(Some(psk)) => b = b.set_preshared_key(psk.to_wg()),
                Some(None) => b = b.unset_preshared_key(),
                None => {}
            }
            if let Some(e) = endpoint {
                b = b.set_endpoint(*e);
            }
            if let Some(k) = persistent_keepalive {
                b = b.set_persistent_keepalive_interval(*k);
            }
            if let Some(ips) = allowed_ips {
                b = b.replace_allowed_ips().add_allowed_ips(&allowed(ips));
            }
            b
        }
        PeerChange::Remove(key) => PeerConfigBuilder::new(&key.to_wg()).remove(),
    }
}

/// One interface as `status` shows it.
#[derive(Debug, Serialize)]
pub struct InterfaceStatus {
    pub name: String,
    /// `None` when the link does not exist.
    pub backend: Option<Backend>,
    pub up: bool,
    pub public_key: Option<String>,
    pub listen_port: Option<u16>,
    pub addresses: Vec<IpNet>,
    pub peers: Vec<PeerStatus>,
    /// Things to do, in plain words.
    pub hints: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PeerStatus {
    /// The config's name; `None` for a peer the config does not have.
    pub name: Option<String>,
    pub public_key: String,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    /// Seconds since the latest handshake; `None`: never.
    pub latest_handshake_secs: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub persistent_keepalive: Option<u16>,
    pub hint: Option<String>,
}

/// A session is renewed every 2 minutes while traffic flows (REKEY_AFTER_TIME = 120 s); a
/// handshake older than 3 minutes means no traffic, or a lost peer.
const STALE_AFTER: Duration = Duration::from_secs(180);

/// Reads the config's interfaces and their peers from the kernel (or the userspace device).
pub async fn status(config: &Config) -> anyhow::Result<Vec<InterfaceStatus>> {
    let nl = Netlink::connect()?;
    let mut out = Vec::new();
    for iface in &config.wireguard {
        let Some(link) = nl.interface(&iface.name).await? else {
            out.push(InterfaceStatus {
                name: iface.name.clone(),
                backend: None,
                up: false,
                public_key: Some(iface.public_key().to_base64()),
                listen_port: iface.listen_port,
                addresses: Vec::new(),
                peers: Vec::new(),
                hints: vec![format!("{} does not exist: run `vpn-ctl up`", iface.name)],
            });
            continue;
        };
        let backend = Backend::of(&link);
        let device = observe(&iface.name, backend)?;
        let addresses = nl.addresses(&link).await?;
        out.push(interface_status(
            iface,
            &link,
            backend,
            &device,
            addresses,
            SystemTime::now(),
        ));
    }
    Ok(out)
}

fn interface_status(
    iface: &WgInterface,
    link: &Interface,
    backend: Backend,
    device: &ObservedDevice,
    addresses: Vec<IpNet>,
    now: SystemTime,
) -> InterfaceStatus {
    let mut hints = Vec::new();
    if !link.up {
        hints.push(format!("{} is down: run `vpn-ctl up`", iface.name));
    }
    if !link.is_managed() {
        hints.push(format!(
            "{} was not created by vpn-ctl; `vpn-ctl up` will not change it",
            iface.name
        ));
    }
    let want = diff::diff(
        // Endpoints are not resolved here: compare everything else.
        &desired(iface, |_| None),
        Some(device),
    );
    if !want.is_empty() {
        hints.push(format!(
            "the device differs from the config ({}): run `vpn-ctl up`",
            want.describe().join("; ")
        ));
    }
    let peers = device
        .peers
        .iter()
        .map(|p| {
            let name = iface
                .peers
                .iter()
                .find(|c| c.public_key == p.public_key)
                .map(|c| c.name.clone());
            let age = p
                .last_handshake
                .map(|t| now.duration_since(t).unwrap_or_default().as_secs());
            let hint = match age {
                None => Some(
                    "never connected: check the client's Endpoint and keys, and that the port \
                     reaches the router (`vpn-ctl diag --wan IFACE`)"
                        .to_string(),
                ),
                Some(secs) if secs > STALE_AFTER.as_secs() => Some(format!(
                    "no handshake for {}: the client is idle or gone (normal for a phone with \
                     the tunnel off)",
                    human_age(secs)
                )),
                Some(_) => None,
            };
            PeerStatus {
                name,
                public_key: p.public_key.to_base64(),
                endpoint: p.endpoint,
                allowed_ips: p.allowed_ips.clone(),
                latest_handshake_secs: age,
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                persistent_keepalive: p.persistent_keepalive,
                hint,
            }
        })
        .collect();
    InterfaceStatus {
        name: iface.name.clone(),
        backend: Some(backend),
        up: link.up,
        public_key: device.public_key.as_ref().map(PublicKey::to_base64),
        listen_port: device.listen_port,
        addresses,
        peers,
        hints,
    }
}

/// "42 seconds", "3 minutes", "2 hours", "5 days".
pub fn human_age(secs: u64) -> String {
    let (n, unit) = match secs {
        0..120 => (secs, "second"),
        120..7200 => (secs / 60, "minute"),
        7200..172_800 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The text `vpn-ctl status` prints.
pub fn render_status(status: &[InterfaceStatus]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for iface in status {
        let _ = write!(out, "interface {}", iface.name);
        match iface.backend {
            None => out.push_str(": not present\n"),
            Some(b) => {
                let _ = writeln!(
                    out,
                    " ({}, {}){}",
                    match b {
                        Backend::Kernel => "kernel",
                        Backend::Userspace => "userspace",
                    },
                    if iface.up { "up" } else { "down" },
                    iface
                        .listen_port
                        .map(|p| format!(", listening on udp/{p}"))
                        .unwrap_or_default()
                );
            }
        }
        if let Some(key) = &iface.public_key {
            let _ = writeln!(out, "  public key: {key}");
        }
        if !iface.addresses.is_empty() {
            let a: Vec<String> = iface.addresses.iter().map(ToString::to_string).collect();
            let _ = writeln!(out, "  addresses:  {}", a.join(", "));
        }
        for p in &iface.peers {
            let _ = writeln!(
                out,
                "  peer {} ({})",
                p.name.as_deref().unwrap_or("<not in the config>"),
                p.public_key
            );
            let ips: Vec<String> = p.allowed_ips.iter().map(ToString::to_string).collect();
            let _ = writeln!(out, "    allowed ips:      {}", ips.join(", "));
            if let Some(e) = p.endpoint {
                let _ = writeln!(out, "    endpoint:         {e}");
            }
            let _ = writeln!(
                out,
                "    latest handshake: {}",
                p.latest_handshake_secs
                    .map(|s| format!("{} ago", human_age(s)))
                    .unwrap_or_else(|| "never".into())
            );
            let _ = writeln!(
                out,
                "    transfer:         {} received, {} sent",
                crate::diag::view::human_bytes(p.rx_bytes),
                crate::diag::view::human_bytes(p.tx_bytes)
            );
            if let Some(k) = p.persistent_keepalive {
                let _ = writeln!(out, "    keepalive:        every {k} s");
            }
            if let Some(h) = &p.hint {
                let _ = writeln!(out, "    hint: {h}");
            }
        }
        for h in &iface.hints {
            let _ = writeln!(out, "  hint: {h}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(human_age(1), "1 second");
        assert_eq!(human_age(42), "42 seconds");
        assert_eq!(human_age(600), "10 minutes");
        assert_eq!(human_age(3 * 3600), "3 hours");
        assert_eq!(human_age(3 * 86_400), "3 days");
    }
}
