//! The `decnet` application: bus daemon front-end, control plane (API),
//! store, mutator, events and the operator CLI. Worker-facing pieces live
//! in the `decnet-bus` crate so workers need none of this.

pub mod alerts;
pub mod api;
pub mod auth;
pub mod cli;
pub mod clusterer;
pub mod collector;
pub mod config;
pub mod correlate;
pub mod events;
pub mod federation;
pub mod fleet;
pub mod ingest;
pub mod initial_admin;
pub mod install;
pub mod lock;
pub mod logship;
pub mod metrics;
pub mod mutator;
pub mod prober;
pub mod profiler;
pub mod registry;
pub mod retention;
pub mod rlimit;
pub mod sniffer;
pub mod state_dir;
pub mod store;
pub mod supervisor;
pub mod systemd;
pub mod topology;
pub mod topology_events;

pub use decnet_bus::paths as home;
/// The attacker-facing side (personas, protocols, shell, line format) is
/// its own crate so it can be fuzzed and reviewed without the server.
pub use decnet_decky::{self as decky, catalogue};
