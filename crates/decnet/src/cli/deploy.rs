//! `decnet deploy --config fleet.toml`: validate the fleet file, then
//! deploy every decky not yet deployed (one `creation` event each).

use std::path::PathBuf;

use super::mutator::{finish_bus, FleetArgs};
use crate::fleet::Fleet;

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The fleet file (deckies with name, archetype or services, interval).
    #[arg(long)]
    pub config: PathBuf,
    /// Native driver: seconds to wait for the running mutator to open
    /// the deckies' listeners and say whether it could (0: do not wait).
    #[arg(long, default_value_t = 30)]
    pub wait_secs: u64,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

pub async fn run(args: DeployArgs) -> anyhow::Result<()> {
    // The whole file is validated before anything is touched.
    let fleet = Fleet::load(&args.config)?;
    let (mutator, bus) = args.fleet.one_shot_mutator("decnet-deploy").await?;
    let failed = mutator.deploy_fleet(&fleet).await;
    finish_bus(&bus).await;
    let failed = failed?;
    println!("{} decky(ies) in {}; {} failed", fleet.deckies.len(), args.config.display(), failed.len());
    anyhow::ensure!(failed.is_empty(), "deploy failed for: {}", failed.join(", "));
    if args.fleet.driver == crate::mutator::drivers::DriverKind::Native && args.wait_secs > 0 {
        let names: Vec<&str> = fleet.deckies.iter().map(|d| d.name.as_str()).collect();
        report_serving(&args.fleet.db_path(), &names, std::time::Duration::from_secs(args.wait_secs)).await?;
    }
    Ok(())
}

/// Wait for the running mutator to say whether it serves each of `names`
/// (the `serving` column), print what it could not, and fail if any.
/// Without a running mutator, say when the deckies will open.
async fn report_serving(db: &std::path::Path, names: &[&str], wait: std::time::Duration) -> anyhow::Result<()> {
    let home = crate::home::decnet_home();
    if crate::lock::holder(&home, "mutator")?.is_none() {
        println!("no mutator is running: the deckies open when `decnet mutator` (or `decnet up`) starts");
        return Ok(());
    }
    let pool = crate::store::open(db).await?;
    let deadline = std::time::Instant::now() + wait;
    let mut states: Vec<(String, Option<String>)> = Vec::new();
    loop {
        let serving = crate::store::fleet::serving_of_many(&pool, names).await?;
        states.clear();
        states.extend(names.iter().map(|n| (n.to_string(), serving.get(*n).cloned().flatten())));
        if states.iter().all(|(_, s)| s.is_some()) || std::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let mut not_served = Vec::new();
    for (name, state) in &states {
        match state.as_deref() {
            Some("ok") => {}
            Some(cause) => {
                println!("{name}: not served: {cause}");
                not_served.push(name.clone());
            }
            None => {
                println!("{name}: the mutator has not opened it within {} s", wait.as_secs());
                not_served.push(name.clone());
            }
        }
    }
    let served = states.len() - not_served.len();
    println!("{served} of {} decky(ies) served by the running mutator", states.len());
    anyhow::ensure!(not_served.is_empty(), "not served: {}", not_served.join(", "));
    Ok(())
}
