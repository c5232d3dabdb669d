//! PLACEHOLDER for the metrics module written on the `metrics` branch; the lead replaces this
//! file with the real one when merging. It only has the agreed signatures and answers
//! `/metrics` with a fixed text, so that the daemon's wiring can be built and tested. Nothing
//! else lives here.

use std::{
    future::Future,
    sync::{Arc, Mutex},
};

use crate::{config::Config, xdp::WanProgram};

/// The first line of the placeholder's answer (the daemon tests recognise it).
pub const PLACEHOLDER_MARKER: &str = "# vpn-ctl placeholder metrics";

#[derive(Debug, Clone)]
pub struct Options {
    pub max_peer_series: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_peer_series: 10_000,
        }
    }
}

pub trait Source: Send + Sync + 'static {
    fn collect(&self) -> anyhow::Result<Snapshot>;
}

#[derive(Debug, Default)]
pub struct Snapshot {
    interfaces: usize,
}

pub struct SystemSource {
    config: tokio::sync::watch::Receiver<Arc<Config>>,
    _xdp: Option<Arc<Mutex<WanProgram>>>,
}

impl SystemSource {
    pub fn new(
        config: tokio::sync::watch::Receiver<Arc<Config>>,
        xdp: Option<Arc<Mutex<WanProgram>>>,
    ) -> SystemSource {
        SystemSource { config, _xdp: xdp }
    }
}

impl Source for SystemSource {
    fn collect(&self) -> anyhow::Result<Snapshot> {
        Ok(Snapshot {
            interfaces: self.config.borrow().wireguard.len(),
        })
    }
}

pub fn render(snapshot: &Snapshot, _options: &Options) -> String {
    format!(
        "{PLACEHOLDER_MARKER}\nvpnctl_placeholder_interfaces {}\n",
        snapshot.interfaces
    )
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    source: Arc<dyn Source>,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let options = Arc::new(options);
    let accept = async {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let Ok(mut stream) = stream.into_std() else {
                continue;
            };
            let (source, options) = (source.clone(), options.clone());
            tokio::task::spawn_blocking(move || {
                use std::io::{Read as _, Write as _};
                let _ = stream.set_nonblocking(false);
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = match source.collect() {
                    Ok(s) => render(&s, &options),
                    Err(e) => format!("# error: {e:#}\n"),
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body.as_bytes());
                let _ = stream.shutdown(std::net::Shutdown::Write);
            });
        }
    };
    tokio::select! {
        () = accept => Ok(()),
        () = shutdown => Ok(()),
    }
}
