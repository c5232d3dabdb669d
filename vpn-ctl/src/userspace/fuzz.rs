use proptest::prelude::*;
use vpn_ctl_tests::mutate::{self, bounded, mutated_text};

use super::*;

const PRIVATE: &str = "YAnz6N7eLtwMXw9JOuZUy0ohmrhCoQeZQXbaMFoc6mE=";
const PSK: &str = "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE=";
const PUBLIC: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const LAPTOP: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

fn hex_of(base64: &str) -> String {
    let key: Secret = base64.parse().unwrap();
    Hex(key.to_wg().as_bytes()).to_string()
}

/// A boringtun answer and a kernel-style (protocol) answer, with every attribute.
fn seeds() -> Vec<String> {
    let (private, psk) = (hex_of(PRIVATE), hex_of(PSK));
    let (public, laptop) = (hex_of(PUBLIC), hex_of(LAPTOP));
    let own = Hex(PRIVATE.parse::<Secret>().unwrap().public_key().as_bytes()).to_string();
    vec![
        format!(
            "own_public_key={own}\nlisten_port=51820\nfwmark=7\npublic_key={public}\n\
                 preshared_key={psk}\npersistent_keepalive_interval=25\n\
                 endpoint=192.0.2.1:51820\nallowed_ip=10.0.0.2/32\nallowed_ip=fd00::2/128\n\
                 last_handshake_time_sec=3\nlast_handshake_time_nsec=500000000\nrx_bytes=1184\n\
                 tx_bytes=1312\npublic_key={laptop}\nlast_handshake_time_sec=0\n\
                 last_handshake_time_nsec=0\nerrno=0\n\n"
        ),
        format!(
            "private_key={private}\nlisten_port=51820\nfwmark=0\npublic_key={public}\n\
                 protocol_version=1\npreshared_key={psk}\nendpoint=[2001:db8::7]:51821\n\
                 last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=123\n\
                 persistent_keepalive_interval=0\nallowed_ip=0.0.0.0/0\nrx_bytes=0\ntx_bytes=0\n\
                 public_key={laptop}\nprotocol_version=1\nlast_handshake_time_sec=0\n\
                 last_handshake_time_nsec=0\nerrno=0\n\n"
        ),
        "errno=5\n\n".to_string(),
    ]
}

const TOKENS: &[&str] = &[
    "errno=",
    "errno=0\n",
    "private_key=",
    "own_public_key=",
    "public_key=",
    "preshared_key=",
    "protocol_version=1\n",
    "last_handshake_time_sec=",
    "last_handshake_time_nsec=",
    "listen_port=",
    "fwmark=",
    "endpoint=",
    "allowed_ip=",
    "rx_bytes=",
    "persistent_keepalive_interval=",
    "remove=true\n",
    "replace_peers=true\n",
    "get=1\n",
    "set=1\n",
    "\n\n",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "[::1]:51820",
    "::/0",
];

/// Pieces of the secrets' hex (and base64) forms that a mangled line would keep: any
/// 24 characters. (A line without `=` is shown by its first 16 characters, by design.)
fn secret_pieces() -> Vec<String> {
    let mut out = Vec::new();
    for secret in [hex_of(PRIVATE), hex_of(PSK), PRIVATE.into(), PSK.into()] {
        for i in 0..=secret.len() - 24 {
            out.push(secret[i..i + 24].to_string());
        }
    }
    out
}

fn assert_no_secret(what: &str, text: &str) {
    for piece in secret_pieces() {
        assert!(!text.contains(&piece), "{what} shows key material: {text}");
    }
}

/// Answers in the protocol's shape (device attributes, then peers each opened by a
/// valid `public_key=`, `errno=` at the end), whose values are at the edges of their
/// types: numbers of [`mutate::NUMBERS`], keys, zero keys, addresses, garbage.
fn generated_answer() -> impl Strategy<Value = String> + use<> {
    let numbers: Vec<String> = mutate::NUMBERS.iter().map(|n| n.to_string()).collect();
    let keys: Vec<String> = [PRIVATE, PUBLIC, PSK, LAPTOP]
        .iter()
        .map(|k| hex_of(k))
        .chain(["0".repeat(64), "0".repeat(63), "zz".repeat(32)])
        .collect();
    let addresses: Vec<String> = [
        "192.0.2.1:51820",
        "[2001:db8::1]:1",
        "[fe80::1%eth0]:51820",
        "1.2.3.4:0",
        "10.0.0.2/32",
        "::/0",
        "1.2.3.4/33",
        "ö",
    ]
    .map(String::from)
    .to_vec();
    let value = |pool: &Vec<String>| {
        let pool = pool.clone();
        let any: Vec<String> = pool.iter().chain(&numbers).chain(&keys).cloned().collect();
        prop_oneof![9 => prop::sample::select(pool), 1 => prop::sample::select(any)]
    };
    let attr = |names: &[&'static str], pool: &Vec<String>| {
        (prop::sample::select(names.to_vec()), value(pool)).prop_map(|(k, v)| format!("{k}={v}\n"))
    };
    let device = prop_oneof![
        attr(&["listen_port", "fwmark"], &numbers),
        attr(&["private_key", "own_public_key"], &keys),
    ];
    let peer_attr = prop_oneof![
        attr(
            &[
                "rx_bytes",
                "tx_bytes",
                "persistent_keepalive_interval",
                "last_handshake_time_sec",
                "last_handshake_time_nsec",
            ],
            &numbers
        ),
        attr(&["preshared_key"], &keys),
        attr(&["endpoint", "allowed_ip"], &addresses),
        Just("protocol_version=1\n".to_string()),
    ];
    let peer = (
        prop::sample::select(keys[..4].to_vec()),
        prop::collection::vec(peer_attr, 0..8),
    )
        .prop_map(|(key, attrs)| format!("public_key={key}\n{}", attrs.concat()));
    (
        prop::collection::vec(device, 0..4),
        prop::collection::vec(peer, 0..4),
        prop_oneof![9 => Just("errno=0\n"), 1 => Just("errno=-1\n"), 1 => Just("")],
    )
        .prop_map(|(device, peers, errno)| {
            format!("{}{}{errno}\n", device.concat(), peers.concat())
        })
}

#[test]
fn parse_get_never_panics_on_mutated_answers() {
    let seeds = seeds();
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    let nows = prop_oneof![
        Just(0u64),
        Just(1_700_000_100u64),
        any::<u64>().prop_map(|s| s % (1 << 40)),
    ];
    mutate::check(
        "userspace::parse_get (mutated)",
        3000,
        (
            prop_oneof![mutated_text(&seeds, TOKENS, 8), generated_answer()],
            nows,
        ),
        |(answer, now)| {
            bounded("parse_get", move || {
                let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now);
                match parse_get(&answer, now) {
                    Ok(state) => {
                        // Unless a secret came as another attribute (a public key).
                        let only_as_secrets = [hex_of(PRIVATE), hex_of(PSK)].iter().all(|h| {
                            answer.lines().filter(|l| l.contains(h.as_str())).all(|l| {
                                l.starts_with("private_key=") || l.starts_with("preshared_key=")
                            })
                        });
                        if only_as_secrets {
                            assert_no_secret("a parsed state's Debug", &format!("{state:?}"));
                        }
                        let keys = answer
                            .lines()
                            .take_while(|l| !l.is_empty())
                            .filter(|l| l.starts_with("public_key="))
                            .count();
                        assert_eq!(state.peers.len(), keys, "one peer per public_key=");
                    }
                    Err(e) => assert_no_secret("a get error", &format!("{e:#} {e:?}")),
                }
            });
            Ok(())
        },
    );
}

#[test]
fn set_body_checks_never_panic_and_splitting_keeps_every_byte() {
    let (private, psk) = (hex_of(PRIVATE), hex_of(PSK));
    let (public, laptop) = (hex_of(PUBLIC), hex_of(LAPTOP));
    let body = format!(
        "private_key={private}\nlisten_port=51820\nreplace_peers=true\n\
             public_key={public}\npreshared_key={psk}\nendpoint=192.0.2.1:51820\n\
             replace_allowed_ips=true\nallowed_ip=10.0.0.2/32\npublic_key={laptop}\n\
             remove=true\n"
    );
    let states: Vec<DeviceState> = seeds()
        .iter()
        .filter_map(|a| parse_get(a, SystemTime::now()).ok())
        .collect();
    let states = std::sync::Arc::new(states);
    mutate::check(
        "userspace set body checks (mutated)",
        1000,
        (mutated_text(&[&body], TOKENS, 8), any::<bool>()),
        |(body, boringtun)| {
            let states = std::sync::Arc::clone(&states);
            bounded("set body checks", move || {
                let syntax = check_body_syntax(&body);
                if let Err(e) = &syntax {
                    assert_no_secret("a set body error", &format!("{e:#}"));
                }
                let state = &states[usize::from(boringtun)];
                if let Err(e) = check_boringtun_limits(&body, state) {
                    assert_no_secret("a boringtun limit error", &format!("{e:#}"));
                }
                let parts = split_peer_sections(&body);
                assert_eq!(parts.concat(), body, "the parts are the body");
                for part in &parts {
                    let _ = peer_of(part);
                }
            });
            Ok(())
        },
    );
}
