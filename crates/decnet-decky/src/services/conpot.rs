//! ICS honeypot (`conpot`, port 502): a PLC answering Modbus/TCP. It is
//! the same Siemens S7-300 CPU its S7comm companion on port 102 describes
//! (`s7comm.rs`): vendor, order number, firmware and model in Read Device
//! Identification are that CPU's, so a scanner asking both protocols sees
//! one device (the way conpot's own default template pairs the two).
//!
//! Served: read coils / discrete inputs / holding registers / input
//! registers (1-4), write single coil / register (5, 6), write multiple
//! coils / registers (15, 16), and Read Device Identification (43/14:
//! vendor, product code, firmware revision, URL, product and model name,
//! streams 1-3 and single objects). Other functions get exception 1
//! (illegal function); quantities and addresses outside the spec's or the
//! data model's bounds get exceptions 3 and 2, as the spec says. Any unit
//! id is answered (the CPU's own server answers them all).
//!
//! The data model is 10,000 of each table: values are stable per decky
//! (a plant's registers do not jump between two reads), and a write is
//! read back by the same session, never by another.
//!
//! A frame whose MBAP header is not Modbus (protocol id not 0, length
//! outside 2-254) is answered with exception 1 echoing its header, then
//! the connection is closed: what real devices send to nmap's HTTP probes,
//! and what its service signatures recognise as Modbus. Every request is
//! a `command` line (unit, function, address, count, written values).
//!
//! The same PLC answers S7comm on port 102 ([`super::s7comm`], this
//! service's companion): one `conpot` in a decky's services opens both.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::event::{self, SharedSession};
use crate::io::{end_of, End, Metered};
use crate::Persona;

/// The `conpot` entry of [`super::REGISTRY`].
pub struct Conpot;

impl super::Protocol for Conpot {
    fn name(&self) -> &'static str {
        "conpot"
    }
    fn default_port(&self) -> u16 {
        502
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
    fn companions(&self) -> &'static [&'static dyn super::Protocol] {
        &[&super::s7comm::S7comm]
    }
}

/// Entries in each data table.
const TABLE: u32 = 10_000;
/// Values written that one session remembers.
const MAX_WRITTEN: usize = 4096;

/// The firmware revision the PLC reports: the S7 side's firmware
/// (`versions.s7comm`), unless `versions.conpot` says otherwise.
pub fn revision(persona: &Persona) -> String {
    let (major, minor, patch) = super::s7comm::Identity::of(persona).firmware;
    persona.version_of("conpot", |_| format!("V{major}.{minor}.{patch}"))
}

/// Device identification objects 0-5, in id order: the S7 CPU's facts.
pub fn identification(persona: &Persona) -> Vec<(u8, String)> {
    let cpu = super::s7comm::Identity::of(persona);
    vec![
        (0, "Siemens".into()),
        (1, cpu.order_number.clone()),
        (2, revision(persona)),
        (3, "http://www.siemens.com/automation".into()),
        (4, "SIMATIC S7-300".into()),
        (5, cpu.module_name),
    ]
}

/// One parsed request PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Read {
        function: u8,
        address: u16,
        count: u16,
    },
    WriteCoil {
        address: u16,
        value: u16,
    },
    WriteRegister {
        address: u16,
        value: u16,
    },
    WriteCoils {
        address: u16,
        values: Vec<bool>,
    },
    WriteRegisters {
        address: u16,
        values: Vec<u16>,
    },
    DeviceId {
        code: u8,
        object: u8,
    },
    /// A function this PLC does not serve, or one whose PDU is too short.
    Unsupported {
        function: u8,
    },
    /// A quantity or byte count the spec forbids (exception 3).
    BadValue {
        function: u8,
    },
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parse one PDU (function code first). Never fails: what is not a valid
/// request is one of the exception-raising variants.
pub fn parse(pdu: &[u8]) -> Request {
    let function = pdu.first().copied().unwrap_or(0);
    let parsed = (|| {
        Some(match function {
            1..=4 => {
                let (address, count) = (be16(pdu, 1)?, be16(pdu, 3)?);
                let max = if function <= 2 { 2000 } else { 125 };
                if count == 0 || count > max {
                    Request::BadValue { function }
                } else {
                    Request::Read { function, address, count }
                }
            }
            5 => {
                let (address, value) = (be16(pdu, 1)?, be16(pdu, 3)?);
                if value != 0xff00 && value != 0 {
                    Request::BadValue { function }
                } else {
                    Request::WriteCoil { address, value }
                }
            }
            6 => Request::WriteRegister { address: be16(pdu, 1)?, value: be16(pdu, 3)? },
            15 => {
                let (address, count, bytes) = (be16(pdu, 1)?, be16(pdu, 3)?, *pdu.get(5)? as usize);
                let data = pdu.get(6..6 + bytes)?;
                if count == 0 || count > 1968 || bytes != (count as usize).div_ceil(8) {
                    Request::BadValue { function }
                } else {
                    let values = (0..count as usize).map(|i| data[i / 8] & (1 << (i % 8)) != 0).collect();
                    Request::WriteCoils { address, values }
                }
            }
            16 => {
                let (address, count, bytes) = (be16(pdu, 1)?, be16(pdu, 3)?, *pdu.get(5)? as usize);
                let data = pdu.get(6..6 + bytes)?;
                if count == 0 || count > 123 || bytes != 2 * count as usize {
                    Request::BadValue { function }
                } else {
                    let values = data.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
                    Request::WriteRegisters { address, values }
                }
            }
            43 if pdu.get(1) == Some(&0x0e) => {
                let (code, object) = (*pdu.get(2)?, *pdu.get(3)?);
                if !(1..=4).contains(&code) {
                    Request::BadValue { function }
                } else {
                    Request::DeviceId { code, object }
                }
            }
            _ => Request::Unsupported { function },
        })
    })();
    parsed.unwrap_or(Request::Unsupported { function })
}

/// The `command` line of a request.
pub fn describe(unit: u8, req: &Request) -> String {
    match req {
        Request::Read { function, address, count } => {
            let what = ["", "read_coils", "read_discrete_inputs", "read_holding_registers", "read_input_registers"]
                [*function as usize];
            format!("{what} unit={unit} address={address} count={count}")
        }
        Request::WriteCoil { address, value } => {
            format!("write_single_coil unit={unit} address={address} value={}", u8::from(*value == 0xff00))
        }
        Request::WriteRegister { address, value } => {
            format!("write_single_register unit={unit} address={address} value={value}")
        }
        Request::WriteCoils { address, values } => {
            let bits: Vec<&str> = values.iter().map(|v| if *v { "1" } else { "0" }).collect();
            format!("write_multiple_coils unit={unit} address={address} values=[{}]", bits.join(","))
        }
        Request::WriteRegisters { address, values } => {
            let vals: Vec<String> = values.iter().map(u16::to_string).collect();
            format!("write_multiple_registers unit={unit} address={address} values=[{}]", vals.join(","))
        }
        Request::DeviceId { code, object } => {
            format!("read_device_identification unit={unit} code={code} object={object}")
        }
        Request::Unsupported { function } => format!("function {function:#04x} unit={unit}"),
        Request::BadValue { function } => format!("function {function:#04x} unit={unit} invalid value"),
    }
}

/// The PLC's memory as one session sees it.
pub struct Memory {
    seed: [u8; 8],
    coils: BTreeMap<u16, bool>,
    registers: BTreeMap<u16, u16>,
}

impl Memory {
    pub fn new(persona: &Persona) -> Memory {
        let d = ring::digest::digest(&ring::digest::SHA256, format!("conpot\0{}", persona.hostname).as_bytes());
        Memory {
            seed: d.as_ref()[..8].try_into().unwrap_or([0; 8]),
            coils: BTreeMap::new(),
            registers: BTreeMap::new(),
        }
    }

    /// A stable value for (table, address): process-like values in the
    /// first hundred registers, zeros after, as a small program uses them.
    fn initial(&self, table: u8, address: u16) -> u16 {
        if address >= 100 {
            return 0;
        }
        let mut input = self.seed.to_vec();
        input.extend([table, (address >> 8) as u8, address as u8]);
        let d = ring::digest::digest(&ring::digest::SHA256, &input);
        let v = u16::from_be_bytes([d.as_ref()[0], d.as_ref()[1]]);
        if table <= 2 {
            v & 1
        } else {
            v % 1000
        }
    }

    fn coil(&self, table: u8, address: u16) -> bool {
        match (table, self.coils.get(&address)) {
            (1, Some(v)) => *v,
            _ => self.initial(table, address) == 1,
        }
    }

    fn register(&self, table: u8, address: u16) -> u16 {
        match (table, self.registers.get(&address)) {
            (3, Some(v)) => *v,
            _ => self.initial(table, address),
        }
    }

    fn room(&self) -> bool {
        self.coils.len() + self.registers.len() < MAX_WRITTEN
    }
}

fn in_table(address: u16, count: usize) -> bool {
    address as u32 + count as u32 <= TABLE
}

fn exception(function: u8, code: u8) -> Vec<u8> {
    vec![function | 0x80, code]
}

/// The response PDU to `req`.
pub fn answer(persona: &Persona, memory: &mut Memory, pdu: &[u8], req: &Request) -> Vec<u8> {
    let function = pdu.first().copied().unwrap_or(0);
    match req {
        Request::Unsupported { function } => exception(*function, 1),
        Request::BadValue { function } => exception(*function, 3),
        Request::Read { function, address, count } => {
            if !in_table(*address, *count as usize) {
                return exception(*function, 2);
            }
            let addrs = *address..*address + *count;
            let mut out = vec![*function];
            if *function <= 2 {
                let mut bytes = vec![0u8; (*count as usize).div_ceil(8)];
                for (i, a) in addrs.enumerate() {
                    if memory.coil(*function, a) {
                        bytes[i / 8] |= 1 << (i % 8);
                    }
                }
                out.push(bytes.len() as u8);
                out.extend(bytes);
            } else {
                out.push((*count * 2) as u8);
                for a in addrs {
                    out.extend(memory.register(*function, a).to_be_bytes());
                }
            }
            out
        }
        Request::WriteCoil { address, value } => {
            if !in_table(*address, 1) {
                return exception(5, 2);
            }
            if memory.room() {
                memory.coils.insert(*address, *value == 0xff00);
            }
            pdu[..5].to_vec()
        }
        Request::WriteRegister { address, value } => {
            if !in_table(*address, 1) {
                return exception(6, 2);
            }
            if memory.room() {
                memory.registers.insert(*address, *value);
            }
            pdu[..5].to_vec()
        }
        Request::WriteCoils { address, values } => {
            if !in_table(*address, values.len()) {
                return exception(15, 2);
            }
            for (i, v) in values.iter().enumerate() {
                if memory.room() {
                    memory.coils.insert(address + i as u16, *v);
                }
            }
            pdu[..5].to_vec()
        }
        Request::WriteRegisters { address, values } => {
            if !in_table(*address, values.len()) {
                return exception(16, 2);
            }
            for (i, v) in values.iter().enumerate() {
                if memory.room() {
                    memory.registers.insert(address + i as u16, *v);
                }
            }
            pdu[..5].to_vec()
        }
        Request::DeviceId { code, object } => {
            let objects = identification(persona);
            let wanted: Vec<&(u8, String)> = match code {
                4 => match objects.iter().find(|(id, _)| id == object) {
                    Some(o) => vec![o],
                    None => return exception(function, 2),
                },
                // Basic: 0-2; regular and extended: everything there is,
                // from the object asked for (0 when it is not one).
                1 => objects.iter().filter(|(id, _)| *id <= 2).collect(),
                _ => objects.iter().collect(),
            };
            let start = if *code == 4 || wanted.iter().any(|(id, _)| id == object) { *object } else { 0 };
            let chosen: Vec<&&(u8, String)> = wanted.iter().filter(|(id, _)| *code == 4 || *id >= start).collect();
            // Conformity 0x82: regular identification, single objects too.
            let mut out = vec![43, 0x0e, *code, 0x82, 0, 0, chosen.len() as u8];
            for (id, value) in chosen {
                out.push(*id);
                out.push(value.len() as u8);
                out.extend_from_slice(value.as_bytes());
            }
            out
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

/// An MBAP frame around `pdu`.
fn frame(tid: [u8; 2], pid: [u8; 2], unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut out = tid.to_vec();
    out.extend(pid);
    out.extend(((pdu.len() + 1) as u16).to_be_bytes());
    out.push(unit);
    out.extend_from_slice(pdu);
    out
}

pub async fn serve(session: SharedSession, mut io: Metered<TcpStream>) -> End {
    let (persona, idle) = event::with(&session, |s| (s.context().persona.clone(), s.limits().idle));
    let mut memory = Memory::new(&persona);
    loop {
        let mut header = [0u8; 7];
        if let Err(e) = timed(idle, io.read_exact(&mut header)).await {
            return e;
        }
        let (tid, pid, unit) = ([header[0], header[1]], [header[2], header[3]], header[6]);
        let len = u16::from_be_bytes([header[4], header[5]]) as usize;
        if pid != [0, 0] || !(2..=254).contains(&len) {
            // Not Modbus: answer the function byte with exception 1 and
            // close, as real devices do (the rest cannot be framed).
            let mut function = [0u8; 1];
            let function = match timed(Duration::from_secs(2).min(idle), io.read_exact(&mut function)).await {
                Ok(_) => function[0],
                Err(_) => 0,
            };
            event::with(&session, |s| s.command(&format!("function {function:#04x} unit={unit} not modbus")));
            let _ = timed(idle, io.write_all(&frame(tid, pid, unit, &exception(function, 1)))).await;
            return End::Done;
        }
        let mut pdu = vec![0u8; len - 1];
        if let Err(e) = timed(idle, io.read_exact(&mut pdu)).await {
            return e;
        }
        let req = parse(&pdu);
        event::with(&session, |s| s.command(&describe(unit, &req)));
        let reply = answer(&persona, &mut memory, &pdu, &req);
        if let Err(e) = timed(idle, io.write_all(&frame(tid, pid, unit, &reply))).await {
            return e;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persona() -> Persona {
        Persona::derive("plc-01", Some("iot-device"), None, 1_764_000_000)
    }

    #[test]
    fn reads_and_writes_parse_with_the_specs_bounds() {
        assert_eq!(parse(&[3, 0, 10, 0, 5]), Request::Read { function: 3, address: 10, count: 5 });
        assert_eq!(parse(&[3, 0, 10, 0, 126]), Request::BadValue { function: 3 });
        assert_eq!(parse(&[1, 0, 0, 0x07, 0xd1]), Request::BadValue { function: 1 }, "2001 coils");
        assert_eq!(parse(&[5, 0, 1, 0x12, 0x34]), Request::BadValue { function: 5 });
        assert_eq!(
            parse(&[16, 0, 1, 0, 2, 4, 0, 7, 1, 0]),
            Request::WriteRegisters { address: 1, values: vec![7, 256] }
        );
        assert_eq!(parse(&[16, 0, 1, 0, 2, 3, 0, 7, 1]), Request::BadValue { function: 16 }, "byte count");
        assert_eq!(
            parse(&[15, 0, 0, 0, 3, 1, 0b101]),
            Request::WriteCoils { address: 0, values: vec![true, false, true] }
        );
        assert_eq!(parse(&[43, 14, 1, 0]), Request::DeviceId { code: 1, object: 0 });
    }

    #[test]
    fn truncated_and_unknown_pdus_are_illegal_functions() {
        for pdu in [&[][..], &[3, 0], &[16, 0, 1, 0, 2, 4, 0], &[43, 14], &[0x5a, 1, 2], &[43, 13, 1, 0]] {
            let req = parse(pdu);
            assert!(matches!(req, Request::Unsupported { .. }), "{pdu:?} gave {req:?}");
            let reply = answer(&persona(), &mut Memory::new(&persona()), pdu, &req);
            assert_eq!(reply[1], 1, "exception 1 for {pdu:?}");
        }
    }

    #[test]
    fn reads_are_stable_and_writes_read_back_in_the_session() {
        let p = persona();
        let mut m = Memory::new(&p);
        let read = [3, 0, 0, 0, 4];
        let first = answer(&p, &mut m, &read, &parse(&read));
        assert_eq!((first[0], first[1], first.len()), (3, 8, 10));
        assert_eq!(answer(&p, &mut Memory::new(&p), &read, &parse(&read)), first, "the same plant every time");
        let write = [6, 0, 2, 0x12, 0x34];
        assert_eq!(answer(&p, &mut m, &write, &parse(&write)), write, "a write is echoed");
        let again = answer(&p, &mut m, &read, &parse(&read));
        assert_eq!(&again[6..8], &[0x12, 0x34]);
        let outside = [3, 0x27, 0x0f, 0, 2];
        assert_eq!(answer(&p, &mut m, &outside, &parse(&outside)), [0x83, 2], "past the table: exception 2");
    }

    #[test]
    fn device_identification_streams_and_single_objects() {
        let p = persona();
        let mut m = Memory::new(&p);
        let basic = answer(&p, &mut m, &[43, 14, 1, 0], &parse(&[43, 14, 1, 0]));
        assert_eq!(&basic[..7], &[43, 14, 1, 0x82, 0, 0, 3]);
        assert_eq!(&basic[7..9], &[0, 7]);
        assert_eq!(&basic[9..16], b"Siemens");
        let single = answer(&p, &mut m, &[43, 14, 4, 1], &parse(&[43, 14, 4, 1]));
        assert_eq!(&single[6..9], &[1, 1, 19]);
        assert_eq!(&single[9..], b"6ES7 315-2EH14-0AB0", "the order number the S7 side reports");
        assert_eq!(answer(&p, &mut m, &[43, 14, 4, 9], &parse(&[43, 14, 4, 9])), [0xab, 2]);
        let regular = answer(&p, &mut m, &[43, 14, 2, 0], &parse(&[43, 14, 2, 0]));
        assert_eq!(regular[6], 6);
    }

    #[test]
    fn one_session_keeps_a_bounded_number_of_written_values() {
        let p = persona();
        let mut m = Memory::new(&p);
        // 40 writes of 123 registers: 4920 values, past the 4096 kept.
        for block in 0..40u16 {
            let mut pdu = vec![16];
            pdu.extend((block * 123).to_be_bytes());
            pdu.extend(123u16.to_be_bytes());
            pdu.push(246);
            pdu.extend(std::iter::repeat_n([0x0b, 0xb8], 123).flatten());
            assert_eq!(answer(&p, &mut m, &pdu, &parse(&pdu))[0], 16, "every write is still answered");
        }
        assert_eq!(m.registers.len(), MAX_WRITTEN);
        let last = [3, ((39 * 123u16) >> 8) as u8, (39 * 123u16) as u8, 0, 1];
        let reply = answer(&p, &mut m, &last, &parse(&last));
        assert_ne!(&reply[2..4], &[0x0b, 0xb8], "a write past the bound is not kept");
    }

    #[test]
    fn requests_are_described_with_their_values() {
        assert_eq!(
            describe(1, &parse(&[16, 0, 1, 0, 2, 4, 0, 7, 1, 0])),
            "write_multiple_registers unit=1 address=1 values=[7,256]"
        );
        assert_eq!(describe(3, &parse(&[5, 0, 9, 0xff, 0])), "write_single_coil unit=3 address=9 value=1");
        assert_eq!(describe(0, &parse(&[0x5a])), "function 0x5a unit=0");
    }
}
