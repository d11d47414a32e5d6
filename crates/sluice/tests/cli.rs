//! The commands other tools and people depend on: `check`, `echo`, `quickstart`, and the
//! flag names shared with ingress-nginx.

mod common;

use std::io::{BufRead, BufReader};
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
    let out = sluice().arg("check").arg(repo().join("examples/quickstart")).output().unwrap();
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
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    assert!(help.contains("SLUICE_HTTP_PORT"), "environment variables are shown: {help}");
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

/// Runs `sluice quickstart` in `dir`; returns the child and the proxy URL from its banner.
fn quickstart(dir: &std::path::Path) -> (std::process::Child, String, String) {
    let mut child = sluice()
        .args(["quickstart", "--http-port", "0", "--healthz-port", "0"])
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
    // "Sluice is serving DIR on http://ADDR (admin on http://ADDR)."
    let urls: Vec<String> = banner
        .split_whitespace()
        .filter(|w| w.contains("http://"))
        .map(|w| w.trim_start_matches('(').trim_end_matches(&[')', '.'][..]).to_string())
        .collect();
    std::thread::spawn(move || for _ in lines {}); // keep draining the access log
    (child, urls[0].clone(), banner)
}

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_serves_the_guide_example() {
    // From the repository: serves examples/quickstart itself (editable while it runs).
    let (mut child, url, banner) = quickstart(&repo());
    assert!(banner.contains("examples/quickstart"), "{banner}");
    for (host, path, name) in [
        ("public.example.com", "/alpha", "alpha"),
        ("public.example.com", "/beta", "beta"),
        ("gamma.public.example.com", "/", "gamma"),
    ] {
        let r = get(&format!("{url}{path}"), Some(host)).await;
        assert_eq!((r.status.as_u16(), r.backend()), (200, name.to_string()), "{host}{path}");
    }
    assert_eq!(get(&format!("{url}/nothing-here"), Some("public.example.com")).await.status, 404);
    child.kill().unwrap();
    child.wait().unwrap();

    // Anywhere else: a built-in copy of the example.
    let elsewhere = tempfile::tempdir().unwrap();
    let (mut child, url, banner) = quickstart(elsewhere.path());
    assert!(banner.contains("sluice-quickstart-"), "{banner}");
    let r = get(&format!("{url}/alpha"), Some("public.example.com")).await;
    assert_eq!(r.backend(), "alpha");
    child.kill().unwrap();
    child.wait().unwrap();
}
