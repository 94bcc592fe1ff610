//! Admin pages for resellers: create one (mailed a link to set a password), their terms.

use super::forms::{cell, form_page, help, link, list_page, num, text, FormView, ListView};
use super::{admin_err_ref, by, Done};
use crate::accounts::Role;
use crate::admin::{self, ResellerForm, ResellerTermsForm};
use crate::config::Settings;
use crate::db::admin as sql_admin;
use crate::web::error::WebError;
use crate::web::pages::{invalid as invalid_page, ok, see_other};
use crate::web::session::{CsrfForm, CurrentAdmin};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use sqlx::PgPool;
use uuid::Uuid;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resellers).service(reseller_create).service(reseller_terms).service(reseller_terms_save);
}

async fn resellers_view(pool: &PgPool, f: &ResellerForm) -> Result<ListView, WebError> {
    let mut rows = Vec::new();
    for r in sql_admin::accounts_by_role(pool, Role::Reseller).await? {
        let n = sql_admin::customers_of(pool, r.id).await?;
        rows.push(vec![
            link(&r.email, format!("/admin/resellers/{}", r.id)),
            cell(&r.display_name),
            cell(r.status),
            num(n),
            cell(r.created_at.format("%Y-%m-%d")),
        ]);
    }
    Ok(ListView {
        title: "Resellers".into(),
        intro: "A reseller sells under its own brand and manages its customers through the reseller API.".into(),
        headers: vec!["Email", "Name", "Status", "Customers", "Since"],
        rows,
        form: Some(FormView {
            title: "New reseller".into(),
            action: "/admin/resellers".into(),
            button: "Create reseller".into(),
            intro: "The reseller receives a link to choose its password.".into(),
            fields: vec![text("email", "Email", &f.email), text("name", "Company or name", &f.name)],
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[get("/admin/resellers")]
async fn resellers(a: CurrentAdmin, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    ok(&list_page(&a, resellers_view(&pool, &ResellerForm::default()).await?, q.done.as_deref()))
}

#[post("/admin/resellers")]
async fn reseller_create(
    req: HttpRequest,
    a: CurrentAdmin,
    f: CsrfForm<ResellerForm>,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, WebError> {
    match admin::create_reseller(&pool, by(&a, &req), &settings.http.base_url, settings.resellers.invitation_ttl_days, &f.0).await {
        Ok(_) => Ok(see_other("/admin/resellers?done=saved")),
        Err(e) => {
            admin_err_ref(&e)?;
            let mut v = resellers_view(&pool, &f.0).await?;
            v.form = v.form.map(|fv| fv.with_error(&e));
            invalid_page(&list_page(&a, v, None))
        }
    }
}

/// A reseller's terms: wholesale discount and quotas (the row is made on the first save).
fn reseller_terms_view(r: &sql_admin::AccountRow, f: &ResellerTermsForm, saved: bool) -> FormView {
    FormView {
        title: format!("Terms of {}", r.display_name),
        action: format!("/admin/resellers/{}", r.id),
        button: "Save terms".into(),
        intro: format!(
            "{} · {}. Wholesale price = retail − retail × discount. Quotas bound what the reseller's customers may hold (memory counts the guarantee).{}",
            r.email,
            r.status,
            if saved { "" } else { " These are the standard terms; saving makes them this reseller's own." }
        ),
        fields: vec![
            help(text("discount", "Wholesale discount (%)", &f.discount), "0 to 100, up to two decimals, e.g. 12.50."),
            text("max_servers", "Servers at most", &f.max_servers),
            text("max_vcpus", "vCPUs at most", &f.max_vcpus),
            text("max_memory_mib", "Guaranteed memory at most (MiB)", &f.max_memory_mib),
            text("max_disk_gib", "Disk at most (GiB)", &f.max_disk_gib),
        ],
        ..Default::default()
    }
}

#[get("/admin/resellers/{id}")]
async fn reseller_terms(
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    pool: web::Data<PgPool>,
    q: web::Query<Done>,
) -> Result<HttpResponse, WebError> {
    let r = sql_admin::account(&pool, *id, Role::Reseller).await?.ok_or(WebError::NotFound)?;
    let (t, saved) = match crate::db::resellers::saved_terms(&pool, r.id).await? {
        Some(t) => (t, true),
        None => (crate::db::resellers::default_terms(&pool, r.id).await?, false),
    };
    let f = ResellerTermsForm {
        discount: crate::web::reseller::percent(t.discount_bp),
        max_servers: t.max_servers.to_string(),
        max_vcpus: t.max_vcpus.to_string(),
        max_memory_mib: t.max_memory_mib.to_string(),
        max_disk_gib: t.max_disk_gib.to_string(),
    };
    let mut page = form_page(&a, reseller_terms_view(&r, &f, saved));
    page.ctx = page.ctx.with_notice(q.done.as_deref());
    ok(&page)
}

#[post("/admin/resellers/{id}")]
async fn reseller_terms_save(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    f: CsrfForm<ResellerTermsForm>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    match admin::save_reseller_terms(&pool, by(&a, &req), *id, &f.0).await {
        Ok(()) => Ok(see_other(&format!("/admin/resellers/{id}?done=saved"))),
        Err(e) => {
            admin_err_ref(&e)?;
            let r = sql_admin::account(&pool, *id, Role::Reseller).await?.ok_or(WebError::NotFound)?;
            let saved = crate::db::resellers::saved_terms(&pool, r.id).await?.is_some();
            invalid_page(&form_page(&a, reseller_terms_view(&r, &f.0, saved).with_error(&e)))
        }
    }
}
