//! The mail deckies (imap, pop3) driven by curl, nc and `nmap -sV` inside
//! a network namespace the test makes: Dovecot's greeting and failure
//! replies (side by side with a real Dovecot from Debian's packages in the
//! same namespace), credentials recorded from LOGIN, AUTHENTICATE PLAIN, USER/PASS
//! and AUTH PLAIN, before and inside STARTTLS.

mod native_support;

use std::time::{Duration, Instant};

use native_support::{is, sd, NsFleet};

fn secret(line: &decnet::events::rfc5424::SyslogLine) -> String {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(sd(line, "secret_b64").unwrap()).unwrap();
    String::from_utf8(raw).unwrap()
}

fn login_of<'a>(app: &'a str, user: &'a str) -> impl Fn(&decnet::events::rfc5424::SyslogLine) -> bool + 'a {
    move |l| is(l, app, "login_attempt") && sd(l, "username") == Some(user)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_and_pop3_answer_as_dovecot_and_record_every_login() {
    let fleet = NsFleet::start("mail", &[("mx-01", "127.0.0.1")], |o| {
        o.personas.insert("mx-01".into(), serde_json::json!({ "release": "ubuntu-22.04" }));
    })
    .await;
    fleet.deploy("mx-01", &["imap", "pop3"]).await;
    let ns = &fleet.ns;
    let r = &fleet.receiver;

    // curl's default IMAP login: AUTHENTICATE PLAIN with SASL-IR.
    let started = Instant::now();
    let out =
        ns.run(30, "curl", &["-v", "--max-time", "20", "-u", "alice:Winter2024!", "imap://127.0.0.1/INBOX"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "< * OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Ubuntu) ready."
        ),
        "{err}"
    );
    assert!(err.contains("NO [AUTHENTICATIONFAILED] Authentication failed."), "{err}");
    assert_eq!(out.status.code(), Some(67), "curl: login denied\n{err}");
    assert!(started.elapsed() >= Duration::from_secs(2), "Dovecot's auth_failure_delay");
    let plain = r.wait_for("AUTHENTICATE PLAIN", login_of("imap", "alice")).await;
    assert_eq!(secret(&plain), "Winter2024!");
    assert_eq!(sd(&plain, "auth_method"), Some("plain"));

    // The LOGIN command, as python's imaplib sends it (a quoted password;
    // curl only ever uses AUTHENTICATE when AUTH=PLAIN is offered).
    let imaplib = r#"
import imaplib
m = imaplib.IMAP4("127.0.0.1", 143)
try:
    m.login("bob", 'p w"x')
except imaplib.IMAP4.error as e:
    print(e)
"#;
    let out = ns.run(30, "python3", &["-c", imaplib]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "b'[AUTHENTICATIONFAILED] Authentication failed.'");
    let login = r.wait_for("LOGIN", login_of("imap", "bob")).await;
    assert_eq!(secret(&login), "p w\"x");
    assert_eq!(sd(&login, "auth_method"), Some("password"));
    // The command line names the user, never the password.
    let command = r
        .wait_for("LOGIN command", |l| {
            is(l, "imap", "command") && sd(l, "command").is_some_and(|c| c.contains("LOGIN bob"))
        })
        .await;
    assert!(!sd(&command, "command").unwrap().contains("p w"));

    // STARTTLS really upgrades: curl --ssl-reqd logs in inside TLS.
    let out = ns
        .run(
            30,
            "curl",
            &["-sS", "-k", "--ssl-reqd", "--max-time", "20", "-u", "carol:tls-secret", "imap://127.0.0.1/"],
        )
        .await;
    assert_eq!(out.status.code(), Some(67), "{}", String::from_utf8_lossy(&out.stderr));
    let tls = r.wait_for("IMAP inside TLS", login_of("imap", "carol")).await;
    assert_eq!((secret(&tls).as_str(), sd(&tls, "tls")), ("tls-secret", Some("true")));

    // POP3: curl's AUTH PLAIN, then USER/PASS as nc sends them.
    let out = ns.run(30, "curl", &["-v", "--max-time", "20", "-u", "dave:pop-pass", "pop3://127.0.0.1/"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("< +OK Dovecot (Ubuntu) ready."), "{err}");
    assert!(err.contains("-ERR [AUTH] Authentication failed."), "{err}");
    let pop_plain = r.wait_for("POP3 AUTH PLAIN", login_of("pop3", "dave")).await;
    assert_eq!(secret(&pop_plain), "pop-pass");
    let out = ns
        .run(
            30,
            "sh",
            &["-c", "printf 'CAPA\\r\\nUSER erin\\r\\nPASS hunter2\\r\\nSTAT\\r\\nQUIT\\r\\n' | nc -q 8 127.0.0.1 110"],
        )
        .await;
    let dialogue = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        dialogue,
        "+OK Dovecot (Ubuntu) ready.\r\n+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\nUSER\r\nSASL PLAIN\r\n.\r\n+OK\r\n-ERR [AUTH] Authentication failed.\r\n-ERR Unknown command.\r\n+OK Logging out\r\n"
    );
    let user_pass = r.wait_for("USER/PASS", login_of("pop3", "erin")).await;
    assert_eq!(secret(&user_pass), "hunter2");
    assert!(!r.lines.lock().unwrap().iter().any(|l| l.contains(" command ") && l.contains("hunter2")));

    for (port, product) in [(143, "Dovecot imapd"), (110, "Dovecot pop3d")] {
        let nmap = ns.nmap_version("127.0.0.1".parse().unwrap(), port).await;
        assert!(nmap.contains(product), "{nmap}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_commands_end_the_session_as_dovecot_does() {
    let fleet = NsFleet::start("mail-bad", &[("mx-02", "127.0.0.1")], |o| {
        o.personas.insert("mx-02".into(), serde_json::json!({ "release": "debian-12" }));
    })
    .await;
    fleet.deploy("mx-02", &["imap", "pop3"]).await;
    // The real Dovecot from Debian's packages, with their configuration
    // and the one setting the decky's persona decides differently
    // (`disable_plaintext_auth = no`, see mail_login.rs), in the same
    // namespace on 127.0.0.2.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "!include /etc/dovecot/dovecot.conf\nbase_dir = {}/run\nlisten = 127.0.0.2\nlog_path = /dev/null\ndisable_plaintext_auth = no\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut real = fleet.ns.command("/usr/sbin/dovecot");
    real.args(["-F", "-c", conf.to_str().unwrap()]).stdout(std::process::Stdio::null());
    let _real = real.spawn().expect("dovecot (apt-get install dovecot-imapd dovecot-pop3d)");
    // `nc -q wait`: how long nc waits for answers after sending everything
    // (longer than a failed login's delay where there is one).
    let talk_for = |wait: u32, host: &'static str, port: u16, input: &'static str| {
        let ns = &fleet.ns;
        async move {
            let out = ns.run(30, "sh", &["-c", &format!("printf '{input}' | nc -q {wait} {host} {port}")]).await;
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let talk = |host: &'static str, port: u16, input: &'static str| talk_for(8, host, port, input);
    // Until its auth process answers, Dovecot greets with "Waiting for
    // authentication process to respond..": wait for the real greeting.
    for _ in 0..100 {
        if talk("127.0.0.2", 143, "a LOGOUT\\r\\n").await.starts_with("* OK [CAPABILITY") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // imap-login drops what a client pipelines behind a login (the decky
    // answers it), so each LOGIN or AUTHENTICATE that does not fail at
    // once ends its script.
    let scripts: &[(u16, &str, &str)] = &[
        (
            143,
            "a1 SELECT inbox\\r\\na2 LOGIN\\r\\nGARBAGE\\r\\na3 NOOP\\r\\n",
            "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n\
             a1 BAD Error in IMAP command received by server.\r\n\
             a2 BAD Error in IMAP command received by server.\r\n\
             * BYE Too many invalid IMAP commands.\r\n",
        ),
        (
            143,
            "a ID NIL\\r\\nb AUTHENTICATE LOGIN\\r\\ne CAPABILITY\\r\\nc AUTHENTICATE PLAIN\\r\\n*\\r\\n",
            "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n\
             * ID (\"name\" \"Dovecot\")\r\na OK ID completed.\r\n\
             b NO [ALERT] Unsupported authentication mechanism.\r\n\
             * CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN\r\n\
             e OK Pre-login capabilities listed, post-login capabilities have more.\r\n\
             + \r\nc BAD Authentication aborted by client.\r\n",
        ),
        (
            143,
            "d AUTHENTICATE PLAIN !!!\\r\\n",
            "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n\
             d BAD Invalid base64 data in initial response\r\n",
        ),
        (
            143,
            "a LOGIN admin secret\\r\\n",
            "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n\
             a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
        ),
        (
            110,
            "PASS x\\r\\nFOO\\r\\nBAR\\r\\nBAZ\\r\\nQUX\\r\\nNOOP\\r\\n",
            "+OK Dovecot (Debian) ready.\r\n-ERR No username given.\r\n-ERR Unknown command.\r\n-ERR Unknown command.\r\n\
             -ERR Unknown command.\r\n-ERR Too many invalid bad commands.\r\n",
        ),
        (
            110,
            "AUTH\\r\\nAUTH LOGIN\\r\\nAUTH PLAIN !!!\\r\\n",
            "+OK Dovecot (Debian) ready.\r\n+OK\r\nPLAIN\r\n.\r\n-ERR [AUTH] Unsupported authentication mechanism.\r\n\
             -ERR [AUTH] Invalid base64 data in initial response\r\n",
        ),
        (
            110,
            "USER erin\\r\\nPASS hunter2\\r\\n",
            "+OK Dovecot (Debian) ready.\r\n+OK\r\n-ERR [AUTH] Authentication failed.\r\n",
        ),
    ];
    for (port, input, expected) in scripts {
        let wait = if expected.contains("Authentication failed.") { 6 } else { 3 };
        let decky = talk_for(wait, "127.0.0.1", *port, input).await;
        assert_eq!(&decky, expected, "{input}");
        // The real one greets with "Waiting for authentication process"
        // while its auth process reconnects: asked again then.
        let mut real = String::new();
        for _ in 0..20 {
            real = talk_for(wait, "127.0.0.2", *port, input).await;
            if !real.starts_with("* OK Waiting for authentication process") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert_eq!(decky, real, "the real Dovecot, {input}");
    }
    // A line past the session's limit ends that session only.
    let long = format!("a LOGIN {} x\\r\\n", "u".repeat(5000));
    let out = fleet.ns.run(30, "sh", &["-c", &format!("printf '{long}' | nc -q 3 127.0.0.1 143")]).await;
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("* OK"));
    fleet
        .receiver
        .wait_for("line too long", |l| is(l, "imap", "disconnect") && sd(l, "reason") == Some("line too long"))
        .await;
    assert_eq!(talk("127.0.0.1", 110, "QUIT\\r\\n").await, "+OK Dovecot (Debian) ready.\r\n+OK Logging out\r\n");
}
