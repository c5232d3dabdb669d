//! Per-packet cost of the WAN classifier next to an empty XDP program, both loaded in the same
//! run and timed by the kernel with BPF_PROG_TEST_RUN. Needs root. `cargo xtask bench`.
//!
//! Each case runs ROUNDS times with REPEAT repetitions, alternating the classifier and the
//! empty program; the median of the kernel's mean time per run is printed.

#[path = "../tests/common/mod.rs"]
mod common;

use vpn_common::{PROG_EMPTY, PROG_WAN};
use vpn_ctl::xdp::WanProgram;

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 7;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let program = WanProgram::load(vpn_common::DEFAULT_SOURCES)
        .expect("loading the XDP program (the benchmark needs root: sudo cargo xtask bench)");
    let cases = [
        (
            "wireguard data (1400 B)",
            common::udp4(51820, &common::wg(4, 1376)),
        ),
        (
            "wireguard handshake initiation",
            common::udp4(51820, &common::wg(1, 148)),
        ),
        (
            "ike ikev2 ike_sa_init",
            common::udp4(500, &common::ike(2, 34, true, 300)),
        ),
        ("non-vpn udp (dns)", common::udp4(53, &[0u8; 40])),
        (
            "malformed on wireguard port",
            common::udp4(51820, &common::wg(4, 33)),
        ),
    ];
    println!(
        "XDP classifier cost per packet, BPF_PROG_TEST_RUN, {REPEAT} repeats x {ROUNDS} rounds (median)\n"
    );
    println!(
        "{:<32} {:>12} {:>12} {:>8}",
        "packet", "classifier", "empty XDP", "ratio"
    );
    for (name, frame) in &cases {
        let (mut wan, mut empty) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let (_, t) = program.run(PROG_EMPTY, frame, REPEAT).expect("run empty");
            empty.push(t.as_nanos() as f64);
            let (_, t) = program
                .run(PROG_WAN, frame, REPEAT)
                .expect("run classifier");
            wan.push(t.as_nanos() as f64);
        }
        let (wan, empty) = (median(wan), median(empty));
        println!(
            "{name:<32} {:>9.1} ns {:>9.1} ns {:>7.2}x",
            wan,
            empty,
            wan / empty
        );
    }
}
