//! The XFRM netlink family (`NETLINK_XFRM`, what `ip xfrm` opens) on vpn-ctl's one netlink
//! transport ([`crate::netlink`]): capped acknowledgements so a refused request's keys are not
//! echoed back, the kernel's reason in its errors, SA keys scrubbed from every buffer.

use netlink_packet_xfrm::XfrmMessage;
use netlink_sys::protocols::NETLINK_XFRM;

pub use crate::netlink::{KernelError, errno};

/// A `NETLINK_XFRM` socket in the network namespace of the thread that opened it.
pub type XfrmSocket = crate::netlink::Transport<XfrmMessage>;

impl crate::netlink::Message for XfrmMessage {
    const PROTOCOL: isize = NETLINK_XFRM;
    const NAME: &'static str = "NETLINK_XFRM";
    const NEEDS: &'static str = "CONFIG_XFRM_USER (module xfrm_user)";

    fn scrub(&mut self) {
        super::sa::scrub(self);
    }

    fn kind(&self) -> String {
        format!("XFRM message type {}", self.message_type())
    }
}
