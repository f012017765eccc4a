//! `decnet mutate DECKY... | --all [--now]`: ask the running mutator to
//! rotate deckies now (one `decky.<name>.mutate_request` each, actor = the
//! local user), or with `--now` do it in this process (no mutator needed).
//!
//! It only reports success when something will happen: every named decky
//! must be deployed (an unknown name is an error, not a request nobody
//! acts on), and without `--now` a mutator must be running on this
//! `$DECNET_HOME` (its lock is held), since a request published with no
//! mutator listening is silently lost.

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
    // Refuse bad names before opening anything.
    for name in &args.deckies {
        topics::decky_mutate_request(name)?;
    }
    let db = args.fleet.db_path();
    let pool = crate::store::open(&db).await?;
    let deployed: Vec<String> = crate::store::fleet::list_deployed(&pool).await?.into_iter().map(|d| d.name).collect();
    pool.close().await;
    let names = if args.all {
        anyhow::ensure!(!deployed.is_empty(), "no deployed deckies in {}", db.display());
        deployed
    } else {
        let unknown: Vec<&str> = args.deckies.iter().filter(|n| !deployed.contains(n)).map(String::as_str).collect();
        if !unknown.is_empty() {
            let known = if deployed.is_empty() { "none".to_string() } else { deployed.join(", ") };
            anyhow::bail!("no deployed decky named {} in {} (deployed: {known})", unknown.join(", "), db.display());
        }
        args.deckies.clone()
    };
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

    let home = crate::home::decnet_home();
    if crate::lock::holder(&home, "mutator")?.is_none() {
        anyhow::bail!(
            "no mutator is running on {} (nothing holds {}), so nobody would act on the request; \
             start `decnet mutator` or `decnet up`, or use --now to mutate in this process",
            home.display(),
            crate::lock::lock_path(&home, "mutator").display()
        );
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
