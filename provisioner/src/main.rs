//! The provisioner binary: a thin CLI over the library.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "provisioner", about = "Vessel's host daemon and admin CLI")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Ct(args) => provisioner::container::cli::run(*args)?,
        Cmd::CtInit { config } => {
            if let Err(e) = provisioner::container::init::ct_init_main(&config) {
                eprintln!("ct-init: {e}");
                println!("error {e}");
                1
            } else {
                0
            }
        }
        Cmd::CtExec {
            pid,
            cgroup,
            oom_score_adj,
            argv,
        } => provisioner::container::init::ct_exec_main(pid, &cgroup, oom_score_adj, &argv)?,
    };
    std::process::exit(code);
}
