//! Configuration changes: applied live, atomically, without failing a request, and never
//! lost to a broken file.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;

fn app(backend: &str) -> String {
    ingress("app", "app.example.com", &[("/", "Prefix", backend)], &[])
}

/// A directory with the IngressClass and two Services, `blue` and `green`, each with its own
/// echo backend.
async fn blue_green() -> Manifests {
    let (blue, green) = (echo("blue").await, echo("green").await);
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write(
        "svc.yaml",
        &format!("{}---\n{}", service("blue", &[blue]), service("green", &[green])),
    );
    m
}

/// Polls until `host` + `path` reaches `backend` (or fails after the harness's wait).
async fn wait_routed(s: &Sluice, host: &str, path: &str, backend: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = get(&s.url(path), Some(host)).await;
        if r.status == 200 && r.backend() == backend {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{host}{path} never reached {backend} (last: {})",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn added_changed_and_removed_ingresses_take_effect() {
    let m = blue_green().await;
    let s = Sluice::start(m.path(), &[]);
    assert_eq!(get(&s.url("/"), Some("app.example.com")).await.status, 404);

    m.write("app.yaml", &app("blue"));
    wait_routed(&s, "app.example.com", "/", "blue").await;
    m.write("app.yaml", &app("green"));
    wait_routed(&s, "app.example.com", "/", "green").await;
    let g = s.generation().await;
    m.remove("app.yaml");
    s.wait_generation_after(g).await;
    assert_eq!(get(&s.url("/"), Some("app.example.com")).await.status, 404);
    let applied =
        s.wait_stderr(|l| l.contains("applied configuration") && l.contains("generation=4"));
    assert!(applied.contains("took_ms="), "apply timings are logged: {applied}");
    // An Ingress alone on its host, added, changed or removed, updates the table in force
    // instead of translating everything again.
    let updates: Vec<String> = s
        .stderr()
        .into_iter()
        .filter(|l| l.contains("applied configuration") && !l.contains("generation=1 "))
        .collect();
    assert_eq!(updates.len(), 3, "{updates:#?}");
    assert!(updates.iter().all(|l| l.contains("update=\"ingresses\"")), "{updates:#?}");
}

// A change of endpoints only (pods come and go) is applied as an endpoint update, which keeps
// the rest of the table: requests follow the new endpoints, a Service whose last endpoint
// goes not ready answers 503, and serves again when one is back.
#[tokio::test(flavor = "multi_thread")]
async fn endpoint_changes_apply_as_endpoint_updates() {
    let (blue, blue_2, green) = (echo("blue").await, echo("blue-2").await, echo("green").await);
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("app.yaml", &app("blue"));
    let services = |blue: &str| format!("{blue}---\n{}", service("green", &[green]));
    m.write("svc.yaml", &services(&service("blue", &[blue])));
    let s = Sluice::start(m.path(), &[]);
    wait_routed(&s, "app.example.com", "/", "blue").await;

    m.write("svc.yaml", &services(&service("blue", &[blue_2])));
    wait_routed(&s, "app.example.com", "/", "blue-2").await;
    let g = s.generation().await;
    m.write("svc.yaml", &services(&service_with("blue", &[], &[blue_2])));
    s.wait_generation_after(g).await;
    assert_eq!(get(&s.url("/"), Some("app.example.com")).await.status, 503);
    m.write("svc.yaml", &services(&service("blue", &[blue])));
    wait_routed(&s, "app.example.com", "/", "blue").await;
    // Requests follow a table as soon as it is published; its log line comes just after.
    s.wait_stderr(|l| l.contains("applied configuration") && l.contains("generation=4"));
    let updates: Vec<String> = s
        .stderr()
        .into_iter()
        .filter(|l| l.contains("applied configuration") && !l.contains("generation=1 "))
        .collect();
    assert_eq!(updates.len(), 3, "{updates:#?}");
    assert!(updates.iter().all(|l| l.contains("update=\"endpoints\"")), "{updates:#?}");
}

/// The done-means test: a stream of requests during 50 manifest changes sees no failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_changes_under_load_fail_no_request() {
    let m = blue_green().await;
    m.write("app.yaml", &app("blue"));
    let s = Arc::new(Sluice::start(m.path(), &[]));
    wait_routed(&s, "app.example.com", "/", "blue").await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, seen_green) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut load = Vec::new();
    for _ in 0..4 {
        let (s, stop, ok, failed, seen_green) =
            (s.clone(), stop.clone(), ok.clone(), failed.clone(), seen_green.clone());
        load.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let req = request("GET", &s.url("/"), Some("app.example.com"), Bytes::new());
                match c.request(req).await {
                    Ok(resp) if resp.status() == 200 => {
                        let body = http_body_util::BodyExt::collect(resp.into_body())
                            .await
                            .unwrap()
                            .to_bytes();
                        if body.windows(7).any(|w| w == b"\"green\"") {
                            seen_green.store(true, Ordering::Relaxed);
                        }
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(resp) => {
                        eprintln!("failed request: status {}", resp.status());
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("failed request: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    let mut generation = s.generation().await;
    for i in 0..50 {
        // Alternate the backend, and add and remove an unrelated Ingress, so that every
        // change rebuilds the routes the load goes through.
        m.write("app.yaml", &app(if i % 2 == 0 { "green" } else { "blue" }));
        if i % 3 == 0 {
            m.write(
                &format!("other-{i}.yaml"),
                &ingress(
                    &format!("other-{i}"),
                    &format!("o{i}.example.com"),
                    &[("/", "Prefix", "blue")],
                    &[],
                ),
            );
        } else if i % 3 == 1 {
            m.remove(&format!("other-{}.yaml", i - 1));
        }
        generation = s.wait_generation_after(generation).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    assert!(generation >= 51, "50 changes were applied (generation {generation})");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request may fail during configuration changes"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 200,
        "the load kept flowing: {} requests",
        ok.load(Ordering::Relaxed)
    );
    assert!(seen_green.load(Ordering::Relaxed), "changes reached the traffic");
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_in_flight_finish_on_the_table_they_started_with() {
    let (held, mut arrived, release) = held_backend().await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("held", &[held]));
    m.write("app.yaml", &app("held"));
    let s = Sluice::start(m.path(), &[]);
    let slow = tokio::spawn({
        let url = s.url("/");
        async move { get(&url, Some("app.example.com")).await }
    });
    arrived.recv().await.expect("the request reached the backend");
    let g = s.generation().await;
    m.remove("app.yaml");
    s.wait_generation_after(g).await;
    assert_eq!(get(&s.url("/"), Some("app.example.com")).await.status, 404, "the route is gone");
    release.notify_one();
    let r = slow.await.unwrap();
    assert_eq!(
        (r.status.as_u16(), &r.body[..]),
        (200, &b"held"[..]),
        "the request started before the change completes"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_file_keeps_its_last_good_version_serving() {
    let blue = echo("blue").await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("blue", &[blue]));
    m.write("app.yaml", &app("blue"));
    let s = Sluice::start(m.path(), &[]);
    wait_routed(&s, "app.example.com", "/", "blue").await;

    let mut g = s.generation().await;
    m.write("app.yaml", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: app\nspec: [unclosed\n");
    // The watch may report the write in more than one event: wait for the generation that
    // read the broken content, not merely the next one.
    let deadline = std::time::Instant::now() + WAIT;
    let config = loop {
        g = s.wait_generation_after(g).await;
        let config = s.config().await;
        if config["source_errors"].as_array().is_some_and(|e| !e.is_empty()) {
            break config;
        }
        assert!(std::time::Instant::now() < deadline, "the broken file was never read: {config}");
    };
    let errors = config["source_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{config}");
    let e = errors[0].as_str().unwrap();
    assert!(e.contains("app.yaml:5"), "the error names the file and line: {e}");
    assert_eq!(
        get(&s.url("/"), Some("app.example.com")).await.backend(),
        "blue",
        "the last good version serves"
    );
    s.wait_stderr(|l| l.contains("app.yaml:5") && l.contains("last good version"));
    let metrics =
        String::from_utf8(get(&s.admin_url("/metrics"), None).await.body.to_vec()).unwrap();
    // ingress-nginx's series, with its controller labels, and its count of failed reloads.
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("nginx_ingress_controller_config_last_reload_successful{")
                && l.ends_with("} 0")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("nginx_ingress_controller_errors{") && l.ends_with("} 1")),
        "{metrics}"
    );

    // An invalid object (not a syntax error) is a parse error too, named with its field.
    let g = s.generation().await;
    m.write(
        "svc2.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  ports:\n  - port: eighty\n",
    );
    s.wait_generation_after(g).await;
    let config = s.config().await;
    let text = config["source_errors"].to_string();
    assert!(text.contains("svc2.yaml:1") && text.contains("spec.ports[0].port"), "{text}");

    let g = s.generation().await;
    m.write("app.yaml", &app("blue"));
    m.remove("svc2.yaml");
    s.wait_generation_after(g).await;
    let deadline = Instant::now() + WAIT;
    while !s.config().await["source_errors"].as_array().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "errors were not cleared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_neighbour_never_takes_traffic_from_a_valid_route() {
    let blue = echo("blue").await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("blue", &[blue]));
    m.write("app.yaml", &app("blue"));
    // Same host and path, newer (by name order on equal timestamps this one sorts after
    // "app"... so give it a later creationTimestamp explicitly).
    let thief = ingress("zzz-thief", "app.example.com", &[("/", "Prefix", "missing")], &[])
        .replace(
            "  namespace: default\n",
            "  namespace: default\n  creationTimestamp: \"2030-01-01T00:00:00Z\"\n",
        );
    m.write("thief.yaml", &thief);
    m.write(
        "bad.yaml",
        &ingress(
            "bad",
            "bad.example.com",
            &[("/", "Prefix", "blue")],
            &[("nginx.ingress.kubernetes.io/proxy-read-timeout", "soon")],
        ),
    );
    m.write("garbage.yaml", "this: is: not: yaml: [");
    let s = Sluice::start(m.path(), &[]);
    assert_eq!(get(&s.url("/"), Some("app.example.com")).await.backend(), "blue");
    assert_eq!(
        get(&s.url("/"), Some("bad.example.com")).await.backend(),
        "blue",
        "an invalid annotation keeps its default"
    );
    let config = s.config().await;
    let diags = config["diagnostics"].to_string();
    assert!(diags.contains("PathCollision") && diags.contains("zzz-thief"), "{diags}");
    assert!(diags.contains("InvalidAnnotation") && diags.contains("proxy-read-timeout"), "{diags}");
    assert!(config["source_errors"].to_string().contains("garbage.yaml:1"), "{config}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_manifests_directory_is_a_clear_start_up_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "serve",
            "--manifests",
            "/nonexistent/sluice-test",
            "--http-port",
            "0",
            "--healthz-port",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read manifests from /nonexistent/sluice-test"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_manifest_file_is_watched_across_replacements() {
    let (blue, green) = (echo("blue").await, echo("green").await);
    let m = Manifests::new();
    let all = |backend: &str| {
        format!(
            "{}---\n{}---\n{}---\n{}",
            ingress_class(),
            service("blue", &[blue]),
            service("green", &[green]),
            app(backend)
        )
    };
    let file = m.write("all.yaml", &all("blue"));
    let s = Sluice::start(&file, &[]);
    wait_routed(&s, "app.example.com", "/", "blue").await;
    // `write` replaces the file by renaming a new one over it, as editors do; twice, so a
    // watch left on the first inode would miss the second change.
    m.write("all.yaml", &all("green"));
    wait_routed(&s, "app.example.com", "/", "green").await;
    m.write("all.yaml", &all("blue"));
    wait_routed(&s, "app.example.com", "/", "blue").await;
}

// Each apply reads only the files the watch saw change: directories created with their
// files, and removed, must still be seen whole.
#[tokio::test(flavor = "multi_thread")]
async fn directories_added_and_removed_take_effect() {
    let m = blue_green().await;
    let s = Sluice::start(m.path(), &[]);
    let staged = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(staged.path().join("team/apps")).unwrap();
    std::fs::write(staged.path().join("team/apps/app.yaml"), app("blue")).unwrap();
    // Moved in whole, already full: no event names the file itself.
    std::fs::rename(staged.path().join("team"), m.path().join("team")).unwrap();
    wait_routed(&s, "app.example.com", "/", "blue").await;
    let g = s.generation().await;
    std::fs::remove_dir_all(m.path().join("team")).unwrap();
    s.wait_generation_after(g).await;
    assert_eq!(get(&s.url("/"), Some("app.example.com")).await.status, 404);
}

// A ConfigMap mounted as a volume: every file is a link into `..data`, itself a link to a
// directory of the current version, swapped whole on an update. No event names the files.
#[tokio::test(flavor = "multi_thread")]
async fn a_configmap_volume_update_takes_effect() {
    use std::os::unix::fs::symlink;
    let m = blue_green().await;
    let version = |name: &str, backend: &str| {
        std::fs::create_dir(m.path().join(name)).unwrap();
        std::fs::write(m.path().join(name).join("app.yaml"), app(backend)).unwrap();
    };
    version("..2026_12_02_01", "blue");
    symlink("..2026_12_02_01", m.path().join("..data")).unwrap();
    symlink("..data/app.yaml", m.path().join("app.yaml")).unwrap();
    let s = Sluice::start(m.path(), &[]);
    wait_routed(&s, "app.example.com", "/", "blue").await;
    // What the kubelet does: the new version, a new link, renamed over `..data`.
    version("..2026_12_02_02", "green");
    symlink("..2026_12_02_02", m.path().join("..data_tmp")).unwrap();
    std::fs::rename(m.path().join("..data_tmp"), m.path().join("..data")).unwrap();
    std::fs::remove_dir_all(m.path().join("..2026_12_02_01")).unwrap();
    wait_routed(&s, "app.example.com", "/", "green").await;
}
