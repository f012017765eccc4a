//! The mutator with the native driver: a fleet file's addresses reach the
//! listeners, mutations move the ports, every transition lands in
//! `decky_mutations`, and deckies deployed by a one-shot process (deferred
//! driver) get their listeners from the daemon's next pass.

use std::sync::Arc;
use std::time::Duration;

use decnet::decky::services::Transport;
use decnet::events::Trigger;
use decnet::fleet::Fleet;
use decnet::mutator::native::{NativeDriver, NativeOptions};
use decnet::mutator::Mutator;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OFFSET: u16 = 10_000;

fn options() -> NativeOptions {
    // No collector listens here: lines queue (bounded); this file checks ports and rows.
    let mut o = NativeOptions::new("127.0.0.1:9".parse::<std::net::SocketAddr>().unwrap(), b"seed".to_vec());
    o.port_offset = OFFSET;
    o
}

async fn http_answers(ip: &str) -> bool {
    let Ok(mut s) = TcpStream::connect((ip, 80 + OFFSET)).await else { return false };
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
    out.starts_with("HTTP/1.1 200 OK")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_addresses_reach_listeners_and_mutations_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let pool = decnet::store::open(&dir.path().join("d.db")).await.unwrap();
    let driver = Arc::new(NativeDriver::live(options(), Some(pool.clone())));
    let mutator = Mutator::new(pool.clone(), driver.clone(), None, dir.path().join("ingest.log"));
    let fleet = Fleet::parse(
        "[[decky]]\nname = \"web-01\"\narchetype = \"linux-server\"\nservices = [\"http\"]\naddress = \"127.1.10.1\"\n",
        "fleet.toml",
    )
    .unwrap();
    assert!(mutator.deploy_fleet(&fleet).await.unwrap().is_empty());
    assert!(http_answers("127.1.10.1").await, "the fleet file's address serves http");
    let addresses = decnet::store::fleet::addresses(&pool).await.unwrap();
    assert_eq!(addresses.get("web-01").map(String::as_str), Some("127.1.10.1"));

    let next = mutator.mutate_decky("web-01", Trigger::Operator, Some("alice")).await.unwrap();
    let listening: Vec<String> = driver.listening("fleet", "web-01").await.into_iter().map(|(s, _)| s).collect();
    let served: Vec<String> = next.iter().filter(|s| decnet::decky::default_port(s).is_some()).cloned().collect();
    assert_eq!(listening, served, "listeners follow the new services {next:?}");
    assert_eq!(http_answers("127.1.10.1").await, next.contains(&"http".to_string()));

    let rows = decnet::store::mutations::for_decky(&pool, "web-01").await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0].trigger.as_str(), rows[0].old_services.len()), ("creation", 0));
    assert_eq!(rows[0].new_services, ["http"]);
    assert_eq!(rows[1].trigger, "operator");
    assert_eq!(rows[1].actor.as_deref(), Some("alice"));
    assert_eq!(rows[1].old_services, rows[0].new_services, "a well-formed fold");
    assert_eq!(rows[1].new_services, next);

    mutator.teardown(&[], None).await.unwrap();
    assert!(TcpStream::connect(("127.1.10.1", 80 + OFFSET)).await.is_err());
    assert_eq!(decnet::store::mutations::for_decky(&pool, "web-01").await.unwrap()[2].trigger, "retirement");
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_deploy_is_opened_by_the_daemons_next_pass() {
    let dir = tempfile::tempdir().unwrap();
    let pool = decnet::store::open(&dir.path().join("d.db")).await.unwrap();
    // `decnet deploy` in its own process: the deferred driver settles an
    // address (none in the file: one is assigned) and opens nothing.
    let one_shot =
        Mutator::new(pool.clone(), Arc::new(NativeDriver::deferred(Some(pool.clone()))), None, dir.path().join("l"));
    let fleet = Fleet::parse("[[decky]]\nname = \"auto\"\nservices = [\"http\", \"vnc\"]\n", "f").unwrap();
    assert!(one_shot.deploy_fleet(&fleet).await.unwrap().is_empty());
    let address = decnet::store::fleet::addresses(&pool).await.unwrap()["auto"].clone();
    assert!(address.starts_with("127.2."), "{address}");
    assert!(!http_answers(&address).await, "a one-shot process opens nothing");

    // The daemon's loop pass brings its listeners in line with the database.
    let live = Arc::new(NativeDriver::live(options(), Some(pool.clone())));
    let daemon = Mutator::new(pool.clone(), live.clone(), None, dir.path().join("l"));
    daemon.mutate_all(None).await;
    assert!(http_answers(&address).await, "the daemon opened the deployed decky");
    assert_eq!(live.listening("fleet", "auto").await.len(), 2, "http and vnc both served");

    // A one-shot teardown: the next pass closes the ports.
    one_shot.teardown(&[], None).await.unwrap();
    daemon.mutate_all(None).await;
    assert!(TcpStream::connect((address.as_str(), 80 + OFFSET)).await.is_err());
    live.shutdown().await;
}

/// Issue 21's rotation rule on the demo fleet `decnet up` deploys: after
/// 50 operator rotations of every decky, none ever had zero open ports or
/// a service nothing serves, and every listed port really accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_rotations_of_the_demo_fleet_never_leave_a_decky_dark_or_unserved() {
    let dir = tempfile::tempdir().unwrap();
    let pool = decnet::store::open(&dir.path().join("d.db")).await.unwrap();
    let driver = Arc::new(NativeDriver::live(options(), Some(pool.clone())));
    let mutator = Mutator::new(pool.clone(), driver.clone(), None, dir.path().join("ingest.log"));
    // The demo fleet itself, moved to addresses no `decnet up` on this host uses.
    let text = decnet::cli::up::DEMO_FLEET.replace("127.1.0.", "127.1.77.");
    let fleet = Fleet::parse(&text, "demo").unwrap();
    assert!(mutator.deploy_fleet(&fleet).await.unwrap().is_empty());
    let mut changes = 0;
    for round in 0..=50 {
        for spec in &fleet.deckies {
            let mut services = if round == 0 {
                decnet::store::fleet::get(&pool, &spec.name).await.unwrap().unwrap().services
            } else {
                let before = decnet::store::fleet::get(&pool, &spec.name).await.unwrap().unwrap().services;
                let next = mutator.mutate_decky(&spec.name, Trigger::Operator, None).await.unwrap();
                changes += usize::from(next != before);
                next
            };
            services.sort();
            assert!(!services.is_empty(), "round {round}: {} has no services", spec.name);
            assert!(
                services.iter().all(|s| decnet::decky::is_served(s)),
                "round {round}: {} has an unserved service: {services:?}",
                spec.name
            );
            let listening = driver.listening("fleet", &spec.name).await;
            let mut names: Vec<String> = listening.iter().map(|(s, _)| s.clone()).collect();
            names.sort();
            assert_eq!(names, services, "round {round}: {} listens on what it claims", spec.name);
            for (service, addr) in listening {
                let transports = decnet::decky::services::protocol(&service).unwrap().transports();
                if transports.contains(&Transport::Tcp) {
                    assert!(
                        TcpStream::connect(addr).await.is_ok(),
                        "round {round}: {} {service} at {addr} refuses",
                        spec.name
                    );
                } else {
                    // A UDP-only service: its port is held (a bind there fails).
                    let bound = std::net::UdpSocket::bind(addr);
                    assert!(
                        bound.is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse),
                        "round {round}: {} {service} at {addr} is not bound",
                        spec.name
                    );
                }
            }
        }
    }
    // web-01 and cam-lobby have pools to rotate through; the rotations did move them.
    assert!(changes >= 50, "only {changes} of 200 rotations changed anything");
    driver.shutdown().await;
}
