//! SQL for the admin's views of accounts (customers, resellers) and the audit log.

use super::Tx;
use crate::accounts::{AccountStatus, Role};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AccountRow {
    pub id: Uuid,
    pub role: Role,
    pub email: String,
    pub display_name: String,
    pub status: AccountStatus,
    pub country: Option<String>,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub reseller_email: Option<String>,
}

const COLUMNS: &str = "a.id, a.role, a.email, a.display_name, a.status, a.country, a.currency, \
    a.created_at, r.email AS reseller_email";

pub async fn accounts_by_role(pool: &PgPool, role: Role) -> Result<Vec<AccountRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM accounts a LEFT JOIN accounts r ON r.id = a.reseller_id \
         WHERE a.role = $1 ORDER BY a.created_at DESC LIMIT 500"
    ))
    .bind(role)
    .fetch_all(pool)
    .await
}

pub async fn account(pool: &PgPool, id: Uuid, role: Role) -> Result<Option<AccountRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM accounts a LEFT JOIN accounts r ON r.id = a.reseller_id WHERE a.id = $1 AND a.role = $2"
    ))
    .bind(id)
    .bind(role)
    .fetch_optional(pool)
    .await
}

/// A customer still awaiting verification, locked: (email, display name).
pub async fn pending_signup_for_update(tx: &mut Tx<'_>, id: Uuid) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT email, display_name FROM accounts WHERE id = $1 AND role = 'customer' AND status = 'pending_verification' FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
}

/// Moves a customer between active and suspended; false if it is not in `from`.
pub async fn set_status(tx: &mut Tx<'_>, id: Uuid, from: AccountStatus, to: AccountStatus) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE accounts SET status = $3, suspended_by_reseller = false
          WHERE id = $1 AND role = 'customer' AND status = $2",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn insert_reseller(tx: &mut Tx<'_>, email: &str, name: &str, password_hash: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO accounts (role, email, display_name, password_hash, status, email_verified_at) \
         VALUES ('reseller', $1, $2, $3, 'active', now()) ON CONFLICT (email) WHERE reseller_id IS NULL DO NOTHING RETURNING id",
    )
    .bind(email)
    .bind(name)
    .bind(password_hash)
    .fetch_optional(&mut **tx)
    .await
}

pub async fn customers_of(pool: &PgPool, reseller: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM accounts WHERE reseller_id = $1").bind(reseller).fetch_one(pool).await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_email: Option<String>,
    pub actor_kind: String,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub remote_addr: Option<String>,
    pub details: serde_json::Value,
}

pub async fn audit_recent(pool: &PgPool, limit: i64) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT l.id, l.at, a.email AS actor_email, l.actor_kind, l.action, l.target_type, l.target_id, \
                host(l.remote_addr) AS remote_addr, l.details \
           FROM audit_log l LEFT JOIN accounts a ON a.id = l.actor_id ORDER BY l.id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}
