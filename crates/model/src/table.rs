use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::{
    ChunkVec, Diagnostic, HostIndex, HttpsBehaviour, NamespacedName, PathTable, RegexPaths,
    Rewrite, SharedVec, Tls, UpstreamProtocol, UpstreamTls,
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
    /// The previous table with the hosts of some Ingresses replaced.
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
    pub ingress: Option<NamespacedName>,
    /// The host as written; `""` for rules without a host.
    pub host: String,
    /// The path as written; `""` for default routes.
    pub path: String,
    /// How the path matches.
    pub path_match: PathMatch,
    /// Where its requests go.
    pub target: Target,
    /// Limits and timeouts for its requests.
    pub policy: Policy,
}

impl Route {
    /// The Ingress's namespace and name, or empty strings (for metric labels and logs).
    pub fn ingress_parts(&self) -> (&str, &str) {
        match &self.ingress {
            Some(n) => (&n.namespace, &n.name),
            None => ("", ""),
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
}

/// Per-route limits and timeouts (ingress-nginx's `proxy-*` annotations and ConfigMap keys).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Largest request body accepted (`proxy-body-size`); `None` means unlimited (`0`).
    pub max_body_size: Option<u64>,
    /// Time to establish an upstream connection (`proxy-connect-timeout`).
    #[serde(serialize_with = "secs")]
    pub connect_timeout: Duration,
    /// Longest wait between two reads from the upstream (`proxy-read-timeout`).
    #[serde(serialize_with = "secs")]
    pub read_timeout: Duration,
    /// Longest wait between two writes to the upstream (`proxy-send-timeout`).
    #[serde(serialize_with = "secs")]
    pub send_timeout: Duration,
    /// Attempts on different endpoints when connecting fails (`proxy-next-upstream-tries`).
    pub next_upstream_tries: u32,
    /// `ssl-redirect`: redirect plain-HTTP requests to HTTPS when the host has TLS.
    pub ssl_redirect: bool,
    /// `force-ssl-redirect`: redirect them even when it has not.
    pub force_ssl_redirect: bool,
    /// The two above applied to the route's host: plain-HTTP requests get a redirect.
    pub redirect_to_https: bool,
    /// Keep a trailing slash in that redirect (`preserve-trailing-slash`).
    pub preserve_trailing_slash: bool,
    /// Name the HTTPS port in that redirect (`use-port-in-redirects`); else no port, as
    /// clients then use 443.
    pub port_in_redirect: bool,
    /// `rewrite-target`: the path sent upstream is rewritten. `Some` is the proxy's cheap
    /// test for "this route rewrites".
    pub rewrite: Option<Arc<Rewrite>>,
}

impl Default for Policy {
    /// ingress-nginx's defaults: 1m body, 5 s connect, 60 s read and send, 3 tries,
    /// `ssl-redirect` on.
    fn default() -> Self {
        Self {
            max_body_size: Some(1024 * 1024),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            next_upstream_tries: 3,
            ssl_redirect: true,
            force_ssl_redirect: false,
            redirect_to_https: false,
            preserve_trailing_slash: false,
            port_in_redirect: false,
            rewrite: None,
        }
    }
}

fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
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
    /// Round-robin position, shared by every worker (lock-free).
    #[serde(skip)]
    pub cursor: AtomicUsize,
}

impl Backend {
    /// Builds a plain-HTTP backend with its cursor at the start.
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
            cursor: AtomicUsize::new(0),
        }
    }

    /// The same backend with other endpoints. The round-robin position carries over, so that
    /// an endpoint change does not send every backend's next request to its first endpoint.
    pub fn with_endpoints(&self, endpoints: Vec<Endpoint>) -> Self {
        Self {
            name: self.name.clone(),
            service: self.service.clone(),
            port: self.port.clone(),
            endpoints,
            protocol: self.protocol,
            tls: self.tls.clone(),
            cursor: AtomicUsize::new(self.cursor.load(Ordering::Relaxed)),
        }
    }

    /// The index of the next endpoint in round-robin order; callers try consecutive indexes
    /// (modulo the length) on retries. `None` when there is no endpoint.
    pub fn next_index(&self) -> Option<usize> {
        if self.endpoints.is_empty() {
            return None;
        }
        Some(self.cursor.fetch_add(1, Ordering::Relaxed) % self.endpoints.len())
    }
}

/// One ready endpoint of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Endpoint {
    /// The address dialled: the pod's IP and the EndpointSlice's port number.
    pub addr: SocketAddr,
}
