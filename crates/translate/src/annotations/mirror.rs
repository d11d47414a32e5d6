//! Mirroring: a copy of each request is sent to another URL and its answer thrown away.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `mirror-target` | — | the URL of the copy, with NGINX variables (`https://test.example$request_uri`) |
//! | `mirror-request-body` | `on` | `off`: the copy is sent without the body |
//! | `mirror-host` | the target's host name (without its port) | the `Host` of the copy |
//!
//! As in ingress-nginx, the copy carries the request's method and the client's headers as
//! sent (its `_mirror-*` location sets `Host` only, so none of the forwarding headers), and
//! applies to every path of the Ingress.
//!
//! Where Sluice differs, on purpose: the copy is sent and forgotten. NGINX's `mirror` holds
//! the main request until the mirror answers, so a slow mirror slows real traffic; in Sluice
//! a mirror that is slow, failing or gone never delays nor fails the main request. Copies
//! in flight are bounded per worker (beyond that, copies are dropped and counted in
//! `sluice_mirror_requests_total{outcome="dropped"}`), and a body is copied up to the route's
//! `proxy-body-size` (up to 8 MiB); a larger body is not mirrored. As NGINX's
//! `mirror_request_body on` does, the body is read whole before either request starts, even
//! with `proxy-request-buffering: off`.

use sluice_model::{Diagnostic, Mirror, ObjectRef, Template};

use super::buffering::on_off;
use super::{Annotations, Effect, Family};

/// The annotations of this family.
pub const FAMILY: Family = Family {
    module: "mirror",
    annotations: &[
        ("mirror-host", Effect::Applied),
        ("mirror-request-body", Effect::Applied),
        ("mirror-target", Effect::Applied),
    ],
    configmap_keys: &[],
};

pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Mirror> {
    let mut mirror: Option<Mirror> = None;
    a.apply(object, "mirror-target", diagnostics, |v| {
        let v = v.trim();
        if !(v.starts_with("http://") || v.starts_with("https://")) {
            return Err(format!("{v:?} is not an http or https URL"));
        }
        if v.bytes().any(|c| !c.is_ascii_graphic()) {
            return Err(format!("{v:?} has spaces or control characters"));
        }
        let target = Template::parse(v)?;
        mirror = Some(Mirror { target, host: None, request_body: true });
        Ok(())
    });
    let Some(m) = &mut mirror else {
        for name in ["mirror-host", "mirror-request-body"] {
            if a.get(name).is_some() {
                a.report(object, name, "no mirror-target is set", diagnostics);
            }
        }
        return None;
    };
    a.apply(object, "mirror-request-body", diagnostics, |v| {
        on_off(v).map(|on| m.request_body = on)
    });
    a.apply(object, "mirror-host", diagnostics, |v| {
        let v = v.trim();
        if v.is_empty() || !v.bytes().all(|c| c.is_ascii_alphanumeric() || b"-.:[]".contains(&c)) {
            return Err(format!("{v:?} is not a host name"));
        }
        m.host = Some(v.to_string());
        Ok(())
    });
    mirror
}
