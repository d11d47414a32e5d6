//! When a failed attempt goes on to another endpoint: NGINX's `proxy_next_upstream`.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `proxy-next-upstream` | `error timeout` | the failures retried, space-separated: `error`, `timeout`, `invalid_header`, `http_500`, `http_502`, `http_503`, `http_504`, `http_403`, `http_404`, `http_429`, `non_idempotent`; or `off` |
//! | `proxy-next-upstream-tries` | `3` | attempts in all, each on another endpoint (`0` = every endpoint) |
//! | `proxy-next-upstream-timeout` | `0` | seconds after the first attempt during which others may start (`0` = no limit) |
//!
//! ConfigMap keys of the same names set the defaults, and `retry-non-idempotent: "true"` adds
//! `non_idempotent` to every list, as ingress-nginx's template does.
//!
//! As in NGINX, a request is only sent again when that is safe: `POST`, `LOCK` and `PATCH` are
//! not retried without `non_idempotent`, a request whose body has started to go out is never
//! sent again, and neither is one whose response has started to reach the client. A retried
//! status is only retried while another endpoint is left to try; the last answer is passed on.

use std::time::Duration;

use sluice_model::{Diagnostic, ObjectRef, Retry};

use super::proxy::parse_tries;
use super::{Annotations, Effect, Family, parse_bool};

/// The annotations and ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "next_upstream",
    annotations: &[
        ("proxy-next-upstream", Effect::Applied),
        ("proxy-next-upstream-timeout", Effect::Applied),
        ("proxy-next-upstream-tries", Effect::Applied),
    ],
    configmap_keys: &[
        "proxy-next-upstream",
        "proxy-next-upstream-timeout",
        "proxy-next-upstream-tries",
        "retry-non-idempotent",
    ],
};

pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    retry: &mut Retry,
    diagnostics: &mut Vec<Diagnostic>,
) {
    // `retry-non-idempotent` from the ConfigMap stays whatever the Ingress lists.
    let non_idempotent = retry.on & Retry::ON_NON_IDEMPOTENT;
    for (name, value) in a.values(FAMILY.annotations) {
        if let Some(Err(why)) = set(name, value, retry) {
            a.report(object, name, &why, diagnostics);
        }
    }
    if retry.on != 0 {
        retry.on |= non_idempotent;
    }
}

/// Sets one key of this family; `None` for a key of another family.
pub(crate) fn set(key: &str, value: &str, retry: &mut Retry) -> Option<Result<(), String>> {
    Some(match key {
        "proxy-next-upstream" => conditions(value).map(|on| {
            let keep = retry.on & Retry::ON_NON_IDEMPOTENT;
            retry.on = if on == 0 { 0 } else { on | keep };
        }),
        "proxy-next-upstream-tries" => parse_tries(value).map(|n| retry.tries = n),
        "proxy-next-upstream-timeout" => match value.trim().parse::<u64>() {
            Ok(0) => {
                retry.timeout = None;
                Ok(())
            }
            Ok(n) => {
                retry.timeout = Some(Duration::from_secs(n));
                Ok(())
            }
            Err(_) => Err(format!("{value:?} is not a whole number of seconds")),
        },
        "retry-non-idempotent" => parse_bool(value).map(|on| {
            if on {
                retry.on |= Retry::ON_NON_IDEMPOTENT;
            } else {
                retry.on &= !Retry::ON_NON_IDEMPOTENT;
            }
        }),
        _ => return None,
    })
}

/// A `proxy_next_upstream` list as bits; `off` is 0.
pub fn conditions(value: &str) -> Result<u16, String> {
    let mut on = 0;
    let mut off = false;
    for word in value.split_ascii_whitespace() {
        on |= match word {
            "error" => Retry::ON_ERROR,
            "timeout" => Retry::ON_TIMEOUT,
            "invalid_header" => Retry::ON_INVALID_HEADER,
            "http_500" => Retry::ON_500,
            "http_502" => Retry::ON_502,
            "http_503" => Retry::ON_503,
            "http_504" => Retry::ON_504,
            "http_403" => Retry::ON_403,
            "http_404" => Retry::ON_404,
            "http_429" => Retry::ON_429,
            "non_idempotent" => Retry::ON_NON_IDEMPOTENT,
            "off" => {
                off = true;
                0
            }
            other => {
                return Err(format!(
                    "{other:?} is not one of error, timeout, invalid_header, http_500, \
                     http_502, http_503, http_504, http_403, http_404, http_429, non_idempotent, off"
                ));
            }
        };
    }
    match (off, on) {
        (true, 0) => Ok(0),
        (true, _) => Err("\"off\" cannot be combined with other conditions".into()),
        (false, 0) => Err("no condition given".into()),
        (false, on) => Ok(on),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_are_nginx_s() {
        assert_eq!(conditions("error timeout"), Ok(Retry::ON_ERROR | Retry::ON_TIMEOUT));
        assert_eq!(conditions("http_502  http_503"), Ok(Retry::ON_502 | Retry::ON_503));
        assert_eq!(conditions("off"), Ok(0));
        assert!(conditions("error off").is_err());
        assert!(conditions("http_501").is_err());
        assert!(conditions("").is_err());
    }

    #[test]
    fn retry_non_idempotent_survives_the_annotation() {
        let mut retry = Retry::default();
        set("retry-non-idempotent", "true", &mut retry).unwrap().unwrap();
        set("proxy-next-upstream", "error http_502", &mut retry).unwrap().unwrap();
        assert_eq!(retry.on, Retry::ON_ERROR | Retry::ON_502 | Retry::ON_NON_IDEMPOTENT);
        set("proxy-next-upstream", "off", &mut retry).unwrap().unwrap();
        assert_eq!(retry.on, 0, "off is off");
        set("proxy-next-upstream-timeout", "0", &mut retry).unwrap().unwrap();
        assert_eq!(retry.timeout, None);
        set("proxy-next-upstream-tries", "0", &mut retry).unwrap().unwrap();
        assert_eq!(retry.tries, u32::MAX);
    }
}
