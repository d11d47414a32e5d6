//! `sluice_translate::update_ingresses` against the full translation it stands in for: on the
//! synthetic cluster, after Ingress changes of every kind it accepts, the updated table serves
//! what a full translation of the new snapshot serves (compared as `/debug/config` JSON: every
//! host in force, its routes with their backends and endpoints, the diagnostics), owns the
//! same Ingresses, and knows the same Ingresses behind each backend (what later endpoint
//! updates warn from). Changes it cannot make exactly are refused.

use std::sync::Arc;

use k8s_openapi::api::networking::v1::{
    Ingress, IngressBackend, IngressServiceBackend, IngressTLS,
};
use sluice::report::ConfigView;
use sluice_bench::{Application, Scale, generate, host, settings};
use sluice_model::{
    ChunkVec, NamespacedName, Origin, Reason, RoutingTable, Settings, Snapshot, Target,
};
use sluice_translate::{translate, update_endpoints, update_ingresses};

/// What a table serves, as `/debug/config` shows it.
fn served(t: &RoutingTable) -> serde_json::Value {
    serde_json::to_value(ConfigView::new(t, &[])).unwrap()
}

/// Each backend Ingresses reference (by name), with those Ingresses.
fn referrers(t: &RoutingTable) -> Vec<(String, Vec<NamespacedName>)> {
    let mut list: Vec<_> = (0..t.backends.len())
        .filter(|&id| !t.referrers.of(id as u32).is_empty())
        .map(|id| {
            let mut names: Vec<NamespacedName> = t
                .referrers
                .of(id as u32)
                .iter()
                .map(|&place| t.owned[place as usize].clone())
                .collect();
            names.sort();
            (t.backends[id].name.clone(), names)
        })
        .collect();
    list.sort();
    list
}

/// Where a request lands, by names (route ids and backend ids differ between the tables).
fn landing(t: &RoutingTable, host: &str, path: &str) -> String {
    let r = t.lookup(host, path).route;
    let target = match &r.target {
        Target::Backend(b) => t.backends[*b as usize].name.clone(),
        Target::Respond { status, .. } => status.to_string(),
        Target::RedirectHost { host } => format!("redirect to {host}"),
    };
    format!("{host}{path} -> {:?} {} {:?} {:?}: {target}", r.ingress, r.host, r.path, r.path_match)
}

/// Asserts that every host in force, and hosts of none, look up alike in both tables: the
/// lookup reads the hosts' records, which updates append, not the hosts `served` shows.
#[track_caller]
fn assert_same_lookups(updated: &RoutingTable, full: &RoutingTable) {
    let mut hosts: Vec<String> =
        full.live_hosts().map(|h| h.host().replace("*.", "any.")).collect();
    hosts.extend(["unknown.example.org".into(), host(9), host(7).to_uppercase()]);
    let paths = ["/", "/api", "/api/v1/users/7", "/api/v2/users/7", "/healthz", "/static/a.css"];
    for h in &hosts {
        for p in paths {
            assert_eq!(landing(updated, h, p), landing(full, h, p));
        }
    }
}

/// Asserts that `updated` is what a full translation of `after` gives.
#[track_caller]
fn assert_same(updated: &RoutingTable, after: &Snapshot) {
    let full = translate(after, &settings());
    assert!(served(updated) == served(&full), "the update serves what a full translation does");
    assert_same_lookups(updated, &full);
    assert_eq!(*updated.owned, *full.owned);
    assert_eq!(*updated.diagnostics, *full.diagnostics);
    assert_eq!(referrers(updated), referrers(&full));
    assert_eq!(updated.host_count(), full.host_count());
}

/// Updates `previous` (the table of `before`) to `after`, checks it against a full
/// translation, and returns it.
#[track_caller]
fn check(previous: &RoutingTable, before: &Snapshot, after: &Snapshot) -> RoutingTable {
    let updated =
        update_ingresses(previous, before, after, &settings()).expect("an Ingress update");
    assert_same(&updated, after);
    assert_eq!(updated.origin, Origin::Ingresses);
    // Past the first chunk of routes (1,024), what was there is shared.
    if previous.routes.len() > 2048 {
        assert!(ChunkVec::shares_start(&updated.routes, &previous.routes), "routes are shared");
    }
    assert!(Arc::ptr_eq(&updated.tls, &previous.tls), "TLS is shared");
    updated
}

/// The position of Ingress `namespace/name`.
fn position(snapshot: &Snapshot, name: &str) -> usize {
    snapshot
        .ingresses
        .iter()
        .position(|i| i.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no Ingress {name}"))
}

/// `snapshot` with `f` applied to a copy of Ingress `name`, in place in its namespace's chunk
/// (the others shared, as the sources do).
fn edit(snapshot: &Snapshot, name: &str, f: impl FnOnce(&mut Ingress)) -> Snapshot {
    let mut after = snapshot.clone();
    let found = after.ingresses.edit(|i| i.metadata.name.as_deref() == Some(name), f);
    assert!(found, "no Ingress {name}");
    after
}

/// `snapshot` with a copy of Ingress `template` added as `name`, for `host` alone.
fn add(snapshot: &Snapshot, template: &str, name: &str, host: &str) -> Snapshot {
    let mut after = snapshot.clone();
    let mut ingress = (*after.ingresses[position(snapshot, template)]).clone();
    ingress.metadata.name = Some(name.into());
    let spec = ingress.spec.as_mut().unwrap();
    spec.rules.as_mut().unwrap().truncate(1);
    spec.rules.as_mut().unwrap()[0].host = Some(host.into());
    after.ingresses.push(Arc::new(ingress));
    after
}

fn rules_mut(i: &mut Ingress) -> &mut Vec<k8s_openapi::api::networking::v1::IngressRule> {
    i.spec.as_mut().unwrap().rules.as_mut().unwrap()
}

fn service_backend(name: &str) -> IngressBackend {
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: name.into(),
            port: Some(k8s_openapi::api::networking::v1::ServiceBackendPort {
                number: Some(80),
                name: None,
            }),
        }),
        resource: None,
    }
}

// At full scale, the changes an application's deployment makes: a new Ingress on a new host,
// a changed one, a removed one. Each is applied to the table of the one before.
#[test]
fn ingresses_added_changed_and_removed_at_large_scale() {
    let s0 = generate(Scale::LARGE);
    let t0 = translate(&s0, &settings());

    // A new Ingress for a new host, naming the Services of Ingress 7 (their backends are
    // shared, not made again).
    let s1 = add(&s0, "ing-7", "new-app", "new-app.example.com");
    let t1 = check(&t0, &s0, &s1);
    assert_eq!(t1.backends.len(), t0.backends.len(), "known backends are reused");
    assert_eq!(
        t1.lookup("new-app.example.com", "/").route.ingress.as_ref().unwrap().name,
        "new-app"
    );

    // Ingress 40 (with a wildcard host too) loses a path and sends `/` to a Service that does not
    // exist: that path answers 503, with an error on the Ingress.
    let s2 = edit(&s1, "ing-40", |i| {
        for rule in rules_mut(i) {
            let paths = &mut rule.http.as_mut().unwrap().paths;
            paths.pop();
            paths[0].backend = service_backend("missing");
        }
    });
    let t2 = check(&t1, &s1, &s2);
    assert!(t2.diagnostics.iter().any(|d| d.reason == Reason::MissingService));

    // A regex Ingress changes its annotations: the host leaves regex mode.
    let s3 = edit(&s2, "ing-5", |i| {
        i.metadata.annotations = None;
    });
    // Ingress 9 is deleted: its host falls to the catch-all's default (the built-in 404).
    let t3 = check(&t2, &s2, &s3);
    let mut s4 = s3.clone();
    let at = position(&s4, "ing-9");
    s4.ingresses.make_mut().remove(at);
    let t4 = check(&t3, &s3, &s4);
    assert_eq!(t4.lookup(&host(9), "/").route.ingress, None);

    // Ingress 11 moves to another controller's class: it is no longer ours.
    let s5 = edit(&s4, "ing-11", |i| {
        i.spec.as_mut().unwrap().ingress_class_name = Some("other".into());
    });
    let t5 = check(&t4, &s4, &s5);
    assert_eq!(t5.owned.len(), t4.owned.len() - 1);

    // Endpoint updates after Ingress updates still warn the right Ingresses: the Services of
    // the new Ingress lose their endpoints.
    let mut s6 = s5.clone();
    s6.endpoint_slices.make_mut().retain(|s| !matches!(&*s.name, "svc-14-00000" | "svc-15-00000"));
    let t6 = update_endpoints(&t5, &s5, &s6).expect("an endpoint-only change");
    assert_same(&t6, &s6);
    assert!(
        t6.diagnostics
            .iter()
            .any(|d| d.reason == Reason::NoReadyEndpoints && d.object.name == "new-app"),
        "the new Ingress is warned as well as Ingress 7"
    );
}

// What an update cannot make exactly is left to a full translation.
#[test]
fn changes_that_reach_across_ingresses_are_refused() {
    let s0 = generate(Scale::of(100));
    let t0 = translate(&s0, &settings());
    let refused = |after: &Snapshot, why: &str| {
        assert!(update_ingresses(&t0, &s0, after, &settings()).is_none(), "{why}");
    };
    refused(&add(&s0, "ing-3", "again", &host(4)), "a host another Ingress has");
    refused(&add(&s0, "ing-3", "wild", &format!("*.{}", host(40))), "a wildcard another has");
    refused(
        &edit(&s0, "ing-3", |i| {
            i.spec.as_mut().unwrap().tls =
                Some(vec![IngressTLS { hosts: Some(vec![host(3)]), secret_name: None }]);
            let ciphers = "ECDHE-RSA-AES128-GCM-SHA256".to_string();
            let key = "nginx.ingress.kubernetes.io/ssl-ciphers".to_string();
            i.metadata.annotations = Some([(key, ciphers)].into());
        }),
        "a handshake policy of its own (ssl-ciphers)",
    );
    refused(
        &edit(&s0, "ing-3", |i| {
            i.spec.as_mut().unwrap().default_backend = Some(service_backend("svc-6"));
        }),
        "a default backend",
    );
    refused(&edit(&s0, "ing-3", |i| rules_mut(i)[0].host = None), "the catch-all host");
    // Passthrough (with `--enable-ssl-passthrough`) changes the TLS side.
    let passthrough = Settings { enable_ssl_passthrough: true, ..settings() };
    let t0p = translate(&s0, &passthrough);
    let after = edit(&s0, "ing-3", |i| {
        i.metadata.annotations =
            Some([("nginx.ingress.kubernetes.io/ssl-passthrough".into(), "true".into())].into());
    });
    assert!(update_ingresses(&t0p, &s0, &after, &passthrough).is_none(), "passthrough");
    refused(
        &edit(&s0, "ing-3", |i| {
            i.metadata.annotations = Some(
                [(
                    "nginx.ingress.kubernetes.io/ssl-ciphers".into(),
                    "ECDHE-RSA-AES128-GCM-SHA256".into(),
                )]
                .into(),
            );
        }),
        "a handshake policy",
    );
    // (A Secret no Ingress names is no such kind: an update reads the Secrets it changes.)
    let mut classes = add(&s0, "ing-3", "new-app", "new-app.example.com");
    classes.ingress_classes.push(Arc::new(Default::default()));
    refused(&classes, "another kind changed too (an IngressClass)");

    // Another controller's Ingress changing changes nothing.
    let other = edit(&s0, "ing-3", |i| {
        i.spec.as_mut().unwrap().ingress_class_name = Some("other".into());
    });
    let t1 = update_ingresses(&t0, &s0, &other, &settings()).unwrap();
    let again = edit(&other, "ing-3", |i| rules_mut(i)[0].host = Some("moved.example.com".into()));
    let t2 = update_ingresses(&t1, &other, &again, &settings()).unwrap();
    assert!(ChunkVec::ptr_eq(&t2.routes, &t1.routes));
    assert_same(&t2, &again);
}

// Routes of removed Ingresses stay in the table until they are a quarter of it; the next
// change is then translated in full, which drops them.
#[test]
fn left_behind_routes_are_bounded() {
    let mut snapshot = generate(Scale::of(100));
    let mut table = translate(&snapshot, &settings());
    let mut updates = 0;
    for round in 0.. {
        let after = edit(&snapshot, "ing-3", |i| {
            rules_mut(i)[0].host = Some(format!("round-{round}.example.com"));
        });
        match update_ingresses(&table, &snapshot, &after, &settings()) {
            Some(t) => {
                updates += 1;
                table = t;
            }
            None => {
                assert!(
                    (table.referrers.dead_routes + 8) * 4 >= table.routes.len(),
                    "refused early"
                );
                break;
            }
        }
        snapshot = after;
    }
    assert!(updates > 10, "{updates} updates before a full translation");
    assert_same(&table, &snapshot);
}

// A manifest file parsed again hands over copies of the Ingresses it did not change: only
// the one that changed is replaced.
#[test]
fn copies_of_unchanged_ingresses_are_not_changes() {
    let s0 = generate(Scale::of(100));
    let t0 = translate(&s0, &settings());
    let mut after = edit(&s0, "ing-3", |i| rules_mut(i)[0].host = Some("moved.example.com".into()));
    after.ingresses = after.ingresses.iter().map(|i| Arc::new((**i).clone())).collect();
    let t1 = check(&t0, &s0, &after);
    assert_eq!(t1.referrers.dead_routes, sluice_bench::PATHS_PER_INGRESS, "ing-3's routes only");
}

// An application deployed with its Services and EndpointSlices in one change is an update,
// at full scale; so is removing it the same way. Its host answers from its own endpoints.
#[test]
fn an_application_with_its_services_deployed_and_removed_at_large_scale() {
    let scale = Scale::LARGE.ingresses;
    let s0 = generate(Scale::LARGE);
    let t0 = translate(&s0, &settings());
    let app = Application::of(scale);
    let everything = ["ingress", "services", "slices"];
    let s1 = app.deploy(&s0, &everything);
    let t1 = check(&t0, &s0, &s1);
    let route = t1.lookup(&host(scale), "/").route;
    let sluice_model::Target::Backend(b) = route.target else { panic!("a backend") };
    let endpoints = &t1.backends[b as usize].endpoints;
    assert!(!endpoints.is_empty(), "the new Service's endpoints are there");
    assert_eq!(t1.backends.len(), t0.backends.len() + 2, "two new backends");

    let s2 = app.undeploy(&s1, &everything);
    let t2 = check(&t1, &s1, &s2);
    assert_eq!(t2.lookup(&host(scale), "/").route.ingress, None);
}

// Through the Kubernetes API the objects of one application arrive one by one, and a change
// may hold any part of it: each step is an update, and each table is what a full translation
// gives (503 while the Services are missing, the endpoints once their slices arrive).
#[test]
fn an_application_arriving_in_parts_is_updated_at_each_step() {
    let scale = 100;
    let app = Application::of(scale);
    for order in [
        [&["ingress"][..], &["services"], &["slices"]],
        [&["slices"][..], &["services"], &["ingress"]],
        [&["services", "slices"][..], &["ingress"], &[]],
        [&["ingress", "slices"][..], &["services"], &[]],
    ] {
        let mut snapshot = generate(Scale::of(scale));
        let mut table = translate(&snapshot, &settings());
        let mut parts: Vec<&str> = Vec::new();
        for step in order {
            parts.extend(step);
            let before = snapshot.clone();
            snapshot = app.deploy(&before, step);
            table = check(&table, &before, &snapshot);
        }
        let route = table.lookup(&host(scale), "/").route;
        assert!(matches!(route.target, sluice_model::Target::Backend(_)), "{order:?}: served");
        // And away again in the same parts.
        for step in order {
            let before = snapshot.clone();
            snapshot = app.undeploy(&before, step);
            table = check(&table, &before, &snapshot);
        }
        assert_eq!(table.lookup(&host(scale), "/").route.ingress, None);
    }
}

// A Service changed alone (its port renamed, then deleted) re-translates the Ingresses that
// name it, when they are alone on their hosts.
#[test]
fn a_changed_service_updates_the_ingresses_naming_it() {
    let s0 = generate(Scale::of(100));
    let t0 = translate(&s0, &settings());
    let [svc, _] = sluice_bench::services_of(7);
    let mut s1 = s0.clone();
    let found = s1
        .services
        .edit(|s| s.name == svc, |s| s.ports.iter_mut().for_each(|p| p.name = Some("web".into())));
    assert!(found);
    let t1 = check(&t0, &s0, &s1);
    assert!(
        t1.diagnostics.iter().any(|d| d.object.name == "ing-7"),
        "ing-7's named port no longer resolves: {:?}",
        t1.diagnostics
    );
    let mut s2 = s1.clone();
    s2.services.make_mut().retain(|s| s.name != svc);
    let t2 = check(&t1, &s1, &s2);
    assert!(t2.diagnostics.iter().any(|d| d.reason == Reason::MissingService));
    // Back as it was: the same table as at the start.
    let t3 = check(&t2, &s2, &s0);
    assert_eq!(served(&t3), served(&t0));
}

// A backend no Ingress names any more keeps its Service's current endpoints, so that an
// update naming it again later shares the right ones.
#[test]
fn backends_no_ingress_names_stay_current() {
    let s0 = generate(Scale::of(100));
    let t0 = translate(&s0, &settings());
    let [svc, _] = sluice_bench::services_of(7);
    // ing-7 goes; its Services stay, unnamed.
    let at = position(&s0, "ing-7");
    let mut s1 = s0.clone();
    let ing7 = s1.ingresses.make_mut().remove(at);
    let t1 = check(&t0, &s0, &s1);
    // Its Service loses its endpoints in the same change as another application arrives.
    let app = Application::of(100);
    let mut s2 = app.deploy(&s1, &["ingress", "services", "slices"]);
    s2.endpoint_slices.make_mut().retain(|s| s.service.as_deref() != Some(&svc));
    let t2 = check(&t1, &s1, &s2);
    // ing-7 comes back: its backend is shared, with no endpoints, as a full translation has.
    let mut s3 = s2.clone();
    s3.ingresses.push(ing7);
    let t3 = check(&t2, &s2, &s3);
    assert!(t3.diagnostics.iter().any(|d| d.reason == Reason::NoReadyEndpoints));
}

// What a Service change reaches beyond the Ingresses alone on their hosts is translated in
// full: the default backend's Service, a Service an Ingress sharing its host names.
#[test]
fn service_changes_that_reach_further_are_refused() {
    let s0 = generate(Scale::of(100));
    let settings = Settings {
        default_backend_service: Some(NamespacedName::new(
            "ns-3",
            &sluice_bench::services_of(3)[0],
        )),
        ..settings()
    };
    let t0 = translate(&s0, &settings);
    let svc = &sluice_bench::services_of(3)[0];
    let mut gone = s0.clone();
    gone.endpoint_slices.make_mut().retain(|s| s.service.as_deref() != Some(svc.as_str()));
    gone.ingresses.push(Application::of(100).ingress.clone());
    assert!(
        update_ingresses(&t0, &s0, &gone, &settings).is_none(),
        "the default backend's Service changed"
    );
    // ing-8 is joined on its host by another Ingress: a change of ing-8's Service cannot be
    // made for ing-8 alone.
    let s1 = add(&s0, "ing-9", "joins-8", &host(8));
    let t1 = translate(&s1, &settings);
    let [svc8, _] = sluice_bench::services_of(8);
    let mut s2 = s1.clone();
    s2.endpoint_slices.make_mut().retain(|s| s.service.as_deref() != Some(svc8.as_str()));
    s2.ingresses.push(Application::of(100).ingress.clone());
    assert!(update_ingresses(&t1, &s1, &s2, &settings).is_none(), "ing-8 is not alone");
}
