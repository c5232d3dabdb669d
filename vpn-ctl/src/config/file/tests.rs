use super::*;

/// The rendered error for `text`, read as `/etc/vpn-ctl/vpn.toml`.
fn error(text: &str) -> String {
    match parse(Path::new("/etc/vpn-ctl/vpn.toml"), text) {
        Ok(raw) => panic!("{text:?} parsed: {raw:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_file_is_an_empty_configuration() {
    let raw = parse(Path::new("vpn.toml"), "").unwrap();
    assert!(raw.router.is_none() && raw.wireguard.is_none());
    let raw = parse(Path::new("vpn.toml"), "# nothing yet\n\n[wireguard]\n").unwrap();
    assert!(raw.wireguard.unwrap().is_empty());
}

#[test]
fn values_keep_their_spans() {
    let text =
        "[wireguard.wg0]\nlisten_port = 51820\n\n[[wireguard.wg0.peers]]\nname = \"phone\"\n";
    let raw = parse(Path::new("vpn.toml"), text).unwrap();
    let (name, iface) = raw.wireguard.unwrap().into_iter().next().unwrap();
    assert_eq!(&text[name.span()], "wg0");
    assert_eq!(&text[iface.span()], "[wireguard.wg0]");
    let port = iface.get_ref().listen_port.as_ref().unwrap();
    assert_eq!((&text[port.span()], *port.get_ref()), ("51820", 51820));
    let peer = &iface.get_ref().peers.as_ref().unwrap()[0];
    assert_eq!(&text[peer.span()], "[[wireguard.wg0.peers]]");
    assert_eq!(
        &text[peer.get_ref().name.as_ref().unwrap().span()],
        "\"phone\""
    );
}

#[test]
fn syntax_error_points_at_the_place() {
    assert_eq!(
        error("[router]\nwan = \"eth0\n"),
        "/etc/vpn-ctl/vpn.toml:2:12: not valid TOML: invalid basic string, expected `\"`\n  \
             help: see https://toml.io for the syntax; the README shows a complete example"
    );
    assert_eq!(
        error("[router\nwan = \"eth0\"\n"),
        "/etc/vpn-ctl/vpn.toml:1:8: not valid TOML: unclosed table, expected `]`\n  \
             help: see https://toml.io for the syntax; the README shows a complete example"
    );
}

#[test]
fn unquoted_string_says_to_quote_it() {
    assert_eq!(
        error("[router]\nwan = eth0\n"),
        "/etc/vpn-ctl/vpn.toml:2:7: a string value must be in quotes\n  \
             help: write it as \"...\", e.g. wan = \"eth0\""
    );
}

#[test]
fn duplicate_key_and_duplicate_table() {
    assert_eq!(
        error("[router]\nwan = \"eth0\"\nwan = \"eth1\"\n"),
        "/etc/vpn-ctl/vpn.toml:3:1: `wan` is already set above in this table\n  \
             help: a key may appear once per table: remove one of them"
    );
    assert_eq!(
        error("[router]\n[wireguard.wg0]\n[router]\n"),
        "/etc/vpn-ctl/vpn.toml:3:2: table [router] is already defined above\n  \
             help: a [table] header may appear once: merge the two tables"
    );
    assert_eq!(
        error("[wireguard.wg0]\nmtu = 1420\n\n  [wireguard.wg0] # again\n"),
        "/etc/vpn-ctl/vpn.toml:4:14: table [wireguard.wg0] is already defined above\n  \
             help: a [table] header may appear once: merge the two tables"
    );
}

#[test]
fn unknown_field_suggests_the_near_name_and_lists_the_accepted() {
    assert_eq!(
        error("[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\nlisten_prot = 51820\n"),
        "/etc/vpn-ctl/vpn.toml:3:1: unknown field `listen_prot` in [wireguard.wg0]\n  \
             help: did you mean `listen_port`?; the fields accepted here: private_key_file, \
             listen_port, addresses, mtu, fwmark, public_endpoint, client_dns, internet, peers"
    );
    assert_eq!(
        error("[[wireguard.wg0.peers]]\nnmae = \"phone\"\n"),
        "/etc/vpn-ctl/vpn.toml:2:1: unknown field `nmae` in a peer of wg0 \
             ([[wireguard.wg0.peers]])\n  help: did you mean `name`?; the fields accepted \
             here: name, public_key, preshared_key_file, allowed_ips, endpoint, \
             persistent_keepalive, route"
    );
}

#[test]
fn wg_quick_names_map_to_ours() {
    assert_eq!(
        error("[[wireguard.wg0.peers]]\nAllowedIPs = [\"10.8.0.2/32\"]\n"),
        "/etc/vpn-ctl/vpn.toml:2:1: unknown field `AllowedIPs` in a peer of wg0 \
             ([[wireguard.wg0.peers]])\n  help: did you mean `allowed_ips`?; the fields \
             accepted here: name, public_key, preshared_key_file, allowed_ips, endpoint, \
             persistent_keepalive, route"
    );
    assert_eq!(
        error("[wireguard.wg0]\nPrivateKey = \"abc\"\n"),
        "/etc/vpn-ctl/vpn.toml:2:1: unknown field `PrivateKey` in [wireguard.wg0]\n  \
             help: did you mean `private_key_file`?; vpn-ctl reads keys from files of mode \
             0600, never from this file: private_key_file = \"...\"; the fields accepted \
             here: private_key_file, listen_port, addresses, mtu, fwmark, public_endpoint, \
             client_dns, internet, peers"
    );
}

#[test]
fn field_in_the_wrong_table_says_where_it_belongs() {
    assert_eq!(
        error("wan = \"eth0\"\n"),
        "/etc/vpn-ctl/vpn.toml:1:1: unknown field `wan` at the top level\n  \
             help: `wan` belongs in [router]; the fields accepted here: router, wireguard, ipsec, \
             daemon"
    );
    // The classic TOML slip: an interface field after the first peer's header.
    assert_eq!(
        error("[wireguard.wg1]\n[[wireguard.wg1.peers]]\nname = \"phone\"\nmtu = 1420\n"),
        "/etc/vpn-ctl/vpn.toml:4:1: unknown field `mtu` in a peer of wg1 \
             ([[wireguard.wg1.peers]])\n  help: `mtu` belongs in the interface's table \
             [wireguard.wg1]; in TOML every key after a [[wireguard.wg1.peers]] header \
             belongs to that peer, so write the interface's fields above its first peer; the \
             fields accepted here: name, public_key, preshared_key_file, allowed_ips, \
             endpoint, persistent_keepalive, route"
    );
}

#[test]
fn sections_that_do_not_exist_are_refused() {
    assert_eq!(
        error("[firewall2]\nlisten = \"127.0.0.1:9586\"\n"),
        "/etc/vpn-ctl/vpn.toml:1:2: unknown field `firewall2` at the top level\n  \
             help: the fields accepted here: router, wireguard, ipsec, daemon"
    );
    assert_eq!(
        error("[daemon]\nlisten = \"127.0.0.1:9586\"\n"),
        "/etc/vpn-ctl/vpn.toml:2:1: unknown field `listen` in [daemon]\n  \
             help: the fields accepted here: metrics_listen, metrics_max_peers, tick, xdp"
    );
}

#[test]
fn ipsec_sites_keep_their_spans() {
    let text = "[ipsec.fritzbox]\nkeying = \"ike\"\nremote_subnets = [\"192.168.1.0/24\"]\n\
                    spi_in = 0x1002\nnat_traversal = false\n";
    let raw = parse(Path::new("vpn.toml"), text).unwrap();
    let (name, site) = raw.ipsec.unwrap().into_iter().next().unwrap();
    assert_eq!(&text[name.span()], "fritzbox");
    assert_eq!(&text[site.span()], "[ipsec.fritzbox]");
    let site = site.into_inner();
    let remote = site.remote_subnets.unwrap();
    assert_eq!(&text[remote.span()], "[\"192.168.1.0/24\"]");
    assert_eq!(&text[remote.get_ref()[0].span()], "\"192.168.1.0/24\"");
    assert_eq!(*site.spi_in.unwrap().get_ref(), 0x1002);
    assert!(!site.nat_traversal.unwrap().into_inner());
    assert!(site.local_subnets.is_none() && site.psk_file.is_none());
}

#[test]
fn strongswan_names_in_a_site_map_to_ours() {
    let accepted = "keying, local_gateway, remote_gateway, local_subnets, remote_subnets, \
                        watchdog_probe, local_id, remote_id, psk_file, ike_version, \
                        ike_proposals, esp_proposals, allow_weak, ike_lifetime, esp_lifetime, \
                        dpd, nat_traversal, esp, spi_out, spi_in, key_out_file, key_in_file";
    assert_eq!(
        error("[ipsec.fritzbox]\nremote = \"203.0.113.1\"\n"),
        format!(
            "/etc/vpn-ctl/vpn.toml:2:1: unknown field `remote` in [ipsec.fritzbox]\n  \
                 help: did you mean `remote_gateway`?; the fields accepted here: {accepted}"
        )
    );
    assert_eq!(
        error("[ipsec.fritzbox]\nleftsubnet = \"192.168.2.0/24\"\n"),
        format!(
            "/etc/vpn-ctl/vpn.toml:2:1: unknown field `leftsubnet` in [ipsec.fritzbox]\n  \
                 help: did you mean `local_subnets`?; the fields accepted here: {accepted}"
        )
    );
    // `psk` in a peer is the WireGuard preshared key, in a site the IPsec one.
    assert_eq!(
        error("[ipsec.fritzbox]\npsk = \"VPNPassword\"\n"),
        format!(
            "/etc/vpn-ctl/vpn.toml:2:1: unknown field `psk` in [ipsec.fritzbox]\n  \
                 help: did you mean `psk_file`?; vpn-ctl reads keys from files of mode 0600, \
                 never from this file: psk_file = \"...\"; the fields accepted here: {accepted}"
        )
    );
    assert_eq!(
        error("[ipsec.fritzbox]\nlisten_port = 500\n"),
        format!(
            "/etc/vpn-ctl/vpn.toml:2:1: unknown field `listen_port` in [ipsec.fritzbox]\n  \
                 help: `listen_port` belongs in the interface's table [wireguard.wg0]; the \
                 fields accepted here: {accepted}"
        )
    );
    assert_eq!(
        error("[wireguard.wg0]\nremote_gateway = \"right.domain.com\"\n"),
        "/etc/vpn-ctl/vpn.toml:2:1: unknown field `remote_gateway` in [wireguard.wg0]\n  \
             help: `remote_gateway` belongs in an IPsec site's table, e.g. [ipsec.fritzbox]; the \
             fields accepted here: private_key_file, listen_port, addresses, mtu, fwmark, \
             public_endpoint, client_dns, internet, peers"
    );
}

#[test]
fn site_fields_of_the_wrong_type() {
    assert_eq!(
        error("[ipsec]\nfritzbox = \"right.domain.com\"\n"),
        "/etc/vpn-ctl/vpn.toml:2:12: site fritzbox must be a table, not the string \
             \"right.domain.com\"\n  help: each IPsec site is a table: write its fields under \
             an [ipsec.fritzbox] header"
    );
    assert_eq!(
        error("[ipsec.fritzbox]\nremote_subnets = \"192.168.1.0/24\"\n"),
        "/etc/vpn-ctl/vpn.toml:2:18: `remote_subnets` must be an array, not the string \
             \"192.168.1.0/24\"\n  help: write it like this: remote_subnets = \
             [\"192.168.1.0/24\"]"
    );
    assert_eq!(
        error("[ipsec.office]\nspi_out = \"0x1001\"\n"),
        "/etc/vpn-ctl/vpn.toml:2:11: `spi_out` must be an integer, not the string \
             \"0x1001\"\n  help: write it like this: spi_out = 0x1001"
    );
    assert_eq!(
        error("[ipsec.fritzbox]\nnat_traversal = \"yes\"\n"),
        "/etc/vpn-ctl/vpn.toml:2:17: `nat_traversal` must be true or false, not the string \
             \"yes\"\n  help: write it like this: nat_traversal = true"
    );
    assert_eq!(
        error("[ipsec.fritzbox]\ndpd = \"30s\"\n"),
        "/etc/vpn-ctl/vpn.toml:2:7: `dpd` must be an integer, not the string \"30s\"\n  \
             help: write it like this: dpd = 30"
    );
}

#[test]
fn wrong_types_name_the_field_and_show_its_form() {
    assert_eq!(
        error("[wireguard.wg0]\nlisten_port = \"51820\"\n"),
        "/etc/vpn-ctl/vpn.toml:2:15: `listen_port` must be an integer, not the string \
             \"51820\"\n  help: write it like this: listen_port = 51820"
    );
    assert_eq!(
        error("[router]\nlan = \"192.168.1.0/24\"\n"),
        "/etc/vpn-ctl/vpn.toml:2:7: `lan` must be an array, not the string \
             \"192.168.1.0/24\"\n  help: write it like this: lan = [\"192.168.1.0/24\"]"
    );
    assert_eq!(
        error("[[wireguard.wg0.peers]]\nallowed_ips = [\"10.8.0.2/32\", 10]\n"),
        "/etc/vpn-ctl/vpn.toml:2:31: `allowed_ips` must be a string, not integer 10\n  \
             help: write it like this: allowed_ips = [\"10.8.0.2/32\", \"fd08::2/128\"]"
    );
    assert_eq!(
        error("[[wireguard.wg0.peers]]\nroute = \"yes\"\n"),
        "/etc/vpn-ctl/vpn.toml:2:9: `route` must be true or false, not the string \
             \"yes\"\n  help: write it like this: route = true"
    );
    assert_eq!(
        error("router = \"eth0\"\n"),
        "/etc/vpn-ctl/vpn.toml:1:10: `router` must be a table, not the string \"eth0\"\n  \
             help: write it like this: [router]"
    );
    assert_eq!(
        error("[wireguard.wg0]\nmtu = 1420.5\n"),
        "/etc/vpn-ctl/vpn.toml:2:7: `mtu` must be an integer, not floating point 1420.5\n  \
             help: write it like this: mtu = 1420"
    );
}

#[test]
fn interface_and_peers_must_be_tables() {
    assert_eq!(
        error("[wireguard]\nwg0 = 51820\n"),
        "/etc/vpn-ctl/vpn.toml:2:7: interface wg0 must be a table, not integer 51820\n  \
             help: each interface is a table: write its fields under a [wireguard.wg0] header"
    );
    // One pair of brackets instead of two.
    assert_eq!(
        error("[wireguard.wg0.peers]\nname = \"phone\"\n"),
        "/etc/vpn-ctl/vpn.toml:1:1: `peers` must be an array, not a table\n  help: peers \
             are an array of tables: start each peer with a [[wireguard.wg0.peers]] header \
             (double brackets)"
    );
}

#[test]
fn huge_integer_is_out_of_range() {
    assert_eq!(
        error("[wireguard.wg0]\nfwmark = 99999999999999999999\n"),
        "/etc/vpn-ctl/vpn.toml:2:10: `fwmark` is out of range: 99999999999999999999\n  \
             help: write it like this: fwmark = 0x5182"
    );
}

#[test]
fn column_counts_characters_not_bytes() {
    assert_eq!(
        error("# Grüße aus Köln\n[router] # Ünïcödé\nwan = \"eth0\" ; lan = []\n"),
        "/etc/vpn-ctl/vpn.toml:3:14: not valid TOML: unexpected key or value, \
             expected newline, `#`\n  help: see https://toml.io for the syntax; the README \
             shows a complete example"
    );
    assert_eq!(
        error("[router]\nwan = \"äöü\"; x = 1\n"),
        "/etc/vpn-ctl/vpn.toml:2:12: not valid TOML: unexpected key or value, \
             expected newline, `#`\n  help: see https://toml.io for the syntax; the README \
             shows a complete example"
    );
}

/// The field lists used for "belongs in" are the ones serde accepts.
#[test]
fn field_lists_match_the_raw_types() {
    let accepted = |text: &str| -> Vec<String> {
        let e = toml::from_str::<Raw>(text).unwrap_err();
        let (_, list) = e.message().split_once(", expected").unwrap();
        backquoted(list)
    };
    assert_eq!(
        accepted("zzz = 1"),
        ["router", "wireguard", "ipsec", "daemon"]
    );
    assert_eq!(accepted("[daemon]\nzzz = 1"), DAEMON_FIELDS);
    assert_eq!(accepted("[router]\nzzz = 1"), ROUTER_FIELDS);
    assert_eq!(accepted("[wireguard.wg0]\nzzz = 1"), INTERFACE_FIELDS);
    assert_eq!(accepted("[[wireguard.wg0.peers]]\nzzz = 1"), PEER_FIELDS);
    assert_eq!(accepted("[ipsec.fritzbox]\nzzz = 1"), SITE_FIELDS);
    for (field, _) in EXAMPLES {
        assert!(
            [
                &["router", "wireguard", "ipsec", "daemon"],
                ROUTER_FIELDS,
                DAEMON_FIELDS,
                INTERFACE_FIELDS,
                PEER_FIELDS,
                SITE_FIELDS
            ]
            .iter()
            .any(|fields| fields.contains(field)),
            "{field}"
        );
    }
    for field in SITE_FIELDS {
        assert!(EXAMPLES.iter().any(|(f, _)| f == field), "{field}");
    }
}

#[test]
fn near_names() {
    let accepted: Vec<String> = INTERFACE_FIELDS.iter().map(|s| s.to_string()).collect();
    assert_eq!(closest("ListenPort", &accepted), Some("listen_port"));
    assert_eq!(closest("adresses", &accepted), Some("addresses"));
    assert_eq!(closest("Address", &accepted), Some("addresses"));
    assert_eq!(closest("DNS", &accepted), Some("client_dns"));
    assert_eq!(closest("endpoint", &accepted), Some("public_endpoint"));
    assert_eq!(closest("colour", &accepted), None);
    assert_eq!(closest("mt", &accepted), Some("mtu"));
    assert_eq!(closest("m", &accepted), None);
    assert_eq!(edit_distance("listenprot", "listenport"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
}
