//! `[router]` and `[daemon]`.

use super::*;

impl Validator<'_> {
    pub(super) fn router(&mut self, raw: RawRouter) -> Router {
        let wan_problem = raw
            .wan
            .as_ref()
            .and_then(|wan| Some((wan.span(), link::name_problem(wan.get_ref())?)));
        if let Some((span, problem)) = wan_problem {
            self.error(
                span,
                format!("wan {problem}"),
                "give the WAN port's name as `ip link` shows it, e.g. wan = \"eth0\"",
            );
        }
        let lan = raw.lan.iter().filter_map(|net| self.network(net)).collect();
        let firewall = match &raw.firewall {
            None => FirewallMode::default(),
            Some(mode) => match mode.get_ref().parse() {
                Ok(mode) => mode,
                Err(()) => {
                    self.error(
                        mode.span(),
                        format!("firewall = {:?} is not a firewall mode", mode.get_ref()),
                        "write firewall = \"manage\" (vpn-ctl installs the rules its tunnels \
                         need), \"check\" (it only reports what blocks them) or \"off\"",
                    );
                    FirewallMode::default()
                }
            },
        };
        Router {
            wan: raw.wan.map(Spanned::into_inner),
            lan,
            firewall,
        }
    }

    pub(super) fn daemon(&mut self, raw: RawDaemon, router: &Router) -> Daemon {
        let mut daemon = Daemon::default();
        if let Some(listen) = &raw.metrics_listen {
            match listen.get_ref().trim() {
                "" | "off" => daemon.metrics_listen = None,
                text => match text.parse::<std::net::SocketAddr>() {
                    Ok(addr) if addr.port() != 0 => daemon.metrics_listen = Some(addr),
                    _ => self.error(
                        listen.span(),
                        format!("metrics_listen {text:?} is not an address and port"),
                        "write where Prometheus scrapes /metrics, e.g. metrics_listen = \
                         \"127.0.0.1:9586\" (\"[::]:9586\" for every address), or \
                         metrics_listen = \"off\"",
                    ),
                },
            }
        }
        if let Some(max) = &raw.metrics_max_peers {
            match usize::try_from(*max.get_ref()) {
                Ok(n) if n <= 1_000_000 => daemon.metrics_max_peers = n,
                _ => self.error(
                    max.span(),
                    format!("metrics_max_peers {} is out of range", max.get_ref()),
                    "give how many peers get their own series, 0 to 1000000, e.g. \
                     metrics_max_peers = 10000",
                ),
            }
        }
        if let Some(tick) = &raw.tick {
            match u64::try_from(*tick.get_ref()) {
                Ok(s @ 1..=3600) => daemon.tick = std::time::Duration::from_secs(s),
                _ => self.error(
                    tick.span(),
                    format!("tick {} is out of range", tick.get_ref()),
                    "give the seconds between the daemon's periodic checks, 1 to 3600, e.g. \
                     tick = 30",
                ),
            }
        }
        match raw.xdp.as_ref().map(|x| (x, x.get_ref().as_str())) {
            None => {
                if router.wan.is_none() {
                    daemon.xdp = DaemonXdp::Off;
                }
            }
            Some((_, "off")) => daemon.xdp = DaemonXdp::Off,
            Some((x, "count")) => {
                if router.wan.is_none() {
                    self.error(
                        x.span(),
                        "xdp = \"count\" needs the WAN port, and [router] has no wan",
                        "add wan = \"eth0\" (your WAN port as `ip link` shows it) to [router], \
                         or set xdp = \"off\"",
                    );
                }
            }
            Some((x, other)) => self.error(
                x.span(),
                format!("xdp {other:?} is not a mode the daemon knows"),
                "write xdp = \"count\" (count VPN packets on the WAN port) or xdp = \"off\"",
            ),
        }
        daemon
    }
}
