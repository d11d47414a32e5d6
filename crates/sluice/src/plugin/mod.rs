//! `kubectl sluice` (the `kubectl-sluice` binary): inspect a running Sluice from the
//! operator's machine, as `kubectl ingress-nginx` does for ingress-nginx. `backends`,
//! `certs`, `conf` and `info` ask a controller pod's admin port through the API server's pod
//! proxy; `ingresses` reads the API only; `lint` is the migration report.

mod cluster;
pub mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Parser, Subcommand, ValueEnum};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Client;
use kube::api::{Api, ListParams};
use serde::Serialize;
use serde_json::Value;

use crate::admin::InfoView;
use crate::certs::CertView;
use crate::cli::{FailOn, MigrateArgs, OutputFormat};
use sluice_model::NamespacedName;

pub use cluster::{DEFAULT_ADMIN_PORT, admin_port, choose, in_deployment};

/// The namespace, Deployment, Service and container names that `deploy/manifests` and the Helm
/// chart (release `sluice`) give the controller.
pub const DEFAULT_NAME: &str = "sluice";

/// Inspect a running Sluice ingress controller through the Kubernetes API server.
#[derive(Debug, Parser)]
#[command(name = "kubectl-sluice", bin_name = "kubectl sluice", version)]
pub struct PluginCli {
    /// Which cluster and which controller pod.
    #[command(flatten)]
    pub connection: Connection,
    /// What to show.
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// How the plugin reaches the cluster and chooses the controller pod (global flags).
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The kubeconfig file (default: KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The controller's namespace (default: sluice, as the manifests and the chart install
    /// it); for `ingresses`, the Ingresses' namespace (default: the context's); for `lint`, the
    /// namespaces to report on (comma-separated; default: all).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The controller's Deployment: its pods are those of its ReplicaSets.
    #[arg(long, global = true, default_value = DEFAULT_NAME)]
    pub deployment: String,
    /// Ask this pod rather than one of the Deployment's.
    #[arg(long, global = true)]
    pub pod: Option<String>,
    /// Ask a pod matching this label selector rather than one of the Deployment's.
    #[arg(short = 'l', long, global = true)]
    pub selector: Option<String>,
    /// The controller's container: its port named `metrics` is the admin port.
    #[arg(long, global = true, default_value = DEFAULT_NAME)]
    pub container: String,
    /// The admin port (`--healthz-port`), when the container names none `metrics` (default:
    /// 10254).
    #[arg(long, global = true)]
    pub port: Option<u16>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "table")]
    pub output: Output,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Readable tables.
    Table,
    /// JSON (the admin port's documents as they are).
    Json,
    /// Markdown, to paste in a ticket (`lint` only).
    Markdown,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// The backends (Service ports) and their ready endpoints, as the controller routes to them.
    Backends {
        /// Show only this backend.
        #[arg(long, conflicts_with = "list")]
        backend: Option<String>,
        /// Print the backend names, one a line.
        #[arg(long)]
        list: bool,
    },
    /// The certificate presented for a host: subject, names, issuer, validity (never keys).
    Certs {
        /// The server name (default: every host with a certificate of its own, and the default
        /// certificate).
        #[arg(long)]
        host: Option<String>,
    },
    /// The routing table of one host (or of all): paths, targets, endpoints.
    Conf {
        /// The host (`_` for the catch-all).
        #[arg(long)]
        host: Option<String>,
    },
    /// Every Ingress rule and path, with its Service and ready endpoints (from the API server).
    #[command(visible_aliases = ["ingress", "ing"])]
    Ingresses {
        /// Show only this host.
        #[arg(long)]
        host: Option<String>,
        /// Ingresses of every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// The controller's Service and addresses, version, and configuration in force.
    Info {
        /// The controller's Service (default: the Deployment's name).
        #[arg(long)]
        service: Option<String>,
    },
    /// The migration report for the current context: what moving from ingress-nginx changes,
    /// per Ingress (`sluice migrate`; `-n` limits it to namespaces, default all).
    Lint {
        /// When to exit 1: when an Ingress will answer 503, when any Ingress moves with
        /// differences, or never.
        #[arg(long, value_enum, default_value = "503")]
        fail_on: FailOn,
        /// ingress-nginx's ConfigMap (namespace/name), as its `--configmap`.
        #[arg(long, default_value = "ingress-nginx/ingress-nginx-controller")]
        configmap: String,
        /// The annotation prefix, as ingress-nginx's `--annotations-prefix`.
        #[arg(long, default_value = "nginx.ingress.kubernetes.io")]
        annotations_prefix: String,
    },
}

/// Runs the plugin; errors go to stderr and exit status 1.
pub fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = PluginCli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let PluginCommand::Lint { fail_on, configmap, annotations_prefix } = &cli.command {
        let args = match migrate_args(&cli.connection, *fail_on, configmap, annotations_prefix) {
            Ok(args) => args,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
        };
        // The report prints itself; its exit status is `sluice migrate`'s (0, 1 by
        // `--fail-on`, 2 when the cluster cannot be read).
        return runtime.block_on(crate::migrate::run(&args));
    }
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command, printing to stdout.
pub async fn run(cli: PluginCli) -> anyhow::Result<()> {
    let conn = &cli.connection;
    let json = match conn.output {
        Output::Table => false,
        Output::Json => true,
        Output::Markdown => return Err(anyhow!("-o markdown is for `lint` only")),
    };
    if let PluginCommand::Lint { fail_on, configmap, annotations_prefix } = &cli.command {
        let args = migrate_args(conn, *fail_on, configmap, annotations_prefix)?;
        return match crate::migrate::run(&args).await {
            code if code == ExitCode::SUCCESS => Ok(()),
            _ => Err(anyhow!("the migration report found what --fail-on {fail_on:?} gates on")),
        };
    }
    let (client, context_ns) = cluster::client(conn).await?;
    let controller_ns = conn.namespace.clone().unwrap_or_else(|| DEFAULT_NAME.to_string());
    let out = match &cli.command {
        PluginCommand::Ingresses { host, all_namespaces } => {
            let ns = conn.namespace.clone().unwrap_or(context_ns);
            ingresses(&client, (!*all_namespaces).then_some(ns.as_str()), host.as_deref(), json)
                .await?
        }
        command => {
            let (pod, port) = cluster::controller_pod(&client, &controller_ns, conn).await?;
            let ask = Ask { client: &client, pod: &pod, port };
            match command {
                PluginCommand::Backends { backend, list } => {
                    backends(&ask, backend.as_deref(), *list, json).await?
                }
                PluginCommand::Certs { host } => certs(&ask, host.as_deref(), json).await?,
                PluginCommand::Conf { host } => conf(&ask, host.as_deref(), json).await?,
                PluginCommand::Info { service } => {
                    let service = service.as_deref().unwrap_or(&conn.deployment);
                    info(&ask, &controller_ns, service, json).await?
                }
                PluginCommand::Ingresses { .. } | PluginCommand::Lint { .. } => {
                    unreachable!("above")
                }
            }
        }
    };
    print!("{out}");
    Ok(())
}

/// One controller pod's admin port.
struct Ask<'a> {
    client: &'a Client,
    pod: &'a Pod,
    port: u16,
}

impl Ask<'_> {
    async fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        cluster::admin_json(self.client, self.pod, self.port, path).await
    }
}

fn pretty(value: &impl Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

async fn backends(
    ask: &Ask<'_>,
    name: Option<&str>,
    list: bool,
    json: bool,
) -> anyhow::Result<String> {
    let mut all: Vec<Value> = ask.json("/debug/backends").await?;
    if list {
        return if json {
            let names: Vec<&Value> = all.iter().map(|b| &b["name"]).collect();
            pretty(&names)
        } else {
            Ok(render::backend_names(&all))
        };
    }
    if let Some(name) = name {
        all.retain(|b| b["name"] == name);
        if all.is_empty() {
            return Err(anyhow!("no backend {name} (see `kubectl sluice backends --list`)"));
        }
        if json {
            return pretty(&all[0]);
        }
    }
    if json { pretty(&all) } else { Ok(render::backends(&all)) }
}

async fn certs(ask: &Ask<'_>, host: Option<&str>, json: bool) -> anyhow::Result<String> {
    match host {
        Some(host) => {
            // The path segment: server names are letters, digits, dots, dashes and `*`.
            if host.is_empty()
                || !host.chars().all(|c| c.is_ascii_alphanumeric() || ".-*_".contains(c))
            {
                return Err(anyhow!("{host:?} is not a host name"));
            }
            let cert: CertView = ask.json(&format!("/debug/certs/{host}")).await?;
            if json { pretty(&cert) } else { Ok(render::cert(&cert)) }
        }
        None => {
            let list: Vec<CertView> = ask.json("/debug/certs").await?;
            if json { pretty(&list) } else { Ok(render::certs(&list)) }
        }
    }
}

async fn conf(ask: &Ask<'_>, host: Option<&str>, json: bool) -> anyhow::Result<String> {
    let config: Value = ask.json("/debug/config").await?;
    let hosts = render::config_hosts(&config, host);
    if let (Some(h), true) = (host, hosts.is_empty()) {
        return Err(anyhow!(
            "no rules for host {h} (generation {}): its requests go to the catch-all, see `kubectl sluice conf --host _`",
            config["generation"]
        ));
    }
    if json {
        return if host.is_some() { pretty(hosts[0]) } else { pretty(&config["hosts"]) };
    }
    Ok(format!("# generation {}\n{}", config["generation"], render::conf(&config, &hosts)))
}

async fn ingresses(
    client: &Client,
    namespace: Option<&str>,
    host: Option<&str>,
    json: bool,
) -> anyhow::Result<String> {
    let (ingress_api, slice_api): (Api<Ingress>, Api<EndpointSlice>) = match namespace {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let scope = namespace.map_or("all namespaces".to_string(), |ns| format!("namespace {ns}"));
    let ingresses = ingress_api
        .list(&ListParams::default())
        .await
        .map_err(|e| cluster::api_error(e, &format!("Ingresses in {scope}")))?;
    let slices = slice_api
        .list(&ListParams::default())
        .await
        .map_err(|e| cluster::api_error(e, &format!("EndpointSlices in {scope}")))?;
    let ready = render::ready_endpoints(&slices.items);
    let rows = render::ingress_rows(&ingresses.items, &ready, host);
    if json { pretty(&rows) } else { Ok(render::ingresses(&rows, namespace.is_none())) }
}

/// What `info -o json` prints.
#[derive(Serialize)]
struct InfoJson<'a> {
    service: Option<&'a render::ServiceInfo>,
    pod: &'a render::PodInfo,
    controller: &'a InfoView,
}

async fn info(ask: &Ask<'_>, namespace: &str, service: &str, json: bool) -> anyhow::Result<String> {
    let controller: InfoView = ask.json("/debug/info").await?;
    let services: Api<Service> = Api::namespaced(ask.client.clone(), namespace);
    // The controller answers even when its Service cannot be read: say why, show the rest.
    let service = match services.get(service).await {
        Ok(s) => Ok(service_info(&s, namespace)),
        Err(e) => {
            Err(format!("{:#}", cluster::api_error(e, &format!("Service {namespace}/{service}"))))
        }
    };
    let status = ask.pod.status.as_ref();
    let pod = render::PodInfo {
        name: format!("{namespace}/{}", ask.pod.metadata.name.as_deref().unwrap_or_default()),
        ip: status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
    };
    if json {
        return pretty(&InfoJson {
            service: service.as_ref().ok(),
            pod: &pod,
            controller: &controller,
        });
    }
    Ok(render::info(service.as_ref().map_err(String::as_str), &pod, &controller))
}

fn service_info(s: &Service, namespace: &str) -> render::ServiceInfo {
    let spec = s.spec.clone().unwrap_or_default();
    let mut external: Vec<String> = s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|i| i.ip.iter().chain(i.hostname.iter()).cloned())
        .collect();
    if external.is_empty() {
        external = spec.external_ips.clone().unwrap_or_default();
    }
    render::ServiceInfo {
        name: format!("{namespace}/{}", s.metadata.name.as_deref().unwrap_or_default()),
        kind: spec.type_.clone().unwrap_or_else(|| "ClusterIP".into()),
        cluster_ip: spec.cluster_ip.clone().unwrap_or_default(),
        external,
        ports: spec
            .ports
            .iter()
            .flatten()
            .map(|p| {
                let name = p.name.as_deref().map(|n| format!("{n} ")).unwrap_or_default();
                format!("{name}{}/{}", p.port, p.protocol.as_deref().unwrap_or("TCP"))
            })
            .collect(),
    }
}

/// `sluice migrate`'s arguments for `lint`: the cluster of the plugin's kubeconfig and
/// context, the namespaces of `-n` (comma-separated; default all), the report in `-o`'s format.
pub fn migrate_args(
    conn: &Connection,
    fail_on: FailOn,
    configmap: &str,
    annotations_prefix: &str,
) -> anyhow::Result<MigrateArgs> {
    Ok(MigrateArgs {
        paths: Vec::new(),
        output: match conn.output {
            Output::Table => OutputFormat::Table,
            Output::Json => OutputFormat::Json,
            Output::Markdown => OutputFormat::Markdown,
        },
        fail_on,
        kubeconfig: conn.kubeconfig.clone(),
        context: conn.context.clone(),
        namespace: conn
            .namespace
            .iter()
            .flat_map(|n| n.split(','))
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect(),
        configmap: NamespacedName::parse(configmap)
            .map_err(|e| anyhow!("--configmap {configmap}: {e}"))?,
        annotations_prefix: annotations_prefix.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<PluginCli, clap::Error> {
        PluginCli::try_parse_from(std::iter::once("kubectl-sluice").chain(args.iter().copied()))
    }

    #[test]
    fn flags_default_to_the_charts_names_and_go_anywhere_on_the_line() {
        let cli = parse(&["backends", "-n", "edge", "--pod", "p-1"]).unwrap();
        assert_eq!(cli.connection.namespace.as_deref(), Some("edge"));
        assert_eq!(cli.connection.pod.as_deref(), Some("p-1"));
        assert_eq!(
            (cli.connection.deployment.as_str(), cli.connection.container.as_str()),
            ("sluice", "sluice")
        );
        assert!(
            parse(&["backends", "--backend", "a", "--list"]).is_err(),
            "as ingress-nginx's: one or the other"
        );
        assert!(matches!(
            parse(&["ing", "-A"]).unwrap().command,
            PluginCommand::Ingresses { all_namespaces: true, .. }
        ));
    }

    #[test]
    fn lint_passes_the_plugins_context_and_namespaces_to_migrate() {
        let cli = parse(&[
            "lint",
            "--context",
            "prod",
            "-n",
            "a,b",
            "-o",
            "markdown",
            "--fail-on",
            "never",
        ])
        .unwrap();
        let PluginCommand::Lint { fail_on, configmap, annotations_prefix } = &cli.command else {
            panic!()
        };
        let args = migrate_args(&cli.connection, *fail_on, configmap, annotations_prefix).unwrap();
        assert!(args.paths.is_empty(), "the cluster, not files");
        assert_eq!(args.context.as_deref(), Some("prod"));
        assert_eq!(args.namespace, ["a", "b"]);
        assert_eq!((args.output, args.fail_on), (OutputFormat::Markdown, FailOn::Never));
        assert_eq!(args.configmap.to_string(), "ingress-nginx/ingress-nginx-controller");
        let all = parse(&["lint"]).unwrap();
        let PluginCommand::Lint { fail_on, configmap, annotations_prefix } = &all.command else {
            panic!()
        };
        let args = migrate_args(&all.connection, *fail_on, configmap, annotations_prefix).unwrap();
        assert!(args.namespace.is_empty(), "every namespace by default");
        assert_eq!(args.fail_on, FailOn::Answers503);
    }
}
