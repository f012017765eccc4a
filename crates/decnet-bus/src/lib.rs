//! # decnet-bus
//!
//! The host-local service bus of a decnet deception network, and the SDK
//! every worker links. It has no HTTP and no SQL in it, so a worker that
//! only needs to publish pulls in tokio, serde and little else.
//!
//! - [`frame`]: the wire format (SPEC §2), byte-compatible with the Python bus.
//! - [`envelope`]: what subscribers receive (SPEC §3).
//! - [`topic`]: topic and pattern rules (SPEC §4).
//! - [`index`]: the subscription trie the daemon routes with.
//! - [`queue`]: the drop-oldest queue behind every subscriber.
//! - [`bus`]: the [`Bus`] trait and [`Subscription`] stream.
//! - [`topics`]: the SPEC §4 topic tree: constants, validated builders, patterns.
//! - [`fake`], [`null`]: the in-process and disabled transports.
//! - [`identity`], [`fingerprint`]: typed publishers for the clusterer and prober.
//! - [`sdk`]: the worker SDK (`get_bus`, heartbeats, control listener, `run_worker`, …).

pub mod bus;
pub mod client;
pub mod envelope;
pub mod fake;
pub mod fingerprint;
pub mod frame;
pub mod identity;
pub mod index;
pub mod json_portable;
pub mod json_scan;
pub mod null;
pub mod paths;
pub mod queue;
pub mod sdk;
pub mod server;
pub mod topic;
pub mod topics;

pub use bus::{Bus, BusError, RawEvent, Subscription};
pub use envelope::Envelope;
pub use fake::FakeBus;
pub use frame::{Frame, FrameError, Verb};
pub use index::SubscriptionIndex;
pub use null::NullBus;
pub use queue::EventQueue;
pub use sdk::{
    fake_hub, get_bus, publish_safely, run_control_listener, run_health_heartbeat, run_worker, AppBus, HealthExtra,
    ThreadSafePublisher, Worker, WorkerContext,
};
pub use topic::{Pattern, Topic, TopicError};
