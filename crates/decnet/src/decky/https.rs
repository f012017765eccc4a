//! HTTPS honeypot: the HTTP honeypot ([`super::http`]) behind a real TLS
//! handshake (rustls), with a self-signed certificate made for the decky
//! when its first `https` listener opens.
//!
//! Why a real handshake: scanners and the sniffer's JA3/JA4 need a real
//! ClientHello answered by a real ServerHello, and `openssl s_client` or
//! curl must get as far as the HTTP layer, where the usual `request` and
//! credential lines are written. The certificate looks like an internal
//! server's (CN `<decky>.corp.local`, an organisation, a validity window
//! that started weeks ago and lasts about a year) instead of rcgen's
//! defaults, which name the tool and span 1975–4096.
//!
//! Attacker input before HTTP: the handshake gets `limits.idle` (capped at
//! [`HANDSHAKE_TIMEOUT`]) and the session byte budget applies to the raw
//! TLS bytes; a failed handshake (garbage, plain HTTP, a timeout) is one
//! `tls_handshake_failed` line with a bounded reason and ends only its own
//! session.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpStream;

use super::event::{self, ByteCount, SharedSession};
use super::io::{End, Metered};
use crate::events::rfc5424::Severity;

/// Longest a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Characters of a handshake error kept in its log line.
const MAX_REASON: usize = 200;

/// Organisations a decky's certificate may name, picked by the decky's
/// name so one decky always claims the same one.
const ORGANISATIONS: &[&str] =
    &["Northwind Traders", "Contoso Ltd", "Fabrikam Inc", "Tailspin Toys", "Litware Inc", "Adventure Works"];

/// The certificate's subject CN (also a SAN) for `decky`.
pub fn common_name(decky: &str) -> String {
    format!("{decky}.corp.local")
}

fn pick(decky: &str) -> u64 {
    // FNV-1a: a stable choice per name, not a security property.
    decky.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3))
}

/// A self-signed certificate and key (DER) for `decky`.
pub fn certificate(decky: &str) -> Result<(Vec<u8>, Vec<u8>), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let cn = common_name(decky);
    let mut params = rcgen::CertificateParams::new(vec![cn.clone(), decky.to_string()])?;
    let h = pick(decky);
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CountryName, "US");
    dn.push(rcgen::DnType::OrganizationName, ORGANISATIONS[(h % ORGANISATIONS.len() as u64) as usize]);
    dn.push(rcgen::DnType::OrganizationalUnitName, "IT");
    dn.push(rcgen::DnType::CommonName, cn);
    params.distinguished_name = dn;
    // Issued 30–300 days ago, valid 397 days (what public CAs issue).
    let issued = time::OffsetDateTime::now_utc() - time::Duration::days(30 + (h >> 8) as i64 % 270);
    params.not_before = issued;
    params.not_after = issued + time::Duration::days(397);
    let mut serial = [0u8; 16];
    rand::rng().fill(&mut serial[..]);
    serial[0] &= 0x7f; // positive, as DER INTEGER serials must be
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let cert = params.self_signed(&key)?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}

/// The rustls server configuration of `decky` (a fresh certificate).
pub fn server_config(decky: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    let (cert, key) = certificate(decky).map_err(|e| format!("cannot make a certificate for {decky}: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert)], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)))
        .map_err(|e| format!("bad certificate for {decky}: {e}"))?;
    // Like a stock Apache: HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn bounded(text: &str) -> String {
    text.chars().take(MAX_REASON).collect()
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let (config, idle) = event::with(&session, |s| (s.context().tls_config(), s.limits().idle));
    let config = match config {
        Ok(c) => c,
        // Cannot happen once the listener opened (it made the config), but
        // a session must end cleanly rather than panic.
        Err(e) => return End::Io(e),
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let failed = |reason: String| {
        event::with(&session, |s| {
            s.emit("tls_handshake_failed", Severity::Warning, vec![("reason", reason.clone())], Some(reason.clone()))
        })
    };
    let tls = match tokio::time::timeout(idle.min(HANDSHAKE_TIMEOUT), acceptor.accept(io)).await {
        Err(_) => {
            failed("handshake timeout".into());
            return End::Idle;
        }
        Ok(Err(e)) => {
            let end = super::io::end_of(std::io::Error::new(e.kind(), e.to_string()));
            failed(bounded(&e.to_string()));
            return if end == End::ClientClosed { end } else { End::Io(bounded(&e.to_string())) };
        }
        Ok(Ok(tls)) => tls,
    };
    let (_, conn) = tls.get_ref();
    let sni = conn.server_name().map(bounded).unwrap_or_default();
    let version = conn.protocol_version().and_then(|v| v.as_str()).unwrap_or("").to_string();
    let cipher = conn.negotiated_cipher_suite().and_then(|c| c.suite().as_str()).unwrap_or("").to_string();
    let alpn = conn.alpn_protocol().map(super::io::printable).unwrap_or_default();
    event::with(&session, |s| {
        s.emit(
            "tls_handshake",
            Severity::Info,
            vec![("sni", sni.clone()), ("tls_version", version.clone()), ("cipher", cipher.clone()), ("alpn", alpn)],
            Some(format!("TLS {version} {cipher} sni={sni}")),
        )
    });
    // The raw stream under TLS already counts and bounds the session's
    // bytes; this second meter only satisfies the HTTP reader's type.
    super::http::serve_stream(session, Metered::new(tls, Arc::new(ByteCount::default()), u64::MAX)).await
}
