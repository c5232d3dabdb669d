//! Faults a router meets, run against the real binary (issue 12): a config cut short by a power
//! loss, `up` killed at any point, output into a closed pipe.
//!
//! Each test runs in its own network namespace, on kernel WireGuard where the kernel has it
//! (the QEMU guest) and on vpn-ctl's userspace backend elsewhere (`--backend auto`), with an
//! interface name unique to the test (the userspace backend's UAPI sockets are not per
//! namespace).

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

#[path = "common/cli.rs"]
#[allow(dead_code, reason = "shared by the end-to-end tests; each uses some")]
mod cli;

use cli::{VPN_CTL, base64, stdout, vpn_ctl};
use vpn_ctl_tests::{Netns, kernel::Feature, run, unique_name};

/// A namespace and a directory with a key and a config for one interface with `peers` peers.
struct Router {
    ns: Netns,
    dir: tempfile::TempDir,
    config: PathBuf,
    iface: String,
}

impl Router {
    fn new(peers: usize) -> Router {
        let ns = Netns::new();
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("wg.key");
        fs::write(&key, stdout(run(Command::new(VPN_CTL).arg("genkey")))).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        let router = Router {
            ns,
            config: dir.path().join("vpn.toml"),
            dir,
            iface: unique_name("hw"),
        };
        fs::write(&router.config, router.config_text(peers)).unwrap();
        router
    }

    /// `[wireguard.IFACE]` with `peers` peers (keys derived from the index, so stable).
    fn config_text(&self, peers: usize) -> String {
        let iface = &self.iface;
        let mut text = format!(
            "[wireguard.{iface}]\nprivate_key_file = \"wg.key\"\nlisten_port = 51820\n\
             addresses = [\"10.9.0.1/16\"]\n"
        );
        for i in 0..peers {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&(i as u32 + 1).to_be_bytes());
            key[31] = 0x42;
            text.push_str(&format!(
                "\n[[wireguard.{iface}.peers]]\nname = \"peer{i}\"\npublic_key = \"{}\"\n\
                 allowed_ips = [\"10.9.{}.{}/32\"]\npersistent_keepalive = 25\n",
                base64(&key),
                (i + 2) / 250,
                (i + 2) % 250 + 2,
            ));
        }
        text
    }

    /// `vpn-ctl up` in the background, its output discarded (to be killed).
    fn spawn_up(&self) -> std::process::Child {
        self.ns
            .command(VPN_CTL)
            .arg("--config")
            .arg(&self.config)
            .arg("up")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn vpn_ctl(&self, args: &[&str]) -> Output {
        self.ns
            .command(VPN_CTL)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// The peers the device has, as `vpn-ctl status --json` with `config` reads them; `None`
    /// when the link does not exist.
    fn device_peers(&self, config: &Path) -> Option<usize> {
        let status = vpn_ctl(&self.ns, config, &["status", "--json"]);
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        let iface = &status["wireguard"][0];
        iface["backend"]
            .as_str()
            .map(|_| iface["peers"].as_array().unwrap().len())
    }

    fn link_exists(&self) -> bool {
        let out = self
            .ns
            .command("ip")
            .args(["link", "show", &self.iface])
            .output()
            .unwrap();
        out.status.success()
    }

    /// Nothing of the interface left: no link, no userspace device process or socket, no
    /// creation record.
    fn assert_nothing_left(&self) {
        assert!(!self.link_exists(), "link {} left behind", self.iface);
        let socket = format!("/var/run/wireguard/{}.sock", self.iface);
        assert!(!Path::new(&socket).exists(), "{socket} left behind");
        let pgrep = Command::new("pgrep")
            .args(["-f", &format!("userspace-device {}$", self.iface)])
            .output()
            .unwrap();
        assert!(
            pgrep.stdout.is_empty(),
            "device process left behind: {}",
            String::from_utf8_lossy(&pgrep.stdout)
        );
        let records: Vec<_> = fs::read_dir("/run/vpn-ctl/creating")
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(&format!("-{}", self.iface)))
                    .collect()
            })
            .unwrap_or_default();
        assert!(records.is_empty(), "creation records left: {records:?}");
        let tables = self
            .ns
            .command("nft")
            .args(["list", "tables"])
            .output()
            .unwrap();
        let tables = String::from_utf8_lossy(&tables.stdout);
        assert!(!tables.contains("vpn_ctl"), "nftables table left: {tables}");
        for object in ["state", "policy"] {
            let listed = self
                .ns
                .command("ip")
                .args(["xfrm", object, "list"])
                .output()
                .unwrap();
            assert!(
                listed.stdout.is_empty(),
                "XFRM {object} left: {}",
                String::from_utf8_lossy(&listed.stdout)
            );
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        // Whatever a failed assertion left: the device process outlives the namespace.
        let _ = self.vpn_ctl(&["down"]);
        let _ = Command::new("pkill")
            .args(["-f", &format!("userspace-device {}$", self.iface)])
            .status();
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `up` refused, with `needle` in its message, and the device still has its `peers`.
fn assert_refused(router: &Router, full: &Path, needle: &str, peers: usize) {
    let out = router.vpn_ctl(&["up"]);
    assert!(!out.status.success(), "up accepted it:\n{}", text(&out));
    let message = text(&out);
    assert!(message.contains(needle), "{message}");
    assert!(message.contains("nothing was changed"), "{message}");
    assert_eq!(router.device_peers(full), Some(peers), "{message}");
}

#[test]
fn a_config_cut_short_never_takes_the_tunnel_down() {
    let router = Router::new(3);
    let full_text = fs::read_to_string(&router.config).unwrap();
    let full = router.dir.path().join("full.toml");
    fs::write(&full, &full_text).unwrap();
    let applied = vpn_ctl(&router.ns, &router.config, &["up"]);
    assert!(applied.contains("created the link"), "{applied}");
    assert_eq!(router.device_peers(&full), Some(3));

    // A power cut while the file was written: empty (ext4's zero-length file).
    fs::write(&router.config, "").unwrap();
    assert_refused(&router, &full, "declares no WireGuard interface", 3);

    // Cut inside [wireguard.NAME], before its first peer, at a line boundary.
    let interface_only = &full_text[..full_text.find("\n[[").unwrap() + 1];
    fs::write(&router.config, interface_only).unwrap();
    assert_refused(&router, &full, "lists no peers", 3);

    // Cut inside a line of a second interface's section: that interface parses, the first's
    // link would be deleted; the missing final newline gives the cut away.
    let other = format!(
        "[wireguard.{}x]\nprivate_key_file = \"wg.key\"\nlisten_port = 518",
        router.iface
    );
    fs::write(&router.config, &other).unwrap();
    assert_refused(&router, &full, "ends inside a line", 3);

    // What the user means on purpose still works: `peers = []` removes the peers, `down` with
    // an emptied config removes the link.
    fs::write(&router.config, format!("{interface_only}peers = []\n")).unwrap();
    let applied = vpn_ctl(&router.ns, &router.config, &["up"]);
    assert!(applied.contains("remove peer"), "{applied}");
    assert_eq!(router.device_peers(&full), Some(0));
    fs::write(&router.config, "").unwrap();
    let removed = vpn_ctl(&router.ns, &router.config, &["down"]);
    assert!(removed.contains("deleted the link"), "{removed}");
    router.assert_nothing_left();
}

#[test]
fn the_daemon_keeps_the_tunnel_when_the_config_is_emptied() {
    let router = Router::new(2);
    let full = router.dir.path().join("full.toml");
    fs::copy(&router.config, &full).unwrap();
    run(router
        .ns
        .command(VPN_CTL)
        .arg("--config")
        .arg(&router.config)
        .arg("up"));

    // Emptied, then the daemon starts (a reboot after a power cut, with the link restored by
    // hand or still up), and later gets SIGHUP.
    let log = router.dir.path().join("daemon.log");
    let log_file = fs::File::create(&log).unwrap();
    fs::write(
        &router.config,
        "[daemon]\nmetrics_listen = \"off\"\nxdp = \"off\"\n",
    )
    .unwrap();
    let mut daemon = router
        .ns
        .command(VPN_CTL)
        .arg("--config")
        .arg(&router.config)
        .arg("daemon")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let refused = wait_for_log(
        &log,
        "declares no WireGuard interface",
        Duration::from_secs(20),
    );
    assert!(
        refused,
        "no refusal in the daemon's log:\n{}",
        fs::read_to_string(&log).unwrap()
    );
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(daemon.id() as i32, libc::SIGHUP) }, 0);
    std::thread::sleep(Duration::from_secs(2));
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
    assert_eq!(router.device_peers(&full), Some(2));
    let _ = daemon.kill();
    let _ = daemon.wait();
}

fn wait_for_log(log: &Path, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if fs::read_to_string(log).is_ok_and(|l| l.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// `kill -9` of `up` at many points of a large apply: the next `up` converges (adopting a link
/// the killed one created but had not marked yet), and `down` leaves nothing behind.
#[test]
fn up_killed_at_any_point_leaves_nothing_stranded() {
    // Fewer in the QEMU guest (kernel WireGuard), where emulation makes each `up` ~10x slower.
    let (peers, steps, at_creation): (usize, u32, u32) = if Feature::WireGuard.available() {
        (150, 5, 2)
    } else {
        (400, 12, 3)
    };
    let router = Router::new(peers);
    let full = router.config.clone();
    // The firewall openings too, and a static IPsec site where the kernel has ESP (the guest).
    let mut config = format!(
        "[router]\nfirewall = \"manage\"\n\n{}",
        router.config_text(peers)
    );
    if Feature::Esp.available() {
        for (name, byte) in [("site-out.key", "5a"), ("site-in.key", "a5")] {
            let path = router.dir.path().join(name);
            fs::write(&path, format!("{}\n", byte.repeat(36))).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        config.push_str(
            "\n[ipsec.office]\nkeying = \"static\"\nlocal_gateway = \"198.51.100.1\"\n\
             remote_gateway = \"203.0.113.1\"\nlocal_subnets = [\"192.168.2.0/24\"]\n\
             remote_subnets = [\"192.168.3.0/24\"]\nesp = \"aes256gcm16\"\n\
             spi_out = 0x1001\nspi_in = 0x1002\nkey_out_file = \"site-out.key\"\n\
             key_in_file = \"site-in.key\"\n",
        );
    }
    fs::write(&router.config, config).unwrap();
    let mut killed_while_running = 0;
    let mut adopted = 0;
    // Kill points spread over the whole of one `up` as timed here (the guest is far slower),
    // after one untimed round that loads the kernel modules.
    assert!(router.vpn_ctl(&["up"]).status.success());
    assert!(router.vpn_ctl(&["down"]).status.success());
    let started = Instant::now();
    let out = router.vpn_ctl(&["up"]);
    assert!(out.status.success(), "{}", text(&out));
    let whole = started.elapsed();
    assert!(router.vpn_ctl(&["down"]).status.success());
    for step in 0..steps {
        let delay = whole * step / steps;
        let mut child = router.spawn_up();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed_while_running += 1;
        }
        let _ = child.kill();
        let _ = child.wait();

        let out = router.vpn_ctl(&["up"]);
        assert!(
            out.status.success(),
            "up after a kill at {delay:?} failed:\n{}",
            text(&out)
        );
        if text(&out).contains("adopted the link") {
            adopted += 1;
        }
        // A second `up` that finds nothing to change: the device, addresses, routes, SAs and
        // firewall all match the config.
        let again = router.vpn_ctl(&["up"]);
        assert!(
            String::from_utf8_lossy(&again.stdout).contains("nothing changed"),
            "a second up after a kill at {delay:?} changed something:\n{}",
            text(&again)
        );
        let out = router.vpn_ctl(&["down"]);
        assert!(
            out.status.success(),
            "down after a kill at {delay:?} failed:\n{}",
            text(&out)
        );
        router.assert_nothing_left();
        eprintln!("killed `up` after {delay:?} of {whole:?}: converged, then nothing left");
    }
    // And the moment the link appears: before `up` has marked it (the userspace backend's
    // link exists for ~100 ms before its device answers; the kernel's gap is far shorter).
    let mut caught = 0;
    for _ in 0..at_creation {
        let mut child = router.spawn_up();
        let name = std::ffi::CString::new(router.iface.clone()).unwrap();
        caught += u32::from(router.ns.enter(|| {
            loop {
                // SAFETY: a NUL-terminated name; if_nametoindex only reads it.
                if unsafe { libc::if_nametoindex(name.as_ptr()) } != 0 {
                    let _ = child.kill();
                    return true;
                }
                if child.try_wait().unwrap().is_some() {
                    return false;
                }
            }
        }));
        let _ = child.wait();
        let out = router.vpn_ctl(&["up"]);
        assert!(
            out.status.success(),
            "up after a kill at link creation failed:\n{}",
            text(&out)
        );
        if text(&out).contains("adopted the link") {
            adopted += 1;
        }
        assert_eq!(router.device_peers(&full), Some(peers));
        assert!(router.vpn_ctl(&["down"]).status.success());
        router.assert_nothing_left();
    }
    eprintln!(
        "killed `up` mid-run {killed_while_running} of {steps} times, and {caught} of {at_creation} times as \
         its link appeared; the next `up` adopted an unmarked link {adopted} times"
    );
    if !Feature::WireGuard.available() {
        // The userspace backend: the link stays unmarked long enough to be caught every time.
        assert!(
            adopted >= 1,
            "no kill landed between the link's creation and its mark"
        );
    }
    assert!(
        killed_while_running >= steps / 2,
        "the kills came too late to test anything"
    );
}

/// `vpn-ctl ... | head`: the reader goes away; the command ends quietly, as `wg` does.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let router = Router::new(50);
    for args in [&["genkey"][..], &["status"], &["status", "--json"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = router
            .ns
            .command(VPN_CTL)
            .arg("--config")
            .arg(&router.config)
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {} {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?} said: {stderr}");
    }
}
