//! The prober's publish helper for `attacker.fingerprinted` (SPEC §4).
//!
//! One event per successful probe; the event type is the probe family so a
//! subscriber can tell JARM from HASSH from TCP fingerprints without
//! looking into the payload, and the payload always carries
//! `{attacker_ip, port, hash}` plus whatever the probe adds.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::bus::{Bus, BusError};
use crate::topics::{UnknownName, ATTACKER_FINGERPRINTED};

/// The probe families the prober runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeFamily {
    /// TLS server fingerprint.
    Jarm,
    /// SSH key-exchange fingerprint.
    Hassh,
    /// TCP/IP stack fingerprint.
    Tcpfp,
}

impl ProbeFamily {
    pub const ALL: [ProbeFamily; 3] = [ProbeFamily::Jarm, ProbeFamily::Hassh, ProbeFamily::Tcpfp];

    pub fn as_str(self) -> &'static str {
        match self {
            ProbeFamily::Jarm => "jarm",
            ProbeFamily::Hassh => "hassh",
            ProbeFamily::Tcpfp => "tcpfp",
        }
    }
}

impl fmt::Display for ProbeFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProbeFamily {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        ProbeFamily::ALL.into_iter().find(|f| f.as_str() == s).ok_or_else(|| UnknownName {
            kind: "probe family",
            value: s.into(),
            accepted: "jarm, hassh, tcpfp",
        })
    }
}

/// The payload of one fingerprint event. `extra` keys are added, but never
/// replace the three base keys: consumers index on those.
pub fn fingerprint_payload(attacker_ip: IpAddr, port: u16, hash: &str, extra: Option<Map<String, Value>>) -> Value {
    let mut payload = extra.unwrap_or_default();
    payload.insert("attacker_ip".into(), Value::String(attacker_ip.to_string()));
    payload.insert("port".into(), Value::from(port));
    payload.insert("hash".into(), Value::String(hash.into()));
    Value::Object(payload)
}

/// Publish one successful probe on `attacker.fingerprinted`, event type =
/// the family.
pub async fn publish_fingerprint(
    bus: &dyn Bus,
    family: ProbeFamily,
    attacker_ip: IpAddr,
    port: u16,
    hash: &str,
    extra: Option<Map<String, Value>>,
) -> Result<(), BusError> {
    bus.publish(ATTACKER_FINGERPRINTED, family.as_str(), fingerprint_payload(attacker_ip, port, hash, extra)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payload_keeps_base_keys_over_extra() {
        let extra = json!({"hash": "spoofed", "rtt_ms": 12}).as_object().cloned();
        let p = fingerprint_payload("10.0.0.5".parse().unwrap(), 443, "abc", extra);
        assert_eq!(p, json!({"attacker_ip": "10.0.0.5", "port": 443, "hash": "abc", "rtt_ms": 12}));
    }

    #[test]
    fn family_names() {
        for f in ProbeFamily::ALL {
            assert_eq!(f.as_str().parse::<ProbeFamily>().unwrap(), f);
        }
        let e = "ja3".parse::<ProbeFamily>().unwrap_err().to_string();
        assert!(e.contains("ja3") && e.contains("jarm, hassh, tcpfp"), "{e}");
    }
}
