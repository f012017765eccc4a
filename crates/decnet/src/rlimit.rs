//! The open-file limit. Every decky service is a listening socket and
//! every session one more, so a fleet of thousands needs more than the
//! usual soft limit of 1,024: daemons that serve deckies raise their soft
//! limit to the hard one at start, and say what they got.

/// Raise RLIMIT_NOFILE's soft limit to the hard limit (and the hard limit
/// to the kernel's `fs.nr_open` when privileged); returns (soft, hard)
/// after the change.
pub fn raise_nofile() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit write or read only the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // With CAP_SYS_RESOURCE (root, or the unit's LimitNOFILE already
    // higher) the hard limit itself may rise to the kernel's ceiling.
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|t| t.trim().parse::<libc::rlim_t>().ok())
        .unwrap_or(lim.rlim_max);
    if ceiling > lim.rlim_max {
        let higher = libc::rlimit { rlim_cur: ceiling, rlim_max: ceiling };
        // SAFETY: as above. Refused without the privilege: keep the hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &higher) } == 0 {
            lim = higher;
        }
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim = raised;
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let (soft, hard) = super::raise_nofile().unwrap();
        assert_eq!(soft, hard);
    }
}
