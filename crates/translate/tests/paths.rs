//! Path matching: the Ingress concept page's test vectors, precedence, case sensitivity,
//! ImplementationSpecific and request-path normalisation. Fixture: `paths.yaml`.

mod common;

use common::*;
use sluice_model::RoutingTable;

fn table() -> RoutingTable {
    let table = translate_fixture("paths");
    // The fixture is clean: any diagnostic would mean a rule was dropped.
    assert_eq!(summary(&table), Vec::<String>::new(), "{}", dump(&table));
    table
}

/// Asserts `(host, request path, expected rule)` rows; the rule is `"Exact /foo"`,
/// `"Prefix /aaa"` or `"default"` (no rule: the host's default, a 404 here).
#[track_caller]
fn check(table: &RoutingTable, rows: &[(&str, &str, &str)]) {
    let mut failures = Vec::new();
    for &(host, path, want) in rows {
        let got = rule(table, host, path);
        if got != want {
            failures.push(format!("{host}{path}: want {want:?}, got {got:?}"));
        }
        // A rule match is always served by the echo Service; no match is always the 404.
        let served = route(table, host, path);
        let served_ok = if want == "default" {
            served == "404"
        } else {
            served.ends_with(" -> paths-echo-80 [10.1.0.1:8080]")
        };
        if !served_ok {
            failures.push(format!("{host}{path}: rule {want:?} but served by {served:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// Spec vectors with a single rule: `Prefix /` matches any path; Exact `/foo` matches only
// `/foo` (not `/bar`, not `/foo/`); Exact `/foo/` does not match `/foo`.
#[test]
fn single_rule_vectors_prefix_root_and_exact() {
    let t = table();
    check(
        &t,
        &[
            ("prefix-root.paths.test", "/", "Prefix /"),
            ("prefix-root.paths.test", "/anything", "Prefix /"),
            ("prefix-root.paths.test", "/a/b/c/", "Prefix /"),
            ("exact-foo.paths.test", "/foo", "Exact /foo"),
            ("exact-foo.paths.test", "/bar", "default"),
            ("exact-foo.paths.test", "/foo/", "default"),
            ("exact-foo.paths.test", "/foo/bar", "default"),
            ("exact-foo-slash.paths.test", "/foo", "default"),
            ("exact-foo-slash.paths.test", "/foo/", "Exact /foo/"),
        ],
    );
}

// Spec vectors: Prefix `/foo` and Prefix `/foo/` both match `/foo` and `/foo/` (the trailing
// slash of a Prefix rule is ignored); a partial last element never matches.
#[test]
fn single_rule_vectors_prefix_elements() {
    let t = table();
    check(
        &t,
        &[
            ("prefix-foo.paths.test", "/foo", "Prefix /foo"),
            ("prefix-foo.paths.test", "/foo/", "Prefix /foo"),
            ("prefix-foo.paths.test", "/foo/bar", "Prefix /foo"),
            ("prefix-foo.paths.test", "/foobar", "default"),
            ("prefix-foo-slash.paths.test", "/foo", "Prefix /foo/"),
            ("prefix-foo-slash.paths.test", "/foo/", "Prefix /foo/"),
            ("prefix-foo-slash.paths.test", "/foo/x", "Prefix /foo/"),
            ("prefix-foo-slash.paths.test", "/foox", "default"),
            ("prefix-aaa-bb.paths.test", "/aaa/bbb", "default"),
            ("prefix-aaa-bb.paths.test", "/aaa/bb", "Prefix /aaa/bb"),
            ("prefix-aaa-bbb.paths.test", "/aaa/bbb", "Prefix /aaa/bbb"),
            ("prefix-aaa-bbb.paths.test", "/aaa/bbb/", "Prefix /aaa/bbb"),
            ("prefix-aaa-bbb.paths.test", "/aaa/bbb/ccc", "Prefix /aaa/bbb"),
            ("prefix-aaa-bbb.paths.test", "/aaa/bbbxyz", "default"),
            ("prefix-aaa-bbb.paths.test", "/aaa", "default"),
        ],
    );
}

// Spec vectors with several rules: the longest element-wise prefix wins; a request matching no
// prefix goes to the default backend (404 here).
#[test]
fn multi_rule_vectors_longest_prefix_wins() {
    let t = table();
    check(
        &t,
        &[
            ("root-and-aaa.paths.test", "/aaa/ccc", "Prefix /aaa"),
            ("root-and-aaa.paths.test", "/aaa", "Prefix /aaa"),
            ("root-and-aaa.paths.test", "/aaaa", "Prefix /"),
            ("root-and-aaa.paths.test", "/ccc", "Prefix /"),
            ("three-prefixes.paths.test", "/aaa/bbb", "Prefix /aaa/bbb"),
            ("three-prefixes.paths.test", "/aaa/bbb/x", "Prefix /aaa/bbb"),
            ("three-prefixes.paths.test", "/aaa/ccc", "Prefix /aaa"),
            ("three-prefixes.paths.test", "/ccc", "Prefix /"),
            ("aaa-only.paths.test", "/ccc", "default"),
            ("aaa-only.paths.test", "/", "default"),
            ("aaa-only.paths.test", "/aaa/x", "Prefix /aaa"),
        ],
    );
    assert_eq!(route(&t, "aaa-only.paths.test", "/ccc"), "404");
}

// Spec vector: `/foo` Prefix + `/foo` Exact -> `/foo` picks Exact; `/foo/x` (and `/foo/`)
// can only be the Prefix.
#[test]
fn exact_beats_prefix_on_equal_path() {
    let t = table();
    check(
        &t,
        &[
            ("exact-and-prefix.paths.test", "/foo", "Exact /foo"),
            ("exact-and-prefix.paths.test", "/foo/", "Prefix /foo"),
            ("exact-and-prefix.paths.test", "/foo/x", "Prefix /foo"),
            ("exact-and-prefix.paths.test", "/bar", "default"),
        ],
    );
}

// Paths are case-sensitive, for Prefix and Exact alike (hosts are not).
#[test]
fn paths_are_case_sensitive() {
    let t = table();
    check(
        &t,
        &[
            ("case.paths.test", "/Foo", "Prefix /Foo"),
            ("case.paths.test", "/Foo/x", "Prefix /Foo"),
            ("case.paths.test", "/foo", "default"),
            ("case.paths.test", "/FOO/x", "default"),
            ("case.paths.test", "/bar", "Exact /bar"),
            ("case.paths.test", "/Bar", "default"),
            ("case.paths.test", "/BAR", "default"),
        ],
    );
}

// ImplementationSpecific is served as an element-wise Prefix (not NGINX's string prefix, and
// not Exact).
#[test]
fn implementation_specific_is_element_wise_prefix() {
    let t = table();
    check(
        &t,
        &[
            ("impl.paths.test", "/foo", "ImplementationSpecific /foo"),
            ("impl.paths.test", "/foo/", "ImplementationSpecific /foo"),
            ("impl.paths.test", "/foo/bar", "ImplementationSpecific /foo"),
            ("impl.paths.test", "/foobar", "default"),
            ("impl.paths.test", "/fo", "default"),
        ],
    );
}

// Requests are normalised before matching, as NGINX does: dot segments resolved (never to the
// rule the raw text starts with), slashes merged, percent-escapes decoded.
#[test]
fn request_paths_are_normalised_before_matching() {
    let t = table();
    check(
        &t,
        &[
            ("normalise.paths.test", "/public/../admin", "Prefix /admin"),
            ("normalise.paths.test", "/public/../admin/users", "Prefix /admin"),
            ("normalise.paths.test", "/public/./x", "Prefix /public"),
            ("normalise.paths.test", "/public/%2e%2e/admin", "Prefix /admin"),
            ("normalise.paths.test", "//alpha", "Exact /alpha"),
            ("normalise.paths.test", "/%61lpha", "Exact /alpha"),
            ("normalise.paths.test", "/%61lph%61", "Exact /alpha"),
            ("normalise.paths.test", "//public//x", "Prefix /public"),
            ("normalise.paths.test", "/../../public", "Prefix /public"),
            ("normalise.paths.test", "/other", "default"),
        ],
    );
}

// `lookup` takes the path only: the proxy splits the query off the request target first, so a
// query never influences routing, not even one that looks like a path.
#[test]
fn query_strings_are_not_part_of_the_path() {
    let t = table();
    let path_only = |target: &str| target.split_once('?').map_or(target, |(p, _)| p).to_string();
    let rows = [
        ("/search?q=rust", "Exact /search"),
        ("/search?next=/public", "Exact /search"),
        ("/public?redirect=/../admin", "Prefix /public"),
        ("/public/page?x=1&y=2", "Prefix /public"),
        ("/nothing?to=/search", "default"),
    ];
    for (target, want) in rows {
        assert_eq!(rule(&t, "query.paths.test", &path_only(target)), want, "{target}");
    }
}

/// The fixture and one Ingress on `host` with these `(pathType, path)` rules to its Service,
/// and `annotations`.
fn generated(host: &str, annotations: &str, paths: &[(&str, String)]) -> RoutingTable {
    let mut yaml = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: big\n  \
         namespace: paths\n  annotations: {{{annotations}}}\nspec:\n  ingressClassName: sluice\n  \
         rules:\n    - host: {host}\n      http:\n        paths:\n"
    );
    for (kind, path) in paths {
        yaml.push_str(&format!(
            "          - path: \"{path}\"\n            pathType: {kind}\n            backend:\n\
             \x20             service:\n                name: echo\n                port:\n\
             \x20                 number: 80\n"
        ));
    }
    let snapshot = snapshot_of(&[&fixture("paths"), &yaml]);
    sluice_translate::translate(&snapshot, &sluice_model::Settings::default())
}

// Hosts with more paths than a lookup keeps inline (16), or a path longer than 255 bytes,
// are matched through their own tables, with the same precedence.
#[test]
fn hosts_with_many_or_long_paths_match_alike() {
    let mut paths: Vec<(&str, String)> = (0..20).map(|i| ("Prefix", format!("/p{i}"))).collect();
    paths.extend([("Prefix", "/p1/deep".to_string()), ("Exact", "/p2".to_string())]);
    let long = format!("/{}", "l".repeat(300));
    let t = generated("many.paths.test", "", &paths);
    let t2 = generated("long.paths.test", "", &[("Prefix", long.clone()), ("Exact", "/e".into())]);
    for t in [&t, &t2] {
        assert_eq!(summary(t), Vec::<String>::new(), "{}", dump(t));
    }
    let deep = format!("{long}/x");
    check(
        &t,
        &[
            ("many.paths.test", "/p7/x", "Prefix /p7"),
            ("MANY.paths.test:80", "/p19", "Prefix /p19"),
            ("many.paths.test", "/p1/deep/er", "Prefix /p1/deep"),
            ("many.paths.test", "/p1/deeper", "Prefix /p1"),
            ("many.paths.test", "/p2", "Exact /p2"),
            ("many.paths.test", "/p2/x", "Prefix /p2"),
            ("many.paths.test", "/p20", "default"),
        ],
    );
    check(
        &t2,
        &[
            ("long.paths.test", &deep, &format!("Prefix {long}")),
            ("long.paths.test", "/e", "Exact /e"),
            ("long.paths.test", "/l", "default"),
        ],
    );
}

// A host with more than four regex paths tries them all at once (a `RegexSet`), the others one
// after the other, each checked against its literal prefix first: the same first match.
#[test]
fn regex_hosts_with_few_and_many_paths_match_alike() {
    let regexes =
        ["/api/v[0-9]+/x", "/api", "/static/.*\\\\.css", "/(a|b)/c", "/Z+", "/.*\\\\.png"];
    for n in [2, 4, 6] {
        let mut paths: Vec<(&str, String)> =
            regexes[..n].iter().map(|p| ("ImplementationSpecific", p.to_string())).collect();
        paths.push(("Exact", "/api/exact".into()));
        let t = generated(
            "regex.paths.test",
            "nginx.ingress.kubernetes.io/use-regex: \"true\"",
            &paths,
        );
        assert_eq!(summary(&t), Vec::<String>::new(), "{}", dump(&t));
        let rows: Vec<(&str, &str, String)> = [
            ("/api/v2/x", regexes[0]),
            ("/API/v2/x/y", regexes[0]),
            ("/api/v/x", regexes[1]),
            ("/apiary", regexes[1]),
            ("/Api", regexes[1]),
            ("/api/exact", "Exact"),
            ("/static/a/b.CSS", regexes[2]),
            ("/b/c", regexes[3]),
            ("/zzz", regexes[4]),
            ("/img/x.png", regexes[5]),
            ("/img/x.gif", "default"),
        ]
        .into_iter()
        .map(|(path, pattern)| {
            let i = regexes.iter().position(|r| *r == pattern).unwrap_or(usize::MAX);
            let want = match pattern {
                "Exact" => "Exact /api/exact".to_string(),
                _ if i < n => format!("ImplementationSpecific {pattern}").replace("\\\\", "\\"),
                _ => "default".to_string(),
            };
            ("regex.paths.test", path, want)
        })
        .collect();
        let rows: Vec<(&str, &str, &str)> =
            rows.iter().map(|(h, p, w)| (*h, *p, w.as_str())).collect();
        check(&t, &rows);
    }
}
