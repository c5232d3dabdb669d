//! What `list-sas` and `list-conns` report, picked out of the value tree.

use super::*;

/// An IKE SA as `list-sas` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IkeSa {
    /// The connection name it was set up from.
    pub name: String,
    /// charon's unique id for this SA (a new one after every re-establishment).
    pub unique_id: u64,
    /// 1 or 2.
    pub version: u8,
    /// `ESTABLISHED`, `CONNECTING`, `DELETING`, ...
    pub state: String,
    pub local_host: Option<String>,
    pub local_id: Option<String>,
    pub remote_host: Option<String>,
    pub remote_id: Option<String>,
    pub initiator: bool,
    pub initiator_spi: Option<String>,
    pub responder_spi: Option<String>,
    /// `AES_CBC-256/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024`.
    pub algorithms: String,
    /// Seconds since it was established.
    pub established: Option<u64>,
    /// Seconds until charon rekeys (IKEv2) or re-authenticates (IKEv1) it.
    pub rekey_time: Option<u64>,
    pub reauth_time: Option<u64>,
    pub nat: bool,
    pub children: Vec<ChildSa>,
}

impl IkeSa {
    /// Established (or in the middle of a rekeying that keeps it usable).
    pub fn is_established(&self) -> bool {
        matches!(self.state.as_str(), "ESTABLISHED" | "REKEYING" | "REKEYED")
    }
}

/// A CHILD SA (a pair of ESP SAs in the kernel) as `list-sas` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChildSa {
    /// The child config's name.
    pub name: String,
    pub unique_id: u64,
    pub reqid: Option<u32>,
    /// `INSTALLED`, `REKEYING`, `DELETING`, ...
    pub state: String,
    pub mode: Option<String>,
    pub protocol: Option<String>,
    /// UDP-encapsulated (NAT-T).
    pub encap: bool,
    pub spi_in: Option<u32>,
    pub spi_out: Option<u32>,
    /// `AES_CBC-256/HMAC_SHA1_96/MODP_1024`.
    pub algorithms: String,
    pub bytes_in: u64,
    pub packets_in: u64,
    pub bytes_out: u64,
    pub packets_out: u64,
    /// Seconds since the last packet each way, if any.
    pub use_in: Option<u64>,
    pub use_out: Option<u64>,
    /// Seconds since it was installed, until it is rekeyed, until it expires.
    pub install_time: Option<u64>,
    pub rekey_time: Option<u64>,
    pub life_time: Option<u64>,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
}

impl ChildSa {
    /// Installed in the kernel and carrying traffic (also while it is being rekeyed).
    pub fn is_installed(&self) -> bool {
        matches!(self.state.as_str(), "INSTALLED" | "REKEYING" | "UPDATING")
    }
}

/// A connection as `list-conns` reports it: what charon shows of a loaded config. (It does
/// not show proposals, aggressive mode, lifetimes or start actions; see
/// [`super::conn::Connection::record`] for how `up` still tells those apart.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedConn {
    pub name: String,
    pub local_addrs: Vec<String>,
    pub remote_addrs: Vec<String>,
    /// `IKEv1`, `IKEv2` or `0` (any).
    pub version: String,
    pub rekey_time: Option<u64>,
    pub dpd_delay: Option<u64>,
    /// The identities of the first local and remote authentication rounds.
    pub local_id: Option<String>,
    pub remote_id: Option<String>,
    /// Child configs: name -> (local TS, remote TS).
    pub children: BTreeMap<String, (Vec<String>, Vec<String>)>,
}

/// Parses one `list-sa` event (`{name {uniqueid=.. child-sas {..}}}`).
pub fn ike_sas_from_event(event: &ViciValue) -> anyhow::Result<Vec<IkeSa>> {
    event
        .entries()
        .map(|(name, sa)| ike_sa(name, sa).with_context(|| format!("list-sa: IKE SA {name}")))
        .collect()
}

fn algorithms(v: &ViciValue, keys: &[&str]) -> String {
    let mut parts = Vec::new();
    for key in keys {
        if let Some(alg) = v.str(key) {
            match v.str(&format!("{}-keysize", key.trim_end_matches("-alg"))) {
                Some(size) => parts.push(format!("{alg}-{size}")),
                None => parts.push(alg.to_string()),
            }
        }
    }
    parts.join("/")
}

fn hex_spi(v: &ViciValue, key: &str) -> anyhow::Result<Option<u32>> {
    v.str(key)
        .map(|s| {
            u32::from_str_radix(s.trim_start_matches("0x"), 16)
                .map_err(|e| anyhow!("{key} {s:?} is not a hex SPI: {e}"))
        })
        .transpose()
}

fn ike_sa(name: &str, v: &ViciValue) -> anyhow::Result<IkeSa> {
    let children = v
        .get("child-sas")
        .map(|c| {
            c.entries()
                .map(|(key, child)| child_sa(key, child).with_context(|| format!("child SA {key}")))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok(IkeSa {
        name: name.to_string(),
        unique_id: v.u64("uniqueid").context("no uniqueid")?,
        version: v.u64("version").unwrap_or(0) as u8,
        state: v.str("state").context("no state")?.to_string(),
        local_host: v.str("local-host").map(str::to_string),
        local_id: v.str("local-id").map(str::to_string),
        remote_host: v.str("remote-host").map(str::to_string),
        remote_id: v.str("remote-id").map(str::to_string),
        initiator: v.yes("initiator"),
        initiator_spi: v.str("initiator-spi").map(str::to_string),
        responder_spi: v.str("responder-spi").map(str::to_string),
        algorithms: algorithms(v, &["encr-alg", "integ-alg", "prf-alg", "dh-group"]),
        established: v.u64("established"),
        rekey_time: v.u64("rekey-time"),
        reauth_time: v.u64("reauth-time"),
        nat: v.yes("nat-any"),
        children,
    })
}

fn child_sa(key: &str, v: &ViciValue) -> anyhow::Result<ChildSa> {
    // Since 5.5 children are keyed `name-uniqueid` and carry their name inside.
    let name = v.str("name").unwrap_or(key).to_string();
    Ok(ChildSa {
        name,
        unique_id: v.u64("uniqueid").context("no uniqueid")?,
        reqid: v.u64("reqid").map(|r| r as u32),
        state: v.str("state").context("no state")?.to_string(),
        mode: v.str("mode").map(str::to_string),
        protocol: v.str("protocol").map(str::to_string),
        encap: v.yes("encap"),
        spi_in: hex_spi(v, "spi-in")?,
        spi_out: hex_spi(v, "spi-out")?,
        algorithms: algorithms(v, &["encr-alg", "integ-alg", "dh-group"]),
        bytes_in: v.u64("bytes-in").unwrap_or(0),
        packets_in: v.u64("packets-in").unwrap_or(0),
        bytes_out: v.u64("bytes-out").unwrap_or(0),
        packets_out: v.u64("packets-out").unwrap_or(0),
        use_in: v.u64("use-in"),
        use_out: v.u64("use-out"),
        install_time: v.u64("install-time"),
        rekey_time: v.u64("rekey-time"),
        life_time: v.u64("life-time"),
        local_ts: v.list("local-ts"),
        remote_ts: v.list("remote-ts"),
    })
}

/// Parses one `list-conn` event.
pub fn conns_from_event(event: &ViciValue) -> Vec<LoadedConn> {
    event
        .entries()
        .map(|(name, v)| {
            // Authentication rounds are sections `local-1`, `remote-1`, ...
            let round_id = |side: &str| {
                v.entries()
                    .filter(|(key, _)| {
                        key.strip_prefix(side)
                            .and_then(|n| n.strip_prefix('-'))
                            .is_some_and(|n| n.parse::<u32>().is_ok())
                    })
                    .min_by_key(|(key, _)| key.len())
                    .and_then(|(_, round)| round.str("id").map(str::to_string))
            };
            let children = v
                .get("children")
                .map(|c| {
                    c.entries()
                        .map(|(child, cv)| {
                            (child.clone(), (cv.list("local-ts"), cv.list("remote-ts")))
                        })
                        .collect()
                })
                .unwrap_or_default();
            LoadedConn {
                name: name.clone(),
                local_addrs: v.list("local_addrs"),
                remote_addrs: v.list("remote_addrs"),
                version: v.str("version").unwrap_or("0").to_string(),
                rekey_time: v.u64("rekey_time"),
                dpd_delay: v.u64("dpd_delay"),
                local_id: round_id("local"),
                remote_id: round_id("remote"),
                children,
            }
        })
        .collect()
}
