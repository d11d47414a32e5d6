//! Listeners and workers: each worker is a thread running its own single-threaded tokio
//! runtime with its own `SO_REUSEPORT` listeners (HTTP, and HTTPS when enabled), so
//! connections, upstream pools and request bookkeeping stay on one core without locks or
//! cross-thread wake-ups.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::server::Acceptor;
use rustls_pki_types::CertificateDer;
use sluice_model::Http2Settings;
use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::proxy_protocol;
use crate::stall::{Stall, StallIo, Watched};
use crate::tls::client_auth::{ClientCert, ClientCheck};
use crate::tls::hello::{self, Rewind};
use crate::{Shared, fast, handler, http2, idle, passthrough, pool};

/// Where and how the proxy listens.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The address to bind (`--bind-address`).
    pub bind_address: IpAddr,
    /// The HTTP port (`--http-port`); 0 picks a free port (see [`Proxy::http_addr`]).
    pub http_port: u16,
    /// The HTTPS port (`--https-port`), or none; 0 picks a free port.
    pub https_port: Option<u16>,
    /// Worker threads (`--workers`).
    pub workers: usize,
    /// How long in-flight requests, WebSockets and streams may finish once the proxy stops
    /// accepting; what is still open then is closed (WebSocket close frames, FIN).
    pub shutdown_grace: Duration,
}

/// A worker's shutdown signals, carried by every connection and relay it serves.
#[derive(Clone, Debug)]
pub(crate) struct Drain {
    /// Turns true when the grace period is over: relays still open close themselves cleanly
    /// and hyper connections are dropped.
    pub over: watch::Receiver<bool>,
    /// Held while a connection or relay runs: the worker waits for every holder to go.
    pub live: watch::Receiver<()>,
}

impl Drain {
    /// Resolves once the grace period is over.
    pub async fn over(&self) {
        let mut over = self.over.clone();
        let _ = over.wait_for(|o| *o).await;
    }
}

/// Facts about one client connection, shared by its requests.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub remote: SocketAddr,
    /// The worker's shutdown signals (held as long as the connection runs).
    pub drain: Drain,
    /// The client's IP as a header value, made once per connection.
    pub remote_ip: HeaderValue,
    /// The port the client connected to, as a header value (`X-Forwarded-Port`).
    pub local_port: HeaderValue,
    /// TLS details, for connections on the HTTPS port.
    pub tls: Option<TlsInfo>,
    /// A PROXY protocol header said the client connected to port 443 of the load balancer:
    /// the request counts as HTTPS (ingress-nginx's `$pass_access_scheme`).
    pub proxied_https: bool,
}

/// What a TLS connection's handshake established.
#[derive(Debug)]
pub(crate) struct TlsInfo {
    /// The client's certificate chain, as presented (empty without one).
    pub presented: Vec<CertificateDer<'static>>,
    /// The client-certificate check of the handshake's host, and its verdict: reused by
    /// requests whose host has the same check.
    pub checked: Option<(Arc<ClientCheck>, ClientCert)>,
}

impl ConnInfo {
    fn new(remote: SocketAddr, local_port: u16, tls: Option<TlsInfo>, drain: Drain) -> Self {
        let ip =
            HeaderValue::from_str(&remote.ip().to_string()).expect("an IP is a valid header value");
        let port = HeaderValue::from(local_port);
        Self { remote, drain, remote_ip: ip, local_port: port, tls, proxied_https: false }
    }

    /// With the PROXY protocol: the client the header names (when the load balancer is
    /// trusted, `proxy-real-ip-cidr`, as NGINX's `real_ip_header proxy_protocol`), and the
    /// port it connected to (`$proxy_protocol_server_port`, always).
    fn proxied(mut self, proxied: Option<proxy_protocol::Proxied>, shared: &Shared) -> Self {
        let Some(p) = proxied else { return self };
        let table = shared.state.load();
        if table.table.https.real_ip.trusted.contains(self.remote.ip()) {
            self.remote = p.source;
            self.remote_ip = HeaderValue::from_str(&p.source.ip().to_string())
                .expect("an IP is a valid header value");
        }
        self.local_port = HeaderValue::from(p.destination.port());
        self.proxied_https = p.destination.port() == 443;
        self
    }
}

/// With `use-proxy-protocol`, reads the PROXY header of a new connection: `Err` when the
/// connection must be closed (no header, or a broken one, as NGINX does).
async fn proxy_header(
    stream: &mut TcpStream,
    remote: SocketAddr,
    shared: &Shared,
) -> Result<Option<proxy_protocol::Proxied>, ()> {
    if !shared.state.load().table.https.real_ip.proxy_protocol {
        return Ok(None);
    }
    proxy_protocol::read(stream).await.map_err(|e| {
        tracing::debug!(%remote, error = %e, "broken PROXY protocol header; connection closed");
    })
}

/// The running proxy.
pub struct Proxy {
    http_addr: SocketAddr,
    https_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    workers: std::sync::Mutex<Vec<JoinHandle<()>>>,
    worker_count: usize,
    alive: Arc<AtomicUsize>,
}

/// Counts a worker as alive until its thread ends, normally or by panic.
struct AliveGuard(Arc<AtomicUsize>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Proxy {
    /// Binds the ports and starts the workers. Fails if a port cannot be bound.
    pub fn start(config: ProxyConfig, shared: &'static Shared) -> io::Result<Proxy> {
        let workers = config.workers.max(1);
        let http = bind_all(SocketAddr::new(config.bind_address, config.http_port), workers)?;
        let http_addr = http[0].local_addr()?;
        let https = match config.https_port {
            Some(port) => Some(bind_all(SocketAddr::new(config.bind_address, port), workers)?),
            None => None,
        };
        let https_addr = https.as_ref().map(|l| l[0].local_addr()).transpose()?;
        if let Some(addr) = https_addr {
            let _ = shared.https_port.set(addr.port());
        }
        let mut https = https.map(Vec::into_iter);
        let listeners: Vec<(StdListener, Option<StdListener>)> =
            http.into_iter().map(|h| (h, https.as_mut().and_then(Iterator::next))).collect();
        let (shutdown, rx) = watch::channel(false);
        let alive = Arc::new(AtomicUsize::new(workers));
        let mut handles = Vec::with_capacity(workers);
        let nofile = open_file_limit();
        for (i, (http, https)) in listeners.into_iter().enumerate() {
            let rx = rx.clone();
            let grace = config.shutdown_grace;
            let guard = AliveGuard(alive.clone());
            let handle = std::thread::Builder::new().name(format!("sluice-worker-{i}")).spawn(
                move || {
                    let _guard = guard;
                    worker(http, https, shared, rx, grace, nofile)
                },
            )?;
            handles.push(handle);
        }
        Ok(Proxy {
            http_addr,
            https_addr,
            shutdown,
            workers: std::sync::Mutex::new(handles),
            worker_count: workers,
            alive,
        })
    }

    /// True while every worker thread runs (for `/healthz`).
    pub fn healthy(&self) -> bool {
        self.alive.load(Ordering::Relaxed) == self.worker_count
    }

    /// The bound HTTP address (useful with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound HTTPS address, when HTTPS is served.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, and waits
    /// for the workers to end.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for w in workers {
            let _ = w.join();
        }
    }
}

/// One listener per worker on `addr` (with `SO_REUSEPORT` when there are several; port 0
/// resolves once, for all).
fn bind_all(addr: SocketAddr, workers: usize) -> io::Result<Vec<StdListener>> {
    let first = bind(addr, workers > 1)?;
    let addr = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..workers {
        all.push(bind(addr, true)?);
    }
    Ok(all)
}

fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<StdListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    socket.listen(4096)?;
    Ok(socket.into())
}

fn worker(
    http: StdListener,
    https: Option<StdListener>,
    shared: &'static Shared,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    nofile: u64,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a single-threaded runtime builds");
    runtime.block_on(async move {
        let http = TcpListener::from_std(http).expect("a bound listener registers");
        let https = https.map(|l| TcpListener::from_std(l).expect("a bound listener registers"));
        let http_port = http.local_addr().map(|a| a.port()).unwrap_or_default();
        let https_port = https.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.port()).unwrap_or_default();
        let mut builders = Builders::default();
        // Every client connection and relay holds a receiver: the sender sees them all gone.
        let (live, live_rx) = watch::channel(());
        let (over, over_rx) = watch::channel(false);
        let drain = Drain { over: over_rx, live: live_rx };
        let housekeeping = tokio::spawn(housekeeping(shared));
        let slots = Arc::new(Slots::default());
        loop {
            // `max-worker-connections`: at the limit, nothing is accepted until a connection
            // ends; new ones wait in the listen backlog, as with NGINX.
            let limit = shared.state.load().table.https.connections.worker_connections(nofile);
            let room = slots.open.load(Ordering::Relaxed) < limit;
            tokio::select! {
                accepted = http.accept(), if room => {
                    let Some((mut stream, remote)) = accepted_or_back_off(accepted).await else { continue };
                    let handoff = fast::Handoff { builder: builders.current(shared) };
                    let (shutdown, drain) = (shutdown.clone(), drain.clone());
                    let slot = Slot::take(&slots);
                    tokio::spawn(async move {
                        let _slot = slot;
                        let Ok(proxied) = proxy_header(&mut stream, remote, shared).await else { return };
                        let conn = Arc::new(ConnInfo::new(remote, http_port, None, drain).proxied(proxied, shared));
                        fast::serve(fast::ClientStream::Tcp(stream), conn, shared, handoff, shutdown).await;
                    });
                }
                accepted = async {
                    match &https {
                        Some(l) => l.accept().await,
                        None => std::future::pending().await,
                    }
                }, if room => {
                    let Some((mut stream, remote)) = accepted_or_back_off(accepted).await else { continue };
                    let builder = builders.current(shared);
                    let (shutdown, drain) = (shutdown.clone(), drain.clone());
                    let slot = Slot::take(&slots);
                    tokio::spawn(async move {
                        let _slot = slot;
                        let Ok(proxied) = proxy_header(&mut stream, remote, shared).await else { return };
                        let Some((io, conn)) = tls_handshake(stream, remote, https_port, proxied, drain, shared).await else { return };
                        // HTTP/2 is hyper's; HTTP/1.1 over TLS runs the fast path's loop.
                        if io.get_ref().1.alpn_protocol() == Some(b"h2") {
                            serve_hyper(&builder, shutdown, Rewind::new(Vec::new(), io), conn, shared, 0).await;
                        } else {
                            let handoff = fast::Handoff { builder };
                            fast::serve(fast::ClientStream::Tls(Box::new(io)), conn, shared, handoff, shutdown).await;
                        }
                    });
                }
                _ = slots.freed.notified(), if !room => {}
                _ = shutdown.changed() => break,
            }
        }
        drop(http);
        drop(https);
        drop(drain);
        if tokio::time::timeout(grace, live.closed()).await.is_err() {
            tracing::warn!(?grace, "connections still open after the grace period; closing them");
            // WebSockets get a close frame (1001, going away) and relays a FIN, hyper's
            // connections (their GOAWAY long sent) are dropped; then the worker ends.
            let _ = over.send(true);
            let _ = tokio::time::timeout(CLOSING, live.closed()).await;
        }
        housekeeping.abort();
        shared.flush_worker();
    });
}

/// How long connections get to close once the grace period is over.
const CLOSING: Duration = Duration::from_secs(1);

/// The accepted connection, or `None` after a short pause when accepting failed (out of file
/// descriptors and the like: back off instead of spinning).
async fn accepted_or_back_off(
    accepted: io::Result<(TcpStream, SocketAddr)>,
) -> Option<(TcpStream, SocketAddr)> {
    match accepted {
        Ok((stream, remote)) => {
            let _ = stream.set_nodelay(true);
            Some((stream, remote))
        }
        Err(e) => {
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(20)).await;
            None
        }
    }
}

/// hyper's server side, as every worker configures it.
pub(crate) type HyperBuilder = auto::Builder<TokioExecutor>;

/// Serves HTTP/1.1 and HTTP/2 on one connection until it ends (`conn` holds the worker's
/// `live` receiver until then); when `shutdown` turns true, or the connection has been idle
/// for the `keep-alive` timeout, hyper shuts it down gracefully: HTTP/2 sends GOAWAY, HTTP/1.1
/// closes after the response in flight, nothing is cut before the grace period is over. A
/// connection whose client takes nothing of a response for `send_timeout` is closed.
pub(crate) async fn serve_hyper<I>(
    builder: &HyperBuilder,
    mut shutdown: watch::Receiver<bool>,
    io: I,
    conn: Arc<ConnInfo>,
    shared: &'static Shared,
    served: u32,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (keep_alive, max_requests, send_timeout, h2, header_timeout) = {
        let published = shared.state.load();
        let https = &published.table.https;
        let limits = &https.connections;
        let h2 = https.http2.enabled;
        (
            https.keep_alive,
            limits.keep_alive_requests,
            https.http2.send_timeout,
            h2,
            limits.client_header_timeout,
        )
    };
    // hyper's automatic builder serves HTTP/2 whatever it is told once upgrades are on.
    let io = if h2 {
        Rewind::new(Vec::new(), io)
    } else {
        match without_h2_preface(io, header_timeout).await {
            Some(io) => io,
            None => return,
        }
    };
    let remote = conn.remote;
    let drain = conn.drain.clone();
    let activity = Arc::new(idle::Activity::new());
    let stall = Arc::new(Stall::new());
    let (seen, watched) = (activity.clone(), stall.clone());
    let requests = Arc::new(std::sync::atomic::AtomicU32::new(served));
    // Told when an HTTP/2 connection has taken its last request.
    let last = Arc::new(tokio::sync::Notify::new());
    let last_taken = last.clone();
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let busy = idle::Busy::new(seen.clone());
        // NGINX's keepalive_requests: on HTTP/1 the connection's last request says so in its
        // response, and hyper closes the connection after it; on HTTP/2 (NGINX >= 1.19.7)
        // the connection sends GOAWAY when that request arrives, and ends once its streams
        // have.
        let http1 = req.version() <= http::Version::HTTP_11;
        let count = requests.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if !http1 && count >= max_requests {
            last_taken.notify_one();
        }
        // Boxed: the request's future is large, and hyper moves the service's future a few
        // times before polling it; moving a pointer saves copying it each time (measured:
        // 5% of the CPU of HTTPS requests went to those copies).
        let answer = Box::pin(handler::handle(req, conn.clone(), shared));
        let watched = watched.clone();
        async move {
            let mut response = answer.await;
            drop(busy);
            if let Ok(r) = &mut response
                && http1
                && count >= max_requests
            {
                r.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            response.map(|r| r.map(|body| Watched::new(body, watched)))
        }
    });
    let io = idle::Tracked::new(StallIo::new(io, stall.clone()), activity.clone());
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let stopping = async {
        if !*shutdown.borrow_and_update() {
            let _ = shutdown.changed().await;
        }
    };
    tokio::pin!(stopping);
    // NGINX's keepalive_timeout, for HTTP/2 too (NGINX >= 1.19.7): hyper has no idle timeout
    // of its own, so a timer checks the connection's last activity when it would expire.
    let mut idle_at = tokio::time::Instant::now() + keep_alive;
    let mut stall_at = tokio::time::Instant::now() + send_timeout;
    let idle = loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = stopping.as_mut() => break false,
            () = last.notified() => break false,
            _ = tokio::time::sleep_until(idle_at.min(stall_at)) => {
                match stall.check(send_timeout) {
                    Some(next) => stall_at = next,
                    None => return stalled(remote, send_timeout),
                }
                if idle_at <= tokio::time::Instant::now() {
                    match activity.idle_until(keep_alive) {
                        None => break true,
                        Some(next) => idle_at = next,
                    }
                }
            }
        }
    };
    connection.as_mut().graceful_shutdown();
    // Streams in progress finish, unless their client stops taking their data. After an idle
    // timeout they have moved no byte for `keep-alive` already (a response held whole in
    // the stream buffers, its client granting no window): `send_timeout` more, then close.
    let drained_by = idle.then(|| tokio::time::Instant::now() + send_timeout);
    let give_up = async {
        match drained_by {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(give_up);
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = give_up.as_mut() => return stalled(remote, send_timeout),
            // What is still open when the grace period is over is dropped.
            () = drain.over() => return,
            _ = tokio::time::sleep_until(stall_at) => match stall.check(send_timeout) {
                Some(next) => stall_at = next,
                None => return stalled(remote, send_timeout),
            },
        }
    }
}

/// HTTP/2's connection preface (RFC 9113 §3.4): to an HTTP/1.1 server, a request line of
/// version 2.0 and a few more bytes.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// With `use-http2: false`: reads a connection's first bytes, up to where they part from
/// HTTP/2's preface. A connection that opens with the whole preface is answered 505, as NGINX
/// answers a request of a version it does not speak, and closed (`None`); any other goes on
/// with the bytes read in front. The wait is bounded by `client-header-timeout`.
async fn without_h2_preface<I>(mut io: I, timeout: Duration) -> Option<Rewind<I>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut seen = Vec::with_capacity(H2_PREFACE.len());
    let read = async {
        let mut chunk = [0u8; H2_PREFACE.len()];
        while seen.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&seen) {
            // Never past the preface: what follows belongs to the request.
            let n = io.read(&mut chunk[..H2_PREFACE.len() - seen.len()]).await?;
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&chunk[..n]);
        }
        io::Result::Ok(())
    };
    tokio::time::timeout(timeout, read).await.ok()?.ok()?;
    if seen == H2_PREFACE {
        let refusal = "HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Length: 0\r\n\
                       Connection: close\r\n\r\n";
        let _ = io.write_all(refusal.as_bytes()).await;
        let _ = io.shutdown().await;
        return None;
    }
    Some(Rewind::new(seen, io))
}

/// Notes a connection closed because its client took nothing for `send_timeout`.
fn stalled(remote: SocketAddr, send_timeout: Duration) {
    tracing::debug!(%remote, ?send_timeout, "client took no response data in time; connection closed");
}

/// The TLS side of a connection on the HTTPS port: the ClientHello decides between
/// passthrough (the connection is spliced to the backend here, and `None` returned) and a
/// handshake with the host's policy.
async fn tls_handshake(
    mut stream: TcpStream,
    remote: SocketAddr,
    local_port: u16,
    proxied: Option<proxy_protocol::Proxied>,
    drain: Drain,
    shared: &'static Shared,
) -> Option<(TlsStream<Rewind<TcpStream>>, Arc<ConnInfo>)> {
    let hello = match hello::read(&mut stream).await {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "no usable ClientHello; connection dropped");
            return None;
        }
    };
    let published = shared.state.load_full();
    let tls = &published.table.tls;
    let name = hello.server_name.as_deref();
    if let Some(&backend) = name.and_then(|n| tls.passthrough.get(n)) {
        let backend = &published.table.backends[backend as usize];
        passthrough::splice(stream, hello.bytes, backend, &drain).await;
        return None;
    }
    let policy = name.map_or(0, |n| tls.policy_for(n)) as usize;
    let config = published.tls.configs.get(policy).or(published.tls.configs.first())?.clone();
    let check = published.tls.checks.get(policy).cloned().flatten();
    let acceptor = LazyConfigAcceptor::new(Acceptor::default(), Rewind::new(hello.bytes, stream));
    let handshake = async move { acceptor.await?.into_stream(config).await };
    let io = match tokio::time::timeout(hello::HELLO_TIMEOUT, handshake).await {
        Ok(Ok(io)) => io,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            return None;
        }
    };
    let presented: Vec<CertificateDer<'static>> = io
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    let checked = check.map(|c| {
        let verdict = c.inspect(Some(&presented));
        (c, verdict)
    });
    let conn = ConnInfo::new(remote, local_port, Some(TlsInfo { presented, checked }), drain);
    let conn = Arc::new(conn.proxied(proxied, shared));
    Some((io, conn))
}

/// Per-worker periodic work: access log and metrics batches out, idle upstream connections
/// swept.
async fn housekeeping(shared: &'static Shared) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        shared.access_log.flush_worker();
        if n.is_multiple_of(4) {
            shared.metrics.flush_worker();
            pool::sweep(&shared.state.load().table.https.connections.upstream);
        }
    }
}

/// A worker's client connections, against `max-worker-connections`.
#[derive(Default)]
struct Slots {
    open: AtomicUsize,
    /// Woken when a connection ends (only waited on at the limit).
    freed: tokio::sync::Notify,
}

/// One client connection's place among its worker's, given back when it ends.
struct Slot(Arc<Slots>);

impl Slot {
    fn take(slots: &Arc<Slots>) -> Self {
        slots.open.fetch_add(1, Ordering::Relaxed);
        OPEN.fetch_add(1, Ordering::Relaxed);
        ACCEPTED.fetch_add(1, Ordering::Relaxed);
        Slot(slots.clone())
    }
}

/// Client connections open, all workers (`nginx_process_connections{state="active"}`).
static OPEN: AtomicUsize = AtomicUsize::new(0);
/// Client connections accepted since start (`nginx_process_connections_total`).
static ACCEPTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The client connections open now and accepted since the process started, across all
/// workers (of every proxy in the process), for the admin port's process metrics.
pub fn connection_counts() -> (usize, u64) {
    (OPEN.load(Ordering::Relaxed), ACCEPTED.load(Ordering::Relaxed))
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        OPEN.fetch_sub(1, Ordering::Relaxed);
        // Without a waiter this only stores a permit (no lock).
        self.0.freed.notify_one();
    }
}

/// The worker's hyper server configuration, made again only when the ConfigMap keys it
/// depends on change (`client-header-timeout`, `large-client-header-buffers`, `http2-*`), so
/// that each connection takes the settings in force when it arrived (a comparison per
/// accepted connection).
#[derive(Default)]
struct Builders {
    current: Option<(HyperSettings, Arc<HyperBuilder>)>,
}

/// What a hyper builder is made of.
#[derive(PartialEq)]
struct HyperSettings {
    header_timeout: Duration,
    max_buf: usize,
    http2: Http2Settings,
}

impl Builders {
    /// The builder for the settings in force.
    fn current(&mut self, shared: &Shared) -> Arc<HyperBuilder> {
        let published = shared.state.load();
        let https = &published.table.https;
        let limits = &https.connections;
        let wanted = HyperSettings {
            header_timeout: limits.client_header_timeout,
            // Twice the buffers, and 64 KiB at least: a head over the buffers still reaches
            // the handler, which answers as NGINX does (414, 400); only a larger one gets
            // hyper's 431.
            max_buf: (limits.header_buffers.total().saturating_mul(2)).max(64 * 1024),
            http2: https.http2.clone(),
        };
        match &self.current {
            Some((settings, builder)) if *settings == wanted => builder.clone(),
            _ => {
                let builder = Arc::new(hyper_builder(&wanted));
                self.current = Some((wanted, builder.clone()));
                builder
            }
        }
    }
}

/// hyper's server side with the ConfigMap's HTTP/1 and HTTP/2 settings.
fn hyper_builder(settings: &HyperSettings) -> HyperBuilder {
    let mut builder: HyperBuilder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // NGINX's client_header_timeout (`client-header-timeout`); also bounds slow-header
        // (slowloris) clients. hyper closes without an answer, as NGINX does.
        .header_read_timeout(settings.header_timeout)
        .keep_alive(true)
        // Heads beyond the buffer or 200 headers are answered 431 by hyper.
        .max_buf_size(settings.max_buf)
        .max_headers(200);
    http2::configure(&mut builder.http2(), &settings.http2);
    builder
}

/// The process's open-file limit (`nofile`), for `max-worker-connections: 0`; 1,024 when it
/// cannot be read.
fn open_file_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(1024)
}
