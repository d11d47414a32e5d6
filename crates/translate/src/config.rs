//! Global settings from the controller's ConfigMap (`--configmap`), with ingress-nginx's key
//! names and defaults. Keys not listed here are reported as not implemented.

use std::collections::BTreeMap;

use sluice_model::{Diagnostic, Kind, ObjectRef, Policy, Reason};

use crate::annotations::proxy::{parse_seconds, parse_size, parse_tries};

/// The global settings translation uses, after the ConfigMap is applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobalConfig {
    /// Defaults for every route; annotations override them per Ingress.
    pub policy: Policy,
}

/// Reads the ConfigMap's `data` over the defaults. Invalid values keep the default and are
/// reported; so are keys Sluice does not implement, and snippet keys, which are refused.
pub fn parse(
    object: &ObjectRef,
    data: &BTreeMap<String, String>,
    diagnostics: &mut Vec<Diagnostic>,
) -> GlobalConfig {
    let mut config = GlobalConfig::default();
    let policy = &mut config.policy;
    for (key, value) in data {
        let result = match key.as_str() {
            "proxy-body-size" => parse_size(value).map(|v| policy.max_body_size = v),
            "proxy-connect-timeout" => parse_seconds(value).map(|v| policy.connect_timeout = v),
            "proxy-read-timeout" => parse_seconds(value).map(|v| policy.read_timeout = v),
            "proxy-send-timeout" => parse_seconds(value).map(|v| policy.send_timeout = v),
            "proxy-next-upstream-tries" => {
                parse_tries(value).map(|v| policy.next_upstream_tries = v)
            }
            k if k.ends_with("-snippet") => {
                diagnostics.push(Diagnostic::error(
                    object.clone(),
                    Reason::SnippetRefused,
                    format!(
                        "{k}: raw NGINX configuration is never applied by Sluice; \
                         remove the key and use the equivalent setting"
                    ),
                ));
                continue;
            }
            k => {
                diagnostics.push(Diagnostic::warning(
                    object.clone(),
                    Reason::UnsupportedConfigMapKey,
                    format!("{k}: not implemented by Sluice; ignored"),
                ));
                continue;
            }
        };
        if let Err(why) = result {
            diagnostics.push(Diagnostic::error(
                object.clone(),
                Reason::InvalidConfigMapKey,
                format!("{key}: {why}; the default applies"),
            ));
        }
    }
    config
}

/// The reference used in diagnostics about the ConfigMap `ns/name`.
pub fn object_ref(ns: &str, name: &str) -> ObjectRef {
    ObjectRef::new(Kind::ConfigMap, ns, name)
}
