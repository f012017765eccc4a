//! POP3 honeypot: the persona's Dovecot pop3-login as Debian, Ubuntu and
//! CentOS package it (Exchange's POP3 service on Windows personas), up to
//! authentication. Every reply was compared with a real Dovecot 2.3.19.1
//! from Debian's `dovecot-pop3d` on loopback.
//!
//! USER + PASS and AUTH PLAIN are recorded as credentials and always fail
//! after Dovecot's `auth_failure_delay`. STLS upgrades for real
//! ([`mail_login`]). The fourth unknown command ends the session, as
//! pop3-login does.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::mail_login::{self, MailServer, MAX_BAD_COMMANDS};
use crate::event::{self, SharedSession};
use crate::io::{printable, Conn, End, Metered};

/// The `pop3` entry of [`super::REGISTRY`].
pub struct Pop3;

impl super::Protocol for Pop3 {
    fn name(&self) -> &'static str {
        "pop3"
    }
    fn default_port(&self) -> u16 {
        110
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// One command line: the verb upper-cased, its argument as sent (bytes:
/// a password may be anything).
pub fn parse(line: &[u8]) -> (String, Vec<u8>) {
    match line.iter().position(|b| *b == b' ') {
        Some(i) => (printable(&line[..i]).to_ascii_uppercase(), line[i + 1..].to_vec()),
        None => (printable(line).to_ascii_uppercase(), Vec::new()),
    }
}

/// What the persona's server says.
struct Replies {
    server: MailServer,
}

impl Replies {
    fn greeting(&self) -> String {
        match self.server {
            MailServer::Exchange => "+OK The Microsoft Exchange POP3 service is ready.\r\n".into(),
            MailServer::Dovecot { distro, .. } => format!("+OK Dovecot{distro} ready.\r\n"),
        }
    }

    fn capa(&self, tls: bool) -> String {
        let stls = if tls { "" } else { "STLS\r\n" };
        match self.server {
            MailServer::Exchange => format!("+OK\r\nTOP\r\nUIDL\r\nSASL NTLM GSSAPI PLAIN\r\nUSER\r\n{stls}.\r\n"),
            MailServer::Dovecot { .. } => {
                format!("+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n{stls}USER\r\nSASL PLAIN\r\n.\r\n")
            }
        }
    }

    fn failed(&self) -> &'static str {
        match self.server {
            MailServer::Exchange => "-ERR Logon failure: unknown user name or bad password.\r\n",
            MailServer::Dovecot { .. } => "-ERR [AUTH] Authentication failed.\r\n",
        }
    }

    fn unknown(&self) -> &'static str {
        match self.server {
            MailServer::Exchange => "-ERR Protocol error. 14\r\n",
            MailServer::Dovecot { .. } => "-ERR Unknown command.\r\n",
        }
    }
}

enum Next {
    End(End),
    StartTls,
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let (limits, ctx) = event::with(&session, |s| (s.limits().clone(), s.context().clone()));
    let replies = Replies { server: MailServer::of(&ctx.persona) };
    let mut conn = Conn::new(io, limits.max_line, limits.idle);
    if let Err(e) = conn.send_str(&replies.greeting()).await {
        return e;
    }
    let mut bad = 0;
    match dialogue(&session, &replies, &mut conn, &mut bad, false).await {
        Next::End(e) => e,
        Next::StartTls => match mail_login::start_tls(&ctx, conn).await {
            Err(e) => e,
            Ok(mut conn) => match dialogue(&session, &replies, &mut conn, &mut bad, true).await {
                Next::End(e) => e,
                Next::StartTls => End::Done,
            },
        },
    }
}

async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    session: &SharedSession,
    replies: &Replies,
    conn: &mut Conn<S>,
    bad: &mut u32,
    tls: bool,
) -> Next {
    let dovecot = matches!(replies.server, MailServer::Dovecot { .. });
    let mut user: Option<String> = None;
    loop {
        let line = match conn.read_line().await {
            Ok(l) => l,
            Err(e) => return Next::End(e),
        };
        let (verb, arg) = parse(&line);
        // PASS and an AUTH's initial response are secrets: logged without them.
        let logged = match verb.as_str() {
            "PASS" => "PASS".to_string(),
            "AUTH" => format!("AUTH {}", printable(arg.split(|b| *b == b' ').next().unwrap_or_default())),
            _ => printable(&line),
        };
        event::with(session, |s| s.command(logged.trim_end()));
        let result = match verb.as_str() {
            "CAPA" => conn.send_str(&replies.capa(tls)).await,
            "QUIT" => {
                let bye = if dovecot {
                    "+OK Logging out\r\n"
                } else {
                    "+OK Microsoft Exchange Server POP3 server signing off.\r\n"
                };
                let _ = conn.send_str(bye).await;
                return Next::End(End::Done);
            }
            "USER" => {
                user = Some(printable(&arg).chars().take(256).collect());
                conn.send_str("+OK\r\n").await
            }
            "PASS" => match user.take() {
                None => conn.send_str("-ERR No username given.\r\n").await,
                Some(name) => mail_login::refuse(session, conn, replies.failed(), (&name, &arg, "password"), tls).await,
            },
            "STLS" if tls => conn.send_str("-ERR TLS is already active.\r\n").await,
            "STLS" => {
                if let Err(e) = conn.send_str("+OK Begin TLS negotiation now.\r\n").await {
                    return Next::End(e);
                }
                return Next::StartTls;
            }
            "AUTH" if arg.is_empty() => conn.send_str("+OK\r\nPLAIN\r\n.\r\n").await,
            "AUTH" => auth(session, replies, conn, &arg, tls).await,
            _ => {
                *bad += 1;
                if *bad > MAX_BAD_COMMANDS && dovecot {
                    let _ = conn.send_str("-ERR Too many invalid bad commands.\r\n").await;
                    return Next::End(End::Done);
                }
                conn.send_str(replies.unknown()).await
            }
        };
        if let Err(e) = result {
            return Next::End(e);
        }
    }
}

/// `AUTH PLAIN [initial-response]` (RFC 5034).
async fn auth<S: AsyncRead + AsyncWrite + Unpin>(
    session: &SharedSession,
    replies: &Replies,
    conn: &mut Conn<S>,
    arg: &[u8],
    tls: bool,
) -> Result<(), End> {
    let mut parts = arg.splitn(2, |b| *b == b' ');
    let mechanism = parts.next().unwrap_or_default();
    if !mechanism.eq_ignore_ascii_case(b"PLAIN") {
        return conn.send_str("-ERR [AUTH] Unsupported authentication mechanism.\r\n").await;
    }
    let initial = arg.contains(&b' ');
    let response = match parts.next() {
        Some(ir) => printable(ir),
        None => {
            conn.send_str("+ \r\n").await?;
            printable(&conn.read_line().await?)
        }
    };
    if response == "*" {
        return conn.send_str("-ERR Authentication aborted by client.\r\n").await;
    }
    match mail_login::b64(&response).and_then(|raw| mail_login::split_plain(&raw)) {
        Some((user, pass)) => mail_login::refuse(session, conn, replies.failed(), (&user, &pass, "plain"), tls).await,
        None if initial => conn.send_str("-ERR [AUTH] Invalid base64 data in initial response\r\n").await,
        None => conn.send_str("-ERR [AUTH] Invalid base64 in response\r\n").await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_at_the_first_space_keeping_the_argument_bytes() {
        assert_eq!(parse(b"user alice"), ("USER".into(), b"alice".to_vec()));
        assert_eq!(parse(b"PASS  two  spaces\xff"), ("PASS".into(), b" two  spaces\xff".to_vec()));
        assert_eq!(parse(b"CAPA"), ("CAPA".into(), vec![]));
        assert_eq!(parse(b""), (String::new(), vec![]));
        assert_eq!(parse(b"\x1b[31m x"), ("\\X1B[31M".into(), b"x".to_vec()));
    }

    #[test]
    fn greeting_and_capabilities_are_dovecots() {
        let ubuntu = Replies { server: MailServer::Dovecot { distro: " (Ubuntu)", v22: false } };
        assert_eq!(ubuntu.greeting(), "+OK Dovecot (Ubuntu) ready.\r\n");
        // Byte for byte what Debian 12's dovecot-pop3d sent to CAPA.
        assert_eq!(
            ubuntu.capa(false),
            "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\nUSER\r\nSASL PLAIN\r\n.\r\n"
        );
        assert!(!ubuntu.capa(true).contains("STLS"));
        let exchange = Replies { server: MailServer::Exchange };
        assert!(exchange.greeting().contains("Microsoft Exchange POP3"));
    }
}
