//! TLS towards backends: `proxy-ssl-secret`, `proxy-ssl-verify`, `proxy-ssl-verify-depth`,
//! `proxy-ssl-name`, `proxy-ssl-server-name` (for `backend-protocol: HTTPS` or `GRPCS`).
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `proxy-ssl-secret` | — | `namespace/name` of a Secret: `ca.crt` to verify the backend, `tls.crt` and `tls.key` to present |
//! | `proxy-ssl-verify` | `off` | verify the backend's certificate against `ca.crt` |
//! | `proxy-ssl-verify-depth` | `1` | most intermediate CAs accepted between the backend's certificate and `ca.crt` (OpenSSL's count; `0` means the default, as in ingress-nginx) |
//! | `proxy-ssl-name` | `<service>.<namespace>.svc` | the name verified (NGINX's default, the upstream's internal name, is not a name a certificate carries) |
//! | `proxy-ssl-server-name` | `off` | send that name as SNI |
//!
//! A `proxy-ssl-secret` that cannot be used (malformed reference, missing Secret, bad PEM) makes
//! the Ingress's routes answer 503, verification or not, as ingress-nginx denies the location.
//! Verification asked for without a CA to verify with answers 503 too (ingress-nginx would
//! silently not verify).

use sluice_model::{Diagnostic, NamespacedName, ObjectRef};

use super::{Annotations, Effect, Family, secret_ref};

/// The annotations of this family.
pub const FAMILY: Family = Family {
    module: "proxy_ssl",
    annotations: &[
        ("proxy-ssl-name", Effect::Applied),
        ("proxy-ssl-secret", Effect::Applied),
        ("proxy-ssl-server-name", Effect::Applied),
        ("proxy-ssl-verify", Effect::Applied),
        ("proxy-ssl-verify-depth", Effect::Applied),
    ],
    configmap_keys: &[],
};

/// What the annotations ask for; the Secret is read by the builder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySsl {
    /// `proxy-ssl-secret`.
    pub secret: Option<NamespacedName>,
    /// `proxy-ssl-verify`.
    pub verify: bool,
    /// `proxy-ssl-verify-depth`.
    pub depth: u8,
    /// `proxy-ssl-name`.
    pub name: Option<String>,
    /// `proxy-ssl-server-name`.
    pub send_sni: bool,
}

impl Default for ProxySsl {
    /// ingress-nginx's defaults: no Secret, no verification, depth 1.
    fn default() -> Self {
        Self { secret: None, verify: false, depth: 1, name: None, send_sni: false }
    }
}

/// NGINX's `on`/`off` (booleans too).
fn on_off(v: &str) -> Result<bool, String> {
    match v.trim() {
        "on" => Ok(true),
        "off" => Ok(false),
        other => super::parse_bool(other).map_err(|_| format!("{other:?} is not on or off")),
    }
}

/// `Err` when the Secret reference or verification cannot be set up (the routes fail closed).
pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> Result<ProxySsl, String> {
    let mut out = ProxySsl::default();
    a.apply(object, "proxy-ssl-server-name", diagnostics, |v| on_off(v).map(|b| out.send_sni = b));
    a.apply(object, "proxy-ssl-name", diagnostics, |v| {
        let v = v.trim();
        let ok =
            !v.is_empty() && v.bytes().all(|c| c.is_ascii_alphanumeric() || b"-.*".contains(&c));
        if !ok {
            return Err(format!("{v:?} is not a host name"));
        }
        out.name = Some(v.to_ascii_lowercase());
        Ok(())
    });
    let verify = match a.get("proxy-ssl-verify") {
        None => false,
        Some(v) => on_off(v).map_err(|e| a.invalid(object, "proxy-ssl-verify", &e, diagnostics))?,
    };
    out.verify = verify;
    // An invalid depth keeps the default, 1: never looser than asked for.
    a.apply(object, "proxy-ssl-verify-depth", diagnostics, |v| match v.trim().parse::<u8>() {
        Ok(0) => Ok(()),
        Ok(d) => {
            out.depth = d;
            Ok(())
        }
        Err(_) => Err(format!("{v:?} is not a whole number from 0 to 255")),
    });
    if let Some(v) = a.get("proxy-ssl-secret") {
        let secret = secret_ref(v, &object.namespace)
            .map_err(|e| a.invalid(object, "proxy-ssl-secret", &e, diagnostics))?;
        out.secret = Some(secret);
    }
    Ok(out)
}
