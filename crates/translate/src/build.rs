//! The translation itself: owned Ingresses, oldest first, merged host by host.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, Ingress, IngressBackend, IngressServiceBackend,
};
use sluice_model::{
    Backend, BackendId, Diagnostic, Endpoint, HostIndex, HostMap, HostRoutes, Kind, NamespacedName,
    ObjectRef, PathMatch, Policy, Reason, Referrers, Route, RouteId, RoutingTable, Settings,
    SharedVec, Snapshot, Target, Tls, UpstreamProtocol, UpstreamTls,
};

use crate::annotations::{self, IngressAnnotations};
use crate::backends::{self, Resolved, Unresolved};
use crate::class;
use crate::config::{self, GlobalConfig};
use crate::index::{FastMap, Index, service_hash};
use crate::regex_mode::RegexMode;

/// Builds the routing table for `snapshot` under `settings`.
///
/// Never fails: whatever cannot be applied is left out (or answers 503, where leaving it out
/// would route its requests elsewhere) and reported in [`RoutingTable::diagnostics`], sorted
/// and without duplicates. The table's `generation` is 0; the publisher sets it.
pub fn translate(snapshot: &Snapshot, settings: &Settings) -> RoutingTable {
    let index = Index::new(snapshot);
    let classes: Vec<_> = snapshot.ingress_classes.iter().map(|c| &**c).collect();
    let ingresses: Vec<&Ingress> = snapshot
        .ingresses
        .iter()
        .map(|i| &**i)
        .filter(|i| class::is_ours(i, &classes, settings))
        .collect();
    build(&index, settings, snapshot.observed_at, ingresses)
}

/// The table of `ingresses` (this controller's, in any order) over `index`. An Ingress update
/// builds tables of just the changed Ingresses this way, over an index of what they name.
pub(crate) fn build<'s>(
    index: &'s Index<'s>,
    settings: &'s Settings,
    observed_at: Option<i64>,
    mut ingresses: Vec<&'s Ingress>,
) -> RoutingTable {
    let mut b = Builder::new(index, settings, observed_at);
    let global = b.global_config();
    b.global_default(&global.policy);
    b.start_tls(&global);
    ingresses.sort_by(|a, b| oldest_first(a, b));
    // `owned` is sorted by name; an Ingress's place in it names it in `Referrers`.
    let mut by_name: Vec<u32> = (0..ingresses.len() as u32).collect();
    by_name.sort_unstable_by(|&x, &y| {
        ns_name(ingresses[x as usize]).cmp(&ns_name(ingresses[y as usize]))
    });
    let owned: Vec<NamespacedName> =
        by_name.iter().map(|&i| name_of(ingresses[i as usize])).collect();
    let mut place = vec![0; ingresses.len()];
    for (pos, &i) in by_name.iter().enumerate() {
        place[i as usize] = pos as u32;
    }
    // Sized once from the rules and paths, rather than grown (and copied) as they come.
    let (mut rules, mut paths) = (0, 0);
    for spec in ingresses.iter().filter_map(|i| i.spec.as_ref()) {
        for rule in spec.rules.iter().flatten() {
            rules += 1;
            paths += rule.http.as_ref().map_or(0, |h| h.paths.len());
        }
        paths += 1;
    }
    b.reserve(rules, paths);
    b.regex_mode = RegexMode::new(&ingresses, &settings.annotations_prefix);
    for (ingress, place) in ingresses.into_iter().zip(place) {
        b.add_ingress(ingress, place, &global);
    }
    b.finish(owned, global)
}

pub(crate) fn ns_name(i: &Ingress) -> (&str, &str) {
    (
        i.metadata.namespace.as_deref().unwrap_or_default(),
        i.metadata.name.as_deref().unwrap_or_default(),
    )
}

pub(crate) fn name_of(i: &Ingress) -> NamespacedName {
    NamespacedName::new(
        i.metadata.namespace.as_deref().unwrap_or_default(),
        i.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// ingress-nginx's order: creationTimestamp ascending (unset is oldest, like Go's zero time);
/// on a tie, `namespace/name` descending.
fn oldest_first(a: &Ingress, b: &Ingress) -> Ordering {
    let ts = |i: &Ingress| i.metadata.creation_timestamp.as_ref().map(|t| t.0);
    // The bytes of `namespace/name`, compared without building the string: manifests rarely
    // set creationTimestamp, so every comparison may be a tie.
    fn key(i: &Ingress) -> impl Iterator<Item = u8> + '_ {
        let (ns, name) = ns_name(i);
        ns.bytes().chain(std::iter::once(b'/')).chain(name.bytes())
    }
    ts(a).cmp(&ts(b)).then_with(|| key(b).cmp(key(a)))
}

/// A Service port as an Ingress names it, the way [`backends::port_label`] writes it: backends
/// are told apart by that label, which this spells without formatting numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Label<'s> {
    /// A port name (or `""` when the Ingress names no port).
    Name(&'s str),
    /// A port number.
    Number(i32),
}

impl<'s> Label<'s> {
    /// The label of `backend`'s port, and whether resolving by that label is resolving
    /// `backend` (false for a port *name* written like a number, which labels the same
    /// backend as that number but resolves by name).
    fn of(backend: &'s IngressServiceBackend) -> (Label<'s>, bool) {
        let Some(port) = &backend.port else { return (Label::Name(""), true) };
        match (port.name.as_deref(), port.number) {
            (Some(name), _) if !name.is_empty() => {
                match name.parse::<i32>().ok().filter(|n| n.to_string() == name) {
                    Some(n) => (Label::Number(n), false),
                    None => (Label::Name(name), true),
                }
            }
            (_, Some(n)) => (Label::Number(n), true),
            _ => (Label::Name(""), true),
        }
    }
}

/// One Service port under one label: resolved once per translation, and the backends made of
/// it (one per protocol and backend TLS).
#[derive(Default)]
struct Slot {
    /// The Ingresses' resolution; `None` until an Ingress names it (the default backend
    /// makes a backend without it).
    resolved: Option<Result<SlotPort, Unresolved>>,
    /// Its backends, by how they are reached: nearly always one, kept inline.
    first: Option<(UpstreamProtocol, Option<Arc<UpstreamTls>>, BackendId)>,
    others: Vec<(UpstreamProtocol, Option<Arc<UpstreamTls>>, BackendId)>,
}

impl Slot {
    /// Its backend reached with `protocol` and `tls`, if made.
    fn backend(
        &self,
        protocol: UpstreamProtocol,
        tls: &Option<Arc<UpstreamTls>>,
    ) -> Option<BackendId> {
        self.first
            .iter()
            .chain(&self.others)
            .find(|(p, t, _)| *p == protocol && t == tls)
            .map(|&(.., id)| id)
    }
}

/// A resolved Service port.
struct SlotPort {
    /// The port as the Ingress named it, until a backend takes it.
    label: Option<String>,
    /// Its ready endpoints, until a backend takes them.
    endpoints: Option<Vec<Endpoint>>,
    /// Whether it has none.
    empty: bool,
}

pub(crate) struct Builder<'s> {
    pub(crate) index: &'s Index<'s>,
    pub(crate) settings: &'s Settings,
    /// When the snapshot was taken (certificate expiry).
    pub(crate) observed_at: Option<i64>,
    routes: Vec<Route>,
    backends: Vec<Arc<Backend>>,
    /// Service ports by namespace, Service and label; values index `slot_list`.
    slots: FastMap<(&'s str, &'s str, Label<'s>), u32>,
    slot_list: Vec<Slot>,
    /// (backend, Ingress place in `owned`) for every reference to a backend: the makings of
    /// [`Referrers`], and of the `NoReadyEndpoints` warnings.
    refs: Vec<(BackendId, u32)>,
    /// Whether an endpoint-only update can redo this table (see [`Referrers::incremental`]).
    incremental: bool,
    /// Backends by their Service's hash (see [`Referrers::by_service`]).
    by_service: Vec<(u64, BackendId)>,
    hosts: Vec<HostDraft>,
    /// Named hosts to their index in `hosts` (the table's [`HostIndex`] is made at the end,
    /// from the hosts' final paths).
    host_ids: HostMap<u32>,
    /// The catch-all host's index in `hosts`, once created.
    catch_all: Option<u32>,
    /// The route for requests no host or path claims.
    global_default: RouteId,
    /// Whether a rule-less Ingress already took the catch-all default.
    catch_all_taken: Option<NamespacedName>,
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// Certificates, policies, passthrough, as they are being built.
    pub(crate) tls: Tls,
    /// Hosts listed in a TLS section (with or without a Secret): they get HTTPS redirects.
    pub(crate) tls_hosts: HashSet<String>,
    /// Each named host, with the policy of the Ingress that created it: its unmatched paths
    /// redirect to HTTPS as that Ingress says (ingress-nginx's default location of a server).
    pub(crate) host_creators: Vec<(u32, Policy)>,
    /// Certificates already read in this translation, by Secret (or why they cannot be used).
    pub(crate) cert_ids: HashMap<NamespacedName, Result<u32, (Reason, String)>>,
    /// Hosts whose handshake policy could not be applied, with why: they answer 503.
    pub(crate) failed_hosts: HashMap<String, String>,
    /// What each host's Ingresses asked of its handshake, by host as written; made into
    /// policies at the end.
    pub(crate) host_policies: std::collections::BTreeMap<String, crate::build_tls::HostPolicy>,
    /// Hosts whose paths are regexes (`use-regex`, `rewrite-target`), and their paths.
    regex_mode: RegexMode,
}

/// An Ingress being added, with what its annotations decided.
pub(crate) struct Current<'s> {
    /// Its namespace, borrowed from the snapshot (keys of per-translation caches).
    pub(crate) namespace: &'s str,
    /// Its place in the table's `owned`.
    pub(crate) place: u32,
    pub(crate) name: NamespacedName,
    pub(crate) object: ObjectRef,
    pub(crate) annotations: IngressAnnotations,
}

impl<'s> Builder<'s> {
    fn new(index: &'s Index<'s>, settings: &'s Settings, observed_at: Option<i64>) -> Self {
        Self {
            index,
            settings,
            observed_at,
            routes: Vec::new(),
            backends: Vec::new(),
            slots: FastMap::default(),
            slot_list: Vec::new(),
            refs: Vec::new(),
            incremental: true,
            by_service: Vec::new(),
            hosts: Vec::new(),
            host_ids: HostMap::default(),
            catch_all: None,
            global_default: 0,
            catch_all_taken: None,
            diagnostics: Vec::new(),
            tls: Tls::default(),
            tls_hosts: HashSet::new(),
            host_creators: Vec::new(),
            cert_ids: HashMap::new(),
            failed_hosts: HashMap::new(),
            host_policies: Default::default(),
            regex_mode: RegexMode::default(),
        }
    }

    /// Room for about `rules` hosts and `paths` routes, backends and references.
    fn reserve(&mut self, rules: usize, paths: usize) {
        self.routes.reserve(paths);
        self.hosts.reserve(rules);
        self.host_creators.reserve(rules);
        self.slots.reserve(paths);
        self.slot_list.reserve(paths);
        self.refs.reserve(paths);
    }

    fn global_config(&mut self) -> GlobalConfig {
        let Some(name) = &self.settings.configmap else { return GlobalConfig::default() };
        match self.index.config_map(&name.namespace, &name.name) {
            Some(cm) => config::parse(
                &config::object_ref(&name.namespace, &name.name),
                cm.data.as_ref().unwrap_or(&Default::default()),
                &mut self.diagnostics,
            ),
            // Not an error: ingress-nginx runs on defaults until the ConfigMap appears.
            None => GlobalConfig::default(),
        }
    }

    /// The route for unmatched requests: `--default-backend-service`, else a built-in 404. It
    /// is also the default of the catch-all host until a rule-less Ingress claims that.
    fn global_default(&mut self, policy: &Policy) {
        let settings: &'s Settings = self.settings;
        let target = match &settings.default_backend_service {
            None => Target::Respond { status: 404, reason: "no rule matches".into() },
            Some(svc) => self.default_backend_target(svc),
        };
        self.global_default = self.push_route(Route {
            ingress: None,
            host: String::new(),
            path: String::new(),
            path_match: PathMatch::Default,
            target,
            policy: policy.clone(),
        });
        self.host_id("");
    }

    /// `--default-backend-service` names a Service without a port: its first port is used, as
    /// ingress-nginx does.
    fn default_backend_target(&mut self, svc: &'s NamespacedName) -> Target {
        let object = ObjectRef::new(Kind::Service, &svc.namespace, &svc.name);
        let Some(service) = self.index.service(&svc.namespace, &svc.name) else {
            self.diagnostics.push(Diagnostic::error(
                object,
                Reason::MissingService,
                "--default-backend-service names a Service that does not exist; unmatched requests answer 503",
            ));
            return Target::Respond {
                status: 503,
                reason: "default backend Service not found".into(),
            };
        };
        let first_port = service.ports.first();
        let Some(port) = first_port else {
            self.diagnostics.push(Diagnostic::error(
                object,
                Reason::MissingServicePort,
                "--default-backend-service names a Service without ports; unmatched requests answer 503",
            ));
            return Target::Respond {
                status: 503,
                reason: "default backend Service has no port".into(),
            };
        };
        let endpoints = backends::ready_endpoints(self.index, &svc.namespace, &svc.name, port);
        let (key_label, label) = match port.name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => (Label::Name(name), name.to_string()),
            None => (Label::Number(port.port), port.port.to_string()),
        };
        let slot = self.slot((&svc.namespace, &svc.name, key_label));
        Target::Backend(self.new_backend(
            slot,
            (&svc.namespace, &svc.name),
            label,
            Some(endpoints),
            UpstreamProtocol::Http1,
            None,
        ))
    }

    fn add_ingress(&mut self, ingress: &'s Ingress, place: u32, global: &GlobalConfig) {
        let name = name_of(ingress);
        let object = ObjectRef::new(Kind::Ingress, &name.namespace, &name.name);
        let annotations = annotations::parse(
            ingress,
            &object,
            &self.settings.annotations_prefix,
            &global.policy,
            &mut self.diagnostics,
        );
        if annotations.canary {
            // A canary never owns a host or path; ingress-nginx attaches it to the main
            // Ingress. Until canaries are implemented, all traffic stays on the main Ingress.
            self.diagnostics.push(Diagnostic::warning(
                object,
                Reason::UnsupportedFeature,
                "canary Ingresses are not implemented yet; this Ingress is ignored and all \
                 traffic goes to the main Ingress",
            ));
            return;
        }
        let namespace = ingress.metadata.namespace.as_deref().unwrap_or_default();
        let cur = Current { namespace, place, name, object, annotations };
        let spec = ingress.spec.as_ref();
        let tls_sections = spec.and_then(|s| s.tls.as_deref()).unwrap_or_default();
        let rules = spec.and_then(|s| s.rules.as_deref()).unwrap_or_default();
        let default_backend = spec.and_then(|s| s.default_backend.as_ref());

        // The Ingress's own default route, for the hosts it is first to define (or, with no
        // rules, for the catch-all host).
        let own_default = default_backend.map(|backend| {
            let target = self.target(&cur, backend);
            self.push_route(Route {
                ingress: Some(cur.name.clone()),
                host: String::new(),
                path: String::new(),
                path_match: PathMatch::Default,
                target: cur.fail_closed_or(target),
                policy: cur.annotations.policy.clone(),
            })
        });
        if rules.is_empty() {
            match (own_default, &self.catch_all_taken) {
                (Some(route), None) => {
                    let catch_all = self.host_id("");
                    self.hosts[catch_all as usize].default_route = route;
                    self.catch_all_taken = Some(cur.name.clone());
                }
                (Some(_), Some(owner)) => self.diagnostics.push(Diagnostic::error(
                    cur.object.clone(),
                    Reason::PathCollision,
                    format!(
                        "spec.defaultBackend: the catch-all default backend is already set by \
                         older Ingress {owner}"
                    ),
                )),
                (None, _) => self.diagnostics.push(Diagnostic::error(
                    cur.object.clone(),
                    Reason::InvalidBackend,
                    "an Ingress needs rules or spec.defaultBackend; this one has neither",
                )),
            }
            return;
        }

        for rule in rules {
            let host = rule.host.as_deref().unwrap_or_default();
            let host = match validate_host(host) {
                Ok(h) => h,
                Err(why) => {
                    self.diagnostics.push(Diagnostic::error(
                        cur.object.clone(),
                        Reason::InvalidHost,
                        why,
                    ));
                    continue;
                }
            };
            let (host_idx, created) = self.host_id_created(&host);
            if created && let Some(route) = own_default {
                self.hosts[host_idx as usize].default_route = route;
            }
            if created && !host.is_empty() {
                self.host_creators.push((host_idx, cur.annotations.policy.clone()));
            }
            let paths = rule.http.as_ref().map(|h| h.paths.as_slice()).unwrap_or_default();
            self.add_tls_for_host(&cur, &host, tls_sections);
            self.set_host_policy(&cur, &host);
            if cur.annotations.ssl_passthrough {
                // As ingress-nginx: the backend of the host's `/` location, the rule's `/` path
                // (whatever its pathType), else the Ingress's defaultBackend.
                let root =
                    paths.iter().find(|p| matches!(p.path.as_deref(), None | Some("" | "/")));
                let backend = root.map(|p| &p.backend).or(default_backend);
                self.add_passthrough(&cur, &host, backend);
            }
            for path in paths {
                self.add_path(&cur, host_idx, &host, path);
            }
        }
    }

    fn add_path(
        &mut self,
        cur: &Current<'s>,
        host_idx: u32,
        host: &str,
        path: &'s HTTPIngressPath,
    ) {
        let raw = path.path.as_deref().unwrap_or_default();
        let path_match = match path.path_type.as_str() {
            "Exact" => PathMatch::Exact,
            "Prefix" => PathMatch::Prefix,
            "ImplementationSpecific" => PathMatch::ImplementationSpecific,
            "" => {
                // The API server requires pathType; ingress-nginx defaults it.
                self.diagnostics.push(Diagnostic::warning(
                    cur.object.clone(),
                    Reason::InvalidPath,
                    format!(
                        "path {raw:?}: pathType is required by the Ingress API; served as \
                         ImplementationSpecific, as ingress-nginx does"
                    ),
                ));
                PathMatch::ImplementationSpecific
            }
            other => {
                self.diagnostics.push(Diagnostic::error(
                    cur.object.clone(),
                    Reason::InvalidPath,
                    format!("path {raw:?}: pathType {other:?} is not Exact, Prefix or ImplementationSpecific; rule ignored"),
                ));
                return;
            }
        };
        let raw = if raw.is_empty() && path_match == PathMatch::ImplementationSpecific {
            "/"
        } else {
            raw
        };
        if !raw.starts_with('/') {
            self.diagnostics.push(Diagnostic::error(
                cur.object.clone(),
                Reason::InvalidPath,
                format!("path {raw:?} must start with \"/\"; rule ignored"),
            ));
            return;
        }
        let Ok(regex) = self.regex_mode.location(cur, host, raw, path_match, &mut self.diagnostics)
        else {
            return;
        };
        let target = self.target(cur, &path.backend);
        let mut route = Route {
            ingress: Some(cur.name.clone()),
            host: host.to_string(),
            path: raw.to_string(),
            path_match,
            target: cur.fail_closed_or(target),
            policy: cur.annotations.policy.clone(),
        };
        route.policy.rewrite = RegexMode::rewrite(cur, raw, &mut self.diagnostics);
        let next_id = self.routes.len() as RouteId;
        let routes = &mut self.hosts[host_idx as usize];
        let taken = match (path_match, regex) {
            (PathMatch::Exact, _) => first_writer(&mut routes.exact, raw, next_id),
            (_, Some(regex)) => self.regex_mode.insert(host_idx, raw, regex, next_id),
            _ => first_writer(&mut routes.prefix, raw.trim_end_matches('/'), next_id),
        };
        match taken {
            None => self.routes.push(route),
            Some(winner) => {
                let winner = &self.routes[winner as usize];
                let owner = winner.ingress.as_ref().map(ToString::to_string).unwrap_or_default();
                let shown = if host.is_empty() { "(any host)" } else { host };
                let message = if winner.ingress.as_ref() == Some(&cur.name) {
                    format!(
                        "host {shown} path {raw} ({}) is listed twice; the first wins",
                        path_match.as_str()
                    )
                } else {
                    format!(
                        "host {shown} path {raw} ({}) is already served by older Ingress {owner}; \
                         this rule is ignored",
                        path_match.as_str()
                    )
                };
                self.diagnostics.push(Diagnostic::error(
                    cur.object.clone(),
                    Reason::PathCollision,
                    message,
                ));
            }
        }
    }

    /// Where a backend of the current Ingress sends requests.
    pub(crate) fn target(&mut self, cur: &Current<'s>, backend: &'s IngressBackend) -> Target {
        let ns = cur.namespace;
        let service = match (&backend.service, &backend.resource) {
            (Some(s), None) => s,
            (None, Some(r)) => {
                self.diagnostics.push(Diagnostic::error(
                    cur.object.clone(),
                    Reason::UnsupportedBackend,
                    format!(
                        "resource backend {}/{}: Sluice routes to Services only; the path answers 503",
                        r.kind, r.name
                    ),
                ));
                return Target::Respond {
                    status: 503,
                    reason: "resource backends are not supported".into(),
                };
            }
            _ => {
                self.diagnostics.push(Diagnostic::error(
                    cur.object.clone(),
                    Reason::InvalidBackend,
                    "a backend needs exactly one of service and resource; the path answers 503",
                ));
                return Target::Respond { status: 503, reason: "invalid backend".into() };
            }
        };
        let (label, exact) = Label::of(service);
        let slot = self.slot((ns, &service.name, label));
        // Resolved once per Service port, not once per path; `fresh` is this reference's own
        // resolution when the port's cannot be used.
        let (mut fresh, empty) = if exact {
            let index = self.index;
            let resolved = self.slot_list[slot as usize].resolved.get_or_insert_with(|| {
                backends::resolve(index, ns, service).map(|Resolved { port, endpoints }| SlotPort {
                    label: Some(port),
                    empty: endpoints.is_empty(),
                    endpoints: Some(endpoints),
                })
            });
            match resolved {
                Ok(port) => (None, port.empty),
                Err(why) => {
                    let why = why.clone();
                    return self.unresolved(cur, service, why);
                }
            }
        } else {
            // Resolved by name, yet the same backend as the number: not worth a cache, nor
            // an incremental update.
            self.incremental = false;
            match backends::resolve(self.index, ns, service) {
                Ok(r) => {
                    let empty = r.endpoints.is_empty();
                    (Some(r), empty)
                }
                Err(why) => return self.unresolved(cur, service, why),
            }
        };
        let protocol = cur.annotations.backend_protocol;
        let tls = if protocol.tls() {
            match self.upstream_tls(cur, &NamespacedName::new(ns, &service.name)) {
                Ok(tls) => tls,
                Err(why) => {
                    // No backend to hang the warning on: it is reported now.
                    self.incremental = false;
                    if empty {
                        let port = backends::port_label(service);
                        let warning = no_ready_endpoints(&cur.name, ns, &service.name, &port);
                        self.diagnostics.push(warning);
                    }
                    return Target::Respond { status: 503, reason: why };
                }
            }
        } else {
            None
        };
        let id = match self.slot_list[slot as usize].backend(protocol, &tls) {
            Some(id) => id,
            None => {
                let (port, endpoints) = match fresh.take() {
                    Some(r) => (r.port, Some(r.endpoints)),
                    None => {
                        let slot = &mut self.slot_list[slot as usize];
                        let resolved = slot.resolved.as_mut().and_then(|r| r.as_mut().ok());
                        let port = resolved.expect("resolved above");
                        // The first backend takes the label; others copy it.
                        let label = port.label.take().or_else(|| {
                            let (.., first) = slot.first.as_ref()?;
                            Some(self.backends[*first as usize].port.clone())
                        });
                        (label.expect("a backend or a label"), port.endpoints.take())
                    }
                };
                self.new_backend(slot, (ns, &service.name), port, endpoints, protocol, tls)
            }
        };
        if exact && self.backends[id as usize].endpoints.is_empty() == empty {
            if self.refs.last() != Some(&(id, cur.place)) {
                self.refs.push((id, cur.place));
            }
        } else {
            // This reference's endpoints are not the backend's: warn from its own.
            self.incremental = false;
            if empty {
                let b = &self.backends[id as usize];
                self.diagnostics.push(no_ready_endpoints(&cur.name, ns, &service.name, &b.port));
            }
        }
        Target::Backend(id)
    }

    /// Reports a service backend that cannot be served; its paths answer 503.
    fn unresolved(
        &mut self,
        cur: &Current<'s>,
        service: &IngressServiceBackend,
        why: Unresolved,
    ) -> Target {
        let ns = cur.namespace;
        let port = backends::port_label(service);
        let (reason, message) = match why {
            Unresolved::MissingService => (
                Reason::MissingService,
                format!("Service {ns}/{} does not exist; its paths answer 503", service.name),
            ),
            Unresolved::MissingPort(p) => (
                Reason::MissingServicePort,
                format!("Service {ns}/{} has no port {p}; its paths answer 503", service.name),
            ),
            Unresolved::NoPort => (
                Reason::InvalidBackend,
                format!(
                    "backend Service {ns}/{} names no port; its paths answer 503",
                    service.name
                ),
            ),
            Unresolved::ExternalName => (
                Reason::UnsupportedService,
                format!(
                    "Service {ns}/{} is of type ExternalName, not supported yet; its paths answer 503",
                    service.name
                ),
            ),
        };
        self.diagnostics.push(Diagnostic::error(cur.object.clone(), reason, message));
        Target::Respond {
            status: 503,
            reason: format!("backend {ns}/{}:{port} unavailable", service.name),
        }
    }

    /// The slot of a Service port, made on first use.
    fn slot(&mut self, key: (&'s str, &'s str, Label<'s>)) -> u32 {
        let next = self.slot_list.len() as u32;
        match self.slots.entry(key) {
            Entry::Occupied(o) => *o.get(),
            Entry::Vacant(v) => {
                v.insert(next);
                self.slot_list.push(Slot::default());
                next
            }
        }
    }

    /// A new backend of a Service port reached with `protocol` and `tls`, with `endpoints`
    /// (else those of the port's first backend).
    fn new_backend(
        &mut self,
        slot: u32,
        (namespace, service): (&str, &str),
        port: String,
        endpoints: Option<Vec<Endpoint>>,
        protocol: UpstreamProtocol,
        tls: Option<Arc<UpstreamTls>>,
    ) -> BackendId {
        let slot = &mut self.slot_list[slot as usize];
        let endpoints = endpoints.unwrap_or_else(|| match &slot.first {
            Some((.., first)) => self.backends[*first as usize].endpoints.clone(),
            None => Vec::new(),
        });
        // Backends of one Service port reached differently need their own names.
        let name = match protocol {
            UpstreamProtocol::Http1 => {
                // Built in one allocation: there is one per backend.
                let mut name =
                    String::with_capacity(namespace.len() + service.len() + port.len() + 2);
                for part in [namespace, "-", service, "-", &port] {
                    name.push_str(part);
                }
                name
            }
            _ => format!("{namespace}-{service}-{port}-{protocol:?}").to_lowercase(),
        };
        let mut backend =
            Backend::new(name, NamespacedName::new(namespace, service), port, endpoints);
        backend.protocol = protocol;
        backend.tls = tls.clone();
        let id = self.backends.len() as BackendId;
        self.backends.push(Arc::new(backend));
        self.by_service.push((service_hash(namespace, service), id));
        match slot.first {
            None => slot.first = Some((protocol, tls, id)),
            Some(_) => slot.others.push((protocol, tls, id)),
        }
        id
    }

    fn push_route(&mut self, route: Route) -> RouteId {
        self.routes.push(route);
        (self.routes.len() - 1) as RouteId
    }

    fn host_id(&mut self, host: &str) -> u32 {
        self.host_id_created(host).0
    }

    /// The host's index, and whether this call created it.
    fn host_id_created(&mut self, host: &str) -> (u32, bool) {
        let known =
            if host.is_empty() { self.catch_all } else { self.host_ids.get_written(host).copied() };
        if let Some(id) = known {
            return (id, false);
        }
        let id = self.hosts.len() as u32;
        self.hosts.push(HostDraft {
            host: host.to_string(),
            exact: sluice_model::FastMap::default(),
            prefix: sluice_model::FastMap::default(),
            regex: None,
            default_route: self.global_default,
        });
        if host.is_empty() {
            self.catch_all = Some(id);
        } else {
            self.host_ids.insert(host, id);
        }
        (id, true)
    }

    fn finish(mut self, owned: Vec<NamespacedName>, global: GlobalConfig) -> RoutingTable {
        self.finish_tls(&global);
        std::mem::take(&mut self.regex_mode).finish(&mut self.hosts);
        let referrers = self.referrers();
        for (id, backend) in self.backends.iter().enumerate() {
            if backend.endpoints.is_empty() {
                for &place in referrers.of(id as BackendId) {
                    let s = &backend.service;
                    let ingress = &owned[place as usize];
                    self.diagnostics.push(no_ready_endpoints(
                        ingress,
                        &s.namespace,
                        &s.name,
                        &backend.port,
                    ));
                }
            }
        }
        self.diagnostics.sort();
        self.diagnostics.dedup();
        self.backends.shrink_to_fit();
        let catch_all = self.catch_all.expect("the catch-all host is made first");
        let hosts: Vec<HostRoutes> = self.hosts.into_iter().map(HostDraft::freeze).collect();
        let mut host_index = HostIndex::new(catch_all, &hosts[catch_all as usize]);
        for (i, host) in hosts.iter().enumerate().filter(|&(i, _)| i != catch_all as usize) {
            // Names are valid host names, each once in `host_ids`.
            let added = host_index.insert(i as u32, host);
            debug_assert!(added, "{}", host.host());
        }
        RoutingTable {
            generation: 0,
            origin: sluice_model::Origin::Full,
            host_index: Arc::new(host_index),
            catch_all,
            hosts: hosts.into(),
            routes: self.routes.into(),
            backends: self.backends.into(),
            diagnostics: SharedVec::new(self.diagnostics),
            owned: SharedVec::new(owned),
            tls: Arc::new(self.tls),
            https: global.https,
            referrers: Arc::new(referrers),
        }
    }

    /// The references to each backend, and the backends by Service.
    fn referrers(&mut self) -> Referrers {
        let (offsets, ingresses) =
            group_references(std::mem::take(&mut self.refs), self.backends.len());
        let mut by_service = std::mem::take(&mut self.by_service);
        by_service.sort_unstable();
        Referrers { offsets, ingresses, by_service, incremental: self.incremental, dead_routes: 0 }
    }

    /// Every route (for the TLS pass at the end).
    pub(crate) fn routes_mut(&mut self) -> &mut [Route] {
        &mut self.routes
    }

    /// Gives each named host whose creating Ingress redirects it to HTTPS a default route of
    /// its own that redirects too: default routes are shared (the built-in 404, a
    /// defaultBackend), and ingress-nginx redirects a TLS host's unmatched paths.
    pub(crate) fn redirect_host_defaults(&mut self, tls_hosts: &HashSet<String>) {
        for (idx, p) in std::mem::take(&mut self.host_creators) {
            let host = &self.hosts[idx as usize];
            if !(p.force_ssl_redirect || (p.ssl_redirect && tls_hosts.contains(&host.host))) {
                continue;
            }
            let mut route = self.routes[host.default_route as usize].clone();
            route.host = host.host.clone();
            route.policy.redirect_to_https = true;
            route.policy.preserve_trailing_slash = p.preserve_trailing_slash;
            route.policy.port_in_redirect = p.port_in_redirect;
            self.hosts[idx as usize].default_route = self.push_route(route);
        }
    }

    /// Gives every host in `failed` a default route answering 503 (its paths are handled by
    /// the caller).
    pub(crate) fn fail_host_defaults(&mut self, failed: &HashMap<String, String>) {
        for host in &mut self.hosts {
            if let Some(why) = failed.get(&host.host) {
                let route = Route {
                    ingress: None,
                    host: host.host.clone(),
                    path: String::new(),
                    path_match: PathMatch::Default,
                    target: Target::Respond { status: 503, reason: why.clone() },
                    policy: Policy::default(),
                };
                self.routes.push(route);
                host.default_route = (self.routes.len() - 1) as RouteId;
            }
        }
    }
}

/// `(backend, Ingress place)` references grouped by backend, as [`Referrers`] keeps them:
/// `(offsets, ingresses)`. A counting sort, stable: a backend's references keep their order,
/// and repeats must be adjacent to be dropped (one Ingress's references are: Ingresses are
/// added one after the other).
pub(crate) fn group_references(
    refs: Vec<(BackendId, u32)>,
    backends: usize,
) -> (Vec<u32>, Vec<u32>) {
    let mut offsets = vec![0u32; backends + 1];
    for &(id, _) in &refs {
        offsets[id as usize + 1] += 1;
    }
    for i in 1..offsets.len() {
        offsets[i] += offsets[i - 1];
    }
    let mut next = offsets.clone();
    let mut ingresses = vec![0; refs.len()];
    for (id, place) in refs {
        ingresses[next[id as usize] as usize] = place;
        next[id as usize] += 1;
    }
    let mut compact = Vec::with_capacity(ingresses.len());
    let mut start = 0;
    for b in 0..backends {
        let end = offsets[b + 1] as usize;
        offsets[b] = compact.len() as u32;
        for i in start..end {
            if i == start || ingresses[i] != ingresses[i - 1] {
                compact.push(ingresses[i]);
            }
        }
        start = end;
    }
    offsets[backends] = compact.len() as u32;
    compact.shrink_to_fit();
    (offsets, compact)
}

/// Inserts `key` unless present; returns the value already there.
/// A host's paths while the table is built: maps, so that the first Ingress to claim a path
/// keeps it; [`HostDraft::freeze`] lays them out for lookup.
pub(crate) struct HostDraft {
    pub(crate) host: String,
    pub(crate) exact: sluice_model::FastMap<Box<str>, RouteId>,
    pub(crate) prefix: sluice_model::FastMap<Box<str>, RouteId>,
    pub(crate) regex: Option<Box<sluice_model::RegexPaths>>,
    pub(crate) default_route: RouteId,
}

impl HostDraft {
    fn freeze(self) -> HostRoutes {
        let exact = self.exact.iter().map(|(p, &id)| (&**p, id));
        let prefix = self.prefix.iter().map(|(p, &id)| (&**p, id));
        HostRoutes {
            paths: sluice_model::PathTable::new(&self.host, exact, prefix),
            regex: self.regex,
            default_route: self.default_route,
        }
    }
}

fn first_writer(
    map: &mut sluice_model::FastMap<Box<str>, RouteId>,
    key: &str,
    id: RouteId,
) -> Option<RouteId> {
    match map.entry(key.into()) {
        Entry::Vacant(v) => {
            v.insert(id);
            None
        }
        Entry::Occupied(o) => Some(*o.get()),
    }
}

/// The warning for an Ingress whose backend Service port has no ready endpoint.
pub(crate) fn no_ready_endpoints(
    ingress: &NamespacedName,
    namespace: &str,
    service: &str,
    port: &str,
) -> Diagnostic {
    Diagnostic::warning(
        ObjectRef::new(Kind::Ingress, &ingress.namespace, &ingress.name),
        Reason::NoReadyEndpoints,
        format!(
            "Service {namespace}/{service} port {port} has no ready endpoint; its paths answer 503 until one is ready"
        ),
    )
}

impl Current<'_> {
    /// `target`, unless an annotation the proxy cannot enforce makes every route answer 503.
    fn fail_closed_or(&self, target: Target) -> Target {
        match &self.annotations.fail_closed {
            Some(why) => Target::Respond { status: 503, reason: why.clone() },
            None => target,
        }
    }
}

/// Checks a rule's host: a lower-case DNS name, or `*.` and a DNS name; no IP, no port.
/// Upper case is folded (the API server would reject it; hosts compare case-insensitively).
pub(crate) fn validate_host(host: &str) -> Result<Cow<'_, str>, String> {
    if host.is_empty() {
        return Ok(Cow::Borrowed(""));
    }
    // Hosts are lower case already but for mistakes: borrowed, not copied.
    let lower = match host.bytes().any(|c| c.is_ascii_uppercase()) {
        true => Cow::Owned(host.to_ascii_lowercase()),
        false => Cow::Borrowed(host),
    };
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "host {host:?} is not a DNS name or a wildcard such as *.example.com; rule ignored"
        ));
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(format!(
            "host {host:?} is an IP address, which the Ingress API does not allow; rule ignored"
        ));
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_validated() {
        assert_eq!(validate_host("Foo.Example.com"), Ok("foo.example.com".into()));
        assert_eq!(validate_host("*.example.com"), Ok("*.example.com".into()));
        assert!(validate_host("*").is_err());
        assert!(validate_host("a.*.example.com").is_err());
        assert!(validate_host("example.com:80").is_err());
        assert!(validate_host("10.0.0.1").is_err());
        assert!(validate_host("-bad.example.com").is_err());
        assert!(validate_host("ex ample.com").is_err());
    }
}
