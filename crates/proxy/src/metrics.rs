//! Request metrics under ingress-nginx's names and labels, so that its Grafana dashboard and
//! alerts keep working: `nginx_ingress_controller_requests`,
//! `nginx_ingress_controller_request_duration_seconds`,
//! `nginx_ingress_controller_response_duration_seconds`,
//! `nginx_ingress_controller_request_size`, `nginx_ingress_controller_response_size` and
//! `nginx_ingress_controller_bytes_sent`, with labels `status`, `method`, `path` (the Ingress
//! path, not the URI), `namespace`, `ingress`, `service`, `canary`, `host` (unless
//! `--metrics-per-host=false`) and the constant `controller_namespace`, `controller_class`,
//! `controller_pod`. Plus `sluice_upstream_errors_total` and `sluice_upstream_ejections_total`.
//! ingress-nginx's flags shape them ([`MetricsConfig`]): which metrics, which buckets, status
//! classes, and which requests to the default backend count.
//!
//! The hot path takes no lock: each worker accumulates into thread-local handles (prometheus'
//! `local()` metrics) keyed by route, status and method, and flushes them about once a second,
//! as ingress-nginx's `monitor.lua` batches per worker. Requests no Ingress path took (the
//! default backend) are rarer and counted directly.

use std::cell::RefCell;
use std::collections::HashMap;

use http::Method;
use prometheus::local::{LocalHistogram, LocalIntCounter};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, exponential_buckets};
use sluice_model::{Backend, Route, Target};
use tokio::time::Instant;

use crate::record::Record;

/// The per-request labels, `host` last (dropped with `--metrics-per-host=false`).
const LABELS: &[&str] =
    &["status", "method", "path", "namespace", "ingress", "service", "canary", "host"];

/// The per-request metrics' names without ingress-nginx's prefix, as
/// `--exclude-socket-metrics` takes them (with or without the prefix).
pub const REQUEST_METRICS: &[&str] = &[
    "requests",
    "request_duration_seconds",
    "response_duration_seconds",
    "request_size",
    "response_size",
    "bytes_sent",
];

/// ingress-nginx's flags for its request metrics, with its defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsConfig {
    /// `--enable-metrics`: request metrics at all (Sluice's default: on).
    pub enabled: bool,
    /// `--metrics-per-host`: the `host` label.
    pub per_host: bool,
    /// `--metrics-per-undefined-host`: count requests for hosts no Ingress names (needs
    /// `per_host`), each host its own series.
    pub per_undefined_host: bool,
    /// `--report-status-classes`: `2xx`, `3xx`... instead of the status.
    pub status_classes: bool,
    /// `--time-buckets`: the durations' buckets, seconds.
    pub time_buckets: Vec<f64>,
    /// `--length-buckets`: `request_size` and `response_size`, bytes.
    pub length_buckets: Vec<f64>,
    /// `--size-buckets`: `bytes_sent`, bytes.
    pub size_buckets: Vec<f64>,
    /// `--exclude-socket-metrics`: metrics neither computed nor exported, names of
    /// [`REQUEST_METRICS`].
    pub exclude: Vec<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_host: true,
            per_undefined_host: false,
            status_classes: false,
            // Prometheus' default buckets, as ingress-nginx's flag.
            time_buckets: vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            // ingress-nginx's: 10, 20, ... 100.
            length_buckets: (1..=10).map(|i| f64::from(i) * 10.0).collect(),
            size_buckets: exponential_buckets(10.0, 10.0, 7).expect("valid buckets"),
            exclude: Vec::new(),
        }
    }
}

impl MetricsConfig {
    /// Refuses what ingress-nginx refuses, and names `--exclude-socket-metrics` does not know.
    pub fn validate(&self) -> Result<(), String> {
        if self.per_undefined_host && !self.per_host {
            return Err(
                "--metrics-per-undefined-host=true must be passed with --metrics-per-host=true"
                    .into(),
            );
        }
        for (flag, buckets) in [
            ("--time-buckets", &self.time_buckets),
            ("--length-buckets", &self.length_buckets),
            ("--size-buckets", &self.size_buckets),
        ] {
            if buckets.is_empty() || buckets.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("{flag}: buckets must be increasing, got {buckets:?}"));
            }
        }
        for name in &self.exclude {
            if !REQUEST_METRICS.contains(&short_name(name)) {
                return Err(format!(
                    "--exclude-socket-metrics: unknown metric {name:?} (known: {})",
                    REQUEST_METRICS.join(", ")
                ));
            }
        }
        Ok(())
    }

    fn excludes(&self, name: &str) -> bool {
        self.exclude.iter().any(|e| short_name(e) == name)
    }
}

/// A metric's name without ingress-nginx's prefix.
fn short_name(name: &str) -> &str {
    name.strip_prefix(PREFIX).unwrap_or(name)
}

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
    config: MetricsConfig,
    /// The per-request labels in use (`host` or not).
    labels: &'static [&'static str],
    /// The per-request metrics; `None` when excluded or disabled.
    requests: Option<IntCounterVec>,
    request_duration: Option<HistogramVec>,
    response_duration: Option<HistogramVec>,
    request_size: Option<HistogramVec>,
    response_size: Option<HistogramVec>,
    bytes_sent: Option<HistogramVec>,
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
    requests: Option<LocalIntCounter>,
    /// In [`Metrics::histograms`]' order.
    histograms: [Option<LocalHistogram>; 5],
    used: bool,
}

/// What one request adds to each histogram, in [`Metrics::histograms`]' order
/// (`response_duration` only when an upstream answered).
fn observed(r: &Record, end: Instant) -> [Option<f64>; 5] {
    let bytes_sent = r.bytes_sent as f64;
    [
        Some(end.saturating_duration_since(r.start).as_secs_f64()),
        Some(r.request.request_length as f64),
        Some(bytes_sent),
        Some(bytes_sent),
        r.upstream_start.map(|up| end.saturating_duration_since(up).as_secs_f64()),
    ]
}

thread_local! {
    static LOCAL: RefCell<HashMap<Key, Local, foldhash::fast::RandomState>> =
        RefCell::new(HashMap::default());
    /// Requests this worker finished since its last flush.
    static FINISHED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Requests finished since start, all workers, as of their last flush (about a second).
static REQUESTS_TOTAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Requests the proxy finished since the process started, every route and answer counted
/// (`nginx_process_requests_total`), as of the workers' last flush.
pub fn requests_total() -> u64 {
    REQUESTS_TOTAL.load(std::sync::atomic::Ordering::Relaxed)
}

/// Methods get a closed set of label values: a client cannot grow the series count.
const METHODS: &[&str] =
    &["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "OTHER"];

fn method_index(m: &Method) -> u8 {
    METHODS.iter().position(|&x| x == m.as_str()).unwrap_or(METHODS.len() - 1) as u8
}

impl Metrics {
    /// Creates the metrics in a fresh registry, with ingress-nginx's default flags.
    pub fn new(controller: &ControllerLabels) -> Self {
        Self::with_config(controller, MetricsConfig::default())
    }

    /// Creates the metrics in a fresh registry, shaped by `config` (already validated).
    pub fn with_config(controller: &ControllerLabels, config: MetricsConfig) -> Self {
        let registry = Registry::new();
        let labels = if config.per_host { LABELS } else { &LABELS[..LABELS.len() - 1] };
        let consts = |opts: Opts| {
            opts.const_label("controller_namespace", &controller.namespace)
                .const_label("controller_class", &controller.class)
                .const_label("controller_pod", &controller.pod)
        };
        let wanted =
            |name: &str| config.enabled && !config.excludes(name.trim_start_matches(PREFIX));
        let hist = |name: &str, help: &str, buckets: &[f64]| {
            wanted(name).then(|| {
                let opts = HistogramOpts {
                    common_opts: consts(Opts::new(name, help)),
                    buckets: buckets.to_vec(),
                };
                HistogramVec::new(opts, labels).expect("valid histogram")
            })
        };
        let requests = wanted("nginx_ingress_controller_requests").then(|| {
            IntCounterVec::new(
                consts(Opts::new(
                    "nginx_ingress_controller_requests",
                    "The total number of client requests",
                )),
                labels,
            )
            .expect("valid counter")
        });
        let request_duration = hist(
            "nginx_ingress_controller_request_duration_seconds",
            "The request processing time in seconds (from the first byte read to the last byte sent)",
            &config.time_buckets,
        );
        let response_duration = hist(
            "nginx_ingress_controller_response_duration_seconds",
            "The time spent on receiving the response from the upstream server in seconds",
            &config.time_buckets,
        );
        let request_size = hist(
            "nginx_ingress_controller_request_size",
            "The request length (including request line, header, and request body)",
            &config.length_buckets,
        );
        let response_size = hist(
            "nginx_ingress_controller_response_size",
            "The response length (including request line, header, and request body)",
            &config.length_buckets,
        );
        let bytes_sent = hist(
            "nginx_ingress_controller_bytes_sent",
            "DEPRECATED The number of bytes sent to a client",
            &config.size_buckets,
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
        let metrics = Self {
            registry,
            config,
            labels,
            requests,
            request_duration,
            response_duration,
            request_size,
            response_size,
            bytes_sent,
            upstream_errors,
            mirrors,
        };
        let per_request = metrics
            .histograms()
            .into_iter()
            .flatten()
            .map(|h| Box::new(h.clone()) as Box<dyn prometheus::core::Collector>);
        let counters = metrics.requests.iter().map(|c| Box::new(c.clone()) as _);
        let others: [Box<dyn prometheus::core::Collector>; 3] = [
            Box::new(metrics.upstream_errors.clone()),
            Box::new(ejections),
            Box::new(metrics.mirrors.clone()),
        ];
        for c in counters.chain(per_request).chain(others) {
            metrics.registry.register(c).expect("metric names are unique");
        }
        metrics
    }

    /// The per-request histograms in one order, which [`observed`] and the workers' handles
    /// follow: `response_duration` last, the one that misses requests no upstream answered.
    fn histograms(&self) -> [&Option<HistogramVec>; 5] {
        [
            &self.request_duration,
            &self.request_size,
            &self.response_size,
            &self.bytes_sent,
            &self.response_duration,
        ]
    }

    /// A series' labels, cut to those in use (`host` last).
    fn series<'a>(
        &self,
        r: &'a Record,
        route: &'a Route,
        status: &'a str,
        (namespace, ingress): (&'a str, &'a str),
        host: &'a str,
    ) -> [&'a str; 8] {
        let service = match &route.target {
            Target::Backend(id) => r.table.backends[*id as usize].service.name.as_str(),
            _ => "",
        };
        let canary = r.canary.map_or("", |id| r.table.backends[id as usize].name.as_str());
        let method = METHODS[method_index(&r.request.method) as usize];
        [status, method, route.path.as_str(), namespace, ingress, service, canary, host]
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

    /// The `status` label of `status`.
    fn status_label(&self, status: u16) -> String {
        match self.config.status_classes {
            true => format!("{}xx", status / 100),
            false => status.to_string(),
        }
    }

    /// Counts one request that ended at `end`.
    pub(crate) fn observe(&self, r: &Record, end: Instant) {
        FINISHED.with(|n| n.set(n.get() + 1));
        if !self.counts_anything() {
            return;
        }
        let route = &r.table.routes[r.route as usize];
        let values = observed(r, end);
        if route.ingress.is_none() {
            return self.observe_default(r, route, &values);
        }
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
                let status = self.status_label(r.status);
                let all = self.series(r, route, &status, route.ingress_parts(), &route.host);
                let labels = &all[..self.labels.len()];
                Local {
                    requests: self.requests.as_ref().map(|c| c.with_label_values(labels).local()),
                    histograms: self
                        .histograms()
                        .map(|h| h.as_ref().map(|h| h.with_label_values(labels).local())),
                    used: false,
                }
            });
            entry.used = true;
            if let Some(c) = &entry.requests {
                c.inc();
            }
            for (h, v) in entry.histograms.iter().zip(values) {
                if let (Some(h), Some(v)) = (h, v) {
                    h.observe(v);
                }
            }
        });
    }

    /// Whether any request metric is kept (not all excluded, not `--enable-metrics=false`).
    fn counts_anything(&self) -> bool {
        self.requests.is_some() || self.histograms().iter().any(|h| h.is_some())
    }

    /// A request no Ingress path took: ingress-nginx counts it under its host when an
    /// Ingress names that host (a path it lacks), under any host with
    /// `--metrics-per-undefined-host`, and always without the `host` label; counted directly
    /// (the `host` label takes the client's values, so no per-worker handle is kept).
    fn observe_default(&self, r: &Record, route: &Route, values: &[Option<f64>; 5]) {
        let host = match (&r.default_host, self.config.per_host) {
            (_, false) => "",
            (Some(h), true) if h.named || self.config.per_undefined_host => &h.name,
            _ => return,
        };
        let status = self.status_label(r.status);
        let all = self.series(r, route, &status, ("", ""), host);
        let labels = &all[..self.labels.len()];
        if let Some(c) = &self.requests {
            c.with_label_values(labels).inc();
        }
        for (h, v) in self.histograms().into_iter().zip(values) {
            if let (Some(h), Some(v)) = (h, v) {
                h.with_label_values(labels).observe(*v);
            }
        }
    }

    /// Publishes this thread's counts; forgets handles unused since the last flush (routes of
    /// old tables), so per-thread state stays bounded across configuration changes.
    pub(crate) fn flush_worker(&self) {
        let finished = FINISHED.with(|n| n.replace(0));
        if finished > 0 {
            REQUESTS_TOTAL.fetch_add(finished, std::sync::atomic::Ordering::Relaxed);
        }
        LOCAL.with(|local| {
            local.borrow_mut().retain(|_, e| {
                if let Some(c) = &e.requests {
                    c.flush();
                }
                for h in e.histograms.iter().flatten() {
                    h.flush();
                }
                std::mem::take(&mut e.used)
            });
        });
    }

    /// Removes the series of `ingresses` (namespace, name): Ingresses deleted or no longer
    /// this controller's, as ingress-nginx removes them, so that they do not stay forever.
    pub fn forget_ingresses(&self, ingresses: &[(&str, &str)]) {
        if ingresses.is_empty() {
            return;
        }
        let gone = |m: &prometheus::proto::Metric| {
            let label =
                |name: &str| m.get_label().iter().find(|l| l.name() == name).map(|l| l.value());
            matches!((label("namespace"), label("ingress")), (Some(ns), Some(name))
                if ingresses.iter().any(|(n, i)| *n == ns && *i == name))
        };
        // The label sets of the gone Ingresses' series, read from one metric: every request
        // is observed by each of them alike (but `response_duration`, only with an upstream,
        // last in their order), and a counter collects without buckets, the cheapest to walk.
        let histograms = self.histograms();
        let families = match (&self.requests, histograms.iter().find_map(|h| h.as_ref())) {
            (Some(c), _) => prometheus::core::Collector::collect(c),
            (None, Some(h)) => prometheus::core::Collector::collect(h),
            (None, None) => return,
        };
        // The series' own labels, less the constant ones, as `remove` takes them.
        let sets: Vec<Vec<(String, String)>> = families
            .iter()
            .flat_map(|f| f.get_metric())
            .filter(|m| gone(m))
            .map(|m| {
                m.get_label()
                    .iter()
                    .filter(|l| self.labels.contains(&l.name()))
                    .map(|l| (l.name().to_string(), l.value().to_string()))
                    .collect()
            })
            .collect();
        for set in &sets {
            let labels: HashMap<&str, &str> =
                set.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            // A series a metric lacks (no upstream answered) is no error.
            if let Some(c) = &self.requests {
                let _ = c.remove(&labels);
            }
            for h in histograms.iter().copied().flatten() {
                let _ = h.remove(&labels);
            }
        }
    }
}

/// ingress-nginx's prefix of the request metrics' names.
const PREFIX: &str = "nginx_ingress_controller_";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_checked_as_ingress_nginx_checks_them() {
        assert_eq!(MetricsConfig::default().validate(), Ok(()));
        let undefined =
            MetricsConfig { per_host: false, per_undefined_host: true, ..Default::default() };
        assert!(undefined.validate().unwrap_err().contains("--metrics-per-host=true"));
        let unsorted = MetricsConfig { time_buckets: vec![1.0, 0.5], ..Default::default() };
        assert!(unsorted.validate().unwrap_err().starts_with("--time-buckets"));
        let unknown = MetricsConfig { exclude: vec!["requestz".into()], ..Default::default() };
        assert!(unknown.validate().unwrap_err().contains("requestz"));
        let prefixed = MetricsConfig {
            exclude: vec!["nginx_ingress_controller_requests".into(), "bytes_sent".into()],
            ..Default::default()
        };
        assert_eq!(prefixed.validate(), Ok(()));
        let metrics = Metrics::with_config(&ControllerLabels::default(), prefixed);
        assert!(metrics.requests.is_none() && metrics.bytes_sent.is_none());
        assert!(metrics.request_duration.is_some());
    }
}
