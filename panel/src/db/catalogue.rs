//! SQL for what the catalogue shows: orderable plans with their prices, and OS templates.

use sqlx::PgPool;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PlanSummary {
    pub id: i64,
    pub code: String,
    pub version: i32,
    pub name: String,
    pub description: String,
    pub kind: vessel_core::InstanceKind,
    pub vcpus: i32,
    pub memory_guaranteed_mib: i64,
    pub memory_burst_mib: i64,
    pub swap_mib: i64,
    pub disk_gib: i64,
    pub cpu_ratio_milli: i32,
    pub memory_ratio_milli: i32,
    pub disk_ratio_milli: i32,
    pub pids_max: i32,
    pub net_rate_mbit: Option<i32>,
    pub io_weight: i32,
    pub bandwidth_gib: Option<i64>,
    pub orderable: bool,
    pub source_file: Option<String>,
}

const COLUMNS: &str = "id, code, version, name, description, kind, vcpus, memory_guaranteed_mib, \
    memory_burst_mib, swap_mib, disk_gib, cpu_ratio_milli, memory_ratio_milli, disk_ratio_milli, pids_max, \
    net_rate_mbit, io_weight, bandwidth_gib, orderable, source_file";

/// Orderable plans, smallest first within each kind.
pub async fn orderable_plans(pool: &PgPool) -> Result<Vec<PlanSummary>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM plans WHERE orderable ORDER BY kind, memory_guaranteed_mib, vcpus, code"))
        .fetch_all(pool)
        .await
}

/// Every version of every plan, for the admin list.
pub async fn all_plans(pool: &PgPool) -> Result<Vec<PlanSummary>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM plans ORDER BY code, version DESC")).fetch_all(pool).await
}

pub async fn plan_by_code_latest(pool: &PgPool, code: &str) -> Result<Option<PlanSummary>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM plans WHERE code = $1 ORDER BY version DESC LIMIT 1"))
        .bind(code)
        .fetch_optional(pool)
        .await
}

pub async fn plan_by_id(pool: &PgPool, id: i64) -> Result<Option<PlanSummary>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM plans WHERE id = $1")).bind(id).fetch_optional(pool).await
}

/// (plan id, cycle, currency, amount) for the given plans, shortest cycle first (the
/// enum's order in the schema).
pub async fn prices_of(pool: &PgPool, plan_ids: &[i64]) -> Result<Vec<(i64, crate::plans::BillingCycle, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT plan_id, cycle, currency, amount_minor FROM plan_prices WHERE plan_id = ANY($1) \
         ORDER BY plan_id, currency, cycle",
    )
    .bind(plan_ids)
    .fetch_all(pool)
    .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OsTemplate {
    pub id: uuid::Uuid,
    pub name: String,
    pub display_name: String,
    pub version: String,
    pub for_containers: bool,
    pub for_kvm: bool,
    pub sha256: Option<String>,
    pub enabled: bool,
}

pub async fn os_templates(pool: &PgPool, only_enabled: bool) -> Result<Vec<OsTemplate>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, display_name, version, for_containers, for_kvm, sha256, enabled FROM os_templates \
         WHERE enabled OR NOT $1 ORDER BY name",
    )
    .bind(only_enabled)
    .fetch_all(pool)
    .await
}
