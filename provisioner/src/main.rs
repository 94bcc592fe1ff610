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
    /// Serves the signed HTTP API (adopting what already runs on the host first).
    Serve {
        /// TOML settings; `PROVISIONER__*` environment variables override them.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Registers this host with the panel and stores the secret it answers with.
    Join {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        panel_url: String,
        /// The one-time join token an admin made in the panel.
        #[arg(long, env = "VESSEL_JOIN_TOKEN", hide_env_values = true)]
        token: String,
        /// This host's name as admins see it.
        #[arg(long)]
        name: String,
        /// Where the panel reaches this host's API, e.g. https://10.0.0.5:8443.
        #[arg(long)]
        api_url: String,
        /// A PEM certificate to trust for the panel (self-signed panels).
        #[arg(long)]
        panel_ca: Option<PathBuf>,
        /// Join again although a secret is already stored.
        #[arg(long)]
        force: bool,
    },
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
        Some(Command::Serve { config }) => {
            let cfg = provisioner::config::DaemonConfig::load(config.as_deref()).context("loading the configuration")?;
            actix_web::rt::System::new().block_on(provisioner::daemon::serve(cfg)).context("provisioner serve")?;
            Ok(())
        }
        Some(Command::Join { config, panel_url, token, name, api_url, panel_ca, force }) => {
            let cfg = provisioner::config::DaemonConfig::load(config.as_deref()).context("loading the configuration")?;
            let panel_ca = match panel_ca {
                Some(p) => Some(std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?),
                None => None,
            };
            let args = provisioner::join::JoinArgs {
                panel_url,
                token,
                name,
                api_url,
                panel_ca,
                force,
                // Containers join the list once their runtime is wired into the service.
                supports_containers: false,
                supports_kvm: provisioner::daemon::kvm_usable(),
            };
            let host_id = actix_web::rt::System::new().block_on(provisioner::join::join(&cfg, args)).context("joining the panel")?;
            println!("joined as host {host_id}");
            Ok(())
        }
        Some(Command::Vm { command: VmCommand::Run { config } }) => {
            let cfg = provisioner::vm::config::VmConfig::load(&config).context("loading the VM config")?;
            provisioner::vm::vmm::run(&cfg).context("running the machine")?;
            Ok(())
        }
    }
}
