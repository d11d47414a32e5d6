//! Dashboards and alerts, proven against a real Prometheus (Debian's `prometheus`): one Sluice,
//! scraped every second the way a ServiceMonitor scrapes it, is put under traffic and into
//! every state the chart's alerts describe at once (a healthy Ingress, one answering 5xx, one
//! refused, a certificate expiring within 14 days, a Service without ready endpoints, an
//! unreachable backend, a failing endpoint ejected, a manifest file that does not parse). Then
//! every query of ingress-nginx's Grafana dashboard (fetched from its Go module by
//! tests/ingress-nginx-dashboard/fetch) and of Sluice's own (deploy/grafana/sluice.json) must
//! return data, and every alerting rule of the chart (deploy/helm/sluice/values.yaml) must load,
//! evaluate without error, hold, and fire.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::tls::{Ca, tls_secret};
use common::*;
use http_body_util::BodyExt;
use serde_json::{Value, json};

/// How long the checks against Prometheus may take to come true. Its first scrape comes about
/// 5 s after it starts (target discovery hands over its updates every 5 s), the checks hold a
/// few scrapes later: about 8 s in all, more on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// The pod and namespace Sluice runs as (`POD_NAME`, `POD_NAMESPACE`): its series' controller
/// labels, and the target labels a ServiceMonitor gives the scrape.
const POD: &str = "sluice-controller-7d4b9c-x2x9q";
const NAMESPACE: &str = "ingress-system";
/// The job a ServiceMonitor names after the metrics Service.
const JOB: &str = "sluice-controller-metrics";

/// The workspace's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

// ---------------------------------------------------------------------------------------
// Prometheus

/// A running Prometheus on a free loopback port with a temporary storage directory, killed on
/// drop.
struct Prometheus {
    _process: Killed,
    base: String,
    _dir: tempfile::TempDir,
}

/// A child process, killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET `url`: the status and body, or `None` when nothing answers.
async fn try_get(url: &str) -> Option<(u16, Bytes)> {
    let req = request("GET", url, None, Bytes::new());
    let resp = tokio::time::timeout(WAIT, client().request(req)).await.ok()?.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, body))
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

impl Prometheus {
    /// Starts Prometheus with `config` (a prometheus.yml as JSON, which is YAML) and the rule
    /// file `rules`, and waits until `/-/ready` says it is ready.
    async fn start(mut config: Value, rules: &Value) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules_file = dir.path().join("rules.yml");
        std::fs::write(&rules_file, serde_json::to_string_pretty(rules).unwrap()).unwrap();
        config["rule_files"] = json!([rules_file]);
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        let log_file = dir.path().join("prometheus.log");
        // A free port: bound, released, then given to Prometheus; another process may take it
        // in between, so a start that fails to listen is tried again on another.
        for _ in 0..5 {
            let addr = unused_addr();
            let log = std::fs::File::create(&log_file).unwrap();
            let child = Command::new("prometheus")
                .arg(format!("--config.file={}", config_file.display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "prometheus does not run ({e}): install Debian's package \
                         (apt-get install prometheus; .ci/run does)"
                    )
                });
            let mut process = Killed(child);
            let base = format!("http://{addr}");
            let deadline = Instant::now() + WAIT;
            loop {
                if let Ok(Some(status)) = process.0.try_wait() {
                    let log = std::fs::read_to_string(&log_file).unwrap_or_default();
                    assert!(
                        log.contains("address already in use"),
                        "prometheus exited with {status}:\n{log}"
                    );
                    break; // its port was taken: another try
                }
                if try_get(&format!("{base}/-/ready")).await.is_some_and(|(s, _)| s == 200) {
                    return Prometheus { _process: process, base, _dir: dir };
                }
                assert!(
                    Instant::now() < deadline,
                    "prometheus was not ready in time:\n{}",
                    std::fs::read_to_string(&log_file).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("prometheus found no free port in 5 tries");
    }

    /// The `data` of an API answer, or why there is none.
    async fn api(&self, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let (status, body) = try_get(&url).await.ok_or_else(|| format!("no answer to {url}"))?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{status}, not JSON ({e}): {}", String::from_utf8_lossy(&body)))?;
        if status != 200 || v["status"] != "success" {
            return Err(format!("{status}: {} {}", v["errorType"], v["error"]));
        }
        Ok(v["data"].clone())
    }

    /// Evaluates `expr` now.
    async fn query(&self, expr: &str) -> Result<Value, String> {
        self.api(&format!("/api/v1/query?query={}", percent_encode(expr))).await
    }

    /// What Grafana's `label_values(SELECTOR, LABEL)` (or `label_values(LABEL)`) lists, over
    /// the last hour.
    async fn label_values(&self, query: &str) -> Result<Vec<String>, String> {
        let inner = query
            .trim()
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .ok_or_else(|| format!("not a label_values() query: {query}"))?;
        // The label is after the last comma (the selector may hold commas, a label name not).
        let (selector, label) = match inner.rsplit_once(',') {
            Some((s, l)) => (Some(s.trim()), l.trim()),
            None => (None, inner.trim()),
        };
        let now = now_secs();
        let mut path = format!("/api/v1/label/{label}/values?start={}&end={now}", now - 3600);
        if let Some(selector) = selector {
            path.push_str(&format!("&match[]={}", percent_encode(selector)));
        }
        let data = self.api(&path).await?;
        Ok(data
            .as_array()
            .ok_or_else(|| format!("not a list: {data}"))?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect())
    }
}

/// `Ok` when a query's answer has data a panel would draw: a series (or scalar) with a finite
/// value.
fn has_data(data: &Value) -> Result<(), String> {
    let finite =
        |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok()).is_some_and(f64::is_finite);
    let result = &data["result"];
    let ok = match data["resultType"].as_str() {
        Some("vector") => {
            result.as_array().is_some_and(|r| r.iter().any(|s| finite(&s["value"][1])))
        }
        Some("scalar") => finite(&result[1]),
        Some("matrix") => result.as_array().is_some_and(|r| {
            r.iter()
                .any(|s| s["values"].as_array().is_some_and(|v| v.iter().any(|p| finite(&p[1]))))
        }),
        _ => false,
    };
    if ok {
        Ok(())
    } else if result.as_array().is_some_and(|r| r.is_empty()) {
        Err("no series".to_string())
    } else {
        Err(format!("no finite value: {result}"))
    }
}

// ---------------------------------------------------------------------------------------
// Grafana dashboards

/// A Grafana dashboard (its JSON model) and its variables' choices.
struct Dashboard {
    name: &'static str,
    json: Value,
    /// Variables that stay "All" even when the others take a value: a panel filters on a label
    /// its metric lacks, in ingress-nginx too (see [`check_dashboard`]).
    all_only: &'static [&'static str],
}

/// A query variable of a dashboard: name, query, and the value "All" stands for.
struct Variable {
    name: String,
    query: String,
    all: Option<String>,
}

impl Dashboard {
    fn variables(&self) -> Vec<Variable> {
        let list = self.json["templating"]["list"].as_array().cloned().unwrap_or_default();
        list.iter()
            .filter(|v| v["type"] == "query")
            .map(|v| Variable {
                name: v["name"].as_str().expect("a variable name").to_string(),
                // A string, or (newer Grafana) an object holding it.
                query: v["query"]
                    .as_str()
                    .or_else(|| v["query"]["query"].as_str())
                    .expect("a variable query")
                    .to_string(),
                all: (v["includeAll"] == true)
                    .then(|| v["allValue"].as_str().map(str::to_string))
                    .flatten(),
            })
            .collect()
    }

    /// Every `expr` of the dashboard (panels, their targets, rows' panels, annotations), with
    /// the title of what holds it.
    fn exprs(&self) -> Vec<(String, String)> {
        fn walk(v: &Value, title: &str, out: &mut Vec<(String, String)>) {
            match v {
                Value::Object(o) => {
                    let title = o
                        .get("title")
                        .or_else(|| o.get("name"))
                        .and_then(Value::as_str)
                        .unwrap_or(title);
                    if let Some(expr) = o.get("expr").and_then(Value::as_str) {
                        out.push((title.to_string(), expr.to_string()));
                    }
                    for (k, v) in o {
                        if k != "templating" {
                            walk(v, title, out);
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, title, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&self.json, "", &mut out);
        out
    }
}

/// Grafana's built-in variables, as a dashboard over the last hour with a fast scrape sets them.
const BUILTINS: &[(&str, &str)] = &[
    ("__rate_interval", "1m"),
    ("__interval", "15s"),
    ("__interval_ms", "15000"),
    ("__range", "1h"),
    ("__range_s", "3600"),
    ("__range_ms", "3600000"),
];

/// Replaces Grafana's variables in `expr` (`$name`, `${name}`, `${name:format}`, `[[name]]`)
/// by `values`, then the built-ins. `$1` (a label_replace group) stays; any other unknown
/// variable is an error.
fn substitute(expr: &str, values: &[(String, String)]) -> Result<String, String> {
    let lookup = |name: &str| -> Option<String> {
        values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .or_else(|| BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
    };
    let word =
        |s: &str| s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find(['$', '[']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (name, len) = if let Some(t) = tail.strip_prefix("${") {
            let end = t.find('}').ok_or_else(|| format!("unclosed ${{ in {expr}"))?;
            (t[..end].split(':').next().unwrap(), end + 3)
        } else if let Some(t) = tail.strip_prefix("[[") {
            match t.find("]]") {
                Some(end) if word(t) == end => (&t[..end], end + 4),
                _ => ("", 0),
            }
        } else if let Some(t) = tail.strip_prefix('$') {
            (&t[..word(t)], word(t) + 1)
        } else {
            ("", 0)
        };
        if len == 0 || name.is_empty() || name.bytes().all(|b| b.is_ascii_digit()) {
            // Not a variable (`[5m]`, `$1`): kept as it is.
            out.push_str(&tail[..1]);
            rest = &tail[1..];
            continue;
        }
        out.push_str(&lookup(name).ok_or_else(|| format!("unknown variable ${name} in {expr}"))?);
        rest = &tail[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A value as Grafana's Prometheus data source writes it into a regex matcher (`=~"$var"`) for
/// a variable with "All" or several values: regex characters escaped, in a PromQL string.
fn regex_escape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if "$^*{}[]'+?.()|".contains(c) {
            out.push_str("\\\\");
        }
        out.push(c);
    }
    out
}

/// What failed, one line each.
type Failures = Vec<String>;

/// Evaluates every variable and every query of `d` twice: with every variable "All", as the
/// dashboard opens; and with each variable set to the first value its query lists, as an
/// operator picks a controller. Queries already seen to pass (same text) are skipped.
async fn check_dashboard(p: &Prometheus, d: &Dashboard, passed: &mut HashSet<String>) -> Failures {
    let mut failures = Vec::new();
    for pick in [false, true] {
        let mode = if pick { "picked values" } else { "All" };
        let mut values: Vec<(String, String)> = Vec::new();
        for var in d.variables() {
            let query = match substitute(&var.query, &values) {
                Ok(q) => q,
                Err(e) => {
                    failures.push(format!("{}, variable ${} ({mode}): {e}", d.name, var.name));
                    values.push((var.name.clone(), ".*".to_string()));
                    continue;
                }
            };
            let found = p.label_values(&query).await;
            let value = match &found {
                Ok(list) if !list.is_empty() => {
                    if pick && !d.all_only.contains(&var.name.as_str()) {
                        regex_escape(&list[0])
                    } else {
                        var.all.clone().unwrap_or_else(|| {
                            let escaped: Vec<_> = list.iter().map(|v| regex_escape(v)).collect();
                            format!("({})", escaped.join("|"))
                        })
                    }
                }
                _ => {
                    let why = match found {
                        Ok(_) => "no values".to_string(),
                        Err(e) => e,
                    };
                    failures.push(format!(
                        "{}, variable ${} ({mode}): {query}: {why}",
                        d.name, var.name
                    ));
                    ".*".to_string()
                }
            };
            values.push((var.name.clone(), value));
        }
        for (title, expr) in d.exprs() {
            let expr = match substitute(&expr, &values) {
                Ok(e) => e,
                Err(e) => {
                    failures.push(format!("{}, {title:?} ({mode}): {e}", d.name));
                    continue;
                }
            };
            if passed.contains(&expr) {
                continue;
            }
            match p.query(&expr).await.and_then(|data| has_data(&data)) {
                Ok(()) => {
                    passed.insert(expr);
                }
                Err(e) => failures.push(format!("{}, {title:?} ({mode}): {expr}\n    {e}", d.name)),
            }
        }
    }
    failures
}

// ---------------------------------------------------------------------------------------
// Alerting rules

/// The chart's alerting rules: `controller.metrics.prometheusRule.rules` of values.yaml.
fn chart_rules() -> Vec<Value> {
    let path = root().join("deploy/helm/sluice/values.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let values: Value = serde_saphyr::from_str(&text).expect("values.yaml parses");
    let rules = values["controller"]["metrics"]["prometheusRule"]["rules"]
        .as_array()
        .expect("controller.metrics.prometheusRule.rules is a list")
        .clone();
    assert!(!rules.is_empty(), "the chart has alerting rules");
    rules
}

/// The group the chart's PrometheusRule renders, and a copy whose alerts fire at once.
const GROUP: &str = "sluice";
const GROUP_NOW: &str = "sluice-for-0s";

/// The rule file: the chart's group as it renders it (one group named sluice, the rules as they
/// stand), and the same rules with `for: 0s`, so that an alert fires within the test.
fn rule_file(rules: &[Value]) -> Value {
    let now: Vec<Value> = rules
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r["for"] = json!("0s");
            r
        })
        .collect();
    json!({"groups": [{"name": GROUP, "rules": rules}, {"name": GROUP_NOW, "rules": now}]})
}

/// Checks every rule: loaded, evaluated without error, its condition holding (pending or
/// firing as written, firing with `for: 0s`), its expression returning data, and its alert
/// firing in `/api/v1/alerts`.
async fn check_rules(p: &Prometheus, rules: &[Value]) -> Failures {
    let mut failures = Vec::new();
    let names: Vec<&str> =
        rules.iter().map(|r| r["alert"].as_str().expect("an alerting rule")).collect();
    match p.api("/api/v1/rules").await {
        Err(e) => failures.push(format!("/api/v1/rules: {e}")),
        Ok(data) => {
            let groups = data["groups"].as_array().cloned().unwrap_or_default();
            for (group, states) in
                [(GROUP, &["pending", "firing"][..]), (GROUP_NOW, &["firing"][..])]
            {
                let Some(g) = groups.iter().find(|g| g["name"] == group) else {
                    failures.push(format!("group {group} not loaded: {data}"));
                    continue;
                };
                for name in &names {
                    let Some(r) =
                        g["rules"].as_array().and_then(|r| r.iter().find(|r| r["name"] == *name))
                    else {
                        failures.push(format!("{group}/{name}: not loaded"));
                        continue;
                    };
                    if r["health"] != "ok" {
                        failures.push(format!(
                            "{group}/{name}: health {} {}",
                            r["health"], r["lastError"]
                        ));
                    }
                    if !states.iter().any(|s| r["state"] == *s) {
                        failures.push(format!("{group}/{name}: {}, not {states:?}", r["state"]));
                    }
                }
            }
        }
    }
    for r in rules {
        let expr = r["expr"].as_str().expect("an expr");
        if let Err(e) = p.query(expr).await.and_then(|data| has_data(&data)) {
            failures.push(format!("{}: {expr}\n    {e}", r["alert"]));
        }
    }
    match p.api("/api/v1/alerts").await {
        Err(e) => failures.push(format!("/api/v1/alerts: {e}")),
        Ok(data) => {
            let alerts = data["alerts"].as_array().cloned().unwrap_or_default();
            for name in &names {
                if !alerts
                    .iter()
                    .any(|a| a["labels"]["alertname"] == *name && a["state"] == "firing")
                {
                    failures.push(format!("{name}: not firing in /api/v1/alerts"));
                }
            }
        }
    }
    failures
}

// ---------------------------------------------------------------------------------------
// Sluice, its states and its traffic

/// Hosts and paths of the traffic, how many requests a round sends to each, and the status
/// each answers.
const TRAFFIC: &[(&str, &str, usize, u16)] = &[
    // A healthy Ingress.
    ("web.example.com", "/", 2, 200),
    // Its backend answers 503: enough that the 5xx alert's "more than one request a second
    // over 5 minutes" holds after a few seconds.
    ("errors.example.com", "/?status=503", 6, 503),
    // Refused (a snippet): 503.
    ("refused.example.com", "/", 1, 503),
    // A Service without a ready endpoint: 503.
    ("idle.example.com", "/", 1, 503),
    // A Service whose only endpoint refuses connections: 502, upstream errors.
    ("dead.example.com", "/", 1, 502),
    // One live endpoint and one refusing: retried, 200; the failing one is ejected.
    ("flaky.example.com", "/", 1, 200),
    // The TLS Ingress, over HTTP (a redirect to HTTPS).
    ("secure.example.com", "/", 1, 308),
];
/// One request, its body read; errors ignored (the checks say what is missing).
async fn hit(
    c: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<Bytes>,
    >,
    url: &str,
    host: &str,
) -> u16 {
    let Ok(resp) = c.request(request("GET", url, Some(host), Bytes::new())).await else {
        return 0;
    };
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

/// Sends [`TRAFFIC`] rounds on two keep-alive connections until aborted.
fn traffic(s: &Sluice) -> Vec<tokio::task::JoinHandle<()>> {
    (0..2)
        .map(|_| {
            let base = s.url("");
            tokio::spawn(async move {
                let c = client();
                loop {
                    for (host, path, n, _) in TRAFFIC {
                        for _ in 0..*n {
                            hit(&c, &format!("{base}{path}"), host).await;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect()
}

/// The scrape configuration of a ServiceMonitor for Sluice's metrics Service, written out:
/// Prometheus Operator gives each target the labels `namespace`, `service`, `pod`,
/// `container`, `endpoint` (and `job` after the Service), and leaves `honor_labels` false. On
/// a clash Prometheus then renames the series' own label to `exported_<name>`: the request and
/// certificate series' `namespace` (the Ingress's, the Secret's) becomes `exported_namespace`,
/// the backend `service` becomes `exported_service`. ingress-nginx's dashboard relies on that
/// (its `$namespace` is the controller's, matched against `namespace`; `$exported_namespace`
/// the Ingresses'), so a plain static scrape, where `namespace` stays the Ingress's, would not
/// show what a cluster shows.
fn scrape_config(admin: SocketAddr) -> Value {
    json!({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": JOB,
            "metrics_path": "/metrics",
            "honor_labels": false,
            "static_configs": [{
                "targets": [admin.to_string()],
                "labels": {
                    "namespace": NAMESPACE,
                    "service": JOB,
                    "pod": POD,
                    "container": "controller",
                    "endpoint": "metrics",
                },
            }],
        }],
    })
}

/// The path of ingress-nginx's dashboard, fetched by tests/ingress-nginx-dashboard/fetch.
fn ingress_nginx_dashboard() -> PathBuf {
    go_script_output("tests/ingress-nginx-dashboard/fetch")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Waits until a line of /metrics starting with `name` (labels or not) has value `value`.
async fn wait_value(s: &Sluice, name: &str, value: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = metrics(s).await;
        let found = text.lines().any(|l| {
            l.strip_prefix(name).is_some_and(|r| r.starts_with([' ', '{']))
                && l.rsplit(' ').next() == Some(value)
        });
        if found {
            return;
        }
        assert!(Instant::now() < deadline, "no {name} {value} in:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboards_and_alerts_work_against_a_real_prometheus() {
    let started = Instant::now();
    let rules = chart_rules();
    let dashboards = [
        Dashboard {
            name: "ingress-nginx",
            json: read_json(&ingress_nginx_dashboard()),
            // Its certificate panel filters on `kubernetes_pod_name` (a label of old
            // annotation-based scrape configs, which no ServiceMonitor sets) and `ingress`
            // (which the certificate metric has not, in ingress-nginx either): with a
            // controller or an Ingress picked, that panel is empty against ingress-nginx too.
            all_only: &["controller", "ingress"],
        },
        Dashboard {
            name: "sluice",
            json: read_json(&root().join("deploy/grafana/sluice.json")),
            all_only: &["ingress"],
        },
    ];

    // Every state at once, in one manifests directory.
    let web = echo("web").await;
    let errors = echo("errors").await;
    let secure = echo("secure").await;
    let flaky_live = echo("flaky").await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc-web.yaml", &service("web", &[web]));
    m.write("ing-web.yaml", &ingress("web", "web.example.com", &[("/", "Prefix", "web")], &[]));
    m.write("svc-errors.yaml", &service("errors", &[errors]));
    m.write(
        "ing-errors.yaml",
        &ingress("errors", "errors.example.com", &[("/", "Prefix", "errors")], &[]),
    );
    // Refused: an error diagnostic (SnippetRefused).
    m.write(
        "ing-refused.yaml",
        &ingress(
            "refused",
            "refused.example.com",
            &[("/", "Prefix", "web")],
            &[(
                "nginx.ingress.kubernetes.io/configuration-snippet",
                "more_set_headers \"X-A: b\";",
            )],
        ),
    );
    // A certificate that expires in a week.
    let ca = Ca::new("dashboards CA");
    let now = time::OffsetDateTime::now_utc();
    let pem = ca.sign(&["secure.example.com"], "secure.example.com", |p| {
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(7);
    });
    m.write("secret-secure.yaml", &tls_secret("secure-tls", &pem));
    m.write("svc-secure.yaml", &service("secure", &[secure]));
    m.write(
        "ing-secure.yaml",
        &with_tls(
            ingress("secure", "secure.example.com", &[("/", "Prefix", "secure")], &[]),
            &[(&["secure.example.com"][..], Some("secure-tls"))],
        ),
    );
    // No ready endpoint: a warning diagnostic (NoReadyEndpoints).
    m.write("svc-idle.yaml", &service_with("idle", &[], &[unused_addr()]));
    m.write("ing-idle.yaml", &ingress("idle", "idle.example.com", &[("/", "Prefix", "idle")], &[]));
    // Nothing listens at the only endpoint: 502, upstream errors (connect).
    m.write("svc-dead.yaml", &service("dead", &[unused_addr()]));
    m.write("ing-dead.yaml", &ingress("dead", "dead.example.com", &[("/", "Prefix", "dead")], &[]));
    // One endpoint of two refuses connections: ejected after 5 failures in a row.
    m.write("svc-flaky.yaml", &service("flaky", &[flaky_live, unused_addr()]));
    m.write(
        "ing-flaky.yaml",
        &ingress("flaky", "flaky.example.com", &[("/", "Prefix", "flaky")], &[]),
    );
    let s =
        Sluice::start_with_env(m.path(), &[], &[("POD_NAME", POD), ("POD_NAMESPACE", NAMESPACE)]);

    // Each Ingress answers as described (checked once, so a broken set-up fails here).
    let c = client();
    for (host, path, _, want) in TRAFFIC {
        assert_eq!(hit(&c, &s.url(path), host).await, *want, "{host}{path}");
    }
    let (reply, seen) = common::tls::get(s.https, "secure.example.com", "/").await;
    assert_eq!((reply.status.as_u16(), seen.cn.as_str()), (200, "secure.example.com"));

    let p = Prometheus::start(scrape_config(s.admin), &rule_file(&rules)).await;
    // Once Prometheus has scraped Sluice, a manifest file that does not parse: the last change
    // fails (ingress-nginx's "Last Config Failed" panel counts it), and the change is applied
    // while Prometheus watches (the apply duration panels need one in their window).
    let deadline = Instant::now() + DEADLINE;
    while !p.query(&format!("up{{job=\"{JOB}\"}} == 1")).await.is_ok_and(|d| has_data(&d).is_ok()) {
        assert!(Instant::now() < deadline, "Prometheus never scraped Sluice at {}", s.admin);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    m.write(
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\nspec: [unclosed\n",
    );
    wait_value(&s, "sluice_source_errors", "1").await;

    let load = traffic(&s);
    let mut passed = HashSet::new();
    let failures = loop {
        let mut failures = Vec::new();
        for d in &dashboards {
            failures.extend(check_dashboard(&p, d, &mut passed).await);
        }
        failures.extend(check_rules(&p, &rules).await);
        if failures.is_empty() || Instant::now() >= deadline {
            break failures;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for task in load {
        task.abort();
    }
    assert!(
        failures.is_empty(),
        "after {:?}, {} checks failed against Prometheus:\n{}\n\nSluice's /metrics (no buckets):\n{}",
        started.elapsed(),
        failures.len(),
        failures.join("\n"),
        metrics(&s)
            .await
            .lines()
            .filter(|l| !l.contains("_bucket{"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "{} dashboard queries returned data and {} alerting rules fired, after {:?}",
        passed.len(),
        rules.len(),
        started.elapsed()
    );
}
