//! Deploy drivers driven through stand-in executables that record their
//! argv and environment (docker and deploy commands cannot run here).

use std::path::{Path, PathBuf};
use std::time::Duration;

use decnet::mutator::drivers::{Change, CommandDriver, ComposeDriver, DeckyShape, DeployDriver};

/// One spawning test at a time: a script still open for writing in one
/// thread while another forks gives ETXTBSY.
static SPAWN_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn services(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn command_driver_passes_decky_and_services_as_argv_and_env() {
    let _serial = SPAWN_LOCK.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("calls");
    let script = write_script(
        dir.path(),
        "deploy",
        &format!(
            "printf '%s|' \"$@\" >> {r}; echo \"$DECNET_DECKY $DECNET_SERVICES $DECNET_ACTION\" >> {r}",
            r = record.display()
        ),
    );
    let driver = CommandDriver::new(script);
    let new = services(&["ssh", "http"]);
    driver.apply(&Change { project: "fleet", decky: "web-01", services: &new, fleet: &[] }).await.unwrap();
    driver.apply(&Change { project: "fleet", decky: "web-01", services: &[], fleet: &[] }).await.unwrap();
    let calls = std::fs::read_to_string(&record).unwrap();
    assert_eq!(calls, "web-01|ssh|http|web-01 ssh,http deploy\nweb-01|web-01  teardown\n");
}

#[tokio::test]
async fn command_driver_fails_on_non_zero_exit_with_stderr_and_on_timeout() {
    let _serial = SPAWN_LOCK.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let new = services(&["ssh"]);
    let change = Change { project: "fleet", decky: "d", services: &new, fleet: &[] };

    let failing = CommandDriver::new(write_script(dir.path(), "fail", "echo 'no capacity' >&2; exit 7"));
    let err = failing.apply(&change).await.unwrap_err().to_string();
    assert!(err.contains("no capacity") && err.contains('7'), "{err}");

    let mut slow = CommandDriver::new(write_script(dir.path(), "slow", "sleep 30"));
    slow.timeout = Duration::from_millis(300);
    let err = slow.apply(&change).await.unwrap_err().to_string();
    assert!(err.contains("timed out"), "{err}");

    let missing = CommandDriver::new(dir.path().join("does-not-exist"));
    let err = missing.apply(&change).await.unwrap_err().to_string();
    assert!(err.contains("cannot start"), "{err}");
}

fn compose_driver(dir: &Path, docker_body: &str) -> ComposeDriver {
    let mut driver = ComposeDriver::new(dir.join("compose"));
    driver.docker = write_script(dir, "docker", docker_body);
    driver.first_backoff = Duration::from_millis(10);
    driver.attempts = 3;
    driver
}

#[tokio::test]
async fn compose_driver_writes_the_fleet_file_and_retries_until_up_succeeds() {
    let _serial = SPAWN_LOCK.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls");
    // Fails the first call, succeeds after.
    let body = format!(
        "echo \"$@\" >> {c}; [ $(wc -l < {c}) -ge 2 ] || {{ echo 'daemon busy' >&2; exit 1; }}",
        c = calls.display()
    );
    let driver = compose_driver(dir.path(), &body);
    let fleet = vec![
        DeckyShape { name: "a".into(), services: services(&["ssh", "http"]) },
        DeckyShape { name: "b \"quoted\"".into(), services: services(&["smb"]) },
    ];
    driver.apply(&Change { project: "fleet", decky: "a", services: &fleet[0].services, fleet: &fleet }).await.unwrap();

    let file = dir.path().join("compose/fleet.json");
    let expected_call = format!("compose -f {} up -d --remove-orphans\n", file.display());
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), expected_call.repeat(2));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(doc["services"]["a"]["environment"]["DECNET_SERVICES"], "ssh,http");
    assert_eq!(doc["services"]["b \"quoted\""]["environment"]["DECNET_SERVICES"], "smb");
}

#[tokio::test]
async fn compose_driver_gives_up_after_bounded_attempts() {
    let _serial = SPAWN_LOCK.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls");
    let driver =
        compose_driver(dir.path(), &format!("echo x >> {}; echo 'cannot pull image' >&2; exit 1", calls.display()));
    let new = services(&["ssh"]);
    let fleet = vec![DeckyShape { name: "a".into(), services: new.clone() }];
    let err = driver
        .apply(&Change { project: "fleet", decky: "a", services: &new, fleet: &fleet })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot pull image"), "{err}");
    assert_eq!(std::fs::read_to_string(&calls).unwrap().lines().count(), 3);
}
