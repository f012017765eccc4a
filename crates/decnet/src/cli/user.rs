//! `decnet user`: manage the control plane's users (directly in the
//! database, so the first admin can be created before the API runs).
//!
//! `add`, `list`, `passwd`, `role` and `del`. Every password set here must have at
//! least `--min-password-length` characters (12 by default): the API
//! throttles online guessing, but a short password falls quickly offline
//! to anyone who gets a copy of the database. `passwd` also revokes the
//! user's existing tokens; `role` and `del` end the user's open event
//! streams in a running API within a fraction of a second; `del` refuses to remove the last admin unless
//! forced, since nobody could then stop or start workers.

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
    /// List users and their roles.
    List(UserListArgs),
    /// Set a user's password (read like `add`'s) and revoke their tokens.
    Passwd(UserPasswdArgs),
    /// Change a user's role; their open event streams end.
    Role(UserRoleArgs),
    /// Delete a user; their tokens stop working at once.
    Del(UserDelArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// SQLite database. Default: $DECNET_HOME/decnet.db.
    #[arg(long, env = "DECNET_DB")]
    pub db: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UserListArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Print `{"users": [{username, role, created_at}]}` instead of a table
    /// (no password hashes).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// Shortest password accepted, in characters.
    #[arg(long, env = "DECNET_MIN_PASSWORD_LENGTH", default_value_t = auth::DEFAULT_MIN_PASSWORD_LEN, value_parser = parse_min_len)]
    pub min_password_length: usize,
}

#[derive(Debug, clap::Args)]
pub struct UserAddArgs {
    /// User name: 1-64 characters, letters, digits, '.', '_', '-' or '@'.
    pub name: String,
    /// `viewer` may read; `admin` may also stop and start workers and
    /// request mutations.
    #[arg(long, value_parser = parse_role)]
    pub role: Role,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, clap::Args)]
pub struct UserPasswdArgs {
    pub name: String,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, clap::Args)]
pub struct UserRoleArgs {
    pub name: String,
    #[arg(long, value_parser = parse_role)]
    pub role: Role,
    /// Demote even the last admin.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, clap::Args)]
pub struct UserDelArgs {
    pub name: String,
    /// Delete even the last admin (nobody can then act through the API
    /// until `decnet user add NAME --role admin`).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

fn parse_min_len(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=auth::MAX_PASSWORD_LEN).contains(&n) => Ok(n),
        _ => Err(format!("expected a number from 1 to {}", auth::MAX_PASSWORD_LEN)),
    }
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

impl DbArgs {
    fn path(&self) -> PathBuf {
        self.db.clone().unwrap_or_else(crate::store::default_db_path)
    }

    async fn open(&self) -> anyhow::Result<(sqlx::SqlitePool, PathBuf)> {
        if self.db.is_none() {
            // The default database lives in the home: make it private first.
            crate::state_dir::prepare_home()?;
        }
        let path = self.path();
        Ok((crate::store::open(&path).await?, path))
    }
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

/// A new password, checked against the policy, hashed.
async fn new_password_hash(name: &str, policy: &PolicyArgs) -> anyhow::Result<String> {
    let password = read_password(&format!("Password for {name}: "), true)?;
    auth::check_new_password(&password, policy.min_password_length)
        .map_err(|e| anyhow::anyhow!("{e}; nothing was changed"))?;
    tokio::task::spawn_blocking(move || auth::hash_password(&password)).await?
}

pub async fn run(args: UserArgs) -> anyhow::Result<()> {
    match args.command {
        UserCommand::Add(add) => add_user(add).await,
        UserCommand::List(db) => list_users(db).await,
        UserCommand::Passwd(p) => passwd(p).await,
        UserCommand::Role(r) => set_role(r).await,
        UserCommand::Del(d) => delete_user(d).await,
    }
}

async fn add_user(args: UserAddArgs) -> anyhow::Result<()> {
    users::validate_username(&args.name)?;
    let (pool, db) = args.db.open().await?;
    // Fail fast on a taken name, before asking for a password.
    if users::find(&pool, &args.name).await?.is_some() {
        anyhow::bail!("user {:?} already exists in {}", args.name, db.display());
    }
    let hash = new_password_hash(&args.name, &args.policy).await?;
    match users::create(&pool, &args.name, &hash, args.role).await {
        Ok(()) => {
            println!("created user {} ({})", args.name, args.role);
            Ok(())
        }
        Err(UserError::Duplicate(name)) => anyhow::bail!("user {name:?} already exists in {}", db.display()),
        Err(e) => Err(e.into()),
    }
}

async fn list_users(args: UserListArgs) -> anyhow::Result<()> {
    let (pool, db) = args.db.open().await?;
    let all = users::list(&pool).await?;
    if args.json {
        let rows: Vec<serde_json::Value> = all
            .iter()
            .map(|u| serde_json::json!({"username": u.username, "role": u.role.as_str(), "created_at": u.created_at}))
            .collect();
        return super::workers::print_json(&serde_json::json!({ "users": rows }));
    }
    if all.is_empty() {
        println!("no users in {} (add one with `decnet user add NAME --role admin`)", db.display());
        return Ok(());
    }
    println!("{:<24} {:<7} CREATED", "NAME", "ROLE");
    for u in all {
        let created = time::OffsetDateTime::from_unix_timestamp(u.created_at as i64)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_else(|| u.created_at.to_string());
        println!("{:<24} {:<7} {created}", u.username, u.role.as_str());
    }
    Ok(())
}

async fn passwd(args: UserPasswdArgs) -> anyhow::Result<()> {
    let (pool, db) = args.db.open().await?;
    if users::find(&pool, &args.name).await?.is_none() {
        anyhow::bail!("no user {:?} in {}", args.name, db.display());
    }
    let hash = new_password_hash(&args.name, &args.policy).await?;
    anyhow::ensure!(users::set_password(&pool, &args.name, &hash).await?, "user {:?} vanished meanwhile", args.name);
    println!("password of {} changed; their existing tokens no longer work", args.name);
    Ok(())
}

async fn set_role(args: UserRoleArgs) -> anyhow::Result<()> {
    let (pool, db) = args.db.open().await?;
    let Some(user) = users::find(&pool, &args.name).await? else {
        anyhow::bail!("no user {:?} in {}", args.name, db.display());
    };
    if user.role == Role::Admin && args.role != Role::Admin && users::count_admins(&pool).await? <= 1 && !args.force {
        anyhow::bail!("{} is the last admin; add another admin first, or use --force to demote it anyway", args.name);
    }
    anyhow::ensure!(users::set_role(&pool, &args.name, args.role).await?, "user {:?} vanished meanwhile", args.name);
    println!("{} is now {}", args.name, args.role);
    Ok(())
}

async fn delete_user(args: UserDelArgs) -> anyhow::Result<()> {
    let (pool, db) = args.db.open().await?;
    let Some(user) = users::find(&pool, &args.name).await? else {
        anyhow::bail!("no user {:?} in {}", args.name, db.display());
    };
    if user.role == Role::Admin && users::count_admins(&pool).await? <= 1 && !args.force {
        anyhow::bail!("{} is the last admin; add another admin first, or use --force to delete it anyway", args.name);
    }
    users::delete(&pool, &args.name).await?;
    println!("deleted user {}", args.name);
    Ok(())
}
