//! The database layer: the pool, the migrations, and every SQL statement of the panel, one
//! submodule per group of tables. Nothing above this layer writes SQL.

pub mod access;
pub mod accounts;
pub mod admin;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod catalogue;
pub mod console;
pub mod dunning;
pub mod firewalls;
pub mod hosts;
pub mod idempotency;
pub mod instances;
pub mod invoices;
pub mod ip_pools;
pub mod jobs;
pub mod ledger;
pub mod metrics;
pub mod os_templates;
pub mod outbox;
pub mod outbox_delivery;
pub mod payments;
pub mod plans;
pub mod resellers;
/// Bulk seeding for benchmarks and crash tests: only with the `test-hooks` feature, so release
/// builds leave it out (the panel's own tests and benches turn it on, see `Cargo.toml`).
#[cfg(feature = "test-hooks")]
pub mod seed;
pub mod subscriptions;
pub mod usage;
pub mod webhooks;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

/// The migrations of `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Tx<'a> = sqlx::Transaction<'a, sqlx::Postgres>;

/// Marks a point in `tx` to roll back to ([`rollback_to`]): what was done and locked after
/// it is undone and unlocked, the rest of the transaction stays. Left in place otherwise (no
/// release: it ends with the transaction, one round trip fewer).
pub async fn savepoint(tx: &mut Tx<'_>, name: &'static str) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("SAVEPOINT {name}")).execute(&mut **tx).await.map(|_| ())
}

pub async fn rollback_to(tx: &mut Tx<'_>, name: &'static str) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("ROLLBACK TO SAVEPOINT {name}")).execute(&mut **tx).await.map(|_| ())
}

/// A pool that connects lazily, so the panel starts (and `/healthz` says why it is unhealthy)
/// even when the database is briefly away.
pub fn pool(url: &str, max_connections: u32) -> Result<PgPool, DbError> {
    let opts = PgConnectOptions::from_str(url)?.application_name("vessel-panel");
    Ok(PgPoolOptions::new().max_connections(max_connections).acquire_timeout(Duration::from_secs(5)).connect_lazy_with(opts))
}

pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Is the database there and answering?
pub async fn ping(pool: &PgPool) -> Result<(), DbError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

/// Counts for the admin dashboard: (label, count, link).
pub async fn admin_stats(pool: &PgPool) -> Result<Vec<(&'static str, i64, &'static str)>, sqlx::Error> {
    let (c, s, h, i, u, o): (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM accounts WHERE role = 'customer'), \
                (SELECT count(*) FROM instances WHERE desired_state <> 'terminated'), \
                (SELECT count(*) FROM hosts WHERE enabled), \
                (SELECT count(*) FROM invoices WHERE status = 'issued'), \
                (SELECT count(*) FROM email_outbox WHERE sent_at IS NULL), \
                (SELECT count(*) FROM plans WHERE orderable)",
    )
    .fetch_one(pool)
    .await?;
    Ok(vec![
        ("Customers", c, "/admin/customers"),
        ("Servers", s, "/admin/customers"),
        ("Enabled hosts", h, "/admin/hosts"),
        ("Unpaid invoices", i, "/admin/invoices"),
        ("Plans on sale", o, "/admin/plans"),
        ("Emails waiting", u, "/admin/emails"),
    ])
}
