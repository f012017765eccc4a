//! Where decnet keeps its state: `$DECNET_HOME`, default `~/.decnet`.
//!
//! Everything an operator might need to find or back up (SQLite database,
//! JWT secret, default bus socket, ingest log) lives under this one folder.

use std::path::PathBuf;

/// `$DECNET_HOME`, else `~/.decnet`, else `./.decnet` when no home is known.
pub fn decnet_home() -> PathBuf {
    if let Some(h) = std::env::var_os("DECNET_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".decnet"),
        None => PathBuf::from(".decnet"),
    }
}

/// Create `$DECNET_HOME` (mode 0700: it holds the JWT secret) if missing.
pub fn ensure_home() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let home = decnet_home();
    if !home.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&home)?;
    }
    Ok(home)
}

/// Default bus socket when none is given (SPEC §5): `/run/decnet/bus.sock`
/// when `/run/decnet` exists (systemd's `RuntimeDirectory=`), else
/// `$DECNET_HOME/bus.sock`.
pub fn default_socket_path() -> PathBuf {
    let run = std::path::Path::new("/run/decnet");
    if run.is_dir() {
        run.join("bus.sock")
    } else {
        decnet_home().join("bus.sock")
    }
}

/// The socket a client or daemon should use: the explicit flag, else
/// `DECNET_BUS_SOCKET`, else [`default_socket_path`]. (clap passes the
/// environment variable through as the flag, but library callers do not.)
pub fn resolve_socket_path(explicit: Option<&std::path::Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os("DECNET_BUS_SOCKET").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => default_socket_path(),
    }
}
