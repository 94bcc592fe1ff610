//! `GET /quota`: a reseller's limits and what it uses now.

use super::auth::Reader;
use super::models::{Quota, QuotaItem};
use super::problem::ApiError;
use crate::api_keys::Tenant;
use actix_web::{get, web, HttpResponse};
use serde::Deserialize;
use sqlx::PgPool;
use utoipa::IntoParams;
use uuid::Uuid;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuotaQuery {
    /// Admin keys: whose quota (reseller keys always see their own).
    pub reseller_id: Option<Uuid>,
}

/// The reseller's quotas (servers, vCPUs, guaranteed memory, disk) with current use.
#[utoipa::path(get, path = "/api/v1/quota", tag = "account", params(QuotaQuery), responses((status = 200, body = Quota)))]
#[get("/quota")]
pub async fn get(who: Reader, pool: web::Data<PgPool>, q: web::Query<QuotaQuery>) -> Result<HttpResponse, ApiError> {
    let reseller = match who.0.tenant {
        Tenant::Reseller(r) => r,
        Tenant::All => {
            let r = q.reseller_id.ok_or_else(|| ApiError::validation("reseller_id", "an admin key names the reseller"))?;
            match crate::db::accounts::account_facts(pool.get_ref(), r).await? {
                Some((crate::accounts::Role::Reseller, ..)) => r,
                _ => return Err(ApiError::NotFound("reseller")),
            }
        }
    };
    let (terms, used) = crate::resellers::quota(&pool, reseller).await?;
    Ok(HttpResponse::Ok().json(Quota {
        reseller_id: reseller,
        servers: QuotaItem { limit: terms.max_servers.into(), used: used.servers },
        vcpus: QuotaItem { limit: terms.max_vcpus.into(), used: used.vcpus },
        memory_mib: QuotaItem { limit: terms.max_memory_mib, used: used.memory_mib },
        disk_gib: QuotaItem { limit: terms.max_disk_gib, used: used.disk_gib },
        discount_bp: terms.discount_bp,
    }))
}
