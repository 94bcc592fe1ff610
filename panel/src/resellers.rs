//! Resellers: what they pay (wholesale prices), what they may hold (quotas), and the services
//! behind the reseller API: their customers (sub-accounts) and their servers. Every function
//! takes the caller's [`Tenant`]: an admin sees everything, a reseller only its own, and what
//! it may not see is "not found", never "forbidden".

pub mod customers;
pub mod servers;

use crate::api_keys::Tenant;
use crate::billing::BillingError;
use crate::db::resellers as sql;
use sqlx::PgPool;
use uuid::Uuid;

pub use sql::{QuotaUse, TermsRow as Terms};

/// Retail less the discount in basis points, the price rounded down so the reseller never pays
/// more than the rate it was promised. Integer arithmetic: money is minor units.
pub fn wholesale_price(retail_minor: i64, discount_bp: i32) -> i64 {
    let bp = i64::from(discount_bp.clamp(0, 10_000));
    retail_minor * (10_000 - bp) / 10_000
}

#[derive(Debug, thiserror::Error)]
pub enum ResellerError {
    /// A field of the request the caller must fix.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// The resource does not exist or belongs to someone else (the same answer for both).
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("this would exceed the {quota} quota: limit {limit}, in use {used}, this request needs {requested}")]
    Quota { quota: &'static str, limit: i64, used: i64, requested: i64 },
    /// The request is valid but the resource's state does not allow it now.
    #[error("{0}")]
    Conflict(String),
    /// The payer has overdue invoices: nothing new or bigger until they are paid.
    #[error("{0}")]
    Overdue(crate::billing::Overdue),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl From<crate::access::AccessError> for ResellerError {
    fn from(e: crate::access::AccessError) -> Self {
        use crate::access::AccessError as A;
        match e {
            A::Db(e) => ResellerError::Db(e),
            e if e.is_user_error() => ResellerError::Invalid { field: e.field(), message: e.to_string() },
            e => ResellerError::Conflict(e.to_string()),
        }
    }
}

impl From<BillingError> for ResellerError {
    fn from(e: BillingError) -> Self {
        match e {
            BillingError::Db(e) => ResellerError::Db(e),
            BillingError::Invalid(m) => ResellerError::Invalid { field: "plan", message: m },
            BillingError::Overdue(o) => ResellerError::Overdue(o),
            BillingError::SubscriptionNotFound => ResellerError::Conflict("this server has no subscription to bill".into()),
            other => ResellerError::Conflict(other.to_string()),
        }
    }
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> ResellerError {
    ResellerError::Invalid { field, message: message.into() }
}

/// What one server (or a change of plan) adds to the quota use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    pub servers: i64,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub disk_gib: i64,
}

/// Refuses an addition that would take any quota past its limit, naming the first one.
/// Shrinking (a negative footprint) is always allowed, even above a lowered quota.
pub fn check_quota(terms: &Terms, used: &QuotaUse, add: Footprint) -> Result<(), ResellerError> {
    let checks = [
        ("servers", i64::from(terms.max_servers), used.servers, add.servers),
        ("vcpus", i64::from(terms.max_vcpus), used.vcpus, add.vcpus),
        ("memory_mib", terms.max_memory_mib, used.memory_mib, add.memory_mib),
        ("disk_gib", terms.max_disk_gib, used.disk_gib, add.disk_gib),
    ];
    for (quota, limit, used, requested) in checks {
        if requested > 0 && used + requested > limit {
            return Err(ResellerError::Quota { quota, limit, used, requested });
        }
    }
    Ok(())
}

/// A reseller's quotas and what it uses now.
pub async fn quota(pool: &PgPool, reseller: Uuid) -> Result<(Terms, QuotaUse), ResellerError> {
    Ok((sql::terms(pool, reseller).await?, sql::quota_use(pool, reseller).await?))
}

/// The discount a tenant buys at: a reseller's, or none for an admin.
pub async fn discount_for(pool: &PgPool, tenant: Tenant) -> Result<i32, ResellerError> {
    Ok(match tenant {
        Tenant::All => 0,
        Tenant::Reseller(r) => sql::terms(pool, r).await?.discount_bp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wholesale_rounds_down_and_stays_in_range() {
        assert_eq!(wholesale_price(1000, 2000), 800);
        assert_eq!(wholesale_price(999, 2500), 749); // 749.25 → 749: the reseller never pays more
        assert_eq!(wholesale_price(1, 1), 0);
        assert_eq!(wholesale_price(1000, 0), 1000);
        assert_eq!(wholesale_price(1000, 10_000), 0);
        assert_eq!(wholesale_price(1000, 20_000), 0);
    }

    #[test]
    fn quota_names_the_first_limit_crossed_with_numbers() {
        let terms = Terms { discount_bp: 0, max_servers: 2, max_vcpus: 4, max_memory_mib: 4096, max_disk_gib: 100 };
        let used = QuotaUse { servers: 1, vcpus: 3, memory_mib: 1024, disk_gib: 10 };
        let one = Footprint { servers: 1, vcpus: 2, memory_mib: 1024, disk_gib: 10 };
        match check_quota(&terms, &used, one) {
            Err(ResellerError::Quota { quota: "vcpus", limit: 4, used: 3, requested: 2 }) => {}
            other => panic!("expected the vCPU quota, got {other:?}"),
        }
        assert!(check_quota(&terms, &used, Footprint { servers: 1, vcpus: 1, memory_mib: 3072, disk_gib: 90 }).is_ok());
        let shrink = Footprint { servers: 0, vcpus: -2, memory_mib: -512, disk_gib: 0 };
        assert!(check_quota(&terms, &QuotaUse { servers: 9, vcpus: 9, memory_mib: 9999, disk_gib: 999 }, shrink).is_ok());
    }
}
