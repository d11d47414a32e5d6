//! The general path's raw upstream leg: requests hyper serves (HTTP/2, and HTTP/1.1 requests
//! handed over) whose body is absent or held go to a plain HTTP/1.1 backend on the worker's
//! pooled raw connections, written and read by the request's own task. These tests hold it to
//! what the fast path does with the same backends (proxy_fast_path.rs): interim answers
//! dropped, every body framing decoded, invalid heads 502 (or the next endpoint, sent the same
//! request), stalls cut after `proxy-read-timeout`, connections reused only when the upstream
//! allows, a pooled connection found closed replaced without the client noticing.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One h2c connection to Sluice, for many requests.
struct H2 {
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
}

impl H2 {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http2::handshake(
            TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .expect("an h2c connection");
        tokio::spawn(conn);
        Self { sender }
    }

    /// Sends a request and reads its response; the body is `Err` when it broke off.
    async fn send(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        body: &'static [u8],
    ) -> (u16, http::HeaderMap, Result<Bytes, String>) {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://{host}{path}"))
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        let resp = tokio::time::timeout(WAIT, self.sender.send_request(req))
            .await
            .expect("no timeout")
            .expect("a response");
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(WAIT, body.collect()).await.expect("the body ends");
        (
            parts.status.as_u16(),
            parts.headers,
            body.map(|b| b.to_bytes()).map_err(|e| e.to_string()),
        )
    }
}

/// What a raw backend does with a request head: writes `bytes`, then keeps the connection
/// or closes it.
struct Answer {
    bytes: Vec<u8>,
    close: bool,
}

fn keep(bytes: &[u8]) -> Answer {
    Answer { bytes: bytes.to_vec(), close: false }
}

fn close(bytes: &[u8]) -> Answer {
    Answer { bytes: bytes.to_vec(), close: true }
}

/// A keep-alive raw backend answering each request (head and `Content-Length` body) with
/// `answer(head, body)`, counting the connections it accepted.
async fn raw_backend(answer: fn(&str, &[u8]) -> Answer) -> (SocketAddr, Arc<AtomicUsize>) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let addr = tcp_backend(move |mut stream| {
        count.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut buf = Vec::new();
            loop {
                let Some(end) = read_head_into(&mut stream, &mut buf).await else { return };
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let len: usize = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.trim().parse().unwrap());
                while buf.len() < end + len {
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body: Vec<u8> = buf.drain(..end + len).skip(end).collect();
                let a = answer(&head, &body);
                if stream.write_all(&a.bytes).await.is_err() || a.close {
                    return;
                }
            }
        }
    })
    .await;
    (addr, accepted)
}

fn path_of(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or_default()
}

/// One answer of each framing the fast path handles, by path.
fn framings(head: &str, _body: &[u8]) -> Answer {
    match path_of(head) {
        "/interim" => keep(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ),
        "/chunked" => keep(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n\
              5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Sum: 11\r\n\r\n",
        ),
        // The coding delimits the body; the length is wrong and must not reach the client.
        "/both" => keep(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n\
              4\r\nboth\r\n0\r\n\r\n",
        ),
        "/eof" => {
            close(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the backend closes")
        }
        "/no-content" => keep(b"HTTP/1.1 204 No Content\r\n\r\n"),
        // Bytes after the body: the connection must not serve again.
        "/extra" => keep(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextraJUNK"),
        "/two-lengths" => {
            keep(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc")
        }
        "/garbage" => keep(b"this is not HTTP\r\n\r\n"),
        "/switch" => keep(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"),
        _ if head.starts_with("HEAD ") => keep(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
        _ => keep(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine"),
    }
}

fn start(backends: &[SocketAddr], annotations: &[(&str, &str)]) -> (Manifests, Sluice) {
    let m = catch_all("leg", backends, annotations);
    let s = Sluice::start_workers(m.path(), 1, &["--log-format", "json"]);
    (m, s)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_body_framing_reaches_an_h2_client_decoded() {
    let (backend, accepted) = raw_backend(framings).await;
    let (_m, s) = start(&[backend], &[]);
    let mut h2 = H2::connect(s.http).await;
    let cases: [(&str, &str, u16, &str); 7] = [
        ("GET", "/interim", 200, "ok"),
        ("GET", "/chunked", 200, "hello world"),
        ("GET", "/both", 200, "both"),
        ("GET", "/eof", 200, "until the backend closes"),
        ("GET", "/no-content", 204, ""),
        ("HEAD", "/head", 200, ""),
        ("POST", "/fine", 200, "fine"),
    ];
    for (method, path, status, body) in cases {
        let (got, headers, got_body) = h2.send(method, "leg.example.com", path, b"").await;
        assert_eq!(got, status, "{method} {path}");
        assert_eq!(got_body.as_deref(), Ok(body.as_bytes()), "{method} {path}");
        assert!(headers.get("link").is_none() && headers.get("trailer").is_none(), "{path}");
        if path == "/both" {
            assert!(headers.get("content-length").is_none(), "{headers:?}");
        }
        if method == "HEAD" {
            assert_eq!(headers["content-length"], "5", "HEAD keeps the length");
        }
    }
    // Seven requests, and only the close-delimited answer cost a connection: the others went
    // back to the pool whole (the 204 and the HEAD answer without reading a body).
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_and_fast_path_requests_share_the_pooled_connections() {
    let (backend, accepted) = raw_backend(framings).await;
    let (_m, s) = start(&[backend], &[]);
    let mut h2 = H2::connect(s.http).await;
    for i in 0..10 {
        let (status, _, body) = h2.send("GET", "leg.example.com", &format!("/{i}"), b"").await;
        assert_eq!((status, body.as_deref()), (200, Ok(&b"fine"[..])));
    }
    // The fast path takes the same connection from the worker's pool.
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    stream.write_all(b"GET /fast HTTP/1.1\r\nHost: leg.example.com\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"fine") {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one upstream connection for all");
    // Bytes after a body: that connection is closed, the next request opens another.
    let (status, _, body) = h2.send("GET", "leg.example.com", "/extra", b"").await;
    assert_eq!((status, body.as_deref()), (200, Ok(&b"extra"[..])));
    let (status, _, _) = h2.send("GET", "leg.example.com", "/after", b"").await;
    assert_eq!(status, 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "the connection with junk was not kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_heads_are_502_and_the_stream_and_connection_go_on() {
    let (backend, _) = raw_backend(framings).await;
    let tries = ("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "1");
    let (_m, s) = start(&[backend], &[tries]);
    let mut h2 = H2::connect(s.http).await;
    for (path, status) in
        [("/garbage", 502), ("/two-lengths", 502), ("/switch", 502), ("/fine", 200)]
    {
        let (got, _, body) = h2.send("GET", "leg.example.com", path, b"").await;
        assert_eq!(got, status, "{path}");
        if status == 502 {
            let body = body.unwrap();
            assert!(String::from_utf8_lossy(&body).contains("502 Bad Gateway</title>"), "{path}");
        }
    }
    let metrics = metrics(&s).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_upstream_errors_total") && l.contains("invalid_header")),
        "{metrics}"
    );
}

/// The first endpoint answers with a head NGINX refuses, the second records what it got:
/// with `proxy-next-upstream: invalid_header`, the second gets the request exactly as the
/// first did, body included, whichever way the client came.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_head_sends_the_same_request_to_the_next_endpoint() {
    fn refuse(_head: &str, _body: &[u8]) -> Answer {
        keep(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc")
    }
    fn report(head: &str, body: &[u8]) -> Answer {
        let text = format!(
            "{} {}",
            head.lines().next().unwrap_or_default(),
            String::from_utf8_lossy(body)
        );
        keep(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}", text.len()).as_bytes())
    }
    let (bad, _) = raw_backend(refuse).await;
    let (good, _) = raw_backend(report).await;
    let next = (
        "nginx.ingress.kubernetes.io/proxy-next-upstream",
        "error timeout invalid_header non_idempotent",
    );
    let (_m, s) = start(&[bad, good], &[next]);
    let want = "POST /form HTTP/1.1 a=1";
    // HTTP/2, twice: round robin starts one of them at the bad endpoint.
    let mut h2 = H2::connect(s.http).await;
    for _ in 0..2 {
        let (status, _, body) = h2.send("POST", "leg.example.com", "/form", b"a=1").await;
        assert_eq!((status, body.as_deref()), (200, Ok(want.as_bytes())));
    }
    // Bodies on both sides of what the leg carries (64 KiB; hyper the larger), sent again
    // whole.
    for size in [64 * 1024, 100 * 1024] {
        let body: &'static [u8] = Box::leak(vec![b'x'; size].into_boxed_slice());
        for _ in 0..2 {
            let (status, _, got) = h2.send("POST", "leg.example.com", "/form", body).await;
            let got = got.unwrap();
            assert_eq!(status, 200);
            assert!(got.starts_with(b"POST /form HTTP/1.1 xxx"), "{size}");
            assert_eq!(got.len(), "POST /form HTTP/1.1 ".len() + size, "{size}");
        }
    }
    // The fast path, twice, on one connection.
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    for _ in 0..2 {
        stream
            .write_all(
                b"POST /form HTTP/1.1\r\nHost: leg.example.com\r\nContent-Length: 3\r\n\r\na=1",
            )
            .await
            .unwrap();
        let mut got = Vec::new();
        while !got.ends_with(want.as_bytes()) {
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await.unwrap().unwrap();
            assert!(n > 0, "{}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&got));
    }
}

/// A body that stops arriving is cut after `proxy-read-timeout` (the client sees its stream
/// end abnormally, the log a 200 that did not complete); a pooled connection the backend
/// closed meanwhile is replaced without the client noticing.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_bodies_are_cut_and_stale_connections_replaced() {
    let stalled = tcp_backend(|mut stream| async move {
        let _ = read_head(&mut stream).await;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let timeout = ("nginx.ingress.kubernetes.io/proxy-read-timeout", "1");
    let (_m, s) = start(&[stalled], &[timeout]);
    let mut h2 = H2::connect(s.http).await;
    let started = std::time::Instant::now();
    let (status, _, body) = h2.send("GET", "leg.example.com", "/stall", b"").await;
    assert_eq!(status, 200);
    assert!(body.is_err(), "the body must not end cleanly: {body:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "cut after the read timeout");
    // The same client connection goes on.
    let (status, _, _) = h2.send("GET", "leg.example.com", "/stall", b"").await;
    assert_eq!(status, 200);

    // A backend that closes each connection after one answer, without saying so: the next
    // request finds its pooled connection dead and goes on a fresh one.
    fn once(_head: &str, _body: &[u8]) -> Answer {
        close(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nonce")
    }
    let (closing, accepted) = raw_backend(once).await;
    let (_m2, s2) = start(&[closing], &[]);
    let mut h2 = H2::connect(s2.http).await;
    for i in 0..5 {
        let (status, _, body) = h2.send("GET", "leg.example.com", &format!("/{i}"), b"").await;
        assert_eq!((status, body.as_deref()), (200, Ok(&b"once"[..])), "request {i}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
}
