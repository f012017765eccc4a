//! Topology domain rules: the status state machine, the decky shape and the
//! mutation ops with their validation.
//!
//! Everything here is pure (no I/O) so the same rules guard the API edge
//! (refuse bad input before anything is queued), the store (re-check inside
//! the write transaction) and the mutator (apply a claimed op). Errors name
//! the decky, service or status at fault so a 400/409 tells the operator
//! exactly what to fix.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use crate::catalogue::is_known_service;

/// Longest decky name accepted; keeps names usable as container names and topic tokens.
pub const MAX_DECKY_NAME_LEN: usize = 63;
/// Longest topology name accepted.
pub const MAX_TOPOLOGY_NAME_LEN: usize = 128;

/// Lifecycle of a topology. See [`TopologyStatus::allowed_next`] for the edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TopologyStatus {
    Pending,
    Deploying,
    Active,
    Degraded,
    Failed,
}

impl TopologyStatus {
    pub const ALL: [TopologyStatus; 5] = [
        TopologyStatus::Pending,
        TopologyStatus::Deploying,
        TopologyStatus::Active,
        TopologyStatus::Degraded,
        TopologyStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TopologyStatus::Pending => "pending",
            TopologyStatus::Deploying => "deploying",
            TopologyStatus::Active => "active",
            TopologyStatus::Degraded => "degraded",
            TopologyStatus::Failed => "failed",
        }
    }

    /// The statuses this one may move to.
    ///
    /// - a new topology is only ever deployed (`pending -> deploying`);
    /// - a deploy ends `active` or `failed`;
    /// - a failed mutation degrades an active topology, and a later fix
    ///   (healer, operator) brings it back to `active`;
    /// - any settled topology (active, degraded, failed) may be redeployed.
    pub fn allowed_next(self) -> &'static [TopologyStatus] {
        use TopologyStatus::*;
        match self {
            Pending => &[Deploying],
            Deploying => &[Active, Failed],
            Active => &[Degraded, Deploying],
            Degraded => &[Active, Deploying],
            Failed => &[Deploying],
        }
    }

    pub fn can_become(self, next: TopologyStatus) -> bool {
        self.allowed_next().contains(&next)
    }

    /// Check the edge `self -> next`, as a typed error when refused.
    pub fn transition(self, next: TopologyStatus) -> Result<TopologyStatus, TransitionError> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(TransitionError { from: self, to: next })
        }
    }

    /// Mutations are queued only against a deployed topology.
    pub fn accepts_mutations(self) -> bool {
        matches!(self, TopologyStatus::Active | TopologyStatus::Degraded)
    }
}

impl fmt::Display for TopologyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TopologyStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TopologyStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownValue { kind: "topology status", value: s.to_string() })
    }
}

/// A refused status change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("topology cannot go from {from} to {to} (allowed from {from}: {allowed})", allowed = allowed_list(*.from))]
pub struct TransitionError {
    pub from: TopologyStatus,
    pub to: TopologyStatus,
}

fn allowed_list(from: TopologyStatus) -> String {
    from.allowed_next().iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

/// A string that names none of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

/// Lifecycle of one queued mutation: `pending -> applying -> applied | failed`
/// (a pending row may also fail directly, e.g. when its topology goes away).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MutationState {
    Pending,
    Applying,
    Applied,
    Failed,
}

impl MutationState {
    pub const ALL: [MutationState; 4] =
        [MutationState::Pending, MutationState::Applying, MutationState::Applied, MutationState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            MutationState::Pending => "pending",
            MutationState::Applying => "applying",
            MutationState::Applied => "applied",
            MutationState::Failed => "failed",
        }
    }

    /// Queued or being applied: what a live view calls "in flight".
    pub fn is_in_flight(self) -> bool {
        matches!(self, MutationState::Pending | MutationState::Applying)
    }
}

impl fmt::Display for MutationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MutationState {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MutationState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownValue { kind: "mutation state", value: s.to_string() })
    }
}

/// One decky of a topology: a name and the services it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decky {
    pub name: String,
    pub services: Vec<String>,
}

/// Why a topology definition or a mutation was refused (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("unknown op {0:?} (expected add_decky, remove_decky or set_services)")]
    UnknownOp(String),
    #[error("invalid payload for {op}: {message}")]
    Payload { op: &'static str, message: String },
    #[error("invalid topology name {0:?}: must be 1 to 128 characters")]
    TopologyName(String),
    #[error("invalid decky name {0:?}: use 1 to 63 letters, digits, '_' or '-', starting with a letter or digit")]
    DeckyName(String),
    #[error("decky {decky:?}: unknown service {service:?}")]
    UnknownService { decky: String, service: String },
    #[error("decky {decky:?}: service {service:?} listed twice")]
    DuplicateService { decky: String, service: String },
    #[error("decky {0:?}: needs at least one service")]
    NoServices(String),
    #[error("decky {0:?} already exists in this topology")]
    DuplicateDecky(String),
    #[error("no decky named {0:?} in this topology")]
    MissingDecky(String),
}

/// A decky name is used as a container name and as a topic token
/// (`decky.<name>.state`), so it must be short and free of `.`, `*`, `>`.
pub fn validate_decky_name(name: &str) -> Result<(), ValidationError> {
    let mut chars = name.chars();
    let ok = match chars.next() {
        Some(first) => {
            first.is_ascii_alphanumeric()
                && name.len() <= MAX_DECKY_NAME_LEN
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ValidationError::DeckyName(name.to_string()))
    }
}

/// Services must be non-empty, known to the catalogue and listed once.
pub fn validate_services(decky: &str, services: &[String]) -> Result<(), ValidationError> {
    if services.is_empty() {
        return Err(ValidationError::NoServices(decky.to_string()));
    }
    let mut seen = HashSet::new();
    for service in services {
        if !is_known_service(service) {
            return Err(ValidationError::UnknownService { decky: decky.to_string(), service: service.clone() });
        }
        if !seen.insert(service.as_str()) {
            return Err(ValidationError::DuplicateService { decky: decky.to_string(), service: service.clone() });
        }
    }
    Ok(())
}

pub fn validate_topology_name(name: &str) -> Result<(), ValidationError> {
    if name.trim().is_empty() || name.chars().count() > MAX_TOPOLOGY_NAME_LEN {
        return Err(ValidationError::TopologyName(name.to_string()));
    }
    Ok(())
}

/// Validate a whole new topology: its name, each decky, and unique decky names.
pub fn validate_topology(name: &str, deckies: &[Decky]) -> Result<(), ValidationError> {
    validate_topology_name(name)?;
    let mut names = HashSet::new();
    for decky in deckies {
        validate_decky_name(&decky.name)?;
        validate_services(&decky.name, &decky.services)?;
        if !names.insert(decky.name.as_str()) {
            return Err(ValidationError::DuplicateDecky(decky.name.clone()));
        }
    }
    Ok(())
}

/// A change to a topology's deckies, as queued for the mutator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MutationOp {
    AddDecky { name: String, services: Vec<String> },
    RemoveDecky { name: String },
    SetServices { decky: String, services: Vec<String> },
}

// Payload shapes, one per op. `deny_unknown_fields` turns a typo such as
// `service` for `services` into a 400 instead of a silently empty list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddDeckyPayload {
    name: String,
    services: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveDeckyPayload {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetServicesPayload {
    decky: String,
    services: Vec<String>,
}

fn payload<T: serde::de::DeserializeOwned>(op: &'static str, value: &Value) -> Result<T, ValidationError> {
    T::deserialize(value).map_err(|e| ValidationError::Payload { op, message: e.to_string() })
}

impl MutationOp {
    pub const NAMES: [&'static str; 3] = ["add_decky", "remove_decky", "set_services"];

    /// Parse an op name and its JSON payload, checking the payload's own
    /// rules (names, catalogue, duplicates) but not the topology.
    pub fn parse(op: &str, value: &Value) -> Result<MutationOp, ValidationError> {
        let parsed = match op {
            "add_decky" => {
                let p: AddDeckyPayload = payload("add_decky", value)?;
                MutationOp::AddDecky { name: p.name, services: p.services }
            }
            "remove_decky" => {
                let p: RemoveDeckyPayload = payload("remove_decky", value)?;
                MutationOp::RemoveDecky { name: p.name }
            }
            "set_services" => {
                let p: SetServicesPayload = payload("set_services", value)?;
                MutationOp::SetServices { decky: p.decky, services: p.services }
            }
            other => return Err(ValidationError::UnknownOp(other.to_string())),
        };
        parsed.check_shape()?;
        Ok(parsed)
    }

    fn check_shape(&self) -> Result<(), ValidationError> {
        match self {
            MutationOp::AddDecky { name, services } => {
                validate_decky_name(name)?;
                validate_services(name, services)
            }
            MutationOp::RemoveDecky { name } => validate_decky_name(name),
            MutationOp::SetServices { decky, services } => {
                validate_decky_name(decky)?;
                validate_services(decky, services)
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            MutationOp::AddDecky { .. } => "add_decky",
            MutationOp::RemoveDecky { .. } => "remove_decky",
            MutationOp::SetServices { .. } => "set_services",
        }
    }

    /// The decky this op touches.
    pub fn decky(&self) -> &str {
        match self {
            MutationOp::AddDecky { name, .. } | MutationOp::RemoveDecky { name } => name,
            MutationOp::SetServices { decky, .. } => decky,
        }
    }

    /// The payload as stored and as shown by the API.
    pub fn payload(&self) -> Value {
        match self {
            MutationOp::AddDecky { name, services } => serde_json::json!({ "name": name, "services": services }),
            MutationOp::RemoveDecky { name } => serde_json::json!({ "name": name }),
            MutationOp::SetServices { decky, services } => serde_json::json!({ "decky": decky, "services": services }),
        }
    }

    /// Check this op against `deckies` and, if it fits, apply it in place.
    /// On error `deckies` is unchanged.
    pub fn apply(&self, deckies: &mut Vec<Decky>) -> Result<(), ValidationError> {
        self.check_shape()?;
        let position = deckies.iter().position(|d| d.name == self.decky());
        match (self, position) {
            (MutationOp::AddDecky { name, .. }, Some(_)) => Err(ValidationError::DuplicateDecky(name.clone())),
            (MutationOp::AddDecky { name, services }, None) => {
                deckies.push(Decky { name: name.clone(), services: services.clone() });
                Ok(())
            }
            (MutationOp::RemoveDecky { .. }, Some(i)) => {
                deckies.remove(i);
                Ok(())
            }
            (MutationOp::SetServices { services, .. }, Some(i)) => {
                deckies[i].services = services.clone();
                Ok(())
            }
            (MutationOp::RemoveDecky { .. } | MutationOp::SetServices { .. }, None) => {
                Err(ValidationError::MissingDecky(self.decky().to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decky(name: &str, services: &[&str]) -> Decky {
        Decky { name: name.into(), services: services.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn state_machine_allows_only_listed_edges() {
        use TopologyStatus::*;
        let allowed = [
            (Pending, Deploying),
            (Deploying, Active),
            (Deploying, Failed),
            (Active, Degraded),
            (Active, Deploying),
            (Degraded, Active),
            (Degraded, Deploying),
            (Failed, Deploying),
        ];
        for from in TopologyStatus::ALL {
            for to in TopologyStatus::ALL {
                let expected = allowed.contains(&(from, to));
                assert_eq!(from.can_become(to), expected, "{from} -> {to}");
                assert_eq!(from.transition(to).is_ok(), expected, "{from} -> {to}");
            }
        }
        let err = Pending.transition(Active).unwrap_err();
        assert_eq!(err, TransitionError { from: Pending, to: Active });
        assert!(err.to_string().contains("from pending to active"), "{err}");
    }

    #[test]
    fn statuses_round_trip_through_strings() {
        for st in TopologyStatus::ALL {
            assert_eq!(st.as_str().parse::<TopologyStatus>().unwrap(), st);
            assert_eq!(serde_json::to_value(st).unwrap(), json!(st.as_str()));
        }
        for st in MutationState::ALL {
            assert_eq!(st.as_str().parse::<MutationState>().unwrap(), st);
        }
        assert!("ACTIVE".parse::<TopologyStatus>().is_err());
        assert!("done".parse::<MutationState>().is_err());
    }

    #[test]
    fn only_deployed_topologies_accept_mutations() {
        let accepting: Vec<_> = TopologyStatus::ALL.into_iter().filter(|s| s.accepts_mutations()).collect();
        assert_eq!(accepting, vec![TopologyStatus::Active, TopologyStatus::Degraded]);
    }

    #[test]
    fn parse_checks_op_and_payload_shape() {
        assert_eq!(
            MutationOp::parse("add_decky", &json!({"name": "web1", "services": ["ssh", "http"]})).unwrap(),
            MutationOp::AddDecky { name: "web1".into(), services: vec!["ssh".into(), "http".into()] }
        );
        assert_eq!(MutationOp::parse("explode", &json!({})), Err(ValidationError::UnknownOp("explode".into())));
        let missing = MutationOp::parse("add_decky", &json!({"name": "web1"})).unwrap_err();
        assert!(missing.to_string().contains("services"), "{missing}");
        let typo = MutationOp::parse("remove_decky", &json!({"name": "a", "nmae": "b"})).unwrap_err();
        assert!(matches!(typo, ValidationError::Payload { op: "remove_decky", .. }), "{typo}");
        let wrong_type = MutationOp::parse("set_services", &json!({"decky": "a", "services": "ssh"})).unwrap_err();
        assert!(matches!(wrong_type, ValidationError::Payload { op: "set_services", .. }));
        assert_eq!(
            MutationOp::parse("set_services", &json!({"decky": "a", "services": ["ssh", "gopher"]})),
            Err(ValidationError::UnknownService { decky: "a".into(), service: "gopher".into() })
        );
        assert_eq!(
            MutationOp::parse("set_services", &json!({"decky": "a", "services": ["ssh", "ssh"]})),
            Err(ValidationError::DuplicateService { decky: "a".into(), service: "ssh".into() })
        );
        assert_eq!(
            MutationOp::parse("add_decky", &json!({"name": "a", "services": []})),
            Err(ValidationError::NoServices("a".into()))
        );
        assert_eq!(
            MutationOp::parse("remove_decky", &json!({"name": "a.b"})),
            Err(ValidationError::DeckyName("a.b".into()))
        );
    }

    #[test]
    fn payload_round_trips_through_parse() {
        let ops = [
            MutationOp::AddDecky { name: "a".into(), services: vec!["ssh".into()] },
            MutationOp::RemoveDecky { name: "a".into() },
            MutationOp::SetServices { decky: "a".into(), services: vec!["rdp".into(), "smb".into()] },
        ];
        for op in ops {
            assert_eq!(MutationOp::parse(op.name(), &op.payload()).unwrap(), op);
        }
    }

    #[test]
    fn apply_checks_against_the_topology() {
        let mut deckies = vec![decky("a", &["ssh"]), decky("b", &["http"])];

        let dup = MutationOp::AddDecky { name: "a".into(), services: vec!["ftp".into()] };
        assert_eq!(dup.apply(&mut deckies), Err(ValidationError::DuplicateDecky("a".into())));
        let missing = MutationOp::RemoveDecky { name: "zz".into() };
        assert_eq!(missing.apply(&mut deckies), Err(ValidationError::MissingDecky("zz".into())));
        let missing_set = MutationOp::SetServices { decky: "zz".into(), services: vec!["ssh".into()] };
        assert_eq!(missing_set.apply(&mut deckies), Err(ValidationError::MissingDecky("zz".into())));
        assert_eq!(deckies, vec![decky("a", &["ssh"]), decky("b", &["http"])], "refused ops change nothing");

        MutationOp::AddDecky { name: "c".into(), services: vec!["ftp".into()] }.apply(&mut deckies).unwrap();
        MutationOp::RemoveDecky { name: "a".into() }.apply(&mut deckies).unwrap();
        MutationOp::SetServices { decky: "b".into(), services: vec!["https".into()] }.apply(&mut deckies).unwrap();
        assert_eq!(deckies, vec![decky("b", &["https"]), decky("c", &["ftp"])]);
    }

    #[test]
    fn topology_validation_names_the_fault() {
        assert!(validate_topology("lab", &[decky("a", &["ssh"]), decky("b", &["ssh"])]).is_ok());
        assert!(validate_topology("lab", &[]).is_ok());
        assert_eq!(validate_topology("  ", &[]), Err(ValidationError::TopologyName("  ".into())));
        assert_eq!(
            validate_topology("lab", &[decky("a", &["ssh"]), decky("a", &["ftp"])]),
            Err(ValidationError::DuplicateDecky("a".into()))
        );
        assert_eq!(
            validate_topology("lab", &[decky("a", &["nope"])]),
            Err(ValidationError::UnknownService { decky: "a".into(), service: "nope".into() })
        );
        for bad in ["", "-a", "a b", "a.b", "a*", "A>", &"x".repeat(64)] {
            assert_eq!(validate_decky_name(bad), Err(ValidationError::DeckyName(bad.to_string())), "{bad:?}");
        }
        assert!(validate_decky_name(&"x".repeat(63)).is_ok());
    }
}
