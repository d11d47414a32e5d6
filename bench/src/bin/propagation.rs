//! End-to-end probes of the control plane of a real `sluice serve --manifests DIR` (the release
//! binary, one proxy worker), on a directory written by `gen-manifests`:
//!
//! - `apply` (issue 5, target 2): with the directory loaded, changes one Ingress (an
//!   incremental update: it is alone on its host) and, separately, one EndpointSlice (an endpoint-only change), `--changes` times
//!   each, and reports how long Sluice took to apply each (`took_ms` of its "applied
//!   configuration" log line: rescan, parse, translate), the time from the write to that log
//!   line (which includes the debounce), and Sluice's CPU time per apply (robust to a busy
//!   machine, unlike wall time).
//! - `propagate` (target 3): while wrk loads an existing route on kept-alive connections,
//!   writes an Ingress for a new host `--changes` times and measures, each time, from the
//!   file renamed into place to the first 200 answer for that host (a kept-alive client
//!   sends back-to-back requests; 404 means "not yet"). Reports the percentiles and wrk's
//!   failures, which must be zero.
//! - `memory` (target 4): VmRSS and VmHWM (`/proc/PID/status`) after loading and serving some
//!   traffic, then across `--changes` consecutive configuration changes, each waited for.
//!
//! Every probe waits for an apply by reading Sluice's JSON log (`--log-format json`): each
//! applied configuration logs its `generation` (the `sluice_config_generation` gauge of
//! `/metrics`, which `memory` checks at the end) and `took_ms`. Nothing sleeps blindly: Sluice
//! is ready when `/readyz` answers 200, the backend when it accepts connections.
//!
//! ```text
//! propagation apply|propagate|memory --manifests DIR [options]
//!   --sluice PATH          the sluice binary (target/release/sluice)
//!   --backend IP:PORT      where `sluice echo` listens: gen-manifests' --endpoint-addr
//!                          (propagate and memory; default 127.0.0.1:28493)
//!   --http-port P --https-port P --admin-port P   Sluice's ports (28490, 28491, 28492)
//!   --server-cpu N         pin Sluice and the backend to CPU N (taskset); run this probe itself
//!                          pinned to the load generator's CPU (wrk inherits it)
//!   --debounce-ms N        Sluice's --debounce-ms (default: Sluice's, 10)
//!   --changes N            changes (apply: of each kind, 20; propagate: 200; memory: 1000)
//!   --connections N        wrk connections (16)
//!   --traffic-s N          memory: seconds of wrk traffic before measuring (5)
//!   --timeout-s N          longest wait for one change (30)
//! ```
//!
//! Results go to stdout as `key=value` lines (for `bench/targets.sh`); progress to stderr. The
//! probe changes files in DIR: use a copy made for it.

use std::collections::VecDeque;
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
use sluice_bench::{CLASS_NAME, host, manifests, namespace, services_of};
use tokio::sync::mpsc;

type Result<T, E = String> = std::result::Result<T, E>;

const USAGE: &str = "usage: propagation apply|propagate|memory --manifests DIR [--sluice PATH] \
[--backend IP:PORT] [--http-port P] [--https-port P] [--admin-port P] [--server-cpu N] \
[--debounce-ms N] [--changes N] [--connections N] [--traffic-s N] [--timeout-s N]";

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
            Mode::Memory => memory(&opts).await,
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
    Memory,
}

/// The command line (see the module documentation).
#[derive(Debug)]
struct Opts {
    mode: Mode,
    manifests: PathBuf,
    sluice: PathBuf,
    backend: SocketAddrV4,
    http_port: u16,
    https_port: u16,
    admin_port: u16,
    server_cpu: Option<usize>,
    debounce_ms: Option<u64>,
    changes: usize,
    connections: usize,
    traffic_s: u64,
    timeout: Duration,
}

impl Opts {
    fn parse() -> Result<Opts> {
        let mut args = std::env::args().skip(1);
        let mode = match args.next().as_deref() {
            Some("apply") => Mode::Apply,
            Some("propagate") => Mode::Propagate,
            Some("memory") => Mode::Memory,
            Some(other) => return Err(format!("unknown probe {other:?}")),
            None => return Err("which probe?".into()),
        };
        let mut o = Opts {
            mode,
            manifests: PathBuf::new(),
            sluice: PathBuf::from("target/release/sluice"),
            backend: "127.0.0.1:28493".parse().expect("a valid address"),
            http_port: 28490,
            https_port: 28491,
            admin_port: 28492,
            server_cpu: None,
            debounce_ms: None,
            changes: match mode {
                Mode::Apply => 20,
                Mode::Propagate => 200,
                Mode::Memory => 1000,
            },
            connections: 16,
            traffic_s: 5,
            timeout: Duration::from_secs(30),
        };
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--manifests" => o.manifests = PathBuf::from(value),
                "--sluice" => o.sluice = PathBuf::from(value),
                "--backend" => o.backend = parse(&flag, &value)?,
                "--http-port" => o.http_port = parse(&flag, &value)?,
                "--https-port" => o.https_port = parse(&flag, &value)?,
                "--admin-port" => o.admin_port = parse(&flag, &value)?,
                "--server-cpu" => o.server_cpu = Some(parse(&flag, &value)?),
                "--debounce-ms" => o.debounce_ms = Some(parse(&flag, &value)?),
                "--changes" => o.changes = parse(&flag, &value)?,
                "--connections" => o.connections = parse(&flag, &value)?,
                "--traffic-s" => o.traffic_s = parse(&flag, &value)?,
                "--timeout-s" => o.timeout = Duration::from_secs(parse(&flag, &value)?),
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        if o.manifests.as_os_str().is_empty() {
            return Err("--manifests DIR is required".into());
        }
        if !o.manifests.join("ingressclasses.json").is_file() {
            return Err(format!(
                "{} was not written by gen-manifests (no ingressclasses.json)",
                o.manifests.display()
            ));
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
#[derive(Clone, Copy, Debug)]
struct Applied {
    generation: u64,
    took_ms: f64,
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

impl Sluice {
    /// Starts Sluice on the manifests and waits until `/readyz` answers 200 and the first
    /// configuration is applied; returns it with that first apply.
    async fn start(o: &Opts) -> Result<(Sluice, Applied)> {
        for port in [o.http_port, o.https_port, o.admin_port] {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Err(format!(
                    "port {port} is in use (--http-port, --https-port, --admin-port)"
                ));
            }
        }
        let mut cmd = o.on_server_cpu(&o.sluice);
        cmd.arg("serve")
            .arg("--manifests")
            .arg(&o.manifests)
            .args(["--workers", "1", "--bind-address", "127.0.0.1", "--log-format", "json"])
            .args(["--http-port", &o.http_port.to_string()])
            .args(["--https-port", &o.https_port.to_string()])
            .args(["--healthz-port", &o.admin_port.to_string()]);
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
        say!("started sluice (pid {}) on {}", sluice.process.pid(), o.manifests.display());
        // Loading 10,000 Ingresses takes seconds; on a busy machine, more.
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            sluice.process.check_alive().map_err(|e| sluice.failed(&e))?;
            if let Ok(200) = get_status(o.admin(), "localhost", "/readyz").await {
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
    Some(Applied { generation: fields.get("generation")?.as_u64()?, took_ms, seen: Instant::now() })
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

/// A kept-alive HTTP/1.1 connection.
struct Conn {
    sender: SendRequest<Empty<Bytes>>,
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
        Ok(Conn { sender })
    }

    /// GET `path` with `Host: host`: the status and the whole body.
    async fn fetch(&mut self, host: &str, path: &str) -> Result<(StatusCode, Bytes)> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let request = Request::get(path)
            .header(header::HOST, host)
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = self.sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
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
    let (mut sluice, first) = Sluice::start(o).await?;
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
    let (mut sluice, _) = Sluice::start(o).await?;
    let loaded = host(0);
    let status = get_status(o.http(), &loaded, "/").await?;
    if status != 200 {
        return Err(format!(
            "{loaded} answers {status}, not 200: was the directory written with gen-manifests --endpoint-addr {}?",
            o.backend
        ));
    }
    // Long enough for every change; stopped when done.
    let wrk = Wrk::start(o, &loaded, 3600)?;
    let mut poller = Conn::open(o.http()).await?;
    let (mut latencies, mut took) = (vec![], vec![]);
    let (mut poll_requests, mut poll_errors) = (0u64, 0u64);
    for i in 0..o.changes {
        let host = probe_host(i);
        changes.new_host(&host)?;
        let written = Instant::now();
        loop {
            if written.elapsed() > o.timeout {
                return Err(sluice.failed(&format!(
                    "{host} not served {} s after it was written",
                    o.timeout.as_secs()
                )));
            }
            poll_requests += 1;
            match poller.get(&host, "/").await {
                Ok(200) => break,
                Ok(404) => {}
                Ok(other) => {
                    poll_errors += 1;
                    say!("{host}: unexpected {other}");
                }
                Err(e) => {
                    poll_errors += 1;
                    say!("{host}: {e}; reconnecting");
                    poller = Conn::open(o.http()).await?;
                }
            }
        }
        latencies.push(ms(written.elapsed()));
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
    println!("poll_requests={poll_requests}");
    println!("poll_errors={poll_errors}");
    println!("wrk_requests={}", w.requests);
    println!("wrk_rps={:.0}", w.rps);
    println!("wrk_p99={}", w.p99);
    println!("wrk_non2xx={}", w.non_2xx);
    println!("wrk_socket_errors={}", w.socket_errors);
    Ok(())
}

/// Target 4: resident memory after loading and serving, and across many changes.
async fn memory(o: &Opts) -> Result<()> {
    let mut changes = Changes::load(&o.manifests)?;
    let _backend = start_backend(o).await?;
    let (mut sluice, _) = Sluice::start(o).await?;
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
        // Three kinds in turn: a new host, an Ingress annotation, an endpoint's readiness.
        match i % 3 {
            0 => changes.new_host(&probe_host(i))?,
            1 => changes.ingress()?,
            _ => changes.endpoints()?,
        }
        let written = Instant::now();
        last = sluice.next_applied(written, o.timeout).await?.generation;
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
    println!("generation={gauge}");
    println!("rss_after_mb={after:.1}");
    println!("rss_growth_mb={:.1}", after - before);
    println!("rss_growth_pct={:.1}", (after - before) / before * 100.0);
    println!("hwm_mb={hwm:.1}");
    println!("rss_samples_mb={}", samples.join(","));
    Ok(())
}
