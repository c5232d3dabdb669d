//! WireGuard keys: 32 bytes, written as 44 characters of standard base64, the same forms `wg
//! genkey`, `wg pubkey` and `wg genpsk` use, so keys made by either tool work in the other.
//!
//! Private and preshared keys are secrets: their `Debug` is redacted and they are only shown
//! through [`Secret::expose_base64`].

use std::{fmt, str::FromStr};

use wireguard_control::Key;

/// Why a string is not a WireGuard key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidKey;

impl fmt::Display for InvalidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "not a WireGuard key: expected 44 characters of base64 encoding 32 bytes \
             (as printed by `vpn-ctl genkey` or `wg genkey`)",
        )
    }
}

impl std::error::Error for InvalidKey {}

fn parse(s: &str) -> Result<Key, InvalidKey> {
    let s = s.trim();
    if s.len() != 44 {
        return Err(InvalidKey);
    }
    Key::from_base64(s).map_err(|_| InvalidKey)
}

/// A public key: not secret, shown and compared freely.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

/// The encodings of the Curve25519 points of small order (libsodium's blocklist), top bit
/// clear: 0, 1, two points of order 8, p - 1, p, p + 1.
const SMALL_ORDER: [[u8; 32]; 7] = [
    [0; 32],
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ],
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ],
    ff_ending_in(0xec),
    ff_ending_in(0xed),
    ff_ending_in(0xee),
];

/// `first`, then 30 bytes of 0xff, then 0x7f: p - 1, p and p + 1 for 0xec, 0xed, 0xee.
const fn ff_ending_in(first: u8) -> [u8; 32] {
    let mut key = [0xff; 32];
    key[0] = first;
    key[31] = 0x7f;
    key
}

impl PublicKey {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_base64(&self) -> String {
        Key(self.0).to_base64()
    }

    /// Whether this is a point of small order (on Curve25519 or its twist): Diffie-Hellman
    /// with it gives all zeros whatever the private key, which WireGuard refuses, so a peer
    /// with such a key can never complete a handshake. An all-zero key is one of them.
    ///
    /// Compared against libsodium's list of their encodings (`has_small_order` in
    /// x25519_ref10.c), with the top bit ignored as X25519 ignores it: a few comparisons, where
    /// deciding it as the kernel does (X25519 with a clamped scalar gives zero) costs a scalar
    /// multiplication per peer, seconds for 10,000 peers on a router. The list is complete:
    /// the small-order points are 0, 1, -1 and two more, and the only other encodings below
    /// 2^255 are p and p + 1; a test checks the list against the X25519 definition.
    pub fn has_small_order(&self) -> bool {
        let mut key = self.0;
        key[31] &= 0x7f;
        SMALL_ORDER.contains(&key)
    }

    pub(crate) fn to_wg(&self) -> Key {
        Key(self.0)
    }

    pub(crate) fn from_wg(key: &Key) -> PublicKey {
        PublicKey(key.0)
    }
}

impl FromStr for PublicKey {
    type Err = InvalidKey;
    fn from_str(s: &str) -> Result<Self, InvalidKey> {
        parse(s).map(|k| PublicKey(k.0))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

/// 32 secret bytes: a private key or a preshared key. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl Secret {
    /// A new private key (clamped, as `wg genkey` makes them).
    pub fn generate_private() -> Secret {
        Secret(Key::generate_private().0)
    }

    /// A new preshared key (32 random bytes, as `wg genpsk` makes them).
    pub fn generate_preshared() -> Secret {
        Secret(Key::generate_preshared().0)
    }

    /// The public key of this private key (Curve25519), as `wg pubkey` computes it.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(Key(self.0).get_public().0)
    }

    /// Whether all 32 bytes are zero: as a private key that is no key at all (wg(8) shows
    /// it as "(none)"), and as a preshared key the same as none.
    pub fn is_zero(&self) -> bool {
        self.0.iter().fold(0, |any, b| any | b) == 0
    }

    /// The base64 form, for writing a key file or a client config.
    pub fn expose_base64(&self) -> String {
        Key(self.0).to_base64()
    }

    pub(crate) fn to_wg(&self) -> Key {
        Key(self.0)
    }

    pub(crate) fn from_wg(key: &Key) -> Secret {
        Secret(key.0)
    }
}

impl FromStr for Secret {
    type Err = InvalidKey;
    fn from_str(s: &str) -> Result<Self, InvalidKey> {
        parse(s).map(|k| Secret(k.0))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_secret_shows_no_key_material() {
        let secret = Secret::generate_private();
        let debug = format!("{secret:?}");
        assert!(!debug.contains(&secret.expose_base64()));
        assert_eq!(debug, "Secret(<redacted>)");
    }

    #[test]
    fn keys_round_trip_through_base64() {
        let secret = Secret::generate_private();
        let again: Secret = secret.expose_base64().parse().unwrap();
        assert_eq!(again, secret);
        let public = secret.public_key();
        assert_eq!(public.to_base64().parse::<PublicKey>().unwrap(), public);
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "",
            "abc",
            "not base64 at all, but 44 characters long!!",
            // 43 characters: one missing.
            "YAnz6N7eLtwMXw9JOuZUy0ohmrhCoQeZQXbaMFoc6mE",
        ] {
            assert_eq!(bad.parse::<PublicKey>(), Err(InvalidKey), "{bad:?}");
        }
    }

    /// RFC 7748 §6.1: Alice's private key and its public key.
    #[test]
    fn public_key_is_curve25519_of_the_private_key() {
        let private = Secret(
            hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .try_into()
                .unwrap(),
        );
        assert_eq!(
            private.public_key().as_bytes().to_vec(),
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
    }

    /// libsodium's list of small-order encodings (`has_small_order` in x25519_ref10.c), and
    /// the same with the top bit set, which X25519 ignores.
    #[test]
    fn small_order_public_keys_are_recognised_in_every_listed_encoding() {
        let listed = [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ];
        for encoding in listed {
            let mut bytes: [u8; 32] = hex(encoding).try_into().unwrap();
            assert!(PublicKey(bytes).has_small_order(), "{encoding}");
            bytes[31] |= 0x80;
            assert!(
                PublicKey(bytes).has_small_order(),
                "{encoding} with the top bit"
            );
        }
        for _ in 0..100 {
            let key = Secret::generate_private().public_key();
            assert!(!key.has_small_order(), "{key}");
        }
        // RFC 7748 §6.1: Bob's public key.
        let bob = hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        assert!(!PublicKey(bob.try_into().unwrap()).has_small_order());
    }

    /// The list against the definition the kernel uses: X25519 of a clamped scalar and the
    /// point is all zeros exactly for points of small order.
    #[test]
    fn the_small_order_list_agrees_with_x25519() {
        let by_x25519 = |key: [u8; 32]| x25519_dalek::x25519([0x55; 32], key) == [0; 32];
        let mut keys: Vec<[u8; 32]> = SMALL_ORDER.to_vec();
        keys.extend(SMALL_ORDER.iter().map(|k| {
            let mut k = *k;
            k[31] |= 0x80;
            k
        }));
        keys.extend((0..2000).map(|_| *Secret::generate_private().public_key().as_bytes()));
        // Every value from p - 20 to 2^255 - 1 (the non-canonical encodings among them).
        keys.extend((0xd9..=0xffu8).map(ff_ending_in));
        for key in keys {
            assert_eq!(
                PublicKey(key).has_small_order(),
                by_x25519(key),
                "{key:02x?}"
            );
        }
    }

    #[test]
    fn only_the_all_zero_secret_is_zero() {
        assert!(Secret([0; 32]).is_zero());
        let mut almost = [0; 32];
        almost[31] = 1;
        assert!(!Secret(almost).is_zero());
        assert!(!Secret::generate_preshared().is_zero());
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
