//! A fast, one-sided check of a PUB body: "certainly a valid JSON object,
//! and here are its top-level `type` and `payload` values", or "not sure".
//!
//! Why by hand: the daemon validates every PUB body (SPEC §2), and for the
//! small events of a fleet serde_json's deserializer machinery (visitor
//! dispatch, field matching, `RawValue` capture) was about a third of the
//! daemon's instructions per event (BENCHMARKS.md, round 4). No well-kept
//! crate offers "validate and locate two top-level keys" without building
//! something; this scanner walks the bytes once with a lookup table for
//! string contents.
//!
//! It is deliberately *one-sided*: [`scan`] answers `Some` only for input
//! it is sure serde_json accepts, with the same value spans serde_json's
//! `RawValue` would give, **and** that DECNET's orjson-based clients can
//! read ([`crate::json_portable`]: every number certainly finite as an
//! f64, no surrogate escapes at all, nesting well under orjson's limit);
//! `None` for anything else — invalid JSON, but also whatever it does not
//! bother to decide (escaped top-level keys, a repeated `type` or
//! `payload`, `\u` surrogates, a number that might overflow, nesting
//! deeper than [`MAX_DEPTH`]). The caller then asks serde_json and
//! [`crate::json_portable::check`], whose verdicts and error messages
//! stand. So this module can make the daemon faster but can never make it
//! accept or refuse anything the stricter rule would not; the property
//! tests below check exactly that against serde_json and `check`.

use std::ops::Range;

/// Where the top-level `type` and `payload` values are in the body
/// (byte ranges of their JSON text, as `RawValue::get` would give).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PubFields {
    pub event_type: Option<Range<usize>>,
    pub payload: Option<Range<usize>>,
    /// A string held a byte of 0x80 or more. The scanner does not check
    /// UTF-8 (bytes outside strings must be ASCII anyway), so the caller
    /// checks the body then, and only then: most bodies are pure ASCII.
    pub non_ascii: bool,
}

/// Nesting below the top-level object beyond which [`scan`] gives up
/// (serde_json's own limit is 128 levels; the fallback decides those).
pub const MAX_DEPTH: u32 = 100;

/// `None` means "ask serde_json". `Some` means valid JSON syntax; the
/// body is also valid UTF-8 if [`PubFields::non_ascii`] is false, and must
/// still be checked if it is true.
pub fn scan(body: &[u8]) -> Option<PubFields> {
    let mut s = Scanner { b: body, i: 0, non_ascii: false };
    s.ws();
    s.eat(b'{')?;
    let mut fields = PubFields::default();
    s.ws();
    if s.peek()? == b'}' {
        s.i += 1;
    } else {
        loop {
            s.ws();
            let key = s.string()?;
            s.ws();
            s.eat(b':')?;
            s.ws();
            let start = s.i;
            s.value()?;
            let span = start..s.i;
            // An escaped key would have to be decoded to compare it with
            // `type`: rare, so serde_json decides.
            let key = key?;
            let slot = match &body[key] {
                b"type" => Some(&mut fields.event_type),
                b"payload" => Some(&mut fields.payload),
                _ => None,
            };
            if let Some(slot) = slot {
                // A repeated field is serde_json's error to word.
                if slot.replace(span).is_some() {
                    return None;
                }
            }
            s.ws();
            match s.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.ws();
    fields.non_ascii = s.non_ascii;
    (s.i == body.len()).then_some(fields)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The bytes of `w` below `n` (n <= 128) have their high bit set in the
/// result; a byte above the first such one may be flagged too (borrows
/// carry upward), the lowest flagged byte is always exact.
#[inline]
fn bytes_below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS
}

#[inline]
fn bytes_equal(w: u64, c: u8) -> u64 {
    bytes_below(w ^ (ONES * u64::from(c)), 1)
}

/// What a byte means inside a JSON string: 0 = ordinary, 1 = ends or
/// escapes the run (`"` or `\`), 2 = not allowed unescaped (a control
/// character).
static STRING_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = 2;
        c += 1;
    }
    t[b'"' as usize] = 1;
    t[b'\\' as usize] = 1;
    t
};

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    non_ascii: bool,
}

impl Scanner<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    #[inline]
    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// JSON's four whitespace bytes (not Rust's `is_ascii_whitespace`,
    /// which adds form feed).
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A string starting at its opening quote. `Some(Some(range))` is the
    /// raw contents when there was no escape, `Some(None)` a valid string
    /// with escapes.
    #[inline(always)]
    fn string(&mut self) -> Option<Option<Range<usize>>> {
        // Local copies: the hot loop then keeps its state in registers.
        let b = self.b;
        let mut i = self.i;
        if b.get(i) != Some(&b'"') {
            return None;
        }
        i += 1;
        let start = i;
        let mut escaped = false;
        // Every byte looked at, OR-ed: bit 7 of any lane says "non-ASCII".
        let mut seen = 0u64;
        let contents = loop {
            // The next quote, backslash or control character: eight bytes
            // at a time (most of a body is string contents), then one by
            // one for the last few. (SSE2, sixteen at a time, measured only
            // 7 % faster on a 128-byte body: the cost is in the structure,
            // not the string bytes.)
            let c = loop {
                if let Some(word) = b.get(i..i + 8) {
                    let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
                    seen |= w;
                    let stop = bytes_equal(w, b'"') | bytes_equal(w, b'\\') | bytes_below(w, 0x20);
                    if stop != 0 {
                        i += (stop.trailing_zeros() / 8) as usize;
                        break *b.get(i)?;
                    }
                    i += 8;
                } else {
                    let c = *b.get(i)?;
                    if STRING_CLASS[c as usize] != 0 {
                        break c;
                    }
                    seen |= u64::from(c);
                    i += 1;
                }
            };
            i += 1;
            match c {
                b'"' => break (!escaped).then(|| start..i - 1),
                b'\\' => {
                    escaped = true;
                    match *b.get(i)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 1,
                        b'u' => {
                            let hex = b.get(i + 1..i + 5)?;
                            let mut code = 0u32;
                            for &h in hex {
                                code = code * 16 + (h as char).to_digit(16)?;
                            }
                            // Surrogates: serde_json's rules for pairing
                            // them differ between keys and ignored values.
                            if (0xD800..0xE000).contains(&code) {
                                return None;
                            }
                            i += 5;
                        }
                        _ => return None,
                    }
                }
                _ => return None, // a control character
            }
        };
        self.i = i;
        self.non_ascii |= seen & HIGHS != 0;
        Some(contents)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, and certainly
    /// finite as an f64 by its digit counts (the orjson rule, see
    /// [`crate::json_portable::finite_by_digits`], which this inlines: the
    /// scanner already holds the counts). A number that might overflow is
    /// left to the fallback, which parses it.
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let int_digits = self.i - int_start;
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        let mut magnitude = int_digits;
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            let negative = match self.peek() {
                Some(b'-') => {
                    self.i += 1;
                    true
                }
                Some(b'+') => {
                    self.i += 1;
                    false
                }
                _ => false,
            };
            let exp_start = self.i;
            self.some_digits()?;
            let exp = &self.b[exp_start..self.i];
            if exp.len() > 3 {
                return None;
            }
            if !negative {
                magnitude += exp.iter().fold(0usize, |v, d| v * 10 + usize::from(d - b'0'));
            }
        }
        // Below 10^308, so below f64::MAX.
        (magnitude <= 308).then_some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let from = self.i;
        self.digits();
        (self.i > from).then_some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? != word {
            return None;
        }
        self.i += word.len();
        Some(())
    }

    /// One value of any kind starting at `self.i` (no leading whitespace),
    /// nested containers without recursion: `open` is a bit stack, 1 for
    /// an object, 0 for an array, `depth` deep.
    fn value(&mut self) -> Option<()> {
        let mut open: u128 = 0;
        let mut depth: u32 = 0;
        loop {
            // A value is expected here.
            match self.peek()? {
                b'"' => {
                    self.string()?;
                }
                b'{' | b'[' => {
                    let is_object = self.next()? == b'{';
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return None;
                    }
                    open = (open << 1) | u128::from(is_object);
                    self.ws();
                    let close = if is_object { b'}' } else { b']' };
                    if self.peek()? == close {
                        self.i += 1;
                        depth -= 1;
                        open >>= 1;
                    } else {
                        if is_object {
                            self.member_key()?;
                        }
                        continue;
                    }
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => self.number()?,
            }
            // A value ended: close what it ends, or go on to the next one.
            loop {
                if depth == 0 {
                    return Some(());
                }
                self.ws();
                let in_object = open & 1 == 1;
                match self.next()? {
                    b',' => {
                        self.ws();
                        if in_object {
                            self.member_key()?;
                        }
                        break;
                    }
                    b'}' if in_object => {}
                    b']' if !in_object => {}
                    _ => return None,
                }
                depth -= 1;
                open >>= 1;
            }
        }
    }

    /// `"key" :` inside a nested object, leaving `self.i` at the value.
    fn member_key(&mut self) -> Option<()> {
        self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::PubBody;
    use proptest::prelude::*;

    /// What serde_json makes of a body, the way `build_envelope`'s fallback
    /// reads it: `Some((type, payload))` raw texts if accepted.
    fn serde_verdict(body: &str) -> Option<(Option<String>, Option<String>)> {
        if body.bytes().find(|b| !b" \n\t\r".contains(b)) != Some(b'{') {
            return None;
        }
        let parsed: PubBody<'_> = serde_json::from_str(body).ok()?;
        Some((parsed.event_type.map(|r| r.get().to_owned()), parsed.payload.map(|r| r.get().to_owned())))
    }

    /// serde_json reads `null` into an `Option` as `None`; the scanner
    /// gives its span, and `build_envelope` treats both alike.
    fn fast_verdict(body: &str) -> Option<(Option<String>, Option<String>)> {
        let f = scan(body.as_bytes())?;
        let text = |r: Option<Range<usize>>| r.map(|r| &body[r]).filter(|t| *t != "null").map(str::to_owned);
        Some((text(f.event_type), text(f.payload)))
    }

    /// The one rule: whatever the scanner accepts, serde_json accepts with
    /// the same two values, and orjson's stricter rules accept too.
    fn check(body: &str) {
        if let Some(fast) = fast_verdict(body) {
            assert_eq!(serde_verdict(body), Some(fast), "scanner accepted {body:?}");
            assert_eq!(
                crate::json_portable::check(body.as_bytes()),
                Ok(()),
                "scanner accepted what DECNET's clients refuse: {body:?}"
            );
        }
    }

    #[test]
    fn ordinary_bodies_take_the_fast_path() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("{}", None, None),
            (" { } ", None, None),
            (
                r#"{"type":"state","payload":{"services":["ssh","http"],"n":-1.5e+3}}"#,
                Some(r#""state""#),
                Some(r#"{"services":["ssh","http"],"n":-1.5e+3}"#),
            ),
            (
                "{\"payload\" : \t{ \"a\" : [ ] , \"b\":{}} ,\r\n \"type\":null }",
                None,
                Some(r#"{ "a" : [ ] , "b":{}}"#),
            ),
            (r#"{"x":"é\u00e9\n\"","type":"t\"q","y":[true,false,null,0,10,0.5]}"#, Some(r#""t\"q""#), None),
            (r#"{"payload":[1,2]}"#, None, Some("[1,2]")),
        ];
        for (body, ty, payload) in cases {
            let got = fast_verdict(body).unwrap_or_else(|| panic!("fast path refused {body:?}"));
            assert_eq!(got, (ty.map(str::to_owned), payload.map(str::to_owned)), "{body}");
            check(body);
        }
    }

    #[test]
    fn invalid_or_undecided_bodies_go_to_serde() {
        for body in [
            "",
            "[]",
            "{",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":.5}",
            "{\"a\":-}",
            "{\"a\":1e}",
            "{\"a\":tru}",
            "{\"a\":[1,]}",
            "{\"a\":[1}",
            "{\"a\":{\"b\"}}",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12\"}",
            "{\"a\":\"\\ud800\"}",
            "{} x",
            "{}\u{c}",
            "{\"type\":1,\"type\":2}",
            "{\"ty\\u0070e\":\"x\"}",
            "{\"a\":NaN}",
            // Not certainly finite: the fallback parses these.
            "{\"a\":1e400}",
            "{\"a\":1e308}",
            "{\"a\":-1E+1000}",
            "{\"a\":0.5e-1000}",
        ] {
            assert_eq!(fast_verdict(body), None, "{body:?}");
        }
        let big_int = format!("{{\"a\":[1{}]}}", "0".repeat(308));
        assert_eq!(fast_verdict(&big_int), None);
        let just_finite = format!("{{\"a\":[1{},1e307,-12e296,7e-999]}}", "0".repeat(307));
        assert!(fast_verdict(&just_finite).is_some());
        check(&just_finite);
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(MAX_DEPTH as usize + 1), "]".repeat(MAX_DEPTH as usize + 1));
        assert_eq!(fast_verdict(&deep), None);
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(MAX_DEPTH as usize), "]".repeat(MAX_DEPTH as usize));
        assert!(fast_verdict(&ok).is_some());
        check(&ok);
    }

    #[test]
    fn non_ascii_is_reported_for_the_caller_to_check() {
        assert!(!scan(br#"{"type":"plain ascii, long enough for whole words","payload":{}}"#).unwrap().non_ascii);
        for body in ["{\"a\":\"\u{e9}\"}", "{\"a\":\"0123456789\u{1F600}0123456789\"}"] {
            assert!(scan(body.as_bytes()).unwrap().non_ascii, "{body}");
        }
        // Not UTF-8: the scanner passes it on flagged, the caller refuses it.
        assert!(scan(b"{\"a\":\"\xff\xfe 0123456789\"}").unwrap().non_ascii);
        assert!(scan(b"{\"a\":\xff}").is_none());
    }

    /// Each kind of byte that ends a run of string contents, at every
    /// position of an 8-byte word, is seen.
    #[test]
    fn word_scan_stops_at_every_special_byte() {
        for at in 0..17 {
            for special in ["\"", "\\n", "\u{1}"] {
                let inner = format!("{}{special}{}", "x".repeat(at), "y".repeat(9));
                let body = format!("{{\"type\":\"{inner}\"}}");
                let fast = fast_verdict(&body);
                match special {
                    "\"" => assert_eq!(fast, None, "{body:?}"), // ends the string early: invalid
                    "\u{1}" => assert_eq!(fast, None, "{body:?}"),
                    _ => assert_eq!(fast, Some((Some(format!("\"{inner}\"")), None)), "{body:?}"),
                }
                check(&body);
            }
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| n.into()),
            (-1e9f64..1e9).prop_map(|f| serde_json::json!(f)),
            "[a-z\"\\\\\u{1}\u{e9}\u{1F600} ]{0,8}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
                prop::collection::vec(("(type|payload|[a-z]{1,3})", inner), 0..5)
                    .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Serialize with random whitespace between tokens (outside strings).
    fn spaced(v: &serde_json::Value, ws: &[u8]) -> String {
        let compact = serde_json::to_string(v).unwrap();
        let mut out = String::new();
        let mut in_string = false;
        let mut escaped = false;
        let mut k = 0;
        for c in compact.chars() {
            if !in_string && matches!(c, ',' | ':' | '{' | '}' | '[' | ']') {
                out.push_str([" ", "", "\n", "\t", "", "\r\n"][ws[k % ws.len()] as usize % 6]);
                k += 1;
            }
            out.push(c);
            if in_string {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_string = false;
                }
            } else if c == '"' {
                in_string = true;
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Valid objects: the scanner agrees with serde_json, and takes the
        /// fast path whenever nothing in them is left to serde_json.
        #[test]
        fn valid_objects_agree_with_serde(
            fields in prop::collection::vec(("(type|payload|[a-z]{1,3})", json_value()), 0..6),
            ws in prop::collection::vec(any::<u8>(), 1..16),
        ) {
            let v = serde_json::Value::Object(fields.into_iter().collect());
            let body = spaced(&v, &ws);
            check(&body);
            // serde_json writes U+0001 as \u0001 and never a surrogate, and
            // a Map has no repeated keys: nothing here needs the fallback.
            prop_assert!(fast_verdict(&body).is_some(), "fast path refused {body:?}");
        }

        /// Numbers near and past f64's range, in every JSON spelling: the
        /// scanner never accepts one orjson refuses.
        #[test]
        fn numbers_never_pass_where_orjson_fails(
            numbers in prop::collection::vec(
                "-?(0|[1-9][0-9]{0,5}|[1-9][0-9]{300,312})(\\.[0-9]{1,4})?([eE][+-]?(0{0,3}[0-9]{1,3}|[0-9]{4}))?",
                1..4,
            ),
        ) {
            let body = format!(r#"{{"type":"t","payload":{{"n":[{}]}}}}"#, numbers.join(","));
            check(&body);
            if numbers.iter().any(|n| !crate::json_portable::finite_number(n.as_bytes())) {
                prop_assert!(fast_verdict(&body).is_none(), "{body}");
            }
        }

        /// `\u` escapes of surrogates, paired or not, anywhere in a string.
        #[test]
        fn surrogate_escapes_never_pass_where_orjson_fails(
            parts in prop::collection::vec(prop_oneof![
                Just("x".to_string()),
                "\\\\u[dD][89abAB][0-9a-f]{2}",
                "\\\\u[dD][c-fC-F][0-9a-f]{2}",
                "\\\\u00[2-7][0-9a-f]",
            ], 0..6),
        ) {
            let body = format!(r#"{{"type":"t","payload":{{"s":"{}"}}}}"#, parts.concat());
            check(&body);
        }

        /// Damaged objects (bytes inserted, removed or replaced by JSON's
        /// own punctuation): whatever the scanner still accepts, serde_json
        /// accepts the same way.
        #[test]
        fn damaged_objects_never_pass_where_serde_fails(
            v in json_value(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(
                &b"{}[]\",:\\ 0-.eE+tfnu\x01a"[..])), 1..4),
        ) {
            let mut body = serde_json::to_string(&serde_json::json!({"type": "t", "payload": v})).unwrap().into_bytes();
            for (at, op, byte) in edits {
                let i = at.index(body.len() + 1);
                match op {
                    0 => body.insert(i, byte),
                    1 if i < body.len() => { body.remove(i); }
                    _ if i < body.len() => body[i] = byte,
                    _ => {}
                }
            }
            if let Ok(text) = std::str::from_utf8(&body) {
                check(text);
            }
        }
    }
}
