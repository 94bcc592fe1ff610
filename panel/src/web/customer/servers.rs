//! The customer's servers: the list, one server with its charts, and its actions.

use super::{money, Done};
use crate::clock::Clock;
use crate::db::catalogue::OsTemplate;
use crate::ids::InstanceId;
use crate::instances::{self, InstanceRow};
use crate::web::error::WebError;
use crate::web::pages::{ok, see_other, Ctx};
use crate::web::session::{CsrfForm, CurrentCustomer};
use actix_web::{get, post, web, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;
use std::sync::Arc;
use uuid::Uuid;
use vessel_core::Action;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(servers_list).service(server_show).service(server_action);
}

#[derive(Template)]
#[template(path = "servers.html")]
struct ServersPage {
    ctx: Ctx,
    servers: Vec<InstanceRow>,
}

#[get("/servers")]
async fn servers_list(c: CurrentCustomer, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    let servers = instances::list_for(&pool, c.account.id.into()).await?;
    ok(&ServersPage { ctx: Ctx::of(&c.session).with_notice(q.done.as_deref()), servers })
}

/// The billing line of a server page: when the period ends, and what happens then.
pub struct RenewalLine {
    pub text: String,
    pub cancelling: bool,
    /// A live subscription: the plan can change and the server can be cancelled.
    pub live: bool,
}

pub(super) async fn renewal_line(pool: &PgPool, customer: Uuid, s: &InstanceRow) -> Result<Option<RenewalLine>, WebError> {
    let Some(sub) = s.subscription_id else { return Ok(None) };
    let Some(r) = crate::db::subscriptions::renewal_view(pool, sub.0, customer).await? else { return Ok(None) };
    let live = matches!(r.status, crate::subscriptions::SubscriptionStatus::Active | crate::subscriptions::SubscriptionStatus::Suspended);
    let last_day = crate::billing::period::last_day(r.current_period_end);
    let text = match (live, r.cancel_at_period_end) {
        (true, false) => {
            format!("Paid until {last_day}; renews on {} for {} ({}).", r.current_period_end, money(r.price_minor, &r.currency), r.cycle)
        }
        (true, true) => format!("Paid until {last_day}; cancelled: it ends then and is not renewed."),
        (false, _) if r.status == crate::subscriptions::SubscriptionStatus::Pending => "Starts when its first invoice is paid.".to_string(),
        (false, _) => format!("Ended ({}).", r.status),
    };
    Ok(Some(RenewalLine { text, cancelling: r.cancel_at_period_end, live }))
}

#[derive(Template)]
#[template(path = "server.html")]
struct ServerPage {
    ctx: Ctx,
    s: InstanceRow,
    renewal: Option<RenewalLine>,
    error: Option<String>,
    /// (title, inline SVG drawn by the panel from numbers only) for the last day.
    charts: Vec<(&'static str, String)>,
    /// How to log in: the SSH keys' fingerprints and whether a root password is set.
    way_in: vessel_core::Access,
    /// Its addresses with gateway, netmask and resolvers.
    network: Vec<instances::NetworkLine>,
}

impl ServerPage {
    fn fingerprints(&self) -> Vec<String> {
        self.way_in.ssh_keys.iter().map(|k| k.fingerprint()).collect()
    }
}

/// The usage charts of the last day: CPU, memory against the plan's guarantee and burst,
/// disk, network. Server-rendered SVG, so they need no JavaScript.
async fn charts(pool: &PgPool, clock: &dyn Clock, customer: Uuid, s: &InstanceRow) -> Result<Vec<(&'static str, String)>, WebError> {
    use crate::usage::{svg, Chart};
    let points = crate::usage::last_day(pool, customer.into(), s.id, clock.now()).await?;
    let Some(p) = crate::db::catalogue::plan_by_id(pool, s.plan_id).await? else { return Ok(Vec::new()) };
    Ok(vec![
        ("CPU (cores)", svg(Chart::Cpu { vcpus: p.vcpus as u32 }, &points)),
        (
            "Memory (MiB): guarantee and burst ceiling",
            svg(Chart::Memory { guarantee_mib: p.memory_guaranteed_mib as u64, burst_mib: p.memory_burst_mib as u64 }, &points),
        ),
        ("Disk (GiB)", svg(Chart::Disk { size_gib: p.disk_gib as u64 }, &points)),
        ("Network (Mbit/s)", svg(Chart::Network, &points)),
    ])
}

#[get("/servers/{id}")]
async fn server_show(
    c: CurrentCustomer,
    id: web::Path<InstanceId>,
    pool: web::Data<PgPool>,
    clock: web::Data<Arc<dyn Clock>>,
    q: web::Query<Done>,
) -> Result<HttpResponse, WebError> {
    let s = instances::get_for(&pool, c.account.id.into(), *id).await?.ok_or(WebError::NotFound)?;
    let charts = charts(&pool, clock.as_ref().as_ref(), c.account.id, &s).await?;
    let way_in = crate::db::access::instance_access(pool.get_ref(), s.id).await?.unwrap_or_default();
    let renewal = renewal_line(&pool, c.account.id, &s).await?;
    let network = instances::network_of(&pool, s.id).await?;
    ok(&ServerPage { ctx: Ctx::of(&c.session).with_notice(q.done.as_deref()), s, renewal, error: None, charts, way_in, network })
}

#[derive(Deserialize)]
struct ActionForm {
    action: String,
    /// Reinstall erases the disk: it needs a second, explicit step.
    #[serde(default)]
    confirm: String,
    /// Reinstall: the operating system to install (empty: the current one).
    #[serde(default)]
    os_template: String,
}

#[derive(Template)]
#[template(path = "confirm_reinstall.html")]
struct ConfirmReinstall {
    ctx: Ctx,
    s: InstanceRow,
    /// The operating systems offered for this kind of server.
    templates: Vec<OsTemplate>,
}

#[post("/servers/{id}/action")]
async fn server_action(
    c: CurrentCustomer,
    id: web::Path<InstanceId>,
    f: CsrfForm<ActionForm>,
    pool: web::Data<PgPool>,
    clock: web::Data<Arc<dyn Clock>>,
) -> Result<HttpResponse, WebError> {
    let action = match f.0.action.as_str() {
        "start" => Action::Start,
        "stop" => Action::Stop,
        "reboot" | "restart" => Action::Restart,
        "reinstall" => Action::Reinstall,
        "rescue" => Action::Rescue,
        "leave-rescue" => Action::LeaveRescue,
        other => {
            return Err(WebError::BadForm(format!(
                "{other:?} is not an action; use start, stop, reboot, reinstall, rescue or leave-rescue"
            )))
        }
    };
    if action == Action::Reinstall && f.0.confirm != "yes" {
        // Only the owner gets as far as the question.
        let s = instances::get_for(&pool, c.account.id.into(), *id).await?.ok_or(WebError::NotFound)?;
        let kvm = s.kind == vessel_core::InstanceKind::Kvm;
        let templates = crate::db::catalogue::os_templates(&pool, true)
            .await?
            .into_iter()
            .filter(|t| if kvm { t.for_kvm } else { t.for_containers })
            .collect();
        return ok(&ConfirmReinstall { ctx: Ctx::of(&c.session), s, templates });
    }
    let r = if action == Action::Reinstall {
        instances::reinstall(&pool, clock.as_ref().as_ref(), c.account.id.into(), *id, Some(f.0.os_template.as_str())).await
    } else {
        instances::request_action(&pool, clock.as_ref().as_ref(), c.account.id.into(), *id, action).await
    };
    match r {
        Ok(()) => Ok(see_other(&format!("/servers/{id}?done=requested"))),
        Err(e) => {
            let message = WebError::mistake(e)?;
            let s = instances::get_for(&pool, c.account.id.into(), *id).await?.ok_or(WebError::NotFound)?;
            let charts = charts(&pool, clock.as_ref().as_ref(), c.account.id, &s).await?;
            let renewal = renewal_line(&pool, c.account.id, &s).await?;
            crate::web::pages::html(
                actix_web::http::StatusCode::CONFLICT,
                &ServerPage {
                    ctx: Ctx::of(&c.session),
                    s,
                    renewal,
                    error: Some(message),
                    charts,
                    way_in: Default::default(),
                    network: Vec::new(),
                },
            )
        }
    }
}
