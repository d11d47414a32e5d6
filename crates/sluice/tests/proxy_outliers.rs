//! Pods going away: passive outlier ejection (`sluice-outlier-*`, Sluice's own), endpoints
//! removed with requests in flight, and a backend dying under steady traffic.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::Full;

const CONFIGMAP: &[&str] = &["--configmap", "default/sluice-config"];

/// A listener that accepts each connection and resets it at once (a pod whose process died
/// with its port still bound, or a proxy in front of nothing): counts the connections.
async fn resetting() -> (SocketAddr, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let addr = tcp_backend(move |stream| {
        c.fetch_add(1, Ordering::SeqCst);
        async move {
            // Linger 0: closing sends a reset, not a FIN.
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    })
    .await;
    (addr, count)
}

/// Manifests routing everything to Service `app` with `endpoints`, and the ConfigMap with
/// `config`.
fn set_up(endpoints: &[SocketAddr], config: &[(&str, &str)]) -> Manifests {
    let m = catch_all("app", endpoints, &[]);
    m.write("config.yaml", &sluice_config(config));
    m
}

/// Waits until `count` reaches `n`, sending a request now and then to move things on.
async fn wait_count(s: &Sluice, count: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + WAIT;
    while count.load(Ordering::SeqCst) < n {
        let r = get(&s.url("/"), None).await;
        assert_eq!(r.status, 200, "a client error while waiting");
        assert!(Instant::now() < deadline, "{} connections, not {n}", count.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A backend that reads each request head, then resets the connection: the request was
/// sent, so only idempotent requests may go elsewhere.
async fn reset_after_request() -> (SocketAddr, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let addr = tcp_backend(move |mut stream| {
        let c = c.clone();
        async move {
            if read_head(&mut stream).await.is_some() {
                c.fetch_add(1, Ordering::SeqCst);
            }
            let _ = stream.set_zero_linger();
        }
    })
    .await;
    (addr, count)
}

const OFF: (&str, &str) = ("sluice-outlier-detection", "false");

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_after_connect_moves_on_to_the_next_endpoint() {
    for (name, (dead, attempts)) in [
        ("reset at once", resetting().await),
        ("reset after the request", reset_after_request().await),
    ] {
        let live = echo("live").await;
        // Ejection off: `proxy-next-upstream` alone keeps the client from seeing it.
        let m = set_up(&[dead, live], &[OFF]);
        let s = Sluice::start_workers(m.path(), 1, CONFIGMAP);
        for i in 0..10 {
            let r = get(&s.url(&format!("/{i}")), None).await;
            assert_eq!(r.status, 200, "{name}: request {i}");
            assert_eq!(r.backend(), "live");
        }
        assert_eq!(attempts.load(Ordering::SeqCst), 5, "{name}: every other request tried it");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_reset_after_it_was_sent_is_not_retried_unless_non_idempotent() {
    for (next_upstream, expected_502) in [(None, 2), (Some("error timeout non_idempotent"), 0)] {
        let (dead, attempts) = reset_after_request().await;
        let live = echo("live").await;
        let m = Manifests::new();
        m.write("class.yaml", &ingress_class());
        m.write("svc.yaml", &service("app", &[dead, live]));
        m.write("config.yaml", &sluice_config(&[OFF]));
        let annotations: Vec<(&str, &str)> = next_upstream
            .map(|v| ("nginx.ingress.kubernetes.io/proxy-next-upstream", v))
            .into_iter()
            .collect();
        m.write("ing.yaml", &ingress("web", "", &[("/", "Prefix", "app")], &annotations));
        let s = Sluice::start_workers(m.path(), 1, CONFIGMAP);
        let c = client();
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let post = request("POST", &s.url("/"), None, Bytes::from_static(b"order=1"));
            statuses.push(send(&c, post).await.status.as_u16());
        }
        assert_eq!(attempts.load(Ordering::SeqCst), 2, "{next_upstream:?}: {statuses:?}");
        let failed = statuses.iter().filter(|&&s| s == 502).count();
        assert_eq!(failed, expected_502, "{next_upstream:?}: {statuses:?}");
        assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 4 - expected_502);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_failing_in_a_row_is_ejected_then_tried_again() {
    let (dead, attempts) = resetting().await;
    let live = echo("live").await;
    let m = set_up(
        &[dead, live],
        &[
            ("sluice-outlier-consecutive-failures", "3"),
            ("sluice-outlier-base-ejection-time", "2s"),
        ],
    );
    let s = Sluice::start(m.path(), CONFIGMAP);
    // Every request is answered by the live endpoint (`proxy-next-upstream: error`), and the
    // dead one sees three connections, then none: it is ejected.
    let mut ejected_at = None;
    for i in 0..16 {
        let r = get(&s.url(&format!("/{i}")), None).await;
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.backend(), "live");
        if ejected_at.is_none() && attempts.load(Ordering::SeqCst) == 3 {
            ejected_at = Some(Instant::now());
        }
    }
    let ejected_at = ejected_at.expect("three failures");
    assert!(ejected_at.elapsed() < Duration::from_millis(1800), "too slow to tell");
    assert_eq!(attempts.load(Ordering::SeqCst), 3, "the ejected endpoint got connections");
    let line = s.wait_stderr(|l| l.contains("endpoint ejected"));
    assert!(line.contains(&dead.to_string()) && line.contains("default-app-80"), "{line}");
    assert!(line.contains("times=1"), "{line}");
    wait_metric(&s, &["sluice_upstream_ejections_total", "service=\"app\"", "} 1"]).await;

    // After the back-off it is tried again, then ejected again after three more failures,
    // for twice as long.
    wait_count(&s, &attempts, 4).await;
    let back = ejected_at.elapsed();
    assert!(back >= Duration::from_millis(1900), "tried again after {back:?}, before 2 s");
    s.wait_stderr(|l| l.contains("endpoint ejection ended") && l.contains(&dead.to_string()));
    wait_count(&s, &attempts, 6).await;
    let line = s.wait_stderr(|l| l.contains("endpoint ejected") && l.contains("times=2"));
    assert!(line.contains("seconds=4"), "{line}");
    for _ in 0..10 {
        assert_eq!(get(&s.url("/"), None).await.status, 200);
    }
    assert_eq!(attempts.load(Ordering::SeqCst), 6);
    wait_metric(&s, &["sluice_upstream_ejections_total", "service=\"app\"", "} 2"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ejection_outlives_a_full_translation_and_goes_with_its_endpoint() {
    let (dead, attempts) = resetting().await;
    let (live, other) = (echo("live").await, echo("other").await);
    let config = [("sluice-outlier-consecutive-failures", "2")];
    let m = set_up(&[dead, live], &config);
    let s = Sluice::start(m.path(), CONFIGMAP);
    wait_count(&s, &attempts, 2).await;
    s.wait_stderr(|l| l.contains("endpoint ejected"));
    // A ConfigMap change translates every backend anew: the ejection stays.
    let g = s.generation().await;
    m.write("config.yaml", &sluice_config(&[config[0], ("proxy-body-size", "2m")]));
    s.wait_generation_after(g).await;
    s.wait_stderr(|l| l.contains("applied configuration") && l.contains("update=\"full\""));
    for _ in 0..10 {
        assert_eq!(get(&s.url("/"), None).await.status, 200);
    }
    assert_eq!(attempts.load(Ordering::SeqCst), 2, "dialled again after the ConfigMap change");
    // An endpoint change keeps it too; once the endpoint is gone and back, it starts afresh.
    let g = s.generation().await;
    m.write("svc.yaml", &service("app", &[dead, live, other]));
    s.wait_generation_after(g).await;
    for _ in 0..10 {
        assert_eq!(get(&s.url("/"), None).await.status, 200);
    }
    assert_eq!(attempts.load(Ordering::SeqCst), 2, "dialled again after an endpoint change");
    let g = s.generation().await;
    m.write("svc.yaml", &service("app", &[live, other]));
    let g = s.wait_generation_after(g).await;
    m.write("svc.yaml", &service("app", &[dead, live, other]));
    s.wait_generation_after(g).await;
    wait_count(&s, &attempts, 3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_endpoint_is_never_ejected() {
    // Alone: every request still reaches it (and fails), never ejected.
    let (dead, attempts) = resetting().await;
    let m = set_up(&[dead], &[("sluice-outlier-consecutive-failures", "2")]);
    let s = Sluice::start(m.path(), CONFIGMAP);
    for i in 1..=8 {
        assert_eq!(get(&s.url("/"), None).await.status, 502);
        assert_eq!(attempts.load(Ordering::SeqCst), i, "request {i} did not reach it");
    }
    // Two, both failing, even at 100 %: one is ejected, the other always tried.
    let (a, a_count) = resetting().await;
    let (b, b_count) = resetting().await;
    let m = set_up(
        &[a, b],
        &[
            ("sluice-outlier-consecutive-failures", "2"),
            ("sluice-outlier-max-ejection-percent", "100"),
        ],
    );
    let s2 = Sluice::start(m.path(), CONFIGMAP);
    for _ in 0..6 {
        assert_eq!(get(&s2.url("/"), None).await.status, 502);
    }
    let before = (a_count.load(Ordering::SeqCst), b_count.load(Ordering::SeqCst));
    for _ in 0..6 {
        assert_eq!(get(&s2.url("/"), None).await.status, 502);
    }
    let after = (a_count.load(Ordering::SeqCst), b_count.load(Ordering::SeqCst));
    let gained = (after.0 - before.0, after.1 - before.1);
    assert!(
        gained == (0, 6) || gained == (6, 0),
        "one ejected and one tried by every request: {before:?} -> {after:?}"
    );
    let ejections = s2.stderr().iter().filter(|l| l.contains("endpoint ejected")).count();
    assert_eq!(ejections, 1);
    assert!(s.stderr().iter().all(|l| !l.contains("endpoint ejected")));
}

#[tokio::test(flavor = "multi_thread")]
async fn ejection_can_be_turned_off() {
    let (dead, attempts) = resetting().await;
    let live = echo("live").await;
    let m = set_up(
        &[dead, live],
        &[("sluice-outlier-detection", "false"), ("sluice-outlier-consecutive-failures", "1")],
    );
    let s = Sluice::start_workers(m.path(), 1, CONFIGMAP);
    for _ in 0..20 {
        assert_eq!(get(&s.url("/"), None).await.status, 200);
    }
    // Round robin starts every other request at the dead endpoint: it sees all of those.
    assert_eq!(attempts.load(Ordering::SeqCst), 10);
    assert!(s.stderr().iter().all(|l| !l.contains("endpoint ejected")));
    assert!(!metrics(&s).await.contains("sluice_upstream_ejections_total{"));
    assert_diagnostics(&s, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_values_are_warnings_on_the_configmap_and_keep_the_defaults() {
    let (dead, attempts) = resetting().await;
    let live = echo("live").await;
    let m = set_up(
        &[dead, live],
        &[
            ("sluice-outlier-consecutive-failures", "zero"),
            ("sluice-outlier-base-ejection-time", "soon"),
            ("sluice-outlier-max-ejection-percent", "150"),
        ],
    );
    let s = Sluice::start(m.path(), CONFIGMAP);
    let config = s.config().await;
    let diagnostics = config["diagnostics"].as_array().expect("a diagnostics list");
    for key in [
        "sluice-outlier-consecutive-failures",
        "sluice-outlier-base-ejection-time",
        "sluice-outlier-max-ejection-percent",
    ] {
        let found = diagnostics.iter().any(|d| {
            d["reason"] == "InvalidConfigMapKey"
                && d["severity"] == "Warning"
                && d["object"]["name"] == "sluice-config"
                && d["object"]["namespace"] == "default"
                && d["message"].as_str().unwrap_or_default().starts_with(key)
        });
        assert!(found, "{key}: no warning in {diagnostics:#?}");
    }
    assert_eq!(diagnostics.len(), 3, "{diagnostics:#?}");
    // The defaults apply: five failures in a row eject.
    for _ in 0..30 {
        assert_eq!(get(&s.url("/"), None).await.status, 200);
    }
    assert_eq!(attempts.load(Ordering::SeqCst), 5);
}

/// A Sluice-own key is neither unknown nor a typo: no diagnostic at all.
#[tokio::test(flavor = "multi_thread")]
async fn good_values_raise_no_diagnostic() {
    let m = set_up(
        &[echo("live").await],
        &[
            ("sluice-outlier-detection", "true"),
            ("sluice-outlier-consecutive-failures", "7"),
            ("sluice-outlier-base-ejection-time", "500ms"),
            ("sluice-outlier-max-ejection-time", "5m"),
            ("sluice-outlier-max-ejection-percent", "50"),
            ("sluice-outlier-gateway-responses", "true"),
        ],
    );
    let s = Sluice::start(m.path(), CONFIGMAP);
    assert_diagnostics(&s, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_responses_count_only_when_asked() {
    let failing = Arc::new(AtomicUsize::new(0));
    let f = failing.clone();
    let unavailable = http_backend(move |_req| {
        f.fetch_add(1, Ordering::SeqCst);
        async {
            let mut r = http::Response::new(Full::new(Bytes::from_static(b"down")));
            *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            r
        }
    })
    .await;
    let live = echo("live").await;
    for (counted, expected) in [("false", 10), ("true", 3)] {
        failing.store(0, Ordering::SeqCst);
        let m = set_up(
            &[unavailable, live],
            &[
                ("sluice-outlier-consecutive-failures", "3"),
                ("sluice-outlier-gateway-responses", counted),
            ],
        );
        let s = Sluice::start_workers(m.path(), 1, CONFIGMAP);
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(get(&s.url("/"), None).await.status.as_u16());
        }
        // A 503 is passed on (not in `proxy-next-upstream`'s default list).
        assert_eq!(statuses.iter().filter(|&&s| s == 503).count(), expected, "{statuses:?}");
        assert_eq!(
            failing.load(Ordering::SeqCst),
            expected,
            "gateway responses counted: {counted}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_endpoint_gets_no_new_request_and_its_requests_in_flight_finish() {
    let (held, mut arrived, release) = held_backend().await;
    let live = echo("live").await;
    let m = catch_all("app", &[held], &[]);
    let s = Sluice::start(m.path(), &[]);
    // A slow request in flight at the endpoint about to go.
    let url = s.url("/slow");
    let slow = tokio::spawn(async move { get(&url, None).await });
    tokio::time::timeout(WAIT, arrived.recv()).await.expect("the slow request arrives");
    let g = s.generation().await;
    m.write("svc.yaml", &service("app", &[live]));
    s.wait_generation_after(g).await;
    for _ in 0..20 {
        let r = get(&s.url("/"), None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.backend(), "live");
    }
    assert!(arrived.try_recv().is_err(), "the removed endpoint got a new request");
    release.notify_one();
    let r = tokio::time::timeout(WAIT, slow).await.expect("the slow request finishes").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"held");
}

/// An HTTP/1.1 backend that can be killed: its listener closes (connects are refused) and
/// every connection is dropped, mid-request or not. Counts the requests it answered.
async fn killable(name: &'static str) -> (SocketAddr, Arc<tokio::sync::Notify>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (kill, served) = (Arc::new(tokio::sync::Notify::new()), Arc::new(AtomicUsize::new(0)));
    let (dead_tx, dead) = tokio::sync::watch::channel(false);
    let k = kill.clone();
    tokio::spawn(async move {
        k.notified().await;
        let _ = dead_tx.send(true);
    });
    let count = served.clone();
    tokio::spawn(async move {
        let mut dead_accept = dead.clone();
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => return,
                },
                _ = dead_accept.changed() => return, // the listener is dropped
            };
            let mut dead = dead.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let count = count.clone();
                    async move {
                        // A little work, so that some requests are in flight at the kill.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        count.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from(format!("{{\"name\":\"{name}\"}}")),
                        )))
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                tokio::select! {
                    _ = conn => {}
                    _ = dead.changed() => {} // dropped: the connection closes under the proxy
                }
            });
        }
    });
    (addr, kill, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backend_dying_under_steady_traffic_costs_no_client_error() {
    let (doomed, kill, served) = killable("doomed").await;
    let live = echo("live").await;
    let m = catch_all("app", &[doomed, live], &[]);
    let s = Arc::new(Sluice::start(m.path(), &[]));
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (s, stop, ok, failed) = (s.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let r = send(&c, request("GET", &s.url("/"), None, Bytes::new())).await;
                if r.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("failed: {} {:?}", r.status, String::from_utf8_lossy(&r.body));
                }
            }
        }));
    }
    // Steady traffic reaches both, then the doomed one dies mid-load.
    let deadline = Instant::now() + WAIT;
    while served.load(Ordering::SeqCst) < 200 {
        assert!(Instant::now() < deadline, "the doomed backend never got traffic");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    kill.notify_one();
    let at_kill = ok.load(Ordering::Relaxed);
    while ok.load(Ordering::Relaxed) < at_kill + 1000 {
        assert!(Instant::now() < deadline, "traffic stalled after the kill");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "client errors ({} ok)",
        ok.load(Ordering::Relaxed)
    );
    // And the dead endpoint was ejected rather than dialled on every other request.
    s.wait_stderr(|l| l.contains("endpoint ejected") && l.contains(&doomed.to_string()));
}
