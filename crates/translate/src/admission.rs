//! Admission review: what Sluice would make of one Ingress before it is stored, judged
//! against the configuration in force (the snapshot and routing table the control loop last
//! applied). The validating admission webhook answers with it.
//!
//! A full [`translate`](crate::translate) of 10,000 Ingresses takes about 100 ms; an
//! admission answer must take a few. So the Ingress under review is translated alone, over an
//! index of what it names (its Services, Secrets, ConfigMaps, the controller's ConfigMap):
//! that gives every diagnostic about its annotations, rules, paths, hosts and backends. What
//! depends on other Ingresses is then looked up in the table in force: the host and path
//! another Ingress already owns (the older Ingress wins, as translation decides it), the
//! catch-all default backend, and the main Ingress a canary diverts from.
//!
//! The verdict ([`Review::refusals`]) refuses what Sluice would refuse by the Ingress's own
//! configuration: a snippet, a security annotation it cannot apply, an invalid value of an
//! annotation that fails closed (its routes would answer 503), a host and path an older
//! Ingress owns, invalid hosts, paths and backends. Everything else it finds (annotations it
//! ignores, invalid values whose default applies, a Service or Secret that does not exist
//! yet) is a warning: those may be created after the Ingress, as `kubectl apply -f dir` and
//! cert-manager do.
//!
//! What translation decides from several Ingresses of one host together is not re-judged:
//! regex mode turned on by a host-mate, aliases and `www` redirects meeting other hosts,
//! ssl-passthrough set twice. Those still show in `sluice check`, in Events and in the logs.

use std::cmp::Ordering;

use k8s_openapi::api::networking::v1::Ingress;
use sluice_model::{
    Diagnostic, Kind, NamespacedName, ObjectRef, PathMatch, Reason, RoutingTable, Settings,
    Severity, Snapshot,
};

use crate::annotations::{self, FAIL_CLOSED};
use crate::build::{self, build, name_of, oldest_first, validate_host};
use crate::class;
use crate::index::Index;

/// What Sluice would make of one Ingress.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Review {
    /// Whether the Ingress is this controller's; others are not read at all.
    pub ours: bool,
    /// Every diagnostic about the Ingress, sorted, as `sluice check` prints them.
    pub diagnostics: Vec<Diagnostic>,
    /// Those of `diagnostics` for which the Ingress is refused; the others are warnings.
    pub refusals: Vec<Diagnostic>,
}

impl Review {
    /// Whether the Ingress may be stored: nothing refuses it.
    pub fn allowed(&self) -> bool {
        self.refusals.is_empty()
    }

    /// The diagnostics that do not refuse the Ingress (the admission warnings).
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| !self.refusals.contains(d))
    }
}

/// Reviews `ingress` (a new version; `old` is the stored one, for an update) against the
/// configuration in force: `snapshot` and the `table` translated from it, under `settings`.
///
/// On an update, only refusals the new version brings are refusals: what the stored version
/// already had stays a warning, so that an Ingress Sluice already refuses in part can still
/// be edited, labelled, or have its finalizers removed.
pub fn review(
    snapshot: &Snapshot,
    table: &RoutingTable,
    settings: &Settings,
    ingress: &Ingress,
    old: Option<&Ingress>,
) -> Review {
    let mut review = review_one(snapshot, table, settings, ingress);
    if review.refusals.is_empty() {
        return review;
    }
    if let Some(old) = old {
        let before = review_one(snapshot, table, settings, old);
        review.refusals.retain(|d| !before.refusals.contains(d));
    }
    review
}

fn review_one(
    snapshot: &Snapshot,
    table: &RoutingTable,
    settings: &Settings,
    ingress: &Ingress,
) -> Review {
    let classes: Vec<_> = snapshot.ingress_classes.iter().map(|c| &**c).collect();
    if !class::is_ours(ingress, &classes, settings) {
        return Review::default();
    }
    let name = name_of(ingress);
    let object = ObjectRef::new(Kind::Ingress, &name.namespace, &name.name);
    let prefix = &settings.annotations_prefix;
    let canary = annotations::canary::is_canary(ingress, prefix);

    // The Ingress alone, over an index of what it names.
    let index = Index::for_ingresses(snapshot, &[ingress], settings);
    let alone = build(&index, settings, snapshot.observed_at, vec![ingress]);
    let mut diagnostics: Vec<Diagnostic> = alone
        .diagnostics
        .iter()
        .filter(|d| d.object == object)
        // Alone, a canary matches no main Ingress: that is looked up in the table in force.
        .filter(|d| !(canary && build::is_unmatched_canary_rule(d)))
        .cloned()
        .collect();

    // Then what other Ingresses decide, from the table in force.
    if canary {
        unmatched_canary_rules(table, ingress, &object, &mut diagnostics);
    } else {
        collisions(snapshot, table, ingress, &name, &alone, &object, &mut diagnostics);
    }
    diagnostics.sort();
    diagnostics.dedup();
    let refusals = diagnostics.iter().filter(|d| refuses(d)).cloned().collect();
    Review { ours: true, diagnostics, refusals }
}

/// Whether a diagnostic about the Ingress refuses it: something about the Ingress itself that
/// Sluice would not serve as written, or would answer 503 for by the Ingress's own
/// annotations. A missing Service or Secret is not: it may be created after the Ingress.
fn refuses(d: &Diagnostic) -> bool {
    d.severity == Severity::Error
        && match d.reason {
            Reason::InvalidHost
            | Reason::InvalidPath
            | Reason::InvalidBackend
            | Reason::UnsupportedBackend
            | Reason::PathCollision
            | Reason::SnippetRefused
            | Reason::UnenforceableAnnotation => true,
            // An invalid value of an annotation that fails closed (not one whose default
            // applies).
            Reason::InvalidAnnotation => d.message.ends_with(FAIL_CLOSED),
            _ => false,
        }
}

/// The host and path rules of `ingress` that an older Ingress of the table in force already
/// owns, and the catch-all default backend likewise (translation's collision rule: the older
/// Ingress keeps it); those the Ingress would take from a newer one are warnings.
fn collisions(
    snapshot: &Snapshot,
    table: &RoutingTable,
    ingress: &Ingress,
    name: &NamespacedName,
    alone: &RoutingTable,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) {
    // The owner's age decides; found in the snapshot only when there is a collision.
    let older = |owner: &NamespacedName| -> bool {
        // Only the chunks of the owner's namespace (sources keep a chunk per namespace).
        let namespaces = [owner.namespace.as_str()];
        let mut candidates = snapshot.ingresses.in_namespaces(&namespaces);
        let found = candidates.find(|i| {
            i.metadata.namespace.as_deref().unwrap_or_default() == owner.namespace
                && i.metadata.name.as_deref() == Some(owner.name.as_str())
        });
        // An owner not in the snapshot cannot be: the table comes from it. Count it older.
        found.is_none_or(|o| oldest_first(o, ingress) == Ordering::Less)
    };
    // The Ingress's own routes, as translation made them alone (the first of a path listed
    // twice, valid hosts and paths only).
    let own = alone.routes.iter().filter(|r| r.ingress.as_deref() == Some(name));
    for route in own.filter(|r| r.path_match != PathMatch::Default) {
        let Some(host_idx) = host_in_force(table, &route.host) else { continue };
        let host = &table.hosts[host_idx as usize];
        // A host in regex mode keys its non-Exact paths as written; others without trailing
        // slashes. The Ingress may put the host in regex mode itself.
        let regex = host.regex.is_some()
            || alone
                .host_index
                .get_written(&route.host)
                .is_some_and(|i| alone.hosts[i as usize].regex.is_some());
        let exact = route.path_match == PathMatch::Exact;
        let same = |path: &str| {
            if exact || regex { path == route.path } else { same_prefix(path, &route.path) }
        };
        let mut ids = host.paths.iter().filter(|&(e, _, _)| e == exact).map(|(_, _, id)| id);
        let plain = ids.find(|&id| same(&table.routes[id as usize].path));
        let in_regex = || {
            let list = host.regex.as_deref()?;
            list.iter().map(|(_, id)| id).find(|&id| same(&table.routes[id as usize].path))
        };
        let owner_route = plain.or_else(|| if exact { None } else { in_regex() });
        let Some(owner_route) = owner_route.map(|id| &table.routes[id as usize]) else {
            continue;
        };
        // The same pathType collides only in the same key space: Exact with Exact, the
        // others together.
        if (owner_route.path_match == PathMatch::Exact) != exact {
            continue;
        }
        let Some(owner) = owner_route.ingress.as_deref().filter(|o| *o != name) else { continue };
        let shown = if route.host.is_empty() { "(any host)" } else { &route.host };
        let pt = route.path_match.as_str();
        if older(owner) {
            diagnostics.push(Diagnostic::error(
                object.clone(),
                Reason::PathCollision,
                format!(
                    "host {shown} path {} ({pt}) is already served by older Ingress {owner}; \
                     this rule is ignored",
                    route.path
                ),
            ));
        } else {
            diagnostics.push(Diagnostic::warning(
                object.clone(),
                Reason::PathCollision,
                format!(
                    "host {shown} path {} ({pt}) is served by newer Ingress {owner} now; this \
                     Ingress, older, takes it over",
                    route.path
                ),
            ));
        }
    }
    // A rule-less Ingress's defaultBackend takes the catch-all default when no older one has.
    let spec = ingress.spec.as_ref();
    let rule_less = spec.is_some_and(|s| s.rules.as_deref().unwrap_or_default().is_empty());
    if rule_less && spec.is_some_and(|s| s.default_backend.is_some()) {
        let catch_all = &table.hosts[table.catch_all as usize];
        let default = &table.routes[catch_all.default_route as usize];
        if default.path_match == PathMatch::Default
            && let Some(owner) = default.ingress.as_deref().filter(|o| *o != name)
            && older(owner)
        {
            diagnostics.push(Diagnostic::error(
                object.clone(),
                Reason::PathCollision,
                format!(
                    "spec.defaultBackend: the catch-all default backend is already set by \
                     older Ingress {owner}"
                ),
            ));
        }
    }
}

/// Two non-Exact paths that translation keys the same (trailing slashes aside).
fn same_prefix(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The index in `table.hosts` of `host` as written (`""`: the catch-all), if in force.
fn host_in_force(table: &RoutingTable, host: &str) -> Option<u32> {
    if host.is_empty() { Some(table.catch_all) } else { table.host_index.get_written(host) }
}

/// The rules of a canary Ingress that no main Ingress of the table in force serves (same
/// host, path and pathType): they divert nothing.
fn unmatched_canary_rules(
    table: &RoutingTable,
    ingress: &Ingress,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let rules = ingress.spec.iter().flat_map(|s| s.rules.iter().flatten());
    for rule in rules {
        let Ok(host) = validate_host(rule.host.as_deref().unwrap_or_default()) else { continue };
        for path in rule.http.iter().flat_map(|h| &h.paths) {
            if path.backend.service.is_none() {
                continue;
            }
            // As translation reads them; invalid ones are reported by the build alone.
            let path_match = match path.path_type.as_str() {
                "Exact" => PathMatch::Exact,
                "Prefix" => PathMatch::Prefix,
                "ImplementationSpecific" | "" => PathMatch::ImplementationSpecific,
                _ => continue,
            };
            let raw = match path.path.as_deref().unwrap_or_default() {
                "" if path_match == PathMatch::ImplementationSpecific => "/",
                raw => raw,
            };
            if !raw.starts_with('/') {
                continue;
            }
            let Some(main) = main_route_in_force(table, &host, path_match, raw) else {
                diagnostics.push(build::unmatched_canary_rule(object, &host, raw, path_match));
                continue;
            };
            // Its Service port is the main route's own backend: nothing to divert.
            let service = path.backend.service.as_ref().expect("checked above");
            let port = service.port.as_ref().and_then(|p| match (&p.name, p.number) {
                (Some(name), _) => Some(name.clone()),
                (None, Some(number)) => Some(number.to_string()),
                (None, None) => None,
            });
            let main = &table.routes[main as usize];
            if let sluice_model::Target::Backend(id) = main.target
                && let Some(backend) = table.backends.get(id as usize)
                && backend.service.namespace == object.namespace
                && backend.service.name == service.name
                && Some(&backend.port) == port.as_ref()
            {
                diagnostics.push(build::canary_of_itself(object, &host, raw));
            }
        }
    }
}

/// The route of a main Ingress of `table` that serves `host` and `raw` with `path_match`
/// (translation's `main_route`, over the frozen table).
fn main_route_in_force(
    table: &RoutingTable,
    host: &str,
    path_match: PathMatch,
    raw: &str,
) -> Option<u32> {
    let host = &table.hosts[host_in_force(table, host)? as usize];
    let route_is = |&id: &u32| {
        let r = &table.routes[id as usize];
        r.path == raw && r.path_match == path_match && r.ingress.is_some()
    };
    let exact = path_match == PathMatch::Exact;
    let mut plain = host.paths.iter().filter(|&(e, _, _)| e == exact).map(|(_, _, id)| id);
    if let Some(id) = plain.find(route_is) {
        return Some(id);
    }
    if !exact
        && let Some(id) =
            host.regex.as_deref().and_then(|l| l.iter().map(|(_, id)| id).find(route_is))
    {
        return Some(id);
    }
    let default = &table.routes[host.default_route as usize];
    (raw == "/"
        && path_match == PathMatch::Prefix
        && default.ingress.is_some()
        && default.path_match == PathMatch::Default)
        .then_some(host.default_route)
}
