//! SQL for the admin's view and edits of `hosts` (joining and placement are in `db::hosts`).

use super::Tx;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct HostRow {
    pub id: Uuid,
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
    pub reachability: String,
    pub instances: i64,
}

const COLUMNS: &str = "h.id, h.name, h.api_url, h.supports_containers, h.supports_kvm, h.cpus, h.memory_mib, h.disk_gib, \
    h.reserved_cpus, h.reserved_memory_mib, h.reserved_disk_gib, h.enabled, h.reachability::text AS reachability, \
    (SELECT count(*) FROM instances i WHERE i.host_id = h.id AND i.desired_state <> 'terminated') AS instances";

pub async fn list(pool: &PgPool) -> Result<Vec<HostRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM hosts h ORDER BY h.name")).fetch_all(pool).await
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<HostRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM hosts h WHERE h.id = $1")).bind(id).fetch_optional(pool).await
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
pub async fn save(tx: &mut Tx<'_>, id: Option<Uuid>, h: &HostInput) -> Result<Option<Uuid>, sqlx::Error> {
    let sql = match id {
        None => "INSERT INTO hosts (name, api_url, supports_containers, supports_kvm, cpus, memory_mib, disk_gib, \
                 reserved_cpus, reserved_memory_mib, reserved_disk_gib, enabled) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        Some(_) => "UPDATE hosts SET name = $1, api_url = $2, supports_containers = $3, supports_kvm = $4, cpus = $5, \
                    memory_mib = $6, disk_gib = $7, reserved_cpus = $8, reserved_memory_mib = $9, reserved_disk_gib = $10, \
                    enabled = $11 WHERE id = $12 RETURNING id",
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
