//! Plain-language verdicts from what `diag` saw: the questions people used tcpdump and
//! netstat for, answered.

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use serde::Serialize;
use vpn_common::{Action, Kind, Ports, Service};

use crate::{
    sockets::UdpListener,
    xdp::{Attached, Counters, Mode, Source},
};

/// How much a verdict matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Something is broken and the message says what to do.
    Problem,
    /// Something looks wrong or unusual.
    Warning,
    /// Worth knowing.
    Info,
    /// Working.
    Ok,
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Level::Problem => "PROBLEM",
            Level::Warning => "WARNING",
            Level::Info => "info",
            Level::Ok => "ok",
        }
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub level: Level,
    /// The service the finding is about (`wireguard`, `ike`, ...), or `interface`.
    pub topic: &'static str,
    pub message: String,
}

/// Everything the verdicts are drawn from.
pub struct Findings<'a> {
    pub interface: &'a str,
    pub interface_up: bool,
    pub ports: Ports,
    pub elapsed: Duration,
    pub counters: &'a Counters,
    pub sources: &'a [Source],
    /// What listens on the ports, or why the kernel could not say.
    pub listeners: Result<&'a [UdpListener], &'a str>,
    pub attached: Attached,
    pub mode: Mode,
}

impl Findings<'_> {
    /// Whether something listens on `port`; when that is unknown, taken as yes, so no
    /// verdict blames a listener that may be there.
    fn listening(&self, port: u16) -> bool {
        match self.listeners {
            Ok(listeners) => listeners.iter().any(|l| l.local.port() == port),
            Err(_) => true,
        }
    }

    fn packets(&self, service: Service, kind: Kind) -> u64 {
        self.counters.kind(service, kind).packets
    }

    /// Sources whose latest packet was of `service`/`kind` (the table keeps the latest only).
    fn sources_of(&self, service: Service, kind: Kind) -> Vec<IpAddr> {
        let set: BTreeSet<IpAddr> = self
            .sources
            .iter()
            .filter(|s| s.last_service == service.name() && s.last_kind == kind.name())
            .map(|s| s.address)
            .collect();
        set.into_iter().collect()
    }

    fn duration(&self) -> String {
        format!("{:.0}s", self.elapsed.as_secs_f64().max(1.0))
    }
}

/// The verdicts, most serious first.
pub fn verdicts(f: &Findings<'_>) -> Vec<Verdict> {
    let mut v = Vec::new();
    interface(f, &mut v);
    wireguard(f, &mut v);
    ipsec(f, &mut v);
    drops(f, &mut v);
    v.sort_by_key(|x| x.level);
    v
}

fn push(v: &mut Vec<Verdict>, level: Level, topic: &'static str, message: String) {
    v.push(Verdict {
        level,
        topic,
        message,
    });
}

/// `1 data packet`, `3 data packets`.
fn packets(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn list(addrs: &[IpAddr]) -> String {
    const SHOWN: usize = 3;
    let mut s = addrs
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if addrs.len() > SHOWN {
        s.push_str(&format!(" and {} more", addrs.len() - SHOWN));
    }
    s
}

fn interface(f: &Findings<'_>, v: &mut Vec<Verdict>) {
    if let Err(why) = f.listeners {
        push(
            v,
            Level::Info,
            "interface",
            format!(
                "Whether something listens on the VPN ports is not known: {why}. The counts \
                 and the other verdicts do not depend on it (OpenWrt: `opkg install \
                 kmod-inet-diag`; elsewhere `modprobe udp_diag`)."
            ),
        );
    }
    if !f.interface_up {
        push(
            v,
            Level::Problem,
            "interface",
            format!(
                "{0} is down: no packet can arrive on it. Bring it up with `ip link set {0} up` \
                 (or check the cable / PPPoE session).",
                f.interface
            ),
        );
    }
    if f.attached == Attached::Generic {
        push(
            v,
            Level::Info,
            "interface",
            format!(
                "The program ran in generic XDP mode on {}: its driver has no native XDP. \
                 Counting is the same; dropping costs more CPU than in native mode.",
                f.interface
            ),
        );
    }
}

fn wireguard(f: &Findings<'_>, v: &mut Vec<Verdict>) {
    const T: &str = "wireguard";
    let port = f.ports.wireguard;
    let total = f.counters.service(Service::WireGuard).packets;
    let inits = f.packets(Service::WireGuard, Kind::WgHandshakeInit);
    let data = f.packets(Service::WireGuard, Kind::WgData);
    let malformed = f.packets(Service::WireGuard, Kind::Malformed);
    let valid = total - malformed;
    let listening = f.listening(port);

    if valid == 0 {
        if listening {
            push(
                v,
                Level::Problem,
                T,
                format!(
                    "No WireGuard packet reached {} on udp/{port} in {}: the clients' packets do \
                     not get here. Check the port forward on the ISP router (udp/{port} to this \
                     router's WAN address) and the clients' Endpoint (this router's public \
                     address or DNS name, port {port}).",
                    f.interface,
                    f.duration()
                ),
            );
        } else {
            push(
                v,
                Level::Info,
                T,
                format!(
                    "No WireGuard packet on udp/{port} and nothing listens there. If WireGuard \
                     clients should connect: bring the interface up (`vpn-ctl up`) and forward \
                     udp/{port} on the ISP router to this router."
                ),
            );
        }
    } else if !listening {
        push(
            v,
            Level::Problem,
            T,
            format!(
                "{valid} WireGuard packets arrived on udp/{port}, but nothing listens there: the \
                 WireGuard interface is down or uses another port. Run `vpn-ctl up`, and check \
                 that the interface's listen port is {port}."
            ),
        );
    } else if inits > 0 && data == 0 {
        let from = f.sources_of(Service::WireGuard, Kind::WgHandshakeInit);
        push(
            v,
            Level::Problem,
            T,
            format!(
                "{inits} handshake initiations arrived{} but no session followed: the router \
                 does not accept them. Most likely the keys do not match: the client's [Peer] \
                 PublicKey must be this router's public key, and the client's public key must \
                 be a peer on the router (`vpn-ctl status` lists them).",
                if from.is_empty() {
                    String::new()
                } else {
                    format!(" (from {})", list(&from))
                }
            ),
        );
    } else if data > 0 {
        push(
            v,
            Level::Ok,
            T,
            format!(
                "WireGuard traffic arrives: {} and {}; sessions are up.",
                packets(data, "data packet"),
                packets(inits, "handshake initiation")
            ),
        );
    } else {
        push(
            v,
            Level::Info,
            T,
            format!(
                "Only handshake responses or cookie replies arrived on udp/{port}: this router \
                 started sessions and the peers answered, but no data came back yet."
            ),
        );
    }
    if malformed > 0 {
        push(
            v,
            Level::Warning,
            T,
            format!(
                "{} on udp/{port} {} not valid WireGuard (wrong message type or size): a port \
                 scanner, or another protocol aimed at this port{}.",
                packets(malformed, "packet"),
                if malformed == 1 { "was" } else { "were" },
                if f.mode == Mode::Enforce {
                    "; enforce mode dropped them"
                } else {
                    "; `--mode enforce` drops them before the kernel spends work on them"
                }
            ),
        );
    }
}

fn ipsec(f: &Findings<'_>, v: &mut Vec<Verdict>) {
    const T: &str = "ipsec";
    let ike_kinds = |services: &[Service]| -> u64 {
        services
            .iter()
            .map(|s| {
                f.counters
                    .sum(|svc, k, _| svc == *s && k != Kind::Malformed && is_ike(k))
                    .packets
            })
            .sum()
    };
    let ike = ike_kinds(&[Service::Ike, Service::NatT]);
    let esp = f.counters.service(Service::Esp).packets + f.packets(Service::NatT, Kind::EspInUdp);
    let listening = f.listening(f.ports.ike) || f.listening(f.ports.natt);
    let both = |k| f.packets(Service::Ike, k) + f.packets(Service::NatT, k);

    if ike > 0 && !listening {
        push(
            v,
            Level::Problem,
            T,
            format!(
                "{ike} IKE packets arrived, but nothing listens on udp/{} or udp/{}: the IKE \
                 daemon (strongSwan's charon) is not running. Start it, or run `vpn-ctl up` for \
                 IKE sites.",
                f.ports.ike, f.ports.natt
            ),
        );
    }
    let phase1 = both(Kind::IkeV1Aggressive) + both(Kind::IkeV1Main);
    if phase1 > 0 && both(Kind::IkeV1Quick) == 0 && esp == 0 && listening {
        let mode = if both(Kind::IkeV1Aggressive) > 0 {
            "aggressive mode"
        } else {
            "main mode"
        };
        push(
            v,
            Level::Warning,
            T,
            format!(
                "The remote side starts IKEv1 {mode} ({phase1} packets) but quick mode (phase 2) \
                 never follows: phase 1 fails. Check the pre-shared key, both identities (FQDN \
                 or address) and the proposal (a FRITZ!Box wants aes256-sha1-modp1024, \
                 aggressive mode)."
            ),
        );
    }
    if both(Kind::IkeV2SaInit) > 0 && both(Kind::IkeV2Auth) == 0 && esp == 0 && listening {
        push(
            v,
            Level::Warning,
            T,
            format!(
                "IKEv2 IKE_SA_INIT arrives ({} packets) but IKE_AUTH never follows: the \
                 proposals do not match, or this router's answers do not reach the remote side.",
                both(Kind::IkeV2SaInit)
            ),
        );
    }
    if esp > 0 {
        push(
            v,
            Level::Ok,
            T,
            format!(
                "IPsec traffic arrives: {esp} ESP packets ({} of them in UDP/{}).",
                f.packets(Service::NatT, Kind::EspInUdp),
                f.ports.natt
            ),
        );
    } else if ike == 0 && listening {
        push(
            v,
            Level::Info,
            T,
            format!(
                "An IKE daemon listens, but no IKE or ESP packet arrived in {}. If a site \
                 should connect: forward udp/{}, udp/{} and ESP on the ISP router.",
                f.duration(),
                f.ports.ike,
                f.ports.natt
            ),
        );
    }
    let malformed = f.packets(Service::Ike, Kind::Malformed)
        + f.packets(Service::NatT, Kind::Malformed)
        + f.packets(Service::Esp, Kind::Malformed);
    if malformed > 0 {
        push(
            v,
            Level::Warning,
            T,
            format!(
                "{malformed} packets on the IKE/NAT-T ports or ESP were malformed (not IKE, not \
                 ESP): scanners or a broken peer."
            ),
        );
    }
    let fragments = f.counters.service(Service::Fragment).packets;
    if fragments > 0 {
        push(
            v,
            Level::Info,
            T,
            format!(
                "{fragments} IP fragments (UDP or ESP) arrived. Large IKE messages (certificates) \
                 get fragmented and fragments are often lost on the way; enable IKE \
                 fragmentation if an exchange stalls."
            ),
        );
    }
}

fn is_ike(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::IkeV1Main
            | Kind::IkeV1Aggressive
            | Kind::IkeV1Informational
            | Kind::IkeV1Quick
            | Kind::IkeV1Other
            | Kind::IkeV2SaInit
            | Kind::IkeV2Auth
            | Kind::IkeV2CreateChildSa
            | Kind::IkeV2Informational
            | Kind::IkeV2Other
    )
}

fn drops(f: &Findings<'_>, v: &mut Vec<Verdict>) {
    let total = f.counters.drops().packets;
    if total == 0 {
        return;
    }
    let parts: Vec<String> = Action::ALL[1..]
        .iter()
        .filter_map(|a| {
            let n = f.counters.sum(|_, _, x| x == *a).packets;
            (n > 0).then(|| format!("{n} {}", reason(*a)))
        })
        .collect();
    push(
        v,
        Level::Info,
        "xdp",
        format!(
            "Enforce mode dropped {total} packets: {}.",
            parts.join(", ")
        ),
    );
}

fn reason(a: Action) -> &'static str {
    match a {
        Action::Pass => "passed",
        Action::DropMalformed => "malformed",
        Action::DropDenied => "from denied sources",
        Action::DropNotAllowed => "from sources not on the allow-list",
        Action::DropRateLimited => "over the handshake rate limit",
    }
}

#[cfg(test)]
mod tests {
    use vpn_common::Counter;

    use super::*;
    use crate::sockets::Owner;

    fn counters(entries: &[(Service, Kind, Action, u64)]) -> Counters {
        let mut c = Counters::default();
        for &(s, k, a, packets) in entries {
            c.0.insert(
                (s, k, a),
                Counter {
                    packets,
                    bytes: packets * 100,
                },
            );
        }
        c
    }

    fn listener(port: u16) -> UdpListener {
        UdpListener {
            local: format!("0.0.0.0:{port}").parse().unwrap(),
            inode: 1,
            uid: 0,
            owner: Owner::Kernel,
        }
    }

    fn source(addr: &str, service: Service, kind: Kind) -> Source {
        Source {
            address: addr.parse().unwrap(),
            packets: 1,
            bytes: 100,
            drops: 0,
            first_seen_secs_ago: 1.0,
            last_seen_secs_ago: 1.0,
            last_service: service.name(),
            last_kind: kind.name(),
            last_action: "pass",
            last_spi: None,
        }
    }

    fn run(counters: &Counters, sources: &[Source], listeners: &[UdpListener]) -> Vec<Verdict> {
        verdicts(&Findings {
            interface: "wan",
            interface_up: true,
            ports: Ports::default(),
            elapsed: Duration::from_secs(30),
            counters,
            sources,
            listeners: Ok(listeners),
            attached: Attached::Native,
            mode: Mode::Monitor,
        })
    }

    fn find<'a>(v: &'a [Verdict], topic: &str, level: Level) -> &'a Verdict {
        v.iter()
            .find(|x| x.topic == topic && x.level == level)
            .unwrap_or_else(|| panic!("no {level:?} verdict on {topic} in {v:#?}"))
    }

    #[test]
    fn without_sock_diag_the_verdicts_blame_no_listener_and_say_what_to_load() {
        let c = counters(&[(Service::WireGuard, Kind::WgHandshakeInit, Action::Pass, 5)]);
        let v = verdicts(&Findings {
            interface: "wan",
            interface_up: true,
            ports: Ports::default(),
            elapsed: Duration::from_secs(30),
            counters: &c,
            sources: &[],
            listeners: Err("the kernel has no sock_diag handler for UDP"),
            attached: Attached::Native,
            mode: Mode::Monitor,
        });
        let text: Vec<&str> = v.iter().map(|v| v.message.as_str()).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("not known") && t.contains("kmod-inet-diag")),
            "{text:#?}"
        );
        assert!(
            !text.iter().any(|t| t.contains("nothing listens")),
            "{text:#?}"
        );
        // The handshake verdict still comes.
        assert!(
            text.iter().any(|t| t.contains("no session followed")),
            "{text:#?}"
        );
    }

    #[test]
    fn no_packet_with_a_listener_points_at_the_port_forward() {
        let v = run(&Counters::default(), &[], &[listener(51820)]);
        let p = find(&v, "wireguard", Level::Problem);
        assert!(
            p.message.contains("port forward on the ISP router"),
            "{}",
            p.message
        );
        assert!(p.message.contains("udp/51820"), "{}", p.message);
    }

    #[test]
    fn packets_without_a_listener_mean_the_tunnel_is_not_up() {
        let c = counters(&[(Service::WireGuard, Kind::WgHandshakeInit, Action::Pass, 4)]);
        let v = run(&c, &[], &[]);
        let p = find(&v, "wireguard", Level::Problem);
        assert!(p.message.contains("nothing listens"), "{}", p.message);
        assert!(p.message.contains("vpn-ctl up"), "{}", p.message);
    }

    #[test]
    fn initiations_without_data_mean_a_key_mismatch() {
        let c = counters(&[(Service::WireGuard, Kind::WgHandshakeInit, Action::Pass, 5)]);
        let s = [source(
            "203.0.113.9",
            Service::WireGuard,
            Kind::WgHandshakeInit,
        )];
        let v = run(&c, &s, &[listener(51820)]);
        let p = find(&v, "wireguard", Level::Problem);
        assert!(p.message.contains("keys do not match"), "{}", p.message);
        assert!(p.message.contains("203.0.113.9"), "{}", p.message);
    }

    #[test]
    fn data_after_handshakes_is_ok() {
        let c = counters(&[
            (Service::WireGuard, Kind::WgHandshakeInit, Action::Pass, 1),
            (Service::WireGuard, Kind::WgData, Action::Pass, 50),
        ]);
        let v = run(&c, &[], &[listener(51820)]);
        assert!(
            find(&v, "wireguard", Level::Ok)
                .message
                .contains("50 data packets")
        );
        assert!(!v.iter().any(|x| x.level == Level::Problem), "{v:#?}");
    }

    #[test]
    fn malformed_only_is_not_mistaken_for_wireguard() {
        let c = counters(&[(Service::WireGuard, Kind::Malformed, Action::Pass, 7)]);
        let v = run(&c, &[], &[listener(51820)]);
        assert!(
            find(&v, "wireguard", Level::Warning)
                .message
                .contains("7 packets on udp/51820 were not valid WireGuard")
        );
        // Malformed packets do not prove the port forward works.
        assert!(
            find(&v, "wireguard", Level::Problem)
                .message
                .contains("No WireGuard packet")
        );
    }

    #[test]
    fn ike_without_daemon_and_stuck_aggressive_mode() {
        let c = counters(&[(Service::Ike, Kind::IkeV1Aggressive, Action::Pass, 3)]);
        let v = run(&c, &[], &[]);
        assert!(find(&v, "ipsec", Level::Problem).message.contains("charon"));
        let v = run(&c, &[], &[listener(500)]);
        let w = find(&v, "ipsec", Level::Warning);
        assert!(w.message.contains("aggressive mode") && w.message.contains("quick mode"));
    }

    #[test]
    fn esp_in_udp_counts_as_ipsec_traffic() {
        let c = counters(&[
            (Service::NatT, Kind::IkeV1Quick, Action::Pass, 2),
            (Service::NatT, Kind::EspInUdp, Action::Pass, 9),
        ]);
        let v = run(&c, &[], &[listener(4500)]);
        assert!(
            find(&v, "ipsec", Level::Ok)
                .message
                .contains("9 ESP packets")
        );
    }

    #[test]
    fn drops_are_summed_by_reason_and_problems_come_first() {
        let c = counters(&[
            (
                Service::WireGuard,
                Kind::Malformed,
                Action::DropMalformed,
                2,
            ),
            (
                Service::WireGuard,
                Kind::WgHandshakeInit,
                Action::DropRateLimited,
                3,
            ),
        ]);
        let v = run(&c, &[], &[]);
        let d = find(&v, "xdp", Level::Info);
        assert!(d.message.contains("dropped 5 packets"), "{}", d.message);
        assert!(
            d.message.contains("2 malformed")
                && d.message.contains("3 over the handshake rate limit")
        );
        assert_eq!(v[0].level, Level::Problem, "{v:#?}");
    }
}
