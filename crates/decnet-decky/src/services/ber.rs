//! The slice of ASN.1 BER/DER the Windows protocols need: SPNEGO tokens
//! (smb), CredSSP's TSRequest (rdp) and LDAP messages (ldap).
//!
//! Written by hand, deliberately: the well-kept ASN.1 crates (`rasn`,
//! `der`, `asn1-rs`) decode into schema types, need the whole schema
//! declared for LDAP's and SPNEGO's choices, and bring their own
//! allocation on hostile lengths; what is needed here is a
//! tag-length-value walker over a slice already bounded by its frame, and
//! an encoder that can write Active Directory's 4-byte lengths (nmap's AD
//! fingerprint matches on them). Only single-byte tags, definite lengths
//! of at most 4 bytes; anything else is an error, never a panic.

/// Why bytes are not the BER expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BerError {
    #[error("truncated")]
    Truncated,
    #[error("unsupported length form")]
    Length,
    #[error("unexpected tag {0:#04x}")]
    Tag(u8),
    #[error("nested too deep")]
    Depth,
}

/// A reader over consecutive TLVs of one slice.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The tag of the next TLV without consuming it.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next TLV: its tag and contents.
    pub fn element(&mut self) -> Result<(u8, &'a [u8]), BerError> {
        let (tag, len, header) = header(self.rest)?;
        let end = header.checked_add(len).ok_or(BerError::Length)?;
        let contents = self.rest.get(header..end).ok_or(BerError::Truncated)?;
        self.rest = &self.rest[end..];
        Ok((tag, contents))
    }

    /// The next TLV, which must have tag `want`.
    pub fn expect(&mut self, want: u8) -> Result<&'a [u8], BerError> {
        let (tag, contents) = self.element()?;
        if tag == want {
            Ok(contents)
        } else {
            Err(BerError::Tag(tag))
        }
    }

    /// The next TLV if it has tag `want`, else nothing consumed.
    pub fn optional(&mut self, want: u8) -> Result<Option<&'a [u8]>, BerError> {
        if self.peek_tag() == Some(want) {
            self.expect(want).map(Some)
        } else {
            Ok(None)
        }
    }

    /// An INTEGER or ENUMERATED (tag `want`) that fits an i64.
    pub fn integer(&mut self, want: u8) -> Result<i64, BerError> {
        integer(self.expect(want)?)
    }
}

/// A TLV header: tag, content length, header length.
pub fn header(bytes: &[u8]) -> Result<(u8, usize, usize), BerError> {
    let tag = *bytes.first().ok_or(BerError::Truncated)?;
    if tag & 0x1f == 0x1f {
        return Err(BerError::Tag(tag));
    }
    let first = *bytes.get(1).ok_or(BerError::Truncated)?;
    if first < 0x80 {
        return Ok((tag, first as usize, 2));
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 4 {
        return Err(BerError::Length);
    }
    let len_bytes = bytes.get(2..2 + n).ok_or(BerError::Truncated)?;
    let len = len_bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
    Ok((tag, len, 2 + n))
}

/// The value of INTEGER contents (two's complement, at most 8 bytes).
pub fn integer(contents: &[u8]) -> Result<i64, BerError> {
    if contents.is_empty() || contents.len() > 8 {
        return Err(BerError::Length);
    }
    let negative = contents[0] & 0x80 != 0;
    let start: i64 = if negative { -1 } else { 0 };
    Ok(contents.iter().fold(start, |acc, b| (acc << 8) | *b as i64))
}

/// A TLV with the shortest (DER) length.
pub fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = contents.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = (n as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

/// A TLV with a 4-byte length, as Active Directory writes every
/// constructed LDAP element.
pub fn tlv_long(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag, 0x84];
    out.extend_from_slice(&(contents.len() as u32).to_be_bytes());
    out.extend_from_slice(contents);
    out
}

/// INTEGER contents of `v` (shortest two's complement).
pub fn integer_bytes(v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut i = 0;
    while i < 7 {
        let (b, next) = (bytes[i], bytes[i + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            i += 1;
        } else {
            break;
        }
    }
    bytes[i..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_short_long_and_ad_style_read_back() {
        for n in [0usize, 5, 127, 128, 300, 70_000] {
            let body = vec![7u8; n];
            for encoded in [tlv(0x04, &body), tlv_long(0x30, &body)] {
                let mut r = Reader::new(&encoded);
                let (_, contents) = r.element().unwrap();
                assert_eq!(contents.len(), n);
                assert!(r.is_empty());
            }
        }
        assert_eq!(tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
    }

    #[test]
    fn truncation_oversize_indefinite_and_multibyte_tags_are_errors() {
        assert_eq!(Reader::new(&[0x30]).element(), Err(BerError::Truncated));
        assert_eq!(Reader::new(&[0x30, 0x05, 1, 2]).element(), Err(BerError::Truncated));
        assert_eq!(Reader::new(&[0x30, 0x80, 0, 0]).element(), Err(BerError::Length));
        assert_eq!(Reader::new(&[0x30, 0x85, 1, 1, 1, 1, 1]).element(), Err(BerError::Length));
        assert_eq!(Reader::new(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).element(), Err(BerError::Truncated));
        assert_eq!(Reader::new(&[0x1f, 0x01, 0x00]).element(), Err(BerError::Tag(0x1f)));
        assert_eq!(Reader::new(&[0x02, 0x01, 0x05]).expect(0x04), Err(BerError::Tag(0x02)));
    }

    #[test]
    fn integers_round_trip() {
        for v in [0i64, 1, 127, 128, 255, 256, -1, -128, -129, 0x7fff_ffff, 2_147_483_648] {
            assert_eq!(integer(&integer_bytes(v)).unwrap(), v, "{v}");
        }
        assert_eq!(integer_bytes(128), vec![0x00, 0x80]);
        assert_eq!(integer(&[]), Err(BerError::Length));
        assert_eq!(integer(&[1; 9]), Err(BerError::Length));
    }
}
