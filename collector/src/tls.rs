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
                builder.with_client_cert_verifier(Arc::new(ClientAuthOnly(verifier)))
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

/// A client certificate must say it is one: webpki takes a certificate without an extended key usage for any
/// purpose, so a server's certificate from the same CA (or one made with no usage at all) would pass for an
/// agent's. This verifier asks, after the chain is verified, for the clientAuth extended key usage.
#[derive(Debug)]
struct ClientAuthOnly(Arc<dyn rustls::server::danger::ClientCertVerifier>);

/// id-kp-clientAuth (1.3.6.1.5.5.7.3.2), as DER content.
const CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

impl rustls::server::danger::ClientCertVerifier for ClientAuthOnly {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self.0.verify_client_cert(end_entity, intermediates, now)?;
        match extended_key_usages(end_entity) {
            Some(usages) if usages.contains(&CLIENT_AUTH) => Ok(verified),
            _ => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                NotForClients,
            ))))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Why a client certificate was refused; rustls logs it by `Debug`, so that says it in words.
#[derive(thiserror::Error)]
#[error("the client certificate has no clientAuth extended key usage (extendedKeyUsage=clientAuth)")]
struct NotForClients;

impl std::fmt::Debug for NotForClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// One DER element of `input`: its tag, its content and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        n if n < 0x80 => (usize::from(n), rest),
        n => {
            let bytes = usize::from(n & 0x7f);
            if bytes == 0 || bytes > 4 || rest.len() < bytes {
                return None;
            }
            (rest[..bytes].iter().fold(0usize, |l, &b| (l << 8) | usize::from(b)), &rest[bytes..])
        }
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The extended key usages of an X.509 certificate (the OIDs' DER content), `None` when it has none.
fn extended_key_usages(cert: &[u8]) -> Option<Vec<&[u8]>> {
    let (_, cert, _) = der(cert)?;
    let (_, mut tbs, _) = der(cert)?;
    while let Some((tag, content, rest)) = der(tbs) {
        tbs = rest;
        // [3] EXPLICIT Extensions: SEQUENCE OF Extension { extnID, critical BOOLEAN DEFAULT FALSE, extnValue }
        if tag != 0xa3 {
            continue;
        }
        let (_, mut extensions, _) = der(content)?;
        while let Some((_, extension, rest)) = der(extensions) {
            extensions = rest;
            let (_, id, value) = der(extension)?;
            if id != [0x55, 0x1d, 0x25] {
                continue;
            }
            let (tag, mut value, after) = der(value)?;
            if tag == 0x01 {
                value = der(after)?.1;
            }
            let (_, mut purposes, _) = der(value)?;
            let mut out = Vec::new();
            while let Some((_, oid, rest)) = der(purposes) {
                out.push(oid);
                purposes = rest;
            }
            return Some(out);
        }
    }
    None
}
