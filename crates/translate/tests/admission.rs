//! Admission review (`sluice_translate::review`): one Ingress judged against the
//! configuration in force, as the validating webhook answers. Fixture: `admission.yaml`; the
//! consistency test also reads the other fixtures.

mod common;

use std::sync::Arc;

use common::*;
use k8s_openapi::api::networking::v1::Ingress;
use sluice_manifests::{Object, parse_str};
use sluice_model::{Kind, Reason, RoutingTable, Settings, Severity, Snapshot};
use sluice_translate::{Review, review, translate};

/// The configuration in force: the fixture's snapshot and its table.
fn in_force() -> (Snapshot, RoutingTable) {
    let snapshot = load(&["admission"]);
    let table = translate(&snapshot, &Settings::default());
    (snapshot, table)
}

/// An Ingress `shop/<name>` of class sluice with `annotations` (YAML flow map) and `rules`
/// (YAML, under `spec.rules`), created now (newer than every Ingress in force).
fn candidate(name: &str, annotations: &str, rules: &str) -> Ingress {
    let text = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  \
         namespace: shop\n  creationTimestamp: \"2026-06-01T00:00:00Z\"\n  annotations: \
         {annotations}\nspec:\n  ingressClassName: sluice\n  rules: {rules}\n"
    );
    ingress_of(&text)
}

fn ingress_of(text: &str) -> Ingress {
    let objects = parse_str(text).unwrap_or_else(|e| panic!("{}: {text}", e.message));
    match objects.into_iter().next().map(|(_, o)| o) {
        Some(Object::Ingress(i)) => Arc::unwrap_or_clone(i),
        _ => panic!("not an Ingress: {text}"),
    }
}

/// Rules for `host` with one path to Service `web`.
fn rules(host: &str, path: &str, path_type: &str) -> String {
    format!(
        "[{{host: {host}, http: {{paths: [{{path: {path}, pathType: {path_type}, backend: \
         {{service: {{name: web, port: {{number: 80}}}}}}}}]}}}}]"
    )
}

fn judge(ingress: &Ingress) -> Review {
    let (snapshot, table) = in_force();
    review(&snapshot, &table, &Settings::default(), ingress, None)
}

fn shown(r: &Review) -> String {
    r.diagnostics.iter().map(|d| format!("{d}\n")).collect()
}

/// The one refusal of `r`, which must have `reason` and say `text`.
fn refused(r: &Review, reason: Reason, text: &str) {
    assert!(!r.allowed(), "admitted:\n{}", shown(r));
    assert_eq!(r.refusals.len(), 1, "{}", shown(r));
    let d = &r.refusals[0];
    assert_eq!((d.severity, d.reason), (Severity::Error, reason), "{d}");
    assert!(d.message.contains(text), "{d}");
    assert_eq!(d.object.to_string(), "Ingress shop/cand", "{d}");
}

/// `r` admits, with exactly these warning reasons.
fn admitted(r: &Review, warnings: &[Reason]) {
    assert!(r.ours);
    assert!(r.allowed(), "refused:\n{}", shown(r));
    let got: Vec<Reason> = r.warnings().map(|d| d.reason).collect();
    assert_eq!(got, warnings, "{}", shown(r));
}

#[test]
fn a_good_ingress_is_admitted_without_warnings() {
    let r = judge(&candidate("cand", "{}", &rules("shop.test", "/cart", "Prefix")));
    admitted(&r, &[]);
    assert!(r.diagnostics.is_empty());
}

#[test]
fn a_snippet_is_refused() {
    let i = candidate(
        "cand",
        "{nginx.ingress.kubernetes.io/configuration-snippet: 'more_set_headers \"X: y\";'}",
        &rules("shop.test", "/cart", "Prefix"),
    );
    refused(&judge(&i), Reason::SnippetRefused, "configuration-snippet holds NGINX configuration");
}

#[test]
fn an_invalid_value_of_a_fail_closed_annotation_is_refused() {
    let i = candidate(
        "cand",
        "{nginx.ingress.kubernetes.io/whitelist-source-range: 'not-a-range'}",
        &rules("shop.test", "/cart", "Prefix"),
    );
    refused(&judge(&i), Reason::InvalidAnnotation, "whitelist-source-range");
}

#[test]
fn an_invalid_value_whose_default_applies_is_a_warning() {
    let i = candidate(
        "cand",
        "{nginx.ingress.kubernetes.io/proxy-connect-timeout: 'soon'}",
        &rules("shop.test", "/cart", "Prefix"),
    );
    let r = judge(&i);
    admitted(&r, &[Reason::InvalidAnnotation]);
    assert!(r.diagnostics[0].message.ends_with("the default applies"), "{}", shown(&r));
}

#[test]
fn ignored_annotations_are_warnings() {
    let i = candidate(
        "cand",
        "{nginx.ingress.kubernetes.io/no-such-thing: 'x', nginx.ingress.kubernetes.io/enable-modsecurity: 'true'}",
        &rules("shop.test", "/cart", "Prefix"),
    );
    let r = judge(&i);
    admitted(&r, &[Reason::UnsupportedAnnotation, Reason::UnknownAnnotation]);
}

#[test]
fn a_missing_service_is_a_warning() {
    let text = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: cand, namespace: shop}\n\
         spec:\n  ingressClassName: sluice\n  rules: [{host: new.test, http: {paths: [{path: /, \
         pathType: Prefix, backend: {service: {name: not-yet, port: {number: 80}}}}]}}]\n";
    admitted(&judge(&ingress_of(text)), &[Reason::MissingService]);
}

#[test]
fn a_path_an_older_ingress_owns_is_refused() {
    // Prefix /api/ is the same rule as /api: translation keys prefixes without the slash.
    let r = judge(&candidate("cand", "{}", &rules("SHOP.test", "/api/", "Prefix")));
    refused(&r, Reason::PathCollision, "already served by older Ingress shop/storefront");
    // ImplementationSpecific is served as Prefix: the same rule too.
    let r = judge(&candidate("cand", "{}", &rules("shop.test", "/api", "ImplementationSpecific")));
    refused(&r, Reason::PathCollision, "shop.test path /api");
    let r = judge(&candidate("cand", "{}", &rules("shop.test", "/login", "Exact")));
    refused(&r, Reason::PathCollision, "path /login (Exact)");
}

#[test]
fn another_path_type_or_host_is_no_collision() {
    admitted(&judge(&candidate("cand", "{}", &rules("shop.test", "/api", "Exact"))), &[]);
    admitted(&judge(&candidate("cand", "{}", &rules("shop.test", "/login", "Prefix"))), &[]);
    admitted(&judge(&candidate("cand", "{}", &rules("other.test", "/api", "Prefix"))), &[]);
}

#[test]
fn an_older_ingress_takes_a_path_from_a_newer_one_with_a_warning() {
    let text = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: cand, namespace: shop, \
         creationTimestamp: '2025-01-01T00:00:00Z'}}\nspec:\n  ingressClassName: sluice\n  rules: {}\n",
        rules("shop.test", "/new", "Prefix")
    );
    let r = judge(&ingress_of(&text));
    admitted(&r, &[Reason::PathCollision]);
    assert!(r.diagnostics[0].message.contains("newer Ingress shop/newer"), "{}", shown(&r));
}

#[test]
fn an_update_of_the_owner_is_no_collision_with_itself() {
    let (snapshot, table) = in_force();
    let owner =
        snapshot.ingresses.iter().find(|i| i.metadata.name.as_deref() == Some("storefront"));
    let owner = owner.unwrap();
    let r = review(&snapshot, &table, &Settings::default(), owner, Some(owner));
    admitted(&r, &[]);
}

#[test]
fn an_update_is_refused_only_for_what_it_brings() {
    let (snapshot, table) = in_force();
    let before = candidate("cand", "{}", &rules("shop.test", "/api", "Prefix"));
    // The stored version already lost /api: editing something else is admitted, with the
    // collision as a warning.
    let mut after = before.clone();
    after.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
    let r = review(&snapshot, &table, &Settings::default(), &after, Some(&before));
    admitted(&r, &[Reason::PathCollision]);
    // Adding a snippet is refused.
    let snippet = candidate(
        "cand",
        "{nginx.ingress.kubernetes.io/server-snippet: 'return 200;'}",
        &rules("shop.test", "/api", "Prefix"),
    );
    let r = review(&snapshot, &table, &Settings::default(), &snippet, Some(&before));
    refused(&r, Reason::SnippetRefused, "server-snippet");
}

#[test]
fn the_catch_all_default_backend_of_an_older_ingress_is_refused() {
    let text = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: cand, namespace: shop}\n\
                spec:\n  ingressClassName: sluice\n  defaultBackend: {service: {name: web, port: {number: 80}}}\n";
    let mut i = ingress_of(text);
    i.metadata.creation_timestamp = candidate("x", "{}", "[]").metadata.creation_timestamp;
    refused(&judge(&i), Reason::PathCollision, "already set by older Ingress shop/fallback");
}

#[test]
fn invalid_hosts_and_paths_are_refused() {
    let r = judge(&candidate("cand", "{}", &rules("10.0.0.1", "/x", "Prefix")));
    refused(&r, Reason::InvalidHost, "IP address");
    let r = judge(&candidate("cand", "{}", &rules("shop.test", "x", "Prefix")));
    refused(&r, Reason::InvalidPath, "must start with");
}

#[test]
fn ingresses_of_another_class_and_without_class_are_not_read() {
    let mut i = candidate(
        "cand",
        "{nginx.ingress.kubernetes.io/server-snippet: 'return 200;'}",
        &rules("shop.test", "/api", "Prefix"),
    );
    i.spec.as_mut().unwrap().ingress_class_name = Some("other".into());
    let r = judge(&i);
    assert!(!r.ours && r.allowed() && r.diagnostics.is_empty(), "{r:?}");
    i.spec.as_mut().unwrap().ingress_class_name = None;
    assert!(!judge(&i).ours);
    // With --watch-ingress-without-class, the class-less one is ours, and refused.
    let (snapshot, table) = in_force();
    let settings = Settings { watch_ingress_without_class: true, ..Settings::default() };
    let r = review(&snapshot, &table, &settings, &i, None);
    assert!(r.ours && !r.allowed(), "{r:?}");
}

#[test]
fn a_canary_is_matched_against_the_main_ingresses_in_force() {
    let canary = |path: &str| {
        let text = format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: cand\n  namespace: shop\n  \
             annotations: {{nginx.ingress.kubernetes.io/canary: 'true', nginx.ingress.kubernetes.io/canary-weight: '10'}}\n\
             spec:\n  ingressClassName: sluice\n  rules: [{{host: shop.test, http: {{paths: [{{path: {path}, \
             pathType: Prefix, backend: {{service: {{name: web-canary, port: {{number: 80}}}}}}}}]}}}}]\n"
        );
        ingress_of(&text)
    };
    // Its rule is a main Ingress's: no collision (canaries own no path), no warning.
    admitted(&judge(&canary("/api")), &[]);
    let r = judge(&canary("/nowhere"));
    admitted(&r, &[Reason::UnmatchedCanary]);
    assert!(r.diagnostics[0].message.contains("shop.test/nowhere"), "{}", shown(&r));
}

/// What translation decides from several Ingresses together that a review does not re-judge:
/// aliases and `www` redirects meeting other hosts, two canaries on one backend (warnings).
fn across_hosts(d: &sluice_model::Diagnostic) -> bool {
    d.reason == Reason::PathCollision
        && d.severity == Severity::Warning
        && ["server-alias ", "from-to-www-redirect: ", "canary for "]
            .iter()
            .any(|p| d.message.starts_with(p))
}

/// Reviewing an Ingress already in force (an update that changes nothing) finds the
/// diagnostics a full translation gave it, for every Ingress of the translation fixtures,
/// but for what depends on other Ingresses of its hosts (see the module's documentation).
#[test]
fn the_review_of_an_ingress_in_force_agrees_with_translation() {
    let fixtures = ["admission", "annotations", "backends", "bad-input", "families", "merge"];
    let mut compared = 0;
    for fixture in fixtures {
        let snapshot = load(&[fixture]);
        let settings = Settings::default();
        let table = translate(&snapshot, &settings);
        for ingress in &snapshot.ingresses {
            let r = review(&snapshot, &table, &settings, ingress, Some(ingress));
            let name = format!(
                "Ingress {}/{}",
                ingress.metadata.namespace.as_deref().unwrap_or_default(),
                ingress.metadata.name.as_deref().unwrap_or_default()
            );
            let owned = table.owned.iter().any(|n| format!("Ingress {n}") == name);
            assert_eq!(r.ours, owned, "{fixture}: {name}");
            let by_translation: Vec<String> = table
                .diagnostics
                .iter()
                .filter(|d| d.object.kind == Kind::Ingress && d.object.to_string() == name)
                .filter(|d| !across_hosts(d))
                .map(ToString::to_string)
                .collect();
            let by_review: Vec<String> = r.diagnostics.iter().map(ToString::to_string).collect();
            assert_eq!(by_review, by_translation, "{fixture}: {name}");
            // An update that changes nothing is never refused.
            assert!(r.allowed(), "{fixture}: {name}");
            compared += 1;
        }
    }
    assert!(compared > 50, "{compared}");
}
