//! What admins do to customers: suspend and reactivate them (with their servers), help a
//! stuck sign-up.

use super::{invalid, AdminError, By};
use crate::accounts::{AccountStatus, Email};
use crate::audit;
use crate::db::{admin as sql_admin, auth as sql_auth};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// Suspends a customer (with a reason, mailed to them and audited) or reactivates one. A
/// suspension signs them out and suspends every live server of theirs through [`crate::vps`]
/// (each remembers the state it had); reactivation returns each server to that state. All in
/// one transaction.
pub async fn set_customer_suspended(
    pool: &PgPool,
    by: By,
    id: Uuid,
    suspend: bool,
    reason: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<usize, AdminError> {
    let reason = reason.trim();
    if suspend && (reason.is_empty() || reason.chars().count() > 500) {
        return Err(invalid("reason", "say why, in 1 to 500 characters: the customer is mailed this"));
    }
    let mut tx = pool.begin().await?;
    let (from, to) =
        if suspend { (AccountStatus::Active, AccountStatus::Suspended) } else { (AccountStatus::Suspended, AccountStatus::Active) };
    if !sql_admin::set_status(&mut tx, id, from, to).await? {
        return Err(AdminError::Invalid {
            field: "status".into(),
            message: format!("only an {from} customer can be {}", if suspend { "suspended" } else { "unsuspended" }),
        });
    }
    use crate::vps::{Request, Target};
    let servers = if suspend {
        sql_auth::delete_sessions_of(&mut tx, id).await?;
        crate::vps::request_all(&mut tx, Target::Account(id.into()), Request::AccountSuspend, now).await?
    } else {
        crate::vps::request_all(&mut tx, Target::Account(id.into()), Request::AccountResume, now).await?
    };
    if let Some(a) = sql_auth::account_by_id_tx(&mut tx, id).await? {
        if let Ok(email) = Email::parse(&a.0) {
            let (template, data) = if suspend {
                ("account_suspended", json!({ "name": a.1, "reason": reason }))
            } else {
                ("account_reactivated", json!({ "name": a.1 }))
            };
            crate::outbox::enqueue(&mut tx, &email, template, data, None).await?;
        }
    }
    audit::record(
        &mut *tx,
        by.actor(),
        if suspend { "customer.suspend" } else { "customer.unsuspend" },
        Some(("account", id.to_string())),
        by.addr,
        json!({ "reason": reason, "servers": servers }),
    )
    .await?;
    tx.commit().await?;
    Ok(servers)
}

/// Marks a stuck sign-up's address as verified (the admin vouches for it), so the customer can
/// log in; its mailed links stop working. Only an account still awaiting verification.
pub async fn mark_customer_verified(pool: &PgPool, by: By, id: Uuid) -> Result<(), AdminError> {
    let mut tx = pool.begin().await?;
    let (email, _) = sql_admin::pending_signup_for_update(&mut tx, id)
        .await?
        .ok_or_else(|| invalid("status", "only a customer awaiting verification can be marked verified"))?;
    sql_auth::mark_verified(&mut tx, id).await?;
    sql_auth::retire_tokens(&mut tx, id, crate::auth::TokenPurpose::VerifyEmail).await?;
    audit::record(&mut *tx, by.actor(), "customer.mark_verified", Some(("account", id.to_string())), by.addr, json!({ "email": email }))
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Mails a stuck sign-up a fresh verification link (older ones stop working).
pub async fn resend_customer_verification(pool: &PgPool, by: By, base_url: &str, id: Uuid) -> Result<(), AdminError> {
    let mut tx = pool.begin().await?;
    let (email, name) = sql_admin::pending_signup_for_update(&mut tx, id)
        .await?
        .ok_or_else(|| invalid("status", "only a customer awaiting verification gets a verification link"))?;
    let email = Email::parse(&email).map_err(|e| invalid("email", e.to_string()))?;
    crate::auth::queue_verification(&mut tx, base_url, id, &email, &name).await?;
    audit::record(
        &mut *tx,
        by.actor(),
        "customer.resend_verification",
        Some(("account", id.to_string())),
        by.addr,
        json!({ "email": email.as_str() }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
