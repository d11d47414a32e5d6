//! Backends: each Service port resolved once per translation, one backend per way of reaching
//! it (protocol, TLS), and what ingress-nginx decides per upstream: how it is balanced (the
//! oldest Ingress naming it decides), `service-upstream`, and the canary attached to it.

use std::collections::hash_map::Entry;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{IngressBackend, IngressServiceBackend};
use sluice_model::{
    Affinity, Backend, BackendId, Balance, Diagnostic, Endpoint, HashBy, Kind, NamespacedName,
    ObjectRef, Reason, Target, UpstreamProtocol, UpstreamTls,
};

use super::{Builder, Current, group_references, no_ready_endpoints};
use crate::annotations::load_balance::Algorithm;
use crate::backends::{self, Resolved, Unresolved};
use crate::config::GlobalConfig;
use crate::index::{FastMap, service_hash};

/// A Service port as an Ingress names it, the way [`backends::port_label`] writes it: backends
/// are told apart by that label, which this spells without formatting numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Label<'s> {
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

/// How a backend will be balanced, as Ingresses name it (ingress-nginx's `createUpstreams`
/// and `getBackendServers`): the Ingress that creates the upstream sets `load-balance` and
/// `upstream-hash-by`; the first with `affinity` makes it sticky, every later one with
/// `affinity` sets the cookie again, and the first that sets `affinity-mode` sets the mode.
#[derive(Default)]
struct Draft {
    algorithm: Algorithm,
    hash: Option<Box<HashBy>>,
    affinity: Option<Box<Affinity>>,
    /// `affinity-mode: persistent` (true) or `balanced`, as first set.
    mode: Option<bool>,
}

/// The backends while the table is built.
pub(super) struct Backends<'s> {
    list: Vec<Backend>,
    drafts: Vec<Draft>,
    /// Service ports by namespace, Service and label; values index `slot_list`.
    slots: FastMap<(&'s str, &'s str, Label<'s>), u32>,
    slot_list: Vec<Slot>,
    /// (backend, Ingress place in `owned`) for every reference to a backend: the makings of
    /// [`Referrers`](sluice_model::Referrers), and of the `NoReadyEndpoints` warnings.
    refs: Vec<(BackendId, u32)>,
    /// Whether an endpoint-only update can redo this table.
    incremental: bool,
    /// Backends by their Service's hash.
    by_service: Vec<(u64, BackendId)>,
}

impl Default for Backends<'_> {
    fn default() -> Self {
        Self {
            list: Vec::new(),
            drafts: Vec::new(),
            slots: FastMap::default(),
            slot_list: Vec::new(),
            refs: Vec::new(),
            incremental: true,
            by_service: Vec::new(),
        }
    }
}

/// The backends once every Ingress is in.
pub(super) struct Finished {
    pub list: Vec<Arc<Backend>>,
    pub offsets: Vec<u32>,
    pub ingresses: Vec<u32>,
    pub by_service: Vec<(u64, BackendId)>,
    pub incremental: bool,
}

impl Backends<'_> {
    pub(super) fn reserve(&mut self, paths: usize) {
        self.slots.reserve(paths);
        self.slot_list.reserve(paths);
        self.refs.reserve(paths);
    }

    /// Backend `id`.
    pub(super) fn get(&self, id: BackendId) -> &Backend {
        &self.list[id as usize]
    }

    /// Attaches `canary` to backend `main`; `Err` with the canary already there.
    pub(super) fn attach_canary(
        &mut self,
        main: BackendId,
        canary: sluice_model::Canary,
    ) -> Result<(), BackendId> {
        let slot = &mut self.list[main as usize].canary;
        match slot {
            Some(existing) if existing.backend == canary.backend => Ok(()),
            Some(existing) => Err(existing.backend),
            None => {
                *slot = Some(Box::new(canary));
                Ok(())
            }
        }
    }

    /// Balancing decisions made, the lists put in their final form.
    pub(super) fn finish(mut self) -> Finished {
        for draft in &mut self.drafts {
            if let Some(a) = &mut draft.affinity {
                a.persistent = draft.mode.unwrap_or(false);
            }
        }
        // A canary with `affinity-canary-behavior: sticky` takes its main backend's affinity.
        let sticky: Vec<(BackendId, Box<Affinity>)> = self
            .list
            .iter()
            .enumerate()
            .filter_map(|(id, b)| {
                let c = b.canary.as_ref().filter(|c| c.sticky)?;
                Some((c.backend, self.drafts[id].affinity.clone()?))
            })
            .collect();
        for (canary, affinity) in sticky {
            self.drafts[canary as usize].affinity = Some(affinity);
        }
        for (backend, draft) in self.list.iter_mut().zip(std::mem::take(&mut self.drafts)) {
            backend.balance = match (draft.affinity, draft.hash, draft.algorithm) {
                (Some(a), _, _) => Balance::Sticky(a),
                (None, Some(h), _) => Balance::Hash(h),
                (None, None, Algorithm::Ewma) => Balance::Ewma,
                (None, None, Algorithm::RoundRobin) => Balance::RoundRobin,
            };
        }
        let (offsets, ingresses) =
            group_references(std::mem::take(&mut self.refs), self.list.len());
        let mut by_service = std::mem::take(&mut self.by_service);
        by_service.sort_unstable();
        let mut list: Vec<Arc<Backend>> = self.list.into_iter().map(Arc::new).collect();
        list.shrink_to_fit();
        Finished { list, offsets, ingresses, by_service, incremental: self.incremental }
    }
}

impl<'s> Builder<'s> {
    /// `--default-backend-service` names a Service without a port: its first port is used, as
    /// ingress-nginx does.
    pub(super) fn default_backend_target(
        &mut self,
        svc: &'s NamespacedName,
        global: &GlobalConfig,
    ) -> Target {
        let object = ObjectRef::new(Kind::Service, &svc.namespace, &svc.name);
        match self.first_port_backend(&svc.namespace, &svc.name, global, None) {
            Ok(id) => Target::Backend(id),
            Err(Unresolved::MissingService) => {
                self.diagnostics.push(Diagnostic::error(
                    object,
                    Reason::MissingService,
                    "--default-backend-service names a Service that does not exist; unmatched requests answer 503",
                ));
                Target::Respond { status: 503, reason: "default backend Service not found".into() }
            }
            Err(_) => {
                self.diagnostics.push(Diagnostic::error(
                    object,
                    Reason::MissingServicePort,
                    "--default-backend-service names a Service without ports; unmatched requests answer 503",
                ));
                Target::Respond {
                    status: 503,
                    reason: "default backend Service has no port".into(),
                }
            }
        }
    }

    /// The backend of a Service's first port (the default backends'), in clear HTTP/1.1.
    fn first_port_backend(
        &mut self,
        namespace: &'s str,
        name: &'s str,
        global: &GlobalConfig,
        cur: Option<&Current<'s>>,
    ) -> Result<BackendId, Unresolved> {
        let service = self.index.service(namespace, name).ok_or(Unresolved::MissingService)?;
        let port = service.ports.first().ok_or(Unresolved::NoPort)?;
        let endpoints = backends::ready_endpoints(self.index, namespace, name, port);
        let (key_label, label) = match port.name.as_deref().filter(|n| !n.is_empty()) {
            Some(port_name) => (Label::Name(port_name), port_name.to_string()),
            None => (Label::Number(port.port), port.port.to_string()),
        };
        let slot = self.slot((namespace, name, key_label));
        if let Some(id) =
            self.backends.slot_list[slot as usize].backend(UpstreamProtocol::Http1, &None)
        {
            return Ok(id);
        }
        Ok(self.new_backend(
            slot,
            (namespace, name),
            label,
            Some(endpoints),
            (UpstreamProtocol::Http1, None),
            Origin { cur, global },
        ))
    }

    /// The `default-backend` annotation's backend for the current Ingress: its Service's
    /// first port. A Service that does not exist is reported.
    pub(super) fn fallback(
        &mut self,
        cur: &Current<'s>,
        global: &GlobalConfig,
    ) -> Option<BackendId> {
        let name = cur.annotations.default_backend.as_deref()?;
        let index = self.index;
        // Borrowed from the snapshot, as slot keys are.
        let Some(service) = index.service(cur.namespace, name) else {
            self.diagnostics.push(Diagnostic::error(
                cur.object.clone(),
                Reason::MissingService,
                format!(
                    "default-backend: Service {}/{name} does not exist; the paths are served as without it",
                    cur.namespace
                ),
            ));
            return None;
        };
        match self.first_port_backend(cur.namespace, &service.name, global, Some(cur)) {
            Ok(id) => Some(id),
            Err(_) => {
                self.diagnostics.push(Diagnostic::error(
                    cur.object.clone(),
                    Reason::MissingServicePort,
                    format!(
                        "default-backend: Service {}/{name} has no port; the paths are served as without it",
                        cur.namespace
                    ),
                ));
                None
            }
        }
    }

    /// Where a backend of the current Ingress sends requests.
    pub(crate) fn target(
        &mut self,
        cur: &Current<'s>,
        backend: &'s IngressBackend,
        global: &GlobalConfig,
    ) -> Target {
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
        let protocol = cur.annotations.backend_protocol;
        match self.service_backend(cur, service, protocol, None, true, global) {
            Ok(id) => Target::Backend(id),
            Err(target) => target,
        }
    }

    /// The backend of `service` reached with `protocol` (and `tls`, else the current
    /// Ingress's `proxy-ssl-*`), made on first use. `reference`: the current Ingress routes
    /// to it (its `NoReadyEndpoints` warnings name the Ingress); a canary's backend is not
    /// such a reference. `Err` with what the path answers instead.
    pub(super) fn service_backend(
        &mut self,
        cur: &Current<'s>,
        service: &'s IngressServiceBackend,
        protocol: UpstreamProtocol,
        tls: Option<Option<Arc<UpstreamTls>>>,
        reference: bool,
        global: &GlobalConfig,
    ) -> Result<BackendId, Target> {
        let ns = cur.namespace;
        let (label, exact) = Label::of(service);
        let slot = self.slot((ns, &service.name, label));
        // Resolved once per Service port, not once per path; `fresh` is this reference's own
        // resolution when the port's cannot be used.
        let resolution = if exact {
            let index = self.index;
            let resolved =
                self.backends.slot_list[slot as usize].resolved.get_or_insert_with(|| {
                    backends::resolve(index, ns, service).map(|Resolved { port, endpoints }| {
                        SlotPort {
                            label: Some(port),
                            empty: endpoints.is_empty(),
                            endpoints: Some(endpoints),
                        }
                    })
                });
            match resolved {
                Ok(port) => Ok((None, port.empty)),
                Err(why) => Err(why.clone()),
            }
        } else {
            // Resolved by name, yet the same backend as the number: not worth a cache, nor
            // an incremental update.
            self.backends.incremental = false;
            backends::resolve(self.index, ns, service).map(|r| {
                let empty = r.endpoints.is_empty();
                (Some(r), empty)
            })
        };
        let (mut fresh, empty) = match resolution {
            Ok(resolved) => resolved,
            Err(why) => {
                let how = (protocol, reference);
                return self.unresolved_backend(cur, slot, service, how, why, global);
            }
        };
        let tls = match tls {
            Some(tls) => tls,
            None if protocol.tls() => {
                match self.upstream_tls(cur, &NamespacedName::new(ns, &service.name)) {
                    Ok(tls) => tls,
                    Err(why) => {
                        // No backend to hang the warning on: it is reported now.
                        self.backends.incremental = false;
                        if empty && reference {
                            let port = backends::port_label(service);
                            let warning = no_ready_endpoints(&cur.name, ns, &service.name, &port);
                            self.diagnostics.push(warning);
                        }
                        return Err(Target::Respond { status: 503, reason: why });
                    }
                }
            }
            None => None,
        };
        let id = match self.backends.slot_list[slot as usize].backend(protocol, &tls) {
            Some(id) => id,
            None => {
                let (port, endpoints) = match fresh.take() {
                    Some(r) => (r.port, Some(r.endpoints)),
                    None => {
                        let list = &self.backends.list;
                        let slot = &mut self.backends.slot_list[slot as usize];
                        let resolved = slot.resolved.as_mut().and_then(|r| r.as_mut().ok());
                        let port = resolved.expect("resolved above");
                        // The first backend takes the label; others copy it.
                        let label = port.label.take().or_else(|| {
                            let (.., first) = slot.first.as_ref()?;
                            Some(list[*first as usize].port.clone())
                        });
                        (label.expect("a backend or a label"), port.endpoints.take())
                    }
                };
                let origin = Origin { cur: Some(cur), global };
                self.new_backend(
                    slot,
                    (ns, &service.name),
                    port,
                    endpoints,
                    (protocol, tls),
                    origin,
                )
            }
        };
        if !reference {
            return Ok(id);
        }
        self.affinity_of(id, cur);
        let backend = &self.backends.list[id as usize];
        if backend.service_upstream {
            // Its endpoint is the cluster IP: no "no ready endpoint" to warn about.
        } else if exact && backend.endpoints.is_empty() == empty {
            if self.backends.refs.last() != Some(&(id, cur.place)) {
                self.backends.refs.push((id, cur.place));
            }
        } else {
            // This reference's endpoints are not the backend's: warn from its own.
            self.backends.incremental = false;
            if empty {
                let port = backend.port.clone();
                self.diagnostics.push(no_ready_endpoints(&cur.name, ns, &service.name, &port));
            }
        }
        Ok(id)
    }

    /// The current Ingress routes to backend `id`: with `affinity`, it makes the backend
    /// sticky and sets its cookie (the last one wins); the first to set `affinity-mode` sets
    /// the mode.
    fn affinity_of(&mut self, id: BackendId, cur: &Current<'s>) {
        let draft = &mut self.backends.drafts[id as usize];
        // As ingress-nginx's `getBackendServers`: the first Ingress that sets `affinity-mode`
        // decides the mode, with `affinity` or not; the cookie is the last one's.
        if draft.mode.is_none() {
            draft.mode = cur.annotations.affinity_mode;
        }
        if let Some(asked) = &cur.annotations.affinity {
            draft.affinity = Some(Box::new(asked.clone()));
        }
    }

    /// A Service port that cannot be served, reported. Its paths answer 503, but those of an
    /// Ingress with `default-backend` when the Service or its port is missing: ingress-nginx
    /// makes an upstream without endpoints of it, which the annotation's Service serves in
    /// place of (with `X-Service-Name` and `X-Service-Port` of the missing one). That backend
    /// is made here, without endpoints.
    fn unresolved_backend(
        &mut self,
        cur: &Current<'s>,
        slot: u32,
        service: &'s IngressServiceBackend,
        (protocol, reference): (UpstreamProtocol, bool),
        why: Unresolved,
        global: &GlobalConfig,
    ) -> Result<BackendId, Target> {
        // Not for a canary's backend (no `reference`), nor when the fallback is missing too.
        let empty = matches!(why, Unresolved::MissingService | Unresolved::MissingPort(_));
        let fallback =
            cur.annotations.default_backend.as_deref().filter(|name| {
                empty && reference && self.index.service(cur.namespace, name).is_some()
            });
        let target = self.unresolved(cur, service, why, fallback);
        if fallback.is_none() {
            return Err(target);
        }
        // Nothing tells an endpoint update about a Service that does not exist.
        self.backends.incremental = false;
        if let Some(id) = self.backends.slot_list[slot as usize].backend(protocol, &None) {
            return Ok(id);
        }
        let port = backends::port_label(service);
        let origin = Origin { cur: Some(cur), global };
        let ns = cur.namespace;
        Ok(self.new_backend(
            slot,
            (ns, &service.name),
            port,
            Some(Vec::new()),
            (protocol, None),
            origin,
        ))
    }

    /// Reports a service backend that cannot be served; its paths answer 503, or are served
    /// by `fallback`.
    fn unresolved(
        &mut self,
        cur: &Current<'s>,
        service: &IngressServiceBackend,
        why: Unresolved,
        fallback: Option<&str>,
    ) -> Target {
        let ns = cur.namespace;
        let port = backends::port_label(service);
        let answer = match fallback {
            Some(f) => format!("default-backend {ns}/{f} serves its paths"),
            None => "its paths answer 503".to_string(),
        };
        let (reason, message) = match why {
            Unresolved::MissingService => (
                Reason::MissingService,
                format!("Service {ns}/{} does not exist; {answer}", service.name),
            ),
            Unresolved::MissingPort(p) => (
                Reason::MissingServicePort,
                format!("Service {ns}/{} has no port {p}; {answer}", service.name),
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
        let next = self.backends.slot_list.len() as u32;
        match self.backends.slots.entry(key) {
            Entry::Occupied(o) => *o.get(),
            Entry::Vacant(v) => {
                v.insert(next);
                self.backends.slot_list.push(Slot::default());
                next
            }
        }
    }

    /// A new backend of a Service port reached with `protocol` and `tls`, with `endpoints`
    /// (else those of the port's first backend), balanced as `origin` (the Ingress creating
    /// it, over the global settings) says.
    fn new_backend(
        &mut self,
        slot_idx: u32,
        (namespace, service): (&str, &str),
        port: String,
        endpoints: Option<Vec<Endpoint>>,
        (protocol, tls): (UpstreamProtocol, Option<Arc<UpstreamTls>>),
        origin: Origin<'_, 's>,
    ) -> BackendId {
        let backends = &mut self.backends;
        let slot = &backends.slot_list[slot_idx as usize];
        let mut endpoints = endpoints.unwrap_or_else(|| match &slot.first {
            Some((.., first)) => backends.list[*first as usize].endpoints.clone(),
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
        let (balancing, service_upstream) = match origin.cur {
            Some(cur) => (&cur.annotations.balance, cur.annotations.service_upstream),
            None => (&origin.global.balancing, origin.global.service_upstream),
        };
        let global = &origin.global.balancing;
        let draft = Draft {
            algorithm: balancing.algorithm.or(global.algorithm).unwrap_or_default(),
            hash: balancing.hash.as_ref().or(global.hash.as_ref()).map(|h| Box::new(h.clone())),
            affinity: None,
            mode: None,
        };
        let mut cluster_ip = false;
        if service_upstream {
            match self.index.service(namespace, service).and_then(|s| cluster_endpoint(s, &port)) {
                Some(endpoint) => {
                    endpoints = vec![endpoint];
                    cluster_ip = true;
                }
                None => {
                    if let Some(cur) = origin.cur {
                        self.diagnostics.push(Diagnostic::warning(
                            cur.object.clone(),
                            Reason::InvalidAnnotation,
                            format!(
                                "service-upstream: Service {namespace}/{service} has no cluster IP; its endpoints are used"
                            ),
                        ));
                    }
                }
            }
        }
        let backends = &mut self.backends;
        let mut backend =
            Backend::new(name, NamespacedName::new(namespace, service), port, endpoints);
        backend.protocol = protocol;
        backend.tls = tls.clone();
        backend.service_upstream = cluster_ip;
        backend.outlier = origin.global.outlier.policy();
        let id = backends.list.len() as BackendId;
        backends.list.push(backend);
        backends.drafts.push(draft);
        backends.by_service.push((service_hash(namespace, service), id));
        let slot = &mut backends.slot_list[slot_idx as usize];
        match slot.first {
            None => slot.first = Some((protocol, tls, id)),
            Some(_) => slot.others.push((protocol, tls, id)),
        }
        id
    }
}

/// Who makes a backend: an Ingress (its annotations decide how the backend is balanced), or
/// the controller's flags (the ConfigMap's defaults do).
#[derive(Clone, Copy)]
struct Origin<'a, 's> {
    cur: Option<&'a Current<'s>>,
    global: &'a GlobalConfig,
}

/// `<clusterIP>:<port>` of a Service port named `port` (a number or a port name), for
/// `service-upstream`; `None` for a headless Service.
fn cluster_endpoint(service: &sluice_model::LeanService, port: &str) -> Option<Endpoint> {
    let ip: std::net::IpAddr = service.cluster_ip.as_deref()?.parse().ok()?;
    let p = service
        .ports
        .iter()
        .find(|p| p.name.as_deref() == Some(port) || p.port.to_string() == port)?;
    let number = u16::try_from(p.port).ok()?;
    Some(Endpoint { addr: std::net::SocketAddr::new(ip, number) })
}
