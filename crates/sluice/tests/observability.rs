//! What operators see: metrics under ingress-nginx's names, the access log in its formats,
//! loud refusals, health, and a clean shutdown.

mod common;

use bytes::Bytes;
use common::*;

fn quickstart_like(m: &Manifests, alpha: std::net::SocketAddr, annotations: &[(&str, &str)]) {
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("alpha", &[alpha]));
    m.write(
        "ing.yaml",
        &ingress("public", "public.example.com", &[("/alpha", "Prefix", "alpha")], annotations),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn request_metrics_have_ingress_nginx_names_and_labels() {
    let alpha = echo("alpha").await;
    let m = Manifests::new();
    quickstart_like(&m, alpha, &[]);
    let s = Sluice::start_with_env(
        m.path(),
        &[],
        &[("POD_NAME", "sluice-0"), ("POD_NAMESPACE", "ingress")],
    );
    for _ in 0..3 {
        assert_eq!(get(&s.url("/alpha/x"), Some("public.example.com")).await.status, 200);
    }
    assert_eq!(get(&s.url("/alpha?status=503"), Some("public.example.com")).await.status, 503);
    assert_eq!(get(&s.url("/"), Some("unknown.example.com")).await.status, 404);

    // Workers publish their counts about once a second: wait for all three.
    let line =
        wait_metric(&s, &["nginx_ingress_controller_requests{", "status=\"200\"", "} 3"]).await;
    for label in [
        "canary=\"\"",
        "controller_class=\"sluice.dev/ingress-controller\"",
        "controller_namespace=\"ingress\"",
        "controller_pod=\"sluice-0\"",
        "host=\"public.example.com\"",
        "ingress=\"public\"",
        "method=\"GET\"",
        "namespace=\"default\"",
        "path=\"/alpha\"",
        "service=\"alpha\"",
    ] {
        assert!(line.contains(label), "{label} missing from {line}");
    }
    assert!(line.ends_with(" 3"), "three requests counted: {line}");
    wait_metric(&s, &["nginx_ingress_controller_requests{", "status=\"503\""]).await;
    let text = metrics(&s).await;
    for name in [
        "nginx_ingress_controller_request_duration_seconds_bucket{",
        "nginx_ingress_controller_response_duration_seconds_bucket{",
        "nginx_ingress_controller_request_size_bucket{",
        "nginx_ingress_controller_response_size_bucket{",
        "sluice_config_apply_duration_seconds_bucket",
        "sluice_config_generation 1",
        "nginx_ingress_controller_config_last_reload_successful{",
        "nginx_ingress_controller_config_hash{",
        "nginx_ingress_controller_success{",
        "nginx_ingress_controller_nginx_process_cpu_seconds_total{",
        "nginx_ingress_controller_nginx_process_resident_memory_bytes{",
        "nginx_ingress_controller_nginx_process_oldest_start_time_seconds{",
        "nginx_ingress_controller_nginx_process_num_procs{",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    // ingress-nginx's controller and process series carry the controller's labels, which its
    // dashboard selects on.
    let consts = "controller_class=\"sluice.dev/ingress-controller\",controller_namespace=\"ingress\",controller_pod=\"sluice-0\"";
    for line in [
        format!("nginx_ingress_controller_config_last_reload_successful{{{consts}}} 1"),
        format!("nginx_ingress_controller_success{{{consts}}} 1"),
        format!("nginx_ingress_controller_nginx_process_num_procs{{{consts}}} 1"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing");
    }
    // Five requests answered (counted once a worker flushes), over accepted connections.
    let requests =
        wait_metric(&s, &["nginx_ingress_controller_nginx_process_requests_total{"]).await;
    let n: u64 = requests.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 5, "{requests}");
    let accepted = text
        .lines()
        .find(|l| {
            l.starts_with("nginx_ingress_controller_nginx_process_connections_total{")
                && l.contains("state=\"accepted\"")
        })
        .unwrap_or_else(|| panic!("no accepted connections in:\n{text}"));
    assert!(accepted.rsplit(' ').next().unwrap().parse::<u64>().unwrap() >= 1, "{accepted}");
    assert!(
        !text.contains("unknown.example.com"),
        "requests to hosts no Ingress declares are not counted"
    );
    assert!(
        !text.contains("nginx_ingress_controller_requests_total"),
        "the counter keeps ingress-nginx's name"
    );
}

/// The series' lines of metric `name` (its `_bucket`, `_sum`... lines when a histogram).
fn lines_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(name) && !l.starts_with('#')).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn ingress_nginx_metric_flags_shape_the_series() {
    let alpha = echo("alpha").await;
    let m = Manifests::new();
    quickstart_like(&m, alpha, &[]);
    let s = Sluice::start(
        m.path(),
        &[
            "--metrics-per-host=false",
            "--report-status-classes=true",
            "--time-buckets=0.5,1",
            "--length-buckets=100,1000",
            "--exclude-socket-metrics=nginx_ingress_controller_bytes_sent,response_size",
        ],
    );
    for _ in 0..2 {
        assert_eq!(get(&s.url("/alpha"), Some("public.example.com")).await.status, 200);
    }
    assert_eq!(get(&s.url("/alpha?status=503"), Some("public.example.com")).await.status, 503);
    assert_eq!(get(&s.url("/"), Some("unknown.example.com")).await.status, 404);

    let ok =
        wait_metric(&s, &["nginx_ingress_controller_requests{", "status=\"2xx\"", "} 2"]).await;
    assert!(ok.contains("ingress=\"public\""), "{ok}");
    wait_metric(&s, &["nginx_ingress_controller_requests{", "status=\"5xx\"", "} 1"]).await;
    // Without the host label, every request counts, those of hosts no Ingress names too
    // (ingress-nginx's --metrics-per-host=false).
    let unrouted = wait_metric(&s, &["nginx_ingress_controller_requests{", "status=\"4xx\""]).await;
    assert!(unrouted.contains("ingress=\"\"") && unrouted.ends_with(" 1"), "{unrouted}");
    let text = metrics(&s).await;
    let requests = lines_of(&text, "nginx_ingress_controller_requests{");
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(requests.iter().all(|l| !l.contains("host=")), "no host label: {requests:?}");
    let les = |name: &str| -> Vec<String> {
        lines_of(&text, name)
            .iter()
            .filter(|l| l.contains("status=\"2xx\""))
            .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next().map(str::to_string))
            .collect()
    };
    assert_eq!(
        les("nginx_ingress_controller_request_duration_seconds_bucket"),
        ["0.5", "1", "+Inf"]
    );
    assert_eq!(les("nginx_ingress_controller_request_size_bucket"), ["100", "1000", "+Inf"]);
    for excluded in
        ["nginx_ingress_controller_bytes_sent", "nginx_ingress_controller_response_size"]
    {
        assert!(lines_of(&text, excluded).is_empty(), "{excluded} is excluded");
    }
    assert!(
        !lines_of(&text, "nginx_ingress_controller_response_duration_seconds_bucket").is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn default_backend_requests_count_under_hosts_an_ingress_names() {
    let alpha = echo("alpha").await;
    let m = Manifests::new();
    quickstart_like(&m, alpha, &[]);
    let s = Sluice::start(m.path(), &[]);
    // A host an Ingress names, a path it lacks: counted under the host, as ingress-nginx
    // counts its server's default location; ingress-nginx's default length buckets.
    assert_eq!(get(&s.url("/nothing"), Some("Public.Example.com:80")).await.status, 404);
    assert_eq!(get(&s.url("/"), Some("unknown.example.com")).await.status, 404);
    let line = wait_metric(
        &s,
        &["nginx_ingress_controller_requests{", "host=\"public.example.com\"", "status=\"404\""],
    )
    .await;
    assert!(line.contains("ingress=\"\"") && line.ends_with(" 1"), "{line}");
    let text = metrics(&s).await;
    assert!(!text.contains("unknown.example.com"), "undefined hosts are not counted by default");
    let sizes: Vec<_> = lines_of(&text, "nginx_ingress_controller_request_size_bucket")
        .iter()
        .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(sizes, ["10", "20", "30", "40", "50", "60", "70", "80", "90", "100", "+Inf"]);
    assert!(text.contains("nginx_ingress_controller_bytes_sent_bucket{"), "deprecated, kept");

    // With --metrics-per-undefined-host, each host is its own series.
    let s = Sluice::start(m.path(), &["--metrics-per-undefined-host=true"]);
    assert_eq!(get(&s.url("/"), Some("unknown.example.com")).await.status, 404);
    wait_metric(&s, &["nginx_ingress_controller_requests{", "host=\"unknown.example.com\""]).await;

    // ingress-nginx refuses it without --metrics-per-host, and so does Sluice, naming both.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--manifests"])
        .arg(m.path())
        .args(["--http-port=0", "--https-port=0", "--healthz-port=0", "--bind-address=127.0.0.1"])
        .args(["--metrics-per-host=false", "--metrics-per-undefined-host=true"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--metrics-per-undefined-host=true must be passed with"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn series_of_a_deleted_ingress_are_removed() {
    let alpha = echo("alpha").await;
    let m = Manifests::new();
    quickstart_like(&m, alpha, &[]);
    m.write("other.yaml", &ingress("other", "other.example.com", &[("/", "Prefix", "alpha")], &[]));
    let s = Sluice::start(m.path(), &[]);
    assert_eq!(get(&s.url("/alpha"), Some("public.example.com")).await.status, 200);
    assert_eq!(get(&s.url("/"), Some("other.example.com")).await.status, 200);
    wait_metric(&s, &["nginx_ingress_controller_requests{", "ingress=\"other\""]).await;
    wait_metric(&s, &["nginx_ingress_controller_requests{", "ingress=\"public\""]).await;

    let before = s.generation().await;
    m.remove("other.yaml");
    s.wait_generation_after(before).await;
    let text = metrics(&s).await;
    assert!(!text.contains("ingress=\"other\""), "the deleted Ingress's series stay:\n{text}");
    assert!(text.contains("ingress=\"public\""), "the others' stay");
    // A new request to the remaining one still counts on from where it was.
    assert_eq!(get(&s.url("/alpha"), Some("public.example.com")).await.status, 200);
    wait_metric(&s, &["nginx_ingress_controller_requests{", "ingress=\"public\"", "} 2"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn snippets_are_refused_loudly_and_fail_closed() {
    let alpha = echo("alpha").await;
    let m = Manifests::new();
    quickstart_like(
        &m,
        alpha,
        &[("nginx.ingress.kubernetes.io/configuration-snippet", "more_set_headers \"X-A: b\";")],
    );
    m.write("other.yaml", &ingress("other", "other.example.com", &[("/", "Prefix", "alpha")], &[]));
    let s = Sluice::start(m.path(), &[]);
    assert_eq!(
        get(&s.url("/alpha"), Some("public.example.com")).await.status,
        503,
        "refused: never served without it"
    );
    assert_eq!(
        get(&s.url("/"), Some("other.example.com")).await.status,
        200,
        "other Ingresses unaffected"
    );
    s.wait_stderr(|l| {
        l.contains("SnippetRefused")
            && l.contains("Ingress default/public")
            && l.contains("configuration-snippet")
    });
    wait_metric(&s, &["sluice_diagnostics{", "reason=\"SnippetRefused\"", "severity=\"error\""])
        .await;
    let diags = s.config().await["diagnostics"].to_string();
    assert!(diags.contains("SnippetRefused"), "{diags}");
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_is_ingress_nginx_upstreaminfo() {
    let alpha = echo("alpha").await;
    let m = Manifests::new();
    quickstart_like(&m, alpha, &[]);
    let s = Sluice::start(m.path(), &[]);
    let req = http::Request::get(s.url("/alpha?x=1"))
        .header("host", "public.example.com")
        .header("referer", "http://ref.example/")
        .header("user-agent", "test \"agent\"")
        .header("x-request-id", "req-upstreaminfo-1")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let r = send(&client(), req).await;
    assert_eq!(r.status, 200);
    let line = s.wait_stdout(|l| l.contains("req-upstreaminfo-1"));
    let re = regex::Regex::new(concat!(
        r#"^127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "#,
        r#""GET /alpha\?x=1 HTTP/1\.1" 200 (\d+) "http://ref\.example/" "test \\x22agent\\x22" \d+ \d+\.\d{3} "#,
        r#"\[default-alpha-80\] \[\] 127\.0\.0\.1:(\d+) (\d+) \d+\.\d{3} 200 req-upstreaminfo-1$"#,
    ))
    .unwrap();
    let caps = re.captures(&line).unwrap_or_else(|| panic!("not upstreaminfo: {line}"));
    assert_eq!(caps[1].parse::<usize>().unwrap(), r.body.len(), "$body_bytes_sent");
    assert_eq!(caps[2].parse::<u16>().unwrap(), alpha.port(), "$upstream_addr");
    assert_eq!(&caps[1], &caps[3], "$upstream_response_length");

    get(&s.url("/nothing"), Some("public.example.com")).await;
    let miss = s.wait_stdout(|l| l.contains("\"GET /nothing HTTP/1.1\" 404"));
    assert!(miss.contains("[upstream-default-backend] [] - - - -"), "{miss}");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_access_log() {
    let alpha = echo("alpha").await;
    let m = Manifests::new();
    quickstart_like(&m, alpha, &[]);
    let s = Sluice::start(m.path(), &["--log-format", "json"]);
    let req = http::Request::get(s.url("/alpha/deep"))
        .header("host", "public.example.com")
        .header("x-request-id", "req-json-1")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(&client(), req).await.status, 200);
    let line = s.wait_stdout(|l| l.contains("req-json-1"));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["request"], "GET /alpha/deep HTTP/1.1");
    assert_eq!(v["namespace"], "default");
    assert_eq!(v["ingress_name"], "public");
    assert_eq!(v["service_name"], "alpha");
    assert_eq!(v["service_port"], "80");
    assert_eq!(v["location_path"], "/alpha");
    assert_eq!(v["proxy_upstream_name"], "default-alpha-80");
    assert_eq!(v["upstream_addr"], alpha.to_string());
    assert_eq!(v["upstream_status"], "200");
    // The application logs are JSON too.
    let log = s.wait_stderr(|l| l.contains("applied configuration"));
    assert!(serde_json::from_str::<serde_json::Value>(&log).is_ok(), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_requests_then_exits_cleanly() {
    let (held, mut arrived, release) = held_backend().await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("held", &[held]));
    m.write("ing.yaml", &ingress("app", "app.example.com", &[("/", "Prefix", "held")], &[]));
    let mut s = Sluice::start(m.path(), &[]);
    let url = s.url("/");
    let slow = tokio::spawn(async move { get(&url, Some("app.example.com")).await });
    arrived.recv().await.expect("the request reached the backend");
    let pid = s.pid();
    let term = std::thread::spawn(move || {
        std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap()
    });
    s.wait_stderr(|l| l.contains("shutting down"));
    release.notify_one();
    let r = slow.await.unwrap();
    assert_eq!(
        (r.status.as_u16(), &r.body[..]),
        (200, &b"held"[..]),
        "the in-flight request finished during the drain"
    );
    assert!(term.join().unwrap().success());
    assert!(s.wait_exit(), "exit status 0 after SIGTERM");
}

#[tokio::test(flavor = "multi_thread")]
async fn flags_can_come_from_the_environment() {
    let alpha = echo("alpha").await;
    let m = Manifests::new();
    m.write("svc.yaml", &service("alpha", &[alpha]));
    // Class-less (no IngressClass in the directory either) and annotated for class "edge".
    let classless = ingress("classless", "a.example.com", &[("/", "Prefix", "alpha")], &[])
        .replace("  ingressClassName: sluice\n", "");
    let legacy = ingress(
        "legacy",
        "b.example.com",
        &[("/", "Prefix", "alpha")],
        &[("kubernetes.io/ingress.class", "edge")],
    )
    .replace("  ingressClassName: sluice\n", "");
    m.write("ing.yaml", &format!("{classless}---\n{legacy}"));
    let s = Sluice::start_with_env(
        m.path(),
        &[],
        &[("SLUICE_WATCH_INGRESS_WITHOUT_CLASS", "true"), ("SLUICE_INGRESS_CLASS", "edge")],
    );
    assert_eq!(get(&s.url("/"), Some("a.example.com")).await.status, 200);
    assert_eq!(get(&s.url("/"), Some("b.example.com")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_and_debug_endpoints() {
    let alpha = echo("alpha").await;
    let m = Manifests::new();
    quickstart_like(&m, alpha, &[("nginx.ingress.kubernetes.io/proxy-body-size", "8m")]);
    let s = Sluice::start(m.path(), &[]);
    assert_eq!(get(&s.admin_url("/readyz"), None).await.status, 200);
    assert_eq!(get(&s.admin_url("/healthz"), None).await.status, 200);
    let config = s.config().await;
    let host = config["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "public.example.com")
        .unwrap()
        .clone();
    let route = &host["paths"][0];
    assert_eq!(route["path"], "/alpha");
    assert_eq!(route["path_type"], "Prefix");
    assert_eq!(route["ingress"], "default/public");
    assert_eq!(route["target"]["backend"], "default-alpha-80");
    assert_eq!(route["target"]["endpoints"][0], alpha.to_string());
    assert_eq!(route["policy"]["limits"]["max_body_size"], 8 * 1024 * 1024);
    assert_eq!(host["default"]["target"]["status"], 404);

    // `/debug/info` (what `kubectl sluice info` shows) follows the configuration in force.
    let info = get(&s.admin_url("/debug/info"), None).await.json();
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["ready"], true);
    assert_eq!(info["generation"], config["generation"]);
    assert_eq!(info["controller_class"], "sluice.dev/ingress-controller");
    assert!(info["applied_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{info}");
    let before = s.generation().await;
    m.write("extra.yaml", &ingress("extra", "extra.example.com", &[("/", "Prefix", "alpha")], &[]));
    let after = s.wait_generation_after(before).await;
    let info = get(&s.admin_url("/debug/info"), None).await.json();
    assert!(info["generation"].as_u64().unwrap() >= after, "{info}");
}
