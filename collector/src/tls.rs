//! TLS for the agents' gRPC port (rustls): a certificate and key, and optionally a client CA that agents'
//! certificates must chain to (mutual TLS). The files are checked every 10 seconds and a changed set is
//! loaded for new connections without a restart; a set that does not load is logged and the last good one
//! kept.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How often the files are checked for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Require client certificates that chain to this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    fn paths(&self) -> Vec<&PathBuf> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()].into_iter().flatten().collect()
    }

    fn stamps(&self) -> Vec<Option<SystemTime>> {
        self.paths().iter().map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).collect()
    }

    /// Loads the files into a server configuration; errors name the file and the problem.
    pub fn load(&self) -> Result<Arc<ServerConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("--tls-cert {}: {e}", self.cert.display()))?;
        if certs.is_empty() {
            return Err(format!("--tls-cert {}: no certificate in it", self.cert.display()));
        }
        let key =
            PrivateKeyDer::from_pem_file(&self.key).map_err(|e| format!("--tls-key {}: {e}", self.key.display()))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in
                    CertificateDer::pem_file_iter(ca).map_err(|e| format!("--tls-client-ca {}: {e}", ca.display()))?
                {
                    let c = c.map_err(|e| format!("--tls-client-ca {}: {e}", ca.display()))?;
                    roots.add(c).map_err(|e| format!("--tls-client-ca {}: {e}", ca.display()))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| format!("--tls-client-ca {}: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| format!("--tls-cert/--tls-key {} {}: {e}", self.cert.display(), self.key.display()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The configuration in force, reloaded when its files change.
pub struct Reloading {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

impl Reloading {
    pub fn new(files: TlsFiles) -> Result<Arc<Self>, String> {
        let config = files.load()?;
        let stamps = files.stamps();
        Ok(Arc::new(Self { files, current: RwLock::new(config), stamps: Mutex::new(stamps) }))
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Reloads when a file changed: `Some(Ok)` reloaded, `Some(Err)` kept the old one, `None` unchanged.
    pub fn reload_if_changed(&self) -> Option<Result<(), String>> {
        let now = self.files.stamps();
        let mut stamps = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        if *stamps == now {
            return None;
        }
        *stamps = now;
        Some(self.files.load().map(|c| *self.current.write().unwrap_or_else(|e| e.into_inner()) = c))
    }
}

/// Accepts TCP connections on `listener` (at most `admission`'s at once) and hands on the ones whose TLS
/// handshake succeeds within `timeout`, each then given `timeout` again for its HTTP/2 preface; a failed
/// handshake is logged and dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<Reloading>,
    admission: crate::listen::Admission,
    timeout: Duration,
    metrics: Arc<crate::metrics::Metrics>,
) -> tokio_stream::wrappers::ReceiverStream<Result<crate::listen::Admitted<TlsStream<TcpStream>>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer, permit) = admission.accept(&listener).await;
            if tx.is_closed() {
                return;
            }
            let (acceptor, tx, metrics) = (tls.acceptor(), tx.clone(), metrics.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(crate::listen::Admitted::h2(stream, permit, timeout, metrics))).await;
                    }
                    Ok(Err(e)) => tracing::warn!(%peer, error = %e, "refused a gRPC connection: TLS handshake failed"),
                    Err(_) => {
                        metrics.limit_breach("handshake");
                        tracing::warn!(%peer, ?timeout, "refused a gRPC connection: no TLS handshake in time")
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
