//! What a session does with what its attacker brings: the shell's
//! [`ShellEvent`]s after each command line, and the files scp and sftp
//! receive.
//!
//! - Every `Download` becomes one `download` line (`url`, `tool`, `path`,
//!   `fetch`). Fetching off (the default): `fetch=off`, nothing else.
//!   Fetching on: the payload is fetched by a task of its own (bounded in
//!   size and time, [`crate::fetch`]), stored in the quarantine, the
//!   `download` line says how that went (`denied <reason>`, `stored`,
//!   `failed <cause>`), an `artifact` line follows a stored payload, and the
//!   file appears in the session filesystem where the tool would have left
//!   it before the next command line runs.
//! - Every file written in the shell (`echo … > f`, `cat > f`, `base64 -d >
//!   f` …) and every scp/sftp upload is stored as an `upload` artifact.
//!
//! All these lines go through [`crate::event::Session::emit`]: the
//! session's log budget and the RFC 5424 formatter (escaped, capped: a URL
//! or file name can never split a line).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::artifacts::{Artifacts, SessionQuota, Stored};
use crate::event::{self, SharedSession};
use crate::fetch::{self, FetchError};
use crate::rfc5424::Severity;
use crate::shell::fs::{Content, Node};
use crate::shell::{Shell, ShellEvent};

/// Fetches one session may start; later downloads are `denied`.
pub const MAX_FETCHES_PER_SESSION: usize = 16;

/// Longest URL kept in a line (the shell keeps 2048 characters of it).
const MAX_URL_CHARS: usize = 2048;

/// The part of a session's capture that tasks can hold: where lines go and
/// what the session may still store.
#[derive(Clone)]
pub struct Capturer {
    session: SharedSession,
    artifacts: Option<Arc<Artifacts>>,
    quota: Arc<SessionQuota>,
}

/// A fetched file on its way into the session filesystem.
struct Arrival {
    path: String,
    bytes: Vec<u8>,
}

pub struct Capture {
    capturer: Capturer,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    pending: Vec<JoinHandle<()>>,
    fetches: usize,
}

impl Capturer {
    /// Whether files are kept at all (the decky has a quarantine).
    pub fn enabled(&self) -> bool {
        self.artifacts.is_some()
    }

    /// Store `bytes` (written at `path` in the session filesystem) as an
    /// upload artifact, off the async threads; the `artifact` line follows.
    pub fn upload(&self, path: &str, bytes: Vec<u8>) -> Option<JoinHandle<()>> {
        let artifacts = self.artifacts.clone()?;
        let (session, quota, path) = (self.session.clone(), self.quota.clone(), path.to_string());
        Some(tokio::task::spawn_blocking(move || match artifacts.store.store(&quota, &bytes) {
            Ok(stored) => artifact_line(&session, "upload", None, &path, &stored),
            Err(e) => {
                tracing::debug!("upload {path} not stored: {e}");
                event::with(&session, |s| {
                    s.emit(
                        "artifact_dropped",
                        Severity::Warning,
                        vec![("path", path.clone()), ("size", bytes.len().to_string()), ("reason", e.to_string())],
                        Some(format!("upload {path} not stored: {e}")),
                    )
                });
            }
        }))
    }
}

impl Capture {
    pub fn new(session: &SharedSession) -> Capture {
        let artifacts = event::with(session, |s| s.context().artifacts.clone());
        Capture {
            capturer: Capturer { session: session.clone(), artifacts, quota: Arc::new(SessionQuota::default()) },
            arrivals: Arc::default(),
            pending: Vec::new(),
            fetches: 0,
        }
    }

    /// A handle for tasks that store uploads (sftp, scp).
    pub fn capturer(&self) -> Capturer {
        self.capturer.clone()
    }

    /// Before a command line runs: files fetched since the last one appear
    /// where the tool would have saved them.
    pub fn settle(&self, shell: &mut Shell) {
        let arrived = std::mem::take(&mut *self.arrivals.lock().unwrap_or_else(|e| e.into_inner()));
        for a in arrived {
            // A full session filesystem (or a folder removed meanwhile)
            // leaves the file out, as a real disk would have.
            let _ = shell.fs.put(&a.path, Node::file(a.bytes, 0o644, shell.uid, crate::shell::now()));
        }
    }

    /// After a command line ran: record and act on what the shell saw.
    pub fn drain(&mut self, shell: &mut Shell) {
        self.pending.retain(|t| !t.is_finished());
        let mut written = BTreeSet::new();
        for e in shell.take_events() {
            match e {
                ShellEvent::Download { url, tool, path } => self.download(url, tool, path),
                ShellEvent::FileWritten { path } => {
                    written.insert(path);
                }
            }
        }
        // A loop appending to one file gives one artifact: its last content.
        for path in written {
            if let Some(Node { content: Content::File(bytes), .. }) = shell.fs.stat(&path) {
                if !bytes.is_empty() {
                    if let Some(task) = self.capturer.upload(&path, bytes.clone()) {
                        self.pending.push(task);
                    }
                }
            }
        }
    }

    fn download(&mut self, url: String, tool: String, path: Option<String>) {
        let url: String = url.chars().take(MAX_URL_CHARS).collect();
        let session = self.capturer.session.clone();
        let artifacts = match &self.capturer.artifacts {
            Some(a) if a.fetch.enabled => a.clone(),
            _ => return download_line(&session, &url, &tool, path.as_deref(), "off"),
        };
        if self.fetches >= MAX_FETCHES_PER_SESSION {
            return download_line(&session, &url, &tool, path.as_deref(), "denied session fetch limit");
        }
        self.fetches += 1;
        let (quota, arrivals) = (self.capturer.quota.clone(), self.arrivals.clone());
        self.pending.push(tokio::spawn(async move {
            let settings = &artifacts.fetch;
            let fetched =
                match tokio::time::timeout(settings.timeout, artifacts.fetch_slots.clone().acquire_owned()).await {
                    Ok(Ok(_slot)) => fetch::fetch(settings, &tool, &url).await,
                    _ => Err(FetchError::Failed("too many fetches in flight".into())),
                };
            let bytes = match fetched {
                Ok(bytes) => bytes,
                Err(FetchError::Denied(reason)) => {
                    return download_line(&session, &url, &tool, path.as_deref(), &format!("denied {reason}"))
                }
                Err(FetchError::Failed(cause)) => {
                    return download_line(&session, &url, &tool, path.as_deref(), &format!("failed {cause}"))
                }
            };
            let store = artifacts.clone();
            let stored = tokio::task::spawn_blocking(move || {
                let stored = store.store.store(&quota, &bytes);
                (stored, bytes)
            })
            .await;
            match stored {
                Ok((Ok(stored), bytes)) => {
                    // The file is in place for the next command line before
                    // the lines announce it.
                    if let Some(path) = path.clone() {
                        // Held until the next command line: bounded by what
                        // the session filesystem could take anyway.
                        let mut pending = arrivals.lock().unwrap_or_else(|e| e.into_inner());
                        let held: usize = pending.iter().map(|a| a.bytes.len()).sum();
                        if held + bytes.len() <= crate::shell::fs::FsLimits::default().max_bytes {
                            pending.push(Arrival { path, bytes });
                        }
                    }
                    download_line(&session, &url, &tool, path.as_deref(), "stored");
                    artifact_line(&session, "url", Some(&url), path.as_deref().unwrap_or("-"), &stored);
                }
                Ok((Err(e), _)) => download_line(&session, &url, &tool, path.as_deref(), &format!("failed {e}")),
                Err(e) => download_line(&session, &url, &tool, path.as_deref(), &format!("failed {e}")),
            }
        }));
    }

    /// Wait for the fetches and stores in flight (at most the fetch time
    /// limit and a little more), so their lines belong to the session.
    pub async fn finish(&mut self) {
        let limit =
            self.capturer.artifacts.as_ref().map_or(Duration::ZERO, |a| a.fetch.timeout) + Duration::from_secs(5);
        let pending = std::mem::take(&mut self.pending);
        let _ = tokio::time::timeout(limit, async {
            for task in pending {
                let _ = task.await;
            }
        })
        .await;
    }
}

fn download_line(session: &SharedSession, url: &str, tool: &str, path: Option<&str>, verdict: &str) {
    event::with(session, |s| {
        s.emit(
            "download",
            Severity::Warning,
            vec![
                ("url", url.to_string()),
                ("tool", tool.to_string()),
                ("path", path.unwrap_or("-").to_string()),
                ("fetch", verdict.to_string()),
            ],
            Some(format!("{tool} {url} fetch={verdict}")),
        )
    });
}

fn artifact_line(session: &SharedSession, source: &str, url: Option<&str>, path: &str, stored: &Stored) {
    let mut fields = vec![("source", source.to_string())];
    if let Some(url) = url {
        fields.push(("url", url.to_string()));
    }
    fields.extend([
        ("path", path.to_string()),
        ("sha256", stored.sha256.clone()),
        ("size", stored.size.to_string()),
        ("mime", stored.mime.to_string()),
    ]);
    event::with(session, |s| {
        s.emit(
            "artifact",
            Severity::Warning,
            fields,
            Some(format!("{source} {path} sha256={} {} bytes {}", stored.sha256, stored.size, stored.mime)),
        )
    });
}
