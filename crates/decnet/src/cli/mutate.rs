//! `decnet mutate DECKY... | --all [--now]`: ask the running mutator to
//! rotate deckies now (one `decky.<name>.mutate_request` each, actor = the
//! local user), or with `--now` do it in this process (no mutator needed).
//!
//! It only reports success when something will happen: every named decky
//! must be deployed (an unknown name is an error, not a request nobody
//! acts on), and without `--now` a mutator must be running on this
//! `$DECNET_HOME` (its lock is held), since a request published with no
//! mutator listening is silently lost.
//!
//! It says what changed, one line per decky: `web-01: ssh,http → ftp,smb`.
//! With `--now` from the driver's answer; otherwise from the mutator's
//! `decky.<name>.mutation` event, waited for up to `--wait` seconds (a
//! decky with no event by then is reported as requested, not failed: the
//! request is out and the mutator may just be slow).

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
    /// Seconds to wait for the mutator to report each change (0: just ask).
    #[arg(long, value_name = "SECS", default_value_t = 3.0, value_parser = parse_wait)]
    pub wait: f64,
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
    let fleet = crate::store::fleet::list_deployed(&pool).await?;
    pool.close().await;
    let old_services: std::collections::HashMap<String, Vec<String>> =
        fleet.iter().map(|d| (d.name.clone(), d.services.clone())).collect();
    let deployed: Vec<String> = fleet.into_iter().map(|d| d.name).collect();
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
                Ok(services) => {
                    println!("{}", change_line(name, old_services.get(name).map_or(&[][..], Vec::as_slice), &services))
                }
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
    // Subscribed before asking, so a fast mutator's answer is not missed.
    let mut results = if args.wait > 0.0 { Some(bus.subscribe("decky.*.mutation").await?) } else { None };
    for (name, topic) in names.iter().zip(&request_topics) {
        let payload = serde_json::json!({ "decky": name, "actor": actor });
        bus.publish(topic.as_str(), "mutate_request", payload).await?;
    }
    println!("requested mutation of {} decky(ies)", names.len());
    if let Some(sub) = results.as_mut() {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs_f64(args.wait);
        let mut waiting: std::collections::BTreeSet<&str> = names.iter().map(String::as_str).collect();
        while !waiting.is_empty() {
            let Ok(Some(env)) = tokio::time::timeout_at(deadline, sub.recv()).await else { break };
            let p = &env.payload;
            let decky = p["decky"].as_str().unwrap_or_default();
            // Only the answer to this request: an operator mutation by us
            // (a scheduled rotation may land in the same window).
            if p["trigger"] != "operator" || p["actor"] != actor.as_str() || !waiting.remove(decky) {
                continue;
            }
            let list = |k: &str| -> Vec<String> {
                p[k].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect()
            };
            println!("{}", change_line(decky, &list("old_services"), &list("new_services")));
        }
        for name in waiting {
            println!(
                "{name}: requested; no result within {} s (watch with `decnet sub 'decky.{name}.mutation'`)",
                args.wait
            );
        }
    }
    finish_bus(&bus).await;
    Ok(())
}

/// `web-01: ssh,http → ftp,smb` (`-` for none).
pub fn change_line(decky: &str, old: &[String], new: &[String]) -> String {
    let show = |s: &[String]| if s.is_empty() { "-".to_string() } else { s.join(",") };
    format!("{decky}: {} → {}", show(old), show(new))
}

fn parse_wait(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=600.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds from 0 to 600")),
    }
}
