//! SQL for `accounts`.

use super::Tx;
use crate::accounts::{AccountStatus, Role};
use uuid::Uuid;

/// The name of an ISO 3166-1 country code, if it is one.
pub async fn country_name<'e, E: sqlx::PgExecutor<'e>>(e: E, code: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM iso_countries WHERE code = $1").bind(code).fetch_optional(e).await
}

/// Every ISO 3166-1 country, (code, name) by name: what the forms offer.
pub async fn countries<'e, E: sqlx::PgExecutor<'e>>(e: E) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT code, name FROM iso_countries ORDER BY name").fetch_all(e).await
}

/// (address, VAT ID) of an account.
pub async fn tax_facts<'e, E: sqlx::PgExecutor<'e>>(e: E, id: Uuid) -> Result<(String, Option<String>), sqlx::Error> {
    sqlx::query_as("SELECT address, vat_id FROM accounts WHERE id = $1").bind(id).fetch_one(e).await
}

pub async fn find_by_email(tx: &mut Tx<'_>, email: &str) -> Result<Option<(Uuid, Role)>, sqlx::Error> {
    sqlx::query_as("SELECT id, role FROM accounts WHERE email = $1 AND reseller_id IS NULL FOR UPDATE")
        .bind(email)
        .fetch_optional(&mut **tx)
        .await
}

pub async fn insert_admin(tx: &mut Tx<'_>, email: &str, password_hash: &str) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO accounts (role, email, password_hash, email_verified_at, status, display_name) \
         VALUES ('admin', $1, $2, now(), 'active', 'Administrator') RETURNING id",
    )
    .bind(email)
    .bind(password_hash)
    .fetch_one(&mut **tx)
    .await
}

pub async fn set_password(tx: &mut Tx<'_>, id: Uuid, password_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts SET password_hash = $2 WHERE id = $1").bind(id).bind(password_hash).execute(&mut **tx).await?;
    Ok(())
}

/// (role, status, currency) of an account.
pub async fn account_facts<'e, E: sqlx::PgExecutor<'e>>(e: E, id: Uuid) -> Result<Option<(Role, AccountStatus, String)>, sqlx::Error> {
    sqlx::query_as("SELECT role, status, currency FROM accounts WHERE id = $1").bind(id).fetch_optional(e).await
}
