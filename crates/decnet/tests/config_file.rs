//! The config file with the real binary: precedence flag > environment >
//! file for the listener's address (seen in the running listener's own
//! log), errors that name the file's line and key (from `config check` and
//! from a daemon refusing to start), secrets redacted by `config check`,
//! and the shipped example deploy/decnet.toml passing the check.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use support::{free_port, wait_until, BIN};

/// `decnet args` with `$DECNET_HOME` = `home` and no inherited DECNET_*
/// settings (a developer's environment must not leak into the checks).
fn decnet(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("DECNET_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("DECNET_HOME", home).env("RUST_LOG", "info");
    cmd
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let Output { status, stdout, stderr } = cmd.output().unwrap();
    (status.success(), String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

/// The effective-config line of `key` in `[section]` of a `config check`.
fn check_line(out: &str, section: &str, key: &str) -> String {
    let start = out.find(&format!("[{section}]\n")).unwrap_or_else(|| panic!("no [{section}] in\n{out}"));
    out[start..]
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")) || l.starts_with(&format!("# {key} ")))
        .unwrap_or_else(|| panic!("no {key} in [{section}]:\n{out}"))
        .to_owned()
}

#[test]
fn the_shipped_example_passes_config_check() {
    let home = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/decnet.toml");
    let (ok, out, err) = run(decnet(home.path()).args(["config", "check", "--config"]).arg(&example));
    assert!(ok, "{err}");
    assert!(out.contains("decnet.toml: valid"), "{out}");
    // A value the example sets is reported as coming from the file.
    let line = check_line(&out, "listener", "listen");
    assert!(line.starts_with("listen = \"0.0.0.0:6514\"") && line.ends_with("# file"), "{line}");
    for daemon in
        ["bus", "api", "mutator", "collector", "ingest", "profiler", "clusterer", "prober", "sniffer", "forwarder"]
    {
        assert!(out.contains(&format!("[{daemon}]\n")), "no [{daemon}] in\n{out}");
    }
}

/// The master and sensor files docs/deployment.md walks an operator
/// through are valid, and set what the walkthrough says they set.
#[test]
fn the_walkthrough_s_master_and_sensor_files_pass_config_check() {
    let home = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples");
    for (file, section, key, value) in [
        ("master.toml", "listener", "listen", "\"0.0.0.0:6514\""),
        ("master.toml", "api", "metrics-listen", "\"127.0.0.1:9460\""),
        ("sensor.toml", "mutator", "driver", "\"native\""),
        ("sensor.toml", "forwarder", "master", "\"10.0.0.5:6514\""),
    ] {
        let (ok, out, err) = run(decnet(home.path()).args(["config", "check", "--config"]).arg(examples.join(file)));
        assert!(ok, "{file}: {err}");
        let line = check_line(&out, section, key);
        assert!(line.starts_with(&format!("{key} = {value}")) && line.ends_with("# file"), "{file}: {line}");
    }
}

#[test]
fn unknown_keys_and_bad_values_name_the_file_line_and_key() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("bad.toml");
    std::fs::write(&file, "# decnet\n[bus]\nthreads = 2\n\n[collector]\nlisten_addr = 1\n").unwrap();
    let (ok, _, err) = run(decnet(home.path()).args(["config", "check", "--config"]).arg(&file));
    assert!(!ok);
    assert!(err.contains(&format!("{}:6: unknown key \"listen_addr\" in [collector]", file.display())), "{err}");

    std::fs::write(&file, "[bus]\nthreads = 2\n[listener]\nlisten = 6514\n").unwrap();
    let (ok, _, err) = run(decnet(home.path()).args(["config", "check", "--config"]).arg(&file));
    assert!(!ok);
    assert!(err.contains(&format!("{}:4: [listener] listen:", file.display())), "{err}");
    // A daemon given the same file refuses to start, with the same words.
    let (ok, _, err) = run(decnet(home.path()).args(["bus", "--config"]).arg(&file));
    assert!(!ok);
    assert!(err.contains(&format!("{}:4: [listener] listen:", file.display())), "{err}");

    std::fs::write(&file, "[bus]\nthreads = \"many\"\n").unwrap();
    let (ok, _, err) = run(decnet(home.path()).args(["config", "check", "--config"]).arg(&file));
    assert!(!ok);
    assert!(err.contains(":2: [bus] threads:") && err.contains("many"), "{err}");

    // A missing explicit file is an error, not silently no config.
    let (ok, _, err) = run(decnet(home.path()).args(["config", "check", "--config", "/nonexistent/decnet.toml"]));
    assert!(!ok && err.contains("/nonexistent/decnet.toml"), "{err}");
}

#[test]
fn config_check_redacts_keys_and_secrets() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("decnet.toml"),
        "[listener]\nkey = \"/srv/very-private/master.key\"\ncert = \"/srv/certs/master.pem\"\n",
    )
    .unwrap();
    // Found as $DECNET_HOME/decnet.toml, no --config.
    let (ok, out, err) =
        run(decnet(home.path()).args(["config", "check"]).env("DECNET_FORWARDER_KEY", "/srv/other-private/f.key"));
    assert!(ok, "{err}");
    assert!(!out.contains("very-private") && !out.contains("other-private"), "a secret was printed:\n{out}");
    assert_eq!(check_line(&out, "listener", "key"), format!("{:<50} # file", "key = \"(redacted)\""));
    assert!(check_line(&out, "forwarder", "key").ends_with("# env DECNET_FORWARDER_KEY"), "{out}");
    // Non-secrets are shown.
    assert!(check_line(&out, "listener", "cert").starts_with("cert = \"/srv/certs/master.pem\""), "{out}");
}

/// Start `decnet listener` (certificates from a fresh CA in `home`) with
/// `extra` arguments and `env`, and return the address its log says it
/// listens on.
fn listener_address(home: &Path, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = decnet(home);
    cmd.arg("listener").args(extra).envs(env.iter().copied());
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let ready = wait_until(10.0, || log.lock().unwrap().contains("log listener ready"));
    let _ = child.kill();
    let _ = child.wait();
    let log = log.lock().unwrap().clone();
    assert!(ready, "listener did not start:\n{log}");
    let at = log.find("listen=").unwrap() + "listen=".len();
    log[at..].split_whitespace().next().unwrap().to_owned()
}

#[test]
fn a_flag_beats_the_environment_beats_the_file_and_the_daemon_uses_the_file() {
    let home = tempfile::tempdir().unwrap();
    let ca = home.path().join("ca");
    for args in [vec!["ca", "init"], vec!["ca", "issue", "master", "--san", "127.0.0.1"]] {
        let (ok, _, err) = run(decnet(home.path()).args(&args).arg("--dir").arg(&ca));
        assert!(ok, "{err}");
    }
    let (file_port, env_port, flag_port) = (free_port(), free_port(), free_port());
    let config = home.path().join("decnet.toml");
    std::fs::write(
        &config,
        format!(
            "[listener]\nlisten = \"127.0.0.1:{file_port}\"\nca = \"{ca}/ca.pem\"\ncert = \"{ca}/master.pem\"\nkey = \"{ca}/master.key\"\nout = \"{out}\"\n",
            ca = ca.display(),
            out = home.path().join("master").display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    assert_eq!(listener_address(home.path(), &["--config", cfg], &[]), format!("127.0.0.1:{file_port}"));
    let env_addr = format!("127.0.0.1:{env_port}");
    let env = [("DECNET_LISTENER_ADDR", env_addr.as_str())];
    assert_eq!(listener_address(home.path(), &["--config", cfg], &env), env_addr);
    let flag_addr = format!("127.0.0.1:{flag_port}");
    assert_eq!(listener_address(home.path(), &["--config", cfg, "--listen", &flag_addr], &env), flag_addr);
    // config check tells the same story.
    let (ok, out, err) = run(decnet(home.path()).args(["config", "check", "--config", cfg]).envs(env));
    assert!(ok, "{err}");
    assert!(check_line(&out, "listener", "listen").ends_with("# env DECNET_LISTENER_ADDR"), "{out}");
    assert!(check_line(&out, "listener", "out").ends_with("# file"), "{out}");
}
