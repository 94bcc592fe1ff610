//! `Idempotency-Key` on POST: the request's effect and its response are committed in one
//! transaction with the key. A retry gets the first response again (with
//! `Idempotent-Replayed: true`); a concurrent request with the same key waits for the first
//! and then replays it, so 100 concurrent POSTs with one key make one server. The same key with
//! a different method, path or body is refused. Refusals (4xx) are not stored: fixing the
//! request and retrying with the same key is allowed. Keys are kept 24 hours.

use super::problem::ApiError;
use crate::api_keys::Principal;
use crate::db::{idempotency as sql, Tx};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use futures_util::future::BoxFuture;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

pub const HEADER: &str = "Idempotency-Key";

/// A successful answer: status and JSON body, and the top-level fields of the body that are
/// answered once but never stored for a replay (secrets).
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub unstored: &'static [&'static str],
}

impl Reply {
    pub fn new(status: StatusCode, body: impl serde::Serialize) -> Result<Self, ApiError> {
        Ok(Reply { status, body: serde_json::to_value(body).map_err(|e| ApiError::Internal(e.to_string()))?, unstored: &[] })
    }
    /// Leaves these top-level fields out of the stored copy a retry replays.
    pub fn not_storing(mut self, fields: &'static [&'static str]) -> Self {
        self.unstored = fields;
        self
    }
    fn respond(self, replayed: bool) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        if replayed {
            r.insert_header(("Idempotent-Replayed", "true"));
        }
        if self.body.is_null() {
            r.finish()
        } else {
            r.json(self.body)
        }
    }
}

fn key_of(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers().get(HEADER) else { return Ok(None) };
    let k = v.to_str().map_err(|_| ApiError::BadIdempotencyKey)?;
    if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadIdempotencyKey);
    }
    Ok(Some(k.to_string()))
}

fn fingerprint(req: &HttpRequest, body: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(req.method().as_str());
    h.update(b"\n");
    h.update(req.path());
    h.update(b"\n");
    h.update(body);
    h.finalize().to_vec()
}

/// Runs `work` in a transaction, under the request's Idempotency-Key when it has one.
pub async fn run<F>(pool: &PgPool, who: &Principal, req: &HttpRequest, body: &[u8], work: F) -> Result<HttpResponse, ApiError>
where
    F: for<'t> FnOnce(&'t mut Tx<'static>) -> BoxFuture<'t, Result<Reply, ApiError>>,
{
    let key = key_of(req)?;
    let mut tx = pool.begin().await?;
    if let Some(key) = &key {
        let fp = fingerprint(req, body);
        if !sql::claim(&mut tx, who.account_id, key, &fp).await? {
            let (stored_fp, status, stored) =
                sql::stored(&mut tx, who.account_id, key).await?.ok_or_else(|| ApiError::Internal("idempotency key vanished".into()))?;
            if stored_fp != fp {
                return Err(ApiError::IdempotencyKeyReused);
            }
            let status = status
                .and_then(|s| StatusCode::from_u16(s as u16).ok())
                .ok_or_else(|| ApiError::Internal("idempotency key without response".into()))?;
            return Ok(Reply { status, body: stored.unwrap_or(Value::Null), unstored: &[] }.respond(true));
        }
    }
    let reply = work(&mut tx).await?;
    if let Some(key) = &key {
        let mut stored = reply.body.clone();
        if let Some(o) = stored.as_object_mut() {
            for f in reply.unstored {
                o.remove(*f);
            }
        }
        sql::complete(&mut tx, who.account_id, key, reply.status.as_u16() as i16, &stored).await?;
    }
    tx.commit().await?;
    Ok(reply.respond(false))
}
