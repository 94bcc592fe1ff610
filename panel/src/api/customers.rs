//! `/customers`: a reseller's sub-accounts (an admin sees all customers).

use super::auth::{Reader, Writer};
use super::idempotency::{self, Reply};
use super::models::{Customer, CustomerChange, CustomerList, NewCustomer};
use super::pagination;
use super::problem::ApiError;
use crate::resellers::customers as svc;
use actix_web::http::StatusCode;
use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use sqlx::PgPool;
use utoipa::IntoParams;
use uuid::Uuid;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CustomerQuery {
    /// Only the customer with this email.
    pub email: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 25).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// The caller's customers, newest first.
#[utoipa::path(get, path = "/api/v1/customers", tag = "customers", params(CustomerQuery), responses((status = 200, body = CustomerList)))]
#[get("/customers")]
pub async fn list(who: Reader, pool: web::Data<PgPool>, q: web::Query<CustomerQuery>) -> Result<HttpResponse, ApiError> {
    let limit = pagination::limit(q.limit)?;
    let after = q.cursor.as_deref().map(pagination::decode).transpose()?;
    let rows = svc::list(&pool, who.0.tenant, q.email.as_deref(), after, limit + 1).await?;
    let (rows, next_cursor) = pagination::page(rows, limit, |r| (r.created_at, r.id));
    Ok(HttpResponse::Ok().json(CustomerList { data: rows.into_iter().map(Customer::from).collect(), next_cursor }))
}

/// Creates a customer (a sub-account that does not log in to the panel).
#[utoipa::path(post, path = "/api/v1/customers", tag = "customers", request_body = NewCustomer,
    responses((status = 201, body = Customer)))]
#[post("/customers")]
pub async fn create(who: Writer, pool: web::Data<PgPool>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let input: NewCustomer = super::parse(&body)?;
    let who = who.0;
    idempotency::run(&pool, &who.clone(), &req, &body, move |tx| {
        Box::pin(async move {
            let row = svc::create(
                tx,
                &who,
                svc::NewCustomer { email: input.email, name: input.name, country: input.country, reseller_id: input.reseller_id },
            )
            .await?;
            Reply::new(StatusCode::CREATED, Customer::from(row))
        })
    })
    .await
}

/// One customer.
#[utoipa::path(get, path = "/api/v1/customers/{id}", tag = "customers", params(("id" = Uuid, Path)), responses((status = 200, body = Customer)))]
#[get("/customers/{id}")]
pub async fn get(who: Reader, pool: web::Data<PgPool>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(Customer::from(svc::get(&pool, who.0.tenant, *id).await?)))
}

/// Changes a customer's name, country or status. Suspending a customer suspends its servers;
/// reactivating it returns each to the state it had.
#[utoipa::path(patch, path = "/api/v1/customers/{id}", tag = "customers", params(("id" = Uuid, Path)), request_body = CustomerChange,
    responses((status = 200, body = Customer)))]
#[patch("/customers/{id}")]
pub async fn update(
    who: Writer,
    pool: web::Data<PgPool>,
    clock: web::Data<std::sync::Arc<dyn crate::clock::Clock>>,
    id: web::Path<Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let c: CustomerChange = super::parse(&body)?;
    let change = svc::CustomerChange {
        name: c.name,
        country: c.country.map(|s| if s.trim().is_empty() { None } else { Some(s) }),
        status: c.status,
    };
    Ok(HttpResponse::Ok().json(Customer::from(svc::update(&pool, &who.0, clock.now(), *id, change).await?)))
}

/// Deletes a customer without live servers (terminate them first).
#[utoipa::path(delete, path = "/api/v1/customers/{id}", tag = "customers", params(("id" = Uuid, Path)), responses((status = 204, description = "Deleted")))]
#[delete("/customers/{id}")]
pub async fn delete(who: Writer, pool: web::Data<PgPool>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    svc::delete(&pool, &who.0, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
