//! `vpn-ctl daemon` as a process in a router namespace, with a phone (or a remote site) in
//! another, talking WireGuard over a veth pair:
//!
//! ```text
//!  phone / site (net.a) ──veth── router (net.b): vpn-ctl daemon
//! ```
//!
//! The daemon re-creates its link when it is deleted underneath it, applies an edited config
//! on SIGHUP without touching the unchanged peer's session, follows a DNS-named endpoint to
//! its new address, tells systemd (a notify socket the test holds) where it is, stops on
//! SIGTERM with the tunnels left up, and is scraped by a real Prometheus.
//!
//! Backend `auto`: the userspace implementation on a host without the WireGuard module, kernel
//! WireGuard in the guest (`cargo xtask guest --test daemon`). Interface names are unique
//! because the userspace backend's UAPI sockets are not per namespace.

use std::{
    fs,
    net::SocketAddr,
    os::unix::{fs::PermissionsExt as _, net::UnixDatagram},
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

#[path = "common/cli.rs"]
#[allow(dead_code, reason = "shared by the end-to-end tests; each uses some")]
mod cli;

#[path = "common/daemon.rs"]
mod daemon;

use cli::{VPN_CTL, http_get, pubkey, vpn_ctl};
use daemon::{Daemon, wait_for};
use serde_json::Value;
use vpn_ctl_tests::{Netns, VethPair, run, unique_name};

fn write_key(path: &Path, key: &str) {
    fs::write(path, key).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

fn genkey(ns: &Netns) -> String {
    String::from_utf8(run(ns.command(VPN_CTL).arg("genkey")).stdout)
        .unwrap()
        .trim()
        .to_string()
}

/// A notify socket as systemd holds one (`NOTIFY_SOCKET`).
struct Notify {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Notify {
    fn new(dir: &Path) -> Notify {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Notify { socket, path }
    }

    /// Waits for a message with the line `line` (e.g. `READY=1`); the whole message.
    fn expect(&self, line: &str, timeout: Duration) -> String {
        let mut buf = [0u8; 4096];
        wait_for(timeout, &format!("sd_notify {line}"), || {
            let n = self.socket.recv(&mut buf).ok()?;
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            text.lines().any(|l| l == line).then_some(text)
        })
    }
}

/// `status --json`: the peer `name` of interface `iface`.
fn peer_status(ns: &Netns, config: &Path, iface: &str, name: &str) -> Option<Value> {
    let out = ns
        .command(VPN_CTL)
        .arg("--config")
        .arg(config)
        .args(["status", "--json"])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let status: Value = serde_json::from_slice(&out.stdout).ok()?;
    status["wireguard"]
        .as_array()?
        .iter()
        .find(|i| i["name"] == iface)?["peers"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
}

fn link_exists(ns: &Netns, name: &str) -> bool {
    ns.command("ip")
        .args(["link", "show", "dev", name])
        .output()
        .unwrap()
        .status
        .success()
}

fn ping_ok(ns: &Netns, to: &str) -> bool {
    ns.command("ping")
        .args(["-c", "1", "-W", "1", to])
        .output()
        .unwrap()
        .status
        .success()
}

/// The phone brings its side up from the client config `peer add` printed, with vpn-ctl
/// itself on the userspace backend (`import wg-quick`, `up`).
fn phone_up(phone: &Netns, client_config: &str, dir: &Path, iface: &str) -> PathBuf {
    let phone_dir = dir.join("phone");
    fs::create_dir(&phone_dir).unwrap();
    let conf = phone_dir.join(format!("{iface}.conf"));
    fs::write(&conf, client_config).unwrap();
    let config = phone_dir.join("vpn.toml");
    run(phone
        .command(VPN_CTL)
        .arg("--config")
        .arg(&config)
        .args(["import", "wg-quick"])
        .arg(&conf));
    vpn_ctl(phone, &config, &["up", "--backend", "userspace"]);
    config
}

/// A router config for `iface` with the placeholder peer "laptop" (keepalive 30).
fn router_config(dir: &Path, iface: &str, wan: &str, public: &str, extra: &str) -> PathBuf {
    write_key(&dir.join("wg0.key"), &genkey_plain());
    let config = dir.join("vpn.toml");
    fs::write(
        &config,
        format!(
            r#"[router]
wan = "{wan}"

[daemon]
metrics_listen = "off"
tick = 2
xdp = "off"
{extra}
[wireguard.{iface}]
private_key_file = "wg0.key"
listen_port = 51820
addresses = ["10.8.0.1/24"]
public_endpoint = "{public}:51820"

[[wireguard.{iface}.peers]]
name = "laptop"
public_key = "{laptop}"
allowed_ips = ["10.8.0.50/32"]
persistent_keepalive = 30
"#,
            laptop = pubkey(&genkey_plain()),
        ),
    )
    .unwrap();
    config
}

fn genkey_plain() -> String {
    String::from_utf8(run(Command::new(VPN_CTL).arg("genkey")).stdout)
        .unwrap()
        .trim()
        .to_string()
}

fn counters(peer: &Value) -> (u64, u64) {
    (
        peer["rx_bytes"].as_u64().unwrap(),
        peer["tx_bytes"].as_u64().unwrap(),
    )
}

/// Link deleted underneath -> re-created; SIGHUP -> exactly the edit applied, the phone's
/// session untouched; SIGTERM -> exit 0, tunnels left up. sd_notify along the way.
#[test]
fn daemon_heals_a_deleted_link_reloads_as_a_diff_and_stops_cleanly() {
    let (router_if, phone_if) = (unique_name("wgr"), unique_name("wgp"));
    let net = VethPair::new();
    let (phone, router) = (&net.a, &net.b);
    let dir = tempfile::tempdir().unwrap();
    let config = router_config(
        dir.path(),
        &router_if,
        &net.b_dev,
        &net.b_addr.to_string(),
        "",
    );
    // Ticks an hour apart: only the kernel's notification can heal the link in time.
    let hourly = fs::read_to_string(&config)
        .unwrap()
        .replace("tick = 2", "tick = 3600");
    fs::write(&config, hourly).unwrap();
    let client = vpn_ctl(router, &config, &["peer", "add", "phone", "--split-tunnel"]);
    let notify = Notify::new(dir.path());
    let mut daemon = Daemon::start(router, &config, dir.path(), None, Some(&notify.path));
    let ready = notify.expect("READY=1", Duration::from_secs(30));
    assert!(ready.contains("STATUS="), "{ready}");
    assert!(link_exists(router, &router_if), "{}", daemon.log());
    daemon.wait_log(0, "converged reason=start", Duration::from_secs(5));

    let phone_config = phone_up(phone, &client, dir.path(), &phone_if);
    wait_for(Duration::from_secs(20), "the phone's first ping", || {
        ping_ok(phone, "10.8.0.1").then_some(())
    });

    // 1. The link is deleted underneath: the daemon re-creates it, the phone gets through
    //    again (after its next handshake).
    let mark = daemon.log().len();
    router.ip(&["link", "del", &router_if]);
    let line = daemon.wait_log(mark, "converged reason=event", Duration::from_secs(10));
    assert!(line.contains("created the link"), "{line}");
    assert!(link_exists(router, &router_if));
    wait_for(
        Duration::from_secs(60),
        "the phone's ping after the link was re-created",
        || ping_ok(phone, "10.8.0.1").then_some(()),
    );

    // 2. SIGHUP after an edit: laptop's keepalive changes, a tablet is added. The phone's
    //    peer is not touched: its counters go on, its handshake stays.
    let before = peer_status(router, &config, &router_if, "phone").expect("phone in status");
    assert!(!before["latest_handshake_secs"].is_null(), "{before}");
    let text = fs::read_to_string(&config).unwrap();
    let tablet = pubkey(&genkey(router));
    let edited = text.replace("persistent_keepalive = 30", "persistent_keepalive = 25")
        + &format!(
            "\n[[wireguard.{router_if}.peers]]\nname = \"tablet\"\npublic_key = \"{tablet}\"\n\
             allowed_ips = [\"10.8.0.60/32\"]\n"
        );
    fs::write(&config, edited).unwrap();
    let mark = daemon.log().len();
    daemon.signal(libc::SIGHUP);
    notify.expect("RELOADING=1", Duration::from_secs(10));
    notify.expect("READY=1", Duration::from_secs(20));
    let line = daemon.wait_log(mark, "converged reason=sighup", Duration::from_secs(5));
    assert!(line.contains("changes=2"), "{line}");
    assert!(line.contains("update peer laptop: keepalive 25"), "{line}");
    assert!(line.contains("add peer tablet"), "{line}");
    assert!(!line.contains("phone"), "{line}");
    let laptop = peer_status(router, &config, &router_if, "laptop").unwrap();
    assert_eq!(laptop["persistent_keepalive"], 25);
    assert!(peer_status(router, &config, &router_if, "tablet").is_some());
    let after = peer_status(router, &config, &router_if, "phone").unwrap();
    let (rx0, tx0) = counters(&before);
    let (rx1, tx1) = counters(&after);
    assert!(
        rx1 >= rx0 && tx1 >= tx0 && !after["latest_handshake_secs"].is_null(),
        "the phone's session was reset by the reload: before {before}, after {after}"
    );
    assert!(ping_ok(phone, "10.8.0.1"), "the phone lost the tunnel");

    // A broken config on SIGHUP is refused with up's diagnostics; the daemon runs on.
    let good = fs::read_to_string(&config).unwrap();
    fs::write(&config, good.replace("tick = 3600", "tick = 0")).unwrap();
    let mark = daemon.log().len();
    daemon.signal(libc::SIGHUP);
    daemon.wait_log(mark, "reload refused", Duration::from_secs(10));
    assert!(daemon.log()[mark..].contains("tick 0 is out of range"));
    fs::write(&config, good).unwrap();

    // 3. SIGTERM: exit 0 promptly, STOPPING=1, the tunnel stays up.
    daemon.signal(libc::SIGTERM);
    notify.expect("STOPPING=1", Duration::from_secs(5));
    let status = daemon.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status}\n{}", daemon.log());
    assert!(
        link_exists(router, &router_if),
        "SIGTERM took the tunnel down"
    );
    assert!(ping_ok(phone, "10.8.0.1"));

    vpn_ctl(phone, &phone_config, &["down"]);
    vpn_ctl(router, &config, &["down"]);
}

/// A peer's endpoint is a DNS name (here from a hosts file the daemon sees as /etc/hosts).
/// While it points nowhere the handshake never happens, so the daemon looks it up again on
/// every tick; when the name moves to the site's real address, the daemon sets the new
/// endpoint and the handshake follows.
#[test]
fn a_dns_named_endpoint_is_re_resolved_when_its_address_changes() {
    let (router_if, site_if) = (unique_name("wgr"), unique_name("wgs"));
    let net = VethPair::new();
    let (site, router) = (&net.a, &net.b);
    let dir = tempfile::tempdir().unwrap();

    // The site: answers handshakes, never starts one (no endpoint for the router).
    let site_dir = dir.path().join("site");
    fs::create_dir(&site_dir).unwrap();
    let site_private = genkey(site);
    write_key(&site_dir.join("site.key"), &site_private);
    let router_private = genkey(router);
    write_key(&dir.path().join("router.key"), &router_private);
    let site_config = site_dir.join("vpn.toml");
    fs::write(
        &site_config,
        format!(
            "[wireguard.{site_if}]\nprivate_key_file = \"site.key\"\nlisten_port = 51820\n\
             addresses = [\"10.9.0.2/24\"]\n\n[[wireguard.{site_if}.peers]]\nname = \"router\"\n\
             public_key = \"{}\"\nallowed_ips = [\"10.9.0.1/32\"]\n",
            pubkey(&router_private)
        ),
    )
    .unwrap();
    vpn_ctl(site, &site_config, &["up", "--backend", "userspace"]);

    let name = "site.vpn-ctl.test";
    let nowhere = format!("{}.77", {
        let o = net.a_addr.octets();
        format!("{}.{}.{}", o[0], o[1], o[2])
    });
    let hosts = dir.path().join("hosts");
    fs::write(&hosts, format!("127.0.0.1 localhost\n{nowhere} {name}\n")).unwrap();
    let config = dir.path().join("vpn.toml");
    fs::write(
        &config,
        format!(
            "[daemon]\nmetrics_listen = \"off\"\ntick = 1\n\n[wireguard.{router_if}]\n\
             private_key_file = \"router.key\"\nlisten_port = 51820\n\
             addresses = [\"10.9.0.1/24\"]\n\n[[wireguard.{router_if}.peers]]\nname = \"site\"\n\
             public_key = \"{}\"\nallowed_ips = [\"10.9.0.2/32\"]\nendpoint = \"{name}:51820\"\n\
             persistent_keepalive = 1\n",
            pubkey(&site_private)
        ),
    )
    .unwrap();
    let daemon = Daemon::start(router, &config, dir.path(), Some(&hosts), None);
    let endpoint = |want: &str| {
        peer_status(router, &config, &router_if, "site")
            .filter(|p| p["endpoint"] == want)
            .map(|_| ())
    };
    wait_for(
        Duration::from_secs(30),
        "the first endpoint from the hosts file",
        || endpoint(&format!("{nowhere}:51820")),
    );
    let peer = peer_status(router, &config, &router_if, "site").unwrap();
    assert!(peer["latest_handshake_secs"].is_null(), "{peer}");

    // The name moves (written in place: the bind mount keeps the file's inode).
    let mark = daemon.log().len();
    fs::write(
        &hosts,
        format!("127.0.0.1 localhost\n{} {name}\n", net.a_addr),
    )
    .unwrap();
    let moved = format!("{}:51820", net.a_addr);
    wait_for(Duration::from_secs(15), "the re-resolved endpoint", || {
        endpoint(&moved)
    });
    // Said in the log as a converge's change (on a tick, or on a kernel notification's
    // converge if one came first: both re-resolve stale peers).
    let line = daemon.wait_log(mark, &format!("endpoint {moved}"), Duration::from_secs(5));
    assert!(line.contains("converged reason="), "{line}");
    wait_for(Duration::from_secs(20), "a handshake with the site", || {
        peer_status(router, &config, &router_if, "site")
            .filter(|p| !p["latest_handshake_secs"].is_null())
    });
    assert!(ping_ok(router, "10.9.0.2"));

    drop(daemon);
    vpn_ctl(site, &site_config, &["down"]);
    vpn_ctl(router, &config, &["down"]);
}

/// A free TCP port on 127.0.0.1 of `ns`.
fn free_port(ns: &Netns) -> u16 {
    ns.enter(|| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    })
}

/// Prometheus's answer to an instant query: the result vector.
fn prometheus_query(ns: &Netns, api: SocketAddr, query: &str) -> Vec<Value> {
    let path = format!("/api/v1/query?query={query}");
    http_get(ns, api, &path)
        .and_then(|body| serde_json::from_str::<Value>(&body).ok())
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

/// A process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian's Prometheus scrapes the daemon every second in the router's namespace; its HTTP
/// API then has the WireGuard and XDP series.
#[test]
fn prometheus_scrapes_the_wireguard_and_xdp_series() {
    let prometheus = Path::new("/usr/bin/prometheus");
    assert!(
        prometheus.exists(),
        "{} is missing: `apt-get install prometheus` (cargo xtask setup installs it)",
        prometheus.display()
    );
    let router_if = unique_name("wgr");
    let net = VethPair::new();
    let router = &net.b;
    let dir = tempfile::tempdir().unwrap();
    let (metrics_port, api_port) = (free_port(router), free_port(router));
    let config = router_config(
        dir.path(),
        &router_if,
        &net.b_dev,
        &net.b_addr.to_string(),
        "",
    );
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text.replace(
            "metrics_listen = \"off\"",
            &format!("metrics_listen = \"127.0.0.1:{metrics_port}\""),
        )
        .replace("xdp = \"off\"", "xdp = \"count\""),
    )
    .unwrap();
    let daemon = Daemon::start(router, &config, dir.path(), None, None);
    let metrics: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    wait_for(Duration::from_secs(30), "the daemon's /metrics", || {
        http_get(router, metrics, "/metrics")
    });
    assert!(
        net.b.has_xdp(&net.b_dev),
        "no XDP program on the WAN port:\n{}",
        daemon.log()
    );
    // VPN-shaped packets reach the WAN port, so the XDP counters have something to count.
    let wan: SocketAddr = (net.b_addr, 51820).into();
    vpn_ctl_tests::send_udp(
        &net.a,
        wan,
        &[
            vpn_ctl_tests::payload::wg(1, 148),
            vpn_ctl_tests::payload::wg(1, 148),
        ],
    );

    let scrape = dir.path().join("prometheus.yml");
    fs::write(
        &scrape,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: vpn-ctl\n    static_configs:\n      \
             - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    )
    .unwrap();
    let tsdb = dir.path().join("tsdb");
    let log = fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prometheus = Killed(
        router
            .command(prometheus)
            .arg(format!("--config.file={}", scrape.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{api_port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let api: SocketAddr = ([127, 0, 0, 1], api_port).into();
    let up = wait_for(
        Duration::from_secs(60),
        "Prometheus scraping the daemon",
        || {
            prometheus_query(router, api, "up%7Bjob%3D%22vpn-ctl%22%7D")
                .into_iter()
                .find(|r| r["value"][1] == "1")
        },
    );
    assert_eq!(
        up["metric"]["instance"],
        format!("127.0.0.1:{metrics_port}")
    );

    for series in ["wireguard_sent_bytes_total", "vpnctl_wan_packets_total"] {
        let found = wait_for(
            Duration::from_secs(30),
            &format!("{series} in Prometheus"),
            || Some(prometheus_query(router, api, series)).filter(|r| !r.is_empty()),
        );
        assert_eq!(found[0]["metric"]["job"], "vpn-ctl", "{found:?}");
    }
    let wg = prometheus_query(router, api, "wireguard_sent_bytes_total");
    assert!(
        wg.iter()
            .any(|r| r["metric"]["interface"] == router_if.as_str()),
        "{wg:?}"
    );
    let wan = prometheus_query(router, api, "vpnctl_wan_packets_total");
    assert!(
        wan.iter().any(|r| r["metric"]["service"] == "wireguard"),
        "{wan:?}"
    );
    drop(daemon);
    vpn_ctl(router, &config, &["down"]);
}
