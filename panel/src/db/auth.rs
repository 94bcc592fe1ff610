//! SQL for sign-in state: `sessions`, `account_tokens`, `login_failures`, and the account
//! columns the web layer reads (status, role, password hash, TOTP).

use super::Tx;
use crate::accounts::{AccountStatus, Role};
use crate::auth::TokenPurpose;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// What the web layer needs to know about an account to sign it in or show its pages.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AccountAuth {
    pub id: Uuid,
    pub role: Role,
    pub email: String,
    pub status: AccountStatus,
    pub password_hash: Option<String>,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub totp_secret: Option<String>,
    pub totp_enabled_at: Option<DateTime<Utc>>,
    pub display_name: String,
    pub currency: String,
    pub time_zone: String,
}

const ACCOUNT_COLUMNS: &str = "id, role, email, status, password_hash, \
    email_verified_at, totp_secret, totp_enabled_at, display_name, currency, time_zone";

pub async fn account_by_email(pool: &PgPool, email: &str) -> Result<Option<AccountAuth>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email = $1 AND reseller_id IS NULL"))
        .bind(email)
        .fetch_optional(pool)
        .await
}

pub async fn account_by_id(pool: &PgPool, id: Uuid) -> Result<Option<AccountAuth>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1")).bind(id).fetch_optional(pool).await
}

/// A new customer awaiting email verification. `None` if the address is taken.
pub async fn insert_customer(
    tx: &mut Tx<'_>,
    email: &str,
    password_hash: &str,
    display_name: &str,
    currency: &str,
    country: Option<&str>,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO accounts (role, email, password_hash, status, display_name, currency, country) \
         VALUES ('customer', $1, $2, 'pending_verification', $3, $4, $5) \
         ON CONFLICT (email) WHERE reseller_id IS NULL DO NOTHING RETURNING id",
    )
    .bind(email)
    .bind(password_hash)
    .bind(display_name)
    .bind(currency)
    .bind(country)
    .fetch_optional(&mut **tx)
    .await
}

pub async fn mark_verified(tx: &mut Tx<'_>, account: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE accounts SET email_verified_at = COALESCE(email_verified_at, now()), \
         status = CASE WHEN status = 'pending_verification' THEN 'active'::account_status ELSE status END \
         WHERE id = $1",
    )
    .bind(account)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn set_password(tx: &mut Tx<'_>, account: Uuid, hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts SET password_hash = $2 WHERE id = $1").bind(account).bind(hash).execute(&mut **tx).await?;
    Ok(())
}

/// The profile; a VAT ID is stored with the time its format was checked (now), or cleared.
///
/// Its tax facts change only while no invoice of the account is being written: after the
/// update it waits for the account's tax lock (see [`super::invoices::hold_tax_facts`]), so an
/// invoice computes its rate and records its treatment from the same facts. Taken after the
/// row lock, and held by nothing else it waits for, it cannot deadlock.
pub async fn set_profile(
    pool: &PgPool,
    account: Uuid,
    name: &str,
    country: Option<&str>,
    time_zone: &str,
    address: &str,
    vat_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE accounts SET display_name = $2, country = $3, time_zone = $4, address = $5,
                vat_id_checked_at = CASE WHEN $6 IS NULL THEN NULL WHEN vat_id IS NOT DISTINCT FROM $6 THEN vat_id_checked_at ELSE now() END,
                vat_id = $6
          WHERE id = $1",
    )
        .bind(account)
        .bind(name)
        .bind(country)
        .bind(time_zone)
        .bind(address)
        .bind(vat_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('vessel-tax:' || $1, 0))").bind(account).execute(&mut *tx).await?;
    tx.commit().await
}

pub async fn country_of(pool: &PgPool, account: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT country FROM accounts WHERE id = $1").bind(account).fetch_one(pool).await
}

/// Stores a new (not yet enabled) TOTP secret; enrolment starts over.
pub async fn set_totp_secret(pool: &PgPool, account: Uuid, secret: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts SET totp_secret = $2, totp_enabled_at = NULL, totp_last_step = NULL WHERE id = $1")
        .bind(account)
        .bind(secret)
        .execute(pool)
        .await?;
    Ok(())
}

/// Records that the code of `step` was used; false if that step (or a later one) already was,
/// so a code cannot be replayed, even by two concurrent log-ins.
pub async fn use_totp_step(pool: &PgPool, account: Uuid, step: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE accounts SET totp_last_step = $2 WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)")
        .bind(account)
        .bind(step)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Turns two-factor on with its recovery codes, in one transaction, spending the code's
/// `step`: only while enrolment with `secret` is in progress and the step is unused (false
/// otherwise, and nothing changes).
pub async fn enable_totp(pool: &PgPool, account: Uuid, secret: &str, step: i64, recovery_hashes: &[String]) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let r = sqlx::query(
        "UPDATE accounts SET totp_enabled_at = now(), totp_last_step = $3 \
         WHERE id = $1 AND totp_secret = $2 AND totp_enabled_at IS NULL AND (totp_last_step IS NULL OR totp_last_step < $3)",
    )
    .bind(account)
    .bind(secret)
    .bind(step)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM totp_recovery_codes WHERE account_id = $1").bind(account).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO totp_recovery_codes (account_id, code_sha256) SELECT $1, unnest($2)")
        .bind(account)
        .bind(recovery_hashes)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn disable_totp(pool: &PgPool, account: Uuid) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE accounts SET totp_secret = NULL, totp_enabled_at = NULL WHERE id = $1").bind(account).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM totp_recovery_codes WHERE account_id = $1").bind(account).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Replaces an account's recovery codes (only while two-factor is on: false otherwise).
pub async fn replace_recovery_codes(pool: &PgPool, account: Uuid, hashes: &[String]) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let on: Option<Uuid> = sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1 AND totp_enabled_at IS NOT NULL FOR UPDATE")
        .bind(account)
        .fetch_optional(&mut *tx)
        .await?;
    if on.is_none() {
        return Ok(false);
    }
    sqlx::query("DELETE FROM totp_recovery_codes WHERE account_id = $1").bind(account).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO totp_recovery_codes (account_id, code_sha256) SELECT $1, unnest($2)")
        .bind(account)
        .bind(hashes)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Uses a recovery code up: true only for the one request that marks it used.
pub async fn use_recovery_code(pool: &PgPool, account: Uuid, hash: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE totp_recovery_codes SET used_at = now() WHERE account_id = $1 AND code_sha256 = $2 AND used_at IS NULL")
        .bind(account)
        .bind(hash)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn recovery_codes_left(pool: &PgPool, account: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM totp_recovery_codes WHERE account_id = $1 AND used_at IS NULL")
        .bind(account)
        .fetch_one(pool)
        .await
}

pub async fn staff_two_factor_required(pool: &PgPool) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query_scalar("SELECT require_staff_two_factor FROM security_settings").fetch_optional(pool).await?.unwrap_or(false))
}

pub async fn set_staff_two_factor_required(tx: &mut Tx<'_>, on: bool) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE security_settings SET require_staff_two_factor = $1, updated_at = now()").bind(on).execute(&mut **tx).await?;
    Ok(())
}

// ------------------------------------------------------------------ sessions

pub async fn insert_session(
    pool: &PgPool,
    token_sha256: &str,
    account: Uuid,
    awaiting_totp: bool,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO sessions (token_sha256, account_id, awaiting_totp, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(token_sha256)
        .bind(account)
        .bind(awaiting_totp)
        .bind(expires_at)
        .execute(pool)
        .await?;
    Ok(())
}

/// The live session for a token hash: (account, awaiting_totp).
pub async fn session(pool: &PgPool, token_sha256: &str) -> Result<Option<(Uuid, bool)>, sqlx::Error> {
    sqlx::query_as("SELECT account_id, awaiting_totp FROM sessions WHERE token_sha256 = $1 AND expires_at > now()")
        .bind(token_sha256)
        .fetch_optional(pool)
        .await
}

pub async fn delete_session(pool: &PgPool, token_sha256: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE token_sha256 = $1").bind(token_sha256).execute(pool).await?;
    Ok(())
}

/// Signs an account out everywhere (password reset, suspension).
pub async fn delete_sessions_of(tx: &mut Tx<'_>, account: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE account_id = $1").bind(account).execute(&mut **tx).await?;
    Ok(())
}

/// Forgets what can no longer matter: expired sessions, tokens expired or used a day ago,
/// failures older than the rate-limit window. Returns the rows removed.
pub async fn prune(pool: &PgPool, window_secs: i64) -> Result<u64, sqlx::Error> {
    let mut n = sqlx::query("DELETE FROM sessions WHERE expires_at <= now()").execute(pool).await?.rows_affected();
    n += sqlx::query("DELETE FROM account_tokens WHERE expires_at <= now() - interval '1 day' OR used_at <= now() - interval '1 day'")
        .execute(pool)
        .await?
        .rows_affected();
    n += sqlx::query("DELETE FROM login_failures WHERE at <= now() - make_interval(secs => $1)")
        .bind(window_secs as f64)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(n)
}

// ------------------------------------------------------------------ mailed tokens

pub async fn insert_token(
    tx: &mut Tx<'_>,
    token_sha256: &str,
    account: Uuid,
    purpose: TokenPurpose,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO account_tokens (token_sha256, account_id, purpose, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(token_sha256)
    .bind(account)
    .bind(purpose)
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Uses a token once: only the first caller of an unexpired, unused token gets the account.
pub async fn consume_token(tx: &mut Tx<'_>, token_sha256: &str, purpose: TokenPurpose) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE account_tokens SET used_at = now() \
         WHERE token_sha256 = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now() \
         RETURNING account_id",
    )
    .bind(token_sha256)
    .bind(purpose)
    .fetch_optional(&mut **tx)
    .await
}

/// Is the token there, unused and unexpired? (For showing the form before it is used.)
pub async fn token_is_live(pool: &PgPool, token_sha256: &str, purpose: TokenPurpose) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM account_tokens WHERE token_sha256 = $1 \
         AND purpose = $2 AND used_at IS NULL AND expires_at > now())",
    )
    .bind(token_sha256)
    .bind(purpose)
    .fetch_one(pool)
    .await
}

/// Older tokens of the same purpose stop working when a new one is mailed.
pub async fn retire_tokens(tx: &mut Tx<'_>, account: Uuid, purpose: TokenPurpose) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE account_tokens SET used_at = now() \
         WHERE account_id = $1 AND purpose = $2 AND used_at IS NULL",
    )
    .bind(account)
    .bind(purpose)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

// ------------------------------------------------------------------ login rate limits

pub async fn clear_failures(pool: &PgPool, scope: &str, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_failures WHERE scope = $1 AND key = $2").bind(scope).bind(key).execute(pool).await?;
    Ok(())
}

/// One limit on log-in attempts: at most `max` failures of `scope`/`key` in the window.
pub struct AttemptLimit<'a> {
    pub scope: &'static str,
    pub key: &'a str,
    pub max: i64,
}

/// Reserves one attempt under every limit *before* the password is checked, atomically: each
/// key is serialised by a transaction-scoped advisory lock (always taken in the order given,
/// so two requests never wait on each other crosswise), counted, and — if none is full — a
/// failure row is written for each. `Err((scope, oldest))` names the first full limit and
/// reserves nothing. The caller deletes the rows ([`release_attempt`]) when the password was
/// right. So a burst of parallel guesses checks at most `max` passwords, not all of them.
pub async fn reserve_attempt(
    pool: &PgPool,
    limits: &[AttemptLimit<'_>],
    window_secs: i64,
) -> Result<Result<Vec<i64>, (&'static str, Option<DateTime<Utc>>)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    for l in limits {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0))")
            .bind(l.scope)
            .bind(l.key)
            .execute(&mut *tx)
            .await?;
        let (n, oldest): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT count(*), min(at) FROM login_failures WHERE scope = $1 AND key = $2 AND at > now() - make_interval(secs => $3)",
        )
        .bind(l.scope)
        .bind(l.key)
        .bind(window_secs as f64)
        .fetch_one(&mut *tx)
        .await?;
        if n >= l.max {
            tx.rollback().await?;
            return Ok(Err((l.scope, oldest)));
        }
    }
    let mut ids = Vec::with_capacity(limits.len());
    for l in limits {
        let id: i64 = sqlx::query_scalar("INSERT INTO login_failures (scope, key) VALUES ($1, $2) RETURNING id")
            .bind(l.scope)
            .bind(l.key)
            .fetch_one(&mut *tx)
            .await?;
        ids.push(id);
    }
    tx.commit().await?;
    Ok(Ok(ids))
}

/// Gives back reserved attempts that turned out not to be failures (the password was right).
pub async fn release_attempt(pool: &PgPool, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_failures WHERE id = ANY($1)").bind(ids).execute(pool).await?;
    Ok(())
}

/// Keeps a new address aside until the link mailed to it is followed.
pub async fn set_pending_email(tx: &mut Tx<'_>, account: Uuid, email: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts SET pending_email = $2 WHERE id = $1").bind(account).bind(email).execute(&mut **tx).await?;
    Ok(())
}

/// The kept-aside address becomes the account's (verified); false if there is none.
pub async fn apply_pending_email(tx: &mut Tx<'_>, account: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE accounts SET email = pending_email, pending_email = NULL, email_verified_at = now() WHERE id = $1 AND pending_email IS NOT NULL",
    )
    .bind(account)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// (email, display name) of an account, in the caller's transaction.
pub async fn account_by_id_tx(tx: &mut Tx<'_>, id: Uuid) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT email, display_name FROM accounts WHERE id = $1").bind(id).fetch_optional(&mut **tx).await
}
