//! What an IKE site becomes in charon: a `load-conn` connection with one child, a
//! `load-shared` pre-shared key, and a record of both that `up` diffs against.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context as _, bail};
use blake2::{Blake2s256, Digest as _};
use serde::Serialize;

use super::vici::{LoadedConn, SharedKey, ViciValue};
use crate::config::ipsec::{Gateway, Identity, IkeKeying, IkeVersion, IpsecSite, Keying};

/// What the names of everything vpn-ctl loads into charon start with: connections, their
/// children and shared keys are `vpn-ctl-<site>`. vpn-ctl never touches a name without it.
pub const NAME_PREFIX: &str = "vpn-ctl-";

/// The connection, child and shared-key name of a site.
pub fn conn_name(site: &str) -> String {
    format!("{NAME_PREFIX}{site}")
}

/// The site a connection name belongs to, if it is one of vpn-ctl's.
pub fn site_of(conn: &str) -> Option<&str> {
    conn.strip_prefix(NAME_PREFIX).filter(|s| !s.is_empty())
}

/// The share of a lifetime after which charon renegotiates: 90 %, so the SA is replaced
/// before the peer's copy (same lifetime) runs out.
const REKEY_PERCENT: u64 = 90;

/// `load-conn`'s message for one connection (swanctl.conf's `connections.<name>`), as
/// charon reads it. Times are seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnBody {
    /// 1 or 2.
    pub version: u8,
    /// IKEv1 aggressive mode (the FRITZ!Box's LAN-to-LAN mode).
    pub aggressive: bool,
    /// Empty: `%any`, whatever address the route to the peer leaves from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub local_addrs: Vec<String>,
    /// An address or a DNS name; charon resolves a name at every (re)initiation.
    pub remote_addrs: Vec<String>,
    pub proposals: Vec<String>,
    /// IKEv2: rekeying; IKEv1: re-authentication (IKEv1 cannot rekey an IKE SA).
    pub rekey_time: u64,
    /// How long after `rekey_time` the SA is dropped if renegotiation fails.
    pub over_time: u64,
    /// 0: dead-peer detection off.
    pub dpd_delay: u64,
    /// IKEv1 only: how long without an answer before the peer counts as dead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dpd_timeout: Option<u64>,
    /// Force UDP encapsulation even without a NAT. charon always detects NAT and switches to
    /// UDP 4500 when it finds one, so this stays off (see the module documentation).
    pub encap: bool,
    /// 0: try forever, like the seed's `keyingtries=%forever`.
    pub keyingtries: u32,
    /// `replace`: a new IKE SA with the same identities (the peer rebooted and initiated
    /// again) replaces the old one instead of piling up beside it.
    pub unique: &'static str,
    pub local: AuthRound,
    pub remote: AuthRound,
    pub children: BTreeMap<String, ChildBody>,
}

/// One authentication round (`local`, `remote`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthRound {
    /// `psk`.
    pub auth: &'static str,
    /// `fqdn:NAME` or an address; left out: the local address / any remote identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A child (swanctl.conf's `children.<name>`): the tunnel between the subnets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChildBody {
    pub mode: &'static str,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    pub esp_proposals: Vec<String>,
    pub rekey_time: u64,
    pub life_time: u64,
    /// `trap`: kernel policies for the subnets are installed as soon as the connection is
    /// loaded, so traffic for the remote LAN never leaves unencrypted and brings the tunnel
    /// up on demand (besides the explicit `initiate` of `up`).
    pub start_action: &'static str,
    /// `restart`: a dead peer's SAs are re-established at once.
    pub dpd_action: &'static str,
    /// IKEv1 `restart`: when the peer deletes the CHILD SA (a FRITZ!Box that restarted, say),
    /// it is re-established at once. (charon 5.9.6 renamed it `start`; both are accepted.)
    /// IKEv2 `trap`: an IKEv2 peer that re-authenticates make-before-break deletes the old
    /// IKE SA with its CHILD SAs after the new ones are up, and `restart` would then start a
    /// third, duplicate IKE SA; with `trap` the next packet brings the tunnel back if the
    /// peer really closed it.
    pub close_action: &'static str,
}

/// An IKE site as charon gets it.
#[derive(Debug, Clone)]
pub struct Connection {
    /// `vpn-ctl-<site>`: the connection's, its child's and its shared key's name.
    pub name: String,
    pub body: ConnBody,
    /// Its pre-shared key, `Debug` redacted.
    pub shared: SharedKey,
}

/// An identity as charon reads it: `fqdn:` keeps a name from being taken for anything else
/// (charon would also read `left.domain.com` alone as an FQDN).
pub fn identity(id: &Identity) -> String {
    match id {
        Identity::Fqdn(name) => format!("fqdn:{name}"),
        Identity::Address(addr) => addr.to_string(),
    }
}

/// How charon shows an identity (`list-conns`, `list-sas`): without the type prefix.
pub fn identity_shown(id: &str) -> &str {
    id.strip_prefix("fqdn:").unwrap_or(id)
}

fn gateway(g: &Gateway) -> String {
    g.to_string()
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

impl Connection {
    /// The connection for an `ike` site; an error for a `static` one.
    pub fn from_site(site: &IpsecSite) -> anyhow::Result<Connection> {
        let Keying::Ike(ike) = &site.keying else {
            bail!(
                "site {} uses static keying, which charon has no part in",
                site.name
            );
        };
        Ok(Connection::new(site, ike))
    }

    fn new(site: &IpsecSite, ike: &IkeKeying) -> Connection {
        let name = conn_name(&site.name);
        let (version, aggressive) = match ike.version {
            IkeVersion::V2 => (2, false),
            IkeVersion::V1Main => (1, false),
            IkeVersion::V1Aggressive => (1, true),
        };
        let ike_life = secs(ike.ike_lifetime).max(1);
        let ike_rekey = (ike_life * REKEY_PERCENT / 100).max(1);
        let esp_life = secs(ike.esp_lifetime).max(1);
        let esp_rekey = (esp_life * REKEY_PERCENT / 100).max(1);
        let dpd = ike.dpd.map(secs).unwrap_or(0);
        let ts = |nets: &[ipnet::IpNet]| nets.iter().map(|n| n.trunc().to_string()).collect();
        let local_id = ike.local_id.as_ref().map(identity);
        let remote_id = ike.remote_id.as_ref().map(identity);

        // The key belongs to both ends' identities; an end without one is known by its
        // address, where it has one.
        let owner = |id: &Option<String>, gw: Option<&Gateway>| {
            id.clone().or_else(|| match gw {
                Some(Gateway::Address(addr)) => Some(addr.to_string()),
                _ => None,
            })
        };
        let owners = [
            owner(&local_id, site.local_gateway.as_ref()),
            owner(&remote_id, Some(&site.remote_gateway)),
        ]
        .into_iter()
        .flatten()
        .collect();

        let child = ChildBody {
            mode: "tunnel",
            local_ts: ts(&site.local_subnets),
            remote_ts: ts(&site.remote_subnets),
            esp_proposals: ike.esp_proposals.clone(),
            rekey_time: esp_rekey,
            life_time: esp_life,
            start_action: "trap",
            dpd_action: "restart",
            close_action: if version == 2 { "trap" } else { "restart" },
        };
        let body = ConnBody {
            version,
            aggressive,
            local_addrs: site.local_gateway.iter().map(gateway).collect(),
            remote_addrs: vec![gateway(&site.remote_gateway)],
            proposals: ike.ike_proposals.clone(),
            rekey_time: ike_rekey,
            over_time: ike_life - ike_rekey,
            dpd_delay: dpd,
            dpd_timeout: (version == 1 && dpd > 0).then_some(2 * dpd),
            encap: false,
            keyingtries: 0,
            unique: "replace",
            local: AuthRound {
                auth: "psk",
                id: local_id,
            },
            remote: AuthRound {
                auth: "psk",
                id: remote_id,
            },
            children: BTreeMap::from([(name.clone(), child)]),
        };
        Connection {
            shared: SharedKey {
                id: name.clone(),
                owners,
                secret: ike.psk.clone(),
            },
            name,
            body,
        }
    }

    /// The `load-conn` message as VICI bytes (what goes over the socket).
    pub fn message(&self) -> anyhow::Result<Vec<u8>> {
        serde_vici::to_vec(&BTreeMap::from([(&self.name, &self.body)]))
            .context("encoding the load-conn message")
    }

    /// The `load-conn` message read back as a tree.
    pub fn tree(&self) -> anyhow::Result<ViciValue> {
        serde_vici::from_slice(&self.message()?).context("decoding the load-conn message")
    }

    /// What `up` remembers of a loaded connection (charon's `list-conns` shows too little of
    /// it to diff: no proposals, no aggressive mode, no lifetimes): every `load-conn` setting
    /// as `key = value` lines, the shared key's owners, and a BLAKE2s digest of the shared
    /// key (so a changed key is noticed without storing it; the file is mode 0600 like the
    /// key file itself).
    pub fn record(&self) -> anyhow::Result<Record> {
        let tree = self.tree()?;
        let body = tree
            .get(&self.name)
            .context("the load-conn message lost its connection")?;
        let mut lines: BTreeMap<String, String> = body.flatten().into_iter().collect();
        lines.insert("psk.owners".into(), self.shared.owners.join(", "));
        let mut digest = Blake2s256::new();
        digest.update(b"vpn-ctl ike psk v1\0");
        digest.update(self.shared.secret.expose());
        lines.insert("psk.digest".into(), hex(&digest.finalize()));
        Ok(Record(lines))
    }

    /// How the loaded connection charon shows differs from this one, in words; empty when
    /// everything charon shows matches.
    pub fn differences_from_loaded(&self, loaded: &LoadedConn) -> Vec<String> {
        let mut diffs = Vec::new();
        let mut differ = |what: &str, want: String, have: String| {
            if want != have {
                diffs.push(format!("{what}: charon has {have}, the config says {want}"));
            }
        };
        let body = &self.body;
        differ(
            "IKE version",
            format!("IKEv{}", body.version),
            loaded.version.clone(),
        );
        let local = if body.local_addrs.is_empty() {
            vec!["%any".to_string()]
        } else {
            body.local_addrs.clone()
        };
        differ(
            "local address",
            local.join(", "),
            loaded.local_addrs.join(", "),
        );
        differ(
            "remote address",
            body.remote_addrs.join(", "),
            loaded.remote_addrs.join(", "),
        );
        let id = |want: &Option<String>| {
            want.as_deref()
                .map(identity_shown)
                .unwrap_or("%any")
                .to_string()
        };
        let loaded_id = |have: &Option<String>| have.clone().unwrap_or_else(|| "%any".into());
        differ(
            "local identity",
            id(&body.local.id),
            loaded_id(&loaded.local_id),
        );
        differ(
            "remote identity",
            id(&body.remote.id),
            loaded_id(&loaded.remote_id),
        );
        differ(
            "IKE rekey time",
            format!("{}s", body.rekey_time),
            format!("{}s", loaded.rekey_time.unwrap_or(0)),
        );
        differ(
            "DPD interval",
            format!("{}s", body.dpd_delay),
            format!("{}s", loaded.dpd_delay.unwrap_or(0)),
        );
        let children = |c: &BTreeMap<String, (Vec<String>, Vec<String>)>| {
            c.iter()
                .map(|(name, (l, r))| format!("{name} {} === {}", l.join(","), r.join(",")))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let want: BTreeMap<String, (Vec<String>, Vec<String>)> = body
            .children
            .iter()
            .map(|(n, c)| (n.clone(), (c.local_ts.clone(), c.remote_ts.clone())))
            .collect();
        differ("tunnel", children(&want), children(&loaded.children));
        diffs
    }
}

/// The non-secret record of a loaded connection: `key = value` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record(pub BTreeMap<String, String>);

impl Record {
    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut text = String::from(
            "# What vpn-ctl loaded into charon for this connection (no secrets); `vpn-ctl up`\n\
             # compares the config with it. Deleting it makes the next `up` reload the\n\
             # connection (which keeps its SAs).\n",
        );
        for (key, value) in &self.0 {
            text.push_str(&format!("{key} = {value}\n"));
        }
        text
    }

    pub fn parse(text: &str) -> Record {
        Record(
            text.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .filter_map(|l| l.split_once(" = "))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// What changed from `self` (what was loaded) to `new`, one line per setting; the key's
    /// digest is never shown.
    pub fn changes_to(&self, new: &Record) -> Vec<String> {
        let keys: std::collections::BTreeSet<&String> = self.0.keys().chain(new.0.keys()).collect();
        let mut changes = Vec::new();
        for key in keys {
            let (old, now) = (self.0.get(key), new.0.get(key));
            if old == now {
                continue;
            }
            if key == "psk.digest" {
                changes.push("pre-shared key changed".to_string());
                continue;
            }
            let show = |v: Option<&String>| v.map_or("(none)".to_string(), |v| v.clone());
            changes.push(format!("{key}: {} -> {}", show(old), show(now)));
        }
        changes
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
