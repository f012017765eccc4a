//! Import: NATS messages matching `--import` go to local subscribers.
//!
//! A NATS message is hostile input from another machine: it is delivered
//! only when it is at most 1 MiB, carries exactly one valid
//! `Decnet-Origin` that is not this host, sits under our prefix on a valid
//! topic that the envelope's own `topic` agrees with, and parses as a
//! version-1 envelope with a 32-hex id, a sane `ts` and an object payload.
//! Anything else is counted in `rejected` and logged without flooding.
//!
//! Overlapping import patterns (`decky.>` and `decky.*.state`) give one
//! NATS subscription each, so NATS hands such a message to both: the
//! subscription of pattern *i* takes it only when no earlier pattern
//! matches, so exactly one of them delivers it.

use std::sync::Arc;

use decnet_bus::frame::MAX_BODY_LEN;
use decnet_bus::server::broker::{Broker, ConnId};
use decnet_bus::topic::{pattern_matches, validate_topic};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::counters::FederationCounters;
use super::options::FederationConfig;
use super::presence::Identity;
use super::{INSTANCE_HEADER, ORIGIN_HEADER, SEQ_HEADER};

/// Longest `Decnet-Instance` kept in the gap tables (ours are 32 hex).
const MAX_INSTANCE_LEN: usize = 64;

pub async fn run(
    broker: Arc<Broker>,
    bridge: ConnId,
    client: async_nats::Client,
    config: Arc<FederationConfig>,
    index: usize,
    id: Arc<Identity>,
    shutdown: CancellationToken,
) {
    let counters = &id.counters;
    let pattern = &config.import[index];
    let subject = format!("{}.{pattern}", config.prefix);
    // Sent to the connection task now, replayed by async-nats after every
    // reconnect; a failure here means the client is closed for good.
    let mut sub = match client.subscribe(subject.clone()).await {
        Ok(sub) => sub,
        Err(e) => {
            tracing::error!(subject, error = %e, "cannot subscribe on NATS; this import pattern is off");
            return;
        }
    };
    tracing::debug!(subject, "NATS import subscribed");
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = id.halt.cancelled() => break, // refused: nothing more comes in
            msg = sub.next() => match msg { Some(msg) => msg, None => break },
        };
        let origin = origin_of(msg.headers.as_ref());
        let sender = origin.as_ref().ok().copied();
        let instance = header(msg.headers.as_ref(), INSTANCE_HEADER).filter(|i| i.len() <= MAX_INSTANCE_LEN);
        match check(&config, index, msg.subject.as_str(), origin, &msg.payload) {
            Verdict::Deliver { topic, envelope } => {
                let seq = header(msg.headers.as_ref(), SEQ_HEADER).and_then(|s| s.parse::<u64>().ok());
                if let (Some(sender), Some(instance), Some(seq)) = (sender, instance, seq) {
                    counters.gaps.observe(sender, instance, &topic, seq);
                }
                if broker.publish_envelope(Some(bridge), &topic, &envelope).is_ok() {
                    FederationCounters::add(&counters.imported, 1);
                }
            }
            Verdict::OwnOrigin => match instance {
                // Our host id from another bus: two hosts share an id.
                Some(other) if other != id.instance => id.duplicate(other),
                _ => {
                    FederationCounters::add(&counters.own_origin, 1);
                }
            },
            Verdict::EarlierPattern => {}
            Verdict::Reject(reason) => {
                let n = FederationCounters::add(&counters.rejected, 1);
                // 1st, 2nd, 4th, 8th…: a flood of junk costs a few lines.
                if n.is_power_of_two() {
                    tracing::warn!(subject = %msg.subject, reason = %reason, rejected_total = n, "NATS message rejected");
                }
            }
        }
    }
    let _ = sub.unsubscribe().await;
}

/// A header's first value.
fn header<'a>(headers: Option<&'a async_nats::HeaderMap>, name: &str) -> Option<&'a str> {
    headers?.get(name).map(|v| v.as_str())
}

/// The `Decnet-Origin` header: `Err` when it is missing or repeated.
fn origin_of(headers: Option<&async_nats::HeaderMap>) -> Result<&str, Reject> {
    let headers = headers.ok_or(Reject::NoOrigin)?;
    let mut values = headers.get_all(ORIGIN_HEADER);
    let first = values.next().ok_or(Reject::NoOrigin)?;
    if values.next().is_some() {
        return Err(Reject::BadOrigin);
    }
    Ok(first.as_str())
}

/// Why a NATS message was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Reject {
    #[error("message of {0} bytes is over the 1 MiB body limit")]
    TooLarge(usize),
    #[error("no Decnet-Origin header")]
    NoOrigin,
    #[error("Decnet-Origin is repeated or not a valid host id")]
    BadOrigin,
    #[error("subject is not under the federation prefix")]
    OutsidePrefix,
    #[error("subject does not map to a valid topic")]
    BadTopic,
    #[error("body is not an envelope: {0}")]
    NotEnvelope(String),
    #[error("envelope topic {0:?} differs from the subject's")]
    TopicMismatch(String),
    #[error("envelope version {0} is not 1")]
    Version(u32),
    #[error("envelope id is not 32 hex characters")]
    BadId,
    #[error("envelope ts is not a finite non-negative number")]
    BadTs,
    #[error("envelope payload is not a JSON object")]
    PayloadNotObject,
    #[error("envelope is JSON DECNET's Python clients cannot parse: {0}")]
    Unportable(decnet_bus::json_portable::Unportable),
}

#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Deliver this envelope (the original plus `origin`) on `topic`.
    Deliver {
        topic: String,
        envelope: Vec<u8>,
    },
    /// One of our own exports came back: drop silently (counted).
    OwnOrigin,
    /// An earlier import pattern's subscription delivers this one.
    EarlierPattern,
    Reject(Reject),
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(default = "one")]
    v: u32,
    id: String,
    topic: String,
    #[serde(rename = "type", default)]
    event_type: String,
    ts: f64,
    #[serde(borrow)]
    payload: &'a RawValue,
}

fn one() -> u32 {
    1
}

/// Decide what to do with one NATS message received on import pattern
/// `index`. Pure, so every rejection reason has a unit test.
pub fn check(
    config: &FederationConfig,
    index: usize,
    subject: &str,
    origin: Result<&str, Reject>,
    body: &[u8],
) -> Verdict {
    match check_inner(config, index, subject, origin, body) {
        Ok(v) => v,
        Err(r) => Verdict::Reject(r),
    }
}

fn check_inner(
    config: &FederationConfig,
    index: usize,
    subject: &str,
    origin: Result<&str, Reject>,
    body: &[u8],
) -> Result<Verdict, Reject> {
    if body.len() > MAX_BODY_LEN {
        return Err(Reject::TooLarge(body.len()));
    }
    let origin = origin?;
    if !decnet_bus::sdk::valid_host_id(origin) {
        return Err(Reject::BadOrigin);
    }
    if origin == config.host_id {
        return Ok(Verdict::OwnOrigin);
    }
    let topic = subject
        .strip_prefix(config.prefix.as_str())
        .and_then(|rest| rest.strip_prefix('.'))
        .ok_or(Reject::OutsidePrefix)?;
    validate_topic(topic).map_err(|_| Reject::BadTopic)?;
    // NATS matched the subject to this pattern; check anyway, the
    // earlier-pattern rule below relies on the same matcher.
    if !pattern_matches(&config.import[index], topic) {
        return Err(Reject::BadTopic);
    }
    if config.import[..index].iter().any(|p| pattern_matches(p, topic)) {
        return Ok(Verdict::EarlierPattern);
    }
    let env: Incoming<'_> = serde_json::from_slice(body).map_err(|e| Reject::NotEnvelope(e.to_string()))?;
    if env.v != 1 {
        return Err(Reject::Version(env.v));
    }
    if env.topic != topic {
        return Err(Reject::TopicMismatch(env.topic.chars().take(64).collect()));
    }
    if env.id.len() != 32 || !env.id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Reject::BadId);
    }
    if !env.ts.is_finite() || env.ts < 0.0 {
        return Err(Reject::BadTs);
    }
    if !env.payload.get().starts_with('{') {
        return Err(Reject::PayloadNotObject);
    }
    // What reaches local subscribers must be readable by orjson, as for
    // local publishes (SPEC §2); serde_json skipped the unknown keys.
    decnet_bus::json_portable::check(body).map_err(Reject::Unportable)?;
    // The original fields, payload byte for byte, plus where it came from.
    let mut out = Vec::with_capacity(body.len() + 32 + origin.len());
    out.extend_from_slice(b"{\"v\":1,\"id\":");
    serde_json::to_writer(&mut out, &env.id).map_err(|e| Reject::NotEnvelope(e.to_string()))?;
    out.extend_from_slice(b",\"topic\":");
    serde_json::to_writer(&mut out, topic).map_err(|e| Reject::NotEnvelope(e.to_string()))?;
    out.extend_from_slice(b",\"type\":");
    serde_json::to_writer(&mut out, &env.event_type).map_err(|e| Reject::NotEnvelope(e.to_string()))?;
    out.extend_from_slice(b",\"ts\":");
    serde_json::to_writer(&mut out, &env.ts).map_err(|e| Reject::NotEnvelope(e.to_string()))?;
    out.extend_from_slice(b",\"payload\":");
    out.extend_from_slice(env.payload.get().as_bytes());
    out.extend_from_slice(b",\"origin\":");
    serde_json::to_writer(&mut out, origin).map_err(|e| Reject::NotEnvelope(e.to_string()))?;
    out.push(b'}');
    if out.len() > MAX_BODY_LEN {
        return Err(Reject::TooLarge(out.len()));
    }
    Ok(Verdict::Deliver { topic: topic.to_owned(), envelope: out })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::options::NatsArgs;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        nats: NatsArgs,
    }

    fn config(import: &[&str]) -> FederationConfig {
        let mut argv = vec!["x", "--nats", "nats://127.0.0.1:1", "--host-id", "me"];
        for p in import {
            argv.extend(["--import", p]);
        }
        Cli::parse_from(argv).nats.config().unwrap().unwrap()
    }

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn body(topic: &str) -> Vec<u8> {
        format!(r#"{{"v":1,"id":"{ID}","topic":"{topic}","type":"state","ts":1732345678.123456,"payload":{{"k":[1,2]}},"extra":true}}"#)
            .into_bytes()
    }

    #[test]
    fn a_good_message_keeps_its_fields_and_gains_origin() {
        let c = config(&["decky.>"]);
        let Verdict::Deliver { topic, envelope } =
            check(&c, 0, "decnet.decky.d1.state", Ok("other"), &body("decky.d1.state"))
        else {
            panic!("expected delivery")
        };
        assert_eq!(topic, "decky.d1.state");
        let v: serde_json::Value = serde_json::from_slice(&envelope).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"v": 1, "id": ID, "topic": "decky.d1.state", "type": "state",
                               "ts": 1732345678.123456, "payload": {"k": [1, 2]}, "origin": "other"})
        );
    }

    #[test]
    fn own_origin_is_dropped_not_rejected() {
        let c = config(&["decky.>"]);
        assert_eq!(check(&c, 0, "decnet.decky.d1.state", Ok("me"), &body("decky.d1.state")), Verdict::OwnOrigin);
    }

    #[test]
    fn overlapping_patterns_deliver_once() {
        let c = config(&["decky.>", "decky.*.state"]);
        let subject = "decnet.decky.d1.state";
        assert!(matches!(check(&c, 0, subject, Ok("h"), &body("decky.d1.state")), Verdict::Deliver { .. }));
        assert_eq!(check(&c, 1, subject, Ok("h"), &body("decky.d1.state")), Verdict::EarlierPattern);
    }

    #[test]
    fn hostile_messages_are_rejected_with_a_reason() {
        let c = config(&[">"]);
        let t = "a.b";
        let s = "decnet.a.b";
        let rej = |subject: &str, origin: Result<&str, Reject>, b: &[u8]| match check(&c, 0, subject, origin, b) {
            Verdict::Reject(r) => r,
            other => panic!("expected a rejection, got {other:?}"),
        };
        assert_eq!(rej(s, Ok("h"), &vec![b' '; MAX_BODY_LEN + 1]), Reject::TooLarge(MAX_BODY_LEN + 1));
        assert_eq!(rej(s, Err(Reject::NoOrigin), &body(t)), Reject::NoOrigin);
        assert_eq!(rej(s, Ok("bad host"), &body(t)), Reject::BadOrigin);
        assert_eq!(rej("other.a.b", Ok("h"), &body(t)), Reject::OutsidePrefix);
        assert_eq!(rej("decneta.b", Ok("h"), &body(t)), Reject::OutsidePrefix);
        assert!(matches!(rej(s, Ok("h"), b"not json"), Reject::NotEnvelope(_)));
        assert!(matches!(rej(s, Ok("h"), b"[1]"), Reject::NotEnvelope(_)));
        assert_eq!(rej(s, Ok("h"), &body("x.y")), Reject::TopicMismatch("x.y".into()));
        let v2 = String::from_utf8(body(t)).unwrap().replace(r#""v":1"#, r#""v":2"#);
        assert_eq!(rej(s, Ok("h"), v2.as_bytes()), Reject::Version(2));
        let bad_id = String::from_utf8(body(t)).unwrap().replace(ID, "xyz");
        assert_eq!(rej(s, Ok("h"), bad_id.as_bytes()), Reject::BadId);
        let bad_ts = String::from_utf8(body(t)).unwrap().replace("1732345678.123456", "-1");
        assert_eq!(rej(s, Ok("h"), bad_ts.as_bytes()), Reject::BadTs);
        let arr = String::from_utf8(body(t)).unwrap().replace(r#"{"k":[1,2]}"#, "[1]");
        assert_eq!(rej(s, Ok("h"), arr.as_bytes()), Reject::PayloadNotObject);
        for unreadable in [r#"{"k":1e400}"#, r#"{"k":"\udc00"}"#] {
            let b = String::from_utf8(body(t)).unwrap().replace(r#"{"k":[1,2]}"#, unreadable);
            assert!(matches!(rej(s, Ok("h"), b.as_bytes()), Reject::Unportable(_)), "{unreadable}");
        }
    }

    #[test]
    fn flags_that_cannot_work_are_refused() {
        let parse = |argv: &[&str]| {
            let mut all = vec!["x"];
            all.extend_from_slice(argv);
            Cli::try_parse_from(all)
                .map_err(|e| e.to_string())
                .and_then(|c| c.nats.config().map_err(|e| format!("{e:#}")))
        };
        assert!(parse(&["--export", "a.>"]).unwrap_err().contains("--nats"));
        assert!(parse(&["--nats", "nats://h:1"]).unwrap_err().contains("--export or --import"));
        assert!(parse(&["--nats", "nats://h:1", "--export", "a.>.b"]).unwrap_err().contains("pattern"));
        assert!(parse(&["--nats", "nats://h:1", "--export", "a", "--nats-prefix", "x.*"])
            .unwrap_err()
            .contains("prefix"));
        assert!(parse(&["--nats", "nats://h:1", "--export", "a", "--host-id", "no spaces"])
            .unwrap_err()
            .contains("host id"));
        assert!(parse(&[]).unwrap().is_none(), "no flags: federation off");
        let c = parse(&["--nats", "nats://a:1,nats://b:2", "--export", "a.>,b", "--export", "a.>"]).unwrap().unwrap();
        assert_eq!(c.servers, ["nats://a:1", "nats://b:2"]);
        assert_eq!(c.export, ["a.>", "b"], "comma lists split and duplicates fold");
    }
}
