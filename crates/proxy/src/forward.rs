//! Header rewriting between client and upstream, as ingress-nginx does it: hop-by-hop headers
//! removed, `X-Forwarded-*`, `X-Real-IP` and `X-Request-ID` set, `Host` preserved, a `Server`
//! header on every response.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Uri;
use http::{Request, Version};

use sluice_model::{Rewrite, UpstreamProtocol, normalize_path};

use crate::server::ConnInfo;
use crate::tls::client_auth::ClientCert;

pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_ORIGINAL_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-original-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_SCHEME: HeaderName = HeaderName::from_static("x-forwarded-scheme");
static X_SCHEME: HeaderName = HeaderName::from_static("x-scheme");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static PROXY: HeaderName = HeaderName::from_static("proxy");
static SSL_CLIENT_VERIFY: HeaderName = HeaderName::from_static("ssl-client-verify");
static SSL_CLIENT_SUBJECT_DN: HeaderName = HeaderName::from_static("ssl-client-subject-dn");
static SSL_CLIENT_ISSUER_DN: HeaderName = HeaderName::from_static("ssl-client-issuer-dn");
static SSL_CLIENT_CERT: HeaderName = HeaderName::from_static("ssl-client-cert");
static UPGRADE_VALUE: HeaderValue = HeaderValue::from_static("upgrade");
static TRAILERS: HeaderValue = HeaderValue::from_static("trailers");
static HTTP: HeaderValue = HeaderValue::from_static("http");
static HTTPS: HeaderValue = HeaderValue::from_static("https");

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

/// What a request's forwarding headers depend on.
pub(crate) struct Forwarding<'a> {
    pub conn: &'a ConnInfo,
    pub request_id: &'a HeaderValue,
    /// A WebSocket upgrade is forwarded.
    pub upgrade: bool,
    /// The client's request arrived over HTTPS (or says so, when trusted).
    pub https: bool,
    /// `use-forwarded-headers`: the client's `X-Forwarded-*` are trusted.
    pub trust_forwarded: bool,
    /// The host's client-certificate verdict, if the host checks certificates.
    pub client: Option<&'a ClientCert>,
    /// Send the certificate itself (`auth-tls-pass-certificate-to-upstream`).
    pub pass_certificate: bool,
    /// How the upstream is spoken to.
    pub upstream: UpstreamProtocol,
    /// The route's `rewrite-target`, if any.
    pub rewrite: Option<&'a Rewrite>,
}

/// The name of `host[:port]` (IPv6 literals keep their brackets).
pub(crate) fn without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// The client's `X-Forwarded-Proto`, first value.
pub(crate) fn forwarded_proto<B>(req: &Request<B>) -> Option<&str> {
    req.headers().get(&X_FORWARDED_PROTO)?.to_str().ok()?.split(',').next().map(str::trim)
}

/// True for paths under `no-tls-redirect-locations` (ACME HTTP-01 challenges by default).
pub(crate) fn exempt_from_redirect<B>(req: &Request<B>, prefixes: &[String]) -> bool {
    let path = req.uri().path();
    prefixes.iter().any(|p| path.starts_with(p.as_str()))
}

/// The path and query sent upstream: the client's as received, or, for a route with a
/// `rewrite-target`, the target applied to the normalised path (NGINX's `rewrite` works on
/// `$uri`), the query string kept as NGINX keeps it. When the route's pattern does not match,
/// NGINX leaves the URI alone, and so does this.
fn upstream_path_and_query(uri: &Uri, rewrite: Option<&Rewrite>) -> http::uri::PathAndQuery {
    let original = || {
        uri.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"))
    };
    let Some(rewrite) = rewrite else { return original() };
    rewrite
        .apply(&normalize_path(uri.path()), uri.query())
        .and_then(|pq| http::uri::PathAndQuery::try_from(pq).ok())
        .unwrap_or_else(original)
}

/// Rewrites a client request for the upstream, in place.
pub(crate) fn prepare_request<B>(req: &mut Request<B>, f: &Forwarding<'_>) {
    // HTTP/2 carries the host in `:authority`: an HTTP/1.1 upstream needs a Host header.
    if let Some(authority) = req.uri().authority()
        && !req.headers().contains_key(header::HOST)
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().insert(header::HOST, v);
    }
    let pq = upstream_path_and_query(req.uri(), f.rewrite);
    let mut parts = http::uri::Parts::default();
    if f.upstream.h2() {
        // HTTP/2 requests carry scheme and authority (the client's Host) in the URI.
        parts.scheme =
            Some(if f.upstream.tls() { http::uri::Scheme::HTTPS } else { http::uri::Scheme::HTTP });
        parts.authority = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse().ok());
        *req.version_mut() = Version::HTTP_2;
    } else {
        *req.version_mut() = Version::HTTP_11;
    }
    parts.path_and_query = Some(pq);
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    let upgrade_value = f.upgrade.then(|| req.headers().get(header::UPGRADE).cloned()).flatten();
    // gRPC needs `TE: trailers`, the one hop-by-hop value HTTP/2 allows.
    let te_trailers = f.upstream.h2()
        && req
            .headers()
            .get_all(header::TE)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    // Read before an HTTP/2 upstream loses the Host header to `:authority`.
    let client_host = headers.get(header::HOST).cloned();
    if let Some(v) = upgrade_value {
        headers.insert(header::UPGRADE, v);
        headers.insert(header::CONNECTION, UPGRADE_VALUE.clone());
    }
    if te_trailers {
        headers.insert(header::TE, TRAILERS.clone());
    }
    if f.upstream.h2() {
        headers.remove(header::HOST);
    }
    // httpoxy: a `Proxy` request header must never reach CGI-style backends.
    headers.remove(&PROXY);
    // Client-certificate headers come from Sluice only, never from the client.
    for name in
        [&SSL_CLIENT_VERIFY, &SSL_CLIENT_SUBJECT_DN, &SSL_CLIENT_ISSUER_DN, &SSL_CLIENT_CERT]
    {
        headers.remove(name);
    }
    if let Some(client) = f.client {
        let value =
            |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""));
        headers.insert(SSL_CLIENT_VERIFY.clone(), value(&client.verify));
        // Without a certificate the names are empty, and NGINX's proxy_set_header sends none.
        for (name, dn) in
            [(&SSL_CLIENT_SUBJECT_DN, &client.subject), (&SSL_CLIENT_ISSUER_DN, &client.issuer)]
        {
            if !dn.is_empty() {
                headers.insert(name.clone(), value(dn));
            }
        }
        if f.pass_certificate
            && let Some(pem) = &client.escaped_pem
        {
            headers.insert(SSL_CLIENT_CERT.clone(), value(pem));
        }
    }

    let original_xff = joined(headers, &X_FORWARDED_FOR);
    // The client's address: the connection's, or, behind a trusted proxy, the first address
    // of its X-Forwarded-For (NGINX's realip module with ingress-nginx's defaults).
    let client_ip = match (&original_xff, f.trust_forwarded) {
        (Some(xff), true) => xff
            .to_str()
            .ok()
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
            .and_then(|ip| HeaderValue::from_str(ip).ok())
            .unwrap_or_else(|| f.conn.remote_ip.clone()),
        _ => f.conn.remote_ip.clone(),
    };
    if let Some(xff) = original_xff {
        headers.remove(&X_FORWARDED_FOR);
        headers.insert(X_ORIGINAL_FORWARDED_FOR.clone(), xff);
    }
    headers.insert(X_REQUEST_ID.clone(), f.request_id.clone());
    headers.insert(X_REAL_IP.clone(), client_ip.clone());
    headers.insert(X_FORWARDED_FOR.clone(), client_ip);
    let scheme = if f.https { &HTTPS } else { &HTTP };
    let trusted =
        |h: &HeaderMap, n: &HeaderName| if f.trust_forwarded { h.get(n).cloned() } else { None };
    let host = trusted(headers, &X_FORWARDED_HOST).or(client_host);
    match host {
        Some(h) => headers.insert(X_FORWARDED_HOST.clone(), h),
        None => headers.remove(&X_FORWARDED_HOST),
    };
    let port = trusted(headers, &X_FORWARDED_PORT).unwrap_or_else(|| f.conn.local_port.clone());
    headers.insert(X_FORWARDED_PORT.clone(), port);
    let proto = trusted(headers, &X_FORWARDED_PROTO).unwrap_or_else(|| scheme.clone());
    headers.insert(X_FORWARDED_PROTO.clone(), proto.clone());
    headers.insert(X_FORWARDED_SCHEME.clone(), proto.clone());
    headers.insert(X_SCHEME.clone(), proto);
}

/// Every value of `name`, as one comma-separated value (as NGINX's `$http_*` variables give
/// repeated headers); no allocation for the usual single line.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let rest: Vec<&HeaderValue> = values.collect();
    if rest.is_empty() {
        return Some(first.clone());
    }
    let mut all = first.as_bytes().to_vec();
    for v in rest {
        all.extend_from_slice(b", ");
        all.extend_from_slice(v.as_bytes());
    }
    HeaderValue::from_bytes(&all).ok()
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

/// Rewrites an upstream response head for the client, in place. A `101 Switching Protocols`
/// keeps its `Upgrade` and `Connection` headers.
pub(crate) fn prepare_response(headers: &mut HeaderMap, server: &HeaderValue, switching: bool) {
    let upgrade = switching.then(|| headers.get(header::UPGRADE).cloned()).flatten();
    strip_hop_by_hop(headers);
    if let Some(v) = upgrade {
        headers.insert(header::UPGRADE, v);
        headers.insert(header::CONNECTION, UPGRADE_VALUE.clone());
    }
    headers.insert(header::SERVER, server.clone());
}

/// The client's `X-Request-ID` when it is a sane token, else 32 fresh hex digits, as
/// ingress-nginx's `$req_id` does.
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&X_REQUEST_ID) {
        Some(v) if sane_request_id(v.as_bytes()) => v.clone(),
        _ => fresh_request_id(),
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
    fn repeated_headers_are_joined() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR.clone(), HeaderValue::from_static("1.1.1.1"));
        assert_eq!(joined(&h, &X_FORWARDED_FOR).unwrap(), "1.1.1.1");
        h.append(X_FORWARDED_FOR.clone(), HeaderValue::from_static("2.2.2.2"));
        assert_eq!(joined(&h, &X_FORWARDED_FOR).unwrap(), "1.1.1.1, 2.2.2.2");
        assert!(joined(&h, &X_REAL_IP).is_none());
    }

    #[test]
    fn request_ids_are_kept_or_generated() {
        let mut h = HeaderMap::new();
        let generated = request_id(&h);
        assert_eq!(generated.len(), 32);
        assert!(generated.as_bytes().iter().all(u8::is_ascii_hexdigit));
        h.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
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
