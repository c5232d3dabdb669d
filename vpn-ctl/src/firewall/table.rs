//! vpn-ctl's own nftables table, written over netlink with libnftnl (Mullvad's `nftnl`).
//!
//! ```text
//! table inet vpn_ctl {
//!     chain input       { type filter hook input priority filter - 1; policy accept; ... }
//!     chain forward     { type filter hook forward priority filter - 1; policy accept; ... }
//!     chain postrouting { type nat hook postrouting priority srcnat - 1; policy accept; ... }
//! }
//! ```
//!
//! The table is replaced in one netlink transaction (`nft -f` with `table inet vpn_ctl;
//! delete table inet vpn_ctl; table inet vpn_ctl { ... }`), so there is no moment without
//! the rules, and `down` deletes exactly this table (`nft delete table inet vpn_ctl`).

use std::{
    ffi::{CStr, CString},
    net::IpAddr,
};

use anyhow::Context as _;
use ipnet::IpNet;
use nftnl::{
    Batch, Chain, ChainType, FinalizedBatch, Hook as NftHook, MsgType, Policy, ProtoFamily, Rule,
    Table,
    expr::{Bitwise, Cmp, CmpOp, InterfaceName, Meta},
    nft_expr,
};

use super::needs::{Action, Hook, Match, Need};

/// The table's name (`inet` family, so one table serves IPv4 and IPv6).
pub const TABLE: &str = "vpn_ctl";
const TABLE_C: &CStr = c"vpn_ctl";

/// Chain name, hook, type and priority: just before the usual filter (0) and srcnat (100)
/// priorities, so vpn-ctl's counters see packets first.
const CHAINS: [(Hook, &CStr, NftHook, ChainType, i32); 3] = [
    (Hook::Input, c"input", NftHook::In, ChainType::Filter, -1),
    (
        Hook::Forward,
        c"forward",
        NftHook::Forward,
        ChainType::Filter,
        -1,
    ),
    (
        Hook::Postrouting,
        c"postrouting",
        NftHook::PostRouting,
        ChainType::Nat,
        99,
    ),
];

/// Replaces the table with one holding `needs`, atomically.
///
/// `nft -f -` with `table inet vpn_ctl; delete table inet vpn_ctl; table inet vpn_ctl {...}`
pub fn install(needs: &[Need]) -> anyhow::Result<()> {
    let table = Table::new(TABLE_C, ProtoFamily::Inet);
    let mut batch = Batch::new();
    // Add (a no-op when it exists), delete, add: the replace works whether or not the table
    // is there, in one transaction.
    batch.add(&table, MsgType::Add);
    batch.add(&table, MsgType::Del);
    batch.add(&table, MsgType::Add);
    for (hook, name, nft_hook, kind, priority) in CHAINS {
        let mut chain = Chain::new(name, &table);
        chain.set_hook(nft_hook, priority);
        chain.set_type(kind);
        chain.set_policy(Policy::Accept);
        batch.add(&chain, MsgType::Add);
        for need in needs.iter().filter(|n| n.hook == hook) {
            let rule = rule(&chain, need)
                .with_context(|| format!("building the rule for {}", need.purpose))?;
            batch.add(&rule, MsgType::Add);
        }
    }
    send(&batch.finalize()).context(
        "the kernel refused vpn-ctl's nftables table (is nf_tables available? `modprobe \
         nf_tables nft_nat nft_masq`)",
    )
}

/// Deletes the table if it exists; true when it did. A kernel without nf_tables has no such
/// table: false, not an error.
///
/// `nft delete table inet vpn_ctl`
pub fn remove() -> anyhow::Result<bool> {
    let table = Table::new(TABLE_C, ProtoFamily::Inet);
    let mut batch = Batch::new();
    batch.add(&table, MsgType::Del);
    match send(&batch.finalize()) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) || no_nf_tables(&e) => Ok(false),
        Err(e) => Err(e).context("deleting nftables table inet vpn_ctl"),
    }
}

/// How many nftables tables the kernel has (`nft list tables | wc -l`), or `None` when it has
/// no nf_tables at all. Cheap (one netlink dump, no process), so a router without a firewall
/// is never asked more.
pub fn count_tables() -> anyhow::Result<Option<usize>> {
    let socket = match mnl::Socket::new(mnl::Bus::Netfilter) {
        Ok(socket) => socket,
        Err(e) if no_nf_tables(&e) => return Ok(None),
        Err(e) => return Err(e).context("opening a netfilter netlink socket"),
    };
    let portid = socket.portid();
    let seq = 1;
    socket
        .send(&nftnl::table::get_tables_nlmsg(seq))
        .context("asking the kernel for its nftables tables")?;
    let mut tables = std::collections::HashSet::new();
    let mut buffer = vec![0; nftnl::nft_nlmsg_maxsize() as usize];
    loop {
        let read = socket
            .recv(&mut buffer[..])
            .context("reading the kernel's nftables tables")?;
        let mut done = false;
        for message in read {
            let message = match message {
                Ok(message) => message,
                Err(e) if no_nf_tables(&e) => return Ok(None),
                Err(e) => return Err(e).context("reading the kernel's nftables tables"),
            };
            match mnl::cb_run2(
                message,
                seq,
                portid,
                nftnl::table::get_tables_cb,
                &mut tables,
            ) {
                Ok(mnl::CbResult::Ok) => {}
                Ok(mnl::CbResult::Stop) => done = true,
                Err(e) if no_nf_tables(&e) => return Ok(None),
                Err(e) => return Err(e).context("reading the kernel's nftables tables"),
            }
        }
        if done {
            return Ok(Some(tables.len()));
        }
    }
}

/// The errors of a kernel without nf_tables: no netfilter netlink at all
/// (`EPROTONOSUPPORT`), or nfnetlink without its nf_tables subsystem (`EOPNOTSUPP` for a
/// batch, `EINVAL` for a plain request).
fn no_nf_tables(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPROTONOSUPPORT | libc::EOPNOTSUPP | libc::EINVAL)
    )
}

fn rule<'a>(chain: &'a Chain<'a>, need: &Need) -> anyhow::Result<Rule<'a>> {
    let mut rule = Rule::new(chain);
    for m in &need.matches {
        match m {
            Match::Iif(name) => {
                rule.add_expr(&Meta::IifName);
                rule.add_expr(&Cmp::new(CmpOp::Eq, ifname(name)?));
            }
            Match::Oif(name) => {
                rule.add_expr(&Meta::OifName);
                rule.add_expr(&Cmp::new(CmpOp::Eq, ifname(name)?));
            }
            Match::Udp(port) => {
                rule.add_expr(&nft_expr!(meta l4proto));
                rule.add_expr(&nft_expr!(cmp == libc::IPPROTO_UDP as u8));
                rule.add_expr(&nft_expr!(payload udp dport));
                rule.add_expr(&nft_expr!(cmp == port.to_be()));
            }
            Match::Esp => {
                rule.add_expr(&nft_expr!(meta l4proto));
                rule.add_expr(&nft_expr!(cmp == libc::IPPROTO_ESP as u8));
            }
            Match::Saddr(net) => prefix(&mut rule, net, true),
            Match::Daddr(net) => prefix(&mut rule, net, false),
        }
    }
    rule.add_expr(&nft_expr!(counter));
    match need.action {
        Action::Accept => rule.add_expr(&nft_expr!(verdict accept)),
        Action::Masquerade => rule.add_expr(&nft_expr!(masquerade)),
    }
    let comment = CString::new(need.comment()).context("a comment with a NUL byte")?;
    rule.set_comment(comment)
        .map_err(|e| anyhow::anyhow!("comment {:?}: {e}", need.comment()))?;
    Ok(rule)
}

/// `ip saddr 10.8.0.0/24`: `meta nfproto ipv4`, the address masked, compared.
fn prefix(rule: &mut Rule<'_>, net: &IpNet, source: bool) {
    match (net.network(), net.netmask()) {
        (IpAddr::V4(addr), IpAddr::V4(mask)) => {
            rule.add_expr(&nft_expr!(meta nfproto));
            rule.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV4 as u8));
            if source {
                rule.add_expr(&nft_expr!(payload ipv4 saddr));
            } else {
                rule.add_expr(&nft_expr!(payload ipv4 daddr));
            }
            rule.add_expr(&Bitwise::new(mask, 0u32));
            rule.add_expr(&Cmp::new(CmpOp::Eq, addr));
        }
        (IpAddr::V6(addr), IpAddr::V6(mask)) => {
            rule.add_expr(&nft_expr!(meta nfproto));
            rule.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV6 as u8));
            if source {
                rule.add_expr(&nft_expr!(payload ipv6 saddr));
            } else {
                rule.add_expr(&nft_expr!(payload ipv6 daddr));
            }
            rule.add_expr(&Bitwise::new(mask, std::net::Ipv6Addr::UNSPECIFIED));
            rule.add_expr(&Cmp::new(CmpOp::Eq, addr));
        }
        _ => unreachable!("an IpNet's address and mask are of one family"),
    }
}

fn ifname(name: &str) -> anyhow::Result<InterfaceName> {
    Ok(InterfaceName::Exact(
        CString::new(name).with_context(|| format!("interface name {name:?}"))?,
    ))
}

/// Sends a batch and reads every acknowledgement (the first error wins).
fn send(batch: &FinalizedBatch) -> std::io::Result<()> {
    let socket = mnl::Socket::new(mnl::Bus::Netfilter)?;
    let portid = socket.portid();
    socket.send_all(batch)?;
    let mut buffer = vec![0; nftnl::nft_nlmsg_maxsize() as usize];
    let mut expected = batch.sequence_numbers();
    while !expected.is_empty() {
        for message in socket.recv(&mut buffer[..])? {
            let message = message?;
            let seq = expected.next().unwrap_or_default();
            mnl::cb_run(message, seq, portid)?;
        }
    }
    Ok(())
}
