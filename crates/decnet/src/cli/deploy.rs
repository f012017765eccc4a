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
    Ok(())
}
