//! `decnet listener`: the master's end of log shipping.
//!
//! Accepts TLS connections whose client certificate chains to our CA,
//! tags every shipped line with that certificate's CN, and appends it to
//! `master.log` (the raw line) and `master.json` (one record per line:
//! CN, the parsed RFC 5424 fields when the line is one, and where the
//! line came from). Each record holds the sender's file inode and the
//! offset just past the line, and the `master.log` size after it, so on
//! start the listener rebuilds every sender's position from its own data,
//! cuts a half-written tail off both files, and can tell a reconnecting
//! forwarder exactly where to resume: nothing twice, nothing skipped.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::frame;

/// Lines appended per commit at most (one ACK each).
const BATCH: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Pos {
    inode: u64,
    offset: u64,
}

struct Store {
    log: std::fs::File,
    json: std::fs::File,
    log_len: u64,
    /// Per sender CN: how far its shipped data goes.
    pos: HashMap<String, Pos>,
    /// Per sender CN: the connection that may append (the newest one).
    owner: HashMap<String, u64>,
    connections: u64,
}

/// Open (creating) `master.log` + `master.json` in `dir` and recover.
/// The folder is made 0700 and the files 0600 (tightened when older
/// versions left them looser): they hold every sensor's captures.
fn open_store(dir: &Path) -> anyhow::Result<Store> {
    crate::state_dir::create_private_dir(dir)?;
    let json_path = dir.join("master.json");
    let log_path = dir.join("master.log");
    let mut pos = HashMap::new();
    let mut valid = 0u64;
    let mut log_end = 0u64;
    if let Ok(f) = std::fs::File::open(&json_path) {
        let mut r = std::io::BufReader::new(f);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = r.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break; // EOF or a record cut short by a crash
            }
            let Ok(rec) = serde_json::from_slice::<serde_json::Value>(&line) else { break };
            let (Some(cn), Some(inode), Some(offset), Some(end)) =
                (rec["cn"].as_str(), rec["src_inode"].as_u64(), rec["src_end"].as_u64(), rec["log_end"].as_u64())
            else {
                break;
            };
            pos.insert(cn.to_owned(), Pos { inode, offset });
            log_end = end;
            valid += n as u64;
        }
    }
    let open = |p: &Path| {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(crate::state_dir::FILE_MODE)
            .open(p)?;
        crate::state_dir::tighten(p, crate::state_dir::FILE_MODE)?;
        Ok::<_, std::io::Error>(file)
    };
    let json = open(&json_path).with_context(|| format!("cannot open {}", json_path.display()))?;
    let log = open(&log_path).with_context(|| format!("cannot open {}", log_path.display()))?;
    if json.metadata()?.len() > valid {
        tracing::warn!(file = %json_path.display(), keep = valid, "cutting a partial record left by a crash");
        json.set_len(valid)?;
    }
    if log.metadata()?.len() > log_end {
        tracing::warn!(file = %log_path.display(), keep = log_end, "cutting lines master.json does not vouch for");
        log.set_len(log_end)?;
    }
    // Append mode after the cut, so every write lands at the end.
    let json = std::fs::OpenOptions::new().append(true).open(&json_path)?;
    let log = std::fs::OpenOptions::new().append(true).open(&log_path)?;
    Ok(Store { log, json, log_len: log_end, pos, owner: HashMap::new(), connections: 0 })
}

pub struct ListenerConfig {
    pub listen: SocketAddr,
    pub tls: tokio_rustls::rustls::ServerConfig,
    pub out: PathBuf,
    /// What it reports: [`STAT_NAMES`].
    pub stats: Arc<crate::metrics::NamedCounters>,
}

/// The listener's heartbeat fields: forwarders connected now (a gauge),
/// connections accepted, TLS handshakes refused, lines written.
pub const STAT_NAMES: &[&str] = &["connections", "connections_total", "handshakes_refused", "lines_received"];

pub async fn run(config: ListenerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = Arc::new(Mutex::new(open_store(&config.out)?));
    let listener =
        TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let acceptor = TlsAcceptor::from(Arc::new(config.tls));
    tracing::info!(listen = %listener.local_addr()?, out = %config.out.display(), "log listener ready");
    decnet_bus::sdk::notify_ready("log listener ready", shutdown.clone());
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, store, shutdown) = (acceptor.clone(), store.clone(), shutdown.clone());
        let stats = config.stats.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    stats.add("handshakes_refused", 1);
                    return tracing::warn!(%peer, error = %e, "TLS handshake refused");
                }
                Err(_) => {
                    stats.add("handshakes_refused", 1);
                    return tracing::warn!(%peer, "TLS handshake timed out");
                }
            };
            let cn = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(super::tls::common_name);
            let Some(cn) = cn else {
                return tracing::warn!(%peer, "client certificate has no CN; closing");
            };
            tracing::info!(%peer, %cn, "forwarder connected");
            stats.add("connections_total", 1);
            stats.add("connections", 1);
            // Down again however the task ends (a panic included).
            struct Connected(Arc<crate::metrics::NamedCounters>);
            impl Drop for Connected {
                fn drop(&mut self) {
                    self.0.set("connections", self.0.get("connections").saturating_sub(1));
                }
            }
            let _connected = Connected(stats.clone());
            tokio::select! {
                r = serve(tls, &cn, store, &stats) => match r {
                    Ok(()) => tracing::info!(%peer, %cn, "forwarder disconnected"),
                    Err(e) => tracing::warn!(%peer, %cn, error = %e, "forwarder connection closed"),
                },
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

async fn serve(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    cn: &str,
    store: Arc<Mutex<Store>>,
    stats: &crate::metrics::NamedCounters,
) -> anyhow::Result<()> {
    let (rd, mut wr) = tokio::io::split(tls);
    let mut rd = BufReader::new(rd);
    // The newest connection of a sender is the only one that may append:
    // an older one still open (a forwarder restarted before the listener
    // saw the old connection close) is refused at its next commit.
    let (start, conn) = {
        let mut st = store.lock().unwrap_or_else(|p| p.into_inner());
        st.connections += 1;
        let conn = st.connections;
        st.owner.insert(cn.to_owned(), conn);
        (st.pos.get(cn).copied().unwrap_or_default(), conn)
    };
    wr.write_all(format!("RESUME {} {}\n", start.inode, start.offset).as_bytes()).await?;
    wr.flush().await?;
    // Where this connection's next line starts; set by position markers.
    let mut cursor: Option<Pos> = None;
    let mut batch: Vec<(Pos, Vec<u8>)> = Vec::new(); // (position after the line, line)
    let mut batch_start: Option<Pos> = None;
    loop {
        let msg = frame::read_frame(&mut rd).await?;
        let ended = msg.is_none();
        if let Some(msg) = msg {
            if let Some((inode, offset)) = frame::parse_pos(&msg) {
                cursor = Some(Pos { inode, offset });
            } else {
                let at = cursor.ok_or_else(|| anyhow::anyhow!("a line before any position marker"))?;
                let after = Pos { inode: at.inode, offset: at.offset + msg.len() as u64 + 1 };
                if batch.is_empty() {
                    batch_start = Some(at);
                }
                batch.push((after, msg));
                cursor = Some(after);
            }
        }
        // Commit when the peer has paused (nothing buffered) or the batch is full.
        if !batch.is_empty() && (ended || rd.buffer().is_empty() || batch.len() >= BATCH) {
            let lines = batch.len() as u64;
            let acked = commit(&store, cn, conn, batch_start.take().unwrap_or_default(), &mut batch)?;
            stats.add("lines_received", lines);
            wr.write_all(format!("ACK {} {}\n", acked.inode, acked.offset).as_bytes()).await?;
            wr.flush().await?;
        }
        if ended {
            return Ok(());
        }
    }
}

/// Append `batch` for `cn` if this is the sender's newest connection and
/// the batch continues exactly where the store is for that sender (else
/// this connection must stop), then make it durable. A batch may also
/// start a file at 0: a new file after rotation, or the same file again
/// after the forwarder saw it truncated in place (copytruncate).
fn commit(
    store: &Mutex<Store>,
    cn: &str,
    conn: u64,
    first: Pos,
    batch: &mut Vec<(Pos, Vec<u8>)>,
) -> anyhow::Result<Pos> {
    let mut st = store.lock().unwrap_or_else(|p| p.into_inner());
    if st.owner.get(cn) != Some(&conn) {
        batch.clear();
        anyhow::bail!("a newer connection of this sender took over; closing this one");
    }
    let have = st.pos.get(cn).copied().unwrap_or_default();
    let continues = first.offset == 0 || (first.inode == have.inode && first.offset == have.offset);
    if first.inode == have.inode && first.offset == 0 && have.offset > 0 {
        tracing::warn!(cn, inode = have.inode, was = have.offset, "sender restarts a file truncated in place");
    }
    if !continues {
        batch.clear();
        anyhow::bail!(
            "out-of-sequence data (at {}:{}, master has {}:{}); closing this connection",
            first.inode,
            first.offset,
            have.inode,
            have.offset
        );
    }
    let mut log_buf = Vec::new();
    let mut json_buf = Vec::new();
    let mut log_len = st.log_len;
    let now = decnet_bus::envelope::now_ts();
    let mut last = have;
    for (after, line) in batch.drain(..) {
        let text = String::from_utf8_lossy(&line);
        log_buf.extend_from_slice(&line);
        log_buf.push(b'\n');
        log_len += line.len() as u64 + 1;
        let mut rec = serde_json::json!({
            "cn": cn,
            "received_at": now,
            "line": text,
            "syslog": parsed(&text),
            "src_inode": after.inode,
            "src_end": after.offset,
            "log_end": log_len,
        });
        // The collector's record beside the listener's own keys, so the
        // master's ingester (`decnet ingest --ingest-log <out>/master`, which
        // reads `<out>/master.json`) stores
        // shipped lines as `logs` rows tagged with the sender's CN. A line
        // the collector cannot parse keeps only the listener's keys (the
        // ingester counts it as not a record; master.log still has it).
        if let Ok(mut parsed) = crate::collector::parse_record(&text, now) {
            parsed.source = Some(cn.to_owned());
            if let (Ok(serde_json::Value::Object(fields)), Some(obj)) =
                (serde_json::to_value(&parsed), rec.as_object_mut())
            {
                for (k, v) in fields {
                    obj.entry(k).or_insert(v);
                }
            }
        }
        serde_json::to_writer(&mut json_buf, &rec)?;
        json_buf.push(b'\n');
        last = after;
    }
    // master.log first: a crash between the two leaves log lines that
    // master.json does not vouch for, which recovery cuts off.
    st.log.write_all(&log_buf)?;
    st.json.write_all(&json_buf)?;
    st.log.sync_data()?;
    st.json.sync_data()?;
    st.log_len = log_len;
    st.pos.insert(cn.to_owned(), last);
    Ok(last)
}

/// The RFC 5424 fields of `line`, or null when it is not such a line.
fn parsed(line: &str) -> serde_json::Value {
    let Ok(s) = crate::events::rfc5424::parse_line(line) else { return serde_json::Value::Null };
    let mut sd = serde_json::Map::new();
    for el in &s.structured_data {
        let params: serde_json::Map<String, serde_json::Value> =
            el.params.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        sd.insert(el.id.clone(), serde_json::Value::Object(params));
    }
    serde_json::json!({
        "pri": s.pri,
        "timestamp": s.timestamp.map(crate::events::rfc5424::format_timestamp),
        "hostname": s.hostname,
        "app_name": s.app_name,
        "procid": s.procid,
        "msgid": s.msgid,
        "sd": sd,
        "msg": s.msg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: u64) -> Vec<u8> {
        format!("<134>1 - s app - - - line {n}").into_bytes()
    }

    /// `count` lines of the file `inode` from `offset`, as `serve` batches them.
    fn batch(inode: u64, offset: u64, count: u64) -> (Pos, Vec<(Pos, Vec<u8>)>) {
        let mut at = Pos { inode, offset };
        let first = at;
        let lines = (0..count)
            .map(|n| {
                let l = line(offset + n);
                at = Pos { inode, offset: at.offset + l.len() as u64 + 1 };
                (at, l)
            })
            .collect();
        (first, lines)
    }

    #[test]
    fn only_the_newest_connection_appends_and_a_truncated_file_may_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Mutex::new(open_store(dir.path()).unwrap());
        let take_over = |conn: u64| store.lock().unwrap().owner.insert("s1".into(), conn);
        take_over(1);
        let (first, mut lines) = batch(7, 0, 3);
        let end = commit(&store, "s1", 1, first, &mut lines).unwrap();
        // A second connection of the sender takes over: the first one's
        // next batch is refused even though it continues exactly.
        take_over(2);
        let (first, mut lines) = batch(7, end.offset, 2);
        assert!(commit(&store, "s1", 1, first, &mut lines).is_err());
        // The owner may not skip ahead within a file...
        let (first, mut lines) = batch(7, end.offset + 5, 1);
        assert!(commit(&store, "s1", 2, first, &mut lines).is_err());
        // ...but may start the same file over at 0 (copytruncate) or
        // another file at 0 (rotation).
        let (first, mut lines) = batch(7, 0, 1);
        let end = commit(&store, "s1", 2, first, &mut lines).unwrap();
        assert_eq!(end.inode, 7);
        let (first, mut lines) = batch(8, 0, 1);
        assert_eq!(commit(&store, "s1", 2, first, &mut lines).unwrap().inode, 8);
        let log = std::fs::read_to_string(dir.path().join("master.log")).unwrap();
        assert_eq!(log.lines().count(), 5, "{log}");
    }
}
