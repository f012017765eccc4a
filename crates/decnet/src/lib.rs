//! The `decnet` application: bus daemon front-end, control plane (API),
//! store, mutator, events and the operator CLI. Worker-facing pieces live
//! in the `decnet-bus` crate so workers need none of this.

pub mod api;
pub mod auth;
pub mod catalogue;
pub mod cli;
pub mod clusterer;
pub mod collector;
pub mod correlate;
pub mod decky;
pub mod events;
pub mod federation;
pub mod fleet;
pub mod ingest;
pub mod lock;
pub mod logship;
pub mod mutator;
pub mod prober;
pub mod profiler;
pub mod registry;
pub mod sniffer;
pub mod state_dir;
pub mod store;
pub mod supervisor;
pub mod systemd;
pub mod topology;
pub mod topology_events;

pub use decnet_bus::paths as home;
