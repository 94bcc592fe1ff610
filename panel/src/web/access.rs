//! The customer's way into their servers (issue 13): named SSH keys on the account, and a root
//! password reset on a running server. A generated password is shown on the answer page once
//! (`no-store`) and exists nowhere else.

use super::error::WebError;
use super::pages::{invalid, ok, see_other, Ctx};
use super::session::{CsrfForm, CurrentCustomer};
use crate::access::{self, AccessError, SshKeyRow};
use crate::ids::InstanceId;
use actix_web::{get, post, web, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(keys_page).service(key_add).service(key_delete).service(password_reset);
}

#[derive(Template)]
#[template(path = "ssh_keys.html")]
struct KeysPage {
    ctx: Ctx,
    keys: Vec<SshKeyRow>,
    name: String,
    public_key: String,
    error: Option<String>,
}

async fn keys_page_for(c: &CurrentCustomer, pool: &PgPool) -> Result<KeysPage, WebError> {
    Ok(KeysPage {
        ctx: Ctx::of(&c.session),
        keys: access::keys_of(pool, c.account.id).await?,
        name: String::new(),
        public_key: String::new(),
        error: None,
    })
}

#[get("/account/ssh-keys")]
async fn keys_page(c: CurrentCustomer, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    ok(&keys_page_for(&c, &pool).await?)
}

#[derive(Deserialize)]
struct KeyForm {
    name: String,
    public_key: String,
}

#[post("/account/ssh-keys")]
async fn key_add(c: CurrentCustomer, f: CsrfForm<KeyForm>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    let f = f.0;
    match access::add_key(&pool, c.account.id, &f.name, &f.public_key).await {
        Ok(_) => Ok(see_other("/account/ssh-keys")),
        Err(e) if e.is_user_error() => {
            let mut page = keys_page_for(&c, &pool).await?;
            page.name = f.name;
            page.public_key = f.public_key;
            page.error = Some(e.to_string());
            invalid(&page)
        }
        Err(e) => Err(e.into()),
    }
}

#[post("/account/ssh-keys/{id}/delete")]
async fn key_delete(
    c: CurrentCustomer,
    id: web::Path<Uuid>,
    _f: CsrfForm<Empty>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    match access::delete_key(&pool, c.account.id, *id).await {
        Ok(()) => Ok(see_other("/account/ssh-keys")),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct Empty {}

/// The page that shows a generated root password, once.
#[derive(Template)]
#[template(path = "password_shown.html")]
pub struct PasswordShown {
    pub ctx: Ctx,
    pub heading: String,
    pub message: String,
    pub password: Option<String>,
    pub next: String,
}

/// Answers with the page that shows the password; never cached, never stored.
pub fn show_password(page: &PasswordShown) -> Result<HttpResponse, WebError> {
    let html = page.render()?;
    Ok(HttpResponse::Ok().content_type("text/html; charset=utf-8").insert_header(("Cache-Control", "no-store")).body(html))
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    root_password: String,
}

#[post("/servers/{id}/password")]
async fn password_reset(
    c: CurrentCustomer,
    id: web::Path<InstanceId>,
    f: CsrfForm<PasswordForm>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    match access::reset_customer_password(&pool, c.account.id, *id, Some(f.0.root_password)).await {
        Ok(generated) => show_password(&PasswordShown {
            ctx: Ctx::of(&c.session),
            heading: "Root password changed".into(),
            message: "The server's root password is being changed; it takes effect within seconds.".into(),
            password: generated,
            next: format!("/servers/{}", *id),
        }),
        Err(AccessError::NoServer) => Err(WebError::NotFound),
        Err(e) if e.is_user_error() => Err(WebError::BadForm(e.to_string())),
        Err(e) => Err(e.into()),
    }
}
