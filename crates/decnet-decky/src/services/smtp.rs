//! SMTP honeypot: the persona's Postfix smtpd with the configuration its
//! distribution's package writes (Debian/Ubuntu `main.cf.debian` plus
//! `main.cf.tls`: the distribution banner, STARTTLS offered with the
//! host's certificate, `smtpd_relay_restrictions = permit_mynetworks
//! permit_sasl_authenticated defer_unauth_destination`, no SASL). Reply
//! texts are those in Postfix's `smtpd` binary.
//!
//! Mail for the host's own users is accepted and summarised in a
//! `message` line (never stored, never delivered); mail for anyone else is
//! refused with Postfix's `454 4.7.1 … Relay access denied`: every client
//! is treated as outside `mynetworks`, loopback included, so the decky is
//! never an open relay. AUTH is refused as Postfix refuses it when SASL is
//! off, and whatever credentials the client sent in the refused command
//! are still recorded; a persona with `smtp_auth` offers AUTH PLAIN/LOGIN
//! after STARTTLS, and a password gets in per its auth policy.
//!
//! STARTTLS really upgrades the connection (rustls, the decky's
//! certificate); what the client pipelined after it before the handshake
//! is discarded, as Postfix does.

use std::sync::Arc;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::event::{self, ByteCount, SharedSession};
use crate::io::{printable, Conn, End, Metered};
use crate::rfc5424::Severity;
use crate::Persona;

/// Postfix's `message_size_limit` default.
const SIZE_LIMIT: u64 = 10_240_000;
/// Recipients kept per message (Postfix allows 1000; a decky needs fewer).
const MAX_RECIPIENTS: usize = 100;
/// `smtpd_hard_error_limit` (Postfix 3.x default).
const HARD_ERROR_LIMIT: u32 = 20;

fn b64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()
}

/// AUTH PLAIN's `authzid \0 authcid \0 password`.
fn split_plain(raw: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut parts = raw.splitn(3, |b| *b == 0);
    let _authz = parts.next()?;
    let user = parts.next()?;
    let pass = parts.next()?;
    Some((printable(user), pass.to_vec()))
}

/// The `smtp` entry of [`super::REGISTRY`].
pub struct Smtp;

impl super::Protocol for Smtp {
    fn name(&self) -> &'static str {
        "smtp"
    }
    fn default_port(&self) -> u16 {
        25
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// What the persona's Postfix says about itself.
#[derive(Debug, Clone)]
pub struct Facts {
    /// `myhostname`: the persona's FQDN.
    pub hostname: String,
    pub banner: String,
    /// 3.0 and later: SMTPUTF8, CHUNKING, and `500` for unknown commands.
    modern: bool,
    /// The package configures TLS (Debian and Ubuntu do, CentOS does not).
    pub starttls: bool,
    pub auth: bool,
}

impl Facts {
    pub fn of(persona: &Persona) -> Facts {
        let hostname = persona.fqdn();
        // Distribution banners: `smtpd_banner` of Debian's main.cf.debian
        // ("(Debian/GNU)") and Ubuntu's ("(Ubuntu)"); upstream's default
        // `$myhostname ESMTP $mail_name` elsewhere.
        let banner = match persona.os_id.as_str() {
            "ubuntu" => format!("220 {hostname} ESMTP Postfix (Ubuntu)\r\n"),
            "debian" => format!("220 {hostname} ESMTP Postfix (Debian/GNU)\r\n"),
            _ => format!("220 {hostname} ESMTP Postfix\r\n"),
        };
        let version = persona.smtp_server.strip_prefix("Postfix ").unwrap_or("3.6.4");
        let major: u32 = version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(3);
        Facts {
            hostname,
            banner,
            modern: major >= 3,
            starttls: matches!(persona.os_id.as_str(), "ubuntu" | "debian"),
            auth: persona.smtp_auth,
        }
    }

    /// The EHLO reply, in smtpd's order.
    pub fn ehlo(&self, tls_active: bool) -> String {
        let mut lines = vec![self.hostname.clone(), "PIPELINING".into(), format!("SIZE {SIZE_LIMIT}")];
        lines.extend(["VRFY".to_string(), "ETRN".to_string()]);
        if self.starttls && !tls_active {
            lines.push("STARTTLS".into());
        }
        if self.auth && tls_active {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.extend(["ENHANCEDSTATUSCODES".to_string(), "8BITMIME".to_string(), "DSN".to_string()]);
        if self.modern {
            lines.extend(["SMTPUTF8".to_string(), "CHUNKING".to_string()]);
        }
        let last = lines.len() - 1;
        lines.iter().enumerate().map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' })).collect()
    }

    fn unknown(&self) -> &'static str {
        if self.modern {
            "500 5.5.2 Error: command not recognized\r\n"
        } else {
            "502 5.5.2 Error: command not recognized\r\n"
        }
    }

    /// Whether `domain` is one of the host's own (`mydestination`).
    fn local_domain(&self, domain: &str) -> bool {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        let short = self.hostname.split('.').next().unwrap_or("");
        let parent = self.hostname.split_once('.').map(|(_, p)| p).unwrap_or("");
        d.is_empty()
            || d == self.hostname.to_ascii_lowercase()
            || d == short
            || d == "localhost"
            || d == format!("localhost.{parent}")
    }
}

/// The session's SMTP state.
#[derive(Default)]
struct State {
    helo: bool,
    from: Option<String>,
    rcpts: Vec<String>,
    rejected: u32,
    authenticated: Option<String>,
    errors: u32,
    /// Bytes of a BDAT message so far (Some once the first chunk came).
    bdat: Option<u64>,
}

enum Next {
    End(End),
    StartTls,
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let (limits, ctx) = event::with(&session, |s| (s.limits().clone(), s.context().clone()));
    let facts = Facts::of(&ctx.persona);
    let mut conn = Conn::new(io, limits.max_line, limits.idle);
    if let Err(e) = conn.send_str(&facts.banner).await {
        return e;
    }
    let mut state = State::default();
    match dialogue(&session, &facts, &mut conn, &mut state, false).await {
        Next::End(e) => e,
        Next::StartTls => {
            let config = match ctx.tls_config() {
                Ok(c) => c,
                Err(e) => return End::Io(e),
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let tls = match tokio::time::timeout(limits.idle, acceptor.accept(conn.into_inner())).await {
                Err(_) => return End::Idle,
                Ok(Err(e)) => return End::Io(format!("TLS handshake: {e}")),
                Ok(Ok(t)) => t,
            };
            // The inner stream already counts and bounds the session's
            // bytes; this outer meter only satisfies Conn's type.
            let tls = Metered::new(tls, Arc::new(ByteCount::default()), u64::MAX);
            let mut conn = Conn::new(tls, limits.max_line, limits.idle);
            // RFC 3207: the client starts over (EHLO again) after the handshake.
            state = State { errors: state.errors, ..State::default() };
            match dialogue(&session, &facts, &mut conn, &mut state, true).await {
                Next::End(e) => e,
                // Refused with 554 inside TLS, never returned.
                Next::StartTls => End::Done,
            }
        }
    }
}

/// The address inside `FROM:<…>` / `TO:<…>` (`prefix` without the colon),
/// and the parameters after it; None when the syntax is wrong.
fn path_arg<'a>(arg: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let head = arg.get(..prefix.len() + 1)?;
    if !head.eq_ignore_ascii_case(&format!("{prefix}:")) {
        return None;
    }
    let rest = arg[prefix.len() + 1..].trim_start();
    if let Some(inner) = rest.strip_prefix('<') {
        let end = inner.find('>')?;
        Some((&inner[..end], inner[end + 1..].trim()))
    } else {
        let (addr, params) = rest.split_once(' ').unwrap_or((rest, ""));
        (!addr.is_empty()).then_some((addr, params.trim()))
    }
}

/// Read and reply to commands until QUIT, an error ends the session, or
/// the client asks for STARTTLS (then the caller upgrades and calls again).
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    session: &SharedSession,
    facts: &Facts,
    conn: &mut Conn<S>,
    st: &mut State,
    tls: bool,
) -> Next {
    let ctx = event::with(session, |s| s.context().clone());
    let peer = event::with(session, |s| s.peer);
    loop {
        let raw = match conn.read_line().await {
            Ok(l) => l,
            Err(End::Idle) => {
                let _ = conn.send_str(&format!("421 4.4.2 {} Error: timeout exceeded\r\n", facts.hostname)).await;
                return Next::End(End::Idle);
            }
            Err(e) => return Next::End(e),
        };
        let line = printable(&raw);
        let trimmed = line.trim();
        let (verb, arg) = match trimmed.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_string()),
            None => (trimmed.to_ascii_uppercase(), String::new()),
        };
        // AUTH carries credentials: logged as its mechanism only.
        let logged = if verb == "AUTH" {
            format!("AUTH {}", arg.split_whitespace().next().unwrap_or("")).trim().to_string()
        } else {
            trimmed.to_string()
        };
        if !logged.is_empty() {
            event::with(session, |s| s.command(&logged));
        }
        let reply: String = match verb.as_str() {
            "" => "500 5.5.2 Error: bad syntax\r\n".into(),
            // smtpd_forbidden_commands: a web client or proxy probe.
            "CONNECT" | "GET" | "POST" => {
                let _ = conn.send_str("221 2.7.0 Error: I can break rules, too. Goodbye.\r\n").await;
                return Next::End(End::Done);
            }
            "EHLO" | "HELO" if arg.is_empty() => format!("501 Syntax: {verb} hostname\r\n"),
            "EHLO" => {
                st.helo = true;
                st.from = None;
                st.rcpts.clear();
                st.bdat = None;
                facts.ehlo(tls)
            }
            "HELO" => {
                st.helo = true;
                st.from = None;
                st.rcpts.clear();
                st.bdat = None;
                format!("250 {}\r\n", facts.hostname)
            }
            "STARTTLS" if !arg.is_empty() => "501 5.5.4 Syntax: STARTTLS\r\n".into(),
            "STARTTLS" if tls => "554 5.5.1 Error: TLS already active\r\n".into(),
            "STARTTLS" if !facts.starttls => "502 5.5.1 Error: command not implemented\r\n".into(),
            "STARTTLS" if st.from.is_some() => "503 5.5.1 Error: MAIL transaction in progress\r\n".into(),
            "STARTTLS" => {
                if let Err(e) = conn.send_str("220 2.0.0 Ready to start TLS\r\n").await {
                    return Next::End(e);
                }
                return Next::StartTls;
            }
            "AUTH" if !(facts.auth && tls) => {
                // Postfix with SASL off refuses at once; a PLAIN initial
                // response already holds the credentials, so keep them.
                let mut words = arg.split_whitespace();
                let mech = words.next().unwrap_or("").to_ascii_uppercase();
                if let (true, Some((user, pass))) =
                    (mech == "PLAIN", words.next().and_then(b64).as_deref().and_then(split_plain))
                {
                    event::with(session, |s| {
                        s.login_attempt(&user, &pass, "plain", vec![("result", "refused".to_string())])
                    });
                }
                "503 5.5.1 Error: authentication not enabled\r\n".into()
            }
            "AUTH" if arg.is_empty() => "501 5.5.4 Syntax: AUTH mechanism\r\n".into(),
            "AUTH" if st.authenticated.is_some() => "503 5.5.1 Error: already authenticated\r\n".into(),
            "AUTH" if st.from.is_some() => "503 5.5.1 Error: MAIL transaction in progress\r\n".into(),
            "AUTH" => match sasl(conn, &arg).await {
                Err(e) => return Next::End(e),
                Ok(None) => "501 5.7.0 Authentication aborted\r\n".into(),
                Ok(Some((method, user, pass))) => {
                    let accepted = ctx.auth.check(&ctx.persona.auth, peer.ip(), &user, &pass);
                    event::with(session, |s| {
                        s.login_attempt(
                            &user,
                            &pass,
                            method,
                            vec![("result", if accepted { "accepted" } else { "refused" }.to_string())],
                        )
                    });
                    if accepted {
                        st.authenticated = Some(user);
                        "235 2.7.0 Authentication successful\r\n".into()
                    } else {
                        "535 5.7.8 Error: authentication failed: authentication failure\r\n".into()
                    }
                }
            },
            "MAIL" | "RCPT" | "DATA" if st.bdat.is_some() => format!("503 5.5.1 Error: {verb} after BDAT\r\n"),
            "BDAT" => match bdat_args(&arg) {
                None => {
                    let _ = conn.send_str("521 5.5.4 Syntax: BDAT count [LAST]\r\n").await;
                    return Next::End(End::Done);
                }
                Some((size, last)) => {
                    // The chunk follows the command whatever the reply: read
                    // (and throw away) exactly that many bytes first.
                    let chunk = usize::try_from(size).unwrap_or(usize::MAX);
                    match conn.discard(chunk).await {
                        Err(e) => return Next::End(e),
                        Ok(got) if got < chunk => return Next::End(End::ClientClosed),
                        Ok(_) => {}
                    }
                    let total = st.bdat.unwrap_or(0).saturating_add(size);
                    if st.rcpts.is_empty() {
                        "503 5.5.1 Error: need RCPT command\r\n".into()
                    } else if size == 0 && !last {
                        "551 5.7.1 Null BDAT request\r\n".into()
                    } else if total > SIZE_LIMIT {
                        st.bdat = None;
                        st.from = None;
                        st.rcpts.clear();
                        "552 5.3.4 Message size exceeds fixed limit\r\n".into()
                    } else if !last {
                        st.bdat = Some(total);
                        format!("250 2.0.0 Ok: {size} bytes\r\n")
                    } else {
                        st.bdat = None;
                        let from = st.from.take().unwrap_or_default();
                        let rcpts = std::mem::take(&mut st.rcpts);
                        record_message(session, &from, &rcpts, total as usize, "", tls);
                        format!("250 2.0.0 Ok: {total} bytes queued as {}\r\n", queue_id())
                    }
                }
            },
            "MAIL" => match path_arg(&arg, "FROM") {
                _ if st.from.is_some() => "503 5.5.1 Error: nested MAIL command\r\n".into(),
                None => "501 5.5.4 Syntax: MAIL FROM:<address>\r\n".into(),
                Some((_, params))
                    if params.split_whitespace().any(|p| {
                        p.get(..5).is_some_and(|k| k.eq_ignore_ascii_case("SIZE="))
                            && p[5..].parse::<u64>().is_ok_and(|n| n > SIZE_LIMIT)
                    }) =>
                {
                    "552 5.3.4 Message size exceeds fixed limit\r\n".into()
                }
                Some((addr, _)) => {
                    st.from = Some(addr.chars().take(256).collect());
                    st.rcpts.clear();
                    st.rejected = 0;
                    "250 2.1.0 Ok\r\n".into()
                }
            },
            "RCPT" if st.from.is_none() => "503 5.5.1 Error: need MAIL command\r\n".into(),
            "RCPT" => match path_arg(&arg, "TO") {
                None => "501 5.5.4 Syntax: RCPT TO:<address>\r\n".into(),
                Some(("", _)) => "501 5.1.3 Bad recipient address syntax\r\n".into(),
                Some(_) if st.rcpts.len() >= MAX_RECIPIENTS => "452 4.5.3 Error: too many recipients\r\n".into(),
                Some((addr, _)) => {
                    let addr: String = addr.chars().take(256).collect();
                    match recipient(facts, &ctx.persona, &addr, st.authenticated.is_some()) {
                        Ok(()) => {
                            st.rcpts.push(addr);
                            "250 2.1.5 Ok\r\n".into()
                        }
                        Err(reply) => {
                            st.rejected += 1;
                            reply
                        }
                    }
                }
            },
            "DATA" if !arg.is_empty() => "501 5.5.4 Syntax: DATA\r\n".into(),
            "DATA" if st.rcpts.is_empty() && st.rejected > 0 => "554 5.5.1 Error: no valid recipients\r\n".into(),
            "DATA" if st.rcpts.is_empty() => "503 5.5.1 Error: need RCPT command\r\n".into(),
            "DATA" => {
                if let Err(e) = conn.send_str("354 End data with <CR><LF>.<CR><LF>\r\n").await {
                    return Next::End(e);
                }
                let (mut size, mut subject) = (0usize, String::new());
                loop {
                    let l = match conn.read_line().await {
                        Ok(l) => l,
                        Err(e) => return Next::End(e),
                    };
                    if l == b"." {
                        break;
                    }
                    size += l.len() + 2;
                    if subject.is_empty() && l.len() > 8 && l[..8].eq_ignore_ascii_case(b"subject:") {
                        subject = printable(&l[8..]).trim().chars().take(200).collect();
                    }
                }
                let from = st.from.take().unwrap_or_default();
                let rcpts = std::mem::take(&mut st.rcpts);
                record_message(session, &from, &rcpts, size, &subject, tls);
                format!("250 2.0.0 Ok: queued as {}\r\n", queue_id())
            }
            "RSET" if !arg.is_empty() => "501 5.5.4 Syntax: RSET\r\n".into(),
            "RSET" => {
                st.from = None;
                st.rcpts.clear();
                st.bdat = None;
                "250 2.0.0 Ok\r\n".into()
            }
            "NOOP" => "250 2.0.0 Ok\r\n".into(),
            "VRFY" if arg.is_empty() => "501 5.5.4 Syntax: VRFY address\r\n".into(),
            "VRFY" => {
                let addr: String = arg.trim_matches(|c| c == '<' || c == '>').chars().take(256).collect();
                match recipient(facts, &ctx.persona, &addr, true) {
                    Ok(()) => format!("252 2.0.0 {addr}\r\n"),
                    Err(reply) => reply,
                }
            }
            "ETRN" if arg.is_empty() => "500 Syntax: ETRN domain\r\n".into(),
            "ETRN" if !st.helo => "503 Error: send HELO/EHLO first\r\n".into(),
            "ETRN" if st.from.is_some() => "503 Error: MAIL transaction in progress\r\n".into(),
            // fast_flush_domains is empty by default: nothing to flush.
            "ETRN" => format!("459 <{}>: service unavailable\r\n", arg.chars().take(256).collect::<String>()),
            "QUIT" => {
                let _ = conn.send_str("221 2.0.0 Bye\r\n").await;
                return Next::End(End::Done);
            }
            _ => facts.unknown().into(),
        };
        if reply.starts_with('4') || reply.starts_with('5') {
            st.errors += 1;
            if st.errors >= HARD_ERROR_LIMIT {
                let _ = conn.send_str(&format!("421 4.7.0 {} Error: too many errors\r\n", facts.hostname)).await;
                return Next::End(End::Done);
            }
        }
        if let Err(e) = conn.send_str(&reply).await {
            return Next::End(e);
        }
    }
}

/// The `message` line of an accepted message.
fn record_message(session: &SharedSession, from: &str, rcpts: &[String], size: usize, subject: &str, tls: bool) {
    event::with(session, |s| {
        s.emit(
            "message",
            Severity::Notice,
            vec![
                ("mail_from", from.to_string()),
                ("rcpt_to", rcpts.join(",")),
                ("size", size.to_string()),
                ("subject", subject.to_string()),
                ("tls", tls.to_string()),
            ],
            Some(format!("message from <{from}> to {} recipient(s)", rcpts.len())),
        )
    });
}

/// `BDAT <size> [LAST]`.
fn bdat_args(arg: &str) -> Option<(u64, bool)> {
    let mut words = arg.split_whitespace();
    let size = words.next()?.parse().ok()?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return None,
    };
    words.next().is_none().then_some((size, last))
}

/// Whether Postfix would take mail for `addr`: a local user of a local
/// domain (a bare name is local), or anywhere once authenticated;
/// otherwise its exact refusal.
fn recipient(facts: &Facts, persona: &Persona, addr: &str, may_relay: bool) -> Result<(), String> {
    let (local, domain) = addr.rsplit_once('@').unwrap_or((addr, ""));
    if !facts.local_domain(domain) {
        return if may_relay { Ok(()) } else { Err(format!("454 4.7.1 <{addr}>: Relay access denied\r\n")) };
    }
    let local = local.to_ascii_lowercase();
    // local_recipient_maps: the passwd file and /etc/aliases (postmaster).
    if local == "postmaster" || persona.users.iter().any(|u| u.name.to_ascii_lowercase() == local) {
        Ok(())
    } else {
        Err(format!("550 5.1.1 <{addr}>: Recipient address rejected: User unknown in local recipient table\r\n"))
    }
}

/// A Postfix short queue id (hex, upper case).
fn queue_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..11].to_ascii_uppercase()
}

/// Run an AUTH exchange: (method, user, password), or None when the client
/// aborted with `*` or sent what does not decode.
async fn sasl<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    arg: &str,
) -> Result<Option<(&'static str, String, Vec<u8>)>, End> {
    let mut words = arg.split_whitespace();
    let mech = words.next().unwrap_or("").to_ascii_uppercase();
    let initial = words.next().map(str::to_string);
    async fn ask<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut Conn<S>, challenge: &str) -> Result<String, End> {
        conn.send_str(&format!("334 {challenge}\r\n")).await?;
        Ok(printable(&conn.read_line().await?))
    }
    match mech.as_str() {
        "PLAIN" => {
            let encoded = match initial {
                Some(i) => i,
                None => ask(conn, "").await?,
            };
            Ok(b64(&encoded).as_deref().and_then(split_plain).map(|(u, p)| ("plain", u, p)))
        }
        "LOGIN" => {
            let user = match initial {
                Some(i) => i,
                None => ask(conn, "VXNlcm5hbWU6").await?,
            };
            let Some(user) = b64(&user) else { return Ok(None) };
            let pass = ask(conn, "UGFzc3dvcmQ6").await?;
            Ok(b64(&pass).map(|p| ("login", printable(&user), p)))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `text` matches `template`, whose `%s`/`%d`/`%ld` stand for
    /// anything.
    fn glob(template: &str, text: &str) -> bool {
        let pattern = template.replace("%ld", "%s").replace("%d", "%s");
        let parts: Vec<&str> = pattern.split("%s").collect();
        let mut rest = text;
        for (i, part) in parts.iter().enumerate() {
            if i == 0 {
                let Some(r) = rest.strip_prefix(part) else { return false };
                rest = r;
            } else if i == parts.len() - 1 {
                return rest.ends_with(part);
            } else {
                let Some(at) = rest.find(part) else { return false };
                rest = &rest[at + part.len()..];
            }
        }
        rest.is_empty()
    }

    /// Every reply this file can send is one the real Postfix smtpd sends:
    /// the reply literals of the code above are read from the source and
    /// looked up in the strings of Debian's smtpd binary
    /// (`postfix_replies.txt`, from `scripts/gen-postfix-replies.sh`).
    /// Replies smtpd composes (a status code before a rejection text) match
    /// a text fragment there with their code stripped.
    #[test]
    fn every_reply_is_one_real_postfix_sends() {
        let facts = include_str!("postfix_replies.txt");
        // Lines that are nothing but placeholders (`%d %s Error: %s`) would
        // match any reply: left out.
        let known: Vec<&str> =
            facts.lines().filter(|l| !l.starts_with('#') && !l.starts_with("cf: ") && !l.starts_with('%')).collect();
        // Postfix 2.10's text for an unknown command (CentOS 7); 3.x says 500.
        let older = ["502 5.5.2 Error: command not recognized"];
        let source = include_str!("smtp.rs");
        let code = &source[..source.find("#[cfg(test)]").unwrap()];
        let mut checked = 0;
        for (at, _) in code.match_indices('"') {
            let lit = &code[at + 1..];
            let b = lit.as_bytes();
            if b.len() < 5
                || !(b'2'..=b'5').contains(&b[0])
                || !b[1].is_ascii_digit()
                || !b[2].is_ascii_digit()
                || b[3] != b' '
            {
                continue;
            }
            let Some(end) = lit.find("\\r\\n\"") else { continue };
            // `{…}` placeholders become `%s`.
            let mut reply = String::new();
            let mut depth = 0;
            for c in lit[..end].chars() {
                match c {
                    '{' => {
                        depth += 1;
                        if depth == 1 {
                            reply.push_str("%s");
                        }
                    }
                    '}' => depth -= 1,
                    c if depth == 0 => reply.push(c),
                    _ => {}
                }
            }
            let stripped = reply.splitn(3, ' ').nth(2).unwrap_or("");
            let matches = |k: &&str| glob(k, &reply) || glob(&reply, k) || (!stripped.is_empty() && glob(k, stripped));
            assert!(known.iter().any(matches) || older.contains(&reply.as_str()), "Postfix never sends {reply:?}");
            checked += 1;
        }
        assert!(checked > 40, "found {checked} replies in the source");
        assert!(facts.contains("cf: smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)"));
        assert!(facts.contains("cf: smtpd_tls_security_level=may"), "the package offers STARTTLS");
    }

    #[test]
    fn plain_splits_user_and_password() {
        assert_eq!(split_plain(b"\0bob\0s3cr\0t"), Some(("bob".to_string(), b"s3cr\0t".to_vec())));
        assert_eq!(split_plain(b"bob"), None);
    }

    #[test]
    fn bdat_arguments() {
        assert_eq!(bdat_args("100"), Some((100, false)));
        assert_eq!(bdat_args("0 last"), Some((0, true)));
        assert_eq!(bdat_args("x"), None);
        assert_eq!(bdat_args("1 LAST more"), None);
        assert_eq!(bdat_args("-1"), None);
    }

    #[test]
    fn paths_parse_as_postfix_reads_them() {
        assert_eq!(path_arg("FROM:<a@b>", "FROM"), Some(("a@b", "")));
        assert_eq!(path_arg("from: <a@b> SIZE=10", "FROM"), Some(("a@b", "SIZE=10")));
        assert_eq!(path_arg("FROM:<>", "FROM"), Some(("", "")));
        assert_eq!(path_arg("TO:bob", "TO"), Some(("bob", "")));
        assert_eq!(path_arg("FROM <a@b>", "FROM"), None);
        assert_eq!(path_arg("TO:<unterminated", "TO"), None);
        assert_eq!(path_arg("T", "TO"), None);
    }

    #[test]
    fn the_ehlo_list_follows_the_release() {
        let p = Persona::derive("mx", None, None, 1_764_759_600);
        let ubuntu = Facts::of(&p.clone().with_overrides(&serde_json::json!({"release": "ubuntu-22.04"})).unwrap());
        let names: Vec<String> = ubuntu.ehlo(false).lines().skip(1).map(|l| l[4..].to_string()).collect();
        assert_eq!(
            names,
            [
                "PIPELINING",
                "SIZE 10240000",
                "VRFY",
                "ETRN",
                "STARTTLS",
                "ENHANCEDSTATUSCODES",
                "8BITMIME",
                "DSN",
                "SMTPUTF8",
                "CHUNKING"
            ]
        );
        assert!(!ubuntu.ehlo(true).contains("STARTTLS"), "not offered again inside TLS");
        assert!(ubuntu.banner.ends_with(" ESMTP Postfix (Ubuntu)\r\n"));
        let centos = Facts::of(&p.with_overrides(&serde_json::json!({"release": "centos-7"})).unwrap());
        assert!(!centos.ehlo(false).contains("STARTTLS") && !centos.ehlo(false).contains("CHUNKING"));
        assert!(centos.banner.ends_with(" ESMTP Postfix\r\n"));
    }
}
