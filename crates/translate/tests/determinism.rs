//! Translation is a pure function of the snapshot's content: the same objects, in any order,
//! give the same diagnostics and route every request the same way. Fixtures: all of them at
//! once (each uses its own namespaces).

mod common;

use common::*;
use sluice_model::{Named, Objects, Settings, Snapshot};

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
];

fn settings() -> Settings {
    Settings {
        default_backend_service: Some(nn("sluice-system/default-http-backend")),
        configmap: Some(nn("sluice-system/sluice-config")),
        ..Settings::default()
    }
}

fn rev<T: Named>(items: &Objects<T>) -> Objects<T> {
    items.iter().rev().cloned().collect()
}

/// The snapshot with every object list reversed.
fn reversed(s: &Snapshot) -> Snapshot {
    Snapshot {
        ingresses: rev(&s.ingresses),
        ingress_classes: rev(&s.ingress_classes),
        services: rev(&s.services),
        endpoint_slices: rev(&s.endpoint_slices),
        secrets: rev(&s.secrets),
        config_maps: rev(&s.config_maps),
        observed_at: s.observed_at,
    }
}

// The combined fixtures really exercise something: many hosts, diagnostics of many kinds.
#[test]
fn combined_fixtures_are_rich() {
    let t = sluice_translate::translate(&load(ALL), &settings());
    assert!(hosts(&t).len() > 40, "{:?}", hosts(&t));
    assert!(t.diagnostics.len() > 30, "{}", dump(&t));
}

// Translating the same snapshot twice gives the same result.
#[test]
fn translating_twice_is_identical() {
    let snapshot = load(ALL);
    let a = sluice_translate::translate(&snapshot, &settings());
    let b = sluice_translate::translate(&snapshot, &settings());
    assert_same(&a, &b, "twice");
}

// The order of objects in the snapshot carries no meaning: reversed and shuffled object lists
// give the same diagnostics and the same lookups.
#[test]
fn object_order_does_not_matter() {
    let snapshot = load(ALL);
    let base = sluice_translate::translate(&snapshot, &settings());
    let rev = sluice_translate::translate(&reversed(&snapshot), &settings());
    assert_same(&base, &rev, "reversed");
    for seed in [1, 7, 42, 2024, 99_991] {
        let other = sluice_translate::translate(&shuffled_snapshot(&snapshot, seed), &settings());
        assert_same(&base, &other, &format!("shuffled (seed {seed})"));
    }
}

// Loading the fixture files in another order (which also changes every object list) changes
// nothing either.
#[test]
fn fixture_file_order_does_not_matter() {
    let mut names = ALL.to_vec();
    names.reverse();
    let a = sluice_translate::translate(&load(ALL), &settings());
    let b = sluice_translate::translate(&load(&names), &settings());
    assert_same(&a, &b, "fixture order");
}
