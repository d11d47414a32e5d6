//! Helpers shared by the semantic tests: load manifests into a [`Snapshot`], translate them,
//! and describe where a request goes as a short string that assertions can compare.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::Arc;

use k8s_openapi::api::networking::v1::IngressClass;
use sluice_manifests::{Object, parse_str};
use sluice_model::{
    Chunk, Diagnostic, Named, NamespacedName, Objects, PathMatch, Policy, Reason, RoutingTable,
    Settings, Severity, Snapshot, Target,
};

/// The text of `tests/fixtures/<name>.yaml`.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Parses YAML texts (fixtures or inline manifests) into one snapshot, in the given order.
///
/// Every fixture is self-contained and so declares the `sluice` IngressClass; when several are
/// loaded together, an identical cluster-scoped IngressClass is kept once, as a real source
/// would hold it (a differing redefinition is a mistake in the test data).
pub fn snapshot_of(texts: &[&str]) -> Snapshot {
    // A chunk per text and kind, as the manifests source keeps a chunk per file.
    let mut classes = Vec::new();
    let mut parts: (Vec<_>, Vec<_>, Vec<_>, Vec<_>, Vec<_>) = Default::default();
    for text in texts {
        let objects = parse_str(text).unwrap_or_else(|e| {
            panic!("manifest does not parse (line {:?}): {}\n{text}", e.line, e.message)
        });
        let (mut ingresses, mut services, mut slices, mut secrets, mut config_maps) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (_, object) in objects {
            match object {
                Object::Ingress(o) => ingresses.push(o),
                Object::IngressClass(o) => {
                    let known = classes
                        .iter()
                        .find(|c: &&Arc<IngressClass>| c.metadata.name == o.metadata.name)
                        .cloned();
                    match known {
                        Some(known) => {
                            assert_eq!(known, o, "IngressClass {:?} redefined", o.metadata.name)
                        }
                        None => classes.push(o),
                    }
                }
                Object::Service(o) => services.push(o),
                Object::EndpointSlice(o) => slices.push(o),
                Object::Secret(o) => secrets.push(o),
                Object::ConfigMap(o) => config_maps.push(o),
            }
        }
        parts.0.push(Chunk::new(ingresses));
        parts.1.push(Chunk::new(services));
        parts.2.push(Chunk::new(slices));
        parts.3.push(Chunk::new(secrets));
        parts.4.push(Chunk::new(config_maps));
    }
    Snapshot {
        ingresses: Objects::from_chunks(parts.0),
        ingress_classes: classes.into(),
        services: Objects::from_chunks(parts.1),
        endpoint_slices: Objects::from_chunks(parts.2),
        secrets: Objects::from_chunks(parts.3),
        config_maps: Objects::from_chunks(parts.4),
        observed_at: None,
    }
}

/// The snapshot of the named fixtures.
pub fn load(names: &[&str]) -> Snapshot {
    let texts: Vec<String> = names.iter().map(|n| fixture(n)).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    snapshot_of(&refs)
}

/// Translates the named fixtures under `settings`.
pub fn translate_fixtures(names: &[&str], settings: &Settings) -> RoutingTable {
    sluice_translate::translate(&load(names), settings)
}

/// Translates one fixture under the default settings.
pub fn translate_fixture(name: &str) -> RoutingTable {
    translate_fixtures(&[name], &Settings::default())
}

/// `ns/name` as a [`NamespacedName`].
pub fn nn(s: &str) -> NamespacedName {
    NamespacedName::parse(s).unwrap()
}

/// Where a request goes:
/// - `"ns/ingress -> ns-svc-80 [10.0.0.1:8080, 10.0.0.2:8080]"` for a backend (the owner is
///   `(default)` for the flag-given default backend; `[]` when no endpoint is ready);
/// - `"404"`, `"503"`, ... when the route answers locally.
pub fn route(table: &RoutingTable, host: &str, path: &str) -> String {
    let found = table.lookup(host, path);
    match &found.route.target {
        Target::Backend(id) => {
            let backend = &table.backends[*id as usize];
            let endpoints: Vec<String> =
                backend.endpoints.iter().map(|e| e.addr.to_string()).collect();
            format!("{} -> {} [{}]", owner_of(found.route), backend.name, endpoints.join(", "))
        }
        Target::Respond { status, .. } => status.to_string(),
        Target::RedirectHost { host } => format!("redirect to {host}"),
    }
}

/// Which rule serves a request: `"Exact /foo"`, `"Prefix /aaa"`,
/// `"ImplementationSpecific /x"`, or `"default"` for a host's or the table's default route.
pub fn rule(table: &RoutingTable, host: &str, path: &str) -> String {
    let found = table.lookup(host, path);
    match found.route.path_match {
        PathMatch::Default => "default".to_string(),
        m => format!("{} {}", m.as_str(), found.route.path),
    }
}

/// The Ingress whose route serves a request (`ns/name`), or `(default)` for the built-in or
/// flag-given default.
pub fn owner(table: &RoutingTable, host: &str, path: &str) -> String {
    owner_of(table.lookup(host, path).route)
}

fn owner_of(route: &sluice_model::Route) -> String {
    route.ingress.as_ref().map(ToString::to_string).unwrap_or_else(|| "(default)".into())
}

/// `owner`, `rule` and `route` in one line, with the route's policy and what translation
/// decided of it, for comparing whole tables.
pub fn describe(table: &RoutingTable, host: &str, path: &str) -> String {
    let r = served(table, host, path);
    format!(
        "{host}{path}: {} {} => {} {:?} https={} rewrite={:?} app_root={:?} fallback={:?} fast={}",
        owner(table, host, path),
        rule(table, host, path),
        route(table, host, path),
        r.policy,
        r.redirect_to_https,
        r.rewrite.as_ref().map(|w| w.target().to_string()),
        r.app_root,
        r.fallback.map(|b| table.backends[b as usize].name.clone()),
        r.fast,
    )
}

/// The policy of the route serving a request.
pub fn policy(table: &RoutingTable, host: &str, path: &str) -> Policy {
    (*table.lookup(host, path).route.policy).clone()
}

/// The route serving a request.
pub fn served(table: &RoutingTable, host: &str, path: &str) -> sluice_model::Route {
    table.lookup(host, path).route.clone()
}

/// Every diagnostic as `"<Severity> <Reason> <Object>"` (the message left out), in table order.
pub fn summary(table: &RoutingTable) -> Vec<String> {
    table.diagnostics.iter().map(short).collect()
}

/// The diagnostics about one object (`"Ingress ns/name"`, `"Service ns/name"`,
/// `"ConfigMap ns/name"`) as `"<Severity> <Reason>"`, in table order.
pub fn summary_for(table: &RoutingTable, object: &str) -> Vec<String> {
    table
        .diagnostics
        .iter()
        .filter(|d| d.object.to_string() == object)
        .map(|d| format!("{:?} {}", d.severity, d.reason))
        .collect()
}

fn short(d: &Diagnostic) -> String {
    format!("{:?} {} {}", d.severity, d.reason, d.object)
}

/// Every diagnostic in full, one per line, for failure messages.
pub fn dump(table: &RoutingTable) -> String {
    table.diagnostics.iter().map(|d| format!("  {d}\n")).collect()
}

/// Asserts that a diagnostic with this severity, reason and object exists and that its message
/// contains `needle`. Returns it.
#[track_caller]
pub fn assert_diag<'t>(
    table: &'t RoutingTable,
    severity: Severity,
    reason: Reason,
    object: &str,
    needle: &str,
) -> &'t Diagnostic {
    table
        .diagnostics
        .iter()
        .find(|d| {
            d.severity == severity
                && d.reason == reason
                && d.object.to_string() == object
                && d.message.contains(needle)
        })
        .unwrap_or_else(|| {
            panic!(
                "no {severity:?} {reason} on {object} containing {needle:?}; diagnostics:\n{}",
                dump(table)
            )
        })
}

/// Asserts that no diagnostic concerns `object`.
#[track_caller]
pub fn assert_no_diag(table: &RoutingTable, object: &str) {
    let found = summary_for(table, object);
    assert!(found.is_empty(), "unexpected diagnostics on {object}: {found:?}\n{}", dump(table));
}

/// The default policy with other values, for readable expectations.
pub fn policy_with(f: impl FnOnce(&mut Policy)) -> Policy {
    let mut p = Policy::default();
    f(&mut p);
    p
}

/// Every host in force in the table (the catch-all as `""`), sorted.
pub fn hosts(table: &RoutingTable) -> Vec<String> {
    let mut hosts: Vec<String> = table.live_hosts().map(|h| h.host().to_string()).collect();
    hosts.sort();
    hosts
}

/// A deterministic permutation of `items` (Fisher-Yates driven by a fixed LCG), to present
/// the same objects in another order without a random number generator.
/// The snapshot with every object list shuffled (deterministically, by `seed`).
pub fn shuffled_snapshot(s: &Snapshot, seed: u64) -> Snapshot {
    Snapshot {
        ingresses: shuffled_objects(&s.ingresses, seed),
        ingress_classes: shuffled_objects(&s.ingress_classes, seed + 1),
        services: shuffled_objects(&s.services, seed + 2),
        endpoint_slices: shuffled_objects(&s.endpoint_slices, seed + 3),
        secrets: shuffled_objects(&s.secrets, seed + 4),
        config_maps: shuffled_objects(&s.config_maps, seed + 5),
        observed_at: s.observed_at,
    }
}

/// `objects` shuffled like [`shuffled`], and cut into chunks of varied sizes, as a source
/// that keeps a chunk per file hands them over: translation must not depend on either.
pub fn shuffled_objects<T: Named>(objects: &Objects<T>, seed: u64) -> Objects<T> {
    let all: Vec<_> = objects.iter().cloned().collect();
    let mut all = shuffled(&all, seed).into_iter().peekable();
    let mut chunks = Vec::new();
    let mut size = 1 + (seed % 3) as usize;
    while all.peek().is_some() {
        chunks.push(Chunk::new(all.by_ref().take(size).collect()));
        size = size % 4 + 1;
    }
    Objects::from_chunks(chunks)
}

/// `items` in an order given by `seed`.
pub fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut out = items.to_vec();
    let mut state = seed;
    for i in (1..out.len()).rev() {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let j = ((state >> 33) % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    out
}

/// Requests covering every host of the table (plus undeclared ones) and a spread of paths,
/// each described in full: owner, rule, target with endpoints, policy.
pub fn observe(table: &RoutingTable) -> Vec<String> {
    let mut hosts: Vec<String> =
        hosts(table).into_iter().map(|h| h.replace("*.", "any.")).collect();
    hosts.extend(["undeclared.test".to_string(), "deep.any.foo.com".to_string()]);
    let paths = [
        "/",
        "/foo",
        "/foo/",
        "/aaa/bbb",
        "/api",
        "/api/x",
        "/app",
        "/blog",
        "/docs",
        "/cart",
        "/metrics",
        "/by-name",
        "/idle",
        "/nope",
        "/bucket",
        "/legacy",
        "/x",
        "/late",
        "/other",
        "/public/../admin",
        "/%61lpha",
        "//alpha",
    ];
    let mut out = Vec::new();
    for host in &hosts {
        for path in paths {
            out.push(describe(table, host, path));
        }
    }
    out
}

/// Asserts that two tables have the same diagnostics and hosts, and route the requests of
/// [`observe`] the same way.
#[track_caller]
pub fn assert_same(a: &RoutingTable, b: &RoutingTable, what: &str) {
    assert_eq!(a.diagnostics, b.diagnostics, "{what}: diagnostics differ");
    assert_eq!(hosts(a), hosts(b), "{what}: hosts differ");
    let (oa, ob) = (observe(a), observe(b));
    let diff: Vec<String> =
        oa.iter().zip(&ob).filter(|(x, y)| x != y).map(|(x, y)| format!("  {x}\n  {y}")).collect();
    assert!(diff.is_empty(), "{what}: {} lookups differ:\n{}", diff.len(), diff.join("\n"));
}
