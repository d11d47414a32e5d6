//! The HTTP/1.1 fast path and its hand-off: GET and HEAD requests, and requests with a small
//! `Content-Length` body, are proxied between sockets; everything else goes to the general
//! (hyper) path with the bytes already read, and both give the same answers. Backends that
//! misbehave at the byte level are raw sockets; a recording backend tells which path brought
//! each request (the fast path passes header names as the client wrote them, hyper writes
//! them in lower case).

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one whole response (head, and its Content-Length or chunked body) from `stream`,
/// leaving what follows unread in `rest`.
async fn read_response(stream: &mut (impl AsyncRead + Unpin), rest: &mut Vec<u8>) -> String {
    read_answer(stream, rest, false).await
}

/// [`read_response`], for a HEAD request's answer (`head_only`: no body whatever the head says).
async fn read_answer(
    stream: &mut (impl AsyncRead + Unpin),
    rest: &mut Vec<u8>,
    head_only: bool,
) -> String {
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
async fn a_connection_moves_to_the_general_path_at_its_first_chunked_body() {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    let s = Sluice::start_workers(m.path(), 1, &[]);
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    let mut rest = Vec::new();

    // A GET on the fast path, then, pipelined in one write, a POST with a chunked body
    // (handed to the general path with the bytes already read) and two more GETs behind it.
    stream.write_all(b"GET /first HTTP/1.1\r\nHost: f.example.com\r\n\r\n").await.unwrap();
    let first = read_response(&mut stream, &mut rest).await;
    assert!(first.starts_with("HTTP/1.1 200 "), "{first}");
    assert_eq!(echoed(&first)["path"], "/first");

    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: f.example.com\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n0\r\n\r\n\
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

    // A POST with a small Content-Length body takes the fast path, the same POST chunked the
    // general one, which holds the body and sends it with its length: the same headers reach
    // the backend, Content-Length among them, with the same body.
    let fast = request("POST", "Content-Length: 5\r\n") + "hello";
    let general = request("POST", "Transfer-Encoding: chunked\r\n") + "5\r\nhello\r\n0\r\n\r\n";
    let fast = raw_exchange(s.http, fast.as_bytes()).await;
    let general = raw_exchange(s.http, general.as_bytes()).await;
    let (fast_headers, general_headers) = (headers(&fast), headers(&general));
    assert_eq!(fast_headers, general_headers, "\nfast: {fast}\ngeneral: {general}");
    assert_eq!(fast_headers["content-length"], "5");
    assert_eq!(
        (echoed(&fast)["body_bytes"].as_u64(), echoed(&general)["body_bytes"].as_u64()),
        (Some(5), Some(5))
    );
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

// ---------------------------------------------------------------------------------------
// Request bodies on the fast path

/// What the recording backend received of one request.
#[derive(Clone, Debug)]
struct Seen {
    /// Which of Sluice's paths brought it: `X-Carrier` as the client wrote it (`fast`) or in
    /// lower case (`general`, hyper).
    carrier: &'static str,
    method: String,
    path: String,
    /// Its `Content-Length` values.
    lengths: Vec<String>,
    /// It came with a `Transfer-Encoding`.
    coded: bool,
    body: Vec<u8>,
}

type Record = Arc<Mutex<Vec<Seen>>>;

/// A raw HTTP/1.1 backend that records every request with its `Content-Length` body, then
/// answers `200` with `<method> <path> <body length>` and the carrier in `X-Carrier`; or,
/// when not `answer`, closes the connection once it has the request whole.
async fn recording_backend(answer: bool) -> (SocketAddr, Record) {
    let seen: Record = Arc::default();
    let record = seen.clone();
    let addr = tcp_backend(move |stream| serve_recorded(stream, record.clone(), answer)).await;
    (addr, seen)
}

async fn serve_recorded(mut stream: TcpStream, seen: Record, answer: bool) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let Some(end) = read_head_into(&mut stream, &mut buf).await else { return };
        let head = String::from_utf8_lossy(&buf[..end - 4]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default().to_string();
        let path = request_line.next().unwrap_or_default().to_string();
        let headers: Vec<(&str, &str)> =
            lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n, v.trim())).collect();
        let carrier = if headers.iter().any(|(n, _)| *n == "X-Carrier") {
            "fast"
        } else if headers.iter().any(|(n, _)| *n == "x-carrier") {
            "general"
        } else {
            "unknown"
        };
        let lengths: Vec<String> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.to_string())
            .collect();
        let coded = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"));
        let mut seen_one = Seen { carrier, method, path, lengths, coded, body: Vec::new() };
        if coded || seen_one.lengths.len() > 1 {
            // Not what Sluice may send: recorded, and the connection closed.
            seen.lock().unwrap().push(seen_one);
            return;
        }
        let n: usize = seen_one.lengths.first().map_or(0, |v| v.parse().unwrap());
        while buf.len() < end + n {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(got) => buf.extend_from_slice(&chunk[..got]),
            }
        }
        seen_one.body = buf[end..end + n].to_vec();
        buf.drain(..end + n);
        let text = format!("{} {} {n}", seen_one.method, seen_one.path);
        seen.lock().unwrap().push(seen_one);
        if !answer {
            return;
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Carrier: {carrier}\r\n\r\n{text}",
            text.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A request with a `Content-Length` body, marked so that the backend tells its carrier.
fn with_body(method: &str, host: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nX-Carrier: 1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// `n` bytes that would confuse anything reading them as text or as HTTP: every byte value,
/// line ends, and a request line.
fn awkward_body(n: usize) -> Vec<u8> {
    let mut body = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n\0\r\n".to_vec();
    body.extend((0..=255u8).cycle().take(n));
    body.truncate(n);
    body
}

/// The body of a response, after its head.
fn body_of(response: &str) -> &str {
    &response[response.find("\r\n\r\n").expect("a head") + 4..]
}

/// A header of a raw response (name in any case), if present.
fn header_of<'r>(response: &'r str, name: &str) -> Option<&'r str> {
    let head = &response[..response.find("\r\n\r\n")?];
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The hosts of [`start_bodies`]: the default policy, and routes changing what the fast
/// path may carry.
const PLAIN: &str = "plain.example.com";
/// `client-body-buffer-size: 16k`.
const BIG_BUFFER: &str = "big.example.com";
/// `proxy-request-buffering: off`.
const STREAMED: &str = "stream.example.com";
/// `proxy-body-size: 1k`.
const SMALL_LIMIT: &str = "small.example.com";
/// An allow list the test client is not on (403).
const DENIED: &str = "denied.example.com";

/// Sluice (one worker, JSON access log, `config` as its ConfigMap) in front of `backends`,
/// with one Ingress per host above.
fn start_bodies(backends: &[SocketAddr], config: &[(&str, &str)]) -> (Manifests, Sluice) {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", backends));
    m.write("cm.yaml", &sluice_config(config));
    // Each host's Ingress, with one annotation (its name without the prefix) or none.
    let hosts = [
        ("plain", PLAIN, None),
        ("big", BIG_BUFFER, Some(("client-body-buffer-size", "16k"))),
        ("stream", STREAMED, Some(("proxy-request-buffering", "off"))),
        ("small", SMALL_LIMIT, Some(("proxy-body-size", "1k"))),
        ("denied", DENIED, Some(("whitelist-source-range", "10.0.0.0/8"))),
    ];
    for (name, host, annotation) in hosts {
        let annotation = annotation.map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v));
        let annotations: Vec<(&str, &str)> =
            annotation.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        m.write(
            &format!("{name}.yaml"),
            &ingress(name, host, &[("/", "Prefix", "app")], &annotations),
        );
    }
    let args = ["--log-format", "json", "--configmap", "default/sluice-config"];
    let s = Sluice::start_workers(m.path(), 1, &args);
    (m, s)
}

/// The JSON access log line of the request to `path`, once written.
fn logged(s: &Sluice, path: &str) -> serde_json::Value {
    let needle = format!("\"path\":\"{path}\"");
    let line = s.wait_stdout(|l| l.contains(&needle));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

// Small bodies of every method are read whole and sent on by the fast path: the backend gets
// them byte for byte with their one Content-Length, on one client connection that stays on
// the fast path (an empty body, and exactly `client-body-buffer-size`, too). The access log
// (`$request_length`) and the request size metric count the body, as the general path does.
#[tokio::test(flavor = "multi_thread")]
async fn small_bodies_take_the_fast_path_byte_for_byte() {
    let (backend, seen) = recording_backend(true).await;
    let (_m, s) = start_bodies(&[backend], &[]);
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    let mut rest = Vec::new();
    let cases: [(&str, usize); 7] = [
        ("POST", 1024),
        ("PUT", 3000),
        ("PATCH", 17),
        ("DELETE", 40),
        ("POST", 0),
        ("OPTIONS", 5),
        // The default client-body-buffer-size exactly.
        ("POST", 8192),
    ];
    for (i, (method, n)) in cases.into_iter().enumerate() {
        let body = awkward_body(n);
        let path = format!("/body/{i}");
        stream.write_all(&with_body(method, PLAIN, &path, &body)).await.unwrap();
        let r = read_response(&mut stream, &mut rest).await;
        assert_eq!(raw_status(&r), 200, "{method} {n}: {r}");
        assert_eq!(body_of(&r), format!("{method} {path} {n}"), "{r}");
        let got = seen.lock().unwrap().last().cloned().expect("the backend got it");
        assert_eq!(got.carrier, "fast", "{method} {n}");
        assert_eq!((got.lengths, got.coded), (vec![n.to_string()], false), "{method} {n}");
        assert!(got.body == body, "{method} {n}: the body arrived altered");
    }
    assert_eq!(seen.lock().unwrap().len(), cases.len(), "one request each, nothing smuggled");

    // $request_length: the head as sent and the body.
    let whole = with_body("PUT", PLAIN, "/body/1", &awkward_body(3000));
    let doc = logged(&s, "/body/1");
    assert_eq!(doc["request_length"], whole.len(), "{doc}");
    assert_eq!((doc["status"].as_u64(), doc["method"].as_str()), (Some(200), Some("PUT")));
    // The request size metric counts the same (the one PUT), once flushed.
    let value = format!("}} {}", whole.len());
    let needles = ["nginx_ingress_controller_request_size_sum{", "method=\"PUT\"", &value];
    wait_metric(&s, &needles).await;
}

// Bodies past what the fast path may hold go to the general path whole: over
// `client-body-buffer-size` (8k by default, raised by the annotation), or any body where
// `proxy-request-buffering: off` asks for it to stream.
#[tokio::test(flavor = "multi_thread")]
async fn larger_or_streamed_bodies_take_the_general_path() {
    let (backend, seen) = recording_backend(true).await;
    let (_m, s) = start_bodies(&[backend], &[]);
    let cases = [
        (PLAIN, 8193, "general"),
        (BIG_BUFFER, 16 * 1024, "fast"),
        (BIG_BUFFER, 16 * 1024 + 1, "general"),
        (STREAMED, 10, "general"),
    ];
    for (host, n, carrier) in cases {
        let body = awkward_body(n);
        let r = raw_exchange(s.http, &with_body("POST", host, "/up", &body)).await;
        assert_eq!(raw_status(&r), 200, "{host} {n}: {r}");
        let got = seen.lock().unwrap().last().cloned().expect("the backend got it");
        assert_eq!(got.carrier, carrier, "{host} {n}");
        assert_eq!(got.lengths, vec![n.to_string()], "{host} {n}");
        assert!(got.body == body, "{host} {n}: the body arrived altered");
    }
    // GETs still take the fast path where bodies stream.
    let r = raw_exchange(s.http, &with_body("GET", STREAMED, "/get", b"")).await;
    assert_eq!(header_of(&r, "x-carrier"), Some("fast"), "{r}");
}

// Requests with bodies pipelined in one write, and a GET behind them, are answered in order on
// the fast path: each body ends where its length says, and the next request starts there.
#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_with_bodies_are_served_in_order() {
    let (backend, seen) = recording_backend(true).await;
    let (_m, s) = start_bodies(&[backend], &[]);
    let bodies = [awkward_body(700), awkward_body(1), awkward_body(5000)];
    let mut all = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        all.extend_from_slice(&with_body("POST", PLAIN, &format!("/p/{i}"), body));
    }
    all.extend_from_slice(
        b"GET /p/last HTTP/1.1\r\nHost: plain.example.com\r\nX-Carrier: 1\r\n\r\n",
    );
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    stream.write_all(&all).await.unwrap();
    let mut rest = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let r = read_response(&mut stream, &mut rest).await;
        assert_eq!(body_of(&r), format!("POST /p/{i} {}", body.len()), "{r}");
        assert_eq!(header_of(&r, "x-carrier"), Some("fast"), "{r}");
    }
    let r = read_response(&mut stream, &mut rest).await;
    assert_eq!(body_of(&r), "GET /p/last 0", "{r}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 4, "{seen:?}");
    for (got, body) in seen.iter().zip(&bodies) {
        assert!(got.carrier == "fast" && got.body == *body, "{got:?}");
    }
}

// A body that arrives in many small writes (the head with its first bytes, then a few bytes at
// a time) is read whole and sent on in one piece.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_in_many_small_writes_is_read_whole() {
    let (backend, seen) = recording_backend(true).await;
    let (_m, s) = start_bodies(&[backend], &[]);
    let body = awkward_body(600);
    let request = with_body("PUT", PLAIN, "/trickle", &body);
    let head_len = request.len() - body.len();
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream.write_all(&request[..head_len + 3]).await.unwrap();
    for piece in request[head_len + 3..].chunks(7) {
        // A deliberately slow client: each piece its own segment and read.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        stream.write_all(piece).await.unwrap();
    }
    let mut rest = Vec::new();
    let r = read_response(&mut stream, &mut rest).await;
    assert_eq!(body_of(&r), "PUT /trickle 600", "{r}");
    let got = seen.lock().unwrap().last().cloned().unwrap();
    assert!(got.carrier == "fast" && got.body == body, "{got:?}");
}

// `proxy-body-size` on the fast path: a declared body over it is refused 413 before the
// backend, with the general path's answer (its page and headers); the body is read and
// dropped, and the connection goes on to the next request. A local answer (403 here) drops
// its body the same way: a request hidden in that body is never read as one.
#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_proxy_body_size_and_local_answers_keep_the_connection_in_step() {
    let (backend, seen) = recording_backend(true).await;
    let (_m, s) = start_bodies(&[backend], &[]);
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    let mut rest = Vec::new();
    let mut pipelined = with_body("POST", SMALL_LIMIT, "/too-big", &awkward_body(1025));
    pipelined.extend_from_slice(&with_body("POST", SMALL_LIMIT, "/fits", &awkward_body(1024)));
    pipelined.extend_from_slice(&with_body("POST", DENIED, "/denied", &awkward_body(300)));
    pipelined.extend_from_slice(&with_body("POST", PLAIN, "/after", b"ok"));
    stream.write_all(&pipelined).await.unwrap();
    let too_big = read_response(&mut stream, &mut rest).await;
    assert_eq!(raw_status(&too_big), 413, "{too_big}");
    assert!(too_big.contains("413 Request Entity Too Large"), "{too_big}");
    let fits = read_response(&mut stream, &mut rest).await;
    assert_eq!(body_of(&fits), "POST /fits 1024", "{fits}");
    assert_eq!(header_of(&fits, "x-carrier"), Some("fast"), "{fits}");
    let denied = read_response(&mut stream, &mut rest).await;
    assert_eq!(raw_status(&denied), 403, "{denied}");
    let after = read_response(&mut stream, &mut rest).await;
    assert_eq!(body_of(&after), "POST /after 2", "{after}");
    let paths: Vec<String> = seen.lock().unwrap().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/fits", "/after"], "refused requests and their bodies stay here");

    // The general path answers the same 413 (a chunked body, hyper's).
    let chunked = format!(
        "POST /too-big HTTP/1.1\r\nHost: {SMALL_LIMIT}\r\nTransfer-Encoding: chunked\r\n\r\n\
         401\r\n{}\r\n0\r\n\r\n",
        "c".repeat(0x401)
    );
    let general = raw_exchange(s.http, chunked.as_bytes()).await;
    assert_eq!(raw_status(&general), 413, "{general}");
    assert_eq!(body_of(&general), body_of(&too_big), "the same page");
    for name in ["server", "content-type", "content-length"] {
        assert_eq!(header_of(&general, name), header_of(&too_big, name), "{name}");
    }
    assert_eq!(logged(&s, "/too-big")["status"], 413);
}

// A body that stops short of its length is cut at `client-body-timeout` without an answer and
// logged 408, as NGINX does; one the client breaks off is logged 400. Neither reaches the
// backend, and the connection had been on the fast path.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_or_broken_bodies_are_cut() {
    let (backend, seen) = recording_backend(true).await;
    let (_m, s) = start_bodies(&[backend], &[("client-body-timeout", "1")]);
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    let mut rest = Vec::new();
    stream.write_all(&with_body("POST", PLAIN, "/first", b"12345")).await.unwrap();
    let first = read_response(&mut stream, &mut rest).await;
    assert_eq!(header_of(&first, "x-carrier"), Some("fast"), "{first}");

    let started = std::time::Instant::now();
    let mut stalled = with_body("POST", PLAIN, "/stalled", &awkward_body(100));
    stalled.truncate(stalled.len() - 90);
    stream.write_all(&stalled).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "still open");
    assert!(got.is_empty(), "answered: {}", String::from_utf8_lossy(&got));
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_millis(900), "cut after {took:?}");
    assert_eq!(logged(&s, "/stalled")["status"], 408);

    let mut broken = TcpStream::connect(s.http).await.unwrap();
    let mut cut = with_body("POST", PLAIN, "/broken", &awkward_body(100));
    cut.truncate(cut.len() - 50);
    broken.write_all(&cut).await.unwrap();
    broken.shutdown().await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, broken.read_to_end(&mut got)).await.unwrap().unwrap();
    assert!(got.is_empty(), "answered: {}", String::from_utf8_lossy(&got));
    assert_eq!(logged(&s, "/broken")["status"], 400);
    let paths: Vec<String> = seen.lock().unwrap().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/first"]);
}

// `proxy-next-upstream` resends a held body: a POST whose first endpoint refuses the
// connection goes to the next one with its body; a PUT whose first endpoint read it whole
// and closed without answering (`error`, an idempotent method) is sent again, the same bytes.
#[tokio::test(flavor = "multi_thread")]
async fn retries_send_the_body_again() {
    let (good, seen) = recording_backend(true).await;
    let refused = unused_addr();
    let (_m, s) = start_bodies(&[refused, good], &[]);
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    let mut rest = Vec::new();
    let mut retried = 0;
    for i in 0..4 {
        let body = awkward_body(2000 + i);
        let path = format!("/retry/{i}");
        stream.write_all(&with_body("POST", PLAIN, &path, &body)).await.unwrap();
        let r = read_response(&mut stream, &mut rest).await;
        assert_eq!(body_of(&r), format!("POST {path} {}", body.len()), "{r}");
        assert_eq!(header_of(&r, "x-carrier"), Some("fast"), "{r}");
        assert!(seen.lock().unwrap().last().unwrap().body == body, "{path}: altered");
        let doc = logged(&s, &path);
        let addrs = doc["upstream_addr"].as_str().unwrap().to_string();
        if addrs == format!("{refused}, {good}") {
            retried += 1;
        } else {
            assert_eq!(addrs, good.to_string(), "{doc}");
        }
    }
    assert!(retried > 0, "no request started at the refusing endpoint");

    let (closer, dropped) = recording_backend(false).await;
    let (good, seen) = recording_backend(true).await;
    let (_m, s) = start_bodies(&[closer, good], &[]);
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    let mut rest = Vec::new();
    for i in 0..4 {
        let body = awkward_body(3000 + i);
        let path = format!("/put/{i}");
        stream.write_all(&with_body("PUT", PLAIN, &path, &body)).await.unwrap();
        let r = read_response(&mut stream, &mut rest).await;
        assert_eq!(body_of(&r), format!("PUT {path} {}", body.len()), "{r}");
        assert!(seen.lock().unwrap().last().unwrap().body == body, "{path}: altered");
    }
    let dropped = dropped.lock().unwrap();
    assert!(!dropped.is_empty(), "no PUT started at the closing endpoint");
    for got in dropped.iter() {
        let i: usize = got.path.strip_prefix("/put/").unwrap().parse().unwrap();
        assert!(got.carrier == "fast" && got.body == awkward_body(3000 + i), "{got:?}");
    }
}

// The framing stays as strict as before bodies were carried: a length with a transfer coding,
// two lengths or a length that is not digits are refused (400) and the connection closed,
// whatever the method, and the backend never sees them.
#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_framing_with_a_body_is_still_refused() {
    let (backend, seen) = recording_backend(true).await;
    let (_m, s) = start_bodies(&[backend], &[]);
    let host = format!("Host: {PLAIN}\r\nX-Carrier: 1\r\n");
    let cases = [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        "Content-Length: 5, 5\r\n\r\nhello",
        "Content-Length: +5\r\n\r\nhello",
    ];
    for framing in cases {
        for method in ["POST", "PUT", "GET"] {
            let request = format!("{method} /smuggle HTTP/1.1\r\n{host}{framing}");
            let r = raw_exchange(s.http, request.as_bytes()).await;
            assert_eq!(raw_status(&r), 400, "{method} {framing:?}: {r}");
            assert_eq!(header_of(&r, "connection"), Some("close"), "{r}");
        }
    }
    assert!(seen.lock().unwrap().is_empty(), "{:?}", seen.lock().unwrap());
}

// HTTPS connections speaking HTTP/1.1 (ALPN http/1.1, or no ALPN) run the same fast path once
// the handshake is done: a GET and a small body, pipelined in one write, reach the backend byte
// for byte and in order; a chunked body hands the connection to the general path with what was
// read, and requests behind it are still answered. A connection the fast path closes
// (`Connection: close`) ends with TLS's close_notify: a clean end, not a truncation.
#[tokio::test(flavor = "multi_thread")]
async fn https_connections_take_the_fast_path_and_hand_off_as_plain_ones_do() {
    let (backend, seen) = recording_backend(true).await;
    let (_m, s) = start_bodies(&[backend], &[]);
    for alpn in [vec![], vec![b"http/1.1".to_vec()]] {
        let opts = tls::ClientOpts { alpn: alpn.clone(), ..tls::ClientOpts::sni(PLAIN) };
        let mut stream = tls::connect(s.https, &opts).await.unwrap();
        let mut rest = Vec::new();
        let body = awkward_body(1024);
        let mut burst = with_body("GET", PLAIN, "/tls/get", b"");
        burst.extend(with_body("POST", PLAIN, "/tls/post", &body));
        burst.extend(with_body("GET", PLAIN, "/tls/after", b""));
        stream.write_all(&burst).await.unwrap();
        for (method, path, n) in
            [("GET", "/tls/get", 0), ("POST", "/tls/post", 1024), ("GET", "/tls/after", 0)]
        {
            let r = read_response(&mut stream, &mut rest).await;
            assert_eq!(raw_status(&r), 200, "{alpn:?} {path}: {r}");
            assert_eq!(header_of(&r, "x-carrier"), Some("fast"), "{alpn:?} {path}: {r}");
            assert_eq!(body_of(&r), format!("{method} {path} {n}"), "{r}");
        }
        let got = seen.lock().unwrap().iter().rev().nth(1).cloned().expect("the POST arrived");
        assert!(got.body == body, "{alpn:?}: the body arrived altered");

        let chunked = format!(
            "POST /tls/chunked HTTP/1.1\r\nHost: {PLAIN}\r\nX-Carrier: 1\r\n\
             Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
             GET /tls/behind HTTP/1.1\r\nHost: {PLAIN}\r\nX-Carrier: 1\r\n\r\n"
        );
        stream.write_all(chunked.as_bytes()).await.unwrap();
        let r = read_response(&mut stream, &mut rest).await;
        assert_eq!(body_of(&r), "POST /tls/chunked 5", "{alpn:?}: {r}");
        assert_eq!(header_of(&r, "x-carrier"), Some("general"), "{alpn:?}: {r}");
        let r = read_response(&mut stream, &mut rest).await;
        assert_eq!(body_of(&r), "GET /tls/behind 0", "{alpn:?}: {r}");
        assert!(rest.is_empty(), "nothing more: {}", String::from_utf8_lossy(&rest));
    }

    let mut stream = tls::connect(s.https, &tls::ClientOpts::sni(PLAIN)).await.unwrap();
    let mut last = with_body("GET", PLAIN, "/tls/close", b"");
    last.splice(last.len() - 2..last.len() - 2, *b"Connection: close\r\n");
    stream.write_all(&last).await.unwrap();
    let mut rest = Vec::new();
    let r = read_response(&mut stream, &mut rest).await;
    assert_eq!(header_of(&r, "x-carrier"), Some("fast"), "{r}");
    assert_eq!(header_of(&r, "connection"), Some("close"), "{r}");
    // tokio-rustls reports an end without close_notify as an error (UnexpectedEof).
    let end = tokio::time::timeout(WAIT, stream.read(&mut [0u8; 64])).await.expect("closed");
    assert!(matches!(end, Ok(0)), "a clean TLS end: {end:?}");

    // Framing is checked as strictly as on plain connections: a length with a transfer coding
    // is refused (400, closed), as NGINX refuses it over TLS too.
    let mut stream = tls::connect(s.https, &tls::ClientOpts::sni(PLAIN)).await.unwrap();
    let smuggle = format!(
        "POST /tls/smuggle HTTP/1.1\r\nHost: {PLAIN}\r\nX-Carrier: 1\r\nContent-Length: 5\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    stream.write_all(smuggle.as_bytes()).await.unwrap();
    let mut rest = Vec::new();
    let r = read_response(&mut stream, &mut rest).await;
    assert_eq!(raw_status(&r), 400, "{r}");
    assert_eq!(header_of(&r, "connection"), Some("close"), "{r}");
    assert!(!seen.lock().unwrap().iter().any(|s| s.path == "/tls/smuggle"), "never forwarded");
}
