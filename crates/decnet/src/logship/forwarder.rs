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

const RETRY: Duration = Duration::from_millis(500);
const TAIL_POLL: Duration = Duration::from_millis(100);

pub struct ForwarderConfig {
    pub master: String,
    pub server_name: String,
    pub tls: tokio_rustls::rustls::ClientConfig,
    pub log: PathBuf,
    pub state: PathBuf,
}

pub async fn run(config: ForwarderConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let server_name = ServerName::try_from(config.server_name.clone())
        .with_context(|| format!("--server-name {:?} is not a DNS name or IP address", config.server_name))?;
    let connector = TlsConnector::from(Arc::new(config.tls));
    let config = Arc::new((config.master, config.log, config.state));
    let mut logged = false;
    let gaps = AtomicU64::new(0);
    // Ready before the first connection: a master that is down for hours
    // must not fail the unit's start; the forwarder retries by itself.
    decnet_bus::sdk::notify_ready(&format!("shipping to {}", config.0), shutdown.clone());
    while !shutdown.is_cancelled() {
        let attempt = ship(&connector, server_name.clone(), &config.0, &config.1, &config.2, &gaps, &shutdown);
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) => {
                if !logged {
                    tracing::warn!(master = %config.0, error = %format!("{e:#}"), "shipping interrupted; retrying");
                }
                logged = true;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(RETRY) => {}
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
async fn ship(
    connector: &TlsConnector,
    name: ServerName<'static>,
    master: &str,
    log: &Path,
    state: &Path,
    gaps: &AtomicU64,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let tcp = tokio::net::TcpStream::connect(master).await.with_context(|| format!("cannot reach {master}"))?;
    let tls = connector.connect(name, tcp).await.context("TLS handshake with the listener failed")?;
    let (rd, mut wr) = tokio::io::split(tls);
    let mut rd = BufReader::new(rd);
    let (m_inode, m_offset) = frame::read_control(&mut rd, "RESUME")
        .await?
        .ok_or_else(|| anyhow::anyhow!("listener closed before RESUME"))?;
    tracing::info!(master, inode = m_inode, offset = m_offset, "connected; resuming where the master is");

    // Acks: persist what the master has, in the background.
    let state_path = state.to_path_buf();
    let acks = tokio::spawn(async move {
        while let Ok(Some((inode, offset))) = frame::read_control(&mut rd, "ACK").await {
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
