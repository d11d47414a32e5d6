//! Error answers from a default backend, against the real binary and real backends, with
//! ingress-nginx's semantics:
//!
//! - `default-backend`: the annotation's Service serves an Ingress's paths while their own
//!   Service has no ready endpoint, with the `X-Code: 503` headers of ingress-nginx's
//!   `custom-default-backend-*` locations; once the Service has endpoints again, they serve.
//! - `custom-http-errors` (annotation, and the ConfigMap key for every route): an error
//!   response, the upstream's or Sluice's own, is replaced by a request to the default backend
//!   (the annotation's when it has endpoints, else `--default-backend-service`, else the
//!   built-in 404), as NGINX's `error_page` to `@custom_<upstream>_<code>` does;
//!   `disable-proxy-intercept-errors` lets the upstream's own errors through.
//!
//! Routes with error pages are carried by the general path only (translation's verdict); the
//! tests send plain keep-alive GETs, which the fast path reads first and must hand over.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::mpsc;

const DEFAULT_BACKEND: &str = "nginx.ingress.kubernetes.io/default-backend";
const CUSTOM_HTTP_ERRORS: &str = "nginx.ingress.kubernetes.io/custom-http-errors";
const DISABLE_INTERCEPT: &str = "nginx.ingress.kubernetes.io/disable-proxy-intercept-errors";
const READ_TIMEOUT: &str = "nginx.ingress.kubernetes.io/proxy-read-timeout";

/// What a [`recorder`] backend saw of one request.
#[derive(Debug)]
struct Seen {
    method: String,
    /// Path and query.
    uri: String,
    headers: HeaderMap,
}

impl Seen {
    /// A header's value, `""` when absent.
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap_or("<not text>"))
    }
}

/// A backend answering every request with `status` and a JSON body naming it (`name`, as the
/// echo backend does), and reporting each request on the returned channel: an error page
/// backend whose own status is distinct from the errors it replaces.
async fn recorder(name: &'static str, status: u16) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = http_backend(move |req: Request<Incoming>| {
        let tx = tx.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let uri = parts.uri.path_and_query().map_or("", |p| p.as_str()).to_string();
            let doc = serde_json::json!({ "name": name, "path": uri, "body_bytes": body.len() });
            let _ = tx.send(Seen { method: parts.method.to_string(), uri, headers: parts.headers });
            http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(doc.to_string())))
                .unwrap()
        }
    })
    .await;
    (addr, rx)
}

/// The next request a recorder saw.
async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the error backend got a request in time")
        .expect("the recorder runs")
}

/// A backend that reads requests and never answers, holding the connection open.
async fn silent_backend() -> SocketAddr {
    tcp_backend(|mut stream| async move {
        let _ = read_head(&mut stream).await;
        let _ = read_head(&mut stream).await; // until the proxy gives up and closes
    })
    .await
}

/// A GET to `path` on `host`, with extra headers, on `client`.
async fn get_with(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    s: &Sluice,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = request("GET", &s.url(path), Some(host), Bytes::new());
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    send(client, req).await
}

/// A GET to `path` on `host` over h2c (prior knowledge), on a connection of its own: the
/// general path, with `host` as `:authority`.
async fn h2c_get(s: &Sluice, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = request("GET", &format!("http://{host}{path}"), None, Bytes::new());
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    h2c_send(s.http, req).await
}

fn text(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// A manifests directory with the IngressClass and `objects` (name, YAML).
fn manifests(objects: &[(&str, String)]) -> Manifests {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    for (name, yaml) in objects {
        m.write(name, yaml);
    }
    m
}

/// The ConfigMap `default/sluice-config` with `data`.
fn configmap(data: &[(&str, &str)]) -> String {
    let mut s = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sluice-config\n  namespace: default\ndata:\n".to_string();
    for (k, v) in data {
        s.push_str(&format!("  {k}: {v:?}\n"));
    }
    s
}

/// Checks the headers ingress-nginx's error locations (`@custom_*`) send the default
/// backend: `X-Code`, `X-Format`, `X-Original-URI`, `X-Namespace`, `X-Ingress-Name`,
/// `X-Service-Name`, `X-Service-Port`, `X-Request-ID`.
#[allow(clippy::too_many_arguments)]
fn assert_error_request(
    seen: &Seen,
    code: &str,
    accept: &str,
    original_uri: &str,
    ingress: &str,
    service: &str,
    request_id: &str,
) {
    let expected = [
        ("x-code", code),
        ("x-format", accept),
        ("x-original-uri", original_uri),
        ("x-namespace", "default"),
        ("x-ingress-name", ingress),
        ("x-service-name", service),
        ("x-service-port", "80"),
        ("x-request-id", request_id),
    ];
    for (name, value) in expected {
        // NGINX passes no header whose value is empty (a request without `Accept`).
        let got = seen.headers.get(name).map(|v| v.to_str().unwrap_or("<not text>"));
        let want = (!value.is_empty()).then_some(value);
        assert_eq!(got, want, "{name} of the error page request: {seen:?}");
    }
}

/// ingress-nginx's `default-backend`: while the path's Service has no ready endpoint, the
/// location's upstream is `custom-default-backend-<ns>-<svc>`, which gets the request (same
/// path) with `X-Code: 503` and the location's names; when the Service has endpoints again,
/// they get the traffic; when neither has any, 503. Both ways of carrying a request agree.
#[tokio::test(flavor = "multi_thread")]
async fn default_backend_serves_while_the_service_has_no_endpoint() {
    let app = echo("app").await;
    let fallback = echo("fallback").await;
    let host = "db.example.com";
    let m = manifests(&[
        ("app.yaml", service_with("app", &[], &[app])),
        ("fallback.yaml", service("fallback", &[fallback])),
        (
            "ing.yaml",
            ingress("web", host, &[("/", "Prefix", "app")], &[(DEFAULT_BACKEND, "fallback")]),
        ),
    ]);
    let s = Sluice::start(m.path(), &[]);
    let keep_alive = client();

    for label in ["keep-alive", "h2c"] {
        let id = format!("db-{label}");
        let headers = [("x-request-id", id.as_str()), ("accept", "text/html")];
        let r = match label {
            "h2c" => h2c_get(&s, host, "/alma/armud?x=1", &headers).await,
            _ => get_with(&keep_alive, &s, host, "/alma/armud?x=1", &headers).await,
        };
        assert_eq!(r.status, 200, "{label}: {}", text(&r));
        assert_eq!(r.backend(), "fallback", "{label}");
        let seen = r.json();
        assert_eq!(seen["path"], "/alma/armud?x=1", "{label}: the request's own path");
        assert_eq!(seen["host"], host, "{label}");
        let h = &seen["headers"];
        for (name, value) in [
            ("x-code", "503"),
            ("x-format", "text/html"),
            ("x-namespace", "default"),
            ("x-ingress-name", "web"),
            ("x-service-name", "app"),
            ("x-service-port", "80"),
            ("x-request-id", id.as_str()),
        ] {
            assert_eq!(h[name], value, "{label}: {name} in {h}");
        }
    }

    // The Service gets a ready endpoint: it serves again, without the substitute's headers.
    let g = s.generation().await;
    m.write("app.yaml", &service("app", &[app]));
    s.wait_generation_after(g).await;
    for label in ["keep-alive", "h2c"] {
        let r = match label {
            "h2c" => h2c_get(&s, host, "/alma/armud", &[]).await,
            _ => get_with(&keep_alive, &s, host, "/alma/armud", &[]).await,
        };
        assert_eq!(r.status, 200, "{label}: {}", text(&r));
        assert_eq!(r.backend(), "app", "{label}");
        assert!(r.json()["headers"].get("x-code").is_none(), "{label}: {}", text(&r));
    }

    // Neither has a ready endpoint: the default backend does not take over, 503. (One file
    // at a time, each change awaited.)
    let g = s.generation().await;
    m.write("fallback.yaml", &service_with("fallback", &[], &[fallback]));
    let g = s.wait_generation_after(g).await;
    assert_eq!(get_with(&keep_alive, &s, host, "/", &[]).await.backend(), "app");
    m.write("app.yaml", &service_with("app", &[], &[app]));
    s.wait_generation_after(g).await;
    let r = get_with(&keep_alive, &s, host, "/", &[]).await;
    assert_eq!(r.status, 503, "{}", text(&r));
    assert!(text(&r).contains("503 Service Temporarily Unavailable"), "{}", text(&r));
    let r = h2c_get(&s, host, "/", &[]).await;
    assert_eq!(r.status, 503, "h2c: {}", text(&r));
}

/// NGINX's `proxy_set_header` passes no header whose value is empty: a request without
/// `Accept` served by the `default-backend` in place of a Service without endpoints carries
/// no `X-Format` (`$http_accept` is empty), rather than an empty one.
#[tokio::test(flavor = "multi_thread")]
async fn default_backend_sends_no_empty_x_format() {
    let app = echo("app").await;
    let fallback = echo("fallback").await;
    let m = manifests(&[
        ("app.yaml", service_with("app", &[], &[app])),
        ("fallback.yaml", service("fallback", &[fallback])),
        (
            "ing.yaml",
            ingress("web", "", &[("/", "Prefix", "app")], &[(DEFAULT_BACKEND, "fallback")]),
        ),
    ]);
    let s = Sluice::start(m.path(), &[]);
    let r = get(&s.url("/"), None).await;
    assert_eq!((r.status.as_u16(), r.backend()), (200, "fallback".into()), "{}", text(&r));
    let h = &r.json()["headers"];
    assert_eq!(h["x-code"], "503", "{h}");
    assert!(h.get("x-format").is_none(), "an empty X-Format was sent: {h}");
}

/// ingress-nginx's e2e case for `default-backend` (`test/e2e/annotations/default_backend.go`):
/// the path's Service does not exist at all ("invalid"): its upstream has no endpoint, so the
/// annotation's Service serves, with `X-Code: 503` and `X-Service-Name: invalid`.
#[tokio::test(flavor = "multi_thread")]
async fn default_backend_serves_a_path_whose_service_does_not_exist() {
    let fallback = echo("fallback").await;
    let host = "default-backend";
    let m = manifests(&[
        ("fallback.yaml", service("fallback", &[fallback])),
        (
            "ing.yaml",
            ingress("web", host, &[("/", "Prefix", "invalid")], &[(DEFAULT_BACKEND, "fallback")]),
        ),
    ]);
    let s = Sluice::start(m.path(), &[]);
    let r =
        get_with(&client(), &s, host, "/alma/armud", &[("x-request-id", "something-unique")]).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(r.backend(), "fallback");
    let h = &r.json()["headers"];
    assert_eq!(h["x-code"], "503", "{h}");
    assert_eq!(h["x-ingress-name"], "web", "{h}");
    assert_eq!(h["x-service-name"], "invalid", "{h}");
    assert_eq!(h["x-request-id"], "something-unique", "{h}");
}

/// ingress-nginx's `custom-http-errors` with `proxy_intercept_errors on`: an upstream answer
/// with a listed status is replaced by the `default-backend`'s answer to `GET /` (the query
/// kept, NGINX's `rewrite (.*) / break`) with the `@custom_*` location's headers, and the
/// client gets that backend's status and body; other statuses pass through untouched. The
/// method is kept (a named location).
#[tokio::test(flavor = "multi_thread")]
async fn custom_http_errors_replace_listed_upstream_statuses() {
    let app = echo("app").await;
    let (errors, mut seen) = recorder("errors", 200).await;
    let host = "err.example.com";
    let m = manifests(&[
        ("svc.yaml", [service("app", &[app]), service("errors", &[errors])].join("---\n")),
        (
            "ing.yaml",
            ingress(
                "web",
                host,
                &[("/", "Prefix", "app")],
                &[(CUSTOM_HTTP_ERRORS, "503, 404"), (DEFAULT_BACKEND, "errors")],
            ),
        ),
    ]);
    let s = Sluice::start(m.path(), &[]);
    let c = client();

    // A plain keep-alive GET (the fast path reads it first, and hands the route over).
    let r = get_with(
        &c,
        &s,
        host,
        "/some/page?status=503&x=1",
        &[("accept", "application/json"), ("x-request-id", "err-503")],
    )
    .await;
    assert_eq!(r.status, 200, "the error backend's status: {}", text(&r));
    assert_eq!(r.backend(), "errors");
    let page = next_seen(&mut seen).await;
    assert_eq!(page.method, "GET");
    assert_eq!(page.uri, "/?status=503&x=1", "path `/`, the query kept");
    assert_error_request(
        &page,
        "503",
        "application/json",
        "/some/page?status=503&x=1",
        "web",
        "app",
        "err-503",
    );
    assert_eq!(page.header("host"), host, "the client's Host");
    assert_eq!(page.header("x-forwarded-for"), "127.0.0.1");

    // Another listed status, on a POST: the method is kept.
    let post = request("POST", &s.url("/form?status=404"), Some(host), Bytes::from_static(b"a=1"));
    let r = send(&c, post).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(r.backend(), "errors");
    let page = next_seen(&mut seen).await;
    assert_eq!(page.method, "POST");
    assert_eq!(page.header("x-code"), "404");
    assert_eq!(page.header("x-original-uri"), "/form?status=404");

    // Statuses not listed, and successes, pass through from the upstream.
    for (path, status) in [("/?status=500", 500), ("/?status=502", 502), ("/fine", 200)] {
        let r = get_with(&c, &s, host, path, &[]).await;
        assert_eq!(r.status, status, "{path}: {}", text(&r));
        assert_eq!(r.backend(), "app", "{path}");
    }
    assert!(seen.try_recv().is_err(), "no error page was asked for unlisted statuses");
}

/// NGINX's `error_page` applies to the errors NGINX makes itself too: a 502 (no endpoint
/// reachable) and a 504 (no answer within `proxy-read-timeout`) listed in `custom-http-errors`
/// are replaced by the default backend's page, with `X-Code` 502 and 504.
#[tokio::test(flavor = "multi_thread")]
async fn custom_http_errors_replace_sluices_own_502_and_504() {
    let (errors, mut seen) = recorder("errors", 200).await;
    let silent = silent_backend().await;
    let pages = [(CUSTOM_HTTP_ERRORS, "502,504"), (DEFAULT_BACKEND, "errors")];
    let slow = [pages[0], pages[1], (READ_TIMEOUT, "1")];
    let m = manifests(&[
        (
            "svc.yaml",
            [
                service("errors", &[errors]),
                service("dead", &[unused_addr()]),
                service("slow", &[silent]),
            ]
            .join("---\n"),
        ),
        ("dead.yaml", ingress("dead", "dead.example.com", &[("/", "Prefix", "dead")], &pages)),
        ("slow.yaml", ingress("slow", "slow.example.com", &[("/", "Prefix", "slow")], &slow)),
    ]);
    let s = Sluice::start(m.path(), &[]);
    let c = client();

    let r = get_with(&c, &s, "dead.example.com", "/x", &[("x-request-id", "dead-1")]).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(r.backend(), "errors");
    let page = next_seen(&mut seen).await;
    assert_error_request(&page, "502", "", "/x", "dead", "dead", "dead-1");

    let started = Instant::now();
    let r = get_with(&c, &s, "slow.example.com", "/y?z=1", &[("x-request-id", "slow-1")]).await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(r.backend(), "errors");
    assert!(took >= Duration::from_millis(900), "replaced before the read timeout: {took:?}");
    let page = next_seen(&mut seen).await;
    assert_error_request(&page, "504", "", "/y?z=1", "slow", "slow", "slow-1");
    assert_eq!(page.uri, "/?z=1");
}

/// ConfigMap `custom-http-errors` (NGINX's server-wide `error_page` to
/// `@custom_upstream-default-backend_*`): every route's errors go to
/// `--default-backend-service`; an Ingress's own list replaces the ConfigMap's for its paths;
/// a `default-backend` without endpoints leaves the page to the global default backend; a 503
/// for a Service without endpoints is replaced too. The client gets the page's own status
/// (here 410), not the error's.
#[tokio::test(flavor = "multi_thread")]
async fn configmap_custom_http_errors_use_the_global_default_backend() {
    let app = echo("app").await;
    let (errors, mut seen) = recorder("errors", 410).await;
    let m = manifests(&[
        ("cm.yaml", configmap(&[("custom-http-errors", "503")])),
        (
            "svc.yaml",
            [service("app", &[app]), service("errors", &[errors]), service_with("empty", &[], &[])]
                .join("---\n"),
        ),
        ("plain.yaml", ingress("plain", "plain.example.com", &[("/", "Prefix", "app")], &[])),
        (
            "own.yaml",
            ingress(
                "own",
                "own.example.com",
                &[("/", "Prefix", "app")],
                &[(CUSTOM_HTTP_ERRORS, "404")],
            ),
        ),
        (
            "nofallback.yaml",
            ingress(
                "nofallback",
                "nf.example.com",
                &[("/", "Prefix", "app")],
                &[(DEFAULT_BACKEND, "empty")],
            ),
        ),
        ("idle.yaml", ingress("idle", "idle.example.com", &[("/", "Prefix", "empty")], &[])),
    ]);
    let s = Sluice::start(
        m.path(),
        &["--configmap", "default/sluice-config", "--default-backend-service", "default/errors"],
    );
    let c = client();

    // A route without annotations: the ConfigMap's list applies.
    let r =
        get_with(&c, &s, "plain.example.com", "/p?status=503", &[("x-request-id", "cm-1")]).await;
    assert_eq!((r.status.as_u16(), r.backend()), (410, "errors".into()), "{}", text(&r));
    let page = next_seen(&mut seen).await;
    assert_error_request(&page, "503", "", "/p?status=503", "plain", "app", "cm-1");
    assert_eq!(page.uri, "/?status=503");

    // The annotation's list replaces the ConfigMap's.
    let r = get_with(&c, &s, "own.example.com", "/?status=503", &[]).await;
    assert_eq!((r.status.as_u16(), r.backend()), (503, "app".into()), "{}", text(&r));
    let r = get_with(&c, &s, "own.example.com", "/?status=404", &[]).await;
    assert_eq!((r.status.as_u16(), r.backend()), (410, "errors".into()), "{}", text(&r));
    let page = next_seen(&mut seen).await;
    assert_eq!((page.header("x-code"), page.header("x-ingress-name")), ("404", "own"));

    // A `default-backend` without endpoints: the global default backend answers.
    let r = get_with(&c, &s, "nf.example.com", "/?status=503", &[]).await;
    assert_eq!((r.status.as_u16(), r.backend()), (410, "errors".into()), "{}", text(&r));
    let page = next_seen(&mut seen).await;
    assert_eq!((page.header("x-code"), page.header("x-ingress-name")), ("503", "nofallback"));

    // No endpoint at all: Sluice's own 503 is replaced.
    let r = get_with(&c, &s, "idle.example.com", "/i", &[]).await;
    assert_eq!((r.status.as_u16(), r.backend()), (410, "errors".into()), "{}", text(&r));
    let page = next_seen(&mut seen).await;
    assert_eq!((page.header("x-code"), page.header("x-service-name")), ("503", "empty"));

    // Unlisted statuses pass.
    let r = get_with(&c, &s, "plain.example.com", "/?status=404", &[]).await;
    assert_eq!((r.status.as_u16(), r.backend()), (404, "app".into()), "{}", text(&r));
    assert!(seen.try_recv().is_err(), "no error page for an unlisted status");
}

/// `disable-proxy-intercept-errors` (ingress-nginx's e2e
/// `disableproxyintercepterrors.go`): without `proxy_intercept_errors`, the upstream's own 404
/// reaches the client, while the `error_page` still replaces the 502 NGINX makes itself;
/// turning it back off (`"false"`) intercepts the upstream's 404 again.
#[tokio::test(flavor = "multi_thread")]
async fn disable_proxy_intercept_errors_passes_upstream_errors_only() {
    let app = echo("app").await;
    let (errors, mut seen) = recorder("errors", 200).await;
    let annotations = |disable: &'static str| {
        [(CUSTOM_HTTP_ERRORS, "404,502"), (DISABLE_INTERCEPT, disable), (DEFAULT_BACKEND, "errors")]
    };
    let m = manifests(&[
        (
            "svc.yaml",
            [
                service("app", &[app]),
                service("errors", &[errors]),
                service("dead", &[unused_addr()]),
            ]
            .join("---\n"),
        ),
        (
            "pie.yaml",
            ingress("pie", "pie.example.com", &[("/", "Prefix", "app")], &annotations("true")),
        ),
        (
            "dead.yaml",
            ingress("dead", "dead.example.com", &[("/", "Prefix", "dead")], &annotations("true")),
        ),
    ]);
    let s = Sluice::start(m.path(), &[]);
    let c = client();

    let r = get_with(&c, &s, "pie.example.com", "/status?status=404", &[]).await;
    assert_eq!((r.status.as_u16(), r.backend()), (404, "app".into()), "{}", text(&r));
    let r = get_with(&c, &s, "dead.example.com", "/", &[("x-request-id", "pie-dead")]).await;
    assert_eq!((r.status.as_u16(), r.backend()), (200, "errors".into()), "{}", text(&r));
    let page = next_seen(&mut seen).await;
    assert_error_request(&page, "502", "", "/", "dead", "dead", "pie-dead");
    assert!(seen.try_recv().is_err(), "the upstream's 404 asked for no page");

    let g = s.generation().await;
    m.write(
        "pie.yaml",
        &ingress("pie", "pie.example.com", &[("/", "Prefix", "app")], &annotations("false")),
    );
    s.wait_generation_after(g).await;
    let r =
        get_with(&c, &s, "pie.example.com", "/status?status=404", &[("x-request-id", "pie-on")])
            .await;
    assert_eq!((r.status.as_u16(), r.backend()), (200, "errors".into()), "{}", text(&r));
    let page = next_seen(&mut seen).await;
    assert_error_request(&page, "404", "", "/status?status=404", "pie", "app", "pie-on");
}

/// Without any default backend (no annotation, no `--default-backend-service`), ingress-nginx's
/// `upstream-default-backend` is its own default server, which answers 404: a listed error is
/// replaced by that 404.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_default_backend_the_built_in_404_answers() {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[(CUSTOM_HTTP_ERRORS, "503")]);
    let s = Sluice::start(m.path(), &[]);
    let c = client();
    let r = get_with(&c, &s, "any.example.com", "/?status=503", &[]).await;
    assert_eq!(r.status, 404, "{}", text(&r));
    assert_eq!(r.headers["server"], "sluice");
    assert!(text(&r).contains("404 Not Found"), "{}", text(&r));
    let r = get_with(&c, &s, "any.example.com", "/?status=500", &[]).await;
    assert_eq!((r.status.as_u16(), r.backend()), (500, "app".into()), "unlisted: passed");
}

/// Translation leaves routes with error pages to the general path; a keep-alive connection
/// whose first request the fast path carried still gets the error page for its next request,
/// to such a route (the fast path hands the connection over mid-way).
#[tokio::test(flavor = "multi_thread")]
async fn a_keep_alive_connection_gets_the_error_page_after_a_fast_path_request() {
    let app = echo("app").await;
    let (errors, mut seen) = recorder("errors", 200).await;
    let m = manifests(&[
        ("svc.yaml", [service("app", &[app]), service("errors", &[errors])].join("---\n")),
        ("fast.yaml", ingress("fast", "fast.example.com", &[("/", "Prefix", "app")], &[])),
        (
            "err.yaml",
            ingress(
                "pages",
                "err.example.com",
                &[("/", "Prefix", "app")],
                &[(CUSTOM_HTTP_ERRORS, "503"), (DEFAULT_BACKEND, "errors")],
            ),
        ),
    ]);
    let s = Sluice::start(m.path(), &[]);
    let mut conn = tokio::net::TcpStream::connect(s.http).await.unwrap();
    let (status, _, body) =
        exchange(&mut conn, "GET /first HTTP/1.1\r\nHost: fast.example.com\r\n\r\n").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("\"name\":\"app\""));
    let (status, head, body) = exchange(
        &mut conn,
        "GET /second?status=503 HTTP/1.1\r\nHost: err.example.com\r\nX-Request-ID: ka-2\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{head}");
    assert!(String::from_utf8_lossy(&body).contains("\"name\":\"errors\""), "{head}");
    let page = next_seen(&mut seen).await;
    assert_error_request(&page, "503", "", "/second?status=503", "pages", "app", "ka-2");
    // And the connection goes on.
    let (status, _, _) =
        exchange(&mut conn, "GET /third HTTP/1.1\r\nHost: fast.example.com\r\n\r\n").await;
    assert_eq!(status, 200);
}
