//! Statically keyed IPsec between two site routers, end to end over XFRM netlink:
//!
//! ```text
//!  LAN A 192.168.2.10 ──veth── router A ──veth (WAN)── router B ──veth── LAN B 192.168.3.10
//!                          (vpn_ctl::xfrm::up)     (vpn_ctl::xfrm::up)
//! ```
//!
//! The ESP test needs a kernel with ESP (`cargo xtask guest --test ipsec_static`); on a host
//! without it, it is skipped. Policies need only XFRM netlink, which the host has: the first
//! test runs anywhere (as root).

use std::{net::Ipv4Addr, process::Command};

use vpn_ctl::{
    config::ipsec::{
        Gateway, IkeKeying, IkeVersion, IpsecSite, Keying, SecretBytes, StaticAead, StaticKeying,
    },
    xfrm::{self, Dir, Policy, REQID_FIRST, SaDir, Template, XfrmSocket},
};
use vpn_ctl_tests::{
    Netns, VethPair,
    kernel::{Feature, kernel_has},
    lan_behind, run,
};

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).unwrap()
}

/// `ip -n NS WORDS...`, the words split at spaces.
fn ip_words(ns: &Netns, words: &str) {
    ns.ip(&words.split_whitespace().collect::<Vec<_>>());
}

/// `ip xfrm state` and `ip xfrm policy` in `ns`.
fn xfrm_listing(ns: &Netns) -> (String, String) {
    (
        stdout(ns.command("ip").args(["xfrm", "state"])),
        stdout(ns.command("ip").args(["xfrm", "policy"])),
    )
}

fn policy(dir: Dir, src: &str, dst: &str, tmpl: (Ipv4Addr, Ipv4Addr), reqid: u32) -> Policy {
    Policy {
        dir,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        plain: true,
        priority: 0,
        allow: true,
        templates: vec![Template::esp_tunnel(tmpl.0.into(), tmpl.1.into(), reqid)],
    }
}

/// XFRM policies need no ESP: add, list, update and remove them on any kernel with
/// XFRM netlink, and check that `down` removes vpn-ctl's policies and leaves a foreign one.
#[test]
fn policies_alone_can_be_added_listed_updated_and_removed() {
    let ns = Netns::new();
    // A policy vpn-ctl did not create (reqid 5, as an IKE daemon would make).
    ip_words(
        &ns,
        "xfrm policy add src 10.77.0.0/16 dst 10.78.0.0/16 dir out \
         tmpl src 192.0.2.1 dst 192.0.2.99 proto esp reqid 5 mode tunnel",
    );
    let (a, b) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let reqid = REQID_FIRST + 0x42;
    let ours = [
        policy(Dir::Out, "192.168.2.0/24", "192.168.3.0/24", (a, b), reqid),
        policy(Dir::In, "192.168.3.0/24", "192.168.2.0/24", (b, a), reqid),
        policy(Dir::Fwd, "192.168.3.0/24", "192.168.2.0/24", (b, a), reqid),
    ];

    let (listed, lines) = ns.enter(|| {
        let x = XfrmSocket::open().expect("open the XFRM socket");
        for p in &ours {
            x.add_policy(p).expect("add a policy");
        }
        let err = x.add_policy(&ours[0]).expect_err("the same policy twice");
        assert!(format!("{err:#}").contains("exists already"), "{err:#}");
        let mut changed = ours[2].clone();
        changed.templates[0].src = Ipv4Addr::new(192, 0, 2, 3).into();
        x.update_policy(&changed).expect("update a policy");
        let listed = x.policies().expect("list the policies");
        assert!(x.sas().expect("list the SAs").is_empty());
        let lines = xfrm::down(&[]).expect("down");
        (listed, lines)
    });

    assert_eq!(listed.len(), 4, "{listed:#?}");
    for p in &ours[..2] {
        assert!(listed.contains(p), "{p:?} not listed in {listed:#?}");
    }
    let fwd = listed
        .iter()
        .find(|p| p.dir == Dir::Fwd)
        .expect("the fwd policy");
    assert_eq!(fwd.templates[0].src, Ipv4Addr::new(192, 0, 2, 3));
    let foreign = listed
        .iter()
        .find(|p| p.reqid() == Some(5))
        .expect("the foreign policy");
    assert_eq!(foreign.src.to_string(), "10.77.0.0/16");

    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("a site no longer in the config") && l.contains("removed policy")),
        "{lines:?}"
    );
    let (_, policies) = xfrm_listing(&ns);
    assert!(policies.contains("10.77.0.0/16"), "{policies}");
    assert!(!policies.contains("192.168."), "{policies}");
}

/// Without ESP in the kernel, `up` fails on the first SA, says why, and changes nothing.
#[test]
fn up_on_a_kernel_without_esp_fails_before_changing_anything() {
    if Feature::Esp.available() {
        return; // the guest: the next test covers up
    }
    let net = VethPair::new();
    let sites = [site_pair(&net).0];
    let err = net
        .a
        .enter(|| xfrm::up(&sites))
        .expect_err("up without ESP");
    let msg = format!("{err:#}");
    assert!(msg.contains("adding SA spi 0x1001"), "{msg}");
    assert!(msg.contains("nothing was changed"), "{msg}");
    let (states, policies) = xfrm_listing(&net.a);
    assert!(states.trim().is_empty() && policies.trim().is_empty());
}

const KEY_A_TO_B: [u8; 36] = [0x11; 36];
const KEY_B_TO_A: [u8; 36] = [0x22; 36];

#[allow(clippy::too_many_arguments)]
fn static_site(
    name: &str,
    local: Ipv4Addr,
    remote: Ipv4Addr,
    local_net: &str,
    remote_net: &str,
    (spi_out, spi_in): (u32, u32),
    key_out: &[u8],
    key_in: &[u8],
) -> IpsecSite {
    IpsecSite {
        name: name.into(),
        local_gateway: Some(Gateway::Address(local.into())),
        remote_gateway: Gateway::Address(remote.into()),
        local_subnets: vec![local_net.parse().unwrap()],
        remote_subnets: vec![remote_net.parse().unwrap()],
        keying: Keying::Static(StaticKeying {
            esp: StaticAead::Aes256Gcm16,
            spi_out,
            spi_in,
            key_out: SecretBytes::new(key_out.to_vec()),
            key_in: SecretBytes::new(key_in.to_vec()),
            key_out_file: format!("{name}-out.key").into(),
            key_in_file: format!("{name}-in.key").into(),
        }),
        watchdog_probe: None,
    }
}

/// Router A's site "branch" and router B's site "hq": mirror images.
fn site_pair(net: &VethPair) -> (IpsecSite, IpsecSite) {
    (
        static_site(
            "branch",
            net.a_addr,
            net.b_addr,
            "192.168.2.0/24",
            "192.168.3.0/24",
            (0x1001, 0x1002),
            &KEY_A_TO_B,
            &KEY_B_TO_A,
        ),
        static_site(
            "hq",
            net.b_addr,
            net.a_addr,
            "192.168.3.0/24",
            "192.168.2.0/24",
            (0x1002, 0x1001),
            &KEY_B_TO_A,
            &KEY_A_TO_B,
        ),
    )
}

/// An IKE site in the same config: `up` and `down` leave it to charon.
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
            psk: SecretBytes::new(b"not used".to_vec()),
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

fn up(router: &Netns, sites: &[IpsecSite]) -> Vec<String> {
    router
        .enter(|| xfrm::up(sites))
        .unwrap_or_else(|e| panic!("up in {}: {e:#}", router.name()))
}

fn ping(from: &Netns, to: &str) {
    run(from
        .command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "5", to]));
}

/// (out packets, in packets) of the router's one static site, from `status`.
fn sa_packets(router: &Netns, sites: &[IpsecSite]) -> (u64, u64, xfrm::Status) {
    let st = router
        .enter(|| xfrm::status(sites))
        .unwrap_or_else(|e| panic!("status in {}: {e:#}", router.name()));
    let site = &st.sites[0];
    let packets = |d| {
        site.sas
            .iter()
            .find(|s| s.direction == Some(d) && s.installed)
            .unwrap_or_else(|| panic!("no installed {d} SA:\n{st}"))
            .packets
    };
    (packets(SaDir::Out), packets(SaDir::In), st)
}

#[test]
fn static_tunnel_carries_lan_to_lan_pings_and_up_down_are_exact() {
    if !kernel_has(Feature::Esp) {
        return;
    }
    let net = VethPair::new();
    let (router_a, router_b) = (&net.a, &net.b);
    let lan_a = lan_behind(router_a, "192.168.2");
    let lan_b = lan_behind(router_b, "192.168.3");
    // The WAN link is "the internet": each router's default route leads to the other.
    router_a.ip(&["route", "add", "default", "via", &net.b_addr.to_string()]);
    router_b.ip(&["route", "add", "default", "via", &net.a_addr.to_string()]);
    // Something vpn-ctl did not create, on router A: it must survive up and down.
    let a = net.a_addr;
    ip_words(
        router_a,
        &format!(
            "xfrm state add src {a} dst 192.0.2.99 proto esp spi 0x9999 reqid 5 mode tunnel \
             aead rfc4106(gcm(aes)) 0x0102030405060708090a0b0c0d0e0f1011121314 128"
        ),
    );
    ip_words(
        router_a,
        &format!(
            "xfrm policy add src 10.77.0.0/16 dst 10.78.0.0/16 dir out \
             tmpl src {a} dst 192.0.2.99 proto esp reqid 5 mode tunnel"
        ),
    );

    let (branch, hq) = site_pair(&net);
    let sites_a = [branch, ike_site()];
    let sites_b = [hq];

    let lines_a = up(router_a, &sites_a);
    assert_eq!(
        lines_a,
        [
            format!(
                "site branch: added SA out spi 0x1001 ({} -> {})",
                net.a_addr, net.b_addr
            ),
            format!(
                "site branch: added SA in spi 0x1002 ({} -> {})",
                net.b_addr, net.a_addr
            ),
            "site branch: added policy out 192.168.2.0/24 -> 192.168.3.0/24".to_string(),
            "site branch: added policy in 192.168.3.0/24 -> 192.168.2.0/24".to_string(),
            "site branch: added policy fwd 192.168.3.0/24 -> 192.168.2.0/24".to_string(),
        ]
    );
    assert_eq!(up(router_b, &sites_b).len(), 5);

    ping(&lan_a, "192.168.3.10");

    for (router, sites) in [(router_a, &sites_a[..]), (router_b, &sites_b[..])] {
        let (out, inbound, st) = sa_packets(router, sites);
        assert!(
            out >= 3 && inbound >= 3,
            "{}: SA packets out {out}, in {inbound}:\n{st}",
            router.name()
        );
        let site = &st.sites[0];
        assert!(site.policies.iter().all(|p| p.matches_config), "{st}");
        assert!(site.hints.is_empty(), "{st}");
        assert!(
            site.sas.iter().all(|s| s.bytes > 0 && s.age_secs.is_some()),
            "{st}"
        );
    }
    // A second `up` changes nothing, and the counters keep running.
    assert!(
        up(router_a, &sites_a).is_empty(),
        "second up on A changed something"
    );
    assert!(
        up(router_b, &sites_b).is_empty(),
        "second up on B changed something"
    );
    let (out_before, _, _) = sa_packets(router_a, &sites_a);
    assert!(out_before >= 3, "the second up reset the SA");

    // New key for A -> B: exactly that SA is replaced on both sides, and traffic flows.
    let new_key = [0x33u8; 36];
    let (mut branch, mut hq) = site_pair(&net);
    for (site, out) in [(&mut branch, true), (&mut hq, false)] {
        let Keying::Static(k) = &mut site.keying else {
            unreachable!()
        };
        if out {
            k.key_out = SecretBytes::new(new_key.to_vec());
        } else {
            k.key_in = SecretBytes::new(new_key.to_vec());
        }
    }
    let (sites_a, sites_b) = ([branch], [hq]);
    assert_eq!(
        up(router_a, &sites_a),
        ["site branch: replaced SA out spi 0x1001 (key changed)"]
    );
    assert_eq!(
        up(router_b, &sites_b),
        ["site hq: replaced SA in spi 0x1001 (key changed)"]
    );
    ping(&lan_b, "192.168.2.10");
    let (out, inbound, st) = sa_packets(router_a, &sites_a);
    assert!(
        out >= 3 && inbound >= 6,
        "after rekeying: out {out}, in {inbound}\n{st}"
    );

    // The site leaves A's config: its SAs and policies go, the foreign ones stay.
    let removed = up(router_a, &[]);
    assert_eq!(removed.len(), 5, "{removed:?}");
    assert!(
        removed
            .iter()
            .all(|l| l.starts_with("a site no longer in the config")),
        "{removed:?}"
    );
    let (states, policies) = xfrm_listing(router_a);
    assert!(states.contains("spi 0x00009999"), "{states}");
    assert!(!states.contains("spi 0x00001001"), "{states}");
    assert!(
        policies.contains("10.77.0.0/16") && !policies.contains("192.168."),
        "{policies}"
    );

    // down: nothing left of vpn-ctl's on A, everything gone on B.
    assert!(router_a.enter(|| xfrm::down(&sites_a)).unwrap().is_empty());
    let down_b = router_b.enter(|| xfrm::down(&sites_b)).unwrap();
    assert_eq!(down_b.len(), 5, "{down_b:?}");
    assert!(
        down_b.iter().all(|l| l.starts_with("site hq: removed")),
        "{down_b:?}"
    );
    ip_words(
        router_a,
        &format!("xfrm state del src {a} dst 192.0.2.99 proto esp spi 0x9999"),
    );
    ip_words(
        router_a,
        "xfrm policy del src 10.77.0.0/16 dst 10.78.0.0/16 dir out",
    );
    for router in [router_a, router_b] {
        let (states, policies) = xfrm_listing(router);
        assert!(
            states.trim().is_empty() && policies.trim().is_empty(),
            "{} still has XFRM objects:\n{states}\n{policies}",
            router.name()
        );
    }
}

/// The watchdog finds a flushed SA pair, says so, re-applies the site, and the tunnel carries
/// traffic again; with the SAs in place it reports the probe answering.
#[test]
fn watchdog_restores_flushed_static_sas() {
    if !kernel_has(Feature::Esp) {
        return;
    }
    let net = VethPair::new();
    let (router_a, router_b) = (&net.a, &net.b);
    let lan_a = lan_behind(router_a, "192.168.2");
    let _lan_b = lan_behind(router_b, "192.168.3");
    router_a.ip(&["route", "add", "default", "via", &net.b_addr.to_string()]);
    router_b.ip(&["route", "add", "default", "via", &net.a_addr.to_string()]);
    let (mut branch, hq) = site_pair(&net);
    branch.watchdog_probe = Some("192.168.3.10".parse().unwrap());
    up(router_a, std::slice::from_ref(&branch));
    up(router_b, std::slice::from_ref(&hq));
    let config = vpn_ctl::config::Config {
        path: "vpn.toml".into(),
        router: Default::default(),
        wireguard: Vec::new(),
        ipsec: vec![branch.clone()],
        daemon: Default::default(),
        unterminated_line: None,
        warnings: Vec::new(),
    };
    let once = vpn_ctl::watchdog::Options {
        once: true,
        interval: std::time::Duration::from_secs(1),
        vici_socket: "/nonexistent/charon.vici".into(),
    };
    let watch = |router: &Netns| {
        router.enter(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let nl_check = rt.block_on(async {
                let nl = vpn_ctl::link::Netlink::connect().unwrap();
                vpn_ctl::watchdog::check(&nl, &branch).await.unwrap()
            });
            let all_up = rt.block_on(vpn_ctl::watchdog::run(&config, &once)).unwrap();
            (nl_check, all_up)
        })
    };

    let (health, all_up) = watch(router_a);
    assert!(health.is_up(), "{health}");
    assert!(all_up);

    ip_words(router_a, "xfrm state flush");
    let (health, all_up) = watch(router_a);
    assert!(
        matches!(health, vpn_ctl::watchdog::Health::NoSa { .. }),
        "{health}"
    );
    assert!(
        health.to_string().starts_with("no SA in the kernel"),
        "{health}"
    );
    assert!(all_up, "the watchdog did not restore the site");
    ping(&lan_a, "192.168.3.10");
}
