//! Endpoint-only updates: when only EndpointSlices changed between two snapshots, the new
//! table is the previous one with the endpoint lists of the touched backends rebuilt, and
//! everything else shared. The result is what [`translate`](crate::translate) would build from
//! the new snapshot (a test holds it to that), in a fraction of the time: pods come and go far
//! more often than Ingresses change.

use std::collections::HashSet;
use std::sync::Arc;

use sluice_model::{
    Backend, BackendId, Diagnostic, Endpoint, Kind, LeanService, LeanServicePort, Origin,
    RoutingTable, Snapshot,
};

use super::{backends_of, only_changed, services_of_changed_slices};
use crate::backends::ready_endpoints;
use crate::build::no_ready_endpoints;
use crate::index::{Index, namespaces_of};

/// The table for `after`, built from `previous` (the table of `before`, as published: it may
/// carry more diagnostics than translation's own, which are kept) by rebuilding only the
/// endpoints of the backends whose EndpointSlices changed.
///
/// `None` when that would not give what a full translation gives: an object other than an
/// EndpointSlice changed (compared by pointer, then by content), a certificate expired between
/// the two snapshots' times, or `previous` was built from input an update cannot redo (see
/// [`Referrers::incremental`](sluice_model::Referrers::incremental)). The caller then
/// translates in full. The returned table's `generation` is `previous`'s.
pub fn update_endpoints(
    previous: &RoutingTable,
    before: &Snapshot,
    after: &Snapshot,
) -> Option<RoutingTable> {
    if !only_changed(&[Kind::EndpointSlice], previous, before, after) {
        return None;
    }
    let touched = services_of_changed_slices(before, after);
    let mut table = previous.clone();
    table.origin = Origin::Endpoints;
    if touched.is_empty() {
        return Some(table);
    }
    let index = Index::of_services(after, &touched, &namespaces_of(&touched));
    let mut ids: Vec<BackendId> = Vec::new();
    for &(ns, name) in &touched {
        ids.extend(backends_of(&previous.referrers.by_service, &previous.backends, ns, name));
    }
    let mut warnings_gone = Vec::new();
    let mut warnings_new = Vec::new();
    for id in ids {
        let backend = &previous.backends[id as usize];
        if backend.service_upstream {
            // Its endpoint is the Service's cluster IP, not its EndpointSlices'.
            continue;
        }
        // Services did not change: every backend's port still resolves.
        let endpoints = endpoints_now(&index, backend)?;
        if endpoints == backend.endpoints {
            continue;
        }
        let svc = &backend.service;
        let was_empty = backend.endpoints.is_empty();
        if was_empty != endpoints.is_empty() {
            let warnings = if was_empty { &mut warnings_gone } else { &mut warnings_new };
            for &place in previous.referrers.of(id) {
                let ingress = &previous.owned[place as usize];
                warnings.push(no_ready_endpoints(
                    ingress,
                    &svc.namespace,
                    &svc.name,
                    &backend.port,
                ));
            }
        }
        *table.backends.make_mut(id as usize) = Arc::new(backend.with_endpoints(endpoints));
    }
    if !warnings_gone.is_empty() || !warnings_new.is_empty() {
        let gone: HashSet<Diagnostic> = warnings_gone.into_iter().collect();
        let diagnostics = table.diagnostics.make_mut();
        diagnostics.retain(|d| !gone.contains(d));
        diagnostics.extend(warnings_new);
        diagnostics.sort();
        diagnostics.dedup();
    }
    Some(table)
}

/// `backend`'s ready endpoints in `index` (which holds its Service): `None` when its Service or
/// port is not there.
pub(super) fn endpoints_now(index: &Index<'_>, backend: &Backend) -> Option<Vec<Endpoint>> {
    let svc = &backend.service;
    let service = index.service(&svc.namespace, &svc.name)?;
    let port = port_by_label(service, &backend.port)?;
    Some(ready_endpoints(index, &svc.namespace, &svc.name, port))
}

/// The port a backend's label names: a number (as translation writes numbers), else a name.
fn port_by_label<'s>(service: &'s LeanService, label: &str) -> Option<&'s LeanServicePort> {
    let ports = &service.ports;
    match label.parse::<i32>().ok().filter(|n| n.to_string() == label) {
        Some(number) => ports.iter().find(|p| p.port == number),
        None => ports.iter().find(|p| p.name.as_deref() == Some(label)),
    }
}
