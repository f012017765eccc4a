//! The two systems under test behind one shape, so `decnet bench` runs the
//! *same* workload against the decnet bus and against NATS.
//!
//! Both sides get the same structure: one connection per publisher and per
//! subscriber, the same payload bytes per event, no decode on receive
//! (the bus hands back the raw envelope bytes, NATS the raw message), and
//! the same local buffering (a 64 Ki-event subscription queue on both).

use anyhow::Context;
use bytes::Bytes;
use decnet_bus::bus::{Bus, Subscription};
use decnet_bus::client::UnixBus;
use futures_util::StreamExt;
use std::path::PathBuf;

/// Events a subscriber may buffer locally before its client drops some:
/// the same for both systems (async-nats calls it subscription capacity).
pub const LOCAL_SUB_CAPACITY: usize = 65_536;

/// Where the workload runs.
#[derive(Debug, Clone)]
pub enum Target {
    Bus(PathBuf),
    Nats(String),
}

impl Target {
    pub fn label(&self) -> &'static str {
        match self {
            Target::Bus(_) => "decnet bus",
            Target::Nats(_) => "nats-server",
        }
    }

    /// Open one new connection.
    pub async fn connect(&self, name: &str) -> anyhow::Result<Conn> {
        match self {
            Target::Bus(path) => {
                let bus = UnixBus::connect(name, path.clone())
                    .await
                    .with_context(|| format!("cannot connect to the bus at {}", path.display()))?;
                Ok(Conn::Bus(bus))
            }
            Target::Nats(url) => {
                let client = async_nats::ConnectOptions::new()
                    .name(name)
                    .subscription_capacity(LOCAL_SUB_CAPACITY)
                    .connect(url.as_str())
                    .await
                    .with_context(|| format!("cannot connect to NATS at {url}"))?;
                Ok(Conn::Nats(client))
            }
        }
    }
}

/// One connection to the system under test.
#[derive(Clone)]
pub enum Conn {
    Bus(UnixBus),
    Nats(async_nats::Client),
}

impl Conn {
    /// Publish `body` as is: the PUB body on the bus, the message on NATS.
    pub async fn publish(&self, topic: &str, body: Bytes) -> anyhow::Result<()> {
        match self {
            Conn::Bus(bus) => bus.publish_raw(topic, &body).await?,
            Conn::Nats(client) => client.publish(topic.to_string(), body).await?,
        }
        Ok(())
    }

    /// Wait until everything published on this connection has left it.
    pub async fn flush(&self) -> anyhow::Result<()> {
        match self {
            Conn::Bus(bus) => bus.flush().await?,
            Conn::Nats(client) => client.flush().await?,
        }
        Ok(())
    }

    pub async fn subscribe(&self, pattern: &str, capacity: usize) -> anyhow::Result<Sub> {
        Ok(match self {
            Conn::Bus(bus) => Sub::Bus(bus.subscribe_with_capacity(pattern, capacity).await?),
            Conn::Nats(client) => Sub::Nats(client.subscribe(pattern.to_string()).await?),
        })
    }

    pub async fn close(&self) {
        match self {
            Conn::Bus(bus) => bus.close().await,
            Conn::Nats(client) => {
                let _ = client.flush().await;
            }
        }
    }
}

/// One subscription; yields raw event bytes (the envelope, or the NATS message).
pub enum Sub {
    Bus(Subscription),
    Nats(async_nats::Subscriber),
}

impl Sub {
    pub async fn next(&mut self) -> Option<Bytes> {
        match self {
            Sub::Bus(sub) => sub.next_raw().await.map(|ev| ev.body),
            Sub::Nats(sub) => sub.next().await.map(|m| m.payload),
        }
    }
}
