//! The HTTP/1.1 fast path and its hand-off: plain GET and HEAD requests are proxied between
//! sockets, everything else goes to the general (hyper) path with the bytes already read, and
//! both give the same answers. Backends that misbehave at the byte level are raw sockets.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one whole response (head, and its Content-Length or chunked body) from `stream`,
/// leaving what follows unread in `rest`.
async fn read_response(stream: &mut TcpStream, rest: &mut Vec<u8>) -> String {
    read_answer(stream, rest, false).await
}

/// [`read_response`], for a HEAD request's answer (`head_only`: no body whatever the head says).
async fn read_answer(stream: &mut TcpStream, rest: &mut Vec<u8>, head_only: bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(len) = response_len(rest, head_only) {
            let response: Vec<u8> = rest.drain(..len).collect();
            return String::from_utf8_lossy(&response).into_owned();
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => rest.extend_from_slice(&chunk[..n]),
            other => panic!("no whole response ({other:?}): {}", String::from_utf8_lossy(rest)),
        }
    }
}

/// The length of the first whole response in `buf`, if it is all there.
fn response_len(buf: &[u8], head_only: bool) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    if head_only {
        return Some(end);
    }
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return (buf.len() >= end + len).then_some(end + len);
    }
    if head.contains("transfer-encoding: chunked") {
        let tail = buf[end..].windows(5).position(|w| w == b"0\r\n\r\n")?;
        return Some(end + tail + 5);
    }
    Some(end)
}

/// The JSON body of an echo response.
fn echoed(response: &str) -> serde_json::Value {
    let body = &response[response.find("\r\n\r\n").expect("a head") + 4..];
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_moves_to_the_general_path_at_its_first_request_with_a_body() {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    let s = Sluice::start_workers(m.path(), 1, &[]);
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    let mut rest = Vec::new();

    // A GET on the fast path, then, pipelined in one write, a POST with a body (handed to
    // the general path with the bytes already read) and two more GETs behind it.
    stream.write_all(b"GET /first HTTP/1.1\r\nHost: f.example.com\r\n\r\n").await.unwrap();
    let first = read_response(&mut stream, &mut rest).await;
    assert!(first.starts_with("HTTP/1.1 200 "), "{first}");
    assert_eq!(echoed(&first)["path"], "/first");

    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: f.example.com\r\nContent-Length: 5\r\n\r\nhello\
              GET /after HTTP/1.1\r\nHost: f.example.com\r\n\r\n\
              HEAD /head HTTP/1.1\r\nHost: f.example.com\r\n\r\n",
        )
        .await
        .unwrap();
    let post = read_response(&mut stream, &mut rest).await;
    assert!(post.starts_with("HTTP/1.1 200 "), "{post}");
    let doc = echoed(&post);
    assert_eq!((doc["method"].as_str(), doc["path"].as_str()), (Some("POST"), Some("/upload")));
    let after = read_response(&mut stream, &mut rest).await;
    assert_eq!(echoed(&after)["path"], "/after", "{after}");
    let head = read_answer(&mut stream, &mut rest, true).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "a HEAD answer has no body: {head}");
    assert!(rest.is_empty(), "nothing more: {}", String::from_utf8_lossy(&rest));
}

#[tokio::test(flavor = "multi_thread")]
async fn fast_and_general_paths_send_the_backend_the_same_headers() {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    let s = Sluice::start_workers(m.path(), 1, &[]);
    let request = |method: &str, extra: &str| {
        format!(
            "{method} /same?q=1 HTTP/1.1\r\nHost: same.example.com\r\nX-Request-ID: fixed-id\r\n\
             X-Forwarded-For: 203.0.113.9\r\nConnection: keep-alive, X-Hop\r\nX-Hop: gone\r\n\
             Proxy: httpoxy\r\nUser-Agent: test/1\r\n{extra}\r\n"
        )
    };
    // GET takes the fast path; OPTIONS (another method) the general one.
    let fast = raw_exchange(s.http, request("GET", "").as_bytes()).await;
    let general = raw_exchange(s.http, request("OPTIONS", "").as_bytes()).await;
    let headers = |r: &str| {
        let doc = echoed(r);
        let mut h = doc["headers"].as_object().expect("echo lists headers").clone();
        // Differ by construction: the TCP connection the client came from.
        h.remove("x-real-ip");
        h.remove("x-forwarded-for");
        h
    };
    let (fast_headers, general_headers) = (headers(&fast), headers(&general));
    assert_eq!(fast_headers, general_headers, "\nfast: {fast}\ngeneral: {general}");
    for gone in ["x-hop", "proxy", "connection"] {
        assert!(!fast_headers.contains_key(gone), "{gone} reached the backend: {fast}");
    }
    assert_eq!(fast_headers["x-original-forwarded-for"], "203.0.113.9");
    assert_eq!(fast_headers["x-request-id"], "fixed-id");
}

#[tokio::test(flavor = "multi_thread")]
async fn interim_responses_from_the_backend_are_dropped() {
    let backend = tcp_backend(|mut stream| async move {
        while read_head(&mut stream).await.is_some() {
            let answer =
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n\
                           HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    let m = catch_all("interim", &[backend], &[]);
    let s = Sluice::start_workers(m.path(), 1, &[]);
    let response = raw_exchange(s.http, b"GET / HTTP/1.1\r\nHost: i.example.com\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nok"), "{response}");
    assert!(!response.contains("103") && !response.contains("Link"), "{response}");
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_and_close_delimited_bodies_reach_the_client_whole_and_chunked() {
    let backend = tcp_backend(|mut stream| async move {
        let Some(head) = read_head(&mut stream).await else { return };
        let answer: &[u8] = if head.starts_with(b"GET /chunked") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n\
              5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Sum: 11\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the backend closes"
        };
        let _ = stream.write_all(answer).await;
        // Close-delimited: the end of the body is the end of the connection.
        let _ = stream.shutdown().await;
    })
    .await;
    let m = catch_all("bodies", &[backend], &[]);
    let s = Sluice::start_workers(m.path(), 1, &[]);
    for (path, body) in [("/chunked", "hello world"), ("/eof", "until the backend closes")] {
        let r = get(&s.url(path), Some("b.example.com")).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, body.as_bytes(), "{path}");
        assert_eq!(r.headers["transfer-encoding"], "chunked", "{path}: {:?}", r.headers);
        assert!(r.headers.get("trailer").is_none(), "{path}: {:?}", r.headers);
    }
    // The client connection outlives the close-delimited upstream one.
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    let mut rest = Vec::new();
    for _ in 0..2 {
        stream.write_all(b"GET /eof HTTP/1.1\r\nHost: b.example.com\r\n\r\n").await.unwrap();
        let r = read_response(&mut stream, &mut rest).await;
        assert!(r.contains("until the backend closes"), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_or_oversized_response_heads_are_502_and_the_client_connection_survives() {
    let backend = tcp_backend(|mut stream| async move {
        let Some(head) = read_head(&mut stream).await else { return };
        let answer: Vec<u8> = if head.starts_with(b"GET /garbage") {
            b"this is not HTTP\r\n\r\n".to_vec()
        } else if head.starts_with(b"GET /huge") {
            let mut a = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..2000 {
                a.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "f".repeat(40)).as_bytes());
            }
            a.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            a
        } else if head.starts_with(b"GET /two-lengths") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc".to_vec()
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()
        };
        let _ = stream.write_all(&answer).await;
        let _ = stream.shutdown().await;
    })
    .await;
    let m = catch_all(
        "bad",
        &[backend],
        &[("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "1")],
    );
    let s = Sluice::start_workers(m.path(), 1, &[]);
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    let mut rest = Vec::new();
    for (path, status) in [("/garbage", 502), ("/huge", 502), ("/two-lengths", 502), ("/fine", 200)]
    {
        let request = format!("GET {path} HTTP/1.1\r\nHost: bad.example.com\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let r = read_response(&mut stream, &mut rest).await;
        assert_eq!(raw_status(&r), status, "{path}: {r}");
        if status == 502 {
            assert!(r.contains("502 Bad Gateway</title>"), "Sluice's page: {r}");
        }
    }
    // Upstream errors are counted at once (they are rare: no batching).
    let metrics = get(&s.admin_url("/metrics"), None).await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_upstream_errors_total") && l.contains("invalid_header")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutting_down_closes_idle_keep_alive_connections_at_once() {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    // A grace period far longer than the test may wait: an idle connection left open would
    // hold the exit back for all of it.
    let mut s = Sluice::start_workers(m.path(), 1, &["--shutdown-grace-period", "300"]);
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    let mut rest = Vec::new();
    for path in ["/one", "/two"] {
        let head = format!("GET {path} HTTP/1.1\r\nHost: k.example.com\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let r = read_response(&mut stream, &mut rest).await;
        assert_eq!(echoed(&r)["path"], path, "{r}");
    }
    // Idle between requests, on the fast path: SIGTERM closes it without an answer.
    assert!(s.terminate(), "exit status 0 after SIGTERM");
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(WAIT, stream.read(&mut byte)).await.expect("closed").unwrap_or(0);
    assert_eq!(n, 0, "the idle connection was closed, not answered");
}
