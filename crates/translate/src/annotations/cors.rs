//! Cross-origin requests: `enable-cors` and the `cors-*` settings.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `enable-cors` | `false` | answer CORS preflights and add the CORS headers |
//! | `cors-allow-origin` | `*` | comma-separated origins, `scheme://host[:port]`, where `*.` stands for one DNS label; `*` for any |
//! | `cors-allow-methods` | `GET, PUT, POST, DELETE, PATCH, OPTIONS` | `Access-Control-Allow-Methods` |
//! | `cors-allow-headers` | `DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization` | `Access-Control-Allow-Headers` |
//! | `cors-expose-headers` | — | `Access-Control-Expose-Headers` |
//! | `cors-allow-credentials` | `true` | `Access-Control-Allow-Credentials: true` |
//! | `cors-max-age` | `1728000` | `Access-Control-Max-Age` |
//!
//! As ingress-nginx: a request whose `Origin` is allowed (any request, with `*`) gets
//! `Access-Control-Allow-Origin` (its origin, or `*`) and the other headers on every
//! response, Sluice's own answers included, replacing the backend's; an `OPTIONS` request
//! with an allowed origin is answered 204 by Sluice, before authentication and address lists;
//! a request from another origin gets no CORS header, and its `OPTIONS` goes to the backend.
//! An origin without a scheme is left out of the list (reported); an invalid value of another
//! key keeps its default (reported).
//!
//! Differences from ingress-nginx: where ingress-nginx reads an origin list it cannot parse
//! (an upper-case scheme, a path, `_`) as `*`, allowing every origin, Sluice refuses it and
//! the Ingress's routes answer 503; origins are matched whole (ingress-nginx's regex is not
//! anchored at the start, so `xhttps://a.com` passed for `https://a.com`).

use std::sync::{Arc, LazyLock};

use regex::Regex;
use sluice_model::{Cors, Diagnostic, ObjectRef};

use super::{Annotations, Effect, Family, parse_bool};

/// The annotations of this family.
pub const FAMILY: Family = Family {
    module: "cors",
    annotations: &[
        ("cors-allow-credentials", Effect::Applied),
        ("cors-allow-headers", Effect::Applied),
        ("cors-allow-methods", Effect::Applied),
        ("cors-allow-origin", Effect::Applied),
        ("cors-expose-headers", Effect::Applied),
        ("cors-max-age", Effect::Applied),
        ("enable-cors", Effect::Applied),
    ],
    configmap_keys: &[],
};

/// ingress-nginx's check of the whole origin list (spaces removed first).
static LIST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^((((([a-z]+://)?(\*\.)?[A-Za-z0-9\-.]*(:\d+)?,?)|null)+)|\*)?$").expect("regex")
});
/// Its check of one origin.
static ORIGIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([a-z]+://(\*\.)?[A-Za-z0-9\-.]*(:\d+)?|\*|null)?$").expect("regex")
});
static METHODS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([A-Za-z]+,?\s?)+$").expect("regex"));
static HEADERS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9\-_, ]*$").expect("regex"));
static EXPOSE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(([A-Za-z0-9\-_]+|\*),?\s?)+$").expect("regex"));

/// `enable-cors` and its settings: `Ok(None)` when CORS is off; `Err` (the routes fail
/// closed) for an origin list that would allow more than it names.
pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    d: &mut Vec<Diagnostic>,
) -> Result<Option<Arc<Cors>>, String> {
    let mut on = false;
    a.apply(object, "enable-cors", d, |v| parse_bool(v).map(|b| on = b));
    if !on {
        return Ok(None);
    }
    let mut cors = Cors::default();
    if let Some(value) = a.get("cors-allow-origin").filter(|v| !v.trim().is_empty()) {
        cors.origins = origins(a, object, value, d)?;
    }
    let mut text = |name: &str, re: &Regex, field: &mut String, strip_spaces: bool| {
        a.apply(object, name, d, |v| {
            let v = v.trim();
            let checked = if strip_spaces { v.replace(' ', "") } else { v.to_string() };
            if v.is_empty() || !re.is_match(&checked) {
                return Err(format!("{v:?} is not a list of names"));
            }
            *field = v.to_string();
            Ok(())
        });
    };
    text("cors-allow-methods", &METHODS, &mut cors.methods, true);
    text("cors-allow-headers", &HEADERS, &mut cors.headers, false);
    text("cors-expose-headers", &EXPOSE, &mut cors.expose, true);
    a.apply(object, "cors-allow-credentials", d, |v| parse_bool(v).map(|b| cors.credentials = b));
    a.apply(object, "cors-max-age", d, |v| {
        v.trim()
            .parse::<u64>()
            .map(|s| cors.max_age = s)
            .map_err(|_| format!("{v:?} is not a whole number of seconds"))
    });
    Ok(Some(Arc::new(cors)))
}

/// The allowed origins: `None` for `*`.
fn origins(
    a: &Annotations<'_>,
    object: &ObjectRef,
    value: &str,
    d: &mut Vec<Diagnostic>,
) -> Result<Option<Vec<String>>, String> {
    let items: Vec<&str> = value.split(',').map(str::trim).filter(|o| !o.is_empty()).collect();
    // `*` anywhere means every origin, as in ingress-nginx.
    if items.contains(&"*") {
        return Ok(None);
    }
    if !LIST.is_match(&value.replace(' ', "")) {
        let why = format!(
            "{value:?} is not a list of origins (scheme://host[:port], lower-case scheme, no \
             path); ingress-nginx would allow every origin, Sluice refuses it"
        );
        return Err(a.invalid(object, "cors-allow-origin", &why, d));
    }
    let mut list = Vec::new();
    for item in items {
        if ORIGIN.is_match(item) {
            list.push(item.to_string());
        } else {
            let why = format!("{item:?} has no scheme (such as https://); left out of the list");
            d.push(Diagnostic::warning(
                object.clone(),
                sluice_model::Reason::InvalidAnnotation,
                format!("{}/cors-allow-origin: {why}", a.prefix),
            ));
        }
    }
    Ok(Some(list))
}
