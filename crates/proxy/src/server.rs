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
use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::proxy_protocol;
use crate::tls::client_auth::{ClientCert, ClientCheck};
use crate::tls::hello::{self, Rewind};
use crate::{Shared, fast, handler, idle, passthrough, pool};

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
        for (i, (http, https)) in listeners.into_iter().enumerate() {
            let rx = rx.clone();
            let grace = config.shutdown_grace;
            let guard = AliveGuard(alive.clone());
            let handle = std::thread::Builder::new().name(format!("sluice-worker-{i}")).spawn(
                move || {
                    let _guard = guard;
                    worker(http, https, shared, rx, grace)
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
        let mut builder: HyperBuilder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // NGINX's client_header_timeout; also bounds slow-header (slowloris) clients.
            .header_read_timeout(Duration::from_secs(60))
            .keep_alive(true)
            // Heads beyond 64 KiB or 200 headers are answered 431 by hyper.
            .max_buf_size(64 * 1024)
            .max_headers(200);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(128)
            // Rapid reset (CVE-2023-44487): more than 20 streams reset by the client before
            // they are served, or 1,024 reset by the server for errors, end the connection
            // with GOAWAY ENHANCE_YOUR_CALM (h2's defaults, stated so they stay on).
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(1024)
            .max_header_list_size(64 * 1024);
        let builder = Arc::new(builder);
        // Every client connection and relay holds a receiver: the sender sees them all gone.
        let (live, live_rx) = watch::channel(());
        let (over, over_rx) = watch::channel(false);
        let drain = Drain { over: over_rx, live: live_rx };
        let housekeeping = tokio::spawn(housekeeping(shared));
        loop {
            tokio::select! {
                accepted = http.accept() => {
                    let Some((mut stream, remote)) = accepted_or_back_off(accepted).await else { continue };
                    let handoff = fast::Handoff { builder: builder.clone() };
                    let (shutdown, drain) = (shutdown.clone(), drain.clone());
                    tokio::spawn(async move {
                        let Ok(proxied) = proxy_header(&mut stream, remote, shared).await else { return };
                        let conn = Arc::new(ConnInfo::new(remote, http_port, None, drain).proxied(proxied, shared));
                        fast::serve(stream, conn, shared, handoff, shutdown).await;
                    });
                }
                accepted = async {
                    match &https {
                        Some(l) => l.accept().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let Some((mut stream, remote)) = accepted_or_back_off(accepted).await else { continue };
                    let builder = builder.clone();
                    let (shutdown, drain) = (shutdown.clone(), drain.clone());
                    tokio::spawn(async move {
                        let Ok(proxied) = proxy_header(&mut stream, remote, shared).await else { return };
                        if let Some((io, conn)) = tls_handshake(stream, remote, https_port, proxied, drain, shared).await {
                            serve_hyper(&builder, shutdown, io, conn, shared).await;
                        }
                    });
                }
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
/// closes after the response in flight, nothing is cut before the grace period is over.
pub(crate) async fn serve_hyper<I>(
    builder: &HyperBuilder,
    mut shutdown: watch::Receiver<bool>,
    io: I,
    conn: Arc<ConnInfo>,
    shared: &'static Shared,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let keep_alive = shared.state.load().table.https.keep_alive;
    let drain = conn.drain.clone();
    let activity = Arc::new(idle::Activity::new());
    let seen = activity.clone();
    let service = service_fn(move |req| {
        let busy = idle::Busy::new(seen.clone());
        let answer = handler::handle(req, conn.clone(), shared);
        async move {
            let response = answer.await;
            drop(busy);
            response
        }
    });
    let io = idle::Tracked::new(io, activity.clone());
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
    let mut deadline = tokio::time::Instant::now() + keep_alive;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = stopping.as_mut() => break,
            _ = tokio::time::sleep_until(deadline) => match activity.idle_until(keep_alive) {
                None => break,
                Some(next) => deadline = next,
            },
        }
    }
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        _ = connection.as_mut() => {}
        // What is still open when the grace period is over is dropped.
        () = drain.over() => {}
    }
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
            pool::sweep();
        }
    }
}
