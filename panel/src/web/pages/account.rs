//! The account's own pages: details, password, email address and two-factor settings.

use super::login::CodeForm;
use super::signup::too_many_mails;
use super::{invalid, ok, see_other, ConfirmTokenPage, Ctx, Done, MessagePage};
use crate::accounts::Role;
use crate::auth::{self, AuthError};
use crate::config::Settings;
use crate::web::error::WebError;
use crate::web::session::{AnyAccount, CsrfForm, CurrentCustomer, InvoiceHolder, Session};
use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(account_show)
        .service(totp_begin)
        .service(totp_confirm)
        .service(totp_disable)
        .service(totp_recovery_codes)
        .service(password_change)
        .service(email_change)
        .service(email_change_form)
        .service(email_change_confirm)
        .service(security_show)
        .service(profile);
}

/// What the two-factor card shows (the customer's account page and everyone's security page).
pub struct TotpView {
    pub enabled: bool,
    /// An enrolment in progress: (secret, otpauth URL).
    pub enrolling: Option<(String, String)>,
    /// The otpauth URL as an inline SVG QR code (drawn by the panel from its own URL).
    pub qr_svg: String,
    pub recovery_left: i64,
}

async fn totp_view(pool: &PgPool, a: &crate::db::auth::AccountAuth) -> Result<TotpView, WebError> {
    let enrolling = match (&a.totp_secret, a.totp_enabled_at) {
        (Some(s), None) => Some((s.clone(), auth::totp_url(s, &a.email))),
        _ => None,
    };
    let qr_svg = enrolling.as_ref().map(|(_, url)| auth::totp_qr_svg(url)).unwrap_or_default();
    let recovery_left = if a.totp_enabled_at.is_some() { auth::recovery_codes_left(pool, a.id).await? } else { 0 };
    Ok(TotpView { enabled: a.totp_enabled_at.is_some(), enrolling, qr_svg, recovery_left })
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    ctx: Ctx,
    name: String,
    email: String,
    country: String,
    countries: Vec<(String, String)>,
    address: String,
    vat_id: String,
    time_zone: String,
    totp: TotpView,
    credit: Vec<String>,
    error: Option<String>,
}

async fn account_page(c: &CurrentCustomer, pool: &PgPool, done: Option<&str>, error: Option<String>) -> Result<AccountPage, WebError> {
    let a = crate::db::auth::account_by_id(pool, c.account.id).await?.ok_or(WebError::NotFound)?;
    let credit = crate::web::customer::credit_lines(pool, &a).await?;
    let (address, vat_id) = crate::db::accounts::tax_facts(pool, a.id).await?;
    Ok(AccountPage {
        countries: crate::db::accounts::countries(pool).await?,
        address,
        vat_id: vat_id.unwrap_or_default(),
        ctx: Ctx::of(&c.session).with_notice(done),
        name: a.display_name.clone(),
        email: a.email.clone(),
        country: crate::db::auth::country_of(pool, a.id).await?.unwrap_or_default(),
        time_zone: a.time_zone.clone(),
        totp: totp_view(pool, &a).await?,
        credit,
        error,
    })
}

#[get("/account")]
/// A customer's or a reseller's account: both pay invoices, so both keep their tax facts here.
async fn account_show(InvoiceHolder(c): InvoiceHolder, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    ok(&account_page(&c, &pool, q.done.as_deref(), None).await?)
}

#[derive(Template)]
#[template(path = "security.html")]
struct SecurityPage {
    ctx: Ctx,
    email: String,
    required: bool,
    totp: TotpView,
    error: Option<String>,
}

async fn security_page(who: &AnyAccount, pool: &PgPool, done: Option<&str>, error: Option<String>) -> Result<SecurityPage, WebError> {
    let a = crate::db::auth::account_by_id(pool, who.account.id).await?.ok_or(WebError::NotFound)?;
    let staff = matches!(a.role, Role::Admin | Role::Reseller);
    let required = staff && a.totp_enabled_at.is_none() && auth::staff_two_factor_required(pool).await?;
    Ok(SecurityPage {
        ctx: Ctx::of(&who.session).with_notice(done),
        email: a.email.clone(),
        required,
        totp: totp_view(pool, &a).await?,
        error,
    })
}

/// Everyone's own two-factor settings (admins and resellers have no account page; a provider
/// that requires two-factor for them sends them here until it is on).
#[get("/account/security")]
async fn security_show(who: AnyAccount, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    ok(&security_page(&who, &pool, q.done.as_deref(), None).await?)
}

/// Where an account's two-factor settings live: a customer's account page, else the security page.
fn totp_home(who: &AnyAccount) -> &'static str {
    if who.account.role == Role::Customer {
        "/account"
    } else {
        "/account/security"
    }
}

/// The two-factor card's page again, with a mistake shown on it.
async fn totp_mistake(who: &AnyAccount, pool: &PgPool, e: String) -> Result<HttpResponse, WebError> {
    if who.account.role == Role::Customer {
        let c = CurrentCustomer { account: who.account.clone(), session: who.session.clone() };
        invalid(&account_page(&c, pool, None, Some(e)).await?)
    } else {
        invalid(&security_page(who, pool, None, Some(e)).await?)
    }
}

#[derive(Deserialize)]
struct PasswordChangeForm {
    current_password: String,
    new_password: String,
}

/// A new password, given the current one (counted like log-in attempts); every other session
/// ends, this one starts afresh.
#[post("/account/password")]
async fn password_change(
    req: HttpRequest,
    who: AnyAccount,
    f: CsrfForm<PasswordChangeForm>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    match auth::change_password(&pool, who.account.id, &f.0.current_password, &f.0.new_password, crate::web::remote_addr(&req)).await {
        Ok(()) => {
            Session::begin_login(&req, who.account.id, false).await?;
            Ok(see_other(&format!("{}?done=password_changed", totp_home(&who))))
        }
        Err(e) if e.is_user_error() => totp_mistake(&who, &pool, e.to_string()).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct EmailChangeForm {
    current_password: String,
    new_email: String,
}

/// A new address, given the current password: confirmed by a link mailed to it.
#[post("/account/email")]
async fn email_change(
    req: HttpRequest,
    who: AnyAccount,
    f: CsrfForm<EmailChangeForm>,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, WebError> {
    let addr = crate::web::remote_addr(&req);
    match auth::limit_mail_request(&pool, auth::MailRequest::EmailChange, &f.0.new_email, addr).await {
        Ok(()) => {}
        Err(e @ AuthError::TooManyMails { .. }) => return too_many_mails(&who.session, &e),
        Err(e) => return Err(e.into()),
    }
    match auth::request_email_change(&pool, &settings.http.base_url, who.account.id, &f.0.current_password, &f.0.new_email, addr).await {
        Ok(()) => Ok(see_other(&format!("{}?done=email_sent", totp_home(&who)))),
        Err(e) if e.is_user_error() => totp_mistake(&who, &pool, e.to_string()).await,
        Err(e) => Err(e.into()),
    }
}

/// The link mailed to a new address shows a button (mail scanners do not use it up).
#[get("/account/email/{token}")]
async fn email_change_form(session: Session, token: web::Path<String>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    if !auth::token_is_live(&pool, &token, auth::TokenPurpose::ChangeEmail).await? {
        return invalid(&MessagePage { ctx: Ctx::of(&session), heading: "Link expired".into(), message: AuthError::BadToken.to_string() });
    }
    ok(&ConfirmTokenPage {
        ctx: Ctx::of(&session),
        heading: "Confirm your new email address".into(),
        action: format!("/account/email/{token}"),
        button: "Use this address".into(),
        with_password: false,
        error: None,
    })
}

#[post("/account/email/{token}")]
async fn email_change_confirm(
    session: Session,
    token: web::Path<String>,
    _f: CsrfForm<serde_json::Map<String, serde_json::Value>>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    match auth::confirm_email_change(&pool, &token).await {
        Ok(_) => ok(&MessagePage {
            ctx: Ctx::of(&session),
            heading: "Email address changed".into(),
            message: "Your account now uses this address; log in with it from now on.".into(),
        }),
        Err(e) if e.is_user_error() => {
            invalid(&MessagePage { ctx: Ctx::of(&session), heading: "Not changed".into(), message: e.to_string() })
        }
        Err(e) => Err(e.into()),
    }
}

#[post("/account/totp/begin")]
async fn totp_begin(
    who: AnyAccount,
    _f: CsrfForm<serde_json::Map<String, serde_json::Value>>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    if who.account.totp_enabled_at.is_some() {
        return Err(WebError::Conflict("Two-factor authentication is already on; turn it off first to enrol a new device.".into()));
    }
    auth::begin_totp(&pool, &who.account).await?;
    Ok(see_other(totp_home(&who)))
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
struct RecoveryCodesPage {
    ctx: Ctx,
    heading: String,
    codes: Vec<String>,
    back: String,
}

/// Shown once, never cached.
fn recovery_codes_page(who: &AnyAccount, heading: &str, codes: Vec<String>, back: &str) -> Result<HttpResponse, WebError> {
    let page = RecoveryCodesPage { ctx: Ctx::of(&who.session), heading: heading.into(), codes, back: back.into() };
    Ok(HttpResponse::Ok().content_type("text/html; charset=utf-8").insert_header((header::CACHE_CONTROL, "no-store")).body(page.render()?))
}

#[post("/account/totp/confirm")]
async fn totp_confirm(who: AnyAccount, f: CsrfForm<CodeForm>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    match auth::confirm_totp(&pool, who.account.id, &f.0.code).await {
        Ok(codes) => {
            let back = format!("{}?done=totp_on", totp_home(&who));
            recovery_codes_page(&who, "Two-factor authentication is on", codes, &back)
        }
        Err(e) if e.is_user_error() => totp_mistake(&who, &pool, e.to_string()).await,
        Err(e) => Err(e.into()),
    }
}

/// Fresh recovery codes (the old ones stop working), for an account with two-factor on.
#[post("/account/totp/recovery-codes")]
async fn totp_recovery_codes(
    req: HttpRequest,
    who: AnyAccount,
    f: CsrfForm<CodeForm>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    if who.account.totp_enabled_at.is_none() {
        return Err(WebError::Conflict("Turn on two-factor authentication first.".into()));
    }
    match auth::regenerate_recovery_codes(&pool, who.account.id, &f.0.code, crate::web::remote_addr(&req)).await {
        Ok(codes) => recovery_codes_page(&who, "New recovery codes", codes, totp_home(&who)),
        Err(e) if e.is_user_error() => totp_mistake(&who, &pool, e.to_string()).await,
        Err(e) => Err(e.into()),
    }
}

#[post("/account/totp/disable")]
async fn totp_disable(req: HttpRequest, who: AnyAccount, f: CsrfForm<CodeForm>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    match auth::disable_totp(&pool, who.account.id, &f.0.code, crate::web::remote_addr(&req)).await {
        Ok(()) => Ok(see_other(&format!("{}?done=totp_off", totp_home(&who)))),
        Err(e) if e.is_user_error() => totp_mistake(&who, &pool, e.to_string()).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct ProfileForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    vat_id: String,
}

#[post("/account/details")]
async fn profile(InvoiceHolder(c): InvoiceHolder, f: CsrfForm<ProfileForm>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    let f = f.0;
    let p = auth::Profile { name: &f.name, country: &f.country, time_zone: &f.time_zone, address: &f.address, vat_id: &f.vat_id };
    match auth::update_profile(&pool, c.account.id, p).await {
        Ok(()) => Ok(see_other("/account?done=saved")),
        Err(e) if e.is_user_error() => invalid(&account_page(&c, &pool, None, Some(e.to_string())).await?),
        Err(e) => Err(e.into()),
    }
}
