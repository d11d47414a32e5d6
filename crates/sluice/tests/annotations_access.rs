//! Access control end to end, against the real binary: basic authentication, the address
//! lists, `satisfy`, the ConfigMap's block lists and CORS, with ingress-nginx's semantics and
//! the differences Sluice documents (README: "Access control fails closed", "Block lists apply
//! everywhere, first", "CORS never reflects an origin it was not given").
//!
//! The scenarios follow ingress-nginx's e2e suites:
//!
//! - `test/e2e/annotations/auth.go` (basic authentication: no or wrong credentials, `auth-file`
//!   and `auth-map` Secrets, a Secret `auth: "foo:"`, a missing Secret, 401 with CORS) and
//!   `test/e2e/settings/no_auth_locations.go`; every hash format NGINX accepts, each made at
//!   test time by the real tool (`htpasswd` of Debian's apache2-utils, `openssl passwd`); an
//!   unusable line; a Secret rotated, deleted and restored without a restart;
//! - `test/e2e/annotations/ipallowlist.go` and `ipdenylist.go` (with `use-forwarded-headers`,
//!   the client address taken from `X-Forwarded-For`), spoofing without it, the ConfigMap's
//!   lists and their replacement by annotations, invalid lists failing closed (503);
//! - `satisfy` (`test/e2e/annotations/satisfy.go` with an address list in place of external
//!   authentication) as NGINX's access phase combines its handlers;
//! - `test/e2e/settings/global_access_block.go` (`block-cidrs`, `block-user-agents`,
//!   `block-referers`), and blocks applying on routes with lists of their own;
//! - `test/e2e/annotations/cors.go`, scenarios 1 to 25: defaults, preflights (204, no body,
//!   the backend not called), origin lists (ports, one-label wildcards, skipped entries,
//!   schemes other than HTTP), the `cors-*` settings, an invalid origin list failing closed,
//!   CORS headers replacing the backend's and carried by refusals (401, 403).
//!
//! Every request is sent more than one way, and the answers must be the same: a GET is sent
//! over HTTP/1.1 keep-alive (the fast path), over h2c and as a POST with a chunked body (both
//! on the general, hyper path); an OPTIONS over HTTP/1.1 and h2c (without a body, the fast
//! path carries GET and HEAD only). The backend is a raw socket that tells which path brought each request: the HTTP/1.1
//! client writes header names in title case, which the fast path passes on as written and the
//! general path writes in lower case; each proxied answer's carrier is checked, so a route
//! that stopped taking the fast path fails the test rather than compare the general path with
//! itself. (The fast path hands a whole route to the general path or none of it, so a route
//! seen on the fast path once has its local answers, 401, 403, 204, decided there too.)
//!
//! `htpasswd` must be installed (Debian: `apt-get install apache2-utils`).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::tls::secret;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The ConfigMap `--configmap` names in these tests (in `default`).
const CONFIGMAP: &str = "sluice-config";

/// Basic authentication with the Secret `basic-auth` and auth.go's realm.
const AUTH: [(&str, &str); 3] =
    [("auth-type", "basic"), ("auth-secret", "basic-auth"), ("auth-realm", "test auth")];

/// ingress-nginx's default `cors-allow-methods`.
const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
/// ingress-nginx's default `cors-allow-headers`.
const DEFAULT_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";

// ---------------------------------------------------------------------------------------
// The backend

/// The backend of the Service `app`, on a raw socket: answers every request 200 with a JSON
/// body naming itself (`"name": "app"`), the path and the `Authorization` header it received,
/// a header `X-Carrier` saying which of Sluice's paths brought the request (see the module
/// doc), and `extra` headers.
struct Backend {
    addr: SocketAddr,
    /// Requests received so far.
    count: Arc<AtomicUsize>,
}

impl Backend {
    async fn start(extra: &'static [(&'static str, &'static str)]) -> Backend {
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        let addr = tcp_backend(move |stream| serve(stream, extra, counter.clone())).await;
        Backend { addr, count }
    }

    /// Requests received so far.
    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// Serves one connection of a [`Backend`], keeping it open unless the request says `close`.
async fn serve(
    mut stream: tokio::net::TcpStream,
    extra: &'static [(&'static str, &'static str)],
    count: Arc<AtomicUsize>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Some(end) = read_head_into(&mut stream, &mut buf).await else { return };
        let head = String::from_utf8_lossy(&buf[..end - 4]).into_owned();
        let mut lines = head.split("\r\n");
        let path = lines.next().unwrap_or_default().split(' ').nth(1).unwrap_or_default();
        let headers: Vec<(&str, &str)> =
            lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n, v.trim())).collect();
        let header = |name: &str| {
            headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
        };
        let carrier = if headers.iter().any(|(n, _)| *n == "X-Carrier") {
            "fast"
        } else if headers.iter().any(|(n, _)| *n == "x-carrier") {
            "general"
        } else {
            "unknown"
        };
        let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let body = serde_json::json!({
            "name": "app",
            "path": path,
            "authorization": header("authorization"),
        })
        .to_string();
        while buf.len() < end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + length);
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Carrier: {carrier}\r\n",
            body.len()
        );
        for (name, value) in extra {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&body);
        count.fetch_add(1, Ordering::SeqCst);
        if stream.write_all(out.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Set-up

/// A manifests directory: the IngressClass, the Service `app` (endpoint `backend`) and the
/// controller's ConfigMap with `settings`.
fn manifests(backend: &Backend, settings: &[(&str, &str)]) -> Manifests {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[backend.addr]));
    put_config_map(&m, settings);
    m
}

/// Writes (or replaces) the controller's ConfigMap.
fn put_config_map(m: &Manifests, data: &[(&str, &str)]) {
    let mut s = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {CONFIGMAP}\n  namespace: default\ndata:"
    );
    if data.is_empty() {
        s.push_str(" {}\n");
    }
    for (k, v) in data {
        s.push_str(&format!("\n  {k}: {v:?}"));
    }
    s.push('\n');
    m.write("configmap.yaml", &s);
}

/// Annotations (names without the `nginx.ingress.kubernetes.io/` prefix) and their values.
type Annotations<'a> = &'a [(&'a str, &'a str)];

/// Writes the Ingress `name` for any host: each of `paths` (Prefix) to the Service `app`, with
/// `annotations` (names without the `nginx.ingress.kubernetes.io/` prefix).
fn put_ingress(m: &Manifests, name: &str, paths: &[&str], annotations: &[(&str, &str)]) {
    let full: Vec<(String, &str)> =
        annotations.iter().map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), *v)).collect();
    let refs: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let rules: Vec<(&str, &str, &str)> = paths.iter().map(|p| (*p, "Prefix", "app")).collect();
    m.write(&format!("ing-{name}.yaml"), &ingress(name, "", &rules, &refs));
}

/// Writes the Opaque Secret `name` with `data`.
fn put_secret(m: &Manifests, name: &str, data: &[(&str, &str)]) {
    m.write(&format!("secret-{name}.yaml"), &secret(name, "Opaque", data));
}

/// Writes the Secret `basic-auth` with the htpasswd file of `lines` under `auth`.
fn put_auth_file(m: &Manifests, lines: &[String]) {
    put_secret(m, "basic-auth", &[("auth", &lines.join("\n"))]);
}

/// Starts Sluice on `m` with the controller's ConfigMap, and checks that the first
/// configuration has exactly the `expected` diagnostics (see [`assert_diagnostics`]): a typo
/// in a test's manifests would be one.
async fn start(m: &Manifests, expected: &[(&str, &str)]) -> Sluice {
    let s = Sluice::start(m.path(), &["--configmap", &format!("default/{CONFIGMAP}")]);
    assert_diagnostics(&s, expected).await;
    s
}

// ---------------------------------------------------------------------------------------
// Passwords

/// The password formats NGINX accepts, each made below by the tool that makes it.
const FORMATS: [&str; 7] =
    ["bcrypt", "apr1", "sha1", "md5-crypt", "sha256-crypt", "sha512-crypt", "plain"];

/// The htpasswd line of `user` with `password` hashed in `format`.
fn user_line(format: &str, user: &str, password: &str) -> String {
    let openssl = |flag: &str| format!("{user}:{}", tool("openssl", &["passwd", flag, password]));
    match format {
        "bcrypt" => tool("htpasswd", &["-n", "-b", "-B", "-C", "4", user, password]),
        "apr1" => tool("htpasswd", &["-n", "-b", "-m", user, password]),
        "sha1" => tool("htpasswd", &["-n", "-b", "-s", user, password]),
        "des" => tool("htpasswd", &["-n", "-b", "-d", user, password]),
        "md5-crypt" => openssl("-1"),
        "sha256-crypt" => openssl("-5"),
        "sha512-crypt" => openssl("-6"),
        "plain" => format!("{user}:{{PLAIN}}{password}"),
        other => panic!("no format {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// The ways of sending a request, and what came back

/// What a client saw of one answer: enough to tell any two answers of these tests apart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    /// Every value of the headers these tests look at: `WWW-Authenticate`, `Content-Type`,
    /// `Content-Length` and `Access-Control-*`.
    headers: BTreeMap<String, Vec<String>>,
    body: Body,
}

/// Who answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// The backend, which was sent `path` and `authorization`.
    Backend { path: String, authorization: Option<String> },
    /// Sluice, with this page.
    Local(String),
}

impl Answer {
    fn of(r: &Reply) -> Answer {
        let mut headers = BTreeMap::new();
        for name in r.headers.keys() {
            let n = name.as_str();
            if n.starts_with("access-control-")
                || ["www-authenticate", "content-type", "content-length"].contains(&n)
            {
                let values = r.headers.get_all(name).iter();
                headers.insert(n.to_string(), values.map(|v| v.to_str().unwrap().into()).collect());
            }
        }
        let body = match serde_json::from_slice::<serde_json::Value>(&r.body) {
            Ok(doc) if doc["name"] == "app" => Body::Backend {
                path: doc["path"].as_str().expect("a path").to_string(),
                authorization: doc["authorization"].as_str().map(str::to_string),
            },
            _ => Body::Local(String::from_utf8_lossy(&r.body).into_owned()),
        };
        Answer { status: r.status.as_u16(), headers, body }
    }

    /// The only value of header `name`, if any.
    fn header(&self, name: &str) -> Option<&str> {
        let values = self.headers.get(name)?;
        assert_eq!(values.len(), 1, "{name} sent more than once: {self:#?}");
        Some(&values[0])
    }

    /// The `Access-Control-*` headers.
    fn cors(&self) -> BTreeMap<String, Vec<String>> {
        let cors = self.headers.iter().filter(|(n, _)| n.starts_with("access-control-"));
        cors.map(|(n, v)| (n.clone(), v.clone())).collect()
    }

    /// Whether the backend answered.
    fn proxied(&self) -> bool {
        matches!(self.body, Body::Backend { .. })
    }
}

/// Asserts that the backend answered 200 and was not sent the `Authorization` header.
#[track_caller]
fn assert_served(a: &Answer) {
    assert_eq!(a.status, 200, "{a:#?}");
    assert!(matches!(a.body, Body::Backend { authorization: None, .. }), "{a:#?}");
}

/// Asserts that Sluice refused the request with `status` and its page, asking for credentials
/// (`WWW-Authenticate`) on a 401 only.
#[track_caller]
fn assert_refused(a: &Answer, status: u16) {
    let title = match status {
        401 => "401 Authorization Required",
        403 => "403 Forbidden",
        503 => "503 Service Temporarily Unavailable",
        other => panic!("no page for {other}"),
    };
    assert_eq!(a.status, status, "{a:#?}");
    assert!(matches!(&a.body, Body::Local(page) if page.contains(title)), "{a:#?}");
    assert_eq!(a.header("www-authenticate").is_some(), status == 401, "{a:#?}");
}

/// [`assert_served`] for 200, else [`assert_refused`] with `status`.
#[track_caller]
fn assert_answer(a: &Answer, status: u16) {
    match status {
        200 => assert_served(a),
        _ => assert_refused(a, status),
    }
}

/// `(name, value)` pairs as the header map of an [`Answer`].
fn header_map(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
    pairs.iter().map(|(n, v)| (n.to_string(), vec![v.to_string()])).collect()
}

/// The CORS headers of ingress-nginx's defaults, with `Access-Control-Allow-Origin: origin`.
fn default_cors(origin: &str) -> BTreeMap<String, Vec<String>> {
    header_map(&[
        ("access-control-allow-origin", origin),
        ("access-control-allow-credentials", "true"),
        ("access-control-allow-methods", DEFAULT_METHODS),
        ("access-control-allow-headers", DEFAULT_HEADERS),
        ("access-control-max-age", "1728000"),
    ])
}

/// How a request is carried to Sluice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// HTTP/1.1 on the keep-alive connection of [`Ways`].
    KeepAlive,
    /// HTTP/1.1 on a fresh connection (an answer given without reading a body may close it).
    Fresh,
    /// h2c, prior knowledge.
    H2c,
}

/// The ways of sending a request to Sluice (see the module doc).
struct Ways {
    http: SocketAddr,
    /// Keep-alive HTTP/1.1, header names in title case.
    h1: Client<HttpConnector, Full<Bytes>>,
    /// One h2c (prior knowledge) connection.
    h2: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
}

/// An HTTP/1.1 client writing header names in title case.
fn title_case_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).http1_title_case_headers(true).build_http()
}

impl Ways {
    async fn new(s: &Sluice) -> Ways {
        let tcp = tokio::net::TcpStream::connect(s.http).await.unwrap();
        let (h2, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("an h2c handshake");
        tokio::spawn(conn);
        Ways { http: s.http, h1: title_case_client(), h2 }
    }

    /// `GET path` with `headers` over HTTP/1.1 keep-alive (the fast path) and h2c, and a POST
    /// with a chunked body (the general path): asserts the three answers are the same;
    /// returns it.
    async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let fast = self.send(Way::KeepAlive, "GET", path, headers).await;
        let h2c = self.send(Way::H2c, "GET", path, headers).await;
        let post = self.send(Way::Fresh, "POST", path, headers).await;
        assert_eq!(fast, h2c, "GET {path} {headers:?}: the fast path and h2c answer alike");
        assert_eq!(fast, post, "{path} {headers:?}: a GET on the fast path and a POST alike");
        fast
    }

    /// `OPTIONS path` with `headers` over HTTP/1.1 and h2c (both on the general path): asserts
    /// the answers are the same; returns it.
    async fn options(&mut self, path: &str, headers: &[(&str, &str)]) -> Answer {
        // A fresh connection: a connection handed to the general path stays there, and the
        // keep-alive one must keep taking the fast path.
        let h1 = self.send(Way::Fresh, "OPTIONS", path, headers).await;
        let h2c = self.send(Way::H2c, "OPTIONS", path, headers).await;
        assert_eq!(h1, h2c, "OPTIONS {path} {headers:?}: HTTP/1.1 and h2c answer alike");
        h1
    }

    /// Sends one request; for an answer from the backend, checks which path carried it.
    async fn send(
        &mut self,
        way: Way,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        let body =
            if method == "POST" { Bytes::from_static(b"a request body") } else { Bytes::new() };
        let url = format!("http://{}{path}", self.http);
        // A chunked body takes the general path (the fast path carries Content-Length ones).
        let mut req = if method == "POST" && way != Way::H2c {
            chunked_request(method, &url, None, body)
        } else {
            request(method, &url, None, body)
        };
        for (name, value) in headers.iter().chain(&[("x-carrier", "1")]) {
            req.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        let reply = match way {
            Way::KeepAlive => send(&self.h1, req).await,
            Way::Fresh => send(&title_case_client(), req).await,
            Way::H2c => {
                self.h2.ready().await.expect("the h2c connection stays open");
                let resp = tokio::time::timeout(WAIT, self.h2.send_request(req))
                    .await
                    .expect("no timeout")
                    .expect("an h2c response");
                let (parts, body) = resp.into_parts();
                let body = body.collect().await.expect("a whole h2c body").to_bytes();
                Reply { status: parts.status, headers: parts.headers, body }
            }
        };
        let answer = Answer::of(&reply);
        if answer.proxied() {
            let fast = way == Way::KeepAlive && method == "GET";
            let carrier = reply.headers.get("x-carrier").map(|v| v.to_str().unwrap());
            let expected = if fast { "fast" } else { "general" };
            assert_eq!(carrier, Some(expected), "{method} {path} ({way:?}): the carrier");
        }
        answer
    }
}

// ---------------------------------------------------------------------------------------
// Basic authentication

// auth.go: without credentials, or with a user the file does not hold, 401 with
// `WWW-Authenticate: Basic realm="test auth"` and NGINX's page; the right password of each
// hash format NGINX accepts lets the request through, and the backend never sees the
// `Authorization` header (`proxy_set_header Authorization ""`). The scheme is read in any case.
#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_asks_for_credentials_and_checks_every_hash_format() {
    let b = Backend::start(&[]).await;
    let m = manifests(&b, &[]);
    let lines: Vec<String> =
        FORMATS.iter().map(|f| user_line(f, &format!("u-{f}"), &format!("p-{f}"))).collect();
    put_auth_file(&m, &lines);
    put_ingress(&m, "auth", &["/"], &AUTH);
    let s = start(&m, &[]).await;
    let mut w = Ways::new(&s).await;

    let a = w.get("/", &[]).await;
    assert_refused(&a, 401);
    assert_eq!(a.header("www-authenticate"), Some("Basic realm=\"test auth\""));
    assert_refused(
        &w.get("/", &[("authorization", &basic_credentials("user", "pass"))]).await,
        401,
    );
    assert_refused(&w.get("/", &[("authorization", "Bearer p-plain")]).await, 401);

    for format in FORMATS {
        let (user, password) = (format!("u-{format}"), format!("p-{format}"));
        let right = w.get("/x", &[("authorization", &basic_credentials(&user, &password))]).await;
        assert_served(&right);
        let wrong = w.get("/x", &[("authorization", &basic_credentials(&user, "p-wrong"))]).await;
        assert_refused(&wrong, 401);
        let other = w.get("/x", &[("authorization", &basic_credentials(&user, "p-plain"))]).await;
        assert_eq!(other.status, if format == "plain" { 200 } else { 401 }, "{format}");
    }
    let lower = basic_credentials("u-bcrypt", "p-bcrypt").replacen("Basic", "bAsIc", 1);
    assert_served(&w.get("/", &[("authorization", &lower)]).await);
}

// auth.go, `auth-secret-type: auth-map`: one key of the Secret per user, its value the hash.
#[tokio::test(flavor = "multi_thread")]
async fn auth_map_secrets_hold_one_user_per_key() {
    let b = Backend::start(&[]).await;
    let m = manifests(&b, &[]);
    let foo = user_line("bcrypt", "foo", "bar");
    let other = user_line("apr1", "other", "secret");
    let hash = |line: &str| line.split_once(':').unwrap().1.to_string();
    put_secret(&m, "basic-auth", &[("foo", &hash(&foo)), ("other", &hash(&other))]);
    put_ingress(
        &m,
        "auth",
        &["/"],
        &[AUTH.as_slice(), &[("auth-secret-type", "auth-map")]].concat(),
    );
    let s = start(&m, &[]).await;
    let mut w = Ways::new(&s).await;

    assert_served(&w.get("/", &[("authorization", &basic_credentials("foo", "bar"))]).await);
    assert_served(&w.get("/", &[("authorization", &basic_credentials("other", "secret"))]).await);
    assert_refused(
        &w.get("/", &[("authorization", &basic_credentials("foo", "secret"))]).await,
        401,
    );
    assert_refused(&w.get("/", &[]).await, 401);
}

// auth.go's `auth: "foo:"` (401 for foo/bar), and Sluice's reading of a file with lines it
// cannot use (no `:`, an empty hash, a DES hash): each such line is reported and locks out
// its user only; the other users sign in.
#[tokio::test(flavor = "multi_thread")]
async fn unusable_lines_lock_out_their_user_only() {
    let b = Backend::start(&[]).await;
    let m = manifests(&b, &[]);
    let lines = [
        "broken".to_string(),
        "foo:".to_string(),
        user_line("des", "des", "secret"),
        "# a comment".to_string(),
        user_line("bcrypt", "good", "secret"),
    ];
    put_auth_file(&m, &lines);
    put_ingress(&m, "auth", &["/"], &AUTH);
    let s = start(
        &m,
        &[
            ("InvalidSecret", "line 1: no `user:hash` separator"),
            ("InvalidSecret", "line 2: user \"foo\""),
            ("InvalidSecret", "line 3: user \"des\": DES"),
        ],
    )
    .await;
    let mut w = Ways::new(&s).await;

    for (user, password) in [("foo", "bar"), ("foo", ""), ("des", "secret"), ("broken", "")] {
        let a = w.get("/", &[("authorization", &basic_credentials(user, password))]).await;
        assert_refused(&a, 401);
    }
    assert_served(&w.get("/", &[("authorization", &basic_credentials("good", "secret"))]).await);
}

// NGINX reads the file top down and the first line of a user decides: when that line cannot
// be verified (here an empty hash), the user gets 401 whatever a later line of the same user
// says. README: a line Sluice cannot use "locks out that user only".
#[tokio::test(flavor = "multi_thread")]
async fn a_user_whose_first_line_is_unusable_stays_locked_out() {
    let b = Backend::start(&[]).await;
    let m = manifests(&b, &[]);
    put_auth_file(&m, &["foo:".to_string(), user_line("bcrypt", "foo", "bar")]);
    put_ingress(&m, "auth", &["/"], &AUTH);
    let s = start(&m, &[("InvalidSecret", "line 1: user \"foo\"")]).await;
    let mut w = Ways::new(&s).await;
    assert_refused(&w.get("/", &[("authorization", &basic_credentials("foo", "bar"))]).await, 401);
}

// ConfigMap `no-auth-locations` (no_auth_locations.go): paths starting with an entry are not
// asked for credentials, and their `Authorization` header goes to the backend (ingress-nginx
// renders neither `auth_basic` nor the header's removal there). The key replaces the default,
// `/.well-known/acme-challenge`, which is exempt when the key is not set.
#[tokio::test(flavor = "multi_thread")]
async fn no_auth_locations_are_not_asked_for_credentials() {
    let acme = "/.well-known/acme-challenge";
    for (settings, exempt, asked) in
        [(&[("no-auth-locations", "/noauth")][..], "/noauth", acme), (&[][..], acme, "/noauth")]
    {
        let b = Backend::start(&[]).await;
        let m = manifests(&b, settings);
        put_auth_file(&m, &[user_line("bcrypt", "foo", "bar")]);
        put_ingress(&m, "auth", &["/", "/noauth", acme], &AUTH);
        let s = start(&m, &[]).await;
        let mut w = Ways::new(&s).await;
        let credentials = basic_credentials("foo", "bar");

        assert_refused(&w.get("/", &[]).await, 401);
        assert_served(&w.get("/", &[("authorization", &credentials)]).await);
        assert_refused(&w.get(&format!("{asked}/token"), &[]).await, 401);
        let path = format!("{exempt}/token");
        assert_served(&w.get(&path, &[]).await);
        let a = w.get(&path, &[("authorization", &credentials)]).await;
        let expected = Body::Backend { path, authorization: Some(credentials.clone()) };
        assert_eq!((a.status, a.body), (200, expected), "{settings:?}");
    }
}

// ingress-nginx re-syncs the Ingresses of a Secret that changes: a new password works and the
// old one is refused at once, without a restart; the Secret deleted, the routes answer 503
// (never unprotected); restored, they serve again.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_secret_applies_without_restart() {
    let b = Backend::start(&[]).await;
    let m = manifests(&b, &[]);
    put_auth_file(&m, &[user_line("bcrypt", "foo", "old")]);
    put_ingress(&m, "auth", &["/"], &AUTH);
    let s = start(&m, &[]).await;
    let mut w = Ways::new(&s).await;
    let (old, new) = (basic_credentials("foo", "old"), basic_credentials("foo", "new"));
    assert_served(&w.get("/", &[("authorization", &old)]).await);
    assert_refused(&w.get("/", &[("authorization", &new)]).await, 401);

    let g = s.generation().await;
    put_auth_file(&m, &[user_line("sha512-crypt", "foo", "new")]);
    let g = s.wait_generation_after(g).await;
    assert_served(&w.get("/", &[("authorization", &new)]).await);
    assert_refused(&w.get("/", &[("authorization", &old)]).await, 401);

    m.remove("secret-basic-auth.yaml");
    let g = s.wait_generation_after(g).await;
    assert_refused(&w.get("/", &[("authorization", &new)]).await, 503);
    assert_diagnostics(&s, &[("MissingSecret", "Secret default/basic-auth does not exist")]).await;

    put_auth_file(&m, &[user_line("apr1", "foo", "new")]);
    s.wait_generation_after(g).await;
    assert_served(&w.get("/", &[("authorization", &new)]).await);
    assert_diagnostics(&s, &[]).await;
}

// ---------------------------------------------------------------------------------------
// Protection that cannot be applied

// Access annotations that cannot be applied make the Ingress's routes answer 503, with a
// diagnostic naming the annotation: a missing Secret (auth.go), a Secret of another
// namespace and an invalid address list (ingress-nginx's LocationDenied), and, where Sluice differs on purpose, `auth-secret`
// without `auth-type` (ingress-nginx serves unprotected), `auth-type: digest` (no digest in
// Sluice) and an origin list ingress-nginx would read as `*`. Other Ingresses are served.
#[tokio::test(flavor = "multi_thread")]
async fn access_annotations_that_cannot_be_applied_answer_503() {
    let b = Backend::start(&[]).await;
    let m = manifests(&b, &[]);
    put_auth_file(&m, &[user_line("bcrypt", "foo", "bar")]);
    let broken: [(&str, Annotations<'_>, &str, &str); 7] = [
        (
            "missing-secret",
            &[("auth-type", "basic"), ("auth-secret", "something"), ("auth-realm", "test auth")],
            "MissingSecret",
            "Secret default/something does not exist",
        ),
        (
            "other-namespace",
            &[("auth-type", "basic"), ("auth-secret", "kube-system/basic-auth")],
            "InvalidAnnotation",
            "another namespace",
        ),
        ("no-type", &[("auth-secret", "basic-auth")], "InvalidAnnotation", "without auth-type"),
        (
            "digest",
            &[("auth-type", "digest"), ("auth-secret", "basic-auth")],
            "InvalidAnnotation",
            "auth-type: digest",
        ),
        (
            "trailing-comma",
            &[("whitelist-source-range", "10.0.0.0/8,")],
            "InvalidAnnotation",
            "whitelist-source-range",
        ),
        ("bad-entry", &[("denylist-source-range", "ww")], "InvalidAnnotation", "\"ww\""),
        (
            "upper-origin",
            &[("enable-cors", "true"), ("cors-allow-origin", "HTTPS://UPPER.example")],
            "InvalidAnnotation",
            "cors-allow-origin",
        ),
    ];
    for (name, annotations, _, _) in &broken {
        put_ingress(&m, name, &[&format!("/{name}")], annotations);
    }
    put_ingress(&m, "fine", &["/fine"], &[]);
    let expected: Vec<(&str, &str)> = broken.iter().map(|(_, _, r, n)| (*r, *n)).collect();
    let s = start(&m, &expected).await;
    let mut w = Ways::new(&s).await;

    let credentials = basic_credentials("foo", "bar");
    for (name, _, _, _) in &broken {
        let path = format!("/{name}");
        for headers in [&[][..], &[("authorization", credentials.as_str())]] {
            assert_refused(&w.get(&path, headers).await, 503);
        }
        let a = w.get(&path, &[("origin", "HTTPS://UPPER.example")]).await;
        assert_refused(&a, 503);
        assert_eq!(a.cors(), BTreeMap::new(), "{name}: no origin reflected");
    }
    assert_eq!(b.count(), 0, "a route that cannot be protected never reaches the backend");
    assert_served(&w.get("/fine", &[]).await);
}

// ---------------------------------------------------------------------------------------
// Address lists

// ipallowlist.go / ipdenylist.go with the connection's address (127.0.0.1): outside the allow
// list, or in the deny list (checked first), 403 with NGINX's page; `allowlist-source-range`
// wins over its legacy name `whitelist-source-range`. Without `use-forwarded-headers`, an
// `X-Forwarded-For` a client writes changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn address_lists_check_the_connection_address() {
    let b = Backend::start(&[]).await;
    let m = manifests(&b, &[]);
    let cases: [(&str, Annotations<'_>, u16); 7] = [
        ("allow-other", &[("allowlist-source-range", "10.0.0.0/8")], 403),
        ("allow-local", &[("allowlist-source-range", "10.0.0.0/8, 127.0.0.0/8")], 200),
        ("legacy", &[("whitelist-source-range", "127.0.0.1")], 200),
        (
            "both-names",
            &[("allowlist-source-range", "10.0.0.0/8"), ("whitelist-source-range", "127.0.0.1")],
            403,
        ),
        ("deny-local", &[("denylist-source-range", "127.0.0.1")], 403),
        ("deny-other", &[("denylist-source-range", "10.0.0.0/8")], 200),
        (
            "deny-first",
            &[("allowlist-source-range", "127.0.0.1"), ("denylist-source-range", "127.0.0.0/8")],
            403,
        ),
    ];
    for (name, annotations, _) in &cases {
        put_ingress(&m, name, &[&format!("/{name}")], annotations);
    }
    let s = start(&m, &[]).await;
    let mut w = Ways::new(&s).await;

    for (name, _, status) in cases {
        for headers in [&[][..], &[("x-forwarded-for", "10.1.1.1")]] {
            let a = w.get(&format!("/{name}"), headers).await;
            assert_answer(&a, status)
        }
    }
}

// ipdenylist.go: with ConfigMap `use-forwarded-headers: "true"`, the client address is the
// first entry of `X-Forwarded-For` (NGINX's real-IP module, every hop trusted by default),
// and both of its scenarios hold; without the header, the connection's address counts.
#[tokio::test(flavor = "multi_thread")]
async fn address_lists_read_forwarded_addresses_with_use_forwarded_headers() {
    let b = Backend::start(&[]).await;
    let m = manifests(&b, &[("use-forwarded-headers", "true")]);
    put_ingress(&m, "deny", &["/deny"], &[("denylist-source-range", "18.0.0.0/8, 56.0.0.1")]);
    put_ingress(
        &m,
        "both",
        &["/both"],
        &[
            ("denylist-source-range", "18.1.0.0/16, 56.0.0.0/8"),
            ("whitelist-source-range", "18.0.0.0/8, 55.0.0.0/8"),
        ],
    );
    let s = start(&m, &[]).await;
    let mut w = Ways::new(&s).await;

    let cases = [
        ("/deny", Some("18.0.0.1"), 403),
        ("/deny", Some("56.0.0.1"), 403),
        ("/deny", Some("56.0.0.2"), 200),
        ("/deny", Some("56.0.0.2, 18.0.0.1"), 200),
        ("/deny", Some("18.0.0.1, 56.0.0.2"), 403),
        ("/deny", None, 200),
        ("/both", Some("18.1.0.1"), 403),
        ("/both", Some("10.10.10.10"), 403),
        ("/both", Some("18.4.0.1"), 200),
        ("/both", Some("55.55.55.55"), 200),
        ("/both", None, 403),
    ];
    for (path, forwarded, status) in cases {
        let headers: Vec<(&str, &str)> =
            forwarded.map(|f| ("x-forwarded-for", f)).into_iter().collect();
        let a = w.get(path, &headers).await;
        assert_answer(&a, status)
    }
}

// The ConfigMap's `whitelist-source-range` and `denylist-source-range` are the lists of
// Ingresses without the annotation; an annotation replaces the ConfigMap's list (no merge).
// A ConfigMap edit applies live.
#[tokio::test(flavor = "multi_thread")]
async fn config_map_lists_apply_where_no_annotation_replaces_them() {
    let b = Backend::start(&[]).await;
    let m = manifests(&b, &[("whitelist-source-range", "10.0.0.0/8")]);
    put_ingress(&m, "plain", &["/plain"], &[]);
    put_ingress(&m, "own-allow", &["/own-allow"], &[("whitelist-source-range", "127.0.0.1")]);
    put_ingress(&m, "own-deny", &["/own-deny"], &[("denylist-source-range", "10.0.0.0/8")]);
    let s = start(&m, &[]).await;
    let mut w = Ways::new(&s).await;
    assert_refused(&w.get("/plain", &[]).await, 403);
    assert_served(&w.get("/own-allow", &[]).await);
    // Its own deny list does not replace the ConfigMap's allow list.
    assert_refused(&w.get("/own-deny", &[]).await, 403);

    let g = s.generation().await;
    put_config_map(&m, &[("denylist-source-range", "127.0.0.1")]);
    s.wait_generation_after(g).await;
    assert_refused(&w.get("/plain", &[]).await, 403);
    assert_refused(&w.get("/own-allow", &[]).await, 403);
    assert_served(&w.get("/own-deny", &[]).await);
}

// A ConfigMap list that cannot be read makes every route answer 503, those with lists of
// their own too (ingress-nginx fails its reload; Sluice will not serve without the list), and
// is reported; fixed, the routes serve again without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_config_map_list_fails_every_route_closed() {
    let b = Backend::start(&[]).await;
    let m = manifests(&b, &[("whitelist-source-range", "10.0.0.0/8, ww")]);
    put_ingress(&m, "plain", &["/plain"], &[]);
    put_ingress(&m, "own", &["/own"], &[("whitelist-source-range", "127.0.0.1")]);
    let s = start(&m, &[("InvalidConfigMapKey", "whitelist-source-range")]).await;
    let mut w = Ways::new(&s).await;
    for path in ["/plain", "/own"] {
        assert_refused(&w.get(path, &[]).await, 503);
    }
    assert_eq!(b.count(), 0);

    let g = s.generation().await;
    put_config_map(&m, &[("whitelist-source-range", "10.0.0.0/8")]);
    s.wait_generation_after(g).await;
    assert_diagnostics(&s, &[]).await;
    assert_refused(&w.get("/plain", &[]).await, 403);
    assert_served(&w.get("/own", &[]).await);
}

// ---------------------------------------------------------------------------------------
// satisfy

/// Basic authentication with an allow list of `allowed` and `satisfy`, if any.
fn guarded<'a>(allowed: &'a str, satisfy: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut a: Vec<(&'a str, &'a str)> = AUTH.to_vec();
    a.push(("whitelist-source-range", allowed));
    a.extend(satisfy.map(|s| ("satisfy", s)));
    a
}

// NGINX's access phase: with `satisfy: any`, an address the allow list admits, or the right
// password, suffices; when neither does, 401 wins over 403. With `satisfy: all` (the default,
// or set) both must pass, and the address lists answer first (403). The backend never gets
// the `Authorization` header.
#[tokio::test(flavor = "multi_thread")]
async fn satisfy_combines_address_lists_and_passwords() {
    let b = Backend::start(&[]).await;
    let m = manifests(&b, &[]);
    put_auth_file(&m, &[user_line("bcrypt", "foo", "bar")]);
    put_ingress(&m, "any-lan", &["/any-lan"], &guarded("127.0.0.0/8", Some("any")));
    put_ingress(&m, "any-wan", &["/any-wan"], &guarded("10.0.0.0/8", Some("any")));
    put_ingress(&m, "all-lan", &["/all-lan"], &guarded("127.0.0.0/8", None));
    put_ingress(&m, "all-wan", &["/all-wan"], &guarded("10.0.0.0/8", Some("all")));
    let s = start(&m, &[]).await;
    let mut w = Ways::new(&s).await;

    let (right, wrong) = (basic_credentials("foo", "bar"), basic_credentials("foo", "nope"));
    // (path, status without credentials, with the wrong password, with the right one)
    let cases = [
        ("/any-lan", 200, 200, 200),
        ("/any-wan", 401, 401, 200),
        ("/all-lan", 401, 401, 200),
        ("/all-wan", 403, 403, 403),
    ];
    for (path, none, with_wrong, with_right) in cases {
        for (headers, status) in [
            (&[][..], none),
            (&[("authorization", wrong.as_str())][..], with_wrong),
            (&[("authorization", right.as_str())][..], with_right),
        ] {
            let a = w.get(path, headers).await;
            assert_answer(&a, status)
        }
    }
}

// NGINX's access module says neither yes nor no for an address that no rule matches (a
// deny-only list renders no `allow` and no `deny all`): under `satisfy: any`, a client outside
// the deny list must still give the password (401), auth_basic being the only handler that
// can say yes. Both with the annotation and with the ConfigMap's `denylist-source-range`.
#[tokio::test(flavor = "multi_thread")]
async fn satisfy_any_with_only_a_deny_list_still_asks_for_the_password() {
    let b = Backend::start(&[]).await;
    let m = manifests(&b, &[("denylist-source-range", "192.0.2.0/24")]);
    put_auth_file(&m, &[user_line("bcrypt", "foo", "bar")]);
    let any = [AUTH.as_slice(), &[("satisfy", "any")]].concat();
    put_ingress(&m, "config-map", &["/config-map"], &any);
    let own = [any.as_slice(), &[("denylist-source-range", "10.0.0.0/8")]].concat();
    put_ingress(&m, "annotation", &["/annotation"], &own);
    let s = start(&m, &[]).await;
    let mut w = Ways::new(&s).await;
    for path in ["/annotation", "/config-map"] {
        assert_served(&w.get(path, &[("authorization", &basic_credentials("foo", "bar"))]).await);
        assert_refused(&w.get(path, &[]).await, 401);
    }
}

// ---------------------------------------------------------------------------------------
// Block lists

// global_access_block.go, `block-cidrs`: with the e2e's private ranges, a loopback client is
// served; with `127.0.0.0/8` (a live ConfigMap edit), it is refused everywhere: an Ingress
// without annotations, one with an allow list admitting it (where NGINX would drop the block,
// a difference Sluice documents), a CORS preflight (checked before it), a path no rule has.
#[tokio::test(flavor = "multi_thread")]
async fn block_cidrs_refuse_the_client_on_every_route() {
    let b = Backend::start(&[]).await;
    let m = manifests(&b, &[("block-cidrs", "172.16.0.0/12,192.168.0.0/16,10.0.0.0/8")]);
    put_ingress(&m, "plain", &["/plain"], &[]);
    put_ingress(&m, "allowed", &["/allowed"], &[("allowlist-source-range", "127.0.0.1")]);
    put_ingress(&m, "cors", &["/cors"], &[("enable-cors", "true")]);
    let s = start(&m, &[]).await;
    let mut w = Ways::new(&s).await;
    for path in ["/plain", "/allowed", "/cors"] {
        assert_served(&w.get(path, &[]).await);
    }

    let g = s.generation().await;
    put_config_map(&m, &[("block-cidrs", "10.0.0.0/8, 127.0.0.0/8")]);
    s.wait_generation_after(g).await;
    let before = b.count();
    for path in ["/plain", "/allowed", "/cors", "/nothing"] {
        assert_refused(&w.get(path, &[]).await, 403);
    }
    let preflight = w.options("/cors", &[("origin", "https://a.example")]).await;
    assert_refused(&preflight, 403);
    assert_eq!(b.count(), before);
}

// global_access_block.go, `block-user-agents` and `block-referers`: NGINX `map` keys, `~*` a
// case-insensitive regex search, a plain string the whole value in any case. Blocked requests
// are refused before anything else, a CORS preflight included.
#[tokio::test(flavor = "multi_thread")]
async fn block_user_agents_and_referers() {
    let b = Backend::start(&[]).await;
    let m = manifests(
        &b,
        &[
            ("block-user-agents", r"~*chrome\/68\.0\.3440\.106\ safari\/537\.36,AlphaBot"),
            ("block-referers", r"~*example\.com,qwerty"),
        ],
    );
    put_ingress(&m, "app", &["/"], &[("enable-cors", "true")]);
    let s = start(&m, &[]).await;
    let mut w = Ways::new(&s).await;

    let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/68.0.3440.106 Safari/537.36";
    let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 11_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/11.0 Mobile/15E148 Safari/604.1";
    let cases = [
        ("user-agent", chrome, 403),
        ("user-agent", "AlphaBot", 403),
        ("user-agent", "alphabot", 403),
        ("user-agent", "AlphaBot/2.0", 200),
        ("user-agent", iphone, 200),
        ("referer", "example.com", 403),
        ("referer", "https://www.EXAMPLE.com/page", 403),
        ("referer", "qwerty", 403),
        ("referer", "qwerty123", 200),
        ("referer", "https://example.org/", 200),
    ];
    for (name, value, status) in cases {
        let a = w.get("/", &[(name, value)]).await;
        assert_answer(&a, status)
    }
    let before = b.count();
    let a = w.options("/", &[("origin", "https://a.example"), ("user-agent", "AlphaBot")]).await;
    assert_refused(&a, 403);
    assert_eq!(b.count(), before);
}

// ---------------------------------------------------------------------------------------
// CORS

// cors.go 1, 11, 12: `enable-cors` alone allows every origin: every answer, with an `Origin`
// or without, carries `Access-Control-Allow-Origin: *` (never the origin sent) and the default
// headers; an `OPTIONS` is answered 204 by Sluice with those headers, no `Content-Type` nor
// `Content-Length`, and the backend is not called. A route without CORS gets none of it.
#[tokio::test(flavor = "multi_thread")]
async fn cors_defaults_allow_every_origin_and_answer_preflights() {
    let b = Backend::start(&[]).await;
    let m = manifests(&b, &[]);
    put_ingress(&m, "cors", &["/cors"], &[("enable-cors", "true")]);
    put_ingress(&m, "star", &["/star"], &[("enable-cors", "true"), ("cors-allow-origin", "*")]);
    put_ingress(&m, "plain", &["/plain"], &[]);
    let s = start(&m, &[]).await;
    let mut w = Ways::new(&s).await;

    for path in ["/cors", "/star"] {
        for headers in [&[][..], &[("origin", "https://any.example")]] {
            let a = w.get(path, headers).await;
            assert_served(&a);
            assert_eq!(a.cors(), default_cors("*"), "{path} {headers:?}");
        }
        let before = b.count();
        let a = w.options(path, &[("origin", "https://any.example")]).await;
        assert_eq!(a.status, 204, "{a:#?}");
        assert_eq!(a.headers, default_cors("*"), "{path}: no Content-Type nor Content-Length");
        assert_eq!(a.body, Body::Local(String::new()));
        assert_eq!(b.count(), before, "{path}: the preflight reached the backend");
    }

    let a = w.get("/plain", &[("origin", "https://any.example")]).await;
    assert_served(&a);
    assert_eq!(a.cors(), BTreeMap::new());
    let a = w.options("/plain", &[("origin", "https://any.example")]).await;
    assert!(a.proxied() && a.cors().is_empty(), "{a:#?}");
}

// cors.go 5, 8–10, 13–25: an explicit list echoes an allowed `Origin` (compared ignoring
// case) and gives others, and requests without one, no CORS header at all; ports must match
// exactly; `*.` stands for exactly one DNS label; an entry without a scheme is left out
// (reported) while the others work; any lower-case scheme is allowed; `*` among entries, or a
// blank value, allows every origin. Sluice compares origins whole (ingress-nginx's regex,
// anchored at the end only, would let `xtest://localhost` pass for `test://localhost`). An
// `OPTIONS` from an origin not allowed is proxied to the backend.
#[tokio::test(flavor = "multi_thread")]
async fn cors_origin_lists_echo_only_the_origins_they_allow() {
    let b = Backend::start(&[]).await;
    let m = manifests(&b, &[]);
    let lists = [
        ("s5", "https://origin.cors.com:8080"),
        ("s8", "https://origin.cors.com:8080, https://origin2.cors.com"),
        ("s9", "http://origin2.cors.com, https://origin.com"),
        ("s10", "origin.cors.com:8080, https://origin2.cors.com, https://origin.com"),
        ("s13", "*, foo.bar.com"),
        ("s14", "https://foo.bar.com"),
        ("s15", "http://origin.cors.com:8080, http://origin.com:8080"),
        ("s16", "https://origin2.cors.com, http://origin.com"),
        ("s18", "http://*.origin.cors.com, http://*.origin.com:8080"),
        ("s20", "http://origin.cors.com:8080, http://*.origin.com:8080"),
        ("s23", "      "),
        ("s24", "https://origin-123.cors.com:8080,   ,https://origin-321.cors.com:8080,"),
        ("s25", "test://localhost, tauri://localhost:3000"),
    ];
    for (name, list) in lists {
        put_ingress(
            &m,
            name,
            &[&format!("/{name}")],
            &[("enable-cors", "true"), ("cors-allow-origin", list)],
        );
    }
    let s = start(&m, &[("InvalidAnnotation", "\"origin.cors.com:8080\" has no scheme")]).await;
    let mut w = Ways::new(&s).await;

    // (path, Origin, the Access-Control-Allow-Origin expected, if any)
    let cases = [
        ("/s5", "https://origin.cors.com:8080", Some("https://origin.cors.com:8080")),
        ("/s5", "HTTPS://Origin.CORS.com:8080", Some("HTTPS://Origin.CORS.com:8080")),
        ("/s5", "https://origin.cors.com", None),
        ("/s8", "https://origin.cors.com:8080", Some("https://origin.cors.com:8080")),
        ("/s8", "https://origin2.cors.com", Some("https://origin2.cors.com")),
        ("/s9", "http://no.origin.com", None),
        ("/s10", "origin.cors.com:8080", None),
        ("/s10", "https://origin2.cors.com", Some("https://origin2.cors.com")),
        ("/s10", "https://origin.com", Some("https://origin.com")),
        ("/s13", "http://anything.example", Some("*")),
        ("/s14", "https://fooxbar.com", None),
        ("/s15", "http://origin.com:8080", Some("http://origin.com:8080")),
        ("/s15", "http://origin.com", None),
        ("/s16", "http://origin.com:8080", None),
        ("/s18", "http://foo.origin.cors.com", Some("http://foo.origin.cors.com")),
        ("/s18", "http://bar-foo.origin.cors.com", Some("http://bar-foo.origin.cors.com")),
        ("/s18", "http://bar.foo.origin.cors.com", None),
        ("/s18", "http://origin.cors.com", None),
        ("/s20", "http://abc.origin.com:8080", Some("http://abc.origin.com:8080")),
        ("/s20", "http://abc.origin.com", None),
        ("/s20", "http://origin.com:8080", None),
        ("/s20", "http://bar.origin.com:8080", Some("http://bar.origin.com:8080")),
        ("/s23", "http://book.origin.com", Some("*")),
        ("/s23", "test.origin.com", Some("*")),
        ("/s24", "https://origin-123.cors.com:8080", Some("https://origin-123.cors.com:8080")),
        ("/s24", "https://origin-321.cors.com:8080", Some("https://origin-321.cors.com:8080")),
        ("/s24", "https://unknown.cors.com:8080", None),
        ("/s25", "test://localhost", Some("test://localhost")),
        ("/s25", "tauri://localhost:3000", Some("tauri://localhost:3000")),
        ("/s25", "xtest://localhost", None),
    ];
    for (path, origin, allowed) in cases {
        let a = w.get(path, &[("origin", origin)]).await;
        assert_served(&a);
        let expected = allowed.map(default_cors).unwrap_or_default();
        assert_eq!(a.cors(), expected, "{path} Origin: {origin}");
    }
    // No Origin: no CORS header from an explicit list.
    assert_eq!(w.get("/s9", &[]).await.cors(), BTreeMap::new());

    let before = b.count();
    let a = w.options("/s9", &[("origin", "http://no.origin.com")]).await;
    assert!(a.proxied() && a.cors().is_empty(), "{a:#?}");
    assert_eq!(b.count(), before + 2, "both OPTIONS reached the backend");
    let a = w.options("/s9", &[("origin", "https://origin.com")]).await;
    assert_eq!((a.status, a.headers), (204, default_cors("https://origin.com")));
    assert_eq!(b.count(), before + 2, "an allowed preflight is answered by Sluice");
}

// cors.go 2–4, 6, 7: `cors-allow-methods`, `cors-allow-headers`, `cors-expose-headers` (used
// verbatim), `cors-max-age` and `cors-allow-credentials: "false"` (no credentials header) shape
// the headers of answers and preflights; invalid values keep the defaults and are reported
// (cors/main_test.go's invalid set).
#[tokio::test(flavor = "multi_thread")]
async fn cors_settings_shape_the_headers() {
    let b = Backend::start(&[]).await;
    let m = manifests(&b, &[]);
    let custom = [
        ("enable-cors", "true"),
        ("cors-allow-methods", "POST, GET"),
        ("cors-allow-headers", "DNT, User-Agent"),
        ("cors-expose-headers", "X-CustomResponseHeader, X-CustomSecondHeader"),
        ("cors-max-age", "200"),
        ("cors-allow-credentials", "false"),
    ];
    put_ingress(&m, "custom", &["/custom"], &custom);
    let invalid = [
        ("enable-cors", "true"),
        ("cors-allow-methods", "GET, PATCH, $nginx"),
        ("cors-allow-headers", "@alright, #ingress"),
        ("cors-expose-headers", "X-Ok, @bad"),
        ("cors-max-age", "abcd"),
        ("cors-allow-credentials", "no"),
    ];
    put_ingress(&m, "invalid", &["/invalid"], &invalid);
    let reported: Vec<(&str, &str)> =
        invalid[1..].iter().map(|(k, _)| ("InvalidAnnotation", *k)).collect();
    let s = start(&m, &reported).await;
    let mut w = Ways::new(&s).await;

    let expected = header_map(&[
        ("access-control-allow-origin", "*"),
        ("access-control-allow-methods", "POST, GET"),
        ("access-control-allow-headers", "DNT, User-Agent"),
        ("access-control-expose-headers", "X-CustomResponseHeader, X-CustomSecondHeader"),
        ("access-control-max-age", "200"),
    ]);
    let a = w.get("/custom", &[("origin", "https://a.example")]).await;
    assert_served(&a);
    assert_eq!(a.cors(), expected);
    let a = w.options("/custom", &[("origin", "https://a.example")]).await;
    assert_eq!((a.status, a.headers), (204, expected));

    let a = w.get("/invalid", &[("origin", "https://a.example")]).await;
    assert_served(&a);
    assert_eq!(a.cors(), default_cors("*"));
}

// headers-more's `more_set_headers`: the CORS headers replace the backend's own of the same
// names (one value each); headers Sluice does not set (no expose list) pass, and an origin not
// allowed gets the backend's headers untouched.
#[tokio::test(flavor = "multi_thread")]
async fn cors_headers_replace_the_backends_own() {
    let b = Backend::start(&[
        ("Access-Control-Allow-Origin", "https://backend.example"),
        ("Access-Control-Max-Age", "5"),
        ("Access-Control-Expose-Headers", "X-Backend"),
    ])
    .await;
    let m = manifests(&b, &[]);
    put_ingress(
        &m,
        "cors",
        &["/"],
        &[("enable-cors", "true"), ("cors-allow-origin", "https://a.example")],
    );
    let s = start(&m, &[]).await;
    let mut w = Ways::new(&s).await;

    let a = w.get("/", &[("origin", "https://a.example")]).await;
    assert_served(&a);
    let mut expected = default_cors("https://a.example");
    expected.insert("access-control-expose-headers".into(), vec!["X-Backend".into()]);
    assert_eq!(a.cors(), expected);

    let a = w.get("/", &[("origin", "https://b.example")]).await;
    assert_served(&a);
    let backend = header_map(&[
        ("access-control-allow-origin", "https://backend.example"),
        ("access-control-max-age", "5"),
        ("access-control-expose-headers", "X-Backend"),
    ]);
    assert_eq!(a.cors(), backend);
}

// auth.go's 401 with CORS: refusals of an allowed origin carry the CORS headers (401 and 403
// alike); an allowed preflight is answered 204 before authentication and the address lists,
// while one from another origin goes through them.
#[tokio::test(flavor = "multi_thread")]
async fn cors_headers_are_on_refusals_and_preflights_come_first() {
    let b = Backend::start(&[]).await;
    let m = manifests(&b, &[]);
    put_auth_file(&m, &[user_line("bcrypt", "foo", "bar")]);
    put_ingress(&m, "auth", &["/auth"], &[AUTH.as_slice(), &[("enable-cors", "true")]].concat());
    put_ingress(
        &m,
        "listed",
        &["/listed"],
        &[
            ("whitelist-source-range", "10.0.0.0/8"),
            ("enable-cors", "true"),
            ("cors-allow-origin", "https://a.example"),
        ],
    );
    let s = start(&m, &[]).await;
    let mut w = Ways::new(&s).await;

    let a = w.get("/auth", &[]).await;
    assert_refused(&a, 401);
    assert_eq!(a.cors(), default_cors("*"));
    let a = w.get("/auth", &[("authorization", &basic_credentials("foo", "bar"))]).await;
    assert_served(&a);
    assert_eq!(a.cors(), default_cors("*"));

    let origin = [("origin", "https://a.example")];
    let a = w.get("/listed", &origin).await;
    assert_refused(&a, 403);
    assert_eq!(a.cors(), default_cors("https://a.example"));
    let a = w.get("/listed", &[("origin", "https://b.example")]).await;
    assert_refused(&a, 403);
    assert_eq!(a.cors(), BTreeMap::new());

    let before = b.count();
    let a = w.options("/auth", &[("origin", "https://b.example")]).await;
    assert_eq!((a.status, a.headers), (204, default_cors("*")));
    let a = w.options("/listed", &origin).await;
    assert_eq!((a.status, a.headers), (204, default_cors("https://a.example")));
    assert_eq!(b.count(), before);
    assert_refused(&w.options("/listed", &[("origin", "https://b.example")]).await, 403);
}
