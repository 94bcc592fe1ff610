//! `provisioner serve`: builds the service from the config, adopts what already runs on the
//! host, then serves the API: over TLS (the configured certificate, else the self-signed one
//! in the state dir), or plain HTTP only when `plain_http` says so.

use crate::api::{self, ApiState};
use crate::cgroup::CgroupLayout;
use crate::config::{ConfigError, DaemonConfig, Transport};
use crate::container::manager::ContainerHost;
use crate::container::{ContainerConfig, ContainerRuntime, IdPool};
use crate::service::{Service, ServiceError};
use crate::store::{InstanceStore, StoreError};
use crate::template::TemplateStore;
use crate::vm::runtime::{KvmRuntime, KvmRuntimeConfig};
use std::io::Write;
use std::time::Duration;
use thiserror::Error;
use vessel_core::signing::Verifier;

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("adopting the host's instances: {0}")]
    Adopt(#[from] ServiceError),
    #[error("the container runtime: {0}")]
    Containers(String),
    #[error("serving: {0}")]
    Serve(#[from] std::io::Error),
}

/// This machine's host name (for the self-signed certificate's names).
pub fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
}

/// Can this host run KVM machines? (`/dev/kvm` opens read-write.)
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()
}

/// The service for this config, with [`vmm_binary`] as the VMM.
pub fn build_service(cfg: &DaemonConfig) -> Result<std::sync::Arc<Service>, DaemonError> {
    build_service_with(cfg, vmm_binary()?)
}

/// The program each KVM machine runs as: this program's own `provisioner vm run`, or, when
/// opted in, `vessel-vmm` (the VMM without the daemon: ~3 MiB of its own resident beside guest
/// RAM, against ~7 MiB for this whole program) installed beside this binary.
pub fn vmm_binary() -> std::io::Result<std::path::PathBuf> {
    let me = std::env::current_exe()?;
    // `vessel-vmm` (beside this binary) is the same VMM with a third of the resident overhead,
    // but it is not run by default yet: with it, a container ordered after a KVM machine on the
    // same host did not start (`order_to_running`), not yet understood. `VESSEL_SLIM_VMM=1`
    // opts in; the VM bench runs it directly.
    let slim = me.with_file_name("vessel-vmm");
    let opted_in = std::env::var("VESSEL_SLIM_VMM").is_ok_and(|v| v == "1");
    let vmm = if opted_in && slim.is_file() { slim } else { me };
    tracing::info!(vmm = %vmm.display(), "each KVM machine runs as `<vmm> vm run`");
    Ok(vmm)
}

/// The service for this config (no secret needed: tests and tools may build it directly),
/// running machines with `vmm` (a `provisioner` binary).
pub fn build_service_with(cfg: &DaemonConfig, vmm: std::path::PathBuf) -> Result<std::sync::Arc<Service>, DaemonError> {
    let capacity = cfg.usable_capacity()?;
    let store = InstanceStore::open(&cfg.state_dir)?;
    let kvm = if kvm_usable() {
        let mut kc = KvmRuntimeConfig::new(cfg.state_dir.clone(), cfg.cgroup_parent.clone(), vmm.clone(), cfg.images_dir.clone(), capacity);
        kc.stop_timeout = Duration::from_secs(cfg.stop_timeout_secs);
        kc.shield.dir = cfg.cpu_shield_dir.clone();
        kc.shield.host_wide = cfg.cpu_shield_host_wide;
        // The host keeps its reserved cores (the first ones): never pinned to a machine.
        let keep = (cfg.reserved.cpus as usize).max(1);
        kc.pinnable_cpus.retain(|c| *c >= keep);
        // Machines with an address get a TAP on the same bridge as containers, under the same guards.
        kc.bridge = Some(cfg.bridge.clone());
        Some(KvmRuntime::new(kc, store.clone()))
    } else {
        tracing::warn!("/dev/kvm is not usable: this host will refuse KVM instances");
        None
    };
    let containers = if cfg.containers {
        let cc = ContainerConfig {
            state_dir: cfg.state_dir.clone(),
            cgroups: CgroupLayout::detect(&cfg.cgroup_root, cfg.cgroup_parent.clone()),
            templates: TemplateStore::new(&cfg.templates_dir, cfg.state_dir.join("template-cache")),
            bridge: cfg.bridge.clone(),
            veth_prefix: cfg.veth_prefix.clone(),
            helper_exe: vmm.clone(),
            stop_timeout: Duration::from_secs(cfg.stop_timeout_secs),
            host_memory_mib: capacity.memory_mib,
            userns: cfg.userns.then(|| IdPool {
                first: cfg.userns_base.unwrap_or(IdPool::DEFAULT.first),
                slots: cfg.userns_slots.unwrap_or(IdPool::DEFAULT.slots),
            }),
            route: cfg.route,
        };
        Some(ContainerHost::new(ContainerRuntime::new(cc), capacity).map_err(|e| DaemonError::Containers(e.to_string()))?)
    } else {
        None
    };
    Ok(Service::new(store, capacity, kvm, containers))
}

/// Runs the daemon until SIGINT/SIGTERM. Prints `listening on <scheme>://<addr>` on stdout
/// once bound, so a supervisor (or a test) knows where and when it answers.
pub async fn serve(cfg: DaemonConfig) -> Result<(), DaemonError> {
    let started = vessel_core::signing::unix_now();
    let secret = cfg.read_secret()?;
    let tls = match cfg.transport()? {
        Transport::Tls { cert, key, self_signed } => {
            if self_signed {
                // Normally `provisioner join` made it; a host joined before TLS was the default
                // gets one now (and must join again for the panel to pin it).
                let mut names = vec![hostname()];
                if !cfg.listen.ip().is_unspecified() {
                    names.push(cfg.listen.ip().to_string());
                }
                if crate::tls::ensure_self_signed(&cert, &key, &names)? {
                    tracing::warn!(cert = %cert.display(), "made a new self-signed certificate: the panel has not pinned it; run `provisioner join --force` with a new token");
                }
            }
            Some(api::tls_config(&cert, &key).map_err(ConfigError::Tls)?)
        }
        Transport::PlainHttp => {
            tracing::warn!("plain_http = true: serving the API over plain HTTP (signed, but readable by anyone on the path)");
            None
        }
    };
    let service = build_service(&cfg)?;
    let adopt = service.clone();
    let adopted = tokio::task::spawn_blocking(move || adopt.adopt()).await.map_err(|e| ServiceError::Internal(e.to_string()))??;
    tracing::info!(instances = adopted.len(), state_dir = %cfg.state_dir.display(), "adopted the host's instances");
    let metrics = match cfg.metrics_listen {
        Some(listen) => {
            let (addr, server) = crate::metrics::serve(service.clone(), listen)?;
            tracing::info!(%addr, "serving metrics (plain HTTP, unauthenticated: keep this address private)");
            println!("metrics on http://{addr}/metrics");
            Some((server.handle(), tokio::spawn(server)))
        }
        None => None,
    };
    // Nothing signed before this start can be replayed against it (the replay cache is new).
    let state = ApiState { service, verifier: Verifier::new(secret).not_before(started) };
    api::serve(state, cfg.listen, tls, cfg.workers, |addrs, tls| {
        let scheme = if tls { "https" } else { "http" };
        for a in addrs {
            tracing::info!(addr = %a, tls, "serving the provisioner API");
            println!("listening on {scheme}://{a}");
        }
        let _ = std::io::stdout().flush();
    })
    .await?;
    if let Some((handle, task)) = metrics {
        handle.stop(true).await;
        let _ = task.await;
    }
    Ok(())
}
