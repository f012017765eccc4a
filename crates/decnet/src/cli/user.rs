//! `decnet user`: manage the control plane's users (directly in the
//! database, so the first admin can be created before the API runs).

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use crate::auth::{self, Role};
use crate::store::users::{self, UserError};

#[derive(Debug, clap::Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from stdin (first line), or
    /// prompted for twice when stdin is a terminal.
    Add(UserAddArgs),
}

#[derive(Debug, clap::Args)]
pub struct UserAddArgs {
    /// User name: 1-64 characters, letters, digits, '.', '_', '-' or '@'.
    pub name: String,
    /// `viewer` may read; `admin` may also stop and start workers and
    /// request mutations.
    #[arg(long, value_parser = parse_role)]
    pub role: Role,
    /// SQLite database. Default: $DECNET_HOME/decnet.db.
    #[arg(long, env = "DECNET_DB")]
    pub db: Option<PathBuf>,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

/// A password from the terminal (asked twice when `confirm`) or, when
/// stdin is not a terminal, the first line of stdin. Empty is refused.
pub fn read_password(prompt: &str, confirm: bool) -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt)?;
        if confirm {
            let again = rpassword::prompt_password("Repeat password: ")?;
            if first != again {
                anyhow::bail!("the two passwords differ; nothing was changed");
            }
        }
        first
    } else {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .map_err(|e| anyhow::anyhow!("cannot read password from stdin: {e}"))?;
        input.lines().next().unwrap_or("").to_owned()
    };
    if password.is_empty() {
        anyhow::bail!("empty password refused");
    }
    Ok(password)
}

pub async fn run(args: UserArgs) -> anyhow::Result<()> {
    match args.command {
        UserCommand::Add(add) => add_user(add).await,
    }
}

async fn add_user(args: UserAddArgs) -> anyhow::Result<()> {
    users::validate_username(&args.name)?;
    let db = args.db.unwrap_or_else(crate::store::default_db_path);
    let pool = crate::store::open(&db).await?;
    // Fail fast on a taken name, before asking for a password.
    if users::find(&pool, &args.name).await?.is_some() {
        anyhow::bail!("user {:?} already exists in {}", args.name, db.display());
    }
    let password = read_password(&format!("Password for {}: ", args.name), true)?;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password)).await??;
    match users::create(&pool, &args.name, &hash, args.role).await {
        Ok(()) => {
            println!("created user {} ({})", args.name, args.role);
            Ok(())
        }
        Err(UserError::Duplicate(name)) => anyhow::bail!("user {name:?} already exists in {}", db.display()),
        Err(e) => Err(e.into()),
    }
}
