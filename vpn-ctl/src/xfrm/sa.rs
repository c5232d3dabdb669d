//! Security associations (SAs, "states"): `ip xfrm state add`, `ip xfrm state del`,
//! `ip -s xfrm state show`.
//!
//! vpn-ctl installs one kind of SA: ESP in tunnel mode with the AEAD `rfc4106(gcm(aes))` and a
//! 128-bit ICV, tagged with a reqid (see [`super::REQID_FIRST`]). The messages are byte for
//! byte what iproute2 sends for the same command (the unit tests compare them with captures).
//! Reading covers any SA, so `status` can show the ones charon negotiated too.

use std::{net::IpAddr, time::Duration};

use netlink_packet_xfrm::{
    AF_INET, AF_INET6, Address, AlgAead, IPPROTO_ESP, XFRM_ALG_AEAD_NAME_LEN, XFRM_MODE_TUNNEL,
    XfrmAttrs, XfrmMessage,
    state::{DelGetMessage, GetDumpMessage, ModifyMessage},
};
use serde::Serialize;
use zeroize::Zeroize as _;

use super::netlink::XfrmSocket;
use crate::config::ipsec::{SecretBytes, StaticAead};

/// An ESP SA as vpn-ctl installs it, or as the kernel reports it.
#[derive(Debug, Clone)]
pub struct Sa {
    /// The tunnel's outer source and destination (`ip xfrm state ... src S dst D`).
    pub src: IpAddr,
    pub dst: IpAddr,
    pub spi: u32,
    pub reqid: u32,
    /// Tunnel mode (`mode tunnel`); false for every other mode.
    pub tunnel: bool,
    /// The AEAD (`aead NAME KEY ICV-BITS`); `None` when the SA uses separate encryption and
    /// authentication algorithms (as IKE-negotiated SAs often do) or none.
    pub aead: Option<Aead>,
    /// What the SA has carried; zero in a desired SA.
    pub counters: SaCounters,
}

/// An AEAD and its key (`ip xfrm state ... aead 'rfc4106(gcm(aes))' 0xKEY 128`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aead {
    pub name: String,
    /// Key material including the 4-byte salt; redacted in `Debug`, zeroed on drop.
    pub key: SecretBytes,
    pub icv_bits: u32,
}

impl Aead {
    /// The AEAD of static keying, `rfc4106(gcm(aes))` with a 128-bit ICV, with its key (AES-128
    /// or AES-256 by the key's length).
    pub fn static_keying(key: &SecretBytes) -> Aead {
        Aead {
            name: StaticAead::KERNEL_NAME.to_string(),
            key: key.clone(),
            icv_bits: StaticAead::ICV_BITS,
        }
    }
}

/// An SA's lifetime counters (`ip -s xfrm state`: "lifetime current:").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SaCounters {
    pub bytes: u64,
    pub packets: u64,
    /// When the SA was added, in seconds since the UNIX epoch ("add 2026-...").
    pub add_time: u64,
    /// When it first carried a packet, in seconds since the UNIX epoch; 0 when never.
    pub use_time: u64,
}

impl SaCounters {
    /// How long ago the SA was added, measured against `now` (seconds since the epoch).
    pub fn age(&self, now: u64) -> Duration {
        Duration::from_secs(now.saturating_sub(self.add_time))
    }
}

impl Sa {
    /// Which settings of `self` (desired) differ from `installed`, in words; empty when the
    /// installed SA is what vpn-ctl would install. The counters do not count.
    pub fn differences(&self, installed: &Sa) -> Vec<&'static str> {
        let mut diffs = Vec::new();
        if self.src != installed.src {
            diffs.push("source address");
        }
        if self.dst != installed.dst {
            diffs.push("destination address");
        }
        if self.spi != installed.spi {
            diffs.push("spi");
        }
        if self.reqid != installed.reqid {
            diffs.push("reqid");
        }
        if self.tunnel != installed.tunnel {
            diffs.push("mode");
        }
        match (&self.aead, &installed.aead) {
            (Some(a), Some(b)) if a.name == b.name && a.icv_bits == b.icv_bits => {
                if a.key != b.key {
                    diffs.push("key");
                }
            }
            (None, None) => {}
            _ => diffs.push("algorithm"),
        }
        diffs
    }
}

/// `ip xfrm state add src S dst D proto esp spi SPI reqid R mode tunnel
/// aead 'rfc4106(gcm(aes))' 0xKEY 128`: `XFRM_MSG_NEWSA` with an `xfrm_usersa_info` (no
/// selector, lifetimes unlimited, replay window 0) and `XFRMA_ALG_AEAD`.
///
/// The replay window stays 0, as with `ip xfrm state add`: with static keys the peer's
/// sequence numbers start again at 1 whenever it re-creates its SA, and a receiver that
/// remembered the old ones would drop everything (RFC 4303 §3.3.3 leaves anti-replay off for
/// manually keyed SAs).
pub fn add_message(sa: &Sa) -> XfrmMessage {
    let mut m = ModifyMessage::default();
    m.user_sa_info.source(&sa.src);
    m.user_sa_info.destination(&sa.dst);
    m.user_sa_info.family = family(sa.src);
    m.user_sa_info.id.proto = IPPROTO_ESP;
    m.user_sa_info.id.spi = sa.spi;
    m.user_sa_info.reqid = sa.reqid;
    m.user_sa_info.mode = if sa.tunnel { XFRM_MODE_TUNNEL } else { 0 };
    if let Some(aead) = &sa.aead {
        let mut name = [0u8; XFRM_ALG_AEAD_NAME_LEN];
        let len = aead.name.len().min(XFRM_ALG_AEAD_NAME_LEN - 1);
        name[..len].copy_from_slice(&aead.name.as_bytes()[..len]);
        let key = aead.key.expose();
        m.nlas.push(XfrmAttrs::EncryptionAlgAead(AlgAead {
            alg_name: name,
            alg_key_len: (key.len() * 8) as u32,
            alg_icv_len: aead.icv_bits,
            alg_key: key.to_vec(),
        }));
    }
    XfrmMessage::AddSa(m)
}

/// `ip xfrm state del src S dst D proto esp spi SPI`: `XFRM_MSG_DELSA` with an
/// `xfrm_usersa_id` and `XFRMA_SRCADDR`.
pub fn delete_message(src: IpAddr, dst: IpAddr, spi: u32) -> XfrmMessage {
    let mut m = DelGetMessage::default();
    m.user_sa_id.destination(&dst);
    m.user_sa_id.family = family(dst);
    m.user_sa_id.spi = spi;
    m.user_sa_id.proto = IPPROTO_ESP;
    m.nlas.push(XfrmAttrs::SrcAddr(Address::from_ip(&src)));
    XfrmMessage::DeleteSa(m)
}

/// `ip xfrm state show`: `XFRM_MSG_GETSA` with `NLM_F_DUMP` and no filter.
pub fn dump_message() -> XfrmMessage {
    XfrmMessage::GetDumpSa(GetDumpMessage::default())
}

/// The ESP SA in a `XFRM_MSG_NEWSA` message of a dump; `None` for other messages and for
/// SAs of other protocols (AH, IPComp) or families. Takes the key out of the message, which
/// is left without it.
pub fn from_message(message: &mut XfrmMessage) -> Option<Sa> {
    let XfrmMessage::AddSa(m) = message else {
        return None;
    };
    let info = m.user_sa_info;
    if info.id.proto != IPPROTO_ESP {
        return None;
    }
    let src = ip(info.family, &info.saddr)?;
    let dst = ip(info.family, &info.id.daddr)?;
    let mut aead = None;
    let mut other_algorithm = false;
    for nla in &mut m.nlas {
        match nla {
            XfrmAttrs::EncryptionAlgAead(a) => {
                let end = a
                    .alg_name
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(a.alg_name.len());
                aead = Some(Aead {
                    name: String::from_utf8_lossy(&a.alg_name[..end]).into_owned(),
                    key: SecretBytes::new(std::mem::take(&mut a.alg_key)),
                    icv_bits: a.alg_icv_len,
                });
            }
            XfrmAttrs::EncryptionAlg(_)
            | XfrmAttrs::AuthenticationAlg(_)
            | XfrmAttrs::AuthenticationAlgTrunc(_) => other_algorithm = true,
            _ => {}
        }
    }
    if other_algorithm {
        aead = None;
    }
    scrub(message);
    Some(Sa {
        src,
        dst,
        spi: info.id.spi,
        reqid: info.reqid,
        tunnel: info.mode == XFRM_MODE_TUNNEL,
        aead,
        counters: SaCounters {
            bytes: info.lifetime_cur.bytes,
            packets: info.lifetime_cur.packets,
            add_time: info.lifetime_cur.add_time,
            use_time: info.lifetime_cur.use_time,
        },
    })
}

/// Zeroes every key in `message` (after it was sent, or once it has been read).
pub fn scrub(message: &mut XfrmMessage) {
    let nlas = match message {
        XfrmMessage::AddSa(m) | XfrmMessage::UpdateSa(m) => &mut m.nlas,
        _ => return,
    };
    for nla in nlas {
        match nla {
            XfrmAttrs::EncryptionAlgAead(a) => a.alg_key.zeroize(),
            XfrmAttrs::EncryptionAlg(a) | XfrmAttrs::AuthenticationAlg(a) => a.alg_key.zeroize(),
            XfrmAttrs::AuthenticationAlgTrunc(a) => a.alg_key.zeroize(),
            _ => {}
        }
    }
}

/// The kernel's address family number for `addr`.
pub(crate) fn family(addr: IpAddr) -> u16 {
    match addr {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

/// An `xfrm_address_t` read according to `family`.
pub(crate) fn ip(family: u16, addr: &Address) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(addr.to_ipv4())),
        AF_INET6 => Some(IpAddr::V6(addr.to_ipv6())),
        _ => None,
    }
}

impl XfrmSocket {
    /// Every ESP SA in this network namespace, with its counters (`ip -s xfrm state show`).
    pub fn sas(&self) -> anyhow::Result<Vec<Sa>> {
        let messages = self
            .dump(dump_message())
            .map_err(|e| e.context("reading the SAs failed (ip xfrm state show; are you root?)"))?;
        Ok(messages
            .into_iter()
            .filter_map(|mut m| {
                let sa = from_message(&mut m);
                scrub(&mut m);
                sa
            })
            .collect())
    }

    /// Installs `sa` (`ip xfrm state add ...`).
    pub fn add_sa(&self, sa: &Sa) -> anyhow::Result<()> {
        self.request_ack(add_message(sa)).map_err(|e| {
            let hint = match super::netlink::errno(&e) {
                Some(libc::EEXIST) => {
                    "an SA with this spi and destination exists already".to_string()
                }
                Some(libc::ENOSYS) => format!(
                    "the kernel cannot do {} in ESP (it needs ESP, modules esp4/esp6, and the \
                     crypto modules gcm, aes and drbg, which ESP needs for its IVs)",
                    sa.aead
                        .as_ref()
                        .map_or("the algorithm", |a| a.name.as_str())
                ),
                Some(libc::EPROTONOSUPPORT) => {
                    "the kernel has no ESP (CONFIG_INET_ESP / CONFIG_INET6_ESP, modules esp4 \
                     and esp6)"
                        .to_string()
                }
                Some(libc::EINVAL) => {
                    "the kernel refused the SA's settings (wrong key length for the algorithm?)"
                        .to_string()
                }
                Some(libc::EPERM) => "run vpn-ctl as root".to_string(),
                _ => "see the kernel's reason above".to_string(),
            };
            e.context(format!(
                "adding SA spi {:#x} {} -> {} failed: {hint}",
                sa.spi, sa.src, sa.dst
            ))
        })
    }

    /// Removes an SA (`ip xfrm state del src S dst D proto esp spi SPI`).
    pub fn delete_sa(&self, src: IpAddr, dst: IpAddr, spi: u32) -> anyhow::Result<()> {
        self.request_ack(delete_message(src, dst, spi))
            .map_err(|e| e.context(format!("deleting SA spi {spi:#x} {src} -> {dst} failed")))
    }
}
