//! Each Ingress's rules and paths made into routes, which share the Ingress's policy; canary
//! Ingresses set aside, then attached to the backends of the main Ingresses they match.

use std::sync::Arc;

use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress};
use sluice_model::{
    BackendId, Canary, Diagnostic, Kind, ObjectRef, PathMatch, Reason, Route, RouteId, Target,
};

use super::hosts::first_writer;
use super::{Builder, Current, name_of, validate_host};
use crate::config::GlobalConfig;
use crate::regex_mode::RegexMode;

impl<'s> Builder<'s> {
    pub(super) fn add_ingress(&mut self, ingress: &'s Ingress, place: u32, global: &GlobalConfig) {
        let name = Arc::new(name_of(ingress));
        let object = ObjectRef::new(Kind::Ingress, &name.namespace, &name.name);
        let annotations = self.annotations(ingress, &object, global);
        if annotations.touches_backends(global)
            || annotations.canary.is_some()
            || !annotations.aliases.is_empty()
            || annotations.from_to_www
        {
            // What it decides reaches other Ingresses' hosts or backends.
            self.alone = false;
            // Whose backends it shapes: its own when it sets their balancing, its
            // default-backend's. (A canary's attachment shows in the main backend, which an
            // update compares.)
            let ns = ingress.metadata.namespace.as_deref().unwrap_or_default();
            let own = annotations.shapes_backends(global);
            let named = crate::index::named_services(ingress).filter(|_| own);
            let named = named.chain(annotations.default_backend.iter().map(|n| (ns, n.as_str())));
            self.shaping.extend(named.map(|(ns, name)| crate::index::service_hash(ns, name)));
        }
        let namespace = ingress.metadata.namespace.as_deref().unwrap_or_default();
        // Most Ingresses change nothing of the ConfigMap's policy: they share its.
        let same = Arc::ptr_eq(&annotations.policy, &self.global_policy)
            || *annotations.policy == *self.global_policy;
        let policy = if same { self.global_policy.clone() } else { annotations.policy.clone() };
        let cur = Current { namespace, place, name, object, annotations, policy };
        if cur.annotations.canary.is_some() {
            // A canary never owns a host or path: it is attached to the main Ingresses' backends
            // once they are all in.
            self.canaries.push((ingress, cur));
            return;
        }
        let spec = ingress.spec.as_ref();
        let tls_sections = spec.and_then(|s| s.tls.as_deref()).unwrap_or_default();
        let rules = spec.and_then(|s| s.rules.as_deref()).unwrap_or_default();
        let default_backend = spec.and_then(|s| s.default_backend.as_ref());
        let fallback = self.fallback(&cur, global);

        // The Ingress's own default route, for the hosts it is first to define (or, with no
        // rules, for the catch-all host).
        let own_default = default_backend.map(|backend| {
            let target = self.target(&cur, backend, global);
            let mut route = self.route(&cur, Arc::from(""), "", PathMatch::Default, target);
            route.fallback = fallback;
            self.push_route(route)
        });
        if rules.is_empty() {
            match (own_default, &self.catch_all_taken) {
                (Some(route), None) => {
                    let catch_all = self.host_id("");
                    self.hosts[catch_all as usize].default_route = route;
                    self.catch_all_taken = Some((*cur.name).clone());
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
            self.note_host(host_idx, created, &cur);
            let paths = rule.http.as_ref().map(|h| h.paths.as_slice()).unwrap_or_default();
            self.add_tls_for_host(&cur, &host, tls_sections);
            self.set_host_policy(&cur, &host);
            if cur.annotations.ssl_passthrough {
                // As ingress-nginx: the backend of the host's `/` location, the rule's `/` path
                // (whatever its pathType), else the Ingress's defaultBackend.
                let root =
                    paths.iter().find(|p| matches!(p.path.as_deref(), None | Some("" | "/")));
                let backend = root.map(|p| &p.backend).or(default_backend);
                self.add_passthrough(&cur, &host, backend, global);
            }
            for path in paths {
                self.add_path(&cur, host_idx, &host, path, fallback, global);
            }
        }
    }

    /// A route of the current Ingress, with its policy.
    fn route(
        &self,
        cur: &Current<'s>,
        host: Arc<str>,
        path: &str,
        path_match: PathMatch,
        target: Target,
    ) -> Route {
        let target = match &cur.annotations.fail_closed {
            Some(why) => Target::Respond { status: 503, reason: why.clone() },
            None => target,
        };
        let mut policy = cur.policy.clone();
        let auth =
            policy.access.as_ref().is_some_and(|a| a.basic.is_some() || a.external.is_some());
        if auth && self.no_auth_locations.iter().any(|p| path.starts_with(p.as_str())) {
            // ConfigMap `no-auth-locations` (ACME challenges by default): no authentication
            // on this path, as ingress-nginx renders none in its location.
            let p = Arc::make_mut(&mut policy);
            if let Some(access) = p.access.as_mut() {
                let access = Arc::make_mut(access);
                access.basic = None;
                access.external = None;
                if access.is_open() {
                    p.access = None;
                }
            }
        }
        Route::new(Some(cur.name.clone()), host, path.to_string(), path_match, target, policy)
    }

    /// A path's pathType and path as served, or `None` (reported) when the rule is ignored.
    fn path_of(
        &mut self,
        cur: &Current<'s>,
        path: &'s HTTPIngressPath,
    ) -> Option<(PathMatch, &'s str)> {
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
                return None;
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
            return None;
        }
        Some((path_match, raw))
    }

    fn add_path(
        &mut self,
        cur: &Current<'s>,
        host_idx: u32,
        host: &str,
        path: &'s HTTPIngressPath,
        fallback: Option<BackendId>,
        global: &GlobalConfig,
    ) {
        let Some((path_match, raw)) = self.path_of(cur, path) else { return };
        let Ok(regex) = self.regex_mode.location(cur, host, raw, path_match, &mut self.diagnostics)
        else {
            return;
        };
        let target = self.target(cur, &path.backend, global);
        let host_name = self.hosts[host_idx as usize].host.clone();
        let mut route = self.route(cur, host_name, raw, path_match, target);
        route.fallback = fallback;
        route.rewrite = RegexMode::rewrite(cur, raw, &mut self.diagnostics);
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

    /// The route a main Ingress serves for `host` and `path` (same pathType), if any.
    /// A host without a `/` rule: its default route stands for NGINX's `/` (Prefix) location
    /// when an Ingress's `spec.defaultBackend` serves it (ingress-nginx never attaches a canary
    /// to the global default backend).
    fn main_route(&self, host_idx: u32, path_match: PathMatch, raw: &str) -> Option<RouteId> {
        let draft = &self.hosts[host_idx as usize];
        let id = match path_match {
            PathMatch::Exact => draft.exact.get(raw).copied(),
            _ => self
                .regex_mode
                .route_of(host_idx, raw)
                .or_else(|| draft.prefix.get(raw.trim_end_matches('/')).copied()),
        };
        let Some(id) = id else {
            let default = &self.routes[draft.default_route as usize];
            let own = default.ingress.is_some() && default.path_match == PathMatch::Default;
            return (raw == "/" && path_match == PathMatch::Prefix && own)
                .then_some(draft.default_route);
        };
        let route = &self.routes[id as usize];
        (route.path == raw && route.path_match == path_match).then_some(id)
    }

    /// Attaches each canary Ingress's backends to the main backends of the rules it matches
    /// (ingress-nginx's `mergeAlternativeBackends`), oldest canary first.
    pub(super) fn attach_canaries(&mut self, global: &GlobalConfig) {
        for (ingress, cur) in std::mem::take(&mut self.canaries) {
            let rules = ingress.spec.as_ref().and_then(|s| s.rules.as_deref()).unwrap_or_default();
            let Some(canary) = cur.annotations.canary.clone() else { continue };
            let mut paths = 0;
            for rule in rules {
                let Ok(host) = validate_host(rule.host.as_deref().unwrap_or_default()) else {
                    continue;
                };
                let host_idx = if host.is_empty() {
                    self.catch_all
                } else {
                    self.host_ids.get_written(&host).copied()
                };
                for path in rule.http.iter().flat_map(|h| &h.paths) {
                    paths += 1;
                    let Some(service) = path.backend.service.as_ref() else { continue };
                    let Some((path_match, raw)) = self.path_of(&cur, path) else { continue };
                    let Some(main) = host_idx.and_then(|h| self.main_route(h, path_match, raw))
                    else {
                        self.diagnostics.push(unmatched_canary_rule(
                            &cur.object,
                            &host,
                            raw,
                            path_match,
                        ));
                        continue;
                    };
                    let Target::Backend(primary) = self.routes[main as usize].target else {
                        continue;
                    };
                    let (protocol, tls) = {
                        let b = self.backends.get(primary);
                        (b.protocol, b.tls.clone())
                    };
                    let Ok(alternative) =
                        self.service_backend(&cur, service, protocol, Some(tls), false, global)
                    else {
                        continue;
                    };
                    if alternative == primary {
                        self.diagnostics.push(canary_of_itself(&cur.object, &host, raw));
                        continue;
                    }
                    let attached = Canary {
                        backend: alternative,
                        header: canary.header.clone(),
                        header_value: canary.header_value.clone(),
                        header_pattern: canary.header_pattern.clone(),
                        cookie: canary.cookie.clone(),
                        weight: canary.weight,
                        weight_total: canary.weight_total,
                        sticky: canary.sticky,
                    };
                    if let Err(older) = self.backends.attach_canary(primary, attached) {
                        let older = &self.backends.get(older).name;
                        let main = &self.backends.get(primary).name;
                        self.diagnostics.push(Diagnostic::warning(
                            cur.object.clone(),
                            Reason::PathCollision,
                            format!(
                                "canary for {host}{raw}: backend {main} already has canary \
                                 {older} from an older Ingress; only one canary diverts \
                                 traffic, so this one is ignored"
                            ),
                        ));
                    }
                }
            }
            if paths == 0 {
                self.diagnostics.push(Diagnostic::warning(
                    cur.object.clone(),
                    Reason::UnmatchedCanary,
                    "a canary Ingress needs rules with paths; this one diverts nothing",
                ));
            }
        }
    }
}

/// The warning for a canary rule that no main Ingress serves.
pub(crate) fn unmatched_canary_rule(
    object: &ObjectRef,
    host: &str,
    raw: &str,
    path_match: PathMatch,
) -> Diagnostic {
    let shown = if host.is_empty() { "(any host)" } else { host };
    Diagnostic::warning(
        object.clone(),
        Reason::UnmatchedCanary,
        format!("canary rule {shown}{raw} ({}): {UNMATCHED_CANARY_RULE}", path_match.as_str()),
    )
}

/// How [`unmatched_canary_rule`]'s message ends.
const UNMATCHED_CANARY_RULE: &str =
    "no other Ingress serves this host, path and pathType; this rule diverts nothing";

/// Whether `d` is an [`unmatched_canary_rule`] warning.
pub(crate) fn is_unmatched_canary_rule(d: &Diagnostic) -> bool {
    d.reason == Reason::UnmatchedCanary && d.message.ends_with(UNMATCHED_CANARY_RULE)
}

/// The error for a canary rule whose Service is the main Ingress's own.
pub(crate) fn canary_of_itself(object: &ObjectRef, host: &str, raw: &str) -> Diagnostic {
    Diagnostic::error(
        object.clone(),
        Reason::InvalidBackend,
        format!(
            "canary for {host}{raw}: its Service is the main Ingress's own; nothing is diverted"
        ),
    )
}
