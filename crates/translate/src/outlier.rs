//! Sluice's own ConfigMap keys for passive outlier ejection (ingress-nginx has none):
//! `sluice-outlier-detection`, `-consecutive-failures`, `-base-ejection-time`,
//! `-max-ejection-time`, `-max-ejection-percent` and `-gateway-responses`, read into an [`OutlierPolicy`] that
//! every backend carries. See [`sluice_model::Outliers`] for what they govern.

use std::time::Duration;

use sluice_model::OutlierPolicy;

use crate::annotations::{parse_bool, parse_in_range, parse_time};

/// What the keys set, before `sluice-outlier-detection` decides whether any of it applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierKeys {
    /// `sluice-outlier-detection` (default on).
    pub on: bool,
    /// The other keys.
    pub policy: OutlierPolicy,
}

impl Default for OutlierKeys {
    fn default() -> Self {
        Self { on: true, policy: OutlierPolicy::default() }
    }
}

impl OutlierKeys {
    /// The policy in force: the keys' one, or [`OutlierPolicy::OFF`].
    pub fn policy(&self) -> OutlierPolicy {
        if self.on { self.policy } else { OutlierPolicy::OFF }
    }
}

/// Reads `key` when it is one of these; `None` for other keys. A bad value is an error that
/// says what is expected (the caller reports it; the default stays).
pub fn set(key: &str, value: &str, keys: &mut OutlierKeys) -> Option<Result<(), String>> {
    let p = &mut keys.policy;
    Some(match key {
        "sluice-outlier-detection" => parse_bool(value).map(|on| keys.on = on),
        "sluice-outlier-gateway-responses" => parse_bool(value).map(|on| p.gateway_responses = on),
        "sluice-outlier-consecutive-failures" => {
            parse_in_range(value, 1..=10_000, "a whole number").map(|n| p.consecutive_failures = n)
        }
        "sluice-outlier-base-ejection-time" => duration(value).map(|d| p.base_ejection = d),
        "sluice-outlier-max-ejection-time" => duration(value).map(|d| p.max_ejection = d),
        "sluice-outlier-max-ejection-percent" => {
            parse_in_range(value, 0..=100, "a whole percentage").map(|n| p.max_ejection_percent = n)
        }
        _ => return None,
    })
}

/// A positive time as NGINX writes one (`500ms`, `30s`, `5m`; a bare number is seconds), at
/// most a day.
fn duration(value: &str) -> Result<Duration, String> {
    match parse_time(value)? {
        d if d.is_zero() || d > Duration::from_secs(86_400) => {
            Err(format!("{value:?} is not a time from 1ms to 1d"))
        }
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_and_bad_values_refused() {
        let mut k = OutlierKeys::default();
        assert_eq!(k.policy(), OutlierPolicy::default());
        assert_eq!(set("sluice-outlier-consecutive-failures", "3", &mut k), Some(Ok(())));
        assert_eq!(set("sluice-outlier-base-ejection-time", "500ms", &mut k), Some(Ok(())));
        assert_eq!(set("sluice-outlier-max-ejection-time", "2m", &mut k), Some(Ok(())));
        assert_eq!(set("sluice-outlier-max-ejection-percent", "50", &mut k), Some(Ok(())));
        assert_eq!(set("sluice-outlier-gateway-responses", "true", &mut k), Some(Ok(())));
        let p = k.policy();
        assert!(p.gateway_responses);
        assert_eq!(p.consecutive_failures, 3);
        assert_eq!(p.base_ejection, Duration::from_millis(500));
        assert_eq!(p.max_ejection, Duration::from_secs(120));
        assert_eq!(p.max_ejection_percent, 50);
        for (key, value) in [
            ("sluice-outlier-consecutive-failures", "0"),
            ("sluice-outlier-consecutive-failures", "five"),
            ("sluice-outlier-base-ejection-time", "0s"),
            ("sluice-outlier-base-ejection-time", "10 parsecs"),
            ("sluice-outlier-base-ejection-time", "-3"),
            ("sluice-outlier-max-ejection-time", "2d"),
            ("sluice-outlier-max-ejection-percent", "101"),
            ("sluice-outlier-detection", "maybe"),
            ("sluice-outlier-gateway-responses", "yes"),
        ] {
            assert!(matches!(set(key, value, &mut k), Some(Err(_))), "{key}: {value}");
        }
        assert_eq!(k.policy(), p, "bad values change nothing");
        assert_eq!(set("sluice-outlier-detection", "false", &mut k), Some(Ok(())));
        assert!(!k.policy().enabled());
        assert_eq!(set("proxy-next-upstream", "error", &mut k), None);
    }
}
