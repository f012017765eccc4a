//! `decnet user add|list|passwd|del` through the real binary on a real
//! SQLite file, the minimum password length, and the owner-only modes of
//! `$DECNET_HOME`, the database and the JWT secret.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_decnet");

fn user(home: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("user")
        .args(args)
        .env("DECNET_HOME", home)
        .env_remove("DECNET_DB")
        .env_remove("DECNET_MIN_PASSWORD_LENGTH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

async fn hash_of(home: &Path, name: &str) -> Option<String> {
    let pool = decnet::store::open(&home.join("decnet.db")).await.unwrap();
    decnet::store::users::find(&pool, name).await.unwrap().map(|u| u.password_hash)
}

#[tokio::test]
async fn short_passwords_are_refused_everywhere_they_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("h");
    let out = user(&home, &["add", "alice", "--role", "admin"], "short-pw\n");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("password too short: 8 characters, at least 12 required"), "{}", text(&out));
    assert!(hash_of(&home, "alice").await.is_none(), "nothing may be created");

    let out = user(&home, &["add", "alice", "--role", "admin"], "twelve-chars\n");
    assert!(out.status.success(), "{}", text(&out));
    // A stricter policy from the flag.
    let out = user(&home, &["passwd", "alice", "--min-password-length", "20"], "only-15-chars!!\n");
    assert!(!out.status.success());
    assert!(text(&out).contains("at least 20 required"), "{}", text(&out));
    let before = hash_of(&home, "alice").await.unwrap();
    assert!(decnet::auth::verify_password("twelve-chars", &before), "password unchanged after a refusal");
}

#[tokio::test]
async fn list_passwd_and_del() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("h");
    assert!(user(&home, &["add", "alice", "--role", "admin"], "alice-password-1\n").status.success());
    assert!(user(&home, &["add", "bob", "--role", "viewer"], "bob-password-12\n").status.success());

    let out = user(&home, &["list"], "");
    assert!(out.status.success(), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    let rows: Vec<Vec<&str>> = listing.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.iter().map(|r| (r[0], r[1])).collect::<Vec<_>>(), [("alice", "admin"), ("bob", "viewer")]);

    let out = user(&home, &["passwd", "bob"], "bob-new-password\n");
    assert!(out.status.success(), "{}", text(&out));
    let hash = hash_of(&home, "bob").await.unwrap();
    assert!(decnet::auth::verify_password("bob-new-password", &hash));
    assert!(!decnet::auth::verify_password("bob-password-12", &hash));

    let out = user(&home, &["passwd", "nobody"], "whatever-password\n");
    assert!(!out.status.success());
    assert!(text(&out).contains("no user \"nobody\""), "{}", text(&out));

    // The last admin stays unless forced.
    let out = user(&home, &["del", "alice"], "");
    assert!(!out.status.success());
    assert!(text(&out).contains("last admin"), "{}", text(&out));
    assert!(hash_of(&home, "alice").await.is_some());
    assert!(user(&home, &["del", "bob"], "").status.success());
    assert!(hash_of(&home, "bob").await.is_none());
    assert!(user(&home, &["del", "alice", "--force"], "").status.success());
    let out = user(&home, &["del", "alice"], "");
    assert!(!out.status.success(), "deleting a missing user must fail");
}

#[test]
fn a_fresh_home_and_database_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("fresh");
    let out = user(&home, &["add", "alice", "--role", "admin"], "alice-password-1\n");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(mode(&home), 0o700);
    let db = home.join("decnet.db");
    assert_eq!(mode(&db), 0o600);
    for side in ["decnet.db-wal", "decnet.db-shm"] {
        let p = home.join(side);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{side}");
        }
    }
}

#[test]
fn a_loose_home_from_an_older_version_is_tightened_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("old");
    assert!(user(&home, &["add", "alice", "--role", "admin"], "alice-password-1\n").status.success());
    std::fs::write(home.join("jwt.secret"), "0123456789abcdef").unwrap();
    let loosen = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    loosen(&home, 0o755);
    loosen(&home.join("decnet.db"), 0o644);
    loosen(&home.join("jwt.secret"), 0o644);

    let out = user(&home, &["list"], "");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join("decnet.db")), 0o600);
    assert_eq!(mode(&home.join("jwt.secret")), 0o600);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(log.matches("tightened permissions").count(), 3, "{log}");
    // Already private: nothing to say the second time.
    let again = user(&home, &["list"], "");
    assert!(!String::from_utf8_lossy(&again.stderr).contains("tightened"));
}
