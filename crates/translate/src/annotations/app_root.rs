//! `app-root`: a request for `/` on the Ingress's hosts is redirected (302) to the
//! application's root path.
//!
//! As in ingress-nginx, where it is `if ($uri = /) { return 302 $scheme://$http_host<app-root>; }`
//! in the server block: it applies to the whole host, whichever Ingress of the host defines
//! the path `/` (the oldest Ingress of the host that sets it decides), before anything else of
//! the request (the HTTPS redirect included); `$http_host` keeps the port the client sent, and
//! `$scheme` is the connection's (a trusted `X-Forwarded-Proto` does not change it). The
//! value must be a path (`/app`, with an optional query); a URL with a scheme is refused and
//! ignored, as ingress-nginx does.

use sluice_model::{Diagnostic, ObjectRef};

use super::{Annotations, Effect, Family};

/// The annotation of this family.
pub const FAMILY: Family = Family {
    module: "app_root",
    annotations: &[("app-root", Effect::Applied)],
    configmap_keys: &[],
};

pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<String> {
    let mut root = None;
    a.apply(object, "app-root", diagnostics, |v| {
        let v = v.trim();
        let plain = |c: u8| c.is_ascii_graphic() && !b"\"'<>\\`{}|^".contains(&c);
        if !v.starts_with('/') || v.starts_with("//") || !v.bytes().all(plain) {
            return Err(format!("{v:?} is not an absolute path such as /app"));
        }
        root = Some(v.to_string());
        Ok(())
    });
    root
}
