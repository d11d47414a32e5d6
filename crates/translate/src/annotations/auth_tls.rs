//! Client certificates: `auth-tls-secret`, `auth-tls-verify-client`, `auth-tls-verify-depth`,
//! `auth-tls-pass-certificate-to-upstream`, `auth-tls-match-cn`, `auth-tls-error-page`.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `auth-tls-secret` | — | `namespace/name` (or `name`) of a Secret with `ca.crt`, the CAs client certificates must chain to |
//! | `auth-tls-verify-client` | `on` | `on` (required), `optional`, `optional_no_ca` (passed on unverified), `off` |
//! | `auth-tls-verify-depth` | `1` | the longest chain accepted, as OpenSSL (so NGINX) counts it: the intermediate CAs allowed between the client's certificate and a listed CA (`1`: one; `0` means the default, as in ingress-nginx) |
//! | `auth-tls-pass-certificate-to-upstream` | `false` | send the certificate, URL-escaped PEM, in the `ssl-client-cert` header |
//! | `auth-tls-match-cn` | — | `CN=` and a regular expression the certificate's subject DN (`CN=client,O=Org`, as NGINX's `$ssl_client_s_dn`) must match, else 403 (no certificate: 403 too) |
//! | `auth-tls-error-page` | — | a URL a refused certificate is redirected to (302), instead of 400 |
//!
//! As in ingress-nginx, this is per host (the TLS handshake knows only the server name): the
//! oldest Ingress of a host that sets `auth-tls-secret` decides for every path of the host.
//! The backend always receives `ssl-client-verify` (`SUCCESS`, `FAILED:<reason>` or `NONE`),
//! `ssl-client-subject-dn` and `ssl-client-issuer-dn`. When the settings cannot be applied
//! (missing Secret, unusable CA, invalid value), the host's routes answer 503.
//! Cross-namespace Secrets are refused, as ingress-nginx does by default since v1.12.

use sluice_model::{ClientVerify, Diagnostic, NamespacedName, ObjectRef};

use super::{Annotations, Effect, Family, parse_bool, secret_ref};

/// The annotations of this family.
pub const FAMILY: Family = Family {
    module: "auth_tls",
    annotations: &[
        ("auth-tls-error-page", Effect::Applied),
        ("auth-tls-match-cn", Effect::Applied),
        ("auth-tls-pass-certificate-to-upstream", Effect::Applied),
        ("auth-tls-secret", Effect::Applied),
        ("auth-tls-verify-client", Effect::Applied),
        ("auth-tls-verify-depth", Effect::Applied),
    ],
    configmap_keys: &[],
};

/// What the annotations ask for; the CA itself is read by the builder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthTls {
    /// The CA Secret.
    pub secret: NamespacedName,
    /// `auth-tls-verify-client`.
    pub verify: ClientVerify,
    /// `auth-tls-verify-depth`.
    pub depth: u8,
    /// `auth-tls-pass-certificate-to-upstream`.
    pub pass_certificate: bool,
    /// `auth-tls-match-cn`.
    pub match_cn: Option<String>,
    /// `auth-tls-error-page`.
    pub error_page: Option<String>,
}

/// `Ok(None)` when no client certificates are asked for; `Err` when they are but the
/// settings are unusable (the host must then fail closed).
pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> Result<Option<AuthTls>, String> {
    let Some(secret) = a.get("auth-tls-secret") else { return Ok(None) };
    let secret = secret_ref(secret, &object.namespace)
        .map_err(|e| a.invalid(object, "auth-tls-secret", &e, diagnostics))?;
    let verify = match a.get("auth-tls-verify-client").unwrap_or("on") {
        "on" => ClientVerify::On,
        "optional" => ClientVerify::Optional,
        "optional_no_ca" => ClientVerify::OptionalNoCa,
        "off" => ClientVerify::Off,
        other => {
            let why = format!("{other:?} is not on, optional, optional_no_ca or off");
            return Err(a.invalid(object, "auth-tls-verify-client", &why, diagnostics));
        }
    };
    let depth = match a.get("auth-tls-verify-depth") {
        None => 1,
        Some(v) => match v.trim().parse::<u8>() {
            // ingress-nginx reads 0 as its default.
            Ok(0) => 1,
            Ok(d) => d,
            Err(_) => {
                let why = format!("{v:?} is not a whole number from 0 to 255");
                return Err(a.invalid(object, "auth-tls-verify-depth", &why, diagnostics));
            }
        },
    };
    let pass_certificate = match a.get("auth-tls-pass-certificate-to-upstream") {
        None => false,
        Some(v) => parse_bool(v).map_err(|e| {
            a.invalid(object, "auth-tls-pass-certificate-to-upstream", &e, diagnostics)
        })?,
    };
    let match_cn = match a.get("auth-tls-match-cn").map(str::trim).filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => {
            let checked = v
                .strip_prefix("CN=")
                .ok_or_else(|| format!("{v:?} does not start with CN="))
                .and_then(|_| regex::Regex::new(v).map(drop).map_err(|e| format!("{v:?}: {e}")));
            checked.map_err(|e| a.invalid(object, "auth-tls-match-cn", &e, diagnostics))?;
            Some(v.to_string())
        }
    };
    let error_page = match a.get("auth-tls-error-page").map(str::trim).filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => {
            // ingress-nginx's check: an URL or a path, no variables, no spaces.
            let ok = v.bytes().all(|c| c.is_ascii_alphanumeric() || b":/.-_".contains(&c));
            if !ok {
                let why = format!("{v:?} is not a URL or path");
                return Err(a.invalid(object, "auth-tls-error-page", &why, diagnostics));
            }
            Some(v.to_string())
        }
    };
    Ok(Some(AuthTls { secret, verify, depth, pass_certificate, match_cn, error_page }))
}
