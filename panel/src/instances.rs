//! A customer's VPS as the panel sees them, and the actions they may ask for. An action
//! records the desired state and a durable job; the orchestration makes the host follow.

use crate::db::{instances as sql, jobs, subscriptions as sub_sql};
use crate::clock::Clock;
use serde_json::json;
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
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

pub async fn list_for(pool: &PgPool, customer: Uuid) -> Result<Vec<InstanceRow>, InstanceError> {
    Ok(sql::list_for(pool, customer).await?)
}

pub async fn get_for(pool: &PgPool, customer: Uuid, id: Uuid) -> Result<Option<InstanceRow>, InstanceError> {
    Ok(sql::get(pool, id, Some(customer)).await?)
}

/// A customer asks for start / stop / restart / reinstall of one of their VPS.
pub async fn request_action(pool: &PgPool, clock: &dyn Clock, customer: Uuid, id: Uuid, action: Action) -> Result<(), InstanceError> {
    let now = clock.now();
    let mut tx = pool.begin().await?;
    let (desired, subscription) = sql::lock(&mut tx, id, Some(customer)).await?.ok_or(InstanceError::NotFound)?;
    match desired.as_str() {
        "terminated" => return Err(InstanceError::Terminated),
        "suspended" => return Err(InstanceError::Suspended),
        _ => {}
    }
    if let Some(sub) = subscription {
        if sub_sql::lock(&mut tx, sub, Some(customer)).await?.is_some_and(|s| s.status == "suspended") {
            return Err(InstanceError::Suspended);
        }
    }
    match action {
        Action::Start => sql::set_desired(&mut tx, id, "running", now).await?,
        Action::Stop => sql::set_desired(&mut tx, id, "stopped", now).await?,
        Action::Restart if desired != "running" => return Err(InstanceError::NotRunning),
        Action::Restart | Action::Reinstall => {}
        other => return Err(InstanceError::NotAllowed(other)),
    }
    jobs::enqueue(&mut tx, "instance.action", json!({ "instance_id": id, "action": action }), Some(id), None).await?;
    tx.commit().await?;
    Ok(())
}
