//! Hostile first bytes on the HTTPS port, raw over TCP: garbage, plain HTTP, truncated and
//! oversized ClientHellos, hellos trickled or never finished. Each costs its own connection
//! only: it is closed (at the latest after the 10 s bound), nothing is answered for a hello
//! over 64 KiB, and valid clients on other connections are served meanwhile by the same single
//! worker. Run with and without `--enable-ssl-passthrough` (a passed-through host must never
//! receive what Sluice refused).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tls::{self, Ca, ClientOpts, Pem};
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

const WEB: &str = "web.example.com";
const PASS: &str = "pass.example.com";
/// Sluice's bound on the wait for a ClientHello (and for the rest of the handshake).
const HELLO_BOUND: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn server_config(pem: &Pem) -> rustls::ServerConfig {
    let chain = CertificateDer::pem_slice_iter(pem.cert.as_bytes()).collect::<Result<_, _>>();
    let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap();
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain.unwrap(), key)
        .unwrap()
}

/// `web.example.com` terminated by Sluice (to the echo `app`); with `passthrough`, also
/// `pass.example.com` passed through to the TLS echo `inside`. One worker: a connection that
/// blocked it would starve every other client.
async fn start(passthrough: bool, env: Option<&str>) -> (Sluice, Manifests) {
    let ca = Ca::new("Test CA");
    let app = echo("app").await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc-app.yaml", &service("app", &[app]));
    m.write("secret.yaml", &tls::tls_secret("web-tls", &ca.server(&[WEB])));
    let web = ingress("web", WEB, &[("/", "Prefix", "app")], &[]);
    m.write("ing-web.yaml", &with_tls(web, &[(&[WEB], Some("web-tls"))]));
    let inside = sluice::echo::spawn_tls(
        "127.0.0.1:0".parse().unwrap(),
        "inside",
        server_config(&ca.server(&[PASS])),
    )
    .await
    .unwrap();
    m.write("svc-inside.yaml", &service("inside", &[inside]));
    let annotation = [("nginx.ingress.kubernetes.io/ssl-passthrough", "true")];
    let flags: &[&str] = if passthrough { &["--enable-ssl-passthrough"] } else { &[] };
    if passthrough {
        m.write("ing-pass.yaml", &ingress("pass", PASS, &[("/", "Prefix", "inside")], &annotation));
    }
    let s = match env {
        None => Sluice::start_workers(m.path(), 1, flags),
        Some(filter) => Sluice::start_with_env(m.path(), flags, &[("RUST_LOG", filter)]),
    };
    (s, m)
}

/// Valid clients, several at once: HTTP/1.1 and h2 on the terminated host, the passthrough
/// host when it is one, and plain HTTP.
async fn valid_clients_are_served(s: &Sluice, passthrough: bool) {
    let h1 = tls::get(s.https, WEB, "/h1");
    let h2 = async {
        let req = http::Request::get(format!("https://{WEB}/h2"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        tls::request(s.https, &ClientOpts::sni(WEB).h2(), req).await.expect("an h2 exchange")
    };
    let pass = async {
        match passthrough {
            true => Some(tls::get(s.https, PASS, "/pass").await),
            false => None,
        }
    };
    let url = s.url("/plain");
    let plain = get(&url, Some(WEB));
    let ((r1, seen1), (r2, seen2), pass, r4) = tokio::join!(h1, h2, pass, plain);
    assert_eq!((r1.status.as_u16(), seen1.cn.as_str(), r1.backend()), (200, WEB, "app".into()));
    assert_eq!((r2.status.as_u16(), seen2.alpn.as_deref()), (200, Some(&b"h2"[..])));
    if let Some((r3, seen3)) = pass {
        assert_eq!(
            (r3.status.as_u16(), seen3.cn.as_str(), r3.backend()),
            (200, PASS, "inside".into())
        );
    }
    assert_eq!(r4.status, 308, "plain HTTP is redirected to HTTPS");
}

/// A raw connection to `addr` that sends `bytes` (ignoring write errors: the server may
/// close first), optionally half-closes, and then keeps the connection open.
async fn hostile(addr: SocketAddr, bytes: Vec<u8>, half_close: bool) -> OwnedReadHalf {
    let (rd, mut wr) = TcpStream::connect(addr).await.unwrap().into_split();
    tokio::spawn(async move {
        if wr.write_all(&bytes).await.is_ok() && half_close {
            let _ = wr.shutdown().await;
        }
        // Keep the write side alive until the test ends.
        std::future::pending::<()>().await;
        drop(wr);
    });
    rd
}

/// Reads until the server closes `rd` (end of stream or reset) and returns what came; fails
/// if it is still open after `within`.
async fn closed_within(mut rd: OwnedReadHalf, within: Duration, what: &str) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await {
            Err(_) => panic!("{what}: still open after {within:?} ({} bytes came)", got.len()),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The first flight of a real client (rustls): one record holding a ClientHello for `sni`.
fn client_hello(sni: &str) -> Vec<u8> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    assert_eq!(hello[0], 0x16, "a handshake record");
    assert_eq!(hello.len(), 5 + u16::from_be_bytes([hello[3], hello[4]]) as usize, "one record");
    hello
}

/// The ClientHello handshake message of [`client_hello`] with an extra, ignorable (GREASE)
/// extension of `pad` bytes (at most what the extensions' 16-bit length allows): still a
/// hello any server accepts.
fn padded_hello_message(sni: &str, pad: usize) -> Vec<u8> {
    let record = client_hello(sni);
    let mut msg = record[5..].to_vec();
    let body = 4;
    let mut pos = body + 2 + 32; // version, random
    pos += 1 + msg[pos] as usize; // session id
    pos += 2 + u16::from_be_bytes([msg[pos], msg[pos + 1]]) as usize; // cipher suites
    pos += 1 + msg[pos] as usize; // compression methods
    let ext_len = u16::from_be_bytes([msg[pos], msg[pos + 1]]) as usize;
    assert_eq!(pos + 2 + ext_len, msg.len(), "the extensions end the hello");
    let pad = pad.min(usize::from(u16::MAX) - 4 - ext_len);
    let new_len = (ext_len + 4 + pad) as u16;
    msg[pos..pos + 2].copy_from_slice(&new_len.to_be_bytes());
    msg.extend_from_slice(&[0x4a, 0x4a]);
    msg.extend_from_slice(&(pad as u16).to_be_bytes());
    msg.extend(std::iter::repeat_n(0u8, pad));
    let hs_len = (msg.len() - 4) as u32;
    msg[1..4].copy_from_slice(&hs_len.to_be_bytes()[1..]);
    msg
}

/// `message` as handshake records of at most `fragment` bytes each.
fn records(message: &[u8], fragment: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in message.chunks(fragment) {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

// ---- Malformed and truncated first bytes: dropped at once.

async fn malformed_first_bytes_are_dropped(passthrough: bool) {
    let (mut s, _m) = start(passthrough, None).await;
    let hello = client_hello(if passthrough { PASS } else { WEB });
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("garbage", (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect(), false),
        ("a handshake record of junk", vec![0x16, 3, 1, 0, 6, 0xff, 0, 0, 2, 0xde, 0xad], false),
        ("application data first", vec![0x17, 3, 3, 0, 4, 1, 2, 3, 4], false),
        ("plain HTTP", format!("GET / HTTP/1.1\r\nHost: {WEB}\r\n\r\n").into_bytes(), false),
        ("a record header, then close", vec![0x16, 3, 1, 2, 0], true),
        ("half a hello, then close", hello[..hello.len() / 2].to_vec(), true),
        ("nothing, then close", vec![], true),
    ];
    let mut open = Vec::new();
    for (what, bytes, half_close) in cases {
        open.push((what, hostile(s.https, bytes, half_close).await));
    }
    valid_clients_are_served(&s, passthrough).await;
    for (what, rd) in open {
        let got = closed_within(rd, WAIT, what).await;
        // NGINX answers plain HTTP with "400 The plain HTTP request was sent to HTTPS
        // port"; Sluice closes. Either way no handshake, no routing.
        assert!(got.is_empty() || got.starts_with(b"HTTP/1.1 400"), "{what}: {got:?}");
    }
    assert!(s.running());
    valid_clients_are_served(&s, passthrough).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_first_bytes_are_dropped_without_passthrough() {
    malformed_first_bytes_are_dropped(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_first_bytes_are_dropped_with_passthrough() {
    malformed_first_bytes_are_dropped(true).await;
}

// ---- Oversized hellos: never answered (nor passed through).

async fn oversized_hellos_are_dropped(passthrough: bool) {
    let (mut s, _m) = start(passthrough, None).await;
    let host = if passthrough { PASS } else { WEB };

    // The control: a hello in 1-byte records is unusual but valid, and answered (by Sluice,
    // or by the backend through the splice) as long as it stays under 64 KiB on the wire.
    let small = records(&padded_hello_message(host, 2_000), 1);
    assert!(small.len() < 64 * 1024);
    let mut rd = hostile(s.https, small, false).await;
    let mut first = [0u8; 1];
    tokio::time::timeout(WAIT, rd.read_exact(&mut first)).await.unwrap().unwrap();
    assert_eq!(first[0], 0x16, "a ServerHello answers the small hello");

    let cases: Vec<(&str, Vec<u8>)> = vec![
        // The same valid hello, over 64 KiB once fragmented: Sluice stops reading.
        ("a valid hello in 72 KB of records", records(&padded_hello_message(host, 12_000), 1)),
        // A hello bigger than 64 KiB itself (its extensions as long as they can be), in
        // full-size records.
        ("a 64 KiB extension", records(&padded_hello_message(host, usize::MAX), 16_384)),
        // A handshake header claiming 16 MiB, then a megabyte of it.
        ("a 16 MiB claim", {
            let mut msg = vec![0x01, 0xff, 0xff, 0xff];
            msg.extend(std::iter::repeat_n(0u8, 1 << 20));
            records(&msg, 16_384)
        }),
    ];
    let mut open = Vec::new();
    for (what, bytes) in cases {
        assert!(bytes.len() > 64 * 1024, "{what}");
        open.push((what, hostile(s.https, bytes, false).await));
    }
    valid_clients_are_served(&s, passthrough).await;
    for (what, rd) in open {
        let got = closed_within(rd, WAIT, what).await;
        assert!(got.is_empty(), "{what}: {} bytes answered", got.len());
    }
    assert!(s.running());
    valid_clients_are_served(&s, passthrough).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_hellos_are_dropped_without_passthrough() {
    oversized_hellos_are_dropped(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_hellos_are_dropped_with_passthrough() {
    oversized_hellos_are_dropped(true).await;
}

// ---- Slow hellos: dropped after the bound, while everybody else is served.

/// Sends `bytes` one at a time, `pause` apart, until the server closes the connection.
async fn trickle(addr: SocketAddr, bytes: Vec<u8>, pause: Duration) -> OwnedReadHalf {
    let (rd, mut wr) = TcpStream::connect(addr).await.unwrap().into_split();
    tokio::spawn(async move {
        for b in bytes {
            if wr.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        std::future::pending::<()>().await;
        drop(wr);
    });
    rd
}

async fn slow_hellos_are_dropped_after_the_bound_in(passthrough: bool) {
    let (mut s, _m) = start(passthrough, None).await;
    let host = if passthrough { PASS } else { WEB };
    let hello = client_hello(host);
    let opened = Instant::now();
    let mut open: Vec<(&str, OwnedReadHalf)> = Vec::new();
    // A real hello, one byte every 200 ms: it would take minutes. The bound is on the whole
    // hello, not on silence, so trickling does not extend it.
    open.push((
        "a trickled hello",
        trickle(s.https, hello.clone(), Duration::from_millis(200)).await,
    ));
    // A record header and part of the hello, then silence.
    open.push((
        "a stalled hello",
        hostile(s.https, hello[..hello.len() / 3].to_vec(), false).await,
    ));
    // Connected, then silence.
    open.push(("a silent client", hostile(s.https, vec![], false).await));
    // A whole hello for the terminated host, then never the rest of the handshake: bounded
    // the same way.
    let web_hello = client_hello(WEB);
    open.push(("an unfinished handshake", hostile(s.https, web_hello, false).await));

    // While all of them wait, the one worker serves everybody else.
    valid_clients_are_served(&s, passthrough).await;
    valid_clients_are_served(&s, passthrough).await;
    let served_by = opened.elapsed();

    let mut results = Vec::new();
    for (what, mut rd) in open {
        // Still open when the valid clients were done (unless the machine was so slow that
        // the bound had nearly passed): they were dropped by the bound, not at once.
        if served_by < HELLO_BOUND / 2 {
            let mut probe = [0u8; 1];
            // Polled once: ready only if something (or the end) has arrived.
            let still_open = match tokio::time::timeout(Duration::ZERO, rd.peek(&mut probe)).await {
                Err(_) => true,
                // Only the unfinished handshake has been answered (its ServerHello).
                Ok(Ok(n)) => n > 0 && what == "an unfinished handshake",
                Ok(Err(_)) => false,
            };
            assert!(still_open, "{what}: closed before the bound");
        }
        results.push(tokio::spawn(async move {
            (what, closed_within(rd, HELLO_BOUND + WAIT, what).await)
        }));
    }
    for r in results {
        let (what, got) = r.await.unwrap();
        if what == "an unfinished handshake" {
            assert_eq!(got.first(), Some(&0x16), "{what}: the server's first flight came");
        } else {
            assert!(got.is_empty(), "{what}: {} bytes answered", got.len());
        }
    }
    assert!(s.running());
    valid_clients_are_served(&s, passthrough).await;
}

/// Sluice logs why it dropped the stalled connection: the bound fired.
async fn the_timeout_is_logged() {
    let (s, _m) = start(true, Some("info,sluice_proxy=debug")).await;
    let slow = hostile(s.https, vec![0x16, 3, 1, 2, 0], false).await;
    let remote = format!("127.0.0.1:{}", slow.local_addr().unwrap().port());
    closed_within(slow, HELLO_BOUND + WAIT, "a stalled hello").await;
    let line = s.wait_stderr(|l| l.contains(&remote) && l.contains("no usable ClientHello"));
    assert!(line.contains("no ClientHello within 10s"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_hellos_are_dropped_after_the_bound() {
    // The one test that waits for the bound: every slow case at once, with and without
    // passthrough.
    tokio::join!(
        slow_hellos_are_dropped_after_the_bound_in(false),
        slow_hellos_are_dropped_after_the_bound_in(true),
        the_timeout_is_logged(),
    );
}

// ---- The reasons, as logged: each check is the one that fired (the timeout: above).

#[tokio::test(flavor = "multi_thread")]
async fn each_drop_is_logged_with_its_reason() {
    let (s, _m) = start(true, Some("info,sluice_proxy=debug")).await;
    let port = |rd: &OwnedReadHalf| rd.local_addr().unwrap().port();
    let big = hostile(s.https, records(&padded_hello_message(WEB, 12_000), 1), false).await;
    let junk = hostile(s.https, b"GET / HTTP/1.1\r\n\r\n".to_vec(), false).await;
    let cut = hostile(s.https, vec![0x16, 3, 1, 2, 0], true).await;
    let expected = [
        (port(&big), "ClientHello larger than 65536 bytes"),
        (port(&junk), "malformed ClientHello"),
        (port(&cut), "closed before a ClientHello"),
    ];
    let reads = [big, junk, cut].map(|rd| closed_within(rd, WAIT, "a hostile hello"));
    futures_util::future::join_all(reads).await;
    for (port, reason) in expected {
        let remote = format!("127.0.0.1:{port}");
        let line = s.wait_stderr(|l| l.contains(&remote) && l.contains("no usable ClientHello"));
        // Over 64 KiB, Sluice's count of bytes read or rustls's 64 KiB handshake buffer
        // (whichever a read crosses first) ends it.
        let also = (port == expected[0].0).then_some("message buffer full");
        assert!(
            line.contains(reason) || also.is_some_and(|a| line.contains(a)),
            "{reason}: {line}"
        );
    }
}
