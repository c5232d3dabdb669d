//! Running vpn-ctl in a test namespace, shared by the end-to-end tests.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use vpn_ctl_tests::{Netns, run};

pub const VPN_CTL: &str = env!("CARGO_BIN_EXE_vpn-ctl");

/// `vpn-ctl --config CONFIG ARGS...` inside `ns`, which must succeed: its stdout.
pub fn vpn_ctl(ns: &Netns, config: &Path, args: &[&str]) -> String {
    vpn_ctl_texts(ns, config, args).0
}

/// [`vpn_ctl`], with what it wrote to stderr (warnings) too: (stdout, stderr).
pub fn vpn_ctl_texts(ns: &Netns, config: &Path, args: &[&str]) -> (String, String) {
    let out = run(ns.command(VPN_CTL).arg("--config").arg(config).args(args));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The base64 alphabet keys are written in (`wg genkey`).
pub const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as `wg` writes keys.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}

/// `vpn-ctl pubkey` of a private key.
pub fn pubkey(private: &str) -> String {
    let mut child = std::process::Command::new(VPN_CTL)
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(private.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
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

/// `GET path` on `addr` in `ns`; the body, or `None` when nothing answers.
pub fn http_get(ns: &Netns, addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = ns.enter(|| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}
