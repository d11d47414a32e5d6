//! The validating admission webhook of the real binary, over HTTPS on loopback, with manifests
//! as the configuration in force (the Kubernetes suite, tests/kube.rs, has the real API server
//! call it): reviews answered with `sluice check`'s diagnostics, and the certificate files read
//! again when they change.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TLS connection to `addr` trusting only `ca_pem`, as the API server trusts its caBundle;
/// `Err` when the handshake fails.
async fn connect(
    addr: SocketAddr,
    ca_pem: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await
}

/// POSTs `body` to `path` over HTTP/1.1 on a connection trusting `ca_pem`: status and body.
async fn post(addr: SocketAddr, ca_pem: &str, path: &str, body: &str) -> (u16, String) {
    let mut tls = connect(addr, ca_pem).await.expect("TLS handshake");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (raw_status(head), body.to_string())
}

/// An AdmissionReview v1 CREATE of `ingress`.
fn review(ingress: &Value) -> String {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "0f1e2d3c-0000-4000-8000-000000000001",
            "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"},
            "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"},
            "namespace": "default", "name": ingress["metadata"]["name"],
            "operation": "CREATE", "userInfo": {"username": "someone"},
            "object": ingress, "oldObject": null,
        },
    })
    .to_string()
}

fn ingress_json(name: &str, host: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]},
    })
}

fn write_pair(dir: &std::path::Path, pair: &sluice::webhook_cert::Pair) {
    // Key first, then the certificate: a reload between the two sees a mismatch and keeps the
    // previous pair, then picks the new one at the next handshake.
    std::fs::write(dir.join("tls.key"), &pair.key_pem).unwrap();
    std::fs::write(dir.join("tls.crt"), &pair.cert_pem).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn reviews_are_answered_over_https_and_the_certificate_reloads() {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("web", &[echo("web").await]));
    m.write("owner.yaml", &ingress("owner", "owner.test", &[("/", "Prefix", "web")], &[]));
    let certs = tempfile::tempdir().unwrap();
    let first = sluice::webhook_cert::generate(&["127.0.0.1".to_string()]).unwrap();
    write_pair(certs.path(), &first);
    let addr = unused_addr();
    let s = Sluice::start(
        m.path(),
        &[
            &format!("--validating-webhook={addr}"),
            &format!("--validating-webhook-certificate={}", certs.path().join("tls.crt").display()),
            &format!("--validating-webhook-key={}", certs.path().join("tls.key").display()),
        ],
    );
    s.wait_stderr(|l| l.contains("validating admission webhook listening"));
    let path = "/networking/v1/ingresses";

    // A snippet: denied, with the diagnostic as `sluice check` prints it.
    let snippet = json!({"nginx.ingress.kubernetes.io/server-snippet": "return 200;"});
    let (status, body) =
        post(addr, &first.ca_pem, path, &review(&ingress_json("bad", "bad.test", snippet))).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let response = &answer["response"];
    assert_eq!(response["uid"], "0f1e2d3c-0000-4000-8000-000000000001", "{answer}");
    assert_eq!(response["allowed"], false, "{answer}");
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.contains("error: Ingress default/bad [SnippetRefused]: nginx.ingress.kubernetes.io/server-snippet holds NGINX configuration, which the controller's ConfigMap does not allow"), "{message}");

    // The host and path `owner` serves, from the manifests in force: denied.
    let (_, body) =
        post(addr, &first.ca_pem, path, &review(&ingress_json("late", "owner.test", json!({}))))
            .await;
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert!(body.contains("already served by older Ingress default/owner"), "{body}");

    // A typo: admitted, with the warning.
    let typo = json!({"nginx.ingress.kubernetes.io/ssl-redirectt": "false"});
    let (_, body) =
        post(addr, &first.ca_pem, path, &review(&ingress_json("typo", "typo.test", typo))).await;
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(
        answer["response"]["warnings"],
        json!([
            "Ingress default/typo [UnknownAnnotation]: nginx.ingress.kubernetes.io/ssl-redirectt is not an ingress-nginx annotation; ignored"
        ]),
        "{answer}"
    );

    // Other paths, and what is not a review.
    assert_eq!(post(addr, &first.ca_pem, "/other", "{}").await.0, 404);
    let (status, body) = post(addr, &first.ca_pem, path, "{\"not\": \"a review\"}").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("\"allowed\":false") && body.contains("not an AdmissionReview"),
        "{body}"
    );

    // cert-manager renews the certificate (another CA here, to tell them apart): the next
    // handshake serves it, without a restart.
    let second = sluice::webhook_cert::generate(&["127.0.0.1".to_string()]).unwrap();
    write_pair(certs.path(), &second);
    let deadline = std::time::Instant::now() + WAIT;
    while connect(addr, &second.ca_pem).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the new certificate is never served");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(connect(addr, &first.ca_pem).await.is_err(), "the old certificate is still served");
    s.wait_stderr(|l| l.contains("certificate reloaded"));
    let (_, body) =
        post(addr, &second.ca_pem, path, &review(&ingress_json("good", "good.test", json!({}))))
            .await;
    assert!(body.contains("\"allowed\":true"), "{body}");
}

// Without a certificate nor a configuration to make one for, `serve` stops with a clear error
// rather than serve an unverifiable webhook.
#[test]
fn the_webhook_needs_a_certificate() {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--manifests"])
        .arg(m.path())
        .args([
            "--bind-address",
            "127.0.0.1",
            "--http-port",
            "0",
            "--https-port",
            "0",
            "--healthz-port",
            "0",
        ])
        .arg(format!("--validating-webhook={}", unused_addr()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--validating-webhook needs --validating-webhook-certificate"), "{err}");
}
