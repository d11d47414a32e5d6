//! Malformed input never panics; each mistake is reported and only the faulty part is left
//! out. Fixture: `bad-input.yaml`.

mod common;

use common::*;
use sluice_model::{Reason, RoutingTable, Severity};

const APP: &str = "-> bad-app-80 [10.11.0.1:8080]";

fn table() -> RoutingTable {
    translate_fixture("bad-input")
}

// An Ingress with no spec at all (only the legacy class annotation): InvalidBackend, no route.
#[test]
fn ingress_without_spec_is_reported() {
    let t = table();
    assert_eq!(summary_for(&t, "Ingress bad/no-spec"), vec!["Error InvalidBackend"]);
    assert_diag(&t, Severity::Error, Reason::InvalidBackend, "Ingress bad/no-spec", "neither");
    assert!(t.routes.iter().all(|r| r.ingress.as_deref() != Some(&nn("bad/no-spec"))));
}

// Rules without `http` (one with a host, one empty): no path and no diagnostic; the host exists
// and answers its 404; the Ingress's complete rule works.
#[test]
fn rule_without_http_has_no_paths() {
    let t = table();
    assert_no_diag(&t, "Ingress bad/no-http");
    assert!(hosts(&t).contains(&"nohttp.bad.test".to_string()), "{:?}", hosts(&t));
    assert_eq!(route(&t, "nohttp.bad.test", "/"), "404");
    assert_eq!(route(&t, "ok.bad.test", "/x"), format!("bad/no-http {APP}"));
}

// An invalid pathType and a path not starting with "/" are errors and those paths are skipped;
// a missing pathType is a warning and the path is served as ImplementationSpecific; a backend
// with neither service nor resource answers 503; the valid path keeps working.
#[test]
fn bad_paths_are_reported_and_skipped() {
    let t = table();
    let ing = "Ingress bad/bad-paths";
    let host = "paths.bad.test";
    assert_diag(&t, Severity::Error, Reason::InvalidPath, ing, "\"Regex\"");
    assert_diag(
        &t,
        Severity::Error,
        Reason::InvalidPath,
        ing,
        "\"relative\" must start with \"/\"",
    );
    assert_diag(
        &t,
        Severity::Warning,
        Reason::InvalidPath,
        ing,
        "\"/legacy\": pathType is required",
    );
    assert_diag(
        &t,
        Severity::Error,
        Reason::InvalidBackend,
        ing,
        "exactly one of service and resource",
    );
    assert_eq!(
        summary_for(&t, ing),
        vec![
            "Error InvalidPath",
            "Error InvalidPath",
            "Error InvalidBackend",
            "Warning InvalidPath"
        ],
        "{}",
        dump(&t)
    );
    let rows = [
        ("/regex", "default", "404".to_string()),
        ("/relative", "default", "404".to_string()),
        ("/legacy", "ImplementationSpecific /legacy", format!("bad/bad-paths {APP}")),
        ("/legacy/page", "ImplementationSpecific /legacy", format!("bad/bad-paths {APP}")),
        ("/legacyx", "default", "404".to_string()),
        ("/empty-backend", "Prefix /empty-backend", "503".to_string()),
        ("/ok", "Prefix /ok", format!("bad/bad-paths {APP}")),
    ];
    for (path, want_rule, want_route) in rows {
        assert_eq!(rule(&t, host, path), want_rule, "{path}");
        assert_eq!(route(&t, host, path), want_route, "{path}");
    }
}

// The whole fixture translates (no panic) to exactly these diagnostics.
#[test]
fn bad_input_fixture_diagnostics_are_exact() {
    let t = table();
    assert_eq!(
        summary(&t),
        vec![
            "Error InvalidPath Ingress bad/bad-paths",
            "Error InvalidPath Ingress bad/bad-paths",
            "Error InvalidBackend Ingress bad/bad-paths",
            "Error InvalidBackend Ingress bad/no-spec",
            "Warning InvalidPath Ingress bad/bad-paths",
        ],
        "{}",
        dump(&t)
    );
}

// Odd but parseable objects elsewhere never panic either: a Service without spec, a slice
// without ports or endpoints, an Ingress without metadata namespace (defaulted), an
// IngressClass without spec, and a Service port number the slice does not list.
#[test]
fn odd_objects_do_not_panic() {
    let odd = "
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: broken}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: sluice}
spec: {controller: sluice.dev/ingress-controller}
---
apiVersion: v1
kind: Service
metadata: {name: bare}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: bare-1
  labels: {kubernetes.io/service-name: bare}
addressType: IPv4
endpoints: []
---
apiVersion: v1
kind: Service
metadata: {name: ports}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ports-1
  labels: {kubernetes.io/service-name: ports}
addressType: IPv4
ports: [{name: other, port: 9999}]
endpoints: [{addresses: [\"10.12.0.1\"]}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: odd}
spec:
  ingressClassName: sluice
  rules:
    - host: odd.test
      http:
        paths:
          - {path: /bare, pathType: Prefix, backend: {service: {name: bare, port: {number: 80}}}}
          - {path: /ports, pathType: Prefix, backend: {service: {name: ports, port: {number: 80}}}}
          - {path: /noport, pathType: Prefix, backend: {service: {name: ports}}}
";
    let t = sluice_translate::translate(&snapshot_of(&[odd]), &Default::default());
    assert_eq!(route(&t, "odd.test", "/bare"), "503");
    assert_eq!(route(&t, "odd.test", "/ports"), "default/odd -> default-ports-80 []");
    assert_eq!(route(&t, "odd.test", "/noport"), "503");
    assert_eq!(
        summary(&t),
        vec![
            "Error InvalidBackend Ingress default/odd",
            "Error MissingServicePort Ingress default/odd",
            "Warning NoReadyEndpoints Ingress default/odd",
        ],
        "{}",
        dump(&t)
    );
}
