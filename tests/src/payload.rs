//! VPN message payloads (UDP payloads, as a socket sends them), valid and malformed.

/// A WireGuard message: the type as a little-endian u32, then zeros up to `len` bytes.
/// Valid shapes: (1, 148), (2, 92), (3, 64), (4, 32 + 16n).
pub fn wireguard(msg_type: u8, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len.max(4)];
    p[0] = msg_type;
    p.truncate(len);
    p
}

/// An IKE message of `len` bytes (at least the 28-byte header): initiator SPI set, responder
/// SPI zero when `initial`, the version's major number, the exchange type, and the length
/// field equal to `len`.
pub fn ike(major: u8, exchange: u8, initial: bool, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len.max(28)];
    p[..8].copy_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
    if !initial {
        p[8..16].copy_from_slice(&[0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01]);
    }
    p[16] = 1; // next payload: SA
    p[17] = major << 4;
    p[18] = exchange;
    p[24..28].copy_from_slice(&(len as u32).to_be_bytes());
    p.truncate(len);
    p
}

/// An IKE message on the NAT-T port: the four-byte non-ESP marker, then the message.
pub fn natt_ike(major: u8, exchange: u8, initial: bool, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; 4];
    p.extend(ike(major, exchange, initial, len));
    p
}

/// A NAT-T keepalive: one 0xFF byte.
pub fn natt_keepalive() -> Vec<u8> {
    vec![0xff]
}

/// ESP (or ESP-in-UDP): SPI, sequence number, then `body` bytes.
pub fn esp(spi: u32, body: usize) -> Vec<u8> {
    let mut p = spi.to_be_bytes().to_vec();
    p.extend_from_slice(&1u32.to_be_bytes());
    p.resize(8 + body, 0xab);
    p
}
