//! Basic authentication: `auth-type`, `auth-secret`, `auth-secret-type`, `auth-realm`; and
//! `satisfy`, how it combines with the address lists.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `auth-type` | — | `basic`: users and passwords from `auth-secret`. `digest` is refused (503): Sluice has no digest authentication |
//! | `auth-secret` | — | `name` or `namespace/name` (the Ingress's namespace only) of the Secret |
//! | `auth-secret-type` | `auth-file` | `auth-file`: an htpasswd file in the Secret's key `auth`; `auth-map`: one key per user, its value the hash |
//! | `auth-realm` | `""` | the realm of `WWW-Authenticate: Basic realm="..."` (letters, digits, spaces and `-._~/:`) |
//! | `satisfy` | `all` | `any`: the address lists or the authentication suffice; `all`: both must pass |
//!
//! | ConfigMap key | default | meaning |
//! |---|---|---|
//! | `no-auth-locations` | `/.well-known/acme-challenge` | comma-separated path prefixes of Ingress paths that never ask for authentication |
//!
//! A request without valid credentials is answered 401 with `WWW-Authenticate`; the
//! `Authorization` header is never passed to the backend. Password hashes: every format of
//! [`sluice_htpasswd`]. A line of the file Sluice cannot use is reported and leaves out that
//! user only, as NGINX does; anything else that keeps authentication from being applied (a
//! missing Secret or key, another namespace, an invalid value) makes the Ingress's routes
//! answer 503, never unprotected.
//!
//! Differences from ingress-nginx: `auth-secret` without `auth-type` is refused (503) rather
//! than ignored, since it asks for protection; `auth-realm: off` is a realm named `off`
//! (NGINX would switch authentication off); `auth-type: digest` is refused (503).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use sluice_htpasswd::Htpasswd;
use sluice_model::{BasicAuth, Diagnostic, ObjectRef, Reason};

use super::{Annotations, Context, Effect, Family, secret_ref};

/// The annotations and ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "basic_auth",
    annotations: &[
        ("auth-realm", Effect::Applied),
        ("auth-secret", Effect::Applied),
        ("auth-secret-type", Effect::Applied),
        ("auth-type", Effect::Applied),
        ("satisfy", Effect::Applied),
    ],
    configmap_keys: &["no-auth-locations"],
};

/// `auth-type: basic` and its settings: `Ok(None)` when no authentication is asked for;
/// `Err` (the routes fail closed) when it is asked for and cannot be applied.
pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    cx: &Context<'_>,
    d: &mut Vec<Diagnostic>,
) -> Result<Option<BasicAuth>, String> {
    let kind = a.get("auth-type").map(|t| t.replace(' ', ""));
    let secret = a.get("auth-secret");
    let kind = match (kind.as_deref(), secret) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(a.invalid(
                object,
                "auth-secret",
                "set without auth-type (ingress-nginx would ignore it and serve unprotected); \
                 add auth-type: basic",
                d,
            ));
        }
        (Some(kind), _) => kind,
    };
    match kind {
        "basic" => {}
        "digest" => {
            return Err(a.invalid(
                object,
                "auth-type",
                "digest authentication is not supported by Sluice; use basic",
                d,
            ));
        }
        other => {
            return Err(a.invalid(object, "auth-type", &format!("{other:?} is not basic"), d));
        }
    }
    let realm = a.get("auth-realm").unwrap_or_default().to_string();
    if !realm.chars().all(|c| c.is_ascii_alphanumeric() || " -._~/:".contains(c)) {
        let why =
            format!("{realm:?} holds characters other than letters, digits, spaces and -._~/:");
        return Err(a.invalid(object, "auth-realm", &why, d));
    }
    let map = match a.get("auth-secret-type").map(str::trim) {
        None | Some("auth-file") => false,
        Some("auth-map") => true,
        Some(other) => {
            let why = format!("{other:?} is not auth-file or auth-map");
            return Err(a.invalid(object, "auth-secret-type", &why, d));
        }
    };
    let Some(secret) = secret else {
        return Err(a.invalid(object, "auth-type", "basic without auth-secret", d));
    };
    let name = secret_ref(secret, &object.namespace)
        .map_err(|e| a.invalid(object, "auth-secret", &e, d))?;
    let found = (cx.secret)(&name.namespace, &name.name);
    let (users, errors) = match found.map(|s| users(s, map)) {
        None => Err((Reason::MissingSecret, format!("Secret {name} does not exist"))),
        Some(Err(why)) => Err((Reason::InvalidSecret, format!("Secret {name} {why}"))),
        Some(Ok(parsed)) => Ok(parsed),
    }
    .map_err(|(reason, why)| {
        let why = format!("{}/auth-secret: {why}", a.prefix);
        d.push(Diagnostic::error(object.clone(), reason, format!("{why}{}", super::FAIL_CLOSED)));
        why
    })?;
    for e in &errors {
        d.push(Diagnostic::warning(
            object.clone(),
            Reason::InvalidSecret,
            format!("{}/auth-secret: Secret {name}, {e}; that user cannot sign in", a.prefix),
        ));
    }
    Ok(Some(BasicAuth { realm, secret: name, users: Arc::new(users) }))
}

/// The users of `secret`: its key `auth` (an htpasswd file) or, for `auth-map`, each key.
fn users(
    secret: &Secret,
    map: bool,
) -> Result<(Htpasswd, Vec<sluice_htpasswd::LineError>), String> {
    let data = secret.data.as_ref();
    if map {
        let pairs: Vec<(&str, &str)> = data
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str(), std::str::from_utf8(&v.0).ok()?)))
            .collect();
        return Ok(Htpasswd::from_pairs(pairs));
    }
    let file = data.and_then(|d| d.get("auth")).ok_or("has no key auth")?;
    let text = std::str::from_utf8(&file.0).map_err(|_| "key auth is not text")?;
    Ok(Htpasswd::parse(text))
}

/// `satisfy`: `true` for `any`. Anything but `any` or `all` keeps `all`, reported.
pub(crate) fn satisfy_any(
    a: &Annotations<'_>,
    object: &ObjectRef,
    d: &mut Vec<Diagnostic>,
) -> bool {
    match a.get("satisfy").map(str::trim) {
        None | Some("all") => false,
        Some("any") => true,
        Some(other) => {
            a.report(object, "satisfy", &format!("{other:?} is not any or all"), d);
            false
        }
    }
}

/// ConfigMap `no-auth-locations`.
pub(crate) fn no_auth_locations(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect()
}
