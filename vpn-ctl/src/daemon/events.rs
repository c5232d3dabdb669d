//! What changes underneath the daemon: the kernel's rtnetlink and XFRM multicast groups
//! (`ip monitor link address route`, `ip xfrm monitor sa policy`), boiled down to the object
//! each message concerns. The daemon decides which of them are its own.

use std::collections::HashSet;

use anyhow::Context as _;
use futures::StreamExt as _;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{RouteNetlinkMessage, link::LinkAttribute, route::RouteAttribute};
use netlink_sys::{AsyncSocket as _, Socket, SocketAddr, protocols::NETLINK_XFRM};
use rtnetlink::constants::{
    RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE, RTMGRP_LINK,
};
use tokio::sync::mpsc;

/// One kernel notification, by the object it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `RTM_NEWLINK` / `RTM_DELLINK`.
    Link {
        index: u32,
        name: Option<String>,
        removed: bool,
    },
    /// `RTM_NEWADDR` / `RTM_DELADDR` on the link `index`.
    Address { index: u32, removed: bool },
    /// `RTM_NEWROUTE` / `RTM_DELROUTE`.
    Route {
        oif: Option<u32>,
        protocol: u8,
        removed: bool,
    },
    /// An XFRM SA or policy was added, changed, removed or flushed. Only the message type is
    /// read: these messages carry keys.
    Xfrm { what: &'static str },
}

/// The objects the daemon converges: the config's WireGuard link names, the indices those
/// links have now, and whether the config has static IPsec sites (whose SAs and policies
/// `up` installs).
#[derive(Debug, Clone, Default)]
pub struct Managed {
    pub names: HashSet<String>,
    pub indices: HashSet<u32>,
    pub static_ipsec: bool,
}

impl Event {
    /// Whether the event is about something the daemon manages; the words for the log.
    pub fn concerns(&self, managed: &Managed) -> Option<String> {
        let verb = |removed: bool| if removed { "removed" } else { "changed" };
        match self {
            Event::Link {
                index,
                name,
                removed,
            } => {
                let ours = managed.indices.contains(index)
                    || name.as_ref().is_some_and(|n| managed.names.contains(n));
                ours.then(|| {
                    format!(
                        "link {} {}",
                        name.clone().unwrap_or_else(|| format!("#{index}")),
                        verb(*removed)
                    )
                })
            }
            Event::Address { index, removed } => managed
                .indices
                .contains(index)
                .then(|| format!("address on link #{index} {}", verb(*removed))),
            Event::Route {
                oif,
                protocol,
                removed,
            } => (*protocol == crate::route::PROTOCOL
                || oif.is_some_and(|i| managed.indices.contains(&i)))
            .then(|| format!("route {}", verb(*removed))),
            Event::Xfrm { what } => managed.static_ipsec.then(|| format!("xfrm {what}")),
        }
    }

    fn from_route(message: NetlinkMessage<RouteNetlinkMessage>) -> Option<Event> {
        let NetlinkPayload::InnerMessage(inner) = message.payload else {
            return None;
        };
        let link = |m: &netlink_packet_route::link::LinkMessage, removed| Event::Link {
            index: m.header.index,
            name: m.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            }),
            removed,
        };
        let route = |m: &netlink_packet_route::route::RouteMessage, removed| Event::Route {
            oif: m.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            }),
            protocol: u8::from(m.header.protocol),
            removed,
        };
        Some(match &inner {
            RouteNetlinkMessage::NewLink(m) => link(m, false),
            RouteNetlinkMessage::DelLink(m) => link(m, true),
            RouteNetlinkMessage::NewAddress(m) => Event::Address {
                index: m.header.index,
                removed: false,
            },
            RouteNetlinkMessage::DelAddress(m) => Event::Address {
                index: m.header.index,
                removed: true,
            },
            RouteNetlinkMessage::NewRoute(m) => route(m, false),
            RouteNetlinkMessage::DelRoute(m) => route(m, true),
            _ => return None,
        })
    }
}

/// The legacy group bits of `XFRMNLGRP_SA` (3) and `XFRMNLGRP_POLICY` (4).
const XFRMGRP_SA: u32 = 1 << (netlink_packet_xfrm::constants::XFRMNLGRP_SA - 1);
const XFRMGRP_POLICY: u32 = 1 << (netlink_packet_xfrm::constants::XFRMNLGRP_POLICY - 1);

/// Subscribes to link, address and route changes (rtnetlink) and SA and policy changes (XFRM)
/// in the calling thread's network namespace. Must run inside a tokio runtime.
///
/// A kernel without XFRM netlink only loses the XFRM half, with a debug message.
pub fn subscribe() -> anyhow::Result<mpsc::UnboundedReceiver<Event>> {
    let (tx, rx) = mpsc::unbounded_channel();

    let (mut connection, handle, mut messages) = rtnetlink::new_connection()
        .context("opening a route netlink socket for change notifications failed")?;
    let groups = RTMGRP_LINK
        | RTMGRP_IPV4_IFADDR
        | RTMGRP_IPV6_IFADDR
        | RTMGRP_IPV4_ROUTE
        | RTMGRP_IPV6_ROUTE;
    connection
        .socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, groups))
        .context("subscribing to link, address and route notifications failed")?;
    tokio::spawn(connection);
    let route_tx = tx.clone();
    tokio::spawn(async move {
        // The handle keeps the connection task alive.
        let _handle = handle;
        while let Some((message, _)) = messages.next().await {
            if let Some(event) = Event::from_route(message)
                && route_tx.send(event).is_err()
            {
                break;
            }
        }
        log::debug!("route netlink notifications ended");
    });

    match xfrm_socket() {
        Ok(socket) => {
            std::thread::Builder::new()
                .name("xfrm-events".into())
                .spawn(move || xfrm_events(&socket, &tx))
                .context("starting the XFRM notification thread failed")?;
        }
        Err(e) => log::debug!("no XFRM notifications: {e:#}"),
    }
    Ok(rx)
}

fn xfrm_socket() -> anyhow::Result<Socket> {
    let mut socket = Socket::new(NETLINK_XFRM).context("socket(NETLINK_XFRM)")?;
    socket
        .bind(&SocketAddr::new(0, XFRMGRP_SA | XFRMGRP_POLICY))
        .context("subscribing to XFRM SA and policy notifications")?;
    Ok(socket)
}

/// Reads XFRM notifications until the receiver is gone. Only each message's type is looked
/// at; the buffer (which holds key material of SA messages) is zeroed after every read.
fn xfrm_events(socket: &Socket, tx: &mpsc::UnboundedSender<Event>) {
    use netlink_packet_xfrm::constants as c;
    let mut buf = zeroize::Zeroizing::new(vec![0u8; 64 * 1024]);
    loop {
        let n = match socket.recv(&mut &mut buf[..], 0) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                // Messages were lost: something changed; converge to be sure.
                if tx.send(Event::Xfrm { what: "overrun" }).is_err() {
                    return;
                }
                continue;
            }
            Err(e) => {
                log::warn!("XFRM notifications stopped: {e}");
                return;
            }
        };
        let mut offset = 0;
        while offset + 16 <= n {
            let len = u32::from_ne_bytes(buf[offset..offset + 4].try_into().expect("4 bytes"));
            let kind = u16::from_ne_bytes(buf[offset + 4..offset + 6].try_into().expect("2 bytes"));
            let what = match kind {
                c::XFRM_MSG_NEWSA | c::XFRM_MSG_UPDSA => Some("sa changed"),
                c::XFRM_MSG_DELSA => Some("sa removed"),
                c::XFRM_MSG_FLUSHSA => Some("sas flushed"),
                c::XFRM_MSG_NEWPOLICY | c::XFRM_MSG_UPDPOLICY => Some("policy changed"),
                c::XFRM_MSG_DELPOLICY => Some("policy removed"),
                c::XFRM_MSG_FLUSHPOLICY => Some("policies flushed"),
                _ => None,
            };
            if let Some(what) = what
                && tx.send(Event::Xfrm { what }).is_err()
            {
                return;
            }
            let step = (len as usize).div_ceil(4) * 4;
            if step == 0 {
                break;
            }
            offset += step;
        }
        buf[..n].fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_managed_objects_concern_the_daemon() {
        let managed = Managed {
            names: ["wg0".to_string()].into(),
            indices: [7].into(),
            static_ipsec: false,
        };
        let link = |index, name: &str, removed| Event::Link {
            index,
            name: Some(name.into()),
            removed,
        };
        assert_eq!(
            link(7, "wg0", true).concerns(&managed).as_deref(),
            Some("link wg0 removed")
        );
        // A re-created wg0 has a new index, but the name is the config's.
        assert!(link(9, "wg0", false).concerns(&managed).is_some());
        assert!(link(3, "eth0", false).concerns(&managed).is_none());
        assert!(
            Event::Address {
                index: 7,
                removed: true
            }
            .concerns(&managed)
            .is_some()
        );
        assert!(
            Event::Address {
                index: 3,
                removed: true
            }
            .concerns(&managed)
            .is_none()
        );
        let route = |oif, protocol| Event::Route {
            oif,
            protocol,
            removed: true,
        };
        assert!(route(Some(3), 87).concerns(&managed).is_some());
        assert!(route(Some(7), 4).concerns(&managed).is_some());
        assert!(route(Some(3), 4).concerns(&managed).is_none());
        let xfrm = Event::Xfrm { what: "sa removed" };
        assert!(xfrm.concerns(&managed).is_none());
        assert!(
            xfrm.concerns(&Managed {
                static_ipsec: true,
                ..managed
            })
            .is_some()
        );
    }
}
