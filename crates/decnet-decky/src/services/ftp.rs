//! FTP honeypot: the persona's vsftpd, with Debian/Ubuntu's default
//! configuration (local users on, writes off, no TLS). Every reply is the
//! one real vsftpd 3.0.x gives (checked side by side in
//! `crates/decnet/tests/native_lineproto.rs`).
//!
//! Logins: anonymous only when the persona allows it (otherwise
//! `anonymous` is just a user name with no account, as in vsftpd with
//! `anonymous_enable=NO`); a password gets in per the persona's auth
//! policy ([`crate::auth`]); the accounts of Debian's `/etc/ftpusers`
//! (root and the system users) never do. A failure is answered after
//! vsftpd's delay (its own second plus PAM's two), and the third failure
//! ends the session, as vsftpd's `max_login_fails` does.
//!
//! Listings come from the persona ([`super::ftp_listing`]): a fresh
//! host's home directory. Files cannot be read or written.
//!
//! The passive data listener is bound on the decky's own address (the
//! control connection's local address), accepts only the control
//! connection's peer (vsftpd's `pasv_promiscuous=NO`), and waits a bounded
//! time, so a client that asks for PASV and never connects costs one
//! socket for a few seconds. Active mode (PORT/EPRT) is accepted but never
//! connects out: the decky opens no connection to anyone.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::ftp_listing;
use crate::event::{self, SharedSession};
use crate::io::{printable, Conn, End, Metered};
use crate::Persona;

/// How long a passive data listener waits for its one connection.
const DATA_WAIT: Duration = Duration::from_secs(10);

/// vsftpd's `delay_failed_login` (1 s) plus pam_unix's failure delay
/// (about 2 s): real vsftpd 3.0.3 answered a wrong password after 3.2 s.
pub const FAILED_LOGIN_DELAY: Duration = Duration::from_secs(3);

/// vsftpd's `max_login_fails`.
const MAX_LOGIN_FAILS: u32 = 3;

/// Accounts Debian's `/etc/ftpusers` bars from FTP.
const FTPUSERS: &[&str] =
    &["root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "nobody"];

const FEAT: &str = "211-Features:\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n211 End\r\n";

const HELP: &str = "214-The following commands are recognized.\r\n \
ABOR ACCT ALLO APPE CDUP CWD  DELE EPRT EPSV FEAT HELP LIST MDTM MKD\r\n \
MODE NLST NOOP OPTS PASS PASV PORT PWD  QUIT REIN REST RETR RMD  RNFR\r\n \
RNTO SITE SIZE SMNT STAT STOR STOU STRU SYST TYPE USER XCUP XCWD XMKD\r\n \
XPWD XRMD\r\n214 Help OK.\r\n";

/// The `ftp` entry of [`super::REGISTRY`].
pub struct Ftp;

impl super::Protocol for Ftp {
    fn name(&self) -> &'static str {
        "ftp"
    }
    fn default_port(&self) -> u16 {
        21
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// The vsftpd version the persona runs (a persona without vsftpd, which
/// an operator gave an FTP service anyway, runs Ubuntu 22.04's).
pub fn version(persona: &Persona) -> &str {
    persona.ftp_server.strip_prefix("vsftpd ").filter(|v| !v.is_empty()).unwrap_or("3.0.5")
}

/// Who is logged in.
struct Login {
    /// The name STAT reports (`ftp` for anonymous, as vsftpd's `ftp_username`).
    name: String,
    anonymous: bool,
    home: String,
    uid: u32,
}

/// Where the next transfer's data connection comes from.
enum DataPort {
    None,
    Passive(TcpListener),
    /// PORT/EPRT: accepted, never connected.
    Active,
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let (limits, ctx, peer) = event::with(&session, |s| (s.limits().clone(), s.context().clone(), s.peer));
    let persona = ctx.persona.clone();
    let mut conn = Conn::new(io, limits.max_line, limits.idle);
    if let Err(e) = conn.send_str(&format!("220 (vsFTPd {})\r\n", version(&persona))).await {
        return e;
    }
    let mut user: Option<String> = None;
    let mut login: Option<Login> = None;
    let mut fails = 0u32;
    let mut cwd = String::new();
    let mut ascii = true;
    let mut epsv_all = false;
    let mut data = DataPort::None;
    loop {
        let raw = match conn.read_line().await {
            Ok(l) => l,
            Err(End::Idle) => {
                let _ = conn.send_str("421 Timeout.\r\n").await;
                return End::Idle;
            }
            Err(e) => return e,
        };
        let line = printable(&raw);
        // vsftpd splits at the first space and upper-cases the verb only.
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.to_string()),
            None => (line.to_ascii_uppercase(), String::new()),
        };
        if verb.is_empty() && arg.is_empty() {
            // vsftpd ignores an empty line (NAT devices send them).
            continue;
        }
        if verb != "PASS" {
            event::with(&session, |s| s.command(line.trim()));
        }
        let Some(who) = &login else {
            let reply: String = match verb.as_str() {
                "USER" => {
                    user = Some(arg.chars().take(256).collect());
                    "331 Please specify the password.\r\n".into()
                }
                "PASS" => match user.take() {
                    None => "503 Login with USER first.\r\n".into(),
                    Some(name) => {
                        let anonymous = persona.ftp_anonymous && matches!(name.as_str(), "anonymous" | "ftp");
                        // With anonymous off, `anonymous` is a user with no
                        // account: it never gets in, whatever the count.
                        let barred = FTPUSERS.contains(&name.as_str())
                            || (!persona.ftp_anonymous && matches!(name.as_str(), "anonymous" | "ftp"));
                        let accepted =
                            anonymous || (!barred && ctx.auth.check(&persona.auth, peer.ip(), &name, arg.as_bytes()));
                        event::with(&session, |s| {
                            s.login_attempt(
                                &name,
                                arg.as_bytes(),
                                "password",
                                vec![("result", if accepted { "accepted" } else { "refused" }.to_string())],
                            )
                        });
                        if accepted {
                            let (home, uid) =
                                if anonymous { ("/".to_string(), 0) } else { ftp_listing::home_of(&persona, &name) };
                            cwd = home.clone();
                            let name = if anonymous { "ftp".to_string() } else { name };
                            login = Some(Login { name, anonymous, home, uid });
                            "230 Login successful.\r\n".into()
                        } else {
                            tokio::time::sleep(FAILED_LOGIN_DELAY).await;
                            fails += 1;
                            if fails >= MAX_LOGIN_FAILS {
                                let _ = conn.send_str("530 Login incorrect.\r\n").await;
                                return End::Done;
                            }
                            "530 Login incorrect.\r\n".into()
                        }
                    }
                },
                "FEAT" => FEAT.into(),
                "OPTS" => opts(&arg).into(),
                "QUIT" => {
                    let _ = conn.send_str("221 Goodbye.\r\n").await;
                    return End::Done;
                }
                _ => "530 Please login with USER and PASS.\r\n".into(),
            };
            if let Err(e) = conn.send_str(&reply).await {
                return e;
            }
            continue;
        };
        let reply: String = match verb.as_str() {
            "USER" if who.anonymous => "530 Can't change from guest user.\r\n".into(),
            "USER" => "530 Can't change to another user.\r\n".into(),
            "PASS" => "230 Already logged in.\r\n".into(),
            "QUIT" => {
                let _ = conn.send_str("221 Goodbye.\r\n").await;
                return End::Done;
            }
            "SYST" => "215 UNIX Type: L8\r\n".into(),
            "FEAT" => FEAT.into(),
            "OPTS" => opts(&arg).into(),
            "HELP" => HELP.into(),
            "NOOP" => "200 NOOP ok.\r\n".into(),
            "STAT" if arg.is_empty() => stat(&persona, peer.ip(), &who.name, ascii),
            "PWD" | "XPWD" => format!("257 \"{cwd}\" is the current directory\r\n"),
            "CWD" | "XCWD" | "CDUP" | "XCUP" => {
                let target = if verb.ends_with("UP") { ".." } else { arg.as_str() };
                match change_dir(&persona, who, &cwd, target) {
                    Some(dir) => {
                        cwd = dir;
                        "250 Directory successfully changed.\r\n".into()
                    }
                    None => "550 Failed to change directory.\r\n".into(),
                }
            }
            "TYPE" => match arg.to_ascii_uppercase().as_str() {
                "I" | "L8" | "L 8" => {
                    ascii = false;
                    "200 Switching to Binary mode.\r\n".into()
                }
                "A" | "A N" => {
                    ascii = true;
                    "200 Switching to ASCII mode.\r\n".into()
                }
                _ => "500 Unrecognised TYPE command.\r\n".into(),
            },
            "MODE" if arg.eq_ignore_ascii_case("S") => "200 Mode set to S.\r\n".into(),
            "MODE" => "504 Bad MODE command.\r\n".into(),
            "STRU" if arg.eq_ignore_ascii_case("F") => "200 Structure set to F.\r\n".into(),
            "STRU" => "504 Bad STRU command.\r\n".into(),
            "ALLO" => "202 ALLO command ignored.\r\n".into(),
            "ABOR" => "225 No transfer to ABOR.\r\n".into(),
            "ACCT" => "502 ACCT not implemented.\r\n".into(),
            "SMNT" => "502 SMNT not implemented.\r\n".into(),
            "REIN" => "502 REIN not implemented.\r\n".into(),
            "REST" => format!("350 Restart position accepted ({}).\r\n", arg.trim().parse::<u64>().unwrap_or(0)),
            "EPSV" if arg.eq_ignore_ascii_case("ALL") => {
                epsv_all = true;
                "200 EPSV ALL ok.\r\n".into()
            }
            "PASV" | "PORT" | "EPRT" if epsv_all => format!("550 {verb} denied after EPSV ALL.\r\n"),
            "PASV" | "EPSV" => {
                let local = match conn.stream().local_addr() {
                    Ok(a) => a,
                    Err(e) => return End::Io(e.to_string()),
                };
                match TcpListener::bind((local.ip(), 0)).await.and_then(|l| Ok((l.local_addr()?, l))) {
                    Err(_) => "425 Cannot open passive connection.\r\n".into(),
                    Ok((addr, l)) => {
                        data = DataPort::Passive(l);
                        passive_reply(&verb, addr)
                    }
                }
            }
            "PORT" | "EPRT" => match active_address(&verb, &arg) {
                Some(ip) if ip == peer.ip() => {
                    data = DataPort::Active;
                    if verb == "PORT" {
                        "200 PORT command successful. Consider using PASV.\r\n".into()
                    } else {
                        "200 EPRT command successful. Consider using EPSV.\r\n".into()
                    }
                }
                _ => format!("500 Illegal {verb} command.\r\n"),
            },
            // STAT with a path: the listing on the control connection,
            // dot files included (vsftpd lists them there without -a).
            "STAT" => {
                let (_, path) = list_args(&arg);
                let entries = entries_of(&persona, who, &resolve(&cwd, &path.unwrap_or_default()));
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                format!("213-Status follows:\r\n{}213 End of status\r\n", ftp_listing::list(&entries, true, now))
            }
            "LIST" | "NLST" => {
                let (all, path) = list_args(&arg);
                let entries = entries_of(&persona, who, &resolve(&cwd, &path.unwrap_or_default()));
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let body = if verb == "NLST" {
                    ftp_listing::names(&entries, all)
                } else {
                    ftp_listing::list(&entries, all, now)
                };
                match std::mem::replace(&mut data, DataPort::None) {
                    DataPort::None => "425 Use PORT or PASV first.\r\n".into(),
                    DataPort::Active => "425 Failed to establish connection.\r\n".into(),
                    DataPort::Passive(l) => match accept_from(&l, peer.ip()).await {
                        Err(reply) => reply.into(),
                        Ok(mut stream) => {
                            if let Err(e) = conn.send_str("150 Here comes the directory listing.\r\n").await {
                                return e;
                            }
                            let _ = tokio::time::timeout(DATA_WAIT, stream.write_all(body.as_bytes())).await;
                            let _ = stream.shutdown().await;
                            "226 Directory send OK.\r\n".into()
                        }
                    },
                }
            }
            "RETR" => match std::mem::replace(&mut data, DataPort::None) {
                DataPort::None => "425 Use PORT or PASV first.\r\n".into(),
                _ => "550 Failed to open file.\r\n".into(),
            },
            "SIZE" => "550 Could not get file size.\r\n".into(),
            "MDTM" => "550 Could not get file modification time.\r\n".into(),
            // write_enable=NO, Debian's default.
            "STOR" | "STOU" | "APPE" | "DELE" | "MKD" | "XMKD" | "RMD" | "XRMD" | "RNFR" | "RNTO" | "SITE" => {
                "550 Permission denied.\r\n".into()
            }
            _ => "500 Unknown command.\r\n".into(),
        };
        if let Err(e) = conn.send_str(&reply).await {
            return e;
        }
    }
}

/// What `dir` holds for the logged-in user.
fn entries_of(persona: &Persona, who: &Login, dir: &str) -> Vec<ftp_listing::Entry> {
    if who.anonymous {
        if dir == "/" {
            ftp_listing::anonymous_root(persona)
        } else {
            Vec::new()
        }
    } else {
        ftp_listing::directory(persona, dir, &who.home, who.uid)
    }
}

/// OPTS: vsftpd knows only `UTF8 ON`.
fn opts(arg: &str) -> &'static str {
    if arg.eq_ignore_ascii_case("UTF8 ON") {
        "200 Always in UTF8 mode.\r\n"
    } else {
        "501 Option not understood.\r\n"
    }
}

/// STAT without a path, as vsftpd prints it.
fn stat(persona: &Persona, client: IpAddr, name: &str, ascii: bool) -> String {
    format!(
        "211-FTP server status:\r\n     Connected to {client}\r\n     Logged in as {name}\r\n     TYPE: {}\r\n     \
No session bandwidth limit\r\n     Session timeout in seconds is 300\r\n     Control connection is plain text\r\n     \
Data connections will be plain text\r\n     At session startup, client count was 1\r\n     \
vsFTPd {} - secure, fast, stable\r\n211 End of status\r\n",
        if ascii { "ASCII" } else { "BINARY" },
        version(persona)
    )
}

fn passive_reply(verb: &str, addr: SocketAddr) -> String {
    match (verb, addr.ip()) {
        ("PASV", IpAddr::V4(ip)) => {
            let o = ip.octets();
            let (p1, p2) = (addr.port() >> 8, addr.port() & 0xff);
            format!("227 Entering Passive Mode ({},{},{},{},{p1},{p2}).\r\n", o[0], o[1], o[2], o[3])
        }
        _ => format!("229 Entering Extended Passive Mode (|||{}|)\r\n", addr.port()),
    }
}

/// The address a PORT (`h1,h2,h3,h4,p1,p2`) or EPRT (`|1|ip|port|`) names.
fn active_address(verb: &str, arg: &str) -> Option<IpAddr> {
    if verb == "PORT" {
        let n: Vec<u8> = arg.trim().split(',').map(|p| p.trim().parse().ok()).collect::<Option<_>>()?;
        (n.len() == 6).then(|| IpAddr::from([n[0], n[1], n[2], n[3]]))
    } else {
        let delim = arg.chars().next()?;
        let parts: Vec<&str> = arg.split(delim).collect();
        parts.get(2)?.parse().ok()
    }
}

/// The one data connection of a passive transfer, from the client only.
async fn accept_from(listener: &TcpListener, client: IpAddr) -> Result<TcpStream, &'static str> {
    match tokio::time::timeout(DATA_WAIT, listener.accept()).await {
        Ok(Ok((stream, from))) if from.ip() == client => Ok(stream),
        Ok(Ok(_)) => Err("425 Security: Bad IP connecting.\r\n"),
        _ => Err("425 Failed to establish connection.\r\n"),
    }
}

/// LIST/NLST arguments: `-a` style options (only `a` matters), then a path.
fn list_args(arg: &str) -> (bool, Option<String>) {
    let mut all = false;
    let mut path = None;
    for word in arg.split_whitespace() {
        match word.strip_prefix('-') {
            Some(flags) => all |= flags.contains('a'),
            None => path = Some(word.to_string()),
        }
    }
    (all, path)
}

/// `target` resolved against `cwd` (`.` and `..` folded, never above `/`).
fn resolve(cwd: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') { Vec::new() } else { cwd.split('/').collect() };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let joined: String = parts.iter().filter(|p| !p.is_empty()).map(|p| format!("/{p}")).collect();
    if joined.is_empty() {
        "/".into()
    } else {
        joined.chars().take(1024).collect()
    }
}

/// The directory CWD lands in, if it exists: the user's home, its
/// parents, and the top-level directories every Linux host has.
fn change_dir(persona: &Persona, who: &Login, cwd: &str, target: &str) -> Option<String> {
    if target.is_empty() {
        return None;
    }
    let dir = resolve(cwd, target);
    if who.anonymous {
        return (dir == "/" || (dir == "/pub" && persona.os_id == "centos")).then_some(dir);
    }
    const TOP: &[&str] =
        &["/", "/bin", "/boot", "/dev", "/etc", "/home", "/opt", "/root", "/srv", "/tmp", "/usr", "/var"];
    let known = TOP.contains(&dir.as_str())
        || dir == who.home
        || persona.users.iter().any(|u| u.home == dir)
        || who.home.starts_with(&format!("{dir}/"));
    known.then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_like_a_shell_and_never_escape_the_root() {
        assert_eq!(resolve("/home/jsmith", ".."), "/home");
        assert_eq!(resolve("/home/jsmith", "../../../../etc"), "/etc");
        assert_eq!(resolve("/", "./a//b/."), "/a/b");
        assert_eq!(resolve("/home", "/tmp"), "/tmp");
    }

    #[test]
    fn list_options_and_active_addresses_parse() {
        assert_eq!(list_args("-la /tmp"), (true, Some("/tmp".into())));
        assert_eq!(list_args(""), (false, None));
        assert_eq!(active_address("PORT", "127,0,0,1,4,1"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(active_address("PORT", "1,2,3"), None);
        assert_eq!(active_address("PORT", "300,0,0,1,4,1"), None);
        assert_eq!(active_address("EPRT", "|2|::1|5282|"), Some("::1".parse().unwrap()));
    }
}
