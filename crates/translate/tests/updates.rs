//! Incremental Ingress updates give what a full translation gives. Over the combined fixtures,
//! every Ingress in turn is removed, added back and has its first host renamed; whenever
//! `update_ingresses` accepts the change, its table must route every observed request, and
//! report every diagnostic, exactly as a full translation of the new snapshot does.

mod common;

use std::sync::Arc;

use common::*;
use sluice_model::{RoutingTable, Settings, Snapshot};
use sluice_translate::{translate, update_ingresses};

const ALL: &[&str] = &[
    "paths",
    "hosts",
    "classes",
    "merge",
    "global-default",
    "default-backends",
    "backends",
    "annotations",
    "bad-input",
    "regex",
];

fn settings() -> Settings {
    Settings {
        default_backend_service: Some(nn("sluice-system/default-http-backend")),
        configmap: Some(nn("sluice-system/sluice-config")),
        ..Settings::default()
    }
}

/// Checks the update from `before` (translated in full) to `after`, when it is accepted;
/// returns whether it was.
fn check(before: &Snapshot, after: &Snapshot, what: &str) -> bool {
    let settings = settings();
    let previous = translate(before, &settings);
    let Some(updated) = update_ingresses(&previous, before, after, &settings) else {
        return false;
    };
    let full = translate(after, &settings);
    assert_same(&updated, &full, what);
    assert_eq!(*updated.owned, *full.owned, "{what}: owned Ingresses differ");
    true
}

#[test]
fn ingress_updates_route_as_a_full_translation_does() {
    let all = load(ALL);
    let (mut accepted, mut tried) = (0, 0);
    for i in 0..all.ingresses.len() {
        let name = format!(
            "{}/{}",
            all.ingresses[i].metadata.namespace.as_deref().unwrap_or_default(),
            all.ingresses[i].metadata.name.as_deref().unwrap_or_default()
        );
        let mut without = all.clone();
        without.ingresses.remove(i);
        let mut renamed = all.clone();
        let mut ingress = (*renamed.ingresses[i]).clone();
        let rule = ingress.spec.as_mut().and_then(|s| s.rules.as_mut()).and_then(|r| r.first_mut());
        if let Some(rule) = rule {
            rule.host = Some(format!("renamed-{i}.updates.test"));
        }
        renamed.ingresses[i] = Arc::new(ingress);

        for (before, after, what) in [
            (&all, &without, "removed"),
            (&without, &all, "added"),
            (&all, &renamed, "renamed"),
            (&renamed, &all, "renamed back"),
        ] {
            tried += 1;
            accepted += usize::from(check(before, after, &format!("{name} {what}")));
        }
    }
    // The fixtures are mostly about merging and conflicts, which updates refuse; enough of
    // them are alone on their hosts for the comparison to mean something.
    assert!(accepted >= 40, "only {accepted} of {tried} updates accepted");
}

// A change that is not an Ingress's is never taken as an Ingress update.
#[test]
fn other_kinds_are_refused() {
    let all = load(ALL);
    let mut other = all.clone();
    other.services.pop();
    let settings = settings();
    let previous: RoutingTable = translate(&all, &settings);
    assert!(update_ingresses(&previous, &all, &other, &settings).is_none());
}
