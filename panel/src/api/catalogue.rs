//! `GET /plans` and `GET /os-templates`: what can be ordered, at the caller's prices.

use super::auth::Reader;
use super::models::{OsTemplate, OsTemplateList, Plan, PlanList, Price};
use super::problem::ApiError;
use crate::db::catalogue as sql;
use crate::resellers::{discount_for, wholesale_price};
use actix_web::{get, web, HttpResponse};
use sqlx::PgPool;

async fn plans_for(pool: &PgPool, who: &Reader, only: Option<&str>) -> Result<Vec<Plan>, ApiError> {
    let discount = discount_for(pool, who.0.tenant).await?;
    let rows: Vec<_> = sql::orderable_plans(pool).await?.into_iter().filter(|p| only.is_none_or(|c| p.code == c)).collect();
    let ids: Vec<i64> = rows.iter().map(|p| p.id).collect();
    let prices = sql::prices_of(pool, &ids).await?;
    let unavailable = crate::capacity::unavailable_plans(&mut *pool.acquire().await?).await?;
    Ok(rows
        .into_iter()
        .map(|p| Plan {
            prices: prices
                .iter()
                .filter(|(id, ..)| *id == p.id)
                .map(|(_, cycle, currency, amount)| Price {
                    cycle: cycle.to_string(),
                    currency: currency.clone(),
                    retail_minor: *amount,
                    wholesale_minor: wholesale_price(*amount, discount),
                })
                .collect(),
            available: !unavailable.contains_key(&p.id),
            unavailable_reason: unavailable.get(&p.id).cloned(),
            code: p.code,
            name: p.name,
            description: p.description,
            kind: p.kind.as_str().to_string(),
            vcpus: p.vcpus,
            memory_guaranteed_mib: p.memory_guaranteed_mib,
            memory_burst_mib: p.memory_burst_mib,
            swap_mib: p.swap_mib,
            disk_gib: p.disk_gib,
            bandwidth_gib: p.bandwidth_gib,
        })
        .collect())
}

/// Orderable plans with their retail prices and the caller's wholesale prices.
#[utoipa::path(get, path = "/api/v1/plans", tag = "catalogue", responses((status = 200, body = PlanList)))]
#[get("/plans")]
pub async fn plans(who: Reader, pool: web::Data<PgPool>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(PlanList { data: plans_for(&pool, &who, None).await? }))
}

/// One orderable plan.
#[utoipa::path(get, path = "/api/v1/plans/{code}", tag = "catalogue",
    params(("code" = String, Path, description = "The plan's code, e.g. `burst-s`")),
    responses((status = 200, body = Plan)))]
#[get("/plans/{code}")]
pub async fn plan(who: Reader, pool: web::Data<PgPool>, code: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let plan = plans_for(&pool, &who, Some(code.as_str())).await?.into_iter().next().ok_or(ApiError::NotFound("plan"))?;
    Ok(HttpResponse::Ok().json(plan))
}

/// OS templates that can be installed.
#[utoipa::path(get, path = "/api/v1/os-templates", tag = "catalogue", responses((status = 200, body = OsTemplateList)))]
#[get("/os-templates")]
pub async fn os_templates(_who: Reader, pool: web::Data<PgPool>) -> Result<HttpResponse, ApiError> {
    let data = sql::os_templates(&pool, true)
        .await?
        .into_iter()
        .map(|t| OsTemplate {
            name: t.name,
            display_name: t.display_name,
            version: t.version,
            for_containers: t.for_containers,
            for_kvm: t.for_kvm,
        })
        .collect();
    Ok(HttpResponse::Ok().json(OsTemplateList { data }))
}
