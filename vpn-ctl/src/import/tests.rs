use std::os::unix::fs::PermissionsExt as _;

use super::*;

/// Two interfaces with what each key file needs.
fn sample() -> Imported {
    let peer = |name: &str, psk: bool, ip: &str| ImportedPeer {
        name: name.to_string(),
        line: 0,
        public_key: Secret::generate_private().public_key(),
        preshared_key: psk.then(Secret::generate_preshared),
        allowed_ips: vec![ip.parse().unwrap()],
        endpoint: None,
        persistent_keepalive: None,
        route: true,
    };
    Imported {
        source: PathBuf::from("/etc/config/network"),
        format: Format::Uci,
        interfaces: vec![
            ImportedInterface {
                name: "wg0".to_string(),
                line: 1,
                private_key: Secret::generate_private(),
                listen_port: Some(51820),
                addresses: vec!["10.8.0.1/24".parse().unwrap()],
                mtu: Some(1420),
                fwmark: Some(0x5182),
                peers: vec![
                    peer("phone", true, "10.8.0.2/32"),
                    peer("laptop", false, "10.8.0.3/32"),
                ],
            },
            ImportedInterface {
                name: "wg1".to_string(),
                line: 20,
                private_key: Secret::generate_private(),
                listen_port: None,
                addresses: vec!["10.9.0.1/24".parse().unwrap()],
                mtu: None,
                fwmark: None,
                peers: vec![],
            },
        ],
        notes: vec!["not carried over: line 3: option ip6prefix 'fd00::/48'".to_string()],
    }
}

#[test]
fn write_creates_the_config_and_key_files_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let imported = sample();
    let written = write(&imported, dir.path(), "vpn.toml").unwrap();

    assert_eq!(written.config, dir.path().join("vpn.toml"));
    let names: Vec<_> = written
        .key_files
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["wg0.key", "wg0-phone.psk", "wg1.key"]);
    for file in &written.key_files {
        let mode = fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    let key = fs::read_to_string(dir.path().join("wg0.key")).unwrap();
    assert_eq!(
        key.trim_end().parse::<Secret>().unwrap(),
        imported.interfaces[0].private_key
    );
    let psk = fs::read_to_string(dir.path().join("wg0-phone.psk")).unwrap();
    assert_eq!(
        Some(psk.trim_end().parse::<Secret>().unwrap()),
        imported.interfaces[0].peers[0].preshared_key
    );
    assert_eq!(written.notes, imported.notes);
    assert_eq!(written.problems, None);
}

#[test]
fn write_reports_what_the_configuration_check_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let mut imported = sample();
    let phone = imported.interfaces[0].peers[0].allowed_ips.clone();
    imported.interfaces[0].peers[1].allowed_ips = phone;
    let written = write(&imported, dir.path(), "vpn.toml").unwrap();
    let problems = written
        .problems
        .expect("overlapping allowed IPs are refused");
    assert!(problems.to_string().contains("overlaps"), "{problems}");
    // Written all the same, to be fixed in place.
    assert!(written.config.exists());
}

#[test]
fn written_toml_is_laid_out_for_people() {
    let dir = tempfile::tempdir().unwrap();
    let imported = sample();
    let written = write(&imported, dir.path(), "vpn.toml").unwrap();
    let text = fs::read_to_string(&written.config).unwrap();
    let phone = imported.interfaces[0].peers[0].public_key.to_base64();
    let laptop = imported.interfaces[0].peers[1].public_key.to_base64();
    let expected = format!(
            "# vpn-ctl configuration, imported from /etc/config/network (OpenWrt UCI format) by `vpn-ctl import`.
# The keys are in the files named by private_key_file and preshared_key_file,
# next to this file (mode 0600).
#
# Import notes:
# - not carried over: line 3: option ip6prefix 'fd00::/48'

[wireguard.wg0]
private_key_file = \"wg0.key\"
listen_port = 51820
addresses = [\"10.8.0.1/24\"]
mtu = 1420
fwmark = 0x5182

[[wireguard.wg0.peers]]
name = \"phone\"
public_key = \"{phone}\"
preshared_key_file = \"wg0-phone.psk\"
allowed_ips = [\"10.8.0.2/32\"]
route = true

[[wireguard.wg0.peers]]
name = \"laptop\"
public_key = \"{laptop}\"
allowed_ips = [\"10.8.0.3/32\"]
route = true

[wireguard.wg1]
private_key_file = \"wg1.key\"
addresses = [\"10.9.0.1/24\"]
"
        );
    assert_eq!(text, expected);
}

/// `config::parse` reads what `write` wrote back into the same interfaces and peers.
fn assert_reads_back(imported: &Imported) {
    let dir = tempfile::tempdir().unwrap();
    let written = write(imported, dir.path(), "vpn.toml").unwrap();
    let text = fs::read_to_string(&written.config).unwrap();
    let config = crate::config::parse(&written.config, &text)
        .unwrap_or_else(|e| panic!("{e}\n--- the written configuration:\n{text}"));

    let names: Vec<_> = config.wireguard.iter().map(|i| i.name.as_str()).collect();
    let expected: Vec<_> = imported
        .interfaces
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(names, expected);
    for (got, want) in config.wireguard.iter().zip(&imported.interfaces) {
        assert_eq!(got.private_key, want.private_key, "{}", want.name);
        assert_eq!(got.listen_port, want.listen_port);
        assert_eq!(got.addresses, want.addresses);
        assert_eq!((got.mtu, got.fwmark), (want.mtu, want.fwmark));
        assert_eq!(got.peers.len(), want.peers.len());
        for (got, want) in got.peers.iter().zip(&want.peers) {
            assert_eq!(got.name, want.name);
            assert_eq!(got.public_key, want.public_key, "{}", want.name);
            assert_eq!(got.preshared_key, want.preshared_key, "{}", want.name);
            assert_eq!(got.allowed_ips, want.allowed_ips);
            assert_eq!(got.endpoint, want.endpoint);
            assert_eq!(got.persistent_keepalive, want.persistent_keepalive);
            assert_eq!(got.route, want.route, "{}", want.name);
        }
    }
}

#[test]
fn written_config_reads_back_with_the_same_keys_and_addresses() {
    let mut imported = sample();
    let phone = &mut imported.interfaces[0].peers[0];
    phone.endpoint = Some("phone.example.org:51820".parse().unwrap());
    phone.persistent_keepalive = Some(25);
    imported.interfaces[0].peers[1].route = false;
    imported.interfaces[0].peers[1].endpoint = Some("[2001:db8::3]:51821".parse().unwrap());
    assert_reads_back(&imported);
}

#[test]
fn imported_files_read_back_with_the_same_keys_and_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let network = dir.path().join("network");
    let secret = || Secret::generate_private().expose_base64();
    fs::write(
        &network,
        format!(
            "config interface 'lan'\n\toption proto 'static'\n\n\
                 config interface 'wg0'\n\toption proto 'wireguard'\n\
                 \toption private_key '{}'\n\toption listen_port '51820'\n\
                 \tlist addresses '10.8.0.1/24'\n\tlist addresses 'fd08::1/64'\n\n\
                 config wireguard_wg0\n\toption description 'phone'\n\
                 \toption public_key '{}'\n\toption preshared_key '{}'\n\
                 \tlist allowed_ips '10.8.0.2/32'\n\toption route_allowed_ips '1'\n",
            secret(),
            secret(),
            secret()
        ),
    )
    .unwrap();
    assert_reads_back(&import_uci(&network).unwrap());

    let conf = dir.path().join("wg1.conf");
    fs::write(
        &conf,
        format!(
            "[Interface]\nPrivateKey = {}\nAddress = 10.9.0.2/24\nMTU = 1380\n\
                 PostUp = logger up\n\n[Peer]\nPublicKey = {}\nPresharedKey = {}\n\
                 AllowedIPs = 10.9.0.0/24\nEndpoint = vpn.example.org:51820\n\
                 PersistentKeepalive = 25\n",
            secret(),
            secret(),
            secret()
        ),
    )
    .unwrap();
    assert_reads_back(&import_wg_quick(&conf, None).unwrap());
}

#[test]
fn write_refuses_to_overwrite_and_names_every_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("vpn.toml"), "# mine\n").unwrap();
    fs::write(dir.path().join("wg0-phone.psk"), "mine\n").unwrap();

    let err = write(&sample(), dir.path(), "vpn.toml").unwrap_err();
    let err = err.downcast::<Error>().unwrap();
    let files: Vec<_> = err.diagnostics.iter().map(|d| d.file.clone()).collect();
    assert_eq!(
        files,
        [
            dir.path().join("vpn.toml"),
            dir.path().join("wg0-phone.psk")
        ]
    );
    assert!(
        err.to_string().contains("choose another output directory"),
        "{err}"
    );
    // Nothing was written, and what was there is untouched.
    assert!(!dir.path().join("wg0.key").exists());
    assert_eq!(
        fs::read_to_string(dir.path().join("vpn.toml")).unwrap(),
        "# mine\n"
    );
}

#[test]
fn write_creates_a_missing_output_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("etc/vpn-ctl");
    let written = write(&sample(), &out, "vpn.toml").unwrap();
    assert!(written.config.starts_with(&out));
    assert!(out.join("wg1.key").exists());
}

#[test]
fn long_and_multi_line_notes_stay_wrapped_comments() {
    let mut imported = sample();
    imported.notes = vec![format!(
        "not carried over: line 7: option description 'first line\nsecond line' {}",
        "and many more words ".repeat(10)
    )];
    let header = header(&imported);
    let lines: Vec<_> = header.lines().collect();
    assert!(
        lines[..lines.len() - 1].iter().all(|l| l.starts_with('#')),
        "{header}"
    );
    assert!(
        lines[1..].iter().all(|l| l.len() <= HEADER_WIDTH),
        "{header}"
    );
    assert!(header.contains("'first line second line'"), "{header}");
    assert_eq!(header.matches("# - ").count(), 1, "{header}");
}

#[test]
fn write_refuses_an_interface_name_that_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [".", "-wg0", "wg/0"] {
        let mut imported = sample();
        imported.interfaces[1].name = bad.to_string();
        let err = write(&imported, dir.path(), "vpn.toml").unwrap_err();
        assert!(err.to_string().starts_with("interface name "), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "{bad:?}");
    }
}

#[test]
fn sources_that_are_fifos_are_refused_at_once_and_bad_bytes_pointed_at() {
    use crate::files::tests::{mkfifo, within_5_seconds};

    let dir = tempfile::tempdir().unwrap();
    let (network, conf) = (dir.path().join("network"), dir.path().join("wg0.conf"));
    mkfifo(&network);
    mkfifo(&conf);
    let (network, conf, errors) = within_5_seconds(move || {
        let errors = [
            format!("{:#}", import_uci(&network).unwrap_err()),
            format!("{:#}", import_wg_quick(&conf, None).unwrap_err()),
        ];
        (network, conf, errors)
    });
    assert_eq!(
        errors,
        [
            format!(
                "cannot read {}: it is a FIFO, not a regular file",
                network.display()
            ),
            format!(
                "cannot read {}: it is a FIFO, not a regular file",
                conf.display()
            ),
        ]
    );

    fs::remove_file(&conf).unwrap();
    fs::write(&conf, b"[Interface]\n# M\xfcller\n").unwrap();
    let err = import_wg_quick(&conf, None).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}:2:4: not UTF-8 text: byte 0xfc\n",
            conf.display()
        )),
        "{err}"
    );
}

#[test]
fn write_refuses_a_config_name_with_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let err = write(&sample(), dir.path(), "sub/vpn.toml").unwrap_err();
    assert!(err.to_string().contains("not a file name"), "{err}");
}

#[test]
fn colliding_key_file_names_are_made_unique() {
    let mut imported = sample();
    // wg0 + peer "x-y" and interface "wg0-x" + peer "y" both make "wg0-x-y.psk".
    imported.interfaces[0].peers[0].name = "x-y".to_string();
    imported.interfaces[1].name = "wg0-x".to_string();
    imported.interfaces[1].peers = vec![ImportedPeer {
        name: "y".to_string(),
        ..imported.interfaces[0].peers[0].clone()
    }];
    let plan = Plan::new(&imported);
    let names: Vec<_> = plan.keys.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["wg0.key", "wg0-x-y.psk", "wg0-x.key", "wg0-x-y-2.psk"]
    );
}

#[test]
fn peer_names_are_sanitized_unique_and_default_to_their_position() {
    let mut iface = sample().interfaces.remove(0);
    let template = iface.peers[0].clone();
    iface.peers = vec![template.clone(); 5];
    let hints = [
        Some("Dad's phone".to_string()),
        None,
        Some("laptop".to_string()),
        Some("laptop".to_string()),
        Some("***".to_string()),
    ];
    let mut notes = Vec::new();
    settle_peer_names(&mut iface, &hints, &mut notes);
    let names: Vec<_> = iface.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["Dad-s-phone", "peer2", "laptop", "laptop-2", "peer5"]
    );
    assert_eq!(notes.len(), 3, "{notes:#?}");
}

#[test]
fn values_parse_as_wg_accepts_them() {
    assert_eq!(
        parse_net("10.8.0.2").unwrap(),
        "10.8.0.2/32".parse::<IpNet>().unwrap()
    );
    assert_eq!(
        parse_net("fd08::2").unwrap(),
        "fd08::2/128".parse::<IpNet>().unwrap()
    );
    assert!(parse_net("10.0.0.03/32").is_err());
    assert_eq!(parse_fwmark("0xca6c"), Ok(Some(0xca6c)));
    assert_eq!(parse_fwmark("51820"), Ok(Some(51820)));
    assert_eq!(parse_fwmark("off"), Ok(None));
    assert_eq!(parse_fwmark("0"), Ok(None));
    assert!(parse_fwmark("mark").is_err());
    assert_eq!(parse_keepalive("25"), Ok(Some(25)));
    assert_eq!(parse_keepalive("off"), Ok(None));
    assert!(parse_port("0").is_err());
    assert!(parse_port("65536").is_err());
    assert!(check_host("vpn.example.org").is_ok());
    assert!(check_host("2001:db8::1").is_ok());
    assert!(check_host("your_publicIP_or name").is_err());
}
