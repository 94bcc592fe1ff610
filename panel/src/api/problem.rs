//! The API's errors: RFC 9457 `application/problem+json`, with a stable `type` per kind of
//! error (clients switch on it; the `detail` is for people), the field at fault for validation
//! errors, and the numbers for a quota refusal.

use crate::api_keys::ApiKeyError;
use crate::resellers::ResellerError;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

/// Where the problem types live; `type` is this plus the slug.
pub const TYPE_BASE: &str = "https://vessel.dev/problems/";

/// An RFC 9457 problem document.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of error, e.g. `https://vessel.dev/problems/quota-exceeded`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// The request field at fault (validation errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The quota that would be exceeded: `servers`, `vcpus`, `memory_mib` or `disk_gib`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested: Option<i64>,
    /// The overdue invoices' numbers, oldest first (`payment-overdue`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoices: Option<Vec<String>>,
}

impl Problem {
    /// A plain problem of kind `slug` (the whole panel's one problem+json shape: the API's
    /// errors and the few non-API endpoints that answer machines, such as Stripe's webhook).
    pub fn new(status: actix_web::http::StatusCode, slug: &str, detail: impl std::fmt::Display) -> Self {
        Problem {
            kind: format!("{TYPE_BASE}{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.to_string(),
            field: None,
            quota: None,
            limit: None,
            used: None,
            requested: None,
            invoices: None,
        }
    }

    /// The one place a problem+json answer is built (the API's errors and the machine-facing
    /// endpoints in [`crate::routes`]).
    pub fn response(&self) -> HttpResponse {
        let status = actix_web::http::StatusCode::from_u16(self.status).unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
        HttpResponse::build(status).content_type("application/problem+json").json(self)
    }
}

/// Every problem type: (slug, status, when), for the reference page.
pub const ALL_KINDS: [(&str, u16, &str); 14] = [
    ("unauthorized", 401, "No API key, or an invalid, revoked or inactive one"),
    ("insufficient-scope", 403, "The key lacks the `read` or `write` scope the operation needs"),
    ("not-found", 404, "No such resource, or it belongs to another tenant"),
    ("malformed-request", 400, "The body is not JSON"),
    ("bad-idempotency-key", 400, "The Idempotency-Key header is empty, too long or not visible ASCII"),
    ("validation-failed", 422, "A field is wrong; `field` names it"),
    ("quota-exceeded", 422, "The request would exceed a quota; `quota`, `limit`, `used`, `requested` say which and by how much"),
    ("idempotency-key-reused", 422, "The Idempotency-Key was used within 24 h for a different request"),
    ("payment-overdue", 402, "The paying account has invoices past their due date; `invoices` lists them and `detail` the sum. Nothing is created or grown until they are paid"),
    ("conflict", 409, "The resource's state does not allow this now (e.g. starting a suspended server)"),
    ("payload-too-large", 413, "The body is over 64 KiB"),
    ("method-not-allowed", 405, "The path exists but not with this method"),
    ("rate-limited", 429, "Too many requests for this key; wait `Retry-After` seconds"),
    ("internal", 500, "Our failure; safe to retry with the same Idempotency-Key"),
];

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("this API key lacks the `{0}` scope")]
    InsufficientScope(&'static str),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("the request body is not valid JSON: {0}")]
    Malformed(String),
    #[error("{field}: {detail}")]
    Validation { field: String, detail: String },
    #[error("this would exceed the {quota} quota: limit {limit}, in use {used}, this request needs {requested}")]
    Quota { quota: &'static str, limit: i64, used: i64, requested: i64 },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PaymentOverdue(crate::billing::Overdue),
    #[error("this Idempotency-Key was used with a different request; use a new key for a new request")]
    IdempotencyKeyReused,
    #[error("Idempotency-Key must be 1 to 255 visible ASCII characters")]
    BadIdempotencyKey,
    #[error("the request body is over 64 KiB")]
    TooLarge,
    #[error("this path does not take this method")]
    MethodNotAllowed,
    #[error("too many requests for this API key: retry in {0} s")]
    RateLimited(u64),
    /// Something we need is down (the PDF renderer); worth retrying later.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn validation(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::Validation { field: field.into(), detail: detail.into() }
    }

    /// The stable slug of the problem type.
    pub fn slug(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::InsufficientScope(_) => "insufficient-scope",
            ApiError::NotFound(_) => "not-found",
            ApiError::Malformed(_) => "malformed-request",
            ApiError::Validation { .. } => "validation-failed",
            ApiError::Quota { .. } => "quota-exceeded",
            ApiError::Conflict(_) => "conflict",
            ApiError::PaymentOverdue(_) => "payment-overdue",
            ApiError::IdempotencyKeyReused => "idempotency-key-reused",
            ApiError::BadIdempotencyKey => "bad-idempotency-key",
            ApiError::RateLimited(_) => "rate-limited",
            ApiError::TooLarge => "payload-too-large",
            ApiError::MethodNotAllowed => "method-not-allowed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn problem(&self) -> Problem {
        let detail = match self {
            // Our failure: the log has the cause, the caller gets no internals.
            ApiError::Internal(_) => "something went wrong on our side; the request can be retried".into(),
            ApiError::Validation { detail, .. } => detail.clone(),
            other => other.to_string(),
        };
        let mut p = Problem::new(self.status_code(), self.slug(), detail);
        match self {
            ApiError::Validation { field, .. } => p.field = Some(field.clone()),
            ApiError::Quota { quota, limit, used, requested } => {
                p.quota = Some(quota.to_string());
                p.limit = Some(*limit);
                p.used = Some(*used);
                p.requested = Some(*requested);
            }
            ApiError::PaymentOverdue(o) => p.invoices = Some(o.invoices.clone()),
            _ => {}
        }
        p
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Malformed(_) | ApiError::BadIdempotencyKey => StatusCode::BAD_REQUEST,
            ApiError::Validation { .. } | ApiError::Quota { .. } | ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PaymentOverdue(_) => StatusCode::PAYMENT_REQUIRED,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            tracing::error!(cause = %cause, "API request failed");
        }
        let mut r = self.problem().response();
        match self {
            ApiError::Unauthorized(_) => {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"vessel\""));
            }
            ApiError::RateLimited(secs) => {
                r.headers_mut().insert(header::RETRY_AFTER, secs.to_string().parse().expect("digits are a valid header value"));
            }
            _ => {}
        }
        r
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        // Text the database cannot hold (a NUL, bad encoding) is the caller's input, not our fault.
        if let Some(code) = e.as_database_error().and_then(|d| d.code()) {
            if code == "22021" || code == "22P05" {
                return ApiError::validation("body", "text may not contain NUL or invalid characters");
            }
        }
        ApiError::Internal(format!("database: {e}"))
    }
}

impl From<ResellerError> for ApiError {
    fn from(e: ResellerError) -> Self {
        match e {
            ResellerError::Invalid { field, message } => ApiError::validation(field, message),
            ResellerError::NotFound(what) => ApiError::NotFound(what),
            ResellerError::Quota { quota, limit, used, requested } => ApiError::Quota { quota, limit, used, requested },
            ResellerError::Conflict(m) => ApiError::Conflict(m),
            ResellerError::Overdue(o) => ApiError::PaymentOverdue(o),
            ResellerError::Db(e) => e.into(),
        }
    }
}

impl From<crate::firewall::FirewallError> for ApiError {
    fn from(e: crate::firewall::FirewallError) -> Self {
        use crate::firewall::FirewallError as F;
        match e {
            F::NotFound => ApiError::NotFound("server"),
            F::Terminated => ApiError::Conflict(e.to_string()),
            F::Invalid(_) | F::BadLine { .. } => ApiError::validation("rules", e.to_string()),
            F::Db(e) => e.into(),
        }
    }
}

impl From<ApiKeyError> for ApiError {
    fn from(e: ApiKeyError) -> Self {
        match e {
            ApiKeyError::Db(e) => e.into(),
            ApiKeyError::NotFound => ApiError::NotFound("API key"),
            other if other.refuses_token() => ApiError::Unauthorized(other.to_string()),
            other => ApiError::validation("api_key", other.to_string()),
        }
    }
}
