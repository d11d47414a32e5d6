//! Class selection: which Ingresses are ours. Fixture: `classes.yaml`, plus inline default
//! IngressClasses.

mod common;

use common::*;
use sluice_model::{RoutingTable, Settings};

const WEB: &str = "-> classes-web-80 [10.4.0.1:8080]";

/// A default IngressClass of `controller`, named `name`, with the default annotation `value`.
fn default_class(name: &str, controller: &str, value: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: {name}
  annotations:
    ingressclass.kubernetes.io/is-default-class: \"{value}\"
spec:
  controller: {controller}
"
    )
}

fn with_classes(extra: &[String], settings: &Settings) -> RoutingTable {
    let base = fixture("classes");
    let mut texts = vec![base.as_str()];
    texts.extend(extra.iter().map(String::as_str));
    sluice_translate::translate(&snapshot_of(&texts), settings)
}

/// The Ingresses of the fixture that are ours: those whose host is served by their route.
fn ours(table: &RoutingTable) -> Vec<&'static str> {
    [
        "by-class",
        "other-class",
        "other-class-legacy-ours",
        "missing-class",
        "legacy",
        "legacy-other",
        "classless",
    ]
    .into_iter()
    .filter(|name| {
        let host = format!("{name}.classes.test");
        owner(table, &host, "/") == format!("classes/{name}")
    })
    .collect()
}

// ingressClassName naming our class and the legacy annotation equal to --ingress-class are
// ours; another controller's class, a missing class (even with the legacy annotation naming
// us), another legacy class, and no class at all (by default) are not.
#[test]
fn class_name_and_legacy_annotation_select_ingresses() {
    let t = with_classes(&[], &Settings::default());
    assert_eq!(ours(&t), vec!["by-class", "legacy"]);
    assert_eq!(route(&t, "by-class.classes.test", "/"), format!("classes/by-class {WEB}"));
    assert_eq!(route(&t, "legacy.classes.test", "/"), format!("classes/legacy {WEB}"));
}

// Ignored Ingresses leave no trace: no route, no host, no backend, no diagnostic, although each
// carries mistakes (snippets, auth-url, missing Services, an unknown annotation).
#[test]
fn ignored_ingresses_produce_no_routes_and_no_diagnostics() {
    let t = with_classes(&[], &Settings::default());
    assert_eq!(summary(&t), Vec::<String>::new(), "{}", dump(&t));
    assert_eq!(hosts(&t), vec!["", "by-class.classes.test", "legacy.classes.test"]);
    let mut owners: Vec<String> = t
        .routes
        .iter()
        .map(|r| r.ingress.as_ref().map_or("(default)".into(), ToString::to_string))
        .collect();
    owners.sort();
    assert_eq!(owners, vec!["(default)", "classes/by-class", "classes/legacy"]);
    assert_eq!(t.backends.len(), 1);
    assert_eq!(route(&t, "other-class.classes.test", "/"), "404");
}

// A different --ingress-class value changes which legacy annotation is ours.
#[test]
fn legacy_annotation_is_compared_with_settings_ingress_class() {
    let settings = Settings { ingress_class: "nginx".into(), ..Settings::default() };
    let t = with_classes(&[], &settings);
    assert_eq!(ours(&t), vec!["by-class", "legacy-other"]);
}

// A different --controller-class changes which IngressClass is ours.
#[test]
fn class_is_compared_with_settings_controller_class() {
    let settings =
        Settings { controller_class: "k8s.io/ingress-nginx".into(), ..Settings::default() };
    let t = with_classes(&[], &settings);
    // other-class-legacy-ours names the nginx class: the class decides, not the annotation.
    assert_eq!(ours(&t), vec!["other-class", "other-class-legacy-ours", "legacy"]);
}

// --watch-ingress-without-class adopts class-less Ingresses, and only those.
#[test]
fn watch_ingress_without_class_adopts_classless() {
    let settings = Settings { watch_ingress_without_class: true, ..Settings::default() };
    let t = with_classes(&[], &settings);
    assert_eq!(ours(&t), vec!["by-class", "legacy", "classless"]);
    // Adopted means processed: its unknown annotation is now reported.
    assert_eq!(summary(&t), vec!["Warning UnknownAnnotation Ingress classes/classless"]);
}

// Our IngressClass being the cluster's only default class adopts class-less Ingresses.
#[test]
fn our_only_default_class_adopts_classless() {
    let ours_default = default_class("sluice-default", "sluice.dev/ingress-controller", "true");
    let t = with_classes(&[ours_default], &Settings::default());
    assert_eq!(ours(&t), vec!["by-class", "legacy", "classless"]);
    assert_eq!(route(&t, "classless.classes.test", "/"), format!("classes/classless {WEB}"));
}

// Not adopted when two classes are default (admission would reject such Ingresses), nor when
// the only default class belongs to another controller, nor when the annotation is not "true".
#[test]
fn classless_not_adopted_without_a_single_default_class_of_ours() {
    let cases = [
        (
            "two defaults",
            vec![
                default_class("sluice-default", "sluice.dev/ingress-controller", "true"),
                default_class("nginx-default", "k8s.io/ingress-nginx", "true"),
            ],
        ),
        (
            "other controller's default",
            vec![default_class("nginx-default", "k8s.io/ingress-nginx", "true")],
        ),
        (
            "annotation not true",
            vec![default_class("sluice-default", "sluice.dev/ingress-controller", "false")],
        ),
    ];
    for (case, classes) in cases {
        let t = with_classes(&classes, &Settings::default());
        assert_eq!(ours(&t), vec!["by-class", "legacy"], "{case}");
        assert_no_diag(&t, "Ingress classes/classless");
    }
}
