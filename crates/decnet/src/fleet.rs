//! `fleet.toml`: the operator's description of the deckies to deploy.
//!
//! ```toml
//! interval = 30                 # fleet-wide default, minutes
//!
//! [[decky]]
//! name = "web-01"
//! archetype = "linux-server"    # services drawn from this pool
//!
//! [[decky]]
//! name = "db-01"
//! services = ["mysql", "ssh"]   # explicit first shape
//! interval = 10                 # overrides the default
//! address = "127.1.0.2"         # where the native driver's listeners bind
//!
//! [decky.persona]               # any persona field, over the derived one
//! release = "centos-7"
//! cpu_count = 8
//! ```
//!
//! The whole file is checked before anything is deployed: an unknown
//! service or archetype, a duplicate or malformed name is an error that
//! names the line, so a typo never leaves a half-deployed fleet.

use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;
use toml::Spanned;

use crate::catalogue;

/// Default mutation interval when neither the decky nor the fleet sets one.
pub const DEFAULT_INTERVAL_MINUTES: u32 = 30;

/// One decky as the fleet file describes it, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeckySpec {
    pub name: String,
    pub archetype: Option<String>,
    /// Explicit first services; empty means "draw from the archetype".
    pub services: Vec<String>,
    pub interval_minutes: u32,
    /// The decky's own IP address (native driver); `None` lets the driver
    /// assign one.
    pub address: Option<std::net::IpAddr>,
    /// Persona fields that replace the derived ones (`[decky.persona]`),
    /// as a JSON object; checked against a derived persona at load.
    pub persona: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    pub default_interval_minutes: u32,
    pub deckies: Vec<DeckySpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot read fleet file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}:{line}: {message}")]
    Invalid { origin: String, line: usize, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    interval: Option<Spanned<u32>>,
    #[serde(default)]
    decky: Vec<Spanned<RawDecky>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecky {
    name: Spanned<String>,
    archetype: Option<Spanned<String>>,
    services: Option<Vec<Spanned<String>>>,
    interval: Option<Spanned<u32>>,
    address: Option<Spanned<String>>,
    persona: Option<Spanned<toml::Table>>,
}

impl Fleet {
    /// Read and validate a fleet file.
    pub fn load(path: &Path) -> Result<Fleet, FleetError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| FleetError::Read { path: path.display().to_string(), source })?;
        Fleet::parse(&text, &path.display().to_string())
    }

    /// Parse and validate fleet TOML; `origin` (usually the file name)
    /// prefixes error messages as `origin:line: message`.
    pub fn parse(text: &str, origin: &str) -> Result<Fleet, FleetError> {
        let invalid = |offset: usize, message: String| FleetError::Invalid {
            origin: origin.to_string(),
            line: line_of(text, offset),
            message,
        };
        let raw: RawFleet = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            invalid(offset, e.message().to_string())
        })?;

        let default_interval = match raw.interval {
            Some(i) if *i.get_ref() == 0 => {
                return Err(invalid(i.span().start, "interval must be at least 1 minute".into()))
            }
            Some(i) => i.into_inner(),
            None => DEFAULT_INTERVAL_MINUTES,
        };

        let mut seen = HashSet::new();
        let mut addresses = HashSet::new();
        let mut deckies = Vec::with_capacity(raw.decky.len());
        for entry in raw.decky {
            let entry_start = entry.span().start;
            let d = entry.into_inner();
            let name = d.name.get_ref().clone();
            // The same rule as topology deckies: the name is a topic segment,
            // a compose service name and the syslog HOSTNAME of its events.
            if crate::topology::validate_decky_name(&name).is_err() {
                return Err(invalid(
                    d.name.span().start,
                    format!(
                        "decky name {name:?} must start with a letter or digit and use only letters, digits, \
                         '-' and '_' (at most {} characters)",
                        crate::topology::MAX_DECKY_NAME_LEN
                    ),
                ));
            }
            if !seen.insert(name.clone()) {
                return Err(invalid(d.name.span().start, format!("decky {name:?} is declared twice")));
            }
            if let Some(a) = &d.archetype {
                if catalogue::archetype(a.get_ref()).is_none() {
                    let known: Vec<&str> = catalogue::ARCHETYPES.iter().map(|a| a.name).collect();
                    return Err(invalid(
                        a.span().start,
                        format!("unknown archetype {:?} (known: {})", a.get_ref(), known.join(", ")),
                    ));
                }
            }
            let mut services = Vec::new();
            for s in d.services.unwrap_or_default() {
                if !catalogue::is_known_service(s.get_ref()) {
                    return Err(invalid(
                        s.span().start,
                        format!("unknown service {:?} for decky {name:?}", s.get_ref()),
                    ));
                }
                if !services.contains(s.get_ref()) {
                    services.push(s.into_inner());
                }
            }
            if services.is_empty() && d.archetype.is_none() {
                return Err(invalid(
                    entry_start,
                    format!("decky {name:?} needs an archetype or a non-empty services list"),
                ));
            }
            let interval_minutes = match d.interval {
                Some(i) if *i.get_ref() == 0 => {
                    return Err(invalid(i.span().start, "interval must be at least 1 minute".into()))
                }
                Some(i) => i.into_inner(),
                None => default_interval,
            };
            let address = match &d.address {
                None => None,
                Some(a) => {
                    let ip: std::net::IpAddr = a.get_ref().parse().map_err(|_| {
                        invalid(
                            a.span().start,
                            format!("address {:?} of decky {name:?} is not an IP address", a.get_ref()),
                        )
                    })?;
                    // Two deckies on one address would fight over its ports.
                    if !addresses.insert(ip) {
                        return Err(invalid(a.span().start, format!("address {ip} is given to two deckies")));
                    }
                    Some(ip)
                }
            };
            let archetype = d.archetype.map(Spanned::into_inner);
            let persona = match d.persona {
                None => None,
                Some(table) => {
                    let at = table.span().start;
                    let value = serde_json::to_value(table.into_inner())
                        .map_err(|e| invalid(at, format!("persona of decky {name:?}: {e}")))?;
                    // Applied to a derived persona now, so a typo in a field
                    // name or a wrong type is refused before anything deploys.
                    crate::decky::Persona::derive(&name, archetype.as_deref(), address, 0)
                        .with_overrides(&value)
                        .map_err(|e| invalid(at, e.to_string()))?;
                    Some(value)
                }
            };
            deckies.push(DeckySpec { name, archetype, services, interval_minutes, address, persona });
        }
        Ok(Fleet { default_interval_minutes: default_interval, deckies })
    }
}

/// 1-based line number of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
interval = 15

[[decky]]
name = "web-01"
archetype = "linux-server"

[[decky]]
name = "db-01"
services = ["mysql", "ssh"]
interval = 5
"#;

    #[test]
    fn parses_deckies_with_default_and_own_intervals() {
        let fleet = Fleet::parse(GOOD, "fleet.toml").unwrap();
        assert_eq!(fleet.default_interval_minutes, 15);
        assert_eq!(fleet.deckies.len(), 2);
        assert_eq!(fleet.deckies[0].archetype.as_deref(), Some("linux-server"));
        assert_eq!(fleet.deckies[0].interval_minutes, 15);
        assert_eq!(fleet.deckies[1].services, vec!["mysql", "ssh"]);
        assert_eq!(fleet.deckies[1].interval_minutes, 5);
    }

    fn error_of(text: &str) -> String {
        Fleet::parse(text, "fleet.toml").unwrap_err().to_string()
    }

    #[test]
    fn unknown_service_names_its_line() {
        let e = error_of("[[decky]]\nname = \"a\"\nservices = [\"ssh\",\n  \"gopher\"]\n");
        assert!(e.starts_with("fleet.toml:4:"), "{e}");
        assert!(e.contains("gopher"), "{e}");
    }

    #[test]
    fn unknown_archetype_names_its_line() {
        let e = error_of("interval = 3\n[[decky]]\nname = \"a\"\narchetype = \"mainframe\"\n");
        assert!(e.starts_with("fleet.toml:4:"), "{e}");
        assert!(e.contains("mainframe"), "{e}");
    }

    fn toml_string(s: &str) -> String {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }

    #[test]
    fn duplicates_bad_names_missing_shape_and_typos_are_errors() {
        assert!(error_of(
            "[[decky]]\nname=\"a\"\narchetype=\"iot-device\"\n[[decky]]\nname=\"a\"\narchetype=\"iot-device\"\n"
        )
        .starts_with("fleet.toml:5:"));
        for bad in ["a.b", "a b", "-a", "web/01", "café", "a\\\"b", ""] {
            let toml = format!("[[decky]]\nname={}\narchetype=\"iot-device\"\n", toml_string(bad));
            let err = error_of(&toml);
            assert!(
                err.starts_with("fleet.toml:2:") && err.contains("must start with a letter or digit"),
                "{bad:?}: {err}"
            );
        }
        assert!(error_of("[[decky]]\nname=\"a\"\n").contains("needs an archetype"));
        assert!(error_of("[[decky]]\nname=\"a\"\narchtype=\"iot-device\"\n").starts_with("fleet.toml:3:"));
        assert!(error_of("interval = 0\n").contains("at least 1 minute"));
    }

    #[test]
    fn addresses_parse_and_bad_or_shared_ones_name_their_line() {
        let fleet =
            Fleet::parse("[[decky]]\nname=\"a\"\narchetype=\"iot-device\"\naddress=\"127.1.0.7\"\n", "f").unwrap();
        assert_eq!(fleet.deckies[0].address, Some("127.1.0.7".parse().unwrap()));
        let e = error_of("[[decky]]\nname=\"a\"\narchetype=\"iot-device\"\naddress=\"127.1.0.300\"\n");
        assert!(e.starts_with("fleet.toml:4:") && e.contains("not an IP address"), "{e}");
        let e = error_of(
            "[[decky]]\nname=\"a\"\narchetype=\"iot-device\"\naddress=\"::1\"\n\
             [[decky]]\nname=\"b\"\narchetype=\"iot-device\"\naddress=\"::1\"\n",
        );
        assert!(e.starts_with("fleet.toml:8:") && e.contains("two deckies"), "{e}");
    }
}
