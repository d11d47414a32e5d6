//! The `proxy-*` limits: request body size and upstream timeouts.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `proxy-body-size` | `1m` | largest request body (NGINX size: `8k`, `10m`, `1g`; `0` = unlimited); more gets 413 |
//! | `proxy-connect-timeout` | `5` | seconds to connect to an endpoint; then the next endpoint, or 504 |
//! | `proxy-read-timeout` | `60` | seconds between two reads from the upstream; then 504 (or the response is cut) |
//! | `proxy-send-timeout` | `60` | seconds between two writes to the upstream; then 504 |
//!
//! Timeouts are whole seconds, as in ingress-nginx (which silently ignores `60s`; Sluice keeps
//! the default too, and says so). The ConfigMap keys of the same names set the defaults.

use std::time::Duration;

use sluice_model::{Diagnostic, Limits, ObjectRef};

use super::{Annotations, Effect, Family};

/// The annotations and ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "proxy",
    annotations: &[
        ("proxy-body-size", Effect::Applied),
        ("proxy-connect-timeout", Effect::Applied),
        ("proxy-read-timeout", Effect::Applied),
        ("proxy-send-timeout", Effect::Applied),
    ],
    configmap_keys: &[
        "proxy-body-size",
        "proxy-connect-timeout",
        "proxy-read-timeout",
        "proxy-send-timeout",
    ],
};

pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    limits: &mut Limits,
    diagnostics: &mut Vec<Diagnostic>,
) {
    for (name, value) in a.values(FAMILY.annotations) {
        if let Some(Err(why)) = set(name, value, limits) {
            a.report(object, name, &why, diagnostics);
        }
    }
}

/// Sets one key of this family (an annotation or a ConfigMap key: the names are the same);
/// `None` for a key of another family.
pub(crate) fn set(key: &str, value: &str, limits: &mut Limits) -> Option<Result<(), String>> {
    Some(match key {
        "proxy-body-size" => parse_size(value).map(|s| limits.max_body_size = s),
        "proxy-connect-timeout" => parse_seconds(value).map(|d| limits.connect_timeout = d),
        "proxy-read-timeout" => parse_seconds(value).map(|d| limits.read_timeout = d),
        "proxy-send-timeout" => parse_seconds(value).map(|d| limits.send_timeout = d),
        _ => return None,
    })
}

/// An NGINX size (`1024`, `8k`, `10m`, `1g`, case-insensitive); `0` means unlimited (`None`).
pub fn parse_size(value: &str) -> Result<Option<u64>, String> {
    let v = value.trim();
    let (digits, unit) = match v.as_bytes().last() {
        Some(b'k' | b'K') => (&v[..v.len() - 1], 1024),
        Some(b'm' | b'M') => (&v[..v.len() - 1], 1024 * 1024),
        Some(b'g' | b'G') => (&v[..v.len() - 1], 1024 * 1024 * 1024),
        _ => (v, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{value:?} is not a size (such as 1024, 8k, 10m or 1g)"))?;
    let bytes = n.checked_mul(unit).ok_or_else(|| format!("{value:?} is too large"))?;
    Ok((bytes > 0).then_some(bytes))
}

/// Whole seconds, more than zero.
pub fn parse_seconds(value: &str) -> Result<Duration, String> {
    match value.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
        _ => Err(format!("{value:?} is not a whole number of seconds (such as 60)")),
    }
}

/// A number of tries; `0` means as many as there are endpoints.
pub fn parse_tries(value: &str) -> Result<u32, String> {
    value
        .trim()
        .parse::<u32>()
        .map(|n| if n == 0 { u32::MAX } else { n })
        .map_err(|_| format!("{value:?} is not a whole number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_nginx() {
        assert_eq!(parse_size("1m"), Ok(Some(1 << 20)));
        assert_eq!(parse_size("8K"), Ok(Some(8192)));
        assert_eq!(parse_size("1024"), Ok(Some(1024)));
        assert_eq!(parse_size("2g"), Ok(Some(2 << 30)));
        assert_eq!(parse_size("0"), Ok(None));
        assert!(parse_size("10mb").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999999999g").is_err());
    }

    #[test]
    fn timeouts_are_whole_seconds() {
        assert_eq!(parse_seconds("30"), Ok(Duration::from_secs(30)));
        assert!(parse_seconds("30s").is_err());
        assert!(parse_seconds("0").is_err());
        assert_eq!(parse_tries("0"), Ok(u32::MAX));
    }
}
