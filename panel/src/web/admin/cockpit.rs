//! The admin's cockpit: each host's committed resources against its capacity (the scheduler's
//! own sums, [`crate::scheduler::commitment`], compared by [`crate::capacity::host_use`]) as
//! numbers and a chart; every server in a filtered, paged list with per-server actions
//! ([`crate::admin::servers`]: the one VPS state machine, typed jobs, audited); and on the
//! dashboard, servers waiting for capacity and failed jobs with a retry ([`crate::jobs::retry_dead`]).
//! Every form carries the CSRF token (`CsrfForm`).

use super::super::error::WebError;
use super::super::pages::{invalid as invalid_page, ok, see_other, Ctx};
use super::super::session::{CsrfForm, CurrentAdmin};
use super::{by, Done};
use crate::admin::servers::{self as svc, AdminAction, ServerQuery};
use crate::admin::AdminError;
use crate::capacity::{host_chart, host_use, HostUse};
use crate::db::hosts as sql_hosts;
use crate::ids::{HostId, InstanceId};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;
use vessel_core::admission::decimal;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(capacity).service(servers).service(server).service(server_action).service(job_retry);
}

// ------------------------------------------------------------------ capacity per host

pub struct ResourceRow {
    pub name: &'static str,
    pub unit: &'static str,
    pub capacity: String,
    pub committed: String,
    pub free: String,
    pub percent: String,
    pub sold: String,
    pub effective: String,
}

pub struct PlanRow {
    pub plan: String,
    pub kind: String,
    pub instances: usize,
    pub cpu: String,
    pub memory: String,
    pub disk: String,
    /// Resources on which the host is more overcommitted than this plan's ratio.
    pub above: String,
}

pub struct HostCockpit {
    pub id: HostId,
    pub name: String,
    pub state: String,
    pub instances: usize,
    pub resources: Vec<ResourceRow>,
    pub plans: Vec<PlanRow>,
    pub chart: String,
}

/// "x : 1" for an exact overcommit.
fn to_one(r: &num_rational::BigRational) -> String {
    format!("{} : 1", decimal(r))
}

fn cockpit_of(id: HostId, name: &str, state: String, u: &HostUse) -> HostCockpit {
    let against = |(ratio, eff): &(vessel_core::Ratio, Option<num_rational::BigRational>)| match eff {
        Some(e) => format!("{} (plan allows {ratio} : 1)", to_one(e)),
        None => format!("pinned (plan {ratio} : 1)"),
    };
    HostCockpit {
        id,
        name: name.to_string(),
        state,
        instances: u.instances,
        resources: u
            .resources
            .iter()
            .map(|r| ResourceRow {
                name: r.name,
                unit: r.unit,
                capacity: decimal(&r.capacity),
                committed: decimal(&r.committed),
                free: decimal(&r.free),
                percent: format!("{:.1} %", r.share() * 100.0),
                sold: r.sold.as_ref().map(decimal).unwrap_or_else(|| "—".into()),
                effective: r.effective.as_ref().map(to_one).unwrap_or_else(|| "—".into()),
            })
            .collect(),
        plans: u
            .plans
            .iter()
            .map(|p| PlanRow {
                plan: format!("{} v{}", p.code, p.version),
                kind: p.kind.as_str().to_string(),
                instances: p.instances,
                cpu: against(&p.cpu),
                memory: against(&p.memory),
                disk: against(&p.disk),
                above: p.above().join(", "),
            })
            .collect(),
        chart: host_chart(u),
    }
}

#[derive(Template)]
#[template(path = "admin/capacity.html")]
struct CapacityPage {
    ctx: Ctx,
    hosts: Vec<HostCockpit>,
    /// The next page's first host comes after this name.
    next: Option<String>,
}

/// Hosts per page of the cockpit: each carries a chart, and a provider has thousands.
const CAPACITY_PAGE: i64 = 50;

#[derive(Deserialize)]
struct CapacityQuery {
    #[serde(default)]
    after: Option<String>,
}

/// Every host's commitment, as placement counts it, a page of hosts at a time (by name).
#[get("/admin/capacity")]
async fn capacity(a: CurrentAdmin, pool: web::Data<PgPool>, q: web::Query<CapacityQuery>) -> Result<HttpResponse, WebError> {
    let mut summaries = sql_hosts::summaries_after(&pool, q.after.as_deref(), CAPACITY_PAGE + 1).await?;
    let next = (summaries.len() as i64 > CAPACITY_PAGE).then(|| {
        summaries.truncate(CAPACITY_PAGE as usize);
        summaries.last().map(|h| h.name.clone()).unwrap_or_default()
    });
    let caps: Vec<_> = summaries
        .iter()
        .map(|h| {
            (
                h.id,
                crate::scheduler::capacity(h.cpus, h.reserved_cpus, h.memory_mib, h.reserved_memory_mib, h.disk_gib, h.reserved_disk_gib),
            )
        })
        .collect();
    // One query for every host's load (it was one per host).
    let commitments = crate::scheduler::commitments(&pool, &caps).await.map_err(WebError::internal)?;
    let mut hosts = Vec::new();
    for h in &summaries {
        let Some(c) = commitments.get(&h.id) else { continue };
        let state = format!("{}, {}", if h.enabled { "enabled" } else { "disabled" }, h.reachability.as_str());
        hosts.push(cockpit_of(h.id, &h.name, state, &host_use(c)));
    }
    ok(&CapacityPage { ctx: Ctx::of(&a.session), hosts, next })
}

// ------------------------------------------------------------------ servers

pub struct ServerLine {
    pub id: InstanceId,
    pub hostname: String,
    pub customer_id: Uuid,
    pub customer: String,
    pub plan: String,
    pub kind: String,
    pub host: String,
    pub desired: String,
    pub observed: String,
    pub billing: String,
    pub addresses: String,
    pub created: String,
    pub last_error: String,
}

impl ServerLine {
    fn of(ctx: &Ctx, r: &crate::resellers::servers::ServerRow) -> Self {
        ServerLine {
            id: r.id.into(),
            hostname: r.hostname.clone(),
            customer_id: r.customer_id,
            customer: r.customer_email.clone(),
            plan: r.plan.clone(),
            kind: r.kind.as_str().to_string(),
            host: r.host_name.clone().unwrap_or_else(|| "—".into()),
            desired: r.desired_state.to_string(),
            observed: r.observed_state.to_string(),
            billing: r.billing_status.map(|s| s.to_string()).unwrap_or_else(|| "—".into()),
            addresses: r.addresses.join(", "),
            created: ctx.when(&r.created_at),
            last_error: r.last_error.clone().unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "admin/servers.html")]
struct ServersPage {
    ctx: Ctx,
    q: ServerQuery,
    servers: Vec<ServerLine>,
    next: Option<String>,
    states: Vec<&'static str>,
    hosts: Vec<(HostId, String)>,
    error: Option<String>,
}

#[get("/admin/servers")]
async fn servers(a: CurrentAdmin, pool: web::Data<PgPool>, q: web::Query<ServerQuery>) -> Result<HttpResponse, WebError> {
    let q = q.into_inner();
    let ctx = Ctx::of(&a.session);
    let hosts = sql_hosts::names(&pool).await?;
    let states = crate::vps::DesiredState::ALL.iter().map(|s| s.as_str()).collect();
    match svc::list(&pool, &q).await {
        Ok((rows, next)) => {
            let servers = rows.iter().map(|r| ServerLine::of(&ctx, r)).collect();
            ok(&ServersPage { ctx, q, servers, next, states, hosts, error: None })
        }
        Err(AdminError::Invalid { message, .. }) => {
            invalid_page(&ServersPage { ctx, q, servers: Vec::new(), next: None, states, hosts, error: Some(message) })
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "admin/server.html")]
struct ServerPage {
    ctx: Ctx,
    s: ServerLine,
    error: Option<String>,
}

async fn server_page(a: &CurrentAdmin, pool: &PgPool, id: Uuid, done: Option<&str>, error: Option<String>) -> Result<ServerPage, WebError> {
    let row = crate::resellers::servers::get(pool, crate::api_keys::Tenant::All, id).await?;
    let ctx = Ctx::of(&a.session).with_notice(done);
    Ok(ServerPage { s: ServerLine::of(&ctx, &row), ctx, error })
}

#[get("/admin/servers/{id}")]
async fn server(a: CurrentAdmin, id: web::Path<Uuid>, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    ok(&server_page(&a, &pool, *id, q.done.as_deref(), None).await?)
}

#[derive(Deserialize)]
struct ActionForm {
    action: String,
    #[serde(default)]
    reason: String,
    /// Terminate and reinstall destroy data: the form asks to tick this first.
    #[serde(default)]
    confirm: Option<String>,
}

#[post("/admin/servers/{id}/action")]
async fn server_action(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    f: CsrfForm<ActionForm>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    let id = *id;
    let f = f.0;
    let parsed = AdminAction::parse(&f.action, &f.reason).and_then(|action| {
        if matches!(action, AdminAction::Terminate | AdminAction::Reinstall) && f.confirm.is_none() {
            return Err(AdminError::Invalid {
                field: "confirm".into(),
                message: "tick the box to confirm: this destroys the server's data".into(),
            });
        }
        Ok(action)
    });
    let result = match parsed {
        Ok(action) => svc::act(&pool, by(&a, &req), id, action).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(see_other(&format!("/admin/servers/{id}?done=server_{}", f.action))),
        Err(AdminError::Invalid { message, .. }) => invalid_page(&server_page(&a, &pool, id, None, Some(message)).await?),
        Err(e) => Err(e.into()),
    }
}

// ------------------------------------------------------------------ failed jobs

#[post("/admin/jobs/{id}/retry")]
async fn job_retry(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    _f: super::Empty,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    crate::jobs::retry_dead(&pool, crate::audit::Actor::admin(a.account.id), super::super::remote_addr(&req), *id).await?;
    Ok(see_other("/admin?done=job_retried"))
}

// ------------------------------------------------------------------ the dashboard's lists

pub struct WaitingLine {
    pub id: InstanceId,
    pub hostname: String,
    pub customer: String,
    pub plan: String,
    pub since: String,
    pub why: String,
}

pub struct FailedJob {
    pub id: Uuid,
    pub kind: String,
    pub server: Option<(InstanceId, String)>,
    pub attempts: i32,
    pub error: String,
    pub at: String,
}

/// What the dashboard lists besides its counters: servers waiting for capacity, failed jobs.
pub async fn dashboard_lists(ctx: &Ctx, pool: &PgPool) -> Result<(Vec<WaitingLine>, Vec<FailedJob>), WebError> {
    let waiting = crate::db::instances::waiting_for_capacity(pool, 50)
        .await?
        .into_iter()
        .map(|w| WaitingLine {
            id: w.id,
            hostname: w.hostname,
            customer: w.customer_email,
            plan: w.plan,
            since: w.waiting_since.map(|t| ctx.when(&t)).unwrap_or_else(|| "—".into()),
            why: w.last_error.unwrap_or_default(),
        })
        .collect();
    let failed = crate::db::jobs::dead(pool, 50)
        .await?
        .into_iter()
        .map(|j| FailedJob {
            id: j.id,
            kind: j.kind,
            server: j.instance_id.map(|i| (i, j.hostname.unwrap_or_default())),
            attempts: j.attempts,
            error: j.last_error.unwrap_or_default(),
            at: ctx.when(&j.updated_at),
        })
        .collect();
    Ok((waiting, failed))
}
