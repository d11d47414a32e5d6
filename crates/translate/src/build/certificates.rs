//! The TLS parts of translation: which certificate serves which host, each host's handshake
//! policy, passthrough hosts, TLS towards backends, and (at the end) HTTPS redirects and the
//! hosts that must fail closed.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{IngressBackend, IngressTLS};
use sluice_model::{
    ClientAuth, Diagnostic, HandshakePolicy, Kind, NamespacedName, ObjectRef, Reason, Target,
    UpstreamTls,
};

use super::{Builder, Current};
use crate::config::GlobalConfig;
use crate::tls::{covers, load_ca, load_cert, load_client_pair};

/// What the Ingresses of one host asked of its handshake, each part decided by the oldest
/// Ingress of the host that sets it.
#[derive(Default)]
pub(crate) struct HostPolicy {
    /// `auth-tls-*`, once an Ingress asked: `Some(None)` when unusable (the host fails closed).
    client_auth: Option<Option<ClientAuth>>,
    /// `ssl-ciphers`.
    tls12_suites: Option<Vec<String>>,
}

impl<'s> Builder<'s> {
    /// Table-wide TLS settings from the ConfigMap and flags: versions, the default policy
    /// (index 0) and `--default-ssl-certificate`.
    pub(crate) fn start_tls(&mut self, global: &GlobalConfig) {
        self.tls.versions = global.versions;
        self.tls
            .policies
            .push(HandshakePolicy { client_auth: None, tls12_suites: global.tls12_suites.clone() });
        if let Some(name) = self.settings.default_ssl_certificate.clone() {
            match self.cert(&name) {
                Ok(id) => self.tls.default_cert = Some(id),
                Err((reason, why)) => self.diagnostics.push(Diagnostic::error(
                    ObjectRef::new(Kind::Secret, &name.namespace, &name.name),
                    reason,
                    format!("--default-ssl-certificate: Secret {name} {why}; Sluice's own generated certificate is used"),
                )),
            }
        }
    }

    /// Reads a certificate Secret, once per translation.
    fn cert(&mut self, name: &NamespacedName) -> Result<u32, (Reason, String)> {
        if let Some(known) = self.cert_ids.get(name) {
            return known.clone();
        }
        let result = match self.index.secret(&name.namespace, &name.name) {
            None => Err((Reason::MissingSecret, "does not exist".to_string())),
            Some(secret) => match load_cert(name, secret, self.observed_at) {
                Ok(cert) => {
                    self.tls.certs.push(Arc::new(cert));
                    Ok((self.tls.certs.len() - 1) as u32)
                }
                Err(why) => Err((Reason::InvalidSecret, why)),
            },
        };
        self.cert_ids.insert(name.clone(), result.clone());
        result
    }

    /// The TLS of one rule host, as ingress-nginx decides it (`createServers`): in an Ingress
    /// with a TLS section, the section that lists the host, else one whose certificate covers
    /// it, else the default certificate; the oldest Ingress that gives the host TLS wins. A
    /// section without `secretName`, and a Secret that is missing, invalid or not for this
    /// host, leave the host on the default certificate (with a diagnostic).
    pub(crate) fn add_tls_for_host(&mut self, cur: &Current, host: &str, sections: &[IngressTLS]) {
        if host.is_empty() || sections.is_empty() || self.tls_hosts.contains(host) {
            return;
        }
        let listed = sections
            .iter()
            .find(|s| s.hosts.iter().flatten().any(|h| h.eq_ignore_ascii_case(host)));
        let secret = match listed {
            Some(section) => section.secret_name.clone().unwrap_or_default(),
            None => {
                let mut covering = None;
                for name in sections
                    .iter()
                    .filter_map(|s| s.secret_name.as_deref())
                    .filter(|n| !n.is_empty())
                {
                    let secret = NamespacedName::new(&cur.name.namespace, name);
                    if let Ok(id) = self.cert(&secret)
                        && covers(&self.tls.certs[id as usize].names, host)
                    {
                        covering = Some(name.to_string());
                        break;
                    }
                }
                // Not listed, not covered: the default certificate.
                covering.unwrap_or_default()
            }
        };
        self.tls_hosts.insert(host.to_string());
        if secret.is_empty() {
            return; // the default certificate
        }
        let name = NamespacedName::new(&cur.name.namespace, &secret);
        let problem = match self.cert(&name) {
            Ok(id) if covers(&self.tls.certs[id as usize].names, host) => {
                self.tls.cert_by_name.insert(host, id);
                return;
            }
            Ok(id) => (
                Reason::InvalidSecret,
                format!("is for {} only, not {host}", self.tls.certs[id as usize].names.join(", ")),
            ),
            Err(problem) => problem,
        };
        self.diagnostics.push(Diagnostic::error(
            cur.object.clone(),
            problem.0,
            format!("TLS for {host}: Secret {name} {}; the default certificate is used", problem.1),
        ));
    }

    /// The host's handshake policy: client certificates, set by the oldest Ingress of the
    /// host that asks for them, and ciphers, set by the oldest Ingress of the host that sets
    /// `ssl-ciphers` (each decided on its own, as ingress-nginx does). Unusable
    /// client-certificate settings make the host fail closed.
    pub(crate) fn set_host_policy(&mut self, cur: &Current, host: &str) {
        let a = &cur.annotations;
        if host.is_empty() {
            return;
        }
        let known = self.host_policies.get(host);
        let set_auth =
            !matches!(a.auth_tls, Ok(None)) && known.is_none_or(|p| p.client_auth.is_none());
        let set_ciphers = a.ssl_ciphers.is_some() && known.is_none_or(|p| p.tls12_suites.is_none());
        if !set_auth && !set_ciphers {
            return;
        }
        let client_auth = set_auth.then(|| self.client_auth(cur, host));
        let policy = self.host_policies.entry(host.to_string()).or_default();
        if client_auth.is_some() {
            policy.client_auth = client_auth;
        }
        if set_ciphers {
            policy.tls12_suites.clone_from(&a.ssl_ciphers);
        }
    }

    /// The current Ingress's client-certificate settings for `host`; `None` (and the host
    /// failed) when they cannot be applied.
    fn client_auth(&mut self, cur: &Current, host: &str) -> Option<ClientAuth> {
        let spec = match &cur.annotations.auth_tls {
            Ok(spec) => spec.as_ref()?,
            Err(why) => {
                self.failed_hosts.insert(host.to_string(), why.clone());
                return None;
            }
        };
        let secret = &spec.secret;
        let ca = match self.index.secret(&secret.namespace, &secret.name) {
            None => Err((Reason::MissingSecret, "does not exist".to_string())),
            Some(s) => load_ca(s).map_err(|why| (Reason::InvalidSecret, why)),
        };
        match ca {
            Ok(ca) => Some(ClientAuth {
                secret: secret.clone(),
                ca,
                verify: spec.verify,
                depth: spec.depth,
                pass_certificate: spec.pass_certificate,
                match_cn: spec.match_cn.clone(),
                error_page: spec.error_page.clone(),
            }),
            Err((reason, why)) => {
                let why = format!("client certificates for {host}: Secret {secret} {why}");
                self.diagnostics.push(Diagnostic::error(
                    cur.object.clone(),
                    reason,
                    format!("{why}; the host answers 503 rather than serve unverified clients"),
                ));
                self.failed_hosts.insert(host.to_string(), why);
                None
            }
        }
    }

    /// Makes the hosts' handshake policies: equal ones are shared; hosts that ask for nothing
    /// usable keep the default policy (index 0).
    pub(super) fn finish_policies(&mut self) {
        for (host, asked) in std::mem::take(&mut self.host_policies) {
            let client_auth = asked.client_auth.flatten();
            if client_auth.is_none() && asked.tls12_suites.is_none() {
                continue;
            }
            let tls12_suites =
                asked.tls12_suites.or_else(|| self.tls.policies[0].tls12_suites.clone());
            let policy = HandshakePolicy { client_auth, tls12_suites };
            let id = match self.tls.policies.iter().position(|p| *p == policy) {
                Some(id) => id,
                None => {
                    self.tls.policies.push(policy);
                    self.tls.policies.len() - 1
                }
            };
            self.tls.policy_by_name.insert(&host, id as u32);
        }
    }

    /// `ssl-passthrough` for one host: its TLS connections go, raw, to `backend`.
    pub(crate) fn add_passthrough(
        &mut self,
        cur: &Current<'s>,
        host: &str,
        backend: Option<&'s IngressBackend>,
        global: &GlobalConfig,
    ) {
        if !self.settings.enable_ssl_passthrough {
            self.diagnostics.push(Diagnostic::warning(
                cur.object.clone(),
                Reason::UnsupportedFeature,
                format!("ssl-passthrough needs --enable-ssl-passthrough; TLS for {host} is terminated by Sluice"),
            ));
            return;
        }
        let Some(backend) = backend else {
            self.diagnostics.push(Diagnostic::warning(
                cur.object.clone(),
                Reason::InvalidBackend,
                format!("ssl-passthrough for {host}: no `/` path nor defaultBackend to pass connections to; TLS for {host} is terminated by Sluice"),
            ));
            return;
        };
        if let Target::Backend(id) = self.target(cur, backend, global)
            && !self.tls.passthrough.insert(host, id)
        {
            self.diagnostics.push(Diagnostic::error(
                cur.object.clone(),
                Reason::PathCollision,
                format!("ssl-passthrough for {host} is already set by an older Ingress; this one is ignored"),
            ));
        }
    }

    /// TLS towards a backend of the current Ingress (`backend-protocol: HTTPS` or `GRPCS`,
    /// `proxy-ssl-*`). `Err` when verification is asked for but impossible: the path answers
    /// 503 rather than talk to an unverified backend.
    pub(crate) fn upstream_tls(
        &mut self,
        cur: &Current,
        svc: &NamespacedName,
    ) -> Result<Option<Arc<UpstreamTls>>, String> {
        let a = &cur.annotations;
        let p = &a.proxy_ssl;
        if !a.backend_protocol.tls() {
            return Ok(None);
        }
        let mut tls = UpstreamTls {
            secret: p.secret.clone(),
            verify: p.verify,
            depth: p.depth,
            name: p.name.clone().unwrap_or_else(|| format!("{}.{}.svc", svc.name, svc.namespace)),
            send_sni: p.send_sni,
            ..UpstreamTls::default()
        };
        if let Some(name) = &p.secret {
            let loaded = match self.index.secret(&name.namespace, &name.name) {
                None => Err((Reason::MissingSecret, "does not exist".to_string())),
                Some(s) => {
                    let ca = if s.data.as_ref().is_some_and(|d| d.contains_key("ca.crt")) {
                        load_ca(s).map(Some)
                    } else {
                        Ok(None)
                    };
                    ca.and_then(|ca| Ok((ca, load_client_pair(s)?)))
                        .map_err(|why| (Reason::InvalidSecret, why))
                }
            };
            match loaded {
                Ok((ca, pair)) => {
                    tls.ca = ca.unwrap_or_default();
                    if let Some((chain, key)) = pair {
                        tls.client_chain = chain;
                        tls.client_key = Some(key);
                    }
                }
                Err((reason, why)) => {
                    // As ingress-nginx: the location is denied, verification or not.
                    let why = format!("proxy-ssl-secret {name} {why}");
                    self.diagnostics.push(Diagnostic::error(
                        cur.object.clone(),
                        reason,
                        format!("{why}; the paths answer 503"),
                    ));
                    return Err(why);
                }
            }
        }
        if tls.verify && tls.ca.is_empty() {
            let why = "proxy-ssl-verify is on but proxy-ssl-secret gives no ca.crt to verify with"
                .to_string();
            self.diagnostics.push(Diagnostic::error(
                cur.object.clone(),
                Reason::InvalidAnnotation,
                format!("{why}; the paths answer 503"),
            ));
            return Err(why);
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&tls, &mut h);
        tls.fingerprint = std::hash::Hasher::finish(&h);
        Ok(Some(Arc::new(tls)))
    }

    /// Last pass: routes of failed hosts answer 503; HTTPS redirects are decided now that
    /// every Ingress has said which hosts have TLS.
    pub(crate) fn finish_tls(&mut self, _global: &GlobalConfig) {
        self.finish_policies();
        let failed: HashMap<String, String> = std::mem::take(&mut self.failed_hosts);
        let tls_hosts = std::mem::take(&mut self.tls_hosts);
        for route in self.routes_mut() {
            if let Some(why) = failed.get(&*route.host) {
                route.target = Target::Respond { status: 503, reason: why.clone() };
                route.fallback = None;
            }
            let p = &route.policy.https;
            route.redirect_to_https =
                p.force_ssl_redirect || (p.ssl_redirect && tls_hosts.contains(&*route.host));
        }
        self.fail_host_defaults(&failed);
        self.redirect_host_defaults(&tls_hosts);
    }
}
