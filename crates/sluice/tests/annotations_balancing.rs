//! Backend choice and balancing annotations, end to end against the real binary and real
//! backends, with ingress-nginx's semantics (its `balancer.lua`, `balancer/*.lua` and
//! `controller.go` `mergeAlternativeBackends`, and its e2e suites `annotations/canary.go`,
//! `affinity.go`, `affinitymode.go`, `upstreamhashby.go`, `serviceupstream.go`,
//! `loadbalance/`):
//!
//! - canary Ingresses: by header (`always`/`never`, an exact value, a pattern), by cookie, by
//!   weight (and weight total), their precedence, and what happens without endpoints or
//!   without a main Ingress; the access log and metrics naming the canary;
//! - cookie affinity: the cookie and its attributes, `balanced` and `persistent` modes,
//!   `session-cookie-change-on-failure`, `affinity-canary-behavior`;
//! - `upstream-hash-by` (and subsets), `load-balance: ewma` (annotation and ConfigMap),
//!   `service-upstream`.
//!
//! Decisions made per request (canary headers and cookies, session cookies, hash keys) are
//! asked of both ways of carrying a request: the HTTP/1.1 fast path (a keep-alive GET) and the
//! general path (the same GET over h2c, and a POST with a chunked body), which must decide alike.
//!
//! Most set-ups put each case on its own path of the catch-all host (`/<tag>`), so that the h2c
//! client needs no name resolution; balancing belongs to a backend, so each case has its own
//! Services. Statistical checks use bounds many standard deviations wide.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

const A: &str = "nginx.ingress.kubernetes.io/";

/// `nginx.ingress.kubernetes.io/<key>`.
fn key(k: &str) -> String {
    format!("{A}{k}")
}

/// Annotations from `(key, value)` pairs without the prefix.
fn annotations(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (key(k), v.to_string())).collect()
}

/// [`ingress`] with owned annotations.
fn ingress_with(
    name: &str,
    host: &str,
    paths: &[(&str, &str, &str)],
    pairs: &[(&str, &str)],
) -> String {
    let owned = annotations(pairs);
    let borrowed: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ingress(name, host, paths, &borrowed)
}

/// A manifests directory with the IngressClass.
fn manifests() -> Manifests {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m
}

/// The name ingress-nginx gives the backend of Service `svc` port 80 in `default`.
fn backend_name(svc: &str) -> String {
    format!("default-{svc}-80")
}

/// ingress-nginx's key of a backend in session cookies: `md5(md5(name) .. name)`.
fn backend_key(svc: &str) -> String {
    let name = backend_name(svc);
    md5_hex(format!("{}{name}", md5_hex(name.as_bytes())).as_bytes())
}

/// ingress-nginx's persistent-mode key of an endpoint: `md5(backend name .. "ip:port")`.
fn endpoint_key(svc: &str, addr: SocketAddr) -> String {
    md5_hex(format!("{}{addr}", backend_name(svc)).as_bytes())
}

// ---------------------------------------------------------------------------------------
// Clients: the fast path and the general path.

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One keep-alive HTTP/1.1 client for GETs (the fast path), one h2c client and one HTTP/1.1
/// client for POSTs with a chunked body (the general path).
struct Clients {
    fast: HttpClient,
    h2c: HttpClient,
    post: HttpClient,
}

/// A request to `url` with extra headers; a POST's body is sent chunked (hyper honours the
/// header), which only the general path carries.
fn req(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if method == "POST" {
        b = b.header("transfer-encoding", "chunked");
    }
    b.body(Full::new(Bytes::from_static(body))).unwrap()
}

impl Clients {
    fn new() -> Self {
        Self { fast: client(), h2c: h2c_client(), post: client() }
    }

    /// A GET over HTTP/1.1 keep-alive: the fast path.
    async fn get(&self, s: &Sluice, path: &str, headers: &[(&str, &str)]) -> Reply {
        send(&self.fast, req("GET", &s.url(path), headers, b"")).await
    }

    /// The same request three ways: a keep-alive GET (fast path), a GET over h2c and a POST
    /// with a chunked body (general path).
    async fn three(&self, s: &Sluice, path: &str, headers: &[(&str, &str)]) -> [Reply; 3] {
        let url = s.url(path);
        [
            send(&self.fast, req("GET", &url, headers, b"")).await,
            send(&self.h2c, req("GET", &url, headers, b"")).await,
            send(&self.post, req("POST", &url, headers, b"a body")).await,
        ]
    }

    /// The backend answering `path` with `headers`, the same on the fast and general paths.
    async fn backend(&self, s: &Sluice, path: &str, headers: &[(&str, &str)]) -> String {
        let replies = self.three(s, path, headers).await;
        for r in &replies {
            assert_eq!(r.status, 200, "{path} {headers:?}: {}", String::from_utf8_lossy(&r.body));
        }
        let names: Vec<String> = replies.iter().map(Reply::backend).collect();
        assert!(
            names.iter().all(|n| *n == names[0]),
            "{path} {headers:?}: fast path, h2c and POST disagree: {names:?}"
        );
        names[0].clone()
    }

    /// Asserts the backend that each `(path, X-Canary value, expected)` case reaches.
    async fn expect_by_header(&self, s: &Sluice, cases: &[(&str, Option<&str>, &str)]) {
        for &(path, value, expected) in cases {
            let headers: Vec<(&str, &str)> = value.map(|v| ("x-canary", v)).into_iter().collect();
            let got = self.backend(s, path, &headers).await;
            assert_eq!(got, expected, "{path} X-Canary: {value:?}");
        }
    }
}

/// How many of `n` keep-alive GETs of `path` each backend answered.
async fn tally(
    c: &Clients,
    s: &Sluice,
    path: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let r = c.get(s, path, headers).await;
        assert_eq!(r.status, 200, "{path}: {}", String::from_utf8_lossy(&r.body));
        *counts.entry(r.backend()).or_insert(0) += 1;
    }
    counts
}

// ---------------------------------------------------------------------------------------
// Cookies.

/// The `Set-Cookie` line of cookie `name`, if the response sets it (exactly once).
fn set_cookie(r: &Reply, name: &str) -> Option<String> {
    let lines: Vec<String> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .filter(|l| l.starts_with(&format!("{name}=")))
        .collect();
    assert!(lines.len() <= 1, "{name} set more than once: {lines:?}");
    lines.into_iter().next()
}

/// A `Set-Cookie` line's value and attributes (`name=value` first, then `Attr[=v]`).
fn cookie_parts(line: &str) -> (String, Vec<String>) {
    let mut parts = line.split(';').map(|p| p.trim().to_string());
    let first = parts.next().unwrap();
    let value = first.split_once('=').unwrap().1.to_string();
    (value, parts.collect())
}

/// The `name=value` pair to send back for a `Set-Cookie` line.
fn cookie_pair(line: &str) -> String {
    line.split(';').next().unwrap().trim().to_string()
}

/// A session cookie value's endpoint key and backend key (`<key>|<backend key>`).
fn split_value(value: &str) -> (String, String) {
    let (k, b) = value.split_once('|').unwrap_or_else(|| panic!("no | in {value:?}"));
    (k.to_string(), b.to_string())
}

// ---------------------------------------------------------------------------------------
// Canary set-ups.

/// Writes the site `tag` on path `/<tag>` of the catch-all host: Service `<tag>-main`
/// (endpoint `main`) behind Ingress `<tag>`, and Service `<tag>-canary` (endpoint `canary`)
/// behind the canary Ingress `<tag>-canary` for the same path, with `canary: "true"` and
/// `pairs`. Returns the path.
fn canary_site(
    m: &Manifests,
    tag: &str,
    main: SocketAddr,
    canary: SocketAddr,
    pairs: &[(&str, &str)],
) -> String {
    let path = format!("/{tag}");
    let (main_svc, canary_svc) = (format!("{tag}-main"), format!("{tag}-canary"));
    let mut canary_pairs = vec![("canary", "true")];
    canary_pairs.extend_from_slice(pairs);
    m.write(
        &format!("{tag}.yaml"),
        &[
            service(&main_svc, &[main]),
            service(&canary_svc, &[canary]),
            ingress_with(tag, "", &[(&path, "Prefix", &main_svc)], &[]),
            ingress_with(
                &format!("{tag}-canary"),
                "",
                &[(&path, "Prefix", &canary_svc)],
                &canary_pairs,
            ),
        ]
        .join("---\n"),
    );
    path
}

// canary-by-header: `always` sends to the canary and `never` keeps off it, whatever the
// weight; another value decides nothing and falls through to the weight (ingress-nginx
// `route_to_alternative_balancer`; e2e "when canaried by header with no value").
#[tokio::test(flavor = "multi_thread")]
async fn canary_by_header_always_never_and_other_values() {
    let (main, canary) = (echo("main").await, echo("canary").await);
    let m = manifests();
    let w0 = canary_site(&m, "w0", main, canary, &[("canary-by-header", "X-Canary")]);
    let w100 = canary_site(
        &m,
        "w100",
        main,
        canary,
        &[("canary-by-header", "X-Canary"), ("canary-weight", "100")],
    );
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();

    let (w0, w100) = (w0.as_str(), w100.as_str());
    let cases = [
        (w0, Some("always"), "canary"),
        (w0, Some("never"), "main"),
        (w0, Some("badheadervalue"), "main"),
        (w0, Some("Always"), "main"),
        (w0, None, "main"),
        (w100, Some("never"), "main"),
        (w100, Some("always"), "canary"),
        (w100, Some("badheadervalue"), "canary"),
        (w100, None, "canary"),
    ];
    c.expect_by_header(&s, &cases).await;
    // The header is found as NGINX's `$http_x_canary` finds it: any case, `_` for `-`.
    assert_eq!(c.get(&s, w0, &[("X-CANARY", "always")]).await.backend(), "canary");
}

// canary-by-header-value: only that exact value sends to the canary; any other value,
// `always` and `never` included, falls through to the cookie and the weight (e2e "when
// canaried by header with value").
#[tokio::test(flavor = "multi_thread")]
async fn canary_by_header_value_matches_exactly_and_never_is_not_special() {
    let (main, canary) = (echo("main").await, echo("canary").await);
    let m = manifests();
    let value = [("canary-by-header", "X-Canary"), ("canary-by-header-value", "DoCanary")];
    let w0 = canary_site(&m, "w0", main, canary, &value);
    let mut heavy = value.to_vec();
    heavy.push(("canary-weight", "100"));
    let w100 = canary_site(&m, "w100", main, canary, &heavy);
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();

    let (w0, w100) = (w0.as_str(), w100.as_str());
    let cases = [
        (w0, Some("DoCanary"), "canary"),
        (w0, Some("docanary"), "main"),
        (w0, Some("DoCanary2"), "main"),
        (w0, Some("always"), "main"),
        (w100, Some("never"), "canary"),
        (w100, Some("DoCanary"), "canary"),
        (w100, Some("other"), "canary"),
    ];
    c.expect_by_header(&s, &cases).await;
}

// canary-by-header-pattern: a regex on the header's value (unanchored, as `ngx.re.match`);
// with canary-by-header-value also set, the value decides and the pattern is ignored (e2e
// "when canaried by header with value and pattern").
#[tokio::test(flavor = "multi_thread")]
async fn canary_by_header_pattern_and_value_over_pattern() {
    let (main, canary) = (echo("main").await, echo("canary").await);
    let m = manifests();
    let pattern = canary_site(
        &m,
        "pattern",
        main,
        canary,
        &[("canary-by-header", "X-Canary"), ("canary-by-header-pattern", "^(beta|alpha)-[0-9]+$")],
    );
    let both = canary_site(
        &m,
        "both",
        main,
        canary,
        &[
            ("canary-by-header", "X-Canary"),
            ("canary-by-header-value", "exact"),
            ("canary-by-header-pattern", "^beta"),
        ],
    );
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();

    let (pattern, both) = (pattern.as_str(), both.as_str());
    let cases = [
        (pattern, Some("beta-1"), "canary"),
        (pattern, Some("alpha-42"), "canary"),
        (pattern, Some("gamma-1"), "main"),
        (pattern, Some("beta-"), "main"),
        (pattern, Some("always"), "main"),
        (both, Some("exact"), "canary"),
        (both, Some("beta-1"), "main"),
    ];
    c.expect_by_header(&s, &cases).await;
}

// canary-by-cookie (`always`/`never`, other values fall through to the weight), and the
// precedence header > cookie > weight (e2e "when canaried by cookie", "when canaried by
// header with value and cookie").
#[tokio::test(flavor = "multi_thread")]
async fn canary_by_cookie_and_the_precedence_header_cookie_weight() {
    let (main, canary) = (echo("main").await, echo("canary").await);
    let m = manifests();
    let rules = [("canary-by-header", "X-Canary"), ("canary-by-cookie", "Canary_Cookie")];
    let w0 = canary_site(&m, "w0", main, canary, &rules);
    let mut heavy = rules.to_vec();
    heavy.push(("canary-weight", "100"));
    let w100 = canary_site(&m, "w100", main, canary, &heavy);
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();

    for (path, header, cookie, expected) in [
        // The cookie alone.
        (&w0, None, Some("always"), "canary"),
        (&w100, None, Some("never"), "main"),
        (&w0, None, Some("maybe"), "main"),
        (&w100, None, Some("maybe"), "canary"),
        // The header wins over the cookie.
        (&w0, Some("always"), Some("never"), "canary"),
        (&w100, Some("never"), Some("always"), "main"),
        // A header value that decides nothing leaves it to the cookie.
        (&w0, Some("other"), Some("always"), "canary"),
        (&w100, Some("other"), Some("never"), "main"),
    ] {
        let cookie_header = cookie.map(|v| format!("a=1; Canary_Cookie={v}; b=2"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(h) = header {
            headers.push(("x-canary", h));
        }
        if let Some(v) = &cookie_header {
            headers.push(("cookie", v));
        }
        assert_eq!(
            c.backend(&s, path, &headers).await,
            expected,
            "{path} header {header:?} cookie {cookie:?}"
        );
    }
}

// canary-weight: 0 never diverts, 100 always does, 50 splits at random (ingress-nginx's
// `math.random(total) <= weight`; e2e "when canaried by weight").
#[tokio::test(flavor = "multi_thread")]
async fn canary_weight_0_100_and_an_even_split() {
    let (main, canary) = (echo("main").await, echo("canary").await);
    let m = manifests();
    let w0 = canary_site(&m, "w0", main, canary, &[("canary-weight", "0")]);
    let w100 = canary_site(&m, "w100", main, canary, &[("canary-weight", "100")]);
    let w50 = canary_site(&m, "w50", main, canary, &[("canary-weight", "50")]);
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();

    assert_eq!(tally(&c, &s, &w0, &[], 50).await, BTreeMap::from([("main".into(), 50)]));
    assert_eq!(tally(&c, &s, &w100, &[], 50).await, BTreeMap::from([("canary".into(), 50)]));
    // The general path too.
    assert_eq!(c.backend(&s, &w0, &[]).await, "main");
    assert_eq!(c.backend(&s, &w100, &[]).await, "canary");
    // 400 requests at p = 0.5: the bounds are 10 standard deviations away.
    let split = tally(&c, &s, &w50, &[], 400).await;
    let to_canary = split.get("canary").copied().unwrap_or(0);
    assert_eq!(split.values().sum::<usize>(), 400);
    assert!((100..=300).contains(&to_canary), "canary got {to_canary} of 400: {split:?}");
}

// canary-weight-total: the weight counts in that total (100 of 200 is half, 200 of 200 all);
// a total below 100 counts as 100 (balancer.lua), so 30 of "30" is 30%, not all.
#[tokio::test(flavor = "multi_thread")]
async fn canary_weight_total() {
    let (main, canary) = (echo("main").await, echo("canary").await);
    let m = manifests();
    let half = canary_site(
        &m,
        "half",
        main,
        canary,
        &[("canary-weight", "100"), ("canary-weight-total", "200")],
    );
    let all = canary_site(
        &m,
        "all",
        main,
        canary,
        &[("canary-weight", "200"), ("canary-weight-total", "200")],
    );
    let small = canary_site(
        &m,
        "small",
        main,
        canary,
        &[("canary-weight", "30"), ("canary-weight-total", "30")],
    );
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();

    assert_eq!(tally(&c, &s, &all, &[], 50).await, BTreeMap::from([("canary".into(), 50)]));
    let split = tally(&c, &s, &half, &[], 400).await;
    let to_canary = split.get("canary").copied().unwrap_or(0);
    assert!((100..=300).contains(&to_canary), "100/200: canary got {to_canary} of 400");
    // p = 0.3: 120 expected, standard deviation 9.2; honouring the total would give 400.
    let split = tally(&c, &s, &small, &[], 400).await;
    let to_canary = split.get("canary").copied().unwrap_or(0);
    assert!((40..=220).contains(&to_canary), "30/30: canary got {to_canary} of 400");
}

// A canary whose Service has no ready endpoint diverts nothing, header and weight
// notwithstanding: the main keeps all traffic (ingress-nginx has no balancer for it).
#[tokio::test(flavor = "multi_thread")]
async fn a_canary_without_ready_endpoints_leaves_all_traffic_on_the_main() {
    let (main, canary) = (echo("main").await, echo("canary").await);
    let m = manifests();
    m.write(
        "site.yaml",
        &[
            service("app", &[main]),
            service_with("canary", &[], &[canary]),
            ingress_with("web", "", &[("/", "Prefix", "app")], &[]),
            ingress_with(
                "web-canary",
                "",
                &[("/", "Prefix", "canary")],
                &[("canary", "true"), ("canary-by-header", "X-Canary"), ("canary-weight", "100")],
            ),
        ]
        .join("---\n"),
    );
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();
    assert_eq!(c.backend(&s, "/", &[("x-canary", "always")]).await, "main");
    assert_eq!(tally(&c, &s, "/", &[], 30).await, BTreeMap::from([("main".into(), 30)]));
}

// A main Ingress whose backend has no ready endpoint answers 503 even though its canary has
// some: ingress-nginx's quirk (the canary is only ever reached through the main's balancer).
#[tokio::test(flavor = "multi_thread")]
async fn a_main_backend_without_endpoints_answers_503_despite_a_ready_canary() {
    let (main, canary) = (echo("main").await, echo("canary").await);
    let m = manifests();
    m.write(
        "site.yaml",
        &[
            service_with("app", &[], &[main]),
            service("canary", &[canary]),
            ingress_with("web", "", &[("/", "Prefix", "app")], &[]),
            ingress_with(
                "web-canary",
                "",
                &[("/", "Prefix", "canary")],
                &[("canary", "true"), ("canary-by-header", "X-Canary"), ("canary-weight", "100")],
            ),
        ]
        .join("---\n"),
    );
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();
    for headers in [&[("x-canary", "always")][..], &[]] {
        for r in c.three(&s, "/", headers).await {
            assert_eq!(r.status, 503, "{headers:?}: {}", String::from_utf8_lossy(&r.body));
        }
    }
}

// A canary that matches no main Ingress's host, path and pathType diverts nothing, is
// reported (UnmatchedCanary), and serves nothing by itself: not as a host, not as a
// catch-all (e2e "Single canary Ingress", "should return 404 status for requests to the
// canary if no matching ingress is found").
#[tokio::test(flavor = "multi_thread")]
async fn a_canary_without_a_main_ingress_diverts_nothing_and_has_no_route() {
    let (main, canary) = (echo("main").await, echo("canary").await);
    let m = manifests();
    let canary_rules = [("canary", "true"), ("canary-weight", "100")];
    m.write(
        "site.yaml",
        &[
            service("app", &[main]),
            service("canary", &[canary]),
            ingress_with("main", "main.example.com", &[("/a", "Prefix", "app")], &[]),
            // Another path of the main's host.
            ingress_with("stray", "main.example.com", &[("/b", "Prefix", "canary")], &canary_rules),
            // The main's path, another pathType.
            ingress_with("exact", "main.example.com", &[("/a", "Exact", "canary")], &canary_rules),
            // A host nothing else serves.
            ingress_with(
                "lonely",
                "lonely.example.com",
                &[("/", "Prefix", "canary")],
                &canary_rules,
            ),
            // No host.
            ingress_with("nohost", "", &[("/c", "Prefix", "canary")], &canary_rules),
        ]
        .join("---\n"),
    );
    let s = Sluice::start(m.path(), &[]);

    for _ in 0..10 {
        let r = get(&s.url("/a"), Some("main.example.com")).await;
        assert_eq!((r.status.as_u16(), r.backend()), (200, "main".to_string()));
    }
    for (host, path) in [
        ("main.example.com", "/b"),
        ("lonely.example.com", "/"),
        ("lonely.example.com", "/a"),
        ("any.example.com", "/c"),
    ] {
        let r = get(&s.url(path), Some(host)).await;
        assert_eq!(r.status, 404, "{host}{path}: {}", String::from_utf8_lossy(&r.body));
    }
    let config = s.config().await;
    let unmatched: Vec<String> = config["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter(|d| d["reason"] == "UnmatchedCanary")
        .map(|d| d.to_string())
        .collect();
    for name in ["stray", "exact", "lonely", "nohost"] {
        assert!(
            unmatched
                .iter()
                .any(|d| d.contains(&format!("\"{name}\""))
                    || d.contains(&format!("default/{name}"))),
            "no UnmatchedCanary for {name}: {unmatched:#?}"
        );
    }
    let routes = config["hosts"].to_string();
    assert!(routes.contains("default/main"), "{routes}");
    for name in ["stray", "exact", "lonely", "nohost"] {
        assert!(
            !routes.contains(&format!("\"{name}\""))
                && !routes.contains(&format!("default/{name}\"")),
            "canary {name} has a route: {routes}"
        );
    }
    assert!(!routes.contains("lonely.example.com"), "the canary's host was created: {routes}");
}

/// Waits until the series of `nginx_ingress_controller_requests` with every one of `needles`
/// counts `count` (the workers flush about once a second), and returns its line.
async fn wait_requests_metric(s: &Sluice, needles: &[&str], count: u64) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text =
            String::from_utf8_lossy(&get(&s.admin_url("/metrics"), None).await.body).into_owned();
        let line = text.lines().find(|l| {
            l.starts_with("nginx_ingress_controller_requests{")
                && needles.iter().all(|n| l.contains(n))
        });
        if let Some(line) = line
            && line.ends_with(&format!(" {count}"))
        {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no requests metric with {needles:?} counting {count}: {line:?} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// The access log's `[$proxy_alternative_upstream_name]` and the metrics' `canary` label name
// the canary backend when it served, and are empty otherwise; `[$proxy_upstream_name]` and
// `service` stay the main's (ingress-nginx's log format and monitor.lua).
#[tokio::test(flavor = "multi_thread")]
async fn the_access_log_and_metrics_name_the_canary_backend() {
    let (main, canary) = (echo("main").await, echo("canary").await);
    let m = manifests();
    m.write(
        "site.yaml",
        &[
            service("app", &[main]),
            service("canary", &[canary]),
            ingress_with("web", "", &[("/", "Prefix", "app")], &[]),
            ingress_with(
                "web-canary",
                "",
                &[("/", "Prefix", "canary")],
                &[("canary", "true"), ("canary-by-header", "X-Canary")],
            ),
        ]
        .join("---\n"),
    );
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();
    let url = s.url("/logged");
    let cases = [
        (&c.fast, "GET", "always", "log-fast-canary", "canary"),
        (&c.h2c, "GET", "always", "log-h2c-canary", "canary"),
        (&c.post, "POST", "always", "log-post-canary", "canary"),
        (&c.fast, "GET", "never", "log-fast-main", "main"),
        (&c.h2c, "GET", "never", "log-h2c-main", "main"),
    ];
    for (client, method, value, id, expected) in cases {
        let r = send(client, req(method, &url, &[("x-canary", value), ("x-request-id", id)], b""))
            .await;
        assert_eq!(r.backend(), expected, "{id}");
    }
    for (_, _, value, id, _) in cases {
        let line = s.wait_stdout(|l| l.ends_with(&format!(" {id}")));
        let alternative = if value == "always" { "default-canary-80" } else { "" };
        assert!(line.contains(&format!(" [default-app-80] [{alternative}] ")), "{id}: {line}");
        let served_by = if value == "always" { canary } else { main };
        assert!(line.contains(&format!("] {served_by} ")), "{id} upstream address: {line}");
    }
    // Served by the canary: two GETs and a POST; by the main: two GETs. `service` stays the
    // main's.
    let labels = |canary: &'static str, method: &'static str| {
        [canary, method, "ingress=\"web\"", "service=\"app\"", "status=\"200\""]
    };
    let canary = "canary=\"default-canary-80\"";
    wait_requests_metric(&s, &labels(canary, "method=\"GET\""), 2).await;
    wait_requests_metric(&s, &labels(canary, "method=\"POST\""), 1).await;
    wait_requests_metric(&s, &labels("canary=\"\"", "method=\"GET\""), 2).await;
}

// ---------------------------------------------------------------------------------------
// Cookie affinity.

// affinity: cookie sets INGRESSCOOKIE (HttpOnly, Path = the rule's path, no other attribute
// by default, value `<key>|<md5(md5(backend) .. backend)>`) on a request without a cookie,
// and only then; a request carrying it stays on its endpoint; different clients are spread
// (e2e "should set sticky cookie SERVERID", "should set the path to /something").
#[tokio::test(flavor = "multi_thread")]
async fn cookie_affinity_pins_each_client_to_one_endpoint() {
    let (a, b, c3) = (echo("a").await, echo("b").await, echo("c").await);
    let m = manifests();
    m.write("svc.yaml", &service("app", &[a, b, c3]));
    m.write(
        "ing.yaml",
        &ingress_with("web", "", &[("/app", "Prefix", "app")], &[("affinity", "cookie")]),
    );
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();

    // Without a cookie, all three ways set one.
    for r in c.three(&s, "/app/x", &[]).await {
        assert_eq!(r.status, 200);
        let line = set_cookie(&r, "INGRESSCOOKIE").unwrap_or_else(|| panic!("{:?}", r.headers));
        let (value, attrs) = cookie_parts(&line);
        assert_eq!(attrs, ["Path=/app", "HttpOnly"], "{line}");
        let (key, backend) = split_value(&value);
        assert!(!key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic()), "{line}");
        assert_eq!(backend, backend_key("app"), "{line}");
    }

    // Each of 30 new clients is pinned, and replaying its cookie finds its endpoint, the
    // same on the fast and general paths, with no new cookie.
    let mut pinned = Vec::new();
    for i in 0..30 {
        let r = c.get(&s, &format!("/app/{i}"), &[]).await;
        let line = set_cookie(&r, "INGRESSCOOKIE").expect("a cookie for a new client");
        pinned.push((cookie_pair(&line), r.backend()));
    }
    let spread: BTreeSet<&String> = pinned.iter().map(|(_, b)| b).collect();
    assert!(spread.len() >= 2, "30 clients all pinned to {spread:?}");
    for (i, (cookie, first)) in pinned.iter().enumerate() {
        let headers = [("cookie", cookie.as_str())];
        for r in c.three(&s, &format!("/app/again/{i}"), &headers).await {
            assert_eq!(r.status, 200);
            assert_eq!(&r.backend(), first, "{cookie} moved");
            assert!(set_cookie(&r, "INGRESSCOOKIE").is_none(), "a valid cookie was replaced");
        }
    }
    // Balanced keys are not checked against a list: any key places the client on the ring
    // (ingress-nginx's `find`), so it is kept rather than replaced.
    let foreign = "INGRESSCOOKIE=issued-by-another-replica|x";
    let first = c.backend(&s, "/app", &[("cookie", foreign)]).await;
    for _ in 0..5 {
        let r = c.get(&s, "/app", &[("cookie", foreign)]).await;
        assert_eq!(r.backend(), first);
        assert!(set_cookie(&r, "INGRESSCOOKIE").is_none());
    }
}

// The cookie's Path is the path of the rule that issued it, per rule; only the paths of
// Ingresses with `affinity` issue the cookie, while another Ingress's path to the same backend
// honours it (ingress-nginx's cookie "locations"; e2e "does not set the path to / on the
// generated cookie if there's more than one rule referring to the same backend", "should not
// set affinity across all server locations when using separate ingresses").
#[tokio::test(flavor = "multi_thread")]
async fn only_affinity_paths_issue_the_cookie_with_their_own_path() {
    let endpoints = [echo("a").await, echo("b").await, echo("c").await];
    let m = manifests();
    m.write("svc.yaml", &[service("app", &endpoints), service("multi", &endpoints)].join("---\n"));
    let sticky = [("affinity", "cookie")];
    m.write(
        "ing.yaml",
        &[
            ingress_with("ingress1", "", &[("/foo/bar", "Prefix", "app")], &sticky),
            ingress_with("ingress2", "", &[("/foo", "Prefix", "app")], &[]),
            ingress_with(
                "multi",
                "",
                &[("/something", "Prefix", "multi"), ("/somewhereelse", "Prefix", "multi")],
                &sticky,
            ),
        ]
        .join("---\n"),
    );
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();

    for (path, cookie_path) in [
        ("/foo/bar", Some("/foo/bar")),
        ("/foo", None),
        ("/foo/other", None),
        ("/something/x", Some("/something")),
        ("/somewhereelse", Some("/somewhereelse")),
    ] {
        for r in c.three(&s, path, &[]).await {
            assert_eq!(r.status, 200, "{path}");
            let line = set_cookie(&r, "INGRESSCOOKIE");
            let got = line.as_deref().map(|l| cookie_parts(l).1);
            let wanted = cookie_path.map(|p| vec![format!("Path={p}"), "HttpOnly".to_string()]);
            assert_eq!(got, wanted, "{path}: {line:?}");
        }
    }
    // A cookie issued under /foo/bar keeps its endpoint under /foo too.
    for i in 0..6 {
        let r = c.get(&s, &format!("/foo/bar/{i}"), &[]).await;
        let cookie = cookie_pair(&set_cookie(&r, "INGRESSCOOKIE").expect("a cookie"));
        let there = c.backend(&s, "/foo/elsewhere", &[("cookie", &cookie)]).await;
        assert_eq!(there, r.backend(), "{cookie}");
    }
}

/// Seconds since the epoch of an HTTP cookie date, `Wdy, DD-Mon-YYYY HH:MM:SS GMT`.
fn cookie_date(text: &str) -> i64 {
    let (_, rest) = text.split_once(", ").unwrap_or_else(|| panic!("{text}"));
    let mut it = rest.split([' ', '-', ':']);
    let mut next = || it.next().unwrap_or_else(|| panic!("{text}"));
    let day: i64 = next().parse().unwrap();
    let month_name = next();
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| *m == month_name)
        .unwrap_or_else(|| panic!("{text}")) as i64
        + 1;
    let year: i64 = next().parse().unwrap();
    let (h, mi, sec): (i64, i64, i64) =
        (next().parse().unwrap(), next().parse().unwrap(), next().parse().unwrap());
    assert_eq!(next(), "GMT", "{text}");
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + h * 3600 + mi * 60 + sec
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

const OLD_CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/51.0.2704.103 Safari/537.36";
const NEW_CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

// session-cookie-name, -path, -max-age, -expires, -domain, -samesite with
// -conditional-samesite-none (no SameSite=None for browsers that reject it, same_site.lua),
// and -secure: over plain HTTP `Secure` only with "true"; over HTTPS always, "false" or not
// (e2e "should set cookie with expires/domain", "should set secure in cookie ...").
#[tokio::test(flavor = "multi_thread")]
async fn session_cookie_attributes() {
    let app = echo("app").await;
    let m = manifests();
    let svcs: Vec<String> =
        ["attrs", "secure", "insecure", "plain"].iter().map(|n| service(n, &[app])).collect();
    m.write("svc.yaml", &svcs.join("---\n"));
    m.write(
        "ing.yaml",
        &[
            ingress_with(
                "attrs",
                "",
                &[("/attrs", "Prefix", "attrs")],
                &[
                    ("affinity", "cookie"),
                    ("session-cookie-name", "SERVERID"),
                    ("session-cookie-path", "/custom"),
                    ("session-cookie-max-age", "3600"),
                    ("session-cookie-expires", "7200"),
                    ("session-cookie-domain", "example.com"),
                    ("session-cookie-samesite", "None"),
                    ("session-cookie-conditional-samesite-none", "true"),
                ],
            ),
            ingress_with(
                "secure",
                "",
                &[("/secure", "Prefix", "secure")],
                &[("affinity", "cookie"), ("session-cookie-secure", "true")],
            ),
            ingress_with(
                "insecure",
                "",
                &[("/insecure", "Prefix", "insecure")],
                &[("affinity", "cookie"), ("session-cookie-secure", "false")],
            ),
            ingress_with(
                "plain",
                "",
                &[("/plain", "Prefix", "plain")],
                &[("affinity", "cookie"), ("session-cookie-samesite", "Strict")],
            ),
        ]
        .join("---\n"),
    );
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();

    for (ua, samesite) in [(NEW_CHROME, true), (OLD_CHROME, false)] {
        for r in c.three(&s, "/attrs/x", &[("user-agent", ua)]).await {
            let line = set_cookie(&r, "SERVERID").unwrap_or_else(|| panic!("{:?}", r.headers));
            assert!(set_cookie(&r, "INGRESSCOOKIE").is_none());
            let (value, attrs) = cookie_parts(&line);
            assert_eq!(split_value(&value).1, backend_key("attrs"));
            let expires = attrs
                .iter()
                .find_map(|a| a.strip_prefix("Expires="))
                .unwrap_or_else(|| panic!("no Expires: {line}"));
            let at = cookie_date(expires);
            assert!(
                (at - (now_secs() + 7200)).abs() <= 120,
                "Expires {expires} is not in 2 h: {line}"
            );
            let rest: Vec<&str> =
                attrs.iter().map(String::as_str).filter(|a| !a.starts_with("Expires=")).collect();
            let mut wanted = vec!["Max-Age=3600", "Domain=example.com", "Path=/custom", "HttpOnly"];
            if samesite {
                wanted.push("SameSite=None");
            }
            assert_eq!(rest, wanted, "{ua}: {line}");
        }
    }
    // Other SameSite values are kept for every browser.
    let r = c.get(&s, "/plain", &[("user-agent", OLD_CHROME)]).await;
    let line = set_cookie(&r, "INGRESSCOOKIE").unwrap();
    assert_eq!(cookie_parts(&line).1, ["Path=/plain", "HttpOnly", "SameSite=Strict"], "{line}");

    // Secure, over plain HTTP: only with "true".
    for (path, secure) in
        [("/secure", true), ("/insecure", false), ("/plain", false), ("/attrs", false)]
    {
        for r in c.three(&s, path, &[]).await {
            let line = r
                .headers
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .next()
                .unwrap_or_else(|| panic!("{path}: no cookie"));
            assert_eq!(
                cookie_parts(&line).1.iter().any(|a| a == "Secure"),
                secure,
                "{path}: {line}"
            );
        }
    }
    // Over HTTPS: always.
    for path in ["/secure", "/insecure", "/plain"] {
        let (r, _) = tls::get(s.https, "cookies.example.com", path).await;
        assert_eq!(r.status, 200, "{path}");
        let line =
            set_cookie(&r, "INGRESSCOOKIE").unwrap_or_else(|| panic!("{path}: {:?}", r.headers));
        assert!(cookie_parts(&line).1.iter().any(|a| a == "Secure"), "{path} over HTTPS: {line}");
    }
}

// affinity-mode: persistent. The key is ingress-nginx's `md5(backend name .. "ip:port")`, so
// a cookie names its endpoint (one issued by ingress-nginx works as is), an unknown key gets
// a new cookie, and adding endpoints moves no session (e2e "Check persistent affinity mode").
#[tokio::test(flavor = "multi_thread")]
async fn persistent_affinity_keys_name_their_endpoint_and_survive_scale_up() {
    let mut endpoints = vec![echo("e0").await, echo("e1").await];
    let names: HashMap<String, SocketAddr> = [("e0", endpoints[0]), ("e1", endpoints[1])]
        .into_iter()
        .map(|(n, a)| (n.to_string(), a))
        .collect();
    let m = manifests();
    m.write("svc.yaml", &service("app", &endpoints));
    m.write(
        "ing.yaml",
        &ingress_with(
            "web",
            "",
            &[("/", "Prefix", "app")],
            &[("affinity", "cookie"), ("affinity-mode", "persistent")],
        ),
    );
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();

    // A new client's key is its endpoint's.
    let mut sessions = Vec::new();
    for i in 0..12 {
        let r = c.get(&s, &format!("/{i}"), &[]).await;
        let line = set_cookie(&r, "INGRESSCOOKIE").expect("a cookie");
        let (key, backend) = split_value(&cookie_parts(&line).0);
        assert_eq!(backend, backend_key("app"));
        assert_eq!(
            key,
            endpoint_key("app", names[&r.backend()]),
            "{} answered: {line}",
            r.backend()
        );
        sessions.push((cookie_pair(&line), r.backend()));
    }
    // A key made as ingress-nginx makes it reaches its endpoint, fast path and general path.
    for (name, addr) in &names {
        let cookie = format!("INGRESSCOOKIE={}|{}", endpoint_key("app", *addr), backend_key("app"));
        for r in c.three(&s, "/", &[("cookie", &cookie)]).await {
            assert_eq!(&r.backend(), name);
            assert!(set_cookie(&r, "INGRESSCOOKIE").is_none());
        }
    }
    // An unknown key is replaced.
    let r = c.get(&s, "/", &[("cookie", "INGRESSCOOKIE=0123456789abcdef0123456789abcdef|x")]).await;
    let line = set_cookie(&r, "INGRESSCOOKIE").expect("a new cookie for an unknown key");
    assert_eq!(split_value(&cookie_parts(&line).0).0, endpoint_key("app", names[&r.backend()]));

    // Three more endpoints: every session stays where it was.
    for i in 2..5 {
        endpoints.push(echo(&format!("e{i}")).await);
    }
    let generation = s.generation().await;
    m.write("svc.yaml", &service("app", &endpoints));
    s.wait_generation_after(generation).await;
    assert!(tally(&c, &s, "/", &[], 30).await.len() >= 3, "new clients reach the new endpoints");
    for (cookie, first) in &sessions {
        for r in c.three(&s, "/", &[("cookie", cookie)]).await {
            assert_eq!(&r.backend(), first, "{cookie} moved after scaling up");
            assert!(set_cookie(&r, "INGRESSCOOKIE").is_none());
        }
    }
}

// affinity-mode: balanced (the default). Keys are placed on a consistent-hash ring, so adding
// endpoints moves some sessions, each to a new endpoint only (ingress-nginx's
// sticky_balanced.lua over resty.chash).
#[tokio::test(flavor = "multi_thread")]
async fn balanced_affinity_moves_some_sessions_to_new_endpoints_on_scale_up() {
    let mut endpoints = vec![echo("e0").await, echo("e1").await];
    let m = manifests();
    m.write("svc.yaml", &service("app", &endpoints));
    m.write(
        "ing.yaml",
        &ingress_with("web", "", &[("/", "Prefix", "app")], &[("affinity", "cookie")]),
    );
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();

    let mut sessions = Vec::new();
    for i in 0..40 {
        let r = c.get(&s, &format!("/{i}"), &[]).await;
        let line = set_cookie(&r, "INGRESSCOOKIE").expect("a cookie");
        sessions.push((cookie_pair(&line), r.backend()));
    }
    for i in 2..6 {
        endpoints.push(echo(&format!("e{i}")).await);
    }
    let generation = s.generation().await;
    m.write("svc.yaml", &service("app", &endpoints));
    s.wait_generation_after(generation).await;
    let mut moved = 0;
    for (cookie, first) in &sessions {
        let now = c.backend(&s, "/", &[("cookie", cookie)]).await;
        if &now != first {
            moved += 1;
            assert!(!["e0", "e1"].contains(&now.as_str()), "{cookie} moved from {first} to {now}");
        }
    }
    // Each key moves with probability 2/3: none of 40 moving is (1/3)^40.
    assert!(moved > 0, "no session moved to the 4 new endpoints");
}

// session-cookie-change-on-failure: a client pinned to a dead endpoint is served by another
// and pinned to it with a new cookie. Without it, the pinned dead endpoint fails the request
// (ingress-nginx's quirk: balance() returns the cookie's endpoint on every try); a client
// without a cookie is pinned again on each try either way (sticky.lua picks a new upstream
// when the request has no usable cookie).
#[tokio::test(flavor = "multi_thread")]
async fn change_on_failure_repins_and_without_it_a_dead_pinned_endpoint_fails() {
    let (live, dead) = (echo("live").await, unused_addr());
    let m = manifests();
    m.write(
        "svc.yaml",
        &[service("cof", &[dead, live]), service("pin", &[dead, live])].join("---\n"),
    );
    let sticky = [("affinity", "cookie"), ("affinity-mode", "persistent")];
    let mut cof = sticky.to_vec();
    cof.push(("session-cookie-change-on-failure", "true"));
    m.write(
        "ing.yaml",
        &[
            ingress_with("cof", "", &[("/cof", "Prefix", "cof")], &cof),
            ingress_with("pin", "", &[("/pin", "Prefix", "pin")], &sticky),
        ]
        .join("---\n"),
    );
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();

    let pinned_dead =
        |svc: &str| format!("INGRESSCOOKIE={}|{}", endpoint_key(svc, dead), backend_key(svc));
    let cookie = pinned_dead("cof");
    for r in c.three(&s, "/cof", &[("cookie", &cookie)]).await {
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.backend(), "live");
        let line = set_cookie(&r, "INGRESSCOOKIE").expect("a new pin");
        let (key, backend) = split_value(&cookie_parts(&line).0);
        assert_eq!((key, backend), (endpoint_key("cof", live), backend_key("cof")), "{line}");
    }
    let cookie = pinned_dead("pin");
    for r in c.three(&s, "/pin", &[("cookie", &cookie)]).await {
        assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
        assert!(set_cookie(&r, "INGRESSCOOKIE").is_none());
    }
    // New clients: whichever endpoint is drawn first, the answer comes from the live one and
    // the cookie the client keeps names it.
    for path in ["/cof", "/pin"] {
        let svc = &path[1..];
        for i in 0..10 {
            let r = c.get(&s, &format!("{path}/{i}"), &[]).await;
            assert_eq!(r.status, 200, "{path}: {}", String::from_utf8_lossy(&r.body));
            assert_eq!(r.backend(), "live");
            let line = set_cookie(&r, "INGRESSCOOKIE").expect("a cookie");
            assert_eq!(
                split_value(&cookie_parts(&line).0).0,
                endpoint_key(svc, live),
                "{path}: {line}"
            );
        }
    }
}

/// A canary site whose main Ingress has `affinity: cookie` and whose canary has weight 50 and
/// `canary_pairs`: returns its path.
fn sticky_canary_site(
    m: &Manifests,
    tag: &str,
    main: SocketAddr,
    canary: SocketAddr,
    canary_pairs: &[(&str, &str)],
) -> String {
    let path = format!("/{tag}");
    let (main_svc, canary_svc) = (format!("{tag}-main"), format!("{tag}-canary"));
    let mut pairs = vec![("canary", "true"), ("canary-weight", "50")];
    pairs.extend_from_slice(canary_pairs);
    m.write(
        &format!("{tag}.yaml"),
        &[
            service(&main_svc, &[main]),
            service(&canary_svc, &[canary]),
            ingress_with(tag, "", &[(&path, "Prefix", &main_svc)], &[("affinity", "cookie")]),
            ingress_with(&format!("{tag}-canary"), "", &[(&path, "Prefix", &canary_svc)], &pairs),
        ]
        .join("---\n"),
    );
    path
}

/// Cookie-less GETs of `path` until one is answered by `backend` (at most 200: at weight 50,
/// missing it that often has probability 2^-200).
async fn first_from(c: &Clients, s: &Sluice, path: &str, backend: &str) -> Reply {
    for _ in 0..200 {
        let r = c.get(s, path, &[]).await;
        if r.backend() == backend {
            return r;
        }
    }
    panic!("{backend} never answered {path}");
}

// affinity-canary-behavior: sticky (the default) gives the canary the main's affinity: a
// client sent to the canary by weight gets the canary's cookie and stays there; one on the
// main stays on the main. legacy: the canary sets no cookie, so its clients are drawn again
// each time (e2e "canary affinity behavior").
#[tokio::test(flavor = "multi_thread")]
async fn affinity_canary_behavior_sticky_and_legacy() {
    let (main, canary) = (echo("main").await, echo("canary").await);
    let m = manifests();
    let sticky = sticky_canary_site(&m, "sticky", main, canary, &[]);
    let legacy =
        sticky_canary_site(&m, "legacy", main, canary, &[("affinity-canary-behavior", "legacy")]);
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();

    // Sticky: each side's cookie names its own backend, and keeps its clients.
    for (side, svc) in [("canary", "sticky-canary"), ("main", "sticky-main")] {
        let r = first_from(&c, &s, &sticky, side).await;
        let line = set_cookie(&r, "INGRESSCOOKIE").unwrap_or_else(|| panic!("{side}: no cookie"));
        assert_eq!(split_value(&cookie_parts(&line).0).1, backend_key(svc), "{side}: {line}");
        let cookie = cookie_pair(&line);
        for i in 0..30 {
            let path = format!("{sticky}/{i}");
            assert_eq!(c.get(&s, &path, &[("cookie", &cookie)]).await.backend(), side);
        }
        assert_eq!(c.backend(&s, &sticky, &[("cookie", &cookie)]).await, side);
    }

    // Legacy: the canary sets no cookie; the main's cookie still keeps its clients.
    let r = first_from(&c, &s, &legacy, "canary").await;
    assert!(set_cookie(&r, "INGRESSCOOKIE").is_none(), "the legacy canary set {:?}", r.headers);
    let r = first_from(&c, &s, &legacy, "main").await;
    let cookie = cookie_pair(&set_cookie(&r, "INGRESSCOOKIE").expect("the main's cookie"));
    for i in 0..30 {
        let path = format!("{legacy}/{i}");
        assert_eq!(c.get(&s, &path, &[("cookie", &cookie)]).await.backend(), "main");
    }
    let split = tally(&c, &s, &legacy, &[], 60).await;
    assert_eq!(split.len(), 2, "cookie-less clients are split at weight 50: {split:?}");
}

// ---------------------------------------------------------------------------------------
// upstream-hash-by.

/// A Service `svc` over `endpoints` behind Ingress `svc` on path `/<svc>` with `pairs`.
fn site(m: &Manifests, svc: &str, endpoints: &[SocketAddr], pairs: &[(&str, &str)]) -> String {
    let path = format!("/{svc}");
    m.write(
        &format!("{svc}.yaml"),
        &[service(svc, endpoints), ingress_with(svc, "", &[(&path, "Prefix", svc)], pairs)]
            .join("---\n"),
    );
    path
}

/// A request (path, headers) carrying a hash key.
type Keyed<'a> = (String, Vec<(&'a str, &'a str)>);

// upstream-hash-by: requests with the same key go to the same endpoint, on the fast and the
// general path alike; different keys are spread (e2e "should connect to the same pod"). Keys
// from `$request_uri`, `$http_x_user`, `$cookie_session`, `$arg_id`.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_hash_by_sends_a_key_to_one_endpoint() {
    let endpoints = [echo("a").await, echo("b").await, echo("c").await];
    let m = manifests();
    let uri = site(&m, "uri", &endpoints, &[("upstream-hash-by", "$request_uri")]);
    let user = site(&m, "user", &endpoints, &[("upstream-hash-by", "$http_x_user")]);
    let session = site(&m, "session", &endpoints, &[("upstream-hash-by", "$cookie_session")]);
    let arg = site(&m, "arg", &endpoints, &[("upstream-hash-by", "$arg_id")]);
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();

    // Each case: for 24 keys, requests that differ otherwise but share the key.
    let mut spreads = BTreeMap::new();
    for k in 0..24 {
        let cookie = format!("a=1; session=s{k}");
        let user_value = format!("u{k}");
        let cases: [(&str, Vec<Keyed>); 4] = [
            ("uri", vec![(format!("{uri}/k{k}?q=1"), vec![]); 2]),
            (
                "user",
                vec![
                    (format!("{user}/one"), vec![("x-user", user_value.as_str())]),
                    (format!("{user}/two?x=2"), vec![("x-user", user_value.as_str())]),
                ],
            ),
            (
                "session",
                vec![
                    (format!("{session}/one"), vec![("cookie", cookie.as_str())]),
                    (format!("{session}/two"), vec![("cookie", cookie.as_str())]),
                ],
            ),
            (
                "arg",
                vec![
                    (format!("{arg}/one?id={k}&x=1"), vec![]),
                    (format!("{arg}/two?x=2&id={k}"), vec![]),
                ],
            ),
        ];
        for (case, requests) in cases {
            let mut seen = BTreeSet::new();
            for (path, headers) in &requests {
                seen.insert(c.backend(&s, path, headers).await);
                seen.insert(c.get(&s, path, headers).await.backend());
            }
            assert_eq!(seen.len(), 1, "{case} key {k} went to {seen:?}");
            spreads.entry(case).or_insert_with(BTreeSet::new).extend(seen);
        }
    }
    // 24 keys on one endpoint of 3 has probability 3 * (1/3)^24.
    for (case, spread) in spreads {
        assert!(spread.len() >= 2, "{case}: every key on {spread:?}");
    }
}

// upstream-hash-by-subset with -subset-size: a key maps to a group of endpoints and each
// request goes to one of the group at random (ingress-nginx's chashsubset.lua): 6 endpoints
// in groups of 3 make two disjoint groups.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_hash_by_subset_sends_a_key_to_a_group() {
    let mut endpoints = Vec::new();
    for i in 0..6 {
        endpoints.push(echo(&format!("e{i}")).await);
    }
    let m = manifests();
    let path = site(
        &m,
        "subset",
        &endpoints,
        &[
            ("upstream-hash-by", "$http_x_user"),
            ("upstream-hash-by-subset", "true"),
            ("upstream-hash-by-subset-size", "3"),
        ],
    );
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();

    let mut groups: Vec<BTreeSet<String>> = Vec::new();
    for u in 0..40 {
        let user = format!("user{u}");
        let mut seen = BTreeSet::new();
        for i in 0..12 {
            seen.insert(c.get(&s, &format!("{path}/{i}"), &[("x-user", &user)]).await.backend());
        }
        for r in c.three(&s, &path, &[("x-user", &user)]).await {
            seen.insert(r.backend());
        }
        assert!(seen.len() <= 3, "{user} reached {seen:?}, more than its group of 3");
        // Merge with every group it shares an endpoint with.
        let (mut merged, rest): (Vec<_>, Vec<_>) =
            groups.into_iter().partition(|g| !g.is_disjoint(&seen));
        groups = rest;
        let mut group = seen;
        for g in merged.drain(..) {
            group.extend(g);
        }
        assert!(group.len() <= 3, "two users' groups overlap: {group:?}");
        groups.push(group);
    }
    // Each user reaches about all 3 of its group (12 draws); 40 users all on the same group
    // of 2 has probability 2^-39.
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert!(groups.iter().all(|g| g.len() == 3), "{groups:?}");
}

// ---------------------------------------------------------------------------------------
// load-balance: ewma.

/// A backend that answers `{"name": name}` after `delay`.
async fn slow_backend(name: &'static str, delay: Duration) -> SocketAddr {
    http_backend(move |_req| async move {
        tokio::time::sleep(delay).await;
        http::Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!("{{\"name\":\"{name}\"}}"))))
            .unwrap()
    })
    .await
}

/// How many of `n` GETs the slow endpoint answered after a warm-up of 10.
async fn slow_share(c: &Clients, s: &Sluice, path: &str, n: usize) -> usize {
    tally(c, s, path, &[], 10).await;
    let counts = tally(c, s, path, &[], n).await;
    counts.get("slow").copied().unwrap_or(0)
}

// load-balance: ewma prefers the endpoint with the lower decaying response time (ewma.lua,
// peak EWMA with two choices): once warmed up, most requests go to the fast one; the same
// set-up under round robin splits evenly.
#[tokio::test(flavor = "multi_thread")]
async fn ewma_sends_most_requests_to_the_faster_endpoint() {
    let (fast, slow) = (echo("fast").await, slow_backend("slow", Duration::from_millis(100)).await);
    let m = manifests();
    let ewma = site(&m, "ewma", &[fast, slow], &[("load-balance", "ewma")]);
    let rr = site(&m, "rr", &[fast, slow], &[]);
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();

    let slow_hits = slow_share(&c, &s, &ewma, 40).await;
    assert!(slow_hits <= 10, "ewma: the slow endpoint answered {slow_hits} of 40");
    let slow_hits = slow_share(&c, &s, &rr, 10).await;
    assert_eq!(slow_hits, 5, "round robin alternates");
}

// ConfigMap load-balance sets the default balancer; an Ingress's load-balance overrides it
// (e2e loadbalance "should apply the configmap load-balance setting").
#[tokio::test(flavor = "multi_thread")]
async fn configmap_load_balance_is_the_default() {
    let (fast, slow) = (echo("fast").await, slow_backend("slow", Duration::from_millis(100)).await);
    let m = manifests();
    m.write(
        "configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sluice-config\n  namespace: default\ndata:\n  load-balance: ewma\n",
    );
    let dflt = site(&m, "dflt", &[fast, slow], &[]);
    let rr = site(&m, "rr", &[fast, slow], &[("load-balance", "round_robin")]);
    let s = Sluice::start(m.path(), &["--configmap", "default/sluice-config"]);
    let c = Clients::new();

    let backends = get(&s.admin_url("/debug/backends"), None).await.json();
    let lb = |name: &str| {
        let b = backends.as_array().unwrap().iter().find(|b| b["name"] == name);
        b.unwrap_or_else(|| panic!("no {name} in {backends}"))["load-balance"].clone()
    };
    assert_eq!(lb("default-dflt-80"), "ewma");
    assert_eq!(lb("default-rr-80"), "round_robin");
    let slow_hits = slow_share(&c, &s, &dflt, 40).await;
    assert!(slow_hits <= 10, "ConfigMap ewma: the slow endpoint answered {slow_hits} of 40");
    let slow_hits = slow_share(&c, &s, &rr, 10).await;
    assert_eq!(slow_hits, 5, "the annotation's round robin alternates");
}

// ---------------------------------------------------------------------------------------
// service-upstream.

/// A Service `name` with cluster IP 127.0.0.1 and port `port` (named `http`), whose
/// EndpointSlice lists `pod` instead, and an Ingress `name` on `/<name>` for that port with
/// `pairs`.
fn cluster_ip_site(
    m: &Manifests,
    name: &str,
    port: u16,
    pod: SocketAddr,
    pairs: &[(&str, &str)],
) -> String {
    let path = format!("/{name}");
    let mut ing = ingress_with(name, "", &[(&path, "Prefix", name)], pairs);
    ing = ing.replace("number: 80", &format!("number: {port}"));
    m.write(
        &format!("{name}.yaml"),
        &format!(
            "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: default
spec:
  clusterIP: 127.0.0.1
  ports:
  - name: http
    port: {port}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-0
  namespace: default
  labels:
    kubernetes.io/service-name: {name}
addressType: IPv4
ports:
- name: http
  port: {pod_port}
endpoints:
- addresses: [\"{pod_ip}\"]
  conditions:
    ready: true
---
{ing}",
            pod_port = pod.port(),
            pod_ip = pod.ip(),
        ),
    );
    path
}

// service-upstream: "true" proxies to the Service's cluster IP and port, not its endpoints
// (e2e "should use the Service Cluster IP and Port"); without it, the endpoints.
#[tokio::test(flavor = "multi_thread")]
async fn service_upstream_uses_the_cluster_ip() {
    let (cluster, pod) = (echo("cluster").await, echo("pod").await);
    let m = manifests();
    let on = cluster_ip_site(&m, "su-on", cluster.port(), pod, &[("service-upstream", "true")]);
    let off = cluster_ip_site(&m, "su-off", cluster.port(), pod, &[]);
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new();
    assert_eq!(c.backend(&s, &on, &[]).await, "cluster");
    assert_eq!(c.backend(&s, &off, &[]).await, "pod");
}

// ConfigMap service-upstream: "true" is the default; the annotation "false" turns it off
// (e2e "when enabling in the configmap [and disabling in the annotations]").
#[tokio::test(flavor = "multi_thread")]
async fn configmap_service_upstream_is_the_default() {
    let (cluster, pod) = (echo("cluster").await, echo("pod").await);
    let m = manifests();
    m.write(
        "configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sluice-config\n  namespace: default\ndata:\n  service-upstream: \"true\"\n",
    );
    let dflt = cluster_ip_site(&m, "su-default", cluster.port(), pod, &[]);
    let off = cluster_ip_site(&m, "su-off", cluster.port(), pod, &[("service-upstream", "false")]);
    let s = Sluice::start(m.path(), &["--configmap", "default/sluice-config"]);
    let c = Clients::new();
    assert_eq!(c.backend(&s, &dflt, &[]).await, "cluster");
    assert_eq!(c.backend(&s, &off, &[]).await, "pod");
}

// ---------------------------------------------------------------------------------------
// MD5 (RFC 1321), for ingress-nginx's cookie keys: the proxy's own is not reused, so that the
// tests check it.

fn md5_hex(data: &[u8]) -> String {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> =
        (0..64).map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32).collect();
    let mut state = [0x6745_2301u32, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_le_bytes());
    for chunk in msg.chunks(64) {
        let w: Vec<u32> =
            chunk.chunks(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
        let [mut a, mut b, mut c, mut d] = state;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(w[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        for (s, v) in state.iter_mut().zip([a, b, c, d]) {
            *s = s.wrapping_add(v);
        }
    }
    state.iter().flat_map(|w| w.to_le_bytes()).map(|b| format!("{b:02x}")).collect()
}

#[test]
fn md5_is_rfc_1321() {
    assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    assert_eq!(
        md5_hex(
            b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
        ),
        "57edf4a22be3c955ac49da2e2107b67a"
    );
}
