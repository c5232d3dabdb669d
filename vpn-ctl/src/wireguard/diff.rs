//! Desired WireGuard device state against the observed one: the minimal change.
//!
//! Only what differs is sent to the kernel: an unchanged peer is not in the update at all, so
//! its session, handshake and counters are untouched; a changed peer carries only the
//! changed attributes; a peer that is no longer wanted is removed with `WGPEER_F_REMOVE_ME`.

use std::{collections::HashMap, fmt, net::SocketAddr, time::SystemTime};

use ipnet::IpNet;

use crate::key::{PublicKey, Secret};

/// What a device should look like (from the config, endpoints resolved).
#[derive(Debug, Clone)]
pub struct DesiredDevice {
    pub private_key: Secret,
    pub listen_port: Option<u16>,
    pub fwmark: Option<u32>,
    pub peers: Vec<DesiredPeer>,
}

#[derive(Debug, Clone)]
pub struct DesiredPeer {
    /// The config's friendly name, for messages.
    pub name: String,
    pub public_key: PublicKey,
    pub preshared_key: Option<Secret>,
    /// `None`: whatever the peer roams from (a road-warrior client).
    pub endpoint: Option<SocketAddr>,
    pub persistent_keepalive: Option<u16>,
    pub allowed_ips: Vec<IpNet>,
}

/// What the kernel (or the userspace device) reports.
#[derive(Debug, Clone, Default)]
pub struct ObservedDevice {
    pub private_key: Option<Secret>,
    pub public_key: Option<PublicKey>,
    pub listen_port: Option<u16>,
    pub fwmark: Option<u32>,
    pub peers: Vec<ObservedPeer>,
}

#[derive(Debug, Clone)]
pub struct ObservedPeer {
    pub public_key: PublicKey,
    pub preshared_key: Option<Secret>,
    /// A preshared key is set but the implementation does not show it (userspace): only
    /// its presence can be compared.
    pub preshared_key_hidden: bool,
    pub endpoint: Option<SocketAddr>,
    pub persistent_keepalive: Option<u16>,
    pub allowed_ips: Vec<IpNet>,
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// The minimal update that turns the observed device into the desired one.
#[derive(Debug, Clone, Default)]
pub struct DevicePlan {
    pub private_key: Option<Secret>,
    pub listen_port: Option<u16>,
    /// `Some(0)` clears the mark.
    pub fwmark: Option<u32>,
    pub peers: Vec<PeerChange>,
}

/// One peer's change.
#[derive(Debug, Clone)]
pub enum PeerChange {
    Add(DesiredPeer),
    Update {
        name: String,
        public_key: PublicKey,
        /// `Some(None)`: remove the preshared key.
        preshared_key: Option<Option<Secret>>,
        endpoint: Option<SocketAddr>,
        /// `Some(0)`: turn keepalive off.
        persistent_keepalive: Option<u16>,
        /// Replace the allowed IPs with these.
        allowed_ips: Option<Vec<IpNet>>,
    },
    /// A peer the config no longer has (its name is unknown: only the key is).
    Remove(PublicKey),
}

impl DevicePlan {
    pub fn is_empty(&self) -> bool {
        self.private_key.is_none()
            && self.listen_port.is_none()
            && self.fwmark.is_none()
            && self.peers.is_empty()
    }

    /// One line per change, for `up`'s report.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.private_key.is_some() {
            lines.push("set the private key".to_string());
        }
        if let Some(port) = self.listen_port {
            lines.push(format!("set listen port {port}"));
        }
        match self.fwmark {
            Some(0) => lines.push("clear the firewall mark".to_string()),
            Some(mark) => lines.push(format!("set firewall mark {mark:#x}")),
            None => {}
        }
        lines.extend(self.peers.iter().map(ToString::to_string));
        lines
    }
}

impl fmt::Display for PeerChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerChange::Add(p) => write!(f, "add peer {} ({})", p.name, p.public_key),
            PeerChange::Remove(key) => write!(f, "remove peer {key}"),
            PeerChange::Update {
                name,
                preshared_key,
                endpoint,
                persistent_keepalive,
                allowed_ips,
                ..
            } => {
                let mut what = Vec::new();
                if preshared_key.is_some() {
                    what.push("preshared key".to_string());
                }
                if let Some(e) = endpoint {
                    what.push(format!("endpoint {e}"));
                }
                if let Some(k) = persistent_keepalive {
                    what.push(format!("keepalive {k}"));
                }
                if let Some(ips) = allowed_ips {
                    let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
                    what.push(format!("allowed IPs {}", ips.join(", ")));
                }
                write!(f, "update peer {name}: {}", what.join("; "))
            }
        }
    }
}

/// Compares desired and observed state. `observed` is `None` for a device that does not
/// exist yet (everything is set).
pub fn diff(desired: &DesiredDevice, observed: Option<&ObservedDevice>) -> DevicePlan {
    let empty = ObservedDevice::default();
    let observed = observed.unwrap_or(&empty);
    let mut plan = DevicePlan::default();

    // Some userspace implementations report only the public key; compare what is there.
    let same_key = match (&observed.private_key, &observed.public_key) {
        (Some(private), _) => *private == desired.private_key,
        (None, Some(public)) => *public == desired.private_key.public_key(),
        (None, None) => false,
    };
    if !same_key {
        plan.private_key = Some(desired.private_key.clone());
    }
    if let Some(port) = desired.listen_port
        && observed.listen_port != Some(port)
    {
        plan.listen_port = Some(port);
    }
    match (desired.fwmark, observed.fwmark) {
        (Some(want), have) if have != Some(want) => plan.fwmark = Some(want),
        (None, Some(_)) => plan.fwmark = Some(0),
        _ => {}
    }

    let observed_peers: HashMap<&PublicKey, &ObservedPeer> =
        observed.peers.iter().map(|p| (&p.public_key, p)).collect();
    for want in &desired.peers {
        let Some(have) = observed_peers.get(&want.public_key) else {
            plan.peers.push(PeerChange::Add(want.clone()));
            continue;
        };
        let psk_differs = if have.preshared_key_hidden {
            want.preshared_key.is_none()
        } else {
            want.preshared_key != have.preshared_key
        };
        let preshared_key = psk_differs.then(|| want.preshared_key.clone());
        // A peer without a configured endpoint roams: whatever the kernel learnt stays.
        let endpoint = want.endpoint.filter(|e| have.endpoint != Some(*e));
        let persistent_keepalive = (want.persistent_keepalive != have.persistent_keepalive)
            .then(|| want.persistent_keepalive.unwrap_or(0));
        let allowed_ips =
            (!same_set(&want.allowed_ips, &have.allowed_ips)).then(|| want.allowed_ips.clone());
        if preshared_key.is_some()
            || endpoint.is_some()
            || persistent_keepalive.is_some()
            || allowed_ips.is_some()
        {
            plan.peers.push(PeerChange::Update {
                name: want.name.clone(),
                public_key: want.public_key.clone(),
                preshared_key,
                endpoint,
                persistent_keepalive,
                allowed_ips,
            });
        }
    }
    let wanted: std::collections::HashSet<&PublicKey> =
        desired.peers.iter().map(|p| &p.public_key).collect();
    for have in &observed.peers {
        if !wanted.contains(&have.public_key) {
            plan.peers.push(PeerChange::Remove(have.public_key.clone()));
        }
    }
    plan
}

fn same_set(a: &[IpNet], b: &[IpNet]) -> bool {
    let mut a: Vec<IpNet> = a.iter().map(IpNet::trunc).collect();
    let mut b: Vec<IpNet> = b.iter().map(IpNet::trunc).collect();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PublicKey {
        Secret::generate_private().public_key()
    }

    fn peer(name: &str, ip: &str) -> DesiredPeer {
        DesiredPeer {
            name: name.into(),
            public_key: key(),
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: None,
            allowed_ips: vec![ip.parse().unwrap()],
        }
    }

    /// What the kernel reports after applying `d` in full.
    fn applied(d: &DesiredDevice) -> ObservedDevice {
        ObservedDevice {
            private_key: Some(d.private_key.clone()),
            public_key: Some(d.private_key.public_key()),
            listen_port: d.listen_port,
            fwmark: d.fwmark,
            peers: d
                .peers
                .iter()
                .map(|p| ObservedPeer {
                    public_key: p.public_key.clone(),
                    preshared_key: p.preshared_key.clone(),
                    preshared_key_hidden: false,
                    endpoint: p.endpoint,
                    persistent_keepalive: p.persistent_keepalive,
                    allowed_ips: p.allowed_ips.clone(),
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                })
                .collect(),
        }
    }

    fn device() -> DesiredDevice {
        DesiredDevice {
            private_key: Secret::generate_private(),
            listen_port: Some(51820),
            fwmark: None,
            peers: vec![peer("phone", "10.8.0.2/32"), peer("laptop", "10.8.0.3/32")],
        }
    }

    #[test]
    fn a_new_device_gets_everything() {
        let d = device();
        let plan = diff(&d, None);
        assert!(plan.private_key.is_some());
        assert_eq!(plan.listen_port, Some(51820));
        assert_eq!(plan.peers.len(), 2);
        assert!(plan.peers.iter().all(|p| matches!(p, PeerChange::Add(_))));
    }

    #[test]
    fn an_applied_device_needs_nothing() {
        let d = device();
        let plan = diff(&d, Some(&applied(&d)));
        assert!(plan.is_empty(), "{:?}", plan.describe());
    }

    #[test]
    fn a_roaming_peer_without_a_configured_endpoint_is_left_alone() {
        let d = device();
        let mut seen = applied(&d);
        seen.peers[0].endpoint = Some("192.0.2.7:40000".parse().unwrap());
        seen.peers[0].last_handshake = Some(SystemTime::now());
        assert!(diff(&d, Some(&seen)).is_empty());
    }

    #[test]
    fn a_changed_peer_is_updated_alone_with_only_what_changed() {
        let mut d = device();
        let seen = applied(&d);
        d.peers[1].persistent_keepalive = Some(25);
        let plan = diff(&d, Some(&seen));
        assert_eq!(plan.peers.len(), 1);
        match &plan.peers[0] {
            PeerChange::Update {
                name,
                persistent_keepalive,
                allowed_ips,
                preshared_key,
                endpoint,
                ..
            } => {
                assert_eq!(name, "laptop");
                assert_eq!(*persistent_keepalive, Some(25));
                assert!(allowed_ips.is_none() && preshared_key.is_none() && endpoint.is_none());
            }
            other => panic!("expected an update, got {other}"),
        }
        assert_eq!(plan.describe(), ["update peer laptop: keepalive 25"]);
    }

    #[test]
    fn removed_peers_are_removed_and_new_ones_added() {
        let mut d = device();
        let seen = applied(&d);
        let gone = d.peers.remove(0).public_key;
        d.peers.push(peer("tablet", "10.8.0.4/32"));
        let plan = diff(&d, Some(&seen));
        assert_eq!(plan.peers.len(), 2);
        assert!(
            plan.peers
                .iter()
                .any(|p| matches!(p, PeerChange::Remove(k) if *k == gone))
        );
        assert!(
            plan.peers
                .iter()
                .any(|p| matches!(p, PeerChange::Add(a) if a.name == "tablet"))
        );
    }

    #[test]
    fn allowed_ips_compare_as_sets_and_keepalive_off_is_zero() {
        let mut d = device();
        d.peers[0].allowed_ips = vec![
            "10.8.0.2/32".parse().unwrap(),
            "fd08::2/128".parse().unwrap(),
        ];
        d.peers[0].persistent_keepalive = Some(25);
        let mut seen = applied(&d);
        seen.peers[0].allowed_ips.reverse();
        assert!(diff(&d, Some(&seen)).is_empty());
        d.peers[0].persistent_keepalive = None;
        let plan = diff(&d, Some(&seen));
        assert!(matches!(
            plan.peers[0],
            PeerChange::Update {
                persistent_keepalive: Some(0),
                ..
            }
        ));
    }

    #[test]
    fn a_userspace_device_reporting_only_its_public_key_keeps_its_key() {
        let d = device();
        let mut seen = applied(&d);
        seen.private_key = None;
        assert!(diff(&d, Some(&seen)).is_empty());
        seen.public_key = Some(key());
        assert!(diff(&d, Some(&seen)).private_key.is_some());
    }

    #[test]
    fn a_hidden_preshared_key_compares_by_presence() {
        let mut d = device();
        d.peers[0].preshared_key = Some(Secret::generate_preshared());
        let mut seen = applied(&d);
        seen.peers[0].preshared_key = None;
        seen.peers[0].preshared_key_hidden = true;
        assert!(diff(&d, Some(&seen)).is_empty());
        d.peers[0].preshared_key = None;
        assert!(matches!(
            diff(&d, Some(&seen)).peers[0],
            PeerChange::Update {
                preshared_key: Some(None),
                ..
            }
        ));
    }

    #[test]
    fn a_removed_fwmark_is_cleared_and_psk_removal_is_explicit() {
        let mut d = device();
        d.fwmark = Some(0x51820);
        d.peers[0].preshared_key = Some(Secret::generate_preshared());
        let seen = applied(&d);
        d.fwmark = None;
        d.peers[0].preshared_key = None;
        let plan = diff(&d, Some(&seen));
        assert_eq!(plan.fwmark, Some(0));
        assert!(matches!(
            plan.peers[0],
            PeerChange::Update {
                preshared_key: Some(None),
                ..
            }
        ));
    }
}
