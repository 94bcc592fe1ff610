//! Typed ids for the panel's rows, so two ids of different meaning cannot be swapped (a
//! subscription's id where an account's is expected does not compile). Each is a `Uuid` on
//! the wire and in PostgreSQL (`#[sqlx(transparent)]`, `#[serde(transparent)]`): rows read
//! and bind them as they are. The VPS's id is core's [`vessel_core::InstanceId`], shared with
//! the hosts.
//!
//! Adopted module by module: billing's suspension and termination, dunning, and the VPS
//! (`instances`, `vps`, the orchestrator); the rest of the panel still passes `Uuid`s and
//! converts at the edge with `.0` / `From`.

use uuid::Uuid;

pub use vessel_core::InstanceId;

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }
    )*};
}

ids! {
    /// A customer's, reseller's or admin's account (`accounts.id`).
    AccountId;
    /// A subscription: one VPS's billing (`subscriptions.id`).
    SubscriptionId;
    /// An invoice or credit note (`invoices.id`).
    InvoiceId;
    /// An order (`orders.id`).
    OrderId;
    /// A host (`hosts.id`).
    HostId;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_its_uuid_on_the_wire() {
        let u = Uuid::new_v4();
        assert_eq!(serde_json::to_string(&AccountId(u)).unwrap(), serde_json::to_string(&u).unwrap());
        assert_eq!(serde_json::from_str::<InvoiceId>(&format!("\"{u}\"")).unwrap(), InvoiceId(u));
        assert_eq!(SubscriptionId(u).to_string(), u.to_string());
    }
}
