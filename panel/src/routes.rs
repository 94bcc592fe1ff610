//! HTTP handlers: thin, they parse the request, call a service, and render the answer.

use actix_web::{get, web, HttpResponse};
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz);
}

/// Liveness and readiness in one: 200 when the database answers within two seconds, else 503.
#[get("/healthz")]
async fn healthz(pool: web::Data<PgPool>) -> HttpResponse {
    match tokio::time::timeout(Duration::from_secs(2), crate::db::ping(&pool)).await {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({"status": "ok", "database": "ok"})),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            HttpResponse::ServiceUnavailable().json(json!({"status": "unavailable", "database": "unavailable"}))
        }
        Err(_) => HttpResponse::ServiceUnavailable().json(json!({"status": "unavailable", "database": "timeout"})),
    }
}
