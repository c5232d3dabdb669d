//! The one synchronous netlink transport for the families vpn-ctl speaks by hand: XFRM
//! ([`crate::xfrm`], what `ip xfrm` opens) and sock_diag ([`crate::sockets`], what `ss`
//! opens). (Links, addresses and routes go through rtnetlink; WireGuard through its generic
//! netlink family; nftables through nftnl.)
//!
//! One request at a time, answered on the calling thread: each operation is one short round
//! trip, the socket belongs to the network namespace of the thread that opens it, and nothing
//! in between (no connection task, no logging framework) ever sees the messages, which can
//! carry key material. What every exchange gets:
//!
//! - an acknowledged request ([`Transport::request_ack`]) or a dump ([`Transport::dump`]),
//!   the dump retried when the kernel marks it inconsistent (`NLM_F_DUMP_INTR`);
//! - capped acknowledgements (`NETLINK_CAP_ACK`), so a refused request, keys included, is not
//!   echoed back, and extended ones (`NETLINK_EXT_ACK`), so the kernel's reason ("Requested
//!   AEAD algorithm not found") reaches the user in a [`KernelError`] with its errno;
//! - receive buffers sized to each datagram and zeroed when dropped, request buffers zeroed
//!   after sending, and the messages' own secrets scrubbed ([`Message::scrub`]);
//! - a receive timeout, so an answer that never comes is an error, not a hang.

use std::{cell::Cell, fmt, io, marker::PhantomData, os::fd::AsRawFd as _};

use anyhow::{Context as _, anyhow, bail};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
    NlasIterator,
};
use netlink_sys::{Socket, SocketAddr};
use zeroize::Zeroizing;

/// How long to wait for the kernel's answer before giving up.
const RECV_TIMEOUT_SECS: libc::time_t = 5;
/// Dumps the kernel marks inconsistent (`NLM_F_DUMP_INTR`) are retried this often.
const DUMP_ATTEMPTS: usize = 5;
/// `NLMSGERR_ATTR_MSG` (linux/netlink.h): the extended acknowledgement's text.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// The size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;

/// A netlink family's messages, as the transport needs to know them.
pub trait Message: NetlinkSerializable + NetlinkDeserializable + Clone {
    /// `socket(AF_NETLINK, SOCK_RAW, PROTOCOL)`.
    const PROTOCOL: isize;
    /// `NETLINK_XFRM`, for messages.
    const NAME: &'static str;
    /// What the kernel needs to have the family: "CONFIG_XFRM_USER (module xfrm_user)".
    const NEEDS: &'static str;

    /// Zeroes the secrets the message carries (an XFRM SA's keys); nothing for most.
    fn scrub(&mut self) {}

    /// What the message is, without its contents (they may hold a key).
    fn kind(&self) -> String;
}

/// A refusal by the kernel: its errno and, when it gave one, its reason in words.
#[derive(Debug)]
pub struct KernelError {
    pub errno: i32,
    pub reason: Option<String>,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", io::Error::from_raw_os_error(self.errno))?;
        if let Some(reason) = &self.reason {
            write!(f, " (the kernel says: {reason})")?;
        }
        Ok(())
    }
}

impl std::error::Error for KernelError {}

/// The errno of a kernel refusal somewhere in `e`'s chain, if it was one.
pub fn errno(e: &anyhow::Error) -> Option<i32> {
    e.chain()
        .find_map(|c| c.downcast_ref::<KernelError>())
        .map(|k| k.errno)
}

/// A netlink socket of `M`'s family in the network namespace of the thread that opened it.
pub struct Transport<M> {
    socket: Socket,
    /// Sequence number of the next request.
    seq: Cell<u32>,
    family: PhantomData<M>,
}

impl<M: Message> Transport<M> {
    /// Opens the socket (`socket(AF_NETLINK, SOCK_RAW, PROTOCOL)`), bound and connected to
    /// the kernel, with capped and extended acknowledgements and a receive timeout.
    pub fn open() -> anyhow::Result<Self> {
        let name = M::NAME;
        let mut socket = Socket::new(M::PROTOCOL).with_context(|| {
            format!(
                "cannot open a {name} socket (socket(AF_NETLINK, SOCK_RAW, {name})); the \
                 kernel needs {}",
                M::NEEDS
            )
        })?;
        socket
            .bind_auto()
            .with_context(|| format!("cannot bind the {name} socket"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .with_context(|| format!("cannot connect the {name} socket to the kernel"))?;
        socket
            .set_cap_ack(true)
            .with_context(|| format!("cannot set NETLINK_CAP_ACK on the {name} socket"))?;
        // Older kernels lack extended acknowledgements; the errno alone still gets through.
        let _ = socket.set_ext_ack(true);
        set_receive_timeout(&socket, RECV_TIMEOUT_SECS).with_context(|| {
            format!("cannot set a receive timeout (SO_RCVTIMEO) on the {name} socket")
        })?;
        Ok(Self {
            socket,
            seq: Cell::new(1),
            family: PhantomData,
        })
    }

    /// Sends `message` with `NLM_F_REQUEST | NLM_F_ACK` and waits for the acknowledgement.
    /// A refusal comes back as a [`KernelError`].
    pub fn request_ack(&self, message: M) -> anyhow::Result<()> {
        let seq = self.send(message, NLM_F_REQUEST | NLM_F_ACK)?;
        let mut done = false;
        self.receive(seq, |payload, _| match payload {
            NetlinkPayload::Error(e) if e.code.is_none() => {
                done = true;
                Ok(true)
            }
            NetlinkPayload::InnerMessage(_) => Ok(false), // not expected; ignored
            other => Err(unexpected(other)),
        })?;
        if !done {
            bail!("the kernel closed the exchange without acknowledging the request");
        }
        Ok(())
    }

    /// Sends `message` with `NLM_F_REQUEST | NLM_F_DUMP` and returns every object of the
    /// dump, retrying when the kernel marks it inconsistent (the table changed during it).
    pub fn dump(&self, message: M) -> anyhow::Result<Vec<M>> {
        for _ in 0..DUMP_ATTEMPTS {
            let seq = self.send(message.clone(), NLM_F_REQUEST | NLM_F_DUMP)?;
            let mut objects = Vec::new();
            let mut interrupted = false;
            self.receive(seq, |payload, flags| {
                if flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match payload {
                    NetlinkPayload::InnerMessage(m) => {
                        objects.push(m);
                        Ok(false)
                    }
                    NetlinkPayload::Done(done) if done.code < 0 => {
                        Err(anyhow::Error::new(KernelError {
                            errno: -done.code,
                            reason: None,
                        })
                        .context("the kernel ended the dump with an error (NLMSG_DONE)"))
                    }
                    NetlinkPayload::Done(_) => Ok(true),
                    // An acknowledgement nobody asked for.
                    NetlinkPayload::Error(e) if e.code.is_none() => Ok(false),
                    other => Err(unexpected(other)),
                }
            })?;
            if !interrupted {
                return Ok(objects);
            }
            for m in &mut objects {
                m.scrub();
            }
        }
        Err(anyhow!(
            "the kernel marked the dump inconsistent (NLM_F_DUMP_INTR: the table changed \
             during it) {DUMP_ATTEMPTS} times in a row; retry"
        ))
    }

    fn send(&self, message: M, flags: u16) -> anyhow::Result<u32> {
        let seq = self.seq.get();
        self.seq.set(seq.wrapping_add(1));
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        let mut request = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        request.finalize();
        let mut out = Zeroizing::new(vec![0; request.buffer_len()]);
        request.serialize(&mut out);
        if let NetlinkPayload::InnerMessage(m) = &mut request.payload {
            m.scrub();
        }
        let sent = self
            .socket
            .send(&out, 0)
            .context("cannot send the request to the kernel")?;
        if sent != out.len() {
            bail!(
                "the kernel took {sent} of the {} bytes of the request",
                out.len()
            );
        }
        Ok(seq)
    }

    /// Reads the answers to request `seq`, handing each payload and its header flags to
    /// `handle`, until it returns true (the exchange is complete). A refusal by the kernel
    /// ends the exchange with a [`KernelError`].
    fn receive(
        &self,
        seq: u32,
        mut handle: impl FnMut(NetlinkPayload<M>, u16) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        loop {
            let buf = self.recv_datagram()?;
            let mut offset = 0;
            while offset < buf.len() {
                let message =
                    NetlinkMessage::<M>::deserialize(&buf[offset..]).with_context(|| {
                        format!(
                            "cannot parse a {} reply message at offset {offset} of a {} byte \
                             datagram (the netlink crate does not understand what this kernel \
                             sent)",
                            M::NAME,
                            buf.len()
                        )
                    })?;
                let msg_len = message.header.length as usize;
                if msg_len == 0 {
                    bail!("the kernel sent a netlink message of length 0");
                }
                offset += (msg_len + 3) & !3; // NLMSG_ALIGN
                if message.header.sequence_number != seq {
                    continue; // not an answer to this request
                }
                let flags = message.header.flags;
                match message.payload {
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        return Err(KernelError {
                            errno: e.raw_code().abs(),
                            reason: extack_message(&e.header, flags),
                        }
                        .into());
                    }
                    NetlinkPayload::Overrun(_) => {
                        bail!("the kernel reported a netlink overrun (NLMSG_OVERRUN); retry")
                    }
                    NetlinkPayload::Noop => {}
                    payload => {
                        if handle(payload, flags)? {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// One datagram, whatever its size, in a buffer zeroed when dropped (SA dumps carry keys).
    fn recv_datagram(&self) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        loop {
            let mut probe = [0u8; 0];
            let len = match self
                .socket
                .recv(&mut &mut probe[..], libc::MSG_PEEK | libc::MSG_TRUNC)
            {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(e).context(format!(
                        "no answer from the kernel within {RECV_TIMEOUT_SECS} s"
                    ));
                }
                Err(e) => return Err(e).context("cannot receive the kernel's answer"),
            };
            let mut buf = Zeroizing::new(vec![0u8; len]);
            match self.socket.recv(&mut &mut buf[..], 0) {
                Ok(n) if n == len => return Ok(buf),
                Ok(n) => bail!("the kernel's answer shrank from {len} to {n} bytes"),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("cannot receive the kernel's answer"),
            }
        }
    }
}

/// `setsockopt(SO_RCVTIMEO)`: a netlink request whose answer never comes fails after `secs`
/// instead of blocking forever.
fn set_receive_timeout(socket: &Socket, secs: libc::time_t) -> io::Result<()> {
    let timeout = libc::timeval {
        tv_sec: secs,
        tv_usec: 0,
    };
    // SAFETY: a valid fd, and a pointer to a timeval of the given size that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A payload that has no place in the exchange, described without its contents.
fn unexpected<M: Message>(payload: NetlinkPayload<M>) -> anyhow::Error {
    let what = match payload {
        NetlinkPayload::Done(_) => "an end of dump (NLMSG_DONE)".to_string(),
        NetlinkPayload::Error(_) => "an acknowledgement".to_string(),
        NetlinkPayload::Noop => "NLMSG_NOOP".to_string(),
        NetlinkPayload::Overrun(_) => "NLMSG_OVERRUN".to_string(),
        NetlinkPayload::InnerMessage(m) => m.kind(),
        _ => "an unknown netlink message".to_string(),
    };
    anyhow!("the kernel answered with {what}, which does not fit the request")
}

/// The text of an extended acknowledgement (`NLMSGERR_ATTR_MSG`), if the kernel sent one.
/// `payload` is what follows the error code: the request's header (the request itself when
/// the acknowledgement is not capped), then the attributes.
pub(crate) fn extack_message(payload: &[u8], flags: u16) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < NLMSG_HDRLEN {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        let len = u32::from_ne_bytes(payload[..4].try_into().ok()?) as usize;
        (len + 3) & !3
    };
    let attrs = payload.get(echoed..)?;
    NlasIterator::new(attrs)
        .filter_map(Result::ok)
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            let text = nla.value();
            let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
            String::from_utf8_lossy(&text[..end]).into_owned()
        })
}
