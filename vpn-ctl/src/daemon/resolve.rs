//! DNS names the daemon looks up again: peers' endpoints (the rule itself is
//! [`crate::wireguard::Endpoints::Reresolve`], applied by every converge) and IPsec
//! gateways' names, whose change of address renegotiates the site.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, ToSocketAddrs as _},
};

use crate::{
    config::{
        Config,
        ipsec::{Gateway, IpsecSite, Keying},
    },
    key::PublicKey,
};

/// Peers whose configured endpoint differs between `old` and `new` (interface, public key):
/// a reload sets them whatever their handshake.
pub fn edited_endpoints(old: &Config, new: &Config) -> HashSet<(String, PublicKey)> {
    let mut edited = HashSet::new();
    for iface in &new.wireguard {
        let before = old.interface(&iface.name);
        for peer in &iface.peers {
            let was = before
                .and_then(|i| i.peers.iter().find(|p| p.public_key == peer.public_key))
                .and_then(|p| p.endpoint.as_ref());
            if peer.endpoint.is_some() && was != peer.endpoint.as_ref() {
                edited.insert((iface.name.clone(), peer.public_key.clone()));
            }
        }
    }
    edited
}

/// The addresses the IKE sites' remote gateway names had at the last look.
#[derive(Debug, Default)]
pub struct Gateways {
    seen: HashMap<String, Vec<IpAddr>>,
}

impl Gateways {
    /// Resolves every IKE site's remote gateway name; returns the sites whose name now
    /// resolves to other addresses than at the last look (not on the first look, nor when
    /// the name does not resolve: the watchdog reports that).
    pub fn changed<'a>(&mut self, config: &'a Config) -> Vec<(&'a IpsecSite, String)> {
        let mut changed = Vec::new();
        let mut seen = HashMap::new();
        for site in &config.ipsec {
            let (Keying::Ike(_), Gateway::Name(name)) = (&site.keying, &site.remote_gateway) else {
                continue;
            };
            let Some(mut now) = lookup(name) else {
                if let Some(before) = self.seen.remove(&site.name) {
                    seen.insert(site.name.clone(), before);
                }
                continue;
            };
            now.sort();
            if let Some(before) = self.seen.get(&site.name)
                && *before != now
            {
                changed.push((
                    site,
                    format!(
                        "remote gateway {name} moved from {} to {}",
                        list(before),
                        list(&now)
                    ),
                ));
            }
            seen.insert(site.name.clone(), now);
        }
        self.seen = seen;
        changed
    }
}

fn lookup(name: &str) -> Option<Vec<IpAddr>> {
    let mut addrs: Vec<IpAddr> = (name, 0).to_socket_addrs().ok()?.map(|a| a.ip()).collect();
    addrs.dedup();
    (!addrs.is_empty()).then_some(addrs)
}

fn list(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
