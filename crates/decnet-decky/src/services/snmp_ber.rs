//! The BER subset SNMP uses: definite-length TLVs with one-byte tags,
//! INTEGER, OCTET STRING, NULL, OBJECT IDENTIFIER and the SNMP
//! application types, read with every length checked against what is
//! left before anything is taken, and written back.
//!
//! Written by hand: the SNMP crates we looked at parse but do not write
//! messages, and a reader that agrees exactly with the writer (and refuses
//! indefinite lengths, multi-byte tags and oversized numbers outright)
//! is a hundred lines.

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BerError(pub &'static str);

pub type Ber<T> = Result<T, BerError>;

pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;
pub const SEQUENCE: u8 = 0x30;
pub const IP_ADDRESS: u8 = 0x40;
pub const COUNTER32: u8 = 0x41;
pub const GAUGE32: u8 = 0x42;
pub const TIMETICKS: u8 = 0x43;
pub const NO_SUCH_OBJECT: u8 = 0x80;
pub const END_OF_MIB_VIEW: u8 = 0x82;

/// Arcs of an OID we accept (net-snmp's MAX_OID_LEN).
pub const MAX_OID_ARCS: usize = 128;

/// A cursor over a TLV sequence.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next TLV: its tag and contents.
    pub fn any(&mut self) -> Ber<(u8, &'a [u8])> {
        let [tag, first, rest @ ..] = self.buf else { return Err(BerError("truncated header")) };
        if tag & 0x1f == 0x1f {
            return Err(BerError("multi-byte tag"));
        }
        let (len, rest) = if first & 0x80 == 0 {
            (*first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 {
                return Err(BerError("indefinite length"));
            }
            if n > 4 || rest.len() < n {
                return Err(BerError("bad length"));
            }
            (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize), &rest[n..])
        };
        if len > rest.len() {
            return Err(BerError("length past the end"));
        }
        let (value, after) = rest.split_at(len);
        self.buf = after;
        Ok((*tag, value))
    }

    /// The next TLV, which must have `tag`.
    pub fn expect(&mut self, tag: u8) -> Ber<&'a [u8]> {
        match self.any()? {
            (t, v) if t == tag => Ok(v),
            _ => Err(BerError("unexpected tag")),
        }
    }

    pub fn integer(&mut self) -> Ber<i64> {
        decode_integer(self.expect(INTEGER)?)
    }

    pub fn octets(&mut self) -> Ber<&'a [u8]> {
        self.expect(OCTET_STRING)
    }

    pub fn sequence(&mut self) -> Ber<Reader<'a>> {
        self.expect(SEQUENCE).map(Reader::new)
    }
}

pub fn decode_integer(v: &[u8]) -> Ber<i64> {
    if v.is_empty() || v.len() > 8 {
        return Err(BerError("bad integer"));
    }
    let sign = if v[0] & 0x80 != 0 { -1i64 } else { 0 };
    Ok(v.iter().fold(sign, |acc, b| (acc << 8) | *b as i64))
}

pub fn decode_oid(v: &[u8]) -> Ber<Vec<u32>> {
    let mut arcs = Vec::new();
    let mut acc: u64 = 0;
    for (i, b) in v.iter().enumerate() {
        acc = (acc << 7) | (b & 0x7f) as u64;
        if acc > u32::MAX as u64 {
            return Err(BerError("oid arc too large"));
        }
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first as u32);
                arcs.push((acc - first * 40) as u32);
            } else {
                arcs.push(acc as u32);
            }
            if arcs.len() > MAX_OID_ARCS {
                return Err(BerError("oid too long"));
            }
            acc = 0;
        } else if i + 1 == v.len() {
            return Err(BerError("oid ends mid-arc"));
        }
    }
    if arcs.is_empty() {
        return Err(BerError("empty oid"));
    }
    Ok(arcs)
}

/// `tag` and `content` as one TLV.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A signed INTEGER in its shortest form.
pub fn integer(value: i64) -> Vec<u8> {
    signed(INTEGER, value)
}

fn signed(tag: u8, value: i64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    tlv(tag, &bytes[start..])
}

/// An unsigned application value (Counter32, Gauge32, TimeTicks).
pub fn unsigned(tag: u8, value: u32) -> Vec<u8> {
    signed(tag, value as i64)
}

pub fn octets(value: &[u8]) -> Vec<u8> {
    tlv(OCTET_STRING, value)
}

pub fn oid(arcs: &[u32]) -> Vec<u8> {
    let mut content = Vec::new();
    let (first, rest) = match arcs {
        [a, b, rest @ ..] => (a * 40 + b, rest),
        [a] => (a * 40, &[][..]),
        [] => (0, &[][..]),
    };
    for arc in std::iter::once(first).chain(rest.iter().copied()) {
        let mut chunk = vec![(arc & 0x7f) as u8];
        let mut v = arc >> 7;
        while v > 0 {
            chunk.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        content.extend(chunk.iter().rev());
    }
    tlv(OID, &content)
}

pub fn sequence(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        for v in [0i64, 1, 127, 128, 255, 256, -1, -128, -129, 0x7fff_ffff, i64::MIN, i64::MAX] {
            let w = integer(v);
            assert_eq!(Reader::new(&w).integer().unwrap(), v, "{v}");
        }
        let arcs = [1, 3, 6, 1, 4, 1, 8072, 3, 2, 10, 4_294_967_295];
        assert_eq!(decode_oid(Reader::new(&oid(&arcs)).expect(OID).unwrap()).unwrap(), arcs);
        assert_eq!(unsigned(TIMETICKS, 0x8000_0000), vec![0x43, 5, 0, 0x80, 0, 0, 0]);
        let long = octets(&[7u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(Reader::new(&long).octets().unwrap().len(), 300);
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        // A length past the end, an indefinite length, a multi-byte tag,
        // a five-byte length, an empty or over-long integer.
        for bad in [
            &[0x30, 0x05, 0x02][..],
            &[0x30, 0x80, 0, 0],
            &[0x1f, 0x01, 0x00],
            &[0x04, 0x85, 1, 0, 0, 0, 0],
            &[0x04, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30],
            &[],
        ] {
            assert!(Reader::new(bad).any().is_err(), "{bad:?}");
        }
        assert!(Reader::new(&[0x02, 0x00]).integer().is_err());
        assert!(Reader::new(&[0x02, 9, 1, 1, 1, 1, 1, 1, 1, 1, 1]).integer().is_err());
        // OIDs: an arc over 32 bits, one that never ends, too many arcs.
        assert!(decode_oid(&[0x2b, 0x90, 0x80, 0x80, 0x80, 0x80, 0x00]).is_err());
        assert!(decode_oid(&[0x2b, 0x86]).is_err());
        assert!(decode_oid(&[1u8; 200]).is_err());
        assert!(decode_oid(&[]).is_err());
    }
}
