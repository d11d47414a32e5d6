//! HTTP/1 request smuggling attempts, written raw on a socket to a route on the fast path and
//! to one on the general path, with a raw TCP backend recording every byte it receives.
//!
//! Each attempt is refused with the status NGINX gives it (the references are to nginx's
//! `src/http/ngx_http_parse.c` and `src/http/ngx_http_request.c`), the connection is closed
//! after the refusal, and the backend never receives a second (smuggled) request nor an
//! ambiguous one. What NGINX accepts (bare LF line ends, chunk extensions) is forwarded with
//! one unambiguous framing.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The route served by the fast path: no policy it cannot carry.
const FAST: &str = "fast.example.com";
/// The route served by the general path: custom error pages are hyper's.
const GENERAL: &str = "general.example.com";

/// What the backend received: every byte, and the request line of each request it parsed.
#[derive(Default)]
struct Seen {
    bytes: Vec<u8>,
    requests: Vec<String>,
}

/// A raw HTTP/1.1 backend: reads each head, its body by `Content-Length` or chunked framing,
/// and answers `200 ok`; records everything it read.
async fn recording_backend() -> (SocketAddr, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let log = seen.clone();
    let addr = tcp_backend(move |mut stream| {
        let log = log.clone();
        async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                // A head.
                let end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            log.lock().unwrap().bytes.extend_from_slice(&chunk[..n]);
                            buf.extend_from_slice(&chunk[..n]);
                        }
                    }
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                log.lock().unwrap().requests.push(head.lines().next().unwrap_or("").to_string());
                buf.drain(..end);
                // Its body.
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                let chunked = head.contains("transfer-encoding: chunked");
                loop {
                    let done = if chunked {
                        buf.windows(5).position(|w| w == b"0\r\n\r\n").map(|i| i + 5)
                    } else {
                        let n = length.unwrap_or(0);
                        (buf.len() >= n).then_some(n)
                    };
                    if let Some(n) = done {
                        buf.drain(..n);
                        break;
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            log.lock().unwrap().bytes.extend_from_slice(&chunk[..n]);
                            buf.extend_from_slice(&chunk[..n]);
                        }
                    }
                }
                let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if stream.write_all(resp).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (addr, seen)
}

/// Writes `bytes` and reads until the proxy closes (`true`) or 2 s pass without news.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> (String, bool) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The proxy may refuse and close before reading everything: a failed write is fine.
    let _ = stream.write_all(bytes).await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&buf).into_owned(), true),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return (String::from_utf8_lossy(&buf).into_owned(), false),
        }
    }
}

/// Sluice with a fast-path route and a general-path route to one recording backend.
async fn start() -> (Manifests, Sluice, Arc<Mutex<Seen>>) {
    let (backend, seen) = recording_backend().await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[backend]));
    m.write("fast.yaml", &ingress("fast", FAST, &[("/", "Prefix", "app")], &[]));
    m.write(
        "general.yaml",
        &ingress(
            "general",
            GENERAL,
            &[("/", "Prefix", "app")],
            &[("nginx.ingress.kubernetes.io/custom-http-errors", "418")],
        ),
    );
    let s = Sluice::start(m.path(), &[]);
    (m, s, seen)
}

/// A second request hidden in the body under one reading of the framing.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: fast.example.com\r\n\r\n";

/// Sends `request` (with `{host}` replaced) to both routes; each must be answered `status`,
/// closed, and never reach the backend.
async fn refused_on_both(s: &Sluice, seen: &Mutex<Seen>, cases: &[(&str, &str, u16)]) {
    for (why, request, status) in cases {
        for host in [FAST, GENERAL] {
            let request = request.replace("{host}", host).replace("{smuggled}", SMUGGLED);
            let (resp, closed) = exchange(s.http, request.as_bytes()).await;
            assert_eq!(raw_status(&resp), *status, "{why} on {host}: {request:?} got {resp:?}");
            assert!(closed, "{why} on {host}: the connection stayed open after {resp:?}");
            let seen = seen.lock().unwrap();
            assert!(
                seen.requests.is_empty(),
                "{why} on {host}: a refused request reached the backend: {:?}",
                seen.requests
            );
        }
    }
}

/// Sends `request` to both routes; each must reach the backend as exactly one request with
/// CRLF line ends, answered 200.
async fn forwarded_on_both(s: &Sluice, seen: &Mutex<Seen>, cases: &[(&str, &str)]) {
    for (why, request) in cases {
        for host in [FAST, GENERAL] {
            seen.lock().unwrap().requests.clear();
            seen.lock().unwrap().bytes.clear();
            let request = request.replace("{host}", host);
            let (resp, _) = exchange(s.http, request.as_bytes()).await;
            assert_eq!(raw_status(&resp), 200, "{why} on {host}: {request:?} got {resp:?}");
            let seen = seen.lock().unwrap();
            assert_eq!(seen.requests.len(), 1, "{why} on {host}: {:?}", seen.requests);
            let bytes = &seen.bytes;
            let bare_lf = bytes
                .iter()
                .enumerate()
                .any(|(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'));
            assert!(
                !bare_lf,
                "{why} on {host}: forwarded with a bare LF: {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

/// Content-Length together with Transfer-Encoding, in either order, and transfer codings
/// other than exactly `chunked`.
#[tokio::test(flavor = "multi_thread")]
async fn length_with_transfer_encoding_is_refused() {
    let (_m, mut s, seen) = start().await;
    refused_on_both(
        &s,
        &seen,
        &[
            // ngx_http_process_request_header: "client sent \"Content-Length\" and
            // \"Transfer-Encoding\" headers at the same time" -> 400.
            (
                "CL then TE",
                "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
                400,
            ),
            (
                "TE then CL",
                "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{smuggled}",
                400,
            ),
            (
                "GET with CL 0 and TE",
                "GET / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
                400,
            ),
            // Anything but exactly "chunked": "client sent unknown \"Transfer-Encoding\"" -> 501.
            (
                "chunked, identity",
                "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}",
                501,
            ),
            (
                "xchunked",
                "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}",
                501,
            ),
            // Transfer-Encoding is a unique header line (ngx_http_process_unique_header_line):
            // "client sent duplicate header line" -> 400.
            (
                "duplicate TE",
                "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
                400,
            ),
            // "client sent HTTP/1.0 request with \"Transfer-Encoding\" header" -> 400.
            (
                "HTTP/1.0 with TE",
                "POST / HTTP/1.0\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
                400,
            ),
        ],
    )
    .await;
    assert!(s.running(), "sluice died:\n{}", s.stderr().join("\n"));
}

/// Two Content-Length lines (equal or not) and lengths that are not plain digits.
#[tokio::test(flavor = "multi_thread")]
async fn duplicate_or_malformed_lengths_are_refused() {
    let (_m, s, seen) = start().await;
    refused_on_both(
        &s,
        &seen,
        &[
            // Content-Length is a unique header line: "client sent duplicate header line" -> 400,
            // whether or not the values agree.
            (
                "different lengths",
                "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nContent-Length: 50\r\n\r\n{smuggled}",
                400,
            ),
            (
                "equal lengths",
                "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
                400,
            ),
            (
                "equal zero lengths on a GET",
                "GET / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
                400,
            ),
            // ngx_atoof accepts digits only: "client sent invalid \"Content-Length\" header" -> 400.
            ("a list", "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
            ("a sign", "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: +3\r\n\r\nabc", 400),
            ("negative", "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: -1\r\n\r\nabc", 400),
            ("inner space", "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1 2\r\n\r\nabc", 400),
            ("hex", "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0x3\r\n\r\nabc", 400),
            ("empty", "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: \r\n\r\nabc", 400),
            (
                "overflow",
                "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 99999999999999999999999\r\n\r\nabc",
                400,
            ),
        ],
    )
    .await;
    // Spaces around the value are optional whitespace, not part of it (NGINX strips them too).
    forwarded_on_both(
        &s,
        &seen,
        &[(
            "padded length",
            "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length:   3  \r\nConnection: close\r\n\r\nabc",
        )],
    )
    .await;
}

/// Obsolete line folding, NUL and lone CR in a header: ngx_http_parse_header_line answers
/// NGX_HTTP_PARSE_INVALID_HEADER -> "client sent invalid header line" -> 400.
#[tokio::test(flavor = "multi_thread")]
async fn folding_and_control_bytes_are_refused() {
    let (_m, s, seen) = start().await;
    refused_on_both(
        &s,
        &seen,
        &[
            ("folded value", "GET / HTTP/1.1\r\nHost: {host}\r\nX-A: a\r\n b\r\n\r\n", 400),
            ("folded with a tab", "GET / HTTP/1.1\r\nHost: {host}\r\nX-A: a\r\n\tb\r\n\r\n", 400),
            (
                "folded transfer-encoding",
                "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc",
                400,
            ),
            // A space before the colon is not a header name NGINX knows (since 1.21.1: 400).
            (
                "space before the colon",
                "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc",
                400,
            ),
            ("NUL in a value", "GET / HTTP/1.1\r\nHost: {host}\r\nX-A: a\0b\r\n\r\n", 400),
            ("CR in a value", "GET / HTTP/1.1\r\nHost: {host}\r\nX-A: a\rb\r\n\r\n", 400),
            (
                "CR hiding a length",
                "POST / HTTP/1.1\r\nHost: {host}\r\nX-A: a\rContent-Length: 50\r\n\r\n{smuggled}",
                400,
            ),
        ],
    )
    .await;
}

/// NGINX accepts a bare LF as a line end (ngx_http_parse_request_line and
/// ngx_http_parse_header_line take `LF` where they take `CR LF`); so does Sluice, and the
/// backend gets the request with CRLF line ends only.
#[tokio::test(flavor = "multi_thread")]
async fn bare_lf_is_accepted_and_forwarded_with_crlf() {
    let (_m, s, seen) = start().await;
    forwarded_on_both(
        &s,
        &seen,
        &[
            ("bare LF GET", "GET /lf HTTP/1.1\nHost: {host}\nConnection: close\n\n"),
            ("mixed line ends", "GET /lf HTTP/1.1\r\nHost: {host}\nConnection: close\r\n\n"),
            (
                "bare LF POST",
                "POST /lf HTTP/1.1\nHost: {host}\nContent-Length: 3\nConnection: close\n\nabc",
            ),
        ],
    )
    .await;
}

/// Chunked bodies: extensions are accepted (ngx_http_parse_chunked skips them), a chunk size
/// past the counter or a chunk without its CRLF is an error ("client sent invalid chunked
/// body" -> 400). Both buffer the body first (`proxy-request-buffering`); whatever the
/// upstream may see, it is never a complete request, nor a second one.
#[tokio::test(flavor = "multi_thread")]
async fn chunked_bodies_are_framed_or_refused() {
    let (_m, s, seen) = start().await;
    forwarded_on_both(
        &s,
        &seen,
        &[(
            "extension",
            "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;name=value\r\nabc\r\n0\r\n\r\n",
        )],
    )
    .await;
    for (why, body) in [
        ("size overflow", "fffffffffffffffff1\r\nabc\r\n0\r\n\r\n"),
        ("data without CRLF", "3\r\nabcX\r\n0\r\n\r\n"),
        ("negative size", "-3\r\nabc\r\n0\r\n\r\n"),
    ] {
        for host in [FAST, GENERAL] {
            seen.lock().unwrap().requests.clear();
            seen.lock().unwrap().bytes.clear();
            let request = format!(
                "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n{body}{SMUGGLED}"
            );
            let (resp, closed) = exchange(s.http, request.as_bytes()).await;
            assert!(closed, "{why} on {host}: the connection stayed open after {resp:?}");
            assert_eq!(raw_status(&resp), 400, "{why} on {host}: got {resp:?}");
            let seen = seen.lock().unwrap();
            let text = String::from_utf8_lossy(&seen.bytes);
            assert!(!text.contains("/smuggled"), "{why} on {host}: smuggled: {text:?}");
            assert!(
                !text.contains("\r\n0\r\n\r\n"),
                "{why} on {host}: forwarded as a complete request: {text:?}"
            );
        }
    }
}

/// Once the fast path has handed a connection to hyper (here after a request with a chunked
/// body),
/// hyper reads its later requests itself. It resolves `Content-Length` with
/// `Transfer-Encoding` the RFC 9112 way instead of refusing it: the body is read as chunked
/// only, forwarded with that framing alone, and the connection is closed after the response, so
/// what follows the body is never read as a request. A deliberate difference from NGINX's 400
/// (documented in the README), never an ambiguous or smuggled request.
#[tokio::test(flavor = "multi_thread")]
async fn after_a_hand_off_length_with_chunked_is_framed_once_and_closed() {
    let (_m, s, seen) = start().await;
    for host in [FAST, GENERAL] {
        seen.lock().unwrap().requests.clear();
        seen.lock().unwrap().bytes.clear();
        let request = format!(
            "POST /first HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
             POST /second HTTP/1.1\r\nHost: {host}\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
        );
        let (resp, closed) = exchange(s.http, request.as_bytes()).await;
        assert!(closed, "on {host}: the connection stayed open after {resp:?}");
        let seen = seen.lock().unwrap();
        let text = String::from_utf8_lossy(&seen.bytes).to_ascii_lowercase();
        assert!(!text.contains("/smuggled"), "on {host}: smuggled: {text:?}");
        assert_eq!(seen.requests.len(), 2, "on {host}: {:?}", seen.requests);
        let second = text.split("post /second").nth(1).expect("the second request was forwarded");
        let head = second.split("\r\n\r\n").next().unwrap_or("");
        // The chunked reading (an empty body) won: one framing, never the client's length.
        let chunked = head.contains("transfer-encoding: chunked");
        let empty = head.contains("content-length: 0\r\n") || head.ends_with("content-length: 0");
        assert!(
            chunked != empty && !head.contains("content-length: 50"),
            "on {host}: forwarded with other framing than the chunked reading: {head:?}"
        );
        assert!(resp.matches("HTTP/1.1 ").count() <= 2, "on {host}: {resp}");
    }
}
