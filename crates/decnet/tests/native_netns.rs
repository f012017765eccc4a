//! Deckies whose sockets live in a network namespace the test creates,
//! served by the one test process (the driver's `netns` option), reached
//! by real clients run inside that namespace. The same support serves
//! every protocol's client tests (`native_support`).

mod native_support;

use native_support::{is, sd, NsFleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deckies_listen_inside_a_namespace_and_real_clients_reach_them() {
    let fleet = NsFleet::start("netns", &[("web-01", "127.0.0.1"), ("web-02", "127.0.0.2")], |_| {}).await;
    fleet.deploy("web-01", &["ssh", "http"]).await;
    fleet.deploy("web-02", &["http"]).await;

    // Default ports, inside the namespace: curl run there gets the page.
    for ip in ["127.0.0.1", "127.0.0.2"] {
        let out =
            fleet.ns.run(30, "curl", &["-sS", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://{ip}/")]).await;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{}", String::from_utf8_lossy(&out.stderr));
    }
    // Nothing of it is on the host: the same port on the host's loopback
    // is someone else's or nobody's, never this decky's.
    let at = fleet.at("web-01", "http").await;
    assert_eq!(at.port(), 80);
    let host_side =
        reqwest::Client::new().get("http://127.0.0.2/").timeout(std::time::Duration::from_secs(2)).send().await;
    assert!(host_side.is_err(), "web-02 answered on the host's loopback: {host_side:?}");

    // The lines come out on the host side, naming the source address.
    let line = fleet
        .receiver
        .wait_for("http request", |l| is(l, "http", "request") && l.hostname.as_deref() == Some("web-02"))
        .await;
    // curl in the namespace connects from its loopback's first address.
    assert_eq!(sd(&line, "src_ip"), Some("127.0.0.1"));

    // An SSH banner read from inside the namespace, and nmap -sV naming
    // the persona's web server.
    let banner = fleet.connect_and_read(fleet.at("web-01", "ssh").await, 8, std::time::Duration::from_secs(10)).await;
    assert!(banner.starts_with(b"SSH-2.0-"), "{banner:?}");
    let nmap = fleet.ns.nmap_version("127.0.0.1".parse().unwrap(), 80).await;
    assert!(nmap.contains("open") && nmap.contains("http"), "{nmap}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_namespace_fails_the_deploy_naming_it() {
    let receiver = native_support::Receiver::start().await;
    let mut o = decnet::mutator::native::NativeOptions::new(receiver.addr, b"seed".to_vec());
    o.addresses.insert("lost".into(), "127.0.0.1".parse().unwrap());
    o.netns.insert("lost".into(), "/run/netns/decnet-test-no-such-namespace".into());
    let driver = decnet::mutator::native::NativeDriver::live(o, None);
    use decnet::mutator::drivers::DeployDriver;
    let services = vec!["http".to_string()];
    let err = driver
        .apply(&decnet::mutator::drivers::Change { project: "fleet", decky: "lost", services: &services, fleet: &[] })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("decnet-test-no-such-namespace"), "{err}");
}
