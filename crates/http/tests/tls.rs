//! The TLS configuration: loading, refusing bad pairs, and replacing the certificate while serving.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use portcullis_http::tls::Tls;
use tokio_rustls::rustls::{self, pki_types::ServerName, RootCertStore};

struct Pair {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

fn pair() -> Pair {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    Pair { cert_pem: made.cert.pem(), key_pem: made.signing_key.serialize_pem(), der: made.cert.der().to_vec() }
}

fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("portcullis-http-{name}-")).tempdir().unwrap()
}

fn write(dir: &Path, cert: &str, key: &str) -> (PathBuf, PathBuf) {
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    (cert_path, key_path)
}

/// A handshake with `tls` as a client trusting `trusted`: the certificate the server presented and the protocol
/// agreed by ALPN.
async fn handshake(tls: &Tls, trusted: &[&Pair]) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut roots = RootCertStore::empty();
    for pair in trusted {
        roots.add(pair.der.clone().into()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tls.acceptor();
    let server = tokio::spawn(async move { acceptor.accept(server_io).await.map(|_| ()) });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let client = connector.connect(ServerName::try_from("localhost").unwrap(), client_io).await.unwrap();
    server.await.unwrap().unwrap();
    let (_, connection) = client.get_ref();
    let presented = connection.peer_certificates().unwrap()[0].to_vec();
    (presented, connection.alpn_protocol().map(<[u8]>::to_vec))
}

#[tokio::test]
async fn a_renewed_certificate_is_served_and_a_mismatched_pair_is_refused() {
    let scratch = temp_dir("renew");
    let dir = scratch.path();
    let (a, b, c) = (pair(), pair(), pair());
    let (cert, key) = write(dir, &a.cert_pem, &a.key_pem);
    let tls = Tls::load(&cert, &key, &["h2", "http/1.1"]).unwrap();
    let all = [&a, &b, &c];
    let (presented, alpn) = handshake(&tls, &all).await;
    assert_eq!(presented, a.der);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert!(!tls.reload().unwrap(), "unchanged files are no change");

    write(dir, &b.cert_pem, &b.key_pem);
    assert!(tls.reload().unwrap());
    assert_eq!(handshake(&tls, &all).await.0, b.der);
    assert!(!tls.reload().unwrap());

    // An ACME client has replaced the certificate, not yet the key: refused once, the previous pair served.
    write(dir, &c.cert_pem, &b.key_pem);
    let refused = tls.reload().unwrap_err().to_string();
    assert!(refused.contains("cert.pem and"), "{refused}");
    assert!(!tls.reload().unwrap(), "a refused pair is reported once");
    assert_eq!(handshake(&tls, &all).await.0, b.der);

    // Half written, then complete.
    write(dir, &c.cert_pem[..c.cert_pem.len() / 2], &c.key_pem);
    assert!(tls.reload().is_err());
    assert_eq!(handshake(&tls, &all).await.0, b.der);
    write(dir, &c.cert_pem, &c.key_pem);
    assert!(tls.reload().unwrap());
    assert_eq!(handshake(&tls, &all).await.0, c.der);

    // A file gone (mid-rename): an error, and the certificate still served.
    std::fs::remove_file(dir.join("key.pem")).unwrap();
    assert!(tls.reload().is_err());
    assert_eq!(handshake(&tls, &all).await.0, c.der);
}

#[tokio::test]
async fn the_watch_picks_up_new_files() {
    let scratch = temp_dir("watch");
    let dir = scratch.path();
    let (a, b) = (pair(), pair());
    let (cert, key) = write(dir, &a.cert_pem, &a.key_pem);
    let tls = Tls::load(&cert, &key, &["http/1.1"]).unwrap();
    let watching = tls.watch(Duration::from_millis(50));
    let (presented, alpn) = handshake(&tls, &[&a, &b]).await;
    assert_eq!((presented, alpn.as_deref()), (a.der.clone(), Some(&b"http/1.1"[..])));
    write(dir, &b.cert_pem, &b.key_pem);
    let mut waited = Duration::ZERO;
    while handshake(&tls, &[&a, &b]).await.0 != b.der {
        assert!(waited < Duration::from_secs(5), "the new certificate was not picked up");
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    drop(tls);
    // The watch ends with the configuration.
    tokio::time::timeout(Duration::from_secs(2), watching).await.unwrap().unwrap();
}

#[test]
fn unusable_files_are_refused_at_start_with_the_file_named() {
    let scratch = temp_dir("refuse");
    let dir = scratch.path();
    let (a, b) = (pair(), pair());
    let cases = [
        ("", a.key_pem.as_str(), "holds no certificate"),
        ("not a certificate", a.key_pem.as_str(), "holds no certificate"),
        (a.cert_pem.as_str(), "", "key.pem"),
        (a.cert_pem.as_str(), b.key_pem.as_str(), "cert.pem and"),
    ];
    for (cert_pem, key_pem, said) in cases {
        let (cert, key) = write(dir, cert_pem, key_pem);
        let refused = Tls::load(&cert, &key, &[]).unwrap_err().to_string();
        assert!(refused.contains(said), "{refused} (wanted {said})");
        assert!(!refused.contains("PRIVATE KEY"), "the key is never echoed: {refused}");
    }
    let missing = Tls::load(&dir.join("none.pem"), &dir.join("key.pem"), &[]).unwrap_err().to_string();
    assert!(missing.contains("none.pem"), "{missing}");
}
