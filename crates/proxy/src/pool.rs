//! Each worker's one pool of idle upstream connections, shared by both ways of carrying
//! requests: raw HTTP/1.1 connections (the fast path's, which the general path's
//! [`leg`](crate::fast::leg) uses too) and hyper's senders (HTTP/1.1, and the
//! one shared HTTP/2 connection per endpoint for gRPC). It follows the ConfigMap's
//! `upstream-keepalive-*` keys ([`UpstreamKeepalive`]), as NGINX's `keepalive` directives in
//! ingress-nginx's one upstream block: at most `connections` idle connections per worker, all
//! endpoints together; each kept `timeout` while idle, and closed once it has carried
//! `requests` requests or `time` has passed since it was opened.
//! Thread-local: no locks, no cross-thread wake-ups.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;

use hyper::client::conn::{http1, http2};
use sluice_model::{UpstreamKeepalive, UpstreamProtocol};
use tokio::time::Instant;

use crate::body::RequestBody;
use crate::fast::Upstream;

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

/// A sender with what the keep-alive limits count: when its connection was opened, and the
/// requests it carried.
pub(crate) struct Pooled {
    pub sender: Sender,
    born: Instant,
    requests: u32,
}

impl Pooled {
    /// A new connection's sender.
    pub(crate) fn new(sender: Sender) -> Self {
        Self { sender, born: Instant::now(), requests: 0 }
    }
}

/// How many requests a connection has carried, and since when, against the limits: whether
/// it may carry another.
fn reusable(born: Instant, requests: u32, now: Instant, limits: &UpstreamKeepalive) -> bool {
    requests < limits.requests && now.saturating_duration_since(born) < limits.time
}

/// One endpoint's idle connections, most recently used last.
#[derive(Default)]
struct Idle {
    raw: Vec<Upstream>,
    /// HTTP/1.1 senders idle since the instant, or the shared HTTP/2 one (last used then).
    hyper: Vec<(Pooled, Instant)>,
}

impl Idle {
    fn len(&self) -> usize {
        self.raw.len() + self.hyper.len()
    }
}

/// A worker's idle connections, and how many there are in all.
#[derive(Default)]
struct Pool {
    by_key: HashMap<PoolKey, Idle, foldhash::fast::RandomState>,
    idle: usize,
}

impl Pool {
    /// Room for one more idle connection of `idle` (an endpoint's), within `limit` for the
    /// worker: at the limit, that endpoint's least recently used connection is closed to make
    /// it; `false` when it has none (the returning connection is closed instead).
    fn make_room(total: &mut usize, idle: &mut Idle, limit: u32) -> bool {
        if *total < limit as usize {
            return true;
        }
        if !idle.raw.is_empty() {
            idle.raw.remove(0);
        } else if !idle.hyper.is_empty() {
            idle.hyper.remove(0);
        } else {
            return false;
        }
        *total -= 1;
        true
    }
}

thread_local! {
    /// This worker's idle connections. Only this thread's tasks touch it.
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// An idle fast-path connection to `addr` that has been idle less than the keep-alive
/// timeout at `now`. It may have been closed by the peer meanwhile: callers retry on a fresh
/// one when it fails before answering.
pub(crate) fn checkout_raw(
    addr: SocketAddr,
    now: Instant,
    limits: &UpstreamKeepalive,
) -> Option<Upstream> {
    POOL.with(|pool| {
        let pool = &mut *pool.borrow_mut();
        let idle = pool.by_key.get_mut(&PoolKey::plain(addr))?;
        while let Some(up) = idle.raw.pop() {
            pool.idle -= 1;
            if now.saturating_duration_since(up.idle_since()) < limits.timeout {
                return Some(up);
            }
        }
        None
    })
}

/// Gives a fast-path connection back after a response was read whole (its `requests`
/// counting that one), unless it has carried all it may.
pub(crate) fn checkin_raw(up: Upstream, limits: &UpstreamKeepalive) {
    if !reusable(up.born(), up.requests(), up.idle_since(), limits) {
        return;
    }
    POOL.with(|pool| {
        let pool = &mut *pool.borrow_mut();
        let idle = pool.by_key.entry(PoolKey::plain(up.addr)).or_default();
        if Pool::make_room(&mut pool.idle, idle, limits.connections) {
            idle.raw.push(up);
            pool.idle += 1;
        }
    });
}

/// A connection for the general path: an idle HTTP/1.1 one (most recently used first), or
/// the shared HTTP/2 one (which leaves the pool when this request is the last it may carry).
pub(crate) fn checkout(key: PoolKey, limits: &UpstreamKeepalive) -> Option<Pooled> {
    POOL.with(|pool| {
        let pool = &mut *pool.borrow_mut();
        let idle = pool.by_key.get_mut(&key)?;
        let now = Instant::now();
        if key.protocol.h2() {
            let before = idle.hyper.len();
            idle.hyper.retain(|(p, _)| !p.sender.is_closed());
            pool.idle -= before - idle.hyper.len();
            let (shared, since) = idle.hyper.first_mut()?;
            *since = now;
            shared.requests += 1;
            let Sender::H2(s) = &shared.sender else {
                unreachable!("an HTTP/2 key holds HTTP/2 connections")
            };
            let out = Pooled { sender: Sender::H2(s.clone()), born: shared.born, requests: 0 };
            if !reusable(shared.born, shared.requests, now, limits) {
                idle.hyper.remove(0);
                pool.idle -= 1;
            }
            return Some(out);
        }
        while let Some((pooled, since)) = idle.hyper.pop() {
            pool.idle -= 1;
            if !pooled.sender.is_closed() && now.saturating_duration_since(since) < limits.timeout {
                return Some(pooled);
            }
        }
        None
    })
}

/// Gives an HTTP/1.1 sender back after its response was read whole, unless it has carried
/// all it may (an HTTP/2 one never left the pool).
pub(crate) fn checkin(key: PoolKey, mut pooled: Pooled, limits: &UpstreamKeepalive) {
    if pooled.sender.is_closed() || matches!(pooled.sender, Sender::H2(_)) {
        return;
    }
    pooled.requests += 1;
    if !reusable(pooled.born, pooled.requests, Instant::now(), limits) {
        return;
    }
    insert(key, pooled, limits);
}

/// Adds a sender to the pool (a new HTTP/2 connection joins it at once, to be shared).
pub(crate) fn insert(key: PoolKey, pooled: Pooled, limits: &UpstreamKeepalive) {
    POOL.with(|pool| {
        let pool = &mut *pool.borrow_mut();
        let idle = pool.by_key.entry(key).or_default();
        if Pool::make_room(&mut pool.idle, idle, limits.connections) {
            idle.hyper.push((pooled, Instant::now()));
            pool.idle += 1;
        }
    });
}

/// Drops expired idle connections, and those the peer closed (or wrote to unasked). Run
/// periodically by each worker.
pub(crate) fn sweep(limits: &UpstreamKeepalive) {
    POOL.with(|pool| {
        let pool = &mut *pool.borrow_mut();
        let now = Instant::now();
        let mut total = 0;
        for idle in pool.by_key.values_mut() {
            idle.hyper.retain(|(p, since)| {
                !p.sender.is_closed() && now.saturating_duration_since(*since) < limits.timeout
            });
            idle.raw.retain(|up| up.still_idle(limits.timeout));
            // Over the limit (lowered by a new ConfigMap): the oldest go first.
            let over = (total + idle.len()).saturating_sub(limits.connections as usize);
            idle.raw.drain(..over.min(idle.raw.len()));
            total += idle.len();
        }
        pool.by_key.retain(|_, idle| idle.len() > 0);
        pool.idle = total;
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn connections_retire_after_their_requests_or_their_time() {
        let limits =
            UpstreamKeepalive { requests: 3, time: Duration::from_secs(10), ..Default::default() };
        let born = Instant::now();
        assert!(reusable(born, 2, born, &limits));
        assert!(!reusable(born, 3, born, &limits));
        assert!(reusable(born, 0, born + Duration::from_secs(9), &limits));
        assert!(!reusable(born, 0, born + Duration::from_secs(10), &limits));
        let never = UpstreamKeepalive { requests: 0, ..Default::default() };
        assert!(!reusable(born, 0, born, &never));
    }

    #[test]
    fn a_full_pool_makes_room_from_the_endpoint_or_refuses() {
        let mut idle = Idle::default();
        let mut total = 5;
        // Full, and this endpoint holds nothing: the returning connection is refused.
        assert!(!Pool::make_room(&mut total, &mut idle, 5));
        assert_eq!(total, 5);
        // Room left: nothing is closed.
        assert!(Pool::make_room(&mut total, &mut idle, 6));
        assert_eq!(total, 5);
        // No connection kept at all with a limit of 0.
        let mut none = 0;
        assert!(!Pool::make_room(&mut none, &mut idle, 0));
    }
}
