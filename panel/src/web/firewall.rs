//! The customer's firewall page of a server (issue 20): the ordered rules as lines, the
//! default verdict; a mistake is shown with its line and nothing changes.

use super::error::WebError;
use super::pages::{invalid, ok, see_other, Ctx};
use super::session::{CsrfForm, CurrentCustomer};
use crate::audit::{Actor, ActorKind};
use crate::firewall::{self, FirewallError};
use crate::ids::InstanceId;
use crate::vps::Scope;
use actix_web::{get, post, web, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;
use vessel_core::firewall::{Verdict, IMPLICIT_RULES, MAX_RULES};
use vessel_core::Firewall;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(page).service(save);
}

#[derive(Template)]
#[template(path = "firewall.html")]
struct FirewallPage {
    ctx: Ctx,
    id: InstanceId,
    hostname: String,
    rules: String,
    default_policy: String,
    verdicts: [Verdict; 2],
    implicit: [&'static str; 4],
    max_rules: usize,
    saved: bool,
    error: Option<String>,
}

async fn page_for(c: &CurrentCustomer, pool: &PgPool, id: InstanceId) -> Result<FirewallPage, WebError> {
    let server = crate::instances::get_for(pool, c.account.id.into(), id).await?.ok_or(WebError::NotFound)?;
    let fw = firewall::get(pool, Scope::customer(c.account.id.into()), id).await?;
    Ok(FirewallPage {
        ctx: Ctx::of(&c.session),
        id,
        hostname: server.hostname,
        rules: fw.to_lines(),
        default_policy: fw.default_policy().as_str().into(),
        verdicts: Verdict::ALL,
        implicit: IMPLICIT_RULES,
        max_rules: MAX_RULES,
        saved: false,
        error: None,
    })
}

#[derive(Deserialize)]
struct SavedQuery {
    #[serde(default)]
    saved: Option<String>,
}

#[get("/servers/{id}/firewall")]
async fn page(
    c: CurrentCustomer,
    id: web::Path<InstanceId>,
    q: web::Query<SavedQuery>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    let mut p = page_for(&c, &pool, *id).await?;
    p.saved = q.saved.is_some();
    ok(&p)
}

#[derive(Deserialize)]
struct FirewallForm {
    #[serde(default)]
    rules: String,
    default_policy: String,
}

#[post("/servers/{id}/firewall")]
async fn save(
    c: CurrentCustomer,
    id: web::Path<InstanceId>,
    f: CsrfForm<FirewallForm>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    let id = *id;
    let f = f.0;
    let parsed = f
        .default_policy
        .parse::<Verdict>()
        .map_err(FirewallError::Invalid)
        .and_then(|d| Firewall::parse_lines(d, &f.rules).map_err(|(line, error)| FirewallError::BadLine { line, error }));
    let actor = Actor { id: Some(c.account.id), kind: ActorKind::Customer };
    let result = match parsed {
        Ok(fw) => firewall::set_now(&pool, Scope::customer(c.account.id.into()), actor, id, &fw).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(see_other(&format!("/servers/{id}/firewall?saved=1"))),
        Err(e @ (FirewallError::Invalid(_) | FirewallError::BadLine { .. })) => {
            let mut p = page_for(&c, &pool, id).await?;
            p.rules = f.rules;
            p.default_policy = f.default_policy;
            p.error = Some(match e {
                FirewallError::BadLine { line: 0, error } => error.to_string(),
                e => e.to_string(),
            });
            invalid(&p)
        }
        Err(e) => Err(e.into()),
    }
}
