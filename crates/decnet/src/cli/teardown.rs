//! `decnet teardown DECKY... | --all --yes`: tear deckies down, one
//! `retirement` event each (`new_services: []`).
//!
//! Retiring the whole fleet is one mistyped command away, so it takes
//! both `--all` and `--yes`; no names and no `--all` is an error, not
//! "everything".

use super::mutator::{finish_bus, local_user, FleetArgs};

#[derive(Debug, clap::Args)]
pub struct TeardownArgs {
    /// Deckies to tear down.
    #[arg(conflicts_with = "all")]
    pub deckies: Vec<String>,
    /// Tear down every deployed decky (needs --yes).
    #[arg(long)]
    pub all: bool,
    /// Confirm --all.
    #[arg(long, requires = "all")]
    pub yes: bool,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

pub async fn run(args: TeardownArgs) -> anyhow::Result<()> {
    if args.deckies.is_empty() && !args.all {
        anyhow::bail!("name the deckies to tear down, or use --all --yes to tear down every deployed decky");
    }
    let db = args.fleet.db_path();
    let pool = crate::store::open(&db).await?;
    let deployed: Vec<String> = crate::store::fleet::list_deployed(&pool).await?.into_iter().map(|d| d.name).collect();
    pool.close().await;
    if args.all && !args.yes {
        anyhow::bail!(
            "--all would tear down {} deployed decky(ies) ({}); add --yes to confirm",
            deployed.len(),
            deployed.join(", ")
        );
    }
    let targets = if args.all { deployed } else { args.deckies.clone() };
    if targets.is_empty() {
        println!("nothing to tear down: no deployed deckies in {}", db.display());
        return Ok(());
    }
    let (mutator, bus) = args.fleet.one_shot_mutator("decnet-teardown").await?;
    let failed = mutator.teardown(&targets, Some(&local_user())).await;
    finish_bus(&bus).await;
    let failed = failed?;
    anyhow::ensure!(failed.is_empty(), "teardown failed for: {}", failed.join(", "));
    println!("tore down {} decky(ies): {}", targets.len(), targets.join(", "));
    Ok(())
}
