//! What one VPS of a plan is promised, per kind.
//!
//! [`PlanResources`] can only be built through validation, so a plan with a burst below its
//! guarantee, or a KVM plan whose memory is overcommitted, cannot exist in memory at all.

use crate::ratio::Ratio;
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// The two kinds of VPS, each with its own promise (see the resource model).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(type_name = "instance_kind", rename_all = "lowercase"))]
pub enum InstanceKind {
    /// Burstable OpenVZ-style container: guaranteed floor, burst ceiling, shared kernel.
    Container,
    /// Dedicated KVM machine: own kernel, memory never overcommitted.
    Kvm,
}

impl InstanceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceKind::Container => "container",
            InstanceKind::Kvm => "kvm",
        }
    }
}

impl fmt::Display for InstanceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for InstanceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "container" => Ok(Self::Container),
            "kvm" => Ok(Self::Kvm),
            other => Err(format!("unknown kind {other:?}: expected \"container\" or \"kvm\"")),
        }
    }
}

/// A rule that a resource field breaks: names the field so an admin can fix the right line.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[error("{field}: {rule}")]
pub struct ResourceError {
    pub field: &'static str,
    pub rule: String,
}

fn err(field: &'static str, rule: impl Into<String>) -> ResourceError {
    ResourceError { field, rule: rule.into() }
}

/// The raw, unvalidated shape of a plan's resources, as written in a plan file or sent over
/// the wire. Turned into [`PlanResources`] by `TryFrom`, which is the only way to get one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    pub kind: InstanceKind,
    pub vcpus: u32,
    /// Container: the floor. KVM: omit, or equal to `memory_burst_mib` (the machine's memory).
    #[serde(default)]
    pub memory_guaranteed_mib: Option<u64>,
    /// Container: the ceiling. KVM: the machine's memory.
    pub memory_burst_mib: u64,
    #[serde(default)]
    pub swap_mib: u64,
    pub disk_gib: u64,
    pub cpu_ratio: f64,
    #[serde(default = "one")]
    pub memory_ratio: f64,
    pub disk_ratio: f64,
    #[serde(default)]
    pub pids_max: Option<u32>,
    /// Egress rate limit in Mbit/s; none means line rate.
    #[serde(default)]
    pub net_rate_mbit: Option<u32>,
    /// Block I/O weight, 10..=1000 (cgroup blkio / io.weight).
    #[serde(default)]
    pub io_weight: Option<u16>,
    /// Hard disk I/O ceilings (bytes/s and IOPS, read and write); absent: unlimited.
    #[serde(default, skip_serializing_if = "IoLimits::is_unlimited")]
    pub io_limits: IoLimits,
}

/// Disk I/O ceilings of one VPS: enforced by the host (blkio throttle / `io.max` for a
/// container's loop device, a token bucket in the VMM for a KVM disk), where the tenant cannot
/// lift them. `None` means no ceiling for that direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_bytes_per_sec: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_bytes_per_sec: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_iops: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_iops: Option<u64>,
}

impl IoLimits {
    /// Below these a VPS could not even boot; a typo (KiB for MiB) is caught here.
    pub const MIN_BYTES_PER_SEC: u64 = 1024 * 1024;
    pub const MIN_IOPS: u64 = 10;

    pub fn is_unlimited(&self) -> bool {
        *self == Self::default()
    }

    fn validate(&self) -> Result<(), ResourceError> {
        for (field, v) in
            [("io_limits.read_bytes_per_sec", self.read_bytes_per_sec), ("io_limits.write_bytes_per_sec", self.write_bytes_per_sec)]
        {
            if matches!(v, Some(b) if b < Self::MIN_BYTES_PER_SEC) {
                return Err(err(field, "must be at least 1048576 bytes/s (1 MiB/s); omit it for no limit"));
            }
        }
        for (field, v) in [("io_limits.read_iops", self.read_iops), ("io_limits.write_iops", self.write_iops)] {
            if matches!(v, Some(n) if n < Self::MIN_IOPS) {
                return Err(err(field, "must be at least 10 IOPS; omit it for no limit"));
            }
        }
        Ok(())
    }
}

fn one() -> f64 {
    1.0
}

/// Validated resources of one VPS of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ResourceSpec", into = "ResourceSpec")]
pub struct PlanResources {
    kind: InstanceKind,
    vcpus: u32,
    memory_guaranteed_mib: u64,
    memory_burst_mib: u64,
    swap_mib: u64,
    disk_gib: u64,
    cpu_ratio: Ratio,
    memory_ratio: Ratio,
    disk_ratio: Ratio,
    pids_max: u32,
    net_rate_mbit: Option<u32>,
    io_weight: u16,
    io_limits: IoLimits,
}

impl PlanResources {
    pub const MAX_VCPUS: u32 = 256;
    pub const MIN_MEMORY_MIB: u64 = 64;
    pub const DEFAULT_PIDS_MAX: u32 = 4096;
    pub const DEFAULT_IO_WEIGHT: u16 = 500;

    pub fn kind(&self) -> InstanceKind {
        self.kind
    }
    pub fn vcpus(&self) -> u32 {
        self.vcpus
    }
    /// The floor that is always available (for KVM: all of its memory).
    pub fn memory_guaranteed_mib(&self) -> u64 {
        self.memory_guaranteed_mib
    }
    /// The ceiling (for KVM: all of its memory).
    pub fn memory_burst_mib(&self) -> u64 {
        self.memory_burst_mib
    }
    pub fn swap_mib(&self) -> u64 {
        self.swap_mib
    }
    pub fn disk_gib(&self) -> u64 {
        self.disk_gib
    }
    pub fn cpu_ratio(&self) -> Ratio {
        self.cpu_ratio
    }
    pub fn memory_ratio(&self) -> Ratio {
        self.memory_ratio
    }
    pub fn disk_ratio(&self) -> Ratio {
        self.disk_ratio
    }
    pub fn pids_max(&self) -> u32 {
        self.pids_max
    }
    pub fn net_rate_mbit(&self) -> Option<u32> {
        self.net_rate_mbit
    }
    pub fn io_weight(&self) -> u16 {
        self.io_weight
    }
    pub fn io_limits(&self) -> IoLimits {
        self.io_limits
    }
    /// KVM with cpu_ratio 1: its vCPUs get whole host cores nobody else uses.
    pub fn is_pinned(&self) -> bool {
        self.kind == InstanceKind::Kvm && self.cpu_ratio.is_one()
    }
}

impl TryFrom<ResourceSpec> for PlanResources {
    type Error = ResourceError;

    fn try_from(s: ResourceSpec) -> Result<Self, ResourceError> {
        if s.vcpus == 0 || s.vcpus > Self::MAX_VCPUS {
            return Err(err("vcpus", format!("must be between 1 and {}", Self::MAX_VCPUS)));
        }
        if s.memory_burst_mib < Self::MIN_MEMORY_MIB {
            return Err(err("memory_burst_mib", format!("must be at least {} MiB", Self::MIN_MEMORY_MIB)));
        }
        if s.disk_gib == 0 {
            return Err(err("disk_gib", "must be at least 1 GiB"));
        }
        let cpu_ratio = Ratio::from_f64(s.cpu_ratio).map_err(|e| err("cpu_ratio", e.to_string()))?;
        let memory_ratio = Ratio::from_f64(s.memory_ratio).map_err(|e| err("memory_ratio", e.to_string()))?;
        let disk_ratio = Ratio::from_f64(s.disk_ratio).map_err(|e| err("disk_ratio", e.to_string()))?;
        let io_weight = s.io_weight.unwrap_or(Self::DEFAULT_IO_WEIGHT);
        if !(10..=1000).contains(&io_weight) {
            return Err(err("io_weight", "must be between 10 and 1000"));
        }
        if s.net_rate_mbit == Some(0) {
            return Err(err("net_rate_mbit", "must be at least 1 Mbit/s (omit it for line rate)"));
        }
        let pids_max = s.pids_max.unwrap_or(Self::DEFAULT_PIDS_MAX);
        s.io_limits.validate()?;
        match s.kind {
            InstanceKind::Container => {
                let g = s.memory_guaranteed_mib.ok_or_else(|| err("memory_guaranteed_mib", "is required for a container plan"))?;
                if g < Self::MIN_MEMORY_MIB {
                    return Err(err("memory_guaranteed_mib", format!("must be at least {} MiB", Self::MIN_MEMORY_MIB)));
                }
                if s.memory_burst_mib < g {
                    return Err(err(
                        "memory_burst_mib",
                        format!("burst ({} MiB) must not be below the guarantee ({g} MiB)", s.memory_burst_mib),
                    ));
                }
                if pids_max < 16 {
                    return Err(err("pids_max", "must be at least 16"));
                }
                Ok(Self {
                    kind: s.kind,
                    vcpus: s.vcpus,
                    memory_guaranteed_mib: g,
                    memory_burst_mib: s.memory_burst_mib,
                    swap_mib: s.swap_mib,
                    disk_gib: s.disk_gib,
                    cpu_ratio,
                    memory_ratio,
                    disk_ratio,
                    pids_max,
                    net_rate_mbit: s.net_rate_mbit,
                    io_weight,
                    io_limits: s.io_limits,
                })
            }
            InstanceKind::Kvm => {
                if !memory_ratio.is_one() {
                    return Err(err(
                        "memory_ratio",
                        format!("must be 1.0 for a dedicated KVM plan (got {memory_ratio}): its memory is never overcommitted"),
                    ));
                }
                if let Some(g) = s.memory_guaranteed_mib {
                    if g != s.memory_burst_mib {
                        return Err(err(
                            "memory_guaranteed_mib",
                            "must equal memory_burst_mib for a KVM plan (its memory is dedicated); omit it",
                        ));
                    }
                }
                if s.swap_mib != 0 {
                    return Err(err("swap_mib", "must be 0 for a KVM plan (guest memory is locked)"));
                }
                Ok(Self {
                    kind: s.kind,
                    vcpus: s.vcpus,
                    memory_guaranteed_mib: s.memory_burst_mib,
                    memory_burst_mib: s.memory_burst_mib,
                    swap_mib: 0,
                    disk_gib: s.disk_gib,
                    cpu_ratio,
                    memory_ratio,
                    disk_ratio,
                    pids_max,
                    net_rate_mbit: s.net_rate_mbit,
                    io_weight,
                    io_limits: s.io_limits,
                })
            }
        }
    }
}

impl From<PlanResources> for ResourceSpec {
    fn from(r: PlanResources) -> Self {
        ResourceSpec {
            kind: r.kind,
            vcpus: r.vcpus,
            memory_guaranteed_mib: Some(r.memory_guaranteed_mib),
            memory_burst_mib: r.memory_burst_mib,
            swap_mib: r.swap_mib,
            disk_gib: r.disk_gib,
            cpu_ratio: r.cpu_ratio.as_f64(),
            memory_ratio: r.memory_ratio.as_f64(),
            disk_ratio: r.disk_ratio.as_f64(),
            pids_max: Some(r.pids_max),
            net_rate_mbit: r.net_rate_mbit,
            io_weight: Some(r.io_weight),
            io_limits: r.io_limits,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn container(g: u64, b: u64) -> ResourceSpec {
        ResourceSpec {
            kind: InstanceKind::Container,
            vcpus: 2,
            memory_guaranteed_mib: Some(g),
            memory_burst_mib: b,
            swap_mib: 512,
            disk_gib: 40,
            cpu_ratio: 4.0,
            memory_ratio: 2.0,
            disk_ratio: 2.0,
            pids_max: None,
            net_rate_mbit: Some(100),
            io_weight: None,
            io_limits: IoLimits::default(),
        }
    }

    #[test]
    fn burst_below_guarantee_is_refused_naming_the_field() {
        let e = PlanResources::try_from(container(2048, 1024)).unwrap_err();
        assert_eq!(e.field, "memory_burst_mib");
        assert!(e.rule.contains("below the guarantee"), "{e}");
    }

    #[test]
    fn kvm_memory_is_never_overcommitted() {
        let mut s = container(1024, 1024);
        s.kind = InstanceKind::Kvm;
        s.swap_mib = 0;
        s.memory_ratio = 1.5;
        let e = PlanResources::try_from(s.clone()).unwrap_err();
        assert_eq!(e.field, "memory_ratio");
        s.memory_ratio = 1.0;
        let r = PlanResources::try_from(s).unwrap();
        assert_eq!(r.memory_guaranteed_mib(), r.memory_burst_mib());
    }

    #[test]
    fn io_limits_are_optional_validated_and_round_trip() {
        let mut s = container(1024, 2048);
        s.io_limits.write_bytes_per_sec = Some(4096);
        assert_eq!(PlanResources::try_from(s.clone()).unwrap_err().field, "io_limits.write_bytes_per_sec");
        s.io_limits.write_bytes_per_sec = Some(50 << 20);
        s.io_limits.read_iops = Some(2000);
        let r = PlanResources::try_from(s).unwrap();
        let back: PlanResources = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.io_limits().read_iops, Some(2000));
        // An old record without the field reads as unlimited.
        let old = serde_json::to_string(&PlanResources::try_from(container(1024, 2048)).unwrap()).unwrap();
        assert!(!old.contains("io_limits"));
        assert!(serde_json::from_str::<PlanResources>(&old).unwrap().io_limits().is_unlimited());
    }

    #[test]
    fn round_trips_through_json_and_revalidates() {
        let r = PlanResources::try_from(container(1024, 2048)).unwrap();
        let json = serde_json::to_string(&r).unwrap();
        let back: PlanResources = serde_json::from_str(&json).unwrap();
        assert_eq!(r, back);
        let bad = json.replace("\"memory_burst_mib\":2048", "\"memory_burst_mib\":512");
        assert!(serde_json::from_str::<PlanResources>(&bad).is_err());
    }
}
