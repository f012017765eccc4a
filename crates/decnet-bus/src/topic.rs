//! Topic and pattern rules (SPEC §4).
//!
//! A topic is dot-separated tokens; a token is non-empty and holds no `.`,
//! `*`, `>` or whitespace. A pattern may use `*` (exactly one token) and `>`
//! (one or more trailing tokens, last only). Topics and patterns are distinct
//! types so a wildcard can never be published by accident.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("empty topic")]
    Empty,
    #[error("empty token in {0:?}")]
    EmptyToken(String),
    #[error("token {token:?} in {topic:?} holds a forbidden character ('.', '*', '>' or whitespace)")]
    BadToken { topic: String, token: String },
    #[error("wildcard in topic {0:?}: only patterns (SUB) may use '*' or '>'")]
    WildcardInTopic(String),
    #[error("'>' must be the last token of pattern {0:?}")]
    TailNotLast(String),
    #[error("non-ASCII or control character in {0:?}")]
    NotAscii(String),
}

/// Is `token` a valid literal token (not a wildcard)?
pub fn is_valid_token(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>'))
}

/// Validate a publishable topic: literal tokens only.
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    // The daemon checks every PUB's topic: accept a good one in one pass
    // over its bytes; the rule-by-rule walk below only runs to name what
    // is wrong with a bad one.
    if is_clean_topic(topic.as_bytes()) {
        return Ok(());
    }
    check_common(topic)?;
    for tok in topic.split('.') {
        if tok.is_empty() {
            return Err(TopicError::EmptyToken(topic.into()));
        }
        if tok == "*" || tok == ">" {
            return Err(TopicError::WildcardInTopic(topic.into()));
        }
        if !is_valid_token(tok) {
            return Err(TopicError::BadToken { topic: topic.into(), token: tok.into() });
        }
    }
    Ok(())
}

/// One pass: non-empty tokens of printable ASCII without `.`, `*`, `>`,
/// separated by single dots. Accepts exactly what [`validate_topic`]'s
/// rules accept (tested against them below).
fn is_clean_topic(bytes: &[u8]) -> bool {
    let mut after_dot = true; // the first token must not be empty either
    for &b in bytes {
        if b == b'.' {
            if after_dot {
                return false;
            }
            after_dot = true;
        } else if b.is_ascii_graphic() && b != b'*' && b != b'>' {
            after_dot = false;
        } else {
            return false;
        }
    }
    !after_dot
}

/// Validate a subscription pattern: literal tokens, `*`, and a final `>`.
pub fn validate_pattern(pattern: &str) -> Result<(), TopicError> {
    check_common(pattern)?;
    let mut toks = pattern.split('.').peekable();
    while let Some(tok) = toks.next() {
        match tok {
            "" => return Err(TopicError::EmptyToken(pattern.into())),
            "*" => {}
            ">" if toks.peek().is_none() => {}
            ">" => return Err(TopicError::TailNotLast(pattern.into())),
            t if is_valid_token(t) => {}
            t => return Err(TopicError::BadToken { topic: pattern.into(), token: t.into() }),
        }
    }
    Ok(())
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    // Headers are ASCII (SPEC §2); control characters would corrupt framing.
    if !s.is_ascii() || s.bytes().any(|b| b.is_ascii_control()) {
        return Err(TopicError::NotAscii(s.into()));
    }
    Ok(())
}

/// Straightforward matcher: walks both token lists. The daemon routes with
/// [`crate::index::SubscriptionIndex`]; this is what clients use to demux a
/// handful of local subscriptions, and the reference the index is tested against.
pub fn pattern_matches(pattern: &str, topic: &str) -> bool {
    let mut pt = pattern.split('.');
    let mut tt = topic.split('.');
    loop {
        match (pt.next(), tt.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(p), Some(t)) if p == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Result<Self, TopicError> {
                let s = s.into();
                $check(&s)?;
                Ok(Self(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = TopicError;
            fn from_str(s: &str) -> Result<Self, TopicError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = TopicError;
            fn try_from(s: &str) -> Result<Self, TopicError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = TopicError;
            fn try_from(s: String) -> Result<Self, TopicError> {
                Self::new(s)
            }
        }
    };
}

validated_string!(
    /// A concrete, publishable topic (no wildcards).
    Topic,
    validate_topic
);
validated_string!(
    /// A subscription pattern (`*` and a trailing `>` allowed).
    Pattern,
    validate_pattern
);

impl Pattern {
    pub fn matches(&self, topic: &str) -> bool {
        pattern_matches(&self.0, topic)
    }
}

impl From<Topic> for Pattern {
    /// Every topic is also a pattern that matches only itself.
    fn from(t: Topic) -> Pattern {
        Pattern(t.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        for ok in ["a", "decky.d1.state", "topology.t-1.mutation.enqueued", "x_y.Z9"] {
            assert!(validate_topic(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "a.", ".a", "a..b", "a.*", "a.>", "a b", "a.b\tc", "a*b", "a>b", "caf\u{e9}", "a\nb"] {
            assert!(validate_topic(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// The one-pass check accepts exactly what the rules accept.
        #[test]
        fn clean_topic_check_agrees_with_the_rules(s in "[a.*> \t\n\u{e9}\u{7f}b]{0,8}") {
            let slow = (|| {
                check_common(&s)?;
                for tok in s.split('.') {
                    if tok.is_empty() || tok == "*" || tok == ">" || !is_valid_token(tok) {
                        return Err(TopicError::Empty);
                    }
                }
                Ok(())
            })();
            proptest::prop_assert_eq!(is_clean_topic(s.as_bytes()), slow.is_ok(), "{:?}", s);
            proptest::prop_assert_eq!(validate_topic(&s).is_ok(), slow.is_ok(), "{:?}", s);
        }
    }

    #[test]
    fn patterns() {
        for ok in ["a", ">", "*", "a.*", "a.>", "*.b.>", "system.*.health"] {
            assert!(validate_pattern(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a.>.b", "> .a", "a..b", "a.b*", "a.>>", "a.*x", ". ", "a b"] {
            assert!(validate_pattern(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matching() {
        let cases = [
            ("topology.>", "topology.a.status", true),
            ("topology.>", "topology", false),
            ("topology.>", "topology.a", true),
            ("a.*", "a.b", true),
            ("a.*", "a.b.c", false),
            ("a.*", "a", false),
            ("*", "a", true),
            ("*", "a.b", false),
            (">", "a.b.c", true),
            ("a.b", "a.b", true),
            ("a.b", "a.c", false),
            ("*.b.>", "x.b.c.d", true),
            ("*.b.>", "x.b", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(pattern_matches(p, t), want, "{p} ~ {t}");
        }
    }
}
