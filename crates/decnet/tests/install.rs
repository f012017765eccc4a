//! `decnet install --root DIR`: the real binary installs itself, the user,
//! the folders, the config, the units and the logrotate snippet into a
//! temporary root; a second run changes nothing; `--dry-run` writes
//! nothing; the installed units pass `systemd-analyze verify --root`.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn install(root: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(support::BIN).arg("install").arg("--root").arg(root).args(extra).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

fn files_under(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            found.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn installs_into_a_root_twice_idempotently_and_the_units_verify_there() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // A root with an existing system account at 999, as on a real host.
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\nsvc:x:999:999::/:/bin/false").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nsvc:x:999:\n").unwrap();

    // Dry run: says what it would do, writes nothing.
    let before = files_under(root);
    let (ok, out) = install(root, &["--dry-run"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("would create") && out.contains("decnet-bus.service") && out.contains("nothing was written"),
        "{out}"
    );
    assert_eq!(files_under(root), before, "--dry-run wrote something");

    let (ok, first) = install(root, &[]);
    assert!(ok, "{first}");
    assert!(first.contains("created") && first.contains("change(s) made"), "{first}");

    // The user and group, at a free system id, the last line kept intact.
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("svc:x:999:999::/:/bin/false\n"), "{passwd}");
    assert!(passwd.contains("decnet:x:998:998:") && passwd.contains(":/var/lib/decnet:/usr/sbin/nologin"), "{passwd}");
    assert!(std::fs::read_to_string(root.join("etc/group")).unwrap().contains("decnet:x:998:"));

    for (path, want) in [
        ("etc/decnet", 0o750),
        ("etc/decnet/decnet.toml", 0o640),
        ("var/lib/decnet", 0o700),
        ("var/log/decnet", 0o700),
        ("etc/systemd/system/decnet-bus.service", 0o644),
        ("etc/systemd/system/decnet-listener.service", 0o644),
        ("etc/decnet/dropins/decnet-mutator-lan.conf", 0o644),
        ("etc/logrotate.d/decnet", 0o644),
        ("usr/local/bin/decnet", 0o755),
    ] {
        assert_eq!(mode(&root.join(path)), want, "{path}: {:o}", mode(&root.join(path)));
    }
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/decnet-api.service")).unwrap();
    assert!(unit.contains("\nExecStart=/usr/local/bin/decnet api\n"), "{unit}");
    assert_eq!(std::fs::read(root.join("usr/local/bin/decnet")).unwrap(), std::fs::read(support::BIN).unwrap());

    // Second run: nothing to do, and it says so.
    let (ok, second) = install(root, &[]);
    assert!(ok, "{second}");
    assert!(second.contains("nothing to change"), "{second}");
    assert!(
        !second.lines().any(|l| l.starts_with("created") || l.starts_with("updated") || l.starts_with("fixed")),
        "{second}"
    );
    assert_eq!(passwd, std::fs::read_to_string(root.join("etc/passwd")).unwrap(), "user added twice");

    // Drift is repaired: a loosened folder, an edited unit; the operator's
    // config is kept as it is.
    std::fs::set_permissions(root.join("var/lib/decnet"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("etc/systemd/system/decnet-bus.service"), "[Service]\n").unwrap();
    std::fs::write(root.join("etc/decnet/decnet.toml"), "# mine\n").unwrap();
    let (ok, third) = install(root, &[]);
    assert!(ok, "{third}");
    assert!(third.contains("fixed") && third.contains("updated"), "{third}");
    assert!(third.contains("yours differs from the shipped one: kept"), "{third}");
    assert_eq!(mode(&root.join("var/lib/decnet")), 0o700);
    assert_eq!(std::fs::read_to_string(root.join("etc/decnet/decnet.toml")).unwrap(), "# mine\n");
    assert!(std::fs::read_to_string(root.join("etc/systemd/system/decnet-bus.service"))
        .unwrap()
        .contains("Type=notify"));

    // The installed units verify against the installed binary, inside the
    // root (systemd's own targets copied in for the dependencies).
    let targets = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&targets).unwrap();
    for entry in std::fs::read_dir("/lib/systemd/system").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "target") && path.is_file() {
            std::fs::copy(&path, targets.join(path.file_name().unwrap())).unwrap();
        }
    }
    let mut verified = 0;
    for (name, _) in decnet::install::UNITS {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .arg(format!("/etc/systemd/system/{name}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        verified += 1;
    }
    assert_eq!(verified, 11);
    // The check can fail: without the binary in the root, verify refuses.
    std::fs::remove_file(root.join("usr/local/bin/decnet")).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("/etc/systemd/system/decnet-bus.service")
        .output()
        .unwrap();
    assert!(!out.status.success(), "verify accepted a missing binary");
}

#[test]
fn bad_arguments_get_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let (ok, out) = install(&root.path().join("missing"), &[]);
    assert!(!ok && out.contains("is not a directory"), "{out}");
    let (ok, out) = install(root.path(), &["--bin", "relative/decnet", "--dry-run"]);
    assert!(!ok && out.contains("not an absolute path"), "{out}");
    // As a user other than root, the host's own root is refused before
    // anything is written (the user cannot be created).
    if !nix::unistd::geteuid().is_root() {
        let (ok, out) = install(Path::new("/"), &["--no-binary"]);
        assert!(!ok && out.contains("needs root"), "{out}");
    }
}
