//! The certificates view of `/debug/certs` (read by `kubectl sluice certs`): which
//! certificate each server name is presented, its subject, names, issuer and validity.
//! Built from the certificates' DER as the table carries them; never any key material.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sluice_model::RoutingTable;
use sluice_proxy::TlsState;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// One certificate, as presented for one server name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertView {
    /// The server name as written in the Ingress (`*.example.com` for a wildcard); `_` for the
    /// default certificate (unknown names, TLS hosts without a usable certificate of their own).
    pub host: String,
    /// `namespace/name` of the Secret it came from; `None` for the certificate Sluice
    /// generated at start-up.
    pub secret: Option<String>,
    /// True when the default certificate answers (`host` has none of its own, or its own key
    /// could not be loaded).
    pub default: bool,
    /// The leaf's subject distinguished name.
    pub subject: String,
    /// The leaf's DNS subject alternative names.
    pub names: Vec<String>,
    /// The leaf's issuer distinguished name.
    pub issuer: String,
    /// The leaf's serial number, in hexadecimal.
    pub serial: String,
    /// Start of validity, RFC 3339.
    pub not_before: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// Whole days from now until `not_after` (negative once expired).
    pub days_left: i64,
    /// Certificates in the chain (leaf included).
    pub chain_length: usize,
}

/// Every certificate presented: one entry per server name with a certificate of its own
/// (whose key loaded), then the default certificate (`host` `_`). Sorted by host.
pub fn all(table: &RoutingTable, tls: &TlsState, generated: &[u8]) -> Vec<CertView> {
    let now = now();
    let mut list: Vec<CertView> = table
        .tls
        .cert_by_name
        .iter()
        .filter(|(_, i)| tls.is_served(**i))
        .filter_map(|(host, &i)| {
            let cert = &table.tls.certs[i as usize];
            view(&host, Some(cert.secret.to_string()), false, &cert.chain, now)
        })
        .collect();
    list.sort_by(|a, b| a.host.cmp(&b.host));
    list.extend(default_view("_", table, tls, generated, now));
    list
}

/// The certificate presented to a client asking for `name` (normalised: lower case, no
/// port), as the proxy chooses it: the name's own (exact, then a one-label wildcard), else the
/// default.
pub fn for_name(
    table: &RoutingTable,
    tls: &TlsState,
    generated: &[u8],
    name: &str,
) -> Option<CertView> {
    let now = now();
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    match table.tls.cert_by_name.get(&name).filter(|&&i| tls.is_served(i)) {
        Some(&i) => {
            let cert = &table.tls.certs[i as usize];
            view(&name, Some(cert.secret.to_string()), false, &cert.chain, now)
        }
        None => default_view(&name, table, tls, generated, now),
    }
}

/// The default certificate: `--default-ssl-certificate` when it loaded, else the generated one.
fn default_view(
    host: &str,
    table: &RoutingTable,
    tls: &TlsState,
    generated: &[u8],
    now: i64,
) -> Option<CertView> {
    match table.tls.default_cert.filter(|&i| tls.is_served(i)) {
        Some(i) => {
            let cert = &table.tls.certs[i as usize];
            view(host, Some(cert.secret.to_string()), true, &cert.chain, now)
        }
        None => view(host, None, true, std::slice::from_ref(&generated.to_vec()), now),
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The view of `chain`'s leaf; `None` if it does not parse (translation parsed it already,
/// so this does not happen for certificates from Secrets).
fn view(
    host: &str,
    secret: Option<String>,
    default: bool,
    chain: &[Vec<u8>],
    now: i64,
) -> Option<CertView> {
    let (_, leaf) = X509Certificate::from_der(chain.first()?).ok()?;
    let validity = leaf.validity();
    let rfc3339 = |t: &x509_parser::time::ASN1Time| {
        t.to_datetime().format(&Rfc3339).unwrap_or_else(|_| t.to_string())
    };
    let names = leaf
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(CertView {
        host: host.to_string(),
        secret,
        default,
        subject: leaf.subject().to_string(),
        names,
        issuer: leaf.issuer().to_string(),
        serial: leaf.raw_serial_as_string(),
        not_before: rfc3339(&validity.not_before),
        not_after: rfc3339(&validity.not_after),
        // Floor division: a certificate expiring in 10 hours has 0 days left, one expired 10
        // hours ago -1.
        days_left: (validity.not_after.timestamp() - now).div_euclid(86_400),
        chain_length: chain.len(),
    })
}
