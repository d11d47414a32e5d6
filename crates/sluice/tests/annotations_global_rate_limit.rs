//! `global-rate-limit` end to end: two Sluice processes (two replicas) counting together in a
//! real memcached (Debian's `memcached`, started by the test), the key and ignored ranges,
//! what happens when memcached goes away (requests let through, logged), and settings that
//! cannot be applied (503). ingress-nginx had these until v1.12 (its e2e
//! `annotations/globalratelimit.go` and `settings/globalratelimit.go` checked the rendered
//! configuration only); the counting follows lua-resty-global-throttle.
//!
//! The windows are an hour long, so that no test straddles two windows in practice.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use common::*;

const LIMIT: &str = "nginx.ingress.kubernetes.io/global-rate-limit";
const WINDOW: &str = "nginx.ingress.kubernetes.io/global-rate-limit-window";
const KEY: &str = "nginx.ingress.kubernetes.io/global-rate-limit-key";
const IGNORED: &str = "nginx.ingress.kubernetes.io/global-rate-limit-ignored-cidrs";

/// A memcached on a free loopback port, stopped on drop.
struct Memcached {
    child: Child,
    addr: SocketAddr,
}

impl Memcached {
    async fn start() -> Memcached {
        let addr = unused_addr();
        let mut cmd = Command::new("memcached");
        cmd.args(["-l", "127.0.0.1", "-p", &addr.port().to_string(), "-U", "0", "-m", "16"]);
        // memcached refuses to run as root unless told which user to be.
        if users_root() {
            cmd.args(["-u", "root"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("memcached runs (Debian: apt-get install memcached; .ci/run installs it)");
        let deadline = std::time::Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "memcached did not listen on {addr}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Memcached { child, addr }
    }
}

/// Whether this process runs as root (memcached then needs `-u root`).
fn users_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An Ingress: name, host, annotations.
type Ing<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// Manifests: the echo backend `app`, the Ingresses `(name, host, annotations)` on `/`, and
/// the controller's ConfigMap naming `memcached` (when given).
async fn manifests(ingresses: &[Ing<'_>], memcached: Option<SocketAddr>) -> Manifests {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[echo("app").await]));
    for (name, host, annotations) in ingresses {
        m.write(
            &format!("ing-{name}.yaml"),
            &ingress(name, host, &[("/", "Prefix", "app")], annotations),
        );
    }
    let data = match memcached {
        Some(a) => format!(
            "\n  global-rate-limit-memcached-host: \"{}\"\n  global-rate-limit-memcached-port: \"{}\"\n",
            a.ip(),
            a.port()
        ),
        None => " {}\n".to_string(),
    };
    m.write(
        "config.yaml",
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sluice-config\n  namespace: default\ndata:{data}"),
    );
    m
}

fn start(m: &Manifests) -> Sluice {
    Sluice::start(m.path(), &["--configmap", "default/sluice-config"])
}

async fn status(s: &Sluice, host: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = request("GET", &s.url("/"), Some(host), bytes::Bytes::new());
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    send(&client(), req).await.status.as_u16()
}

// Two replicas share the count: 3 requests an hour for the client, spread over both, and the
// fourth is refused (429, `global-rate-limit-status-code`'s default) by either of them. A
// refused request is not counted; another key has its own count.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_count_together_in_memcached() {
    let mc = Memcached::start().await;
    let limited: &[(&str, &str)] = &[(LIMIT, "3"), (WINDOW, "1h"), (KEY, "$http_x_api_client")];
    let m = manifests(&[("web", "web.example", limited)], Some(mc.addr)).await;
    let (a, b) = (start(&m), start(&m));
    let alice = [("x-api-client", "alice")];
    let got = [
        status(&a, "web.example", &alice).await,
        status(&b, "web.example", &alice).await,
        status(&a, "web.example", &alice).await,
        status(&b, "web.example", &alice).await,
        status(&a, "web.example", &alice).await,
    ];
    assert_eq!(got, [200, 200, 200, 429, 429]);
    let bob = [("x-api-client", "bob")];
    assert_eq!(status(&b, "web.example", &bob).await, 200, "another key, another count");
}

// `global-rate-limit-ignored-cidrs` exempts the client; the default key is the client
// address; a window under a second disables the limit, as in ingress-nginx.
#[tokio::test(flavor = "multi_thread")]
async fn ignored_ranges_and_short_windows_are_not_limited() {
    let mc = Memcached::start().await;
    let ingresses: &[Ing<'_>] = &[
        ("ignored", "ignored.example", &[(LIMIT, "1"), (WINDOW, "1h"), (IGNORED, "127.0.0.1/32")]),
        ("short", "short.example", &[(LIMIT, "1"), (WINDOW, "500ms")]),
        ("by-address", "address.example", &[(LIMIT, "1"), (WINDOW, "1h")]),
    ];
    let m = manifests(ingresses, Some(mc.addr)).await;
    let s = start(&m);
    for _ in 0..3 {
        assert_eq!(status(&s, "ignored.example", &[]).await, 200);
        assert_eq!(status(&s, "short.example", &[]).await, 200);
    }
    assert_eq!(status(&s, "address.example", &[]).await, 200);
    assert_eq!(status(&s, "address.example", &[]).await, 429, "one an hour per address");
}

// memcached gone: the request is let through (the limit protects capacity; refusing every
// request would make memcached's outage everyone's), and the failure is logged.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_memcached_lets_requests_through_and_says_so() {
    let mc = Memcached::start().await;
    let addr = mc.addr;
    drop(mc);
    let limited: &[(&str, &str)] = &[(LIMIT, "1"), (WINDOW, "1h")];
    let m = manifests(&[("web", "web.example", limited)], Some(addr)).await;
    let s = start(&m);
    for _ in 0..3 {
        assert_eq!(status(&s, "web.example", &[]).await, 200);
    }
    s.wait_stderr(|l| l.contains("global-rate-limit: memcached failed"));
}

// Settings that cannot be applied make the Ingress's routes answer 503 with a diagnostic:
// the annotations without `global-rate-limit-memcached-host` (ingress-nginx refused such
// Ingresses), a window that is not a duration, an invalid ignored range.
#[tokio::test(flavor = "multi_thread")]
async fn settings_that_cannot_be_applied_fail_closed() {
    let no_host: &[Ing<'_>] = &[("web", "web.example", &[(LIMIT, "5"), (WINDOW, "1m")])];
    let m = manifests(no_host, None).await;
    let s = start(&m);
    assert_eq!(status(&s, "web.example", &[]).await, 503);
    let diagnostics = s.config().await["diagnostics"].to_string();
    assert!(diagnostics.contains("global-rate-limit-memcached-host"), "{diagnostics}");

    let mc = Memcached::start().await;
    let broken: &[Ing<'_>] = &[
        ("window", "window.example", &[(LIMIT, "5"), (WINDOW, "a minute")]),
        ("cidrs", "cidrs.example", &[(LIMIT, "5"), (WINDOW, "1m"), (IGNORED, "10.0.0.0/8,")]),
        ("fine", "fine.example", &[(LIMIT, "5"), (WINDOW, "1m")]),
    ];
    let m = manifests(broken, Some(mc.addr)).await;
    let s = start(&m);
    assert_eq!(status(&s, "window.example", &[]).await, 503);
    assert_eq!(status(&s, "cidrs.example", &[]).await, 503);
    assert_eq!(status(&s, "fine.example", &[]).await, 200, "one Ingress's mistake stays its own");
    let diagnostics = s.config().await["diagnostics"].to_string();
    for needle in ["global-rate-limit-window", "global-rate-limit-ignored-cidrs"] {
        assert!(diagnostics.contains(needle), "{needle}: {diagnostics}");
    }
}
