//! `decnet install [--root DIR] [--bin PATH] [--dry-run]`: the user, the
//! directories, the config, the units and the logrotate snippet, from
//! files compiled into the binary (see [`crate::install`]).

use crate::install::{self, Options};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(after_help = "\
Creates (or repairs) on the target root:
  user and group decnet (system ids; useradd/groupadd on /, passwd/group entries under another --root)
  /etc/decnet 0750 root:decnet, /etc/decnet/decnet.toml 0640 (only when missing)
  /var/lib/decnet 0700 decnet, /var/log/decnet 0700 decnet
  /etc/systemd/system/decnet-*.service, /etc/decnet/dropins/*.conf, /etc/logrotate.d/decnet
  the binary itself at --bin
Files already right are left alone: a second run changes nothing and says so.
Afterwards: systemctl daemon-reload; systemctl enable --now decnet-bus decnet-api decnet-mutator")]
pub struct InstallArgs {
    /// Install under this folder instead of the host's root (image builds, tests).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Where the binary goes on the target; the units' ExecStart= points there.
    #[arg(long, default_value = "/usr/local/bin/decnet")]
    pub bin: PathBuf,
    /// Do not copy this binary to --bin (it is already there, e.g. from a package).
    #[arg(long)]
    pub no_binary: bool,
    /// Print what would change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(args: InstallArgs) -> anyhow::Result<()> {
    if !args.root.is_dir() {
        anyhow::bail!("--root {} is not a directory", args.root.display());
    }
    let bin_source = if args.no_binary {
        None
    } else {
        Some(std::env::current_exe().map_err(|e| anyhow::anyhow!("cannot find this binary to install it: {e}"))?)
    };
    let opts = Options { root: args.root.clone(), bin: args.bin, bin_source, dry_run: args.dry_run };
    let steps = install::plan(&opts)?;
    let outcomes = install::apply(&opts, &steps)?;
    // A closed pipe (`| head`) ends the listing, not the install.
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    for o in &outcomes {
        let _ = writeln!(stdout, "{}", o.line);
    }
    drop(stdout);
    let changed = outcomes.iter().filter(|o| o.changed).count();
    match (changed, args.dry_run) {
        (0, _) => println!("nothing to change: {} is installed", args.root.display()),
        (n, true) => println!("dry run: {n} change(s) would be made; nothing was written"),
        (n, false) => {
            println!("{n} change(s) made");
            if args.root == std::path::Path::new("/") {
                println!(
                    "next: systemctl daemon-reload && sudo -u decnet DECNET_HOME=/var/lib/decnet decnet user add admin \
                     --role admin && systemctl enable --now decnet-bus decnet-api decnet-mutator"
                );
            }
        }
    }
    Ok(())
}
