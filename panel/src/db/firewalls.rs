//! SQL for each server's inbound firewall (`instance_firewalls`): core's `Firewall` as JSON,
//! read back through its validating deserialiser.

use super::Tx;
use crate::ids::{HostId, InstanceId};
use sqlx::types::Json;
use vessel_core::Firewall;

/// The server's firewall; `None` when it never had one (the open default).
pub async fn get<'e, E: sqlx::PgExecutor<'e>>(e: E, instance: InstanceId) -> Result<Option<Firewall>, sqlx::Error> {
    let row: Option<Json<Firewall>> =
        sqlx::query_scalar("SELECT firewall FROM instance_firewalls WHERE instance_id = $1").bind(instance).fetch_optional(e).await?;
    Ok(row.map(|j| j.0))
}

/// Replaces the server's firewall (the caller holds the instance's lock).
pub async fn put(tx: &mut Tx<'_>, instance: InstanceId, firewall: &Firewall) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO instance_firewalls (instance_id, firewall) VALUES ($1, $2)
         ON CONFLICT (instance_id) DO UPDATE SET firewall = EXCLUDED.firewall, updated_at = now()",
    )
    .bind(instance)
    .bind(Json(firewall))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The firewalls of the instances placed on `host` (those without a row are open).
pub async fn on_host<'e, E: sqlx::PgExecutor<'e>>(
    e: E,
    host: HostId,
) -> Result<std::collections::HashMap<InstanceId, Firewall>, sqlx::Error> {
    let rows: Vec<(InstanceId, Json<Firewall>)> = sqlx::query_as(
        "SELECT f.instance_id, f.firewall FROM instance_firewalls f JOIN instances i ON i.id = f.instance_id WHERE i.host_id = $1",
    )
    .bind(host)
    .fetch_all(e)
    .await?;
    Ok(rows.into_iter().map(|(id, j)| (id, j.0)).collect())
}
