//! Typed identifiers shared across the wire.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The id of one VPS. Chosen by the panel before the host is asked, so a retried create
/// can never make a second instance: the host keys every operation by it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(transparent))]
pub struct InstanceId(pub uuid::Uuid);

impl InstanceId {
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// A short, filesystem- and interface-name-safe form (first 12 hex digits), for names
    /// the kernel limits in length (veth names are at most 15 bytes).
    pub fn short(&self) -> String {
        self.0.simple().to_string()[..12].to_string()
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<uuid::Uuid> for InstanceId {
    fn from(id: uuid::Uuid) -> Self {
        Self(id)
    }
}

impl From<InstanceId> for uuid::Uuid {
    fn from(id: InstanceId) -> Self {
        id.0
    }
}

impl FromStr for InstanceId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(Self)
    }
}
