//! The deployment files in `deploy/` are checked by the tools that will read them: Prometheus's
//! `promtool` (config, rules and the rules' unit tests), `sh -n` for the OpenWrt init script,
//! vpn-ctl's own validator for the example configs, `systemd-analyze verify` for the unit
//! (where systemd is installed), and the Grafana dashboard's queries against the metric names
//! the daemon exports.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use vpn_ctl::{
    config::ipsec::{IkeVersion, Keying},
    key::Secret,
};

const VPN_CTL: &str = env!("CARGO_BIN_EXE_vpn-ctl");
const PROMTOOL: &str = "/usr/bin/promtool";
const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";

/// Every metric the daemon exports (`vpn-ctl daemon`'s /metrics).
const METRICS: &[&str] = &[
    "wireguard_sent_bytes_total",
    "wireguard_received_bytes_total",
    "wireguard_latest_handshake_seconds",
    "wireguard_latest_handshake_delay_seconds",
    "ipsec_site_up",
    "ipsec_sa_bytes_total",
    "ipsec_sa_packets_total",
    "ipsec_sa_established_seconds",
    "vpnctl_ipsec_renewals_total",
    "vpnctl_ipsec_renewal_failures_total",
    "vpnctl_wan_packets_total",
    "vpnctl_wan_bytes_total",
    "vpnctl_listener_up",
    "vpnctl_xfrm_errors_total",
    "vpnctl_build_info",
];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Runs `program args...` in `dir`, panicking with its output unless it succeeds.
fn check(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("could not start {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{program} {args:?} in {} failed ({}):\n{text}",
        dir.display(),
        out.status
    );
    text
}

fn promtool() -> &'static str {
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: `cargo xtask setup` installs it (Debian package prometheus)"
    );
    PROMTOOL
}

#[test]
fn prometheus_config_rules_and_rule_tests_pass_promtool() {
    let dir = deploy().join("prometheus");
    check(&dir, promtool(), &["check", "config", "prometheus.yml"]);
    let rules = check(&dir, promtool(), &["check", "rules", "vpn-ctl.rules.yml"]);
    assert!(rules.contains("SUCCESS"), "{rules}");
    check(
        &dir,
        promtool(),
        &["test", "rules", "vpn-ctl.rules.test.yml"],
    );
}

#[test]
fn alert_rules_cover_the_issue_and_use_only_exported_metrics() {
    let text = fs::read_to_string(deploy().join("prometheus/vpn-ctl.rules.yml")).unwrap();
    for alert in [
        "WireGuardTunnelDown",
        "WireGuardHandshakeStale",
        "NoPacketsReachingWan",
        "XfrmErrorsRising",
        "IPsecSiteDown",
        "IPsecRenewalFailing",
        "VpnCtlScrapeDown",
    ] {
        assert!(
            text.contains(&format!("alert: {alert}\n")),
            "{alert} missing"
        );
    }
    let exprs: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
        .collect();
    assert_unknown_metrics_none(&exprs.join("\n"), "vpn-ctl.rules.yml");
}

#[test]
fn grafana_dashboard_is_json_whose_queries_use_exported_metrics() {
    let path = deploy().join("grafana/vpn-ctl.json");
    let dashboard: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
    assert_eq!(dashboard["uid"], "vpn-ctl");
    let mut queries = Vec::new();
    collect_queries(&dashboard, &mut queries);
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let targets = panel["targets"].as_array().map_or(0, Vec::len);
        assert!(targets > 0, "panel {} has no query", panel["title"]);
    }
    assert!(queries.len() >= 10, "{queries:?}");
    assert_unknown_metrics_none(&queries.join("\n"), "the dashboard");
    // Every family the issue asks for is on it.
    let all = queries.join("\n");
    for metric in [
        "wireguard_latest_handshake_delay_seconds",
        "wireguard_received_bytes_total",
        "vpnctl_wan_packets_total",
        "ipsec_site_up",
        "ipsec_sa_bytes_total",
        "vpnctl_xfrm_errors_total",
    ] {
        assert!(all.contains(metric), "the dashboard does not show {metric}");
    }
}

/// `expr` of targets and `query`/`definition` of template variables, anywhere in the JSON.
fn collect_queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::String(s)) if s.contains('(') => {
                        out.push(s.clone())
                    }
                    _ => collect_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_queries(v, out)),
        _ => {}
    }
}

/// Panics if `text` names a metric of vpn-ctl's families (`wireguard_`, `ipsec_`, `vpnctl_`)
/// that the daemon does not export.
fn assert_unknown_metrics_none(text: &str, what: &str) {
    let names: BTreeSet<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| {
            ["wireguard_", "ipsec_", "vpnctl_"]
                .iter()
                .any(|p| w.starts_with(p))
        })
        .collect();
    let unknown: Vec<&&str> = names.iter().filter(|n| !METRICS.contains(n)).collect();
    assert!(
        unknown.is_empty(),
        "{what} uses unknown metrics {unknown:?}"
    );
    assert!(!names.is_empty(), "{what} uses no vpn-ctl metric");
}

#[test]
fn openwrt_init_script_parses_and_is_a_procd_service() {
    let dir = deploy().join("openwrt");
    check(&dir, "sh", &["-n", "vpn-ctl.init"]);
    let init = fs::read_to_string(dir.join("vpn-ctl.init")).unwrap();
    assert!(init.starts_with("#!/bin/sh /etc/rc.common\n"));
    for needed in [
        "USE_PROCD=1",
        "start_service()",
        "procd_set_param command \"$PROG\" daemon --config \"$config\"",
        "procd_set_param respawn",
        "reload_service()",
        "procd_send_signal vpn-ctl '*' HUP",
        "service_triggers()",
    ] {
        assert!(init.contains(needed), "vpn-ctl.init lacks {needed}");
    }
    let mode = fs::metadata(dir.join("vpn-ctl.init"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "vpn-ctl.init must be executable");
    let uci = fs::read_to_string(dir.join("vpn-ctl.config")).unwrap();
    assert!(uci.contains("config vpn-ctl 'main'"), "{uci}");
    assert!(
        uci.contains("option config '/etc/vpn-ctl/vpn.toml'"),
        "{uci}"
    );
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let unit = fs::read_to_string(deploy().join("systemd/vpn-ctl.service")).unwrap();
    for needed in [
        "Type=notify",
        "ExecStart=/usr/sbin/vpn-ctl daemon --config /etc/vpn-ctl/vpn.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=CAP_NET_ADMIN",
    ] {
        assert!(unit.contains(needed), "vpn-ctl.service lacks {needed}");
    }
    if !Path::new(SYSTEMD_ANALYZE).exists() {
        eprintln!("skipped: systemd-analyze verify ({SYSTEMD_ANALYZE} is not installed)");
        return;
    }
    // verify checks that ExecStart's program exists: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("vpn-ctl.service");
    fs::write(
        &copy,
        unit.replace(
            "ExecStart=/usr/sbin/vpn-ctl",
            &format!("ExecStart={VPN_CTL}"),
        ),
    )
    .unwrap();
    check(
        dir.path(),
        SYSTEMD_ANALYZE,
        &["verify", copy.to_str().unwrap()],
    );
}

/// Copies an example config into a fresh directory beside the key files it names (valid keys,
/// mode 0600) and validates it as `vpn-ctl up` would.
fn load_example(
    name: &str,
    keys: &[(&str, String)],
) -> (tempfile::TempDir, vpn_ctl::config::Config) {
    let text = fs::read_to_string(deploy().join("examples").join(name)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (file, contents) in keys {
        let path = dir.path().join(file);
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    }
    let path = dir.path().join("vpn.toml");
    fs::write(&path, &text).unwrap();
    let config = vpn_ctl::config::parse(&path, &text)
        .unwrap_or_else(|e| panic!("deploy/examples/{name} does not validate:\n{e}"));
    (dir, config)
}

#[test]
fn road_warrior_example_validates_and_takes_a_peer() {
    let key = Secret::generate_private().expose_base64();
    let (dir, config) = load_example("road-warrior.toml", &[("wg0.key", key)]);
    let wg0 = config.interface("wg0").expect("wg0");
    assert_eq!(wg0.listen_port, Some(51820));
    assert_eq!(config.router.wan.as_deref(), Some("wan"));
    // `peer add`, as its comment says, works on it as shipped.
    let out = Command::new(VPN_CTL)
        .arg("--config")
        .arg(dir.path().join("vpn.toml"))
        .args(["peer", "add", "anna-phone"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client = String::from_utf8_lossy(&out.stdout);
    assert!(
        client.contains("Endpoint = home.example.org:51820"),
        "{client}"
    );
    assert!(client.contains("Address = 10.0.0.2/32"), "{client}");
}

#[test]
fn fritzbox_example_validates_as_ikev1_aggressive_with_the_fritzbox_proposals() {
    let (_dir, config) = load_example(
        "fritzbox-site.toml",
        &[("fritzbox.psk", "a passphrase as on the FRITZ!Box\n".into())],
    );
    let site = &config.ipsec[0];
    assert_eq!(site.name, "fritzbox");
    let Keying::Ike(ike) = &site.keying else {
        panic!("the FRITZ!Box site must use IKE keying");
    };
    assert_eq!(ike.version, IkeVersion::V1Aggressive);
    assert_eq!(ike.ike_proposals, ["aes256-sha1-modp1024"]);
    assert_eq!(ike.esp_proposals, ["aes256-sha1-modp1024"]);
}
