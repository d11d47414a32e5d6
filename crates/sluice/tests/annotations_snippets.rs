//! Snippets end to end, against the real binary and real backends: ingress-nginx's gates
//! (`allow-snippet-annotations`, `annotations-risk-level`), the safe subset of
//! `configuration-snippet`, `server-snippet` and the ConfigMap's `*-snippet` keys, each
//! directive's effect on real requests (on the fast path, a keep-alive GET, and on the
//! general path, a POST with a chunked body), and refusals: the Ingress answers 503 while another keeps serving.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;

const CONFIG: &str = "nginx.ingress.kubernetes.io/configuration-snippet";
const SERVER: &str = "nginx.ingress.kubernetes.io/server-snippet";

/// The ConfigMap keys that open the gates.
const GATES: &[(&str, &str)] =
    &[("allow-snippet-annotations", "true"), ("annotations-risk-level", "Critical")];

/// An Ingress: name, host, paths (Prefix), annotations.
type Ing<'a> = (&'a str, &'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);

/// Manifests with the Service `app` (endpoint `backend`), the Ingresses, and the ConfigMap
/// `default/sluice-config` with `config`.
fn setup(
    backend: std::net::SocketAddr,
    ingresses: &[Ing<'_>],
    config: &[(&str, &str)],
) -> (Manifests, Sluice) {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[backend]));
    for (name, host, paths, annotations) in ingresses {
        let paths: Vec<(&str, &str, &str)> = paths.iter().map(|p| (*p, "Prefix", "app")).collect();
        m.write(&format!("ing-{name}.yaml"), &ingress(name, host, &paths, annotations));
    }
    m.write("config.yaml", &sluice_config(config));
    let s = Sluice::start(m.path(), &["--configmap", "default/sluice-config"]);
    (m, s)
}

/// A backend answering every request with headers a snippet may edit: `X-Powered-By`,
/// `X-Debug-One`, `X-Debug-Two`, `Server`, `Content-Type` (`text/html`, or `application/json`
/// for `?json`), the status of `?status=NNN`, and what it received of `X-From-Snippet` as
/// `X-Seen`.
async fn header_backend() -> std::net::SocketAddr {
    http_backend(|req| async move {
        let query = req.uri().query().unwrap_or_default().to_string();
        let status = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("status="))
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        let seen = req
            .headers()
            .get("x-from-snippet")
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| "-".into());
        let json = query.split('&').any(|kv| kv == "json");
        http::Response::builder()
            .status(status)
            .header("x-powered-by", "php")
            .header("x-debug-one", "1")
            .header("x-debug-two", "2")
            .header("server", "backend")
            .header("content-type", if json { "application/json" } else { "text/html" })
            .header("x-seen", seen)
            .body(Full::new(Bytes::from_static(b"body")))
            .unwrap()
    })
    .await
}

/// GET (fast path, keep-alive) and POST with a chunked body (general path) of `path` on
/// `host`.
async fn both_ways(s: &Sluice, host: &str, path: &str) -> [Reply; 2] {
    let c = client();
    let get = send(&c, request("GET", &s.url(path), Some(host), Bytes::new())).await;
    let post = chunked_request("POST", &s.url(path), Some(host), Bytes::from_static(b"x"));
    let post = send(&c, post).await;
    [get, post]
}

fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
    r.headers.get(name).map(|v| v.to_str().unwrap())
}

// Without both gates, a snippet annotation is refused as before: the Ingress's routes answer
// 503, another Ingress keeps serving, and the diagnostic names the ConfigMap keys that would
// let Sluice read it. `allow-snippet-annotations` alone is not enough: snippets are Critical.
#[tokio::test(flavor = "multi_thread")]
async fn closed_gates_refuse_snippets_and_other_ingresses_serve() {
    let backend = echo("app").await;
    let ingresses: &[Ing<'_>] = &[
        ("snip", "snip.example", &["/"], &[(CONFIG, "more_set_headers \"X-A: 1\";")]),
        ("plain", "plain.example", &["/"], &[]),
    ];
    for (config, keys) in [
        (&[][..], "allow-snippet-annotations: \"true\" and annotations-risk-level: Critical"),
        (&[("allow-snippet-annotations", "true")][..], "set annotations-risk-level: Critical"),
        (&[("annotations-risk-level", "Critical")][..], "set allow-snippet-annotations: \"true\" "),
    ] {
        let (_m, s) = setup(backend, ingresses, config);
        let [get, post] = both_ways(&s, "snip.example", "/").await;
        assert_eq!((get.status.as_u16(), post.status.as_u16()), (503, 503), "{config:?}");
        assert_eq!(get.headers.get("x-a"), None);
        assert_eq!(get_status(&s, "plain.example", "/").await, 200);
        assert_diagnostics(&s, &[("SnippetRefused", keys)]).await;
    }
}

async fn get_status(s: &Sluice, host: &str, path: &str) -> u16 {
    get(&s.url(path), Some(host)).await.status.as_u16()
}

// Gates open: each header directive acts on real responses, the same way on both paths.
#[tokio::test(flavor = "multi_thread")]
async fn header_directives_shape_requests_and_responses() {
    let snippet = "more_set_headers \"X-Frame-Options: DENY\";\n\
                   more_set_headers -s 404 'X-Missing: yes';\n\
                   more_set_headers -t 'text/html' \"X-Html: yes\";\n\
                   more_clear_headers 'X-Debug-*' Server;\n\
                   add_header X-Added $host;\n\
                   add_header X-Always 1 always;\n\
                   proxy_hide_header X-Powered-By;\n\
                   proxy_set_header X-From-Snippet \"$scheme-snippet\";\n\
                   more_set_headers 'X-Twice: 1';\n\
                   more_set_headers 'X-Twice: 2';\n\
                   server_tokens off;";
    let ingresses: &[Ing<'_>] = &[("web", "h.example", &["/"], &[(CONFIG, snippet)])];
    let (_m, s) = setup(header_backend().await, ingresses, GATES);
    for r in both_ways(&s, "h.example", "/page").await {
        assert_eq!(r.status, 200);
        assert_eq!(header(&r, "x-frame-options"), Some("DENY"));
        assert_eq!(header(&r, "x-missing"), None, "-s 404 only");
        assert_eq!(header(&r, "x-html"), Some("yes"), "the response is text/html");
        assert_eq!(header(&r, "x-debug-one"), None);
        assert_eq!(header(&r, "x-debug-two"), None);
        assert_eq!(header(&r, "server"), None, "more_clear_headers Server");
        assert_eq!(header(&r, "x-added"), Some("h.example"));
        assert_eq!(header(&r, "x-always"), Some("1"));
        assert_eq!(header(&r, "x-powered-by"), None);
        assert_eq!(header(&r, "x-seen"), Some("http-snippet"), "proxy_set_header upstream");
        let twice: Vec<_> = r.headers.get_all("x-twice").iter().collect();
        assert_eq!(twice, ["2"], "the later directive replaces the header");
    }
    for r in both_ways(&s, "h.example", "/page?status=404&json").await {
        assert_eq!(r.status, 404);
        assert_eq!(header(&r, "x-missing"), Some("yes"));
        assert_eq!(header(&r, "x-html"), None, "-t text/html, the response is JSON");
        assert_eq!(header(&r, "x-added"), None, "add_header without always: not on a 404");
        assert_eq!(header(&r, "x-always"), Some("1"));
        assert_eq!(header(&r, "x-frame-options"), Some("DENY"));
    }
    assert_diagnostics(&s, &[]).await;
}

// The timeouts and client_max_body_size become the route's limits.
#[tokio::test(flavor = "multi_thread")]
async fn timeouts_and_body_size_are_the_routes_limits() {
    let snippet = "client_max_body_size 10;\nproxy_read_timeout 1s;";
    let ingresses: &[Ing<'_>] =
        &[("web", "l.example", &["/"], &[(CONFIG, snippet)]), ("plain", "p.example", &["/"], &[])];
    let (_m, s) = setup(echo("app").await, ingresses, GATES);
    let c = client();
    let post = |host: &'static str, body: &'static [u8]| {
        request("POST", &s.url("/"), Some(host), Bytes::from_static(body))
    };
    assert_eq!(send(&c, post("l.example", b"0123456789")).await.status, 200);
    assert_eq!(send(&c, post("l.example", b"0123456789a")).await.status, 413);
    assert_eq!(send(&c, post("p.example", b"0123456789a")).await.status, 200);
    let started = std::time::Instant::now();
    assert_eq!(get_status(&s, "l.example", "/slow?delay_ms=3000").await, 504);
    assert!(started.elapsed() < std::time::Duration::from_millis(2500), "the 1 s read timeout");
    assert_eq!(get_status(&s, "p.example", "/slow?delay_ms=1500").await, 200);
}

// `if`, `return` and `rewrite`: answered by the life cycle, before the backend.
#[tokio::test(flavor = "multi_thread")]
async fn if_return_and_rewrite_answer_requests() {
    let rules = "if ($http_x_block = \"yes\") {\n  return 403;\n}\n\
                 if ($request_uri ~* ^/old/) {\n  add_header X-Was-Old 1 always;\n}\n\
                 rewrite ^/old/(.*)$ /new/$1 permanent;\n\
                 rewrite ^/ext/(.*) https://ext.example/$1? redirect;\n\
                 if ($scheme = http) {\n  more_set_headers 'X-Plain: 1';\n}";
    let ingresses: &[Ing<'_>] = &[
        ("rules", "r.example", &["/"], &[(CONFIG, rules)]),
        ("health", "r.example", &["/healthz"], &[(CONFIG, "return 200 \"ok\\n\";")]),
        ("moved", "m.example", &["/"], &[(CONFIG, "return 301 https://new.example$request_uri;")]),
        ("found", "f.example", &["/"], &[(CONFIG, "return https://other.example/;")]),
    ];
    let (_m, s) = setup(echo("app").await, ingresses, GATES);
    let c = client();
    let go = |method: &str, host: &str, path: &str, extra: Option<(&str, &str)>| {
        // A POST takes the general path.
        let mut req = if method == "POST" {
            chunked_request(method, &s.url(path), Some(host), Bytes::new())
        } else {
            request(method, &s.url(path), Some(host), Bytes::new())
        };
        if let Some((k, v)) = extra {
            req.headers_mut().insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        send(&c, req)
    };
    for method in ["GET", "POST"] {
        let r = go(method, "r.example", "/old/a?x=1", None).await;
        assert_eq!(r.status, 301, "{method}");
        assert_eq!(header(&r, "location"), Some("http://r.example/new/a?x=1"));
        assert_eq!(header(&r, "x-was-old"), Some("1"), "a header rule inside if");
        let r = go(method, "r.example", "/ext/b?drop=1", None).await;
        assert_eq!(r.status, 302);
        assert_eq!(header(&r, "location"), Some("https://ext.example/b"), "? drops the query");
        let r = go(method, "r.example", "/page", Some(("x-block", "yes"))).await;
        assert_eq!(r.status, 403);
        let r = go(method, "r.example", "/page", Some(("x-block", "no"))).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.backend(), "app");
        assert_eq!(header(&r, "x-plain"), Some("1"));
        assert_eq!(header(&r, "x-was-old"), None);
        let r = go(method, "r.example", "/healthz", None).await;
        assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"ok\n"[..]));
        let r = go(method, "m.example", "/p?q=1", None).await;
        assert_eq!(r.status, 301);
        assert_eq!(header(&r, "location"), Some("https://new.example/p?q=1"));
        let r = go(method, "f.example", "/", None).await;
        assert_eq!(r.status, 302);
        assert_eq!(header(&r, "location"), Some("https://other.example/"));
    }
    assert_diagnostics(&s, &[]).await;
}

// A `rewrite` to a path changes the URI sent upstream: `break` (and `last`) stop the
// rewrites, without a flag the next ones see the new URI; the query is kept after the
// replacement's own, unless the replacement ends with `?`. Both paths carry it.
#[tokio::test(flavor = "multi_thread")]
async fn rewrite_to_a_path_changes_the_upstream_uri() {
    let rules = "rewrite ^/v1/(.*)$ /api/$1 break;\n\
                 rewrite ^/chain/(.*)$ /step/$1;\n\
                 rewrite ^/step/(.*)$ /done/$1?via=chain last;\n\
                 rewrite ^/bare/ /clean? break;\n\
                 proxy_set_header X-Chain $proxy_add_x_forwarded_for;\n\
                 return 418;";
    let ingresses: &[Ing<'_>] = &[("web", "w.example", &["/"], &[(CONFIG, rules)])];
    let (_m, s) = setup(echo("app").await, ingresses, GATES);
    for (path, upstream) in [
        ("/v1/users?page=2", "/api/users?page=2"),
        ("/chain/x?q=1", "/done/x?via=chain&q=1"),
        ("/bare/y?q=1", "/clean"),
    ] {
        for r in both_ways(&s, "w.example", path).await {
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.json()["path"], upstream, "{path}");
            assert_eq!(r.json()["headers"]["x-chain"], "127.0.0.1", "{path}");
        }
    }
    let mut req = request("GET", &s.url("/v1/x"), Some("w.example"), Bytes::new());
    req.headers_mut().insert("x-forwarded-for", http::HeaderValue::from_static("192.0.2.1"));
    let r = send(&client(), req).await;
    assert_eq!(r.json()["headers"]["x-chain"], "192.0.2.1, 127.0.0.1");
    assert_eq!(get_status(&s, "w.example", "/other").await, 418, "no rewrite matched");
}

// `allow` and `deny` become the address lists (the client here is 127.0.0.1).
#[tokio::test(flavor = "multi_thread")]
async fn allow_and_deny_become_address_lists() {
    let ingresses: &[Ing<'_>] = &[
        ("denied", "d.example", &["/"], &[(CONFIG, "deny 192.0.2.1;\ndeny 127.0.0.1;")]),
        ("allowed", "a.example", &["/"], &[(CONFIG, "allow 127.0.0.0/8;\ndeny all;")]),
        ("outside", "o.example", &["/"], &[(SERVER, "allow 10.0.0.0/8;\ndeny all;")]),
        ("other", "x.example", &["/"], &[(CONFIG, "deny 192.0.2.1;")]),
    ];
    let (_m, s) = setup(echo("app").await, ingresses, GATES);
    for (host, status) in
        [("d.example", 403), ("a.example", 200), ("o.example", 403), ("x.example", 200)]
    {
        for r in both_ways(&s, host, "/").await {
            assert_eq!(r.status.as_u16(), status, "{host}");
        }
    }
    assert_diagnostics(&s, &[]).await;
}

// `server-snippet` applies to every route of the host, other Ingresses' and unmatched paths
// included; not to other hosts.
#[tokio::test(flavor = "multi_thread")]
async fn server_snippet_applies_to_every_route_of_its_host() {
    let server = "more_set_headers 'X-Server: a';\nif ($http_x_teapot) {\n  return 418;\n}\n\
                  location ~* ^/(a|b)/(ping|ready) {\n  deny all;\n  return 404;\n}\n\
                  location ~ ^/b/private {\n  deny all;\n}\n\
                  location = /b/dav {\n  return 301 https://$host/remote;\n}";
    let ingresses: &[Ing<'_>] = &[
        ("a", "shared.example", &["/a"], &[(SERVER, server)]),
        ("b", "shared.example", &["/b"], &[]),
        ("c", "other.example", &["/"], &[]),
    ];
    let (_m, s) = setup(echo("app").await, ingresses, GATES);
    for path in ["/a", "/b"] {
        for r in both_ways(&s, "shared.example", path).await {
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(header(&r, "x-server"), Some("a"), "{path}");
        }
    }
    let unmatched = get(&s.url("/zzz"), Some("shared.example")).await;
    assert_eq!(unmatched.status, 404);
    assert_eq!(header(&unmatched, "x-server"), Some("a"), "the host's own default route");
    let mut teapot = request("GET", &s.url("/b"), Some("shared.example"), Bytes::new());
    teapot.headers_mut().insert("x-teapot", http::HeaderValue::from_static("1"));
    assert_eq!(send(&client(), teapot).await.status, 418);
    // Its locations that answer: over the Ingresses' paths, as NGINX's exact and regex
    // locations win over prefix ones.
    for (path, status) in
        [("/a/PING", 404), ("/b/ready", 404), ("/b/private/x", 403), ("/a/x", 200)]
    {
        for r in both_ways(&s, "shared.example", path).await {
            assert_eq!(r.status.as_u16(), status, "{path}");
        }
    }
    let dav = get(&s.url("/b/dav"), Some("shared.example")).await;
    assert_eq!(dav.status, 301);
    assert_eq!(header(&dav, "location"), Some("https://shared.example/remote"));
    assert_eq!(get_status(&s, "shared.example", "/b/dav/x").await, 200, "= is exact");
    assert_diagnostics(&s, &[]).await;
    let other = get(&s.url("/"), Some("other.example")).await;
    assert_eq!(other.status, 200);
    assert_eq!(header(&other, "x-server"), None);
}

// Gates open, a snippet outside the subset (or with a syntax error) is refused: its Ingress
// answers 503, the diagnostic names the directive and its line, and the other Ingress serves.
#[tokio::test(flavor = "multi_thread")]
async fn snippets_outside_the_subset_are_refused_with_their_line() {
    let ingresses: &[Ing<'_>] = &[
        ("bad", "bad.example", &["/"], &[(CONFIG, "add_header X-A 1;\nset $x 1;")]),
        ("broken", "broken.example", &["/"], &[(SERVER, "add_header X-A 1;\n\n}")]),
        ("good", "good.example", &["/"], &[(CONFIG, "add_header X-Good 1;")]),
    ];
    let (_m, s) = setup(echo("app").await, ingresses, GATES);
    for host in ["bad.example", "broken.example"] {
        for r in both_ways(&s, host, "/").await {
            assert_eq!(r.status, 503, "{host}");
        }
    }
    let good = get(&s.url("/"), Some("good.example")).await;
    assert_eq!(good.status, 200);
    assert_eq!(header(&good, "x-good"), Some("1"));
    assert_diagnostics(
        &s,
        &[
            ("SnippetRefused", "configuration-snippet: line 2: set: not in the subset"),
            ("SnippetRefused", "server-snippet: line 3: unexpected \"}\""),
        ],
    )
    .await;
}

// The ConfigMap's snippets need no gate (they are the administrator's, as in ingress-nginx):
// `location-snippet` and `server-snippet` reach every route; `http-snippet`'s timeout has no
// effect (a warning), and a ConfigMap snippet outside the subset is reported and ignored.
#[tokio::test(flavor = "multi_thread")]
async fn configmap_snippets_apply_to_every_route() {
    let config: &[(&str, &str)] = &[
        ("location-snippet", "more_set_headers 'X-Everywhere: 1';"),
        ("server-snippet", "if ($http_x_teapot) {\n  return 418;\n}"),
        ("http-snippet", "proxy_hide_header X-Powered-By;\nproxy_read_timeout 5;"),
        ("main-snippet", "worker_processes 1;"),
    ];
    let ingresses: &[Ing<'_>] = &[("one", "one.example", &["/"], &[]), ("two", "", &["/"], &[])];
    let (_m, s) = setup(header_backend().await, ingresses, config);
    for host in ["one.example", "any.example"] {
        for r in both_ways(&s, host, "/").await {
            assert_eq!(r.status, 200, "{host}");
            assert_eq!(header(&r, "x-everywhere"), Some("1"), "{host}");
            assert_eq!(header(&r, "x-powered-by"), None, "{host}");
        }
        let mut teapot = request("GET", &s.url("/"), Some(host), Bytes::new());
        teapot.headers_mut().insert("x-teapot", http::HeaderValue::from_static("1"));
        assert_eq!(send(&client(), teapot).await.status, 418);
    }
    assert_diagnostics(
        &s,
        &[
            ("UnsupportedFeature", "http-snippet: line 2: proxy_read_timeout"),
            ("SnippetRefused", "main-snippet"),
        ],
    )
    .await;
}
