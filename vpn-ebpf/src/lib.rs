//! Empty library target: lets `vpn-ctl` list this crate as a build-dependency, so cargo
//! rebuilds the eBPF object when it changes (as aya-template does).
#![no_std]
