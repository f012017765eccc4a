//! Syslog over the collector's local UNIX stream socket: where this host's
//! deckies ship (RFC 6587 framing, exactly as over TCP; see
//! [`super::receiver_tcp`]).
//!
//! Why a socket file and not loopback TCP: whoever can connect to
//! 127.0.0.1 can connect to a loopback port, while a socket file is
//! guarded by its mode. It is created 0660 (owner and group of the
//! collector), so lines on it come from processes the operator let in, and
//! are stored as trusted ([`super::access`]). The same connection limits
//! as TCP apply (total count, idle timeout, line length, the queue's memory
//! budget), all connections sharing one source key ([`super::UNIX_SOURCE`]).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;

use super::access::Transport;
use super::receiver_tcp::{serve, Shared, TcpLimits};
use super::stats::Stats;
use super::UNIX_SOURCE;

/// Mode of the socket file: the collector's user and group may connect.
pub const SOCKET_MODE: u32 = 0o660;

/// Bind the socket at `path`, replacing a stale socket file left by a
/// collector that died (never any other kind of file), mode 0660.
pub fn bind(path: &Path) -> std::io::Result<(UnixListener, PathBuf)> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket; not replacing it",
            ));
        }
        // A live collector answers; a stale file refuses.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "another collector listens there"));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))?;
    Ok((listener, path.to_path_buf()))
}

/// Accept until shutdown, then remove the socket file.
pub async fn run(listener: UnixListener, path: PathBuf, limits: TcpLimits, ctx: Shared) {
    let open = Arc::new(AtomicUsize::new(0));
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "collector UNIX accept failed; pausing 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= limits.max_connections {
            Stats::inc(&ctx.stats.connections_refused);
            drop(stream);
            continue;
        }
        let peer = match stream.peer_cred() {
            Ok(c) => format!("unix uid {} pid {}", c.uid(), c.pid().unwrap_or(0)),
            Err(_) => "unix".to_string(),
        };
        open.fetch_add(1, Ordering::Relaxed);
        Stats::inc(&ctx.stats.connections);
        let (open, limits, ctx) = (open.clone(), limits.clone(), ctx.clone());
        tasks.spawn(async move {
            serve(stream, Transport::Unix, UNIX_SOURCE, &peer, &limits, &ctx).await;
            open.fetch_sub(1, Ordering::Relaxed);
            ctx.stats.connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    let _ = std::fs::remove_file(&path);
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), tasks.wait()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bind_replaces_only_a_stale_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/collector.sock");
        let (live, _) = bind(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, SOCKET_MODE);
        // A second collector on a live socket is refused, not stolen from.
        assert_eq!(bind(&path).unwrap_err().kind(), std::io::ErrorKind::AddrInUse);
        // A collector that died leaves its file: that one is replaced.
        drop(live);
        assert!(path.exists());
        let (_again, _) = bind(&path).unwrap();
        // Never any other kind of file.
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, b"precious").unwrap();
        assert_eq!(bind(&file).unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    }
}
