//! The redirect family end to end, against the real binary and real echo backends, with
//! ingress-nginx's semantics (the scenarios of its e2e suites `redirect.go`, `approot.go`,
//! `fromtowwwredirect.go` and `alias.go`, and what `nginx.tmpl`, `ngx_srv_redirect.lua` and
//! `BuildRedirects` do):
//!
//! - `permanent-redirect` and `permanent-redirect-code`, `temporal-redirect` and
//!   `temporal-redirect-code` (which wins when both are set), out-of-range codes (the default
//!   kept, a diagnostic in `/debug/config`), `$request_uri` in the URL, a URL starting with `/`
//!   made absolute, and that these come before the HTTPS redirect;
//! - `app-root`: `/` redirected (302) to the app root on the Host as sent, for the whole host;
//!   like relative redirect URLs, on the connection's scheme whatever a load balancer forwards;
//! - `from-to-www-redirect`: both directions, `http-redirect-code`, the `Location` as
//!   `ngx_srv_redirect.lua` builds it, skipped when an Ingress defines the other name, and the
//!   certificate the other name gets over HTTPS;
//! - `server-alias`: the same rules on other names, never taking another Ingress's host nor
//!   the name a www redirect makes, and the certificate an alias gets over HTTPS;
//! - changes: an Ingress created for the other `www` name or an alias takes it over (and, in a
//!   test ignored until the incremental update is fixed, gives it back when deleted).
//!
//! Every plain-HTTP request is sent three ways, and the three answers must be the same: an
//! HTTP/1.1 keep-alive GET (the fast path), the same GET over h2c, and a POST with a chunked
//! body (both on the general, hyper path). The two paths run one life cycle; this is what shows it.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::tls::{Ca, ClientOpts, Pem, tls_secret};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

const PERMANENT: &str = "nginx.ingress.kubernetes.io/permanent-redirect";
const PERMANENT_CODE: &str = "nginx.ingress.kubernetes.io/permanent-redirect-code";
const TEMPORAL: &str = "nginx.ingress.kubernetes.io/temporal-redirect";
const TEMPORAL_CODE: &str = "nginx.ingress.kubernetes.io/temporal-redirect-code";
const APP_ROOT: &str = "nginx.ingress.kubernetes.io/app-root";
const WWW: &str = "nginx.ingress.kubernetes.io/from-to-www-redirect";
const ALIAS: &str = "nginx.ingress.kubernetes.io/server-alias";

/// The subject CN of the certificate Sluice generates at start-up (the default certificate).
const FAKE: &str = "Sluice Ingress Controller Fake Certificate";
/// The ConfigMap `--configmap` names in these tests.
const CONFIGMAP: &str = "default/sluice-config";

// ---------------------------------------------------------------------------------------
// Set-up helpers

/// A manifests directory with the `sluice` IngressClass and a Service (with an echo backend
/// of the same name) for each of `backends`.
async fn manifests(backends: &[&str]) -> Manifests {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    for name in backends {
        let addr = echo(name).await;
        m.write(&format!("svc-{name}.yaml"), &service(name, &[addr]));
    }
    m
}

/// An Ingress made by [`ingress`] with a `creationTimestamp` (which decides, as in
/// ingress-nginx, the oldest Ingress of a host).
fn created(ingress: String, at: &str) -> String {
    ingress.replacen(
        "  namespace: default\n",
        &format!("  namespace: default\n  creationTimestamp: \"{at}\"\n"),
        1,
    )
}

/// The ConfigMap [`CONFIGMAP`] with `data`.
fn configmap(data: &[(&str, &str)]) -> String {
    let mut s = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sluice-config\n  namespace: default\ndata:\n".to_string();
    for (k, v) in data {
        s.push_str(&format!("  {k}: {v:?}\n"));
    }
    s
}

/// Writes the `kubernetes.io/tls` Secret `name`.
fn put_secret(m: &Manifests, name: &str, pem: &Pem) {
    m.write(&format!("secret-{name}.yaml"), &tls_secret(name, pem));
}

/// The messages of `/debug/config`'s diagnostics with `reason` about the Ingress `ingress`.
async fn diagnostics(s: &Sluice, ingress: &str, reason: &str) -> Vec<String> {
    let config = s.config().await;
    config["diagnostics"]
        .as_array()
        .expect("a diagnostics list")
        .iter()
        .filter(|d| d["reason"] == reason && d["object"]["name"] == ingress)
        .map(|d| d["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Asserts that a diagnostic with `reason` about the Ingress `ingress` mentions every one of
/// `needles`.
async fn assert_diagnostic(s: &Sluice, ingress: &str, reason: &str, needles: &[&str]) {
    let found = diagnostics(s, ingress, reason).await;
    assert!(
        found.iter().any(|m| needles.iter().all(|n| m.contains(n))),
        "no {reason} diagnostic of {ingress} mentioning {needles:?} in {found:#?}\n{:#}",
        s.config().await["diagnostics"]
    );
}

// ---------------------------------------------------------------------------------------
// Client helpers

/// What a client saw of one answer: enough to tell any two answers of these tests apart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    /// The `Location` header, if any.
    location: Option<String>,
    /// When a backend answered: its name, and the path and `Host` it was sent.
    upstream: Option<(String, String, String)>,
}

impl Answer {
    /// What a reply showed. Every answer, local or proxied, carries `Server: sluice`.
    fn of(r: &Reply) -> Answer {
        assert_eq!(r.headers.get("server").map(|v| v.as_bytes()), Some(&b"sluice"[..]), "{r:?}");
        let upstream = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .filter(|doc| doc["name"].is_string())
            .map(|doc| {
                let field = |k: &str| doc[k].as_str().unwrap_or_default().to_string();
                (field("name"), field("path"), field("host"))
            });
        let location = r.headers.get("location").map(|l| l.to_str().unwrap().to_string());
        Answer { status: r.status.as_u16(), location, upstream }
    }
}

/// A local redirect with `status` to `location`.
fn redirect(status: u16, location: &str) -> Answer {
    Answer { status, location: Some(location.to_string()), upstream: None }
}

/// A 200 from the echo backend `backend`, which was sent `path` with `Host: host`.
fn proxied(backend: &str, path: &str, host: &str) -> Answer {
    Answer {
        status: 200,
        location: None,
        upstream: Some((backend.to_string(), path.to_string(), host.to_string())),
    }
}

/// A local answer with `status` and no `Location` (the built-in 404).
fn local(status: u16) -> Answer {
    Answer { status, location: None, upstream: None }
}

/// The three ways a plain-HTTP request reaches Sluice's life cycle: an HTTP/1.1 keep-alive GET
/// (carried by the fast path), the same GET over h2c, and a POST with a chunked body (both
/// carried by the general path).
struct Ways {
    http: SocketAddr,
    /// Keep-alive HTTP/1.1: every GET of a test after the first reuses a connection.
    h1: Client<HttpConnector, Full<Bytes>>,
    /// One h2c (prior knowledge) connection; each request has its own `:authority`.
    h2: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
}

impl Ways {
    async fn new(s: &Sluice) -> Ways {
        let tcp = tokio::net::TcpStream::connect(s.http).await.unwrap();
        let (h2, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("an h2c handshake");
        tokio::spawn(conn);
        Ways { http: s.http, h1: client(), h2 }
    }

    /// `GET path` with Host `host`, the three ways: asserts they give the same answer and
    /// returns it.
    async fn get(&mut self, host: &str, path: &str) -> Answer {
        self.get_with(host, path, &[]).await
    }

    /// [`Ways::get`] with extra request headers.
    async fn get_with(&mut self, host: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let url = format!("http://{}{path}", self.http);
        let with_headers = |mut req: http::Request<Full<Bytes>>| {
            for (k, v) in headers {
                req.headers_mut().insert(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(v).unwrap(),
                );
            }
            req
        };

        let fast = send(&self.h1, with_headers(request("GET", &url, Some(host), Bytes::new())));
        let fast = Answer::of(&fast.await);

        // A fresh connection: an answer given without reading the body may close it.
        let post = chunked_request("POST", &url, Some(host), Bytes::from_static(b"a request body"));
        let post = Answer::of(&send(&client(), with_headers(post)).await);

        // h2c: the host travels as `:authority`.
        let mut h2 = http::Request::get(format!("http://{host}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        h2 = with_headers(h2);
        self.h2.ready().await.expect("the h2c connection stays open");
        let resp = tokio::time::timeout(WAIT, self.h2.send_request(h2))
            .await
            .expect("no timeout")
            .expect("an h2c response");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("a whole h2c body").to_bytes();
        let h2c = Answer::of(&Reply { status: parts.status, headers: parts.headers, body });

        assert_eq!(fast, h2c, "{host}{path}: the fast path (GET) and h2c answer alike");
        assert_eq!(fast, post, "{host}{path}: the fast path (GET) and a POST answer alike");
        fast
    }
}

/// `GET path` over HTTPS with server name and Host `host`, over HTTP/1.1 and over h2 (ALPN):
/// asserts both answer alike and present the same certificate; returns the answer and the
/// certificate's subject CN.
async fn https_get(s: &Sluice, host: &str, path: &str) -> (Answer, String) {
    let mut seen = Vec::new();
    for opts in [ClientOpts::sni(host), ClientOpts::sni(host).h2()] {
        let h2 = !opts.alpn.is_empty();
        let mut req = http::Request::get(format!("https://{host}{path}"));
        if !h2 {
            req = req.header("host", host);
        }
        let req = req.body(Full::new(Bytes::new())).unwrap();
        let (reply, cert) = tls::request(s.https, &opts, req).await.expect("an HTTPS exchange");
        assert_eq!(cert.alpn.as_deref() == Some(b"h2"), h2, "ALPN as offered");
        seen.push((Answer::of(&reply), cert.cn));
    }
    assert_eq!(seen[0], seen[1], "https://{host}{path}: HTTP/1.1 and h2 answer alike");
    seen.swap_remove(0)
}

// ---------------------------------------------------------------------------------------
// permanent-redirect, temporal-redirect

// redirect.go: `permanent-redirect` answers 301 with `Location` exactly the URL (`return 301
// <url>` in the location), and `permanent-redirect-code` changes the status. The redirect is
// the Ingress's location's: another Ingress's path on the same host is proxied, and a path no
// Ingress defines gets the 404 of the host's default location. `return` comes before
// `proxy_pass`, so a redirect-only Ingress whose Service does not exist still redirects.
#[tokio::test(flavor = "multi_thread")]
async fn permanent_redirect_answers_with_the_url_as_written() {
    let m = manifests(&["app"]).await;
    let url = "http://redirect.example.com";
    let ingresses = [
        ingress("moved", "moved.example.com", &[("/old", "Prefix", "app")], &[(PERMANENT, url)]),
        ingress("kept", "moved.example.com", &[("/new", "Prefix", "app")], &[]),
        ingress(
            "custom",
            "custom.example.com",
            &[("/", "Prefix", "app")],
            &[(PERMANENT, url), (PERMANENT_CODE, "308")],
        ),
        ingress("nosvc", "nosvc.example.com", &[("/", "Prefix", "missing")], &[(PERMANENT, url)]),
    ];
    m.write("ing.yaml", &ingresses.join("---\n"));
    let s = Sluice::start(m.path(), &[]);
    let mut ways = Ways::new(&s).await;

    assert_eq!(ways.get("moved.example.com", "/old").await, redirect(301, url));
    // The URL as written: neither the path nor the query is added to it.
    assert_eq!(ways.get("moved.example.com", "/old/deeper?q=1").await, redirect(301, url));
    assert_eq!(
        ways.get("moved.example.com", "/new/x").await,
        proxied("app", "/new/x", "moved.example.com")
    );
    assert_eq!(ways.get("moved.example.com", "/elsewhere").await, local(404));
    assert_eq!(ways.get("custom.example.com", "/any/path").await, redirect(308, url));
    assert_eq!(ways.get("nosvc.example.com", "/x").await, redirect(301, url));
}

// nginx.tmpl writes the URL into `return`, so NGINX fills in its variables per request
// (`$request_uri`: the path and query as sent); a URL starting with `/` is made absolute by
// NGINX with the request's scheme and host (lower case, without the port: ingress-nginx sets
// `port_in_redirect off`).
#[tokio::test(flavor = "multi_thread")]
async fn redirect_urls_take_request_variables_and_relative_urls_become_absolute() {
    let m = manifests(&["app"]).await;
    let ingresses = [
        ingress(
            "uri",
            "uri.example.com",
            &[("/", "Prefix", "app")],
            &[(PERMANENT, "https://new.example.com$request_uri")],
        ),
        ingress(
            "relative",
            "rel.example.com",
            &[("/", "Prefix", "app")],
            &[(TEMPORAL, "/landing"), (TEMPORAL_CODE, "307")],
        ),
    ];
    m.write("ing.yaml", &ingresses.join("---\n"));
    let s = Sluice::start(m.path(), &[]);
    let mut ways = Ways::new(&s).await;

    assert_eq!(
        ways.get("uri.example.com", "/a/b?x=1&y=two").await,
        redirect(301, "https://new.example.com/a/b?x=1&y=two")
    );
    assert_eq!(ways.get("uri.example.com", "/").await, redirect(301, "https://new.example.com/"));
    assert_eq!(
        ways.get("rel.example.com", "/x?y=1").await,
        redirect(307, "http://rel.example.com/landing")
    );
    assert_eq!(
        ways.get("Rel.Example.com:8080", "/x").await,
        redirect(307, "http://rel.example.com/landing")
    );
}

// With `use-port-in-redirects`, nginx.tmpl sets `port_in_redirect on` in the location: the
// absolute URL NGINX makes of a relative one names the port the client connected to (not
// the Host's).
#[tokio::test(flavor = "multi_thread")]
async fn relative_redirect_urls_name_the_port_with_use_port_in_redirects() {
    let m = manifests(&["app"]).await;
    let ported =
        [(PERMANENT, "/landing"), ("nginx.ingress.kubernetes.io/use-port-in-redirects", "true")];
    m.write(
        "ing.yaml",
        &ingress("relative", "rel.example.com", &[("/", "Prefix", "app")], &ported),
    );
    let s = Sluice::start(m.path(), &[]);
    let mut ways = Ways::new(&s).await;

    let port = s.http.port();
    assert_eq!(
        ways.get("rel.example.com:8080", "/x").await,
        redirect(301, &format!("http://rel.example.com:{port}/landing"))
    );
}

// NGINX's `$scheme`, and the scheme NGINX gives a relative `return` URL, are the
// connection's: with `use-forwarded-headers`, a load balancer's `X-Forwarded-Proto: https`
// changes neither (it becomes `$pass_access_scheme`, what backends are told). So app-root's
// `$scheme://$http_host<app-root>` and a relative redirect stay `http` on plain HTTP, while
// the www redirect (ngx_srv_redirect.lua reads the header itself) follows the header.
#[tokio::test(flavor = "multi_thread")]
async fn app_root_and_relative_redirects_keep_the_connection_scheme_behind_a_load_balancer() {
    let m = manifests(&["app"]).await;
    m.write("cm.yaml", &configmap(&[("use-forwarded-headers", "true")]));
    let ingresses = [
        ingress("root", "root.example.com", &[("/", "Prefix", "app")], &[(APP_ROOT, "/app")]),
        ingress("rel", "rel.example.com", &[("/", "Prefix", "app")], &[(PERMANENT, "/landing")]),
        ingress("apex", "example.com", &[("/", "Prefix", "app")], &[(WWW, "true")]),
    ];
    m.write("ing.yaml", &ingresses.join("---\n"));
    let s = Sluice::start(m.path(), &["--configmap", CONFIGMAP]);
    let mut ways = Ways::new(&s).await;
    let https = [("x-forwarded-proto", "https")];

    assert_eq!(
        ways.get_with("root.example.com", "/", &https).await,
        redirect(302, "http://root.example.com/app")
    );
    assert_eq!(
        ways.get_with("rel.example.com", "/x", &https).await,
        redirect(301, "http://rel.example.com/landing")
    );
    assert_eq!(
        ways.get_with("www.example.com", "/x", &https).await,
        redirect(308, &format!("https://example.com:{}/x", s.http.port()))
    );
}

// redirect.go's parser: `temporal-redirect` answers 302, `temporal-redirect-code` changes it,
// and when both annotations are set the temporal redirect wins (it is read first).
#[tokio::test(flavor = "multi_thread")]
async fn temporal_redirect_answers_302_and_wins_over_permanent_redirect() {
    let m = manifests(&["app"]).await;
    let ingresses = [
        ingress(
            "temp",
            "temp.example.com",
            &[("/", "Prefix", "app")],
            &[(TEMPORAL, "https://maintenance.example.com/")],
        ),
        ingress(
            "temp307",
            "temp307.example.com",
            &[("/", "Prefix", "app")],
            &[(TEMPORAL, "https://maintenance.example.com/"), (TEMPORAL_CODE, "307")],
        ),
        ingress(
            "both",
            "both.example.com",
            &[("/", "Prefix", "app")],
            &[
                (PERMANENT, "https://permanent.example.com/"),
                (PERMANENT_CODE, "308"),
                (TEMPORAL, "https://temporal.example.com/"),
            ],
        ),
    ];
    m.write("ing.yaml", &ingresses.join("---\n"));
    let s = Sluice::start(m.path(), &[]);
    let mut ways = Ways::new(&s).await;

    assert_eq!(
        ways.get("temp.example.com", "/x").await,
        redirect(302, "https://maintenance.example.com/")
    );
    assert_eq!(
        ways.get("temp307.example.com", "/x").await,
        redirect(307, "https://maintenance.example.com/")
    );
    assert_eq!(
        ways.get("both.example.com", "/x").await,
        redirect(302, "https://temporal.example.com/")
    );
    assert_diagnostic(&s, "both", "InvalidAnnotation", &["permanent-redirect", "wins"]).await;
}

// redirect.go's parser: a `permanent-redirect-code` outside 300..=308 (or a
// `temporal-redirect-code` outside 300..=307) keeps the default, 301 (302). ingress-nginx
// replaces it silently; Sluice reports it in /debug/config.
#[tokio::test(flavor = "multi_thread")]
async fn out_of_range_redirect_codes_keep_the_default_and_are_reported() {
    let m = manifests(&["app"]).await;
    let url = "https://elsewhere.example.com/";
    let ingresses = [
        ingress(
            "perm309",
            "perm.example.com",
            &[("/", "Prefix", "app")],
            &[(PERMANENT, url), (PERMANENT_CODE, "309")],
        ),
        ingress(
            "perm200",
            "ok.example.com",
            &[("/", "Prefix", "app")],
            &[(PERMANENT, url), (PERMANENT_CODE, "200")],
        ),
        ingress(
            "temp308",
            "temp.example.com",
            &[("/", "Prefix", "app")],
            &[(TEMPORAL, url), (TEMPORAL_CODE, "308")],
        ),
    ];
    m.write("ing.yaml", &ingresses.join("---\n"));
    let s = Sluice::start(m.path(), &[]);
    let mut ways = Ways::new(&s).await;

    assert_eq!(ways.get("perm.example.com", "/x").await, redirect(301, url));
    assert_eq!(ways.get("ok.example.com", "/x").await, redirect(301, url));
    assert_eq!(ways.get("temp.example.com", "/x").await, redirect(302, url));
    assert_diagnostic(&s, "perm309", "InvalidAnnotation", &["permanent-redirect-code", "309"])
        .await;
    assert_diagnostic(&s, "perm200", "InvalidAnnotation", &["permanent-redirect-code", "200"])
        .await;
    assert_diagnostic(&s, "temp308", "InvalidAnnotation", &["temporal-redirect-code", "308"]).await;
}

// NGINX's order of phases: the location's `return` (the annotation redirect) and the server's
// `if ($uri = /) { return 302 ... }` (app-root) run in the rewrite phases, before
// `rewrite_by_lua` redirects plain HTTP to HTTPS. So a TLS host answers them on plain HTTP,
// and only its other paths get the 308 to HTTPS.
#[tokio::test(flavor = "multi_thread")]
async fn annotation_redirects_come_before_the_https_redirect() {
    let m = manifests(&["app"]).await;
    let url = "https://elsewhere.example.com/";
    let host = "secure.example.com";
    let root = "root.example.com";
    let tls = |ing: String, h: &str| with_tls(ing, &[(&[h][..], None)]);
    let ingresses = [
        tls(ingress("moved", host, &[("/old", "Prefix", "app")], &[(PERMANENT, url)]), host),
        tls(ingress("kept", host, &[("/new", "Prefix", "app")], &[]), host),
        tls(ingress("root", root, &[("/", "Prefix", "app")], &[(APP_ROOT, "/app")]), root),
    ];
    m.write("ing.yaml", &ingresses.join("---\n"));
    let s = Sluice::start(m.path(), &[]);
    let mut ways = Ways::new(&s).await;

    assert_eq!(ways.get(host, "/old").await, redirect(301, url));
    assert_eq!(ways.get(host, "/new").await, redirect(308, "https://secure.example.com/new"));
    assert_eq!(ways.get(root, "/").await, redirect(302, "http://root.example.com/app"));
    assert_eq!(ways.get(root, "/app").await, redirect(308, "https://root.example.com/app"));

    // Over HTTPS: the same redirects, and the other paths proxied.
    assert_eq!(https_get(&s, host, "/old").await, (redirect(301, url), FAKE.to_string()));
    assert_eq!(https_get(&s, host, "/new").await.0, proxied("app", "/new", host));
    assert_eq!(https_get(&s, root, "/").await.0, redirect(302, "https://root.example.com/app"));
    assert_eq!(https_get(&s, root, "/app").await.0, proxied("app", "/app", root));
}

// ---------------------------------------------------------------------------------------
// app-root

// approot.go: `if ($uri = /) { return 302 $scheme://$http_host<app-root>; }`: only `/` is
// redirected (the query is not carried: `return` adds no arguments), to the Host header as
// sent (case and port kept); every other path is proxied.
#[tokio::test(flavor = "multi_thread")]
async fn app_root_redirects_only_slash_to_the_host_as_sent() {
    let m = manifests(&["app"]).await;
    let host = "approot.example.com";
    m.write("ing.yaml", &ingress("root", host, &[("/", "Prefix", "app")], &[(APP_ROOT, "/foo")]));
    let s = Sluice::start(m.path(), &[]);
    let mut ways = Ways::new(&s).await;

    assert_eq!(ways.get(host, "/").await, redirect(302, "http://approot.example.com/foo"));
    assert_eq!(ways.get(host, "/?a=1").await, redirect(302, "http://approot.example.com/foo"));
    // `$uri` is the normalised path: slashes merged, `%2F` decoded, dot segments resolved.
    for slash in ["//", "/%2F", "/a/..", "/./"] {
        assert_eq!(ways.get(host, slash).await, redirect(302, "http://approot.example.com/foo"));
    }
    assert_eq!(
        ways.get("approot.example.com:8080", "/").await,
        redirect(302, "http://approot.example.com:8080/foo")
    );
    assert_eq!(
        ways.get("AppRoot.Example.com", "/").await,
        redirect(302, "http://AppRoot.Example.com/foo")
    );
    assert_eq!(ways.get(host, "/foo").await, proxied("app", "/foo", host));
    assert_eq!(ways.get(host, "/bar/").await, proxied("app", "/bar/", host));
    assert_eq!(ways.get(host, "/index.html?a=1").await, proxied("app", "/index.html?a=1", host));
}

// nginx.tmpl puts app-root's `if` in the server block: it applies to the whole host, `/`
// included when another Ingress (older, without app-root) defines it, and when no Ingress
// does. Other hosts are not affected. Being the server's, it runs before the location's
// `return` (`permanent-redirect`) and whatever the location's backend is.
#[tokio::test(flavor = "multi_thread")]
async fn app_root_applies_to_the_whole_host() {
    let m = manifests(&["site", "api"]).await;
    let (host, only, plain) = ("whole.example.com", "only.example.com", "plain.example.com");
    let ingresses = [
        created(ingress("site", host, &[("/", "Prefix", "site")], &[]), "2024-01-01T00:00:00Z"),
        created(
            ingress("api", host, &[("/api", "Prefix", "api")], &[(APP_ROOT, "/app")]),
            "2024-06-01T00:00:00Z",
        ),
        ingress("only", only, &[("/api", "Prefix", "api")], &[(APP_ROOT, "/api/home")]),
        ingress("plain", plain, &[("/", "Prefix", "site")], &[]),
        ingress(
            "moved",
            "moved.example.com",
            &[("/", "Prefix", "missing")],
            &[(APP_ROOT, "/app"), (PERMANENT, "https://elsewhere.example.com/")],
        ),
    ];
    m.write("ing.yaml", &ingresses.join("---\n"));
    let s = Sluice::start(m.path(), &[]);
    let mut ways = Ways::new(&s).await;

    assert_eq!(ways.get(host, "/").await, redirect(302, "http://whole.example.com/app"));
    assert_eq!(ways.get(host, "/app").await, proxied("site", "/app", host));
    assert_eq!(ways.get(host, "/api/x").await, proxied("api", "/api/x", host));
    assert_eq!(ways.get(only, "/").await, redirect(302, "http://only.example.com/api/home"));
    assert_eq!(ways.get(only, "/api/home").await, proxied("api", "/api/home", only));
    assert_eq!(ways.get(only, "/other").await, local(404));
    assert_eq!(ways.get(plain, "/").await, proxied("site", "/", plain));
    assert_eq!(
        ways.get("moved.example.com", "/").await,
        redirect(302, "http://moved.example.com/app")
    );
    assert_eq!(
        ways.get("moved.example.com", "/app").await,
        redirect(301, "https://elsewhere.example.com/")
    );
}

// ---------------------------------------------------------------------------------------
// from-to-www-redirect

// fromtowwwredirect.go and ngx_srv_redirect.lua: a rule host `example.com` gets a server for
// `www.example.com` answering `http-redirect-code` (308) to `<scheme>://example.com:<port>
// <request_uri>`: the port the client connected to always named, the last `/` of the request
// URI removed, the client's `X-Forwarded-*` ignored (no `use-forwarded-headers`). And the
// other way round for a rule host starting with `www.` (BuildRedirects).
#[tokio::test(flavor = "multi_thread")]
async fn from_to_www_redirects_the_other_name_both_ways() {
    let m = manifests(&["app"]).await;
    let ingresses = [
        ingress("apex", "example.com", &[("/", "Prefix", "app")], &[(WWW, "true")]),
        ingress("www", "www.example.org", &[("/", "Prefix", "app")], &[(WWW, "true")]),
    ];
    m.write("ing.yaml", &ingresses.join("---\n"));
    let s = Sluice::start(m.path(), &[]);
    let mut ways = Ways::new(&s).await;
    let port = s.http.port();
    let com = |uri: &str| redirect(308, &format!("http://example.com:{port}{uri}"));
    let org = |uri: &str| redirect(308, &format!("http://www.example.org:{port}{uri}"));

    assert_eq!(ways.get("www.example.com", "/foo").await, com("/foo"));
    assert_eq!(ways.get("www.example.com", "/").await, com(""));
    assert_eq!(ways.get("www.example.com", "/foo/").await, com("/foo"));
    assert_eq!(ways.get("www.example.com", "/foo/?a=1").await, com("/foo/?a=1"));
    assert_eq!(ways.get("www.example.com", "/foo?next=/").await, com("/foo?next="));
    // The port is the one connected to, not the Host's.
    assert_eq!(ways.get("WWW.Example.com:8080", "/foo").await, com("/foo"));
    let forwarded = [("x-forwarded-proto", "https"), ("x-forwarded-port", "443")];
    assert_eq!(ways.get_with("www.example.com", "/foo", &forwarded).await, com("/foo"));
    assert_eq!(ways.get("example.com", "/foo").await, proxied("app", "/foo", "example.com"));

    assert_eq!(ways.get("example.org", "/bar?x=1").await, org("/bar?x=1"));
    assert_eq!(
        ways.get("www.example.org", "/bar").await,
        proxied("app", "/bar", "www.example.org")
    );
    // Only the one other name: no `www.www.`.
    assert_eq!(ways.get("www.www.example.org", "/bar").await, local(404));
}

// nginx.tmpl: the www server answers `return {{ $all.Cfg.HTTPRedirectCode }}`; with
// `use-forwarded-headers`, ngx_srv_redirect.lua takes the scheme and port from the load
// balancer's `X-Forwarded-Proto` and `X-Forwarded-Port`.
#[tokio::test(flavor = "multi_thread")]
async fn from_to_www_answers_with_http_redirect_code_and_trusted_forwarded_headers() {
    let m = manifests(&["app"]).await;
    m.write(
        "cm.yaml",
        &configmap(&[("http-redirect-code", "301"), ("use-forwarded-headers", "true")]),
    );
    m.write(
        "ing.yaml",
        &ingress("apex", "example.com", &[("/", "Prefix", "app")], &[(WWW, "true")]),
    );
    let s = Sluice::start(m.path(), &["--configmap", CONFIGMAP]);
    let mut ways = Ways::new(&s).await;
    let port = s.http.port();

    assert_eq!(
        ways.get("www.example.com", "/foo").await,
        redirect(301, &format!("http://example.com:{port}/foo"))
    );
    let forwarded = [("x-forwarded-proto", "https"), ("x-forwarded-port", "443")];
    assert_eq!(
        ways.get_with("www.example.com", "/foo/", &forwarded).await,
        redirect(301, "https://example.com:443/foo")
    );
}

// BuildRedirects: no redirect is made when an Ingress defines the other name itself (whether
// it is older or newer); that Ingress serves it.
#[tokio::test(flavor = "multi_thread")]
async fn from_to_www_is_skipped_when_an_ingress_defines_the_other_name() {
    let m = manifests(&["apex", "www"]).await;
    let ingresses = [
        created(
            ingress("apex", "example.com", &[("/", "Prefix", "apex")], &[(WWW, "true")]),
            "2024-01-01T00:00:00Z",
        ),
        created(
            ingress("www", "www.example.com", &[("/", "Prefix", "www")], &[]),
            "2024-06-01T00:00:00Z",
        ),
        created(
            ingress("net-www", "www.example.net", &[("/", "Prefix", "www")], &[]),
            "2024-01-01T00:00:00Z",
        ),
        created(
            ingress("net", "example.net", &[("/", "Prefix", "apex")], &[(WWW, "true")]),
            "2024-06-01T00:00:00Z",
        ),
    ];
    m.write("ing.yaml", &ingresses.join("---\n"));
    let s = Sluice::start(m.path(), &[]);
    let mut ways = Ways::new(&s).await;

    for (host, backend) in [
        ("www.example.com", "www"),
        ("example.com", "apex"),
        ("www.example.net", "www"),
        ("example.net", "apex"),
    ] {
        assert_eq!(ways.get(host, "/foo").await, proxied(backend, "/foo", host));
    }
    assert_diagnostic(&s, "apex", "PathCollision", &["from-to-www-redirect", "www.example.com"])
        .await;
    assert_diagnostic(&s, "net", "PathCollision", &["from-to-www-redirect", "www.example.net"])
        .await;
}

// fromtowwwredirect.go ("should redirect from www HTTPS to HTTPS") and BuildRedirects: over
// HTTPS the other name is redirected to `https://<host>:<port>`, and is presented the host's
// certificate when that covers it (else the default certificate: the redirect then "will not
// work for HTTPS to HTTPS"). The www server has no HTTPS redirect of its own: on plain HTTP
// it redirects to the host over plain HTTP.
#[tokio::test(flavor = "multi_thread")]
async fn from_to_www_over_https_presents_the_host_certificate_when_it_covers_the_other_name() {
    let ca = Ca::new("www CA");
    let m = manifests(&["app"]).await;
    put_secret(&m, "com-tls", &ca.server(&["example.com", "www.example.com"]));
    put_secret(&m, "net-tls", &ca.server(&["example.net"]));
    let ingresses = [
        with_tls(
            ingress("com", "example.com", &[("/", "Prefix", "app")], &[(WWW, "true")]),
            &[(&["example.com"][..], Some("com-tls"))],
        ),
        with_tls(
            ingress("net", "example.net", &[("/", "Prefix", "app")], &[(WWW, "true")]),
            &[(&["example.net"][..], Some("net-tls"))],
        ),
    ];
    m.write("ing.yaml", &ingresses.join("---\n"));
    let s = Sluice::start(m.path(), &[]);
    let (https, http) = (s.https.port(), s.http.port());

    assert_eq!(
        https_get(&s, "www.example.com", "/foo").await,
        (redirect(308, &format!("https://example.com:{https}/foo")), "example.com".to_string())
    );
    assert_eq!(
        https_get(&s, "www.example.com", "/").await,
        (redirect(308, &format!("https://example.com:{https}")), "example.com".to_string())
    );
    assert_eq!(
        https_get(&s, "example.com", "/").await,
        (proxied("app", "/", "example.com"), "example.com".to_string())
    );
    assert_eq!(
        https_get(&s, "www.example.net", "/foo").await,
        (redirect(308, &format!("https://example.net:{https}/foo")), FAKE.to_string())
    );
    assert_diagnostic(&s, "net", "InvalidSecret", &["from-to-www-redirect", "www.example.net"])
        .await;

    let mut ways = Ways::new(&s).await;
    assert_eq!(
        ways.get("www.example.com", "/foo").await,
        redirect(308, &format!("http://example.com:{http}/foo"))
    );
    assert_eq!(ways.get("example.com", "/foo").await, redirect(308, "https://example.com/foo"));
}

// ---------------------------------------------------------------------------------------
// server-alias

// alias.go: the alias is served by the host's rules, whichever Ingress of the host defines
// them ("hosts defined in two ingresses, different path with one alias"), with the Host as
// sent passed on; a name that is neither host nor alias gets the 404.
#[tokio::test(flavor = "multi_thread")]
async fn server_alias_is_served_by_the_same_rules() {
    let m = manifests(&["a", "b"]).await;
    let host = "foo.example.com";
    let ingresses = [
        created(ingress("app-a", host, &[("/app-a", "Prefix", "a")], &[]), "2024-01-01T00:00:00Z"),
        created(
            ingress(
                "app-b",
                host,
                &[("/app-b", "Prefix", "b")],
                &[(ALIAS, "bar.example.com, baz.example.com,*.wild.example.com")],
            ),
            "2024-06-01T00:00:00Z",
        ),
    ];
    m.write("ing.yaml", &ingresses.join("---\n"));
    let s = Sluice::start(m.path(), &[]);
    let mut ways = Ways::new(&s).await;

    for name in
        [host, "bar.example.com", "baz.example.com", "Bar.Example.com:8080", "x.wild.example.com"]
    {
        assert_eq!(ways.get(name, "/app-a").await, proxied("a", "/app-a", name));
        assert_eq!(ways.get(name, "/app-b/x?y=1").await, proxied("b", "/app-b/x?y=1", name));
        assert_eq!(ways.get(name, "/missing").await, local(404));
    }
    for other in ["qux.example.com", "wild.example.com", "a.b.wild.example.com"] {
        assert_eq!(ways.get(other, "/app-a").await, local(404), "{other}");
    }
}

// createServers: an alias that another Ingress defines as a host is dropped ("an alias never
// takes a host away"), whether the Ingress setting the alias is older or newer than the
// host's own; the host's Ingress keeps serving it, and the other aliases still apply.
#[tokio::test(flavor = "multi_thread")]
async fn server_alias_never_takes_another_ingress_host() {
    let m = manifests(&["foo", "bar", "late", "zed"]).await;
    let (old, new) = ("2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z");
    let ingresses = [
        created(
            ingress(
                "foo",
                "foo.example.com",
                &[("/", "Prefix", "foo")],
                &[(ALIAS, "bar.example.com,alias.example.com")],
            ),
            old,
        ),
        created(ingress("bar", "bar.example.com", &[("/", "Prefix", "bar")], &[]), new),
        created(ingress("zed", "zed.example.com", &[("/", "Prefix", "zed")], &[]), old),
        created(
            ingress(
                "late",
                "late.example.com",
                &[("/", "Prefix", "late")],
                &[(ALIAS, "zed.example.com")],
            ),
            new,
        ),
    ];
    m.write("ing.yaml", &ingresses.join("---\n"));
    let s = Sluice::start(m.path(), &[]);
    let mut ways = Ways::new(&s).await;

    for (name, backend) in [
        ("bar.example.com", "bar"),
        ("zed.example.com", "zed"),
        ("foo.example.com", "foo"),
        ("alias.example.com", "foo"),
        ("late.example.com", "late"),
    ] {
        assert_eq!(ways.get(name, "/x").await, proxied(backend, "/x", name));
    }
    assert_diagnostic(&s, "foo", "PathCollision", &["server-alias", "bar.example.com"]).await;
    assert_diagnostic(&s, "late", "PathCollision", &["server-alias", "zed.example.com"]).await;
}

// nginx.tmpl writes the from-to-www redirect servers before the Ingresses' servers, and
// NGINX keeps the first server of a name ("conflicting server name ... ignored"): an alias
// that is the other name of a `from-to-www-redirect` host is redirected, not served, whether
// the alias is the same Ingress's or another host's.
#[tokio::test(flavor = "multi_thread")]
async fn a_www_redirect_wins_over_an_alias_of_the_same_name() {
    let m = manifests(&["app", "other"]).await;
    let ingresses = [
        ingress(
            "apex",
            "example.com",
            &[("/", "Prefix", "app")],
            &[(WWW, "true"), (ALIAS, "www.example.com,shop.example.com")],
        ),
        ingress("net", "example.net", &[("/", "Prefix", "app")], &[(WWW, "true")]),
        ingress(
            "other",
            "other.example.net",
            &[("/", "Prefix", "other")],
            &[(ALIAS, "www.example.net")],
        ),
    ];
    m.write("ing.yaml", &ingresses.join("---\n"));
    let s = Sluice::start(m.path(), &[]);
    let mut ways = Ways::new(&s).await;
    let port = s.http.port();

    assert_eq!(
        ways.get("www.example.com", "/x").await,
        redirect(308, &format!("http://example.com:{port}/x"))
    );
    assert_eq!(
        ways.get("www.example.net", "/x").await,
        redirect(308, &format!("http://example.net:{port}/x"))
    );
    // The other aliases are kept.
    assert_eq!(ways.get("shop.example.com", "/x").await, proxied("app", "/x", "shop.example.com"));
    assert_diagnostic(
        &s,
        "apex",
        "PathCollision",
        &["server-alias www.example.com", "from-to-www"],
    )
    .await;
    assert_diagnostic(
        &s,
        "other",
        "PathCollision",
        &["server-alias www.example.net", "from-to-www"],
    )
    .await;
}

// An alias is a name of the host's server: over HTTPS it is presented the host's certificate
// when that covers it (else the default certificate), and on plain HTTP it is redirected to
// HTTPS as the host is (to `https://<the alias>/uri`).
#[tokio::test(flavor = "multi_thread")]
async fn server_alias_over_https_gets_the_host_certificate_when_it_covers_it() {
    let ca = Ca::new("alias CA");
    let m = manifests(&["app"]).await;
    let host = "foo.example.com";
    put_secret(&m, "foo-tls", &ca.server(&[host, "bar.example.com"]));
    m.write(
        "ing.yaml",
        &with_tls(
            ingress(
                "foo",
                host,
                &[("/", "Prefix", "app")],
                &[(ALIAS, "bar.example.com,other.example.org")],
            ),
            &[(&[host][..], Some("foo-tls"))],
        ),
    );
    let s = Sluice::start(m.path(), &[]);

    assert_eq!(https_get(&s, host, "/x").await, (proxied("app", "/x", host), host.to_string()));
    assert_eq!(
        https_get(&s, "bar.example.com", "/x").await,
        (proxied("app", "/x", "bar.example.com"), host.to_string())
    );
    assert_eq!(
        https_get(&s, "other.example.org", "/x").await,
        (proxied("app", "/x", "other.example.org"), FAKE.to_string())
    );

    let mut ways = Ways::new(&s).await;
    assert_eq!(
        ways.get("bar.example.com", "/x?y=1").await,
        redirect(308, "https://bar.example.com/x?y=1")
    );
    assert_eq!(ways.get(host, "/x").await, redirect(308, "https://foo.example.com/x"));
}

// ---------------------------------------------------------------------------------------
// Changes

/// Ingresses `apex` (example.com, with from-to-www-redirect) and `foo` (foo.example.com, with
/// the alias bar.example.com), each in a file of its own.
fn redirect_and_alias(m: &Manifests) {
    m.write(
        "apex.yaml",
        &ingress("apex", "example.com", &[("/", "Prefix", "apex")], &[(WWW, "true")]),
    );
    let aliased =
        ingress("foo", "foo.example.com", &[("/", "Prefix", "foo")], &[(ALIAS, "bar.example.com")]);
    m.write("foo.yaml", &aliased);
}

/// Ingresses `www` and `bar` defining www.example.com and bar.example.com (backend `owner`),
/// in one file, so that they come and go in one change.
fn owners() -> String {
    [
        ingress("www", "www.example.com", &[("/", "Prefix", "owner")], &[]),
        ingress("bar", "bar.example.com", &[("/", "Prefix", "owner")], &[]),
    ]
    .join("---\n")
}

// ingress-nginx rebuilds its servers from every Ingress at each sync: an Ingress created for
// the other `www` name, or for a name another host has as alias, takes that name from the
// redirect or the alias.
#[tokio::test(flavor = "multi_thread")]
async fn an_ingress_for_the_other_name_or_the_alias_takes_it_over_when_created() {
    let m = manifests(&["apex", "foo", "owner"]).await;
    redirect_and_alias(&m);
    let s = Sluice::start(m.path(), &[]);
    let mut ways = Ways::new(&s).await;
    let www = redirect(308, &format!("http://example.com:{}/x", s.http.port()));
    assert_eq!(ways.get("www.example.com", "/x").await, www);
    assert_eq!(ways.get("bar.example.com", "/x").await, proxied("foo", "/x", "bar.example.com"));

    let g = s.generation().await;
    m.write("owners.yaml", &owners());
    s.wait_generation_after(g).await;
    assert_eq!(ways.get("www.example.com", "/x").await, proxied("owner", "/x", "www.example.com"));
    assert_eq!(ways.get("bar.example.com", "/x").await, proxied("owner", "/x", "bar.example.com"));
    assert_eq!(ways.get("example.com", "/x").await, proxied("apex", "/x", "example.com"));
    assert_eq!(ways.get("foo.example.com", "/x").await, proxied("foo", "/x", "foo.example.com"));
}

// The other way round: when the Ingresses that defined the other `www` name and the name a
// host has as alias are deleted, ingress-nginx's next sync makes the redirect and the alias
// for them, as a fresh start does (and reports no more that they were not made).
#[tokio::test(flavor = "multi_thread")]
async fn the_redirect_and_the_alias_take_the_names_back_when_their_ingresses_are_deleted() {
    let m = manifests(&["apex", "foo", "owner"]).await;
    redirect_and_alias(&m);
    m.write("owners.yaml", &owners());
    let s = Sluice::start(m.path(), &[]);
    let mut ways = Ways::new(&s).await;
    assert_eq!(ways.get("www.example.com", "/x").await, proxied("owner", "/x", "www.example.com"));
    assert_eq!(ways.get("bar.example.com", "/x").await, proxied("owner", "/x", "bar.example.com"));

    let g = s.generation().await;
    m.remove("owners.yaml");
    s.wait_generation_after(g).await;
    let www = redirect(308, &format!("http://example.com:{}/x", s.http.port()));
    assert_eq!(ways.get("www.example.com", "/x").await, www);
    assert_eq!(ways.get("bar.example.com", "/x").await, proxied("foo", "/x", "bar.example.com"));
    assert_eq!(diagnostics(&s, "apex", "PathCollision").await, Vec::<String>::new());
    assert_eq!(diagnostics(&s, "foo", "PathCollision").await, Vec::<String>::new());
}
