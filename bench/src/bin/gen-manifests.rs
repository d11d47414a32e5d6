//! Writes the synthetic cluster of [`sluice_bench::generate`] as JSON manifests that
//! `sluice serve --manifests DIR` and `sluice check DIR` load (layout: see
//! [`sluice_bench::manifests`]).
//!
//! ```text
//! gen-manifests [--ingresses N] [--endpoints M] [--endpoint-addr IP:PORT] [--tls | --tls-default] DIR
//! ```
//!
//! - `--ingresses N` (10000): the scale, `Scale::of(N)`: N Ingresses, 2N Services, 5N
//!   endpoints unless `--endpoints` says otherwise;
//! - `--endpoint-addr IP:PORT`: the Services of Ingress 0 (`svc-0` and `svc-1` in `ns-0`, behind
//!   host `app-0.ns-0.example.com`) get a single ready endpoint at that address instead of
//!   their synthetic ones, so that a real backend (`sluice echo --listen IP:PORT`) answers
//!   requests for that host. The other endpoints stay unroutable 10.x addresses.
//! - `--tls`: every Ingress gets a `tls` section for its hosts and a `kubernetes.io/tls` Secret
//!   of its own (`tls-ing-{i}`, in its namespace) with a self-signed ECDSA P-256 certificate
//!   for them: N certificates, written to `ns-K/secrets.json`;
//! - `--tls-default`: instead, one such Secret, `ns-0/bench-default-tls`, and no `tls`
//!   section: the single-certificate setup, for `sluice serve --default-ssl-certificate
//!   ns-0/bench-default-tls`, which then presents it for every host.

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use sluice_bench::{Scale, generate, host, manifests, tls, with_local_backend};

const USAGE: &str = "usage: gen-manifests [--ingresses N] [--endpoints M] [--endpoint-addr IP:PORT] \
[--tls | --tls-default] DIR";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut ingresses = 10_000;
    let mut endpoints = None;
    let mut endpoint_addr: Option<SocketAddrV4> = None;
    let (mut tls_hosts, mut tls_default) = (false, false);
    let mut dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--ingresses" => ingresses = parse(&value("--ingresses")?, "--ingresses")?,
            "--endpoints" => endpoints = Some(parse(&value("--endpoints")?, "--endpoints")?),
            "--endpoint-addr" => {
                endpoint_addr = Some(parse(&value("--endpoint-addr")?, "--endpoint-addr")?)
            }
            "--tls" => tls_hosts = true,
            "--tls-default" => tls_default = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            a if a.starts_with('-') => return Err(format!("unknown option {a}")),
            a if dir.is_none() => dir = Some(PathBuf::from(a)),
            a => return Err(format!("one directory only, not also {a}")),
        }
    }
    let dir = dir.ok_or("no directory given")?;
    if tls_hosts && tls_default {
        return Err("--tls and --tls-default exclude each other".into());
    }
    if ingresses == 0 {
        return Err("--ingresses must be at least 1".into());
    }
    let mut scale = Scale::of(ingresses);
    if let Some(m) = endpoints {
        scale.endpoints = m;
    }
    let started = Instant::now();
    let mut snapshot = generate(scale);
    if let Some(addr) = endpoint_addr {
        with_local_backend(&mut snapshot, 0, addr);
    }
    if tls_hosts {
        let made = tls::with_tls_hosts(&mut snapshot);
        eprintln!("made {made} certificates, one per Ingress");
    }
    if tls_default {
        let secret = tls::with_default_certificate(&mut snapshot);
        eprintln!("made one certificate: use sluice serve --default-ssl-certificate {secret}");
    }
    let written = manifests::write(&snapshot, &dir).map_err(|e| e.to_string())?;
    eprintln!(
        "wrote {} objects ({} Ingresses, {} Services, {} EndpointSlices, {} Secrets) in {} files, {:.1} MB, to {} in {:.1} s",
        written.objects,
        snapshot.ingresses.len(),
        snapshot.services.len(),
        snapshot.endpoint_slices.len(),
        snapshot.secrets.len(),
        written.files,
        written.bytes as f64 / 1e6,
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    if let Some(addr) = endpoint_addr {
        eprintln!("host {} routes to {addr}", host(0));
    }
    Ok(())
}

fn parse<T: std::str::FromStr>(s: &str, name: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| format!("{name} {s:?}: {e}"))
}
