//! The honeypot protocols: one file per protocol, each a [`Protocol`]
//! listed once in [`REGISTRY`]. Adding a service is adding its file and
//! its line in that table; the listener, the mutator's driver and the
//! catalogue's "served" check all read the table.

pub mod ber;
pub mod certificate;
pub mod conpot;
pub mod dns;
pub mod docker_api;
pub mod elasticsearch;
pub mod frames;
pub mod ftp;
pub mod ftp_listing;
pub mod go_http;
pub mod http;
pub mod https;
pub mod imap;
pub mod installed;
pub mod k8s;
pub mod ldap;
pub mod llmnr;
pub mod mail_login;
pub mod mdns;
pub mod mongo_wire;
pub mod mongodb;
pub mod mqtt;
pub mod mssql;
pub mod mysql;
pub mod ntlm;
pub mod pop3;
pub mod postgres;
pub mod rdp;
pub mod redis;
pub mod resp;
pub mod s7comm;
pub mod sip;
pub mod smb;
pub mod smtp;
pub mod snmp;
pub mod snmp_ber;
pub mod ssh;
pub mod telnet;
pub mod telnet_wire;
pub mod tftp;
pub mod vnc;
pub mod wire;

use std::future::Future;
use std::pin::Pin;

use tokio::net::TcpStream;

use crate::event::SharedSession;
use crate::io::{End, Metered};
use crate::udp::Datagram;
use crate::DeckyContext;

/// One session's serving future.
pub type ServeFuture = Pin<Box<dyn Future<Output = End> + Send>>;

/// What a protocol is served over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// A natively served honeypot protocol.
pub trait Protocol: Sync {
    /// The catalogue name (`ssh`, `http`, …).
    fn name(&self) -> &'static str;
    /// The well-known port a scanner expects it on.
    fn default_port(&self) -> u16;
    /// Work done once per decky before the port opens (a TLS certificate,
    /// say). An error refuses the listener, so a port is never open that
    /// cannot serve.
    fn prepare(&self, _ctx: &DeckyContext) -> Result<(), String> {
        Ok(())
    }
    /// What it is served over, all on [`Protocol::default_port`] (DNS
    /// and SIP on both). TCP unless the protocol says otherwise.
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Tcp]
    }
    /// Further protocols this catalogue service also speaks, each on its
    /// own well-known port (conpot: S7comm on 102 beside Modbus/TCP on
    /// 502, as one PLC answers both). They open and close with the
    /// service, their sessions are recorded under its name, and a port
    /// offset moves them as it moves the service's own port. They are not
    /// in [`REGISTRY`]: a companion is not a service one can deploy alone.
    fn companions(&self) -> &'static [&'static dyn Protocol] {
        &[]
    }
    /// Serve one accepted connection until it ends. A UDP-only protocol
    /// keeps this default: it is never called for it.
    fn serve(&self, _session: SharedSession, _io: Metered<TcpStream>) -> ServeFuture {
        Box::pin(async { End::Io("not served over TCP".into()) })
    }
    /// Answer one datagram (UDP transports): the reply, or `None` when the
    /// real server stays silent. Lines go through `datagram`'s log; the
    /// reply must fit [`Datagram::max_reply`] or it is dropped.
    fn datagram(&self, _datagram: &mut Datagram<'_>) -> Option<Vec<u8>> {
        None
    }
}

/// Every natively served protocol.
pub static REGISTRY: &[&dyn Protocol] = &[
    &ftp::Ftp,
    &ssh::Ssh,
    &telnet::Telnet,
    &smtp::Smtp,
    &http::Http,
    &https::Https,
    &mysql::Mysql,
    &postgres::Postgres,
    &mssql::Mssql,
    &docker_api::DockerApi,
    &k8s::K8s,
    &mqtt::Mqtt,
    &conpot::Conpot,
    &smb::Smb,
    &rdp::Rdp,
    &vnc::Vnc,
    &ldap::Ldap,
    &imap::Imap,
    &pop3::Pop3,
    &redis::Redis,
    &elasticsearch::Elasticsearch,
    &mongodb::Mongodb,
    &dns::Dns,
    &llmnr::Llmnr,
    &mdns::Mdns,
    &snmp::Snmp,
    &sip::Sip,
    &tftp::Tftp,
];

/// The protocol serving `service`, if decnet serves it.
pub fn protocol(service: &str) -> Option<&'static dyn Protocol> {
    REGISTRY.iter().copied().find(|p| p.name() == service)
}

#[cfg(test)]
mod tests {
    /// The catalogue (what archetypes draw and the API accepts) and this
    /// registry (what is served) are one list: a service in one and not
    /// the other would be a port nothing answers on, or a honeypot nothing
    /// deploys.
    #[test]
    fn the_catalogue_and_the_registry_are_one_list() {
        let mut served: Vec<&str> = super::REGISTRY.iter().map(|p| p.name()).collect();
        let mut catalogue: Vec<&str> = crate::catalogue::SERVICES.to_vec();
        served.sort_unstable();
        catalogue.sort_unstable();
        assert_eq!(served, catalogue);
        for a in crate::catalogue::ARCHETYPES {
            for s in a.services {
                assert!(super::protocol(s).is_some(), "archetype {} draws {s}, which nothing serves", a.name);
            }
        }
    }
}
