//! Which UDP sockets listen on the VPN ports: the `netstat -nulp` / `ss -ulpn` of `vpn-ctl diag`.
//!
//! The sockets come from the kernel over netlink `sock_diag` (`NETLINK_SOCK_DIAG`, an
//! `inet_diag` dump for `IPPROTO_UDP`, once for `AF_INET` and once for `AF_INET6`), so sockets
//! that no process owns show up too: kernel WireGuard's UDP socket, a VXLAN or FOU tunnel's
//! socket, the ESP-in-UDP socket of an in-kernel user. The owning process of a socket is found
//! the way `ss -p` and `netstat -p` find it: by scanning the `/proc/<pid>/fd/*` symlinks for
//! `socket:[INODE]` and reading the process name from `/proc/<pid>/comm`. A socket whose inode
//! no process holds is reported as owned by the kernel.
//!
//! "Listening" means what `ss -ul` means for UDP: sockets in the unconnected state (`UNCONN`,
//! the kernel's `TCP_CLOSE`). A UDP socket `connect()`ed to one peer is not a listener and is
//! not reported, even if its local port is one of the ports asked for.
//!
//! Everything is synchronous, and the netlink socket is opened inside each call: netlink sockets
//! belong to the network namespace of the thread that creates them, so a caller that has
//! `setns(CLONE_NEWNET)`ed a thread into another namespace gets that namespace's sockets.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fmt, fs, io,
    net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6},
    path::Path,
};

use anyhow::{Context as _, anyhow, bail};
use netlink_packet_sock_diag::{
    AF_INET, AF_INET6, IPPROTO_UDP, SockDiagMessage,
    inet::{ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags},
};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use serde::Serialize;

/// A UDP socket bound to one of the ports asked for, as `ss -ulpn` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UdpListener {
    /// The bound address and port; `0.0.0.0` / `::` for a wildcard bind. An IPv6 socket bound
    /// to a link-local address carries the interface index of its bind as the scope id.
    pub local: SocketAddr,
    /// The socket's inode number (the `N` of `socket:[N]` in `/proc/<pid>/fd`, `ino:N` in
    /// `ss -e`). Unique while the socket exists; may be reused after it is closed.
    pub inode: u64,
    /// The socket's owner uid (the creator's effective uid; 0 for kernel sockets).
    pub uid: u32,
    /// The process holding the socket, or the kernel when no process holds it.
    pub owner: Owner,
}

/// Who holds a socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Owner {
    /// A process has a file descriptor for the socket. When several processes share it (after a
    /// `fork`, or when a descriptor was passed over a unix socket), this is the one with the
    /// lowest pid.
    Process {
        /// The process id (thread group id).
        pid: u32,
        /// The process name, from `/proc/<pid>/comm` (at most 15 bytes, as the kernel keeps it).
        name: String,
    },
    /// No process has a file descriptor for the socket: it was created inside the kernel (kernel
    /// WireGuard, a VXLAN/FOU/GTP tunnel, ...). A socket that is in flight in an `SCM_RIGHTS`
    /// message, or held only through a BPF map or an io_uring fixed file, also shows up here.
    Kernel,
}

impl fmt::Display for UdpListener {
    /// `udp 0.0.0.0:51820 (kernel socket, no process: kernel WireGuard or another in-kernel user)`
    /// or `udp [::]:500 charon (pid 1234)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.owner {
            Owner::Process { pid, name } => write!(f, "udp {} {name} (pid {pid})", self.local),
            Owner::Kernel => write!(
                f,
                "udp {} (kernel socket, no process: kernel WireGuard or another in-kernel user)",
                self.local
            ),
        }
    }
}

/// All UDP sockets in the current network namespace bound to one of `ports`, sorted by port
/// then address.
///
/// The equivalent of `ss -ulpn 'sport = :51820 or sport = :500 or sport = :4500'` (and of
/// `netstat -nulp | grep -E ':(51820|500|4500) '`), run in the network namespace of the calling
/// thread. Kernel-owned sockets are included with [`Owner::Kernel`].
///
/// Needs root (or `CAP_SYS_PTRACE`/`CAP_DAC_READ_SEARCH`) to see other users' processes: when a
/// socket's inode is not found in any readable `/proc/<pid>/fd` but some processes' descriptor
/// tables could not be read, this fails instead of calling the socket a kernel socket.
pub fn udp_listeners(ports: &[u16]) -> anyhow::Result<Vec<UdpListener>> {
    let ports: BTreeSet<u16> = ports.iter().copied().collect();
    if ports.is_empty() {
        return Ok(Vec::new());
    }

    let diag = SockDiag::open()?;
    let mut found = Vec::new();
    for &port in &ports {
        for family in [AF_INET, AF_INET6] {
            found.extend(
                udp_dump(&diag, family, port)?
                    .into_iter()
                    // The kernel filters on the port too; don't depend on it.
                    .filter(|s| s.socket_id.source_port == port),
            );
        }
    }

    let wanted: HashSet<u64> = found
        .iter()
        .map(|s| u64::from(s.inode))
        .filter(|&i| i != 0)
        .collect();
    let owners = socket_owners(&wanted)?;
    let unowned = found
        .iter()
        .find(|s| !owners.by_inode.contains_key(&u64::from(s.inode)));
    if let (Some(s), Some((pid, err))) = (unowned, owners.unreadable.first()) {
        bail!(
            "UDP socket {} (inode {}, uid {}) is held by no process whose file descriptors are \
             readable, and the descriptors of {} processes could not be read (e.g. \
             /proc/{pid}/fd: {err}), so it cannot be told whether the kernel or one of those \
             processes owns it; run vpn-ctl as root",
            local_addr(s),
            s.inode,
            s.uid,
            owners.unreadable.len(),
        );
    }

    let mut listeners: Vec<UdpListener> = found
        .iter()
        .map(|s| {
            let inode = u64::from(s.inode);
            UdpListener {
                local: local_addr(s),
                inode,
                uid: s.uid,
                owner: owners
                    .by_inode
                    .get(&inode)
                    .cloned()
                    .unwrap_or(Owner::Kernel),
            }
        })
        .collect();
    listeners.sort_by(|a, b| {
        (a.local.port(), a.local.ip(), a.local, a.inode).cmp(&(
            b.local.port(),
            b.local.ip(),
            b.local,
            b.inode,
        ))
    });
    listeners.dedup();
    Ok(listeners)
}

/// Which of `ports` have at least one unconnected UDP socket bound to them, on any address,
/// IPv4 or IPv6, in the calling thread's network namespace: `ss -uln 'sport = :PORT'` printing
/// anything.
///
/// The same `sock_diag` dumps as [`udp_listeners`], without looking for the owning processes
/// (no `/proc` scan), so it is cheap enough for every metrics scrape.
pub fn udp_bound_ports(ports: &[u16]) -> anyhow::Result<BTreeSet<u16>> {
    let ports: BTreeSet<u16> = ports.iter().copied().collect();
    let mut bound = BTreeSet::new();
    if ports.is_empty() {
        return Ok(bound);
    }
    let diag = SockDiag::open()?;
    for &port in &ports {
        for family in [AF_INET, AF_INET6] {
            if udp_dump(&diag, family, port)?
                .iter()
                .any(|s| s.socket_id.source_port == port)
            {
                bound.insert(port);
                break;
            }
        }
    }
    Ok(bound)
}

/// The bound address of a socket from its `inet_diag` socket id.
fn local_addr(s: &InetResponseHeader) -> SocketAddr {
    let port = s.socket_id.source_port;
    match s.socket_id.source_address {
        IpAddr::V4(ip) => SocketAddr::V4(SocketAddrV4::new(ip, port)),
        IpAddr::V6(ip) => {
            // `idiag_if` is the socket's bound device; it is the scope of a link-local bind.
            let scope = if ip.is_unicast_link_local() {
                s.socket_id.interface_id
            } else {
                0
            };
            SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope))
        }
    }
}

/// The sock_diag family (`NETLINK_SOCK_DIAG`, what `ss` opens) on vpn-ctl's one netlink
/// transport.
type SockDiag = crate::netlink::Transport<SockDiagMessage>;

impl crate::netlink::Message for SockDiagMessage {
    const PROTOCOL: isize = NETLINK_SOCK_DIAG;
    const NAME: &'static str = "NETLINK_SOCK_DIAG";
    const NEEDS: &'static str = "CONFIG_INET_DIAG (module inet_diag)";

    fn kind(&self) -> String {
        match self {
            SockDiagMessage::InetRequest(_) => "a sock_diag inet request".to_string(),
            SockDiagMessage::InetResponse(_) => "a sock_diag inet response".to_string(),
            _ => "a sock_diag message".to_string(),
        }
    }
}

/// The unconnected UDP sockets of `family` (`AF_INET` or `AF_INET6`) bound to `port`:
/// `ss -ulpn -4 'sport = :PORT'` or `ss -ulpn -6 'sport = :PORT'`.
///
/// An `inet_diag_req_v2` dump (`SOCK_DIAG_BY_FAMILY`, `NLM_F_REQUEST | NLM_F_DUMP`) for
/// `IPPROTO_UDP` with `idiag_states = 1 << TCP_CLOSE` and `idiag_sport = PORT`, which the
/// kernel's `udp_diag` uses to filter. An `AF_INET6` dump includes dual-stack sockets bound
/// to `::` (they are `AF_INET6` sockets), never `AF_INET` ones, so the two dumps don't
/// overlap.
fn udp_dump(diag: &SockDiag, family: u8, port: u16) -> anyhow::Result<Vec<InetResponseHeader>> {
    let what = format!(
        "the sock_diag dump of {} UDP sockets on port {port} (ss -ulpn {} 'sport = :{port}')",
        if family == AF_INET { "IPv4" } else { "IPv6" },
        if family == AF_INET { "-4" } else { "-6" },
    );
    let mut socket_id = if family == AF_INET {
        SocketId::new_v4()
    } else {
        SocketId::new_v6()
    };
    socket_id.source_port = port;
    let request = SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol: IPPROTO_UDP,
        extensions: ExtensionFlags::empty(),
        states: StateFlags::CLOSE,
        socket_id,
    });
    let messages = diag.dump(request).map_err(|e| {
        let hint = match crate::netlink::errno(&e) {
            Some(libc::ENOENT) => {
                "; the kernel has no sock_diag handler for UDP: build it with \
                 CONFIG_INET_UDP_DIAG or load it with `modprobe udp_diag`"
            }
            Some(libc::EPERM | libc::EACCES) => "; run vpn-ctl as root",
            _ => "",
        };
        e.context(format!("the kernel refused the request{hint}"))
            .context(what.clone())
    })?;
    messages
        .into_iter()
        .map(|m| match m {
            SockDiagMessage::InetResponse(response) => Ok(response.header),
            other => Err(anyhow!(
                "unexpected sock_diag message in the dump: {other:?}"
            ))
            .context(what.clone()),
        })
        .collect()
}

/// What the `/proc` scan found.
struct Owners {
    /// The owning process of each socket inode that some process holds.
    by_inode: HashMap<u64, Owner>,
    /// Processes whose `/proc/<pid>/fd` could not be read for lack of permission.
    unreadable: Vec<(u32, io::Error)>,
}

/// Finds the process holding each of the socket inodes in `wanted`, as `ss -p` does: every
/// `/proc/<pid>/fd/*` is a symlink, `socket:[INODE]` for a socket. Processes are scanned in
/// ascending pid order so that a shared socket is always attributed to the same one.
fn socket_owners(wanted: &HashSet<u64>) -> anyhow::Result<Owners> {
    let mut owners = Owners {
        by_inode: HashMap::new(),
        unreadable: Vec::new(),
    };
    if wanted.is_empty() {
        return Ok(owners);
    }

    let proc = Path::new("/proc");
    let mut pids: Vec<u32> = fs::read_dir(proc)
        .context("cannot list /proc to find socket owners; is procfs mounted on /proc?")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();

    for pid in pids {
        let fd_dir = proc.join(pid.to_string()).join("fd");
        let entries = match fs::read_dir(&fd_dir) {
            Ok(entries) => entries,
            Err(e) => {
                match e.kind() {
                    // Exited since /proc was listed (or a zombie).
                    io::ErrorKind::NotFound => {}
                    io::ErrorKind::PermissionDenied => owners.unreadable.push((pid, e)),
                    _ => {
                        return Err(e).with_context(|| format!("cannot list {}", fd_dir.display()));
                    }
                }
                continue;
            }
        };
        for entry in entries {
            // Errors here mean the process or descriptor went away meanwhile.
            let Ok(entry) = entry else { continue };
            let Ok(target) = fs::read_link(entry.path()) else {
                continue;
            };
            let Some(inode) = socket_inode(target.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            if !wanted.contains(&inode) || owners.by_inode.contains_key(&inode) {
                continue;
            }
            let name = match fs::read_to_string(proc.join(pid.to_string()).join("comm")) {
                Ok(comm) => comm.trim_end_matches('\n').to_owned(),
                Err(_) => "?".to_owned(), // exited between reading its fds and its name
            };
            owners.by_inode.insert(inode, Owner::Process { pid, name });
        }
        if owners.by_inode.len() == wanted.len() {
            break;
        }
    }
    Ok(owners)
}

/// The inode of a `/proc/<pid>/fd/N` symlink target `socket:[INODE]`.
fn socket_inode(target: &[u8]) -> Option<u64> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The pid of the process at the other end of a Unix socket (`SO_PEERCRED`): who answers on
/// a UAPI or VICI socket.
pub fn peer_pid(stream: &std::os::unix::net::UnixStream) -> anyhow::Result<u32> {
    use std::os::fd::AsRawFd as _;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a valid socket fd and a buffer of the size given.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("getsockopt(SO_PEERCRED)");
    }
    u32::try_from(cred.pid).context("SO_PEERCRED gave no pid")
}

#[cfg(test)]
mod tests {
    use std::{
        net::{Ipv4Addr, Ipv6Addr, UdpSocket},
        os::{fd::AsRawFd as _, unix::fs::MetadataExt},
        process::Command,
    };

    use super::*;

    /// The inode of a socket, as `fstat` sees it: the number `/proc/<pid>/fd` and sock_diag show.
    fn inode_of(socket: &UdpSocket) -> u64 {
        fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd()))
            .unwrap()
            .ino()
    }

    /// Binds `addr`, then checks that `udp_listeners` finds exactly that socket, owned by this
    /// process, and that it is gone once the socket is closed.
    fn found_then_gone(addr: SocketAddr) {
        let socket = UdpSocket::bind(addr).unwrap();
        let local = socket.local_addr().unwrap();
        let inode = inode_of(&socket);

        let listeners = udp_listeners(&[local.port()]).unwrap();
        let name = fs::read_to_string("/proc/self/comm").unwrap();
        let expected = UdpListener {
            local,
            inode,
            uid: unsafe { libc::geteuid() },
            owner: Owner::Process {
                pid: std::process::id(),
                name: name.trim_end().to_owned(),
            },
        };
        assert_eq!(listeners, vec![expected.clone()], "bound {local}");
        let shown = expected.to_string();
        assert!(
            shown.starts_with(&format!("udp {local} "))
                && shown.ends_with(&format!("(pid {})", std::process::id())),
            "{shown}"
        );

        drop(socket);
        let listeners = udp_listeners(&[local.port()]).unwrap();
        assert!(
            listeners.iter().all(|l| l.inode != inode),
            "closed socket {local} still listed: {listeners:?}"
        );
    }

    #[test]
    fn ipv4_socket_found_with_its_process_then_gone() {
        found_then_gone((Ipv4Addr::LOCALHOST, 0).into());
    }

    #[test]
    fn ipv6_socket_found_with_its_process_then_gone() {
        found_then_gone((Ipv6Addr::LOCALHOST, 0).into());
    }

    #[test]
    fn only_the_ports_asked_for() {
        let a = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let b = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
        let (port_a, port_b) = (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        );
        assert_ne!(port_a, port_b, "the kernel gave both sockets the same port");
        let (inode_a, inode_b) = (inode_of(&a), inode_of(&b));

        let only_a = udp_listeners(&[port_a]).unwrap();
        assert!(
            only_a.iter().all(|l| l.local.port() == port_a),
            "{only_a:?}"
        );
        assert!(only_a.iter().any(|l| l.inode == inode_a), "{only_a:?}");
        assert!(only_a.iter().all(|l| l.inode != inode_b), "{only_a:?}");

        // Both, each once, sorted by port; duplicate ports asked for change nothing.
        let both = udp_listeners(&[port_b, port_a, port_b]).unwrap();
        let ours: Vec<u64> = both
            .iter()
            .filter(|l| l.inode == inode_a || l.inode == inode_b)
            .map(|l| l.inode)
            .collect();
        let expected = if port_a < port_b {
            vec![inode_a, inode_b]
        } else {
            vec![inode_b, inode_a]
        };
        assert_eq!(ours, expected, "{both:?}");
        assert!(both.is_sorted_by_key(|l| l.local.port()), "{both:?}");

        assert_eq!(udp_listeners(&[]).unwrap(), vec![]);
    }

    /// Runs `f` on a new thread moved into a new, empty network namespace (the namespace goes
    /// away with the thread and the processes it started).
    fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            // SAFETY: unshare(2) of this thread's network namespace only.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                panic!("unshare(CLONE_NEWNET): {}", io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap()
    }

    /// A socket bound in another network namespace is seen from a thread in that namespace and
    /// not from this one: the netlink socket is opened in the caller's namespace.
    #[test]
    fn sees_the_network_namespace_of_the_calling_thread() {
        let (socket, found) = in_new_netns(|| {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            let found = udp_listeners(&[socket.local_addr().unwrap().port()]).unwrap();
            (socket, found)
        });
        let inode = inode_of(&socket);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].inode, inode);
        assert!(matches!(found[0].owner, Owner::Process { pid, .. } if pid == std::process::id()));

        let here = udp_listeners(&[socket.local_addr().unwrap().port()]).unwrap();
        assert!(here.iter().all(|l| l.inode != inode), "{here:?}");
    }

    /// A kernel-owned UDP socket (a VXLAN device's, standing in for kernel WireGuard's) on the
    /// WireGuard port of a private network namespace is reported as owned by the kernel.
    /// Needs `ip` (iproute2) and CONFIG_VXLAN.
    #[test]
    fn kernel_socket_has_no_process() {
        let found = in_new_netns(|| {
            for args in [
                &["link", "set", "lo", "up"][..],
                &[
                    "link", "add", "vxtest", "type", "vxlan", "id", "42", "dstport", "51820",
                    "dev", "lo",
                ],
                &["link", "set", "vxtest", "up"],
            ] {
                let status = Command::new("ip")
                    .args(args)
                    .status()
                    .expect("run ip (iproute2)");
                assert!(status.success(), "ip {args:?}: {status}");
            }
            udp_listeners(&[51820, 500, 4500]).unwrap()
        });
        assert_eq!(found.len(), 1, "{found:?}");
        let l = &found[0];
        assert_eq!(l.local, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 51820)));
        assert_eq!(l.owner, Owner::Kernel);
        assert_eq!(l.uid, 0);
        assert_ne!(l.inode, 0);
        assert_eq!(
            l.to_string(),
            "udp 0.0.0.0:51820 (kernel socket, no process: kernel WireGuard or another in-kernel user)"
        );
        assert_eq!(
            serde_json::to_value(l).unwrap(),
            serde_json::json!({
                "local": "0.0.0.0:51820", "inode": l.inode, "uid": 0, "owner": {"type": "kernel"}
            })
        );
    }

    #[test]
    fn parses_socket_links() {
        assert_eq!(socket_inode(b"socket:[12397]"), Some(12397));
        assert_eq!(socket_inode(b"socket:[]"), None);
        assert_eq!(socket_inode(b"pipe:[12397]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
    }
}
