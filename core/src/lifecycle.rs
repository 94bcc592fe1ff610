//! The lifecycle contract between panel and host, free of any transport: what an instance is
//! asked to become, what it is observed to be, and which actions make sense from which state.
//! HTTP (and the panel's job queue) only carry these.

use crate::access::{Access, PasswordHash};
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

/// The name of an operation on an existing instance, without its arguments (those travel in
/// [`HostAction`]). Every one is idempotent: asking for the state an instance is already in
/// succeeds and changes nothing.
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
    /// Changes root's password on a running instance.
    ResetPassword,
    /// Boots a rescue system with the instance's own disk attached (a container: a rescue
    /// root with its filesystem at `/mnt`; a KVM machine: the rescue kernel with its disk as
    /// the second disk), for a system that no longer boots.
    Rescue,
    /// Boots the instance's own system again.
    LeaveRescue,
    Destroy,
}

impl Action {
    /// Every action, for exhaustive tests.
    pub const ALL: [Action; 11] = [
        Action::Start,
        Action::Stop,
        Action::Restart,
        Action::Suspend,
        Action::Resume,
        Action::Reinstall,
        Action::Resize,
        Action::ResetPassword,
        Action::Rescue,
        Action::LeaveRescue,
        Action::Destroy,
    ];

    /// Its name on the wire (`reset_password`).
    pub fn name(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Suspend => "suspend",
            Action::Resume => "resume",
            Action::Reinstall => "reinstall",
            Action::Resize => "resize",
            Action::ResetPassword => "reset_password",
            Action::Rescue => "rescue",
            Action::LeaveRescue => "leave_rescue",
            Action::Destroy => "destroy",
        }
    }

    /// May this action be asked of an instance in state `s`? (`false` is a clear refusal,
    /// e.g. "cannot reinstall a suspended instance: resume it first".) The one table both
    /// sides use; [`HostAction::allowed_in`] asks it.
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
            // Written into a live guest; a stopped one gets its access at reinstall.
            (ResetPassword, Running) => true,
            // Above all for what no longer boots (crashed), or will not once stopped.
            (Rescue | LeaveRescue, Stopped | Running | Crashed) => true,
            _ => false,
        }
    }
}

/// What the panel asks a host to do to an existing instance (`POST /v1/instances/{id}/actions`),
/// each variant carrying exactly what it needs: a start cannot carry resources, a resize cannot
/// lack them. On the wire it is tagged by `action` (the [`Action`] name), e.g.
/// `{"action":"start"}`, `{"action":"resize","resources":{…}}`.
///
/// Serde's internally tagged enums ignore stray fields beside a unit variant, so reading goes
/// through [`HostActionBody`], which refuses any field the named action does not take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", try_from = "HostActionBody")]
pub enum HostAction {
    Start,
    Stop,
    Restart,
    Suspend,
    Resume,
    /// A new root filesystem from `template` (absent: the current one again), with `access`
    /// (the customer's keys and root password hash) written into it; same identity, disk
    /// image and addresses.
    Reinstall {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        template: Option<String>,
        #[serde(default, skip_serializing_if = "Access::is_empty")]
        access: Access,
    },
    /// New resources of the same kind; admitted like a create (the old size excluded).
    Resize {
        resources: PlanResources,
    },
    /// Root's new password (as `/etc/shadow` stores it) on a running instance.
    ResetPassword {
        root_password_hash: PasswordHash,
    },
    /// Boots the rescue system (see [`Action::Rescue`]); `access` (the customer's keys and
    /// root password hash as the panel has them now) is written into the rescue system, so
    /// the customer gets in as into their own.
    Rescue {
        #[serde(default, skip_serializing_if = "Access::is_empty")]
        access: Access,
    },
    LeaveRescue,
    Destroy,
}

/// Every field any action takes, as it arrives; [`HostAction`]'s `TryFrom` keeps only the
/// named action's and refuses the rest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostActionBody {
    action: Action,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    access: Option<Access>,
    #[serde(default)]
    resources: Option<PlanResources>,
    #[serde(default)]
    root_password_hash: Option<PasswordHash>,
}

impl TryFrom<HostActionBody> for HostAction {
    type Error = String;

    fn try_from(b: HostActionBody) -> Result<Self, String> {
        let HostActionBody { action, mut template, mut access, mut resources, mut root_password_hash } = b;
        let a = match action {
            Action::Start => HostAction::Start,
            Action::Stop => HostAction::Stop,
            Action::Restart => HostAction::Restart,
            Action::Suspend => HostAction::Suspend,
            Action::Resume => HostAction::Resume,
            Action::Reinstall => HostAction::Reinstall { template: template.take(), access: access.take().unwrap_or_default() },
            Action::Resize => HostAction::Resize { resources: resources.take().ok_or("resize needs `resources`")? },
            Action::ResetPassword => HostAction::ResetPassword {
                root_password_hash: root_password_hash.take().ok_or("reset_password needs `root_password_hash`")?,
            },
            Action::Rescue => HostAction::Rescue { access: access.take().unwrap_or_default() },
            Action::LeaveRescue => HostAction::LeaveRescue,
            Action::Destroy => HostAction::Destroy,
        };
        let stray: Vec<&str> = [
            ("template", template.is_some()),
            ("access", access.is_some()),
            ("resources", resources.is_some()),
            ("root_password_hash", root_password_hash.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect();
        match stray.is_empty() {
            true => Ok(a),
            false => Err(format!("{} takes no `{}`", action.name(), stray.join("`, `"))),
        }
    }
}

impl HostAction {
    /// Its name, for refusals and logs.
    pub fn action(&self) -> Action {
        match self {
            HostAction::Start => Action::Start,
            HostAction::Stop => Action::Stop,
            HostAction::Restart => Action::Restart,
            HostAction::Suspend => Action::Suspend,
            HostAction::Resume => Action::Resume,
            HostAction::Reinstall { .. } => Action::Reinstall,
            HostAction::Resize { .. } => Action::Resize,
            HostAction::ResetPassword { .. } => Action::ResetPassword,
            HostAction::Rescue { .. } => Action::Rescue,
            HostAction::LeaveRescue => Action::LeaveRescue,
            HostAction::Destroy => Action::Destroy,
        }
    }

    /// May it be asked of an instance in state `s`? (See [`Action::allowed_in`].)
    pub fn allowed_in(&self, s: InstanceState) -> bool {
        self.action().allowed_in(s)
    }
}

/// An IPv4 address assigned by the panel from an admin's pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv4Assignment {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// What the pool says about reaching the outside: `false` (a block routed to the host),
    /// the host forwards the address as it is; `true` (a private pool), the host masquerades
    /// its traffic leaving the pool's network behind the host's own address.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nat: bool,
}

impl Ipv4Assignment {
    /// The pool's network as `a.b.c.d/len` (the address with its host bits cleared).
    pub fn network(&self) -> String {
        let len = u32::from(self.prefix_len.min(32));
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        format!("{}/{len}", Ipv4Addr::from(u32::from(self.address) & mask))
    }

    /// What the host masquerades this address's traffic outside of, if the pool is private.
    pub fn masquerade_outside(&self) -> Option<String> {
        self.nat.then(|| self.network())
    }
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
    /// The resolvers of the instance's address pools (the admin's, per pool), written into a
    /// new container's `/etc/resolv.conf`. Empty: the host's own (non-loopback) resolvers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<std::net::IpAddr>,
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
    /// The customer's inbound firewall, enforced on the host on the instance's port; changed
    /// later through `PUT /v1/instances/{id}/firewall`. Open (absent): nothing filtered.
    #[serde(default, skip_serializing_if = "crate::Firewall::is_open")]
    pub firewall: crate::Firewall,
}

impl InstanceSpec {
    pub fn kind(&self) -> InstanceKind {
        self.resources.kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::PlanResources;

    const STATES: [InstanceState; 6] = [
        InstanceState::Creating,
        InstanceState::Stopped,
        InstanceState::Running,
        InstanceState::Suspended,
        InstanceState::Crashed,
        InstanceState::Destroying,
    ];

    fn one_of_each() -> Vec<HostAction> {
        let resources = PlanResources::try_from(crate::resources::tests::container(1024, 2048)).unwrap();
        let hash =
            PasswordHash::parse("$6$salt$abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ./abcdefghijklmnopqrstu").unwrap();
        vec![
            HostAction::Start,
            HostAction::Stop,
            HostAction::Restart,
            HostAction::Suspend,
            HostAction::Resume,
            HostAction::Reinstall { template: None, access: Access::default() },
            HostAction::Resize { resources },
            HostAction::ResetPassword { root_password_hash: hash },
            HostAction::Rescue { access: Access::default() },
            HostAction::LeaveRescue,
            HostAction::Destroy,
        ]
    }

    /// The whole table, written out: every (action, state) pair, one row per action, the
    /// columns in the order of `STATES` (creating, stopped, running, suspended, crashed,
    /// destroying).
    #[test]
    fn allowed_in_every_pair() {
        let table: [(Action, [bool; 6]); 11] = [
            (Action::Start, [false, true, true, false, true, false]),
            (Action::Stop, [false, true, true, false, true, false]),
            (Action::Restart, [false, true, true, false, true, false]),
            (Action::Suspend, [false, false, true, true, false, false]),
            (Action::Resume, [false, false, true, true, false, false]),
            (Action::Reinstall, [false, true, true, false, true, false]),
            (Action::Resize, [false, true, true, false, false, false]),
            (Action::ResetPassword, [false, false, true, false, false, false]),
            (Action::Rescue, [false, true, true, false, true, false]),
            (Action::LeaveRescue, [false, true, true, false, true, false]),
            (Action::Destroy, [true, true, true, true, true, true]),
        ];
        let actions = one_of_each();
        assert_eq!(actions.len(), Action::ALL.len(), "one HostAction per Action");
        for (host_action, (name, row)) in actions.iter().zip(table) {
            assert_eq!(host_action.action(), name);
            for (state, want) in STATES.into_iter().zip(row) {
                assert_eq!(host_action.allowed_in(state), want, "{name:?} in {state:?}");
                assert_eq!(name.allowed_in(state), want, "{name:?} in {state:?}");
            }
        }
    }

    #[test]
    fn host_actions_are_tagged_by_their_action_name() {
        for a in one_of_each() {
            let v = serde_json::to_value(&a).unwrap();
            assert_eq!(v["action"], serde_json::to_value(a.action()).unwrap());
            assert_eq!(v["action"], a.action().name());
            assert_eq!(serde_json::from_value::<HostAction>(v).unwrap(), a);
        }
    }
}
