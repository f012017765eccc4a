//! The operator CLI as a person uses it next to `decnet up` (issue 27):
//! the one-time admin password printed last in a box and kept in a 0600
//! file until the admin's first login, `decnet login` defaulting to
//! `admin`, `--json` on the listing commands, `workers stop|start --host`,
//! `mutate` saying old → new, and shell completions. Real binary, real
//! stack, loopback only.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use support::{wait_until, Up, BIN};

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `decnet ARGS` next to `up`, with `stdin` fed and `DECNET_API_URL` set.
fn cli(up: &Up, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("DECNET_HOME", up.home.as_path())
        .env("DECNET_API_URL", up.url.trim_end_matches('/'))
        .env_remove("DECNET_BUS_SOCKET")
        .env_remove("DECNET_DB")
        .env_remove("DECNET_TOKEN")
        .env("USER", "carol")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn decnet");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "one JSON document on one line: {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn up_then_the_operator_cli_from_first_login_to_mutation() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path(), &[]);
    let password = up.admin_password();

    // --- the password comes last, boxed, after the decky table ---
    let out = up.output();
    let at = |needle: &str| out.find(needle).unwrap_or_else(|| panic!("{needle:?} not printed:\n{out}"));
    assert!(at("deckies (native honeypots") < at("Press Ctrl-C"), "{out}");
    assert!(at("Press Ctrl-C") < at("Sign in as admin / "), "the password is printed after everything else: {out}");
    let box_top = out[..at("Sign in as admin / ")].rfind('┌').expect("a box around the password");
    assert!(out[box_top..].contains('└'), "{out}");
    // ... and kept, owner-only, in a file.
    let kept = dir.path().join("initial-admin-password");
    assert_eq!(std::fs::read_to_string(&kept).unwrap().trim(), password);
    assert_eq!(std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777, 0o600);

    // --- `decnet login` is `admin` by default; only a real login consumes the file ---
    let bad = cli(&up, &["login"], "not-the-password\n");
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(kept.exists(), "a failed login keeps the file");
    let good = cli(&up, &["login"], &format!("{password}\n"));
    assert!(good.status.success(), "{}", text(&good));
    assert!(text(&good).contains("logged in as admin (admin)"), "{}", text(&good));
    assert!(wait_until(5.0, || !kept.exists()), "the admin's first login removes {}", kept.display());

    // --- --json on the listings ---
    let users = json(&cli(&up, &["user", "list", "--json"], ""));
    assert_eq!(users["users"][0]["username"], "admin");
    assert_eq!(users["users"][0]["role"], "admin");
    assert!(users.to_string().find("argon2").is_none(), "no hashes: {users}");

    let mut host = String::new();
    assert!(
        wait_until(20.0, || {
            let w = json(&cli(&up, &["workers", "--json"], ""));
            let api =
                w["workers"].as_array().unwrap().iter().find(|r| r["name"] == "api" && r["status"] == "ok").cloned();
            host = api.map(|r| r["host"].as_str().unwrap().to_string()).unwrap_or_default();
            !host.is_empty()
        }),
        "the api worker never showed ok in `workers --json`"
    );
    let only = json(&cli(&up, &["workers", "list", "--host", "no-such-host", "--json"], ""));
    assert_eq!(only["workers"].as_array().unwrap().len(), 0, "--host filters the list: {only}");

    let deckies = json(&cli(&up, &["deckies", "--json"], ""));
    let names: Vec<&str> = deckies["deckies"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"web-01"), "{deckies}");
    let table = cli(&up, &["deckies"], "");
    assert!(text(&table).lines().any(|l| l.starts_with("web-01 ")), "{}", text(&table));
    let attackers = json(&cli(&up, &["attackers", "--json", "--limit", "5"], ""));
    assert_eq!(attackers["limit"], 5, "{attackers}");
    assert!(attackers["attackers"].is_array());
    let bad_filter = cli(&up, &["attackers", "--behavior", "evil"], "");
    assert!(!bad_filter.status.success() && text(&bad_filter).contains("behavior"), "{}", text(&bad_filter));

    // --- workers stop|start --host (the clusterer: a worker `up` runs, so the API knows it) ---
    let stop = json(&cli(&up, &["workers", "stop", "clusterer", "--host", &host, "--json"], ""));
    assert_eq!((stop["worker"].as_str(), stop["host"].as_str()), (Some("clusterer"), Some(host.as_str())));
    let stop = cli(&up, &["workers", "stop", "clusterer", "--host", "no-such-host"], "");
    assert!(!stop.status.success(), "{}", text(&stop));
    assert!(text(&stop).contains("unknown host \"no-such-host\""), "{}", text(&stop));
    let start = cli(&up, &["workers", "start", "clusterer", "--host", "no-such-host"], "");
    assert!(!start.status.success(), "{}", text(&start));
    assert!(text(&start).contains("cannot start a worker on host \"no-such-host\""), "{}", text(&start));

    // --- mutate says what changed ---
    let out = cli(&up, &["mutate", "web-01", "--wait", "10"], "");
    assert!(out.status.success(), "{}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout).lines().find(|l| l.starts_with("web-01: ")).map(str::to_string);
    let line = line.unwrap_or_else(|| panic!("no change line: {}", text(&out)));
    let (old, new) = line["web-01: ".len()..].split_once(" → ").unwrap_or_else(|| panic!("{line}"));
    assert!(!old.is_empty() && !new.is_empty() && !new.contains("requested"), "{line}");
    let fleet = json(&cli(&up, &["deckies", "--json"], ""));
    let web = fleet["deckies"].as_array().unwrap().iter().find(|d| d["name"] == "web-01").unwrap().clone();
    let services: Vec<&str> = web["services"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(services.join(","), new, "the new services are what the fleet now runs");
}

#[test]
fn completions_are_real_scripts_for_each_shell() {
    let gen = |shell: &str| {
        let out = Command::new(BIN).args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    // bash loads it and registers a completion for `decnet`.
    let script = dir_file(&gen("bash"));
    let out = Command::new("bash")
        .args(["-c", &format!("source {} && complete -p decnet", script.1.display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("decnet"));
    let bash = gen("bash");
    for word in ["workers", "completions", "--host", "--json", "attackers"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    assert!(gen("zsh").starts_with("#compdef decnet"));
    assert!(gen("fish").contains("complete -c decnet"));
    let bad = Command::new(BIN).args(["completions", "powershell-ish"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(text(&bad).contains("bash") && text(&bad).contains("fish"), "names the choices: {}", text(&bad));
}

/// `content` in a temporary file (kept alive with the returned dir).
fn dir_file(content: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decnet.bash");
    std::fs::write(&path, content).unwrap();
    (dir, path)
}
