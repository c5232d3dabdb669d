//! `status` for IPsec sites: per site its SAs (SPI, direction, bytes, packets, age) and
//! policies as the kernel has them, the kernel's non-zero XFRM error counters, and hints in
//! plain words.

use std::{
    fmt,
    net::IpAddr,
    time::{SystemTime, UNIX_EPOCH},
};

use ipnet::IpNet;
use serde::Serialize;

use super::{
    netlink::XfrmSocket,
    plan::{self, SaDir, SiteState},
    policy::{Dir, Policy},
    sa::Sa,
    stat,
};
use crate::config::ipsec::{Gateway, IpsecSite, Keying};

/// What `status` shows for the IPsec sites.
#[derive(Debug, Serialize)]
pub struct Status {
    pub sites: Vec<SiteStatus>,
    /// The non-zero XFRM error counters of this network namespace.
    pub counters: Vec<Counter>,
    /// Why the counters could not be read, when they could not.
    pub counters_error: Option<String>,
    /// Hints drawn from the counters.
    pub hints: Vec<String>,
}

/// One `/proc/net/xfrm_stat` counter and what it means.
#[derive(Debug, Clone, Serialize)]
pub struct Counter {
    pub name: String,
    pub value: u64,
    pub meaning: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct SiteStatus {
    pub name: String,
    /// `static` or `ike`.
    pub keying: &'static str,
    /// The reqid of a static site's SAs and policies.
    pub reqid: Option<u32>,
    pub sas: Vec<SaStatus>,
    pub policies: Vec<PolicyStatus>,
    pub hints: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SaStatus {
    /// `None` for an SA of an IKE site whose direction cannot be told from its gateways.
    pub direction: Option<SaDir>,
    pub spi: u32,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub installed: bool,
    /// What differs from the config (static sites): `key`, `local gateway`, ...
    pub differs: Vec<&'static str>,
    pub bytes: u64,
    pub packets: u64,
    /// Seconds since the SA was added.
    pub age_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyStatus {
    pub dir: Dir,
    pub src: IpNet,
    pub dst: IpNet,
    pub present: bool,
    /// Present with the template the config asks for (always true for IKE sites' policies
    /// when present: charon chooses their templates).
    pub matches_config: bool,
}

/// Reads the SAs, policies and error counters of the calling thread's network namespace
/// (`ip -s xfrm state`, `ip xfrm policy`, `cat /proc/net/xfrm_stat`) and relates them to
/// `sites`.
pub fn status(sites: &[IpsecSite]) -> anyhow::Result<Status> {
    let xfrm = XfrmSocket::open()?;
    let sas = xfrm.sas()?;
    let policies = xfrm.policies()?;
    let (counters, counters_error) = match stat::xfrm_stat() {
        Ok(all) => (
            all.into_iter()
                .filter(|(_, v)| *v != 0)
                .map(|(name, value)| Counter {
                    meaning: stat::explain(&name),
                    name,
                    value,
                })
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Some(format!("{e:#}"))),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(assemble(
        sites,
        &sas,
        &policies,
        counters,
        counters_error,
        now,
    ))
}

/// The status from what was read; pure, for the tests.
pub fn assemble(
    sites: &[IpsecSite],
    sas: &[Sa],
    policies: &[Policy],
    counters: Vec<Counter>,
    counters_error: Option<String>,
    now: u64,
) -> Status {
    let reqids = plan::reqids(sites);
    let sites = sites
        .iter()
        .map(|site| match &site.keying {
            Keying::Static(k) => match plan::site_state(site, k, reqids[&site.name]) {
                Ok(state) => static_site(&state, sas, policies, now),
                Err(e) => SiteStatus {
                    name: site.name.clone(),
                    keying: "static",
                    reqid: reqids.get(&site.name).copied(),
                    sas: Vec::new(),
                    policies: Vec::new(),
                    hints: vec![format!("{e:#}")],
                },
            },
            Keying::Ike(_) => ike_site(site, sas, policies, now),
        })
        .collect();
    let hints = counter_hints(&counters);
    Status {
        sites,
        counters,
        counters_error,
        hints,
    }
}

fn sa_status(direction: Option<SaDir>, sa: &Sa, now: u64) -> SaStatus {
    SaStatus {
        direction,
        spi: sa.spi,
        src: sa.src,
        dst: sa.dst,
        installed: true,
        differs: Vec::new(),
        bytes: sa.counters.bytes,
        packets: sa.counters.packets,
        age_secs: Some(sa.counters.age(now).as_secs()),
    }
}

fn static_site(state: &SiteState, sas: &[Sa], policies: &[Policy], now: u64) -> SiteStatus {
    let sa_status = state
        .sas
        .iter()
        .map(
            |(dir, want)| match sas.iter().find(|s| s.dst == want.dst && s.spi == want.spi) {
                Some(installed) => SaStatus {
                    differs: want.differences(installed),
                    ..sa_status(Some(*dir), installed, now)
                },
                None => SaStatus {
                    direction: Some(*dir),
                    spi: want.spi,
                    src: want.src,
                    dst: want.dst,
                    installed: false,
                    differs: Vec::new(),
                    bytes: 0,
                    packets: 0,
                    age_secs: None,
                },
            },
        )
        .collect();
    let policy_status = state
        .policies
        .iter()
        .map(|want| {
            let installed = policies.iter().find(|p| p.plain && p.key() == want.key());
            PolicyStatus {
                dir: want.dir,
                src: want.src,
                dst: want.dst,
                present: installed.is_some(),
                matches_config: installed.is_some_and(|p| want.same_settings(p)),
            }
        })
        .collect();
    let mut site = SiteStatus {
        name: state.site.clone(),
        keying: "static",
        reqid: Some(state.reqid),
        sas: sa_status,
        policies: policy_status,
        hints: Vec::new(),
    };
    site.hints = site_hints(&site, &remote_subnets(state));
    site
}

fn remote_subnets(state: &SiteState) -> Vec<IpNet> {
    let mut nets: Vec<IpNet> = state
        .policies
        .iter()
        .filter(|p| p.dir == Dir::Out)
        .map(|p| p.dst)
        .collect();
    nets.dedup();
    nets
}

fn ike_site(site: &IpsecSite, sas: &[Sa], policies: &[Policy], now: u64) -> SiteStatus {
    let remote = match &site.remote_gateway {
        Gateway::Address(a) => Some(*a),
        Gateway::Name(_) => None,
    };
    let local = match &site.local_gateway {
        Some(Gateway::Address(a)) => Some(*a),
        _ => None,
    };
    let sa_status = match remote {
        Some(remote) => sas
            .iter()
            .filter_map(|sa| {
                let local_ok = |a: IpAddr| local.is_none_or(|l| l == a);
                if sa.dst == remote && local_ok(sa.src) {
                    Some(sa_status(Some(SaDir::Out), sa, now))
                } else if sa.src == remote && local_ok(sa.dst) {
                    Some(sa_status(Some(SaDir::In), sa, now))
                } else {
                    None
                }
            })
            .collect(),
        None => Vec::new(),
    };
    let mut policy_status = Vec::new();
    for l in &site.local_subnets {
        for r in &site.remote_subnets {
            if l.addr().is_ipv4() != r.addr().is_ipv4() {
                continue;
            }
            let (l, r) = (l.trunc(), r.trunc());
            for (dir, src, dst) in [(Dir::Out, l, r), (Dir::In, r, l), (Dir::Fwd, r, l)] {
                let present = policies.iter().any(|p| p.key() == (dir, src, dst));
                policy_status.push(PolicyStatus {
                    dir,
                    src,
                    dst,
                    present,
                    matches_config: present,
                });
            }
        }
    }
    let mut hints = Vec::new();
    if remote.is_none() {
        hints
            .push("the remote gateway is a DNS name: its SAs are not matched here yet".to_string());
    } else if sa_status.is_empty() {
        hints.push(
            "no SA: the IKE daemon (charon) has not negotiated this connection (yet)".to_string(),
        );
    }
    SiteStatus {
        name: site.name.clone(),
        keying: "ike",
        reqid: None,
        sas: sa_status,
        policies: policy_status,
        hints,
    }
}

/// Hints for one static site, from its SAs and policies.
pub fn site_hints(site: &SiteStatus, remote_subnets: &[IpNet]) -> Vec<String> {
    let mut hints = Vec::new();
    for sa in &site.sas {
        let dir = sa.direction.map_or(String::new(), |d| format!("{d} "));
        if !sa.installed {
            hints.push(format!(
                "SA {dir}spi {:#x} is missing: run `vpn-ctl up`",
                sa.spi
            ));
        } else if !sa.differs.is_empty() {
            hints.push(format!(
                "SA {dir}spi {:#x} differs from the config ({}): run `vpn-ctl up`",
                sa.spi,
                sa.differs.join(", ")
            ));
        }
    }
    let missing: Vec<String> = site
        .policies
        .iter()
        .filter(|p| !p.matches_config)
        .map(|p| format!("{} {} -> {}", p.dir, p.src, p.dst))
        .collect();
    if !missing.is_empty() {
        hints.push(format!(
            "{} of {} policies are missing or differ ({}): run `vpn-ctl up`",
            missing.len(),
            site.policies.len(),
            missing.join("; ")
        ));
    }
    let find = |d: SaDir| {
        site.sas
            .iter()
            .find(|s| s.direction == Some(d) && s.installed)
    };
    if let (Some(out), Some(inb)) = (find(SaDir::Out), find(SaDir::In)) {
        let nets = remote_subnets
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        if inb.packets == 0 && out.packets > 0 {
            hints.push(format!(
                "{} packets went out on spi {:#x} but none came in on spi {:#x}: the peer sends \
                 nothing back under that SPI. Check that the peer's spi_out is {:#x} and its \
                 key_out is our key_in, that `vpn-ctl up` ran there, and that ESP (IP protocol \
                 50) from {} reaches this router (XfrmInNoStates rising here means it arrives \
                 with an SPI we don't have)",
                out.packets, out.spi, inb.spi, inb.spi, inb.src
            ));
        } else if inb.packets == 0 && out.packets == 0 {
            hints.push(format!(
                "no packets in either direction yet: send traffic into the tunnel (ping an \
                 address in {nets})"
            ));
        } else if out.packets == 0 {
            hints.push(format!(
                "packets come in on spi {:#x} but none went out: check that this router routes \
                 {nets} towards {} and forwards (net.ipv4.ip_forward=1)",
                inb.spi, out.dst
            ));
        }
    }
    hints
}

/// Hints for the non-zero error counters that point at a configuration mistake.
pub fn counter_hints(counters: &[Counter]) -> Vec<String> {
    counters
        .iter()
        .filter_map(|c| {
            let n = c.value;
            Some(match c.name.as_str() {
                "XfrmInNoStates" => format!(
                    "XfrmInNoStates = {n}: ESP packets arrived with an SPI we have no SA for. If \
                     it keeps rising, the peer uses an SPI we don't have: its spi_out must be \
                     our spi_in"
                ),
                "XfrmInStateProtoError" => format!(
                    "XfrmInStateProtoError = {n}: ESP packets failed to decrypt: the peer's \
                     key_out must be our key_in, byte for byte"
                ),
                "XfrmInTmplMismatch" => format!(
                    "XfrmInTmplMismatch = {n}: decrypted packets did not fit the policy's \
                     template (gateways or reqid differ): run `vpn-ctl up`"
                ),
                "XfrmInNoPols" => format!(
                    "XfrmInNoPols = {n}: decrypted packets matched no policy: the peer's \
                     local_subnets must be our remote_subnets and the other way round"
                ),
                "XfrmOutNoStates" => format!(
                    "XfrmOutNoStates = {n}: outgoing packets matched a policy with no SA to \
                     encrypt them: an SA is missing (run `vpn-ctl up`)"
                ),
                "XfrmFwdHdrError" => format!(
                    "XfrmFwdHdrError = {n}: packets from a remote subnet arrived unencrypted and \
                     were dropped by the fwd policy"
                ),
                _ => return None,
            })
        })
        .collect()
}

/// "42s", "5m", "3h 2m", "2d 4h".
fn age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for site in &self.sites {
            write!(f, "site {} ({}", site.name, site.keying)?;
            if let Some(reqid) = site.reqid {
                write!(f, ", reqid {reqid:#x}")?;
            }
            writeln!(f, ")")?;
            for sa in &site.sas {
                let dir = sa.direction.map_or("?".to_string(), |d| d.to_string());
                write!(
                    f,
                    "  SA {dir:<3} spi {:#010x} {} -> {}: ",
                    sa.spi, sa.src, sa.dst
                )?;
                if sa.installed {
                    write!(f, "{} bytes, {} packets", sa.bytes, sa.packets)?;
                    if let Some(a) = sa.age_secs {
                        write!(f, ", added {} ago", age(a))?;
                    }
                    writeln!(f)?;
                } else {
                    writeln!(f, "missing")?;
                }
            }
            let present = site.policies.iter().filter(|p| p.matches_config).count();
            writeln!(
                f,
                "  policies: {present} of {} present",
                site.policies.len()
            )?;
            for hint in &site.hints {
                writeln!(f, "  hint: {hint}")?;
            }
        }
        if !self.counters.is_empty() {
            writeln!(
                f,
                "XFRM error counters (non-zero, since the namespace started):"
            )?;
            for c in &self.counters {
                writeln!(
                    f,
                    "  {} {}: {}",
                    c.name,
                    c.value,
                    c.meaning.unwrap_or("(not explained by this version)")
                )?;
            }
        }
        if let Some(e) = &self.counters_error {
            writeln!(f, "XFRM error counters unavailable: {e}")?;
        }
        for hint in &self.hints {
            writeln!(f, "hint: {hint}")?;
        }
        Ok(())
    }
}
