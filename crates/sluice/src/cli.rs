//! The command line. Flag names follow ingress-nginx wherever it has one; every flag can also
//! be set from the environment variable shown in `--help` (`SLUICE_` and the flag in upper
//! snake case).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use sluice_model::{NamespacedName, Settings};

/// Sluice: a Kubernetes ingress controller, drop-in for ingress-nginx.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Route traffic for the Ingresses of the Kubernetes API, or of a manifests directory.
    Serve(Box<ServeArgs>),
    /// Load manifests, print the routing table and every diagnostic; exit 1 if any object is
    /// rejected.
    Check(CheckArgs),
    /// A small echo backend: answers JSON describing the request (and echoes WebSocket messages).
    Echo(EchoArgs),
    /// Start echo backends and serve examples/quickstart on 127.0.0.1, printing what to try.
    Quickstart(QuickstartArgs),
    /// Report what moving from ingress-nginx changes, for every Ingress of a cluster or of a
    /// manifests directory; exit 1 when the move should not go ahead (--fail-on).
    Migrate(MigrateArgs),
}

/// How Ingresses are selected and read (shared by `serve` and `check`).
#[derive(Debug, Clone, Args)]
pub struct ClassArgs {
    /// The legacy `kubernetes.io/ingress.class` annotation value to serve.
    #[arg(long, env = "SLUICE_INGRESS_CLASS", default_value = "sluice")]
    pub ingress_class: String,
    /// The IngressClass `spec.controller` value to serve.
    #[arg(long, env = "SLUICE_CONTROLLER_CLASS", default_value = "sluice.dev/ingress-controller")]
    pub controller_class: String,
    /// Also serve Ingresses that name no class.
    #[arg(long, env = "SLUICE_WATCH_INGRESS_WITHOUT_CLASS")]
    pub watch_ingress_without_class: bool,
    /// The Service (namespace/name) for requests no rule matches; else a built-in 404.
    #[arg(long, env = "SLUICE_DEFAULT_BACKEND_SERVICE", value_parser = parse_namespaced)]
    pub default_backend_service: Option<NamespacedName>,
    /// The annotation prefix to read.
    #[arg(long, env = "SLUICE_ANNOTATIONS_PREFIX", default_value = "nginx.ingress.kubernetes.io")]
    pub annotations_prefix: String,
    /// The ConfigMap (namespace/name) with global settings (ingress-nginx's keys).
    #[arg(long, env = "SLUICE_CONFIGMAP", value_parser = parse_namespaced)]
    pub configmap: Option<NamespacedName>,
    /// The TLS Secret (namespace/name) for TLS hosts without one and unknown server names;
    /// default: a self-signed certificate generated at start-up.
    #[arg(long, env = "SLUICE_DEFAULT_SSL_CERTIFICATE", value_parser = parse_namespaced)]
    pub default_ssl_certificate: Option<NamespacedName>,
    /// Honour the ssl-passthrough annotation: TLS for those hosts goes, unterminated, to the
    /// backend (on the same HTTPS port).
    #[arg(long, env = "SLUICE_ENABLE_SSL_PASSTHROUGH")]
    pub enable_ssl_passthrough: bool,
}

impl ClassArgs {
    /// The translation settings these flags give.
    pub fn settings(&self) -> Settings {
        Settings {
            ingress_class: self.ingress_class.clone(),
            controller_class: self.controller_class.clone(),
            watch_ingress_without_class: self.watch_ingress_without_class,
            default_backend_service: self.default_backend_service.clone(),
            annotations_prefix: self.annotations_prefix.clone(),
            configmap: self.configmap.clone(),
            default_ssl_certificate: self.default_ssl_certificate.clone(),
            enable_ssl_passthrough: self.enable_ssl_passthrough,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable logs; access log in ingress-nginx's `upstreaminfo` format.
    Text,
    /// JSON logs, and a JSON access log.
    Json,
}

/// `sluice serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Directory (or file) of Kubernetes manifests to serve, watched for changes. Without it,
    /// Sluice watches the Kubernetes API.
    #[arg(long, env = "SLUICE_MANIFESTS")]
    pub manifests: Option<PathBuf>,
    /// Kubeconfig file for the Kubernetes API (default: in-cluster, else `KUBECONFIG`, else
    /// ~/.kube/config).
    #[arg(long, env = "SLUICE_KUBECONFIG", conflicts_with = "manifests")]
    pub kubeconfig: Option<PathBuf>,
    /// Watch only these namespaces (comma-separated); default: all.
    #[arg(long, env = "SLUICE_WATCH_NAMESPACE", value_delimiter = ',')]
    pub watch_namespace: Vec<String>,
    /// Watch only namespaces with these labels (a label selector, e.g. `team=web`); used when
    /// --watch-namespace is not set.
    #[arg(long, env = "SLUICE_WATCH_NAMESPACE_SELECTOR")]
    pub watch_namespace_selector: Option<String>,
    /// Publish this Service's load balancer addresses (namespace/name) in Ingress status.
    #[arg(long, env = "SLUICE_PUBLISH_SERVICE", value_parser = parse_namespaced)]
    pub publish_service: Option<NamespacedName>,
    /// Publish these IPs or hostnames (comma-separated) in Ingress status, instead of
    /// --publish-service.
    #[arg(long, env = "SLUICE_PUBLISH_STATUS_ADDRESS", value_delimiter = ',')]
    pub publish_status_address: Vec<String>,
    /// Write Ingress status (the leader only).
    #[arg(long, env = "SLUICE_UPDATE_STATUS", default_value_t = true, action = ArgAction::Set)]
    pub update_status: bool,
    /// On shutdown of the last replica, remove Sluice's address from Ingress status.
    #[arg(long, env = "SLUICE_UPDATE_STATUS_ON_SHUTDOWN", default_value_t = true, action = ArgAction::Set)]
    pub update_status_on_shutdown: bool,
    /// Seconds between full status checks (status is also written on every change).
    #[arg(long, env = "SLUICE_STATUS_UPDATE_INTERVAL", default_value_t = 60)]
    pub status_update_interval: u64,
    /// Name of the leader election Lease, in the controller's namespace (`POD_NAMESPACE`).
    #[arg(long, env = "SLUICE_ELECTION_ID", default_value = "sluice-leader")]
    pub election_id: String,
    /// Seconds a leader holds the Lease without renewing it: how fast leadership moves when
    /// the leader dies.
    #[arg(long, env = "SLUICE_ELECTION_TTL", default_value_t = 30)]
    pub election_ttl: u64,
    /// Address the proxy and admin ports bind to.
    #[arg(long, env = "SLUICE_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// HTTP port (0 picks a free one; the chosen port is logged).
    #[arg(long, env = "SLUICE_HTTP_PORT", default_value_t = 80)]
    pub http_port: u16,
    /// HTTPS port: TLS terminated by server name, or passed through (0 picks a free one).
    #[arg(long, env = "SLUICE_HTTPS_PORT", default_value_t = 443)]
    pub https_port: u16,
    /// Admin port: /healthz, /readyz, /metrics, /debug/config, /debug/backends.
    #[arg(long, env = "SLUICE_HEALTHZ_PORT", default_value_t = 10254)]
    pub healthz_port: u16,
    /// Proxy worker threads (default: one per core).
    #[arg(long, env = "SLUICE_WORKERS")]
    pub workers: Option<usize>,
    /// Log and access log format.
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Quiet time after a change before it is applied, in milliseconds (changes arriving
    /// together are applied as one; a steady stream is still applied once a second).
    #[arg(long, env = "SLUICE_DEBOUNCE_MS", default_value_t = 10)]
    pub debounce_ms: u64,
    /// Seconds in-flight requests, WebSockets and gRPC streams may take to finish once the
    /// proxy stops accepting (after SIGTERM and --shutdown-delay); what is still open then is
    /// closed (WebSocket close frames; HTTP/2 already had GOAWAY).
    #[arg(long, env = "SLUICE_SHUTDOWN_GRACE_PERIOD", default_value_t = 10)]
    pub shutdown_grace_period: u64,
    /// Seconds the proxy keeps accepting new connections after SIGTERM, with /readyz already
    /// answering 503, while endpoints and load balancers stop sending here (ingress-nginx's
    /// --shutdown-grace-period); then the drain starts.
    #[arg(long, env = "SLUICE_SHUTDOWN_DELAY", default_value_t = 0)]
    pub shutdown_delay: u64,
    /// Serve the validating admission webhook for Ingresses on this address, over HTTPS at
    /// /networking/v1/ingresses: `:8443` (on --bind-address, as ingress-nginx writes it) or
    /// `host:port`. Off by default.
    #[arg(long, env = "SLUICE_VALIDATING_WEBHOOK", value_parser = WebhookAddr::parse)]
    pub validating_webhook: Option<WebhookAddr>,
    /// PEM certificate (chain) the webhook serves; read again when the file changes.
    #[arg(
        long,
        env = "SLUICE_VALIDATING_WEBHOOK_CERTIFICATE",
        requires = "validating_webhook_key"
    )]
    pub validating_webhook_certificate: Option<PathBuf>,
    /// PEM private key of --validating-webhook-certificate.
    #[arg(
        long,
        env = "SLUICE_VALIDATING_WEBHOOK_KEY",
        requires = "validating_webhook_certificate"
    )]
    pub validating_webhook_key: Option<PathBuf>,
    /// Without a certificate file: the ValidatingWebhookConfiguration whose Service Sluice
    /// makes the webhook's certificate for, and whose caBundle it sets (Sluice-specific).
    #[arg(
        long,
        env = "SLUICE_VALIDATING_WEBHOOK_CONFIGURATION",
        conflicts_with = "validating_webhook_certificate"
    )]
    pub validating_webhook_configuration: Option<String>,
    /// The Secret (namespace/name) that keeps the certificate made for
    /// --validating-webhook-configuration, so that every replica serves the same one; made if
    /// missing (Sluice-specific).
    #[arg(
        long,
        env = "SLUICE_VALIDATING_WEBHOOK_SECRET",
        value_parser = parse_namespaced,
        requires = "validating_webhook_configuration"
    )]
    pub validating_webhook_secret: Option<NamespacedName>,
    /// Request metrics.
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Ingress selection and reading.
    #[command(flatten)]
    pub class: ClassArgs,
}

/// ingress-nginx's flags for the request metrics of `/metrics`, with its defaults (but
/// `--enable-metrics`, on).
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Export the request metrics (`nginx_ingress_controller_requests` and its histograms).
    /// On by default, where ingress-nginx's default is off.
    #[arg(long, env = "SLUICE_ENABLE_METRICS", default_value_t = true, action = ArgAction::Set)]
    pub enable_metrics: bool,
    /// Label the request metrics with the host (the rule's host as written).
    #[arg(long, env = "SLUICE_METRICS_PER_HOST", default_value_t = true, action = ArgAction::Set)]
    pub metrics_per_host: bool,
    /// Also count requests for hosts no Ingress names, each host its own series (needs
    /// --metrics-per-host).
    #[arg(long, env = "SLUICE_METRICS_PER_UNDEFINED_HOST", default_value_t = false, action = ArgAction::Set)]
    pub metrics_per_undefined_host: bool,
    /// Label with status classes (2xx, 3xx, 4xx, 5xx) instead of status codes.
    #[arg(long, env = "SLUICE_REPORT_STATUS_CLASSES", default_value_t = false, action = ArgAction::Set)]
    pub report_status_classes: bool,
    /// Buckets of the duration histograms, seconds (comma-separated).
    #[arg(
        long,
        env = "SLUICE_TIME_BUCKETS",
        value_delimiter = ',',
        default_value = "0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10"
    )]
    pub time_buckets: Vec<f64>,
    /// Buckets of request_size and response_size, bytes (comma-separated).
    #[arg(
        long,
        env = "SLUICE_LENGTH_BUCKETS",
        value_delimiter = ',',
        default_value = "10,20,30,40,50,60,70,80,90,100"
    )]
    pub length_buckets: Vec<f64>,
    /// Buckets of bytes_sent, bytes (comma-separated).
    #[arg(
        long,
        env = "SLUICE_SIZE_BUCKETS",
        value_delimiter = ',',
        default_value = "10,100,1000,10000,100000,1000000,10000000"
    )]
    pub size_buckets: Vec<f64>,
    /// Request metrics neither computed nor exported (comma-separated names, with or without
    /// the `nginx_ingress_controller_` prefix), e.g. `bytes_sent,response_size`.
    #[arg(long, env = "SLUICE_EXCLUDE_SOCKET_METRICS", value_delimiter = ',')]
    pub exclude_socket_metrics: Vec<String>,
}

impl MetricsArgs {
    /// The proxy's metrics configuration; an error names the flag at fault.
    pub fn config(&self) -> Result<sluice_proxy::MetricsConfig, String> {
        let config = sluice_proxy::MetricsConfig {
            enabled: self.enable_metrics,
            per_host: self.metrics_per_host,
            per_undefined_host: self.metrics_per_undefined_host,
            status_classes: self.report_status_classes,
            time_buckets: self.time_buckets.clone(),
            length_buckets: self.length_buckets.clone(),
            size_buckets: self.size_buckets.clone(),
            exclude: self
                .exclude_socket_metrics
                .iter()
                .filter(|n| !n.is_empty())
                .cloned()
                .collect(),
        };
        config.validate()?;
        Ok(config)
    }
}

/// `--validating-webhook`: a port, and the address to bind it on when given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookAddr {
    /// The address; `None` for ingress-nginx's `:port` form (--bind-address then).
    pub ip: Option<IpAddr>,
    /// The port.
    pub port: u16,
}

impl WebhookAddr {
    /// Parses `:port`, `host:port` or `[v6]:port`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(port) = s.strip_prefix(':') {
            let port = port.parse().map_err(|_| format!("{s:?}: not a port"))?;
            return Ok(Self { ip: None, port });
        }
        let addr: SocketAddr =
            s.parse().map_err(|_| format!("{s:?}: expected :port or address:port"))?;
        Ok(Self { ip: Some(addr.ip()), port: addr.port() })
    }

    /// The address to bind: its own, else `bind`.
    pub fn resolve(&self, bind: IpAddr) -> SocketAddr {
        SocketAddr::new(self.ip.unwrap_or(bind), self.port)
    }
}

/// `sluice check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Directory (or file) of Kubernetes manifests.
    pub dir: PathBuf,
    /// Print the result as JSON (the same document as /debug/config).
    #[arg(long)]
    pub json: bool,
    /// Ingress selection and reading.
    #[command(flatten)]
    pub class: ClassArgs,
}

/// `sluice migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Directories or files of manifests (the Ingresses, and ingress-nginx's ConfigMap if kept
    /// elsewhere); without any, the cluster of the kubeconfig (read-only).
    pub paths: Vec<PathBuf>,
    /// Output format, as kubectl's `-o`.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// When to exit 1: when an Ingress will answer 503 (default), when any Ingress moves with
    /// differences, or never.
    #[arg(long, value_enum, default_value = "503")]
    pub fail_on: FailOn,
    /// Kubeconfig file (default: KUBECONFIG, else ~/.kube/config).
    #[arg(long, conflicts_with = "paths")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long, conflicts_with = "paths")]
    pub context: Option<String>,
    /// Only these namespaces (comma-separated); default: all.
    #[arg(short, long, value_delimiter = ',', conflicts_with = "paths")]
    pub namespace: Vec<String>,
    /// ingress-nginx's ConfigMap (namespace/name), as its `--configmap`.
    #[arg(long, value_parser = parse_namespaced, default_value = "ingress-nginx/ingress-nginx-controller")]
    pub configmap: NamespacedName,
    /// The annotation prefix, as ingress-nginx's `--annotations-prefix`.
    #[arg(long, default_value = "nginx.ingress.kubernetes.io")]
    pub annotations_prefix: String,
}

/// `sluice migrate --output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for a terminal.
    Table,
    /// Markdown tables, to paste in a ticket.
    Markdown,
    /// The whole report as JSON.
    Json,
}

/// `sluice migrate --fail-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Some Ingress will answer 503.
    #[value(name = "503")]
    Answers503,
    /// Some Ingress does not move as is.
    Differences,
    /// Always exit 0 once the report is printed.
    Never,
}

/// `sluice echo`.
#[derive(Debug, Clone, Args)]
pub struct EchoArgs {
    /// Address to listen on.
    #[arg(long, env = "SLUICE_ECHO_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Name reported in every answer (tells backends apart).
    #[arg(long, env = "SLUICE_ECHO_NAME", default_value = "echo")]
    pub name: String,
    /// Serve HTTPS (h2 and HTTP/1.1) with a self-signed certificate for --tls-host, unless
    /// --tls-cert and --tls-key are given.
    #[arg(long)]
    pub tls: bool,
    /// The name the self-signed certificate is for (default: localhost).
    #[arg(long, default_value = "localhost")]
    pub tls_host: String,
    /// PEM certificate chain to serve HTTPS with.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// `sluice quickstart`.
#[derive(Debug, Clone, Args)]
pub struct QuickstartArgs {
    /// HTTP port of the proxy.
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// HTTPS port of the proxy.
    #[arg(long, default_value_t = 8443)]
    pub https_port: u16,
    /// Admin port.
    #[arg(long, default_value_t = 10254)]
    pub healthz_port: u16,
    /// The example's manifests (default: examples/quickstart, else a built-in copy).
    #[arg(long)]
    pub manifests: Option<PathBuf>,
}

fn parse_namespaced(s: &str) -> Result<NamespacedName, String> {
    NamespacedName::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_addresses_as_ingress_nginx_writes_them() {
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        let port_only = WebhookAddr::parse(":8443").unwrap();
        assert_eq!(port_only.resolve(any), "0.0.0.0:8443".parse().unwrap());
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(port_only.resolve(local), "127.0.0.1:8443".parse().unwrap());
        let given = WebhookAddr::parse("10.0.0.1:9443").unwrap();
        assert_eq!(given.resolve(any), "10.0.0.1:9443".parse().unwrap());
        assert_eq!(WebhookAddr::parse("[::1]:8443").unwrap().resolve(any).port(), 8443);
        assert!(WebhookAddr::parse("8443").is_err());
        assert!(WebhookAddr::parse(":http").is_err());
        assert!(WebhookAddr::parse(":70000").is_err());
    }
}
