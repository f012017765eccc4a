//! SMTP honeypot (Postfix-like): banner, EHLO/HELO, AUTH PLAIN and AUTH
//! LOGIN (credentials recorded, then accepted: an open relay with "valid"
//! credentials is what spammers probe for), MAIL/RCPT/DATA (the message is
//! read, bounded, and summarised in a `message` line, never stored), RSET,
//! NOOP, QUIT.

use base64::Engine as _;
use tokio::net::TcpStream;

use super::event::{self, SharedSession};
use super::io::{printable, Conn, End, Metered};
use crate::events::rfc5424::Severity;

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

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let (decky, limits) = event::with(&session, |s| (s.decky().to_string(), s.limits().clone()));
    let mut conn = Conn::new(io, limits.max_line, limits.idle);
    if let Err(e) = conn.send_str(&format!("220 {decky} ESMTP Postfix (Ubuntu)\r\n")).await {
        return e;
    }
    let mut from = String::new();
    let mut rcpts: Vec<String> = Vec::new();
    loop {
        let raw = match conn.read_line().await {
            Ok(l) => l,
            Err(e) => return e,
        };
        let line = printable(&raw);
        let trimmed = line.trim();
        let (verb, arg) = match trimmed.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_string()),
            None => (trimmed.to_ascii_uppercase(), String::new()),
        };
        if verb != "AUTH" && !verb.is_empty() {
            event::with(&session, |s| s.command(trimmed));
        }
        let reply: String = match verb.as_str() {
            "EHLO" => format!(
                "250-{decky}\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
            ),
            "HELO" => format!("250 {decky}\r\n"),
            "AUTH" => {
                let mut words = arg.split_whitespace();
                let mech = words.next().unwrap_or("").to_ascii_uppercase();
                let initial = words.next().map(str::to_string);
                event::with(&session, |s| s.command(&format!("AUTH {mech}")));
                match mech.as_str() {
                    "PLAIN" => {
                        let encoded = match initial {
                            Some(i) => i,
                            None => {
                                if let Err(e) = conn.send_str("334 \r\n").await {
                                    return e;
                                }
                                match conn.read_line().await {
                                    Ok(l) => printable(&l),
                                    Err(e) => return e,
                                }
                            }
                        };
                        match b64(&encoded).as_deref().and_then(split_plain) {
                            Some((user, pass)) => {
                                event::with(&session, |s| s.login_attempt(&user, &pass, "plain", vec![]));
                                "235 2.7.0 Authentication successful\r\n".into()
                            }
                            None => "501 5.5.2 Cannot decode response\r\n".into(),
                        }
                    }
                    "LOGIN" => {
                        let user = match initial {
                            Some(i) => i,
                            None => {
                                if let Err(e) = conn.send_str("334 VXNlcm5hbWU6\r\n").await {
                                    return e;
                                }
                                match conn.read_line().await {
                                    Ok(l) => printable(&l),
                                    Err(e) => return e,
                                }
                            }
                        };
                        if let Err(e) = conn.send_str("334 UGFzc3dvcmQ6\r\n").await {
                            return e;
                        }
                        let pass = match conn.read_line().await {
                            Ok(l) => printable(&l),
                            Err(e) => return e,
                        };
                        match (b64(&user), b64(&pass)) {
                            (Some(u), Some(p)) => {
                                let u = printable(&u);
                                event::with(&session, |s| s.login_attempt(&u, &p, "login", vec![]));
                                "235 2.7.0 Authentication successful\r\n".into()
                            }
                            _ => "501 5.5.2 Cannot decode response\r\n".into(),
                        }
                    }
                    _ => "504 5.5.4 Unrecognized authentication type\r\n".into(),
                }
            }
            "MAIL" => {
                from = arg.trim_start_matches(|c: char| c != ':').trim_start_matches(':').trim().to_string();
                rcpts.clear();
                "250 2.1.0 Ok\r\n".into()
            }
            "RCPT" => {
                if rcpts.len() < 100 {
                    rcpts.push(arg.trim_start_matches(|c: char| c != ':').trim_start_matches(':').trim().to_string());
                }
                "250 2.1.5 Ok\r\n".into()
            }
            "DATA" => {
                if rcpts.is_empty() {
                    "554 5.5.1 Error: no valid recipients\r\n".into()
                } else {
                    if let Err(e) = conn.send_str("354 End data with <CR><LF>.<CR><LF>\r\n").await {
                        return e;
                    }
                    let (mut size, mut subject) = (0usize, String::new());
                    loop {
                        let l = match conn.read_line().await {
                            Ok(l) => l,
                            Err(e) => return e,
                        };
                        if l == b"." {
                            break;
                        }
                        size += l.len() + 2;
                        if subject.is_empty() && l.len() > 8 && l[..8].eq_ignore_ascii_case(b"subject:") {
                            subject = printable(&l[8..]).trim().chars().take(200).collect();
                        }
                    }
                    event::with(&session, |s| {
                        s.emit(
                            "message",
                            Severity::Notice,
                            vec![
                                ("mail_from", from.clone()),
                                ("rcpt_to", rcpts.join(",")),
                                ("size", size.to_string()),
                                ("subject", subject.clone()),
                            ],
                            Some(format!("message from {from} to {} recipient(s)", rcpts.len())),
                        )
                    });
                    let id = &uuid::Uuid::new_v4().simple().to_string()[..10].to_ascii_uppercase();
                    format!("250 2.0.0 Ok: queued as {id}\r\n")
                }
            }
            "RSET" => {
                from.clear();
                rcpts.clear();
                "250 2.0.0 Ok\r\n".into()
            }
            "NOOP" => "250 2.0.0 Ok\r\n".into(),
            "VRFY" => "252 2.0.0 Cannot VRFY user\r\n".into(),
            "QUIT" => {
                let _ = conn.send_str("221 2.0.0 Bye\r\n").await;
                return End::Done;
            }
            _ => "502 5.5.2 Error: command not recognized\r\n".into(),
        };
        if let Err(e) = conn.send_str(&reply).await {
            return e;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_plain;

    #[test]
    fn plain_splits_user_and_password() {
        assert_eq!(split_plain(b"\0bob\0s3cr\0t"), Some(("bob".to_string(), b"s3cr\0t".to_vec())));
        assert_eq!(split_plain(b"bob"), None);
    }
}
