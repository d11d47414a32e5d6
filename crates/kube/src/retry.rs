//! How the watchers retry while the API server is unreachable.
//!
//! kube-runtime's default (as client-go's reflector, which ingress-nginx uses) doubles from
//! 0.8 s up to 30 s and then adds up to as much again at random: after an outage of a minute a
//! watch may wait up to a minute more once the API server is back, and changes written then
//! are applied that late. An ingress controller runs a handful of replicas, not thousands of
//! nodes, so it can afford to retry sooner: from 250 ms, doubling, capped at 4 s, with up to
//! half again at random so that the watchers of all replicas do not retry in step.

use std::time::Duration;

use kube::runtime::utils::Backoff;

/// The first delay, also the one after a success.
const FIRST: Duration = Duration::from_millis(250);
/// The longest delay before jitter.
const CAP: Duration = Duration::from_secs(4);

/// Watch retry delays: [`FIRST`] doubling to [`CAP`], plus up to half again at random; back
/// to [`FIRST`] after any successful event (kube-runtime resets it then).
pub(crate) struct WatchRetry {
    next: Duration,
}

impl WatchRetry {
    pub(crate) fn new() -> WatchRetry {
        WatchRetry { next: FIRST }
    }
}

impl Iterator for WatchRetry {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = self.next;
        self.next = (base * 2).min(CAP);
        Some(base + base.mul_f64(fastrand::f64() / 2.0))
    }
}

impl Backoff for WatchRetry {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_bounded_jitter_and_reset() {
        let mut r = WatchRetry::new();
        let delays: Vec<Duration> = (&mut r).take(8).collect();
        let bases = [250, 500, 1000, 2000, 4000, 4000, 4000, 4000].map(Duration::from_millis);
        for (d, base) in delays.iter().zip(bases) {
            assert!(*d >= base && *d <= base + base / 2, "{d:?} for a base of {base:?}");
        }
        r.reset();
        assert!(r.next().unwrap() <= FIRST + FIRST / 2);
    }
}
