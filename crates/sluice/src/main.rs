//! The `sluice` command. See `sluice --help`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use sluice::cli::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: translation is mostly allocating small objects, and
/// with mimalloc a full one takes a fifth less time, and an apply under proxy load half
/// (`bench/targets.sh`, targets 2 and 3). It asks for transparent huge pages, which
/// `sluice::alloc` keeps off (16 MB less resident memory at 10,000 Ingresses).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    sluice::alloc::keep_huge_pages_off();
    // One crypto provider for every TLS use (proxy, backends, the Kubernetes client).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let (json, default_level) = match &cli.command {
        Command::Serve(a) => (a.log_format == LogFormat::Json, "info"),
        Command::Check(_) | Command::Migrate(_) => (false, "warn"),
        _ => (false, "info"),
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }

    if let Command::Check(args) = &cli.command {
        return sluice::check::run(args);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sluice-control")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Migrate(args) = &cli.command {
        return runtime.block_on(sluice::migrate::run(args));
    }
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => sluice::serve::run(*args, |_, _, _| {}).await,
            Command::Echo(args) => sluice::echo::run(&args).await,
            Command::Quickstart(args) => sluice::quickstart::run(args).await,
            Command::Check(_) | Command::Migrate(_) => unreachable!("handled above"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
