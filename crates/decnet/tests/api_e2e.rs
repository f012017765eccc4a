//! End to end with real processes: `decnet bus`, `decnet api`, the SDK's
//! example worker, and the operator CLI (`user add`, `login`, `pub`,
//! `workers`), over a real socket, a real TCP port and a real SQLite file.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use support::{example_worker, send_signal, wait_exit, Daemon, BIN};

fn run(home: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .env("DECNET_HOME", home)
        .env_remove("DECNET_TOKEN")
        .env_remove("DECNET_API_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

struct Api(Child);

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn get_workers(http: &reqwest::Client, base: &str, token: &str) -> serde_json::Value {
    match http.get(format!("{base}/api/v1/workers")).bearer_auth(token).send().await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

fn status_of(body: &serde_json::Value, name: &str) -> String {
    body["workers"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["name"] == name))
        .and_then(|w| w["status"].as_str())
        .unwrap_or("")
        .to_owned()
}

/// Poll the workers page until `cond` holds, for up to `secs` seconds.
async fn wait_for(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    secs: u64,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let body = get_workers(http, base, token).await;
        if cond(&body) {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn bus_api_and_cli_together() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let socket = home.join("bus.sock");
    let db = home.join("decnet.db");
    let db_s = db.to_str().unwrap();
    let mut bus = Daemon::start(home, &["--heartbeat-secs", "0.3"]);

    // Users: created, duplicate refused, empty password refused.
    let out = run(home, &["user", "add", "root", "--role", "admin", "--db", db_s], "root-pw\n");
    assert!(out.status.success(), "{}", text(&out));
    let out = run(home, &["user", "add", "root", "--role", "viewer", "--db", db_s], "other\n");
    assert!(!out.status.success());
    assert!(text(&out).contains("already exists"), "{}", text(&out));
    let out = run(home, &["user", "add", "eve", "--role", "viewer", "--db", db_s], "\n");
    assert!(!out.status.success());
    assert!(text(&out).contains("empty password"), "{}", text(&out));

    // A stand-in systemctl first on the API's PATH.
    let bin = home.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("systemctl"), "#!/bin/sh\necho 'decnet-bus.service enabled enabled'\n").unwrap();
    std::fs::set_permissions(bin.join("systemctl"), std::fs::Permissions::from_mode(0o755)).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let mut api = Api(Command::new(BIN)
        .args(["api", "--listen", &format!("127.0.0.1:{port}"), "--db", db_s, "--socket"])
        .arg(&socket)
        .args(["--heartbeat-secs", "0.3", "--stale-secs", "2"])
        .env("DECNET_HOME", home)
        .env("PATH", &bin)
        .env_remove("DECNET_JWT_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while http.get(format!("{base}/api/v1/health")).send().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "API never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secret_mode = std::fs::metadata(home.join("jwt.secret")).unwrap().permissions().mode();
    assert_eq!(secret_mode & 0o777, 0o600);

    // Log in through the CLI; the token lands in $DECNET_HOME/token, 0600.
    let out = run(home, &["login", "--api", &base, "--username", "root"], "root-pw\n");
    assert!(out.status.success(), "{}", text(&out));
    let token_path = home.join("token");
    assert_eq!(std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_path).unwrap();
    let out = run(home, &["login", "--api", &base, "--username", "root"], "wrong\n");
    assert!(!out.status.success());
    assert!(text(&out).contains("401"), "{}", text(&out));

    // The SDK's example worker running as `mutator`: api, bus and mutator
    // ok, the rest unknown.
    let sock = socket.to_str().unwrap();
    let mut worker = Command::new(example_worker())
        .env("DECNET_BUS_SOCKET", &socket)
        .env("DECNET_WORKER_NAME", "mutator")
        .env("DECNET_HEARTBEAT_SECS", "0.3")
        .env_remove("DECNET_BUS_TYPE")
        .env_remove("DECNET_BUS_ENABLED")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let body = wait_for(&http, &base, &token, 10, "api, bus, mutator ok", |b| {
        b["bus_connected"] == true && ["api", "bus", "mutator"].iter().all(|w| status_of(b, w) == "ok")
    })
    .await;
    assert_eq!(status_of(&body, "collector"), "unknown");
    let bus_row = body["workers"].as_array().unwrap().iter().find(|w| w["name"] == "bus").unwrap();
    assert_eq!(bus_row["installed"], true, "installed comes from the systemctl on PATH");
    assert!(bus_row["extra"]["pid"].is_number(), "{bus_row}");

    let out = run(home, &["workers", "list", "--api", &base], "");
    assert!(out.status.success(), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(listing.starts_with("NAME"), "{listing}");
    assert!(listing.lines().any(|l| l.starts_with("mutator") && l.contains(" ok ")), "{listing}");
    assert!(listing.contains("bus: connected"), "{listing}");

    // Watch the control topic to check what the stop carries.
    let mut watcher = Command::new(BIN)
        .args(["sub", "system.mutator.control", "--count", "1", "--timeout", "20", "--socket", sock])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Stop through the API: the worker exits 0 on the intent.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // Repeated until both have it: SUB has no acknowledgement.
    while worker.try_wait().unwrap().is_none() || watcher.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "worker never got the stop");
        let out = run(home, &["workers", "stop", "mutator", "--api", &base], "");
        assert!(out.status.success(), "{}", text(&out));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(worker.wait().unwrap().success(), "the example worker exits 0 on a stop");
    let got = watcher.wait_with_output().unwrap();
    let envelope: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(envelope["payload"]["action"], "stop");
    assert_eq!(envelope["payload"]["requested_by"], "root");
    // Silent now: stale after the (2 s) window.
    wait_for(&http, &base, &token, 10, "mutator stale", |b| status_of(b, "mutator") == "stale").await;

    // Kill the bus: bus_connected false. Restart it: true again, and the
    // registry's subscription works again without restarting the API.
    bus.terminate();
    wait_for(&http, &base, &token, 5, "bus_connected false", |b| b["bus_connected"] == false).await;
    let out = run(home, &["workers", "stop", "mutator", "--api", &base], "");
    assert!(!out.status.success() && text(&out).contains("503"), "{}", text(&out));
    let _bus = Daemon::start(home, &["--heartbeat-secs", "0.3"]);
    let beat = || run(home, &["pub", "system.mutator.health", r#"{"worker":"mutator"}"#, "--socket", sock], "");
    let restarted = tokio::time::Instant::now();
    wait_for(&http, &base, &token, 5, "bus_connected true", |b| b["bus_connected"] == true).await;
    assert!(restarted.elapsed() < Duration::from_secs(4), "reconnect took {:?}", restarted.elapsed());
    wait_for(&http, &base, &token, 10, "mutator ok after restart", |b| {
        if status_of(b, "mutator") != "ok" {
            beat();
        }
        status_of(b, "mutator") == "ok"
    })
    .await;

    // SIGTERM: graceful exit 0.
    send_signal(api.0.id() as i32, "TERM");
    let status = wait_exit(&mut api.0, 10.0).expect("API exits on SIGTERM");
    assert!(status.success(), "{status:?}");
}
