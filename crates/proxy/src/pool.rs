//! Each worker's one pool of idle upstream connections, shared by both ways of carrying
//! requests: the fast path's raw HTTP/1.1 connections and hyper's senders (HTTP/1.1, and the
//! one shared HTTP/2 connection per endpoint for gRPC). The limit of idle connections per
//! endpoint (ingress-nginx's `upstream-keepalive-connections`, 320) counts both kinds.
//! Thread-local: no locks, no cross-thread wake-ups.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use sluice_model::UpstreamProtocol;
use tokio::time::Instant;

use crate::body::RequestBody;
use crate::fast::Upstream;

/// Idle connections kept per endpoint per worker (ingress-nginx's
/// `upstream-keepalive-connections`).
pub(crate) const MAX_IDLE_PER_ENDPOINT: usize = 320;
/// How long an idle connection is kept (`upstream-keepalive-timeout`).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections are pooled per endpoint and way of speaking to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub addr: SocketAddr,
    pub protocol: UpstreamProtocol,
    /// The TLS settings' fingerprint (0 in clear).
    pub tls: u64,
}

impl PoolKey {
    /// The key of plain HTTP/1.1 connections to `addr` (the fast path's).
    pub(crate) fn plain(addr: SocketAddr) -> Self {
        Self { addr, protocol: UpstreamProtocol::Http1, tls: 0 }
    }
}

/// A request sender on one upstream connection (the general path's).
pub(crate) enum Sender {
    H1(http1::SendRequest<RequestBody>),
    H2(http2::SendRequest<RequestBody>),
}

impl Sender {
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }
}

/// One endpoint's idle connections, most recently used last.
#[derive(Default)]
struct Idle {
    raw: Vec<Upstream>,
    hyper: Vec<(Sender, Instant)>,
}

impl Idle {
    fn len(&self) -> usize {
        self.raw.len() + self.hyper.len()
    }
}

thread_local! {
    /// This worker's idle connections. Only this thread's tasks touch it.
    static POOL: RefCell<HashMap<PoolKey, Idle, foldhash::fast::RandomState>> =
        RefCell::new(HashMap::default());
}

/// An idle fast-path connection to `addr` that has been idle less than [`IDLE_TIMEOUT`] at
/// `now`. It may have been closed by the peer meanwhile: callers retry on a fresh one when it
/// fails before answering.
pub(crate) fn checkout_raw(addr: SocketAddr, now: Instant) -> Option<Upstream> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.get_mut(&PoolKey::plain(addr))?;
        while let Some(up) = idle.raw.pop() {
            if now.saturating_duration_since(up.idle_since()) < IDLE_TIMEOUT {
                return Some(up);
            }
        }
        None
    })
}

/// Gives a fast-path connection back after a response was read whole.
pub(crate) fn checkin_raw(up: Upstream) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.entry(PoolKey::plain(up.addr)).or_default();
        if idle.len() < MAX_IDLE_PER_ENDPOINT {
            idle.raw.push(up);
        }
    });
}

/// A connection for the general path: an idle HTTP/1.1 one (most recently used first), or
/// the shared HTTP/2 one.
pub(crate) fn checkout(key: PoolKey) -> Option<Sender> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.get_mut(&key)?;
        if key.protocol.h2() {
            idle.hyper.retain(|(s, _)| !s.is_closed());
            return idle.hyper.first_mut().map(|(s, since)| {
                *since = Instant::now();
                match s {
                    Sender::H2(s) => Sender::H2(s.clone()),
                    Sender::H1(_) => unreachable!("an HTTP/2 key holds HTTP/2 connections"),
                }
            });
        }
        while let Some((sender, since)) = idle.hyper.pop() {
            if !sender.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    })
}

/// Gives an HTTP/1.1 sender back after its response was read whole (an HTTP/2 one never left
/// the pool).
pub(crate) fn checkin(key: PoolKey, sender: Sender) {
    if sender.is_closed() || matches!(sender, Sender::H2(_)) {
        return;
    }
    insert(key, sender);
}

/// Adds a sender to the pool (a new HTTP/2 connection joins it at once, to be shared).
pub(crate) fn insert(key: PoolKey, sender: Sender) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.entry(key).or_default();
        if idle.len() < MAX_IDLE_PER_ENDPOINT {
            idle.hyper.push((sender, Instant::now()));
        }
    });
}

/// Drops expired idle connections, and those the peer closed (or wrote to unasked). Run
/// periodically by each worker.
pub(crate) fn sweep() {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        for idle in pool.values_mut() {
            idle.hyper.retain(|(s, since)| !s.is_closed() && since.elapsed() < IDLE_TIMEOUT);
            idle.raw.retain(Upstream::still_idle);
        }
        pool.retain(|_, idle| idle.len() > 0);
    });
}
