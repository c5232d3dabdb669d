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
//! dpd = 30                             # seconds (the default); 0 turns dead-peer detection off
//! nat_traversal = true                 # the default
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
//!
//! Defaults: `ike_version = "ikev2"`; proposals `aes256gcm16-prfsha256-ecp256` (IKE) and
//! `aes256gcm16-ecp256` (ESP) for IKEv2, `aes256-sha256-modp2048` for both with IKEv1;
//! `ike_lifetime = 28800`, `esp_lifetime = 3600`, `dpd = 30`, `nat_traversal = true`.
//! Proposals are strongSwan's `enc-integ-dh` keywords; the weak ones ([`WEAK_ALGORITHMS`])
//! are accepted only when `allow_weak` names them ([`IkeKeying::weak_algorithms`] lists
//! those in use, for a warning).

use std::{fmt, net::IpAddr, path::PathBuf, time::Duration};

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

impl fmt::Display for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gateway::Address(addr) => write!(f, "{addr}"),
            Gateway::Name(name) => f.write_str(name),
        }
    }
}

/// An IKE identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Fqdn(String),
    Address(IpAddr),
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Address(addr) => write!(f, "{addr}"),
            Identity::Fqdn(name) => f.write_str(name),
        }
    }
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

    /// The name in the configuration (strongSwan's keyword).
    pub fn name(self) -> &'static str {
        match self {
            StaticAead::Aes128Gcm16 => "aes128gcm16",
            StaticAead::Aes256Gcm16 => "aes256gcm16",
        }
    }

    pub fn from_name(name: &str) -> Option<StaticAead> {
        [StaticAead::Aes128Gcm16, StaticAead::Aes256Gcm16]
            .into_iter()
            .find(|aead| aead.name() == name)
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

impl IkeKeying {
    /// The weak algorithms ([`WEAK_ALGORITHMS`]) the proposals use, each once: accepted
    /// because `allow_weak` named them, and worth a warning.
    pub fn weak_algorithms(&self) -> Vec<&'static str> {
        let mut weak = Vec::new();
        let proposals = self
            .ike_proposals
            .iter()
            .map(|p| (p, ProposalFor::Ike))
            .chain(self.esp_proposals.iter().map(|p| (p, ProposalFor::Esp)));
        for (text, kind) in proposals {
            for name in Proposal::parse(text, kind)
                .map(|p| p.weak)
                .unwrap_or_default()
            {
                if !weak.contains(&name) {
                    weak.push(name);
                }
            }
        }
        weak
    }
}

/// The IKE lifetime unless `ike_lifetime` says otherwise (strongSwan's default).
pub const DEFAULT_IKE_LIFETIME: Duration = Duration::from_secs(28800);
/// The ESP (CHILD SA) lifetime unless `esp_lifetime` says otherwise.
pub const DEFAULT_ESP_LIFETIME: Duration = Duration::from_secs(3600);
/// The dead-peer detection interval unless `dpd` says otherwise.
pub const DEFAULT_DPD: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IkeVersion {
    V2,
    V1Main,
    V1Aggressive,
}

impl IkeVersion {
    pub const ALL: [IkeVersion; 3] = [IkeVersion::V2, IkeVersion::V1Main, IkeVersion::V1Aggressive];

    /// The name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            IkeVersion::V2 => "ikev2",
            IkeVersion::V1Main => "ikev1-main",
            IkeVersion::V1Aggressive => "ikev1-aggressive",
        }
    }

    pub fn from_name(name: &str) -> Option<IkeVersion> {
        IkeVersion::ALL.into_iter().find(|v| v.name() == name)
    }

    /// The IKE proposal used when `ike_proposals` is left out.
    pub fn default_ike_proposal(self) -> &'static str {
        match self {
            IkeVersion::V2 => "aes256gcm16-prfsha256-ecp256",
            IkeVersion::V1Main | IkeVersion::V1Aggressive => "aes256-sha256-modp2048",
        }
    }

    /// The ESP proposal used when `esp_proposals` is left out.
    pub fn default_esp_proposal(self) -> &'static str {
        match self {
            IkeVersion::V2 => "aes256gcm16-ecp256",
            IkeVersion::V1Main | IkeVersion::V1Aggressive => "aes256-sha256-modp2048",
        }
    }
}

/// Algorithms broken or too small for new setups, which some peers still require (a
/// FRITZ!Box's IKEv1 offers modp1024 and sha1): accepted only when `allow_weak` names them.
pub const WEAK_ALGORITHMS: &[&str] = &[
    "modp768", "modp1024", "modp1536", "sha1", "md5", "3des", "des",
];

/// What a strongSwan proposal keyword stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgorithmKind {
    /// A cipher that needs an integrity algorithm beside it (`aes256`).
    Encryption,
    /// A cipher with its own integrity check (`aes256gcm16`).
    Aead,
    /// `sha256`.
    Integrity,
    /// A pseudo-random function, IKE only (`prfsha256`).
    Prf,
    /// A Diffie-Hellman group (`modp2048`, `ecp256`, `curve25519`).
    KeyExchange,
    /// Extended sequence numbers, ESP only (`esn`, `noesn`).
    Esn,
}

impl AlgorithmKind {
    /// In words, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            AlgorithmKind::Encryption | AlgorithmKind::Aead => "an encryption algorithm",
            AlgorithmKind::Integrity => "an integrity algorithm",
            AlgorithmKind::Prf => "a pseudo-random function",
            AlgorithmKind::KeyExchange => "a Diffie-Hellman group",
            AlgorithmKind::Esn => "an ESN setting",
        }
    }
}

/// The kind of a strongSwan proposal keyword and, when it is weak, its name in
/// [`WEAK_ALGORITHMS`]; `None` for a keyword vpn-ctl does not know.
pub fn algorithm(keyword: &str) -> Option<(AlgorithmKind, Option<&'static str>)> {
    use AlgorithmKind::*;
    let strong = |kind| Some((kind, None));
    let weak = |kind, name| Some((kind, Some(name)));
    match keyword {
        "3des" => weak(Encryption, "3des"),
        "des" => weak(Encryption, "des"),
        "md5" | "md5_128" => weak(Integrity, "md5"),
        "sha" | "sha1" | "sha1_160" => weak(Integrity, "sha1"),
        "prfmd5" => weak(Prf, "md5"),
        "prfsha1" => weak(Prf, "sha1"),
        "modp768" => weak(KeyExchange, "modp768"),
        "modp1024" => weak(KeyExchange, "modp1024"),
        "modp1536" => weak(KeyExchange, "modp1536"),
        "sha256" | "sha2_256" | "sha256_96" | "sha2_256_96" | "sha384" | "sha2_384" | "sha512"
        | "sha2_512" | "aesxcbc" | "aescmac" => strong(Integrity),
        "prfsha256" | "prfsha384" | "prfsha512" | "prfaesxcbc" | "prfaescmac" => strong(Prf),
        "modp2048" | "modp3072" | "modp4096" | "modp6144" | "modp8192" | "ecp224" | "ecp256"
        | "ecp384" | "ecp521" | "ecp224bp" | "ecp256bp" | "ecp384bp" | "ecp512bp"
        | "curve25519" | "x25519" | "curve448" | "x448" => strong(KeyExchange),
        "esn" | "noesn" => strong(Esn),
        "chacha20poly1305" => strong(Aead),
        _ => {
            let (cipher, mode) = ["aes", "camellia"]
                .iter()
                .find_map(|c| Some((*c, keyword.strip_prefix(c)?)))?;
            let (bits, mode) = ["128", "192", "256", ""]
                .iter()
                .find_map(|b| Some((*b, mode.strip_prefix(b)?)))?;
            let icv = |m: &str, modes: &[&str]| {
                modes.iter().any(|name| {
                    m.strip_prefix(name)
                        .is_some_and(|icv| ["8", "12", "16", "64", "96", "128"].contains(&icv))
                })
            };
            match mode {
                "" => strong(Encryption),
                "ctr" if !bits.is_empty() => strong(Encryption),
                m if cipher == "aes" && !bits.is_empty() && icv(m, &["gcm", "ccm"]) => strong(Aead),
                m if cipher == "camellia" && !bits.is_empty() && icv(m, &["ccm"]) => strong(Aead),
                _ => None,
            }
        }
    }
}

/// Whether a proposal is for the IKE SA or for ESP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalFor {
    Ike,
    Esp,
}

/// One strongSwan proposal, `enc-integ-dh` (e.g. `aes256-sha1-modp1024`), its keywords
/// sorted by kind, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Ciphers, classic or AEAD (never both).
    pub encryption: Vec<String>,
    pub aead: bool,
    pub integrity: Vec<String>,
    pub prf: Vec<String>,
    pub key_exchange: Vec<String>,
    pub esn: Vec<String>,
    /// The weak algorithms among them, as [`WEAK_ALGORITHMS`] names them, each once.
    pub weak: Vec<&'static str>,
}

/// Why a text is not a usable proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposalError {
    Empty,
    /// A keyword vpn-ctl does not know.
    Unknown(String),
    /// A keyword of a kind that this proposal cannot have (a PRF in ESP, ESN in IKE).
    Misplaced(String, AlgorithmKind),
    /// A kind the proposal needs is missing.
    Missing(AlgorithmKind),
    /// AEAD and classic ciphers in one proposal.
    Mixed {
        aead: String,
        classic: String,
    },
}

impl Proposal {
    pub fn parse(text: &str, kind: ProposalFor) -> Result<Proposal, ProposalError> {
        use AlgorithmKind::*;
        if text.trim().is_empty() {
            return Err(ProposalError::Empty);
        }
        let mut p = Proposal {
            encryption: Vec::new(),
            aead: false,
            integrity: Vec::new(),
            prf: Vec::new(),
            key_exchange: Vec::new(),
            esn: Vec::new(),
            weak: Vec::new(),
        };
        let mut classic: Option<String> = None;
        let mut aead: Option<String> = None;
        for keyword in text.trim().split('-') {
            let Some((what, weak)) = algorithm(keyword) else {
                return Err(ProposalError::Unknown(keyword.to_string()));
            };
            let list = match (what, kind) {
                (Prf, ProposalFor::Esp) | (Esn, ProposalFor::Ike) => {
                    return Err(ProposalError::Misplaced(keyword.to_string(), what));
                }
                (Encryption, _) => {
                    classic.get_or_insert_with(|| keyword.to_string());
                    &mut p.encryption
                }
                (Aead, _) => {
                    aead.get_or_insert_with(|| keyword.to_string());
                    &mut p.encryption
                }
                (Integrity, _) => &mut p.integrity,
                (Prf, _) => &mut p.prf,
                (KeyExchange, _) => &mut p.key_exchange,
                (Esn, _) => &mut p.esn,
            };
            list.push(keyword.to_string());
            if let Some(name) = weak.filter(|name| !p.weak.contains(name)) {
                p.weak.push(name);
            }
        }
        if let (Some(aead), Some(classic)) = (&aead, &classic) {
            return Err(ProposalError::Mixed {
                aead: aead.clone(),
                classic: classic.clone(),
            });
        }
        p.aead = aead.is_some();
        if p.encryption.is_empty() {
            return Err(ProposalError::Missing(Encryption));
        }
        if !p.aead && p.integrity.is_empty() {
            return Err(ProposalError::Missing(Integrity));
        }
        if kind == ProposalFor::Ike {
            if p.key_exchange.is_empty() {
                return Err(ProposalError::Missing(KeyExchange));
            }
            // With an AEAD there is no integrity algorithm to derive the PRF from.
            if p.aead && p.prf.is_empty() {
                return Err(ProposalError::Missing(Prf));
            }
        }
        Ok(p)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_classified_with_their_weakness() {
        use AlgorithmKind::*;
        for (keyword, expected) in [
            ("aes256", Some((Encryption, None))),
            ("aes", Some((Encryption, None))),
            ("aes128ctr", Some((Encryption, None))),
            ("camellia256", Some((Encryption, None))),
            ("3des", Some((Encryption, Some("3des")))),
            ("aes256gcm16", Some((Aead, None))),
            ("aes128ccm12", Some((Aead, None))),
            ("chacha20poly1305", Some((Aead, None))),
            ("sha1", Some((Integrity, Some("sha1")))),
            ("sha", Some((Integrity, Some("sha1")))),
            ("md5_128", Some((Integrity, Some("md5")))),
            ("sha2_256", Some((Integrity, None))),
            ("prfsha1", Some((Prf, Some("sha1")))),
            ("prfsha256", Some((Prf, None))),
            ("modp1024", Some((KeyExchange, Some("modp1024")))),
            ("modp2048", Some((KeyExchange, None))),
            ("curve25519", Some((KeyExchange, None))),
            ("noesn", Some((Esn, None))),
            // Not strongSwan keywords.
            ("aesgcm16", None),
            ("aes256gcm15", None),
            ("aesctr", None),
            ("aes1280", None),
            ("sha3", None),
            ("null", None),
            ("", None),
        ] {
            assert_eq!(algorithm(keyword), expected, "{keyword}");
        }
    }

    #[test]
    fn the_seeds_proposal_is_weak_in_two_ways() {
        let p = Proposal::parse("aes256-sha1-modp1024", ProposalFor::Ike).unwrap();
        assert_eq!(p.encryption, ["aes256"]);
        assert!(!p.aead);
        assert_eq!(
            (&p.integrity[..], &p.key_exchange[..]),
            (&["sha1".to_string()][..], &["modp1024".to_string()][..])
        );
        assert_eq!(p.weak, ["sha1", "modp1024"]);
        // In ESP the group is PFS.
        let p = Proposal::parse("aes256-sha1-modp1024", ProposalFor::Esp).unwrap();
        assert_eq!(p.key_exchange, ["modp1024"]);
    }

    #[test]
    fn proposals_need_their_parts() {
        use ProposalFor::*;
        let err = |text, kind| Proposal::parse(text, kind).unwrap_err();
        assert_eq!(err(" ", Ike), ProposalError::Empty);
        assert_eq!(
            err("aes256-sha1-dh2", Ike),
            ProposalError::Unknown("dh2".into())
        );
        assert_eq!(
            err("aes256-sha256", Ike),
            ProposalError::Missing(AlgorithmKind::KeyExchange)
        );
        assert_eq!(
            err("aes256-modp2048", Esp),
            ProposalError::Missing(AlgorithmKind::Integrity)
        );
        assert_eq!(
            err("sha256-modp2048", Ike),
            ProposalError::Missing(AlgorithmKind::Encryption)
        );
        assert_eq!(
            err("aes256gcm16-ecp256", Ike),
            ProposalError::Missing(AlgorithmKind::Prf)
        );
        assert_eq!(
            err("aes256gcm16-prfsha256", Esp),
            ProposalError::Misplaced("prfsha256".into(), AlgorithmKind::Prf)
        );
        assert_eq!(
            err("aes256-sha256-ecp256-esn", Ike),
            ProposalError::Misplaced("esn".into(), AlgorithmKind::Esn)
        );
        assert_eq!(
            err("aes128-aes256gcm16-sha256", Esp),
            ProposalError::Mixed {
                aead: "aes256gcm16".into(),
                classic: "aes128".into()
            }
        );
        // ESP needs no group; an AEAD needs no integrity algorithm.
        Proposal::parse("aes256gcm16", Esp).unwrap();
        Proposal::parse("aes128-aes256-sha256-sha384-ecp256-modp2048", Ike).unwrap();
    }

    #[test]
    fn defaults_are_valid_and_strong() {
        for version in IkeVersion::ALL {
            assert_eq!(IkeVersion::from_name(version.name()), Some(version));
            let ike = Proposal::parse(version.default_ike_proposal(), ProposalFor::Ike).unwrap();
            let esp = Proposal::parse(version.default_esp_proposal(), ProposalFor::Esp).unwrap();
            assert!(ike.weak.is_empty() && esp.weak.is_empty(), "{version:?}");
        }
        for aead in [StaticAead::Aes128Gcm16, StaticAead::Aes256Gcm16] {
            assert_eq!(StaticAead::from_name(aead.name()), Some(aead));
            let p = Proposal::parse(aead.name(), ProposalFor::Esp).unwrap();
            assert!(p.aead);
        }
        assert_eq!(IkeVersion::from_name("ikev1"), None);
    }

    /// Every weak keyword maps to a name `allow_weak` accepts, and each name is reachable.
    #[test]
    fn weak_names_are_the_allow_weak_list() {
        for name in WEAK_ALGORITHMS {
            assert_eq!(algorithm(name).and_then(|(_, weak)| weak), Some(*name));
        }
    }

    #[test]
    fn gateways_and_identities_display_as_written() {
        assert_eq!(
            Gateway::Name("right.domain.com".into()).to_string(),
            "right.domain.com"
        );
        assert_eq!(
            Gateway::Address("2001:db8::1".parse().unwrap()).to_string(),
            "2001:db8::1"
        );
        assert_eq!(
            Identity::Fqdn("left.domain.com".into()).to_string(),
            "left.domain.com"
        );
        assert_eq!(
            Identity::Address("192.0.2.1".parse().unwrap()).to_string(),
            "192.0.2.1"
        );
        assert_eq!(
            format!("{:?}", SecretBytes::new(b"VPNPassword".to_vec())),
            "SecretBytes(<11 bytes redacted>)"
        );
    }
}
