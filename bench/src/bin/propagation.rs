//! End-to-end probes of the control plane of a real `sluice serve --manifests DIR` (the release
//! binary, one proxy worker), on a directory written by `gen-manifests`:
//!
//! - `apply` (issue 5, target 2): with the directory loaded, changes one Ingress (an
//!   incremental update: it is alone on its host) and, separately, one EndpointSlice (an
//!   endpoint-only change), `--changes` times each, and reports how long Sluice took to apply
//!   each (`took_ms` of its "applied configuration" log line: rescan, parse, translate), the
//!   time from the write to that log line (which includes the debounce), and Sluice's CPU time
//!   per apply (robust to a busy machine, unlike wall time).
//! - `propagate` (issue 5, target 3): while wrk loads an existing route on kept-alive
//!   connections, writes an Ingress for a new host `--changes` times and measures, each time,
//!   from the file renamed into place to the first 200 answer for that host (a kept-alive
//!   client sends back-to-back requests; 404 means "not yet"). Reports the percentiles and
//!   wrk's failures, which must be zero.
//! - `newapp` (issue 15, target 5): the same with a whole new application per change: one new
//!   file `probe/newapp-N.json` holding a List of an Ingress for a new host, two Services and
//!   two EndpointSlices (their endpoint the running backend); the time from the rename to the
//!   first 200 on that host ("live"), then from the file's removal to the first 404 ("gone").
//!   Reports both, the failed requests, and how Sluice made each table (the `update` field of
//!   its log line: `full` is a whole translation, anything else an incremental update).
//! - `memory` (issue 5 target 4, issue 15 target 6): VmRSS and VmHWM (`/proc/PID/status`)
//!   after loading and serving some traffic, then across `--changes` consecutive configuration
//!   changes, each waited for: `--change mixed` (a new host, an Ingress annotation, an
//!   endpoint's readiness, in turn) or `--change newapp` (a new application as `newapp`
//!   writes it, then its removal, in turn).
//! - `tls` (issue 15, target 7): two Sluices at once, both pinned to the server CPU: one on
//!   `--manifests` (written with `gen-manifests --tls`: a certificate per host) and one on
//!   `--single-manifests` (written with `--tls-default`: one default certificate). First
//!   checks, for a sample of hosts, that each presents the certificate it should; then
//!   `--pairs` pairs of `--duration-s` runs, alternating the two, of `--clients` concurrent
//!   clients making full TLS 1.3 handshakes (no resumption, X25519, no request) with a server
//!   name drawn at random among all the hosts; reports handshakes/s and Sluice's CPU per
//!   handshake for each, the median of the per-pair ratios, the VmRSS of each and so the
//!   memory per certificate; last, `--rotations` times, replaces one random host's Secret by a
//!   new certificate and measures from the write to the first handshake with that server name
//!   that presents it.
//!
//! Every probe waits for an apply by reading Sluice's JSON log (`--log-format json`): each
//! applied configuration logs its `generation` (the `sluice_config_generation` gauge of
//! `/metrics`, which `memory` checks at the end), `update` and `took_ms`. Nothing sleeps
//! blindly: Sluice is ready when `/readyz` answers 200, the backend when it accepts
//! connections.
//!
//! ```text
//! propagation apply|propagate|newapp|memory|tls --manifests DIR [options]
//!   --sluice PATH          the sluice binary (target/release/sluice)
//!   --sluice-arg ARG       one more argument to `sluice serve` (repeatable), e.g.
//!                          --sluice-arg=--default-ssl-certificate=ns-0/bench-default-tls
//!   --backend IP:PORT      where `sluice echo` listens: gen-manifests' --endpoint-addr
//!                          (propagate, newapp and memory; default 127.0.0.1:28493)
//!   --http-port P --https-port P --admin-port P   Sluice's ports (28490, 28491, 28492)
//!   --server-cpu N         pin Sluice and the backend to CPU N (taskset); run this probe itself
//!                          pinned to the load generator's CPU (wrk inherits it)
//!   --debounce-ms N        Sluice's --debounce-ms (default: Sluice's, 10)
//!   --changes N            changes (apply: of each kind, 20; propagate and newapp: 200;
//!                          memory: 1000)
//!   --change mixed|newapp  memory: the kind of changes (mixed)
//!   --connections N        wrk connections (16)
//!   --traffic-s N          memory: seconds of wrk traffic before measuring (5)
//!   --timeout-s N          longest wait for one change (30)
//!   --single-manifests DIR tls: the single-certificate setup (gen-manifests --tls-default)
//!   --single-ports H,S,A   tls: its HTTP, HTTPS and admin ports (28494,28495,28496)
//!   --clients N            tls: concurrent handshaking clients (8)
//!   --duration-s N         tls: seconds per run (5)
//!   --pairs N              tls: pairs of runs (3)
//!   --rotations N          tls: certificate rotations (20; 0: none)
//! ```
//!
//! Results go to stdout as `key=value` lines (for `bench/targets.sh`); progress to stderr. The
//! probe changes files in DIR: use a copy made for it.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sluice_bench::{CLASS_NAME, NAMESPACES, host, manifests, namespace, services_of, tls};
use tokio::sync::mpsc;

type Result<T, E = String> = std::result::Result<T, E>;

const USAGE: &str = "usage: propagation apply|propagate|newapp|memory|tls --manifests DIR \
[--sluice PATH] [--sluice-arg ARG]... [--backend IP:PORT] [--http-port P] [--https-port P] \
[--admin-port P] [--server-cpu N] [--debounce-ms N] [--changes N] [--change mixed|newapp] \
[--connections N] [--traffic-s N] [--timeout-s N] [--single-manifests DIR] [--single-ports H,S,A] \
[--clients N] [--duration-s N] [--pairs N] [--rotations N]";

/// The namespace whose files the `apply` and `memory` probes rewrite.
const CHANGED_NAMESPACE: usize = 7;

fn main() -> ExitCode {
    let opts = match Opts::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match opts.mode {
            Mode::Apply => apply(&opts).await,
            Mode::Propagate => propagate(&opts).await,
            Mode::NewApp => newapp(&opts).await,
            Mode::Memory => memory(&opts).await,
            Mode::Tls => tls_hosts(&opts).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Apply,
    Propagate,
    NewApp,
    Memory,
    Tls,
}

/// What `memory` changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChangeKind {
    /// A new host, an Ingress annotation, an endpoint's readiness, in turn.
    Mixed,
    /// A new application (`newapp`'s file), then its removal, in turn.
    NewApp,
}

/// The command line (see the module documentation).
#[derive(Debug)]
struct Opts {
    mode: Mode,
    manifests: PathBuf,
    sluice: PathBuf,
    sluice_args: Vec<String>,
    backend: SocketAddrV4,
    http_port: u16,
    https_port: u16,
    admin_port: u16,
    server_cpu: Option<usize>,
    debounce_ms: Option<u64>,
    changes: usize,
    change: ChangeKind,
    connections: usize,
    traffic_s: u64,
    timeout: Duration,
    single_manifests: Option<PathBuf>,
    single_ports: [u16; 3],
    clients: usize,
    duration_s: u64,
    pairs: usize,
    rotations: usize,
}

impl Opts {
    fn parse() -> Result<Opts> {
        let mut args = std::env::args().skip(1);
        let mode = match args.next().as_deref() {
            Some("apply") => Mode::Apply,
            Some("propagate") => Mode::Propagate,
            Some("newapp") => Mode::NewApp,
            Some("memory") => Mode::Memory,
            Some("tls") => Mode::Tls,
            Some(other) => return Err(format!("unknown probe {other:?}")),
            None => return Err("which probe?".into()),
        };
        let mut o = Opts {
            mode,
            manifests: PathBuf::new(),
            sluice: PathBuf::from("target/release/sluice"),
            sluice_args: Vec::new(),
            backend: "127.0.0.1:28493".parse().expect("a valid address"),
            http_port: 28490,
            https_port: 28491,
            admin_port: 28492,
            server_cpu: None,
            debounce_ms: None,
            changes: match mode {
                Mode::Apply => 20,
                Mode::Propagate | Mode::NewApp | Mode::Tls => 200,
                Mode::Memory => 1000,
            },
            change: ChangeKind::Mixed,
            connections: 16,
            traffic_s: 5,
            timeout: Duration::from_secs(30),
            single_manifests: None,
            single_ports: [28494, 28495, 28496],
            clients: 8,
            duration_s: 5,
            pairs: 3,
            rotations: 20,
        };
        while let Some(arg) = args.next() {
            // --flag VALUE, or --flag=VALUE (needed when the value starts with --).
            let (flag, value) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), v.to_string()),
                _ => {
                    let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
                    (arg, value)
                }
            };
            match flag.as_str() {
                "--manifests" => o.manifests = PathBuf::from(value),
                "--sluice" => o.sluice = PathBuf::from(value),
                "--sluice-arg" => o.sluice_args.push(value),
                "--backend" => o.backend = parse(&flag, &value)?,
                "--http-port" => o.http_port = parse(&flag, &value)?,
                "--https-port" => o.https_port = parse(&flag, &value)?,
                "--admin-port" => o.admin_port = parse(&flag, &value)?,
                "--server-cpu" => o.server_cpu = Some(parse(&flag, &value)?),
                "--debounce-ms" => o.debounce_ms = Some(parse(&flag, &value)?),
                "--changes" => o.changes = parse(&flag, &value)?,
                "--change" => {
                    o.change = match value.as_str() {
                        "mixed" => ChangeKind::Mixed,
                        "newapp" => ChangeKind::NewApp,
                        _ => return Err(format!("--change {value:?}: mixed or newapp")),
                    }
                }
                "--connections" => o.connections = parse(&flag, &value)?,
                "--traffic-s" => o.traffic_s = parse(&flag, &value)?,
                "--timeout-s" => o.timeout = Duration::from_secs(parse(&flag, &value)?),
                "--single-manifests" => o.single_manifests = Some(PathBuf::from(value)),
                "--single-ports" => {
                    let ports: Vec<u16> =
                        value.split(',').map(|p| parse(&flag, p)).collect::<Result<_>>()?;
                    o.single_ports = ports
                        .try_into()
                        .map_err(|_| format!("{flag} {value:?}: three ports, HTTP,HTTPS,ADMIN"))?;
                }
                "--clients" => o.clients = parse(&flag, &value)?,
                "--duration-s" => o.duration_s = parse(&flag, &value)?,
                "--pairs" => o.pairs = parse(&flag, &value)?,
                "--rotations" => o.rotations = parse(&flag, &value)?,
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        for (dir, option) in [
            (Some(&o.manifests), "--manifests"),
            (o.single_manifests.as_ref(), "--single-manifests"),
        ] {
            let Some(dir) = dir else { continue };
            if dir.as_os_str().is_empty() {
                return Err(format!("{option} DIR is required"));
            }
            if !dir.join("ingressclasses.json").is_file() {
                return Err(format!(
                    "{} was not written by gen-manifests (no ingressclasses.json)",
                    dir.display()
                ));
            }
        }
        if o.mode == Mode::Tls {
            if o.single_manifests.is_none() {
                return Err("tls needs --single-manifests DIR (gen-manifests --tls-default)".into());
            }
            if o.clients == 0 || o.duration_s == 0 || o.pairs == 0 {
                return Err("--clients, --duration-s and --pairs must be at least 1".into());
            }
        }
        if !o.sluice.is_file() {
            return Err(format!(
                "no sluice binary at {} (cargo build --release -p sluice)",
                o.sluice.display()
            ));
        }
        if o.changes == 0 {
            return Err("--changes must be at least 1".into());
        }
        Ok(o)
    }

    fn http(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http_port))
    }

    fn admin(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.admin_port))
    }

    /// The Sluice the options describe: on `--manifests`, at the port options.
    fn launch(&self) -> Launch {
        Launch {
            manifests: self.manifests.clone(),
            http_port: self.http_port,
            https_port: self.https_port,
            admin_port: self.admin_port,
            args: self.sluice_args.clone(),
        }
    }

    /// A command for `program`, pinned to the server CPU when one is set.
    fn on_server_cpu(&self, program: &Path) -> Command {
        match self.server_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(program);
                c
            }
            None => Command::new(program),
        }
    }
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| format!("{flag} {value:?}: {e}"))
}

macro_rules! say {
    ($($arg:tt)*) => { eprintln!("==> {}", format!($($arg)*)) };
}

// --- processes -------------------------------------------------------------------------------

/// A child process killed when dropped (every process the probe starts).
struct Process {
    name: &'static str,
    child: Child,
}

impl Process {
    fn spawn(name: &'static str, mut cmd: Command) -> Result<Process> {
        let child = cmd.spawn().map_err(|e| format!("cannot start {name} ({cmd:?}): {e}"))?;
        Ok(Process { name, child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if the process has exited.
    fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited ({status})", self.name)),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One "applied configuration" line of Sluice's log.
#[derive(Clone, Debug)]
struct Applied {
    generation: u64,
    took_ms: f64,
    /// How the table was made (its `update` field): `full` for a whole translation, else the
    /// kind of incremental update (`endpoints`, `ingresses`, ...). Empty if not logged.
    update: String,
    /// When the probe read the line.
    seen: Instant,
}

/// A running `sluice serve`, its applies read from its JSON log.
struct Sluice {
    process: Process,
    applied: mpsc::UnboundedReceiver<Applied>,
    /// The last lines of its log, for error messages.
    tail: Arc<Mutex<VecDeque<String>>>,
    generation: u64,
}

/// One `sluice serve` to start: what it serves, on which ports, with which more arguments.
#[derive(Clone, Debug)]
struct Launch {
    manifests: PathBuf,
    http_port: u16,
    https_port: u16,
    admin_port: u16,
    /// More arguments to `sluice serve` (e.g. `--default-ssl-certificate`).
    args: Vec<String>,
}

impl Launch {
    fn admin(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.admin_port))
    }

    fn https(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.https_port))
    }
}

impl Sluice {
    /// Starts Sluice as `launch` says and waits until `/readyz` answers 200 and the first
    /// configuration is applied; returns it with that first apply.
    async fn start(o: &Opts, launch: &Launch) -> Result<(Sluice, Applied)> {
        for port in [launch.http_port, launch.https_port, launch.admin_port] {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Err(format!("port {port} is in use (see the port options)"));
            }
        }
        let mut cmd = o.on_server_cpu(&o.sluice);
        cmd.arg("serve")
            .arg("--manifests")
            .arg(&launch.manifests)
            .args(["--workers", "1", "--bind-address", "127.0.0.1", "--log-format", "json"])
            .args(["--http-port", &launch.http_port.to_string()])
            .args(["--https-port", &launch.https_port.to_string()])
            .args(["--healthz-port", &launch.admin_port.to_string()])
            .args(&launch.args);
        if let Some(ms) = o.debounce_ms {
            cmd.args(["--debounce-ms", &ms.to_string()]);
        }
        // The access log (stdout) is not needed; the log (stderr) is read line by line.
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info");
        let started = Instant::now();
        let mut process = Process::spawn("sluice", cmd)?;
        let stderr = process.child.stderr.take().expect("stderr is piped");
        let (tx, applied) = mpsc::unbounded_channel();
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let lines = tail.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(std::result::Result::ok) {
                if let Some(a) = applied_line(&line) {
                    let _ = tx.send(a);
                }
                let mut tail = lines.lock().expect("not poisoned");
                if tail.len() == 20 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let mut sluice = Sluice { process, applied, tail, generation: 0 };
        say!("started sluice (pid {}) on {}", sluice.process.pid(), launch.manifests.display());
        // Loading 10,000 Ingresses takes seconds; on a busy machine, more.
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            sluice.process.check_alive().map_err(|e| sluice.failed(&e))?;
            if let Ok(200) = get_status(launch.admin(), "localhost", "/readyz").await {
                break;
            }
            if Instant::now() > deadline {
                return Err(sluice.failed("not ready after 300 s"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let first = sluice.next_applied(Instant::now(), o.timeout).await?;
        say!(
            "sluice ready in {:.1} s; first configuration applied in {:.0} ms",
            started.elapsed().as_secs_f64(),
            first.took_ms
        );
        Ok((sluice, first))
    }

    /// Waits for the next apply (a generation above the last one seen), up to `timeout`
    /// after `since`.
    async fn next_applied(&mut self, since: Instant, timeout: Duration) -> Result<Applied> {
        loop {
            let left = timeout.saturating_sub(since.elapsed());
            match tokio::time::timeout(left, self.applied.recv()).await {
                Ok(Some(a)) if a.generation > self.generation => {
                    self.generation = a.generation;
                    return Ok(a);
                }
                Ok(Some(_)) => continue,
                Ok(None) => return Err(self.failed("sluice's log ended")),
                Err(_) => {
                    return Err(self.failed(&format!(
                        "no configuration applied within {} s of the change",
                        timeout.as_secs()
                    )));
                }
            }
        }
    }

    /// Error text with the last lines of Sluice's log.
    fn failed(&self, what: &str) -> String {
        let tail = self.tail.lock().expect("not poisoned");
        format!("sluice: {what}; its last log lines:\n{}", Vec::from(tail.clone()).join("\n"))
    }

    /// utime + stime of all of Sluice's threads, in milliseconds.
    fn cpu_ms(&self) -> Result<f64> {
        cpu_ms(self.process.pid())
    }

    /// (VmRSS, VmHWM) in MB (10^6 bytes).
    fn memory_mb(&self) -> Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.pid()))
            .map_err(|e| format!("cannot read sluice's /proc status: {e}"))?;
        let kb = |key: &str| -> Result<f64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| format!("no {key} in /proc status"))
        };
        Ok((kb("VmRSS:")? * 1024.0 / 1e6, kb("VmHWM:")? * 1024.0 / 1e6))
    }
}

/// The apply in a JSON log line of Sluice, if it is one.
fn applied_line(line: &str) -> Option<Applied> {
    let v: Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?;
    if fields.get("message")?.as_str()? != "applied configuration" {
        return None;
    }
    let took_ms = match fields.get("took_ms")? {
        Value::String(s) => s.parse().ok()?,
        other => other.as_f64()?,
    };
    let update = fields.get("update").and_then(Value::as_str).unwrap_or_default().to_string();
    Some(Applied {
        generation: fields.get("generation")?.as_u64()?,
        took_ms,
        update,
        seen: Instant::now(),
    })
}

/// utime + stime of process `pid` (all its threads), in milliseconds.
fn cpu_ms(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // After "pid (comm) ": state is field 1, utime 12, stime 13.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).ok_or("unexpected /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks =
        |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).ok_or("bad /proc stat");
    Ok((ticks(11)? + ticks(12)?) * 1000.0 / clock_ticks())
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Starts `sluice echo` at `--backend` and waits until it accepts connections.
async fn start_backend(o: &Opts) -> Result<Process> {
    if TcpStream::connect(o.backend).is_ok() {
        return Err(format!("{} is in use (--backend)", o.backend));
    }
    let mut cmd = o.on_server_cpu(&o.sluice);
    cmd.args(["echo", "--listen", &o.backend.to_string(), "--name", "bench"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut p = Process::spawn("sluice echo", cmd)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(o.backend).is_err() {
        p.check_alive()?;
        if Instant::now() > deadline {
            return Err(format!("the backend does not listen on {} after 10 s", o.backend));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(p)
}

// --- HTTP ----------------------------------------------------------------------------------------

/// A kept-alive HTTP/1.1 connection; opened again when the server closes it after a response
/// (`Connection: close`: Sluice does after keep-alive-requests, 1,000 by default), which is
/// not a failure.
struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Empty<Bytes>>,
    /// The last response said `Connection: close`.
    closing: bool,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        tokio::spawn(conn);
        Ok(Conn { addr, sender, closing: false })
    }

    /// GET `path` with `Host: host`: the status and the whole body.
    async fn fetch(&mut self, host: &str, path: &str) -> Result<(StatusCode, Bytes)> {
        if self.closing {
            *self = Conn::open(self.addr).await?;
        }
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let request = Request::get(path)
            .header(header::HOST, host)
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = self.sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        self.closing = response
            .headers()
            .get(header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, body))
    }

    /// GET `path` with `Host: host`; the status, once the body is read.
    async fn get(&mut self, host: &str, path: &str) -> Result<u16> {
        Ok(self.fetch(host, path).await?.0.as_u16())
    }

    /// GET `path` and return the body as text, if the status is 200.
    async fn text(&mut self, host: &str, path: &str) -> Result<String> {
        let (status, body) = self.fetch(host, path).await?;
        if status != 200 {
            return Err(format!("GET {path}: {status}"));
        }
        String::from_utf8(body.to_vec()).map_err(|e| e.to_string())
    }
}

/// The status of one GET on a new connection.
async fn get_status(addr: SocketAddr, host: &str, path: &str) -> Result<u16> {
    Conn::open(addr).await?.get(host, path).await
}

/// `sluice_config_generation` from `/metrics`.
async fn generation_gauge(admin: SocketAddr) -> Result<u64> {
    let metrics = Conn::open(admin).await?.text("localhost", "/metrics").await?;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("sluice_config_generation "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no sluice_config_generation in /metrics".to_string())
}

// --- changes ---------------------------------------------------------------------------------

/// The files a probe rewrites, held parsed, and what it writes to them.
struct Changes {
    dir: PathBuf,
    ingresses: Value,
    endpoint_slices: Value,
    flips: u64,
}

impl Changes {
    fn load(dir: &Path) -> Result<Changes> {
        let read = |name: &str| -> Result<Value> {
            let path = dir.join(namespace(CHANGED_NAMESPACE)).join(name);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
        };
        let probe = dir.join("probe");
        std::fs::create_dir_all(&probe)
            .map_err(|e| format!("cannot create {}: {e}", probe.display()))?;
        Ok(Changes {
            dir: dir.to_path_buf(),
            ingresses: read("ingresses.json")?,
            endpoint_slices: read("endpointslices.json")?,
            flips: 0,
        })
    }

    /// Changes an annotation of one Ingress of the namespace (its proxy-read-timeout): an
    /// Ingress alone on its host, so an incremental update.
    fn ingress(&mut self) -> Result<()> {
        self.flips += 1;
        let item = &mut self.ingresses["items"][0];
        item["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] =
            json!((60 + self.flips % 1000).to_string());
        self.write("ingresses.json", &self.ingresses)
    }

    /// Flips the readiness of one endpoint of one EndpointSlice: only that Service's endpoints
    /// change.
    fn endpoints(&mut self) -> Result<()> {
        self.flips += 1;
        let conditions = &mut self.endpoint_slices["items"][0]["endpoints"][0]["conditions"];
        let ready = conditions["ready"].as_bool().unwrap_or(true);
        conditions["ready"] = json!(!ready);
        self.write("endpointslices.json", &self.endpoint_slices)
    }

    fn write(&self, name: &str, list: &Value) -> Result<()> {
        let items: Vec<String> =
            list["items"].as_array().ok_or("not a List")?.iter().map(Value::to_string).collect();
        let path = self.dir.join(namespace(CHANGED_NAMESPACE)).join(name);
        manifests::replace(&path, manifests::list(&items).as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Writes `probe/ingress.json`: Ingress `probe` in `ns-0` for host `host`, to the first
    /// Service of Ingress 0 (the one gen-manifests' `--endpoint-addr` points at the backend).
    fn new_host(&self, host: &str) -> Result<()> {
        let ingress = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "probe", "namespace": namespace(0)},
            "spec": {
                "ingressClassName": CLASS_NAME,
                "rules": [{"host": host, "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": services_of(0)[0], "port": {"number": 80}}}
                }]}}]
            }
        });
        let path = self.dir.join("probe/ingress.json");
        manifests::replace(&path, format!("{ingress}\n").as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// The applications `newapp` (and `memory --change newapp`) adds and removes, one file each
/// under `DIR/probe/`.
struct NewApps {
    dir: PathBuf,
    backend: SocketAddrV4,
}

impl NewApps {
    fn new(dir: &Path, backend: SocketAddrV4) -> Result<NewApps> {
        let probe = dir.join("probe");
        std::fs::create_dir_all(&probe)
            .map_err(|e| format!("cannot create {}: {e}", probe.display()))?;
        Ok(NewApps { dir: probe, backend })
    }

    /// The host of application `i`.
    fn host(i: usize) -> String {
        format!("newapp-{i}.bench.example.com")
    }

    fn path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("newapp-{i}.json"))
    }

    /// Writes application `i` as one new file (a hidden temporary file renamed into place):
    /// a List of its Ingress (host [`Self::host`], `/` to its first Service by port number,
    /// `/api` to its second by port name), its two Services and their two EndpointSlices,
    /// each with one ready endpoint at the backend, in namespace `ns-{i % 100}`. Returns the
    /// host.
    fn create(&self, i: usize) -> Result<String> {
        let ns = namespace(i % NAMESPACES);
        let host = Self::host(i);
        let names = [format!("newapp-{i}-web"), format!("newapp-{i}-api")];
        let path = |p: &str, service: &str, port: Value| {
            json!({"path": p, "pathType": "Prefix",
                   "backend": {"service": {"name": service, "port": port}}})
        };
        let mut items = vec![json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": format!("newapp-{i}"), "namespace": ns},
            "spec": {
                "ingressClassName": CLASS_NAME,
                "rules": [{"host": host, "http": {"paths": [
                    path("/", &names[0], json!({"number": 80})),
                    path("/api", &names[1], json!({"name": "http"})),
                ]}}]
            }
        })];
        for name in &names {
            items.push(json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"type": "ClusterIP", "ports": [{
                    "name": "http", "port": 80, "targetPort": self.backend.port(), "protocol": "TCP"
                }]}
            }));
            items.push(json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"name": format!("{name}-local"), "namespace": ns,
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [self.backend.ip().to_string()],
                               "conditions": {"ready": true}}],
                "ports": [{"name": "http", "port": self.backend.port(), "protocol": "TCP"}]
            }));
        }
        let items: Vec<String> = items.iter().map(Value::to_string).collect();
        let path = self.path(i);
        manifests::replace(&path, manifests::list(&items).as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(host)
    }

    /// Removes application `i`'s file: the application is gone.
    fn remove(&self, i: usize) -> Result<()> {
        let path = self.path(i);
        std::fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))
    }
}

/// Requests of a prober that waits for a host to answer as it should, and those that failed.
#[derive(Debug, Default)]
struct Polls {
    requests: u64,
    errors: u64,
}

impl Polls {
    /// Sends back-to-back GETs for `host` on `conn` until one answers `want`; `pending` means
    /// "not yet", anything else is counted as an error (and a broken connection is reopened).
    /// Returns the time from `since` to that answer, in milliseconds.
    async fn until(
        &mut self,
        o: &Opts,
        conn: &mut Conn,
        host: &str,
        want: u16,
        pending: u16,
        since: Instant,
    ) -> Result<f64> {
        loop {
            if since.elapsed() > o.timeout {
                return Err(format!(
                    "{host} does not answer {want} {} s after the change",
                    o.timeout.as_secs()
                ));
            }
            self.requests += 1;
            match conn.get(host, "/").await {
                Ok(s) if s == want => return Ok(ms(since.elapsed())),
                Ok(s) if s == pending => {}
                Ok(other) => {
                    self.errors += 1;
                    say!("{host}: unexpected {other}");
                }
                Err(e) => {
                    self.errors += 1;
                    say!("{host}: {e}; reconnecting");
                    *conn = Conn::open(o.http()).await?;
                }
            }
        }
    }
}

/// How many applies made their table each way (`update` field → count).
#[derive(Debug, Default)]
struct Updates(BTreeMap<String, usize>);

impl Updates {
    fn add(&mut self, a: &Applied) {
        let kind = if a.update.is_empty() { "unlogged" } else { a.update.as_str() };
        *self.0.entry(kind.to_string()).or_default() += 1;
    }

    /// Whole translations.
    fn full(&self) -> usize {
        self.0.get("full").copied().unwrap_or(0)
    }

    /// `kind:count,...`, e.g. `ingresses:199,full:1`.
    fn summary(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|(k, n)| format!("{k}:{n}")).collect();
        parts.join(",")
    }
}

/// The host of the `propagate` and `memory` probes' `i`th Ingress.
fn probe_host(i: usize) -> String {
    format!("probe-{i}.bench.example.com")
}

// --- statistics ------------------------------------------------------------------------------

/// The nearest-rank percentile `p` (0..=100) of `values`.
fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// Prints `PREFIX_p50`, `_p99` and `_max` of `values` (milliseconds) as results.
fn report(prefix: &str, values: &[f64]) {
    println!("{prefix}_p50_ms={:.2}", percentile(values, 50.0));
    println!("{prefix}_p99_ms={:.2}", percentile(values, 99.0));
    println!("{prefix}_max_ms={:.2}", percentile(values, 100.0));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// --- wrk -------------------------------------------------------------------------------------

/// wrk running against host `host` on Sluice, until stopped.
struct Wrk {
    process: Process,
    out: PathBuf,
}

/// What wrk reported.
#[derive(Debug, Default)]
struct WrkResult {
    requests: u64,
    rps: f64,
    non_2xx: u64,
    socket_errors: u64,
    p99: String,
}

impl WrkResult {
    /// Prints the figures as `wrk_*` result lines.
    fn print(&self) {
        println!("wrk_requests={}", self.requests);
        println!("wrk_rps={:.0}", self.rps);
        println!("wrk_p99={}", self.p99);
        println!("wrk_non2xx={}", self.non_2xx);
        println!("wrk_socket_errors={}", self.socket_errors);
    }
}

/// Checks that the loaded route ([`host`]`(0)`) answers 200 through Sluice (the directory was
/// written with the backend's address), and returns that host.
async fn check_loaded(o: &Opts) -> Result<String> {
    let loaded = host(0);
    let status = get_status(o.http(), &loaded, "/").await?;
    if status != 200 {
        return Err(format!(
            "{loaded} answers {status}, not 200: was the directory written with gen-manifests --endpoint-addr {}?",
            o.backend
        ));
    }
    Ok(loaded)
}

impl Wrk {
    /// Starts wrk with `connections` kept-alive connections for up to `secs` seconds (it runs on
    /// this probe's CPU: pin the probe to the load generator's).
    fn start(o: &Opts, host: &str, secs: u64) -> Result<Wrk> {
        let out =
            std::env::temp_dir().join(format!("sluice-propagation-wrk-{}.txt", std::process::id()));
        let file = std::fs::File::create(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let mut cmd = Command::new("wrk");
        cmd.args(["-t1", &format!("-c{}", o.connections), &format!("-d{secs}s"), "--latency"])
            .args(["-H", &format!("Host: {host}")])
            .arg(format!("http://{}/", o.http()))
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null());
        Ok(Wrk { process: Process::spawn("wrk", cmd)?, out })
    }

    /// Waits for wrk to finish its run, and reads its summary.
    fn wait(self) -> Result<WrkResult> {
        self.finish(false)
    }

    /// Stops wrk (SIGINT: it prints its summary), and reads its summary.
    fn stop(self) -> Result<WrkResult> {
        self.finish(true)
    }

    fn finish(mut self, stop: bool) -> Result<WrkResult> {
        if stop && self.process.child.try_wait().map_err(|e| e.to_string())?.is_none() {
            let status = Command::new("kill")
                .args(["-INT", &self.process.pid().to_string()])
                .status()
                .map_err(|e| format!("kill: {e}"))?;
            if !status.success() {
                return Err("cannot stop wrk".into());
            }
        }
        self.process.child.wait().map_err(|e| e.to_string())?;
        let text = std::fs::read_to_string(&self.out).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&self.out);
        let mut r = WrkResult::default();
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let number = |w: &str| w.trim_end_matches(',').parse::<u64>().unwrap_or(0);
            match words.as_slice() {
                [n, "requests", "in", ..] => r.requests = number(n),
                ["Requests/sec:", v] => r.rps = v.parse().unwrap_or(0.0),
                ["Non-2xx", "or", "3xx", "responses:", n] => r.non_2xx = number(n),
                ["Socket", "errors:", rest @ ..] => {
                    // connect 0, read 0, write 0, timeout 0
                    r.socket_errors = rest.iter().skip(1).step_by(2).map(|w| number(w)).sum();
                }
                ["99%", v] => r.p99 = (*v).to_string(),
                _ => {}
            }
        }
        if r.requests == 0 {
            return Err(format!("wrk served no request:\n{text}"));
        }
        Ok(r)
    }
}

// --- probes ----------------------------------------------------------------------------------

/// Target 2: apply durations of Ingress changes and of endpoint-only changes.
async fn apply(o: &Opts) -> Result<()> {
    let mut changes = Changes::load(&o.manifests)?;
    let (mut sluice, first) = Sluice::start(o, &o.launch()).await?;
    println!("cold_load_ms={:.1}", first.took_ms);
    let (mut ingress_took, mut ingress_e2e, mut ingress_cpu) = (vec![], vec![], vec![]);
    let (mut endpoint_took, mut endpoint_e2e, mut endpoint_cpu) = (vec![], vec![], vec![]);
    for i in 0..o.changes {
        for endpoint_only in [false, true] {
            let cpu0 = sluice.cpu_ms()?;
            if endpoint_only {
                changes.endpoints()?
            } else {
                changes.ingress()?
            }
            let written = Instant::now();
            let a = sluice.next_applied(written, o.timeout).await?;
            let cpu = sluice.cpu_ms()? - cpu0;
            let e2e = ms(a.seen.duration_since(written));
            let (took, total, cpus) = if endpoint_only {
                (&mut endpoint_took, &mut endpoint_e2e, &mut endpoint_cpu)
            } else {
                (&mut ingress_took, &mut ingress_e2e, &mut ingress_cpu)
            };
            took.push(a.took_ms);
            total.push(e2e);
            cpus.push(cpu);
        }
        if (i + 1) % 10 == 0 || i + 1 == o.changes {
            say!(
                "{} of {} changes of each kind: last Ingress change {:.1} ms, endpoint change {:.1} ms",
                i + 1,
                o.changes,
                ingress_took.last().copied().unwrap_or_default(),
                endpoint_took.last().copied().unwrap_or_default()
            );
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!("changes={}", o.changes);
    report("ingress_took", &ingress_took);
    report("ingress_write_to_applied", &ingress_e2e);
    println!("ingress_cpu_mean_ms={:.1}", mean(&ingress_cpu));
    report("endpoint_took", &endpoint_took);
    report("endpoint_write_to_applied", &endpoint_e2e);
    println!("endpoint_cpu_mean_ms={:.1}", mean(&endpoint_cpu));
    Ok(())
}

/// Target 3: from a new Ingress written to its first 200, under load.
async fn propagate(o: &Opts) -> Result<()> {
    let changes = Changes::load(&o.manifests)?;
    let _backend = start_backend(o).await?;
    let (mut sluice, _) = Sluice::start(o, &o.launch()).await?;
    let loaded = check_loaded(o).await?;
    // Long enough for every change; stopped when done.
    let wrk = Wrk::start(o, &loaded, 3600)?;
    let mut poller = Conn::open(o.http()).await?;
    let mut polls = Polls::default();
    let (mut latencies, mut took) = (vec![], vec![]);
    for i in 0..o.changes {
        let host = probe_host(i);
        changes.new_host(&host)?;
        let written = Instant::now();
        let latency = polls.until(o, &mut poller, &host, 200, 404, written).await;
        latencies.push(latency.map_err(|e| sluice.failed(&e))?);
        // The apply is logged after it is published: wait for it before the next change.
        took.push(sluice.next_applied(written, o.timeout).await?.took_ms);
        sluice.process.check_alive()?;
        if (i + 1) % 25 == 0 || i + 1 == o.changes {
            say!(
                "{} of {} new hosts: last served {:.1} ms after the write",
                i + 1,
                o.changes,
                latencies[latencies.len() - 1]
            );
        }
    }
    let w = wrk.stop()?;
    println!("changes={}", o.changes);
    report("propagation", &latencies);
    report("apply_took", &took);
    println!("poll_requests={}", polls.requests);
    println!("poll_errors={}", polls.errors);
    w.print();
    Ok(())
}

/// Issue 15's target 5: a whole new application (one Ingress, two Services, two
/// EndpointSlices in one file) live under load, then removed.
async fn newapp(o: &Opts) -> Result<()> {
    let apps = NewApps::new(&o.manifests, o.backend)?;
    let _backend = start_backend(o).await?;
    let (mut sluice, _) = Sluice::start(o, &o.launch()).await?;
    let loaded = check_loaded(o).await?;
    // Long enough for every change; stopped when done.
    let wrk = Wrk::start(o, &loaded, 3600)?;
    let mut poller = Conn::open(o.http()).await?;
    let mut polls = Polls::default();
    let (mut live, mut gone) = (vec![], vec![]);
    let (mut live_took, mut gone_took) = (vec![], vec![]);
    let (mut live_updates, mut gone_updates) = (Updates::default(), Updates::default());
    for i in 0..o.changes {
        let host = apps.create(i)?;
        let written = Instant::now();
        live.push(
            polls
                .until(o, &mut poller, &host, 200, 404, written)
                .await
                .map_err(|e| sluice.failed(&e))?,
        );
        // The apply is logged after it is published: wait for it before the next change.
        let a = sluice.next_applied(written, o.timeout).await?;
        live_took.push(a.took_ms);
        live_updates.add(&a);
        apps.remove(i)?;
        let removed = Instant::now();
        gone.push(
            polls
                .until(o, &mut poller, &host, 404, 200, removed)
                .await
                .map_err(|e| sluice.failed(&e))?,
        );
        let a = sluice.next_applied(removed, o.timeout).await?;
        gone_took.push(a.took_ms);
        gone_updates.add(&a);
        sluice.process.check_alive()?;
        if (i + 1) % 25 == 0 || i + 1 == o.changes {
            say!(
                "{} of {} applications: last live {:.1} ms after the write ({}), gone {:.1} ms after the removal ({})",
                i + 1,
                o.changes,
                live[live.len() - 1],
                live_updates.summary(),
                gone[gone.len() - 1],
                gone_updates.summary()
            );
        }
    }
    let w = wrk.stop()?;
    println!("changes={}", o.changes);
    report("live", &live);
    report("live_took", &live_took);
    println!("live_full_rebuilds={}", live_updates.full());
    println!("live_updates={}", live_updates.summary());
    report("gone", &gone);
    report("gone_took", &gone_took);
    println!("gone_full_rebuilds={}", gone_updates.full());
    println!("gone_updates={}", gone_updates.summary());
    println!("poll_requests={}", polls.requests);
    println!("poll_errors={}", polls.errors);
    w.print();
    Ok(())
}

/// Issue 5's target 4 and issue 15's target 6: resident memory after loading and serving, and
/// across many changes.
async fn memory(o: &Opts) -> Result<()> {
    let mut changes = Changes::load(&o.manifests)?;
    let apps = NewApps::new(&o.manifests, o.backend)?;
    let mut updates = Updates::default();
    let _backend = start_backend(o).await?;
    let (mut sluice, _) = Sluice::start(o, &o.launch()).await?;
    let (loaded_rss, _) = sluice.memory_mb()?;
    say!("loaded: VmRSS {loaded_rss:.1} MB; {} s of traffic", o.traffic_s);
    let w = Wrk::start(o, &host(0), o.traffic_s)?.wait()?;
    if w.non_2xx + w.socket_errors > 0 {
        return Err(format!("traffic failed: {w:?}"));
    }
    let (before, hwm_before) = sluice.memory_mb()?;
    println!("rss_loaded_mb={loaded_rss:.1}");
    println!("traffic_requests={}", w.requests);
    println!("rss_before_mb={before:.1}");
    println!("hwm_before_mb={hwm_before:.1}");
    let mut samples = vec![format!("{before:.1}")];
    let mut last = 0;
    for i in 0..o.changes {
        match o.change {
            // Three kinds in turn: a new host, an Ingress annotation, an endpoint's readiness.
            ChangeKind::Mixed => match i % 3 {
                0 => changes.new_host(&probe_host(i))?,
                1 => changes.ingress()?,
                _ => changes.endpoints()?,
            },
            // A new application, then its removal.
            ChangeKind::NewApp if i % 2 == 0 => {
                apps.create(i / 2)?;
            }
            ChangeKind::NewApp => apps.remove(i / 2)?,
        }
        let written = Instant::now();
        let a = sluice.next_applied(written, o.timeout).await?;
        updates.add(&a);
        last = a.generation;
        if (i + 1) % 100 == 0 || i + 1 == o.changes {
            let (rss, _) = sluice.memory_mb()?;
            samples.push(format!("{rss:.1}"));
            say!("{} of {} changes: VmRSS {rss:.1} MB", i + 1, o.changes);
        }
    }
    let gauge = generation_gauge(o.admin()).await?;
    if gauge != last {
        return Err(format!("sluice_config_generation is {gauge}, the last apply logged {last}"));
    }
    let (after, hwm) = sluice.memory_mb()?;
    println!("changes={}", o.changes);
    println!("change={}", if o.change == ChangeKind::NewApp { "newapp" } else { "mixed" });
    println!("full_rebuilds={}", updates.full());
    println!("updates={}", updates.summary());
    println!("generation={gauge}");
    println!("rss_after_mb={after:.1}");
    println!("rss_growth_mb={:.1}", after - before);
    println!("rss_growth_pct={:.1}", (after - before) / before * 100.0);
    println!("hwm_mb={hwm:.1}");
    println!("rss_samples_mb={}", samples.join(","));
    Ok(())
}

// --- TLS -------------------------------------------------------------------------------------

/// Accepts any certificate: the certificates are self-signed, and the probe compares what it
/// received with the Secret's certificate itself. Not verifying signatures also keeps the
/// client's share of a handshake small, so that the server is the side measured.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls_pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &rustls_pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client that makes a full handshake per connection: no session resumption, X25519
/// only (what `openssl s_time` offers first; no post-quantum key share, whose cost would land
/// on both sides).
struct Handshaker {
    connector: tokio_rustls::TlsConnector,
}

impl Handshaker {
    fn new() -> Result<Handshaker> {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
        let provider = Arc::new(provider);
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("TLS client: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Handshaker { connector: tokio_rustls::TlsConnector::from(Arc::new(config)) })
    }

    /// One full handshake with `addr`, server name `host`, closed at once (close_notify):
    /// the leaf certificate the server presented, DER.
    async fn handshake(&self, addr: SocketAddr, host: &str) -> Result<Vec<u8>> {
        use tokio::io::AsyncWriteExt;
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let name = rustls_pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host}: {e}"))?;
        let mut tls =
            self.connector.connect(name, tcp).await.map_err(|e| format!("{host}@{addr}: {e}"))?;
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .ok_or_else(|| format!("{host}@{addr}: no certificate"))?;
        let _ = tls.shutdown().await;
        Ok(leaf)
    }
}

/// A small xorshift generator: random hosts without a dependency (the quality needed is "not
/// always the same host").
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// An exact host of a generated directory, and the TLS Secret its Ingress names for it.
#[derive(Clone, Debug)]
struct TlsHost {
    host: String,
    namespace: String,
    /// The Secret of its Ingress's `tls` section, and the hosts that section lists.
    secret: Option<(String, Vec<String>)>,
}

/// Every exact host of the Ingresses under `dir` (`ns-*/ingresses.json`), with its Secret.
fn tls_hosts_of(dir: &Path) -> Result<Vec<TlsHost>> {
    let mut hosts = Vec::new();
    for k in 0..NAMESPACES {
        let path = dir.join(namespace(k)).join("ingresses.json");
        if !path.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let list: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for item in list["items"].as_array().into_iter().flatten() {
            let spec = &item["spec"];
            let tls = spec["tls"].as_array().and_then(|t| t.first());
            for rule in spec["rules"].as_array().into_iter().flatten() {
                let Some(host) = rule["host"].as_str().filter(|h| !h.starts_with('*')) else {
                    continue;
                };
                let secret = tls.and_then(|t| {
                    let name = t["secretName"].as_str()?.to_string();
                    let listed = t["hosts"].as_array()?.iter().filter_map(Value::as_str);
                    Some((name, listed.map(str::to_string).collect()))
                });
                hosts.push(TlsHost { host: host.into(), namespace: namespace(k), secret });
            }
        }
    }
    if hosts.is_empty() {
        return Err(format!("no Ingress host under {}", dir.display()));
    }
    Ok(hosts)
}

/// The certificates (DER) of the TLS Secrets in `DIR/NS/secrets.json`, by name.
fn secret_certs(dir: &Path, ns: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    use rustls_pki_types::pem::PemObject;
    let path = dir.join(ns).join("secrets.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let list: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut certs = BTreeMap::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(item.clone()).map_err(|e| format!("{}: {e}", path.display()))?;
        let (Some(name), Some(crt)) =
            (secret.metadata.name.clone(), secret.data.as_ref().and_then(|d| d.get("tls.crt")))
        else {
            continue;
        };
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&crt.0)
            .map_err(|e| format!("{}: Secret {name}: {e}", path.display()))?;
        certs.insert(name, der.to_vec());
    }
    Ok(certs)
}

/// Replaces Secret `name` in `DIR/NS/secrets.json` by one holding `cert` (atomically).
fn rotate_secret(dir: &Path, ns: &str, name: &str, cert: &tls::SelfSigned) -> Result<()> {
    let path = dir.join(ns).join("secrets.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let list: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let new = serde_json::to_value(tls::tls_secret(ns, name, cert)).map_err(|e| e.to_string())?;
    let mut found = false;
    let items: Vec<String> = list["items"]
        .as_array()
        .ok_or_else(|| format!("{}: not a List", path.display()))?
        .iter()
        .map(|item| {
            if item["metadata"]["name"] == name {
                found = true;
                new.to_string()
            } else {
                item.to_string()
            }
        })
        .collect();
    if !found {
        return Err(format!("no Secret {name} in {}", path.display()));
    }
    manifests::replace(&path, manifests::list(&items).as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// What one run of handshakes against one Sluice gave.
#[derive(Clone, Copy, Debug)]
struct HandshakeRun {
    per_s: f64,
    /// The Sluice's CPU per handshake, in microseconds.
    cpu_us: f64,
    /// The share of a CPU this probe (the clients) used: near 100, the clients were the limit.
    client_busy_pct: f64,
    errors: u64,
}

/// `clients` concurrent loops of full handshakes with `addr` for `secs`, each with a server
/// name drawn at random from `hosts`; `pid` is the Sluice whose CPU is counted.
async fn handshake_load(
    h: &Arc<Handshaker>,
    addr: SocketAddr,
    hosts: &Arc<Vec<String>>,
    clients: usize,
    secs: u64,
    pid: u32,
) -> Result<HandshakeRun> {
    let cpu0 = cpu_ms(pid)?;
    let own0 = cpu_ms(std::process::id())?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut set = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (h, hosts) = (h.clone(), hosts.clone());
        set.spawn(async move {
            let mut rng = Rng::new(c as u64 + started.elapsed().as_nanos() as u64);
            let (mut done, mut errors, mut last_error) = (0u64, 0u64, None);
            while Instant::now() < deadline {
                match h.handshake(addr, &hosts[rng.below(hosts.len())]).await {
                    Ok(_) => done += 1,
                    Err(e) => {
                        errors += 1;
                        last_error = Some(e);
                    }
                }
            }
            (done, errors, last_error)
        });
    }
    let (mut done, mut errors) = (0, 0);
    while let Some(joined) = set.join_next().await {
        let (d, e, last) = joined.map_err(|e| e.to_string())?;
        if let Some(last) = last {
            say!("{e} failed handshakes in a client, the last: {last}");
        }
        done += d;
        errors += e;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_ms(pid)? - cpu0;
    let own = cpu_ms(std::process::id())? - own0;
    if done == 0 {
        return Err(format!("no handshake succeeded with {addr}"));
    }
    Ok(HandshakeRun {
        per_s: done as f64 / wall,
        cpu_us: cpu * 1000.0 / done as f64,
        client_busy_pct: own / 1000.0 / wall * 100.0,
        errors,
    })
}

fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// Issue 15's target 7: handshakes with 10,000 certificates against one, memory per
/// certificate, and how fast a rotated certificate is presented.
async fn tls_hosts(o: &Opts) -> Result<()> {
    let single_dir = o.single_manifests.clone().expect("checked by Opts::parse");
    let hosts = tls_hosts_of(&o.manifests)?;
    let with_secret = hosts.iter().filter(|h| h.secret.is_some()).count();
    if with_secret != hosts.len() {
        return Err(format!(
            "{} of {} hosts in {} have no TLS Secret: write it with gen-manifests --tls",
            hosts.len() - with_secret,
            hosts.len(),
            o.manifests.display()
        ));
    }
    let (default_ns, default_name) = tls::DEFAULT_SECRET;
    let default_cert =
        secret_certs(&single_dir, default_ns)?.remove(default_name).ok_or_else(|| {
            format!(
                "no Secret {default_ns}/{default_name} in {} (gen-manifests --tls-default)",
                single_dir.display()
            )
        })?;
    let names: Arc<Vec<String>> = Arc::new(hosts.iter().map(|h| h.host.clone()).collect());
    say!("{} hosts, each with a certificate of its own", names.len());

    let multi_launch = o.launch();
    let mut single_launch = Launch {
        manifests: single_dir.clone(),
        http_port: o.single_ports[0],
        https_port: o.single_ports[1],
        admin_port: o.single_ports[2],
        args: o.sluice_args.clone(),
    };
    single_launch.args.push(format!("--default-ssl-certificate={default_ns}/{default_name}"));
    let (mut multi, multi_first) = Sluice::start(o, &multi_launch).await?;
    let (single, single_first) = Sluice::start(o, &single_launch).await?;
    println!("hosts={}", names.len());
    println!("certificates={with_secret}");
    println!("multi_load_ms={:.1}", multi_first.took_ms);
    println!("single_load_ms={:.1}", single_first.took_ms);

    // Each presents what it should: a host's own certificate, or the default one.
    let h = Arc::new(Handshaker::new()?);
    let mut rng = Rng::new(u64::from(std::process::id()));
    let mut certs_by_ns: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for _ in 0..20.min(hosts.len()) {
        let host = &hosts[rng.below(hosts.len())];
        let (secret, _) = host.secret.as_ref().expect("checked above");
        if !certs_by_ns.contains_key(&host.namespace) {
            certs_by_ns
                .insert(host.namespace.clone(), secret_certs(&o.manifests, &host.namespace)?);
        }
        let want = certs_by_ns[&host.namespace]
            .get(secret)
            .ok_or_else(|| format!("no Secret {}/{secret}", host.namespace))?;
        if h.handshake(multi_launch.https(), &host.host).await? != *want {
            return Err(
                multi.failed(&format!("{} is not presented its own certificate", host.host))
            );
        }
        if h.handshake(single_launch.https(), &host.host).await? != default_cert {
            return Err(
                single.failed(&format!("{} is not presented the default certificate", host.host))
            );
        }
    }
    say!("checked: each host's own certificate on one, the default certificate on the other");

    // Pairs alternating the two, as bench/proxy-vs-nginx.sh does: drift and order cancel.
    let (mut multi_runs, mut single_runs, mut ratios) = (vec![], vec![], vec![]);
    let load = |launch: &Launch, pid: u32, secs: u64| {
        let (h, names, addr) = (h.clone(), names.clone(), launch.https());
        async move { handshake_load(&h, addr, &names, o.clients, secs, pid).await }
    };
    say!("warm-up: 1 s each");
    load(&multi_launch, multi.process.pid(), 1).await?;
    load(&single_launch, single.process.pid(), 1).await?;
    for pair in 1..=o.pairs {
        let multi_first = pair % 2 == 1;
        let (m, s) = if multi_first {
            let m = load(&multi_launch, multi.process.pid(), o.duration_s).await?;
            (m, load(&single_launch, single.process.pid(), o.duration_s).await?)
        } else {
            let s = load(&single_launch, single.process.pid(), o.duration_s).await?;
            (load(&multi_launch, multi.process.pid(), o.duration_s).await?, s)
        };
        say!(
            "pair {pair}: {} certificates {:.0} handshakes/s, {:.0} µs CPU each (clients {:.0}% busy); one certificate {:.0}/s, {:.0} µs (clients {:.0}%)",
            names.len(),
            m.per_s,
            m.cpu_us,
            m.client_busy_pct,
            s.per_s,
            s.cpu_us,
            s.client_busy_pct
        );
        ratios.push(m.per_s / s.per_s);
        multi_runs.push(m);
        single_runs.push(s);
    }
    multi.process.check_alive()?;
    let col = |runs: &[HandshakeRun], f: fn(&HandshakeRun) -> f64| -> Vec<f64> {
        runs.iter().map(f).collect()
    };
    let (m_cpu, s_cpu) =
        (median(&col(&multi_runs, |r| r.cpu_us)), median(&col(&single_runs, |r| r.cpu_us)));
    println!("clients={}", o.clients);
    println!("pairs={}", o.pairs);
    println!("duration_s={}", o.duration_s);
    println!("multi_hs_per_s={:.0}", median(&col(&multi_runs, |r| r.per_s)));
    println!("single_hs_per_s={:.0}", median(&col(&single_runs, |r| r.per_s)));
    println!("hs_ratio={:.3}", median(&ratios));
    println!("hs_ratio_min={:.3}", percentile(&ratios, 0.0));
    println!("hs_ratio_max={:.3}", percentile(&ratios, 100.0));
    println!("multi_cpu_us_per_hs={m_cpu:.1}");
    println!("single_cpu_us_per_hs={s_cpu:.1}");
    // Handshakes per second one core could do, many certificates over one.
    println!("capacity_ratio={:.3}", s_cpu / m_cpu);
    println!("client_busy_pct={:.0}", median(&col(&multi_runs, |r| r.client_busy_pct)));
    let errors: u64 = multi_runs.iter().chain(&single_runs).map(|r| r.errors).sum();
    println!("handshake_errors={errors}");
    let (multi_rss, _) = multi.memory_mb()?;
    let (single_rss, _) = single.memory_mb()?;
    println!("multi_rss_mb={multi_rss:.1}");
    println!("single_rss_mb={single_rss:.1}");
    println!("rss_per_cert_kb={:.2}", (multi_rss - single_rss) * 1000.0 / with_secret as f64);
    drop(single);

    // Rotation: a new certificate for one host's Secret, until a handshake presents it.
    let (mut presented, mut took) = (vec![], vec![]);
    let mut updates = Updates::default();
    let (mut polls, mut poll_errors) = (0u64, 0u64);
    for r in 0..o.rotations {
        let host = &hosts[rng.below(hosts.len())];
        let (secret, listed) = host.secret.as_ref().expect("checked above");
        let cert = tls::self_signed(listed);
        rotate_secret(&o.manifests, &host.namespace, secret, &cert)?;
        let written = Instant::now();
        loop {
            if written.elapsed() > o.timeout {
                return Err(multi.failed(&format!(
                    "{} still presents its old certificate {} s after the rotation",
                    host.host,
                    o.timeout.as_secs()
                )));
            }
            polls += 1;
            match h.handshake(multi_launch.https(), &host.host).await {
                Ok(der) if der == cert.cert_der => break,
                Ok(_) => {}
                Err(e) => {
                    poll_errors += 1;
                    say!("{e}");
                }
            }
        }
        presented.push(ms(written.elapsed()));
        let a = multi.next_applied(written, o.timeout).await?;
        took.push(a.took_ms);
        updates.add(&a);
        if (r + 1) % 5 == 0 || r + 1 == o.rotations {
            say!(
                "{} of {} rotations: the last presented {:.1} ms after the write ({})",
                r + 1,
                o.rotations,
                presented[presented.len() - 1],
                updates.summary()
            );
        }
    }
    println!("rotations={}", o.rotations);
    if o.rotations > 0 {
        report("rotation", &presented);
        report("rotation_took", &took);
        println!("rotation_full_rebuilds={}", updates.full());
        println!("rotation_updates={}", updates.summary());
        println!("rotation_polls={polls}");
        println!("rotation_errors={poll_errors}");
    }
    Ok(())
}
