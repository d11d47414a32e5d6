//! The fast path's upstream leg, for requests the general path carries (HTTP/2 requests,
//! HTTP/1.1 requests hyper serves): the request goes out on the worker's pooled raw HTTP/1.1
//! connections, written and read in the request's own task, instead of through a hyper client
//! connection (its own task, a channel each way, a header map parsed for every response).
//! What reaches the client is the same: the response head in hyper's terms, then a body that
//! reads the connection as it is polled and gives it back to the pool once read whole.
//!
//! It carries requests to plain HTTP/1.1 backends whose body is absent or held whole and at
//! most 64 KiB (so that it can be sent again, in one write with the head), that are not
//! upgrades and not for HTTP/1.0; hyper carries the rest ([`crate::upstream`]). The rules
//! are the fast path's: the same endpoints, retries and timeouts, the same framing checks on
//! the response.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use sluice_model::{Backend, Limits, UpstreamKeepalive};
use tokio::time::Instant;

use super::io::{IoFail, poll_read_more};
use super::response::{self, Dechunker, Framing};
use super::{Reading, Upstream, head_failed, more_head, parse_head, send};
use crate::body::BodyError;
use crate::pipeline::{Attempts, Failure};
use crate::record::Record;

/// Whether this leg can carry a request of `version` with `body` (`None`: streamed) to
/// `backend`: plain HTTP/1.1, not an upgrade, not HTTP/1.0 (hyper writes what that needs),
/// without a body or with one held whole and small enough to go in one write with the head.
pub(crate) fn carries(
    version: Version,
    body: Option<Option<&Bytes>>,
    backend: &Backend,
    upgrade: bool,
) -> bool {
    !upgrade
        && backend.tls.is_none()
        && backend.protocol == sluice_model::UpstreamProtocol::Http1
        && version != Version::HTTP_10
        && body.is_some_and(|b| b.is_none_or(|b| b.len() <= INLINE_BODY))
}

/// The largest body this leg carries, copied after the head. Larger ones go with hyper: on
/// this leg, POSTs of 256 KiB cost 17% more CPU per request in an A/B (kernel time, written
/// in one piece or in two), and an upstream request that large is rare over HTTP/2.
const INLINE_BODY: usize = 64 * 1024;

/// Writes the upstream request: the head as `parts` says (path and query of its URI, its
/// headers), then `body`. Without a body, a `Transfer-Encoding` goes, as hyper drops it.
fn write_request(parts: &Parts, body: Option<&Bytes>, out: &mut Vec<u8>) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if body.is_none() && name == http::header::TRANSFER_ENCODING {
            continue;
        }
        response::header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if let Some(body) = body {
        out.extend_from_slice(body);
    }
}

/// Sends the request to `backend`'s endpoints in the order of `attempts` and reads the
/// response head, with the retries [`crate::upstream::forward`] makes (a pooled connection
/// found closed is replaced without counting as an attempt; a retried status or a failure
/// goes on to the next endpoint as `proxy-next-upstream` says). The response's body reads
/// the connection as it is polled.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn forward(
    parts: &Parts,
    body: Option<Bytes>,
    backend: &Backend,
    attempts: &mut Attempts,
    limits: &Limits,
    keepalive: &UpstreamKeepalive,
    record: &mut Record,
) -> Result<Response<RawBody>, Failure> {
    let mut request = Vec::with_capacity(512 + body.as_ref().map_or(0, Bytes::len));
    write_request(parts, body.as_ref(), &mut request);
    let method = parts.method.as_str();
    let head_request = parts.method == http::Method::HEAD;
    let mut sent = send(&request, backend, attempts, limits, keepalive, method, record).await;
    'attempt: loop {
        let mut up = sent?;
        let failure = loop {
            let parsed = parse_head(&mut up, attempts, backend, method, record, |resp, bytes| {
                let inspected = response::inspect(resp, head_request)?;
                let (code, mut headers) = response_head(resp, bytes).ok_or(response::Invalid)?;
                if inspected.transfer_coded {
                    // The coding delimits the body, not the length (hyper drops it too).
                    headers.remove(http::header::CONTENT_LENGTH);
                }
                Ok((code, headers, inspected.head))
            });
            match parsed {
                Reading::Partial => {}
                Reading::Invalid => break Failure::InvalidHeader,
                Reading::Retry(status) => {
                    record.set_last_attempt(status, true);
                    sent =
                        send(&request, backend, attempts, limits, keepalive, method, record).await;
                    continue 'attempt;
                }
                Reading::Final { len, head: (code, headers, head) } => {
                    record.set_last_attempt(code.as_u16(), true);
                    let body = RawBody::new(up, len, head, limits.read_timeout, *keepalive);
                    let mut response = Response::new(body);
                    *response.status_mut() = code;
                    *response.headers_mut() = headers;
                    return Ok(response);
                }
            }
            if let Err(failure) = more_head(&mut up, limits.read_timeout).await {
                break failure;
            }
        };
        if head_failed(&up, failure, attempts, backend, method, record) {
            sent = send(&request, backend, attempts, limits, keepalive, method, record).await;
            continue;
        }
        return Err(failure);
    }
}

/// The status and headers of a response head parsed from `bytes` (the head's), in hyper's
/// terms. The head's bytes are copied once and every value shares them. `None` for a header
/// hyper would refuse too.
fn response_head(
    resp: &httparse::Response<'_, '_>,
    bytes: &[u8],
) -> Option<(StatusCode, HeaderMap)> {
    let status = StatusCode::from_u16(resp.code?).ok()?;
    let shared = Bytes::copy_from_slice(bytes);
    let base = bytes.as_ptr() as usize;
    let mut headers = HeaderMap::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        // httparse's values are slices of `bytes`: the same range of the copy.
        let start = (h.value.as_ptr() as usize).checked_sub(base)?;
        let value = shared.slice(start..start + h.value.len());
        let value = HeaderValue::from_maybe_shared(value).ok()?;
        headers.append(name, value);
    }
    Some((status, headers))
}

/// A response body read from a raw upstream connection as it is polled, decoded from its
/// framing (chunked data is passed on without its framing, and without trailers, as NGINX
/// passes an HTTP/1.1 upstream's). The connection goes back to the worker's pool when the
/// body is read whole and the upstream allows it; dropped before that, it is closed.
pub(crate) struct RawBody {
    /// The connection, until the body is over.
    up: Option<Upstream>,
    /// Where the unread body starts in the connection's buffer.
    pending: usize,
    framing: Framing,
    /// Of a `Content-Length` body.
    remaining: u64,
    dechunker: Dechunker,
    reusable: bool,
    /// Read whole.
    complete: bool,
    read_timeout: Duration,
    /// Nothing arrived since then: the read timeout counts from it.
    last: Instant,
    keepalive: UpstreamKeepalive,
}

impl RawBody {
    fn new(
        up: Upstream,
        pending: usize,
        head: response::ResponseHead,
        read_timeout: Duration,
        keepalive: UpstreamKeepalive,
    ) -> Self {
        let framing = head.framing;
        let remaining = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        let mut body = Self {
            up: Some(up),
            pending,
            framing,
            remaining,
            dechunker: Dechunker::plain(),
            reusable: head.reusable,
            complete: false,
            read_timeout,
            last: Instant::now(),
            keepalive,
        };
        // A body that is over before it starts (HEAD, 204, 304, a zero length): hyper sends
        // such a response without polling it, so the connection goes back now.
        if matches!(framing, Framing::None | Framing::Length(0)) {
            let extra = body.up.as_ref().is_some_and(|u| u.buf.len() > pending);
            body.reusable &= !extra;
            body.end();
        }
        body
    }

    /// Restarts the read timeout (the body was held back by `limit-rate`, not by the
    /// upstream).
    pub(crate) fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// The body was read whole: the connection goes back to the pool if it may.
    fn end(&mut self) {
        self.complete = true;
        if let Some(up) = self.up.take()
            && self.reusable
        {
            up.checkin(Instant::now(), &self.keepalive);
        }
    }

    /// Takes what the buffer holds of the body: its data (possibly empty), or `Err` for
    /// malformed chunks. Marks the body over when it is.
    fn take(&mut self) -> Result<Bytes, response::BadChunk> {
        let Some(up) = &mut self.up else { return Ok(Bytes::new()) };
        let chunk = &up.buf.filled()[self.pending..];
        let (data, used) = match self.framing {
            Framing::None => (Bytes::new(), 0),
            Framing::Length(_) => {
                let n = chunk.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                self.remaining -= n as u64;
                (Bytes::copy_from_slice(&chunk[..n]), n)
            }
            Framing::Chunked => {
                let mut out = Vec::with_capacity(chunk.len());
                let mut count = 0;
                let used = self.dechunker.feed(chunk, &mut out, &mut count)?;
                (Bytes::from(out), used)
            }
            Framing::UntilClose => (Bytes::copy_from_slice(chunk), chunk.len()),
        };
        self.pending += used;
        if self.pending == up.buf.len() {
            up.buf.clear();
            self.pending = 0;
        }
        let over = match self.framing {
            Framing::Length(_) => self.remaining == 0,
            Framing::Chunked => self.dechunker.done(),
            Framing::None | Framing::UntilClose => false,
        };
        if over {
            // Bytes after the body: the upstream sent what nobody asked for.
            self.reusable &= up.buf.is_empty();
            self.end();
        }
        Ok(data)
    }
}

impl http_body::Body for RawBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            if this.complete {
                return Poll::Ready(None);
            }
            let data = match this.take() {
                Ok(data) => data,
                Err(_) => {
                    this.up = None;
                    return Poll::Ready(Some(Err(BodyError::Upstream)));
                }
            };
            if !data.is_empty() {
                this.last = Instant::now();
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if this.complete {
                return Poll::Ready(None);
            }
            let Some(up) = &mut this.up else { return Poll::Ready(None) };
            let deadline = this.last + this.read_timeout;
            let read = poll_read_more(&up.stream, &mut up.buf, &mut up.timer, deadline, cx);
            match std::task::ready!(read) {
                Ok(n) if n > 0 => {}
                // The end of a body that lasts until the upstream closes.
                Ok(_) if this.framing == Framing::UntilClose => {
                    this.reusable = false;
                    this.end();
                    return Poll::Ready(None);
                }
                Ok(_) | Err(IoFail::Failed) => {
                    this.up = None;
                    return Poll::Ready(Some(Err(BodyError::Upstream)));
                }
                Err(IoFail::Timeout) => {
                    this.up = None;
                    return Poll::Ready(Some(Err(BodyError::ReadTimeout)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.complete
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(_) => SizeHint::with_exact(self.remaining),
            Framing::None => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
