//! `vessel-devdb`: start, stop and inspect the private PostgreSQL cluster used by
//! `./vessel up` and `./vessel test`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use vessel_devdb::{Cluster, StartOptions};

#[derive(Parser)]
#[command(about = "The private PostgreSQL cluster for development and tests")]
struct Cli {
    /// The cluster's folder (default: VESSEL_PG_DIR, else .vessel/pg in the workspace).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the cluster (create it first if needed) and print its URL.
    Start {
        /// Durability off (fsync): for throwaway test clusters.
        #[arg(long)]
        throwaway: bool,
    },
    /// Stop the cluster cleanly.
    Stop,
    /// Print the URL if it runs; exit 1 if not.
    Status,
    /// Drop the databases tests left behind.
    Prune,
    /// Create a database (if missing) on the running cluster and print its URL.
    Createdb { name: String },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cluster = Cluster::new(cli.dir.unwrap_or_else(Cluster::default_dir))?;
    match cli.cmd {
        Cmd::Start { throwaway } => println!("{}", cluster.start(StartOptions { throwaway })?),
        Cmd::Stop => cluster.stop()?,
        Cmd::Status => match cluster.running_url() {
            Some(url) => println!("{url}"),
            None => {
                eprintln!("not running ({})", cluster.dir().display());
                std::process::exit(1);
            }
        },
        Cmd::Prune => {
            let url = cluster.running_url().ok_or_else(|| anyhow::anyhow!("the cluster is not running"))?;
            println!("dropped {} databases", vessel_devdb::prune(&url).await?);
        }
        Cmd::Createdb { name } => {
            anyhow::ensure!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "a database name here is lowercase letters, digits and _"
            );
            let url = cluster.running_url().ok_or_else(|| anyhow::anyhow!("the cluster is not running"))?;
            use sqlx::{Connection, Executor};
            let mut c = sqlx::PgConnection::connect(&url).await?;
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1").bind(&name).fetch_optional(&mut c).await?;
            if exists.is_none() {
                c.execute(format!("CREATE DATABASE {name}").as_str()).await?;
            }
            println!("{}", vessel_devdb::with_database(&url, &name)?);
        }
    }
    Ok(())
}
