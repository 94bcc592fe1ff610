//! SQL for a reseller's own account as its pages and the admin show it: its terms (wholesale
//! discount and quotas) and what it holds.

use super::Tx;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct TermsRow {
    pub reseller_id: Uuid,
    pub discount_bp: i32,
    pub max_servers: i32,
    pub max_vcpus: i32,
    pub max_memory_mib: i64,
    pub max_disk_gib: i64,
    pub updated_at: DateTime<Utc>,
}

/// The saved terms, or `None` while the reseller runs on the table's defaults.
pub async fn terms(pool: &PgPool, reseller: Uuid) -> Result<Option<TermsRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT reseller_id, discount_bp, max_servers, max_vcpus, max_memory_mib, max_disk_gib, updated_at \
         FROM reseller_terms WHERE reseller_id = $1",
    )
    .bind(reseller)
    .fetch_optional(pool)
    .await
}

/// The table's defaults, for a reseller that has no row yet (one source: the schema).
pub async fn default_terms(pool: &PgPool, reseller: Uuid) -> Result<TermsRow, sqlx::Error> {
    sqlx::query_as(
        "SELECT $1::uuid AS reseller_id, \
           (SELECT column_default FROM information_schema.columns WHERE table_name = 'reseller_terms' AND column_name = 'discount_bp')::int AS discount_bp, \
           (SELECT column_default FROM information_schema.columns WHERE table_name = 'reseller_terms' AND column_name = 'max_servers')::int AS max_servers, \
           (SELECT column_default FROM information_schema.columns WHERE table_name = 'reseller_terms' AND column_name = 'max_vcpus')::int AS max_vcpus, \
           (SELECT column_default FROM information_schema.columns WHERE table_name = 'reseller_terms' AND column_name = 'max_memory_mib')::bigint AS max_memory_mib, \
           (SELECT column_default FROM information_schema.columns WHERE table_name = 'reseller_terms' AND column_name = 'max_disk_gib')::bigint AS max_disk_gib, \
           now() AS updated_at",
    )
    .bind(reseller)
    .fetch_one(pool)
    .await
}

/// Creates the row on first save, updates it after; returns the terms before the change
/// (`None`: there was no row) for the audit log.
pub async fn upsert_terms(tx: &mut Tx<'_>, t: &TermsRow) -> Result<Option<TermsRow>, sqlx::Error> {
    let before: Option<TermsRow> = sqlx::query_as(
        "SELECT reseller_id, discount_bp, max_servers, max_vcpus, max_memory_mib, max_disk_gib, updated_at \
         FROM reseller_terms WHERE reseller_id = $1 FOR UPDATE",
    )
    .bind(t.reseller_id)
    .fetch_optional(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO reseller_terms (reseller_id, discount_bp, max_servers, max_vcpus, max_memory_mib, max_disk_gib) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (reseller_id) DO UPDATE SET discount_bp = EXCLUDED.discount_bp, max_servers = EXCLUDED.max_servers, \
           max_vcpus = EXCLUDED.max_vcpus, max_memory_mib = EXCLUDED.max_memory_mib, max_disk_gib = EXCLUDED.max_disk_gib, \
           updated_at = now()",
    )
    .bind(t.reseller_id)
    .bind(t.discount_bp)
    .bind(t.max_servers)
    .bind(t.max_vcpus)
    .bind(t.max_memory_mib)
    .bind(t.max_disk_gib)
    .execute(&mut **tx)
    .await?;
    Ok(before)
}

/// Whether `id` is a reseller account (locks it, so terms are not saved for an account
/// changing role underneath).
pub async fn is_reseller(tx: &mut Tx<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND role = 'reseller' FOR SHARE)")
        .bind(id)
        .fetch_one(&mut **tx)
        .await
}

/// What a reseller's home page counts: (customers, live servers, enabled endpoints, active keys).
pub async fn summary(pool: &PgPool, reseller: Uuid) -> Result<(i64, i64, i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM accounts WHERE reseller_id = $1 AND role = 'customer'), \
                (SELECT count(*) FROM instances i JOIN accounts a ON a.id = i.account_id \
                  WHERE a.reseller_id = $1 AND i.desired_state <> 'terminated'), \
                (SELECT count(*) FROM webhook_endpoints WHERE account_id = $1 AND enabled), \
                (SELECT count(*) FROM api_keys WHERE account_id = $1 AND revoked_at IS NULL)",
    )
    .bind(reseller)
    .fetch_one(pool)
    .await
}
