//! `sluice quickstart`: the ingress-nginx guide's example, running locally in one command.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::cli::{Cli, Command, QuickstartArgs};

/// The example's files, built in for when `examples/quickstart` is not at hand.
const EMBEDDED: &[(&str, &str)] = &[
    ("ingress-class.yaml", include_str!("../../../examples/quickstart/ingress-class.yaml")),
    ("services.yaml", include_str!("../../../examples/quickstart/services.yaml")),
    ("ingress.yaml", include_str!("../../../examples/quickstart/ingress.yaml")),
];

/// The passed-through host.
const GAMMA: &str = "gamma.public.example.com";

/// The echo backends the example's EndpointSlices point at.
const BACKENDS: &[(&str, u16)] = &[("alpha", 18081), ("beta", 18082), ("gamma", 18083)];

/// Starts the echo backends and serves the example until interrupted.
pub async fn run(args: QuickstartArgs) -> anyhow::Result<()> {
    let dir = match args.manifests {
        Some(dir) => dir,
        None if Path::new("examples/quickstart/ingress.yaml").exists() => {
            PathBuf::from("examples/quickstart")
        }
        None => {
            let dir =
                std::env::temp_dir().join(format!("sluice-quickstart-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            for (name, text) in EMBEDDED {
                std::fs::write(dir.join(name), text)?;
            }
            dir
        }
    };
    for (name, port) in BACKENDS {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, *port));
        let started = match *name {
            // gamma terminates its own TLS: Sluice passes its connections through.
            "gamma" => crate::echo::spawn_tls(addr, name, crate::echo::self_signed(GAMMA)?).await,
            _ => crate::echo::spawn(addr, name).await,
        };
        started.map_err(|e| {
            anyhow::anyhow!("cannot start the {name} echo backend on {addr}: {e} (is another quickstart running?)")
        })?;
    }
    let dir_arg = dir.display().to_string();
    let http = args.http_port.to_string();
    let https = args.https_port.to_string();
    let admin = args.healthz_port.to_string();
    let cli = Cli::try_parse_from([
        "sluice",
        "serve",
        "--manifests",
        &dir_arg,
        "--bind-address",
        "127.0.0.1",
        "--http-port",
        &http,
        "--https-port",
        &https,
        "--enable-ssl-passthrough",
        "--healthz-port",
        &admin,
    ])?;
    let Command::Serve(serve_args) = cli.command else { unreachable!("parsed a serve command") };
    crate::serve::run(*serve_args, move |http, https, admin| {
        let (hp, sp) = (http.port(), https.map_or(0, |a| a.port()));
        let r = |host: &str, port: u16| format!("--resolve {host}:{port}:127.0.0.1");
        println!(
            "\nSluice is serving {dir_arg} on http://{http} and https://127.0.0.1:{sp} (admin on http://{admin}).\n\nTry:\n\
             \x20 curl -k {p} https://public.example.com:{sp}/alpha     # TLS by Sluice (generated certificate)\n\
             \x20 curl -k {p} https://public.example.com:{sp}/beta\n\
             \x20 curl -i {ph} http://public.example.com:{hp}/alpha      # 308 to HTTPS\n\
             \x20 curl -k {g} https://{GAMMA}:{sp}/   # passed through: gamma's own certificate\n\
             \x20 curl -k -i {p} https://public.example.com:{sp}/nothing-here    # 404: no rule matches\n\
             \x20 curl http://{admin}/debug/config\n\
             \x20 curl http://{admin}/metrics\n\n\
             Edit {dir_arg}/*.yaml while it runs: changes apply live. Ctrl-C stops.\n",
            p = r("public.example.com", sp),
            ph = r("public.example.com", hp),
            g = r(GAMMA, sp),
        );
    })
    .await
}
