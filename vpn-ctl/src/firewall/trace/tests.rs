use super::*;
use crate::firewall::needs::{Action, Expect};

/// A ruleset as `nft -j list ruleset` gives it.
fn ruleset(json: serde_json::Value) -> Ruleset {
    Ruleset::parse(&json.to_string(), "").unwrap()
}

fn wireguard_in(wan: &str) -> Need {
    Need {
        hook: Hook::Input,
        matches: vec![Match::Iif(wan.into()), Match::Udp(51820)],
        action: Action::Accept,
        purpose: "WireGuard wg0".into(),
        expect: Expect::Passes,
    }
}

fn chain(name: &str, hook: Option<(&str, i64, &str)>) -> Value {
    let mut c = serde_json::json!({"family": "inet", "table": "t", "name": name});
    if let Some((hook, prio, policy)) = hook {
        c["type"] = "filter".into();
        c["hook"] = hook.into();
        c["prio"] = prio.into();
        c["policy"] = policy.into();
    }
    serde_json::json!({ "chain": c })
}

fn rule(chain: &str, handle: u64, expr: Value) -> Value {
    serde_json::json!({"rule": {"family": "inet", "table": "t", "chain": chain,
            "handle": handle, "expr": expr}})
}

fn fate(objects: Vec<Value>, need: &Need, family: Family) -> Fate {
    let rs = ruleset(serde_json::json!({ "nftables": objects }));
    trace(&rs, &Probe::for_need(need, family), false)
}

fn dport(port: Value) -> Value {
    serde_json::json!({"match": {"op": "==",
            "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": port}})
}

#[test]
fn a_port_in_an_anonymous_set_is_accepted_before_the_policy_drop() {
    let objects = vec![
        chain("input", Some(("input", 0, "drop"))),
        rule(
            "input",
            1,
            serde_json::json!([dport(serde_json::json!({"set": [500, 51820]})), {"accept": null}]),
        ),
    ];
    let need = wireguard_in("wan");
    assert!(matches!(
        fate(objects, &need, Family::V4),
        Fate::Passes { .. }
    ));
}

#[test]
fn a_goto_chain_that_falls_through_ends_the_calling_chain() {
    // input: goto sub; accept.  sub: (nothing matches).  → back to input's caller:
    // the policy (drop) decides, the accept after the goto is never reached.
    let objects = vec![
        chain("input", Some(("input", 0, "drop"))),
        chain("sub", None),
        rule("input", 1, serde_json::json!([{"goto": {"target": "sub"}}])),
        rule("input", 2, serde_json::json!([{"accept": null}])),
        rule(
            "sub",
            3,
            serde_json::json!([dport(53.into()), {"accept": null}]),
        ),
    ];
    let Fate::Dropped { by, .. } = fate(objects, &wireguard_in("wan"), Family::V4) else {
        panic!("a goto that falls through must not come back")
    };
    assert_eq!((by.chain.as_str(), by.rule.is_none()), ("input", true));
}

#[test]
fn a_jump_comes_back_and_an_accept_in_another_table_does_not_override_a_drop() {
    let mut objects = vec![
        chain("input", Some(("input", -10, "accept"))),
        chain("sub", None),
        rule("input", 1, serde_json::json!([{"jump": {"target": "sub"}}])),
        rule(
            "input",
            2,
            serde_json::json!([dport(51820.into()), {"accept": null}]),
        ),
        rule("sub", 3, serde_json::json!([{"return": null}])),
    ];
    let other = serde_json::json!({"chain": {"family": "ip", "table": "filter", "name":
            "INPUT", "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}});
    objects.push(other);
    let need = wireguard_in("wan");
    let Fate::Dropped { by, .. } = fate(objects.clone(), &need, Family::V4) else {
        panic!("the ip filter table's policy drops it")
    };
    assert_eq!(
        format!("{by}"),
        "chain INPUT of table ip filter (policy drop)"
    );
    // An ip (not ip6) table does not see IPv6.
    assert!(matches!(
        fate(objects, &need, Family::V6),
        Fate::Passes { .. }
    ));
}

#[test]
fn ct_state_vmaps_and_other_protocols_do_not_match_a_new_udp_packet() {
    let objects = vec![
        chain("input", Some(("input", 0, "drop"))),
        rule(
            "input",
            1,
            serde_json::json!([{"vmap": {"key": {"ct": {"key": "state"}},
                "data": {"set": [["established", {"accept": null}], ["invalid", {"drop": null}]]}}}]),
        ),
        rule(
            "input",
            2,
            serde_json::json!([{"match": {"op": "==", "left": {"payload":
                {"protocol": "tcp", "field": "dport"}}, "right": 51820}}, {"accept": null}]),
        ),
        rule(
            "input",
            3,
            serde_json::json!([{"match": {"op": "==", "left": {"meta":
                {"key": "iifname"}}, "right": "wan*"}}, {"drop": null}]),
        ),
    ];
    let Fate::Dropped { by, unless } = fate(objects, &wireguard_in("wan0"), Family::V4) else {
        panic!("the wildcard iifname rule drops it")
    };
    assert_eq!(by.rule.map(|(handle, _)| handle), Some(3));
    assert!(unless.is_empty());
}

#[test]
fn chains_that_jump_to_each_other_many_times_are_walked_in_bounded_time() {
    // Found by tests/fuzz_parsers.rs: every path of jumps was followed 16 deep, so a
    // chain with four `jump` rules to itself took 4^16 walks (it never finished). The
    // kernel refuses loops, but a listing is only text; a wide tree of jumps does it too.
    let mut objects = vec![
        chain("input", Some(("input", 0, "accept"))),
        chain("loop", None),
        rule(
            "input",
            1,
            serde_json::json!([{"jump": {"target": "loop"}}]),
        ),
        rule("input", 9, serde_json::json!([{"drop": null}])),
    ];
    for handle in 2..6 {
        objects.push(rule(
            "loop",
            handle,
            serde_json::json!([{"jump": {"target": "loop"}}]),
        ));
    }
    let started = std::time::Instant::now();
    let fate = fate(objects, &wireguard_in("wan"), Family::V4);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let Fate::Dropped { by, .. } = fate else {
        panic!("the rule after the jump drops it: {fate:?}")
    };
    assert_eq!(by.rule.map(|(handle, _)| handle), Some(9));
}

#[test]
fn what_the_probe_cannot_know_makes_a_drop_uncertain() {
    let objects = vec![
        chain("input", Some(("input", 0, "drop"))),
        rule(
            "input",
            1,
            serde_json::json!([{"match": {"op": "==", "left": {"fib":
                {"flags": ["daddr"], "result": "type"}}, "right": "local"}}, {"accept": null}]),
        ),
    ];
    let Fate::Dropped { unless, .. } = fate(objects, &wireguard_in("wan"), Family::V4) else {
        panic!()
    };
    assert_eq!(unless.len(), 1, "the fib rule might accept it");
}
