//! The translation itself: owned Ingresses, oldest first, merged host by host.
//!
//! The builder is split by what it makes:
//! - [`routes`]: each Ingress's rules and paths become routes sharing the Ingress's policy;
//!   canary Ingresses are set aside and attached to the main backends at the end;
//! - [`hosts`]: hosts and their paths, default routes, aliases, `www` redirects, `app-root`;
//! - [`backends`]: Service ports resolved once, backends by how they are reached, how each is
//!   balanced, canaries, `default-backend` and `service-upstream`;
//! - [`certificates`]: which certificate and handshake policy each host gets, passthrough,
//!   TLS towards backends, and HTTPS redirects.

mod backends;
mod certificates;
mod hosts;
mod routes;

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;
use sluice_model::{
    Backend, BackendId, Diagnostic, HostIndex, HostMap, HostRoutes, Kind, NamespacedName,
    ObjectRef, Reason, Referrers, Route, RouteId, RoutingTable, Settings, SharedVec, Snapshot, Tls,
};

use crate::annotations::{self, IngressAnnotations};
use crate::class;
use crate::config::{self, GlobalConfig};
use crate::index::{FastMap, Index};
use crate::regex_mode::RegexMode;

pub(crate) use hosts::HostDraft;
pub(crate) use routes::{canary_of_itself, is_unmatched_canary_rule, unmatched_canary_rule};

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
    b.global_default(&global);
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
    let prefix = &settings.annotations_prefix;
    // Canaries create no location, so they cannot put a host in regex mode.
    let mains: Vec<&Ingress> =
        ingresses.iter().copied().filter(|i| !annotations::canary::is_canary(i, prefix)).collect();
    b.regex_mode = RegexMode::new(&mains, prefix);
    for (ingress, place) in ingresses.into_iter().zip(place) {
        b.add_ingress(ingress, place, &global);
    }
    b.attach_canaries(&global);
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
pub(crate) fn oldest_first(a: &Ingress, b: &Ingress) -> Ordering {
    let ts = |i: &Ingress| i.metadata.creation_timestamp.as_ref().map(|t| t.0);
    // The bytes of `namespace/name`, compared without building the string: manifests rarely
    // set creationTimestamp, so every comparison may be a tie.
    fn key(i: &Ingress) -> impl Iterator<Item = u8> + '_ {
        let (ns, name) = ns_name(i);
        ns.bytes().chain(std::iter::once(b'/')).chain(name.bytes())
    }
    ts(a).cmp(&ts(b)).then_with(|| key(b).cmp(key(a)))
}

pub(crate) struct Builder<'s> {
    pub(crate) index: &'s Index<'s>,
    pub(crate) settings: &'s Settings,
    /// When the snapshot was taken (certificate expiry).
    pub(crate) observed_at: Option<i64>,
    routes: Vec<Route>,
    /// Backends and what is decided of each while Ingresses come (see [`backends`]).
    backends: backends::Backends<'s>,
    hosts: Vec<HostDraft>,
    /// Named hosts to their index in `hosts` (the table's [`HostIndex`] is made at the end,
    /// from the hosts' final paths).
    host_ids: HostMap<u32>,
    /// The catch-all host's index in `hosts`, once created.
    catch_all: Option<u32>,
    /// The route for requests no host or path claims.
    global_default: RouteId,
    /// The ConfigMap's policy, shared by every Ingress whose annotations change none of it.
    global_policy: Arc<sluice_model::Policy>,
    /// ConfigMap `no-auth-locations`.
    no_auth_locations: Vec<String>,
    /// Whether a rule-less Ingress already took the catch-all default.
    catch_all_taken: Option<NamespacedName>,
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// Certificates, policies, passthrough, as they are being built.
    pub(crate) tls: Tls,
    /// Hosts listed in a TLS section (with or without a Secret): they get HTTPS redirects.
    pub(crate) tls_hosts: HashSet<String>,
    /// Per named host, what the Ingresses of the host decided of it as a whole (see
    /// [`hosts::HostExtras`]).
    host_extras: FastMap<u32, hosts::HostExtras>,
    /// Certificates already read in this translation, by Secret (or why they cannot be used).
    pub(crate) cert_ids: HashMap<NamespacedName, Result<u32, (Reason, String)>>,
    /// Hosts whose handshake policy could not be applied, with why: they answer 503.
    pub(crate) failed_hosts: HashMap<String, String>,
    /// What each host's Ingresses asked of its handshake, by host as written; made into
    /// policies at the end.
    pub(crate) host_policies: BTreeMap<String, certificates::HostPolicy>,
    /// Hosts whose paths are regexes (`use-regex`, `rewrite-target`), and their paths.
    regex_mode: RegexMode,
    /// Canary Ingresses, attached to main backends once every Ingress is in.
    canaries: Vec<(&'s Ingress, Current<'s>)>,
    /// Whether every Ingress reaches only its own hosts and backends (see
    /// [`Referrers::alone`]).
    alone: bool,
    /// Names aliases and `www` redirects wanted but did not get (see [`Referrers::shadowed`]).
    shadowed: Vec<String>,
    /// Services named by Ingresses that are not alone (see [`Referrers::shaping`]).
    shaping: Vec<u64>,
}

/// An Ingress being added, with what its annotations decided.
pub(crate) struct Current<'s> {
    /// Its namespace, borrowed from the snapshot (keys of per-translation caches).
    pub(crate) namespace: &'s str,
    /// Its place in the table's `owned`.
    pub(crate) place: u32,
    /// Its name, shared with its routes.
    pub(crate) name: Arc<NamespacedName>,
    pub(crate) object: ObjectRef,
    pub(crate) annotations: IngressAnnotations,
    /// Its routes' policy, shared.
    pub(crate) policy: Arc<sluice_model::Policy>,
}

impl<'s> Builder<'s> {
    fn new(index: &'s Index<'s>, settings: &'s Settings, observed_at: Option<i64>) -> Self {
        Self {
            index,
            settings,
            observed_at,
            routes: Vec::new(),
            backends: backends::Backends::default(),
            hosts: Vec::new(),
            host_ids: HostMap::default(),
            catch_all: None,
            global_default: 0,
            global_policy: Arc::default(),
            no_auth_locations: Vec::new(),
            catch_all_taken: None,
            diagnostics: Vec::new(),
            tls: Tls::default(),
            tls_hosts: HashSet::new(),
            host_extras: FastMap::default(),
            cert_ids: HashMap::new(),
            failed_hosts: HashMap::new(),
            host_policies: Default::default(),
            regex_mode: RegexMode::default(),
            canaries: Vec::new(),
            alone: true,
            shadowed: Vec::new(),
            shaping: Vec::new(),
        }
    }

    /// Room for about `rules` hosts and `paths` routes, backends and references.
    fn reserve(&mut self, rules: usize, paths: usize) {
        self.routes.reserve(paths);
        self.hosts.reserve(rules);
        self.backends.reserve(paths);
    }

    fn global_config(&mut self) -> GlobalConfig {
        let Some(name) = &self.settings.configmap else { return GlobalConfig::default() };
        let index = self.index;
        let lookup = |ns: &str, n: &str| index.config_map(ns, n).and_then(|c| c.data.as_ref());
        match self.index.config_map(&name.namespace, &name.name) {
            Some(cm) => config::parse(
                &config::object_ref(&name.namespace, &name.name),
                cm.data.as_ref().unwrap_or(&Default::default()),
                &lookup,
                &mut self.diagnostics,
            ),
            // Not an error: ingress-nginx runs on defaults until the ConfigMap appears.
            None => GlobalConfig::default(),
        }
    }

    /// The annotations of `ingress`, over the global settings.
    fn annotations(
        &mut self,
        ingress: &Ingress,
        object: &ObjectRef,
        global: &GlobalConfig,
    ) -> IngressAnnotations {
        let index = self.index;
        let lookup = |ns: &str, n: &str| index.config_map(ns, n).and_then(|c| c.data.as_ref());
        let secret = |ns: &str, n: &str| index.secret(ns, n);
        let cx = annotations::Context { global, config_map: &lookup, secret: &secret };
        annotations::parse(
            ingress,
            object,
            &self.settings.annotations_prefix,
            &cx,
            &mut self.diagnostics,
        )
    }

    fn push_route(&mut self, route: Route) -> RouteId {
        self.routes.push(route);
        (self.routes.len() - 1) as RouteId
    }

    /// Every route (for the TLS pass at the end).
    pub(crate) fn routes_mut(&mut self) -> &mut [Route] {
        &mut self.routes
    }

    fn finish(mut self, owned: Vec<NamespacedName>, global: GlobalConfig) -> RoutingTable {
        self.finish_tls(&global);
        self.finish_app_roots();
        self.finish_server_snippets(global.relative_redirects);
        std::mem::take(&mut self.regex_mode).finish(&mut self.hosts);
        self.finish_aliases();
        self.finish_www_redirects();
        let backends = std::mem::take(&mut self.backends).finish();
        let referrers = Referrers {
            offsets: backends.offsets,
            ingresses: backends.ingresses,
            by_service: backends.by_service,
            incremental: backends.incremental,
            dead_routes: 0,
            alone: self.alone,
            shadowed: {
                let mut names = std::mem::take(&mut self.shadowed);
                names.sort_unstable();
                names.dedup();
                names
            },
            shaping: {
                let mut hashes = std::mem::take(&mut self.shaping);
                hashes.sort_unstable();
                hashes.dedup();
                hashes
            },
            config_maps: self.index.config_maps_read(),
        };
        let backends = backends.list;
        for (id, backend) in backends.iter().enumerate() {
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
        for route in &mut self.routes {
            route.fast = fast_path_carries(route, &backends);
            route.fast_body = if route.fast { route.policy.fast_path_body_limit() } else { 0 };
        }
        self.diagnostics.sort();
        self.diagnostics.dedup();
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
            backends: backends.into(),
            diagnostics: SharedVec::new(self.diagnostics),
            owned: SharedVec::new(owned),
            tls: Arc::new(self.tls),
            https: global.https,
            referrers: Arc::new(referrers),
        }
    }
}

/// Whether the fast path may carry `route`'s requests: its policy allows it, and every
/// backend it may send to (its target's, the target's canary, its fallback) speaks HTTP/1.1
/// in clear.
pub(crate) fn fast_path_carries(route: &Route, backends: &[Arc<Backend>]) -> bool {
    route.policy.fast_path_carries()
        && route.backends(backends).all(|id| {
            backends
                .get(id as usize)
                .is_some_and(|b| b.protocol == sluice_model::UpstreamProtocol::Http1)
        })
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
