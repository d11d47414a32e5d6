//! Runs a test API server (etcd and kube-apiserver on loopback) until SIGTERM or SIGINT, for
//! `scripts/kube-e2e`. Writes `admin.kubeconfig`, `controller.kubeconfig` and `url` into the
//! directory given as argument once the API server is ready.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("usage: sluice-apiserver OUT_DIR"))?,
    );
    let server = sluice_testkit::ApiServer::start()?;
    std::fs::create_dir_all(&out)?;
    std::fs::copy(server.admin_kubeconfig(), out.join("admin.kubeconfig"))?;
    std::fs::copy(server.controller_kubeconfig(), out.join("controller.kubeconfig"))?;
    std::fs::write(out.join("url"), server.url())?;
    eprintln!("kube-apiserver ready at {} (logs in {})", server.url(), server.dir().display());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        anyhow::Ok(())
    })?;
    drop(server);
    Ok(())
}
