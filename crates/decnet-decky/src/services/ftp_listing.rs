//! What the FTP decky's directories hold, from its persona: a fresh host's
//! home directories (what `useradd -m` copies from the release's
//! `/etc/skel`) and its anonymous root, in vsftpd's `LIST` format.
//!
//! Nothing here is bait: a real host just installed has these files and
//! no others, and an intruder who finds exactly that has no reason to
//! doubt the host.

use crate::persona::Persona;

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub dir: bool,
    pub mode: &'static str,
    pub links: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Unix seconds.
    pub mtime: i64,
}

/// The skeleton files of a release: (name, size, mtime). Sizes are those
/// of the release's `bash` (Debian/Ubuntu) or `bash`/`setup` (CentOS)
/// skeleton files; mtimes are their package build dates, which `useradd`
/// keeps when it copies them.
fn skel(persona: &Persona) -> &'static [(&'static str, u64, i64)] {
    match persona.release.as_str() {
        "ubuntu-22.04" => {
            &[(".bash_logout", 220, 1_641_473_160), (".bashrc", 3771, 1_641_473_160), (".profile", 807, 1_641_473_160)]
        }
        "ubuntu-20.04" => {
            &[(".bash_logout", 220, 1_582_642_440), (".bashrc", 3771, 1_582_642_440), (".profile", 807, 1_582_642_440)]
        }
        "debian-11" => {
            &[(".bash_logout", 220, 1_628_086_440), (".bashrc", 3526, 1_628_086_440), (".profile", 807, 1_628_086_440)]
        }
        "debian-12" => {
            &[(".bash_logout", 220, 1_682_243_640), (".bashrc", 3526, 1_682_243_640), (".profile", 807, 1_682_243_640)]
        }
        "centos-7" => &[
            (".bash_logout", 18, 1_585_747_200),
            (".bash_profile", 193, 1_585_747_200),
            (".bashrc", 231, 1_585_747_200),
        ],
        _ => &[],
    }
}

/// When the persona's accounts were made: a while before its first
/// recorded login.
fn installed_at(persona: &Persona) -> i64 {
    let first_login = persona.last_logins.iter().map(|l| l.at).min().unwrap_or(persona.boot_time);
    first_login.min(persona.boot_time) - 9 * 86_400 - 4_321
}

/// The home directory of `user` on this persona (where vsftpd puts a local
/// user), with its owner ids; users the persona does not have get the
/// next free uid, as `useradd` would have given them.
pub fn home_of(persona: &Persona, user: &str) -> (String, u32) {
    match persona.user(user) {
        Some(u) => (u.home.clone(), u.uid),
        None => {
            let next =
                persona.users.iter().map(|u| u.uid).filter(|u| *u >= 1000 && *u < 60_000).max().unwrap_or(999) + 1;
            (format!("/home/{}", user.chars().take(32).collect::<String>()), next)
        }
    }
}

/// The anonymous FTP root as the client sees it (vsftpd chroots there):
/// Debian's `/srv/ftp` is empty, CentOS's `/var/ftp` ships `pub`.
pub fn anonymous_root(persona: &Persona) -> Vec<Entry> {
    let at = installed_at(persona);
    let mut out = vec![dir(".", 0, 0, 3, at), dir("..", 0, 0, 3, at)];
    if persona.os_id == "centos" {
        out.push(dir("pub", 0, 0, 2, at));
    } else {
        out[0].links = 2;
        out[1].links = 2;
    }
    out
}

/// The listing of `path` for a user whose home is `home` (owner `uid`).
/// Only the home directory and `/home` have known contents; any other
/// directory lists as empty, as vsftpd lists a path it cannot read.
pub fn directory(persona: &Persona, path: &str, home: &str, uid: u32) -> Vec<Entry> {
    let at = installed_at(persona);
    if path == home {
        let mut out = vec![dir(".", uid, uid, 2, at), dir("..", 0, 0, 3 + persona.users.len() as u32, at)];
        out.extend(skel(persona).iter().map(|(name, size, mtime)| Entry {
            name: name.to_string(),
            dir: false,
            mode: "-rw-r--r--",
            links: 1,
            uid,
            gid: uid,
            size: *size,
            mtime: *mtime,
        }));
        return out;
    }
    if path == "/home" {
        let mut out = vec![dir(".", 0, 0, 3, at), dir("..", 0, 0, 19, at)];
        out.extend(
            persona
                .users
                .iter()
                .filter(|u| u.home.starts_with("/home/"))
                .map(|u| Entry { mode: "drwxr-x---", ..dir(&u.home["/home/".len()..], u.uid, u.gid, 2, at) }),
        );
        return out;
    }
    Vec::new()
}

fn dir(name: &str, uid: u32, gid: u32, links: u32, mtime: i64) -> Entry {
    Entry { name: name.to_string(), dir: true, mode: "drwxr-xr-x", links, uid, gid, size: 4096, mtime }
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// vsftpd's date column: `Mon DD HH:MM` within six months of `now`,
/// `Mon DD  YYYY` otherwise (day zero-padded, unlike `ls`).
fn date(mtime: i64, now: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(mtime).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let month = MONTHS[t.month() as usize - 1];
    if (now - mtime).abs() < 182 * 86_400 {
        format!("{month} {:02} {:02}:{:02}", t.day(), t.hour(), t.minute())
    } else {
        format!("{month} {:02}  {}", t.day(), t.year())
    }
}

/// `LIST` output: one vsftpd line per entry; dot files only with `-a`.
pub fn list(entries: &[Entry], all: bool, now: i64) -> String {
    entries
        .iter()
        .filter(|e| all || !e.name.starts_with('.'))
        .map(|e| {
            format!(
                "{} {:>4} {:<8} {:<8} {:>8} {} {}\r\n",
                e.mode,
                e.links,
                e.uid,
                e.gid,
                e.size,
                date(e.mtime, now),
                e.name
            )
        })
        .collect()
}

/// `NLST` output: names only, dot files only with `-a`.
pub fn names(entries: &[Entry], all: bool) -> String {
    entries.iter().filter(|e| all || !e.name.starts_with('.')).map(|e| format!("{}\r\n", e.name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_vsftpds_columns() {
        // The same columns real vsftpd 3.0.3 printed for these entries.
        let e = Entry {
            name: "readme.txt".into(),
            dir: false,
            mode: "-rw-r--r--",
            links: 1,
            uid: 0,
            gid: 0,
            size: 6,
            mtime: 1_682_244_000,
        };
        assert_eq!(
            list(std::slice::from_ref(&e), false, 1_764_759_600),
            "-rw-r--r--    1 0        0               6 Apr 23  2023 readme.txt\r\n"
        );
        let recent = Entry { mtime: 1_764_759_600 - 3600, ..e };
        assert!(list(&[recent], false, 1_764_759_600).contains(" Dec 03 10:00 "));
    }

    #[test]
    fn a_fresh_home_has_only_the_skeleton_files() {
        let p = Persona::derive("files", None, None, 1_764_759_600);
        let user = p.users.iter().find(|u| u.uid >= 1000).unwrap();
        let entries = directory(&p, &user.home, &user.home, user.uid);
        assert_eq!(list(&entries, false, 1_764_759_600), "", "a fresh home shows nothing without -a");
        let all = names(&entries, true);
        assert!(all.contains(".bashrc\r\n") && all.contains(".profile\r\n"), "{all}");
        assert!(!all.contains("id_rsa"), "{all}");
    }
}
