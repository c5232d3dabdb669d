//! Scrape cost with 10,000 WireGuard peers (issue 6: tens of milliseconds per scrape, no
//! process forked). No root needed: a fake source hands out the snapshot a 10,000-peer
//! router would produce, so this times the exposition and the HTTP path, not the kernel.
//!
//! Prints, per peer count: render alone, collect + render, and a whole `GET /metrics` over
//! loopback through `vpn_ctl::metrics::serve`, in ms per scrape (median of the runs), and the
//! size of the exposition.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use vpn_ctl::metrics::{self, Options, Snapshot, Source, WgInterface, WgPeer};

const RUNS: usize = 30;

struct Fake(Snapshot);

impl Source for Fake {
    fn collect(&self) -> anyhow::Result<Snapshot> {
        Ok(self.0.clone())
    }
}

fn snapshot(peers: usize) -> Snapshot {
    let now = SystemTime::now();
    let mut s = Snapshot::new(now);
    s.wireguard.push(WgInterface {
        name: "wg0".into(),
        up: true,
        peers: (0..peers)
            .map(|i| WgPeer {
                // Unique, key-shaped (44 characters of base64).
                public_key: format!("{i:0>43}="),
                friendly_name: format!("peer-{i}"),
                allowed_ips: vec![
                    format!("10.{}.{}.{}/32", i >> 16 & 0xff, i >> 8 & 0xff, i & 0xff)
                        .parse()
                        .unwrap(),
                ],
                latest_handshake: (i % 3 != 0).then(|| now - Duration::from_secs(i as u64)),
                rx_bytes: i as u64 * 1_234_567,
                tx_bytes: i as u64 * 7_654_321,
            })
            .collect(),
    });
    s
}

fn median(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}

fn time(mut f: impl FnMut()) -> f64 {
    f(); // warm up
    median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

fn main() {
    println!("metrics scrape, median of {RUNS} runs:");
    for peers in [1_000, 10_000] {
        let snap = snapshot(peers);
        let options = Options::default();
        let mut size = 0;
        let render_ms = time(|| size = metrics::render(&snap, &options).len());
        let source = Arc::new(Fake(snap.clone()));
        let collect_ms = time(|| {
            let s = source.collect().unwrap();
            size = metrics::render(&s, &options).len();
        });
        let http_ms = http(source, peers);
        println!(
            "  {peers:>6} peers: render {render_ms:6.2} ms, collect+render {collect_ms:6.2} ms, \
             GET /metrics {http_ms:6.2} ms; exposition {:.1} KiB",
            size as f64 / 1024.0
        );
    }
}

/// A whole scrape over loopback: connect, GET, read the full response.
fn http(source: Arc<Fake>, peers: usize) -> f64 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                metrics::serve(listener, source, Options::default(), async move {
                    let _ = stopped.await;
                })
                .await
            })
    });
    let ms = time(|| {
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        assert!(response.starts_with(b"HTTP/1.1 200"), "{peers} peers");
    });
    let _ = stop.send(());
    server.join().unwrap().unwrap();
    ms
}
