//! vpn-ctl: a VPN control plane for Linux routers.
//!
//! One module per domain noun; the CLI (`main.rs`) and, later, the daemon call the same
//! library functions.
pub mod cli;
pub mod diag;
pub mod link;
pub mod sockets;
pub mod xdp;
