//! The commands other tools and people depend on: `check`, `echo`, `quickstart`, and the
//! flag names shared with ingress-nginx.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn check_prints_the_quickstart_table_and_succeeds() {
    let dir = repo().join("examples/quickstart");
    // As the quickstart runs it: gamma is passed through.
    let out = sluice().arg("check").arg(&dir).arg("--enable-ssl-passthrough").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let alpha = text.lines().find(|l| l.contains("/alpha")).unwrap_or_else(|| panic!("{text}"));
    let cols: Vec<_> = alpha.split_whitespace().collect();
    assert_eq!(
        cols,
        ["public.example.com", "/alpha", "Prefix", "default-alpha-80", "127.0.0.1:18081"]
    );
    assert!(text.contains("gamma.public.example.com"), "{text}");
    assert!(text.contains("0 errors, 0 warnings"), "{text}");

    // Without the flag, the passthrough annotation cannot be honoured: said, not an error.
    let out = sluice().arg("check").arg(&dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ssl-passthrough needs --enable-ssl-passthrough"), "{text}");
    assert!(text.contains("0 errors, 1 warnings"), "{text}");
}

#[test]
fn check_fails_and_explains_when_objects_are_rejected() {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write(
        "ing.yaml",
        &ingress(
            "web",
            "web.example.com",
            &[("/", "Prefix", "missing")],
            &[("nginx.ingress.kubernetes.io/server-snippet", "deny all;")],
        ),
    );
    m.write("broken.yaml", "kind: [\n");
    let out = sluice().arg("check").arg(m.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "error: Ingress default/web [MissingService]: Service default/missing does not exist"
        ),
        "{text}"
    );
    assert!(text.contains("[SnippetRefused]"), "{text}");
    assert!(text.contains("broken.yaml:1"), "{text}");
    assert!(text.contains("answers 503"), "the route is shown failing closed: {text}");

    let out = sluice().arg("check").arg("--json").arg(m.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reasons: Vec<_> = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"MissingService") && reasons.contains(&"SnippetRefused"),
        "{reasons:?}"
    );
    assert_eq!(v["source_errors"].as_array().unwrap().len(), 1);
}

#[test]
fn check_warnings_alone_do_not_fail() {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service_with("web", &[], &["127.0.0.1:9".parse().unwrap()]));
    m.write("ing.yaml", &ingress("web", "web.example.com", &[("/", "Prefix", "web")], &[]));
    let out = sluice().arg("check").arg(m.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("[NoReadyEndpoints]") && text.contains("(none ready: 503)"), "{text}");
}

#[test]
fn check_of_a_missing_directory_exits_2() {
    let out = sluice().args(["check", "/nonexistent/sluice-check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot read manifests from /nonexistent/sluice-check")
    );
}

#[test]
fn serve_without_manifests_or_cluster_says_what_to_do() {
    // No --manifests: the Kubernetes API, which is nowhere to be found here.
    let home = tempfile::tempdir().unwrap();
    let out = sluice()
        .args(["serve", "--http-port", "0", "--healthz-port", "0"])
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "no Kubernetes configuration found (in-cluster, KUBECONFIG or ~/.kube/config)"
        ),
        "{err}"
    );
}

#[test]
fn flags_keep_ingress_nginx_names() {
    let out = sluice().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--ingress-class",
        "--controller-class",
        "--watch-ingress-without-class",
        "--default-backend-service",
        "--annotations-prefix",
        "--configmap",
        "--healthz-port",
        "--http-port",
        "--https-port",
        "--bind-address",
        "--workers",
        "--manifests",
        "--log-format",
        "--kubeconfig",
        "--watch-namespace",
        "--watch-namespace-selector",
        "--publish-service",
        "--publish-status-address",
        "--update-status",
        "--update-status-on-shutdown",
        "--status-update-interval",
        "--election-id",
        "--election-ttl",
        "--validating-webhook",
        "--validating-webhook-certificate",
        "--validating-webhook-key",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    assert!(help.contains("SLUICE_HTTP_PORT"), "environment variables are shown: {help}");
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_serves_https_with_a_generated_or_given_certificate() {
    let ca = tls::Ca::new("test CA");
    let given = ca.server(&["given.example"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), &given.cert).unwrap();
    std::fs::write(dir.path().join("tls.key"), &given.key).unwrap();
    let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    for (extra, host, cn) in [
        (vec!["--tls", "--tls-host", "made.example"], "made.example", "made.example"),
        (
            vec!["--tls-cert", crt.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
            "given.example",
            "given.example",
        ),
    ] {
        let mut child = sluice()
            .args(["echo", "--listen", "127.0.0.1:0", "--name", "secure"])
            .args(&extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let line = lines
            .find(|l| l.as_ref().is_ok_and(|l| l.contains("echo backend listening")))
            .unwrap()
            .unwrap();
        let addr = line.split_whitespace().find_map(|w| w.strip_prefix("listen=")).unwrap();
        let req = http::Request::get("/p").body(Default::default()).unwrap();
        let got = tls::request(addr.parse().unwrap(), &tls::ClientOpts::sni(host).h2(), req).await;
        child.kill().unwrap();
        child.wait().unwrap();
        let (r, seen) = got.unwrap();
        assert_eq!(seen.cn, cn);
        assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]));
        let v = r.json();
        assert_eq!((v["name"].as_str(), v["tls"].as_bool()), (Some("secure"), Some(true)));
        assert_eq!(v["sni"].as_str(), Some(host));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_answers_with_its_name() {
    let mut child = sluice()
        .args(["echo", "--listen", "127.0.0.1:0", "--name", "probe"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines
        .find(|l| l.as_ref().is_ok_and(|l| l.contains("echo backend listening")))
        .unwrap()
        .unwrap();
    let addr = line.split_whitespace().find_map(|w| w.strip_prefix("listen=")).unwrap().to_string();
    let r = get(&format!("http://{addr}/some/path?x=1"), Some("h.example")).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let v = r.json();
    assert_eq!(
        (v["name"].as_str(), v["path"].as_str(), v["host"].as_str()),
        (Some("probe"), Some("/some/path?x=1"), Some("h.example"))
    );
}

/// Runs `sluice quickstart` in `dir`; returns the child, the proxy's HTTP URL and HTTPS
/// address, and its banner.
fn quickstart(dir: &std::path::Path) -> (Running, String, SocketAddr, String) {
    let mut child = sluice()
        .args(["quickstart", "--http-port", "0", "--https-port", "0", "--healthz-port", "0"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + WAIT;
    let mut lines = out.lines();
    let banner = loop {
        let line = lines.next().expect("the quickstart prints its banner").unwrap();
        if line.starts_with("Sluice is serving") {
            break line;
        }
        assert!(Instant::now() < deadline);
    };
    // "Sluice is serving DIR on http://ADDR and https://ADDR (admin on http://ADDR)."
    let url = |scheme: &str| {
        banner
            .split_whitespace()
            .find(|w| w.contains(scheme))
            .map(|w| w.trim_start_matches('(').trim_end_matches(&[')', '.'][..]).to_string())
            .unwrap_or_else(|| panic!("no {scheme} in {banner}"))
    };
    let http = url("http://");
    let https = url("https://").trim_start_matches("https://").parse().unwrap();
    std::thread::spawn(move || for _ in lines {}); // keep draining the access log
    (Running(child), http, https, banner)
}

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_serves_the_guide_example() {
    // From the repository: serves examples/quickstart itself (editable while it runs).
    let (child, url, https, banner) = quickstart(&repo());
    assert!(banner.contains("examples/quickstart"), "{banner}");
    // public.example.com: TLS by Sluice with its generated certificate; HTTP redirected.
    // use-port-in-redirects: the redirect names the HTTPS port.
    let plain = get(&format!("{url}/alpha"), Some("public.example.com")).await;
    assert_eq!(plain.status, 308);
    let location = format!("https://public.example.com:{}/alpha", https.port());
    assert_eq!(plain.headers["location"], location.as_str());
    for (path, name) in [("/alpha", "alpha"), ("/beta", "beta")] {
        let (r, seen) = tls::get(https, "public.example.com", path).await;
        assert_eq!((r.status.as_u16(), r.backend()), (200, name.to_string()), "{path}");
        assert_eq!(seen.cn, "Sluice Ingress Controller Fake Certificate");
    }
    let (r, _) = tls::get(https, "public.example.com", "/nothing-here").await;
    assert_eq!(r.status, 404);
    // gamma: passed through, TLS ends at the backend with its own certificate.
    let (r, seen) = tls::get(https, "gamma.public.example.com", "/").await;
    assert_eq!((r.status.as_u16(), r.backend()), (200, "gamma".to_string()));
    assert_eq!(seen.cn, "gamma.public.example.com");
    assert_eq!(r.json()["sni"], "gamma.public.example.com");
    drop(child); // frees the echo backends' ports

    // Anywhere else: a built-in copy of the example.
    let elsewhere = tempfile::tempdir().unwrap();
    let (_child, _, https, banner) = quickstart(elsewhere.path());
    assert!(banner.contains("sluice-quickstart-"), "{banner}");
    let (r, _) = tls::get(https, "public.example.com", "/alpha").await;
    assert_eq!(r.backend(), "alpha");
}

/// A quickstart process, killed when the test ends (even by a failed assertion: its fixed
/// backend ports would fail the next run).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The THP_enabled line of `pid`'s /proc status (Linux 5.0 and later print it).
fn thp_enabled(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("THP_enabled:"));
    line.expect("this kernel prints no THP_enabled in /proc/PID/status").to_string()
}

/// mimalloc's arenas on transparent huge pages cost 16 MB of resident memory at 10,000
/// Ingresses: Sluice keeps them off, unless the operator sets mimalloc's own
/// `MIMALLOC_ALLOW_THP`.
#[test]
fn transparent_huge_pages_are_off_unless_mimalloc_is_told_otherwise() {
    let mine = thp_enabled(std::process::id());
    for (allow, want) in [(None, "THP_enabled:\t0"), (Some("1"), mine.as_str())] {
        let mut cmd = sluice();
        cmd.args(["echo", "--listen", "127.0.0.1:0"]).stderr(Stdio::piped());
        cmd.env_remove("MIMALLOC_ALLOW_THP");
        if let Some(v) = allow {
            cmd.env("MIMALLOC_ALLOW_THP", v);
        }
        let mut child = Running(cmd.spawn().unwrap());
        // Listening: past main's first line.
        let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
        assert!(lines.any(|l| l.is_ok_and(|l| l.contains("echo backend listening"))));
        assert_eq!(thp_enabled(child.0.id()), want, "MIMALLOC_ALLOW_THP={allow:?}");
    }
}
