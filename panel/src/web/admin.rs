//! The admin area: thin handlers over [`crate::admin`] (catalogue and accounts) and the lead's
//! billing services. Every page needs a logged-in admin (anyone else: 404); every change is
//! audited by the service with the admin's id and remote address.

use super::error::WebError;
use super::pages::{invalid as invalid_page, ok, see_other, Ctx};
use super::session::{CsrfForm, CurrentAdmin};
use crate::accounts::Role;
use crate::admin::{self, AdminError, By, HostForm, OsTemplateForm, PlanForm, PoolForm, ResellerForm, ResellerTermsForm};
use crate::catalogue::mib;
use crate::config::Settings;
use crate::db::{admin as sql_admin, catalogue as sql_cat, hosts as sql_hosts, ip_pools as sql_pools};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(dashboard)
        .service(plans)
        .service(plan_new)
        .service(plan_create)
        .service(plan_edit)
        .service(plan_update)
        .service(hosts)
        .service(host_new)
        .service(host_create)
        .service(host_edit)
        .service(host_register)
        .service(host_update)
        .service(pools)
        .service(pool_create)
        .service(pool_generate)
        .service(os_templates)
        .service(os_template_create)
        .service(os_template_toggle)
        .service(customers)
        .service(customer_show)
        .service(customer_suspend)
        .service(customer_mark_verified)
        .service(customer_resend_verification)
        .service(customer_credit)
        .service(customer_invoice)
        .service(invoices)
        .service(invoice_show)
        .service(invoice_void)
        .service(invoice_payment)
        .service(resellers)
        .service(reseller_create)
        .service(reseller_terms)
        .service(reseller_terms_save)
        .service(audit_log)
        .service(emails)
        .service(email_show)
        .service(security)
        .service(security_save);
}

fn by(a: &CurrentAdmin, req: &HttpRequest) -> By {
    By { admin: a.account.id, addr: super::remote_addr(req) }
}

// ------------------------------------------------------------------ generic views

#[derive(Clone, Debug, Default)]
pub struct Field {
    pub name: String,
    pub label: String,
    pub value: String,
    pub kind: &'static str,
    pub options: Vec<(String, String)>,
    pub help: String,
    pub error: Option<String>,
    pub readonly: bool,
}

fn text(name: &str, label: &str, value: &str) -> Field {
    Field { name: name.into(), label: label.into(), value: value.into(), kind: "text", ..Default::default() }
}
fn check(name: &str, label: &str, on: bool) -> Field {
    Field {
        name: name.into(),
        label: label.into(),
        value: if on { "on".into() } else { String::new() },
        kind: "checkbox",
        ..Default::default()
    }
}
fn help(mut f: Field, h: &str) -> Field {
    f.help = h.into();
    f
}

#[derive(Clone, Debug, Default)]
pub struct FormView {
    pub title: String,
    pub action: String,
    pub button: String,
    pub intro: String,
    pub fields: Vec<Field>,
    pub error: Option<String>,
    pub aside: String,
    pub aside_name: String,
}

impl FormView {
    /// Puts a service's complaint next to its field, or on top of the form.
    fn with_error(mut self, e: &AdminError) -> Self {
        if let AdminError::Invalid { field, message } = e {
            if let Some(f) = self.fields.iter_mut().find(|f| &f.name == field) {
                f.error = Some(message.clone());
                self.error = Some(format!("Please correct the marked field ({field})."));
                return self;
            }
        }
        self.error = Some(e.to_string());
        self
    }
}

#[derive(Clone, Debug, Default)]
pub struct Btn {
    pub action: String,
    pub label: String,
    pub class: &'static str,
    pub hidden: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default)]
pub struct Cell {
    pub text: String,
    pub href: Option<String>,
    pub class: &'static str,
    pub buttons: Vec<Btn>,
}

fn cell(t: impl ToString) -> Cell {
    Cell { text: t.to_string(), ..Default::default() }
}
fn num(t: impl ToString) -> Cell {
    Cell { text: t.to_string(), class: "num", ..Default::default() }
}
fn link(t: impl ToString, href: String) -> Cell {
    Cell { text: t.to_string(), href: Some(href), ..Default::default() }
}
fn button(action: String, label: &str, class: &'static str) -> Btn {
    Btn { action, label: label.into(), class, hidden: Vec::new() }
}

#[derive(Clone, Debug, Default)]
pub struct ListView {
    pub title: String,
    pub intro: String,
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
    pub links: Vec<(String, String)>,
    pub form: Option<FormView>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/form.html")]
struct FormPage {
    ctx: Ctx,
    form: FormView,
}

#[derive(Template)]
#[template(path = "admin/list.html")]
struct ListPage {
    ctx: Ctx,
    list: ListView,
}

fn form_page(a: &CurrentAdmin, form: FormView) -> FormPage {
    FormPage { ctx: Ctx::of(&a.session), form }
}

fn list_page(a: &CurrentAdmin, list: ListView, done: Option<&str>) -> ListPage {
    ListPage { ctx: Ctx::of(&a.session).with_notice(done), list }
}

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
}

// ------------------------------------------------------------------ dashboard

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage {
    ctx: Ctx,
    stats: Vec<(&'static str, i64, &'static str)>,
}

#[get("/admin")]
async fn dashboard(a: CurrentAdmin, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    let counts = crate::db::admin_stats(&pool).await?;
    ok(&DashboardPage { ctx: Ctx::of(&a.session), stats: counts })
}

// ------------------------------------------------------------------ plans

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

/// A service outcome for a form: a user mistake re-renders (422) with its field marked, anything
/// else fails as [`WebError`]'s `From<AdminError>` says.
fn admin_err_ref(e: &AdminError) -> Result<(), WebError> {
    match e {
        AdminError::NotFound => Err(WebError::NotFound),
        AdminError::Db(e) => Err(WebError::internal(format!("database: {e}"))),
        AdminError::Invalid { .. } => Ok(()),
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

// ------------------------------------------------------------------ hosts

fn host_form_view(f: &HostForm, id: Option<Uuid>) -> FormView {
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
            tracing::info!(host = %id, from = ?super::remote_addr(&req), "host registered");
            ok(&super::pages::MessagePage {
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
async fn host_edit(a: CurrentAdmin, id: web::Path<Uuid>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    let h = sql_hosts::summary(&pool, *id).await?.ok_or(WebError::NotFound)?;
    ok(&form_page(&a, host_form_view(&HostForm::from_row(&h), Some(h.id))))
}

#[post("/admin/hosts/{id}")]
async fn host_update(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
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

// ------------------------------------------------------------------ IP pools

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

// ------------------------------------------------------------------ OS templates

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

#[derive(Deserialize)]
struct ToForm {
    to: String,
    /// A customer's suspension: why (mailed to them).
    #[serde(default)]
    reason: String,
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

// ------------------------------------------------------------------ customers

#[get("/admin/customers")]
async fn customers(a: CurrentAdmin, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    let rows = sql_admin::accounts_by_role(&pool, Role::Customer)
        .await?
        .iter()
        .map(|c| {
            vec![
                link(&c.email, format!("/admin/customers/{}", c.id)),
                cell(&c.display_name),
                cell(&c.status),
                cell(c.country.as_deref().unwrap_or("—")),
                cell(c.reseller_email.as_deref().unwrap_or("—")),
                cell(c.created_at.format("%Y-%m-%d %H:%M UTC")),
            ]
        })
        .collect();
    let list = ListView {
        title: "Customers".into(),
        headers: vec!["Email", "Name", "Status", "Country", "Reseller", "Since"],
        rows,
        ..Default::default()
    };
    ok(&list_page(&a, list, q.done.as_deref()))
}

#[derive(Template)]
#[template(path = "admin/customer.html")]
struct CustomerPage {
    ctx: Ctx,
    c: sql_admin::AccountRow,
    extra: super::customer::AdminCustomerExtra,
    error: Option<String>,
}

async fn customer_page(a: &CurrentAdmin, pool: &PgPool, id: Uuid, error: Option<String>) -> Result<CustomerPage, WebError> {
    let c = sql_admin::account(pool, id, Role::Customer).await?.ok_or(WebError::NotFound)?;
    let extra = super::customer::admin_customer_extra(pool, &c).await?;
    Ok(CustomerPage { ctx: Ctx::of(&a.session), c, extra, error })
}

#[get("/admin/customers/{id}")]
async fn customer_show(
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    pool: web::Data<PgPool>,
    q: web::Query<Done>,
) -> Result<HttpResponse, WebError> {
    let mut page = customer_page(&a, &pool, *id, None).await?;
    page.ctx = page.ctx.with_notice(q.done.as_deref());
    ok(&page)
}

#[derive(Deserialize)]
struct PaymentForm {
    amount: String,
    reference: String,
}

/// Money received outside the gateway (a bank transfer) becomes the customer's credit.
#[post("/admin/customers/{id}/credit")]
async fn customer_credit(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    f: CsrfForm<PaymentForm>,
    pool: web::Data<PgPool>,
    clock: web::Data<std::sync::Arc<dyn crate::clock::Clock>>,
) -> Result<HttpResponse, WebError> {
    let c = sql_admin::account(&pool, *id, Role::Customer).await?.ok_or(WebError::NotFound)?;
    let cur = crate::money::Currency::parse(&c.currency).map_err(WebError::internal)?;
    let amount = match admin::parse_amount(&f.0.amount, cur) {
        Ok(m) => m,
        Err(e) => return invalid_page(&customer_page(&a, &pool, *id, Some(format!("Amount: {e}"))).await?),
    };
    let r = crate::billing::payments::record_manual_payment(
        &pool,
        clock.as_ref().as_ref(),
        a.account.id,
        c.id,
        amount,
        &f.0.reference,
        None,
        super::remote_addr(&req),
    )
    .await;
    match r {
        Ok(_) => Ok(see_other(&format!("/admin/customers/{id}?done=saved"))),
        Err(e) => invalid_page(&customer_page(&a, &pool, *id, Some(WebError::mistake(e)?)).await?),
    }
}

#[derive(Deserialize)]
struct ChargeForm {
    description: String,
    amount: String,
}

#[post("/admin/customers/{id}/invoice")]
async fn customer_invoice(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    f: CsrfForm<ChargeForm>,
    pool: web::Data<PgPool>,
    clock: web::Data<std::sync::Arc<dyn crate::clock::Clock>>,
) -> Result<HttpResponse, WebError> {
    let c = sql_admin::account(&pool, *id, Role::Customer).await?.ok_or(WebError::NotFound)?;
    let cur = crate::money::Currency::parse(&c.currency).map_err(WebError::internal)?;
    let amount = match admin::parse_amount(&f.0.amount, cur) {
        Ok(m) => m,
        Err(e) => return invalid_page(&customer_page(&a, &pool, *id, Some(format!("Amount: {e}"))).await?),
    };
    match admin::issue_invoice(&pool, clock.as_ref().as_ref(), by(&a, &req), c.id, &f.0.description, amount).await {
        Ok(inv) => Ok(see_other(&format!("/admin/invoices/{inv}?done=saved"))),
        Err(e) => {
            admin_err_ref(&e)?;
            invalid_page(&customer_page(&a, &pool, *id, Some(e.to_string())).await?)
        }
    }
}

// ------------------------------------------------------------------ invoices

#[get("/admin/invoices")]
async fn invoices(a: CurrentAdmin, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    let all = crate::billing::invoices::list_all(&pool, 500).await?;
    let rows = all
        .into_iter()
        .filter(|r| r.status != crate::billing::invoices::InvoiceStatus::Draft)
        .map(super::customer::InvoiceView::from_row)
        .map(|i| {
            vec![
                link(&i.number, format!("/admin/invoices/{}", i.row.id)),
                link("customer", format!("/admin/customers/{}", i.row.account_id)),
                cell(&i.issued),
                cell(&i.due),
                num(&i.total),
                cell(&i.row.status),
            ]
        })
        .collect();
    let list = ListView {
        title: "Invoices".into(),
        intro: "Issued invoices and credit notes, newest first. Issue a one-off invoice from a customer's page.".into(),
        headers: vec!["Number", "Customer", "Issued", "Due", "Total", "State"],
        rows,
        ..Default::default()
    };
    ok(&list_page(&a, list, q.done.as_deref()))
}

#[derive(Template)]
#[template(path = "admin/invoice.html")]
struct AdminInvoicePage {
    ctx: Ctx,
    inv: super::customer::InvoiceView,
    amount: String,
    error: Option<String>,
}

async fn admin_invoice_page(a: &CurrentAdmin, pool: &PgPool, id: Uuid, error: Option<String>) -> Result<AdminInvoicePage, WebError> {
    let (row, lines) = crate::billing::invoices::get(pool, id).await?.ok_or(WebError::NotFound)?;
    let cur = crate::money::Currency::parse(&row.currency).map_err(WebError::internal)?;
    let exp = cur.exponent();
    let amount = if exp == 0 {
        row.total_minor.to_string()
    } else {
        let s = 10i64.pow(exp);
        format!("{}.{:0w$}", row.total_minor / s, row.total_minor % s, w = exp as usize)
    };
    Ok(AdminInvoicePage { ctx: Ctx::of(&a.session), inv: super::customer::InvoiceView::new(row, lines), amount, error })
}

#[get("/admin/invoices/{id}")]
async fn invoice_show(
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    pool: web::Data<PgPool>,
    q: web::Query<Done>,
) -> Result<HttpResponse, WebError> {
    let mut page = admin_invoice_page(&a, &pool, *id, None).await?;
    page.ctx = page.ctx.with_notice(q.done.as_deref());
    ok(&page)
}

#[post("/admin/invoices/{id}/void")]
async fn invoice_void(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    _f: CsrfForm<serde_json::Map<String, serde_json::Value>>,
    pool: web::Data<PgPool>,
    clock: web::Data<std::sync::Arc<dyn crate::clock::Clock>>,
) -> Result<HttpResponse, WebError> {
    let r =
        crate::billing::invoices::void_with_credit_note(&pool, clock.as_ref().as_ref(), a.account.id, *id, super::remote_addr(&req)).await;
    match r {
        Ok(cn) => Ok(see_other(&format!("/admin/invoices/{cn}?done=saved"))),
        Err(e) => invalid_page(&admin_invoice_page(&a, &pool, *id, Some(WebError::mistake(e)?)).await?),
    }
}

#[post("/admin/invoices/{id}/payment")]
async fn invoice_payment(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    f: CsrfForm<PaymentForm>,
    pool: web::Data<PgPool>,
    clock: web::Data<std::sync::Arc<dyn crate::clock::Clock>>,
) -> Result<HttpResponse, WebError> {
    let (row, _) = crate::billing::invoices::get(&pool, *id).await?.ok_or(WebError::NotFound)?;
    let cur = crate::money::Currency::parse(&row.currency).map_err(WebError::internal)?;
    let amount = match admin::parse_amount(&f.0.amount, cur) {
        Ok(m) => m,
        Err(e) => return invalid_page(&admin_invoice_page(&a, &pool, *id, Some(format!("Amount: {e}"))).await?),
    };
    let r = crate::billing::payments::record_manual_payment(
        &pool,
        clock.as_ref().as_ref(),
        a.account.id,
        row.account_id,
        amount,
        &f.0.reference,
        Some(row.id),
        super::remote_addr(&req),
    )
    .await;
    match r {
        Ok(_) => Ok(see_other(&format!("/admin/invoices/{id}?done=saved"))),
        Err(e) => invalid_page(&admin_invoice_page(&a, &pool, *id, Some(WebError::mistake(e)?)).await?),
    }
}

#[post("/admin/customers/{id}/status")]
async fn customer_suspend(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    f: CsrfForm<ToForm>,
    pool: web::Data<PgPool>,
    clock: web::Data<std::sync::Arc<dyn crate::clock::Clock>>,
) -> Result<HttpResponse, WebError> {
    let suspend = match f.0.to.as_str() {
        "suspend" => true,
        "unsuspend" => false,
        _ => return Err(WebError::BadForm("to must be suspend or unsuspend".into())),
    };
    sql_admin::account(&pool, *id, Role::Customer).await?.ok_or(WebError::NotFound)?;
    match admin::set_customer_suspended(&pool, by(&a, &req), *id, suspend, &f.0.reason, clock.now()).await {
        Ok(_) => Ok(see_other(&format!("/admin/customers/{id}?done=saved"))),
        Err(e) => invalid_page(&customer_page(&a, &pool, *id, Some(WebError::mistake(e)?)).await?),
    }
}

/// Any form with nothing but its CSRF token.
type Empty = CsrfForm<serde_json::Map<String, serde_json::Value>>;

/// A stuck sign-up (the mail never arrived): the admin vouches for the address.
#[post("/admin/customers/{id}/mark-verified")]
async fn customer_mark_verified(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    _f: Empty,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    sql_admin::account(&pool, *id, Role::Customer).await?.ok_or(WebError::NotFound)?;
    match admin::mark_customer_verified(&pool, by(&a, &req), *id).await {
        Ok(()) => Ok(see_other(&format!("/admin/customers/{id}?done=saved"))),
        Err(e) => invalid_page(&customer_page(&a, &pool, *id, Some(WebError::mistake(e)?)).await?),
    }
}

/// A stuck sign-up: a fresh verification link by mail.
#[post("/admin/customers/{id}/resend-verification")]
async fn customer_resend_verification(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    _f: Empty,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, WebError> {
    sql_admin::account(&pool, *id, Role::Customer).await?.ok_or(WebError::NotFound)?;
    match admin::resend_customer_verification(&pool, by(&a, &req), &settings.http.base_url, *id).await {
        Ok(()) => Ok(see_other(&format!("/admin/customers/{id}?done=resent"))),
        Err(e) => invalid_page(&customer_page(&a, &pool, *id, Some(WebError::mistake(e)?)).await?),
    }
}

// ------------------------------------------------------------------ resellers

async fn resellers_view(pool: &PgPool, f: &ResellerForm) -> Result<ListView, WebError> {
    let mut rows = Vec::new();
    for r in sql_admin::accounts_by_role(pool, Role::Reseller).await? {
        let n = sql_admin::customers_of(pool, r.id).await?;
        rows.push(vec![
            link(&r.email, format!("/admin/resellers/{}", r.id)),
            cell(&r.display_name),
            cell(&r.status),
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
    match admin::create_reseller(&pool, by(&a, &req), &settings.http.base_url, &f.0).await {
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
        discount: super::reseller::percent(t.discount_bp),
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

// ------------------------------------------------------------------ audit log

#[get("/admin/audit")]
async fn audit_log(a: CurrentAdmin, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    let rows = sql_admin::audit_recent(&pool, 300)
        .await?
        .iter()
        .map(|r| {
            let details = match &r.details {
                serde_json::Value::Object(m) if m.is_empty() => String::new(),
                d => {
                    let s = d.to_string();
                    if s.len() > 200 {
                        format!("{}…", &s[..s.char_indices().nth(200).map(|x| x.0).unwrap_or(s.len())])
                    } else {
                        s
                    }
                }
            };
            vec![
                cell(r.at.format("%Y-%m-%d %H:%M:%S UTC")),
                cell(format!("{} ({})", r.actor_email.as_deref().unwrap_or("—"), r.actor_kind)),
                cell(&r.action),
                cell(match (&r.target_type, &r.target_id) {
                    (Some(t), Some(i)) => format!("{t} {i}"),
                    _ => "—".into(),
                }),
                cell(r.remote_addr.as_deref().unwrap_or("—")),
                Cell { text: details, class: "mono", ..Default::default() },
            ]
        })
        .collect();
    let list = ListView {
        title: "Audit log".into(),
        intro: "Every admin and reseller action, newest first. The log is append-only.".into(),
        headers: vec!["When", "Who", "What", "On", "From", "Details"],
        rows,
        ..Default::default()
    };
    ok(&list_page(&a, list, None))
}

// ------------------------------------------------------------------ mail

#[get("/admin/emails")]
async fn emails(a: CurrentAdmin, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    let rows = crate::db::outbox_delivery::recent(&pool, 300)
        .await?
        .iter()
        .map(|m| {
            let state = match (&m.sent_at, m.attempts) {
                (Some(t), _) => format!("sent {}", t.format("%Y-%m-%d %H:%M UTC")),
                (None, n) if n >= crate::email::MAX_ATTEMPTS => "given up".to_string(),
                (None, 0) => "waiting".to_string(),
                (None, _) => format!("retry at {}", m.run_after.format("%H:%M:%S UTC")),
            };
            vec![
                link(m.created_at.format("%Y-%m-%d %H:%M UTC").to_string(), format!("/admin/emails/{}", m.id)),
                cell(&m.to_address),
                link(&m.template, format!("/admin/emails/{}", m.id)),
                num(m.attempts),
                cell(state),
                Cell { text: m.last_error.clone().unwrap_or_default(), class: "mono", ..Default::default() },
            ]
        })
        .collect();
    let list = ListView {
        title: "Outgoing mail".into(),
        intro: format!(
            "Unsent mail first. Open one to read it as sent. Failed sends are retried with backoff, up to {} attempts.",
            crate::email::MAX_ATTEMPTS
        ),
        headers: vec!["Queued", "To", "Template", "Attempts", "State", "Last error"],
        rows,
        ..Default::default()
    };
    ok(&list_page(&a, list, None))
}

#[derive(Template)]
#[template(path = "admin/email.html")]
struct EmailPage {
    ctx: Ctx,
    m: crate::db::outbox_delivery::OutboxView,
    subject: String,
    body: String,
}

/// One mail as it is (or was) sent: subject and text, rendered from its outbox row by the
/// worker's own code, except that a single-use secret link (password reset, verification,
/// reseller invitation) is replaced by a note that one was sent: reading it here would let an
/// admin take over the account. A stuck sign-up is helped by "Mark verified" or "Resend" instead.
#[get("/admin/emails/{id}")]
async fn email_show(
    a: CurrentAdmin,
    id: web::Path<i64>,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, WebError> {
    let (m, data) = crate::db::outbox_delivery::one(&pool, *id).await?.ok_or(WebError::NotFound)?;
    let data = crate::email::without_secrets(&m.template, &data);
    let data = crate::email::enrich(&pool, &settings.http.base_url, &data).await.map_err(WebError::internal)?;
    let (subject, body) = match crate::email::render(&m.template, &data) {
        Ok(r) => (r.subject, r.body),
        Err(e) => ("(cannot be rendered)".to_string(), e.to_string()),
    };
    let mut res = ok(&EmailPage { ctx: Ctx::of(&a.session), m, subject, body })?;
    res.headers_mut().insert(actix_web::http::header::CACHE_CONTROL, actix_web::http::header::HeaderValue::from_static("no-store"));
    Ok(res)
}

// ------------------------------------------------------------------ security settings

#[derive(Deserialize, Default)]
#[serde(default)]
struct SecurityForm {
    require_staff_two_factor: Option<String>,
}

fn security_form(on: bool) -> FormView {
    FormView {
        title: "Security".into(),
        action: "/admin/security".into(),
        button: "Save".into(),
        intro: "With this on, admins and resellers without two-factor authentication are sent to set it up before they can \
                use their pages (log-in then asks for a code or a recovery code). Reseller API keys are not affected."
            .into(),
        fields: vec![check("require_staff_two_factor", "Require two-factor authentication for admins and resellers", on)],
        ..Default::default()
    }
}

#[get("/admin/security")]
async fn security(a: CurrentAdmin, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    let on = crate::db::auth::staff_two_factor_required(&pool).await?;
    let mut page = form_page(&a, security_form(on));
    page.ctx = page.ctx.with_notice(q.done.as_deref());
    ok(&page)
}

#[post("/admin/security")]
async fn security_save(
    req: HttpRequest,
    a: CurrentAdmin,
    f: CsrfForm<SecurityForm>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    let on = f.0.require_staff_two_factor.as_deref().is_some_and(|v| !v.is_empty() && v != "off");
    admin::set_staff_two_factor_required(&pool, by(&a, &req), on).await?;
    Ok(see_other("/admin/security?done=saved"))
}
