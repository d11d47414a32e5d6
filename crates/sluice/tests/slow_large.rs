//! Slow and large bodies: a client reading a large response slowly, and a large upload to a
//! backend reading it slowly. The proxy's peak resident memory (VmHWM, reset before each
//! transfer) must stay far below the body's size: bodies move with back-pressure, never held
//! whole. Downloads on the fast path, the general path and h2c; uploads with request buffering
//! on (ingress-nginx's default: Sluice holds at most 8 MiB, then streams), off, and over h2c.
//!
//! The short form (64 MiB at 64 MiB/s) runs with the other tests; the 1 GiB form is
//! `bench/slow-large.sh` (this file's ignored test, sizes from the environment).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::StreamExt as _;
use futures_util::stream;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioExecutor;

const MIB: u64 = 1024 * 1024;
/// The pieces bodies are made of and read in.
const CHUNK: usize = 64 * 1024;
static ZEROS: [u8; CHUNK] = [0; CHUNK];

type Boxed = UnsyncBoxBody<Bytes, Infallible>;

/// `total` bytes of zeros, made as they are sent (no body is ever whole in the test either).
fn zeros(total: u64) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    stream::iter((0..total).step_by(CHUNK)).map(move |at| {
        let n = (total - at).min(CHUNK as u64) as usize;
        Ok(Frame::data(Bytes::from_static(&ZEROS[..n])))
    })
}

/// Reads `body` to its end no faster than `rate` bytes a second; returns the byte count.
async fn read_slowly<B>(mut body: B, rate: u64) -> u64
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let start = Instant::now();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("the body arrives whole").into_data() {
            n += data.len() as u64;
        }
        let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
    }
    n
}

/// A backend answering `GET` with `size` bytes (with their length, written as fast as the
/// proxy takes them) and `POST` with the number of body bytes it read, at most `rate` a second.
async fn backend(size: u64, rate: u64) -> SocketAddr {
    tcp_backend(move |stream| async move {
        let service = hyper::service::service_fn(
            move |req: http::Request<hyper::body::Incoming>| async move {
                let resp = if req.method() == http::Method::POST {
                    let n = read_slowly(req.into_body(), rate).await;
                    http::Response::new(Full::new(Bytes::from(n.to_string())).boxed_unsync())
                } else {
                    let body = StreamBody::new(zeros(size)).boxed_unsync();
                    http::Response::builder().header("content-length", size).body(body).unwrap()
                };
                Ok::<_, Infallible>(resp)
            },
        );
        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    })
    .await
}

/// Sends `req` on a new connection to `addr` (h2c with prior knowledge, or HTTP/1.1), the
/// host taken from its URI; returns the response head with its body still to read.
async fn exchange_on(
    addr: SocketAddr,
    h2: bool,
    mut req: http::Request<Boxed>,
) -> http::Response<hyper::body::Incoming> {
    let io = hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.expect("a response")
    } else {
        let host = req.uri().host().unwrap().parse().unwrap();
        req.headers_mut().insert("host", host);
        *req.uri_mut() = "/".parse().unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.expect("a response")
    }
}

/// What one transfer cost.
#[derive(Debug)]
struct Figure {
    what: &'static str,
    bytes: u64,
    took: Duration,
    /// The proxy's peak resident memory during the transfer, over its resident memory before.
    peak_growth: u64,
    peak: u64,
}

impl std::fmt::Display for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<40} {:>6} MiB in {:>6.1} s = {:>7.1} MiB/s; proxy peak RSS {:>5.1} MiB (+{:.1} MiB)",
            self.what,
            self.bytes / MIB,
            self.took.as_secs_f64(),
            self.bytes as f64 / MIB as f64 / self.took.as_secs_f64(),
            self.peak as f64 / MIB as f64,
            self.peak_growth as f64 / MIB as f64,
        )
    }
}

/// Runs `transfer` with the proxy's peak RSS reset first (`clear_refs` 5), and reports it.
async fn measured(
    s: &Sluice,
    what: &'static str,
    transfer: impl std::future::Future<Output = u64>,
) -> Figure {
    std::fs::write(format!("/proc/{}/clear_refs", s.pid()), "5").expect("VmHWM resets");
    let before = s.status_kib("VmRSS:") * 1024;
    let start = Instant::now();
    let bytes = transfer.await;
    let took = start.elapsed();
    let peak = s.status_kib("VmHWM:") * 1024;
    Figure { what, bytes, took, peak_growth: peak.saturating_sub(before), peak }
}

const BODY_SIZE: &str = "nginx.ingress.kubernetes.io/proxy-body-size";

/// Runs every transfer of `size` bytes at `rate` bytes a second through a fresh Sluice.
async fn run(size: u64, rate: u64) -> Vec<Figure> {
    let app = backend(size, rate).await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("big", &[app]));
    let unlimited = (BODY_SIZE, "0");
    let routes: [(&str, &[(&str, &str)]); 3] = [
        ("fast", &[unlimited]),
        // HTTP/1.0 upstream: the fast path leaves the route to the general path.
        ("general", &[unlimited, ("nginx.ingress.kubernetes.io/proxy-http-version", "1.0")]),
        (
            "unbuffered",
            &[unlimited, ("nginx.ingress.kubernetes.io/proxy-request-buffering", "off")],
        ),
    ];
    for (name, annotations) in routes {
        let host = format!("{name}.example");
        m.write(
            &format!("{name}.yaml"),
            &ingress(name, &host, &[("/", "Prefix", "big")], annotations),
        );
    }
    let s = Sluice::start(m.path(), &[]);

    // The slow side sets the pace: an upload's answer comes once the backend read it all.
    let patience = WAIT + Duration::from_secs(size / rate);
    let addr = s.http;
    let download = |h2: bool, host: &'static str| async move {
        let uri = format!("http://{host}/");
        let req = http::Request::get(uri).body(Full::new(Bytes::new()).boxed_unsync()).unwrap();
        let resp = tokio::time::timeout(WAIT, exchange_on(addr, h2, req)).await.unwrap();
        assert_eq!(resp.status(), 200);
        read_slowly(resp.into_body(), rate).await
    };
    let upload = |h2: bool, host: &'static str| async move {
        let req = http::Request::post(format!("http://{host}/"))
            .header("content-length", size)
            .body(StreamBody::new(zeros(size)).boxed_unsync())
            .unwrap();
        let resp = tokio::time::timeout(patience, exchange_on(addr, h2, req)).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        std::str::from_utf8(&body).unwrap().parse::<u64>().unwrap()
    };
    // A first request starts what a worker starts lazily.
    let _ = get(&s.url("/"), Some("nothing.example")).await;

    let mut figures = Vec::new();
    figures.push(
        measured(&s, "download, fast path (HTTP/1.1)", download(false, "fast.example")).await,
    );
    figures.push(
        measured(&s, "download, general path (HTTP/1.1)", download(false, "general.example")).await,
    );
    figures.push(measured(&s, "download, h2c", download(true, "fast.example")).await);
    figures.push(
        measured(&s, "upload, request buffering on (HTTP/1.1)", upload(false, "fast.example"))
            .await,
    );
    figures.push(
        measured(
            &s,
            "upload, request buffering off (HTTP/1.1)",
            upload(false, "unbuffered.example"),
        )
        .await,
    );
    figures.push(
        measured(&s, "upload, request buffering on (h2c)", upload(true, "fast.example")).await,
    );
    for f in &figures {
        println!("{f}");
        assert_eq!(f.bytes, size, "{}: the whole body arrives", f.what);
    }
    figures
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_readers_and_slow_backends_hold_little_memory() {
    let figures = run(64 * MIB, 64 * MIB).await;
    for f in figures {
        assert!(f.peak_growth < 32 * MIB, "{f}");
        // The pace held: the slow side set the speed (nothing was skipped).
        assert!(f.took >= Duration::from_millis(900), "{f}");
    }
}

/// `bench/slow-large.sh`: the same transfers, `SLOW_LARGE_MIB` (1024) at `SLOW_LARGE_RATE_MIB`
/// (64) MiB/s.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "minutes long: run by bench/slow-large.sh"]
async fn slow_large_figures() {
    let env = |name: &str, default: u64| {
        std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let (size, rate) = (env("SLOW_LARGE_MIB", 1024) * MIB, env("SLOW_LARGE_RATE_MIB", 64) * MIB);
    let figures = run(size, rate).await;
    for f in figures {
        assert!(f.peak_growth < 64 * MIB, "{f}");
    }
}
