//! Regex paths: `use-regex` and `rewrite-target` switch every path of a host to ingress-nginx's
//! `~* "^<path>"` locations, tried longest first, first match wins; Exact paths stay exact.
//! Fixture: `regex.yaml`.

mod common;

use common::*;
use sluice_model::{Reason, RoutingTable, Severity};

fn table() -> RoutingTable {
    translate_fixture("regex")
}

fn ingress(name: &str) -> String {
    format!("Ingress regex/{name}")
}

/// Asserts `(host, request path, expected rule)` rows, as in `paths.rs`.
#[track_caller]
fn check(table: &RoutingTable, rows: &[(&str, &str, &str)]) {
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|&(host, path, want)| {
            let got = rule(table, host, path);
            (got != want).then(|| format!("{host}{path}: want {want:?}, got {got:?}"))
        })
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// Longest path first, ties by path descending, and the FIRST match wins: `/v[0-9]/.*` (10
// bytes) is tried before `/v1/users` (9), so it takes even `/v1/users` (ingress-nginx's
// documented pitfall); `/abc` sorts before `/a.*`. Exact wins before any regex, and stays
// exact and case-sensitive.
#[test]
fn first_match_in_ingress_nginx_order_and_exact_first() {
    let t = table();
    assert_no_diag(&t, &ingress("order"));
    let h = "order.regex.test";
    check(
        &t,
        &[
            (h, "/v1/users/7", "ImplementationSpecific /v[0-9]/.*"),
            (h, "/v1/users", "ImplementationSpecific /v[0-9]/.*"),
            (h, "/v1", "default"),
            (h, "/abc", "ImplementationSpecific /abc"),
            (h, "/abcdef", "ImplementationSpecific /abc"),
            (h, "/abd", "ImplementationSpecific /a.*"),
            (h, "/v1/users/me", "Exact /v1/users/me"),
            (h, "/V1/users/me", "ImplementationSpecific /v[0-9]/.*"),
            (h, "/v1/users/me/x", "ImplementationSpecific /v[0-9]/.*"),
            (h, "/static/a/b.css", r"ImplementationSpecific /static/.*\.(css|js)"),
            (h, "/nothing", "default"),
            // Anchored at the start only: no match in the middle of a path.
            (h, "/x/abc", "default"),
        ],
    );
}

// Case-insensitive, like NGINX's `~*`; and the path is normalised first (as `$uri`).
#[test]
fn regex_paths_ignore_case_and_match_the_normalised_path() {
    let t = table();
    let h = "order.regex.test";
    check(
        &t,
        &[
            (h, "/ABC", "ImplementationSpecific /abc"),
            (h, "/STATIC/X.JS", r"ImplementationSpecific /static/.*\.(css|js)"),
            (h, "/static/%61.css", r"ImplementationSpecific /static/.*\.(css|js)"),
            (h, "/other/../abc", "ImplementationSpecific /abc"),
        ],
    );
}

// use-regex on one Ingress turns the paths of another (older, unannotated) Ingress of the same
// host into regexes: Prefix `/foo` then matches `/foobar` and `/FOO`, and `/img/.*\.png` is a
// pattern. The same rules on a host without regex keep their usual, literal meaning.
#[test]
fn regex_mode_is_host_wide() {
    let t = table();
    assert_no_diag(&t, &ingress("plain"));
    check(
        &t,
        &[
            ("shared.regex.test", "/foobar", "Prefix /foo"),
            ("shared.regex.test", "/FOO", "Prefix /foo"),
            ("shared.regex.test", "/foo/x", "ImplementationSpecific /foo/"),
            ("shared.regex.test", "/img/a/b.png", r"ImplementationSpecific /img/.*\.png"),
            ("shared.regex.test", "/Other", "ImplementationSpecific /other"),
            ("unshared.regex.test", "/foobar", "default"),
            ("unshared.regex.test", "/FOO", "default"),
            ("unshared.regex.test", "/foo/x", "Prefix /foo"),
            ("unshared.regex.test", "/img/a/b.png", "default"),
            ("unshared.regex.test", r"/img/.*\.png/x", r"ImplementationSpecific /img/.*\.png"),
        ],
    );
    // The older Ingress keeps a regex both define; `/foo` and `/foo/` are distinct regexes.
    assert_eq!(owner(&t, "shared.regex.test", "/img/a.png"), "regex/plain");
    assert_eq!(summary_for(&t, &ingress("enabler")), vec!["Error PathCollision"]);
    assert_diag(&t, Severity::Error, Reason::PathCollision, &ingress("enabler"), r"/img/.*\.png");
}

// rewrite-target rewrites with the path's capture groups, keeps the query string, and makes
// its host a regex host for the neighbour's paths too. A target equal to the path rewrites
// nothing and does not switch the host.
#[test]
fn rewrite_target_captures_and_host_wide_effect() {
    let t = table();
    assert_no_diag(&t, &ingress("rewrite"));
    let found = t.lookup("rewrite.regex.test", "/something/new/path");
    assert_eq!(found.route.path, "/something(/|$)(.*)");
    let rw = found.route.rewrite.as_ref().expect("a rewrite");
    assert_eq!(rw.target(), "/$2");
    assert_eq!(rw.apply("/something/new/path", Some("a=1")).as_deref(), Some("/new/path?a=1"));
    assert_eq!(rw.apply("/something", None).as_deref(), Some("/"));
    assert_eq!(
        rule(&t, "rewrite.regex.test", "/SOMETHING"),
        "ImplementationSpecific /something(/|$)(.*)"
    );

    // The neighbour's path is a case-insensitive regex prefix now, without a rewrite.
    let n = t.lookup("rewrite.regex.test", "/mixedup");
    assert_eq!(n.route.path, "/Mixed");
    assert!(n.route.rewrite.is_none());

    // Target equal to the path: plain Prefix matching, no rewrite.
    assert_no_diag(&t, &ingress("same"));
    assert_eq!(rule(&t, "same.regex.test", "/samex"), "default");
    let s = t.lookup("same.regex.test", "/same/x");
    assert_eq!(s.route.path, "/same");
    assert!(s.route.rewrite.is_none());
}

// An invalid pattern (or one over the size limit) is an error naming the path; only that path
// is dropped. A Prefix path with regex characters is served as a regex, with a warning.
#[test]
fn invalid_regex_drops_only_its_path() {
    let t = table();
    assert_eq!(
        summary_for(&t, &ingress("broken")),
        vec!["Error InvalidPath", "Error InvalidPath", "Warning InvalidPath"]
    );
    assert_diag(&t, Severity::Error, Reason::InvalidPath, &ingress("broken"), "\"/bad/(unclosed\"");
    assert_diag(&t, Severity::Error, Reason::InvalidPath, &ingress("broken"), "size limit");
    assert_diag(
        &t,
        Severity::Warning,
        Reason::InvalidPath,
        &ingress("broken"),
        "strict-validate-path-type",
    );
    check(
        &t,
        &[
            ("broken.regex.test", "/ok/1", "ImplementationSpecific /ok/(.*)"),
            ("broken.regex.test", "/bad/(unclosed", "default"),
            ("broken.regex.test", "/huge/a", "default"),
            ("broken.regex.test", "/pre/42", "Prefix /pre/[0-9]+"),
            // Other hosts are untouched.
            ("order.regex.test", "/abc", "ImplementationSpecific /abc"),
        ],
    );
}

// An invalid rewrite-target is reported and ignored entirely: the path is served unchanged and
// the host keeps element-wise matching.
#[test]
fn invalid_target_is_ignored() {
    let t = table();
    assert_eq!(summary_for(&t, &ingress("bad-target")), vec!["Error InvalidAnnotation"]);
    assert_diag(&t, Severity::Error, Reason::InvalidAnnotation, &ingress("bad-target"), "$h");
    let found = t.lookup("bad-target.regex.test", "/x/y");
    assert_eq!(found.route.path, "/x");
    assert!(found.route.rewrite.is_none());
    assert_eq!(rule(&t, "bad-target.regex.test", "/xy"), "default");
}

// The table does not depend on the order objects arrive in (regex mode is decided before any
// path is added).
#[test]
fn regex_mode_does_not_depend_on_object_order() {
    let text = fixture("regex");
    let docs: Vec<&str> = text.split("\n---\n").collect();
    let rows = [
        ("shared.regex.test", "/foobar"),
        ("shared.regex.test", "/img/x.png"),
        ("order.regex.test", "/v1/users/7"),
        ("rewrite.regex.test", "/mixedup"),
    ];
    let base = table();
    for seed in 1..5 {
        let t = sluice_translate::translate(
            &snapshot_of(&shuffled(&docs, seed)),
            &sluice_model::Settings::default(),
        );
        for (h, p) in rows {
            assert_eq!(describe(&t, h, p), describe(&base, h, p), "seed {seed}");
        }
    }
}
