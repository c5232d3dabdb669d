//! Security policies: `ip xfrm policy add`, `ip xfrm policy update`, `ip xfrm policy del`,
//! `ip xfrm policy show`.
//!
//! vpn-ctl installs policies with a plain selector (source and destination subnet, any
//! protocol and port), action allow, the priority `ip xfrm policy add` gives (0), and one
//! template: ESP in tunnel mode between the two gateways with the site's reqid. The kernel
//! keeps one policy per direction and selector (and mark, interface id and type, which
//! vpn-ctl leaves unset).

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_xfrm::{
    IPPROTO_ESP, UserTemplate, XFRM_MODE_TUNNEL, XFRM_POLICY_ALLOW, XFRM_POLICY_FWD,
    XFRM_POLICY_IN, XFRM_POLICY_OUT, XFRM_POLICY_TYPE_MAIN, XfrmAttrs, XfrmMessage,
    policy::{DelGetMessage, ModifyMessage},
};
use serde::Serialize;

use super::{netlink::XfrmSocket, sa::ip};

/// A policy's direction (`dir out|in|fwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    /// Packets this router sends or forwards out: they are encrypted.
    Out,
    /// Packets for this router itself: they must have arrived encrypted.
    In,
    /// Packets this router forwards: they must have arrived encrypted.
    Fwd,
}

impl Dir {
    pub const ALL: [Dir; 3] = [Dir::Out, Dir::In, Dir::Fwd];

    fn kernel(self) -> u8 {
        match self {
            Dir::Out => XFRM_POLICY_OUT,
            Dir::In => XFRM_POLICY_IN,
            Dir::Fwd => XFRM_POLICY_FWD,
        }
    }

    fn from_kernel(dir: u8) -> Option<Dir> {
        match dir {
            XFRM_POLICY_OUT => Some(Dir::Out),
            XFRM_POLICY_IN => Some(Dir::In),
            XFRM_POLICY_FWD => Some(Dir::Fwd),
            _ => None, // per-socket policies
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dir::Out => "out",
            Dir::In => "in",
            Dir::Fwd => "fwd",
        }
    }
}

impl std::fmt::Display for Dir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy template (`tmpl src S dst D proto esp reqid R mode tunnel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Template {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub reqid: u32,
    /// `proto esp`.
    pub esp: bool,
    /// `mode tunnel`.
    pub tunnel: bool,
}

impl Template {
    /// The template vpn-ctl writes: ESP in tunnel mode from `src` to `dst`.
    pub fn esp_tunnel(src: IpAddr, dst: IpAddr, reqid: u32) -> Template {
        Template {
            src,
            dst,
            reqid,
            esp: true,
            tunnel: true,
        }
    }
}

/// A policy as vpn-ctl installs it, or as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub dir: Dir,
    /// The selector's source and destination subnets (`src 192.168.2.0/24 dst ...`).
    pub src: IpNet,
    pub dst: IpNet,
    /// The selector names only the two subnets (no protocol, port or interface), and the
    /// policy has no mark, interface id or sub type: the only kind vpn-ctl makes.
    pub plain: bool,
    pub priority: u32,
    /// `action allow` (the alternative is `block`).
    pub allow: bool,
    pub templates: Vec<Template>,
}

impl Policy {
    /// The reqid of the policy's (first) template.
    pub fn reqid(&self) -> Option<u32> {
        self.templates.first().map(|t| t.reqid)
    }

    /// What the kernel tells policies apart by, for the plain policies vpn-ctl makes.
    pub fn key(&self) -> (Dir, IpNet, IpNet) {
        (self.dir, self.src, self.dst)
    }

    /// Whether `installed` has the same action, priority and templates as `self`.
    pub fn same_settings(&self, installed: &Policy) -> bool {
        self.allow == installed.allow
            && self.priority == installed.priority
            && self.templates == installed.templates
    }

    /// "out 192.168.2.0/24 -> 192.168.3.0/24".
    pub fn describe(&self) -> String {
        format!("{} {} -> {}", self.dir, self.src, self.dst)
    }
}

/// `ip xfrm policy add src L dst R dir DIR tmpl src S dst D proto esp reqid N mode tunnel`
/// (`XFRM_MSG_NEWPOLICY`), or with `update` `ip xfrm policy update ...`
/// (`XFRM_MSG_UPDPOLICY`, which replaces the policy with the same selector and direction):
/// an `xfrm_userpolicy_info` (lifetimes unlimited) and `XFRMA_TMPL`.
pub fn add_message(policy: &Policy, update: bool) -> XfrmMessage {
    let mut m = ModifyMessage::default();
    let info = &mut m.user_policy_info;
    info.selector
        .source_prefix(&policy.src.addr(), policy.src.prefix_len());
    info.selector
        .destination_prefix(&policy.dst.addr(), policy.dst.prefix_len());
    info.direction = policy.dir.kernel();
    info.priority = policy.priority;
    info.action = if policy.allow { XFRM_POLICY_ALLOW } else { 1 };
    let templates: Vec<UserTemplate> = policy
        .templates
        .iter()
        .map(|t| {
            let mut tmpl = UserTemplate::default();
            tmpl.source(&t.src);
            tmpl.destination(&t.dst);
            tmpl.protocol(if t.esp { IPPROTO_ESP } else { 0 });
            tmpl.mode(if t.tunnel { XFRM_MODE_TUNNEL } else { 0 });
            tmpl.reqid(t.reqid);
            tmpl
        })
        .collect();
    if !templates.is_empty() {
        m.nlas.push(XfrmAttrs::Template(templates));
    }
    if update {
        XfrmMessage::UpdatePolicy(m)
    } else {
        XfrmMessage::AddPolicy(m)
    }
}

/// `ip xfrm policy del src L dst R dir DIR`: `XFRM_MSG_DELPOLICY` with an
/// `xfrm_userpolicy_id` naming the selector and direction.
pub fn delete_message(policy: &Policy) -> XfrmMessage {
    let mut m = DelGetMessage::default();
    m.user_policy_id
        .selector
        .source_prefix(&policy.src.addr(), policy.src.prefix_len());
    m.user_policy_id
        .selector
        .destination_prefix(&policy.dst.addr(), policy.dst.prefix_len());
    m.user_policy_id.direction = policy.dir.kernel();
    XfrmMessage::DeletePolicy(m)
}

/// `ip xfrm policy show`: `XFRM_MSG_GETPOLICY` with `NLM_F_DUMP`.
pub fn dump_message() -> XfrmMessage {
    XfrmMessage::GetPolicy(DelGetMessage::default())
}

/// The policy in a `XFRM_MSG_NEWPOLICY` message of a dump; `None` for other messages,
/// per-socket policies and selectors of an unknown family.
pub fn from_message(message: &XfrmMessage) -> Option<Policy> {
    let XfrmMessage::AddPolicy(m) = message else {
        return None;
    };
    let info = &m.user_policy_info;
    let dir = Dir::from_kernel(info.direction)?;
    let sel = &info.selector;
    let src = IpNet::new(ip(sel.family, &sel.saddr)?, sel.prefixlen_s).ok()?;
    let dst = IpNet::new(ip(sel.family, &sel.daddr)?, sel.prefixlen_d).ok()?;
    let mut plain = sel.proto == 0
        && sel.sport_mask == 0
        && sel.dport_mask == 0
        && sel.ifindex == 0
        && sel.user == 0;
    let mut templates = Vec::new();
    for nla in &m.nlas {
        match nla {
            XfrmAttrs::Template(tmpls) => {
                for t in tmpls {
                    let (Some(src), Some(dst)) =
                        (ip(t.family, &t.saddr), ip(t.family, &t.id.daddr))
                    else {
                        plain = false; // a template without addresses (transport mode)
                        continue;
                    };
                    templates.push(Template {
                        src,
                        dst,
                        reqid: t.reqid,
                        esp: t.id.proto == IPPROTO_ESP,
                        tunnel: t.mode == XFRM_MODE_TUNNEL,
                    });
                }
            }
            XfrmAttrs::Mark(mark) if mark.value != 0 || mark.mask != 0 => plain = false,
            XfrmAttrs::IfId(id) if *id != 0 => plain = false,
            XfrmAttrs::PolicyType(t) if t.ptype != XFRM_POLICY_TYPE_MAIN => plain = false,
            XfrmAttrs::SecurityContext(_) => plain = false,
            _ => {}
        }
    }
    Some(Policy {
        dir,
        src,
        dst,
        plain,
        priority: info.priority,
        allow: info.action == XFRM_POLICY_ALLOW,
        templates,
    })
}

impl XfrmSocket {
    /// Every global policy in this network namespace (`ip xfrm policy show`).
    pub fn policies(&self) -> anyhow::Result<Vec<Policy>> {
        let messages = self.dump(dump_message()).map_err(|e| {
            e.context("reading the policies failed (ip xfrm policy show; are you root?)")
        })?;
        Ok(messages.iter().filter_map(from_message).collect())
    }

    /// Installs `policy` (`ip xfrm policy add ...`).
    pub fn add_policy(&self, policy: &Policy) -> anyhow::Result<()> {
        self.request_ack(add_message(policy, false)).map_err(|e| {
            let hint = match super::netlink::errno(&e) {
                Some(libc::EEXIST) => {
                    ": a policy for this direction and these subnets exists already"
                }
                Some(libc::EPERM) => ": run vpn-ctl as root",
                _ => "",
            };
            e.context(format!("adding policy {} failed{hint}", policy.describe()))
        })
    }

    /// Replaces the policy with the same direction and selector (`ip xfrm policy update ...`).
    pub fn update_policy(&self, policy: &Policy) -> anyhow::Result<()> {
        self.request_ack(add_message(policy, true))
            .map_err(|e| e.context(format!("updating policy {} failed", policy.describe())))
    }

    /// Removes the policy with `policy`'s direction and selector
    /// (`ip xfrm policy del src L dst R dir DIR`).
    pub fn delete_policy(&self, policy: &Policy) -> anyhow::Result<()> {
        self.request_ack(delete_message(policy))
            .map_err(|e| e.context(format!("deleting policy {} failed", policy.describe())))
    }
}
