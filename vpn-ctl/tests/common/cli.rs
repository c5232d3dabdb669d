//! Running vpn-ctl in a test namespace, shared by the end-to-end tests.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Output,
};

use vpn_ctl_tests::{Netns, run};

pub const VPN_CTL: &str = env!("CARGO_BIN_EXE_vpn-ctl");

/// `vpn-ctl --config CONFIG ARGS...` inside `ns`, which must succeed.
pub fn vpn_ctl(ns: &Netns, config: &Path, args: &[&str]) -> String {
    let out = run(ns.command(VPN_CTL).arg("--config").arg(config).args(args));
    String::from_utf8(out.stdout).unwrap()
}

pub fn stdout(out: Output) -> String {
    String::from_utf8(out.stdout).unwrap()
}

/// Brings the phone's side up from the client config with vpn-ctl itself: `import wg-quick`
/// turns it into a vpn-ctl config, `up --backend userspace` runs it.
pub fn phone_up_with_vpn_ctl(
    phone: &Netns,
    client_config: &str,
    dir: &Path,
    iface: &str,
) -> PathBuf {
    let phone_dir = dir.join("phone");
    fs::create_dir(&phone_dir).unwrap();
    let conf = phone_dir.join(format!("{iface}.conf"));
    fs::write(&conf, client_config).unwrap();
    let config = phone_dir.join("vpn.toml");
    run(phone
        .command(VPN_CTL)
        .arg("--config")
        .arg(&config)
        .args(["import", "wg-quick"])
        .arg(&conf));
    let applied = vpn_ctl(phone, &config, &["up", "--backend", "userspace"]);
    assert!(applied.contains("created the link (userspace"), "{applied}");
    config
}
