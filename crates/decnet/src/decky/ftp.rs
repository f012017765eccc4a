//! FTP honeypot (vsftpd-like): USER/PASS recorded (any password is
//! accepted), SYST, PWD, CWD, TYPE, PASV/EPSV + LIST/NLST with a canned
//! listing, QUIT. Every command but PASS is logged as a `command` line.
//!
//! The passive data listener is bound on the decky's own address (the
//! control connection's local address) and waits for one connection for a
//! bounded time, so a client that asks for PASV and never connects costs
//! one socket for a few seconds.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::event::{self, SharedSession};
use super::io::{printable, Conn, End, Metered};

const LISTING: &str = "-rw-r--r--    1 1000     1000         4312 Nov 02 10:14 backup.sql\r\n\
drwxr-xr-x    2 1000     1000         4096 Oct 28 08:01 pub\r\n\
-rw-------    1 1000     1000          981 Sep 14 17:45 id_rsa.bak\r\n";

/// How long a passive data listener waits for its one connection.
const DATA_WAIT: Duration = Duration::from_secs(10);

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let limits = event::with(&session, |s| s.limits().clone());
    let mut conn = Conn::new(io, limits.max_line, limits.idle);
    if let Err(e) = conn.send_str("220 (vsFTPd 3.0.5)\r\n").await {
        return e;
    }
    let mut user: Option<String> = None;
    let mut logged_in = false;
    let mut cwd = "/".to_string();
    let mut passive: Option<TcpListener> = None;
    loop {
        let line = match conn.read_line().await {
            Ok(l) => printable(&l),
            Err(e) => return e,
        };
        let (verb, arg) = match line.trim().split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_string()),
            None => (line.trim().to_ascii_uppercase(), String::new()),
        };
        if verb != "PASS" && !verb.is_empty() {
            event::with(&session, |s| s.command(line.trim()));
        }
        let reply: String = match verb.as_str() {
            "USER" => {
                user = Some(arg.clone());
                "331 Please specify the password.\r\n".into()
            }
            "PASS" => match &user {
                None => "503 Login with USER first.\r\n".into(),
                Some(u) => {
                    let u = u.clone();
                    event::with(&session, |s| s.login_attempt(&u, arg.as_bytes(), "password", vec![]));
                    logged_in = true;
                    "230 Login successful.\r\n".into()
                }
            },
            "QUIT" => {
                let _ = conn.send_str("221 Goodbye.\r\n").await;
                return End::Done;
            }
            "SYST" => "215 UNIX Type: L8\r\n".into(),
            "FEAT" => "211-Features:\r\n EPSV\r\n PASV\r\n SIZE\r\n UTF8\r\n211 End\r\n".into(),
            "NOOP" => "200 NOOP ok.\r\n".into(),
            _ if !logged_in => "530 Please login with USER and PASS.\r\n".into(),
            "PWD" | "XPWD" => format!("257 \"{cwd}\" is the current directory\r\n"),
            "CWD" => {
                cwd = if arg.starts_with('/') { arg.chars().take(256).collect() } else { format!("/{arg}") };
                "250 Directory successfully changed.\r\n".into()
            }
            "TYPE" => "200 Switching to Binary mode.\r\n".into(),
            "PASV" | "EPSV" => {
                let local = match conn.stream().local_addr() {
                    Ok(a) => a,
                    Err(e) => return End::Io(e.to_string()),
                };
                match TcpListener::bind((local.ip(), 0)).await.and_then(|l| Ok((l.local_addr()?, l))) {
                    Err(_) => "425 Cannot open passive connection.\r\n".into(),
                    Ok((addr, l)) => {
                        passive = Some(l);
                        match (verb.as_str(), addr.ip()) {
                            ("PASV", std::net::IpAddr::V4(ip)) => {
                                let o = ip.octets();
                                let (p1, p2) = (addr.port() >> 8, addr.port() & 0xff);
                                format!(
                                    "227 Entering Passive Mode ({},{},{},{},{p1},{p2}).\r\n",
                                    o[0], o[1], o[2], o[3]
                                )
                            }
                            _ => format!("229 Entering Extended Passive Mode (|||{}|)\r\n", addr.port()),
                        }
                    }
                }
            }
            "LIST" | "NLST" => match passive.take() {
                None => "425 Use PORT or PASV first.\r\n".into(),
                Some(l) => {
                    if let Err(e) = conn.send_str("150 Here comes the directory listing.\r\n").await {
                        return e;
                    }
                    let body = if verb == "NLST" { "backup.sql\r\npub\r\nid_rsa.bak\r\n" } else { LISTING };
                    match tokio::time::timeout(DATA_WAIT, l.accept()).await {
                        Ok(Ok((mut data, _))) => {
                            let _ = tokio::time::timeout(DATA_WAIT, data.write_all(body.as_bytes())).await;
                            let _ = data.shutdown().await;
                            "226 Directory send OK.\r\n".into()
                        }
                        _ => "425 Failed to establish connection.\r\n".into(),
                    }
                }
            },
            "RETR" | "SIZE" => "550 Failed to open file.\r\n".into(),
            "STOR" | "STOU" | "APPE" | "DELE" | "MKD" | "RMD" => "550 Permission denied.\r\n".into(),
            "" => "500 Unknown command.\r\n".into(),
            _ => "500 Unknown command.\r\n".into(),
        };
        if let Err(e) = conn.send_str(&reply).await {
            return e;
        }
    }
}
