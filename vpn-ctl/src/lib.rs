//! vpn-ctl: a VPN control plane for Linux routers.
//!
//! One module per domain noun; the CLI (`main.rs`) and the daemon call the same library
//! functions.
pub mod address;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod creation;
pub mod daemon;
pub mod diag;
pub mod files;
pub mod firewall;
pub mod fritzbox;
pub mod guard;
pub mod ike;
pub mod import;
pub mod journal;
pub mod key;
pub mod link;
pub mod metrics;
pub mod netlink;
pub mod peer;
pub mod route;
pub mod sockets;
pub mod userspace;
pub mod watchdog;
pub mod wireguard;
pub mod xdp;
pub mod xfrm;
