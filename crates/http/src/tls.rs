//! TLS for the server and the gateway: a certificate chain and its key from PEM files, re-read while serving; and
//! the client side of the gateway's connections to HTTPS upstreams ([`client`]).
//!
//! Certificates are renewed every few weeks (ACME clients every 60 days, some every 6), and a renewal must not need
//! a restart: [`Tls::watch`] re-reads both files at an interval and, when their contents changed, serves the new
//! pair from the next handshake on. A pair that cannot be used (a file half written, a key that does not match
//! the certificate, as when an ACME client has replaced one file and not yet the other) is refused with one warning,
//! and the previous pair is still served; it is tried again when the files change again. Handshakes already under
//! way keep the pair they started with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use aws_lc_rs::digest;
use pki_types::pem::PemObject;
use pki_types::{CertificateDer, PrivateKeyDer};
use rustls_platform_verifier::BuilderVerifierExt;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use zeroize::Zeroizing;

/// Why a certificate and key cannot be served.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// A TLS configuration whose certificate can be replaced while serving.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    files: Arc<Files>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("cert", &self.files.cert).field("key", &self.files.key).finish()
    }
}

/// The certificate being served and where it comes from; the TLS configuration's certificate resolver.
#[derive(Debug)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// A digest of the files' contents last loaded or last refused: unchanged files are not parsed again, and a
    /// refused pair is reported once.
    seen: Mutex<[u8; 32]>,
}

impl ResolvesServerCert for Files {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner)))
    }
}

impl Tls {
    /// Loads the certificate chain (PEM, leaf first) and its private key (PEM: PKCS#8, PKCS#1 or SEC1), which
    /// must match. `alpn` lists the application protocols offered, preferred first (`["h2", "http/1.1"]`).
    pub fn load(cert: &Path, key: &Path, alpn: &[&str]) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (cert_pem, key_pem) = read(cert, key)?;
        let certified = certified(cert, &cert_pem, key, &key_pem, &provider)?;
        let files = Arc::new(Files {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider: Arc::clone(&provider),
            current: RwLock::new(Arc::new(certified)),
            seen: Mutex::new(contents_digest(&cert_pem, &key_pem)),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&files) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), files })
    }

    /// The acceptor that performs a connection's handshake.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Reads the files again: `Ok(true)` when they changed and the new pair is now served, `Ok(false)` when they
    /// did not change (or hold a pair already refused), `Err` when they changed to a pair that cannot be used (the
    /// previous one is still served).
    pub fn reload(&self) -> Result<bool, TlsError> {
        self.files.reload()
    }

    /// Spawns a task that calls [`Tls::reload`] every `every`, logging and counting what it finds
    /// (`portcullis_tls_reloads_total{result="loaded"|"refused"}`). It ends once this configuration and every
    /// acceptor made from it are gone.
    pub fn watch(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let files: Weak<Files> = Arc::downgrade(&self.files);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(files) = files.upgrade() else { break };
                let cert = files.cert.clone();
                // Reading files may block (a network file system): not on the runtime's threads.
                match tokio::task::spawn_blocking(move || files.reload()).await {
                    Ok(Ok(true)) => {
                        tracing::info!(cert = %cert.display(), "tls: new certificate loaded");
                        metrics::counter!("portcullis_tls_reloads_total", "result" => "loaded").increment(1);
                    }
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "tls: the certificate files changed but cannot be used; still serving the previous certificate");
                        metrics::counter!("portcullis_tls_reloads_total", "result" => "refused").increment(1);
                    }
                    Err(e) => tracing::warn!(error = %e, "tls: reading the certificate files failed"),
                }
            }
        })
    }
}

impl Files {
    fn reload(&self) -> Result<bool, TlsError> {
        let (cert_pem, key_pem) = read(&self.cert, &self.key)?;
        let digest = contents_digest(&cert_pem, &key_pem);
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if *seen == digest {
                return Ok(false);
            }
            *seen = digest;
        }
        let certified = certified(&self.cert, &cert_pem, &self.key, &key_pem, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
        Ok(true)
    }
}

/// The TLS client for connections to upstreams, offering ALPN `http/1.1`. It trusts the CA certificates in
/// `ca_file` (PEM, one or more) and no others, as an internal CA calls for; without one, the system's trust store
/// (on Linux, `/etc/ssl/certs` and the `SSL_CERT_FILE`/`SSL_CERT_DIR` it names). Server names are checked as
/// ever: an upstream must present a certificate for the host its URL names.
pub fn client(ca_file: Option<&Path>) -> Result<TlsConnector, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?;
    let builder = match ca_file {
        Some(path) => {
            let cannot = |e: &dyn std::fmt::Display| TlsError(format!("{}: {e}", path.display()));
            let pem = std::fs::read(path).map_err(|e| cannot(&e))?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                roots.add(cert.map_err(|e| cannot(&e))?).map_err(|e| cannot(&e))?;
            }
            if roots.is_empty() {
                return Err(TlsError(format!("{} holds no certificate", path.display())));
            }
            builder.with_root_certificates(roots)
        }
        None => builder.with_platform_verifier().map_err(|e| TlsError(format!("the system's trust store: {e}")))?,
    };
    let mut config = builder.with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

fn read(cert: &Path, key: &Path) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|e| TlsError(format!("{}: {e}", cert.display())))?;
    let key_pem = Zeroizing::new(std::fs::read(key).map_err(|e| TlsError(format!("{}: {e}", key.display())))?);
    Ok((cert_pem, key_pem))
}

fn contents_digest(cert_pem: &[u8], key_pem: &[u8]) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(&(cert_pem.len() as u64).to_be_bytes());
    context.update(cert_pem);
    context.update(key_pem);
    let mut out = [0; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

fn certified(
    cert: &Path,
    cert_pem: &[u8],
    key: &Path,
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(TlsError(format!("{} holds no certificate", cert.display())));
    }
    let private = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError(format!("{}: {e}", key.display())))?;
    CertifiedKey::from_der(chain, private, provider)
        .map_err(|e| TlsError(format!("{} and {}: {e}", cert.display(), key.display())))
}
