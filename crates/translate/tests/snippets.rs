//! Snippets through the whole translation: the ConfigMap's gates, `server-snippet` taken from
//! the oldest Ingress of a host that has one (as ingress-nginx), refusals failing the Ingress
//! closed. The directives themselves are tested in the `snippet` module and end to end.

mod common;

use common::*;
use sluice_model::{Reason, RoutingTable, Settings, Severity};

fn snippet_ingress(name: &str, created: &str, host: &str, path: &str, snippets: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: s\n  \
         creationTimestamp: \"{created}\"\n  annotations:\n{snippets}spec:\n  ingressClassName: sluice\n  \
         rules:\n  - host: {host}\n    http:\n      paths:\n      - path: {path}\n        pathType: Prefix\n        \
         backend:\n          service:\n            name: app\n            port:\n              number: 80\n"
    )
}

fn table(gates: &str) -> RoutingTable {
    let class = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: sluice\nspec:\n  controller: sluice.dev/ingress-controller\n";
    let config = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sluice-config\n  namespace: sluice-system\ndata:\n  location-snippet: \"add_header X-Cm 1;\"\n{gates}"
    );
    let server = |from: &str| {
        format!(
            "    nginx.ingress.kubernetes.io/server-snippet: \"more_set_headers 'X-From: {from}';\"\n"
        )
    };
    // Named against their age: the name order would pick the other one.
    let newer =
        snippet_ingress("a-newer", "2024-06-01T00:00:00Z", "h.test", "/new", &server("newer"));
    let older =
        snippet_ingress("z-older", "2024-01-01T00:00:00Z", "h.test", "/old", &server("older"));
    let bad = snippet_ingress(
        "bad",
        "2024-01-01T00:00:00Z",
        "bad.test",
        "/",
        "    nginx.ingress.kubernetes.io/configuration-snippet: \"add_header A b;\\nproxy_pass http://x;\"\n",
    );
    let app = "apiVersion: v1\nkind: Service\nmetadata: {name: app, namespace: s}\nspec:\n  ports: [{name: http, port: 80, targetPort: 8080}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: app-1\n  namespace: s\n  labels: {kubernetes.io/service-name: app}\naddressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\nendpoints:\n  - addresses: [\"10.10.0.1\"]\n    conditions: {ready: true}\n";
    let settings =
        Settings { configmap: Some(nn("sluice-system/sluice-config")), ..Settings::default() };
    let texts = [class, app, &config, &newer, &older, &bad];
    sluice_translate::translate(&snapshot_of(&texts), &settings)
}

/// The values of the snippet header rules of the route for `host` and `path`.
fn rules(t: &RoutingTable, host: &str, path: &str) -> Vec<String> {
    policy(t, host, path)
        .response
        .rules
        .iter()
        .map(|r| {
            format!("{}: {}", r.name, r.value.as_ref().map(|v| v.to_string()).unwrap_or_default())
        })
        .collect()
}

#[test]
fn the_oldest_ingress_server_snippet_applies_to_the_whole_host() {
    let t = table("  allow-snippet-annotations: \"true\"\n  annotations-risk-level: critical\n");
    // The server's rules first, then the location's (the ConfigMap's location-snippet).
    for path in ["/new", "/old", "/elsewhere"] {
        assert_eq!(rules(&t, "h.test", path), ["x-from: older", "x-cm: 1"], "{path}");
    }
    assert_eq!(route(&t, "h.test", "/new"), "s/a-newer -> s-app-80 [10.10.0.1:8080]");
    assert_no_diag(&t, "Ingress s/a-newer");
    assert_no_diag(&t, "Ingress s/z-older");
    // Outside the subset: the Ingress fails closed, naming the directive and its line.
    assert_eq!(route(&t, "bad.test", "/"), "503");
    assert_diag(
        &t,
        Severity::Error,
        Reason::SnippetRefused,
        "Ingress s/bad",
        "line 2: proxy_pass: not in the subset",
    );
}

#[test]
fn closed_gates_refuse_every_snippet_annotation_but_not_the_configmap_snippets() {
    for gates in
        ["", "  allow-snippet-annotations: \"true\"\n", "  annotations-risk-level: Critical\n"]
    {
        let t = table(gates);
        for (name, host, path) in [("a-newer", "h.test", "/new"), ("z-older", "h.test", "/old")] {
            assert_eq!(route(&t, host, path), "503", "{gates:?} {name}");
            assert_diag(
                &t,
                Severity::Error,
                Reason::SnippetRefused,
                &format!("Ingress s/{name}"),
                "ConfigMap",
            );
        }
        // The ConfigMap's own snippet needs no gate.
        assert_eq!(rules(&t, "h.test", "/elsewhere"), ["x-cm: 1"], "{gates:?}");
    }
}
