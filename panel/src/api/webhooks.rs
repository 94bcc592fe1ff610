//! `/webhooks`: a reseller's endpoints and their delivery log, for resellers who configure
//! their integration by API rather than in the panel.

use super::auth::{Reader, Writer};
use super::idempotency::{self, Reply};
use super::problem::ApiError;
use crate::webhooks::{self as svc, WebhookError};
use actix_web::http::StatusCode;
use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::BadUrl(m) => ApiError::validation("url", m),
            WebhookError::NotAllowed => ApiError::Conflict("only reseller accounts have webhook endpoints".into()),
            WebhookError::NotFound => ApiError::NotFound("webhook endpoint"),
            WebhookError::NotFailed => ApiError::Conflict(e.to_string()),
            WebhookError::Db(e) => e.into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WebhookEndpoint {
    pub id: Uuid,
    pub url: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
}

/// An endpoint with its signing secret (its owner only).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WebhookEndpointWithSecret {
    pub id: Uuid,
    pub url: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    /// Verify `Vessel-Signature` with it: `v1` = hex HMAC-SHA256(secret, "<t>.<raw body>").
    /// Absent in an idempotent replay of the creation (a secret is never stored with the
    /// replayable answer, so a rotated one is not handed out again): read it with
    /// `GET /webhooks/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WebhookEndpointList {
    pub data: Vec<WebhookEndpoint>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookEndpoint {
    /// An http(s) URL without credentials.
    #[schema(max_length = 2000)]
    pub url: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WebhookDelivery {
    pub id: i64,
    pub event_id: Uuid,
    /// e.g. `server.updated`, `invoice.issued`.
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WebhookDeliveryList {
    /// Newest first, at most 100.
    pub data: Vec<WebhookDelivery>,
}

fn with_secret(r: svc::EndpointRow) -> WebhookEndpointWithSecret {
    WebhookEndpointWithSecret { id: r.id, url: r.url, enabled: r.enabled, created_at: r.created_at, secret: Some(r.secret) }
}

fn view(r: svc::EndpointRow) -> WebhookEndpoint {
    WebhookEndpoint { id: r.id, url: r.url, enabled: r.enabled, created_at: r.created_at }
}

/// The caller's webhook endpoints.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", responses((status = 200, body = WebhookEndpointList)))]
#[get("/webhooks")]
pub async fn list(who: Reader, pool: web::Data<PgPool>) -> Result<HttpResponse, ApiError> {
    let data = svc::endpoints(&pool, who.0.account_id).await?.into_iter().map(view).collect();
    Ok(HttpResponse::Ok().json(WebhookEndpointList { data }))
}

/// Registers an endpoint; the answer carries its signing secret.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = NewWebhookEndpoint, responses((status = 201, body = WebhookEndpointWithSecret)))]
#[post("/webhooks")]
pub async fn create(who: Writer, pool: web::Data<PgPool>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let input: NewWebhookEndpoint = super::parse(&body)?;
    let who = who.0;
    let addr = req.peer_addr().map(|a| a.ip());
    idempotency::run(&pool, &who.clone(), &req, &body, move |tx| {
        Box::pin(async move {
            let r = svc::create_endpoint_in(tx, who.account_id, &input.url, addr, Some(&who)).await?;
            Ok(Reply::new(StatusCode::CREATED, with_secret(r))?.not_storing(&["secret"]))
        })
    })
    .await
}

/// One endpoint, with its signing secret.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path)), responses((status = 200, body = WebhookEndpointWithSecret)))]
#[get("/webhooks/{id}")]
pub async fn get(who: Reader, pool: web::Data<PgPool>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(with_secret(svc::endpoint(&pool, who.0.account_id, *id).await?)))
}

/// Removes an endpoint (its queued deliveries go with it).
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path)), responses((status = 204, description = "Deleted")))]
#[delete("/webhooks/{id}")]
pub async fn delete(who: Writer, pool: web::Data<PgPool>, req: HttpRequest, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    svc::delete_endpoint(&pool, who.0.account_id, *id, req.peer_addr().map(|a| a.ip()), Some(&who.0)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The endpoint's delivery log, newest first.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = Uuid, Path)), responses((status = 200, body = WebhookDeliveryList)))]
#[get("/webhooks/{id}/deliveries")]
pub async fn deliveries(who: Reader, pool: web::Data<PgPool>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    svc::endpoint(&pool, who.0.account_id, *id).await?;
    let data = svc::deliveries(&pool, who.0.account_id, *id)
        .await?
        .into_iter()
        .map(|d| WebhookDelivery {
            id: d.id,
            event_id: d.event_id,
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            next_attempt_at: d.next_attempt_at,
            delivered_at: d.delivered_at,
            created_at: d.created_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(WebhookDeliveryList { data }))
}
