//! The smallest decnet worker: heartbeats on `system.<name>.health` until
//! stopped by SIGTERM/SIGINT or `decnet pub system.<name>.control '{"action":"stop"}'`.
//!
//! `cargo run --example heartbeat_worker -p decnet-bus -- [name]` (or `DECNET_WORKER_NAME`).

#[tokio::main]
async fn main() -> Result<(), decnet_bus::BusError> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())).init();
    let name = std::env::args().nth(1).or_else(|| std::env::var("DECNET_WORKER_NAME").ok());
    decnet_bus::run_worker(name.as_deref().unwrap_or("example"), |ctx| async move {
        ctx.shutdown.cancelled().await; // a real worker does its job here until this fires
    })
    .await
}
