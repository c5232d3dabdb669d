//! The userspace WireGuard backend on the host kernel (which has no WireGuard module): boringtun
//! devices run by the real `vpn-ctl userspace-device` in namespaces, configured over their UAPI
//! sockets. Needs root.
//!
//! UAPI sockets (`/var/run/wireguard/NAME.sock`) are not per network namespace, so every
//! device gets a unique name.

use std::{
    io::{Read as _, Write as _},
    net::SocketAddr,
    os::unix::net::UnixStream,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use vpn_ctl::{
    key::Secret,
    userspace::{self, SetRequest, get, set, socket_path, start_with, stop},
};
use vpn_ctl_tests::{Netns, VethPair, run, unique_name};

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vpn-ctl"))
}

/// A userspace device started in a namespace, stopped on drop (also when a test panics); its
/// log goes too.
struct Device {
    name: String,
}

impl Device {
    fn start(ns: &Netns) -> Device {
        let name = unique_name("wg");
        start_with(exe(), &name, Some(ns.name()))
            .unwrap_or_else(|e| panic!("start {name} in {}: {e:#}", ns.name()));
        Device { name }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Err(e) = stop(&self.name) {
            eprintln!("stop {}: {e:#}", self.name);
        }
        let _ = std::fs::remove_file(userspace::log_path(&self.name));
    }
}

fn link_exists(ns: &Netns, name: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns.name(), "link", "show", "dev", name])
        .output()
        .expect("run ip")
        .status
        .success()
}

fn set_ok(name: &str, request: &SetRequest) {
    set(name, request.as_uapi()).unwrap_or_else(|e| panic!("set {name}: {e:#}"));
}

#[test]
fn two_userspace_devices_handshake_and_carry_pings() {
    let pair = VethPair::new();
    let a = Device::start(&pair.a);
    let b = Device::start(&pair.b);
    assert!(
        link_exists(&pair.a, &a.name),
        "{} not in {}",
        a.name,
        pair.a.name()
    );
    assert!(
        link_exists(&pair.b, &b.name),
        "{} not in {}",
        b.name,
        pair.b.name()
    );

    let (key_a, key_b) = (Secret::generate_private(), Secret::generate_private());
    let psk = Secret::generate_preshared();
    // `a` knows where `b` is; `b` learns `a`'s endpoint from the handshake.
    set_ok(
        &a.name,
        &SetRequest::new()
            .private_key(&key_a)
            .listen_port(51820)
            .peer(&key_b.public_key(), |p| {
                p.preshared_key(&psk)
                    .endpoint(SocketAddr::new(pair.b_addr.into(), 51821))
                    .allowed_ip("10.200.0.2/32".parse().unwrap())
                    .persistent_keepalive(25)
            }),
    );
    set_ok(
        &b.name,
        &SetRequest::new()
            .private_key(&key_b)
            .listen_port(51821)
            .peer(&key_a.public_key(), |p| {
                p.preshared_key(&psk)
                    .allowed_ip("10.200.0.1/32".parse().unwrap())
            }),
    );
    for (ns, dev, addr) in [
        (&pair.a, &a.name, "10.200.0.1/24"),
        (&pair.b, &b.name, "10.200.0.2/24"),
    ] {
        ns.ip(&["addr", "add", addr, "dev", dev]);
        ns.ip(&["link", "set", dev, "up"]);
    }

    run(pair
        .a
        .command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "3", "10.200.0.2"]));

    let state_a = get(&a.name).unwrap();
    assert!(state_a.has_private_key);
    assert_eq!(state_a.public_key, Some(key_a.public_key()));
    assert_eq!(state_a.listen_port, Some(51820));
    assert_eq!(state_a.peers.len(), 1);
    let peer_b = &state_a.peers[0];
    assert_eq!(peer_b.public_key, key_b.public_key());
    assert!(peer_b.has_preshared_key);
    assert_eq!(
        peer_b.endpoint,
        Some(SocketAddr::new(pair.b_addr.into(), 51821))
    );
    assert_eq!(peer_b.allowed_ips, vec!["10.200.0.2/32".parse().unwrap()]);
    assert_eq!(peer_b.persistent_keepalive, Some(25));
    let age = peer_b.since_last_handshake.expect("a handshake with b");
    // An age, not boringtun's raw value read as a UNIX time (which would be decades).
    assert!(age < Duration::from_secs(30), "handshake {age:?} ago");
    assert!(peer_b.tx_bytes > 0 && peer_b.rx_bytes > 0, "{peer_b:?}");

    let state_b = get(&b.name).unwrap();
    let peer_a = state_b.peer(&key_a.public_key()).expect("peer a on b");
    assert_eq!(
        peer_a.endpoint,
        Some(SocketAddr::new(pair.a_addr.into(), 51820)),
        "b learns a's endpoint from the handshake"
    );
    assert!(peer_a.since_last_handshake.is_some());
    assert!(peer_a.tx_bytes > 0 && peer_a.rx_bytes > 0, "{peer_a:?}");
    assert_eq!(peer_a.persistent_keepalive, None);

    for (ns, dev) in [(&pair.a, &a.name), (&pair.b, &b.name)] {
        stop(dev).unwrap_or_else(|e| panic!("stop {dev}: {e:#}"));
        assert!(!link_exists(ns, dev), "{dev} still exists after stop");
        assert!(!socket_path(dev).exists(), "{dev}'s socket still exists");
    }
}

#[test]
fn start_twice_is_a_no_op_and_another_namespace_is_refused() {
    let ns = Netns::new();
    let dev = Device::start(&ns);
    let key = Secret::generate_private();
    set_ok(&dev.name, &SetRequest::new().private_key(&key));

    start_with(exe(), &dev.name, Some(ns.name())).unwrap();
    // Still the same process: it kept the key.
    assert_eq!(get(&dev.name).unwrap().public_key, Some(key.public_key()));

    let other = Netns::new();
    let err = start_with(exe(), &dev.name, Some(other.name())).unwrap_err();
    assert!(
        format!("{err:#}").contains("another network namespace"),
        "{err:#}"
    );
    assert!(!link_exists(&other, &dev.name));
    assert_eq!(get(&dev.name).unwrap().public_key, Some(key.public_key()));
}

#[test]
fn get_and_set_on_a_missing_device_name_the_socket_path() {
    let name = unique_name("wg");
    let path = socket_path(&name);
    assert_eq!(path, Path::new(&format!("/var/run/wireguard/{name}.sock")));
    let err = format!("{:#}", get(&name).unwrap_err());
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    let err = format!("{:#}", set(&name, "listen_port=1\n").unwrap_err());
    assert!(err.contains(&path.display().to_string()), "{err}");
    // Stopping what does not run does nothing.
    stop(&name).unwrap();
}

#[test]
fn deleting_the_interface_ends_the_device_process() {
    let ns = Netns::new();
    let dev = Device::start(&ns);
    ns.ip(&["link", "del", &dev.name]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while socket_path(&dev.name).exists() || get(&dev.name).is_ok() {
        assert!(
            Instant::now() < deadline,
            "{} still answers 5 s after its link was deleted",
            dev.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn requests_boringtun_mishandles_are_refused_or_split() {
    let ns = Netns::new();
    let dev = Device::start(&ns);
    let peer = Secret::generate_private().public_key();

    // boringtun would panic on a peer before the private key.
    let err = set(&dev.name, SetRequest::new().peer(&peer, |p| p).as_uapi()).unwrap_err();
    assert!(format!("{err:#}").contains("private key"), "{err:#}");

    set_ok(
        &dev.name,
        &SetRequest::new()
            .private_key(&Secret::generate_private())
            .peer(&peer, |p| p.persistent_keepalive(10)),
    );
    let err = set(
        &dev.name,
        SetRequest::new()
            .peer(&peer, |p| p.persistent_keepalive(20))
            .as_uapi(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("remove it first"), "{err:#}");
    assert_eq!(
        get(&dev.name).unwrap().peers[0].persistent_keepalive,
        Some(10)
    );

    // Removing and re-adding it in one request works.
    set_ok(
        &dev.name,
        &SetRequest::new()
            .peer(&peer, |p| p.remove())
            .peer(&peer, |p| p.persistent_keepalive(20)),
    );
    let state = get(&dev.name).unwrap();
    assert_eq!(state.peers.len(), 1);
    assert_eq!(state.peers[0].persistent_keepalive, Some(20));

    // Two new peers in one request: the second does not inherit the first's attributes.
    let (first, second) = (
        Secret::generate_private().public_key(),
        Secret::generate_private().public_key(),
    );
    set_ok(
        &dev.name,
        &SetRequest::new()
            .peer(&first, |p| {
                p.preshared_key(&Secret::generate_preshared())
                    .persistent_keepalive(7)
                    .endpoint("192.0.2.1:51820".parse().unwrap())
            })
            .peer(&second, |p| p),
    );
    let state = get(&dev.name).unwrap();
    let first = state.peer(&first).expect("first peer");
    assert!(first.has_preshared_key);
    assert_eq!(first.persistent_keepalive, Some(7));
    let second = state.peer(&second).expect("second peer");
    assert!(!second.has_preshared_key, "{second:?}");
    assert_eq!(second.persistent_keepalive, None);
    assert_eq!(second.endpoint, None);

    // A request boringtun refuses itself comes back as its errno.
    let err = set(&dev.name, "listen_port=notaport\n").unwrap_err();
    assert!(format!("{err:#}").contains("errno=22"), "{err:#}");
}

#[test]
fn a_boringtun_panic_ends_the_device_instead_of_hanging_it() {
    let ns = Netns::new();
    let dev = Device::start(&ns);
    // A raw request that `set` would refuse: a peer before any private key makes boringtun
    // panic while it holds the device's write lock.
    let peer = Secret::generate_private().public_key();
    let hex: String = peer.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let mut stream = UnixStream::connect(socket_path(&dev.name)).unwrap();
    // What tells a hang from an end: generous, as the panicking device prints a backtrace
    // first, which took over 5 s once in the emulated guest (a debug build symbolising it).
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(format!("set=1\npublic_key={hex}\n\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    // The process ends, which closes the connection without an answer.
    stream
        .read_to_string(&mut answer)
        .expect("the connection closes instead of hanging");
    assert_eq!(answer, "");

    let deadline = Instant::now() + Duration::from_secs(5);
    while link_exists(&ns, &dev.name) || socket_path(&dev.name).exists() {
        assert!(Instant::now() < deadline, "{} outlived its panic", dev.name);
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(userspace::log_path(&dev.name)).unwrap();
    assert!(log.contains("Private key must be set first"), "{log}");
    let err = format!("{:#}", get(&dev.name).unwrap_err());
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn a_device_that_fails_to_start_reports_its_log() {
    let name = unique_name("wg");
    // `sh userspace-device NAME` fails at once, saying why in the log.
    let err = start_with(Path::new("/bin/sh"), &name, None).unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("exited during start-up"), "{err}");
    assert!(
        err.contains(&userspace::log_path(&name).display().to_string()),
        "{err}"
    );
    assert!(err.contains(userspace::DEVICE_SUBCOMMAND), "{err}");
    std::fs::remove_file(userspace::log_path(&name)).unwrap();
}
