//! The mapping to XFRM messages (compared byte for byte with what iproute2 sends for the same
//! command, captured with `strace -e sendmsg -xx ip xfrm ...`), reading the kernel's answers,
//! the diff, the status hints, and that keys never show.

use std::net::IpAddr;

use netlink_packet_core::{Emitable as _, ParseableParametrized as _};
use netlink_packet_xfrm::{
    Lifetime, XFRM_MSG_NEWPOLICY, XFRM_MSG_NEWSA, XfrmAttrs, XfrmMessage, state::ModifyMessage,
};

use super::{
    plan::{self, Step},
    policy::{self, Dir, Policy},
    sa::{self, Sa, SaCounters},
    status::{self, Counter},
    *,
};
use crate::config::ipsec::{
    Gateway, IkeKeying, IkeVersion, IpsecSite, Keying, SecretBytes, StaticAead, StaticKeying,
};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn emitted(message: &XfrmMessage) -> String {
    let mut buf = vec![0; message.buffer_len()];
    message.emit(&mut buf);
    hex(&buf)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn key(first: u8, len: u8) -> SecretBytes {
    SecretBytes::new((first..first + len).collect())
}

fn test_sa(src: &str, dst: &str, spi: u32, reqid: u32, key: SecretBytes) -> Sa {
    Sa {
        src: ip(src),
        dst: ip(dst),
        spi,
        reqid,
        tunnel: true,
        aead: Some(Aead {
            name: "rfc4106(gcm(aes))".into(),
            key,
            icv_bits: 128,
        }),
        counters: SaCounters::default(),
    }
}

// `ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 reqid 7 mode tunnel
//  aead 'rfc4106(gcm(aes))' 0x0102030405060708090a0b0c0d0e0f1011121314 128`
const IP_STATE_ADD: &str = "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000c00002020000000000000000000000000000010032000000c0000201000000000000000000000000ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000700000002000100000000000000000060001200726663343130362867636d2861657329290000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000a0000000800000000102030405060708090a0b0c0d0e0f1011121314";
// `ip xfrm state add src 2001:db8::1 dst 2001:db8::2 proto esp spi 0x2002 reqid 0x76630001
//  mode tunnel aead 'rfc4106(gcm(aes))' 0x0102...24 128` (36 bytes: AES-256 and salt)
const IP_STATE_ADD6: &str = "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000020010db8000000000000000000000002000020023200000020010db8000000000000000000000001ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000010063760a000100000000000000000070001200726663343130362867636d286165732929000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000020010000800000000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324";
// `ip xfrm state del src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100`
const IP_STATE_DEL: &str =
    "c0000202000000000000000000000000000001000200320014000d00c0000201000000000000000000000000";
// `ip xfrm state del src 2001:db8::1 dst 2001:db8::2 proto esp spi 0x2002`
const IP_STATE_DEL6: &str =
    "20010db8000000000000000000000002000020020a00320014000d0020010db8000000000000000000000001";
// `ip xfrm policy add src 192.168.2.0/24 dst 192.168.3.0/24 dir out
//  tmpl src 192.0.2.1 dst 192.0.2.2 proto esp reqid 7 mode tunnel`
const IP_POLICY_ADD: &str = "c0a80300000000000000000000000000c0a80200000000000000000000000000000000000000000002001818000000000000000000000000ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000010000000000000044000500c0000202000000000000000000000000000000003200000002000000c00002010000000000000000000000000700000001000000ffffffffffffffffffffffff";
// `ip xfrm policy update src fd03::/64 dst fd02::/64 dir fwd
//  tmpl src 2001:db8::2 dst 2001:db8::1 proto esp reqid 0x76630001 mode tunnel`
const IP_POLICY_UPDATE6: &str = "fd020000000000000000000000000000fd03000000000000000000000000000000000000000000000a004040000000000000000000000000ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000002000000000000004400050020010db800000000000000000000000100000000320000000a00000020010db80000000000000000000000020100637601000000ffffffffffffffffffffffff";
// `ip xfrm policy del src 192.168.2.0/24 dst 192.168.3.0/24 dir out`
const IP_POLICY_DEL: &str = "c0a80300000000000000000000000000c0a802000000000000000000000000000000000000000000020018180000000000000000000000000000000001000000";
// `ip xfrm policy del src fd03::/64 dst fd02::/64 dir fwd`
const IP_POLICY_DEL6: &str = "fd020000000000000000000000000000fd03000000000000000000000000000000000000000000000a0040400000000000000000000000000000000002000000";

fn test_policy(dir: Dir, src: &str, dst: &str, t_src: &str, t_dst: &str, reqid: u32) -> Policy {
    Policy {
        dir,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        plain: true,
        priority: 0,
        allow: true,
        templates: vec![Template::esp_tunnel(ip(t_src), ip(t_dst), reqid)],
    }
}

#[test]
fn sa_add_is_what_ip_xfrm_state_add_sends() {
    let v4 = test_sa("192.0.2.1", "192.0.2.2", 0x100, 7, key(1, 20));
    let m = sa::add_message(&v4);
    assert!(matches!(m, XfrmMessage::AddSa(_)));
    assert_eq!(emitted(&m), IP_STATE_ADD);
    let v6 = test_sa(
        "2001:db8::1",
        "2001:db8::2",
        0x2002,
        0x7663_0001,
        key(1, 36),
    );
    assert_eq!(emitted(&sa::add_message(&v6)), IP_STATE_ADD6);
}

#[test]
fn sa_delete_is_what_ip_xfrm_state_del_sends() {
    let m = sa::delete_message(ip("192.0.2.1"), ip("192.0.2.2"), 0x100);
    assert!(matches!(m, XfrmMessage::DeleteSa(_)));
    assert_eq!(emitted(&m), IP_STATE_DEL);
    let m = sa::delete_message(ip("2001:db8::1"), ip("2001:db8::2"), 0x2002);
    assert_eq!(emitted(&m), IP_STATE_DEL6);
}

#[test]
fn policy_add_update_and_delete_are_what_ip_xfrm_policy_sends() {
    let out = test_policy(
        Dir::Out,
        "192.168.2.0/24",
        "192.168.3.0/24",
        "192.0.2.1",
        "192.0.2.2",
        7,
    );
    let m = policy::add_message(&out, false);
    assert!(matches!(m, XfrmMessage::AddPolicy(_)));
    assert_eq!(emitted(&m), IP_POLICY_ADD);
    assert_eq!(emitted(&policy::delete_message(&out)), IP_POLICY_DEL);

    let fwd6 = test_policy(
        Dir::Fwd,
        "fd03::/64",
        "fd02::/64",
        "2001:db8::2",
        "2001:db8::1",
        0x7663_0001,
    );
    let m = policy::add_message(&fwd6, true);
    assert!(matches!(m, XfrmMessage::UpdatePolicy(_)));
    assert_eq!(emitted(&m), IP_POLICY_UPDATE6);
    assert_eq!(emitted(&policy::delete_message(&fwd6)), IP_POLICY_DEL6);
}

/// The kernel answers a dump with `XFRM_MSG_NEWSA` messages shaped like the add request,
/// with the counters filled in.
#[test]
fn a_dumped_sa_reads_back_with_its_key_and_counters() {
    let want = test_sa(
        "2001:db8::1",
        "2001:db8::2",
        0x2002,
        0x7663_0001,
        key(1, 36),
    );
    let XfrmMessage::AddSa(mut m) = sa::add_message(&want) else {
        unreachable!()
    };
    m.user_sa_info.lifetime_cur = Lifetime {
        bytes: 1234,
        packets: 9,
        add_time: 1_000,
        use_time: 1_010,
    };
    let mut buf = vec![0; m.buffer_len()];
    m.emit(&mut buf);
    let mut parsed = XfrmMessage::parse_with_param(&buf[..], XFRM_MSG_NEWSA).unwrap();
    let got = sa::from_message(&mut parsed).expect("an ESP SA");
    assert!(
        want.differences(&got).is_empty(),
        "{:?}",
        want.differences(&got)
    );
    assert_eq!(
        got.counters,
        SaCounters {
            bytes: 1234,
            packets: 9,
            add_time: 1_000,
            use_time: 1_010
        }
    );
    assert_eq!(got.counters.age(1_060).as_secs(), 60);
    // The message it was read from no longer holds the key.
    let XfrmMessage::AddSa(ModifyMessage { nlas, .. }) = &parsed else {
        unreachable!()
    };
    for nla in nlas {
        if let XfrmAttrs::EncryptionAlgAead(a) = nla {
            assert!(a.alg_key.iter().all(|&b| b == 0), "key left in the message");
        }
    }
}

#[test]
fn a_dumped_policy_reads_back() {
    let want = test_policy(
        Dir::In,
        "192.168.3.0/24",
        "192.168.2.0/24",
        "192.0.2.2",
        "192.0.2.1",
        0x7663_1234,
    );
    let XfrmMessage::AddPolicy(m) = policy::add_message(&want, false) else {
        unreachable!()
    };
    let mut buf = vec![0; m.buffer_len()];
    m.emit(&mut buf);
    let parsed = XfrmMessage::parse_with_param(&buf[..], XFRM_MSG_NEWPOLICY).unwrap();
    assert_eq!(policy::from_message(&parsed), Some(want));
}

#[test]
fn a_policy_with_a_mark_or_a_port_is_not_plain() {
    let base = test_policy(
        Dir::Out,
        "10.1.0.0/16",
        "10.2.0.0/16",
        "192.0.2.1",
        "192.0.2.2",
        5,
    );
    let XfrmMessage::AddPolicy(mut m) = policy::add_message(&base, false) else {
        unreachable!()
    };
    m.nlas.push(XfrmAttrs::Mark(netlink_packet_xfrm::Mark {
        value: 1,
        mask: 0xff,
    }));
    let marked = XfrmMessage::AddPolicy(m.clone());
    assert!(!policy::from_message(&marked).unwrap().plain);
    m.nlas.pop();
    m.user_policy_info.selector.proto = 6;
    m.user_policy_info.selector.dport = 443;
    m.user_policy_info.selector.dport_mask = 0xffff;
    assert!(
        !policy::from_message(&XfrmMessage::AddPolicy(m))
            .unwrap()
            .plain
    );
}

#[test]
fn the_kernels_reason_is_read_from_an_extended_ack() {
    // A capped NLMSG_ERROR payload after the code: the request's nlmsghdr, then
    // NLMSGERR_ATTR_MSG.
    let mut payload = vec![0u8; 16];
    payload[..4].copy_from_slice(&336u32.to_ne_bytes());
    let text = b"Requested AEAD algorithm not found\0";
    let len = 4 + text.len();
    payload.extend_from_slice(&(len as u16).to_ne_bytes());
    payload.extend_from_slice(&1u16.to_ne_bytes());
    payload.extend_from_slice(text);
    payload.resize(payload.len().next_multiple_of(4), 0);
    let flags = netlink_packet_core::NLM_F_CAPPED | netlink_packet_core::NLM_F_ACK_TLVS;
    assert_eq!(
        crate::netlink::extack_message(&payload, flags).as_deref(),
        Some("Requested AEAD algorithm not found")
    );
    assert_eq!(crate::netlink::extack_message(&payload, 0), None);
}

// ---- the diff ----

const KEY_BYTE: u8 = 0xa5;

fn static_site(name: &str, local: &str, remote: &str, spis: (u32, u32)) -> IpsecSite {
    IpsecSite {
        name: name.into(),
        local_gateway: Some(Gateway::Address(ip(local))),
        remote_gateway: Gateway::Address(ip(remote)),
        local_subnets: vec!["192.168.2.0/24".parse().unwrap()],
        remote_subnets: vec!["192.168.3.0/24".parse().unwrap()],
        keying: Keying::Static(StaticKeying {
            esp: StaticAead::Aes128Gcm16,
            spi_out: spis.0,
            spi_in: spis.1,
            key_out: SecretBytes::new(vec![KEY_BYTE; 20]),
            key_in: SecretBytes::new(vec![KEY_BYTE ^ 0xff; 20]),
            key_out_file: "office-out.key".into(),
            key_in_file: "office-in.key".into(),
        }),
        watchdog_probe: None,
    }
}

fn office() -> IpsecSite {
    static_site("office", "198.51.100.1", "203.0.113.1", (0x1001, 0x1002))
}

fn ike_site() -> IpsecSite {
    IpsecSite {
        name: "fritzbox".into(),
        local_gateway: None,
        remote_gateway: Gateway::Name("right.example.org".into()),
        local_subnets: vec!["192.168.2.0/24".parse().unwrap()],
        remote_subnets: vec!["192.168.1.0/24".parse().unwrap()],
        keying: Keying::Ike(IkeKeying {
            version: IkeVersion::V1Aggressive,
            local_id: None,
            remote_id: None,
            psk: SecretBytes::new(b"passphrase".to_vec()),
            psk_file: "fritzbox.psk".into(),
            ike_proposals: vec!["aes256-sha1-modp1024".into()],
            esp_proposals: vec!["aes256-sha1-modp1024".into()],
            ike_lifetime: std::time::Duration::from_secs(28800),
            esp_lifetime: std::time::Duration::from_secs(3600),
            dpd: None,
            nat_traversal: true,
        }),
        watchdog_probe: None,
    }
}

/// What the kernel would report after `up` applied `sites`.
fn installed(sites: &[IpsecSite]) -> (Vec<Sa>, Vec<Policy>) {
    let desired = plan::desired(sites).unwrap();
    let sas = desired
        .iter()
        .flat_map(|d| d.sas.iter().map(|(_, sa)| sa.clone()))
        .map(|mut sa| {
            sa.counters.packets = 5;
            sa
        })
        .collect();
    let policies = desired.iter().flat_map(|d| d.policies.clone()).collect();
    (sas, policies)
}

fn lines(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .filter(|c| !c.quiet)
        .map(|c| c.line.clone())
        .collect()
}

#[test]
fn a_static_site_needs_two_sas_and_three_policies_per_subnet_pair() {
    let mut site = office();
    site.local_subnets.push("fd02::/64".parse().unwrap()); // no IPv6 remote: no pair
    site.remote_subnets.push("10.3.0.0/16".parse().unwrap());
    let desired = plan::desired(&[site, ike_site()]).unwrap();
    assert_eq!(desired.len(), 1, "the IKE site is charon's");
    let d = &desired[0];
    assert!(is_vpn_ctl_reqid(d.reqid));
    let (out, inbound) = (&d.sas[0], &d.sas[1]);
    assert_eq!(out.0, SaDir::Out);
    assert_eq!(
        (out.1.src, out.1.dst, out.1.spi),
        (ip("198.51.100.1"), ip("203.0.113.1"), 0x1001)
    );
    assert_eq!(
        (inbound.1.src, inbound.1.dst, inbound.1.spi),
        (ip("203.0.113.1"), ip("198.51.100.1"), 0x1002)
    );
    let described: Vec<String> = d.policies.iter().map(Policy::describe).collect();
    assert_eq!(
        described,
        [
            "out 192.168.2.0/24 -> 192.168.3.0/24",
            "in 192.168.3.0/24 -> 192.168.2.0/24",
            "fwd 192.168.3.0/24 -> 192.168.2.0/24",
            "out 192.168.2.0/24 -> 10.3.0.0/16",
            "in 10.3.0.0/16 -> 192.168.2.0/24",
            "fwd 10.3.0.0/16 -> 192.168.2.0/24",
        ]
    );
    let fwd = &d.policies[2];
    assert_eq!(
        fwd.templates,
        [Template::esp_tunnel(
            ip("203.0.113.1"),
            ip("198.51.100.1"),
            d.reqid
        )]
    );
}

#[test]
fn up_in_an_empty_namespace_adds_sas_then_policies() {
    let desired = plan::desired(&[office()]).unwrap();
    let changes = plan::plan_up(&desired, &[], &[]).unwrap();
    assert_eq!(
        lines(&changes),
        [
            "site office: added SA out spi 0x1001 (198.51.100.1 -> 203.0.113.1)",
            "site office: added SA in spi 0x1002 (203.0.113.1 -> 198.51.100.1)",
            "site office: added policy out 192.168.2.0/24 -> 192.168.3.0/24",
            "site office: added policy in 192.168.3.0/24 -> 192.168.2.0/24",
            "site office: added policy fwd 192.168.3.0/24 -> 192.168.2.0/24",
        ]
    );
}

#[test]
fn a_second_up_changes_nothing() {
    let sites = [office()];
    let (sas, policies) = installed(&sites);
    let changes = plan::plan_up(&plan::desired(&sites).unwrap(), &sas, &policies).unwrap();
    assert!(changes.is_empty(), "{:?}", lines(&changes));
}

#[test]
fn a_changed_key_replaces_only_that_sa() {
    let (sas, policies) = installed(&[office()]);
    let mut site = office();
    let Keying::Static(k) = &mut site.keying else {
        unreachable!()
    };
    k.key_in = SecretBytes::new(vec![0x11; 20]);
    let changes = plan::plan_up(&plan::desired(&[site]).unwrap(), &sas, &policies).unwrap();
    assert_eq!(
        lines(&changes),
        ["site office: replaced SA in spi 0x1002 (key changed)"]
    );
    assert!(matches!(
        changes[0].step,
        Step::DeleteSa { spi: 0x1002, .. }
    ));
    assert!(matches!(&changes[1].step, Step::AddSa(sa) if sa.spi == 0x1002));
}

#[test]
fn a_changed_spi_adds_the_new_sa_and_removes_the_old_one() {
    let (sas, policies) = installed(&[office()]);
    let site = static_site("office", "198.51.100.1", "203.0.113.1", (0x1001, 0x2002));
    let changes = plan::plan_up(&plan::desired(&[site]).unwrap(), &sas, &policies).unwrap();
    assert_eq!(
        lines(&changes),
        [
            "site office: removed SA spi 0x1002 (203.0.113.1 -> 198.51.100.1)",
            "site office: added SA in spi 0x2002 (203.0.113.1 -> 198.51.100.1)",
        ]
    );
}

#[test]
fn a_removed_site_loses_its_sas_and_policies_and_the_others_stay() {
    let mut branch = static_site("branch", "198.51.100.1", "192.0.2.9", (0x3001, 0x3002));
    branch.remote_subnets = vec!["192.168.9.0/24".parse().unwrap()];
    let (sas, policies) = installed(&[office(), branch]);
    let changes = plan::plan_up(&plan::desired(&[office()]).unwrap(), &sas, &policies).unwrap();
    let reqid = plan::reqids(&[static_site("branch", "::1", "::2", (1, 2))])["branch"];
    let who = format!("a site no longer in the config (reqid {reqid:#x})");
    assert_eq!(
        lines(&changes),
        [
            format!("{who}: removed policy out 192.168.2.0/24 -> 192.168.9.0/24"),
            format!("{who}: removed policy in 192.168.9.0/24 -> 192.168.2.0/24"),
            format!("{who}: removed policy fwd 192.168.9.0/24 -> 192.168.2.0/24"),
            format!("{who}: removed SA spi 0x3001 (198.51.100.1 -> 192.0.2.9)"),
            format!("{who}: removed SA spi 0x3002 (192.0.2.9 -> 198.51.100.1)"),
        ]
    );
}

#[test]
fn foreign_objects_are_left_alone_and_refused_when_in_the_way() {
    let sites = [office()];
    let desired = plan::desired(&sites).unwrap();
    // charon's SA and policy for another connection: untouched.
    let charon_sa = test_sa("198.51.100.1", "192.0.2.77", 0xc0ffee, 1, key(1, 20));
    let charon_policy = test_policy(
        Dir::Out,
        "192.168.2.0/24",
        "192.168.1.0/24",
        "198.51.100.1",
        "192.0.2.77",
        1,
    );
    let changes = plan::plan_up(&desired, &[charon_sa], &[charon_policy]).unwrap();
    assert_eq!(changes.len(), 5, "{:?}", lines(&changes));
    assert!(lines(&changes).iter().all(|l| l.contains("added")));
    assert!(plan::plan_down(&sites, &[], &[]).is_empty());

    // An SA made by hand with the site's SPI and destination.
    let by_hand = test_sa("198.51.100.1", "203.0.113.1", 0x1001, 0, key(1, 20));
    let err = plan::plan_up(&desired, &[by_hand], &[]).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("vpn-ctl did not create"), "{msg}");
    assert!(msg.contains("ip xfrm state del"), "{msg}");

    // A policy made by hand for the site's subnets.
    let by_hand = test_policy(
        Dir::Fwd,
        "192.168.3.0/24",
        "192.168.2.0/24",
        "203.0.113.1",
        "198.51.100.1",
        3,
    );
    let err = plan::plan_up(&desired, &[], &[by_hand]).unwrap_err();
    assert!(format!("{err:#}").contains("ip xfrm policy del"), "{err:#}");
}

#[test]
fn down_removes_every_vpn_ctl_object_policies_first_and_nothing_else() {
    let sites = [office()];
    let (mut sas, mut policies) = installed(&sites);
    sas.push(test_sa(
        "198.51.100.1",
        "192.0.2.77",
        0xc0ffee,
        1,
        key(1, 20),
    ));
    policies.push(test_policy(
        Dir::Out,
        "10.1.0.0/16",
        "10.2.0.0/16",
        "198.51.100.1",
        "192.0.2.77",
        1,
    ));
    let changes = plan::plan_down(&sites, &sas, &policies);
    assert_eq!(
        lines(&changes),
        [
            "site office: removed policy out 192.168.2.0/24 -> 192.168.3.0/24",
            "site office: removed policy in 192.168.3.0/24 -> 192.168.2.0/24",
            "site office: removed policy fwd 192.168.3.0/24 -> 192.168.2.0/24",
            "site office: removed SA spi 0x1001 (198.51.100.1 -> 203.0.113.1)",
            "site office: removed SA spi 0x1002 (203.0.113.1 -> 198.51.100.1)",
        ]
    );
}

#[test]
fn two_sites_with_the_same_spi_towards_one_gateway_are_refused() {
    let a = office();
    let b = static_site("office2", "198.51.100.1", "203.0.113.1", (0x1001, 0x4002));
    let err = plan::plan_up(&plan::desired(&[a, b]).unwrap(), &[], &[]).unwrap_err();
    assert!(format!("{err}").contains("both use spi 0x1001"), "{err}");
}

#[test]
fn reqids_are_stable_distinct_and_in_vpn_ctls_range() {
    let names: Vec<String> = (0..3000).map(|i| format!("site{i}")).collect();
    let sites: Vec<IpsecSite> = names
        .iter()
        .map(|n| static_site(n, "192.0.2.1", "192.0.2.2", (0x1001, 0x1002)))
        .collect();
    let all = plan::reqids(&sites);
    let distinct: std::collections::BTreeSet<u32> = all.values().copied().collect();
    assert_eq!(
        distinct.len(),
        sites.len(),
        "3000 names must collide somewhere"
    );
    assert!(all.values().all(|&r| is_vpn_ctl_reqid(r)));
    // A site's reqid does not depend on unrelated sites (when it does not collide).
    let alone = plan::reqids(&sites[..1]);
    assert_eq!(alone["site0"], all["site0"]);
    assert_eq!(
        plan::reqids(&[office()])["office"],
        plan::reqids(&[office()])["office"]
    );
    assert!(!is_vpn_ctl_reqid(1) && !is_vpn_ctl_reqid(16384));
}

#[test]
fn static_sites_the_kernel_cannot_take_are_refused_with_what_to_do() {
    let mut named = office();
    named.remote_gateway = Gateway::Name("peer.example.org".into());
    let err = plan::desired(&[named]).unwrap_err();
    assert!(format!("{err}").contains("keying = \"ike\""), "{err}");

    let mut short = office();
    let Keying::Static(k) = &mut short.keying else {
        unreachable!()
    };
    k.key_out = SecretBytes::new(vec![1; 16]);
    let err = plan::desired(&[short]).unwrap_err();
    assert!(format!("{err}").contains("needs 20"), "{err}");

    let reserved = static_site("office", "198.51.100.1", "203.0.113.1", (0x10, 0x1002));
    assert!(plan::desired(&[reserved]).is_err());
}

#[test]
fn keys_never_show_in_debug_output_or_reports() {
    let sites = [office()];
    let desired = plan::desired(&sites).unwrap();
    let mut changed = office();
    let Keying::Static(k) = &mut changed.keying else {
        unreachable!()
    };
    k.key_out = SecretBytes::new(vec![0x5a; 20]);
    let (sas, policies) = installed(&sites);
    let changes = plan::plan_up(&plan::desired(&[changed]).unwrap(), &sas, &policies).unwrap();
    let texts = [
        format!("{desired:?}"),
        format!("{changes:?}"),
        format!("{sas:?}"),
        lines(&changes).join("\n"),
    ];
    for text in texts {
        for byte in [KEY_BYTE, KEY_BYTE ^ 0xff, 0x5a] {
            let decimal = format!("{byte}, {byte}");
            let hexed = format!("{byte:02x}{byte:02x}");
            assert!(
                !text.contains(&decimal) && !text.to_lowercase().contains(&hexed),
                "key material in: {text}"
            );
        }
        assert!(
            text.contains("redacted") || !text.contains("key:"),
            "{text}"
        );
    }
}

// ---- status ----

#[test]
fn status_reports_counters_and_says_when_nothing_comes_back() {
    let sites = [office(), ike_site()];
    let (mut sas, policies) = installed(&sites[..1]);
    sas[0].counters = SaCounters {
        bytes: 840,
        packets: 10,
        add_time: 1_000,
        use_time: 1_001,
    };
    sas[1].counters = SaCounters {
        add_time: 1_000,
        ..SaCounters::default()
    };
    let counters = vec![Counter {
        name: "XfrmInNoStates".into(),
        value: 12,
        meaning: explain("XfrmInNoStates"),
    }];
    let st = status::assemble(&sites, &sas, &policies, counters, None, 1_120);
    let office = &st.sites[0];
    assert_eq!(office.sas[0].direction, Some(SaDir::Out));
    assert_eq!((office.sas[0].packets, office.sas[0].bytes), (10, 840));
    assert_eq!(office.sas[0].age_secs, Some(120));
    assert!(
        office
            .policies
            .iter()
            .all(|p| p.present && p.matches_config)
    );
    assert_eq!(office.hints.len(), 1, "{:?}", office.hints);
    assert!(
        office.hints[0].contains("none came in on spi 0x1002"),
        "{}",
        office.hints[0]
    );
    assert!(st.hints[0].contains("SPI we don't have"), "{:?}", st.hints);
    assert_eq!(st.sites[1].keying, "ike");
    let text = st.to_string();
    assert!(
        text.contains(
            "SA out spi 0x00001001 198.51.100.1 -> 203.0.113.1: 840 bytes, 10 packets, added 2m ago"
        ),
        "{text}"
    );
    assert!(text.contains("policies: 3 of 3 present"), "{text}");
    assert!(text.contains("XfrmInNoStates 12"), "{text}");
}

#[test]
fn status_says_run_up_for_missing_or_different_objects() {
    let sites = [office()];
    let (mut sas, mut policies) = installed(&sites);
    sas.remove(0);
    if let Some(a) = &mut sas[0].aead {
        a.key = SecretBytes::new(vec![0; 20]);
    }
    policies.remove(2);
    let st = status::assemble(&sites, &sas, &policies, Vec::new(), None, 0);
    let hints = &st.sites[0].hints;
    assert!(
        hints
            .iter()
            .any(|h| h == "SA out spi 0x1001 is missing: run `vpn-ctl up`"),
        "{hints:?}"
    );
    assert!(
        hints
            .iter()
            .any(|h| h.starts_with("SA in spi 0x1002 differs from the config (key)")),
        "{hints:?}"
    );
    assert!(
        hints
            .iter()
            .any(|h| h.starts_with("1 of 3 policies are missing")
                && h.contains("fwd 192.168.3.0/24 -> 192.168.2.0/24")),
        "{hints:?}"
    );
}
