//! The config file: one TOML file with a section per subcommand (`[bus]`,
//! `[api]`, `[listener]`, ...; `[ca.issue]` for a nested one) whose keys
//! are that subcommand's long flag names:
//!
//! ```toml
//! [listener]
//! listen = "0.0.0.0:6514"
//! ```
//!
//! Which file: `--config FILE` (or `DECNET_CONFIG`), else
//! `$DECNET_HOME/decnet.toml`, else `/etc/decnet/decnet.toml`; none is
//! fine. Precedence is flag > environment > file > built-in default, and
//! we get it from clap rather than re-implementing it: every key of the
//! file becomes the default value of its argument before the command line
//! is parsed, and clap already prefers a flag to the environment to a
//! default. So there is no second list of options to keep in step: a new
//! flag is configurable the day it is added.
//!
//! The file is checked as strictly as the command line: an unknown
//! section or key, or a value the flag's own parser refuses, is an error
//! naming the file, line and key.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{ArgAction, Command};
use toml_edit::{Item, Table, Value};

/// The file looked for under `$DECNET_HOME`, and the folder-wide one.
pub const FILE_NAME: &str = "decnet.toml";
pub const SYSTEM_FILE: &str = "/etc/decnet/decnet.toml";

/// The subcommands that run as daemons, in the order `config check`
/// prints them (other sections present in the file follow).
pub const DAEMONS: &[&str] = &[
    "bus",
    "api",
    "mutator",
    "collector",
    "ingest",
    "profiler",
    "clusterer",
    "prober",
    "sniffer",
    "listener",
    "forwarder",
];

/// An error in the config file, located.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {message}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

/// Where the config file is, if any: the explicit one (`--config`,
/// `DECNET_CONFIG`) whether or not it exists (a missing one is an error
/// later), else the first of `$DECNET_HOME/decnet.toml` and
/// `/etc/decnet/decnet.toml` that exists.
pub fn locate(explicit: Option<PathBuf>) -> Option<PathBuf> {
    if explicit.is_some() {
        return explicit;
    }
    if let Some(env) = std::env::var_os("DECNET_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(env));
    }
    [crate::home::decnet_home().join(FILE_NAME), PathBuf::from(SYSTEM_FILE)].into_iter().find(|p| p.is_file())
}

/// The value of `--config` on a command line not parsed yet. Only what
/// comes before a bare `--` counts (after it, arguments are values).
/// `decnet deploy --config FLEET` predates the config file and keeps its
/// meaning (the fleet file): for deploy only a `--config` before the
/// subcommand (`decnet --config FILE deploy ...`) or `DECNET_CONFIG` names
/// the config file.
pub fn config_flag(args: &[OsString]) -> Option<PathBuf> {
    let mut subcommand: Option<String> = None;
    let mut it = args.iter().skip(1);
    while let Some(arg) = it.next() {
        let arg = arg.to_string_lossy();
        if arg == "--" || subcommand.as_deref() == Some("deploy") {
            break;
        }
        if arg == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
        if subcommand.is_none() && !arg.starts_with('-') {
            subcommand = Some(arg.into_owned());
        }
    }
    None
}

/// A parsed config file, with the source kept for line numbers.
pub struct ConfigFile {
    pub path: PathBuf,
    text: String,
    doc: toml_edit::ImDocument<String>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        let doc = toml_edit::ImDocument::parse(text.clone()).map_err(|e| {
            let line = e.span().map(|s| line_of(&text, s.start)).unwrap_or(1);
            ConfigError { path: path.to_owned(), line, message: e.message().trim().to_owned() }
        })?;
        Ok(ConfigFile { path: path.to_owned(), text, doc })
    }

    fn error(&self, span: Option<std::ops::Range<usize>>, message: String) -> ConfigError {
        ConfigError { path: self.path.clone(), line: span.map(|s| line_of(&self.text, s.start)).unwrap_or(1), message }
    }

    /// `cmd` with every key of the file set as its argument's default.
    pub fn apply(&self, mut cmd: Command) -> Result<Command, ConfigError> {
        for (name, item) in self.doc.as_table().iter() {
            let span = self.doc.as_table().key(name).and_then(|k| k.span());
            let (Some(table), Some(sub)) = (item.as_table(), cmd.find_subcommand(name).cloned()) else {
                let known = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect::<Vec<_>>().join(", ");
                return Err(self.error(span, format!("unknown section [{name}] (a section is a subcommand: {known})")));
            };
            let sub = self.apply_section(sub, name, table)?;
            cmd = cmd.mut_subcommand(name, |_| sub);
        }
        Ok(cmd)
    }

    /// The keys of `[section]` (`ca.issue` for a nested one) onto `cmd`.
    fn apply_section(&self, mut cmd: Command, section: &str, table: &Table) -> Result<Command, ConfigError> {
        for (key, item) in table.iter() {
            let key_span = table.key(key).and_then(|k| k.span());
            if let (Some(nested), Some(sub)) = (item.as_table(), cmd.find_subcommand(key).cloned()) {
                let sub = self.apply_section(sub, &format!("{section}.{key}"), nested)?;
                cmd = cmd.mut_subcommand(key, |_| sub);
                continue;
            }
            let arg = cmd.get_arguments().find(|a| a.get_long() == Some(key) && !is_builtin(a)).cloned();
            let Some(arg) = arg else {
                let hint = cmd
                    .get_arguments()
                    .filter_map(|a| a.get_long())
                    .find(|l| *l == key.replace('_', "-"))
                    .map(|l| format!(" (did you mean {l}?)"))
                    .unwrap_or_default();
                return Err(self.error(key_span, format!("unknown key {key:?} in [{section}]{hint}")));
            };
            let span = item.span().or(key_span);
            let values =
                values_of(&arg, item).map_err(|m| self.error(span.clone(), format!("[{section}] {key}: {m}")))?;
            // The flag's own parser: a bad port is refused here with the
            // line, not later as if it came from the command line.
            // clap keeps defaults as `&'static str` (its "string" feature
            // would change every crate built against clap): a config file's
            // few values live as long as the process anyway.
            let values: Vec<&'static str> = values.into_iter().map(|v| &*Box::leak(v.into_boxed_str())).collect();
            if let Err(e) = check_values(&arg, key, &values) {
                return Err(self.error(span, format!("[{section}] {key}: {e}")));
            }
            cmd = cmd.mut_arg(arg.get_id().clone(), |a| a.required(false).default_values(values));
        }
        Ok(cmd)
    }

    /// The table of `[section]` (`ca.issue` for a nested one).
    fn table(&self, section: &str) -> Option<&Table> {
        section.split('.').try_fold(self.doc.as_table(), |t, part| t.get(part)?.as_table())
    }

    /// The keys the file sets in `[section]`.
    pub fn keys(&self, section: &str) -> Vec<String> {
        match self.table(section) {
            Some(t) => t.iter().filter(|(_, i)| !i.is_table()).map(|(k, _)| k.to_owned()).collect(),
            None => Vec::new(),
        }
    }

    /// Every section of the file that sets keys, nested ones as `a.b`,
    /// in file order.
    pub fn sections(&self) -> Vec<String> {
        fn walk(prefix: &str, table: &Table, out: &mut Vec<String>) {
            if !prefix.is_empty() && table.iter().any(|(_, i)| !i.is_table()) {
                out.push(prefix.to_owned());
            }
            for (k, i) in table.iter() {
                if let Some(t) = i.as_table() {
                    walk(&if prefix.is_empty() { k.to_owned() } else { format!("{prefix}.{k}") }, t, out);
                }
            }
        }
        let mut out = Vec::new();
        walk("", self.doc.as_table(), &mut out);
        out
    }
}

/// Run `values` through the flag's own parser (a bad port is refused
/// here, with the file's line, rather than later as if it came from the
/// command line): a one-flag command given `--long=value` for each.
fn check_values(arg: &clap::Arg, long: &str, values: &[&'static str]) -> Result<(), String> {
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return Ok(()); // already known to be a TOML boolean
    }
    let probe = arg.clone().required(false).env(None).default_values(Vec::<&str>::new()).global(false);
    let cmd = Command::new("decnet").no_binary_name(true).disable_help_flag(true).arg(probe);
    let argv: Vec<String> = values.iter().map(|v| format!("--{long}={v}")).collect();
    cmd.try_get_matches_from(argv).map(|_| ()).map_err(|e| clap_message(&e))
}

fn is_builtin(arg: &clap::Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version)
}

/// The first line of a clap error, without its `error: ` prefix.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

/// The command-line values `item` stands for, given what `arg` takes: a
/// boolean for an on/off flag, a list (or one value) for a repeatable
/// flag, one scalar otherwise.
fn values_of(arg: &clap::Arg, item: &Item) -> Result<Vec<String>, String> {
    let Some(value) = item.as_value() else { return Err("expected a value, found a table".into()) };
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => match value.as_bool() {
            Some(b) => Ok(vec![b.to_string()]),
            None => Err(format!("expected true or false, found {}", type_name(value))),
        },
        ArgAction::Append => match value.as_array() {
            Some(list) => list.iter().map(scalar).collect(),
            None => Ok(vec![scalar(value)?]),
        },
        _ => match value.as_array() {
            // A flag that takes "a,b,c" may be given a TOML list.
            Some(list) => match arg.get_value_delimiter() {
                Some(delim) => {
                    Ok(vec![list.iter().map(scalar).collect::<Result<Vec<_>, _>>()?.join(&delim.to_string())])
                }
                None => Err("expected one value, found a list".into()),
            },
            None => Ok(vec![scalar(value)?]),
        },
    }
}

fn scalar(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.value().clone()),
        Value::Integer(i) => Ok(i.value().to_string()),
        Value::Float(f) => Ok(f.value().to_string()),
        Value::Boolean(b) => Ok(b.value().to_string()),
        Value::Datetime(d) => Ok(d.value().to_string()),
        other => Err(format!("expected a string or number, found {}", type_name(other))),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "a list",
        Value::InlineTable(_) => "a table",
    }
}

/// Parse the command line `args` with the config file applied.
/// Errors (an unreadable or invalid file, or clap's own) come back
/// ready to print; clap's `--help` and `--version` exit as usual.
pub fn parse_cli(args: Vec<OsString>) -> Result<crate::cli::Cli, String> {
    use clap::{CommandFactory, FromArgMatches};
    let cmd = crate::cli::Cli::command();
    let flag = config_flag(&args);
    if let Some(path) = &flag {
        // Processes we start (`decnet up` runs deploy, the mutator, the
        // senses) read the same file. Set while this is the only thread.
        std::env::set_var("DECNET_CONFIG", std::path::absolute(path).unwrap_or_else(|_| path.clone()));
    }
    let cmd = match locate(flag) {
        Some(path) => {
            let file = ConfigFile::load(&path).map_err(|e| format!("error: {}", crate::cli::error_chain(&e)))?;
            file.apply(cmd).map_err(|e| format!("error: {e}"))?
        }
        None => cmd,
    };
    let matches = cmd.try_get_matches_from(args).unwrap_or_else(|e| e.exit());
    crate::cli::Cli::from_arg_matches(&matches).map_err(|e| e.to_string())
}

/// Whether the value of the flag `long` is a secret `config check` must
/// not print: a password, secret, token, key or credentials (judged by
/// the last word of the name, so `token-ttl-secs` is shown, `key` and
/// `nats-password` are not).
pub fn is_secret(long: &str) -> bool {
    let last = long.rsplit(['-', '_']).next().unwrap_or(long);
    matches!(last, "password" | "passwd" | "secret" | "token" | "key" | "nkey" | "creds" | "credentials")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, ConfigFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decnet.toml");
        std::fs::write(&path, text).unwrap();
        let f = ConfigFile::load(&path).unwrap();
        (dir, f)
    }

    fn apply(text: &str) -> Result<Command, ConfigError> {
        use clap::CommandFactory;
        let (_dir, f) = file(text);
        f.apply(crate::cli::Cli::command())
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let e = apply("[listener]\nlisten = \"127.0.0.1:1\"\n\n[bus]\nno-such-flag = 3\n").unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.to_string().contains("decnet.toml:5: unknown key \"no-such-flag\" in [bus]"), "{e}");
        let e = apply("[listener]\n\n\nlisten = 6514\n").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("listen") && e.message.contains("6514"), "{e}");
        let e = apply("[nope]\nx = 1\n").unwrap_err();
        assert_eq!((e.line, e.message.starts_with("unknown section [nope]")), (1, true), "{e}");
        let e = apply("[forwarder]\nretry_max_secs = 5\n").unwrap_err();
        assert!(e.message.contains("did you mean retry-max-secs?"), "{e}");
        // Broken TOML is located too.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, "[bus]\nthreads = \n").unwrap();
        let e = ConfigFile::load(&path).err().unwrap();
        assert!(crate::cli::error_chain(&e).contains("x.toml:2:"), "{e:#}");
    }

    #[test]
    fn secrets_are_judged_by_the_last_word() {
        assert!(is_secret("key") && is_secret("admin-password") && is_secret("jwt-secret") && is_secret("api-token"));
        assert!(!is_secret("token-ttl-secs") && !is_secret("max-pattern-tokens") && !is_secret("listen"));
    }

    #[test]
    fn config_flag_is_found_before_parsing() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(config_flag(&args(&["decnet", "bus", "--config", "/a"])), Some("/a".into()));
        assert_eq!(config_flag(&args(&["decnet", "--config=/b", "bus"])), Some("/b".into()));
        assert_eq!(config_flag(&args(&["decnet", "pub", "--", "--config", "/c"])), None);
        // deploy's own --config is its fleet file.
        assert_eq!(config_flag(&args(&["decnet", "deploy", "--config", "fleet.toml"])), None);
        assert_eq!(config_flag(&args(&["decnet", "--config", "/d", "deploy", "--config", "f"])), Some("/d".into()));
    }
}
