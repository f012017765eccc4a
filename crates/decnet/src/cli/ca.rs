//! `decnet ca init` / `issue NAME` / `revoke NAME`: the log-shipping CA.

use std::path::PathBuf;

use crate::logship::ca as lca;

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
        /// Days the CA certificate is valid (from 5 minutes ago, for clock skew).
        #[arg(long, default_value_t = lca::DEFAULT_CA_DAYS)]
        days: u32,
    },
    /// Issue NAME.pem + NAME.key (CN = NAME) for a forwarder or listener.
    Issue {
        name: String,
        /// Extra subject alternative names (DNS names or IP addresses) the
        /// listener is reached by, e.g. --san 10.0.0.5 --san master.example.
        #[arg(long)]
        san: Vec<String>,
        /// Days the certificate is valid (from 5 minutes ago, for clock
        /// skew; never past the CA's own expiry).
        #[arg(long, default_value_t = lca::DEFAULT_DAYS)]
        days: u32,
    },
    /// Revoke NAME's certificate (the NAME.pem in the CA folder): it is
    /// added to crl.pem, which the listener checks at every connection.
    Revoke { name: String },
}

pub async fn run(args: CaArgs) -> anyhow::Result<()> {
    let dir = args.dir.unwrap_or_else(lca::default_dir);
    match args.command {
        CaCommand::Init { name, days } => {
            let cert = lca::init(&dir, &name, days)?;
            println!("CA created: {} (valid {days} days)", cert.display());
        }
        CaCommand::Issue { name, san, days } => {
            let (cert, key) = lca::issue(&dir, &name, &san, days)?;
            println!("issued {name}: {} {}", cert.display(), key.display());
        }
        CaCommand::Revoke { name } => {
            let fresh = lca::revoke(&dir, &name)?;
            let crl = dir.join(lca::CRL);
            if fresh {
                println!("revoked {name}; the listener refuses it from its next connection ({})", crl.display());
            } else {
                println!("{name}'s certificate was already revoked ({})", crl.display());
            }
        }
    }
    Ok(())
}
