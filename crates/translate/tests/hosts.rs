//! Host matching and host validation. Fixture: `hosts.yaml`.

mod common;

use common::*;
use sluice_model::{Reason, RoutingTable, Severity};

const EXACT: &str = "hosts/sites -> hosts-exact-80 [10.2.0.1:8080]";
const WILD: &str = "hosts/sites -> hosts-wild-80 [10.2.0.2:8080]";
const ANY: &str = "hosts/sites -> hosts-anyhost-80 [10.2.0.3:8080]";
const API: &str = "hosts/sites -> hosts-api-80 [10.2.0.4:8080]";

fn table() -> RoutingTable {
    translate_fixture("hosts")
}

#[track_caller]
fn check(table: &RoutingTable, rows: &[(&str, &str, &str)]) {
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|&(host, path, want)| {
            let got = route(table, host, path);
            (got != want).then(|| format!("Host {host:?} {path}: want {want:?}, got {got:?}"))
        })
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// An exact host matches the Host header case-insensitively, with any port stripped.
#[test]
fn exact_host_ignores_case_and_port() {
    check(
        &table(),
        &[
            ("foo.example.com", "/", EXACT),
            ("Foo.Example.com:8080", "/", EXACT),
            ("FOO.EXAMPLE.COM", "/x", EXACT),
            ("foo.example.com:443", "/x", EXACT),
            ("foo.example.com.", "/", EXACT),
        ],
    );
}

// `*.foo.com` covers exactly one label: `bar.foo.com`, not `baz.bar.foo.com`, not `foo.com`
// (those fall to the host-less rules).
#[test]
fn wildcard_covers_exactly_one_label() {
    // Longer than any host name, and in upper case: still under the wildcard.
    let long = format!("{}.FOO.com", "B".repeat(300));
    check(
        &table(),
        &[
            (&long, "/", WILD),
            ("bar.foo.com", "/", WILD),
            ("BAR.foo.com:8080", "/x", WILD),
            ("baz.bar.foo.com", "/", ANY),
            ("foo.com", "/", ANY),
            ("barfoo.com", "/", ANY),
        ],
    );
}

// An exact host beats a wildcard that also covers it.
#[test]
fn exact_host_beats_wildcard() {
    check(&table(), &[("exact.foo.com", "/", EXACT), ("Exact.Foo.Com:80", "/y", EXACT)]);
}

// Rules without a host serve every host no rule declares (and requests with no Host at all).
#[test]
fn hostless_rules_serve_undeclared_hosts() {
    check(
        &table(),
        &[
            ("unknown.example.net", "/", ANY),
            ("example.com", "/anything", ANY),
            ("192.0.2.10:80", "/", ANY),
            ("[2001:db8::1]:8080", "/", ANY),
            ("", "/", ANY),
        ],
    );
}

// ingress-nginx's server model: a declared host is a server of its own; its unmatched paths
// get that host's default (the 404), never the host-less rules.
#[test]
fn declared_host_does_not_fall_back_to_hostless_rules() {
    check(
        &table(),
        &[
            ("api.example.com", "/v1", API),
            ("api.example.com", "/v1/users", API),
            ("api.example.com", "/", "404"),
            ("api.example.com", "/v2", "404"),
            ("API.example.com:8443", "/other", "404"),
        ],
    );
}

// Invalid hosts (bare `*`, a wildcard past the first label, an IP, a host with a port) are
// reported as InvalidHost errors and their rules skipped; the Ingress's valid rule still works.
#[test]
fn invalid_hosts_are_reported_and_skipped() {
    let t = table();
    let ing = "Ingress hosts/invalid-hosts";
    assert_eq!(summary_for(&t, ing), vec!["Error InvalidHost"; 4], "{}", dump(&t));
    for host in ["\"*\"", "\"a.*.b.com\"", "\"10.0.0.1\"", "\"good.example.com:8080\""] {
        assert_diag(&t, Severity::Error, Reason::InvalidHost, ing, host);
    }
    assert_diag(&t, Severity::Error, Reason::InvalidHost, ing, "IP address");
    // Nothing of the skipped rules was created.
    assert_eq!(
        hosts(&t),
        vec![
            "",
            "*.foo.com",
            "api.example.com",
            "exact.foo.com",
            "foo.example.com",
            "valid.example.com"
        ]
    );
    check(
        &t,
        &[
            ("valid.example.com", "/", "hosts/invalid-hosts -> hosts-api-80 [10.2.0.4:8080]"),
            ("10.0.0.1", "/only-invalid", ANY),
            ("good.example.com:8080", "/only-invalid", ANY),
            ("a.x.b.com", "/only-invalid", ANY),
            ("anything.test", "/only-invalid", ANY),
        ],
    );
    // The fixture's other Ingress is clean.
    assert_no_diag(&t, "Ingress hosts/sites");
}
