//! The integration test harness: runs the real `sluice` binary on loopback with a temporary
//! manifests directory, real echo backends, and a real HTTP client.
#![allow(dead_code)] // each test file uses a different part of the harness

pub mod tls;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on Linux's usual builds).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = Command::new("getconf").arg("CLK_TCK").output();
        out.ok().and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok()).unwrap_or(100)
    })
}

/// How long any wait in the tests may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running `sluice serve`, killed on drop.
pub struct Sluice {
    child: Child,
    /// The proxy's address.
    pub http: SocketAddr,
    /// The HTTPS address.
    pub https: SocketAddr,
    /// The admin port's address.
    pub admin: SocketAddr,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Sluice {
    /// Starts `sluice serve --manifests dir` on free loopback ports and waits until it is
    /// ready. `args` are added to the command line.
    pub fn start(dir: &Path, args: &[&str]) -> Sluice {
        Self::start_with_env(dir, args, &[])
    }

    /// Like [`Sluice::start`], with extra environment variables.
    pub fn start_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Sluice {
        Self::spawn(&["--manifests".as_ref(), dir.as_os_str()], 2, args, env, true)
    }

    /// Like [`Sluice::start`], with `workers` proxy workers instead of 2 (`--workers` cannot
    /// be given twice): one worker makes pooling and request order deterministic.
    pub fn start_workers(dir: &Path, workers: usize, args: &[&str]) -> Sluice {
        Self::spawn(&["--manifests".as_ref(), dir.as_os_str()], workers, args, &[], true)
    }

    /// Starts `sluice serve` on the Kubernetes API with `kubeconfig`, and waits until it
    /// serves traffic (after its first full sync).
    pub fn start_kube(kubeconfig: &Path, args: &[&str], env: &[(&str, &str)]) -> Sluice {
        Self::spawn(&["--kubeconfig".as_ref(), kubeconfig.as_os_str()], 2, args, env, true)
    }

    /// Like [`Sluice::start_kube`], but returns as soon as the admin port listens (the proxy
    /// may not run yet: `http` is then unknown and set to the admin address).
    pub fn start_kube_unready(kubeconfig: &Path, args: &[&str], env: &[(&str, &str)]) -> Sluice {
        Self::spawn(&["--kubeconfig".as_ref(), kubeconfig.as_os_str()], 2, args, env, false)
    }

    fn spawn(
        source: &[&std::ffi::OsStr],
        workers: usize,
        args: &[&str],
        env: &[(&str, &str)],
        wait_ready: bool,
    ) -> Sluice {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        // Loopback, unless the test binds elsewhere (the API server's pod proxy refuses
        // loopback addresses).
        let bind: &[&str] = if args.iter().any(|a| a.starts_with("--bind-address")) {
            &[]
        } else {
            &["--bind-address", "127.0.0.1"]
        };
        cmd.arg("serve")
            .args(source)
            .args(bind)
            .args(["--http-port", "0", "--https-port", "0"])
            .args(["--healthz-port", "0", "--workers", &workers.to_string()])
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the sluice binary starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        collect_lines(child.stdout.take().unwrap(), stdout.clone());
        collect_lines(child.stderr.take().unwrap(), stderr.clone());
        let deadline = Instant::now() + WAIT;
        let (http, https, admin) = loop {
            let lines = stderr.lock().unwrap().clone();
            if let Some(line) = lines.iter().find(|l| is_listening_line(l)) {
                break (field(line, "http="), field(line, "https="), field(line, "admin="));
            }
            if !wait_ready
                && let Some(line) = lines.iter().find(|l| l.contains("admin port listening"))
            {
                let admin = field(line, "admin=");
                break (admin, admin, admin);
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("sluice exited with {status}:\n{}", lines.join("\n"));
            }
            if Instant::now() >= deadline {
                // No `Sluice` exists yet to kill the process on drop.
                let _ = child.kill();
                panic!("sluice did not start:\n{}", lines.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Sluice { child, http, https, admin, stdout, stderr }
    }

    /// The proxy URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// The admin URL for `path`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Lines written to stdout (the access log) so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Lines written to stderr (the logs) so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until a stdout line satisfies `pred`, and returns it.
    pub fn wait_stdout(&self, pred: impl Fn(&str) -> bool) -> String {
        wait_line(&self.stdout, pred, "stdout")
    }

    /// Waits until a stderr line satisfies `pred`, and returns it.
    pub fn wait_stderr(&self, pred: impl Fn(&str) -> bool) -> String {
        wait_line(&self.stderr, pred, "stderr")
    }

    /// The routing table as `/debug/config` shows it.
    pub async fn config(&self) -> serde_json::Value {
        let r = get(&self.admin_url("/debug/config"), None).await;
        assert_eq!(r.status, 200);
        serde_json::from_slice(&r.body).expect("/debug/config is JSON")
    }

    /// The generation of the table in force.
    pub async fn generation(&self) -> u64 {
        self.config().await["generation"].as_u64().expect("a generation")
    }

    /// Waits until the table in force is newer than `generation`; returns the new generation.
    pub async fn wait_generation_after(&self, generation: u64) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let g = self.generation().await;
            if g > generation {
                return g;
            }
            assert!(
                Instant::now() < deadline,
                "no new configuration after generation {generation}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Kills the process at once (SIGKILL): a crash, with no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of the process's `/proc/<pid>/status` given in kB (`VmRSS:`, `VmHWM:`), in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).expect(field);
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// The process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The CPU time the process has used so far, user and system (`/proc/<pid>/stat`).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // The fields after the command name, which is in parentheses and may hold spaces:
        // state is the first, utime and stime the 12th and 13th.
        let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.wait_exit()
    }

    /// Waits for the process to exit; returns whether it exited cleanly.
    pub fn wait_exit(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "sluice did not exit after SIGTERM:\n{}",
                self.stderr().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect_lines(stream: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    });
}

fn wait_line(lines: &Mutex<Vec<String>>, pred: impl Fn(&str) -> bool, what: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(l) = lines.lock().unwrap().iter().find(|l| pred(l)) {
            return l.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no matching {what} line in:\n{}",
            lines.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The start-up line naming the bound addresses, in text (`listening http=...`) or JSON logs.
fn is_listening_line(line: &str) -> bool {
    line.contains(" listening ") || line.contains("\"message\":\"listening\"")
}

/// `key=ADDR` from a text log line, or `"key":"ADDR"` from a JSON one.
fn field(line: &str, key: &str) -> SocketAddr {
    let text = line.split_whitespace().find_map(|w| w.strip_prefix(key)).map(str::to_string);
    let json = || {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        v["fields"][key.trim_end_matches('=')].as_str().map(str::to_string)
    };
    text.or_else(json)
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("bad {key} in {line:?}"))
}

/// Starts an in-process echo backend named `name` on a free loopback port.
pub async fn echo(name: &str) -> SocketAddr {
    sluice::echo::spawn("127.0.0.1:0".parse().unwrap(), name).await.expect("echo backend starts")
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (echo answers).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The echo backend that answered.
    pub fn backend(&self) -> String {
        self.json()["name"].as_str().unwrap_or_default().to_string()
    }
}

/// A keep-alive HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An h2c (prior knowledge) client.
pub fn h2c_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).http2_only(true).build_http()
}

/// GET `url` with an optional Host header, on a fresh client.
pub async fn get(url: &str, host: Option<&str>) -> Reply {
    send(&client(), request("GET", url, host, Bytes::new())).await
}

/// Builds a request.
pub fn request(method: &str, url: &str, host: Option<&str>, body: Bytes) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(url);
    if let Some(h) = host {
        b = b.header("host", h);
    }
    b.body(Full::new(body)).unwrap()
}

/// Builds an HTTP/1.1 request whose body is sent chunked (hyper honours a `Transfer-Encoding`
/// its caller sets), whatever its size: the fast path carries only bodies with a
/// `Content-Length`, so such a request takes the general path, and its connection with it.
pub fn chunked_request(
    method: &str,
    url: &str,
    host: Option<&str>,
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut req = request(method, url, host, body);
    req.headers_mut().insert(http::header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    req
}

/// Sends a request (any body type) and reads the whole response.
pub async fn send<B>(client: &Client<HttpConnector, B>, req: Request<B>) -> Reply
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let resp = tokio::time::timeout(WAIT, client.request(req))
        .await
        .expect("no timeout")
        .expect("a response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("a whole body").to_bytes();
    Reply { status: parts.status, headers: parts.headers, body }
}

/// A temporary manifests directory.
pub struct Manifests {
    dir: tempfile::TempDir,
}

impl Manifests {
    /// An empty directory.
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `name` atomically (write then rename, as editors and `kubectl cp` do), so the
    /// watcher never reads half a file.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    /// Removes `name`.
    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.dir.path().join(name)).unwrap();
    }
}

/// The `sluice` IngressClass (our controller), marked default.
pub fn ingress_class() -> String {
    "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: sluice
  annotations:
    ingressclass.kubernetes.io/is-default-class: \"true\"
spec:
  controller: sluice.dev/ingress-controller
"
    .to_string()
}

/// A Service `name` in `default` with port 80 named `http`, and an EndpointSlice listing
/// `endpoints` as ready (their own ports are dialled).
pub fn service(name: &str, endpoints: &[SocketAddr]) -> String {
    service_with(name, endpoints, &[])
}

/// Like [`service`], with extra endpoints that are not ready.
pub fn service_with(name: &str, ready: &[SocketAddr], not_ready: &[SocketAddr]) -> String {
    let mut slices = String::new();
    // One slice per endpoint: each endpoint has its own port, and a slice has one port list.
    for (i, (addr, ok)) in
        ready.iter().map(|a| (a, true)).chain(not_ready.iter().map(|a| (a, false))).enumerate()
    {
        slices.push_str(&format!(
            "---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-{i}
  namespace: default
  labels:
    kubernetes.io/service-name: {name}
addressType: IPv4
ports:
- name: http
  port: {port}
endpoints:
- addresses: [\"{ip}\"]
  conditions:
    ready: {ok}
",
            port = addr.port(),
            ip = addr.ip(),
        ));
    }
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: default
spec:
  ports:
  - name: http
    port: 80
{slices}"
    )
}

/// A manifests directory sending every host and path to the Service `name` (endpoints
/// `backends`), through an Ingress `web` carrying `annotations`: the set-up most proxy tests need.
pub fn catch_all(name: &str, backends: &[SocketAddr], annotations: &[(&str, &str)]) -> Manifests {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service(name, backends));
    m.write("ing.yaml", &ingress("web", "", &[("/", "Prefix", name)], annotations));
    m
}

/// The ConfigMap `default/sluice-config` (for `--configmap default/sluice-config`) with
/// `data`.
pub fn sluice_config(data: &[(&str, &str)]) -> String {
    let data: String = data.iter().map(|(k, v)| format!("  {k}: {v:?}\n")).collect();
    let data = if data.is_empty() { " {}\n".to_string() } else { format!("\n{data}") };
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sluice-config\n  namespace: default\ndata:{data}"
    )
}

/// An Ingress `name` in `default` for `host` (empty for any host), with `(path, pathType,
/// service)` rules on port 80, and annotations.
pub fn ingress(
    name: &str,
    host: &str,
    paths: &[(&str, &str, &str)],
    annotations: &[(&str, &str)],
) -> String {
    let mut s = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n"
    );
    if !annotations.is_empty() {
        s.push_str("  annotations:\n");
        for (k, v) in annotations {
            s.push_str(&format!("    {k}: {v:?}\n"));
        }
    }
    s.push_str("spec:\n  ingressClassName: sluice\n  rules:\n");
    if host.is_empty() {
        s.push_str("  - http:\n");
    } else {
        // Quoted: a wildcard host (`*.example.com`) is not a plain YAML scalar.
        s.push_str(&format!("  - host: \"{host}\"\n    http:\n"));
    }
    s.push_str("      paths:\n");
    for (path, kind, svc) in paths {
        s.push_str(&format!(
            "      - path: {path}\n        pathType: {kind}\n        backend:\n          service:\n            name: {svc}\n            port:\n              number: 80\n"
        ));
    }
    s
}

/// Adds a `spec.tls` section to an Ingress made by [`ingress`]: one entry per `(hosts,
/// secretName)`.
pub fn with_tls(ingress: String, entries: &[(&[&str], Option<&str>)]) -> String {
    let mut s = ingress;
    s.push_str("  tls:\n");
    for (hosts, secret) in entries {
        s.push_str(&format!("  - hosts: {hosts:?}\n"));
        if let Some(secret) = secret {
            s.push_str(&format!("    secretName: {secret}\n"));
        }
    }
    s
}

// Helpers for the proxy_* tests: misbehaving backends and raw client connections.

/// An address where nothing listens: a loopback port bound, then released.
pub fn unused_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A backend on a free loopback port that runs `serve` on each accepted connection (a raw
/// socket, for backends that misbehave at the byte level).
pub async fn tcp_backend<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    addr
}

/// A hyper backend (HTTP/1.1 and h2c) on a free loopback port; `answer` answers each request.
pub async fn http_backend<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
{
    let answer = Arc::new(answer);
    tcp_backend(move |stream| {
        let answer = answer.clone();
        async move {
            let service = hyper::service::service_fn(move |req| {
                let fut = answer(req);
                async move { Ok::<_, std::convert::Infallible>(fut.await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        }
    })
    .await
}

/// Reads from `stream` up to the end of a message head (`\r\n\r\n`); `None` if the peer
/// closes or fails first. Bytes after the head that arrived with it are included.
pub async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    read_head_into(stream, &mut buf).await?;
    Some(buf)
}

/// Reads from `stream` into `buf` until `buf` holds a whole message head; returns its length
/// (through the `\r\n\r\n`), or `None` if the peer closes or fails first. What arrived after
/// the head stays in `buf`: a keep-alive backend calls this again for the next request.
pub async fn read_head_into(
    stream: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Option<usize> {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(p + 4);
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Writes `bytes` on a fresh connection to `addr` (concurrently with reading, and ignoring
/// write errors) and returns what came back once the peer closed, a whole response arrived,
/// or [`WAIT`] passed.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let bytes = bytes.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&bytes).await;
        wr // kept open until the exchange ends
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + WAIT;
    while !raw_complete(&buf) {
        match tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    writer.abort();
    String::from_utf8_lossy(&buf).into_owned()
}

/// True when `buf` holds a whole response: a head, and as many body bytes as its
/// `Content-Length` says (or the end of a chunked body).
fn raw_complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let body = &buf[end + 4..];
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body.len() >= len;
    }
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    false
}

/// Writes `req` on a keep-alive connection and reads one response (its head and a
/// `Content-Length` body): `(status, head, body)`.
pub async fn exchange(stream: &mut tokio::net::TcpStream, req: &str) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
                })
                .unwrap_or_else(|| panic!("no Content-Length in {head}"));
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                return (raw_status(&head), head, body);
            }
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "the connection closed: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The admin port's /metrics page.
pub async fn metrics(s: &Sluice) -> String {
    String::from_utf8(get(&s.admin_url("/metrics"), None).await.body.to_vec()).unwrap()
}

/// Waits until /metrics has a line containing every needle; returns it.
pub async fn wait_metric(s: &Sluice, needles: &[&str]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = metrics(s).await;
        if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_string();
        }
        assert!(Instant::now() < deadline, "no metric line with {needles:?} in:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `req` over a new h2c (prior knowledge) connection to `addr`, whatever its URI's
/// authority.
pub async fn h2c_send(addr: SocketAddr, req: http::Request<Full<Bytes>>) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("an h2c connection");
    tokio::spawn(conn);
    let resp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .expect("no timeout")
        .expect("a response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("a whole body").to_bytes();
    Reply { status: parts.status, headers: parts.headers, body }
}

/// The status code of a raw response (`HTTP/1.1 NNN ...`), 0 when there is none.
pub fn raw_status(response: &str) -> u16 {
    response
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A backend that reports each request's arrival on the returned channel, then answers
/// `held` once `release` is notified: lets a test act while a request is surely in flight.
pub async fn held_backend()
-> (SocketAddr, tokio::sync::mpsc::Receiver<()>, Arc<tokio::sync::Notify>) {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (arrived, rx) = tokio::sync::mpsc::channel(8);
    let release = Arc::new(tokio::sync::Notify::new());
    let r = release.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (arrived, release) = (arrived.clone(), r.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let (arrived, release) = (arrived.clone(), release.clone());
                    async move {
                        let _ = arrived.send(()).await;
                        release.notified().await;
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"held"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, rx, release)
}

/// The `Authorization` value of basic credentials `user` and `password`.
pub fn basic_credentials(user: &str, password: &str) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// The diagnostics of `/debug/config`: `(reason, message)`.
pub async fn diagnostics(s: &Sluice) -> Vec<(String, String)> {
    let config = s.config().await;
    let field = |d: &serde_json::Value, k: &str| d[k].as_str().unwrap_or_default().to_string();
    config["diagnostics"]
        .as_array()
        .expect("a list of diagnostics")
        .iter()
        .map(|d| (field(d, "reason"), field(d, "message")))
        .collect()
}

/// Asserts that the diagnostics are exactly `expected`: as many, each `(reason, needle)`
/// matching one with that reason whose message contains the needle.
pub async fn assert_diagnostics(s: &Sluice, expected: &[(&str, &str)]) {
    let found = diagnostics(s).await;
    assert_eq!(found.len(), expected.len(), "expected {expected:?}, found {found:#?}");
    for (reason, needle) in expected {
        assert!(
            found.iter().any(|(r, m)| r == reason && m.contains(needle)),
            "no {reason} diagnostic mentioning {needle:?} in {found:#?}"
        );
    }
}

/// The path a repository script that builds or fetches something from Go modules prints
/// (`tests/oauth2-proxy/build`, `tests/ingress-nginx-dashboard/fetch`: no-ops once cached).
pub fn go_script_output(script: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(script);
    let hint = format!(
        "run {script} (it needs Go to fetch its Go module; .ci/run installs it) and run the \
         test again"
    );
    let out = Command::new(&path)
        .output()
        .unwrap_or_else(|e| panic!("{} does not run ({e}): {hint}", path.display()));
    assert!(
        out.status.success(),
        "{script} failed: {}\n{hint}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).expect("a path").trim())
}

/// Percent-encodes every byte of `s` but letters, digits and `-._~` (upper-case hex), as a
/// query string needs and as NGINX's `$ssl_client_escaped_cert` encodes.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The first line `program` (a Debian tool: `htpasswd`, `openssl`) prints with `args`.
pub fn tool(program: &str, args: &[&str]) -> String {
    let package = if program == "htpasswd" { "apache2-utils" } else { program };
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| {
        panic!("{program} does not run ({e}): install it (Debian: apt-get install {package})")
    });
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("text");
    text.lines().next().expect("a line").trim().to_string()
}
