//! HTTPS honeypot: the HTTP honeypot ([`super::http`]) behind a real TLS
//! handshake (rustls), with the self-signed certificate the decky's
//! administrator would have made ([`super::certificate`]).
//!
//! Why a real handshake: scanners and the sniffer's JA3/JA4 need a real
//! ClientHello answered by a real ServerHello, and `openssl s_client` or
//! curl must get as far as the HTTP layer, where the usual `request` and
//! credential lines are written.
//!
//! Attacker input before HTTP: the handshake gets `limits.idle` (capped at
//! [`HANDSHAKE_TIMEOUT`]) and the session byte budget applies to the raw
//! TLS bytes; a failed handshake (garbage, plain HTTP, a timeout) is one
//! `tls_handshake_failed` line with a bounded reason and ends only its own
//! session.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpStream;

use crate::event::{self, ByteCount, SharedSession};
use crate::io::{End, Metered};
use crate::rfc5424::Severity;

/// Longest a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Characters of a handshake error kept in its log line.
const MAX_REASON: usize = 200;

/// The rustls server configuration of a decky: its certificate, whose key
/// is derived from `secret` (installation-wide secret material mixed with
/// the decky's name), so the same decky serves the same certificate after
/// a restart.
pub fn server_config(persona: &crate::Persona, secret: &[u8]) -> Result<Arc<rustls::ServerConfig>, String> {
    let decky = persona.hostname.as_str();
    let made =
        super::certificate::make(persona, secret).map_err(|e| format!("cannot make a certificate for {decky}: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(made.cert_der)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.key_pkcs8)),
        )
        .map_err(|e| format!("bad certificate for {decky}: {e}"))?;
    // Like a stock Apache or nginx: HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn bounded(text: &str) -> String {
    text.chars().take(MAX_REASON).collect()
}

/// The `https` entry of [`super::REGISTRY`].
pub struct Https;

impl super::Protocol for Https {
    fn name(&self) -> &'static str {
        "https"
    }
    fn default_port(&self) -> u16 {
        443
    }
    fn prepare(&self, ctx: &crate::DeckyContext) -> Result<(), String> {
        // The certificate is made before the port opens, so a failure is a
        // clear open error, never a session that cannot serve.
        ctx.tls_config().map(|_| ())
    }

    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let local_port = io.get_ref().local_addr().map(|a| a.port()).unwrap_or(443);
    let tls = match handshake(&session, io).await {
        Ok(tls) => tls,
        Err(end) => return end,
    };
    // The raw stream under TLS already counts and bounds the session's
    // bytes; this second meter only satisfies the HTTP reader's type.
    super::http::serve_stream(session, Metered::new(tls, Arc::new(ByteCount::default()), u64::MAX), local_port).await
}

/// The TLS handshake of a session on the decky's certificate (shared with
/// the other TLS services, e.g. [`super::k8s`]): a `tls_handshake` line on
/// success, a `tls_handshake_failed` line and the session's end otherwise.
pub async fn handshake(
    session: &SharedSession,
    io: Metered<TcpStream>,
) -> Result<tokio_rustls::server::TlsStream<Metered<TcpStream>>, End> {
    let (config, idle) = event::with(session, |s| (s.context().tls_config(), s.limits().idle));
    let config = match config {
        Ok(c) => c,
        // Cannot happen once the listener opened (it made the config), but
        // a session must end cleanly rather than panic.
        Err(e) => return Err(End::Io(e)),
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let failed = |reason: String| {
        event::with(session, |s| {
            s.emit("tls_handshake_failed", Severity::Warning, vec![("reason", reason.clone())], Some(reason.clone()))
        })
    };
    let tls = match tokio::time::timeout(idle.min(HANDSHAKE_TIMEOUT), acceptor.accept(io)).await {
        Err(_) => {
            failed("handshake timeout".into());
            return Err(End::Idle);
        }
        Ok(Err(e)) => {
            let end = crate::io::end_of(std::io::Error::new(e.kind(), e.to_string()));
            failed(bounded(&e.to_string()));
            return Err(if end == End::ClientClosed { end } else { End::Io(bounded(&e.to_string())) });
        }
        Ok(Ok(tls)) => tls,
    };
    let (_, conn) = tls.get_ref();
    let sni = conn.server_name().map(bounded).unwrap_or_default();
    let version = conn.protocol_version().and_then(|v| v.as_str()).unwrap_or("").to_string();
    let cipher = conn.negotiated_cipher_suite().and_then(|c| c.suite().as_str()).unwrap_or("").to_string();
    let alpn = conn.alpn_protocol().map(crate::io::printable).unwrap_or_default();
    event::with(session, |s| {
        s.emit(
            "tls_handshake",
            Severity::Info,
            vec![("sni", sni.clone()), ("tls_version", version.clone()), ("cipher", cipher.clone()), ("alpn", alpn)],
            Some(format!("TLS {version} {cipher} sni={sni}")),
        )
    });
    Ok(tls)
}
