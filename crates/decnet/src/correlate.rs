//! The correlator's fold of mutation events: per decky, every event's
//! `old_services` must equal the previous event's `new_services` (SPEC §4).
//!
//! A break means an event went missing or the log was tampered with, and
//! an analyst reading "what did this decky expose when the attacker
//! connected" would get a wrong answer; so breaks are reported with the
//! line they were found on. The first event seen for a decky is not
//! checked (the log may start mid-life, e.g. after rotation).

use std::collections::BTreeMap;
use std::io::BufRead;

use crate::events::rfc5424::{self, MutationEvent};

/// One mutation event where the chain does not continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub decky: String,
    pub line: usize,
    pub expected_old: Vec<String>,
    pub found_old: Vec<String>,
}

/// The result of folding a log.
#[derive(Debug, Default)]
pub struct Report {
    /// Each decky's mutation events, in log order, with their line numbers.
    pub chains: BTreeMap<String, Vec<(usize, MutationEvent)>>,
    pub breaks: Vec<Break>,
    /// Well-formed lines that are not mutations (ordinary service events).
    pub other_events: usize,
    /// Lines that are not RFC 5424 at all, with the reason.
    pub unparsable: Vec<(usize, String)>,
}

impl Report {
    pub fn is_intact(&self) -> bool {
        self.breaks.is_empty()
    }
}

fn as_set(services: &[String]) -> Vec<String> {
    let mut s = services.to_vec();
    s.sort();
    s.dedup();
    s
}

/// The fold itself, one event at a time, so a live tail can use it too.
#[derive(Debug, Default)]
pub struct Fold {
    report: Report,
}

impl Fold {
    pub fn push(&mut self, line_no: usize, event: MutationEvent) {
        let chain = self.report.chains.entry(event.decky.clone()).or_default();
        if let Some((_, previous)) = chain.last() {
            let expected = as_set(&previous.new_services);
            let found = as_set(&event.old_services);
            if expected != found {
                self.report.breaks.push(Break {
                    decky: event.decky.clone(),
                    line: line_no,
                    expected_old: expected,
                    found_old: found,
                });
            }
        }
        chain.push((line_no, event));
    }

    pub fn push_line(&mut self, line_no: usize, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        match rfc5424::parse_mutation(line) {
            Ok(Some(event)) => self.push(line_no, event),
            Ok(None) => self.report.other_events += 1,
            Err(e) => self.report.unparsable.push((line_no, e.to_string())),
        }
    }

    pub fn finish(self) -> Report {
        self.report
    }
}

/// Fold every line of `reader` (line numbers start at 1).
pub fn fold_lines<R: BufRead>(reader: R) -> std::io::Result<Report> {
    let mut fold = Fold::default();
    for (i, line) in reader.lines().enumerate() {
        fold.push_line(i + 1, &line?);
    }
    Ok(fold.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::rfc5424::{format_mutation, Trigger};

    fn line(decky: &str, old: &[&str], new: &[&str], trigger: Trigger) -> String {
        format_mutation(&MutationEvent {
            timestamp: time::OffsetDateTime::UNIX_EPOCH,
            decky: decky.into(),
            old_services: old.iter().map(|s| s.to_string()).collect(),
            new_services: new.iter().map(|s| s.to_string()).collect(),
            trigger,
            actor: None,
        })
    }

    #[test]
    fn intact_chains_fold_without_breaks() {
        let log = [
            line("a", &[], &["ssh", "http"], Trigger::Creation),
            line("b", &[], &["smb"], Trigger::Creation),
            "<38>1 2024-01-01T00:00:00Z a ssh - login [relay@55555 user=\"root\"]".to_string(),
            line("a", &["http", "ssh"], &["ftp"], Trigger::Scheduled),
            line("a", &["ftp"], &[], Trigger::Retirement),
        ]
        .join("\n");
        let report = fold_lines(log.as_bytes()).unwrap();
        assert!(report.is_intact(), "{:?}", report.breaks);
        assert_eq!(report.chains["a"].len(), 3);
        assert_eq!(report.chains["b"].len(), 1);
        assert_eq!(report.other_events, 1);
    }

    #[test]
    fn a_missing_event_is_a_break_on_its_line() {
        let log = [
            line("a", &[], &["ssh"], Trigger::Creation),
            line("a", &["ssh"], &["ftp"], Trigger::Scheduled),
            line("a", &["http"], &["smb"], Trigger::Operator),
        ]
        .join("\n");
        let report = fold_lines(log.as_bytes()).unwrap();
        assert_eq!(
            report.breaks,
            vec![Break {
                decky: "a".into(),
                line: 3,
                expected_old: vec!["ftp".into()],
                found_old: vec!["http".into()]
            }]
        );
    }
}
