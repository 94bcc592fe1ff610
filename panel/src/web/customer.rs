//! The customer's pages: orders, invoices, servers. Everything is looked up *for* the logged-in
//! account, so another customer's id is simply not found (404, never 403).

use super::error::WebError;
use crate::db::auth::AccountAuth;
use actix_web::web;
use sqlx::PgPool;

pub fn configure(_cfg: &mut web::ServiceConfig) {}

/// The account's credit balance, one line per currency it has.
pub async fn credit_lines(_pool: &PgPool, _a: &AccountAuth) -> Result<Vec<String>, WebError> {
    Ok(Vec::new())
}

/// What the admin's customer page shows beyond the account itself.
#[derive(Clone, Debug, Default)]
pub struct AdminCustomerExtra {
    pub credit: Vec<String>,
}

pub async fn admin_customer_extra(pool: &PgPool, _c: &crate::db::admin::AccountRow) -> Result<AdminCustomerExtra, WebError> {
    let _ = pool;
    Ok(AdminCustomerExtra::default())
}
