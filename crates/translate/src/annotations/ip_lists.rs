//! Who may connect: `allowlist-source-range` (legacy name `whitelist-source-range`) and
//! `denylist-source-range`, and the ConfigMap's defaults for both.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `allowlist-source-range` | ConfigMap `whitelist-source-range` | comma-separated addresses and CIDR ranges; any other client address is refused with 403 |
//! | `whitelist-source-range` | — | the legacy name, read when `allowlist-source-range` is not set |
//! | `denylist-source-range` | ConfigMap `denylist-source-range` | addresses and ranges refused with 403, checked before the allow list |
//!
//! | ConfigMap key | default | meaning |
//! |---|---|---|
//! | `whitelist-source-range` | — | the allow list of Ingresses that set none |
//! | `denylist-source-range` | — | the deny list of Ingresses that set none |
//!
//! As in ingress-nginx, an annotation replaces the ConfigMap's list rather than adding to it,
//! and the client address is the one the real-IP settings give (`use-forwarded-headers`).
//! One entry that is neither an address nor a range (a trailing comma too) makes the
//! Ingress's routes answer 503, as ingress-nginx does; in the ConfigMap it makes every
//! Ingress's routes answer 503 (ingress-nginx would fail its reload and keep the old
//! configuration), since a list that cannot be read must not stop protecting.

use sluice_model::{Access, Diagnostic, IpList, ObjectRef};

use super::{Annotations, Effect, Family};

/// The annotations and ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "ip_lists",
    annotations: &[
        ("allowlist-source-range", Effect::Applied),
        ("denylist-source-range", Effect::Applied),
        ("whitelist-source-range", Effect::Applied),
    ],
    configmap_keys: &["denylist-source-range", "whitelist-source-range"],
};

/// Sets the lists of `access` from the annotations; `Err` (the routes fail closed) for a
/// list that does not parse.
pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    access: &mut Access,
    diagnostics: &mut Vec<Diagnostic>,
) -> Result<(), String> {
    // The legacy name counts only when the new one is missing or empty, as in ingress-nginx.
    let allow = match a.get("allowlist-source-range") {
        Some(v) if !v.trim().is_empty() => Some(("allowlist-source-range", v)),
        _ => a.get("whitelist-source-range").map(|v| ("whitelist-source-range", v)),
    };
    if let Some((name, value)) = allow {
        access.allow =
            IpList::parse(value).map_err(|e| a.invalid(object, name, &e, diagnostics))?;
    }
    if let Some(value) = a.get("denylist-source-range") {
        access.deny = IpList::parse(value)
            .map_err(|e| a.invalid(object, "denylist-source-range", &e, diagnostics))?;
    }
    Ok(())
}

/// The ConfigMap keys of this family; `None` for another family's key.
pub(crate) fn configmap(key: &str, value: &str, access: &mut Access) -> Option<Result<(), String>> {
    let list = match key {
        "whitelist-source-range" => &mut access.allow,
        "denylist-source-range" => &mut access.deny,
        _ => return None,
    };
    Some(IpList::parse_lenient(value).map(|l| *list = l))
}
