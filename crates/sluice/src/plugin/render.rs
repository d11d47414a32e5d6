//! What `kubectl sluice` prints: tables made from the admin port's JSON and from API objects.
//! Pure functions, so that the output is tested without a cluster.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressServiceBackend};
use serde::Serialize;
use serde_json::Value;

use crate::admin::InfoView;
use crate::certs::CertView;

/// Columns padded to their widest cell, three spaces apart (as kubectl's and ingress-nginx's
/// tables), trailing spaces trimmed.
pub fn table<S: AsRef<str>>(header: &[&str], rows: &[Vec<S>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.as_ref().chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (cell, w) in cells.zip(&widths) {
            let _ = write!(text, "{cell:<w$}   ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(AsRef::as_ref));
    }
    out
}

/// Label/value lines, values aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let label = format!("{k}:");
        let _ = writeln!(out, "{label:<width$}  {v}");
    }
    out
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The `address:port` of each endpoint of one `/debug/backends` entry.
fn backend_endpoints(backend: &Value) -> Vec<String> {
    backend["endpoints"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    let (addr, port) = (str_of(e, "address"), str_of(e, "port"));
                    if addr.contains(':') {
                        format!("[{addr}]:{port}")
                    } else {
                        format!("{addr}:{port}")
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `backends`: one row per backend of `/debug/backends`.
pub fn backends(list: &[Value]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|b| {
            let service = &b["service"];
            let endpoints = backend_endpoints(b);
            let balance = match b["sessionAffinityConfig"]["mode"].as_str() {
                Some(mode) if !mode.is_empty() => format!("sticky ({mode})"),
                _ if b["upstreamHashByConfig"].is_object() => "hash".to_string(),
                _ => str_of(b, "load-balance").to_string(),
            };
            vec![
                str_of(b, "name").to_string(),
                format!("{}/{}", str_of(service, "namespace"), str_of(service, "name")),
                str_of(b, "port").to_string(),
                balance,
                endpoints.len().to_string(),
                if endpoints.is_empty() { "(none ready: 503)".into() } else { endpoints.join(",") },
            ]
        })
        .collect();
    table(&["NAME", "SERVICE", "PORT", "BALANCE", "READY", "ENDPOINTS"], &rows)
}

/// `backends --list`: the names, one a line.
pub fn backend_names(list: &[Value]) -> String {
    list.iter().map(|b| format!("{}\n", str_of(b, "name"))).collect()
}

/// The hosts of `/debug/config` matching `host` (every host when `None`; `_` and `*` both
/// name the catch-all). A name without rules of its own finds the wildcard that serves it, as
/// requests do.
pub fn config_hosts<'a>(config: &'a Value, host: Option<&str>) -> Vec<&'a Value> {
    let hosts = config["hosts"].as_array().map(Vec::as_slice).unwrap_or_default();
    let Some(host) = host else { return hosts.iter().collect() };
    let host = if host == "_" { "*".to_string() } else { host.to_ascii_lowercase() };
    let wildcard = host.split_once('.').map(|(_, parent)| format!("*.{parent}"));
    [Some(host), wildcard]
        .into_iter()
        .flatten()
        .map(|name| hosts.iter().filter(|h| str_of(h, "host") == name).collect::<Vec<_>>())
        .find(|found| !found.is_empty())
        .unwrap_or_default()
}

/// `conf`: the routes of `hosts` (from `/debug/config`), then the diagnostics naming an
/// Ingress those routes come from.
pub fn conf(config: &Value, hosts: &[&Value]) -> String {
    let mut rows = Vec::new();
    let mut ingresses = Vec::new();
    for h in hosts {
        let routes =
            h["paths"].as_array().into_iter().flatten().chain(std::iter::once(&h["default"]));
        for r in routes {
            let path = match str_of(r, "path") {
                "" => "(default)",
                p => p,
            };
            let kind = match str_of(r, "path_type") {
                "Default" => "",
                k => k,
            };
            let ingress = r["ingress"].as_str().unwrap_or("-");
            if r["ingress"].is_string() && !ingresses.contains(&ingress) {
                ingresses.push(ingress);
            }
            let t = &r["target"];
            let (target, endpoints) = if let Some(backend) = t["backend"].as_str() {
                let eps: Vec<&str> = t["endpoints"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                (
                    format!("{backend} ({}:{})", str_of(t, "service"), str_of(t, "port")),
                    if eps.is_empty() { "(none ready: 503)".to_string() } else { eps.join(",") },
                )
            } else if let Some(status) = t["status"].as_u64() {
                let reason = str_of(t, "reason");
                (
                    format!("answers {status}"),
                    if reason.is_empty() { "-".into() } else { reason.into() },
                )
            } else if let Some(to) = t["to"].as_str() {
                (format!("redirects to {to}"), "-".into())
            } else {
                ("?".into(), "-".into())
            };
            rows.push(vec![
                str_of(h, "host").to_string(),
                path.to_string(),
                kind.to_string(),
                ingress.to_string(),
                target,
                endpoints,
            ]);
        }
    }
    let mut out = table(&["HOST", "PATH", "TYPE", "INGRESS", "TARGET", "ENDPOINTS"], &rows);
    // The diagnostics that concern these routes: their Ingresses' own.
    for d in config["diagnostics"].as_array().into_iter().flatten() {
        let object = &d["object"];
        let name = format!("{}/{}", str_of(object, "namespace"), str_of(object, "name"));
        if str_of(object, "kind") == "Ingress" && ingresses.contains(&name.as_str()) {
            let severity = str_of(d, "severity").to_ascii_lowercase();
            let _ = writeln!(out, "{severity}: Ingress {name}: {}", str_of(d, "message"));
        }
    }
    out
}

/// `certs --host H`: one certificate, field by field.
pub fn cert(c: &CertView) -> String {
    let secret = match &c.secret {
        Some(s) => s.clone(),
        None => "(none: the certificate Sluice generated at start-up)".to_string(),
    };
    let mut pairs = vec![("Host", c.host.clone())];
    if c.default && c.host != "_" {
        pairs.push((
            "Presented",
            "the default certificate (no usable certificate of its own)".into(),
        ));
    }
    pairs.extend([
        ("Secret", secret),
        ("Subject", c.subject.clone()),
        ("Names", if c.names.is_empty() { "-".into() } else { c.names.join(", ") }),
        ("Issuer", c.issuer.clone()),
        ("Serial", c.serial.clone()),
        ("Not before", c.not_before.clone()),
        ("Not after", c.not_after.clone()),
        ("Expires", days(c.days_left)),
        ("Chain", format!("{} certificate(s)", c.chain_length)),
    ]);
    fields(&pairs)
}

/// `n` and the noun, in the plural unless `n` is 1.
fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

fn days(left: i64) -> String {
    match left {
        ..0 => format!("EXPIRED {} days ago", -left),
        0 => "in less than a day".to_string(),
        1 => "in 1 day".to_string(),
        n => format!("in {n} days"),
    }
}

/// `certs`: every certificate presented, one a row.
pub fn certs(list: &[CertView]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            vec![
                c.host.clone(),
                c.secret.clone().unwrap_or_else(|| "(generated)".into()),
                c.subject.clone(),
                c.issuer.clone(),
                c.not_after.clone(),
                c.days_left.to_string(),
            ]
        })
        .collect();
    table(&["HOST", "SECRET", "SUBJECT", "ISSUER", "NOT AFTER", "DAYS LEFT"], &rows)
}

/// One row of `ingresses`: one path of one rule, as ingress-nginx's plugin lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngressRow {
    /// The Ingress's namespace.
    pub namespace: String,
    /// Its name.
    pub ingress: String,
    /// The rule's host (`*` for a default backend without rules).
    pub host: String,
    /// The path (empty for a rule without paths).
    pub path: String,
    /// The addresses of its status, comma-separated.
    pub addresses: String,
    /// Whether a TLS entry lists the host.
    pub tls: bool,
    /// The Service.
    pub service: String,
    /// Its port (number or name).
    pub service_port: String,
    /// Ready endpoint addresses of the Service's EndpointSlices; `None` when it has none.
    pub endpoints: Option<usize>,
}

fn service_and_port(svc: Option<&IngressServiceBackend>) -> (String, String) {
    let Some(svc) = svc else { return (String::new(), String::new()) };
    let port = svc.port.as_ref().map_or(String::new(), |p| match (p.number, &p.name) {
        (Some(n), _) if n > 0 => n.to_string(),
        (_, Some(name)) => name.clone(),
        _ => String::new(),
    });
    (svc.name.clone(), port)
}

/// Ready endpoint addresses per `(namespace, service)`, from EndpointSlices (an endpoint
/// counts unless its `ready` condition is false, as EndpointSlice consumers read it).
pub fn ready_endpoints(slices: &[EndpointSlice]) -> BTreeMap<(String, String), usize> {
    let mut ready = BTreeMap::new();
    for slice in slices {
        let Some(service) =
            slice.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/service-name"))
        else {
            continue;
        };
        let ns = slice.metadata.namespace.clone().unwrap_or_default();
        let count: usize = slice
            .endpoints
            .iter()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
            .map(|e| e.addresses.len())
            .sum();
        *ready.entry((ns, service.clone())).or_insert(0) += count;
    }
    ready
}

/// The rows of `ingresses` (sorted by namespace and name, rules and paths in their order),
/// with ready endpoint counts from `ready`, keeping only `host` when given.
pub fn ingress_rows(
    ingresses: &[Ingress],
    ready: &BTreeMap<(String, String), usize>,
    host: Option<&str>,
) -> Vec<IngressRow> {
    let mut sorted: Vec<&Ingress> = ingresses.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let mut rows = Vec::new();
    for ing in sorted {
        let namespace = ing.metadata.namespace.clone().unwrap_or_default();
        let name = ing.metadata.name.clone().unwrap_or_default();
        let addresses: Vec<String> = ing
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|i| i.ip.iter().chain(i.hostname.iter()).cloned())
            .collect();
        let Some(spec) = &ing.spec else { continue };
        let tls_hosts: Vec<&str> = spec
            .tls
            .iter()
            .flatten()
            .flat_map(|t| t.hosts.iter().flatten().map(String::as_str))
            .collect();
        let default =
            service_and_port(spec.default_backend.as_ref().and_then(|b| b.service.as_ref()));
        let mut row = |host: &str, path: &str, (service, port): (String, String)| {
            let endpoints = ready.get(&(namespace.clone(), service.clone())).copied();
            rows.push(IngressRow {
                namespace: namespace.clone(),
                ingress: name.clone(),
                host: host.to_string(),
                path: path.to_string(),
                addresses: addresses.join(","),
                tls: tls_hosts.contains(&host),
                service,
                service_port: port,
                endpoints,
            });
        };
        let rules = spec.rules.as_deref().unwrap_or_default();
        if rules.is_empty() {
            if !default.0.is_empty() {
                row("*", "", default.clone());
            }
            continue;
        }
        for rule in rules {
            let rule_host = rule.host.as_deref().unwrap_or("");
            match &rule.http {
                None => row(rule_host, "", default.clone()),
                Some(http) => {
                    for p in &http.paths {
                        let path = p.path.as_deref().unwrap_or("");
                        row(rule_host, path, service_and_port(p.backend.service.as_ref()));
                    }
                }
            }
        }
    }
    if let Some(h) = host {
        rows.retain(|r| r.host == h);
    }
    rows
}

/// `ingresses`: the table of `rows`, with a NAMESPACE column for `--all-namespaces`.
pub fn ingresses(rows: &[IngressRow], all_namespaces: bool) -> String {
    let mut header = vec![
        "INGRESS NAME",
        "HOST+PATH",
        "ADDRESSES",
        "TLS",
        "SERVICE",
        "SERVICE PORT",
        "ENDPOINTS",
    ];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![
                r.ingress.clone(),
                format!("{}{}", r.host, r.path),
                r.addresses.clone(),
                if r.tls { "YES" } else { "NO" }.to_string(),
                r.service.clone(),
                r.service_port.clone(),
                r.endpoints.map_or_else(|| "N/A".to_string(), |n| n.to_string()),
            ];
            if all_namespaces {
                cells.insert(0, r.namespace.clone());
            }
            cells
        })
        .collect();
    table(&header, &cells)
}

/// What `info` shows of the Service in front of the controller.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceInfo {
    /// `namespace/name`.
    pub name: String,
    /// `spec.type`.
    pub kind: String,
    /// `spec.clusterIP`.
    pub cluster_ip: String,
    /// The load balancer's IPs and hostnames (`status.loadBalancer.ingress`), else
    /// `spec.externalIPs`.
    pub external: Vec<String>,
    /// `name port/protocol` per port.
    pub ports: Vec<String>,
}

/// What `info` shows of the pod it asked.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PodInfo {
    /// `namespace/name`.
    pub name: String,
    /// `status.podIP`.
    pub ip: String,
    /// `status.phase`.
    pub phase: String,
}

/// `info`: the Service (if found), the pod asked, and the controller's own account.
pub fn info(service: Result<&ServiceInfo, &str>, pod: &PodInfo, controller: &InfoView) -> String {
    let mut pairs = Vec::new();
    match service {
        Ok(s) => {
            pairs.push(("Service", format!("{} ({})", s.name, s.kind)));
            pairs.push(("Cluster IP", s.cluster_ip.clone()));
            let external = if s.external.is_empty() {
                "(none yet)".to_string()
            } else {
                s.external.join(", ")
            };
            pairs.push(("LoadBalancer IP|CNAME", external));
            pairs.push(("Ports", s.ports.join(", ")));
        }
        Err(why) => pairs.push(("Service", why.to_string())),
    }
    pairs.push(("Pod", format!("{} ({}, {})", pod.name, pod.ip, pod.phase)));
    pairs.push(("Version", controller.version.clone()));
    pairs.push((
        "Classes",
        format!(
            "IngressClass controller {}, annotation class {}",
            controller.identity.controller_class, controller.identity.ingress_class
        ),
    ));
    pairs.push(("Ready", if controller.ready { "yes" } else { "no" }.to_string()));
    let applied = match (&controller.applied_at, controller.applied_seconds_ago) {
        (Some(at), Some(ago)) => format!("{at} ({ago} s ago)"),
        _ => "not yet".to_string(),
    };
    pairs.push(("Generation", controller.generation.to_string()));
    pairs.push(("Applied", applied));
    pairs.push((
        "Configuration",
        [
            count(controller.hosts, "host"),
            count(controller.backends, "backend"),
            count(controller.certificates, "certificate"),
            count(controller.errors, "error"),
            count(controller.warnings, "warning"),
        ]
        .join(", "),
    ));
    if controller.source_errors > 0 {
        let files = controller.source_errors;
        pairs.push(("Source errors", format!("{files} (manifest files that do not parse)")));
    }
    fields(&pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns_three_spaces_apart() {
        let out = table(&["NAME", "X"], &[vec!["a-long-name", "1"], vec!["b", "22"]]);
        assert_eq!(out, "NAME          X\na-long-name   1\nb             22\n");
    }

    #[test]
    fn backends_show_name_service_and_endpoints() {
        let list = vec![
            json!({"name": "web-app-80", "service": {"namespace": "web", "name": "app"}, "port": "80",
                   "load-balance": "round_robin", "sessionAffinityConfig": {"name": "", "mode": ""},
                   "endpoints": [{"address": "10.0.0.1", "port": "8080"}, {"address": "fd00::1", "port": "8080"}]}),
            json!({"name": "web-down-80", "service": {"namespace": "web", "name": "down"}, "port": "80",
                   "load-balance": "ewma", "sessionAffinityConfig": {"name": "cookie", "mode": "balanced"},
                   "endpoints": []}),
        ];
        let out = backends(&list);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{out}");
        assert!(
            lines[1].contains("web/app") && lines[1].contains("10.0.0.1:8080,[fd00::1]:8080"),
            "{out}"
        );
        assert!(
            lines[2].contains("sticky (balanced)") && lines[2].contains("(none ready: 503)"),
            "{out}"
        );
        assert_eq!(backend_names(&list), "web-app-80\nweb-down-80\n");
    }

    #[test]
    fn conf_lists_one_host_and_its_ingress_diagnostics() {
        let config = json!({
            "generation": 3,
            "hosts": [
                {"host": "a.example.com", "paths": [{"path": "/api", "path_type": "Prefix", "ingress": "web/a",
                    "target": {"backend": "web-api-80", "service": "web/api", "port": "80", "endpoints": ["10.0.0.1:80"]}}],
                 "default": {"path": "", "path_type": "Default", "ingress": null, "target": {"status": 404, "reason": "no rule"}}},
                {"host": "b.example.com", "paths": [], "default": {"path": "", "path_type": "Default", "ingress": "web/b",
                    "target": {"status": 503, "reason": "refused"}}},
            ],
            "diagnostics": [
                {"severity": "Warning", "object": {"kind": "Ingress", "namespace": "web", "name": "a"}, "message": "ignored x"},
                {"severity": "Error", "object": {"kind": "Ingress", "namespace": "web", "name": "b"}, "message": "refused y"},
            ],
        });
        let hosts = config_hosts(&config, Some("A.example.com"));
        assert_eq!(hosts.len(), 1);
        let out = conf(&config, &hosts);
        assert!(
            out.contains("/api")
                && out.contains("web-api-80 (web/api:80)")
                && out.contains("10.0.0.1:80"),
            "{out}"
        );
        assert!(out.contains("(default)") && out.contains("answers 404"), "{out}");
        assert!(out.contains("warning: Ingress web/a: ignored x"), "{out}");
        assert!(!out.contains("refused y"), "another host's diagnostics are left out: {out}");
        assert!(config_hosts(&config, Some("c.example.com")).is_empty());
        let wildcard =
            json!({"hosts": [{"host": "*.apps.example.com"}, {"host": "x.apps.example.com"}]});
        assert_eq!(
            config_hosts(&wildcard, Some("x.apps.example.com"))[0]["host"],
            "x.apps.example.com"
        );
        assert_eq!(
            config_hosts(&wildcard, Some("y.apps.example.com"))[0]["host"],
            "*.apps.example.com"
        );
        assert!(config_hosts(&wildcard, Some("a.b.apps.example.com")).is_empty(), "one label only");
        assert_eq!(config_hosts(&config, None).len(), 2);
    }

    #[test]
    fn ingress_rows_follow_rules_paths_and_ready_endpoints() {
        let ing: Ingress = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "tls": [{"hosts": ["a.example.com"]}],
                "defaultBackend": {"service": {"name": "fallback", "port": {"name": "http"}}},
                "rules": [
                    {"host": "a.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "app", "port": {"number": 80}}}},
                        {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": {"number": 8080}}}},
                    ]}},
                    {"host": "b.example.com"},
                ],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.net"}]}},
        }))
        .unwrap();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "app-x", "namespace": "shop", "labels": {"kubernetes.io/service-name": "app"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"]},
            ],
        }))
        .unwrap();
        let ready = ready_endpoints(&[slice]);
        let rows = ingress_rows(&[ing], &ready, None);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (rows[0].host.as_str(), rows[0].path.as_str(), rows[0].endpoints),
            ("a.example.com", "/", Some(2))
        );
        assert_eq!(rows[0].addresses, "203.0.113.7,lb.example.net");
        assert!(rows[0].tls && !rows[2].tls);
        assert_eq!(
            (rows[1].service.as_str(), rows[1].service_port.as_str(), rows[1].endpoints),
            ("api", "8080", None)
        );
        assert_eq!((rows[2].service.as_str(), rows[2].service_port.as_str()), ("fallback", "http"));
        let out = ingresses(&rows, false);
        assert!(out.starts_with("INGRESS NAME   HOST+PATH"), "{out}");
        assert!(out.lines().nth(1).unwrap().contains("a.example.com/"), "{out}");
        assert!(out.lines().nth(2).unwrap().trim_end().ends_with("N/A"), "{out}");
        assert!(ingresses(&rows, true).starts_with("NAMESPACE   INGRESS NAME"));
        let b_only = ingress_rows(&[], &ready, Some("b.example.com"));
        assert!(b_only.is_empty());
    }

    #[test]
    fn certificate_expiry_reads_as_days() {
        assert_eq!(days(-3), "EXPIRED 3 days ago");
        assert_eq!(days(0), "in less than a day");
        assert_eq!(days(89), "in 89 days");
    }
}
