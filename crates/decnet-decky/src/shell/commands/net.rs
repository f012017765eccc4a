//! Network commands. The shell opens no connection: `ifconfig`, `ip`,
//! `netstat`, `ss` describe the persona's interface and listeners; `ping`
//! answers from the decky's own table; the download tools record the URL
//! (a [`crate::shell::ShellEvent::Download`]) and print what the real tool
//! prints when the transfer cannot complete in time.

use super::{split_flags, Output};
use crate::persona::OsFamily;
use crate::shell::fs::normalize;
use crate::shell::Shell;

fn mask(prefix: u8) -> String {
    let m: u32 = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    std::net::Ipv4Addr::from(m).to_string()
}

fn broadcast(addr: &str, prefix: u8) -> String {
    let a: std::net::Ipv4Addr = addr.parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    let host_bits: u32 = if prefix >= 32 { 0 } else { u32::MAX >> prefix };
    std::net::Ipv4Addr::from(u32::from(a) | host_bits).to_string()
}

pub fn ifconfig(sh: &mut Shell, _: &[String], _: &[u8]) -> Output {
    let i = &sh.persona.interfaces[0];
    if sh.persona.family == OsFamily::Embedded {
        return Output::ok(format!(
            "{:<10}Link encap:Ethernet  HWaddr {}\n          inet addr:{}  Bcast:{}  Mask:{}\n          UP BROADCAST RUNNING MULTICAST  MTU:{}  Metric:1\n\nlo        Link encap:Local Loopback\n          inet addr:127.0.0.1  Mask:255.0.0.0\n          UP LOOPBACK RUNNING  MTU:65536  Metric:1\n\n",
            i.name,
            i.mac.to_uppercase(),
            i.address,
            broadcast(&i.address, i.prefix),
            mask(i.prefix),
            i.mtu
        ));
    }
    Output::ok(format!(
        "{}: flags=4163<UP,BROADCAST,RUNNING,MULTICAST>  mtu {}\n        inet {}  netmask {}  broadcast {}\n        ether {}  txqueuelen 1000  (Ethernet)\n        RX packets 1843722  bytes 1211843920 (1.2 GB)\n        TX packets 1203518  bytes 301245118 (301.2 MB)\n\nlo: flags=73<UP,LOOPBACK,RUNNING>  mtu 65536\n        inet 127.0.0.1  netmask 255.0.0.0\n        loop  txqueuelen 1000  (Local Loopback)\n\n",
        i.name,
        i.mtu,
        i.address,
        mask(i.prefix),
        broadcast(&i.address, i.prefix),
        i.mac
    ))
}

pub fn ip(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let i = &sh.persona.interfaces[0];
    let object = argv[1..].iter().find(|a| !a.starts_with('-')).map(String::as_str).unwrap_or("");
    match object {
        "a" | "addr" | "address" => Output::ok(format!(
            "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000\n    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n    inet 127.0.0.1/8 scope host lo\n       valid_lft forever preferred_lft forever\n2: {}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu {} qdisc fq_codel state UP group default qlen 1000\n    link/ether {} brd ff:ff:ff:ff:ff:ff\n    inet {}/{} brd {} scope global {}\n       valid_lft forever preferred_lft forever\n",
            i.name,
            i.mtu,
            i.mac,
            i.address,
            i.prefix,
            broadcast(&i.address, i.prefix),
            i.name
        )),
        "r" | "route" => Output::ok(format!(
            "default via {} dev {} proto static\n{}/{} dev {} proto kernel scope link src {}\n",
            i.gateway,
            i.name,
            network(&i.address, i.prefix),
            i.prefix,
            i.name,
            i.address
        )),
        "l" | "link" => Output::ok(format!(
            "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\n    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n2: {}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu {} qdisc fq_codel state UP mode DEFAULT group default qlen 1000\n    link/ether {} brd ff:ff:ff:ff:ff:ff\n",
            i.name, i.mtu, i.mac
        )),
        "" => Output::fail(255, "Usage: ip [ OPTIONS ] OBJECT { COMMAND | help }\n"),
        other => Output::fail(255, format!("Object \"{other}\" is unknown, try \"ip help\".\n")),
    }
}

fn network(addr: &str, prefix: u8) -> String {
    let a: std::net::Ipv4Addr = addr.parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    let m: u32 = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    std::net::Ipv4Addr::from(u32::from(a) & m).to_string()
}

/// The ports the host listens on, by the persona's kind.
fn listeners(sh: &Shell) -> Vec<(u16, &'static str)> {
    let mut l = vec![(22, "sshd")];
    if !sh.persona.http_server.is_empty() {
        l.push((80, if sh.persona.http_server.starts_with("nginx") { "nginx" } else { "apache2" }));
    }
    if sh.persona.family == OsFamily::Embedded {
        l.push((23, "telnetd"));
    }
    l
}

pub fn netstat(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let args = argv[1..].join("");
    // `-a` adds established connections: the attacker's own SSH session.
    let all = args.contains('a');
    let mut out = String::from(if all {
        "Active Internet connections (servers and established)\n"
    } else {
        "Active Internet connections (only servers)\n"
    });
    out.push_str("Proto Recv-Q Send-Q Local Address           Foreign Address         State");
    if args.contains('p') {
        out.push_str("       PID/Program name");
    }
    out.push('\n');
    for (port, prog) in listeners(sh) {
        out.push_str(&format!("tcp        0      0 0.0.0.0:{port:<16}0.0.0.0:*               LISTEN     "));
        if args.contains('p') {
            out.push_str(&format!(" {}/{prog}", 700 + port));
        }
        out.push('\n');
    }
    let client: Vec<String> =
        sh.var("SSH_CLIENT").map(|c| c.split_whitespace().map(str::to_string).collect()).unwrap_or_default();
    if let (true, [ip, port, local_port]) = (all, client.as_slice()) {
        let local = format!("{}:{local_port}", sh.persona.interfaces[0].address);
        let peer = format!("{ip}:{port}");
        out.push_str(&format!("tcp        0     52 {local:<23} {peer:<23} ESTABLISHED"));
        if args.contains('p') {
            out.push_str(&format!(" {}/sshd: {} ", sh.pid - 7, sh.user));
        }
        out.push('\n');
    }
    Output::ok(out)
}

pub fn ss(sh: &mut Shell, _: &[String], _: &[u8]) -> Output {
    let mut out = String::from("Netid State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n");
    for (port, _) in listeners(sh) {
        out.push_str(&format!("tcp   LISTEN 0      128          0.0.0.0:{port:<5}      0.0.0.0:*\n"));
    }
    Output::ok(out)
}

pub fn ping(_: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let Some(host) = argv[1..].iter().rfind(|a| !a.starts_with('-') && a.parse::<u32>().is_err()) else {
        return Output::fail(2, "ping: usage error: Destination address required\n");
    };
    // Outbound ICMP is filtered on this host: what an attacker sees from a
    // locked-down server, without the decky sending anything.
    Output::both(
        format!("PING {host} ({host}) 56(84) bytes of data.\n\n--- {host} ping statistics ---\n4 packets transmitted, 0 received, 100% packet loss, time 3065ms\n\n").into_bytes(),
        String::new(),
        1,
    )
}

/// The host part of a URL for messages, and its file name.
/// The host of a URL's authority and the port it means (the scheme's
/// default when none is written), and whether the host is an address
/// (nothing to resolve) rather than a name.
fn host_port(url: &str, authority: &str) -> (String, u16, bool) {
    let default = if url.starts_with("https://") {
        443
    } else if url.starts_with("ftp://") {
        21
    } else {
        80
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => (h.to_string(), p.parse().unwrap_or(default)),
        _ => (authority.to_string(), default),
    };
    let literal = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok();
    (host, port, literal)
}

fn url_parts(url: &str) -> (String, String) {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host = rest.split(['/', '?']).next().unwrap_or("").to_string();
    let file = rest
        .split('?')
        .next()
        .unwrap_or("")
        .rsplit('/')
        .next()
        .filter(|f| !f.is_empty() && !rest.ends_with('/'))
        .unwrap_or("index.html")
        .to_string();
    (host, file)
}

pub fn wget(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let mut output: Option<String> = None;
    let mut quiet = false;
    let mut urls = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "-O" => {
                i += 1;
                output = argv.get(i).cloned();
            }
            "-q" | "-qO-" => {
                quiet = true;
                if argv[i] == "-qO-" {
                    output = Some("-".into());
                }
            }
            a if a.starts_with("-O") => output = Some(a[2..].to_string()),
            a if a.starts_with('-') => {}
            a => urls.push(a.to_string()),
        }
        i += 1;
    }
    if urls.is_empty() {
        return Output::fail(
            1,
            "wget: missing URL\nUsage: wget [OPTION]... [URL]...\n\nTry `wget --help' for more options.\n",
        );
    }
    let embedded = sh.persona.family == OsFamily::Embedded;
    let mut err = String::new();
    for url in &urls {
        let (host, file) = url_parts(url);
        let target = output.clone().unwrap_or(file);
        let path = (target != "-").then(|| normalize(&sh.cwd, &target));
        sh.note_download("wget", url, path);
        let (name, port, literal) = host_port(url, &host);
        if embedded {
            // BusyBox wget: no resolver for a name, no route for an address.
            if literal {
                err.push_str(&format!("Connecting to {name} ({name}:{port})\nwget: can't connect to remote host ({name}): No route to host\n"));
            } else {
                err.push_str(&format!("wget: bad address '{name}'\n"));
            }
            continue;
        }
        if !quiet {
            let t = time::OffsetDateTime::now_utc();
            err.push_str(&format!(
                "--{:04}-{:02}-{:02} {:02}:{:02}:{:02}--  {url}\n",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ));
            // An address is connected to at once; a name needs DNS first.
            if literal {
                err.push_str(&format!("Connecting to {name}:{port}... failed: No route to host.\n"));
            } else {
                err.push_str(&format!("Resolving {name} ({name})... failed: Temporary failure in name resolution.\nwget: unable to resolve host address '{name}'\n"));
            }
        }
    }
    Output::both(Vec::new(), err, if embedded { 1 } else { 4 })
}

pub fn curl(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let mut output: Option<String> = None;
    let mut remote_name = false;
    let mut silent = false;
    let mut urls = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "-o" | "--output" => {
                i += 1;
                output = argv.get(i).cloned();
            }
            "-O" | "--remote-name" => remote_name = true,
            "-H" | "-d" | "-X" | "-A" | "-u" | "--data" | "--header" | "-e" | "-m" | "--max-time" => i += 1,
            a if a.starts_with('-') && !a.starts_with("--") => {
                silent |= a.contains('s');
                remote_name |= a.contains('O');
            }
            a if a.starts_with("--") => {}
            a => urls.push(a.to_string()),
        }
        i += 1;
    }
    if urls.is_empty() {
        return Output::fail(2, "curl: try 'curl --help' or 'curl --manual' for more information\n");
    }
    let mut err = String::new();
    let mut status = 6;
    for url in &urls {
        let (host, file) = url_parts(url);
        let path = output.clone().or(remote_name.then_some(file)).map(|p| normalize(&sh.cwd, &p));
        sh.note_download("curl", url, path);
        let (name, port, literal) = host_port(url, &host);
        // curl's exit code: 7 (could not connect) for an address, 6 (could
        // not resolve) for a name; the last URL's is the status.
        status = if literal { 7 } else { 6 };
        if !silent || argv.iter().any(|a| a == "-S" || a.contains("sS")) {
            if literal {
                err.push_str(&format!(
                    "curl: (7) Failed to connect to {name} port {port} after 0 ms: No route to host\n"
                ));
            } else {
                err.push_str(&format!("curl: (6) Could not resolve host: {name}\n"));
            }
        }
    }
    Output::both(Vec::new(), err, status)
}

pub fn tftp(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    // BusyBox: tftp -g -r FILE HOST [PORT]; tftp-hpa: tftp HOST -c get FILE.
    let mut remote = None;
    let mut local = None;
    let mut host = None;
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "-r" => {
                i += 1;
                remote = argv.get(i).cloned();
            }
            "-l" => {
                i += 1;
                local = argv.get(i).cloned();
            }
            "-c" if argv.get(i + 1).map(String::as_str) == Some("get") => {
                remote = argv.get(i + 2).cloned();
                i += 2;
            }
            a if a.starts_with('-') => {}
            a if host.is_none() => host = Some(a.to_string()),
            _ => {}
        }
        i += 1;
    }
    let (Some(host), Some(remote)) = (host, remote) else {
        return Output::fail(1, "BusyBox v1.31.1 multi-call binary.\n\nUsage: tftp [OPTIONS] HOST [PORT]\n");
    };
    let url = format!("tftp://{host}/{remote}");
    let path = normalize(&sh.cwd, local.as_deref().unwrap_or(crate::shell::fs::basename(&remote)));
    sh.note_download("tftp", &url, Some(path));
    Output::fail(1, "tftp: timeout\n")
}

pub fn ftpget(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let operands: Vec<&String> = {
        let mut v = Vec::new();
        let mut skip = false;
        for a in &argv[1..] {
            if skip {
                skip = false;
            } else if matches!(a.as_str(), "-u" | "-p" | "-P") {
                skip = true;
            } else if !a.starts_with('-') {
                v.push(a);
            }
        }
        v
    };
    let [host, local, remote, ..] = operands.as_slice() else {
        return Output::fail(
            1,
            "BusyBox v1.31.1 multi-call binary.\n\nUsage: ftpget [OPTIONS] HOST [LOCAL_FILE] REMOTE_FILE\n",
        );
    };
    let url = format!("ftp://{host}/{}", remote.trim_start_matches('/'));
    let path = normalize(&sh.cwd, local);
    sh.note_download("ftpget", &url, Some(path));
    Output::fail(1, format!("ftpget: can't connect to remote host ({host}): Connection timed out\n"))
}

pub fn nc(_: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let (flags, _, operands) = split_flags(&argv[1..]);
    if flags.contains('l') {
        return Output::status(0);
    }
    match operands.first() {
        Some(host) => Output::fail(
            1,
            format!(
                "nc: connect to {host} port {} (tcp) failed: Connection timed out\n",
                operands.get(1).map(String::as_str).unwrap_or("0")
            ),
        ),
        None => Output::fail(1, "usage: nc [-46CDdFhklNnrStUuvZz] [-I length] [-i interval] [-M ttl]\n"),
    }
}
