//! The data structures behind the balancers of [`Balance`](crate::Balance): a consistent-hash
//! ring (`upstream-hash-by`, balanced cookie affinity) and decaying response-time averages
//! (`load-balance: ewma`). Pure data with no clock of their own: the proxy passes the time in.

use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Endpoint;

/// Points per endpoint (or subset) on the ring, as NGINX's and lua-resty-balancer's chash
/// use: enough that each holds close to its share of the keys.
const POINTS: u32 = 160;

/// The hash of ring points and keys: the same in every process of the same build, so that
/// every replica (and every worker) maps a key to the same endpoint.
fn stable_hash(bytes: &[u8]) -> u64 {
    foldhash::fast::FixedState::with_seed(0x5eed_51c3_u64).hash_one(bytes)
}

/// A consistent-hash ring over `n` nodes (endpoints, or subsets of them). A key goes to the
/// first point clockwise of its hash; adding a node moves only the keys that land on the new
/// node's points, about `1/(n+1)` of them.
#[derive(Debug, Default)]
pub struct Ring {
    /// (point, node), sorted by point.
    points: Vec<(u64, u32)>,
    nodes: u32,
}

impl Ring {
    /// The ring of `nodes`, each named by the bytes `name` gives (an endpoint's address: the
    /// same name lands on the same points in every table).
    pub fn new(nodes: usize, name: impl Fn(usize, &mut Vec<u8>)) -> Ring {
        let mut points = Vec::with_capacity(nodes * POINTS as usize);
        let mut buf = Vec::with_capacity(48);
        for node in 0..nodes {
            buf.clear();
            name(node, &mut buf);
            let base = buf.len();
            for k in 0..POINTS {
                buf.truncate(base);
                buf.push(b'#');
                buf.extend_from_slice(k.to_string().as_bytes());
                points.push((stable_hash(&buf), node as u32));
            }
        }
        points.sort_unstable();
        Ring { points, nodes: nodes as u32 }
    }

    /// The ring of a backend's endpoints, named by address.
    pub fn of_endpoints(endpoints: &[Endpoint]) -> Ring {
        Ring::new(endpoints.len(), |i, out| address_bytes(endpoints[i].addr, out))
    }

    /// The ring of `subsets` groups of endpoints (`upstream-hash-by-subset`), named `set1`,
    /// `set2`... as ingress-nginx names them.
    pub fn of_subsets(subsets: usize) -> Ring {
        Ring::new(subsets, |i, out| out.extend_from_slice(format!("set{}", i + 1).as_bytes()))
    }

    /// The node of `key`, then every other node in the order the ring meets them (where to
    /// try next when the first fails).
    pub fn walk(&self, key: &[u8]) -> impl Iterator<Item = usize> + '_ {
        let h = stable_hash(key);
        let start = self.points.partition_point(|&(p, _)| p < h);
        let n = self.points.len();
        let mut seen = vec![false; self.nodes as usize];
        let mut left = self.nodes as usize;
        (0..n).filter_map(move |i| {
            if left == 0 {
                return None;
            }
            let node = self.points[(start + i) % n].1 as usize;
            if seen[node] {
                return None;
            }
            seen[node] = true;
            left -= 1;
            Some(node)
        })
    }

    /// The node of `key`; `None` for an empty ring.
    pub fn find(&self, key: &[u8]) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let h = stable_hash(key);
        let i = self.points.partition_point(|&(p, _)| p < h) % self.points.len();
        Some(self.points[i].1 as usize)
    }
}

/// `ip:port` of an endpoint, as ingress-nginx names its peers.
pub fn address_bytes(addr: SocketAddr, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(out, "{addr}");
}

/// The endpoints of subset `set` (0-based) of `n` endpoints in subsets of `size`: the last
/// subset is filled up with endpoints from the start, as ingress-nginx does.
pub fn subset(n: usize, size: usize, set: usize) -> impl Iterator<Item = usize> {
    let size = size.max(1);
    (set * size..(set + 1) * size).map(move |i| i % n.max(1))
}

/// How many subsets `n` endpoints make in subsets of `size`.
pub fn subset_count(n: usize, size: usize) -> usize {
    n.div_ceil(size.max(1))
}

/// The time over which an endpoint's response times decay to about a third (ingress-nginx's
/// `DECAY_TIME`, 10 s), in microseconds.
const DECAY_MICROS: f64 = 10_000_000.0;

/// One endpoint's decaying average response time, shared by every worker (lock-free: a
/// racing update may be lost, which an average shrugs off).
#[derive(Debug, Default)]
pub struct EwmaSlot {
    /// The average, microseconds, as `f64` bits.
    average: AtomicU64,
    /// When it was last updated, microseconds on the proxy's clock.
    touched: AtomicU64,
}

/// `touched` of a slot nothing was observed on yet.
const NEVER: u64 = u64::MAX;

impl EwmaSlot {
    /// A slot starting at `average` microseconds, touched at `now` (a new endpoint's slow
    /// start: the average holds until time or responses move it).
    pub fn new(average: f64, now: u64) -> Self {
        Self { average: AtomicU64::new(average.to_bits()), touched: AtomicU64::new(now) }
    }

    /// A slot with no history: it scores 0, and its first response time becomes its
    /// average whole, as ingress-nginx's `ewma.lua` treats an endpoint it has no entry for
    /// (last touched at time 0).
    pub fn unobserved() -> Self {
        Self { average: AtomicU64::new(0f64.to_bits()), touched: AtomicU64::new(NEVER) }
    }

    fn decayed(&self, rtt: f64, now: u64) -> f64 {
        let average = f64::from_bits(self.average.load(Ordering::Relaxed));
        let touched = self.touched.load(Ordering::Relaxed);
        if touched == NEVER {
            return rtt;
        }
        let elapsed = now.saturating_sub(touched) as f64;
        let weight = (-elapsed / DECAY_MICROS).exp();
        average * weight + rtt * (1.0 - weight)
    }

    /// Whether a response time was ever folded in (or an average given at its start).
    pub fn observed(&self) -> bool {
        self.touched.load(Ordering::Relaxed) != NEVER
    }

    /// The score used to choose between endpoints at `now`: the average decayed towards 0
    /// since its last update (an endpoint not used for a while gets another chance).
    pub fn score(&self, now: u64) -> f64 {
        self.decayed(0.0, now)
    }

    /// Folds in one response time of `rtt` microseconds measured at `now`.
    pub fn observe(&self, rtt: f64, now: u64) {
        let average = self.decayed(rtt, now);
        self.average.store(average.to_bits(), Ordering::Relaxed);
        self.touched.store(now, Ordering::Relaxed);
    }

    /// When it was last updated.
    pub fn touched(&self) -> u64 {
        self.touched.load(Ordering::Relaxed)
    }

    /// The average as stored (microseconds).
    pub fn average(&self) -> f64 {
        f64::from_bits(self.average.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint {
                addr: format!("10.0.{}.{}:8080", i / 200, i % 200 + 1).parse().unwrap(),
            })
            .collect()
    }

    #[test]
    fn adding_an_endpoint_moves_only_its_share_of_keys() {
        let before = endpoints(10);
        let after = endpoints(11);
        let (r1, r2) = (Ring::of_endpoints(&before), Ring::of_endpoints(&after));
        let keys = 20_000;
        let mut moved = 0;
        let mut per_node = [0usize; 11];
        for k in 0..keys {
            let key = format!("/user/{k}");
            let (a, b) = (r1.find(key.as_bytes()).unwrap(), r2.find(key.as_bytes()).unwrap());
            per_node[b] += 1;
            if before[a].addr != after[b].addr {
                moved += 1;
                assert_eq!(b, 10, "a moved key goes to the new endpoint only");
            }
        }
        let share = moved as f64 / keys as f64;
        assert!((0.05..0.14).contains(&share), "moved {share} of keys, expected about 1/11");
        for (node, &n) in per_node.iter().enumerate() {
            let load = n as f64 / keys as f64;
            assert!((0.05..0.14).contains(&load), "endpoint {node} holds {load} of keys");
        }
    }

    #[test]
    fn the_ring_is_the_same_whatever_the_order_of_building() {
        let eps = endpoints(5);
        let mut reversed = eps.clone();
        reversed.reverse();
        let (a, b) = (Ring::of_endpoints(&eps), Ring::of_endpoints(&reversed));
        for k in 0..1000 {
            let key = format!("k{k}");
            let x = eps[a.find(key.as_bytes()).unwrap()].addr;
            let y = reversed[b.find(key.as_bytes()).unwrap()].addr;
            assert_eq!(x, y, "{key}");
        }
    }

    #[test]
    fn a_walk_visits_every_node_once_starting_with_the_key_s() {
        let ring = Ring::of_endpoints(&endpoints(7));
        let walk: Vec<usize> = ring.walk(b"abc").collect();
        assert_eq!(walk[0], ring.find(b"abc").unwrap());
        let mut sorted = walk.clone();
        sorted.sort();
        assert_eq!(sorted, (0..7).collect::<Vec<_>>());
        assert!(Ring::of_endpoints(&[]).find(b"x").is_none());
    }

    #[test]
    fn subsets_are_filled_from_the_start() {
        assert_eq!(subset_count(7, 3), 3);
        assert_eq!(subset(7, 3, 2).collect::<Vec<_>>(), vec![6, 0, 1]);
        assert_eq!(subset(7, 3, 0).collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    #[test]
    fn averages_decay_with_time() {
        let slot = EwmaSlot::new(0.0, 0);
        slot.observe(1000.0, 10_000_000);
        // Ten seconds after the start, the weight of the old value (0) is e^-1.
        let expected = 1000.0 * (1.0 - (-1.0f64).exp());
        assert!((slot.average() - expected).abs() < 1e-6, "{}", slot.average());
        assert!(slot.score(20_000_000) < slot.average(), "a score decays towards 0");
        assert!((slot.score(10_000_000) - slot.average()).abs() < 1e-9);
    }

    #[test]
    fn a_first_response_time_is_taken_whole() {
        let slot = EwmaSlot::unobserved();
        assert_eq!(slot.score(5), 0.0, "no history scores 0");
        slot.observe(1000.0, 5);
        assert_eq!(slot.average(), 1000.0);
        assert!(slot.observed());
        slot.observe(0.0, 5);
        assert_eq!(slot.average(), 1000.0, "then it decays with time only");
    }
}
