//! Types, constants and packet-classification rules shared by the `vpn-ebpf` XDP program and
//! `vpn-ctl` user space.
//!
//! The classification rules live here once, as generic code over [`Packet`]: the XDP program
//! runs them on the frame in the kernel, the host unit tests run the very same code on byte
//! slices. Map value structs are `#[repr(C)]` with explicit padding so both sides agree on the
//! layout and the verifier never sees uninitialised holes.
#![no_std]

pub mod classify;
pub mod maps;
pub mod rate;

pub use classify::{
    Address, Classified, Kind, Packet, Ports, Service, address_from_octets, address_octets,
    classify, ipv4_mapped,
};
pub use maps::*;
