//! `vpn-ctl daemon` with 10,000 peers: how long a `/metrics` scrape takes and how much memory
//! the daemon holds (VmRSS, VmHWM from /proc/PID/status). Figures go to stdout; nothing is
//! asserted. Backend `auto`: the userspace implementation on a host without the WireGuard
//! module (the device is then its own process, not counted in the daemon's memory), kernel
//! WireGuard in the guest (`cargo xtask guest --bench daemon`).
//!
//! `cargo xtask bench` runs it on the host.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use vpn_ctl_tests::Netns;

#[path = "../tests/common/many_peers.rs"]
mod many_peers;

const VPN_CTL: &str = env!("CARGO_BIN_EXE_vpn-ctl");
const PEERS: usize = 10_000;
const SCRAPES: usize = 50;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let many = many_peers::ManyPeers::new(dir.path(), PEERS);
    let port = ns.enter(|| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    });
    // The generator names the interface wg0; the userspace backend's sockets are global, so
    // give this run its own name.
    let iface = vpn_ctl_tests::unique_name("wgb");
    let text = fs::read_to_string(&many.config)
        .unwrap()
        .replace("wireguard.wg0", &format!("wireguard.{iface}"));
    fs::write(
        &many.config,
        format!(
            "[daemon]\nmetrics_listen = \"127.0.0.1:{port}\"\nmetrics_max_peers = {PEERS}\n\
             tick = 3600\n\n{text}"
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let file = fs::File::create(&log).unwrap();
    let started = Instant::now();
    let daemon = Killed(
        ns.command(VPN_CTL)
            .arg("--config")
            .arg(&many.config)
            .args(["daemon", "--backend", "auto"])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start vpn-ctl daemon"),
    );
    let pid = daemon.0.id();
    let deadline = Instant::now() + Duration::from_secs(600);
    while !fs::read_to_string(&log).unwrap().contains("daemon ready") {
        assert!(
            Instant::now() < deadline,
            "the daemon did not get ready:\n{}",
            fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let ready = started.elapsed();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut times = Vec::with_capacity(SCRAPES);
    let mut bytes = 0;
    for _ in 0..SCRAPES {
        let t = Instant::now();
        bytes = scrape(&ns, addr).unwrap_or_else(|e| {
            let log = fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!("scrape failed: {e}\n{}", tail.join("\n"))
        });
        times.push(t.elapsed());
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / SCRAPES as u32;
    let p95 = times[(SCRAPES * 95).div_ceil(100) - 1];
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_string())
            .unwrap_or_default()
    };
    println!("vpn-ctl daemon with {PEERS} peers ({}):", backend(&log));
    println!(
        "  start to ready (first converge):  {:.2} s",
        ready.as_secs_f64()
    );
    println!(
        "  /metrics scrape ({SCRAPES}x, {bytes} bytes):  mean {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        ms(mean),
        ms(p95),
        ms(*times.last().unwrap())
    );
    println!(
        "  daemon memory:  VmRSS {}, VmHWM {}",
        field("VmRSS:"),
        field("VmHWM:")
    );
    drop(daemon);
    let _ = ns
        .command(VPN_CTL)
        .arg("--config")
        .arg(&many.config)
        .arg("down")
        .output();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn backend(log: &std::path::Path) -> &'static str {
    if fs::read_to_string(log)
        .unwrap_or_default()
        .contains("userspace WireGuard")
    {
        "userspace backend"
    } else {
        "kernel WireGuard"
    }
}

/// One `GET /metrics`; the body's size.
fn scrape(ns: &Netns, addr: SocketAddr) -> std::io::Result<usize> {
    let mut stream = ns.enter(|| TcpStream::connect(addr))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let head = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .filter(|_| response.starts_with(b"HTTP/1.1 200"))
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "not a 200 answer: {:?}",
                String::from_utf8_lossy(&response[..response.len().min(200)])
            ))
        })?;
    Ok(response.len() - head - 4)
}
