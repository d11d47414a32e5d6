//! `sluice_translate::update_endpoints` against the full translation it stands in for: on the
//! synthetic cluster, after endpoint-only changes of every kind, the updated table is the
//! table a full translation of the new snapshot gives (compared as `/debug/config` JSON, which
//! holds every host, route, backend with its endpoints, and diagnostic), and it shares what did
//! not change with the previous table.

use std::sync::Arc;

use sluice_bench::{Scale, generate, settings};
use sluice_model::{ChunkVec, LeanSlice, Reason, RoutingTable, SliceEndpoint, Snapshot};
use sluice_translate::{translate, update_endpoints};

/// Updates `before`'s table to `after` and checks it against a full translation of `after`.
#[track_caller]
fn check(before: &Snapshot, after: &Snapshot) -> (RoutingTable, RoutingTable) {
    let previous = translate(before, &settings());
    let updated = update_endpoints(&previous, before, after).expect("an endpoint-only change");
    let full = translate(after, &settings());
    let json = |t: &RoutingTable| serde_json::to_value(t).unwrap();
    assert!(json(&updated) == json(&full), "the update differs from a full translation");
    assert!(ChunkVec::ptr_eq(&updated.routes, &previous.routes), "routes are shared");
    assert!(ChunkVec::ptr_eq(&updated.hosts, &previous.hosts), "hosts are shared");
    assert!(Arc::ptr_eq(&updated.tls, &previous.tls), "TLS is shared");
    (previous, updated)
}

/// The slices of `snapshot` with `f` applied to the one named `name` (its namespace's chunk
/// rebuilt, the others shared, as the sources do).
fn edit(snapshot: &Snapshot, name: &str, f: impl FnOnce(&mut LeanSlice)) -> Snapshot {
    let mut after = snapshot.clone();
    assert!(after.endpoint_slices.edit(|s| s.name == name, f), "no slice {name}");
    after
}

fn endpoint(address: &str, ready: bool) -> SliceEndpoint {
    SliceEndpoint { addresses: vec![address.into()], ready: Some(ready) }
}

/// The backend of Service `svc-{j}`.
fn backend(t: &RoutingTable, j: usize) -> &Arc<sluice_model::Backend> {
    let name = format!("svc-{j}");
    t.backends.iter().find(|b| b.service.name == name).unwrap()
}

fn no_endpoint_warnings(t: &RoutingTable) -> usize {
    t.diagnostics.iter().filter(|d| d.reason == Reason::NoReadyEndpoints).count()
}

// At full scale, a few slices change (an endpoint added, one removed, readiness flipped):
// only their backends are rebuilt, the other 19,996 are the same objects.
#[test]
fn a_few_slices_change_at_large_scale() {
    let before = generate(Scale::LARGE);
    let after = edit(&before, "svc-7-00000", |s| s.endpoints.push(endpoint("192.168.0.1", true)));
    let after = edit(&after, "svc-4242-00000", |s| {
        s.endpoints.pop();
    });
    // Same count, another address: a pod replaced.
    let after = edit(&after, "svc-100-00000", |s| s.endpoints[0] = endpoint("192.168.0.2", true));
    let after = edit(&after, "svc-19999-00000", |s| {
        for e in &mut s.endpoints {
            e.ready = Some(false);
        }
    });
    let (previous, updated) = check(&before, &after);
    let rebuilt: Vec<String> = previous
        .backends
        .iter()
        .zip(&updated.backends)
        .filter(|(a, b)| !Arc::ptr_eq(a, b))
        .map(|(_, b)| b.service.name.clone())
        .collect();
    assert_eq!(rebuilt, ["svc-7", "svc-100", "svc-4242", "svc-19999"]);
    // Every endpoint of svc-19999 is now unready: its Ingress is warned, and its paths answer
    // 503 (a backend without endpoints).
    assert!(backend(&updated, 19_999).endpoints.is_empty());
    assert_eq!(no_endpoint_warnings(&updated), 1, "{:?}", updated.diagnostics);
}

// An EndpointSlice relabelled to another Service: both Services' backends change.
#[test]
fn a_slice_moves_to_another_service() {
    let before = generate(Scale::of(10));
    let after = edit(&before, "svc-2-00000", |s| {
        s.service = Some("svc-3".into());
    });
    let (previous, updated) = check(&before, &after);
    assert!(backend(&updated, 2).endpoints.is_empty());
    assert!(backend(&updated, 3).endpoints.len() > backend(&previous, 3).endpoints.len());
    assert_eq!(no_endpoint_warnings(&updated), 1);
}

// The last slice of a Service goes: its backend has no endpoint (503) and its Ingress is
// warned; the slice comes back: the warning goes.
#[test]
fn the_last_slice_goes_and_comes_back() {
    let before = generate(Scale::of(10));
    let mut after = before.clone();
    after.endpoint_slices.make_mut().retain(|s| s.name != "svc-5-00000");
    let (_, updated) = check(&before, &after);
    assert!(backend(&updated, 5).endpoints.is_empty());
    assert_eq!(no_endpoint_warnings(&updated), 1);
    // And back, as the first slice of a Service without any.
    let (previous, back) = check(&after, &before);
    assert_eq!(no_endpoint_warnings(&previous), 1);
    assert_eq!(no_endpoint_warnings(&back), 0);
    assert!(!backend(&back, 5).endpoints.is_empty());
}

// A slice whose endpoints all become not ready empties its backend; a slice appended out of
// order, and one with only a not-ready endpoint, are handled like any other.
#[test]
fn readiness_and_new_slices() {
    let before = generate(Scale::of(10));
    let after = edit(&before, "svc-1-00000", |s| {
        for e in &mut s.endpoints {
            e.ready = Some(false);
        }
    });
    let (_, updated) = check(&before, &after);
    assert!(backend(&updated, 1).endpoints.is_empty());

    let mut grown = before.clone();
    let mut extra = (*before.endpoint_slices[0]).clone();
    extra.name = "svc-0-00001".into();
    extra.endpoints = vec![endpoint("192.168.1.1", true), endpoint("192.168.1.2", false)];
    grown.endpoint_slices.make_mut().insert(3, Arc::new(extra));
    let (previous, updated) = check(&before, &grown);
    assert_eq!(backend(&updated, 0).endpoints.len(), backend(&previous, 0).endpoints.len() + 1);
}

// Reordered slices with the same content change nothing; a change of any other kind, or an
// unchanged object list in another order, is left to a full translation.
#[test]
fn only_endpoint_changes_are_updated() {
    let before = generate(Scale::of(10));
    let previous = translate(&before, &settings());
    let mut shuffled = before.clone();
    shuffled.endpoint_slices.make_mut().reverse();
    let same = update_endpoints(&previous, &before, &shuffled).expect("only slices moved");
    assert!(previous.backends.iter().zip(&same.backends).all(|(a, b)| Arc::ptr_eq(a, b)));

    let mut services = before.clone();
    services.services.make_mut().pop();
    assert!(update_endpoints(&previous, &before, &services).is_none());
    let mut ingresses = before.clone();
    ingresses.ingresses.make_mut().reverse();
    assert!(update_endpoints(&previous, &before, &ingresses).is_none());
    // The same objects as new copies (a manifest file parsed again) are the same objects.
    let mut copies = before.clone();
    copies.services = before.services.iter().map(|s| Arc::new((**s).clone())).collect();
    assert!(update_endpoints(&previous, &before, &copies).is_some());
}
