//! The durable job queue in PostgreSQL: jobs are claimed with `FOR UPDATE SKIP LOCKED` under
//! a lease (a runner that dies gives its jobs back when the lease runs out), retried with
//! exponential backoff, and dead-lettered with the reason after `max_attempts`. Several panel
//! processes can run runners at once. Delivery is at least once; every handler is idempotent
//! (the host keys everything by the panel's instance id).

use crate::db::{jobs as sql, Tx};
use crate::ids::InstanceId;
use crate::vps::DesiredState;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;
use vessel_core::Action;

pub use sql::JobRow;

pg_enum! {
    /// Where a job is in the queue (`job_status` in the schema).
    pub enum JobStatus in "job_status" {
        Queued = "queued",
        /// Claimed by a runner under a lease.
        Running = "running",
        Succeeded = "succeeded",
        /// Failed `max_attempts` times; kept with its reason.
        Dead = "dead",
    }
}

/// Every kind of job the panel queues, with exactly its payload. Stored as the `kind` column
/// (the serde tag) and the `payload` column (the other fields), so rows written before this
/// type existed parse to the same job; a misspelt kind cannot be built, and the handler
/// ([`crate::orchestrator::handle`]) matches every variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields)]
pub enum Job {
    /// Place the instance and create it on its host (once per instance: deduplicated).
    #[serde(rename = "instance.create")]
    Create { instance_id: InstanceId },
    /// Make the host match the instance's desired state *as it is when the job runs* (a stale
    /// job never reverts a newer change); `desired` and `reason` record why it was queued.
    #[serde(rename = "instance.converge")]
    Converge {
        instance_id: InstanceId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        desired: Option<DesiredState>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A customer's or owner's action: restart and reinstall are done on the host, start and
    /// stop converge on the desired state they set.
    #[serde(rename = "instance.action")]
    Action { instance_id: InstanceId, action: Action },
    /// Apply the instance's (new) plan on its host; `plan_id` is the plan it was queued for.
    #[serde(rename = "instance.resize")]
    Resize { instance_id: InstanceId, plan_id: i64 },
    /// Set root's password on the running instance to the newest hash its row holds (a
    /// retried job sends the latest one).
    #[serde(rename = "instance.reset_password")]
    ResetPassword { instance_id: InstanceId },
    /// Put the instance's firewall, as its row holds it when the job runs, on its host.
    #[serde(rename = "instance.firewall")]
    Firewall { instance_id: InstanceId },
}

impl Job {
    /// Every kind's stored name (the serde tags above), for metrics that list each kind.
    pub const KINDS: [&'static str; 6] =
        ["instance.create", "instance.converge", "instance.action", "instance.resize", "instance.reset_password", "instance.firewall"];
}

/// A job row whose kind or payload this version cannot read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable job {kind:?}: {source}")]
pub struct UnreadableJob {
    pub kind: String,
    pub source: serde_json::Error,
}

impl Job {
    pub fn instance_id(&self) -> InstanceId {
        match self {
            Job::Create { instance_id }
            | Job::Converge { instance_id, .. }
            | Job::Action { instance_id, .. }
            | Job::Resize { instance_id, .. }
            | Job::ResetPassword { instance_id }
            | Job::Firewall { instance_id } => *instance_id,
        }
    }

    /// Queueing the same job again under this key is a no-op.
    fn dedupe_key(&self) -> Option<String> {
        match self {
            Job::Create { instance_id } => Some(format!("create:{instance_id}")),
            _ => None,
        }
    }

    /// The row's `kind` and `payload`.
    pub fn to_row(&self) -> (String, serde_json::Value) {
        let mut v = serde_json::to_value(self).expect("a job serialises");
        let kind = match v.as_object_mut().and_then(|o| o.remove("kind")) {
            Some(serde_json::Value::String(k)) => k,
            _ => unreachable!("an internally tagged enum serialises to an object with its tag"),
        };
        (kind, v)
    }

    /// Reads a stored row back.
    pub fn from_row(kind: &str, payload: &serde_json::Value) -> Result<Job, UnreadableJob> {
        let mut v = payload.clone();
        match v.as_object_mut() {
            Some(o) => {
                o.insert("kind".into(), serde_json::Value::String(kind.into()));
            }
            None => v = serde_json::json!({ "kind": kind, "payload": v }),
        }
        serde_json::from_value(v).map_err(|source| UnreadableJob { kind: kind.into(), source })
    }
}

/// Queues `job` in the caller's transaction (a create only once per instance); returns
/// whether it was added.
pub async fn enqueue(tx: &mut Tx<'_>, job: Job) -> Result<bool, sqlx::Error> {
    let (kind, payload) = job.to_row();
    // The request that queued it (if any): its id follows the job to the host.
    let request_id = crate::telemetry::current_request_id();
    sql::enqueue(tx, &kind, payload, Some(job.instance_id()), job.dedupe_key().as_deref(), request_id.as_deref()).await
}

/// What a handler says about a job it ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Failed in a way that may pass: try again after a backoff; counts as an attempt.
    Retry(String),
    /// Waits for something outside its control (capacity): does not use up an attempt.
    Wait {
        secs: i64,
        reason: String,
    },
}

/// Backoff after the n-th failed attempt: 5 s, 10 s, 20 s … capped at 10 minutes.
pub fn backoff_secs(attempts: i32) -> i64 {
    (5i64 << attempts.clamp(0, 8).saturating_sub(1)).min(600)
}

/// The channel the `jobs_notify` trigger notifies at the commit of every statement that
/// inserts jobs.
pub const CHANNEL: &str = "vessel_jobs";

/// Wakes a process's idle runners the moment a job commits: one `LISTEN` connection per
/// process, fanned out to every runner. Without [`Wakeup::listen`] it never fires and the
/// runners only poll.
#[derive(Clone, Default)]
pub struct Wakeup(Arc<tokio::sync::Notify>);

impl Wakeup {
    /// Listens on `pool`'s database until `stop` turns true. After a dropped connection it
    /// wakes every runner (the notifications sent meanwhile are lost) and listens again.
    pub fn listen(pool: &PgPool, mut stop: watch::Receiver<bool>) -> Wakeup {
        let wake = Wakeup::default();
        let (notify, pool) = (wake.0.clone(), pool.clone());
        tokio::spawn(async move {
            while !*stop.borrow() {
                let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for new jobs; runners poll");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                            _ = stop.changed() => return,
                        }
                    }
                };
                if let Err(e) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %e, "LISTEN {CHANNEL} failed; runners poll");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
                loop {
                    tokio::select! {
                        r = listener.try_recv() => match r {
                            Ok(Some(_)) => notify.notify_waiters(),
                            // The connection dropped; the next try_recv reconnects.
                            Ok(None) => notify.notify_waiters(),
                            Err(e) => {
                                tracing::warn!(error = %e, "job listener lost; reconnecting");
                                notify.notify_waiters();
                                break;
                            }
                        },
                        _ = stop.changed() => return,
                    }
                }
            }
        });
        wake
    }
}

/// Claims and runs jobs until `stop` turns true; `handle` does the work of one job. An idle
/// runner sleeps until `wake` fires or `poll` passes, whichever is first.
pub async fn run<F, Fut>(
    pool: PgPool,
    runner: String,
    lease_secs: i64,
    wake: Wakeup,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(JobRow) -> Fut,
    Fut: Future<Output = Outcome>,
{
    while !*stop.borrow() {
        // Registered before the claim, so a job committed between an empty claim and the
        // sleep still wakes this runner.
        let notified = wake.0.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let job = match sql::claim(&pool, &runner, lease_secs).await {
            Ok(job) => job,
            Err(e) => {
                tracing::warn!(error = %e, "job queue unavailable");
                None
            }
        };
        let Some(job) = job else {
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(poll) => {}
                _ = stop.changed() => {}
            }
            continue;
        };
        let (id, kind, attempts) = (job.id, job.kind.clone(), job.attempts);
        // A job queued by no request (the reconciler, billing) is its own request.
        let request_id = job.request_id.clone().unwrap_or_else(|| format!("job-{}", id.simple()));
        let span = tracing::info_span!("job", %id, %kind, attempts, %request_id);
        let started = std::time::Instant::now();
        let outcome = tracing::Instrument::instrument(crate::telemetry::with_request_id(request_id, handle(job)), span).await;
        crate::metrics::job_finished(&kind, &outcome, started.elapsed());
        let result = match &outcome {
            Outcome::Done => sql::succeed(&pool, id, &runner).await.map(|_| ()),
            Outcome::Retry(reason) => {
                tracing::warn!(%id, %kind, attempts, %reason, "job failed, will retry");
                sql::retry(&pool, id, &runner, backoff_secs(attempts), reason, true).await
            }
            Outcome::Wait { secs, reason } => sql::retry(&pool, id, &runner, *secs, reason, false).await,
        };
        if let Err(e) = result {
            // The lease runs out and another runner takes the job: nothing is lost.
            tracing::warn!(%id, error = %e, "could not record a job's outcome");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The payloads every version of the panel has written (see the git history of
    /// `subscriptions.rs`, `instances.rs`, `resellers/servers.rs`, `billing/proration.rs`,
    /// `orchestrator.rs` and `tests/src/e2e.rs`) still parse, to the job they meant.
    #[test]
    fn stored_rows_of_every_kind_parse_and_round_trip() {
        let id = InstanceId::new_random();
        let rows = [
            ("instance.create", json!({ "instance_id": id }), Job::Create { instance_id: id }),
            ("instance.converge", json!({ "instance_id": id }), Job::Converge { instance_id: id, desired: None, reason: None }),
            (
                "instance.converge",
                json!({ "instance_id": id, "desired": "suspended", "reason": "overdue" }),
                Job::Converge { instance_id: id, desired: Some(DesiredState::Suspended), reason: Some("overdue".into()) },
            ),
            (
                "instance.action",
                json!({ "instance_id": id, "action": "restart" }),
                Job::Action { instance_id: id, action: Action::Restart },
            ),
            (
                "instance.action",
                json!({ "instance_id": id, "action": "reinstall" }),
                Job::Action { instance_id: id, action: Action::Reinstall },
            ),
            ("instance.action", json!({ "instance_id": id, "action": "rescue" }), Job::Action { instance_id: id, action: Action::Rescue }),
            (
                "instance.action",
                json!({ "instance_id": id, "action": "leave_rescue" }),
                Job::Action { instance_id: id, action: Action::LeaveRescue },
            ),
            ("instance.resize", json!({ "instance_id": id, "plan_id": 7 }), Job::Resize { instance_id: id, plan_id: 7 }),
            ("instance.reset_password", json!({ "instance_id": id }), Job::ResetPassword { instance_id: id }),
        ];
        for (kind, payload, job) in rows {
            assert_eq!(Job::from_row(kind, &payload).unwrap(), job, "{kind} {payload}");
            assert_eq!(job.to_row(), (kind.to_string(), payload));
            assert_eq!(job.instance_id(), id);
            assert!(Job::KINDS.contains(&kind), "{kind} is listed in Job::KINDS");
        }
    }

    #[test]
    fn misspelt_kinds_and_stray_fields_are_unreadable() {
        let id = InstanceId::new_random();
        assert!(Job::from_row("instance.craete", &json!({ "instance_id": id })).is_err());
        assert!(Job::from_row("instance.action", &json!({ "instance_id": id })).is_err(), "an action names its action");
        assert!(Job::from_row("instance.create", &json!({ "instance_id": id, "plan_id": 1 })).is_err());
        assert!(Job::from_row("instance.create", &json!("x")).is_err());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let b: Vec<i64> = (1..=9).map(super::backoff_secs).collect();
        assert_eq!(b, vec![5, 10, 20, 40, 80, 160, 320, 600, 600]);
    }
}

/// Why a failed job was not put back.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no such failed job")]
    NotFound,
    #[error("this job cannot be retried: {0}")]
    Superseded(&'static str),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// The dashboard's "retry" of a dead-lettered job. Safe because every job reads the current
/// state when it runs (a converge goes to the desired state as it is now, a password reset sends
/// the newest hash, a create is deduplicated per instance) and because a job whose server is
/// terminated, or that a newer job for the same server superseded, is refused instead of
/// replaying an old intent (an old reinstall, say). Conditional on the row still being dead, so
/// a double click queues it once. Audited.
pub async fn retry_dead(pool: &PgPool, actor: crate::audit::Actor, addr: Option<std::net::IpAddr>, id: Uuid) -> Result<(), RetryError> {
    let mut tx = pool.begin().await?;
    let (kind, instance, why) = sql::lock_dead(&mut tx, id).await?.ok_or(RetryError::NotFound)?;
    if let Some(why) = why {
        return Err(RetryError::Superseded(why));
    }
    if !sql::requeue_dead(&mut tx, id).await? {
        return Err(RetryError::NotFound);
    }
    crate::audit::record(
        &mut *tx,
        actor,
        "job.retry",
        Some(("job", id.to_string())),
        addr,
        serde_json::json!({ "kind": kind, "instance_id": instance }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
