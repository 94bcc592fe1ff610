//! Resellers as admins make them, and their terms (wholesale discount, quotas).

use super::{invalid, parse_num, AdminError, By};
use crate::accounts::{hash_password, Email, Password};
use crate::audit;
use crate::db::admin as sql_admin;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResellerForm {
    pub email: String,
    pub name: String,
}

/// Creates a reseller account and, in the same transaction, queues its invitation: its own mail
/// with a single-use link to choose a password, valid `invitation_days` days.
pub async fn create_reseller(pool: &PgPool, by: By, base_url: &str, invitation_days: i64, f: &ResellerForm) -> Result<Uuid, AdminError> {
    let email = Email::parse(&f.email).map_err(|e| invalid("email", e.to_string()))?;
    let name = f.name.trim();
    if name.is_empty() {
        return Err(invalid("name", "the reseller's company or name"));
    }
    let mut tx = pool.begin().await?;
    // Nobody knows this password; the reseller sets their own through the mailed link.
    let hash = hash_password(&Password::generate());
    let id = sql_admin::insert_reseller(&mut tx, email.as_str(), name, &hash)
        .await?
        .ok_or_else(|| invalid("email", "an account with this address exists"))?;
    audit::record(
        &mut *tx,
        by.actor(),
        "reseller.create",
        Some(("account", id.to_string())),
        by.addr,
        json!({ "email": email.as_str(), "name": name }),
    )
    .await?;
    crate::auth::queue_reseller_invitation(&mut tx, base_url, id, &email, name, invitation_days).await.map_err(|e| match e {
        crate::auth::AuthError::Db(e) => AdminError::Db(e),
        other => invalid("email", other.to_string()),
    })?;
    tx.commit().await?;
    Ok(id)
}

/// A reseller's terms as the admin types them: the discount as a percentage with up to two
/// decimals (stored as basis points, so "12.5" is 1250), the quotas as whole numbers.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResellerTermsForm {
    pub discount: String,
    pub max_servers: String,
    pub max_vcpus: String,
    pub max_memory_mib: String,
    pub max_disk_gib: String,
}

/// "12.5" → 1250 basis points; at most two decimals, between 0 and 100.
pub fn parse_percent_bp(field: &str, v: &str) -> Result<i32, AdminError> {
    let bad = || invalid(field, format!("must be a percentage from 0 to 100 with at most two decimals (got {:?})", v.trim()));
    let t = v.trim().trim_end_matches('%').trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty()
        || whole.len() > 3
        || frac.len() > 2
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: i32 = whole.parse().map_err(|_| bad())?;
    let frac: i32 = if frac.is_empty() { 0 } else { format!("{frac:0<2}").parse().map_err(|_| bad())? };
    let bp = whole * 100 + frac;
    if bp > 10_000 {
        return Err(bad());
    }
    Ok(bp)
}

fn quota<T: std::str::FromStr + PartialOrd + Default>(field: &str, v: &str) -> Result<T, AdminError> {
    let n: T = parse_num(field, v, "a whole number, 0 or more")?;
    if n < T::default() {
        return Err(invalid(field, "must be 0 or more"));
    }
    Ok(n)
}

/// Saves a reseller's terms: the row is made on the first save, changed after; the audit log
/// gets the terms before and after, in the same transaction.
pub async fn save_reseller_terms(pool: &PgPool, by: By, reseller: Uuid, f: &ResellerTermsForm) -> Result<(), AdminError> {
    let terms = crate::db::resellers::SavedTerms {
        reseller_id: reseller,
        discount_bp: parse_percent_bp("discount", &f.discount)?,
        max_servers: quota("max_servers", &f.max_servers)?,
        max_vcpus: quota("max_vcpus", &f.max_vcpus)?,
        max_memory_mib: quota("max_memory_mib", &f.max_memory_mib)?,
        max_disk_gib: quota("max_disk_gib", &f.max_disk_gib)?,
        updated_at: chrono::Utc::now(),
    };
    let mut tx = pool.begin().await?;
    if !crate::db::resellers::is_reseller(&mut tx, reseller).await? {
        return Err(AdminError::NotFound);
    }
    let before = crate::db::resellers::upsert_terms(&mut tx, &terms).await?;
    let shape = |t: &crate::db::resellers::SavedTerms| {
        json!({ "discount_bp": t.discount_bp, "max_servers": t.max_servers, "max_vcpus": t.max_vcpus,
                "max_memory_mib": t.max_memory_mib, "max_disk_gib": t.max_disk_gib })
    };
    audit::record(
        &mut *tx,
        by.actor(),
        "reseller.terms",
        Some(("account", reseller.to_string())),
        by.addr,
        json!({ "before": before.as_ref().map(shape), "after": shape(&terms) }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discounts_are_percentages_with_two_decimals() {
        for (v, bp) in [("12.5", 1250), ("12.50", 1250), ("0", 0), ("100", 10000), (" 7.05 % ", 705), ("99.99", 9999), ("3.", 300)] {
            assert_eq!(parse_percent_bp("discount", v).unwrap(), bp, "{v}");
        }
        for v in ["", "-1", "100.01", "12.345", "abc", "1e2", "1000", ".5", "12,5"] {
            assert!(matches!(parse_percent_bp("discount", v), Err(AdminError::Invalid { .. })), "{v}");
        }
    }
}
