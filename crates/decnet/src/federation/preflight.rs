//! One plain TCP connect to the first NATS server at start, to name the
//! cause when NATS is unreachable. async-nats reports every failed connect
//! as "IO error" and keeps retrying; under a unit that forbids the network
//! (the bus's base unit: AF_UNIX only, PrivateNetwork=yes) that was the
//! only line in the log while no event was exported (issue 26).

use std::time::Duration;

const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(3);

/// `host:port` of a NATS server URL (`nats://user:pw@host:4222`, `tls://host`,
/// `host:port`, `host`); the port defaults to 4222.
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let rest = rest.split('/').next().unwrap_or(rest);
    let has_port = match rest.rsplit_once(':') {
        // `[::1]:4222` has a port; bare `[::1]` and `::1` do not.
        Some((host, port)) => port.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']')),
        None => false,
    };
    if has_port {
        rest.to_owned()
    } else if rest.contains(':') && !rest.starts_with('[') {
        format!("[{rest}]:4222")
    } else {
        format!("{rest}:4222")
    }
}

/// What an OS error on connect means for an operator, when it is one the
/// sandbox of a systemd unit causes.
pub fn hint(e: &std::io::Error) -> Option<&'static str> {
    match e.raw_os_error() {
        Some(libc::EAFNOSUPPORT) => Some(
            "TCP sockets are forbidden to this process (systemd RestrictAddressFamilies=); \
             install deploy/decnet-bus-nats.conf as a drop-in of decnet-bus.service",
        ),
        Some(libc::ENETUNREACH) => Some(
            "no route to the NATS server; under systemd, PrivateNetwork=yes leaves only loopback: \
             install deploy/decnet-bus-nats.conf as a drop-in of decnet-bus.service",
        ),
        Some(libc::EPERM) => Some(
            "the connect was refused locally (systemd IPAddressDeny= or a firewall); \
             install deploy/decnet-bus-nats.conf or allow the NATS addresses",
        ),
        _ => None,
    }
}

/// Try the first server once; log a warning naming the cause if it fails.
pub async fn check(servers: Vec<String>) {
    let Some(first) = servers.first() else { return };
    let target = host_port(first);
    let result = tokio::time::timeout(PREFLIGHT_TIMEOUT, tokio::net::TcpStream::connect(&target)).await;
    match result {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => match hint(&e) {
            Some(hint) => tracing::error!(server = %target, error = %e, "cannot reach NATS: {hint}"),
            None => tracing::warn!(server = %target, error = %e, "cannot reach NATS yet; retrying in the background"),
        },
        Err(_) => tracing::warn!(server = %target, "NATS did not answer within 3 s; retrying in the background"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_host_and_port() {
        assert_eq!(host_port("nats://127.0.0.1:4223"), "127.0.0.1:4223");
        assert_eq!(host_port("nats://u:p@nats.example"), "nats.example:4222");
        assert_eq!(host_port("tls://[::1]:4222"), "[::1]:4222");
        assert_eq!(host_port("::1"), "[::1]:4222");
        assert_eq!(host_port("localhost"), "localhost:4222");
    }

    #[test]
    fn sandbox_errors_name_the_drop_in() {
        let e = std::io::Error::from_raw_os_error(libc::EAFNOSUPPORT);
        assert!(hint(&e).unwrap().contains("decnet-bus-nats.conf"));
        assert!(hint(&std::io::Error::from_raw_os_error(libc::ECONNREFUSED)).is_none());
    }
}
