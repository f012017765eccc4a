//! The MongoDB wire protocol, parsed apart from the commands: message
//! framing (the 16-byte header, its length checked before anything is
//! allocated), OP_MSG and the legacy OP_QUERY that drivers and scanners
//! still open with, and the replies (OP_MSG, OP_REPLY).
//!
//! Documents are BSON through the `bson` crate. Before a document is
//! handed to it, [`nesting_ok`] walks it without recursion: the crate
//! parses nested documents recursively, and a message of nothing but
//! nested empty documents must not be able to exhaust a task's stack.

use bson::Document;

/// The opcodes served.
pub const OP_REPLY: i32 = 1;
pub const OP_QUERY: i32 = 2004;
pub const OP_MSG: i32 = 2013;

/// Longest message accepted (real mongod takes 48 MB; the decky's
/// clients send hundreds of bytes, and each session has a byte budget).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Deepest nesting accepted (mongod's own limit is 100 + a few).
pub const MAX_DEPTH: usize = 100;

/// A framing error: the connection is closed, as mongod closes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

fn err<T>(why: impl Into<String>) -> Result<T, WireError> {
    Err(WireError(why.into()))
}

/// One request.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub request_id: i32,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// OP_MSG: its body document, and how many documents its
    /// document-sequence sections carried (an insert's rows).
    Msg { body: Document, sequence_docs: usize },
    /// OP_QUERY on `collection` (`admin.$cmd` for a command).
    Query { collection: String, query: Document },
}

/// The length a header announces, once 4 bytes have arrived; an error when
/// it is outside 16..=[`MAX_MESSAGE`].
pub fn message_length(head: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(bytes) = head.get(..4) else { return Ok(None) };
    let len = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if len < 16 || len as usize > MAX_MESSAGE {
        return err(format!("message length {len} out of range"));
    }
    Ok(Some(len as usize))
}

fn i32_at(buf: &[u8], at: usize) -> Result<i32, WireError> {
    match buf.get(at..at + 4) {
        Some(b) => Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        None => err("truncated message"),
    }
}

/// A C string at `buf[at..]` (bounded by the buffer) and where it ends.
fn cstring_at(buf: &[u8], at: usize) -> Result<(String, usize), WireError> {
    let rest = buf.get(at..).unwrap_or(&[]);
    match rest.iter().position(|b| *b == 0) {
        Some(end) => Ok((String::from_utf8_lossy(&rest[..end]).into_owned(), at + end + 1)),
        None => err("unterminated string"),
    }
}

/// Whether the BSON document at the start of `doc` nests no deeper than
/// [`MAX_DEPTH`] and every length in it stays inside it; iterative.
pub fn nesting_ok(doc: &[u8]) -> bool {
    // Each open document: where it ends.
    let Ok(first) = i32_at(doc, 0) else { return false };
    if first < 5 || first as usize > doc.len() {
        return false;
    }
    let mut ends = vec![first as usize];
    let mut at = 4;
    while let Some(&end) = ends.last() {
        if at >= end {
            return false;
        }
        let kind = doc[at];
        if kind == 0 {
            // This document's terminator.
            if at + 1 != end {
                return false;
            }
            ends.pop();
            at = end;
            continue;
        }
        let Ok((_, value)) = cstring_at(&doc[..end], at + 1) else { return false };
        let len_at = |at: usize| i32_at(&doc[..end], at).ok().filter(|n| *n >= 0).map(|n| n as usize);
        let next = match kind {
            0x01 | 0x09 | 0x11 | 0x12 => value + 8,
            0x10 => value + 4,
            0x13 => value + 16,
            0x07 => value + 12,
            0x08 => value + 1,
            0x0A | 0x06 | 0x7F | 0xFF => value,
            0x02 | 0x0D | 0x0E => match len_at(value) {
                Some(n) => value + 4 + n,
                None => return false,
            },
            0x05 => match len_at(value) {
                Some(n) => value + 5 + n,
                None => return false,
            },
            0x0C => match len_at(value) {
                Some(n) => value + 4 + n + 12,
                None => return false,
            },
            0x0B => {
                let Ok((_, a)) = cstring_at(&doc[..end], value) else { return false };
                let Ok((_, b)) = cstring_at(&doc[..end], a) else { return false };
                b
            }
            0x03 | 0x04 => match len_at(value) {
                Some(n) if n >= 5 && value + n <= end => {
                    if ends.len() >= MAX_DEPTH {
                        return false;
                    }
                    ends.push(value + n);
                    at = value + 4;
                    continue;
                }
                _ => return false,
            },
            // Code with scope holds a document too; nothing sends it to a
            // database server's commands: refused rather than walked.
            _ => return false,
        };
        if next > end {
            return false;
        }
        at = next;
    }
    at == first as usize
}

/// One BSON document at `buf[at..]`, checked, and where it ends.
fn document_at(buf: &[u8], at: usize) -> Result<(Document, usize), WireError> {
    let len = i32_at(buf, at)?;
    if len < 5 || at + len as usize > buf.len() {
        return err("document length out of range");
    }
    let bytes = &buf[at..at + len as usize];
    if !nesting_ok(bytes) {
        return err("malformed or too deeply nested document");
    }
    let doc = Document::from_reader(bytes).map_err(|e| WireError(format!("bad document: {e}")))?;
    Ok((doc, at + len as usize))
}

/// Parse one whole message (`buf` is exactly the announced length).
pub fn parse(buf: &[u8]) -> Result<Message, WireError> {
    if buf.len() < 16 {
        return err("truncated header");
    }
    let request_id = i32_at(buf, 4)?;
    let op = i32_at(buf, 12)?;
    match op {
        OP_MSG => {
            let flags = i32_at(buf, 16)? as u32;
            // checksumPresent: the last 4 bytes are a CRC, not a section.
            let end = if flags & 1 != 0 { buf.len().saturating_sub(4) } else { buf.len() };
            let mut at = 20;
            let mut body = None;
            let mut sequence_docs = 0;
            while at < end {
                match buf[at] {
                    0 => {
                        let (doc, next) = document_at(&buf[..end], at + 1)?;
                        if body.replace(doc).is_some() {
                            return err("two body sections");
                        }
                        at = next;
                    }
                    1 => {
                        let size = i32_at(buf, at + 1)?;
                        if size < 5 || at + 1 + size as usize > end {
                            return err("document sequence length out of range");
                        }
                        let section_end = at + 1 + size as usize;
                        let (_, mut doc_at) = cstring_at(&buf[..section_end], at + 5)?;
                        while doc_at < section_end {
                            let (_, next) = document_at(&buf[..section_end], doc_at)?;
                            sequence_docs += 1;
                            doc_at = next;
                        }
                        at = section_end;
                    }
                    kind => return err(format!("unknown section kind {kind}")),
                }
            }
            match body {
                Some(body) => Ok(Message { request_id, op: Op::Msg { body, sequence_docs } }),
                None => err("no body section"),
            }
        }
        OP_QUERY => {
            let (collection, at) = cstring_at(buf, 20)?;
            let (query, _) = document_at(buf, at + 8)?;
            Ok(Message { request_id, op: Op::Query { collection: collection.chars().take(256).collect(), query } })
        }
        other => err(format!("unsupported opcode {other}")),
    }
}

fn header(out: &mut Vec<u8>, response_to: i32, op: i32) {
    out.extend_from_slice(&[0; 4]);
    // Our own request ids only need to differ; replies are what count.
    out.extend_from_slice(&(response_to.wrapping_add(1_000_000)).to_le_bytes());
    out.extend_from_slice(&response_to.to_le_bytes());
    out.extend_from_slice(&op.to_le_bytes());
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    let len = out.len() as i32;
    out[..4].copy_from_slice(&len.to_le_bytes());
    out
}

/// An OP_MSG reply carrying `doc`.
pub fn msg_reply(response_to: i32, doc: &Document) -> Vec<u8> {
    let mut out = Vec::new();
    header(&mut out, response_to, OP_MSG);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.push(0);
    let _ = doc.to_writer(&mut out);
    finish(out)
}

/// An OP_REPLY (the answer to OP_QUERY) carrying `doc`.
pub fn query_reply(response_to: i32, doc: &Document) -> Vec<u8> {
    let mut out = Vec::new();
    header(&mut out, response_to, OP_REPLY);
    out.extend_from_slice(&8i32.to_le_bytes()); // AwaitCapable
    out.extend_from_slice(&0i64.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&1i32.to_le_bytes());
    let _ = doc.to_writer(&mut out);
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn msg(body: &Document) -> Vec<u8> {
        let mut out = Vec::new();
        header(&mut out, 7, OP_MSG);
        out[4..8].copy_from_slice(&7i32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.push(0);
        body.to_writer(&mut out).unwrap();
        finish(out)
    }

    #[test]
    fn op_msg_and_op_query_parse() {
        let wire = msg(&doc! { "hello": 1, "$db": "admin" });
        assert_eq!(message_length(&wire).unwrap(), Some(wire.len()));
        let m = parse(&wire).unwrap();
        assert_eq!(m.request_id, 7);
        assert_eq!(m.op, Op::Msg { body: doc! { "hello": 1, "$db": "admin" }, sequence_docs: 0 });
        // OP_QUERY as nmap and old drivers send it.
        let mut q = Vec::new();
        header(&mut q, 0, OP_QUERY);
        q.extend_from_slice(&0i32.to_le_bytes());
        q.extend_from_slice(b"admin.$cmd\0");
        q.extend_from_slice(&0i32.to_le_bytes());
        q.extend_from_slice(&(-1i32).to_le_bytes());
        doc! { "buildinfo": 1 }.to_writer(&mut q).unwrap();
        let q = finish(q);
        assert_eq!(
            parse(&q).unwrap().op,
            Op::Query { collection: "admin.$cmd".into(), query: doc! { "buildinfo": 1 } }
        );
        // The reply round-trips through the parser's own framing.
        let reply = msg_reply(7, &doc! { "ok": 1.0 });
        assert_eq!(i32::from_le_bytes(reply[8..12].try_into().unwrap()), 7);
        assert_eq!(message_length(&reply).unwrap(), Some(reply.len()));
    }

    #[test]
    fn lengths_are_checked_before_anything_is_read() {
        assert_eq!(message_length(&[1, 2]), Ok(None));
        assert!(message_length(&(MAX_MESSAGE as i32 + 1).to_le_bytes()).is_err());
        assert!(message_length(&(-1i32).to_le_bytes()).is_err());
        assert!(message_length(&15i32.to_le_bytes()).is_err());
        let wire = msg(&doc! { "ping": 1 });
        // Every truncation of a valid message is an error, never a panic.
        for cut in 0..wire.len() {
            let mut short = wire[..cut].to_vec();
            if short.len() >= 4 {
                short[..4].copy_from_slice(&(cut as i32).to_le_bytes());
            }
            assert!(parse(&short).is_err(), "cut at {cut}");
        }
        let mut unknown = wire.clone();
        unknown[12..16].copy_from_slice(&2012i32.to_le_bytes());
        assert_eq!(parse(&unknown), Err(WireError("unsupported opcode 2012".into())));
    }

    /// OP_MSG with a document-sequence section (an insert's rows) and the
    /// checksum flag; then the sections a client must not send.
    #[test]
    fn op_msg_sections_checksums_and_their_faults() {
        let frame = |flags: u32, sections: &[u8], checksum: bool| {
            let mut out = Vec::new();
            header(&mut out, 0, OP_MSG);
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(sections);
            if checksum {
                out.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
            }
            finish(out)
        };
        let mut body = vec![0u8];
        doc! { "insert": "users", "$db": "shop" }.to_writer(&mut body).unwrap();
        let mut sequence = vec![1u8, 0, 0, 0, 0];
        sequence.extend_from_slice(b"documents\0");
        for name in ["a", "b"] {
            doc! { "name": name }.to_writer(&mut sequence).unwrap();
        }
        let size = (sequence.len() - 1) as i32;
        sequence[1..5].copy_from_slice(&size.to_le_bytes());
        let both = [body.clone(), sequence.clone()].concat();
        let expected = Op::Msg { body: doc! { "insert": "users", "$db": "shop" }, sequence_docs: 2 };
        assert_eq!(parse(&frame(0, &both, false)).unwrap().op, expected);
        // checksumPresent: the trailing CRC is not read as a section.
        assert_eq!(parse(&frame(1, &both, true)).unwrap().op, expected);
        assert_eq!(parse(&frame(0, &both, true)), Err(WireError("unknown section kind 222".into())));
        assert_eq!(
            parse(&frame(0, &[body.clone(), body.clone()].concat(), false)),
            Err(WireError("two body sections".into()))
        );
        assert_eq!(parse(&frame(0, &sequence, false)), Err(WireError("no body section".into())));
        let mut lying = sequence.clone();
        lying[1..5].copy_from_slice(&9999i32.to_le_bytes());
        assert!(parse(&frame(0, &[body, lying].concat(), false)).is_err());
    }

    #[test]
    fn deep_or_lying_documents_are_refused_without_recursion() {
        // 2,000 nested documents: `{"a": {"a": … {}}}`.
        let mut inner = doc! {};
        for _ in 0..MAX_DEPTH + 5 {
            inner = doc! { "a": inner };
        }
        let mut bytes = Vec::new();
        inner.to_writer(&mut bytes).unwrap();
        assert!(!nesting_ok(&bytes));
        let mut ok = doc! {};
        for _ in 0..10 {
            ok = doc! { "a": ok, "s": "x", "n": 1i64, "arr": [1, 2, {"b": true}] };
        }
        let mut bytes = Vec::new();
        ok.to_writer(&mut bytes).unwrap();
        assert!(nesting_ok(&bytes));
        // A nested length that runs past its parent.
        let mut lying = bytes.clone();
        lying[4 + 1 + 2] = 0xff;
        assert!(!nesting_ok(&lying));
        assert!(!nesting_ok(&[5, 0, 0, 0]));
        assert!(!nesting_ok(&[9, 0, 0, 0, 0x10, b'a', 0, 1, 0]));
    }
}
