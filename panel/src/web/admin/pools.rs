//! Admin pages for IP pools: create one, add its addresses.

use super::forms::{button, cell, check, help, list_page, num, text, Cell, Field, FormView, ListView};
use super::{admin_err_ref, by, Done};
use crate::admin::{self, PoolForm};
use crate::db::{hosts as sql_hosts, ip_pools as sql_pools};
use crate::web::error::WebError;
use crate::web::pages::{invalid as invalid_page, ok, see_other};
use crate::web::session::{CsrfForm, CurrentAdmin};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(pools).service(pool_create).service(pool_generate);
}

async fn pools_view(pool: &PgPool, form: &PoolForm) -> Result<ListView, WebError> {
    let rows = sql_pools::list(pool)
        .await?
        .iter()
        .map(|p| {
            let mut gen = button(format!("/admin/ip-pools/{}/generate", p.id), "Add addresses", "secondary");
            gen.hidden.push(("count".into(), admin::MAX_GENERATE.to_string()));
            vec![
                cell(&p.name),
                cell(&p.network),
                cell(&p.gateway),
                cell(p.dns.join(", ")),
                cell(p.host_name.as_deref().unwrap_or("any host")),
                num(p.total),
                num(p.free),
                Cell { buttons: vec![gen], ..Default::default() },
            ]
        })
        .collect();
    let host_rows = sql_hosts::summaries(pool).await?;
    let mut options = vec![(String::new(), "Any host".to_string())];
    options.extend(host_rows.iter().map(|h| (h.id.to_string(), h.name.clone())));
    Ok(ListView {
        title: "IP pools".into(),
        intro: format!("“Add addresses” adds the pool's usable addresses (not the network, broadcast or gateway), up to {} at a time; it is safe to repeat.", admin::MAX_GENERATE),
        headers: vec!["Name", "Network", "Gateway", "DNS", "Host", "Addresses", "Free", ""],
        rows,
        form: Some(FormView {
            title: "New pool".into(),
            action: "/admin/ip-pools".into(),
            button: "Create pool".into(),
            fields: vec![
                text("name", "Name", &form.name),
                help(text("network", "Network (CIDR)", &form.network), "e.g. 203.0.113.0/24 or 2001:db8:1::/64"),
                text("gateway", "Gateway", &form.gateway),
                help(text("dns", "DNS resolvers", &form.dns), "Comma-separated addresses of the pool's family; empty: 1.1.1.1, 9.9.9.9 (IPv6: Cloudflare's and Quad9's)"),
                Field { kind: "select", options, ..text("host_id", "Routed to host", &form.host_id) },
                help(check("nat", "Private (NAT)", form.nat.is_some()), "Hosts masquerade these addresses to the outside; otherwise the block must be routed to the host"),
            ],
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[get("/admin/ip-pools")]
async fn pools(a: CurrentAdmin, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    ok(&list_page(&a, pools_view(&pool, &PoolForm::default()).await?, q.done.as_deref()))
}

#[post("/admin/ip-pools")]
async fn pool_create(req: HttpRequest, a: CurrentAdmin, f: CsrfForm<PoolForm>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    match admin::create_pool(&pool, by(&a, &req), &f.0).await {
        Ok(_) => Ok(see_other("/admin/ip-pools?done=saved")),
        Err(e) => {
            admin_err_ref(&e)?;
            let mut v = pools_view(&pool, &f.0).await?;
            v.form = v.form.map(|fv| fv.with_error(&e));
            invalid_page(&list_page(&a, v, None))
        }
    }
}

#[derive(Deserialize)]
struct CountForm {
    count: String,
}

#[post("/admin/ip-pools/{id}/generate")]
async fn pool_generate(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    f: CsrfForm<CountForm>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    let count: usize = f.0.count.trim().parse().map_err(|_| WebError::BadForm("count must be a whole number".into()))?;
    match admin::generate_addresses(&pool, by(&a, &req), *id, count).await {
        Ok(_) => Ok(see_other("/admin/ip-pools?done=saved")),
        Err(e) => {
            admin_err_ref(&e)?;
            Err(WebError::Conflict("The pool's stored network is not valid.".into()))
        }
    }
}
