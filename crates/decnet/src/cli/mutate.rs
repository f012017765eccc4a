//! `decnet mutate DECKY... | --all [--now]`: ask the running mutator to
//! rotate deckies now (one `decky.<name>.mutate_request` each, actor = the
//! local user), or with `--now` do it in this process (no mutator needed).

use decnet_bus::client::UnixBus;
use decnet_bus::{topics, Bus};

use super::mutator::{finish_bus, local_user, FleetArgs};
use crate::events::Trigger;

#[derive(Debug, clap::Args)]
pub struct MutateArgs {
    /// Deckies to mutate.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub deckies: Vec<String>,
    /// Every deployed decky (read from the database).
    #[arg(long)]
    pub all: bool,
    /// Mutate in this process through the driver instead of asking the mutator.
    #[arg(long)]
    pub now: bool,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

pub async fn run(args: MutateArgs) -> anyhow::Result<()> {
    let actor = local_user();
    let names = if args.all {
        let pool = crate::store::open(&args.fleet.db_path()).await?;
        let names: Vec<String> = crate::store::fleet::list_deployed(&pool).await?.into_iter().map(|d| d.name).collect();
        anyhow::ensure!(!names.is_empty(), "no deployed deckies in {}", args.fleet.db_path().display());
        names
    } else {
        args.deckies.clone()
    };
    // Refuse bad names before sending anything.
    let request_topics = names.iter().map(|n| topics::decky_mutate_request(n)).collect::<Result<Vec<_>, _>>()?;

    if args.now {
        let (mutator, bus) = args.fleet.one_shot_mutator("decnet-mutate").await?;
        let mut failed = Vec::new();
        for name in &names {
            match mutator.mutate_decky(name, Trigger::Operator, Some(&actor)).await {
                Ok(services) => println!("{name}: {}", services.join(",")),
                Err(e) => {
                    eprintln!("{name}: {e:#}");
                    failed.push(name.clone());
                }
            }
        }
        finish_bus(&bus).await;
        anyhow::ensure!(failed.is_empty(), "mutation failed for: {}", failed.join(", "));
        return Ok(());
    }

    let socket = args.fleet.socket_path();
    let bus = UnixBus::connect("decnet-mutate", &socket).await.map_err(|e| {
        anyhow::anyhow!("{e}; is `decnet bus` running? (use --now to mutate without a running mutator)")
    })?;
    for (name, topic) in names.iter().zip(&request_topics) {
        let payload = serde_json::json!({ "decky": name, "actor": actor });
        bus.publish(topic.as_str(), "mutate_request", payload).await?;
    }
    finish_bus(&bus).await;
    println!("requested mutation of {} decky(ies)", names.len());
    Ok(())
}
