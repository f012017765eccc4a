//! S7comm (ISO-on-TCP, port 102): the Siemens protocol of the `conpot`
//! PLC, a companion of its Modbus/TCP (see [`super::Protocol::companions`]),
//! answering as a SIMATIC S7-300 CPU 315-2 PN/DP does.
//!
//! Layers, as RFC 1006 and the S7 protocol stack them: a TPKT header
//! (version 3, length), COTP (ISO 8073 class 0: connection request →
//! connection confirm echoing the TSAPs, then data transfer units), and
//! the S7 PDU inside (protocol id 0x32).
//!
//! Served: Setup Communication (the PDU size is negotiated down to the
//! CPU's 240), and Read SZL (userdata group 4) for what identification
//! tools read: 0x0000 (the list of SZL-IDs), 0x0011/0x0111 (module
//! identification: order number, hardware, firmware version) and
//! 0x001C/0x011C (component identification: station name, module name,
//! plant designation, copyright, serial number, module type). The answers
//! come from the persona, so one decky is always the same PLC. Unknown
//! SZL-IDs get the CPU's "invalid SZL ID" error; variable reads and
//! writes are recorded with their addresses (and written bytes) and
//! answered "object does not exist", as for a DB the program lacks;
//! other jobs (PLC stop, block up/download, …) are recorded and refused
//! with an error class. Every request is a `command` line.
//!
//! A TPKT that is not version 3, or longer than the CPU's TPDU size,
//! ends the session without an answer, as the CPU's stack drops it.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::event::{self, SharedSession};
use crate::io::{end_of, End, Metered};
use crate::Persona;

/// The companion entry `conpot` lists.
pub struct S7comm;

impl super::Protocol for S7comm {
    fn name(&self) -> &'static str {
        "s7comm"
    }
    fn default_port(&self) -> u16 {
        102
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// Largest TPKT accepted: a 1024-byte TPDU (what the CPU confirms) with
/// the TPKT header around it.
pub const MAX_TPKT: usize = 1024 + 4;
/// The PDU size the CPU 315-2 PN/DP negotiates at most.
const CPU_PDU: u16 = 240;

/// The order number (MLFB) of the CPU.
const ORDER_NUMBER: &str = "6ES7 315-2EH14-0AB0";
const MODULE_NAME: &str = "CPU 315-2 PN/DP";
const COPYRIGHT: &str = "Original Siemens Equipment";
/// What plants the PLC is said to run, one picked per decky.
const PLANTS: &[&str] =
    &["Pump Station", "Water Treatment", "Boiler House", "Packaging Line", "Substation", "Cooling Tower"];

/// The PLC facts a decky's persona gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Name of the automation system (the station name in the project).
    pub system_name: String,
    pub module_name: String,
    pub plant: String,
    pub serial: String,
    pub order_number: String,
    /// Firmware version (major, minor, patch).
    pub firmware: (u8, u8, u8),
}

/// Parse `V3.2.6` (or `3.2.6`) into its three numbers.
fn parse_version(v: &str) -> Option<(u8, u8, u8)> {
    let mut parts = v.trim_start_matches(['V', 'v']).split('.').map(|p| p.parse::<u8>().ok());
    Some((parts.next()??, parts.next()??, parts.next()?.unwrap_or(0)))
}

impl Identity {
    pub fn of(persona: &Persona) -> Identity {
        let digest = ring::digest::digest(&ring::digest::SHA256, format!("s7comm\0{}", persona.hostname).as_bytes());
        let d = digest.as_ref();
        let letter = |b: u8| (b'A' + b % 26) as char;
        // The S7-300's serial shape: "S C-" then a letter, three
        // alphanumerics and eight digits.
        let digits: String = d[8..16].iter().map(|b| char::from(b'0' + b % 10)).collect();
        let serial =
            format!("S C-{}{}{}{}{digits}", letter(d[0]), letter(d[1]), char::from(b'0' + d[2] % 10), letter(d[3]));
        let plant = format!("{} {}", PLANTS[d[4] as usize % PLANTS.len()], 1 + d[5] % 9);
        let firmware = persona.version_of("s7comm", |_| "V3.2.6".to_string());
        Identity {
            system_name: persona.hostname.to_ascii_uppercase(),
            module_name: MODULE_NAME.into(),
            plant,
            serial,
            order_number: ORDER_NUMBER.into(),
            firmware: parse_version(&firmware).unwrap_or((3, 2, 6)),
        }
    }
}

/// `text` as a fixed field of `len` bytes, zero-padded (cut when longer).
fn field(text: &str, len: usize) -> Vec<u8> {
    let mut out: Vec<u8> = text.bytes().take(len).collect();
    out.resize(len, 0);
    out
}

/// Records of SZL 0x0011 (module identification): index, 20-byte order
/// number, module type, and two version words, 28 bytes each.
fn module_records(id: &Identity) -> Vec<(u16, Vec<u8>)> {
    let record = |index: u16, mlfb: &str, ausbg: [u8; 2], ausbe: [u8; 2]| {
        let mut r = index.to_be_bytes().to_vec();
        let mut order = mlfb.as_bytes().to_vec();
        order.resize(20, b' ');
        r.extend(order);
        r.extend([0, 0]);
        r.extend(ausbg);
        r.extend(ausbe);
        (index, r)
    };
    let (major, minor, patch) = id.firmware;
    vec![
        record(0x0001, &id.order_number, [0, 4], [0, 1]),
        record(0x0006, &id.order_number, [0, 4], [0, 1]),
        // The firmware record: no order number, 'V' and the version.
        record(0x0007, "", [b'V', major], [minor, patch]),
    ]
}

/// Records of SZL 0x001C (component identification): index and a
/// 32-byte text, 34 bytes each. Six fit the CPU's 240-byte PDU.
fn component_records(id: &Identity) -> Vec<(u16, Vec<u8>)> {
    [
        (0x0001u16, id.system_name.as_str()),
        (0x0002, id.module_name.as_str()),
        (0x0003, id.plant.as_str()),
        (0x0004, COPYRIGHT),
        (0x0005, id.serial.as_str()),
        (0x0007, id.module_name.as_str()),
    ]
    .into_iter()
    .map(|(index, text)| {
        let mut r = index.to_be_bytes().to_vec();
        r.extend(field(text, 32));
        (index, r)
    })
    .collect()
}

/// The SZL-IDs this CPU answers (SZL 0x0000 lists them).
const SZL_IDS: &[u16] = &[0x0000, 0x0011, 0x001c, 0x0111, 0x011c];

/// The partial list SZL `szl_id` / `index` reads: record length and
/// records; `None` when the CPU has no such list.
pub fn szl(id: &Identity, szl_id: u16, index: u16) -> Option<(u16, Vec<Vec<u8>>)> {
    let pick = |records: Vec<(u16, Vec<u8>)>, single: bool| -> Option<Vec<Vec<u8>>> {
        let chosen: Vec<Vec<u8>> =
            records.into_iter().filter(|(i, _)| !single || *i == index).map(|(_, r)| r).collect();
        (!chosen.is_empty()).then_some(chosen)
    };
    match szl_id {
        0x0000 => Some((2, SZL_IDS.iter().map(|i| i.to_be_bytes().to_vec()).collect())),
        // xy11 / xy1C with x = 0: all records, whatever the index;
        // x = 1: the one record the index names.
        0x0011 | 0x0111 => Some((28, pick(module_records(id), szl_id == 0x0111)?)),
        0x001c | 0x011c => Some((34, pick(component_records(id), szl_id == 0x011c)?)),
        _ => None,
    }
}

/// One TPDU's meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tpdu {
    /// COTP connection request: the client's source reference, calling
    /// and called TSAP.
    Connect { src_ref: u16, calling: Vec<u8>, called: Vec<u8> },
    /// COTP disconnect request.
    Disconnect,
    /// COTP data: one S7 PDU.
    Data(S7Pdu),
    /// Something else: the COTP PDU type.
    Other(u8),
}

/// An S7 PDU's header fields and its parameter and data parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S7Pdu {
    pub rosctr: u8,
    pub pdu_ref: u16,
    pub params: Vec<u8>,
    pub data: Vec<u8>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parse one TPDU (what follows the TPKT header). `None` when it is not
/// well formed (its lengths disagree, or a data unit is not S7).
pub fn parse_tpdu(tpdu: &[u8]) -> Option<Tpdu> {
    let li = *tpdu.first()? as usize;
    let kind = *tpdu.get(1)?;
    let header = tpdu.get(1..1 + li)?;
    match kind & 0xf0 {
        0xe0 => {
            let src_ref = be16(header, 3)?;
            let (mut calling, mut called) = (Vec::new(), Vec::new());
            let mut params = header.get(6..)?;
            while let [code, len, rest @ ..] = params {
                let value = rest.get(..*len as usize)?;
                match code {
                    0xc1 => calling = value.to_vec(),
                    0xc2 => called = value.to_vec(),
                    _ => {}
                }
                params = &rest[*len as usize..];
            }
            Some(Tpdu::Connect { src_ref, calling, called })
        }
        0x80 => Some(Tpdu::Disconnect),
        0xf0 => {
            let s7 = tpdu.get(1 + li..)?;
            if *s7.first()? != 0x32 {
                return None;
            }
            let rosctr = *s7.get(1)?;
            let pdu_ref = be16(s7, 4)?;
            let (plen, dlen) = (be16(s7, 6)? as usize, be16(s7, 8)? as usize);
            // Ack and ack-data headers carry two more bytes (the error).
            let start = if matches!(rosctr, 2 | 3) { 12 } else { 10 };
            let params = s7.get(start..start + plen)?.to_vec();
            let data = s7.get(start + plen..start + plen + dlen)?.to_vec();
            Some(Tpdu::Data(S7Pdu { rosctr, pdu_ref, params, data }))
        }
        _ => Some(Tpdu::Other(kind)),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The S7 memory area a variable address names.
fn area(code: u8) -> String {
    match code {
        0x81 => "I".into(),
        0x82 => "Q".into(),
        0x83 => "M".into(),
        0x84 => "DB".into(),
        0x1c => "C".into(),
        0x1d => "T".into(),
        other => format!("area{other:#04x}"),
    }
}

/// The variable items (12 bytes each, `12 0a 10 …`) of a read or write
/// job, as `DB1.0 size=2 count=4` strings; `None` when malformed.
fn items(params: &[u8]) -> Option<Vec<String>> {
    let count = *params.get(1)? as usize;
    let mut out = Vec::new();
    for i in 0..count {
        let item = params.get(2 + 12 * i..2 + 12 * (i + 1))?;
        if item[0] != 0x12 {
            return None;
        }
        let (size, amount, db, code) = (item[3], be16(item, 4)?, be16(item, 6)?, item[8]);
        let address = u32::from_be_bytes([0, item[9], item[10], item[11]]);
        let db = if code == 0x84 { db.to_string() } else { String::new() };
        out.push(format!("{}{db}.{}.{} size={size} count={amount}", area(code), address >> 3, address & 7));
    }
    Some(out)
}

/// A header of ROSCTR `rosctr` (3: ack-data, with an error; 7: userdata).
fn s7_header(rosctr: u8, pdu_ref: u16, params: &[u8], data: &[u8], error: Option<[u8; 2]>) -> Vec<u8> {
    let mut out = vec![0x32, rosctr, 0, 0];
    out.extend(pdu_ref.to_be_bytes());
    out.extend((params.len() as u16).to_be_bytes());
    out.extend((data.len() as u16).to_be_bytes());
    if let Some(e) = error {
        out.extend(e);
    }
    out.extend_from_slice(params);
    out.extend_from_slice(data);
    out
}

/// A TPKT around `tpdu`.
fn tpkt(tpdu: &[u8]) -> Vec<u8> {
    let mut out = vec![3, 0];
    out.extend(((tpdu.len() + 4) as u16).to_be_bytes());
    out.extend_from_slice(tpdu);
    out
}

/// A COTP data unit (last of its TSDU) around an S7 PDU.
fn dt(s7: &[u8]) -> Vec<u8> {
    let mut out = vec![2, 0xf0, 0x80];
    out.extend_from_slice(s7);
    tpkt(&out)
}

/// The command line and the reply (a whole TPKT frame) for one TPDU;
/// no reply for a disconnect or a data unit the CPU ignores.
pub fn answer(id: &Identity, tpdu: &Tpdu) -> (String, Option<Vec<u8>>) {
    match tpdu {
        Tpdu::Connect { src_ref, calling, called } => {
            // Connection confirm: our reference, the client's, class 0,
            // 1024-byte TPDUs, the TSAPs echoed.
            let mut params = vec![0xc0, 1, 0x0a];
            for (code, tsap) in [(0xc1, calling), (0xc2, called)] {
                if !tsap.is_empty() {
                    params.extend([code, tsap.len() as u8]);
                    params.extend(tsap.iter());
                }
            }
            let mut cc = vec![(6 + params.len()) as u8, 0xd0];
            cc.extend(src_ref.to_be_bytes());
            cc.extend([0x00, 0x01, 0x00]);
            cc.extend(params);
            (format!("cotp_connect calling_tsap={} called_tsap={}", hex(calling), hex(called)), Some(tpkt(&cc)))
        }
        Tpdu::Disconnect => ("cotp_disconnect".into(), None),
        Tpdu::Other(kind) => (format!("cotp_pdu {kind:#04x}"), None),
        Tpdu::Data(pdu) => match pdu.rosctr {
            1 => job(pdu),
            7 => userdata(id, pdu),
            other => (format!("rosctr {other:#04x}"), None),
        },
    }
}

/// A job (ROSCTR 1): setup communication, read/write var, and the rest.
fn job(pdu: &S7Pdu) -> (String, Option<Vec<u8>>) {
    let function = pdu.params.first().copied().unwrap_or(0);
    let ack =
        |params: &[u8], data: &[u8], error: [u8; 2]| Some(dt(&s7_header(3, pdu.pdu_ref, params, data, Some(error))));
    match function {
        0xf0 if pdu.params.len() >= 8 => {
            let asked = be16(&pdu.params, 6).unwrap_or(CPU_PDU);
            let mut params = pdu.params[..8].to_vec();
            // One job in parallel each way; the PDU no larger than the CPU's.
            params[2..6].copy_from_slice(&[0, 1, 0, 1]);
            params[6..8].copy_from_slice(&asked.clamp(64, CPU_PDU).to_be_bytes());
            (format!("setup_communication pdu={asked}"), ack(&params, &[], [0, 0]))
        }
        0x04 | 0x05 => {
            let verb = if function == 0x04 { "read_var" } else { "write_var" };
            let Some(vars) = items(&pdu.params) else {
                return (format!("{verb} malformed"), ack(&[function], &[], [0x81, 0x04]));
            };
            let mut line = format!("{verb} {}", vars.join(" "));
            if function == 0x05 {
                line.push_str(&format!(" data={}", hex(&pdu.data)));
            }
            // Each item: "object does not exist" (0x0a). A read's item
            // carries an empty value; a write's is its return code alone.
            let data: Vec<u8> = if function == 0x04 {
                vars.iter().flat_map(|_| [0x0a, 0, 0, 0]).collect()
            } else {
                vec![0x0a; vars.len()]
            };
            (line, ack(&[function, vars.len() as u8], &data, [0, 0]))
        }
        _ => {
            let name = match function {
                0x00 => "cpu_services",
                0x1a => "request_download",
                0x1b => "download_block",
                0x1c => "download_ended",
                0x1d => "start_upload",
                0x1e => "upload",
                0x1f => "end_upload",
                0x28 => "plc_control",
                0x29 => "plc_stop",
                _ => "function",
            };
            // Error class 0x81 code 0x04: the CPU refuses the service in
            // this context (no password, no project loaded for it).
            (format!("{name} {function:#04x} params={}", hex(&pdu.params)), ack(&[function], &[], [0x81, 0x04]))
        }
    }
}

/// A userdata PDU (ROSCTR 7): Read SZL answered, other groups refused.
fn userdata(id: &Identity, pdu: &S7Pdu) -> (String, Option<Vec<u8>>) {
    let p = &pdu.params;
    let (group, subfunction, seq) =
        (p.get(5).copied().unwrap_or(0) & 0x0f, p.get(6).copied().unwrap_or(0), p.get(7).copied().unwrap_or(0));
    // Response parameters: head, length 8, method 0x12, type 8 (response)
    // with the group, subfunction, sequence, no more data units, error.
    let reply = |error: [u8; 2], data: &[u8]| {
        let params = [0x00, 0x01, 0x12, 0x08, 0x12, 0x80 | group, subfunction, seq, 0, 0, error[0], error[1]];
        Some(dt(&s7_header(7, pdu.pdu_ref, &params, data, None)))
    };
    let refused = [0x0a, 0x00, 0x00, 0x00];
    if p.len() < 8 || p[..3] != [0x00, 0x01, 0x12] {
        return ("userdata malformed".into(), None);
    }
    if (group, subfunction) != (4, 1) {
        return (format!("userdata group={group} subfunction={subfunction}"), reply([0x81, 0x04], &refused));
    }
    let (Some(szl_id), Some(index)) = (be16(&pdu.data, 4), be16(&pdu.data, 6)) else {
        return ("read_szl malformed".into(), reply([0x81, 0x04], &refused));
    };
    let line = format!("read_szl id={szl_id:#06x} index={index:#06x}");
    match szl(id, szl_id, index) {
        // Error 0xd401: invalid SZL ID (or index).
        None => (line, reply([0xd4, 0x01], &refused)),
        Some((record_len, records)) => {
            let mut list = szl_id.to_be_bytes().to_vec();
            list.extend(index.to_be_bytes());
            list.extend(record_len.to_be_bytes());
            list.extend((records.len() as u16).to_be_bytes());
            list.extend(records.concat());
            let mut data = vec![0xff, 0x09];
            data.extend((list.len() as u16).to_be_bytes());
            data.extend(list);
            (line, reply([0, 0], &data))
        }
    }
}

async fn timed<T>(idle: Duration, f: impl std::future::Future<Output = std::io::Result<T>>) -> Result<T, End> {
    match tokio::time::timeout(idle, f).await {
        Err(_) => Err(End::Idle),
        Ok(Err(e)) => Err(end_of(e)),
        Ok(Ok(v)) => Ok(v),
    }
}

pub async fn serve(session: SharedSession, mut io: Metered<TcpStream>) -> End {
    let (persona, idle) = event::with(&session, |s| (s.context().persona.clone(), s.limits().idle));
    let id = Identity::of(&persona);
    loop {
        let mut header = [0u8; 4];
        if let Err(e) = timed(idle, io.read_exact(&mut header)).await {
            return e;
        }
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        if header[0] != 3 || !(7..=MAX_TPKT).contains(&len) {
            event::with(&session, |s| s.command(&format!("not tpkt {}", hex(&header))));
            return End::Io(format!("not a TPKT frame (version {}, length {len})", header[0]));
        }
        let mut tpdu = vec![0u8; len - 4];
        if let Err(e) = timed(idle, io.read_exact(&mut tpdu)).await {
            return e;
        }
        let Some(parsed) = parse_tpdu(&tpdu) else {
            event::with(&session, |s| s.command(&format!("malformed tpdu {}", hex(&tpdu[..tpdu.len().min(64)]))));
            return End::Io("malformed COTP or S7 PDU".into());
        };
        let (line, reply) = answer(&id, &parsed);
        event::with(&session, |s| s.command(&line));
        if parsed == Tpdu::Disconnect {
            return End::Done;
        }
        if let Some(reply) = reply {
            if let Err(e) = timed(idle, io.write_all(&reply)).await {
                return e;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity::of(&Persona::derive("plc-01", Some("iot-device"), None, 1_764_000_000))
    }

    /// What nmap's s7-info sends, byte for byte.
    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn exchange(frame: &str) -> (String, Vec<u8>) {
        let frame = unhex(frame);
        let tpdu = parse_tpdu(&frame[4..]).expect("parses");
        let (line, reply) = answer(&identity(), &tpdu);
        (line, reply.unwrap_or_default())
    }

    /// A NUL-terminated string at 1-based `at`, as nmap's Lua reads it.
    fn z(b: &[u8], at: usize) -> String {
        let s = &b[at - 1..];
        String::from_utf8_lossy(&s[..s.iter().position(|c| *c == 0).unwrap_or(s.len())]).into_owned()
    }

    #[test]
    fn the_connection_request_is_confirmed_with_the_tsaps() {
        let (line, cc) = exchange("0300001611e00000001400c1020100c2020102c0010a");
        assert_eq!(line, "cotp_connect calling_tsap=0100 called_tsap=0102");
        assert_eq!(cc[5], 0xd0, "s7-info's connect-confirm check");
        assert_eq!(&cc[6..8], &[0x00, 0x14], "the client's reference");
        assert_eq!(u16::from_be_bytes([cc[2], cc[3]]) as usize, cc.len());
        assert!(cc.windows(4).any(|w| w == [0xc2, 2, 1, 2]));
    }

    #[test]
    fn setup_communication_negotiates_the_cpus_pdu() {
        let (line, ack) = exchange("0300001902f08032010000000000080000f0000001000101e0");
        assert_eq!(line, "setup_communication pdu=480");
        assert_eq!(ack[7], 0x32);
        assert_eq!(ack[8], 3, "ack-data");
        assert_eq!(&ack[ack.len() - 2..], &240u16.to_be_bytes());
    }

    #[test]
    fn nmap_reads_module_identification_where_it_looks() {
        let (line, r) = exchange("0300002102f080320700000000000800080001120411440100ff09000400110001");
        assert_eq!(line, "read_szl id=0x0011 index=0x0001");
        assert!(r.len() >= 125);
        assert_eq!(z(&r, 44).trim_end(), ORDER_NUMBER);
        assert_eq!(z(&r, 72).trim_end(), ORDER_NUMBER);
        assert_eq!(&r[122..125], &[3, 2, 6], "V3.2.6 at bytes 123-125");
    }

    #[test]
    fn nmap_reads_component_identification_where_it_looks() {
        let (line, r) = exchange("0300002102f080320700000000000800080001120411440100ff090004001c0001");
        assert_eq!(line, "read_szl id=0x001c index=0x0001");
        let id = identity();
        // s7-info reads these 4 bytes further on (its SZL-ID test looks
        // at the transport size byte, which is never 0x1c).
        assert_eq!(z(&r, 44), "PLC-01");
        assert_eq!(z(&r, 78), MODULE_NAME);
        assert_eq!(z(&r, 112), id.plant);
        assert_eq!(z(&r, 146), COPYRIGHT);
        assert_eq!(z(&r, 180), id.serial);
        assert!(r.len() - 7 <= CPU_PDU as usize, "one PDU of 240 bytes holds it");
    }

    #[test]
    fn single_records_and_unknown_lists() {
        let id = identity();
        let (len, one) = szl(&id, 0x011c, 5).unwrap();
        assert_eq!((len, one.len()), (34, 1));
        assert_eq!(&one[0][2..2 + id.serial.len()], id.serial.as_bytes());
        assert!(szl(&id, 0x011c, 0x0042).is_none());
        assert!(szl(&id, 0x0424, 0).is_none());
        let (_, r) = exchange("0300002102f080320700000000000800080001120411440100ff09000404240000");
        assert_eq!(&r[27..29], &[0xd4, 0x01], "invalid SZL ID");
    }

    #[test]
    fn variable_access_and_plc_stop_are_recorded_and_refused() {
        // Read DB1.DBB0, 4 bytes; then write 2 bytes to M10.0.
        let (line, r) = exchange("0300001f02f080320100000001000e00000401120a10020004000184000000");
        assert_eq!(line, "read_var DB1.0.0 size=2 count=4");
        assert_eq!(&r[r.len() - 4..], &[0x0a, 0, 0, 0]);
        let (line, r) = exchange("0300002502f080320100000002000e00060501120a100200020000830000500004001012ab");
        assert_eq!(line, "write_var M.10.0 size=2 count=2 data=0004001012ab");
        assert_eq!(r[r.len() - 1], 0x0a);
        let (line, r) = exchange("0300002102f0803201000000030010000029000000000009505f50524f4752414d");
        assert!(line.starts_with("plc_stop 0x29"), "{line}");
        assert_eq!(&r[17..19], &[0x81, 0x04]);
    }

    #[test]
    fn malformed_tpdus_are_refused() {
        for bad in [&[][..], &[2, 0xf0], &[2, 0xf0, 0x80, 0x31, 1], &[2, 0xf0, 0x80, 0x32, 1, 0, 0, 0, 0, 0, 9, 0, 0]] {
            assert!(parse_tpdu(bad).is_none(), "{bad:?}");
        }
        assert_eq!(parse_tpdu(&[6, 0x80, 0, 1, 0, 2, 0]), Some(Tpdu::Disconnect));
    }
}
