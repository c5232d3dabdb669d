//! The validated model of `[ipsec.NAME]` site-to-site connections.
//!
//! ```toml
//! [ipsec.fritzbox]                     # the second seed: OpenWrt <-> FRITZ!Box
//! keying = "ike"                       # "ike" (strongSwan's charon negotiates) or "static"
//! local_gateway = "left.domain.com"    # optional for ike: address or DNS name
//! remote_gateway = "right.domain.com"  # address or DNS name (dynamic DNS: re-resolved)
//! local_subnets = ["192.168.2.0/24"]
//! remote_subnets = ["192.168.1.0/24"]
//! local_id = "left.domain.com"         # FQDN or address; default: the gateway
//! remote_id = "right.domain.com"
//! psk_file = "fritzbox.psk"            # ike: the pre-shared key (mode 0600)
//! ike_version = "ikev1-aggressive"     # "ikev2" (default), "ikev1-main", "ikev1-aggressive"
//! ike_proposals = ["aes256-sha1-modp1024"]
//! esp_proposals = ["aes256-sha1-modp1024"]
//! allow_weak = ["modp1024", "sha1"]    # weak algorithms must be named to be accepted
//! ike_lifetime = 28800                 # seconds
//! esp_lifetime = 3600
//! dpd = 30                             # seconds; omit to turn dead-peer detection off
//! nat_traversal = true
//! watchdog_probe = "192.168.1.1"       # an address in the remote subnet to ping
//!
//! [ipsec.office]                       # two Linux routers, no IKE daemon
//! keying = "static"
//! local_gateway = "198.51.100.1"       # static: both gateways are addresses
//! remote_gateway = "203.0.113.1"
//! local_subnets = ["192.168.2.0/24"]
//! remote_subnets = ["192.168.3.0/24"]
//! esp = "aes256gcm16"                  # static: one AEAD: aes128gcm16 or aes256gcm16
//! spi_out = 0x1001                     # our outbound SA = the peer's spi_in
//! spi_in = 0x1002
//! key_out_file = "office-out.key"      # hex key material incl. the 4-byte salt, mode 0600
//! key_in_file = "office-in.key"
//! ```

use std::{net::IpAddr, path::PathBuf, time::Duration};

use ipnet::IpNet;

/// `[ipsec.NAME]`: one site-to-site connection.
#[derive(Debug, Clone)]
pub struct IpsecSite {
    pub name: String,
    /// `None`: whatever address the route to the remote gateway leaves from (ike only).
    pub local_gateway: Option<Gateway>,
    pub remote_gateway: Gateway,
    pub local_subnets: Vec<IpNet>,
    pub remote_subnets: Vec<IpNet>,
    pub keying: Keying,
    /// An address inside the remote subnets the watchdog pings.
    pub watchdog_probe: Option<IpAddr>,
}

/// A gateway: an address, or a DNS name (dynamic DNS) resolved when applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gateway {
    Address(IpAddr),
    Name(String),
}

/// An IKE identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Fqdn(String),
    Address(IpAddr),
}

#[derive(Debug, Clone)]
pub enum Keying {
    /// vpn-ctl installs the SAs and policies itself (`ip xfrm state/policy add`).
    Static(StaticKeying),
    /// strongSwan's charon negotiates the SAs, configured over VICI.
    Ike(IkeKeying),
}

/// Static keying: one AEAD SA each way, keys from files.
#[derive(Debug, Clone)]
pub struct StaticKeying {
    pub esp: StaticAead,
    pub spi_out: u32,
    pub spi_in: u32,
    /// Key material including the 4-byte salt (20 bytes for AES-128-GCM, 36 for AES-256-GCM).
    pub key_out: SecretBytes,
    pub key_in: SecretBytes,
    pub key_out_file: PathBuf,
    pub key_in_file: PathBuf,
}

/// The AEADs static keying offers: `rfc4106(gcm(aes))` with a 16-byte ICV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaticAead {
    Aes128Gcm16,
    Aes256Gcm16,
}

impl StaticAead {
    /// The kernel's algorithm name (`ip xfrm state ... aead NAME KEY ICV-BITS`).
    pub const KERNEL_NAME: &'static str = "rfc4106(gcm(aes))";
    pub const ICV_BITS: u32 = 128;

    /// Key bytes including the 4-byte salt.
    pub fn key_len(self) -> usize {
        match self {
            StaticAead::Aes128Gcm16 => 16 + 4,
            StaticAead::Aes256Gcm16 => 32 + 4,
        }
    }
}

#[derive(Debug, Clone)]
pub struct IkeKeying {
    pub version: IkeVersion,
    pub local_id: Option<Identity>,
    pub remote_id: Option<Identity>,
    /// Any text (FRITZ!Box keys are passphrases).
    pub psk: SecretBytes,
    pub psk_file: PathBuf,
    /// strongSwan proposal strings, e.g. `aes256-sha1-modp1024`.
    pub ike_proposals: Vec<String>,
    pub esp_proposals: Vec<String>,
    pub ike_lifetime: Duration,
    pub esp_lifetime: Duration,
    /// `None`: dead-peer detection off.
    pub dpd: Option<Duration>,
    pub nat_traversal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IkeVersion {
    V2,
    V1Main,
    V1Aggressive,
}

/// Secret bytes of any length: `Debug` redacted, zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> SecretBytes {
        SecretBytes(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}
