//! IKE keying end to end: vpn-ctl's side against a strongSwan configured like the seed's
//! FRITZ!Box, each router running its own charon inside its namespace.
//!
//! ```text
//!  LAN 192.168.2.10 ── left router (vpn-ctl, charon) ══ WAN veth ══ right router ("FRITZ!Box",
//!                      192.168.2.1                                   charon + swanctl.conf)
//!                                                                    192.168.1.1 ── LAN 192.168.1.10
//! ```
//!
//! The FRITZ!Box side is loaded with swanctl from a swanctl.conf written here (IKEv1
//! aggressive mode, PSK, aes256-sha1-modp1024 for IKE and ESP, FQDN identities
//! right.domain.com / left.domain.com), not through vpn-ctl's code, so the two sides are
//! configured independently. vpn-ctl's side is an `IpsecSite` applied with `ike::up`.
//!
//! The ESP part needs a kernel with ESP (the QEMU guest: `cargo xtask guest --test
//! ipsec_ike`); the VICI round trip with one charon runs anywhere.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

#[path = "common/cli.rs"]
#[allow(dead_code, reason = "shared by the end-to-end tests; each uses some")]
mod cli;
#[path = "common/daemon.rs"]
#[allow(dead_code, reason = "shared by the end-to-end tests; each uses some")]
mod daemon;

use daemon::{Daemon, wait_for};

use vpn_ctl::{
    config::ipsec::{Gateway, Identity, IkeKeying, IkeVersion, IpsecSite, Keying, SecretBytes},
    ike::{self, CharonLaunch, CharonStart, UpOptions, Vici},
};
use vpn_ctl_tests::{
    Netns, VethPair,
    kernel::{Feature, kernel_has},
    lan_behind, run,
};

const PSK: &str = "VPNPassword";
/// charon under TCG takes seconds per exchange; generous but bounded.
const TIMEOUT: Duration = Duration::from_secs(90);

/// A charon running in a namespace with its own config directory; stopped on drop.
struct Charon {
    label: &'static str,
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Charon {
    /// Starts charon in `ns` through vpn-ctl's launcher, with its own `/run` (charon's pid
    /// file is compiled in, and two run at once here).
    fn start(label: &'static str, ns: &Netns, dir: &Path, aggressive_psk: bool) -> Charon {
        let socket = dir.join("charon.vici");
        let mut launch = CharonLaunch::new(&socket, dir);
        launch.netns = Some(ns.name().to_string());
        launch.private_run = true;
        launch.aggressive_psk = aggressive_psk;
        launch.wait = TIMEOUT;
        let log = launch.log_path();
        match launch.ensure() {
            Ok(CharonStart::Started { child, .. }) => Charon {
                label,
                child,
                socket,
                log,
            },
            Ok(other) => panic!("{label}: expected a new charon, got: {other}"),
            Err(e) => panic!("{label}: starting charon failed: {e:#}"),
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log.display()))
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        let _ = ike::stop_charon(&mut self.child, Duration::from_secs(5));
    }
}

/// Prints every charon's log when the test fails (on drop while panicking).
struct LogsOnFailure<'a>(Vec<&'a Charon>);

impl Drop for LogsOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for charon in &self.0 {
                eprintln!(
                    "===== {} charon's log ({}) =====\n{}",
                    charon.label,
                    charon.log.display(),
                    charon.log()
                );
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The seed's OpenWrt side: IKEv1 aggressive towards the FRITZ!Box.
fn left_site(remote_gateway: Ipv4Addr) -> IpsecSite {
    IpsecSite {
        name: "fritzbox".into(),
        local_gateway: None,
        remote_gateway: Gateway::Address(remote_gateway.into()),
        local_subnets: vec!["192.168.2.0/24".parse().unwrap()],
        remote_subnets: vec!["192.168.1.0/24".parse().unwrap()],
        keying: Keying::Ike(IkeKeying {
            version: IkeVersion::V1Aggressive,
            local_id: Some(Identity::Fqdn("left.domain.com".into())),
            remote_id: Some(Identity::Fqdn("right.domain.com".into())),
            psk: SecretBytes::new(PSK.as_bytes().to_vec()),
            psk_file: "fritzbox.psk".into(),
            ike_proposals: vec!["aes256-sha1-modp1024".into()],
            esp_proposals: vec!["aes256-sha1-modp1024".into()],
            ike_lifetime: Duration::from_secs(3600),
            esp_lifetime: Duration::from_secs(28800),
            dpd: Some(Duration::from_secs(30)),
            nat_traversal: true,
        }),
        watchdog_probe: Some("192.168.1.1".parse().unwrap()),
    }
}

/// The FRITZ!Box's `vpncfg` of the seed, as a strongSwan responder: aggressive mode
/// (`phase1_mode_idp`), PSK, FQDN ids, `phase2ss = esp-all-all/ah-none/comp-all/pfs`
/// narrowed to what it agrees on with OpenWrt, the local and remote LANs.
fn fritzbox_swanctl_conf(local: Ipv4Addr, remote: Ipv4Addr) -> String {
    format!(
        r#"connections {{
    fritzbox {{
        version = 1
        aggressive = yes
        local_addrs = {local}
        remote_addrs = {remote}
        proposals = aes256-sha1-modp1024
        rekey_time = 3600s
        dpd_delay = 30s
        local {{
            auth = psk
            id = right.domain.com
        }}
        remote {{
            auth = psk
            id = left.domain.com
        }}
        children {{
            fritzbox {{
                local_ts = 192.168.1.0/24
                remote_ts = 192.168.2.0/24
                esp_proposals = aes256-sha1-modp1024
                life_time = 3600s
            }}
        }}
    }}
}}
secrets {{
    ike-fritzbox {{
        id-1 = left.domain.com
        id-2 = right.domain.com
        secret = "{PSK}"
    }}
}}
"#
    )
}

/// The FRITZ!Box: a charon in `wan.a` loaded with swanctl from [`fritzbox_swanctl_conf`].
fn fritzbox(wan: &VethPair, dir: &Path) -> Charon {
    fritzbox_with(wan, dir, fritzbox_swanctl_conf(wan.a_addr, wan.b_addr))
}

/// [`fritzbox`] loaded with `swanctl_conf` (the profile with other lifetimes).
fn fritzbox_with(wan: &VethPair, dir: &Path, swanctl_conf_text: String) -> Charon {
    // It answers aggressive mode with a PSK, which charon refuses by default.
    let fritz = Charon::start("FRITZ!Box", &wan.a, dir, true);
    let _logs = LogsOnFailure(vec![&fritz]);
    let swanctl_conf = dir.join("swanctl.conf");
    fs::write(&swanctl_conf, swanctl_conf_text).unwrap();
    let loaded = text(run(std::process::Command::new("swanctl")
        .args(["--load-all", "--noprompt", "--file"])
        .arg(&swanctl_conf)
        .arg("--uri")
        .arg(format!("unix://{}", fritz.socket.display()))));
    assert!(loaded.contains("loaded connection 'fritzbox'"), "{loaded}");
    drop(_logs);
    fritz
}

/// vpn-ctl's side of the seed as a config file in `dir` (`vpn.toml` and its 0600
/// `fritzbox.psk`): `[router]` lines `router`, then `[ipsec.fritzbox]` towards `remote` with
/// the extra site lines `site`. Its path.
fn fritzbox_config(dir: &Path, remote: Ipv4Addr, router: &str, site: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let psk = dir.join("fritzbox.psk");
    fs::write(&psk, PSK).unwrap();
    fs::set_permissions(&psk, fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.join("vpn.toml");
    fs::write(
        &config,
        format!(
            r#"{router}[ipsec.fritzbox]
keying = "ike"
remote_gateway = "{remote}"
local_subnets = ["192.168.2.0/24"]
remote_subnets = ["192.168.1.0/24"]
local_id = "left.domain.com"
remote_id = "right.domain.com"
psk_file = "fritzbox.psk"
ike_version = "ikev1-aggressive"
ike_proposals = ["aes256-sha1-modp1024"]
esp_proposals = ["aes256-sha1-modp1024"]
allow_weak = ["modp1024", "sha1"]
{site}"#
        ),
    )
    .unwrap();
    config
}

/// The FRITZ!Box starts the tunnel itself, as after its reboot, a new address or its own
/// renewal: vpn-ctl's side (charon on `ours`) ends the IKE SA first, from its own end, so that
/// it does not start a new one itself (it would after a delete from the peer: close_action),
/// then the FRITZ!Box runs `swanctl --initiate`. The command's output.
fn fritz_initiates(fritz: &Charon, ours: &Path) -> std::process::Output {
    let swanctl = |args: &[&str], socket: &Path| {
        std::process::Command::new("swanctl")
            .args(args)
            .arg("--uri")
            .arg(format!("unix://{}", socket.display()))
            .output()
            .unwrap()
    };
    let _ = swanctl(
        &[
            "--terminate",
            "--ike",
            "vpn-ctl-fritzbox",
            "--timeout",
            "60",
        ],
        ours,
    );
    swanctl(
        &["--initiate", "--child", "fritzbox", "--timeout", "90"],
        &fritz.socket,
    )
}

/// `swanctl ARGS --uri unix://SOCKET`, which must succeed; its output.
fn swanctl(socket: &Path, args: &[&str]) -> String {
    text(run(std::process::Command::new("swanctl")
        .args(args)
        .arg("--uri")
        .arg(format!("unix://{}", socket.display()))))
}

/// A reader of the log of vpn-ctl's own charon from now on (the file is appended to across
/// runs and tests).
fn our_charons_log_from_now() -> impl Fn() -> String {
    let path = Path::new(ike::charon::DEFAULT_CONF_DIR).join("charon.log");
    let start = fs::metadata(&path).map_or(0, |m| m.len() as usize);
    move || {
        let log = fs::read_to_string(&path).unwrap_or_default();
        log.get(start..).unwrap_or_default().to_string()
    }
}

/// vpn-ctl's own charon (the default VICI socket and pid file) is one per machine: the tests
/// that start it through `vpn-ctl up` take turns.
fn default_charon() -> MutexGuard<'static, ()> {
    static DEFAULT_CHARON: Mutex<()> = Mutex::new(());
    DEFAULT_CHARON.lock().unwrap_or_else(|e| e.into_inner())
}

fn text(out: std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `read` returns an empty text, up to `TIMEOUT`; panics with `what` and the
/// last text otherwise.
fn wait_until_empty(what: &str, mut read: impl FnMut() -> String) {
    let start = Instant::now();
    loop {
        let text = read();
        if text.trim().is_empty() {
            return;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "{what}: still there after {TIMEOUT:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `ip xfrm state` in `ns`.
fn xfrm_states(ns: &Netns) -> String {
    text(ns.ip(&["xfrm", "state"]))
}

/// `ip xfrm policy` in `ns`, without the per-socket policies charon keeps on its own IKE
/// sockets while it runs (`src 0.0.0.0/0 dst 0.0.0.0/0 / socket in priority 0`).
fn xfrm_policies(ns: &Netns) -> String {
    let all = text(ns.ip(&["xfrm", "policy"]));
    let mut blocks: Vec<String> = Vec::new();
    for line in all.lines() {
        match blocks.last_mut() {
            Some(block) if line.starts_with(char::is_whitespace) => {
                block.push('\n');
                block.push_str(line);
            }
            _ => blocks.push(line.to_string()),
        }
    }
    blocks
        .into_iter()
        .filter(|b| !b.contains("socket in") && !b.contains("socket out"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn the_sa(sas: &[ike::IkeSa]) -> (&ike::IkeSa, &ike::ChildSa) {
    let ike = sas
        .iter()
        .find(|s| s.name == "vpn-ctl-fritzbox")
        .unwrap_or_else(|| panic!("no IKE SA vpn-ctl-fritzbox in {sas:#?}"));
    let child = ike
        .children
        .iter()
        .find(|c| c.name == "vpn-ctl-fritzbox")
        .unwrap_or_else(|| panic!("no CHILD SA vpn-ctl-fritzbox in {ike:#?}"));
    (ike, child)
}

/// The two sites: `wan.a` is the FRITZ!Box's WAN (right, LAN 192.168.1.0/24), `wan.b`
/// vpn-ctl's router's (left, LAN 192.168.2.0/24); each router's default route leads to the
/// other (the internet). Returns the WAN and the right and left LAN hosts.
fn two_sites() -> (VethPair, Netns, Netns) {
    let wan = VethPair::new();
    let (right, left) = (&wan.a, &wan.b);
    right.ip(&["route", "add", "default", "via", &wan.b_addr.to_string()]);
    left.ip(&["route", "add", "default", "via", &wan.a_addr.to_string()]);
    let right_lan = lan_behind(right, "192.168.1");
    let left_lan = lan_behind(left, "192.168.2");
    (wan, right_lan, left_lan)
}

#[test]
fn ikev1_aggressive_with_a_fritzbox_like_peer_carries_lan_to_lan_traffic() {
    if !kernel_has(Feature::Esp) {
        return;
    }
    let (wan, right_lan, left_lan) = two_sites();
    let (right, left) = (&wan.a, &wan.b);

    let dir = tempfile::tempdir().unwrap();
    let (right_dir, left_dir) = (dir.path().join("fritzbox"), dir.path().join("vpn-ctl"));
    fs::create_dir(&right_dir).unwrap();
    fs::create_dir(&left_dir).unwrap();

    let fritz = fritzbox(&wan, &right_dir);
    let _logs = LogsOnFailure(vec![&fritz]);

    let ours = Charon::start("vpn-ctl's", left, &left_dir, false);
    let _ours_logs = LogsOnFailure(vec![&ours]);
    // A second ensure finds it running and says so.
    let again = ike::ensure_charon(&ours.socket, &left_dir, false).unwrap();
    assert!(
        matches!(again, CharonStart::Running { .. }),
        "ensure_charon started another: {again}"
    );
    assert!(again.to_string().contains("charon answers on"), "{again}");

    let rt = runtime();
    let mut vici = rt.block_on(Vici::connect(&ours.socket)).unwrap();
    let version = rt.block_on(vici.version()).unwrap();
    assert!(version.contains("charon"), "{version}");
    let options = UpOptions {
        state_dir: left_dir.join("state"),
        timeout: TIMEOUT,
    };
    let site = left_site(wan.a_addr);

    // First up: loads, initiates from vpn-ctl's side, and says so.
    let changes = rt
        .block_on(ike::up(&mut vici, std::slice::from_ref(&site), &options))
        .unwrap_or_else(|e| panic!("first up failed: {e:#}"));
    let report = changes.join("\n");
    assert!(
        report.contains("vpn-ctl-fritzbox: loaded into charon"),
        "{report}"
    );
    assert!(report.contains("vpn-ctl-fritzbox: established"), "{report}");

    let sas = rt.block_on(ike::status(&mut vici)).unwrap();
    let (sa, child) = the_sa(&sas);
    assert_eq!(sa.state, "ESTABLISHED", "{sa:#?}");
    assert_eq!(sa.version, 1);
    assert!(sa.initiator, "vpn-ctl's side initiated");
    assert_eq!(sa.remote_id.as_deref(), Some("right.domain.com"));
    assert_eq!(sa.local_id.as_deref(), Some("left.domain.com"));
    assert!(sa.algorithms.contains("AES_CBC-256"), "{}", sa.algorithms);
    assert!(sa.algorithms.contains("MODP_1024"), "{}", sa.algorithms);
    assert_eq!(child.state, "INSTALLED", "{child:#?}");
    assert_eq!(child.local_ts, ["192.168.2.0/24"]);
    assert_eq!(child.remote_ts, ["192.168.1.0/24"]);
    let (spi_in, spi_out) = (child.spi_in.unwrap(), child.spi_out.unwrap());
    let first = (sa.unique_id, spi_in, spi_out);
    let (packets_in, packets_out) = (child.packets_in, child.packets_out);
    let state = xfrm_states(left);
    assert!(state.contains(&format!("spi 0x{spi_in:08x}")), "{state}");
    let policies = xfrm_policies(left);
    assert!(
        policies.contains("src 192.168.2.0/24 dst 192.168.1.0/24"),
        "{policies}"
    );

    // LAN to LAN through the tunnel, both ways.
    run(left_lan
        .command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "5", "192.168.1.10"]));
    run(right_lan
        .command("ping")
        .args(["-c", "2", "-i", "0.2", "-W", "5", "192.168.2.10"]));
    let sas = rt.block_on(ike::status(&mut vici)).unwrap();
    let (_, child) = the_sa(&sas);
    assert!(
        child.packets_out >= packets_out + 5 && child.packets_in >= packets_in + 5,
        "the CHILD SA's counters did not rise with the pings: before in {packets_in} out \
         {packets_out}, after {child:#?}"
    );
    assert!(child.bytes_in > 0 && child.bytes_out > 0, "{child:#?}");

    // A second up with the same site changes nothing: same IKE SA, same SPIs.
    let changes = rt
        .block_on(ike::up(&mut vici, std::slice::from_ref(&site), &options))
        .unwrap_or_else(|e| panic!("second up failed: {e:#}"));
    assert!(
        changes.is_empty(),
        "the second up did something: {changes:#?}"
    );
    let sas = rt.block_on(ike::status(&mut vici)).unwrap();
    let (sa, child) = the_sa(&sas);
    assert_eq!(
        (sa.unique_id, child.spi_in.unwrap(), child.spi_out.unwrap()),
        first,
        "the SA was re-established"
    );
    assert_eq!(sas.len(), 1, "{sas:#?}");

    // A changed ESP lifetime: reloaded, the old SA terminated, a new one negotiated.
    let mut changed = site.clone();
    let Keying::Ike(ike_keying) = &mut changed.keying else {
        unreachable!()
    };
    ike_keying.esp_lifetime = Duration::from_secs(7200);
    let changes = rt
        .block_on(ike::up(&mut vici, std::slice::from_ref(&changed), &options))
        .unwrap_or_else(|e| panic!("up with a changed lifetime failed: {e:#}"));
    let report = changes.join("\n");
    assert!(
        report.contains("children.vpn-ctl-fritzbox.life_time: 28800 -> 7200"),
        "{report}"
    );
    assert!(report.contains("terminated its SAs"), "{report}");
    assert!(report.contains("vpn-ctl-fritzbox: established"), "{report}");
    let sas = rt.block_on(ike::status(&mut vici)).unwrap();
    let (sa, child) = the_sa(&sas);
    assert_ne!(
        sa.unique_id, first.0,
        "the old IKE SA is still there: {sas:#?}"
    );
    assert_eq!(child.life_time.map(|t| t <= 7200), Some(true), "{child:#?}");
    run(left_lan
        .command("ping")
        .args(["-c", "2", "-i", "0.2", "-W", "5", "192.168.1.10"]));

    // The FRITZ!Box loses its SAs (a reboot, say): nothing comes back any more. The watchdog
    // says so and renegotiates through charon; traffic flows again.
    run(right.command("ip").args(["xfrm", "state", "flush"]));
    let mut watched = changed.clone();
    watched.watchdog_probe = Some("192.168.1.10".parse().unwrap());
    let config = vpn_ctl::config::Config {
        path: "vpn.toml".into(),
        router: Default::default(),
        wireguard: Vec::new(),
        ipsec: vec![watched.clone()],
        daemon: Default::default(),
        unterminated_line: None,
        warnings: Vec::new(),
    };
    let watchdog_options = vpn_ctl::watchdog::Options {
        once: true,
        interval: Duration::from_secs(1),
        vici_socket: ours.socket.clone(),
    };
    let (health, all_up) = left.enter(|| {
        let rt = runtime();
        let health = rt.block_on(async {
            let nl = vpn_ctl::link::Netlink::connect().unwrap();
            vpn_ctl::watchdog::check(&nl, &watched).await.unwrap()
        });
        let all_up = rt
            .block_on(vpn_ctl::watchdog::run(&config, &watchdog_options))
            .unwrap();
        (health, all_up)
    });
    assert!(
        matches!(health, vpn_ctl::watchdog::Health::NoReply { .. }),
        "{health}"
    );
    assert!(
        health.to_string().contains("nothing comes back"),
        "{health}"
    );
    assert!(all_up, "the watchdog did not bring the tunnel back");
    run(left_lan
        .command("ping")
        .args(["-c", "2", "-i", "0.2", "-W", "5", "192.168.1.10"]));

    // The FRITZ!Box initiates: this charon was started without the aggressive-mode setting
    // and refuses it...
    let refused = fritz_initiates(&fritz, &ours.socket);
    assert!(!refused.status.success(), "{}", text(refused));
    assert!(
        ours.log().contains("Aggressive Mode PSK disabled"),
        "{}",
        ours.log()
    );
    // ... until `up` with an aggressive-mode site finds it: vpn-ctl's own charon, whose
    // settings are rewritten and reread (no restart, no SA touched).
    let mut launch = CharonLaunch::new(&ours.socket, &left_dir);
    launch.aggressive_psk = true;
    assert!(
        launch.runs_ours(),
        "the charon vpn-ctl started is not recognised"
    );
    assert!(launch.update_conf().unwrap());
    assert!(
        !launch.update_conf().unwrap(),
        "a second update changed the file again"
    );
    rt.block_on(vici.reload_settings()).unwrap();
    let answered = fritz_initiates(&fritz, &ours.socket);
    assert!(answered.status.success(), "{}", text(answered));
    run(left_lan
        .command("ping")
        .args(["-c", "2", "-i", "0.2", "-W", "5", "192.168.1.10"]));

    // down: terminated and unloaded; no SA left in the kernel, nothing of vpn-ctl in charon.
    let changes = rt.block_on(ike::down(&mut vici, &options)).unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c == "vpn-ctl-fritzbox: terminated and unloaded"),
        "{changes:#?}"
    );
    wait_until_empty("the kernel's SAs on vpn-ctl's side", || xfrm_states(left));
    wait_until_empty("the kernel's IPsec policies on vpn-ctl's side", || {
        xfrm_policies(left)
    });
    assert!(rt.block_on(ike::status(&mut vici)).unwrap().is_empty());
    assert!(rt.block_on(vici.conn_names()).unwrap().is_empty());
    assert!(rt.block_on(vici.shared_ids()).unwrap().is_empty());
    // The FRITZ!Box was told: its SAs are gone too.
    wait_until_empty("the FRITZ!Box side's SAs after the delete", || {
        xfrm_states(right)
    });
}

/// A charon vpn-ctl started is recognised as its own (by the `strongswan.conf` in its
/// environment), and its aggressive-mode setting is switched by rewriting that file and a
/// VICI `reload-settings`; a launch with another directory does not claim it. No peer, no ESP
/// needed (runs on the host too; the guest test above shows the setting at work).
#[test]
fn the_aggressive_mode_setting_of_vpn_ctls_own_charon_follows_the_config() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let charon = Charon::start("vpn-ctl's", &ns, dir.path(), false);
    let _logs = LogsOnFailure(vec![&charon]);
    let conf = dir.path().join("strongswan.conf");
    assert!(
        !fs::read_to_string(&conf)
            .unwrap()
            .contains("aggressive_mode_psk")
    );

    let mut launch = CharonLaunch::new(&charon.socket, dir.path());
    assert!(launch.runs_ours());
    let elsewhere = tempfile::tempdir().unwrap();
    assert!(!CharonLaunch::new(&charon.socket, elsewhere.path()).runs_ours());

    let rt = runtime();
    let mut vici = rt.block_on(Vici::connect(&charon.socket)).unwrap();
    launch.aggressive_psk = true;
    assert!(launch.update_conf().unwrap());
    assert!(
        fs::read_to_string(&conf)
            .unwrap()
            .contains("i_dont_care_about_security_and_use_aggressive_mode_psk = yes")
    );
    rt.block_on(vici.reload_settings()).unwrap();
    assert!(
        !launch.update_conf().unwrap(),
        "nothing to change the second time"
    );
    launch.aggressive_psk = false;
    assert!(launch.update_conf().unwrap());
    assert!(
        !fs::read_to_string(&conf)
            .unwrap()
            .contains("aggressive_mode_psk")
    );
    rt.block_on(vici.reload_settings()).unwrap();
    // Still the same charon, still answering.
    assert!(launch.runs_ours());
    assert!(rt.block_on(vici.version()).unwrap().contains("charon"));
}

/// Renewals with a FRITZ!Box (issue 13): short lifetimes on both sides and a LAN-to-LAN ping
/// a second for 300 s, through `vpn-ctl up` from a config file (vpn-ctl 120 s IKE, 60 s ESP).
/// Long runs: `cargo xtask guest --test ipsec_ike -- --ignored renewals --nocapture`.
///
/// Here the FRITZ!Box re-authenticates first (every 100 s) and rekeys every 80 s. Measured
/// 2026-12-07 with the charon `up` starts answering aggressive mode: 300 of 300 replies, 6 IKE
/// SAs and 7 CHILD SAs established on each side, no AUTH_FAILED (the issue measured 12 of 268
/// lost and two refused FRITZ!Box initiations before).
#[test]
#[ignore = "300 s of traffic under emulation; run by hand while tuning renewals (issue 13)"]
fn renewals_from_both_sides_keep_lan_to_lan_traffic_flowing() {
    renewals(100, 80);
}

/// The same with the FRITZ!Box's lifetimes longer than vpn-ctl's (re-authenticating every 200 s,
/// rekeying every 150 s): vpn-ctl's side renews first. Measured 2026-12-07: 300 of 300
/// replies, 3 IKE SAs and 7 CHILD SAs established on each side, no AUTH_FAILED.
#[test]
#[ignore = "300 s of traffic under emulation; run by hand while tuning renewals (issue 13)"]
fn renewals_started_by_vpn_ctls_side_keep_lan_to_lan_traffic_flowing() {
    renewals(200, 150);
}

/// The two sites of [`two_sites`] and a directory for each side's files (vpn-ctl's config in
/// `dir`, the FRITZ!Box's in `right_dir`); `None` without ESP in the kernel.
struct Sites {
    wan: VethPair,
    _right_lan: Netns,
    left_lan: Netns,
    dir: tempfile::TempDir,
    right_dir: PathBuf,
}

fn sites_with_dirs() -> Option<Sites> {
    if !kernel_has(Feature::Esp) {
        return None;
    }
    let (wan, right_lan, left_lan) = two_sites();
    let dir = tempfile::tempdir().unwrap();
    let right_dir = dir.path().join("fritzbox");
    fs::create_dir(&right_dir).unwrap();
    Some(Sites {
        wan,
        _right_lan: right_lan,
        left_lan,
        dir,
        right_dir,
    })
}

/// The renewal run with the FRITZ!Box side's IKE and CHILD renewal times, seconds.
fn renewals(fritz_ike: u32, fritz_child: u32) {
    let _charon = default_charon();
    let Some(Sites {
        wan,
        left_lan,
        dir,
        right_dir,
        _right_lan,
    }) = sites_with_dirs()
    else {
        return;
    };
    let left = &wan.b;
    let conf = fritzbox_swanctl_conf(wan.a_addr, wan.b_addr)
        .replace("rekey_time = 3600s", &format!("rekey_time = {fritz_ike}s"))
        .replace("life_time = 3600s", &format!("rekey_time = {fritz_child}s"));
    let fritz = fritzbox_with(&wan, &right_dir, conf);
    let _logs = LogsOnFailure(vec![&fritz]);
    let config = fritzbox_config(
        dir.path(),
        wan.a_addr,
        "",
        "ike_lifetime = 120\nesp_lifetime = 60\n",
    );
    let ours_log = our_charons_log_from_now();
    let _stop = StopsCharon;
    let up = left
        .command(env!("CARGO_BIN_EXE_vpn-ctl"))
        .arg("--config")
        .arg(&config)
        .arg("up")
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );

    let started = Instant::now();
    let ping = left_lan
        .command("ping")
        .args(["-D", "-i", "1", "-W", "1", "-w", "300", "192.168.1.10"])
        .output()
        .unwrap();
    let sent = started.elapsed().as_secs();
    let (replies, lost_runs) = losses(&String::from_utf8_lossy(&ping.stdout));
    let lost: u64 = lost_runs.iter().map(|(_, n)| n).sum();
    let ours_log = ours_log();
    let count = |log: &str, what: &str| log.lines().filter(|l| l.contains(what)).count();
    eprintln!(
        "renewals: {} replies in {sent} s, {lost} lost in runs (first seq, length) {lost_runs:?}; \
         vpn-ctl's charon: {} IKE_SAs established, {} CHILD_SAs established, {} AUTH_FAILED; \
         FRITZ!Box: {} IKE_SAs established, {} CHILD_SAs established, {} AUTH_FAILED",
        replies,
        count(&ours_log, "established between"),
        count(&ours_log, "established with SPIs"),
        count(&ours_log, "AUTH_FAILED"),
        count(&fritz.log(), "established between"),
        count(&fritz.log(), "established with SPIs"),
        count(&fritz.log(), "AUTH_FAILED"),
    );
    assert!(
        lost_runs.iter().all(|&(_, n)| n <= 1),
        "an outage of more than one probe: {lost_runs:?}"
    );
}

/// ping's output: how many replies, and the runs of lost probes (first seq, length) between
/// them.
fn losses(ping: &str) -> (usize, Vec<(u64, u64)>) {
    let replies: Vec<u64> = ping
        .lines()
        .filter_map(|l| l.split("icmp_seq=").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    let mut runs = Vec::new();
    let mut expected = 1;
    for &seq in &replies {
        if seq > expected {
            runs.push((expected, seq - expected));
        }
        expected = seq + 1;
    }
    (replies.len(), runs)
}

/// The value of the sample `name{labels}` in a Prometheus exposition.
fn sample(exposition: &str, name_and_labels: &str) -> Option<u64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// Renewals started from each side in turn, on demand (`swanctl --rekey`), with a
/// LAN-to-LAN ping every 0.5 s: three re-authentications and two CHILD rekeys from the
/// FRITZ!Box side, then the same from vpn-ctl's (and for IKEv2 an IKE rekey from each). At
/// most one lost probe per renewal, no AUTH_FAILED in either log, and the daemon logs and
/// counts every renewal. Then the failures: the FRITZ!Box gets another key and vpn-ctl's
/// side re-authenticates (the daemon says it failed and why, and counts it), and with the key
/// back the tunnel returns by itself. For IKEv1, last: vpn-ctl's charon dies and its SAs are
/// lost while the FRITZ!Box side holds its own; the FRITZ!Box finds the peer dead (DPD) and
/// initiates while `vpn-ctl up` restarts charon, and that charon answers it.
fn renewals_in_turn(ikev2: bool) {
    let _charon = default_charon();
    let Some(Sites {
        wan,
        left_lan,
        dir,
        right_dir,
        _right_lan,
    }) = sites_with_dirs()
    else {
        return;
    };
    let left = &wan.b;
    // The FRITZ!Box keeps its tunnel up by itself: it probes the peer and starts again when
    // it is dead, forever.
    let mut conf = fritzbox_swanctl_conf(wan.a_addr, wan.b_addr)
        .replace(
            "dpd_delay = 30s",
            "dpd_delay = 5s\n        dpd_timeout = 15s\n        keyingtries = 0",
        )
        .replace(
            "life_time = 3600s",
            "life_time = 3600s\n                dpd_action = restart",
        );
    if ikev2 {
        conf = conf.replace("version = 1\n        aggressive = yes", "version = 2");
    }
    let fritz = fritzbox_with(&wan, &right_dir, conf.clone());
    let _logs = LogsOnFailure(vec![&fritz]);
    let metrics: std::net::SocketAddr = "127.0.0.1:9586".parse().unwrap();
    let config = fritzbox_config(
        dir.path(),
        wan.a_addr,
        &format!("[daemon]\nmetrics_listen = \"{metrics}\"\nxdp = \"off\"\n\n"),
        "watchdog_probe = \"192.168.1.10\"\n",
    );
    if ikev2 {
        let text = fs::read_to_string(&config).unwrap();
        fs::write(&config, text.replace("ikev1-aggressive", "ikev2")).unwrap();
    }
    let _stop = StopsCharon;
    let ours_log = our_charons_log_from_now();
    cli::vpn_ctl(left, &config, &["up"]);
    let ours = Path::new(ike::DEFAULT_SOCKET);
    let daemon = Daemon::start(left, &config, dir.path(), None, None);
    daemon.wait_log(0, "renewal events: following charon", TIMEOUT);

    let ping = left_lan
        .command("ping")
        .args(["-D", "-i", "0.5", "-W", "1", "192.168.1.10"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let said = |what: &str| daemon.log().matches(what).count();
    // Renewed SAs do not pile up: each side is back to one IKE SA once the old ones are
    // deleted (and a `--rekey --ike` renews that one alone).
    let ike_sas = |socket: &Path| {
        let list = swanctl(socket, &["--list-sas"]);
        let n = list
            .lines()
            .filter(|l| l.contains(": #") && l.contains("IKEv"))
            .count();
        (n, list)
    };
    let settled = || {
        let start = Instant::now();
        loop {
            let ((a, ours_list), (b, fritz_list)) = (ike_sas(ours), ike_sas(&fritz.socket));
            if a == 1 && b == 1 {
                return;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "IKE SAs pile up: vpn-ctl {a}, FRITZ!Box {b}\n{ours_list}\n{fritz_list}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    // Runs `swanctl --rekey ARGS` and waits for the daemon to log `what` once more.
    let renew = |socket: &Path, args: &[&str], what: &str| {
        settled();
        let before = said(what);
        let mut all = vec!["--rekey"];
        all.extend_from_slice(args);
        swanctl(socket, &all);
        wait_for(
            TIMEOUT,
            &format!("the daemon to log {what:?} after {args:?}"),
            || (said(what) > before).then_some(()),
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    let mut renewals = 0;
    for (socket, name) in [
        (fritz.socket.as_path(), "fritzbox"),
        (ours, "vpn-ctl-fritzbox"),
    ] {
        for _ in 0..3 {
            renew(socket, &["--ike", name, "--reauth"], "re-authenticated");
            renewals += 1;
        }
        if ikev2 {
            renew(socket, &["--ike", name], "IKE SA rekeyed");
            renewals += 1;
        }
        for _ in 0..2 {
            renew(socket, &["--child", name], "CHILD SA rekeyed");
            renewals += 1;
        }
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(ping.id() as i32, libc::SIGINT) };
    settled();
    let out = ping.wait_with_output().unwrap();
    let (replies, lost_runs) = losses(&String::from_utf8_lossy(&out.stdout));
    let lost: u64 = lost_runs.iter().map(|(_, n)| n).sum();
    eprintln!(
        "renewals in turn ({}): {renewals} renewals, {replies} replies, {lost} lost in runs \
         (first seq, length) {lost_runs:?}",
        if ikev2 { "IKEv2" } else { "IKEv1 aggressive" }
    );
    assert!(
        lost_runs.iter().all(|&(_, n)| n <= 1) && lost <= renewals,
        "more than one lost probe per renewal: {lost_runs:?}\n--- daemon ---\n{}",
        daemon.log()
    );
    for (who, log) in [("vpn-ctl's charon", ours_log()), ("FRITZ!Box", fritz.log())] {
        assert!(!log.contains("AUTH_FAILED"), "{who}: AUTH_FAILED\n{log}");
    }
    let log = daemon.log();
    assert!(
        log.contains("re-authenticated (started by the other side)")
            && log.contains("re-authenticated (started by this side)"),
        "{log}"
    );
    let scrape = cli::http_get(left, metrics, "/metrics").expect("the daemon's metrics");
    let count = |family: &str, kind: &str| {
        sample(
            &scrape,
            &format!("{family}{{site=\"fritzbox\",kind=\"{kind}\"}}"),
        )
        .unwrap_or_else(|| panic!("no {family} {kind} in\n{scrape}"))
    };
    assert!(
        count("vpnctl_ipsec_renewals_total", "ike_reauth") >= 6,
        "{scrape}"
    );
    assert!(
        count("vpnctl_ipsec_renewals_total", "child_rekey") >= 4,
        "{scrape}"
    );
    if ikev2 {
        assert!(
            count("vpnctl_ipsec_renewals_total", "ike_rekey") >= 2,
            "{scrape}"
        );
    }
    for kind in ["ike_reauth", "ike_rekey", "child_rekey"] {
        assert_eq!(
            count("vpnctl_ipsec_renewal_failures_total", kind),
            0,
            "{scrape}"
        );
    }

    // A re-authentication the FRITZ!Box refuses: said, with the reason, and counted.
    let wrong = right_dir.join("wrong.conf");
    fs::write(&wrong, conf.replace(PSK, "another key")).unwrap();
    swanctl(
        &fritz.socket,
        &[
            "--load-creds",
            "--noprompt",
            "--file",
            wrong.to_str().unwrap(),
        ],
    );
    let mark = daemon.log().len();
    let _ = std::process::Command::new("swanctl")
        .args(["--rekey", "--ike", "vpn-ctl-fritzbox", "--reauth"])
        .output();
    let line = daemon.wait_log(mark, "re-authentication failed", TIMEOUT);
    assert!(line.contains("(started by this side)"), "{line}");
    // The reason, in that line or (when charon's log line came after the SA ended) the next.
    let reason = daemon.wait_log(mark, "pre-shared key", TIMEOUT);
    assert!(
        reason.contains("re-authentication failed") || reason.contains("failed because"),
        "the reason: {reason}"
    );
    let scrape = cli::http_get(left, metrics, "/metrics").unwrap();
    assert!(count_in(&scrape, "ike_reauth") >= 1, "{scrape}");
    // The key back: the tunnel returns without anyone's help.
    let right_conf = right_dir.join("swanctl.conf");
    swanctl(
        &fritz.socket,
        &[
            "--load-creds",
            "--noprompt",
            "--file",
            right_conf.to_str().unwrap(),
        ],
    );
    wait_for(
        Duration::from_secs(180),
        "the tunnel back with the right key",
        || {
            left_lan
                .command("ping")
                .args(["-c", "1", "-W", "2", "192.168.1.10"])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success()
                .then_some(())
        },
    );
    drop(daemon);
    if ikev2 {
        return;
    }

    // vpn-ctl's side loses everything (charon killed, the kernel's SAs and policies gone, as
    // after a crash or a reboot); the FRITZ!Box still has its SAs, finds the peer dead and
    // initiates, while `vpn-ctl up` starts charon again.
    let pid: i32 = fs::read_to_string(ike::charon::PID_FILE)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) with the pid from charon's pid file.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_for(TIMEOUT, "the killed charon to go", || {
        // SAFETY: signal 0 only checks that the process exists.
        (unsafe { libc::kill(pid, 0) } != 0).then_some(())
    });
    left.ip(&["xfrm", "state", "flush"]);
    left.ip(&["xfrm", "policy", "flush"]);
    let fritz_mark = fritz.log().len();
    wait_for(TIMEOUT, "the FRITZ!Box to initiate again after DPD", || {
        fritz.log()[fritz_mark..]
            .contains("initiating Aggressive Mode IKE_SA")
            .then_some(())
    });
    let ours_mark = ours_log().len();
    cli::vpn_ctl(left, &config, &["up"]);
    wait_for(
        TIMEOUT,
        "vpn-ctl's new charon to answer the FRITZ!Box",
        || {
            let log = ours_log();
            log.get(ours_mark..)
                .is_some_and(|l| l.contains("is initiating a Aggressive Mode IKE_SA"))
                .then_some(())
        },
    );
    run(left_lan
        .command("ping")
        .args(["-c", "2", "-i", "0.5", "-W", "5", "192.168.1.10"]));
    let ours_after = ours_log();
    let answered = &ours_after[ours_mark..];
    assert!(
        !answered.contains("AUTH_FAILED") && !answered.contains("Aggressive Mode PSK disabled"),
        "{answered}"
    );
    assert!(!fritz.log()[fritz_mark..].contains("AUTH_FAILED"));
    cli::vpn_ctl(left, &config, &["down"]);
}

/// The failures counter of `kind` in a scrape.
fn count_in(scrape: &str, kind: &str) -> u64 {
    sample(
        scrape,
        &format!("vpnctl_ipsec_renewal_failures_total{{site=\"fritzbox\",kind=\"{kind}\"}}"),
    )
    .unwrap_or(0)
}

#[test]
fn renewals_in_turn_with_a_fritzbox_ikev1_aggressive() {
    renewals_in_turn(false);
}

#[test]
fn renewals_in_turn_with_a_fritzbox_ikev2() {
    renewals_in_turn(true);
}

/// What vpn-ctl loads is what charon takes: one charon, no peer, no ESP needed (runs on the
/// host too).
#[test]
fn charon_takes_vpn_ctls_connection_and_key_and_gives_them_back() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let charon = Charon::start("vpn-ctl's", &ns, dir.path(), false);
    let _logs = LogsOnFailure(vec![&charon]);
    let rt = runtime();
    let mut vici = rt.block_on(Vici::connect(&charon.socket)).unwrap();

    let site = left_site(Ipv4Addr::new(192, 0, 2, 1));
    let conn = ike::Connection::from_site(&site).unwrap();
    rt.block_on(vici.load_shared(&conn.shared)).unwrap();
    rt.block_on(vici.load_conn(&conn.name, &conn.body)).unwrap();

    assert_eq!(
        rt.block_on(vici.conn_names()).unwrap(),
        ["vpn-ctl-fritzbox"]
    );
    assert_eq!(
        rt.block_on(vici.shared_ids()).unwrap(),
        ["vpn-ctl-fritzbox"]
    );
    let loaded = rt.block_on(vici.list_conns(Some(&conn.name))).unwrap();
    assert_eq!(loaded.len(), 1, "{loaded:#?}");
    // Everything charon shows of it is what the site says.
    assert_eq!(
        conn.differences_from_loaded(&loaded[0]),
        Vec::<String>::new(),
        "{loaded:#?}"
    );
    // So with the record of this load, `up` would leave it alone (but initiate: no SA).
    let record = conn.record().unwrap();
    let plan = ike::plan_site(&conn, &record, Some(&loaded[0]), Some(&record), true, &[]);
    assert_eq!((plan.load, plan.sa), (None, ike::SaAction::Initiate));

    // Nothing else is touched: a connection without the prefix survives `down`.
    let mut other = site.clone();
    other.name = "x".into();
    other.local_subnets = vec!["10.1.0.0/24".parse().unwrap()];
    let other = ike::Connection::from_site(&other).unwrap();
    rt.block_on(vici.load_conn("home", &other.body)).unwrap();

    let options = UpOptions {
        state_dir: dir.path().join("state"),
        timeout: Duration::from_secs(10),
    };
    // `up` with the site gone from the config removes it, and only it.
    let changes = rt.block_on(ike::up(&mut vici, &[], &options)).unwrap();
    assert_eq!(
        changes,
        ["vpn-ctl-fritzbox: removed (its site left the config)"]
    );
    assert_eq!(rt.block_on(vici.conn_names()).unwrap(), ["home"]);
    assert!(rt.block_on(vici.shared_ids()).unwrap().is_empty());
    // So `down` finds nothing of vpn-ctl's left.
    let changes = rt.block_on(ike::down(&mut vici, &options)).unwrap();
    assert_eq!(changes, Vec::<String>::new());
    assert_eq!(rt.block_on(vici.conn_names()).unwrap(), ["home"]);
}

/// A wrong pre-shared key: `up` fails with charon's reason, its log of the attempt and a hint
/// in plain words, and never with the key. (IKE fails before any ESP SA: runs on the host.)
#[test]
fn a_wrong_key_fails_with_charons_reason_and_a_hint() {
    let wan = VethPair::new();
    let dir = tempfile::tempdir().unwrap();
    let (right_dir, left_dir) = (dir.path().join("fritzbox"), dir.path().join("vpn-ctl"));
    fs::create_dir(&right_dir).unwrap();
    fs::create_dir(&left_dir).unwrap();
    let fritz = fritzbox(&wan, &right_dir);
    let ours = Charon::start("vpn-ctl's", &wan.b, &left_dir, false);
    let _logs = LogsOnFailure(vec![&fritz, &ours]);

    let mut site = left_site(wan.a_addr);
    let Keying::Ike(ike_keying) = &mut site.keying else {
        unreachable!()
    };
    ike_keying.psk = SecretBytes::new(b"NotTheFritzBoxKey".to_vec());
    let rt = runtime();
    let mut vici = rt.block_on(Vici::connect(&ours.socket)).unwrap();
    let options = UpOptions {
        state_dir: left_dir.join("state"),
        timeout: TIMEOUT,
    };
    let err = rt
        .block_on(ike::up(&mut vici, &[site], &options))
        .expect_err("up with a wrong key succeeded");
    let text = format!("{err:#}");
    assert!(text.contains("vpn-ctl-fritzbox did not come up"), "{text}");
    // In aggressive mode the initiator checks the responder's hash, keyed with the PSK.
    assert!(text.contains("calculated HASH does not match"), "{text}");
    assert!(text.contains("help: the pre-shared keys differ"), "{text}");
    // What had been done before the failure is said too.
    assert!(text.contains("loaded into charon"), "{text}");
    assert!(!text.contains("NotTheFritzBoxKey"), "{text}");
    assert!(rt.block_on(ike::status(&mut vici)).unwrap().is_empty());
}

/// Stops the charon `vpn-ctl up` started (it outlives the command, as on a router) when the
/// test ends, however it ends.
struct StopsCharon;

impl Drop for StopsCharon {
    fn drop(&mut self) {
        if let Some(pid) = fs::read_to_string(ike::charon::PID_FILE)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            // SAFETY: kill(2) with a pid read from charon's pid file.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

/// The same FRITZ!Box profile through the command line, as a user runs it: `vpn-ctl up`
/// reads the site from the config file, starts charon itself (default socket and
/// directories), installs the firewall openings (`firewall = "manage"`), and `status`,
/// `down` work on what it made.
#[test]
fn vpn_ctl_up_brings_a_fritzbox_site_up_from_the_config_file() {
    let _charon = default_charon();
    let Some(Sites {
        wan,
        left_lan,
        dir,
        right_dir,
        _right_lan,
    }) = sites_with_dirs()
    else {
        return;
    };
    let left = &wan.b;
    let fritz = fritzbox(&wan, &right_dir);
    let _logs = LogsOnFailure(vec![&fritz]);

    let config = fritzbox_config(
        dir.path(),
        wan.a_addr,
        &format!(
            "[router]\nwan = \"{}\"\nlan = [\"192.168.2.0/24\"]\nfirewall = \"manage\"\n\n",
            wan.b_dev
        ),
        "watchdog_probe = \"192.168.1.10\"\n",
    );
    let vpn_ctl = |args: &[&str]| cli::vpn_ctl_texts(left, &config, args);

    let _stop = StopsCharon;
    let (up, warnings) = vpn_ctl(&["up"]);
    assert!(
        up.contains("IKE: no charon was running: started one"),
        "{up}"
    );
    assert!(up.contains("vpn-ctl-fritzbox: established"), "{up}");
    assert!(
        up.contains("firewall: table inet vpn_ctl with") && up.contains("esp udp/500 udp/4500"),
        "{up}"
    );
    assert!(warnings.contains("uses weak algorithms"), "{warnings}");
    assert!(
        warnings.contains("fritzbox: IKEv1 aggressive mode with a pre-shared key"),
        "{warnings}"
    );
    assert!(!warnings.contains("firewall:"), "{warnings}");

    run(left_lan
        .command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "5", "192.168.1.10"]));
    let (status, _) = vpn_ctl(&["status"]);
    assert!(status.contains("vpn-ctl-fritzbox"), "{status}");
    assert!(
        status.contains("firewall: nothing in the ruleset blocks the tunnels"),
        "{status}"
    );
    let (json, _) = vpn_ctl(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let children = &json["ike"][0]["children"][0];
    assert!(children["packets_out"].as_u64().unwrap() >= 3, "{json:#}");
    assert!(children["packets_in"].as_u64().unwrap() >= 3, "{json:#}");

    let (again, _) = vpn_ctl(&["up"]);
    assert_eq!(
        again.trim(),
        "everything already matches the config; nothing changed"
    );
    // The charon `up` started answers the FRITZ!Box's own initiations (aggressive mode).
    let answered = fritz_initiates(&fritz, Path::new(ike::DEFAULT_SOCKET));
    assert!(answered.status.success(), "{}", text(answered));
    run(left_lan
        .command("ping")
        .args(["-c", "2", "-i", "0.2", "-W", "5", "192.168.1.10"]));
    let (down, _) = vpn_ctl(&["down"]);
    assert!(down.contains("removed table inet vpn_ctl"), "{down}");
    wait_until_empty("vpn-ctl's SAs after down", || xfrm_states(left));
    wait_until_empty("vpn-ctl's policies after down", || xfrm_policies(left));
}
