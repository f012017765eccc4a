//! The event envelope (SPEC §3): what subscribers receive as an EVT body.
//!
//! ```json
//! {"v":1,"id":"<32 hex>","topic":"decky.d1.state","type":"state","ts":1732345678.123,"payload":{...}}
//! ```
//!
//! The daemon builds envelopes on the hot path, so [`EnvelopeParts`] writes
//! the JSON by hand around the publisher's *raw* `type` and `payload` text:
//! the PUB body is parsed once to validate it and locate those two values
//! (by [`crate::json_scan`], falling back to serde_json for anything it
//! leaves undecided), and their bytes are copied through untouched.
//! `topic` comes from the route (never from the body, so a publisher cannot
//! spoof it); `id` and `ts` are minted here. The daemon reads the clock
//! once per socket read (every frame of one read arrived together; a clock
//! read and its formatting per event were ~5 % of its time under load), so
//! it passes a [`Stamp`] in.

use bytes::{BufMut, BytesMut};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::frame::FrameError;
use crate::{json_portable, json_scan};

/// Current envelope version. Bumps only on incompatible changes.
pub const ENVELOPE_VERSION: u32 = 1;

/// A decoded envelope, as a subscriber sees it. Unknown keys are ignored
/// and missing optional ones default, so newer daemons stay readable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(default = "default_version")]
    pub v: u32,
    #[serde(default)]
    pub id: String,
    pub topic: String,
    #[serde(rename = "type", default)]
    pub event_type: String,
    #[serde(default)]
    pub ts: f64,
    #[serde(default = "empty_object")]
    pub payload: serde_json::Value,
}

fn default_version() -> u32 {
    ENVELOPE_VERSION
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

impl Envelope {
    /// Decode an EVT body.
    pub fn from_slice(body: &[u8]) -> Result<Envelope, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

/// The PUB body: `{"type": "...", "payload": {...}}`, both optional.
/// Borrowed raw values so the daemon never rebuilds the payload tree.
/// (Also the reference `json_scan`'s tests check the scanner against.)
#[derive(Deserialize)]
pub(crate) struct PubBody<'a> {
    #[serde(rename = "type", borrow, default)]
    pub(crate) event_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) payload: Option<&'a RawValue>,
}

/// Build a PUB body as a publisher sends it.
pub fn pub_body(event_type: &str, payload: &serde_json::Value) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        #[serde(rename = "type")]
        event_type: &'a str,
        payload: &'a serde_json::Value,
    }
    // Serialising a Value into a Vec cannot fail.
    serde_json::to_vec(&Body { event_type, payload }).unwrap_or_default()
}

/// Validate a PUB body and append the envelope JSON for `topic` to `out`.
///
/// Errors are the hostile-frame reasons of SPEC §2 (invalid JSON, not an
/// object). A non-string `type` is refused too: subscribers rely on it
/// being a string.
pub fn build_envelope(topic: &str, pub_body: &[u8], out: &mut BytesMut) -> Result<(), FrameError> {
    let parts = EnvelopeParts::new(topic, pub_body)?;
    let stamp = Stamp::now();
    out.reserve(parts.encoded_len(&stamp));
    parts.write(&stamp, out);
    Ok(())
}

/// An envelope's pieces once the PUB body is validated: the topic as a
/// JSON string and the body's raw `type` and `payload` texts. Its exact
/// length is known before anything is written, so the daemon allocates
/// each EVT frame at its final size (a `Bytes` frozen from a buffer with
/// spare capacity costs a second allocation per event).
pub struct EnvelopeParts<'a> {
    topic_json: TopicJson<'a>,
    event_type: &'a [u8],
    payload: &'a [u8],
}

const ENVELOPE_START: &[u8] = b"{\"v\":1,\"id\":\"";
const ID_LEN: usize = 32;
const AFTER_ID: &[u8] = b"\",\"topic\":";
const BEFORE_TYPE: &[u8] = b",\"type\":";
const BEFORE_TS: &[u8] = b",\"ts\":";
const BEFORE_PAYLOAD: &[u8] = b",\"payload\":";

impl<'a> EnvelopeParts<'a> {
    /// Validate `pub_body` for `topic`.
    ///
    /// Errors are the hostile-frame reasons of SPEC §2 (invalid JSON, not
    /// an object), and JSON DECNET's orjson-based clients cannot parse
    /// ([`json_portable`]). A non-string `type` is refused too: subscribers
    /// rely on it being a string.
    pub fn new(topic: &'a str, pub_body: &'a [u8]) -> Result<EnvelopeParts<'a>, FrameError> {
        let (event_type, payload) = if pub_body.is_empty() {
            (None, None)
        } else if let Some(fields) = json_scan::scan(pub_body) {
            // The common case: certainly valid JSON, both values located.
            if fields.non_ascii {
                std::str::from_utf8(pub_body).map_err(|e| FrameError::InvalidJson(e.to_string()))?;
            }
            (fields.event_type.map(|r| &pub_body[r]), fields.payload.map(|r| &pub_body[r]))
        } else {
            // Invalid, or something the scanner leaves to serde_json, whose
            // verdict and wording stand. serde_json skips unknown fields
            // without checking their UTF-8, so check it once here and parse
            // the `str` (no second UTF-8 pass).
            let text = std::str::from_utf8(pub_body).map_err(|e| FrameError::InvalidJson(e.to_string()))?;
            match pub_body.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'{') => {}
                _ => {
                    // Distinguish "not JSON at all" from "JSON but not an object".
                    return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(pub_body) {
                        Ok(_) => FrameError::BodyNotObject,
                        Err(e) => FrameError::InvalidJson(e.to_string()),
                    });
                }
            }
            let body: PubBody<'_> = serde_json::from_str(text).map_err(|e| FrameError::InvalidJson(e.to_string()))?;
            // serde_json skips unknown keys and captures raw values without
            // reading their numbers, surrogates or depth: orjson's rules
            // are checked here, on the whole body (the scanner's fast path
            // only accepts bodies that already meet them).
            json_portable::check(pub_body)?;
            (body.event_type.map(|r| r.get().as_bytes()), body.payload.map(|r| r.get().as_bytes()))
        };
        let event_type: &[u8] = match event_type {
            None | Some(b"null") => b"\"\"",
            Some(t) if t.starts_with(b"\"") => t,
            Some(_) => return Err(FrameError::InvalidJson("\"type\" must be a string".into())),
        };
        // SPEC §2/§3: the payload is an object. Passing `[1,2]` or `5` through
        // would hand every subscriber an envelope its readers do not expect.
        let payload: &[u8] = match payload {
            None | Some(b"null") => b"{}",
            Some(p) if p.starts_with(b"{") => p,
            Some(_) => return Err(FrameError::PayloadNotObject),
        };
        Ok(EnvelopeParts { topic_json: TopicJson::new(topic), event_type, payload })
    }

    /// Bytes [`write`](Self::write) appends.
    pub fn encoded_len(&self, stamp: &Stamp) -> usize {
        ENVELOPE_START.len()
            + ID_LEN
            + AFTER_ID.len()
            + self.topic_json.len()
            + BEFORE_TYPE.len()
            + self.event_type.len()
            + BEFORE_TS.len()
            + stamp.as_bytes().len()
            + BEFORE_PAYLOAD.len()
            + self.payload.len()
            + 1
    }

    /// Append the envelope JSON, with a fresh id and `stamp` as its `ts`.
    pub fn write(&self, stamp: &Stamp, out: &mut BytesMut) {
        out.put_slice(ENVELOPE_START);
        put_random_id(out);
        out.put_slice(AFTER_ID);
        self.topic_json.write(out);
        out.put_slice(BEFORE_TYPE);
        out.put_slice(self.event_type);
        out.put_slice(BEFORE_TS);
        out.put_slice(stamp.as_bytes());
        out.put_slice(BEFORE_PAYLOAD);
        out.put_slice(self.payload);
        out.put_u8(b'}');
    }
}

thread_local! {
    // A per-thread PRNG seeded from the OS: ids must be unguessable enough
    // not to collide across daemons, but this is not a security token, and
    // a syscall per event would cost more than the rest of the envelope.
    static ID_RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

fn put_random_id(out: &mut BytesMut) {
    // Two hex digits per table read: half the steps of one per nibble.
    static HEX_PAIRS: [[u8; 2]; 256] = {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut t = [[0u8; 2]; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = [HEX[i >> 4], HEX[i & 0xf]];
            i += 1;
        }
        t
    };
    let n: u128 = ID_RNG.with(|r| r.borrow_mut().random());
    let mut buf = [0u8; 32];
    for (pair, byte) in buf.chunks_exact_mut(2).zip(n.to_be_bytes()) {
        pair.copy_from_slice(&HEX_PAIRS[byte as usize]);
    }
    out.put_slice(&buf);
}

/// A server timestamp, formatted: seconds since the epoch with
/// microseconds, like Python's `time.time()` (`1732345678.123456`).
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    buf: [u8; 27],
    start: u8,
}

impl Stamp {
    pub fn now() -> Stamp {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        // Digits by hand: `write!` costs more than the rest of the envelope.
        let mut buf = [0u8; 20 + 1 + 6];
        let mut i = 20;
        let mut secs = now.as_secs();
        loop {
            i -= 1;
            buf[i] = b'0' + (secs % 10) as u8;
            secs /= 10;
            if secs == 0 {
                break;
            }
        }
        buf[20] = b'.';
        let mut micros = now.subsec_micros();
        for slot in buf[21..].iter_mut().rev() {
            *slot = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        Stamp { buf, start: i as u8 }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start as usize..]
    }
}

/// A topic as a JSON string.
enum TopicJson<'a> {
    /// Nothing to escape: written between quotes as it is.
    Plain(&'a [u8]),
    /// Topics are validated ASCII without quotes-only restrictions, so `"`
    /// and `\` are legal token characters and must be escaped (rare:
    /// serde_json does it, at the cost of an allocation).
    Escaped(Vec<u8>),
}

impl TopicJson<'_> {
    fn new(s: &str) -> TopicJson<'_> {
        if s.bytes().all(|b| b != b'"' && b != b'\\' && b >= 0x20) {
            TopicJson::Plain(s.as_bytes())
        } else {
            TopicJson::Escaped(serde_json::to_vec(s).unwrap_or_default())
        }
    }

    fn len(&self) -> usize {
        match self {
            TopicJson::Plain(t) => t.len() + 2,
            TopicJson::Escaped(t) => t.len(),
        }
    }

    fn write(&self, out: &mut BytesMut) {
        match self {
            TopicJson::Plain(t) => {
                out.put_u8(b'"');
                out.put_slice(t);
                out.put_u8(b'"');
            }
            TopicJson::Escaped(t) => out.put_slice(t),
        }
    }
}

/// Current time as float seconds, the `ts` convention used in payloads.
pub fn now_ts() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(topic: &str, body: &[u8]) -> Result<Envelope, FrameError> {
        let mut out = BytesMut::new();
        build_envelope(topic, body, &mut out)?;
        Ok(serde_json::from_slice(&out).expect("envelope is valid JSON"))
    }

    #[test]
    fn fields_come_from_route_body_and_server() {
        let before = now_ts();
        let e =
            build("decky.d1.state", br#"{"type":"state","payload":{"services":["ssh"]},"topic":"spoofed"}"#).unwrap();
        assert_eq!(e.v, 1);
        assert_eq!(e.topic, "decky.d1.state");
        assert_eq!(e.event_type, "state");
        assert_eq!(e.payload, serde_json::json!({"services": ["ssh"]}));
        assert_eq!(e.id.len(), 32);
        assert!(e.id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(e.ts >= before - 0.001 && e.ts <= now_ts() + 0.001);
    }

    #[test]
    fn absent_type_and_payload_default() {
        for body in [&b""[..], b"{}", br#"{"type":null,"payload":null}"#] {
            let e = build("a", body).unwrap();
            assert_eq!(e.event_type, "");
            assert_eq!(e.payload, serde_json::json!({}));
        }
    }

    #[test]
    fn timestamp_has_six_decimals() {
        let mut out = BytesMut::new();
        build_envelope("a", b"", &mut out).unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        let ts = text.split("\"ts\":").nth(1).unwrap().split(',').next().unwrap();
        let (secs, micros) = ts.split_once('.').unwrap();
        assert!(secs.len() >= 10 && secs.bytes().all(|b| b.is_ascii_digit()), "{ts}");
        assert!(micros.len() == 6 && micros.bytes().all(|b| b.is_ascii_digit()), "{ts}");
    }

    #[test]
    fn ids_differ() {
        let a = build("a", b"").unwrap();
        let b = build("a", b"").unwrap();
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn escaping_topic_and_type() {
        let e = build("we\"ird\\t", br#"{"type":"x\"y"}"#).unwrap();
        assert_eq!(e.topic, "we\"ird\\t");
        assert_eq!(e.event_type, "x\"y");
    }

    #[test]
    fn bad_bodies() {
        assert_eq!(build("a", b"[1,2]"), Err(FrameError::BodyNotObject));
        assert_eq!(build("a", b"42"), Err(FrameError::BodyNotObject));
        assert!(matches!(build("a", b"{\"type\":"), Err(FrameError::InvalidJson(_))));
        assert!(matches!(build("a", b"nope"), Err(FrameError::InvalidJson(_))));
        assert!(matches!(build("a", br#"{"type":5}"#), Err(FrameError::InvalidJson(_))));
        for payload in ["[1,2]", "\"s\"", "5", "true", " [ ]"] {
            let body = format!(r#"{{"type":"t","payload":{payload}}}"#);
            assert_eq!(build("a", body.as_bytes()), Err(FrameError::PayloadNotObject), "{payload}");
        }
        assert!(matches!(build("a", b"{\"a\":\"\xff\"}"), Err(FrameError::InvalidJson(_))));
    }

    /// What orjson refuses is refused whichever path validates it (the
    /// scanner defers, the fallback decides), in the payload or anywhere
    /// else in the body; what orjson reads passes through byte for byte.
    #[test]
    fn bodies_decnet_clients_cannot_parse_are_refused() {
        use crate::json_portable::Unportable;
        let deep = format!(r#"{{"payload":{{"a":{}{}}}}}"#, "[".repeat(1023), "]".repeat(1023));
        for body in [
            r#"{"type":"t","payload":{"n":1e400}}"#.to_string(),
            r#"{"type":"t","payload":{"n":-1e400},"extra":[]}"#.to_string(),
            format!(r#"{{"payload":{{"n":1{}}}}}"#, "0".repeat(400)),
            r#"{"type":"t","payload":{"s":"\ud800"}}"#.to_string(),
            r#"{"type":"\udfff"}"#.to_string(),
            r#"{"unused":"\ud800","payload":{}}"#.to_string(),
            deep,
        ] {
            assert!(matches!(build("a", body.as_bytes()), Err(FrameError::Unportable(_))), "{body}");
        }
        assert!(FrameError::Unportable(Unportable::TooDeep).is_refused_publish());
        let fine = r#"{"type":"t","payload":{"n":1e308,"m":1e-400,"s":"\ud83d\ude00"}}"#;
        let mut out = BytesMut::new();
        build_envelope("a", fine.as_bytes(), &mut out).unwrap();
        assert!(std::str::from_utf8(&out).unwrap().contains(r#""payload":{"n":1e308,"m":1e-400,"s":"\ud83d\ude00"}}"#));
    }

    /// The length announced before writing is the length written, for
    /// plain and escaped topics: EVT frames are allocated at that size.
    #[test]
    fn encoded_len_is_exact() {
        let stamp = Stamp::now();
        for (topic, body) in [("a.b", &br#"{"type":"t","payload":{"k":[1]}}"#[..]), ("we\"ird\\t", b""), ("x", b"{}")] {
            let parts = EnvelopeParts::new(topic, body).unwrap();
            let mut out = BytesMut::new();
            parts.write(&stamp, &mut out);
            assert_eq!(out.len(), parts.encoded_len(&stamp), "{topic}");
            let env: Envelope = serde_json::from_slice(&out).unwrap();
            assert_eq!(env.topic, topic);
        }
    }

    #[test]
    fn pub_body_round_trips() {
        let body = pub_body("t", &serde_json::json!({"k": 1}));
        let e = build("x.y", &body).unwrap();
        assert_eq!((e.event_type.as_str(), e.payload), ("t", serde_json::json!({"k": 1})));
    }
}
