//! Routes vpn-ctl adds for peers' allowed IPs, over rtnetlink (`ip route`).
//!
//! They carry their own protocol number, [`PROTOCOL`], so vpn-ctl recognises exactly the
//! routes it added and never touches anyone else's (`ip route show proto 87`).

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Context as _;
use futures::TryStreamExt as _;
use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope,
};
use rtnetlink::RouteMessageBuilder;

use crate::link::{Interface, Netlink, errno};

/// The `proto` of vpn-ctl's routes (unassigned in iproute2's `rt_protos`).
pub const PROTOCOL: u8 = 87;

impl Netlink {
    /// The routes through `iface` that vpn-ctl added, both families
    /// (`ip route show dev NAME proto 87; ip -6 route show dev NAME proto 87`).
    pub async fn managed_routes(&self, iface: &Interface) -> anyhow::Result<Vec<IpNet>> {
        let mut found = Vec::new();
        for query in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let mut stream = self.handle().route().get(query).execute();
            while let Some(msg) = stream
                .try_next()
                .await
                .with_context(|| format!("reading the routes through {}", iface.name))?
            {
                if msg.header.protocol == RouteProtocol::Other(PROTOCOL)
                    && output_interface(&msg) == Some(iface.index)
                    && let Some(net) = destination(&msg)
                {
                    found.push(net);
                }
            }
        }
        Ok(found)
    }

    /// `ip route replace PREFIX dev NAME proto 87`.
    pub async fn add_route(&self, iface: &Interface, net: IpNet) -> anyhow::Result<()> {
        self.handle()
            .route()
            .add(route(iface, net))
            .replace()
            .execute()
            .await
            .with_context(|| format!("adding route {net} dev {} failed", iface.name))
    }

    /// `ip route del PREFIX dev NAME proto 87`.
    pub async fn delete_route(&self, iface: &Interface, net: IpNet) -> anyhow::Result<()> {
        match self.handle().route().del(route(iface, net)).execute().await {
            Err(e) if errno(&e) == Some(libc::ESRCH) => Ok(()),
            r => r.with_context(|| format!("removing route {net} dev {} failed", iface.name)),
        }
    }
}

fn route(iface: &Interface, net: IpNet) -> RouteMessage {
    let net = net.trunc();
    match net {
        IpNet::V4(n) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(n.addr(), n.prefix_len())
            .output_interface(iface.index)
            .protocol(RouteProtocol::Other(PROTOCOL))
            .scope(RouteScope::Link)
            .build(),
        IpNet::V6(n) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(n.addr(), n.prefix_len())
            .output_interface(iface.index)
            .protocol(RouteProtocol::Other(PROTOCOL))
            .scope(RouteScope::Link)
            .build(),
    }
}

fn output_interface(msg: &RouteMessage) -> Option<u32> {
    msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(index) => Some(*index),
        _ => None,
    })
}

fn destination(msg: &RouteMessage) -> Option<IpNet> {
    let len = msg.header.destination_prefix_length;
    let addr = msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some((*ip).into()),
        RouteAttribute::Destination(RouteAddress::Inet6(ip)) => Some((*ip).into()),
        _ => None,
    });
    match addr {
        Some(ip) => IpNet::new(ip, len).ok(),
        // A default route has no destination attribute.
        None if len == 0 => Some(
            if msg.header.address_family == netlink_packet_route::AddressFamily::Inet6 {
                "::/0".parse().unwrap()
            } else {
                "0.0.0.0/0".parse().unwrap()
            },
        ),
        None => None,
    }
}
