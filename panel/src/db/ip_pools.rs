//! SQL for `ip_pools` and `ip_addresses`.

use super::Tx;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PoolRow {
    pub id: Uuid,
    pub name: String,
    pub network: String,
    pub gateway: String,
    pub host_name: Option<String>,
    /// Its resolvers.
    pub dns: Vec<String>,
    pub total: i64,
    pub free: i64,
}

// `cidr`/`inet` travel as their canonical text (a cast to text, `host()`, a cast to inet): the panel's sqlx
// has no network-type feature, and the pool code parses the text once (`admin`'s CIDR parser).
pub async fn list(pool: &PgPool) -> Result<Vec<PoolRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.id, p.name, p.network::text AS network, host(p.gateway) AS gateway, h.name AS host_name, \
                ARRAY(SELECT host(d) FROM unnest(p.dns) d) AS dns, \
                (SELECT count(*) FROM ip_addresses a WHERE a.pool_id = p.id) AS total, \
                (SELECT count(*) FROM ip_addresses a WHERE a.pool_id = p.id AND a.instance_id IS NULL) AS free \
           FROM ip_pools p LEFT JOIN hosts h ON h.id = p.host_id ORDER BY p.name",
    )
    .fetch_all(pool)
    .await
}

pub async fn insert(
    tx: &mut Tx<'_>,
    name: &str,
    network: &str,
    gateway: &str,
    host: Option<Uuid>,
    nat: bool,
    dns: &[String],
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO ip_pools (name, network, gateway, host_id, nat, dns) VALUES ($1, $2::cidr, $3::inet, $4, $5, $6::inet[]) RETURNING id",
    )
    .bind(name)
    .bind(network)
    .bind(gateway)
    .bind(host)
    .bind(nat)
    .bind(dns)
    .fetch_one(&mut **tx)
    .await
}

/// (network, gateway) of a pool, locked against a concurrent generation.
pub async fn lock(tx: &mut Tx<'_>, id: Uuid) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT network::text, host(gateway) FROM ip_pools WHERE id = $1 FOR UPDATE").bind(id).fetch_optional(&mut **tx).await
}

/// Adds the addresses not there yet; returns how many were added.
pub async fn add_addresses(tx: &mut Tx<'_>, pool_id: Uuid, addrs: &[String]) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO ip_addresses (pool_id, address) SELECT $1, a::inet FROM unnest($2::text[]) AS a \
         ON CONFLICT (address) DO NOTHING",
    )
    .bind(pool_id)
    .bind(addrs)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected())
}
