//! The general path's upstream requests: to a plain HTTP/1.1 backend with the body absent or
//! held whole, on the fast path's raw connections ([`leg`]); otherwise on hyper client
//! connections from the worker's [`pool`](crate::pool), connecting with a timeout (TCP, then
//! TLS for `HTTPS` and `GRPCS`),
//! endpoints tried in the order and on the failures the request's [`Attempts`] say.
//! HTTP/1.1 connections serve one request at a time and go back to the pool when a response
//! is read whole; an HTTP/2 connection (gRPC) is shared by every request to its endpoint.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use sluice_model::{Backend, Limits, UpstreamKeepalive, UpstreamTls};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::{Progress, RequestBody, UpstreamBody, is_too_large};
use crate::fast::leg;
use crate::pipeline::{Attempts, Failure};
use crate::pool::{self, PoolKey, Pooled, Sender};
use crate::record::Record;

impl Sender {
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

/// Why connecting failed.
#[derive(Debug)]
pub(crate) enum ConnectError {
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
    keepalive: &UpstreamKeepalive,
) -> Result<Pooled, ConnectError> {
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
    let pooled = Pooled::new(sender);
    if let Sender::H2(s) = &pooled.sender {
        pool::insert(key, Pooled::new(Sender::H2(s.clone())), keepalive);
    }
    Ok(pooled)
}

pub(crate) async fn start_http<I>(io: I, h2: bool, upgrades: bool) -> Result<Sender, ConnectError>
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
    // Response data is read in chunks of at most 64 KiB (hyper's default grows to 400 KiB):
    // a chunk read is held until the client takes it, so this bounds what each response
    // stalled by its client pins in memory (with `http2::MAX_SEND_BUF`).
    let (sender, conn) = http1::Builder::new()
        .max_buf_size(64 * 1024)
        .handshake(io)
        .await
        .map_err(|_| ConnectError::Failed)?;
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

/// A response head from the upstream, and the hyper connection to give back when its body is
/// read (a raw connection goes back by itself).
pub(crate) struct Forwarded {
    pub response: Response<UpstreamBody>,
    pub connection: Option<(PoolKey, Pooled)>,
}

/// A request that can be sent more than once: its head, and its body when held whole (or
/// absent).
pub(crate) struct Resend {
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    headers: http::HeaderMap,
    body: Option<Bytes>,
}

impl Resend {
    /// A copy of `req`, when its body is absent or held whole.
    pub(crate) fn of(req: &Request<RequestBody>) -> Option<Resend> {
        let body = req.body().held_bytes()?;
        Some(Resend {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
            body,
        })
    }

    fn request(&self) -> Request<RequestBody> {
        let body = match &self.body {
            Some(b) => RequestBody::held(b.clone()),
            None => RequestBody::empty(),
        };
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Sends `req` to `backend`'s endpoints in the order of `attempts`, going on to the next as
/// NGINX's `proxy_next_upstream` says (connecting failed or timed out; for a request that
/// can be sent again, a broken connection, a timeout, an invalid head, a retried status).
///
/// A pooled connection may have been closed by the backend just as it is reused (its
/// keep-alive timeout, say). When the request was not written, or can be written again, it
/// goes again on a fresh connection to the same endpoint, and that does not count as an
/// attempt (NGINX does the same for cached connections).
///
/// A request to a plain HTTP/1.1 backend whose body is absent or held whole and small goes on
/// the fast path's raw connections ([`leg`]), read and written by this task; hyper carries the
/// rest.
pub(crate) async fn forward(
    req: Request<RequestBody>,
    backend: &Backend,
    attempts: &mut Attempts,
    limits: &Limits,
    progress: Option<&Arc<Progress>>,
    upgrade: bool,
    record: &mut Record,
) -> Result<Forwarded, Failure> {
    // Copied: the record is written to while the request goes out.
    let keepalive: UpstreamKeepalive = record.table.https.connections.upstream;
    let keepalive = &keepalive;
    let held = req.body().held_bytes();
    if leg::carries(req.version(), held.as_ref().map(Option::as_ref), backend, upgrade)
        && let Some(body) = held
    {
        let (parts, _) = req.into_parts();
        let response =
            leg::forward(&parts, body, backend, attempts, limits, keepalive, record).await?;
        let response = response.map(|inner| UpstreamBody::Raw { inner });
        return Ok(Forwarded { response, connection: None });
    }
    // Boxed: inline, hyper's client futures would make every request's future larger.
    Box::pin(forward_hyper(req, backend, attempts, limits, progress, upgrade, keepalive, record))
        .await
}

/// [`forward`] on hyper's client connections.
#[allow(clippy::too_many_arguments)]
async fn forward_hyper(
    req: Request<RequestBody>,
    backend: &Backend,
    attempts: &mut Attempts,
    limits: &Limits,
    progress: Option<&Arc<Progress>>,
    upgrade: bool,
    keepalive: &UpstreamKeepalive,
    record: &mut Record,
) -> Result<Forwarded, Failure> {
    let method = req.method().as_str().to_string();
    let resend = Resend::of(&req);
    let resendable = resend.is_some();
    let mut req = Some(req);
    let mut failure = Failure::Connect;
    let tls_id = backend.tls.as_ref().map_or(0, |t| t.fingerprint);
    let mut next = attempts.next(backend);
    let mut fresh = false;
    while let Some(addr) = next.take() {
        let key = PoolKey { addr, protocol: backend.protocol, tls: tls_id };
        let started = Instant::now();
        let pooled = if upgrade || fresh { None } else { pool::checkout(key, keepalive) };
        fresh = false;
        let reused = pooled.is_some();
        let mut sender = match pooled {
            Some(s) => s,
            None => {
                let tls = backend.tls.as_deref();
                // Boxed: connecting (TCP, TLS, HTTP) is a large future that a pooled connection
                // skips, and every request's future would carry its size.
                match Box::pin(connect(key, tls, limits.connect_timeout, upgrade, keepalive)).await
                {
                    Ok(s) => s,
                    Err(e) => {
                        failure = match e {
                            ConnectError::Timeout => Failure::ConnectTimeout,
                            ConnectError::Failed => Failure::Connect,
                        };
                        record.attempt(addr, failure.status(), false, started);
                        if attempts.retries(backend, failure, &method, true) {
                            next = attempts.next(backend);
                        }
                        continue;
                    }
                }
            }
        };
        let Some(request) = req.take().or_else(|| resend.as_ref().map(Resend::request)) else {
            break;
        };
        let sent = sender.sender.send(request);
        match wait_for_head(sent, limits, progress).await {
            Some(Ok(response)) => {
                let status = response.status().as_u16();
                if attempts.retries_status(backend, status, &method, resendable) {
                    record.attempt(addr, status, true, started);
                    next = attempts.next(backend);
                    continue;
                }
                attempts.answered(backend, status, started.elapsed());
                record.attempt(addr, status, true, started);
                let connection = (!upgrade).then_some((key, sender));
                let response = response.map(|b| UpstreamBody::hyper(b, limits.read_timeout));
                return Ok(Forwarded { response, connection });
            }
            Some(Err(mut e)) => {
                let unsent = e.take_message();
                if reused && (unsent.is_some() || resendable) && attempts.stale_again() {
                    // The pooled connection was dead: a fresh one, same endpoint.
                    req = unsent;
                    next = Some(addr);
                    fresh = true;
                    continue;
                }
                record.attempt(addr, 502, false, started);
                let err = e.into_error();
                if is_too_large(&err) {
                    return Err(Failure::TooLarge);
                }
                tracing::debug!(%addr, error = %err, "upstream request failed");
                failure = if unsent.is_some() { Failure::Connect } else { Failure::Broken };
                req = unsent;
                if attempts.retries(backend, failure, &method, resendable) {
                    next = attempts.next(backend);
                }
            }
            None => {
                record.attempt(addr, 504, false, started);
                failure = Failure::Timeout;
                if attempts.retries(backend, failure, &method, resendable) {
                    next = attempts.next(backend);
                }
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
    limits: &Limits,
    progress: Option<&Arc<Progress>>,
) -> Option<F::Output> {
    let (send, read) = (limits.send_timeout, limits.read_timeout);
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
