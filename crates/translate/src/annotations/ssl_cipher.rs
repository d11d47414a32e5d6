//! `ssl-ciphers`: the host's TLS 1.2 cipher suites, an OpenSSL cipher list mapped onto what
//! rustls offers (ECDHE with AES-GCM or ChaCha20-Poly1305). Names rustls cannot offer (CBC and
//! DHE suites, OpenSSL keywords) are reported and left out: the list only ever narrows. A list
//! with nothing rustls offers keeps the defaults, and says so. TLS 1.3 suites stay enabled, as
//! with NGINX. Per host: the oldest Ingress of the host that sets it decides.

use sluice_model::{Diagnostic, Kind, ObjectRef, Reason};

use super::{Annotations, Effect, Family};

/// The annotation and ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "ssl_cipher",
    annotations: &[("ssl-ciphers", Effect::Applied)],
    configmap_keys: &["ssl-ciphers", "ssl-protocols"],
};

/// The rustls TLS 1.2 suites asked for, if any usable.
pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Vec<String>> {
    let list = a.get("ssl-ciphers")?;
    suites(list, object, &format!("{}/ssl-ciphers", a.prefix), diagnostics)
}

/// Maps `list` (an annotation or the ConfigMap key `what`), reporting what is left out.
pub(crate) fn suites(
    list: &str,
    object: &ObjectRef,
    what: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Vec<String>> {
    let (suites, unsupported) = crate::tls::map_ciphers(list);
    // The ConfigMap key `ssl-ciphers` is reported as a ConfigMap key, not an annotation.
    let (invalid, unsupported_reason) = match object.kind {
        Kind::ConfigMap => (Reason::InvalidConfigMapKey, Reason::UnsupportedConfigMapKey),
        _ => (Reason::InvalidAnnotation, Reason::UnsupportedAnnotation),
    };
    if suites.is_empty() {
        diagnostics.push(Diagnostic::error(
            object.clone(),
            invalid,
            format!("{what}: no cipher in {list:?} is offered by Sluice (ECDHE with AES-GCM or CHACHA20-POLY1305); the defaults apply"),
        ));
        return None;
    }
    if !unsupported.is_empty() {
        diagnostics.push(Diagnostic::warning(
            object.clone(),
            unsupported_reason,
            format!("{what}: {} not offered by Sluice, left out", unsupported.join(", ")),
        ));
    }
    Some(suites)
}
