//! `decnet teardown [DECKY...]`: tear deckies down (all by default), one
//! `retirement` event each (`new_services: []`).

use super::mutator::{finish_bus, local_user, FleetArgs};

#[derive(Debug, clap::Args)]
pub struct TeardownArgs {
    /// Deckies to tear down; all deployed deckies when none are named.
    pub deckies: Vec<String>,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

pub async fn run(args: TeardownArgs) -> anyhow::Result<()> {
    let (mutator, bus) = args.fleet.one_shot_mutator("decnet-teardown").await?;
    let failed = mutator.teardown(&args.deckies, Some(&local_user())).await;
    finish_bus(&bus).await;
    let failed = failed?;
    anyhow::ensure!(failed.is_empty(), "teardown failed for: {}", failed.join(", "));
    Ok(())
}
