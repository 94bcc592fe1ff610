//! `/servers`: create, read, list, act on, and watch the caller's VPS.

use super::auth::{Reader, Writer};
use super::idempotency::{self, Reply};
use super::models::{
    ConsoleToken, Cycle, Firewall, FirewallChange, NewServer, Reinstall, ResetPassword, Resize, Server, ServerList, Usage, UsagePoint,
};
use super::pagination;
use super::problem::ApiError;
use crate::access;
use crate::api_keys::Principal;
use crate::clock::Clock;
use crate::resellers::servers::{self as svc, ServerAction, ServerFilter};
use crate::resellers::ResellerError;
use actix_web::http::StatusCode;
use actix_web::{get, post, put, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use sqlx::PgPool;
use std::sync::Arc;
use utoipa::IntoParams;
use uuid::Uuid;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ServerQuery {
    /// Only this customer's servers.
    pub customer_id: Option<Uuid>,
    /// Desired state: `running`, `stopped`, `suspended` or `terminated`.
    pub state: Option<String>,
    /// Observed state, e.g. `running` or `unknown`.
    pub observed_state: Option<String>,
    /// Plan code.
    pub plan: Option<String>,
    /// Exact hostname.
    pub hostname: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 25).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// The caller's servers, newest first, with filters.
#[utoipa::path(get, path = "/api/v1/servers", tag = "servers", params(ServerQuery), responses((status = 200, body = ServerList)))]
#[get("/servers")]
pub async fn list(who: Reader, pool: web::Data<PgPool>, q: web::Query<ServerQuery>) -> Result<HttpResponse, ApiError> {
    let limit = pagination::limit(q.limit)?;
    let after = q.cursor.as_deref().map(pagination::decode).transpose()?;
    let desired_state = q
        .state
        .as_deref()
        .map(str::parse::<crate::vps::DesiredState>)
        .transpose()
        .map_err(|e| ApiError::validation("state", e.to_string()))?;
    let observed_state = q
        .observed_state
        .as_deref()
        .map(str::parse::<crate::vps::ObservedState>)
        .transpose()
        .map_err(|e| ApiError::validation("observed_state", e.to_string()))?;
    let filter = ServerFilter {
        customer: q.customer_id,
        desired_state,
        observed_state,
        plan: q.plan.as_deref(),
        hostname: q.hostname.as_deref().map(str::trim),
        ..Default::default()
    };
    let rows = svc::list(&pool, who.0.tenant, &filter, after, limit + 1).await?;
    let (rows, next_cursor) = pagination::page(rows, limit, |r| (r.created_at, r.id));
    Ok(HttpResponse::Ok().json(ServerList { data: rows.into_iter().map(Server::from).collect(), next_cursor }))
}

/// Creates a server for one of the caller's customers. It is placed and started in the
/// background: watch `observed_state` (or the `server.updated` webhook).
#[utoipa::path(post, path = "/api/v1/servers", tag = "servers", request_body = NewServer, responses((status = 201, body = Server)))]
#[post("/servers")]
pub async fn create(
    who: Writer,
    pool: web::Data<PgPool>,
    clock: web::Data<Arc<dyn Clock>>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: NewServer = super::parse(&body)?;
    let now = clock.now();
    let who: Principal = who.0;
    let tenant = who.tenant;
    idempotency::run(&pool, &who.clone(), &req, &body, move |tx| {
        Box::pin(async move {
            let chosen = access::choose(
                &mut **tx,
                input.customer_id,
                access::AccessRequest { saved_keys: vec![], key_lines: input.ssh_keys, root_password: input.root_password },
            )
            .await
            .map_err(ResellerError::from)?;
            let new = svc::NewServer {
                customer_id: input.customer_id,
                plan: input.plan,
                os_template: input.os_template,
                hostname: input.hostname,
                cycle: input.cycle.unwrap_or(Cycle::Monthly).into(),
                access: chosen.access,
            };
            let id = svc::create(tx, &who, now, new).await?;
            with_generated_password(StatusCode::CREATED, svc::get(&mut **tx, tenant, id).await?, chosen.generated_password)
        })
    })
    .await
}

/// Sets a new root password on a running server (the host changes it in place). Absent
/// `root_password`: one is generated and returned once in the answer's `root_password`.
#[utoipa::path(post, path = "/api/v1/servers/{id}/reset-password", tag = "servers", params(("id" = Uuid, Path)),
    request_body(content = ResetPassword, description = "Optional"), responses((status = 202, body = Server)))]
#[post("/servers/{id}/reset-password")]
pub async fn reset_password(
    who: Writer,
    pool: web::Data<PgPool>,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: ResetPassword = if body.iter().all(u8::is_ascii_whitespace) { ResetPassword::default() } else { super::parse(&body)? };
    let who: Principal = who.0;
    let tenant = who.tenant;
    let id = *id;
    idempotency::run(&pool, &who.clone(), &req, &body, move |tx| {
        Box::pin(async move {
            svc::get(&mut **tx, tenant, id).await?; // another tenant's server: 404 before anything else
            let new = access::new_root_password(r.root_password).await.map_err(ResellerError::from)?;
            svc::reset_password(tx, &who, id, new.hash).await?;
            with_generated_password(StatusCode::ACCEPTED, svc::get(&mut **tx, tenant, id).await?, new.generated)
        })
    })
    .await
}

/// A one-time token for the server's console in a browser (the panel relays it to the host;
/// the host's address is never given out). Valid for one connection, for a short time
/// (`expires_at`); the server must be running. A retry with the same Idempotency-Key does
/// not show the token again: ask for a new one.
#[utoipa::path(post, path = "/api/v1/servers/{id}/console", tag = "servers", params(("id" = Uuid, Path)),
    responses((status = 201, body = ConsoleToken)))]
#[post("/servers/{id}/console")]
pub async fn console(
    who: Writer,
    pool: web::Data<PgPool>,
    settings: web::Data<crate::config::Settings>,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let who: Principal = who.0;
    let tenant = who.tenant;
    let id = *id;
    let ttl = std::time::Duration::from_secs(settings.console.token_ttl_secs);
    let (account, key) = (who.account_id, who.key_id);
    // No body: the key's fingerprint is the method and path.
    idempotency::run(&pool, &who.clone(), &req, &[], move |tx| {
        Box::pin(async move {
            let row = svc::get(&mut **tx, tenant, id).await?; // another tenant's server: 404
            if row.observed_state != crate::vps::ObservedState::Running {
                return Err(ApiError::Conflict(format!("the server is {}: a console needs it running", row.observed_state)));
            }
            let issued = crate::console::issue(tx, id.into(), account, crate::console::Via::Api { key }, ttl).await?;
            let answer = ConsoleToken {
                websocket_path: issued.websocket_path(),
                page_path: issued.page_path(),
                expires_at: issued.expires_at,
                token: issued.token,
            };
            Ok(Reply::new(StatusCode::CREATED, answer)?.not_storing(&["token", "websocket_path", "page_path"]))
        })
    })
    .await
}

/// One server.
#[utoipa::path(get, path = "/api/v1/servers/{id}", tag = "servers", params(("id" = Uuid, Path)), responses((status = 200, body = Server)))]
#[get("/servers/{id}")]
pub async fn get(who: Reader, pool: web::Data<PgPool>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(Server::from(svc::get(pool.get_ref(), who.0.tenant, *id).await?)))
}

/// The last day of a server's usage: CPU, memory against guarantee and burst, disk, network.
#[utoipa::path(get, path = "/api/v1/servers/{id}/usage", tag = "servers", params(("id" = Uuid, Path)), responses((status = 200, body = Usage)))]
#[get("/servers/{id}/usage")]
pub async fn usage(
    who: Reader,
    pool: web::Data<PgPool>,
    clock: web::Data<Arc<dyn Clock>>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let points = svc::usage(&pool, who.0.tenant, *id, clock.now()).await?;
    let points = points
        .into_iter()
        .map(|p| UsagePoint {
            at: p.at,
            cpu_cores: p.cpu_cores,
            memory_mib: p.memory_mib,
            burst_mib: p.burst_mib,
            disk_gib: p.disk_gib,
            rx_mbit: p.rx_mbit,
            tx_mbit: p.tx_mbit,
        })
        .collect();
    Ok(HttpResponse::Ok().json(Usage { server_id: *id, points }))
}

/// Records an action and answers 202 with the server (its desired state already changed).
async fn act(
    who: Writer,
    pool: &PgPool,
    clock: &Arc<dyn Clock>,
    req: &HttpRequest,
    body: &[u8],
    id: Uuid,
    action: ServerAction,
) -> Result<HttpResponse, ApiError> {
    let now = clock.now();
    let who: Principal = who.0;
    let tenant = who.tenant;
    idempotency::run(pool, &who.clone(), req, body, move |tx| {
        Box::pin(async move {
            svc::act(tx, &who, now, id, action).await?;
            Reply::new(StatusCode::ACCEPTED, Server::from(svc::get(&mut **tx, tenant, id).await?))
        })
    })
    .await
}

macro_rules! plain_action {
    ($fn:ident, $path:literal, $doc_path:literal, $action:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $doc_path, tag = "servers", params(("id" = Uuid, Path)), responses((status = 202, body = Server)))]
        #[post($path)]
        pub async fn $fn(
            who: Writer,
            pool: web::Data<PgPool>,
            clock: web::Data<Arc<dyn Clock>>,
            req: HttpRequest,
            id: web::Path<Uuid>,
        ) -> Result<HttpResponse, ApiError> {
            // No body: the key's fingerprint is the method and path.
            act(who, &pool, &clock, &req, &[], *id, $action).await
        }
    };
}

plain_action!(start, "/servers/{id}/start", "/api/v1/servers/{id}/start", ServerAction::Start, "Starts a stopped server.");
plain_action!(
    stop,
    "/servers/{id}/stop",
    "/api/v1/servers/{id}/stop",
    ServerAction::Stop,
    "Stops a server (it keeps its disk and address)."
);
plain_action!(restart, "/servers/{id}/restart", "/api/v1/servers/{id}/restart", ServerAction::Restart, "Restarts a running server.");
plain_action!(
    suspend,
    "/servers/{id}/suspend",
    "/api/v1/servers/{id}/suspend",
    ServerAction::Suspend,
    "Suspends a server (billing continues)."
);
plain_action!(
    unsuspend,
    "/servers/{id}/unsuspend",
    "/api/v1/servers/{id}/unsuspend",
    ServerAction::Unsuspend,
    "Lifts the caller's suspension."
);
plain_action!(
    terminate,
    "/servers/{id}/terminate",
    "/api/v1/servers/{id}/terminate",
    ServerAction::Terminate,
    "Destroys the server and frees its address; billing stops."
);

plain_action!(
    rescue,
    "/servers/{id}/rescue",
    "/api/v1/servers/{id}/rescue",
    ServerAction::Rescue,
    "Boots the rescue system, for a server that no longer boots: a container gets a rescue shell with its filesystem at /mnt, a KVM machine the rescue image with its disk as the second disk; both take the server's SSH keys and root password, and keep its address. The server shows `rescue: true` until it leaves rescue."
);
plain_action!(
    leave_rescue,
    "/servers/{id}/leave-rescue",
    "/api/v1/servers/{id}/leave-rescue",
    ServerAction::LeaveRescue,
    "Boots the server's own system again after a rescue."
);

/// Reinstalls the server from a template (wipes its disk).
#[utoipa::path(post, path = "/api/v1/servers/{id}/reinstall", tag = "servers", params(("id" = Uuid, Path)), request_body(content = Reinstall, description = "Optional"),
    responses((status = 202, body = Server)))]
#[post("/servers/{id}/reinstall")]
pub async fn reinstall(
    who: Writer,
    pool: web::Data<PgPool>,
    clock: web::Data<Arc<dyn Clock>>,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: Reinstall = if body.iter().all(u8::is_ascii_whitespace) { Reinstall::default() } else { super::parse(&body)? };
    if r.ssh_keys.is_none() && r.root_password.is_none() {
        // The server keeps its keys and password hash; the fresh system gets them again.
        return act(who, &pool, &clock, &req, &body, *id, ServerAction::Reinstall { os_template: r.os_template }).await;
    }
    let now = clock.now();
    let who: Principal = who.0;
    let tenant = who.tenant;
    let id = *id;
    idempotency::run(&pool, &who.clone(), &req, &body, move |tx| {
        Box::pin(async move {
            let customer = svc::get(&mut **tx, tenant, id).await?.customer_id;
            let req =
                access::AccessRequest { saved_keys: vec![], key_lines: r.ssh_keys.unwrap_or_default(), root_password: r.root_password };
            let chosen = access::choose(&mut **tx, customer, req).await.map_err(ResellerError::from)?;
            svc::set_access(tx, &who, id, &chosen.access).await?;
            svc::act(tx, &who, now, id, ServerAction::Reinstall { os_template: r.os_template }).await?;
            with_generated_password(StatusCode::ACCEPTED, svc::get(&mut **tx, tenant, id).await?, chosen.generated_password)
        })
    })
    .await
}

/// Moves the server to another plan of the same kind; the difference is prorated.
#[utoipa::path(post, path = "/api/v1/servers/{id}/resize", tag = "servers", params(("id" = Uuid, Path)), request_body = Resize,
    responses((status = 202, body = Server)))]
#[post("/servers/{id}/resize")]
pub async fn resize(
    who: Writer,
    pool: web::Data<PgPool>,
    clock: web::Data<Arc<dyn Clock>>,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: Resize = super::parse(&body)?;
    act(who, &pool, &clock, &req, &body, *id, ServerAction::Resize { plan: r.plan }).await
}

/// The answer to a request that may have generated a root password: it carries the password
/// this once, and the stored copy an idempotent retry replays leaves it out.
fn with_generated_password(status: StatusCode, row: svc::ServerRow, generated: Option<String>) -> Result<Reply, ApiError> {
    let mut server = Server::from(row);
    server.root_password = generated;
    Ok(Reply::new(status, server)?.not_storing(&["root_password"]))
}

/// The server's inbound firewall (the open default, accept with no rules, until one is set).
#[utoipa::path(get, path = "/api/v1/servers/{id}/firewall", tag = "servers", params(("id" = Uuid, Path)),
    responses((status = 200, body = Firewall)))]
#[get("/servers/{id}/firewall")]
pub async fn firewall(who: Reader, pool: web::Data<PgPool>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let scope = crate::vps::Scope::reseller(who.0.tenant.reseller().map(crate::ids::AccountId));
    Ok(HttpResponse::Ok().json(Firewall::from(crate::firewall::get(&pool, scope, (*id).into()).await?)))
}

/// Replaces the server's inbound firewall (the whole ordered list and the default); the host
/// applies it within seconds. A bad rule is refused with the field at fault and changes nothing.
#[utoipa::path(put, path = "/api/v1/servers/{id}/firewall", tag = "servers", params(("id" = Uuid, Path)), request_body = FirewallChange,
    responses((status = 200, body = Firewall)))]
#[put("/servers/{id}/firewall")]
pub async fn set_firewall(who: Writer, pool: web::Data<PgPool>, id: web::Path<Uuid>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let fw: vessel_core::Firewall = super::parse(&body)?;
    let who: Principal = who.0;
    let scope = crate::vps::Scope::reseller(who.tenant.reseller().map(crate::ids::AccountId));
    let mut tx = pool.begin().await?;
    crate::firewall::set(&mut tx, scope, who.actor(), (*id).into(), &fw).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(Firewall::from(fw)))
}
