//! IKE keying: strongSwan's charon negotiates the SAs of `keying = "ike"` sites, and vpn-ctl
//! configures and drives it over its VICI socket.
//!
//! | here | swanctl |
//! |---|---|
//! | [`Vici::load_conn`] | `swanctl --load-conns` (one `connections.NAME` of swanctl.conf) |
//! | [`Vici::unload_conn`] | what `--load-conns` does to a connection gone from the file |
//! | [`Vici::load_shared`] / [`Vici::unload_shared`] | `swanctl --load-creds` (a `secrets.ike-NAME`) |
//! | [`Vici::initiate`] | `swanctl --initiate --ike NAME --child NAME --timeout T` |
//! | [`Vici::terminate_ike`] | `swanctl --terminate --ike NAME` |
//! | [`Vici::list_sas`] | `swanctl --list-sas [--ike NAME]` |
//! | [`Vici::list_conns`] | `swanctl --list-conns` |
//! | [`ensure_charon`] | starting `/usr/lib/ipsec/charon` with a strongswan.conf of its own |
//!
//! # What a site becomes
//!
//! A connection `vpn-ctl-<site>` ([`conn::Connection`]: IKE version, aggressive mode, the
//! gateways (a DNS name is passed on: charon resolves it at every (re)initiation, which is
//! what dynamic DNS needs), the identities, PSK authentication, proposals, lifetimes (charon
//! renegotiates at 90 %), DPD) with one child of the same name (the subnets as traffic
//! selectors, the ESP proposals, `start_action = trap`, `dpd_action = restart`, `close_action
//! = restart` (IKEv2: `trap`, see [`conn::ChildBody::close_action`]): a site-to-site tunnel
//! that comes back by itself), and its pre-shared key under
//! the id `vpn-ctl-<site>`, owned by the two identities. Everything vpn-ctl loads carries
//! the prefix [`conn::NAME_PREFIX`]; nothing else in charon is touched, so vpn-ctl can share
//! a charon with other users. (But `swanctl --load-all` unloads every connection and key
//! that its swanctl.conf does not name, vpn-ctl's included; the next `up` loads them again.)
//!
//! NAT traversal: charon detects NAT on every connection and moves to UDP 4500 when it finds
//! one; there is no switch to turn that off, so `nat_traversal = false` changes nothing here
//! (`encap`, which forces UDP encapsulation without a NAT, stays off either way).
//!
//! # `up` is a diff
//!
//! charon's `list-conns` shows the addresses, identities, version, rekey time, DPD interval
//! and subnets of a loaded connection, but not its proposals, aggressive mode or lifetimes.
//! So `up` also keeps a record of what it loaded ([`conn::Record`], one file per connection
//! in [`UpOptions::state_dir`], mode 0600: the settings and a digest of the key, never the
//! key) and compares both with the config:
//!
//! - nothing differs and the SA is up (IKE SA established, CHILD SA installed): nothing is
//!   sent, and the SA keeps its SPIs and counters;
//! - the config changed: the connection (and key) is loaded again, its SAs are terminated
//!   and it is initiated anew, and the changes are listed;
//! - charon lacks the connection (charon restarted): loaded and, unless its SA is still up,
//!   initiated;
//! - the SA is down: initiated.
//!
//! Connections with the prefix whose site left the config are terminated and unloaded.
//!
//! # Why rsvici
//!
//! `rsvici` 0.1.5 (tokio, with `serde_vici` for the message encoding) speaks VICI
//! (request/response, streamed events such as `list-sa` and `control-log`) and builds with
//! rustc 1.95 on the tokio already in the tree; it has no C dependency (the alternative
//! would be strongSwan's libvici through FFI) and does not log messages, so the key in a
//! `load-shared` is never written anywhere. Its plain `request` does not check charon's
//! `success` field, which [`Vici`] does. `rustici` (synchronous, no dependencies) is younger
//! and unclear about its licence. Writing the protocol ourselves would be ~300 lines of
//! framing and encoding that rsvici already has tests for.
//!
//! # Secrets
//!
//! The PSK is a [`crate::config::ipsec::SecretBytes`] (redacted `Debug`, zeroed on drop); it
//! appears in no error, report line or record. It does pass through rsvici's send buffer,
//! which is not zeroed.

pub mod charon;
pub mod conn;
pub mod renewal;
pub mod vici;

#[cfg(test)]
mod tests;

use std::{
    fs,
    os::unix::fs::DirBuilderExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;

pub use charon::{CharonLaunch, CharonStart, ensure_charon, stop_charon};
pub use conn::{Connection, NAME_PREFIX, Record, conn_name, site_of};
pub use vici::{ChildSa, DEFAULT_SOCKET, IkeSa, InitiateError, LoadedConn, SharedKey, Vici};

use crate::config::ipsec::{IpsecSite, Keying};

/// Where `up` keeps its records unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/run/vpn-ctl/ike";

/// How `up` and `down` run.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Where the records of loaded connections live.
    pub state_dir: PathBuf,
    /// How long `initiate` and `terminate` wait for charon (IKEv1 with modp1024 takes well
    /// under a second on a router, seconds under emulation).
    pub timeout: Duration,
}

impl Default for UpOptions {
    fn default() -> UpOptions {
        UpOptions {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            timeout: Duration::from_secs(30),
        }
    }
}

/// What to do with one site's SAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaAction {
    /// Up and current: leave it alone.
    Keep,
    /// Not up: initiate.
    Initiate,
    /// Up (or on its way) with an outdated config: terminate, then initiate.
    Restart,
    /// charon is renewing or setting up the SAs (see [`is_renewing`]): leave it to charon;
    /// initiating now would start a second SA beside the one on its way.
    Wait,
}

/// How long after an IKE SA is established its CHILD SA may still be on its way.
const SETTLING_SECS: u64 = 30;

/// What `up` does for one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePlan {
    pub name: String,
    /// `Some(reasons)`: (re)load the connection, for these reasons.
    pub load: Option<Vec<String>>,
    /// (Re)load the pre-shared key.
    pub load_shared: bool,
    pub sa: SaAction,
}

/// Whether the site's tunnel is up: an established IKE SA of the connection with its CHILD
/// SA installed.
pub fn is_up(name: &str, sas: &[IkeSa]) -> bool {
    sas.iter().any(|ike| {
        ike.name == name
            && ike.is_established()
            && ike
                .children
                .iter()
                .any(|c| c.name == name && c.is_installed())
    })
}

/// Whether charon is in the middle of a renewal or a setup of the site's SAs: several IKE SAs
/// of the connection, one of them established or being established (the new one beside the
/// old, by either side, until the old is deleted), or one established moments ago whose CHILD
/// SA is still being set up. An SA left `REKEYING` alone (its re-authentication failed) is
/// not: that site needs initiating.
pub fn is_renewing(name: &str, sas: &[IkeSa]) -> bool {
    let mine: Vec<&IkeSa> = sas.iter().filter(|s| s.name == name).collect();
    let active = mine
        .iter()
        .filter(|s| s.is_established() || s.state == "CONNECTING")
        .count();
    (mine.len() >= 2 && active >= 1)
        || mine
            .iter()
            .any(|s| s.is_established() && s.established.is_some_and(|t| t < SETTLING_SECS))
}

/// Decides what `up` does for a connection, from what charon shows (`loaded`, `sas`, whether
/// its key is loaded) and the record of the last load.
pub fn plan_site(
    conn: &Connection,
    desired: &Record,
    loaded: Option<&LoadedConn>,
    record: Option<&Record>,
    shared_loaded: bool,
    sas: &[IkeSa],
) -> SitePlan {
    let mut reasons = Vec::new();
    // A real change of the config: the SA, if any, was negotiated under the old one.
    let mut changed = false;
    match record {
        Some(old) if old != desired => {
            changed = true;
            reasons.extend(old.changes_to(desired));
        }
        Some(_) => {}
        None => reasons.push("no record of an earlier load".to_string()),
    }
    match loaded {
        None => reasons.push("charon does not have it".to_string()),
        Some(loaded) => {
            let diffs = conn.differences_from_loaded(loaded);
            changed |= !diffs.is_empty();
            reasons.extend(diffs);
        }
    }
    let exists = sas.iter().any(|ike| ike.name == conn.name);
    let sa = if changed && exists {
        SaAction::Restart
    } else if is_up(&conn.name, sas) {
        SaAction::Keep
    } else if is_renewing(&conn.name, sas) {
        SaAction::Wait
    } else {
        SaAction::Initiate
    };
    let load = (!reasons.is_empty()).then_some(reasons);
    SitePlan {
        name: conn.name.clone(),
        load_shared: load.is_some() || !shared_loaded,
        load,
        sa,
    }
}

fn record_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(format!("{name}.conf"))
}

fn read_record(state_dir: &Path, name: &str) -> Option<Record> {
    fs::read_to_string(record_path(state_dir, name))
        .ok()
        .map(|text| Record::parse(&text))
}

fn write_record(state_dir: &Path, name: &str, record: &Record) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let path = record_path(state_dir, name);
    crate::files::replace(
        &path,
        record.to_text().as_bytes(),
        crate::files::Mode::Set(0o600),
    )
    .with_context(|| format!("writing {}", path.display()))
}

fn remove_record(state_dir: &Path, name: &str) {
    let _ = fs::remove_file(record_path(state_dir, name));
}

/// The IKE sites among `sites`, as connections.
pub fn connections(sites: &[IpsecSite]) -> anyhow::Result<Vec<Connection>> {
    sites
        .iter()
        .filter(|s| matches!(s.keying, Keying::Ike(_)))
        .map(Connection::from_site)
        .collect()
}

/// Brings charon in line with the IKE sites of the config (see the module documentation):
/// returns what it did, one line each; empty when nothing needed doing. Static sites are
/// ignored. On an error, the error says what had been done before it.
pub async fn up(
    vici: &mut Vici,
    sites: &[IpsecSite],
    options: &UpOptions,
) -> anyhow::Result<Vec<String>> {
    let mut changes = Vec::new();
    match up_inner(vici, sites, options, &mut changes).await {
        Ok(()) => Ok(changes),
        Err(e) => Err(crate::journal::failed(e, "up", &changes)),
    }
}

async fn up_inner(
    vici: &mut Vici,
    sites: &[IpsecSite],
    options: &UpOptions,
    changes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let conns = connections(sites)?;
    let wanted = |name: &str| conns.iter().any(|c| c.name == name);

    // Connections and keys of sites that left the config.
    for name in vici.conn_names().await? {
        if site_of(&name).is_some() && !wanted(&name) {
            remove(vici, &name, options).await?;
            changes.push(format!("{name}: removed (its site left the config)"));
        }
    }
    let mut shared = vici.shared_ids().await?;
    for id in &shared {
        if site_of(id).is_some() && !wanted(id) {
            vici.unload_shared(id).await?;
            changes.push(format!(
                "{id}: pre-shared key unloaded (its site left the config)"
            ));
        }
    }
    shared.retain(|id| site_of(id).is_none() || wanted(id));
    let loaded = vici.list_conns(None).await?;

    for conn in &conns {
        let desired = conn.record()?;
        let record = read_record(&options.state_dir, &conn.name);
        let sas = vici.list_sas(Some(&conn.name)).await?;
        let plan = plan_site(
            conn,
            &desired,
            loaded.iter().find(|l| l.name == conn.name),
            record.as_ref(),
            shared.contains(&conn.name),
            &sas,
        );
        apply(vici, conn, &desired, &plan, options, changes).await?;
    }
    Ok(())
}

async fn apply(
    vici: &mut Vici,
    conn: &Connection,
    desired: &Record,
    plan: &SitePlan,
    options: &UpOptions,
    changes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let name = &conn.name;
    if plan.load_shared {
        vici.load_shared(&conn.shared).await?;
    }
    if let Some(reasons) = &plan.load {
        vici.load_conn(name, &conn.body).await?;
        write_record(&options.state_dir, name, desired)?;
        changes.push(format!(
            "{name}: loaded into charon ({})",
            reasons.join("; ")
        ));
    } else if plan.load_shared {
        changes.push(format!("{name}: pre-shared key loaded into charon"));
    }
    if plan.sa == SaAction::Restart && vici.terminate_ike(name, options.timeout).await? {
        changes.push(format!(
            "{name}: terminated its SAs (negotiated under the old config)"
        ));
    }
    if matches!(plan.sa, SaAction::Initiate | SaAction::Restart) {
        vici.initiate(name, name, options.timeout).await?;
        let sas = vici.list_sas(Some(name)).await?;
        changes.push(format!("{name}: {}", describe_up(name, &sas)));
    }
    Ok(())
}

/// "established: IKE SA #3 with 198.51.100.1, CHILD SA SPIs c1a2b3c4/ca852ef8".
fn describe_up(name: &str, sas: &[IkeSa]) -> String {
    let Some(ike) = sas.iter().find(|s| s.name == name && s.is_established()) else {
        return "initiated".to_string();
    };
    let child = ike
        .children
        .iter()
        .find(|c| c.name == name && c.is_installed());
    let spis = child
        .map(|c| {
            format!(
                ", CHILD SA SPIs in {:08x} out {:08x}",
                c.spi_in.unwrap_or(0),
                c.spi_out.unwrap_or(0)
            )
        })
        .unwrap_or_default();
    format!(
        "established (IKE SA #{} with {}, {}{spis})",
        ike.unique_id,
        ike.remote_host.as_deref().unwrap_or("?"),
        ike.algorithms
    )
}

/// Terminates a connection's SAs and unloads it and its key.
async fn remove(vici: &mut Vici, name: &str, options: &UpOptions) -> anyhow::Result<()> {
    vici.terminate_ike(name, options.timeout).await?;
    vici.unload_conn(name).await?;
    if vici.shared_ids().await?.iter().any(|id| id == name) {
        vici.unload_shared(name).await?;
    }
    remove_record(&options.state_dir, name);
    Ok(())
}

/// Terminates and unloads every connection and key vpn-ctl loaded into this charon (those
/// with the prefix), telling the peers; returns what it did.
pub async fn down(vici: &mut Vici, options: &UpOptions) -> anyhow::Result<Vec<String>> {
    let mut changes = Vec::new();
    for name in vici.conn_names().await? {
        if site_of(&name).is_some() {
            remove(vici, &name, options).await?;
            changes.push(format!("{name}: terminated and unloaded"));
        }
    }
    for id in vici.shared_ids().await? {
        if site_of(&id).is_some() {
            vici.unload_shared(&id).await?;
            changes.push(format!("{id}: pre-shared key unloaded"));
        }
    }
    Ok(changes)
}

/// The IKE and CHILD SAs of vpn-ctl's connections, as charon has them.
pub async fn status(vici: &mut Vici) -> anyhow::Result<Vec<IkeSa>> {
    Ok(vici
        .list_sas(None)
        .await?
        .into_iter()
        .filter(|sa| site_of(&sa.name).is_some())
        .collect())
}
