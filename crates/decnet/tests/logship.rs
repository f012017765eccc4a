//! Log shipping end to end with the real binary: `decnet ca`, a
//! `decnet listener` and a `decnet forwarder` over mutual TLS on loopback.
//! Both sides are SIGKILLed and restarted mid-stream and the ingest log is
//! rotated; counting what the master wrote shows no line lost and none
//! twice. A certificate from another CA is refused at the handshake.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use support::{wait_until, BIN};

fn decnet(args: &[&str]) {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "decnet {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A child with its stderr collected; SIGKILLed on drop.
struct Proc {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(args: &[String]) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (stderr, sink) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Proc { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    port: u16,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let ca = root.join("ca");
        let ca_s = ca.to_str().unwrap();
        decnet(&["ca", "init", "--dir", ca_s]);
        decnet(&["ca", "issue", "master", "--san", "127.0.0.1", "--dir", ca_s]);
        decnet(&["ca", "issue", "sensor-1", "--dir", ca_s]);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Setup { _dir: dir, root, port }
    }

    fn p(&self, rel: &str) -> String {
        self.root.join(rel).to_str().unwrap().to_owned()
    }

    fn listener(&self) -> Proc {
        let args: Vec<String> = vec![
            "listener".into(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.port),
            "--ca".into(),
            self.p("ca/ca.pem"),
            "--cert".into(),
            self.p("ca/master.pem"),
            "--key".into(),
            self.p("ca/master.key"),
            "--out".into(),
            self.p("master"),
        ];
        let l = Proc::spawn(&args);
        assert!(wait_until(10.0, || l.log().contains("log listener ready")), "listener did not start:\n{}", l.log());
        l
    }

    fn forwarder(&self, cert: &str, key: &str) -> Proc {
        Proc::spawn(&[
            "forwarder".into(),
            "--master".into(),
            format!("127.0.0.1:{}", self.port),
            "--ca".into(),
            self.p("ca/ca.pem"),
            "--cert".into(),
            cert.into(),
            "--key".into(),
            key.into(),
            "--log".into(),
            self.p("ingest.log"),
            "--state".into(),
            self.p("forwarder.state"),
        ])
    }

    fn sensor(&self) -> Proc {
        self.forwarder(&self.p("ca/sensor-1.pem"), &self.p("ca/sensor-1.key"))
    }
}

fn line(i: usize) -> String {
    format!("<134>1 2026-12-02T16:00:00Z sensor-1 mutator - decky_mutated [relay@55555 n=\"{i}\"] line {i}")
}

/// Append lines `range` to `path`, a few at a time (a live log).
fn write_lines(path: &Path, range: std::ops::Range<usize>) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for i in range {
        writeln!(f, "{}", line(i)).unwrap();
        if i % 50 == 0 {
            f.flush().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

fn master_lines(s: &Setup) -> Vec<String> {
    std::fs::read_to_string(s.root.join("master/master.log")).unwrap_or_default().lines().map(String::from).collect()
}

#[test]
fn kill_restart_and_rotation_lose_nothing_and_duplicate_nothing() {
    let s = Setup::new();
    let ingest = s.root.join("ingest.log");
    let mut listener = s.listener();
    let mut fwd = s.sensor();

    write_lines(&ingest, 0..300);
    assert!(wait_until(15.0, || master_lines(&s).len() >= 100), "nothing shipped:\n{}", fwd.log());
    fwd.kill(); // mid-stream: acked or not, the master knows where it is
    write_lines(&ingest, 300..600);
    fwd = s.sensor();
    write_lines(&ingest, 600..800);
    assert!(wait_until(15.0, || master_lines(&s).len() >= 650), "forwarder did not resume:\n{}", fwd.log());

    listener.kill();
    write_lines(&ingest, 800..1000);
    listener = s.listener();
    assert!(
        wait_until(15.0, || master_lines(&s).len() >= 1000),
        "forwarder did not reconnect:\n{}\n{}",
        fwd.log(),
        listener.log()
    );

    // Rotation (logrotate's rename + create): the rest of the old file, then the new one.
    write_lines(&ingest, 1000..1100);
    std::fs::rename(&ingest, s.root.join("ingest.log.1")).unwrap();
    write_lines(&ingest, 1100..1200);
    // And a forwarder restart right after it: it must finish ingest.log.1 first.
    fwd.kill();
    fwd = s.sensor();
    write_lines(&ingest, 1200..1300);

    let want: Vec<String> = (0..1300).map(line).collect();
    assert!(
        wait_until(20.0, || master_lines(&s).len() >= want.len()),
        "only {} of {} lines arrived:\n{}",
        master_lines(&s).len(),
        want.len(),
        fwd.log()
    );
    std::thread::sleep(std::time::Duration::from_millis(300)); // anything extra would show now
    let got = master_lines(&s);
    assert_eq!(got.len(), want.len(), "duplicates in master.log");
    assert_eq!(got, want, "every line once, in order");

    // master.json: one parsed record per line, tagged with the sender's CN.
    let json = std::fs::read_to_string(s.root.join("master/master.json")).unwrap();
    let recs: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(recs.len(), want.len());
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["cn"], "sensor-1");
        assert_eq!(r["line"], want[i]);
        assert_eq!(r["syslog"]["sd"]["relay@55555"]["n"], i.to_string(), "{r}");
        assert_eq!(r["syslog"]["app_name"], "mutator");
    }
    // The forwarder's state is what the master acknowledged: the end of the new file.
    let size = std::fs::metadata(&ingest).unwrap().len();
    assert!(
        wait_until(5.0, || {
            std::fs::read_to_string(s.root.join("forwarder.state"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|v| v["offset"] == size)
        }),
        "state file never reached the acknowledged end"
    );
    drop(listener);
}

#[test]
fn a_certificate_from_another_ca_is_refused_at_the_handshake() {
    let s = Setup::new();
    let other = s.root.join("other-ca");
    let other_s = other.to_str().unwrap();
    decnet(&["ca", "init", "--dir", other_s]);
    decnet(&["ca", "issue", "sensor-1", "--dir", other_s]);
    let listener = s.listener();
    let ingest = s.root.join("ingest.log");
    write_lines(&ingest, 0..10);
    let intruder = s.forwarder(&format!("{other_s}/sensor-1.pem"), &format!("{other_s}/sensor-1.key"));
    assert!(wait_until(10.0, || listener.log().contains("TLS handshake refused")), "listener log:\n{}", listener.log());
    assert!(wait_until(10.0, || intruder.log().contains("shipping interrupted")), "{}", intruder.log());
    assert!(master_lines(&s).is_empty(), "nothing from a foreign certificate is written");
    drop(intruder);
    // The real sensor still gets through: one bad client hurts nobody.
    let _fwd = s.sensor();
    assert!(wait_until(15.0, || master_lines(&s).len() == 10), "the good forwarder was hurt:\n{}", listener.log());
}

/// Rows the master's ingester stored from shipped lines, per `source`.
fn shipped_rows(db: &Path) -> Vec<(String, String)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let pool = decnet::store::open(db).await.unwrap();
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT source, event_type FROM logs ORDER BY id").fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    })
}

#[test]
fn shipped_lines_become_log_rows_tagged_with_the_senders_cn() {
    let s = Setup::new();
    let ingest = s.root.join("ingest.log");
    let _listener = s.listener();
    let fwd = s.sensor();
    write_lines(&ingest, 0..50);
    // One line the collector's parser refuses: kept in master.log, never a row.
    std::fs::OpenOptions::new().append(true).open(&ingest).unwrap().write_all(b"not syslog at all\n").unwrap();
    assert!(wait_until(15.0, || master_lines(&s).len() >= 51), "nothing shipped:\n{}", fwd.log());

    // The master's ingester reads `<log>.json`: `--ingest-log <out>/master`
    // names master.json.
    let db = s.root.join("master.db");
    // Migrate it here first: two processes migrating one new file at once
    // race (a known store limitation), and this test is not about that.
    assert!(shipped_rows(&db).is_empty());
    let ingester = Proc::spawn(&[
        "ingest".into(),
        "--db".into(),
        db.to_str().unwrap().into(),
        "--ingest-log".into(),
        s.p("master/master"),
    ]);
    assert!(wait_until(15.0, || shipped_rows(&db).len() >= 50), "the ingester stored nothing:\n{}", ingester.log());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let rows = shipped_rows(&db);
    assert_eq!(rows.len(), 50, "every parsed line once, the bad one never: {rows:?}");
    assert!(rows.iter().all(|(src, ty)| src == "sensor-1" && ty == "decky_mutated"), "{rows:?}");
}
