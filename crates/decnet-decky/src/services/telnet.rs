//! Telnet honeypot: the persona's telnetd and `login`, then the shell.
//!
//! Linux personas behave as netkit telnetd: the server first asks for the
//! terminal type, speed, X display and environment (`DO TTYPE, DO TSPEED,
//! DO XDISPLOC, DO NEW-ENVIRON`, exactly what nmap knows as "Linux
//! telnetd") and says nothing more until the client answers them. Then it
//! asks for the values the client offered, takes over echo and
//! go-ahead, shows `/etc/issue.net` and `login`'s prompt. The embedded
//! persona behaves as BusyBox telnetd: `DO ECHO, DO NAWS, DO LFLOW, WILL
//! ECHO, WILL SGA` and the prompt at once.
//!
//! A client that is not a telnet client (a scanner's HTTP request, a TLS
//! hello) is recorded as a `probe` and never taken for a login: a
//! netkit-flavoured decky hears it before negotiation ends (real telnetd
//! would still be waiting), a BusyBox one recognises the line. Either way
//! the decky then stays silent until the client leaves.
//!
//! A password gets in per the persona's auth policy ([`crate::auth`]);
//! a failure is answered after `login`'s delay, and the session ends
//! after the release's number of tries.

use std::time::Duration;

use tokio::net::TcpStream;

use super::telnet_wire::*;
use crate::capture::Capture;
use crate::event::{self, SharedSession};
use crate::io::{printable, End, Metered};
use crate::persona::OsFamily;
use crate::rfc5424::Severity;
use crate::shell::line_editor::{Action, LineEditor};
use crate::shell::Shell;
use crate::Persona;

/// `FAIL_DELAY` of login.defs (Debian/Ubuntu/CentOS) and BusyBox's
/// `LOGIN_FAIL_DELAY`: both 3 s.
pub const FAILED_LOGIN_DELAY: Duration = Duration::from_secs(3);

/// How long a client that began to negotiate gets to answer the rest.
const NEGOTIATION_GRACE: Duration = Duration::from_secs(2);

/// Probe lines recorded per session (the rest are dropped silently).
const MAX_PROBES: usize = 4;

/// The `telnet` entry of [`super::REGISTRY`].
pub struct Telnet;

impl super::Protocol for Telnet {
    fn name(&self) -> &'static str {
        "telnet"
    }
    fn default_port(&self) -> u16 {
        23
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// Which telnetd the persona runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Netkit,
    BusyBox,
}

pub fn flavor(persona: &Persona) -> Flavor {
    if persona.family == OsFamily::Embedded {
        Flavor::BusyBox
    } else {
        Flavor::Netkit
    }
}

/// The first bytes the server sends, before the client says anything.
pub fn opening(flavor: Flavor) -> Vec<u8> {
    match flavor {
        Flavor::Netkit => {
            vec![IAC, DO, TTYPE, IAC, DO, TSPEED, IAC, DO, XDISPLOC, IAC, DO, NEW_ENVIRON]
        }
        Flavor::BusyBox => vec![IAC, DO, ECHO, IAC, DO, NAWS, IAC, DO, LFLOW, IAC, WILL, ECHO, IAC, WILL, SGA],
    }
}

/// `/etc/issue.net` as telnetd shows it before the prompt: the release's
/// issue without getty's `\n \l`, other escapes expanded.
pub fn issue_net(persona: &Persona) -> String {
    let issue = persona.release_facts().issue;
    let issue = issue.split(" \\n \\l").next().unwrap_or("");
    let text = issue
        .replace("\\S", &persona.pretty_name)
        .replace("\\r", &persona.kernel_release)
        .replace("\\m", &persona.machine)
        .replace("\\n", &persona.hostname);
    text.trim_end_matches('\n').replace('\n', "\r\n")
}

/// `login`'s tries before it gives up: LOGIN_RETRIES 5 on Debian/Ubuntu,
/// 3 in BusyBox.
fn tries(flavor: Flavor) -> u32 {
    match flavor {
        Flavor::Netkit => 5,
        Flavor::BusyBox => 3,
    }
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let (limits, ctx, peer) = event::with(&session, |s| (s.limits().clone(), s.context().clone(), s.peer));
    let persona = ctx.persona.clone();
    let flavor = flavor(&persona);
    let mut conn = TelnetConn::new(io, limits.max_line, limits.idle);
    if let Err(e) = conn.send(&opening(flavor)).await {
        return e;
    }
    if flavor == Flavor::Netkit {
        match negotiate(&mut conn).await {
            Ok(true) => {}
            Ok(false) => return silent(&session, &mut conn).await,
            Err(e) => return e,
        }
        // Ask for what the client offered, then take over echo.
        let mut next = Vec::new();
        for option in [TSPEED, XDISPLOC, NEW_ENVIRON, TTYPE] {
            if conn.will(option) {
                next.extend_from_slice(&[IAC, SB, option, 1, IAC, SE]);
            }
        }
        next.extend_from_slice(&[IAC, WILL, SGA, IAC, DO, ECHO, IAC, DO, NAWS, IAC, WILL, STATUS, IAC, DO, LFLOW]);
        next.extend_from_slice(&[IAC, WILL, ECHO]);
        if let Err(e) = conn.send(&next).await {
            return e;
        }
        let issue = issue_net(&persona);
        if let Err(e) = conn.send_text(&format!("{issue}\r\n")).await {
            return e;
        }
    }
    let login_prompt = format!("{} login: ", persona.hostname);
    let mut failures = 0;
    let user = loop {
        if let Err(e) = conn.send_text(&login_prompt).await {
            return e;
        }
        let user = loop {
            let line = match conn.read_line(true).await {
                Ok(l) => l,
                Err(e) => return e,
            };
            if is_probe(&line) {
                record_probe(&session, &line);
                return silent(&session, &mut conn).await;
            }
            let user = printable(&line).trim().chars().take(64).collect::<String>();
            if !user.is_empty() {
                break user;
            }
            if let Err(e) = conn.send_text(&login_prompt).await {
                return e;
            }
        };
        if let Err(e) = conn.send_text("Password: ").await {
            return e;
        }
        let password = match conn.read_line(false).await {
            Ok(l) => l,
            Err(e) => return e,
        };
        let accepted = ctx.auth.check(&persona.auth, peer.ip(), &user, &password);
        event::with(&session, |s| {
            s.login_attempt(
                &user,
                &password,
                "password",
                vec![("result", if accepted { "accepted" } else { "refused" }.to_string())],
            )
        });
        if accepted {
            break user;
        }
        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
        failures += 1;
        if let Err(e) = conn.send_text("\r\nLogin incorrect\r\n").await {
            return e;
        }
        if failures >= tries(flavor) {
            return End::Done;
        }
    };

    let mut shell = Shell::new(&user, persona.clone());
    event::with(&session, |s| s.start_recording());
    let greeting = format!("\r\n{}\r\n{}", persona.motd.trim_end_matches('\n'), shell.prompt());
    if let Err(e) = send_recorded(&session, &mut conn, &greeting).await {
        return e;
    }
    let mut editor = LineEditor::new(limits.max_line);
    let mut capture = Capture::new(&session);
    loop {
        let line = match conn.read_edited(&mut editor, &shell).await {
            Ok(Action::Line(l)) => printable(l.as_bytes()),
            // Ctrl-D at an empty prompt leaves, as `exit` does.
            Ok(Action::Eof) => "exit".to_string(),
            Ok(Action::TooLong) => return End::LineTooLong,
            Err(e) => return e,
        };
        // The editor has echoed the keystrokes; the recording keeps the
        // finished line as typed and as the client's terminal shows it.
        event::with(&session, |s| {
            s.record_input(format!("{line}\r").as_bytes());
            s.record_output(format!("{line}\r\n").as_bytes());
        });
        let command = line.trim();
        if !command.is_empty() {
            event::with(&session, |s| s.command(command));
        }
        capture.settle(&mut shell);
        let outcome = shell.run(command);
        capture.drain(&mut shell);
        let mut out = outcome.output;
        if outcome.exit {
            out.push_str("logout\n");
            let _ = send_recorded(&session, &mut conn, &out).await;
            // Fetches in flight finish (bounded) so their lines are the session's.
            capture.finish().await;
            return End::Done;
        }
        out.push_str(&shell.prompt());
        if let Err(e) = send_recorded(&session, &mut conn, &out).await {
            return e;
        }
    }
}

/// Send shell text, recording it as the session's output (once: every
/// shell output goes through here).
async fn send_recorded(session: &SharedSession, conn: &mut TelnetConn, text: &str) -> Result<(), End> {
    // send_text turns LF into CRLF; the recording shows what the terminal got.
    event::with(session, |s| s.record_output(text.replace("\r\n", "\n").replace('\n', "\r\n").as_bytes()));
    conn.send_text(text).await
}

/// Wait for the client's answers to the opening. `false`: the client sent
/// data before any negotiation (not a telnet client; its data is recorded
/// as a probe). A client that negotiates but leaves some options
/// unanswered is let through after a grace period.
async fn negotiate(conn: &mut TelnetConn) -> Result<bool, End> {
    const ASKED: [u8; 4] = [TTYPE, TSPEED, XDISPLOC, NEW_ENVIRON];
    let mut grace: Option<tokio::time::Instant> = None;
    loop {
        if ASKED.iter().all(|o| conn.answered(*o)) {
            return Ok(true);
        }
        if conn.wire.answers.is_empty() && conn.pending_data() {
            return Ok(false);
        }
        if !conn.wire.answers.is_empty() && grace.is_none() {
            grace = Some(tokio::time::Instant::now() + NEGOTIATION_GRACE);
        }
        match grace {
            Some(deadline) => match tokio::time::timeout_at(deadline, conn.fill()).await {
                Err(_) => return Ok(true),
                Ok(r) => r?,
            },
            None => conn.fill().await?,
        }
    }
}

fn record_probe(session: &SharedSession, line: &[u8]) {
    let data: String = printable(line).chars().take(256).collect();
    event::with(session, |s| {
        s.emit("probe", Severity::Notice, vec![("data", data.clone())], Some(format!("non-telnet probe: {data}")))
    });
}

/// A non-telnet client: record its lines (a few) and answer nothing until
/// it leaves or idles out.
async fn silent(session: &SharedSession, conn: &mut TelnetConn) -> End {
    let mut recorded = 0;
    loop {
        if conn.pending_data() {
            let line = match conn.read_line(false).await {
                Ok(l) => l,
                Err(e) => return e,
            };
            if !line.is_empty() && recorded < MAX_PROBES {
                record_probe(session, &line);
                recorded += 1;
            }
            continue;
        }
        if let Err(e) = conn.fill().await {
            return e;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes an nmap match pattern's literal prefix stands for (up to
    /// its first group), `\xNN` escapes decoded.
    fn nmap_literal(pattern: &str) -> Vec<u8> {
        let body = pattern.trim_start_matches('^');
        let body = &body[..body.find(['(', '$']).unwrap_or(body.len())];
        let mut out = Vec::new();
        let mut rest = body;
        while let Some(c) = rest.chars().next() {
            if let Some(hex) = rest.strip_prefix("\\x") {
                out.push(u8::from_str_radix(&hex[..2], 16).unwrap());
                rest = &hex[2..];
            } else {
                out.push(c as u8);
                rest = &rest[1..];
            }
        }
        out
    }

    /// The openings are what nmap's service probes (installed with nmap by
    /// scripts/test.sh) know as Linux telnetd and BusyBox telnetd.
    #[test]
    fn openings_are_what_nmap_knows_these_servers_by() {
        let probes = std::fs::read_to_string("/usr/share/nmap/nmap-service-probes")
            .expect("nmap's service probes (scripts/test.sh installs nmap)");
        let pattern = |product: &str, starts: &str| -> String {
            let line = probes
                .lines()
                .find(|l| l.starts_with(&format!("match telnet m|{starts}")) && l.contains(product))
                .unwrap_or_else(|| panic!("no {product} match"));
            line["match telnet m|".len()..].split('|').next().unwrap().to_string()
        };
        let linux = pattern("p/Linux telnetd/", "\\xff\\xfd\\x18");
        assert_eq!(opening(Flavor::Netkit), nmap_literal(&linux));
        let busybox = pattern(
            "p/BusyBox telnetd/ h/$1/",
            "^\\xff\\xfd\\x01\\xff\\xfd\\x1f\\xff\\xfd!\\xff\\xfb\\x01\\xff\\xfb\\x03(",
        );
        assert_eq!(opening(Flavor::BusyBox), nmap_literal(&busybox));
        assert!(busybox.ends_with(") login: "), "BusyBox's prompt follows at once: {busybox}");
    }

    #[test]
    fn issue_net_comes_from_the_release() {
        let mut p = Persona::derive("web-07", None, None, 1_764_759_600);
        p = p.with_overrides(&serde_json::json!({"release": "ubuntu-22.04"})).unwrap();
        assert_eq!(issue_net(&p), "Ubuntu 22.04.4 LTS");
        p = p.with_overrides(&serde_json::json!({"release": "debian-12"})).unwrap();
        assert_eq!(issue_net(&p), "Debian GNU/Linux 12");
        p = p.with_overrides(&serde_json::json!({"release": "centos-7"})).unwrap();
        assert_eq!(issue_net(&p), format!("CentOS Linux 7 (Core)\r\nKernel {} on an x86_64", p.kernel_release));
    }
}
