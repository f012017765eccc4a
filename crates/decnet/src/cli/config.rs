//! `decnet config check`: validate the config file and show what every
//! daemon would run with. The loading itself is [`crate::config`].

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::CommandFactory;

use crate::config::{self, ConfigFile};

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Check the config file (--config FILE, else $DECNET_HOME/decnet.toml,
    /// else /etc/decnet/decnet.toml) and print each daemon's effective
    /// settings with where each comes from (flag > env > file > default).
    /// Passwords, secrets, tokens and keys are shown as "(redacted)".
    Check,
}

pub async fn run(args: ConfigArgs, explicit: Option<PathBuf>) -> anyhow::Result<()> {
    match args.command {
        ConfigCommand::Check => check(explicit),
    }
}

fn check(explicit: Option<PathBuf>) -> anyhow::Result<()> {
    let mut cmd = crate::cli::Cli::command();
    let file = match config::locate(explicit) {
        Some(path) => {
            let file = ConfigFile::load(&path)?;
            cmd = file.apply(cmd)?;
            println!("# config file {}: valid", path.display());
            Some(file)
        }
        None => {
            println!(
                "# no config file ($DECNET_HOME/{} and {} do not exist); built-in defaults and environment",
                config::FILE_NAME,
                config::SYSTEM_FILE
            );
            None
        }
    };
    let mut sections: Vec<String> = config::DAEMONS.iter().map(|s| s.to_string()).collect();
    for s in file.as_ref().map(|f| f.sections()).unwrap_or_default() {
        if !sections.contains(&s) {
            sections.push(s);
        }
    }
    for section in sections {
        let from_file = file.as_ref().map(|f| f.keys(&section)).unwrap_or_default();
        println!("\n[{section}]");
        for (key, value, source) in effective(&cmd, &section, &from_file)? {
            let line = match value {
                Some(v) => format!("{key} = {v}"),
                None => format!("# {key} (not set)"),
            };
            println!("{line:<50} # {source}");
        }
    }
    Ok(())
}

/// `(key, value as TOML, source)` for every flag of the subcommand
/// `section`, as clap resolves them with no flags given.
fn effective(
    cmd: &clap::Command,
    section: &str,
    from_file: &[String],
) -> anyhow::Result<Vec<(String, Option<String>, String)>> {
    let sub = section.split('.').try_fold(cmd, |c, part| c.find_subcommand(part));
    let Some(sub) = sub.cloned() else { return Ok(Vec::new()) };
    // Resolve the flags alone: no subcommand, no positional argument.
    let sub = sub
        .no_binary_name(true)
        .subcommand_required(false)
        .arg_required_else_help(false)
        .mut_args(|a| a.required(false));
    let matches = sub
        .clone()
        .try_get_matches_from(Vec::<String>::new())
        .map_err(|e| anyhow::anyhow!("[{section}]: {}", e.render()))?;
    let mut out = Vec::new();
    for arg in sub.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(arg.get_action(), clap::ArgAction::Help | clap::ArgAction::Version) {
            continue;
        }
        let id = arg.get_id().as_str();
        let raw: Option<Vec<String>> =
            matches.get_raw(id).map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect());
        let source = match matches.value_source(id) {
            Some(ValueSource::EnvVariable) => {
                format!("env {}", arg.get_env().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default())
            }
            Some(ValueSource::DefaultValue) if from_file.iter().any(|k| k == long) => "file".to_owned(),
            Some(ValueSource::CommandLine) => "flag".to_owned(),
            _ => "default".to_owned(),
        };
        let value = raw.map(|vals| {
            if config::is_secret(long) {
                "\"(redacted)\"".to_owned()
            } else if vals.len() == 1 && !matches!(arg.get_action(), clap::ArgAction::Append) {
                quote(&vals[0])
            } else {
                format!("[{}]", vals.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", "))
            }
        });
        out.push((long.to_owned(), value, source));
    }
    // By name: applying the file reorders clap's list.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// `v` as a TOML value: numbers and booleans bare, anything else a string.
fn quote(v: &str) -> String {
    if v == "true" || v == "false" || v.parse::<i64>().is_ok() || v.parse::<f64>().is_ok_and(|f| f.is_finite()) {
        v.to_owned()
    } else {
        toml_edit::Value::from(v).to_string().trim().to_owned()
    }
}
