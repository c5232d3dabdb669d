//! What each command does: load the config, call the library, print the result.

use std::{
    io::{IsTerminal as _, Read as _},
    path::Path,
};

use anyhow::Context as _;

use crate::{
    cli::{Cli, Command, ImportSource, PeerAction},
    client, config, import,
    key::Secret,
    peer, wireguard,
};

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Diag(args) => {
            let options = args.options()?;
            let mut stdout = std::io::stdout();
            let report = runtime.block_on(crate::diag::run(&options, &mut stdout))?;
            if args.json {
                serde_json::to_writer_pretty(&mut stdout, &report)?;
                println!();
            } else {
                print!("{}", crate::diag::view::render_report(&report));
            }
        }
        Command::Up { backend } => {
            let config = config::load(&cli.config)?;
            let report = runtime.block_on(wireguard::up(&config, backend))?;
            print_report(
                &report,
                "everything already matches the config; nothing changed",
            );
        }
        Command::Down => {
            let config = config::load(&cli.config)?;
            let report = runtime.block_on(wireguard::down(&config))?;
            print_report(&report, "nothing to remove");
        }
        Command::Status { json } => {
            let config = config::load(&cli.config)?;
            let status = runtime.block_on(wireguard::status(&config))?;
            if json {
                serde_json::to_writer_pretty(std::io::stdout(), &status)?;
                println!();
            } else {
                print!("{}", wireguard::render_status(&status));
            }
        }
        Command::Genkey => println!("{}", Secret::generate_private().expose_base64()),
        Command::Genpsk => println!("{}", Secret::generate_preshared().expose_base64()),
        Command::Pubkey => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the private key from stdin")?;
            let key: Secret = text.parse().context(
                "stdin does not hold a private key (e.g. `vpn-ctl genkey | vpn-ctl pubkey`)",
            )?;
            println!("{}", key.public_key());
        }
        Command::Peer { action } => peer_command(&cli.config, action)?,
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
            println!("wrote {}", written.config.display());
            for f in &written.key_files {
                println!("wrote {} (mode 0600)", f.display());
            }
            for note in &written.notes {
                println!("note: {note}");
            }
            if let Some(problems) = &written.problems {
                println!(
                    "the imported config needs fixing before `vpn-ctl up` accepts it:\n{problems}"
                );
            }
        }
        Command::UserspaceDevice { name } => crate::userspace::run_device(&name)?,
    }
    Ok(())
}

fn peer_command(config_path: &Path, action: PeerAction) -> anyhow::Result<()> {
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
            print!("{text}");
            if std::io::stdout().is_terminal() {
                println!();
                print!("{}", client::qr_terminal(&text)?);
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

fn print_report(report: &wireguard::Report, nothing: &str) {
    if report.changes.is_empty() {
        println!("{nothing}");
    }
    for line in &report.changes {
        println!("{line}");
    }
}
