//! The `decnet` application: bus daemon front-end, control plane (API),
//! store, mutator, events and the operator CLI. Worker-facing pieces live
//! in the `decnet-bus` crate so workers need none of this.

pub mod api;
pub mod auth;
pub mod catalogue;
pub mod cli;
pub mod correlate;
pub mod events;
pub mod federation;
pub mod fleet;
pub mod logship;
pub mod mutator;
pub mod registry;
pub mod store;
pub mod supervisor;
pub mod systemd;
pub mod topology;
pub mod topology_events;

pub use decnet_bus::paths as home;
