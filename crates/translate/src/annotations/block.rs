//! The ConfigMap's block lists: requests refused with 403 on every host.
//!
//! | ConfigMap key | default | meaning |
//! |---|---|---|
//! | `block-cidrs` | — | comma-separated client addresses and CIDR ranges |
//! | `block-user-agents` | — | `User-Agent` values, as NGINX `map` keys: a string is the whole value ignoring case, `~regex` a case-sensitive search, `~*regex` a case-insensitive one (escape spaces as `\ `) |
//! | `block-referers` | — | `Referer` values, the same way |
//!
//! A list Sluice cannot read (an invalid range, a regex that does not compile) makes every
//! route answer 503: a block list must not silently stop blocking.
//!
//! Differences from ingress-nginx: NGINX drops the `block-cidrs` rules in a location that
//! has an allow or deny list of its own (access rules are not inherited there); Sluice
//! refuses blocked addresses on every route. The three lists are checked first, before CORS
//! preflights and redirects (NGINX checks `block-cidrs` in its access phase, after them).

use sluice_model::{Blocks, IpList, MapKey};

use super::Family;

/// The ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "block",
    annotations: &[],
    configmap_keys: &["block-cidrs", "block-referers", "block-user-agents"],
};

/// The ConfigMap keys of this family; `None` for another family's key.
pub(crate) fn configmap(key: &str, value: &str, blocks: &mut Blocks) -> Option<Result<(), String>> {
    let entries = || value.split(',').map(str::trim).filter(|e| !e.is_empty());
    let keys = || entries().map(MapKey::parse).collect::<Result<Vec<_>, _>>();
    Some(match key {
        "block-cidrs" => IpList::parse_lenient(value).map(|l| blocks.cidrs = l),
        "block-user-agents" => keys().map(|k| blocks.user_agents = k),
        "block-referers" => keys().map(|k| blocks.referers = k),
        _ => return None,
    })
}
