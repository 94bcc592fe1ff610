//! SQL for `jobs`: the durable queue of provisioning work (claimed by the job runner).

use super::Tx;
use crate::ids::InstanceId;
use crate::jobs::JobStatus;
use serde_json::Value;
use uuid::Uuid;

/// Queues a job; with a `dedupe_key`, queueing it again is a no-op. Returns whether it was added.
pub async fn enqueue(
    tx: &mut Tx<'_>,
    kind: &str,
    payload: Value,
    instance_id: Option<InstanceId>,
    dedupe_key: Option<&str>,
    request_id: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO jobs (kind, payload, instance_id, dedupe_key, request_id) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(kind)
    .bind(payload)
    .bind(instance_id)
    .bind(dedupe_key)
    .bind(request_id)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub kind: String,
    pub payload: Value,
    pub instance_id: Option<InstanceId>,
    pub attempts: i32,
    pub max_attempts: i32,
    /// The request that queued it, whose id its calls to hosts carry.
    pub request_id: Option<String>,
}

/// Claims the next job that is due (or whose lease ran out: its runner died) under a lease.
/// `SKIP LOCKED`: several runners never take the same job.
pub async fn claim<'e, E: sqlx::PgExecutor<'e>>(e: E, runner: &str, lease_secs: i64) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE jobs SET status = 'running', locked_by = $1, locked_until = now() + make_interval(secs => $2),
                attempts = attempts + 1, updated_at = now()
          WHERE id = (SELECT id FROM jobs
                       WHERE (status = 'queued' AND run_after <= now()) OR (status = 'running' AND locked_until < now())
                       ORDER BY run_after LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id, kind, payload, instance_id, attempts, max_attempts, request_id",
    )
    .bind(runner)
    .bind(lease_secs as f64)
    .fetch_optional(e)
    .await
}

/// Finishes a job, if this runner still holds it (a runner whose lease ran out does not
/// overwrite the one that took over).
pub async fn succeed<'e, E: sqlx::PgExecutor<'e>>(e: E, id: Uuid, runner: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE jobs SET status = 'succeeded', locked_by = NULL, locked_until = NULL, last_error = NULL,
                waiting_reason = NULL, updated_at = now()
          WHERE id = $1 AND locked_by = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(runner)
    .execute(e)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Puts a job back for later. `count_attempt = false` (waiting for capacity) gives the
/// attempt back; past `max_attempts` a failing job is dead-lettered with its reason.
pub async fn retry<'e, E: sqlx::PgExecutor<'e>>(
    e: E,
    id: Uuid,
    runner: &str,
    delay_secs: i64,
    reason: &str,
    count_attempt: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE jobs SET
                attempts = CASE WHEN $5 THEN attempts ELSE attempts - 1 END,
                status = CASE WHEN $5 AND attempts >= max_attempts THEN $6 ELSE $7 END,
                run_after = now() + make_interval(secs => $3), locked_by = NULL, locked_until = NULL,
                last_error = CASE WHEN $5 THEN $4 ELSE last_error END,
                waiting_reason = CASE WHEN $5 THEN NULL ELSE $4 END, updated_at = now()
          WHERE id = $1 AND locked_by = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(runner)
    .bind(delay_secs as f64)
    .bind(reason)
    .bind(count_attempt)
    .bind(JobStatus::Dead)
    .bind(JobStatus::Queued)
    .execute(e)
    .await?;
    Ok(())
}

/// Is work for this instance queued or running?
pub async fn pending_for<'e, E: sqlx::PgExecutor<'e>>(e: E, instance: InstanceId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM jobs WHERE instance_id = $1 AND status IN ('queued', 'running'))")
        .bind(instance)
        .fetch_one(e)
        .await
}

/// Wakes jobs waiting for capacity (a host joined or one was freed).
pub async fn wake_waiting<'e, E: sqlx::PgExecutor<'e>>(e: E) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("UPDATE jobs SET run_after = now() WHERE status = 'queued' AND waiting_reason IS NOT NULL")
        .execute(e)
        .await?
        .rows_affected())
}

/// A job that failed for good, as the admin's dashboard lists it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DeadJob {
    pub id: Uuid,
    pub kind: String,
    pub instance_id: Option<InstanceId>,
    pub hostname: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Dead-lettered jobs, newest first.
pub async fn dead<'e, E: sqlx::PgExecutor<'e>>(e: E, limit: i64) -> Result<Vec<DeadJob>, sqlx::Error> {
    sqlx::query_as(
        "SELECT j.id, j.kind, j.instance_id, i.hostname, j.attempts, j.last_error, j.updated_at
           FROM jobs j LEFT JOIN instances i ON i.id = j.instance_id
          WHERE j.status = 'dead' ORDER BY j.updated_at DESC, j.id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(e)
    .await
}

/// Why a dead job may not run again, or `None` when it may: its instance is terminated, or a
/// newer job for the same instance was queued after it (that one carries the current intent).
/// Locks the job's row.
pub async fn lock_dead(tx: &mut Tx<'_>, id: Uuid) -> Result<Option<(String, Option<Uuid>, Option<&'static str>)>, sqlx::Error> {
    let row: Option<(String, Option<Uuid>, bool, bool)> = sqlx::query_as(
        "SELECT j.kind, j.instance_id,
                COALESCE(i.desired_state = 'terminated', false),
                EXISTS (SELECT 1 FROM jobs n WHERE n.instance_id = j.instance_id AND n.id <> j.id AND n.created_at > j.created_at)
           FROM jobs j LEFT JOIN instances i ON i.id = j.instance_id
          WHERE j.id = $1 AND j.status = 'dead' FOR UPDATE OF j",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|(kind, instance, terminated, superseded)| {
        let why = if terminated {
            Some("its server is terminated")
        } else if superseded {
            Some("a newer job for the same server was queued after it")
        } else {
            None
        };
        (kind, instance, why)
    }))
}

/// Puts a dead job back in the queue with a fresh set of attempts, due now.
pub async fn requeue_dead(tx: &mut Tx<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE jobs SET status = 'queued', attempts = 0, run_after = now(), locked_by = NULL, locked_until = NULL,
                waiting_reason = NULL, updated_at = now()
          WHERE id = $1 AND status = 'dead'",
    )
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}
