//! Access log switches.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `enable-access-log` | `true` | `false`: the Ingress's requests are not written to the access log (metrics still count them) |
//! | `enable-rewrite-log` | `false` | accepted: NGINX's rewrite debugging log; Sluice has none |
//!
//! | ConfigMap key | default | meaning |
//! |---|---|---|
//! | `disable-access-log` | `false` | no access log at all |
//! | `skip-access-log-urls` | — | comma-separated request URIs (path and query, compared ignoring case as NGINX's `map` does) never logged, such as health checks; a `~` regular expression is refused |

use sluice_model::{Diagnostic, LogPolicy, ObjectRef};

use super::{Annotations, Effect, Family, parse_bool};

/// The annotations and ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "log",
    annotations: &[
        ("enable-access-log", Effect::Applied),
        ("enable-rewrite-log", Effect::Accepted("NGINX's rewrite debugging log; Sluice has none")),
    ],
    configmap_keys: &["disable-access-log", "skip-access-log-urls"],
};

pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    log: &mut LogPolicy,
    diagnostics: &mut Vec<Diagnostic>,
) {
    // `disable-access-log` wins: NGINX's `access_log off` at the http level.
    a.apply(object, "enable-access-log", diagnostics, |v| {
        parse_bool(v).map(|on| log.access_log &= on)
    });
    a.apply(object, "enable-rewrite-log", diagnostics, |v| parse_bool(v).map(drop));
}

/// The ConfigMap keys of this family; `None` for another family's key.
pub(crate) fn configmap(key: &str, value: &str, log: &mut LogPolicy) -> Option<Result<(), String>> {
    Some(match key {
        "disable-access-log" => parse_bool(value).map(|off| log.access_log = !off),
        "skip-access-log-urls" => {
            let urls: Vec<String> = value
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(String::from)
                .collect();
            // NGINX's `map` reads `~` entries as regular expressions: not supported.
            match urls.iter().find(|u| u.starts_with('~')) {
                Some(regex) => Err(format!("{regex}: regular expressions are not supported")),
                None => {
                    log.skip_urls = urls;
                    Ok(())
                }
            }
        }
        _ => return None,
    })
}
