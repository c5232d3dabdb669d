//! The live view of `vpn-ctl diag` and the text form of its report.

use std::{fmt::Write as _, time::Duration};

use vpn_common::{Action, Kind, Service};

use super::Report;
use crate::xdp::{Attached, Counters, Mode, Source};

/// One refresh of the live view.
pub struct Frame<'a> {
    pub interface: &'a str,
    pub attached: Attached,
    pub mode: Mode,
    pub elapsed: Duration,
    pub counters: &'a Counters,
    /// The counters at the previous refresh, for rates.
    pub previous: &'a Counters,
    pub since_previous: Duration,
    pub sources: &'a [Source],
    pub top: usize,
}

/// Renders one refresh: traffic per service and kind with rates, drops by reason, top sources.
pub fn render(f: &Frame<'_>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "vpn-ctl diag on {} ({} XDP, {} mode): {:.0}s, Ctrl-C to stop",
        f.interface,
        f.attached.name(),
        mode_name(f.mode),
        f.elapsed.as_secs_f64()
    );
    s.push('\n');
    traffic_table(&mut s, f.counters, Some((f.previous, f.since_previous)));
    drops_table(&mut s, f.counters);
    sources_table(&mut s, f.sources, f.top);
    s.push('\n');
    s
}

/// The final report in text form: totals, drops, sources, listeners, verdicts.
pub fn render_report(r: &Report) -> String {
    let counters = &r.totals;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "vpn-ctl diag on {} ({} XDP, {} mode) ran {:.1}s; ports: wireguard udp/{}, ike udp/{}, nat-t udp/{}",
        r.interface,
        r.attach_mode.name(),
        mode_name(r.mode),
        r.elapsed_secs,
        r.ports.wireguard,
        r.ports.ike,
        r.ports.natt
    );
    s.push('\n');
    traffic_table(&mut s, counters, None);
    drops_table(&mut s, counters);
    sources_table(&mut s, &r.sources, r.sources.len());
    s.push_str("\nLISTENING (udp)\n");
    match &r.listeners {
        None => s.push_str("  unknown (see the verdict)\n"),
        Some(listeners) if listeners.is_empty() => {
            s.push_str("  nothing listens on the VPN ports\n");
        }
        Some(listeners) => {
            for l in listeners {
                let _ = writeln!(s, "  {l}");
            }
        }
    }
    s.push_str("\nVERDICT\n");
    for v in &r.verdicts {
        let _ = writeln!(s, "  {:<8} {}", v.level.label(), v.message);
    }
    if !r.firewall.is_empty() {
        s.push_str("\nFIREWALL (XDP counts packets before the firewall sees them)\n");
        for f in &r.firewall {
            let _ = writeln!(s, "  {f}");
        }
    }
    s
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Monitor => "monitor",
        Mode::Enforce => "enforce",
    }
}

fn traffic_table(s: &mut String, counters: &Counters, rate: Option<(&Counters, Duration)>) {
    let header = format!(
        "{:<10} {:<24} {:>10} {:>10} {:>9}",
        "SERVICE",
        "KIND",
        "PACKETS",
        "BYTES",
        if rate.is_some() { "RATE" } else { "" }
    );
    let _ = writeln!(s, "{}", header.trim_end());
    let mut any = false;
    for service in Service::ALL {
        for kind in Kind::ALL {
            let c = counters.kind(service, kind);
            if c.packets == 0 {
                continue;
            }
            any = true;
            let rate = match rate {
                Some((previous, dt)) if !dt.is_zero() => {
                    let delta = c.packets - previous.kind(service, kind).packets.min(c.packets);
                    format!("{:.1}/s", delta as f64 / dt.as_secs_f64())
                }
                Some(_) => "-".into(),
                None => String::new(),
            };
            let row = format!(
                "{:<10} {:<24} {:>10} {:>10} {:>9}",
                service.name(),
                kind.name(),
                c.packets,
                human_bytes(c.bytes),
                rate
            );
            let _ = writeln!(s, "{}", row.trim_end());
        }
    }
    if !any {
        s.push_str("  no VPN packet yet\n");
    }
}

fn drops_table(s: &mut String, counters: &Counters) {
    if counters.drops().packets == 0 {
        return;
    }
    s.push_str("\nDROPPED\n");
    for ((service, kind, action), c) in &counters.0 {
        if *action == Action::Pass {
            continue;
        }
        let _ = writeln!(
            s,
            "  {:<10} {:<24} {:<18} {:>8} packets",
            service.name(),
            kind.name(),
            action.name(),
            c.packets
        );
    }
}

fn sources_table(s: &mut String, sources: &[Source], top: usize) {
    if sources.is_empty() || top == 0 {
        return;
    }
    let _ = writeln!(
        s,
        "\n{:<40} {:>8} {:>10} {:>6}  {:<32} {:>10}",
        "SOURCE", "PACKETS", "BYTES", "DROPS", "LAST", "LAST SEEN"
    );
    for src in sources.iter().take(top) {
        let _ = writeln!(
            s,
            "{:<40} {:>8} {:>10} {:>6}  {:<32} {:>10}",
            src.address.to_string(),
            src.packets,
            human_bytes(src.bytes),
            src.drops,
            format!("{}/{}", src.last_service, src.last_kind),
            format!("{:.1}s ago", src.last_seen_secs_ago)
        );
    }
}

/// Bytes for people: `512 B`, `1.5 KiB`, `3.2 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use vpn_common::Counter;

    use super::*;

    fn counters(entries: &[(Service, Kind, Action, u64, u64)]) -> Counters {
        let mut c = Counters::default();
        for &(s, k, a, packets, bytes) in entries {
            c.0.insert((s, k, a), Counter { packets, bytes });
        }
        c
    }

    #[test]
    fn view_shows_kinds_rates_drops_and_sources() {
        let now = counters(&[
            (Service::WireGuard, Kind::WgData, Action::Pass, 30, 4800),
            (
                Service::WireGuard,
                Kind::Malformed,
                Action::DropMalformed,
                2,
                120,
            ),
        ]);
        let before = counters(&[(Service::WireGuard, Kind::WgData, Action::Pass, 10, 1600)]);
        let sources = [Source {
            address: "198.51.100.7".parse().unwrap(),
            packets: 32,
            bytes: 4920,
            drops: 2,
            first_seen_secs_ago: 9.0,
            last_seen_secs_ago: 0.5,
            last_service: "wireguard",
            last_kind: "data",
            last_action: "pass",
            last_spi: None,
        }];
        let text = render(&Frame {
            interface: "wan",
            attached: Attached::Native,
            mode: Mode::Enforce,
            elapsed: Duration::from_secs(10),
            counters: &now,
            previous: &before,
            since_previous: Duration::from_secs(2),
            sources: &sources,
            top: 5,
        });
        assert!(
            text.contains("vpn-ctl diag on wan (native XDP, enforce mode)"),
            "{text}"
        );
        let data = text.lines().find(|l| l.contains(" data ")).expect(&text);
        assert!(
            data.contains("30") && data.contains("4.7 KiB") && data.contains("10.0/s"),
            "{data}"
        );
        assert!(text.contains("drop_malformed"), "{text}");
        assert!(
            text.contains("198.51.100.7") && text.contains("wireguard/data"),
            "{text}"
        );
    }

    #[test]
    fn view_says_when_nothing_arrived() {
        let empty = Counters::default();
        let text = render(&Frame {
            interface: "wan",
            attached: Attached::Generic,
            mode: Mode::Monitor,
            elapsed: Duration::from_secs(1),
            counters: &empty,
            previous: &empty,
            since_previous: Duration::from_secs(1),
            sources: &[],
            top: 5,
        });
        assert!(text.contains("no VPN packet yet"), "{text}");
        assert!(!text.contains("DROPPED"), "{text}");
    }

    #[test]
    fn bytes_are_human_sized() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
