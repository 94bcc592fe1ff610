//! Prometheus metrics (the `metrics` facade, rendered by `metrics-exporter-prometheus`).
//!
//! Two sources: what this process measures as it goes (HTTP latency by route pattern, job
//! latency and failures), and what the database says at scrape time (queue depth and age,
//! reconcile lag, capacity against what was sold, the outbox, webhooks, billing runs), so work
//! done by `panel worker` or a `panel billing run` timer is seen too.
//!
//! Served on their own listener (`[metrics] listen`, off unless set; the packaged config binds
//! it to loopback), never on the public port: the numbers name hosts and sizes. The names and
//! labels are the ones `ops/grafana/vessel.json` queries; `tests/tests/metrics.rs` checks them.

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use std::sync::OnceLock;

/// Latency buckets (seconds) for requests and jobs: 1 ms to 2 minutes.
const BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| vessel_http_metrics::install(PrometheusBuilder::new().set_buckets(&BUCKETS).expect("static, non-empty buckets")))
        .clone()
}

/// The HTTP latency histogram's name: `{method, route, status}`, see
/// [`vessel_http_metrics::record_http`].
pub const HTTP_DURATION: &str = "vessel_http_request_duration_seconds";

/// One job ran: `vessel_job_duration_seconds{kind, outcome}` and, when it failed,
/// `vessel_job_failures_total{kind}`.
pub fn job_finished(kind: &str, outcome: &crate::jobs::Outcome, took: std::time::Duration) {
    let outcome = match outcome {
        crate::jobs::Outcome::Done => "done",
        crate::jobs::Outcome::Retry(_) => "retry",
        crate::jobs::Outcome::Wait { .. } => "wait",
    };
    histogram!("vessel_job_duration_seconds", "kind" => kind.to_owned(), "outcome" => outcome).record(took.as_secs_f64());
    if outcome == "retry" {
        counter!("vessel_job_failures_total", "kind" => kind.to_owned()).increment(1);
    }
}

/// Every job kind's failure counter exists from the start (at 0), so rates work before the
/// first failure.
pub fn register_job_kinds() {
    for kind in crate::jobs::Job::KINDS {
        counter!("vessel_job_failures_total", "kind" => kind).increment(0);
    }
}

/// Reads the database's side and renders everything in the Prometheus text format.
pub async fn render(pool: &PgPool) -> Result<String, sqlx::Error> {
    use crate::db::metrics as sql;
    let h = handle();
    let queue = sql::job_queue(pool).await?;
    for kind in crate::jobs::Job::KINDS {
        let (depth, age) = queue.iter().find(|(k, ..)| k == kind).map(|(_, n, a)| (*n as f64, *a)).unwrap_or((0.0, 0.0));
        gauge!("vessel_jobs_queued", "kind" => kind).set(depth);
        gauge!("vessel_jobs_oldest_due_age_seconds", "kind" => kind).set(age);
    }
    for host in sql::host_load(pool).await? {
        let name = host.name.clone();
        for (resource, capacity, sold) in [
            ("cpu", host.cpus, host.sold_vcpus),
            ("memory_mib", host.memory_mib, host.sold_memory_burst_mib),
            ("memory_guaranteed_mib", host.memory_mib, host.sold_memory_guaranteed_mib),
            ("disk_gib", host.disk_gib, host.sold_disk_gib),
        ] {
            gauge!("vessel_host_capacity", "host" => name.clone(), "resource" => resource).set(capacity as f64);
            gauge!("vessel_host_committed", "host" => name.clone(), "resource" => resource).set(sold as f64);
        }
        // Never heard from: as late as can be, so an alert on lag fires.
        gauge!("vessel_host_reconcile_lag_seconds", "host" => name).set(host.lag_secs.unwrap_or(f64::INFINITY));
    }
    for k in sql::kind_load(pool).await? {
        for (resource, sold, capacity) in
            [("cpu", k.sold_vcpus, k.cpus), ("memory_mib", k.sold_memory_mib, k.memory_mib), ("disk_gib", k.sold_disk_gib, k.disk_gib)]
        {
            // Sold over what the hosts that run this kind have: 2.5 means 2.5× overcommitted.
            let ratio = if capacity > 0 { sold as f64 / capacity as f64 } else { 0.0 };
            gauge!("vessel_overcommit_effective", "kind" => k.kind.as_str(), "resource" => resource).set(ratio);
        }
    }
    let (depth, age) = sql::outbox(pool).await?;
    gauge!("vessel_mail_outbox_depth").set(depth as f64);
    gauge!("vessel_mail_outbox_oldest_age_seconds").set(age);
    let (pending, lag) = sql::webhook_lag(pool).await?;
    gauge!("vessel_webhook_deliveries_pending").set(pending as f64);
    gauge!("vessel_webhook_delivery_lag_seconds").set(lag);
    for (kind, runs, failed, last_secs, last_at) in sql::billing_runs(pool).await? {
        gauge!("vessel_billing_runs", "kind" => kind.clone()).set(runs as f64);
        gauge!("vessel_billing_runs_failed", "kind" => kind.clone()).set(failed as f64);
        gauge!("vessel_billing_run_last_duration_seconds", "kind" => kind.clone()).set(last_secs);
        gauge!("vessel_billing_run_last_finished_timestamp_seconds", "kind" => kind).set(last_at);
    }
    Ok(h.render())
}
