//! What unmatched requests get (the default backend or a 404 page), and Ingresses whose
//! annotations Sluice cannot honour failing closed (503) without affecting others.

mod common;

use bytes::Bytes;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn unmatched_requests_reach_the_default_backend() {
    let (app, fallback) = (echo("app").await, echo("fallback").await);
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &[service("app", &[app]), service("fallback", &[fallback])].join("---\n"));
    m.write("ing.yaml", &ingress("web", "app.example.com", &[("/api", "Prefix", "app")], &[]));
    let s = Sluice::start(m.path(), &["--default-backend-service", "default/fallback"]);

    let c = client();
    let hit =
        send(&c, request("GET", &s.url("/api/x"), Some("app.example.com"), Bytes::new())).await;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.backend(), "app");
    for (host, path) in [
        ("other.example.com", "/api/x"),
        ("app.example.com", "/elsewhere"),
        ("app.example.com", "/"),
    ] {
        let r = send(&c, request("GET", &s.url(path), Some(host), Bytes::new())).await;
        assert_eq!(r.status, 200, "{host}{path}");
        assert_eq!(r.backend(), "fallback", "{host}{path}");
        assert_eq!(r.json()["path"], path);
        assert_eq!(r.json()["host"], host);
        assert_eq!(r.headers["server"], "sluice");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unmatched_requests_get_a_404_page_without_default_backend() {
    let app = echo("app").await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[app]));
    m.write("ing.yaml", &ingress("web", "app.example.com", &[("/api", "Prefix", "app")], &[]));
    let s = Sluice::start(m.path(), &[]);

    for (host, path) in [("other.example.com", "/api"), ("app.example.com", "/elsewhere")] {
        let r = get(&s.url(path), Some(host)).await;
        assert_eq!(r.status, 404, "{host}{path}");
        assert_eq!(r.headers["server"], "sluice");
        assert!(
            r.headers["content-type"].to_str().unwrap().starts_with("text/html"),
            "{:?}",
            r.headers
        );
        let body = String::from_utf8_lossy(&r.body);
        assert!(body.contains("<html>") && body.contains("404 Not Found"), "{body}");
    }
    assert_eq!(get(&s.url("/api"), Some("app.example.com")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn unenforceable_annotations_fail_closed() {
    let app = echo("app").await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[app]));
    m.write(
        "ing.yaml",
        &[
            ingress(
                "auth",
                "auth.example.com",
                &[("/", "Prefix", "app")],
                // Authentication asked for and impossible to apply (its Secret is missing).
                &[
                    ("nginx.ingress.kubernetes.io/auth-type", "basic"),
                    ("nginx.ingress.kubernetes.io/auth-secret", "missing"),
                ],
            ),
            ingress(
                "snippet",
                "snippet.example.com",
                &[("/", "Prefix", "app")],
                &[(
                    "nginx.ingress.kubernetes.io/configuration-snippet",
                    "more_set_headers 'X: y';",
                )],
            ),
            ingress("open", "open.example.com", &[("/", "Prefix", "app")], &[]),
        ]
        .join("---\n"),
    );
    let s = Sluice::start(m.path(), &[]);

    let c = client();
    for host in ["auth.example.com", "snippet.example.com"] {
        for path in ["/", "/deep/path"] {
            let r = send(&c, request("GET", &s.url(path), Some(host), Bytes::new())).await;
            assert_eq!(r.status, 503, "{host}{path}: {}", String::from_utf8_lossy(&r.body));
            assert_eq!(r.headers["server"], "sluice");
            assert!(r.headers.get("x").is_none(), "the snippet was applied");
        }
    }
    let r = send(&c, request("GET", &s.url("/"), Some("open.example.com"), Bytes::new())).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), "app");
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_segments_and_slashes_cannot_reach_a_fail_closed_path_through_an_open_one() {
    let (open, admin) = (echo("open").await, echo("admin").await);
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &[service("open", &[open]), service("admin", &[admin])].join("---\n"));
    m.write(
        "ing.yaml",
        &[
            ingress(
                "guarded",
                "x.example.com",
                &[("/admin", "Prefix", "admin")],
                &[
                    ("nginx.ingress.kubernetes.io/auth-type", "basic"),
                    ("nginx.ingress.kubernetes.io/auth-secret", "missing"),
                ],
            ),
            ingress("open", "x.example.com", &[("/public", "Prefix", "open")], &[]),
        ]
        .join("---\n"),
    );
    let s = Sluice::start(m.path(), &[]);
    let public = get(&s.url("/public/page"), Some("x.example.com")).await;
    assert_eq!(public.status, 200);
    assert_eq!(public.backend(), "open");
    for path in [
        "/admin",
        "/public/../admin",
        "/public/./../admin/x",
        "/public/%2e%2e/admin",
        "/public/..%2fadmin",
        "//admin",
        "/public//../admin",
    ] {
        let r = get(&s.url(path), Some("x.example.com")).await;
        assert_eq!(r.status, 503, "{path} was routed past the fail-closed Ingress");
    }
}

// rewrite-target: the backend receives the path rebuilt from the route's capture groups, with
// the client's query string kept (NGINX's `rewrite ... break`). The host is a regex host, so a
// neighbour Ingress's path matches case-insensitively as a regex prefix, forwarded unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn rewrite_target_reaches_the_backend_with_the_query_kept() {
    let (app, other) = (echo("app").await, echo("other").await);
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &[service("app", &[app]), service("other", &[other])].join("---\n"));
    m.write(
        "ing.yaml",
        &[
            ingress(
                "rw",
                "rw.example.com",
                &[("/something(/|$)(.*)", "ImplementationSpecific", "app")],
                &[("nginx.ingress.kubernetes.io/rewrite-target", "/$2")],
            ),
            ingress("keep", "rw.example.com", &[("/keep", "Prefix", "other")], &[]),
        ]
        .join("---\n"),
    );
    let s = Sluice::start(m.path(), &[]);

    let c = client();
    for (path, backend, upstream) in [
        ("/something/new/path?a=1&b=two", "app", "/new/path?a=1&b=two"),
        ("/SOMETHING", "app", "/"),
        ("/something/a%20b", "app", "/a%20b"),
        ("/Keep/x?q=1", "other", "/Keep/x?q=1"),
        ("/keeper", "other", "/keeper"),
    ] {
        let r = send(&c, request("GET", &s.url(path), Some("rw.example.com"), Bytes::new())).await;
        assert_eq!(r.status, 200, "{path}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.backend(), backend, "{path}");
        assert_eq!(r.json()["path"], upstream, "{path}");
    }
    let r = send(&c, request("GET", &s.url("/elsewhere"), Some("rw.example.com"), Bytes::new()));
    assert_eq!(r.await.status, 404);
}
