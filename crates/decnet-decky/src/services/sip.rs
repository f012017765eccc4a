//! SIP (5060/udp and 5060/tcp): an Asterisk PBX's chan_sip as the
//! persona's release packages it.
//!
//! - OPTIONS: `200 OK` with Asterisk's `Server: Asterisk PBX <version>`,
//!   `Allow`, `Supported`, `Contact` and `Accept` headers (what nmap and
//!   SIP scanners name it by).
//! - REGISTER (and SUBSCRIBE, MESSAGE): `401 Unauthorized` with a fresh
//!   `WWW-Authenticate: Digest algorithm=MD5, realm="asterisk",
//!   nonce="…"`; INVITE: `407 Proxy Authentication Required` with the
//!   same challenge in `Proxy-Authenticate`. A request that carries an
//!   answer to the challenge gets `403 Forbidden`, and its digest is
//!   recorded as a `login_attempt` with `hash` in john's `$sip$` format
//!   and `hash_type="sip-digest"`.
//! - ACK gets nothing, BYE and CANCEL `481 Call/Transaction Does Not
//!   Exist`, other methods `501 Not Implemented`.
//! - Every request is one `request` line (`method`, `uri`, `user_agent`,
//!   `from`, `to`).
//!
//! Messages are bounded: one datagram, or over TCP header lines within
//! the session's line limit, at most [`MAX_HEADERS`] headers and a body
//! of at most [`MAX_BODY`] bytes read and dropped.

use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpStream;

use super::{Protocol, ServeFuture, Transport};
use crate::event::{self, SharedSession};
use crate::io::{Conn, End, Metered};
use crate::rfc5424::Severity;
use crate::udp::Datagram;
use crate::Persona;

pub struct Sip;

/// Headers read from one message; more makes it garbage.
pub const MAX_HEADERS: usize = 64;
/// Body bytes a TCP message may announce (read and dropped).
pub const MAX_BODY: usize = 16 * 1024;
/// chan_sip's default realm.
const REALM: &str = "asterisk";
const ALLOW: &str = "INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PUBLISH, MESSAGE";

impl Protocol for Sip {
    fn name(&self) -> &'static str {
        "sip"
    }
    fn default_port(&self) -> u16 {
        5060
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Udp, Transport::Tcp]
    }
    fn datagram(&self, d: &mut Datagram<'_>) -> Option<Vec<u8>> {
        let request = Request::parse(d.payload).ok()?;
        let outcome = handle(&d.ctx.persona, &request, d.local, d.peer, "UDP");
        d.request(outcome.fields.clone(), outcome.summary.clone());
        if let Some(c) = &outcome.credential {
            d.login_hash(&c.username, &c.hash, "sip-digest", c.extra.clone());
        }
        outcome.reply.filter(|r| r.len() <= d.max_reply())
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> ServeFuture {
        Box::pin(serve_tcp(session, io))
    }
}

/// SIP over TCP: messages one after another until the client closes.
async fn serve_tcp(session: SharedSession, io: Metered<TcpStream>) -> End {
    let (persona, limits) = event::with(&session, |s| (s.context().persona.clone(), s.limits().clone()));
    let (local, peer) = (io.get_ref().local_addr(), io.get_ref().peer_addr());
    let (Ok(local), Ok(peer)) = (local, peer) else { return End::Io("no address".into()) };
    let mut conn = Conn::new(io, limits.max_line, limits.idle);
    loop {
        let mut head = Vec::new();
        let mut lines = 0;
        loop {
            let line = match conn.read_line().await {
                Ok(l) => l,
                Err(end) => return end,
            };
            // Blank lines between messages are keep-alives (RFC 5626).
            if line.is_empty() && lines == 0 {
                continue;
            }
            if line.is_empty() {
                break;
            }
            lines += 1;
            if lines > MAX_HEADERS + 1 {
                return End::Done;
            }
            head.extend_from_slice(&line);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let Ok(request) = Request::parse(&head) else { return End::Done };
        let body = request.header("content-length").and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(0);
        if body > MAX_BODY {
            return End::Done;
        }
        if let Err(end) = conn.discard(body).await {
            return end;
        }
        let outcome = handle(&persona, &request, local, peer, "TCP");
        event::with(&session, |s| {
            s.emit("request", Severity::Notice, outcome.fields.clone(), Some(outcome.summary.clone()));
            if let Some(c) = &outcome.credential {
                s.username = Some(c.username.clone());
                let mut fields = vec![
                    ("username", c.username.clone()),
                    ("hash", c.hash.clone()),
                    ("hash_type", "sip-digest".to_string()),
                    ("auth_method", "sip-digest".to_string()),
                ];
                fields.extend(c.extra.iter().cloned());
                let msg = format!("sip-digest login attempt for {}", c.username);
                s.emit("login_attempt", Severity::Notice, fields, Some(msg));
            }
        });
        if let Some(reply) = outcome.reply {
            if let Err(end) = conn.send(&reply).await {
                return end;
            }
        }
    }
}

/// A parsed request: its line and headers (names lowercased, compact
/// forms expanded), values as sent.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSip(pub &'static str);

impl Request {
    pub fn parse(wire: &[u8]) -> Result<Request, NotSip> {
        let text = std::str::from_utf8(wire).map_err(|_| NotSip("not UTF-8"))?;
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        let mut lines = head.split("\r\n");
        let first = lines.next().ok_or(NotSip("empty"))?;
        let mut parts = first.split(' ');
        let (Some(method), Some(uri), Some("SIP/2.0"), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(NotSip("not a SIP request line"));
        };
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) || uri.is_empty() {
            return Err(NotSip("bad request line"));
        }
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line.split_once(':').ok_or(NotSip("header without a colon"))?;
            if headers.len() >= MAX_HEADERS {
                return Err(NotSip("too many headers"));
            }
            let name = name.trim().to_ascii_lowercase();
            let name = match name.as_str() {
                "v" => "via".to_string(),
                "f" => "from".to_string(),
                "t" => "to".to_string(),
                "i" => "call-id".to_string(),
                "m" => "contact".to_string(),
                "l" => "content-length".to_string(),
                _ => name,
            };
            headers.push((name, value.trim().to_string()));
        }
        Ok(Request { method: method.to_string(), uri: uri.to_string(), headers })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// What a request leads to.
pub struct Outcome {
    pub reply: Option<Vec<u8>>,
    pub fields: Vec<(&'static str, String)>,
    pub summary: String,
    pub credential: Option<DigestCredential>,
}

/// A Digest answer as recorded.
#[derive(Debug, Clone)]
pub struct DigestCredential {
    pub username: String,
    /// john's `$sip$` line.
    pub hash: String,
    /// `realm`, `uri`, `nonce` as sent.
    pub extra: Vec<(&'static str, String)>,
}

/// The Asterisk version the persona's PBX announces.
pub fn asterisk_version(persona: &Persona) -> String {
    persona.version_of("sip", |p| match (p.os_id.as_str(), p.version_id.as_str()) {
        ("ubuntu", "22.04") => "18.10.0~dfsg+~cs6.10.40431411-2".into(),
        ("ubuntu", "20.04") => "16.2.1~dfsg-2ubuntu1".into(),
        ("debian", "11") => "16.28.0~dfsg-0+deb11u4".into(),
        // Releases without a packaged Asterisk run a source build of the
        // LTS branch, as FreePBX installs do.
        _ => "18.20.2".into(),
    })
}

/// The answer to `request`, received at `local` from `peer`.
pub fn handle(persona: &Persona, request: &Request, local: SocketAddr, peer: SocketAddr, transport: &str) -> Outcome {
    let server = format!("Asterisk PBX {}", asterisk_version(persona));
    let fields = vec![
        ("method", request.method.clone()),
        ("uri", request.uri.clone()),
        ("user_agent", request.header("user-agent").unwrap_or("").to_string()),
        ("from", request.header("from").unwrap_or("").to_string()),
        ("to", request.header("to").unwrap_or("").to_string()),
        ("transport", transport.to_ascii_lowercase()),
    ];
    let summary = format!("{} {}", request.method, request.uri);
    let authorization = request.header("authorization").or(request.header("proxy-authorization"));
    let credential = authorization.and_then(|a| digest_hash(a, &request.method, local.ip(), peer.ip()));
    let base = |status: &str| response_head(request, status, peer, &server);
    let challenge = || format!("Digest algorithm=MD5, realm=\"{REALM}\", nonce=\"{:08x}\"", rand::random::<u32>());
    let reply = match request.method.as_str() {
        "ACK" => None,
        "OPTIONS" => {
            let mut r = base("200 OK");
            r.push_str(&format!("Allow: {ALLOW}\r\nSupported: replaces, timer\r\n"));
            r.push_str(&format!("Contact: <sip:{}:{}>\r\n", local.ip(), local.port()));
            r.push_str("Accept: application/sdp\r\n");
            Some(r)
        }
        "REGISTER" | "SUBSCRIBE" | "MESSAGE" | "INVITE" if authorization.is_some() => Some(base("403 Forbidden")),
        "REGISTER" | "SUBSCRIBE" | "MESSAGE" => {
            let mut r = base("401 Unauthorized");
            r.push_str(&format!("Allow: {ALLOW}\r\nSupported: replaces, timer\r\n"));
            r.push_str(&format!("WWW-Authenticate: {}\r\n", challenge()));
            Some(r)
        }
        "INVITE" => {
            let mut r = base("407 Proxy Authentication Required");
            r.push_str(&format!("Allow: {ALLOW}\r\nSupported: replaces, timer\r\n"));
            r.push_str(&format!("Proxy-Authenticate: {}\r\n", challenge()));
            Some(r)
        }
        "BYE" | "CANCEL" => Some(base("481 Call/Transaction Does Not Exist")),
        _ => {
            let mut r = base("501 Not Implemented");
            r.push_str(&format!("Allow: {ALLOW}\r\n"));
            Some(r)
        }
    };
    let reply = reply.map(|mut r| {
        r.push_str("Content-Length: 0\r\n\r\n");
        r.into_bytes()
    });
    Outcome { reply, fields, summary, credential }
}

/// The status line and the headers every response copies from the
/// request: Via (the top one with `received` and `rport` filled in),
/// From, To (with a tag added), Call-ID, CSeq, then `Server`.
fn response_head(request: &Request, status: &str, peer: SocketAddr, server: &str) -> String {
    let mut r = format!("SIP/2.0 {status}\r\n");
    for (i, via) in request.all("via").enumerate() {
        let via = if i == 0 {
            let filled = via.replace(";rport;", &format!(";rport={};", peer.port()));
            let filled = match filled.strip_suffix(";rport") {
                Some(head) => format!("{head};rport={}", peer.port()),
                None => filled,
            };
            format!("{filled};received={}", peer.ip())
        } else {
            via.to_string()
        };
        r.push_str(&format!("Via: {via}\r\n"));
    }
    let tag = format!("as{:08x}", rand::random::<u32>());
    let from = request.header("from").unwrap_or("");
    let to = request.header("to").unwrap_or("");
    let to = if to.contains(";tag=") { to.to_string() } else { format!("{to};tag={tag}") };
    r.push_str(&format!("From: {from}\r\nTo: {to}\r\n"));
    r.push_str(&format!("Call-ID: {}\r\n", request.header("call-id").unwrap_or("")));
    r.push_str(&format!("CSeq: {}\r\n", request.header("cseq").unwrap_or("")));
    r.push_str(&format!("Server: {server}\r\n"));
    r
}

/// The `k=v` pairs of a Digest credential (quoted values may hold commas).
pub fn digest_params(value: &str) -> Option<Vec<(String, String)>> {
    let rest = value.trim().strip_prefix("Digest")?.trim_start();
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut escaped = false;
            for c in chars.by_ref() {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => break,
                    _ => {
                        val.push(c);
                        escaped = false;
                    }
                }
            }
        } else {
            val = chars.by_ref().take_while(|c| *c != ',').collect::<String>().trim().to_string();
        }
        out.push((key.trim().to_ascii_lowercase(), val));
        if out.len() > 32 {
            return None;
        }
    }
    Some(out)
}

/// john's `$sip$` line for a Digest answer:
/// `$sip$*server*client*user*realm*method*uri_scheme*uri_host*uri_port*nonce*cnonce*nc*qop*MD5*response`.
/// `*` inside a field would shift the others, so it is dropped.
pub fn digest_hash(value: &str, method: &str, server: IpAddr, client: IpAddr) -> Option<DigestCredential> {
    let params = digest_params(value)?;
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.replace('*', "")).unwrap_or_default();
    let (user, response, uri) = (get("username"), get("response"), get("uri"));
    if user.is_empty() || response.is_empty() {
        return None;
    }
    let (scheme, rest) = uri.split_once(':').unwrap_or(("sip", uri.as_str()));
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, p),
        _ => (rest, ""),
    };
    let algorithm = if get("algorithm").is_empty() { "MD5".to_string() } else { get("algorithm") };
    let line = format!(
        "$sip$*{server}*{client}*{user}*{}*{}*{scheme}*{host}*{port}*{}*{}*{}*{}*{algorithm}*{response}",
        get("realm"),
        method.replace('*', ""),
        get("nonce"),
        get("cnonce"),
        get("nc"),
        get("qop"),
    );
    let extra = vec![("realm", get("realm")), ("uri", uri.clone()), ("nonce", get("nonce"))];
    Some(DigestCredential { username: user, hash: line, extra })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md5_hex(s: &str) -> String {
        use md5::{Digest, Md5};
        Md5::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    const OPTIONS: &str = "OPTIONS sip:nm SIP/2.0\r\nVia: SIP/2.0/UDP nm;branch=foo;rport\r\nFrom: <sip:nm@nm>;tag=root\r\nTo: <sip:nm2@nm2>\r\nCall-ID: 50000\r\nCSeq: 42 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\nContact: <sip:nm@nm>\r\nAccept: application/sdp\r\n\r\n";

    fn at() -> (SocketAddr, SocketAddr) {
        ("10.0.0.5:5060".parse().unwrap(), "10.0.0.9:5062".parse().unwrap())
    }

    #[test]
    fn options_gets_asterisks_200_with_its_headers() {
        let p = Persona::derive("pbx-01", Some("linux-server"), None, 1_764_000_000);
        let (local, peer) = at();
        let out = handle(&p, &Request::parse(OPTIONS.as_bytes()).unwrap(), local, peer, "UDP");
        let reply = String::from_utf8(out.reply.unwrap()).unwrap();
        assert!(
            reply.starts_with("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP nm;branch=foo;rport=5062;received=10.0.0.9\r\n"),
            "{reply}"
        );
        assert!(reply.contains(&format!("\r\nServer: Asterisk PBX {}\r\nAllow: INVITE, ACK", asterisk_version(&p))));
        assert!(reply.contains("\r\nTo: <sip:nm2@nm2>;tag=as"));
        assert!(reply.contains("\r\nCall-ID: 50000\r\nCSeq: 42 OPTIONS\r\n"));
        assert!(reply.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn register_is_challenged_and_the_answer_recorded_as_a_crackable_hash() {
        let p = Persona::derive("pbx-01", Some("linux-server"), None, 1_764_000_000);
        let (local, peer) = at();
        let register = "REGISTER sip:10.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5062;branch=z9hG4bK1\r\nFrom: <sip:1001@10.0.0.5>;tag=1\r\nTo: <sip:1001@10.0.0.5>\r\nCall-ID: abc\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";
        let out = handle(&p, &Request::parse(register.as_bytes()).unwrap(), local, peer, "UDP");
        let reply = String::from_utf8(out.reply.unwrap()).unwrap();
        assert!(reply.starts_with("SIP/2.0 401 Unauthorized\r\n"));
        let nonce = reply.split("nonce=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
        // The client answers: MD5(MD5(user:realm:pass):nonce:MD5(method:uri)).
        let ha1 = md5_hex("1001:asterisk:secret123");
        let ha2 = md5_hex("REGISTER:sip:10.0.0.5");
        let response = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
        let auth = format!("Digest username=\"1001\", realm=\"asterisk\", nonce=\"{nonce}\", uri=\"sip:10.0.0.5\", response=\"{response}\", algorithm=MD5");
        let second =
            register.replace("CSeq: 1 REGISTER\r\n", &format!("CSeq: 2 REGISTER\r\nAuthorization: {auth}\r\n"));
        let out = handle(&p, &Request::parse(second.as_bytes()).unwrap(), local, peer, "UDP");
        assert!(String::from_utf8(out.reply.unwrap()).unwrap().starts_with("SIP/2.0 403 Forbidden\r\n"));
        let c = out.credential.unwrap();
        assert_eq!(c.username, "1001");
        assert_eq!(
            c.hash,
            format!("$sip$*10.0.0.5*10.0.0.9*1001*asterisk*REGISTER*sip*10.0.0.5**{nonce}****MD5*{response}")
        );
    }

    #[test]
    fn johns_own_test_vector_is_reproduced() {
        // john's sip format test: password 123456.
        let auth = "Digest username=\"200\", realm=\"asterisk\", nonce=\"46cce857\", uri=\"sip:192.168.1.104\", response=\"4dfc7515936a667565228dbaa0293dfc\", algorithm=MD5";
        let c =
            digest_hash(auth, "REGISTER", "192.168.1.111".parse().unwrap(), "192.168.1.104".parse().unwrap()).unwrap();
        assert_eq!(c.hash, "$sip$*192.168.1.111*192.168.1.104*200*asterisk*REGISTER*sip*192.168.1.104**46cce857****MD5*4dfc7515936a667565228dbaa0293dfc");
        let ha1 = md5_hex("200:asterisk:123456");
        let ha2 = md5_hex("REGISTER:sip:192.168.1.104");
        assert_eq!(md5_hex(&format!("{ha1}:46cce857:{ha2}")), "4dfc7515936a667565228dbaa0293dfc");
    }

    #[test]
    fn garbage_is_not_sip() {
        for bad in [
            &b""[..],
            b"\xff\xfe",
            b"GET / HTTP/1.1\r\n\r\n",
            b"OPTIONS sip:x SIP/2.0\r\nno colon here\r\n\r\n",
            b"options sip:x SIP/2.0\r\n\r\n",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad:?}");
        }
        let many = format!("OPTIONS sip:x SIP/2.0\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        assert!(Request::parse(many.as_bytes()).is_err());
        // A Digest header without a user or response is no credential.
        assert!(digest_hash("Digest realm=\"a\"", "REGISTER", [0, 0, 0, 0].into(), [0, 0, 0, 0].into()).is_none());
        assert!(digest_hash("Basic eA==", "REGISTER", [0, 0, 0, 0].into(), [0, 0, 0, 0].into()).is_none());
    }
}
