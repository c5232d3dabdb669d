//! Network interfaces, as vpn-ctl needs to see them, over rtnetlink.

use anyhow::Context as _;
use futures::TryStreamExt as _;
use netlink_packet_route::link::{
    InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, LinkXdp, XdpAttached,
};
use rtnetlink::{Handle, LinkUnspec, LinkWireguard};
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
    /// The link type (`wireguard`, `veth`, ...; `ip -d link` prints it), if it has one.
    pub kind: Option<String>,
    /// The interface's alias (`ip link set IFACE alias TEXT`); vpn-ctl marks its links with
    /// [`MANAGED_ALIAS`].
    pub alias: Option<String>,
    pub mtu: Option<u32>,
}

/// The alias vpn-ctl gives the links it creates, so that it only ever changes or deletes
/// those (a link of the same name made by wg-quick or by hand is left alone).
pub const MANAGED_ALIAS: &str = "managed by vpn-ctl";

impl Interface {
    /// Whether vpn-ctl created this link.
    pub fn is_managed(&self) -> bool {
        self.alias.as_deref() == Some(MANAGED_ALIAS)
    }
}

/// Linux's `IFNAMSIZ` less the terminating NUL: the longest interface name, in bytes.
pub const NAME_MAX: usize = 15;

/// What an interface name may be, for help texts.
pub const NAME_RULES: &str = "1 to 15 bytes, not `.` or `..`, not starting with '-', without \
                              '/', ':', whitespace or control characters";

/// Why `name` cannot name a network interface, as the end of a sentence about it
/// ("interface name {problem}"); `None` when it can. Every interface name vpn-ctl takes (the
/// config's, `import`'s, the userspace device's) goes through this one check.
///
/// The rules are iproute2's `check_ifname` and the kernel's `dev_valid_name`: 1 to
/// [`NAME_MAX`] bytes, not `.` or `..`, no `/`, `:` or whitespace. vpn-ctl adds two: no
/// leading `-`, since the name is an argument of `vpn-ctl userspace-device NAME` and would
/// read as an option there, and no control characters (a NUL would end the C string; the
/// others garble logs). The name also names files (`NAME.key`, the UAPI socket `NAME.sock`):
/// these rules keep it a plain file name.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".to_string());
    }
    if name.len() > NAME_MAX {
        return Some(format!(
            "{name:?} is {} bytes long; Linux allows at most {NAME_MAX}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Some(format!("{name:?} is not allowed"));
    }
    if name.starts_with('-') {
        return Some(format!("{name:?} starts with '-'"));
    }
    // C's isspace(), as iproute2 uses it, and the control characters.
    name.chars()
        .find(|c| matches!(c, '/' | ':' | ' ') || c.is_control())
        .map(|c| format!("{name:?} contains {c:?}"))
}

/// [`name_problem`] as an error, for names from the command line or another program.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    match name_problem(name) {
        None => Ok(()),
        Some(problem) => anyhow::bail!("interface name {problem}: use {NAME_RULES}"),
    }
}

/// Whether an interface called `name` exists in the calling thread's network namespace (`ip
/// link show NAME` succeeds): one `if_nametoindex(3)`, no netlink connection.
pub fn exists(name: &str) -> bool {
    let Ok(name) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: a NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
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

    /// The underlying rtnetlink handle, for the address and route operations.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Creates a WireGuard link marked as vpn-ctl's
    /// (`ip link add NAME type wireguard && ip link set NAME alias "managed by vpn-ctl"`; the
    /// kernel ignores an alias in the creating message).
    pub async fn create_wireguard(&self, name: &str) -> anyhow::Result<Interface> {
        let msg = LinkWireguard::new(name).build();
        self.handle.link().add(msg).execute().await.map_err(|e| {
            let hint = if errno(&e) == Some(libc::EOPNOTSUPP) {
                "this kernel has no WireGuard module (try `modprobe wireguard`, or \
                 `--backend userspace`)"
            } else {
                "check the name (at most 15 characters) and that you are root"
            };
            anyhow::Error::new(e).context(format!("creating WireGuard link {name} failed: {hint}"))
        })?;
        let link = self
            .interface(name)
            .await?
            .with_context(|| format!("link {name} vanished right after it was created"))?;
        if let Err(e) = self.mark_managed(&link).await {
            let _ = self.delete(&link).await;
            return Err(e);
        }
        Ok(Interface {
            alias: Some(MANAGED_ALIAS.to_string()),
            ..link
        })
    }

    /// Marks an existing link as vpn-ctl's (`ip link set NAME alias "managed by vpn-ctl"`);
    /// used for the TUN link of the userspace backend.
    pub async fn mark_managed(&self, iface: &Interface) -> anyhow::Result<()> {
        let msg = LinkUnspec::new_with_index(iface.index)
            .alias(MANAGED_ALIAS)
            .build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .with_context(|| format!("setting the alias of {} failed", iface.name))
    }

    /// `ip link set NAME mtu MTU`.
    pub async fn set_mtu(&self, iface: &Interface, mtu: u32) -> anyhow::Result<()> {
        let msg = LinkUnspec::new_with_index(iface.index).mtu(mtu).build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .with_context(|| format!("setting the MTU of {} to {mtu} failed", iface.name))
    }

    /// `ip link set NAME up`.
    pub async fn set_up(&self, iface: &Interface) -> anyhow::Result<()> {
        let msg = LinkUnspec::new_with_index(iface.index).up().build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .with_context(|| format!("setting {} up failed", iface.name))
    }

    /// `ip link del NAME`.
    pub async fn delete(&self, iface: &Interface) -> anyhow::Result<()> {
        match self.handle.link().del(iface.index).execute().await {
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
            r => r.with_context(|| format!("deleting link {} failed", iface.name)),
        }
    }

    /// Every interface in the namespace (`ip -d link show`).
    pub async fn interfaces(&self) -> anyhow::Result<Vec<Interface>> {
        let mut links = self.handle.link().get().execute();
        let mut found = Vec::new();
        while let Some(msg) = links
            .try_next()
            .await
            .context("listing interfaces over netlink")?
        {
            found.push(interface_from(msg));
        }
        Ok(found)
    }

    /// Looks an interface up by name (`ip -d link show dev NAME`); `None` if there is none.
    pub async fn interface(&self, name: &str) -> anyhow::Result<Option<Interface>> {
        let mut links = self.handle.link().get().match_name(name).execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Some(interface_from(msg))),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
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

/// The kernel's errno in a netlink error answer, if that is what `e` is.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

fn interface_from(msg: LinkMessage) -> Interface {
    let mut iface = Interface {
        index: msg.header.index,
        name: String::new(),
        up: msg.header.flags.contains(LinkFlags::Up),
        lower_up: msg.header.flags.contains(LinkFlags::LowerUp),
        xdp: None,
        kind: None,
        alias: None,
        mtu: None,
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => iface.name = name,
            LinkAttribute::IfAlias(alias) => iface.alias = Some(alias),
            LinkAttribute::Mtu(mtu) => iface.mtu = Some(mtu),
            LinkAttribute::LinkInfo(infos) => {
                iface.kind = infos.iter().find_map(|i| match i {
                    LinkInfo::Kind(InfoKind::Other(k)) => Some(k.clone()),
                    LinkInfo::Kind(k) => Some(k.to_string()),
                    _ => None,
                })
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_exists_and_a_made_up_name_does_not() {
        assert!(exists("lo"));
        assert!(!exists("vpnctl-nonesuch"));
        assert!(!exists("lo\0"));
    }

    #[test]
    fn interface_names_follow_iproute2_and_do_not_start_with_a_dash() {
        for good in [
            "wg0",
            "a",
            "wg-home_1",
            "fifteen_chars_x",
            "...",
            "wg+1=x",
            "wgé",
        ] {
            assert_eq!(name_problem(good), None, "{good:?}");
            check_name(good).unwrap();
        }
        for (bad, problem) in [
            ("", "is empty"),
            (".", r#""." is not allowed"#),
            ("..", r#"".." is not allowed"#),
            ("a/b", r#""a/b" contains '/'"#),
            ("a b", r#""a b" contains ' '"#),
            ("wg:0", r#""wg:0" contains ':'"#),
            ("wg\t0", r#""wg\t0" contains '\t'"#),
            ("wg\0x", r#""wg\0x" contains '\0'"#),
            ("wg\u{1b}0", r#""wg\u{1b}0" contains '\u{1b}'"#),
            ("-h", r#""-h" starts with '-'"#),
            ("--help", r#""--help" starts with '-'"#),
            (
                "sixteen_chars_xx",
                r#""sixteen_chars_xx" is 16 bytes long; Linux allows at most 15"#,
            ),
        ] {
            assert_eq!(name_problem(bad).as_deref(), Some(problem), "{bad:?}");
            assert_eq!(
                check_name(bad).unwrap_err().to_string(),
                format!("interface name {problem}: use {NAME_RULES}")
            );
        }
    }
}
