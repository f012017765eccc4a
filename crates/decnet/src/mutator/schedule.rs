//! When deckies are due, and how long the watch loop sleeps. Pure
//! functions of the fleet rows and the clock, so they are tested without
//! waiting for anything.

use std::time::Duration;

use crate::store::fleet::FleetDecky;

/// The loop never spins faster than this, whatever is due.
pub const MIN_SLEEP: Duration = Duration::from_secs(1);

/// Whether `decky` is due at `now` (unix seconds). A deployed decky that
/// was never mutated is due at once.
pub fn is_due(decky: &FleetDecky, now: f64) -> bool {
    decky.deployed && decky.due_at().is_none_or(|due| due <= now)
}

/// Time from `now` until the earliest due decky among `deckies`
/// (zero if one is overdue), `None` when nothing deployed is scheduled.
pub fn until_next_due<'a>(deckies: impl IntoIterator<Item = &'a FleetDecky>, now: f64) -> Option<Duration> {
    deckies
        .into_iter()
        .filter(|d| d.deployed)
        .map(|d| d.due_at().map_or(0.0, |due| (due - now).max(0.0)))
        .min_by(f64::total_cmp)
        .map(Duration::from_secs_f64)
}

/// The watch loop's sleep: `min(next_due, poll)`, at least [`MIN_SLEEP`].
pub fn sleep_for(next_due: Option<Duration>, poll: Duration) -> Duration {
    next_due.map_or(poll, |d| d.min(poll)).max(MIN_SLEEP)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decky(last: Option<f64>, minutes: u32, deployed: bool) -> FleetDecky {
        FleetDecky {
            name: "d".into(),
            archetype: None,
            services: vec!["ssh".into()],
            interval_minutes: minutes,
            last_mutated: last,
            deployed,
        }
    }

    #[test]
    fn due_and_next_due() {
        let now = 10_000.0;
        assert!(is_due(&decky(Some(now - 120.0), 1, true), now));
        assert!(!is_due(&decky(Some(now - 30.0), 1, true), now));
        assert!(!is_due(&decky(Some(now - 999.0), 1, false), now));
        let fleet = [decky(Some(now - 30.0), 1, true), decky(Some(now), 5, true), decky(None, 1, false)];
        assert_eq!(until_next_due(&fleet, now), Some(Duration::from_secs(30)));
        assert_eq!(until_next_due(&[decky(None, 1, false)], now), None);
        assert_eq!(until_next_due(&[decky(Some(0.0), 1, true)], now), Some(Duration::ZERO));
    }

    #[test]
    fn sleep_is_min_of_due_and_poll_with_a_floor() {
        let poll = Duration::from_secs(30);
        assert_eq!(sleep_for(None, poll), poll);
        assert_eq!(sleep_for(Some(Duration::from_secs(5)), poll), Duration::from_secs(5));
        assert_eq!(sleep_for(Some(Duration::from_secs(90)), poll), poll);
        assert_eq!(sleep_for(Some(Duration::ZERO), poll), MIN_SLEEP);
        assert_eq!(sleep_for(None, Duration::ZERO), MIN_SLEEP);
    }
}
