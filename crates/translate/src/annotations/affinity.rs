//! Sticky sessions: `affinity: cookie` pins each client to an endpoint with a cookie.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `affinity` | — | `cookie` (the only type) |
//! | `affinity-mode` | `balanced` | `balanced`: the cookie holds a random key placed on a consistent-hash ring of the endpoints, so scaling up moves some sessions; `persistent`: the cookie names its endpoint, and a session only moves when the endpoint goes |
//! | `affinity-canary-behavior` | `sticky` | on a canary Ingress: `sticky` gives the canary the main backend's affinity, so its clients stay on the canary; `legacy` leaves the canary without |
//! | `session-cookie-name` | `INGRESSCOOKIE` | the cookie's name |
//! | `session-cookie-path` | the rule's path | its `Path` (set it when `use-regex` is on: a regex is no path) |
//! | `session-cookie-domain` | — | its `Domain` |
//! | `session-cookie-samesite` | — | `None`, `Lax` or `Strict` |
//! | `session-cookie-conditional-samesite-none` | `false` | no `SameSite=None` for the browsers known to reject such cookies |
//! | `session-cookie-secure` | automatic | `true`: always `Secure`; otherwise `Secure` on HTTPS requests only |
//! | `session-cookie-max-age` | — | `Max-Age`, seconds |
//! | `session-cookie-expires` | — | `Expires`, seconds from now |
//! | `session-cookie-change-on-failure` | `false` | when the pinned endpoint fails, the client is pinned again to the endpoint that answered |
//! | `session-cookie-partitioned` | `false` | the cookie is `Partitioned` (CHIPS) |
//!
//! The cookie is `HttpOnly` and its value is `<key>|<backend key>`, as ingress-nginx's
//! (`balancer/sticky.lua`): the backend key tells the main backend's cookies from its canary's.
//! Affinity belongs to the backend, as ingress-nginx's upstream: the first Ingress with
//! `affinity` to name a Service port makes it sticky, the first that sets `affinity-mode`
//! decides the mode, the cookie settings are the last such Ingress's, and only the paths of Ingresses with `affinity` issue the
//! cookie (other paths to the same backend honour it). Sticky wins over `upstream-hash-by` and
//! `load-balance`. In `persistent` mode the key is ingress-nginx's (an MD5 of the backend
//! name and the endpoint), so cookies issued by ingress-nginx keep their endpoint after a
//! move; a `balanced` cookie from ingress-nginx is re-pinned once.
//!
//! As in ingress-nginx, an invalid value is ignored (the default applies), and
//! `session-cookie-secure: "false"` still gives `Secure` on HTTPS (only `true` changes
//! anything).

use sluice_model::{Affinity, Diagnostic, ObjectRef};

use super::{Annotations, Effect, Family, parse_bool};

/// The annotations of this family.
pub const FAMILY: Family = Family {
    module: "affinity",
    annotations: &[
        ("affinity", Effect::Applied),
        ("affinity-canary-behavior", Effect::Applied),
        ("affinity-mode", Effect::Applied),
        ("session-cookie-change-on-failure", Effect::Applied),
        ("session-cookie-conditional-samesite-none", Effect::Applied),
        ("session-cookie-domain", Effect::Applied),
        ("session-cookie-expires", Effect::Applied),
        ("session-cookie-max-age", Effect::Applied),
        ("session-cookie-name", Effect::Applied),
        ("session-cookie-partitioned", Effect::Applied),
        ("session-cookie-path", Effect::Applied),
        ("session-cookie-samesite", Effect::Applied),
        ("session-cookie-secure", Effect::Applied),
    ],
    configmap_keys: &[],
};

/// Cookie affinity as an Ingress asks for it.
pub type CookieAffinity = Affinity;

fn basic(v: &str) -> Result<String, String> {
    let v = v.trim();
    if !v.is_empty() && v.bytes().all(|c| c.is_ascii_alphanumeric() || b"-._~/:".contains(&c)) {
        Ok(v.to_string())
    } else {
        Err(format!("{v:?} may only hold letters, digits and -._~/:"))
    }
}

fn seconds(v: &str) -> Result<u64, String> {
    v.trim().parse::<u64>().map_err(|_| format!("{v:?} is not a whole number of seconds"))
}

/// The Ingress's cookie affinity, when `affinity: cookie`.
pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Affinity> {
    let kind = a.get("affinity")?;
    if kind.trim() != "cookie" {
        a.report(object, "affinity", &format!("{kind:?} is not cookie"), diagnostics);
        return None;
    }
    let mut c = Affinity::default();
    a.apply(object, "session-cookie-name", diagnostics, |v| basic(v).map(|n| c.name = n));
    a.apply(object, "session-cookie-path", diagnostics, |v| {
        let v = v.trim();
        if v.starts_with('/') && v.bytes().all(|b| b.is_ascii_graphic() && b != b';') {
            c.path = Some(v.to_string());
            Ok(())
        } else {
            Err(format!("{v:?} is not a path"))
        }
    });
    a.apply(object, "session-cookie-domain", diagnostics, |v| basic(v).map(|d| c.domain = Some(d)));
    a.apply(object, "session-cookie-samesite", diagnostics, |v| {
        let v = v.trim();
        match v.to_ascii_lowercase().as_str() {
            "none" | "lax" | "strict" => {
                c.samesite = Some(v.to_string());
                Ok(())
            }
            _ => Err(format!("{v:?} is not None, Lax or Strict")),
        }
    });
    a.apply(object, "session-cookie-conditional-samesite-none", diagnostics, |v| {
        parse_bool(v).map(|b| c.conditional_samesite_none = b)
    });
    a.apply(object, "session-cookie-secure", diagnostics, |v| {
        parse_bool(v).map(|b| c.secure = b.then_some(true))
    });
    a.apply(object, "session-cookie-max-age", diagnostics, |v| {
        seconds(v).map(|s| c.max_age = Some(s))
    });
    a.apply(object, "session-cookie-expires", diagnostics, |v| {
        seconds(v).map(|s| c.expires = Some(s))
    });
    a.apply(object, "session-cookie-change-on-failure", diagnostics, |v| {
        parse_bool(v).map(|b| c.change_on_failure = b)
    });
    a.apply(object, "session-cookie-partitioned", diagnostics, |v| {
        parse_bool(v).map(|b| c.partitioned = b)
    });
    Some(c)
}

/// `affinity-mode`: `Some(true)` for `persistent`, `Some(false)` for `balanced`, `None` when
/// not set (or invalid, reported). Read with or without `affinity`: in ingress-nginx the first
/// Ingress naming a backend that sets it decides the backend's mode.
pub(crate) fn mode(
    a: &Annotations<'_>,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<bool> {
    let mut mode = None;
    a.apply(object, "affinity-mode", diagnostics, |v| match v.trim() {
        "balanced" => {
            mode = Some(false);
            Ok(())
        }
        "persistent" => {
            mode = Some(true);
            Ok(())
        }
        _ => Err(format!("{v:?} is not balanced or persistent")),
    });
    mode
}

/// `affinity-canary-behavior`: whether a canary takes its main backend's affinity.
pub(crate) fn canary_sticky(
    a: &Annotations<'_>,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> bool {
    let mut sticky = true;
    a.apply(object, "affinity-canary-behavior", diagnostics, |v| match v.trim() {
        "sticky" => {
            sticky = true;
            Ok(())
        }
        "legacy" => {
            sticky = false;
            Ok(())
        }
        _ => Err(format!("{v:?} is not sticky or legacy")),
    });
    sticky
}
