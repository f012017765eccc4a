//! `decnet correlate --log FILE`: fold the ingest log's mutation events per
//! decky, print each chain, and fail when a chain is broken (an event's
//! `old_services` is not the previous event's `new_services`).

use std::io::BufReader;
use std::path::PathBuf;

use crate::correlate::fold_lines;

#[derive(Debug, clap::Args)]
pub struct CorrelateArgs {
    /// The RFC 5424 ingest log to read (default: `DECNET_INGEST_LOG_FILE`, else `$DECNET_HOME/ingest.log`).
    #[arg(long)]
    pub log: Option<PathBuf>,
}

pub async fn run(args: CorrelateArgs) -> anyhow::Result<()> {
    let path = args.log.unwrap_or_else(crate::events::default_ingest_log_path);
    let file = std::fs::File::open(&path).map_err(|e| anyhow::anyhow!("cannot open log {}: {e}", path.display()))?;
    let report =
        fold_lines(BufReader::new(file)).map_err(|e| anyhow::anyhow!("cannot read log {}: {e}", path.display()))?;

    for (decky, chain) in &report.chains {
        println!("{decky}: {} mutation(s)", chain.len());
        for (line, ev) in chain {
            let actor = ev.actor.as_deref().map(|a| format!(" by {a}")).unwrap_or_default();
            println!(
                "  line {line}: {} {}{actor}: [{}] -> [{}]",
                crate::events::rfc5424::format_timestamp(ev.timestamp),
                ev.trigger,
                ev.old_services.join(","),
                ev.new_services.join(",")
            );
        }
    }
    for (line, reason) in &report.unparsable {
        eprintln!("warning: line {line} skipped: {reason}");
    }
    println!(
        "{} decky(ies), {} mutation(s), {} other event(s), {} break(s)",
        report.chains.len(),
        report.chains.values().map(Vec::len).sum::<usize>(),
        report.other_events,
        report.breaks.len()
    );
    if report.is_intact() {
        return Ok(());
    }
    for b in &report.breaks {
        eprintln!(
            "break: {} at line {}: old_services [{}] but the previous new_services were [{}]",
            b.decky,
            b.line,
            b.found_old.join(","),
            b.expected_old.join(",")
        );
    }
    anyhow::bail!("{} broken mutation chain link(s) in {}", report.breaks.len(), path.display())
}
