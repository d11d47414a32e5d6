//! Error pages from the default backend: `custom-http-errors`.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `custom-http-errors` | ConfigMap `custom-http-errors` | comma-separated statuses (300 to 599) answered by the default backend instead |
//! | `disable-proxy-intercept-errors` | `false` | the upstream's own error responses pass through; only Sluice's own (502, 503, 504...) are replaced |
//!
//! As in ingress-nginx (`error_page` to `@custom_<backend>_<code>` in `nginx.tmpl`): the error
//! response, the upstream's or Sluice's own, is replaced by a request to the path's
//! `default-backend` (when it has ready endpoints), else to the global default backend
//! (`--default-backend-service`), with the same method, the path `/`, and the headers
//! `X-Code`, `X-Format` (the client's `Accept`), `X-Original-URI`, `X-Namespace`,
//! `X-Ingress-Name`, `X-Service-Name`, `X-Service-Port`, `X-Request-ID`, `X-Forwarded-For`
//! and the client's `Host`. The client gets that backend's status and body.
//! An Ingress's own list replaces the ConfigMap's for its paths. Without any default backend,
//! the error is answered by the built-in default, a 404 page, as ingress-nginx's own default
//! server does.

use sluice_model::{Diagnostic, ErrorPages, ObjectRef};

use super::{Annotations, Effect, Family, parse_bool};
use crate::config::GlobalConfig;

/// The annotations and ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "custom_errors",
    annotations: &[
        ("custom-http-errors", Effect::Applied),
        ("disable-proxy-intercept-errors", Effect::Applied),
    ],
    configmap_keys: &["custom-http-errors", "disable-proxy-intercept-errors"],
};

/// The Ingress's error pages over the ConfigMap's (`global`).
pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    global: Option<ErrorPages>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<ErrorPages> {
    let mut pages = global;
    a.apply(object, "custom-http-errors", diagnostics, |v| {
        let codes = codes(v)?;
        let intercept = pages.as_ref().is_none_or(|p| p.intercept_upstream);
        pages = (!codes.is_empty()).then_some(ErrorPages { codes, intercept_upstream: intercept });
        Ok(())
    });
    a.apply(object, "disable-proxy-intercept-errors", diagnostics, |v| {
        let off = parse_bool(v)?;
        if let Some(p) = &mut pages {
            p.intercept_upstream = !off;
        }
        Ok(())
    });
    pages
}

/// The ConfigMap keys of this family; `None` for another family's key.
pub(crate) fn configmap(
    key: &str,
    value: &str,
    cfg: &mut GlobalConfig,
) -> Option<Result<(), String>> {
    let pages = &mut std::sync::Arc::make_mut(&mut cfg.policy).errors;
    Some(match key {
        "custom-http-errors" => codes(value).map(|codes| {
            let intercept = !cfg.disable_intercept;
            *pages =
                (!codes.is_empty()).then_some(ErrorPages { codes, intercept_upstream: intercept });
        }),
        "disable-proxy-intercept-errors" => parse_bool(value).map(|off| {
            cfg.disable_intercept = off;
            if let Some(p) = pages {
                p.intercept_upstream = !off;
            }
        }),
        _ => return None,
    })
}

/// A comma-separated list of statuses, sorted.
fn codes(value: &str) -> Result<Vec<u16>, String> {
    let mut codes = Vec::new();
    for code in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        match code.parse::<u16>() {
            Ok(c) if (300..=599).contains(&c) => codes.push(c),
            _ => return Err(format!("{code:?} is not a status from 300 to 599")),
        }
    }
    codes.sort_unstable();
    codes.dedup();
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_checked() {
        assert_eq!(codes("503, 404,404"), Ok(vec![404, 503]));
        assert_eq!(codes(""), Ok(vec![]));
        assert!(codes("200").is_err());
        assert!(codes("50x").is_err());
    }
}
