//! Who is calling: the bearer key, checked against its hash, its scopes and its rate limit.
//! Handlers take [`Reader`] or [`Writer`]; a key without that scope gets a 403 before the
//! handler runs.

use super::problem::ApiError;
use crate::api_keys::{self, Principal, Scope};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use sqlx::PgPool;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use uuid::Uuid;

/// Requests per key, a token bucket per panel process: `per_minute` sustained, `burst` at once.
/// (Several panel processes each keep their own buckets; the limit is per process.)
pub struct ApiLimiter {
    limiter: RateLimiter<Uuid, DefaultKeyedStateStore<Uuid>, DefaultClock>,
    clock: DefaultClock,
}

impl ApiLimiter {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        ApiLimiter { limiter: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)), clock: DefaultClock::default() }
    }

    /// Ok, or the whole seconds to wait.
    pub fn check(&self, key: Uuid) -> Result<(), u64> {
        match self.limiter.check_key(&key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
        }
    }
}

async fn authenticate(req: HttpRequest, scope: Scope) -> Result<Principal, ApiError> {
    let pool = req.app_data::<web::Data<PgPool>>().ok_or_else(|| ApiError::Internal("no database pool".into()))?;
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .ok_or(ApiError::Unauthorized(api_keys::ApiKeyError::Missing.to_string()))?;
    let who = api_keys::authenticate(pool, token).await?;
    if let Some(limiter) = req.app_data::<web::Data<ApiLimiter>>() {
        limiter.check(who.key_id).map_err(ApiError::RateLimited)?;
    }
    if !who.has(scope) {
        return Err(ApiError::InsufficientScope(scope.as_str()));
    }
    Ok(who)
}

/// A caller whose key has the `read` scope.
pub struct Reader(pub Principal);
/// A caller whose key has the `write` scope.
pub struct Writer(pub Principal);

impl FromRequest for Reader {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(req, Scope::Read).await.map(Reader) })
    }
}

impl FromRequest for Writer {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(req, Scope::Write).await.map(Writer) })
    }
}
