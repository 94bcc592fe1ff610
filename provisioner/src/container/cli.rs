//! `provisioner ct …`: the admin's CLI over [`ContainerHost`], nothing more.

use super::manager::ContainerHost;
use super::{ContainerConfig, ContainerError, ContainerRuntime};
use crate::cgroup::CgroupLayout;
use crate::template::TemplateStore;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use vessel_core::lifecycle::Ipv4Assignment;
use vessel_core::resources::ResourceSpec;
use vessel_core::{HostCapacity, Hostname, InstanceId, InstanceKind, InstanceSpec, PlanResources};

#[derive(Debug, Args)]
pub struct CtArgs {
    /// Where records, instance directories and the template cache live.
    #[arg(long, env = "VESSEL_STATE_DIR", default_value = "/var/lib/vessel")]
    pub state_dir: PathBuf,
    /// Directory of template tarballs and manifests.
    #[arg(long, env = "VESSEL_TEMPLATES", default_value = "/var/lib/vessel/templates")]
    pub templates: PathBuf,
    #[arg(long, default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,
    #[arg(long, default_value = "vessel")]
    pub cgroup_parent: PathBuf,
    #[arg(long, default_value = "vzbr0")]
    pub bridge: String,
    #[arg(long, default_value = "vz")]
    pub veth_prefix: String,
    /// Where the host ids handed to containers start (65 536 per container).
    #[arg(long, default_value_t = super::IdPool::DEFAULT.first)]
    pub userns_base: u32,
    /// No user namespaces: root inside is host root with fewer capabilities (measurements only).
    #[arg(long)]
    pub no_userns: bool,
    /// Do not route: leave this network namespace's forwarding as it is (tests on a shared
    /// machine).
    #[arg(long)]
    pub no_route: bool,
    /// Seconds a graceful stop waits before SIGKILL.
    #[arg(long, default_value_t = 10)]
    pub stop_timeout: u64,
    /// Host capacity for admission (default: this machine's threads, memory and disk).
    #[arg(long)]
    pub cpus: Option<u32>,
    #[arg(long)]
    pub memory_mib: Option<u64>,
    #[arg(long)]
    pub disk_gib: Option<u64>,
    #[command(subcommand)]
    pub cmd: CtCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtCommand {
    /// Create (and start) a container from a JSON spec file or from flags.
    Create(CreateArgs),
    Start {
        id: InstanceId,
    },
    Stop {
        id: InstanceId,
    },
    Restart {
        id: InstanceId,
    },
    Suspend {
        id: InstanceId,
    },
    Resume {
        id: InstanceId,
    },
    Reinstall {
        id: InstanceId,
        #[arg(long)]
        template: Option<String>,
    },
    /// New resources from a JSON file (the `resources` object of a spec).
    Resize {
        id: InstanceId,
        #[arg(long)]
        resources: PathBuf,
    },
    Destroy {
        id: InstanceId,
    },
    List,
    Usage {
        id: InstanceId,
    },
    /// Run a command inside: `ct exec ID -- cmd args…`.
    Exec {
        id: InstanceId,
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Print the console log, then attach an interactive shell inside.
    Console {
        id: InstanceId,
    },
    /// What a restarted provisioner runs: adopt, finish or roll back, sweep orphans.
    Reconcile,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A JSON `InstanceSpec`; the flags below are ignored when given.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    #[arg(long)]
    pub id: Option<InstanceId>,
    #[arg(long, default_value = "ct.example.com")]
    pub hostname: String,
    #[arg(long, default_value = "busybox")]
    pub template: String,
    #[arg(long, default_value_t = 1)]
    pub vcpus: u32,
    #[arg(long, default_value_t = 128)]
    pub memory_guaranteed_mib: u64,
    #[arg(long, default_value_t = 256)]
    pub memory_burst_mib: u64,
    #[arg(long, default_value_t = 0)]
    pub swap_mib: u64,
    #[arg(long, default_value_t = 1)]
    pub disk_gib: u64,
    #[arg(long, default_value_t = 4.0)]
    pub cpu_ratio: f64,
    #[arg(long, default_value_t = 1.5)]
    pub memory_ratio: f64,
    #[arg(long, default_value_t = 2.0)]
    pub disk_ratio: f64,
    #[arg(long)]
    pub pids_max: Option<u32>,
    #[arg(long)]
    pub net_rate_mbit: Option<u32>,
    /// e.g. 10.77.0.2/24 (with --gateway4).
    #[arg(long)]
    pub ipv4: Option<String>,
    #[arg(long)]
    pub gateway4: Option<std::net::Ipv4Addr>,
    /// The address is private: masquerade its traffic to the outside behind the host's.
    #[arg(long)]
    pub nat: bool,
    #[arg(long)]
    pub no_start: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error("{0}")]
    Usage(String),
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

impl CtArgs {
    pub fn host(&self) -> Result<ContainerHost, CliError> {
        let cfg = ContainerConfig {
            state_dir: self.state_dir.clone(),
            cgroups: CgroupLayout::detect(&self.cgroup_root, self.cgroup_parent.clone()),
            templates: TemplateStore::new(&self.templates, self.state_dir.join("template-cache")),
            bridge: self.bridge.clone(),
            veth_prefix: self.veth_prefix.clone(),
            helper_exe: std::env::current_exe().map_err(|e| usage(format!("own executable: {e}")))?,
            stop_timeout: Duration::from_secs(self.stop_timeout),
            host_memory_mib: 0,
            userns: (!self.no_userns).then_some(super::IdPool { first: self.userns_base, slots: super::IdPool::DEFAULT.slots }),
            route: !self.no_route,
        };
        let detected = detect_capacity(&self.state_dir);
        let capacity = HostCapacity {
            cpus: self.cpus.unwrap_or(detected.cpus),
            memory_mib: self.memory_mib.unwrap_or(detected.memory_mib),
            disk_gib: self.disk_gib.unwrap_or(detected.disk_gib),
        };
        let cfg = ContainerConfig { host_memory_mib: capacity.memory_mib, ..cfg };
        Ok(ContainerHost::new(ContainerRuntime::new(cfg), capacity)?)
    }
}

/// This machine's threads, memory and the disk holding the state dir.
pub fn detect_capacity(state_dir: &std::path::Path) -> HostCapacity {
    let cpus = crate::vm::shield::online_cpus() as u32;
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map(|kib| kib / 1024)
        .unwrap_or(0);
    let _ = std::fs::create_dir_all(state_dir);
    let disk_gib = nix::sys::statvfs::statvfs(state_dir).map(|s| s.blocks() * s.fragment_size() / (1 << 30)).unwrap_or(0);
    HostCapacity { cpus, memory_mib, disk_gib }
}

fn spec_from(a: &CreateArgs) -> Result<InstanceSpec, CliError> {
    if let Some(p) = &a.spec {
        let bytes = std::fs::read(p).map_err(|e| usage(format!("{}: {e}", p.display())))?;
        return serde_json::from_slice(&bytes).map_err(|e| usage(format!("{}: {e}", p.display())));
    }
    let resources = PlanResources::try_from(ResourceSpec {
        kind: InstanceKind::Container,
        vcpus: a.vcpus,
        memory_guaranteed_mib: Some(a.memory_guaranteed_mib),
        memory_burst_mib: a.memory_burst_mib,
        swap_mib: a.swap_mib,
        disk_gib: a.disk_gib,
        cpu_ratio: a.cpu_ratio,
        memory_ratio: a.memory_ratio,
        disk_ratio: a.disk_ratio,
        pids_max: a.pids_max,
        net_rate_mbit: a.net_rate_mbit,
        io_weight: None,
        io_limits: Default::default(),
    })
    .map_err(|e| usage(e.to_string()))?;
    let mut network = vessel_core::NetworkSpec::default();
    if let Some(v4) = &a.ipv4 {
        let (addr, len) = v4.split_once('/').ok_or_else(|| usage("--ipv4 wants ADDR/PREFIX"))?;
        network.ipv4 = Some(Ipv4Assignment {
            address: addr.parse().map_err(|_| usage("--ipv4: bad address"))?,
            prefix_len: len.parse().map_err(|_| usage("--ipv4: bad prefix"))?,
            gateway: a.gateway4.ok_or_else(|| usage("--ipv4 needs --gateway4"))?,
            nat: a.nat,
        });
    }
    Ok(InstanceSpec {
        id: a.id.unwrap_or_else(InstanceId::new_random),
        hostname: Hostname::parse(&a.hostname).map_err(|e| usage(e.to_string()))?,
        template: a.template.clone(),
        resources,
        access: Default::default(),
        network,
        firewall: Default::default(),
    })
}

fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("serialises"));
}

/// Runs one `ct` command; returns the process exit code.
pub fn run(args: CtArgs) -> Result<i32, CliError> {
    let host = args.host()?;
    match &args.cmd {
        CtCommand::Create(a) => {
            let spec = spec_from(a)?;
            let r = host.create(spec, !a.no_start)?;
            print_json(&r);
        }
        CtCommand::Start { id } => print_json(&host.start(id)?),
        CtCommand::Stop { id } => print_json(&host.stop(id)?),
        CtCommand::Restart { id } => print_json(&host.restart(id)?),
        CtCommand::Suspend { id } => print_json(&host.suspend(id)?),
        CtCommand::Resume { id } => print_json(&host.resume(id)?),
        CtCommand::Reinstall { id, template } => print_json(&host.reinstall(id, template.clone())?),
        CtCommand::Resize { id, resources } => {
            let bytes = std::fs::read(resources).map_err(|e| usage(format!("{}: {e}", resources.display())))?;
            let res: PlanResources = serde_json::from_slice(&bytes).map_err(|e| usage(e.to_string()))?;
            print_json(&host.resize(id, res)?);
        }
        CtCommand::Destroy { id } => host.destroy(id)?,
        CtCommand::List => {
            for (r, s) in host.list()? {
                println!("{}\t{:?}\t{}\t{}", r.spec.id, s, r.spec.hostname.as_str(), r.spec.template);
            }
        }
        CtCommand::Usage { id } => print_json(&host.usage(id)?),
        CtCommand::Exec { id, argv } => {
            let status = host.exec_command(id, argv)?.status().map_err(|e| usage(format!("exec: {e}")))?;
            return Ok(status.code().unwrap_or(128));
        }
        CtCommand::Console { id } => {
            let log = host.rt.console_log(id);
            if let Ok(s) = std::fs::read_to_string(&log) {
                print!("{s}");
            }
            let status =
                host.exec_command(id, &["/bin/sh".to_string(), "-i".to_string()])?.status().map_err(|e| usage(format!("console: {e}")))?;
            return Ok(status.code().unwrap_or(128));
        }
        CtCommand::Reconcile => {
            let rep = host.reconcile()?;
            println!("{rep:?}");
        }
    }
    Ok(0)
}
