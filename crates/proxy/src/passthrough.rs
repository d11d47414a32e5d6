//! TLS passthrough: a connection whose ClientHello names a passthrough host is spliced, raw,
//! to one of the host's backend endpoints (round robin, the next one if connecting fails),
//! starting with the ClientHello bytes already read. The backend terminates TLS itself.

use std::time::Duration;

use sluice_model::Backend;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::server::Drain;
use crate::tunnel::{Framing, relay};

/// How long a connection to a passthrough backend may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Silence after which a passed-through connection is closed (NGINX's `proxy_timeout`,
/// ingress-nginx's `proxy-stream-timeout`).
const IDLE: Duration = Duration::from_secs(600);

/// Connects to an endpoint of `backend`, replays `hello`, then relays both ways.
pub(crate) async fn splice(client: TcpStream, hello: Vec<u8>, backend: &Backend, drain: &Drain) {
    let Some(first) = backend.next_index() else {
        tracing::debug!(backend = %backend.name, "passthrough backend has no ready endpoint; closing");
        return;
    };
    let n = backend.endpoints.len();
    for i in 0..n.min(3) {
        let addr = backend.endpoints[(first + i) % n].addr;
        let Ok(Ok(mut upstream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
        else {
            tracing::debug!(%addr, "passthrough connect failed; trying the next endpoint");
            continue;
        };
        let _ = upstream.set_nodelay(true);
        if upstream.write_all(&hello).await.is_err() {
            return;
        }
        relay(client, upstream, IDLE, drain, Framing::Bytes).await;
        return;
    }
}
