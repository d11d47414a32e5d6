//! Merging Ingresses per host, collisions and ingress-nginx's ordering. Fixture: `merge.yaml`.

mod common;

use common::*;
use sluice_model::{Reason, RoutingTable, Settings, Severity};

fn table() -> RoutingTable {
    translate_fixture("merge")
}

// Two Ingresses on one host merge their paths: each path is served by the Ingress that
// defines it, and unmatched paths still get the host's 404.
#[test]
fn ingresses_on_one_host_merge_their_paths() {
    let t = table();
    let rows = [
        ("/", "merge/www-app -> merge-frontend-80 [10.6.0.1:8080]"),
        ("/index.html", "merge/www-app -> merge-frontend-80 [10.6.0.1:8080]"),
        ("/blog", "merge/www-blog -> merge-blog-80 [10.6.0.4:8080]"),
        ("/blog/2024/hello", "merge/www-blog -> merge-blog-80 [10.6.0.4:8080]"),
        ("/docs/intro", "merge/www-app -> merge-docs-80 [10.6.0.5:8080]"),
    ];
    for (path, want) in rows {
        assert_eq!(route(&t, "www.merge.test", path), want, "{path}");
    }
}

// On a host+path+type collision the OLDER Ingress keeps the path (even though its name would
// lose a tie), and the newer one gets a PathCollision error naming the winner.
#[test]
fn older_ingress_wins_a_collision() {
    let t = table();
    assert_eq!(
        route(&t, "www.merge.test", "/api/users"),
        "merge/www-app -> merge-api-v1-80 [10.6.0.2:8080]"
    );
    assert_eq!(rule(&t, "www.merge.test", "/api/users"), "Prefix /api");
    let d = assert_diag(
        &t,
        Severity::Error,
        Reason::PathCollision,
        "Ingress merge/www-blog",
        "already served by older Ingress merge/www-app",
    );
    assert!(d.message.contains("www.merge.test") && d.message.contains("/api"), "{d}");
    // The winner is not blamed for it (its only diagnostic is its own duplicate /docs).
    let winner_blamed = t.diagnostics.iter().any(|d| {
        d.object.to_string() == "Ingress merge/www-app" && !d.message.contains("listed twice")
    });
    assert!(!winner_blamed, "{}", dump(&t));
}

// Exact and Prefix on the same path are different rules: no collision, each keeps its own
// requests (Exact /api from the newer Ingress, Prefix /api from the older).
#[test]
fn exact_and_prefix_on_same_path_do_not_collide() {
    let t = table();
    assert_eq!(rule(&t, "www.merge.test", "/api"), "Exact /api");
    assert_eq!(
        route(&t, "www.merge.test", "/api"),
        "merge/www-blog -> merge-api-v2-80 [10.6.0.3:8080]"
    );
    assert_eq!(rule(&t, "www.merge.test", "/api/"), "Prefix /api");
    assert_eq!(owner(&t, "www.merge.test", "/api/"), "merge/www-app");
    // www-blog has exactly one collision (its Prefix /api), none for its Exact /api.
    assert_eq!(
        summary_for(&t, "Ingress merge/www-blog"),
        vec!["Error PathCollision"],
        "{}",
        dump(&t)
    );
}

// With equal creationTimestamps, ingress-nginx's order decides: `namespace/name` descending
// goes first, so merge/tie-b beats merge/tie-a. Absent timestamps tie the same way.
#[test]
fn equal_or_absent_timestamps_order_by_name_descending() {
    let t = table();
    let rows = [
        (
            "tie.merge.test",
            "merge/tie-b -> merge-team-b-80 [10.6.1.2:8080]",
            "merge/tie-a",
            "merge/tie-b",
        ),
        (
            "untimed.merge.test",
            "merge/untimed-b -> merge-team-b-80 [10.6.1.2:8080]",
            "merge/untimed-a",
            "merge/untimed-b",
        ),
    ];
    for (host, want, loser, winner) in rows {
        assert_eq!(route(&t, host, "/"), want, "{host}");
        assert_eq!(summary_for(&t, &format!("Ingress {loser}")), vec!["Error PathCollision"]);
        assert_diag(
            &t,
            Severity::Error,
            Reason::PathCollision,
            &format!("Ingress {loser}"),
            &format!("older Ingress {winner}"),
        );
        assert_no_diag(&t, &format!("Ingress {winner}"));
    }
}

// The tie-break compares the whole "namespace/name" string, as ingress-nginx does:
// "merge/shared" > "merge-b/shared" ('/' sorts after '-'), so merge/shared wins.
#[test]
fn tie_break_compares_namespace_slash_name_strings() {
    let t = table();
    assert_eq!(
        route(&t, "cross-ns.merge.test", "/"),
        "merge/shared -> merge-team-a-80 [10.6.1.1:8080]"
    );
    assert_diag(
        &t,
        Severity::Error,
        Reason::PathCollision,
        "Ingress merge-b/shared",
        "older Ingress merge/shared",
    );
}

// A path listed twice in one Ingress: the first entry wins and the duplicate is reported.
#[test]
fn duplicate_path_within_one_ingress_is_reported() {
    let t = table();
    assert_eq!(
        route(&t, "www.merge.test", "/docs"),
        "merge/www-app -> merge-docs-80 [10.6.0.5:8080]"
    );
    assert_eq!(
        summary_for(&t, "Ingress merge/www-app"),
        vec!["Error PathCollision"],
        "{}",
        dump(&t)
    );
    assert_diag(
        &t,
        Severity::Error,
        Reason::PathCollision,
        "Ingress merge/www-app",
        "listed twice",
    );
    assert_diag(&t, Severity::Error, Reason::PathCollision, "Ingress merge/www-app", "/docs");
}

// The whole fixture yields exactly these diagnostics: one per losing rule, nothing else.
#[test]
fn merge_fixture_diagnostics_are_exactly_the_collisions() {
    let t = translate_fixtures(&["merge"], &Settings::default());
    assert_eq!(
        summary(&t),
        vec![
            "Error PathCollision Ingress merge/tie-a",
            "Error PathCollision Ingress merge/untimed-a",
            "Error PathCollision Ingress merge/www-app",
            "Error PathCollision Ingress merge/www-blog",
            "Error PathCollision Ingress merge-b/shared",
        ],
        "{}",
        dump(&t)
    );
}
