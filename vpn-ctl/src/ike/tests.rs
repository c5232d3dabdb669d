//! Unit tests: the mapping of sites to VICI messages, the parsing of charon's answers, the
//! diff, and the strongswan.conf vpn-ctl writes. No charon needed (the guest test
//! `tests/ipsec_ike.rs` runs two).

use std::{collections::BTreeMap, path::Path, time::Duration};

use super::{SaAction, charon::CharonLaunch, conn::Connection, is_up, plan_site, vici::*};
use crate::config::ipsec::{
    Gateway, Identity, IkeKeying, IkeVersion, IpsecSite, Keying, SecretBytes,
};

const PSK: &[u8] = b"VPNPassword";

/// The seed's OpenWrt side: IKEv1 aggressive to the FRITZ!Box at right.domain.com.
fn fritzbox_site() -> IpsecSite {
    IpsecSite {
        name: "fritzbox".into(),
        local_gateway: None,
        remote_gateway: Gateway::Name("right.domain.com".into()),
        local_subnets: vec!["192.168.2.0/24".parse().unwrap()],
        remote_subnets: vec!["192.168.1.0/24".parse().unwrap()],
        keying: Keying::Ike(IkeKeying {
            version: IkeVersion::V1Aggressive,
            local_id: Some(Identity::Fqdn("left.domain.com".into())),
            remote_id: Some(Identity::Fqdn("right.domain.com".into())),
            psk: SecretBytes::new(PSK.to_vec()),
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

/// An IKEv2 site between two fixed addresses with no identities given.
fn office_site() -> IpsecSite {
    IpsecSite {
        name: "office".into(),
        local_gateway: Some(Gateway::Address("198.51.100.1".parse().unwrap())),
        remote_gateway: Gateway::Address("203.0.113.1".parse().unwrap()),
        // Host bits set on purpose: charon gets the network.
        local_subnets: vec!["192.168.2.1/24".parse().unwrap()],
        remote_subnets: vec![
            "192.168.3.0/24".parse().unwrap(),
            "fd03::/64".parse().unwrap(),
        ],
        keying: Keying::Ike(IkeKeying {
            version: IkeVersion::V2,
            local_id: None,
            remote_id: None,
            psk: SecretBytes::new(b"another key".to_vec()),
            psk_file: "office.psk".into(),
            ike_proposals: vec!["aes256gcm16-prfsha256-ecp256".into()],
            esp_proposals: vec!["aes256gcm16-ecp256".into()],
            ike_lifetime: Duration::from_secs(28800),
            esp_lifetime: Duration::from_secs(3600),
            dpd: None,
            nat_traversal: true,
        }),
        watchdog_probe: None,
    }
}

fn s(text: &str) -> String {
    text.to_string()
}

fn flat(v: &ViciValue) -> BTreeMap<String, String> {
    v.flatten().into_iter().collect()
}

// A small VICI encoder for charon's answers (element types from the VICI README).
fn name(out: &mut Vec<u8>, n: &str) {
    out.push(n.len() as u8);
    out.extend_from_slice(n.as_bytes());
}
fn value(out: &mut Vec<u8>, v: &str) {
    out.extend_from_slice(&(v.len() as u16).to_be_bytes());
    out.extend_from_slice(v.as_bytes());
}
fn kv(out: &mut Vec<u8>, k: &str, v: &str) {
    out.push(3);
    name(out, k);
    value(out, v);
}
fn list(out: &mut Vec<u8>, k: &str, items: &[&str]) {
    out.push(4);
    name(out, k);
    for item in items {
        out.push(5);
        value(out, item);
    }
    out.push(6);
}
fn section(out: &mut Vec<u8>, k: &str, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(1);
    name(out, k);
    body(out);
    out.push(2);
}

#[test]
fn names_carry_the_prefix_and_lead_back_to_the_site() {
    assert_eq!(super::conn_name("fritzbox"), "vpn-ctl-fritzbox");
    assert_eq!(super::site_of("vpn-ctl-fritzbox"), Some("fritzbox"));
    assert_eq!(super::site_of("vpn-ctl-"), None);
    assert_eq!(super::site_of("home"), None);
}

#[test]
fn the_fritzbox_profile_is_ikev1_aggressive_with_fqdn_ids_and_the_seeds_proposals() {
    let conn = Connection::from_site(&fritzbox_site()).unwrap();
    assert_eq!(conn.name, "vpn-ctl-fritzbox");
    let tree = conn.tree().unwrap();
    let body = flat(tree.get("vpn-ctl-fritzbox").expect("one connection"));
    let child = "children.vpn-ctl-fritzbox";
    let want: BTreeMap<String, String> = [
        ("version", "1"),
        ("aggressive", "yes"),
        ("remote_addrs", "right.domain.com"),
        ("proposals", "aes256-sha1-modp1024"),
        // 90 % of the hour, the rest as the margin (the seed: ikelifetime=1h, margintime=9m...)
        ("rekey_time", "3240"),
        ("over_time", "360"),
        ("dpd_delay", "30"),
        ("dpd_timeout", "60"),
        ("encap", "no"),
        ("keyingtries", "0"),
        ("unique", "replace"),
        ("local.auth", "psk"),
        ("local.id", "fqdn:left.domain.com"),
        ("remote.auth", "psk"),
        ("remote.id", "fqdn:right.domain.com"),
        ("children.vpn-ctl-fritzbox.mode", "tunnel"),
        ("children.vpn-ctl-fritzbox.local_ts", "192.168.2.0/24"),
        ("children.vpn-ctl-fritzbox.remote_ts", "192.168.1.0/24"),
        (
            "children.vpn-ctl-fritzbox.esp_proposals",
            "aes256-sha1-modp1024",
        ),
        ("children.vpn-ctl-fritzbox.rekey_time", "25920"),
        ("children.vpn-ctl-fritzbox.life_time", "28800"),
        ("children.vpn-ctl-fritzbox.start_action", "trap"),
        ("children.vpn-ctl-fritzbox.dpd_action", "restart"),
        ("children.vpn-ctl-fritzbox.close_action", "restart"),
    ]
    .into_iter()
    .map(|(k, v)| (s(k), s(v)))
    .collect();
    assert_eq!(body, want, "{child}");
    // No local address: charon takes whatever the route to the FRITZ!Box leaves from.
    assert!(!body.contains_key("local_addrs"));
}

#[test]
fn lists_go_out_as_vici_lists_and_sections_as_sections() {
    let conn = Connection::from_site(&fritzbox_site()).unwrap();
    let tree = conn.tree().unwrap();
    let body = tree.get("vpn-ctl-fritzbox").unwrap();
    assert!(matches!(body.get("proposals"), Some(ViciValue::List(p)) if p.len() == 1));
    assert!(matches!(body.get("version"), Some(ViciValue::Str(v)) if v == "1"));
    assert!(matches!(body.get("local"), Some(ViciValue::Section(_))));
    let child = body
        .get("children")
        .unwrap()
        .get("vpn-ctl-fritzbox")
        .unwrap();
    assert!(matches!(child.get("local_ts"), Some(ViciValue::List(_))));
    // The message starts with the connection's section: type 1, name length, name.
    let bytes = conn.message().unwrap();
    assert_eq!(&bytes[..2], &[1, 16]);
    assert_eq!(&bytes[2..18], b"vpn-ctl-fritzbox");
}

#[test]
fn an_ikev2_site_between_addresses_gets_both_addresses_networks_and_no_dpd() {
    let conn = Connection::from_site(&office_site()).unwrap();
    let b = &conn.body;
    assert_eq!((b.version, b.aggressive), (2, false));
    assert_eq!(b.local_addrs, ["198.51.100.1"]);
    assert_eq!(b.remote_addrs, ["203.0.113.1"]);
    assert_eq!((b.dpd_delay, b.dpd_timeout), (0, None));
    assert_eq!((b.rekey_time, b.over_time), (25920, 2880));
    assert_eq!((&b.local.id, &b.remote.id), (&None, &None));
    let child = &b.children["vpn-ctl-office"];
    assert_eq!(child.local_ts, ["192.168.2.0/24"]);
    assert_eq!(child.remote_ts, ["192.168.3.0/24", "fd03::/64"]);
    assert_eq!((child.rekey_time, child.life_time), (3240, 3600));
    // Without identities the key belongs to the gateways' addresses.
    assert_eq!(conn.shared.owners, ["198.51.100.1", "203.0.113.1"]);
    // A site without ids has no `id` in its rounds (charon: own address / any).
    let tree = flat(conn.tree().unwrap().get("vpn-ctl-office").unwrap());
    assert!(!tree.contains_key("local.id") && !tree.contains_key("remote.id"));
}

#[test]
fn a_static_site_is_not_charons() {
    let mut site = fritzbox_site();
    site.keying = Keying::Static(crate::config::ipsec::StaticKeying {
        esp: crate::config::ipsec::StaticAead::Aes128Gcm16,
        spi_out: 1,
        spi_in: 2,
        key_out: SecretBytes::new(vec![1; 20]),
        key_in: SecretBytes::new(vec![2; 20]),
        key_out_file: "a".into(),
        key_in_file: "b".into(),
    });
    let e = Connection::from_site(&site).unwrap_err().to_string();
    assert!(e.contains("static keying"), "{e}");
    assert!(super::connections(&[site, fritzbox_site()]).unwrap().len() == 1);
}

#[test]
fn the_shared_key_is_owned_by_both_ids_and_goes_out_as_one_value() {
    let conn = Connection::from_site(&fritzbox_site()).unwrap();
    assert_eq!(conn.shared.id, "vpn-ctl-fritzbox");
    assert_eq!(
        conn.shared.owners,
        ["fqdn:left.domain.com", "fqdn:right.domain.com"]
    );
    let message: ViciValue =
        serde_vici::from_slice(&load_shared_message(&conn.shared).unwrap()).unwrap();
    assert_eq!(message.str("type"), Some("IKE"));
    assert_eq!(message.str("id"), Some("vpn-ctl-fritzbox"));
    assert_eq!(message.str("data"), Some("VPNPassword"));
    assert_eq!(
        message.list("owners"),
        ["fqdn:left.domain.com", "fqdn:right.domain.com"]
    );
}

#[test]
fn the_psk_never_shows_in_debug_records_or_change_lists() {
    let conn = Connection::from_site(&fritzbox_site()).unwrap();
    let debug = format!("{conn:?} {:?}", conn.shared);
    assert!(!debug.contains("VPNPassword"), "{debug}");
    let record = conn.record().unwrap();
    let text = record.to_text();
    assert!(!text.contains("VPNPassword"), "{text}");
    assert!(text.contains("psk.digest = "), "{text}");

    let mut site = fritzbox_site();
    if let Keying::Ike(ike) = &mut site.keying {
        ike.psk = SecretBytes::new(b"NewPassword".to_vec());
    }
    let changed = Connection::from_site(&site).unwrap().record().unwrap();
    let changes = record.changes_to(&changed);
    assert_eq!(changes, ["pre-shared key changed"]);
}

#[test]
fn a_record_reads_back_from_its_text_and_lists_what_changed() {
    let conn = Connection::from_site(&fritzbox_site()).unwrap();
    let record = conn.record().unwrap();
    assert_eq!(super::Record::parse(&record.to_text()), record);

    let mut site = fritzbox_site();
    if let Keying::Ike(ike) = &mut site.keying {
        ike.ike_proposals = vec!["aes256-sha256-modp2048".into()];
        ike.version = IkeVersion::V1Main;
    }
    let new = Connection::from_site(&site).unwrap().record().unwrap();
    assert_eq!(
        record.changes_to(&new),
        [
            "aggressive: yes -> no",
            "proposals: aes256-sha1-modp1024 -> aes256-sha256-modp2048"
        ]
    );
}

/// A `list-sa` event for the FRITZ!Box connection, as charon 5.9 sends it.
fn list_sa_event(ike_state: &str, child_state: &str, unique: &str, spi_in: &str) -> Vec<u8> {
    let mut out = Vec::new();
    section(&mut out, "vpn-ctl-fritzbox", |out| {
        kv(out, "uniqueid", unique);
        kv(out, "version", "1");
        kv(out, "state", ike_state);
        kv(out, "local-host", "10.9.9.2");
        kv(out, "local-port", "500");
        kv(out, "local-id", "left.domain.com");
        kv(out, "remote-host", "10.9.9.1");
        kv(out, "remote-id", "right.domain.com");
        kv(out, "initiator", "yes");
        kv(out, "initiator-spi", "c30bbdc1aed6e7a2");
        kv(out, "responder-spi", "9f550c2490216a0d");
        kv(out, "encr-alg", "AES_CBC");
        kv(out, "encr-keysize", "256");
        kv(out, "integ-alg", "HMAC_SHA1_96");
        kv(out, "prf-alg", "PRF_HMAC_SHA1");
        kv(out, "dh-group", "MODP_1024");
        kv(out, "established", "12");
        kv(out, "rekey-time", "3138");
        list(out, "tasks-queued", &[]);
        section(out, "child-sas", |out| {
            section(out, &format!("vpn-ctl-fritzbox-{unique}"), |out| {
                kv(out, "name", "vpn-ctl-fritzbox");
                kv(out, "uniqueid", unique);
                kv(out, "reqid", "1");
                kv(out, "state", child_state);
                kv(out, "mode", "TUNNEL");
                kv(out, "protocol", "ESP");
                kv(out, "spi-in", spi_in);
                kv(out, "spi-out", "c9cc34ce");
                kv(out, "encr-alg", "AES_CBC");
                kv(out, "encr-keysize", "256");
                kv(out, "integ-alg", "HMAC_SHA1_96");
                kv(out, "dh-group", "MODP_1024");
                kv(out, "bytes-in", "840");
                kv(out, "packets-in", "10");
                kv(out, "use-in", "1");
                kv(out, "bytes-out", "840");
                kv(out, "packets-out", "10");
                kv(out, "rekey-time", "25000");
                kv(out, "life-time", "28780");
                kv(out, "install-time", "20");
                list(out, "local-ts", &["192.168.2.0/24"]);
                list(out, "remote-ts", &["192.168.1.0/24"]);
            });
        });
    });
    out
}

/// `depth` sections, each inside the one before (3 bytes a level, name `a`).
fn nested_sections(depth: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..depth {
        out.extend_from_slice(&[1, 1, b'a']);
    }
    out.resize(out.len() + depth, 2);
    out
}

#[test]
fn deeply_nested_messages_are_refused_not_a_stack_overflow() {
    // Found by tests/fuzz_parsers.rs: 10,000 nested sections (30 KB) overflowed the stack
    // while decoding, which aborts the process.
    let err = serde_vici::from_slice::<ViciValue>(&nested_sections(100_000)).unwrap_err();
    assert!(err.to_string().contains("nested more than 64"), "{err}");
    // The message is level 1, its sections below it.
    let deepest: ViciValue = serde_vici::from_slice(&nested_sections(MAX_NESTING - 1)).unwrap();
    let (mut levels, mut v) = (1, &deepest);
    while let Some(inner) = v.get("a") {
        (levels, v) = (levels + 1, inner);
    }
    assert_eq!(levels, MAX_NESTING);
    assert!(serde_vici::from_slice::<ViciValue>(&nested_sections(MAX_NESTING)).is_err());
    // A refused message leaves the decoder's count as it was.
    assert_eq!(
        parse_sas(&list_sa_event("ESTABLISHED", "INSTALLED", "2", "ca852ef8")).len(),
        1
    );
}

/// rsvici decodes the final answer of a streamed command (list-sas, initiate, terminate)
/// into its own `Response { success, errmsg }` struct, not into a [`ViciValue`]; serde skips
/// the other fields with `IgnoredAny`, which serde_vici decodes recursively without a limit.
/// A deeply nested answer from charon overflows the stack there, in rsvici 0.1.5 and
/// serde_vici 0.1.5, out of vpn-ctl's reach. Running this test aborts the test process.
#[test]
#[ignore = "bug in rsvici/serde_vici 0.1.5: a deeply nested command answer overflows the stack"]
fn deeply_nested_command_answers_overflow_the_stack_in_rsvici() {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Response {
        success: Option<bool>,
        errmsg: Option<String>,
    }
    let mut message = Vec::new();
    message.extend_from_slice(&[3, 7]);
    message.extend_from_slice(b"success");
    message.extend_from_slice(&[0, 3]);
    message.extend_from_slice(b"yes");
    message.extend_from_slice(&nested_sections(100_000));
    assert!(serde_vici::from_slice::<Response>(&message).is_err());
}

fn parse_sas(bytes: &[u8]) -> Vec<IkeSa> {
    let event: ViciValue = serde_vici::from_slice(bytes).unwrap();
    ike_sas_from_event(&event).unwrap()
}

#[test]
fn list_sa_events_give_states_spis_and_counters() {
    let sas = parse_sas(&list_sa_event("ESTABLISHED", "INSTALLED", "2", "ca852ef8"));
    assert_eq!(sas.len(), 1);
    let ike = &sas[0];
    assert_eq!(ike.name, "vpn-ctl-fritzbox");
    assert_eq!((ike.unique_id, ike.version), (2, 1));
    assert_eq!(ike.state, "ESTABLISHED");
    assert!(ike.initiator && ike.is_established());
    assert_eq!(ike.remote_id.as_deref(), Some("right.domain.com"));
    assert_eq!(
        ike.algorithms,
        "AES_CBC-256/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024"
    );
    assert_eq!((ike.established, ike.rekey_time), (Some(12), Some(3138)));
    let child = &ike.children[0];
    assert_eq!(child.name, "vpn-ctl-fritzbox");
    assert_eq!(
        (child.spi_in, child.spi_out),
        (Some(0xca85_2ef8), Some(0xc9cc_34ce))
    );
    assert_eq!((child.bytes_in, child.packets_in), (840, 10));
    assert_eq!((child.bytes_out, child.packets_out), (840, 10));
    assert_eq!(child.install_time, Some(20));
    assert_eq!(child.local_ts, ["192.168.2.0/24"]);
    assert!(child.is_installed());
    assert!(is_up("vpn-ctl-fritzbox", &sas));
    assert!(!is_up("vpn-ctl-other", &sas));
    assert!(!is_up(
        "vpn-ctl-fritzbox",
        &parse_sas(&list_sa_event("CONNECTING", "CREATED", "3", "1"))
    ));
}

#[test]
fn list_conn_events_give_addresses_ids_and_subnets() {
    let mut out = Vec::new();
    section(&mut out, "vpn-ctl-fritzbox", |out| {
        list(out, "local_addrs", &["%any"]);
        list(out, "remote_addrs", &["right.domain.com"]);
        kv(out, "version", "IKEv1");
        kv(out, "reauth_time", "0");
        kv(out, "rekey_time", "3240");
        kv(out, "unique", "UNIQUE_REPLACE");
        kv(out, "dpd_delay", "30");
        kv(out, "dpd_timeout", "60");
        section(out, "local-1", |out| {
            kv(out, "class", "pre-shared key");
            kv(out, "id", "left.domain.com");
            list(out, "groups", &[]);
        });
        section(out, "remote-1", |out| {
            kv(out, "class", "pre-shared key");
            kv(out, "id", "right.domain.com");
        });
        section(out, "children", |out| {
            section(out, "vpn-ctl-fritzbox", |out| {
                kv(out, "mode", "TUNNEL");
                kv(out, "rekey_time", "25920");
                list(out, "local-ts", &["192.168.2.0/24"]);
                list(out, "remote-ts", &["192.168.1.0/24"]);
            });
        });
    });
    let event: ViciValue = serde_vici::from_slice(&out).unwrap();
    let conns = conns_from_event(&event);
    assert_eq!(conns.len(), 1);
    let loaded = &conns[0];
    assert_eq!(loaded.local_id.as_deref(), Some("left.domain.com"));
    assert_eq!(loaded.remote_id.as_deref(), Some("right.domain.com"));
    assert_eq!(loaded.version, "IKEv1");
    // What charon shows of the FRITZ!Box connection matches what vpn-ctl loads.
    let conn = Connection::from_site(&fritzbox_site()).unwrap();
    assert_eq!(conn.differences_from_loaded(loaded), Vec::<String>::new());

    let mut moved = loaded.clone();
    moved.remote_addrs = vec!["203.0.113.9".into()];
    assert_eq!(
        conn.differences_from_loaded(&moved),
        ["remote address: charon has 203.0.113.9, the config says right.domain.com"]
    );
}

/// What charon shows of a loaded connection, for `plan_site`.
fn loaded_like(conn: &Connection) -> LoadedConn {
    let b = &conn.body;
    LoadedConn {
        name: conn.name.clone(),
        local_addrs: vec!["%any".into()],
        remote_addrs: b.remote_addrs.clone(),
        version: format!("IKEv{}", b.version),
        rekey_time: Some(b.rekey_time),
        dpd_delay: Some(b.dpd_delay),
        local_id: b
            .local
            .id
            .as_deref()
            .map(|i| super::conn::identity_shown(i).into()),
        remote_id: b
            .remote
            .id
            .as_deref()
            .map(|i| super::conn::identity_shown(i).into()),
        children: b
            .children
            .iter()
            .map(|(n, c)| (n.clone(), (c.local_ts.clone(), c.remote_ts.clone())))
            .collect(),
    }
}

#[test]
fn a_second_up_with_the_same_site_and_a_working_sa_does_nothing() {
    let conn = Connection::from_site(&fritzbox_site()).unwrap();
    let record = conn.record().unwrap();
    let sas = parse_sas(&list_sa_event("ESTABLISHED", "INSTALLED", "2", "ca852ef8"));
    let plan = plan_site(
        &conn,
        &record,
        Some(&loaded_like(&conn)),
        Some(&record),
        true,
        &sas,
    );
    assert_eq!(plan.load, None);
    assert!(!plan.load_shared);
    assert_eq!(plan.sa, SaAction::Keep);
}

#[test]
fn an_unchanged_site_whose_sa_is_down_is_initiated_without_reloading() {
    let conn = Connection::from_site(&fritzbox_site()).unwrap();
    let record = conn.record().unwrap();
    let loaded = loaded_like(&conn);
    // An IKE SA established 10 minutes ago whose CHILD SA is being deleted.
    let mut lost_child = parse_sas(&list_sa_event("ESTABLISHED", "DELETING", "2", "1"));
    lost_child[0].established = Some(600);
    for sas in [Vec::new(), lost_child] {
        let plan = plan_site(&conn, &record, Some(&loaded), Some(&record), true, &sas);
        assert_eq!((plan.load.clone(), plan.sa), (None, SaAction::Initiate));
    }
    // The key was unloaded behind vpn-ctl's back (`swanctl --load-creds`): loaded again.
    let plan = plan_site(&conn, &record, Some(&loaded), Some(&record), false, &[]);
    assert!(plan.load_shared && plan.load.is_none());
}

#[test]
fn a_renewal_under_way_is_left_to_charon() {
    let conn = Connection::from_site(&fritzbox_site()).unwrap();
    let record = conn.record().unwrap();
    let loaded = loaded_like(&conn);
    let plan =
        |sas: &[IkeSa]| plan_site(&conn, &record, Some(&loaded), Some(&record), true, sas).sa;
    // The peer re-authenticated: the new IKE SA is up, its CHILD SA not yet, the old one is
    // being deleted.
    let mut old = parse_sas(&list_sa_event("DELETING", "INSTALLED", "1", "1"));
    old[0].established = Some(3000);
    let new = parse_sas(&list_sa_event("ESTABLISHED", "CREATED", "2", "2"));
    let both: Vec<_> = old.iter().chain(&new).cloned().collect();
    assert_eq!(plan(&both), SaAction::Wait);
    // This side re-authenticates (IKEv1): the old SA is REKEYING, the new one CONNECTING
    // with the CHILD SAs moved over.
    let mut rekeying = parse_sas(&list_sa_event("REKEYING", "DELETING", "1", "1"));
    rekeying[0].established = Some(3000);
    rekeying[0].children.clear();
    let connecting = parse_sas(&list_sa_event("CONNECTING", "INSTALLED", "2", "2"));
    let both: Vec<_> = rekeying.iter().chain(&connecting).cloned().collect();
    assert_eq!(plan(&both), SaAction::Wait);
    // The re-authentication failed and the new SA is gone: initiate.
    assert_eq!(plan(&rekeying), SaAction::Initiate);
    // Established seconds ago, the CHILD SA on its way.
    assert_eq!(plan(&new), SaAction::Wait);
    // The same after the settling time: something is wrong, initiate.
    let mut stuck = new.clone();
    stuck[0].established = Some(300);
    assert_eq!(plan(&stuck), SaAction::Initiate);
}

#[test]
fn a_changed_proposal_reloads_and_restarts_the_sa() {
    let old = Connection::from_site(&fritzbox_site()).unwrap();
    let old_record = old.record().unwrap();
    let mut site = fritzbox_site();
    if let Keying::Ike(ike) = &mut site.keying {
        ike.esp_proposals = vec!["aes128-sha256-modp2048".into()];
    }
    let new = Connection::from_site(&site).unwrap();
    let sas = parse_sas(&list_sa_event("ESTABLISHED", "INSTALLED", "2", "ca852ef8"));
    let plan = plan_site(
        &new,
        &new.record().unwrap(),
        Some(&loaded_like(&old)),
        Some(&old_record),
        true,
        &sas,
    );
    assert_eq!(
        plan.load,
        Some(vec![s(
            "children.vpn-ctl-fritzbox.esp_proposals: aes256-sha1-modp1024 -> aes128-sha256-modp2048"
        )])
    );
    assert!(plan.load_shared);
    assert_eq!(plan.sa, SaAction::Restart);
    // Without an SA there is nothing to restart.
    let plan = plan_site(
        &new,
        &new.record().unwrap(),
        Some(&loaded_like(&old)),
        Some(&old_record),
        true,
        &[],
    );
    assert_eq!(plan.sa, SaAction::Initiate);
}

#[test]
fn after_a_charon_restart_the_connection_is_loaded_and_initiated() {
    let conn = Connection::from_site(&fritzbox_site()).unwrap();
    let record = conn.record().unwrap();
    let plan = plan_site(&conn, &record, None, Some(&record), false, &[]);
    assert_eq!(plan.load, Some(vec![s("charon does not have it")]));
    assert!(plan.load_shared);
    assert_eq!(plan.sa, SaAction::Initiate);
}

#[test]
fn a_lost_record_reloads_but_keeps_a_working_sa() {
    let conn = Connection::from_site(&fritzbox_site()).unwrap();
    let record = conn.record().unwrap();
    let sas = parse_sas(&list_sa_event("ESTABLISHED", "INSTALLED", "2", "ca852ef8"));
    let plan = plan_site(&conn, &record, Some(&loaded_like(&conn)), None, true, &sas);
    assert_eq!(plan.load, Some(vec![s("no record of an earlier load")]));
    assert_eq!(plan.sa, SaAction::Keep);
}

#[test]
fn failed_initiations_get_a_hint_in_plain_words() {
    let err = InitiateError {
        connection: "vpn-ctl-fritzbox".into(),
        errmsg: "establishing CHILD_SA 'vpn-ctl-fritzbox' failed".into(),
        log: vec![
            s("[IKE] initiating Aggressive Mode IKE_SA vpn-ctl-fritzbox[1] to 10.9.9.1"),
            s("[ENC] parsed INFORMATIONAL_V1 request 4192356617 [ N(AUTH_FAILED) ]"),
            s("[IKE] received AUTHENTICATION_FAILED error notify"),
        ],
    };
    let text = err.to_string();
    assert!(text.contains("help: the other side rejected"), "{text}");
    assert!(text.contains("psk_file"), "{text}");
    assert!(text.contains("received AUTHENTICATION_FAILED"), "{text}");
    assert!(
        hint_for_log(&[s("[IKE] giving up after 5 retransmits")])
            .unwrap()
            .contains("never answered")
    );
    assert!(
        hint_for_log(&[s(
            "[KNL] unable to install inbound and outbound IPsec SA (SAD) in kernel"
        )])
        .unwrap()
        .contains("ESP")
    );
    assert!(
        hint_for_log(&[
            s("[IKE] calculated HASH does not match HASH payload"),
            s("[ENC] generating INFORMATIONAL_V1 request 1 [ HASH N(AUTH_FAILED) ]"),
        ])
        .unwrap()
        .starts_with("the pre-shared keys differ")
    );
    assert_eq!(hint_for_log(&[s("[IKE] something else")]), None);
}

#[test]
fn the_strongswan_conf_sets_the_socket_the_log_and_debians_plugins() {
    let mut launch = CharonLaunch::new(Path::new("/tmp/x/charon.vici"), Path::new("/tmp/x"));
    let conf = launch.strongswan_conf().unwrap();
    assert!(
        conf.contains("socket = \"unix:///tmp/x/charon.vici\""),
        "{conf}"
    );
    assert!(
        conf.contains("socket = \"unix:///tmp/x/charon.ctl\""),
        "{conf}"
    );
    assert!(
        conf.contains("include /etc/strongswan.d/charon/*.conf"),
        "{conf}"
    );
    assert!(conf.contains("path = \"/tmp/x/charon.log\""), "{conf}");
    assert!(conf.contains("install_routes = no"), "{conf}");
    assert!(!conf.contains("aggressive_mode_psk"), "{conf}");
    launch.aggressive_psk = true;
    let conf = launch.strongswan_conf().unwrap();
    assert!(
        conf.contains("i_dont_care_about_security_and_use_aggressive_mode_psk = yes"),
        "{conf}"
    );
    let bad = CharonLaunch::new(Path::new("/tmp/a\"b"), Path::new("/tmp/x"));
    assert!(bad.strongswan_conf().is_err());
}

#[test]
fn charon_runs_in_the_namespace_with_its_own_run_when_asked() {
    let mut launch = CharonLaunch::new(Path::new("/tmp/x/charon.vici"), Path::new("/tmp/x"));
    let plain = launch.command();
    assert_eq!(plain.get_program(), "/usr/lib/ipsec/charon");
    assert_eq!(
        plain
            .get_envs()
            .find(|(k, _)| *k == "STRONGSWAN_CONF")
            .and_then(|(_, v)| v),
        Some(std::ffi::OsStr::new("/tmp/x/strongswan.conf"))
    );
    launch.netns = Some("site-a".into());
    launch.private_run = true;
    let cmd = launch.command();
    let argv: Vec<_> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(&argv[..4], ["ip", "netns", "exec", "site-a"]);
    assert_eq!(argv[4], "unshare");
    assert!(argv[10].starts_with("mount -t tmpfs"), "{argv:?}");
    assert_eq!(argv.last().unwrap(), "/usr/lib/ipsec/charon");
}
