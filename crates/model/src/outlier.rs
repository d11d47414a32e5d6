//! Passive outlier ejection, Sluice's own (ingress-nginx has none; this follows Envoy's
//! consecutive local-origin and gateway failures): an endpoint whose attempts failed
//! [`OutlierPolicy::consecutive_failures`] times in a row is skipped for a back-off
//! (`base_ejection_time` times the number of times it was ejected, capped at
//! `max_ejection_time`), then tried again. Ejection never leaves a backend without an endpoint
//! to send to ([`OutlierPolicy::max_ejected`]).
//!
//! Pure data with no clock of its own (the proxy passes the time in, in microseconds), shared
//! by every worker and lock-free: each endpoint's record is a few atomics, and a backend keeps
//! a count of its ejected endpoints so that a backend with none costs one load per attempt.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::Endpoint;

/// The ConfigMap's `sluice-outlier-*` settings, the same for every backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OutlierPolicy {
    /// Failures in a row that eject an endpoint; 0: never eject
    /// (`sluice-outlier-consecutive-failures`).
    pub consecutive_failures: u32,
    /// The first ejection's length; the n-th lasts n times as long
    /// (`sluice-outlier-base-ejection-time`).
    pub base_ejection: Duration,
    /// The longest ejection (`sluice-outlier-max-ejection-time`).
    pub max_ejection: Duration,
    /// The share of a backend's endpoints that may be ejected at once, in percent
    /// (`sluice-outlier-max-ejection-percent`).
    pub max_ejection_percent: u8,
    /// Responses 502, 503 and 504 count as failures too, as Envoy's
    /// `consecutive_gateway_failure` counts them (`sluice-outlier-gateway-responses`). Off by
    /// default: only connections that fail (refused, reset, timed out, no valid response
    /// head) count, which never depends on what an application means by its statuses.
    pub gateway_responses: bool,
}

impl Default for OutlierPolicy {
    /// Envoy's defaults: 5 failures, 30 s, at most 300 s, 10 %.
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 10,
            gateway_responses: false,
        }
    }
}

impl OutlierPolicy {
    /// The policy that never ejects.
    pub const OFF: OutlierPolicy = OutlierPolicy {
        consecutive_failures: 0,
        base_ejection: Duration::from_secs(30),
        max_ejection: Duration::from_secs(300),
        max_ejection_percent: 10,
        gateway_responses: false,
    };

    /// Whether endpoints are ejected at all.
    pub fn enabled(&self) -> bool {
        self.consecutive_failures > 0
    }

    /// How many of `n` endpoints may be ejected at once: the percentage of them rounded
    /// down, but at least one (so that a single dead pod among a few is ejected, where
    /// Envoy's 10 % alone would eject none), and never all: one always stays to send to.
    pub fn max_ejected(&self, n: usize) -> usize {
        if n < 2 || self.max_ejection_percent == 0 {
            return 0;
        }
        (n * usize::from(self.max_ejection_percent) / 100).max(1).min(n - 1)
    }

    /// How long the `times`-th ejection (from 1) lasts.
    pub fn ejection_time(&self, times: u32) -> Duration {
        self.base_ejection
            .saturating_mul(times.max(1))
            .min(self.max_ejection.max(self.base_ejection))
    }
}

/// What a report changed, for the proxy to log and count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutlierEvent {
    /// The endpoint was ejected for `ejection`, its `times`-th time.
    Ejected {
        /// How long it is skipped.
        ejection: Duration,
        /// How many times it was ejected, this one included.
        times: u32,
    },
    /// The endpoint's ejection ended: it is tried again.
    Returned,
}

/// One endpoint's record.
#[derive(Debug, Default)]
pub struct OutlierSlot {
    /// Failures in a row.
    failures: AtomicU32,
    /// Times ejected: the back-off's multiplier. Lowered by one for each base ejection time
    /// the endpoint serves without being ejected again.
    times: AtomicU32,
    /// While ejected, until when (microseconds); 0 while in service.
    until: AtomicU64,
    /// When it last came back, or its multiplier was last lowered (microseconds).
    since: AtomicU64,
}

/// A backend's records, one per endpoint (in the order of its endpoints), with the count of
/// those ejected.
#[derive(Debug, Default)]
pub struct Outliers {
    slots: Box<[OutlierSlot]>,
    ejected: AtomicUsize,
}

impl Outliers {
    /// Records for `n` endpoints in service with no history.
    pub fn new(n: usize) -> Self {
        Self {
            slots: (0..n).map(|_| OutlierSlot::default()).collect(),
            ejected: AtomicUsize::new(0),
        }
    }

    /// How many endpoints are ejected (some may be due to come back).
    pub fn ejected(&self) -> usize {
        self.ejected.load(Ordering::Relaxed)
    }

    /// Whether endpoint `idx` is skipped at `now`. An ejection that has run its time ends
    /// here (the first caller to see it gets `Returned`), as there is no timer.
    pub fn skipped(&self, idx: usize, now: u64) -> (bool, Option<OutlierEvent>) {
        let Some(slot) = self.slots.get(idx) else { return (false, None) };
        let until = slot.until.load(Ordering::Acquire);
        if until == 0 {
            return (false, None);
        }
        if now < until {
            return (true, None);
        }
        if slot.until.compare_exchange(until, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            slot.failures.store(0, Ordering::Relaxed);
            slot.since.store(now, Ordering::Relaxed);
            self.ejected.fetch_sub(1, Ordering::AcqRel);
            return (false, Some(OutlierEvent::Returned));
        }
        (false, None)
    }

    /// An attempt on endpoint `idx` failed at `now`: the endpoint is ejected when this makes
    /// `policy.consecutive_failures` in a row and the backend may lose one more endpoint.
    pub fn failed(&self, idx: usize, now: u64, policy: &OutlierPolicy) -> Option<OutlierEvent> {
        let slot = self.slots.get(idx)?;
        let failures = slot.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if !policy.enabled()
            || failures < policy.consecutive_failures
            || slot.until.load(Ordering::Relaxed) != 0
        {
            return None;
        }
        let allowed = policy.max_ejected(self.slots.len());
        // A place among the ejected first, so that racing ejections never exceed it.
        self.ejected
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |e| (e < allowed).then_some(e + 1))
            .ok()?;
        let times = slot.times.load(Ordering::Relaxed).saturating_add(1);
        let ejection = policy.ejection_time(times);
        let until = now.saturating_add(ejection.as_micros() as u64).max(1);
        if slot.until.compare_exchange(0, until, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            // Another worker ejected it meanwhile.
            self.ejected.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        slot.times.store(times, Ordering::Relaxed);
        slot.failures.store(0, Ordering::Relaxed);
        Some(OutlierEvent::Ejected { ejection, times })
    }

    /// An attempt on endpoint `idx` succeeded at `now`: its run of failures ends, and an
    /// endpoint that served a base ejection time since it came back has its multiplier
    /// lowered. Only loads for an endpoint with no history.
    pub fn succeeded(&self, idx: usize, now: u64, policy: &OutlierPolicy) {
        let Some(slot) = self.slots.get(idx) else { return };
        if slot.failures.load(Ordering::Relaxed) != 0 {
            slot.failures.store(0, Ordering::Relaxed);
        }
        let times = slot.times.load(Ordering::Relaxed);
        if times == 0 || slot.until.load(Ordering::Relaxed) != 0 {
            return;
        }
        let since = slot.since.load(Ordering::Relaxed);
        if now.saturating_sub(since) >= policy.base_ejection.as_micros() as u64
            && slot.since.compare_exchange(since, now, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            slot.times.store(times - 1, Ordering::Relaxed);
        }
    }

    /// The records for `new` endpoints after `old`: endpoints still there keep theirs
    /// (ejected ones stay ejected until their time), new ones start with none; those of
    /// endpoints gone are dropped. `None` when nothing is left worth keeping.
    pub fn carried_over(&self, old: &[Endpoint], new: &[Endpoint]) -> Option<Self> {
        let mut kept = false;
        let mut ejected = 0;
        let slots: Box<[OutlierSlot]> = new
            .iter()
            .map(|e| {
                let Some(s) = old.iter().position(|o| o == e).and_then(|i| self.slots.get(i))
                else {
                    return OutlierSlot::default();
                };
                let until = s.until.load(Ordering::Relaxed);
                let slot = OutlierSlot {
                    failures: AtomicU32::new(s.failures.load(Ordering::Relaxed)),
                    times: AtomicU32::new(s.times.load(Ordering::Relaxed)),
                    until: AtomicU64::new(until),
                    since: AtomicU64::new(s.since.load(Ordering::Relaxed)),
                };
                kept |= until != 0
                    || slot.times.load(Ordering::Relaxed) != 0
                    || slot.failures.load(Ordering::Relaxed) != 0;
                ejected += usize::from(until != 0);
                slot
            })
            .collect();
        kept.then(|| Self { slots, ejected: AtomicUsize::new(ejected) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn policy() -> OutlierPolicy {
        OutlierPolicy {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
            max_ejection_percent: 10,
            gateway_responses: false,
        }
    }

    fn ep(i: u8) -> Endpoint {
        Endpoint { addr: format!("10.0.0.{i}:80").parse().unwrap() }
    }

    #[test]
    fn n_failures_in_a_row_eject_for_a_back_off_then_it_returns() {
        let p = policy();
        let o = Outliers::new(3);
        assert_eq!(o.failed(1, S, &p), None);
        assert_eq!(o.failed(1, S, &p), None);
        assert_eq!(
            o.failed(1, S, &p),
            Some(OutlierEvent::Ejected { ejection: Duration::from_secs(10), times: 1 })
        );
        assert_eq!(o.ejected(), 1);
        assert_eq!(o.skipped(1, 5 * S), (true, None));
        assert_eq!(o.skipped(0, 5 * S), (false, None));
        assert_eq!(o.skipped(1, 11 * S), (false, Some(OutlierEvent::Returned)));
        assert_eq!(o.skipped(1, 11 * S), (false, None), "returned once");
        assert_eq!(o.ejected(), 0);
        // Back, and failing again: twice as long, then capped.
        for _ in 0..2 {
            o.failed(1, 12 * S, &p);
        }
        assert_eq!(
            o.failed(1, 12 * S, &p),
            Some(OutlierEvent::Ejected { ejection: Duration::from_secs(20), times: 2 })
        );
        assert_eq!(o.skipped(1, 33 * S), (false, Some(OutlierEvent::Returned)));
        for _ in 0..2 {
            o.failed(1, 40 * S, &p);
        }
        assert_eq!(
            o.failed(1, 40 * S, &p),
            Some(OutlierEvent::Ejected { ejection: Duration::from_secs(25), times: 3 })
        );
    }

    #[test]
    fn a_success_breaks_the_run_and_healthy_time_lowers_the_multiplier() {
        let p = policy();
        let o = Outliers::new(2);
        o.failed(0, S, &p);
        o.failed(0, S, &p);
        o.succeeded(0, S, &p);
        assert_eq!(o.failed(0, S, &p), None, "not three in a row");
        o.failed(0, S, &p);
        assert!(matches!(o.failed(0, S, &p), Some(OutlierEvent::Ejected { times: 1, .. })));
        assert_eq!(o.skipped(0, 11 * S).1, Some(OutlierEvent::Returned));
        // Ten seconds of service after coming back: the next ejection is a first one again.
        o.succeeded(0, 15 * S, &p);
        o.succeeded(0, 21 * S, &p);
        for _ in 0..2 {
            o.failed(0, 22 * S, &p);
        }
        assert!(matches!(o.failed(0, 22 * S, &p), Some(OutlierEvent::Ejected { times: 1, .. })));
    }

    #[test]
    fn the_last_endpoint_is_never_ejected() {
        let p = policy();
        let one = Outliers::new(1);
        for _ in 0..10 {
            assert_eq!(one.failed(0, S, &p), None);
        }
        assert_eq!(one.skipped(0, S), (false, None));
        // Two endpoints, both failing: one is ejected, the other stays.
        let two = Outliers::new(2);
        for _ in 0..3 {
            two.failed(0, S, &p);
        }
        for _ in 0..10 {
            assert_eq!(two.failed(1, S, &p), None);
        }
        assert_eq!(two.ejected(), 1);
        assert!(!two.skipped(1, S).0);
    }

    #[test]
    fn the_cap_is_a_share_of_the_endpoints_but_at_least_one_and_never_all() {
        let p = policy();
        assert_eq!(p.max_ejected(0), 0);
        assert_eq!(p.max_ejected(1), 0);
        assert_eq!(p.max_ejected(2), 1);
        assert_eq!(p.max_ejected(9), 1);
        assert_eq!(p.max_ejected(30), 3);
        let all = OutlierPolicy { max_ejection_percent: 100, ..p };
        assert_eq!(all.max_ejected(4), 3);
        assert_eq!(OutlierPolicy { max_ejection_percent: 0, ..p }.max_ejected(10), 0);
    }

    #[test]
    fn off_never_ejects() {
        let o = Outliers::new(4);
        for _ in 0..100 {
            assert_eq!(o.failed(0, S, &OutlierPolicy::OFF), None);
        }
        assert_eq!(o.ejected(), 0);
    }

    #[test]
    fn records_carry_over_for_endpoints_that_remain_only() {
        let p = policy();
        let o = Outliers::new(3);
        for _ in 0..3 {
            o.failed(1, S, &p);
        }
        o.failed(2, S, &p);
        // Endpoint 1 stays (ejected), 2 is gone, 4 is new.
        let old = [ep(1), ep(2), ep(3)];
        let new = [ep(4), ep(2), ep(1)];
        let c = o.carried_over(&old, &new).expect("an ejection to keep");
        assert_eq!(c.ejected(), 1);
        assert_eq!(c.skipped(1, 2 * S), (true, None));
        assert_eq!(c.skipped(0, 2 * S), (false, None));
        assert_eq!(c.failed(0, S, &p), None, "the new endpoint starts with no failures");
        assert_eq!(c.failed(0, S, &p), None);
        // The endpoints with a history gone: nothing is kept.
        assert!(o.carried_over(&old, &[ep(1)]).is_none());
    }
}
