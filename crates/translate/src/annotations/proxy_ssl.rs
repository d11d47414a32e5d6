//! TLS towards backends: `proxy-ssl-secret`, `proxy-ssl-verify`, `proxy-ssl-verify-depth`,
//! `proxy-ssl-name`, `proxy-ssl-server-name` (for `backend-protocol: HTTPS` or `GRPCS`).
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `proxy-ssl-secret` | — | `namespace/name` of a Secret: `ca.crt` to verify the backend, `tls.crt` and `tls.key` to present |
//! | `proxy-ssl-verify` | `off` | verify the backend's certificate against `ca.crt` |
//! | `proxy-ssl-verify-depth` | `1` | longest chain accepted |
//! | `proxy-ssl-name` | `<service>.<namespace>.svc` | the name verified (NGINX's default, the upstream's internal name, is not a name a certificate carries) |
//! | `proxy-ssl-server-name` | `off` | send that name as SNI |
//!
//! When verification is asked for but the Secret is unusable, the Ingress's routes answer 503.

use sluice_model::{Diagnostic, NamespacedName, ObjectRef};

use super::{Annotations, secret_ref};

/// What the annotations ask for; the Secret is read by the builder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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

/// NGINX's `on`/`off` (booleans too).
fn on_off(v: &str) -> Result<bool, String> {
    match v.trim() {
        "on" => Ok(true),
        "off" => Ok(false),
        other => super::parse_bool(other).map_err(|_| format!("{other:?} is not on or off")),
    }
}

/// `Err` when verification is asked for but cannot be set up (the routes must fail closed).
pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> Result<ProxySsl, String> {
    let mut out = ProxySsl { depth: 1, ..ProxySsl::default() };
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
    if let Some(v) = a.get("proxy-ssl-verify-depth") {
        match v.trim().parse::<u8>() {
            Ok(d) if d >= 1 => out.depth = d,
            _ => {
                let why = format!("{v:?} is not a whole number from 1 to 255");
                let reason = a.invalid(object, "proxy-ssl-verify-depth", &why, diagnostics);
                if verify {
                    return Err(reason);
                }
            }
        }
    }
    if let Some(v) = a.get("proxy-ssl-secret") {
        match secret_ref(v, &object.namespace) {
            Ok(s) => out.secret = Some(s),
            Err(e) => {
                let reason = a.invalid(object, "proxy-ssl-secret", &e, diagnostics);
                if verify {
                    return Err(reason);
                }
            }
        }
    }
    Ok(out)
}
