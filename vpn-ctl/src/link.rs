//! Network interfaces, as vpn-ctl needs to see them, over rtnetlink.

use anyhow::Context as _;
use futures::TryStreamExt as _;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, LinkXdp, XdpAttached};
use rtnetlink::Handle;
use serde::Serialize;

/// `XDP_FLAGS_SKB_MODE`, `XDP_FLAGS_DRV_MODE`, `XDP_FLAGS_HW_MODE` (linux/if_link.h).
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_FLAGS_HW_MODE: u32 = 1 << 3;

/// An interface and the state vpn-ctl cares about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub index: u32,
    pub name: String,
    /// Administratively up (`ip link set IFACE up`).
    pub up: bool,
    /// The link has a carrier (`LOWER_UP`).
    pub lower_up: bool,
    /// An XDP program attached to it, by anyone.
    pub xdp: Option<XdpAttachment>,
}

/// An XDP program attached to an interface (`ip link show` prints `prog/xdp id N`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct XdpAttachment {
    pub program_id: u32,
    /// `native`, `generic`, `offload` or `multiple`.
    pub mode: &'static str,
}

impl XdpAttachment {
    /// The program's name as the kernel knows it (`bpftool prog show id N`), if it can be read.
    pub fn program_name(&self) -> Option<String> {
        aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.id() == self.program_id)
            .and_then(|p| p.name_as_str().map(str::to_owned))
    }

    fn flags(&self) -> u32 {
        match self.mode {
            "native" => XDP_FLAGS_DRV_MODE,
            "generic" => XDP_FLAGS_SKB_MODE,
            "offload" => XDP_FLAGS_HW_MODE,
            _ => 0,
        }
    }
}

/// An rtnetlink connection in the calling thread's network namespace.
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens the connection; its I/O task runs on the current tokio runtime.
    pub fn connect() -> anyhow::Result<Self> {
        let (connection, handle, _) =
            rtnetlink::new_connection().context("opening a route netlink socket failed")?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// Looks an interface up by name (`ip -d link show dev NAME`); `None` if there is none.
    pub async fn interface(&self, name: &str) -> anyhow::Result<Option<Interface>> {
        let mut links = self.handle.link().get().match_name(name).execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Some(interface_from(msg))),
            Ok(None) => Ok(None),
            Err(rtnetlink::Error::NetlinkError(e))
                if e.code.map(|c| -c.get()) == Some(libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(e).with_context(|| format!("reading interface {name} over netlink")),
        }
    }

    /// Detaches whatever XDP program is attached in `attachment`'s mode
    /// (`ip link set dev IFACE xdp off`). Fails with EBUSY when a BPF link owned by another
    /// process holds the program.
    pub async fn detach_xdp(&self, iface: &Interface) -> anyhow::Result<()> {
        let Some(attachment) = &iface.xdp else {
            return Ok(());
        };
        let mut msg = LinkMessage::default();
        msg.header.index = iface.index;
        msg.attributes.push(LinkAttribute::Xdp(vec![
            LinkXdp::Fd(-1),
            LinkXdp::Flags(attachment.flags()),
        ]));
        self.handle.link().set(msg).execute().await.with_context(|| {
            format!(
                "detaching XDP program {} from {} failed; if another process holds it through a \
                 BPF link, stop that process",
                attachment.program_id, iface.name
            )
        })
    }
}

fn interface_from(msg: LinkMessage) -> Interface {
    let mut iface = Interface {
        index: msg.header.index,
        name: String::new(),
        up: msg.header.flags.contains(LinkFlags::Up),
        lower_up: msg.header.flags.contains(LinkFlags::LowerUp),
        xdp: None,
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => iface.name = name,
            LinkAttribute::Xdp(xdp) => iface.xdp = xdp_attachment(&xdp),
            _ => {}
        }
    }
    iface
}

fn xdp_attachment(attrs: &[LinkXdp]) -> Option<XdpAttachment> {
    let mode = attrs.iter().find_map(|a| match a {
        LinkXdp::Attached(XdpAttached::Driver) => Some("native"),
        LinkXdp::Attached(XdpAttached::SocketBuffer) => Some("generic"),
        LinkXdp::Attached(XdpAttached::Hardware) => Some("offload"),
        LinkXdp::Attached(XdpAttached::Multiple) => Some("multiple"),
        _ => None,
    })?;
    let program_id = attrs
        .iter()
        .find_map(|a| match a {
            LinkXdp::ProgId(id) => Some(*id),
            _ => None,
        })
        .unwrap_or(0);
    Some(XdpAttachment { program_id, mode })
}
