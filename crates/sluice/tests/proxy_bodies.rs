//! Request and response bodies: sizes, framing, streaming without buffering, and the
//! `proxy-body-size` limit.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::stream;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Body as _, Frame};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;

const MIB: usize = 1024 * 1024;

type Boxed = UnsyncBoxBody<Bytes, Infallible>;

/// A client whose request bodies may stream (no length known in advance).
fn streaming_client() -> Client<HttpConnector, Boxed> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A body of `total` bytes sent in `chunk`-sized pieces, without a length: chunked on the wire.
fn chunked(total: usize, chunk: usize) -> Boxed {
    let pieces = (0..total)
        .step_by(chunk)
        .map(move |at| Ok(Frame::data(Bytes::from(vec![b'c'; chunk.min(total - at)]))));
    let body = StreamBody::new(stream::iter(pieces.collect::<Vec<_>>()));
    assert!(body.size_hint().exact().is_none(), "the test body must have no declared length");
    BodyExt::boxed_unsync(body)
}

async fn send_streaming(
    client: &Client<HttpConnector, Boxed>,
    url: &str,
    host: &str,
    body: Boxed,
) -> Reply {
    let req =
        http::Request::builder().method("POST").uri(url).header("host", host).body(body).unwrap();
    send(client, req).await
}

/// A backend counting the requests it sees and answering with the size of their bodies.
async fn counting_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let addr = http_backend(move |req| {
        s.fetch_add(1, Ordering::SeqCst);
        async move {
            let n = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
            http::Response::new(Full::new(Bytes::from(n.to_string())))
        }
    })
    .await;
    (addr, seen)
}

/// POSTs `n` bytes with a Content-Length on a raw connection; the whole exchange.
async fn raw_post(addr: SocketAddr, host: &str, n: usize) -> String {
    let mut req =
        format!("POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {n}\r\n\r\n").into_bytes();
    req.resize(req.len() + n, b'r');
    raw_exchange(addr, &req).await
}

/// POSTs `total` bytes chunked in `chunk`-sized pieces on a raw connection.
async fn raw_chunked_post(addr: SocketAddr, host: &str, total: usize, chunk: usize) -> String {
    let mut req = format!("POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n")
        .into_bytes();
    for at in (0..total).step_by(chunk) {
        let n = chunk.min(total - at);
        req.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        req.resize(req.len() + n, b'k');
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    raw_exchange(addr, &req).await
}

/// Routes `host` to `service` with `annotations`.
fn route(m: &Manifests, name: &str, host: &str, service: &str, annotations: &[(&str, &str)]) {
    m.write(
        &format!("{name}.yaml"),
        &ingress(name, host, &[("/", "Prefix", service)], annotations),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_and_downloads_keep_their_length() {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    let s = Sluice::start(m.path(), &[]);

    // 800 KiB with Content-Length (under the default 1 MiB limit).
    let r =
        send(&client(), request("POST", &s.url("/up"), None, Bytes::from(vec![b'u'; 800 * 1024])))
            .await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(doc["body_bytes"], 800 * 1024);
    assert_eq!(doc["headers"]["content-length"], (800 * 1024).to_string(), "{}", doc["headers"]);
    assert!(
        doc["headers"].get("transfer-encoding").is_none(),
        "re-framed as chunked: {}",
        doc["headers"]
    );

    // 10 MB down.
    let r =
        send(&client(), request("GET", &s.url("/down?bytes=10000000"), None, Bytes::new())).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-length").map(|v| v.to_str().unwrap()),
        Some("10000000"),
        "{:?}",
        r.headers
    );
    assert!(r.headers.get("transfer-encoding").is_none(), "{:?}", r.headers);
    assert_eq!(r.body.len(), 10_000_000);
    assert!(r.body.iter().all(|&b| b == b'x'), "the body arrived altered");
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_uploads_pass_through_without_request_buffering() {
    let app = echo("app").await;
    let m =
        catch_all("app", &[app], &[("nginx.ingress.kubernetes.io/proxy-request-buffering", "off")]);
    let s = Sluice::start(m.path(), &[]);

    let r = send_streaming(
        &streaming_client(),
        &s.url("/up"),
        "c.example.com",
        chunked(300_000, 7_000),
    )
    .await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(doc["body_bytes"], 300_000);
    assert!(doc["headers"].get("content-length").is_none(), "{}", doc["headers"]);
    assert_eq!(doc["headers"]["transfer-encoding"], "chunked");
}

// With request buffering (ingress-nginx's default), a chunked upload is read whole first and
// reaches the backend with its length, as NGINX sends it.
#[tokio::test(flavor = "multi_thread")]
async fn request_buffering_sends_chunked_uploads_with_their_length() {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    let s = Sluice::start(m.path(), &[]);

    let r = send_streaming(
        &streaming_client(),
        &s.url("/up"),
        "c.example.com",
        chunked(300_000, 7_000),
    )
    .await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(doc["body_bytes"], 300_000);
    assert_eq!(doc["headers"]["content-length"], "300000", "{}", doc["headers"]);
    assert!(doc["headers"].get("transfer-encoding").is_none(), "{}", doc["headers"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_stream_without_buffering() {
    let go = Arc::new(tokio::sync::Notify::new());
    let g = go.clone();
    let backend = tcp_backend(move |mut stream| {
        let go = g.clone();
        async move {
            if read_head(&mut stream).await.is_none() {
                return;
            }
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
            stream.write_all(format!("{head}5\r\nfirst\r\n").as_bytes()).await.unwrap();
            go.notified().await;
            stream.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await.unwrap();
            let _ = read_head(&mut stream).await; // keep the connection until the proxy drops it
        }
    })
    .await;
    let m = catch_all("stream", &[backend], &[]);
    let s = Sluice::start(m.path(), &[]);

    let resp = tokio::time::timeout(
        WAIT,
        client().request(request("GET", &s.url("/"), None, Bytes::new())),
    )
    .await
    .expect("the head arrives before the body is complete")
    .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while got.len() < 5 {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("the first chunk reaches the client while the backend still holds the rest")
            .expect("a frame")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            got.extend_from_slice(&data);
        }
    }
    assert_eq!(got, b"first");
    go.notify_one();
    let rest = tokio::time::timeout(WAIT, body.collect()).await.unwrap().unwrap().to_bytes();
    got.extend_from_slice(&rest);
    assert_eq!(got, b"firstsecond");
}

#[tokio::test(flavor = "multi_thread")]
async fn declared_body_over_the_limit_is_refused_before_the_backend() {
    let (backend, seen) = counting_backend().await;
    let m = catch_all("count", &[backend], &[]);
    let s = Sluice::start(m.path(), &[]);

    // Written raw, so that the answer is read even if the proxy stops reading the body.
    let resp = raw_post(s.http, "a.example.com", MIB + 1).await;
    assert_eq!(raw_status(&resp), 413, "{}", &resp[..resp.len().min(300)]);
    assert!(resp.to_ascii_lowercase().contains("\r\nserver: sluice\r\n"), "{resp}");
    assert!(resp.contains("413 Request Entity Too Large"), "{resp}");
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the backend saw a request refused for its size");

    // Exactly the limit passes (and shows the counter counts).
    let r = send(&client(), request("POST", &s.url("/"), None, Bytes::from(vec![b'b'; MIB]))).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], MIB.to_string().as_bytes());
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_body_over_the_limit_is_refused() {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    let s = Sluice::start(m.path(), &[]);

    let resp = raw_chunked_post(s.http, "c.example.com", MIB + 64 * 1024, 32 * 1024).await;
    assert_eq!(raw_status(&resp), 413, "{}", &resp[..resp.len().min(300)]);
    assert!(resp.to_ascii_lowercase().contains("\r\nserver: sluice\r\n"), "{resp}");

    // Under the limit, chunked passes; and the proxy still serves.
    let r = send_streaming(
        &streaming_client(),
        &s.url("/"),
        "c.example.com",
        chunked(MIB - 1, 32 * 1024),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_bytes"], MIB - 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_body_size_annotation_raises_or_removes_the_limit() {
    let app = echo("app").await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[app]));
    route(
        &m,
        "two",
        "two.example.com",
        "app",
        &[("nginx.ingress.kubernetes.io/proxy-body-size", "2m")],
    );
    route(
        &m,
        "zero",
        "zero.example.com",
        "app",
        &[("nginx.ingress.kubernetes.io/proxy-body-size", "0")],
    );
    route(&m, "default", "default.example.com", "app", &[]);
    let s = Sluice::start(m.path(), &[]);
    let c = client();
    let post = |host: &'static str, n: usize| {
        request("POST", &s.url("/"), Some(host), Bytes::from(vec![b'p'; n]))
    };

    let r = send(&c, post("two.example.com", 3 * MIB / 2)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_bytes"], 3 * MIB / 2);
    assert_eq!(raw_status(&raw_post(s.http, "two.example.com", 2 * MIB + 1).await), 413);
    assert_eq!(raw_status(&raw_post(s.http, "default.example.com", 3 * MIB / 2).await), 413);

    let r = send(&c, post("zero.example.com", 5 * MIB)).await;
    assert_eq!(r.status, 200, "0 means unlimited");
    assert_eq!(r.json()["body_bytes"], 5 * MIB);
    let r = send_streaming(
        &streaming_client(),
        &s.url("/"),
        "zero.example.com",
        chunked(3 * MIB, 64 * 1024),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_bytes"], 3 * MIB);
}

/// A backend that reports the size of the first body chunk it receives, and answers the
/// body's size once it has it all.
async fn first_chunk_backend() -> (SocketAddr, tokio::sync::mpsc::Receiver<usize>) {
    let (first_tx, first_rx) = tokio::sync::mpsc::channel::<usize>(1);
    let backend = http_backend(move |req| {
        let first_tx = first_tx.clone();
        async move {
            let mut body = req.into_body();
            let mut n = 0;
            let mut reported = false;
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(d) = frame.into_data() {
                    n += d.len();
                    if !reported {
                        reported = true;
                        let _ = first_tx.send(n).await;
                    }
                }
            }
            http::Response::new(Full::new(Bytes::from(n.to_string())))
        }
    })
    .await;
    (backend, first_rx)
}

/// Starts a chunked POST to `url` whose chunks the returned sender provides.
fn streamed_post(
    url: String,
) -> (
    tokio::sync::mpsc::Sender<Bytes>,
    tokio::task::JoinHandle<
        Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error>,
    >,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let body = StreamBody::new(stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    }));
    let req =
        http::Request::builder().method("POST").uri(url).body(BodyExt::boxed_unsync(body)).unwrap();
    let client = streaming_client();
    (tx, tokio::spawn(async move { client.request(req).await }))
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_body_chunks_are_forwarded_as_they_come_without_request_buffering() {
    // The upload is forwarded before it is complete: the backend sees the first part while
    // the client still holds the rest.
    let (backend, mut first_rx) = first_chunk_backend().await;
    let off = [("nginx.ingress.kubernetes.io/proxy-request-buffering", "off")];
    let m = catch_all("up", &[backend], &off);
    let s = Sluice::start(m.path(), &[]);
    let (tx, pending) = streamed_post(s.url("/"));
    tx.send(Bytes::from_static(b"hello")).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), first_rx.recv())
        .await
        .expect("the first chunk reached the backend before the upload ended")
        .unwrap();
    assert_eq!(first, 5);
    tx.send(Bytes::from_static(b" world")).await.unwrap();
    drop(tx);
    let resp = tokio::time::timeout(WAIT, pending).await.unwrap().unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(&resp.into_body().collect().await.unwrap().to_bytes()[..], b"11");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_buffering_holds_the_upload_until_it_ends() {
    // ingress-nginx's default: the backend hears nothing of an upload until it is whole, so a
    // slow client never holds a backend connection, and the body arrives in one piece.
    let (backend, mut first_rx) = first_chunk_backend().await;
    let m = catch_all("up", &[backend], &[]);
    let s = Sluice::start(m.path(), &[]);
    let (tx, pending) = streamed_post(s.url("/"));
    tx.send(Bytes::from_static(b"hello")).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(500), first_rx.recv()).await;
    assert!(early.is_err(), "the backend got part of the upload before it ended: {early:?}");
    tx.send(Bytes::from_static(b" world")).await.unwrap();
    drop(tx);
    let first = tokio::time::timeout(WAIT, first_rx.recv()).await.unwrap().unwrap();
    assert_eq!(first, 11, "the body arrives whole");
    let resp = tokio::time::timeout(WAIT, pending).await.unwrap().unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(&resp.into_body().collect().await.unwrap().to_bytes()[..], b"11");
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_declared_body_over_the_limit_is_413() {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    let s = Sluice::start(m.path(), &[]);
    let h2 = h2c_client();
    let r = send(&h2, request("POST", &s.url("/"), None, Bytes::from(vec![b'h'; MIB + 1]))).await;
    assert_eq!(r.status, 413);
    let r = send(&h2, request("POST", &s.url("/"), None, Bytes::from(vec![b'h'; MIB]))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_bytes"], MIB);
}

#[tokio::test(flavor = "multi_thread")]
async fn expect_100_continue_is_honoured() {
    use tokio::io::AsyncReadExt;
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    let s = Sluice::start(m.path(), &[]);

    // Within the limit: 100 Continue, then the body goes through.
    let mut stream = tokio::net::TcpStream::connect(s.http).await.unwrap();
    let head = "POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let interim = tokio::time::timeout(Duration::from_secs(5), read_head(&mut stream))
        .await
        .expect("an interim answer without the body")
        .expect("the connection stays open");
    let interim = String::from_utf8_lossy(&interim).into_owned();
    assert!(interim.starts_with("HTTP/1.1 100 Continue\r\n"), "{interim:?}");
    stream.write_all(b"hello").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await.unwrap().unwrap();
    let whole = format!("{interim}{}", String::from_utf8_lossy(&rest));
    let final_response = &whole[whole.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(raw_status(final_response), 200, "{whole}");
    assert!(final_response.contains("\"body_bytes\":5"), "{whole}");

    // Over the limit: 413 at once, without asking for the body.
    let head = format!(
        "POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        2 * MIB
    );
    let resp = raw_exchange(s.http, head.as_bytes()).await;
    assert_eq!(raw_status(&resp), 413, "{resp}");
}

#[tokio::test(flavor = "multi_thread")]
async fn head_responses_keep_their_length_and_the_connection_in_step() {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    let s = Sluice::start_workers(m.path(), 1, &[]);
    let c = client();
    for _ in 0..3 {
        let r = send(&c, request("HEAD", &s.url("/?bytes=1234"), None, Bytes::new())).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers.get("content-length").map(|v| v.to_str().unwrap()),
            Some("1234"),
            "{:?}",
            r.headers
        );
        assert!(r.body.is_empty());
        // The next request on the same (client and upstream) connections is answered whole.
        let r = send(&c, request("GET", &s.url("/?bytes=10"), None, Bytes::new())).await;
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"xxxxxxxxxx");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http1_clients_uploading_too_much_read_the_413() {
    let app = echo("app").await;
    let m = catch_all("app", &[app], &[]);
    let s = Sluice::start(m.path(), &[]);
    // NGINX answers 413 and keeps reading (discarding) the body for a while before closing
    // (lingering close), so that a client still writing its body reads the answer.
    let mut failures = Vec::new();
    for size in [MIB + 1, 4 * MIB] {
        for _ in 0..50 {
            let req = request("POST", &s.url("/"), None, Bytes::from(vec![b'b'; size]));
            match tokio::time::timeout(WAIT, client().request(req)).await.unwrap() {
                Ok(resp) if resp.status() == 413 => {}
                Ok(resp) => failures.push(format!("{size} bytes: status {}", resp.status())),
                Err(e) => failures.push(format!("{size} bytes: {e:?}")),
            }
        }
        for _ in 0..10 {
            let body = chunked(size + 64 * 1024, 64 * 1024);
            let req = http::Request::builder().method("POST").uri(s.url("/")).body(body).unwrap();
            match tokio::time::timeout(WAIT, streaming_client().request(req)).await.unwrap() {
                Ok(resp) if resp.status() == 413 => {}
                Ok(resp) => {
                    failures.push(format!("chunked {size} bytes: status {}", resp.status()))
                }
                Err(e) => failures.push(format!("chunked {size} bytes: {e:?}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 120 uploads did not get their 413: {failures:#?}",
        failures.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn close_delimited_responses_are_relayed_whole() {
    // An HTTP/1.0-style body: no length, no chunks, ended by closing the connection.
    let backend = tcp_backend(|mut stream| async move {
        if read_head(&mut stream).await.is_some() {
            let mut resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
            resp.extend(std::iter::repeat_n(b'z', 300_000));
            let _ = stream.write_all(&resp).await;
        }
    })
    .await;
    let m = catch_all("old", &[backend], &[]);
    let s = Sluice::start_workers(m.path(), 1, &[]);
    let c = client();
    for _ in 0..3 {
        let r = send(&c, request("GET", &s.url("/"), None, Bytes::new())).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 300_000);
        assert!(r.body.iter().all(|&b| b == b'z'));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn steady_slow_responses_and_uploads_are_within_the_timeouts() {
    // The read and send timeouts are between two reads or writes, not for the whole exchange.
    let backend = tcp_backend(|mut stream| async move {
        if read_head(&mut stream).await.is_none() {
            return;
        }
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").await;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(400)).await; // a deliberately slow backend
            if stream.write_all(b"4\r\ntick\r\n").await.is_err() {
                return;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n").await;
        let _ = read_head(&mut stream).await;
    })
    .await;
    let app = echo("app").await;
    let timeouts = [
        ("nginx.ingress.kubernetes.io/proxy-read-timeout", "1"),
        ("nginx.ingress.kubernetes.io/proxy-send-timeout", "1"),
    ];
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &[service("slow", &[backend]), service("app", &[app])].join("---\n"));
    route(&m, "slow", "slow.example.com", "slow", &timeouts);
    route(&m, "up", "up.example.com", "app", &timeouts);
    let s = Sluice::start(m.path(), &[]);

    let r =
        send(&client(), request("GET", &s.url("/"), Some("slow.example.com"), Bytes::new())).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"tickticktickticktick");

    // An upload trickling in over 2 s, a piece every 400 ms.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let body = StreamBody::new(stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    }));
    let req = http::Request::builder()
        .method("POST")
        .uri(s.url("/"))
        .header("host", "up.example.com")
        .body(BodyExt::boxed_unsync(body))
        .unwrap();
    let pending = tokio::spawn(streaming_client().request(req));
    for _ in 0..5 {
        tx.send(Bytes::from_static(b"piece")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await; // a deliberately slow client
    }
    drop(tx);
    let resp = tokio::time::timeout(WAIT, pending).await.unwrap().unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let doc: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(doc["body_bytes"], 25);
}
