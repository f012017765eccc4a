//! JSON lines for a terminal. serde_json already writes C0 controls as
//! `\u00XX`, but DEL, C1 controls (U+0085, U+009B CSI, …) and the Unicode
//! bidi controls go out raw, and an attacker's username or SNI printed by
//! `decnet sub` or `decnet parse` could then move the cursor or show
//! `admin\u202egnp.exe` as `adminexe.png`. Every character the line
//! formatter escapes ([`rfc5424::must_escape`]) is written as a JSON
//! `\uXXXX` escape instead: still the same JSON value for a program that
//! reads the output, inert on a screen.

use crate::events::rfc5424;

/// `value` as one line of JSON with no [`rfc5424::must_escape`] character in it.
pub fn json_line(value: &impl serde::Serialize) -> serde_json::Result<String> {
    let text = serde_json::to_string(value)?;
    if !text.chars().any(rfc5424::must_escape) {
        return Ok(text);
    }
    // Outside strings JSON is ASCII punctuation, digits and literals, so
    // any such character is inside a string, where `\uXXXX` means it.
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if rfc5424::must_escape(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn controls_and_bidi_become_json_escapes() {
        let v = serde_json::json!({"u": "admin\u{202e}gnp.exe\u{1b}[2J\u{9b}\u{7f}\n"});
        let line = json_line(&v).unwrap();
        assert_eq!(line, r#"{"u":"admin\u202egnp.exe\u001b[2J\u009b\u007f\n"}"#);
    }

    proptest! {
        #[test]
        fn the_same_value_with_nothing_raw(s in "\\PC{0,20}|[\\x00-\\x1f\\x7f-\\x9f\u{202a}-\u{202e}\u{2066}-\u{2069}a]{0,20}") {
            let v = serde_json::json!({"k": s, "n": [1, s.clone()]});
            let line = json_line(&v).unwrap();
            prop_assert!(!line.chars().any(rfc5424::must_escape));
            prop_assert_eq!(serde_json::from_str::<serde_json::Value>(&line).unwrap(), v);
        }
    }
}
