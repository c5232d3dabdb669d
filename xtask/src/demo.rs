//! The demo: the first seed's network in namespaces, with vpn-ctl doing the router's work.
//!
//! ```text
//!  phone ─────────── internet ─────────── ISP box ─────────────── router ─────────── LAN host
//!  198.51.100.21     (routes)     203.0.113.2 | 192.168.2.254     wan 192.168.2.253    192.168.1.10
//!  (scanner .66)                  NAT, udp/51820 -> router        lan 192.168.1.1
//!                                                                 wg  10.8.0.1/24
//! ```
//!
//! The router is set up with vpn-ctl alone (`genkey`, a vpn.toml, `peer add phone`, `up`); the
//! phone uses the client config that `peer add` printed, dialling the ISP box's public address,
//! which forwards udp/51820 to the router as the seed's ISP router does. Kernel WireGuard is
//! used where the kernel has it; elsewhere the router (`up --backend auto`) and the phone run
//! vpn-ctl's userspace backend.
//!
//! The acts: the phone dials in before the router's VPN is up and `vpn-ctl diag` says the
//! packets arrive but nothing listens; `vpn-ctl up`, and the phone reaches the LAN host through
//! the tunnel (the demo fails if it does not); `vpn-ctl status`; diag in enforce mode while a
//! scanner sends junk and floods handshakes; a metrics scrape from `vpn-ctl daemon`; `down`.
//!
//! Everything it creates (namespaces, userspace devices, background processes, the temporary
//! directory) is held by a guard that undoes it on drop, so it goes on success, on an error and
//! on a panic; on Ctrl-C, SIGTERM or SIGHUP a signal thread undoes it all and exits.
//!
//! `vpn-ctl/tests/demo.rs` includes this file to run the demo in the QEMU guest, on kernel
//! WireGuard; `cargo xtask test` runs it on the host after the host suite.

use std::{
    fmt::Write as _,
    fs,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use vpn_ctl_tests::{Netns, kernel::Feature, payload, send_udp_from, unique_name};

/// The internet: the phone's segment and the ISP box's public segment.
const INTERNET_TO_PHONE: &str = "198.51.100.1/24";
const PHONE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 21);
const SCANNER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 66);
const INTERNET_TO_ISP: &str = "203.0.113.1/24";
const ISP_PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The ISP box's LAN and the router's WAN (the seed's 192.168.2.254 and .253).
const ISP_LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 254);
const ROUTER_WAN: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 253);
/// The router's LAN and the host on it.
const ROUTER_LAN: &str = "192.168.1.1/24";
const LAN_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
const WG_PORT: u16 = 51820;
/// The router's WAN port, as on OpenWrt.
const WAN: &str = "wan";
/// Where `vpn-ctl daemon` serves metrics by default (inside the router's namespace).
const METRICS: &str = "127.0.0.1:9586";

pub fn run(vpn_ctl: &Path) -> anyhow::Result<()> {
    undo::on_signals();
    let vpn_ctl = vpn_ctl
        .canonicalize()
        .with_context(|| format!("{} is not built", vpn_ctl.display()))?;
    let kernel_wireguard = Feature::WireGuard.available();

    say(&format!(
        "The network (the first seed): a phone on the internet, the ISP's router doing NAT with\n\
         udp/{WG_PORT} forwarded to the VPN router behind it, and a host on the VPN router's LAN.\n\
         Each box is a network namespace."
    ));
    let net = Network::build()?;
    println!("{}", net.map());

    say(
        "The VPN router, set up with vpn-ctl alone: a key, a config file, a peer for the phone.\n\
         `peer add` prints the phone's WireGuard config; it dials the ISP box's public address.",
    );
    let dir = TempDir::new()?;
    let router = Vpn::router(&vpn_ctl, &net, &dir)?;
    let client = router.show(&["peer", "add", "phone", "--split-tunnel"])?;

    say(&if kernel_wireguard {
        "The phone imports that config into kernel WireGuard, as the WireGuard app or wg-quick\n\
         would (`ip link add wg0 type wireguard`, `wg setconf`, its address and routes)."
            .to_string()
    } else {
        "The phone imports that config. This kernel has no WireGuard module, so the phone runs\n\
         vpn-ctl's userspace backend: `vpn-ctl import wg-quick phone.conf`, `vpn-ctl up`."
            .to_string()
    });
    let phone = Phone::up(&vpn_ctl, &net, &dir, &client, kernel_wireguard)?;

    say(&format!(
        "Act 1: the phone dials in, but the router's VPN is not up yet. Does anything even\n\
         arrive? That is what `vpn-ctl diag` answers, instead of tcpdump and netstat.\n\
         $ vpn-ctl diag --wan {WAN} --duration 6"
    ));
    diag(&vpn_ctl, &net.router, &["--duration", "6"], |stop| {
        while !stop.load(Ordering::Relaxed) {
            phone.ping_once();
        }
    })?;

    say(&format!(
        "Act 2: `vpn-ctl up` on the router, {}. The phone's next\n\
         handshake goes through the port forward, and it reaches the LAN host {LAN_HOST}.",
        if kernel_wireguard {
            "on kernel WireGuard"
        } else {
            "on the userspace backend (no WireGuard module here)"
        }
    ));
    router.show(&["up"])?;
    phone.reach_lan_host()?;
    print_output(
        &format!("$ ping -c 3 {LAN_HOST}   (on the phone)"),
        &output(net.phone.command("ping").args([
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            &LAN_HOST.to_string(),
        ]))?,
    );

    say("Act 3: what the router knows about its peers.");
    router.show(&["status"])?;

    say(&format!(
        "Act 4: the phone's session runs while a scanner at {SCANNER} sends junk to udp/{WG_PORT}\n\
         and floods handshake initiations. Enforce mode drops both in XDP, before the kernel\n\
         spends work on them, and leaves the phone alone.\n\
         $ vpn-ctl diag --wan {WAN} --duration 6 --mode enforce --rate-limit 2 --rate-burst 3"
    ));
    diag(
        &vpn_ctl,
        &net.router,
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
            let public = SocketAddr::from((ISP_PUBLIC, WG_PORT));
            let scanner = SocketAddr::from((SCANNER, 0));
            while !stop.load(Ordering::Relaxed) {
                let flood: Vec<_> = (0..10).map(|_| payload::wg(1, 148)).collect();
                send_udp_from(&net.phone, scanner, public, &flood);
                send_udp_from(
                    &net.phone,
                    scanner,
                    public,
                    &[b"GET / HTTP/1.0\r\n\r\n".to_vec()],
                );
                phone.ping_once();
                thread::sleep(Duration::from_millis(250));
            }
        },
    )?;

    metrics_scrape(&vpn_ctl, &net, &router, &phone)?;

    say("The end: `vpn-ctl down` removes what `up` created; then the namespaces go.");
    phone.down()?;
    router.down()?;
    let names = net.names();
    drop(phone);
    drop(router);
    drop(net);
    drop(dir);
    let left = String::from_utf8_lossy(&output(Command::new("ip").args(["netns", "list"]))?)
        .lines()
        .filter(|l| names.iter().any(|n| l.split_whitespace().next() == Some(n)))
        .map(str::to_string)
        .collect::<Vec<_>>();
    ensure!(left.is_empty(), "namespaces left behind: {left:?}");
    say("Done: nothing is left behind.");
    Ok(())
}

/// The metrics act: `vpn-ctl daemon` in the router's namespace, one scrape of `/metrics`,
/// and its WireGuard and WAN-port lines. Builds without the daemon say so and skip it.
fn metrics_scrape(
    vpn_ctl: &Path,
    net: &Network,
    router: &Vpn,
    phone: &Phone,
) -> anyhow::Result<()> {
    say(&format!(
        "Act 5: monitoring. `vpn-ctl daemon` serves Prometheus metrics on {METRICS} (in the\n\
         router's namespace here); one scrape, its WireGuard and WAN-port lines.\n\
         $ vpn-ctl daemon --config vpn.toml &  curl http://{METRICS}/metrics"
    ));
    let has_daemon = net
        .router
        .command(vpn_ctl)
        .args(["daemon", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_daemon {
        println!("skipped: this build has no daemon");
        return Ok(());
    }
    let mut daemon = Background::spawn(
        net.router
            .command(vpn_ctl)
            .arg("--config")
            .arg(&router.config)
            .arg("daemon"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr: SocketAddr = METRICS.parse().expect("a socket address");
    while !net
        .router
        .enter(|| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
    {
        if let Some(status) = daemon.exited()? {
            bail!("vpn-ctl daemon ended before serving metrics ({status})");
        }
        ensure!(
            Instant::now() < deadline,
            "vpn-ctl daemon did not listen on {METRICS} within 20 s"
        );
        thread::sleep(Duration::from_millis(100));
    }
    // Traffic to count, then the scrape.
    for _ in 0..3 {
        phone.ping_once();
    }
    let body = net.router.enter(|| http_get(addr, "/metrics"))?;
    let lines: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("wireguard_") || l.starts_with("vpnctl_wan_"))
        .collect();
    ensure!(
        lines.iter().any(|l| l.starts_with("wireguard_")),
        "the scrape has no wireguard_* series:\n{body}"
    );
    for line in lines {
        println!("  {line}");
    }
    drop(daemon);
    Ok(())
}

/// `GET PATH` over HTTP/1.0; the body of a 200 answer.
fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .with_context(|| format!("reading the answer to GET {path} from {addr}"))?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or("");
    ensure!(
        status.split_whitespace().nth(1) == Some("200"),
        "GET http://{addr}{path}: {status}"
    );
    Ok(body.to_string())
}

/// The five namespaces and their links. Dropping it deletes the namespaces (and with them
/// every link and address in them).
struct Network {
    internet: Netns,
    isp: Netns,
    router: Netns,
    phone: Netns,
    lan_host: Netns,
    _undo: Vec<undo::Guard>,
}

impl Network {
    fn build() -> anyhow::Result<Network> {
        let mut undo = Vec::new();
        let mut ns = |role: &str| {
            let ns = Netns::labelled(&format!("vpn-demo-{role}"));
            undo.push(undo::Guard::new(undo::Action::DeleteNetns(
                ns.name().to_string(),
            )));
            ns
        };
        let (internet, isp, router, phone, lan_host) = (
            ns("internet"),
            ns("isp"),
            ns("router"),
            ns("phone"),
            ns("lanhost"),
        );

        // The internet routes between the phone's segment and the ISP box's public one.
        link(
            &internet,
            "phone",
            INTERNET_TO_PHONE,
            &phone,
            "eth0",
            &format!("{PHONE}/24"),
        );
        phone.ip(&["addr", "add", &format!("{SCANNER}/24"), "dev", "eth0"]);
        phone.ip(&["route", "add", "default", "via", "198.51.100.1"]);
        link(
            &internet,
            "isp",
            INTERNET_TO_ISP,
            &isp,
            "wan",
            &format!("{ISP_PUBLIC}/24"),
        );
        isp.ip(&["route", "add", "default", "via", "203.0.113.1"]);
        forwarding(&internet)?;

        // The ISP box: NAT for its LAN, udp/51820 forwarded to the VPN router.
        link(
            &isp,
            "lan",
            &format!("{ISP_LAN}/24"),
            &router,
            WAN,
            &format!("{ROUTER_WAN}/24"),
        );
        router.ip(&["route", "add", "default", "via", &ISP_LAN.to_string()]);
        forwarding(&isp)?;
        let rules = format!(
            "table ip nat {{\n\
             \tchain prerouting {{\n\
             \t\ttype nat hook prerouting priority dstnat;\n\
             \t\tiifname \"wan\" udp dport {WG_PORT} dnat to {ROUTER_WAN}\n\
             \t}}\n\
             \tchain postrouting {{\n\
             \t\ttype nat hook postrouting priority srcnat;\n\
             \t\toifname \"wan\" masquerade\n\
             \t}}\n\
             }}\n"
        );
        let mut nft = isp
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting nft (Debian package nftables; `cargo xtask setup` installs it)")?;
        nft.stdin
            .take()
            .expect("piped")
            .write_all(rules.as_bytes())?;
        let out = nft.wait_with_output()?;
        ensure!(
            out.status.success(),
            "nft -f failed on the ISP box's rules:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // The VPN router's LAN with one host on it.
        link(
            &router,
            "lan",
            ROUTER_LAN,
            &lan_host,
            "eth0",
            &format!("{LAN_HOST}/24"),
        );
        lan_host.ip(&["route", "add", "default", "via", "192.168.1.1"]);
        forwarding(&router)?;

        Ok(Network {
            internet,
            isp,
            router,
            phone,
            lan_host,
            _undo: undo,
        })
    }

    fn names(&self) -> Vec<String> {
        [
            &self.internet,
            &self.isp,
            &self.router,
            &self.phone,
            &self.lan_host,
        ]
        .iter()
        .map(|ns| ns.name().to_string())
        .collect()
    }

    fn map(&self) -> String {
        let mut map = String::new();
        let rows = [
            (
                &self.phone,
                format!("the phone      eth0 {PHONE} (and a scanner, {SCANNER})"),
            ),
            (
                &self.internet,
                "the internet   routes 198.51.100.0/24 <-> 203.0.113.0/24".into(),
            ),
            (
                &self.isp,
                format!(
                    "the ISP box    wan {ISP_PUBLIC} (public), lan {ISP_LAN}; NAT, udp/{WG_PORT} -> {ROUTER_WAN}"
                ),
            ),
            (
                &self.router,
                format!("the VPN router {WAN} {ROUTER_WAN}, lan {ROUTER_LAN}; vpn-ctl runs here"),
            ),
            (&self.lan_host, format!("the LAN host   eth0 {LAN_HOST}")),
        ];
        for (ns, what) in rows {
            let _ = writeln!(map, "  {what:<80}  (netns {})", ns.name());
        }
        map
    }
}

/// A veth pair from `a` (device `a_dev`, address `a_addr`) to `b`, both ends up. It is created
/// inside `a`, so nothing ever appears in the caller's namespace.
fn link(a: &Netns, a_dev: &str, a_addr: &str, b: &Netns, b_dev: &str, b_addr: &str) {
    a.ip(&[
        "link",
        "add",
        a_dev,
        "type",
        "veth",
        "peer",
        "name",
        b_dev,
        "netns",
        b.name(),
    ]);
    a.ip(&["addr", "add", a_addr, "dev", a_dev]);
    b.ip(&["addr", "add", b_addr, "dev", b_dev]);
    a.ip(&["link", "set", a_dev, "up"]);
    b.ip(&["link", "set", b_dev, "up"]);
}

fn forwarding(ns: &Netns) -> anyhow::Result<()> {
    output(ns.command("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]))?;
    Ok(())
}

/// A vpn-ctl config in a namespace: the router's, or the phone's on the userspace backend.
struct Vpn<'a> {
    vpn_ctl: &'a Path,
    ns: &'a Netns,
    config: PathBuf,
    /// `vpn-ctl down` on drop, unless [`Vpn::down`] ran.
    undo: undo::Guard,
}

impl<'a> Vpn<'a> {
    /// The router's key and config; the WireGuard interface gets a unique name, because a
    /// userspace device's UAPI socket (`/var/run/wireguard/NAME.sock`) is not per namespace.
    fn router(vpn_ctl: &'a Path, net: &'a Network, dir: &TempDir) -> anyhow::Result<Vpn<'a>> {
        let ns = &net.router;
        let iface = unique_name("wg");
        let key = dir.path.join(format!("{iface}.key"));
        println!("$ vpn-ctl genkey > {iface}.key");
        let private = output(ns.command(vpn_ctl).arg("genkey"))?;
        fs::write(&key, private)?;
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600))?;
        let config = dir.path.join("vpn.toml");
        let text = format!(
            "[router]\n\
             wan = \"{WAN}\"\n\
             lan = [\"192.168.1.0/24\"]\n\
             \n\
             [wireguard.{iface}]\n\
             private_key_file = \"{iface}.key\"\n\
             listen_port = {WG_PORT}\n\
             addresses = [\"10.8.0.1/24\"]\n\
             public_endpoint = \"{ISP_PUBLIC}:{WG_PORT}\"   # the ISP box's public address\n"
        );
        fs::write(&config, &text)?;
        print_output("$ cat vpn.toml", text.as_bytes());
        Ok(Vpn::new(vpn_ctl, ns, config))
    }

    fn new(vpn_ctl: &'a Path, ns: &'a Netns, config: PathBuf) -> Vpn<'a> {
        let undo = undo::Guard::new(undo::Action::Down {
            vpn_ctl: vpn_ctl.to_path_buf(),
            config: config.clone(),
            netns: ns.name().to_string(),
        });
        Vpn {
            vpn_ctl,
            ns,
            config,
            undo,
        }
    }

    /// `vpn-ctl --config CONFIG ARGS...` in the namespace; its output is printed and returned.
    fn show(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run(args)?;
        print_output(&format!("$ vpn-ctl {}", args.join(" ")), out.as_bytes());
        Ok(out)
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = output(
            self.ns
                .command(self.vpn_ctl)
                .arg("--config")
                .arg(&self.config)
                .args(args),
        )?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn down(&self) -> anyhow::Result<()> {
        self.show(&["down"])?;
        self.undo.disarm();
        Ok(())
    }
}

/// The phone's side of the tunnel.
struct Phone<'a> {
    ns: &'a Netns,
    /// The phone's own vpn-ctl config on the userspace backend; `None` on kernel WireGuard,
    /// whose link goes with the namespace.
    vpn: Option<Vpn<'a>>,
}

impl<'a> Phone<'a> {
    fn up(
        vpn_ctl: &'a Path,
        net: &'a Network,
        dir: &TempDir,
        client: &str,
        kernel_wireguard: bool,
    ) -> anyhow::Result<Phone<'a>> {
        let ns = &net.phone;
        let iface = unique_name("wgp");
        let phone_dir = dir.path.join("phone");
        fs::create_dir(&phone_dir)?;
        let conf = phone_dir.join(format!("{iface}.conf"));
        fs::write(&conf, client)?;
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o600))?;
        if !kernel_wireguard {
            let vpn = Vpn::new(vpn_ctl, ns, phone_dir.join("vpn.toml"));
            let conf = conf.to_string_lossy();
            vpn.show(&["import", "wg-quick", &conf])?;
            vpn.show(&["up", "--backend", "userspace"])?;
            return Ok(Phone { ns, vpn: Some(vpn) });
        }
        // What wg-quick does: `wg setconf` on the config without wg-quick's own keys, then
        // the addresses and a route per allowed network.
        let interface = section(client, "[Interface]");
        let address = value(&interface, "Address")?;
        let allowed = value(&section(client, "[Peer]"), "AllowedIPs")?;
        let stripped: String = client
            .lines()
            .filter(|l| !l.starts_with("Address") && !l.starts_with("DNS"))
            .map(|l| format!("{l}\n"))
            .collect();
        let wg_conf = phone_dir.join(format!("{iface}.wg"));
        fs::write(&wg_conf, stripped)?;
        fs::set_permissions(&wg_conf, fs::Permissions::from_mode(0o600))?;
        let mut steps = vec![
            format!("ip link add {iface} type wireguard"),
            format!("wg setconf {iface} {}", wg_conf.display()),
        ];
        steps.extend(
            address
                .split(',')
                .map(|a| format!("ip addr add {} dev {iface}", a.trim())),
        );
        steps.push(format!("ip link set {iface} up"));
        steps.extend(
            allowed
                .split(',')
                .map(|n| format!("ip route replace {} dev {iface}", n.trim())),
        );
        for step in steps {
            println!("$ {step}");
            let words: Vec<&str> = step.split_whitespace().collect();
            output(ns.command(words[0]).args(&words[1..]))?;
        }
        Ok(Phone { ns, vpn: None })
    }

    /// One ping to the LAN host (at most a second); whether it answered.
    fn ping_once(&self) -> bool {
        self.ns
            .command("ping")
            .args(["-c", "1", "-W", "1", &LAN_HOST.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Pings the LAN host until it answers; fails after 30 s. WireGuard retries a handshake
    /// every 5 s, so the first answer comes within about that.
    fn reach_lan_host(&self) -> anyhow::Result<()> {
        let start = Instant::now();
        while !self.ping_once() {
            if start.elapsed() > Duration::from_secs(30) {
                bail!(
                    "the phone could not reach the LAN host {LAN_HOST} through the tunnel within \
                     30 s"
                );
            }
        }
        println!(
            "the phone reached {LAN_HOST} after {:.1} s",
            start.elapsed().as_secs_f64()
        );
        Ok(())
    }

    fn down(&self) -> anyhow::Result<()> {
        match &self.vpn {
            Some(vpn) => vpn.down(),
            None => Ok(()),
        }
    }
}

fn section(text: &str, name: &str) -> String {
    text.split(name)
        .nth(1)
        .unwrap_or("")
        .split("\n[")
        .next()
        .unwrap_or("")
        .to_string()
}

fn value(section: &str, key: &str) -> anyhow::Result<String> {
    section
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
        .with_context(|| format!("the client config has no {key}:\n{section}"))
}

/// Runs `vpn-ctl diag --wan wan ARGS` in the router's namespace while `traffic` runs on
/// another thread; checks that the program is gone afterwards.
fn diag(
    vpn_ctl: &Path,
    router: &Netns,
    args: &[&str],
    traffic: impl FnOnce(&AtomicBool) + Send,
) -> anyhow::Result<()> {
    let mut diag = Background::spawn(
        router
            .command(vpn_ctl)
            .args(["diag", "--wan", WAN])
            .args(args),
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !router.has_xdp(WAN) {
        if let Some(status) = diag.exited()? {
            bail!("vpn-ctl diag ended before attaching ({status})");
        }
        ensure!(
            Instant::now() < deadline,
            "vpn-ctl diag did not attach within 20 s"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let status = thread::scope(|s| {
        s.spawn(|| traffic(&stop));
        let status = diag.wait();
        stop.store(true, Ordering::Relaxed);
        status
    })?;
    ensure!(status.success(), "vpn-ctl diag failed ({status})");
    ensure!(
        !router.has_xdp(WAN),
        "vpn-ctl diag left its program on {WAN}"
    );
    Ok(())
}

/// A child process, killed on drop (and by the signal thread).
struct Background {
    child: Child,
    undo: undo::Guard,
}

impl Background {
    fn spawn(cmd: &mut Command) -> anyhow::Result<Background> {
        let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        let undo = undo::Guard::new(undo::Action::Kill(child.id()));
        Ok(Background { child, undo })
    }

    fn exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    fn wait(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let status = self.child.wait()?;
        self.undo.disarm();
        Ok(status)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.undo.run();
        let _ = self.child.wait();
    }
}

/// A temporary directory for the configs and keys, removed on drop.
struct TempDir {
    path: PathBuf,
    _undo: undo::Guard,
}

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("vpn-ctl-demo-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700))?;
        let undo = undo::Guard::new(undo::Action::RemoveDir(path.clone()));
        Ok(TempDir { path, _undo: undo })
    }
}

/// Runs a command; its stdout, or an error with its output.
fn output(cmd: &mut Command) -> anyhow::Result<Vec<u8>> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

fn say(text: &str) {
    println!();
    for line in text.lines() {
        println!("== {line}");
    }
    println!();
}

fn print_output(command: &str, out: &[u8]) {
    println!("{command}");
    for line in String::from_utf8_lossy(out).lines() {
        println!("  {line}");
    }
}

/// Undoing what the demo created on every way out: each [`Guard`] undoes its action when
/// dropped (a normal return, an error, a panic), and on SIGINT, SIGTERM or SIGHUP a signal
/// thread undoes every pending action, newest first, and exits.
mod undo {
    use std::{
        path::PathBuf,
        process::{Command, Stdio},
        sync::{
            Mutex, MutexGuard,
            atomic::{AtomicU64, Ordering},
        },
    };

    pub enum Action {
        /// `kill -KILL PID` (a child process of the demo).
        Kill(u32),
        /// `ip netns exec NETNS vpn-ctl --config CONFIG down`.
        Down {
            vpn_ctl: PathBuf,
            config: PathBuf,
            netns: String,
        },
        /// `ip netns del NAME`.
        DeleteNetns(String),
        RemoveDir(PathBuf),
    }

    impl Action {
        fn run(self) {
            match self {
                Action::Kill(pid) => {
                    // SAFETY: kill(2) has no memory effects; the pid is a child not yet
                    // waited for (its guard is disarmed or run before the wait).
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                }
                Action::Down {
                    vpn_ctl,
                    config,
                    netns,
                } => {
                    let _ = Command::new("ip")
                        .args(["netns", "exec", &netns])
                        .arg(vpn_ctl)
                        .arg("--config")
                        .arg(config)
                        .arg("down")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
                Action::DeleteNetns(name) => {
                    let _ = Command::new("ip").args(["netns", "del", &name]).output();
                }
                Action::RemoveDir(path) => {
                    let _ = std::fs::remove_dir_all(path);
                }
            }
        }
    }

    static PENDING: Mutex<Vec<(u64, Action)>> = Mutex::new(Vec::new());
    static NEXT: AtomicU64 = AtomicU64::new(0);

    fn pending() -> MutexGuard<'static, Vec<(u64, Action)>> {
        PENDING.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One pending action, undone on drop.
    pub struct Guard(u64);

    impl Guard {
        pub fn new(action: Action) -> Guard {
            let id = NEXT.fetch_add(1, Ordering::Relaxed);
            pending().push((id, action));
            Guard(id)
        }

        fn take(&self) -> Option<Action> {
            let mut pending = pending();
            let at = pending.iter().position(|(id, _)| *id == self.0)?;
            Some(pending.remove(at).1)
        }

        /// Undoes the action now (once; later calls and the drop do nothing).
        pub fn run(&self) {
            if let Some(action) = self.take() {
                action.run();
            }
        }

        /// Forgets the action: it was undone another way.
        pub fn disarm(&self) {
            self.take();
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            self.run();
        }
    }

    /// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and the threads it starts later) and
    /// starts a thread that waits for them, undoes every pending action and exits with
    /// 128 + the signal. Child processes start with an empty signal mask (std resets it), so
    /// a Ctrl-C still reaches them too.
    pub fn on_signals() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(watch_signals);
    }

    fn watch_signals() {
        // SAFETY: plain libc calls on a local sigset_t.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, signal);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            set
        };
        std::thread::spawn(move || {
            let mut signal = 0;
            // SAFETY: a valid, initialised set and an out-parameter.
            if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                return;
            }
            eprintln!("\n== Interrupted: removing the demo's namespaces and processes.");
            let actions: Vec<_> = std::mem::take(&mut *pending());
            for (_, action) in actions.into_iter().rev() {
                action.run();
            }
            std::process::exit(128 + signal);
        });
    }
}
