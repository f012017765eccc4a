//! The database deckies (mysql, postgres, mssql) driven by their real
//! clients inside a network namespace the test creates: Debian's
//! `mariadb` client, `psql`, and python-tds (PyPI). Each client sees
//! what the real server would show it, the credential (or the crackable
//! hash of it) arrives as a `login_attempt` line the ingester stores, the
//! queries as `command` lines, and `nmap -sV` names the persona's product.

mod native_support;

use base64::Engine as _;
use decnet::events::rfc5424::SyslogLine;
use native_support::{is, sd, NsFleet};
use serde_json::json;

/// Four deckies: Debian 12 (MariaDB, PostgreSQL 15 with SCRAM), Ubuntu
/// 22.04 (MySQL 8, PostgreSQL with cleartext passwords by override),
/// Debian 11 (PostgreSQL 13, md5), Windows Server 2019 (SQL Server 2019).
/// No password is guessed in (accept_after 0), `app`/`S3cret` always works.
async fn fleet() -> NsFleet {
    let auth = json!({ "accept_after": [0, 0], "credentials": [["app", "S3cret"]] });
    let fleet = NsFleet::start(
        "dbs",
        &[("db-deb", "127.0.0.1"), ("db-ubu", "127.0.0.2"), ("db-old", "127.0.0.3"), ("sql-win", "127.0.0.4")],
        |o| {
            o.personas.insert("db-deb".into(), json!({ "release": "debian-12", "auth": auth }));
            o.personas.insert(
                "db-ubu".into(),
                json!({ "release": "ubuntu-22.04", "auth": auth, "versions": { "postgres-auth": "password" } }),
            );
            o.personas.insert("db-old".into(), json!({ "release": "debian-11", "auth": auth }));
            o.personas.insert("sql-win".into(), json!({ "release": "windows-server-2019", "auth": auth }));
        },
    )
    .await;
    fleet.deploy("db-deb", &["mysql", "postgres"]).await;
    fleet.deploy("db-ubu", &["mysql", "postgres"]).await;
    fleet.deploy("db-old", &["postgres"]).await;
    fleet.deploy("sql-win", &["mssql"]).await;
    fleet
}

fn from(line: &SyslogLine, decky: &str) -> bool {
    line.hostname.as_deref() == Some(decky)
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn sha1(parts: &[&[u8]]) -> Vec<u8> {
    let mut c = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    parts.iter().for_each(|p| c.update(p));
    c.finish().as_ref().to_vec()
}

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let mut c = ring::digest::Context::new(&ring::digest::SHA256);
    parts.iter().for_each(|p| c.update(p));
    c.finish().as_ref().to_vec()
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// The line is a credential the ingester stores, of `kind`.
fn stored_as(line: &str, kind: &str) {
    let record = decnet::collector::parse_record(line, 0.0).unwrap();
    let credential = decnet::ingest::store::credential_of(&record).expect("a credential");
    assert_eq!(credential.kind, kind, "{line}");
}

fn raw_line(fleet: &NsFleet, pred: impl Fn(&str) -> bool) -> String {
    fleet.receiver.lines.lock().unwrap().iter().find(|l| pred(l)).cloned().expect("the raw line")
}

/// `$mysqlna$<salt>*<response>` is the scramble of `password` with that salt.
fn check_mysql_native(hash: &str, password: &str) {
    let (salt, response) = hash.strip_prefix("$mysqlna$").unwrap().split_once('*').unwrap();
    let stage1 = sha1(&[password.as_bytes()]);
    let expected = xor(&stage1, &sha1(&[&unhex(salt), &sha1(&[&stage1])]));
    assert_eq!(unhex(response), expected, "{hash} is not the scramble of {password:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_clients_are_answered_as_the_real_servers_and_their_secrets_recorded() {
    let fleet = fleet().await;
    let ns = &fleet.ns;

    // MariaDB (Debian 12): a wrong password gets the real error and a
    // crackable native hash.
    let out = ns.run(60, "mariadb", &["-h", "127.0.0.1", "-u", "root", "-phunter2", "-e", "select 1"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ERROR 1045 (28000): Access denied for user 'root'@'127.0.0.1' (using password: YES)"),
        "{err}"
    );
    let line = fleet
        .receiver
        .wait_for("mysql login", |l| {
            from(l, "db-deb") && is(l, "mysql", "login_attempt") && sd(l, "username") == Some("root")
        })
        .await;
    assert_eq!(sd(&line, "hash_type"), Some("mysql-native"));
    check_mysql_native(sd(&line, "hash").unwrap(), "hunter2");
    stored_as(
        &raw_line(&fleet, |l| l.contains("db-deb mysql") && l.contains("username=\"root\"") && l.contains("hash=")),
        "hash:mysql-native",
    );

    // The listed credential gets a session; its queries are answered and recorded.
    let out = ns
        .run(
            60,
            "mariadb",
            &["-h", "127.0.0.1", "-u", "app", "-pS3cret", "-e", "select @@version; show databases; select user()"],
        )
        .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("10.11.19-MariaDB-0+deb12u1"), "{text}");
    assert!(text.contains("information_schema") && text.contains("performance_schema"), "{text}");
    assert!(text.contains("app@127.0.0.1"), "{text}");
    for query in ["select @@version", "show databases", "select user()"] {
        fleet
            .receiver
            .wait_for(query, |l| from(l, "db-deb") && is(l, "mysql", "command") && sd(l, "command") == Some(query))
            .await;
    }

    // MySQL 8 (Ubuntu 22.04): caching_sha2_password first, then the switch
    // to mysql_native_password; both scrambles are recorded and check out.
    let out = ns.run(60, "mariadb", &["-h", "127.0.0.2", "-u", "admin", "-pletmein", "-e", "select 1"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Access denied for user 'admin'@'127.0.0.1' (using password: YES)"), "{err}");
    let native = fleet
        .receiver
        .wait_for("mysql 8 native", |l| {
            from(l, "db-ubu") && is(l, "mysql", "login_attempt") && sd(l, "hash_type") == Some("mysql-native")
        })
        .await;
    check_mysql_native(sd(&native, "hash").unwrap(), "letmein");
    let fast = fleet
        .receiver
        .wait_for("mysql 8 sha2", |l| {
            from(l, "db-ubu") && is(l, "mysql", "login_attempt") && sd(l, "hash_type") == Some("mysql-caching-sha2")
        })
        .await;
    let (nonce, scramble) = sd(&fast, "hash").unwrap().strip_prefix("$mysql-sha2$").unwrap().split_once('*').unwrap();
    let h1 = sha256(&[b"letmein"]);
    let expected = xor(&h1, &sha256(&[&sha256(&[&h1]), &unhex(nonce)]));
    assert_eq!(unhex(scramble), expected);

    // PostgreSQL 15 (Debian 12): SCRAM-SHA-256; the recorded exchange
    // verifies against the password.
    let out = ns.run(60, "psql", &["postgresql://bob:Winter2024@127.0.0.1/sales", "-c", "select 1"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FATAL:  password authentication failed for user \"bob\""), "{err}");
    fleet
        .receiver
        .wait_for("pg startup", |l| {
            from(l, "db-deb")
                && is(l, "postgres", "command")
                && sd(l, "command") == Some("startup user=bob database=sales application_name=psql")
        })
        .await;
    let scram = fleet.receiver.wait_for("pg scram", |l| from(l, "db-deb") && is(l, "postgres", "login_attempt")).await;
    assert_eq!(sd(&scram, "hash_type"), Some("postgres-scram"));
    assert_eq!(sd(&scram, "database"), Some("sales"));
    check_scram(sd(&scram, "hash").unwrap(), "Winter2024");
    stored_as(
        &raw_line(&fleet, |l| l.contains("db-deb postgres") && l.contains("hash_type=\"postgres-scram\"")),
        "hash:postgres-scram",
    );

    // PostgreSQL 13 (Debian 11): md5, recorded as hashcat's mode 11100 line.
    let out = ns.run(60, "psql", &["postgresql://carol:Summer99@127.0.0.3/postgres", "-c", "select 1"]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("password authentication failed for user \"carol\""));
    let md5 = fleet.receiver.wait_for("pg md5", |l| from(l, "db-old") && is(l, "postgres", "login_attempt")).await;
    assert_eq!(sd(&md5, "hash_type"), Some("postgres-md5"));
    let hash = sd(&md5, "hash").unwrap();
    let parts: Vec<&str> = hash.strip_prefix("$postgres$").unwrap().split('*').collect();
    assert_eq!(parts[0], "carol");
    use md5::Digest as _;
    let inner = format!("{:x}", md5::Md5::digest(b"Summer99carol"));
    let outer = format!("{:x}", md5::Md5::digest([inner.as_bytes(), &unhex(parts[1])].concat()));
    assert_eq!(parts[2], outer, "{hash}");

    // Cleartext (by override): the password itself.
    let out = ns.run(60, "psql", &["postgresql://dave:pa%20ss@127.0.0.2/postgres", "-c", "select 1"]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("password authentication failed for user \"dave\""));
    let clear =
        fleet.receiver.wait_for("pg cleartext", |l| from(l, "db-ubu") && is(l, "postgres", "login_attempt")).await;
    assert_eq!(sd(&clear, "secret_b64"), Some(base64::engine::general_purpose::STANDARD.encode("pa ss").as_str()));

    // SQL Server 2019 (Windows): python-tds sends LOGIN7 in clear after the
    // PRELOGIN answer; the decoded password is recorded and the client
    // sees error 18456.
    let script = "import pytds\n\
        try:\n    pytds.connect(server='127.0.0.4', port=1433, user='sa', password='P@ssw0rd!', database='master', appname='billing', login_timeout=20)\n\
        except Exception as e:\n    print(type(e).__name__, e)\n";
    let out = ns.run(60, "python3", &["-c", script]).await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("Login failed for user 'sa'."), "{said} {}", String::from_utf8_lossy(&out.stderr));
    let login = fleet.receiver.wait_for("mssql login", |l| from(l, "sql-win") && is(l, "mssql", "login_attempt")).await;
    assert_eq!(sd(&login, "username"), Some("sa"));
    assert_eq!(sd(&login, "secret_b64"), Some(base64::engine::general_purpose::STANDARD.encode("P@ssw0rd!").as_str()));
    assert_eq!((sd(&login, "client"), sd(&login, "database")), (Some("billing"), Some("master")));
    stored_as(&raw_line(&fleet, |l| l.contains("sql-win mssql") && l.contains("secret_b64")), "password");

    // nmap -sV names each product and the persona's version.
    let mariadb = ns.nmap_version("127.0.0.1".parse().unwrap(), 3306).await;
    assert!(mariadb.contains("MySQL") && mariadb.contains("5.5.5-10.11.19-MariaDB-0+deb12u1"), "{mariadb}");
    let mysql8 = ns.nmap_version("127.0.0.2".parse().unwrap(), 3306).await;
    assert!(mysql8.contains("MySQL 8.0.41-0ubuntu0.22.04.1"), "{mysql8}");
    let pg = ns.nmap_version("127.0.0.3".parse().unwrap(), 5432).await;
    // Debian 11's 13.8: the postmaster.c line nmap's table knows.
    assert!(pg.contains("PostgreSQL DB 13.5 - 13.8"), "{pg}");
    let mssql = ns.nmap_version("127.0.0.4".parse().unwrap(), 1433).await;
    assert!(mssql.contains("Microsoft SQL Server 2019") && mssql.contains("15.00.4385"), "{mssql}");
}

/// The SCRAM line verifies against `password` as RFC 5802 says.
fn check_scram(hash: &str, password: &str) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let parts: Vec<&str> = hash.strip_prefix("$scram-sha-256$").unwrap().split('$').collect();
    let iterations: u32 = parts[0].parse().unwrap();
    let (salt, auth_message, proof) =
        (b64.decode(parts[1]).unwrap(), b64.decode(parts[2]).unwrap(), b64.decode(parts[3]).unwrap());
    let mut salted = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(iterations).unwrap(),
        &salt,
        password.as_bytes(),
        &mut salted,
    );
    let hmac = |key: &[u8], data: &[u8]| {
        ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), data).as_ref().to_vec()
    };
    let client_key = hmac(&salted, b"Client Key");
    let signature = hmac(&sha256(&[&client_key]), &auth_message);
    assert_eq!(xor(&client_key, &signature), proof, "{hash} is not an exchange of {password:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_packets_end_only_their_own_session() {
    let fleet = NsFleet::start("dbs-bad", &[("db", "127.0.0.1")], |o| {
        o.personas.insert("db".into(), json!({ "release": "debian-12" }));
    })
    .await;
    fleet.deploy("db", &["mysql", "postgres", "mssql"]).await;
    // Each a packet whose length field claims far more than the limits:
    // the session ends at once (no 16 MiB buffer, no wait for the bytes).
    let cases: [(u16, &[u8]); 3] = [
        (3306, b"\xff\xff\xff\x01"),
        (5432, b"\x00\x00\x00\x08\x04\xd2\x16\x2f\x00\x00\x00\x12\x00\x03\x00\x00user\x00bob\x00\x00p\xff\xff\xff\xff"),
        (1433, b"\x12\x01\xff\xff\x00\x00\x00\x00"),
    ];
    let path = fleet.ns.path();
    for (port, bytes) in cases {
        let bytes = bytes.to_vec();
        let path = path.clone();
        let started = std::time::Instant::now();
        let got = tokio::task::spawn_blocking(move || {
            decnet::decky::netns::run_in(Some(&path), move || {
                use std::io::{Read, Write};
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
                s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
                s.write_all(&bytes)?;
                let mut all = Vec::new();
                let _ = s.read_to_end(&mut all);
                Ok(all)
            })
        })
        .await
        .unwrap()
        .unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "port {port} held the session");
        if port == 5432 {
            assert!(got.starts_with(b"N"), "the SSL request is still answered: {got:?}");
        }
    }
    for service in ["mysql", "postgres", "mssql"] {
        let line = fleet
            .receiver
            .wait_for(service, |l| is(l, service, "disconnect") && sd(l, "reason") == Some("line too long"))
            .await;
        assert_eq!(sd(&line, "src_ip"), Some("127.0.0.1"));
    }
    // The services still answer a real client afterwards.
    let out = fleet.ns.run(60, "mariadb", &["-h", "127.0.0.1", "-u", "x", "-py", "-e", "select 1"]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("ERROR 1045 (28000)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_lets_the_policys_nth_attempt_in_but_never_root() {
    let fleet = NsFleet::start("dbs-policy", &[("db", "127.0.0.1")], |o| {
        o.personas.insert(
            "db".into(),
            json!({ "release": "ubuntu-22.04", "auth": { "accept_after": [2, 2], "credentials": [] } }),
        );
    })
    .await;
    fleet.deploy("db", &["mysql"]).await;
    let try_login = |user: &'static str, password: &'static str| {
        let ns = &fleet.ns;
        async move {
            let flag = format!("-p{password}");
            ns.run(60, "mariadb", &["-h", "127.0.0.1", "-u", user, &flag, "-e", "select user()"]).await
        }
    };
    // root is refused every time, and its attempts do not count.
    for _ in 0..3 {
        let out = try_login("root", "toor").await;
        assert!(String::from_utf8_lossy(&out.stderr).contains("Access denied for user 'root'"));
    }
    let first = try_login("bob", "one").await;
    assert!(String::from_utf8_lossy(&first.stderr).contains("Access denied for user 'bob'"));
    let second = try_login("bob", "two").await;
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert!(String::from_utf8_lossy(&second.stdout).contains("bob@127.0.0.1"));
    fleet.receiver.wait_for("bob's query", |l| is(l, "mysql", "command") && sd(l, "username") == Some("bob")).await;
}
