//! `decnet ca init` / `decnet ca issue NAME`: the log-shipping CA.

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct CaArgs {
    #[command(subcommand)]
    pub command: CaCommand,
    /// CA folder. Default: $DECNET_HOME/ca.
    #[arg(long, env = "DECNET_CA_DIR", global = true)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum CaCommand {
    /// Create the CA (ca.pem, ca.key mode 0600).
    Init {
        /// The CA certificate's CN.
        #[arg(long, default_value = "decnet log-shipping CA")]
        name: String,
    },
    /// Issue NAME.pem + NAME.key (CN = NAME) for a forwarder or listener.
    Issue {
        name: String,
        /// Extra subject alternative names (DNS names or IP addresses) the
        /// listener is reached by, e.g. --san 10.0.0.5 --san master.example.
        #[arg(long)]
        san: Vec<String>,
    },
}

pub async fn run(args: CaArgs) -> anyhow::Result<()> {
    let dir = args.dir.unwrap_or_else(crate::logship::ca::default_dir);
    match args.command {
        CaCommand::Init { name } => {
            let cert = crate::logship::ca::init(&dir, &name)?;
            println!("CA created: {}", cert.display());
        }
        CaCommand::Issue { name, san } => {
            let (cert, key) = crate::logship::ca::issue(&dir, &name, &san)?;
            println!("issued {name}: {} {}", cert.display(), key.display());
        }
    }
    Ok(())
}
