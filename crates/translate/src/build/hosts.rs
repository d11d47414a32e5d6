//! Hosts while the table is built: their paths, their default routes, and what applies to a
//! host as a whole whichever Ingress defines its paths (ingress-nginx's server-level
//! settings): the HTTPS redirect of unmatched paths, `app-root`, `server-alias` and
//! `from-to-www-redirect`. For each, the oldest Ingress of the host that sets it decides.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use sluice_model::{
    Diagnostic, HostRoutes, HttpsRedirect, ObjectRef, PathMatch, Policy, Reason, Route, RouteId,
    Target,
};

use super::{Builder, Current};
use crate::annotations::redirect::www_pair;
use crate::config::GlobalConfig;
use crate::tls::covers;

/// A host's paths while the table is built: maps, so that the first Ingress to claim a path
/// keeps it; [`HostDraft::freeze`] lays them out for lookup.
#[derive(Clone)]
pub(crate) struct HostDraft {
    /// The host as written, shared with its routes.
    pub(crate) host: Arc<str>,
    pub(crate) exact: sluice_model::FastMap<Box<str>, RouteId>,
    pub(crate) prefix: sluice_model::FastMap<Box<str>, RouteId>,
    pub(crate) regex: Option<Box<sluice_model::RegexPaths>>,
    pub(crate) default_route: RouteId,
}

impl HostDraft {
    pub(super) fn freeze(self) -> HostRoutes {
        let exact = self.exact.iter().map(|(p, &id)| (&**p, id));
        let prefix = self.prefix.iter().map(|(p, &id)| (&**p, id));
        HostRoutes {
            paths: sluice_model::PathTable::new(&self.host, exact, prefix),
            regex: self.regex,
            default_route: self.default_route,
        }
    }
}

/// Inserts `key` unless present; returns the value already there.
pub(super) fn first_writer(
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

/// What the Ingresses of one named host decided of it as a whole.
#[derive(Default)]
pub(super) struct HostExtras {
    /// The HTTPS redirect settings of the Ingress that created the host: its unmatched paths
    /// redirect as that Ingress says (ingress-nginx's default location of a server).
    https: Option<HttpsRedirect>,
    /// `app-root`.
    app_root: Option<Arc<str>>,
    /// `server-alias`, and the Ingress that set it.
    aliases: Option<(Vec<String>, ObjectRef)>,
    /// `from-to-www-redirect`, and an Ingress that set it.
    www: Option<ObjectRef>,
    /// `server-snippet`, read (the oldest Ingress's that has one, as ingress-nginx).
    server_snippet: Option<Arc<crate::annotations::snippet::Snippet>>,
}

impl<'s> Builder<'s> {
    /// The route for unmatched requests: `--default-backend-service`, else a built-in 404. It
    /// is also the default of the catch-all host until a rule-less Ingress claims that.
    pub(super) fn global_default(&mut self, global: &GlobalConfig) {
        let settings = self.settings;
        let target = match &settings.default_backend_service {
            None => Target::Respond { status: 404, reason: "no rule matches".into() },
            Some(svc) => self.default_backend_target(svc, global),
        };
        let policy = global.policy.clone();
        self.global_policy = policy.clone();
        // The built-in default (no Ingress) asks no auth service: ingress-nginx's global
        // authentication belongs to the locations of Ingresses.
        let mut policy = policy;
        if let Some(access) = policy.access.as_ref().filter(|a| a.external.is_some()) {
            let mut access = (**access).clone();
            access.external = None;
            let open = access.is_open();
            Arc::make_mut(&mut policy).access = (!open).then(|| Arc::new(access));
        }
        self.no_auth_locations.clone_from(&global.no_auth_locations);
        let route =
            Route::new(None, Arc::from(""), String::new(), PathMatch::Default, target, policy);
        self.global_default = self.push_route(route);
        self.host_id("");
    }

    pub(super) fn host_id(&mut self, host: &str) -> u32 {
        self.host_id_created(host).0
    }

    /// The host's index, and whether this call created it.
    pub(super) fn host_id_created(&mut self, host: &str) -> (u32, bool) {
        let known =
            if host.is_empty() { self.catch_all } else { self.host_ids.get_written(host).copied() };
        if let Some(id) = known {
            return (id, false);
        }
        let id = self.hosts.len() as u32;
        self.hosts.push(HostDraft {
            host: host.into(),
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

    /// Notes what the current Ingress decides of a named host it has a rule for: first
    /// writer wins, Ingresses coming oldest first.
    pub(super) fn note_host(&mut self, host_idx: u32, created: bool, cur: &Current<'s>) {
        if self.hosts[host_idx as usize].host.is_empty() {
            return;
        }
        let a = &cur.annotations;
        let extras = self.host_extras.entry(host_idx).or_default();
        if created {
            extras.https = Some(a.policy.https);
        }
        if extras.app_root.is_none()
            && let Some(root) = &a.app_root
        {
            extras.app_root = Some(root.as_str().into());
        }
        if extras.aliases.is_none() && !a.aliases.is_empty() {
            extras.aliases = Some((a.aliases.clone(), cur.object.clone()));
        }
        if extras.server_snippet.is_none() {
            extras.server_snippet.clone_from(&a.server_snippet);
        }
        if extras.www.is_none() && a.from_to_www {
            extras.www = Some(cur.object.clone());
        }
    }

    /// The host's own default route, copied from the shared one (the built-in 404, an
    /// Ingress's defaultBackend) the first time the host needs one of its own.
    fn own_default(&mut self, host_idx: u32) -> &mut Route {
        let host = &self.hosts[host_idx as usize];
        let id = host.default_route;
        if self.routes[id as usize].host != host.host || host.host.is_empty() {
            let mut route = self.routes[id as usize].clone();
            route.host = host.host.clone();
            let id = self.push_route(route);
            self.hosts[host_idx as usize].default_route = id;
        }
        let id = self.hosts[host_idx as usize].default_route;
        &mut self.routes[id as usize]
    }

    /// Gives each named host whose creating Ingress redirects it to HTTPS a default route of
    /// its own that redirects too: default routes are shared (the built-in 404, a
    /// defaultBackend), and ingress-nginx redirects a TLS host's unmatched paths.
    pub(crate) fn redirect_host_defaults(&mut self, tls_hosts: &std::collections::HashSet<String>) {
        let mut hosts: Vec<(u32, HttpsRedirect)> =
            self.host_extras.iter().filter_map(|(&i, e)| Some((i, e.https?))).collect();
        hosts.sort_unstable_by_key(|&(i, _)| i);
        for (idx, p) in hosts {
            let host = &self.hosts[idx as usize];
            if !(p.force_ssl_redirect || (p.ssl_redirect && tls_hosts.contains(&*host.host))) {
                continue;
            }
            let route = self.own_default(idx);
            route.redirect_to_https = true;
            let mut policy = (*route.policy).clone();
            policy.https = p;
            route.policy = Arc::new(policy);
        }
    }

    /// Gives every host in `failed` a default route answering 503 (its paths are handled by
    /// the caller).
    pub(crate) fn fail_host_defaults(&mut self, failed: &HashMap<String, String>) {
        for idx in 0..self.hosts.len() as u32 {
            if let Some(why) = failed.get(&*self.hosts[idx as usize].host) {
                let route = self.own_default(idx);
                route.ingress = None;
                route.path = String::new();
                route.target = Target::Respond { status: 503, reason: why.clone() };
                route.policy = Arc::new(Policy::default());
                route.fallback = None;
            }
        }
    }

    /// `app-root`: every route of such a host (its own default route included) redirects
    /// `/` there.
    pub(super) fn finish_app_roots(&mut self) {
        let mut roots: HashMap<Arc<str>, Arc<str>> = HashMap::new();
        let mut hosts: Vec<u32> = Vec::new();
        for (&idx, extras) in &self.host_extras {
            if let Some(root) = &extras.app_root {
                roots.insert(self.hosts[idx as usize].host.clone(), root.clone());
                hosts.push(idx);
            }
        }
        if roots.is_empty() {
            return;
        }
        for idx in hosts {
            self.own_default(idx);
        }
        for route in &mut self.routes {
            if let Some(root) = roots.get(&route.host) {
                route.app_root = Some(root.clone());
            }
        }
    }

    /// `server-snippet`: every route of such a host (its own default route included) runs
    /// the snippet's rules and steps before its own, as NGINX runs a server block's before
    /// its locations'. Routes sharing a policy keep sharing the new one.
    pub(super) fn finish_server_snippets(&mut self, relative: bool) {
        type Snippet = crate::annotations::snippet::Snippet;
        let mut by_host: HashMap<Arc<str>, Arc<Snippet>> = HashMap::new();
        let mut hosts: Vec<u32> = Vec::new();
        for (&idx, extras) in &self.host_extras {
            if let Some(snippet) = &extras.server_snippet {
                by_host.insert(self.hosts[idx as usize].host.clone(), snippet.clone());
                hosts.push(idx);
            }
        }
        if by_host.is_empty() {
            return;
        }
        hosts.sort_unstable();
        for idx in hosts {
            self.own_default(idx);
        }
        let mut done: HashMap<(*const Policy, *const Snippet), Arc<Policy>> = HashMap::new();
        for route in &mut self.routes {
            let Some(snippet) = by_host.get(&route.host) else { continue };
            let key = (Arc::as_ptr(&route.policy), Arc::as_ptr(snippet));
            let policy = done.entry(key).or_insert_with(|| {
                let mut p = (*route.policy).clone();
                snippet.apply_server(&mut p, relative);
                Arc::new(p)
            });
            route.policy = policy.clone();
        }
    }

    /// `server-alias`: each alias becomes a host with the same paths and default route as its
    /// host, the same handshake policy, and the host's certificate when that covers it. An
    /// alias that is a host already, another host's alias, or the other name of a
    /// `from-to-www-redirect` host, is reported and left out.
    pub(super) fn finish_aliases(&mut self) {
        let mut with_aliases: Vec<(u32, Vec<String>, ObjectRef)> = self
            .host_extras
            .iter_mut()
            .filter_map(|(&i, e)| e.aliases.take().map(|(a, o)| (i, a, o)))
            .collect();
        with_aliases.sort_unstable_by_key(|(i, ..)| *i);
        // The names `finish_www_redirects` (run next) will redirect: ingress-nginx writes the
        // www redirect servers before the other servers, and NGINX keeps the first server of
        // a name ("conflicting server name ... ignored"), so the redirect wins over an alias,
        // even one of the same Ingress.
        let www_names: std::collections::HashSet<String> = self
            .host_extras
            .iter()
            .filter(|(_, e)| e.www.is_some())
            .filter_map(|(&i, _)| www_pair(&self.hosts[i as usize].host))
            .filter(|from| self.host_ids.get_written(from).is_none())
            .collect();
        for (idx, aliases, object) in with_aliases {
            let host = self.hosts[idx as usize].host.clone();
            for alias in aliases {
                if *alias == *host {
                    continue;
                }
                if www_names.contains(&alias) {
                    self.diagnostics.push(Diagnostic::warning(
                        object.clone(),
                        Reason::PathCollision,
                        format!(
                            "server-alias {alias} of {host} is redirected by a \
                             from-to-www-redirect, which wins; the alias is ignored"
                        ),
                    ));
                    continue;
                }
                if self.host_ids.get_written(&alias).is_some() {
                    self.shadowed.push(alias.clone());
                    self.diagnostics.push(Diagnostic::warning(
                        object.clone(),
                        Reason::PathCollision,
                        format!(
                            "server-alias {alias} of {host} is a host of its own (or another \
                             host's alias); the alias is ignored"
                        ),
                    ));
                    continue;
                }
                let mut draft = self.hosts[idx as usize].clone();
                draft.host = alias.as_str().into();
                let alias_idx = self.hosts.len() as u32;
                self.hosts.push(draft);
                self.host_ids.insert(&alias, alias_idx);
                if let Some(&cert) = self.tls.cert_by_name.get_written(&host)
                    && covers(&self.tls.certs[cert as usize].names, &alias)
                {
                    self.tls.cert_by_name.insert(&alias, cert);
                }
                if let Some(&policy) = self.tls.policy_by_name.get_written(&host) {
                    self.tls.policy_by_name.insert(&alias, policy);
                }
            }
        }
    }

    /// `from-to-www-redirect`: the other name of each such host (`www.` added or removed)
    /// becomes a host whose every request is redirected to the host, unless an Ingress
    /// defines that name itself.
    pub(super) fn finish_www_redirects(&mut self) {
        let mut with_www: Vec<(u32, ObjectRef)> = self
            .host_extras
            .iter_mut()
            .filter_map(|(&i, e)| e.www.take().map(|o| (i, o)))
            .collect();
        with_www.sort_unstable_by_key(|(i, _)| *i);
        for (idx, object) in with_www {
            let to = self.hosts[idx as usize].host.clone();
            let Some(from) = www_pair(&to) else { continue };
            if self.host_ids.get_written(&from).is_some() {
                self.shadowed.push(from.clone());
                self.diagnostics.push(Diagnostic::warning(
                    object,
                    Reason::PathCollision,
                    format!(
                        "from-to-www-redirect: {from} is a host of its own; no redirect from \
                         {from} to {to} is made"
                    ),
                ));
                continue;
            }
            let target = Target::RedirectHost { host: to.to_string() };
            let policy = self.global_policy.clone();
            let from_host: Arc<str> = from.as_str().into();
            let route = Route::new(
                None,
                from_host.clone(),
                String::new(),
                PathMatch::Default,
                target,
                policy,
            );
            let route = self.push_route(route);
            let from_idx = self.hosts.len() as u32;
            self.hosts.push(HostDraft {
                host: from_host,
                exact: sluice_model::FastMap::default(),
                prefix: sluice_model::FastMap::default(),
                regex: None,
                default_route: route,
            });
            self.host_ids.insert(&from, from_idx);
            match self.tls.cert_by_name.get_written(&to).copied() {
                Some(cert) if covers(&self.tls.certs[cert as usize].names, &from) => {
                    self.tls.cert_by_name.insert(&from, cert);
                }
                Some(_) => self.diagnostics.push(Diagnostic::warning(
                    object,
                    Reason::InvalidSecret,
                    format!(
                        "from-to-www-redirect: the certificate of {to} does not cover {from}; \
                         over HTTPS, {from} gets the default certificate"
                    ),
                )),
                None => {}
            }
        }
    }
}
