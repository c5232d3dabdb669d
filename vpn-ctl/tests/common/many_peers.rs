//! A road-warrior server config with many peers, for the 10,000-peer test
//! (`tests/road_warrior.rs`) and the benchmark (`benches/wireguard.rs`), which include this
//! file with `#[path]`.
// Each includer uses part of it.
#![allow(dead_code)]

use std::{
    fmt::Write as _,
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use vpn_ctl::key::Secret;

/// wg0 (10.0.0.1/8, port 51820) and `count` peers `p0`, `p1`, ... with one host address each
/// from 10.0.0.2 on.
pub struct ManyPeers {
    pub private: Secret,
    /// (public key, allowed IP) per peer.
    pub peers: Vec<(String, String)>,
    pub config: PathBuf,
}

impl ManyPeers {
    /// Writes the private key file and the config into `dir`.
    pub fn new(dir: &Path, count: usize) -> ManyPeers {
        let private = Secret::generate_private();
        let key_file = dir.join("wg0.key");
        fs::write(&key_file, private.expose_base64()).unwrap();
        fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).unwrap();
        // Any 32 bytes are a valid public key; random ones avoid 10,000 curve25519 steps here.
        let peers = (0..count)
            .map(|i| {
                let n = i + 2;
                let ip = format!(
                    "10.{}.{}.{}/32",
                    (n >> 16) & 0xff,
                    (n >> 8) & 0xff,
                    n & 0xff
                );
                (Secret::generate_preshared().expose_base64(), ip)
            })
            .collect();
        let many = ManyPeers {
            private,
            peers,
            config: dir.join("vpn.toml"),
        };
        many.write(None);
        many
    }

    /// Rewrites the config, giving the first peer `keepalive` when set (a one-peer change).
    pub fn write(&self, keepalive_of_first: Option<u16>) {
        let mut text = String::from(
            "[wireguard.wg0]\nprivate_key_file = \"wg0.key\"\nlisten_port = 51820\n\
             addresses = [\"10.0.0.1/8\"]\n",
        );
        for (i, (key, ip)) in self.peers.iter().enumerate() {
            let _ = write!(
                text,
                "\n[[wireguard.wg0.peers]]\nname = \"p{i}\"\npublic_key = \"{key}\"\n\
                 allowed_ips = [\"{ip}\"]\n"
            );
            if i == 0
                && let Some(k) = keepalive_of_first
            {
                let _ = writeln!(text, "persistent_keepalive = {k}");
            }
        }
        fs::write(&self.config, text).unwrap();
    }
}
