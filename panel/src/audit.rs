//! The audit log: every admin and reseller action, who, what, when and from where.
//! Append-only in the database (a trigger refuses updates and deletes).

use crate::db::audit as sql;
use serde_json::Value;
use std::net::IpAddr;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActorKind {
    Admin,
    Reseller,
    Customer,
    ApiKey,
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Admin => "admin",
            ActorKind::Reseller => "reseller",
            ActorKind::Customer => "customer",
            ActorKind::ApiKey => "api_key",
            ActorKind::System => "system",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Actor {
    pub id: Option<Uuid>,
    pub kind: ActorKind,
}

impl Actor {
    pub const SYSTEM: Actor = Actor { id: None, kind: ActorKind::System };
    pub fn admin(id: Uuid) -> Self {
        Actor { id: Some(id), kind: ActorKind::Admin }
    }
}

/// Records one action. Pass the transaction of the action itself where there is one, so the
/// log and the change commit together.
pub async fn record<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    actor: Actor,
    action: &str,
    target: Option<(&str, String)>,
    remote_addr: Option<IpAddr>,
    details: Value,
) -> Result<(), sqlx::Error> {
    sql::insert(executor, actor.id, actor.kind.as_str(), action, target, remote_addr, details).await
}
