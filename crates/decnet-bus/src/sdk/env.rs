//! `get_bus`: choose the transport from the environment, so the same worker
//! binary runs against the host daemon, inside a single test process, or
//! with the bus switched off.

use std::sync::{Arc, OnceLock};

use crate::bus::{Bus, BusError};
use crate::client::UnixBus;
use crate::fake::FakeBus;
use crate::null::NullBus;
use crate::paths::resolve_socket_path;

/// `false`/`0`/`no`/`off` turn the bus off (every call a no-op).
pub const BUS_ENABLED_ENV: &str = "DECNET_BUS_ENABLED";
/// `unix` (default): the daemon's socket (`DECNET_BUS_SOCKET` or the default
/// path); `fake`: the process-wide in-process hub.
pub const BUS_TYPE_ENV: &str = "DECNET_BUS_TYPE";

/// The in-process hub every `DECNET_BUS_TYPE=fake` client of this process
/// joins; tests take their own clients from it to talk to the code under test.
pub fn fake_hub() -> FakeBus {
    static HUB: OnceLock<FakeBus> = OnceLock::new();
    HUB.get_or_init(FakeBus::new).clone()
}

/// The bus a worker named `client_name` should use, per the environment.
/// The socket client connects lazily, so this never waits for the daemon.
pub fn get_bus(client_name: &str) -> Result<Arc<dyn Bus>, BusError> {
    if !bus_enabled()? {
        tracing::info!(client = client_name, "{BUS_ENABLED_ENV} is off: bus calls are no-ops");
        return Ok(Arc::new(NullBus::new(client_name)));
    }
    let kind = std::env::var(BUS_TYPE_ENV).unwrap_or_default();
    match kind.trim().to_ascii_lowercase().as_str() {
        "" | "unix" => Ok(Arc::new(UnixBus::new(client_name, resolve_socket_path(None)))),
        "fake" => Ok(fake_hub().client(client_name)),
        _ => Err(BusError::Config(format!("{BUS_TYPE_ENV}={kind:?} is not a bus type; accepted values: unix, fake"))),
    }
}

fn bus_enabled() -> Result<bool, BusError> {
    let raw = std::env::var(BUS_ENABLED_ENV).unwrap_or_default();
    match raw.trim().to_ascii_lowercase().as_str() {
        "" | "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(BusError::Config(format!(
            "{BUS_ENABLED_ENV}={raw:?} is not a boolean; accepted values: true, 1, yes, on, false, 0, no, off"
        ))),
    }
}
