//! Ingress updates: when a few Ingresses were added, changed or removed, and each is alone on
//! its hosts, the new table is the previous one without the hosts of their old versions and
//! with tables of their new versions appended. Routes, hosts and backends already there are
//! shared, not rebuilt: the cost is that of the changed Ingresses, not of all 10,000.
//!
//! "Alone on its hosts" is what makes the result the same as a full translation's: a host
//! that one Ingress names is not merged with anything (no path collision, no older Ingress's
//! default backend), so the Ingress can be translated by itself. Anything else that could
//! reach across Ingresses is refused, and the caller translates in full: rules without a host
//! (the catch-all host), `spec.defaultBackend`, annotations that give hosts a handshake
//! policy of their own (client certificates, ciphers) or pass TLS through, and, in the changed
//! Ingresses or anywhere in the table, what reaches other Ingresses' names and backends
//! (canaries, aliases, `www` redirects, backend-level annotations: see
//! [`Referrers::alone`](sluice_model::Referrers::alone)).
//!
//! Services and EndpointSlices may change in the same update (an application deployed or
//! removed with its Services, as `kubectl apply -f app.yaml` writes them): every Ingress of
//! ours that names a Service whose object or EndpointSlices changed is translated again with
//! the changed ones, and must be alone on its hosts too. Their backends of those Services are
//! replaced, not shared; backends of those Services that no Ingress names any more get their
//! endpoints again, so that a later update that names them again finds them current. A change
//! to `--default-backend-service`'s Service is translated in full: every host falls to it.
//!
//! Secrets may change too (a certificate renewed, an htpasswd rotated): every Ingress that may
//! read a changed Secret (a `tls` section names it, an annotation holds its name) is translated
//! again, and must be alone on its hosts. A Secret no Ingress reads changes nothing; a change
//! to `--default-ssl-certificate`'s is translated in full.
//!
//! TLS sections are taken: translation gives a host a certificate only from the sections of
//! the Ingresses that name it in their rules, so an Ingress alone on its hosts decides their
//! certificates alone. The old versions' hosts leave `cert_by_name`, the new versions' enter
//! it, and a certificate no host uses any more leaves the list. (A full translation also
//! lists certificates it loaded without giving them to any host, such as one a section names
//! for a host it does not cover; an update only keeps those of unchanged Ingresses. No host is
//! served differently: at most, the proxy loads fewer unused certificates.)

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;
use sluice_model::{
    Backend, BackendId, ChunkVec, Diagnostic, FastMap, HostRoutes, Kind, Named, NamespacedName,
    Origin, Referrers, RouteId, RoutingTable, Settings, Snapshot, Tls,
};

use super::endpoints::endpoints_now;
use super::{backends_of, changed, only_changed, services_of_changed_slices};
use crate::build::{build, group_references, validate_host};
use crate::class;
use crate::index::{
    FastSet, Index, default_backend_key, namespaces_of, referenced_services, service_hash,
};

/// More changed Ingresses than this are translated in full: a bulk change (a namespace
/// applied at once) costs a full translation anyway.
const MAX_CHANGED: usize = 64;

/// The table for `after`, built from `previous` (the table of `before`, as published) by
/// replacing the hosts of the Ingresses that changed between the two snapshots.
///
/// `None` when that would not give what a full translation gives, and the caller translates
/// in full: an object other than an Ingress changed, more than [`MAX_CHANGED`] Ingresses did,
/// a changed Ingress (old or new version) shares a host with another Ingress or has what an
/// Ingress alone on its hosts may not (see the module's documentation), or `previous` holds
/// too many routes of removed Ingresses already ([`Referrers::dead_routes`]).
///
/// The returned table's `generation` is `previous`'s. It may carry diagnostics about the
/// changed Ingresses that were added to `previous` after translation (the source's own), so
/// a caller that adds such diagnostics adds them again.
pub fn update_ingresses(
    previous: &RoutingTable,
    before: &Snapshot,
    after: &Snapshot,
    settings: &Settings,
) -> Option<RoutingTable> {
    const KINDS: &[Kind] = &[Kind::Ingress, Kind::Service, Kind::EndpointSlice, Kind::Secret];
    if !only_changed(KINDS, previous, before, after) {
        return None;
    }
    let (gone, new) = changed(&before.ingresses, &after.ingresses);
    if gone.len() + new.len() > 2 * MAX_CHANGED {
        return None;
    }
    let touched = touched_services(before, after);
    if let Some(d) = &settings.default_backend_service
        && touched.contains(&(d.namespace.as_str(), d.name.as_str()))
    {
        return None;
    }
    let secrets = touched_secrets(before, after);
    if let Some(d) = &settings.default_ssl_certificate
        && secrets.contains(&(d.namespace.as_str(), d.name.as_str()))
    {
        return None;
    }
    let classes: Vec<_> = after.ingress_classes.iter().map(|c| &**c).collect();
    let ours = |i: &&Ingress| class::is_ours(i, &classes, settings);
    let mut gone: Vec<&Ingress> = gone.into_iter().filter(ours).collect();
    let mut added: Vec<&Ingress> = new.iter().copied().filter(ours).collect();
    // Translated again: the changed Ingresses, and the unchanged ones of ours that name a
    // changed Service (before and after, the same object).
    let mut changed_now: FastSet<*const Ingress> = new.iter().map(|i| *i as *const _).collect();
    let naming = naming(after, &touched, settings).into_iter();
    for ingress in naming.chain(naming_secrets(after, &secrets)) {
        if changed_now.insert(Arc::as_ptr(ingress)) && ours(&&**ingress) {
            gone.push(ingress);
            added.push(ingress);
        }
    }
    if gone.len() + added.len() > 2 * MAX_CHANGED {
        return None;
    }
    if gone.is_empty() && added.is_empty() {
        // Only other controllers' Ingresses changed, or Services none of ours names.
        let mut table = RoutingTable { origin: Origin::Ingresses, ..previous.clone() };
        let by_service = &previous.referrers.by_service;
        refresh_unnamed(&mut table.backends, by_service, &touched, after, &FastSet::default())?;
        return Some(table);
    }
    if !gone.iter().chain(&added).all(|i| alone_possible(i)) {
        return None;
    }
    // Alone on their hosts: no other Ingress of ours names one of them.
    let hosts: FastSet<Cow<str>> = gone.iter().chain(&added).flat_map(|i| rule_hosts(i)).collect();
    let unchanged = after.ingresses.iter().filter(|i| !changed_now.contains(&Arc::as_ptr(i)));
    for ingress in unchanged {
        if rule_hosts(ingress).any(|h| hosts.contains(&h)) && ours(&&**ingress) {
            return None;
        }
    }

    // The changed Ingresses' tables: the old versions' over the objects they were translated
    // with (the hosts and certificates they leave), the new versions' over the new ones.
    let old_index = Index::for_ingresses(before, &gone, settings);
    let old = build(&old_index, settings, before.observed_at, gone);
    let index = Index::for_ingresses(after, &added, settings);
    let new = build(&index, settings, after.observed_at, added);
    // What an Ingress with a canary, aliases, a www redirect or backend-level annotations
    // decides reaches other Ingresses' names and backends: such changes are translated in
    // full. Unchanged Ingresses that do are seen below: the names their aliases wanted, the
    // backends they shaped.
    let alone = |t: &RoutingTable| no_policies(&t.tls) && alone_shaped(t) && t.referrers.alone;
    if !alone(&old) || !alone(&new) {
        return None;
    }
    // A Service an unchanged Ingress shapes is balanced as the Ingresses naming it decide
    // together.
    let shaping = &previous.referrers.shaping;
    let mut backends = old.backends.iter().chain(new.backends.iter());
    if backends.any(|b| {
        shaping.binary_search(&service_hash(&b.service.namespace, &b.service.name)).is_ok()
    }) {
        return None;
    }
    // A removed host an unchanged Ingress's alias or www redirect wanted goes to it.
    let shadowed = &previous.referrers.shadowed;
    if old.host_index.iter().any(|(h, _)| shadowed.binary_search_by(|s| s.as_str().cmp(h)).is_ok())
    {
        return None;
    }
    let tls = merge_tls(&previous.tls, &old.tls, &new.tls)?;
    if !new.referrers.incremental {
        return None;
    }
    // Each old version's routes are left behind (all but the shared global default).
    let dead_routes = previous.referrers.dead_routes + old.routes.len() - 1;
    if dead_routes > MAX_CHANGED.max(previous.routes.len() / 4) {
        return None;
    }

    let mut table = previous.clone();
    table.origin = Origin::Ingresses;
    let places = Places::new(&previous.owned, &old.owned, &new.owned)?;
    let mut backends = Backends::merge(previous, &new, &touched)?;
    refresh_unnamed(
        &mut backends.list,
        &previous.referrers.by_service,
        &touched,
        after,
        &backends.replaced,
    )?;

    // Routes: the new table's, but its global default (route 0 in every table) is ours.
    let base = previous.routes.len() as RouteId;
    let route_id = |id: RouteId| if id == 0 { 0 } else { base + id - 1 };
    table.routes.extend(new.routes.iter().skip(1).map(|r| {
        let mut route = r.clone();
        route.map_backends(|b| backends.ids[b as usize]);
        route
    }));

    // Hosts: the old versions' leave the index, the new versions' are appended.
    let host_index = Arc::make_mut(&mut table.host_index);
    for (host, _) in old.host_index.iter() {
        host_index.remove(host)?;
    }
    let host_base = previous.hosts.len() as u32;
    let mut hosts: Vec<HostRoutes> = Vec::with_capacity(new.hosts.len());
    for (i, h) in new.hosts.iter().enumerate().filter(|&(i, _)| i != new.catch_all as usize) {
        let mut host = h.clone();
        host.paths.map_routes(route_id);
        if let Some(regex) = &mut host.regex {
            regex.map_routes(route_id);
        }
        host.default_route = route_id(host.default_route);
        if new.host_index.get_written(host.host()) != Some(i as u32)
            || !host_index.insert(host_base + hosts.len() as u32, &host)
        {
            return None;
        }
        hosts.push(host);
    }
    table.hosts.extend(hosts);

    // Diagnostics: the changed Ingresses' own are replaced.
    let is_changed = |d: &Diagnostic| {
        d.object.kind == Kind::Ingress
            && places
                .changed
                .binary_search_by(|n| {
                    (n.namespace.as_str(), n.name.as_str())
                        .cmp(&(d.object.namespace.as_str(), d.object.name.as_str()))
                })
                .is_ok()
    };
    let mut diagnostics: Vec<Diagnostic> =
        previous.diagnostics.iter().filter(|d| !is_changed(d)).cloned().collect();
    diagnostics.extend(new.diagnostics.iter().filter(|d| is_changed(d)).cloned());
    diagnostics.sort();
    diagnostics.dedup();
    if diagnostics != *previous.diagnostics {
        table.diagnostics = diagnostics.into();
    }

    let (offsets, ingresses) = references(previous, &new, &places, &backends);
    table.referrers = Arc::new(Referrers {
        offsets,
        ingresses,
        by_service: backends.by_service,
        incremental: true,
        dead_routes,
        alone: previous.referrers.alone,
        shadowed: previous.referrers.shadowed.clone(),
        shaping: previous.referrers.shaping.clone(),
        config_maps: {
            let mut read = previous.referrers.config_maps.clone();
            read.extend(new.referrers.config_maps.iter().cloned());
            read.sort_unstable();
            read.dedup();
            read
        },
    });
    table.backends = backends.list;
    table.owned = places.owned.into();
    if let Some(tls) = tls {
        table.tls = Arc::new(tls);
    }
    Some(table)
}

/// What an Ingress alone on its hosts may have, read from its spec: rules, each with a host,
/// and no default backend.
fn alone_possible(ingress: &Ingress) -> bool {
    let Some(spec) = &ingress.spec else { return false };
    let rules = spec.rules.as_deref().unwrap_or_default();
    !rules.is_empty()
        && rules.iter().all(|r| r.host.as_deref().is_some_and(|h| !h.is_empty()))
        && spec.default_backend.is_none()
}

/// An Ingress's rule hosts as translation writes them (lower case); invalid ones are left out,
/// as translation leaves them out.
fn rule_hosts(ingress: &Ingress) -> impl Iterator<Item = Cow<'_, str>> {
    let rules = ingress.spec.iter().flat_map(|s| s.rules.iter().flatten());
    rules.filter_map(|r| validate_host(r.host.as_deref().unwrap_or_default()).ok())
}

/// The table of changed Ingresses gives no host a handshake policy of its own nor passes one
/// through: those are shared table-wide (policies are numbered), and left to a full
/// translation.
fn no_policies(tls: &Tls) -> bool {
    tls.policy_by_name.is_empty() && tls.passthrough.is_empty() && tls.policies.len() <= 1
}

/// New versions with at most this many certificates look each up in the list by a scan.
const FEW_CERTS: usize = 16;

/// `previous`'s certificates with the hosts of `old` (the changed Ingresses' old versions)
/// replaced by those of `new`: `Some(None)` when neither gives a host a certificate (the TLS
/// side stays shared), `None` when the tables do not fit together (the caller translates in
/// full).
fn merge_tls(previous: &Tls, old: &Tls, new: &Tls) -> Option<Option<Tls>> {
    if old.cert_by_name.is_empty() && new.cert_by_name.is_empty() {
        return Some(None);
    }
    // Each side's default certificate is `--default-ssl-certificate`, loaded the same way.
    let fingerprint = |t: &Tls| t.default_cert.map(|i| t.certs[i as usize].fingerprint);
    if fingerprint(new) != fingerprint(previous) {
        return None;
    }
    let mut tls = previous.clone();
    let mut released = Vec::new();
    for (host, _) in old.cert_by_name.iter() {
        released.push(tls.cert_by_name.remove(&host)?);
    }
    // A certificate the list holds already is shared. A few new versions (an application, a
    // rotation) look theirs up one by one, comparing fingerprints first; many build an index
    // once, as hashing every certificate's Secret name costs more than a few scans.
    let mut known: Option<FastMap<(&NamespacedName, u64), u32>> = (new.certs.len() > FEW_CERTS)
        .then(|| {
            let mut known = FastMap::default();
            for (i, c) in previous.certs.iter().enumerate() {
                known.entry((&c.secret, c.fingerprint)).or_insert(i as u32);
            }
            known
        });
    for (host, &id) in new.cert_by_name.iter() {
        let cert = &new.certs[id as usize];
        let found = match &known {
            Some(known) => known.get(&(&cert.secret, cert.fingerprint)).copied(),
            None => tls
                .certs
                .iter()
                .position(|c| c.fingerprint == cert.fingerprint && c.secret == cert.secret)
                .map(|i| i as u32),
        };
        let id = found.unwrap_or_else(|| {
            tls.certs.push(cert.clone());
            let id = (tls.certs.len() - 1) as u32;
            if let Some(known) = &mut known {
                known.insert((&cert.secret, cert.fingerprint), id);
            }
            id
        });
        if !tls.cert_by_name.insert(&host, id) {
            return None;
        }
    }
    // Certificates only the old versions' hosts used leave the list.
    let mut used = vec![false; tls.certs.len()];
    tls.cert_by_name.iter().for_each(|(_, &i)| used[i as usize] = true);
    tls.default_cert.iter().for_each(|&i| used[i as usize] = true);
    if released.iter().all(|&i| used[i as usize]) {
        return Some(Some(tls));
    }
    let unused = |i: u32| released.contains(&i) && !used[i as usize];
    let mut renumbered = vec![u32::MAX; tls.certs.len()];
    let mut certs = Vec::with_capacity(tls.certs.len());
    for (i, cert) in std::mem::take(&mut tls.certs).into_iter().enumerate() {
        if !unused(i as u32) {
            renumbered[i] = certs.len() as u32;
            certs.push(cert);
        }
    }
    tls.certs = certs;
    tls.default_cert = tls.default_cert.map(|i| renumbered[i as usize]);
    tls.cert_by_name.values_mut().for_each(|i| *i = renumbered[*i as usize]);
    Some(Some(tls))
}

/// The table of changed Ingresses has nothing on the catch-all host: its default is the
/// global default (route 0), as in every table.
fn alone_shaped(table: &RoutingTable) -> bool {
    let catch_all = &table.hosts[table.catch_all as usize];
    catch_all.path_count() == 0 && catch_all.default_route == 0
}

/// The owned Ingresses after the change, and where each one's place (its index in `owned`)
/// moved.
struct Places {
    /// The new `owned`, sorted.
    owned: Vec<NamespacedName>,
    /// For each place in the previous `owned`, its new place; `u32::MAX` when removed.
    moved: Vec<u32>,
    /// For each place in the new versions' table, its place in `owned`.
    added: Vec<u32>,
    /// The names of every changed Ingress, sorted (their diagnostics are replaced).
    changed: Vec<NamespacedName>,
}

impl Places {
    /// `None` when `gone` names an Ingress `previous` does not own, or `added` one it still
    /// does: the snapshots are not what the table was built from.
    fn new(
        previous: &[NamespacedName],
        gone: &[NamespacedName],
        added: &[NamespacedName],
    ) -> Option<Self> {
        let mut changed: Vec<NamespacedName> = gone.iter().chain(added).cloned().collect();
        changed.sort();
        changed.dedup();
        let mut removed = vec![false; previous.len()];
        for name in gone {
            removed[previous.binary_search(name).ok()?] = true;
        }
        let mut owned = Vec::with_capacity(previous.len() + added.len());
        let mut moved = vec![u32::MAX; previous.len()];
        let mut added_places = vec![0; added.len()];
        let (mut p, mut a) = (0, 0);
        while p < previous.len() || a < added.len() {
            let take_added = match (previous.get(p), added.get(a)) {
                (Some(x), Some(y)) if x == y => {
                    if !removed[p] {
                        return None;
                    }
                    false
                }
                (Some(x), Some(y)) => y < x,
                (None, _) => true,
                (Some(_), None) => false,
            };
            if take_added {
                added_places[a] = owned.len() as u32;
                owned.push(added[a].clone());
                a += 1;
            } else {
                if !removed[p] {
                    moved[p] = owned.len() as u32;
                    owned.push(previous[p].clone());
                }
                p += 1;
            }
        }
        Some(Self { owned, moved, added: added_places, changed })
    }
}

/// The backends after the change: the previous ones, then those of the new versions that no
/// previous backend already is (same Service port, reached the same way).
struct Backends {
    list: ChunkVec<Arc<Backend>>,
    /// For each backend of the new versions' table, its id in `list`.
    ids: Vec<BackendId>,
    /// `previous`'s `by_service` with the appended backends.
    by_service: Vec<(u64, BackendId)>,
    /// The previous backends of changed Services that the new versions' took the place of.
    replaced: FastSet<BackendId>,
}

impl Backends {
    /// `None` when a new version's backend is one of `previous`'s balanced otherwise.
    ///
    /// A previous backend of a `touched` Service (its object or EndpointSlices changed) takes
    /// the new version's endpoints: every Ingress that names it is translated again.
    fn merge(
        previous: &RoutingTable,
        new: &RoutingTable,
        touched: &FastSet<(&str, &str)>,
    ) -> Option<Self> {
        let mut list = previous.backends.clone();
        let mut by_service = previous.referrers.by_service.clone();
        let mut replaced = FastSet::default();
        let mut ids = Vec::with_capacity(new.backends.len());
        // Appended at the end in one go: each append copies the last, partly filled chunk.
        let mut added: Vec<Arc<Backend>> = Vec::new();
        let backend_at = |list: &ChunkVec<Arc<Backend>>, id: BackendId, added: &[Arc<Backend>]| {
            let id = id as usize;
            if id < list.len() { list[id].clone() } else { added[id - list.len()].clone() }
        };
        for backend in &new.backends {
            let s = &backend.service;
            let hash = service_hash(&s.namespace, &s.name);
            let start = by_service.partition_point(|&(h, _)| h < hash);
            let known = by_service[start..]
                .iter()
                .take_while(|&&(h, _)| h == hash)
                .map(|&(_, id)| id)
                .find(|&id| same_port(&backend_at(&list, id, &added), backend));
            // The Service port is a backend already, balanced otherwise: an unchanged
            // Ingress shaped it (affinity, a canary, ...), and the new versions, which shape
            // nothing, share that shape in a full translation.
            if known.is_some_and(|id| !backend_at(&list, id, &added).same_upstream(backend)) {
                return None;
            }
            let id = known.unwrap_or_else(|| {
                let id = (list.len() + added.len()) as BackendId;
                added.push(backend.clone());
                by_service.insert(start, (hash, id));
                id
            });
            if (id as usize) < list.len()
                && touched.contains(&(s.namespace.as_str(), s.name.as_str()))
                && replaced.insert(id)
            {
                let kept = list.make_mut(id as usize);
                if kept.endpoints != backend.endpoints {
                    *kept = Arc::new(kept.with_endpoints(backend.endpoints.clone()));
                }
            }
            ids.push(id);
        }
        list.extend(added);
        Some(Self { list, ids, by_service, replaced })
    }
}

/// The Services whose object or EndpointSlices differ between the snapshots.
fn touched_services<'a>(before: &'a Snapshot, after: &'a Snapshot) -> FastSet<(&'a str, &'a str)> {
    let mut touched = services_of_changed_slices(before, after);
    let (gone, new) = changed(&before.services, &after.services);
    touched.extend(gone.into_iter().chain(new).map(|s| (s.namespace(), s.name())));
    touched
}

/// The Ingresses of `snapshot` that name one of `services` (in their rules, `defaultBackend`
/// or `default-backend` annotation), whichever class they have.
fn naming<'a>(
    snapshot: &'a Snapshot,
    services: &FastSet<(&str, &str)>,
    settings: &Settings,
) -> Vec<&'a Arc<Ingress>> {
    if services.is_empty() {
        return Vec::new();
    }
    let namespaces = namespaces_of(services);
    let key = default_backend_key(&settings.annotations_prefix);
    let names = |i: &Ingress| referenced_services(i, &key).any(|s| services.contains(&s));
    let candidates = snapshot.ingresses.in_namespaces(&namespaces);
    candidates.filter(|i| namespaces.contains(&i.namespace()) && names(i)).collect()
}

/// The Secrets that differ between the snapshots (a certificate rotated, say).
fn touched_secrets<'a>(before: &'a Snapshot, after: &'a Snapshot) -> FastSet<(&'a str, &'a str)> {
    let (gone, new) = changed(&before.secrets, &after.secrets);
    gone.into_iter().chain(new).map(|s| (s.namespace(), s.name())).collect()
}

/// The Ingresses of `snapshot` that may read one of `secrets`: a `tls` section of theirs names
/// it, or a Secret annotation's value holds its name (`auth-secret`, `auth-tls-secret` and
/// `proxy-ssl-secret` name Secrets as `name` or `namespace/name`). Translation reads Secrets
/// for nothing else but `--default-ssl-certificate`.
fn naming_secrets<'a>(
    snapshot: &'a Snapshot,
    secrets: &FastSet<(&str, &str)>,
) -> Vec<&'a Arc<Ingress>> {
    if secrets.is_empty() {
        return Vec::new();
    }
    // A `tls` section names Secrets of its Ingress's namespace only: the Ingresses of other
    // namespaces are not hashed against the set (at 10,000 Ingresses that was a few ms per
    // rotated certificate).
    let mut namespaces: Vec<&str> = secrets.iter().map(|&(ns, _)| ns).collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    let names = |i: &Ingress| {
        let ns = i.namespace();
        let by_tls = namespaces.binary_search(&ns).is_ok() && {
            let tls = i.spec.iter().flat_map(|s| s.tls.iter().flatten());
            tls.filter_map(|t| t.secret_name.as_deref()).any(|name| secrets.contains(&(ns, name)))
        };
        // The annotations that name Secrets (`auth-secret`, `auth-tls-secret`,
        // `proxy-ssl-secret`, under any `--annotations-prefix`) all end in `-secret`; their
        // value, `name` or `namespace/name`, is matched loosely (it holds the name).
        by_tls
            || i.metadata
                .annotations
                .iter()
                .flatten()
                .filter(|(key, _)| key.ends_with("-secret"))
                .any(|(_, value)| secrets.iter().any(|&(_, name)| value.contains(name)))
    };
    snapshot.ingresses.iter().filter(|i| names(i)).collect()
}

/// Gives the backends of `touched` Services that the update did not replace (no Ingress names
/// them now: they wait in `list` until a full translation drops them) the endpoints their
/// Service has now, so that a later update naming them again shares current endpoints; those
/// of a Service or port that is gone get none. `None` for one that reaches a Service's cluster
/// IP (`service-upstream`), left to a full translation.
fn refresh_unnamed(
    list: &mut ChunkVec<Arc<Backend>>,
    by_service: &[(u64, BackendId)],
    touched: &FastSet<(&str, &str)>,
    after: &Snapshot,
    replaced: &FastSet<BackendId>,
) -> Option<()> {
    let mut stale: Vec<BackendId> = Vec::new();
    for &(ns, name) in touched {
        let ids = backends_of(by_service, list, ns, name).filter(|id| !replaced.contains(id));
        stale.extend(ids);
    }
    if stale.is_empty() {
        return Some(());
    }
    let index = Index::of_services(after, touched, &namespaces_of(touched));
    for id in stale {
        let backend = &list[id as usize];
        if backend.service_upstream {
            return None;
        }
        let endpoints = endpoints_now(&index, backend).unwrap_or_default();
        if endpoints != backend.endpoints {
            let backend = list.make_mut(id as usize);
            *backend = Arc::new(backend.with_endpoints(endpoints));
        }
    }
    Some(())
}

/// One Service port reached the same way: what translation makes one backend of.
fn same_port(a: &Backend, b: &Backend) -> bool {
    a.service == b.service && a.port == b.port && a.protocol == b.protocol && a.tls == b.tls
}

/// `previous`'s references without the removed Ingresses', with the new versions' added, in
/// the places of the new `owned`: `(offsets, ingresses)` as [`Referrers`] keeps them. No pair
/// repeats: previous and added places differ, and each table's lists have no repeats.
fn references(
    previous: &RoutingTable,
    new: &RoutingTable,
    places: &Places,
    backends: &Backends,
) -> (Vec<u32>, Vec<u32>) {
    let mut refs: Vec<(BackendId, u32)> = Vec::with_capacity(previous.referrers.ingresses.len());
    for id in 0..previous.backends.len() as BackendId {
        for &place in previous.referrers.of(id) {
            let moved = places.moved[place as usize];
            if moved != u32::MAX {
                refs.push((id, moved));
            }
        }
    }
    for (id, &merged) in backends.ids.iter().enumerate() {
        for &place in new.referrers.of(id as BackendId) {
            refs.push((merged, places.added[place as usize]));
        }
    }
    group_references(refs, backends.list.len())
}
