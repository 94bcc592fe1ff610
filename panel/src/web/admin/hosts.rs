//! Admin pages for hosts: the list, registration (a one-time join token), create and edit.

use super::forms::{cell, check, form_page, help, link, list_page, num, text, FormView, ListView};
use super::{admin_err_ref, by, Done};
use crate::admin::{self, HostForm};
use crate::catalogue::mib;
use crate::config::Settings;
use crate::db::hosts as sql_hosts;
use crate::ids::HostId;
use crate::web::error::WebError;
use crate::web::pages::{invalid as invalid_page, ok, see_other, Ctx};
use crate::web::session::{CsrfForm, CurrentAdmin};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use sqlx::PgPool;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(hosts).service(host_new).service(host_create).service(host_edit).service(host_register).service(host_update);
}

fn host_form_view(f: &HostForm, id: Option<HostId>) -> FormView {
    FormView {
        title: if id.is_some() { format!("Edit host {}", f.name) } else { "New host".into() },
        action: id.map(|i| format!("/admin/hosts/{i}")).unwrap_or_else(|| "/admin/hosts".into()),
        button: "Save host".into(),
        intro: "Capacity is the whole machine; the reserve is kept for the host itself and never sold.".into(),
        fields: vec![
            text("name", "Name", &f.name),
            help(text("api_url", "Provisioner API URL", &f.api_url), "e.g. https://host-fra-1.example.net:7443"),
            check("supports_containers", "Runs burstable containers", f.supports_containers.is_some()),
            check("supports_kvm", "Runs dedicated KVM machines", f.supports_kvm.is_some()),
            text("cpus", "CPUs", &f.cpus),
            text("memory_mib", "Memory (MiB)", &f.memory_mib),
            text("disk_gib", "Disk (GiB)", &f.disk_gib),
            text("reserved_cpus", "Reserved CPUs", &f.reserved_cpus),
            text("reserved_memory_mib", "Reserved memory (MiB)", &f.reserved_memory_mib),
            text("reserved_disk_gib", "Reserved disk (GiB)", &f.reserved_disk_gib),
            check("enabled", "Enabled (new servers may be placed here)", f.enabled.is_some()),
        ],
        ..Default::default()
    }
}

#[get("/admin/hosts")]
async fn hosts(a: CurrentAdmin, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    let rows = sql_hosts::summaries(&pool)
        .await?
        .iter()
        .map(|h| {
            let kinds = match (h.supports_containers, h.supports_kvm) {
                (true, true) => "containers, KVM",
                (true, false) => "containers",
                _ => "KVM",
            };
            vec![
                link(&h.name, format!("/admin/hosts/{}/edit", h.id)),
                cell(&h.api_url),
                cell(kinds),
                cell(format!("{} CPU, {}, {} GiB", h.cpus, mib(h.memory_mib), h.disk_gib)),
                cell(format!("{} CPU, {}, {} GiB", h.reserved_cpus, mib(h.reserved_memory_mib), h.reserved_disk_gib)),
                num(h.instances),
                cell(if h.enabled { "enabled" } else { "disabled" }),
                cell(h.reachability.as_str()),
            ]
        })
        .collect();
    let list = ListView {
        title: "Hosts".into(),
        intro: "Register a host to get its one-time join token: its provisioner joins with it, reports its capacity and receives the secret requests are signed with. Or enter a host's capacity by hand.".into(),
        headers: vec!["Name", "API", "Kinds", "Capacity", "Reserved", "Servers", "State", "Reachability"],
        rows,
        links: vec![("/admin/hosts/new".into(), "New host (by hand)".into())],
        form: Some(register_form(&RegisterForm::default())),
        ..Default::default()
    };
    ok(&list_page(&a, list, q.done.as_deref()))
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct RegisterForm {
    name: String,
    api_url: String,
}

fn register_form(f: &RegisterForm) -> FormView {
    FormView {
        title: "Register a host".into(),
        action: "/admin/hosts/register".into(),
        button: "Register and show the join token".into(),
        fields: vec![
            text("name", "Name", &f.name),
            help(text("api_url", "Provisioner API URL", &f.api_url), "e.g. https://host-fra-1.example.net:7443"),
        ],
        ..Default::default()
    }
}

#[post("/admin/hosts/register")]
async fn host_register(
    req: HttpRequest,
    a: CurrentAdmin,
    f: CsrfForm<RegisterForm>,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, WebError> {
    let api_url = f.0.api_url.trim().trim_end_matches('/').to_string();
    if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
        let mut v = register_form(&f.0);
        v.fields[1].error = Some("must be the provisioner's base URL, starting with https://".into());
        v.error = Some("Please correct the marked field (api_url).".into());
        return invalid_page(&form_page(&a, v));
    }
    let ttl = settings.orchestration.join_token_ttl();
    match crate::hosts::register_for(&pool, Some(a.account.id), &f.0.name, &api_url, ttl).await {
        Ok((id, token)) => {
            tracing::info!(host = %id, from = ?crate::web::remote_addr(&req), "host registered");
            ok(&crate::web::pages::MessagePage {
                ctx: Ctx::of(&a.session),
                heading: format!("Join token for {}", f.0.name.trim()),
                message: format!(
                    "Give this one-time token to the host's provisioner (it is shown only now, expires in {} hours and works once): {token}",
                    ttl.num_hours()
                ),
            })
        }
        Err(crate::hosts::JoinError::Db(e)) if e.as_database_error().is_some_and(|d| d.code().as_deref() == Some("23505")) => {
            let mut v = register_form(&f.0);
            v.fields[0].error = Some("another host has this name".into());
            invalid_page(&form_page(&a, v))
        }
        Err(crate::hosts::JoinError::Db(e)) => Err(e.into()),
        Err(e) => {
            let mut v = register_form(&f.0);
            v.error = Some(e.to_string());
            invalid_page(&form_page(&a, v))
        }
    }
}

#[get("/admin/hosts/new")]
async fn host_new(a: CurrentAdmin) -> Result<HttpResponse, WebError> {
    let f = HostForm {
        supports_containers: Some("on".into()),
        supports_kvm: Some("on".into()),
        enabled: Some("on".into()),
        ..Default::default()
    };
    ok(&form_page(&a, host_form_view(&f, None)))
}

#[post("/admin/hosts")]
async fn host_create(req: HttpRequest, a: CurrentAdmin, f: CsrfForm<HostForm>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    match admin::save_host(&pool, by(&a, &req), None, &f.0).await {
        Ok(_) => Ok(see_other("/admin/hosts?done=saved")),
        Err(e) => {
            admin_err_ref(&e)?;
            invalid_page(&form_page(&a, host_form_view(&f.0, None).with_error(&e)))
        }
    }
}

#[get("/admin/hosts/{id}/edit")]
async fn host_edit(a: CurrentAdmin, id: web::Path<HostId>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    let h = sql_hosts::summary(&pool, *id).await?.ok_or(WebError::NotFound)?;
    ok(&form_page(&a, host_form_view(&HostForm::from_row(&h), Some(h.id))))
}

#[post("/admin/hosts/{id}")]
async fn host_update(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<HostId>,
    f: CsrfForm<HostForm>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    match admin::save_host(&pool, by(&a, &req), Some(*id), &f.0).await {
        Ok(_) => Ok(see_other("/admin/hosts?done=saved")),
        Err(e) => {
            admin_err_ref(&e)?;
            invalid_page(&form_page(&a, host_form_view(&f.0, Some(*id)).with_error(&e)))
        }
    }
}
