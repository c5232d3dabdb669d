//! From the config to the kernel: the SAs and policies each static site needs, which of the
//! installed ones are vpn-ctl's, and the steps from what is installed to what is wanted.
//! Pure functions; the kernel is only touched by [`super::up`] and [`super::down`].

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use anyhow::{bail, ensure};
use serde::Serialize;

use super::{
    REQID_FIRST, REQID_LAST,
    policy::{Dir, Policy, Template},
    sa::{Aead, Sa, SaCounters},
};
use crate::config::ipsec::{Gateway, IpsecSite, Keying, StaticKeying};

/// Whether `reqid` lies in the range vpn-ctl reserves for the SAs and policies it creates.
pub fn is_vpn_ctl_reqid(reqid: u32) -> bool {
    (REQID_FIRST..=REQID_LAST).contains(&reqid)
}

/// The reqid of each static site: [`REQID_FIRST`] plus a 16-bit hash of the site's name
/// (FNV-1a, folded), so it stays the same when other sites come and go. On the rare
/// collision the later site (in name order) takes the next free value.
pub fn reqids(sites: &[IpsecSite]) -> BTreeMap<String, u32> {
    let names: BTreeSet<&str> = sites
        .iter()
        .filter(|s| matches!(s.keying, Keying::Static(_)))
        .map(|s| s.name.as_str())
        .collect();
    let mut taken = BTreeSet::new();
    let mut out = BTreeMap::new();
    for name in names {
        let mut offset = fold16(fnv1a(name.as_bytes()));
        while !taken.insert(offset) {
            offset = offset.wrapping_add(1);
        }
        out.insert(name.to_string(), REQID_FIRST + u32::from(offset));
    }
    out
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn fold16(h: u32) -> u16 {
    ((h >> 16) ^ (h & 0xffff)) as u16
}

/// Which way an SA carries packets, seen from this router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SaDir {
    /// Local gateway to remote gateway: `spi_out`, `key_out`.
    Out,
    /// Remote gateway to local gateway: `spi_in`, `key_in`.
    In,
}

impl std::fmt::Display for SaDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SaDir::Out => "out",
            SaDir::In => "in",
        })
    }
}

/// What one static site needs in the kernel.
#[derive(Debug, Clone)]
pub struct SiteState {
    pub site: String,
    pub reqid: u32,
    pub local: IpAddr,
    pub remote: IpAddr,
    pub sas: Vec<(SaDir, Sa)>,
    pub policies: Vec<Policy>,
}

impl SiteState {
    /// The direction of one of this site's SAs, by its gateways.
    pub fn sa_dir(&self, sa: &Sa) -> Option<SaDir> {
        if (sa.src, sa.dst) == (self.local, self.remote) {
            Some(SaDir::Out)
        } else if (sa.src, sa.dst) == (self.remote, self.local) {
            Some(SaDir::In)
        } else {
            None
        }
    }
}

/// The gateway's address; static keying has no IKE daemon to find or resolve it.
fn address(site: &str, which: &str, gateway: Option<&Gateway>) -> anyhow::Result<IpAddr> {
    match gateway {
        Some(Gateway::Address(a)) => Ok(*a),
        Some(Gateway::Name(n)) => bail!(
            "site {site}: static keying needs the {which} gateway as an address, not the name \
             {n:?} (the SAs are fixed to addresses; use keying = \"ike\" for a dynamic address)"
        ),
        None => bail!(
            "site {site}: static keying needs {which}_gateway (the address this router's \
             tunnel leaves from)"
        ),
    }
}

/// The SAs and policies of every static site (IKE sites are charon's and left out):
///
/// - SA out: local gateway -> remote gateway, `spi_out`, `key_out`; SA in: the reverse,
///   `spi_in`, `key_in`; both ESP, tunnel mode, `rfc4106(gcm(aes))` with a 128-bit ICV.
/// - For each pair of a local and a remote subnet of the same family: policy out (local ->
///   remote, template local gateway -> remote gateway), in and fwd (remote -> local,
///   template remote gateway -> local gateway).
pub fn desired(sites: &[IpsecSite]) -> anyhow::Result<Vec<SiteState>> {
    let reqids = reqids(sites);
    let mut out = Vec::new();
    for site in sites {
        let Keying::Static(keying) = &site.keying else {
            continue;
        };
        out.push(site_state(site, keying, reqids[&site.name])?);
    }
    Ok(out)
}

/// What one static site needs, with its reqid.
pub(crate) fn site_state(
    site: &IpsecSite,
    k: &StaticKeying,
    reqid: u32,
) -> anyhow::Result<SiteState> {
    let name = &site.name;
    let local = address(name, "local", site.local_gateway.as_ref())?;
    let remote = address(name, "remote", Some(&site.remote_gateway))?;
    ensure!(
        local.is_ipv4() == remote.is_ipv4(),
        "site {name}: the gateways {local} and {remote} are of different address families"
    );
    for (which, spi) in [("spi_out", k.spi_out), ("spi_in", k.spi_in)] {
        ensure!(
            spi >= 256,
            "site {name}: {which} = {spi:#x} is reserved (SPIs 0 to 255 are; use 0x100 or more)"
        );
    }
    for (which, key) in [("key_out_file", &k.key_out), ("key_in_file", &k.key_in)] {
        ensure!(
            key.expose().len() == k.esp.key_len(),
            "site {name}: {which} holds {} bytes of key material; {:?} needs {} (the key and \
             the 4-byte salt)",
            key.expose().len(),
            k.esp,
            k.esp.key_len()
        );
    }
    let sa = |src, dst, spi, key| Sa {
        src,
        dst,
        spi,
        reqid,
        tunnel: true,
        aead: Some(Aead::static_keying(key)),
        counters: SaCounters::default(),
    };
    let sas = vec![
        (SaDir::Out, sa(local, remote, k.spi_out, &k.key_out)),
        (SaDir::In, sa(remote, local, k.spi_in, &k.key_in)),
    ];
    let policy = |dir, src, dst, tmpl| Policy {
        dir,
        src,
        dst,
        plain: true,
        priority: 0,
        allow: true,
        templates: vec![tmpl],
    };
    let mut policies = Vec::new();
    for l in &site.local_subnets {
        for r in &site.remote_subnets {
            if l.addr().is_ipv4() != r.addr().is_ipv4() {
                continue;
            }
            let (l, r) = (l.trunc(), r.trunc());
            let out_tmpl = Template::esp_tunnel(local, remote, reqid);
            let in_tmpl = Template::esp_tunnel(remote, local, reqid);
            policies.push(policy(Dir::Out, l, r, out_tmpl));
            policies.push(policy(Dir::In, r, l, in_tmpl));
            policies.push(policy(Dir::Fwd, r, l, in_tmpl));
        }
    }
    ensure!(
        !policies.is_empty(),
        "site {name}: no local subnet has a remote subnet of the same address family to \
         pair with"
    );
    Ok(SiteState {
        site: name.clone(),
        reqid,
        local,
        remote,
        sas,
        policies,
    })
}

/// One change to the kernel.
#[derive(Debug, Clone)]
pub enum Step {
    DeletePolicy(Policy),
    DeleteSa { src: IpAddr, dst: IpAddr, spi: u32 },
    AddSa(Sa),
    AddPolicy(Policy),
    UpdatePolicy(Policy),
}

/// A step and the line that reports it.
#[derive(Debug, Clone)]
pub struct Change {
    pub step: Step,
    pub line: String,
    /// Part of another change's line (the removal half of a replaced SA): not reported on
    /// its own, only in the account of a failure part-way.
    pub quiet: bool,
}

/// Who owns an object of vpn-ctl's reqid range, in words.
struct Owners<'a>(HashMap<u32, &'a str>);

impl<'a> Owners<'a> {
    fn new(names: impl IntoIterator<Item = (&'a str, u32)>) -> Self {
        Owners(names.into_iter().map(|(n, r)| (r, n)).collect())
    }

    fn of(&self, reqid: u32) -> String {
        match self.0.get(&reqid) {
            Some(name) => format!("site {name}"),
            None => format!("a site no longer in the config (reqid {reqid:#x})"),
        }
    }
}

/// The steps from what is installed (`sas`, `policies`: everything in the namespace) to what
/// `sites` need: vpn-ctl's objects that are not wanted go, changed SAs are replaced (an SA's
/// key cannot be changed in place), changed policies updated, missing ones added. Objects
/// outside vpn-ctl's reqid range are never touched; when one is in the way (same SPI and
/// destination, or same policy direction and subnets) this is an error.
///
/// Order: stale policies go first, then stale SAs; SAs are added before the policies that
/// use them, so no packet meets a policy without its SA longer than necessary.
pub fn plan_up(
    desired: &[SiteState],
    sas: &[Sa],
    policies: &[Policy],
) -> anyhow::Result<Vec<Change>> {
    let owners = Owners::new(desired.iter().map(|d| (d.site.as_str(), d.reqid)));

    // Two sites wanting the same SA or policy cannot both have it.
    let mut sa_owner: HashMap<(IpAddr, u32), &str> = HashMap::new();
    let mut policy_owner: HashMap<(Dir, ipnet::IpNet, ipnet::IpNet), &str> = HashMap::new();
    for d in desired {
        for (_, sa) in &d.sas {
            if let Some(other) = sa_owner.insert((sa.dst, sa.spi), &d.site) {
                bail!(
                    "sites {other} and {} both use spi {:#x} towards {}: give one of them \
                     other SPIs",
                    d.site,
                    sa.spi,
                    sa.dst
                );
            }
        }
        for p in &d.policies {
            if let Some(other) = policy_owner.insert(p.key(), &d.site) {
                bail!(
                    "sites {other} and {} both claim the traffic {}: their subnets overlap \
                     exactly; remove the pair from one of them",
                    d.site,
                    p.describe()
                );
            }
        }
    }

    let installed_sas: HashMap<(IpAddr, u32), &Sa> =
        sas.iter().map(|sa| ((sa.dst, sa.spi), sa)).collect();
    let installed_policies: HashMap<_, &Policy> = policies
        .iter()
        .filter(|p| p.plain)
        .map(|p| (p.key(), p))
        .collect();

    let mut delete_policies = Vec::new();
    let mut delete_sas = Vec::new();
    let mut add_sas = Vec::new();
    let mut add_policies = Vec::new();
    let mut kept_sas = BTreeSet::new();
    let mut kept_policies = BTreeSet::new();

    for d in desired {
        let site = &d.site;
        for (dir, sa) in &d.sas {
            let spi = sa.spi;
            match installed_sas.get(&(sa.dst, spi)) {
                None => add_sas.push(Change {
                    quiet: false,
                    line: format!(
                        "site {site}: added SA {dir} spi {spi:#x} ({} -> {})",
                        sa.src, sa.dst
                    ),
                    step: Step::AddSa(sa.clone()),
                }),
                Some(installed) if !is_vpn_ctl_reqid(installed.reqid) => bail!(
                    "site {site}: an SA with spi {spi:#x} towards {} exists that vpn-ctl did not \
                     create (reqid {}; an IKE daemon's, or added by hand?). vpn-ctl leaves it \
                     alone: remove it (`ip xfrm state del src {} dst {} proto esp spi {spi:#x}`) \
                     or give the site other SPIs",
                    sa.dst,
                    installed.reqid,
                    installed.src,
                    installed.dst
                ),
                Some(installed) => {
                    kept_sas.insert((sa.dst, spi));
                    let diffs = sa.differences(installed);
                    if diffs.is_empty() {
                        continue;
                    }
                    delete_sas.push(Change {
                        line: format!("site {site}: removed SA {dir} spi {spi:#x} to replace it"),
                        quiet: true,
                        step: Step::DeleteSa {
                            src: installed.src,
                            dst: installed.dst,
                            spi,
                        },
                    });
                    add_sas.push(Change {
                        quiet: false,
                        line: format!(
                            "site {site}: replaced SA {dir} spi {spi:#x} ({} changed)",
                            diffs.join(", ")
                        ),
                        step: Step::AddSa(sa.clone()),
                    });
                }
            }
        }
        for p in &d.policies {
            match installed_policies.get(&p.key()) {
                None => add_policies.push(Change {
                    quiet: false,
                    line: format!("site {site}: added policy {}", p.describe()),
                    step: Step::AddPolicy(p.clone()),
                }),
                Some(installed) if !installed.reqid().is_some_and(is_vpn_ctl_reqid) => bail!(
                    "site {site}: a policy {} exists that vpn-ctl did not create (an IKE \
                     daemon's, or added by hand?). vpn-ctl leaves it alone: remove it \
                     (`ip xfrm policy del src {} dst {} dir {}`) or change the site's subnets",
                    p.describe(),
                    p.src,
                    p.dst,
                    p.dir
                ),
                Some(installed) => {
                    kept_policies.insert(p.key());
                    if !p.same_settings(installed) {
                        add_policies.push(Change {
                            quiet: false,
                            line: format!(
                                "site {site}: updated policy {} (its template changed)",
                                p.describe()
                            ),
                            step: Step::UpdatePolicy(p.clone()),
                        });
                    }
                }
            }
        }
    }

    for p in policies {
        let Some(reqid) = p.reqid().filter(|&r| p.plain && is_vpn_ctl_reqid(r)) else {
            continue;
        };
        if !kept_policies.contains(&p.key()) {
            delete_policies.push(Change {
                quiet: false,
                line: format!("{}: removed policy {}", owners.of(reqid), p.describe()),
                step: Step::DeletePolicy(p.clone()),
            });
        }
    }
    for sa in sas {
        if is_vpn_ctl_reqid(sa.reqid) && !kept_sas.contains(&(sa.dst, sa.spi)) {
            delete_sas.push(Change {
                quiet: false,
                line: format!(
                    "{}: removed SA spi {:#x} ({} -> {})",
                    owners.of(sa.reqid),
                    sa.spi,
                    sa.src,
                    sa.dst
                ),
                step: Step::DeleteSa {
                    src: sa.src,
                    dst: sa.dst,
                    spi: sa.spi,
                },
            });
        }
    }

    Ok(delete_policies
        .into_iter()
        .chain(delete_sas)
        .chain(add_sas)
        .chain(add_policies)
        .collect())
}

/// The steps that remove every SA and policy of vpn-ctl's reqid range (policies first);
/// `sites` only name their owners.
pub fn plan_down(sites: &[IpsecSite], sas: &[Sa], policies: &[Policy]) -> Vec<Change> {
    let reqids = reqids(sites);
    let owners = Owners::new(reqids.iter().map(|(n, &r)| (n.as_str(), r)));
    let mut changes = Vec::new();
    for p in policies {
        if let Some(reqid) = p.reqid().filter(|&r| p.plain && is_vpn_ctl_reqid(r)) {
            changes.push(Change {
                quiet: false,
                line: format!("{}: removed policy {}", owners.of(reqid), p.describe()),
                step: Step::DeletePolicy(p.clone()),
            });
        }
    }
    for sa in sas.iter().filter(|sa| is_vpn_ctl_reqid(sa.reqid)) {
        changes.push(Change {
            quiet: false,
            line: format!(
                "{}: removed SA spi {:#x} ({} -> {})",
                owners.of(sa.reqid),
                sa.spi,
                sa.src,
                sa.dst
            ),
            step: Step::DeleteSa {
                src: sa.src,
                dst: sa.dst,
                spi: sa.spi,
            },
        });
    }
    changes
}
