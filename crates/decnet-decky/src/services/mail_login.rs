//! What the imap and pop3 deckies share: which server the persona runs
//! (Dovecot as Debian, Ubuntu and CentOS package it; Exchange on Windows),
//! SASL PLAIN, the failed-login delay and the STARTTLS upgrade.
//!
//! Decision: the persona's Dovecot allows plaintext logins before TLS
//! (`disable_plaintext_auth = no`, as an admin who keeps old mail clients
//! working sets it). With the package default a remote client is told
//! `LOGINDISABLED` and never sends a password, so nothing would be
//! captured. STARTTLS is still advertised and really upgrades, with the
//! decky's certificate (the one https serves).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::event::{self, ByteCount, SharedSession};
use crate::io::{printable, Conn, End, Metered};
use crate::persona::OsFamily;
use crate::Persona;

/// How long a wrong password waits for its answer: Dovecot's
/// `auth_failure_delay` (2 s, the package default) on top of PAM's own
/// failure delay. The real Debian 12 Dovecot answered after 3.5-4.4 s.
pub fn failed_login_delay() -> Duration {
    use rand::Rng as _;
    Duration::from_millis(rand::rng().random_range(3400..=4400))
}

/// Unknown or malformed commands before login that end the session:
/// imap-login and pop3-login both give up after the third.
pub const MAX_BAD_COMMANDS: u32 = 3;

/// Which mail server the persona runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailServer {
    /// Dovecot; the `(Debian)` / `(Ubuntu)` suffix the distribution
    /// patches into the greeting, empty upstream (CentOS).
    Dovecot {
        distro: &'static str,
        v22: bool,
    },
    Exchange,
}

impl MailServer {
    pub fn of(persona: &Persona) -> MailServer {
        if persona.family == OsFamily::Windows {
            return MailServer::Exchange;
        }
        let distro = match persona.os_id.as_str() {
            "ubuntu" => " (Ubuntu)",
            "debian" => " (Debian)",
            _ => "",
        };
        // CentOS 7 ships Dovecot 2.2.36, whose capability list is ordered
        // differently from 2.3's.
        MailServer::Dovecot { distro, v22: persona.os_id == "centos" }
    }
}

/// SASL PLAIN's `authzid \0 authcid \0 password`: the user and password.
pub fn split_plain(raw: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut parts = raw.splitn(3, |b| *b == 0);
    let _authz = parts.next()?;
    let user = parts.next()?;
    let pass = parts.next()?;
    Some((printable(user), pass.to_vec()))
}

/// A SASL response line: base64, `None` when it is not.
pub fn b64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()
}

/// The connection after a TLS handshake on `conn` with the decky's
/// certificate. Whatever the client sent after the STARTTLS line (before
/// the handshake) is dropped, never read as a command inside TLS.
pub async fn start_tls<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &crate::DeckyContext,
    conn: Conn<S>,
) -> Result<Conn<tokio_rustls::server::TlsStream<Metered<S>>>, End> {
    let limits = &ctx.limits;
    let config = ctx.tls_config().map_err(End::Io)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let tls = match tokio::time::timeout(limits.idle, acceptor.accept(conn.into_inner())).await {
        Err(_) => return Err(End::Idle),
        Ok(Err(e)) => return Err(End::Io(format!("TLS handshake: {e}"))),
        Ok(Ok(t)) => t,
    };
    // The inner stream already counts and bounds the session's bytes;
    // this outer meter only satisfies Conn's type.
    let tls = Metered::new(tls, Arc::new(ByteCount::default()), u64::MAX);
    Ok(Conn::new(tls, limits.max_line, limits.idle))
}

/// A refused login, as both servers handle it: the attempt recorded (with
/// whether it came over TLS), the failure delay, then `reply`.
pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    session: &SharedSession,
    conn: &mut Conn<S>,
    reply: &str,
    (user, secret, method): (&str, &[u8], &str),
    tls: bool,
) -> Result<(), End> {
    event::with(session, |s| {
        s.login_attempt(user, secret, method, vec![("result", "refused".into()), ("tls", tls.to_string())])
    });
    tokio::time::sleep(failed_login_delay()).await;
    conn.send_str(reply).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_splits_user_and_password_and_refuses_short_ones() {
        assert_eq!(split_plain(b"\0alice\0s3cr\0t"), Some(("alice".into(), b"s3cr\0t".to_vec())));
        assert_eq!(split_plain(b"admin\0bob\0pw"), Some(("bob".into(), b"pw".to_vec())));
        assert_eq!(split_plain(b"no-separators"), None);
        assert_eq!(split_plain(b"\0only-user"), None);
        // A user with control characters is logged escaped, on one line.
        assert_eq!(split_plain(b"\0a\nb\0p").map(|(u, _)| u), Some("a\\x0ab".into()));
    }

    #[test]
    fn the_failure_delay_is_the_measured_one() {
        for _ in 0..100 {
            let d = failed_login_delay();
            assert!((Duration::from_millis(3400)..=Duration::from_millis(4400)).contains(&d), "{d:?}");
        }
    }

    #[test]
    fn the_server_follows_the_release() {
        let of = |release: &str| {
            let p = Persona::derive("mail-under-test", None, None, 1_790_000_000)
                .with_overrides(&serde_json::json!({ "release": release }))
                .unwrap();
            MailServer::of(&p)
        };
        assert_eq!(of("ubuntu-22.04"), MailServer::Dovecot { distro: " (Ubuntu)", v22: false });
        assert_eq!(of("debian-12"), MailServer::Dovecot { distro: " (Debian)", v22: false });
        assert_eq!(of("centos-7"), MailServer::Dovecot { distro: "", v22: true });
        assert_eq!(of("windows-server-2019"), MailServer::Exchange);
    }
}
