//! Binding the UNIX socket the way an operator expects (SPEC §5).
//!
//! The socket file is the bus's only access control (mode 0660, group
//! `decnet`), so binding is careful: a missing parent is an error rather
//! than a silently created folder with the wrong owner; a stale socket left
//! by a crash is replaced; a socket with a live daemon behind it is never
//! stolen.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "the folder {0} for the bus socket does not exist (create it, or under systemd use RuntimeDirectory=decnet)"
    )]
    MissingParent(PathBuf),
    #[error("another bus daemon is already listening on {0}")]
    AlreadyRunning(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("group {0:?} does not exist")]
    NoSuchGroup(String),
    #[error("cannot bind {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The group used when none is given, if it exists on this host.
pub const DEFAULT_GROUP: &str = "decnet";

/// Bind `path`: refuse a live socket, replace a stale one, then set mode
/// 0660 and the group (`group` if given, which must exist; else `decnet`
/// when that group exists).
pub fn bind_socket(path: &Path, group: Option<&str>) -> Result<UnixListener, BindError> {
    let io_err = |source| BindError::Io { path: path.to_path_buf(), source };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(BindError::MissingParent(parent.to_path_buf()));
    }
    let gid = match group {
        Some(name) => Some(lookup_group(name)?.ok_or_else(|| BindError::NoSuchGroup(name.to_string()))?),
        None => lookup_group(DEFAULT_GROUP)?,
    };

    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(BindError::AlreadyRunning(path.to_path_buf()));
            }
            tracing::info!(socket = %path.display(), "replacing stale socket left by a previous daemon");
            std::fs::remove_file(path).map_err(io_err)?;
        }
        Ok(_) => return Err(BindError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }

    let listener = UnixListener::bind(path).map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io_err)?;
    if let Some(gid) = gid {
        if let Err(e) = std::os::unix::fs::chown(path, None, Some(gid)) {
            // Not being allowed to chgrp (not root, not a member) is worth a
            // warning, not a refusal: the socket still works for our user.
            tracing::warn!(socket = %path.display(), gid, error = %e, "could not set the socket's group");
        }
    }
    Ok(listener)
}

fn lookup_group(name: &str) -> Result<Option<u32>, BindError> {
    nix::unistd::Group::from_name(name)
        .map(|g| g.map(|g| g.gid.as_raw()))
        .map_err(|e| BindError::Io { path: PathBuf::from("/etc/group"), source: io::Error::from(e) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[tokio::test]
    async fn binds_with_mode_0660() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.sock");
        let _l = bind_socket(&path, None).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o660);
    }

    #[tokio::test]
    async fn live_socket_is_refused_and_stale_one_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.sock");
        let live = bind_socket(&path, None).unwrap();
        assert!(matches!(bind_socket(&path, None), Err(BindError::AlreadyRunning(_))));
        drop(live); // the file stays behind, like after a crash
        assert!(path.exists());
        let _again = bind_socket(&path, None).unwrap();
    }

    #[tokio::test]
    async fn refuses_missing_parent_regular_file_and_unknown_group() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(bind_socket(&dir.path().join("nope/bus.sock"), None), Err(BindError::MissingParent(_))));
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(bind_socket(&file, None), Err(BindError::NotASocket(_))));
        assert!(matches!(
            bind_socket(&dir.path().join("b.sock"), Some("no-such-group-decnet")),
            Err(BindError::NoSuchGroup(_))
        ));
    }
}
