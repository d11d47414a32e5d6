//! Client connection limits and timeouts, and upstream keep-alive, set by ingress-nginx's
//! ConfigMap keys (`client-header-timeout`, `client-body-timeout`, `keep-alive-requests`,
//! `large-client-header-buffers`, `max-worker-connections`, `upstream-keepalive-*`), on the
//! fast path (a `GET`, or a small `Content-Length` body, on the HTTP port) and on the general
//! path (hyper: a connection after a request with a chunked body), with hostile HTTP/1 clients: slow heads, slow bodies, pipelining
//! floods. Each is checked against a real attacking client while another is served.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sluice (one worker, so that attackers and others share a thread) with the ConfigMap
/// `data`, in front of an echo backend for every host; `annotations` on the Ingress.
fn start_with(
    data: &[(&str, &str)],
    annotations: &[(&str, &str)],
    app: SocketAddr,
) -> (Manifests, Sluice) {
    let m = catch_all("app", &[app], annotations);
    m.write("cm.yaml", &sluice_config(data));
    let s = Sluice::start_workers(m.path(), 1, &["--configmap", "default/sluice-config"]);
    (m, s)
}

async fn start(data: &[(&str, &str)]) -> (Manifests, Sluice) {
    start_with(data, &[], echo("app").await)
}

/// A small POST with a chunked body: the fast path hands the connection to hyper for it, so
/// what follows on the connection is read by the general path.
const POST: &str = "POST /post HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";

/// The same POST with a `Content-Length`: the fast path carries it.
const FAST_POST: &str = "POST /post HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 2\r\n\r\nhi";

/// Reads until the peer closes (or fails): what came, and how long it took. Panics after
/// `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return (got, started.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("still open after {limit:?}: {}", String::from_utf8_lossy(&got)),
        }
    }
}

/// Another client is served promptly, on a fresh connection.
async fn others_served(s: &Sluice) {
    let started = Instant::now();
    let r = get(&s.url("/other"), Some("other.example.com")).await;
    assert_eq!(r.status, 200);
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
}

/// Dribbles `head` a byte every `gap` until the peer closes; returns what it answered and
/// when it closed, from the first byte.
async fn dribble(stream: &mut TcpStream, head: &[u8], gap: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    for b in head {
        if stream.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(gap).await;
        let mut probe = [0u8; 1024];
        // Closed meanwhile? (A read that finds nothing waiting does not block.)
        match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await {
            Ok(Ok(0) | Err(_)) => return (Vec::new(), started.elapsed()),
            Ok(Ok(n)) => return (probe[..n].to_vec(), started.elapsed()),
            Err(_) => {}
        }
    }
    let (got, _) = read_until_closed(stream, WAIT).await;
    (got, started.elapsed())
}

// Slowloris on the fast path: a head dribbled a byte every 300 ms is cut at
// `client-header-timeout` (1 s) without an answer, as NGINX does; a connection that sends
// nothing at all is cut after the same time (NGINX's wait for a first request); others are
// served meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn slow_heads_are_cut_at_client_header_timeout_on_the_fast_path() {
    let (_m, s) = start(&[("client-header-timeout", "1")]).await;
    let mut silent = TcpStream::connect(s.http).await.unwrap();
    let mut slow = TcpStream::connect(s.http).await.unwrap();
    let head = b"GET /slow HTTP/1.1\r\nHost: a.example.com\r\nX-Padding: 0123456789\r\n\r\n";
    let attack =
        tokio::spawn(async move { dribble(&mut slow, head, Duration::from_millis(300)).await });
    others_served(&s).await;
    let (answer, took) = attack.await.unwrap();
    assert!(answer.is_empty(), "answered: {}", String::from_utf8_lossy(&answer));
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(4), "{took:?}");
    let (answer, took) = read_until_closed(&mut silent, WAIT).await;
    assert!(answer.is_empty() && took < Duration::from_secs(4), "{took:?}");
    others_served(&s).await;
}

// The same on the general path: after a request with a chunked body (hyper carries the connection
// from then on), the next head dribbled slowly is cut at `client-header-timeout` without an
// answer.
#[tokio::test(flavor = "multi_thread")]
async fn slow_heads_are_cut_at_client_header_timeout_on_the_general_path() {
    let (_m, s) = start(&[("client-header-timeout", "1")]).await;
    let mut slow = TcpStream::connect(s.http).await.unwrap();
    let (status, _, _) = exchange(&mut slow, POST).await;
    assert_eq!(status, 200);
    let head = b"POST /slow HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 2\r\n\r\nhi";
    let attack =
        tokio::spawn(async move { dribble(&mut slow, head, Duration::from_millis(300)).await });
    others_served(&s).await;
    let (answer, took) = attack.await.unwrap();
    assert!(answer.is_empty(), "answered: {}", String::from_utf8_lossy(&answer));
    assert!(took < Duration::from_secs(4), "{took:?}");
    others_served(&s).await;
}

// A request body that stops arriving: cut at `client-body-timeout` (1 s) without an answer
// (NGINX logs 408 and closes), whether the body is buffered (the default: the fast path
// holds a body this small) or streamed (`proxy-request-buffering: off`: the general path); a
// body whose pieces come less than the timeout apart is served however long it takes in all.
#[tokio::test(flavor = "multi_thread")]
async fn slow_bodies_are_cut_at_client_body_timeout() {
    for buffering in ["on", "off"] {
        let app = echo("app").await;
        let annotations = [("nginx.ingress.kubernetes.io/proxy-request-buffering", buffering)];
        let (_m, s) = start_with(&[("client-body-timeout", "1")], &annotations, app);
        let mut stalled = TcpStream::connect(s.http).await.unwrap();
        stalled
            .write_all(b"POST /up HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 100\r\n\r\n0123456789")
            .await
            .unwrap();
        others_served(&s).await;
        let (answer, took) = read_until_closed(&mut stalled, WAIT).await;
        assert!(answer.is_empty(), "{buffering}: answered {}", String::from_utf8_lossy(&answer));
        // Logged 408, as NGINX logs it.
        s.wait_stdout(|l| l.contains("\"POST /up HTTP/1.1\" 408 "));
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_secs(4),
            "{buffering}: {took:?}"
        );

        // Ten bytes every 400 ms: 2 s in all, never 1 s without a byte.
        let mut steady = TcpStream::connect(s.http).await.unwrap();
        steady
            .write_all(b"POST /up HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 50\r\n\r\n")
            .await
            .unwrap();
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            steady.write_all(b"0123456789").await.unwrap();
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(WAIT, steady.read(&mut chunk)).await.unwrap().unwrap();
            assert!(n > 0, "{buffering}: closed: {}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(raw_status(&String::from_utf8_lossy(&buf)), 200, "{buffering}");
        others_served(&s).await;
    }
}

/// Sends `req` `n` times on one connection; returns the status and `Connection` header of
/// each response, then whether the connection was closed after the last.
async fn keep_alive_run(s: &Sluice, req: &str, n: usize) -> (Vec<(u16, bool)>, bool) {
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..n {
        let (status, head, _) = exchange(&mut stream, req).await;
        seen.push((status, head.to_ascii_lowercase().contains("connection: close")));
    }
    let mut byte = [0u8; 1];
    let closed = matches!(
        tokio::time::timeout(Duration::from_secs(3), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    );
    (seen, closed)
}

// `keep-alive-requests: 3`: the third response on a connection says `Connection: close`, and
// the connection closes after it, on both paths.
#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_requests_closes_after_the_last() {
    let (_m, s) = start(&[("keep-alive-requests", "3")]).await;
    let get = "GET /k HTTP/1.1\r\nHost: a.example.com\r\n\r\n";
    for req in [get, FAST_POST, POST] {
        let (seen, closed) = keep_alive_run(&s, req, 3).await;
        assert_eq!(seen, [(200, false), (200, false), (200, true)], "{req}");
        assert!(closed, "{req}: the connection stayed open");
    }
    // Mixed: two GETs on the fast path, then a POST (hyper counts on).
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    for _ in 0..2 {
        let (_, head, _) = exchange(&mut stream, get).await;
        assert!(!head.to_ascii_lowercase().contains("connection: close"));
    }
    let (status, head, _) = exchange(&mut stream, POST).await;
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
}

// `keep-alive-requests: 3` on HTTP/2 (h2c with prior knowledge), as NGINX since 1.19.7: the
// third request gets GOAWAY when it arrives yet is answered in full (it takes 300 ms), then
// the connection ends and a fourth request on it is refused.
#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_requests_sends_goaway_on_http2() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let (_m, s) = start(&[("keep-alive-requests", "3")]).await;
    let stream = TcpStream::connect(s.http).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let request = |path: &str| {
        http::Request::builder()
            .uri(format!("http://a.example.com{path}"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    for path in ["/1", "/2", "/3?delay_ms=300"] {
        let resp = sender.send_request(request(path)).await.expect("a response");
        assert_eq!(resp.status(), 200, "{path}");
        let body = resp.into_body().collect().await.expect("the whole body").to_bytes();
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["path"], path);
    }
    let ended = tokio::time::timeout(WAIT, conn).await.expect("the connection ended").unwrap();
    assert!(ended.is_ok(), "the connection ended with an error: {ended:?}");
    assert!(sender.send_request(request("/4")).await.is_err(), "a fourth request was taken");
}

// `large-client-header-buffers: "2 1k"`: a request line over 1 KiB is 414, a header line over
// 1 KiB is 400 "Request Header Or Cookie Too Large", a head over 2 KiB too; nothing reaches
// the backend and the connection closes; heads within the buffers are served. On the fast
// path, and on the general path (after a request with a chunked body).
#[tokio::test(flavor = "multi_thread")]
async fn large_client_header_buffers_bound_heads() {
    let (_m, s) = start(&[("large-client-header-buffers", "2 1k")]).await;
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: a.example.com\r\n\r\n", "a".repeat(1100));
    let long_header =
        format!("GET / HTTP/1.1\r\nHost: a.example.com\r\nCookie: {}\r\n\r\n", "c".repeat(1100));
    let many = format!(
        "GET / HTTP/1.1\r\nHost: a.example.com\r\nX-A: {0}\r\nX-B: {0}\r\nX-C: {0}\r\n\r\n",
        "h".repeat(900)
    );
    let fine = format!(
        "GET / HTTP/1.1\r\nHost: a.example.com\r\nX-A: {0}\r\nX-B: {0}\r\n\r\n",
        "h".repeat(700)
    );
    let cases = [
        (long_line.as_str(), 414, "414 Request-URI Too Large"),
        (long_header.as_str(), 400, "Request Header Or Cookie Too Large"),
        (many.as_str(), 400, "Request Header Or Cookie Too Large"),
    ];
    for hyper in [false, true] {
        for (req, status, page) in cases {
            let mut stream = TcpStream::connect(s.http).await.unwrap();
            if hyper {
                assert_eq!(exchange(&mut stream, POST).await.0, 200);
            }
            stream.write_all(req.as_bytes()).await.unwrap();
            let (answer, _) = read_until_closed(&mut stream, WAIT).await;
            let answer = String::from_utf8_lossy(&answer);
            assert_eq!(raw_status(&answer), status, "hyper: {hyper}: {answer}");
            assert!(answer.contains(page), "hyper: {hyper}: {answer}");
        }
        let mut stream = TcpStream::connect(s.http).await.unwrap();
        if hyper {
            assert_eq!(exchange(&mut stream, POST).await.0, 200);
        }
        assert_eq!(exchange(&mut stream, &fine).await.0, 200, "hyper: {hyper}");
    }
    // A request line well over the buffers is refused before its end arrives.
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    stream.write_all(format!("GET /{}", "x".repeat(4000)).as_bytes()).await.unwrap();
    let (answer, _) = read_until_closed(&mut stream, WAIT).await;
    assert_eq!(raw_status(&String::from_utf8_lossy(&answer)), 414);
    others_served(&s).await;
}

// `max-worker-connections: 2` with one worker: a third client connection is not served
// while two are open (it waits in the backlog), and is served as soon as one of them ends.
#[tokio::test(flavor = "multi_thread")]
async fn max_worker_connections_holds_new_connections_in_the_backlog() {
    let (_m, s) = start(&[("max-worker-connections", "2")]).await;
    let req = "GET /w HTTP/1.1\r\nHost: a.example.com\r\n\r\n";
    let mut first = TcpStream::connect(s.http).await.unwrap();
    assert_eq!(exchange(&mut first, req).await.0, 200);
    let mut second = TcpStream::connect(s.http).await.unwrap();
    assert_eq!(exchange(&mut second, req).await.0, 200);
    let mut third = TcpStream::connect(s.http).await.unwrap();
    third.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let waiting = tokio::time::timeout(Duration::from_secs(1), third.read(&mut buf)).await;
    assert!(waiting.is_err(), "a third connection was served beyond the limit");
    drop(first);
    let n = tokio::time::timeout(WAIT, third.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(raw_status(&String::from_utf8_lossy(&buf[..n])), 200);
    // The two still open keep being served.
    assert_eq!(exchange(&mut second, req).await.0, 200);
}

/// The upstream connections (the proxy's addresses, as the echo backend saw them) that `n`
/// requests `req` used, one at a time, each on its own client connection.
async fn upstream_connections(s: &Sluice, req: &str, n: usize, gap: Duration) -> HashSet<String> {
    let mut seen = HashSet::new();
    for _ in 0..n {
        let mut stream = TcpStream::connect(s.http).await.unwrap();
        let (status, _, body) = exchange(&mut stream, req).await;
        assert_eq!(status, 200);
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        seen.insert(doc["remote"].as_str().unwrap().to_string());
        tokio::time::sleep(gap).await;
    }
    seen
}

// `upstream-keepalive-requests: 2`: six requests use three upstream connections; with
// `upstream-keepalive-connections: 0`, six; by default, one. On both paths (a GET and a POST
// with a Content-Length on the fast path, a POST with a chunked body on the general path).
#[tokio::test(flavor = "multi_thread")]
async fn upstream_keepalive_requests_and_connections_bound_reuse() {
    let get = "GET /u HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n";
    let post = "POST /u HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi";
    let chunked = "POST /u HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\n\
                   Connection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
    for (data, want) in [
        (&[][..], 1),
        (&[("upstream-keepalive-requests", "2")][..], 3),
        (&[("upstream-keepalive-connections", "0")][..], 6),
    ] {
        let (_m, s) = start(data).await;
        for req in [get, post, chunked] {
            let used = upstream_connections(&s, req, 6, Duration::ZERO).await;
            assert_eq!(used.len(), want, "{data:?} {req}: {used:?}");
        }
    }
}

// `upstream-keepalive-timeout: 1`: a connection idle for longer is not reused;
// `upstream-keepalive-time: 1s`: a connection used all along is replaced after a second.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_keepalive_timeout_and_time_retire_connections() {
    let get = "GET /u HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n";
    let (_m, s) = start(&[("upstream-keepalive-timeout", "1")]).await;
    let quick = upstream_connections(&s, get, 3, Duration::from_millis(100)).await;
    assert_eq!(quick.len(), 1, "{quick:?}");
    let idle = upstream_connections(&s, get, 2, Duration::from_millis(2500)).await;
    assert_eq!(idle.len(), 2, "{idle:?}");

    let (_m, s) = start(&[("upstream-keepalive-time", "1s")]).await;
    let used = upstream_connections(&s, get, 10, Duration::from_millis(250)).await;
    assert!((2..=5).contains(&used.len()), "{used:?}");
}

// A client that pipelines requests as fast as it can and never reads a response: the proxy
// stops reading from it once its responses back up (TCP back-pressure), so the attacker can
// write only a bounded amount, the proxy's memory stays flat, it spends no CPU on the held
// connection, and other clients are served meanwhile. On the fast path (GETs, and POSTs with
// a Content-Length) and on the general path (POSTs with a chunked body, after a hand-off).
#[tokio::test(flavor = "multi_thread")]
async fn pipelining_floods_are_held_back() {
    let (_m, s) = start(&[]).await;
    others_served(&s).await;
    let before = s.rss_kib();
    let get = "GET /flood HTTP/1.1\r\nHost: a.example.com\r\n\r\n";
    let post = "POST /flood HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 2\r\n\r\nhi";
    let chunked = "POST /flood HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\n\r\n\
                   2\r\nhi\r\n0\r\n\r\n";
    for (label, req) in [("GET", get), ("POST", post), ("chunked POST", chunked)] {
        let stream = TcpStream::connect(s.http).await.unwrap();
        let (_rd, mut wr) = stream.into_split();
        let batch = req.repeat(100);
        let addr = s.http;
        let flood = tokio::spawn(async move {
            // Writes until a write has been blocked for a second: the proxy stopped reading.
            let mut written = 0usize;
            loop {
                match tokio::time::timeout(Duration::from_secs(1), wr.write_all(batch.as_bytes()))
                    .await
                {
                    Ok(Ok(())) => written += batch.len(),
                    Ok(Err(_)) | Err(_) => return (written, wr),
                }
                assert!(written < 512 << 20, "512 MiB written and the proxy still reads");
            }
        });
        // Others are served while it floods.
        for _ in 0..10 {
            let started = Instant::now();
            let mut other = TcpStream::connect(addr).await.unwrap();
            let (status, _, _) =
                exchange(&mut other, "GET /o HTTP/1.1\r\nHost: b.example.com\r\n\r\n").await;
            assert_eq!(status, 200);
            assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        }
        let (written, _wr) = flood.await.unwrap();
        // Held back, the flooding connection soon costs no CPU: once the proxy has served
        // what the socket buffers held, half a second in which it stays open, its writes
        // blocked, takes (almost) none (a proxy spinning on it would use it all).
        let (started, mut spent) = (Instant::now(), Duration::ZERO);
        loop {
            let cpu = s.cpu_time();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let cpu = s.cpu_time().saturating_sub(cpu);
            spent += cpu;
            if cpu < Duration::from_millis(50) {
                break;
            }
            assert!(started.elapsed() < WAIT, "{req}: still busy after {WAIT:?} ({spent:?})");
        }
        let quiet = started.elapsed();
        // What the socket buffers on both sides hold, and no more: tens of MiB at most.
        assert!(
            written < 64 << 20,
            "{req}: {written} bytes accepted from a client that never reads"
        );
        let grown = s.rss_kib().saturating_sub(before);
        eprintln!(
            "pipelining flood ({label}): {written} bytes accepted, memory grew {grown} KiB, \
             quiet after {quiet:?} ({spent:?} of CPU)"
        );
        assert!(grown < 64 * 1024, "{req}: memory grew by {grown} KiB");
        others_served(&s).await;
    }
}

// Values that do not parse are reported, naming the ConfigMap and the key, and the defaults
// stay.
#[tokio::test(flavor = "multi_thread")]
async fn bad_values_are_reported_and_the_defaults_stay() {
    let bad = [
        ("client-header-timeout", "0"),
        ("client-body-timeout", "10s"),
        ("keep-alive-requests", "many"),
        ("large-client-header-buffers", "4"),
        ("max-worker-connections", "-1"),
        ("upstream-keepalive-connections", "lots"),
        ("upstream-keepalive-timeout", "1m"),
        ("upstream-keepalive-requests", "-3"),
        ("upstream-keepalive-time", "forever"),
    ];
    let (_m, s) = start(&bad).await;
    let expected: Vec<(&str, &str)> =
        bad.iter().map(|(key, _)| ("InvalidConfigMapKey", *key)).collect();
    assert_diagnostics(&s, &expected).await;
    let found = diagnostics(&s).await;
    assert!(found.iter().all(|(_, m)| m.contains("the default applies")), "{found:?}");
    // The defaults serve: keep-alive beyond three requests, heads of 8 KiB lines.
    let (seen, _) = keep_alive_run(&s, "GET /d HTTP/1.1\r\nHost: a.example.com\r\n\r\n", 4).await;
    assert!(seen.iter().all(|&(status, close)| status == 200 && !close), "{seen:?}");
}
