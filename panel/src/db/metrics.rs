//! SQL behind the panel's metrics (`crate::metrics`): read at scrape time, so what other
//! processes did (`panel worker`, `panel billing run`) is counted too.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Queued jobs per kind: how many, and the age in seconds of the oldest that is due.
pub async fn job_queue(pool: &PgPool) -> Result<Vec<(String, i64, f64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT kind, count(*), COALESCE(EXTRACT(EPOCH FROM max(now() - run_after) FILTER (WHERE run_after <= now())), 0)::float8
           FROM jobs WHERE status = 'queued' GROUP BY kind",
    )
    .fetch_all(pool)
    .await
}

/// One joined host's capacity (after its reservation) and what its live instances were sold.
#[derive(sqlx::FromRow)]
pub struct HostLoadRow {
    pub name: String,
    pub cpus: i64,
    pub memory_mib: i64,
    pub disk_gib: i64,
    pub sold_vcpus: i64,
    pub sold_memory_burst_mib: i64,
    pub sold_memory_guaranteed_mib: i64,
    pub sold_disk_gib: i64,
    /// Seconds since the reconciler last heard from it (`None`: never).
    pub lag_secs: Option<f64>,
}

pub async fn host_load(pool: &PgPool) -> Result<Vec<HostLoadRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT h.name, (h.cpus - h.reserved_cpus)::int8 AS cpus, h.memory_mib - h.reserved_memory_mib AS memory_mib,
                h.disk_gib - h.reserved_disk_gib AS disk_gib,
                COALESCE(sum(p.vcpus), 0)::int8 AS sold_vcpus,
                COALESCE(sum(p.memory_burst_mib), 0)::int8 AS sold_memory_burst_mib,
                COALESCE(sum(p.memory_guaranteed_mib), 0)::int8 AS sold_memory_guaranteed_mib,
                COALESCE(sum(p.disk_gib), 0)::int8 AS sold_disk_gib,
                EXTRACT(EPOCH FROM now() - h.last_seen_at)::float8 AS lag_secs
           FROM hosts h
           LEFT JOIN instances i ON i.host_id = h.id AND i.desired_state <> 'terminated'
           LEFT JOIN plans p ON p.id = i.plan_id
          WHERE h.api_secret IS NOT NULL
          GROUP BY h.id",
    )
    .fetch_all(pool)
    .await
}

/// Per plan kind: what live instances were sold and the usable capacity of the enabled hosts
/// that run that kind (vcpus, memory burst MiB, disk GiB; each a (sold, capacity) pair).
#[derive(sqlx::FromRow)]
pub struct KindLoadRow {
    pub kind: vessel_core::InstanceKind,
    pub sold_vcpus: i64,
    pub cpus: i64,
    pub sold_memory_mib: i64,
    pub memory_mib: i64,
    pub sold_disk_gib: i64,
    pub disk_gib: i64,
}

pub async fn kind_load(pool: &PgPool) -> Result<Vec<KindLoadRow>, sqlx::Error> {
    sqlx::query_as(
        "WITH k(kind) AS (SELECT unnest(enum_range(NULL::instance_kind))),
              sold AS (SELECT p.kind, sum(p.vcpus)::int8 AS v, sum(p.memory_burst_mib)::int8 AS m, sum(p.disk_gib)::int8 AS d
                         FROM instances i JOIN plans p ON p.id = i.plan_id
                        WHERE i.host_id IS NOT NULL AND i.desired_state <> 'terminated' GROUP BY p.kind),
              cap AS (SELECT k.kind, sum(h.cpus - h.reserved_cpus)::int8 AS v, sum(h.memory_mib - h.reserved_memory_mib)::int8 AS m,
                             sum(h.disk_gib - h.reserved_disk_gib)::int8 AS d
                        FROM k JOIN hosts h ON h.api_secret IS NOT NULL AND h.enabled
                             AND CASE k.kind WHEN 'kvm' THEN h.supports_kvm ELSE h.supports_containers END
                       GROUP BY k.kind)
         SELECT k.kind, COALESCE(sold.v, 0) AS sold_vcpus, COALESCE(cap.v, 0) AS cpus,
                COALESCE(sold.m, 0) AS sold_memory_mib, COALESCE(cap.m, 0) AS memory_mib,
                COALESCE(sold.d, 0) AS sold_disk_gib, COALESCE(cap.d, 0) AS disk_gib
           FROM k LEFT JOIN sold ON sold.kind = k.kind LEFT JOIN cap ON cap.kind = k.kind",
    )
    .fetch_all(pool)
    .await
}

/// Mail not sent yet: how many, and the age in seconds of the oldest.
pub async fn outbox(pool: &PgPool) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 FROM email_outbox WHERE sent_at IS NULL",
    )
    .fetch_one(pool)
    .await
}

/// Webhook deliveries still pending: how many, and how late the oldest is (seconds since its
/// event was recorded).
pub async fn webhook_lag(pool: &PgPool) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 FROM webhook_deliveries WHERE status = 'pending'",
    )
    .fetch_one(pool)
    .await
}

/// Billing runs per kind: (kind, runs, failed runs, last run's seconds, last finish as unix time).
pub async fn billing_runs(pool: &PgPool) -> Result<Vec<(String, i64, i64, f64, f64)>, sqlx::Error> {
    sqlx::query_as(
        "WITH k(kind) AS (VALUES ('renewal'), ('dunning'))
         SELECT k.kind, count(r.id), count(r.id) FILTER (WHERE NOT r.ok),
                COALESCE((SELECT EXTRACT(EPOCH FROM l.finished_at - l.started_at) FROM billing_runs l
                           WHERE l.kind = k.kind ORDER BY l.finished_at DESC LIMIT 1), 0)::float8,
                COALESCE(EXTRACT(EPOCH FROM max(r.finished_at)), 0)::float8
           FROM k LEFT JOIN billing_runs r ON r.kind = k.kind GROUP BY k.kind",
    )
    .fetch_all(pool)
    .await
}

/// Records one billing run (`kind`: `renewal` or `dunning`).
pub async fn record_billing_run(pool: &PgPool, kind: &str, started: DateTime<Utc>, ok: bool) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO billing_runs (kind, started_at, finished_at, ok) VALUES ($1, $2, greatest(now(), $2), $3)")
        .bind(kind)
        .bind(started)
        .bind(ok)
        .execute(pool)
        .await
        .map(|_| ())
}
