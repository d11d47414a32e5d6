//! Hostile and malformed requests, written raw on a socket: each is refused (or the
//! connection closed), the process stays up, and other clients are still served.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start() -> (Manifests, Sluice) {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    let s = Sluice::start(m.path(), &[]);
    (m, s)
}

/// The proxy still answers a normal request and its health check.
async fn still_serving(s: &mut Sluice) {
    assert!(s.running(), "sluice died:\n{}", s.stderr().join("\n"));
    let r = get(&s.url("/after"), Some("fine.example.com")).await;
    assert_eq!(r.status, 200);
    assert!(!r.body.is_empty());
    assert_eq!(get(&s.admin_url("/healthz"), None).await.status, 200);
}

/// A status line, or the connection closed without one (0).
fn refused(resp: &str, status: u16) -> bool {
    raw_status(resp) == status || resp.is_empty()
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_is_refused() {
    let (_m, mut s) = start().await;
    let inputs: [&[u8]; 4] = [
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n",
        b"\x00\x01\x02\x03\xff\xfe\r\n\r\n",
        b"hello there\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: a\r\n\r\n",
    ];
    for input in inputs {
        let resp = raw_exchange(s.http, input).await;
        assert!(refused(&resp, 400), "{input:?} got {resp:?}");
    }
    still_serving(&mut s).await;
}

/// A backend answering each request with the number of header lines it received.
async fn header_counting_backend() -> (SocketAddr, Arc<Mutex<Vec<usize>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let addr = tcp_backend(move |mut stream| {
        let log = log.clone();
        async move {
            while let Some(head) = read_head(&mut stream).await {
                let head = String::from_utf8_lossy(&head).into_owned();
                let n = head.split("\r\n\r\n").next().unwrap().lines().count() - 1;
                log.lock().unwrap().push(n);
                let body = n.to_string();
                let resp =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                if stream.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_heads_are_refused() {
    let (backend, seen) = header_counting_backend().await;
    let m = catch_all("count", &[backend], &[]);
    let mut s = Sluice::start(m.path(), &[]);

    // 100 headers of 700 bytes: 70 KB, over what hyper reads of a head (twice
    // `large-client-header-buffers`, 64 KiB at least): 431.
    let mut big = String::from("GET / HTTP/1.1\r\nHost: a.example.com\r\n");
    for i in 0..100 {
        big.push_str(&format!("x-h{i}: {}\r\n", "v".repeat(700)));
    }
    big.push_str("\r\n");
    let resp = raw_exchange(s.http, big.as_bytes()).await;
    assert_eq!(raw_status(&resp), 431, "{resp:?}");

    // 250 tiny headers: over the 200 header limit, though small.
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a.example.com\r\n");
    for i in 0..250 {
        many.push_str(&format!("x-{i}: 1\r\n"));
    }
    many.push_str("\r\n");
    assert!(many.len() < 8 * 1024);
    let resp = raw_exchange(s.http, many.as_bytes()).await;
    assert_eq!(raw_status(&resp), 431, "{resp:?}");

    // 150 headers in 40 KB: over the default buffers (4 8k), 400 as NGINX answers.
    let mut over = String::from("GET / HTTP/1.1\r\nHost: a.example.com\r\n");
    for i in 0..150 {
        over.push_str(&format!("x-{i}: {}\r\n", "w".repeat(250)));
    }
    over.push_str("\r\n");
    let resp = raw_exchange(s.http, over.as_bytes()).await;
    assert_eq!(raw_status(&resp), 400, "{resp:?}");
    assert!(resp.contains("Request Header Or Cookie Too Large"), "{resp:?}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "refused heads reached the backend: {:?}",
        seen.lock().unwrap()
    );

    // 150 headers in 24 KB are within the limits and reach the backend whole.
    let mut fine = String::from("GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n");
    for i in 0..150 {
        fine.push_str(&format!("x-{i}: {}\r\n", "w".repeat(150)));
    }
    fine.push_str("\r\n");
    let resp = raw_exchange(s.http, fine.as_bytes()).await;
    assert_eq!(raw_status(&resp), 200, "{resp:?}");
    let forwarded = *seen.lock().unwrap().last().expect("the request reached the backend");
    assert!(forwarded >= 151, "only {forwarded} headers reached the backend");
    still_serving(&mut s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_invalid_host_is_400() {
    let (_m, mut s) = start().await;
    let cases: [&[u8]; 5] = [
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: ../x\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example.com/evil\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
    ];
    for case in cases {
        let resp = raw_exchange(s.http, case).await;
        assert_eq!(raw_status(&resp), 400, "{} got {resp:?}", String::from_utf8_lossy(case));
        assert!(resp.contains("400 Bad Request"), "{resp}");
    }
    // A valid Host with a port is fine.
    let resp = raw_exchange(
        s.http,
        b"GET / HTTP/1.1\r\nHost: a.example.com:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&resp), 200, "{resp:?}");
    still_serving(&mut s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn long_uris_and_bad_methods_are_refused() {
    let (_m, mut s) = start().await;
    // An absurd URI (100 KB): refused as too long, never forwarded.
    let uri = format!("/{}", "a".repeat(100_000));
    let resp =
        raw_exchange(s.http, format!("GET {uri} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()).await;
    assert!(matches!(raw_status(&resp), 414 | 431), "{:?}", &resp[..resp.len().min(200)]);
    // A long but sane one (8 KB) passes intact.
    let uri = format!("/{}", "b".repeat(8_000));
    let resp = raw_exchange(
        s.http,
        format!("GET {uri} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(raw_status(&resp), 200);
    assert!(resp.contains(&uri), "the long path reached the backend altered");

    for line in ["G(T / HTTP/1.1", "GET\x01 / HTTP/1.1", "GET /a b HTTP/1.1", "/ GET HTTP/1.1"] {
        let resp = raw_exchange(s.http, format!("{line}\r\nHost: a\r\n\r\n").as_bytes()).await;
        assert!(refused(&resp, 400), "{line:?} got {resp:?}");
    }
    still_serving(&mut s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_requests_are_harmless() {
    let (_m, mut s) = start().await;
    for partial in [
        &b"GET / HTTP/1.1\r\nHost: a"[..],
        b"GET /",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc",
    ] {
        let mut stream = tokio::net::TcpStream::connect(s.http).await.unwrap();
        stream.write_all(partial).await.unwrap();
        drop(stream);
    }
    // A truncated body with the write side shut: the proxy must not hang or die.
    let mut stream = tokio::net::TcpStream::connect(s.http).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the proxy kept a half-closed, truncated request open");
    let resp = String::from_utf8_lossy(&buf);
    assert!(raw_status(&resp) != 200, "a truncated body was answered as if whole: {resp}");
    still_serving(&mut s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_do_not_block_other_clients() {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    // One worker: the slow client and the others share the thread.
    let mut s = Sluice::start_workers(m.path(), 1, &[]);

    let addr = s.http;
    let slowloris = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        for b in b"GET / HTTP/1.1\r\n" {
            if stream.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if started.elapsed() >= Duration::from_secs(1) {
                break;
            }
        }
        (stream, started)
    });
    // While it dribbles, others are served promptly.
    let c = client();
    let mut served = 0;
    let deadline = Instant::now() + Duration::from_millis(800);
    while Instant::now() < deadline {
        let started = Instant::now();
        let r =
            send(&c, request("GET", &s.url("/"), Some("other.example.com"), Bytes::new())).await;
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "a request took {:?}",
            started.elapsed()
        );
        let fresh = get(&s.url("/"), Some("other.example.com")).await;
        assert_eq!(fresh.status, 200);
        served += 2;
    }
    let (slow, slow_started) = slowloris.await.unwrap();
    assert!(slow_started.elapsed() >= Duration::from_millis(900), "the slow client was not slow");
    assert!(served >= 10, "only {served} requests were served alongside the slow client");
    drop(slow);
    still_serving(&mut s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn content_length_with_chunked_does_not_smuggle_a_request() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let backend = http_backend(move |req| {
        log.lock().unwrap().push(req.uri().path().to_string());
        async move {
            let n = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
            http::Response::new(Full::new(Bytes::from(format!("body={n}"))))
        }
    })
    .await;
    let m = catch_all("app", &[backend], &[]);
    let mut s = Sluice::start(m.path(), &[]);

    // Under Content-Length the whole tail is one body; under chunked it is an empty body and
    // a second request. Either way only one request may reach the backend (RFC 9112 6.3: such
    // a message is an error, or the connection closes after answering it).
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let body = format!("0\r\n\r\n{smuggled}");
    let attack = format!(
        "POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
        body.len()
    );
    let resp = raw_exchange_all(s.http, attack.as_bytes()).await;
    let paths = seen.lock().unwrap().clone();
    assert!(
        !paths.iter().any(|p| p == "/smuggled"),
        "a smuggled request reached the backend: {paths:?}\n{resp}"
    );
    assert!(paths.len() <= 1, "two requests reached the backend: {paths:?}");
    assert!(resp.matches("HTTP/1.1 ").count() <= 1, "two responses for one request: {resp}");
    still_serving(&mut s).await;
}

/// Writes `bytes` and reads everything until the proxy closes or 3 s pass without news.
async fn raw_exchange_all(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_secs(3), stream.read(&mut chunk)).await
    {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_host_headers_are_400() {
    let (_m, mut s) = start().await;
    // RFC 9112 3.2: more than one Host line is a 400 (NGINX: "client sent duplicate host header").
    let resp = raw_exchange(
        s.http,
        b"GET / HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&resp), 400, "{resp}");
    still_serving(&mut s).await;
}

/// Requests NGINX refuses before routing are refused here too, and never reach a backend.
#[tokio::test(flavor = "multi_thread")]
async fn connect_asterisk_and_unknown_transfer_codings_are_refused() {
    let (_m, mut s) = start().await;
    for (request, status) in [
        // A proxied 2xx to CONNECT would turn the client connection into a tunnel.
        ("CONNECT internal.example:443 HTTP/1.1\r\nHost: internal.example:443\r\n\r\n", 405),
        ("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        // The upstream would receive gzip bytes with nothing saying so.
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            501,
        ),
    ] {
        let resp = raw_exchange(s.http, request.as_bytes()).await;
        assert_eq!(raw_status(&resp), status, "{request:?} got {resp:?}");
        assert!(resp.contains("server: sluice"), "{resp}");
    }
    still_serving(&mut s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_1_0_without_host_is_served_by_the_catch_all() {
    let (_m, s) = start().await;
    let resp = raw_exchange(s.http, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert!(resp.contains("\"name\":\"app\""), "{resp}");
}
