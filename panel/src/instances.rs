//! A customer's VPS as the panel sees them, and the actions they may ask for. An action
//! records the desired state and a durable job; the orchestration makes the host follow.

use crate::clock::Clock;
use crate::db::instances as sql;
use crate::vps::{self, Refusal, Request, Scope, VpsError};
use sqlx::PgPool;
use uuid::Uuid;
use vessel_core::Action;

pub use sql::InstanceRow;

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// Also what another customer's VPS looks like: no leak that it exists.
    #[error("no such VPS")]
    NotFound,
    #[error("this VPS is suspended for an overdue invoice: pay it and the VPS starts again")]
    Suspended,
    #[error("this VPS is terminated")]
    Terminated,
    #[error("this VPS is not running: start it instead")]
    NotRunning,
    #[error("{0:?} is not an action customers can ask for")]
    NotAllowed(Action),
    #[error(transparent)]
    Billing(#[from] crate::billing::BillingError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

pub async fn list_for(pool: &PgPool, customer: Uuid) -> Result<Vec<InstanceRow>, InstanceError> {
    Ok(sql::list_for(pool, customer).await?)
}

pub async fn get_for(pool: &PgPool, customer: Uuid, id: Uuid) -> Result<Option<InstanceRow>, InstanceError> {
    Ok(sql::get(pool, id, Some(customer)).await?)
}

/// A customer asks for start / stop / restart / reinstall of one of their VPS (the rules and
/// the lock order are [`crate::vps`]'s).
pub async fn request_action(pool: &PgPool, clock: &dyn Clock, customer: Uuid, id: Uuid, action: Action) -> Result<(), InstanceError> {
    let request = match action {
        Action::Start => Request::Start,
        Action::Stop => Request::Stop,
        Action::Restart => Request::Restart,
        Action::Reinstall => Request::Reinstall,
        other => return Err(InstanceError::NotAllowed(other)),
    };
    let mut tx = pool.begin().await?;
    vps::request(&mut tx, id, Scope::customer(customer), request, clock.now()).await?;
    tx.commit().await?;
    Ok(())
}

/// A customer ends one of their VPS now: the VPS and its subscription are terminated and the
/// unused part of the period comes back as a credit note, by the one rule
/// ([`crate::subscriptions::end_by_owner`]; the reseller API's `terminate` does the same).
/// Locks in the one order: the customer's balance row, the subscription, the instance.
/// Returns the amount given back (before tax).
pub async fn terminate_now(pool: &PgPool, clock: &dyn Clock, customer: Uuid, id: Uuid) -> Result<i64, InstanceError> {
    let now = clock.now();
    let scope = Scope::customer(customer);
    let mut tx = pool.begin().await?;
    if let Some(sub) = vps::subscription_of(&mut tx, id, scope).await? {
        if let Some((payer, currency)) = crate::db::subscriptions::payer_of(&mut tx, sub, None).await? {
            crate::billing::ledger::lock_credit(&mut tx, payer, &currency).await?;
        }
    }
    let server = vps::request(&mut tx, id, scope, Request::Terminate, now).await?;
    let refund = crate::subscriptions::end_by_owner(&mut tx, &server, now).await?;
    tx.commit().await?;
    Ok(refund.map(|(_, a)| a).unwrap_or(0))
}

/// How a customer is told (every suspension reads as billing's to them, as before).
impl From<VpsError> for InstanceError {
    fn from(e: VpsError) -> Self {
        match e {
            VpsError::NotFound => InstanceError::NotFound,
            VpsError::Db(e) => InstanceError::Db(e),
            VpsError::Refused(Refusal::Terminated) => InstanceError::Terminated,
            VpsError::Refused(Refusal::NotRunning) => InstanceError::NotRunning,
            VpsError::Refused(_) => InstanceError::Suspended,
        }
    }
}
