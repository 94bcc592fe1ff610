//! The provisioner's command line: a thin layer over the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "provisioner", about = "Vessel's host daemon")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// KVM machines.
    Vm {
        #[command(subcommand)]
        command: VmCommand,
    },
}

#[derive(Subcommand)]
enum VmCommand {
    /// Runs one machine in this process until it powers off (exit 0; a guest reset reboots
    /// it in place).
    Run {
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        None => Ok(()),
        Some(Command::Vm { command: VmCommand::Run { config } }) => {
            let cfg = provisioner::vm::config::VmConfig::load(&config).context("loading the VM config")?;
            provisioner::vm::vmm::run(&cfg).context("running the machine")?;
            Ok(())
        }
    }
}
