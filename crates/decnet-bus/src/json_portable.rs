//! JSON that DECNET's Python clients can read (SPEC §2).
//!
//! DECNET's workers parse every EVT body with orjson, which is stricter
//! than JSON's grammar and than serde_json skipping a value unparsed: it
//! refuses a number that is infinite as a 64-bit float (`1e400`, or an
//! integer of 309 digits), a `\u` escape of an unpaired UTF-16 surrogate,
//! and arrays and objects nested deeper than 1024 levels (its README:
//! "raises JSONDecodeError if a combination of array or object recurses
//! 1024 levels deep"; measured with orjson 3.13: 1024 levels counting the
//! outermost object parse, 1025 do not). A client that cannot parse an
//! event drops its connection and every subscription on it, so the daemon
//! forwards none of these.
//!
//! [`check`] is the exact rule, for text already known to be valid JSON;
//! [`crate::json_scan`] applies it on its fast path too, as "not sure"
//! whenever a number is not certainly finite, and hands the rest here.

/// Most levels of arrays and objects orjson parses, the outermost included.
pub const MAX_NESTING: usize = 1024;

/// Why a body is JSON that orjson refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unportable {
    #[error("number {0} is outside the range of a 64-bit float")]
    NumberOutOfRange(String),
    #[error("\\u{0:04x} is a lone UTF-16 surrogate")]
    LoneSurrogate(u32),
    #[error("arrays and objects nested deeper than {MAX_NESTING} levels")]
    TooDeep,
}

/// Whether the JSON number `text` (valid JSON number syntax) is finite as
/// an f64, i.e. whether orjson (which rounds correctly, as Rust does)
/// parses it. Most numbers are decided by their digit counts alone.
pub fn finite_number(text: &[u8]) -> bool {
    if let Some(certain) = finite_by_digits(text) {
        return certain;
    }
    std::str::from_utf8(text).ok().and_then(|s| s.parse::<f64>().ok()).is_some_and(f64::is_finite)
}

/// `Some(true)` when the digit counts prove `text` finite (its value is
/// below 10^308, and f64::MAX is 1.79e308); `None` when only parsing can
/// tell. Never `Some(false)`: an infinite verdict is always a parse's.
pub(crate) fn finite_by_digits(text: &[u8]) -> Option<bool> {
    let unsigned = text.strip_prefix(b"-").unwrap_or(text);
    let int_digits = unsigned.iter().take_while(|b| b.is_ascii_digit()).count();
    let exp_at = unsigned.iter().position(|&b| b == b'e' || b == b'E');
    let Some(e) = exp_at else {
        return (int_digits <= 308).then_some(true);
    };
    let exp = &unsigned[e + 1..];
    let (negative, digits) = match exp.first() {
        Some(b'-') => (true, &exp[1..]),
        Some(b'+') => (false, &exp[1..]),
        _ => (false, exp),
    };
    if digits.len() > 3 {
        return None;
    }
    let value = digits.iter().fold(0usize, |v, d| v * 10 + usize::from(d - b'0'));
    // value < 10^int_digits * 10^exp; a negative exponent only shrinks it
    // (underflow to zero is fine: orjson reads 1e-400 as 0.0).
    let magnitude = if negative { int_digits } else { int_digits + value };
    (magnitude <= 308).then_some(true)
}

/// Check text that is already valid JSON against orjson's extra rules.
/// One pass; no allocation unless it fails.
pub fn check(json: &[u8]) -> Result<(), Unportable> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => i = string_end(json, i + 1)?,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(Unportable::TooDeep);
                }
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < json.len() && matches!(json[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                    i += 1;
                }
                let number = &json[start..i];
                if !finite_number(number) {
                    let shown: String = String::from_utf8_lossy(number).chars().take(40).collect();
                    return Err(Unportable::NumberOutOfRange(shown));
                }
            }
            // Whitespace, punctuation and the letters of true/false/null.
            _ => i += 1,
        }
    }
    Ok(())
}

/// The index just past the closing quote of the string whose contents
/// start at `i`, refusing unpaired surrogate escapes.
fn string_end(json: &[u8], mut i: usize) -> Result<usize, Unportable> {
    while i < json.len() {
        match json[i] {
            b'"' => return Ok(i + 1),
            b'\\' if json.get(i + 1) == Some(&b'u') => {
                let code = hex4(json, i + 2);
                i += 6;
                match code {
                    Some(high @ 0xD800..=0xDBFF) => {
                        let low = if json.get(i..i + 2) == Some(b"\\u") { hex4(json, i + 2) } else { None };
                        match low {
                            Some(0xDC00..=0xDFFF) => i += 6,
                            _ => return Err(Unportable::LoneSurrogate(high)),
                        }
                    }
                    Some(low @ 0xDC00..=0xDFFF) => return Err(Unportable::LoneSurrogate(low)),
                    _ => {}
                }
            }
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    Ok(i)
}

fn hex4(json: &[u8], at: usize) -> Option<u32> {
    let digits = json.get(at..at + 4)?;
    digits.iter().try_fold(0u32, |v, &h| Some(v * 16 + (h as char).to_digit(16)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boundaries measured against orjson 3.13 (see the module doc):
    /// correctly rounded, so the halfway point above f64::MAX is infinite.
    #[test]
    fn numbers_are_finite_exactly_when_orjson_parses_them() {
        for ok in [
            "0",
            "-0",
            "1e308",
            "1.7976931348623157e308",
            "1.7976931348623158079e308",
            "-1.7976931348623158e308",
            "1e-400",
            "123e-400",
            "0.00001e310",
            "1e0000000000000000000000000000001",
            "18446744073709551616",
            "-9223372036854775809",
        ] {
            assert!(finite_number(ok.as_bytes()), "{ok}");
            assert_eq!(check(format!("{{\"a\":{ok}}}").as_bytes()), Ok(()), "{ok}");
        }
        let big_int = format!("1{}", "0".repeat(400));
        for bad in ["1e400", "-1e400", "1e309", "1.8e308", "1.79769313486231580794e308", "1000e306", &big_int] {
            assert!(!finite_number(bad.as_bytes()), "{bad}");
            assert!(matches!(check(format!("[{bad}]").as_bytes()), Err(Unportable::NumberOutOfRange(_))), "{bad}");
        }
        // 308 digits is below 10^308, decided without parsing.
        assert_eq!(finite_by_digits(format!("9{}", "0".repeat(307)).as_bytes()), Some(true));
        assert_eq!(finite_by_digits(b"12e3"), Some(true));
        assert_eq!(finite_by_digits(b"1e307"), Some(true));
        assert_eq!(finite_by_digits(b"1e308"), None, "below f64::MAX, but only a parse says so");
        assert_eq!(finite_by_digits(b"1e1000"), None);
    }

    #[test]
    fn lone_surrogates_are_refused_pairs_kept() {
        assert_eq!(
            check(br#"{"a":"\ud83d\ude00 \u00e9 \\ud800"}"#),
            Ok(()),
            "a pair, a BMP char, an escaped backslash"
        );
        assert_eq!(check(br#"{"a":"\ud800"}"#), Err(Unportable::LoneSurrogate(0xd800)));
        assert_eq!(check(br#"{"a":"\udc00"}"#), Err(Unportable::LoneSurrogate(0xdc00)));
        assert_eq!(check(br#"{"a":"\ude00\ud83d"}"#), Err(Unportable::LoneSurrogate(0xde00)));
        assert_eq!(check(br#"{"a":"\ud800\ud800"}"#), Err(Unportable::LoneSurrogate(0xd800)));
        assert_eq!(check(br#"{"a":"\ud800x"}"#), Err(Unportable::LoneSurrogate(0xd800)));
        assert_eq!(check(br#"{"\uDBFF":1}"#), Err(Unportable::LoneSurrogate(0xdbff)), "in a key too");
        // Digits inside strings are not numbers.
        assert_eq!(check(format!("{{\"a\":\"1{}\"}}", "0".repeat(400)).as_bytes()), Ok(()));
    }

    #[test]
    fn nesting_is_bounded_at_orjsons_limit() {
        let nest = |n: usize| format!("{{\"a\":{}{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
        assert_eq!(check(nest(MAX_NESTING).as_bytes()), Ok(()));
        assert_eq!(check(nest(MAX_NESTING + 1).as_bytes()), Err(Unportable::TooDeep));
        // Brackets inside strings do not nest.
        assert_eq!(check(format!("{{\"a\":\"{}\"}}", "[".repeat(5000)).as_bytes()), Ok(()));
    }
}
