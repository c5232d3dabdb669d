//! The damaged-config guard: what `up` and the daemon refuse to converge to, because the
//! config looks cut short rather than edited.
//!
//! A router's config lives on flash, and a power cut while it is being written leaves an
//! empty file (ext4 without a sync before the rename), or one cut at any byte (UBIFS/JFFS2, an
//! editor writing in place). Most cuts do not parse, and validation refuses them with the line.
//! Those that do parse look like a config with fewer tunnels or peers, and converging to them
//! would take working tunnels down without a word. So, before anything is changed:
//!
//! 1. A config that declares no tunnel at all is refused while vpn-ctl runs any (WireGuard
//!    links, IPsec SAs and policies, IKE connections): `vpn-ctl down` takes them down on
//!    purpose.
//! 2. An interface whose section has no `peers` is refused while its device has peers: a
//!    file cut inside `[wireguard.NAME]` loses the peer tables after it. `peers = []` says "no
//!    peers" on purpose.
//! 3. A file whose last line has no newline (cut inside a line, most likely: editors end files
//!    with one) may not delete a link: a cut there can lose the sections after it.
//!
//! What the guard cannot see: a cut exactly at a line boundary between two peers of one
//! interface reads like the removal of the later peers. vpn-ctl's own writes (`peer add`,
//! `import`) replace the file atomically, so they never leave one half-written.

use anyhow::bail;

use crate::{
    config::Config,
    link::{Interface, Netlink},
    wireguard,
};

/// What vpn-ctl runs now that a converge to `config` would remove, as far as the guard looks.
#[derive(Debug, Default)]
pub struct Running {
    /// vpn-ctl's WireGuard links.
    pub links: Vec<Interface>,
    /// SAs and policies in vpn-ctl's reqid range.
    pub xfrm_objects: usize,
    /// IKE connections vpn-ctl loaded into charon.
    pub ike_connections: Vec<String>,
}

impl Running {
    /// Looks at the kernel for what vpn-ctl runs: its links, and with `ipsec` its SAs and
    /// policies and the connections it loaded into `vici`'s charon.
    pub async fn observe(
        nl: &Netlink,
        ipsec: bool,
        vici: Option<&mut crate::ike::Vici>,
    ) -> Running {
        let links = match nl.interfaces().await {
            Ok(links) => links.into_iter().filter(wireguard::is_ours).collect(),
            Err(e) => {
                log::debug!("guard: cannot list links: {e:#}");
                Vec::new()
            }
        };
        let xfrm_objects = if ipsec {
            crate::xfrm::owned_objects().unwrap_or_else(|e| {
                log::debug!("guard: cannot read XFRM state: {e:#}");
                0
            })
        } else {
            0
        };
        let ike_connections = match vici {
            Some(vici) if ipsec => vici
                .conn_names()
                .await
                .map(|names| {
                    names
                        .into_iter()
                        .filter(|n| crate::ike::site_of(n).is_some())
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        Running {
            links,
            xfrm_objects,
            ike_connections,
        }
    }

    fn describe(&self) -> Vec<String> {
        let mut what: Vec<String> = self.links.iter().map(|l| l.name.clone()).collect();
        if self.xfrm_objects > 0 {
            what.push(format!("{} IPsec SAs and policies", self.xfrm_objects));
        }
        what.extend(
            self.ike_connections
                .iter()
                .map(|c| format!("IKE connection {c}")),
        );
        what
    }
}

/// Refuses a converge to `config` that looks like the effect of a damaged file (rules 1-3 of
/// the module documentation). `peers_of` reads how many peers a link's device has (only
/// asked for interfaces that list none).
pub fn check(
    config: &Config,
    running: &Running,
    peers_of: impl Fn(&Interface) -> anyhow::Result<usize>,
) -> anyhow::Result<()> {
    let file = config.path.display();
    let nothing_changed = "nothing was changed";
    if config.wireguard.is_empty() && config.ipsec.is_empty() {
        let what = running.describe();
        if !what.is_empty() {
            bail!(
                "{file} declares no WireGuard interface and no IPsec site, but vpn-ctl runs {}; \
                 {nothing_changed}. If the file is empty or cut short (a power loss while it was \
                 written?), restore it from a backup; to take the tunnels down on purpose, run \
                 `vpn-ctl down`",
                what.join(", ")
            );
        }
    }
    for iface in config.wireguard.iter().filter(|i| !i.peers_listed) {
        let Some(link) = running.links.iter().find(|l| l.name == iface.name) else {
            continue;
        };
        let peers = peers_of(link)?;
        if peers > 0 {
            bail!(
                "{file}: [wireguard.{name}] lists no peers, but {name} has {peers}; \
                 {nothing_changed}. If the file was cut short (a power loss while it was \
                 written?), restore it; to remove every peer on purpose, write `peers = []` in \
                 [wireguard.{name}]",
                name = iface.name
            );
        }
    }
    if let Some(line) = config.unterminated_line {
        let removed: Vec<&str> = running
            .links
            .iter()
            .filter(|l| config.interface(&l.name).is_none())
            .map(|l| l.name.as_str())
            .collect();
        if !removed.is_empty() {
            bail!(
                "{file}:{line}: the file ends inside a line (no newline at its end), and `up` \
                 would delete {}; {nothing_changed}. If the file was cut short (a power loss \
                 while it was written?), restore it; if it is complete, end it with a newline",
                removed.join(", ")
            );
        }
    }
    Ok(())
}
