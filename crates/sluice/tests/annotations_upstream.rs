//! What becomes of a request on its way to the upstreams, against the real binary and real
//! backends, with ingress-nginx's semantics:
//!
//! - `proxy-next-upstream` (NGINX's `proxy_next_upstream`), `-tries` and `-timeout`: which
//!   failures go on to the next endpoint, how many attempts, for how long; POST only with
//!   `non_idempotent`, and never a body that was streamed; the access log's `$upstream_*`
//!   fields list every attempt, comma-separated.
//! - `mirror-target`, `mirror-host`, `mirror-request-body`: a copy of each request goes to the
//!   mirror; the client gets the main backend's answer, and a mirror that hangs or is gone
//!   never delays it (Sluice's documented departure from NGINX, whose `mirror` waits).
//! - `enable-access-log`, ConfigMap `disable-access-log` and `skip-access-log-urls`.
//!
//! Where both ways of carrying a request apply (retries, the access log), each test sends a
//! plain keep-alive HTTP/1.1 GET or POST with a small body (the fast path) and the same over
//! h2c (the general path), and expects the same. Mirrored routes are the general path's only: a keep-alive GET
//! to one must still be copied.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

const NEXT_UPSTREAM: &str = "nginx.ingress.kubernetes.io/proxy-next-upstream";
const TRIES: &str = "nginx.ingress.kubernetes.io/proxy-next-upstream-tries";
const NEXT_TIMEOUT: &str = "nginx.ingress.kubernetes.io/proxy-next-upstream-timeout";
const READ_TIMEOUT: &str = "nginx.ingress.kubernetes.io/proxy-read-timeout";
const BUFFERING: &str = "nginx.ingress.kubernetes.io/proxy-request-buffering";
const MIRROR_TARGET: &str = "nginx.ingress.kubernetes.io/mirror-target";
const MIRROR_HOST: &str = "nginx.ingress.kubernetes.io/mirror-host";
const MIRROR_BODY: &str = "nginx.ingress.kubernetes.io/mirror-request-body";
const ACCESS_LOG: &str = "nginx.ingress.kubernetes.io/enable-access-log";

// Set-up.

/// A manifests directory with the IngressClass and `objects` (file name, YAML).
fn manifests(objects: &[(&str, String)]) -> Manifests {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    for (name, yaml) in objects {
        m.write(name, yaml);
    }
    m
}

/// An Ingress `name` for `host`, every path to Service `service`.
fn route(name: &str, host: &str, service: &str, annotations: &[(&str, &str)]) -> String {
    ingress(name, host, &[("/", "Prefix", service)], annotations)
}

/// A Service `name` with `endpoints` and an Ingress `name` for `<name>.example.com` with
/// `annotations`: a Service each, so that each host has its own round robin.
struct Pool<'a> {
    name: &'a str,
    endpoints: &'a [SocketAddr],
    annotations: &'a [(&'a str, &'a str)],
}

fn pools(pools: &[Pool<'_>]) -> Manifests {
    let m = manifests(&[]);
    for p in pools {
        m.write(&format!("{}-svc.yaml", p.name), &service(p.name, p.endpoints));
        let host = format!("{}.example.com", p.name);
        m.write(&format!("{}.yaml", p.name), &route(p.name, &host, p.name, p.annotations));
    }
    m
}

/// The ConfigMap `default/sluice-config` with `data`.
fn configmap(data: &[(&str, &str)]) -> String {
    let mut s = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sluice-config\n  namespace: default\ndata:\n".to_string();
    for (k, v) in data {
        s.push_str(&format!("  {k}: {v:?}\n"));
    }
    s
}

// Backends.

/// A backend answering every request with `status` and `{"name": name}` (readable with
/// [`Reply::backend`]), after reading the request body.
async fn fixed(name: &'static str, status: u16) -> SocketAddr {
    http_backend(move |req: Request<Incoming>| async move {
        let _ = req.into_body().collect().await;
        http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!("{{\"name\":\"{name}\"}}"))))
            .unwrap()
    })
    .await
}

/// A backend that reads a request head and closes without answering: the request was sent,
/// and no response came (NGINX's `error` after the request went out).
async fn closer() -> SocketAddr {
    tcp_backend(|mut stream| async move {
        let _ = read_head(&mut stream).await;
        drop(stream);
    })
    .await
}

/// A backend that reads requests and never answers, holding the connection open.
async fn silent() -> SocketAddr {
    tcp_backend(|mut stream| async move {
        let _ = read_head(&mut stream).await;
        let _ = read_head(&mut stream).await; // until the proxy gives up and closes
    })
    .await
}

/// What a [`mirror`] backend received.
#[derive(Debug)]
struct Copy {
    method: String,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Copy {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap_or("<not text>"))
    }
}

/// A mirror backend reporting each request it receives (with its body) on the channel, then
/// answering `status` (which the client must never see).
async fn mirror(status: u16) -> (SocketAddr, mpsc::UnboundedReceiver<Copy>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = http_backend(move |req: Request<Incoming>| {
        let tx = tx.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let uri = parts.uri.path_and_query().map_or("", |p| p.as_str()).to_string();
            let _ = tx.send(Copy {
                method: parts.method.to_string(),
                uri,
                headers: parts.headers,
                body,
            });
            http::Response::builder()
                .status(status)
                .body(Full::new(Bytes::from_static(b"{\"name\":\"mirror\"}")))
                .unwrap()
        }
    })
    .await;
    (addr, rx)
}

/// A mirror that reports each request head it reads, then never answers nor closes.
async fn hanging_mirror() -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = tcp_backend(move |mut stream| {
        let tx = tx.clone();
        async move {
            if let Some(head) = read_head(&mut stream).await {
                let line = String::from_utf8_lossy(&head).lines().next().unwrap_or("").to_string();
                let _ = tx.send(line);
            }
            let mut sink = [0u8; 4096];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
    })
    .await;
    (addr, rx)
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the mirror got the copy in time")
        .expect("the mirror runs")
}

// Requests.

/// The two ways of carrying a request: the fast path (a keep-alive HTTP/1.1 GET) and the
/// general path (h2c).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    KeepAlive,
    H2c,
}

const WAYS: [Way; 2] = [Way::KeepAlive, Way::H2c];

/// A client holding one keep-alive HTTP/1.1 connection pool.
struct Clients {
    h1: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    /// The proxy's HTTP address.
    http: SocketAddr,
}

impl Clients {
    fn new(s: &Sluice) -> Self {
        Self { h1: client(), http: s.http }
    }

    /// `method` `path` on `host` with `X-Request-ID: id`, the way `way`.
    async fn send(
        &self,
        way: Way,
        method: &str,
        host: &str,
        path: &str,
        id: &str,
        body: &'static [u8],
    ) -> Reply {
        match way {
            Way::KeepAlive => {
                let url = format!("http://{}{path}", self.http);
                let mut req = request(method, &url, Some(host), Bytes::from_static(body));
                req.headers_mut().insert("x-request-id", id.parse().unwrap());
                send(&self.h1, req).await
            }
            Way::H2c => h2c(self.http, method, host, path, id, body).await,
        }
    }

    async fn get(&self, way: Way, host: &str, path: &str, id: &str) -> Reply {
        self.send(way, "GET", host, path, id, b"").await
    }

    /// A POST on the keep-alive connection (its small body is the fast path's).
    async fn post(&self, host: &str, path: &str, id: &str, body: &'static [u8]) -> Reply {
        self.send(Way::KeepAlive, "POST", host, path, id, body).await
    }
}

/// A request over h2c (prior knowledge) on a connection of its own, with `host` as
/// `:authority`: the general path.
async fn h2c(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    id: &str,
    body: &'static [u8],
) -> Reply {
    let mut req = request(method, &format!("http://{host}{path}"), None, Bytes::from_static(body));
    req.headers_mut().insert("x-request-id", id.parse().unwrap());
    h2c_send(addr, req).await
}

/// A POST whose body is streamed: a chunked body of two parts (no `Content-Length`).
async fn streamed_post(s: &Sluice, host: &str, id: &str) -> Reply {
    let parts = [Bytes::from_static(b"part one, "), Bytes::from_static(b"part two")];
    let frames = parts.map(|b| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b)));
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let req = Request::post(s.url("/upload"))
        .header("host", host)
        .header("x-request-id", id)
        .body(body)
        .unwrap();
    let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    send(&c, req).await
}

fn text(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

// The access log.

/// The upstream attempts a JSON access log line lists for request `id`: `(address, status)`
/// from `$upstream_addr` and `$upstream_status`.
fn attempts(s: &Sluice, id: &str) -> Vec<(String, String)> {
    let needle = format!("\"req_id\":\"{id}\"");
    let line = s.wait_stdout(|l| l.contains(&needle));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let list = |field: &str| -> Vec<String> {
        v[field].as_str().unwrap().split(", ").map(str::to_string).collect()
    };
    let (addrs, statuses) = (list("upstream_addr"), list("upstream_status"));
    assert_eq!(addrs.len(), statuses.len(), "{line}");
    addrs.into_iter().zip(statuses).collect()
}

fn pair(addr: SocketAddr, status: u16) -> (String, String) {
    (addr.to_string(), status.to_string())
}

// proxy-next-upstream.

/// NGINX's default `proxy_next_upstream error timeout`: an endpoint that refuses the
/// connection is skipped for the next one, on both paths alike; `$upstream_addr` and
/// `$upstream_status` list every attempt, `, `-separated, as NGINX's `upstreaminfo` writes
/// them (`10.0.0.1:80, 10.0.0.2:80 ... 502, 200`).
#[tokio::test(flavor = "multi_thread")]
async fn connect_errors_go_on_to_the_next_endpoint_and_every_attempt_is_logged() {
    let live = echo("live").await;
    let dead = [unused_addr(), unused_addr()];
    let m = manifests(&[
        ("svc.yaml", service("pool", &[dead[0], dead[1], live])),
        ("ing.yaml", route("web", "retry.example.com", "pool", &[])),
    ]);
    let s = Sluice::start(m.path(), &[]);
    let clients = Clients::new(&s);
    let line_re = regex::Regex::new(concat!(
        r#""GET /(\d) HTTP/(?:1\.1|2\.0)" 200 .* \[default-pool-80\] \[\] "#,
        r#"(?P<addr>\S+(?:, \S+)*) (?P<len>\d+(?:, \d+)*) (?P<time>[\d.]+(?:, [\d.]+)*) "#,
        r#"(?P<status>\d+(?:, \d+)*) (?P<id>\S+)$"#,
    ))
    .unwrap();
    for way in WAYS {
        // Three requests start at each of the three endpoints in turn (round robin).
        let mut counts = Vec::new();
        for i in 0..3 {
            let id = format!("{way:?}-{i}");
            let r = clients.get(way, "retry.example.com", &format!("/{i}"), &id).await;
            assert_eq!((r.status.as_u16(), r.backend()), (200, "live".into()), "{way:?} {i}");
            let line = s.wait_stdout(|l| l.ends_with(&format!(" {id}")));
            let caps =
                line_re.captures(&line).unwrap_or_else(|| panic!("not upstreaminfo: {line}"));
            let addrs: Vec<&str> = caps["addr"].split(", ").collect();
            let statuses: Vec<&str> = caps["status"].split(", ").collect();
            let lens: Vec<&str> = caps["len"].split(", ").collect();
            assert_eq!(addrs.len(), statuses.len(), "{line}");
            assert_eq!(addrs.len(), lens.len(), "{line}");
            assert_eq!(addrs.len(), caps["time"].split(", ").count(), "{line}");
            let (last, before) = addrs.split_last().unwrap();
            assert_eq!(*last, live.to_string(), "{line}");
            assert_eq!(statuses.last(), Some(&"200"), "{line}");
            for (a, st) in before.iter().zip(&statuses) {
                assert!(dead.iter().any(|d| d.to_string() == *a), "{a} is not dead: {line}");
                assert_eq!(*st, "502", "{line}");
            }
            assert!(lens[..lens.len() - 1].iter().all(|l| *l == "0"), "{line}");
            counts.push(addrs.len());
        }
        counts.sort_unstable();
        assert_eq!(counts, [1, 2, 3], "{way:?}: one request per first endpoint");
    }
}

/// `proxy-next-upstream: error timeout http_502` (and the other `http_xxx`): an upstream's
/// 502 is dropped for the next endpoint, on both paths; without `http_502` it reaches the
/// client; a POST that reached the upstream is retried only with `non_idempotent`, and with
/// `proxy-request-buffering: off` a streamed body is never sent twice.
#[tokio::test(flavor = "multi_thread")]
async fn http_statuses_listed_are_retried_on_the_next_endpoint() {
    let good = echo("good").await;
    let bad = fixed("bad", 502).await;
    let unavailable = fixed("unavailable", 503).await;
    let on_502 = (NEXT_UPSTREAM, "error timeout http_502");
    let m = pools(&[
        Pool { name: "retry", endpoints: &[bad, good], annotations: &[on_502] },
        Pool { name: "plain", endpoints: &[bad, good], annotations: &[] },
        Pool {
            name: "post",
            endpoints: &[bad, good],
            annotations: &[(NEXT_UPSTREAM, "error timeout http_502 non_idempotent")],
        },
        Pool {
            name: "stream",
            endpoints: &[bad, good],
            annotations: &[
                (NEXT_UPSTREAM, "error timeout http_502 non_idempotent"),
                (BUFFERING, "off"),
            ],
        },
        Pool {
            name: "on503",
            endpoints: &[unavailable, good],
            annotations: &[(NEXT_UPSTREAM, "http_503")],
        },
    ]);
    let s = Sluice::start(m.path(), &["--log-format", "json"]);
    let c = Clients::new(&s);

    // Retried: every GET ends at the good endpoint; the one that started at the bad one
    // lists both attempts.
    for way in WAYS {
        let mut lists = Vec::new();
        for i in 0..2 {
            let id = format!("retry-{way:?}-{i}");
            let r = c.get(way, "retry.example.com", "/", &id).await;
            assert_eq!((r.status.as_u16(), r.backend()), (200, "good".into()), "{way:?}");
            lists.push(attempts(&s, &id));
        }
        lists.sort();
        let mut want = vec![vec![pair(bad, 502), pair(good, 200)], vec![pair(good, 200)]];
        want.sort();
        assert_eq!(lists, want, "{way:?}");
    }

    // Not listed (the default `error timeout`): the 502 reaches the client, once per cycle.
    for way in WAYS {
        let mut got = Vec::new();
        for i in 0..2 {
            let r = c.get(way, "plain.example.com", "/", &format!("plain-{way:?}-{i}")).await;
            got.push((r.status.as_u16(), r.backend()));
        }
        got.sort();
        assert_eq!(got, [(200, "good".into()), (502, "bad".into())], "{way:?}");
    }

    // POST: not retried after it was sent, without `non_idempotent`...
    for way in WAYS {
        let mut got = Vec::new();
        for i in 0..2 {
            let id = format!("retry-post-{way:?}-{i}");
            let r = c.send(way, "POST", "retry.example.com", "/form", &id, b"a=1").await;
            got.push((r.status.as_u16(), r.backend()));
        }
        got.sort();
        let want = [(200, "good".into()), (502, "bad".into())];
        assert_eq!(got, want, "{way:?}: POST without non_idempotent");
    }
    // ...retried with it, its (buffered) body sent again whole...
    for way in WAYS {
        for i in 0..2 {
            let id = format!("post-{way:?}-{i}");
            let r = c.send(way, "POST", "post.example.com", "/form", &id, b"a=1").await;
            let served = (r.status.as_u16(), r.backend());
            assert_eq!(served, (200, "good".into()), "{way:?}: non_idempotent");
            assert_eq!(r.json()["body_bytes"], 3);
        }
    }
    // ...but never when the body was streamed (`proxy-request-buffering: off`).
    let mut got = Vec::new();
    for i in 0..2 {
        let r = streamed_post(&s, "stream.example.com", &format!("stream-{i}")).await;
        got.push((r.status.as_u16(), r.backend()));
        if r.status == 200 {
            assert_eq!(r.json()["body_bytes"], 18, "the whole streamed body");
        }
    }
    got.sort();
    assert_eq!(got, [(200, "good".into()), (502, "bad".into())], "a streamed body is sent once");

    // Another status: `http_503`.
    for way in WAYS {
        for i in 0..2 {
            let r = c.get(way, "on503.example.com", "/", &format!("on503-{way:?}-{i}")).await;
            assert_eq!((r.status.as_u16(), r.backend()), (200, "good".into()), "{way:?}");
        }
    }
}

/// `proxy-next-upstream: off`: one attempt, whatever fails (NGINX's `proxy_next_upstream
/// off`), on both paths: round robin lands on the dead endpoint every other request.
#[tokio::test(flavor = "multi_thread")]
async fn off_never_tries_another_endpoint() {
    let live = echo("live").await;
    let dead = unused_addr();
    let m = manifests(&[
        ("svc.yaml", service("pool", &[dead, live])),
        ("ing.yaml", route("web", "off.example.com", "pool", &[(NEXT_UPSTREAM, "off")])),
    ]);
    let s = Sluice::start(m.path(), &["--log-format", "json"]);
    let c = Clients::new(&s);
    for way in WAYS {
        let mut got = Vec::new();
        for i in 0..2 {
            let id = format!("off-{way:?}-{i}");
            let r = c.get(way, "off.example.com", "/", &id).await;
            let list = attempts(&s, &id);
            assert_eq!(list.len(), 1, "{way:?}: one attempt: {list:?}");
            got.push((r.status.as_u16(), list[0].clone()));
        }
        got.sort();
        assert_eq!(got, [(200, pair(live, 200)), (502, pair(dead, 502))], "{way:?}");
    }
}

/// NGINX retries a request that reached an upstream which then failed (`error`: the
/// connection closed before a response) only when it is safe: GET yes, POST only with
/// `non_idempotent`; a POST whose connect failed (nothing sent) is always retried; with
/// `proxy-request-buffering: off` the streamed body is never sent again.
#[tokio::test(flavor = "multi_thread")]
async fn a_sent_post_is_retried_only_with_non_idempotent() {
    let live = echo("live").await;
    let broken = closer().await;
    let non_idempotent = (NEXT_UPSTREAM, "error timeout non_idempotent");
    let m = pools(&[
        Pool { name: "plain", endpoints: &[broken, live], annotations: &[] },
        Pool { name: "ni", endpoints: &[broken, live], annotations: &[non_idempotent] },
        Pool {
            name: "stream",
            endpoints: &[broken, live],
            annotations: &[non_idempotent, (BUFFERING, "off")],
        },
        Pool { name: "refused", endpoints: &[unused_addr(), live], annotations: &[] },
    ]);
    let s = Sluice::start(m.path(), &["--log-format", "json"]);
    let c = Clients::new(&s);

    // GET: sent, failed, retried, on both paths.
    for way in WAYS {
        for i in 0..2 {
            let id = format!("get-{way:?}-{i}");
            let r = c.get(way, "plain.example.com", "/", &id).await;
            assert_eq!((r.status.as_u16(), r.backend()), (200, "live".into()), "{way:?}");
        }
    }
    // POST: the attempt that reached the closing endpoint is the last, on both paths.
    for way in WAYS {
        let mut got = Vec::new();
        for i in 0..2 {
            let id = format!("post-{way:?}-{i}");
            let r = c.send(way, "POST", "plain.example.com", "/", &id, b"payload").await;
            got.push((r.status.as_u16(), attempts(&s, &id)));
        }
        got.sort();
        assert_eq!(
            got,
            [(200, vec![pair(live, 200)]), (502, vec![pair(broken, 502)])],
            "{way:?}: a sent POST is not retried without non_idempotent"
        );
    }
    // With `non_idempotent`: retried, on both paths (h2c POST too).
    for i in 0..2 {
        let r = c.post("ni.example.com", "/", &format!("ni-{i}"), b"payload").await;
        assert_eq!((r.status.as_u16(), r.backend()), (200, "live".into()), "non_idempotent");
        assert_eq!(r.json()["body_bytes"], 7);
        let r = h2c(s.http, "POST", "ni.example.com", "/", &format!("ni-h2-{i}"), b"payload").await;
        assert_eq!((r.status.as_u16(), r.backend()), (200, "live".into()), "non_idempotent, h2c");
    }
    // A streamed body cannot be sent again, `non_idempotent` or not.
    let mut got = Vec::new();
    for i in 0..2 {
        let r = streamed_post(&s, "stream.example.com", &format!("stream-{i}")).await;
        got.push(r.status.as_u16());
    }
    got.sort();
    assert_eq!(got, [200, 502], "a streamed body is sent once");
    // A POST whose connection was refused was never sent: retried, on both paths.
    for way in WAYS {
        for i in 0..2 {
            let id = format!("refused-{way:?}-{i}");
            let r = c.send(way, "POST", "refused.example.com", "/", &id, b"payload").await;
            let served = (r.status.as_u16(), r.backend());
            assert_eq!(served, (200, "live".into()), "{way:?}: nothing was sent");
            assert_eq!(r.json()["body_bytes"], 7);
        }
    }
}

/// `proxy-next-upstream-tries: 2`: at most two attempts in all (NGINX's
/// `proxy_next_upstream_tries`), on both paths; the request that meets two dead endpoints in a
/// row fails with 502 and its log line lists both.
#[tokio::test(flavor = "multi_thread")]
async fn tries_limit_the_attempts() {
    let live = echo("live").await;
    let dead = [unused_addr(), unused_addr()];
    let m = manifests(&[
        ("svc.yaml", service("pool", &[dead[0], dead[1], live])),
        ("ing.yaml", route("web", "tries.example.com", "pool", &[(TRIES, "2")])),
    ]);
    let s = Sluice::start(m.path(), &["--log-format", "json"]);
    let c = Clients::new(&s);
    for way in WAYS {
        let mut failed = Vec::new();
        let mut ok = 0;
        for i in 0..3 {
            let id = format!("tries-{way:?}-{i}");
            let r = c.get(way, "tries.example.com", "/", &id).await;
            let list = attempts(&s, &id);
            assert!(list.len() <= 2, "{way:?}: more than two attempts: {list:?}");
            match r.status.as_u16() {
                200 => ok += 1,
                502 => failed.push(list),
                other => panic!("{way:?}: {other}: {}", text(&r)),
            }
        }
        assert_eq!(ok, 2, "{way:?}");
        assert_eq!(failed.len(), 1, "{way:?}");
        let mut want = vec![pair(dead[0], 502), pair(dead[1], 502)];
        let mut list = failed.pop().unwrap();
        want.sort();
        list.sort();
        assert_eq!(list, want, "{way:?}: both dead endpoints, then no third attempt");
    }
}

/// `proxy-next-upstream-timeout: 1`: once a second has passed since the first attempt, no
/// other starts (NGINX's `proxy_next_upstream_timeout`): an endpoint that times out after the
/// 1 s read timeout ends the request with 504, where without the limit the next endpoint
/// answers. Both paths.
#[tokio::test(flavor = "multi_thread")]
async fn next_upstream_timeout_stops_the_retries() {
    let live = echo("live").await;
    let hole = silent().await;
    let m = manifests(&[
        (
            "svc.yaml",
            [service("limited", &[hole, live]), service("control", &[hole, live])].join("---\n"),
        ),
        (
            "limited.yaml",
            route(
                "limited",
                "limited.example.com",
                "limited",
                &[(READ_TIMEOUT, "1"), (NEXT_TIMEOUT, "1")],
            ),
        ),
        (
            "control.yaml",
            route("control", "control.example.com", "control", &[(READ_TIMEOUT, "1")]),
        ),
    ]);
    let s = Sluice::start(m.path(), &["--log-format", "json"]);
    let c = Clients::new(&s);
    for way in WAYS {
        let mut got = Vec::new();
        for i in 0..2 {
            let id = format!("limited-{way:?}-{i}");
            let started = Instant::now();
            let r = c.get(way, "limited.example.com", "/", &id).await;
            let took = started.elapsed();
            if r.status == 504 {
                assert!(took >= Duration::from_millis(900), "{way:?}: 504 after {took:?}");
                assert!(took < Duration::from_millis(1900), "{way:?}: a second try? {took:?}");
            }
            got.push((r.status.as_u16(), attempts(&s, &id)));
        }
        got.sort();
        assert_eq!(got, [(200, vec![pair(live, 200)]), (504, vec![pair(hole, 504)])], "{way:?}");
    }
    // Without the limit, the timed-out attempt goes on to the next endpoint.
    for i in 0..2 {
        let id = format!("control-{i}");
        let r = c.get(Way::KeepAlive, "control.example.com", "/", &id).await;
        assert_eq!((r.status.as_u16(), r.backend()), (200, "live".into()), "{}", text(&r));
    }
}

// Mirrors.

/// `mirror-target` with `$request_uri` (ingress-nginx's `mirror` to a location proxying to
/// the target): the mirror gets the request's method, path, headers and body, with the
/// target's host name as `Host` (without its port: ingress-nginx's `url.Hostname()`); the
/// client gets the main backend's answer, not the mirror's. A plain keep-alive GET is copied
/// too.
#[tokio::test(flavor = "multi_thread")]
async fn mirror_target_gets_a_copy_and_the_client_the_main_answer() {
    let app = echo("app").await;
    let (mirror_addr, mut copies) = mirror(503).await;
    let target = format!("http://{mirror_addr}$request_uri");
    let prefixed = format!("http://{mirror_addr}/copy$request_uri");
    let m = manifests(&[
        ("svc.yaml", service("app", &[app])),
        ("m.yaml", route("mirrored", "m.example.com", "app", &[(MIRROR_TARGET, &target)])),
        ("p.yaml", route("prefixed", "p.example.com", "app", &[(MIRROR_TARGET, &prefixed)])),
    ]);
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new(&s);

    let r = c.post("m.example.com", "/submit?x=1", "m-post", b"hello mirror").await;
    assert_eq!((r.status.as_u16(), r.backend()), (200, "app".into()), "the main answer");
    assert_eq!(r.json()["body_bytes"], 12);
    let copy = next(&mut copies).await;
    assert_eq!((copy.method.as_str(), copy.uri.as_str()), ("POST", "/submit?x=1"));
    assert_eq!(copy.header("host"), "127.0.0.1", "the target's host name, without its port");
    assert_eq!(&copy.body[..], b"hello mirror", "mirror-request-body is on by default");
    assert_eq!(copy.header("x-request-id"), "m-post", "the client's headers");
    assert_eq!(copy.header("x-real-ip"), "", "the forwarding headers are the main request's");

    for way in WAYS {
        let r = c.get(way, "m.example.com", "/get?y=2", &format!("m-{way:?}")).await;
        assert_eq!((r.status.as_u16(), r.backend()), (200, "app".into()), "{way:?}");
        let copy = next(&mut copies).await;
        assert_eq!((copy.method.as_str(), copy.uri.as_str()), ("GET", "/get?y=2"), "{way:?}");
        assert!(copy.body.is_empty(), "{way:?}");
    }

    let r = c.get(Way::KeepAlive, "p.example.com", "/a/b?c=d", "p-get").await;
    assert_eq!(r.status, 200);
    let copy = next(&mut copies).await;
    assert_eq!(copy.uri, "/copy/a/b?c=d", "the target's path, then $request_uri");
}

/// `mirror-host` sets the copy's `Host`; `mirror-request-body: off` sends the copy without
/// the body (NGINX's `mirror_request_body off`), while the main backend gets it whole.
#[tokio::test(flavor = "multi_thread")]
async fn mirror_host_and_mirror_request_body_off() {
    let app = echo("app").await;
    let (mirror_addr, mut copies) = mirror(200).await;
    let target = format!("http://{mirror_addr}$request_uri");
    let m = manifests(&[
        ("svc.yaml", service("app", &[app])),
        (
            "h.yaml",
            route(
                "hosted",
                "h.example.com",
                "app",
                &[
                    (MIRROR_TARGET, &target),
                    (MIRROR_HOST, "mirror.example.com"),
                    (MIRROR_BODY, "off"),
                ],
            ),
        ),
    ]);
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new(&s);
    let r = c.post("h.example.com", "/up", "h-post", b"not for the mirror").await;
    assert_eq!((r.status.as_u16(), r.backend()), (200, "app".into()));
    assert_eq!(r.json()["body_bytes"], 18, "the main backend gets the body");
    let copy = next(&mut copies).await;
    assert_eq!((copy.method.as_str(), copy.uri.as_str()), ("POST", "/up"));
    assert_eq!(copy.header("host"), "mirror.example.com");
    assert!(copy.body.is_empty(), "mirror-request-body off: {:?}", copy.body);
}

/// NGINX's `mirror_request_body on` reads the whole request body before the copy and the
/// main request start, whatever `proxy_request_buffering` says: with
/// `proxy-request-buffering: off`, a streamed (chunked) body still reaches the mirror whole,
/// and the main backend too.
#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_body_is_mirrored_without_request_buffering() {
    let app = echo("app").await;
    let (mirror_addr, mut copies) = mirror(200).await;
    let target = format!("http://{mirror_addr}$request_uri");
    let m = manifests(&[
        ("svc.yaml", service("app", &[app])),
        (
            "u.yaml",
            route(
                "unbuffered",
                "u.example.com",
                "app",
                &[(MIRROR_TARGET, &target), (BUFFERING, "off")],
            ),
        ),
    ]);
    let s = Sluice::start(m.path(), &[]);
    let r = streamed_post(&s, "u.example.com", "u-post").await;
    assert_eq!((r.status.as_u16(), r.backend()), (200, "app".into()), "{}", text(&r));
    assert_eq!(r.json()["body_bytes"], 18, "the main backend gets the whole body");
    let copy = next(&mut copies).await;
    assert_eq!((copy.method.as_str(), copy.uri.as_str()), ("POST", "/upload"));
    assert_eq!(&copy.body[..], b"part one, part two", "the mirror gets the whole body");
}

/// Sluice's documented departure from NGINX (whose `mirror` holds the main request until the
/// mirror answers): a mirror that accepts and never answers, or refuses connections, delays
/// no request and fails none. The hanging mirror is shown to hold every copy while the main
/// requests complete.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_or_unreachable_mirror_never_delays_the_main_request() {
    let app = echo("app").await;
    let (hang, mut arrived) = hanging_mirror().await;
    let hang_target = format!("http://{hang}$request_uri");
    let gone_target = format!("http://{}$request_uri", unused_addr());
    let m = manifests(&[
        ("svc.yaml", service("app", &[app])),
        ("hang.yaml", route("hang", "hang.example.com", "app", &[(MIRROR_TARGET, &hang_target)])),
        ("gone.yaml", route("gone", "gone.example.com", "app", &[(MIRROR_TARGET, &gone_target)])),
    ]);
    let s = Sluice::start(m.path(), &[]);
    let c = Clients::new(&s);
    let bound = Duration::from_secs(2);
    for i in 0..4 {
        let started = Instant::now();
        let r = if i % 2 == 0 {
            c.get(Way::KeepAlive, "hang.example.com", &format!("/h{i}"), &format!("hang-{i}")).await
        } else {
            c.post("hang.example.com", &format!("/h{i}"), &format!("hang-{i}"), b"body").await
        };
        let took = started.elapsed();
        assert_eq!((r.status.as_u16(), r.backend()), (200, "app".into()), "request {i}");
        assert!(took < bound, "request {i} waited {took:?} for a hanging mirror");
        let line = next(&mut arrived).await;
        assert!(line.contains(&format!("/h{i} HTTP/1.1")), "the copy of {i}: {line}");
    }
    for way in WAYS {
        for i in 0..2 {
            let started = Instant::now();
            let r = c.get(way, "gone.example.com", "/", &format!("gone-{way:?}-{i}")).await;
            let took = started.elapsed();
            assert_eq!((r.status.as_u16(), r.backend()), (200, "app".into()), "{way:?}");
            assert!(took < bound, "{way:?}: waited {took:?} for an unreachable mirror");
        }
    }
    // The unreachable mirror's copies failed, and were counted so.
    wait_metric(&s, &["sluice_mirror_requests_total{", "outcome=\"failed\"", "} 4"]).await;
}

/// A keep-alive connection whose first request the fast path carried, then a GET to a
/// mirrored route (the general path's): the copy is sent, and the connection goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_keep_alive_connection_mirrors_after_a_fast_path_request() {
    let app = echo("app").await;
    let (mirror_addr, mut copies) = mirror(200).await;
    let target = format!("http://{mirror_addr}$request_uri");
    let m = manifests(&[
        ("svc.yaml", service("app", &[app])),
        ("fast.yaml", route("fast", "fast.example.com", "app", &[])),
        ("m.yaml", route("mirrored", "m.example.com", "app", &[(MIRROR_TARGET, &target)])),
    ]);
    let s = Sluice::start(m.path(), &[]);
    let mut conn = tokio::net::TcpStream::connect(s.http).await.unwrap();
    let (status, _, body) =
        exchange(&mut conn, "GET /one HTTP/1.1\r\nHost: fast.example.com\r\n\r\n").await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200);
    assert!(body.contains("\"name\":\"app\""), "{body}");
    let (status, _, body) =
        exchange(&mut conn, "GET /two?k=v HTTP/1.1\r\nHost: m.example.com\r\n\r\n").await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200);
    assert!(body.contains("\"name\":\"app\""), "the main answer: {body}");
    let copy = next(&mut copies).await;
    assert_eq!((copy.method.as_str(), copy.uri.as_str()), ("GET", "/two?k=v"));
    let (status, ..) =
        exchange(&mut conn, "GET /three HTTP/1.1\r\nHost: fast.example.com\r\n\r\n").await;
    assert_eq!(status, 200);
    assert!(copies.try_recv().is_err(), "requests to the plain route are not copied");
}

// The access log.

/// `enable-access-log: "false"` (NGINX's `access_log off` in the Ingress's locations): no
/// line for that Ingress's requests, on either path, while other Ingresses log and the
/// request metrics still count them.
#[tokio::test(flavor = "multi_thread")]
async fn enable_access_log_false_drops_the_lines_but_not_the_metrics() {
    let app = echo("app").await;
    let m = manifests(&[
        ("svc.yaml", service("app", &[app])),
        ("quiet.yaml", route("quiet", "quiet.example.com", "app", &[(ACCESS_LOG, "false")])),
        ("loud.yaml", route("loud", "loud.example.com", "app", &[])),
    ]);
    // One worker: its lines leave in the order of its requests.
    let s = Sluice::start_workers(m.path(), 1, &[]);
    let c = Clients::new(&s);
    for (name, host) in [("quiet", "quiet.example.com"), ("loud", "loud.example.com")] {
        for way in WAYS {
            let r = c.get(way, host, "/", &format!("{name}-{way:?}")).await;
            assert_eq!(r.status, 200);
        }
        let r = c.post(host, "/", &format!("{name}-post"), b"x").await;
        assert_eq!(r.status, 200);
    }
    for id in ["loud-KeepAlive", "loud-H2c", "loud-post"] {
        s.wait_stdout(|l| l.ends_with(&format!(" {id}")));
    }
    let quiet: Vec<String> = s.stdout().into_iter().filter(|l| l.contains("quiet-")).collect();
    assert!(quiet.is_empty(), "lines for a quiet Ingress: {quiet:?}");
    let get = wait_metric(
        &s,
        &["nginx_ingress_controller_requests{", "ingress=\"quiet\"", "method=\"GET\"", "} 2"],
    )
    .await;
    assert!(get.contains("status=\"200\""), "{get}");
    wait_metric(
        &s,
        &["nginx_ingress_controller_requests{", "ingress=\"quiet\"", "method=\"POST\"", "} 1"],
    )
    .await;
}

/// ConfigMap `disable-access-log: "true"` (NGINX's `access_log off` at the http level): no
/// line at all, even for an Ingress asking for one, on either path; metrics still count.
#[tokio::test(flavor = "multi_thread")]
async fn configmap_disable_access_log_drops_every_line() {
    let app = echo("app").await;
    let m = manifests(&[
        ("cm.yaml", configmap(&[("disable-access-log", "true")])),
        ("svc.yaml", service("app", &[app])),
        ("ing.yaml", route("web", "web.example.com", "app", &[(ACCESS_LOG, "true")])),
    ]);
    let s = Sluice::start_workers(m.path(), 1, &["--configmap", "default/sluice-config"]);
    let c = Clients::new(&s);
    for way in WAYS {
        assert_eq!(c.get(way, "web.example.com", "/", &format!("off-{way:?}")).await.status, 200);
    }
    assert_eq!(c.post("web.example.com", "/", "off-post", b"x").await.status, 200);
    assert_eq!(c.get(Way::KeepAlive, "nowhere.example.com", "/", "off-404").await.status, 404);
    wait_metric(
        &s,
        &["nginx_ingress_controller_requests{", "ingress=\"web\"", "method=\"GET\"", "} 2"],
    )
    .await;
    // Metrics are published after the access log is flushed, on the same tick: a line
    // would be out by now. A bounded wait past the next flush, to be sure.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let lines: Vec<String> = s.stdout().into_iter().filter(|l| l.contains("off-")).collect();
    assert!(lines.is_empty(), "access log lines with disable-access-log: {lines:?}");
}

/// ConfigMap `skip-access-log-urls` (ingress-nginx's `map $request_uri $loggable`): a request
/// whose URI (path and query) is listed writes no line, whatever its method or path; other
/// URIs, even ones that start the same, are logged.
#[tokio::test(flavor = "multi_thread")]
async fn skip_access_log_urls_skips_exactly_the_listed_uris() {
    let app = echo("app").await;
    let m = manifests(&[
        ("cm.yaml", configmap(&[("skip-access-log-urls", "/healthz, /ping?x=1")])),
        ("svc.yaml", service("app", &[app])),
        ("ing.yaml", route("web", "web.example.com", "app", &[])),
    ]);
    let s = Sluice::start_workers(m.path(), 1, &["--configmap", "default/sluice-config"]);
    let c = Clients::new(&s);
    let host = "web.example.com";
    let skipped = [
        (Way::KeepAlive, "/healthz", "skip-1"),
        (Way::H2c, "/healthz", "skip-2"),
        (Way::KeepAlive, "/ping?x=1", "skip-3"),
    ];
    let logged = [
        (Way::KeepAlive, "/healthz?probe=1", "log-1"),
        (Way::H2c, "/healthz/deep", "log-2"),
        (Way::KeepAlive, "/ping", "log-3"),
        (Way::KeepAlive, "/ping?x=2", "log-4"),
    ];
    for (way, path, id) in skipped.iter().chain(&logged) {
        assert_eq!(c.get(*way, host, path, id).await.status, 200, "{path}");
    }
    assert_eq!(c.post(host, "/healthz", "skip-post", b"x").await.status, 200);
    assert_eq!(c.post(host, "/other", "log-post", b"x").await.status, 200);
    for id in logged.iter().map(|l| l.2).chain(["log-post"]) {
        s.wait_stdout(|l| l.ends_with(&format!(" {id}")));
    }
    let lines: Vec<String> = s.stdout().into_iter().filter(|l| l.contains(" skip-")).collect();
    assert!(lines.is_empty(), "listed URIs were logged: {lines:?}");
}

/// NGINX's `map` matches strings ignoring case ("Strings are matched ignoring the case",
/// ngx_http_map_module), so `skip-access-log-urls: /healthz` also skips `/HEALTHZ`.
#[tokio::test(flavor = "multi_thread")]
async fn skip_access_log_urls_ignore_case_as_nginx_map() {
    let app = echo("app").await;
    let m = manifests(&[
        ("cm.yaml", configmap(&[("skip-access-log-urls", "/healthz")])),
        ("svc.yaml", service("app", &[app])),
        ("ing.yaml", route("web", "web.example.com", "app", &[])),
    ]);
    let s = Sluice::start_workers(m.path(), 1, &["--configmap", "default/sluice-config"]);
    let c = Clients::new(&s);
    let host = "web.example.com";
    assert_eq!(c.get(Way::KeepAlive, host, "/HealthZ", "skip-case").await.status, 200);
    assert_eq!(c.get(Way::KeepAlive, host, "/after", "log-after").await.status, 200);
    s.wait_stdout(|l| l.ends_with(" log-after"));
    let lines: Vec<String> = s.stdout().into_iter().filter(|l| l.contains("skip-case")).collect();
    assert!(lines.is_empty(), "/HealthZ was logged: {lines:?}");
}
