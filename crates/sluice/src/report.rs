//! Readable views of a routing table: the JSON of `/debug/config` and `sluice check --json`,
//! the backends list of `/debug/backends`, and the text table `sluice check` prints.

use std::fmt::Write as _;

use serde::Serialize;
use sluice_model::{
    Balance, Diagnostic, HostRoutes, Policy, RouteId, RoutingTable, Severity, Target,
};

/// The whole configuration as applied: source errors, hosts and their routes, diagnostics.
#[derive(Debug, Serialize)]
pub struct ConfigView<'a> {
    /// Bumped on every applied change.
    pub generation: u64,
    /// Files that do not parse (their last good version is in force).
    pub source_errors: Vec<String>,
    /// Hosts sorted by name; the catch-all (rules without host) is `*`.
    pub hosts: Vec<HostView<'a>>,
    /// What translation found wrong.
    pub diagnostics: &'a [Diagnostic],
}

/// One host.
#[derive(Debug, Serialize)]
pub struct HostView<'a> {
    /// The host, or `*` for the catch-all.
    pub host: String,
    /// Its paths, sorted.
    pub paths: Vec<RouteView<'a>>,
    /// Where its unmatched requests go.
    pub default: RouteView<'a>,
}

/// One route.
#[derive(Debug, Serialize)]
pub struct RouteView<'a> {
    /// The path as written (empty for a default route).
    pub path: &'a str,
    /// Exact, Prefix, ImplementationSpecific or Default.
    pub path_type: &'static str,
    /// `namespace/name` of the Ingress that defined it.
    pub ingress: Option<String>,
    /// Where requests go.
    pub target: TargetView<'a>,
    /// Limits and timeouts.
    pub policy: &'a Policy,
}

/// Where a route's requests go.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum TargetView<'a> {
    /// A backend and its ready endpoints.
    Backend {
        /// `namespace-service-port`.
        backend: &'a str,
        /// `namespace/name` of the Service.
        service: String,
        /// The port as the Ingress named it.
        port: &'a str,
        /// Ready endpoints.
        endpoints: Vec<String>,
    },
    /// A local answer.
    Respond {
        /// The status answered.
        status: u16,
        /// Why.
        reason: &'a str,
    },
    /// A redirect of every request to another host (`from-to-www-redirect`).
    Redirect {
        /// The host redirected to.
        to: &'a str,
    },
}

impl<'a> ConfigView<'a> {
    /// Builds the view of `table`, with the source's parse errors.
    pub fn new(table: &'a RoutingTable, source_errors: &[String]) -> Self {
        let mut hosts: Vec<HostView<'a>> =
            table.live_hosts().map(|h| host_view(table, h)).collect();
        hosts.sort_by(|a, b| a.host.cmp(&b.host));
        Self {
            generation: table.generation,
            source_errors: source_errors.to_vec(),
            hosts,
            diagnostics: &table.diagnostics,
        }
    }

    /// True when something was rejected: a file that does not parse, or an error diagnostic.
    pub fn has_rejections(&self) -> bool {
        !self.source_errors.is_empty()
            || self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }

    /// The text `sluice check` prints.
    pub fn to_text(&self) -> String {
        let mut rows = vec![[
            "HOST".to_string(),
            "PATH".into(),
            "TYPE".into(),
            "BACKEND".into(),
            "ENDPOINTS".into(),
        ]];
        for h in &self.hosts {
            for r in h.paths.iter().chain(std::iter::once(&h.default)) {
                let path = if r.path.is_empty() { "(default)" } else { r.path };
                let (backend, endpoints) = match &r.target {
                    TargetView::Backend { backend, endpoints, .. } => (
                        backend.to_string(),
                        if endpoints.is_empty() {
                            "(none ready: 503)".to_string()
                        } else {
                            endpoints.join(",")
                        },
                    ),
                    TargetView::Respond { status, .. } => (format!("answers {status}"), "-".into()),
                    TargetView::Redirect { to } => (format!("redirects to {to}"), "-".into()),
                };
                let kind = if r.path_type == "Default" { "" } else { r.path_type };
                rows.push([h.host.clone(), path.to_string(), kind.to_string(), backend, endpoints]);
            }
        }
        let widths: Vec<usize> =
            (0..5).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
        let mut out = String::new();
        for row in &rows {
            let line: Vec<String> =
                row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
        }
        for e in &self.source_errors {
            let _ = writeln!(out, "error: {e}");
        }
        for d in self.diagnostics {
            let _ = writeln!(out, "{d}");
        }
        let errors = self.diagnostics.iter().filter(|d| d.severity == Severity::Error).count()
            + self.source_errors.len();
        let warnings = self.diagnostics.iter().filter(|d| d.severity == Severity::Warning).count();
        let _ =
            writeln!(out, "{} hosts, {} errors, {} warnings", self.hosts.len(), errors, warnings);
        out
    }
}

fn host_view<'a>(table: &'a RoutingTable, host: &'a HostRoutes) -> HostView<'a> {
    let regex = host.regex.iter().flat_map(|r| r.iter().map(|(_, id)| id));
    let mut ids: Vec<RouteId> = host.paths.iter().map(|(_, _, id)| id).chain(regex).collect();
    ids.sort_by(|a, b| {
        let (ra, rb) = (&table.routes[*a as usize], &table.routes[*b as usize]);
        (ra.path.as_str(), ra.path_match.as_str()).cmp(&(rb.path.as_str(), rb.path_match.as_str()))
    });
    HostView {
        host: if host.host().is_empty() { "*".into() } else { host.host().to_string() },
        paths: ids.into_iter().map(|id| route_view(table, id)).collect(),
        default: route_view(table, host.default_route),
    }
}

fn route_view(table: &RoutingTable, id: RouteId) -> RouteView<'_> {
    let r = &table.routes[id as usize];
    let target = match &r.target {
        Target::Backend(b) => {
            let b = &table.backends[*b as usize];
            TargetView::Backend {
                backend: &b.name,
                service: b.service.to_string(),
                port: &b.port,
                endpoints: b.endpoints.iter().map(|e| e.addr.to_string()).collect(),
            }
        }
        Target::Respond { status, reason } => TargetView::Respond { status: *status, reason },
        Target::RedirectHost { host } => TargetView::Redirect { to: host },
    };
    RouteView {
        path: &r.path,
        path_type: r.path_match.as_str(),
        ingress: r.ingress.as_ref().map(ToString::to_string),
        target,
        policy: &r.policy,
    }
}

/// `/debug/backends`: one object per backend, like `kubectl ingress-nginx backends`.
pub fn backends_json(table: &RoutingTable) -> serde_json::Value {
    // The backend of `--default-backend-service` carries ingress-nginx's name for it.
    let default_backend = table.routes.iter().find_map(|r| match (&r.ingress, &r.target) {
        (None, Target::Backend(id)) => Some(*id as usize),
        _ => None,
    });
    // A table updated after Ingresses were removed may keep backends no route leads to.
    let passthrough: Vec<u32> = table.tls.passthrough.iter().map(|(_, &id)| id).collect();
    let canaries: Vec<u32> =
        table.backends.iter().filter_map(|b| Some(b.canary.as_ref()?.backend)).collect();
    let in_use = |i: usize| {
        table.referrers.dead_routes == 0
            || Some(i) == default_backend
            || !table.referrers.of(i as u32).is_empty()
            || passthrough.contains(&(i as u32))
            || canaries.contains(&(i as u32))
    };
    let mut list: Vec<serde_json::Value> = table
        .backends
        .iter()
        .enumerate()
        .filter(|&(i, _)| in_use(i))
        .map(|(i, b)| {
            let name =
                if Some(i) == default_backend { "upstream-default-backend" } else { &b.name };
            let (lb, affinity, hash) = match &b.balance {
                Balance::RoundRobin => ("round_robin", None, None),
                Balance::Ewma => ("ewma", None, None),
                Balance::Hash(h) => ("round_robin", None, Some(h)),
                Balance::Sticky(a) => ("round_robin", Some(a), None),
            };
            serde_json::json!({
                "name": name,
                "service": { "namespace": b.service.namespace, "name": b.service.name },
                "port": b.port,
                "sslPassthrough": false,
                "load-balance": lb,
                "noServer": canaries.contains(&(i as u32)),
                "sessionAffinityConfig": affinity.map_or_else(
                    || serde_json::json!({ "name": "", "mode": "" }),
                    |a| serde_json::json!({
                        "name": "cookie",
                        "mode": if a.persistent { "persistent" } else { "balanced" },
                        "cookieSessionAffinity": a,
                    }),
                ),
                "upstreamHashByConfig": hash.map(|h| serde_json::json!({
                    "upstream-hash-by": h.key.to_string(),
                    "upstream-hash-by-subset": h.subset.is_some(),
                    "upstream-hash-by-subset-size": h.subset.unwrap_or(3),
                })),
                "alternativeBackends": b.canary.as_ref().map(|c| vec![table.backends[c.backend as usize].name.clone()]),
                "trafficShapingPolicy": b.canary.as_deref(),
                "endpoints": b.endpoints.iter().map(|e| serde_json::json!({
                    "address": e.addr.ip().to_string(),
                    "port": e.addr.port().to_string(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    serde_json::Value::Array(list)
}
