//! The lifecycle contract between panel and host, free of any transport: what an instance is
//! asked to become, what it is observed to be, and which actions make sense from which state.
//! HTTP (and the panel's job queue) only carry these.

use crate::access::Access;
use crate::hostname::Hostname;
use crate::ids::InstanceId;
use crate::resources::{InstanceKind, PlanResources};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};

/// What a host observes an instance to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Create has started and not finished (a restart finishes or rolls it back).
    Creating,
    Stopped,
    Running,
    /// Frozen: processes (container) or vCPUs (KVM) stopped, memory kept.
    Suspended,
    /// It should be running but its process died (an OOM of the VMM, a kill -9).
    Crashed,
    /// Destroy has started and not finished (a restart finishes it).
    Destroying,
}

/// An operation on an existing instance. Every one is idempotent: asking for the state an
/// instance is already in succeeds and changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Start,
    Stop,
    Restart,
    Suspend,
    Resume,
    Reinstall,
    Resize,
    Destroy,
}

impl Action {
    /// May this action be asked of an instance in state `s`? (`false` is a clear refusal,
    /// e.g. "cannot reinstall a suspended instance: resume it first".)
    pub fn allowed_in(self, s: InstanceState) -> bool {
        use Action::*;
        use InstanceState::*;
        match (self, s) {
            (Destroy, _) => true,
            (_, Creating | Destroying) => false,
            (Start, Stopped | Running | Crashed) => true,
            (Stop, Stopped | Running | Crashed) => true,
            (Restart, Stopped | Running | Crashed) => true,
            (Suspend, Running | Suspended) => true,
            (Resume, Suspended | Running) => true,
            (Reinstall, Stopped | Running | Crashed) => true,
            (Resize, Stopped | Running) => true,
            _ => false,
        }
    }
}

/// An IPv4 address assigned by the panel from an admin's pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv4Assignment {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

/// An IPv6 address assigned by the panel from an admin's pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Assignment {
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    pub gateway: Ipv6Addr,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub ipv4: Option<Ipv4Assignment>,
    pub ipv6: Option<Ipv6Assignment>,
}

/// Everything a host needs to create one instance. The id is the panel's, so a retried
/// create finds the instance it already made instead of making a second.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    pub id: InstanceId,
    pub hostname: Hostname,
    /// OS template name, e.g. `busybox` or `debian-12`.
    pub template: String,
    pub resources: PlanResources,
    #[serde(default)]
    pub network: NetworkSpec,
    /// The customer's SSH keys and root password hash, written into the guest before its
    /// first boot (and again on reinstall). Empty: root stays locked.
    #[serde(default, skip_serializing_if = "Access::is_empty")]
    pub access: Access,
}

impl InstanceSpec {
    pub fn kind(&self) -> InstanceKind {
        self.resources.kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn destroy_is_always_allowed_and_suspend_needs_running() {
        assert!(Action::Destroy.allowed_in(InstanceState::Creating));
        assert!(Action::Suspend.allowed_in(InstanceState::Running));
        assert!(!Action::Suspend.allowed_in(InstanceState::Stopped));
        assert!(!Action::Reinstall.allowed_in(InstanceState::Suspended));
        assert!(Action::Start.allowed_in(InstanceState::Running), "idempotent");
    }
}
