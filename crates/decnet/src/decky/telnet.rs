//! Telnet honeypot: `login:` / `Password:` prompts (any password is
//! accepted after it is recorded), then the fake shell.
//!
//! Option negotiation is reduced to what makes a real client behave: the
//! server offers to echo while the password is typed (so the client hides
//! it) and takes it back afterwards. Whatever the client negotiates is
//! stripped from its lines and otherwise ignored.

use tokio::net::TcpStream;

use super::event::{self, SharedSession};
use super::io::{printable, Conn, End, Metered};
use super::shell::Shell;

const IAC: u8 = 255;
const SB: u8 = 250;
const SE: u8 = 240;
const WILL_ECHO: [u8; 3] = [IAC, 251, 1];
const WONT_ECHO: [u8; 3] = [IAC, 252, 1];

/// Remove telnet commands (IAC sequences, subnegotiations) and NULs.
pub fn strip_telnet(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            IAC => match bytes.get(i + 1) {
                Some(&IAC) => {
                    out.push(IAC);
                    i += 2;
                }
                Some(&SB) => {
                    // Skip to IAC SE (or the end of the line).
                    let mut j = i + 2;
                    while j + 1 < bytes.len() && !(bytes[j] == IAC && bytes[j + 1] == SE) {
                        j += 1;
                    }
                    i = j + 2;
                }
                Some(251..=254) => i += 3,
                _ => i += 2,
            },
            0 => i += 1,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let (decky, limits) = event::with(&session, |s| (s.decky().to_string(), s.limits().clone()));
    let mut conn = Conn::new(io, limits.max_line, limits.idle).cr_ends_lines();
    if let Err(e) = conn.send_str(&format!("Ubuntu 22.04.3 LTS\r\n{decky} login: ")).await {
        return e;
    }
    let user = loop {
        let line = match conn.read_line().await {
            Ok(l) => printable(&strip_telnet(&l)),
            Err(e) => return e,
        };
        let user = line.trim().to_string();
        if !user.is_empty() {
            break user;
        }
        if let Err(e) = conn.send_str(&format!("{decky} login: ")).await {
            return e;
        }
    };
    let mut prompt = b"Password: ".to_vec();
    prompt.extend_from_slice(&WILL_ECHO);
    if let Err(e) = conn.send(&prompt).await {
        return e;
    }
    let password = match conn.read_line().await {
        Ok(l) => strip_telnet(&l),
        Err(e) => return e,
    };
    event::with(&session, |s| s.login_attempt(&user, &password, "password", vec![]));

    let mut shell = Shell::new(&user, &decky);
    let mut greeting = WONT_ECHO.to_vec();
    greeting.extend_from_slice(
        format!("\r\nWelcome to Ubuntu 22.04.3 LTS (GNU/Linux 5.15.0-91-generic x86_64)\r\n\r\n{}", shell.prompt())
            .as_bytes(),
    );
    if let Err(e) = conn.send(&greeting).await {
        return e;
    }
    loop {
        let line = match conn.read_line().await {
            Ok(l) => printable(&strip_telnet(&l)),
            Err(e) => return e,
        };
        let command = line.trim();
        if !command.is_empty() {
            event::with(&session, |s| s.command(command));
        }
        let outcome = shell.run(command);
        let mut out = outcome.output.replace('\n', "\r\n");
        if outcome.exit {
            out.push_str("logout\r\n");
            let _ = conn.send_str(&out).await;
            return End::Done;
        }
        out.push_str(&shell.prompt());
        if let Err(e) = conn.send_str(&out).await {
            return e;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::strip_telnet;

    #[test]
    fn negotiation_and_nuls_are_stripped() {
        assert_eq!(strip_telnet(b"\xff\xfd\x01ro\x00ot"), b"root");
        assert_eq!(strip_telnet(b"a\xff\xfa\x18\x00xterm\xff\xf0b"), b"ab");
        assert_eq!(strip_telnet(b"\xff\xffx"), b"\xffx");
        // A truncated sequence at the end never panics.
        assert_eq!(strip_telnet(b"ok\xff"), b"ok");
        assert_eq!(strip_telnet(b"ok\xff\xfa\x18"), b"ok");
    }
}
