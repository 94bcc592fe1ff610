//! The database layer: the pool, the migrations, and every SQL statement of the panel, one
//! submodule per group of tables. Nothing above this layer writes SQL.

pub mod accounts;
pub mod auth;
pub mod catalogue;
pub mod outbox_delivery;
pub mod audit;
pub mod outbox;
pub mod plans;

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

/// A pool that connects lazily, so the panel starts (and `/healthz` says why it is unhealthy)
/// even when the database is briefly away.
pub fn pool(url: &str, max_connections: u32) -> Result<PgPool, DbError> {
    let opts = PgConnectOptions::from_str(url)?.application_name("vessel-panel");
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(opts))
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
