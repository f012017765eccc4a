//! DNS (53/udp and 53/tcp): an authoritative-only server for the persona's
//! zone, as a BIND 9 with `recursion no` answers (dnsmasq on a camera,
//! Microsoft DNS on a Windows persona).
//!
//! - The decky's own name (`<hostname>.<domain>`) has an A record: the
//!   address the query came in on. `www` is a CNAME to it, `mail` and `gw`
//!   are hosts of the persona's subnet, the domain has SOA, NS and MX.
//! - A name of the zone that is not there is NXDOMAIN with the SOA; a name
//!   outside the zone is REFUSED (no recursion, RA clear), as BIND does
//!   for a client it does not recurse for.
//! - `version.bind` and `hostname.bind` (CHAOS TXT) answer the persona's
//!   server version and name.
//! - Every question is one `request` line (`name`, `qtype`, `qclass`,
//!   `rcode`). Responses, garbage shorter than a header and other opcodes
//!   are treated as BIND treats them: silence, FORMERR, NOTIMP.
//!
//! The wire format is hickory-proto's. Over UDP an answer larger than the
//! amplification bound is sent empty with TC set, and the client retries
//! over TCP, where the usual session limits apply.

use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Protocol, ServeFuture, Transport};
use crate::event::{self, SharedSession};
use crate::io::{end_of, End, Metered};
use crate::persona::OsFamily;
use crate::rfc5424::Severity;
use crate::udp::Datagram;
use crate::Persona;

pub struct Dns;

/// TTL of the zone's records (BIND's `$TTL 604800` in Debian's db.local).
const TTL: u32 = 604_800;
/// Questions recorded from one message (a message may carry many).
const MAX_QUESTIONS_LOGGED: usize = 4;
/// EDNS payload size BIND 9.18 advertises.
const EDNS_PAYLOAD: u16 = 1232;

impl Protocol for Dns {
    fn name(&self) -> &'static str {
        "dns"
    }
    fn default_port(&self) -> u16 {
        53
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Udp, Transport::Tcp]
    }
    fn datagram(&self, d: &mut Datagram<'_>) -> Option<Vec<u8>> {
        let zone = Zone::of(&d.ctx.persona, d.local.ip());
        let (reply, asked) = respond(&zone, d.payload)?;
        for q in asked.iter().take(MAX_QUESTIONS_LOGGED) {
            d.request(q.fields(), q.msg());
        }
        let bytes = reply.to_vec().ok()?;
        if bytes.len() <= d.max_reply() {
            return Some(bytes);
        }
        truncated(&reply).filter(|b| b.len() <= d.max_reply())
    }
    fn serve(&self, session: SharedSession, io: Metered<tokio::net::TcpStream>) -> ServeFuture {
        Box::pin(serve_tcp(session, io))
    }
}

/// DNS over TCP: two-byte length, message, until the client closes.
async fn serve_tcp(session: SharedSession, mut io: Metered<tokio::net::TcpStream>) -> End {
    let (persona, idle) = event::with(&session, |s| (s.context().persona.clone(), s.limits().idle));
    let local = io.get_ref().local_addr().map(|a| a.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let zone = Zone::of(&persona, local);
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(idle, io.read_exact(&mut len)).await {
            Err(_) => return End::Idle,
            Ok(Err(e)) => return end_of(e),
            Ok(Ok(_)) => {}
        }
        // At most 64 KiB by construction of the length field.
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        match tokio::time::timeout(idle, io.read_exact(&mut msg)).await {
            Err(_) => return End::Idle,
            Ok(Err(e)) => return end_of(e),
            Ok(Ok(_)) => {}
        }
        let Some((reply, asked)) = respond(&zone, &msg) else { return End::Done };
        event::with(&session, |s| {
            for q in asked.iter().take(MAX_QUESTIONS_LOGGED) {
                s.emit("request", Severity::Notice, q.fields(), Some(q.msg()));
            }
        });
        let Ok(bytes) = reply.to_vec() else { return End::Done };
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&(bytes.len().min(u16::MAX as usize) as u16).to_be_bytes());
        framed.extend_from_slice(&bytes);
        match tokio::time::timeout(idle, io.write_all(&framed)).await {
            Err(_) => return End::Idle,
            Ok(Err(e)) => return end_of(e),
            Ok(Ok(())) => {}
        }
    }
}

/// One question as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub name: String,
    pub qtype: String,
    pub qclass: String,
    pub rcode: String,
}

impl Asked {
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("name", self.name.clone()),
            ("qtype", self.qtype.clone()),
            ("qclass", self.qclass.clone()),
            ("rcode", self.rcode.clone()),
        ]
    }
    fn msg(&self) -> String {
        format!("QUERY {} {} {} {}", self.name, self.qclass, self.qtype, self.rcode)
    }
}

/// What the persona's server is authoritative for, and says about itself.
#[derive(Debug, Clone)]
pub struct Zone {
    pub origin: Name,
    pub own: Name,
    pub address: IpAddr,
    /// Other hosts of the zone: (label, address).
    pub hosts: Vec<(&'static str, Ipv4Addr)>,
    pub version: String,
    pub hostname: String,
    pub serial: u32,
    /// Microsoft DNS answers `version.bind` in class IN, not CH.
    pub windows: bool,
}

impl Zone {
    /// The zone of `persona`, its own name at `address` (where the query
    /// came in, which is where an attacker reaches it).
    pub fn of(persona: &Persona, address: IpAddr) -> Zone {
        let origin = Name::from_ascii(format!("{}.", persona.domain)).unwrap_or_else(|_| Name::root());
        let own = Name::from_ascii(&persona.hostname)
            .ok()
            .and_then(|h| h.append_domain(&origin).ok())
            .unwrap_or_else(|| origin.clone());
        // Other hosts sit in the persona's own subnet.
        let base: Ipv4Addr =
            persona.interfaces.first().and_then(|i| i.address.parse().ok()).unwrap_or(Ipv4Addr::new(192, 168, 1, 10));
        let o = base.octets();
        let gateway: Ipv4Addr = persona
            .interfaces
            .first()
            .and_then(|i| i.gateway.parse().ok())
            .unwrap_or(Ipv4Addr::new(o[0], o[1], o[2], 1));
        let mail = Ipv4Addr::new(o[0], o[1], o[2], o[3].wrapping_add(7).clamp(2, 254));
        // A serial in the YYYYMMDDnn style, from the day the persona booted.
        let date = time::OffsetDateTime::from_unix_timestamp(persona.boot_time)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            .date();
        let serial = (date.year() as u32) * 1_000_000 + (date.month() as u32) * 10_000 + date.day() as u32 * 100 + 1;
        Zone {
            origin,
            own,
            address,
            hosts: vec![("mail", mail), ("gw", gateway)],
            version: server_version(persona),
            hostname: persona.hostname.clone(),
            serial,
            windows: persona.family == OsFamily::Windows,
        }
    }

    fn soa(&self) -> Record {
        let rname = Name::from_ascii("hostmaster").ok().and_then(|h| h.append_domain(&self.origin).ok());
        let soa = SOA::new(
            self.own.clone(),
            rname.unwrap_or_else(|| self.origin.clone()),
            self.serial,
            604_800,
            86_400,
            2_419_200,
            604_800,
        );
        Record::from_rdata(self.origin.clone(), TTL, RData::SOA(soa))
    }

    /// The records of `name` of `qtype`, and whether the name exists.
    fn lookup(&self, name: &Name, qtype: RecordType) -> (Vec<Record>, bool) {
        let rec = |rdata: RData| Record::from_rdata(name.clone(), TTL, rdata);
        let own_a = || match self.address {
            IpAddr::V4(a) => Some(RData::A(A(a))),
            IpAddr::V6(a) => Some(RData::AAAA(AAAA(a))),
        };
        let mut out = Vec::new();
        if name == &self.origin {
            let want = |t: RecordType| qtype == t || qtype == RecordType::ANY;
            if want(RecordType::SOA) {
                out.push(self.soa());
            }
            if want(RecordType::NS) {
                out.push(rec(RData::NS(NS(self.own.clone()))));
            }
            if want(RecordType::MX) {
                let mail = Name::from_ascii("mail").ok().and_then(|m| m.append_domain(&self.origin).ok());
                out.extend(mail.map(|m| rec(RData::MX(MX::new(10, m)))));
            }
            return (out, true);
        }
        if name == &self.own {
            let rdata = own_a().filter(|r| r.record_type() == qtype || qtype == RecordType::ANY);
            out.extend(rdata.map(rec));
            return (out, true);
        }
        let label = name.iter().next().map(|l| String::from_utf8_lossy(l).to_ascii_lowercase());
        let in_origin = name.num_labels() == self.origin.num_labels() + 1;
        match label.as_deref() {
            Some("www") if in_origin => {
                out.push(rec(RData::CNAME(CNAME(self.own.clone()))));
                if qtype != RecordType::CNAME {
                    let (target, _) = self.lookup(&self.own, qtype);
                    out.extend(target);
                }
                (out, true)
            }
            Some(l) if in_origin => match self.hosts.iter().find(|(h, _)| *h == l) {
                Some((_, a)) => {
                    if qtype == RecordType::A || qtype == RecordType::ANY {
                        out.push(rec(RData::A(A(*a))));
                    }
                    (out, true)
                }
                None => (out, false),
            },
            _ => (out, false),
        }
    }
}

/// The version `version.bind` answers, as each release's server says it.
pub fn server_version(persona: &Persona) -> String {
    persona.version_of("dns", |p| match (p.os_id.as_str(), p.version_id.as_str()) {
        ("debian", "12") => "9.18.49-1~deb12u3-Debian".into(),
        ("debian", "11") => "9.16.50-1~deb11u2-Debian".into(),
        ("ubuntu", "22.04") => "9.18.30-0ubuntu0.22.04.2-Ubuntu".into(),
        ("ubuntu", "20.04") => "9.18.30-0ubuntu0.20.04.2-Ubuntu".into(),
        ("centos", _) => "9.11.4-P2-RedHat-9.11.4-26.P2.el7_9.16".into(),
        ("busybox", _) => "dnsmasq-2.80".into(),
        ("windows", v) => {
            let build = v.rsplit('.').next().unwrap_or("17763");
            let tag = ring::digest::digest(&ring::digest::SHA256, p.hostname.as_bytes());
            let t = tag.as_ref();
            format!("Microsoft DNS 10.0.{build} ({:02X}{:02X}{:02X}{:02X})", t[0], t[1], t[2], t[3])
        }
        _ => "9.18.49-1~deb12u3-Debian".into(),
    })
}

/// The name dig prints for a response code.
fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

/// The answer to `wire` and the questions it asked; `None` when the real
/// server would stay silent (a response, or less than a header).
pub fn respond(zone: &Zone, wire: &[u8]) -> Option<(Message, Vec<Asked>)> {
    let request = match Message::from_vec(wire) {
        Ok(m) => m,
        Err(_) => return formerr(wire).map(|m| (m, Vec::new())),
    };
    let asked = &request.metadata;
    if asked.message_type != MessageType::Query {
        return None;
    }
    let mut reply = Message::response(asked.id, asked.op_code);
    reply.metadata.recursion_desired = asked.recursion_desired;
    reply.metadata.checking_disabled = asked.checking_disabled;
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD).set_version(0);
        reply.set_edns(edns);
    }
    if asked.op_code != OpCode::Query {
        reply.metadata.response_code = ResponseCode::NotImp;
        return Some((reply, Vec::new()));
    }
    // BIND answers one question per message; more is a format error.
    let [query] = request.queries.as_slice() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return Some((reply, Vec::new()));
    };
    reply.add_query(query.clone());
    let rcode = answer(zone, query, &mut reply);
    reply.metadata.response_code = rcode;
    let asked = Asked {
        name: query.name().to_ascii(),
        qtype: query.query_type().to_string(),
        qclass: query.query_class().to_string(),
        rcode: rcode_name(rcode),
    };
    Some((reply, vec![asked]))
}

/// Fill `reply` for `query`; its response code.
fn answer(zone: &Zone, query: &Query, reply: &mut Message) -> ResponseCode {
    let name = query.name().to_lowercase();
    if query.query_class() == DNSClass::CH {
        let text = match name.to_ascii().as_str() {
            "version.bind." => &zone.version,
            "hostname.bind." => &zone.hostname,
            _ => return ResponseCode::Refused,
        };
        reply.metadata.authoritative = true;
        if query.query_type() != RecordType::TXT && query.query_type() != RecordType::ANY {
            return ResponseCode::NoError;
        }
        let mut record = Record::from_rdata(query.name().clone(), 0, RData::TXT(TXT::new(vec![text.clone()])));
        record.dns_class = if zone.windows { DNSClass::IN } else { DNSClass::CH };
        reply.add_answer(record);
        return ResponseCode::NoError;
    }
    if query.query_class() != DNSClass::IN && query.query_class() != DNSClass::ANY {
        return ResponseCode::Refused;
    }
    if !zone.origin.zone_of(&name) {
        return ResponseCode::Refused;
    }
    reply.metadata.authoritative = true;
    let (records, exists) = zone.lookup(&name, query.query_type());
    if records.is_empty() {
        // NODATA or NXDOMAIN: the SOA tells how long to remember it.
        reply.add_authority(zone.soa());
    }
    reply.add_answers(records);
    if exists {
        ResponseCode::NoError
    } else {
        ResponseCode::NXDomain
    }
}

/// FORMERR for a message whose header parsed but whose body did not
/// (BIND's answer to a malformed query); silence for anything shorter than
/// a header or that claims to be a response.
fn formerr(wire: &[u8]) -> Option<Message> {
    if wire.len() < 12 || wire[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([wire[0], wire[1]]);
    Some(Message::error_msg(id, OpCode::from_u8((wire[2] >> 3) & 0x0f), ResponseCode::FormErr))
}

/// `reply` without its records and with TC set: the client asks again
/// over TCP.
fn truncated(reply: &Message) -> Option<Vec<u8>> {
    reply.truncate().to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        let mut persona = Persona::derive("ns-01", Some("linux-server"), None, 1_764_000_000);
        persona.domain = "corp.internal".into();
        persona.release = "debian-12".into();
        persona.os_id = "debian".into();
        persona.version_id = "12".into();
        Zone::of(&persona, "10.0.0.5".parse().unwrap())
    }

    fn query(name: &str, qtype: RecordType, class: DNSClass) -> Vec<u8> {
        let mut m = Message::query();
        let mut q = Query::query(Name::from_ascii(name).unwrap(), qtype);
        q.set_query_class(class);
        m.metadata.id = 0x1234;
        m.metadata.recursion_desired = true;
        m.add_query(q);
        m.to_vec().unwrap()
    }

    #[test]
    fn the_decky_name_resolves_to_its_address() {
        let (reply, asked) = respond(&zone(), &query("NS-01.corp.internal.", RecordType::A, DNSClass::IN)).unwrap();
        let h = reply.metadata;
        assert_eq!((h.id, h.response_code), (0x1234, ResponseCode::NoError));
        assert!(h.authoritative && !h.recursion_available && h.recursion_desired);
        assert_eq!(reply.answers.len(), 1);
        assert_eq!(reply.answers[0].data, RData::A(A::new(10, 0, 0, 5)));
        assert_eq!(asked[0].name, "NS-01.corp.internal.");
        assert_eq!((asked[0].qtype.as_str(), asked[0].qclass.as_str()), ("A", "IN"));
    }

    #[test]
    fn the_zone_has_soa_ns_mx_and_a_few_hosts() {
        let z = zone();
        let (r, _) = respond(&z, &query("corp.internal.", RecordType::SOA, DNSClass::IN)).unwrap();
        let RData::SOA(soa) = &r.answers[0].data else { panic!("{r:?}") };
        assert_eq!(soa.mname.to_ascii(), "ns-01.corp.internal.");
        assert_eq!(soa.rname.to_ascii(), "hostmaster.corp.internal.");
        let (r, _) = respond(&z, &query("corp.internal.", RecordType::NS, DNSClass::IN)).unwrap();
        assert_eq!(r.answers[0].data, RData::NS(NS(z.own.clone())));
        let (r, _) = respond(&z, &query("mail.corp.internal.", RecordType::A, DNSClass::IN)).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.answers.len(), 1);
        let (r, _) = respond(&z, &query("www.corp.internal.", RecordType::A, DNSClass::IN)).unwrap();
        assert_eq!(r.answers.len(), 2, "CNAME then the A it points to: {r:?}");
    }

    #[test]
    fn a_missing_name_is_nxdomain_with_the_soa_and_other_zones_are_refused() {
        let z = zone();
        let (r, asked) = respond(&z, &query("nope.corp.internal.", RecordType::A, DNSClass::IN)).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert!(r.answers.is_empty());
        assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(asked[0].rcode, "NXDOMAIN");
        let (r, _) = respond(&z, &query("example.com.", RecordType::A, DNSClass::IN)).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
        assert!(!r.metadata.authoritative && r.answers.is_empty() && r.authorities.is_empty());
    }

    #[test]
    fn version_bind_names_the_release_server() {
        let (r, _) = respond(&zone(), &query("version.bind.", RecordType::TXT, DNSClass::CH)).unwrap();
        let RData::TXT(txt) = &r.answers[0].data else { panic!("{r:?}") };
        assert_eq!(txt.to_string(), "9.18.49-1~deb12u3-Debian");
        assert_eq!(r.answers[0].dns_class, DNSClass::CH);
    }

    #[test]
    fn windows_answers_as_microsoft_dns_in_class_in_and_a_camera_as_dnsmasq() {
        let windows = Persona::derive("dc-01", Some("windows-server"), None, 1_764_000_000);
        let z = Zone::of(&windows, "10.0.0.2".parse().unwrap());
        let (r, _) = respond(&z, &query("version.bind.", RecordType::TXT, DNSClass::CH)).unwrap();
        let RData::TXT(txt) = &r.answers[0].data else { panic!("{r:?}") };
        // nmap's Microsoft DNS match wants class IN and `Microsoft DNS 10.0.`.
        assert!(txt.to_string().starts_with("Microsoft DNS 10.0.17763 ("), "{txt}");
        assert_eq!(r.answers[0].dns_class, DNSClass::IN);
        let camera = Persona::derive("cam-01", Some("iot-device"), None, 1_764_000_000);
        if camera.os_id == "busybox" {
            assert_eq!(server_version(&camera), "dnsmasq-2.80");
        }
        // The fleet file's override wins.
        let mut custom = windows.clone();
        custom.versions.insert("dns".into(), "9.20.0".into());
        assert_eq!(server_version(&custom), "9.20.0");
    }

    #[test]
    fn garbage_is_formerr_or_silence_and_responses_get_nothing() {
        let z = zone();
        // Shorter than a header: nothing to answer to.
        assert!(respond(&z, b"\x12\x34\x01").is_none());
        // A header then garbage: FORMERR with the id.
        let mut wire = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
        wire.extend_from_slice(&[0x3f, b'x', b'y']);
        let (r, asked) = respond(&z, &wire).unwrap();
        assert_eq!((r.metadata.id, r.metadata.response_code), (0xabcd, ResponseCode::FormErr));
        assert!(asked.is_empty());
        // A response (QR set) is never answered: no reflection loops.
        let mut resp = query("ns-01.corp.internal.", RecordType::A, DNSClass::IN);
        resp[2] |= 0x80;
        assert!(respond(&z, &resp).is_none());
        // An oversize label count or a compression loop is garbage too.
        let mut lp = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        lp.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        assert_eq!(respond(&z, &lp).unwrap().0.metadata.response_code, ResponseCode::FormErr);
    }

    #[test]
    fn an_answer_over_the_bound_is_sent_truncated() {
        let (reply, _) = respond(&zone(), &query("corp.internal.", RecordType::ANY, DNSClass::IN)).unwrap();
        let cut = truncated(&reply).unwrap();
        let back = Message::from_vec(&cut).unwrap();
        assert!(back.metadata.truncation && back.answers.is_empty());
        assert_eq!(back.queries.len(), 1);
        assert!(cut.len() < reply.to_vec().unwrap().len());
    }
}
