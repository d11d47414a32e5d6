//! The client's request on the fast path: whether its shape is one the fast path carries (a
//! `GET` or `HEAD`, or a request of another method with a `Content-Length` body), then the
//! life cycle's decision ([`pipeline::decide`]), with the upstream's head written as header
//! lines.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Uri, Version};
use sluice_model::UpstreamProtocol;

use super::response::{header, parse_length, trim};
use crate::pipeline::{self, Carrier, Decision, FastHead, Forward, Local, UpstreamSink};
use crate::record::RequestFacts;
use crate::server::ConnInfo;
use crate::{Published, Shared, forward};

/// A request the fast path serves, and what it needs to.
pub(super) struct Plan {
    /// The table (and TLS side) in force when the request arrived, kept to its end.
    pub published: Arc<Published>,
    pub decision: Planned,
    pub facts: RequestFacts,
    /// `HEAD`: the response has no body whatever its headers say.
    pub head_request: bool,
    /// The client asked to close the connection after this response.
    pub close: bool,
    /// The request body's length (`Content-Length`; 0 without one): the bytes that follow the
    /// head on the connection and belong to this request.
    pub body: u64,
}

/// What the life cycle decided, in the fast path's terms.
pub(super) enum Planned {
    /// Forward the head written in `out`.
    Forward(Box<Forward>),
    /// Answer locally.
    Local(Box<Local>),
}

/// Bytes of a request target the fast path passes on as they are; anything else (rare, and
/// possibly hostile) goes to hyper, which decides between forwarding and a 400.
pub(crate) fn plain_target_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&c)
}

fn eq(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The upstream's head as header lines in the fast path's buffer. Its framing is the fast
/// path's own: the client's `Content-Length` and whatever a policy would set for it or
/// `Transfer-Encoding` are left out, and [`plan`] writes the one length the body is sent with.
struct Lines<'o> {
    out: &'o mut Vec<u8>,
}

/// Whether `name` frames the upstream request's body.
fn framing(name: &[u8]) -> bool {
    eq(name, b"content-length") || eq(name, b"transfer-encoding")
}

impl UpstreamSink for Lines<'_> {
    fn request_line(&mut self, method: &str, target: &[u8], _http10: bool) {
        // HTTP/1.0 upstreams are the general path's (translation keeps them off this path).
        self.out.clear();
        self.out.extend_from_slice(method.as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(target);
        self.out.extend_from_slice(b" HTTP/1.1\r\n");
    }

    fn keep(&mut self, name: &[u8], value: &[u8]) {
        if !framing(name) {
            header(self.out, name, value);
        }
    }

    fn drop(&mut self, _name: &[u8]) {}

    fn set(&mut self, name: &str, value: &[u8]) {
        if !framing(name.as_bytes()) {
            header(self.out, name.as_bytes(), value);
        }
    }
}

/// The status NGINX refuses a request's framing with, before any routing
/// (`ngx_http_process_request_header` and its unique header lines): more than one
/// `Content-Length` or `Transfer-Encoding` line, or a length that is not plain digits (400);
/// a coding other than exactly `chunked` (501); `Transfer-Encoding` on HTTP/1.0 or together
/// with `Content-Length` (400). Checked on every head the fast path reads, whatever the route,
/// so that neither path ever sees a request whose body could be framed two ways.
pub(crate) fn refused_framing(req: &httparse::Request<'_, '_>) -> Option<u16> {
    let (mut lengths, mut codings) = (0u32, 0u32);
    let (mut bad_length, mut chunked) = (false, false);
    for h in req.headers.iter() {
        let (name, value) = (h.name.as_bytes(), h.value);
        if eq(name, b"content-length") {
            lengths += 1;
            bad_length |= parse_length(value).is_none();
        } else if eq(name, b"transfer-encoding") {
            codings += 1;
            chunked = eq(trim(value), b"chunked");
        }
    }
    if lengths > 1 || codings > 1 || bad_length {
        return Some(400);
    }
    if codings == 1 {
        if req.version != Some(1) || lengths == 1 {
            return Some(400);
        }
        if !chunked {
            return Some(501);
        }
    }
    None
}

/// What the fast path reads of a request head it may carry.
pub(crate) struct Shape<'a> {
    pub method: Method,
    pub head_request: bool,
    /// The body's length, when `Content-Length` declares one.
    pub length: Option<u64>,
    /// The request target: origin form, of plain bytes only.
    pub target: &'a str,
    /// The one `Host` header's value, a valid host.
    pub host: &'a str,
    pub close: bool,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
}

/// Whether the fast path may carry `req` (a complete head whose framing
/// [`refused_framing`] accepted), by its shape alone: HTTP/1.1; `GET` or `HEAD`, or any
/// other method but `CONNECT` with a `Content-Length` (its body's size is the route's to judge,
/// [`pipeline::decide`]); no `Transfer-Encoding`, upgrade or `Expect`; a plain origin-form
/// target; exactly one valid `Host`. `None` hands the connection to hyper.
pub(crate) fn shape<'a>(req: &httparse::Request<'_, 'a>) -> Option<Shape<'a>> {
    if req.version != Some(1) {
        return None;
    }
    let (method, head_request) = match req.method? {
        "GET" => (Method::GET, false),
        "HEAD" => (Method::HEAD, true),
        // NGINX refuses it (405): hyper answers so.
        "CONNECT" => return None,
        other => (Method::from_bytes(other.as_bytes()).ok()?, false),
    };
    let target = req.path?;
    if !target.starts_with('/') || !target.bytes().all(plain_target_byte) {
        return None;
    }

    let mut host: Option<&[u8]> = None;
    let mut hosts = 0;
    let mut close = false;
    let mut length = None;
    let (mut referer, mut user_agent) = (None, None);
    for h in req.headers.iter() {
        let (name, value) = (h.name.as_bytes(), h.value);
        if eq(name, b"host") {
            hosts += 1;
            host = Some(value);
        } else if eq(name, b"content-length") {
            // One valid line ([`refused_framing`] refused the rest); checked again all the
            // same, as the body's framing depends on it.
            if length.is_some() {
                return None;
            }
            length = Some(parse_length(value)?);
        } else if eq(name, b"transfer-encoding") || eq(name, b"upgrade") || eq(name, b"expect") {
            return None;
        } else if eq(name, b"connection") {
            for token in value.split(|&c| c == b',').map(trim) {
                if eq(token, b"close") {
                    close = true;
                } else if eq(token, b"upgrade") {
                    return None;
                }
            }
        } else if eq(name, b"referer") {
            referer.get_or_insert(value);
        } else if eq(name, b"user-agent") {
            user_agent.get_or_insert(value);
        }
    }
    // Without a length, only methods that have no body: another method's body would be
    // chunked or read until the client closes, hyper's to frame.
    if hosts != 1 || (length.is_none() && !matches!(method, Method::GET | Method::HEAD)) {
        return None;
    }
    let host = std::str::from_utf8(host?).ok().filter(|h| forward::valid_host(h))?;
    Some(Shape { method, head_request, length, target, host, close, referer, user_agent })
}

/// Decides whether the fast path serves `req` (a complete head of `head_len` bytes) and, if
/// it forwards it, writes the upstream's request head into `out`. `None` hands the
/// connection to hyper: a body without a length, an upgrade, HTTP/1.0, anything unusual in
/// the head ([`shape`]), a route the fast path may not carry, or a body larger than the
/// route lets it hold ([`sluice_model::Route::fast_body`]).
pub(super) fn plan<'a>(
    req: &httparse::Request<'_, 'a>,
    head_len: usize,
    conn: &ConnInfo,
    shared: &'static Shared,
    out: &mut Vec<u8>,
) -> Option<Plan> {
    let Shape { method, head_request, length, target, host, close, referer, user_agent } =
        shape(req)?;
    let body = length.unwrap_or(0);
    let published = shared.state.load_full();
    let head = FastHead { req, target, method: req.method?, body };
    let mut lines = Lines { out };
    let decision =
        pipeline::decide(&head, host, conn, &published, shared, Carrier::Fast, &mut lines, None);
    let decision = match decision {
        // Translation keeps routes with external authentication off this path (it needs a
        // second request); should one come, hyper carries it.
        Decision::Handoff | Decision::Authorize(_) => return None,
        Decision::Local(local) => Planned::Local(local),
        Decision::Forward(forward) => {
            // Translation keeps routes with other backends off this path; a canary of
            // another protocol would be a table that says otherwise: hyper decides again.
            let backend = &published.table.backends[forward.backend as usize];
            if backend.protocol != UpstreamProtocol::Http1 {
                return None;
            }
            // The client's length, as the general path sends a body held whole: the one
            // framing header the upstream gets.
            if let Some(n) = length {
                use std::io::Write as _;
                let _ = write!(out, "content-length: {n}\r\n");
            }
            out.extend_from_slice(b"\r\n");
            Planned::Forward(forward)
        }
    };
    let facts = RequestFacts {
        method,
        uri: Uri::from_maybe_shared(Bytes::copy_from_slice(target.as_bytes())).ok()?,
        version: Version::HTTP_11,
        referer: referer.and_then(|v| HeaderValue::from_bytes(v).ok()),
        user_agent: user_agent.and_then(|v| HeaderValue::from_bytes(v).ok()),
        // As NGINX's `$request_length`: the head and the body.
        request_length: head_len as u64 + body,
    };
    Some(Plan { published, decision, facts, head_request, close, body })
}
