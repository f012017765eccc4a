//! rustls configurations for log shipping, all on the ring provider, TLS
//! 1.2 and 1.3 only. Both sides verify the other against our CA alone (no
//! system roots): a shipping peer is one of ours or nobody. The listener
//! also refuses a certificate on the CA's revocation list (`crl.pem`, see
//! [`RevocationCheckingVerifier`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context};
use tokio_rustls::rustls::{
    self,
    client::danger::HandshakeSignatureValid,
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
    server::WebPkiClientVerifier,
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

pub fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice()).collect::<Result<_, _>>()?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in {}", path.display());
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())?.ok_or_else(|| anyhow!("no private key in {}", path.display()))
}

fn roots(ca: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots.add(cert).context("bad CA certificate")?;
    }
    Ok(roots)
}

/// The listener: our certificate, and a client certificate chaining to
/// `ca` and not revoked by `crl` (when that file exists) required from
/// every peer.
pub fn server_config(ca: &Path, cert: &Path, key: &Path, crl: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let verifier = Arc::new(RevocationCheckingVerifier::new(roots(ca)?, crl.to_path_buf()));
    rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .context("the listener certificate and key do not match")
}

/// The forwarder: trust only `ca`, present our certificate.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<rustls::ClientConfig> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
        .context("the forwarder certificate and key do not match")
}

/// The subject CN of a DER certificate.
pub fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_owned();
    Some(cn)
}

/// What identifies one version of the revocation list file: `ca revoke`
/// replaces it by rename (new inode); an edit in place changes size or
/// modification time. `None`: no file.
type FileStamp = Option<(u64, u64, std::time::SystemTime)>;

/// The WebPKI verifier for one version of the list, or why there is none.
type LoadedVerifier = Result<Arc<dyn ClientCertVerifier>, String>;

fn stamp(path: &Path) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.len(), meta.modified().ok()?))
}

/// rustls' WebPKI client verifier, rebuilt whenever the revocation list
/// file changes (checked at every handshake: one `stat`), so `decnet ca
/// revoke` takes effect at a forwarder's next connection without a
/// listener restart. A refused revoked certificate is logged with its CN
/// and serial. An unreadable list refuses everyone until it is fixed:
/// failing open would quietly readmit what was revoked.
#[derive(Debug)]
pub struct RevocationCheckingVerifier {
    roots: Arc<RootCertStore>,
    hints: Vec<DistinguishedName>,
    crl: PathBuf,
    current: Mutex<(FileStamp, LoadedVerifier)>,
}

impl RevocationCheckingVerifier {
    pub fn new(roots: RootCertStore, crl: PathBuf) -> RevocationCheckingVerifier {
        let roots = Arc::new(roots);
        let hints = roots.subjects();
        let first = stamp(&crl);
        let inner = Self::build(&roots, &crl, first.is_some());
        RevocationCheckingVerifier { roots, hints, crl, current: Mutex::new((first, inner)) }
    }

    fn build(roots: &Arc<RootCertStore>, crl: &Path, present: bool) -> LoadedVerifier {
        let mut builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
        if present {
            let loaded = std::fs::read(crl)
                .map_err(|e| e.to_string())
                .and_then(|pem| {
                    rustls_pemfile::crls(&mut pem.as_slice()).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())
                })
                .and_then(|crls| if crls.is_empty() { Err("no CRL in it".to_owned()) } else { Ok(crls) });
            match loaded {
                Ok(crls) => {
                    tracing::info!(crl = %crl.display(), "revocation list loaded");
                    // Only our CA issues, and the CA itself is the trust anchor:
                    // the forwarder's own certificate is all there is to check.
                    builder = builder.with_crls(crls).only_check_end_entity_revocation();
                }
                Err(e) => {
                    let e = format!("cannot read the revocation list {}: {e}", crl.display());
                    tracing::error!("{e}; refusing every forwarder until it is fixed");
                    return Err(e);
                }
            }
        }
        match builder.build() {
            Ok(v) => Ok(v),
            Err(e) => {
                let e = format!("the revocation list {} is not usable: {e}", crl.display());
                tracing::error!("{e}; refusing every forwarder until it is fixed");
                Err(e)
            }
        }
    }

    /// The verifier for the revocation list as it is now.
    fn verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        let now = stamp(&self.crl);
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.0 != now {
            current.1 = Self::build(&self.roots, &self.crl, now.is_some());
            current.0 = now;
        }
        current.1.clone().map_err(rustls::Error::General)
    }
}

impl ClientCertVerifier for RevocationCheckingVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let result = self.verifier()?.verify_client_cert(end_entity, intermediates, now);
        if let Err(rustls::Error::InvalidCertificate(CertificateError::Revoked)) = &result {
            let cn = common_name(end_entity).unwrap_or_else(|| "(no CN)".into());
            let serial = x509_parser::parse_x509_certificate(end_entity.as_ref())
                .map(|(_, c)| c.raw_serial().iter().map(|b| format!("{b:02x}")).collect::<String>())
                .unwrap_or_default();
            tracing::warn!(%cn, %serial, crl = %self.crl.display(), "refused a revoked forwarder certificate");
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}
