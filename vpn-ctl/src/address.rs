//! Interface addresses over rtnetlink (`ip addr`).

use anyhow::Context as _;
use futures::TryStreamExt as _;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};

use crate::link::{Interface, Netlink, errno};

impl Netlink {
    /// The addresses on an interface with their prefix length, link-local IPv6 left out
    /// (`ip addr show dev NAME`).
    pub async fn addresses(&self, iface: &Interface) -> anyhow::Result<Vec<IpNet>> {
        Ok(self
            .address_messages(iface)
            .await?
            .iter()
            .filter_map(address_of)
            .filter(|n| !is_link_local(n))
            .collect())
    }

    /// The kernel's address messages of an interface (`ip addr show dev NAME`).
    async fn address_messages(&self, iface: &Interface) -> anyhow::Result<Vec<AddressMessage>> {
        self.handle()
            .address()
            .get()
            .set_link_index_filter(iface.index)
            .execute()
            .try_collect()
            .await
            .with_context(|| format!("reading the addresses of {}", iface.name))
    }

    /// `ip addr add ADDRESS/PREFIX dev NAME` (IPv6 without duplicate address detection, as
    /// a point-to-point tunnel has no one to collide with: `nodad`).
    pub async fn add_address(&self, iface: &Interface, net: IpNet) -> anyhow::Result<()> {
        let mut request = self
            .handle()
            .address()
            .add(iface.index, net.addr(), net.prefix_len());
        if net.addr().is_ipv6() {
            // IFA_F_NODAD
            request.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        match request.execute().await {
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            r => r.with_context(|| format!("adding address {net} to {} failed", iface.name)),
        }
    }

    /// `ip addr del ADDRESS/PREFIX dev NAME`.
    pub async fn delete_address(&self, iface: &Interface, net: IpNet) -> anyhow::Result<()> {
        let mut stream = self
            .handle()
            .address()
            .get()
            .set_link_index_filter(iface.index)
            .execute();
        while let Some(msg) = stream.try_next().await? {
            if address_of(&msg) == Some(net) {
                return self
                    .handle()
                    .address()
                    .del(msg)
                    .execute()
                    .await
                    .with_context(|| format!("removing address {net} from {} failed", iface.name));
            }
        }
        Ok(())
    }
}

fn address_of(msg: &AddressMessage) -> Option<IpNet> {
    // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS otherwise.
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    IpNet::new(local.or(address)?, msg.header.prefix_len).ok()
}

fn is_link_local(net: &IpNet) -> bool {
    match net {
        IpNet::V6(n) => n.addr().segments()[0] & 0xffc0 == 0xfe80,
        IpNet::V4(_) => false,
    }
}
