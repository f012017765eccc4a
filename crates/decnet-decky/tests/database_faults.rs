//! The database protocols' fault paths over real loopback sockets: each
//! malformed or unexpected client message gets what the real server sends
//! it (or the silent close it does), and only that session ends. The
//! happy paths are driven by the real clients in
//! `crates/decnet/tests/services_databases.rs`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use decnet_decky::listener::ServiceListener;
use decnet_decky::services::mysql::native_scramble;
use decnet_decky::sink::LineSink;
use decnet_decky::{DeckyContext, Limits, Persona};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::collector;

struct Served {
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    _listener: ServiceListener,
}

async fn serve(service: &'static str, release: &str) -> Served {
    let (collector, lines) = collector().await;
    let sink = LineSink::start(collector, 10_000, Default::default());
    let persona = Persona::derive("db-01", Some("database-host"), None, 1_764_000_000)
        .with_overrides(&serde_json::json!({
            "release": release,
            "auth": { "accept_after": [0, 0], "credentials": [["app", "S3cret"]] },
        }))
        .unwrap();
    let ctx = DeckyContext::new("db-01", persona, sink, Limits::default(), b"faults");
    let listener = ServiceListener::open(ctx, service, "127.0.0.1:0".parse().unwrap()).unwrap();
    Served { addr: listener.addr, lines, _listener: listener }
}

/// Send `bytes`, then everything the server says until it closes (at
/// most 5 s: every case here ends with the server closing).
async fn exchange(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    stream.write_all(bytes).await.unwrap();
    let mut all = Vec::new();
    // A reset is a close too: a server that stops reading with bytes
    // still unread (a length it refused) makes the kernel send RST.
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut all))
        .await
        .expect("the server closes the session");
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn line_with(lines: &Arc<Mutex<Vec<String>>>, needle: &str) -> String {
    for _ in 0..250 {
        if let Some(l) = lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no line with {needle}: {:?}", lines.lock().unwrap());
}

// ---- mysql ----

/// A MySQL packet.
fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    p.push(seq);
    p.extend_from_slice(payload);
    p
}

/// A 4.1 login with `response` for the native plugin.
fn mysql_login(user: &str, response: &[u8]) -> Vec<u8> {
    let caps: u32 = 0x200 | 0x8000 | 0x80000; // PROTOCOL_41, SECURE_CONNECTION, PLUGIN_AUTH
    let mut p = caps.to_le_bytes().to_vec();
    p.extend_from_slice(&(1u32 << 24).to_le_bytes());
    p.push(33);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    p.push(response.len() as u8);
    p.extend_from_slice(response);
    p.extend_from_slice(b"mysql_native_password\0");
    packet(1, &p)
}

/// Connect and read the handshake; its 20-byte salt.
async fn mysql_hello(addr: SocketAddr) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut header = [0u8; 4];
    s.read_exact(&mut header).await.unwrap();
    let mut hello = vec![0u8; u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize];
    s.read_exact(&mut hello).await.unwrap();
    let version_end = hello.iter().position(|b| *b == 0).unwrap();
    let part1 = &hello[version_end + 5..version_end + 13];
    let part2 = &hello[version_end + 32..version_end + 44];
    (s, [part1, part2].concat())
}

#[tokio::test]
async fn mysql_faults_get_the_servers_answers() {
    let served = serve("mysql", "debian-12").await;

    // Not a login at all: mysqld's pre-4.1 style "Bad handshake".
    let (mut s, _) = mysql_hello(served.addr).await;
    let got = exchange(&mut s, &packet(1, b"\x01\x02\x03")).await;
    assert_eq!(got, b"\x10\x00\x00\x02\xff\x13\x04Bad handshake");

    // No password: the error says so, and the attempt is a credential.
    let (mut s, _) = mysql_hello(served.addr).await;
    let got = exchange(&mut s, &mysql_login("nopass", b"")).await;
    assert!(contains(&got, b"#28000Access denied for user 'nopass'@'127.0.0.1' (using password: NO)"), "{got:?}");
    let line = line_with(&served.lines, "username=\"nopass\"").await;
    assert!(line.contains("auth_method=\"none\"") && line.contains("secret_b64=\"\""), "{line}");

    // A listed credential gets in; an unknown command is refused, a
    // query recorded, COM_QUIT closes.
    let (mut s, salt) = mysql_hello(served.addr).await;
    s.write_all(&mysql_login("app", &native_scramble(b"S3cret", &salt))).await.unwrap();
    let mut ok = [0u8; 11];
    s.read_exact(&mut ok).await.unwrap();
    assert_eq!(ok, *b"\x07\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00");
    s.write_all(&packet(0, b"\x1fbogus")).await.unwrap();
    let mut err = vec![0u8; 4 + 1 + 2 + 6 + "Unknown command".len()];
    s.read_exact(&mut err).await.unwrap();
    assert!(contains(&err, b"\xff\x17\x04#08S01Unknown command"), "{err:?}");
    s.write_all(&packet(0, b"\x03DROP TABLE users")).await.unwrap();
    let mut query_ok = [0u8; 11];
    s.read_exact(&mut query_ok).await.unwrap();
    assert_eq!(query_ok[4], 0, "an OK");
    assert!(exchange(&mut s, &packet(0, b"\x01")).await.is_empty());
    line_with(&served.lines, "command=\"DROP TABLE users\"").await;

    // A wrong scramble of a listed user is refused.
    let (mut s, salt) = mysql_hello(served.addr).await;
    let got = exchange(&mut s, &mysql_login("app", &native_scramble(b"s3cret", &salt))).await;
    assert!(contains(&got, b"Access denied for user 'app'"));
}

// ---- postgres ----

fn startup(params: &[(&str, &str)], terminated: bool) -> Vec<u8> {
    let mut body = 196608u32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    if terminated {
        body.push(0);
    }
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Connect, send a startup for bob and read the SCRAM request.
async fn pg_scram(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&startup(&[("user", "bob")], true)).await.unwrap();
    let mut request = [0u8; 24];
    s.read_exact(&mut request).await.unwrap();
    assert_eq!(&request, b"R\x00\x00\x00\x17\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00");
    s
}

#[tokio::test]
async fn postgres_faults_get_the_servers_answers() {
    let served = serve("postgres", "debian-12").await;
    let fresh = || async { TcpStream::connect(served.addr).await.unwrap() };

    let got = exchange(&mut fresh().await, &startup(&[("database", "x")], true)).await;
    assert!(contains(
        &got,
        b"C28000\x00Mno PostgreSQL user name specified in startup packet\x00Fpostmaster.c\x00L2349"
    ));
    let got = exchange(&mut fresh().await, &startup(&[("user", "bob")], false)).await;
    assert!(contains(
        &got,
        b"C08P01\x00Minvalid startup packet layout: expected terminator as last byte\x00Fpostmaster.c\x00L2332"
    ));
    // Lengths PostgreSQL drops without a word: too short, too long; and a cancel.
    for bytes in [
        &b"\x00\x00\x00\x04"[..],
        b"\x00\x00\x4e\x21\x00\x03\x00\x00",
        b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x00\x01\x00\x00\x00\x02",
    ] {
        assert!(exchange(&mut fresh().await, bytes).await.is_empty(), "{bytes:?}");
    }

    let mut s = pg_scram(served.addr).await;
    let got = exchange(&mut s, &message(b'Q', b"select 1\0")).await;
    assert!(contains(&got, b"Mexpected SASL response, got message type 81\x00Fauth-sasl.c\x00L95\x00RCheckSASLAuth"));
    let mut s = pg_scram(served.addr).await;
    let got = exchange(&mut s, &message(b'p', b"X\x00\x00\x00\x00\x01a")).await;
    assert!(contains(&got, b"Mclient selected an invalid SASL authentication mechanism\x00Fauth-scram.c\x00L256"));
    let mut s = pg_scram(served.addr).await;
    let got = exchange(&mut s, &message(b'p', b"SCRAM-SHA-256\x00\x00\x00\x00\x05junk!")).await;
    assert!(contains(&got, b"Mmalformed SCRAM message\x00Fauth-scram.c\x00L1025"));
    let mut s = pg_scram(served.addr).await;
    let first = b"n,,n=,r=abcdef";
    let mut body = b"SCRAM-SHA-256\x00".to_vec();
    body.extend_from_slice(&(first.len() as i32).to_be_bytes());
    body.extend_from_slice(first);
    s.write_all(&message(b'p', &body)).await.unwrap();
    let mut header = [0u8; 5];
    s.read_exact(&mut header).await.unwrap();
    let mut server_first = vec![0u8; u32::from_be_bytes(header[1..].try_into().unwrap()) as usize - 4];
    s.read_exact(&mut server_first).await.unwrap();
    assert!(server_first.starts_with(b"\x00\x00\x00\x0br=abcdef"), "{server_first:?}");
    let got = exchange(&mut s, &message(b'p', b"c=biws,r=zz")).await;
    assert!(contains(&got, b"Mmalformed SCRAM message\x00Fauth-scram.c\x00L825\x00Rread_any_attr"));
}

#[tokio::test]
async fn postgres_md5_takes_a_cleartext_answer_as_the_password() {
    let served = serve("postgres", "debian-11").await;
    let mut s = TcpStream::connect(served.addr).await.unwrap();
    s.write_all(&startup(&[("user", "eve"), ("database", "crm")], true)).await.unwrap();
    let mut request = [0u8; 13];
    s.read_exact(&mut request).await.unwrap();
    assert_eq!(&request[..9], b"R\x00\x00\x00\x0c\x00\x00\x00\x05", "md5 with a 4-byte salt");
    let got = exchange(&mut s, &message(b'p', b"hunter2\0")).await;
    assert!(contains(
        &got,
        b"SFATAL\x00VFATAL\x00C28P01\x00Mpassword authentication failed for user \"eve\"\x00Fauth.c"
    ));
    let line = line_with(&served.lines, "username=\"eve\"").await;
    assert!(line.contains("secret_b64=\"aHVudGVyMg==\"") && line.contains("database=\"crm\""), "{line}");
    // A message other than a password under md5: the session just closes.
    let mut s = TcpStream::connect(served.addr).await.unwrap();
    s.write_all(&startup(&[("user", "eve")], true)).await.unwrap();
    s.read_exact(&mut request).await.unwrap();
    assert!(exchange(&mut s, &message(b'Q', b"select 1\0")).await.is_empty());
}

// ---- mssql ----

fn tds(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![kind, 0x01];
    p.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 1, 0]);
    p.extend_from_slice(payload);
    p
}

#[tokio::test]
async fn mssql_faults_close_or_refuse_as_sql_server_does() {
    let served = serve("mssql", "windows-server-2019").await;
    let fresh = || async { TcpStream::connect(served.addr).await.unwrap() };
    // A SQL batch before any login, a PRELOGIN whose options lie, a
    // second PRELOGIN: the connection is dropped.
    assert!(exchange(&mut fresh().await, &tds(0x01, b"s\x00e\x00l\x00")).await.is_empty());
    assert!(exchange(&mut fresh().await, &tds(0x12, b"\x00\xff\xf0\x00\x06\xff")).await.is_empty());
    let prelogin = tds(0x12, b"\x00\x00\x06\x00\x06\xff\x0f\x00\x00\x00\x00\x00");
    let got = exchange(&mut fresh().await, &[prelogin.clone(), prelogin].concat()).await;
    assert_eq!(got[0], 0x04, "the first PRELOGIN is answered");
    assert_eq!(got.len(), u16::from_be_bytes([got[2], got[3]]) as usize, "and nothing after the second");

    // An integrated (SSPI) login without a user: 18452, no credential.
    let mut login = vec![0u8; 94];
    login[4..8].copy_from_slice(&0x7400_0004u32.to_le_bytes());
    for field in 0..9 {
        login[36 + field * 4..38 + field * 4].copy_from_slice(&94u16.to_le_bytes());
    }
    login[78..80].copy_from_slice(&94u16.to_le_bytes());
    login[80..82].copy_from_slice(&8u16.to_le_bytes());
    login.extend_from_slice(b"NTLMSSP\0");
    let got = exchange(&mut fresh().await, &tds(0x10, &login)).await;
    assert_eq!(i32::from_le_bytes(got[11..15].try_into().unwrap()), 18452);
    let text: Vec<u8> = "untrusted domain".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    assert!(contains(&got, &text));
    line_with(&served.lines, "command=\"integrated login from \"").await;
    assert!(!served.lines.lock().unwrap().iter().any(|l| l.contains("login_attempt")));
}
