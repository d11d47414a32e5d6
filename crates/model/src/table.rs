use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::{
    Balance, Canary, ChunkVec, Diagnostic, EwmaSlot, HostIndex, HttpsBehaviour, NamespacedName,
    OutlierPolicy, Outliers, PathTable, Policy, RegexPaths, Rewrite, Ring, SharedVec, Tls,
    UpstreamProtocol, UpstreamTls,
};

/// Index of a [`Route`] in [`RoutingTable::routes`].
pub type RouteId = u32;
/// Index of a [`Backend`] in [`RoutingTable::backends`].
pub type BackendId = u32;

/// Everything the proxy needs to route requests: immutable once built, swapped whole.
///
/// Hosts resolve in the order exact name, one-label wildcard, catch-all (the rules without a
/// host); within a host, paths resolve exact first, then the longest element-wise prefix (or,
/// on a host in regex mode, the first matching regex), then the host's default route. See [`RoutingTable::lookup`].
///
/// The large parts are shared (`Arc`), so cloning a table is cheap: a table for an
/// endpoint-only change shares everything with the previous one but the backends it rebuilt
/// (and, when warnings change, the diagnostics); one for a few changed Ingresses shares all
/// but the last chunk of routes and hosts ([`ChunkVec`]). Parts are written with
/// [`SharedVec::make_mut`], [`ChunkVec::extend`] and [`Arc::make_mut`].
///
/// Routes, hosts and backends of a table made that way may be unreachable (those of a
/// removed Ingress): only [`RoutingTable::host_index`], [`RoutingTable::catch_all`] and what
/// they lead to are in force.
#[derive(Clone, Debug, Serialize)]
pub struct RoutingTable {
    /// Bumped by whoever publishes tables, so that per-route state kept outside the table (such
    /// as metric handles) can tell routes of different tables apart.
    pub generation: u64,
    /// How it was made: a full translation, or an update of the previous table.
    #[serde(skip)]
    pub origin: Origin,
    /// Host names (exact, and one-label wildcards) to their index in `hosts`, with what a
    /// lookup reads of each host (the catch-all too) laid out densely: see [`HostIndex`].
    #[serde(skip)]
    pub host_index: Arc<HostIndex>,
    /// Every host's paths; the catch-all host (rules without a host) has the name `""`.
    pub hosts: ChunkVec<HostRoutes>,
    /// Index in `hosts` of the catch-all host.
    pub catch_all: u32,
    /// Every route; a [`RouteId`] indexes this.
    pub routes: ChunkVec<Route>,
    /// Every backend (a Service port and its ready endpoints); a [`BackendId`] indexes this.
    /// Each is shared on its own: a backend whose endpoints did not change keeps its
    /// round-robin position across tables. In chunks, so that a table made by changing a
    /// few backends copies their chunks' pointers, not 20,000.
    pub backends: ChunkVec<Arc<Backend>>,
    /// What translation found wrong, per object.
    pub diagnostics: SharedVec<Diagnostic>,
    /// The Ingresses this controller serves (its class), sorted; their status carries our
    /// address, whether or not any of their rules could be applied.
    pub owned: SharedVec<NamespacedName>,
    /// Certificates, handshake policies, passthrough hosts.
    pub tls: Arc<Tls>,
    /// Redirects to HTTPS and HSTS.
    pub https: HttpsBehaviour,
    /// Which Ingresses reference which backend: what an endpoint-only update needs to redo
    /// the "no ready endpoint" warnings.
    #[serde(skip)]
    pub referrers: Arc<Referrers>,
}

impl RoutingTable {
    /// The hosts in force: every named host and the catch-all, not those a removed Ingress
    /// left behind.
    pub fn live_hosts(&self) -> impl Iterator<Item = &HostRoutes> {
        self.hosts
            .iter()
            .enumerate()
            .filter(|&(i, h)| {
                i == self.catch_all as usize
                    || (!h.host().is_empty()
                        && self.host_index.get_written(h.host()) == Some(i as u32))
            })
            .map(|(_, h)| h)
    }

    /// How many hosts are in force, the catch-all included.
    pub fn host_count(&self) -> usize {
        let (exact, wildcard) = self.host_index.counts();
        exact + wildcard + 1
    }
}

/// How a [`RoutingTable`] was made (for logs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    /// Translated in full.
    #[default]
    Full,
    /// The previous table with the endpoints of some backends rebuilt.
    Endpoints,
    /// The previous table with the hosts of some Ingresses replaced (and the backends of
    /// the Services that changed with them).
    Ingresses,
}

impl Origin {
    /// Its name in logs: `full`, `endpoints`, `ingresses`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Full => "full",
            Origin::Endpoints => "endpoints",
            Origin::Ingresses => "ingresses",
        }
    }
}

/// The Ingresses that reference each backend, as translation resolved them: kept so that an
/// endpoint-only change can rebuild the endpoints, and the `NoReadyEndpoints` warnings, of
/// just the backends it touches (`sluice_translate::update_endpoints`).
#[derive(Debug, Default)]
pub struct Referrers {
    /// For backend `b`, `ingresses[offsets[b]..offsets[b + 1]]`; one more entry than there
    /// are backends.
    pub offsets: Vec<u32>,
    /// Indexes in [`RoutingTable::owned`], without duplicates per backend.
    pub ingresses: Vec<u32>,
    /// Every backend under a hash of its Service's namespace and name (translation's own,
    /// seeded per process), sorted: a Service's backends are found without reading every
    /// backend.
    pub by_service: Vec<(u64, BackendId)>,
    /// False when translation met a case that an endpoint-only update cannot redo exactly (a
    /// port named like a number, backend TLS that could not be set up): such tables are
    /// always rebuilt whole.
    pub incremental: bool,
    /// Routes no host leads to any more: those of Ingresses an update removed or replaced.
    /// Past a share of the table, the next change is translated in full, which drops them.
    pub dead_routes: usize,
    /// True when no Ingress of the table reaches beyond its own hosts and routes: none is a
    /// canary, none has aliases or a `www` redirect, and none sets how a backend is balanced
    /// or reached (`load-balance`, `upstream-hash-by`, `affinity`, `service-upstream`,
    /// `default-backend`). Only such Ingresses are updated without a full translation.
    pub alone: bool,
    /// The names an alias or a `www` redirect wanted that a host of its own held, sorted:
    /// removing that host gives the alias or redirect the name, which an Ingress update alone
    /// does not see.
    pub shadowed: Vec<String>,
    /// The Services (hashed as [`by_service`](Self::by_service) is) named by Ingresses that
    /// are not [`alone`](Self::alone), sorted: which Ingress naming one decides how its
    /// backends are balanced depends on them all, so changes of Ingresses that name one are
    /// translated in full.
    pub shaping: Vec<u64>,
    /// The ConfigMaps translation looked up (the controller's, and those its keys and the
    /// Ingresses' annotations name), found or not, sorted: a change of any other ConfigMap
    /// leaves the table as it is.
    pub config_maps: Vec<NamespacedName>,
}

impl Referrers {
    /// The Ingresses (indexes in [`RoutingTable::owned`]) that reference backend `id`.
    pub fn of(&self, id: BackendId) -> &[u32] {
        let range = self.offsets.get(id as usize).zip(self.offsets.get(id as usize + 1));
        range.map_or(&[], |(&start, &end)| &self.ingresses[start as usize..end as usize])
    }
}

/// The paths of one host, merged from every Ingress that names it.
#[derive(Clone, Debug, Serialize)]
pub struct HostRoutes {
    /// The host as written in the rules (`*.example.com` for a wildcard; `""` for the
    /// catch-all), its `Exact` paths and its `Prefix` (and `ImplementationSpecific`) paths.
    /// No `Prefix` paths on a host in regex mode.
    pub paths: PathTable,
    /// On a host in regex mode (`use-regex` or `rewrite-target` on one of its Ingresses), its
    /// non-`Exact` paths as regexes, in ingress-nginx's order; `None` on other hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<Box<RegexPaths>>,
    /// Where requests go that match no path of this host.
    pub default_route: RouteId,
}

impl HostRoutes {
    /// The host as written in the rules; `""` for the catch-all.
    pub fn host(&self) -> &str {
        self.paths.host()
    }

    /// How many paths it serves.
    pub fn path_count(&self) -> usize {
        self.paths.len() + self.regex.as_ref().map_or(0, |r| r.len())
    }
}

/// How a route's path matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum PathMatch {
    /// The whole path, case-sensitively.
    Exact,
    /// Element-wise prefix (`/foo` matches `/foo` and `/foo/bar`, not `/foobar`).
    Prefix,
    /// `ImplementationSpecific`: served as `Prefix`.
    ImplementationSpecific,
    /// Not a path rule: a host's or the table's default route.
    Default,
}

impl PathMatch {
    /// The pathType as written in an Ingress, or `Default`.
    pub fn as_str(self) -> &'static str {
        match self {
            PathMatch::Exact => "Exact",
            PathMatch::Prefix => "Prefix",
            PathMatch::ImplementationSpecific => "ImplementationSpecific",
            PathMatch::Default => "Default",
        }
    }
}

/// One routable unit: an Ingress path (or a default backend) and what to do with its requests.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// The Ingress that defined it; `None` for the built-in or flag-given default backend.
    /// Shared by the Ingress's routes (tables hold tens of thousands of routes).
    pub ingress: Option<Arc<NamespacedName>>,
    /// The host as written; `""` for rules without a host. Shared by the host's routes.
    pub host: Arc<str>,
    /// The path as written; `""` for default routes.
    pub path: String,
    /// How the path matches.
    pub path_match: PathMatch,
    /// Where its requests go.
    pub target: Target,
    /// The `default-backend` annotation's backend: it serves when the target's backend has no
    /// ready endpoint, and answers `custom-http-errors`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<BackendId>,
    /// What its Ingress asks of its requests, shared by the Ingress's routes.
    pub policy: Arc<Policy>,
    /// `rewrite-target` for this path: the path sent upstream is rewritten.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Arc<Rewrite>>,
    /// Plain-HTTP requests get a redirect to HTTPS (`ssl-redirect` and the host's TLS, or
    /// `force-ssl-redirect`).
    pub redirect_to_https: bool,
    /// `app-root` of the route's host: a request for `/` is redirected there (302).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_root: Option<Arc<str>>,
    /// Translation's verdict: the HTTP/1.1 fast path may carry this route's requests (every
    /// backend it may pick speaks HTTP/1.1 in clear, and [`Policy::fast_path_carries`]). The
    /// fast path runs the same life cycle as the general path; this only says whether its way
    /// of moving bytes is enough.
    pub fast: bool,
    /// Translation's verdict on request bodies: the largest body, declared by
    /// `Content-Length`, that the fast path may hold and carry on this route
    /// ([`Policy::fast_path_body_limit`]); 0 (always when not [`fast`](Self::fast)): requests
    /// with a body go to the general path.
    pub fast_body: u64,
}

impl RoutingTable {
    /// The route for requests no host or path claims (`--default-backend-service`, else the
    /// built-in 404): always route 0. `custom-http-errors` without a `default-backend`
    /// answers from it.
    pub fn global_default(&self) -> &Route {
        &self.routes[0]
    }
}

impl Route {
    /// A route of `target` with the default policy, not yet judged for the fast path.
    pub fn new(
        ingress: Option<Arc<NamespacedName>>,
        host: Arc<str>,
        path: String,
        path_match: PathMatch,
        target: Target,
        policy: Arc<Policy>,
    ) -> Self {
        Self {
            ingress,
            host,
            path,
            path_match,
            target,
            fallback: None,
            policy,
            rewrite: None,
            redirect_to_https: false,
            app_root: None,
            fast: false,
            fast_body: 0,
        }
    }

    /// The Ingress's namespace and name, or empty strings (for metric labels and logs).
    pub fn ingress_parts(&self) -> (&str, &str) {
        match &self.ingress {
            Some(n) => (&n.namespace, &n.name),
            None => ("", ""),
        }
    }

    /// Every backend the route may send to: its target, the target's canary, its fallback.
    pub fn backends<'a>(
        &'a self,
        backends: &'a [Arc<Backend>],
    ) -> impl Iterator<Item = BackendId> + 'a {
        let main = match self.target {
            Target::Backend(id) => Some(id),
            Target::Respond { .. } | Target::RedirectHost { .. } => None,
        };
        let canary = main.and_then(|id| Some(backends.get(id as usize)?.canary.as_ref()?.backend));
        main.into_iter().chain(canary).chain(self.fallback)
    }

    /// Renumbers the backends it names (an update that merges backend lists).
    pub fn map_backends(&mut self, f: impl Fn(BackendId) -> BackendId) {
        if let Target::Backend(b) = &mut self.target {
            *b = f(*b);
        }
        if let Some(b) = &mut self.fallback {
            *b = f(*b);
        }
    }
}

/// What a route does with a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Target {
    /// Proxy to a backend.
    Backend(BackendId),
    /// Answer locally with this status (the built-in 404, or 503 when the route cannot be
    /// served: missing Service, refused snippet, unenforceable security annotation).
    Respond {
        /// The HTTP status code.
        status: u16,
        /// Why, for the debug endpoints and logs (never sent to clients).
        reason: String,
    },
    /// Redirect every request to another host, keeping the path (`from-to-www-redirect`):
    /// `<scheme>://<host>:<port><uri>` with the table's `http-redirect-code`.
    RedirectHost {
        /// The host redirected to.
        host: String,
    },
}

/// A Service port and its ready endpoints: ingress-nginx's "upstream".
#[derive(Debug, Serialize)]
pub struct Backend {
    /// `namespace-service-port`, ingress-nginx's upstream name (used in logs and metrics).
    pub name: String,
    /// The Service.
    pub service: NamespacedName,
    /// The Service port as the Ingress named it (a number or a port name).
    pub port: String,
    /// Ready endpoints, in a stable order.
    pub endpoints: Vec<Endpoint>,
    /// How to speak to it (`backend-protocol`).
    pub protocol: UpstreamProtocol,
    /// TLS settings, for `HTTPS` and `GRPCS` (`proxy-ssl-*`).
    pub tls: Option<Arc<UpstreamTls>>,
    /// How its endpoints are chosen (`load-balance`, `upstream-hash-by`, `affinity`), as the
    /// oldest Ingress naming it decides.
    pub balance: Balance,
    /// `service-upstream`: the endpoint is the Service's cluster IP, not its pods.
    pub service_upstream: bool,
    /// The canary attached to it (`canary` Ingresses for the same host and path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<Box<Canary>>,
    /// When its endpoints are ejected for failing (the ConfigMap's `sluice-outlier-*`).
    #[serde(skip)]
    pub outlier: OutlierPolicy,
    /// Per-endpoint state of the balancer (round-robin position, hash ring, response times),
    /// shared by every worker (lock-free) and carried over while the endpoints stay the same.
    #[serde(skip)]
    pub state: BalanceState,
}

impl Backend {
    /// Builds a plain-HTTP, round-robin backend.
    pub fn new(
        name: String,
        service: NamespacedName,
        port: String,
        endpoints: Vec<Endpoint>,
    ) -> Self {
        Self {
            name,
            service,
            port,
            endpoints,
            protocol: UpstreamProtocol::Http1,
            tls: None,
            balance: Balance::RoundRobin,
            service_upstream: false,
            canary: None,
            outlier: OutlierPolicy::default(),
            state: BalanceState::default(),
        }
    }

    /// The same backend with other endpoints. The round-robin position carries over, so that
    /// an endpoint change does not send every backend's next request to its first endpoint;
    /// the rest of the balancer's state is made anew for the new endpoints.
    pub fn with_endpoints(&self, endpoints: Vec<Endpoint>) -> Self {
        let state = self.state.carried_over(&self.endpoints, &endpoints);
        Self {
            name: self.name.clone(),
            service: self.service.clone(),
            port: self.port.clone(),
            endpoints,
            protocol: self.protocol,
            tls: self.tls.clone(),
            balance: self.balance.clone(),
            service_upstream: self.service_upstream,
            canary: self.canary.clone(),
            outlier: self.outlier,
            state,
        }
    }

    /// The index of the next endpoint in round-robin order. `None` when there is no
    /// endpoint.
    pub fn next_index(&self) -> Option<usize> {
        if self.endpoints.is_empty() {
            return None;
        }
        Some(self.state.cursor.fetch_add(1, Ordering::Relaxed) % self.endpoints.len())
    }

    /// The same backend as `other` for translation's purposes: one Service port reached and
    /// balanced the same way, with the same canary.
    pub fn same_upstream(&self, other: &Backend) -> bool {
        self.service == other.service
            && self.port == other.port
            && self.protocol == other.protocol
            && self.tls == other.tls
            && self.balance == other.balance
            && self.service_upstream == other.service_upstream
            && self.canary == other.canary
            && self.outlier == other.outlier
    }
}

impl RoutingTable {
    /// Gives this table's backends the outlier records (`sluice-outlier-*`) of the same
    /// backends in `previous`, the table it replaces, for the endpoints that remain: a full
    /// translation makes every backend anew, and an ejected endpoint should not be dialled
    /// again for every ConfigMap change. A backend is the same when its name, Service and
    /// port are. Only backends with a record are looked at (usually none); backends shared
    /// with `previous`, or made from its own by an endpoint update, already have theirs.
    pub fn adopt_outliers(&self, previous: &RoutingTable) {
        if self.origin == Origin::Endpoints {
            return;
        }
        let mut old: std::collections::HashMap<(&str, &NamespacedName, &str), &Backend> =
            std::collections::HashMap::new();
        for b in previous.backends.iter() {
            if b.state.outliers.get().is_some() {
                old.insert((b.name.as_str(), &b.service, b.port.as_str()), b);
            }
        }
        if old.is_empty() {
            return;
        }
        for b in self.backends.iter() {
            if b.state.outliers.get().is_some() || !b.outlier.enabled() {
                continue;
            }
            let Some(o) = old.get(&(b.name.as_str(), &b.service, b.port.as_str())) else {
                continue;
            };
            let kept =
                o.state.outliers.get().and_then(|r| r.carried_over(&o.endpoints, &b.endpoints));
            if let Some(kept) = kept {
                let _ = b.state.outliers.set(kept);
            }
        }
    }
}

/// A backend's balancer state.
#[derive(Debug, Default)]
pub struct BalanceState {
    /// Round-robin position.
    pub cursor: AtomicUsize,
    /// The consistent-hash ring of its endpoints, made on first use. (Boxed, as the cookie
    /// keys: most backends never make them, and every backend carries the cells.)
    pub ring: OnceLock<Box<Ring>>,
    /// Per endpoint: the decaying average response time (`load-balance: ewma`), made on
    /// first use.
    pub ewma: OnceLock<Box<[EwmaSlot]>>,
    /// Per endpoint: its key in a persistent session cookie (the proxy makes them on first
    /// use), and the backend's own key in session cookies.
    pub cookie_keys: OnceLock<Box<CookieKeys>>,
    /// Per endpoint: its failures and ejection (`sluice-outlier-*`), made on its first
    /// failure, so that a backend that never failed carries none.
    pub outliers: OnceLock<Outliers>,
}

/// A sticky backend's keys in session cookies: one per endpoint (persistent mode), and the
/// backend's own.
pub type CookieKeys = (Box<[Box<str>]>, Box<str>);

impl BalanceState {
    /// The state for `new` endpoints after `old`: the round-robin position is kept, and so
    /// are the response-time averages of endpoints still there; new endpoints start at the
    /// average of those (ingress-nginx's slow start), so that they are not flooded for having
    /// no history. The hash ring is made anew. Failure records and ejections of endpoints
    /// still there are kept; those of endpoints gone are dropped.
    fn carried_over(&self, old: &[Endpoint], new: &[Endpoint]) -> Self {
        let ewma = OnceLock::new();
        if let Some(slots) = self.ewma.get() {
            let kept: Vec<Option<&EwmaSlot>> = new
                .iter()
                .map(|e| old.iter().position(|o| o == e).and_then(|i| slots.get(i)))
                .collect();
            let known: Vec<&EwmaSlot> =
                kept.iter().flatten().copied().filter(|s| s.observed()).collect();
            let now = known.iter().map(|s| s.touched()).max().unwrap_or(0);
            let start = match known.len() {
                0 => 0.0,
                n => known.iter().map(|s| s.average()).sum::<f64>() / n as f64,
            };
            let slots: Box<[EwmaSlot]> = kept
                .iter()
                .map(|k| match k {
                    Some(s) if s.observed() => EwmaSlot::new(s.average(), s.touched()),
                    Some(_) => EwmaSlot::unobserved(),
                    None if known.is_empty() => EwmaSlot::unobserved(),
                    None => EwmaSlot::new(start, now),
                })
                .collect();
            let _ = ewma.set(slots);
        }
        let outliers = OnceLock::new();
        if let Some(kept) = self.outliers.get().and_then(|o| o.carried_over(old, new)) {
            let _ = outliers.set(kept);
        }
        Self {
            cursor: AtomicUsize::new(self.cursor.load(Ordering::Relaxed)),
            ring: OnceLock::new(),
            ewma,
            cookie_keys: OnceLock::new(),
            outliers,
        }
    }
}

/// One ready endpoint of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Endpoint {
    /// The address dialled: the pod's IP and the EndpointSlice's port number.
    pub addr: SocketAddr,
}
