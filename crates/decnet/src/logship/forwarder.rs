//! `decnet forwarder`: tail this host's ingest log and ship it to the
//! master's listener.
//!
//! The cursor is (inode, offset). On every connection the listener says
//! where its data for us ends (`RESUME`), which is where shipping starts:
//! that file if it is still the ingest log, or the rotated `<log>.1` when
//! the master was still on it. Only whole lines are shipped. When the
//! ingest log is replaced (rotation), the old file is read to its end and
//! then the new one from byte 0. The offset the master acknowledged is
//! persisted in the state file (`--state`) for the operator and for
//! tooling; it is never ahead of what the master holds.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, AsyncWriteExt, BufReader};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use super::frame;

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
    while !shutdown.is_cancelled() {
        let attempt = ship(&connector, server_name.clone(), &config.0, &config.1, &config.2, &shutdown);
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

fn inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

fn rotated(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

fn save_state(state: &Path, inode: u64, offset: u64) -> std::io::Result<()> {
    let tmp = state.with_extension("tmp");
    std::fs::write(&tmp, serde_json::json!({"inode": inode, "offset": offset}).to_string())?;
    std::fs::rename(tmp, state)
}

/// One connection: resume, then ship until an error or shutdown.
async fn ship(
    connector: &TlsConnector,
    name: ServerName<'static>,
    master: &str,
    log: &Path,
    state: &Path,
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
        // Which file to start from.
        while inode(log).is_none() {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(TAIL_POLL) => {}
            }
        }
        let (mut path, mut offset) = if inode(log) == Some(m_inode) {
            (log.to_path_buf(), m_offset)
        } else if m_inode != 0 && inode(&rotated(log)) == Some(m_inode) {
            (rotated(log), m_offset)
        } else {
            if m_inode != 0 {
                tracing::warn!(
                    inode = m_inode,
                    "the file the master was on is gone; shipping the ingest log from the start"
                );
            }
            (log.to_path_buf(), 0)
        };
        loop {
            let file = tokio::fs::File::open(&path).await?;
            let ino = file.metadata().await?.ino();
            let mut reader = BufReader::new(file);
            reader.seek(std::io::SeekFrom::Start(offset)).await?;
            let mut out = Vec::new();
            frame::encode(format!("{}{ino} {offset}", frame::POS_PREFIX).as_bytes(), &mut out);
            wr.write_all(&out).await?;
            wr.flush().await?;
            let mut line = Vec::new();
            let mut pending = Vec::new();
            loop {
                let n = reader.read_until(b'\n', &mut line).await?;
                if n > 0 && line.last() == Some(&b'\n') {
                    offset += line.len() as u64;
                    let body = &line[..line.len() - 1];
                    if body.is_empty() {
                        // RFC 5425 has no empty message; mark the skip so
                        // the master's position stays exact.
                        frame::encode(format!("{}{ino} {offset}", frame::POS_PREFIX).as_bytes(), &mut pending);
                    } else {
                        frame::encode(body, &mut pending);
                    }
                    line.clear();
                    if pending.len() < 64 * 1024 {
                        continue;
                    }
                }
                if !pending.is_empty() {
                    wr.write_all(&pending).await?;
                    wr.flush().await?;
                    pending.clear();
                }
                if n > 0 {
                    continue; // a partial line stays in `line` until its LF arrives
                }
                // At the end of this file: rotated away (and read to the end)?
                if line.is_empty() && inode(log).is_some_and(|now| now != ino) {
                    // `log` was renamed to `log.1`: continue with the new `log`.
                    path = log.to_path_buf();
                    offset = 0;
                    tracing::info!(file = %path.display(), "ingest log rotated; shipping the new file");
                    break;
                }
                if acks.is_finished() {
                    anyhow::bail!("the listener closed the connection");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(TAIL_POLL) => {}
                }
            }
        }
    }
    .await;
    acks.abort();
    result
}
