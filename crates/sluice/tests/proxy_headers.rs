//! Header rules on the way to the upstream and back (ingress-nginx compatible): forwarding
//! headers, request IDs, Host preserved, hop-by-hop and `Proxy` headers removed, `Server`.

mod common;

use bytes::Bytes;
use common::*;
use tokio::io::AsyncWriteExt;

const HOP_BY_HOP: [&str; 6] =
    ["connection", "keep-alive", "te", "trailer", "upgrade", "proxy-connection"];

fn is_request_id(v: &str) -> bool {
    v.len() == 32 && v.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarding_headers_are_set_and_hop_by_hop_headers_removed() {
    let app = echo("app").await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[app]));
    m.write("ing.yaml", &ingress("web", "app.example.com", &[("/", "Prefix", "app")], &[]));
    let s = Sluice::start(m.path(), &[]);

    let req = http::Request::builder()
        .uri(s.url("/x?y=1"))
        .header("host", "App.Example.com:8080")
        .header("x-forwarded-for", "1.2.3.4, 5.6.7.8")
        .header("connection", "close, x-secret")
        .header("x-secret", "1")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("trailer", "x-checksum")
        .header("upgrade", "h2c")
        .header("proxy-connection", "keep-alive")
        .header("proxy", "http://attacker.example:3128")
        .header("x-kept", "yes")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let r = send(&client(), req).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["server"], "sluice");
    let doc = r.json();
    let h = &doc["headers"];
    assert_eq!(doc["host"], "App.Example.com:8080", "Host reaches the upstream exactly as sent");
    assert_eq!(h["host"], "App.Example.com:8080");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "the client IP replaces X-Forwarded-For");
    assert_eq!(h["x-original-forwarded-for"], "1.2.3.4, 5.6.7.8");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-host"], "App.Example.com:8080");
    assert_eq!(h["x-forwarded-port"], s.http.port().to_string());
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-scheme"], "http");
    assert_eq!(h["x-scheme"], "http");
    let id = h["x-request-id"].as_str().expect("an X-Request-ID");
    assert!(is_request_id(id), "a generated request ID is 32 lowercase hex digits: {id:?}");
    for name in HOP_BY_HOP {
        assert!(h.get(name).is_none(), "hop-by-hop {name} reached the upstream: {h}");
    }
    assert!(h.get("x-secret").is_none(), "a header named by Connection reached the upstream: {h}");
    assert!(h.get("proxy").is_none(), "the Proxy header (httpoxy) reached the upstream: {h}");
    assert!(h.get("transfer-encoding").is_none(), "{h}");
    assert_eq!(h["x-kept"], "yes", "end-to-end headers pass");
    assert_eq!(doc["path"], "/x?y=1");
    assert_eq!(doc["version"], "HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_are_generated_per_request_or_kept() {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    let s = Sluice::start(m.path(), &[]);
    let c = client();

    let mut ids = std::collections::HashSet::new();
    for _ in 0..10 {
        let r = send(&c, request("GET", &s.url("/"), None, Bytes::new())).await;
        let id = r.json()["headers"]["x-request-id"].as_str().unwrap().to_string();
        assert!(is_request_id(&id), "{id:?}");
        ids.insert(id);
    }
    assert_eq!(ids.len(), 10, "every request gets its own ID: {ids:?}");

    let mut req = request("GET", &s.url("/"), None, Bytes::new());
    req.headers_mut().insert("x-request-id", "client-chosen-id-42".parse().unwrap());
    let r = send(&c, req).await;
    assert_eq!(r.json()["headers"]["x-request-id"], "client-chosen-id-42");
}

#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_headers_from_the_backend_do_not_reach_the_client() {
    // A backend whose response carries every kind of hop-by-hop header.
    let backend = tcp_backend(|mut stream| async move {
        while read_head(&mut stream).await.is_some() {
            let resp = "HTTP/1.1 200 OK\r\n\
                        Content-Length: 2\r\n\
                        Connection: keep-alive, X-Hop\r\n\
                        X-Hop: secret\r\n\
                        Keep-Alive: timeout=5\r\n\
                        Proxy-Connection: keep-alive\r\n\
                        Trailer: X-Checksum\r\n\
                        Upgrade: h2c\r\n\
                        Server: backend/1.0\r\n\
                        X-Kept: yes\r\n\r\nok";
            if stream.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let m = catch_all("raw", &[backend], &[]);
    let s = Sluice::start(m.path(), &[]);

    let c = client();
    for _ in 0..3 {
        let r = send(&c, request("GET", &s.url("/"), None, Bytes::new())).await;
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"ok");
        assert_eq!(r.headers["x-kept"], "yes");
        assert_eq!(
            r.headers["server"], "sluice",
            "the proxy's Server header replaces the backend's"
        );
        assert_eq!(r.headers.get_all("server").iter().count(), 1);
        for name in ["keep-alive", "proxy-connection", "trailer", "upgrade", "x-hop"] {
            assert!(r.headers.get(name).is_none(), "{name} reached the client: {:?}", r.headers);
        }
        let connection =
            r.headers.get("connection").map(|v| v.to_str().unwrap().to_ascii_lowercase());
        assert!(
            !connection.as_deref().unwrap_or_default().contains("x-hop"),
            "the backend's Connection header reached the client: {connection:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_response_carries_the_server_header() {
    let app = echo("app").await;
    let (dead, stuck) = (unused_addr(), unused_addr());
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write(
        "svc.yaml",
        &[service("app", &[app]), service("dead", &[dead]), service_with("idle", &[], &[stuck])]
            .join("---\n"),
    );
    m.write(
        "ing.yaml",
        &[
            ingress("ok", "ok.example.com", &[("/", "Prefix", "app")], &[]),
            ingress("dead", "dead.example.com", &[("/", "Prefix", "dead")], &[]),
            ingress("idle", "idle.example.com", &[("/", "Prefix", "idle")], &[]),
            ingress(
                "slow",
                "slow.example.com",
                &[("/", "Prefix", "app")],
                &[("nginx.ingress.kubernetes.io/proxy-read-timeout", "1")],
            ),
            ingress(
                "small",
                "small.example.com",
                &[("/", "Prefix", "app")],
                &[("nginx.ingress.kubernetes.io/proxy-body-size", "1k")],
            ),
        ]
        .join("---\n"),
    );
    let s = Sluice::start(m.path(), &[]);

    let cases = [
        ("GET", "ok.example.com", "/", 0, 200),
        ("GET", "nowhere.example.com", "/", 0, 404),
        ("GET", "dead.example.com", "/", 0, 502),
        ("GET", "idle.example.com", "/", 0, 503),
        ("GET", "slow.example.com", "/?delay_ms=3000", 0, 504),
        ("POST", "small.example.com", "/", 2048, 413),
    ];
    for (method, host, path, body, status) in cases {
        let r = send(
            &client(),
            request(method, &s.url(path), Some(host), Bytes::from(vec![b'x'; body])),
        )
        .await;
        assert_eq!(r.status, status, "{method} {host}{path}");
        assert_eq!(
            r.headers.get("server").map(|v| v.to_str().unwrap()),
            Some("sluice"),
            "{host}: {:?}",
            r.headers
        );
    }
}

/// Sends `raw` (a request with `Connection: close`) and returns the echo's JSON.
async fn echo_of(s: &Sluice, raw: &str) -> serde_json::Value {
    let resp = raw_exchange(s.http, raw.as_bytes()).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {resp}"))
}

async fn catch_all_echo() -> (Manifests, Sluice) {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    let s = Sluice::start(m.path(), &[]);
    (m, s)
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_named_headers_are_removed_whatever_their_case_or_line() {
    let (_m, s) = catch_all_echo().await;
    let doc = echo_of(
        &s,
        "GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: X-One\r\nConnection: close, X-Two\r\n\
         x-one: 1\r\nX-TWO: 2\r\nX-Three: 3\r\n\r\n",
    )
    .await;
    let h = &doc["headers"];
    assert!(h.get("x-one").is_none() && h.get("x-two").is_none(), "{h}");
    assert_eq!(h["x-three"], "3");
    // Headers the proxy sets cannot be dropped or kept by naming them in Connection.
    let doc = echo_of(
        &s,
        "GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close, x-forwarded-for, x-real-ip, x-request-id\r\n\
         X-Real-IP: 6.6.6.6\r\n\r\n",
    )
    .await;
    let h = &doc["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert!(is_request_id(h["x-request-id"].as_str().unwrap()), "{h}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_cannot_strip_the_host_header() {
    let (_m, s) = catch_all_echo().await;
    let doc =
        echo_of(&s, "GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close, host\r\n\r\n")
            .await;
    assert_eq!(doc["headers"]["host"], "a.example.com", "{}", doc["headers"]);
    assert_eq!(doc["headers"]["x-forwarded-host"], "a.example.com", "{}", doc["headers"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_incoming_forwarded_for_line_is_kept() {
    let (_m, s) = catch_all_echo().await;
    let doc = echo_of(
        &s,
        "GET / HTTP/1.1\r\nHost: a.example.com\r\nX-Forwarded-For: 1.1.1.1\r\n\
         X-Forwarded-For: 2.2.2.2\r\nConnection: close\r\n\r\n",
    )
    .await;
    let h = &doc["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    // NGINX's $http_x_forwarded_for joins the lines: "1.1.1.1, 2.2.2.2".
    assert_eq!(h["x-original-forwarded-for"], "1.1.1.1, 2.2.2.2", "{h}");
}

#[tokio::test(flavor = "multi_thread")]
async fn absolute_form_requests_reach_the_upstream_in_origin_form() {
    let (_m, s) = catch_all_echo().await;
    let doc = echo_of(
        &s,
        "GET http://a.example.com/abs/path?q=1 HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(doc["path"], "/abs/path?q=1");
    assert_eq!(doc["host"], "a.example.com");
}
