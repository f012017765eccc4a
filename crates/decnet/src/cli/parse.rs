//! `decnet parse`: syslog lines on stdin → the collector's parsed records
//! as JSON lines on stdout, so an operator can check what decnet will make
//! of their own services' logs before pointing them at the collector.
//! Lines that are neither RFC 5424 nor BSD syslog (RFC 3164) are reported
//! on stderr with their number; the exit status is non-zero when there was
//! any. Control and bidi characters in the output are JSON escapes (see
//! [`super::terminal`]).

use std::io::{BufRead, Write};

#[derive(Debug, clap::Args)]
pub struct ParseArgs {}

pub async fn run(_args: ParseArgs) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(parse_stdin).await?
}

fn parse_stdin() -> anyhow::Result<()> {
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let (mut total, mut bad) = (0usize, 0usize);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
    for (i, line) in stdin.split(b'\n').enumerate() {
        let line = crate::collector::pipeline::sanitize(&line?);
        if line.trim().is_empty() {
            continue;
        }
        total += 1;
        match crate::collector::parse_record(&line, now) {
            Ok(record) => {
                out.write_all(super::terminal::json_line(&record)?.as_bytes())?;
                out.write_all(b"\n")?;
            }
            Err(e) => {
                bad += 1;
                out.flush()?;
                eprintln!("line {}: {e}", i + 1);
            }
        }
    }
    out.flush()?;
    if bad > 0 {
        anyhow::bail!("{bad} of {total} lines are not syslog (RFC 5424 or RFC 3164)");
    }
    Ok(())
}
