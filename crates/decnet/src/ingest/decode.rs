//! Lines of `<log>.json` as the ingester stores them, and the evidence a
//! stored line carries.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::artifacts::{self, Artifact};
use super::recordings::{self, Recorded};
use super::store::{self, Credential};
use crate::collector::Record;

/// One line: the record, and its `fields` exactly as the collector wrote
/// them (what the `logs` row stores; decoding them into the record and
/// encoding them again for the row cost as much as the rest of the line).
#[derive(Debug)]
pub struct StoredLine {
    pub record: Record,
    pub fields_json: String,
}

/// [`Record`]'s JSON with `fields` borrowed as written.
#[derive(Deserialize)]
struct Line<'a> {
    timestamp: f64,
    decky: String,
    service: String,
    event_type: String,
    attacker_ip: String,
    #[serde(borrow)]
    fields: &'a RawValue,
    msg: String,
    raw_line: String,
    #[serde(default)]
    source: Option<String>,
}

/// One line of `<log>.json`.
pub fn decode(line: &[u8]) -> Result<StoredLine, serde_json::Error> {
    let l: Line = serde_json::from_slice(line)?;
    let fields = serde_json::from_str(l.fields.get())?;
    Ok(StoredLine {
        record: Record {
            timestamp: l.timestamp,
            decky: l.decky,
            service: l.service,
            event_type: l.event_type,
            attacker_ip: l.attacker_ip,
            fields,
            msg: l.msg,
            raw_line: l.raw_line,
            source: l.source,
        },
        fields_json: l.fields.get().to_owned(),
    })
}

/// The next `n` stored lines of `lines`; a line that is no record goes to
/// `bad_line` and is skipped.
pub fn next_lines<'a>(
    lines: &mut impl Iterator<Item = &'a [u8]>,
    n: usize,
    bad_line: &mut impl FnMut(&serde_json::Error),
) -> Vec<StoredLine> {
    let mut out = Vec::with_capacity(n);
    for line in lines {
        match decode(line) {
            Ok(l) => out.push(l),
            Err(e) => bad_line(&e),
        }
        if out.len() == n {
            break;
        }
    }
    out
}

/// What a trusted line proves beyond its `logs` row.
#[derive(Debug)]
pub struct Evidence {
    pub record: Record,
    pub artifact: Option<Artifact>,
    pub recording: Option<Recorded>,
    pub credential: Option<Credential>,
}

/// The evidence in `line`, if it carries any (most lines carry none).
pub fn evidence_of(line: StoredLine) -> Option<Evidence> {
    let record = line.record;
    let artifact = artifacts::artifact_of(&record);
    let recording = recordings::recording_of(&record);
    let credential = store::credential_of(&record);
    if artifact.is_none() && recording.is_none() && credential.is_none() {
        return None;
    }
    Some(Evidence { record, artifact, recording, credential })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_keeps_its_fields_as_written_and_decodes_them_too() {
        let record = crate::collector::parse_record(
            r#"<134>1 - web ssh - login_attempt [relay@55555 src_ip="1.2.3.4" username="r\"oot" secret_b64="aHVudGVyMg=="] hi"#,
            0.0,
        )
        .unwrap();
        let written = serde_json::to_string(&record).unwrap();
        let line = decode(written.as_bytes()).unwrap();
        assert_eq!(line.record, record);
        assert_eq!(line.fields_json, serde_json::to_string(&record.fields).unwrap());
        assert!(decode(b"{\"timestamp\": 1}").is_err(), "a line without the record's keys is no record");
        assert!(evidence_of(line).is_some_and(|e| e.credential.is_some()));
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let good =
            serde_json::to_string(&crate::collector::parse_record("<134>1 - web ssh - connect - x", 0.0).unwrap())
                .unwrap();
        let text = format!("{good}\nnot json\n{good}\n{good}\n");
        let mut lines = text.lines().map(str::as_bytes);
        let mut bad = 0;
        let first = next_lines(&mut lines, 2, &mut |_| bad += 1);
        assert_eq!((first.len(), bad), (2, 1));
        let rest = next_lines(&mut lines, 2, &mut |_| bad += 1);
        assert_eq!((rest.len(), bad), (1, 1));
        assert!(evidence_of(rest.into_iter().next().unwrap()).is_none(), "a connect proves nothing more");
    }
}
