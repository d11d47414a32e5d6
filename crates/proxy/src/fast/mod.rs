//! The HTTP/1.1 fast path. Connections on the HTTP port are read here first, and the requests
//! that make up most traffic — `GET` and `HEAD` without a body, to a route whose backend speaks
//! HTTP/1.1 in clear, with no redirect, path rewrite or client-certificate check to apply — are
//! proxied straight between sockets:
//!
//! 1. the request head is parsed once with `httparse`, in the connection's buffer;
//! 2. the upstream's head is written into one buffer: the client's header lines copied as they
//!    came, less what Sluice replaces, plus the forwarding headers ([`request`]);
//! 3. it goes out on a pooled keep-alive connection of this worker ([`io`]), with the same
//!    endpoint order, retries and timeouts as the general path;
//! 4. the response head is rewritten the same way and leaves with the first body bytes in one
//!    write; the body streams through with its framing checked ([`response`]);
//! 5. the access log line and metrics are written from the same [`Record`].
//!
//! Everything else — request bodies, upgrades, `Expect`, HTTP/1.0, h2c, malformed or oversized
//! heads, local answers (404, 503, redirects) — goes to hyper ([`crate::handler`]) together
//! with the bytes already read, for the rest of the connection, so its behaviour is exactly the
//! general path's. Reads clear socket readiness after a short read, which saves the
//! `EWOULDBLOCK` read per message that a generic reader pays.

mod io;
mod request;
mod response;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::Watcher;
use sluice_model::{Backend, Policy};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

pub(crate) use io::sweep;
use io::{IoFail, ReadBuf, Timer, Upstream, read_more, write_all};
use request::Plan;
use response::{Dechunker, Framing, LAST_CHUNK};

use crate::record::Record;
use crate::server::{ConnInfo, HyperBuilder};
use crate::tls::hello::Rewind;
use crate::upstream::{Failure, MAX_STALE_RETRIES};
use crate::{Shared, local, server};

/// Longest request head the fast path reads before leaving the connection to hyper (which
/// answers 431 beyond its own limit, the same size).
const MAX_HEAD: usize = 64 * 1024;
/// Header lines parsed; more go to hyper.
const MAX_HEADERS: usize = 64;
/// NGINX's `client_header_timeout`: the time to send a request head, and to start one on an
/// idle keep-alive connection.
const HEAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest upstream response head accepted (NGINX: "upstream sent too big header", 502).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// What a connection needs to be handed to hyper.
pub(crate) struct Handoff {
    pub builder: Arc<HyperBuilder>,
    pub watcher: Watcher,
}

/// One client connection's state between requests.
struct Client {
    stream: TcpStream,
    /// Bytes read and not yet consumed (a request head, pipelined requests).
    buf: ReadBuf,
    /// The upstream request head being built, then the response head and first body bytes.
    out: Vec<u8>,
    timer: Timer,
}

/// How a request ended for its connection.
enum Next {
    /// Ready for the next request.
    KeepAlive,
    Close,
    /// The request is not the fast path's: hyper takes the connection from here.
    Handoff,
}

/// Serves a plain-HTTP connection until it closes, handing it to hyper at the first request
/// the fast path does not take. `_live` is held until the connection ends (the worker waits
/// for all of them on shutdown); `shutdown` turns true when the proxy stops.
pub(crate) async fn serve(
    stream: TcpStream,
    conn: Arc<ConnInfo>,
    shared: &'static Shared,
    handoff: Handoff,
    shutdown: watch::Receiver<bool>,
    _live: watch::Receiver<()>,
) {
    let mut client = Client {
        stream,
        buf: ReadBuf::new(4096),
        out: Vec::with_capacity(4096),
        timer: Timer::new(),
    };
    // One wait for shutdown for the whole connection, polled at each idle read: making a new
    // one per request would register and unregister a waiter (under the channel's lock) each
    // time.
    let mut watching = shutdown.clone();
    let stopping = watching.changed();
    tokio::pin!(stopping);
    loop {
        match next(&mut client, &conn, shared, stopping.as_mut()).await {
            Next::KeepAlive if !*shutdown.borrow() => {}
            Next::KeepAlive | Next::Close => return,
            Next::Handoff => {
                let io = Rewind::new(client.buf.take(), client.stream);
                server::serve_hyper(&handoff.builder, handoff.watcher, io, conn, shared).await;
                return;
            }
        }
    }
}

/// Reads one request head and serves it.
async fn next(
    client: &mut Client,
    conn: &Arc<ConnInfo>,
    shared: &'static Shared,
    mut stopping: Pin<&mut impl Future<Output = Result<(), watch::error::RecvError>>>,
) -> Next {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let (plan, head_len) = loop {
        if !client.buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(client.buf.filled()) {
                Ok(httparse::Status::Complete(len)) => {
                    match request::plan(&req, len, conn, shared, &mut client.out) {
                        Some(plan) => break (plan, len),
                        None => return Next::Handoff,
                    }
                }
                Ok(httparse::Status::Partial) if client.buf.len() < MAX_HEAD => {}
                _ => return Next::Handoff,
            }
        }
        let read = if client.buf.is_empty() {
            // Idle between requests: the only point where shutting down closes at once.
            tokio::select! {
                biased;
                r = read_more(&client.stream, &mut client.buf, &mut client.timer, deadline) => r,
                _ = stopping.as_mut() => return Next::Close,
            }
        } else {
            read_more(&client.stream, &mut client.buf, &mut client.timer, deadline).await
        };
        match read {
            Ok(0) | Err(_) => return Next::Close,
            Ok(_) => {}
        }
    };
    client.buf.consume(head_len);
    let start = Instant::now();
    proxy(client, conn, shared, plan, start).await
}

/// Forwards a planned request and relays the response.
async fn proxy(
    client: &mut Client,
    conn: &Arc<ConnInfo>,
    shared: &'static Shared,
    plan: Plan,
    start: Instant,
) -> Next {
    let Plan { published, route, backend, facts, request_id, head_request, close } = plan;
    let table = &published.table;
    let policy = &table.routes[route as usize].policy;
    let backend = &table.backends[backend];
    let mut record =
        Box::new(Record::new(shared, conn.clone(), facts, table.clone(), route, start, request_id));
    let sent = forward(&client.out, backend, policy, &mut record).await;
    let mut up = match sent {
        Ok(up) => up,
        Err(failure) => {
            shared.metrics.upstream_error(backend, failure.label());
            return error_page(client, failure.status(), close, shared, record).await;
        }
    };

    // The response head, after any interim (1xx) ones, which NGINX drops too.
    let read_deadline = || Instant::now() + policy.read_timeout;
    let (head, body_start) = loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(up.buf.filled()) {
            Ok(httparse::Status::Complete(len)) => {
                let status = resp.code.unwrap_or(0);
                if (100..200).contains(&status) && status != 101 {
                    up.buf.consume(len);
                    continue;
                }
                client.out.clear();
                let server_header = shared.server_header.as_bytes();
                match response::rewrite(&resp, head_request, close, server_header, &mut client.out)
                {
                    Ok(head) if status != 101 => break (head, len),
                    _ => return bad_response(client, &up, close, shared, backend, record).await,
                }
            }
            Ok(httparse::Status::Partial) if up.buf.len() < MAX_RESPONSE_HEAD => {}
            _ => return bad_response(client, &up, close, shared, backend, record).await,
        }
        match read_more(&up.stream, &mut up.buf, &mut up.timer, read_deadline()).await {
            Ok(n) if n > 0 => {}
            Ok(_) | Err(IoFail::Failed) => {
                return bad_response(client, &up, close, shared, backend, record).await;
            }
            Err(IoFail::Timeout) => {
                record.set_last_attempt(504, false);
                shared.metrics.upstream_error(backend, Failure::Timeout.label());
                return error_page(client, 504, close, shared, record).await;
            }
        }
    };
    record.status = head.status;
    record.set_last_attempt(head.status, true);

    // The body: whatever came with the head, then the rest as it arrives.
    let send_timeout = policy.send_timeout;
    let mut reusable = head.reusable;
    let mut dechunker = Dechunker::default();
    let mut remaining = match head.framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    let mut pending = body_start;
    let complete = loop {
        let chunk = &up.buf.filled()[pending..];
        let done = match head.framing {
            Framing::None => {
                reusable &= chunk.is_empty();
                true
            }
            Framing::Length(_) => {
                let n = chunk.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
                reusable &= n == chunk.len();
                client.out.extend_from_slice(&chunk[..n]);
                record.bytes_sent += n as u64;
                remaining -= n as u64;
                remaining == 0
            }
            Framing::Chunked => {
                match dechunker.feed(chunk, &mut client.out, &mut record.bytes_sent) {
                    Ok(used) => {
                        reusable &= used == chunk.len();
                        dechunker.done()
                    }
                    Err(_) => break false,
                }
            }
            Framing::UntilClose => {
                response::chunk(&mut client.out, chunk);
                record.bytes_sent += chunk.len() as u64;
                false
            }
        };
        if !client.out.is_empty() {
            if write_all(&client.stream, &client.out, &mut client.timer, send_timeout)
                .await
                .is_err()
            {
                // The client is gone: nothing more to tell it.
                record.complete = false;
                record.finish();
                return Next::Close;
            }
            client.out.clear();
        }
        if done {
            break true;
        }
        up.buf.clear();
        pending = 0;
        match read_more(&up.stream, &mut up.buf, &mut up.timer, read_deadline()).await {
            Ok(0) if head.framing == Framing::UntilClose => {
                let ok = write_all(&client.stream, LAST_CHUNK, &mut client.timer, send_timeout)
                    .await
                    .is_ok();
                record.complete = ok;
                record.finish();
                return if ok { keep_or_close(close) } else { Next::Close };
            }
            Ok(n) if n > 0 => {}
            _ => break false,
        }
    };
    record.complete = complete;
    let end = record.finish();
    if !complete {
        // Cut short: the client must see the response end abnormally, as with hyper.
        return Next::Close;
    }
    if reusable {
        up.checkin(end);
    }
    keep_or_close(close)
}

fn keep_or_close(close: bool) -> Next {
    if close { Next::Close } else { Next::KeepAlive }
}

/// Sends the request head to `backend`: endpoints in round-robin order, the next one when
/// connecting fails, up to `proxy-next-upstream-tries`, a fresh connection (not counted as a
/// try) when a pooled one turns out closed before answering — the same rules as
/// [`crate::upstream::forward`]. Returns the connection once the response's first bytes are in
/// its buffer.
async fn forward(
    head: &[u8],
    backend: &Backend,
    policy: &Policy,
    record: &mut Record,
) -> Result<Upstream, Failure> {
    let n = backend.endpoints.len();
    let first = backend.next_index().ok_or(Failure::Unreachable)?;
    let tries = (policy.next_upstream_tries as usize).clamp(1, n);
    let mut failure = Failure::Unreachable;
    let mut stale = 0;
    let mut t = 0;
    while t < tries {
        let addr = backend.endpoints[(first + t) % n].addr;
        let started = Instant::now();
        let pooled = if stale == 0 { Upstream::checkout(addr, started) } else { None };
        let reused = pooled.is_some();
        let mut up = match pooled {
            Some(up) => up,
            None => match Upstream::connect(addr, policy.connect_timeout).await {
                Ok(up) => up,
                Err(e) => {
                    failure = match e {
                        IoFail::Timeout => Failure::Timeout,
                        IoFail::Failed => Failure::Unreachable,
                    };
                    record.attempt(addr, failure.status(), false, started);
                    t += 1;
                    continue;
                }
            },
        };
        if let Err(e) = write_all(&up.stream, head, &mut up.timer, policy.send_timeout).await {
            if reused && stale < MAX_STALE_RETRIES {
                stale += 1;
                continue;
            }
            let timed_out = matches!(e, IoFail::Timeout);
            failure = if timed_out { Failure::Timeout } else { Failure::Unreachable };
            record.attempt(addr, failure.status(), false, started);
            if timed_out {
                return Err(failure);
            }
            t += 1;
            continue;
        }
        let deadline = Instant::now() + policy.read_timeout;
        match read_more(&up.stream, &mut up.buf, &mut up.timer, deadline).await {
            Ok(got) if got > 0 => {
                // The status is filled in once the head is parsed.
                record.attempt(addr, 0, true, started);
                return Ok(up);
            }
            Err(IoFail::Timeout) => {
                record.attempt(addr, 504, false, started);
                return Err(Failure::Timeout);
            }
            // Closed before answering: a pooled connection the peer had dropped.
            _ if reused && stale < MAX_STALE_RETRIES => stale += 1,
            _ => {
                record.attempt(addr, 502, false, started);
                return Err(Failure::Broken);
            }
        }
    }
    Err(failure)
}

/// The upstream answered something that is not an HTTP/1.1 response head (or nothing): 502.
async fn bad_response(
    client: &mut Client,
    up: &Upstream,
    close: bool,
    shared: &'static Shared,
    backend: &Backend,
    mut record: Box<Record>,
) -> Next {
    tracing::debug!(addr = %up.addr, "upstream sent an invalid response head");
    record.set_last_attempt(502, false);
    shared.metrics.upstream_error(backend, Failure::Broken.label());
    error_page(client, 502, close, shared, record).await
}

/// Answers with Sluice's own error page for `status`.
async fn error_page(
    client: &mut Client,
    status: u16,
    close: bool,
    shared: &'static Shared,
    mut record: Box<Record>,
) -> Next {
    let code = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let page = local::page(code);
    let out = &mut client.out;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(code.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(code.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    response::header(out, b"server", shared.server_header.as_bytes());
    response::with_date(|d| response::header(out, b"date", d));
    response::header(out, b"content-type", b"text/html");
    response::header(out, b"content-length", page.len().to_string().as_bytes());
    if close {
        response::header(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&page);
    record.status = status;
    record.bytes_sent = page.len() as u64;
    let sent = write_all(&client.stream, &client.out, &mut client.timer, Duration::from_secs(60))
        .await
        .is_ok();
    client.out.clear();
    record.complete = true;
    record.finish();
    if sent { keep_or_close(close) } else { Next::Close }
}
