//! What the general path needs of hyper's requests and responses that the life cycle's header
//! rules ([`crate::pipeline`]) leave to it: the request's host, refusals, upgrades, and
//! hop-by-hop headers of responses; and the request IDs both paths use.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Version};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static UPGRADE_VALUE: HeaderValue = HeaderValue::from_static("upgrade");

/// The request's host as the client gave it (`:authority` for HTTP/2, else `Host`).
pub(crate) fn request_host<B>(req: &Request<B>) -> Option<&str> {
    match req.uri().authority() {
        Some(a) => Some(a.as_str()),
        None => req.headers().get(header::HOST).and_then(|h| h.to_str().ok()),
    }
}

/// True for characters NGINX accepts in a Host header; anything else is a 400.
pub(crate) fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|c| c.is_ascii_alphanumeric() || b"-._:[]".contains(&c))
}

/// True for an HTTP/1.1 WebSocket handshake (`Connection: upgrade`, `Upgrade: websocket`).
pub(crate) fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && has_token(req.headers(), header::CONNECTION, "upgrade")
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers: the fixed list of RFC 9110 and any named by `Connection`,
/// except the headers that frame or route the message, which a peer cannot declare hop-by-hop.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !matches!(*n, header::HOST | header::CONTENT_LENGTH | header::CONTENT_TYPE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// The name of `host[:port]` (IPv6 literals keep their brackets).
pub(crate) fn without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// True when the request carries more than one `Host` line (NGINX answers 400).
pub(crate) fn duplicate_host<B>(req: &Request<B>) -> bool {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    hosts.next().is_some() && hosts.next().is_some()
}

/// True when the request's transfer coding is something other than plain `chunked`, which
/// the upstream could not be told about (NGINX answers 501).
pub(crate) fn unsupported_transfer_coding<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"chunked"))
}

/// Removes an upstream response head's hop-by-hop headers, in place. A `101 Switching
/// Protocols` keeps its `Upgrade` and `Connection` headers.
pub(crate) fn prepare_response(headers: &mut HeaderMap, switching: bool) {
    let upgrade = switching.then(|| headers.get(header::UPGRADE).cloned()).flatten();
    strip_hop_by_hop(headers);
    if let Some(v) = upgrade {
        headers.insert(header::UPGRADE, v);
        headers.insert(header::CONNECTION, UPGRADE_VALUE.clone());
    }
}

/// True for a client's `X-Request-ID` worth keeping: 1 to 128 visible ASCII characters.
pub(crate) fn sane_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(|c| c.is_ascii_graphic())
}

/// 32 random hex digits, as ingress-nginx's `$req_id`.
pub(crate) fn fresh_request_id() -> HeaderValue {
    let mut buf = [0u8; 32];
    let n = fastrand::u128(..);
    for (i, b) in buf.iter_mut().enumerate() {
        let nibble = ((n >> (i * 4)) & 0xf) as u8;
        *b = if nibble < 10 { b'0' + nibble } else { b'a' + nibble - 10 };
    }
    HeaderValue::from_bytes(&buf).expect("hex digits are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret").is_none());
        assert!(h.get(header::TE).is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert_eq!(h.get("x-kept").unwrap(), "1");
    }

    #[test]
    fn routing_and_framing_headers_cannot_be_declared_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, host, content-length"));
        h.insert(header::HOST, HeaderValue::from_static("a.example"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h[header::HOST], "a.example");
        assert_eq!(h[header::CONTENT_LENGTH], "3");
    }

    #[test]
    fn request_ids_are_generated() {
        let generated = fresh_request_id();
        assert_eq!(generated.len(), 32);
        assert!(generated.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(fresh_request_id(), generated);
        assert!(sane_request_id(b"abc-123"));
        assert!(!sane_request_id(b"has space"));
        assert!(!sane_request_id(b""));
    }

    #[test]
    fn hosts_are_checked_like_nginx() {
        assert!(valid_host("example.com:8080"));
        assert!(valid_host("[::1]:80"));
        assert!(!valid_host("exa mple.com"));
        assert!(!valid_host("a/b"));
        assert!(!valid_host(""));
    }
}
