//! Request and connection limits per client address (`limit-rps`, `limit-rpm`,
//! `limit-connections`), with NGINX's algorithms as ingress-nginx configures them: a leaky
//! bucket per client (`limit_req ... burst=<limit × multiplier> nodelay`) and a count of
//! requests in flight (`limit_conn`). The arithmetic is NGINX's, in milli-requests, so that the
//! same traffic is refused at the same request.
//!
//! A zone belongs to one Ingress (all its hosts and paths share a client's buckets, as in
//! ingress-nginx) and is counted per replica: each Sluice process keeps its own, as each
//! NGINX does. The zone's state outlives configuration changes: the proxy keeps it by name
//! while a table names it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use crate::IpList;

/// The limits of one Ingress's routes.
#[derive(Debug, Serialize)]
pub struct RateLimits {
    /// The zone's name (`namespace/name/uid` of the Ingress): state is kept by it.
    pub zone: String,
    /// `limit-rps`, with its burst.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rps: Option<Rate>,
    /// `limit-rpm`, with its burst.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm: Option<Rate>,
    /// `limit-connections`: requests in flight per client (0: no limit).
    pub connections: u32,
    /// `limit-allowlist`: clients never limited nor counted.
    #[serde(skip_serializing_if = "IpList::is_empty")]
    pub allowlist: IpList,
    /// ConfigMap `limit-req-status-code` (503).
    pub req_status: u16,
    /// ConfigMap `limit-conn-status-code` (503).
    pub conn_status: u16,
    /// The zone's counters, attached by the proxy.
    #[serde(skip)]
    pub state: OnceLock<Arc<Zone>>,
}

impl Clone for RateLimits {
    fn clone(&self) -> Self {
        Self {
            zone: self.zone.clone(),
            rps: self.rps,
            rpm: self.rpm,
            connections: self.connections,
            allowlist: self.allowlist.clone(),
            req_status: self.req_status,
            conn_status: self.conn_status,
            state: OnceLock::new(),
        }
    }
}

impl PartialEq for RateLimits {
    /// The settings; the counters are not configuration.
    fn eq(&self, o: &Self) -> bool {
        (&self.zone, self.rps, self.rpm, self.connections, &self.allowlist)
            == (&o.zone, o.rps, o.rpm, o.connections, &o.allowlist)
            && (self.req_status, self.conn_status) == (o.req_status, o.conn_status)
    }
}

impl Eq for RateLimits {}

/// A request rate and its burst, as NGINX's `limit_req_zone rate=` and `limit_req burst=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Rate {
    /// Milli-requests per second: `N × 1000` for `Nr/s`, `N × 1000 / 60` (rounded down, as
    /// NGINX does) for `Nr/m`.
    pub milli_per_second: u64,
    /// Requests accepted beyond the rate (`limit × limit-burst-multiplier`).
    pub burst: u64,
}

impl Rate {
    /// `limit` requests per second.
    pub fn per_second(limit: u64, burst: u64) -> Self {
        Self { milli_per_second: limit * 1000, burst }
    }

    /// `limit` requests per minute.
    pub fn per_minute(limit: u64, burst: u64) -> Self {
        Self { milli_per_second: limit * 1000 / 60, burst }
    }
}

/// A request limit shared by every replica through memcached (`global-rate-limit` of
/// ingress-nginx before v1.12): at most `limit` requests per `window` for each key, counted
/// with lua-resty-global-throttle's sliding window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GlobalRateLimit {
    /// The counters' namespace (the Ingress, `namespace/name`).
    pub namespace: String,
    /// `global-rate-limit`.
    pub limit: u64,
    /// `global-rate-limit-window`, whole seconds.
    pub window_secs: u64,
    /// `global-rate-limit-key`, with NGINX variables (`$remote_addr`).
    pub key: crate::Template,
    /// `global-rate-limit-ignored-cidrs`: clients never limited nor counted.
    #[serde(skip_serializing_if = "IpList::is_empty")]
    pub ignored: IpList,
    /// ConfigMap `global-rate-limit-status-code` (429).
    pub status: u16,
    /// ConfigMap `global-rate-limit-memcached-host` and `-port`.
    pub memcached: (String, u16),
    /// ConfigMap `global-rate-limit-memcached-connect-timeout`, milliseconds (50).
    pub connect_timeout_ms: u64,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// A request rate (`limit_req`).
    Rate,
    /// Requests in flight (`limit_conn`).
    Connections,
}

/// Shards of a zone: clients are spread over independent locks, held for a few
/// instructions, so that workers seldom meet.
const SHARDS: usize = 16;
/// Clients kept per shard before idle ones are dropped (NGINX's 5 MB zone holds about
/// 40,000 clients; 16 × 4,096 = 65,536 here).
const PER_SHARD: usize = 4096;

/// The counters of one zone, shared by every worker.
#[derive(Debug, Default)]
pub struct Zone {
    shards: [Mutex<HashMap<IpAddr, Client>>; SHARDS],
}

/// One client's state: a leaky bucket per rate, requests in flight.
#[derive(Clone, Copy, Debug, Default)]
struct Client {
    /// Excess of the `rps` and `rpm` buckets, in milli-requests, and when each was last
    /// charged (milliseconds).
    excess: [u64; 2],
    last: [u64; 2],
    /// Requests in flight.
    in_flight: u32,
}

impl Zone {
    /// Admits a request of `client` at `now_ms` under `limits`, or says which limit refuses
    /// it. An admitted request is charged to every bucket; a refused one to none (NGINX
    /// commits only when every `limit_req` passes). Rates are checked before requests in
    /// flight, as NGINX runs them. The returned permit holds the client's place among the
    /// requests in flight until it is dropped.
    pub fn admit(
        self: &Arc<Self>,
        limits: &RateLimits,
        client: IpAddr,
        now_ms: u64,
    ) -> Result<Option<Permit>, Refused> {
        let shard = &self.shards[shard_of(&client)];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= PER_SHARD && !map.contains_key(&client) {
            evict(&mut map, limits, now_ms);
        }
        let new = !map.contains_key(&client);
        let state = map.entry(client).or_default();
        let rates = [limits.rps, limits.rpm];
        let mut excess = state.excess;
        for (i, rate) in rates.iter().enumerate() {
            let Some(rate) = rate else { continue };
            if new {
                // NGINX: a new client's first request costs nothing.
                excess[i] = 0;
                continue;
            }
            let ms = now_ms.saturating_sub(state.last[i]);
            let drained = (rate.milli_per_second * ms / 1000) as i128;
            let e = (state.excess[i] as i128 - drained + 1000).max(0) as u64;
            if e > rate.burst * 1000 {
                return Err(Refused::Rate);
            }
            excess[i] = e;
        }
        if limits.connections > 0 && state.in_flight >= limits.connections {
            // NGINX's limit_req has charged the request by then; so does Sluice.
            commit(state, &rates, excess, now_ms, new);
            return Err(Refused::Connections);
        }
        commit(state, &rates, excess, now_ms, new);
        if limits.connections == 0 {
            return Ok(None);
        }
        state.in_flight += 1;
        Ok(Some(Permit { zone: self.clone(), client }))
    }

    fn release(&self, client: &IpAddr) {
        let mut map = self.shards[shard_of(client)].lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = map.get_mut(client) {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
    }

    /// Requests of `client` in flight (for tests).
    pub fn in_flight(&self, client: &IpAddr) -> u32 {
        let map = self.shards[shard_of(client)].lock().unwrap_or_else(|e| e.into_inner());
        map.get(client).map_or(0, |s| s.in_flight)
    }
}

fn commit(state: &mut Client, rates: &[Option<Rate>; 2], excess: [u64; 2], now_ms: u64, new: bool) {
    for (i, rate) in rates.iter().enumerate() {
        if rate.is_some() {
            // NGINX moves `last` only when time passed (or for a new client).
            if new || now_ms != state.last[i] {
                state.last[i] = now_ms;
            }
            state.excess[i] = excess[i];
        }
    }
}

/// Drops the clients with nothing in flight whose buckets have drained; when none has, the
/// first idle one found (NGINX evicts its oldest node when its zone is full).
fn evict(map: &mut HashMap<IpAddr, Client>, limits: &RateLimits, now_ms: u64) {
    let drained = |s: &Client| {
        [limits.rps, limits.rpm].iter().enumerate().all(|(i, r)| {
            r.is_none_or(|r| {
                r.milli_per_second * now_ms.saturating_sub(s.last[i]) / 1000 >= s.excess[i]
            })
        })
    };
    map.retain(|_, s| s.in_flight > 0 || !drained(s));
    if map.len() >= PER_SHARD
        && let Some(k) = map.iter().find(|(_, s)| s.in_flight == 0).map(|(k, _)| *k)
    {
        map.remove(&k);
    }
}

fn shard_of(ip: &IpAddr) -> usize {
    use std::hash::BuildHasher;
    (foldhash::fast::FixedState::with_seed(0x5ee1).hash_one(ip) as usize) % SHARDS
}

/// A request's place among its client's requests in flight, given back when dropped.
#[derive(Debug)]
pub struct Permit {
    zone: Arc<Zone>,
    client: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.zone.release(&self.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rps: Option<Rate>, rpm: Option<Rate>, connections: u32) -> RateLimits {
        RateLimits {
            zone: "ns/ing".into(),
            rps,
            rpm,
            connections,
            allowlist: IpList::default(),
            req_status: 503,
            conn_status: 503,
            state: OnceLock::new(),
        }
    }

    const C: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn limit_rps_one_admits_burst_plus_one_then_one_per_second() {
        // `limit-rps: 1`, the default multiplier 5: burst 5, nodelay.
        let l = limits(Some(Rate::per_second(1, 5)), None, 0);
        let zone = Arc::new(Zone::default());
        let admitted = (0..10).filter(|_| zone.admit(&l, C, 1_000).is_ok()).count();
        assert_eq!(admitted, 6);
        assert_eq!(zone.admit(&l, C, 1_999).err(), Some(Refused::Rate));
        assert!(zone.admit(&l, C, 2_000).is_ok());
        assert!(zone.admit(&l, C, 2_000).is_err());
        // Another client has buckets of its own.
        assert!(zone.admit(&l, "10.0.0.2".parse().unwrap(), 2_000).is_ok());
    }

    #[test]
    fn limit_rpm_rate_rounds_down_as_nginx() {
        let r = Rate::per_minute(10, 50);
        assert_eq!(r.milli_per_second, 166);
        let l = limits(None, Some(r), 0);
        let zone = Arc::new(Zone::default());
        assert_eq!((0..60).filter(|_| zone.admit(&l, C, 0).is_ok()).count(), 51);
        // 1000 milli-requests drain in 6,024 ms at 166 per second.
        assert!(zone.admit(&l, C, 6_000).is_err());
        assert!(zone.admit(&l, C, 6_025).is_ok());
    }

    #[test]
    fn a_refused_request_charges_no_bucket() {
        // rps allows, rpm refuses: the rps bucket is not charged either.
        let l = limits(Some(Rate::per_second(100, 10)), Some(Rate::per_minute(1, 0)), 0);
        let zone = Arc::new(Zone::default());
        assert!(zone.admit(&l, C, 0).is_ok());
        for _ in 0..5 {
            assert_eq!(zone.admit(&l, C, 0).err(), Some(Refused::Rate));
        }
        // Had the five been charged, the excess would be near 5,000: over a burst of 1.
        let rps_only = limits(Some(Rate::per_second(100, 1)), None, 0);
        assert!(zone.admit(&rps_only, C, 10).is_ok(), "the rps bucket was left as it was");
    }

    #[test]
    fn requests_in_flight_are_counted_until_the_permit_drops() {
        let l = limits(None, None, 2);
        let zone = Arc::new(Zone::default());
        let a = zone.admit(&l, C, 0).unwrap();
        let b = zone.admit(&l, C, 0).unwrap();
        assert_eq!(zone.admit(&l, C, 0).err(), Some(Refused::Connections));
        assert_eq!(zone.in_flight(&C), 2);
        drop(a);
        let c = zone.admit(&l, C, 0).unwrap();
        drop((b, c));
        assert_eq!(zone.in_flight(&C), 0);
    }

    #[test]
    fn a_full_shard_drops_drained_clients_first() {
        let l = limits(Some(Rate::per_second(1, 0)), None, 0);
        let zone = Arc::new(Zone::default());
        for i in 0..(PER_SHARD * SHARDS * 2) as u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i));
            assert!(zone.admit(&l, ip, 0).is_ok());
        }
        let held: usize = zone.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(held <= PER_SHARD * SHARDS, "{held}");
    }
}
