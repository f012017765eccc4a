//! Sockets opened inside another network namespace.
//!
//! A decky with its own address on a LAN lives in a network namespace of
//! its own, but its listeners stay in the one decnet process: a socket
//! belongs to the namespace it was created in, whatever thread uses it
//! later. So the socket is made on a short-lived thread that has entered
//! the namespace (`setns(2)` changes only the calling thread), and handed
//! back to the async runtime, which keeps serving it from its own threads
//! in the host namespace. No process per decky.

use std::path::Path;

/// Run `make` on a thread inside the network namespace at `ns` (a file such
/// as `/run/netns/NAME` or `/proc/PID/ns/net`), or right here when `ns` is
/// `None`. Errors name the namespace and the cause (entering another
/// namespace needs CAP_SYS_ADMIN over it).
pub fn run_in<T: Send + 'static>(
    ns: Option<&Path>,
    make: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let Some(ns) = ns else { return make() };
    let file = std::fs::File::open(ns)
        .map_err(|e| std::io::Error::new(e.kind(), format!("network namespace {}: {e}", ns.display())))?;
    let shown = ns.display().to_string();
    std::thread::Builder::new()
        .name("decnet-netns".into())
        .spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a valid open descriptor; it only changes this
            // thread's namespace, and the thread ends after `make`.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let e = std::io::Error::last_os_error();
                return Err(std::io::Error::new(e.kind(), format!("cannot enter network namespace {shown}: {e}")));
            }
            make()
        })?
        .join()
        .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_namespace_the_socket_is_made_here() {
        let l = run_in(None, || std::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        assert!(l.local_addr().unwrap().port() > 0);
    }

    #[test]
    fn a_missing_namespace_is_an_error_naming_it() {
        let e = run_in(Some(Path::new("/run/netns/decnet-no-such-ns")), || Ok(())).unwrap_err();
        assert!(e.to_string().contains("decnet-no-such-ns"), "{e}");
    }
}
