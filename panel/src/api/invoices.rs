//! `GET /invoices/{id}/pdf`: the caller's own invoice or credit note as its archived PDF (an
//! admin key: any), byte for byte the same on every download.

use super::auth::Reader;
use super::problem::ApiError;
use crate::api_keys::Tenant;
use crate::billing;
use crate::config::Settings;
use actix_web::{get, web, HttpResponse};
use sqlx::PgPool;
use uuid::Uuid;

/// The PDF of one of your invoices or credit notes (archived when issued; every download is
/// the same bytes).
#[utoipa::path(get, path = "/api/v1/invoices/{id}/pdf", tag = "account",
    params(("id" = Uuid, Path, description = "The invoice's id (as in the `invoice.*` webhook events)")),
    responses((status = 200, description = "The invoice as a PDF", content_type = "application/pdf")))]
#[get("/invoices/{id}/pdf")]
pub async fn pdf(
    who: Reader,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let found = match who.0.tenant {
        Tenant::Reseller(r) => billing::invoices::get_for(&pool, r, *id).await,
        Tenant::All => billing::invoices::get(&pool, *id).await,
    }
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (row, lines) =
        found.filter(|(row, _)| row.status != crate::billing::invoices::InvoiceStatus::Draft).ok_or(ApiError::NotFound("invoice"))?;
    let number = billing::invoices::display_number(&row);
    let pdf = crate::web::customer::invoice_pdf(&pool, &settings.billing.pdf_chromium, row, lines).await.map_err(|e| match e {
        crate::web::error::WebError::NotFound => ApiError::NotFound("invoice"),
        crate::web::error::WebError::Unavailable(why) => ApiError::Unavailable(why),
        crate::web::error::WebError::Conflict(why) => ApiError::Conflict(why),
        e => ApiError::Internal(e.to_string()),
    })?;
    Ok(crate::web::customer::pdf_response(&number, pdf))
}
