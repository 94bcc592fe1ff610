//! SQL for `hosts`: joining, placement and addresses (for the orchestration, with the host's
//! secret) and the admin's view and edits (without it).

use super::Tx;
use crate::ids::{AccountId, HostId, InstanceId};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Registers a host an admin expects; it joins later with the token whose hash is kept.
pub async fn insert_pending(
    tx: &mut Tx<'_>,
    name: &str,
    api_url: &str,
    token_sha256: &str,
    expires: DateTime<Utc>,
) -> Result<HostId, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO hosts (name, api_url, cpus, memory_mib, disk_gib, enabled, join_token_sha256, join_token_expires_at)
         VALUES ($1, $2, 1, 1, 1, false, $3, $4) RETURNING id",
    )
    .bind(name)
    .bind(api_url)
    .bind(token_sha256)
    .bind(expires)
    .fetch_one(&mut **tx)
    .await
}

/// Completes a join: the token is used up, the secret set, the capacity reported. Returns
/// the host id, or `None` if no host waits for this token or it has expired.
#[allow(clippy::too_many_arguments)]
pub async fn complete_join(
    tx: &mut Tx<'_>,
    token_sha256: &str,
    api_url: &str,
    secret: &[u8],
    cpus: i32,
    memory_mib: i64,
    disk_gib: i64,
    containers: bool,
    kvm: bool,
    tls_cert_sha256: Option<&str>,
) -> Result<Option<HostId>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE hosts SET join_token_sha256 = NULL, join_token_expires_at = NULL, api_secret = $3, api_url = $2, cpus = $4, memory_mib = $5,
                disk_gib = $6, supports_containers = $7, supports_kvm = $8, enabled = true, reachability = 'reachable',
                last_seen_at = now(), tls_cert_sha256 = $9
          WHERE join_token_sha256 = $1 AND join_token_expires_at > now() RETURNING id",
    )
    .bind(token_sha256)
    .bind(api_url)
    .bind(secret)
    .bind(cpus)
    .bind(memory_mib)
    .bind(disk_gib)
    .bind(containers)
    .bind(kvm)
    .bind(tls_cert_sha256)
    .fetch_optional(&mut **tx)
    .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct HostRow {
    pub id: HostId,
    pub name: String,
    pub api_url: String,
    pub api_secret: Option<Vec<u8>>,
    pub cpus: i32,
    pub memory_mib: i64,
    pub disk_gib: i64,
    pub reserved_cpus: i32,
    pub reserved_memory_mib: i64,
    pub reserved_disk_gib: i64,
    pub reachability: crate::hosts::Reachability,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// The pinned certificate's SHA-256 (hex), if the host sent one at join.
    pub tls_cert_sha256: Option<String>,
}

const HOST: &str = "SELECT id, name, api_url, api_secret, cpus, memory_mib, disk_gib, reserved_cpus, reserved_memory_mib,
        reserved_disk_gib, reachability, last_seen_at, tls_cert_sha256 FROM hosts";

/// Hosts that have joined and are enabled.
pub async fn joined<'e, E: sqlx::PgExecutor<'e>>(e: E) -> Result<Vec<HostRow>, sqlx::Error> {
    sqlx::query_as(&format!("{HOST} WHERE enabled AND api_secret IS NOT NULL ORDER BY name")).fetch_all(e).await
}

pub async fn get<'e, E: sqlx::PgExecutor<'e>>(e: E, id: HostId) -> Result<Option<HostRow>, sqlx::Error> {
    sqlx::query_as(&format!("{HOST} WHERE id = $1")).bind(id).fetch_optional(e).await
}

/// A host locked for a placement, with the address families (4, 6) its usable pools hold.
#[derive(sqlx::FromRow)]
pub struct LockedHost {
    #[sqlx(flatten)]
    pub host: HostRow,
    pub pool_families: Vec<i32>,
}

/// Locks a host row: placements on one host are decided one at a time. In the same round
/// trip, the families of the pools it may take addresses from (a pool's family never changes
/// under a placement; which address is free is decided when one is taken).
pub async fn lock(tx: &mut Tx<'_>, id: HostId) -> Result<Option<LockedHost>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, api_url, api_secret, cpus, memory_mib, disk_gib, reserved_cpus, reserved_memory_mib, reserved_disk_gib,
                reachability, last_seen_at, tls_cert_sha256,
                ARRAY(SELECT DISTINCT family(p.network) FROM ip_pools p WHERE p.host_id = h.id OR p.host_id IS NULL ORDER BY 1) AS pool_families
           FROM hosts h WHERE id = $1 FOR UPDATE OF h",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
}

/// Candidate hosts for an instance of `kind` owned by `account`, in the placement policy's
/// order: first hosts carrying fewer of this customer's VPS (spread), then most free
/// guaranteed memory, then name (stable).
pub async fn candidates(tx: &mut Tx<'_>, kind: &str, account: AccountId) -> Result<Vec<HostId>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH mine AS (
            SELECT host_id, count(*) AS n FROM instances
             WHERE account_id = $2 AND host_id IS NOT NULL AND desired_state <> 'terminated' GROUP BY host_id)
         SELECT h.id FROM hosts h LEFT JOIN mine m ON m.host_id = h.id
          WHERE h.enabled AND h.api_secret IS NOT NULL AND h.reachability <> 'unreachable'
            AND CASE $1 WHEN 'container' THEN h.supports_containers ELSE h.supports_kvm END
          ORDER BY COALESCE(m.n, 0), h.memory_mib - h.reserved_memory_mib - h.guaranteed_memory_mib DESC, h.name",
    )
    .bind(kind)
    .bind(account)
    .fetch_all(&mut **tx)
    .await
}

pub async fn set_reachability(tx: &mut Tx<'_>, id: HostId, reachable: bool, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE hosts SET reachability = CASE WHEN $2 THEN 'reachable' ELSE 'unreachable' END::host_reachability,
                last_seen_at = CASE WHEN $2 THEN $3 ELSE last_seen_at END
          WHERE id = $1",
    )
    .bind(id)
    .bind(reachable)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Takes a free address of `family` (4 or 6) from a pool of this host (first) or a shared
/// pool, for `instance`. Skips addresses another placement is taking.
pub async fn assign_address(
    tx: &mut Tx<'_>,
    host: HostId,
    instance: InstanceId,
    family: i32,
    at: DateTime<Utc>,
) -> Result<Option<(String, i32, String)>, sqlx::Error> {
    sqlx::query_as(
        "WITH pick AS (
            SELECT a.id FROM ip_addresses a JOIN ip_pools p ON p.id = a.pool_id
             WHERE a.instance_id IS NULL AND family(a.address) = $3 AND (p.host_id = $1 OR p.host_id IS NULL)
             ORDER BY (p.host_id IS NULL), a.address LIMIT 1 FOR UPDATE OF a SKIP LOCKED)
         UPDATE ip_addresses a SET instance_id = $2, assigned_at = $4 FROM pick, ip_pools p
          WHERE a.id = pick.id AND p.id = a.pool_id
         RETURNING host(a.address), masklen(p.network), host(p.gateway)",
    )
    .bind(host)
    .bind(instance)
    .bind(family)
    .bind(at)
    .fetch_optional(&mut **tx)
    .await
}

/// An instance's addresses with their pool's prefix and gateway.
/// An instance's addresses: (address, prefix length, gateway, whether its pool is private and
/// masqueraded by the host).
/// One assigned address with its pool's network facts (what the host configures and the
/// server's page and mail show).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AssignedAddress {
    pub address: String,
    pub prefix_len: i32,
    pub gateway: String,
    pub nat: bool,
    /// The pool's resolvers.
    pub dns: Vec<String>,
}

pub async fn addresses_of<'e, E: sqlx::PgExecutor<'e>>(e: E, instance: InstanceId) -> Result<Vec<AssignedAddress>, sqlx::Error> {
    sqlx::query_as(
        "SELECT host(a.address) AS address, masklen(p.network) AS prefix_len, host(p.gateway) AS gateway, p.nat,
                ARRAY(SELECT host(d) FROM unnest(p.dns) d) AS dns
           FROM ip_addresses a JOIN ip_pools p ON p.id = a.pool_id
          WHERE a.instance_id = $1 ORDER BY family(a.address)",
    )
    .bind(instance)
    .fetch_all(e)
    .await
}

pub async fn release_addresses(tx: &mut Tx<'_>, instance: InstanceId) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("UPDATE ip_addresses SET instance_id = NULL, assigned_at = NULL WHERE instance_id = $1")
        .bind(instance)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

// ------------------------------------------------------------------ the admin's view and edits

#[derive(Clone, Debug, Default, sqlx::FromRow)]
/// A host as the admin pages show it: never its secret.
pub struct HostSummary {
    pub id: HostId,
    pub name: String,
    pub api_url: String,
    pub supports_containers: bool,
    pub supports_kvm: bool,
    pub cpus: i32,
    pub memory_mib: i64,
    pub disk_gib: i64,
    pub reserved_cpus: i32,
    pub reserved_memory_mib: i64,
    pub reserved_disk_gib: i64,
    pub enabled: bool,
    pub reachability: crate::hosts::Reachability,
    pub instances: i64,
}

const SUMMARY: &str = "h.id, h.name, h.api_url, h.supports_containers, h.supports_kvm, h.cpus, h.memory_mib, h.disk_gib, \
    h.reserved_cpus, h.reserved_memory_mib, h.reserved_disk_gib, h.enabled, h.reachability, \
    (SELECT COALESCE(sum(l.instances), 0)::bigint FROM host_plan_load l WHERE l.host_id = h.id) AS instances";

/// Every host's id and name, by name (a filter's choices: nothing counted).
pub async fn names(pool: &PgPool) -> Result<Vec<(HostId, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, name FROM hosts ORDER BY name").fetch_all(pool).await
}

pub async fn summaries(pool: &PgPool) -> Result<Vec<HostSummary>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {SUMMARY} FROM hosts h ORDER BY h.name")).fetch_all(pool).await
}

/// Up to `limit` hosts by name, those after `after` (a page of the cockpit).
pub async fn summaries_after(pool: &PgPool, after: Option<&str>, limit: i64) -> Result<Vec<HostSummary>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {SUMMARY} FROM hosts h WHERE $1::text IS NULL OR h.name > $1 ORDER BY h.name LIMIT $2"))
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await
}

pub async fn summary(pool: &PgPool, id: HostId) -> Result<Option<HostSummary>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {SUMMARY} FROM hosts h WHERE h.id = $1")).bind(id).fetch_optional(pool).await
}

/// The fields an admin sets.
#[derive(Clone, Debug)]
pub struct HostInput {
    pub name: String,
    pub api_url: String,
    pub supports_containers: bool,
    pub supports_kvm: bool,
    pub cpus: i32,
    pub memory_mib: i64,
    pub disk_gib: i64,
    pub reserved_cpus: i32,
    pub reserved_memory_mib: i64,
    pub reserved_disk_gib: i64,
    pub enabled: bool,
}

/// Inserts (id None) or updates; `None` if an update found no such host.
pub async fn save(tx: &mut Tx<'_>, id: Option<HostId>, h: &HostInput) -> Result<Option<HostId>, sqlx::Error> {
    let sql = match id {
        None => {
            "INSERT INTO hosts (name, api_url, supports_containers, supports_kvm, cpus, memory_mib, disk_gib, \
                 reserved_cpus, reserved_memory_mib, reserved_disk_gib, enabled) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id"
        }
        Some(_) => {
            "UPDATE hosts SET name = $1, api_url = $2, supports_containers = $3, supports_kvm = $4, cpus = $5, \
                    memory_mib = $6, disk_gib = $7, reserved_cpus = $8, reserved_memory_mib = $9, reserved_disk_gib = $10, \
                    enabled = $11 WHERE id = $12 RETURNING id"
        }
    };
    sqlx::query_scalar(sql)
        .bind(&h.name)
        .bind(&h.api_url)
        .bind(h.supports_containers)
        .bind(h.supports_kvm)
        .bind(h.cpus)
        .bind(h.memory_mib)
        .bind(h.disk_gib)
        .bind(h.reserved_cpus)
        .bind(h.reserved_memory_mib)
        .bind(h.reserved_disk_gib)
        .bind(h.enabled)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

/// A host that takes new instances (joined, enabled, not unreachable): what it could ever give.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ActiveHost {
    pub cpus: i32,
    pub memory_mib: i64,
    pub disk_gib: i64,
    pub reserved_cpus: i32,
    pub reserved_memory_mib: i64,
    pub reserved_disk_gib: i64,
    pub supports_containers: bool,
    pub supports_kvm: bool,
}

/// Every host the scheduler would consider, of any kind.
pub async fn active(conn: &mut sqlx::PgConnection) -> Result<Vec<ActiveHost>, sqlx::Error> {
    sqlx::query_as(
        "SELECT cpus, memory_mib, disk_gib, reserved_cpus, reserved_memory_mib, reserved_disk_gib, supports_containers, supports_kvm
           FROM hosts WHERE enabled AND api_secret IS NOT NULL AND reachability <> 'unreachable'",
    )
    .fetch_all(conn)
    .await
}
