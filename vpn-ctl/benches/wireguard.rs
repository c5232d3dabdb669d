//! `vpn-ctl up` at scale against kernel WireGuard, next to `wg setconf` of the same peers in
//! the same run (TOOLCHAIN.md §5). Needs the WireGuard module: `cargo xtask bench` runs it in
//! the QEMU guest. Figures under emulation: compare them only with each other.
//!
//! Targets (issue 4): cold `up` no slower than `wg setconf`; a no-op `up` at most a tenth of
//! cold; a one-peer change independent of the peer count.

use std::{
    fmt::Write as _,
    fs,
    time::{Duration, Instant},
};

use vpn_ctl::{config, wireguard};
use vpn_ctl_tests::{Netns, kernel::Feature, run};

#[path = "../tests/common/many_peers.rs"]
mod many_peers;

use many_peers::ManyPeers;

fn main() {
    if !Feature::WireGuard.available() {
        eprintln!(
            "skipped: this kernel lacks WireGuard; `cargo xtask bench` runs this in the guest"
        );
        return;
    }
    println!("vpn-ctl up against kernel WireGuard ({}):", kernel());
    for peers in [1_000, 10_000] {
        bench(peers);
    }
}

fn kernel() -> String {
    String::from_utf8(run(std::process::Command::new("uname").arg("-r")).stdout)
        .unwrap()
        .trim()
        .to_string()
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn bench(count: usize) {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let many = ManyPeers::new(dir.path(), count);
    let (private, peers, config_path) = (&many.private, &many.peers, &many.config);

    let load = Instant::now();
    let cfg = config::load(config_path).unwrap();
    let load = load.elapsed();

    // `wg setconf` of the same device and peers, on a second link.
    let mut wg_conf = format!(
        "[Interface]\nPrivateKey = {}\nListenPort = 51821\n",
        private.expose_base64()
    );
    for (key, ip) in peers {
        let _ = write!(wg_conf, "\n[Peer]\nPublicKey = {key}\nAllowedIPs = {ip}\n");
    }
    let wg_file = dir.path().join("wgs.conf");
    fs::write(&wg_file, wg_conf).unwrap();
    ns.ip(&["link", "add", "wgs", "type", "wireguard"]);
    let setconf = Instant::now();
    run(ns.command("wg").args(["setconf", "wgs"]).arg(&wg_file));
    let setconf = setconf.elapsed();
    let syncconf = Instant::now();
    run(ns.command("wg").args(["syncconf", "wgs"]).arg(&wg_file));
    let syncconf = syncconf.elapsed();

    let (cold, noop, change, down) = ns.enter(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let timed = |cfg: &config::Config| {
            let t = Instant::now();
            let report = rt
                .block_on(wireguard::up(cfg, wireguard::BackendChoice::Kernel))
                .unwrap();
            (t.elapsed(), report.changes.len())
        };
        let (cold, _) = timed(&cfg);
        let (noop, n) = timed(&cfg);
        assert_eq!(n, 0, "a second up changed something");
        many.write(Some(25));
        let changed = config::load(config_path).unwrap();
        let (change, n) = timed(&changed);
        assert_eq!(n, 1, "a one-peer change made {n} changes");
        let t = Instant::now();
        rt.block_on(wireguard::down(&changed)).unwrap();
        (cold, noop, change, t.elapsed())
    });
    // Deleting a link that still has its peers costs ~16 ms per peer in the kernel: shown at
    // 1,000 peers only (it would be minutes at 10,000).
    let wg_del = (count <= 1_000).then(|| {
        let t = Instant::now();
        ns.ip(&["link", "del", "wgs"]);
        t.elapsed()
    });

    println!("{count} peers:");
    println!("  config load + validate    {}", secs(load));
    println!("  wg setconf (cold)         {}", secs(setconf));
    println!(
        "  vpn-ctl up (cold)         {}  ({:.2}x wg setconf)",
        secs(cold),
        cold.as_secs_f64() / setconf.as_secs_f64()
    );
    println!("  wg syncconf (no change)   {}", secs(syncconf));
    println!(
        "  vpn-ctl up (no change)    {}  ({:.3} of cold)",
        secs(noop),
        noop.as_secs_f64() / cold.as_secs_f64()
    );
    println!("  vpn-ctl up (one peer)     {}", secs(change));
    println!(
        "  vpn-ctl down              {}  (peers removed first)",
        secs(down)
    );
    if let Some(d) = wg_del {
        println!("  ip link del (with peers)  {}", secs(d));
    }
}
