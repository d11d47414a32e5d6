//! Connections: keep-alive on both sides, round-robin over endpoints, h2c with prior knowledge.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_on_both_sides() {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    let s = Sluice::start_workers(m.path(), 1, &[]);

    // One client connection, many requests in turn.
    let stream = tokio::net::TcpStream::connect(s.http).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut remotes = Vec::new();
    for i in 0..50 {
        sender.ready().await.expect("the client connection stays open");
        let req = http::Request::builder()
            .uri(format!("/n/{i}"))
            .header("host", "keepalive.example.com")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = tokio::time::timeout(WAIT, sender.send_request(req))
            .await
            .unwrap()
            .expect("a response");
        assert_eq!(resp.status(), 200, "request {i}");
        assert!(
            resp.headers().get("connection").is_none_or(|v| v != "close"),
            "request {i}: {:?}",
            resp.headers()
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["path"], format!("/n/{i}"));
        remotes.push(doc["remote"].as_str().unwrap().to_string());
    }
    let distinct: std::collections::BTreeSet<_> = remotes.iter().collect();
    assert_eq!(distinct.len(), 1, "the upstream connection is reused: {distinct:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_connections_are_reused_across_client_connections() {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    let s = Sluice::start_workers(m.path(), 1, &[]);
    let mut remotes = std::collections::BTreeSet::new();
    for _ in 0..10 {
        // A fresh client (and so client connection) each time.
        let r = get(&s.url("/"), Some("a.example.com")).await;
        assert_eq!(r.status, 200);
        remotes.insert(r.json()["remote"].as_str().unwrap().to_string());
    }
    assert_eq!(
        remotes.len(),
        1,
        "sequential requests share one pooled upstream connection: {remotes:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_spreads_requests_evenly() {
    let (a, b, c) = (echo("a").await, echo("b").await, echo("c").await);
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("abc", &[a, b, c]));
    m.write("ing.yaml", &ingress("web", "rr.example.com", &[("/", "Prefix", "abc")], &[]));
    let s = Sluice::start_workers(m.path(), 1, &[]);

    let client = client();
    let mut hits: BTreeMap<String, usize> = BTreeMap::new();
    let mut order = Vec::new();
    for _ in 0..30 {
        let r =
            send(&client, request("GET", &s.url("/"), Some("rr.example.com"), Bytes::new())).await;
        assert_eq!(r.status, 200);
        *hits.entry(r.backend()).or_default() += 1;
        order.push(r.backend());
    }
    let expected: BTreeMap<String, usize> =
        ["a", "b", "c"].iter().map(|n| (n.to_string(), 10)).collect();
    assert_eq!(hits, expected, "in order: {order:?}");
    for w in order.windows(3) {
        assert!(w[0] != w[1] && w[1] != w[2] && w[0] != w[2], "not round-robin: {order:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_prior_knowledge_is_routed_over_http1_upstream() {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    let s = Sluice::start(m.path(), &[]);

    let r = send(&h2c_client(), request("GET", &s.url("/h2?x=1"), None, Bytes::new())).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["server"], "sluice");
    let doc = r.json();
    assert_eq!(doc["name"], "app");
    assert_eq!(doc["version"], "HTTP/1.1", "the upstream is spoken to in HTTP/1.1");
    assert_eq!(doc["path"], "/h2?x=1");
    assert_eq!(doc["host"], s.http.to_string(), "the :authority becomes the upstream Host");
    assert_eq!(doc["headers"]["x-forwarded-host"], s.http.to_string());

    // A POST with a body over h2c.
    let r =
        send(&h2c_client(), request("POST", &s.url("/up"), None, Bytes::from(vec![7u8; 100_000])))
            .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_bytes"], 100_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_many_concurrent_streams_on_one_connection() {
    let app = echo("app").await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[app]));
    m.write("ing.yaml", &ingress("web", "h2.example.com", &[("/", "Prefix", "app")], &[]));
    let s = Sluice::start(m.path(), &[]);

    // Exactly one TCP connection, HTTP/2 with prior knowledge.
    let stream = tokio::net::TcpStream::connect(s.http).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);

    // Each answer takes 300 ms: 100 of them in turn would take 30 s.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let mut sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            let req = http::Request::builder()
                .uri(format!("http://h2.example.com/s/{i}?delay_ms=300"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = sender.send_request(req).await.expect("a response");
            let status = resp.status();
            let version = resp.version();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, version, serde_json::from_slice::<serde_json::Value>(&body).unwrap())
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let (status, version, doc) = tokio::time::timeout(WAIT, t).await.unwrap().unwrap();
        assert_eq!(status, 200, "stream {i}");
        assert_eq!(version, http::Version::HTTP_2);
        assert_eq!(doc["path"], format!("/s/{i}?delay_ms=300"));
        assert_eq!(doc["host"], "h2.example.com");
        assert_eq!(doc["version"], "HTTP/1.1");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "the streams were not served concurrently: {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_abandoned_by_the_client_does_not_poison_the_pool() {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    let s = Sluice::start_workers(m.path(), 1, &[]);

    let first = get(&s.url("/warm"), None).await;
    let warm_remote = first.json()["remote"].as_str().unwrap().to_string();
    {
        let c = client();
        let resp = tokio::time::timeout(
            WAIT,
            c.request(request("GET", &s.url("/?bytes=20000000"), None, Bytes::new())),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let frame = tokio::time::timeout(WAIT, body.frame()).await.unwrap().unwrap().unwrap();
        assert!(frame.data_ref().is_some_and(|d| !d.is_empty()));
        // The client goes away with most of the body unread.
    }
    for i in 0..10 {
        let r = get(&s.url(&format!("/after/{i}")), None).await;
        assert_eq!(r.status, 200, "request {i}");
        let doc = r.json();
        assert_eq!(doc["path"], format!("/after/{i}"), "an answer out of step");
        assert_ne!(
            doc["remote"],
            warm_remote.as_str(),
            "the half-read upstream connection was reused"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_closing_after_each_response_is_not_an_error() {
    use tokio::io::AsyncWriteExt;
    // Answers one request per connection, then closes without saying so (no
    // `Connection: close`), as a backend with a short keep-alive timeout does.
    let backend = tcp_backend(|mut stream| async move {
        if read_head(&mut stream).await.is_some() {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone").await;
        }
    })
    .await;
    let m = catch_all("app", &[backend], &[]);
    let s = Sluice::start_workers(m.path(), 1, &[]);
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let r = send(&c, request("GET", &s.url("/"), None, Bytes::new())).await;
        statuses.push(r.status.as_u16());
        if r.status == 200 {
            assert_eq!(&r.body[..], b"done");
        }
    }
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_connection_close_responses_are_followed() {
    use tokio::io::AsyncWriteExt;
    let backend = tcp_backend(|mut stream| async move {
        if read_head(&mut stream).await.is_some() {
            let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbye!";
            let _ = stream.write_all(resp).await;
        }
    })
    .await;
    let m = catch_all("app", &[backend], &[]);
    let s = Sluice::start_workers(m.path(), 1, &[]);
    let c = client();
    for i in 0..20 {
        let r = send(&c, request("GET", &s.url("/"), None, Bytes::new())).await;
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(&r.body[..], b"bye!");
        assert!(
            r.headers.get("connection").is_none_or(|v| v != "close"),
            "the upstream's Connection: close leaked to the client"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_answered_in_order() {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    let s = Sluice::start(m.path(), &[]);
    // Three requests written at once; the middle one is slow and must not be overtaken.
    let pipelined = "GET /one HTTP/1.1\r\nHost: p.example.com\r\n\r\n\
                     GET /two?delay_ms=300 HTTP/1.1\r\nHost: p.example.com\r\n\r\n\
                     GET /three HTTP/1.1\r\nHost: p.example.com\r\nConnection: close\r\n\r\n";
    let mut stream = tokio::net::TcpStream::connect(s.http).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, pipelined.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut all))
        .await
        .expect("the proxy answers all three and closes")
        .unwrap();
    let all = String::from_utf8_lossy(&all);
    assert_eq!(all.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{all}");
    let at =
        |p: &str| all.find(&format!("\"path\":\"{p}")).unwrap_or_else(|| panic!("no {p} in {all}"));
    assert!(at("/one") < at("/two") && at("/two") < at("/three"), "answers out of order: {all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_get_on_a_pooled_connection_closed_by_the_backend_is_retried() {
    use tokio::io::AsyncWriteExt;
    // Each connection answers its first request and keeps alive; on the second request it
    // closes without answering: what a backend whose keep-alive timeout fires just as a
    // request arrives does.
    let backend = tcp_backend(|mut stream| async move {
        if read_head(&mut stream).await.is_some() {
            let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh";
            if stream.write_all(resp).await.is_err() {
                return;
            }
        }
        let _ = read_head(&mut stream).await;
        // dropped: closed without an answer
    })
    .await;
    let m = catch_all("app", &[backend], &[]);
    let s = Sluice::start_workers(m.path(), 1, &[]);
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = send(&c, request("GET", &s.url("/"), None, Bytes::new())).await;
        statuses.push(r.status.as_u16());
    }
    // Every other request lands on a pooled connection that then closes: NGINX counts such a
    // failure on a cached connection as no try and moves on to a fresh connection.
    assert_eq!(statuses, [200; 6], "{statuses:?}");
}
