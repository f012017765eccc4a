//! One writer of each kind per `$DECNET_HOME`: exclusive `flock`s.
//!
//! Two mutators on one database rotate the same deckies concurrently and
//! break the audit chain (each reads `old_services` the other has already
//! changed); a second `decnet up` used to start exactly that. So `decnet
//! mutator` holds `$DECNET_HOME/mutator.lock`, `decnet api` holds
//! `api.lock`, and `decnet up` holds both for the stack it supervises. A
//! second start finds the lock taken and exits non-zero naming the pid
//! written in the file. The locks are per role, not one `decnet.lock`,
//! because production runs the API and the mutator as separate units on
//! one home, and they must coexist.
//!
//! `flock` is released by the kernel when the holder dies, however it
//! dies, so there is no stale lock to clean up after `kill -9`. A child of
//! `decnet up` finds the lock held by its own parent and runs under it.

use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A held lock; released on drop (or by the kernel when the process dies).
#[derive(Debug)]
pub struct HomeLock {
    _file: Flock<File>,
    pub path: PathBuf,
}

/// The lock file of `role` under `home`.
pub fn lock_path(home: &Path, role: &str) -> PathBuf {
    home.join(format!("{role}.lock"))
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Take `role`'s lock under `home`. `Ok(None)` when our parent process
/// holds it (we are a child it supervises); an error naming the holder
/// when anyone else does.
pub fn acquire(home: &Path, role: &str) -> anyhow::Result<Option<HomeLock>> {
    let path = lock_path(home, role);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open lock file {}: {e}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut locked) => {
            // The pid is for the message a second start prints; the lock
            // itself is the flock, not the file's content.
            locked
                .set_len(0)
                .and_then(|_| locked.rewind())
                .and_then(|_| writeln!(locked, "{}", std::process::id()))
                .map_err(|e| anyhow::anyhow!("cannot write lock file {}: {e}", path.display()))?;
            Ok(Some(HomeLock { _file: locked, path }))
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let holder = read_pid(&mut file);
            let parent = nix::unistd::getppid().as_raw() as u32;
            if holder == Some(parent) {
                tracing::debug!(role, parent, "lock held by the supervising parent; running under it");
                return Ok(None);
            }
            let who = holder.map_or_else(|| "another process".to_string(), |p| format!("pid {p}"));
            anyhow::bail!(
                "another decnet {role} is already running on {} ({who} holds {}); stop it first, or give this one its own DECNET_HOME",
                home.display(),
                path.display()
            )
        }
        Err((_, e)) => anyhow::bail!("cannot lock {}: {e}", path.display()),
    }
}

/// The pid holding `role`'s lock under `home`, if anyone does. (Probes by
/// taking the lock for an instant: flock has no query.)
pub fn holder(home: &Path, role: &str) -> anyhow::Result<Option<u32>> {
    let path = lock_path(home, role);
    let file = match std::fs::OpenOptions::new().read(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("cannot open lock file {}: {e}", path.display()),
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_free) => Ok(None),
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => Ok(Some(read_pid(&mut file).unwrap_or(0))),
        Err((_, e)) => anyhow::bail!("cannot probe lock {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_in_another_open_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(holder(dir.path(), "mutator").unwrap(), None);
        let held = acquire(dir.path(), "mutator").unwrap().expect("first lock");
        assert_eq!(holder(dir.path(), "mutator").unwrap(), Some(std::process::id()));
        let err = acquire(dir.path(), "mutator").unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        // Another role is independent.
        let api = acquire(dir.path(), "api").unwrap();
        assert!(api.is_some());
        drop(held);
        assert_eq!(holder(dir.path(), "mutator").unwrap(), None);
        assert!(acquire(dir.path(), "mutator").unwrap().is_some());
    }
}
