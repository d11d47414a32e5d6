//! Listeners and workers: each worker is a thread running its own single-threaded tokio
//! runtime with its own `SO_REUSEPORT` listener, so connections, upstream pools and request
//! bookkeeping stay on one core without locks or cross-thread wake-ups.

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
use hyper_util::server::graceful::GracefulShutdown;
use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::{Shared, handler, upstream};

/// Where and how the proxy listens.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The address to bind (`--bind-address`).
    pub bind_address: IpAddr,
    /// The HTTP port (`--http-port`); 0 picks a free port (see [`Proxy::http_addr`]).
    pub http_port: u16,
    /// Worker threads (`--workers`).
    pub workers: usize,
    /// How long in-flight requests may finish after shutdown starts.
    pub shutdown_grace: Duration,
}

/// Facts about one client connection, shared by its requests.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub remote: SocketAddr,
    /// The client's IP as a header value, made once per connection.
    pub remote_ip: HeaderValue,
    /// The port the client connected to, as a header value (`X-Forwarded-Port`).
    pub local_port: HeaderValue,
}

impl ConnInfo {
    fn new(remote: SocketAddr, local_port: u16) -> Self {
        let ip =
            HeaderValue::from_str(&remote.ip().to_string()).expect("an IP is a valid header value");
        let port = HeaderValue::from(local_port);
        Self { remote, remote_ip: ip, local_port: port }
    }
}

/// The running proxy.
pub struct Proxy {
    http_addr: SocketAddr,
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
    /// Binds the HTTP port and starts the workers. Fails if the port cannot be bound.
    pub fn start(config: ProxyConfig, shared: &'static Shared) -> io::Result<Proxy> {
        let workers = config.workers.max(1);
        let first = bind(SocketAddr::new(config.bind_address, config.http_port), workers > 1)?;
        let http_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..workers {
            listeners.push(bind(http_addr, true)?);
        }
        let (shutdown, rx) = watch::channel(false);
        let alive = Arc::new(AtomicUsize::new(workers));
        let mut handles = Vec::with_capacity(workers);
        for (i, listener) in listeners.into_iter().enumerate() {
            let rx = rx.clone();
            let grace = config.shutdown_grace;
            let guard = AliveGuard(alive.clone());
            let handle = std::thread::Builder::new().name(format!("sluice-worker-{i}")).spawn(
                move || {
                    let _guard = guard;
                    worker(listener, shared, rx, grace)
                },
            )?;
            handles.push(handle);
        }
        Ok(Proxy {
            http_addr,
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
    listener: StdListener,
    shared: &'static Shared,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a single-threaded runtime builds");
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener).expect("a bound listener registers");
        let local_port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let mut builder = auto::Builder::new(TokioExecutor::new());
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
            .max_header_list_size(64 * 1024);
        let graceful = GracefulShutdown::new();
        let housekeeping = tokio::spawn(housekeeping(shared));
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, remote) = match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let conn = Arc::new(ConnInfo::new(remote, local_port));
                    let service = service_fn(move |req| handler::handle(req, conn.clone(), shared));
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                }
                _ = shutdown.changed() => break,
            }
        }
        drop(listener);
        if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
            tracing::warn!(?grace, "connections still open after the grace period; closing them");
        }
        housekeeping.abort();
        shared.flush_worker();
    });
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
            upstream::sweep();
        }
    }
}
