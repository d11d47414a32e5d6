//! The translation itself: owned Ingresses, oldest first, merged host by host.

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress, IngressBackend};
use sluice_model::{
    Backend, BackendId, Diagnostic, HostMap, HostRoutes, Kind, NamespacedName, ObjectRef,
    PathMatch, Policy, Reason, Route, RouteId, RoutingTable, Settings, Snapshot, Target, Tls,
    UpstreamProtocol, UpstreamTls,
};

use crate::annotations::{self, IngressAnnotations};
use crate::backends::{self, Unresolved};
use crate::class;
use crate::config::{self, GlobalConfig};
use crate::index::Index;
use crate::regex_mode::RegexMode;

/// Builds the routing table for `snapshot` under `settings`.
///
/// Never fails: whatever cannot be applied is left out (or answers 503, where leaving it out
/// would route its requests elsewhere) and reported in [`RoutingTable::diagnostics`], sorted
/// and without duplicates. The table's `generation` is 0; the publisher sets it.
pub fn translate(snapshot: &Snapshot, settings: &Settings) -> RoutingTable {
    let index = Index::new(snapshot);
    let mut b = Builder::new(&index, settings, snapshot.observed_at);
    let global = b.global_config();
    b.global_default(&global.policy);
    b.start_tls(&global);

    let classes: Vec<_> = snapshot.ingress_classes.iter().map(|c| &**c).collect();
    let mut ingresses: Vec<&Ingress> = snapshot
        .ingresses
        .iter()
        .map(|i| &**i)
        .filter(|i| class::is_ours(i, &classes, settings))
        .collect();
    ingresses.sort_by(|a, b| oldest_first(a, b));
    let mut owned: Vec<NamespacedName> = ingresses.iter().map(|i| name_of(i)).collect();
    owned.sort();
    b.regex_mode = RegexMode::new(&ingresses, &settings.annotations_prefix);
    for ingress in ingresses {
        b.add_ingress(ingress, &global);
    }
    b.finish(owned, global)
}

fn name_of(i: &Ingress) -> NamespacedName {
    NamespacedName::new(
        i.metadata.namespace.as_deref().unwrap_or_default(),
        i.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// ingress-nginx's order: creationTimestamp ascending (unset is oldest, like Go's zero time);
/// on a tie, `namespace/name` descending.
fn oldest_first(a: &Ingress, b: &Ingress) -> Ordering {
    let ts = |i: &Ingress| i.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let key = |i: &Ingress| {
        format!(
            "{}/{}",
            i.metadata.namespace.as_deref().unwrap_or_default(),
            i.metadata.name.as_deref().unwrap_or_default()
        )
    };
    ts(a).cmp(&ts(b)).then_with(|| key(b).cmp(&key(a)))
}

/// A backend's identity: the Service port, and how it is reached.
type BackendKey = (String, String, String, UpstreamProtocol, Option<Arc<UpstreamTls>>);

pub(crate) struct Builder<'s> {
    pub(crate) index: &'s Index<'s>,
    pub(crate) settings: &'s Settings,
    /// When the snapshot was taken (certificate expiry).
    pub(crate) observed_at: Option<i64>,
    routes: Vec<Route>,
    backends: Vec<Backend>,
    backend_ids: HashMap<BackendKey, BackendId>,
    hosts: Vec<HostRoutes>,
    host_ids: HashMap<String, u32>,
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
pub(crate) struct Current {
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
            backend_ids: HashMap::new(),
            hosts: Vec::new(),
            host_ids: HashMap::new(),
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
        let target = match self.settings.default_backend_service.clone() {
            None => Target::Respond { status: 404, reason: "no rule matches".into() },
            Some(svc) => self.default_backend_target(&svc),
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
    fn default_backend_target(&mut self, svc: &NamespacedName) -> Target {
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
        let first_port =
            service.spec.as_ref().and_then(|s| s.ports.as_ref()).and_then(|p| p.first());
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
        let label = port.name.clone().filter(|n| !n.is_empty()).unwrap_or(port.port.to_string());
        Target::Backend(self.backend_id(
            svc.clone(),
            label,
            endpoints,
            UpstreamProtocol::Http1,
            None,
        ))
    }

    fn add_ingress(&mut self, ingress: &Ingress, global: &GlobalConfig) {
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
        let cur = Current { name, object, annotations };
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

    fn add_path(&mut self, cur: &Current, host_idx: u32, host: &str, path: &HTTPIngressPath) {
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
    pub(crate) fn target(&mut self, cur: &Current, backend: &IngressBackend) -> Target {
        let ns = cur.name.namespace.as_str();
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
        match backends::resolve(self.index, ns, service) {
            Ok(resolved) => {
                if resolved.endpoints.is_empty() {
                    self.diagnostics.push(Diagnostic::warning(
                        cur.object.clone(),
                        Reason::NoReadyEndpoints,
                        format!(
                            "Service {ns}/{} port {} has no ready endpoint; its paths answer 503 until one is ready",
                            service.name, resolved.port
                        ),
                    ));
                }
                let svc = NamespacedName::new(ns, &service.name);
                let protocol = cur.annotations.backend_protocol;
                let tls = match self.upstream_tls(cur, &svc) {
                    Ok(tls) => tls,
                    Err(why) => return Target::Respond { status: 503, reason: why },
                };
                Target::Backend(self.backend_id(
                    svc,
                    resolved.port,
                    resolved.endpoints,
                    protocol,
                    tls,
                ))
            }
            Err(why) => {
                let port = backends::port_label(service);
                let (reason, message) = match why {
                    Unresolved::MissingService => (
                        Reason::MissingService,
                        format!(
                            "Service {ns}/{} does not exist; its paths answer 503",
                            service.name
                        ),
                    ),
                    Unresolved::MissingPort(p) => (
                        Reason::MissingServicePort,
                        format!(
                            "Service {ns}/{} has no port {p}; its paths answer 503",
                            service.name
                        ),
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
        }
    }

    fn backend_id(
        &mut self,
        service: NamespacedName,
        port: String,
        endpoints: Vec<sluice_model::Endpoint>,
        protocol: UpstreamProtocol,
        tls: Option<Arc<UpstreamTls>>,
    ) -> BackendId {
        let key =
            (service.namespace.clone(), service.name.clone(), port.clone(), protocol, tls.clone());
        let next = self.backends.len() as BackendId;
        *self.backend_ids.entry(key).or_insert_with(|| {
            // Backends of one Service port reached differently need their own names.
            let name = match protocol {
                UpstreamProtocol::Http1 => {
                    format!("{}-{}-{}", service.namespace, service.name, port)
                }
                _ => format!("{}-{}-{}-{protocol:?}", service.namespace, service.name, port)
                    .to_lowercase(),
            };
            let mut backend = Backend::new(name, service, port, endpoints);
            backend.protocol = protocol;
            backend.tls = tls;
            self.backends.push(backend);
            next
        })
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
        if let Some(&id) = self.host_ids.get(host) {
            return (id, false);
        }
        let id = self.hosts.len() as u32;
        self.hosts.push(HostRoutes {
            host: host.to_string(),
            exact: HashMap::new(),
            prefix: HashMap::new(),
            regex: None,
            default_route: self.global_default,
        });
        self.host_ids.insert(host.to_string(), id);
        (id, true)
    }

    fn finish(mut self, owned: Vec<NamespacedName>, global: GlobalConfig) -> RoutingTable {
        self.finish_tls(&global);
        std::mem::take(&mut self.regex_mode).finish(&mut self.hosts);
        let mut host_index = HostMap::default();
        for (host, &id) in &self.host_ids {
            if !host.is_empty() {
                host_index.insert(host, id);
            }
        }
        self.diagnostics.sort();
        self.diagnostics.dedup();
        RoutingTable {
            generation: 0,
            host_index,
            catch_all: self.host_ids[""],
            hosts: self.hosts,
            routes: self.routes,
            backends: self.backends,
            diagnostics: self.diagnostics,
            owned,
            tls: self.tls,
            https: global.https,
        }
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

/// Inserts `key` unless present; returns the value already there.
fn first_writer(map: &mut HashMap<Box<str>, RouteId>, key: &str, id: RouteId) -> Option<RouteId> {
    match map.entry(key.into()) {
        Entry::Vacant(v) => {
            v.insert(id);
            None
        }
        Entry::Occupied(o) => Some(*o.get()),
    }
}

impl Current {
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
fn validate_host(host: &str) -> Result<String, String> {
    if host.is_empty() {
        return Ok(String::new());
    }
    let lower = host.to_ascii_lowercase();
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
