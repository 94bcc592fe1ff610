//! Each server's inbound firewall (issue 20, item 1): the customer (pages) or their reseller
//! (API) replaces the whole ordered list and default verdict at once; the panel stores it
//! (`db::firewalls`), queues [`Job::Firewall`] in the same transaction, and the job puts it on
//! the server's host (`PUT /v1/instances/{id}/firewall`). A create carries the firewall in the
//! instance spec, and the reconciler queues the job again whenever a host reports a firewall
//! that is not the panel's, so the host always converges on what is stored here.
//!
//! The rules themselves are core's [`Firewall`]: a value of it is already valid.

use crate::audit::{self, Actor};
use crate::db::{firewalls as sql, Tx};
use crate::ids::InstanceId;
use crate::jobs::{self, Job};
use crate::vps::{self, DesiredState, Scope, Target};
use sqlx::PgPool;
use vessel_core::Firewall;

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// No such server, or not the caller's (the same answer for both).
    #[error("no such server")]
    NotFound,
    #[error("this server is terminated")]
    Terminated,
    #[error(transparent)]
    Invalid(#[from] vessel_core::firewall::FirewallError),
    /// A line of the page's rule list that does not parse.
    #[error("line {line}: {error}")]
    BadLine { line: usize, error: vessel_core::firewall::FirewallError },
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl FirewallError {
    /// The caller's mistake (a page saying what to fix, a 4xx), not ours.
    pub fn is_user_error(&self) -> bool {
        matches!(self, FirewallError::Invalid(_) | FirewallError::BadLine { .. } | FirewallError::Terminated)
    }
}

/// The server's firewall as `scope` may see it (the open default when it never had one).
pub async fn get(pool: &PgPool, scope: Scope, id: InstanceId) -> Result<Firewall, FirewallError> {
    let mut tx = pool.begin().await?;
    vps::lock(&mut tx, Target::Id(id, scope)).await?.into_iter().next().ok_or(FirewallError::NotFound)?;
    let fw = sql::get(&mut *tx, id).await?.unwrap_or_default();
    tx.commit().await?;
    Ok(fw)
}

/// Replaces the server's firewall in the caller's transaction and queues its delivery to the
/// host. The server is locked (subscription, then instance) as every change to a VPS is.
pub async fn set(tx: &mut Tx<'_>, scope: Scope, actor: Actor, id: InstanceId, firewall: &Firewall) -> Result<(), FirewallError> {
    let v = vps::lock(tx, Target::Id(id, scope)).await?.into_iter().next().ok_or(FirewallError::NotFound)?;
    if v.desired == DesiredState::Terminated {
        return Err(FirewallError::Terminated);
    }
    sql::put(tx, id, firewall).await?;
    jobs::enqueue(tx, Job::Firewall { instance_id: id }).await?;
    audit::record(
        &mut **tx,
        actor,
        "server.firewall",
        Some(("instance", id.to_string())),
        None,
        serde_json::json!({ "default_policy": firewall.default_policy().as_str(), "rules": firewall.rules().len() }),
    )
    .await?;
    Ok(())
}

/// [`set`] in a transaction of its own (the customer's page).
pub async fn set_now(pool: &PgPool, scope: Scope, actor: Actor, id: InstanceId, firewall: &Firewall) -> Result<(), FirewallError> {
    let mut tx = pool.begin().await?;
    set(&mut tx, scope, actor, id, firewall).await?;
    tx.commit().await?;
    Ok(())
}
