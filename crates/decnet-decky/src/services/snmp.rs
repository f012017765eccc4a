//! SNMP (161/udp): net-snmp's snmpd as the persona's release packages it,
//! read-only.
//!
//! - v1 and v2c GET, GETNEXT and GETBULK (v2c) with the persona's
//!   community (`public` unless the fleet file sets the persona's
//!   `versions.snmp-community`) answer the system group (sysDescr as
//!   net-snmp builds it from `uname`: `Linux <host> <release> <version>
//!   <machine>`, or the Windows SNMP service's `Hardware: … Software: …`),
//!   the interfaces table from the persona's interfaces, and hrSystem.
//!   SET is refused as for a read-only community. Walks work.
//! - Every v1/v2c message's community is recorded as a credential
//!   (`username="community"`, the string as `secret_b64`, `result`), right
//!   or wrong; a wrong community gets no answer, as net-snmp's.
//! - Each PDU is one `command` line: `GET 1.3.6.1.2.1.1.1.0 …`.
//! - A v3 discovery message gets net-snmp's report (its engine ID, with
//!   net-snmp's enterprise number, is what nmap names it by).
//!
//! Replies stay within the amplification bound: GETBULK stops adding
//! rows before it, and a GET whose answer would not fit is `tooBig`.

use std::net::Ipv4Addr;

use super::snmp_ber::{self as ber, BerError, Reader};
use super::{Protocol, Transport};
use crate::persona::OsFamily;
use crate::udp::Datagram;
use crate::Persona;

pub struct Snmp;

const GET: u8 = 0xa0;
const GETNEXT: u8 = 0xa1;
const RESPONSE: u8 = 0xa2;
const SET: u8 = 0xa3;
const GETBULK: u8 = 0xa5;
const REPORT: u8 = 0xa8;

/// Error statuses (RFC 3416).
const TOO_BIG: i64 = 1;
const NO_SUCH_NAME: i64 = 2;
const NO_ACCESS: i64 = 6;
/// Variable bindings answered per PDU (net-snmp has no fixed limit; the
/// amplification bound is the real one).
const MAX_VARBINDS: usize = 64;

impl Protocol for Snmp {
    fn name(&self) -> &'static str {
        "snmp"
    }
    fn default_port(&self) -> u16 {
        161
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Udp]
    }
    fn datagram(&self, d: &mut Datagram<'_>) -> Option<Vec<u8>> {
        let message = match Message::parse(d.payload) {
            Ok(m) => m,
            Err(_) => return None,
        };
        let persona = d.ctx.persona.clone();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        match message {
            Message::V3Discovery { msg_id, request_id } => {
                d.request(vec![("version", "3".into())], "SNMPv3 engine discovery".into());
                Some(discovery_report(&persona, now, msg_id, request_id))
            }
            Message::Community { version, community, pdu } => {
                let community_ok = community == self::community(&persona).as_bytes();
                d.login_attempt(
                    "community",
                    &community,
                    "community",
                    vec![
                        ("result", if community_ok { "accepted" } else { "refused" }.into()),
                        ("version", if version == 0 { "1" } else { "2c" }.into()),
                    ],
                );
                d.command(&pdu.describe());
                if !community_ok {
                    return None;
                }
                let mib = Mib::of(&persona, now);
                Some(respond(&mib, version, &community, &pdu, d.max_reply()))
            }
        }
    }
}

/// The community that answers.
pub fn community(persona: &Persona) -> String {
    persona.version_of("snmp-community", |_| "public".into())
}

/// One PDU of a v1/v2c message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub kind: u8,
    pub request_id: i64,
    /// GETBULK's non-repeaters and max-repetitions (error fields otherwise).
    pub non_repeaters: i64,
    pub max_repetitions: i64,
    pub oids: Vec<Vec<u32>>,
}

impl Pdu {
    fn describe(&self) -> String {
        let verb = match self.kind {
            GET => "GET",
            GETNEXT => "GETNEXT",
            SET => "SET",
            GETBULK => "GETBULK",
            _ => "PDU",
        };
        let oids: Vec<String> = self.oids.iter().map(|o| dotted(o)).collect();
        format!("{verb} {}", oids.join(" "))
    }
}

/// A message, as far as the decky cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Community { version: i64, community: Vec<u8>, pdu: Pdu },
    V3Discovery { msg_id: i64, request_id: i64 },
}

impl Message {
    pub fn parse(wire: &[u8]) -> Result<Message, BerError> {
        let mut outer = Reader::new(wire).sequence()?;
        let version = outer.integer()?;
        match version {
            0 | 1 => {
                let community = outer.octets()?.to_vec();
                let (kind, body) = outer.any()?;
                if !matches!(kind, GET | GETNEXT | SET | GETBULK) || (kind == GETBULK && version == 0) {
                    return Err(BerError("unsupported pdu"));
                }
                let mut body = Reader::new(body);
                let request_id = body.integer()?;
                let non_repeaters = body.integer()?;
                let max_repetitions = body.integer()?;
                let mut list = body.sequence()?;
                let mut oids = Vec::new();
                while !list.is_empty() {
                    let mut bind = list.sequence()?;
                    let oid = ber::decode_oid(bind.expect(ber::OID)?)?;
                    bind.any()?;
                    if oids.len() >= MAX_VARBINDS {
                        return Err(BerError("too many variable bindings"));
                    }
                    oids.push(oid);
                }
                Ok(Message::Community {
                    version,
                    community,
                    pdu: Pdu { kind, request_id, non_repeaters, max_repetitions, oids },
                })
            }
            3 => {
                let mut header = outer.sequence()?;
                let msg_id = header.integer()?;
                // The security parameters are skipped: discovery has none
                // worth keeping, and anything past discovery is refused.
                outer.octets()?;
                let mut scoped = outer.sequence()?;
                scoped.octets()?;
                scoped.octets()?;
                let (_, pdu) = scoped.any()?;
                let request_id = Reader::new(pdu).integer()?;
                Ok(Message::V3Discovery { msg_id, request_id })
            }
            _ => Err(BerError("unknown version")),
        }
    }
}

/// A value in the MIB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Octets(Vec<u8>),
    Integer(i64),
    Oid(Vec<u32>),
    TimeTicks(u32),
    Gauge(u32),
    Counter(u32),
    IpAddress(Ipv4Addr),
}

impl Value {
    fn encode(&self) -> Vec<u8> {
        match self {
            Value::Octets(v) => ber::octets(v),
            Value::Integer(v) => ber::integer(*v),
            Value::Oid(v) => ber::oid(v),
            Value::TimeTicks(v) => ber::unsigned(ber::TIMETICKS, *v),
            Value::Gauge(v) => ber::unsigned(ber::GAUGE32, *v),
            Value::Counter(v) => ber::unsigned(ber::COUNTER32, *v),
            Value::IpAddress(a) => ber::tlv(ber::IP_ADDRESS, &a.octets()),
        }
    }
}

/// The persona's MIB view, sorted by OID.
pub struct Mib {
    pub entries: Vec<(Vec<u32>, Value)>,
}

fn arcs(prefix: &[u32], tail: &[u32]) -> Vec<u32> {
    prefix.iter().chain(tail).copied().collect()
}

pub fn dotted(oid: &[u32]) -> String {
    oid.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
}

/// sysDescr as the persona's agent says it.
pub fn sys_descr(p: &Persona) -> String {
    match p.family {
        OsFamily::Windows => {
            let build = p.version_id.rsplit('.').next().unwrap_or("17763");
            format!(
                "Hardware: Intel64 Family 6 Model 85 Stepping 7 AT/AT COMPATIBLE - Software: Windows Version 6.3 (Build {build} Multiprocessor Free)"
            )
        }
        _ => format!("Linux {} {} {} {}", p.hostname, p.kernel_release, p.kernel_version, p.machine),
    }
}

impl Mib {
    pub fn of(p: &Persona, now: i64) -> Mib {
        const SYSTEM: &[u32] = &[1, 3, 6, 1, 2, 1, 1];
        const INTERFACES: &[u32] = &[1, 3, 6, 1, 2, 1, 2];
        const HR_SYSTEM: &[u32] = &[1, 3, 6, 1, 2, 1, 25, 1];
        let uptime = ((now - p.boot_time).max(0) as u64 * 100).min(u32::MAX as u64) as u32;
        let windows = p.family == OsFamily::Windows;
        let object_id: Vec<u32> = if windows {
            // Windows' SNMP service: server or workstation.
            let kind = if p.release.contains("server") { 3 } else { 1 };
            vec![1, 3, 6, 1, 4, 1, 311, 1, 1, 3, 1, kind]
        } else {
            // NET-SNMP-TC::linux.
            vec![1, 3, 6, 1, 4, 1, 8072, 3, 2, 10]
        };
        let mut e: Vec<(Vec<u32>, Value)> = vec![
            (arcs(SYSTEM, &[1, 0]), Value::Octets(sys_descr(p).into_bytes())),
            (arcs(SYSTEM, &[2, 0]), Value::Oid(object_id)),
            (arcs(SYSTEM, &[3, 0]), Value::TimeTicks(uptime)),
            // Debian's snmpd.conf as shipped.
            (arcs(SYSTEM, &[4, 0]), Value::Octets(b"Me <me@example.org>".to_vec())),
            (arcs(SYSTEM, &[5, 0]), Value::Octets(p.hostname.clone().into_bytes())),
            (arcs(SYSTEM, &[6, 0]), Value::Octets(b"Sitting on the Dock of the Bay".to_vec())),
            // No sysServices: Debian's snmpd.conf does not set it, and the
            // real agent answers noSuchInstance.
        ];
        // ifTable: lo first, as Linux numbers them, then the persona's.
        let mut ifaces: Vec<(String, i64, u32, u32, Vec<u8>)> = vec![("lo".into(), 24, 65_536, 10_000_000, vec![])];
        for i in &p.interfaces {
            let mac: Vec<u8> = i.mac.split(':').filter_map(|h| u8::from_str_radix(h, 16).ok()).collect();
            ifaces.push((i.name.clone(), 6, i.mtu, 1_000_000_000, mac));
        }
        e.push((arcs(INTERFACES, &[1, 0]), Value::Integer(ifaces.len() as i64)));
        let column = |c: u32, n: usize| arcs(INTERFACES, &[2, 1, c, n as u32 + 1]);
        for (n, (name, kind, mtu, speed, mac)) in ifaces.iter().enumerate() {
            e.push((column(1, n), Value::Integer(n as i64 + 1)));
            e.push((column(2, n), Value::Octets(name.clone().into_bytes())));
            e.push((column(3, n), Value::Integer(*kind)));
            e.push((column(4, n), Value::Integer(*mtu as i64)));
            e.push((column(5, n), Value::Gauge(*speed)));
            e.push((column(6, n), Value::Octets(mac.clone())));
            e.push((column(7, n), Value::Integer(1)));
            e.push((column(8, n), Value::Integer(1)));
        }
        let date = time::OffsetDateTime::from_unix_timestamp(now).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let mut date_and_time = (date.year() as u16).to_be_bytes().to_vec();
        date_and_time.extend([date.month() as u8, date.day(), date.hour(), date.minute(), date.second(), 0]);
        date_and_time.extend([b'+', 0, 0]);
        e.push((arcs(HR_SYSTEM, &[1, 0]), Value::TimeTicks(uptime)));
        e.push((arcs(HR_SYSTEM, &[2, 0]), Value::Octets(date_and_time)));
        e.push((arcs(HR_SYSTEM, &[3, 0]), Value::Integer(393_216)));
        if !windows {
            let cmdline = format!("BOOT_IMAGE=/boot/vmlinuz-{} root=/dev/mapper/vg0-root ro quiet\n", p.kernel_release);
            e.push((arcs(HR_SYSTEM, &[4, 0]), Value::Octets(cmdline.into_bytes())));
        }
        e.push((arcs(HR_SYSTEM, &[5, 0]), Value::Gauge(p.last_logins.len().min(3) as u32)));
        e.push((arcs(HR_SYSTEM, &[6, 0]), Value::Gauge(90 + p.cpu_count * 8)));
        e.push((arcs(HR_SYSTEM, &[7, 0]), Value::Integer(0)));
        e.sort_by(|a, b| a.0.cmp(&b.0));
        Mib { entries: e }
    }

    fn get(&self, oid: &[u32]) -> Option<&Value> {
        self.entries.binary_search_by(|(o, _)| o.as_slice().cmp(oid)).ok().map(|i| &self.entries[i].1)
    }

    /// The first entry after `oid`.
    fn next(&self, oid: &[u32]) -> Option<&(Vec<u32>, Value)> {
        let i = self.entries.partition_point(|(o, _)| o.as_slice() <= oid);
        self.entries.get(i)
    }
}

/// One variable binding, encoded.
fn bind(oid: &[u32], value: Vec<u8>) -> Vec<u8> {
    ber::sequence(&[ber::oid(oid), value])
}

fn message(version: i64, community: &[u8], request_id: i64, status: i64, index: i64, binds: &[Vec<u8>]) -> Vec<u8> {
    let pdu = ber::tlv(
        RESPONSE,
        &[ber::integer(request_id), ber::integer(status), ber::integer(index), ber::sequence(binds)].concat(),
    );
    ber::sequence(&[ber::integer(version), ber::octets(community), pdu])
}

/// The response to `pdu`, at most `max` bytes where the protocol allows.
pub fn respond(mib: &Mib, version: i64, community: &[u8], pdu: &Pdu, max: usize) -> Vec<u8> {
    let v1 = version == 0;
    let null = || ber::tlv(ber::NULL, &[]);
    let as_sent = || pdu.oids.iter().map(|o| bind(o, null())).collect::<Vec<_>>();
    let error =
        |status: i64, index: usize| message(version, community, pdu.request_id, status, index as i64, &as_sent());
    let mut binds = Vec::new();
    match pdu.kind {
        SET => return error(if v1 { NO_SUCH_NAME } else { NO_ACCESS }, 1),
        GET => {
            for (i, oid) in pdu.oids.iter().enumerate() {
                match mib.get(oid) {
                    Some(v) => binds.push(bind(oid, v.encode())),
                    None if v1 => return error(NO_SUCH_NAME, i + 1),
                    None => binds.push(bind(oid, ber::tlv(ber::NO_SUCH_OBJECT, &[]))),
                }
            }
        }
        GETNEXT => {
            for (i, oid) in pdu.oids.iter().enumerate() {
                match mib.next(oid) {
                    Some((o, v)) => binds.push(bind(o, v.encode())),
                    None if v1 => return error(NO_SUCH_NAME, i + 1),
                    None => binds.push(bind(oid, ber::tlv(ber::END_OF_MIB_VIEW, &[]))),
                }
            }
        }
        _ => {
            // GETBULK: the non-repeaters once, then rows of the rest until
            // max-repetitions, the end of the MIB or the size bound.
            let n = pdu.non_repeaters.clamp(0, pdu.oids.len() as i64) as usize;
            let next_of = |oid: &[u32]| match mib.next(oid) {
                Some((o, v)) => (o.clone(), bind(o, v.encode())),
                None => (oid.to_vec(), bind(oid, ber::tlv(ber::END_OF_MIB_VIEW, &[]))),
            };
            for oid in &pdu.oids[..n] {
                binds.push(next_of(oid).1);
            }
            let mut cursors: Vec<Vec<u32>> = pdu.oids[n..].to_vec();
            let reps = pdu.max_repetitions.clamp(0, MAX_VARBINDS as i64) as usize;
            'rows: for _ in 0..reps {
                let mut row = Vec::new();
                for cursor in cursors.iter_mut() {
                    let (o, b) = next_of(cursor);
                    *cursor = o;
                    row.push(b);
                }
                let size = message(version, community, pdu.request_id, 0, 0, &[binds.clone(), row.clone()].concat());
                if size.len() > max || binds.len() + row.len() > MAX_VARBINDS {
                    break 'rows;
                }
                binds.extend(row);
            }
        }
    }
    let reply = message(version, community, pdu.request_id, 0, 0, &binds);
    if reply.len() > max {
        return error(TOO_BIG, 0);
    }
    reply
}

/// net-snmp's engine ID: its enterprise (8072), format 128 (random), and
/// bytes that stay the decky's own.
pub fn engine_id(p: &Persona) -> Vec<u8> {
    let seed = ring::digest::digest(&ring::digest::SHA256, format!("snmp-engine {}", p.hostname).as_bytes());
    let mut id = vec![0x80, 0x00, 0x1f, 0x88, 0x80];
    id.extend_from_slice(&seed.as_ref()[..8]);
    id.extend_from_slice(&(p.boot_time as u32).to_be_bytes());
    id
}

/// The REPORT net-snmp sends to a v3 engine discovery.
pub fn discovery_report(p: &Persona, now: i64, msg_id: i64, request_id: i64) -> Vec<u8> {
    let engine = engine_id(p);
    let engine_time = (now - p.boot_time).clamp(0, i32::MAX as i64);
    let usm = ber::sequence(&[
        ber::octets(&engine),
        ber::integer(1),
        ber::integer(engine_time),
        ber::octets(b""),
        ber::octets(b""),
        ber::octets(b""),
    ]);
    // usmStatsUnknownEngineIDs.0
    let counter = bind(&[1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0], ber::unsigned(ber::COUNTER32, 1));
    let report = ber::tlv(
        REPORT,
        &[ber::integer(request_id), ber::integer(0), ber::integer(0), ber::sequence(&[counter])].concat(),
    );
    ber::sequence(&[
        ber::integer(3),
        ber::sequence(&[ber::integer(msg_id), ber::integer(65_507), ber::octets(&[0]), ber::integer(3)]),
        ber::octets(&usm),
        ber::sequence(&[ber::octets(&engine), ber::octets(b""), report]),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persona() -> Persona {
        Persona::derive("mon-01", Some("linux-server"), None, 1_764_000_000)
    }

    fn request(version: i64, community: &[u8], kind: u8, oids: &[&[u32]], nr: i64, reps: i64) -> Vec<u8> {
        let binds: Vec<Vec<u8>> = oids.iter().map(|o| bind(o, ber::tlv(ber::NULL, &[]))).collect();
        let pdu =
            ber::tlv(kind, &[ber::integer(42), ber::integer(nr), ber::integer(reps), ber::sequence(&binds)].concat());
        ber::sequence(&[ber::integer(version), ber::octets(community), pdu])
    }

    /// A bound variable as answered: OID, value tag, value bytes.
    type Bound = (Vec<u32>, u8, Vec<u8>);

    fn answer(wire: &[u8], max: usize) -> (i64, Vec<Bound>) {
        let p = persona();
        let Message::Community { version, community, pdu } = Message::parse(wire).unwrap() else { panic!() };
        let out = respond(&Mib::of(&p, 1_764_000_000), version, &community, &pdu, max);
        let mut r = Reader::new(&out).sequence().unwrap();
        r.integer().unwrap();
        r.octets().unwrap();
        let (tag, body) = r.any().unwrap();
        assert_eq!(tag, RESPONSE);
        let mut body = Reader::new(body);
        assert_eq!(body.integer().unwrap(), 42);
        let status = body.integer().unwrap();
        body.integer().unwrap();
        let mut list = body.sequence().unwrap();
        let mut binds = Vec::new();
        while !list.is_empty() {
            let mut b = list.sequence().unwrap();
            let oid = ber::decode_oid(b.expect(ber::OID).unwrap()).unwrap();
            let (t, v) = b.any().unwrap();
            binds.push((oid, t, v.to_vec()));
        }
        (status, binds)
    }

    const SYS_DESCR: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 1, 0];

    #[test]
    fn get_answers_sysdescr_as_net_snmp_builds_it() {
        let p = persona();
        let (status, binds) = answer(&request(1, b"public", GET, &[SYS_DESCR], 0, 0), 4096);
        assert_eq!(status, 0);
        let expected = format!("Linux mon-01 {} {} {}", p.kernel_release, p.kernel_version, p.machine);
        assert_eq!(binds[0].2, expected.into_bytes());
        // A missing object: noSuchObject in v2c, noSuchName in v1.
        let (_, binds) = answer(&request(1, b"public", GET, &[&[1, 3, 6, 1, 9]], 0, 0), 4096);
        assert_eq!(binds[0].1, ber::NO_SUCH_OBJECT);
        let (status, _) = answer(&request(0, b"public", GET, &[&[1, 3, 6, 1, 9]], 0, 0), 4096);
        assert_eq!(status, NO_SUCH_NAME);
    }

    #[test]
    fn a_windows_persona_answers_as_the_windows_snmp_service() {
        let p = Persona::derive("ws-01", Some("windows-workstation"), None, 1_764_000_000);
        let descr = sys_descr(&p);
        assert!(
            descr.starts_with("Hardware: Intel64 Family 6 Model ")
                && descr.contains("Software: Windows Version 6.3 (Build 1"),
            "{descr}"
        );
        let mib = Mib::of(&p, 1_764_000_000);
        assert!(
            matches!(mib.get(&[1, 3, 6, 1, 2, 1, 1, 2, 0]), Some(Value::Oid(o)) if o[..7] == [1, 3, 6, 1, 4, 1, 311])
        );
        // The community is the persona's choice.
        let mut q = p.clone();
        q.versions.insert("snmp-community".into(), "s3cret".into());
        assert_eq!((community(&p), community(&q)), ("public".to_string(), "s3cret".to_string()));
    }

    #[test]
    fn getnext_walks_the_whole_view_in_order_to_its_end() {
        let mut at: Vec<u32> = vec![1, 3, 6, 1, 2, 1];
        let mut seen = 0;
        loop {
            let (_, binds) = answer(&request(1, b"public", GETNEXT, &[&at], 0, 0), 4096);
            if binds[0].1 == ber::END_OF_MIB_VIEW {
                break;
            }
            assert!(binds[0].0 > at, "{:?} after {:?}", binds[0].0, at);
            at = binds[0].0.clone();
            seen += 1;
            assert!(seen < 200);
        }
        assert_eq!(seen, Mib::of(&persona(), 1_764_000_000).entries.len());
    }

    #[test]
    fn getbulk_stops_at_the_size_bound() {
        let wire = request(1, b"public", GETBULK, &[&[1, 3, 6, 1, 2, 1, 2, 2]], 0, 50);
        let (_, big) = answer(&wire, 65_000);
        let (_, small) = answer(&wire, wire.len() * 4);
        assert!(big.len() > small.len() && !small.is_empty(), "{} vs {}", big.len(), small.len());
    }

    #[test]
    fn set_is_refused_and_an_answer_too_big_is_toobig() {
        let (status, _) = answer(&request(1, b"public", SET, &[SYS_DESCR], 0, 0), 4096);
        assert_eq!(status, NO_ACCESS);
        let (status, binds) = answer(&request(1, b"public", GET, &[SYS_DESCR], 0, 0), 50);
        assert_eq!(status, TOO_BIG);
        assert_eq!(binds[0].1, ber::NULL);
    }

    #[test]
    fn malformed_messages_are_errors() {
        let good = request(1, b"public", GET, &[SYS_DESCR], 0, 0);
        for cut in 0..good.len() {
            assert!(Message::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        // GETBULK is not v1; an unknown version; a response PDU.
        assert!(Message::parse(&request(0, b"public", GETBULK, &[SYS_DESCR], 0, 5)).is_err());
        assert!(Message::parse(&request(2, b"public", GET, &[SYS_DESCR], 0, 0)).is_err());
        assert!(Message::parse(&request(1, b"public", RESPONSE, &[SYS_DESCR], 0, 0)).is_err());
        let many: Vec<&[u32]> = vec![SYS_DESCR; MAX_VARBINDS + 1];
        assert!(Message::parse(&request(1, b"public", GET, &many, 0, 0)).is_err());
    }

    #[test]
    fn v3_discovery_gets_a_report_with_net_snmps_engine_id() {
        // nmap's SNMPv3GetRequest probe.
        let probe = b"\x30\x3a\x02\x01\x03\x30\x0f\x02\x02\x4a\x69\x02\x03\0\xff\xe3\x04\x01\x04\x02\x01\x03\x04\x10\x30\x0e\x04\0\x02\x01\0\x02\x01\0\x04\0\x04\0\x04\0\x30\x12\x04\0\x04\0\xa0\x0c\x02\x02\x37\xf0\x02\x01\0\x02\x01\0\x30\0";
        let Message::V3Discovery { msg_id, request_id } = Message::parse(probe).unwrap() else { panic!() };
        assert_eq!((msg_id, request_id), (0x4a69, 0x37f0));
        let report = discovery_report(&persona(), 1_764_000_000, msg_id, request_id);
        assert!(report.len() < 128 && report.len() <= probe.len() * 4);
        // The shape nmap's net-snmp match line looks for.
        assert_eq!(&report[2..5], b"\x02\x01\x03");
        assert_eq!(&report[7..11], b"\x02\x02Ji");
        let at = report.windows(3).position(|w| w == b"\x00\x1f\x88").unwrap();
        assert_eq!(report[at - 1], 0x80);
    }
}
