//! The header annotations and ConfigMap keys, end to end, with ingress-nginx's semantics:
//! `upstream-vhost`, `x-forwarded-prefix`, `connection-proxy-header`, `custom-headers` (with
//! `global-allowed-response-headers`), `add-headers`, `proxy-set-headers`, `hide-headers`,
//! `proxy-redirect-*`, `proxy-cookie-*`, `proxy-http-version` and
//! `enable-underscores-in-headers`, against the real binary.
//!
//! The backend here is a raw socket that records each request head as it arrived (header
//! names in their case, repeated headers as separate lines), so a header set twice, or a
//! request line in HTTP/1.0, shows. It also tells which way of carrying the request Sluice
//! took: the client writes its header names in title case; the fast path copies a client's
//! header line as it came (`X-Carrier`), the general path (hyper) writes names in lower case
//! (`x-carrier`). Each rule that both ways carry is checked the three ways of [`Way`] (a
//! keep-alive GET on the fast path; a GET over h2c and a POST with a chunked body on the general path)
//! against the same expected values, and the carrier of every request is checked too: a route
//! that stopped taking the fast path would fail the test rather than compare the general path
//! with itself.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use http::HeaderName;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The ConfigMap `--configmap` names in these tests.
const CONFIGMAP: &str = "sluice-config";

// ---------------------------------------------------------------------------------------
// A backend that records what it receives

/// One request as the backend received it.
#[derive(Clone, Debug)]
struct Seen {
    /// The request line (`GET /x HTTP/1.1`).
    line: String,
    /// Header lines, in order, names as written.
    headers: Vec<(String, String)>,
    /// The body.
    body: Vec<u8>,
    /// The number of the connection it came on (1 for the backend's first).
    conn: usize,
}

impl Seen {
    /// Every value of header `name` (any case), one per line, in order.
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The request path, from the request line.
    fn path(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or_default()
    }

    /// Which way of carrying requests brought it (see the module doc).
    fn carrier(&self) -> Carrier {
        if self.headers.iter().any(|(n, _)| n == "X-Carrier") {
            Carrier::Fast
        } else if self.headers.iter().any(|(n, _)| n == "x-carrier") {
            Carrier::General
        } else {
            panic!("no carrier mark in {self:?}")
        }
    }
}

/// Which way of carrying requests Sluice took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Carrier {
    Fast,
    General,
}

/// How the recording backend answers a request: the status and extra header lines (the body
/// is always `ok`).
type Answer = fn(&Seen) -> (u16, Vec<(&'static str, String)>);

/// A recording backend.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    /// Starts one on a free loopback port, answering with `answer`.
    async fn start(answer: Answer) -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let conns = std::sync::atomic::AtomicUsize::new(0);
        let log = seen.clone();
        let addr = tcp_backend(move |stream| {
            let conn = conns.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            serve_recorded(stream, conn, log.clone(), answer)
        })
        .await;
        Recorder { addr, seen }
    }

    /// A backend answering 200 with no extra headers.
    async fn plain() -> Recorder {
        Recorder::start(|_| (200, vec![])).await
    }

    /// The last request received.
    fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("the backend received a request")
    }

    /// How many requests it received.
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Asserts that each request for `path` came on a connection of its own.
    fn assert_one_request_per_connection(&self, path: &str) {
        let seen = self.seen.lock().unwrap();
        let conns: Vec<usize> = seen.iter().filter(|r| r.path() == path).map(|r| r.conn).collect();
        let distinct: std::collections::BTreeSet<usize> = conns.iter().copied().collect();
        assert!(conns.len() > 1, "{path}: {conns:?}");
        assert_eq!(distinct.len(), conns.len(), "{path}: a connection was used again: {conns:?}");
    }
}

/// Serves one connection: records each request and answers it, keeping the connection open
/// as HTTP says (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `keep-alive`).
async fn serve_recorded(
    mut stream: tokio::net::TcpStream,
    conn: usize,
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Answer,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Some(end) = read_head_into(&mut stream, &mut buf).await else { return };
        let head = String::from_utf8_lossy(&buf[..end - 4]).into_owned();
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.to_string(), v.trim().to_string()))
            .collect();
        let mut request = Seen { line, headers, body: Vec::new(), conn };
        let length: usize =
            request.all("content-length").first().and_then(|v| v.parse().ok()).unwrap_or(0);
        assert!(request.all("transfer-encoding").is_empty(), "a chunked upload: {request:?}");
        while buf.len() < end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        request.body = buf[end..end + length].to_vec();
        buf.drain(..end + length);

        let connection = request.all("connection").join(",").to_ascii_lowercase();
        let http10 = request.line.ends_with("HTTP/1.0");
        let close = connection.contains("close") || (http10 && !connection.contains("keep-alive"));
        let (status, extra) = answer(&request);
        seen.lock().unwrap().push(request);
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let mut out = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 2\r\n");
        for (name, value) in extra {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if close {
            out.push_str("Connection: close\r\n");
        } else if http10 {
            out.push_str("Connection: keep-alive\r\n");
        }
        out.push_str("\r\nok");
        if stream.write_all(out.as_bytes()).await.is_err() || close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Set-up

/// An Ingress `name` for any host with one Prefix `path` to the Service `app`, with
/// `annotations` (names without the `nginx.ingress.kubernetes.io/` prefix).
fn ingress_at(name: &str, path: &str, annotations: &[(&str, &str)]) -> String {
    let full: Vec<(String, &str)> =
        annotations.iter().map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), *v)).collect();
    let refs: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    ingress(name, "", &[(path, "Prefix", "app")], &refs)
}

/// A ConfigMap `name` in `default` with `data`.
fn config_map(name: &str, data: &[(&str, &str)]) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: default\ndata:"
    );
    if data.is_empty() {
        s.push_str(" {}\n");
    } else {
        s.push('\n');
        for (k, v) in data {
            s.push_str(&format!("  {k}: {v:?}\n"));
        }
    }
    s
}

/// Writes ConfigMap `name` (its own file, so that it can be edited alone).
fn put_config_map(m: &Manifests, name: &str, data: &[(&str, &str)]) {
    m.write(&format!("cm-{name}.yaml"), &config_map(name, data));
}

/// An Ingress of [`manifests`]: name, path, annotations (without their prefix).
type IngressAt<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// A manifests directory: the IngressClass, the Service `app` (the recorder), one Ingress per
/// `(name, path, annotations)`, the controller's ConfigMap with `settings`.
fn manifests(
    backend: &Recorder,
    ingresses: &[IngressAt<'_>],
    settings: &[(&str, &str)],
) -> Manifests {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[backend.addr]));
    for (name, path, annotations) in ingresses {
        m.write(&format!("ing-{name}.yaml"), &ingress_at(name, path, annotations));
    }
    put_config_map(&m, CONFIGMAP, settings);
    m
}

/// Starts Sluice on `m` with the controller's ConfigMap, and checks that the configuration
/// was taken without a diagnostic (a typo in a test's manifests would be one).
async fn start(m: &Manifests) -> Sluice {
    start_expecting(m, 0).await
}

/// Starts Sluice on `m` with the controller's ConfigMap, and checks that the first
/// configuration had `diagnostics` diagnostics.
async fn start_expecting(m: &Manifests, diagnostics: usize) -> Sluice {
    let s = Sluice::start(m.path(), &["--configmap", &format!("default/{CONFIGMAP}")]);
    let config = s.config().await;
    let found = config["diagnostics"].as_array().expect("a list of diagnostics");
    assert_eq!(found.len(), diagnostics, "{:#}", config["diagnostics"]);
    s
}

// ---------------------------------------------------------------------------------------
// The three ways

/// A way of sending the same request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// GET over HTTP/1.1, twice on one keep-alive connection: the fast path.
    FastGet,
    /// GET over h2c: the general path.
    H2cGet,
    /// POST with a chunked body over HTTP/1.1: the general path.
    Post,
}

const WAYS: [Way; 3] = [Way::FastGet, Way::H2cGet, Way::Post];

/// An HTTP/1.1 client writing header names in title case (see the module doc).
fn title_case_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).http1_title_case_headers(true).build_http()
}

/// The request `way` sends: `path` to `host` (else Sluice's address) with `headers`, and
/// the carrier mark.
fn way_request(
    s: &Sluice,
    way: Way,
    host: Option<&str>,
    path: &str,
    headers: &[(&str, &str)],
) -> http::Request<Full<Bytes>> {
    let authority = host.map_or_else(|| s.http.to_string(), str::to_string);
    let mut req = match way {
        Way::FastGet => request("GET", &s.url(path), host, Bytes::new()),
        // h2 carries the host in the URI (`:authority`).
        Way::H2cGet => request("GET", &format!("http://{authority}{path}"), None, Bytes::new()),
        Way::Post => chunked_request("POST", &s.url(path), host, Bytes::from_static(b"hello")),
    };
    for (name, value) in headers {
        req.headers_mut()
            .append(HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    req.headers_mut().insert("x-carrier", "1".parse().unwrap());
    req
}

/// Sends the request of `way` (see [`way_request`]) and returns the last reply: for
/// [`Way::FastGet`], the second of two on one connection.
async fn send_way(
    s: &Sluice,
    way: Way,
    host: Option<&str>,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let req = way_request(s, way, host, path, headers);
    match way {
        Way::H2cGet => h2c_send(s.http, req).await,
        Way::Post => send(&title_case_client(), req).await,
        Way::FastGet => {
            let client = title_case_client();
            let first = send(&client, req).await;
            let second = send(&client, way_request(s, way, host, path, headers)).await;
            assert_eq!(first.status, second.status, "{path}");
            assert_eq!(first.headers.len(), second.headers.len(), "{path}");
            second
        }
    }
}

/// Sends `path` to `host` with `headers` each of the three ways; returns each reply with the
/// request the backend saw, after checking the carrier: the fast path for the GET when
/// `fast_route` (the route is one the fast path carries), the general path otherwise.
async fn each_way(
    s: &Sluice,
    backend: &Recorder,
    host: Option<&str>,
    path: &str,
    headers: &[(&str, &str)],
    fast_route: bool,
) -> Vec<(Way, Reply, Seen)> {
    let mut out = Vec::new();
    for way in WAYS {
        let before = backend.count();
        let reply = send_way(s, way, host, path, headers).await;
        let sent = if way == Way::FastGet { 2 } else { 1 };
        let seen: Vec<Seen> = backend.seen.lock().unwrap()[before..].to_vec();
        assert_eq!(seen.len(), sent, "{way:?} {path}: each request reached the backend once");
        let expected =
            if way == Way::FastGet && fast_route { Carrier::Fast } else { Carrier::General };
        for one in &seen {
            assert_eq!(one.carrier(), expected, "{way:?} {path}: {one:?}");
        }
        out.push((way, reply, backend.last()));
    }
    out
}

/// Every value of response header `name`, in order.
fn values(reply: &Reply, name: &str) -> Vec<String> {
    reply.headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_string()).collect()
}

// ---------------------------------------------------------------------------------------
// Upstream request headers

// ingress-nginx: `proxy_set_header Host "<upstream-vhost>"` (variables interpolated by NGINX);
// X-Forwarded-Host stays `$best_http_host`, the client's Host.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_vhost_is_the_host_the_backend_sees() {
    let b = Recorder::plain().await;
    let m = manifests(
        &b,
        &[
            ("literal", "/literal", &[("upstream-vhost", "upstreamvhost.bar.com")]),
            ("variable", "/variable", &[("upstream-vhost", "$host.internal")]),
            ("none", "/none", &[]),
        ],
        &[],
    );
    let s = start(&m).await;
    let authority = s.http.to_string();

    for (way, r, seen) in each_way(&s, &b, None, "/literal", &[], true).await {
        assert_eq!(r.status, 200, "{way:?}");
        assert_eq!(seen.all("host"), ["upstreamvhost.bar.com"], "{way:?}: {seen:?}");
        assert_eq!(seen.all("x-forwarded-host"), [authority.as_str()], "{way:?}: {seen:?}");
    }
    // `$host`: the request's host, lower case, without the port.
    for (way, _, seen) in each_way(&s, &b, None, "/variable", &[], true).await {
        assert_eq!(seen.all("host"), ["127.0.0.1.internal"], "{way:?}: {seen:?}");
    }
    let host = Some("VHost.Example.COM:8080");
    for (way, _, seen) in each_way(&s, &b, host, "/variable", &[], true).await {
        assert_eq!(seen.all("host"), ["vhost.example.com.internal"], "{way:?}: {seen:?}");
        assert_eq!(seen.all("x-forwarded-host"), ["VHost.Example.COM:8080"], "{way:?}: {seen:?}");
    }
    // Without the annotation the client's Host goes on.
    for (way, _, seen) in each_way(&s, &b, None, "/none", &[], true).await {
        assert_eq!(seen.all("host"), [authority.as_str()], "{way:?}: {seen:?}");
    }
}

// ingress-nginx (xforwardedprefix.go): `proxy_set_header X-Forwarded-Prefix "<value>"`, with
// `rewrite-target` too; an empty value sets no header (the template skips it), so the
// client's own header, if any, goes on as any other.
#[tokio::test(flavor = "multi_thread")]
async fn x_forwarded_prefix_is_set_and_replaces_the_clients() {
    let b = Recorder::plain().await;
    let m = manifests(
        &b,
        &[
            ("prefix", "/prefix", &[("x-forwarded-prefix", "/test/value")]),
            (
                "rewritten",
                "/rewritten",
                &[("x-forwarded-prefix", "/test/value"), ("rewrite-target", "/foo")],
            ),
            ("empty", "/empty", &[("x-forwarded-prefix", "")]),
            ("variable", "/variable", &[("x-forwarded-prefix", "$http_x_script_name")]),
        ],
        &[],
    );
    let s = start(&m).await;

    let client = [("X-Forwarded-Prefix", "/from-client")];
    for (way, r, seen) in each_way(&s, &b, None, "/prefix", &client, true).await {
        assert_eq!(r.status, 200, "{way:?}");
        assert_eq!(seen.all("x-forwarded-prefix"), ["/test/value"], "{way:?}: {seen:?}");
    }
    let r = get(&s.url("/rewritten"), None).await;
    assert_eq!(r.status, 200);
    let seen = b.last();
    assert_eq!(seen.path(), "/foo", "{seen:?}");
    assert_eq!(seen.all("x-forwarded-prefix"), ["/test/value"], "{seen:?}");

    for (way, _, seen) in each_way(&s, &b, None, "/empty", &[], true).await {
        assert_eq!(seen.all("x-forwarded-prefix"), Vec::<&str>::new(), "{way:?}: {seen:?}");
    }
    for (way, _, seen) in each_way(&s, &b, None, "/empty", &client, true).await {
        assert_eq!(seen.all("x-forwarded-prefix"), ["/from-client"], "{way:?}: {seen:?}");
    }
    // A variable: NGINX interpolates it, and sends no header when it comes out empty.
    let script = [("X-Script-Name", "/app")];
    for (way, _, seen) in each_way(&s, &b, None, "/variable", &script, true).await {
        assert_eq!(seen.all("x-forwarded-prefix"), ["/app"], "{way:?}: {seen:?}");
    }
    for (way, _, seen) in each_way(&s, &b, None, "/variable", &client, true).await {
        assert_eq!(seen.all("x-forwarded-prefix"), Vec::<&str>::new(), "{way:?}: {seen:?}");
    }
}

// ingress-nginx (connection.go): `proxy_set_header Connection <value>`; without it the
// backend gets no Connection header (`$connection_upgrade` is empty for a keep-alive pool).
// With `close`, the backend closes each connection and the next request still works.
#[tokio::test(flavor = "multi_thread")]
async fn connection_proxy_header_is_the_connection_the_backend_sees() {
    let b = Recorder::plain().await;
    let m = manifests(
        &b,
        &[
            ("keepalive", "/keepalive", &[("connection-proxy-header", "keep-alive")]),
            ("close", "/close", &[("connection-proxy-header", "close")]),
            ("none", "/none", &[]),
        ],
        &[],
    );
    let s = start(&m).await;

    for (way, r, seen) in each_way(&s, &b, None, "/keepalive", &[], true).await {
        assert_eq!(r.status, 200, "{way:?}");
        assert_eq!(seen.all("connection"), ["keep-alive"], "{way:?}: {seen:?}");
    }
    // Twice each way: the backend closes after each answer; no request fails for it.
    for _ in 0..2 {
        for (way, r, seen) in each_way(&s, &b, None, "/close", &[], true).await {
            assert_eq!(r.status, 200, "{way:?}");
            assert_eq!(&r.body[..], b"ok");
            assert_eq!(seen.all("connection"), ["close"], "{way:?}: {seen:?}");
        }
    }
    for (way, _, seen) in each_way(&s, &b, None, "/none", &[("Connection", "X-Hop")], true).await {
        assert_eq!(seen.all("connection"), Vec::<&str>::new(), "{way:?}: {seen:?}");
    }
}

// ingress-nginx: ConfigMap `proxy-set-headers` adds `proxy_set_header` lines to every
// location, values interpolated (`$host`, `$http_x_user`); a name Sluice sets itself
// (X-Forwarded-Proto) takes the ConfigMap's value and is sent once; a client's header of the
// same name is replaced; a value that comes out empty sends no header (NGINX's rule).
#[tokio::test(flavor = "multi_thread")]
async fn proxy_set_headers_are_set_on_every_upstream_request() {
    let b = Recorder::plain().await;
    let m =
        manifests(&b, &[("app", "/", &[])], &[("proxy-set-headers", "default/upstream-headers")]);
    put_config_map(
        &m,
        "upstream-headers",
        &[
            ("X-Custom", "static value"),
            ("X-Seen-Host", "$host"),
            ("X-User", "$http_x_user"),
            ("X-Forwarded-Proto", "from-config"),
            ("X-Replaced", "by-config"),
            ("X-Dropped", ""),
        ],
    );
    let s = start(&m).await;

    let client =
        [("X-Replaced", "by-client"), ("X-Forwarded-Proto", "https"), ("X-Dropped", "secret")];
    for (way, r, seen) in each_way(&s, &b, None, "/app", &client, true).await {
        assert_eq!(r.status, 200, "{way:?}");
        assert_eq!(seen.all("x-custom"), ["static value"], "{way:?}: {seen:?}");
        assert_eq!(seen.all("x-seen-host"), ["127.0.0.1"], "{way:?}: {seen:?}");
        assert_eq!(seen.all("x-forwarded-proto"), ["from-config"], "{way:?}: {seen:?}");
        // The other forwarding headers keep Sluice's values.
        assert_eq!(seen.all("x-forwarded-scheme"), ["http"], "{way:?}: {seen:?}");
        assert_eq!(seen.all("x-replaced"), ["by-config"], "{way:?}: {seen:?}");
        assert_eq!(seen.all("x-user"), Vec::<&str>::new(), "{way:?}: {seen:?}");
        assert_eq!(seen.all("x-dropped"), Vec::<&str>::new(), "{way:?}: {seen:?}");
    }
    for (way, _, seen) in each_way(&s, &b, None, "/app", &[("X-User", "alice")], true).await {
        assert_eq!(seen.all("x-user"), ["alice"], "{way:?}: {seen:?}");
    }
}

// ingress-nginx: `proxy_http_version 1.0`: the backend gets an HTTP/1.0 request, a body with
// its Content-Length (never chunked), and no keep-alive. The fast path leaves these routes to
// the general path.
#[tokio::test(flavor = "multi_thread")]
async fn proxy_http_version_1_0_reaches_the_backend_in_http_1_0() {
    let b = Recorder::plain().await;
    let m = manifests(&b, &[("old", "/", &[("proxy-http-version", "1.0")])], &[]);
    let s = start(&m).await;

    for _ in 0..2 {
        for (way, r, seen) in each_way(&s, &b, None, "/old", &[], false).await {
            assert_eq!(r.status, 200, "{way:?}");
            assert_eq!(&r.body[..], b"ok");
            let method = if way == Way::Post { "POST" } else { "GET" };
            assert_eq!(seen.line, format!("{method} /old HTTP/1.0"), "{way:?}: {seen:?}");
            if way == Way::Post {
                assert_eq!(seen.all("content-length"), ["5"], "{seen:?}");
                assert_eq!(seen.body, b"hello");
            }
            assert!(
                !seen.all("connection").iter().any(|v| v.eq_ignore_ascii_case("keep-alive")),
                "{way:?}: {seen:?}"
            );
        }
    }
    // Not kept alive: the backend would have kept a connection open for `keep-alive`.
    b.assert_one_request_per_connection("/old");
}

// NGINX's `underscores_in_headers off` (ingress-nginx's default): a request header whose name
// holds `_` is dropped, not passed to the backend.
#[tokio::test(flavor = "multi_thread")]
async fn underscored_request_headers_are_dropped_by_default() {
    let b = Recorder::plain().await;
    let m = manifests(&b, &[("app", "/", &[])], &[]);
    let s = start(&m).await;
    let client = [("X_Under_Score", "1"), ("X-Dash", "2")];
    for (way, r, seen) in each_way(&s, &b, None, "/", &client, true).await {
        assert_eq!(r.status, 200, "{way:?}");
        assert_eq!(seen.all("x_under_score"), Vec::<&str>::new(), "{way:?}: {seen:?}");
        assert_eq!(seen.all("x-dash"), ["2"], "{way:?}: {seen:?}");
    }
}

// ConfigMap `enable-underscores-in-headers: "true"` (`underscores_in_headers on`): they pass.
#[tokio::test(flavor = "multi_thread")]
async fn enable_underscores_in_headers_passes_them() {
    let b = Recorder::plain().await;
    let m = manifests(&b, &[("app", "/", &[])], &[("enable-underscores-in-headers", "true")]);
    let s = start(&m).await;
    let client = [("X_Under_Score", "1"), ("X-Dash", "2")];
    for (way, r, seen) in each_way(&s, &b, None, "/", &client, true).await {
        assert_eq!(r.status, 200, "{way:?}");
        assert_eq!(seen.all("x_under_score"), ["1"], "{way:?}: {seen:?}");
        assert_eq!(seen.all("x-dash"), ["2"], "{way:?}: {seen:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Response headers

// ingress-nginx (customheaders.go): `custom-headers: <ns>/<name>` sets each entry of the
// ConfigMap on the responses (`more_set_headers`, replacing the upstream's), values literal:
// `$remote_addr` stays as written. Names must be in `global-allowed-response-headers`.
#[tokio::test(flavor = "multi_thread")]
async fn custom_headers_set_literal_response_headers() {
    let b = Recorder::start(|_| (200, vec![("My-Custom-Header", "from-backend".into())])).await;
    let m = manifests(
        &b,
        &[("custom", "/", &[("custom-headers", "default/custom-headers")])],
        &[("global-allowed-response-headers", "My-Custom-Header,My-Custom-Header-Dollar")],
    );
    put_config_map(
        &m,
        "custom-headers",
        &[("My-Custom-Header", "42"), ("My-Custom-Header-Dollar", "$remote_addr")],
    );
    let s = start(&m).await;
    for (way, r, _) in each_way(&s, &b, None, "/", &[], true).await {
        assert_eq!(r.status, 200, "{way:?}");
        assert_eq!(values(&r, "my-custom-header"), ["42"], "{way:?}: {:?}", r.headers);
        assert_eq!(values(&r, "my-custom-header-dollar"), ["$remote_addr"], "{way:?}");
    }
}

// ingress-nginx: a `custom-headers` that cannot be applied (a name not allowed, a ConfigMap
// that does not exist) denies the location: `return 503`. Other Ingresses are not affected,
// and the ConfigMap appearing later repairs the paths (ConfigMaps are watched).
#[tokio::test(flavor = "multi_thread")]
async fn custom_headers_that_cannot_be_applied_answer_503() {
    let b = Recorder::plain().await;
    let m = manifests(
        &b,
        &[
            ("denied", "/denied", &[("custom-headers", "default/not-allowed")]),
            ("missing", "/missing", &[("custom-headers", "default/later")]),
            ("fine", "/fine", &[]),
        ],
        &[("global-allowed-response-headers", "X-Allowed")],
    );
    put_config_map(&m, "not-allowed", &[("X-Allowed", "1"), ("X-Forbidden", "2")]);
    let s = start_expecting(&m, 2).await;
    let diagnostics = s.config().await["diagnostics"].to_string();
    for expected in ["x-forbidden is not listed", "ConfigMap default/later does not exist"] {
        assert!(diagnostics.contains(expected), "{expected}: {diagnostics}");
    }

    for path in ["/denied", "/missing"] {
        for way in WAYS {
            let r = send_way(&s, way, None, path, &[]).await;
            assert_eq!(r.status, 503, "{way:?} {path}");
            let body = String::from_utf8_lossy(&r.body);
            assert!(body.contains("503 Service Temporarily Unavailable"), "{body}");
            assert!(r.headers.get("x-allowed").is_none(), "{way:?} {path}: {:?}", r.headers);
        }
    }
    assert_eq!(b.count(), 0, "a denied location never reaches the backend");
    for (way, r, _) in each_way(&s, &b, None, "/fine", &[], true).await {
        assert_eq!(r.status, 200, "{way:?}");
    }

    let g = s.generation().await;
    put_config_map(&m, "later", &[("X-Allowed", "now")]);
    s.wait_generation_after(g).await;
    for (way, r, _) in each_way(&s, &b, None, "/missing", &[], true).await {
        assert_eq!(r.status, 200, "{way:?}");
        assert_eq!(values(&r, "x-allowed"), ["now"], "{way:?}");
    }
}

// ingress-nginx (settings/custom_header.go): ConfigMap `add-headers` sets response headers on
// every route (http-level `more_set_headers`), values with NGINX variables filled in, Sluice's
// own answers (404, 503) included.
#[tokio::test(flavor = "multi_thread")]
async fn add_headers_are_set_on_every_response() {
    let b = Recorder::start(|_| (200, vec![("X-Static", "from-backend".into())])).await;
    let m = manifests(&b, &[], &[("add-headers", "default/response-headers")]);
    m.write("ing-app.yaml", &ingress("app", "app.example.com", &[("/", "Prefix", "app")], &[]));
    m.write("svc-idle.yaml", &service("idle", &[]));
    m.write("ing-idle.yaml", &ingress("idle", "idle.example.com", &[("/", "Prefix", "idle")], &[]));
    put_config_map(
        &m,
        "response-headers",
        &[
            ("X-Static", "Prepare for trouble!"),
            ("X-Host", "$host"),
            ("X-Request", "$request_method $request_uri"),
            ("X-Id", "$req_id"),
        ],
    );
    // The one diagnostic: the Service `idle` has no endpoint.
    let s = start_expecting(&m, 1).await;

    let client = [("X-Request-ID", "fixed-id")];
    for (way, r, _) in each_way(&s, &b, Some("App.Example.com"), "/a?b=1", &client, true).await {
        assert_eq!(r.status, 200, "{way:?}");
        let method = if way == Way::Post { "POST" } else { "GET" };
        assert_eq!(values(&r, "x-static"), ["Prepare for trouble!"], "{way:?}");
        assert_eq!(values(&r, "x-host"), ["app.example.com"], "{way:?}");
        assert_eq!(values(&r, "x-request"), [format!("{method} /a?b=1")], "{way:?}");
        assert_eq!(values(&r, "x-id"), ["fixed-id"], "{way:?}");
    }

    // Sluice's own answers: the 404 of a host no Ingress names, the 503 of a Service without
    // endpoints.
    for (host, status) in [("nowhere.example.com", 404), ("idle.example.com", 503)] {
        let r = get(&s.url("/"), Some(host)).await;
        assert_eq!(r.status, status, "{host}");
        assert_eq!(values(&r, "x-static"), ["Prepare for trouble!"], "{host}: {:?}", r.headers);
        assert_eq!(values(&r, "x-host"), [host], "{host}");
    }
}

// headers-more's inheritance: a location's `more_set_headers` (custom-headers) replaces the
// http-level list (add-headers) for that location; other Ingresses keep add-headers.
#[tokio::test(flavor = "multi_thread")]
async fn custom_headers_replace_add_headers_for_their_ingress() {
    let b = Recorder::plain().await;
    let m = manifests(
        &b,
        &[("custom", "/custom", &[("custom-headers", "custom-headers")]), ("plain", "/plain", &[])],
        &[
            ("add-headers", "default/response-headers"),
            ("global-allowed-response-headers", "My-Custom-Header"),
        ],
    );
    put_config_map(
        &m,
        "response-headers",
        &[("X-Global", "everywhere"), ("My-Custom-Header", "global")],
    );
    put_config_map(&m, "custom-headers", &[("My-Custom-Header", "42")]);
    let s = start(&m).await;

    for (way, r, _) in each_way(&s, &b, None, "/custom", &[], true).await {
        assert_eq!(r.status, 200, "{way:?}");
        assert_eq!(values(&r, "my-custom-header"), ["42"], "{way:?}");
        assert!(r.headers.get("x-global").is_none(), "{way:?}: {:?}", r.headers);
    }
    for (way, r, _) in each_way(&s, &b, None, "/plain", &[], true).await {
        assert_eq!(values(&r, "my-custom-header"), ["global"], "{way:?}");
        assert_eq!(values(&r, "x-global"), ["everywhere"], "{way:?}");
    }
}

// NGINX's `proxy_hide_header` for each name of ConfigMap `hide-headers`: the upstream's
// response headers of those names (any case, every line) do not reach the client.
#[tokio::test(flavor = "multi_thread")]
async fn hide_headers_remove_upstream_response_headers() {
    let b = Recorder::start(|_| {
        (
            200,
            vec![
                ("X-Powered-By", "PHP/8.3".into()),
                ("X-Internal-Token", "one".into()),
                ("x-internal-token", "two".into()),
                ("X-Kept", "kept".into()),
            ],
        )
    })
    .await;
    let m =
        manifests(&b, &[("app", "/", &[])], &[("hide-headers", "X-Powered-By, x-INTERNAL-token")]);
    let s = start(&m).await;
    for (way, r, _) in each_way(&s, &b, None, "/", &[], true).await {
        assert_eq!(r.status, 200, "{way:?}");
        assert!(r.headers.get("x-powered-by").is_none(), "{way:?}: {:?}", r.headers);
        assert!(r.headers.get("x-internal-token").is_none(), "{way:?}: {:?}", r.headers);
        assert_eq!(values(&r, "x-kept"), ["kept"], "{way:?}");
    }
}

// NGINX's `proxy_redirect <from> <to>`: a `Location` or `Refresh` (`url=`) starting with
// `from` gets `to` instead of that prefix; other values pass unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn proxy_redirect_rewrites_location_and_refresh() {
    let b = Recorder::start(|seen| {
        if seen.path().starts_with("/elsewhere") {
            (302, vec![("Location", "http://other.svc/x".into())])
        } else {
            (
                302,
                vec![
                    ("Location", "http://internal.svc:8080/login?next=/a".into()),
                    ("Refresh", "5; url=http://internal.svc:8080/later".into()),
                ],
            )
        }
    })
    .await;
    let redirect: &[(&str, &str)] = &[
        ("proxy-redirect-from", "http://internal.svc:8080/"),
        ("proxy-redirect-to", "https://public.example.com/"),
    ];
    let m = manifests(&b, &[("app", "/", redirect)], &[]);
    let s = start(&m).await;
    for (way, r, _) in each_way(&s, &b, None, "/go", &[], true).await {
        assert_eq!(r.status, 302, "{way:?}");
        assert_eq!(values(&r, "location"), ["https://public.example.com/login?next=/a"], "{way:?}");
        assert_eq!(values(&r, "refresh"), ["5; url=https://public.example.com/later"], "{way:?}");
    }
    for (way, r, _) in each_way(&s, &b, None, "/elsewhere", &[], true).await {
        assert_eq!(values(&r, "location"), ["http://other.svc/x"], "{way:?}");
    }
}

/// The Set-Cookie lines of the backend of [`cookie_setup`], and what its rewrites make of them.
const COOKIES: [(&str, &str); 4] = [
    (
        "a=1; Domain=.Internal.Local; Path=/app/x; HttpOnly",
        "a=1; Domain=.example.com; Path=/x; HttpOnly",
    ),
    ("b=2; Path=/other", "b=2; Path=/other"),
    ("c=3; domain=internal.local; path=/app/", "c=3; domain=example.com; path=/"),
    ("d=4; Domain=sub.internal.local; Path=/APP/x", "d=4; Domain=sub.internal.local; Path=/APP/x"),
];

/// A backend answering with the Set-Cookie lines of [`COOKIES`], and Sluice in front with
/// the rewrites under `/` and, written with leading dots, under `/dotted`.
async fn cookie_setup() -> (Recorder, Manifests, Sluice) {
    let b = Recorder::start(|_| {
        (200, COOKIES.iter().map(|(sent, _)| ("Set-Cookie", sent.to_string())).collect())
    })
    .await;
    let m = manifests(
        &b,
        &[
            (
                "app",
                "/",
                &[
                    ("proxy-cookie-domain", "internal.local example.com"),
                    ("proxy-cookie-path", "/app/ /"),
                ],
            ),
            (
                "dotted",
                "/dotted",
                &[
                    ("proxy-cookie-domain", ".internal.local .example.com"),
                    ("proxy-cookie-path", "/app/ /"),
                ],
            ),
        ],
        &[],
    );
    let s = start(&m).await;
    (b, m, s)
}

// NGINX's `proxy_cookie_domain` (the domain compared whole, case-insensitively; the leading
// dots of the directive's two domains dropped, the cookie's own kept) and `proxy_cookie_path`
// (a path prefix, case-sensitively): each `Set-Cookie` line is rewritten on its own, none is
// lost, and both paths keep their order.
#[tokio::test(flavor = "multi_thread")]
async fn proxy_cookie_domain_and_path_rewrite_each_set_cookie() {
    let (b, _m, s) = cookie_setup().await;
    let expected: Vec<&str> = COOKIES.iter().map(|(_, rewritten)| *rewritten).collect();
    for path in ["/", "/dotted"] {
        for (way, r, _) in each_way(&s, &b, None, path, &[], true).await {
            assert_eq!(r.status, 200, "{way:?}");
            assert_eq!(values(&r, "set-cookie"), expected, "{way:?} {path}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Live changes

// ingress-nginx watches the ConfigMaps its ConfigMap names: an edit of the add-headers
// ConfigMap reaches responses without a restart, on both paths.
#[tokio::test(flavor = "multi_thread")]
async fn an_edit_of_the_add_headers_config_map_applies_live() {
    let b = Recorder::plain().await;
    let m = manifests(&b, &[("app", "/", &[])], &[("add-headers", "default/response-headers")]);
    put_config_map(&m, "response-headers", &[("X-Version", "one")]);
    let s = start(&m).await;
    for (way, r, _) in each_way(&s, &b, None, "/", &[], true).await {
        assert_eq!(values(&r, "x-version"), ["one"], "{way:?}");
    }

    let g = s.generation().await;
    put_config_map(&m, "response-headers", &[("X-Version", "two"), ("X-New", "$request_method")]);
    s.wait_generation_after(g).await;
    for (way, r, _) in each_way(&s, &b, None, "/", &[], true).await {
        let method = if way == Way::Post { "POST" } else { "GET" };
        assert_eq!(values(&r, "x-version"), ["two"], "{way:?}");
        assert_eq!(values(&r, "x-new"), [method], "{way:?}");
    }

    let g = s.generation().await;
    put_config_map(&m, CONFIGMAP, &[]);
    s.wait_generation_after(g).await;
    for (way, r, _) in each_way(&s, &b, None, "/", &[], true).await {
        assert!(r.headers.get("x-version").is_none(), "{way:?}: {:?}", r.headers);
    }
}
