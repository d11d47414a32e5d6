//! The HTTP/1.1 fast path. Connections on the HTTP port are read here first, and so are those
//! on the HTTPS port once the handshake is done, unless ALPN chose h2 ([`ClientStream`]: the
//! loop is the same, rustls only adds the record layer between it and the socket); the requests
//! that make up most traffic — `GET` and `HEAD`, and requests of any method with a small
//! `Content-Length` body, to a route translation lets this path carry
//! ([`sluice_model::Route::fast`]) — are proxied straight between sockets:
//!
//! 1. the request head is parsed once with `httparse`, in the connection's buffer;
//! 2. the request life cycle decides what becomes of it ([`crate::pipeline`], the same phases
//!    the general path runs), writing the upstream's head as header lines: the client's
//!    copied as they came, less what Sluice replaces, plus what it sets ([`request`]); a body
//!    larger than the route lets this path hold ([`sluice_model::Route::fast_body`]:
//!    `client-body-buffer-size`, 8 KiB by default, at most 64 KiB, none with
//!    `proxy-request-buffering: off`) is handed over there, before anything is decided;
//! 3. a body is read whole into the connection's buffer before the upstream is contacted
//!    (`client-body-timeout` between two reads; a stall is cut without an answer and logged
//!    408, as NGINX does); a declared length over `proxy-body-size` is answered 413 instead,
//!    as the general path answers it. A local answer, or the 413, drops the body it did not
//!    need, and the connection goes on;
//! 4. the head, and the body with its one `Content-Length`, go out in one write on a pooled
//!    keep-alive connection of this worker ([`io`]), to the endpoints of the life cycle's
//!    [`Attempts`], with the same retries and timeouts as the general path (the held body is
//!    sent again as it is, as the general path resends its buffered one);
//! 5. the response head is edited by the same rules and leaves with the first body bytes in
//!    one write; the body streams through with its framing checked ([`response`]); local
//!    answers (redirects, 404, 503) are written here too;
//! 6. the access log line and metrics are written from the same [`Record`]
//!    (`$request_length` counts the body, as on the general path).
//!
//! Everything else — chunked bodies and bodies without a length, larger bodies, upgrades,
//! `Expect`, `CONNECT`, HTTP/1.0, h2c, malformed heads or heads of many lines, routes the life
//! cycle hands over — goes to hyper ([`crate::handler`]) together with the bytes already
//! read, for the rest of the connection. Framing is checked on every head first, whatever
//! comes of it ([`request::refused_framing`]: `Content-Length` with `Transfer-Encoding`, two
//! lengths, a length not of digits are refused as NGINX refuses them). Heads are held to the
//! ConfigMap's `large-client-header-buffers` and `client-header-timeout` here, and connections
//! to its `keep-alive-requests` ([`crate::head_limits`]). Reads clear socket readiness after a
//! short read, which saves the `EWOULDBLOCK` read per message that a generic reader pays.

mod io;
pub(crate) mod leg;
pub(crate) mod request;
pub(crate) mod response;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_model::{Backend, Limits, Route, RoutingTable, UpstreamKeepalive};
use tokio::sync::watch;
use tokio::time::Instant;

pub(crate) use io::{ClientStream, Upstream};
use io::{IoFail, ReadBuf, Timer, read_more, write_all};
use request::{Plan, Planned};
use response::{Dechunker, Framing, LAST_CHUNK};

use crate::pipeline::{Attempts, Failure, Forward, Local, Reply, ResponsePlan};
use crate::record::Record;
use crate::server::{ConnInfo, HyperBuilder};
use crate::tls::hello::Rewind;
use crate::{Shared, head_limits, local, server};

/// Header lines parsed; more go to hyper.
pub(crate) const MAX_HEADERS: usize = 64;
/// Longest upstream response head accepted (NGINX: "upstream sent too big header", 502).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// What a connection needs to be handed to hyper.
pub(crate) struct Handoff {
    pub builder: Arc<HyperBuilder>,
}

/// One client connection's state between requests.
struct Client {
    stream: ClientStream,
    /// Bytes read and not yet consumed (a request head, pipelined requests).
    buf: ReadBuf,
    /// The upstream request head being built, then the response head and first body bytes.
    out: Vec<u8>,
    timer: Timer,
    /// Requests read on this connection (`keep-alive-requests`).
    requests: u32,
}

/// Buffers grown larger than this by one request (its body, a large head) are given back
/// before the next.
const IDLE_BUFFER: usize = 32 * 1024;

impl Client {
    /// Gives back what one large request made the buffers take.
    fn trim(&mut self) {
        self.buf.shrink(IDLE_BUFFER / 2);
        if self.out.capacity() > IDLE_BUFFER {
            self.out = Vec::with_capacity(4096);
        }
    }
}

/// How a request ended for its connection.
enum Next {
    /// Ready for the next request.
    KeepAlive,
    Close,
    /// The request is not the fast path's: hyper takes the connection from here.
    Handoff,
}

/// Serves an HTTP/1 connection, plain or over TLS (after the handshake, when ALPN chose no
/// other protocol), until it closes, handing it to hyper at the first request the fast path
/// does not take. `conn` holds the worker's `live` receiver until the connection
/// ends (the worker waits for all of them on shutdown); `shutdown` turns true when the proxy
/// stops accepting. A request still in flight a moment after the grace period is cut when the
/// worker ends (no wait for that is registered here: connections are many and short).
pub(crate) async fn serve(
    stream: ClientStream,
    conn: Arc<ConnInfo>,
    shared: &'static Shared,
    handoff: Handoff,
    shutdown: watch::Receiver<bool>,
) {
    let mut client = Client {
        stream,
        buf: ReadBuf::new(4096),
        out: Vec::with_capacity(4096),
        timer: Timer::new(),
        requests: 0,
    };
    // One wait for shutdown for the whole connection, polled at each idle read: making a new
    // one per request would register and unregister a waiter (under the channel's lock) each
    // time.
    let mut watching = shutdown.clone();
    let stopping = watching.changed();
    tokio::pin!(stopping);
    loop {
        match next(&mut client, &conn, shared, stopping.as_mut()).await {
            Next::KeepAlive if !*shutdown.borrow() => client.trim(),
            Next::KeepAlive | Next::Close => return client.stream.close(&mut client.timer).await,
            Next::Handoff => {
                // hyper counts on from the requests served here (`keep-alive-requests`).
                let served = client.requests.saturating_sub(1);
                let (builder, read) = (&handoff.builder, client.buf.take());
                match client.stream {
                    ClientStream::Tcp(stream) => {
                        let io = Rewind::new(read, stream);
                        server::serve_hyper(builder, shutdown, io, conn, shared, served).await;
                    }
                    ClientStream::Tls(stream) => {
                        let io = Rewind::new(read, *stream);
                        server::serve_hyper(builder, shutdown, io, conn, shared, served).await;
                    }
                }
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
    // Idle between requests, the `keep-alive` timeout applies (NGINX's keepalive_timeout);
    // on a new connection, and from a request's first byte, `client-header-timeout`. A head
    // that does not come whole in time is cut without an answer, as NGINX does.
    let (keep_alive, limits) = {
        let published = shared.state.load();
        (published.table.https.keep_alive, published.table.https.connections)
    };
    let head_timeout = limits.client_header_timeout;
    let mut idle = client.buf.is_empty();
    let mut deadline =
        Instant::now() + if idle && client.requests > 0 { keep_alive } else { head_timeout };
    let (plan, head_len) = loop {
        if !client.buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(client.buf.filled()) {
                Ok(httparse::Status::Complete(len)) => {
                    client.requests = client.requests.saturating_add(1);
                    let head = &client.buf.filled()[..len];
                    let refused = head_limits::check_head(head, &limits.header_buffers)
                        .or_else(|| request::refused_framing(&req));
                    if let Some(status) = refused {
                        return refuse(client, status, shared).await;
                    }
                    match request::plan(&req, len, conn, shared, &mut client.out) {
                        Some(mut plan) => {
                            // NGINX's keepalive_requests: the connection's last request says
                            // so in its response, and the connection closes after it.
                            plan.close |= client.requests >= limits.keep_alive_requests;
                            break (plan, len);
                        }
                        None => return Next::Handoff,
                    }
                }
                Ok(httparse::Status::Partial) => {
                    let partial = client.buf.filled();
                    if let Some(status) =
                        head_limits::check_partial(partial, &limits.header_buffers)
                    {
                        return refuse(client, status, shared).await;
                    }
                }
                _ => return Next::Handoff,
            }
        }
        let read = if client.buf.is_empty() {
            // Idle between requests: the only point where shutting down closes at once.
            tokio::select! {
                biased;
                r = client.stream.read_more(&mut client.buf, &mut client.timer, deadline) => r,
                _ = stopping.as_mut() => return Next::Close,
            }
        } else {
            client.stream.read_more(&mut client.buf, &mut client.timer, deadline).await
        };
        match read {
            Ok(0) | Err(_) => return Next::Close,
            Ok(_) if idle => {
                idle = false;
                deadline = Instant::now() + head_timeout;
            }
            Ok(_) => {}
        }
    };
    client.buf.consume(head_len);
    let start = Instant::now();
    let Plan { published, decision, facts, head_request, close, body } = plan;
    match decision {
        Planned::Forward(forward) => {
            let head = Head { facts, head_request, close, body, start };
            proxy(client, conn, shared, &published, forward, head).await
        }
        Planned::Local(mut answer) => {
            let table = &published.table;
            let mut record = Box::new(Record::new(
                shared,
                conn.clone(),
                facts,
                table.clone(),
                answer.route,
                start,
                answer.request_id.clone(),
            ));
            record.log = answer.log;
            record.default_host = answer.default_host.take();
            let next = local_answer(client, &answer, table, close, shared, record).await;
            discard(client, body, limits.client_body_timeout, next).await
        }
    }
}

/// What the fast path read of a request before forwarding it.
struct Head {
    facts: crate::record::RequestFacts,
    /// `HEAD`: the response has no body.
    head_request: bool,
    /// The client asked to close the connection after the response.
    close: bool,
    /// The body's declared length, still to be read after the head.
    body: u64,
    /// When the head was read whole.
    start: Instant,
}

/// Why a request body could not be read whole.
enum Unread {
    /// Nothing came for `client-body-timeout`.
    Timeout,
    /// The client closed, or the connection failed, before the end.
    Broken,
}

/// Reads the `n` body bytes that follow a request head into the connection's buffer (where
/// some may be already), waiting at most `timeout` between two reads (NGINX's
/// `client_body_timeout`). What follows the body (a pipelined request) may be read with it.
async fn read_body(client: &mut Client, n: usize, timeout: Duration) -> Result<(), Unread> {
    while client.buf.len() < n {
        let deadline = Instant::now() + timeout;
        match client.stream.read_more(&mut client.buf, &mut client.timer, deadline).await {
            Ok(got) if got > 0 => {}
            Err(IoFail::Timeout) => return Err(Unread::Timeout),
            Ok(_) | Err(IoFail::Failed) => return Err(Unread::Broken),
        }
    }
    Ok(())
}

/// After an answer made without the request's body (a local answer, a 413), reads and drops
/// the `body` bytes still to come, as NGINX discards a body it does not need, so that the
/// connection can go on to the next request; `next` is what the answer left it to. A client
/// that stops short of its length for `timeout` is closed.
async fn discard(client: &mut Client, body: u64, timeout: Duration, next: Next) -> Next {
    if body == 0 {
        return next;
    }
    let mut left = body;
    loop {
        let here = client.buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        client.buf.consume(here);
        left -= here as u64;
        if left == 0 {
            return next;
        }
        let deadline = Instant::now() + timeout;
        match client.stream.read_more(&mut client.buf, &mut client.timer, deadline).await {
            Ok(got) if got > 0 => {}
            _ => return Next::Close,
        }
    }
}

/// Forwards a planned request, with its body read whole first, and relays the response.
async fn proxy(
    client: &mut Client,
    conn: &Arc<ConnInfo>,
    shared: &'static Shared,
    published: &Arc<crate::Published>,
    mut forward: Box<Forward>,
    head: Head,
) -> Next {
    let Head { facts, head_request, close, body, start } = head;
    let table = &published.table;
    let route = &table.routes[forward.route as usize];
    let limits = &route.policy.limits;
    let backend = &table.backends[forward.backend as usize];
    let mut record = Box::new(Record::new(
        shared,
        conn.clone(),
        facts,
        table.clone(),
        forward.route,
        start,
        forward.request_id.clone(),
    ));
    record.backend = Some(forward.backend);
    record.canary = forward.canary;
    record.permit = forward.permit.take();
    record.log = forward.log;
    record.default_host = forward.default_host.take();
    let mut attempts = forward.attempts;
    let mut plan = forward.response;

    // The body, read whole before the upstream is contacted (`proxy-request-buffering: on`,
    // which translation requires of a route for bodies here), and sent in one write with the
    // head: a retry sends the same bytes again.
    if body > 0 {
        let body_timeout = table.https.connections.client_body_timeout;
        if limits.max_body_size.is_some_and(|max| body > max) {
            // `proxy-body-size`, as the general path answers it; the connection goes on once
            // the body is read and dropped.
            let next = error_page(client, 413, &plan, route, table, close, shared, record).await;
            return discard(client, body, body_timeout, next).await;
        }
        // Within the route's `fast_body`, which is at most `FAST_BODY_MAX`.
        let n = usize::try_from(body).unwrap_or(usize::MAX);
        match read_body(client, n, body_timeout).await {
            Ok(()) => {
                client.out.extend_from_slice(&client.buf.filled()[..n]);
                client.buf.consume(n);
            }
            Err(why) => {
                // NGINX closes without an answer either way: a body that stalled for
                // `client-body-timeout` is logged 408, one the client broke off 400.
                record.status = match why {
                    Unread::Timeout => 408,
                    Unread::Broken => 400,
                };
                record.finish();
                return Next::Close;
            }
        }
    }

    let method = record.request.method.clone();
    let method = method.as_str();
    let keepalive = &table.https.connections.upstream;
    let sent =
        send(&client.out, backend, &mut attempts, limits, keepalive, method, &mut record).await;
    if let Some(key) = attempts.repinned() {
        let ua = record.request.user_agent.as_ref().map(|v| v.as_bytes());
        plan.set_cookie = crate::pipeline::repin_cookie(backend, key, &route.path, false, ua);
    }
    let mut sent = sent;
    // The response head, after any interim (1xx) ones, which NGINX drops too. A failure
    // before it, or a status `proxy-next-upstream` retries, goes on to the next endpoint
    // while one is left: the request (without a body, or with its body held whole) can
    // always be sent again, when its method allows.
    let read_deadline = || Instant::now() + limits.read_timeout;
    let (mut up, head, body_start) = 'attempt: loop {
        let mut up = match sent {
            Ok(up) => up,
            Err(failure) => {
                shared.metrics.upstream_error(backend, failure.label());
                return error_page(
                    client,
                    failure.status(),
                    &plan,
                    route,
                    table,
                    close,
                    shared,
                    record,
                )
                .await;
            }
        };
        let failure = loop {
            let edits = response::Edits {
                plan: &plan,
                rules: &route.policy.response,
                hsts: None,
                server: shared.server_header.as_bytes(),
            };
            // Written after the request, which the next endpoint gets if this head is refused
            // (`proxy-next-upstream: invalid_header`).
            let sent_len = client.out.len();
            let out = &mut client.out;
            let parsed = parse_head(&mut up, &mut attempts, backend, method, &record, |resp, _| {
                response::rewrite(resp, head_request, close, &edits, out)
            });
            match parsed {
                Reading::Partial => {}
                Reading::Invalid => {
                    client.out.truncate(sent_len);
                    break Failure::InvalidHeader;
                }
                Reading::Retry(status) => {
                    record.set_last_attempt(status, true);
                    sent = send(
                        &client.out,
                        backend,
                        &mut attempts,
                        limits,
                        keepalive,
                        method,
                        &mut record,
                    )
                    .await;
                    continue 'attempt;
                }
                Reading::Final { len, head } => {
                    client.out.drain(..sent_len);
                    break 'attempt (up, head, len);
                }
            }
            if let Err(failure) = more_head(&mut up, limits.read_timeout).await {
                break failure;
            }
        };
        if head_failed(&up, failure, &mut attempts, backend, method, &mut record) {
            sent =
                send(&client.out, backend, &mut attempts, limits, keepalive, method, &mut record)
                    .await;
            continue;
        }
        shared.metrics.upstream_error(backend, failure.label());
        return error_page(client, failure.status(), &plan, route, table, close, shared, record)
            .await;
    };
    record.status = head.status;
    record.set_last_attempt(head.status, true);

    // The body: whatever came with the head, then the rest as it arrives.
    let send_timeout = limits.send_timeout;
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
            if client.stream.write_all(&client.out, &mut client.timer, send_timeout).await.is_err()
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
                let ok = client
                    .stream
                    .write_all(LAST_CHUNK, &mut client.timer, send_timeout)
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
        up.checkin(end, &table.https.connections.upstream);
    }
    keep_or_close(close)
}

fn keep_or_close(close: bool) -> Next {
    if close { Next::Close } else { Next::KeepAlive }
}

/// How long the current attempt has waited for its response head.
fn up_elapsed(record: &Record) -> Duration {
    record.attempts().last().map_or(Duration::ZERO, |a| a.started.elapsed())
}

/// What the response head read so far comes to.
enum Reading<T> {
    /// Not all of it yet.
    Partial,
    /// Not HTTP, too large, or refused as NGINX refuses it (502, or the next endpoint).
    Invalid,
    /// A status `proxy-next-upstream` sends to the next endpoint.
    Retry(u16),
    /// The final head, `len` bytes, as the caller made it.
    Final { len: usize, head: T },
}

/// Parses the response head in `up`'s buffer, for both upstream legs: interim (1xx) answers
/// are dropped, as NGINX drops them; a status `proxy-next-upstream` retries is
/// [`Reading::Retry`]; otherwise the answer is counted for the balancer and `accept` makes what
/// the caller needs of the head, given its bytes (`Err` when NGINX would refuse it; so is a
/// 101 nobody asked for). httparse's header array lives in this call, not in the caller's future across its
/// reads.
fn parse_head<T>(
    up: &mut Upstream,
    attempts: &mut Attempts,
    backend: &Backend,
    method: &str,
    record: &Record,
    accept: impl FnOnce(&httparse::Response<'_, '_>, &[u8]) -> Result<T, response::Invalid>,
) -> Reading<T> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(up.buf.filled()) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if up.buf.len() < MAX_RESPONSE_HEAD => {
                return Reading::Partial;
            }
            _ => return Reading::Invalid,
        };
        let status = resp.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            up.buf.consume(len);
            continue;
        }
        if attempts.retries_status(backend, status, method, true) {
            return Reading::Retry(status);
        }
        attempts.answered(backend, status, up_elapsed(record));
        return match accept(&resp, &up.buf.filled()[..len]) {
            Ok(head) if status != 101 => Reading::Final { len, head },
            _ => Reading::Invalid,
        };
    }
}

/// Reads more of a response head into `up`'s buffer; the failure when nothing comes within
/// `read_timeout` or the connection ends.
async fn more_head(up: &mut Upstream, read_timeout: Duration) -> Result<(), Failure> {
    let deadline = Instant::now() + read_timeout;
    match read_more(&up.stream, &mut up.buf, &mut up.timer, deadline).await {
        Ok(n) if n > 0 => Ok(()),
        Ok(_) | Err(IoFail::Failed) => Err(Failure::Broken),
        Err(IoFail::Timeout) => Err(Failure::Timeout),
    }
}

/// Notes that the attempt on `up` got no usable response head, and says whether
/// `proxy-next-upstream` sends the request to the next endpoint.
fn head_failed(
    up: &Upstream,
    failure: Failure,
    attempts: &mut Attempts,
    backend: &Backend,
    method: &str,
    record: &mut Record,
) -> bool {
    tracing::debug!(addr = %up.addr, ?failure, "upstream response head failed");
    record.set_last_attempt(failure.status(), false);
    attempts.retries(backend, failure, method, true)
}

/// Sends the request head to `backend`'s endpoints in the order of `attempts`, going on to
/// the next when connecting fails (or the connection breaks before answering, when
/// `proxy-next-upstream` says so), a fresh connection (not counted as an attempt) when a
/// pooled one turns out closed before answering — the rules of
/// [`crate::upstream::forward`]. Returns the connection once the response's first bytes are
/// in its buffer.
#[allow(clippy::too_many_arguments)]
async fn send(
    head: &[u8],
    backend: &Backend,
    attempts: &mut Attempts,
    limits: &Limits,
    keepalive: &UpstreamKeepalive,
    method: &str,
    record: &mut Record,
) -> Result<Upstream, Failure> {
    let mut failure = Failure::Connect;
    let mut next = attempts.next(backend);
    let mut fresh = false;
    while let Some(addr) = next.take() {
        let started = Instant::now();
        let pooled = if fresh { None } else { Upstream::checkout(addr, started, keepalive) };
        fresh = false;
        let reused = pooled.is_some();
        let mut up = match pooled {
            Some(up) => up,
            None => match Upstream::connect(addr, limits.connect_timeout).await {
                Ok(up) => up,
                Err(e) => {
                    failure = match e {
                        IoFail::Timeout => Failure::ConnectTimeout,
                        IoFail::Failed => Failure::Connect,
                    };
                    record.attempt(addr, failure.status(), false, started);
                    if attempts.retries(backend, failure, method, true) {
                        next = attempts.next(backend);
                    }
                    continue;
                }
            },
        };
        if let Err(e) = write_all(&up.stream, head, &mut up.timer, limits.send_timeout).await {
            if reused && attempts.stale_again() {
                next = Some(addr);
                fresh = true;
                continue;
            }
            failure = if matches!(e, IoFail::Timeout) { Failure::Timeout } else { Failure::Broken };
            record.attempt(addr, failure.status(), false, started);
            if attempts.retries(backend, failure, method, true) {
                next = attempts.next(backend);
            }
            continue;
        }
        let deadline = Instant::now() + limits.read_timeout;
        match read_more(&up.stream, &mut up.buf, &mut up.timer, deadline).await {
            Ok(got) if got > 0 => {
                // The status is filled in once the head is parsed.
                record.attempt(addr, 0, true, started);
                return Ok(up);
            }
            Err(IoFail::Timeout) => {
                record.attempt(addr, 504, false, started);
                failure = Failure::Timeout;
            }
            // Closed before answering: a pooled connection the peer had dropped.
            _ if reused && attempts.stale_again() => {
                next = Some(addr);
                fresh = true;
                continue;
            }
            _ => {
                record.attempt(addr, 502, false, started);
                failure = Failure::Broken;
            }
        }
        if attempts.retries(backend, failure, method, true) {
            next = attempts.next(backend);
        }
    }
    Err(failure)
}

/// Answers a local decision of the life cycle: a redirect, or Sluice's own page for its
/// status, with the response phase's headers.
async fn local_answer(
    client: &mut Client,
    answer: &Local,
    table: &RoutingTable,
    close: bool,
    shared: &'static Shared,
    record: Box<Record>,
) -> Next {
    let location = answer.location.as_deref();
    let route = &table.routes[answer.route as usize];
    let body = answer.body.as_ref();
    respond(
        client,
        answer.status,
        location,
        body,
        &answer.response,
        route,
        table,
        close,
        shared,
        record,
    )
    .await
}

/// Answers with Sluice's own error page for `status`.
#[allow(clippy::too_many_arguments)]
async fn error_page(
    client: &mut Client,
    status: u16,
    plan: &ResponsePlan,
    route: &Route,
    table: &RoutingTable,
    close: bool,
    shared: &'static Shared,
    record: Box<Record>,
) -> Next {
    respond(client, status, None, None, plan, route, table, close, shared, record).await
}

/// Writes a response of Sluice's own: `status`, its page, `location` for a redirect, and the
/// response phase's headers.
#[allow(clippy::too_many_arguments)]
async fn respond(
    client: &mut Client,
    status: u16,
    location: Option<&str>,
    body: Option<&Bytes>,
    plan: &ResponsePlan,
    route: &Route,
    table: &RoutingTable,
    close: bool,
    shared: &'static Shared,
    mut record: Box<Record>,
) -> Next {
    let code = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    // A snippet's `return` text, else Sluice's page for the status.
    let page = body.cloned().unwrap_or_else(|| local::page(code));
    let out = &mut client.out;
    out.clear();
    response::status_line(out, code);
    // NGINX's own pages are text/html; a 204 has no body and no type.
    let content_type: Option<&[u8]> = (status != 204).then_some(b"text/html");
    plan.each_set(
        &route.policy.response,
        Reply { status, content_type },
        table.https.hsts.as_deref(),
        shared.server_header.as_bytes(),
        |name, value| {
            response::header(out, name.as_bytes(), value);
        },
    );
    response::with_date(|d| response::header(out, b"date", d));
    // A 204 (a CORS preflight) has no body, and NGINX sends neither header with it.
    if status != 204 {
        response::header(out, b"content-type", b"text/html");
        response::header(out, b"content-length", page.len().to_string().as_bytes());
    }
    if let Some(location) = location {
        response::header(out, b"location", location.as_bytes());
    }
    if close {
        response::header(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&page);
    record.status = status;
    record.bytes_sent = page.len() as u64;
    let sent = client
        .stream
        .write_all(&client.out, &mut client.timer, Duration::from_secs(60))
        .await
        .is_ok();
    client.out.clear();
    record.complete = true;
    record.finish();
    if sent { keep_or_close(close) } else { Next::Close }
}

/// Refuses a request before routing, with Sluice's page for `status`, and closes: a framing
/// that is ambiguous or unknown (see [`request::refused_framing`]: what follows its head
/// cannot be told apart from a body, so nothing more is read from the connection), or a head
/// too large for `large-client-header-buffers` (414, or [`head_limits::HEADER_TOO_LARGE`]
/// sent as 400).
async fn refuse(client: &mut Client, status: u16, shared: &'static Shared) -> Next {
    let code = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    let page = local::page(code);
    let code =
        if status == head_limits::HEADER_TOO_LARGE { http::StatusCode::BAD_REQUEST } else { code };
    let out = &mut client.out;
    out.clear();
    response::status_line(out, code);
    response::header(out, b"server", shared.server_header.as_bytes());
    response::with_date(|d| response::header(out, b"date", d));
    response::header(out, b"content-type", b"text/html");
    response::header(out, b"content-length", page.len().to_string().as_bytes());
    response::header(out, b"connection", b"close");
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&page);
    let _ = client.stream.write_all(&client.out, &mut client.timer, Duration::from_secs(10)).await;
    client.out.clear();
    Next::Close
}
