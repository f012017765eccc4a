//! End to end with real processes: `decnet bus`, `decnet api`, the SDK's
//! example worker, and the operator CLI (`user add`, `login`, `pub`,
//! `workers`), over a real socket, a real TCP port and a real SQLite file;
//! and `decnet api` configured from the environment (JWT secret, SSE knobs).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use support::{example_worker, free_port, send_signal, wait_exit, Daemon, BIN};

fn run(home: &Path, args: &[&str], stdin: &str) -> Output {
    run_env(home, args, stdin, &[])
}

/// `run` with extra environment variables (set after the defaults are cleared).
fn run_env(home: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .env("DECNET_HOME", home)
        .env_remove("DECNET_TOKEN")
        .env_remove("DECNET_API_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Poll the unauthenticated health route until the API answers (10 s).
async fn wait_healthy(http: &reqwest::Client, base: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while http.get(format!("{base}/api/v1/health")).send().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "API never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// `decnet api` on 127.0.0.1:`port` with the database `db` and the bus
/// socket `socket` (nothing has to listen there), in `home`, output
/// discarded; callers add their flags and environment, then spawn.
fn api_command(home: &Path, db: &str, port: u16, socket: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["api", "--listen", &format!("127.0.0.1:{port}"), "--db", db, "--socket"])
        .arg(socket)
        .env("DECNET_HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
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
    let out = run(home, &["user", "add", "root", "--role", "admin", "--db", db_s], "root-password-1\n");
    assert!(out.status.success(), "{}", text(&out));
    let out = run(home, &["user", "add", "root", "--role", "viewer", "--db", db_s], "other\n");
    assert!(!out.status.success());
    assert!(text(&out).contains("already exists"), "{}", text(&out));
    let out = run(home, &["user", "add", "eve", "--role", "viewer", "--db", db_s], "\n");
    assert!(!out.status.success());
    assert!(text(&out).contains("empty password"), "{}", text(&out));

    // A stand-in systemctl first on the API's PATH: records its argv (one
    // '|'-terminated entry each, a line per run) and lists the bus unit.
    let bin = home.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let argv_log = home.join("systemctl.argv");
    let stand_in = format!(
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s|' \"$a\"; done >> '{log}'\necho >> '{log}'\n\
         case \"$1\" in list-unit-files) echo 'decnet-bus.service enabled enabled' ;; esac\nexit 0\n",
        log = argv_log.display()
    );
    std::fs::write(bin.join("systemctl"), stand_in).unwrap();
    std::fs::set_permissions(bin.join("systemctl"), std::fs::Permissions::from_mode(0o755)).unwrap();

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut api = Api(api_command(home, db_s, port, &socket)
        .args(["--heartbeat-secs", "0.3", "--stale-secs", "2"])
        .env("PATH", &bin)
        .env_remove("DECNET_JWT_SECRET")
        .spawn()
        .unwrap());
    let http = reqwest::Client::new();
    wait_healthy(&http, &base).await;
    let secret_mode = std::fs::metadata(home.join("jwt.secret")).unwrap().permissions().mode();
    assert_eq!(secret_mode & 0o777, 0o600);

    // Log in through the CLI; the token lands in $DECNET_HOME/token, 0600.
    let out = run(home, &["login", "--api", &base, "--username", "root"], "root-password-1\n");
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

    // `workers start` from a shell that only has DECNET_TOKEN (a home with
    // no stored token): refused without it, and with it the API runs the
    // unit through systemctl as separate argv entries.
    let bare_home = home.join("no-token-home");
    std::fs::create_dir(&bare_home).unwrap();
    let start = ["workers", "start", "mutator", "--api", base.as_str()];
    let out = run(&bare_home, &start, "");
    assert!(!out.status.success() && text(&out).contains("not logged in"), "{}", text(&out));
    let out = run_env(&bare_home, &start, "", &[("DECNET_TOKEN", token.trim())]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("started mutator (decnet-mutator.service)"), "{}", text(&out));
    let runs = std::fs::read_to_string(&argv_log).unwrap();
    assert!(runs.lines().any(|l| l == "start|--no-ask-password|decnet-mutator.service|"), "{runs}");
    assert!(!bare_home.join("token").exists(), "the CLI stored a token it was only handed");

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

/// Read an SSE body until a frame with `line` arrives or `within` passes.
async fn sse_until(resp: &mut reqwest::Response, line: &str, within: Duration) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + within;
    while !seen.lines().any(|l| l == line) {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("no {line:?} within {within:?} ({other:?}); got {seen:?}"),
        }
    }
    seen
}

#[tokio::test]
async fn api_configured_from_the_environment_jwt_secret_and_sse_knobs() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let db = home.join("decnet.db");
    let db_s = db.to_str().unwrap();
    let out = run(home, &["user", "add", "root", "--role", "admin", "--db", db_s], "root-password-1\n");
    assert!(out.status.success(), "{}", text(&out));

    const SECRET: &str = "e2e-secret-from-the-environment";
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // No bus (nothing listens on the socket) and no systemctl (empty PATH):
    // neither is needed for tokens or event streams.
    let _api = Api(api_command(home, db_s, port, &home.join("no-bus.sock"))
        .args(["--sse-max-streams-per-user", "1"])
        .env("DECNET_JWT_SECRET", SECRET)
        .env("DECNET_SSE_KEEPALIVE_SECS", "0.2")
        .env_remove("DECNET_SSE_MAX_STREAMS")
        .env("PATH", home.join("empty-path"))
        .spawn()
        .unwrap());
    let http = reqwest::Client::new();
    wait_healthy(&http, &base).await;
    assert!(!home.join("jwt.secret").exists(), "DECNET_JWT_SECRET is set: no secret file may be written");

    // A token signed with the environment's secret is accepted (nobody
    // logged in: this is the secret the API verifies with); another
    // secret's is not.
    let keys = |secret: &[u8]| decnet::auth::JwtKeys::new(secret, Duration::from_secs(600));
    let (token, _) = keys(SECRET.as_bytes()).issue("root", decnet::auth::Role::Admin).unwrap();
    let (other, _) = keys(b"some-other-secret").issue("root", decnet::auth::Role::Admin).unwrap();
    let status = |t: String| {
        let req = http.get(format!("{base}/api/v1/workers")).bearer_auth(t);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(token.clone()).await, 200);
    assert_eq!(status(other).await, 401);
    // And what the API issues at login verifies with it too.
    let resp = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "root", "password": "root-password-1"}))
        .send()
        .await
        .unwrap();
    let login: serde_json::Value = resp.json().await.unwrap();
    let claims = keys(SECRET.as_bytes()).verify(login["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.sub, "root");

    // The SSE knobs: keepalives every 0.2 s (the default is 15 s) and
    // one stream per user (the default is 4).
    let resp = http
        .post(format!("{base}/api/v1/topologies"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "lab"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let events = format!("{base}/api/v1/topologies/{id}/events?token={token}");
    let mut stream = http.get(&events).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let seen = sse_until(&mut stream, ": keepalive", Duration::from_secs(3)).await;
    assert!(seen.starts_with("event: snapshot"), "{seen}");
    let second = http.get(&events).send().await.unwrap();
    assert_eq!(second.status(), 429, "a second stream is over --sse-max-streams-per-user 1");
    assert!(!home.join("jwt.secret").exists(), "still no secret file after a login");
}

/// Issue 15: with `RUST_LOG=debug` the binary's log must not hold a working
/// token (EventSource clients can only send it as `?token=`) nor a
/// password from a login body. The log must show the redacted request, so
/// the test cannot pass by logging nothing.
#[tokio::test]
async fn debug_logs_of_the_binary_hold_no_token_and_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let db = home.join("decnet.db");
    let db_s = db.to_str().unwrap();
    const PASSWORD: &str = "a-password-never-logged";
    let out = run(home, &["user", "add", "root", "--role", "admin", "--db", db_s], &format!("{PASSWORD}\n"));
    assert!(out.status.success(), "{}", text(&out));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log_path = home.join("api.stderr");
    let mut api = Api(api_command(home, db_s, port, &home.join("no-bus.sock"))
        .env("RUST_LOG", "debug")
        .env("DECNET_SSE_KEEPALIVE_SECS", "0.2")
        .env("PATH", home.join("empty-path"))
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap());
    let http = reqwest::Client::new();
    wait_healthy(&http, &base).await;
    let resp = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "root", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let token = resp.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let resp = http
        .post(format!("{base}/api/v1/topologies"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "lab"}))
        .send()
        .await
        .unwrap();
    let id = resp.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    for path in [format!("/api/v1/topologies/{id}/events"), "/api/v1/attackers/stream".to_owned()] {
        let mut stream = http.get(format!("{base}{path}?token={token}")).send().await.unwrap();
        assert_eq!(stream.status(), 200, "{path}");
        sse_until(&mut stream, ": keepalive", Duration::from_secs(3)).await;
    }
    send_signal(api.0.id() as i32, "TERM");
    assert!(wait_exit(&mut api.0, 10.0).is_some(), "decnet api stopped on SIGTERM");

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("token=[redacted]"), "the SSE requests are not in the debug log at all:\n{log}");
    let signature = token.rsplit('.').next().unwrap();
    assert!(!log.contains(signature), "the token's signature reached the log");
    assert!(!log.contains(PASSWORD), "the login password reached the log");
}
