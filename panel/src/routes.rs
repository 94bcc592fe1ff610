//! HTTP handlers: thin, they parse the request, call a service, and render the answer.

use crate::api::problem::Problem;
use crate::billing::{self, BillingError};
use crate::clock::Clock;
use crate::config::Settings;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde_json::json;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(stripe_webhook).service(host_join);
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

/// Stripe's webhook: signed, so no session or CSRF token; each event processed once.
#[post("/webhooks/stripe")]
async fn stripe_webhook(
    req: HttpRequest,
    body: web::Bytes,
    pool: web::Data<PgPool>,
    clock: web::Data<Arc<dyn Clock>>,
    settings: web::Data<Settings>,
) -> HttpResponse {
    use secrecy::ExposeSecret;
    let Some(stripe) = &settings.stripe else {
        return Problem::new(StatusCode::NOT_FOUND, "not-found", "card payments are not configured").response();
    };
    let Some(sig) = req.headers().get("Stripe-Signature").and_then(|v| v.to_str().ok()) else {
        return Problem::new(StatusCode::BAD_REQUEST, "bad-signature", "the Stripe-Signature header is missing").response();
    };
    match billing::stripe::handle_webhook(&pool, clock.as_ref().as_ref(), stripe.webhook_secret.expose_secret(), &body, sig).await {
        Ok(outcome) => HttpResponse::Ok().json(json!({ "received": true, "outcome": format!("{outcome:?}") })),
        Err(e @ BillingError::BadSignature(_)) => Problem::new(StatusCode::BAD_REQUEST, "bad-signature", e).response(),
        Err(e @ BillingError::Invalid(_)) => Problem::new(StatusCode::BAD_REQUEST, "bad-event", e).response(),
        Err(e) => {
            tracing::error!(error = %e, "stripe webhook failed");
            // 5xx makes Stripe retry later; the event id was not recorded, so the retry counts.
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "could not process the event").response()
        }
    }
}

/// A host's provisioner joins with the one-time token an admin made (`panel hosts add`).
#[post("/hosts/join")]
async fn host_join(pool: web::Data<PgPool>, body: web::Json<vessel_core::wire::JoinRequest>) -> HttpResponse {
    use crate::hosts::JoinError;
    match crate::hosts::join(&pool, &body).await {
        Ok(resp) => HttpResponse::Ok().json(resp),
        Err(e @ JoinError::BadToken) => Problem::new(StatusCode::FORBIDDEN, "bad-join-token", e).response(),
        Err(e @ JoinError::Invalid(_)) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-join", e).response(),
        Err(e) => {
            tracing::error!(error = %e, "host join failed");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "could not complete the join").response()
        }
    }
}
