//! The behaviour class of an attacker, from the timing of its events.
//!
//! A pure function of (timestamp, target) pairs so every class can be
//! tested with hand-made timelines; the thresholds are the contract and are
//! documented in `docs/attackers.md` (keep the two in step). Timing alone
//! cannot tell a port scan from a password spray at the same rate, so the
//! number of distinct `decky:service` targets breaks that tie.

use std::collections::HashSet;

/// Below this many events there are too few gaps to say anything.
pub const MIN_EVENTS: usize = 3;
/// Median gap under which activity counts as automated and fast.
pub const FAST_GAP_SECS: f64 = 2.0;
/// Median gap from which a spread-out sweep counts as a slow scan.
pub const SLOW_GAP_SECS: f64 = 60.0;
/// Shortest median gap of a beacon (faster regular traffic is a tool loop).
pub const BEACON_MIN_GAP_SECS: f64 = 10.0;
/// Gaps whose coefficient of variation is under this are "regular".
pub const BEACON_MAX_CV: f64 = 0.2;
/// A human at a shell pauses irregularly: at least this variation.
pub const INTERACTIVE_MIN_CV: f64 = 0.5;
/// Distinct targets from which activity is a sweep rather than a focus.
pub const SWEEP_TARGETS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behavior {
    Unknown,
    SlowScan,
    Scanning,
    BruteForce,
    Beaconing,
    Interactive,
    Mixed,
}

impl Behavior {
    pub const ALL: [Behavior; 7] = [
        Behavior::Unknown,
        Behavior::SlowScan,
        Behavior::Scanning,
        Behavior::BruteForce,
        Behavior::Beaconing,
        Behavior::Interactive,
        Behavior::Mixed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Behavior::Unknown => "unknown",
            Behavior::SlowScan => "slow_scan",
            Behavior::Scanning => "scanning",
            Behavior::BruteForce => "brute_force",
            Behavior::Beaconing => "beaconing",
            Behavior::Interactive => "interactive",
            Behavior::Mixed => "mixed",
        }
    }

    pub fn parse(s: &str) -> Option<Behavior> {
        Behavior::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

impl std::fmt::Display for Behavior {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Timing statistics of a timeline (for the docs and the API).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GapStats {
    pub median: f64,
    pub mean: f64,
    /// Standard deviation over mean (0 when the mean is 0).
    pub cv: f64,
}

/// Median, mean and coefficient of variation of the gaps between the
/// sorted timestamps; `None` with fewer than two timestamps.
pub fn gap_stats(timestamps: &[f64]) -> Option<GapStats> {
    if timestamps.len() < 2 {
        return None;
    }
    let mut sorted = timestamps.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut gaps: Vec<f64> = sorted.windows(2).map(|w| (w[1] - w[0]).max(0.0)).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    let cv = if mean > 0.0 { var.sqrt() / mean } else { 0.0 };
    gaps.sort_by(f64::total_cmp);
    let mid = gaps.len() / 2;
    let median = if gaps.len() & 1 == 0 { (gaps[mid - 1] + gaps[mid]) / 2.0 } else { gaps[mid] };
    Some(GapStats { median, mean, cv })
}

/// Classify a timeline of `(timestamp, target)` events (any order). The
/// rules are tried in this order; the first that holds wins:
///
/// 1. fewer than [`MIN_EVENTS`] events → `unknown`;
/// 2. median gap ≥ [`BEACON_MIN_GAP_SECS`] and CV < [`BEACON_MAX_CV`] → `beaconing`;
/// 3. median gap < [`FAST_GAP_SECS`]: ≥ [`SWEEP_TARGETS`] targets → `scanning`, else `brute_force`;
/// 4. median gap ≥ [`SLOW_GAP_SECS`] and ≥ [`SWEEP_TARGETS`] targets → `slow_scan`;
/// 5. CV ≥ [`INTERACTIVE_MIN_CV`] and fewer than [`SWEEP_TARGETS`] targets → `interactive`;
/// 6. anything else → `mixed`.
pub fn classify<T: AsRef<str>>(events: &[(f64, T)]) -> Behavior {
    if events.len() < MIN_EVENTS {
        return Behavior::Unknown;
    }
    let timestamps: Vec<f64> = events.iter().map(|(t, _)| *t).collect();
    let Some(stats) = gap_stats(&timestamps) else { return Behavior::Unknown };
    let targets = events.iter().map(|(_, t)| t.as_ref()).collect::<HashSet<_>>().len();
    let sweep = targets >= SWEEP_TARGETS;
    if stats.median >= BEACON_MIN_GAP_SECS && stats.cv < BEACON_MAX_CV {
        Behavior::Beaconing
    } else if stats.median < FAST_GAP_SECS {
        if sweep {
            Behavior::Scanning
        } else {
            Behavior::BruteForce
        }
    } else if stats.median >= SLOW_GAP_SECS && sweep {
        Behavior::SlowScan
    } else if stats.cv >= INTERACTIVE_MIN_CV && !sweep {
        Behavior::Interactive
    } else {
        Behavior::Mixed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(gaps: &[f64], targets: &[&str]) -> Vec<(f64, String)> {
        let mut t = 1_000.0;
        let mut out = vec![(t, targets[0].to_string())];
        for (i, g) in gaps.iter().enumerate() {
            t += g;
            out.push((t, targets[(i + 1) % targets.len()].to_string()));
        }
        out
    }

    #[test]
    fn too_few_events_is_unknown() {
        assert_eq!(classify::<&str>(&[]), Behavior::Unknown);
        assert_eq!(classify(&timeline(&[0.1], &["a:ssh"])), Behavior::Unknown);
    }

    #[test]
    fn fast_hammering_of_one_target_is_brute_force() {
        let gaps = [0.3, 0.5, 0.4, 0.6, 0.3, 0.5];
        assert_eq!(classify(&timeline(&gaps, &["web-01:ssh"])), Behavior::BruteForce);
    }

    #[test]
    fn fast_sweep_of_many_targets_is_scanning() {
        let gaps = [0.05, 0.1, 0.02, 0.07, 0.1];
        assert_eq!(classify(&timeline(&gaps, &["a:ssh", "a:http", "b:ssh", "b:smb"])), Behavior::Scanning);
    }

    #[test]
    fn spread_out_sweep_is_slow_scan() {
        let gaps = [120.0, 300.0, 90.0, 600.0, 75.0];
        assert_eq!(classify(&timeline(&gaps, &["a:ssh", "b:http", "c:smb"])), Behavior::SlowScan);
    }

    #[test]
    fn regular_callbacks_are_beaconing() {
        let gaps = [60.0, 61.0, 59.5, 60.2, 60.0, 59.8];
        assert_eq!(classify(&timeline(&gaps, &["a:http"])), Behavior::Beaconing);
        // Regular even across several targets: timing wins over breadth.
        assert_eq!(classify(&timeline(&gaps, &["a:http", "b:http", "c:http"])), Behavior::Beaconing);
    }

    #[test]
    fn irregular_human_pace_on_one_target_is_interactive() {
        let gaps = [3.0, 25.0, 4.0, 40.0, 2.5, 12.0];
        assert_eq!(classify(&timeline(&gaps, &["a:ssh"])), Behavior::Interactive);
    }

    #[test]
    fn what_fits_no_rule_is_mixed() {
        // Medium, fairly regular pace over many targets: neither fast, slow,
        // a beacon (too fast) nor a single-target human.
        let gaps = [5.0, 6.0, 5.5, 6.5, 5.0];
        assert_eq!(classify(&timeline(&gaps, &["a:ssh", "b:http", "c:smb"])), Behavior::Mixed);
    }

    #[test]
    fn order_of_input_does_not_matter() {
        let mut events = timeline(&[3.0, 25.0, 4.0, 40.0, 2.5, 12.0], &["a:ssh"]);
        events.reverse();
        assert_eq!(classify(&events), Behavior::Interactive);
    }

    #[test]
    fn names_round_trip() {
        for b in Behavior::ALL {
            assert_eq!(Behavior::parse(b.as_str()), Some(b));
            assert_eq!(serde_json::to_value(b).unwrap(), b.as_str());
        }
        assert_eq!(Behavior::parse("evil"), None);
    }
}
