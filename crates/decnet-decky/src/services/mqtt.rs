//! MQTT broker honeypot (port 1883): the persona's Mosquitto, MQTT 3.1,
//! 3.1.1 and 5, as an exposed IoT broker is usually configured
//! (`listener 1883`, `allow_anonymous true`, a `password_file`).
//!
//! Authentication policy (decided here, documented in docs/deckies.md):
//! a CONNECT without a user name is accepted, as `allow_anonymous true`
//! does (it is what makes exposed brokers worth a scan); a user name with
//! a password is judged by the persona's auth policy ([`crate::auth`]),
//! like a password file the attacker guesses at: refused with CONNACK
//! "not authorised" (3.x code 5, MQTT 5 reason 0x87) until the policy's
//! Nth attempt. Each attempt is a `login_attempt` line (client id, result).
//!
//! After CONNACK: SUBSCRIBE (SUBACK with the QoS granted, then the
//! broker's retained `$SYS/broker/...` topics to filters that match, as
//! Mosquitto publishes them), PUBLISH at QoS 0/1/2 (PUBACK, PUBREC and
//! PUBCOMP) delivered back to the session's own matching subscriptions,
//! UNSUBSCRIBE, PINGREQ, DISCONNECT. Every CONNECT, topic filter and
//! published topic with the start of its payload is a `command` line.
//!
//! Parsing is apart from serving ([`parse_connect`], [`parse_subscribe`],
//! [`parse_publish`] take one packet's bytes); a packet's length is
//! checked against [`MAX_PACKET`] before its body is read, and any
//! malformed packet ends the session, as a broker's protocol error does.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::event::{self, SharedSession};
use crate::io::{end_of, printable, End, Metered};
use crate::Persona;

/// The `mqtt` entry of [`super::REGISTRY`].
pub struct Mqtt;

impl super::Protocol for Mqtt {
    fn name(&self) -> &'static str {
        "mqtt"
    }
    fn default_port(&self) -> u16 {
        1883
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// Largest packet read. Real sensors publish a few hundred bytes; a
/// longer packet ends the session before its body is read.
pub const MAX_PACKET: usize = 64 * 1024;
/// Payload bytes kept in a `command` line.
const PAYLOAD_IN_COMMAND: usize = 256;
/// Subscriptions one session may hold (for delivering its own publishes).
const MAX_SUBSCRIPTIONS: usize = 64;

/// The Mosquitto release the persona's distribution packages.
pub fn version(persona: &Persona) -> String {
    persona.version_of("mqtt", |p| {
        match p.release.as_str() {
            "ubuntu-20.04" => "1.6.9",
            "centos-7" => "1.6.10",
            "busybox-camera" => "1.6.12",
            "windows-server-2019" | "windows-10" => "2.0.18",
            _ => "2.0.11",
        }
        .to_string()
    })
}

/// Why a packet could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    Truncated,
    BadLength,
    TooLarge(usize),
    Protocol(&'static str),
}

/// A cursor over one packet's bytes; every read is checked.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, at: 0 }
    }
    fn u8(&mut self) -> Result<u8, Malformed> {
        let b = *self.data.get(self.at).ok_or(Malformed::Truncated)?;
        self.at += 1;
        Ok(b)
    }
    fn u16(&mut self) -> Result<u16, Malformed> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.data.len()).ok_or(Malformed::Truncated)?;
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }
    /// A length-prefixed field (string or binary data).
    fn field(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u16()? as usize;
        self.bytes(n)
    }
    fn varint(&mut self) -> Result<usize, Malformed> {
        let mut value = 0usize;
        for i in 0..4 {
            let b = self.u8()?;
            value |= ((b & 0x7f) as usize) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Malformed::BadLength)
    }
    /// MQTT 5 properties: skipped, their length checked.
    fn properties(&mut self) -> Result<(), Malformed> {
        let n = self.varint()?;
        self.bytes(n).map(|_| ())
    }
    fn rest(&self) -> &'a [u8] {
        &self.data[self.at..]
    }
}

/// A CONNECT packet's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// 3 (MQIsdp), 4 (3.1.1) or 5.
    pub level: u8,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub keep_alive: u16,
}

/// Parse a CONNECT body (after the fixed header).
pub fn parse_connect(body: &[u8]) -> Result<Connect, Malformed> {
    let mut r = Reader::new(body);
    let name = r.field()?;
    let level = r.u8()?;
    match (name, level) {
        (b"MQTT", 4 | 5) | (b"MQIsdp", 3) => {}
        (b"MQTT" | b"MQIsdp", _) => return Err(Malformed::Protocol("unsupported protocol version")),
        _ => return Err(Malformed::Protocol("not an MQTT CONNECT")),
    }
    let flags = r.u8()?;
    if flags & 1 != 0 {
        return Err(Malformed::Protocol("reserved CONNECT flag set"));
    }
    let keep_alive = r.u16()?;
    if level == 5 {
        r.properties()?;
    }
    let client_id = printable(r.field()?);
    if flags & 0x04 != 0 {
        if level == 5 {
            r.properties()?;
        }
        r.field()?; // will topic
        r.field()?; // will payload
    }
    let username = if flags & 0x80 != 0 { Some(printable(r.field()?)) } else { None };
    let password = if flags & 0x40 != 0 { Some(r.field()?.to_vec()) } else { None };
    Ok(Connect { level, client_id, username, password, keep_alive })
}

/// A SUBSCRIBE: packet id and (filter, requested QoS) pairs.
pub fn parse_subscribe(body: &[u8], level: u8) -> Result<(u16, Vec<(String, u8)>), Malformed> {
    let mut r = Reader::new(body);
    let id = r.u16()?;
    if level == 5 {
        r.properties()?;
    }
    let mut filters = Vec::new();
    while !r.rest().is_empty() {
        let filter = printable(r.field()?);
        let options = r.u8()?;
        filters.push((filter, options & 0x03));
    }
    if filters.is_empty() {
        return Err(Malformed::Protocol("SUBSCRIBE without a topic filter"));
    }
    Ok((id, filters))
}

/// An UNSUBSCRIBE: packet id and filters.
pub fn parse_unsubscribe(body: &[u8], level: u8) -> Result<(u16, Vec<String>), Malformed> {
    let mut r = Reader::new(body);
    let id = r.u16()?;
    if level == 5 {
        r.properties()?;
    }
    let mut filters = Vec::new();
    while !r.rest().is_empty() {
        filters.push(printable(r.field()?));
    }
    Ok((id, filters))
}

/// A PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub qos: u8,
    pub packet_id: Option<u16>,
    pub payload: Vec<u8>,
}

/// Parse a PUBLISH body given its fixed header's flags.
pub fn parse_publish(flags: u8, body: &[u8], level: u8) -> Result<Publish, Malformed> {
    let qos = (flags >> 1) & 0x03;
    if qos == 3 {
        return Err(Malformed::Protocol("PUBLISH with QoS 3"));
    }
    let mut r = Reader::new(body);
    let topic = printable(r.field()?);
    let packet_id = if qos > 0 { Some(r.u16()?) } else { None };
    if level == 5 {
        r.properties()?;
    }
    Ok(Publish { topic, qos, packet_id, payload: r.rest().to_vec() })
}

/// Whether topic `name` matches subscription `filter` (`+` one level, `#`
/// the rest; `$` topics only for filters that name them).
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && !filter.starts_with('$') {
        return false;
    }
    let mut f = filter.split('/');
    let mut n = name.split('/');
    loop {
        match (f.next(), n.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether a packet's fixed-header flags are the ones MQTT requires
/// (PUBREL, SUBSCRIBE and UNSUBSCRIBE `0010`, the rest `0000` except
/// PUBLISH's own); a broker closes the connection otherwise.
pub fn flags_valid(first: u8) -> bool {
    match first >> 4 {
        3 => true,
        6 | 8 | 10 => first & 0x0f == 0x02,
        _ => first & 0x0f == 0,
    }
}

/// Keep `filter` for delivering the session's own publishes, within
/// [`MAX_SUBSCRIPTIONS`] (past it the SUBACK still grants it).
fn remember(subscriptions: &mut Vec<String>, filter: &str) {
    if subscriptions.len() < MAX_SUBSCRIPTIONS && !subscriptions.iter().any(|f| f == filter) {
        subscriptions.push(filter.to_string());
    }
}

/// A fixed header and a remaining length.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut n = body.len();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

fn publish_packet(topic: &str, payload: &[u8], retain: bool, level: u8) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    if level == 5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    frame(if retain { 0x31 } else { 0x30 }, &body)
}

/// CONNACK: accepted, or refused as not authorised. `assigned`: the
/// client identifier an MQTT 5 client that sent none is given.
pub fn connack(level: u8, accepted: bool, assigned: Option<&str>) -> Vec<u8> {
    match (level, accepted) {
        // Mosquitto 2.0.11's CONNACK properties with its default
        // configuration, as the real broker sent them on loopback: Topic
        // Alias Maximum 10, the assigned identifier, Receive Maximum 20.
        (5, true) => {
            let mut props = vec![0x22, 0, 10];
            if let Some(id) = assigned {
                props.push(0x12);
                props.extend((id.len() as u16).to_be_bytes());
                props.extend_from_slice(id.as_bytes());
            }
            props.extend([0x21, 0, 20]);
            let mut body = vec![0, 0, props.len() as u8];
            body.extend(props);
            frame(0x20, &body)
        }
        (5, false) => frame(0x20, &[0, 0x87, 0]),
        (_, true) => vec![0x20, 2, 0, 0],
        (_, false) => vec![0x20, 2, 0, 5],
    }
}

/// The broker's retained `$SYS` topics.
fn sys_topics(persona: &Persona) -> Vec<(String, String)> {
    let uptime = (time::OffsetDateTime::now_utc().unix_timestamp() - persona.boot_time).max(60);
    vec![
        ("$SYS/broker/version".into(), format!("mosquitto version {}", version(persona))),
        ("$SYS/broker/uptime".into(), format!("{uptime} seconds")),
        ("$SYS/broker/clients/connected".into(), "1".into()),
        ("$SYS/broker/subscriptions/count".into(), "1".into()),
    ]
}

/// Reads with the session's idle bound; a length past [`MAX_PACKET`] ends
/// the session before anything is allocated for it.
async fn read_packet(io: &mut Metered<TcpStream>, idle: Duration) -> Result<(u8, Vec<u8>), End> {
    let mut byte = [0u8; 1];
    timed(idle, io.read_exact(&mut byte)).await?;
    let first = byte[0];
    let mut len = 0usize;
    for i in 0..4 {
        timed(idle, io.read_exact(&mut byte)).await?;
        len |= ((byte[0] & 0x7f) as usize) << (7 * i);
        if byte[0] & 0x80 == 0 {
            break;
        }
        if i == 3 {
            return Err(End::Io("malformed remaining length".into()));
        }
    }
    if len > MAX_PACKET {
        return Err(End::Io(format!("packet of {len} bytes over the {MAX_PACKET}-byte limit")));
    }
    let mut body = vec![0u8; len];
    timed(idle, io.read_exact(&mut body)).await?;
    Ok((first, body))
}

async fn timed<T>(idle: Duration, f: impl std::future::Future<Output = std::io::Result<T>>) -> Result<T, End> {
    match tokio::time::timeout(idle, f).await {
        Err(_) => Err(End::Idle),
        Ok(Err(e)) => Err(end_of(e)),
        Ok(Ok(v)) => Ok(v),
    }
}

async fn send(io: &mut Metered<TcpStream>, idle: Duration, bytes: &[u8]) -> Result<(), End> {
    timed(idle, io.write_all(bytes)).await
}

fn protocol_error(m: Malformed) -> End {
    End::Io(format!("malformed packet: {m:?}"))
}

pub async fn serve(session: SharedSession, mut io: Metered<TcpStream>) -> End {
    let (ctx, limits, peer) = event::with(&session, |s| (s.context().clone(), s.limits().clone(), s.peer));
    let persona = ctx.persona.clone();
    let idle = limits.idle;
    // The first packet must be a CONNECT (MQTT-3.1.0-1).
    let (first, body) = match read_packet(&mut io, idle).await {
        Ok(p) => p,
        Err(e) => return e,
    };
    if first >> 4 != 1 || !flags_valid(first) {
        return protocol_error(Malformed::Protocol("first packet is not CONNECT"));
    }
    let connect = match parse_connect(&body) {
        Ok(c) => c,
        Err(Malformed::Protocol("unsupported protocol version")) => {
            // 3.1.1's answer to a level it does not speak, then close.
            let _ = send(&mut io, idle, &[0x20, 2, 0, 1]).await;
            return protocol_error(Malformed::Protocol("unsupported protocol version"));
        }
        Err(m) => return protocol_error(m),
    };
    let level = connect.level;
    event::with(&session, |s| s.command(&format!("CONNECT client_id={} level={level}", connect.client_id)));
    let accepted = match &connect.username {
        None => true,
        Some(user) => {
            let password = connect.password.clone().unwrap_or_default();
            let ok = ctx.auth.check(&persona.auth, peer.ip(), user, &password);
            event::with(&session, |s| {
                s.login_attempt(
                    user,
                    &password,
                    "password",
                    vec![
                        ("client_id", connect.client_id.clone()),
                        ("result", if ok { "accepted" } else { "refused" }.to_string()),
                    ],
                )
            });
            ok
        }
    };
    // Mosquitto names an anonymous MQTT 5 client `auto-<UUID>`.
    let assigned = (level == 5 && connect.client_id.is_empty())
        .then(|| format!("auto-{}", uuid::Uuid::new_v4().to_string().to_ascii_uppercase()));
    if let Err(e) = send(&mut io, idle, &connack(level, accepted, assigned.as_deref())).await {
        return e;
    }
    if !accepted {
        return End::Done;
    }
    let mut subscriptions: Vec<String> = Vec::new();
    loop {
        let (first, body) = match read_packet(&mut io, idle).await {
            Ok(p) => p,
            Err(e) => return e,
        };
        if !flags_valid(first) {
            return protocol_error(Malformed::Protocol("reserved fixed-header flags"));
        }
        let reply = match first >> 4 {
            3 => {
                let publish = match parse_publish(first & 0x0f, &body, level) {
                    Ok(p) => p,
                    Err(m) => return protocol_error(m),
                };
                let shown: String = printable(&publish.payload).chars().take(PAYLOAD_IN_COMMAND).collect();
                event::with(&session, |s| s.command(&format!("PUBLISH {} {shown}", publish.topic)));
                let mut out = Vec::new();
                match (publish.qos, publish.packet_id) {
                    (1, Some(id)) => out.extend(frame(0x40, &id.to_be_bytes())),
                    (2, Some(id)) => out.extend(frame(0x50, &id.to_be_bytes())),
                    _ => {}
                }
                if subscriptions.iter().any(|f| matches(f, &publish.topic)) {
                    out.extend(publish_packet(&publish.topic, &publish.payload, false, level));
                }
                out
            }
            // PUBREL of a QoS 2 publish: PUBCOMP.
            6 if body.len() >= 2 => frame(0x70, &body[..2]),
            8 => {
                let (id, filters) = match parse_subscribe(&body, level) {
                    Ok(s) => s,
                    Err(m) => return protocol_error(m),
                };
                let mut granted = id.to_be_bytes().to_vec();
                if level == 5 {
                    granted.push(0);
                }
                let mut retained = Vec::new();
                for (filter, qos) in &filters {
                    event::with(&session, |s| s.command(&format!("SUBSCRIBE {filter}")));
                    granted.push((*qos).min(2));
                    remember(&mut subscriptions, filter);
                    for (topic, value) in sys_topics(&persona) {
                        if matches(filter, &topic) {
                            retained.extend(publish_packet(&topic, value.as_bytes(), true, level));
                        }
                    }
                }
                let mut out = frame(0x90, &granted);
                out.extend(retained);
                out
            }
            10 => {
                let (id, filters) = match parse_unsubscribe(&body, level) {
                    Ok(u) => u,
                    Err(m) => return protocol_error(m),
                };
                for filter in &filters {
                    event::with(&session, |s| s.command(&format!("UNSUBSCRIBE {filter}")));
                    subscriptions.retain(|f| f != filter);
                }
                let mut ack = id.to_be_bytes().to_vec();
                if level == 5 {
                    ack.push(0);
                    ack.extend(std::iter::repeat_n(0u8, filters.len()));
                }
                frame(0xb0, &ack)
            }
            12 => vec![0xd0, 0],
            14 => return End::Done,
            _ => return protocol_error(Malformed::Protocol("unexpected packet type")),
        };
        if !reply.is_empty() {
            if let Err(e) = send(&mut io, idle, &reply).await {
                return e;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_packet(level: u8, user: Option<&str>, password: Option<&[u8]>) -> Vec<u8> {
        let name: &[u8] = if level == 3 { b"MQIsdp" } else { b"MQTT" };
        let mut b = (name.len() as u16).to_be_bytes().to_vec();
        b.extend_from_slice(name);
        b.push(level);
        b.push(0x02 | if user.is_some() { 0x80 } else { 0 } | if password.is_some() { 0x40 } else { 0 });
        b.extend_from_slice(&30u16.to_be_bytes());
        if level == 5 {
            b.push(0);
        }
        for field in [Some(&b"cam-7"[..]), user.map(str::as_bytes), password].into_iter().flatten() {
            b.extend_from_slice(&(field.len() as u16).to_be_bytes());
            b.extend_from_slice(field);
        }
        b
    }

    #[test]
    fn connects_of_every_level_parse_with_their_credentials() {
        for level in [3, 4, 5] {
            let c = parse_connect(&connect_packet(level, Some("admin"), Some(b"p\0w"))).unwrap();
            assert_eq!((c.level, c.client_id.as_str()), (level, "cam-7"));
            assert_eq!((c.username.as_deref(), c.password.as_deref()), (Some("admin"), Some(&b"p\0w"[..])));
        }
        let anonymous = parse_connect(&connect_packet(4, None, None)).unwrap();
        assert_eq!((anonymous.username, anonymous.password), (None, None));
    }

    #[test]
    fn truncated_garbage_and_wrong_versions_are_refused() {
        let full = connect_packet(4, Some("admin"), Some(b"secret"));
        for cut in 0..full.len() {
            assert!(parse_connect(&full[..cut]).is_err(), "a CONNECT cut at {cut} parsed");
        }
        let mut v6 = connect_packet(4, None, None);
        v6[6] = 6;
        assert_eq!(parse_connect(&v6), Err(Malformed::Protocol("unsupported protocol version")));
        assert_eq!(parse_connect(b"\x00\x04HTTP\x04\x02\x00\x1e"), Err(Malformed::Protocol("not an MQTT CONNECT")));
        // A length field that points past the end never reads past it.
        assert_eq!(parse_connect(b"\xff\xffMQTT"), Err(Malformed::Truncated));
        assert_eq!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x01]).varint(), Err(Malformed::BadLength));
    }

    #[test]
    fn subscribe_publish_and_unsubscribe_parse() {
        let sub = b"\x00\x07\x00\x05a/+/c\x01\x00\x01#\x02";
        assert_eq!(parse_subscribe(sub, 4).unwrap(), (7, vec![("a/+/c".into(), 1), ("#".into(), 2)]));
        assert!(parse_subscribe(b"\x00\x07", 4).is_err(), "no filter");
        assert!(parse_subscribe(b"\x00\x07\x00\x05a/", 4).is_err(), "truncated filter");
        let p = parse_publish(0x02, b"\x00\x03a/b\x00\x09hello", 4).unwrap();
        assert_eq!((p.topic.as_str(), p.qos, p.packet_id, p.payload.as_slice()), ("a/b", 1, Some(9), &b"hello"[..]));
        assert!(parse_publish(0x06, b"\x00\x01a", 4).is_err(), "QoS 3");
        assert!(parse_publish(0x02, b"\x00\x01a\x00", 4).is_err(), "truncated packet id");
        let p5 = parse_publish(0, b"\x00\x01t\x03\x01\x01\x00on", 5).unwrap();
        assert_eq!(p5.payload, b"on", "MQTT 5 properties are skipped");
        assert_eq!(parse_unsubscribe(b"\x00\x02\x00\x01x", 4).unwrap(), (2, vec!["x".into()]));
    }

    #[test]
    fn fixed_header_flags_are_checked_as_the_spec_requires() {
        assert!(flags_valid(0x82) && flags_valid(0xa2) && flags_valid(0x62));
        assert!(!flags_valid(0x80), "SUBSCRIBE without its 0010");
        assert!(flags_valid(0xc0) && !flags_valid(0xc1));
        assert!(flags_valid(0x3b), "PUBLISH carries its own flags");
    }

    #[test]
    fn a_session_keeps_a_bounded_set_of_subscriptions() {
        let mut subs = Vec::new();
        for i in 0..1000 {
            remember(&mut subs, &format!("t/{i}"));
            remember(&mut subs, "t/0");
        }
        assert_eq!(subs.len(), MAX_SUBSCRIPTIONS);
        assert_eq!(subs.iter().filter(|f| *f == "t/0").count(), 1);
    }

    #[test]
    fn topic_filters_match_like_a_broker() {
        assert!(matches("#", "a/b"));
        assert!(!matches("#", "$SYS/broker/version"));
        assert!(matches("$SYS/#", "$SYS/broker/version"));
        assert!(matches("a/+/c", "a/b/c"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/bc"));
    }

    #[test]
    fn connacks_say_accepted_or_not_authorised() {
        assert_eq!(connack(4, true, None), [0x20, 2, 0, 0], "what nmap's MQTT probe matches");
        assert_eq!(connack(3, false, None), [0x20, 2, 0, 5]);
        assert_eq!(connack(5, false, None), [0x20, 3, 0, 0x87, 0]);
        // Byte for byte what mosquitto 2.0.11 (Debian 12) answered.
        assert_eq!(connack(5, true, None), [0x20, 9, 0, 0, 6, 0x22, 0, 10, 0x21, 0, 20]);
        let id = "auto-FE5B520F-4437-BC4A-7FA8-EAA7EF12CF3A";
        let mut real = vec![0x20, 0x35, 0, 0, 0x32, 0x22, 0, 10, 0x12, 0, 0x29];
        real.extend_from_slice(id.as_bytes());
        real.extend([0x21, 0, 20]);
        assert_eq!(connack(5, true, Some(id)), real);
        assert_eq!(frame(0x30, &[0u8; 200])[..3], [0x30, 0xc8, 0x01]);
    }

    #[test]
    fn mosquitto_follows_the_release() {
        let p = Persona::derive("mq-01", Some("iot-device"), None, 1_764_000_000);
        let p = p.with_overrides(&serde_json::json!({"release": "ubuntu-20.04"})).unwrap();
        assert_eq!(version(&p), "1.6.9");
    }
}
