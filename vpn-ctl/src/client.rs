//! A client's side of a WireGuard tunnel: the wg-quick(8) config a phone or laptop imports,
//! as text ([`render`]), as a QR code for the terminal ([`qr_terminal`]) and as a PNG
//! ([`write_qr_png`]).
//!
//! The text is what `wg-quick` and the WireGuard apps read:
//!
//! ```text
//! [Interface]
//! PrivateKey = <the client's private key>
//! Address = 10.8.0.2/32, fd08::2/128
//! DNS = 192.168.1.1
//!
//! [Peer]
//! PublicKey = <the router interface's public key>
//! PresharedKey = <the preshared key>
//! Endpoint = home.example.org:51820
//! AllowedIPs = 0.0.0.0/0, ::/0
//! PersistentKeepalive = 25
//! ```
//!
//! It is the same as `qrencode -t ansiutf8 < phone.conf` and `qrencode -o phone.png <
//! phone.conf`, without the extra tool. The config holds the client's private key: the PNG is
//! written with mode 0600, and whoever sees the terminal QR code can import the tunnel.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use anyhow::{Context as _, Result};
use image::{GrayImage, Luma, codecs::png::PngEncoder};
use ipnet::IpNet;
use qrcode::{EcLevel, QrCode, render::unicode::Dense1x2};

use crate::{
    config::{Endpoint, Router, WgInterface},
    key::{PublicKey, Secret},
};

/// The keepalive clients send, in seconds: keeps the NAT mapping of a phone behind a mobile
/// carrier open so the router can reach it (wg(8) suggests 25).
pub const PERSISTENT_KEEPALIVE: u16 = 25;

/// Pixels per QR module in the PNG: big enough for a phone camera pointed at a screen.
const PNG_MODULE_PIXELS: u32 = 8;

/// What the client sends through the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tunnel {
    /// Everything (`AllowedIPs = 0.0.0.0/0, ::/0`): the client browses through the router.
    #[default]
    Full,
    /// Only the VPN subnets and the router's LANs (`[router] lan`); the rest goes out the
    /// client's own connection.
    Split,
}

impl Tunnel {
    /// The client's `AllowedIPs` for a tunnel to `iface`.
    pub fn allowed_ips(self, iface: &WgInterface, router: &Router) -> Vec<IpNet> {
        match self {
            Tunnel::Full => vec![
                IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).expect("prefix 0 is valid"),
                IpNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0).expect("prefix 0 is valid"),
            ],
            Tunnel::Split => {
                let mut nets: Vec<IpNet> = Vec::new();
                for net in iface
                    .addresses
                    .iter()
                    .map(IpNet::trunc)
                    .chain(router.lan.iter().copied())
                {
                    if !nets.contains(&net) {
                        nets.push(net);
                    }
                }
                nets
            }
        }
    }
}

/// The client's side of the tunnel, as wg-quick reads it. `Debug` does not show the keys.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `[Interface] PrivateKey`: the client's own key.
    pub private_key: Secret,
    /// `[Interface] Address`: the client's tunnel addresses (`/32`, `/128`).
    pub addresses: Vec<IpNet>,
    /// `[Interface] DNS`; empty leaves the client's DNS alone.
    pub dns: Vec<IpAddr>,
    /// `[Peer] PublicKey`: the router interface's public key.
    pub server_public_key: PublicKey,
    /// `[Peer] PresharedKey`.
    pub preshared_key: Option<Secret>,
    /// `[Peer] Endpoint`: where the client dials, the interface's `public_endpoint`.
    pub endpoint: Endpoint,
    /// `[Peer] AllowedIPs`: what the client sends through the tunnel (see [`Tunnel`]).
    pub allowed_ips: Vec<IpNet>,
    /// `[Peer] PersistentKeepalive`, seconds.
    pub persistent_keepalive: Option<u16>,
}

/// The wg-quick config text of `client` (ends with a newline).
pub fn render(client: &ClientConfig) -> String {
    let mut lines = vec![
        "[Interface]".to_string(),
        format!("PrivateKey = {}", client.private_key.expose_base64()),
        format!("Address = {}", join(&client.addresses)),
    ];
    if !client.dns.is_empty() {
        lines.push(format!("DNS = {}", join(&client.dns)));
    }
    lines.push(String::new());
    lines.push("[Peer]".to_string());
    lines.push(format!("PublicKey = {}", client.server_public_key));
    if let Some(psk) = &client.preshared_key {
        lines.push(format!("PresharedKey = {}", psk.expose_base64()));
    }
    lines.push(format!("Endpoint = {}", client.endpoint));
    lines.push(format!("AllowedIPs = {}", join(&client.allowed_ips)));
    if let Some(secs) = client.persistent_keepalive {
        lines.push(format!("PersistentKeepalive = {secs}"));
    }
    lines.push(String::new());
    lines.join("\n")
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The QR code of `text`, error correction level L (as `qrencode` makes them): the smallest
/// code, which matters on a terminal.
fn qr_code(text: &str) -> Result<QrCode> {
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L).with_context(|| {
        format!(
            "cannot fit {} bytes into a QR code: transfer the config as a file instead",
            text.len()
        )
    })
}

/// `text` as a QR code for the terminal, like `qrencode -t ansiutf8`: two modules per
/// character cell (Unicode half blocks), with the quiet zone around it.
///
/// Each line sets its own colours (bright white on black, reset at the end of the line), so
/// the code reads the same on dark and light terminals; light modules are the drawn blocks.
/// The text ends without a newline.
pub fn qr_terminal(text: &str) -> Result<String> {
    let code = qr_code(text)?;
    let blocks = code
        .render::<Dense1x2>()
        // Blocks are drawn in the foreground colour, set to white below: draw the light
        // modules (and the quiet zone), leave the dark ones as the black background.
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build();
    Ok(blocks
        .lines()
        .map(|line| format!("\x1b[97;40m{line}\x1b[0m"))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Writes `text` as a QR code PNG (black on white, 8 pixels per module, with the quiet
/// zone) to `path`, like `qrencode -o path`. The file gets mode 0600, an existing one too:
/// the code holds the client's private key.
pub fn write_qr_png(text: &str, path: &Path) -> Result<()> {
    let image = qr_image(&qr_code(text)?);
    let mut png = zeroize::Zeroizing::new(Vec::new());
    image
        .write_with_encoder(PngEncoder::new(&mut *png))
        .context("encoding the QR code as PNG")?;
    crate::files::replace(path, &png, crate::files::Mode::Set(0o600))
        .with_context(|| format!("cannot write {}: choose a writable path", path.display()))
}

fn qr_image(code: &QrCode) -> GrayImage {
    code.render::<Luma<u8>>()
        .quiet_zone(true)
        .module_dimensions(PNG_MODULE_PIXELS, PNG_MODULE_PIXELS)
        .build()
}

#[cfg(test)]
mod tests {
    use std::{fs::Permissions, os::unix::fs::PermissionsExt as _};

    use super::*;

    const PRIVATE: &str = "YAnz6N7eLtwMXw9JOuZUy0ohmrhCoQeZQXbaMFoc6mE=";
    const PRESHARED: &str = "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE=";

    fn client() -> ClientConfig {
        let server: Secret = "kL2Oq0HfyzVbpfYhUUTlr/IUsYmOv1bbhGxnY01tz0Y="
            .parse()
            .unwrap();
        ClientConfig {
            private_key: PRIVATE.parse().unwrap(),
            addresses: vec![
                "10.8.0.2/32".parse().unwrap(),
                "fd08::2/128".parse().unwrap(),
            ],
            dns: vec!["192.168.1.1".parse().unwrap()],
            server_public_key: server.public_key(),
            preshared_key: Some(PRESHARED.parse().unwrap()),
            endpoint: "home.example.org:51820".parse().unwrap(),
            allowed_ips: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
            persistent_keepalive: Some(PERSISTENT_KEEPALIVE),
        }
    }

    fn interface() -> WgInterface {
        WgInterface {
            name: "wg0".into(),
            private_key: Secret::generate_private(),
            private_key_file: "wg0.key".into(),
            listen_port: Some(51820),
            addresses: vec![
                "10.8.0.1/24".parse().unwrap(),
                "fd08::1/64".parse().unwrap(),
            ],
            mtu: None,
            fwmark: None,
            public_endpoint: None,
            client_dns: vec![],
            internet: true,
            peers: vec![],
            peers_listed: false,
        }
    }

    #[test]
    fn render_writes_a_wg_quick_config() {
        let client = client();
        let expected = format!(
            "[Interface]\n\
             PrivateKey = {PRIVATE}\n\
             Address = 10.8.0.2/32, fd08::2/128\n\
             DNS = 192.168.1.1\n\
             \n\
             [Peer]\n\
             PublicKey = {}\n\
             PresharedKey = {PRESHARED}\n\
             Endpoint = home.example.org:51820\n\
             AllowedIPs = 0.0.0.0/0, ::/0\n\
             PersistentKeepalive = 25\n",
            client.server_public_key
        );
        assert_eq!(render(&client), expected);
    }

    #[test]
    fn render_leaves_out_what_is_not_set() {
        let client = ClientConfig {
            dns: vec![],
            preshared_key: None,
            persistent_keepalive: None,
            endpoint: "[2001:db8::1]:51820".parse().unwrap(),
            ..client()
        };
        let text = render(&client);
        assert!(!text.contains("DNS"), "{text}");
        assert!(!text.contains("PresharedKey"), "{text}");
        assert!(!text.contains("PersistentKeepalive"), "{text}");
        assert!(
            text.contains("\nEndpoint = [2001:db8::1]:51820\n"),
            "{text}"
        );
    }

    #[test]
    fn split_tunnel_sends_the_vpn_subnets_and_the_lans() {
        let router = Router {
            wan: None,
            lan: vec![
                "192.168.1.0/24".parse().unwrap(),
                "10.8.0.0/24".parse().unwrap(),
            ],
            ..Router::default()
        };
        let nets: Vec<String> = Tunnel::Split
            .allowed_ips(&interface(), &router)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["10.8.0.0/24", "fd08::/64", "192.168.1.0/24"]);
        let full: Vec<String> = Tunnel::Full
            .allowed_ips(&interface(), &router)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(full, ["0.0.0.0/0", "::/0"]);
    }

    fn decode<G: rqrr::BitGrid>(grids: Vec<rqrr::Grid<G>>) -> String {
        assert_eq!(grids.len(), 1, "expected exactly one QR code");
        grids[0].decode().expect("the QR code decodes").1
    }

    #[test]
    fn png_qr_code_decodes_to_the_config() {
        let text = render(&client());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phone.png");
        // An existing readable file is replaced and made private.
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        write_qr_png(&text, &path).unwrap();

        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the PNG holds the private key");

        let image = image::open(&path).unwrap().to_luma8();
        assert_eq!(
            decode(rqrr::PreparedImage::prepare(image).detect_grids()),
            text
        );
    }

    #[test]
    fn bitmap_of_the_qr_code_decodes_to_the_config() {
        let text = render(&client());
        let code = qr_code(&text).unwrap();
        let (width, colors) = (code.width(), code.to_colors());
        // 4 pixels per module and a 4-module quiet zone.
        let (scale, quiet) = (4, 4);
        let side = (width + 2 * quiet) * scale;
        let mut image = rqrr::PreparedImage::prepare_from_bitmap(side, side, |x, y| {
            let (mx, my) = (
                (x / scale).wrapping_sub(quiet),
                (y / scale).wrapping_sub(quiet),
            );
            mx < width && my < width && colors[my * width + mx] == qrcode::Color::Dark
        });
        assert_eq!(decode(image.detect_grids()), text);
    }

    /// Reads the terminal rendering back, as a phone camera would: a drawn half block is a
    /// light module, a blank one (the black background) a dark module.
    #[test]
    fn terminal_qr_code_decodes_to_the_config() {
        let text = render(&client());
        let terminal = qr_terminal(&text).unwrap();
        let rows: Vec<Vec<char>> = terminal
            .lines()
            .map(|line| {
                let line = line
                    .strip_prefix("\x1b[97;40m")
                    .and_then(|l| l.strip_suffix("\x1b[0m"))
                    .expect("every line sets and resets its colours");
                line.chars().collect()
            })
            .collect();
        let cols = rows[0].len();
        assert!(rows.iter().all(|r| r.len() == cols), "a rectangular code");
        // The quiet zone: the first and last rows and columns are light (full blocks).
        assert!(rows[0].iter().all(|&c| c == '█'));
        // The height is odd: the last row's lower halves are the background.
        let last = rows.len() - 1;
        assert!(
            rows[..last]
                .iter()
                .all(|r| r[0] == '█' && r[cols - 1] == '█')
        );
        assert!(rows[last].iter().all(|&c| c == '▀'));

        let light = |x: usize, y: usize| -> bool {
            let cell = rows[y / 2][x];
            match (cell, y % 2) {
                ('█', _) | ('▀', 0) | ('▄', 1) => true,
                (' ', _) | ('▀', 1) | ('▄', 0) => false,
                (other, _) => panic!("unexpected character {other:?}"),
            }
        };
        let (scale, height) = (4, rows.len() * 2);
        let mut image =
            rqrr::PreparedImage::prepare_from_bitmap(cols * scale, height * scale, |x, y| {
                !light(x / scale, y / scale)
            });
        assert_eq!(decode(image.detect_grids()), text);
    }
}
