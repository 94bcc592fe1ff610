//! Vessel's shared domain: what a plan promises, how overcommit is expressed, and the one
//! admission rule that both the panel's scheduler and each host's provisioner apply.
//!
//! Nothing here touches a database, HTTP or the kernel, so both deployables can use it and it
//! can be tested exhaustively (see `tests/` and the property tests in [`admission`]).
//! [`wire`] and [`signing`] are the provisioner API's bodies and request signing, shared by both
//! sides of that API.

pub mod access;
pub mod admission;
pub mod firewall;
pub mod hostname;
pub mod ids;
pub mod lifecycle;
pub mod ratio;
pub mod resources;
pub mod signing;
pub mod templates;
pub mod usage;
pub mod wire;

pub use access::{Access, PasswordHash, SshPublicKey};
pub use admission::{admit, Allocation, HostCapacity, HostLoad, Refusal, Resource};
pub use firewall::{Firewall, FirewallRule};
pub use hostname::Hostname;
pub use ids::InstanceId;
pub use lifecycle::{Action, HostAction, InstanceSpec, InstanceState, NetworkSpec};
pub use ratio::Ratio;
pub use resources::{InstanceKind, IoLimits, PlanResources, ResourceError};
pub use usage::Usage;
