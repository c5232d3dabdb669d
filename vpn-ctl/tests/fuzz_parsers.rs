//! Property tests that attack the parsers of outside input (issue 12). Each target feeds a
//! parser mutated valid seeds (and some random bytes; see `vpn_ctl_tests::mutate`) and
//! checks that it never panics, never hangs (each case runs on a thread with a deadline, on
//! bounded input) and returns `Ok` or a clean error, plus cheap invariants:
//!
//! | target | feeds | default cases |
//! | --- | --- | --- |
//! | `config_*` | `config::parse` (TOML, serde, validation, key files read from a fixture directory) | 1500 + every truncation of every seed |
//! | `uci_*` | `import::uci::from_text` (OpenWrt `/etc/config/network`), then `import::write` and a re-read of what it wrote | 1500 + truncations |
//! | `wg_quick_*` | `import::wg_quick::from_text`, then `import::write` and a re-read | 1500 + truncations |
//! | `vici_*` | `serde_vici` decoding into `ike::vici::ViciValue` and `ike_sas_from_event` / `conns_from_event` (charon's messages) | 3000 mutated + 500 generated |
//! | `nft_*` | `firewall::ruleset::Ruleset::parse` (`nft -j` JSON and `nft -a` text), then `firewall::check_ruleset` | 800 mutated + 800 generated |
//!
//! The UAPI answers (`userspace::parse_get`, private) are attacked by `mod fuzz` in
//! `src/userspace.rs`, the XDP classifier by `tests/fuzz_xdp.rs` and
//! `vpn-common/tests/fuzz_classify.rs`.
//!
//! The run is reproducible (a fixed RNG seed). A longer or different run:
//!
//! ```text
//! PROPTEST_CASES=100000 cargo test -p vpn-ctl --test fuzz_parsers -- --nocapture
//! PROPTEST_RNG_SEED=7 cargo test -p vpn-ctl --test fuzz_parsers
//! ```
//!
//! `--nocapture` shows each target's case count and time. A failure prints the shrunk
//! input; crashers found become named regression tests beside the parser's unit tests.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use proptest::prelude::*;
use serde_json::{Value, json};
use vpn_ctl::{
    config::{self, Config, FirewallMode},
    firewall::{self, Backend, needs, ruleset::Ruleset},
    ike::vici::{ViciValue, conns_from_event, ike_sas_from_event},
    import::{self, uci, wg_quick},
};
use vpn_ctl_tests::mutate::{self, Index, bounded, mutated_bytes, mutated_text, truncations};

// ---------------------------------------------------------------------------------------------
// Secrets, and the check that no output shows them
// ---------------------------------------------------------------------------------------------

/// Keys (base64) written to key files, or into the imported files.
const PRIVATE: &str = "YAnz6N7eLtwMXw9JOuZUy0ohmrhCoQeZQXbaMFoc6mE=";
const PRIVATE2: &str = "sMQh6xCgHRQE0lZ3QxPmnOoXuxuR2HthH2w2n+N9nmE=";
const PRIVATE3: &str = "0MkxSKdBuCk4FS9T0Ebmn9CUcaHMrkpJoP7rNxk+G1s=";
const PSK: &str = "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE=";
/// Public keys (not secret).
const PUBLIC: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const LAPTOP: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";
const OFFICE: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
/// An IPsec pre-shared key, a secret file that holds no key, static ESP key material.
const IPSEC_PSK: &str = "fuzz-ipsec-5ecret-psk";
const NOT_A_KEY: &str = "hunter2-5ecret-but-no-key";
const STATIC_HEX: &str = "5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e7";
/// The other direction's key material (each direction needs its own).
const STATIC_HEX_IN: &str =
    "5ec2e7a15ec2e7a15ec2e7a15ec2e7a15ec2e7a15ec2e7a15ec2e7a15ec2e7a15ec2e7a1";

fn secrets() -> Vec<&'static str> {
    vec![
        PRIVATE,
        PRIVATE2,
        PRIVATE3,
        PSK,
        IPSEC_PSK,
        NOT_A_KEY,
        STATIC_HEX,
        STATIC_HEX_IN,
        "5ecret",
        "5ec2e7",
    ]
}

/// Pieces of `secret` long enough that they would not show by chance: a secret that was
/// mangled (a flipped byte, a cut) still has some of them.
fn windows(secret: &str) -> Vec<&str> {
    if secret.len() < 24 {
        return vec![secret];
    }
    (0..secret.len() - 12)
        .step_by(12)
        .map(|i| &secret[i..i + 12])
        .collect()
}

/// Panics when `output` (an error message, notes, a `Debug` form) shows a secret.
fn assert_no_secret(what: &str, output: &str) {
    for secret in secrets() {
        for piece in windows(secret) {
            assert!(
                !output.contains(piece),
                "{what} shows (part of) the secret {secret:?}:\n{output}"
            );
        }
    }
}

/// Panics when `output` shows most of a secret that `input` holds only under a name that
/// says it is secret (`is_secret_line`): importers redact those values and may echo others.
/// A mangled line can run into another one (a quote left open, a lost `]` or newline, a
/// splice that makes a valid public key of half a private key) and a piece of its key then
/// shows in what is said about that other line; pieces of 32 characters (192 bits) or more
/// never do.
fn assert_redacted(what: &str, input: &str, output: &str, is_secret_line: fn(&str) -> bool) {
    for secret in [PRIVATE, PSK] {
        let pieces = (0..=secret.len() - 32).map(|i| &secret[i..i + 32]);
        for piece in pieces {
            if !output.contains(piece) {
                continue;
            }
            let only_under_secret_names = input
                .lines()
                .filter(|l| l.contains(piece))
                .all(is_secret_line);
            assert!(
                !only_under_secret_names,
                "{what} shows (part of) the secret {secret:?} given under a secret name:\n\
                 {output}"
            );
        }
    }
}

fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("key") || name.contains("psk") || name.contains("password")
}

/// Positions of diagnostics lie in the text (line 0: not at a place).
fn assert_positions(diagnostics: &[config::Diagnostic], text: &str) {
    let lines = text.split('\n').count();
    for d in diagnostics {
        if d.line == 0 {
            continue;
        }
        assert!(
            d.line <= lines && d.column >= 1,
            "diagnostic at {}:{} outside the text of {lines} lines: {d}",
            d.line,
            d.column
        );
        let line = text.split('\n').nth(d.line - 1).unwrap_or_default();
        assert!(
            d.column <= line.chars().count() + 1,
            "column {} past the end of line {} ({} characters): {d}",
            d.column,
            d.line,
            line.chars().count()
        );
    }
}

fn write(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// config::parse
// ---------------------------------------------------------------------------------------------

/// The key files the seeds name, good and bad.
fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    write(&p("wg0.key"), &format!("{PRIVATE}\n"), 0o600);
    write(&p("wg1.key"), &format!("{PRIVATE2}\n"), 0o600);
    write(&p("phone.psk"), PSK, 0o400);
    write(&p("fritzbox.psk"), &format!("{IPSEC_PSK}\n"), 0o600);
    write(&p("office-out.key"), &format!("0x{STATIC_HEX}\n"), 0o600);
    let spaced: String = STATIC_HEX_IN
        .as_bytes()
        .chunks(2)
        .map(|c| format!(" {}", std::str::from_utf8(c).unwrap()))
        .collect();
    write(&p("office-in.key"), &format!("{spaced}\n"), 0o600);
    // Secret files that are wrong: no key in it, readable by others.
    write(&p("bad.key"), &format!("{NOT_A_KEY}\n"), 0o600);
    write(&p("open.key"), &format!("{PRIVATE3}\n"), 0o644);
    write(&p("open.psk"), &format!("{IPSEC_PSK}\n"), 0o644);
    fs::create_dir(p("dir.key")).unwrap();
    dir
}

const FULL: &str = r#"[router]
wan = "eth0"
lan = ["192.168.1.0/24", "fd00:1::/64"]
firewall = "manage"

[daemon]
metrics_listen = "[::1]:9586"
metrics_max_peers = 100
tick = 10
xdp = "off"

[wireguard.wg0]
private_key_file = "wg0.key"
listen_port = 51820
addresses = ["10.8.0.1/24", "fd08::1/64"]
mtu = 1420
fwmark = 0x5182
public_endpoint = "home.example.org:51820"
client_dns = ["192.168.1.1", "fd00:1::1"]
internet = false

[[wireguard.wg0.peers]]
name = "phone"
public_key = "@PUBLIC@"
preshared_key_file = "phone.psk"
allowed_ips = ["10.8.0.2/32", "fd08::2/128"]
persistent_keepalive = 25

[[wireguard.wg0.peers]]
name = "laptop"
public_key = "@LAPTOP@"
allowed_ips = ["10.8.0.3/32"]
endpoint = "[2001:db8::7]:51821"
route = false

[wireguard.wg1]
private_key_file = "wg1.key"
listen_port = 51821
addresses = ["10.9.0.1/24"]

[[wireguard.wg1.peers]]
name = "office"
public_key = "@OFFICE@"
allowed_ips = ["10.9.0.0/24", "192.168.50.0/24"]
endpoint = "office.example.org:51820"
"#;

const SITES: &str = r#"[router]
wan = "wan"
lan = ["192.168.2.0/24"]

[ipsec.office]
keying = "static"
local_gateway = "198.51.100.1"
remote_gateway = "203.0.113.1"
local_subnets = ["192.168.2.0/24"]
remote_subnets = ["192.168.3.0/24"]
esp = "aes256gcm16"
spi_out = 0x1001
spi_in = 0x1002
key_out_file = "office-out.key"
key_in_file = "office-in.key"

[ipsec.fritz]
keying = "ike"
remote_gateway = "fritz.example.org"
local_subnets = ["192.168.2.0/24"]
remote_subnets = ["192.168.178.0/24"]
local_id = "openwrt.example.org"
remote_id = "fritz.example.org"
psk_file = "fritzbox.psk"
ike_version = "ikev2"
ike_proposals = ["aes256gcm16-prfsha256-ecp256"]
esp_proposals = ["aes256gcm16-ecp256"]
ike_lifetime = 28800
esp_lifetime = 3600
dpd = 0
nat_traversal = false
watchdog_probe = "192.168.178.1"
"#;

/// Everything wrong with secret files at once.
const BAD_FILES: &str = r#"[wireguard.wg0]
private_key_file = "bad.key"
listen_port = 51820
addresses = ["10.8.0.1/24"]

[[wireguard.wg0.peers]]
name = "phone"
public_key = "@PUBLIC@"
preshared_key_file = "open.key"
allowed_ips = ["10.8.0.2/32"]

[wireguard.wg1]
private_key_file = "open.key"
addresses = ["10.8.0.1/24"]

[wireguard.wg2]
private_key_file = "dir.key"

[ipsec.fritz]
keying = "ike"
remote_gateway = "fritz.example.org"
local_subnets = ["192.168.2.0/24"]
remote_subnets = ["192.168.1.0/24"]
psk_file = "open.psk"

[ipsec.office]
keying = "static"
local_gateway = "198.51.100.1"
remote_gateway = "203.0.113.1"
local_subnets = ["192.168.2.0/24"]
remote_subnets = ["192.168.3.0/24"]
esp = "aes128gcm16"
spi_out = 0x1001
spi_in = 0x1002
key_out_file = "bad.key"
key_in_file = "fritzbox.psk"
"#;

fn config_seeds() -> Vec<String> {
    [
        include_str!("../../deploy/examples/road-warrior.toml"),
        include_str!("../../deploy/examples/fritzbox-site.toml"),
        FULL,
        SITES,
        BAD_FILES,
    ]
    .iter()
    .map(|s| fill(s))
    .collect()
}

const CONFIG_TOKENS: &[&str] = &[
    "[router]",
    "[daemon]",
    "[wireguard.wg0]",
    "[wireguard.wg9]",
    "[[wireguard.wg0.peers]]",
    "[wireguard.wg0.peers]",
    "[ipsec.x]",
    "[ipsec.office]",
    "wan",
    "lan",
    "firewall",
    "metrics_listen",
    "metrics_max_peers",
    "tick",
    "xdp",
    "private_key_file",
    "listen_port",
    "addresses",
    "mtu",
    "fwmark",
    "public_endpoint",
    "client_dns",
    "internet",
    "peers",
    "name",
    "public_key",
    "preshared_key_file",
    "allowed_ips",
    "endpoint",
    "persistent_keepalive",
    "route",
    "keying",
    "local_gateway",
    "remote_gateway",
    "local_subnets",
    "remote_subnets",
    "watchdog_probe",
    "local_id",
    "remote_id",
    "psk_file",
    "ike_version",
    "ike_proposals",
    "esp_proposals",
    "allow_weak",
    "ike_lifetime",
    "esp_lifetime",
    "dpd",
    "nat_traversal",
    "esp",
    "spi_out",
    "spi_in",
    "key_out_file",
    "key_in_file",
    "PrivateKey",
    "AllowedIPs",
    "leftsubnet",
    " = ",
    "\"wg0.key\"",
    "\"wg1.key\"",
    "\"phone.psk\"",
    "\"fritzbox.psk\"",
    "\"bad.key\"",
    "\"open.key\"",
    "\"dir.key\"",
    "\"office-in.key\"",
    "\"../x.key\"",
    "\"\"",
    "true",
    "false",
    "[]",
    "{}",
    "\"10.8.0.1/24\"",
    "\"0.0.0.0/0\"",
    "\"::/0\"",
    "\"fd08::2/128\"",
    "\"10.8.0.2/33\"",
    "\"192.168.1.1\"",
    "\"host:0\"",
    "\"[::1]:51820\"",
    "\"ike\"",
    "\"static\"",
    "\"ikev1-aggressive\"",
    "\"aes256-sha1-modp1024\"",
    "\"modp1024\"",
    "\"manage\"",
    "\"off\"",
    "\"check\"",
    "'''",
    "\"\"\"",
    "1979-05-27T07:32:00Z",
    "inf",
    "-nan",
    "{ a = 1 }",
];

/// Checks one `config::parse` result of `text`, read as `path`.
fn check_config(path: &Path, text: &str, result: &Result<Config, config::Error>) {
    match result {
        Ok(config) => {
            assert_no_secret("a parsed configuration's Debug", &format!("{config:?}"));
            let peers: usize = config.wireguard.iter().map(|i| i.peers.len()).sum();
            assert!(
                peers <= text.matches("peers").count(),
                "{peers} peers from a text that names peers less often"
            );
        }
        Err(e) => {
            assert!(!e.diagnostics.is_empty(), "an error without a diagnostic");
            for d in &e.diagnostics {
                assert!(
                    d.file == path || d.file.starts_with(path.parent().unwrap()),
                    "a diagnostic about {} for {}",
                    d.file.display(),
                    path.display()
                );
            }
            assert_positions(&e.diagnostics, text);
            assert_no_secret("a configuration error", &e.to_string());
            assert_no_secret("a configuration error's Debug", &format!("{e:?}"));
        }
    }
}

#[test]
fn config_seeds_are_valid_but_the_bad_files_one() {
    let dir = config_dir();
    let path = dir.path().join("vpn.toml");
    for seed in &config_seeds()[..4] {
        if let Err(e) = config::parse(&path, seed) {
            panic!("{e}\n{seed}");
        }
    }
    let e = config::parse(&path, &config_seeds()[4]).unwrap_err();
    assert!(e.diagnostics.len() >= 6, "{e}");
    check_config(&path, &config_seeds()[4], &Err(e));
}

#[test]
fn config_parse_never_panics_on_mutated_configurations() {
    let dir = config_dir();
    let path = Arc::new(dir.path().join("vpn.toml"));
    let seeds = config_seeds();
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    mutate::check(
        "config::parse (mutated)",
        1500,
        mutated_text(&seeds, CONFIG_TOKENS, 8),
        |text| {
            let path = Arc::clone(&path);
            bounded("config::parse", move || {
                let result = config::parse(&path, &text);
                check_config(&path, &text, &result);
            });
            Ok(())
        },
    );
}

#[test]
fn config_parse_of_every_truncation_claims_no_more_than_the_whole_file() {
    let dir = config_dir();
    let path = dir.path().join("vpn.toml");
    let count = |c: &Config| {
        (
            c.wireguard.len(),
            c.wireguard.iter().map(|i| i.peers.len()).sum::<usize>(),
            c.ipsec.len(),
        )
    };
    for seed in config_seeds() {
        let whole = config::parse(&path, &seed);
        check_config(&path, &seed, &whole);
        let whole = whole
            .as_ref()
            .map(count)
            .unwrap_or((usize::MAX, usize::MAX, usize::MAX));
        for prefix in truncations(&seed) {
            let result = config::parse(&path, prefix);
            check_config(&path, prefix, &result);
            if let Ok(c) = &result {
                let (interfaces, peers, sites) = count(c);
                assert!(
                    interfaces <= whole.0 && peers <= whole.1 && sites <= whole.2,
                    "a truncation claims more than the whole file ({:?} > {whole:?}):\n{prefix}",
                    count(c)
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Importers: UCI and wg-quick
// ---------------------------------------------------------------------------------------------

const UCI_NETWORK: &str = "config interface 'loopback'
\toption device 'lo'
\toption proto 'static'
\toption ipaddr '127.0.0.1'
\toption netmask '255.0.0.0'

config globals 'globals'
\toption ula_prefix 'fd12:3456:789a::/48'

config device
\toption name 'br-lan'
\toption type 'bridge'
\tlist ports 'lan1'
\tlist ports 'lan2'

config interface 'lan'
\toption device 'br-lan'
\toption proto 'static'
\toption ipaddr '192.168.1.1'
\toption netmask '255.255.255.0'
\toption ip6assign '60'

config interface 'wan'
\toption device 'wan'
\toption proto 'dhcp'

config interface 'wg0'
\toption proto 'wireguard'
\toption private_key '@PRIVATE@'
\toption listen_port '51820'
\tlist addresses '10.8.0.1/24'
\tlist addresses 'fd08::1/64'
\toption mtu '1420'
\toption fwmark '0x5182'

config wireguard_wg0
\toption description 'anna phone'
\toption public_key '@PUBLIC@'
\toption preshared_key '@PSK@'
\tlist allowed_ips '10.8.0.2/32'
\tlist allowed_ips 'fd08::2/128'
\toption route_allowed_ips '1'
\toption persistent_keepalive '25'

config wireguard_wg0 'laptop'
\toption public_key '@LAPTOP@'
\tlist allowed_ips '10.8.0.3/32'
\toption endpoint_host 'laptop.example.org'
\toption endpoint_port '51821'
\toption disabled '0'

config wireguard_wg0
\toption public_key \"@LAPTOP@\"
\toption description \"it's \\\"off\\\"\"; option disabled 1
";

/// The seed of `import/uci.rs`'s tests, a user's post, with its keys filled in.
const UCI_POSTED: &str = "package network
config interface 'wireguard'
        option proto 'wireguard'
        option private_key '@PRIVATE@'
        option listen_port '51820'
        list addresses '10.0.0.1/24'

config wireguard_wireguard
        option public_key '@PUBLIC@'
        option description 'try1'
        list allowed_ips '10.0.0.2/32'
        option route_allowed_ips '1'
        option endpoint_host 'phone.example.org'
        option persistent_keepalive '25'
";

const WG_QUICK_FULL: &str = "[Interface]
PrivateKey = @PRIVATE@
ListenPort = 51820
Address = 10.8.0.1/24, fd08::1/64
address = 10.9.0.1
MTU = 1420
FwMark = 0xca6c
DNS = 192.168.1.1, lan
Table = 1234
PreUp = sysctl -w net.ipv4.ip_forward=1
PostUp = iptables -A FORWARD -i %i -j ACCEPT; iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
PostDown = iptables -D FORWARD -i %i -j ACCEPT
SaveConfig = true

# phone
[Peer]
PublicKey = @PUBLIC@
PresharedKey = @PSK@
AllowedIPs = 10.8.0.2/32, fd08::2/128
AllowedIPs = 10.8.1.0/24
PersistentKeepalive = 25

### begin laptop ###
[peer]
publickey = @LAPTOP@
allowedips = 0.0.0.0/0
endpoint = [2001:db8::7]:51821   # the office
persistentkeepalive = off
";

/// A client's file, as `vpn-ctl peer add` or a phone app writes it.
const WG_QUICK_CLIENT: &str = "[Interface]
PrivateKey = @PRIVATE@
Address = 10.0.0.2/32
DNS = 192.168.1.1
Table = off

[Peer]
PublicKey = @PUBLIC@
PresharedKey = @PSK@
Endpoint = home.example.org:51820
AllowedIPs = 0.0.0.0/0, ::/0
PersistentKeepalive = 25
";

fn fill(seed: &str) -> String {
    seed.replace("@PRIVATE@", PRIVATE)
        .replace("@PUBLIC@", PUBLIC)
        .replace("@LAPTOP@", LAPTOP)
        .replace("@OFFICE@", OFFICE)
        .replace("@PSK@", PSK)
}

const UCI_TOKENS: &[&str] = &[
    "config ",
    "option ",
    "list ",
    "package ",
    "c ",
    "interface",
    "wireguard_wg0",
    "wireguard_wg1",
    "'wg0'",
    "proto",
    "'wireguard'",
    "private_key",
    "public_key",
    "preshared_key",
    "listen_port",
    "addresses",
    "allowed_ips",
    "route_allowed_ips",
    "endpoint_host",
    "endpoint_port",
    "persistent_keepalive",
    "disabled",
    "description",
    "mtu",
    "fwmark",
    "'1'",
    "''",
    "'\\''",
    "\\\n",
    "\\",
    "'it'\\''s'",
    "\"a\\\"b\"",
    "'@'",
];

const WG_QUICK_TOKENS: &[&str] = &[
    "[Interface]",
    "[Peer]",
    "[peer]",
    "[Other]",
    "PrivateKey",
    "PublicKey",
    "PresharedKey",
    "ListenPort",
    "Address",
    "AllowedIPs",
    "Endpoint",
    "PersistentKeepalive",
    "MTU",
    "FwMark",
    "Table",
    "off",
    "auto",
    "DNS",
    "PostUp",
    "SaveConfig",
    " = ",
    "0.0.0.0/0",
    "::/0",
    "[::1]:51820",
    "host:",
    "# ",
    "### begin x ###",
];

fn uci_secret_line(line: &str) -> bool {
    let mut words = line.split_whitespace();
    matches!(words.next(), Some("option" | "list")) && words.next().is_some_and(secret_name)
}

fn wg_quick_secret_line(line: &str) -> bool {
    line.split_once('=')
        .is_some_and(|(key, _)| secret_name(key.trim()))
}

/// Checks an import of `text`; a successful one is written out and read back.
fn check_import(
    what: &str,
    text: &str,
    result: Result<import::Imported, import::Error>,
    is_secret_line: fn(&str) -> bool,
    write_it: bool,
) {
    match result {
        Ok(imported) => {
            let notes = imported.notes.join("\n");
            assert_redacted(&format!("{what} notes"), text, &notes, is_secret_line);
            // Not even under a name that does not look secret: a key is not quoted.
            let debug = format!("{imported:?}");
            for secret in [PRIVATE, PSK] {
                assert!(
                    !debug.contains(secret),
                    "{what}: a note shows a key: {debug}"
                );
            }
            let peers: usize = imported.interfaces.iter().map(|i| i.peers.len()).sum();
            let lower = text.to_ascii_lowercase();
            assert!(
                peers <= lower.matches("peer").count() + lower.matches("config").count(),
                "{peers} peers from a text that has fewer sections"
            );
            if write_it {
                let out = tempfile::tempdir().unwrap();
                match import::write(&imported, out.path(), "vpn.toml") {
                    Ok(written) => {
                        let toml_text = fs::read_to_string(&written.config).unwrap();
                        if let Err(e) = toml_text.parse::<toml::Table>() {
                            panic!(
                                "{what}: the written configuration is not TOML: {e}\n{toml_text}"
                            );
                        }
                        assert_redacted(
                            &format!("{what} written configuration"),
                            text,
                            &toml_text,
                            is_secret_line,
                        );
                        if let Some(problems) = &written.problems {
                            assert_positions(&problems.diagnostics, &toml_text);
                        } else {
                            let config = config::load(&written.config).unwrap();
                            assert_eq!(config.wireguard.len(), imported.interfaces.len());
                        }
                    }
                    Err(e) => panic!("{what}: writing a successful import failed: {e:#}"),
                }
            }
        }
        Err(e) => {
            assert!(!e.diagnostics.is_empty(), "an error without a diagnostic");
            assert_positions(&e.diagnostics, text);
            assert_redacted(
                &format!("{what} error"),
                text,
                &e.to_string(),
                is_secret_line,
            );
        }
    }
}

#[test]
fn uci_import_never_panics_on_mutated_network_files() {
    let seeds = [fill(UCI_NETWORK), fill(UCI_POSTED)];
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    let case = AtomicU32::new(0);
    mutate::check(
        "uci::from_text (mutated)",
        1500,
        mutated_text(&seeds, UCI_TOKENS, 8),
        |text| {
            // Every tenth case is written out and read back if it imports (files are slow).
            let write_it = case.fetch_add(1, Ordering::Relaxed) % 10 == 9;
            bounded("uci::from_text", move || {
                let result = uci::from_text(Path::new("/etc/config/network"), &text);
                check_import("uci", &text, result, uci_secret_line, write_it);
            });
            Ok(())
        },
    );
}

#[test]
fn uci_import_of_every_truncation_claims_no_more_than_the_whole_file() {
    for seed in [fill(UCI_NETWORK), fill(UCI_POSTED)] {
        let path = Path::new("/etc/config/network");
        let whole = uci::from_text(path, &seed).expect("the seed imports");
        let peers =
            |i: &import::Imported| -> usize { i.interfaces.iter().map(|i| i.peers.len()).sum() };
        for prefix in truncations(&seed) {
            let result = uci::from_text(path, prefix);
            if let Ok(imported) = &result {
                assert!(
                    peers(imported) <= peers(&whole)
                        && imported.interfaces.len() <= whole.interfaces.len(),
                    "a truncation claims more than the whole file:\n{prefix}"
                );
            }
            check_import("uci", prefix, result, uci_secret_line, false);
        }
    }
}

#[test]
fn wg_quick_import_never_panics_on_mutated_files() {
    let seeds = [fill(WG_QUICK_FULL), fill(WG_QUICK_CLIENT)];
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    let case = AtomicU32::new(0);
    mutate::check(
        "wg_quick::from_text (mutated)",
        1500,
        mutated_text(&seeds, WG_QUICK_TOKENS, 8),
        |text| {
            let write_it = case.fetch_add(1, Ordering::Relaxed) % 10 == 9;
            bounded("wg_quick::from_text", move || {
                let result =
                    wg_quick::from_text(Path::new("/etc/wireguard/wg0.conf"), "wg0", &text);
                check_import("wg-quick", &text, result, wg_quick_secret_line, write_it);
            });
            Ok(())
        },
    );
}

#[test]
fn wg_quick_import_of_every_truncation_claims_no_more_than_the_whole_file() {
    for seed in [fill(WG_QUICK_FULL), fill(WG_QUICK_CLIENT)] {
        let path = Path::new("/etc/wireguard/wg0.conf");
        let whole = wg_quick::from_text(path, "wg0", &seed).expect("the seed imports");
        for prefix in truncations(&seed) {
            let result = wg_quick::from_text(path, "wg0", prefix);
            if let Ok(imported) = &result {
                assert!(
                    imported.interfaces[0].peers.len() <= whole.interfaces[0].peers.len(),
                    "a truncation claims more peers than the whole file:\n{prefix}"
                );
            }
            check_import("wg-quick", prefix, result, wg_quick_secret_line, false);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// VICI messages
// ---------------------------------------------------------------------------------------------

/// A VICI encoder (element types from strongSwan's VICI README).
#[derive(Default)]
struct Vici(Vec<u8>);

impl Vici {
    fn name(&mut self, n: &str) {
        self.0.push(n.len() as u8);
        self.0.extend_from_slice(n.as_bytes());
    }
    fn value(&mut self, v: &[u8]) {
        self.0.extend_from_slice(&(v.len() as u16).to_be_bytes());
        self.0.extend_from_slice(v);
    }
    fn kv(&mut self, k: &str, v: &str) -> &mut Self {
        self.0.push(3);
        self.name(k);
        self.value(v.as_bytes());
        self
    }
    fn list(&mut self, k: &str, items: &[&str]) -> &mut Self {
        self.0.push(4);
        self.name(k);
        for item in items {
            self.0.push(5);
            self.value(item.as_bytes());
        }
        self.0.push(6);
        self
    }
    fn section(&mut self, k: &str, body: impl FnOnce(&mut Vici)) -> &mut Self {
        self.0.push(1);
        self.name(k);
        body(self);
        self.0.push(2);
        self
    }
    /// Encodes a tree (the top level is a section's body).
    fn tree(&mut self, value: &ViciValue) {
        for (key, v) in value.entries() {
            match v {
                ViciValue::Str(s) => {
                    self.kv(key, s);
                }
                ViciValue::List(items) => {
                    let items: Vec<&str> = items.iter().map(String::as_str).collect();
                    self.list(key, &items);
                }
                ViciValue::Section(_) => {
                    self.section(key, |b| b.tree(v));
                }
            }
        }
    }
}

fn list_sa_event() -> Vec<u8> {
    let mut b = Vici::default();
    b.section("vpn-ctl-fritzbox", |b| {
        b.kv("uniqueid", "2")
            .kv("version", "1")
            .kv("state", "ESTABLISHED")
            .kv("local-host", "10.9.9.2")
            .kv("local-port", "500")
            .kv("local-id", "left.domain.com")
            .kv("remote-host", "10.9.9.1")
            .kv("remote-id", "right.domain.com")
            .kv("initiator", "yes")
            .kv("initiator-spi", "c30bbdc1aed6e7a2")
            .kv("responder-spi", "9f550c2490216a0d")
            .kv("encr-alg", "AES_CBC")
            .kv("encr-keysize", "256")
            .kv("integ-alg", "HMAC_SHA1_96")
            .kv("prf-alg", "PRF_HMAC_SHA1")
            .kv("dh-group", "MODP_1024")
            .kv("established", "12")
            .kv("rekey-time", "3138")
            .kv("nat-any", "yes")
            .list("tasks-queued", &[])
            .section("child-sas", |b| {
                b.section("vpn-ctl-fritzbox-2", |b| {
                    b.kv("name", "vpn-ctl-fritzbox")
                        .kv("uniqueid", "2")
                        .kv("reqid", "1")
                        .kv("state", "INSTALLED")
                        .kv("mode", "TUNNEL")
                        .kv("protocol", "ESP")
                        .kv("encap", "yes")
                        .kv("spi-in", "ca852ef8")
                        .kv("spi-out", "0xc9cc34ce")
                        .kv("encr-alg", "AES_CBC")
                        .kv("encr-keysize", "256")
                        .kv("integ-alg", "HMAC_SHA1_96")
                        .kv("dh-group", "MODP_1024")
                        .kv("bytes-in", "840")
                        .kv("packets-in", "10")
                        .kv("use-in", "1")
                        .kv("bytes-out", "840")
                        .kv("packets-out", "10")
                        .kv("rekey-time", "25000")
                        .kv("life-time", "28780")
                        .kv("install-time", "20")
                        .list("local-ts", &["192.168.2.0/24"])
                        .list("remote-ts", &["192.168.1.0/24", "fd01::/64"]);
                });
            });
    });
    b.0
}

fn list_conn_event() -> Vec<u8> {
    let mut b = Vici::default();
    b.section("vpn-ctl-fritzbox", |b| {
        b.list("local_addrs", &["%any"])
            .list("remote_addrs", &["right.domain.com"])
            .kv("version", "IKEv1")
            .kv("reauth_time", "0")
            .kv("rekey_time", "3240")
            .kv("unique", "UNIQUE_REPLACE")
            .kv("dpd_delay", "30")
            .kv("dpd_timeout", "60")
            .section("local-1", |b| {
                b.kv("class", "pre-shared key")
                    .kv("id", "left.domain.com")
                    .list("groups", &[]);
            })
            .section("remote-1", |b| {
                b.kv("class", "pre-shared key").kv("id", "right.domain.com");
            })
            .section("children", |b| {
                b.section("vpn-ctl-fritzbox", |b| {
                    b.kv("mode", "TUNNEL")
                        .kv("rekey_time", "25920")
                        .list("local-ts", &["192.168.2.0/24"])
                        .list("remote-ts", &["192.168.1.0/24"]);
                });
            });
    });
    b.0
}

fn vici_seeds() -> Vec<Vec<u8>> {
    let mut control_log = Vici::default();
    control_log
        .kv("group", "IKE")
        .kv("level", "1")
        .kv("ikesa-name", "vpn-ctl-fritzbox")
        .kv("ikesa-uniqueid", "3")
        .kv("msg", "received NO_PROPOSAL_CHOSEN notify error");
    let mut refused = Vici::default();
    refused
        .kv("success", "no")
        .kv("errmsg", "establishing CHILD_SA 'x' failed");
    let mut version = Vici::default();
    version
        .kv("daemon", "charon")
        .kv("version", "5.9.8")
        .kv("sysname", "Linux")
        .kv("release", "6.1.0")
        .kv("machine", "x86_64");
    vec![
        list_sa_event(),
        list_conn_event(),
        control_log.0,
        refused.0,
        version.0,
    ]
}

/// Checks what vpn-ctl makes of one decoded message.
fn check_vici(value: &ViciValue) {
    let _ = ike_sas_from_event(value).map_err(|e| format!("{e:#}"));
    let _ = conns_from_event(value);
    let _ = value.flatten();
    let _ = value.to_string();
    let _ = vpn_ctl::ike::vici::hint_for_log(&[value.to_string()]);
}

#[test]
fn vici_decoding_never_panics_on_mutated_messages() {
    mutate::check(
        "VICI decoding (mutated)",
        3000,
        mutated_bytes(
            vici_seeds(),
            &["\u{1}", "\u{2}", "\u{3}", "\u{4}", "\u{5}", "\u{6}"],
            8,
        ),
        |bytes| {
            bounded("VICI decoding", move || {
                if let Ok(value) = serde_vici::from_slice::<ViciValue>(&bytes) {
                    check_vici(&value);
                }
            });
            Ok(())
        },
    );
}

fn vici_tree(depth: u32) -> impl Strategy<Value = ViciValue> {
    let key = "[a-z0-9_-]{0,12}|.{0,3}";
    let text = ".{0,40}|[0-9a-fx]{0,20}";
    let leaf = prop_oneof![
        text.prop_map(ViciValue::Str),
        prop::collection::vec(text, 0..4).prop_map(ViciValue::List),
    ];
    leaf.prop_recursive(depth, 64, 8, move |inner| {
        prop::collection::btree_map(key, inner, 0..8).prop_map(ViciValue::Section)
    })
    .prop_map(|v| match v {
        section @ ViciValue::Section(_) => section,
        other => ViciValue::Section([("x".to_string(), other)].into()),
    })
}

#[test]
fn vici_generated_messages_decode_to_what_was_encoded() {
    mutate::check("VICI decoding (generated)", 500, vici_tree(4), |value| {
        let mut b = Vici::default();
        b.tree(&value);
        let decoded = bounded("VICI decoding", move || {
            serde_vici::from_slice::<ViciValue>(&b.0).map_err(|e| e.to_string())
        });
        prop_assert_eq!(decoded.as_ref(), Ok(&value));
        check_vici(&value);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// nftables JSON
// ---------------------------------------------------------------------------------------------

/// The needs of a configuration with every kind of opening: WireGuard (full tunnel and
/// split), IKE with NAT-T, static ESP.
fn firewall_needs() -> Vec<needs::Need> {
    let dir = config_dir();
    let text = format!(
        "{}\n{}",
        fill(FULL).replace("internet = false", "internet = true"),
        SITES.replace("[router]\nwan = \"wan\"\nlan = [\"192.168.2.0/24\"]\n", "")
    );
    let config = config::parse(&dir.path().join("vpn.toml"), &text).expect("the seed is valid");
    let needs = needs::needs(&config);
    assert!(needs.len() >= 4, "{needs:?}");
    needs
}

fn check_firewall(needs: &[needs::Need], json: &str, text: &str) {
    let Ok(ruleset) = Ruleset::parse(json, text) else {
        return;
    };
    for mode in [FirewallMode::Check, FirewallMode::Manage] {
        for backend in [Backend::Nftables, Backend::Fw4] {
            let findings = firewall::check_ruleset(&ruleset, needs, mode, backend);
            let _ = firewall::render(&findings);
        }
    }
}

const NFT_SEEDS: [(&str, &str); 2] = [
    (
        include_str!("fuzz_seeds/nft/fw4.json"),
        include_str!("fuzz_seeds/nft/fw4.txt"),
    ),
    (
        include_str!("fuzz_seeds/nft/simple.json"),
        include_str!("fuzz_seeds/nft/simple.txt"),
    ),
];

/// A change to a JSON tree: a node (picked among all of them) replaced, removed or
/// duplicated.
#[derive(Debug, Clone)]
enum JsonEdit {
    Replace(Index, Index),
    Remove(Index),
    Duplicate(Index),
    /// Replaced by a copy of another node of the tree.
    Graft(Index, Index),
}

/// Values that stand in for a node.
fn replacement(i: Index) -> Value {
    let all = [
        Value::Null,
        json!(0),
        json!(-1),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1.5),
        json!(""),
        json!("@"),
        json!("@lan_devices"),
        json!("*"),
        json!("drop"),
        json!("inet"),
        json!("input"),
        json!(true),
        json!([]),
        json!({}),
        json!([[]]),
        json!({"jump": {"target": "input"}}),
        json!({"goto": {"target": "input_wan"}}),
        json!({"accept": null}),
        json!({"drop": null}),
        json!({"prefix": {"addr": "::", "len": 129}}),
        json!({"range": [1, 0]}),
        json!({"set": [{"prefix": {"addr": "10.0.0.0", "len": "x"}}]}),
        json!({"meta": {"key": "l4proto"}}),
        json!({"payload": {"protocol": "th", "field": "dport"}}),
    ];
    all[i.index(all.len())].clone()
}

/// Paths to every node of `v`, parents first.
fn node_paths(v: &Value, path: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    out.push(path.clone());
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(PathStep::At(i));
                node_paths(item, path, out);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                path.push(PathStep::Key(k.clone()));
                node_paths(item, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum PathStep {
    At(usize),
    Key(String),
}

fn node_mut<'v>(mut v: &'v mut Value, path: &[PathStep]) -> &'v mut Value {
    for step in path {
        v = match step {
            PathStep::At(i) => &mut v[*i],
            PathStep::Key(k) => &mut v[k.as_str()],
        };
    }
    v
}

fn edit_json(doc: &mut Value, edit: &JsonEdit) {
    let mut paths = Vec::new();
    node_paths(doc, &mut Vec::new(), &mut paths);
    let pick = |i: &Index| paths[i.index(paths.len())].clone();
    match edit {
        JsonEdit::Replace(at, with) => *node_mut(doc, &pick(at)) = replacement(*with),
        JsonEdit::Graft(at, from) => {
            let copy = node_mut(doc, &pick(from)).clone();
            *node_mut(doc, &pick(at)) = copy;
        }
        JsonEdit::Remove(at) | JsonEdit::Duplicate(at) => {
            let path = pick(at);
            let Some((last, parent)) = path.split_last() else {
                return;
            };
            let parent = node_mut(doc, parent);
            match (last, parent) {
                (PathStep::At(i), Value::Array(items)) => {
                    if matches!(edit, JsonEdit::Remove(_)) {
                        items.remove(*i);
                    } else {
                        let copy = items[*i].clone();
                        items.insert(*i, copy);
                    }
                }
                (PathStep::Key(k), Value::Object(map)) if matches!(edit, JsonEdit::Remove(_)) => {
                    map.remove(k);
                }
                _ => {}
            }
        }
    }
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        3 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| JsonEdit::Replace(a, b)),
        2 => any::<Index>().prop_map(JsonEdit::Remove),
        2 => any::<Index>().prop_map(JsonEdit::Duplicate),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| JsonEdit::Graft(a, b)),
    ]
}

#[test]
fn nft_ruleset_check_never_panics_on_mutated_listings() {
    let needs = Arc::new(firewall_needs());
    let docs: Vec<Value> = NFT_SEEDS
        .iter()
        .map(|(json, _)| serde_json::from_str(json).unwrap())
        .collect();
    let texts: Vec<Vec<u8>> = NFT_SEEDS
        .iter()
        .map(|(_, t)| t.as_bytes().to_vec())
        .collect();
    let strategy = (
        0..docs.len(),
        prop::collection::vec(json_edit(), 0..6),
        mutated_bytes(
            texts,
            &["# handle ", "table ", "chain ", "counter packets 1 bytes "],
            4,
        ),
        prop::option::weighted(0.3, any::<Index>()),
    )
        .prop_map(move |(seed, edits, text, flip)| {
            let mut doc = docs[seed].clone();
            for edit in &edits {
                edit_json(&mut doc, edit);
            }
            let mut json = doc.to_string();
            if let Some(at) = flip {
                // A byte-level change on top: mostly broken JSON, sometimes a changed value.
                let mut bytes = json.into_bytes();
                let at = at.index(bytes.len());
                bytes[at] ^= 0x20;
                json = String::from_utf8_lossy(&bytes).into_owned();
            }
            (json, String::from_utf8_lossy(&text).into_owned())
        });
    mutate::check(
        "nft ruleset check (mutated)",
        800,
        strategy,
        |(json, text)| {
            let needs = Arc::clone(&needs);
            bounded("nft ruleset check", move || {
                check_firewall(&needs, &json, &text)
            });
            Ok(())
        },
    );
}

/// A random ruleset in `nft -j`'s shape: a few tables, base and regular chains, rules made
/// of matches, verdict maps and verdicts (jumps and gotos between the chains), sets.
fn nft_ruleset() -> impl Strategy<Value = String> {
    // Mostly one family, so that rules, chains, jumps and sets find each other.
    let family = prop::sample::select(vec![
        "inet", "inet", "inet", "inet", "inet", "inet", "ip", "ip6", "netdev", "bridge",
    ]);
    let chain_name = prop::sample::select(vec!["input", "forward", "c0", "c1", "c2", "post"]);
    let hook = prop::sample::select(vec!["input", "forward", "postrouting", "ingress", "output"]);
    let base = prop::option::of((
        hook,
        prop::sample::select(vec!["filter", "nat"]),
        prop::sample::select(vec![-300i64, -100, 0, 0, 100, i64::MIN, i64::MAX]),
        prop::sample::select(vec!["accept", "drop", "drop", "queue"]),
        prop::option::of(prop::sample::select(vec!["wan", "eth0", "lo"])),
    ));
    let chain = (family.clone(), chain_name.clone(), base).prop_map(|(f, n, base)| {
        let mut c = json!({"family": f, "table": "t", "name": n, "handle": 1});
        if let Some((hook, kind, prio, policy, dev)) = base {
            c["hook"] = hook.into();
            c["type"] = kind.into();
            c["prio"] = prio.into();
            c["policy"] = policy.into();
            if let Some(dev) = dev {
                c["dev"] = dev.into();
            }
        }
        json!({ "chain": c })
    });
    let left = prop::sample::select(vec![
        json!({"meta": {"key": "iifname"}}),
        json!({"meta": {"key": "oifname"}}),
        json!({"meta": {"key": "l4proto"}}),
        json!({"meta": {"key": "nfproto"}}),
        json!({"meta": {"key": "mark"}}),
        json!({"payload": {"protocol": "udp", "field": "dport"}}),
        json!({"payload": {"protocol": "th", "field": "dport"}}),
        json!({"payload": {"protocol": "ip", "field": "saddr"}}),
        json!({"payload": {"protocol": "ip6", "field": "daddr"}}),
        json!({"payload": {"protocol": "ip", "field": "protocol"}}),
        json!({"payload": {"protocol": "esp", "field": "spi"}}),
        json!({"payload": {"protocol": "tcp", "field": "dport"}}),
        json!({"ct": {"key": "state"}}),
        json!({"fib": {"result": "type"}}),
    ]);
    let right = prop::sample::select(vec![
        json!("wan"),
        json!("wa*"),
        json!("lo"),
        json!(51820),
        json!(500),
        json!("udp"),
        json!("esp"),
        json!(17),
        json!("new"),
        json!(["established", "related"]),
        json!({"set": [500, 4500, {"range": [51000, 52000]}]}),
        json!({"set": ["wan", "lan0"]}),
        json!({"prefix": {"addr": "10.0.0.0", "len": 8}}),
        json!({"prefix": {"addr": "::", "len": 0}}),
        json!({"range": ["10.0.0.1", "10.255.255.255"]}),
        json!({"range": [1, 65535]}),
        json!("@s"),
        json!("@missing"),
        json!("ipv4"),
        json!(null),
    ]);
    let op = prop::sample::select(vec!["==", "==", "!=", "in", "<", "&"]);
    let target = chain_name.clone();
    let statement = prop_oneof![
        4 => (left.clone(), op, right.clone())
            .prop_map(|(l, op, r)| json!({"match": {"op": op, "left": l, "right": r}})),
        1 => (left, prop::sample::select(vec!["accept", "drop"]), right).prop_map(|(k, v, r)| {
            json!({"vmap": {"key": k, "data": {"set": [[r, {v: null}], ["x", {"jump": {"target": "c0"}}]]}}})
        }),
        1 => Just(json!({"vmap": {"key": {"meta": {"key": "iifname"}}, "data": "@m"}})),
        3 => (prop::sample::select(vec!["jump", "goto"]), target)
            .prop_map(|(k, t)| json!({k: {"target": t}})),
        2 => prop::sample::select(vec![
            json!({"accept": null}),
            json!({"drop": null}),
            json!({"reject": null}),
            json!({"return": null}),
            json!({"masquerade": null}),
            json!({"snat": {"addr": "203.0.113.1"}}),
            json!({"continue": null}),
            json!({"counter": {"packets": 0, "bytes": 0}}),
            json!({"limit": {"rate": 5}}),
            json!({"log": null}),
            json!({"notrack": null}),
            json!({"tproxy": null}),
            json!({"jump": {}}),
            json!(null),
            json!([]),
        ]),
    ];
    let rule = (
        family.clone(),
        chain_name,
        0u64..20,
        prop::collection::vec(statement, 0..5),
    )
        .prop_map(|(f, c, h, expr)| {
            json!({"rule": {"family": f, "table": "t", "chain": c, "handle": h, "expr": expr}})
        });
    let set = (family, prop::sample::select(vec!["s", "m"])).prop_map(|(f, n)| {
        let elem = if n == "m" {
            json!([["wan", {"jump": {"target": "c1"}}], ["lo", {"accept": null}]])
        } else {
            json!(["wan", 51820, {"prefix": {"addr": "192.0.2.0", "len": 24}}])
        };
        json!({ if n == "m" { "map" } else { "set" }: {"family": f, "table": "t", "name": n, "elem": elem}})
    });
    (
        prop::collection::vec(chain, 1..8),
        prop::collection::vec(rule, 0..30),
        prop::collection::vec(set, 0..3),
    )
        .prop_map(|(chains, rules, sets)| {
            let mut objects = vec![
                json!({"metainfo": {"version": "1.0.6", "json_schema_version": 1}}),
                json!({"table": {"family": "inet", "name": "t", "handle": 1}}),
                json!({"table": {"family": "inet", "name": "fw4", "handle": 2}}),
            ];
            objects.extend(chains);
            objects.extend(sets);
            objects.extend(rules);
            json!({ "nftables": objects }).to_string()
        })
}

#[test]
fn nft_ruleset_check_never_panics_or_hangs_on_generated_rulesets() {
    let needs = Arc::new(firewall_needs());
    mutate::check(
        "nft ruleset check (generated)",
        800,
        nft_ruleset(),
        |json| {
            let needs = Arc::clone(&needs);
            bounded("nft ruleset check", move || {
                check_firewall(&needs, &json, "")
            });
            Ok(())
        },
    );
}

#[test]
fn vici_nesting_at_any_depth_is_decoded_or_refused_without_a_stack_overflow() {
    for depth in (1..=80).chain([1_000, 10_000, 100_000]) {
        let mut bytes = Vec::new();
        for _ in 0..depth {
            bytes.extend_from_slice(&[1, 1, b'a']);
        }
        bytes.resize(bytes.len() + depth, 2);
        let ok = bounded("VICI decoding", move || {
            let value = serde_vici::from_slice::<ViciValue>(&bytes);
            if let Ok(value) = &value {
                check_vici(value);
            }
            value.is_ok()
        });
        assert_eq!(ok, depth < vpn_ctl::ike::vici::MAX_NESTING, "depth {depth}");
    }
}
