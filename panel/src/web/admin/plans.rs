//! Admin pages for plans: list, create, edit (validated and versioned like `plans sync`).

use super::forms::{cell, form_page, help, link, list_page, num, text, Field, FormView, ListView};
use super::{admin_err_ref, by, Done};
use crate::admin::{self, PlanForm};
use crate::catalogue::mib;
use crate::db::catalogue as sql_cat;
use crate::web::error::WebError;
use crate::web::pages::{invalid as invalid_page, ok, see_other};
use crate::web::session::{CsrfForm, CurrentAdmin};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use sqlx::PgPool;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(plans).service(plan_new).service(plan_create).service(plan_edit).service(plan_update);
}

fn plan_form_view(f: &PlanForm, editing: Option<&str>) -> FormView {
    let kinds = vec![("container".to_string(), "Burstable container".to_string()), ("kvm".to_string(), "Dedicated KVM".to_string())];
    let mut code = help(text("code", "Code", &f.code), "Lowercase letters, digits, hyphens; permanent.");
    code.readonly = editing.is_some();
    FormView {
        title: match editing {
            Some(c) => format!("Edit plan {c}"),
            None => "New plan".into(),
        },
        action: match editing {
            Some(c) => format!("/admin/plans/{c}"),
            None => "/admin/plans".into(),
        },
        button: "Save plan".into(),
        intro: "Validated exactly like a plan file for `panel plans sync`. A plan in use is never changed under its subscribers: saving makes a new version.".into(),
        fields: vec![
            code,
            text("name", "Name", &f.name),
            Field { kind: "textarea", ..text("description", "Description", &f.description) },
            Field { kind: "select", options: kinds, ..text("kind", "Kind", &f.kind) },
            text("vcpus", "vCPUs", &f.vcpus),
            help(text("memory_guaranteed_mib", "Memory guaranteed (MiB)", &f.memory_guaranteed_mib), "KVM: the machine's memory."),
            help(text("memory_burst_mib", "Memory burst ceiling (MiB)", &f.memory_burst_mib), "At least the guarantee; KVM: equal to it."),
            text("swap_mib", "Swap (MiB)", &f.swap_mib),
            text("disk_gib", "Disk (GiB)", &f.disk_gib),
            help(text("cpu_ratio", "CPU overcommit ratio", &f.cpu_ratio), "1.0 = dedicated cores."),
            help(text("memory_ratio", "Memory overcommit ratio", &f.memory_ratio), "KVM: 1.0."),
            text("disk_ratio", "Disk overcommit ratio", &f.disk_ratio),
            help(text("pids_max", "Max processes", &f.pids_max), "Empty: the default."),
            help(text("net_rate_mbit", "Network rate (Mbit/s)", &f.net_rate_mbit), "Empty: unlimited."),
            help(text("io_weight", "I/O weight (10–1000)", &f.io_weight), "Empty: the default."),
            help(text("bandwidth_gib", "Monthly transfer (GiB)", &f.bandwidth_gib), "Empty: unmetered."),
            help(text("eur_monthly", "EUR monthly (cents)", &f.eur_monthly), "Every currency sold needs a monthly price."),
            text("eur_quarterly", "EUR quarterly (cents)", &f.eur_quarterly),
            text("eur_annual", "EUR annual (cents)", &f.eur_annual),
            text("usd_monthly", "USD monthly (cents)", &f.usd_monthly),
            text("usd_quarterly", "USD quarterly (cents)", &f.usd_quarterly),
            text("usd_annual", "USD annual (cents)", &f.usd_annual),
        ],
        aside: f.to_toml().unwrap_or_default(),
        aside_name: f.code.clone(),
        ..Default::default()
    }
}

#[get("/admin/plans")]
async fn plans(a: CurrentAdmin, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    let all = sql_cat::all_plans(&pool).await?;
    let ids: Vec<i64> = all.iter().map(|p| p.id).collect();
    let prices = sql_cat::prices_of(&pool, &ids).await?;
    let rows = all
        .iter()
        .map(|p| {
            let monthly: Vec<String> = prices
                .iter()
                .filter(|(id, c, _, _)| *id == p.id && *c == crate::plans::BillingCycle::Monthly)
                .filter_map(|(_, _, cur, amt)| {
                    crate::money::Currency::parse(cur).ok().map(|c| crate::money::Money::new(*amt, c).to_string())
                })
                .collect();
            vec![
                if p.orderable { link(&p.code, format!("/admin/plans/{}/edit", p.code)) } else { cell(&p.code) },
                num(p.version),
                cell(&p.name),
                cell(if p.kind == vessel_core::InstanceKind::Kvm { "KVM" } else { "container" }),
                cell(format!("{} vCPU, {} / {} RAM, {} GiB", p.vcpus, mib(p.memory_guaranteed_mib), mib(p.memory_burst_mib), p.disk_gib)),
                cell(format!(
                    "cpu {} · mem {} · disk {}",
                    p.cpu_ratio_milli as f64 / 1000.0,
                    p.memory_ratio_milli as f64 / 1000.0,
                    p.disk_ratio_milli as f64 / 1000.0
                )),
                cell(monthly.join(", ")),
                cell(if p.orderable { "on sale" } else { "retired" }),
            ]
        })
        .collect();
    let list = ListView {
        title: "Plans".into(),
        intro: "Every version of every plan; only the newest version of a plan is on sale.".into(),
        headers: vec!["Code", "Version", "Name", "Kind", "Resources", "Overcommit", "Monthly", "State"],
        rows,
        links: vec![("/admin/plans/new".into(), "New plan".into())],
        ..Default::default()
    };
    ok(&list_page(&a, list, q.done.as_deref()))
}

#[get("/admin/plans/new")]
async fn plan_new(a: CurrentAdmin) -> Result<HttpResponse, WebError> {
    let f = PlanForm {
        kind: "container".into(),
        cpu_ratio: "1.0".into(),
        memory_ratio: "1.0".into(),
        disk_ratio: "1.0".into(),
        ..Default::default()
    };
    let mut v = plan_form_view(&f, None);
    v.aside.clear();
    ok(&form_page(&a, v))
}

#[post("/admin/plans")]
async fn plan_create(req: HttpRequest, a: CurrentAdmin, f: CsrfForm<PlanForm>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    match admin::save_plan(&pool, by(&a, &req), &f.0, None).await {
        Ok((code, _)) => Ok(see_other(&format!("/admin/plans?done=saved#{code}"))),
        Err(e) => {
            admin_err_ref(&e)?;
            let mut v = plan_form_view(&f.0, None).with_error(&e);
            v.aside.clear();
            invalid_page(&form_page(&a, v))
        }
    }
}

#[get("/admin/plans/{code}/edit")]
async fn plan_edit(a: CurrentAdmin, code: web::Path<String>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    let p = sql_cat::plan_by_code_latest(&pool, &code).await?.ok_or(WebError::NotFound)?;
    let prices = sql_cat::prices_of(&pool, &[p.id]).await?;
    let f = PlanForm::from_stored(&p, &prices);
    ok(&form_page(&a, plan_form_view(&f, Some(&p.code))))
}

#[post("/admin/plans/{code}")]
async fn plan_update(
    req: HttpRequest,
    a: CurrentAdmin,
    code: web::Path<String>,
    f: CsrfForm<PlanForm>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    let mut form = f.0;
    form.code = code.to_string();
    match admin::save_plan(&pool, by(&a, &req), &form, Some(&code)).await {
        Ok(_) => Ok(see_other("/admin/plans?done=saved")),
        Err(e) => {
            admin_err_ref(&e)?;
            invalid_page(&form_page(&a, plan_form_view(&form, Some(&code)).with_error(&e)))
        }
    }
}
