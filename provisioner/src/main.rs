//! The provisioner's command line: a thin layer over the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "provisioner", about = "Vessel's host daemon and admin CLI")]
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
        /// Where the panel reaches this host's API, e.g. https://10.0.0.5:8443 (https:// unless
        /// the config sets plain_http = true).
        #[arg(long)]
        api_url: String,
        /// A PEM certificate to trust for the panel (self-signed panels).
        #[arg(long)]
        panel_ca: Option<PathBuf>,
        /// Join again although a secret is already stored.
        #[arg(long)]
        force: bool,
        /// Allow an http:// panel URL (the token and the secret then cross the link readable):
        /// only for a private link, e.g. a panel on the same machine or a test bridge.
        #[arg(long)]
        allow_http_panel: bool,
    },
    /// KVM machines.
    Vm {
        #[command(subcommand)]
        command: VmCommand,
    },
    /// Containers: create, start, stop, … (see `provisioner ct --help`).
    Ct(Box<provisioner::container::cli::CtArgs>),
    /// Internal: becomes a container's init (spawned by `ct start` inside new namespaces).
    #[command(hide = true)]
    CtInit { config: PathBuf },
    /// Internal: runs a command inside a running container.
    #[command(hide = true)]
    CtExec {
        #[arg(long)]
        pid: u32,
        #[arg(long)]
        cgroup: Vec<PathBuf>,
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        oom_score_adj: i32,
        #[arg(last = true, required = true)]
        argv: Vec<String>,
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
    // The container start path: skip argument parsing and logging set-up (it is on every
    // container's create→running latency).
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if raw.len() == 3 && raw[1] == "ct-init" {
        if let Err(e) = provisioner::container::init::ct_init_main(std::path::Path::new(&raw[2])) {
            eprintln!("ct-init: {e}");
            println!("error {e}");
            std::process::exit(1);
        }
        std::process::exit(0);
    }
    let cli = Cli::parse();
    // `serve` logs as its config says (`log_format`, or `PROVISIONER__LOG_FORMAT`); the
    // other commands as the environment says.
    let serve_cfg = match &cli.command {
        Some(Command::Serve { config }) => Some(provisioner::config::DaemonConfig::load(config.as_deref())),
        _ => None,
    };
    let json = match &serve_cfg {
        Some(Ok(cfg)) => cfg.log_format == provisioner::config::LogFormat::Json,
        _ => std::env::var("PROVISIONER__LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json")),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
    match cli.command {
        None => Ok(()),
        Some(Command::Serve { .. }) => {
            let cfg = serve_cfg.expect("loaded above for serve").context("loading the configuration")?;
            actix_web::rt::System::new().block_on(provisioner::daemon::serve(cfg)).context("provisioner serve")?;
            Ok(())
        }
        Some(Command::Join { config, panel_url, token, name, api_url, panel_ca, force, allow_http_panel }) => {
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
                allow_http_panel,
                supports_containers: cfg.containers,
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
        Some(Command::Ct(args)) => std::process::exit(provisioner::container::cli::run(*args)?),
        Some(Command::CtInit { config }) => {
            if let Err(e) = provisioner::container::init::ct_init_main(&config) {
                eprintln!("ct-init: {e}");
                println!("error {e}");
                std::process::exit(1);
            }
            Ok(())
        }
        Some(Command::CtExec { pid, cgroup, oom_score_adj, argv }) => {
            std::process::exit(provisioner::container::init::ct_exec_main(pid, &cgroup, oom_score_adj, &argv)?)
        }
    }
}
