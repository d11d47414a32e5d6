//! Mirroring (`mirror-target`): a copy of a request is sent to another URL and its answer
//! thrown away. Sent and forgotten: the copy runs on its own task, so a mirror that is slow,
//! failing or gone never delays or fails the request it copies (NGINX's `mirror` holds the
//! main request until the copy is answered). Copies in flight are bounded per worker; beyond
//! that they are dropped and counted (`sluice_mirror_requests_total{outcome="dropped"}`).

use std::cell::Cell;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, header};

use crate::Shared;
use crate::body::RequestBody;
use crate::pool::Sender;

/// Copies in flight per worker.
const MAX_IN_FLIGHT: usize = 256;
/// The most time a copy may take in all (connecting, sending, the answer's head).
const DEADLINE: Duration = Duration::from_secs(30);

thread_local! {
    static IN_FLIGHT: Cell<usize> = const { Cell::new(0) };
}

/// A copy of a request, ready to send.
pub(crate) struct Copy {
    /// The target URL, NGINX variables filled in.
    pub url: String,
    /// `mirror-host`, else the target's host name (without its port).
    pub host: Option<String>,
    pub method: Method,
    /// The client's headers (hop-by-hop ones left out).
    pub headers: HeaderMap,
    /// The body, when mirrored and held whole.
    pub body: Option<Bytes>,
    /// The request's path and query, for a target without a path of its own.
    pub uri: String,
}

/// Sends `copy` on a task of its own, unless this worker has too many in flight.
pub(crate) fn send(copy: Copy, shared: &'static Shared) {
    let busy = IN_FLIGHT.with(|n| {
        if n.get() >= MAX_IN_FLIGHT {
            return true;
        }
        n.set(n.get() + 1);
        false
    });
    if busy {
        shared.metrics.mirror("dropped");
        return;
    }
    tokio::spawn(async move {
        let outcome = match tokio::time::timeout(DEADLINE, exchange(copy)).await {
            Ok(Ok(())) => "sent",
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "mirror request failed");
                "failed"
            }
            Err(_) => "failed",
        };
        shared.metrics.mirror(outcome);
        IN_FLIGHT.with(|n| n.set(n.get().saturating_sub(1)));
    });
}

/// One copy's exchange, up to its answer's head.
async fn exchange(copy: Copy) -> Result<(), String> {
    let uri: http::Uri = copy.url.parse().map_err(|e| format!("{}: {e}", copy.url))?;
    let (mut sender, addr) = crate::oneshot::connect(&uri).await?;
    let authority = uri.authority().ok_or_else(|| format!("{}: no host", copy.url))?;
    // A target without a path of its own (`http://mirror.svc`) gets the request's.
    let after_scheme = copy.url.split_once("://").map_or("", |(_, rest)| rest);
    let has_path = after_scheme.contains(['/', '?']);
    let path = match uri.path_and_query() {
        Some(p) if has_path => p.as_str(),
        _ => copy.uri.as_str(),
    };
    let body = match copy.body {
        Some(b) => RequestBody::held(b),
        None => RequestBody::empty(),
    };
    let mut req = Request::new(body);
    *req.method_mut() = copy.method;
    *req.uri_mut() = path.parse().map_err(|e| format!("{path}: {e}"))?;
    *req.headers_mut() = copy.headers;
    // Without `mirror-host`, ingress-nginx sets the target's host name without its port
    // (`url.Hostname()` of the target in its mirror annotation parser).
    let host = copy.host.unwrap_or_else(|| authority.host().to_string());
    let headers = req.headers_mut();
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);
    if let Some(len) = req.body().held_len() {
        req.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let Ok(h) = HeaderValue::from_str(&host) {
        req.headers_mut().insert(header::HOST, h);
    }
    let Sender::H1(s) = &mut sender else { return Err("not HTTP/1.1".into()) };
    s.send_request(req).await.map(drop).map_err(|e| format!("{addr}: {e}"))
}
