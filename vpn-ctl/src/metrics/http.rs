//! The HTTP side: `GET /metrics` and `GET /healthz` over HTTP/1.1 (hyper), hardened so that
//! no client can disturb the daemon:
//!
//! - a client must send its request head within [`Limits::header_read_timeout`] (also an idle
//!   keep-alive connection: it is closed after that long without a new request);
//! - request heads are capped at [`Limits::max_header_bytes`] (431 beyond) and bodies are
//!   never read;
//! - at most [`Limits::max_connections`] connections are open at once. When a new one arrives
//!   and every place is taken, a connection that is waiting for a request head (a new one that
//!   has not sent a whole head yet, or a keep-alive one between requests) is closed to make
//!   room: one of the client source (IPv4 address, IPv6 /64) with the most waiting
//!   connections, and of those the one that has waited longest. So clients that trickle their
//!   heads or sit idle cannot keep out a client that sends its request at once, and one
//!   source cannot push out the idle connections of others while it has more. A connection
//!   whose request is being answered (until its response is written out) is never closed for
//!   this; only when every one is does a new connection get a 503;
//! - a response that makes no progress for [`Limits::write_stall_timeout`] (the client stopped
//!   reading it) ends its connection;
//! - a connection lives at most [`Limits::connection_lifetime`], then it is closed after the
//!   response in flight (a client that stops reading its response is dropped
//!   [`Limits::shutdown_grace`] later);
//! - concurrent scrapes share one collection: a scrape waits for the collection in progress
//!   when that one started after the scrape arrived, otherwise it starts the next one, so a
//!   burst of scrapes costs at most two collections, run on tokio's blocking pool.

use std::{
    cmp::Reverse,
    collections::HashMap,
    convert::Infallible,
    future::Future,
    io,
    net::{IpAddr, Ipv6Addr},
    pin::{Pin, pin},
    sync::{Arc, MutexGuard},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{ALLOW, CONTENT_TYPE as CONTENT_TYPE_HEADER},
    rt::ReadBufCursor,
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::AsyncWriteExt as _,
    net::{TcpListener, TcpStream},
    sync::{Mutex, OwnedSemaphorePermit, Semaphore, oneshot, watch},
    task::JoinSet,
};

use super::{Options, Source, render};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bounds on what clients may cost. [`serve`] uses the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time a client has to send a whole request head; also how long a keep-alive connection
    /// may wait for its next request. Default: 10 s. (A slow client cannot keep anyone out,
    /// see [`Limits::max_connections`], so this need not be short: it only lets go of
    /// connections whose place nobody has asked for.)
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers). Default: 8 KiB (hyper's minimum).
    pub max_header_bytes: usize,
    /// Connections open at once. Default: 32. When all are taken, a new connection takes the
    /// place of one waiting for a request head; only when all are being answered does it get
    /// a 503 (see the module docs).
    pub max_connections: usize,
    /// How long one connection may stay open. Default: 5 minutes.
    pub connection_lifetime: Duration,
    /// How long a response may make no progress (a client that stops reading it) before the
    /// connection is closed. Default: 10 s. Such a client is being answered, so it is never
    /// closed to make room; this is what ends it.
    pub write_stall_timeout: Duration,
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
            write_stall_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// hyper's smallest read buffer; also the floor of [`Limits::max_header_bytes`].
const MIN_BUFFER: usize = 8192;

/// How long a new connection waits for the one closed to make room for it to go away. That
/// takes one turn of the closed connection's task; a second means something is wrong, and the
/// new connection gets a 503.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

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
    let table = Arc::new(Table::default());
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before accept: neither
                    // is a reason to stop serving.
                    log::warn!("metrics: accepting a connection on {address} failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(permit) = room(&permits, &table).await else {
            connections.spawn(reject(stream));
            continue;
        };
        let (slot, evicted) = Slot::new(table.clone(), source_of(peer.ip()), permit);
        let (scraper, limits, stopping) = (scraper.clone(), limits.clone(), stopping.clone());
        connections.spawn(async move {
            connection(stream, slot, evicted, scraper, &limits, stopping).await;
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

/// A place for a new connection: a free one, or else the place of a waiting connection closed
/// for it ([`Table::evict`]). None when every connection is being answered.
async fn room(permits: &Arc<Semaphore>, table: &Table) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = permits.clone().try_acquire_owned() {
        return Some(permit);
    }
    table.evict()?;
    // The closed connection's task lets go of its permit the next time it runs. Waiting for
    // that keeps the open connections at the cap, and it gives the connections accepted before
    // this one their turn to read their request heads before the next eviction: one whose
    // client sent its request at once is being answered by then, and safe.
    let permit = tokio::time::timeout(EVICTION_WAIT, permits.clone().acquire_owned()).await;
    permit.ok()?.ok()
}

/// Serves one connection within the limits, until it ends or is closed to make room.
async fn connection(
    stream: TcpStream,
    slot: Arc<Slot>,
    evicted: oneshot::Receiver<()>,
    scraper: Arc<Scraper>,
    limits: &Limits,
    mut stopping: watch::Receiver<bool>,
) {
    let service = {
        let slot = slot.clone();
        service_fn(move |request| {
            // hyper calls this once the request head is complete.
            slot.answering();
            let (scraper, slot) = (scraper.clone(), slot.clone());
            async move {
                let response = scraper.respond(request).await;
                slot.writing();
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(MIN_BUFFER))
        .max_header_size(limits.max_header_bytes)
        .max_headers(64)
        // A client may shut its side down once it has sent its request (`nc -N` does): it
        // still gets its answer. The collection runs on even if the client is gone, so
        // noticing that early would save nothing.
        .half_close(true);
    let socket = Socket {
        io: TokioIo::new(stream),
        slot,
        stall: Stall::new(limits.write_stall_timeout),
    };
    let mut conn = pin!(builder.serve_connection(socket, service));
    let served = async {
        let finished = tokio::select! {
            result = conn.as_mut() => Some(result),
            () = tokio::time::sleep(limits.connection_lifetime) => None,
            _ = stopping.wait_for(|stop| *stop) => None,
        };
        let result = match finished {
            Some(result) => result,
            None => {
                conn.as_mut().graceful_shutdown();
                match tokio::time::timeout(limits.shutdown_grace, conn.as_mut()).await {
                    Ok(result) => result,
                    Err(_) => return, // dropping the connection closes it
                }
            }
        };
        if let Err(e) = result {
            // Timeouts, oversized heads and clients going away end up here: the client's
            // problem.
            log::debug!("metrics: connection ended: {e}");
        }
    };
    tokio::select! {
        () = served => {}
        // Evicted while waiting for a request head: there is nothing to finish, and dropping
        // the connection closes it. (A head that completes at the very moment of the eviction
        // is dropped with it, as if it had come a moment later.)
        _ = evicted => {}
    }
}

/// Turns a connection away when every connection is being answered: a 503, without reading
/// the request.
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

/// The open connections and what each is doing, to choose the one that makes room for a new
/// connection.
#[derive(Default)]
struct Table(std::sync::Mutex<Entries>);

#[derive(Default)]
struct Entries {
    next_id: u64,
    /// At most [`Limits::max_connections`] of them: a scan is cheaper than any index.
    list: Vec<Entry>,
}

struct Entry {
    id: u64,
    source: IpAddr,
    phase: Phase,
    /// Fired (and the entry removed) to close the connection.
    evict: oneshot::Sender<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting since then for a request head: the first one, or the next one after a response.
    Waiting(Instant),
    /// The request head is complete and the response is being made.
    Answering,
    /// The response is made and hyper is writing it out.
    Writing,
}

impl Table {
    fn entries(&self) -> MutexGuard<'_, Entries> {
        // No code panics while holding the lock; if some did, the list is still consistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a new connection from `source`, waiting for its first request head; the receiver
    /// fires when it is to be closed.
    fn insert(&self, source: IpAddr) -> (u64, oneshot::Receiver<()>) {
        let (evict, evicted) = oneshot::channel();
        let mut entries = self.entries();
        let id = entries.next_id;
        entries.next_id += 1;
        entries.list.push(Entry {
            id,
            source,
            phase: Phase::Waiting(Instant::now()),
            evict,
        });
        (id, evicted)
    }

    fn remove(&self, id: u64) {
        self.entries().list.retain(|entry| entry.id != id);
    }

    /// Changes the phase of connection `id` (if it is still there) with `change`.
    fn update(&self, id: u64, change: impl FnOnce(&mut Phase)) {
        if let Some(entry) = self.entries().list.iter_mut().find(|e| e.id == id) {
            change(&mut entry.phase);
        }
    }

    /// Closes a waiting connection to make room ([`victim`]); None if none is waiting.
    fn evict(&self) -> Option<()> {
        let entry = {
            let mut entries = self.entries();
            let victim = victim(&entries.list)?;
            entries.list.swap_remove(victim)
        };
        if let Phase::Waiting(since) = entry.phase {
            log::debug!(
                "metrics: closing a connection from {} that waited {:?} for a request, to make \
                 room for a new one",
                entry.source,
                since.elapsed()
            );
        }
        // The task may have ended already, dropping the receiver: then it is closed anyway.
        let _ = entry.evict.send(());
        Some(())
    }
}

/// Which connection makes room for a new one: a waiting one, of the source with the most
/// waiting connections (so one source cannot push out the others' idle connections while it
/// has more), and of those the one that has waited longest (a client that sent its request at
/// once has been waiting the shortest).
fn victim(list: &[Entry]) -> Option<usize> {
    let waiting = |entry: &Entry| match entry.phase {
        Phase::Waiting(since) => Some(since),
        Phase::Answering | Phase::Writing => None,
    };
    let mut per_source: HashMap<IpAddr, usize> = HashMap::new();
    for entry in list.iter().filter(|e| waiting(e).is_some()) {
        *per_source.entry(entry.source).or_default() += 1;
    }
    list.iter()
        .enumerate()
        .filter_map(|(i, entry)| {
            let since = waiting(entry)?;
            Some((i, per_source[&entry.source], since))
        })
        .max_by_key(|&(_, count, since)| (count, Reverse(since)))
        .map(|(i, _, _)| i)
}

/// The source a connection is counted against: its IPv4 address, or the /64 of its IPv6 one
/// (a single host usually has a whole /64 to pick addresses from).
fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & (u128::MAX << 64))),
        v4 => v4,
    }
}

/// A connection's place in the [`Table`], shared by its service and its socket, which report
/// its phase. Dropping the last handle (when the connection is dropped) gives the place and
/// the permit back.
struct Slot {
    table: Arc<Table>,
    id: u64,
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    fn new(
        table: Arc<Table>,
        source: IpAddr,
        permit: OwnedSemaphorePermit,
    ) -> (Arc<Slot>, oneshot::Receiver<()>) {
        let (id, evicted) = table.insert(source);
        let slot = Slot {
            table,
            id,
            _permit: permit,
        };
        (Arc::new(slot), evicted)
    }

    /// A request head is complete.
    fn answering(&self) {
        self.table
            .update(self.id, |phase| *phase = Phase::Answering);
    }

    /// The response is made; hyper writes it out next.
    fn writing(&self) {
        self.table.update(self.id, |phase| *phase = Phase::Writing);
    }

    /// hyper has written out everything it had: after a response, the connection waits for
    /// the next request from now on.
    fn flushed(&self) {
        self.table.update(self.id, |phase| {
            if *phase == Phase::Writing {
                *phase = Phase::Waiting(Instant::now());
            }
        });
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.remove(self.id);
    }
}

/// The connection's socket as hyper sees it, reporting when hyper has written out a response:
/// hyper flushes the socket only once its own write buffer is empty (`Buffered::poll_flush`),
/// so a response is out when a flush after it succeeds. Until then the connection is not
/// waiting, even if the client reads slowly.
struct Socket {
    io: TokioIo<TcpStream>,
    slot: Arc<Slot>,
    stall: Stall,
}

/// The write side's watch for a client that stops reading: armed when a write or flush cannot
/// make progress, disarmed when one does; a write still stuck when it fires fails with
/// `TimedOut`, which ends the connection.
struct Stall {
    limit: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stall {
    fn new(limit: Duration) -> Stall {
        Stall {
            limit,
            deadline: None,
        }
    }

    /// `poll`'s result, or `TimedOut` when it has been pending for longer than the limit.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.deadline = None;
            return poll;
        }
        let limit = self.limit;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.deadline = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client read nothing of its response for {limit:?}"),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Read for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.stall.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.stall.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.io).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            self.slot.flushed();
        }
        self.stall.watch(cx, flushed)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
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
