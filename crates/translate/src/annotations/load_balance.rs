//! How a backend's endpoints are chosen: `load-balance` and `upstream-hash-by`.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `load-balance` | `round_robin` (ConfigMap `load-balance`) | `round_robin`, or `ewma`: of two endpoints drawn at random, the one with the lower decaying average response time (peak EWMA, 10 s decay; a new endpoint starts at the others' average) |
//! | `upstream-hash-by` | — | a key with NGINX variables (`$request_uri`, `$remote_addr`, `$http_x_user`, `$cookie_session`, `$arg_id`): requests with the same key go to the same endpoint, by consistent hashing, so adding an endpoint moves only its share of the keys |
//! | `upstream-hash-by-subset` | `false` | keys map to a group of endpoints instead, one of them at random per request |
//! | `upstream-hash-by-subset-size` | `3` | the size of those groups |
//!
//! ConfigMap `load-balance` sets the default. As in ingress-nginx, this belongs
//! to the backend: the oldest Ingress that names a Service port decides for every route to it;
//! cookie affinity wins over hashing, which wins over `load-balance`. A retry goes to the next
//! endpoint in the balancer's order (for hashing, the next one on the ring).

use sluice_model::{Diagnostic, HashBy, ObjectRef, Template};

use super::{Annotations, Effect, Family, parse_bool};
use crate::config::GlobalConfig;

/// The annotations and ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "load_balance",
    annotations: &[
        ("load-balance", Effect::Applied),
        ("upstream-hash-by", Effect::Applied),
        ("upstream-hash-by-subset", Effect::Applied),
        ("upstream-hash-by-subset-size", Effect::Applied),
    ],
    // ingress-nginx parses `upstream-hash-by*` in the ConfigMap too, but never uses them:
    // only `load-balance` is a default there.
    configmap_keys: &["load-balance"],
};

/// `load-balance`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Algorithm {
    /// `round_robin`.
    #[default]
    RoundRobin,
    /// `ewma`.
    Ewma,
}

/// What an Ingress (or the ConfigMap) sets of this family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Balancing {
    /// `load-balance`, when set.
    pub algorithm: Option<Algorithm>,
    /// `upstream-hash-by` with its subset options, when set.
    pub hash: Option<HashBy>,
}

pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> Balancing {
    let mut out = Balancing::default();
    let mut subset = (false, 3);
    for (name, value) in a.values(FAMILY.annotations) {
        if let Some(Err(why)) = set(name, value, &mut out, &mut subset) {
            a.report(object, name, &why, diagnostics);
        }
    }
    if let Some(hash) = &mut out.hash {
        hash.subset = subset.0.then_some(subset.1);
    }
    out
}

/// Sets one key of this family; `None` for another family's key. `subset` collects
/// `upstream-hash-by-subset` and `-size` until the key is known.
fn set(
    key: &str,
    value: &str,
    out: &mut Balancing,
    subset: &mut (bool, u32),
) -> Option<Result<(), String>> {
    Some(match key {
        "load-balance" => match value.trim() {
            "round_robin" => {
                out.algorithm = Some(Algorithm::RoundRobin);
                Ok(())
            }
            "ewma" => {
                out.algorithm = Some(Algorithm::Ewma);
                Ok(())
            }
            other => Err(format!("{other:?} is not round_robin or ewma")),
        },
        "upstream-hash-by" => {
            let v = value.trim();
            if v.is_empty() {
                {
                    out.hash = None;
                    Ok(())
                }
            } else {
                Template::parse(v).map(|key| out.hash = Some(HashBy { key, subset: None }))
            }
        }
        "upstream-hash-by-subset" => parse_bool(value).map(|b| subset.0 = b),
        "upstream-hash-by-subset-size" => match value.trim().parse::<u32>() {
            Ok(n) if n > 0 => {
                subset.1 = n;
                Ok(())
            }
            _ => Err(format!("{value:?} is not a size above 0")),
        },
        _ => return None,
    })
}

/// The ConfigMap key of this family; `None` for another family's key.
pub(crate) fn configmap(
    key: &str,
    value: &str,
    cfg: &mut GlobalConfig,
) -> Option<Result<(), String>> {
    if key != "load-balance" {
        return None;
    }
    set(key, value, &mut cfg.balancing, &mut (false, 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read() {
        let mut b = Balancing::default();
        let mut subset = (false, 3);
        assert_eq!(set("load-balance", "ewma", &mut b, &mut subset), Some(Ok(())));
        assert_eq!(b.algorithm, Some(Algorithm::Ewma));
        assert!(set("load-balance", "least_conn", &mut b, &mut subset).unwrap().is_err());
        assert!(set("upstream-hash-by", "$request_uri$host", &mut b, &mut subset).unwrap().is_ok());
        assert!(set("upstream-hash-by", "$nope", &mut b, &mut subset).unwrap().is_err());
        assert!(set("upstream-hash-by-subset-size", "0", &mut b, &mut subset).unwrap().is_err());
        assert!(set("proxy-body-size", "1m", &mut b, &mut subset).is_none());
    }
}
