//! Container stdout as a collector source: where a Docker daemon is
//! reachable, the output of every running container labelled
//! `decnet.fleet.service=true` goes into the same queue as a syslog line
//! (so parsing, noise, dedup, both files and the bus apply alike).
//!
//! Discovery re-lists the labelled containers every `poll` (default 2 s)
//! instead of watching `GET /events`: the list is the truth after any
//! reconnect (events missed while the daemon was away need no replay),
//! there is one code path for "new", "gone" and "back", and no line is
//! lost to the delay because a new container is read from the collector's
//! start time (`since`), not from when it was noticed. The cost is one
//! small request per poll.
//!
//! Each followed container has its own task and connection. A follow ends
//! when the container stops (the daemon closes the stream), when it is no
//! longer listed (the task is aborted), or on an error; the next poll
//! starts it again if the container still runs, from its cursor (see
//! [`stream`]), so a daemon restart reads nothing twice. The poll is the
//! per-container retry delay; the daemon itself is retried with backoff
//! (0.5 s doubling to 30 s).
//!
//! Fairness: lines go into the shared bounded queue with `send().await`,
//! like a TCP connection's, but all containers together may hold at most
//! half of it (a fair semaphore whose permit travels with the line and is
//! given back when the pipeline drops it), and one source's share of its
//! memory budget ([`super::budget`]). So a chatty container waits its
//! turn behind the other containers (the daemon buffers its log), and the
//! other half stays free for UDP, which cannot wait and would otherwise be
//! dropped while a container keeps the queue full.

pub mod api;
pub mod stream;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::api::{ContainerSummary, DockerApi};
use self::stream::{Cursor, Item, LogDecoder};
use super::stats::{DockerState, Stats};
use super::Incoming;

/// The socket Docker listens on by default.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// The source address container lines carry in the pipeline (they have no
/// network sender; per-source drop counters are for network senders).
pub const SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// Containers followed at once, at most (each holds a task and a connection).
pub const MAX_FOLLOWED: usize = 1024;
/// Cursors kept for containers not followed now (stopped, or the daemon
/// away); the oldest are forgotten first.
const MAX_CURSORS: usize = 4096;
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct DockerConfig {
    pub socket: PathBuf,
    /// Re-list period (and the per-container retry delay).
    pub poll: Duration,
}

/// The daemon's socket: `--docker-socket`, else `DOCKER_HOST=unix://…`,
/// else [`DEFAULT_SOCKET`]. Any other `DOCKER_HOST` scheme is an error
/// (only a local socket is spoken).
pub fn resolve_socket(flag: Option<&Path>, docker_host: Option<&str>) -> Result<PathBuf, String> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    match docker_host.map(str::trim).filter(|h| !h.is_empty()) {
        None => Ok(PathBuf::from(DEFAULT_SOCKET)),
        Some(h) => match h.strip_prefix("unix://") {
            Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => Err(format!("DOCKER_HOST={h} is not a unix:// socket (use --docker-socket)")),
        },
    }
}

fn now_nanos() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or_default()
}

/// Follow labelled containers until `shutdown`.
pub async fn run(
    config: DockerConfig,
    queue: mpsc::Sender<Incoming>,
    queue_len: usize,
    budget: Arc<super::budget::ByteBudget>,
    max_line: usize,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) {
    let api = Arc::new(DockerApi::new(&config.socket));
    let path = config.socket.display().to_string();
    // Lines written before the collector started are not read (they would
    // be read again at every restart).
    let start = Cursor::at(now_nanos());
    let mut source = Source {
        api: api.clone(),
        followed: HashMap::new(),
        cursors: HashMap::new(),
        start,
        queue,
        share: Arc::new(Semaphore::new((queue_len / 2).max(1))),
        budget,
        max_line,
        stats: stats.clone(),
        shutdown: shutdown.clone(),
        warned_full: false,
    };
    let mut backoff = BACKOFF_START;
    let mut ever_connected = false;
    stats.set_docker_state(DockerState::Unreachable);
    loop {
        let listed = tokio::select! {
            _ = shutdown.cancelled() => break,
            l = api.list_labelled() => l,
        };
        let delay = match listed {
            Ok(list) => {
                if stats.docker_state() != DockerState::Connected {
                    if ever_connected {
                        Stats::inc(&stats.docker_reconnects);
                    }
                    ever_connected = true;
                    tracing::info!(
                        "docker: daemon at {path} answers; following containers labelled {}=true",
                        api::LABEL
                    );
                }
                stats.set_docker_state(DockerState::Connected);
                backoff = BACKOFF_START;
                source.reconcile(list);
                config.poll
            }
            Err(e) => {
                match stats.docker_state() {
                    DockerState::Connected => {
                        tracing::warn!("docker: lost the daemon at {path} ({e}); retrying with backoff")
                    }
                    _ if !ever_connected && backoff == BACKOFF_START => {
                        tracing::warn!("docker: no daemon at {path} ({e}); container ingestion off until one answers")
                    }
                    _ => tracing::debug!("docker: still no daemon at {path} ({e})"),
                }
                stats.set_docker_state(DockerState::Unreachable);
                let d = backoff;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                d
            }
        };
        stats.docker_containers.store(source.followed.len() as u64, std::sync::atomic::Ordering::Relaxed);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    for (_, task) in source.followed.drain() {
        task.abort();
        let _ = task.await;
    }
    stats.docker_containers.store(0, std::sync::atomic::Ordering::Relaxed);
}

/// The followed containers and what a new follower needs.
struct Source {
    api: Arc<DockerApi>,
    followed: HashMap<String, JoinHandle<()>>,
    cursors: HashMap<String, Arc<Mutex<Cursor>>>,
    start: Cursor,
    queue: mpsc::Sender<Incoming>,
    /// The containers' share of the queue.
    share: Arc<Semaphore>,
    /// The queue's memory budget (containers hold one source's share of it).
    budget: Arc<super::budget::ByteBudget>,
    max_line: usize,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    warned_full: bool,
}

impl Source {
    /// Follow what is listed and not followed; stop following what is gone.
    fn reconcile(&mut self, list: Vec<ContainerSummary>) {
        let listed: HashMap<&str, &ContainerSummary> = list.iter().map(|c| (c.id.as_str(), c)).collect();
        self.followed.retain(|id, task| {
            let keep = listed.contains_key(id.as_str()) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for c in &list {
            if self.followed.contains_key(&c.id) {
                continue;
            }
            if self.followed.len() >= MAX_FOLLOWED {
                if !self.warned_full {
                    self.warned_full = true;
                    tracing::warn!("docker: {MAX_FOLLOWED} containers followed already; the others are not read");
                }
                break;
            }
            let start = self.start;
            let cursor = self.cursors.entry(c.id.clone()).or_insert_with(|| Arc::new(Mutex::new(start))).clone();
            let follower = Follower {
                api: self.api.clone(),
                id: c.id.clone(),
                name: c.name(),
                cursor,
                queue: self.queue.clone(),
                share: self.share.clone(),
                budget: self.budget.clone(),
                max_line: self.max_line,
                stats: self.stats.clone(),
                shutdown: self.shutdown.clone(),
            };
            self.followed.insert(c.id.clone(), tokio::spawn(follower.run()));
        }
        if self.cursors.len() > MAX_CURSORS {
            let mut idle: Vec<(i128, String)> = self
                .cursors
                .iter()
                .filter(|(id, _)| !self.followed.contains_key(*id))
                .map(|(id, c)| (c.lock().unwrap_or_else(|e| e.into_inner()).ts, id.clone()))
                .collect();
            idle.sort();
            let excess = self.cursors.len() - MAX_CURSORS;
            for (_, id) in idle.into_iter().take(excess) {
                self.cursors.remove(&id);
            }
        }
    }
}

struct Follower {
    api: Arc<DockerApi>,
    id: String,
    name: String,
    cursor: Arc<Mutex<Cursor>>,
    queue: mpsc::Sender<Incoming>,
    share: Arc<Semaphore>,
    budget: Arc<super::budget::ByteBudget>,
    max_line: usize,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
}

impl Follower {
    async fn run(self) {
        match self.follow().await {
            Ok(()) => tracing::info!(container = %self.name, "docker: container log ended; no longer followed"),
            Err(e) => {
                Stats::inc(&self.stats.docker_errors);
                tracing::info!(container = %self.name, "docker: following stopped: {e}");
            }
        }
    }

    async fn follow(&self) -> Result<(), String> {
        let tty = self.api.has_tty(&self.id).await.map_err(|e| e.to_string())?;
        let resume = *self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let mut log = self.api.follow_logs(&self.id, &resume.since_param()).await.map_err(|e| e.to_string())?;
        tracing::info!(container = %self.name, id = %&self.id[..self.id.len().min(12)], tty, "docker: following container output");
        let mut decoder = LogDecoder::new(!tty, self.max_line, resume);
        let mut items = Vec::new();
        loop {
            let chunk = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                c = log.next_chunk() => c,
            };
            let result = match chunk {
                None => {
                    decoder.finish(&mut items);
                    Ok(true)
                }
                Some(Err(e)) => Err(format!("stream broken: {e}")),
                Some(Ok(bytes)) => decoder.feed(&bytes, &mut items).map(|()| false).map_err(|e| e.to_string()),
            };
            for item in items.drain(..) {
                if !self.deliver(item).await {
                    return Ok(()); // the pipeline is gone: shutting down
                }
            }
            *self.cursor.lock().unwrap_or_else(|e| e.into_inner()) = decoder.cursor;
            if result? {
                return Ok(());
            }
        }
    }

    /// Hand one item to the pipeline; `false` when it is gone.
    async fn deliver(&self, item: Item) -> bool {
        let truncated = matches!(item, Item::Truncated(_));
        match item {
            Item::Line(line) | Item::Truncated(line) => {
                self.stats.received_on(crate::collector::access::Transport::Docker);
                if truncated {
                    Stats::inc(&self.stats.oversize);
                    Stats::inc(&self.stats.docker_oversize);
                }
                let send = async {
                    let Ok(share) = self.share.clone().acquire_owned().await else { return false };
                    let held = self.budget.hold(SOURCE, line.len()).await;
                    self.queue
                        .send(Incoming {
                            source: SOURCE,
                            transport: super::Transport::Docker,
                            line,
                            share: Some(share),
                            held: Some(held),
                            truncated,
                        })
                        .await
                        .is_ok()
                };
                tokio::select! {
                    _ = self.shutdown.cancelled() => false,
                    sent = send => sent,
                }
            }
            Item::DaemonError(msg) => {
                Stats::inc(&self.stats.docker_errors);
                let msg: String = msg.chars().take(200).collect();
                tracing::warn!(container = %self.name, "docker: the daemon reports in the log stream: {msg}");
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_resolution() {
        let flag = Path::new("/tmp/d.sock");
        assert_eq!(resolve_socket(Some(flag), Some("unix:///x")).unwrap(), flag);
        assert_eq!(
            resolve_socket(None, Some("unix:///run/user/1/docker.sock")).unwrap(),
            Path::new("/run/user/1/docker.sock")
        );
        assert_eq!(resolve_socket(None, None).unwrap(), Path::new(DEFAULT_SOCKET));
        assert_eq!(resolve_socket(None, Some("")).unwrap(), Path::new(DEFAULT_SOCKET));
        assert!(resolve_socket(None, Some("tcp://10.0.0.1:2375")).unwrap_err().contains("not a unix://"));
        assert!(resolve_socket(None, Some("unix://")).is_err());
    }
}
