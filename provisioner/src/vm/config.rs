//! What one `provisioner vm run` process is told to build: plain values, validated once, then
//! turned into live KVM objects by [`super::vmm`]. Written as JSON by the KVM runtime into the
//! instance's directory.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use thiserror::Error;

/// How the vCPUs other than the first one are started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmpBoot {
    /// The standard: vCPU 0 enters the kernel, the others wait in KVM's wait-for-SIPI state
    /// until the guest wakes them through its local APIC (what Linux does).
    #[default]
    Sipi,
    /// The VMM starts every vCPU at the PVH entry with `%edi` = `"VSL1"` magic, `%esi` = its
    /// index and `%edx` = the vCPU count: a guest of our own needs no real-mode trampoline.
    /// (The test guest supports both; both work on the nested `kvm_pvm` hosts.)
    Entry,
}

/// Which cgroup the VMM joins before it allocates guest memory (so every page is charged to
/// it). `parent` is a path inside each v1 controller hierarchy (e.g. `vessel/vm`), `name` the
/// instance's own group under it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupPlacement {
    pub parent: String,
    pub name: String,
}

/// The machine's disk: a raw image (virtio-blk), with the plan's I/O ceilings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub io: super::virtio::IoRates,
}

/// The machine's network card (virtio-net) on an existing TAP device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    pub tap: String,
    pub mac: [u8; 6],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// For logs only (the instance id).
    pub name: String,
    pub vcpus: u8,
    pub memory_mib: u64,
    /// A PVH ELF (vmlinux with CONFIG_PVH, or the test guest) or a bzImage.
    pub kernel: PathBuf,
    #[serde(default)]
    pub cmdline: String,
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// Back guest RAM with 2 MiB huge pages (the host must have them reserved).
    #[serde(default)]
    pub huge_pages: bool,
    #[serde(default)]
    pub smp_boot: SmpBoot,
    /// Host CPU of each vCPU thread when the plan pins them (cpu_ratio 1); empty = floating.
    #[serde(default)]
    pub pin_cpus: Vec<usize>,
    /// Everything the guest writes on its serial port is appended here; at
    /// `serial_log_max_bytes` it moves to `<serial_log>.1` and starts again (see
    /// [`super::devices::RotatingLog`]).
    pub serial_log: PathBuf,
    #[serde(default = "default_serial_log_max_bytes")]
    pub serial_log_max_bytes: u64,
    /// Also copy serial output to the VMM's stdout (an attached console).
    #[serde(default)]
    pub serial_stdout: bool,
    /// Unix socket for pause/resume/shutdown/status (see [`super::control`]).
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
    /// Written when the VMM ends on purpose: `poweroff`, `reset` or `error: ...`. Its absence
    /// after the process is gone means the VMM was killed (crashed).
    #[serde(default)]
    pub exit_file: Option<PathBuf>,
    #[serde(default)]
    pub cgroup: Option<CgroupPlacement>,
    /// virtio devices, in this order on the MMIO bus (see [`super::virtio`]).
    #[serde(default)]
    pub disk: Option<DiskConfig>,
    /// Further disks right after `disk` (`vdb`, …): in rescue, the machine's own disk
    /// behind the rescue system's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_disks: Vec<DiskConfig>,
    /// A read-only second disk after `disk`: the NoCloud `cidata` seed (see [`super::seed`]).
    #[serde(default)]
    pub seed: Option<PathBuf>,
    #[serde(default)]
    pub net: Option<NetConfig>,
    #[serde(default)]
    pub rng: bool,
    /// Also describe the virtio devices on the kernel command line (`virtio_mmio.device=`),
    /// for kernels without ACPI (the test kernel). They are always in the ACPI DSDT; a kernel
    /// with both would find each device twice.
    #[serde(default = "yes")]
    pub virtio_cmdline: bool,
    /// The seccomp filter is on unless a developer turns it off to debug.
    #[serde(default = "yes")]
    pub seccomp: bool,
}

fn yes() -> bool {
    true
}

/// 1 MiB: a few thousand lines of boot log, and at most 2 MiB of disk per machine.
pub const DEFAULT_SERIAL_LOG_MAX_BYTES: u64 = 1 << 20;

fn default_serial_log_max_bytes() -> u64 {
    DEFAULT_SERIAL_LOG_MAX_BYTES
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("vcpus must be 1..={max}, got {got}")]
    Vcpus { got: u8, max: u8 },
    #[error("memory_mib must be at least {min} MiB, got {got}")]
    Memory { got: u64, min: u64 },
    #[error("pin_cpus must name one host CPU per vCPU ({vcpus}), got {got}")]
    Pinning { vcpus: u8, got: usize },
    #[error("cannot read VM config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("VM config {path} is invalid: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
}

impl VmConfig {
    /// The test guest can report up to 64 vCPUs; KVM and our CPUID topology allow more, but
    /// no plan sells more than this on one host yet.
    pub const MAX_VCPUS: u8 = 64;
    pub const MIN_MEMORY_MIB: u64 = 16;

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vcpus == 0 || self.vcpus > Self::MAX_VCPUS {
            return Err(ConfigError::Vcpus { got: self.vcpus, max: Self::MAX_VCPUS });
        }
        if self.memory_mib < Self::MIN_MEMORY_MIB {
            return Err(ConfigError::Memory { got: self.memory_mib, min: Self::MIN_MEMORY_MIB });
        }
        if !self.pin_cpus.is_empty() && self.pin_cpus.len() != self.vcpus as usize {
            return Err(ConfigError::Pinning { vcpus: self.vcpus, got: self.pin_cpus.len() });
        }
        Ok(())
    }

    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let cfg: Self = serde_json::from_slice(&bytes).map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source })?;
        cfg.validate()?;
        Ok(cfg)
    }
}
