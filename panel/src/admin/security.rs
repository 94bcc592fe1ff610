//! The provider's security rules for staff.

use super::{AdminError, By};
use crate::audit;
use crate::db::auth as sql_auth;
use serde_json::json;
use sqlx::PgPool;

/// The provider's rule that admins and resellers must use two-factor (audited). Accounts
/// without it are sent to set it up before they reach their areas.
pub async fn set_staff_two_factor_required(pool: &PgPool, by: By, on: bool) -> Result<(), AdminError> {
    let mut tx = pool.begin().await?;
    sql_auth::set_staff_two_factor_required(&mut tx, on).await?;
    audit::record(&mut *tx, by.actor(), "security.staff_two_factor", None, by.addr, json!({ "required": on })).await?;
    tx.commit().await?;
    Ok(())
}
