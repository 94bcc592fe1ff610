//! A reseller's customers: sub-accounts that never log in here. The reseller creates, renames,
//! suspends and deletes them through the API; their servers are billed to the reseller.

use super::{invalid, ResellerError};
use crate::accounts::{AccountStatus, Email, Role};
use crate::api_keys::{Principal, Tenant};
use crate::audit;
use crate::db::{resellers as sql, Tx};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

pub use sql::CustomerRow;

/// A new customer as the API receives it.
#[derive(Clone, Debug, Default)]
pub struct NewCustomer {
    pub email: String,
    pub name: String,
    pub country: Option<String>,
    /// Admin keys only: the reseller the customer belongs to (absent: a direct customer).
    pub reseller_id: Option<Uuid>,
}

/// A change to a customer; absent fields stay as they are.
#[derive(Clone, Debug, Default)]
pub struct CustomerChange {
    pub name: Option<String>,
    pub country: Option<Option<String>>,
    pub status: Option<String>,
}

fn name(s: &str) -> Result<String, ResellerError> {
    let n = s.trim();
    if n.is_empty() || n.chars().count() > 200 {
        return Err(invalid("name", "give the customer's name (1 to 200 characters)"));
    }
    Ok(n.to_string())
}

async fn country(tx: &mut Tx<'_>, s: Option<&str>) -> Result<Option<String>, ResellerError> {
    match s {
        None => Ok(None),
        Some(c) => crate::tax::check_country(&mut **tx, c).await?.map_err(|e| invalid("country", e.to_string())),
    }
}

/// Creates a customer inside the caller's transaction (the API's idempotency transaction).
pub async fn create(tx: &mut Tx<'_>, who: &Principal, c: NewCustomer) -> Result<CustomerRow, ResellerError> {
    let email = Email::parse(&c.email).map_err(|e| invalid("email", e.to_string()))?;
    let name = name(&c.name)?;
    let country = country(tx, c.country.as_deref()).await?;
    let reseller = match (who.tenant, c.reseller_id) {
        (Tenant::Reseller(r), None) => Some(r),
        (Tenant::Reseller(r), Some(asked)) if asked == r => Some(r),
        (Tenant::Reseller(_), Some(_)) => return Err(invalid("reseller_id", "a reseller key creates customers for its own reseller only")),
        (Tenant::All, asked) => asked,
    };
    let currency = match reseller {
        Some(r) => match crate::db::accounts::account_facts(&mut **tx, r).await? {
            Some((Role::Reseller, _, currency)) => currency,
            _ => return Err(invalid("reseller_id", "no such reseller")),
        },
        None => "EUR".to_string(),
    };
    let row = sql::insert_customer(
        tx,
        &sql::NewCustomer { reseller, email: email.as_str(), name: &name, country: country.as_deref(), currency: &currency },
    )
    .await?
    .ok_or_else(|| invalid("email", "a customer with this email already exists"))?;
    audit::record(
        &mut **tx,
        who.actor(),
        "customer.create",
        Some(("account", row.id.to_string())),
        None,
        who.details(json!({ "email": row.email, "reseller_id": reseller })),
    )
    .await?;
    Ok(row)
}

pub async fn get(pool: &PgPool, tenant: Tenant, id: Uuid) -> Result<CustomerRow, ResellerError> {
    sql::customer(pool, tenant.reseller(), id).await?.ok_or(ResellerError::NotFound("customer"))
}

pub async fn list(
    pool: &PgPool,
    tenant: Tenant,
    email: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<CustomerRow>, ResellerError> {
    let email = email.map(|e| e.trim().to_lowercase());
    Ok(sql::customers(pool, tenant.reseller(), email.as_deref(), after, limit).await?)
}

/// Changes a customer; suspending it suspends its servers, reactivating it brings them back.
pub async fn update(pool: &PgPool, who: &Principal, now: DateTime<Utc>, id: Uuid, c: CustomerChange) -> Result<CustomerRow, ResellerError> {
    let mut tx = pool.begin().await?;
    let cur = sql::lock_customer(&mut tx, who.tenant.reseller(), id).await?.ok_or(ResellerError::NotFound("customer"))?;
    let name = match &c.name {
        Some(n) => name(n)?,
        None => cur.display_name.clone(),
    };
    let country = match &c.country {
        Some(c) => country(&mut tx, c.as_deref()).await?,
        None => cur.country.clone(),
    };
    let status = match c.status.as_deref().map(str::parse) {
        None => cur.status,
        Some(Ok(s @ (AccountStatus::Active | AccountStatus::Suspended))) => s,
        Some(_) => return Err(invalid("status", "a customer is active or suspended (delete it to close it)")),
    };
    // Who holds a suspension: a reseller lifts its own, never the provider's.
    let by_reseller = match (cur.status, status, who.tenant) {
        (AccountStatus::Suspended, AccountStatus::Active, Tenant::Reseller(_)) if !cur.suspended_by_reseller => {
            return Err(ResellerError::Conflict("this customer was suspended by the provider: contact its support".into()))
        }
        (_, AccountStatus::Active, _) => false,
        (AccountStatus::Suspended, AccountStatus::Suspended, _) => cur.suspended_by_reseller,
        (_, _, Tenant::Reseller(_)) => true,
        (_, _, Tenant::All) => false,
    };
    let row = sql::update_customer(&mut tx, id, &name, country.as_deref(), status, by_reseller).await?;
    // A suspended customer's servers are suspended with it, and come back with it.
    match (cur.status, status) {
        (AccountStatus::Active, AccountStatus::Suspended) => {
            super::servers::suspend_with_account(&mut tx, now, id).await?;
        }
        (AccountStatus::Suspended, AccountStatus::Active) => {
            super::servers::resume_with_account(&mut tx, now, id).await?;
        }
        _ => {}
    }
    audit::record(
        &mut *tx,
        who.actor(),
        "customer.update",
        Some(("account", id.to_string())),
        None,
        who.details(json!({ "name": name, "country": country, "status": status })),
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// Closes a customer that has no live server (terminate them first): its history stays, it
/// disappears from the API, and its email may be used again.
pub async fn delete(pool: &PgPool, who: &Principal, id: Uuid) -> Result<(), ResellerError> {
    let mut tx = pool.begin().await?;
    let cur = sql::lock_customer(&mut tx, who.tenant.reseller(), id).await?.ok_or(ResellerError::NotFound("customer"))?;
    let live = sql::live_servers_of(&mut tx, id).await?;
    if live > 0 {
        return Err(ResellerError::Conflict(format!("this customer still has {live} server(s): terminate them first")));
    }
    sql::update_customer(&mut tx, id, &cur.display_name, cur.country.as_deref(), AccountStatus::Closed, false).await?;
    audit::record(&mut *tx, who.actor(), "customer.delete", Some(("account", id.to_string())), None, who.details(json!({}))).await?;
    tx.commit().await?;
    Ok(())
}
