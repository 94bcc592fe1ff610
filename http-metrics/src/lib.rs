//! What the panel's and the provisioner's Prometheus endpoints share: installing the process's
//! recorder, and the middleware that times every request by its route pattern. Each keeps its own
//! buckets, metric names and what it renders (`panel/src/metrics.rs`,
//! `provisioner/src/metrics.rs`).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use metrics::histogram;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::time::Instant;

/// Builds `builder`'s recorder, makes it the process's global one and returns the handle that
/// renders it. A process that already has another recorder (a test linking two services) still
/// gets a handle; only the installed one records.
pub fn install(builder: PrometheusBuilder) -> PrometheusHandle {
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        tracing::warn!("another metrics recorder is installed: this process's metrics go there");
    }
    handle
}

/// Middleware body: records the request's latency in the histogram `name`, labelled
/// `{method, route, status}`, `route` the matched pattern (`/v1/instances/{id}`), never the raw
/// path (unbounded, and it carries ids). Wrap it with
/// `from_fn(|req, next| record_http("…", req, next))`.
pub async fn record_http(
    name: &'static str,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let res = next.call(req).await;
    let (route, status) = match &res {
        Ok(r) => (r.request().match_pattern().unwrap_or_else(|| "unmatched".into()), r.status().as_u16()),
        Err(e) => ("unmatched".into(), e.as_response_error().status_code().as_u16()),
    };
    histogram!(name, "method" => method, "route" => route, "status" => status.to_string()).record(started.elapsed().as_secs_f64());
    res
}
