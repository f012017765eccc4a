//! Telling systemd a daemon is up and still alive (`Type=notify` units with
//! `WatchdogSec=`). One helper for every decnet daemon, so each calls
//! [`notify_ready`] once at the point where it serves, and nothing else.
//!
//! Outside systemd `NOTIFY_SOCKET` is unset: every call here does nothing.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Send `READY=1` (with a `STATUS=` line naming what is ready), and when
/// systemd asked for a watchdog (`$WATCHDOG_USEC`, for this pid) start
/// sending `WATCHDOG=1` at half that interval until `shutdown` is
/// cancelled.
///
/// The keep-alive runs as a task on the daemon's own runtime: if the
/// runtime wedges (a blocking call on its only thread, a dead-locked
/// scheduler) the keep-alives stop and systemd restarts the unit, which
/// is the failure the watchdog is for.
pub fn notify_ready(status: &str, shutdown: CancellationToken) {
    let status = format!("STATUS={status}");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Custom(&status)]);
    if let Some(interval) = keepalive_interval() {
        tracing::info!(every_ms = interval.as_millis() as u64, "systemd watchdog keep-alives");
        tokio::spawn(keepalive(interval, shutdown));
    }
}

/// Send `STOPPING=1`: systemd shows the unit as deactivating and stops
/// expecting keep-alives.
pub fn notify_stopping() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
}

/// Half of `$WATCHDOG_USEC` when the watchdog is on for this process;
/// `None` otherwise. As sd_watchdog_enabled(3): `$WATCHDOG_PID`, when set,
/// must be our pid (a child that inherited the variables is not watched).
/// sd-notify's own check insists on `$WATCHDOG_PID`, which the man page
/// makes optional, hence this one.
pub fn keepalive_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

async fn keepalive(interval: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            }
        }
    }
}
