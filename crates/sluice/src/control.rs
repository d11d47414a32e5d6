//! The control loop for the manifests source: scan the directory, translate, publish the new
//! table, and say what changed. Runs once at start-up (before the proxy listens, so it never
//! serves an empty table), then after every debounced change.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};
use sluice_manifests::{Changes, ManifestDir};
use sluice_model::{
    ChunkVec, Diagnostic, FastMap, HostRoutes, NamespacedName, Route, RoutingTable, Settings,
    Severity, SharedVec, Snapshot,
};
use sluice_proxy::{
    AccessLog, CertStore, ControllerLabels, LogFormat, Metrics, Published, Shared, TlsState,
};

/// Metrics about applying configuration.
pub struct ControlMetrics {
    applies: IntCounterVec,
    duration: Histogram,
    generation: IntGauge,
    last_ok: IntGauge,
    last_ok_timestamp: Gauge,
    /// ingress-nginx's `config_hash`, `success` and `errors` (its reloads; Sluice's applies).
    config_hash: Gauge,
    success: IntCounter,
    errors: IntCounter,
    diagnostics: IntGaugeVec,
    source_errors: IntGauge,
    /// Access log lines dropped because the log writer fell behind (set at scrape time).
    pub access_log_dropped: IntGauge,
    ssl_expire: GaugeVec,
    /// The series `ssl_expire` holds, by host (`_` for the default certificate): a TLS change
    /// touches only the hosts whose certificate differs (with 10,000 hosts, making every
    /// series anew took 20-30 ms of each change).
    ssl_series: std::sync::Mutex<FastMap<String, SslSeries>>,
}

impl ControlMetrics {
    /// Registers the metrics in `registry`; ingress-nginx's carry `controller`'s labels, as
    /// there.
    pub fn new(registry: &Registry, controller: &ControllerLabels) -> Self {
        let consts = |opts: Opts| {
            opts.const_label("controller_namespace", &controller.namespace)
                .const_label("controller_class", &controller.class)
                .const_label("controller_pod", &controller.pod)
        };
        let applies = IntCounterVec::new(
            Opts::new(
                "sluice_config_applies_total",
                "Configuration changes applied, by result (ok, source_error)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "sluice_config_apply_duration_seconds",
                "Time to read, translate and publish a configuration change",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )
        .expect("valid metric");
        let generation =
            IntGauge::new("sluice_config_generation", "Generation of the routing table in force")
                .expect("valid metric");
        let last_ok = IntGauge::with_opts(consts(Opts::new(
            "nginx_ingress_controller_config_last_reload_successful",
            "Whether the last configuration change applied without source errors (ingress-nginx's name)",
        )))
        .expect("valid metric");
        let last_ok_timestamp = Gauge::with_opts(consts(Opts::new(
            "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds",
            "Timestamp of the last configuration change applied without source errors (ingress-nginx's name)",
        )))
        .expect("valid metric");
        let config_hash = Gauge::with_opts(consts(Opts::new(
            "nginx_ingress_controller_config_hash",
            "Running configuration hash actually running: Sluice's generation of the table in force",
        )))
        .expect("valid metric");
        let success = IntCounter::with_opts(consts(Opts::new(
            "nginx_ingress_controller_success",
            "Cumulative number of Ingress controller reload operations: Sluice's applied changes",
        )))
        .expect("valid metric");
        let errors = IntCounter::with_opts(consts(Opts::new(
            "nginx_ingress_controller_errors",
            "Cumulative number of Ingress controller errors during reload operations: Sluice's \
             changes applied with source errors",
        )))
        .expect("valid metric");
        let diagnostics = IntGaugeVec::new(
            Opts::new(
                "sluice_diagnostics",
                "Diagnostics of the configuration in force, by severity and reason",
            ),
            &["severity", "reason"],
        )
        .expect("valid metric");
        let source_errors = IntGauge::new(
            "sluice_source_errors",
            "Manifest files that do not parse (their last good version is in force)",
        )
        .expect("valid metric");
        let ssl_expire = GaugeVec::new(
            Opts::new(
                "nginx_ingress_controller_ssl_expire_time_seconds",
                "Number of seconds since 1970 to the SSL Certificate expire (ingress-nginx's name)",
            ),
            &["namespace", "host", "secret_name"],
        )
        .expect("valid metric");
        let access_log_dropped = IntGauge::new(
            "sluice_access_log_dropped_lines",
            "Access log lines dropped because the log writer fell behind",
        )
        .expect("valid metric");
        for c in [
            Box::new(applies.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(generation.clone()),
            Box::new(last_ok.clone()),
            Box::new(last_ok_timestamp.clone()),
            Box::new(config_hash.clone()),
            Box::new(success.clone()),
            Box::new(errors.clone()),
            Box::new(diagnostics.clone()),
            Box::new(source_errors.clone()),
            Box::new(access_log_dropped.clone()),
            Box::new(ssl_expire.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self {
            applies,
            duration,
            generation,
            last_ok,
            last_ok_timestamp,
            config_hash,
            success,
            errors,
            diagnostics,
            source_errors,
            access_log_dropped,
            ssl_expire,
            ssl_series: Default::default(),
        }
    }

    /// The expiry of every certificate presented, per host (not of those whose key failed to
    /// load: their hosts get the default certificate).
    fn certificates(&self, table: &RoutingTable, served: &TlsState) {
        let tls = &table.tls;
        let served_idx = |i: u32| served.is_served(i).then_some(i);
        let now = |host: &str| -> Option<u32> {
            match host {
                "_" => tls.default_cert.and_then(served_idx),
                _ => tls.cert_by_name.get(host).copied().and_then(served_idx),
            }
        };
        let mut shown = self.ssl_series.lock().unwrap_or_else(|e| e.into_inner());
        // Hosts that lost their certificate, or whose series will be another's.
        shown.retain(|host, series| {
            let cert = now(host).map(|i| &tls.certs[i as usize]);
            let keep = cert.is_some_and(|c| series.shows(c));
            if !keep {
                let _ = self.ssl_expire.remove_label_values(&series.labels(host));
            }
            keep
        });
        let hosts = tls.cert_by_name.iter().map(|(host, &i)| (host, i));
        let default = tls.default_cert.map(|i| (Cow::Borrowed("_"), i));
        // What is left is a subset of the served names: as many means every one has its
        // series already (a rotation), and nothing is looked up.
        let served_names = tls.cert_by_name.values().chain(tls.default_cert.as_ref());
        if served_names.filter(|&&i| served.is_served(i)).count() == shown.len() {
            return;
        }
        for (host, idx) in hosts.chain(default) {
            if !served.is_served(idx) || shown.contains_key(&*host) {
                continue;
            }
            let cert = &tls.certs[idx as usize];
            let series = SslSeries { cert: cert.clone() };
            self.ssl_expire.with_label_values(&series.labels(&host)).set(cert.not_after as f64);
            shown.insert(host.into_owned(), series);
        }
    }
}

/// One host's `nginx_ingress_controller_ssl_expire_time_seconds` series: the certificate it
/// shows (the table's own, shared: most TLS changes leave most certificates the same object,
/// told apart without comparing names).
struct SslSeries {
    cert: Arc<sluice_model::TlsCert>,
}

impl SslSeries {
    /// Whether it shows `cert` (the same Secret and expiry); it then holds `cert`, not an older
    /// copy.
    fn shows(&mut self, cert: &Arc<sluice_model::TlsCert>) -> bool {
        if Arc::ptr_eq(&self.cert, cert) {
            return true;
        }
        let same = self.cert.not_after == cert.not_after && self.cert.secret == cert.secret;
        if same {
            self.cert = cert.clone();
        }
        same
    }

    /// Its labels: namespace, host, secret_name.
    fn labels<'a>(&'a self, host: &'a str) -> [&'a str; 3] {
        [&self.cert.secret.namespace, host, &self.cert.secret.name]
    }
}

/// Publishes routing tables and says what each one changed: the part of the control loop
/// every source shares.
pub struct Publisher {
    shared: &'static Shared,
    metrics: Arc<ControlMetrics>,
    /// Signing keys of the certificates in use.
    certs: CertStore,
    /// The source's own errors (files that do not parse), for `/debug/config`.
    pub source_errors: Arc<ArcSwap<Vec<String>>>,
    /// When the table in force was published, in milliseconds since the Unix epoch (0 before
    /// the first), for `/debug/info`.
    pub applied_at: Arc<AtomicI64>,
    /// The configuration in force with the snapshot it came from, for the admission webhook
    /// (`None` until the first is applied). The proxy never reads it.
    pub in_force: InForce,
    generation: u64,
    shown: HashSet<Diagnostic>,
    /// The diagnostics `shown` was made from: a table that shares them changes nothing there.
    shown_from: SharedVec<Diagnostic>,
    shown_errors: HashSet<String>,
    /// The routes last counted for the log, and how many paths they serve.
    counted: (ChunkVec<Route>, usize),
}

impl Publisher {
    /// A publisher for `shared`'s table, recording into `metrics`, with `certs` loading the
    /// certificates.
    pub fn new(shared: &'static Shared, metrics: Arc<ControlMetrics>, certs: CertStore) -> Self {
        Self {
            shared,
            metrics,
            certs,
            source_errors: Arc::new(ArcSwap::from_pointee(Vec::new())),
            applied_at: Arc::new(AtomicI64::new(0)),
            in_force: InForce::default(),
            generation: 0,
            shown: HashSet::new(),
            shown_from: SharedVec::default(),
            shown_errors: HashSet::new(),
            counted: (ChunkVec::default(), 0),
        }
    }

    /// A publisher with shared state of its own, as `serve` sets it up but with no proxy
    /// reading it and no access log: for benchmarks of the control loop.
    pub fn standalone(settings: &Settings) -> anyhow::Result<Self> {
        let labels = ControllerLabels {
            namespace: String::new(),
            class: settings.controller_class.clone(),
            pod: String::new(),
        };
        let metrics = Metrics::new(&labels);
        let control_metrics = Arc::new(ControlMetrics::new(metrics.registry(), &labels));
        let access_log = AccessLog::new(LogFormat::Upstreaminfo, Box::new(std::io::sink()));
        let empty = sluice_translate::translate(&Snapshot::default(), settings);
        let mut certs = CertStore::new().map_err(anyhow::Error::msg)?;
        let (tls, _) = certs.build(&empty);
        let shared = Shared::leak(Published { table: Arc::new(empty), tls }, metrics, access_log);
        Ok(Self::new(shared, control_metrics, certs))
    }

    /// Puts `table` in force as the next generation, then logs the diagnostics and source
    /// `errors` that are new or resolved, and updates the metrics. `took` is the time spent
    /// reading and translating; with the time publishing takes, it goes to the logs and
    /// `sluice_config_apply_duration_seconds`.
    ///
    /// Parts that `table` shares with the table in force (as an endpoint-only update does)
    /// are not processed again: the same TLS side keeps its server configurations, the same
    /// diagnostics log nothing and leave their metrics as they are.
    pub fn publish(
        &mut self,
        mut table: RoutingTable,
        errors: Vec<String>,
        took: Duration,
    ) -> Arc<RoutingTable> {
        let started = Instant::now();
        self.generation += 1;
        table.generation = self.generation;
        let in_force = self.shared.state.load_full();
        // Endpoints that stay keep their failure records and ejections across the swap.
        table.adopt_outliers(&in_force.table);
        let tls_changed = !Arc::ptr_eq(&table.tls, &in_force.table.tls);
        let owned_before = in_force.table.owned.clone();
        let tls = if tls_changed {
            // Keys are checked against their certificates here; what fails joins the
            // diagnostics.
            let (tls, tls_diagnostics) = self.certs.build(&table);
            if !tls_diagnostics.is_empty() {
                let diagnostics = table.diagnostics.make_mut();
                diagnostics.extend(tls_diagnostics);
                diagnostics.sort();
                diagnostics.dedup();
            }
            tls
        } else {
            // The same certificates: the diagnostics already hold what loading them found.
            in_force.tls.clone()
        };
        drop(in_force);
        let table = Arc::new(table);
        self.shared.publish(Published { table: table.clone(), tls });
        // After the swap: the certificates' series walk every certificate (a few ms at
        // 10,000), and a rotated certificate is served without waiting for them.
        if tls_changed {
            self.metrics.certificates(&table, &self.shared.state.load().tls);
        }
        if !SharedVec::ptr_eq(&table.owned, &owned_before) {
            // Series of Ingresses gone (deleted, or no longer this controller's) go too.
            let gone = gone_from(&owned_before, &table.owned);
            let gone: Vec<(&str, &str)> =
                gone.iter().map(|n| (n.namespace.as_str(), n.name.as_str())).collect();
            self.shared.metrics.forget_ingresses(&gone);
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.applied_at.store(now.as_millis() as i64, Ordering::Relaxed);

        for e in errors.iter().filter(|e| !self.shown_errors.contains(*e)) {
            tracing::error!("{e}; the last good version of this file keeps serving");
        }
        for e in self.shown_errors.iter().filter(|e| !errors.contains(e)) {
            tracing::info!("resolved: {e}");
        }
        self.shown_errors = errors.iter().cloned().collect();
        if !SharedVec::ptr_eq(&table.diagnostics, &self.shown_from) {
            self.show_diagnostics(&table.diagnostics);
        }

        let ok = errors.is_empty();
        let took = took + started.elapsed();
        let m = &self.metrics;
        m.applies.with_label_values(&[if ok { "ok" } else { "source_error" }]).inc();
        m.duration.observe(took.as_secs_f64());
        m.generation.set(table.generation as i64);
        m.config_hash.set(table.generation as f64);
        match ok {
            true => m.success.inc(),
            false => m.errors.inc(),
        }
        m.source_errors.set(errors.len() as i64);
        m.last_ok.set(i64::from(ok));
        if ok {
            let ts = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
            m.last_ok_timestamp.set(ts);
        }
        self.source_errors.store(Arc::new(errors));
        if !ChunkVec::ptr_eq(&table.routes, &self.counted.0) {
            let routes = table.live_hosts().map(HostRoutes::path_count).sum();
            self.counted = (table.routes.clone(), routes);
        }
        tracing::info!(
            generation = table.generation,
            hosts = table.host_count(),
            routes = self.counted.1,
            backends = table.backends.len(),
            diagnostics = table.diagnostics.len(),
            update = table.origin.as_str(),
            took_ms = format!("{:.2}", took.as_secs_f64() * 1000.0),
            "applied configuration"
        );
        let released = Instant::now();
        crate::alloc::release_free_memory();
        tracing::debug!(took_us = released.elapsed().as_micros() as u64, "released free memory");
        table
    }

    /// Logs the diagnostics that are new or resolved, and counts them in the metrics.
    fn show_diagnostics(&mut self, diagnostics: &SharedVec<Diagnostic>) {
        let now: HashSet<Diagnostic> = diagnostics.iter().cloned().collect();
        for d in diagnostics.iter().filter(|d| !self.shown.contains(*d)) {
            match d.severity {
                Severity::Error => {
                    tracing::error!(object = %d.object, reason = %d.reason, "{}", d.message)
                }
                Severity::Warning => {
                    tracing::warn!(object = %d.object, reason = %d.reason, "{}", d.message)
                }
            }
        }
        for d in self.shown.iter().filter(|d| !now.contains(*d)) {
            tracing::info!(object = %d.object, reason = %d.reason, "resolved: {}", d.message);
        }
        self.shown = now;
        self.shown_from = diagnostics.clone();
        let m = &self.metrics;
        m.diagnostics.reset();
        for d in diagnostics.iter() {
            let severity = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            m.diagnostics.with_label_values(&[severity, d.reason.as_str()]).inc();
        }
    }

    /// Counts a change that could not be read at all (the last configuration keeps serving).
    pub fn failed(&self) {
        self.metrics.applies.with_label_values(&["source_error"]).inc();
    }
}

/// The [`Applied`] configuration in force, shared with the admission webhook without a lock:
/// the control loop stores each one it applies, the webhook loads the latest.
pub type InForce = Arc<ArcSwapOption<Applied>>;

/// A table in force, with the snapshot it was built from: what the next change is compared
/// with.
pub struct Applied {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// The table, as published.
    pub table: Arc<RoutingTable>,
}

/// The table for `snapshot`: the table in force with new endpoint lists when only
/// EndpointSlices changed since its snapshot (the usual change: pods come and go), or with
/// the hosts of a few changed Ingresses replaced (an application deployed, changed or removed,
/// with its Services and EndpointSlices), else a full translation.
pub fn next_table(
    previous: Option<&Applied>,
    snapshot: &Snapshot,
    settings: &Settings,
) -> RoutingTable {
    previous
        .and_then(|p| update(p, snapshot, settings))
        .unwrap_or_else(|| sluice_translate::translate(snapshot, settings))
}

/// The table in force updated to `snapshot`, when an incremental update can make it.
fn update(previous: &Applied, snapshot: &Snapshot, settings: &Settings) -> Option<RoutingTable> {
    let (table, before) = (&previous.table, &previous.snapshot);
    sluice_translate::update_endpoints(table, before, snapshot)
        .or_else(|| sluice_translate::update_ingresses(table, before, snapshot, settings))
}

/// The manifests source: scans, translates and publishes on every change.
pub struct ManifestControl {
    dir: ManifestDir,
    settings: Settings,
    publisher: Publisher,
    /// What is in force, with the source's own diagnostics it was built with.
    applied: Option<(Applied, Vec<Diagnostic>)>,
    /// The last scan failed: the changes it was given are lost, so the next reads everything.
    rescan_all: bool,
}

impl ManifestControl {
    /// Reads `dir` and publishes the first table. Fails when the directory itself cannot be
    /// read.
    pub fn start(
        mut dir: ManifestDir,
        settings: Settings,
        publisher: Publisher,
    ) -> anyhow::Result<Self> {
        let started = Instant::now();
        let scan = dir.rescan().map_err(|e| {
            anyhow::anyhow!("cannot read manifests from {}: {e}", dir.root().display())
        })?;
        let mut control = Self { dir, settings, publisher, applied: None, rescan_all: false };
        control.publish(started);
        let snapshot = &control.applied.as_ref().expect("just published").0.snapshot;
        tracing::info!(
            files = scan.files,
            objects = snapshot.len(),
            ingresses = snapshot.ingresses.len(),
            services = snapshot.services.len(),
            endpoint_slices = snapshot.endpoint_slices.len(),
            "loaded manifests from {}",
            control.dir.root().display()
        );
        Ok(control)
    }

    /// The parse errors, as `/debug/config` shows them.
    pub fn source_errors(&self) -> Arc<ArcSwap<Vec<String>>> {
        self.publisher.source_errors.clone()
    }

    fn errors(&self) -> Vec<String> {
        self.dir.errors().iter().map(ToString::to_string).collect()
    }

    /// Reads again what `changes` names (everything, for [`Changes::Everything`]) and, if
    /// anything changed, publishes a new table.
    pub fn apply(&mut self, changes: &Changes) {
        let started = Instant::now();
        let changes = if self.rescan_all { &Changes::Everything } else { changes };
        let scan = match self.dir.rescan_changes(changes) {
            Ok(scan) => scan,
            Err(e) => {
                tracing::error!(error = %e, "cannot read manifests from {}; the last configuration keeps serving", self.dir.root().display());
                self.publisher.failed();
                self.rescan_all = true;
                return;
            }
        };
        self.rescan_all = false;
        if scan.unchanged() {
            return;
        }
        self.publish(started);
    }

    /// Builds the table for what the directory holds now and publishes it.
    fn publish(&mut self, started: Instant) {
        let (snapshot, source_diags) = self.dir.snapshot();
        // The source's own diagnostics are part of the table in force: an update of its
        // endpoints is only right if they did not change.
        let previous = self.applied.take().filter(|(_, diags)| *diags == source_diags);
        let table = match previous.as_ref().and_then(|(p, _)| update(p, &snapshot, &self.settings))
        {
            // An Ingress update replaces the changed Ingresses' diagnostics, the source's among
            // them.
            Some(table) => with_diagnostics(table, &source_diags),
            None => with_diagnostics(
                sluice_translate::translate(&snapshot, &self.settings),
                &source_diags,
            ),
        };
        drop(previous);
        let errors = self.errors();
        let table = self.publisher.publish(table, errors, started.elapsed());
        // Snapshots and tables share their parts: this copies pointers.
        let shared = Applied { snapshot: snapshot.clone(), table: table.clone() };
        self.publisher.in_force.store(Some(Arc::new(shared)));
        self.applied = Some((Applied { snapshot, table }, source_diags));
    }
}

/// The routing table for what `dir` holds now (its last good version of every file), with
/// the source's own diagnostics (objects defined twice) among translation's; and the snapshot
/// it came from. Shared by `serve` and `check`, so both always agree.
pub fn table_for(dir: &ManifestDir, settings: &Settings) -> (RoutingTable, Snapshot) {
    let (snapshot, source_diags) = dir.snapshot();
    let table = with_diagnostics(sluice_translate::translate(&snapshot, settings), &source_diags);
    (table, snapshot)
}

/// `table` with `extra` diagnostics among its own (sorted, without duplicates).
fn with_diagnostics(mut table: RoutingTable, extra: &[Diagnostic]) -> RoutingTable {
    // An endpoint update keeps them: its diagnostics stay shared with the table in force.
    if !extra.iter().all(|d| table.diagnostics.binary_search(d).is_ok()) {
        let diagnostics = table.diagnostics.make_mut();
        diagnostics.extend_from_slice(extra);
        diagnostics.sort();
        diagnostics.dedup();
    }
    table
}

/// The names of `before` that `after` lacks; both sorted.
fn gone_from<'a>(
    before: &'a [NamespacedName],
    after: &[NamespacedName],
) -> Vec<&'a NamespacedName> {
    let mut after = after.iter().peekable();
    let mut gone = Vec::new();
    for name in before {
        while after.next_if(|a| *a < name).is_some() {}
        if after.peek() != Some(&name) {
            gone.push(name);
        }
    }
    gone
}

#[cfg(test)]
mod gone_tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<NamespacedName> {
        list.iter()
            .map(|n| {
                let (namespace, name) = n.split_once('/').unwrap();
                NamespacedName { namespace: namespace.into(), name: name.into() }
            })
            .collect()
    }

    #[test]
    fn gone_from_lists_what_the_second_lacks() {
        let before = names(&["a/x", "a/y", "b/x", "c/z"]);
        let after = names(&["a/y", "b/w", "c/z", "d/q"]);
        let gone: Vec<String> = gone_from(&before, &after)
            .iter()
            .map(|n| format!("{}/{}", n.namespace, n.name))
            .collect();
        assert_eq!(gone, ["a/x", "b/x"]);
        assert!(gone_from(&before, &before).is_empty());
        assert_eq!(gone_from(&before, &[]).len(), 4);
    }
}
