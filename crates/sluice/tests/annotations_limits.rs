//! The rate and connection limits end to end, against the real binary and a real echo
//! backend, with ingress-nginx's semantics: `limit-rps` and `limit-rpm` (NGINX's leaky
//! bucket, `burst = limit × limit-burst-multiplier`, `nodelay`), `limit-connections`
//! (ingress-nginx's e2e `limitconnections.go`: 20 slow requests at once, 8 allowed),
//! `limit-allowlist`, ConfigMap `limit-req-status-code` and `limit-conn-status-code`, the
//! zone an Ingress's paths share, invalid values failing closed, and `limit-rate` /
//! `limit-rate-after` pacing a response, and the key a spoofed `X-Forwarded-For` cannot change.
//!
//! Rates are per minute where the count matters: a bucket that refills once a minute gives
//! the same count however slow the machine.

mod common;

use std::time::{Duration, Instant};

use common::*;

const RPS: &str = "nginx.ingress.kubernetes.io/limit-rps";
const RPM: &str = "nginx.ingress.kubernetes.io/limit-rpm";
const BURST: &str = "nginx.ingress.kubernetes.io/limit-burst-multiplier";
const CONNECTIONS: &str = "nginx.ingress.kubernetes.io/limit-connections";
const ALLOWLIST: &str = "nginx.ingress.kubernetes.io/limit-allowlist";
const RATE: &str = "nginx.ingress.kubernetes.io/limit-rate";
const RATE_AFTER: &str = "nginx.ingress.kubernetes.io/limit-rate-after";

/// An Ingress: name, host, paths (Prefix, to `app`), annotations.
type Ing<'a> = (&'a str, &'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);

/// Manifests with the echo backend `app`, the Ingresses `(name, host, paths, annotations)`,
/// and the ConfigMap `default/sluice-config` with `config`.
async fn setup(ingresses: &[Ing<'_>], config: &[(&str, &str)]) -> (Manifests, Sluice) {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[echo("app").await]));
    for (name, host, paths, annotations) in ingresses {
        let paths: Vec<(&str, &str, &str)> = paths.iter().map(|p| (*p, "Prefix", "app")).collect();
        m.write(&format!("ing-{name}.yaml"), &ingress(name, host, &paths, annotations));
    }
    m.write("config.yaml", &sluice_config(config));
    let s = Sluice::start(m.path(), &["--configmap", "default/sluice-config"]);
    (m, s)
}

/// The statuses of `n` GETs of `path` on `host`, one after the other on one keep-alive
/// connection (the fast path), then as many POSTs with a chunked body (the general path).
async fn statuses(s: &Sluice, host: &str, path: &str, n: usize) -> Vec<u16> {
    let c = client();
    let mut out = Vec::new();
    for method in ["GET", "POST"] {
        for _ in 0..n {
            let body = if method == "POST" {
                bytes::Bytes::from_static(b"x")
            } else {
                bytes::Bytes::new()
            };
            let req = if method == "POST" {
                chunked_request(method, &s.url(path), Some(host), body)
            } else {
                request(method, &s.url(path), Some(host), body)
            };
            out.push(send(&c, req).await.status.as_u16());
        }
    }
    out
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

// limit-rpm 2 with the default multiplier 5: a burst of 10 on top of the first request, so 11
// requests pass and the rest answer 503 (`limit-req-status-code`'s default); a refused
// request charges nothing. Both paths count in the same bucket.
#[tokio::test(flavor = "multi_thread")]
async fn limit_rpm_admits_the_burst_then_refuses() {
    let (_m, s) = setup(&[("web", "rpm.example", &["/"], &[(RPM, "2")])], &[]).await;
    let got = statuses(&s, "rpm.example", "/", 8).await;
    assert_eq!((count(&got, 200), count(&got, 503)), (11, 5), "{got:?}");
    assert!(got[..11].iter().all(|&s| s == 200), "the first 11 pass: {got:?}");
    let refused = get(&s.url("/"), Some("rpm.example")).await;
    assert!(String::from_utf8_lossy(&refused.body).contains("503"), "NGINX's page");
}

// The multiplier sets the burst (`limit-rps: 1`, multiplier 2: 3 at once); the ConfigMap's
// `limit-req-status-code` the status; `limit-allowlist` exempts the client entirely.
#[tokio::test(flavor = "multi_thread")]
async fn burst_multiplier_status_code_and_allowlist() {
    let ingresses: &[Ing<'_>] = &[
        ("burst", "burst.example", &["/"], &[(RPM, "1"), (BURST, "2")]),
        ("exempt", "exempt.example", &["/"], &[(RPM, "1"), (ALLOWLIST, "10.0.0.0/8, 127.0.0.1")]),
    ];
    let (_m, s) = setup(ingresses, &[("limit-req-status-code", "429")]).await;
    let got = statuses(&s, "burst.example", "/", 3).await;
    assert_eq!(got, [200, 200, 200, 429, 429, 429]);
    let got = statuses(&s, "exempt.example", "/", 10).await;
    assert!(got.iter().all(|&s| s == 200), "allow-listed: {got:?}");
}

// A zone belongs to an Ingress: its paths and hosts share a client's bucket; another
// Ingress has its own.
#[tokio::test(flavor = "multi_thread")]
async fn an_ingress_paths_share_its_zone() {
    let ingresses: &[Ing<'_>] = &[
        ("one", "one.example", &["/a", "/b"], &[(RPM, "1"), (BURST, "1")]),
        ("two", "two.example", &["/a"], &[(RPM, "1"), (BURST, "1")]),
    ];
    let (_m, s) = setup(ingresses, &[]).await;
    let a = |host: &'static str, path: &'static str| {
        let url = s.url(path);
        async move { get(&url, Some(host)).await.status.as_u16() }
    };
    assert_eq!([a("one.example", "/a").await, a("one.example", "/b").await], [200, 200]);
    assert_eq!(a("one.example", "/b").await, 503, "the two paths drew from one bucket");
    assert_eq!(a("two.example", "/a").await, 200, "another Ingress, another bucket");
}

// ingress-nginx's `limitconnections.go`: `limit-connections: 8`, 20 slow requests at once:
// 8 answered 200, 12 refused (`limit-conn-status-code`, 503 by default); once they are done,
// the client may connect again.
#[tokio::test(flavor = "multi_thread")]
async fn limit_connections_counts_requests_in_flight() {
    let (_m, s) = setup(&[("web", "conn.example", &["/"], &[(CONNECTIONS, "8")])], &[]).await;
    let url = s.url("/sleep?delay_ms=1500");
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                // Half on the fast path (GET), half on the general path (a chunked POST).
                let host = Some("conn.example");
                let req = if i % 2 == 0 {
                    request("GET", &url, host, bytes::Bytes::new())
                } else {
                    chunked_request("POST", &url, host, bytes::Bytes::from("x"))
                };
                send(&client(), req).await.status.as_u16()
            })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    assert_eq!((count(&got, 200), count(&got, 503)), (8, 12), "{got:?}");
    assert_eq!(get(&s.url("/"), Some("conn.example")).await.status, 200, "places given back");
}

// Values that cannot be read fail the Ingress closed (503, with a diagnostic); ingress-nginx
// refuses the Ingress.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_limits_fail_closed() {
    let ingresses: &[Ing<'_>] = &[
        ("word", "word.example", &["/"], &[(RPS, "ten")]),
        ("zero", "zero.example", &["/"], &[(RPS, "10"), (BURST, "0")]),
        ("list", "list.example", &["/"], &[(RPS, "10"), (ALLOWLIST, "10.0.0.0/8,")]),
    ];
    let (_m, s) = setup(ingresses, &[]).await;
    let config = s.config().await;
    let diagnostics = config["diagnostics"].to_string();
    for (name, annotation) in
        [("word", "limit-rps"), ("zero", "limit-burst-multiplier"), ("list", "limit-allowlist")]
    {
        let host = format!("{name}.example");
        assert_eq!(get(&s.url("/"), Some(&host)).await.status, 503, "{name}");
        assert!(
            diagnostics.contains(&format!("\"name\":\"{name}\""))
                && diagnostics.contains(annotation),
            "{name}: {diagnostics}"
        );
    }
}

// `limit-rate` (KiB/s) paces a response as NGINX does (32 KiB in each second): 96 KiB at
// 32 KiB/s take two seconds; with `limit-rate-after: 96` the same response goes at full speed. The body
// arrives whole either way.
#[tokio::test(flavor = "multi_thread")]
async fn limit_rate_paces_responses_after_limit_rate_after() {
    let ingresses: &[Ing<'_>] = &[
        ("slow", "slow.example", &["/"], &[(RATE, "32")]),
        ("after", "after.example", &["/"], &[(RATE, "32"), (RATE_AFTER, "96")]),
    ];
    let (_m, s) = setup(ingresses, &[]).await;
    let timed = |host: &'static str| {
        let url = s.url("/data?bytes=98304");
        async move {
            let start = Instant::now();
            let r = get(&url, Some(host)).await;
            assert_eq!((r.status.as_u16(), r.body.len()), (200, 98304), "{host}");
            start.elapsed()
        }
    };
    let paced = timed("slow.example").await;
    assert!(paced >= Duration::from_millis(1900), "96 KiB at 32 KiB/s took {paced:?}");
    let unpaced = timed("after.example").await;
    assert!(unpaced < paced, "limit-rate-after lets the first 96 KiB go: {unpaced:?} vs {paced:?}");
}

// The key is the real client address: an `X-Forwarded-For` from a peer that is not trusted
// (no `use-forwarded-headers`) neither escapes a client's bucket nor charges another's.
#[tokio::test(flavor = "multi_thread")]
async fn a_forwarded_for_header_does_not_change_the_key_unless_trusted() {
    let (_m, s) =
        setup(&[("web", "spoof.example", &["/"], &[(RPM, "1"), (BURST, "1")])], &[]).await;
    let with_xff = |xff: &'static str| {
        let url = s.url("/");
        async move {
            let mut req = request("GET", &url, Some("spoof.example"), bytes::Bytes::new());
            req.headers_mut().insert("x-forwarded-for", xff.parse().unwrap());
            send(&client(), req).await.status.as_u16()
        }
    };
    let got = [with_xff("10.0.0.1").await, with_xff("10.0.0.2").await, with_xff("10.0.0.3").await];
    assert_eq!(got, [200, 200, 503], "one bucket, the connection's address");
}
