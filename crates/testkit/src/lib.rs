//! A real Kubernetes API server for tests: etcd and kube-apiserver, built from Go modules by
//! `tests/apiserver/build` (which `scripts/kube-e2e` runs), started on free loopback ports.
//!
//! Two identities are set up: an administrator (group `system:masters`) for the tests, and
//! the controller's service account `sluice/sluice`, which has exactly the permissions the
//! RBAC manifests in `deploy/` grant it once the tests apply them. No kube-controller-manager
//! runs: the tests create EndpointSlices themselves, and namespaces are never deleted.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The bearer token of the administrator.
pub const ADMIN_TOKEN: &str = "sluice-e2e-admin";
/// The bearer token of the controller's service account.
pub const CONTROLLER_TOKEN: &str = "sluice-e2e-controller";
/// The controller's namespace and service account name, as in `deploy/`.
pub const CONTROLLER_NAMESPACE: &str = "sluice";

/// Where the built binaries are: `SLUICE_APISERVER_BIN`, set by `scripts/kube-e2e`.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os("SLUICE_APISERVER_BIN").context(
        "SLUICE_APISERVER_BIN is not set: run the Kubernetes suite with scripts/kube-e2e, which builds kube-apiserver and etcd",
    )?;
    let dir = PathBuf::from(dir);
    for b in ["etcd", "kube-apiserver"] {
        if !dir.join(b).is_file() {
            bail!("{} is missing: run tests/apiserver/build", dir.join(b).display());
        }
    }
    Ok(dir)
}

/// A running etcd and kube-apiserver; both are stopped on drop.
pub struct ApiServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    etcd_port: u16,
    port: u16,
}

impl ApiServer {
    /// Starts etcd and kube-apiserver and waits until the API server is ready.
    pub fn start() -> anyhow::Result<ApiServer> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("sluice-apiserver-").tempdir()?;
        let d = dir.path();
        run(Command::new("openssl").args(["genrsa", "-out"]).arg(d.join("sa.key")).arg("2048"))?;
        run(Command::new("openssl")
            .args(["rsa", "-pubout", "-in"])
            .arg(d.join("sa.key"))
            .arg("-out")
            .arg(d.join("sa.pub")))?;
        std::fs::write(
            d.join("tokens.csv"),
            format!(
                "{ADMIN_TOKEN},admin,admin,system:masters\n\
                 {CONTROLLER_TOKEN},system:serviceaccount:{ns}:sluice,sluice,\"system:serviceaccounts,system:serviceaccounts:{ns},system:authenticated\"\n",
                ns = CONTROLLER_NAMESPACE
            ),
        )?;
        let etcd_port = free_port()?;
        let mut server =
            ApiServer { dir, bin, etcd: None, apiserver: None, etcd_port, port: free_port()? };
        server.start_etcd()?;
        server.start_apiserver()?;
        Ok(server)
    }

    /// Starts etcd (again, after [`stop_etcd`](Self::stop_etcd)) on the same port with the
    /// same data directory, and waits until it accepts connections.
    pub fn start_etcd(&mut self) -> anyhow::Result<()> {
        let d = self.dir.path();
        let child = Command::new(self.bin.join("etcd"))
            .arg("--data-dir")
            .arg(d.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{}", self.etcd_port))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{}", self.etcd_port))
            .args([
                "--listen-peer-urls=http://127.0.0.1:0",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ])
            .stdout(Stdio::null())
            // Appended to: a restarted etcd's log follows the first one's.
            .stderr(append_log_file(d, "etcd.log")?)
            .spawn()
            .context("cannot start etcd")?;
        self.etcd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.etcd_port)).is_err() {
            if let Some(status) = self.etcd.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("etcd exited with {status}: {}", self.log("etcd.log"));
            }
            if Instant::now() > deadline {
                bail!("etcd did not start: {}", self.log("etcd.log"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts kube-apiserver (again, after [`stop_apiserver`](Self::stop_apiserver)) on the
    /// same port with the same state, and waits until it is ready.
    pub fn start_apiserver(&mut self) -> anyhow::Result<()> {
        let d = self.dir.path();
        let child = Command::new(self.bin.join("kube-apiserver"))
            .arg(format!("--etcd-servers=http://127.0.0.1:{}", self.etcd_port))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
            .arg(format!("--secure-port={}", self.port))
            .arg(format!("--cert-dir={}", d.join("pki").display()))
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!("--service-account-key-file={}", d.join("sa.pub").display()))
            .arg(format!("--service-account-signing-key-file={}", d.join("sa.key").display()))
            .arg(format!("--token-auth-file={}", d.join("tokens.csv").display()))
            .args([
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--disable-admission-plugins=ServiceAccount",
                "--profiling=false",
            ])
            .stdout(Stdio::null())
            .stderr(log_file(d, "kube-apiserver.log")?)
            .spawn()
            .context("cannot start kube-apiserver")?;
        self.apiserver = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.ready() {
                self.write_kubeconfigs()?;
                return Ok(());
            }
            if let Some(status) = self.apiserver.as_mut().and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("kube-apiserver exited with {status}: {}", self.log("kube-apiserver.log"));
            }
            if Instant::now() > deadline {
                bail!(
                    "kube-apiserver was not ready within 60 s: {}",
                    self.log("kube-apiserver.log")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops kube-apiserver (etcd keeps running, so its state survives).
    pub fn stop_apiserver(&mut self) {
        if let Some(mut c) = self.apiserver.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills etcd as a crash would (SIGKILL); its data directory stays, so
    /// [`start_etcd`](Self::start_etcd) brings the same state back. Stop the API server
    /// first for a whole-control-plane outage.
    pub fn stop_etcd(&mut self) {
        if let Some(mut c) = self.etcd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Writes a key straight into etcd and compacts its history up to that write, so that
    /// every watch resuming from an earlier resourceVersion gets `410 Gone` and must relist
    /// (what a long outage or a busy cluster does). Uses etcd's v3 JSON gateway.
    pub fn expire_watches(&self) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{}", self.etcd_port);
        // base64("sluice-e2e-expire") and base64("x").
        let put = curl_post(
            &format!("{url}/v3/kv/put"),
            r#"{"key":"c2x1aWNlLWUyZS1leHBpcmU=","value":"eA=="}"#,
        )?;
        let revision = put
            .split("\"revision\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .with_context(|| format!("no revision in etcd's answer: {put}"))?
            .to_string();
        curl_post(
            &format!("{url}/v3/kv/compaction"),
            &format!(r#"{{"revision":"{revision}","physical":true}}"#),
        )?;
        Ok(())
    }

    /// True once `/readyz` answers 200 (checked with the API server's own certificate).
    fn ready(&self) -> bool {
        let ca = self.dir.path().join("pki/apiserver.crt");
        if !ca.exists() {
            return false;
        }
        Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "--cacert"])
            .arg(&ca)
            .args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
            .arg(format!("{}/readyz", self.url()))
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The API server's URL.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The administrator's kubeconfig.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    /// The controller's kubeconfig (service account `sluice/sluice`).
    pub fn controller_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("controller.kubeconfig")
    }

    /// The directory with the kubeconfigs and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn write_kubeconfigs(&self) -> anyhow::Result<()> {
        let ca = self.dir.path().join("pki/apiserver.crt");
        for (file, token) in
            [("admin.kubeconfig", ADMIN_TOKEN), ("controller.kubeconfig", CONTROLLER_TOKEN)]
        {
            std::fs::write(self.dir.path().join(file), kubeconfig(&self.url(), &ca, token))?;
        }
        Ok(())
    }

    fn log(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop_apiserver();
        self.stop_etcd();
    }
}

/// A kubeconfig for `url`, trusting `ca`, authenticating with `token`.
pub fn kubeconfig(url: &str, ca: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: {url}
    certificate-authority: {ca}
users:
- name: e2e
  user:
    token: {token}
contexts:
- name: e2e
  context: {{cluster: e2e, user: e2e}}
current-context: e2e
",
        ca = ca.display()
    )
}

/// A client from a kubeconfig file.
pub async fn client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

fn curl_post(url: &str, body: &str) -> anyhow::Result<String> {
    let out = Command::new("curl").args(["-sf", "-X", "POST", "-d", body, url]).output()?;
    if !out.status.success() {
        bail!("POST {url} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    Ok(std::fs::File::create(dir.join(name))?)
}

fn append_log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    Ok(std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name))?)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The corpus of real Ingresses the tests read in place (`SLUICE_CORPUS`, else
/// `../shared/corpus` beside the checkout at `repo`, else beside the local checkout `repo`
/// was cloned from, as a fresh `git clone .` for a CI run is). Panics, naming where it looked,
/// when it is in none of them: the tests that read it fail rather than skip.
pub fn corpus(repo: &Path) -> PathBuf {
    let origin = || {
        let out = std::process::Command::new("git")
            .args(["-C", &repo.display().to_string(), "config", "--get", "remote.origin.url"])
            .output()
            .ok()?;
        let url = String::from_utf8(out.stdout).ok()?;
        let dir = PathBuf::from(url.trim().trim_start_matches("file://"));
        dir.is_dir().then(|| dir.join("../shared/corpus"))
    };
    let candidates: Vec<PathBuf> = std::env::var_os("SLUICE_CORPUS")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::iter::once(repo.join("../shared/corpus")))
        .chain(origin())
        .collect();
    candidates
        .iter()
        .find(|d| d.join("ingresses").is_dir() && d.join("stats.md").is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the corpus of real Ingresses is not at any of {candidates:?}; set SLUICE_CORPUS"
            )
        })
}
