//! Package managers and toolchains: version checks answer from the
//! persona's packages; installs fail the way an offline host's do.

use super::Output;
use crate::persona::OsFamily;
use crate::shell::Shell;

fn package_version(sh: &Shell, name: &str) -> Option<String> {
    sh.persona.packages.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

pub fn apt(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    if sh.persona.os_id == "centos" || sh.persona.family != OsFamily::Linux {
        return Output::fail(127, format!("-bash: {}: command not found\n", argv[0]));
    }
    let action = argv[1..].iter().find(|a| !a.starts_with('-')).map(String::as_str).unwrap_or("");
    if matches!(action, "install" | "update" | "upgrade" | "remove" | "purge") && sh.uid != 0 {
        return Output::fail(
            100,
            "E: Could not open lock file /var/lib/dpkg/lock-frontend - open (13: Permission denied)\nE: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), are you root?\n",
        );
    }
    let archive = if sh.persona.os_id == "ubuntu" { "archive.ubuntu.com" } else { "deb.debian.org" };
    match action {
        "update" => Output::both(
            format!("Err:1 http://{archive}/{} {} InRelease\n  Temporary failure resolving '{archive}'\nReading package lists... Done\n", sh.persona.os_id, sh.persona.release_facts().version_codename).into_bytes(),
            format!("W: Failed to fetch http://{archive}/{}/dists/{}/InRelease  Temporary failure resolving '{archive}'\nW: Some index files failed to download. They have been ignored, or old ones used instead.\n", sh.persona.os_id, sh.persona.release_facts().version_codename),
            0,
        ),
        "install" => {
            let pkg = argv.iter().skip(2).find(|a| !a.starts_with('-')).cloned().unwrap_or_default();
            Output::both(
                b"Reading package lists... Done\nBuilding dependency tree... Done\nReading state information... Done\n".to_vec(),
                format!("E: Unable to locate package {pkg}\n"),
                100,
            )
        }
        "" => Output::ok("apt 2.4.11 (amd64)\nUsage: apt [options] command\n"),
        "list" if argv.iter().any(|a| a == "--installed" || a == "-i") => {
            let codename = sh.persona.release_facts().version_codename;
            let mut out = String::from("Listing... Done\n");
            let mut packages: Vec<&(String, String)> = sh.persona.packages.iter().collect();
            packages.sort();
            for (name, version) in packages {
                out.push_str(&format!("{name}/{codename},now {version} amd64 [installed]\n"));
            }
            // apt says this on stderr whenever its output is not a terminal.
            Output::both(
                out.into_bytes(),
                "\nWARNING: apt does not have a stable CLI interface. Use with caution in scripts.\n\n".into(),
                0,
            )
        }
        _ => Output::ok("Reading package lists... Done\n"),
    }
}

pub fn yum(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    if sh.persona.os_id != "centos" {
        return Output::fail(127, format!("-bash: {}: command not found\n", argv[0]));
    }
    if sh.uid != 0 {
        return Output::fail(1, "Loaded plugins: fastestmirror\nYou need to be root to perform this command.\n");
    }
    Output::fail(
        1,
        "Loaded plugins: fastestmirror\nCould not retrieve mirrorlist http://mirrorlist.centos.org/?release=7&arch=x86_64&repo=os&infra=stock error was\n14: curl#6 - \"Could not resolve host: mirrorlist.centos.org; Unknown error\"\n",
    )
}

pub fn dpkg(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    if sh.persona.os_id == "centos" || sh.persona.family != OsFamily::Linux {
        return Output::fail(127, "-bash: dpkg: command not found\n");
    }
    if argv.get(1).map(String::as_str) == Some("-l") {
        let mut out = String::from("Desired=Unknown/Install/Remove/Purge/Hold\n| Status=Not/Inst/Conf-files/Unpacked/halF-conf/Half-inst/trig-aWait/Trig-pend\n|/ Err?=(none)/Reinst-required (Status,Err: uppercase=bad)\n||/ Name           Version                 Architecture Description\n+++-==============-=======================-============-=================================\n");
        for (n, v) in &sh.persona.packages {
            out.push_str(&format!("ii  {n:<14} {v:<23} amd64        {n}\n"));
        }
        return Output::ok(out);
    }
    Output::ok("")
}

pub fn rpm(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    if sh.persona.os_id != "centos" {
        return Output::fail(127, "-bash: rpm: command not found\n");
    }
    if argv.iter().any(|a| a == "-qa") {
        let out: String = sh.persona.packages.iter().map(|(n, v)| format!("{n}-{v}.x86_64\n")).collect();
        return Output::ok(out);
    }
    Output::ok("")
}

pub fn python(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let name = argv[0].rsplit('/').next().unwrap_or("python");
    let version = match (name, package_version(sh, "python3"), package_version(sh, "python")) {
        ("python3", Some(v), _) | ("python", None, Some(v)) => v.split(['-', '~']).next().unwrap_or("").to_string(),
        ("python", Some(v), None) if sh.persona.os_id == "centos" => v,
        _ => return Output::fail(127, format!("-bash: {name}: command not found\n")),
    };
    match argv.get(1).map(String::as_str) {
        Some("-V") | Some("--version") => {
            // Python 2 prints its version on stderr.
            if version.starts_with('2') {
                Output::fail(0, format!("Python {version}\n"))
            } else {
                Output::ok(format!("Python {version}\n"))
            }
        }
        Some("-c") => Output::status(0),
        _ => Output::ok(""),
    }
}

pub fn perl(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let Some(v) = package_version(sh, "perl") else { return Output::fail(127, "-bash: perl: command not found\n") };
    let v = v.split(['-', '~']).next().unwrap_or("").to_string();
    // Debian's perl names the multiarch triplet; Red Hat's does not.
    let arch = if sh.persona.os_id == "centos" { "x86_64-linux-thread-multi" } else { "x86_64-linux-gnu-thread-multi" };
    match argv.get(1).map(String::as_str) {
        Some("-v") | Some("--version") => Output::ok(format!(
            "\nThis is perl 5, version {}, subversion {} (v{v}) built for {arch}\n\nCopyright 1987-2022, Larry Wall\n",
            v.split('.').nth(1).unwrap_or("0"),
            v.split('.').nth(2).unwrap_or("0")
        )),
        _ => Output::status(0),
    }
}
