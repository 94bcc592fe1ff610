//! Prometheus metrics of one host (the `metrics` facade, rendered by
//! `metrics-exporter-prometheus`): the API's latency by route pattern, this host's capacity
//! against what it admitted, and every instance's CPU, memory (guarantee, burst limit, used),
//! disk and network, read from the kernel at scrape time (the same sampling the panel's usage
//! comes from).
//!
//! Served on their own plain-HTTP listener (`metrics_listen`, off unless set; the packaged
//! config binds it to loopback), never on the API's port: no signature is asked of a scraper,
//! so the address must not be public. Instances are labelled `vps` (not `instance`, which
//! Prometheus gives the scrape target). Series of an instance gone for 10 minutes are dropped.

use crate::service::Service;
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            vessel_http_metrics::install(
                PrometheusBuilder::new()
                    .set_buckets(&BUCKETS)
                    .expect("static, non-empty buckets")
                    .idle_timeout(MetricKindMask::GAUGE | MetricKindMask::COUNTER, Some(Duration::from_secs(600))),
            )
        })
        .clone()
}

/// The API's latency histogram's name: `{method, route, status}`, see
/// [`vessel_http_metrics::record_http`].
pub const HTTP_DURATION: &str = "vessel_provisioner_http_request_duration_seconds";

/// Observes the host and its instances now and renders everything.
pub async fn render(service: &Arc<Service>) -> Result<String, crate::service::ServiceError> {
    let h = handle();
    let report = service.report().await?;
    let (c, l) = (report.capacity, report.load);
    for (resource, capacity, committed) in [
        ("cpu", c.cpus as f64, l.committed_cpu),
        ("memory_mib", c.memory_mib as f64, l.committed_memory_mib),
        ("memory_guaranteed_mib", c.memory_mib as f64, l.guaranteed_memory_mib as f64),
        ("disk_gib", c.disk_gib as f64, l.committed_disk_gib),
    ] {
        gauge!("vessel_provisioner_capacity", "resource" => resource).set(capacity);
        gauge!("vessel_provisioner_committed", "resource" => resource).set(committed);
    }
    gauge!("vessel_provisioner_instances").set(l.instances as f64);
    for s in service.list().await? {
        let (vps, kind) = (s.id.to_string(), s.kind.to_string());
        let r = &s.resources;
        let running = s.state == vessel_core::InstanceState::Running;
        gauge!("vessel_instance_running", "vps" => vps.clone(), "kind" => kind.clone()).set(if running { 1.0 } else { 0.0 });
        gauge!("vessel_instance_vcpus", "vps" => vps.clone(), "kind" => kind.clone()).set(r.vcpus() as f64);
        counter!("vessel_instance_cpu_nanoseconds_total", "vps" => vps.clone(), "kind" => kind.clone()).absolute(s.usage.cpu_time_ns);
        for (kind_of, bytes) in [
            ("guarantee", r.memory_guaranteed_mib() as f64 * MIB),
            ("burst", r.memory_burst_mib() as f64 * MIB),
            ("used", s.usage.memory_bytes as f64),
            ("borrowed", s.usage.memory_burst_bytes as f64),
        ] {
            gauge!("vessel_instance_memory_bytes", "vps" => vps.clone(), "kind" => kind.clone(), "type" => kind_of).set(bytes);
        }
        gauge!("vessel_instance_disk_bytes", "vps" => vps.clone(), "kind" => kind.clone(), "type" => "size").set(r.disk_gib() as f64 * GIB);
        gauge!("vessel_instance_disk_bytes", "vps" => vps.clone(), "kind" => kind.clone(), "type" => "used")
            .set(s.usage.disk_used_bytes as f64);
        counter!("vessel_instance_network_bytes_total", "vps" => vps.clone(), "kind" => kind.clone(), "direction" => "rx")
            .absolute(s.usage.net_rx_bytes);
        counter!("vessel_instance_network_bytes_total", "vps" => vps, "kind" => kind, "direction" => "tx").absolute(s.usage.net_tx_bytes);
    }
    Ok(h.render())
}

/// Serves `GET /metrics` on `listen` (plain HTTP, one worker) until the process stops.
/// Returns the bound address.
pub fn serve(service: Arc<Service>, listen: std::net::SocketAddr) -> std::io::Result<(std::net::SocketAddr, actix_web::dev::Server)> {
    handle();
    let data = actix_web::web::Data::new(service);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new().app_data(data.clone()).route(
            "/metrics",
            actix_web::web::get().to(|s: actix_web::web::Data<Arc<Service>>| async move {
                match render(&s).await {
                    Ok(text) => actix_web::HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text),
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics: observing the host failed");
                        actix_web::HttpResponse::ServiceUnavailable().body(e.to_string())
                    }
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind(listen)?;
    let addr = server.addrs().first().copied().unwrap_or(listen);
    Ok((addr, server.run()))
}
