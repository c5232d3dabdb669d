//! No secret leaves the files that hold it (issue 12): every command and the daemon run at the
//! most verbose log level with known keys, and everything they print, log, serve as metrics or
//! write (other than the 0600 key files) is searched for each key in base64, in hex, and for
//! either half of either form.
//!
//! The keys: the router's private key, a peer's preshared key, the keys of the wg-quick and UCI
//! files it imports, and (where the kernel has ESP: the QEMU guest) a static IPsec site's keys.
//! Output that is a secret by design is not searched for it: `peer add` prints the new
//! device's keys, which are not among the known ones.

use std::{
    fs,
    net::SocketAddr,
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use vpn_ctl_tests::{VethPair, kernel::Feature, run, unique_name};

#[path = "common/cli.rs"]
#[allow(dead_code, reason = "shared by the end-to-end tests; each uses some")]
mod cli;

use cli::{ALPHABET, VPN_CTL, base64, http_get, pubkey};

/// A secret and the forms it could leak in.
struct Known {
    what: &'static str,
    forms: Vec<String>,
}

impl Known {
    fn new(what: &'static str, bytes: &[u8]) -> Known {
        let b64 = base64(bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut forms = Vec::new();
        for text in [b64.trim_end_matches('='), &hex, &hex.to_uppercase()] {
            let half = text.len() / 2;
            forms.extend([
                text.to_string(),
                text[..half].to_string(),
                text[half..].to_string(),
            ]);
        }
        Known { what, forms }
    }

    /// A key as `wg genkey` writes it (base64 of 32 bytes).
    fn key(what: &'static str, base64_text: &str) -> Known {
        Known::new(what, &unbase64(base64_text.trim()))
    }

    fn find_in(&self, text: &str) -> Option<&str> {
        self.forms
            .iter()
            .find(|f| text.contains(f.as_str()))
            .map(String::as_str)
    }
}

struct Search {
    known: Vec<Known>,
    searched: usize,
}

impl Search {
    fn check(&mut self, source: &str, text: &str) {
        self.searched += 1;
        for known in &self.known {
            if let Some(form) = known.find_in(text) {
                panic!(
                    "{source} shows {} (as {form:?}):\n{}",
                    known.what,
                    text.chars().take(4000).collect::<String>()
                );
            }
        }
    }

    fn check_output(&mut self, command: &str, out: &Output) {
        self.check(
            &format!("`{command}` stdout"),
            &String::from_utf8_lossy(&out.stdout),
        );
        self.check(
            &format!("`{command}` stderr"),
            &String::from_utf8_lossy(&out.stderr),
        );
    }

    /// Every file under `dir` that others may read (key files are 0600).
    fn check_files(&mut self, dir: &Path) {
        for entry in fs::read_dir(dir).unwrap().filter_map(Result::ok) {
            let path = entry.path();
            let meta = fs::metadata(&path).unwrap();
            if meta.is_dir() {
                self.check_files(&path);
            } else if meta.permissions().mode() & 0o077 != 0 {
                let text = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
                self.check(&path.display().to_string(), &text);
            }
        }
    }
}

fn secret_file(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

fn genkey(command: &str) -> String {
    String::from_utf8(run(Command::new(VPN_CTL).arg(command)).stdout)
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn no_command_or_the_daemon_shows_a_secret() {
    let net = VethPair::new();
    let router = &net.b;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let iface = unique_name("sec");

    let router_key = genkey("genkey");
    let phone_psk = genkey("genpsk");
    let phone_public = pubkey(&genkey("genkey"));
    secret_file(&root.join("wg.key"), &format!("{router_key}\n"));
    secret_file(&root.join("phone.psk"), &format!("{phone_psk}\n"));
    let mut known = vec![
        Known::key("the router's private key", &router_key),
        Known::key("the phone's preshared key", &phone_psk),
    ];

    let mut config = format!(
        "[router]\nwan = \"{wan}\"\nlan = [\"192.168.1.0/24\"]\n\n\
         [daemon]\nmetrics_listen = \"127.0.0.1:9586\"\nxdp = \"count\"\n\n\
         [wireguard.{iface}]\nprivate_key_file = \"wg.key\"\nlisten_port = 51820\n\
         addresses = [\"10.8.0.1/24\"]\npublic_endpoint = \"{wan_addr}:51820\"\n\n\
         [[wireguard.{iface}.peers]]\nname = \"phone\"\npublic_key = \"{phone_public}\"\n\
         preshared_key_file = \"phone.psk\"\nallowed_ips = [\"10.8.0.2/32\"]\n",
        wan = net.b_dev,
        wan_addr = net.b_addr,
    );
    // Only a condition here, not a reason to skip (the guest has ESP, the host runs the rest).
    if Feature::Esp.available() {
        let out_key: Vec<u8> = (0..36).map(|i| (i * 7 + 3) as u8).collect();
        let in_key: Vec<u8> = (0..36).map(|i| (i * 11 + 5) as u8).collect();
        for (name, key) in [("site-out.key", &out_key), ("site-in.key", &in_key)] {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            secret_file(&root.join(name), &format!("{hex}\n"));
        }
        known.push(Known::new("the site's outbound ESP key", &out_key));
        known.push(Known::new("the site's inbound ESP key", &in_key));
        config.push_str(&format!(
            "\n[ipsec.office]\nkeying = \"static\"\nlocal_gateway = \"{}\"\n\
             remote_gateway = \"{}\"\nlocal_subnets = [\"192.168.1.0/24\"]\n\
             remote_subnets = [\"192.168.3.0/24\"]\nesp = \"aes256gcm16\"\nspi_out = 0x1001\n\
             spi_in = 0x1002\nkey_out_file = \"site-out.key\"\nkey_in_file = \"site-in.key\"\n",
            net.b_addr, net.a_addr
        ));
    }
    let config_path = root.join("vpn.toml");
    fs::write(&config_path, &config).unwrap();

    // Files to import, with keys of their own.
    let wg_private = genkey("genkey");
    let wg_psk = genkey("genpsk");
    let uci_private = genkey("genkey");
    let uci_psk = genkey("genpsk");
    known.push(Known::key("the wg-quick file's private key", &wg_private));
    known.push(Known::key("the wg-quick file's preshared key", &wg_psk));
    known.push(Known::key("the UCI file's private key", &uci_private));
    known.push(Known::key("the UCI file's preshared key", &uci_psk));
    let import_dir = root.join("imported");
    fs::create_dir(&import_dir).unwrap();
    let wg_conf = import_dir.join("wgq0.conf");
    secret_file(
        &wg_conf,
        &format!(
            "[Interface]\nPrivateKey = {wg_private}\nAddress = 10.20.0.2/32\n\n[Peer]\n\
             PublicKey = {}\nPresharedKey = {wg_psk}\nAllowedIPs = 0.0.0.0/0\n\
             Endpoint = 192.0.2.1:51820\n",
            pubkey(&router_key)
        ),
    );
    // Key lines without `=` (pasted from a forum): never echoed, whatever their shape.
    let malformed_psk = genkey("genpsk");
    known.push(Known::key(
        "a malformed line's preshared key",
        &malformed_psk,
    ));
    let wg_malformed = import_dir.join("wgq1.conf");
    secret_file(
        &wg_malformed,
        &format!(
            "[Interface]\nPrivateKey = {wg_private}\nAddress = 10.21.0.2/32\n\n[Peer]\n\
             PublicKey = {}\nPresharedKey: {malformed_psk}\nAllowedIPs = 10.21.0.1/32\n\n\
             [Peer]\nPublicKey = {phone_public}\nPresharedKey {malformed_psk}\n\
             AllowedIPs = 10.21.0.3/32\n",
            pubkey(&router_key)
        ),
    );
    let uci = import_dir.join("network");
    secret_file(
        &uci,
        &format!(
            "config interface 'wgu0'\n\toption proto 'wireguard'\n\toption private_key \
             '{uci_private}'\n\toption listen_port '51821'\n\tlist addresses '10.30.0.1/24'\n\n\
             config wireguard_wgu0\n\toption description 'laptop'\n\toption public_key \
             '{phone_public}'\n\toption preshared_key '{uci_psk}'\n\tlist allowed_ips \
             '10.30.0.2/32'\n"
        ),
    );

    let mut search = Search { known, searched: 0 };
    let vpn_ctl = |args: &[&str]| -> Output {
        router
            .command(VPN_CTL)
            .arg("-vv")
            .arg("--config")
            .arg(&config_path)
            .args(args)
            .output()
            .unwrap()
    };
    let ok = |search: &mut Search, args: &[&str]| {
        let out = vpn_ctl(args);
        search.check_output(&args.join(" "), &out);
        assert!(
            out.status.success(),
            "`vpn-ctl {}` failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };

    ok(&mut search, &["up"]);
    ok(&mut search, &["up"]);
    // The search sees what it should: the router's public key is in the status.
    let status = ok(&mut search, &["status"]);
    let public = Known::key("the router's public key", &pubkey(&router_key));
    assert!(
        public
            .find_in(&String::from_utf8_lossy(&status.stdout))
            .is_some()
    );
    ok(&mut search, &["status", "--json"]);
    ok(&mut search, &["peer", "add", "tablet", "--split-tunnel"]);
    ok(&mut search, &["up"]);
    ok(&mut search, &["peer", "remove", "tablet"]);
    ok(
        &mut search,
        &["diag", "--wan", &net.b_dev, "--duration", "1", "--json"],
    );
    // A refused config: its diagnostics quote lines of the file, never a key file's content.
    let broken = root.join("broken.toml");
    fs::write(
        &broken,
        config.replace("listen_port = 51820", "listen_port = \"x\""),
    )
    .unwrap();
    let out = router
        .command(VPN_CTL)
        .args(["-vv", "--config"])
        .arg(&broken)
        .arg("up")
        .output()
        .unwrap();
    assert!(!out.status.success());
    search.check_output("up (broken config)", &out);

    // The daemon: its log at trace level, /metrics and /healthz, a reload, a stop.
    let log = root.join("daemon.log");
    let log_file = fs::File::create(&log).unwrap();
    let mut daemon = router
        .command(VPN_CTL)
        .arg("-vv")
        .arg("--config")
        .arg(&config_path)
        .arg("daemon")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let addr: SocketAddr = "127.0.0.1:9586".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        if let Some(body) = http_get(router, addr, "/metrics").filter(|b| b.contains("wireguard_"))
        {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no metrics:\n{}",
            fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    search.check("/metrics", &metrics);
    search.check(
        "/healthz",
        &http_get(router, addr, "/healthz").unwrap_or_default(),
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_secs(1));
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let status = daemon.wait().unwrap();
    assert!(
        status.success(),
        "daemon: {status}\n{}",
        fs::read_to_string(&log).unwrap()
    );

    // Imports write a vpn-ctl config (mode 0644) and 0600 key files beside it.
    for (n, (source, file)) in [
        ("wg-quick", &wg_conf),
        ("wg-quick", &wg_malformed),
        ("uci", &uci),
    ]
    .into_iter()
    .enumerate()
    {
        let out_config = import_dir.join(format!("{source}{n}.toml"));
        let out = router
            .command(VPN_CTL)
            .arg("-vv")
            .arg("--config")
            .arg(&out_config)
            .args(["import", source])
            .arg(file)
            .output()
            .unwrap();
        search.check_output(&format!("import {source} {}", file.display()), &out);
        // The malformed file is refused (without quoting its key lines); the others import.
        assert_eq!(
            out.status.success(),
            file != &wg_malformed,
            "import {source}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    ok(&mut search, &["down"]);
    search.check_files(root);
    for device_log in fs::read_dir("/run/vpn-ctl")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
    {
        if device_log.file_name().to_string_lossy().starts_with(&iface) {
            let text = fs::read_to_string(device_log.path()).unwrap_or_default();
            search.check(&device_log.path().display().to_string(), &text);
        }
    }
    eprintln!(
        "searched {} outputs and files for {} secrets",
        search.searched,
        search.known.len()
    );
}

fn unbase64(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}
