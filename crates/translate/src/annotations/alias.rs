//! `server-alias`: more host names served by the same rules.
//!
//! As in ingress-nginx (`internal/ingress/annotations/alias`, `createServers`): a
//! comma-separated list of names; the oldest Ingress of a host that sets aliases decides them
//! for the whole host (its paths, whichever Ingress defines them, its TLS and its
//! client-certificate policy); an alias that another Ingress defines as a host is dropped, so
//! an alias never takes a host away. An alias that is the other name of a
//! `from-to-www-redirect` host is dropped too: ingress-nginx writes the redirect's server
//! first, and NGINX keeps the first server of a name. Over HTTPS an alias gets the host's
//! certificate when that covers it, else the default certificate.
//!
//! Where Sluice differs: an alias must be a host name or a one-label wildcard (NGINX would
//! take a regex too); an alias already given to another host stays with the first host (NGINX
//! would warn about a conflicting server name and do the same); both are reported.

use sluice_model::{Diagnostic, ObjectRef};

use super::{Annotations, Effect, Family};
use crate::build::validate_host;

/// The annotation of this family.
pub const FAMILY: Family = Family {
    module: "alias",
    annotations: &[("server-alias", Effect::Applied)],
    configmap_keys: &[],
};

pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let Some(value) = a.get("server-alias") else { return Vec::new() };
    let mut aliases: Vec<String> = Vec::new();
    for alias in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match validate_host(alias) {
            Ok(host) => aliases.push(host.into_owned()),
            Err(why) => a.report(object, "server-alias", &why, diagnostics),
        }
    }
    aliases.sort();
    aliases.dedup();
    aliases
}
