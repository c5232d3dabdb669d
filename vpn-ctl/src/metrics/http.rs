//! The HTTP side: `GET /metrics` and `GET /healthz` over HTTP/1.1 (hyper), hardened so that
//! no client can disturb the daemon:
//!
//! - a client must send its request head within [`Limits::header_read_timeout`] (also an idle
//!   keep-alive connection: it is closed after that long without a new request);
//! - request heads are capped at [`Limits::max_header_bytes`] (431 beyond) and bodies are
//!   never read;
//! - at most [`Limits::max_connections`] connections are served at once; more get a 503;
//! - a connection lives at most [`Limits::connection_lifetime`], then it is closed after the
//!   response in flight (a client that stops reading its response is dropped
//!   [`Limits::shutdown_grace`] later);
//! - concurrent scrapes share one collection: a scrape waits for the collection in progress
//!   when that one started after the scrape arrived, otherwise it starts the next one, so a
//!   burst of scrapes costs at most two collections, run on tokio's blocking pool.

use std::{
    convert::Infallible,
    future::Future,
    pin::pin,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{ALLOW, CONTENT_TYPE as CONTENT_TYPE_HEADER},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::AsyncWriteExt as _,
    net::{TcpListener, TcpStream},
    sync::{Mutex, Semaphore, watch},
    task::JoinSet,
};

use super::{Options, Source, render};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bounds on what clients may cost. [`serve`] uses the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time a client has to send a whole request head. Default: 10 s.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers). Default: 8 KiB (hyper's minimum).
    pub max_header_bytes: usize,
    /// Connections served at once. Default: 32.
    pub max_connections: usize,
    /// How long one connection may stay open. Default: 5 minutes.
    pub connection_lifetime: Duration,
    /// How long a connection being closed (lifetime over, or shutdown) may take to finish its
    /// response. Default: 10 s.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 8 * 1024,
            max_connections: 32,
            connection_lifetime: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// hyper's smallest read buffer; also the floor of [`Limits::max_header_bytes`].
const MIN_BUFFER: usize = 8192;

/// Serves GET /metrics and GET /healthz on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    source: Arc<dyn Source>,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(listener, source, options, Limits::default(), shutdown).await
}

/// [`serve`] with other [`Limits`].
pub async fn serve_with(
    listener: TcpListener,
    source: Arc<dyn Source>,
    options: Options,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener
        .local_addr()
        .context("the metrics listener has no address")?;
    log::info!("metrics: serving http://{address}/metrics");
    let scraper = Arc::new(Scraper {
        source,
        options,
        last: Arc::new(Mutex::new(None)),
    });
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before accept: neither
                    // is a reason to stop serving.
                    log::warn!("metrics: accepting a connection on {address} failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            connections.spawn(reject(stream));
            continue;
        };
        let (scraper, limits, stopping) = (scraper.clone(), limits.clone(), stopping.clone());
        connections.spawn(async move {
            connection(stream, scraper, &limits, stopping).await;
            drop(permit);
        });
    }
    let _ = stop.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.shutdown().await;
    }
    log::info!("metrics: stopped serving on {address}");
    Ok(())
}

/// Serves one connection within the limits.
async fn connection(
    stream: TcpStream,
    scraper: Arc<Scraper>,
    limits: &Limits,
    mut stopping: watch::Receiver<bool>,
) {
    let service = service_fn(move |request| {
        let scraper = scraper.clone();
        async move { Ok::<_, Infallible>(scraper.respond(request).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(MIN_BUFFER))
        .max_header_size(limits.max_header_bytes)
        .max_headers(64);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
    let finished = tokio::select! {
        result = conn.as_mut() => Some(result),
        () = tokio::time::sleep(limits.connection_lifetime) => None,
        _ = stopping.wait_for(|stop| *stop) => None,
    };
    let result = match finished {
        Some(result) => result,
        None => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(limits.shutdown_grace, conn).await {
                Ok(result) => result,
                Err(_) => return, // dropping the connection closes it
            }
        }
    };
    if let Err(e) = result {
        // Timeouts, oversized heads and clients going away end up here: the client's problem.
        log::debug!("metrics: connection ended: {e}");
    }
}

/// Turns a connection away when all slots are taken: a 503, without reading the request.
async fn reject(mut stream: TcpStream) {
    const BODY: &str = "too many connections to the metrics endpoint; try again\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Scrapes, sharing one collection among concurrent requests.
struct Scraper {
    source: Arc<dyn Source>,
    options: Options,
    /// The latest collection and when it started; the lock is held while one runs.
    last: Arc<Mutex<Option<Collected>>>,
}

#[derive(Clone)]
struct Collected {
    started: Instant,
    result: Result<Bytes, Arc<str>>,
}

impl Scraper {
    async fn respond(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        let method = request.method();
        let readable = method == Method::GET || method == Method::HEAD;
        match path {
            "/metrics" if readable => match self.scrape().await {
                Ok(body) => response(StatusCode::OK, CONTENT_TYPE, body),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("collecting the metrics failed: {e}\n"),
                ),
            },
            "/healthz" if readable => text(StatusCode::OK, "ok\n".to_string()),
            "/metrics" | "/healthz" => {
                let mut r = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{method} is not supported here; use GET\n"),
                );
                r.headers_mut()
                    .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
                r
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; vpn-ctl serves /metrics and /healthz\n".to_string(),
            ),
        }
    }

    /// The exposition, from a collection that started after this call.
    async fn scrape(&self) -> Result<Bytes, Arc<str>> {
        let arrived = Instant::now();
        let (source, options, last) =
            (self.source.clone(), self.options.clone(), self.last.clone());
        // In its own task: a client that goes away mid-collection does not cancel it (and
        // release the lock while its blocking work still runs).
        let task = tokio::spawn(async move {
            let mut last = last.lock().await;
            if let Some(done) = last.as_ref().filter(|c| c.started >= arrived) {
                return done.result.clone();
            }
            let started = Instant::now();
            let result = tokio::task::spawn_blocking(move || {
                let mut snapshot = source.collect()?;
                snapshot.duration = Some(started.elapsed());
                Ok::<_, anyhow::Error>(Bytes::from(render(&snapshot, &options)))
            })
            .await;
            let result = match result {
                Ok(Ok(body)) => Ok(body),
                Ok(Err(e)) => Err(Arc::from(format!("{e:#}"))),
                Err(e) => Err(Arc::from(format!("the collection panicked: {e}"))),
            };
            if let Err(e) = &result {
                log::warn!("metrics: a scrape failed: {e}");
            }
            *last = Some(Collected {
                started,
                result: result.clone(),
            });
            result
        });
        task.await
            .unwrap_or_else(|e| Err(Arc::from(format!("the scrape task failed: {e}"))))
    }
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE_HEADER,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    response(status, "text/plain; charset=utf-8", Bytes::from(body))
}
