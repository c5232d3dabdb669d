use std::{fs::Permissions, os::unix::fs::PermissionsExt as _};

use tempfile::TempDir;

use super::*;
use crate::client::render;

/// A configuration with comments everywhere a person puts them.
const CONFIG: &str = r#"# vpn-ctl configuration for the home router
[router]
wan = "eth0"   # the uplink
lan = ["192.168.1.0/24"]

# The road-warrior tunnel.
[wireguard.wg0]
private_key_file = "wg0.key"  # mode 0600
listen_port = 51820
addresses = ["10.8.0.1/24", "fd08::1/64"]
public_endpoint = "home.example.org:51820"
client_dns = ["192.168.1.1"]

# Alice's phone
[[wireguard.wg0.peers]]
name = "alice"
public_key = "YAnz6N7eLtwMXw9JOuZUy0ohmrhCoQeZQXbaMFoc6mE="
allowed_ips = ["10.8.0.2/32", "fd08::2/128"]   # fixed

#   Site link -- keep it last.
[wireguard.wg1]
private_key_file = "wg1.key"
listen_port = 51821
addresses = ["10.9.0.1/30"]
public_endpoint = "home.example.org:51821"
"#;

/// A directory with `vpn.toml` (mode 0640) holding `text`, and the interfaces' keys.
fn setup(text: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for key in ["wg0.key", "wg1.key"] {
        write_secret_file(&dir.path().join(key), &Secret::generate_private()).unwrap();
    }
    let path = dir.path().join("vpn.toml");
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
    (dir, path)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn request(name: &str) -> AddRequest {
    AddRequest {
        name: name.into(),
        interface: Some("wg0".into()),
        ..AddRequest::default()
    }
}

fn interface(addresses: &[&str], peers: &[&[&str]]) -> WgInterface {
    WgInterface {
        name: "wg0".into(),
        private_key: Secret::generate_private(),
        private_key_file: "wg0.key".into(),
        listen_port: None,
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        mtu: None,
        fwmark: None,
        public_endpoint: None,
        client_dns: vec![],
        internet: true,
        peers: peers
            .iter()
            .enumerate()
            .map(|(i, ips)| config::Peer {
                name: format!("peer{i}"),
                public_key: Secret::generate_private().public_key(),
                preshared_key: None,
                preshared_key_file: None,
                allowed_ips: ips.iter().map(|a| a.parse().unwrap()).collect(),
                endpoint: None,
                persistent_keepalive: None,
                route: true,
            })
            .collect(),
        peers_listed: true,
    }
}

fn strings(nets: &[IpNet]) -> Vec<String> {
    nets.iter().map(ToString::to_string).collect()
}

/// The table `add` appends for a peer, as it appears in the file.
fn peer_table(iface: &str, name: &str, key: &PublicKey, ips: &str) -> String {
    format!(
        "\n[[wireguard.{iface}.peers]]\nname = \"{name}\"\npublic_key = \"{key}\"\n\
             preshared_key_file = \"{iface}-{name}.psk\"\nallowed_ips = [{ips}]\n"
    )
}

#[test]
fn next_free_addresses_skip_the_interface_and_the_peers() {
    let iface = interface(
        &["10.8.0.1/24", "fd08::1/64"],
        &[
            &["10.8.0.2/32", "fd08::2/128"],
            &["10.8.0.3/32"],
            // A site behind a peer, overlapping the subnet: .4 to .7.
            &["10.8.0.4/30", "192.168.7.0/24", "fd08::3/128"],
        ],
    );
    let free = next_free_addresses(&iface).unwrap();
    assert_eq!(strings(&free), ["10.8.0.8/32", "fd08::4/128"]);
}

#[test]
fn next_free_addresses_skip_network_and_broadcast_addresses() {
    // The interface is the last host of 10.8.0.4/30: the network address .4 is not
    // handed out, .5 is.
    let iface = interface(&["10.8.0.6/30"], &[]);
    assert_eq!(
        strings(&next_free_addresses(&iface).unwrap()),
        ["10.8.0.5/32"]
    );
    // IPv6 starts after the subnet-router anycast address.
    let iface = interface(&["fd08::ff/64"], &[]);
    assert_eq!(
        strings(&next_free_addresses(&iface).unwrap()),
        ["fd08::1/128"]
    );
}

#[test]
fn next_free_addresses_jump_over_large_used_ranges() {
    let iface = interface(
        &["fd08::1/64"],
        &[&["fd08::/65"], &["fd08:0:0:0:8000::/66"]],
    );
    assert_eq!(
        strings(&next_free_addresses(&iface).unwrap()),
        ["fd08::c000:0:0:0/128"]
    );
}

#[test]
fn a_full_subnet_is_a_clear_error() {
    // .1 is the interface, .2 the only other host; .3 the broadcast address.
    let iface = interface(&["10.9.0.1/30"], &[&["10.9.0.2/32"]]);
    let err = format!("{:#}", next_free_addresses(&iface).unwrap_err());
    assert!(
        err.contains("no free address left in 10.9.0.0/30 of wg0"),
        "{err}"
    );
    let iface = interface(&["fd08::1/64"], &[&["fd08::/64"]]);
    let err = format!("{:#}", next_free_addresses(&iface).unwrap_err());
    assert!(err.contains("no free address left in fd08::/64"), "{err}");
}

#[test]
fn add_peer_keeps_the_rest_of_the_file_byte_for_byte() {
    let mut doc: DocumentMut = CONFIG.parse().unwrap();
    let key = Secret::generate_private().public_key();
    let peer = NewPeer {
        name: "bob".into(),
        public_key: key.clone(),
        preshared_key_file: Some("wg0-bob.psk".into()),
        allowed_ips: vec![
            "10.8.0.3/32".parse().unwrap(),
            "fd08::3/128".parse().unwrap(),
        ],
    };
    add_peer(&mut doc, "wg0", &peer).unwrap();
    let table = peer_table("wg0", "bob", &key, "\"10.8.0.3/32\", \"fd08::3/128\"");
    // Right after the interface's last peer, before the next interface and its comment.
    let expected = CONFIG.replacen("# fixed\n", &format!("# fixed\n{table}"), 1);
    assert_eq!(doc.to_string(), expected);
}

#[test]
fn add_peer_to_an_interface_without_peers_puts_it_after_the_interface() {
    let text = format!("{CONFIG}\n# trailing comment\n");
    let mut doc: DocumentMut = text.parse().unwrap();
    let key = Secret::generate_private().public_key();
    let peer = NewPeer {
        name: "site".into(),
        public_key: key.clone(),
        preshared_key_file: Some("wg1-site.psk".into()),
        allowed_ips: vec!["10.9.0.2/32".parse().unwrap()],
    };
    add_peer(&mut doc, "wg1", &peer).unwrap();
    let table = peer_table("wg1", "site", &key, "\"10.9.0.2/32\"");
    let expected = format!("{CONFIG}{table}\n# trailing comment\n");
    assert_eq!(doc.to_string(), expected);
    // Without its last peer the interface says so (`peers = []`), so that `up` removes the
    // peer rather than refusing a file that looks cut short; a new peer replaces it.
    remove_peer(&mut doc, "wg1", "site").unwrap();
    let no_peers = format!("{CONFIG}peers = []\n\n# trailing comment\n");
    assert_eq!(doc.to_string(), no_peers);
    add_peer(&mut doc, "wg1", &peer).unwrap();
    assert_eq!(doc.to_string(), expected);
}

#[test]
fn add_peer_refuses_a_taken_name_and_a_missing_interface() {
    let mut doc: DocumentMut = CONFIG.parse().unwrap();
    let peer = NewPeer {
        name: "alice".into(),
        public_key: Secret::generate_private().public_key(),
        preshared_key_file: None,
        allowed_ips: vec![],
    };
    let err = add_peer(&mut doc, "wg0", &peer).unwrap_err().to_string();
    assert!(
        err.contains("a peer named \"alice\" already exists on wg0"),
        "{err}"
    );
    let err = add_peer(&mut doc, "wg7", &peer).unwrap_err().to_string();
    assert!(err.contains("no [wireguard.wg7] section"), "{err}");
    assert!(err.contains("wg0, wg1"), "{err}");
    assert_eq!(doc.to_string(), CONFIG);
}

#[test]
fn remove_peer_takes_out_exactly_that_table() {
    let mut doc: DocumentMut = CONFIG.parse().unwrap();
    remove_peer(&mut doc, "wg0", "alice").unwrap();
    let start = CONFIG.find("\n# Alice's phone").unwrap();
    let end = CONFIG.find("# fixed\n").unwrap() + "# fixed\n".len();
    let expected = format!("{}peers = []\n{}", &CONFIG[..start], &CONFIG[end..]);
    assert_eq!(doc.to_string(), expected);
}

#[test]
fn remove_peer_names_the_existing_peers_when_not_found() {
    let mut doc: DocumentMut = CONFIG.parse().unwrap();
    let err = remove_peer(&mut doc, "wg0", "bob").unwrap_err().to_string();
    assert!(
        err.contains("no peer named \"bob\"; its peers are: \"alice\""),
        "{err}"
    );
    let err = remove_peer(&mut doc, "wg1", "bob").unwrap_err().to_string();
    assert!(err.contains("wg1 has no peers"), "{err}");
}

#[test]
fn add_writes_the_peer_the_key_file_and_the_client_config() {
    let (dir, path) = setup(CONFIG);
    let added = add(&path, &request("bob")).unwrap();

    let psk_path = dir.path().join("wg0-bob.psk");
    assert_eq!(added.preshared_key_file, psk_path);
    assert_eq!(mode(&psk_path), 0o600);
    let psk: Secret = fs::read_to_string(&psk_path).unwrap().parse().unwrap();
    assert_eq!(Some(&psk), added.client.preshared_key.as_ref());
    assert_eq!(added.private_key_file, None);
    assert!(!dir.path().join("wg0-bob.key").exists());

    let key = added.client.private_key.public_key();
    let table = peer_table("wg0", "bob", &key, "\"10.8.0.3/32\", \"fd08::3/128\"");
    let expected = CONFIG.replacen("# fixed\n", &format!("# fixed\n{table}"), 1);
    assert_eq!(fs::read_to_string(&path).unwrap(), expected);
    assert_eq!(mode(&path), 0o640, "the file keeps its mode");
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let config = config::parse(&path, &expected).unwrap();
    let wg0 = config.interface("wg0").unwrap();
    let text = render(&added.client);
    assert!(
        text.contains("\nAddress = 10.8.0.3/32, fd08::3/128\n"),
        "{text}"
    );
    assert!(text.contains("\nDNS = 192.168.1.1\n"), "{text}");
    assert!(
        text.contains(&format!("\nPublicKey = {}\n", wg0.public_key())),
        "{text}"
    );
    assert!(
        text.contains("\nEndpoint = home.example.org:51820\n"),
        "{text}"
    );
    assert!(text.contains("\nAllowedIPs = 0.0.0.0/0, ::/0\n"), "{text}");
    assert_eq!(wg0.peers[1].public_key, key);
}

#[test]
fn add_with_split_tunnel_explicit_ip_and_dns() {
    let (_dir, path) = setup(CONFIG);
    let added = add(
        &path,
        &AddRequest {
            ips: vec!["10.8.0.20".parse().unwrap()],
            dns: Some(vec!["9.9.9.9".parse().unwrap()]),
            tunnel: Tunnel::Split,
            ..request("laptop")
        },
    )
    .unwrap();
    let client = &added.client;
    assert_eq!(strings(&client.addresses), ["10.8.0.20/32", "fd08::3/128"]);
    assert_eq!(client.dns, ["9.9.9.9".parse::<IpAddr>().unwrap()]);
    assert_eq!(
        strings(&client.allowed_ips),
        ["10.8.0.0/24", "fd08::/64", "192.168.1.0/24"]
    );
}

#[test]
fn add_refuses_an_ip_outside_the_subnet_or_taken() {
    let (dir, path) = setup(CONFIG);
    for (ip, says) in [
        ("10.7.0.5", "outside wg0's subnet 10.8.0.0/24"),
        ("10.8.0.2", "taken by peer \"alice\""),
        ("10.8.0.1", "wg0's own address"),
        ("10.8.0.255", "network or broadcast address"),
    ] {
        let request = AddRequest {
            ips: vec![ip.parse().unwrap()],
            ..request("bob")
        };
        let err = format!("{:#}", add(&path, &request).unwrap_err());
        assert!(err.contains(says), "{ip}: {err}");
    }
    assert_eq!(fs::read_to_string(&path).unwrap(), CONFIG);
    assert!(!dir.path().join("wg0-bob.psk").exists());
}

#[test]
fn add_stores_the_private_key_only_when_asked() {
    let (dir, path) = setup(CONFIG);
    let added = add(
        &path,
        &AddRequest {
            store_private_key: true,
            ..request("bob")
        },
    )
    .unwrap();
    let key_path = dir.path().join("wg0-bob.key");
    assert_eq!(added.private_key_file.as_ref(), Some(&key_path));
    assert_eq!(mode(&key_path), 0o600);
    let stored: Secret = fs::read_to_string(&key_path).unwrap().parse().unwrap();
    assert_eq!(stored, added.client.private_key);
}

#[test]
fn add_that_would_not_validate_leaves_everything_as_it_was() {
    let (dir, path) = setup(CONFIG);
    let picky = |path: &Path, text: &str| {
        let config = config::parse(path, text)?;
        if text.contains("bob") {
            return Err(config::Error {
                diagnostics: vec![config::Diagnostic {
                    file: path.to_path_buf(),
                    line: 1,
                    column: 1,
                    message: "no bobs".into(),
                    help: None,
                }],
            });
        }
        Ok(config)
    };
    let request = AddRequest {
        store_private_key: true,
        ..request("bob")
    };
    let err = format!("{:#}", add_with(&path, &request, picky).unwrap_err());
    assert!(
        err.contains("would not be valid, so it was left unchanged"),
        "{err}"
    );
    assert!(err.contains("no bobs"), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), CONFIG);
    let mut files: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["vpn.toml", "wg0.key", "wg1.key"]);
}

#[test]
fn add_until_the_subnet_is_full() {
    let (_dir, path) = setup(CONFIG);
    let to_wg1 = |name: &str| AddRequest {
        interface: Some("wg1".into()),
        ..request(name)
    };
    let added = add(&path, &to_wg1("site")).unwrap();
    assert_eq!(strings(&added.client.addresses), ["10.9.0.2/32"]);
    let before = fs::read_to_string(&path).unwrap();
    let err = format!("{:#}", add(&path, &to_wg1("other")).unwrap_err());
    assert!(
        err.contains("no free address left in 10.9.0.0/30 of wg1"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), before);
}

#[test]
fn add_needs_a_plain_name_an_interface_choice_and_an_endpoint() {
    let (_dir, path) = setup(CONFIG);
    let err = add(&path, &request("../etc/passwd"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be a peer name"), "{err}");
    for (name, problem) in [
        ("bob\0", r#""bob\0" contains the control character '\0'"#),
        (
            "bob\u{202e}",
            r#""bob\u{202e}" contains '\u{202e}', a Unicode direction"#,
        ),
        (&"b".repeat(65), "is 65 characters long; the most is 64"),
    ] {
        let err = add(&path, &request(name)).unwrap_err().to_string();
        assert!(err.starts_with("peer name "), "{err}");
        assert!(err.contains(problem), "{err}");
        assert!(err.contains("use 1 to 64 letters"), "{err}");
    }
    assert_eq!(fs::read_to_string(&path).unwrap(), CONFIG);
    let err = format!(
        "{:#}",
        add(
            &path,
            &AddRequest {
                interface: None,
                ..request("bob")
            }
        )
        .unwrap_err()
    );
    assert!(
        err.contains("several WireGuard interfaces (wg0, wg1): pass --interface"),
        "{err}"
    );

    let no_endpoint = CONFIG.replace("public_endpoint = \"home.example.org:51820\"\n", "");
    let (_dir, path) = setup(&no_endpoint);
    let err = format!("{:#}", add(&path, &request("bob")).unwrap_err());
    assert!(err.contains("[wireguard.wg0] in"), "{err}");
    assert!(err.contains("has no public_endpoint"), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), no_endpoint);
}

#[test]
fn a_configuration_that_is_a_fifo_is_refused_at_once() {
    use crate::files::tests::{mkfifo, within_5_seconds};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vpn.toml");
    mkfifo(&path);
    let errors = within_5_seconds(move || {
        let errors = [
            add(&path, &request("bob")).unwrap_err().to_string(),
            remove(&path, None, "bob").unwrap_err().to_string(),
        ];
        drop(dir);
        errors
    });
    for err in errors {
        assert!(
            err.contains("cannot read the configuration: it is a FIFO, not a regular file"),
            "{err}"
        );
    }
}

#[test]
fn remove_restores_the_original_file_and_deletes_the_key_files() {
    let (dir, path) = setup(CONFIG);
    let added = add(
        &path,
        &AddRequest {
            store_private_key: true,
            ..request("bob")
        },
    )
    .unwrap();
    let removed = remove(&path, None, "bob").unwrap();
    assert_eq!(removed.interface, "wg0");
    assert_eq!(removed.public_key, added.client.private_key.public_key());
    assert_eq!(
        removed.removed_files,
        [
            dir.path().join("wg0-bob.psk"),
            dir.path().join("wg0-bob.key")
        ]
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), CONFIG);
    assert_eq!(mode(&path), 0o640);
    assert!(!dir.path().join("wg0-bob.psk").exists());
}

#[test]
fn remove_of_an_unknown_peer_names_the_peers() {
    let (_dir, path) = setup(CONFIG);
    let err = format!("{:#}", remove(&path, None, "bob").unwrap_err());
    assert!(err.contains("no peer named \"bob\""), "{err}");
    assert!(err.contains("wg0: \"alice\"; wg1: none"), "{err}");
    let err = format!("{:#}", remove(&path, Some("wg1"), "alice").unwrap_err());
    assert!(err.contains("no peer named \"alice\" on wg1"), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), CONFIG);
}

#[test]
fn add_and_remove_keep_crlf_line_endings_and_a_missing_final_newline() {
    let original = CONFIG.trim_end().replace('\n', "\r\n");
    let (_dir, path) = setup(&original);
    let added = add(&path, &request("bob")).unwrap();
    let key = added.client.private_key.public_key();
    let table =
        peer_table("wg0", "bob", &key, "\"10.8.0.3/32\", \"fd08::3/128\"").replace('\n', "\r\n");
    let expected = original.replacen("# fixed\r\n", &format!("# fixed\r\n{table}"), 1);
    assert_eq!(fs::read_to_string(&path).unwrap(), expected);
    remove(&path, Some("wg0"), "bob").unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), original);
}

#[test]
fn replace_file_follows_a_symlink() {
    let (dir, path) = setup(CONFIG);
    let link = dir.path().join("link.toml");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    replace_file(&link, "# new\n").unwrap();
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), "# new\n");
    assert_eq!(mode(&path), 0o640);
}
