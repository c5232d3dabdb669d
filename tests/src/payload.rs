//! VPN message payloads as a socket sends them (the bytes after the UDP header, or after the
//! IP header for ESP), valid and malformed. One set, shared by the XDP test matrix, the
//! namespace tests, the benchmark and the demo.

/// `len` filler bytes that are never all zero and never look like a header on their own.
pub fn filler(len: usize) -> Vec<u8> {
    (0..len).map(|i| 0xa5 ^ (i as u8).wrapping_mul(7)).collect()
}

/// A WireGuard message of `len` bytes: type `msg_type` as a little-endian u32 (three zero
/// reserved bytes), then filler. Shorter than 4 bytes, it is the start of such a message.
pub fn wg(msg_type: u8, len: usize) -> Vec<u8> {
    wg_reserved(msg_type, [0, 0, 0], len)
}

/// A WireGuard message with the three reserved bytes after the type set to `reserved`.
pub fn wg_reserved(msg_type: u8, reserved: [u8; 3], len: usize) -> Vec<u8> {
    let mut p = filler(len.max(4));
    p[0] = msg_type;
    p[1..4].copy_from_slice(&reserved);
    p.truncate(len);
    p
}

/// An IKE message of `len` bytes: the 28-byte header (RFC 2408 §3.1 / RFC 7296 §3.1) with
/// major version `version_major`, the exchange type, a non-zero initiator SPI, a zero or
/// non-zero responder SPI, and a length field equal to `len`; then filler. Shorter than 28
/// bytes, it is the start of such a header (still claiming `len` bytes).
pub fn ike(version_major: u8, exchange_type: u8, responder_spi_zero: bool, len: usize) -> Vec<u8> {
    let mut m = filler(len.max(28));
    m[0..8].copy_from_slice(&[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]);
    if responder_spi_zero {
        m[8..16].fill(0);
    } else {
        m[8..16].copy_from_slice(&[0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28]);
    }
    // Next payload: SA (IKEv2 33, IKEv1 1).
    m[16] = if version_major == 2 { 33 } else { 1 };
    m[17] = version_major << 4;
    m[18] = exchange_type;
    // Flags: IKEv2 initiator bit.
    m[19] = if version_major == 2 { 0x08 } else { 0 };
    m[20..24].fill(0);
    m[24..28].copy_from_slice(&(len as u32).to_be_bytes());
    m.truncate(len);
    m
}

/// `message` with its IKE header's length field replaced by `length`.
pub fn with_ike_length(mut message: Vec<u8>, length: u32) -> Vec<u8> {
    message[24..28].copy_from_slice(&length.to_be_bytes());
    message
}

/// `message` with its IKE header's version byte (major << 4 | minor) replaced.
pub fn with_ike_version_byte(mut message: Vec<u8>, version: u8) -> Vec<u8> {
    message[17] = version;
    message
}

/// An IKE message on the NAT-T port: the four-byte non-ESP marker, then `ike`.
pub fn natt_ike(ike: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 4];
    p.extend_from_slice(ike);
    p
}

/// A NAT-T keepalive: one 0xFF byte.
pub fn natt_keepalive() -> Vec<u8> {
    vec![0xff]
}

/// An ESP packet of `len` bytes (RFC 4303): SPI, sequence number 1, then filler. Shorter
/// than 8 bytes, it is the start of such a header.
pub fn esp(spi: u32, len: usize) -> Vec<u8> {
    let mut p = filler(len.max(8));
    p[0..4].copy_from_slice(&spi.to_be_bytes());
    p[4..8].copy_from_slice(&1u32.to_be_bytes());
    p.truncate(len);
    p
}
