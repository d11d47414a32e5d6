//! Annotations and the controller ConfigMap. Fixture: `annotations.yaml`.

mod common;

use std::time::Duration;

use common::*;
use sluice_model::{Policy, Reason, RoutingTable, Settings, Severity};

const APP: &str = "-> annotations-app-80 [10.10.0.1:8080]";
const MIB: u64 = 1024 * 1024;

fn table() -> RoutingTable {
    translate_fixture("annotations")
}

fn with_configmap() -> RoutingTable {
    let settings =
        Settings { configmap: Some(nn("sluice-system/sluice-config")), ..Settings::default() };
    translate_fixtures(&["annotations"], &settings)
}

fn host(name: &str) -> String {
    format!("{name}.annotations.test")
}

fn ingress(name: &str) -> String {
    format!("Ingress annotations/{name}")
}

// proxy-* annotations set the route policy over ingress-nginx's defaults (1m, 5 s, 60 s,
// 60 s, 3 tries): 8m -> 8 MiB, 0 -> unlimited, "120" -> 120 s, tries/connect/send.
#[test]
fn proxy_annotations_set_the_policy() {
    let t = table();
    let rows = [
        ("plain", policy_with(|_| {})),
        ("body-8m", policy_with(|p| p.limits.max_body_size = Some(8 * MIB))),
        ("body-unlimited", policy_with(|p| p.limits.max_body_size = None)),
        ("read-120", policy_with(|p| p.limits.read_timeout = Duration::from_secs(120))),
        (
            "upstream",
            policy_with(|p| {
                p.retry.tries = 7;
                p.limits.connect_timeout = Duration::from_secs(2);
                p.limits.send_timeout = Duration::from_secs(300);
            }),
        ),
    ];
    for (name, want) in rows {
        assert_eq!(policy(&t, &host(name), "/"), want, "{name}");
        assert_eq!(route(&t, &host(name), "/"), format!("annotations/{name} {APP}"));
        assert_no_diag(&t, &ingress(name));
    }
    assert_eq!(policy(&t, &host("plain"), "/").limits.max_body_size, Some(MIB));
}

// A unit on a timeout (`120s`, which ingress-nginx silently ignores) is an InvalidAnnotation
// error; the default 60 s stays and the route is served.
#[test]
fn invalid_timeout_keeps_the_default_and_is_reported() {
    let t = table();
    assert_eq!(policy(&t, &host("read-120s"), "/").limits.read_timeout, Duration::from_secs(60));
    assert_eq!(policy(&t, &host("read-120s"), "/"), policy_with(|_| {}));
    assert_eq!(route(&t, &host("read-120s"), "/"), format!("annotations/read-120s {APP}"));
    assert_eq!(summary_for(&t, &ingress("read-120s")), vec!["Error InvalidAnnotation"]);
    assert_diag(
        &t,
        Severity::Error,
        Reason::InvalidAnnotation,
        &ingress("read-120s"),
        "proxy-read-timeout",
    );
}

// ConfigMap keys set the defaults; annotations override them; an invalid annotation falls
// back to the ConfigMap's value, not the built-in one.
#[test]
fn configmap_sets_defaults_that_annotations_override() {
    let t = with_configmap();
    let cm = policy_with(|p| {
        p.limits.max_body_size = Some(16 * MIB);
        p.limits.read_timeout = Duration::from_secs(90);
        p.retry.tries = 5;
    });
    let rows = [
        ("plain", cm.clone()),
        ("body-8m", overriding(&cm, |p| p.limits.max_body_size = Some(8 * MIB))),
        ("read-120", overriding(&cm, |p| p.limits.read_timeout = Duration::from_secs(120))),
        ("read-120s", cm.clone()),
        (
            "upstream",
            overriding(&cm, |p| {
                p.retry.tries = 7;
                p.limits.connect_timeout = Duration::from_secs(2);
                p.limits.send_timeout = Duration::from_secs(300);
            }),
        ),
    ];
    for (name, want) in rows {
        assert_eq!(policy(&t, &host(name), "/"), want, "{name}");
    }
    // The built-in 404 carries the ConfigMap's policy too.
    assert_eq!(policy(&t, "nowhere.test", "/"), cm);
}

/// `base` with some fields changed.
fn overriding(base: &Policy, f: impl FnOnce(&mut Policy)) -> Policy {
    let mut p = base.clone();
    f(&mut p);
    p
}

// ConfigMap keys Sluice does not implement are warned about; `*-snippet` keys are refused
// (error); an invalid value keeps the default (connect timeout `10s` -> 5 s).
#[test]
fn configmap_unknown_snippet_and_invalid_keys_are_reported() {
    let t = with_configmap();
    let cm = "ConfigMap sluice-system/sluice-config";
    assert_eq!(
        summary_for(&t, cm),
        vec![
            "Error SnippetRefused",
            "Error InvalidConfigMapKey",
            "Warning UnsupportedConfigMapKey"
        ],
        "{}",
        dump(&t)
    );
    assert_diag(&t, Severity::Warning, Reason::UnsupportedConfigMapKey, cm, "enable-brotli");
    assert_diag(&t, Severity::Error, Reason::SnippetRefused, cm, "http-snippet");
    assert_diag(&t, Severity::Error, Reason::InvalidConfigMapKey, cm, "proxy-connect-timeout");
    assert_eq!(policy(&t, &host("plain"), "/").limits.connect_timeout, Duration::from_secs(5));
    // Without Settings.configmap the ConfigMap is not read at all.
    assert_no_diag(&table(), cm);
}

// Snippets are refused: SnippetRefused error, and EVERY route of the Ingress answers 503 -- its
// paths and its defaultBackend (the unmatched paths of its host) -- while other Ingresses
// keep serving.
#[test]
fn snippets_are_refused_and_fail_the_whole_ingress_closed() {
    let t = table();
    for (name, path) in
        [("snippet", "/app"), ("snippet", "/app/x"), ("snippet", "/other"), ("server-snippet", "/")]
    {
        assert_eq!(route(&t, &host(name), path), "503", "{name} {path}");
        assert_eq!(owner(&t, &host(name), path), format!("annotations/{name}"), "{name} {path}");
    }
    assert_eq!(rule(&t, &host("snippet"), "/other"), "default");
    for (name, annotation) in
        [("snippet", "configuration-snippet"), ("server-snippet", "server-snippet")]
    {
        assert_eq!(summary_for(&t, &ingress(name)), vec!["Error SnippetRefused"]);
        assert_diag(&t, Severity::Error, Reason::SnippetRefused, &ingress(name), annotation);
    }
    assert_eq!(route(&t, &host("plain"), "/"), format!("annotations/plain {APP}"));
}

// Security annotations that cannot be applied fail closed: basic authentication without its
// Secret answers 503 on every route of the Ingress, as an invalid annotation. (No annotation
// is left that Sluice cannot enforce at all: `auth-url` is external authentication, and
// `auth-tls-match-cn` without `auth-tls-secret` asks for nothing, as in ingress-nginx.)
#[test]
fn unenforceable_security_annotations_fail_closed() {
    let t = table();
    assert_eq!(route(&t, &host("auth-url"), "/"), format!("annotations/auth-url {APP}"));
    let access = policy(&t, &host("auth-url"), "/").access.expect("an access policy");
    assert!(access.external.is_some());
    assert_no_diag(&t, &ingress("auth-url"));
    assert_eq!(route(&t, &host("auth-type"), "/deep/path"), "503");
    assert_eq!(summary_for(&t, &ingress("auth-type")), vec!["Error InvalidAnnotation"]);
    assert_diag(
        &t,
        Severity::Error,
        Reason::InvalidAnnotation,
        &ingress("auth-type"),
        "basic without auth-secret",
    );
}

// The address lists apply: the routes are served, each with its list in its policy (the
// legacy `whitelist-source-range` read as `allowlist-source-range`).
#[test]
fn address_lists_are_policy() {
    let t = table();
    let rows = [
        ("whitelist", vec!["10.0.0.0/8", "192.168.0.0/16"], vec![]),
        ("allowlist", vec!["10.0.0.0/8"], vec![]),
        ("denylist", vec![], vec!["203.0.113.0/24"]),
    ];
    for (name, allow, deny) in rows {
        assert_eq!(route(&t, &host(name), "/x"), format!("annotations/{name} {APP}"), "{name}");
        assert_no_diag(&t, &ingress(name));
        let access = policy(&t, &host(name), "/x").access.expect("an access policy");
        let list = |l: &sluice_model::IpList| -> Vec<String> {
            l.0.iter().map(ToString::to_string).collect()
        };
        assert_eq!(
            (list(&access.allow), list(&access.deny)),
            (to_strings(&allow), to_strings(&deny))
        );
    }
}

fn to_strings(v: &[&str]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

// auth-tls-secret naming a CA Secret that does not exist: the host fails closed (503 on every
// path) with a MissingSecret error, rather than serving clients it cannot verify.
#[test]
fn client_certificates_with_a_missing_ca_fail_closed() {
    let t = table();
    assert_eq!(route(&t, &host("auth-tls"), "/"), "503");
    assert_eq!(route(&t, &host("auth-tls"), "/deep/path"), "503");
    assert_eq!(summary_for(&t, &ingress("auth-tls")), vec!["Error MissingSecret"]);
    assert_diag(
        &t,
        Severity::Error,
        Reason::MissingSecret,
        &ingress("auth-tls"),
        "client certificates for auth-tls.annotations.test",
    );
}

// Not-implemented annotations (enable-opentelemetry) warn and the routes are still served; names
// ingress-nginx does not know either warn as UnknownAnnotation.
#[test]
fn unsupported_and_unknown_annotations_warn_and_still_serve() {
    let t = table();
    assert_eq!(route(&t, &host("pending"), "/x"), format!("annotations/pending {APP}"));
    assert_eq!(summary_for(&t, &ingress("pending")), vec!["Warning UnsupportedAnnotation"]);
    assert_diag(
        &t,
        Severity::Warning,
        Reason::UnsupportedAnnotation,
        &ingress("pending"),
        "enable-opentelemetry",
    );
    assert_eq!(route(&t, &host("typo"), "/x"), format!("annotations/typo {APP}"));
    assert_eq!(summary_for(&t, &ingress("typo")), vec!["Warning UnknownAnnotation"]);
    assert_diag(
        &t,
        Severity::Warning,
        Reason::UnknownAnnotation,
        &ingress("typo"),
        "made-up-annotation",
    );
}

// A canary Ingress owns no host or path, even when OLDER than the main Ingress on the same
// host and path: the main Ingress serves, and the canary's backend is attached to the main
// backend with its weight. Its extra path, which no main Ingress serves, is reported
// (UnmatchedCanary), not a PathCollision.
#[test]
fn canary_ingress_is_attached_to_the_main_backend_even_when_older() {
    let t = table();
    let main = format!("annotations/app-main {APP}");
    assert_eq!(route(&t, "canary.annotations.test", "/"), main);
    assert_eq!(route(&t, "canary.annotations.test", "/canary-only"), main);
    let canary = canary_of(&t, "canary.annotations.test", "/").expect("a canary is attached");
    assert_eq!(canary.0, "annotations-app-canary-80");
    assert_eq!((canary.1.weight, canary.1.weight_total), (20, 100));
    assert_eq!(summary_for(&t, &ingress("app-canary")), vec!["Warning UnmatchedCanary"]);
    assert_diag(
        &t,
        Severity::Warning,
        Reason::UnmatchedCanary,
        &ingress("app-canary"),
        "/canary-only",
    );
    assert_no_diag(&t, &ingress("app-main"));
    assert!(t.routes.iter().all(|r| r.ingress.as_deref() != Some(&nn("annotations/app-canary"))));
}

/// The canary attached to the backend serving a request: its backend's name and rules.
fn canary_of(t: &RoutingTable, host: &str, path: &str) -> Option<(String, sluice_model::Canary)> {
    let sluice_model::Target::Backend(id) = t.lookup(host, path).route.target else { return None };
    let c = t.backends[id as usize].canary.as_deref()?.clone();
    Some((t.backends[c.backend as usize].name.clone(), c))
}

// With another annotations prefix, only annotations under it are read: `example.com/*` applies
// (auth-url becomes the routes' external authentication), while nginx.ingress.kubernetes.io/* is ignored silently --
// snippets and security annotations under the old prefix then neither warn nor fail closed.
#[test]
fn custom_annotations_prefix_reads_only_its_own_annotations() {
    let settings = Settings { annotations_prefix: "example.com".into(), ..Settings::default() };
    let t = translate_fixtures(&["annotations"], &settings);
    assert_eq!(
        policy(&t, &host("custom-prefix"), "/"),
        policy_with(|p| p.limits.max_body_size = Some(2 * MIB))
    );
    assert_eq!(route(&t, &host("custom-prefix"), "/"), format!("annotations/custom-prefix {APP}"));
    let auth = format!("annotations/custom-prefix-auth {APP}");
    assert_eq!(route(&t, &host("custom-prefix-auth"), "/"), auth);
    let access = policy(&t, &host("custom-prefix-auth"), "/").access.expect("access policy");
    let external = access.external.as_ref().expect("external authentication");
    assert_eq!(external.url.to_string(), "https://auth.example.com/check");
    assert!(!served(&t, &host("custom-prefix-auth"), "/").fast, "a second request: general path");
    for name in ["snippet", "auth-url", "whitelist", "body-8m"] {
        assert_eq!(route(&t, &host(name), "/app"), format!("annotations/{name} {APP}"), "{name}");
    }
    assert_eq!(policy(&t, &host("body-8m"), "/"), policy_with(|_| {}));
    // What is left: the "canary", which is no canary under this prefix: being older, it keeps
    // canary.annotations.test's `/` and app-main loses it.
    assert_eq!(
        summary(&t),
        vec!["Error PathCollision Ingress annotations/app-main"],
        "{}",
        dump(&t)
    );
}

// Under the default prefix the same custom-prefix Ingress takes the nginx value (4m) and its
// unknown nginx annotation is reported; example.com/* is not ours and ignored.
#[test]
fn default_prefix_ignores_other_prefixes() {
    let t = table();
    assert_eq!(
        policy(&t, &host("custom-prefix"), "/"),
        policy_with(|p| p.limits.max_body_size = Some(4 * MIB))
    );
    assert_eq!(summary_for(&t, &ingress("custom-prefix")), vec!["Warning UnknownAnnotation"]);
    assert_no_diag(&t, &ingress("custom-prefix-auth"));
    assert_eq!(
        route(&t, &host("custom-prefix-auth"), "/"),
        format!("annotations/custom-prefix-auth {APP}")
    );
}

/// A canary pair on canary-bool.test: the canary (older) with `canary: <value>`, the main newer.
fn canary_pair(value: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bool-canary
  namespace: annotations
  creationTimestamp: \"2023-01-01T00:00:00Z\"
  annotations:
    nginx.ingress.kubernetes.io/canary: \"{value}\"
spec:
  ingressClassName: sluice
  rules:
    - host: canary-bool.test
      http:
        paths:
          - {{path: /, pathType: Prefix, backend: {{service: {{name: app-canary, port: {{number: 80}}}}}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bool-main
  namespace: annotations
  creationTimestamp: \"2024-01-01T00:00:00Z\"
spec:
  ingressClassName: sluice
  rules:
    - host: canary-bool.test
      http:
        paths:
          - {{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}
"
    )
}

// `canary: "false"` is no canary: the (older) Ingress is an ordinary one and keeps its path.
#[test]
fn canary_false_is_an_ordinary_ingress() {
    let base = fixture("annotations");
    let t = sluice_translate::translate(
        &snapshot_of(&[&base, &canary_pair("false")]),
        &Settings::default(),
    );
    assert_eq!(
        route(&t, "canary-bool.test", "/"),
        "annotations/bool-canary -> annotations-app-canary-80 [10.10.0.2:8080]"
    );
    assert_diag(
        &t,
        Severity::Error,
        Reason::PathCollision,
        &ingress("bool-main"),
        "older Ingress annotations/bool-canary",
    );
}

// ingress-nginx reads `canary` with Go's strconv.ParseBool (parser.GetBoolAnnotation), so
// "True", "TRUE", "1" and "t" mark a canary too. Such a canary must be attached like
// `canary: "true"`; otherwise, being older, it takes the main Ingress's traffic.
#[test]
fn canary_values_follow_go_parse_bool() {
    let base = fixture("annotations");
    for value in ["True", "TRUE", "1", "t"] {
        let t = sluice_translate::translate(
            &snapshot_of(&[&base, &canary_pair(value)]),
            &Settings::default(),
        );
        assert_eq!(
            route(&t, "canary-bool.test", "/"),
            format!("annotations/bool-main {APP}"),
            "canary: {value:?}"
        );
        let canary = canary_of(&t, "canary-bool.test", "/").expect("a canary");
        assert_eq!(canary.0, "annotations-app-canary-80", "canary: {value:?}");
        assert_no_diag(&t, &ingress("bool-canary"));
        assert_no_diag(&t, &ingress("bool-main"));
    }
}
