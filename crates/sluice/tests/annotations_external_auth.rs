//! External authentication (`auth-url`) end to end, against the real binary in manifests mode:
//! before each request Sluice asks an auth service, either one of the test's own (a hyper
//! server on loopback that records every subrequest) or a real oauth2-proxy, as ingress-nginx's
//! `auth_request` location does (crates/translate/src/annotations/external_auth.rs, README
//! "External authentication").
//!
//! Covered, following ingress-nginx's e2e scenarios where they exist:
//!
//! - the subrequest as ingress-nginx's auth location (nginx.tmpl) makes it: a `GET` without
//!   body for a POST too (`auth-method` changes the method and adds `X-Original-URI` and
//!   `X-Scheme`), the client's headers, `X-Original-URL`, `X-Original-Method`, `X-Sent-From`,
//!   `X-Real-IP`, `X-Forwarded-For`, `X-Auth-Request-Redirect` (`auth-request-redirect`),
//!   `X-Request-ID` (the backend's), `Host` (authreq/main.go: the auth URL's host name), the
//!   `auth-proxy-set-headers` ConfigMap; over HTTP/1.1 and h2c;
//! - test/e2e/annotations/auth.go, "when external authentication is configured" (and "with a
//!   custom redirect param"): 200 when signed in, the 302 to `auth-signin` with `rd` (or
//!   `auth-signin-redirect-param`) exactly as the e2e expects it, "should overwrite Foo header
//!   with auth response" (`auth-response-headers`, and spoofing without the auth service's
//!   header), "keeps processing new ingresses even if one of the existing ingresses is
//!   misconfigured", "with invalid auth-url should deny whole location" (503 and the
//!   diagnostic), "cookie set by external authentication server" (`auth-always-set-cookie`);
//! - the auth service's answers (NGINX's auth_request module): 2xx lets through, 401 (its
//!   `WWW-Authenticate` passed on) and 403 go back, anything else, no answer or a timeout is
//!   a 500, and the backend is never reached then;
//! - test/e2e/settings/global_external_auth.go: `global-auth-url` on Ingresses without
//!   annotations, `enable-global-auth: "false"`, `no-auth-locations`, the other `global-auth-*`
//!   keys (`global-auth-always-set-cookie` among them), an Ingress's own `auth-url` winning;
//! - test/e2e/annotations/satisfy.go, "should allow multiple auth with satisfy any";
//! - docs/examples/auth/oauth-external-auth: a real oauth2-proxy behind its own Ingress at
//!   `/oauth2`, the application asking `/oauth2/auth` and sending 401s to its sign-in page.
//!
//! Needs `htpasswd` (Debian: apache2-utils) and Go: the oauth2-proxy test runs
//! tests/oauth2-proxy/build, which builds oauth2-proxy once (a few minutes) into a cache.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::tls::secret;
use common::*;
use http::{HeaderMap, Response};
use http_body_util::{BodyExt, Full};

/// The ConfigMap `--configmap` names in these tests (in `default`).
const CONFIGMAP: &str = "sluice-config";
/// The host of auth.go's scenarios.
const HOST: &str = "auth";
/// httpbin's endpoint auth.go uses as `auth-url`: 200 for `user:password` only.
const SIGNED_IN: &str = "/basic-auth/user/password";
/// The cookie every answer of the auth service sets (auth.go's `/cookies/set/alma/armud`).
const AUTH_COOKIE: &str = "alma=armud";
/// The cookie every answer of the backend sets.
const BACKEND_COOKIE: &str = "backend=1";

// ---------------------------------------------------------------------------------------
// Recording servers: the auth service and the backend

/// One request as a test server received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    /// Every value of header `name`.
    fn values(&self, name: &str) -> Vec<&str> {
        self.headers.get_all(name).iter().map(|v| v.to_str().unwrap()).collect()
    }
}

/// The requests a test server received, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The last request received.
    #[track_caller]
    fn last(&self) -> Seen {
        self.0.lock().unwrap().last().cloned().expect("a request was received")
    }
}

/// A hyper server on loopback that records each request (before answering) and answers it
/// with `answer`.
async fn recording_server<F, Fut>(answer: F) -> (SocketAddr, Log)
where
    F: Fn(Seen) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let log = Log::default();
    let (l, answer) = (log.clone(), Arc::new(answer));
    let addr = http_backend(move |req| {
        let (l, answer) = (l.clone(), answer.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let seen = Seen {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                headers: parts.headers,
                body,
            };
            l.0.lock().unwrap().push(seen.clone());
            answer(seen).await
        }
    })
    .await;
    (addr, log)
}

/// The auth service, httpbin's endpoints as ingress-nginx's e2e use them:
/// - [`SIGNED_IN`]: 200 with `X-User: user`, `X-Email: user@example.com` and `X-Auth-Other`
///   for the credentials `user:password`, else 401 with `WWW-Authenticate`;
/// - `/status/NNN`: NNN (with `WWW-Authenticate` on a 401);
/// - `/slow`: never answers.
///
/// Every answer sets [`AUTH_COOKIE`] and has a body naming the auth service.
async fn auth_answer(seen: Seen) -> Response<Full<Bytes>> {
    let path = seen.uri.split('?').next().unwrap_or_default().to_string();
    let mut headers = vec![("set-cookie", AUTH_COOKIE)];
    let status: u16 = if path == SIGNED_IN {
        let credentials = basic_credentials("user", "password");
        if seen.values("authorization") == [credentials.as_str()] {
            headers.extend([
                ("x-user", "user"),
                ("x-email", "user@example.com"),
                ("x-auth-other", "from the auth service"),
            ]);
            200
        } else {
            401
        }
    } else if let Some(code) = path.strip_prefix("/status/") {
        code.parse().expect("a status")
    } else if path == "/slow" {
        std::future::pending().await
    } else {
        panic!("the auth service has no {path}")
    };
    if status == 401 {
        headers.push(("www-authenticate", "Basic realm=\"Fake Realm\""));
    }
    let mut r = Response::builder().status(status);
    for (n, v) in headers {
        r = r.header(n, v);
    }
    r.body(Full::new(Bytes::from(format!("auth service: {status}")))).unwrap()
}

/// The backend of the Service `app`: 503 for paths containing `/error` (auth.go's `location
/// /error { return 503; }`), else 200 with the body `backend`; [`BACKEND_COOKIE`] on both.
async fn backend_answer(seen: Seen) -> Response<Full<Bytes>> {
    let status = if seen.uri.contains("/error") { 503 } else { 200 };
    Response::builder()
        .status(status)
        .header("set-cookie", BACKEND_COOKIE)
        .body(Full::new(Bytes::from_static(b"backend")))
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Set-up

/// A manifests directory with the IngressClass, the Service `app` (the recording backend)
/// and the controller's ConfigMap, and the auth service.
struct Env {
    m: Manifests,
    backend: Log,
    auth: Log,
    auth_addr: SocketAddr,
}

impl Env {
    async fn new() -> Env {
        let (backend_addr, backend) = recording_server(backend_answer).await;
        let (auth_addr, auth) = recording_server(auth_answer).await;
        let m = Manifests::new();
        m.write("class.yaml", &ingress_class());
        m.write("svc.yaml", &service("app", &[backend_addr]));
        let env = Env { m, backend, auth, auth_addr };
        env.config_map(&[]);
        env
    }

    /// The auth service's URL for `path`.
    fn auth_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.auth_addr)
    }

    /// Writes (or replaces) the controller's ConfigMap.
    fn config_map(&self, data: &[(&str, &str)]) {
        self.named_config_map(CONFIGMAP, data);
    }

    /// Writes the ConfigMap `name` (in `default`).
    fn named_config_map(&self, name: &str, data: &[(&str, &str)]) {
        let mut s = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: default\ndata:"
        );
        if data.is_empty() {
            s.push_str(" {}");
        }
        for (k, v) in data {
            s.push_str(&format!("\n  {k}: {v:?}"));
        }
        s.push('\n');
        self.m.write(&format!("cm-{name}.yaml"), &s);
    }

    /// Writes the Ingress `name` for any host: each of `paths` (Prefix) to the Service `app`,
    /// with `annotations` (names without the `nginx.ingress.kubernetes.io/` prefix).
    fn ingress(&self, name: &str, paths: &[&str], annotations: &[(&str, &str)]) {
        self.ingress_to(name, "app", paths, annotations);
    }

    /// Like [`Env::ingress`], to the Service `service`.
    fn ingress_to(&self, name: &str, service: &str, paths: &[&str], annotations: &[(&str, &str)]) {
        let full: Vec<(String, &str)> = annotations
            .iter()
            .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), *v))
            .collect();
        let refs: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let rules: Vec<(&str, &str, &str)> =
            paths.iter().map(|p| (*p, "Prefix", service)).collect();
        self.m.write(&format!("ing-{name}.yaml"), &ingress(name, "", &rules, &refs));
    }

    /// Starts Sluice with the controller's ConfigMap, and checks that the first configuration
    /// has exactly the `expected` diagnostics (see [`assert_diagnostics`]).
    async fn start(&self, expected: &[(&str, &str)]) -> Sluice {
        let s = Sluice::start(self.m.path(), &["--configmap", &format!("default/{CONFIGMAP}")]);
        assert_diagnostics(&s, expected).await;
        s
    }

    /// Replaces the controller's ConfigMap and waits until Sluice applies it.
    async fn reconfigure(&self, s: &Sluice, data: &[(&str, &str)]) {
        let g = s.generation().await;
        self.config_map(data);
        s.wait_generation_after(g).await;
    }
}

// ---------------------------------------------------------------------------------------
// Requests and answers

/// How a request is carried to Sluice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    /// HTTP/1.1, on a fresh connection.
    H1,
    /// h2c, prior knowledge, on a fresh connection.
    H2c,
}

/// Sends `method path` to Sluice for `host` (`Host`, or `:authority` over h2c) with
/// `headers` and `body`.
async fn call(
    s: &Sluice,
    proto: Proto,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let (url, host_header) = match proto {
        Proto::H1 => (format!("http://{}{path}", s.http), Some(host)),
        Proto::H2c => (format!("http://{host}{path}"), None),
    };
    let mut req = request(method, &url, host_header, Bytes::from(body.to_string()));
    for (name, value) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    match proto {
        Proto::H1 => send(&client(), req).await,
        Proto::H2c => h2c_send(s.http, req).await,
    }
}

/// `GET path` over HTTP/1.1 for [`HOST`] with `headers`.
async fn hit(s: &Sluice, path: &str, headers: &[(&str, &str)]) -> Reply {
    call(s, Proto::H1, "GET", HOST, path, headers, "").await
}

/// Every value of header `name` of `r`, sorted.
fn values(r: &Reply, name: &str) -> Vec<String> {
    let mut v: Vec<String> =
        r.headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_string()).collect();
    v.sort();
    v
}

/// Whether the backend answered (rather than Sluice or the auth service).
fn from_backend(r: &Reply) -> bool {
    r.body == "backend"
}

/// Asserts that Sluice answered `status` itself: neither the backend nor the auth service's
/// body.
#[track_caller]
fn assert_local(r: &Reply, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {r:?}");
    let body = String::from_utf8_lossy(&r.body);
    assert!(!from_backend(r) && !body.contains("auth service"), "{what}: {r:?}");
}

// ---------------------------------------------------------------------------------------
// The subrequest

// ingress-nginx's auth location (nginx.tmpl): for a POST with a body, the subrequest is a GET
// without body, with the client's headers (`Authorization`, `Cookie`, others) and those the
// location sets, replacing the client's: `X-Original-URL` (`$scheme://$http_host$request_uri`),
// `X-Original-Method`, `X-Sent-From`, `X-Real-IP`, `X-Forwarded-For` (`$remote_addr`),
// `X-Auth-Request-Redirect` (`$request_uri`), `X-Request-ID` (the backend's too, the client's
// when it sent one); `X-Forwarded-Proto` is cleared. With `auth-method`, that method and
// `X-Original-URI` and `X-Scheme`; `auth-request-redirect` replaces the redirect header;
// `auth-proxy-set-headers` adds its ConfigMap's headers, variables filled in. The backend then
// gets the whole POST. Over HTTP/1.1 and h2c alike.
#[tokio::test(flavor = "multi_thread")]
async fn the_subrequest_is_the_one_ingress_nginx_sends() {
    let env = Env::new().await;
    env.named_config_map("auth-headers", &[("X-Custom", "42"), ("X-Auth-Host", "$host")]);
    let url = env.auth_url(SIGNED_IN);
    env.ingress("plain", &["/plain"], &[("auth-url", &url)]);
    env.ingress(
        "method",
        &["/method"],
        &[
            ("auth-url", &url),
            ("auth-method", "POST"),
            ("auth-request-redirect", "https://login.example/done"),
            ("auth-proxy-set-headers", "auth-headers"),
        ],
    );
    let s = env.start(&[]).await;

    let credentials = basic_credentials("user", "password");
    let sent = [
        ("authorization", credentials.as_str()),
        ("cookie", "session=abc"),
        ("x-client", "1"),
        ("x-forwarded-for", "10.9.9.9"),
        ("x-forwarded-proto", "https"),
        ("x-original-url", "http://spoofed/"),
        ("x-original-method", "DELETE"),
        ("x-sent-from", "client"),
        ("x-real-ip", "10.9.9.9"),
        ("x-auth-request-redirect", "/spoofed"),
        ("x-original-uri", "/spoofed"),
        ("x-scheme", "spoofed"),
        ("x-custom", "client"),
    ];
    for proto in [Proto::H1, Proto::H2c] {
        for (path, request_id) in [("/plain", None), ("/method", Some("client-chosen-id"))] {
            let target = format!("{path}/x?y=1");
            let mut headers = sent.to_vec();
            headers.extend(request_id.map(|id| ("x-request-id", id)));
            let what = format!("{proto:?} POST {target}");
            let r =
                call(&s, proto, "POST", "App.Example:8080", &target, &headers, "a request body")
                    .await;
            assert!(r.status == 200 && from_backend(&r), "{what}: {r:?}");

            let sub = env.auth.last();
            let up = env.backend.last();
            let method = path == "/method";
            assert_eq!(sub.method, if method { "POST" } else { "GET" }, "{what}");
            assert_eq!(sub.uri, SIGNED_IN, "{what}");
            assert!(sub.body.is_empty(), "{what}: no body to the auth service");
            for framing in ["content-length", "transfer-encoding"] {
                assert!(sub.values(framing).is_empty(), "{what}: {framing} in {sub:?}");
            }
            let expected = [
                ("authorization", credentials.as_str()),
                ("cookie", "session=abc"),
                ("x-client", "1"),
                ("x-original-url", &format!("http://App.Example:8080{target}")),
                ("x-original-method", "POST"),
                ("x-sent-from", "nginx-ingress-controller"),
                ("x-real-ip", "127.0.0.1"),
                ("x-forwarded-for", "127.0.0.1"),
                (
                    "x-auth-request-redirect",
                    if method { "https://login.example/done" } else { &target },
                ),
                ("x-original-uri", if method { &target } else { "/spoofed" }),
                ("x-scheme", if method { "http" } else { "spoofed" }),
                ("x-custom", if method { "42" } else { "client" }),
            ];
            for (name, value) in expected {
                assert_eq!(sub.values(name), [value], "{what}: {name} of the subrequest");
            }
            assert!(sub.values("x-forwarded-proto").is_empty(), "{what}: {sub:?}");
            let host = sub.values("host");
            let auth_host = host.len() == 1 && host[0].starts_with("127.0.0.1");
            assert!(auth_host, "{what}: the auth URL's Host, not the client's: {host:?}");
            let auth_host: &[&str] = if method { &["app.example"] } else { &[] };
            assert_eq!(sub.values("x-auth-host"), auth_host, "{what}");
            // The client's X-Request-ID, else one Sluice makes (NGINX's `$req_id`, 32 hex
            // digits; see `a_fresh_request_id_is_the_subrequests_and_the_backends`).
            let id = sub.values("x-request-id");
            if let Some(chosen) = request_id {
                assert_eq!(id, [chosen], "{what}");
                assert_eq!(up.values("x-request-id"), [chosen], "{what}: the backend's");
            } else {
                let fresh = |v: &str| v.len() == 32 && v.bytes().all(|c| c.is_ascii_hexdigit());
                assert!(id.len() == 1 && fresh(id[0]), "{what}: {id:?}");
            }

            assert_eq!((up.method.as_str(), up.uri.as_str()), ("POST", target.as_str()), "{what}");
            assert_eq!(up.body, "a request body", "{what}: the backend gets the body");
            assert_eq!(up.values("authorization"), [credentials.as_str()], "{what}");
        }
    }
    assert_eq!(env.auth.count(), 4, "one subrequest per request");
}

// NGINX's `$req_id` is one per request: the `X-Request-ID` of the subrequest (nginx.tmpl's auth
// location) is the one the backend gets (and the access log shows), a fresh one included.
#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_request_id_is_the_subrequests_and_the_backends() {
    let env = Env::new().await;
    env.ingress("app", &["/"], &[("auth-url", &env.auth_url("/status/200"))]);
    let s = env.start(&[]).await;
    let r = hit(&s, "/", &[]).await;
    assert!(r.status == 200 && from_backend(&r), "{r:?}");
    let sub = env.auth.last();
    assert_eq!(env.backend.last().values("x-request-id"), sub.values("x-request-id"));
}

// ingress-nginx's `Host: authURL.Hostname()` (internal/ingress/annotations/authreq/main.go),
// rendered `proxy_set_header Host <host>`: the subrequest's `Host` is the auth URL's host name,
// without its port, whatever the client's `Host`.
#[tokio::test(flavor = "multi_thread")]
async fn the_subrequest_host_is_the_auth_urls_host_name() {
    let env = Env::new().await;
    env.ingress("app", &["/"], &[("auth-url", &env.auth_url("/status/200"))]);
    let s = env.start(&[]).await;
    assert_eq!(hit(&s, "/", &[]).await.status, 200);
    assert_eq!(env.auth.last().values("host"), ["127.0.0.1"]);
}

// ---------------------------------------------------------------------------------------
// What the auth service says

// NGINX's auth_request: any 2xx lets the request through; 401 goes back with the auth
// service's `WWW-Authenticate`; 403 goes back; any other status (a 3xx, 404, 5xx), an auth
// service that cannot be reached or does not answer within the route's timeouts is a 500.
// The answers other than the backend's are Sluice's pages (the auth service's body never
// reaches the client); the auth service is asked once per request, and the backend only
// reached after a yes.
#[tokio::test(flavor = "multi_thread")]
async fn the_auth_services_status_decides() {
    let env = Env::new().await;
    let down = format!("http://{}/auth", unused_addr());
    let timeouts = [("proxy-connect-timeout", "1"), ("proxy-read-timeout", "1")];
    // (Ingress, auth-url, credentials sent, status expected)
    let cases = [
        ("signed-in", env.auth_url(SIGNED_IN), true, 200),
        ("signed-out", env.auth_url(SIGNED_IN), false, 401),
        ("created", env.auth_url("/status/201"), false, 200),
        ("no-content", env.auth_url("/status/204"), false, 200),
        ("forbidden", env.auth_url("/status/403"), false, 403),
        ("found", env.auth_url("/status/302"), false, 500),
        ("not-found", env.auth_url("/status/404"), false, 500),
        ("error", env.auth_url("/status/500"), false, 500),
        ("unavailable", env.auth_url("/status/503"), false, 500),
        ("down", down, false, 500),
        ("slow", env.auth_url("/slow"), false, 500),
    ];
    for (name, url, _, _) in &cases {
        let mut annotations = vec![("auth-url", url.as_str())];
        if *name == "slow" {
            annotations.extend(timeouts);
        }
        env.ingress(name, &[&format!("/{name}")], &annotations);
    }
    let s = env.start(&[]).await;

    let credentials = basic_credentials("user", "password");
    for (name, _, signed_in, status) in &cases {
        let headers: &[(&str, &str)] =
            if *signed_in { &[("authorization", &credentials)] } else { &[] };
        let (asked, reached) = (env.auth.count(), env.backend.count());
        let started = Instant::now();
        let r = hit(&s, &format!("/{name}"), headers).await;
        if *status == 200 {
            assert!(r.status == 200 && from_backend(&r), "{name}: {r:?}");
        } else {
            assert_local(&r, *status, name);
        }
        let challenge: &[&str] = if *status == 401 { &["Basic realm=\"Fake Realm\""] } else { &[] };
        assert_eq!(values(&r, "www-authenticate"), challenge, "{name}");
        assert_eq!(env.auth.count(), asked + usize::from(*name != "down"), "{name}: asked once");
        let through = usize::from(*status == 200);
        assert_eq!(env.backend.count(), reached + through, "{name}: the backend reached?");
        if *name == "slow" {
            assert!(started.elapsed() < Duration::from_secs(5), "{name}: {:?}", started.elapsed());
        }
    }
}

// Sluice bounds the subrequest with the route's timeouts (ingress-nginx's auth location sets
// none, so NGINX's 60 s defaults apply there), as `auth::ask` documents: `proxy-connect-timeout`
// the connection, `proxy-read-timeout` the answer, read as NGINX's `proxy_read_timeout` (the wait
// once connected). An auth service that accepts the connection and never answers gets a 500
// after `proxy-read-timeout` (1 s here), whatever `proxy-connect-timeout` (its default, 5 s).
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_auth_service_is_a_500_after_the_read_timeout() {
    let env = Env::new().await;
    let url = env.auth_url("/slow");
    env.ingress("slow", &["/"], &[("auth-url", &url), ("proxy-read-timeout", "1")]);
    let s = env.start(&[]).await;
    let started = Instant::now();
    let r = hit(&s, "/", &[]).await;
    let elapsed = started.elapsed();
    assert_local(&r, 500, "slow");
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "the read timeout is 1 s, waited {elapsed:?}");
    assert_eq!(env.backend.count(), 0);
}

// auth.go "should overwrite Foo header with auth response": the headers `auth-response-headers`
// lists are copied from the auth service's answer to the upstream request, replacing the
// client's; when the auth service sends none, the client's never pass either (spoofing). Other
// headers of the auth service's answer reach neither the backend nor the client; without the
// annotation, the client's headers of those names pass like any other.
#[tokio::test(flavor = "multi_thread")]
async fn auth_response_headers_replace_the_clients() {
    let env = Env::new().await;
    let listed = ("auth-response-headers", "X-User, X-Email");
    let signed_in = env.auth_url(SIGNED_IN);
    let silent = env.auth_url("/status/200");
    env.ingress("copied", &["/copied"], &[("auth-url", &signed_in), listed]);
    env.ingress("silent", &["/silent"], &[("auth-url", &silent), listed]);
    env.ingress("unlisted", &["/unlisted"], &[("auth-url", &signed_in)]);
    let s = env.start(&[]).await;

    let credentials = basic_credentials("user", "password");
    let spoofed = [
        ("authorization", credentials.as_str()),
        ("x-user", "mallory"),
        ("x-email", "mallory@example.com"),
        ("x-auth-other", "client"),
    ];
    // (path, X-User and X-Email the backend gets)
    let cases: [(&str, &[&str], &[&str]); 3] = [
        ("/copied", &["user"], &["user@example.com"]),
        ("/silent", &[], &[]),
        ("/unlisted", &["mallory"], &["mallory@example.com"]),
    ];
    for proto in [Proto::H1, Proto::H2c] {
        for (path, user, email) in cases {
            let r = call(&s, proto, "GET", HOST, path, &spoofed, "").await;
            assert!(r.status == 200 && from_backend(&r), "{proto:?} {path}: {r:?}");
            let up = env.backend.last();
            assert_eq!(up.values("x-user"), user, "{proto:?} {path}");
            assert_eq!(up.values("x-email"), email, "{proto:?} {path}");
            assert_eq!(up.values("x-auth-other"), ["client"], "{proto:?} {path}");
            for name in ["x-user", "x-email", "x-auth-other"] {
                assert!(values(&r, name).is_empty(), "{proto:?} {path}: {name} to the client");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sign-in redirects

// auth.go "should redirect to signin url when not signed in", and "with a custom redirect
// param": a 401 of the auth service becomes a 302 to `auth-signin` (variables filled in: `$host`
// is the host name, lower case, without port) with the original URL
// (`$pass_access_scheme://$http_host$escaped_request_uri`) in `rd`, or the parameter
// `auth-signin-redirect-param` names; a sign-in URL that has the parameter already (the
// oauth2-proxy guide's `rd=$escaped_request_uri`) is kept. Signed in, the backend answers; a
// 403 is not redirected.
#[tokio::test(flavor = "multi_thread")]
async fn a_401_redirects_to_auth_signin() {
    let env = Env::new().await;
    let url = env.auth_url(SIGNED_IN);
    let signin = ("auth-signin", "http://$host/auth/start");
    env.ingress("signin", &["/"], &[("auth-url", &url), signin]);
    let param = ("auth-signin-redirect-param", "orig");
    env.ingress("orig", &["/orig"], &[("auth-url", &url), signin, param]);
    let guide = ("auth-signin", "https://$host/oauth2/start?rd=$escaped_request_uri");
    env.ingress("guide", &["/guide"], &[("auth-url", &url), guide]);
    let forbidden = env.auth_url("/status/403");
    env.ingress("forbidden", &["/forbidden"], &[("auth-url", &forbidden), signin]);
    let s = env.start(&[]).await;

    let credentials = basic_credentials("user", "password");
    // (Host, path, signed in, status, Location)
    let cases = [
        (
            HOST,
            "/?a=b&c=d",
            false,
            302,
            Some("http://auth/auth/start?rd=http://auth%2F%3Fa%3Db%26c%3Dd"),
        ),
        (HOST, "/?a=b&c=d", true, 200, None),
        (
            HOST,
            "/orig?a=b&c=d",
            false,
            302,
            Some("http://auth/auth/start?orig=http://auth%2Forig%3Fa%3Db%26c%3Dd"),
        ),
        (HOST, "/orig?a=b&c=d", true, 200, None),
        (
            "Auth.Example:8080",
            "/p/a-b_c.d~e?q=%C3%A9",
            false,
            302,
            Some(
                "http://auth.example/auth/start?rd=http://Auth.Example:8080%2Fp%2Fa-b_c.d~e%3Fq%3D%25C3%25A9",
            ),
        ),
        (
            HOST,
            "/guide/a?b=c",
            false,
            302,
            Some("https://auth/oauth2/start?rd=%2Fguide%2Fa%3Fb%3Dc"),
        ),
        (HOST, "/forbidden?a=b", false, 403, None),
    ];
    for (host, path, signed_in, status, location) in cases {
        let headers: &[(&str, &str)] =
            if signed_in { &[("authorization", &credentials)] } else { &[] };
        let reached = env.backend.count();
        let r = call(&s, Proto::H1, "GET", host, path, headers, "").await;
        let what = format!("{host} {path} signed in: {signed_in}");
        if status == 200 {
            assert!(r.status == 200 && from_backend(&r), "{what}: {r:?}");
        } else {
            assert_local(&r, status, &what);
        }
        let expected: Vec<String> = location.map(String::from).into_iter().collect();
        assert_eq!(values(&r, "location"), expected, "{what}");
        assert_eq!(env.backend.count(), reached + usize::from(status == 200), "{what}");
    }
}

// ---------------------------------------------------------------------------------------
// Cookies

// auth.go "cookie set by external authentication server": the auth service's `Set-Cookie`
// reaches the client with the backend's answer when that is a success ("user retains cookie by
// default"), not with an error ("does not retain cookie if upstream returns error status
// code"), unless `auth-always-set-cookie` ("retains cookie if upstream returns error status
// code"), which also puts it on the refusals (401, 403) and on the 500 of a failed check
// (NGINX's `add_header ... always`). The backend's own cookie is kept beside it.
#[tokio::test(flavor = "multi_thread")]
async fn the_auth_services_cookie_reaches_the_client() {
    let env = Env::new().await;
    let always = ("auth-always-set-cookie", "true");
    let yes = env.auth_url("/status/200");
    env.ingress("default", &["/"], &[("auth-url", &yes)]);
    env.ingress("always", &["/always"], &[("auth-url", &yes), always]);
    for status in [401, 403, 500] {
        let url = env.auth_url(&format!("/status/{status}"));
        let name = format!("refused-{status}");
        env.ingress(&name, &[&format!("/{name}")], &[("auth-url", &url)]);
        let name = format!("always-{status}");
        env.ingress(&name, &[&format!("/{name}")], &[("auth-url", &url), always]);
    }
    let s = env.start(&[]).await;

    let both = &[AUTH_COOKIE, BACKEND_COOKIE][..];
    // (path, status, the cookies the client gets)
    let cases: [(&str, u16, &[&str]); 10] = [
        ("/?a=b&c=d", 200, both),
        ("/error?a=b&c=d", 503, &[BACKEND_COOKIE]),
        ("/always", 200, both),
        ("/always/error", 503, both),
        ("/refused-401", 401, &[]),
        ("/refused-403", 403, &[]),
        ("/refused-500", 500, &[]),
        ("/always-401", 401, &[AUTH_COOKIE]),
        ("/always-403", 403, &[AUTH_COOKIE]),
        ("/always-500", 500, &[AUTH_COOKIE]),
    ];
    for (path, status, cookies) in cases {
        let r = hit(&s, path, &[]).await;
        assert_eq!(r.status, status, "{path}: {r:?}");
        assert_eq!(values(&r, "set-cookie"), cookies, "{path}");
    }
}

// ingress-nginx's sign-in location (nginx.tmpl: `add_header Set-Cookie $auth_cookie;` then
// `return 302 ...`): the auth service's `Set-Cookie` of its 401 goes with the redirect to
// `auth-signin`, `auth-always-set-cookie` or not (302 is one of `add_header`'s statuses, and
// auth_request sets `$auth_cookie` whatever the status). oauth2-proxy relies on it to clear a
// stale session cookie.
#[tokio::test(flavor = "multi_thread")]
async fn the_signin_redirect_carries_the_auth_services_cookie() {
    let env = Env::new().await;
    let url = env.auth_url("/status/401");
    env.ingress("app", &["/"], &[("auth-url", &url), ("auth-signin", "http://$host/start")]);
    let s = env.start(&[]).await;
    let r = hit(&s, "/", &[]).await;
    assert_eq!(values(&r, "location"), ["http://auth/start?rd=http://auth%2F"]);
    assert_eq!(values(&r, "set-cookie"), [AUTH_COOKIE]);
}

// ---------------------------------------------------------------------------------------
// Settings that cannot be applied

// auth.go "with invalid auth-url should deny whole location" (503, and the error in the
// configuration) and "keeps processing new ingresses even if one of the existing ingresses is
// misconfigured": an `auth-url` that is not an http(s) URL with a valid host, an invalid
// `auth-method`, response header name or `auth-proxy-set-headers` ConfigMap (missing, or in
// another namespace), or a missing basic-auth Secret beside `auth-url`, make the Ingress's
// routes answer 503 with a diagnostic, whatever the credentials; the auth service is never
// asked, the backend never reached; other Ingresses are served.
#[tokio::test(flavor = "multi_thread")]
async fn settings_that_cannot_be_applied_answer_503() {
    let env = Env::new().await;
    let url = env.auth_url(SIGNED_IN);
    let with_url = |extra: &[(&'static str, &'static str)]| {
        let mut a = vec![("auth-url", url.clone())];
        a.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        a
    };
    // (Ingress, annotations, the diagnostic's reason and a part of its message)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str, &'a str);
    let broken: [Case; 9] = [
        (
            "e2e",
            vec![("auth-url", "https://invalid..auth.url".into())],
            "InvalidAnnotation",
            "auth-url",
        ),
        (
            "double-dot",
            vec![("auth-url", "http://invalid..host/auth".into())],
            "InvalidAnnotation",
            "auth-url",
        ),
        ("ftp", vec![("auth-url", "ftp://x/auth".into())], "InvalidAnnotation", "auth-url"),
        ("no-host", vec![("auth-url", "http:///auth".into())], "InvalidAnnotation", "auth-url"),
        ("method", with_url(&[("auth-method", "FOO")]), "InvalidAnnotation", "auth-method"),
        (
            "response-header",
            with_url(&[("auth-response-headers", "X-User, X@User")]),
            "InvalidAnnotation",
            "auth-response-headers",
        ),
        (
            "set-headers-missing",
            with_url(&[("auth-proxy-set-headers", "nothing")]),
            "InvalidAnnotation",
            "ConfigMap default/nothing does not exist",
        ),
        (
            "set-headers-elsewhere",
            with_url(&[("auth-proxy-set-headers", "kube-system/auth-headers")]),
            "InvalidAnnotation",
            "another namespace",
        ),
        (
            "basic-missing",
            with_url(&[
                ("auth-signin", "http://$host/auth/start"),
                ("auth-type", "basic"),
                ("auth-secret", "something"),
                ("auth-realm", "test auth"),
            ]),
            "MissingSecret",
            "Secret default/something does not exist",
        ),
    ];
    for (name, annotations, _, _) in &broken {
        let refs: Vec<(&str, &str)> = annotations.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.ingress(name, &[&format!("/{name}")], &refs);
    }
    env.ingress("fine", &["/fine"], &[]);
    let expected: Vec<(&str, &str)> = broken.iter().map(|(_, _, r, n)| (*r, *n)).collect();
    let s = env.start(&expected).await;

    let credentials = basic_credentials("user", "password");
    for (name, _, _, _) in &broken {
        for headers in [&[][..], &[("authorization", credentials.as_str())]] {
            let r = hit(&s, &format!("/{name}"), headers).await;
            assert_local(&r, 503, name);
            assert!(values(&r, "location").is_empty(), "{name}: {r:?}");
        }
    }
    assert_eq!((env.auth.count(), env.backend.count()), (0, 0));
    let r = hit(&s, "/fine", &[]).await;
    assert!(r.status == 200 && from_backend(&r), "{r:?}");
}

// ---------------------------------------------------------------------------------------
// Global external authentication

// global_external_auth.go "should return status code 401 when request any protected
// service": `global-auth-url` protects the Ingresses that carry no annotation at all.
#[tokio::test(flavor = "multi_thread")]
async fn global_auth_url_protects_ingresses_without_annotations() {
    let env = Env::new().await;
    env.config_map(&[("global-auth-url", &env.auth_url("/status/401"))]);
    env.ingress("foo", &["/foo"], &[]);
    let s = env.start(&[]).await;
    assert_local(&hit(&s, "/foo", &[]).await, 401, "/foo");
    assert_eq!((env.auth.count(), env.backend.count()), (1, 0));
}

// global_external_auth.go, on Ingresses that carry an annotation of another family (see
// `global_auth_url_protects_ingresses_without_annotations` for those without any):
// `global-auth-url` protects them; `enable-global-auth: "false"` opts an Ingress out ("whitelisted
// (via ingress annotation)"), an Ingress's own `auth-url` replaces the global one, and
// `no-auth-locations` (by default `/.well-known/acme-challenge`; set, it replaces the default:
// "whitelisted (via no-auth-locations)") are not checked. The other `global-auth-*` keys apply
// as their annotations do: `global-auth-signin` and `-signin-redirect-param`,
// `-response-headers`, `-method`, `-request-redirect` and `-always-set-cookie` ("user with
// global-auth-always-set-cookie key in configmap retains cookie if upstream returns error status
// code"). Every change is live. A `global-auth-url` Sluice cannot use makes every route answer
// 503 (ingress-nginx would drop the global authentication and serve unprotected).
#[tokio::test(flavor = "multi_thread")]
async fn global_auth_url_protects_every_ingress_that_does_not_opt_out() {
    let env = Env::new().await;
    let deny = env.auth_url("/status/401");
    let signed_in = env.auth_url(SIGNED_IN);
    env.config_map(&[("global-auth-url", &deny)]);
    let other = ("proxy-body-size", "1m");
    env.ingress("foo", &["/foo"], &[other]);
    env.ingress("bar", &["/bar"], &[other]);
    env.ingress("opt-out", &["/opt-out"], &[other, ("enable-global-auth", "false")]);
    env.ingress("own", &["/own"], &[("auth-url", &signed_in)]);
    env.ingress("acme", &["/.well-known/acme-challenge"], &[other]);
    let s = env.start(&[]).await;

    let credentials = basic_credentials("user", "password");
    let signed = [("authorization", credentials.as_str())];
    let acme = "/.well-known/acme-challenge/token";
    // Checks each `(path, signed in, status, what the auth service is asked, if it is)`.
    let check = async |cases: &[(&str, bool, u16, Option<&str>)]| {
        for (path, signed_in, status, asked) in cases {
            let headers: &[(&str, &str)] = if *signed_in { &signed } else { &[] };
            let before = env.auth.count();
            let r = hit(&s, path, headers).await;
            assert_eq!(r.status, *status, "{path} signed in: {signed_in}: {r:?}");
            assert_eq!(from_backend(&r), *status == 200, "{path}: {r:?}");
            assert_eq!(env.auth.count(), before + usize::from(asked.is_some()), "{path}");
            if let Some(uri) = asked {
                assert_eq!(env.auth.last().uri, *uri, "{path}");
            }
        }
    };
    check(&[
        ("/foo", true, 401, Some("/status/401")),
        ("/bar", false, 401, Some("/status/401")),
        ("/opt-out", false, 200, None),
        ("/own", false, 401, Some(SIGNED_IN)),
        ("/own", true, 200, Some(SIGNED_IN)),
        (acme, false, 200, None),
    ])
    .await;

    env.reconfigure(&s, &[("global-auth-url", &deny), ("no-auth-locations", "/bar")]).await;
    check(&[
        ("/foo", false, 401, Some("/status/401")),
        ("/bar", false, 200, None),
        (acme, false, 401, Some("/status/401")),
    ])
    .await;

    env.reconfigure(
        &s,
        &[
            ("global-auth-url", &signed_in),
            ("global-auth-method", "POST"),
            ("global-auth-signin", "http://$host/global/start"),
            ("global-auth-signin-redirect-param", "back"),
            ("global-auth-response-headers", "X-User"),
            ("global-auth-request-redirect", "/after"),
            ("global-auth-always-set-cookie", "true"),
        ],
    )
    .await;
    let r = hit(&s, "/foo?a=b", &[]).await;
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(values(&r, "location"), ["http://auth/global/start?back=http://auth%2Ffoo%3Fa%3Db"]);
    let r = hit(&s, "/foo", &[signed[0], ("x-user", "mallory")]).await;
    assert!(r.status == 200 && from_backend(&r), "{r:?}");
    assert_eq!(env.backend.last().values("x-user"), ["user"]);
    let sub = env.auth.last();
    assert_eq!(sub.method, "POST");
    assert_eq!(sub.values("x-auth-request-redirect"), ["/after"]);
    assert_eq!(sub.values("x-original-uri"), ["/foo"]);
    let r = hit(&s, "/foo/error", &signed).await;
    assert_eq!(r.status, 503);
    assert_eq!(values(&r, "set-cookie"), [AUTH_COOKIE, BACKEND_COOKIE]);
    check(&[("/opt-out", false, 200, None), ("/own", true, 200, Some(SIGNED_IN))]).await;

    env.reconfigure(&s, &[("global-auth-url", "http://invalid..host/auth")]).await;
    assert_diagnostics(&s, &[("InvalidConfigMapKey", "global-auth-url")]).await;
    let before = env.backend.count();
    for path in ["/foo", "/opt-out", "/own", acme] {
        assert_local(&hit(&s, path, &signed).await, 503, path);
    }
    assert_eq!(env.backend.count(), before);
}

// ---------------------------------------------------------------------------------------
// satisfy

// satisfy.go "should allow multiple auth with satisfy any": basic authentication and
// `auth-url` under `satisfy: any`. The right basic credentials suffice (the auth service is not
// asked, and the backend does not get them); without them the auth service decides: its 401
// becomes the 302 to `auth-signin` the e2e expects, its yes (its own credentials) lets the
// request through. An address the allow list admits suffices too. Under `satisfy: all` (the
// default), the right basic credentials still need the auth service's yes.
#[tokio::test(flavor = "multi_thread")]
async fn satisfy_any_lets_basic_auth_or_the_auth_service_say_yes() {
    let env = Env::new().await;
    let line = tool("htpasswd", &["-n", "-b", "-B", "-C", "4", "uname", "pwd"]);
    env.m.write("secret.yaml", &secret("basic-secret", "Opaque", &[("auth", &line)]));
    let url = env.auth_url(SIGNED_IN);
    let both = [
        ("auth-type", "basic"),
        ("auth-secret", "basic-secret"),
        ("auth-realm", "test basic auth"),
        ("auth-url", &url),
        ("auth-signin", "http://$host/auth/start"),
    ];
    env.ingress("any", &["/any"], &[&both[..], &[("satisfy", "any")]].concat());
    env.ingress("all", &["/all"], &both);
    let deny = env.auth_url("/status/401");
    let listed = [("allowlist-source-range", "127.0.0.1"), ("auth-url", &deny), ("satisfy", "any")];
    env.ingress("listed", &["/listed"], &listed);
    let s = env.start(&[]).await;

    let (basic_ok, service_ok) =
        (basic_credentials("uname", "pwd"), basic_credentials("user", "password"));
    let signin = |path: &str| format!("http://auth/auth/start?rd=http://auth{path}");
    // (path, Authorization, status, Location, whether the auth service is asked)
    let cases = [
        ("/any?a=b&c=d", Some(&basic_ok), 200, None, false),
        ("/any?a=b&c=d", None, 302, Some(signin("%2Fany%3Fa%3Db%26c%3Dd")), true),
        ("/any", Some(&service_ok), 200, None, true),
        ("/listed", None, 200, None, false),
        ("/all", Some(&basic_ok), 302, Some(signin("%2Fall")), true),
    ];
    for (path, authorization, status, location, asked) in cases {
        let headers: Vec<(&str, &str)> =
            authorization.map(|a| ("authorization", a.as_str())).into_iter().collect();
        let before = env.auth.count();
        let r = hit(&s, path, &headers).await;
        let what = format!("{path} {authorization:?}");
        assert_eq!(r.status, status, "{what}: {r:?}");
        assert_eq!(from_backend(&r), status == 200, "{what}: {r:?}");
        assert_eq!(values(&r, "location"), location.into_iter().collect::<Vec<_>>(), "{what}");
        assert_eq!(env.auth.count(), before + usize::from(asked), "{what}: asked?");
        if status == 200 {
            let up = env.backend.last();
            assert!(up.values("authorization").is_empty(), "{what}: basic auth's credentials");
        }
    }
}

// NGINX's `error_page 401 = @signin` covers every 401 of the location, basic authentication's
// included (nginx.tmpl renders it beside `auth_basic`): under `satisfy: all` with wrong basic
// credentials, the client is redirected to `auth-signin` as well, not answered 401.
#[tokio::test(flavor = "multi_thread")]
async fn a_basic_auth_refusal_is_redirected_to_auth_signin_too() {
    let env = Env::new().await;
    let line = tool("htpasswd", &["-n", "-b", "-B", "-C", "4", "uname", "pwd"]);
    env.m.write("secret.yaml", &secret("basic-secret", "Opaque", &[("auth", &line)]));
    let url = env.auth_url(SIGNED_IN);
    let annotations = [
        ("auth-type", "basic"),
        ("auth-secret", "basic-secret"),
        ("auth-url", &url),
        ("auth-signin", "http://$host/auth/start"),
    ];
    env.ingress("all", &["/all"], &annotations);
    let s = env.start(&[]).await;
    let r = hit(&s, "/all", &[("authorization", &basic_credentials("user", "password"))]).await;
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(values(&r, "location"), ["http://auth/auth/start?rd=http://auth%2Fall"]);
}

// ---------------------------------------------------------------------------------------
// oauth2-proxy

/// The htpasswd user of the oauth2-proxy test (an address: oauth2-proxy uses it as the email
/// of basic-auth sessions with `--prefer-email-to-user`), and its password.
const USER: &str = "alice@example.com";
const PASSWORD: &str = "s3cret";

/// The oauth2-proxy binary, built by tests/oauth2-proxy/build (a no-op once built).
fn oauth2_proxy_binary() -> PathBuf {
    let bin = go_script_output("tests/oauth2-proxy/build").join("oauth2-proxy");
    assert!(bin.is_file(), "no {}: run tests/oauth2-proxy/build again", bin.display());
    bin
}

/// A running oauth2-proxy on loopback, killed on drop.
struct OAuth2Proxy {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl OAuth2Proxy {
    /// Starts oauth2-proxy in auth_request mode with the htpasswd file `users` and no
    /// reachable identity provider (a Google client it never calls); returns once `/ping`
    /// answers.
    async fn start(users: &str) -> OAuth2Proxy {
        let bin = oauth2_proxy_binary();
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("{users}\n")).unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let addr = unused_addr();
        let child = Command::new(bin)
            .env_clear()
            .arg(format!("--http-address=127.0.0.1:{}", addr.port()))
            .args(["--provider=google", "--client-id=sluice-test", "--client-secret=sluice-test"])
            .arg("--cookie-secret=0123456789abcdef0123456789abcdef")
            .args(["--cookie-secure=false", "--email-domain=*", "--upstream=static://202"])
            .arg(format!("--htpasswd-file={}", htpasswd.display()))
            .args(["--reverse-proxy", "--trusted-proxy-ip=127.0.0.1", "--set-xauthrequest"])
            .arg("--prefer-email-to-user")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("oauth2-proxy starts");
        let mut proxy = OAuth2Proxy { child, addr, dir };
        let deadline = Instant::now() + WAIT;
        let ping = format!("http://{addr}/ping");
        loop {
            let req = request("GET", &ping, None, Bytes::new());
            if let Ok(Ok(r)) = tokio::time::timeout(WAIT, client().request(req)).await
                && r.status() == 200
            {
                return proxy;
            }
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("oauth2-proxy exited with {status}:\n{}", proxy.log());
            }
            assert!(Instant::now() < deadline, "oauth2-proxy is not ready:\n{}", proxy.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What it logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for OAuth2Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// docs/examples/auth/oauth-external-auth (oauth2-proxy.yaml), with a real oauth2-proxy: its
// own Ingress at `/oauth2` on the application's host, and the application's Ingress with
// `auth-url` its `/oauth2/auth` (in-cluster address) and `auth-signin` its sign-in page with
// `rd=$escaped_request_uri`. No identity provider can be reached offline, so users sign in with
// oauth2-proxy's htpasswd form (`--htpasswd-file`) in place of GitHub; the rest is the guide's
// flow. Unauthenticated, the client is sent to the sign-in page, which oauth2-proxy serves
// through Sluice with the original path; a wrong password is refused; the right one sets
// oauth2-proxy's session cookie and sends the client back, and with the cookie the request
// passes, `X-Auth-Request-User` (`auth-response-headers`) reaching the backend and the client's
// own never. oauth2-proxy's form sessions hold no email; its basic-auth sessions (the htpasswd
// credentials in `Authorization`, `--prefer-email-to-user`) give `X-Auth-Request-Email` too. A
// tampered cookie is sent back to sign in.
#[tokio::test(flavor = "multi_thread")]
async fn oauth2_proxy_guards_an_application_as_in_ingress_nginxs_guide() {
    let proxy =
        OAuth2Proxy::start(&tool("htpasswd", &["-n", "-b", "-B", "-C", "4", USER, PASSWORD])).await;
    let env = Env::new().await;
    env.m.write("svc-oauth2-proxy.yaml", &service("oauth2-proxy", &[proxy.addr]));
    env.ingress_to("oauth2-proxy", "oauth2-proxy", &["/oauth2"], &[]);
    let auth_url = format!("http://{}/oauth2/auth", proxy.addr);
    env.ingress(
        "app",
        &["/"],
        &[
            ("auth-url", &auth_url),
            ("auth-signin", "http://$host/oauth2/sign_in?rd=$escaped_request_uri"),
            ("auth-response-headers", "X-Auth-Request-User, X-Auth-Request-Email"),
        ],
    );
    let s = env.start(&[]).await;
    const APP: &str = "app.example";
    let get = async |path: &str, headers: &[(&str, &str)]| {
        call(&s, Proto::H1, "GET", APP, path, headers, "").await
    };
    let sign_in = async |password: &str| {
        let form =
            format!("username=alice%40example.com&password={password}&rd=%2Fdashboard%3Ftab%3D1");
        let headers = [("content-type", "application/x-www-form-urlencoded")];
        call(&s, Proto::H1, "POST", APP, "/oauth2/sign_in", &headers, &form).await
    };
    let log = || proxy.log();

    let r = get("/dashboard?tab=1", &[]).await;
    assert_eq!(r.status, 302, "{r:?}\n{}", log());
    let sign_in_page = "/oauth2/sign_in?rd=%2Fdashboard%3Ftab%3D1";
    assert_eq!(values(&r, "location"), [format!("http://{APP}{sign_in_page}")]);
    assert_eq!(env.backend.count(), 0);

    let page = get(sign_in_page, &[]).await;
    let html = String::from_utf8_lossy(&page.body);
    assert_eq!(page.status, 200, "{page:?}");
    assert!(html.contains(r#"<form method="POST" action="/oauth2/sign_in""#), "{html}");
    assert!(html.contains(r#"name="rd" value="/dashboard?tab=1""#), "{html}");

    // oauth2-proxy's session cookie (`name=value`) set by `r`, if any.
    let session_of = |r: &Reply| {
        let cookies = values(r, "set-cookie");
        let pairs = cookies.iter().filter_map(|c| c.split(';').next());
        pairs
            .map(str::to_string)
            .find(|p| p.len() > "_oauth2_proxy=".len() && p.starts_with("_oauth2_proxy="))
    };
    let wrong = sign_in("wrong").await;
    assert_eq!(wrong.status, 401, "{wrong:?}\n{}", log());
    assert_eq!(session_of(&wrong), None);

    let signed = sign_in(PASSWORD).await;
    assert_eq!(signed.status, 302, "{signed:?}\n{}", log());
    assert_eq!(values(&signed, "location"), ["/dashboard?tab=1"]);
    let session = session_of(&signed).unwrap_or_else(|| panic!("no session in {signed:?}"));

    let spoofed =
        [("x-auth-request-user", "mallory"), ("x-auth-request-email", "mallory@example.com")];
    let r =
        get("/dashboard?tab=1", &[&[("cookie", session.as_str())][..], &spoofed].concat()).await;
    assert!(r.status == 200 && from_backend(&r), "{r:?}\n{}", log());
    let up = env.backend.last();
    assert_eq!(up.uri, "/dashboard?tab=1");
    assert_eq!(up.values("x-auth-request-user"), [USER]);
    assert!(up.values("x-auth-request-email").is_empty(), "{up:?}");
    assert_eq!(up.values("cookie"), [session.as_str()]);

    let credentials = basic_credentials(USER, PASSWORD);
    let r = get("/api", &[&[("authorization", credentials.as_str())][..], &spoofed].concat()).await;
    assert!(r.status == 200 && from_backend(&r), "{r:?}\n{}", log());
    let up = env.backend.last();
    assert_eq!(up.values("x-auth-request-user"), [USER]);
    assert_eq!(up.values("x-auth-request-email"), [USER]);

    // One character of the encrypted session changed.
    let at = "_oauth2_proxy=".len() + 4;
    let other = if &session[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{other}{}", &session[..at], &session[at + 1..]);
    let r = get("/dashboard?tab=1", &[("cookie", tampered.as_str())]).await;
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(values(&r, "location"), [format!("http://{APP}{sign_in_page}")]);
    assert_eq!(env.backend.count(), 2, "only the signed-in requests reached the backend");
}

// `auth-cache-key` and `auth-cache-duration` (NGINX's `proxy_cache` of the auth location):
// answers are kept under the key for their status's time, so a second request with the same
// credentials does not ask the auth service again; a status the duration does not list is
// asked every time.
#[tokio::test(flavor = "multi_thread")]
async fn auth_answers_are_kept_per_key_and_status() {
    let env = Env::new().await;
    let url = env.auth_url(SIGNED_IN);
    let cached = [
        ("auth-url", url.as_str()),
        ("auth-cache-key", "$http_authorization"),
        ("auth-cache-duration", "200 1m"),
    ];
    env.ingress("cached", &["/cached"], &cached);
    let s = env.start(&[]).await;
    let before = env.auth.count();
    let good = basic_credentials("user", "password");
    for _ in 0..3 {
        let r = hit(&s, "/cached", &[("authorization", &good)]).await;
        assert!(from_backend(&r), "{r:?}");
    }
    assert_eq!(env.auth.count() - before, 1, "three requests, one key: asked once");
    let wrong = basic_credentials("user", "wrong");
    for _ in 0..2 {
        assert_eq!(hit(&s, "/cached", &[("authorization", &wrong)]).await.status, 401);
    }
    assert_eq!(env.auth.count() - before, 3, "401 is not kept by `200 1m`");
}
