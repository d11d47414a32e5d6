//! Upstream failures: dead endpoints, connect and read timeouts, retries, broken
//! connections, and routes without endpoints or Services.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

const CONNECT_TIMEOUT: (&str, &str) = ("nginx.ingress.kubernetes.io/proxy-connect-timeout", "1");
const READ_TIMEOUT: (&str, &str) = ("nginx.ingress.kubernetes.io/proxy-read-timeout", "1");

/// Manifests routing every host and path to a Service `app` with `endpoints`.
fn catch_all(endpoints: &[SocketAddr], annotations: &[(&str, &str)]) -> Manifests {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", endpoints));
    m.write("ing.yaml", &ingress("web", "", &[("/", "Prefix", "app")], annotations));
    m
}

fn page(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_endpoint_is_skipped() {
    let live = echo("live").await;
    let m = catch_all(&[unused_addr(), live], &[]);
    let s = Sluice::start(m.path(), &[]);
    for i in 0..20 {
        let r = get(&s.url(&format!("/{i}")), None).await;
        assert_eq!(r.status, 200, "request {i}: {}", page(&r));
        assert_eq!(r.backend(), "live");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn all_endpoints_dead_is_502() {
    let m = catch_all(&[unused_addr(), unused_addr()], &[]);
    let s = Sluice::start(m.path(), &[]);
    for _ in 0..3 {
        let r = get(&s.url("/"), None).await;
        assert_eq!(r.status, 502);
        assert_eq!(r.headers["server"], "sluice");
        assert!(page(&r).contains("502 Bad Gateway"), "{}", page(&r));
    }
}

/// A listener whose connects hang: `listen(0)`, never accepting, its backlog filled. The
/// returned streams keep the backlog full.
async fn blackhole() -> (SocketAddr, socket2::Socket, Vec<tokio::net::TcpStream>) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    let probe = Duration::from_millis(200);
    loop {
        match tokio::time::timeout(probe, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => fillers.push(s),
            Ok(Err(e)) => {
                panic!("connecting to the filled listener failed instead of hanging: {e}")
            }
            Err(_) => break, // this connect hangs: the backlog is full
        }
        assert!(fillers.len() < 64, "the listen backlog never filled: connects do not hang here");
    }
    // And it stays so: a further plain connect does not complete either.
    let again = tokio::time::timeout(probe, tokio::net::TcpStream::connect(addr)).await;
    assert!(again.is_err(), "a connect to the full listener completed: {again:?}");
    (addr, socket, fillers)
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_timeout_is_504() {
    let (hole, _socket, _fillers) = blackhole().await;
    let m = catch_all(&[hole], &[CONNECT_TIMEOUT]);
    let s = Sluice::start(m.path(), &[]);
    let started = Instant::now();
    let r = get(&s.url("/"), None).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", page(&r));
    assert_eq!(r.headers["server"], "sluice");
    assert!(page(&r).contains("504 Gateway Time-out"));
    assert!(took >= Duration::from_millis(900), "answered before the connect timeout: {took:?}");
    assert!(took < Duration::from_millis(2500), "the 1 s connect timeout took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_timeout_moves_on_to_the_next_endpoint() {
    let (hole, _socket, _fillers) = blackhole().await;
    let live = echo("live").await;
    let m = catch_all(&[hole, live], &[CONNECT_TIMEOUT]);
    let s = Sluice::start(m.path(), &[]);
    // Whichever endpoint the round-robin starts at, the request ends at the live one.
    for _ in 0..2 {
        let started = Instant::now();
        let r = get(&s.url("/"), None).await;
        assert_eq!(r.status, 200, "{}", page(&r));
        assert_eq!(r.backend(), "live");
        assert!(started.elapsed() < Duration::from_millis(2500), "{:?}", started.elapsed());
    }
}

/// A backend that reads requests and never answers, holding the connection open.
async fn silent_backend() -> SocketAddr {
    tcp_backend(|mut stream| async move {
        let _ = read_head(&mut stream).await;
        let _ = read_head(&mut stream).await; // until the proxy gives up and closes
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn read_timeout_is_504() {
    let m = catch_all(&[silent_backend().await], &[READ_TIMEOUT]);
    let s = Sluice::start(m.path(), &[]);
    let started = Instant::now();
    let r = get(&s.url("/"), None).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", page(&r));
    assert_eq!(r.headers["server"], "sluice");
    assert!(took >= Duration::from_millis(900), "answered before the read timeout: {took:?}");
    assert!(took < Duration::from_millis(2500), "the 1 s read timeout took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_but_in_time_answers_pass() {
    let app = echo("app").await;
    let m = catch_all(&[app], &[READ_TIMEOUT]);
    let s = Sluice::start(m.path(), &[]);
    let r = get(&s.url("/?delay_ms=500"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(get(&s.url("/?delay_ms=1600"), None).await.status, 504);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_stalling_mid_body_is_cut() {
    let backend = tcp_backend(|mut stream| async move {
        if read_head(&mut stream).await.is_none() {
            return;
        }
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let _ = read_head(&mut stream).await; // stall until the proxy closes
    })
    .await;
    let m = catch_all(&[backend], &[READ_TIMEOUT]);
    let s = Sluice::start(m.path(), &[]);

    let started = Instant::now();
    let resp = tokio::time::timeout(
        WAIT,
        client().request(request("GET", &s.url("/"), None, Bytes::new())),
    )
    .await
    .unwrap()
    .expect("the head arrives");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "100");
    let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
        .await
        .expect("the stalled body is cut within 5 s");
    let took = started.elapsed();
    assert!(
        body.is_err(),
        "the client got a complete body from a stalled response: {:?}",
        body.map(|b| b.to_bytes())
    );
    assert!(took >= Duration::from_millis(900), "cut before the read timeout: {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_try_means_no_failover() {
    let live = echo("live").await;
    let m = catch_all(
        &[unused_addr(), live],
        &[("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "1")],
    );
    let s = Sluice::start_workers(m.path(), 1, &[]);
    // Round-robin alternates the first endpoint: with one try, every other request hits the
    // dead one and fails.
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..10 {
            v.push(get(&s.url("/"), None).await.status.as_u16());
        }
        v
    };
    assert_eq!(statuses.iter().filter(|&&s| s == 502).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 5, "{statuses:?}");
    assert!(statuses.windows(2).all(|w| w[0] != w[1]), "not alternating: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn default_tries_fail_over_every_time() {
    let live = echo("live").await;
    let m = catch_all(&[unused_addr(), live], &[]);
    let s = Sluice::start_workers(m.path(), 1, &[]);
    for _ in 0..10 {
        assert_eq!(get(&s.url("/"), None).await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_closing_without_answering_is_502() {
    let backend = tcp_backend(|mut stream| async move {
        let _ = read_head(&mut stream).await;
        drop(stream);
    })
    .await;
    let m = catch_all(&[backend], &[]);
    let s = Sluice::start(m.path(), &[]);
    for _ in 0..3 {
        let started = Instant::now();
        let r = get(&s.url("/"), None).await;
        assert_eq!(r.status, 502, "{}", page(&r));
        assert_eq!(r.headers["server"], "sluice");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_endpoints_and_services_are_503_without_harming_other_routes() {
    let app = echo("app").await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write(
        "svc.yaml",
        &[service("app", &[app]), service_with("notready", &[], &[app])].join("---\n"),
    );
    m.write(
        "ing.yaml",
        &ingress(
            "web",
            "app.example.com",
            &[
                ("/ok", "Prefix", "app"),
                ("/notready", "Prefix", "notready"),
                ("/missing", "Prefix", "nosuch"),
            ],
            &[],
        ),
    );
    let s = Sluice::start(m.path(), &[]);
    let c = client();
    for _ in 0..2 {
        let ok =
            send(&c, request("GET", &s.url("/ok"), Some("app.example.com"), Bytes::new())).await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.backend(), "app");
        for path in ["/notready", "/missing/x"] {
            let r =
                send(&c, request("GET", &s.url(path), Some("app.example.com"), Bytes::new())).await;
            assert_eq!(r.status, 503, "{path}: {}", page(&r));
            assert_eq!(r.headers["server"], "sluice");
            assert!(page(&r).contains("503 Service Temporarily Unavailable"), "{}", page(&r));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn read_timeout_applies_to_requests_with_a_body() {
    let app = echo("app").await;
    let m = catch_all(&[app], &[READ_TIMEOUT]);
    let s = Sluice::start(m.path(), &[]);
    // The whole (small) body is sent at once; the echo then waits 3 s before answering:
    // past the 1 s read timeout, so the proxy must answer 504 after about 1 s.
    let started = Instant::now();
    let post = request("POST", &s.url("/?delay_ms=3000"), None, Bytes::from_static(b"small body"));
    let r = send(&client(), post).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "a POST waited {took:?} for its answer, past the 1 s read timeout");
    assert!(took < Duration::from_millis(2500), "the 1 s read timeout took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_cut_short_by_the_backend_is_cut_short_for_the_client() {
    let backend = tcp_backend(|mut stream| async move {
        if read_head(&mut stream).await.is_some() {
            let _ =
                stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this").await;
        }
    })
    .await;
    let m = catch_all(&[backend], &[]);
    let s = Sluice::start_workers(m.path(), 1, &[]);
    for _ in 0..3 {
        let resp = tokio::time::timeout(
            WAIT,
            client().request(request("GET", &s.url("/"), None, Bytes::new())),
        )
        .await
        .unwrap()
        .expect("the head arrives");
        assert_eq!(resp.status(), 200);
        let body = tokio::time::timeout(WAIT, resp.into_body().collect()).await.unwrap();
        assert!(
            body.is_err(),
            "a truncated response was delivered as complete: {:?}",
            body.map(|b| b.to_bytes())
        );
    }
}
