//! IMAP honeypot: the persona's Dovecot imap-login as Debian, Ubuntu and
//! CentOS package it (Exchange's IMAP4 service on Windows personas), up
//! to authentication. Every reply was compared with a real Dovecot
//! 2.3.19.1 from Debian's `dovecot-imapd` on loopback.
//!
//! LOGIN and AUTHENTICATE PLAIN (with or without SASL-IR) are recorded as
//! credentials and always fail after Dovecot's `auth_failure_delay`: no
//! mailbox is ever opened. STARTTLS upgrades for real ([`mail_login`]).
//! The third bad command ends the session as imap-login does.
//!
//! Literals (`{n}`) are not read: a line that ends in one is answered BAD
//! (real clients send a LOGIN's strings quoted unless they hold a CR/LF).

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::mail_login::{self, MailServer, MAX_BAD_COMMANDS};
use crate::event::{self, SharedSession};
use crate::io::{printable, Conn, End, Metered};

/// The `imap` entry of [`super::REGISTRY`].
pub struct Imap;

impl super::Protocol for Imap {
    fn name(&self) -> &'static str {
        "imap"
    }
    fn default_port(&self) -> u16 {
        143
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// Dovecot's answer to anything it cannot parse or does not serve before login.
const DOVECOT_BAD: &str = "BAD Error in IMAP command received by server.";

/// One command line, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct Command {
    pub tag: String,
    /// Upper-cased.
    pub verb: String,
    /// Atoms and quoted strings, unquoted (raw bytes: a password may be any).
    pub args: Vec<Vec<u8>>,
}

/// Why a line is not a command.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// No tag, or a tag without a command: answered with the tag (or `*`).
    NoCommand(String),
    /// An unterminated quoted string, or a literal (`{n}`), which is not read.
    BadArguments(String),
}

/// Parse `tag SP verb [SP args]` (RFC 3501 §9): atoms, and quoted strings
/// with `\"` and `\\` escapes.
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let text = line;
    let tag_end = text.iter().position(|b| *b == b' ').unwrap_or(text.len());
    let tag = printable(&text[..tag_end]);
    let rest = text.get(tag_end + 1..).unwrap_or(&[]);
    let verb_end = rest.iter().position(|b| *b == b' ').unwrap_or(rest.len());
    let verb = printable(&rest[..verb_end]).to_ascii_uppercase();
    if tag.is_empty() || verb.is_empty() {
        return Err(ParseError::NoCommand(if tag.is_empty() { "*".into() } else { tag }));
    }
    let mut args = Vec::new();
    let mut rest = rest.get(verb_end + 1..).unwrap_or(&[]);
    loop {
        while let Some((b' ', tail)) = rest.split_first() {
            rest = tail;
        }
        let Some(first) = rest.first() else { break };
        if *first == b'"' {
            let mut value = Vec::new();
            let mut i = 1;
            let mut closed = false;
            while i < rest.len() {
                match rest[i] {
                    b'\\' if i + 1 < rest.len() => {
                        value.push(rest[i + 1]);
                        i += 2;
                    }
                    b'"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    b => {
                        value.push(b);
                        i += 1;
                    }
                }
            }
            if !closed {
                return Err(ParseError::BadArguments(tag));
            }
            args.push(value);
            rest = &rest[i..];
        } else {
            let end = rest.iter().position(|b| *b == b' ').unwrap_or(rest.len());
            let atom = &rest[..end];
            if atom.starts_with(b"{") && atom.ends_with(b"}") {
                return Err(ParseError::BadArguments(tag));
            }
            args.push(atom.to_vec());
            rest = &rest[end..];
        }
    }
    Ok(Command { tag, verb, args })
}

/// What the persona's server says.
struct Replies {
    server: MailServer,
}

impl Replies {
    fn capabilities(&self, tls: bool) -> String {
        match self.server {
            MailServer::Exchange => {
                let tls = if tls { "" } else { " STARTTLS" };
                format!(
                    "IMAP4 IMAP4rev1 AUTH=NTLM AUTH=GSSAPI AUTH=PLAIN{tls} UIDPLUS CHILDREN IDLE NAMESPACE LITERAL+"
                )
            }
            MailServer::Dovecot { v22, .. } => {
                let head = if v22 {
                    "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE"
                } else {
                    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+"
                };
                let tls = if tls { "" } else { " STARTTLS" };
                format!("{head}{tls} AUTH=PLAIN")
            }
        }
    }

    fn greeting(&self) -> String {
        match self.server {
            MailServer::Exchange => "* OK The Microsoft Exchange IMAP4 service is ready.\r\n".into(),
            MailServer::Dovecot { distro, .. } => {
                format!("* OK [CAPABILITY {}] Dovecot{distro} ready.\r\n", self.capabilities(false))
            }
        }
    }

    fn bad(&self, tag: &str) -> String {
        match self.server {
            MailServer::Exchange => format!("{tag} BAD Command Error. 10\r\n"),
            MailServer::Dovecot { .. } => format!("{tag} {DOVECOT_BAD}\r\n"),
        }
    }

    fn failed(&self, tag: &str, verb: &str) -> String {
        match self.server {
            MailServer::Exchange => format!("{tag} NO {verb} failed.\r\n"),
            MailServer::Dovecot { .. } => format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
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
    loop {
        let line = match conn.read_line().await {
            Ok(l) => l,
            Err(e) => return Next::End(e),
        };
        let command = match parse(&line) {
            Ok(c) => c,
            Err(ParseError::NoCommand(tag) | ParseError::BadArguments(tag)) => {
                event::with(session, |s| s.command(&printable(&line)));
                *bad += 1;
                if *bad >= MAX_BAD_COMMANDS && dovecot {
                    let _ = conn.send_str("* BYE Too many invalid IMAP commands.\r\n").await;
                    return Next::End(End::Done);
                }
                if let Err(e) = conn.send_str(&replies.bad(&tag)).await {
                    return Next::End(e);
                }
                continue;
            }
        };
        let tag = command.tag.as_str();
        // A password never goes into a command line: LOGIN is logged with
        // its user only, AUTHENTICATE without its initial response.
        let logged = match command.verb.as_str() {
            "LOGIN" => format!("{tag} LOGIN {}", command.args.first().map(|u| printable(u)).unwrap_or_default()),
            "AUTHENTICATE" => {
                format!("{tag} AUTHENTICATE {}", command.args.first().map(|m| printable(m)).unwrap_or_default())
            }
            _ => printable(&line),
        };
        event::with(session, |s| s.command(&logged));
        let result: Result<(), End> = match command.verb.as_str() {
            "CAPABILITY" => {
                let done = if dovecot {
                    "OK Pre-login capabilities listed, post-login capabilities have more."
                } else {
                    "OK CAPABILITY completed."
                };
                conn.send_str(&format!("* CAPABILITY {}\r\n{tag} {done}\r\n", replies.capabilities(tls))).await
            }
            "NOOP" => conn.send_str(&format!("{tag} OK NOOP completed.\r\n")).await,
            "LOGOUT" => {
                let bye = if dovecot {
                    format!("* BYE Logging out\r\n{tag} OK Logout completed.\r\n")
                } else {
                    format!(
                        "* BYE Microsoft Exchange Server IMAP4 server signing off.\r\n{tag} OK LOGOUT completed.\r\n"
                    )
                };
                let _ = conn.send_str(&bye).await;
                return Next::End(End::Done);
            }
            "ID" if dovecot => {
                conn.send_str(&format!("* ID (\"name\" \"Dovecot\")\r\n{tag} OK ID completed.\r\n")).await
            }
            "ENABLE" if dovecot => {
                conn.send_str(&format!("* ENABLED\r\n{tag} OK ENABLE ignored in non-authenticated state.\r\n")).await
            }
            "STARTTLS" if tls => conn.send_str(&format!("{tag} BAD TLS is already active.\r\n")).await,
            "STARTTLS" if command.args.is_empty() => {
                if let Err(e) = conn.send_str(&format!("{tag} OK Begin TLS negotiation now.\r\n")).await {
                    return Next::End(e);
                }
                return Next::StartTls;
            }
            "LOGIN" if command.args.len() == 2 => {
                let user = printable(&command.args[0]);
                let reply = replies.failed(tag, "LOGIN");
                mail_login::refuse(session, conn, &reply, (&user, &command.args[1], "password"), tls).await
            }
            "AUTHENTICATE" if !command.args.is_empty() => {
                match authenticate(session, replies, conn, &command, tls).await {
                    Ok(()) => Ok(()),
                    Err(e) => return Next::End(e),
                }
            }
            _ => {
                *bad += 1;
                if *bad >= MAX_BAD_COMMANDS && dovecot {
                    let _ = conn.send_str("* BYE Too many invalid IMAP commands.\r\n").await;
                    return Next::End(End::Done);
                }
                conn.send_str(&replies.bad(tag)).await
            }
        };
        if let Err(e) = result {
            return Next::End(e);
        }
    }
}

/// AUTHENTICATE PLAIN, its response inline (SASL-IR) or after `+ `.
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    session: &SharedSession,
    replies: &Replies,
    conn: &mut Conn<S>,
    command: &Command,
    tls: bool,
) -> Result<(), End> {
    let tag = command.tag.as_str();
    if !command.args[0].eq_ignore_ascii_case(b"PLAIN") {
        let reply = match replies.server {
            MailServer::Dovecot { .. } => format!("{tag} NO [ALERT] Unsupported authentication mechanism.\r\n"),
            MailServer::Exchange => replies.failed(tag, "AUTHENTICATE"),
        };
        return conn.send_str(&reply).await;
    }
    let initial = command.args.len() > 1;
    let response = match command.args.get(1) {
        Some(ir) => printable(ir),
        None => {
            conn.send_str("+ \r\n").await?;
            printable(&conn.read_line().await?)
        }
    };
    if response == "*" {
        return conn.send_str(&format!("{tag} BAD Authentication aborted by client.\r\n")).await;
    }
    match mail_login::b64(&response).and_then(|raw| mail_login::split_plain(&raw)) {
        Some((user, pass)) => {
            let reply = replies.failed(tag, "AUTHENTICATE");
            mail_login::refuse(session, conn, &reply, (&user, &pass, "plain"), tls).await
        }
        None if initial => conn.send_str(&format!("{tag} BAD Invalid base64 data in initial response\r\n")).await,
        None => conn.send_str(&format!("{tag} NO [ALERT] Invalid base64 in response\r\n")).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_quoted_strings_and_escapes() {
        let c = parse(br#"a1 login "al ice" "p\"w\\d""#).unwrap();
        assert_eq!(c.tag, "a1");
        assert_eq!(c.verb, "LOGIN");
        assert_eq!(c.args, vec![b"al ice".to_vec(), br#"p"w\d"#.to_vec()]);
        let c = parse(b"A001 LOGIN  bob   hunter2").unwrap();
        assert_eq!(c.args, vec![b"bob".to_vec(), b"hunter2".to_vec()]);
        assert_eq!(parse(b"x CAPABILITY").unwrap().args, Vec::<Vec<u8>>::new());
    }

    #[test]
    fn malformed_lines_are_errors_naming_their_tag() {
        assert_eq!(parse(b""), Err(ParseError::NoCommand("*".into())));
        assert_eq!(parse(b"GARBAGE"), Err(ParseError::NoCommand("GARBAGE".into())));
        assert_eq!(parse(b"t1 LOGIN \"unterminated"), Err(ParseError::BadArguments("t1".into())));
        assert_eq!(parse(b"t2 LOGIN {5}"), Err(ParseError::BadArguments("t2".into())));
        // Control bytes in a tag come out escaped, never raw.
        assert_eq!(parse(b"a\x1bb"), Err(ParseError::NoCommand("a\\x1bb".into())));
    }

    #[test]
    fn the_greeting_is_dovecots_as_each_distribution_packages_it() {
        let debian = Replies { server: MailServer::Dovecot { distro: " (Debian)", v22: false } };
        // Byte for byte what Debian 12's dovecot-imapd sent on loopback.
        assert_eq!(
            debian.greeting(),
            "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n"
        );
        assert!(!debian.capabilities(true).contains("STARTTLS"), "not offered again inside TLS");
        let centos = Replies { server: MailServer::Dovecot { distro: "", v22: true } };
        assert!(centos.greeting().ends_with("AUTH=PLAIN] Dovecot ready.\r\n"));
        let exchange = Replies { server: MailServer::Exchange };
        assert_eq!(exchange.greeting(), "* OK The Microsoft Exchange IMAP4 service is ready.\r\n");
    }
}
