//! IPsec in the kernel over XFRM netlink: the SAs and policies of statically keyed sites
//! (`up`, `down`), and `status` for every site (its SAs with their counters, its policies, the
//! kernel's XFRM error counters, and hints).
//!
//! Everything happens in the network namespace of the calling thread.
//!
//! | here | iproute2 |
//! |---|---|
//! | [`XfrmSocket::add_sa`] | `ip xfrm state add src S dst D proto esp spi SPI reqid R mode tunnel aead 'rfc4106(gcm(aes))' 0xKEY 128` |
//! | [`XfrmSocket::delete_sa`] | `ip xfrm state del src S dst D proto esp spi SPI` |
//! | [`XfrmSocket::sas`] | `ip -s xfrm state show` |
//! | [`XfrmSocket::add_policy`] | `ip xfrm policy add src L dst R dir out tmpl src S dst D proto esp reqid R mode tunnel` |
//! | [`XfrmSocket::update_policy`] | `ip xfrm policy update ...` (same arguments) |
//! | [`XfrmSocket::delete_policy`] | `ip xfrm policy del src L dst R dir out` |
//! | [`XfrmSocket::policies`] | `ip xfrm policy show` |
//! | [`xfrm_stat`] | `cat /proc/net/xfrm_stat` |
//!
//! # What a static site becomes
//!
//! Two SAs (out: local gateway -> remote gateway with `spi_out` and `key_out`; in: the reverse
//! with `spi_in` and `key_in`; ESP, tunnel mode, `rfc4106(gcm(aes))`, 128-bit ICV, no replay
//! window) and, for every pair of a local and a remote subnet, three policies: out (local ->
//! remote), in and fwd (remote -> local), each with an ESP tunnel template between the
//! gateways. The other side has the mirror image: its `spi_out`/`key_out` are our
//! `spi_in`/`key_in`.
//!
//! `up` is a diff like WireGuard's: a second `up` changes nothing (counters keep running); a
//! changed key, gateway or SPI replaces that SA alone (a key cannot be changed in place), a
//! changed template updates the policy; SAs and policies of sites that left the config are
//! removed. `down` removes every SA and policy vpn-ctl created. IKE sites are charon's: `up`
//! and `down` skip them, `status` shows their SAs and policies.
//!
//! # Ownership: the reqid range
//!
//! vpn-ctl only touches the SAs and policies it created. They carry a reqid (the number that
//! ties a policy's template to its SAs) from the range [`REQID_FIRST`]..=[`REQID_LAST`]
//! (`0x76630000` to `0x7663ffff`, "vc"), the site's reqid being that base plus a 16-bit hash
//! of the site's name: stable across runs and other sites' changes, and visible in
//! `ip xfrm state` / `ip xfrm policy` as reqids 1986199552 to 1986265087 (`ip -s xfrm state`
//! adds the hex). strongSwan's charon
//! allocates reqids counting up from 1 and libreswan from 16384, so their SAs never fall in
//! this range. A policy is vpn-ctl's when its selector is plain (addresses only, no mark,
//! interface id or sub-policy type) and its template's reqid is in the range; a foreign SA or
//! policy in the way of a site (same SPI and destination, or same direction and subnets) is
//! reported, never replaced. The range marks policies as well as SAs, so a policy can be
//! recognised without its SA (`down` cleans up after a half-finished `up`). An XFRM mark was
//! the alternative, but a mark on a policy changes which packets it matches (only packets
//! carrying that mark), which a static tunnel must not depend on.
//!
//! # Why these crates
//!
//! The messages are `netlink-packet-xfrm` 0.5's (rust-netlink: `xfrm_usersa_info`,
//! `xfrm_userpolicy_info`, `XFRMA_ALG_AEAD`, `XFRMA_TMPL`, ..., with the byte order of SPIs and
//! ports handled), built on netlink-packet-core 0.9 like the rest of the tree, and building
//! with rustc 1.95. Its companion `xfrmnetlink` 0.4 (request builders on a `netlink-proto`
//! connection) builds too, but was not taken: it pins `netlink-proto` 0.13 (a second copy
//! beside rtnetlink's 0.14), and netlink-proto logs every message it sends and receives with
//! `Debug` at trace level and the raw bytes of one it cannot parse at error level, which for
//! SAs includes their keys. The transport here is instead a plain synchronous `netlink-sys`
//! socket ([`XfrmSocket`], the same pattern as [`crate::sockets`]): no connection task, no
//! logging, buffers that held keys zeroed, capped acknowledgements so a refused request's key
//! is not echoed back, and the kernel's errno and extended-ack text kept in errors. The
//! functions are synchronous (each is one or two short netlink round trips), so they run
//! directly on a thread that entered a network namespace.
//!
//! # Secrets
//!
//! Keys live in [`crate::config::ipsec::SecretBytes`] (redacted `Debug`, zeroed on drop),
//! never appear in a report line or an error, and the netlink messages and receive buffers
//! that carried them are zeroed after use.

pub mod netlink;
pub mod plan;
pub mod policy;
pub mod sa;
pub mod stat;
pub mod status;

#[cfg(test)]
mod tests;

use anyhow::Context as _;

pub use self::{
    netlink::XfrmSocket,
    plan::{Change, SaDir, SiteState, Step, is_vpn_ctl_reqid, reqids},
    policy::{Dir, Policy, Template},
    sa::{Aead, Sa, SaCounters},
    stat::{explain, rising, xfrm_stat},
    status::{Counter, PolicyStatus, SaStatus, SiteStatus, Status, status},
};
use crate::config::ipsec::IpsecSite;

/// The first reqid of the range vpn-ctl marks its SAs and policies with ("vc" = 0x7663).
pub const REQID_FIRST: u32 = 0x7663_0000;
/// The last reqid of that range.
pub const REQID_LAST: u32 = 0x7663_ffff;

/// Converges the kernel's SAs and policies to the static sites in `sites` (IKE sites are
/// skipped) and returns one line per change ("site office: added SA out spi 0x1001 ...");
/// empty when nothing changed. On an error the message says what had been applied; running
/// `up` again converges from there.
pub fn up(sites: &[IpsecSite]) -> anyhow::Result<Vec<String>> {
    let desired = plan::desired(sites).context("nothing was changed")?;
    let xfrm = XfrmSocket::open()?;
    let sas = xfrm.sas()?;
    let policies = xfrm.policies()?;
    let changes = plan::plan_up(&desired, &sas, &policies).context("nothing was changed")?;
    apply(&xfrm, changes, "up")
}

/// Removes every SA and policy vpn-ctl created (those of its reqid range), whether or not
/// their site is still in `sites` (which only name them in the report). Returns one line per
/// removal.
pub fn down(sites: &[IpsecSite]) -> anyhow::Result<Vec<String>> {
    let xfrm = XfrmSocket::open()?;
    let sas = xfrm.sas()?;
    let policies = xfrm.policies()?;
    apply(&xfrm, plan::plan_down(sites, &sas, &policies), "down")
}

/// How many SAs and policies of vpn-ctl's reqid range the kernel has (`down` would remove
/// them all).
pub fn owned_objects() -> anyhow::Result<usize> {
    let xfrm = XfrmSocket::open()?;
    Ok(plan::plan_down(&[], &xfrm.sas()?, &xfrm.policies()?).len())
}

fn apply(xfrm: &XfrmSocket, changes: Vec<Change>, command: &str) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    let mut applied = Vec::new();
    for change in changes {
        let result = match &change.step {
            Step::DeletePolicy(p) => xfrm.delete_policy(p),
            Step::DeleteSa { src, dst, spi } => xfrm.delete_sa(*src, *dst, *spi),
            Step::AddSa(sa) => xfrm.add_sa(sa),
            Step::AddPolicy(p) => xfrm.add_policy(p),
            Step::UpdatePolicy(p) => xfrm.update_policy(p),
        };
        if let Err(e) = result {
            return Err(crate::journal::failed(e, command, &applied));
        }
        applied.push(change.line.clone());
        if !change.quiet {
            done.push(change.line);
        }
    }
    Ok(done)
}
