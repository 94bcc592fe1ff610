//! What admins do to the catalogue and the accounts: plans (through the same validation and
//! versioning as `plans sync`), hosts, IP pools, OS templates, customers, resellers. Every
//! change is written to the audit log in the transaction that makes it: who, what, and from
//! which address.

pub mod customers;
pub mod hosts;
pub mod invoices;
pub mod plans;
pub mod pools;
pub mod resellers;
pub mod security;
pub mod servers;
pub mod templates;

pub use customers::{mark_customer_verified, resend_customer_verification, set_customer_suspended};
pub use hosts::{save_host, HostForm};
pub use invoices::issue_invoice;
pub use plans::{save_plan, PlanForm};
pub use pools::{create_pool, default_dns, generate_addresses, parse_dns, PoolForm, MAX_DNS, MAX_GENERATE};
pub use resellers::{create_reseller, parse_percent_bp, save_reseller_terms, ResellerForm, ResellerTermsForm};
pub use security::set_staff_two_factor_required;
pub use templates::{create_os_template, set_os_template_enabled, OsTemplateForm};

use crate::audit::Actor;
use std::net::IpAddr;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A field the admin must correct.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("not found")]
    NotFound,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

fn invalid(field: &str, message: impl Into<String>) -> AdminError {
    AdminError::Invalid { field: field.to_string(), message: message.into() }
}

/// Who is acting, and from where (for the audit log).
#[derive(Clone, Copy, Debug)]
pub struct By {
    pub admin: Uuid,
    pub addr: Option<IpAddr>,
}

impl By {
    fn actor(&self) -> Actor {
        Actor::admin(self.admin)
    }
}

fn parse_num<T: std::str::FromStr>(field: &str, v: &str, what: &str) -> Result<T, AdminError> {
    v.trim().parse().map_err(|_| invalid(field, format!("must be {what} (got {:?})", v.trim())))
}

fn opt_num<T: std::str::FromStr>(field: &str, v: &str, what: &str) -> Result<Option<T>, AdminError> {
    if v.trim().is_empty() {
        Ok(None)
    } else {
        parse_num(field, v, what).map(Some)
    }
}

fn checked(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|v| !v.is_empty() && v != "off" && v != "false")
}

fn unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.code().as_deref() == Some("23505"))
}
