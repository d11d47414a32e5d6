//! Request metrics under ingress-nginx's names and labels, so that its Grafana dashboard and
//! alerts keep working: `nginx_ingress_controller_requests`,
//! `nginx_ingress_controller_request_duration_seconds`,
//! `nginx_ingress_controller_response_duration_seconds`,
//! `nginx_ingress_controller_request_size` and `nginx_ingress_controller_response_size`, with
//! labels `status`, `method`, `path` (the Ingress path, not the URI), `namespace`, `ingress`,
//! `service`, `canary`, `host` and the constant `controller_namespace`, `controller_class`,
//! `controller_pod`. Plus `sluice_upstream_errors_total` and `sluice_upstream_ejections_total`.
//!
//! The hot path takes no lock: each worker accumulates into thread-local handles (prometheus'
//! `local()` metrics) keyed by route, status and method, and flushes them about once a second,
//! as ingress-nginx's `monitor.lua` batches per worker. Requests that match no Ingress (the
//! default backend) are not counted, like ingress-nginx with `--metrics-per-undefined-host=false`.

use std::cell::RefCell;
use std::collections::HashMap;

use http::Method;
use prometheus::local::{LocalHistogram, LocalIntCounter};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, exponential_buckets};
use sluice_model::{Backend, Target};
use tokio::time::Instant;

use crate::record::Record;

const LABELS: &[&str] =
    &["status", "method", "path", "namespace", "ingress", "service", "canary", "host"];

/// The constant labels every series carries.
#[derive(Clone, Debug, Default)]
pub struct ControllerLabels {
    /// `controller_namespace` (the pod's namespace).
    pub namespace: String,
    /// `controller_class` (`--controller-class`).
    pub class: String,
    /// `controller_pod` (the pod's name).
    pub pod: String,
}

/// The proxy's metrics, registered in one registry that the admin port serves.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    response_duration: HistogramVec,
    request_size: HistogramVec,
    response_size: HistogramVec,
    upstream_errors: IntCounterVec,
    mirrors: IntCounterVec,
}

/// `sluice_upstream_ejections_total`: endpoints ejected for failing in a row
/// (`sluice-outlier-*`). Process-wide, as the backends' records it counts are: it is counted
/// where an attempt fails, which has no [`Metrics`] at hand, and only then (rarely).
static EJECTIONS: std::sync::LazyLock<IntCounterVec> = std::sync::LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "sluice_upstream_ejections_total",
            "Endpoints ejected by passive outlier detection (failures in a row), by Service",
        ),
        &["namespace", "service"],
    )
    .expect("valid counter")
});

/// Counts one ejection of an endpoint of `backend`.
pub(crate) fn ejection(backend: &Backend) {
    EJECTIONS.with_label_values(&[&backend.service.namespace, &backend.service.name]).inc();
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    generation: u64,
    route: u32,
    status: u16,
    method: u8,
    /// Served by the route's canary (its `canary` label).
    canary: bool,
}

struct Local {
    requests: LocalIntCounter,
    request_duration: LocalHistogram,
    response_duration: LocalHistogram,
    request_size: LocalHistogram,
    response_size: LocalHistogram,
    used: bool,
}

thread_local! {
    static LOCAL: RefCell<HashMap<Key, Local, foldhash::fast::RandomState>> =
        RefCell::new(HashMap::default());
}

/// Methods get a closed set of label values: a client cannot grow the series count.
const METHODS: &[&str] =
    &["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "OTHER"];

fn method_index(m: &Method) -> u8 {
    METHODS.iter().position(|&x| x == m.as_str()).unwrap_or(METHODS.len() - 1) as u8
}

impl Metrics {
    /// Creates the metrics in a fresh registry.
    pub fn new(controller: &ControllerLabels) -> Self {
        let registry = Registry::new();
        let consts = |opts: Opts| {
            opts.const_label("controller_namespace", &controller.namespace)
                .const_label("controller_class", &controller.class)
                .const_label("controller_pod", &controller.pod)
        };
        let hist = |name: &str, help: &str, buckets: Vec<f64>| {
            let opts = HistogramOpts { common_opts: consts(Opts::new(name, help)), buckets };
            HistogramVec::new(opts, LABELS).expect("valid histogram")
        };
        let time_buckets = vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        let size_buckets = exponential_buckets(10.0, 10.0, 7).expect("valid buckets");
        let requests = IntCounterVec::new(
            consts(Opts::new(
                "nginx_ingress_controller_requests",
                "The total number of client requests",
            )),
            LABELS,
        )
        .expect("valid counter");
        let request_duration = hist(
            "nginx_ingress_controller_request_duration_seconds",
            "The request processing time in seconds (from the first byte read to the last byte sent)",
            time_buckets.clone(),
        );
        let response_duration = hist(
            "nginx_ingress_controller_response_duration_seconds",
            "The time spent on receiving the response from the upstream server in seconds",
            time_buckets,
        );
        let request_size = hist(
            "nginx_ingress_controller_request_size",
            "The request length (including request line, header, and request body)",
            size_buckets.clone(),
        );
        let response_size = hist(
            "nginx_ingress_controller_response_size",
            "The response length (including request line, header, and request body)",
            size_buckets,
        );
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "sluice_upstream_errors_total",
                "Requests that failed upstream, by reason (connect, timeout, broken, invalid_header)",
            ),
            &["namespace", "service", "reason"],
        )
        .expect("valid counter");
        let ejections = EJECTIONS.clone();
        let mirrors = IntCounterVec::new(
            Opts::new(
                "sluice_mirror_requests_total",
                "Mirrored copies of requests (mirror-target), by outcome: sent (an answer came \
                 back), failed (no answer), dropped (too many copies in flight)",
            ),
            &["outcome"],
        )
        .expect("valid counter");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(response_duration.clone()),
            Box::new(request_size.clone()),
            Box::new(response_size.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(ejections),
            Box::new(mirrors.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self {
            registry,
            requests,
            request_duration,
            response_duration,
            request_size,
            response_size,
            upstream_errors,
            mirrors,
        }
    }

    /// Counts one mirrored copy's outcome (`sent`, `failed`, `dropped`).
    pub(crate) fn mirror(&self, outcome: &str) {
        self.mirrors.with_label_values(&[outcome]).inc();
    }

    /// The registry to serve (the binary adds its own metrics to it).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts one failed upstream request (rare: no batching).
    pub(crate) fn upstream_error(&self, backend: &Backend, reason: &str) {
        self.upstream_errors
            .with_label_values(&[&backend.service.namespace, &backend.service.name, reason])
            .inc();
    }

    /// Counts one request that ended at `end`.
    pub(crate) fn observe(&self, r: &Record, end: Instant) {
        let route = &r.table.routes[r.route as usize];
        if route.ingress.is_none() {
            return;
        }
        let elapsed = end.saturating_duration_since(r.start);
        let key = Key {
            generation: r.table.generation,
            route: r.route,
            status: r.status,
            method: method_index(&r.request.method),
            canary: r.canary.is_some(),
        };
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            let entry = local.entry(key).or_insert_with(|| {
                let (namespace, ingress) = route.ingress_parts();
                let service = match &route.target {
                    Target::Backend(id) => r.table.backends[*id as usize].service.name.as_str(),
                    _ => "",
                };
                let canary = r.canary.map_or("", |id| r.table.backends[id as usize].name.as_str());
                let status = r.status.to_string();
                let labels = [
                    status.as_str(),
                    METHODS[key.method as usize],
                    route.path.as_str(),
                    namespace,
                    ingress,
                    service,
                    canary,
                    &*route.host,
                ];
                Local {
                    requests: self.requests.with_label_values(&labels).local(),
                    request_duration: self.request_duration.with_label_values(&labels).local(),
                    response_duration: self.response_duration.with_label_values(&labels).local(),
                    request_size: self.request_size.with_label_values(&labels).local(),
                    response_size: self.response_size.with_label_values(&labels).local(),
                    used: false,
                }
            });
            entry.used = true;
            entry.requests.inc();
            entry.request_duration.observe(elapsed.as_secs_f64());
            if let Some(up) = r.upstream_start {
                entry.response_duration.observe(end.saturating_duration_since(up).as_secs_f64());
            }
            entry.request_size.observe(r.request.request_length as f64);
            entry.response_size.observe(r.bytes_sent as f64);
        });
    }

    /// Publishes this thread's counts; forgets handles unused since the last flush (routes of
    /// old tables), so per-thread state stays bounded across configuration changes.
    pub(crate) fn flush_worker(&self) {
        LOCAL.with(|local| {
            local.borrow_mut().retain(|_, e| {
                e.requests.flush();
                e.request_duration.flush();
                e.response_duration.flush();
                e.request_size.flush();
                e.response_size.flush();
                std::mem::take(&mut e.used)
            });
        });
    }
}
