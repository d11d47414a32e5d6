//! The control loop for the manifests source: scan the directory, translate, publish the new
//! table, and say what changed. Runs once at start-up (before the proxy listens, so it never
//! serves an empty table), then after every debounced change.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use sluice_manifests::ManifestDir;
use sluice_model::{Diagnostic, RoutingTable, Settings, Severity, Snapshot};
use sluice_proxy::{CertStore, Published, Shared, TlsState};

/// Metrics about applying configuration.
pub struct ControlMetrics {
    applies: IntCounterVec,
    duration: Histogram,
    generation: IntGauge,
    last_ok: IntGauge,
    last_ok_timestamp: Gauge,
    diagnostics: IntGaugeVec,
    source_errors: IntGauge,
    /// Access log lines dropped because the log writer fell behind (set at scrape time).
    pub access_log_dropped: IntGauge,
    ssl_expire: GaugeVec,
}

impl ControlMetrics {
    /// Registers the metrics in `registry`.
    pub fn new(registry: &Registry) -> Self {
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
        let last_ok = IntGauge::new(
            "nginx_ingress_controller_config_last_reload_successful",
            "Whether the last configuration change applied without source errors (ingress-nginx's name)",
        )
        .expect("valid metric");
        let last_ok_timestamp = Gauge::new(
            "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds",
            "Timestamp of the last configuration change applied without source errors (ingress-nginx's name)",
        )
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
            diagnostics,
            source_errors,
            access_log_dropped,
            ssl_expire,
        }
    }

    /// The expiry of every certificate presented, per host (not of those whose key failed to
    /// load: their hosts get the default certificate).
    fn certificates(&self, table: &RoutingTable, served: &TlsState) {
        self.ssl_expire.reset();
        for (host, &idx) in table.tls.cert_by_name.iter().filter(|(_, i)| served.is_served(**i)) {
            let cert = &table.tls.certs[idx as usize];
            self.ssl_expire
                .with_label_values(&[&cert.secret.namespace, &host, &cert.secret.name])
                .set(cert.not_after as f64);
        }
        if let Some(idx) = table.tls.default_cert.filter(|&i| served.is_served(i)) {
            let cert = &table.tls.certs[idx as usize];
            self.ssl_expire
                .with_label_values(&[&cert.secret.namespace, "_", &cert.secret.name])
                .set(cert.not_after as f64);
        }
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
    generation: u64,
    shown: HashSet<Diagnostic>,
    shown_errors: HashSet<String>,
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
            generation: 0,
            shown: HashSet::new(),
            shown_errors: HashSet::new(),
        }
    }

    /// Puts `table` in force as the next generation, then logs the diagnostics and source
    /// `errors` that are new or resolved, and updates the metrics. `took` is the time spent
    /// reading and translating, for the logs and `sluice_config_apply_duration_seconds`.
    pub fn publish(
        &mut self,
        mut table: RoutingTable,
        errors: Vec<String>,
        took: Duration,
    ) -> Arc<RoutingTable> {
        self.generation += 1;
        table.generation = self.generation;
        // Keys are checked against their certificates here; what fails joins the diagnostics.
        let (tls, tls_diagnostics) = self.certs.build(&table);
        table.diagnostics.extend(tls_diagnostics);
        table.diagnostics.sort();
        table.diagnostics.dedup();
        let table = Arc::new(table);
        self.metrics.certificates(&table, &tls);
        self.shared.publish(Published { table: table.clone(), tls });

        for e in errors.iter().filter(|e| !self.shown_errors.contains(*e)) {
            tracing::error!("{e}; the last good version of this file keeps serving");
        }
        for e in self.shown_errors.iter().filter(|e| !errors.contains(e)) {
            tracing::info!("resolved: {e}");
        }
        self.shown_errors = errors.iter().cloned().collect();
        let now: HashSet<Diagnostic> = table.diagnostics.iter().cloned().collect();
        for d in table.diagnostics.iter().filter(|d| !self.shown.contains(*d)) {
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

        let ok = errors.is_empty();
        let m = &self.metrics;
        m.applies.with_label_values(&[if ok { "ok" } else { "source_error" }]).inc();
        m.duration.observe(took.as_secs_f64());
        m.generation.set(table.generation as i64);
        m.source_errors.set(errors.len() as i64);
        m.last_ok.set(i64::from(ok));
        if ok {
            let ts = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
            m.last_ok_timestamp.set(ts);
        }
        m.diagnostics.reset();
        for d in &table.diagnostics {
            let severity = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            m.diagnostics.with_label_values(&[severity, d.reason.as_str()]).inc();
        }
        self.source_errors.store(Arc::new(errors));
        let routes = table.routes.iter().filter(|r| r.ingress.is_some()).count();
        tracing::info!(
            generation = table.generation,
            hosts = table.hosts.len(),
            routes,
            backends = table.backends.len(),
            diagnostics = table.diagnostics.len(),
            took_ms = format!("{:.2}", took.as_secs_f64() * 1000.0),
            "applied configuration"
        );
        table
    }

    /// Counts a change that could not be read at all (the last configuration keeps serving).
    pub fn failed(&self) {
        self.metrics.applies.with_label_values(&["source_error"]).inc();
    }
}

/// The manifests source: scans, translates and publishes on every change.
pub struct ManifestControl {
    dir: ManifestDir,
    settings: Settings,
    publisher: Publisher,
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
        let (table, snapshot) = table_for(&dir, &settings);
        tracing::info!(
            files = scan.files,
            objects = snapshot.len(),
            ingresses = snapshot.ingresses.len(),
            services = snapshot.services.len(),
            endpoint_slices = snapshot.endpoint_slices.len(),
            "loaded manifests from {}",
            dir.root().display()
        );
        let mut control = Self { dir, settings, publisher };
        let errors = control.errors();
        control.publisher.publish(table, errors, started.elapsed());
        Ok(control)
    }

    /// The parse errors, as `/debug/config` shows them.
    pub fn source_errors(&self) -> Arc<ArcSwap<Vec<String>>> {
        self.publisher.source_errors.clone()
    }

    fn errors(&self) -> Vec<String> {
        self.dir.errors().iter().map(ToString::to_string).collect()
    }

    /// Scans again and, if anything changed, publishes a new table.
    pub fn apply(&mut self) {
        let started = Instant::now();
        let scan = match self.dir.rescan() {
            Ok(scan) => scan,
            Err(e) => {
                tracing::error!(error = %e, "cannot read manifests from {}; the last configuration keeps serving", self.dir.root().display());
                self.publisher.failed();
                return;
            }
        };
        if scan.unchanged() {
            return;
        }
        let (table, _) = table_for(&self.dir, &self.settings);
        let errors = self.errors();
        self.publisher.publish(table, errors, started.elapsed());
    }
}

/// The routing table for what `dir` holds now (its last good version of every file), with
/// the source's own diagnostics (objects defined twice) among translation's; and the snapshot
/// it came from. Shared by `serve` and `check`, so both always agree.
pub fn table_for(dir: &ManifestDir, settings: &Settings) -> (RoutingTable, Snapshot) {
    let (snapshot, source_diags) = dir.snapshot();
    let mut table = sluice_translate::translate(&snapshot, settings);
    table.diagnostics.extend(source_diags);
    table.diagnostics.sort();
    table.diagnostics.dedup();
    (table, snapshot)
}
