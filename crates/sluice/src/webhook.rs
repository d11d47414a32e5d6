//! The validating admission webhook (`--validating-webhook`, as ingress-nginx's flag): the API
//! server sends each Ingress CREATE and UPDATE here (AdmissionReview v1, at [`PATH`], the path
//! ingress-nginx's chart registers) before storing it, and Sluice answers with the same
//! diagnostics as `sluice check`, judged against the configuration in force
//! ([`sluice_translate::review`]): refused, with the diagnostics in the message, or admitted
//! with admission warnings for what Sluice would ignore.
//!
//! Unlike ingress-nginx's webhook, nothing is rendered or run: the Ingress is translated alone
//! and looked up in the routing table in force, in well under a millisecond at 10,000
//! Ingresses (`bench/benches/admission.rs`).
//!
//! The serving certificate comes from files (`--validating-webhook-certificate` and `-key`,
//! reloaded when they change, as cert-manager renews them), or Sluice makes one itself
//! (`--validating-webhook-configuration`): a CA and a certificate for the names of the
//! Service the named ValidatingWebhookConfiguration calls, kept in a Secret
//! (`--validating-webhook-secret`) so that every replica serves the same one, and the CA put
//! in the configuration's `caBundle`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use k8s_openapi::api::networking::v1::Ingress;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sluice_model::Settings;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::control::InForce;

/// The path the API server posts Ingress reviews to (ingress-nginx's).
pub const PATH: &str = "/networking/v1/ingresses";

/// The largest review accepted: an Ingress and its old version (the API server stores
/// objects up to 1.5 MiB).
const MAX_BODY: usize = 4 << 20;

/// What the webhook reads: the settings, the configuration in force.
pub struct WebhookState {
    settings: Settings,
    in_force: InForce,
}

impl WebhookState {
    /// The state for `settings`, judging against what `in_force` holds at each request.
    pub fn new(settings: Settings, in_force: InForce) -> Arc<Self> {
        Arc::new(Self { settings, in_force })
    }
}

/// Where the serving certificate comes from.
pub enum TlsSource {
    /// PEM files, read again when either changes.
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
    },
    /// A certificate made or read at start-up.
    Fixed(Arc<CertifiedKey>),
}

/// Binds `addr` and answers reviews over HTTPS in the background; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    tls: TlsSource,
    state: Arc<WebhookState>,
) -> anyhow::Result<SocketAddr> {
    let resolver: Arc<dyn ResolvesServerCert> = match tls {
        TlsSource::Files { cert, key } => Arc::new(FileCert::load(cert, key)?),
        TlsSource::Fixed(certified) => Arc::new(FixedCert(certified)),
    };
    let mut config =
        rustls::ServerConfig::builder().with_no_client_auth().with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (--validating-webhook): {e}"))?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "validating webhook: accept failed");
                    continue;
                }
            };
            let (acceptor, state) = (acceptor.clone(), state.clone());
            tokio::spawn(async move {
                let stream = match acceptor.accept(stream).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(error = %e, "validating webhook: TLS handshake failed");
                        return;
                    }
                };
                let service = service_fn(move |req| answer(req, state.clone()));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(local)
}

/// Answers one HTTP request: a review at [`PATH`], else 404.
async fn answer(
    req: Request<Incoming>,
    state: Arc<WebhookState>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != PATH {
        return Ok(plain(StatusCode::NOT_FOUND, format!("not found; reviews go to {PATH}\n")));
    }
    if req.method() != Method::POST {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "POST an AdmissionReview\n".into()));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(plain(StatusCode::BAD_REQUEST, format!("cannot read body: {e}\n"))),
    };
    let json = respond(&state, &body);
    let mut response = Response::new(Full::new(Bytes::from(json)));
    response.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    Ok(response)
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
}

/// The answer to one AdmissionReview (JSON in, JSON out): what the server sends back.
pub fn respond(state: &WebhookState, body: &[u8]) -> Vec<u8> {
    let response = match serde_json::from_slice::<AdmissionReview<Ingress>>(body) {
        Ok(review) => match TryInto::<AdmissionRequest<Ingress>>::try_into(review) {
            Ok(request) => decide(state, &request),
            Err(_) => AdmissionResponse::invalid("an AdmissionReview without a request"),
        },
        Err(e) => AdmissionResponse::invalid(format!("not an AdmissionReview of an Ingress: {e}")),
    };
    serde_json::to_vec(&response.into_review()).unwrap_or_default()
}

/// The answer to one review.
pub fn decide(state: &WebhookState, request: &AdmissionRequest<Ingress>) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    // DELETE (and CONNECT) change nothing Sluice would refuse.
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return response;
    }
    let Some(ingress) = &request.object else { return response };
    let Some(in_force) = state.in_force.load_full() else {
        // The server starts once the first configuration is in force; kept for safety.
        return response.deny("Sluice has not loaded its configuration yet; try again shortly");
    };
    let started = Instant::now();
    // The API server may leave these to the request (a generated name, the namespace of
    // the URL).
    let mut ingress = std::borrow::Cow::Borrowed(ingress);
    if ingress.metadata.namespace.is_none() || ingress.metadata.name.is_none() {
        let meta = &mut ingress.to_mut().metadata;
        meta.namespace = meta.namespace.take().or_else(|| request.namespace.clone());
        meta.name = meta.name.take().or_else(|| Some(request.name.clone()));
    }
    let old = request.old_object.as_ref().filter(|_| request.operation == Operation::Update);
    let review = sluice_translate::review(
        &in_force.snapshot,
        &in_force.table,
        &state.settings,
        &ingress,
        old,
    );
    let name = format!(
        "{}/{}",
        ingress.metadata.namespace.as_deref().unwrap_or_default(),
        ingress.metadata.name.as_deref().unwrap_or_default()
    );
    let took_us = started.elapsed().as_micros() as u64;
    if !review.ours {
        tracing::debug!(ingress = %name, took_us, "admission: not our class; admitted");
        return response;
    }
    if !review.allowed() {
        tracing::info!(ingress = %name, operation = ?request.operation, dry_run = request.dry_run, refusals = review.refusals.len(), took_us, "admission: refused");
        return response.deny(denial(&review));
    }
    let warnings: Vec<String> = review.warnings().map(warning).collect();
    tracing::info!(ingress = %name, operation = ?request.operation, dry_run = request.dry_run, warnings = warnings.len(), took_us, "admission: admitted");
    let mut response = response;
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}

/// The denial message: every diagnostic, as `sluice check` prints it, the refusing ones first.
fn denial(review: &sluice_translate::Review) -> String {
    let mut lines = vec!["Sluice would not serve this Ingress as written:".to_string()];
    lines.extend(review.refusals.iter().map(ToString::to_string));
    lines.extend(review.warnings().map(ToString::to_string));
    lines.join("\n")
}

/// An admission warning: the diagnostic without its level (clients print `Warning:`).
fn warning(d: &sluice_model::Diagnostic) -> String {
    format!("{} [{}]: {}", d.object, d.reason, d.message)
}

/// A certificate read from files, read again when either file changes (checked at each
/// handshake: a webhook sees a few per minute, and two `stat`s cost microseconds).
#[derive(Debug)]
struct FileCert {
    cert: PathBuf,
    key: PathBuf,
    /// The files' modification times and the certificate read from them.
    current: Mutex<(Stamp, Arc<CertifiedKey>)>,
}

type Stamp = (Option<SystemTime>, Option<SystemTime>);

impl FileCert {
    fn load(cert: PathBuf, key: PathBuf) -> anyhow::Result<Self> {
        let stamp = stamp(&cert, &key);
        let certified = read_pem(&cert, &key)?;
        Ok(Self { cert, key, current: Mutex::new((stamp, certified)) })
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (modified(cert), modified(key))
}

impl ResolvesServerCert for FileCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let now = stamp(&self.cert, &self.key);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if now != current.0 {
            match read_pem(&self.cert, &self.key) {
                Ok(certified) => {
                    tracing::info!(cert = %self.cert.display(), "validating webhook: certificate reloaded");
                    *current = (now, certified);
                }
                // Half-written (a rotation in progress): keep serving the last good one and
                // try again at the next handshake.
                Err(e) => {
                    tracing::warn!(error = %e, "validating webhook: cannot reload the certificate; the previous one stays")
                }
            }
        }
        Some(current.1.clone())
    }
}

#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A certificate chain and key from PEM files.
fn read_pem(cert: &Path, key: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("--validating-webhook-certificate {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("--validating-webhook-key {}: {e}", key.display()))?;
    certified(chain, &key)
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'_>,
) -> anyhow::Result<Arc<CertifiedKey>> {
    if chain.is_empty() {
        anyhow::bail!("the webhook's certificate file holds no certificate");
    }
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(key)
        .map_err(|e| anyhow::anyhow!("the webhook's key cannot be used: {e}"))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| anyhow::anyhow!("the webhook's key does not match its certificate: {e}"))?;
    Ok(Arc::new(certified))
}

/// A certificate Sluice makes (or reads from `secret`) for the Service of ValidatingWebhookConfiguration
/// `configuration`, whose `caBundle` it sets (see [`crate::webhook_cert`]).
pub async fn generated(
    client: &kube::Client,
    configuration: &str,
    secret: Option<&sluice_model::NamespacedName>,
) -> anyhow::Result<TlsSource> {
    let pair = crate::webhook_cert::ensure(client, configuration, secret).await?;
    let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("the generated key: {e}"))?;
    let chain = CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("the generated certificate: {e}"))?;
    Ok(TlsSource::Fixed(certified(chain, &key)?))
}
