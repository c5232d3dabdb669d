//! The demo: `vpn-ctl diag` on the WAN port of a router built from network namespaces.
//!
//! An "internet" namespace and a "router" namespace are joined by a veth pair; the router's
//! end is its WAN port. From the internet side a phone (WireGuard), a FRITZ!Box (IKEv1
//! aggressive mode, NAT-T) and a scanner (junk and a handshake flood) send traffic.
//! Act 1: nothing listens on the router yet; diag says the packets arrive but the tunnel is
//! not up. Act 2: listeners stand in for the WireGuard interface and charon (the tunnels
//! themselves come with later work) and diag runs in enforce mode, dropping the junk and the
//! flood. Everything is deleted at the end, also on failure.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use vpn_ctl_tests::{Netns, VethPair, payload, send_udp_from};

/// Addresses added to the internet side: (last octet, role).
const PHONE: u8 = 21;
const FRITZBOX: u8 = 31;
const SCANNER: u8 = 66;

pub fn run(vpn_ctl: &Path) -> anyhow::Result<()> {
    let net = VethPair::new();
    let host = |octet: u8| {
        let [a, b, c, _] = net.a_addr.octets();
        IpAddr::from([a, b, c, octet])
    };
    for octet in [PHONE, FRITZBOX, SCANNER] {
        net.a.ip(&[
            "addr",
            "add",
            &format!("{}/24", host(octet)),
            "dev",
            &net.a_dev,
        ]);
    }
    println!(
        "\n== The network: internet namespace {} (phone {}, FRITZ!Box {}, scanner {})\n\
         ==              router namespace {}, WAN port {} ({})\n",
        net.a.name(),
        host(PHONE),
        host(FRITZBOX),
        host(SCANNER),
        net.b.name(),
        net.b_dev,
        net.b_addr
    );

    println!(
        "== Act 1: the phone tries to connect, but no tunnel is up on the router.\n\
         == $ vpn-ctl diag --wan {} --duration 5\n",
        net.b_dev
    );
    act(&net, vpn_ctl, &["--duration", "5"], |stop| {
        while !stop.load(Ordering::Relaxed) {
            send(&net, host(PHONE), 51820, &[payload::wg(1, 148)]);
            thread::sleep(Duration::from_millis(500));
        }
    })?;

    println!(
        "\n== Act 2: something listens on udp/51820 and udp/500 now (plain sockets stand in for\n\
         == the WireGuard interface and charon). The phone's session runs, the FRITZ!Box starts\n\
         == IKEv1 aggressive mode, a scanner sends junk and floods handshake initiations.\n\
         == Enforce mode drops the junk and the flood before the kernel spends work on them.\n\
         == $ vpn-ctl diag --wan {} --duration 6 --mode enforce --rate-limit 2 --rate-burst 3\n",
        net.b_dev
    );
    let _wireguard = listen(&net.b, 51820);
    let _charon = listen(&net.b, 500);
    act(
        &net,
        vpn_ctl,
        &[
            "--duration",
            "6",
            "--mode",
            "enforce",
            "--rate-limit",
            "2",
            "--rate-burst",
            "3",
        ],
        |stop| {
            send(&net, host(PHONE), 51820, &[payload::wg(1, 148)]);
            let mut tick = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let data: Vec<_> = (0..20).map(|i| payload::wg(4, 32 + 16 * (i % 8))).collect();
                send(&net, host(PHONE), 51820, &data);
                if tick.is_multiple_of(4) {
                    send(&net, host(FRITZBOX), 500, &[payload::ike(1, 4, true, 420)]);
                    send(&net, host(FRITZBOX), 4500, &[payload::natt_keepalive()]);
                }
                let flood: Vec<_> = (0..10).map(|_| payload::wg(1, 148)).collect();
                send(&net, host(SCANNER), 51820, &flood);
                send(
                    &net,
                    host(SCANNER),
                    51820,
                    &[b"GET / HTTP/1.0\r\n\r\n".to_vec()],
                );
                send(
                    &net,
                    host(SCANNER),
                    53,
                    &[b"not VPN: never counted".to_vec()],
                );
                tick += 1;
                thread::sleep(Duration::from_millis(250));
            }
        },
    )?;
    println!("\n== Done: the namespaces and links are deleted.");
    Ok(())
}

/// Runs diag on the router's WAN port while `traffic` runs on another thread.
fn act(
    net: &VethPair,
    vpn_ctl: &Path,
    args: &[&str],
    traffic: impl FnOnce(&AtomicBool) + Send,
) -> anyhow::Result<()> {
    let mut diag = net
        .b
        .command(vpn_ctl)
        .args(["diag", "--wan", &net.b_dev])
        .args(args)
        .spawn()
        .with_context(|| format!("starting {}", vpn_ctl.display()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !net.b.has_xdp(&net.b_dev) {
        if let Some(status) = diag.try_wait()? {
            bail!("vpn-ctl diag ended before attaching ({status})");
        }
        if Instant::now() > deadline {
            let _ = diag.kill();
            bail!("vpn-ctl diag did not attach within 20s");
        }
        thread::sleep(Duration::from_millis(50));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let status = thread::scope(|s| {
        s.spawn(|| traffic(&stop));
        let status = diag.wait();
        stop.store(true, Ordering::Relaxed);
        status
    })?;
    if !status.success() {
        bail!("vpn-ctl diag failed ({status})");
    }
    if net.b.has_xdp(&net.b_dev) {
        bail!("vpn-ctl diag left its program on {}", net.b_dev);
    }
    Ok(())
}

fn send(net: &VethPair, from: IpAddr, port: u16, payloads: &[Vec<u8>]) {
    send_udp_from(
        &net.a,
        SocketAddr::new(from, 0),
        SocketAddr::from((net.b_addr, port)),
        payloads,
    );
}

fn listen(ns: &Netns, port: u16) -> UdpSocket {
    ns.udp_socket(SocketAddr::from(([0, 0, 0, 0], port)))
}
