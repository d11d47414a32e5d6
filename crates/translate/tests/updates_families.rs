//! Incremental updates over the annotation families (fixture `families.yaml`): an update
//! gives exactly what a full translation gives, backends' balancing, canaries and cluster IPs
//! included, or refuses (`None`). An Ingress that reaches beyond its own hosts and routes (a
//! canary, aliases, a `www` redirect, how a backend is balanced or reached) is never updated
//! alone; a change of a ConfigMap the table never read leaves it `unchanged`.

mod common;

use std::sync::Arc;

use common::*;
use k8s_openapi::api::networking::v1::Ingress;
use sluice_model::{Backend, Canary, RoutingTable, Settings, Snapshot, Target};
use sluice_translate::{translate, unchanged, update_endpoints, update_ingresses};

/// `--configmap families/sluice-config`.
fn with_config() -> Settings {
    Settings { configmap: Some(nn("families/sluice-config")), ..Settings::default() }
}

/// The paths every host is looked up with.
const PATHS: &[&str] =
    &["/", "/x", "/api", "/late", "/exact", "/other", "/OTHER", "/follow", "/nope"];

/// A backend in full: name, endpoints, protocol, balancing, cluster IP, and its canary's.
fn backend_view(t: &RoutingTable, id: u32) -> String {
    let b: &Backend = &t.backends[id as usize];
    let eps = |b: &Backend| b.endpoints.iter().map(|e| e.addr.to_string()).collect::<Vec<_>>();
    let canary = b.canary.as_deref().map(|c| {
        let cb = &t.backends[c.backend as usize];
        let rules = Canary { backend: 0, ..c.clone() };
        format!("{} {:?} {:?} su={} {rules:?}", cb.name, eps(cb), cb.balance, cb.service_upstream)
    });
    format!(
        "{} {:?} {:?} {:?} su={} canary={canary:?}",
        b.name,
        eps(b),
        b.protocol,
        b.balance,
        b.service_upstream
    )
}

/// Where every request of every host goes, in full (route, policy, flags, backends with
/// their balancing and canaries, fallback), and each host's certificate and handshake policy.
fn view(t: &RoutingTable, hosts: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for host in hosts {
        for path in PATHS {
            let r = t.lookup(host, path).route;
            let target = match &r.target {
                Target::Backend(id) => backend_view(t, *id),
                other => format!("{other:?}"),
            };
            let fallback = r.fallback.map(|id| backend_view(t, id));
            out.push(format!(
                "{host}{path}: {:?} {:?} {:?} => {target} fallback={fallback:?} {:?} \
                 https={} app_root={:?} fast={}",
                r.ingress, r.path, r.path_match, r.policy, r.redirect_to_https, r.app_root, r.fast
            ));
        }
        let tls = &t.tls;
        let cert = tls.cert_by_name.get(host).map(|&i| tls.certs[i as usize].secret.to_string());
        let policy = &tls.policies[tls.policy_for(host) as usize];
        out.push(format!("{host}: certificate {cert:?}, handshake {policy:?}"));
    }
    out
}

/// How `updated` differs from `full` (a translation of the same snapshot), if it does.
fn differences(updated: &RoutingTable, full: &RoutingTable) -> Option<String> {
    let mut names = hosts(full);
    names.extend(hosts(updated));
    names.push("undeclared.test".into());
    names.sort();
    names.dedup();
    let (u, f) = (view(updated, &names), view(full, &names));
    let mut diff: Vec<String> = u
        .iter()
        .zip(&f)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| format!("  update: {x}\n  full:   {y}"))
        .collect();
    let (du, df) = (&*updated.diagnostics, &*full.diagnostics);
    diff.extend(du.iter().filter(|d| !df.contains(d)).map(|d| format!("  update only: {d}")));
    diff.extend(df.iter().filter(|d| !du.contains(d)).map(|d| format!("  full only: {d}")));
    if hosts(updated) != hosts(full) {
        diff.push(format!("  hosts: {:?}\n  full:  {:?}", hosts(updated), hosts(full)));
    }
    if *updated.owned != *full.owned {
        diff.push("  owned Ingresses differ".into());
    }
    (!diff.is_empty()).then(|| diff.join("\n"))
}

/// Asserts that `updated` serves what `full` (a translation of the same snapshot) serves.
#[track_caller]
fn assert_same_as_full(updated: &RoutingTable, full: &RoutingTable, what: &str) {
    if let Some(diff) = differences(updated, full) {
        panic!("{what}: differs:\n{diff}");
    }
}

/// The update of `before` (translated in full) to `after`, if accepted, and how it differs
/// from a full translation of `after`.
fn try_update(before: &Snapshot, after: &Snapshot, settings: &Settings) -> Option<Option<String>> {
    let previous = translate(before, settings);
    let updated = update_ingresses(&previous, before, after, settings)?;
    Some(differences(&updated, &translate(after, settings)))
}

/// Checks the update of `before` (translated in full) to `after` against a full translation
/// when it is accepted; returns whether it was.
#[track_caller]
fn check(before: &Snapshot, after: &Snapshot, settings: &Settings, what: &str) -> bool {
    match try_update(before, after, settings) {
        None => false,
        Some(None) => true,
        Some(Some(diff)) => panic!("{what}: differs:\n{diff}"),
    }
}

/// The four changes of Ingress `name` in `all`: removed, added back, first host renamed,
/// renamed back.
fn changes(all: &Snapshot, name: &str) -> Vec<(Snapshot, Snapshot, String)> {
    let (without, renamed) = variants(all, name);
    vec![
        (all.clone(), without.clone(), format!("{name} removed")),
        (without, all.clone(), format!("{name} added")),
        (all.clone(), renamed.clone(), format!("{name} renamed")),
        (renamed, all.clone(), format!("{name} renamed back")),
    ]
}

fn name_of(i: &Ingress) -> String {
    i.metadata.name.clone().unwrap_or_default()
}

/// `all` without Ingress `name`, and with its first rule's host renamed.
fn variants(all: &Snapshot, name: &str) -> (Snapshot, Snapshot) {
    let i = all.ingresses.iter().position(|x| name_of(x) == name).expect(name);
    let mut without = all.clone();
    without.ingresses.make_mut().remove(i);
    let mut renamed = all.clone();
    let mut ingress = (*renamed.ingresses[i]).clone();
    let rule = ingress.spec.as_mut().and_then(|s| s.rules.as_mut()).and_then(|r| r.first_mut());
    if let Some(rule) = rule {
        rule.host = Some(format!("renamed-{name}.families.test"));
    }
    renamed.ingresses.make_mut()[i] = Arc::new(ingress);
    (without, renamed)
}

/// Removes, adds back, and renames the first host of, each Ingress of `all` but those in
/// `skip`, checking every accepted update; returns the Ingresses some update of which was
/// accepted.
fn every_change(all: &Snapshot, settings: &Settings, skip: &[&str]) -> Vec<String> {
    let mut accepted = Vec::new();
    let names: Vec<String> = all.ingresses.iter().map(|i| name_of(i)).collect();
    for name in names.iter().filter(|n| !skip.contains(&n.as_str())) {
        let mut any = false;
        for (before, after, what) in changes(all, name) {
            any |= check(&before, &after, settings, &what);
        }
        if any {
            accepted.push(name.clone());
        }
    }
    accepted
}

/// Ingresses of the fixture that reach beyond their own hosts and routes: canaries, aliases,
/// `www` redirects, how a backend is balanced or reached. Every update of one is refused.
const REACHING: &[&str] = &[
    "canary-a",
    "canary-b",
    "canary-self",
    "sticky-canary",
    "legacy-canary",
    "alias",
    "alias-late",
    "www",
    "www-reverse",
    "www-skip",
    "lb-first",
    "lb-second",
    "hash",
    "sticky-hash",
    "sticky-first",
    "sticky-last",
    "sticky-main",
    "legacy-main",
    "su-first",
    "su-late",
    "su-headless",
    "fallback",
    "fallback-missing",
];

/// Ingresses of the fixture whose updates a full translation does not agree with (see the
/// tests marked `bug` below): they name a backend that another Ingress's annotations shape
/// (the followers, and su-plain, which decides cip-late's backend by having no annotation), or
/// a host that is another host's alias or www name.
const SHARING: &[&str] = &[
    "lb-follower",
    "sticky-follower",
    "stable-follower",
    "su-second",
    "su-plain",
    "alias-taken",
    "www-skip-other",
];

// Every change of an Ingress is either refused or gives what a full translation gives, with
// and without the controller's ConfigMap; the changes of Ingresses that reach beyond their
// hosts are all refused, and enough of the others are accepted for this to mean something.
#[test]
fn ingress_updates_give_what_translate_gives_or_are_refused() {
    let all = load(&["families"]);
    for settings in [Settings::default(), with_config()] {
        let accepted = every_change(&all, &settings, SHARING);
        let reaching: Vec<&String> =
            accepted.iter().filter(|n| REACHING.contains(&n.as_str())).collect();
        assert!(reaching.is_empty(), "updates of {reaching:?} were accepted");
        assert!(accepted.len() >= 25, "only {} accepted: {accepted:?}", accepted.len());
        for name in ["plain", "limits", "errors", "mirror", "custom-headers", "not-canary"] {
            assert!(
                accepted.iter().any(|a| a == name),
                "{name} is alone on its host: {accepted:?}"
            );
        }
    }
}

/// An Ingress `lonely` on its own host lonely.families.test to Service `service`, with
/// `annotations` (`name: value`, without the prefix).
fn lonely(service: &str, annotations: &[(&str, &str)]) -> String {
    let mut a = String::new();
    for (name, value) in annotations {
        a.push_str(&format!("    nginx.ingress.kubernetes.io/{name}: \"{value}\"\n"));
    }
    let a = if a.is_empty() { String::from(" {}\n") } else { format!("\n{a}") };
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: lonely
  namespace: families
  annotations:{a}spec:
  ingressClassName: sluice
  rules:
    - host: lonely.families.test
      http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: {service}, port: {{number: 80}}}}}}}}]}}
"
    )
}

/// `base` with the Ingresses of `yaml` added (the others shared).
fn adding(base: &Snapshot, yaml: &str) -> Snapshot {
    let mut after = base.clone();
    for i in snapshot_of(&[yaml]).ingresses.iter() {
        after.ingresses.push(i.clone());
    }
    after
}

// An Ingress alone on its host that is a canary, has aliases or a www redirect, or sets how its
// backend is balanced or reached (Referrers::alone) is never added, removed nor changed by an
// Ingress update; the same Ingress without the annotation is.
#[test]
fn updates_of_ingresses_that_reach_beyond_their_hosts_are_refused() {
    let settings = Settings::default();
    let base = load(&["families"]);
    let plain = adding(&base, &lonely("app", &[]));
    let reaching: &[(&str, &[(&str, &str)])] = &[
        ("canary", &[("canary", "true"), ("canary-weight", "10")]),
        ("server-alias", &[("server-alias", "lonely-alias.families.test")]),
        ("from-to-www-redirect", &[("from-to-www-redirect", "true")]),
        ("load-balance", &[("load-balance", "ewma")]),
        ("upstream-hash-by", &[("upstream-hash-by", "$request_uri")]),
        ("affinity", &[("affinity", "cookie")]),
        ("service-upstream", &[("service-upstream", "true")]),
        ("default-backend", &[("default-backend", "errors")]),
    ];
    // The control: without those annotations, adding, removing and changing it is an update.
    assert!(check(&base, &plain, &settings, "lonely added"));
    assert!(check(&plain, &base, &settings, "lonely removed"));
    let limits = adding(&base, &lonely("app", &[("proxy-body-size", "8m")]));
    assert!(check(&plain, &limits, &settings, "lonely's body size changed"));
    for (what, annotations) in reaching {
        let with = adding(&base, &lonely("app", annotations));
        for (before, after, change) in
            [(&base, &with, "added"), (&with, &base, "removed"), (&plain, &with, "changed")]
        {
            let previous = translate(before, &settings);
            assert!(
                update_ingresses(&previous, before, after, &settings).is_none(),
                "lonely with {what} {change}"
            );
        }
    }
}

/// The changes of each of `names` whose update is accepted and differs from a full
/// translation, with how.
fn wrong_updates(names: &[&str], settings: &Settings) -> Vec<String> {
    let all = load(&["families"]);
    let mut wrong = Vec::new();
    for name in names {
        for (before, after, what) in changes(&all, name) {
            if let Some(Some(diff)) = try_update(&before, &after, settings) {
                let first = diff.lines().take(2).collect::<Vec<_>>().join("\n");
                wrong.push(format!("{what}:\n{first}"));
            }
        }
    }
    wrong
}

// An Ingress on a host of its own that names a Service another Ingress's annotations shape:
// in a full translation its routes go to the one backend of that Service port, balanced as
// the oldest Ingress naming it says (createUpstreams: ewma for lb-follower; su-first's cluster
// IP for su-second), sticky (sticky-follower), with its canary (stable-follower:
// mergeAlternativeBackends attaches to the upstream); and su-plain, the oldest on cip-late,
// decides by having no annotation, so that when it goes su-late's service-upstream decides.
// An update of it alone makes (or keeps) a backend of its own, round robin, without canary,
// on the pods. It must refuse instead (or reuse the shared backend).
#[test]
fn updates_of_ingresses_sharing_a_shaped_backend_give_what_translate_gives() {
    let names = ["lb-follower", "sticky-follower", "stable-follower", "su-second", "su-plain"];
    for settings in [Settings::default(), with_config()] {
        let wrong = wrong_updates(&names, &settings);
        assert!(wrong.is_empty(), "{} wrong updates:\n{}", wrong.len(), wrong.join("\n"));
    }
}

// Removing (or renaming) the Ingress whose host is another host's alias, or the other name of
// a www redirect, gives that name back to the alias or the redirect in a full translation
// (createServers drops only aliases that are servers; the www redirect is skipped only while
// the other name is a host); the update leaves the name unserved.
#[test]
fn removing_a_host_that_shadowed_an_alias_or_www_name_gives_what_translate_gives() {
    let wrong = wrong_updates(&["alias-taken", "www-skip-other"], &Settings::default());
    assert!(wrong.is_empty(), "{} wrong updates:\n{}", wrong.len(), wrong.join("\n"));
}

/// The fixture with its EndpointSlices' addresses edited by `edit` (the other objects are the
/// same ones).
fn with_slices(base: &Snapshot, yaml_edit: impl Fn(String) -> String) -> Snapshot {
    let edited = snapshot_of(&[&yaml_edit(fixture("families"))]);
    let mut after = base.clone();
    after.endpoint_slices = edited.endpoint_slices;
    after
}

// update_endpoints: a service-upstream backend keeps its one endpoint, the cluster IP, whatever
// its pods do; a main backend keeps its canary when either one's endpoints change, and the
// canary's backend gets its new endpoints. The result is a full translation's.
#[test]
fn endpoint_updates_keep_cluster_ips_and_canaries() {
    let before = load(&["families"]);
    let after = with_slices(&before, |y| {
        y.replace("[\"10.40.0.30\"]", "[\"10.40.0.99\"]")
            .replace("[\"10.40.0.5\"]", "[\"10.40.0.5\", \"10.40.0.55\"]")
            .replace(
                "addresses: [\"10.40.0.11\"], conditions: {ready: true}",
                "addresses: [\"10.40.0.11\"], conditions: {ready: false}",
            )
            .replace("[\"10.40.0.13\"]", "[\"10.40.0.113\"]")
    });
    let cip = after.endpoint_slices.iter().find(|s| s.name == "cip-1").expect("cip-1");
    assert_eq!(cip.endpoints[0].addresses, vec!["10.40.0.99"], "cip's pods moved");
    for settings in [Settings::default(), with_config()] {
        let previous = translate(&before, &settings);
        let updated =
            update_endpoints(&previous, &before, &after).expect("an endpoint-only change");
        let full = translate(&after, &settings);
        assert_same_as_full(&updated, &full, "endpoints");

        let b = backend(&updated, "su-first.families.test", "/");
        assert!(b.service_upstream);
        assert_eq!(addrs(b), vec!["10.96.0.30:80"]);
        let main = backend(&updated, "canary.families.test", "/");
        assert_eq!(addrs(main), vec!["10.40.0.5:8080", "10.40.0.55:8080"]);
        let canary =
            &updated.backends[main.canary.as_ref().expect("still a canary").backend as usize];
        assert_eq!((canary.name.as_str(), addrs(canary)), ("families-canary-a-80", vec![]));
        let main = backend(&updated, "sticky-canary.families.test", "/");
        let canary =
            &updated.backends[main.canary.as_ref().expect("still a canary").backend as usize];
        assert_eq!(addrs(canary), vec!["10.40.0.113:8080"]);
        assert_eq!(canary.balance, main.balance, "the sticky canary keeps the main's affinity");
    }
}

fn backend<'t>(t: &'t RoutingTable, host: &str, path: &str) -> &'t Backend {
    match &t.lookup(host, path).route.target {
        Target::Backend(id) => &t.backends[*id as usize],
        other => panic!("{host}{path}: {other:?}"),
    }
}

fn addrs(b: &Backend) -> Vec<String> {
    b.endpoints.iter().map(|e| e.addr.to_string()).collect()
}

/// `base` with ConfigMap `namespace/name`'s data changed (or the ConfigMap added when absent).
fn with_config_map(base: &Snapshot, namespace: &str, name: &str) -> Snapshot {
    let yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {namespace}}}\ndata: {{changed: \"yes\"}}\n"
    );
    let new = snapshot_of(&[&yaml]).config_maps.iter().next().unwrap().clone();
    let mut after = base.clone();
    let list = after.config_maps.make_mut();
    match list.iter().position(|c| {
        c.metadata.name.as_deref() == Some(name)
            && c.metadata.namespace.as_deref() == Some(namespace)
    }) {
        Some(i) => list[i] = new,
        None => list.push(new),
    }
    after
}

// `unchanged`: a change of a ConfigMap translation never looked up (a leader-election
// ConfigMap, say) leaves the table as it is; a change of one it read is a change: the
// controller's, those its keys name (add-headers, proxy-set-headers), those Ingresses name
// (custom-headers), found or not.
#[test]
fn only_config_maps_the_table_read_are_changes() {
    let before = load(&["families"]);
    let settings = with_config();
    let previous = translate(&before, &settings);
    assert!(unchanged(&previous, &before, &with_config_map(&before, "families", "unrelated")));
    assert!(unchanged(&previous, &before, &with_config_map(&before, "families", "brand-new")));
    // custom-headers naming another namespace's ConfigMap is refused without reading it.
    assert!(unchanged(&previous, &before, &with_config_map(&before, "other", "custom-headers")));
    for (ns, name) in [
        ("families", "sluice-config"),
        ("families", "add-headers"),
        ("families", "proxy-headers"),
        ("families", "custom-headers"),
        ("families", "bad-headers"),
        ("families", "no-such-headers"),
    ] {
        let after = with_config_map(&before, ns, name);
        assert!(!unchanged(&previous, &before, &after), "{ns}/{name} was read");
        assert!(update_endpoints(&previous, &before, &after).is_none(), "{ns}/{name}");
        assert!(update_ingresses(&previous, &before, &after, &settings).is_none(), "{ns}/{name}");
    }
    // Without --configmap, the controller's ConfigMap (and those its keys name) is not read.
    let previous = translate(&before, &Settings::default());
    for name in ["sluice-config", "add-headers", "proxy-headers"] {
        let after = with_config_map(&before, "families", name);
        assert!(unchanged(&previous, &before, &after), "{name} is not read without --configmap");
    }
    assert!(!unchanged(
        &previous,
        &before,
        &with_config_map(&before, "families", "custom-headers")
    ));
}

// A table made by an Ingress update still knows the ConfigMaps the new Ingress reads: creating
// the custom-headers ConfigMap it names (missing until then) is a change.
#[test]
fn config_maps_read_by_an_updated_ingress_are_changes() {
    let settings = with_config();
    let before = load(&["families"]);
    let after = adding(&before, &lonely("app", &[("custom-headers", "lonely-headers")]));
    let previous = translate(&before, &settings);
    let updated = update_ingresses(&previous, &before, &after, &settings).expect("an update");
    assert_same_as_full(&updated, &translate(&after, &settings), "lonely added");
    assert_eq!(route(&updated, "lonely.families.test", "/"), "503", "a missing ConfigMap");
    let created = with_config_map(&after, "families", "lonely-headers");
    assert!(!unchanged(&updated, &after, &created), "the ConfigMap lonely names appeared");
    assert!(unchanged(&updated, &after, &with_config_map(&after, "families", "unrelated")));
}
