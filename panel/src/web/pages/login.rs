//! Logging in (with a TOTP code when two-factor is on), out, and resetting a forgotten password.

use super::signup::too_many_mails;
use super::{home_of, html, invalid, ok, safe_next, see_other, ConfirmTokenPage, Ctx, Done, MessagePage};
use crate::auth::{self, AuthError};
use crate::config::Settings;
use crate::web::error::WebError;
use crate::web::session::{CsrfForm, Session};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(login_form)
        .service(login)
        .service(totp_form)
        .service(totp)
        .service(logout)
        .service(reset_request_form)
        .service(reset_request)
        .service(reset_form)
        .service(reset);
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    ctx: Ctx,
    email: String,
    next: String,
    error: Option<String>,
    /// Offer to mail a new verification link.
    resend: bool,
}

#[get("/login")]
async fn login_form(session: Session, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    ok(&LoginPage {
        ctx: Ctx::of(&session).with_notice(q.done.as_deref()),
        email: String::new(),
        next: safe_next(q.next.as_deref()).unwrap_or_default(),
        error: None,
        resend: false,
    })
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    next: String,
}

#[post("/login")]
async fn login(req: HttpRequest, session: Session, form: CsrfForm<LoginForm>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    let f = form.0;
    let addr = crate::web::remote_addr(&req);
    match auth::log_in(&pool, &f.email, &f.password, addr).await {
        Ok(li) => {
            Session::begin_login(&req, li.account.id, li.needs_totp).await?;
            let next = safe_next(Some(&f.next));
            if li.needs_totp {
                let q = serde_urlencoded::to_string([("next", next.unwrap_or_default())]).unwrap_or_default();
                return Ok(see_other(&format!("/login/totp?{q}")));
            }
            let home = home_of(li.account.role);
            Ok(see_other(&next.unwrap_or_else(|| home.to_string())))
        }
        Err(e) if e.is_user_error() => {
            let status = match e {
                AuthError::RateLimited { .. } => actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                _ => actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            };
            let resend = matches!(e, AuthError::NotVerified);
            html(status, &LoginPage { ctx: Ctx::of(&session), email: f.email, next: f.next, error: Some(e.to_string()), resend })
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "totp.html")]
struct TotpPage {
    ctx: Ctx,
    next: String,
    error: Option<String>,
}

#[get("/login/totp")]
async fn totp_form(session: Session, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    if session.awaiting_totp.is_none() {
        return Ok(see_other("/login"));
    }
    ok(&TotpPage { ctx: Ctx::of(&session), next: safe_next(q.next.as_deref()).unwrap_or_default(), error: None })
}

#[derive(Deserialize)]
pub(super) struct CodeForm {
    /// Missing is the same as wrong (a page saying so, not a 400).
    #[serde(default)]
    pub(super) code: String,
    #[serde(default)]
    pub(super) next: String,
}

#[post("/login/totp")]
async fn totp(req: HttpRequest, session: Session, form: CsrfForm<CodeForm>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    let Some(account) = session.awaiting_totp else { return Ok(see_other("/login")) };
    let f = form.0;
    let addr = crate::web::remote_addr(&req);
    match auth::check_totp(&pool, account, &f.code, addr).await {
        Ok(()) => {
            Session::begin_login(&req, account, false).await?;
            let a = crate::db::auth::account_by_id(&pool, account).await?.ok_or(WebError::NotFound)?;
            let home = home_of(a.role);
            Ok(see_other(&safe_next(Some(&f.next)).unwrap_or_else(|| home.to_string())))
        }
        Err(e) if e.is_user_error() => invalid(&TotpPage { ctx: Ctx::of(&session), next: f.next, error: Some(e.to_string()) }),
        Err(e) => Err(e.into()),
    }
}

#[post("/logout")]
async fn logout(req: HttpRequest, _form: CsrfForm<serde_json::Map<String, serde_json::Value>>) -> Result<HttpResponse, WebError> {
    Session::end(&req).await?;
    Ok(see_other("/login?done=logged_out"))
}

// ------------------------------------------------------------------ password reset

#[derive(Template)]
#[template(path = "reset_request.html")]
struct ResetRequestPage {
    ctx: Ctx,
}

#[get("/reset")]
async fn reset_request_form(session: Session) -> Result<HttpResponse, WebError> {
    ok(&ResetRequestPage { ctx: Ctx::of(&session) })
}

#[derive(Deserialize)]
pub(super) struct EmailForm {
    pub(super) email: String,
}

#[post("/reset")]
async fn reset_request(
    req: HttpRequest,
    session: Session,
    form: CsrfForm<EmailForm>,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, WebError> {
    match auth::limit_mail_request(&pool, auth::MailRequest::PasswordReset, &form.0.email, crate::web::remote_addr(&req)).await {
        Ok(()) => {}
        Err(e @ AuthError::TooManyMails { .. }) => return too_many_mails(&session, &e),
        Err(e) => return Err(e.into()),
    }
    auth::request_password_reset(&pool, &settings.http.base_url, &form.0.email).await?;
    ok(&MessagePage {
        ctx: Ctx::of(&session),
        heading: "Check your email".into(),
        message: "If an account uses that address, we sent it a link to choose a new password. The link works once, for an hour.".into(),
    })
}

#[get("/reset/{token}")]
async fn reset_form(session: Session, token: web::Path<String>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    if !auth::token_is_live(&pool, &token, auth::TokenPurpose::PasswordReset).await? {
        return invalid(&MessagePage { ctx: Ctx::of(&session), heading: "Link expired".into(), message: AuthError::BadToken.to_string() });
    }
    ok(&ConfirmTokenPage {
        ctx: Ctx::of(&session),
        heading: "Choose a new password".into(),
        action: format!("/reset/{token}"),
        button: "Set the new password".into(),
        with_password: true,
        error: None,
    })
}

#[derive(Deserialize)]
pub(super) struct PasswordForm {
    pub(super) password: String,
}

#[post("/reset/{token}")]
async fn reset(
    session: Session,
    token: web::Path<String>,
    form: CsrfForm<PasswordForm>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    match auth::reset_password(&pool, &token, &form.0.password).await {
        Ok(_) => Ok(see_other("/login?done=reset")),
        Err(e @ AuthError::BadToken) => {
            invalid(&MessagePage { ctx: Ctx::of(&session), heading: "Link expired".into(), message: e.to_string() })
        }
        Err(e) if e.is_user_error() => invalid(&ConfirmTokenPage {
            ctx: Ctx::of(&session),
            heading: "Choose a new password".into(),
            action: format!("/reset/{token}"),
            button: "Set the new password".into(),
            with_password: true,
            error: Some(e.to_string()),
        }),
        Err(e) => Err(e.into()),
    }
}
