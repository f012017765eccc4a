//! TLS certificate of an attacker's server: who it claims to be, who
//! signed it, and the sha256 of its DER (the value that links servers
//! reusing one certificate across addresses).
//!
//! Why an accept-any verifier: this is *collection*, not trust. Attackers'
//! servers present self-signed, expired or mismatched certificates, and
//! those are exactly the ones worth recording; nothing received here is
//! ever trusted or used to send data.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use x509_parser::prelude::*;

use super::ProbeError;
use crate::events::rfc5424::{cut_chars, MAX_NAME_CHARS, TRUNCATED_PARAM};

/// SANs kept of one certificate (a server may send thousands).
pub const MAX_SANS: usize = 64;

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client config that accepts any certificate (ring provider, TLS 1.2 and 1.3).
pub fn collecting_client_config() -> Result<rustls::ClientConfig, ProbeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::Protocol(format!("TLS config: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    Ok(config)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn rfc3339(t: &ASN1Time) -> String {
    t.to_datetime().format(&::time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The fields recorded from one DER certificate; the hash is sha256(DER).
pub fn describe(der: &[u8]) -> Result<(String, Map<String, Value>), ProbeError> {
    let hash = hex(&Sha256::digest(der));
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| ProbeError::Protocol(format!("unparseable certificate: {e}")))?;
    let cn = |name: &X509Name<'_>| name.iter_common_name().next().and_then(|a| a.as_str().ok()).map(str::to_string);
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push(d.to_string()),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => sans.push(std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string()),
                    16 => {
                        let mut b = [0u8; 16];
                        b.copy_from_slice(ip);
                        sans.push(std::net::Ipv6Addr::from(b).to_string())
                    }
                    _ => {}
                },
                GeneralName::RFC822Name(m) => sans.push(format!("email:{m}")),
                _ => {}
            }
        }
    }
    // Every name in the certificate is the attacker's own text: cut to
    // MAX_NAME_CHARS and named in `truncated` (the formatter adds that to
    // the line's marker).
    let mut truncated: Vec<&str> = Vec::new();
    let mut capped = |field: &'static str, text: String| match cut_chars(&text, MAX_NAME_CHARS) {
        Some(cut) => {
            if !truncated.contains(&field) {
                truncated.push(field);
            }
            cut.to_string()
        }
        None => text,
    };
    let subject = capped("subject", cert.subject().to_string());
    let subject_cn = cn(cert.subject()).map(|c| capped("subject_cn", c));
    let issuer = capped("issuer", cert.issuer().to_string());
    let issuer_cn = cn(cert.issuer()).map(|c| capped("issuer_cn", c));
    let many_sans = sans.len() > MAX_SANS;
    let sans: Vec<String> = sans.into_iter().take(MAX_SANS).map(|s| capped("sans", s)).collect();
    if many_sans && !truncated.contains(&"sans") {
        truncated.push("sans");
    }
    let validity = cert.validity();
    // Self-signed as attackers' tooling makes them: issuer == subject.
    // (Checking the signature too would only re-confirm it for the same names.)
    let self_signed = cert.subject().as_raw() == cert.issuer().as_raw();
    let details = json!({
        "sha256": hash,
        "subject": subject,
        "subject_cn": subject_cn,
        "issuer": issuer,
        "issuer_cn": issuer_cn,
        "sans": sans,
        "not_before": validity.not_before.timestamp(),
        "not_after": validity.not_after.timestamp(),
        "not_before_rfc3339": rfc3339(&validity.not_before),
        "not_after_rfc3339": rfc3339(&validity.not_after),
        "self_signed": self_signed,
        "serial": cert.raw_serial_as_string(),
    });
    let mut details = details.as_object().cloned().unwrap_or_default();
    if !truncated.is_empty() {
        details.insert(TRUNCATED_PARAM.into(), Value::String(truncated.join(",")));
    }
    Ok((hash, details))
}

/// Handshake with `addr` (SNI `host` when it is a name) and describe the leaf certificate.
pub async fn probe(
    addr: SocketAddr,
    host: &str,
    timeout: Duration,
) -> Result<(String, Map<String, Value>), ProbeError> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(collecting_client_config()?));
    let name = ServerName::try_from(host.to_string()).unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()));
    let work = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let tls =
            connector.connect(name, tcp).await.map_err(|e| ProbeError::Protocol(format!("TLS handshake: {e}")))?;
        let (_, session) = tls.get_ref();
        let leaf = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .ok_or_else(|| ProbeError::Protocol("server sent no certificate".into()))?;
        let version = session.protocol_version().map(|v| format!("{v:?}"));
        Ok::<_, ProbeError>((leaf, version))
    };
    let (leaf, version) = tokio::time::timeout(timeout, work).await.map_err(|_| ProbeError::Timeout)??;
    let (hash, mut details) = describe(&leaf)?;
    if let Some(v) = version {
        details.insert("tls_version".into(), Value::String(v));
    }
    Ok((hash, details))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(cn: &str, sans: Vec<String>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificates_names_are_capped_and_named_in_truncated() {
        let cn = format!("evil.test\n<134>1 {}", "x".repeat(1000));
        let sans: Vec<String> = (0..100).map(|i| format!("{i}.{}.test", "s".repeat(300))).collect();
        let (_, d) = describe(&self_signed(&cn, sans)).unwrap();
        assert_eq!(d["subject_cn"].as_str().unwrap().chars().count(), MAX_NAME_CHARS);
        assert!(d["subject_cn"].as_str().unwrap().starts_with("evil.test\n<134>1 xx"));
        assert_eq!(d["issuer_cn"], d["subject_cn"]);
        assert_eq!(d["subject"].as_str().unwrap().chars().count(), MAX_NAME_CHARS);
        let kept = d["sans"].as_array().unwrap();
        assert_eq!(kept.len(), MAX_SANS);
        assert!(kept.iter().all(|s| s.as_str().unwrap().chars().count() == MAX_NAME_CHARS));
        assert_eq!(d["truncated"], "subject,subject_cn,issuer,issuer_cn,sans");

        let (_, d) = describe(&self_signed("ok.test", vec!["ok.test".into()])).unwrap();
        assert_eq!((d["subject_cn"].as_str(), d.get("truncated")), (Some("ok.test"), None));
    }
}
