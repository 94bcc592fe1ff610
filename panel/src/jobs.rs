//! The durable job queue in PostgreSQL: jobs are claimed with `FOR UPDATE SKIP LOCKED` under
//! a lease (a runner that dies gives its jobs back when the lease runs out), retried with
//! exponential backoff, and dead-lettered with the reason after `max_attempts`. Several panel
//! processes can run runners at once. Delivery is at least once; every handler is idempotent
//! (the host keys everything by the panel's instance id).

use crate::db::jobs as sql;
use sqlx::PgPool;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

pub use sql::JobRow;

/// What a handler says about a job it ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Failed in a way that may pass: try again after a backoff; counts as an attempt.
    Retry(String),
    /// Waits for something outside its control (capacity): does not use up an attempt.
    Wait { secs: i64, reason: String },
}

/// Backoff after the n-th failed attempt: 5 s, 10 s, 20 s … capped at 10 minutes.
pub fn backoff_secs(attempts: i32) -> i64 {
    (5i64 << attempts.clamp(0, 8).saturating_sub(1)).min(600)
}

/// Claims and runs jobs until `stop` turns true; `handle` does the work of one job.
pub async fn run<F, Fut>(pool: PgPool, runner: String, lease_secs: i64, mut stop: watch::Receiver<bool>, handle: F)
where
    F: Fn(JobRow) -> Fut,
    Fut: Future<Output = Outcome>,
{
    while !*stop.borrow() {
        let job = match sql::claim(&pool, &runner, lease_secs).await {
            Ok(job) => job,
            Err(e) => {
                tracing::warn!(error = %e, "job queue unavailable");
                None
            }
        };
        let Some(job) = job else {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                _ = stop.changed() => {}
            }
            continue;
        };
        let (id, kind, attempts) = (job.id, job.kind.clone(), job.attempts);
        let span = tracing::info_span!("job", %id, %kind, attempts);
        let outcome = tracing::Instrument::instrument(handle(job), span).await;
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
    #[test]
    fn backoff_grows_and_is_capped() {
        let b: Vec<i64> = (1..=9).map(super::backoff_secs).collect();
        assert_eq!(b, vec![5, 10, 20, 40, 80, 160, 320, 600, 600]);
    }
}
