//! Incremental updates: the table for a new snapshot made from the table of the previous one,
//! for the changes that come often and touch little. Each update gives what
//! [`translate`](crate::translate) would give (tests hold them to that), or `None` when it
//! cannot be sure to, and the caller translates in full.
//!
//! - [`update_endpoints`]: only EndpointSlices changed (pods come and go);
//! - [`update_ingresses`]: a few Ingresses changed, each alone on its hosts, possibly with
//!   Services and EndpointSlices that only they name (an application deployed, changed or
//!   removed, with its Services);
//! - [`unchanged`]: nothing changed, and the table in force stands.

mod endpoints;
mod ingresses;

use std::sync::Arc;

use sluice_model::{
    Backend, BackendId, Chunk, ChunkVec, Kind, Named, Objects, RoutingTable, Snapshot,
};

use crate::index::{FastMap, FastSet, service_hash, service_of};

pub use endpoints::update_endpoints;
pub use ingresses::update_ingresses;

/// Whether `after` holds what `before` held, so that `previous` (the table of `before`) is
/// still the table a translation of `after` gives and there is nothing to publish: every kind
/// holds the same objects, and no certificate's expiry changed between the snapshots' times.
///
/// A source can wake its loop with nothing changed: a wake-up of its first list that comes
/// after the loop has started, a relist that finds what the store already held.
pub fn unchanged(previous: &RoutingTable, before: &Snapshot, after: &Snapshot) -> bool {
    same_except(&[], previous, before, after)
}

/// Whether an update of `previous` (the table of `before`) to `after` may rebuild only what
/// objects of the kinds `changing` touch: `previous` allows updates, no object of another kind
/// changed, and no certificate's expiry changed between the snapshots' times.
fn only_changed(
    changing: &[Kind],
    previous: &RoutingTable,
    before: &Snapshot,
    after: &Snapshot,
) -> bool {
    previous.referrers.incremental && same_except(changing, previous, before, after)
}

/// The Services whose EndpointSlices differ between the snapshots.
fn services_of_changed_slices<'a>(
    before: &'a Snapshot,
    after: &'a Snapshot,
) -> FastSet<(&'a str, &'a str)> {
    let (gone, new) = changed(&before.endpoint_slices, &after.endpoint_slices);
    gone.into_iter().chain(new).filter_map(service_of).collect()
}

/// The backends in `backends` of Service `ns/name`, found through `by_service` (a table's
/// [`Referrers::by_service`](sluice_model::Referrers::by_service)).
fn backends_of<'a>(
    by_service: &'a [(u64, BackendId)],
    backends: &'a ChunkVec<Arc<Backend>>,
    ns: &'a str,
    name: &'a str,
) -> impl Iterator<Item = BackendId> + 'a {
    let hash = service_hash(ns, name);
    let start = by_service.partition_point(|&(h, _)| h < hash);
    let same = by_service[start..].iter().take_while(move |&&(h, _)| h == hash);
    same.map(|&(_, id)| id).filter(move |&id| {
        let svc = &backends[id as usize].service;
        svc.namespace == ns && svc.name == name
    })
}

/// Whether the objects of every kind but those of `changing` are the same in both snapshots,
/// and the certificates of `previous` are judged as they were.
fn same_except(
    changing: &[Kind],
    previous: &RoutingTable,
    before: &Snapshot,
    after: &Snapshot,
) -> bool {
    let may_change = |kind| changing.contains(&kind);
    (may_change(Kind::Ingress) || same(&before.ingresses, &after.ingresses))
        && same(&before.ingress_classes, &after.ingress_classes)
        && (may_change(Kind::Service) || same(&before.services, &after.services))
        && (may_change(Kind::EndpointSlice)
            || same(&before.endpoint_slices, &after.endpoint_slices))
        && (may_change(Kind::Secret) || same(&before.secrets, &after.secrets))
        && same_read_config_maps(previous, before, after)
        && certificates_still_valid(previous, before.observed_at, after.observed_at)
}

/// Whether the ConfigMaps `previous` read are the same in both snapshots: the others (a
/// controller's leader-election ConfigMap that changes every few seconds, say) cannot change
/// the table.
fn same_read_config_maps(previous: &RoutingTable, before: &Snapshot, after: &Snapshot) -> bool {
    if same(&before.config_maps, &after.config_maps) {
        return true;
    }
    let read = &previous.referrers.config_maps;
    let (gone, new) = changed(&before.config_maps, &after.config_maps);
    gone.iter().chain(&new).all(|cm| {
        let name = (cm.namespace(), cm.name());
        read.binary_search_by(|n| (n.namespace.as_str(), n.name.as_str()).cmp(&name)).is_err()
    })
}

/// True when both lists hold the same objects in the same order: the same chunks or the
/// same `Arc`s (what a source that did not touch them hands over), else equal content.
fn same<T: PartialEq>(a: &Objects<T>, b: &Objects<T>) -> bool {
    let (x, y) = (a.chunks(), b.chunks());
    if x.len() == y.len() {
        return x.iter().zip(y).all(|(x, y)| Chunk::ptr_eq(x, y) || same_objects(x, y));
    }
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y) || x == y)
}

fn same_objects<T: PartialEq>(a: &Chunk<T>, b: &Chunk<T>) -> bool {
    let (a, b) = (a.objects(), b.objects());
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y) || x == y)
}

/// Whether every certificate of `previous` is still unexpired at `now`, and none that had
/// expired at `then` could have come back. Translation judges expiry against the snapshot's
/// time, and the new snapshot is taken later.
fn certificates_still_valid(previous: &RoutingTable, then: Option<i64>, now: Option<i64>) -> bool {
    match (then, now) {
        _ if then == now => true,
        (Some(then), Some(now)) if now >= then => {
            previous.tls.certs.iter().all(|c| now <= c.not_after)
        }
        _ => false,
    }
}

/// The objects in one list and not the other: `(gone, new)`, both versions of a changed
/// object. Chunks that both lists hold are skipped unread: a source rebuilds only the chunks
/// that changed. In the others, lists from the same source keep their order: where both have
/// the same length, the objects that differ are at the positions that differ (an update
/// replaces an object in place); otherwise the common head and tail are skipped and the rest
/// compared as sets of pointers. A source that parses a file again hands over new copies of
/// the objects it did not change: those, equal in content to an object of the same `name`,
/// are left out.
fn changed<'a, T: PartialEq + Named>(
    before: &'a Objects<T>,
    after: &'a Objects<T>,
) -> (Vec<&'a T>, Vec<&'a T>) {
    let name = |o: &'a T| (o.namespace(), o.name());
    let chunks = |list: &Objects<T>| -> FastSet<*const ()> {
        list.chunks().iter().map(Chunk::as_ptr).collect()
    };
    let (in_before, in_after) = (chunks(before), chunks(after));
    let rest = |list: &'a Objects<T>, other: &FastSet<*const ()>| -> Vec<&'a Arc<T>> {
        let chunks = list.chunks().iter().filter(|c| !other.contains(&c.as_ptr()));
        chunks.flat_map(|c| c.objects()).collect()
    };
    let (gone, new) = by_pointer(&rest(before, &in_after), &rest(after, &in_before));
    if gone.is_empty() || new.is_empty() {
        return (gone, new);
    }
    let mut by_name: FastMap<(&str, &str), usize> = FastMap::default();
    for (i, object) in gone.iter().enumerate() {
        by_name.insert(name(object), i);
    }
    let mut same = vec![false; gone.len()];
    let new: Vec<&T> = new
        .into_iter()
        .filter(|object| match by_name.get(&name(object)) {
            Some(&i) if !same[i] && gone[i] == *object => {
                same[i] = true;
                false
            }
            _ => true,
        })
        .collect();
    let gone = gone.into_iter().zip(same).filter(|(_, same)| !same).map(|(o, _)| o).collect();
    (gone, new)
}

/// [`changed`] by pointer only.
fn by_pointer<'a, T>(before: &[&'a Arc<T>], after: &[&'a Arc<T>]) -> (Vec<&'a T>, Vec<&'a T>) {
    if before.len() == after.len() {
        let differ = || before.iter().zip(after).filter(|(a, b)| !Arc::ptr_eq(a, b));
        // Many differences are more likely a reordering (a store that grew) than changes.
        if differ().nth(64).is_none() {
            return differ().map(|(a, b)| (&***a, &***b)).unzip();
        }
    }
    let head = before.iter().zip(after).take_while(|(a, b)| Arc::ptr_eq(a, b)).count();
    let (before, after) = (&before[head..], &after[head..]);
    let tail =
        before.iter().rev().zip(after.iter().rev()).take_while(|(a, b)| Arc::ptr_eq(a, b)).count();
    let before = &before[..before.len() - tail];
    let after = &after[..after.len() - tail];
    let pointers =
        |list: &[&Arc<T>]| -> FastSet<*const T> { list.iter().map(|o| Arc::as_ptr(o)).collect() };
    let (in_before, in_after) = (pointers(before), pointers(after));
    let gone = before.iter().filter(|s| !in_after.contains(&Arc::as_ptr(s))).map(|s| &***s);
    let new = after.iter().filter(|s| !in_before.contains(&Arc::as_ptr(s))).map(|s| &***s);
    (gone.collect(), new.collect())
}
