//! The webhook's own certificate, for installs with no certificate tool (`deploy/manifests`):
//! Sluice makes a CA and a serving certificate for the Service its ValidatingWebhookConfiguration
//! calls, keeps them in a Secret so that every replica serves the same certificate (the first
//! replica creates it; the others read it), and sets the configuration's `caBundle` to the CA.
//!
//! ingress-nginx runs a separate Job (`kube-webhook-certgen`) before and after install for
//! this; doing it in the controller needs no image and no hook, and a certificate lost with its
//! Secret is made again at the next start.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use sluice_model::NamespacedName;

/// The keys of the Secret, as cert-manager names them.
const CA: &str = "ca.crt";
const CERT: &str = "tls.crt";
const KEY: &str = "tls.key";

/// A serving certificate, its key and the CA that signed it, in PEM.
pub struct Pair {
    /// The CA certificate (the `caBundle`).
    pub ca_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

/// The serving certificate for ValidatingWebhookConfiguration `configuration`: read from
/// `secret` when it holds one, else made (and stored there, when given); then the
/// configuration's `caBundle` is set to its CA.
pub async fn ensure(
    client: &kube::Client,
    configuration: &str,
    secret: Option<&NamespacedName>,
) -> anyhow::Result<Pair> {
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let config = configs.get(configuration).await.map_err(|e| {
        anyhow::anyhow!("cannot read ValidatingWebhookConfiguration {configuration}: {e}")
    })?;
    let names = server_names(&config);
    if names.is_empty() {
        anyhow::bail!(
            "ValidatingWebhookConfiguration {configuration} names no Service nor URL to make a certificate for"
        );
    }
    let pair = match secret {
        Some(name) => stored_or_new(client, name, &names).await?,
        None => generate(&names)?,
    };
    set_ca_bundle(&configs, configuration, pair.ca_pem.as_bytes()).await?;
    tracing::info!(configuration, names = %names.join(","), "validating webhook: serving certificate ready and caBundle set");
    Ok(pair)
}

/// The DNS names the API server reaches the webhooks of `config` by: each Service's short and
/// cluster names, each URL's host.
fn server_names(config: &ValidatingWebhookConfiguration) -> Vec<String> {
    let mut names = Vec::new();
    for hook in config.webhooks.iter().flatten() {
        let cc = &hook.client_config;
        if let Some(s) = &cc.service {
            let (name, ns) = (&s.name, &s.namespace);
            names.push(format!("{name}.{ns}.svc"));
            names.push(format!("{name}.{ns}.svc.cluster.local"));
            names.push(format!("{name}.{ns}"));
            names.push(name.clone());
        }
        if let Some(host) = cc.url.as_deref().and_then(url_host) {
            names.push(host.to_string());
        }
    }
    names.dedup();
    names
}

/// The host of an `https://host[:port]/path` URL.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then_some(host)
}

/// The pair stored in Secret `name`, or a new one stored there. Replicas starting together
/// race to create it: the loser reads the winner's.
async fn stored_or_new(
    client: &kube::Client,
    name: &NamespacedName,
    names: &[String],
) -> anyhow::Result<Pair> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &name.namespace);
    let read = |s: &Secret| -> Option<Pair> {
        let data = s.data.as_ref()?;
        let text = |k: &str| String::from_utf8(data.get(k)?.0.clone()).ok();
        Some(Pair { ca_pem: text(CA)?, cert_pem: text(CERT)?, key_pem: text(KEY)? })
    };
    let existing = secrets.get_opt(&name.name).await.map_err(|e| {
        anyhow::anyhow!("cannot read Secret {name} (--validating-webhook-secret): {e}")
    })?;
    if let Some(pair) = existing.as_ref().and_then(read) {
        tracing::info!(secret = %name, "validating webhook: using the certificate kept in its Secret");
        return Ok(pair);
    }
    let pair = generate(names)?;
    let data = BTreeMap::from([
        (CA.to_string(), ByteString(pair.ca_pem.clone().into_bytes())),
        (CERT.to_string(), ByteString(pair.cert_pem.clone().into_bytes())),
        (KEY.to_string(), ByteString(pair.key_pem.clone().into_bytes())),
    ]);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.name.clone()),
            namespace: Some(name.namespace.clone()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    };
    let result = match existing {
        // Present but incomplete: replaced.
        Some(old) => {
            let mut secret = secret;
            secret.metadata.resource_version = old.metadata.resource_version;
            secrets.replace(&name.name, &PostParams::default(), &secret).await
        }
        None => secrets.create(&PostParams::default(), &secret).await,
    };
    match result {
        Ok(_) => {
            tracing::info!(secret = %name, "validating webhook: made a certificate and kept it in its Secret");
            Ok(pair)
        }
        // Another replica stored one first: serve that one.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let stored = secrets.get(&name.name).await?;
            read(&stored).ok_or_else(|| anyhow::anyhow!("Secret {name} holds no certificate"))
        }
        Err(e) => Err(anyhow::anyhow!("cannot write Secret {name}: {e}")),
    }
}

/// A new CA and a serving certificate for `names` signed by it.
pub fn generate(names: &[String]) -> anyhow::Result<Pair> {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "sluice validating webhook CA");
    ca_params.key_usages =
        vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, &names[0]);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pair { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Sets every webhook's `caBundle` in `configuration` to `ca` (PEM), unless it is already;
/// retried when another writer changed the object in between.
async fn set_ca_bundle(
    configs: &Api<ValidatingWebhookConfiguration>,
    configuration: &str,
    ca: &[u8],
) -> anyhow::Result<()> {
    for _ in 0..5 {
        let mut config = configs.get(configuration).await?;
        let hooks = config.webhooks.iter_mut().flatten();
        let mut changed = false;
        for hook in hooks {
            if hook.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) != Some(ca) {
                hook.client_config.ca_bundle = Some(ByteString(ca.to_vec()));
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        match configs.replace(configuration, &PostParams::default(), &config).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "cannot set the caBundle of ValidatingWebhookConfiguration {configuration}: {e}"
                ));
            }
        }
    }
    anyhow::bail!("ValidatingWebhookConfiguration {configuration} kept changing; caBundle not set")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("https://127.0.0.1:8443/networking/v1/ingresses"), Some("127.0.0.1"));
        assert_eq!(url_host("https://hook.example.com/x"), Some("hook.example.com"));
        assert_eq!(url_host("https://[::1]:8443/x"), Some("::1"));
        assert_eq!(url_host("http://plain/x"), None);
    }
}
