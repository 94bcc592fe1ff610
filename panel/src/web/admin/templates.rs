//! Admin pages for OS templates: add one (only what hosts build), enable or disable it.

use super::forms::{button, cell, check, help, list_page, text, Cell, FormView, ListView};
use super::{admin_err_ref, by, Done, ToForm};
use crate::admin::{self, OsTemplateForm};
use crate::db::catalogue as sql_cat;
use crate::web::error::WebError;
use crate::web::pages::{invalid as invalid_page, ok, see_other};
use crate::web::session::{CsrfForm, CurrentAdmin};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use sqlx::PgPool;
use uuid::Uuid;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(os_templates).service(os_template_create).service(os_template_toggle);
}

async fn templates_view(pool: &PgPool, f: &OsTemplateForm) -> Result<ListView, WebError> {
    let rows = sql_cat::os_templates(pool, false)
        .await?
        .iter()
        .map(|t| {
            let (label, to) = if t.enabled { ("Disable", "disable") } else { ("Enable", "enable") };
            let mut b = button(format!("/admin/os-templates/{}/toggle", t.id), label, "secondary");
            b.hidden.push(("to".into(), to.into()));
            vec![
                cell(&t.name),
                cell(&t.display_name),
                cell(&t.version),
                cell(match (t.for_containers, t.for_kvm) {
                    (true, true) => "containers, KVM",
                    (true, false) => "containers",
                    _ => "KVM",
                }),
                cell(t.sha256.as_deref().map(|s| &s[..12]).unwrap_or("—")),
                cell(if t.enabled { "offered" } else { "hidden" }),
                Cell { buttons: vec![b], ..Default::default() },
            ]
        })
        .collect();
    Ok(ListView {
        title: "OS templates".into(),
        headers: vec!["Name", "Shown as", "Version", "For", "sha256", "State", ""],
        rows,
        form: Some(FormView {
            title: "New OS template".into(),
            action: "/admin/os-templates".into(),
            button: "Add template".into(),
            fields: vec![
                help(text("name", "Name", &f.name), &format!("One the hosts build: {}", vessel_core::templates::known_names())),
                text("display_name", "Shown to customers as", &f.display_name),
                text("version", "Version", &f.version),
                check("for_containers", "For containers", f.for_containers.is_some()),
                check("for_kvm", "For KVM machines", f.for_kvm.is_some()),
                help(text("sha256", "sha256 of the image", &f.sha256), "Optional; hosts check it."),
            ],
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[get("/admin/os-templates")]
async fn os_templates(a: CurrentAdmin, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    let f = OsTemplateForm { for_containers: Some("on".into()), for_kvm: Some("on".into()), ..Default::default() };
    ok(&list_page(&a, templates_view(&pool, &f).await?, q.done.as_deref()))
}

#[post("/admin/os-templates")]
async fn os_template_create(
    req: HttpRequest,
    a: CurrentAdmin,
    f: CsrfForm<OsTemplateForm>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    match admin::create_os_template(&pool, by(&a, &req), &f.0).await {
        Ok(_) => Ok(see_other("/admin/os-templates?done=saved")),
        Err(e) => {
            admin_err_ref(&e)?;
            let mut v = templates_view(&pool, &f.0).await?;
            v.form = v.form.map(|fv| fv.with_error(&e));
            invalid_page(&list_page(&a, v, None))
        }
    }
}

#[post("/admin/os-templates/{id}/toggle")]
async fn os_template_toggle(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    f: CsrfForm<ToForm>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    let enabled = match f.0.to.as_str() {
        "enable" => true,
        "disable" => false,
        _ => return Err(WebError::BadForm("to must be enable or disable".into())),
    };
    admin::set_os_template_enabled(&pool, by(&a, &req), *id, enabled).await.or_else(|e| admin_err_ref(&e))?;
    Ok(see_other("/admin/os-templates?done=saved"))
}
