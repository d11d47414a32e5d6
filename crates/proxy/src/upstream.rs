//! Upstream connections: a pool per worker thread (no locks, no cross-thread wake-ups),
//! connecting with a timeout (TCP, then TLS for `HTTPS` and `GRPCS`), and trying the next
//! endpoint when connecting fails. HTTP/1.1 connections serve one request at a time and go
//! back to the pool when a response is read whole; an HTTP/2 connection (gRPC) is shared by
//! every request to its endpoint.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use sluice_model::{Backend, Policy, UpstreamProtocol, UpstreamTls};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::{Progress, RequestBody, is_too_large};
use crate::record::Record;

/// A request sender on one upstream connection.
pub(crate) enum Sender {
    H1(http1::SendRequest<RequestBody>),
    H2(http2::SendRequest<RequestBody>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    async fn send(
        &mut self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<RequestBody>>> {
        match self {
            Sender::H1(s) => s.try_send_request(req).await,
            Sender::H2(s) => s.try_send_request(req).await,
        }
    }
}

/// Connections are pooled per endpoint and way of speaking to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    addr: SocketAddr,
    protocol: UpstreamProtocol,
    /// The TLS settings' fingerprint (0 in clear).
    tls: u64,
}

/// Idle connections kept per endpoint per worker (ingress-nginx's
/// `upstream-keepalive-connections`).
pub(crate) const MAX_IDLE_PER_ENDPOINT: usize = 320;
/// How long an idle connection is kept (`upstream-keepalive-timeout`).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts on fresh connections after pooled ones turned out closed, per request.
pub(crate) const MAX_STALE_RETRIES: usize = 4;

struct Idle {
    sender: Sender,
    since: Instant,
}

impl Idle {
    /// Still open, and not idle for longer than [`IDLE_TIMEOUT`].
    fn usable(&self) -> bool {
        !self.sender.is_closed() && self.since.elapsed() < IDLE_TIMEOUT
    }
}

thread_local! {
    /// This worker's connections by endpoint: idle HTTP/1.1 ones, or its HTTP/2 one. Only this
    /// thread's tasks touch it.
    static POOL: RefCell<HashMap<PoolKey, Vec<Idle>>> = RefCell::new(HashMap::new());
}

/// A connection to reuse: an idle HTTP/1.1 one (most recently used first), or the shared
/// HTTP/2 one.
fn checkout(key: PoolKey) -> Option<Sender> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let list = pool.get_mut(&key)?;
        if key.protocol.h2() {
            list.retain(|i| !i.sender.is_closed());
            return list.first_mut().map(|i| {
                i.since = Instant::now();
                match &i.sender {
                    Sender::H2(s) => Sender::H2(s.clone()),
                    Sender::H1(_) => unreachable!("an HTTP/2 key holds HTTP/2 connections"),
                }
            });
        }
        while let Some(idle) = list.pop() {
            if idle.usable() {
                return Some(idle.sender);
            }
        }
        None
    })
}

/// Gives an HTTP/1.1 connection back after its response was read whole (an HTTP/2 one never
/// left the pool).
pub(crate) fn checkin(key: PoolKey, sender: Sender) {
    if sender.is_closed() || matches!(sender, Sender::H2(_)) {
        return;
    }
    pool_insert(key, sender);
}

fn pool_insert(key: PoolKey, sender: Sender) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let list = pool.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(Idle { sender, since: Instant::now() });
        }
    });
}

/// Drops closed and expired idle connections; run periodically by each worker.
pub(crate) fn sweep() {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        for list in pool.values_mut() {
            list.retain(Idle::usable);
        }
        pool.retain(|_, list| !list.is_empty());
    });
}

/// Why connecting failed.
#[derive(Debug)]
enum ConnectError {
    Timeout,
    Failed,
}

/// Connects to `key.addr` within `timeout` (TCP and, for TLS protocols, the handshake), and
/// starts HTTP on it. A new HTTP/2 connection joins the pool at once, to be shared.
async fn connect(
    key: PoolKey,
    tls: Option<&UpstreamTls>,
    timeout: Duration,
    upgrades: bool,
) -> Result<Sender, ConnectError> {
    let attempt = async {
        let stream = TcpStream::connect(key.addr).await.map_err(|e| {
            tracing::debug!(addr = %key.addr, error = %e, "upstream connect failed");
            ConnectError::Failed
        })?;
        let _ = stream.set_nodelay(true);
        match (key.protocol.tls(), tls) {
            (true, Some(tls)) => {
                let config = crate::tls::upstream::config(tls, key.protocol.h2()).map_err(|e| {
                    tracing::warn!(addr = %key.addr, error = %e, "cannot set up TLS to the backend");
                    ConnectError::Failed
                })?;
                let name =
                    crate::tls::upstream::server_name(tls).map_err(|_| ConnectError::Failed)?;
                let io = tokio_rustls::TlsConnector::from(config)
                    .connect(name, stream)
                    .await
                    .map_err(|e| {
                        tracing::debug!(addr = %key.addr, error = %e, "TLS to the backend failed");
                        ConnectError::Failed
                    })?;
                start_http(io, key.protocol.h2(), upgrades).await
            }
            _ => start_http(stream, key.protocol.h2(), upgrades).await,
        }
    };
    let sender =
        tokio::time::timeout(timeout, attempt).await.map_err(|_| ConnectError::Timeout)??;
    if let Sender::H2(s) = &sender {
        pool_insert(key, Sender::H2(s.clone()));
    }
    Ok(sender)
}

async fn start_http<I>(io: I, h2: bool, upgrades: bool) -> Result<Sender, ConnectError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    if h2 {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(|_| ConnectError::Failed)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        return Ok(Sender::H2(sender));
    }
    let (sender, conn) =
        http1::Builder::new().handshake(io).await.map_err(|_| ConnectError::Failed)?;
    if upgrades {
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
    } else {
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    Ok(Sender::H1(sender))
}

/// Why forwarding failed, and so what the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No endpoint could be reached (502).
    Unreachable,
    /// Connecting or waiting for the response timed out (504).
    Timeout,
    /// The request body exceeded the limit while being sent (413).
    TooLarge,
    /// The upstream broke the connection after the request went out (502).
    Broken,
}

impl Failure {
    pub(crate) fn status(self) -> u16 {
        match self {
            Failure::Unreachable | Failure::Broken => 502,
            Failure::Timeout => 504,
            Failure::TooLarge => 413,
        }
    }

    /// The label of `sluice_upstream_errors_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Failure::Unreachable => "connect",
            Failure::Timeout => "timeout",
            Failure::TooLarge => "body_too_large",
            Failure::Broken => "broken",
        }
    }
}

/// A response head from the upstream, and the connection to give back when its body is read.
pub(crate) struct Forwarded {
    pub response: Response<Incoming>,
    pub connection: Option<(PoolKey, Sender)>,
}

/// The head of a request without a body, kept so that it can be sent again.
struct Head {
    method: Method,
    uri: http::Uri,
    headers: http::HeaderMap,
}

impl Head {
    /// A copy of `req`'s head when `req` could safely be sent twice: no body, and a method
    /// NGINX retries (all but POST, LOCK and PATCH).
    fn of(req: &Request<RequestBody>) -> Option<Head> {
        let retriable =
            req.body().is_absent() && !matches!(req.method().as_str(), "POST" | "LOCK" | "PATCH");
        retriable.then(|| Head {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
        })
    }

    fn request(&self) -> Request<RequestBody> {
        let mut req = Request::new(RequestBody::empty());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Sends `req` to `backend`: endpoints in round-robin order, the next one when connecting
/// fails, up to `proxy-next-upstream-tries`.
///
/// A pooled connection may have been closed by the backend just as it is reused (its
/// keep-alive timeout, say). When the request was not written, or was written but the request
/// has no body and an idempotent method, it goes again on a fresh connection, and that does
/// not count as a try (NGINX does the same for cached connections).
pub(crate) async fn forward(
    req: Request<RequestBody>,
    backend: &Backend,
    policy: &Policy,
    progress: Option<&Arc<Progress>>,
    upgrade: bool,
    record: &mut Record,
) -> Result<Forwarded, Failure> {
    let n = backend.endpoints.len();
    let first = backend.next_index().ok_or(Failure::Unreachable)?;
    let tries = (policy.next_upstream_tries as usize).clamp(1, n);
    let mut req = Some(req);
    let mut failure = Failure::Unreachable;
    let mut stale = 0;
    let mut t = 0;
    let tls_id = backend.tls.as_ref().map_or(0, |t| t.fingerprint);
    while t < tries {
        let addr = backend.endpoints[(first + t) % n].addr;
        let key = PoolKey { addr, protocol: backend.protocol, tls: tls_id };
        let started = Instant::now();
        let pooled = if upgrade || stale > 0 { None } else { checkout(key) };
        let reused = pooled.is_some();
        let mut sender = match pooled {
            Some(s) => s,
            None => {
                match connect(key, backend.tls.as_deref(), policy.connect_timeout, upgrade).await {
                    Ok(s) => s,
                    Err(e) => {
                        failure = match e {
                            ConnectError::Timeout => Failure::Timeout,
                            ConnectError::Failed => Failure::Unreachable,
                        };
                        record.attempt(addr, failure.status(), false, started);
                        t += 1;
                        continue;
                    }
                }
            }
        };
        let Some(request) = req.take() else { break };
        let head = if reused { Head::of(&request) } else { None };
        let sent = sender.send(request);
        match wait_for_head(sent, policy, progress).await {
            Some(Ok(response)) => {
                record.attempt(addr, response.status().as_u16(), true, started);
                let connection = (!upgrade).then_some((key, sender));
                return Ok(Forwarded { response, connection });
            }
            Some(Err(mut e)) => {
                let again = e.take_message().or_else(|| head.as_ref().map(Head::request));
                if let Some(back) = again {
                    req = Some(back);
                    if reused && stale < MAX_STALE_RETRIES {
                        // The pooled connection was dead: a fresh one, same endpoint.
                        stale += 1;
                    } else {
                        record.attempt(addr, 502, false, started);
                        t += 1;
                    }
                    continue;
                }
                record.attempt(addr, 502, false, started);
                let err = e.into_error();
                if is_too_large(&err) {
                    return Err(Failure::TooLarge);
                }
                tracing::debug!(%addr, error = %err, "upstream request failed");
                return Err(Failure::Broken);
            }
            None => {
                record.attempt(addr, 504, false, started);
                return Err(Failure::Timeout);
            }
        }
    }
    Err(failure)
}

/// Waits for the response head; `None` on timeout. While the request body is still going
/// out, the send timeout counts from its last chunk; once it is out (or for a request without
/// a body), the read timeout counts from then. The deadline is re-derived from the body's
/// progress at least every `min(send, read)`, so whichever applies is never overshot.
async fn wait_for_head<F: Future>(
    sent: F,
    policy: &Policy,
    progress: Option<&Arc<Progress>>,
) -> Option<F::Output> {
    let (send, read) = (policy.send_timeout, policy.read_timeout);
    let start = Instant::now();
    let step = send.min(read);
    let mut wake = start + if progress.is_some() { step } else { read };
    tokio::pin!(sent);
    loop {
        tokio::select! {
            out = &mut sent => return Some(out),
            () = tokio::time::sleep_until(wake) => {
                let deadline = match progress {
                    None => start + read,
                    Some(p) => {
                        let (last, done) = p.last();
                        last.max(start) + if done { read } else { send }
                    }
                };
                let now = Instant::now();
                if deadline <= now {
                    return None;
                }
                wake = deadline.min(now + step);
            }
        }
    }
}
