//! What each command does: load the config, call the library, print the result.

use std::{
    io::{IsTerminal as _, Read as _, Write},
    path::Path,
};

use anyhow::Context as _;

use crate::{
    cli::{Cli, Command, ExportTarget, ImportSource, PeerAction},
    client, config, firewall, ike, import,
    key::Secret,
    peer, wireguard, xfrm,
};

/// Runs a parsed command line.
///
/// Everything for the user goes to standard output through `out` with `write!`, never
/// `println!` (which panics when the reader has gone): a closed pipe (`vpn-ctl status | head`)
/// comes back as an error that [`is_broken_pipe`] recognises.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = &mut std::io::stdout();
    match cli.command {
        Command::Diag(args) => {
            let options = args.options()?;
            let mut report = runtime.block_on(crate::diag::run(&options, out))?;
            report.firewall = firewall_of(&cli.config);
            if args.json {
                serde_json::to_writer_pretty(&mut *out, &report)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", crate::diag::view::render_report(&report))?;
            }
        }
        Command::Up { backend } => {
            let config = config::load(&cli.config)?;
            let options = wireguard::UpOptions {
                backend,
                endpoints: wireguard::Endpoints::Set,
            };
            let converged = runtime.block_on(converge(&config, &options))?;
            print_changes(
                out,
                &converged.changes,
                "everything already matches the config; nothing changed",
            )?;
            for warning in &converged.warnings {
                log::warn!("{warning}");
            }
        }
        Command::Down => {
            let config = config::load(&cli.config)?;
            let mut changes = runtime.block_on(wireguard::down(&config))?.changes;
            changes.extend(ipsec_sites(&config, xfrm::down)?);
            if let Some(mut vici) = runtime.block_on(running_charon()) {
                changes.extend(runtime.block_on(ike::down(&mut vici, &ike::UpOptions::default()))?);
            }
            changes.extend(firewall::down()?);
            print_changes(out, &changes, "nothing to remove")?;
        }
        Command::Status { json } => {
            let config = config::load(&cli.config)?;
            let wireguard = runtime.block_on(wireguard::status(&config))?;
            let ipsec = if config.ipsec.is_empty() {
                None
            } else {
                Some(xfrm::status(&config.ipsec)?)
            };
            let ike_sas = match runtime.block_on(running_charon()) {
                Some(mut vici) if has_ike_sites(&config) => {
                    Some(runtime.block_on(ike::status(&mut vici))?)
                }
                _ => None,
            };
            let firewall = firewall::check(&config);
            if json {
                let status = serde_json::json!({
                    "wireguard": wireguard,
                    "ipsec": ipsec,
                    "ike": ike_sas,
                    "firewall": firewall.as_ref().map_err(|e| format!("{e:#}")),
                });
                serde_json::to_writer_pretty(&mut *out, &status)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", wireguard::render_status(&wireguard))?;
                if let Some(ipsec) = ipsec {
                    write!(out, "{ipsec}")?;
                }
                if let Some(sas) = &ike_sas {
                    write!(out, "{}", render_ike(sas))?;
                    let aggressive = aggressive_sites(&config);
                    if !aggressive.is_empty() && !charon_launch().runs_ours() {
                        writeln!(out, "{}", foreign_charon_hint(&aggressive))?;
                    }
                } else if has_ike_sites(&config) {
                    writeln!(out, "IKE: charon is not running: `vpn-ctl up` starts it")?;
                }
                match &firewall {
                    Ok(findings) if config.router.firewall != config::FirewallMode::Off => {
                        write!(out, "{}", firewall::render(findings))?
                    }
                    Ok(_) => {}
                    Err(e) => writeln!(out, "firewall: cannot check it: {e:#}")?,
                }
            }
        }
        Command::Genkey => writeln!(out, "{}", Secret::generate_private().expose_base64())?,
        Command::Genpsk => writeln!(out, "{}", Secret::generate_preshared().expose_base64())?,
        Command::Pubkey => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the private key from stdin")?;
            let key: Secret = text.parse().context(
                "stdin does not hold a private key (e.g. `vpn-ctl genkey | vpn-ctl pubkey`)",
            )?;
            writeln!(out, "{}", key.public_key())?;
        }
        Command::Peer { action } => peer_command(out, &cli.config, action)?,
        Command::Import { source } => {
            let imported = match &source {
                ImportSource::Uci { file } => import::import_uci(file)?,
                ImportSource::WgQuick { file, name } => {
                    import::import_wg_quick(file, name.as_deref())?
                }
            };
            let dir = cli
                .config
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let name = cli
                .config
                .file_name()
                .context("--config must name a file")?
                .to_string_lossy();
            let written = import::write(&imported, dir, &name)?;
            writeln!(out, "wrote {}", written.config.display())?;
            for f in &written.key_files {
                writeln!(out, "wrote {} (mode 0600)", f.display())?;
            }
            for note in &written.notes {
                writeln!(out, "note: {note}")?;
            }
            if let Some(problems) = &written.problems {
                writeln!(
                    out,
                    "the imported config needs fixing before `vpn-ctl up` accepts it:\n{problems}"
                )?;
            }
        }
        Command::Watchdog { once, interval } => {
            let config = config::load(&cli.config)?;
            anyhow::ensure!(
                !config.ipsec.is_empty(),
                "{} has no [ipsec.NAME] sites to watch",
                cli.config.display()
            );
            let options = crate::watchdog::Options {
                once,
                interval: std::time::Duration::from_secs(interval.max(1)),
                vici_socket: ike::DEFAULT_SOCKET.into(),
            };
            if !runtime.block_on(crate::watchdog::run(&config, &options))? {
                anyhow::bail!("some IPsec sites are down (see above)");
            }
        }
        Command::Export {
            target: ExportTarget::Fritzbox { name, output },
        } => {
            let config = config::load(&cli.config)?;
            let site = config
                .ipsec
                .iter()
                .find(|s| s.name == name)
                .with_context(|| {
                    let names: Vec<&str> = config.ipsec.iter().map(|s| s.name.as_str()).collect();
                    format!(
                        "{} has no [ipsec.{name}] site; its sites are: {}",
                        cli.config.display(),
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    )
                })?;
            let config::ipsec::Keying::Ike(ike) = &site.keying else {
                anyhow::bail!(
                    "site {name} uses static keying; a FRITZ!Box only speaks IKE (keying = \"ike\")"
                );
            };
            let text = crate::fritzbox::vpncfg(site, &ike.psk)?;
            match output {
                None => write!(out, "{text}")?,
                Some(path) => {
                    crate::files::replace(&path, text.as_bytes(), crate::files::Mode::Set(0o600))
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "wrote {} (mode 0600: it holds the pre-shared key)",
                        path.display()
                    );
                }
            }
        }
        Command::UserspaceDevice { name } => crate::userspace::run_device(&name)?,
        Command::Daemon { backend } => {
            drop(runtime);
            crate::daemon::run(&cli.config, backend)?;
        }
    }
    Ok(())
}

fn peer_command(
    out: &mut impl Write,
    config_path: &Path,
    action: PeerAction,
) -> anyhow::Result<()> {
    match action {
        PeerAction::Add {
            name,
            interface,
            ip,
            dns,
            full_tunnel: _,
            split_tunnel,
            qr_png,
            store_private_key,
        } => {
            let added = peer::add(
                config_path,
                &peer::AddRequest {
                    interface,
                    name,
                    ips: ip,
                    dns: (!dns.is_empty()).then_some(dns),
                    tunnel: if split_tunnel {
                        client::Tunnel::Split
                    } else {
                        client::Tunnel::Full
                    },
                    store_private_key,
                },
            )?;
            let text = client::render(&added.client);
            write!(out, "{text}")?;
            if std::io::stdout().is_terminal() {
                writeln!(out)?;
                write!(out, "{}", client::qr_terminal(&text)?)?;
            } else {
                eprintln!("(no QR code: stdout is not a terminal; --qr-png FILE writes one)");
            }
            if let Some(png) = &qr_png {
                client::write_qr_png(&text, png)?;
                eprintln!("wrote the QR code to {} (mode 0600)", png.display());
            }
            eprintln!(
                "added peer {} to {} in {}; run `vpn-ctl up` to apply. The client's private key \
                 is in the config above{}.",
                added.name,
                added.interface,
                config_path.display(),
                match &added.private_key_file {
                    Some(f) => format!(" and in {}", f.display()),
                    None => " only: it is not stored".to_string(),
                }
            );
        }
        PeerAction::Remove { name, interface } => {
            let removed = peer::remove(config_path, interface.as_deref(), &name)?;
            eprintln!(
                "removed peer {} from {}; run `vpn-ctl up` to apply",
                removed.name, removed.interface
            );
            for f in &removed.removed_files {
                eprintln!("deleted {}", f.display());
            }
        }
    }
    Ok(())
}

/// What a converge did: one line per change, and warnings: what the configuration accepts
/// but may not mean, and what still stands in the tunnels' way (a missing WAN port, the
/// firewall's findings), for the caller to print or log.
#[derive(Debug, Default)]
pub struct Converged {
    pub changes: Vec<String>,
    pub warnings: Vec<String>,
}

/// What `vpn-ctl up` does, and the daemon on every converge: WireGuard interfaces, static
/// IPsec sites, IKE sites, the firewall openings; each a diff against what is there.
pub async fn converge(
    config: &config::Config,
    options: &wireguard::UpOptions,
) -> anyhow::Result<Converged> {
    refuse_damaged(config).await?;
    let mut warnings = config_warnings(config, crate::link::exists);
    let mut changes = wireguard::up_with(config, options).await?.changes;
    changes.extend(ipsec_sites(config, xfrm::up)?);
    changes.extend(ike_up(config, &mut warnings).await?);
    let firewall = firewall::up(config)?;
    changes.extend(firewall.changes);
    warnings.extend(firewall.warnings);
    warnings.extend(firewall.findings.iter().map(|f| format!("firewall: {f}")));
    Ok(Converged { changes, warnings })
}

/// Refuses a config that looks cut short (see [`crate::guard`]) before anything is changed.
async fn refuse_damaged(config: &config::Config) -> anyhow::Result<()> {
    let nl = crate::link::Netlink::connect()?;
    // What an empty config would remove is looked for everywhere; otherwise only the links.
    let empty = config.wireguard.is_empty() && config.ipsec.is_empty();
    let mut vici = if empty { running_charon().await } else { None };
    let running = crate::guard::Running::observe(&nl, empty, vici.as_mut()).await;
    crate::guard::check(config, &running, |link| {
        Ok(
            wireguard::observe(&link.name, wireguard::Backend::of(link))?
                .peers
                .len(),
        )
    })
}

/// What the configuration accepts but may not mean ([`config::Config::warnings`]), and a
/// `[router] wan` that is not an interface here, which configuration checks cannot see.
/// `link_exists` is [`crate::link::exists`] except in tests.
fn config_warnings(config: &config::Config, link_exists: impl Fn(&str) -> bool) -> Vec<String> {
    let mut warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    if let Some(wan) = config.router.wan.as_deref().filter(|wan| !link_exists(wan)) {
        let missing = config::Diagnostic {
            file: config.path.clone(),
            line: 0,
            column: 0,
            message: format!(
                "[router] wan = {wan:?}, but this machine has no interface {wan} (`ip link` \
                 does not list it)"
            ),
            help: Some(
                "the firewall openings and XDP counters for the WAN port match nothing until \
                 it exists: give the WAN port's name as `ip link` shows it, e.g. wan = \"eth0\""
                    .to_string(),
            ),
        };
        warnings.push(missing.to_string());
    }
    warnings
}

fn has_ike_sites(config: &config::Config) -> bool {
    config
        .ipsec
        .iter()
        .any(|s| matches!(s.keying, config::ipsec::Keying::Ike(_)))
}

/// A VICI connection to the charon on the default socket, if one answers.
async fn running_charon() -> Option<ike::Vici> {
    ike::Vici::connect(std::path::Path::new(ike::DEFAULT_SOCKET))
        .await
        .ok()
}

/// Applies the config's IKE sites through charon, starting charon where none runs. Without IKE
/// sites, only unloads what vpn-ctl loaded for sites since removed, if a charon runs. What is
/// weak about the sites goes to `warnings` (the daemon logs them when they change, not on
/// every tick).
async fn ike_up(
    config: &config::Config,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Vec<String>> {
    let socket = std::path::Path::new(ike::DEFAULT_SOCKET);
    let mut changes = Vec::new();
    for site in &config.ipsec {
        if let config::ipsec::Keying::Ike(ike) = &site.keying {
            let weak = ike.weak_algorithms();
            if !weak.is_empty() {
                warnings.push(format!(
                    "site {}: uses weak algorithms ({}), allowed by allow_weak; switch to \
                     stronger ones when the peer supports them",
                    site.name,
                    weak.join(", ")
                ));
            }
        }
    }
    let aggressive = aggressive_sites(config);
    if !aggressive.is_empty() {
        warnings.push(format!(
            "{}: IKEv1 aggressive mode with a pre-shared key, so the charon vpn-ctl starts \
             answers it (a FRITZ!Box initiating needs that). It is weak: the first message of the \
             exchange carries a hash of the key that an eavesdropper can test guesses against \
             offline, so use a long random key",
            aggressive.join(", ")
        ));
    }
    let mut launch = charon_launch();
    launch.aggressive_psk = !aggressive.is_empty();
    let (mut vici, ours) = if has_ike_sites(config) {
        let start = launch.ensure()?;
        match &start {
            ike::CharonStart::Started { .. } => changes.push(format!("IKE: {start}")),
            ike::CharonStart::Running { ours: false, .. } if !aggressive.is_empty() => {
                warnings.push(foreign_charon_hint(&aggressive));
            }
            ike::CharonStart::Running { .. } => {}
        }
        let ours = matches!(start, ike::CharonStart::Running { ours: true, .. });
        (ike::Vici::connect(socket).await?, ours)
    } else {
        match running_charon().await {
            Some(vici) => (vici, launch.runs_ours()),
            None => return Ok(changes),
        }
    };
    // A charon vpn-ctl started earlier answers aggressive mode exactly while the config has
    // such a site: its strongswan.conf is rewritten and reread, no SA is touched.
    if ours && launch.update_conf()? {
        vici.reload_settings().await?;
        changes.push(format!(
            "IKE: charon {} IKEv1 aggressive mode with a pre-shared key now (settings reloaded)",
            if launch.aggressive_psk {
                "answers"
            } else {
                "refuses"
            }
        ));
    }
    changes.extend(ike::up(&mut vici, &config.ipsec, &ike::UpOptions::default()).await?);
    Ok(changes)
}

/// How `up` starts charon, and recognises the one it started: the default VICI socket and
/// configuration directory.
fn charon_launch() -> ike::CharonLaunch {
    ike::CharonLaunch::new(
        std::path::Path::new(ike::DEFAULT_SOCKET),
        std::path::Path::new(ike::charon::DEFAULT_CONF_DIR),
    )
}

/// The config's IKEv1 aggressive-mode sites, by name: their peer (a FRITZ!Box) initiates in
/// aggressive mode with a pre-shared key too, which charon refuses unless told otherwise.
fn aggressive_sites(config: &config::Config) -> Vec<&str> {
    config
        .ipsec
        .iter()
        .filter(|s| {
            matches!(&s.keying, config::ipsec::Keying::Ike(ike)
                if ike.version == config::ipsec::IkeVersion::V1Aggressive)
        })
        .map(|s| s.name.as_str())
        .collect()
}

/// What a charon vpn-ctl did not start needs for the aggressive-mode `sites`, in words: vpn-ctl
/// cannot see its settings, so this is said whenever such a charon serves such a site.
fn foreign_charon_hint(sites: &[&str]) -> String {
    format!(
        "IKE: the charon on {} was not started by vpn-ctl: for {} to be answered when the peer \
         initiates (a FRITZ!Box after a reboot, a new address or its own renewal), its \
         strongswan.conf needs `charon.i_dont_care_about_security_and_use_aggressive_mode_psk = \
         yes` (then `swanctl --reload-settings`); without it only this router's own attempts \
         bring the tunnel up",
        ike::DEFAULT_SOCKET,
        sites.join(", ")
    )
}

/// The IKE SAs of `vpn-ctl status`.
fn render_ike(sas: &[ike::IkeSa]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for sa in sas.iter().filter(|sa| ike::site_of(&sa.name).is_some()) {
        let _ = writeln!(
            out,
            "IKE SA {} (IKEv{}): {}{}",
            sa.name,
            sa.version,
            sa.state,
            sa.established
                .map(|s| format!(", established {}", wireguard::human_age(s)))
                .unwrap_or_default()
        );
        for child in &sa.children {
            let _ = writeln!(
                out,
                "  child {}: {}, {} packets in, {} packets out",
                child.name, child.state, child.packets_in, child.packets_out
            );
        }
    }
    out
}

/// What the firewall does to the tunnels of the config at `path`, for `diag`, which also
/// runs without a config: then, or when the firewall cannot be read, nothing.
fn firewall_of(path: &Path) -> Vec<firewall::Finding> {
    let Ok(config) = config::load(path) else {
        return Vec::new();
    };
    firewall::check(&config).unwrap_or_else(|e| {
        log::warn!("cannot check the firewall: {e:#}");
        Vec::new()
    })
}

fn print_changes(out: &mut impl Write, changes: &[String], nothing: &str) -> std::io::Result<()> {
    if changes.is_empty() {
        writeln!(out, "{nothing}")?;
    }
    for line in changes {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Whether `error` is standard output's reader having gone away (`vpn-ctl status | head`):
/// the command then ends quietly, as `wg` and `ip` do, not with an error message.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(|e| e.io_error_kind())
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// Applies `step` (`xfrm::up` or `xfrm::down`) to the config's IPsec sites. Without sites it
/// still runs, to remove what vpn-ctl installed for sites since deleted from the config, but
/// a kernel without XFRM netlink is then no error.
fn ipsec_sites(
    config: &config::Config,
    step: fn(&[config::ipsec::IpsecSite]) -> anyhow::Result<Vec<String>>,
) -> anyhow::Result<Vec<String>> {
    match step(&config.ipsec) {
        Err(e) if config.ipsec.is_empty() => {
            log::debug!("no IPsec sites and XFRM unavailable: {e:#}");
            Ok(Vec::new())
        }
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_warns_about_a_wan_port_that_does_not_exist_and_about_the_config_s_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vpn.toml");
        let config = config::parse(&path, "[router]\nwan = \"eth9\"\n").unwrap();
        assert_eq!(
            config_warnings(&config, |name| name == "eth9"),
            [] as [String; 0]
        );
        assert_eq!(
            config_warnings(&config, |_| false),
            [format!(
                "{}: [router] wan = \"eth9\", but this machine has no interface eth9 (`ip link` \
                 does not list it)\n  help: the firewall openings and XDP counters for the WAN \
                 port match nothing until it exists: give the WAN port's name as `ip link` shows \
                 it, e.g. wan = \"eth0\"",
                path.display()
            )]
        );

        let mut config = config::parse(&path, "").unwrap();
        config.warnings.push(config::Diagnostic {
            file: path.clone(),
            line: 3,
            column: 7,
            message: "odd".to_string(),
            help: Some("fix it".to_string()),
        });
        assert_eq!(
            config_warnings(&config, |_| false),
            [format!("{}:3:7: odd\n  help: fix it", path.display())]
        );
    }
}
