//! Exposition and HTTP tests over fake sources: no root, no kernel.

use std::{
    collections::BTreeMap,
    io::Write as _,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinSet,
};
use vpn_common::{Action, Counter, Kind, Service};

use super::*;
use crate::ike::renewal::{Renewal, Tally};
use crate::xdp::Counters;

const ANNA: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const STRANGER: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
const LAPTOP: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";
const NOW: u64 = 1_700_000_000;

fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

/// Two interfaces (wg0 with a named peer that handshaked 42 s ago and a peer the config does
/// not have that never did; wg1 down), two IPsec sites (one complete, one missing its
/// outgoing SA), XDP counters, listeners, XFRM counters.
fn snapshot() -> Snapshot {
    Snapshot {
        time: at(NOW),
        wireguard: vec![
            WgInterface {
                name: "wg0".into(),
                up: true,
                peers: vec![
                    WgPeer {
                        public_key: ANNA.into(),
                        friendly_name: "anna-phone".into(),
                        allowed_ips: vec![
                            "10.8.0.2/32".parse().unwrap(),
                            "fd08::2/128".parse().unwrap(),
                        ],
                        latest_handshake: Some(at(NOW - 42)),
                        rx_bytes: 12_345,
                        tx_bytes: 67_890,
                    },
                    WgPeer {
                        public_key: STRANGER.into(),
                        friendly_name: String::new(),
                        allowed_ips: vec!["10.8.0.3/32".parse().unwrap()],
                        latest_handshake: None,
                        rx_bytes: 0,
                        tx_bytes: 0,
                    },
                ],
            },
            WgInterface {
                name: "wg1".into(),
                up: false,
                peers: vec![WgPeer {
                    public_key: LAPTOP.into(),
                    friendly_name: "laptop \"work\"".into(),
                    allowed_ips: vec![],
                    latest_handshake: Some(at(NOW - 3600)),
                    rx_bytes: 1,
                    tx_bytes: 2,
                }],
            },
        ],
        ipsec: vec![
            IpsecSite {
                name: "office".into(),
                sas: vec![
                    IpsecSa {
                        direction: Some(SaDir::Out),
                        spi: 0x1001,
                        installed: true,
                        bytes: 1_000,
                        packets: 10,
                        age: Some(Duration::from_secs(600)),
                    },
                    IpsecSa {
                        direction: Some(SaDir::In),
                        spi: 0x1002,
                        installed: true,
                        bytes: 2_000,
                        packets: 20,
                        age: Some(Duration::from_secs(600)),
                    },
                ],
            },
            IpsecSite {
                name: "branch".into(),
                sas: vec![
                    IpsecSa {
                        direction: Some(SaDir::Out),
                        spi: 0x2001,
                        installed: false,
                        bytes: 0,
                        packets: 0,
                        age: None,
                    },
                    IpsecSa {
                        direction: Some(SaDir::In),
                        spi: 0x2002,
                        installed: true,
                        bytes: 0,
                        packets: 0,
                        age: Some(Duration::from_secs(5)),
                    },
                ],
            },
        ],
        wan: Some(Wan {
            interface: "eth0".into(),
            counters: Counters(BTreeMap::from([
                (
                    (Service::WireGuard, Kind::WgHandshakeInit, Action::Pass),
                    Counter {
                        packets: 3,
                        bytes: 570,
                    },
                ),
                (
                    (Service::WireGuard, Kind::Malformed, Action::DropMalformed),
                    Counter {
                        packets: 1,
                        bytes: 60,
                    },
                ),
                (
                    (Service::Ike, Kind::IkeV1Aggressive, Action::Pass),
                    Counter {
                        packets: 6,
                        bytes: 2_700,
                    },
                ),
            ])),
        }),
        listeners: vec![
            Listener {
                service: "ike",
                port: 500,
                protocol: "udp",
                up: false,
            },
            Listener {
                service: "wireguard",
                port: 51820,
                protocol: "udp",
                up: true,
            },
        ],
        renewals: vec![
            (
                "office".into(),
                Renewal::IkeReauth,
                Tally { done: 3, failed: 1 },
            ),
            (
                "office".into(),
                Renewal::ChildRekey,
                Tally { done: 7, failed: 0 },
            ),
        ],
        xfrm_errors: vec![("XfrmInError".into(), 0), ("XfrmInNoStates".into(), 7)],
        collectors: vec![
            Collector {
                name: "wireguard",
                ok: true,
            },
            Collector {
                name: "xdp",
                ok: false,
            },
        ],
        duration: Some(Duration::from_millis(12)),
    }
}

const EXPECTED: &str = r#"# HELP wireguard_sent_bytes_total Bytes sent to the peer.
# TYPE wireguard_sent_bytes_total counter
wireguard_sent_bytes_total{interface="wg0",public_key="xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",allowed_ips="10.8.0.2/32,fd08::2/128",friendly_name="anna-phone"} 67890
wireguard_sent_bytes_total{interface="wg0",public_key="HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=",allowed_ips="10.8.0.3/32",friendly_name=""} 0
wireguard_sent_bytes_total{interface="wg1",public_key="TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=",allowed_ips="",friendly_name="laptop \"work\""} 2
# HELP wireguard_received_bytes_total Bytes received from the peer.
# TYPE wireguard_received_bytes_total counter
wireguard_received_bytes_total{interface="wg0",public_key="xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",allowed_ips="10.8.0.2/32,fd08::2/128",friendly_name="anna-phone"} 12345
wireguard_received_bytes_total{interface="wg0",public_key="HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=",allowed_ips="10.8.0.3/32",friendly_name=""} 0
wireguard_received_bytes_total{interface="wg1",public_key="TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=",allowed_ips="",friendly_name="laptop \"work\""} 1
# HELP wireguard_latest_handshake_seconds UNIX time of the latest handshake with the peer; 0 if there was none.
# TYPE wireguard_latest_handshake_seconds gauge
wireguard_latest_handshake_seconds{interface="wg0",public_key="xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",allowed_ips="10.8.0.2/32,fd08::2/128",friendly_name="anna-phone"} 1699999958
wireguard_latest_handshake_seconds{interface="wg0",public_key="HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=",allowed_ips="10.8.0.3/32",friendly_name=""} 0
wireguard_latest_handshake_seconds{interface="wg1",public_key="TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=",allowed_ips="",friendly_name="laptop \"work\""} 1699996400
# HELP wireguard_latest_handshake_delay_seconds Seconds since the latest handshake with the peer (only peers that had one).
# TYPE wireguard_latest_handshake_delay_seconds gauge
wireguard_latest_handshake_delay_seconds{interface="wg0",public_key="xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",allowed_ips="10.8.0.2/32,fd08::2/128",friendly_name="anna-phone"} 42
wireguard_latest_handshake_delay_seconds{interface="wg1",public_key="TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=",allowed_ips="",friendly_name="laptop \"work\""} 3600
# HELP vpnctl_wireguard_interface_up 1 if the WireGuard interface exists, is up and could be read; 0 otherwise.
# TYPE vpnctl_wireguard_interface_up gauge
vpnctl_wireguard_interface_up{interface="wg0"} 1
vpnctl_wireguard_interface_up{interface="wg1"} 0
# HELP vpnctl_wireguard_peers Peers on the WireGuard interface, including those without series.
# TYPE vpnctl_wireguard_peers gauge
vpnctl_wireguard_peers{interface="wg0"} 2
vpnctl_wireguard_peers{interface="wg1"} 1
# HELP vpnctl_metrics_peers_omitted WireGuard peers left out of the per-peer series because of the series cap (max_peer_series).
# TYPE vpnctl_metrics_peers_omitted gauge
vpnctl_metrics_peers_omitted 0
# HELP ipsec_site_up 1 if the IPsec site has an installed SA in each direction; 0 otherwise.
# TYPE ipsec_site_up gauge
ipsec_site_up{site="office"} 1
ipsec_site_up{site="branch"} 0
# HELP ipsec_sa_installed 1 if the SA is in the kernel; 0 if the config expects it and it is missing.
# TYPE ipsec_sa_installed gauge
ipsec_sa_installed{site="office",spi="0x00001001",direction="out"} 1
ipsec_sa_installed{site="office",spi="0x00001002",direction="in"} 1
ipsec_sa_installed{site="branch",spi="0x00002001",direction="out"} 0
ipsec_sa_installed{site="branch",spi="0x00002002",direction="in"} 1
# HELP ipsec_sa_bytes_total Bytes carried by the SA (direction in: decrypted, out: encrypted).
# TYPE ipsec_sa_bytes_total counter
ipsec_sa_bytes_total{site="office",spi="0x00001001",direction="out"} 1000
ipsec_sa_bytes_total{site="office",spi="0x00001002",direction="in"} 2000
ipsec_sa_bytes_total{site="branch",spi="0x00002002",direction="in"} 0
# HELP ipsec_sa_packets_total Packets carried by the SA.
# TYPE ipsec_sa_packets_total counter
ipsec_sa_packets_total{site="office",spi="0x00001001",direction="out"} 10
ipsec_sa_packets_total{site="office",spi="0x00001002",direction="in"} 20
ipsec_sa_packets_total{site="branch",spi="0x00002002",direction="in"} 0
# HELP ipsec_sa_established_seconds Seconds since the SA was installed in the kernel.
# TYPE ipsec_sa_established_seconds gauge
ipsec_sa_established_seconds{site="office",spi="0x00001001",direction="out"} 600
ipsec_sa_established_seconds{site="office",spi="0x00001002",direction="in"} 600
ipsec_sa_established_seconds{site="branch",spi="0x00002002",direction="in"} 5
# HELP vpnctl_ipsec_renewals_total Renewals of the IKE site charon completed since the daemon started, by kind (ike_reauth: a new IKE SA replaced the old, by either side; ike_rekey: IKEv2 rekeyed the IKE SA; child_rekey: new ESP keys).
# TYPE vpnctl_ipsec_renewals_total counter
vpnctl_ipsec_renewals_total{site="office",kind="ike_reauth"} 3
vpnctl_ipsec_renewals_total{site="office",kind="child_rekey"} 7
# HELP vpnctl_ipsec_renewal_failures_total Renewals of the IKE site that failed (refused, unanswered, or an SA that expired without a successor); the daemon's log says why.
# TYPE vpnctl_ipsec_renewal_failures_total counter
vpnctl_ipsec_renewal_failures_total{site="office",kind="ike_reauth"} 1
vpnctl_ipsec_renewal_failures_total{site="office",kind="child_rekey"} 0
# HELP vpnctl_wan_packets_total VPN packets the XDP program saw on the WAN port, by service, message kind and what it did with them.
# TYPE vpnctl_wan_packets_total counter
vpnctl_wan_packets_total{interface="eth0",service="wireguard",kind="malformed",action="drop_malformed"} 1
vpnctl_wan_packets_total{interface="eth0",service="wireguard",kind="handshake_initiation",action="pass"} 3
vpnctl_wan_packets_total{interface="eth0",service="ike",kind="ikev1_aggressive_mode",action="pass"} 6
# HELP vpnctl_wan_bytes_total Bytes (whole frames) of the VPN packets the XDP program saw on the WAN port.
# TYPE vpnctl_wan_bytes_total counter
vpnctl_wan_bytes_total{interface="eth0",service="wireguard",kind="malformed",action="drop_malformed"} 60
vpnctl_wan_bytes_total{interface="eth0",service="wireguard",kind="handshake_initiation",action="pass"} 570
vpnctl_wan_bytes_total{interface="eth0",service="ike",kind="ikev1_aggressive_mode",action="pass"} 2700
# HELP vpnctl_listener_up 1 if a socket listens on the VPN port; 0 if packets to it would find nothing.
# TYPE vpnctl_listener_up gauge
vpnctl_listener_up{service="ike",port="500",protocol="udp"} 0
vpnctl_listener_up{service="wireguard",port="51820",protocol="udp"} 1
# HELP vpnctl_xfrm_errors_total The kernel's XFRM (IPsec) error counters from /proc/net/xfrm_stat, since the network namespace was created.
# TYPE vpnctl_xfrm_errors_total counter
vpnctl_xfrm_errors_total{counter="XfrmInError"} 0
vpnctl_xfrm_errors_total{counter="XfrmInNoStates"} 7
# HELP vpnctl_scrape_collector_success 1 if this part of the scrape could be read; 0 if it failed (the daemon's log says why).
# TYPE vpnctl_scrape_collector_success gauge
vpnctl_scrape_collector_success{collector="wireguard"} 1
vpnctl_scrape_collector_success{collector="xdp"} 0
# HELP vpnctl_scrape_duration_seconds How long reading the kernel and the XDP program took for this scrape.
# TYPE vpnctl_scrape_duration_seconds gauge
vpnctl_scrape_duration_seconds 0.012
# HELP vpnctl_build_info Always 1; the version of vpn-ctl serving these metrics.
# TYPE vpnctl_build_info gauge
vpnctl_build_info{version="VERSION"} 1
"#;

#[test]
fn the_exposition_is_exactly_as_documented() {
    let text = render(&snapshot(), &Options::default());
    let expected = EXPECTED.replace("VERSION", env!("CARGO_PKG_VERSION"));
    if text != expected {
        println!("{text}");
    }
    assert_eq!(text, expected);
}

fn lines_of<'a>(text: &'a str, metric: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .collect()
}

#[test]
fn peers_beyond_the_cap_are_omitted_and_counted() {
    let text = render(&snapshot(), &Options { max_peer_series: 2 });
    // The first two peers in device order keep their series; wg1's laptop is left out.
    assert_eq!(lines_of(&text, "wireguard_sent_bytes_total").len(), 2);
    assert!(!text.contains(LAPTOP), "{text}");
    assert!(
        text.contains("\nvpnctl_metrics_peers_omitted 1\n"),
        "{text}"
    );
    // The per-interface peer count still counts every peer.
    assert!(
        text.contains("\nvpnctl_wireguard_peers{interface=\"wg1\"} 1\n"),
        "{text}"
    );

    let text = render(&snapshot(), &Options { max_peer_series: 0 });
    assert!(!text.contains("wireguard_sent_bytes_total"), "{text}");
    assert!(!text.contains("wireguard_latest_handshake"), "{text}");
    assert!(
        text.contains("\nvpnctl_metrics_peers_omitted 3\n"),
        "{text}"
    );
}

#[test]
fn a_peer_that_never_handshaked_shows_0_and_no_delay() {
    let text = render(&snapshot(), &Options::default());
    let stranger = |metric| {
        lines_of(&text, metric)
            .into_iter()
            .filter(|l| l.contains(STRANGER))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        stranger("wireguard_latest_handshake_seconds"),
        [format!(
            "wireguard_latest_handshake_seconds{{interface=\"wg0\",public_key=\"{STRANGER}\",\
             allowed_ips=\"10.8.0.3/32\",friendly_name=\"\"}} 0"
        )]
    );
    assert!(stranger("wireguard_latest_handshake_delay_seconds").is_empty());
}

#[test]
fn a_handshake_after_the_snapshot_time_has_no_negative_delay() {
    let mut snap = snapshot();
    snap.wireguard[0].peers[0].latest_handshake = Some(at(NOW + 5));
    let text = render(&snap, &Options::default());
    let delay = lines_of(&text, "wireguard_latest_handshake_delay_seconds");
    assert!(
        delay[0].contains(ANNA) && delay[0].ends_with(" 0"),
        "{delay:?}"
    );
}

#[test]
fn empty_parts_leave_their_families_out() {
    let text = render(&Snapshot::new(at(NOW)), &Options::default());
    let expected = r#"# HELP vpnctl_metrics_peers_omitted WireGuard peers left out of the per-peer series because of the series cap (max_peer_series).
# TYPE vpnctl_metrics_peers_omitted gauge
vpnctl_metrics_peers_omitted 0
# HELP vpnctl_build_info Always 1; the version of vpn-ctl serving these metrics.
# TYPE vpnctl_build_info gauge
vpnctl_build_info{version="VERSION"} 1
"#
    .replace("VERSION", env!("CARGO_PKG_VERSION"));
    assert_eq!(text, expected);
}

/// `promtool check metrics` (Prometheus' own linter) accepts the exposition. promtool comes
/// with `cargo xtask setup` (Debian's `prometheus` package); a missing one fails the test.
#[test]
fn promtool_accepts_the_exposition() {
    for text in [
        render(&snapshot(), &Options::default()),
        render(&Snapshot::new(at(NOW)), &Options::default()),
    ] {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool not found: run `cargo xtask setup` (Debian package prometheus)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics failed ({}):\n{}{}\non:\n{text}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ------------------------------------------------------------------------------------------
// HTTP
// ------------------------------------------------------------------------------------------

/// A source that takes `delay` per collection, counts them, and fails while `fail` is set.
struct Fake {
    delay: Duration,
    fail: AtomicBool,
    collects: AtomicUsize,
}

impl Source for Fake {
    fn collect(&self) -> anyhow::Result<Snapshot> {
        self.collects.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        if self.fail.load(Ordering::SeqCst) {
            anyhow::bail!("the kernel said no (a test)");
        }
        Ok(snapshot())
    }
}

struct Server {
    address: std::net::SocketAddr,
    fake: Arc<Fake>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(delay: Duration, limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let fake = Arc::new(Fake {
            delay,
            fail: AtomicBool::new(false),
            collects: AtomicUsize::new(0),
        });
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve_with(
            listener,
            fake.clone(),
            Options::default(),
            limits,
            async move {
                let _ = stopped.await;
            },
        ));
        Server {
            address,
            fake,
            stop: Some(stop),
            task,
        }
    }

    /// Stops the server and checks that `serve` returned cleanly.
    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("serve did not return after shutdown")
            .unwrap()
            .unwrap();
    }
}

fn short_limits() -> Limits {
    Limits {
        header_read_timeout: Duration::from_millis(500),
        shutdown_grace: Duration::from_secs(1),
        ..Limits::default()
    }
}

/// A parsed response: status code, lowercased header lines, body.
struct Reply {
    status: u16,
    headers: Vec<String>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}: ");
        self.headers.iter().find_map(|h| h.strip_prefix(&prefix))
    }
}

/// Sends `request` raw and reads the response until the server closes the connection.
async fn exchange(address: std::net::SocketAddr, request: &[u8]) -> Reply {
    try_exchange(address, request, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// [`exchange`], failing instead of panicking, within `within`.
async fn try_exchange(
    address: std::net::SocketAddr,
    request: &[u8],
    within: Duration,
) -> Result<Reply, String> {
    let mut raw = Vec::new();
    tokio::time::timeout(within, async {
        let mut stream = TcpStream::connect(address).await?;
        stream.write_all(request).await?;
        stream.read_to_end(&mut raw).await
    })
    .await
    .map_err(|_| format!("no complete response within {within:?}"))?
    .map_err(|e| format!("the exchange failed: {e}"))?;
    let raw = String::from_utf8(raw).map_err(|e| e.to_string())?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no response head in {raw:?}"))?;
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12]
        .parse()
        .map_err(|_| format!("no status in {head:?}"))?;
    Ok(Reply {
        status,
        headers: lines.map(str::to_ascii_lowercase).collect(),
        body: body.to_string(),
    })
}

async fn get(address: std::net::SocketAddr, path: &str) -> Reply {
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    exchange(address, request.as_bytes()).await
}

#[tokio::test]
async fn metrics_and_healthz_answer_with_their_content() {
    let server = Server::start(Duration::ZERO, short_limits()).await;
    let reply = get(server.address, "/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        reply.body.starts_with("# HELP wireguard_sent_bytes_total "),
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains("\nvpnctl_scrape_duration_seconds "),
        "{}",
        reply.body
    );
    // The duration is measured by serve, not taken from the source.
    assert!(
        !reply
            .body
            .contains("\nvpnctl_scrape_duration_seconds 0.012\n")
    );

    let reply = get(server.address, "/healthz").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"));
    server.stop().await;
}

#[tokio::test]
async fn other_paths_are_404_and_other_methods_405() {
    let server = Server::start(Duration::ZERO, short_limits()).await;
    assert_eq!(get(server.address, "/").await.status, 404);
    assert_eq!(get(server.address, "/metrics/extra").await.status, 404);
    let reply = exchange(
        server.address,
        b"POST /metrics HTTP/1.1\r\nhost: test\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("get, head"));
    assert_eq!(server.fake.collects.load(Ordering::SeqCst), 0);
    server.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_scrapes_all_succeed_and_share_collections() {
    let server = Server::start(Duration::from_millis(300), short_limits()).await;
    // Everything but the measured duration is the full exposition.
    let without_duration = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with("vpnctl_scrape_duration_seconds "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let full = without_duration(&render(&snapshot(), &Options::default()));
    let scrapes: Vec<_> = (0..20)
        .map(|_| tokio::spawn(get(server.address, "/metrics")))
        .collect();
    for scrape in scrapes {
        let reply = scrape.await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(without_duration(&reply.body), full);
    }
    let collects = server.fake.collects.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&collects),
        "20 concurrent scrapes ran {collects} collections"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_client_neither_blocks_scrapes_nor_stays_connected() {
    let server = Server::start(Duration::ZERO, short_limits()).await;
    let mut slow = TcpStream::connect(server.address).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nhost: te")
        .await
        .unwrap();

    // Other scrapes go through meanwhile, well within the header timeout.
    let started = std::time::Instant::now();
    assert_eq!(get(server.address, "/metrics").await.status, 200);
    assert!(started.elapsed() < Duration::from_millis(400));

    // The stalled connection is closed after the header timeout (500 ms here).
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the stalled client is still connected after 5 s"
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.is_empty() || rest.starts_with("HTTP/1.1 408"),
        "{rest}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_header_timeout() {
    let server = Server::start(Duration::ZERO, short_limits()).await;
    let mut idle = TcpStream::connect(server.address).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest))
        .await
        .expect("an idle connection stayed open for 5 s")
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let server = Server::start(Duration::ZERO, short_limits()).await;
    let big = format!(
        "GET /metrics HTTP/1.1\r\nhost: test\r\nx-padding: {}\r\nconnection: close\r\n\r\n",
        "a".repeat(20_000)
    );
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    // The server may close before it has read everything: write errors are fine.
    let _ = stream.write_all(big.as_bytes()).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .expect("no answer to an oversized request");
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 431"), "{raw}");
    assert_eq!(server.fake.collects.load(Ordering::SeqCst), 0);
    // And the server still serves.
    assert_eq!(get(server.address, "/metrics").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_failing_collection_is_a_500_and_the_next_scrape_works() {
    let server = Server::start(Duration::ZERO, short_limits()).await;
    server.fake.fail.store(true, Ordering::SeqCst);
    let reply = get(server.address, "/metrics").await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.body,
        "collecting the metrics failed: the kernel said no (a test)\n"
    );
    server.fake.fail.store(false, Ordering::SeqCst);
    assert_eq!(get(server.address, "/metrics").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_get_a_503_when_all_are_being_answered() {
    let limits = Limits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(5),
        ..short_limits()
    };
    // Collections take a second: both places are busy answering meanwhile.
    let server = Server::start(Duration::from_secs(1), limits).await;
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(get(server.address, "/metrics")))
        .collect();
    // Let the server accept both and start answering before the third arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(server.address, "/metrics").await.status, 503);
    for held in held {
        assert_eq!(held.await.unwrap().status, 200);
    }
    assert_eq!(get(server.address, "/metrics").await.status, 200);
    server.stop().await;
}

/// A client that sends requests and reads none of the answers holds its place only until its
/// responses stop moving for `write_stall_timeout`, not for the connection's whole lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_responses_is_let_go() {
    let limits = Limits {
        max_connections: 1,
        write_stall_timeout: Duration::from_millis(500),
        ..short_limits()
    };
    let server = Server::start(Duration::ZERO, limits).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.address).await.unwrap();
    // Pipelined requests whose answers fill the socket buffers many times over.
    let requests = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(50_000);
    let writer = tokio::spawn(async move {
        let _ = stalled.write_all(requests.as_bytes()).await;
        stalled
    });
    // The only place is taken by a connection being answered: newcomers get a 503 meanwhile...
    tokio::time::sleep(Duration::from_millis(200)).await;
    let first = get(server.address, "/metrics").await.status;
    // ... and a 200 once the stalled response has not moved for 500 ms.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = get(server.address, "/metrics").await.status;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled client still holds the place ({status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(first, 503, "the test did not stall the server's writes");
    writer.abort();
    server.stop().await;
}

/// Reads a keep-alive `/healthz` answer (which ends in `ok`) without waiting for the close.
async fn read_healthz(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while !answer.ends_with(b"\r\n\r\nok\n") {
            assert_ne!(stream.read_buf(&mut answer).await.unwrap(), 0, "closed");
        }
    })
    .await
    .expect("no answer within 5 s");
    String::from_utf8(answer).unwrap()
}

/// Whether the server closed `stream` (within `within`, reading nothing more).
async fn closed(stream: &mut TcpStream, within: Duration) -> bool {
    let mut rest = [0; 64];
    matches!(
        tokio::time::timeout(within, stream.read(&mut rest)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// A connection to `address` from the loopback address `from` (all of 127.0.0.0/8 is local).
async fn connect_from(from: [u8; 4], address: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    socket.connect(address).await.unwrap()
}

#[tokio::test]
async fn a_new_connection_takes_the_place_of_the_one_waiting_longest() {
    let limits = Limits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(5),
        ..short_limits()
    };
    let server = Server::start(Duration::ZERO, limits).await;
    // A keep-alive connection that has had its answer and waits for its next request...
    let mut idle = TcpStream::connect(server.address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    assert!(read_healthz(&mut idle).await.starts_with("HTTP/1.1 200 "));
    // ...and, since later, one that is sending its head slowly.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut slow = TcpStream::connect(server.address).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nhost: te")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Both places are taken, yet a new client gets its answer: the idle connection, waiting
    // longest, made room.
    assert_eq!(get(server.address, "/metrics").await.status, 200);
    assert!(closed(&mut idle, Duration::from_secs(1)).await);
    // The slow client kept its place and gets its answer too.
    slow.write_all(b"st\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer))
        .await
        .expect("no answer within 5 s")
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200 "));
    server.stop().await;
}

#[tokio::test]
async fn the_source_with_the_most_waiting_connections_makes_room() {
    let limits = Limits {
        max_connections: 3,
        header_read_timeout: Duration::from_secs(5),
        ..short_limits()
    };
    let server = Server::start(Duration::ZERO, limits).await;
    // 127.0.0.2's connection has waited longest, but 127.0.0.3 has two waiting.
    let mut lone = connect_from([127, 0, 0, 2], server.address).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut first = connect_from([127, 0, 0, 3], server.address).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = connect_from([127, 0, 0, 3], server.address).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    assert_eq!(get(server.address, "/metrics").await.status, 200);
    // 127.0.0.3's older connection made room; the others are still open.
    assert!(closed(&mut first, Duration::from_secs(1)).await);
    assert!(!closed(&mut lone, Duration::from_millis(200)).await);
    assert!(!closed(&mut second, Duration::from_millis(200)).await);
    server.stop().await;
}

// Slow and hostile clients: whatever they do, a scrape that sends its request at once gets
// its answer within a second.

const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n";

/// Scrapes `/metrics` on a new connection every 200 ms for `duration`; returns how many
/// scrapes there were and what went wrong with those that did not get a 200 within 1 s.
async fn scrapes_meanwhile(
    address: std::net::SocketAddr,
    duration: Duration,
) -> (usize, Vec<String>) {
    let end = Instant::now() + duration;
    let (mut scrapes, mut failures) = (0, Vec::new());
    while Instant::now() < end {
        let started = Instant::now();
        scrapes += 1;
        match try_exchange(address, SCRAPE, Duration::from_secs(1)).await {
            Ok(reply) if reply.status == 200 => {}
            Ok(reply) => failures.push(format!("{} after {:?}", reply.status, started.elapsed())),
            Err(e) => failures.push(e),
        }
        tokio::time::sleep_until((started + Duration::from_millis(200)).into()).await;
    }
    (scrapes, failures)
}

/// A connection to `address` from 127.0.0.2, as an attacker's: the server makes room among
/// waiting connections by source, and the scrapes come from 127.0.0.1 (with both from one
/// address, a scrape whose request head the server had not read yet could be the one to go).
async fn connect_from_elsewhere(address: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind("127.0.0.2:0".parse().unwrap())?;
    socket.connect(address).await
}

/// A slowloris client: sends a request head one byte a second, never finishing it, and
/// reconnects as soon as the server answers or closes the connection (counted in `ended`).
async fn slowloris(address: std::net::SocketAddr, ended: Arc<AtomicUsize>) {
    let head = b"GET /metrics HTTP/1.1\r\nhost: test\r\nx-slow: ";
    loop {
        let Ok(mut stream) = connect_from_elsewhere(address).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let mut answer = [0; 512];
        for byte in head.iter().copied().chain(std::iter::repeat(b'a')) {
            if stream.write_all(&[byte]).await.is_err() {
                break;
            }
            // Anything from the server (a 503, a 408, its closing) ends this connection.
            let read = stream.read(&mut answer);
            if tokio::time::timeout(Duration::from_secs(1), read)
                .await
                .is_ok()
            {
                break;
            }
        }
        ended.fetch_add(1, Ordering::SeqCst);
    }
}

/// Starts `n` slowloris clients and gives them time to take every slot they can.
async fn slowloris_clients(
    address: std::net::SocketAddr,
    n: usize,
) -> (JoinSet<()>, Arc<AtomicUsize>) {
    let ended = Arc::new(AtomicUsize::new(0));
    let mut clients = JoinSet::new();
    for _ in 0..n {
        clients.spawn(slowloris(address, ended.clone()));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    (clients, ended)
}

#[tokio::test]
async fn slowloris_clients_beyond_the_connection_cap_do_not_block_scrapes() {
    let server = Server::start(Duration::ZERO, Limits::default()).await;
    let (mut clients, ended) = slowloris_clients(server.address, 40).await;
    let (scrapes, failures) = scrapes_meanwhile(server.address, Duration::from_secs(5)).await;
    assert!(
        failures.is_empty(),
        "{} of {scrapes} scrapes failed: {failures:?}",
        failures.len()
    );
    // The attack was on: more clients than slots, so some were turned away.
    assert!(ended.load(Ordering::SeqCst) > 0);
    clients.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_scrapes_get_through_slowloris_clients() {
    let server = Server::start(Duration::from_millis(100), Limits::default()).await;
    let (mut clients, _) = slowloris_clients(server.address, 40).await;
    let scrapes: Vec<_> = (0..20)
        .map(|_| {
            let address = server.address;
            tokio::spawn(async move {
                let started = Instant::now();
                let reply = try_exchange(address, SCRAPE, Duration::from_secs(1)).await;
                (reply.map(|r| r.status), started.elapsed())
            })
        })
        .collect();
    let mut failures = Vec::new();
    for scrape in scrapes {
        let (status, took) = scrape.await.unwrap();
        if status != Ok(200) {
            failures.push(format!("{status:?} after {took:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 20 concurrent scrapes failed: {failures:?}",
        failures.len()
    );
    clients.shutdown().await;
    server.stop().await;
}

/// A client that sends a request line and then header lines without end, as fast as the
/// server reads them, and reconnects when the server answers or closes the connection. Counts
/// the connections (`floods`) and the answers that were not a 431 (`other`).
async fn header_flood(
    address: std::net::SocketAddr,
    floods: Arc<AtomicUsize>,
    other: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let lines = b"x-flood: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(16);
    loop {
        let Ok(mut stream) = connect_from_elsewhere(address).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (mut reader, mut writer) = stream.split();
        let flood = async {
            writer
                .write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\n")
                .await?;
            loop {
                writer.write_all(&lines).await?;
            }
            #[allow(unreachable_code)]
            std::io::Result::Ok(())
        };
        let mut answer = Vec::new();
        tokio::select! {
            _ = flood => {}
            _ = reader.read_buf(&mut answer) => {}
        }
        floods.fetch_add(1, Ordering::SeqCst);
        if !answer.is_empty() && !answer.starts_with(b"HTTP/1.1 431 ") {
            let answer = String::from_utf8_lossy(&answer[..answer.len().min(40)]).into_owned();
            other.lock().unwrap().push(answer);
        }
    }
}

#[tokio::test]
async fn header_floods_are_refused_and_do_not_block_scrapes() {
    let server = Server::start(Duration::ZERO, Limits::default()).await;
    let floods = Arc::new(AtomicUsize::new(0));
    let other = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut clients = JoinSet::new();
    for _ in 0..40 {
        clients.spawn(header_flood(server.address, floods.clone(), other.clone()));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (scrapes, failures) = scrapes_meanwhile(server.address, Duration::from_secs(4)).await;
    clients.shutdown().await;
    assert!(
        failures.is_empty(),
        "{} of {scrapes} scrapes failed: {failures:?}",
        failures.len()
    );
    let floods = floods.load(Ordering::SeqCst);
    assert!(floods >= 40, "only {floods} floods ended");
    let other = std::mem::take(&mut *other.lock().unwrap());
    assert!(
        other.is_empty(),
        "answers to floods other than 431: {other:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn half_closed_connections_are_let_go_at_once() {
    let server = Server::start(Duration::ZERO, Limits::default()).await;
    // More connections than slots, each shutting its write side down after nothing, after
    // part of a head, or after a whole request, and never closing.
    let sent: [&[u8]; 3] = [
        b"",
        b"GET /metrics HTTP/1.1\r\nhost: te",
        b"GET /metrics HTTP/1.1\r\nhost: test\r\n\r\n",
    ];
    let mut held = Vec::new();
    for i in 0..48 {
        let mut stream = TcpStream::connect(server.address).await.unwrap();
        stream.write_all(sent[i % 3]).await.unwrap();
        stream.shutdown().await.unwrap();
        held.push(stream);
    }
    // The server closes every one of them well before the 10 s header timeout, answering
    // the whole requests.
    for (i, stream) in held.iter_mut().enumerate() {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer));
        assert!(
            read.await.is_ok(),
            "half-closed connection {i} is still open after 2 s"
        );
        let answer = String::from_utf8_lossy(&answer[..answer.len().min(15)]).into_owned();
        let expected = if i % 3 == 2 { "HTTP/1.1 200 OK" } else { "" };
        assert_eq!(answer, expected, "half-closed connection {i}");
    }
    let (scrapes, failures) = scrapes_meanwhile(server.address, Duration::from_secs(1)).await;
    assert!(
        failures.is_empty(),
        "{} of {scrapes} scrapes failed: {failures:?}",
        failures.len()
    );
    server.stop().await;
}

/// The `prometheus` crate is the reference: the exposition, read back into the crate's
/// metric model and encoded by its `TextEncoder`, comes out byte for byte the same (the
/// renderer writes the format directly only because the crate's model costs ~30x more per
/// scrape; see `render.rs`).
#[test]
fn the_prometheus_crates_encoder_writes_the_same_text() {
    use prometheus::{
        Encoder as _, TextEncoder,
        proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType},
    };
    let ours = render(&snapshot(), &Options::default());
    let mut families: Vec<MetricFamily> = Vec::new();
    for line in ours.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            let mut family = MetricFamily::default();
            family.set_name(name.into());
            family.set_help(help.replace("\\n", "\n").replace("\\\\", "\\"));
            families.push(family);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let kind = match rest.split_once(' ').unwrap().1 {
                "counter" => MetricType::COUNTER,
                "gauge" => MetricType::GAUGE,
                other => panic!("unexpected type {other}"),
            };
            families.last_mut().unwrap().set_field_type(kind);
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap();
            let mut metric = Metric::default();
            if let Some((_, labels)) = series.split_once('{') {
                let labels = labels.strip_suffix('}').unwrap();
                metric.set_label(parse_labels(labels));
            }
            let family = families.last_mut().unwrap();
            if family.get_field_type() == MetricType::COUNTER {
                let mut c = Counter::default();
                c.set_value(value);
                metric.set_counter(c);
            } else {
                let mut g = Gauge::default();
                g.set_value(value);
                metric.set_gauge(g);
            }
            family.mut_metric().push(metric);
        }
    }
    let mut theirs = Vec::new();
    TextEncoder::new().encode(&families, &mut theirs).unwrap();
    assert_eq!(ours, String::from_utf8(theirs).unwrap());

    fn parse_labels(text: &str) -> Vec<LabelPair> {
        let mut out = Vec::new();
        let mut rest = text;
        while let Some((name, after)) = rest.split_once("=\"") {
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().unwrap() {
                    (_, '\\') => match chars.next().unwrap().1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            let mut pair = LabelPair::default();
            pair.set_name(name.trim_start_matches(',').into());
            pair.set_value(value);
            out.push(pair);
            rest = &after[end + 1..];
        }
        out
    }
}
