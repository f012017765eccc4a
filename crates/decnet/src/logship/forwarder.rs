//! `decnet forwarder`: tail this host's ingest log and ship it to the
//! master's listener.
//!
//! The cursor is (inode, offset). On every connection the listener says
//! where its data for us ends (`RESUME`), which is where shipping starts:
//! that file wherever it is now (the ingest log, or `<log>.1`, `<log>.2`…
//! after rotations while the forwarder was down; see
//! [`crate::ingest::rotation`]). Only whole lines are shipped. When the
//! ingest log is replaced (rotation), the old file is read to its end and
//! then every later generation in order, each from byte 0.
//!
//! Copytruncate: the file shrinks (or refills past the position) under the
//! reader, which [`Tail`] notices before reading on, so no torn half-line
//! is shipped. The lines the forwarder had not read yet are in logrotate's
//! copy at the same offsets: it finds the copy, ships the rest of it under
//! the truncated file's identity (the copy's bytes are that file's bytes,
//! so the master's position stays true), then the truncated file from 0.
//! Lines written between the copy and the truncation are in neither file;
//! gaps like that, or a file gone before it was shipped, are logged at WARN
//! with a running count. The offset the master acknowledged is persisted
//! in the state file (`--state`, 0600) for the operator and for tooling;
//! it is never ahead of what the master holds.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use super::frame;
use crate::ingest::rotation::{self, Generation};
use crate::ingest::tail::{self, Step, Tail};

const TAIL_POLL: Duration = Duration::from_millis(100);
/// First wait after a failed or lost connection.
pub const RETRY_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(60);

/// Exponential back-off between connection attempts: `first`, doubling to
/// `max`, each wait jittered ±20% so sensors refused together (a listener
/// restart, a revoked batch) do not come back in lockstep. A refused
/// forwarder (revoked, wrong CA, listener down) thus tries ~10 times in
/// its first ten minutes, not 1,200. Each step is logged once; at the cap
/// further failures are quiet until a connection succeeds ([`reset`]).
///
/// [`reset`]: Backoff::reset
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    /// The un-jittered wait of the next failure.
    step: Duration,
    /// Whether the step at the cap has been logged.
    capped_logged: bool,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        let first = first.min(max);
        Backoff { first, max, step: first, capped_logged: false }
    }

    /// The wait before the next attempt, and whether to log this failure.
    pub fn after_failure(&mut self) -> (Duration, bool) {
        let step = self.step;
        let log = step < self.max || !std::mem::replace(&mut self.capped_logged, true);
        self.step = (step * 2).min(self.max);
        let jitter = rand::random_range(0.8..1.2);
        (step.mul_f64(jitter).min(self.max), log)
    }

    /// A connection succeeded: the next failure starts over at `first`.
    pub fn reset(&mut self) {
        *self = Backoff::new(self.first, self.max);
    }
}

pub struct ForwarderConfig {
    pub master: String,
    pub server_name: String,
    pub tls: tokio_rustls::rustls::ClientConfig,
    pub log: PathBuf,
    pub state: PathBuf,
    /// Back-off between connection attempts, see [`Backoff`].
    pub retry_first: Duration,
    pub retry_max: Duration,
    pub stats: Arc<ForwarderStats>,
}

/// What the forwarder reports (heartbeat and `/metrics`).
#[derive(Debug, Default)]
pub struct ForwarderStats {
    /// Connections to the listener that got as far as RESUME.
    pub connects: AtomicU64,
    /// Lines written to the listener.
    pub lines_shipped: AtomicU64,
    /// Stretches of the log lost before they were shipped.
    pub gaps: AtomicU64,
    /// The listener's last acknowledgement: file identity and offset.
    acked_inode: AtomicU64,
    acked_offset: AtomicU64,
}

impl ForwarderStats {
    /// Heartbeat fields. `lag_bytes` is measured now against the ingest
    /// log: its size past the acknowledged offset when the master is on
    /// that file, its whole size when the master is still on an older one
    /// (a lower bound then); absent before the first acknowledgement.
    pub fn health(&self, log: &Path) -> serde_json::Map<String, serde_json::Value> {
        use std::os::unix::fs::MetadataExt;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut m = serde_json::Map::new();
        m.insert("connects".into(), get(&self.connects).into());
        m.insert("reconnects".into(), get(&self.connects).saturating_sub(1).into());
        m.insert("lines_shipped".into(), get(&self.lines_shipped).into());
        m.insert("gaps".into(), get(&self.gaps).into());
        let (inode, offset) = (get(&self.acked_inode), get(&self.acked_offset));
        if inode != 0 {
            if let Ok(meta) = std::fs::metadata(log) {
                let lag = if meta.ino() == inode { meta.len().saturating_sub(offset) } else { meta.len() };
                m.insert("lag_bytes".into(), lag.into());
            }
        }
        m
    }
}

pub async fn run(config: ForwarderConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let server_name = ServerName::try_from(config.server_name.clone())
        .with_context(|| format!("--server-name {:?} is not a DNS name or IP address", config.server_name))?;
    let connector = TlsConnector::from(Arc::new(config.tls));
    let mut backoff = Backoff::new(config.retry_first, config.retry_max);
    let stats = config.stats;
    let config = Arc::new((config.master, config.log, config.state));
    // Ready before the first connection: a master that is down for hours
    // must not fail the unit's start; the forwarder retries by itself.
    decnet_bus::sdk::notify_ready(&format!("shipping to {}", config.0), shutdown.clone());
    while !shutdown.is_cancelled() {
        let mut connected = false;
        let attempt =
            ship(&connector, server_name.clone(), &config.0, &config.1, &config.2, &stats, &shutdown, &mut connected);
        let error = match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) => format!("{e:#}"),
        };
        if connected {
            backoff.reset();
        }
        let (wait, log) = backoff.after_failure();
        if log {
            let at_cap = if wait >= backoff.max { " (the longest wait: further failures are not logged)" } else { "" };
            tracing::warn!(master = %config.0, %error, "shipping interrupted; retrying in {:.1}s{at_cap}", wait.as_secs_f64());
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    Ok(())
}

/// A gap no reader could avoid: counted and logged at WARN.
fn gap(gaps: &AtomicU64, what: &str) {
    let total = gaps.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::warn!(gaps = total, "shipping gap: {what}");
}

/// A reader of `generation` from `offset`. The master acknowledges whole
/// lines only, so a non-zero resume offset follows an LF: that is the
/// check a file truncated and refilled meanwhile most likely fails.
fn open_tail(log: &Path, generation: &Generation, offset: u64, check: Vec<u8>) -> std::io::Result<Tail> {
    let check = if check.is_empty() && offset > 0 { b"\n".to_vec() } else { check };
    Tail::new(log, std::fs::File::open(&generation.path)?, offset, check, frame::MAX_MSG)
}

/// Where shipping starts: the master's file wherever rotation moved it, or
/// the ingest log from the start.
fn start_tail(log: &Path, m_inode: u64, m_offset: u64, gaps: &AtomicU64) -> std::io::Result<Option<Tail>> {
    if m_inode != 0 {
        if let Some(g) = rotation::find(log, m_inode) {
            return open_tail(log, &g, m_offset, Vec::new()).map(Some);
        }
    }
    let Some(current) = rotation::chain(log).pop().filter(|g| g.path == log) else { return Ok(None) };
    if m_inode != 0 {
        gap(
            gaps,
            &format!("the file the master was on (inode {m_inode}) is gone; shipping the ingest log from the start"),
        );
    }
    open_tail(log, &current, 0, Vec::new()).map(Some)
}

fn save_state(state: &Path, inode: u64, offset: u64) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = state.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(crate::state_dir::FILE_MODE)
        .open(&tmp)?;
    f.write_all(serde_json::json!({"inode": inode, "offset": offset}).to_string().as_bytes())?;
    // A tmp file left 0644 by an older version keeps its mode through open.
    crate::state_dir::tighten(&tmp, crate::state_dir::FILE_MODE)?;
    std::fs::rename(tmp, state)
}

/// One connection: resume, then ship until an error or shutdown.
/// `connected` is set once the listener has accepted us (said RESUME).
#[allow(clippy::too_many_arguments)]
async fn ship(
    connector: &TlsConnector,
    name: ServerName<'static>,
    master: &str,
    log: &Path,
    state: &Path,
    stats: &Arc<ForwarderStats>,
    shutdown: &CancellationToken,
    connected: &mut bool,
) -> anyhow::Result<()> {
    let gaps = &stats.gaps;
    let tcp = tokio::net::TcpStream::connect(master).await.with_context(|| format!("cannot reach {master}"))?;
    let tls = connector.connect(name, tcp).await.context("TLS handshake with the listener failed")?;
    let (rd, mut wr) = tokio::io::split(tls);
    let mut rd = BufReader::new(rd);
    let (m_inode, m_offset) = frame::read_control(&mut rd, "RESUME")
        .await?
        .ok_or_else(|| anyhow::anyhow!("listener closed before RESUME"))?;
    *connected = true;
    tracing::info!(master, inode = m_inode, offset = m_offset, "connected; resuming where the master is");
    stats.connects.fetch_add(1, Ordering::Relaxed);
    stats.acked_inode.store(m_inode, Ordering::Relaxed);
    stats.acked_offset.store(m_offset, Ordering::Relaxed);

    // Acks: persist what the master has, in the background.
    let state_path = state.to_path_buf();
    let acked = stats.clone();
    let acks = tokio::spawn(async move {
        while let Ok(Some((inode, offset))) = frame::read_control(&mut rd, "ACK").await {
            acked.acked_inode.store(inode, Ordering::Relaxed);
            acked.acked_offset.store(offset, Ordering::Relaxed);
            if let Err(e) = save_state(&state_path, inode, offset) {
                tracing::warn!(error = %e, "cannot write the forwarder state file");
            }
        }
    });
    let result: anyhow::Result<()> = async {
        let mut tail = loop {
            if let Some(t) = start_tail(log, m_inode, m_offset, gaps)? {
                break t;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(TAIL_POLL) => {}
            }
        };
        // The identity shipped lines are filed under: the file's inode,
        // except while shipping the rest of a copytruncate copy (then the
        // truncated file's, whose bytes the copy holds).
        let mut ident = tail.inode();
        let mut out = Vec::new();
        frame::encode(format!("{}{ident} {}", frame::POS_PREFIX, tail.position().offset).as_bytes(), &mut out);
        wr.write_all(&out).await?;
        wr.flush().await?;
        loop {
            match tail.read()? {
                Step::Lines(chunk) => {
                    let mut pending = Vec::new();
                    if chunk.skipped_overlong {
                        gap(gaps, &format!("a line over {} bytes at offset {} was skipped", frame::MAX_MSG, chunk.start));
                        frame::encode(format!("{}{ident} {}", frame::POS_PREFIX, chunk.end).as_bytes(), &mut pending);
                    }
                    let mut offset = chunk.start;
                    for line in chunk.data.split_inclusive(|b| *b == b'\n') {
                        offset += line.len() as u64;
                        let body = &line[..line.len() - 1];
                        if body.is_empty() {
                            // RFC 5425 has no empty message; mark the skip so
                            // the master's position stays exact.
                            frame::encode(format!("{}{ident} {offset}", frame::POS_PREFIX).as_bytes(), &mut pending);
                        } else {
                            frame::encode(body, &mut pending);
                            stats.lines_shipped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tail.advance(&chunk);
                    wr.write_all(&pending).await?;
                    wr.flush().await?;
                }
                Step::Idle | Step::Rotated => {
                    if acks.is_finished() {
                        anyhow::bail!("the listener closed the connection");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(TAIL_POLL) => {}
                    }
                }
                Step::Finished => {
                    let Some(next) = rotation::successor(log, tail.inode(), tail.modified()) else {
                        tokio::time::sleep(TAIL_POLL).await;
                        continue;
                    };
                    tracing::info!(file = %next.path.display(), "ingest log rotated; shipping the next file");
                    tail = open_tail(log, &next, 0, Vec::new())?;
                    ident = tail.inode();
                    let mut out = Vec::new();
                    frame::encode(format!("{}{ident} 0", frame::POS_PREFIX).as_bytes(), &mut out);
                    wr.write_all(&out).await?;
                }
                Step::Truncated => {
                    let (inode, offset, check) = (tail.inode(), tail.position().offset, tail.check().to_vec());
                    let copy = rotation::chain(log).into_iter().rev().find(|g| {
                        g.inode != inode
                            && g.len >= offset
                            && std::fs::File::open(&g.path).and_then(|f| tail::holds(&f, offset, &check)).unwrap_or(false)
                    });
                    match copy {
                        Some(copy) => {
                            tracing::warn!(copy = %copy.path.display(), offset,
                                "ingest log truncated in place (copytruncate); shipping the rest of its copy first");
                            // Same identity and offset: the master sees no jump.
                            tail = open_tail(log, &copy, offset, check)?;
                        }
                        None => {
                            gap(gaps, &format!("the ingest log was truncated in place at byte {offset} and no rotated copy holds what followed"));
                            let Some(current) = rotation::find(log, inode).or_else(|| rotation::chain(log).pop()) else {
                                anyhow::bail!("the ingest log is gone");
                            };
                            tail = open_tail(log, &current, 0, Vec::new())?;
                            ident = tail.inode();
                            let mut out = Vec::new();
                            frame::encode(format!("{}{ident} 0", frame::POS_PREFIX).as_bytes(), &mut out);
                            wr.write_all(&out).await?;
                        }
                    }
                }
            }
        }
    }
    .await;
    acks.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_to_the_cap_logs_each_step_once_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        let steps = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0];
        let mut logged = Vec::new();
        for want in steps {
            let (wait, log) = b.after_failure();
            let w = wait.as_secs_f64();
            assert!(w >= want * 0.8 - 1e-9 && w <= (want * 1.2).min(60.0) + 1e-9, "wait {w} for step {want}");
            logged.push(log);
        }
        // Every growing step once, the cap once, then quiet.
        assert_eq!(logged, [true, true, true, true, true, true, true, true, false, false]);
        b.reset();
        let (wait, log) = b.after_failure();
        assert!(wait <= Duration::from_millis(600) && log, "after a success it starts over: {wait:?}");
    }
}
