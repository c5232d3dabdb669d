use std::{fs, os::unix::fs::PermissionsExt as _};

use super::*;
use crate::config::parse;

/// An interface with both families; 4 lines, so what follows starts at line 5.
const WG0: &str = "[wireguard.wg0]
private_key_file = \"wg0.key\"
listen_port = 51820
addresses = [\"10.8.0.1/24\", \"fd08::1/64\"]
";

/// A directory holding a configuration's key files (mode 0600), and peers' keys.
struct Fixture {
    dir: tempfile::TempDir,
    wg0: Secret,
    phone: PublicKey,
    laptop: PublicKey,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let wg0 = Secret::generate_private();
        write(
            &dir.path().join("wg0.key"),
            &format!("{}\n", wg0.expose_base64()),
            0o600,
        );
        let wg1 = Secret::generate_private().expose_base64();
        write(&dir.path().join("wg1.key"), &format!("{wg1}\n"), 0o600);
        let psk = Secret::generate_preshared().expose_base64();
        write(&dir.path().join("phone.psk"), &psk, 0o400);
        Fixture {
            dir,
            wg0,
            phone: Secret::generate_private().public_key(),
            laptop: Secret::generate_private().public_key(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Reads `text` as `DIR/vpn.toml`, with `<phone>`, `<laptop>` and `<wg0>` standing
    /// for those public keys; an error is rendered, the directory written `DIR`.
    fn parse(&self, text: &str) -> Result<Config, String> {
        let text = text
            .replace("<phone>", &self.phone.to_base64())
            .replace("<laptop>", &self.laptop.to_base64())
            .replace("<wg0>", &self.wg0.public_key().to_base64());
        parse(&self.path("vpn.toml"), &text).map_err(|e| {
            e.to_string()
                .replace(self.dir.path().to_str().unwrap(), "DIR")
        })
    }

    fn error(&self, text: &str) -> String {
        match self.parse(text) {
            Ok(config) => panic!("accepted:\n{text}\n{config:#?}"),
            Err(e) => e,
        }
    }
}

fn write(path: &Path, contents: &str, mode: u32) {
    fs::write(path, contents).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn daemon_section_defaults_and_problems() {
    let fx = Fixture::new();
    let config = fx.parse("[router]\nwan = \"eth0\"\n").unwrap();
    assert_eq!(config.daemon, Daemon::default());
    assert_eq!(config.daemon.xdp, DaemonXdp::Count);
    // Without a WAN port there is nothing to count on.
    let config = fx.parse("").unwrap();
    assert_eq!(config.daemon.xdp, DaemonXdp::Off);
    let config = fx
        .parse("[daemon]\nmetrics_listen = \"off\"\ntick = 5\nmetrics_max_peers = 0\n")
        .unwrap();
    assert_eq!(config.daemon.metrics_listen, None);
    assert_eq!(config.daemon.tick, std::time::Duration::from_secs(5));
    assert_eq!(config.daemon.metrics_max_peers, 0);
    assert_eq!(
        fx.error("[daemon]\nmetrics_listen = \"localhost\"\ntick = 0\nxdp = \"count\"\n"),
        "DIR/vpn.toml:2:18: metrics_listen \"localhost\" is not an address and port\n  \
             help: write where Prometheus scrapes /metrics, e.g. metrics_listen = \
             \"127.0.0.1:9586\" (\"[::]:9586\" for every address), or metrics_listen = \"off\"\n\
             DIR/vpn.toml:3:8: tick 0 is out of range\n  help: give the seconds between the \
             daemon's periodic checks, 1 to 3600, e.g. tick = 30\n\
             DIR/vpn.toml:4:7: xdp = \"count\" needs the WAN port, and [router] has no wan\n  \
             help: add wan = \"eth0\" (your WAN port as `ip link` shows it) to [router], or set \
             xdp = \"off\"\n3 problems; nothing was applied"
    );
}

#[test]
fn full_example_is_valid() {
    let fx = Fixture::new();
    let config = fx
        .parse(
            r#"
[router]
wan = "eth0"
lan = ["192.168.1.0/24", "fd00:1::/64"]

[wireguard.wg0]
private_key_file = "wg0.key"
listen_port = 51820
addresses = ["10.8.0.1/24", "fd08::1/64"]
mtu = 1420
fwmark = 0x5182
public_endpoint = "home.example.org:51820"
client_dns = ["192.168.1.1", "fd08::1"]

[[wireguard.wg0.peers]]
name = "phone"
preshared_key_file = "phone.psk"
allowed_ips = ["10.8.0.2/32", "fd08::2/128"]
persistent_keepalive = 25
public_key = "<phone>"

[[wireguard.wg0.peers]]
name = "office"
allowed_ips = ["10.8.0.3", "192.168.2.0/24"]
endpoint = "[2001:db8::7]:51820"
route = false
public_key = "<laptop>"

[wireguard.wg1]
private_key_file = "wg1.key"
listen_port = 51821
fwmark = 0
"#,
        )
        .unwrap();
    assert_eq!(config.path, fx.path("vpn.toml"));
    assert_eq!(config.router.wan.as_deref(), Some("eth0"));
    assert_eq!(
        config.router.lan,
        [
            "192.168.1.0/24".parse().unwrap(),
            "fd00:1::/64".parse().unwrap()
        ] as [IpNet; 2]
    );
    assert_eq!(config.wireguard.len(), 2);
    let wg0 = config.interface("wg0").unwrap();
    assert_eq!(wg0.private_key, fx.wg0);
    assert_eq!(wg0.public_key(), fx.wg0.public_key());
    assert_eq!(wg0.private_key_file, fx.path("wg0.key"));
    assert_eq!(wg0.listen_port, Some(51820));
    assert_eq!(
        wg0.addresses,
        [
            "10.8.0.1/24".parse().unwrap(),
            "fd08::1/64".parse().unwrap()
        ] as [IpNet; 2]
    );
    assert_eq!(wg0.mtu, Some(1420));
    assert_eq!(wg0.fwmark, Some(0x5182));
    assert_eq!(
        wg0.public_endpoint,
        Some(Endpoint {
            host: "home.example.org".into(),
            port: 51820
        })
    );
    assert_eq!(
        wg0.client_dns,
        [
            "192.168.1.1".parse::<IpAddr>().unwrap(),
            "fd08::1".parse().unwrap()
        ]
    );

    let [phone, office] = &wg0.peers[..] else {
        panic!("{:?}", wg0.peers)
    };
    assert_eq!(phone.name, "phone");
    assert_eq!(phone.public_key, fx.phone);
    let psk = fs::read_to_string(fx.path("phone.psk")).unwrap();
    assert_eq!(phone.preshared_key.as_ref().unwrap().expose_base64(), psk);
    assert_eq!(phone.preshared_key_file, Some(fx.path("phone.psk")));
    assert_eq!(
        phone.allowed_ips,
        [
            "10.8.0.2/32".parse().unwrap(),
            "fd08::2/128".parse().unwrap()
        ] as [IpNet; 2]
    );
    assert_eq!(phone.endpoint, None);
    assert_eq!(phone.persistent_keepalive, Some(25));
    assert!(phone.route, "route defaults to true");

    assert_eq!(office.name, "office");
    assert_eq!(office.public_key, fx.laptop);
    assert_eq!(
        (
            office.preshared_key.is_none(),
            office.preshared_key_file.is_none()
        ),
        (true, true)
    );
    assert_eq!(
        office.allowed_ips,
        [
            "10.8.0.3/32".parse().unwrap(),
            "192.168.2.0/24".parse().unwrap()
        ] as [IpNet; 2]
    );
    assert_eq!(
        office.endpoint.as_ref().unwrap().to_string(),
        "[2001:db8::7]:51820"
    );
    assert_eq!(office.persistent_keepalive, None);
    assert!(!office.route);

    let wg1 = &config.wireguard[1];
    assert_eq!(
        (wg1.name.as_str(), wg1.listen_port, wg1.fwmark),
        ("wg1", Some(51821), None)
    );
    assert!(wg1.addresses.is_empty() && wg1.peers.is_empty() && wg1.mtu.is_none());
}

#[test]
fn empty_file_or_no_wireguard_is_valid() {
    let fx = Fixture::new();
    for text in [
        "",
        "# later\n",
        "[router]\nwan = \"eth0\"\n",
        "[wireguard]\n",
    ] {
        let config = fx.parse(text).unwrap();
        assert!(config.wireguard.is_empty(), "{text:?}");
    }
}

#[test]
fn interfaces_keep_file_order_and_absolute_key_paths() {
    let fx = Fixture::new();
    let text = format!(
        "[wireguard.wg9]\nprivate_key_file = {:?}\n[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\n",
        fx.path("wg1.key").display()
    );
    let config = fx.parse(&text).unwrap();
    let names: Vec<&str> = config.wireguard.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["wg9", "wg0"]);
    assert_eq!(config.wireguard[0].private_key_file, fx.path("wg1.key"));
}

#[test]
fn interface_names_follow_iproute2() {
    let fx = Fixture::new();
    let help = format!(
        "help: choose a name of {}, e.g. [wireguard.wg0]",
        link::NAME_RULES
    );
    for (header, column, problem) in [
        (
            "[wireguard.wireguard-home10]",
            12,
            r#""wireguard-home10" is 16 bytes long; Linux allows at most 15"#,
        ),
        ("[wireguard.\"wg/0\"]", 12, r#""wg/0" contains '/'"#),
        ("[wireguard.\"wg 0\"]", 12, r#""wg 0" contains ' '"#),
        ("[wireguard.\"wg:0\"]", 12, r#""wg:0" contains ':'"#),
        ("[wireguard.'..']", 12, r#"".." is not allowed"#),
        ("[wireguard.\"\"]", 12, "is empty"),
        // It would read as an option of `vpn-ctl userspace-device NAME`.
        ("[wireguard.-h]", 12, r#""-h" starts with '-'"#),
        ("[wireguard.\"wg\\u0000\"]", 12, r#""wg\0" contains '\0'"#),
    ] {
        assert_eq!(
            fx.error(&format!("{header}\nprivate_key_file = \"wg0.key\"\n")),
            format!("DIR/vpn.toml:1:{column}: interface name {problem}\n  {help}"),
        );
    }
    // 15 bytes is the most, and non-ASCII is the kernel's business.
    fx.parse("[wireguard.wireguard-home0]\nprivate_key_file = \"wg0.key\"\n")
        .unwrap();
}

#[test]
fn wan_name_follows_iproute2() {
    let fx = Fixture::new();
    assert_eq!(
        fx.error("[router]\nwan = \"eth 0\"\n"),
        "DIR/vpn.toml:2:7: wan \"eth 0\" contains ' '\n  help: give the WAN port's name \
             as `ip link` shows it, e.g. wan = \"eth0\""
    );
    assert_eq!(
        fx.error("[router]\nwan = \"-eth0\"\n"),
        "DIR/vpn.toml:2:7: wan \"-eth0\" starts with '-'\n  help: give the WAN port's \
             name as `ip link` shows it, e.g. wan = \"eth0\""
    );
}

#[test]
fn port_clash_is_reported_at_the_second_interface() {
    let fx = Fixture::new();
    assert_eq!(
        fx.error(&format!(
            "{WG0}\n[wireguard.wg1]\nprivate_key_file = \"wg1.key\"\nlisten_port = 51820\n"
        )),
        "DIR/vpn.toml:8:15: listen_port 51820 is already used by wg0 (line 3)\n  \
             help: each interface needs a UDP port of its own, e.g. listen_port = 51821"
    );
}

#[test]
fn listen_port_must_be_a_port() {
    let fx = Fixture::new();
    for port in ["0", "65536", "-1"] {
        assert_eq!(
            fx.error(&format!(
                "[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\nlisten_port = {port}\n"
            )),
            format!(
                "DIR/vpn.toml:3:15: listen_port {port} is not a port number (1-65535)\n  \
                     help: use a free UDP port, e.g. listen_port = 51820, or leave \
                     listen_port out for a random one"
            )
        );
    }
}

#[test]
fn missing_key_file_says_how_to_make_one() {
    let fx = Fixture::new();
    assert_eq!(
        fx.error("[wireguard.wg0]\nprivate_key_file = \"keys/wg0.key\"\n"),
        "DIR/vpn.toml:2:20: cannot read DIR/keys/wg0.key: No such file or directory (os \
             error 2)\n  help: create it with `(umask 077; vpn-ctl genkey > DIR/keys/wg0.key)`, \
             or correct the path (relative paths start at DIR)"
    );
    assert_eq!(
            fx.error(&format!(
                "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npreshared_key_file = \"my phone.psk\"\npublic_key = \"<phone>\"\n"
            )),
            "DIR/vpn.toml:7:22: cannot read DIR/my phone.psk: No such file or directory (os \
             error 2)\n  help: create it with `(umask 077; vpn-ctl genpsk > 'DIR/my \
             phone.psk')`, or correct the path (relative paths start at DIR)"
        );
}

#[test]
fn key_file_without_a_key_is_refused() {
    let fx = Fixture::new();
    let public = fx.phone.to_base64();
    for contents in [
        "",
        "not a key\n",
        &format!("{public}\n{public}\n"),
        &format!("[Interface]\nPrivateKey = {public}\n"),
        "\u{fffd}".repeat(1000).as_str(),
    ] {
        write(&fx.path("wg0.key"), contents, 0o600);
        assert_eq!(
            fx.error("[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\n"),
            "DIR/vpn.toml:2:20: DIR/wg0.key does not hold a WireGuard key\n  help: a key \
                 file holds one key of 44 base64 characters, as `vpn-ctl genkey` prints it; \
                 write a new one with `vpn-ctl genkey > DIR/wg0.key`",
            "{contents:?}"
        );
    }
    fs::write(fx.path("wg0.key"), [0xff, 0xfe, b'\n']).unwrap();
    assert!(
        fx.error("[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\n")
            .contains("does not hold")
    );
    // Without the trailing newline it is still the key.
    write(&fx.path("wg0.key"), &fx.wg0.expose_base64(), 0o600);
    fx.parse("[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\n")
        .unwrap();
}

#[test]
fn all_zero_private_and_preshared_keys_are_refused() {
    let fx = Fixture::new();
    let zero = format!("{}=\n", "A".repeat(43));
    write(&fx.path("wg0.key"), &zero, 0o600);
    write(&fx.path("phone.psk"), &zero, 0o600);
    assert_eq!(
            fx.error(&format!(
                "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npreshared_key_file = \"phone.psk\"\npublic_key = \"<phone>\"\n"
            )),
            "DIR/vpn.toml:2:20: DIR/wg0.key holds an all-zero key, which is no private key at \
             all\n  help: write a new key with `vpn-ctl genkey > DIR/wg0.key`\n\
             DIR/vpn.toml:7:22: DIR/phone.psk holds an all-zero preshared key, which WireGuard \
             treats as none\n  help: write a new key with `vpn-ctl genpsk > DIR/phone.psk`\n\
             2 problems; nothing was applied"
        );
}

#[test]
fn small_order_public_keys_are_refused() {
    let fx = Fixture::new();
    // All zeros, 1, an order-8 point and p - 1 (libsodium's list).
    for key in [
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuAA=",
        "7P///////////////////////////////////////38=",
    ] {
        assert_eq!(
            fx.error(&format!(
                "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npublic_key = \"{key}\"\n"
            )),
            "DIR/vpn.toml:7:14: the public_key of peer \"phone\" is a point of small order, \
                 not a usable key: every handshake with it would fail\n  help: Diffie-Hellman \
                 with it gives all zeros, which WireGuard refuses; use the public key of the \
                 peer's own private key (`wg pubkey` on the peer)",
            "{key}"
        );
    }
}

#[test]
fn key_file_others_may_read_is_refused() {
    let fx = Fixture::new();
    for mode in [0o644, 0o640, 0o604, 0o620, 0o601] {
        fs::set_permissions(fx.path("wg0.key"), fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(
            fx.error("[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\n"),
            format!(
                "DIR/vpn.toml:2:20: DIR/wg0.key is accessible to other users (mode \
                     {mode:04o})\n  help: `chmod 600 DIR/wg0.key`: only its owner may read a key"
            )
        );
    }
    fs::set_permissions(fx.path("wg0.key"), fs::Permissions::from_mode(0o400)).unwrap();
    fx.parse("[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\n")
        .unwrap();
}

#[test]
fn preshared_key_file_is_checked_like_a_private_one() {
    let fx = Fixture::new();
    write(&fx.path("phone.psk"), "secret\n", 0o644);
    assert_eq!(
            fx.error(&format!(
                "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npreshared_key_file = \"phone.psk\"\npublic_key = \"<phone>\"\n"
            )),
            "DIR/vpn.toml:7:22: DIR/phone.psk does not hold a WireGuard key\n  help: a key \
             file holds one key of 44 base64 characters, as `vpn-ctl genpsk` prints it; write \
             a new one with `vpn-ctl genpsk > DIR/phone.psk`\n\
             DIR/vpn.toml:7:22: DIR/phone.psk is accessible to other users (mode 0644)\n  \
             help: `chmod 600 DIR/phone.psk`: only its owner may read a key\n\
             2 problems; nothing was applied"
        );
}

#[test]
fn key_file_that_is_a_directory_is_unreadable() {
    let fx = Fixture::new();
    fs::create_dir(fx.path("keys")).unwrap();
    assert_eq!(
        fx.error("[wireguard.wg0]\nprivate_key_file = \"keys\"\n"),
        "DIR/vpn.toml:2:20: cannot read DIR/keys: it is a directory, not a regular file\n  \
             help: private_key_file must name a regular file that holds one key: vpn-ctl does \
             not read FIFOs or devices (one could block it forever)"
    );
}

/// Opening a FIFO for reading waits for a writer: `up` hung there.
#[test]
fn key_files_that_are_fifos_are_refused_at_once() {
    let fx = Fixture::new();
    fs::remove_file(fx.path("wg0.key")).unwrap();
    fs::remove_file(fx.path("phone.psk")).unwrap();
    files::tests::mkfifo(&fx.path("wg0.key"));
    files::tests::mkfifo(&fx.path("phone.psk"));
    let text = format!(
        "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npreshared_key_file = \"phone.psk\"\npublic_key = \"<phone>\"\n"
    );
    let (fx, error) = files::tests::within_5_seconds(move || {
        let error = fx.error(&text);
        (fx, error)
    });
    drop(fx);
    assert_eq!(
        error,
        "DIR/vpn.toml:2:20: cannot read DIR/wg0.key: it is a FIFO, not a regular file\n  \
             help: private_key_file must name a regular file that holds one key: vpn-ctl does \
             not read FIFOs or devices (one could block it forever)\n\
             DIR/vpn.toml:7:22: cannot read DIR/phone.psk: it is a FIFO, not a regular file\n  \
             help: preshared_key_file must name a regular file that holds one key: vpn-ctl does \
             not read FIFOs or devices (one could block it forever)\n\
             2 problems; nothing was applied"
    );
}

#[test]
fn empty_key_file_name() {
    let fx = Fixture::new();
    assert_eq!(
        fx.error("[wireguard.wg0]\nprivate_key_file = \"\"\n"),
        "DIR/vpn.toml:2:20: private_key_file is empty\n  help: name the file that holds \
             the key, e.g. private_key_file = \"wg0.key\""
    );
}

#[test]
fn required_fields() {
    let fx = Fixture::new();
    assert_eq!(
        fx.error("[wireguard.wg0]\nlisten_port = 51820\n"),
        "DIR/vpn.toml:1:1: interface wg0 has no private_key_file\n  help: add \
             private_key_file = \"wg0.key\" and make the key with `(umask 077; vpn-ctl genkey \
             > DIR/wg0.key)`"
    );
    assert_eq!(
            fx.error(&format!("{WG0}\n[[wireguard.wg0.peers]]\nname = \"phone\"\n\n[[wireguard.wg0.peers]]\npublic_key = \"<phone>\"\n")),
            "DIR/vpn.toml:6:1: peer \"phone\" of wg0 has no public_key\n  help: add the public \
             key the peer's private key gives (`wg pubkey` on the peer), e.g. public_key = \
             \"...\"\n\
             DIR/vpn.toml:9:1: this peer of wg0 has no name\n  help: add a name that tells the \
             peer apart, e.g. name = \"phone\"\n\
             2 problems; nothing was applied"
        );
}

#[test]
fn malformed_public_key_is_pointed_at() {
    let fx = Fixture::new();
    let short = &fx.phone.to_base64()[..43];
    assert_eq!(
        fx.error(&format!(
            "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npublic_key = \"{short}\"\n"
        )),
        "DIR/vpn.toml:7:14: the public_key of peer \"phone\" is not a WireGuard key\n  \
             help: a public key is 44 characters of base64, as `wg pubkey` prints it; this one \
             has 43"
    );
    assert_eq!(
        fx.error(&format!(
            "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npublic_key = \"{}!\"\n",
            &short[..43]
        )),
        "DIR/vpn.toml:7:14: the public_key of peer \"phone\" is not a WireGuard key\n  \
             help: a public key is 44 characters of base64, as `wg pubkey` prints it; this one \
             has 44"
    );
}

#[test]
fn same_public_key_on_two_peers_names_the_first() {
    let fx = Fixture::new();
    let text = format!(
        "{WG0}
[[wireguard.wg0.peers]]
name = \"phone\"
public_key = \"<phone>\"

[wireguard.wg1]
private_key_file = \"wg1.key\"

[[wireguard.wg1.peers]]
name = \"tablet\"
public_key = \"<phone>\"
"
    );
    assert_eq!(
        fx.error(&text),
        "DIR/vpn.toml:15:14: peer \"tablet\" has the same public key as peer \"phone\" of \
             wg0 (line 8)\n  help: every peer needs a key pair of its own: check which of the \
             two keys was copied, and give the peer the public key of its own private key"
    );
}

#[test]
fn peer_with_the_interface_s_own_key_is_refused() {
    let fx = Fixture::new();
    assert_eq!(
        fx.error(&format!(
            "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npublic_key = \"<wg0>\"\n"
        )),
        "DIR/vpn.toml:7:14: the public_key of peer \"phone\" is wg0's own public key\n  \
             help: use the key of the peer's private key (`wg pubkey` on the peer), not the \
             one of wg0's private_key_file"
    );
}

#[test]
fn peer_names_are_non_empty_and_unique_per_interface() {
    let fx = Fixture::new();
    let text = format!(
        "{WG0}
[[wireguard.wg0.peers]]
name = \"phone\"
public_key = \"<phone>\"

[[wireguard.wg0.peers]]
name = \"phone\"
public_key = \"<laptop>\"

[[wireguard.wg0.peers]]
name = \" \"
"
    );
    assert_eq!(
        fx.error(&text),
        "DIR/vpn.toml:11:8: wg0 already has a peer named \"phone\" (line 7)\n  help: give \
             each peer of an interface a name of its own\n\
             DIR/vpn.toml:14:1: the peer at line 14 of wg0 has no public_key\n  help: add the \
             public key the peer's private key gives (`wg pubkey` on the peer), e.g. \
             public_key = \"...\"\n\
             DIR/vpn.toml:15:8: a peer's name cannot be empty\n  help: give the peer a name, \
             e.g. name = \"phone\"\n\
             3 problems; nothing was applied"
    );
    // The same name on two interfaces is fine.
    fx.parse(&format!(
        "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npublic_key = \"<phone>\"\n\
             [wireguard.wg1]\nprivate_key_file = \"wg1.key\"\n\
             [[wireguard.wg1.peers]]\nname = \"phone\"\npublic_key = \"<laptop>\"\n"
    ))
    .unwrap();
}

#[test]
fn peer_names_have_no_control_or_direction_characters_and_64_characters_at_most() {
    let fx = Fixture::new();
    let help = "help: use at most 64 characters, without control characters or Unicode \
                    direction controls, e.g. name = \"phone\"";
    let long = "x".repeat(65);
    for (name, problem) in [
        (
            r"pho\u0000ne",
            r#""pho\0ne" contains the control character '\0'"#,
        ),
        (
            r"\u001b[2Jphone",
            r#""\u{1b}[2Jphone" contains the control character '\u{1b}'"#,
        ),
        (
            r"phone\n",
            r#""phone\n" contains the control character '\n'"#,
        ),
        (
            r"phone\u202Egnp.exe",
            r#""phone\u{202e}gnp.exe" contains '\u{202e}', a Unicode direction control (it makes text display in another order than it is written)"#,
        ),
        (
            r"\u2067admin",
            r#""\u{2067}admin" contains '\u{2067}', a Unicode direction control (it makes text display in another order than it is written)"#,
        ),
        (
            r"a\u200Fb",
            r#""a\u{200f}b" contains '\u{200f}', a Unicode direction control (it makes text display in another order than it is written)"#,
        ),
        (
            long.as_str(),
            r#""xxxxxxxxxxxxxxxxxxxx"... is 65 characters long; the most is 64"#,
        ),
    ] {
        assert_eq!(
            fx.error(&format!(
                "{WG0}[[wireguard.wg0.peers]]\nname = \"{name}\"\npublic_key = \"<phone>\"\n"
            )),
            format!("DIR/vpn.toml:6:8: peer name {problem}\n  {help}"),
            "{name:?}"
        );
    }
    // 64 characters, and letters of any script, are fine.
    for name in [
        "x".repeat(64),
        "Annas Händy ☎".to_string(),
        "שלום".to_string(),
    ] {
        let config = fx
            .parse(&format!(
                "{WG0}[[wireguard.wg0.peers]]\nname = \"{name}\"\npublic_key = \"<phone>\"\n"
            ))
            .unwrap();
        assert_eq!(config.wireguard[0].peers[0].name, name);
    }
}

#[test]
fn allowed_ips_that_cover_the_lan_are_accepted_with_a_warning() {
    let fx = Fixture::new();
    let text = format!(
        "[router]\nlan = [\"192.168.1.0/24\", \"fd00:1::/64\"]\n{}",
        peer_with(r#"["10.8.0.2/32", "192.168.1.0/24", "fd00::/16", "192.168.2.0/24"]"#)
    );
    let config = fx.parse(&text).unwrap();
    let warnings: Vec<String> = config
        .warnings
        .iter()
        .map(|w| {
            w.to_string()
                .replace(fx.dir.path().to_str().unwrap(), "DIR")
        })
        .collect();
    assert_eq!(
        warnings,
        [
            "DIR/vpn.toml:9:31: allowed IP 192.168.1.0/24 of peer \"phone\" is this router's \
                 LAN 192.168.1.0/24 ([router] lan)\n  help: the peer may then send from LAN \
                 addresses, and with route = true 192.168.1.0/24 is routed into wg0: right if \
                 the LAN is meant to be reached through this peer (site-to-site), otherwise \
                 list only the peer's own addresses",
            "DIR/vpn.toml:9:49: allowed IP fd00::/16 of peer \"phone\" contains this \
                 router's LAN fd00:1::/64 ([router] lan)\n  help: the peer may then send from \
                 LAN addresses, and with route = true fd00::/16 is routed into wg0: right if the \
                 LAN is meant to be reached through this peer (site-to-site), otherwise list \
                 only the peer's own addresses",
        ]
    );
    // The peer is there all the same.
    assert_eq!(config.wireguard[0].peers[0].allowed_ips.len(), 4);
    // Without a [router] lan, nothing to say.
    assert!(
        fx.parse(&peer_with(r#"["0.0.0.0/0"]"#))
            .unwrap()
            .warnings
            .is_empty()
    );
}

/// A peer of wg0 at line 5 with `allowed` as its allowed IPs (line 7).
fn peer_with(allowed: &str) -> String {
    format!(
        "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\nallowed_ips = {allowed}\npublic_key = \"<phone>\"\n"
    )
}

#[test]
fn allowed_ips_have_no_host_bits() {
    let fx = Fixture::new();
    assert_eq!(
        fx.error(&peer_with(r#"["10.8.0.2/24", "fd08::2/64"]"#)),
        "DIR/vpn.toml:7:16: 10.8.0.2/24 has bits set after its prefix length (its network \
             is 10.8.0.0/24)\n  help: did you mean 10.8.0.2/32 or 10.8.0.0/24?\n\
             DIR/vpn.toml:7:31: fd08::2/64 has bits set after its prefix length (its network \
             is fd08::/64)\n  help: did you mean fd08::2/128 or fd08::/64?\n\
             2 problems; nothing was applied"
    );
}

#[test]
fn allowed_ips_must_be_prefixes() {
    let fx = Fixture::new();
    assert_eq!(
        fx.error(&peer_with(r#"["10.8.0.2/33", "phone"]"#)),
        "DIR/vpn.toml:7:16: \"10.8.0.2/33\" is not an IP prefix\n  help: write an address \
             and prefix length, e.g. \"10.8.0.2/32\" or \"192.168.1.0/24\"\n\
             DIR/vpn.toml:7:31: \"phone\" is not an IP prefix\n  help: write an address and \
             prefix length, e.g. \"10.8.0.2/32\" or \"192.168.1.0/24\"\n\
             2 problems; nothing was applied"
    );
}

#[test]
fn overlapping_allowed_ips_name_both_peers() {
    let fx = Fixture::new();
    let text = format!(
        "{WG0}
[[wireguard.wg0.peers]]
name = \"phone\"
allowed_ips = [\"10.8.0.2/32\", \"192.168.2.0/24\"]
public_key = \"<phone>\"

[[wireguard.wg0.peers]]
name = \"laptop\"
allowed_ips = [\"10.8.0.3/32\", \"192.168.0.0/16\", \"10.8.0.2\"]
public_key = \"<laptop>\"
"
    );
    assert_eq!(
        fx.error(&text),
        "DIR/vpn.toml:13:31: 192.168.0.0/16 overlaps 192.168.2.0/24 of peer \"phone\" (line \
             8)\n  help: the kernel sends each address to one peer only, so one of the two \
             would silently lose it: give peer \"laptop\" and peer \"phone\" separate ranges\n\
             DIR/vpn.toml:13:49: 10.8.0.2/32 overlaps 10.8.0.2/32 of peer \"phone\" (line 8)\n  \
             help: the kernel sends each address to one peer only, so one of the two would \
             silently lose it: give peer \"laptop\" and peer \"phone\" separate ranges\n\
             2 problems; nothing was applied"
    );
    // The same ranges on two interfaces do not meet in the kernel.
    fx.parse(&format!(
            "{WG0}[[wireguard.wg0.peers]]\nname = \"a\"\nallowed_ips = [\"192.168.2.0/24\"]\npublic_key = \"<phone>\"\n\
             [wireguard.wg1]\nprivate_key_file = \"wg1.key\"\n\
             [[wireguard.wg1.peers]]\nname = \"b\"\nallowed_ips = [\"192.168.2.0/24\"]\npublic_key = \"<laptop>\"\n"
        ))
        .unwrap();
}

#[test]
fn host_addresses_must_be_in_the_interface_subnet() {
    let fx = Fixture::new();
    assert_eq!(
        fx.error(&peer_with(
            r#"["10.9.0.2/32", "fd09::2/128", "10.8.0.1/32"]"#
        )),
        "DIR/vpn.toml:7:16: 10.9.0.2/32 is outside wg0's subnet 10.8.0.0/24\n  help: a \
             peer's own address must be in wg0's subnet: use one from 10.8.0.0/24, or widen \
             wg0's address (a network behind a peer may be anywhere)\n\
             DIR/vpn.toml:7:31: fd09::2/128 is outside wg0's subnet fd08::/64\n  help: a \
             peer's own address must be in wg0's subnet: use one from fd08::/64, or widen \
             wg0's address (a network behind a peer may be anywhere)\n\
             DIR/vpn.toml:7:46: 10.8.0.1/32 is wg0's own address\n  help: give peer \"phone\" \
             another address in 10.8.0.0/24\n\
             3 problems; nothing was applied"
    );
    // Networks behind a peer may be anywhere, and so may full-tunnel routes.
    fx.parse(&peer_with(
        r#"["10.8.0.2/32", "192.168.2.0/24", "0.0.0.0/0", "::/0"]"#,
    ))
    .unwrap();
}

#[test]
fn host_addresses_with_several_subnets() {
    let fx = Fixture::new();
    let text = "[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\naddresses = [\"10.8.0.1/24\", \"10.9.0.1/24\"]\n\
                    [[wireguard.wg0.peers]]\nname = \"phone\"\nallowed_ips = [\"10.9.0.2/32\", \"10.7.0.2/32\", \"fd08::2/128\"]\npublic_key = \"<phone>\"\n";
    assert_eq!(
        fx.error(text),
        "DIR/vpn.toml:6:31: 10.7.0.2/32 is outside wg0's subnets 10.8.0.0/24, 10.9.0.0/24\n  \
             help: a peer's own address must be in wg0's subnets: use one from 10.8.0.0/24, \
             10.9.0.0/24, or widen wg0's address (a network behind a peer may be anywhere)"
    );
}

#[test]
fn interface_addresses_are_addresses_in_a_subnet() {
    let fx = Fixture::new();
    let text = "[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\naddresses = [\
                    \"10.8.0.1\", \"10.8.0.0/24\", \"10.9.0.255/24\", \"fd08::/64\", \"wg0\", \
                    \"10.10.0.1/32\", \"10.11.0.1/31\"]\n";
    assert_eq!(
        fx.error(text),
        "DIR/vpn.toml:3:14: address \"10.8.0.1\" of wg0 has no prefix length\n  help: add \
             the prefix length of wg0's subnet, e.g. \"10.8.0.1/24\"\n\
             DIR/vpn.toml:3:26: 10.8.0.0/24 is the network address of its subnet, not an \
             address wg0 can have\n  help: give wg0 an address inside the subnet: did you mean \
             10.8.0.1/24?\n\
             DIR/vpn.toml:3:41: 10.9.0.255/24 is the broadcast address of its subnet, not an \
             address wg0 can have\n  help: give wg0 an address inside the subnet: did you mean \
             10.9.0.1/24?\n\
             DIR/vpn.toml:3:58: fd08::/64 is the network address of its subnet, not an address \
             wg0 can have\n  help: give wg0 an address inside the subnet: did you mean \
             fd08::1/64?\n\
             DIR/vpn.toml:3:71: \"wg0\" is not an address with a prefix length\n  help: write \
             an address with its subnet's prefix length, e.g. \"10.8.0.1/24\" or \
             \"fd08::1/64\"\n\
             5 problems; nothing was applied"
    );
}

#[test]
fn interface_addresses_with_prefix_length_0_are_refused() {
    let fx = Fixture::new();
    assert_eq!(
        fx.error(
            "[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\naddresses = [\"10.8.0.1/0\", \
                 \"fd08::1/0\"]\n"
        ),
        "DIR/vpn.toml:3:14: address 10.8.0.1/0 of wg0 has prefix length 0: its subnet \
             would be every IPv4 address\n  help: give the prefix length of wg0's subnet, e.g. \
             \"10.8.0.1/24\"\n\
             DIR/vpn.toml:3:28: address fd08::1/0 of wg0 has prefix length 0: its subnet would \
             be every IPv6 address\n  help: give the prefix length of wg0's subnet, e.g. \
             \"fd08::1/64\"\n\
             2 problems; nothing was applied"
    );
}

#[test]
fn two_interfaces_with_overlapping_subnets_are_refused() {
    let fx = Fixture::new();
    let wg1 = |addresses: &str| {
        format!(
            "{WG0}\n[wireguard.wg1]\nprivate_key_file = \"wg1.key\"\nlisten_port = 51821\n\
                 addresses = {addresses}\n"
        )
    };
    assert_eq!(
        fx.error(&wg1(r#"["10.8.0.2/24", "fd08:1::1/64", "10.0.0.1/8"]"#)),
        "DIR/vpn.toml:9:14: 10.8.0.2/24 of wg1 overlaps wg0's subnet 10.8.0.0/24 (line 4)\n  \
             help: the kernel routes each address out of one interface only, so one of the two \
             would silently lose it: give wg1 and wg0 separate subnets\n\
             DIR/vpn.toml:9:45: 10.0.0.1/8 of wg1 overlaps wg0's subnet 10.8.0.0/24 (line 4)\n  \
             help: the kernel routes each address out of one interface only, so one of the two \
             would silently lose it: give wg1 and wg0 separate subnets\n\
             2 problems; nothing was applied"
    );
    // Neighbouring subnets, and two addresses of one interface in one subnet, are fine.
    fx.parse(&wg1(r#"["10.8.1.1/24", "fd09::1/64"]"#)).unwrap();
    fx.parse(
        &format!("{WG0}addresses = [\"10.8.0.1/24\", \"10.8.0.2/24\"]\n").replacen(
            "addresses = [\"10.8.0.1/24\", \"fd08::1/64\"]\n",
            "",
            1,
        ),
    )
    .unwrap();
}

#[test]
fn mtu_minimum_depends_on_ipv6() {
    let fx = Fixture::new();
    let v6 = format!("{WG0}mtu = 1279\n");
    assert_eq!(
        fx.error(&v6),
        "DIR/vpn.toml:5:7: mtu 1279 is below 1280, the minimum for IPv6 (wg0 has an IPv6 \
             address)\n  help: use 1280-65535, e.g. mtu = 1420 (WireGuard's default), or leave \
             mtu out"
    );
    let v4 = "[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\naddresses = [\"10.8.0.1/24\"]\n";
    assert_eq!(
        fx.parse(&format!("{v4}mtu = 1279\n")).unwrap().wireguard[0].mtu,
        Some(1279)
    );
    assert_eq!(
        fx.error(&format!("{v4}mtu = 575\n")),
        "DIR/vpn.toml:4:7: mtu 575 is below 576, the minimum for IPv4\n  help: use \
             576-65535, e.g. mtu = 1420 (WireGuard's default), or leave mtu out"
    );
    assert_eq!(
        fx.error(&format!("{v4}mtu = 65536\n")),
        "DIR/vpn.toml:4:7: mtu 65536 is above 65535, the largest an IP packet can be\n  \
             help: use 576-65535, e.g. mtu = 1420 (WireGuard's default), or leave mtu out"
    );
    assert_eq!(
        fx.parse(&format!("{WG0}mtu = 65535\n")).unwrap().wireguard[0].mtu,
        Some(65535)
    );
}

#[test]
fn persistent_keepalive_zero_is_refused() {
    let fx = Fixture::new();
    let peer = |keepalive: &str| {
        format!(
            "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npublic_key = \"<phone>\"\npersistent_keepalive = {keepalive}\n"
        )
    };
    assert_eq!(
        fx.error(&peer("0")),
        "DIR/vpn.toml:8:24: persistent_keepalive must be 1-65535 seconds, not 0\n  help: \
             leave persistent_keepalive out to turn keepalive off"
    );
    assert_eq!(
        fx.error(&peer("65536")),
        "DIR/vpn.toml:8:24: persistent_keepalive must be 1-65535 seconds, not 65536\n  \
             help: 25 keeps most NAT mappings open: persistent_keepalive = 25"
    );
    let config = fx.parse(&peer("65535")).unwrap();
    assert_eq!(
        config.wireguard[0].peers[0].persistent_keepalive,
        Some(65535)
    );
}

#[test]
fn fwmark_is_any_u32_and_zero_is_none() {
    let fx = Fixture::new();
    let mark = |fwmark: &str| format!("{WG0}fwmark = {fwmark}\n");
    assert_eq!(fx.parse(&mark("0")).unwrap().wireguard[0].fwmark, None);
    assert_eq!(
        fx.parse(&mark("0xffffffff")).unwrap().wireguard[0].fwmark,
        Some(u32::MAX)
    );
    for bad in ["-1", "0x100000000"] {
        assert_eq!(
            fx.error(&mark(bad)),
            format!(
                "DIR/vpn.toml:5:10: fwmark {} does not fit in 32 bits\n  help: use 1 to \
                     0xffffffff, e.g. fwmark = 0x5182, or leave fwmark out",
                if bad == "-1" { "-1" } else { "4294967296" }
            )
        );
    }
}

#[test]
fn endpoints_are_checked_but_not_resolved() {
    let fx = Fixture::new();
    let text = format!(
        "{WG0}public_endpoint = \"home.example.org\"\n\
             [[wireguard.wg0.peers]]\nname = \"phone\"\npublic_key = \"<phone>\"\nendpoint = \"2001:db8::1:51820\"\n"
    );
    assert_eq!(
        fx.error(&text),
        "DIR/vpn.toml:5:19: \"home.example.org\" has no port: write host:port, e.g. \
             vpn.example.org:51820\n  help: write how clients reach this router from the \
             internet as host:port, e.g. public_endpoint = \"home.example.org:51820\"\n\
             DIR/vpn.toml:9:12: \"2001:db8::1:51820\": write IPv6 endpoints in brackets, e.g. \
             [2001:db8::1]:51820\n  help: write the peer's address as host:port, e.g. \
             endpoint = \"peer.example.org:51820\" or \"[2001:db8::1]:51820\"\n\
             2 problems; nothing was applied"
    );
    // A name that does not resolve is fine: only `up` looks it up.
    let config = fx
            .parse(&format!(
                "{WG0}[[wireguard.wg0.peers]]\nname = \"phone\"\npublic_key = \"<phone>\"\nendpoint = \"peer.invalid:51820\"\n"
            ))
            .unwrap();
    assert_eq!(
        config.wireguard[0].peers[0].endpoint.as_ref().unwrap().host,
        "peer.invalid"
    );
}

#[test]
fn lan_and_client_dns_are_checked() {
    let fx = Fixture::new();
    let text = format!(
        "[router]\nlan = [\"192.168.1.1/24\", \"lan\"]\n\n{WG0}client_dns = [\"192.168.1.1:53\"]\n"
    );
    assert_eq!(
        fx.error(&text),
        "DIR/vpn.toml:2:8: 192.168.1.1/24 has bits set after its prefix length (its \
             network is 192.168.1.0/24)\n  help: did you mean 192.168.1.1/32 or \
             192.168.1.0/24?\n\
             DIR/vpn.toml:2:26: \"lan\" is not an IP prefix\n  help: write an address and \
             prefix length, e.g. \"10.8.0.2/32\" or \"192.168.1.0/24\"\n\
             DIR/vpn.toml:8:15: \"192.168.1.1:53\" is not an IP address\n  help: client_dns \
             lists DNS servers by address, e.g. client_dns = [\"192.168.1.1\"]\n\
             3 problems; nothing was applied"
    );
}

/// Every problem is reported, in file order, however they are spread.
#[test]
fn all_problems_are_reported_at_once() {
    let fx = Fixture::new();
    let text = "[wireguard.wg1]
private_key_file = \"missing.key\"
listen_port = 0
addresses = [\"10.8.1.1/24\"]

[[wireguard.wg1.peers]]
name = \"phone\"
public_key = \"nope\"
allowed_ips = [\"10.8.1.2/24\"]
persistent_keepalive = 0

[wireguard.wg0]
private_key_file = \"wg0.key\"
mtu = 100
";
    assert_eq!(
        fx.error(text),
        "DIR/vpn.toml:2:20: cannot read DIR/missing.key: No such file or directory (os \
             error 2)\n  help: create it with `(umask 077; vpn-ctl genkey > DIR/missing.key)`, \
             or correct the path (relative paths start at DIR)\n\
             DIR/vpn.toml:3:15: listen_port 0 is not a port number (1-65535)\n  help: use a \
             free UDP port, e.g. listen_port = 51820, or leave listen_port out for a random \
             one\n\
             DIR/vpn.toml:8:14: the public_key of peer \"phone\" is not a WireGuard key\n  \
             help: a public key is 44 characters of base64, as `wg pubkey` prints it; this one \
             has 4\n\
             DIR/vpn.toml:9:16: 10.8.1.2/24 has bits set after its prefix length (its network \
             is 10.8.1.0/24)\n  help: did you mean 10.8.1.2/32 or 10.8.1.0/24?\n\
             DIR/vpn.toml:10:24: persistent_keepalive must be 1-65535 seconds, not 0\n  help: \
             leave persistent_keepalive out to turn keepalive off\n\
             DIR/vpn.toml:14:7: mtu 100 is below 576, the minimum for IPv4\n  help: use \
             576-65535, e.g. mtu = 1420 (WireGuard's default), or leave mtu out\n\
             6 problems; nothing was applied"
    );
}

#[test]
fn syntax_errors_come_before_validation() {
    let fx = Fixture::new();
    assert_eq!(
        fx.error("[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\nlisten_port = \"51820\"\n"),
        "DIR/vpn.toml:3:15: `listen_port` must be an integer, not the string \"51820\"\n  \
             help: write it like this: listen_port = 51820"
    );
}

#[test]
fn shell_words() {
    assert_eq!(
        shell_quote(Path::new("/etc/vpn-ctl/wg0.key")),
        "/etc/vpn-ctl/wg0.key"
    );
    assert_eq!(
        shell_quote(Path::new("/etc/my keys/it's")),
        r"'/etc/my keys/it'\''s'"
    );
}

// [ipsec.NAME]

/// The seed's OpenWrt side: left = this router (192.168.2.0/24), right = the FRITZ!Box
/// (192.168.1.0/24), as its ipsec.conf and ipsec.secrets say.
const SEED: &str = r#"[router]
wan = "eth0"
lan = ["192.168.2.0/24"]

[ipsec.fritzbox]
keying = "ike"
local_gateway = "left.domain.com"
remote_gateway = "right.domain.com"
local_subnets = ["192.168.2.0/24"]
remote_subnets = ["192.168.1.0/24"]
local_id = "left.domain.com"
remote_id = "right.domain.com"
psk_file = "fritzbox.psk"
ike_version = "ikev1-aggressive"
ike_proposals = ["aes256-sha1-modp1024"]
esp_proposals = ["aes256-sha1-modp1024"]
allow_weak = ["modp1024", "sha1"]
ike_lifetime = 3600
esp_lifetime = 28800
dpd = 30
nat_traversal = true
watchdog_probe = "192.168.1.1"
"#;

/// Two Linux routers with static keys; 11 lines.
const OFFICE: &str = r#"[ipsec.office]
keying = "static"
local_gateway = "198.51.100.1"
remote_gateway = "203.0.113.1"
local_subnets = ["192.168.2.0/24"]
remote_subnets = ["192.168.3.0/24"]
esp = "aes256gcm16"
spi_out = 0x1001
spi_in = 0x1002
key_out_file = "office-out.key"
key_in_file = "office-in.key"
"#;

/// A fixture with the seed's pre-shared key and the office's two keys.
fn site_fixture() -> Fixture {
    let fx = Fixture::new();
    write(&fx.path("fritzbox.psk"), "VPNPassword\n", 0o600);
    write(
        &fx.path("office-out.key"),
        &format!("0x{}\n", "11".repeat(36)),
        0o600,
    );
    // od's layout, spread over lines, is fine too.
    let spaced: Vec<String> = (0..36).map(|i| format!(" {:02x}", 0x80 + i)).collect();
    write(
        &fx.path("office-in.key"),
        &format!("{}\n{}\n", spaced[..16].concat(), spaced[16..].concat()),
        0o600,
    );
    fx
}

/// `text` with its line `field = ...` replaced by `field = value` (or dropped when
/// `value` is empty).
fn set(text: &str, field: &str, value: &str) -> String {
    let prefix = format!("{field} = ");
    assert!(text.lines().any(|l| l.starts_with(&prefix)), "{field}");
    text.lines()
        .filter_map(|l| {
            if !l.starts_with(&prefix) {
                Some(format!("{l}\n"))
            } else if value.is_empty() {
                None
            } else {
                Some(format!("{prefix}{value}\n"))
            }
        })
        .collect()
}

#[test]
fn seed_openwrt_side_parses_into_the_model() {
    let fx = site_fixture();
    let config = fx.parse(SEED).unwrap();
    assert_eq!(
        config.router.lan,
        ["192.168.2.0/24".parse::<IpNet>().unwrap()]
    );
    let [site] = &config.ipsec[..] else {
        panic!("{:?}", config.ipsec)
    };
    assert_eq!(site.name, "fritzbox");
    assert_eq!(
        site.local_gateway,
        Some(Gateway::Name("left.domain.com".into()))
    );
    assert_eq!(
        site.remote_gateway,
        Gateway::Name("right.domain.com".into())
    );
    assert_eq!(
        site.local_subnets,
        ["192.168.2.0/24".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        site.remote_subnets,
        ["192.168.1.0/24".parse::<IpNet>().unwrap()]
    );
    assert_eq!(site.watchdog_probe, Some("192.168.1.1".parse().unwrap()));
    let Keying::Ike(ike) = &site.keying else {
        panic!("{:?}", site.keying)
    };
    assert_eq!(ike.version, IkeVersion::V1Aggressive);
    assert_eq!(ike.local_id, Some(Identity::Fqdn("left.domain.com".into())));
    assert_eq!(
        ike.remote_id,
        Some(Identity::Fqdn("right.domain.com".into()))
    );
    assert_eq!(ike.psk.expose(), b"VPNPassword");
    assert_eq!(ike.psk_file, fx.path("fritzbox.psk"));
    assert_eq!(ike.ike_proposals, ["aes256-sha1-modp1024"]);
    assert_eq!(ike.esp_proposals, ["aes256-sha1-modp1024"]);
    assert_eq!(ike.ike_lifetime, Duration::from_secs(3600));
    assert_eq!(ike.esp_lifetime, Duration::from_secs(8 * 3600));
    assert_eq!(ike.dpd, Some(Duration::from_secs(30)));
    assert!(ike.nat_traversal);
    // Accepted because named, and still worth a warning.
    assert_eq!(ike.weak_algorithms(), ["sha1", "modp1024"]);
    assert!(!format!("{config:?}").contains("VPNPassword"));
}

#[test]
fn static_site_parses_into_the_model() {
    let fx = site_fixture();
    let config = fx.parse(OFFICE).unwrap();
    let site = &config.ipsec[0];
    assert_eq!(site.name, "office");
    assert_eq!(
        site.local_gateway,
        Some(Gateway::Address("198.51.100.1".parse().unwrap()))
    );
    assert_eq!(
        site.remote_gateway,
        Gateway::Address("203.0.113.1".parse().unwrap())
    );
    assert_eq!(site.watchdog_probe, None);
    let Keying::Static(keys) = &site.keying else {
        panic!("{:?}", site.keying)
    };
    assert_eq!(keys.esp, StaticAead::Aes256Gcm16);
    assert_eq!((keys.spi_out, keys.spi_in), (0x1001, 0x1002));
    assert_eq!(keys.key_out.expose(), [0x11; 36]);
    assert_eq!(keys.key_in.expose(), (0x80..0x80 + 36).collect::<Vec<u8>>());
    assert_eq!(keys.key_out_file, fx.path("office-out.key"));
    assert_eq!(keys.key_in_file, fx.path("office-in.key"));

    // AES-128-GCM takes 20 bytes.
    write(&fx.path("office-out.key"), &"22".repeat(20), 0o600);
    write(&fx.path("office-in.key"), &"33".repeat(20), 0o400);
    let config = fx.parse(&set(OFFICE, "esp", "\"aes128gcm16\"")).unwrap();
    let Keying::Static(keys) = &config.ipsec[0].keying else {
        panic!()
    };
    assert_eq!(
        (keys.esp, keys.key_in.expose()),
        (StaticAead::Aes128Gcm16, &[0x33; 20][..])
    );
}

#[test]
fn ike_defaults() {
    let fx = site_fixture();
    let text = "[ipsec.lab]\nkeying = \"ike\"\nremote_gateway = \"2001:db8::2\"\n\
                    local_subnets = [\"fd00:2::/64\"]\nremote_subnets = [\"fd00:1::/64\"]\n\
                    psk_file = \"fritzbox.psk\"\n";
    let config = fx.parse(text).unwrap();
    let site = &config.ipsec[0];
    assert_eq!(site.local_gateway, None);
    let Keying::Ike(ike) = &site.keying else {
        panic!()
    };
    assert_eq!(ike.version, IkeVersion::V2);
    assert_eq!((&ike.local_id, &ike.remote_id), (&None, &None));
    assert_eq!(ike.ike_proposals, ["aes256gcm16-prfsha256-ecp256"]);
    assert_eq!(ike.esp_proposals, ["aes256gcm16-ecp256"]);
    assert_eq!(ike.ike_lifetime, Duration::from_secs(28800));
    assert_eq!(ike.esp_lifetime, Duration::from_secs(3600));
    assert_eq!(ike.dpd, Some(Duration::from_secs(30)));
    assert!(ike.nat_traversal);
    assert!(ike.weak_algorithms().is_empty());

    let text = format!("{text}ike_version = \"ikev1-main\"\ndpd = 0\nnat_traversal = false\n");
    let Keying::Ike(ike) = &fx.parse(&text).unwrap().ipsec[0].keying else {
        panic!()
    };
    assert_eq!(ike.version, IkeVersion::V1Main);
    assert_eq!(ike.ike_proposals, ["aes256-sha256-modp2048"]);
    assert_eq!(ike.esp_proposals, ["aes256-sha256-modp2048"]);
    assert_eq!(ike.dpd, None);
    assert!(!ike.nat_traversal);
}

#[test]
fn sites_keep_file_order() {
    let fx = site_fixture();
    let text = format!(
        "{}\n{}",
        SEED.replace("[ipsec.fritzbox]", "[ipsec.zz]"),
        OFFICE
    );
    let config = fx.parse(&text).unwrap();
    let names: Vec<&str> = config.ipsec.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["zz", "office"]);
}

#[test]
fn keying_is_required_and_ike_or_static() {
    let fx = site_fixture();
    assert_eq!(
        fx.error(&set(OFFICE, "keying", "")),
        "DIR/vpn.toml:1:1: site office has no keying\n  help: use keying = \"ike\" to \
            have strongSwan negotiate the keys (with a FRITZ!Box or any other IKE router), \
            or keying = \"static\" for fixed keys from files between two Linux routers"
    );
    assert_eq!(
        fx.error(&set(OFFICE, "keying", "\"manual\"")),
        "DIR/vpn.toml:2:10: keying \"manual\" is neither \"ike\" nor \"static\"\n  help: \
            use keying = \"ike\" to have strongSwan negotiate the keys (with a FRITZ!Box or \
            any other IKE router), or keying = \"static\" for fixed keys from files between \
            two Linux routers"
    );
}

#[test]
fn fields_of_the_other_keying_name_the_right_one() {
    let fx = site_fixture();
    let text = format!("{OFFICE}psk_file = \"fritzbox.psk\"\nike_version = \"ikev2\"\ndpd = 30\n");
    assert_eq!(
        fx.error(&text),
        "DIR/vpn.toml:12:12: `psk_file` is for keying = \"ike\", but site office has \
            keying = \"static\"\n  help: static keying installs fixed keys from \
            key_out_file and key_in_file and negotiates nothing: remove psk_file, or set \
            keying = \"ike\"\nDIR/vpn.toml:13:15: `ike_version` is for keying = \"ike\", \
            but site office has keying = \"static\"\n  help: static keying installs fixed \
            keys from key_out_file and key_in_file and negotiates nothing: remove \
            ike_version, or set keying = \"ike\"\nDIR/vpn.toml:14:7: `dpd` is for keying = \
            \"ike\", but site office has keying = \"static\"\n  help: static keying \
            installs fixed keys from key_out_file and key_in_file and negotiates nothing: \
            remove dpd, or set keying = \"ike\"\n3 problems; nothing was applied"
    );
    let text = format!(
        "{SEED}esp = \"aes256-sha1\"\nspi_in = 0x1002\nkey_out_file = \"office-out.key\"\n"
    );
    assert_eq!(
        fx.error(&text),
        "DIR/vpn.toml:23:7: `esp` is for keying = \"static\", but site fritzbox has \
            keying = \"ike\"\n  help: with IKE, ESP's algorithms are negotiated: write them \
            as proposals, e.g. esp_proposals = [\"aes256gcm16-ecp256\"], or set keying = \
            \"static\"\nDIR/vpn.toml:24:10: `spi_in` is for keying = \"static\", but site \
            fritzbox has keying = \"ike\"\n  help: with IKE, keys and SPIs are negotiated: \
            remove spi_in, or set keying = \"static\"\nDIR/vpn.toml:25:16: `key_out_file` \
            is for keying = \"static\", but site fritzbox has keying = \"ike\"\n  help: \
            with IKE, keys and SPIs are negotiated: remove key_out_file, or set keying = \
            \"static\"\n3 problems; nothing was applied"
    );
}

#[test]
fn required_fields_per_keying() {
    let fx = site_fixture();
    assert_eq!(
        fx.error("[ipsec.office]\nkeying = \"static\"\n"),
        "DIR/vpn.toml:1:1: site office has no remote_gateway\n  help: add the other \
            router's public address or DNS name, e.g. remote_gateway = \
            \"right.domain.com\"\nDIR/vpn.toml:1:1: site office has no local_subnets\n  \
            help: list the networks behind this router that the tunnel joins, e.g. \
            local_subnets = [\"192.168.2.0/24\"]\nDIR/vpn.toml:1:1: site office has no \
            remote_subnets\n  help: list the networks behind the other router, e.g. \
            remote_subnets = [\"192.168.1.0/24\"]\nDIR/vpn.toml:1:1: site office has no \
            local_gateway\n  help: static keying needs this router's public address: add \
            e.g. local_gateway = \"198.51.100.1\"\nDIR/vpn.toml:1:1: site office has no \
            esp\n  help: static keying uses one AEAD both ways: add esp = \"aes256gcm16\" \
            (or \"aes128gcm16\")\nDIR/vpn.toml:1:1: site office has no spi_out\n  help: add \
            e.g. spi_out = 0x1001: any number from 0x100 to 0xffffffff, the same as the \
            other router's spi_in\nDIR/vpn.toml:1:1: site office has no spi_in\n  help: add \
            e.g. spi_in = 0x1002: any number from 0x100 to 0xffffffff, the same as the \
            other router's spi_out\nDIR/vpn.toml:1:1: site office has no key_out_file\n  \
            help: add key_out_file = \"office-out.key\" and make the key with `(umask 077; \
            head -c 36 /dev/urandom | od -An -tx1 | tr -d ' \\n' > DIR/office-out.key)`; \
            the other router uses the same file as its key_in_file\nDIR/vpn.toml:1:1: site \
            office has no key_in_file\n  help: add key_in_file = \"office-in.key\" and make \
            the key with `(umask 077; head -c 36 /dev/urandom | od -An -tx1 | tr -d ' \\n' \
            > DIR/office-in.key)`; the other router uses the same file as its \
            key_out_file\n9 problems; nothing was applied"
    );
    assert_eq!(
        fx.error("[ipsec.fritzbox]\nkeying = \"ike\"\n"),
        "DIR/vpn.toml:1:1: site fritzbox has no remote_gateway\n  help: add the other \
            router's public address or DNS name, e.g. remote_gateway = \
            \"right.domain.com\"\nDIR/vpn.toml:1:1: site fritzbox has no local_subnets\n  \
            help: list the networks behind this router that the tunnel joins, e.g. \
            local_subnets = [\"192.168.2.0/24\"]\nDIR/vpn.toml:1:1: site fritzbox has no \
            remote_subnets\n  help: list the networks behind the other router, e.g. \
            remote_subnets = [\"192.168.1.0/24\"]\nDIR/vpn.toml:1:1: site fritzbox has no \
            psk_file\n  help: add psk_file = \"fritzbox.psk\" and put the pre-shared key \
            both sides use in it, or make one with `(umask 077; vpn-ctl genpsk > \
            DIR/fritzbox.psk)`\n4 problems; nothing was applied"
    );
}

#[test]
fn static_gateways_are_addresses_of_one_family() {
    let fx = site_fixture();
    let text = set(
        &set(OFFICE, "local_gateway", "\"left.domain.com\""),
        "remote_gateway",
        "\"right.domain.com\"",
    );
    assert_eq!(
        fx.error(&text),
        "DIR/vpn.toml:3:17: local_gateway \"left.domain.com\" is a DNS name, but static \
            keying needs an address\n  help: the kernel's SAs are bound to addresses: write \
            the IP address, e.g. local_gateway = \"198.51.100.1\", or use keying = \"ike\", \
            which follows DNS names\nDIR/vpn.toml:4:18: remote_gateway \"right.domain.com\" \
            is a DNS name, but static keying needs an address\n  help: the kernel's SAs are \
            bound to addresses: write the IP address, e.g. remote_gateway = \
            \"203.0.113.1\", or use keying = \"ike\", which follows DNS names\n2 problems; \
            nothing was applied"
    );
    assert_eq!(
        fx.error(&set(OFFICE, "remote_gateway", "\"2001:db8::1\"")),
        "DIR/vpn.toml:4:18: remote_gateway 2001:db8::1 is IPv6, local_gateway \
            198.51.100.1 is IPv4\n  help: a tunnel's two ends speak the same IP version: \
            give both gateways IPv4 addresses, or both IPv6"
    );
}

#[test]
fn gateways_are_addresses_or_dns_names() {
    let fx = site_fixture();
    let remote = |gateway: &str| fx.error(&set(SEED, "remote_gateway", gateway));
    assert_eq!(
        remote("\"right domain.com\""),
        "DIR/vpn.toml:8:18: remote_gateway \"right domain.com\" is not an IP address or \
            a DNS name: it contains ' '\n  help: write the other router's public IP address \
            or DNS name, e.g. remote_gateway = \"right.domain.com\""
    );
    assert_eq!(
        remote("\"right.domain.com:500\""),
        "DIR/vpn.toml:8:18: remote_gateway \"right.domain.com:500\" is not an IP address \
            or a DNS name: it contains ':'\n  help: leave the port out (IKE uses UDP ports \
            500 and 4500): remote_gateway = \"right.domain.com\""
    );
    assert_eq!(
        remote("\"[2001:db8::1]\""),
        "DIR/vpn.toml:8:18: remote_gateway \"[2001:db8::1]\" is not an IP address or a \
            DNS name: it contains '['\n  help: write IPv6 addresses without brackets: \
            remote_gateway = \"2001:db8::1\""
    );
    assert_eq!(
        remote("\"192.168.1.300\""),
        "DIR/vpn.toml:8:18: remote_gateway \"192.168.1.300\" is not an IP address or a \
            DNS name: a DNS name does not end in a number\n  help: write the other router's \
            public IP address or DNS name, e.g. remote_gateway = \"right.domain.com\""
    );
    assert_eq!(
        remote("\"right..com\""),
        "DIR/vpn.toml:8:18: remote_gateway \"right..com\" is not an IP address or a DNS \
            name: it has an empty part between dots\n  help: write the other router's \
            public IP address or DNS name, e.g. remote_gateway = \"right.domain.com\""
    );
    assert_eq!(
        remote("\"-right.com\""),
        "DIR/vpn.toml:8:18: remote_gateway \"-right.com\" is not an IP address or a DNS \
            name: its part \"-right\" starts or ends with '-'\n  help: write the other \
            router's public IP address or DNS name, e.g. remote_gateway = \
            \"right.domain.com\""
    );
    assert_eq!(
        remote("\"\""),
        "DIR/vpn.toml:8:18: remote_gateway \"\" is not an IP address or a DNS name: it \
            is empty\n  help: write the other router's public IP address or DNS name, e.g. \
            remote_gateway = \"right.domain.com\""
    );
    assert_eq!(
        fx.error(&set(SEED, "local_gateway", "\"left.domain.com.\"")),
        "DIR/vpn.toml:7:17: local_gateway \"left.domain.com.\" is not an IP address or a \
            DNS name: it ends with '.'\n  help: write this router's public IP address or \
            DNS name, e.g. local_gateway = \"left.domain.com\""
    );
    // Names need not resolve: only `up` looks them up.
    fx.parse(&set(SEED, "remote_gateway", "\"fritz.invalid\""))
        .unwrap();
    fx.parse(&set(SEED, "remote_gateway", "\"2001:db8::1\""))
        .unwrap();
}

#[test]
fn identities_are_fqdns_or_addresses() {
    let fx = site_fixture();
    assert_eq!(
        fx.error(&set(SEED, "local_id", "\"@left.domain.com\"")),
        "DIR/vpn.toml:11:12: local_id \"@left.domain.com\" starts with '@'\n  help: \
            write the name without it: local_id = \"left.domain.com\" (in strongSwan's \
            files '@' means \"a name, not to be resolved\"; vpn-ctl always sends a name as \
            an FQDN identity)"
    );
    assert_eq!(
        fx.error(&set(SEED, "remote_id", "\"admin@right.domain.com\"")),
        "DIR/vpn.toml:12:13: remote_id \"admin@right.domain.com\" is not a DNS name or \
            an IP address: it contains '@'\n  help: an identity is a DNS name (FQDN) such \
            as \"left.domain.com\", or an IP address, and must match what the other side \
            has configured"
    );
    let config = fx
        .parse(&set(SEED, "remote_id", "\"203.0.113.1\""))
        .unwrap();
    let Keying::Ike(ike) = &config.ipsec[0].keying else {
        panic!()
    };
    assert_eq!(
        ike.remote_id,
        Some(Identity::Address("203.0.113.1".parse().unwrap()))
    );
}

#[test]
fn subnets_are_prefixes_without_host_bits() {
    let fx = site_fixture();
    assert_eq!(
        fx.error(&set(
            SEED,
            "remote_subnets",
            "[\"192.168.1.1/24\", \"fritzbox\"]"
        )),
        "DIR/vpn.toml:10:19: 192.168.1.1/24 has bits set after its prefix length (its \
            network is 192.168.1.0/24)\n  help: did you mean 192.168.1.1/32 or \
            192.168.1.0/24?\nDIR/vpn.toml:10:37: \"fritzbox\" is not an IP prefix\n  help: \
            write an address and prefix length, e.g. \"10.8.0.2/32\" or \
            \"192.168.1.0/24\"\n2 problems; nothing was applied"
    );
    assert_eq!(
        fx.error(&set(SEED, "local_subnets", "[]")),
        "DIR/vpn.toml:9:17: local_subnets is empty\n  help: list the networks behind \
            this router that the tunnel joins, e.g. local_subnets = [\"192.168.2.0/24\"]"
    );
}

#[test]
fn remote_subnets_must_not_overlap_local_ones_the_lan_or_wireguard() {
    let fx = site_fixture();
    // Swapped sides.
    assert_eq!(
        fx.error(
            &set(SEED, "remote_subnets", "[\"192.168.2.0/25\"]")
                .replace("lan = [\"192.168.2.0/24\"]", "lan = []")
        ),
        "DIR/vpn.toml:10:19: remote subnet 192.168.2.0/25 overlaps the local subnet \
            192.168.2.0/24\n  help: local_subnets are the networks behind this router, \
            remote_subnets those behind the other one; a network cannot be on both sides \
            (are the two swapped?)\nDIR/vpn.toml:22:18: watchdog_probe 192.168.1.1 is \
            outside the remote subnets of site fritzbox (192.168.2.0/25)\n  help: the \
            watchdog pings through the tunnel, so the address must be behind the other \
            router, e.g. watchdog_probe = \"192.168.2.1\"\n2 problems; nothing was applied"
    );
    // The same LAN on both sides.
    let text = set(SEED, "remote_subnets", "[\"192.168.0.0/16\"]");
    let text = set(&text, "local_subnets", "[\"10.2.0.0/16\"]");
    let text = set(&text, "watchdog_probe", "");
    assert_eq!(
        fx.error(&text),
        "DIR/vpn.toml:10:19: remote subnet 192.168.0.0/16 overlaps this router's LAN \
            192.168.2.0/24 ([router] lan)\n  help: both sides would use the same addresses, \
            and the router could not tell which side an address is on: renumber one of the \
            two LANs"
    );
    let text = format!(
        "{WG0}\n{}",
        set(
            SEED,
            "remote_subnets",
            "[\"192.168.1.0/24\", \"10.8.0.128/25\"]"
        )
    );
    assert_eq!(
        fx.error(&text),
        "DIR/vpn.toml:15:37: remote subnet 10.8.0.128/25 overlaps wg0's subnet \
            10.8.0.0/24\n  help: addresses there would belong both to the tunnel and to \
            wg0: give the other site's network and wg0 separate ranges"
    );
}

#[test]
fn two_sites_remote_subnets_must_not_overlap() {
    let fx = site_fixture();
    let text = format!(
        "{}\n{}",
        SEED,
        set(
            OFFICE,
            "remote_subnets",
            "[\"192.168.1.128/25\", \"192.168.3.0/24\", \"192.168.3.0/24\"]"
        )
    );
    assert_eq!(
        fx.error(&text),
        "DIR/vpn.toml:29:19: remote subnet 192.168.1.128/25 overlaps 192.168.1.0/24 of \
            site fritzbox (line 10)\n  help: a network is reachable through one tunnel \
            only: give each site's remote_subnets their own ranges\nDIR/vpn.toml:29:57: \
            remote subnet 192.168.3.0/24 overlaps 192.168.3.0/24, listed before (line \
            29)\n  help: list each network once\n2 problems; nothing was applied"
    );
}

#[test]
fn subnets_pair_by_ip_version() {
    let fx = site_fixture();
    let text = set(
        SEED,
        "remote_subnets",
        "[\"192.168.1.0/24\", \"fd00:1::/64\"]",
    );
    assert_eq!(
        fx.error(&text),
        "DIR/vpn.toml:10:37: remote subnet fd00:1::/64 is IPv6, but site fritzbox has no \
            IPv6 local_subnets\n  help: traffic flows between a local and a remote subnet \
            of the same IP version: add an IPv6 network to local_subnets, or remove this one"
    );
}

#[test]
fn static_key_files_hold_hex_of_the_key_length() {
    let fx = site_fixture();
    write(&fx.path("office-out.key"), "not hex\n", 0o600);
    write(&fx.path("office-in.key"), &"ab".repeat(32), 0o600);
    assert_eq!(
        fx.error(OFFICE),
        "DIR/vpn.toml:10:16: DIR/office-out.key does not hold a hex key: 'n' is not a \
            hex digit\n  help: a static key file holds 36 bytes as hex digits (a leading 0x \
            and whitespace are fine); make one with `(umask 077; head -c 36 /dev/urandom | \
            od -An -tx1 | tr -d ' \\n' > DIR/office-out.key)` and give the other router the \
            same file as its key_in_file\nDIR/vpn.toml:11:15: DIR/office-in.key holds 32 \
            bytes, but aes256gcm16 needs 36 (a 32-byte key and a 4-byte salt)\n  help: make \
            a key of the right length with `(umask 077; head -c 36 /dev/urandom | od -An \
            -tx1 | tr -d ' \\n' > DIR/office-in.key)` and give the other router the same \
            file as its key_out_file\n2 problems; nothing was applied"
    );
    write(&fx.path("office-out.key"), "abc", 0o600);
    write(&fx.path("office-in.key"), "", 0o600);
    assert_eq!(
        fx.error(OFFICE),
        "DIR/vpn.toml:10:16: DIR/office-out.key does not hold a hex key: 3 hex digits \
            are no whole bytes\n  help: a static key file holds 36 bytes as hex digits (a \
            leading 0x and whitespace are fine); make one with `(umask 077; head -c 36 \
            /dev/urandom | od -An -tx1 | tr -d ' \\n' > DIR/office-out.key)` and give the \
            other router the same file as its key_in_file\nDIR/vpn.toml:11:15: \
            DIR/office-in.key does not hold a hex key: it is empty\n  help: a static key \
            file holds 36 bytes as hex digits (a leading 0x and whitespace are fine); make \
            one with `(umask 077; head -c 36 /dev/urandom | od -An -tx1 | tr -d ' \\n' > \
            DIR/office-in.key)` and give the other router the same file as its \
            key_out_file\n2 problems; nothing was applied"
    );
}

#[test]
fn static_key_files_are_private_and_present() {
    let fx = site_fixture();
    fs::set_permissions(fx.path("office-in.key"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::remove_file(fx.path("office-out.key")).unwrap();
    assert_eq!(
        fx.error(OFFICE),
        "DIR/vpn.toml:10:16: cannot read DIR/office-out.key: No such file or directory \
            (os error 2)\n  help: create it with `(umask 077; head -c 36 /dev/urandom | od \
            -An -tx1 | tr -d ' \\n' > DIR/office-out.key)`, or correct the path (relative \
            paths start at DIR)\nDIR/vpn.toml:11:15: DIR/office-in.key is accessible to \
            other users (mode 0640)\n  help: `chmod 600 DIR/office-in.key`: only its owner \
            may read a key\n2 problems; nothing was applied"
    );
}

#[test]
fn the_same_key_both_ways_is_refused() {
    let fx = site_fixture();
    assert_eq!(
        fx.error(&set(OFFICE, "key_in_file", "\"office-out.key\"")),
        "DIR/vpn.toml:11:15: key_in_file is the same file as key_out_file\n  help: each \
            direction needs its own key (AES-GCM with one key both ways repeats nonces, \
            which breaks it): make a second one with `(umask 077; head -c 36 /dev/urandom | \
            od -An -tx1 | tr -d ' \\n' > DIR/office-in.key)` and set key_in_file = \
            \"office-in.key\""
    );
    fs::copy(fx.path("office-out.key"), fx.path("office-in.key")).unwrap();
    assert_eq!(
        fx.error(OFFICE),
        "DIR/vpn.toml:11:15: key_in_file holds the same key as key_out_file\n  help: \
            each direction needs its own key (AES-GCM with one key both ways repeats \
            nonces, which breaks it): make another with `(umask 077; head -c 36 \
            /dev/urandom | od -An -tx1 | tr -d ' \\n' > DIR/office-in.key)`, and give it to \
            the other router as its key_out_file"
    );
}

#[test]
fn spis_are_unreserved_distinct_and_unique() {
    let fx = site_fixture();
    let text = set(&set(OFFICE, "spi_out", "255"), "spi_in", "0x100000000");
    assert_eq!(
        fx.error(&text),
        "DIR/vpn.toml:8:11: spi_out 0xff is below 0x100: SPIs 1-255 are reserved (RFC \
            4303)\n  help: use a number from 0x100 to 0xffffffff, e.g. spi_out = \
            0x1001\nDIR/vpn.toml:9:10: spi_in 4294967296 does not fit in 32 bits\n  help: \
            use a number from 0x100 to 0xffffffff, e.g. spi_in = 0x1002\n2 problems; \
            nothing was applied"
    );
    assert_eq!(
        fx.error(&set(OFFICE, "spi_in", "0x1001")),
        "DIR/vpn.toml:9:10: spi_in 0x1001 is the same as spi_out\n  help: each direction \
            needs its own SPI, e.g. spi_in = 0x1002; the other router has them swapped (its \
            spi_out is this spi_in)"
    );
    let second = OFFICE.replace("[ipsec.office]", "[ipsec.branch]");
    let second = set(&second, "remote_subnets", "[\"192.168.4.0/24\"]");
    let second = set(&second, "spi_out", "0x1002");
    let second = set(&second, "spi_in", "0x2002");
    assert_eq!(
        fx.error(&format!("{OFFICE}\n{second}")),
        "DIR/vpn.toml:20:11: spi_out 0x1002 is already site office's spi_in (line 9)\n  \
            help: every SPI on this router must be different: pick another, e.g. spi_out = \
            0x1003 (and the same on the other router)"
    );
    // 0x100 and 0xffffffff are the ends of the range.
    fx.parse(&set(
        &set(OFFICE, "spi_out", "0x100"),
        "spi_in",
        "0xffffffff",
    ))
    .unwrap();
}

#[test]
fn psk_file_is_text_and_private() {
    let fx = site_fixture();
    write(&fx.path("fritzbox.psk"), "\n", 0o644);
    assert_eq!(
        fx.error(SEED),
        "DIR/vpn.toml:13:12: DIR/fritzbox.psk is empty\n  help: write the pre-shared key \
            both sides use into it as one line of text, or make one with `(umask 077; \
            vpn-ctl genpsk > DIR/fritzbox.psk)`\nDIR/vpn.toml:13:12: DIR/fritzbox.psk is \
            accessible to other users (mode 0644)\n  help: `chmod 600 DIR/fritzbox.psk`: \
            only its owner may read a key\n2 problems; nothing was applied"
    );
    fs::remove_file(fx.path("fritzbox.psk")).unwrap();
    assert_eq!(
        fx.error(SEED),
        "DIR/vpn.toml:13:12: cannot read DIR/fritzbox.psk: No such file or directory (os \
            error 2)\n  help: create it with `(umask 077; vpn-ctl genpsk > \
            DIR/fritzbox.psk)`, or correct the path (relative paths start at DIR)"
    );
    // Spaces belong to the key; only the line end goes.
    write(&fx.path("fritzbox.psk"), " pass phrase \r\n", 0o600);
    let Keying::Ike(ike) = &fx.parse(SEED).unwrap().ipsec[0].keying else {
        panic!()
    };
    assert_eq!(ike.psk.expose(), b" pass phrase ");
}

#[test]
fn weak_algorithms_must_be_allowed_by_name() {
    let fx = site_fixture();
    assert_eq!(
        fx.error(&set(SEED, "allow_weak", "")),
        "DIR/vpn.toml:15:18: \"aes256-sha1-modp1024\" uses weak algorithms sha1, \
            modp1024\n  help: these are breakable today; prefer e.g. \
            \"aes256-sha256-modp2048\". If the other side offers nothing better (many \
            FRITZ!Box setups need modp1024 and sha1), accept them by name: allow_weak = \
            [\"sha1\", \"modp1024\"]\nDIR/vpn.toml:16:18: \"aes256-sha1-modp1024\" uses \
            weak algorithms sha1, modp1024\n  help: these are breakable today; prefer \
            e.g. \"aes256-sha256-modp2048\". If the other side offers nothing better \
            (many FRITZ!Box setups need modp1024 and sha1), accept them by name: \
            allow_weak = [\"sha1\", \"modp1024\"]\n2 problems; nothing was applied"
    );
    assert_eq!(
        fx.error(&set(SEED, "allow_weak", "[\"modp1024\", \"aes256\"]")),
        "DIR/vpn.toml:15:18: \"aes256-sha1-modp1024\" uses weak algorithm sha1\n  \
            help: these are breakable today; prefer e.g. \"aes256-sha256-modp2048\". If \
            the other side offers nothing better (many FRITZ!Box setups need modp1024 \
            and sha1), accept them by name: allow_weak = [\"modp1024\", \
            \"sha1\"]\nDIR/vpn.toml:16:18: \"aes256-sha1-modp1024\" uses weak algorithm \
            sha1\n  help: these are breakable today; prefer e.g. \
            \"aes256-sha256-modp2048\". If the other side offers nothing better (many \
            FRITZ!Box setups need modp1024 and sha1), accept them by name: allow_weak = \
            [\"modp1024\", \"sha1\"]\nDIR/vpn.toml:17:27: allow_weak names \"aes256\", \
            which is not a weak algorithm\n  help: allow_weak takes the weak algorithms \
            a proposal uses: modp768, modp1024, modp1536, sha1, md5, 3des, des\n3 \
            problems; nothing was applied"
    );
    let text = set(SEED, "esp_proposals", "[\"3des-md5\"]");
    assert_eq!(
        fx.error(&text),
        "DIR/vpn.toml:16:18: \"3des-md5\" uses weak algorithms 3des, md5\n  help: \
            these are breakable today; prefer e.g. \"aes256-sha256-modp2048\". If the \
            other side offers nothing better (many FRITZ!Box setups need modp1024 and \
            sha1), accept them by name: allow_weak = [\"modp1024\", \"sha1\", \"3des\", \
            \"md5\"]"
    );
}

#[test]
fn proposals_follow_strongswan_syntax() {
    let fx = site_fixture();
    let text = set(SEED, "ike_version", "\"ikev2\"");
    let text = set(&text, "allow_weak", "");
    let proposals = |ike: &str, esp: &str| {
        fx.error(&set(
            &set(&text, "ike_proposals", ike),
            "esp_proposals",
            esp,
        ))
    };
    assert_eq!(
        proposals(
            "[\"aes257-sha256-modp2048\"]",
            "[\"aes256gcm16-prfsha256\"]"
        ),
        "DIR/vpn.toml:15:18: \"aes257\" in proposal \"aes257-sha256-modp2048\" is not an \
            algorithm vpn-ctl knows\n  help: write strongSwan's algorithm keywords joined \
            by '-' (cipher-integrity-group), e.g. ike_proposals = \
            [\"aes256gcm16-prfsha256-ecp256\"]\nDIR/vpn.toml:16:18: \"prfsha256\" in \
            proposal \"aes256gcm16-prfsha256\" is a pseudo-random function, which ESP \
            proposals do not have\n  help: remove \"prfsha256\" from it\n2 problems; \
            nothing was applied"
    );
    assert_eq!(
        proposals("[\"aes256-sha256\"]", "[\"aes256-modp2048\"]"),
        "DIR/vpn.toml:15:18: proposal \"aes256-sha256\" has no Diffie-Hellman \
            group\n  help: add one, e.g. \"aes256-sha256-ecp256\"\nDIR/vpn.toml:16:18: \
            proposal \"aes256-modp2048\" has no integrity algorithm\n  help: add one, \
            e.g. \"aes256-sha256-modp2048\", or use a cipher that includes it, such as \
            aes256gcm16\n2 problems; nothing was applied"
    );
    assert_eq!(
        proposals(
            "[\"aes256gcm16-ecp256\"]",
            "[\"aes256gcm16-aes256-sha256\"]"
        ),
        "DIR/vpn.toml:15:18: proposal \"aes256gcm16-ecp256\" has no pseudo-random \
            function\n  help: an AEAD cipher in IKE needs a pseudo-random function \
            named: add e.g. prfsha256, as in \
            \"aes256gcm16-prfsha256-ecp256\"\nDIR/vpn.toml:16:18: proposal \
            \"aes256gcm16-aes256-sha256\" mixes the AEAD aes256gcm16 with the cipher \
            aes256\n  help: strongSwan cannot combine the two kinds in one proposal: \
            write them as two proposals\n2 problems; nothing was applied"
    );
    assert_eq!(
        proposals("[\"sha256-modp2048\"]", "[\"aes256-sha256-esn\"]"),
        "DIR/vpn.toml:15:18: proposal \"sha256-modp2048\" has no encryption algorithm\n  \
            help: add a cipher, e.g. aes256 (with an integrity algorithm) or aes256gcm16"
    );
    assert_eq!(
        proposals("[]", "[\"\"]"),
        "DIR/vpn.toml:15:17: ike_proposals is empty\n  help: list what the other side \
            accepts, e.g. ike_proposals = [\"aes256gcm16-prfsha256-ecp256\"], or leave \
            ike_proposals out for that default\nDIR/vpn.toml:16:18: an empty proposal in \
            esp_proposals\n  help: write strongSwan's algorithm keywords joined by '-' \
            (cipher-integrity-group), e.g. esp_proposals = [\"aes256gcm16-ecp256\"]\n2 \
            problems; nothing was applied"
    );
    let ok = set(
        &text,
        "ike_proposals",
        "[\"aes256gcm16-prfsha384-ecp384\", \"aes128-sha256-x25519\"]",
    );
    let ok = set(
        &ok,
        "esp_proposals",
        "[\"chacha20poly1305-curve25519-esn\", \"aes128gcm16\"]",
    );
    fx.parse(&ok).unwrap();
}

#[test]
fn ikev1_has_no_aead_for_ike() {
    let fx = site_fixture();
    assert_eq!(
        fx.error(&set(
            SEED,
            "ike_proposals",
            "[\"aes256gcm16-prfsha256-ecp256\"]"
        )),
        "DIR/vpn.toml:15:18: \"aes256gcm16-prfsha256-ecp256\" uses the AEAD aes256gcm16, \
            which IKEv1 cannot use for the IKE SA\n  help: use a cipher with an integrity \
            algorithm, e.g. ike_proposals = [\"aes256-sha256-modp2048\"] (ESP may use AEADs \
            with IKEv1)"
    );
    // ESP may.
    fx.parse(&set(SEED, "esp_proposals", "[\"aes256gcm16-modp1024\"]"))
        .unwrap();
}

#[test]
fn ike_version_and_aggressive_mode_identity() {
    let fx = site_fixture();
    assert_eq!(
        fx.error(&set(SEED, "ike_version", "\"ikev1\"")),
        "DIR/vpn.toml:14:15: ike_version \"ikev1\" is not \"ikev2\", \"ikev1-main\" or \
            \"ikev1-aggressive\"\n  help: use \"ikev2\" unless the other side speaks only \
            IKEv1; a FRITZ!Box's LAN-to-LAN connection is \"ikev1-aggressive\""
    );
    assert_eq!(
        fx.error(&set(SEED, "local_id", "")),
        "DIR/vpn.toml:13:15: ikev1-aggressive needs a local_id\n  help: in aggressive \
            mode the other side picks the pre-shared key by the identity this router sends: \
            add local_id = \"left.domain.com\", the name the other side has for this router"
    );
}

#[test]
fn watchdog_probe_is_in_the_remote_subnets() {
    let fx = site_fixture();
    assert_eq!(
        fx.error(&set(SEED, "watchdog_probe", "\"192.168.2.1\"")),
        "DIR/vpn.toml:22:18: watchdog_probe 192.168.2.1 is outside the remote subnets of \
            site fritzbox (192.168.1.0/24)\n  help: the watchdog pings through the tunnel, \
            so the address must be behind the other router, e.g. watchdog_probe = \
            \"192.168.1.1\""
    );
    assert_eq!(
        fx.error(&set(SEED, "watchdog_probe", "\"fritz.box\"")),
        "DIR/vpn.toml:22:18: watchdog_probe \"fritz.box\" is not an IP address\n  help: \
            name an address behind the other router that answers ping, e.g. its LAN \
            address: watchdog_probe = \"192.168.1.1\""
    );
}

#[test]
fn lifetimes_and_dpd_have_ranges() {
    let fx = site_fixture();
    let text = set(
        &set(&set(SEED, "ike_lifetime", "30"), "esp_lifetime", "-1"),
        "dpd",
        "86400",
    );
    assert_eq!(
        fx.error(&text),
        "DIR/vpn.toml:18:16: ike_lifetime 30 is outside 60-604800 seconds\n  help: e.g. \
            ike_lifetime = 28800 (the default), or leave ike_lifetime \
            out\nDIR/vpn.toml:19:16: esp_lifetime -1 is outside 60-604800 seconds\n  help: \
            e.g. esp_lifetime = 3600 (the default), or leave esp_lifetime \
            out\nDIR/vpn.toml:20:7: dpd 86400 is outside 0-3600 seconds\n  help: dpd = 30 \
            checks every 30 seconds whether the other side still answers (the default); dpd \
            = 0 turns the check off\n3 problems; nothing was applied"
    );
}

#[test]
fn site_names_are_short_and_plain() {
    let fx = site_fixture();
    assert_eq!(
        fx.error(&SEED.replace("[ipsec.fritzbox]", "[ipsec.\"fritz box\"]")),
        "DIR/vpn.toml:5:8: site name \"fritz box\" contains ' '\n  help: use at most 32 \
            letters, digits, '_', '.' or '-', e.g. [ipsec.fritzbox]"
    );
    assert_eq!(
        fx.error(&SEED.replace("[ipsec.fritzbox]", &format!("[ipsec.{}]", "f".repeat(33)))),
        "DIR/vpn.toml:5:8: site name \"fffffffffffffffffffffffffffffffff\" is 33 \
            characters long; the most is 32\n  help: use at most 32 letters, digits, '_', \
            '.' or '-', e.g. [ipsec.fritzbox]"
    );
    fx.parse(&SEED.replace(
        "[ipsec.fritzbox]",
        &format!("[ipsec.\"{}\"]", "F_r-i.t".repeat(4)),
    ))
    .unwrap();
}
