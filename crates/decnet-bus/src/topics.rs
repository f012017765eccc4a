//! The decnet topic tree (SPEC §4): constants for fixed topics, builders for
//! topics with variable segments, and the wildcard patterns subscribers use.
//!
//! Worker, decky and topology ids come from operators, config files and
//! attackers' traffic, so every variable segment is checked here before it
//! is spliced into a topic: an id that is empty or holds `.`, `*`, `>` or
//! whitespace would otherwise silently publish somewhere else (`a.b` adds a
//! level, `*` turns a topic into a pattern). Builders return a [`Topic`] or a
//! [`TopicError`], never a malformed string.
//!
//! ```text
//! system.bus.health                 bus daemon heartbeat
//! system.<worker>.health            worker heartbeat {worker, ts, ...extra}
//! system.<worker>.control           control intent {action, requested_by, ts}
//! decky.<id>.state                  shape of a decky after a successful deploy
//! decky.<id>.mutation               transition {decky, old_services, new_services, trigger, actor?}
//! decky.<id>.mutate_request         ask the mutator to mutate this decky now
//! topology.<id>.mutation.<state>    enqueued | applying | applied | failed
//! topology.<id>.status              pending | deploying | active | degraded | failed
//! attacker.observed | attacker.scored | attacker.session.started | attacker.session.ended
//! attacker.fingerprinted            type = probe family, payload {attacker_ip, port, hash, ...}
//! attacker.artifact                 a captured upload or download {attacker_ip, decky, sid, source, url?, path, sha256, size, mime}
//! identity.formed | identity.observation.linked | identity.merged | identity.unmerged
//! ```

use std::fmt;
use std::str::FromStr;

use crate::topic::{is_valid_token, Pattern, Topic, TopicError};

// ---- fixed topics -------------------------------------------------------

/// The bus daemon's own heartbeat.
pub const BUS_HEALTH: &str = "system.bus.health";
/// The worker name the bus daemon heartbeats as.
pub const BUS_WORKER: &str = "bus";

pub const ATTACKER_OBSERVED: &str = "attacker.observed";
pub const ATTACKER_SCORED: &str = "attacker.scored";
pub const ATTACKER_SESSION_STARTED: &str = "attacker.session.started";
pub const ATTACKER_SESSION_ENDED: &str = "attacker.session.ended";
/// One event per successful JARM / HASSH / TCPfp probe; event type is the family.
pub const ATTACKER_FINGERPRINTED: &str = "attacker.fingerprinted";
/// A file an attacker brought, captured by a decky (SPEC §11):
/// `{attacker_ip, decky, sid, source, url?, path, sha256, size, mime}`.
pub const ATTACKER_ARTIFACT: &str = "attacker.artifact";

pub const IDENTITY_FORMED: &str = "identity.formed";
pub const IDENTITY_OBSERVATION_LINKED: &str = "identity.observation.linked";
pub const IDENTITY_MERGED: &str = "identity.merged";
pub const IDENTITY_UNMERGED: &str = "identity.unmerged";

/// A fingerprint changed for the same (ip, port, probe): `{attacker_ip, port, probe, old, new}`.
pub const ATTACKER_FINGERPRINT_ROTATED: &str = "attacker.fingerprint_rotated";
/// One per parsed honeypot log line (collector): `{decky, service, event_type, attacker_ip, timestamp}`.
pub const SYSTEM_LOG: &str = "system.log";
/// A credential seen for the first time on a target (ingester).
pub const CREDENTIAL_CAPTURED: &str = "credential.captured";
/// The same secret tried on two or more decky:service targets (profiler).
pub const CREDENTIAL_REUSE_DETECTED: &str = "credential.reuse.detected";

// ---- wildcard patterns --------------------------------------------------

/// Every worker heartbeat (includes the daemon's `system.bus.health`).
pub const SYSTEM_HEALTH_ALL: &str = "system.*.health";
/// Every worker's control channel.
pub const SYSTEM_CONTROL_ALL: &str = "system.*.control";
/// Everything under `system.`.
pub const SYSTEM_ALL: &str = "system.>";
pub const DECKY_STATE_ALL: &str = "decky.*.state";
pub const DECKY_MUTATION_ALL: &str = "decky.*.mutation";
pub const DECKY_MUTATE_REQUEST_ALL: &str = "decky.*.mutate_request";
pub const DECKY_ALL: &str = "decky.>";
pub const TOPOLOGY_STATUS_ALL: &str = "topology.*.status";
/// Every topology mutation transition, whatever the state.
pub const TOPOLOGY_MUTATION_ALL: &str = "topology.*.mutation.*";
/// What the mutator drains: newly enqueued topology mutations.
pub const TOPOLOGY_MUTATION_ENQUEUED_ALL: &str = "topology.*.mutation.enqueued";
pub const TOPOLOGY_ALL: &str = "topology.>";
pub const ATTACKER_ALL: &str = "attacker.>";
pub const IDENTITY_ALL: &str = "identity.>";
pub const CREDENTIAL_ALL: &str = "credential.>";
/// Passive traffic fingerprints of every decky (sniffer).
pub const DECKY_TRAFFIC_ALL: &str = "decky.*.traffic";

// ---- variable segments --------------------------------------------------

/// Check one variable segment of a topic template such as `decky.<id>.state`.
/// The error names the template so a log line says which builder refused.
fn segment<'a>(template: &str, value: &'a str) -> Result<&'a str, TopicError> {
    if value.is_empty() {
        return Err(TopicError::EmptyToken(template.into()));
    }
    if !value.is_ascii() || value.bytes().any(|b| b.is_ascii_control()) {
        return Err(TopicError::NotAscii(value.into()));
    }
    if !is_valid_token(value) {
        return Err(TopicError::BadToken { topic: template.into(), token: value.into() });
    }
    Ok(value)
}

fn topic(s: String) -> Result<Topic, TopicError> {
    // The segments were checked above; validating the whole string again is
    // cheap and keeps "a Topic is always valid" true by construction.
    Topic::new(s)
}

/// Is `value` usable as a worker / decky / topology id segment?
pub fn validate_segment(value: &str) -> Result<(), TopicError> {
    segment("<segment>", value).map(|_| ())
}

// ---- system -------------------------------------------------------------

/// `system.<worker>.health`: the worker's heartbeat.
pub fn system_health(worker: &str) -> Result<Topic, TopicError> {
    let w = segment("system.<worker>.health", worker)?;
    topic(format!("system.{w}.health"))
}

/// `system.<worker>.control`: control intents (`{"action":"stop"}`) for a worker.
pub fn system_control(worker: &str) -> Result<Topic, TopicError> {
    let w = segment("system.<worker>.control", worker)?;
    topic(format!("system.{w}.control"))
}

/// `system.<worker>.>`: everything about one worker.
pub fn system_worker_all(worker: &str) -> Result<Pattern, TopicError> {
    let w = segment("system.<worker>.>", worker)?;
    Pattern::new(format!("system.{w}.>"))
}

// ---- decky --------------------------------------------------------------

/// `decky.<id>.state`: current shape of a decky after a successful deploy.
pub fn decky_state(id: &str) -> Result<Topic, TopicError> {
    let d = segment("decky.<id>.state", id)?;
    topic(format!("decky.{d}.state"))
}

/// `decky.<id>.mutation`: one service-set transition.
pub fn decky_mutation(id: &str) -> Result<Topic, TopicError> {
    let d = segment("decky.<id>.mutation", id)?;
    topic(format!("decky.{d}.mutation"))
}

/// `decky.<id>.mutate_request`: ask the mutator to mutate this decky now.
pub fn decky_mutate_request(id: &str) -> Result<Topic, TopicError> {
    let d = segment("decky.<id>.mutate_request", id)?;
    topic(format!("decky.{d}.mutate_request"))
}

/// `decky.<id>.traffic`: a passive fingerprint the sniffer saw on traffic to this decky.
pub fn decky_traffic(id: &str) -> Result<Topic, TopicError> {
    let d = segment("decky.<id>.traffic", id)?;
    topic(format!("decky.{d}.traffic"))
}

/// `decky.<id>.>`: everything about one decky.
pub fn decky_events(id: &str) -> Result<Pattern, TopicError> {
    let d = segment("decky.<id>.>", id)?;
    Pattern::new(format!("decky.{d}.>"))
}

// ---- topology -----------------------------------------------------------

/// The states a topology mutation goes through, each its own topic leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MutationState {
    Enqueued,
    Applying,
    Applied,
    Failed,
}

impl MutationState {
    pub const ALL: [MutationState; 4] =
        [MutationState::Enqueued, MutationState::Applying, MutationState::Applied, MutationState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            MutationState::Enqueued => "enqueued",
            MutationState::Applying => "applying",
            MutationState::Applied => "applied",
            MutationState::Failed => "failed",
        }
    }
}

impl fmt::Display for MutationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parsing a state name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}; accepted: {accepted}")]
pub struct UnknownName {
    pub kind: &'static str,
    pub value: String,
    pub accepted: &'static str,
}

impl FromStr for MutationState {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        MutationState::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| UnknownName {
            kind: "mutation state",
            value: s.into(),
            accepted: "enqueued, applying, applied, failed",
        })
    }
}

/// The status of a topology as a whole (payload of `topology.<id>.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TopologyStatus {
    Pending,
    Deploying,
    Active,
    Degraded,
    Failed,
}

impl TopologyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TopologyStatus::Pending => "pending",
            TopologyStatus::Deploying => "deploying",
            TopologyStatus::Active => "active",
            TopologyStatus::Degraded => "degraded",
            TopologyStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for TopologyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `topology.<id>.mutation.<state>`.
pub fn topology_mutation(id: &str, state: MutationState) -> Result<Topic, TopicError> {
    let t = segment("topology.<id>.mutation.<state>", id)?;
    topic(format!("topology.{t}.mutation.{state}"))
}

/// `topology.<id>.status`.
pub fn topology_status(id: &str) -> Result<Topic, TopicError> {
    let t = segment("topology.<id>.status", id)?;
    topic(format!("topology.{t}.status"))
}

/// `topology.<id>.>`: everything about one topology.
pub fn topology_events(id: &str) -> Result<Pattern, TopicError> {
    let t = segment("topology.<id>.>", id)?;
    Pattern::new(format!("topology.{t}.>"))
}

/// `topology.*.mutation.<state>`: one transition across all topologies.
pub fn topology_mutation_all(state: MutationState) -> Pattern {
    pattern(&format!("topology.*.mutation.{state}"))
}

// ---- fixed topics and patterns as typed values --------------------------

/// A constant of this module as a [`Topic`]. Panics only on a typo in this
/// file's constants, which the tests below rule out.
pub fn fixed(topic: &'static str) -> Topic {
    Topic::new(topic).expect("topic constants are valid topics")
}

/// A constant of this module as a [`Pattern`] (see [`fixed`]).
pub fn pattern(pattern: &str) -> Pattern {
    Pattern::new(pattern).expect("pattern constants are valid patterns")
}

pub fn system_health_all() -> Pattern {
    pattern(SYSTEM_HEALTH_ALL)
}

pub fn system_control_all() -> Pattern {
    pattern(SYSTEM_CONTROL_ALL)
}

pub fn decky_mutate_request_all() -> Pattern {
    pattern(DECKY_MUTATE_REQUEST_ALL)
}

pub fn topology_mutation_enqueued_all() -> Pattern {
    pattern(TOPOLOGY_MUTATION_ENQUEUED_ALL)
}

pub fn attacker_all() -> Pattern {
    pattern(ATTACKER_ALL)
}

pub fn identity_all() -> Pattern {
    pattern(IDENTITY_ALL)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BAD_SEGMENTS: &[&str] =
        &["", ".", "a.b", "*", ">", "a*", "b>", " ", "a b", "a\tb", "a\nb", " a", "a ", "d\u{e9}cky", "\u{7f}"];
    const GOOD_SEGMENTS: &[&str] = &["d1", "sniffer", "decky-01", "t_9", "A", "10-0-0-5", "x:y", "a/b"];

    type Builder = fn(&str) -> Result<Topic, TopicError>;

    fn builders() -> Vec<(&'static str, Builder)> {
        vec![
            ("system.{}.health", system_health as Builder),
            ("system.{}.control", system_control),
            ("decky.{}.state", decky_state),
            ("decky.{}.mutation", decky_mutation),
            ("decky.{}.mutate_request", decky_mutate_request),
            ("topology.{}.status", topology_status),
            ("topology.{}.mutation.enqueued", |id| topology_mutation(id, MutationState::Enqueued)),
            ("topology.{}.mutation.applying", |id| topology_mutation(id, MutationState::Applying)),
            ("topology.{}.mutation.applied", |id| topology_mutation(id, MutationState::Applied)),
            ("topology.{}.mutation.failed", |id| topology_mutation(id, MutationState::Failed)),
        ]
    }

    #[test]
    fn builders_accept_good_segments() {
        for (template, build) in builders() {
            for seg in GOOD_SEGMENTS {
                let t = build(seg).unwrap_or_else(|e| panic!("{template} refused {seg:?}: {e}"));
                assert_eq!(t.as_str(), template.replace("{}", seg));
            }
        }
    }

    #[test]
    fn builders_refuse_bad_segments() {
        for (template, build) in builders() {
            for seg in BAD_SEGMENTS {
                assert!(build(seg).is_err(), "{template} accepted {seg:?}");
            }
        }
        for seg in BAD_SEGMENTS {
            assert!(topology_events(seg).is_err(), "topology_events accepted {seg:?}");
            assert!(decky_events(seg).is_err(), "decky_events accepted {seg:?}");
            assert!(system_worker_all(seg).is_err(), "system_worker_all accepted {seg:?}");
            assert!(validate_segment(seg).is_err());
        }
    }

    #[test]
    fn refusals_name_the_template_or_value() {
        let e = decky_state("").unwrap_err().to_string();
        assert!(e.contains("decky.<id>.state"), "{e}");
        let e = system_health("a.b").unwrap_err().to_string();
        assert!(e.contains("system.<worker>.health") && e.contains("a.b"), "{e}");
    }

    #[test]
    fn patterns_match_their_builders() {
        assert!(system_health_all().matches(system_health("sniffer").unwrap().as_str()));
        assert!(system_health_all().matches(BUS_HEALTH));
        assert!(system_control_all().matches(system_control("prober").unwrap().as_str()));
        assert!(!system_health_all().matches(system_control("prober").unwrap().as_str()));
        assert!(decky_mutate_request_all().matches(decky_mutate_request("d1").unwrap().as_str()));
        let enq = topology_mutation("t1", MutationState::Enqueued).unwrap();
        assert!(topology_mutation_enqueued_all().matches(enq.as_str()));
        assert!(topology_mutation_all(MutationState::Enqueued).matches(enq.as_str()));
        assert!(!topology_mutation_enqueued_all()
            .matches(topology_mutation("t1", MutationState::Applied).unwrap().as_str()));
        let ev = topology_events("t1").unwrap();
        assert!(ev.matches(enq.as_str()));
        assert!(ev.matches(topology_status("t1").unwrap().as_str()));
        assert!(!ev.matches(topology_status("t2").unwrap().as_str()));
        assert!(!ev.matches("topology.t1"));
        assert!(decky_events("d1").unwrap().matches(decky_state("d1").unwrap().as_str()));
        assert!(system_worker_all("api").unwrap().matches(system_control("api").unwrap().as_str()));
        assert!(attacker_all().matches(ATTACKER_SESSION_ENDED));
        assert!(identity_all().matches(IDENTITY_OBSERVATION_LINKED));
    }

    #[test]
    fn constants_are_valid() {
        for t in [
            BUS_HEALTH,
            ATTACKER_OBSERVED,
            ATTACKER_SCORED,
            ATTACKER_SESSION_STARTED,
            ATTACKER_SESSION_ENDED,
            ATTACKER_FINGERPRINTED,
            ATTACKER_ARTIFACT,
            IDENTITY_FORMED,
            IDENTITY_OBSERVATION_LINKED,
            IDENTITY_MERGED,
            IDENTITY_UNMERGED,
        ] {
            fixed(t);
        }
        assert_eq!(system_health(BUS_WORKER).unwrap().as_str(), BUS_HEALTH);
        for p in [
            SYSTEM_HEALTH_ALL,
            SYSTEM_CONTROL_ALL,
            SYSTEM_ALL,
            DECKY_STATE_ALL,
            DECKY_MUTATION_ALL,
            DECKY_MUTATE_REQUEST_ALL,
            DECKY_ALL,
            TOPOLOGY_STATUS_ALL,
            TOPOLOGY_MUTATION_ALL,
            TOPOLOGY_MUTATION_ENQUEUED_ALL,
            TOPOLOGY_ALL,
            ATTACKER_ALL,
            IDENTITY_ALL,
        ] {
            pattern(p);
        }
    }

    #[test]
    fn mutation_state_names() {
        for s in MutationState::ALL {
            assert_eq!(s.as_str().parse::<MutationState>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        let e = "done".parse::<MutationState>().unwrap_err().to_string();
        assert!(e.contains("done") && e.contains("enqueued, applying, applied, failed"), "{e}");
        assert_eq!(serde_json::to_value(TopologyStatus::Degraded).unwrap(), serde_json::json!("degraded"));
    }
}
