//! rustls configurations for log shipping, all on the ring provider, TLS
//! 1.2 and 1.3 only. Both sides verify the other against our CA alone (no
//! system roots): a shipping peer is one of ours or nobody.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use tokio_rustls::rustls::{
    self,
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore,
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
/// `ca` required from every peer.
pub fn server_config(ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
        .build()
        .context("cannot build the client certificate verifier")?;
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
