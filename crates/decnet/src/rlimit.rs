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

/// The current soft open-file limit.
pub fn nofile_soft() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes only the struct we pass.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur)
}

/// Descriptors a serving process keeps for itself (database, bus, logs,
/// the runtime) beside the deckies' listening sockets.
const OWN_FILES: u64 = 64;

/// When a fleet's `listening` sockets cannot all be opened under `limit`
/// open files, the sentence that says so and what to do; `None` when they
/// fit. Deckies over the limit still fail one by one with the cause; this
/// says it once, up front, with the numbers.
pub fn shortfall(listening: u64, limit: u64) -> Option<String> {
    let needed = listening + OWN_FILES;
    (needed > limit).then(|| {
        format!(
            "the fleet's {listening} services need at least {needed} open files (one per listening socket, \
             one more per session) and the open-file limit is {limit}: the deckies past it will not listen; \
             raise LimitNOFILE in the unit (or `ulimit -Hn` as root) or deploy fewer deckies"
        )
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_fleet_over_the_limit_is_named_with_its_numbers() {
        assert_eq!(super::shortfall(1_000, 20_000), None);
        assert_eq!(super::shortfall(19_936, 20_000), None);
        let said = super::shortfall(20_000, 20_000).expect("20,000 sockets do not fit in 20,000 files");
        assert!(said.contains("20000 services") && said.contains("20064 open files"), "{said}");
        assert!(said.contains("limit is 20000") && said.contains("LimitNOFILE"), "{said}");
    }

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let (soft, hard) = super::raise_nofile().unwrap();
        assert_eq!(soft, hard);
    }
}
