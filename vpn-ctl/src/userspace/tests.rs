use super::*;

fn hex(key: &PublicKey) -> String {
    Hex(key.as_bytes()).to_string()
}

#[test]
fn boringtun_answer_gives_public_key_and_handshake_age() {
    let ours = Secret::generate_private().public_key();
    let theirs = Secret::generate_private().public_key();
    let psk = "11".repeat(32);
    let answer = format!(
        "own_public_key={}\nlisten_port=51820\nfwmark=7\npublic_key={}\npreshared_key={psk}\n\
             persistent_keepalive_interval=25\nendpoint=192.0.2.1:51820\nallowed_ip=10.0.0.2/32\n\
             allowed_ip=fd00::2/128\nlast_handshake_time_sec=3\nlast_handshake_time_nsec=500000000\n\
             rx_bytes=1184\ntx_bytes=1312\nerrno=0\n\n",
        hex(&ours),
        hex(&theirs)
    );
    let state = parse_get(&answer, SystemTime::now()).unwrap();
    assert!(state.has_private_key);
    assert_eq!(state.public_key.as_ref(), Some(&ours));
    assert_eq!(state.listen_port, Some(51820));
    assert_eq!(state.fwmark, Some(7));
    assert!(state.boringtun);
    let peer = state.peer(&theirs).unwrap();
    assert!(peer.has_preshared_key);
    assert_eq!(peer.persistent_keepalive, Some(25));
    assert_eq!(peer.endpoint, Some("192.0.2.1:51820".parse().unwrap()));
    assert_eq!(
        peer.allowed_ips,
        vec![
            "10.0.0.2/32".parse::<IpNet>().unwrap(),
            "fd00::2/128".parse().unwrap()
        ]
    );
    assert_eq!(peer.since_last_handshake, Some(Duration::from_millis(3500)));
    assert_eq!((peer.rx_bytes, peer.tx_bytes), (1184, 1312));
    // The preshared key is not kept anywhere in the state.
    assert!(!format!("{state:?}").contains(&psk));
}

#[test]
fn boringtun_handshake_just_now_is_not_never() {
    let theirs = Secret::generate_private().public_key();
    let answer = format!(
        "public_key={}\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\n\
             rx_bytes=0\ntx_bytes=0\nerrno=0\n\n",
        hex(&theirs)
    );
    let state = parse_get(&answer, SystemTime::now()).unwrap();
    assert!(!state.has_private_key);
    assert_eq!(state.peers[0].since_last_handshake, Some(Duration::ZERO));
}

#[test]
fn standard_answer_turns_unix_handshake_time_into_age() {
    let secret = Secret::generate_private();
    let theirs = Secret::generate_private().public_key();
    let other = Secret::generate_private().public_key();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_100);
    let answer = format!(
        "private_key={}\nlisten_port=51820\npublic_key={}\nprotocol_version=1\n\
             preshared_key={}\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=0\n\
             persistent_keepalive_interval=0\npublic_key={}\nprotocol_version=1\n\
             last_handshake_time_sec=0\nlast_handshake_time_nsec=0\nerrno=0\n\n",
        Hex(secret.to_wg().as_bytes()),
        hex(&theirs),
        "00".repeat(32),
        hex(&other)
    );
    let state = parse_get(&answer, now).unwrap();
    assert!(!state.boringtun);
    assert_eq!(state.public_key, Some(secret.public_key()));
    let peer = state.peer(&theirs).unwrap();
    assert_eq!(peer.since_last_handshake, Some(Duration::from_secs(100)));
    assert!(!peer.has_preshared_key);
    assert_eq!(peer.persistent_keepalive, None);
    assert_eq!(state.peer(&other).unwrap().since_last_handshake, None);
}

#[test]
fn handshake_times_at_the_edges_are_ages_not_panics() {
    // Found by this module's generated answers: a UNIX handshake time past what
    // SystemTime holds (`last_handshake_time_sec=9223372036854775808`) panicked with
    // "overflow when adding duration to instant"; it is in the future, age 0.
    let public = hex(&Secret::generate_private().public_key());
    for (protocol, sec) in [
        (true, u64::MAX),
        (true, i64::MAX as u64),
        (true, i64::MAX as u64 + 1),
        (false, u64::MAX),
    ] {
        let answer = format!(
            "public_key={public}\n{}last_handshake_time_sec={sec}\n\
                 last_handshake_time_nsec=999999999\nerrno=0\n\n",
            if protocol { "protocol_version=1\n" } else { "" }
        );
        let state = parse_get(&answer, SystemTime::now()).unwrap();
        let age = state.peers[0].since_last_handshake;
        if protocol {
            assert_eq!(age, Some(Duration::ZERO), "{sec}");
        } else {
            assert_eq!(age, Some(Duration::new(u64::MAX, 999_999_999)));
        }
    }
}

#[test]
fn nonzero_errno_in_get_is_an_error() {
    let err = parse_get("errno=5\n\n", SystemTime::now()).unwrap_err();
    assert!(format!("{err:#}").contains("errno=5"), "{err:#}");
    assert!(parse_get("listen_port=1\n", SystemTime::now()).is_err());
}

#[test]
fn set_request_is_written_in_hex_and_debug_is_redacted() {
    let secret = Secret::generate_private();
    let peer = Secret::generate_private().public_key();
    let request = SetRequest::new()
        .private_key(&secret)
        .listen_port(51820)
        .replace_peers()
        .peer(&peer, |p| {
            p.endpoint("[fd00::1]:51820".parse().unwrap())
                .allowed_ip("10.0.0.0/24".parse().unwrap())
                .persistent_keepalive(25)
        });
    assert_eq!(
        request.as_uapi(),
        format!(
            "private_key={}\nlisten_port=51820\nreplace_peers=true\npublic_key={}\n\
                 endpoint=[fd00::1]:51820\nallowed_ip=10.0.0.0/24\n\
                 persistent_keepalive_interval=25\n",
            Hex(secret.to_wg().as_bytes()),
            hex(&peer)
        )
    );
    let debug = format!("{request:?}");
    assert!(!debug.contains(&Hex(secret.to_wg().as_bytes()).to_string()));
    check_body_syntax(request.as_uapi()).unwrap();
}

#[test]
fn set_bodies_that_end_the_request_early_are_refused() {
    assert!(check_body_syntax("listen_port=1\n\nfwmark=1\n").is_err());
    assert!(check_body_syntax("listen_port=1").is_err());
    assert!(check_body_syntax("set=1\nlisten_port=1\n").is_err());
    check_body_syntax("").unwrap();
}

#[test]
fn an_answer_without_end_is_cut_off_with_an_error() {
    use std::os::unix::net::UnixListener;
    let name = format!("vcend{}", std::process::id() % 1_000_000);
    fs::create_dir_all(SOCKET_DIR).unwrap();
    let path = socket_path(&name);
    let _ = fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let line = "allowed_ip=10.0.0.1/32\n".repeat(4096);
        while conn.write_all(line.as_bytes()).is_ok() {}
    });
    let err = get(&name).map(|_| ()).unwrap_err().to_string();
    let _ = fs::remove_file(&path);
    assert!(
        err.contains(&format!("answered more than {ANSWER_MAX} bytes")),
        "{err}"
    );
    server.join().unwrap();
}

#[test]
fn requests_that_make_boringtun_panic_are_refused() {
    let secret = Secret::generate_private();
    let peer = Secret::generate_private().public_key();
    let state = |has_key: bool, peers: Vec<PublicKey>| DeviceState {
        has_private_key: has_key,
        public_key: None,
        listen_port: None,
        fwmark: None,
        peers: peers
            .into_iter()
            .map(|public_key| PeerState {
                public_key,
                has_preshared_key: false,
                endpoint: None,
                allowed_ips: vec![],
                since_last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
                persistent_keepalive: None,
            })
            .collect(),
        boringtun: true,
    };
    let add = SetRequest::new().peer(&peer, |p| p.persistent_keepalive(5));
    // A peer before any private key.
    let err = check_boringtun_limits(add.as_uapi(), &state(false, vec![])).unwrap_err();
    assert!(err.to_string().contains("private key"), "{err}");
    // ... is fine once the request sets one first.
    let keyed = SetRequest::new().private_key(&secret).peer(&peer, |p| p);
    check_boringtun_limits(keyed.as_uapi(), &state(false, vec![])).unwrap();
    // Changing an existing peer in place.
    let err = check_boringtun_limits(add.as_uapi(), &state(true, vec![peer.clone()])).unwrap_err();
    assert!(err.to_string().contains("remove it first"), "{err}");
    // Removing and re-adding it, or replacing all peers, is fine.
    let readd = SetRequest::new()
        .peer(&peer, |p| p.remove())
        .peer(&peer, |p| p.persistent_keepalive(5));
    check_boringtun_limits(readd.as_uapi(), &state(true, vec![peer.clone()])).unwrap();
    let replace = SetRequest::new().replace_peers().peer(&peer, |p| p);
    check_boringtun_limits(replace.as_uapi(), &state(true, vec![peer.clone()])).unwrap();
    // The same new peer twice in one request.
    let twice = SetRequest::new().peer(&peer, |p| p).peer(&peer, |p| p);
    assert!(check_boringtun_limits(twice.as_uapi(), &state(true, vec![])).is_err());
}

#[test]
fn peer_sections_are_split_for_boringtun() {
    let (p1, p2) = (
        Secret::generate_private().public_key(),
        Secret::generate_private().public_key(),
    );
    let request = SetRequest::new()
        .listen_port(1)
        .peer(&p1, |p| p.remove())
        .peer(&p1, |p| p.persistent_keepalive(5))
        .peer(&p2, |p| p);
    let parts = split_peer_sections(request.as_uapi());
    assert_eq!(
        parts,
        [
            format!("listen_port=1\npublic_key={}\nremove=true\n", hex(&p1)),
            format!("public_key={}\npersistent_keepalive_interval=5\n", hex(&p1)),
            format!("public_key={}\n", hex(&p2)),
        ]
    );
    assert_eq!(parts.concat(), request.as_uapi());
    assert_eq!(split_peer_sections("listen_port=1\n"), ["listen_port=1\n"]);
    assert_eq!(split_peer_sections(""), [""]);
}

#[test]
fn a_name_starting_with_a_dash_never_reaches_the_device_command_line() {
    // `EXE userspace-device -h` would be an option, not an interface.
    let err = start_with(Path::new("/nonexistent/vpn-ctl"), "-h", None).unwrap_err();
    assert!(
        err.to_string().contains(r#""-h" starts with '-'"#),
        "{err:#}"
    );
    for call in [stop("--help"), get("-x").map(drop)] {
        assert!(call.unwrap_err().to_string().contains("starts with '-'"));
    }
}
