//! The bodies that cross the proxy: the client's request body on its way upstream (size limit,
//! progress for the send timeout) and the response body on its way back (read timeout,
//! byte count, and the end-of-request hook that writes the access log and metrics).

use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::fast::leg::RawBody;
use crate::record::Record;

/// Errors a body can end with.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The request body grew past the route's `proxy-body-size`.
    TooLarge,
    /// The upstream sent nothing for `proxy-read-timeout`.
    ReadTimeout,
    /// The client sent nothing of its request body for `client-body-timeout`.
    ClientTimeout,
    /// The peer failed.
    Io(hyper::Error),
    /// The upstream's body broke off, or was malformed (raw connections).
    Upstream,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge => f.write_str("request body larger than proxy-body-size"),
            BodyError::ReadTimeout => f.write_str("upstream read timed out"),
            BodyError::ClientTimeout => f.write_str("client request body timed out"),
            BodyError::Io(e) => write!(f, "{e}"),
            BodyError::Upstream => f.write_str("upstream response body broken off or malformed"),
        }
    }
}

impl StdError for BodyError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            BodyError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// True when `err`, or any error it wraps, is a request body over its limit.
pub(crate) fn is_too_large(err: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if matches!(e.downcast_ref::<BodyError>(), Some(BodyError::TooLarge)) {
            return true;
        }
        cur = e.source();
    }
    false
}

/// How far the upload of a request body has got, shared with the task waiting for the
/// response so that the send timeout counts from the last progress, not from the start.
#[derive(Debug)]
pub(crate) struct Progress {
    base: Instant,
    last_ms: AtomicU64,
    done: AtomicBool,
    /// The client stopped sending the body for `client-body-timeout`.
    client_timed_out: AtomicBool,
}

impl Progress {
    pub(crate) fn new(base: Instant) -> Arc<Self> {
        Arc::new(Self {
            base,
            last_ms: AtomicU64::new(0),
            done: AtomicBool::new(false),
            client_timed_out: AtomicBool::new(false),
        })
    }

    /// Whether the upload failed because the client stopped sending
    /// (`client-body-timeout`).
    pub(crate) fn client_timed_out(&self) -> bool {
        self.client_timed_out.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the last chunk went out, and whether the body is complete.
    pub(crate) fn last(&self) -> (Instant, bool) {
        let at = self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        (at, self.done.load(Ordering::Relaxed))
    }
}

/// After a 413, the rest of a request body is read and thrown away, up to this much or for
/// this long, so that a client still uploading gets to read the answer instead of a reset
/// (NGINX's lingering close).
const DRAIN_BYTES: u64 = 16 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// The client's request body on its way upstream: absent, held whole in memory (request
/// buffering, or a body read again for a retry), or streamed as it arrives (after what was
/// read already).
pub(crate) struct RequestBody {
    inner: Inner,
    limit: u64,
    seen: u64,
    progress: Option<Arc<Progress>>,
    /// `client-body-timeout` while streamed, and its timer (made at the first wait), armed
    /// while `waiting` for the client: a wait on the upstream does not count.
    timeout: Duration,
    idle: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

/// The timeout of bodies that never wait for the client (held whole, or absent).
const NEVER: Duration = Duration::from_secs(365 * 86_400);

enum Inner {
    Absent,
    /// Held whole; taken when sent.
    Held(Option<Bytes>),
    /// Streamed: the bytes read already, then the rest.
    Stream {
        prefix: Option<Bytes>,
        rest: Incoming,
    },
}

/// Why a body could not be read before going upstream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unread {
    /// It exceeded `proxy-body-size` (413).
    TooLarge,
    /// The client sent nothing for `client-body-timeout` (408, and the connection is cut).
    Timeout,
    /// The client broke off before the end (400, as NGINX logs it).
    Broken,
}

/// The most of a request body held in memory by request buffering (see the translate
/// crate's `buffering` family); a larger body is streamed on from there.
pub(crate) const BUFFER_LIMIT: u64 = 8 * 1024 * 1024;

/// Room for the frame that crosses a hold's end: hyper's frames are at most 64 KiB (the
/// HTTP/1.1 read buffer, `max_buf_size`) or 16 KiB (HTTP/2 frames).
const FRAME_ROOM: usize = 64 * 1024;

impl RequestBody {
    /// Wraps `inner`, failing once more than `limit` bytes went through, or when the client
    /// sends nothing for `timeout` (NGINX's `client_body_timeout`, between two reads).
    pub(crate) fn new(
        inner: Incoming,
        limit: Option<u64>,
        progress: Option<Arc<Progress>>,
        timeout: Duration,
    ) -> Self {
        let inner = if inner.is_end_stream() {
            Inner::Absent
        } else {
            Inner::Stream { prefix: None, rest: inner }
        };
        let limit = limit.unwrap_or(u64::MAX);
        Self { inner, limit, seen: 0, progress, timeout, idle: None, waiting: false }
    }

    /// Reads `incoming` before anything goes upstream (`proxy-request-buffering`): held whole
    /// when it ends within `hold` bytes, else streamed once `hold` bytes have arrived. `Err`
    /// when it is larger than `limit` (the rest is drained meanwhile), or stalls for
    /// `timeout` between two reads (NGINX's `client_body_timeout`).
    pub(crate) async fn buffered(
        mut incoming: Incoming,
        limit: Option<u64>,
        hold: u64,
        progress: Option<Arc<Progress>>,
        timeout: Duration,
    ) -> Result<Self, Unread> {
        use http_body_util::BodyExt;
        let limit = limit.unwrap_or(u64::MAX);
        // Sized once for a declared length, so that holding 8 MiB costs 8 MiB: growing by
        // doubling would copy into twice the size (24 MiB touched for an 8 MiB hold). The
        // frame that crosses `hold` fits too (hyper's frames are at most 64 KiB here).
        let fits = usize::try_from(hold).unwrap_or(usize::MAX).saturating_add(FRAME_ROOM);
        let declared = incoming.size_hint().exact().and_then(|n| usize::try_from(n).ok());
        let mut held: Vec<u8> = Vec::with_capacity(declared.map_or(0, |n| n.min(fits)));
        let stream = loop {
            if incoming.is_end_stream() {
                break false;
            }
            let frame = tokio::time::timeout(timeout, incoming.frame())
                .await
                .map_err(|_| Unread::Timeout)?;
            match frame {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        if held.capacity() - held.len() < data.len() {
                            // Doubling, but never past what the hold can need.
                            let want = (held.capacity() * 2).min(fits).max(held.len() + data.len());
                            held.reserve_exact(want - held.len());
                        }
                        held.extend_from_slice(data);
                        if held.len() as u64 > limit {
                            tokio::spawn(drain(incoming));
                            return Err(Unread::TooLarge);
                        }
                        if held.len() as u64 >= hold {
                            break true;
                        }
                    }
                }
                // A client that breaks off mid-body: nothing goes upstream.
                Some(Err(_)) => return Err(Unread::Broken),
                None => break false,
            }
        };
        let seen = held.len() as u64;
        let held = Bytes::from(held);
        let inner = if stream {
            Inner::Stream { prefix: Some(held), rest: incoming }
        } else {
            Inner::Held(Some(held))
        };
        Ok(Self { inner, limit, seen, progress, timeout, idle: None, waiting: false })
    }

    /// A body held whole.
    pub(crate) fn held(body: Bytes) -> Self {
        let inner = Inner::Held(Some(body));
        Self {
            inner,
            limit: u64::MAX,
            seen: 0,
            progress: None,
            timeout: NEVER,
            idle: None,
            waiting: false,
        }
    }

    /// A body with nothing in it.
    pub(crate) fn empty() -> Self {
        let inner = Inner::Absent;
        Self {
            inner,
            limit: u64::MAX,
            seen: 0,
            progress: None,
            timeout: NEVER,
            idle: None,
            waiting: false,
        }
    }

    /// The body, when it can be sent again: `Some(None)` when absent, `Some(Some(bytes))`
    /// when held whole; `None` when streamed.
    pub(crate) fn held_bytes(&self) -> Option<Option<Bytes>> {
        match &self.inner {
            Inner::Absent => Some(None),
            Inner::Held(Some(b)) => Some(Some(b.clone())),
            _ => None,
        }
    }

    /// Its length, when held whole.
    pub(crate) fn held_len(&self) -> Option<u64> {
        match &self.inner {
            Inner::Held(Some(b)) => Some(b.len() as u64),
            _ => None,
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if self.seen > self.limit
            && let Inner::Stream { rest, .. } = std::mem::replace(&mut self.inner, Inner::Absent)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(drain(rest));
        }
    }
}

/// Reads and discards what is left of a request body, within [`DRAIN_BYTES`] and [`DRAIN_TIME`].
pub(crate) async fn drain(mut body: Incoming) {
    use http_body_util::BodyExt;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut read = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len() as u64);
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let (prefix, inner) = match &mut this.inner {
            Inner::Absent => return Poll::Ready(None),
            Inner::Held(data) => {
                let frame = data.take().map(|d| Ok(Frame::data(d)));
                if let Some(p) = &this.progress {
                    p.touch();
                    p.done.store(true, Ordering::Relaxed);
                }
                return Poll::Ready(frame);
            }
            Inner::Stream { prefix, rest } => (prefix, rest),
        };
        if let Some(first) = prefix.take() {
            if let Some(p) = &this.progress {
                p.touch();
            }
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        let frame = match Pin::new(&mut *inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                frame
            }
            Poll::Pending => {
                // The timer is made at the first wait (a body that arrives without one costs
                // none) and armed when a wait for the client starts.
                let deadline = Instant::now() + this.timeout;
                let idle =
                    this.idle.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !this.waiting {
                    this.waiting = true;
                    idle.as_mut().reset(deadline);
                }
                ready!(idle.as_mut().poll(cx));
                if let Some(p) = &this.progress {
                    p.client_timed_out.store(true, Ordering::Relaxed);
                }
                return Poll::Ready(Some(Err(BodyError::ClientTimeout)));
            }
        };
        if let Some(p) = &this.progress {
            p.touch();
            // With a Content-Length, the writer stops at the last byte and never asks for the
            // end: the body is complete once the inner body says so.
            if frame.is_none() || inner.is_end_stream() {
                p.done.store(true, Ordering::Relaxed);
            }
        }
        Poll::Ready(match frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.limit {
                        return Poll::Ready(Some(Err(BodyError::TooLarge)));
                    }
                }
                Some(Ok(frame))
            }
            Some(Err(e)) => Some(Err(BodyError::Io(e))),
            None => None,
        })
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Absent => true,
            Inner::Held(data) => data.is_none(),
            Inner::Stream { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Absent => SizeHint::with_exact(0),
            Inner::Held(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Inner::Stream { prefix, rest } => {
                let before = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let hint = rest.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(hint.lower() + before);
                if let Some(upper) = hint.upper() {
                    out.set_upper(upper + before);
                }
                out
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// What the proxy sends back: a local response, or the upstream's body streamed through.
    /// Holds the request's [`Record`], written (access log, metrics) when the body ends or is
    /// dropped.
    pub(crate) struct ProxyBody {
        #[pin]
        kind: Kind,
        record: Option<Box<Record>>,
    }

    impl PinnedDrop for ProxyBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Ended without being read to the end: the client went away, or the response has
            // no body to read (HEAD, 204, 304), in which case the upstream connection is reusable.
            let complete = match &*this.kind {
                Kind::Local { .. } => true,
                Kind::Upstream { inner, .. } => inner.is_end_stream(),
            };
            finish(this.record, complete);
        }
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind {
        Local { data: Option<Bytes> },
        Upstream {
            #[pin]
            inner: UpstreamBody,
            throttle: Option<Box<Throttle>>,
        },
    }
}

pin_project_lite::pin_project! {
    /// An upstream response body, as one of the two upstream legs reads it, failing when
    /// nothing arrives for `proxy-read-timeout`.
    #[project = UpstreamProj]
    pub(crate) enum UpstreamBody {
        /// From a hyper client connection (TLS, HTTP/2, upgrades, streamed request bodies).
        Hyper {
            #[pin]
            inner: Incoming,
            #[pin]
            idle: Sleep,
            read_timeout: Duration,
        },
        /// Read from a raw HTTP/1.1 connection by the request's own task.
        Raw { inner: RawBody },
    }
}

impl UpstreamBody {
    /// hyper's body, failing if nothing arrives for `read_timeout`.
    pub(crate) fn hyper(inner: Incoming, read_timeout: Duration) -> Self {
        let idle = tokio::time::sleep(read_timeout);
        UpstreamBody::Hyper { inner, idle, read_timeout }
    }

    /// Restarts the read timeout: the body was held back by `limit-rate`, not by the
    /// upstream.
    fn touch(self: Pin<&mut Self>) {
        match self.project() {
            UpstreamProj::Hyper { idle, read_timeout, .. } => {
                idle.reset(Instant::now() + *read_timeout)
            }
            UpstreamProj::Raw { inner } => inner.touch(),
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.project() {
            UpstreamProj::Hyper { inner, mut idle, read_timeout } => match inner.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    idle.as_mut().reset(Instant::now() + *read_timeout);
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Io(e)))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => {
                    ready!(idle.poll(cx));
                    Poll::Ready(Some(Err(BodyError::ReadTimeout)))
                }
            },
            UpstreamProj::Raw { inner } => Pin::new(inner).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Hyper { inner, .. } => inner.is_end_stream(),
            UpstreamBody::Raw { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Hyper { inner, .. } => inner.size_hint(),
            UpstreamBody::Raw { inner } => inner.size_hint(),
        }
    }
}

/// A response's pace under `limit-rate`, as NGINX paces it: by the end of second `n` of the
/// response, at most `limit-rate-after + rate × (n + 1)` bytes are out; a frame larger than
/// what is allowed goes out in parts.
struct Throttle {
    /// Bytes per second.
    rate: u64,
    /// Bytes sent at full speed first.
    after: u64,
    sent: u64,
    start: Instant,
    /// What is left of the last frame read.
    pending: Option<Bytes>,
    wait: Option<Pin<Box<Sleep>>>,
}

impl Throttle {
    /// The next part of `pending` that may go now (`None` when nothing is pending), or
    /// pending until it may.
    fn poll_part(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let Some(pending) = &mut self.pending else { return Poll::Ready(None) };
        loop {
            let second = self.start.elapsed().as_secs();
            let allowed = self.after + self.rate * (second + 1);
            if self.sent < allowed {
                let n = ((allowed - self.sent) as usize).min(pending.len());
                let part = pending.split_to(n);
                if pending.is_empty() {
                    self.pending = None;
                }
                self.sent += part.len() as u64;
                self.wait = None;
                return Poll::Ready(Some(part));
            }
            let next = self.start + Duration::from_secs(second + 1);
            let wait = self.wait.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(next)));
            wait.as_mut().reset(next);
            ready!(wait.as_mut().poll(cx));
            self.wait = None;
        }
    }
}

impl ProxyBody {
    /// A complete body held in memory (local responses).
    pub(crate) fn local(data: Bytes, record: Option<Box<Record>>) -> Self {
        let data = (!data.is_empty()).then_some(data);
        Self { kind: Kind::Local { data }, record }
    }

    /// The upstream's body.
    pub(crate) fn upstream(inner: UpstreamBody, record: Box<Record>) -> Self {
        let kind = Kind::Upstream { inner, throttle: None };
        Self { kind, record: Some(record) }
    }

    /// Sends the upstream's body no faster than `limit-rate`, after `limit-rate-after` bytes
    /// at full speed (NGINX's `limit_rate`, `limit_rate_after`: per response).
    pub(crate) fn throttled(mut self, bandwidth: Option<sluice_model::Bandwidth>) -> Self {
        if let (Some(b), Kind::Upstream { throttle, .. }) = (bandwidth, &mut self.kind)
            && b.rate > 0
        {
            *throttle = Some(Box::new(Throttle {
                rate: b.rate,
                after: b.after,
                sent: 0,
                start: Instant::now(),
                pending: None,
                wait: None,
            }));
        }
        self
    }

    fn count(record: &mut Option<Box<Record>>, n: usize) {
        if let Some(r) = record {
            r.bytes_sent += n as u64;
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Local { data } => {
                let frame = data.take().map(|d| {
                    Self::count(this.record, d.len());
                    Ok(Frame::data(d))
                });
                if frame.is_none() {
                    finish(this.record, true);
                }
                Poll::Ready(frame)
            }
            KindProj::Upstream { mut inner, throttle } => loop {
                if let Some(t) = throttle.as_mut()
                    && let Some(part) = ready!(t.poll_part(cx))
                {
                    Self::count(this.record, part.len());
                    inner.as_mut().touch();
                    return Poll::Ready(Some(Ok(Frame::data(part))));
                }
                return match inner.as_mut().poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        let frame = match (throttle.as_mut(), frame.into_data()) {
                            // Paced: sent in parts from the top of the loop.
                            (Some(t), Ok(data)) => {
                                t.pending = Some(data);
                                continue;
                            }
                            (_, Ok(data)) => Frame::data(data),
                            (_, Err(frame)) => frame,
                        };
                        if let Some(d) = frame.data_ref() {
                            Self::count(this.record, d.len());
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(Some(Err(e))) => {
                        finish(this.record, false);
                        Poll::Ready(Some(Err(e)))
                    }
                    Poll::Ready(None) => {
                        finish(this.record, true);
                        Poll::Ready(None)
                    }
                    Poll::Pending => Poll::Pending,
                };
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Local { data } => data.is_none(),
            Kind::Upstream { inner, throttle, .. } => {
                inner.is_end_stream() && throttle.as_ref().is_none_or(|t| t.pending.is_none())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Local { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

/// Writes the record now that the body is over; `complete` tells whether the upstream
/// response arrived whole (the pooled connection can then be reused).
fn finish(record: &mut Option<Box<Record>>, complete: bool) {
    if let Some(mut r) = record.take() {
        r.complete = complete;
        r.finish();
    }
}
