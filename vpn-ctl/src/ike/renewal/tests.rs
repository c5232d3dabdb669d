use super::*;

fn section(pairs: Vec<(&str, ViciValue)>) -> ViciValue {
    ViciValue::Section(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn s(text: &str) -> ViciValue {
    ViciValue::Str(text.to_string())
}

/// An IKE SA as `list_ike` writes it (with `rekey` seconds left, `None`: passed).
fn ike(id: u64, state: &str, initiator: bool, rekey: Option<i64>) -> ViciValue {
    let mut pairs = vec![
        ("uniqueid", s(&id.to_string())),
        ("version", s("1")),
        ("state", s(state)),
    ];
    if initiator {
        pairs.push(("initiator", s("yes")));
    }
    if let Some(t) = rekey {
        pairs.push(("reauth-time", s(&t.to_string())));
    }
    section(pairs)
}

fn updown(up: bool, sa: ViciValue) -> ViciValue {
    let mut pairs = vec![("vpn-ctl-fritzbox", sa)];
    if up {
        pairs.push(("up", s("yes")));
    }
    section(pairs)
}

fn log(id: u64, msg: &str) -> ViciValue {
    section(vec![
        ("group", s("IKE")),
        ("level", s("1")),
        ("ikesa-name", s("vpn-ctl-fritzbox")),
        ("ikesa-uniqueid", s(&id.to_string())),
        ("msg", s(msg)),
    ])
}

fn tally(r: &Renewals, kind: Renewal) -> Tally {
    r.tallies()
        .into_iter()
        .find(|(site, k, _)| site == "fritzbox" && *k == kind)
        .map(|(_, _, t)| t)
        .unwrap_or_default()
}

#[test]
fn a_new_ike_sa_beside_an_established_one_is_a_re_authentication_by_either_side() {
    let mut r = Renewals::new();
    let said = r.event(
        "ike-updown",
        &updown(true, ike(1, "ESTABLISHED", true, Some(50))),
    );
    assert_eq!(
        said,
        [Said::Info(
            "site fritzbox: IKE SA #1 established (started by this side)".into()
        )]
    );
    assert_eq!(tally(&r, Renewal::IkeReauth), Tally::default());
    // The FRITZ!Box re-authenticates: a new SA it started, then the old one ends.
    let said = r.event(
        "ike-updown",
        &updown(true, ike(2, "ESTABLISHED", false, Some(50))),
    );
    assert_eq!(
        said,
        [Said::Info(
            "site fritzbox: re-authenticated (started by the other side): IKE SA #2 \
                 replaces #1"
                .into()
        )]
    );
    assert!(
        r.event(
            "ike-updown",
            &updown(false, ike(1, "DELETING", true, Some(3)))
        )
        .is_empty()
    );
    // This side re-authenticates (the old SA is REKEYING meanwhile).
    r.event(
        "ike-updown",
        &updown(true, ike(3, "ESTABLISHED", true, Some(50))),
    );
    r.event(
        "ike-updown",
        &updown(false, ike(2, "REKEYING", false, None)),
    );
    assert_eq!(tally(&r, Renewal::IkeReauth), Tally { done: 2, failed: 0 });
}

#[test]
fn a_refused_re_authentication_is_a_failure_with_charons_reason_and_counts_once() {
    let mut r = Renewals::new();
    r.seed(
        &ike_sas_from_event(&section(vec![(
            "vpn-ctl-fritzbox",
            ike(7, "ESTABLISHED", true, Some(10)),
        )]))
        .unwrap(),
    );
    r.event(
        "log",
        // Logged under the old SA, as charon does when it re-authenticates.
        &log(
            7,
            "initiating Aggressive Mode IKE_SA vpn-ctl-fritzbox[8] to 10.0.0.1",
        ),
    );
    r.event("log", &log(8, "retransmit 1 of request with message ID 0"));
    // The failure is in charon's log; its ike-updown (not always raised) says nothing more.
    let said = r.event(
        "log",
        &log(8, "received AUTHENTICATION_FAILED error notify"),
    );
    assert!(
        r.event(
            "ike-updown",
            &updown(false, ike(8, "CONNECTING", true, None))
        )
        .is_empty()
    );
    let [Said::Warn(text)] = said.as_slice() else {
        panic!("{said:?}");
    };
    assert!(
        text.starts_with(
            "site fritzbox: re-authentication failed (started by this side): charon: \
                 \"received AUTHENTICATION_FAILED error notify\"; the other side rejected"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("IKE SA #7 carries the traffic until it expires"),
        "{text}"
    );
    // The old SA then expires: said, but not counted a second time.
    let said = r.event("ike-updown", &updown(false, ike(7, "REKEYING", true, None)));
    assert!(matches!(&said[..], [Said::Warn(t)] if t.contains("ended and none replaces it")));
    assert_eq!(tally(&r, Renewal::IkeReauth), Tally { done: 0, failed: 1 });
    // A failure charon raises only as an ike-updown (the other side started it).
    r.event(
        "ike-updown",
        &updown(true, ike(9, "ESTABLISHED", true, Some(10))),
    );
    let said = r.event(
        "ike-updown",
        &updown(false, ike(10, "CONNECTING", false, None)),
    );
    assert!(
        matches!(&said[..], [Said::Warn(t)] if t.contains("re-authentication failed (started by the other side)")),
        "{said:?}"
    );
    assert_eq!(tally(&r, Renewal::IkeReauth), Tally { done: 0, failed: 2 });
    // charon's reason for it comes after its ike-updown (its logger sends from a queue): said
    // then, once, and not counted again.
    let said = r.event(
        "log",
        &log(10, "received AUTHENTICATION_FAILED notify error"),
    );
    assert!(
        matches!(&said[..], [Said::Warn(t)] if t.starts_with("site fritzbox: IKE SA #10 failed because: charon: \"received AUTHENTICATION_FAILED notify error\"; the other side rejected")),
        "{said:?}"
    );
    assert!(
        r.event(
            "log",
            &log(10, "received AUTHENTICATION_FAILED notify error")
        )
        .is_empty()
    );
    assert_eq!(tally(&r, Renewal::IkeReauth), Tally { done: 0, failed: 2 });
}

#[test]
fn an_ike_sa_that_expires_alone_failed_its_renewal_and_one_deleted_early_did_not() {
    let mut r = Renewals::new();
    r.event(
        "ike-updown",
        &updown(true, ike(1, "ESTABLISHED", true, Some(100))),
    );
    let said = r.event(
        "ike-updown",
        &updown(false, ike(1, "ESTABLISHED", true, Some(80))),
    );
    assert!(matches!(&said[..], [Said::Warn(t)] if t.contains("ended and none replaces")));
    assert_eq!(tally(&r, Renewal::IkeReauth).failed, 0);
    r.event(
        "ike-updown",
        &updown(true, ike(2, "ESTABLISHED", true, Some(100))),
    );
    r.event("log", &log(2, "giving up after 5 retransmits"));
    let said = r.event("ike-updown", &updown(false, ike(2, "REKEYING", true, None)));
    let [Said::Warn(text)] = said.as_slice() else {
        panic!("{said:?}");
    };
    assert!(text.contains("expired without a successor, re-authentication failed"));
    assert!(text.contains("the other side never answered"), "{text}");
    assert_eq!(tally(&r, Renewal::IkeReauth), Tally { done: 0, failed: 1 });
}

#[test]
fn child_rekeys_count_and_a_child_that_runs_out_is_a_failed_rekey() {
    let mut r = Renewals::new();
    let child = |id: &str, spi: &str, life: &str| {
        section(vec![
            ("name", s("vpn-ctl-fritzbox")),
            ("uniqueid", s(id)),
            ("state", s("INSTALLED")),
            ("spi-in", s(&format!("c{spi}"))),
            ("spi-out", s(&format!("d{spi}"))),
            ("life-time", s(life)),
        ])
    };
    let mut sa = ike(1, "ESTABLISHED", true, Some(100));
    if let ViciValue::Section(map) = &mut sa {
        map.insert(
            "child-sas".into(),
            section(vec![(
                "vpn-ctl-fritzbox",
                section(vec![
                    ("old", child("1", "0000001", "5")),
                    ("new", child("2", "0000002", "60")),
                ]),
            )]),
        );
    }
    let said = r.event("child-rekey", &section(vec![("vpn-ctl-fritzbox", sa)]));
    assert_eq!(
        said,
        [Said::Info(
            "site fritzbox: CHILD SA rekeyed: SPIs c0000002_i d0000002_o replace \
                 c0000001_i d0000001_o"
                .into()
        )]
    );
    let mut sa = ike(1, "ESTABLISHED", true, Some(100));
    if let ViciValue::Section(map) = &mut sa {
        map.insert(
            "child-sas".into(),
            section(vec![("vpn-ctl-fritzbox-2", child("2", "0000002", "0"))]),
        );
    }
    let said = r.event("child-updown", &updown(false, sa.clone()));
    assert!(matches!(&said[..], [Said::Warn(t)] if t.contains("CHILD SA {2} expired")));
    // Deleted early (by the peer, or with its IKE SA): no failure.
    if let ViciValue::Section(map) = &mut sa {
        map.insert("state".into(), s("DELETING"));
    }
    assert!(r.event("child-updown", &updown(false, sa)).is_empty());
    assert_eq!(tally(&r, Renewal::ChildRekey), Tally { done: 1, failed: 1 });
}

#[test]
fn other_connections_are_not_counted_and_the_log_kept_is_bounded() {
    let mut r = Renewals::new();
    let mut other = updown(true, ike(1, "ESTABLISHED", true, Some(1)));
    if let ViciValue::Section(map) = &mut other {
        let sa = map.remove("vpn-ctl-fritzbox").unwrap();
        map.insert("home".into(), sa);
    }
    assert!(r.event("ike-updown", &other).is_empty());
    assert!(r.tallies().is_empty());
    for i in 0..1000 {
        r.event("log", &log(1, &format!("line {i}")));
    }
    assert_eq!(r.sites["fritzbox"].log.len(), LOG_LINES);
    r.sites(&[]);
    assert!(r.tallies().is_empty());
}
