//! vpn-ctl: a VPN control plane for Linux routers.
pub mod xdp;
