//! The behaviour class of an attacker, from what it did and when.
//!
//! A pure function of the attacker's recent events (see [`Event`]) so every
//! class can be tested with hand-made, labelled timelines; the rules are the
//! contract and are documented in `docs/attackers.md` (keep the two in
//! step). What happened comes first — failed and successful logins, the
//! credentials tried, commands, how many `decky:service` targets — and
//! timing only breaks the ties what happened leaves: one `ssh host 'uname
//! -a'` is three events inside a second, which timing alone would call a
//! brute force, and is an interactive login.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

/// Below this many events (without a login or command to go on) there is
/// too little to say anything.
pub const MIN_EVENTS: usize = 3;
/// Failed logins from which repeated guessing is a brute force (fewer is a
/// person mistyping, or a client retrying).
pub const BRUTE_MIN_FAILURES: usize = 5;
/// Distinct (username, secret) pairs among those failures: one password
/// retried by a misconfigured client is not guessing.
pub const BRUTE_MIN_CREDENTIALS: usize = 3;
/// Median gap under which activity counts as automated and fast.
pub const FAST_GAP_SECS: f64 = 2.0;
/// Median gap between sessions from which a sweep counts as a slow scan.
pub const SLOW_GAP_SECS: f64 = 60.0;
/// Sessions needed before their regularity can mean a beacon.
pub const BEACON_MIN_SESSIONS: usize = 4;
/// Shortest median gap between a beacon's sessions (faster regular
/// traffic is a tool loop).
pub const BEACON_MIN_GAP_SECS: f64 = 10.0;
/// Gaps whose coefficient of variation is under this are "regular".
pub const BEACON_MAX_CV: f64 = 0.2;
/// A human pauses irregularly: at least this variation.
pub const INTERACTIVE_MIN_CV: f64 = 0.5;
/// Distinct `decky:service` targets from which activity is a sweep rather
/// than a focus.
pub const SWEEP_TARGETS: usize = 3;

// Commands are the events the profile lists as commands.
use super::fold::COMMAND_EVENTS;

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

/// What one event was, as far as the classes care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A connection opened (every session starts with one).
    Connect,
    /// A login the decky accepted (`outcome=success` or `result=accepted`,
    /// which includes an anonymous FTP login).
    LoginAccepted,
    /// Any other login attempt: refused, or a service that never accepts.
    LoginRefused,
    /// A command (`command`, `exec`, `shell_command`).
    Command,
    /// Anything else: requests, probes, banners…
    Other,
}

/// One event of an attacker's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub ts: f64,
    /// `decky:service`.
    pub target: String,
    pub action: Action,
    /// The decky's session id (`sid`), when the line had one.
    pub session: Option<String>,
    /// `username` and `secret_b64` of a login attempt, to count distinct
    /// guesses (never leaves the classifier).
    pub credential: Option<(String, String)>,
}

impl Event {
    /// An event from a `logs` row's columns and `fields`.
    pub fn from_row(ts: f64, decky: &str, service: &str, event_type: &str, fields: &Value) -> Event {
        let field = |k: &str| fields.get(k).and_then(Value::as_str);
        let action = match event_type {
            "connect" | "connection" => Action::Connect,
            "login_attempt" | "login" | "auth" => {
                let accepted = matches!(field("outcome"), Some("success" | "accepted"))
                    || matches!(field("result"), Some("success" | "accepted"));
                if accepted {
                    Action::LoginAccepted
                } else {
                    Action::LoginRefused
                }
            }
            t if COMMAND_EVENTS.contains(&t) => Action::Command,
            _ => Action::Other,
        };
        let credential = matches!(action, Action::LoginAccepted | Action::LoginRefused).then(|| {
            (field("username").unwrap_or_default().to_string(), field("secret_b64").unwrap_or_default().to_string())
        });
        Event {
            ts,
            target: format!("{decky}:{service}"),
            action,
            session: field("sid").filter(|s| !s.is_empty()).map(str::to_string),
            credential,
        }
    }
}

/// The counts the rules read, computed once per timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub events: usize,
    pub targets: usize,
    pub accepted: usize,
    pub refused: usize,
    /// Distinct (username, secret) pairs among refused logins.
    pub refused_credentials: usize,
    pub commands: usize,
    /// Start times of the sessions, sorted (an event without a `sid` is a
    /// session of its own).
    pub session_starts: Vec<f64>,
    /// Gaps between all events (sorted by time).
    pub event_gaps: Option<GapStats>,
    /// Gaps between session starts.
    pub session_gaps: Option<GapStats>,
}

pub fn summarize(events: &[Event]) -> Summary {
    let targets = events.iter().map(|e| e.target.as_str()).collect::<HashSet<_>>().len();
    let count = |a: Action| events.iter().filter(|e| e.action == a).count();
    let refused_credentials = events
        .iter()
        .filter(|e| e.action == Action::LoginRefused)
        .filter_map(|e| e.credential.as_ref())
        .collect::<HashSet<_>>()
        .len();
    let mut starts: BTreeMap<String, f64> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        let key = e.session.clone().unwrap_or_else(|| format!("#{i}"));
        let start = starts.entry(key).or_insert(e.ts);
        *start = start.min(e.ts);
    }
    let mut session_starts: Vec<f64> = starts.into_values().collect();
    session_starts.sort_by(f64::total_cmp);
    let timestamps: Vec<f64> = events.iter().map(|e| e.ts).collect();
    Summary {
        events: events.len(),
        targets,
        accepted: count(Action::LoginAccepted),
        refused: count(Action::LoginRefused),
        refused_credentials,
        commands: count(Action::Command),
        event_gaps: gap_stats(&timestamps),
        session_gaps: gap_stats(&session_starts),
        session_starts,
    }
}

/// Classify an attacker's timeline (any order). The rules are tried in
/// this order; the first that holds wins:
///
/// 1. ≥ [`BRUTE_MIN_FAILURES`] refused logins with ≥
///    [`BRUTE_MIN_CREDENTIALS`] distinct credentials → `brute_force`
///    (whatever the pace, and even if one guess finally got in);
/// 2. ≥ [`BEACON_MIN_SESSIONS`] sessions, at least two per target,
///    starting at a regular pace (median gap ≥ [`BEACON_MIN_GAP_SECS`],
///    CV < [`BEACON_MAX_CV`]) → `beaconing` (a sweep at a fixed rate,
///    like `nmap -T0`, hits a new target each time: not a beacon);
/// 3. an accepted login and at least one command → `interactive`;
/// 4. ≥ [`SWEEP_TARGETS`] targets and no accepted login → `scanning`, or
///    `slow_scan` when sessions start a median ≥ [`SLOW_GAP_SECS`] apart;
/// 5. fewer than [`MIN_EVENTS`] events, or logins below the brute-force
///    bar without commands → `unknown`;
/// 6. no logins, < [`SWEEP_TARGETS`] targets: median event gap <
///    [`FAST_GAP_SECS`] → `scanning` (a tool firing requests at one
///    service), CV ≥ [`INTERACTIVE_MIN_CV`] → `interactive` (a human's
///    irregular pauses);
/// 7. anything else → `mixed`.
pub fn classify(events: &[Event]) -> Behavior {
    let s = summarize(events);
    if s.refused >= BRUTE_MIN_FAILURES && s.refused_credentials >= BRUTE_MIN_CREDENTIALS {
        return Behavior::BruteForce;
    }
    if s.session_starts.len() >= BEACON_MIN_SESSIONS.max(2 * s.targets) {
        if let Some(g) = s.session_gaps {
            if g.median >= BEACON_MIN_GAP_SECS && g.cv < BEACON_MAX_CV {
                return Behavior::Beaconing;
            }
        }
    }
    if s.accepted > 0 && s.commands > 0 {
        return Behavior::Interactive;
    }
    if s.targets >= SWEEP_TARGETS && s.accepted == 0 {
        let slow = s.session_gaps.is_some_and(|g| g.median >= SLOW_GAP_SECS);
        return if slow { Behavior::SlowScan } else { Behavior::Scanning };
    }
    let logins = s.accepted + s.refused;
    if s.events < MIN_EVENTS || logins > 0 {
        return Behavior::Unknown;
    }
    match s.event_gaps {
        Some(g) if g.median < FAST_GAP_SECS => Behavior::Scanning,
        Some(g) if g.cv >= INTERACTIVE_MIN_CV => Behavior::Interactive,
        _ => Behavior::Mixed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// One line of a hand-made timeline: seconds after the start, target,
    /// event type, fields (as the decky writes them).
    type Line = (f64, &'static str, &'static str, Value);

    fn events(lines: &[Line]) -> Vec<Event> {
        lines
            .iter()
            .map(|(t, target, kind, fields)| {
                let (decky, service) = target.split_once(':').unwrap();
                Event::from_row(1_000.0 + t, decky, service, kind, fields)
            })
            .collect()
    }

    fn sid(s: &str) -> Value {
        json!({ "sid": s })
    }

    fn login(s: &str, user: &str, secret: &str, outcome: &str) -> Value {
        json!({ "sid": s, "username": user, "secret_b64": secret, "outcome": outcome })
    }

    /// `ssh host 'uname -a'`: the first case of issue 27.
    fn ssh_one_command() -> Vec<Line> {
        vec![
            (0.0, "web-01:ssh", "connect", sid("a")),
            (0.2, "web-01:ssh", "login_attempt", login("a", "root", "cm9vdA==", "success")),
            (0.3, "web-01:ssh", "command", json!({"sid": "a", "command": "uname -a"})),
        ]
    }

    /// One anonymous FTP login: the second case of issue 27.
    fn ftp_anonymous() -> Vec<Line> {
        vec![
            (0.0, "files:ftp", "connect", sid("f")),
            (0.1, "files:ftp", "command", json!({"sid": "f", "command": "USER anonymous"})),
            (
                0.2,
                "files:ftp",
                "login_attempt",
                json!({"sid": "f", "username": "anonymous", "secret_b64": "", "result": "accepted"}),
            ),
            (0.3, "files:ftp", "command", json!({"sid": "f", "command": "PWD"})),
            (0.4, "files:ftp", "command", json!({"sid": "f", "command": "QUIT"})),
        ]
    }

    /// `n` refused guesses, a new password each, 3 per connection.
    fn guessing(n: usize, every: f64, users: &[&'static str]) -> Vec<Line> {
        let mut out = Vec::new();
        for i in 0..n {
            let s: &'static str = Box::leak(format!("g{}", i / 3).into_boxed_str());
            if i % 3 == 0 {
                out.push((i as f64 * every, "web-01:ssh", "connect", sid(s)));
            }
            let secret: &'static str = Box::leak(format!("cGFzcw{i}").into_boxed_str());
            out.push((
                i as f64 * every + 0.1,
                "web-01:ssh",
                "login_attempt",
                login(s, users[i % users.len()], secret, "failure"),
            ));
        }
        out
    }

    fn sweep(targets: &[&'static str], every: f64) -> Vec<Line> {
        targets.iter().enumerate().map(|(i, t)| (i as f64 * every, *t, "connect", json!({}))).collect()
    }

    /// Timelines an analyst labelled, and the class they expect.
    fn labelled() -> Vec<(&'static str, Vec<Line>, Behavior)> {
        let mut retried = Vec::new();
        for i in 0..10 {
            retried.push((i as f64 * 30.0, "web-01:ssh", "login_attempt", login("r", "backup", "c2FtZQ==", "failure")));
        }
        let mut broke_in = guessing(12, 0.5, &["root", "admin"]);
        broke_in.push((7.0, "web-01:ssh", "login_attempt", login("g9", "root", "MTIzNDU2", "success")));
        broke_in.push((8.0, "web-01:ssh", "command", json!({"sid": "g9", "command": "cat /proc/cpuinfo"})));
        let typos = vec![
            (0.0, "web-01:ssh", "connect", sid("t")),
            (3.0, "web-01:ssh", "login_attempt", login("t", "alice", "dHlwbw==", "failure")),
            (9.0, "web-01:ssh", "login_attempt", login("t", "alice", "dHlwbzI=", "failure")),
            (14.0, "web-01:ssh", "login_attempt", login("t", "alice", "cmlnaHQ=", "success")),
            (20.0, "web-01:ssh", "command", json!({"sid": "t", "command": "ls"})),
            (65.0, "web-01:ssh", "command", json!({"sid": "t", "command": "cat notes.txt"})),
        ];
        let beacon: Vec<Line> = [0.0, 60.0, 121.0, 180.5, 240.2, 300.0]
            .iter()
            .enumerate()
            .flat_map(|(i, t)| {
                let s: &'static str = Box::leak(format!("b{i}").into_boxed_str());
                [(*t, "web-01:http", "connect", sid(s)), (t + 0.05, "web-01:http", "request", sid(s))]
            })
            .collect();
        let web_scanner: Vec<Line> =
            (0..30).map(|i| (f64::from(i) * 0.1, "web-01:http", "request", json!({"path": format!("/{i}")}))).collect();
        let browsing: Vec<Line> = [0.0, 3.0, 28.0, 32.0, 72.0, 74.5, 86.5]
            .iter()
            .map(|t| (*t, "web-01:http", "request", json!({})))
            .collect();
        let steady_two: Vec<Line> = [0.0, 5.0, 11.0, 16.5, 23.0, 28.0]
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, if i % 2 == 0 { "a:http" } else { "b:http" }, "request", json!({})))
            .collect();
        vec![
            ("ssh host 'uname -a' (issue 27)", ssh_one_command(), Behavior::Interactive),
            ("one anonymous FTP login (issue 27)", ftp_anonymous(), Behavior::Interactive),
            ("fast password guessing over ssh", guessing(20, 0.4, &["root", "admin", "pi"]), Behavior::BruteForce),
            ("slow password spray, one guess per 5 min", guessing(8, 300.0, &["oracle", "test"]), Behavior::BruteForce),
            ("a brute force that got in and ran a command", broke_in, Behavior::BruteForce),
            ("one password retried by a client", retried, Behavior::Unknown),
            ("two typos, then a login and commands", typos, Behavior::Interactive),
            (
                "fast port sweep across deckies, no login",
                sweep(&["a:ssh", "a:http", "b:smb", "b:rdp", "c:ftp", "c:telnet"], 0.05),
                Behavior::Scanning,
            ),
            (
                "one port every 4 minutes (nmap -T0)",
                sweep(&["a:ssh", "b:ssh", "c:ssh", "d:ssh"], 240.0),
                Behavior::SlowScan,
            ),
            ("a call-back every minute", beacon, Behavior::Beaconing),
            (
                "one HTTP request",
                vec![(0.0, "web-01:http", "connect", json!({})), (0.01, "web-01:http", "request", json!({}))],
                Behavior::Unknown,
            ),
            ("a web scanner on one site", web_scanner, Behavior::Scanning),
            ("a person browsing one site", browsing, Behavior::Interactive),
            ("steady medium pace on two sites", steady_two, Behavior::Mixed),
        ]
    }

    #[test]
    fn labelled_timelines_get_the_class_an_analyst_would_give() {
        let mut wrong = Vec::new();
        for (name, lines, expected) in labelled() {
            let got = classify(&events(&lines));
            if got != expected {
                wrong.push(format!("{name}: expected {expected}, got {got} ({:?})", summarize(&events(&lines))));
            }
        }
        assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
    }

    #[test]
    fn the_issue_cases_are_not_brute_force_even_though_they_are_fast() {
        // The old timing-only rule: ≥ 3 events, median gap < 2 s, one
        // target → brute_force. Both cases are exactly that.
        for lines in [ssh_one_command(), ftp_anonymous()] {
            let ev = events(&lines);
            assert!(summarize(&ev).event_gaps.unwrap().median < FAST_GAP_SECS);
            assert_ne!(classify(&ev), Behavior::BruteForce);
        }
    }

    #[test]
    fn order_of_input_does_not_matter() {
        for (name, lines, expected) in labelled() {
            let mut ev = events(&lines);
            ev.reverse();
            assert_eq!(classify(&ev), expected, "{name} reversed");
        }
    }

    #[test]
    fn login_outcomes_are_read_from_either_field() {
        let ev = |fields: Value| Event::from_row(1.0, "d", "ssh", "login_attempt", &fields).action;
        assert_eq!(ev(json!({"outcome": "success"})), Action::LoginAccepted);
        assert_eq!(ev(json!({"result": "accepted"})), Action::LoginAccepted);
        assert_eq!(ev(json!({"outcome": "failure"})), Action::LoginRefused);
        assert_eq!(ev(json!({"result": "refused"})), Action::LoginRefused);
        // A service that never says: never accepted.
        assert_eq!(ev(json!({})), Action::LoginRefused);
        assert_eq!(Event::from_row(1.0, "d", "ssh", "exec", &json!({})).action, Action::Command);
        assert_eq!(Event::from_row(1.0, "d", "http", "request", &json!({})).action, Action::Other);
    }

    #[test]
    fn too_few_events_is_unknown() {
        assert_eq!(classify(&[]), Behavior::Unknown);
        assert_eq!(classify(&events(&[(0.0, "a:ssh", "connect", json!({}))])), Behavior::Unknown);
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
