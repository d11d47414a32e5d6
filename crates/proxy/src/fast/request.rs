//! The client's request on the fast path: whether it qualifies, and its head rewritten for
//! the upstream with the same forwarding headers as [`crate::forward::prepare_request`] sets
//! for a plain-HTTP request to an HTTP/1.1 backend.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Uri, Version};
use sluice_model::{RouteId, Target, UpstreamProtocol, normalize_host};

use super::response::{HOP_BY_HOP, header, is_framing, listed, parse_length, trim};
use crate::record::RequestFacts;
use crate::server::ConnInfo;
use crate::{Published, Shared, forward};

/// A request the fast path serves, and what it needs to.
pub(super) struct Plan {
    /// The table (and TLS side) in force when the request arrived, kept to its end.
    pub published: Arc<Published>,
    pub route: RouteId,
    pub backend: usize,
    pub facts: RequestFacts,
    pub request_id: HeaderValue,
    /// `HEAD`: the response has no body whatever its headers say.
    pub head_request: bool,
    /// The client asked to close the connection after this response.
    pub close: bool,
}

/// Request headers Sluice sets itself or never forwards: hop-by-hop headers, `Proxy`
/// (httpoxy), client-certificate headers (only Sluice may send those) and the forwarding
/// headers it computes.
fn replaced(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 13] = [
        b"proxy",
        b"ssl-client-verify",
        b"ssl-client-subject-dn",
        b"ssl-client-issuer-dn",
        b"ssl-client-cert",
        b"x-request-id",
        b"x-real-ip",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-proto",
        b"x-forwarded-scheme",
        b"x-scheme",
    ];
    listed(&HOP_BY_HOP, name) || listed(&NAMES, name)
}

/// Bytes of a request target the fast path passes on as they are; anything else (rare, and
/// possibly hostile) goes to hyper, which decides between forwarding and a 400.
fn plain_target_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&c)
}

fn eq(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Decides whether the fast path serves `req` (a complete head of `head_len` bytes) and, if
/// so, writes the upstream's request head into `out`. `None` hands the connection to hyper:
/// another method, a body, an upgrade, HTTP/1.0, a host without routes to an HTTP/1.1 backend,
/// a redirect to HTTPS, client certificates to check, or anything unusual in the head.
pub(super) fn plan<'a>(
    req: &httparse::Request<'_, 'a>,
    head_len: usize,
    conn: &ConnInfo,
    shared: &'static Shared,
    out: &mut Vec<u8>,
) -> Option<Plan> {
    if req.version != Some(1) {
        return None;
    }
    let (method, head_request) = match req.method? {
        "GET" => (Method::GET, false),
        "HEAD" => (Method::HEAD, true),
        _ => return None,
    };
    let target = req.path?;
    if !target.starts_with('/') || !target.bytes().all(plain_target_byte) {
        return None;
    }

    let mut host: Option<&[u8]> = None;
    let mut hosts = 0;
    let mut close = false;
    // Names the client declared hop-by-hop in `Connection` (rare: allocated only then).
    let mut named: Vec<&[u8]> = Vec::new();
    let mut xff: Vec<&[u8]> = Vec::new();
    let (mut request_id, mut fwd_host, mut fwd_port, mut fwd_proto) = (None, None, None, None);
    let (mut referer, mut user_agent) = (None, None);
    for h in req.headers.iter() {
        let (name, value) = (h.name.as_bytes(), h.value);
        if eq(name, b"host") {
            hosts += 1;
            host = Some(value);
        } else if eq(name, b"content-length") {
            if parse_length(value) != Some(0) {
                return None;
            }
        } else if eq(name, b"transfer-encoding") || eq(name, b"upgrade") || eq(name, b"expect") {
            return None;
        } else if eq(name, b"connection") {
            for token in value.split(|&c| c == b',').map(trim) {
                if eq(token, b"close") {
                    close = true;
                } else if eq(token, b"upgrade") {
                    return None;
                } else if !token.is_empty() && !eq(token, b"keep-alive") && !is_framing(token) {
                    named.push(token);
                }
            }
        } else if eq(name, b"x-forwarded-for") {
            xff.push(value);
        } else if eq(name, b"x-request-id") {
            request_id.get_or_insert(value);
        } else if eq(name, b"x-forwarded-host") {
            fwd_host.get_or_insert(value);
        } else if eq(name, b"x-forwarded-port") {
            fwd_port.get_or_insert(value);
        } else if eq(name, b"x-forwarded-proto") {
            fwd_proto.get_or_insert(value);
        } else if eq(name, b"referer") {
            referer.get_or_insert(value);
        } else if eq(name, b"user-agent") {
            user_agent.get_or_insert(value);
        }
    }
    if hosts != 1 {
        return None;
    }
    let host_value = host?;
    let host = std::str::from_utf8(host_value).ok().filter(|h| forward::valid_host(h))?;

    let published = shared.state.load_full();
    let table = &published.table;
    let trust = table.https.use_forwarded_headers;
    let https = trust
        && fwd_proto
            .and_then(|p| p.split(|&c| c == b',').next())
            .is_some_and(|p| eq(trim(p), b"https"));
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let found = table.lookup(host, path);
    let route = found.route;
    // Redirects and rewritten paths are the general path's.
    if (route.policy.redirect_to_https && !https) || route.policy.rewrite.is_some() {
        return None;
    }
    let Target::Backend(backend_id) = route.target else { return None };
    let backend = &table.backends[backend_id as usize];
    if backend.protocol != UpstreamProtocol::Http1 || backend.endpoints.is_empty() {
        return None;
    }
    let policy = table.tls.policy_for(&normalize_host(host)) as usize;
    if published.tls.checks.get(policy).is_some_and(Option::is_some) {
        return None;
    }

    let request_id = match request_id {
        Some(v) if forward::sane_request_id(v) => HeaderValue::from_bytes(v).ok()?,
        _ => forward::fresh_request_id(),
    };
    // The client's address, or, behind a trusted proxy, the first of its X-Forwarded-For.
    let trusted_ip = xff
        .first()
        .filter(|_| trust)
        .and_then(|v| v.split(|&c| c == b',').next())
        .map(trim)
        .filter(|ip| {
            std::str::from_utf8(ip).is_ok_and(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        });
    let client_ip = trusted_ip.unwrap_or(conn.remote_ip.as_bytes());

    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if replaced(name)
            || named.iter().any(|n| eq(n, name))
            || (!xff.is_empty() && eq(name, b"x-original-forwarded-for"))
        {
            continue;
        }
        header(out, name, h.value);
    }
    if let Some((first, rest)) = xff.split_first() {
        out.extend_from_slice(b"x-original-forwarded-for: ");
        out.extend_from_slice(first);
        for v in rest {
            out.extend_from_slice(b", ");
            out.extend_from_slice(v);
        }
        out.extend_from_slice(b"\r\n");
    }
    header(out, b"x-request-id", request_id.as_bytes());
    header(out, b"x-real-ip", client_ip);
    header(out, b"x-forwarded-for", client_ip);
    let pick = |v: Option<&'a [u8]>| v.filter(move |_| trust);
    header(out, b"x-forwarded-host", pick(fwd_host).unwrap_or(host_value));
    header(out, b"x-forwarded-port", pick(fwd_port).unwrap_or(conn.local_port.as_bytes()));
    let proto = pick(fwd_proto).unwrap_or(b"http");
    header(out, b"x-forwarded-proto", proto);
    header(out, b"x-forwarded-scheme", proto);
    header(out, b"x-scheme", proto);
    out.extend_from_slice(b"\r\n");

    let facts = RequestFacts {
        method,
        uri: Uri::from_maybe_shared(Bytes::copy_from_slice(target.as_bytes())).ok()?,
        version: Version::HTTP_11,
        referer: referer.and_then(|v| HeaderValue::from_bytes(v).ok()),
        user_agent: user_agent.and_then(|v| HeaderValue::from_bytes(v).ok()),
        request_length: head_len as u64,
    };
    let route = found.id;
    Some(Plan {
        published,
        route,
        backend: backend_id as usize,
        facts,
        request_id,
        head_request,
        close,
    })
}
