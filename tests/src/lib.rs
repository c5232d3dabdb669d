//! Test bed for vpn-ctl's privileged tests and its demo: uniquely named network namespaces
//! and veth links that are deleted on drop (also when a test panics), code run inside a
//! namespace, and VPN-shaped UDP payloads.
//!
//! It deliberately does not depend on `vpn-ctl`, so `xtask` can use it before the eBPF
//! toolchain is installed.

pub mod kernel;
#[cfg(feature = "fuzz")]
pub mod mutate;
pub mod payload;

use std::{
    fs::File,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call: `{prefix}{pid}x{n}`, at most 15 bytes (the
/// kernel's interface-name limit) for prefixes of up to 4 bytes.
pub fn unique_name(prefix: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{}x{n}", std::process::id() % 1_000_000);
    assert!(name.len() <= 15, "name {name} too long for an interface");
    name
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `ip ARGS...`, which must succeed.
pub fn ip(args: &[&str]) -> Output {
    run(Command::new("ip").args(args))
}

/// A network namespace (`ip netns add NAME`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a fresh namespace with a unique name and its loopback up.
    #[expect(
        clippy::new_without_default,
        reason = "creates a kernel object; a Default doing that would surprise"
    )]
    pub fn new() -> Netns {
        let ns = Netns {
            name: unique_name("vpt"),
        };
        ip(&["netns", "add", &ns.name]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Like [`Netns::new`], with a name that says what the namespace is for:
    /// `{label}-{pid}x{n}` (unique too), e.g. `vpn-demo-router-4242x3`.
    pub fn labelled(label: &str) -> Netns {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let ns = Netns {
            name: format!("{label}-{}x{n}", std::process::id()),
        };
        ip(&["netns", "add", &ns.name]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// A command to run inside the namespace (`ip netns exec NAME PROGRAM`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `f` on a thread that has entered the namespace. Sockets created in `f` belong to
    /// the namespace and may be returned and used from any thread.
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: setns on a valid namespace fd affects only this thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
                f()
            })
            .join()
            .expect("thread in the namespace panicked")
        })
    }

    /// Binds a UDP socket in the namespace.
    pub fn udp_socket(&self, addr: SocketAddr) -> UdpSocket {
        self.enter(|| UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}")))
    }

    /// Whether an XDP program is attached to `dev` (`ip link show` prints `prog/xdp`).
    pub fn has_xdp(&self, dev: &str) -> bool {
        let out = self.ip(&["-d", "link", "show", "dev", dev]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.contains("prog/xdp") || text.contains("xdpgeneric") || text.contains(" xdp ")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace also deletes the links inside it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Two namespaces joined by a veth pair with IPv4 and IPv6 addresses, both ends up:
/// `a` (the internet side, 10.x.y.1 / fd00:x:y::1) and `b` (the router's WAN, .2 / ::2).
#[derive(Debug)]
pub struct VethPair {
    pub a: Netns,
    pub b: Netns,
    pub a_dev: String,
    pub b_dev: String,
    pub a_addr: Ipv4Addr,
    pub b_addr: Ipv4Addr,
    pub a_addr6: Ipv6Addr,
    pub b_addr6: Ipv6Addr,
}

impl VethPair {
    #[expect(
        clippy::new_without_default,
        reason = "creates kernel objects; a Default doing that would surprise"
    )]
    pub fn new() -> VethPair {
        let a = Netns::new();
        let b = Netns::new();
        let a_dev = unique_name("vpa");
        let b_dev = unique_name("vpb");
        // Create the pair inside `a` directly, so nothing is ever left in the root namespace.
        a.ip(&[
            "link",
            "add",
            &a_dev,
            "type",
            "veth",
            "peer",
            "name",
            &b_dev,
            "netns",
            b.name(),
        ]);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let (hi, lo) = ((std::process::id() % 250) as u8, (n % 250) as u8);
        let a_addr = Ipv4Addr::new(10, hi, lo, 1);
        let b_addr = Ipv4Addr::new(10, hi, lo, 2);
        let a_addr6 = format!("fd00:{hi}:{lo}::1").parse().unwrap();
        let b_addr6 = format!("fd00:{hi}:{lo}::2").parse().unwrap();
        a.ip(&["addr", "add", &format!("{a_addr}/24"), "dev", &a_dev]);
        b.ip(&["addr", "add", &format!("{b_addr}/24"), "dev", &b_dev]);
        a.ip(&[
            "addr",
            "add",
            &format!("{a_addr6}/64"),
            "dev",
            &a_dev,
            "nodad",
        ]);
        b.ip(&[
            "addr",
            "add",
            &format!("{b_addr6}/64"),
            "dev",
            &b_dev,
            "nodad",
        ]);
        a.ip(&["link", "set", &a_dev, "up"]);
        b.ip(&["link", "set", &b_dev, "up"]);
        VethPair {
            a,
            b,
            a_dev,
            b_dev,
            a_addr,
            b_addr,
            a_addr6,
            b_addr6,
        }
    }
}

/// A LAN namespace behind `router`: a veth pair, the router's end `lan0` with `PREFIX.1/24`,
/// the LAN host's end `eth0` with `PREFIX.10/24` and its default route via the router, which
/// forwards (`net.ipv4.ip_forward=1`). `prefix` is the first three octets, e.g. "192.168.1".
pub fn lan_behind(router: &Netns, prefix: &str) -> Netns {
    let lan = Netns::new();
    router.ip(&[
        "link",
        "add",
        "lan0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        lan.name(),
    ]);
    router.ip(&["addr", "add", &format!("{prefix}.1/24"), "dev", "lan0"]);
    router.ip(&["link", "set", "lan0", "up"]);
    lan.ip(&["addr", "add", &format!("{prefix}.10/24"), "dev", "eth0"]);
    lan.ip(&["link", "set", "eth0", "up"]);
    lan.ip(&["route", "add", "default", "via", &format!("{prefix}.1")]);
    run(router
        .command("sysctl")
        .args(["-qw", "net.ipv4.ip_forward=1"]));
    lan
}

/// Sends each payload as one datagram from namespace `from` to `to`.
pub fn send_udp(from: &Netns, to: SocketAddr, payloads: &[Vec<u8>]) {
    let any = if to.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    send_udp_from(from, SocketAddr::new(any, 0), to, payloads);
}

/// Sends each payload as one datagram from `source` (an address of namespace `from`) to `to`.
pub fn send_udp_from(from: &Netns, source: SocketAddr, to: SocketAddr, payloads: &[Vec<u8>]) {
    let socket = from.udp_socket(source);
    for p in payloads {
        socket
            .send_to(p, to)
            .unwrap_or_else(|e| panic!("send to {to}: {e}"));
    }
}

/// Receives datagrams until none arrives for `quiet`; returns them in order.
pub fn receive_all(socket: &UdpSocket, quiet: Duration) -> Vec<Vec<u8>> {
    socket.set_read_timeout(Some(quiet)).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        got.push(buf[..n].to_vec());
    }
    got
}
