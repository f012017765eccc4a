//! Multicast DNS (5353/udp, RFC 6762) with DNS-SD (RFC 6763): what a
//! Linux host running Avahi, or a device with its own responder, answers
//! about itself.
//!
//! Answered: `<hostname>.local` (A/AAAA/ANY: the address the query came
//! in on), the reverse name of that address (PTR), the DNS-SD service
//! enumeration `_services._dns-sd._udp.local` (one PTR per service type
//! the decky advertises), each type's PTR to its instance
//! (`<hostname>._ssh._tcp.local`) with the instance's SRV, TXT and the
//! host's address as additional records, and the instance's SRV/TXT
//! asked directly. The advertised types follow the services the decky is
//! listening on right now ([`crate::DeckyContext::serving`]: ssh as
//! `_ssh._tcp` and `_sftp-ssh._tcp`, as Avahi's shipped service files
//! publish it, http as `_http._tcp`, vnc as `_rfb._tcp`, …) with their
//! real ports; a Windows persona advertises none (Windows answers its
//! own name over mDNS, and no DNS-SD).
//!
//! Only unicast queries reach the decky's socket (it listens on its own
//! address, not the 224.0.0.251 group). A query from a port other than
//! 5353 is a legacy unicast query (RFC 6762 6.7, what `dig -p 5353` and
//! nmap send): the answer repeats the ID and the question, with TTLs of
//! at most 10 s. A query from port 5353 is a full mDNS querier's: ID 0,
//! no question, the cache-flush bit on the host's unique records. Names
//! the decky does not own get no answer (RFC 6762 6: a responder never
//! answers negatively for another's name). Every question is recorded
//! (`request`: `name`, `qtype`, `qclass`, `unicast_response`,
//! `answered`).

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, AAAA, PTR, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::{Protocol, Transport};
use crate::persona::OsFamily;
use crate::udp::Datagram;
use crate::Persona;

pub struct Mdns;

/// TTLs Avahi gives: host names 120 s, service records 75 minutes
/// (RFC 6762 10's recommendation).
const HOST_TTL: u32 = 120;
const SERVICE_TTL: u32 = 4500;
/// The most a legacy unicast answer may give (RFC 6762 6.7).
const LEGACY_TTL: u32 = 10;
/// Questions looked at in one query (a real querier asks a handful).
const MAX_QUESTIONS: usize = 8;
/// The class bit that asks for a unicast answer (in a question) or
/// flushes caches (in a unique record).
const TOP_BIT: u16 = 0x8000;

/// The DNS-SD types each catalogue service is published as, in the
/// order a browser lists them.
const SERVICE_TYPES: &[(&str, &[&str])] = &[
    ("ssh", &["_ssh._tcp", "_sftp-ssh._tcp"]),
    ("http", &["_http._tcp"]),
    ("https", &["_https._tcp"]),
    ("ftp", &["_ftp._tcp"]),
    ("telnet", &["_telnet._tcp"]),
    ("smb", &["_smb._tcp"]),
    ("vnc", &["_rfb._tcp"]),
    ("rdp", &["_rdp._tcp"]),
    ("postgres", &["_postgresql._tcp"]),
    ("mqtt", &["_mqtt._tcp"]),
    ("sip", &["_sip._udp"]),
];

impl Protocol for Mdns {
    fn name(&self) -> &'static str {
        "mdns"
    }
    fn default_port(&self) -> u16 {
        5353
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Udp]
    }
    fn datagram(&self, d: &mut Datagram<'_>) -> Option<Vec<u8>> {
        let request = Message::from_vec(d.payload).ok()?;
        // Responses (other responders announcing) and other opcodes are
        // not questions to answer (RFC 6762 18.3).
        if request.metadata.message_type != MessageType::Query || request.metadata.op_code != OpCode::Query {
            return None;
        }
        let serving = d.ctx.serving.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let services: Vec<(&'static str, u16)> = advertised(&d.ctx.persona, &serving);
        let legacy = d.peer.port() != 5353;
        let answers = Answers::new(&d.ctx.persona, d.local.ip(), &services);
        let (reply, asked) = respond(&answers, &request, legacy);
        for (query, answered) in asked {
            let class = u16::from(query.query_class());
            d.request(
                vec![
                    ("name", query.name().to_ascii()),
                    ("qtype", query.query_type().to_string()),
                    ("qclass", DNSClass::from(class & !TOP_BIT).to_string()),
                    ("unicast_response", (class & TOP_BIT != 0).to_string()),
                    ("answered", answered.to_string()),
                ],
                format!("mDNS {} {}", query.name().to_ascii(), query.query_type()),
            );
        }
        let mut reply = reply?;
        // Within the reply bound: the additional records go first.
        let max = d.max_reply();
        let bytes = reply.to_vec().ok()?;
        if bytes.len() <= max {
            return Some(bytes);
        }
        reply.additionals.clear();
        reply.to_vec().ok().filter(|b| b.len() <= max)
    }
}

/// The reply to `request` (`None` when no question is the decky's), and
/// each question looked at with whether it was answered. `legacy`: the
/// query came from a port other than 5353 (RFC 6762 6.7).
pub fn respond<'q>(answers: &Answers, request: &'q Message, legacy: bool) -> (Option<Message>, Vec<(&'q Query, bool)>) {
    let mut reply = Message::response(if legacy { request.metadata.id } else { 0 }, OpCode::Query);
    reply.metadata.authoritative = true;
    let mut asked = Vec::new();
    for query in request.queries.iter().take(MAX_QUESTIONS) {
        let (found, extra) = answers.to(query);
        asked.push((query, !found.is_empty()));
        if legacy {
            reply.add_query(query.clone());
        }
        for r in found {
            if !reply.answers.contains(&r) {
                reply.add_answer(r);
            }
        }
        for r in extra {
            if !reply.additionals.contains(&r) {
                reply.add_additional(r);
            }
        }
    }
    if reply.answers.is_empty() {
        return (None, asked);
    }
    for r in reply.answers.iter_mut().chain(reply.additionals.iter_mut()) {
        if legacy {
            r.ttl = r.ttl.min(LEGACY_TTL);
        } else if matches!(r.record_type(), RecordType::A | RecordType::AAAA | RecordType::SRV | RecordType::TXT) {
            // The host's unique records flush older cached copies.
            r.dns_class = DNSClass::Unknown(u16::from(DNSClass::IN) | TOP_BIT);
        }
    }
    (Some(reply), asked)
}

/// The (DNS-SD type, port) pairs the decky publishes, from `serving`
/// (catalogue service → port), in [`SERVICE_TYPES`]' order.
pub fn advertised(persona: &Persona, serving: &std::collections::BTreeMap<String, u16>) -> Vec<(&'static str, u16)> {
    if persona.family == OsFamily::Windows {
        return Vec::new();
    }
    SERVICE_TYPES
        .iter()
        .filter_map(|(service, types)| serving.get(*service).map(|port| types.iter().map(move |t| (*t, *port))))
        .flatten()
        .collect()
}

/// What the decky's responder knows: its names and records.
pub struct Answers<'a> {
    persona: &'a Persona,
    address: IpAddr,
    services: &'a [(&'static str, u16)],
}

fn name(labels: &[&str]) -> Option<Name> {
    let mut n = Name::from_labels(labels.iter().map(|l| l.as_bytes())).ok()?;
    n.set_fqdn(true);
    Some(n)
}

impl<'a> Answers<'a> {
    pub fn new(persona: &'a Persona, address: IpAddr, services: &'a [(&'static str, u16)]) -> Self {
        Answers { persona, address, services }
    }

    /// `<hostname>.local`.
    fn host(&self) -> Option<Name> {
        name(&[&self.persona.hostname, "local"])
    }

    fn address_records(&self, qtype: RecordType) -> Vec<Record> {
        let Some(host) = self.host() else { return Vec::new() };
        let rdata = match (self.address, qtype) {
            (IpAddr::V4(a), RecordType::A | RecordType::ANY) => RData::A(A(a)),
            (IpAddr::V6(a), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(a)),
            _ => return Vec::new(),
        };
        vec![Record::from_rdata(host, HOST_TTL, rdata)]
    }

    /// `_ssh._tcp.local` for `_ssh._tcp`.
    fn type_name(t: &str) -> Option<Name> {
        let mut labels: Vec<&str> = t.split('.').collect();
        labels.push("local");
        name(&labels)
    }

    /// `<hostname>._ssh._tcp.local`.
    fn instance(&self, t: &str) -> Option<Name> {
        let mut labels = vec![self.persona.hostname.as_str()];
        labels.extend(t.split('.'));
        labels.push("local");
        name(&labels)
    }

    fn srv_txt(&self, t: &str, port: u16, qtype: RecordType) -> Vec<Record> {
        let (Some(instance), Some(host)) = (self.instance(t), self.host()) else { return Vec::new() };
        let mut out = Vec::new();
        if matches!(qtype, RecordType::SRV | RecordType::ANY) {
            out.push(Record::from_rdata(instance.clone(), HOST_TTL, RData::SRV(SRV::new(0, 0, port, host))));
        }
        if matches!(qtype, RecordType::TXT | RecordType::ANY) {
            // Avahi's ssh and sftp-ssh services carry an empty TXT.
            out.push(Record::from_rdata(instance, SERVICE_TTL, RData::TXT(TXT::new(vec![String::new()]))));
        }
        out
    }

    /// The answers and the additional records for one question; both
    /// empty when the name is not the decky's.
    pub fn to(&self, query: &Query) -> (Vec<Record>, Vec<Record>) {
        let class = u16::from(query.query_class()) & !TOP_BIT;
        if class != u16::from(DNSClass::IN) && class != u16::from(DNSClass::ANY) {
            return (Vec::new(), Vec::new());
        }
        let asked = query.name();
        let qtype = query.query_type();
        // DNS names compare case-insensitively; a trailing dot or not.
        let text = |n: &Name| n.to_ascii().trim_end_matches('.').to_ascii_lowercase();
        let asked_text = text(asked);
        let same = |n: Option<Name>| n.is_some_and(|n| text(&n) == asked_text);
        if same(self.host()) {
            return (self.address_records(qtype), Vec::new());
        }
        if same(Some(reverse(self.address))) && matches!(qtype, RecordType::PTR | RecordType::ANY) {
            let Some(host) = self.host() else { return (Vec::new(), Vec::new()) };
            return (vec![Record::from_rdata(reverse(self.address), HOST_TTL, RData::PTR(PTR(host)))], Vec::new());
        }
        if same(name(&["_services", "_dns-sd", "_udp", "local"])) {
            if !matches!(qtype, RecordType::PTR | RecordType::ANY) {
                return (Vec::new(), Vec::new());
            }
            let Some(enumeration) = name(&["_services", "_dns-sd", "_udp", "local"]) else {
                return (Vec::new(), Vec::new());
            };
            let types = self.services.iter().filter_map(|(t, _)| Self::type_name(t));
            let answers = types.map(|t| Record::from_rdata(enumeration.clone(), SERVICE_TTL, RData::PTR(PTR(t))));
            return (answers.collect(), Vec::new());
        }
        for (t, port) in self.services {
            if same(Self::type_name(t)) && matches!(qtype, RecordType::PTR | RecordType::ANY) {
                let (Some(type_name), Some(instance)) = (Self::type_name(t), self.instance(t)) else { continue };
                let ptr = Record::from_rdata(type_name, SERVICE_TTL, RData::PTR(PTR(instance)));
                // What a browser needs next comes with it (RFC 6763 12.1).
                let mut extra = self.srv_txt(t, *port, RecordType::ANY);
                extra.extend(self.address_records(RecordType::ANY));
                return (vec![ptr], extra);
            }
            if same(self.instance(t)) {
                return (self.srv_txt(t, *port, qtype), self.address_records(RecordType::ANY));
            }
        }
        (Vec::new(), Vec::new())
    }
}

/// The reverse-mapping name of `address` (`4.3.2.1.in-addr.arpa.`).
fn reverse(address: IpAddr) -> Name {
    Name::from(address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ask(name: &str, qtype: RecordType) -> Query {
        Query::query(Name::from_ascii(name).unwrap(), qtype)
    }

    fn linux() -> Persona {
        Persona::derive("nas-02", Some("linux-server"), None, 1_764_000_000)
    }

    #[test]
    fn its_own_name_is_answered_with_its_address() {
        let p = linux();
        let at: IpAddr = "10.1.2.3".parse().unwrap();
        let answers = Answers::new(&p, at, &[]);
        for name in ["nas-02.local.", "NAS-02.local"] {
            let (found, _) = answers.to(&ask(name, RecordType::A));
            assert_eq!(found.len(), 1, "{name}");
            assert_eq!(found[0].data, RData::A(A::new(10, 1, 2, 3)));
        }
        assert!(answers.to(&ask("nas-02.local", RecordType::AAAA)).0.is_empty(), "no IPv6 address");
        assert!(answers.to(&ask("nas-03.local", RecordType::A)).0.is_empty(), "another's name");
        let (rev, _) = answers.to(&ask("3.2.1.10.in-addr.arpa", RecordType::PTR));
        assert_eq!(rev[0].data, RData::PTR(PTR(Name::from_ascii("nas-02.local.").unwrap())));
    }

    #[test]
    fn legacy_and_full_queriers_get_their_own_forms() {
        let p = linux();
        let answers = Answers::new(&p, "10.1.2.3".parse().unwrap(), &[]);
        let mut request = Message::query();
        request.metadata.id = 0x4242;
        request.add_query(ask("nas-02.local.", RecordType::A));
        request.add_query(ask("other.local.", RecordType::A));
        let (legacy, asked) = respond(&answers, &request, true);
        let legacy = legacy.unwrap();
        assert_eq!(asked.iter().map(|(_, a)| *a).collect::<Vec<_>>(), [true, false]);
        assert_eq!((legacy.metadata.id, legacy.queries.len()), (0x4242, 2), "ID and questions repeated");
        assert!(legacy.metadata.authoritative);
        assert_eq!((legacy.answers[0].ttl, legacy.answers[0].dns_class), (LEGACY_TTL, DNSClass::IN));
        let (full, _) = respond(&answers, &request, false);
        let full = full.unwrap();
        assert_eq!((full.metadata.id, full.queries.len()), (0, 0));
        assert_eq!((full.answers[0].ttl, full.answers[0].dns_class), (HOST_TTL, DNSClass::Unknown(0x8001)));
        let wire = full.to_vec().unwrap();
        assert!(wire.windows(4).any(|w| w == [0, 1, 0x80, 1]), "type A, cache-flush IN on the wire");
        let mut nobody = Message::query();
        nobody.add_query(ask("other.local.", RecordType::A));
        assert!(respond(&answers, &nobody, true).0.is_none(), "silence for another's name");
    }

    #[test]
    fn the_service_list_follows_what_the_decky_serves() {
        let p = linux();
        let serving: BTreeMap<String, u16> =
            [("ssh".to_string(), 22), ("http".to_string(), 80), ("mysql".to_string(), 3306)].into();
        let services = advertised(&p, &serving);
        assert_eq!(services, [("_ssh._tcp", 22), ("_sftp-ssh._tcp", 22), ("_http._tcp", 80)]);
        let answers = Answers::new(&p, "10.1.2.3".parse().unwrap(), &services);
        let (list, _) = answers.to(&ask("_services._dns-sd._udp.local", RecordType::PTR));
        let names: Vec<String> = list.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(names, ["_ssh._tcp.local.", "_sftp-ssh._tcp.local.", "_http._tcp.local."]);
        let (ptr, extra) = answers.to(&ask("_http._tcp.local", RecordType::PTR));
        assert_eq!(ptr[0].data.to_string(), "nas-02._http._tcp.local.");
        let srv = extra.iter().find(|r| r.record_type() == RecordType::SRV).unwrap();
        assert_eq!(srv.data, RData::SRV(SRV::new(0, 0, 80, Name::from_ascii("nas-02.local.").unwrap())));
        assert!(extra.iter().any(|r| r.record_type() == RecordType::A));
        assert!(answers.to(&ask("_rfb._tcp.local", RecordType::PTR)).0.is_empty(), "vnc is not served");
        let windows = Persona::derive("ws-07", Some("windows-workstation"), None, 1_764_000_000);
        assert!(advertised(&windows, &serving).is_empty());
    }
}
