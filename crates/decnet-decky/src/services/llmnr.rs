//! LLMNR (5355/udp, RFC 4795): the Windows name resolution that answers
//! for one's own name. Queries for the decky's hostname (one label, or the
//! FQDN; case-insensitive) are answered with the address they came in on,
//! which is what a poisoning tool such as Responder fishes for; every
//! other name gets no answer, as the RFC has a responder do for names it
//! is not authoritative for. Every question is recorded (`request`:
//! `name`, `qtype`, `qclass`, `answered`).
//!
//! Only unicast queries reach the decky's socket (it listens on its own
//! address, not the 224.0.0.252 group). LLMNR is DNS wire format:
//! hickory-proto parses and writes it.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::{Protocol, Transport};
use crate::udp::Datagram;
use crate::Persona;

pub struct Llmnr;

/// TTL Windows gives its LLMNR answers (30 s, RFC 4795's default).
const TTL: u32 = 30;

impl Protocol for Llmnr {
    fn name(&self) -> &'static str {
        "llmnr"
    }
    fn default_port(&self) -> u16 {
        5355
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Udp]
    }
    fn datagram(&self, d: &mut Datagram<'_>) -> Option<Vec<u8>> {
        let request = Message::from_vec(d.payload).ok()?;
        // Responses, other opcodes and anything but one question are
        // dropped silently (RFC 4795 2.1.1).
        if request.metadata.message_type != MessageType::Query || request.metadata.op_code != OpCode::Query {
            return None;
        }
        let [query] = request.queries.as_slice() else { return None };
        let reply = respond(&d.ctx.persona, d.local.ip(), &request);
        let answered = reply.as_ref().is_some_and(|r| !r.answers.is_empty());
        d.request(
            vec![
                ("name", query.name().to_ascii()),
                ("qtype", query.query_type().to_string()),
                ("qclass", query.query_class().to_string()),
                ("answered", answered.to_string()),
            ],
            format!("LLMNR {} {}", query.name().to_ascii(), query.query_type()),
        );
        reply?.to_vec().ok().filter(|b| b.len() <= d.max_reply())
    }
}

/// Whether `name` is the persona's own (its hostname, or its FQDN).
fn is_own(persona: &Persona, name: &Name) -> bool {
    let asked = name.to_ascii().trim_end_matches('.').to_ascii_lowercase();
    asked == persona.hostname.to_ascii_lowercase() || asked == persona.fqdn().to_ascii_lowercase()
}

/// The answer to `request` from a decky reached at `address`; `None` for
/// a name that is not the decky's.
pub fn respond(persona: &Persona, address: IpAddr, request: &Message) -> Option<Message> {
    let query = request.queries.first()?;
    if !is_own(persona, query.name()) || !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
        return None;
    }
    let mut reply = Message::response(request.metadata.id, OpCode::Query);
    reply.add_query(query.clone());
    // Its own name but no address of the asked type: an empty answer.
    if let (IpAddr::V4(a), RecordType::A | RecordType::ANY) = (address, query.query_type()) {
        reply.add_answer(Record::from_rdata(query.name().clone(), TTL, RData::A(A(a))));
    }
    if let (IpAddr::V6(a), RecordType::AAAA | RecordType::ANY) = (address, query.query_type()) {
        reply.add_answer(Record::from_rdata(query.name().clone(), TTL, RData::AAAA(AAAA(a))));
    }
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn ask(name: &str, qtype: RecordType) -> Message {
        let mut m = Message::query();
        m.metadata.id = 7;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        m
    }

    #[test]
    fn its_own_name_is_answered_with_its_address_in_any_case() {
        let p = Persona::derive("WS-07", Some("windows-workstation"), None, 1_764_000_000);
        let at: IpAddr = "10.1.2.3".parse().unwrap();
        for name in ["ws-07", "WS-07.", &p.fqdn()] {
            let r = respond(&p, at, &ask(name, RecordType::A)).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(r.metadata.id, 7);
            assert_eq!(r.answers[0].data, RData::A(A::new(10, 1, 2, 3)));
        }
        // AAAA for an IPv4-only host: its name, no address.
        assert!(respond(&p, at, &ask("ws-07", RecordType::AAAA)).unwrap().answers.is_empty());
    }

    #[test]
    fn other_names_get_no_answer() {
        let p = Persona::derive("ws-07", Some("windows-workstation"), None, 1_764_000_000);
        let at: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(respond(&p, at, &ask("wpad", RecordType::A)).is_none());
        assert!(respond(&p, at, &ask("ws-077", RecordType::A)).is_none());
    }
}
