//! Public and sign-in pages: the catalogue, sign up, verify, log in (with TOTP), log out,
//! password reset, and the customer's account page (two-factor settings).

use super::error::WebError;
use super::session::{AnyAccount, CsrfForm, CurrentCustomer, InvoiceHolder, Session};
use crate::accounts::Role;
use crate::auth::{self, AuthError};
use crate::catalogue::{self, PlanCard};
use crate::config::Settings;
use crate::money::Currency;
use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;

/// What the layout needs on every page.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub email: Option<String>,
    pub is_admin: bool,
    pub is_customer: bool,
    pub is_reseller: bool,
    pub csrf: String,
    pub notice: Option<String>,
    /// The visitor's time zone: times are stored in UTC and shown in it.
    pub tz: chrono_tz::Tz,
}

impl Ctx {
    pub fn anonymous() -> Self {
        Ctx { email: None, is_admin: false, is_customer: false, is_reseller: false, csrf: String::new(), notice: None, tz: chrono_tz::UTC }
    }
    pub fn of(s: &Session) -> Self {
        Ctx {
            email: s.account.as_ref().map(|a| a.email.clone()),
            is_admin: s.is_admin(),
            is_customer: s.is_customer(),
            is_reseller: s.is_reseller(),
            csrf: s.csrf.clone(),
            notice: None,
            tz: s.account.as_ref().and_then(|a| a.time_zone.parse().ok()).unwrap_or(chrono_tz::UTC),
        }
    }
    /// A moment in the visitor's time zone, e.g. "2026-11-25 15:04 CET".
    pub fn when(&self, t: &chrono::DateTime<chrono::Utc>) -> String {
        t.with_timezone(&self.tz).format("%Y-%m-%d %H:%M %Z").to_string()
    }
    /// With a fixed message chosen by code (never text from the URL).
    pub fn with_notice(mut self, done: Option<&str>) -> Self {
        self.notice = done.and_then(notice_text).map(str::to_string);
        self
    }
}

fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "verified" => "Your email address is confirmed. You can log in now.",
        "reset" => "Your password was changed and every other session signed out. Log in with the new password.",
        "invited" => "Your password is set. Log in to reach your reseller pages.",
        "server_start" => "Start requested: the host follows shortly.",
        "server_stop" => "Stop requested: the host follows shortly.",
        "server_suspend" => "Suspended: the host follows shortly. The reason is in the audit log.",
        "server_unsuspend" => "Suspension lifted: the server returns to the state it had.",
        "server_terminate" => "Termination requested: the server is destroyed and its billing ends with the period paid for.",
        "server_reinstall" => "Reinstall requested: the server is wiped and installed again.",
        "job_retried" => "The job is queued again.",
        "logged_out" => "You are logged out.",
        "totp_on" => "Two-factor authentication is on. You will be asked for a code when you log in.",
        "totp_off" => "Two-factor authentication is off.",
        "need_2fa" => "Your provider requires two-factor authentication for this account: set it up to continue.",
        "saved" => "Saved.",
        "resent" => "A fresh verification link is on its way (see Mail).",
        "password_changed" => "Your password is changed; every other session is signed out.",
        "email_sent" => "We mailed a link to the new address. Your address changes when it is followed (within 48 hours).",
        "email_changed" => "Your email address is changed.",
        "paid_card" => "Thank you: the credit is added as soon as the card payment is confirmed.",
        "plan_changed" => "The plan is changed; the server is resized shortly.",
        "cancel_at_period_end" => "Cancelled: the server runs until the end of its paid period and is not renewed.",
        "kept" => "The cancellation is taken back: the server renews as before.",
        "terminated" => "The server is cancelled and being removed; the unused part of its period is back as credit.",
        "paid" => "Paid. Thank you!",
        "ordered" => "Order placed.",
        "requested" => "Request queued; the server will act on it shortly.",
        "revoked" => "The key is revoked: requests with it are refused from now on.",
        "endpoint_added" => "Endpoint added. Events are signed with its secret, shown below.",
        "enabled" => "Enabled: new events are sent to it.",
        "disabled" => "Disabled: nothing is sent to it until it is enabled again.",
        "rotated" => "A new secret is in use from the next delivery on; update your receiver.",
        "deleted" => "Deleted.",
        "requeued" => "Queued again: it is sent within seconds.",
        _ => return None,
    })
}

pub fn html(status: actix_web::http::StatusCode, t: &impl Template) -> Result<HttpResponse, WebError> {
    Ok(HttpResponse::build(status).content_type("text/html; charset=utf-8").body(t.render()?))
}

pub fn ok(t: &impl Template) -> Result<HttpResponse, WebError> {
    html(actix_web::http::StatusCode::OK, t)
}

/// A form that needs correcting: shown again with the message, 422.
pub fn invalid(t: &impl Template) -> Result<HttpResponse, WebError> {
    html(actix_web::http::StatusCode::UNPROCESSABLE_ENTITY, t)
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location.to_string())).finish()
}

/// Where an account lands after logging in.
fn home_of(role: Role) -> &'static str {
    match role {
        Role::Admin => "/admin",
        Role::Reseller => "/reseller",
        Role::Customer => "/servers",
    }
}

/// Only paths of this site may be redirected to after log-in. The value is *parsed* the way a
/// browser will (WHATWG URL: tabs and newlines dropped, `\\` read as `/`) against a placeholder
/// origin, and kept only if it stays on that origin; what is returned is the parsed path and
/// query, re-serialised (percent-encoded), never the raw input. So `/\t/evil.example` (a
/// browser's `//evil.example`) and a `%0a` cannot leave the site or break the header.
pub(crate) fn safe_next(next: Option<&str>) -> Option<String> {
    const BASE: &str = "https://panel.invalid/";
    let next = next?.trim();
    if !next.starts_with('/') {
        return None;
    }
    let base = reqwest::Url::parse(BASE).ok()?;
    let url = base.join(next).ok()?;
    if url.origin() != base.origin() || !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    let mut out = url.path().to_string();
    if let Some(q) = url.query() {
        out.push('?');
        out.push_str(q);
    }
    // A path that still begins with two slashes would be protocol-relative once sent.
    if out.starts_with("//") || out.contains(['\r', '\n', '\t']) {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod next_tests {
    use super::safe_next;

    #[test]
    fn only_same_origin_paths_survive_and_come_back_normalised() {
        assert_eq!(safe_next(Some("/servers/1?x=2")).as_deref(), Some("/servers/1?x=2"));
        for evil in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "https://evil.example/",
            "evil",
            "/\\\\evil",
            "/ /evil.example",
        ] {
            let got = safe_next(Some(evil));
            assert!(got.as_deref().is_none_or(|g| g.starts_with('/') && !g.starts_with("//")), "{evil:?} -> {got:?}");
        }
        assert_eq!(safe_next(Some("/\t/evil.example")), None);
        // A newline is dropped or encoded, never passed into a Location header.
        assert!(safe_next(Some("/a\nb")).is_none_or(|g| !g.contains('\n')));
        assert_eq!(safe_next(Some("/a%0ab")).as_deref(), Some("/a%0ab"));
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(catalogue_page)
        .service(signup_form)
        .service(signup)
        .service(verify_resend)
        .service(verify_form)
        .service(verify)
        .service(login_form)
        .service(login)
        .service(totp_form)
        .service(totp)
        .service(logout)
        .service(reset_request_form)
        .service(reset_request)
        .service(reset_form)
        .service(reset)
        .service(invitation_form)
        .service(invitation_accept)
        .service(account_show)
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

#[derive(Deserialize)]
pub struct Done {
    done: Option<String>,
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    ctx: Ctx,
    containers: Vec<PlanCard>,
    kvm: Vec<PlanCard>,
    currency: String,
}

#[get("/")]
async fn catalogue_page(session: Session, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    let currency = session
        .account
        .as_ref()
        .and_then(|a| Currency::parse(&a.currency).ok())
        .unwrap_or_else(|| Currency::parse("EUR").expect("EUR is a currency"));
    let (containers, kvm) = catalogue::orderable(&pool, currency).await?;
    ok(&HomePage { ctx: Ctx::of(&session).with_notice(q.done.as_deref()), containers, kvm, currency: currency.to_string() })
}

// ------------------------------------------------------------------ sign up and verify

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    ctx: Ctx,
    email: String,
    name: String,
    country: String,
    /// ISO 3166-1 (code, name): the country select.
    countries: Vec<(String, String)>,
    /// The page to end up on after verifying and logging in (the plan that was clicked).
    next: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub ctx: Ctx,
    pub heading: String,
    pub message: String,
}

#[get("/signup")]
async fn signup_form(session: Session, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    let countries = crate::db::accounts::countries(pool.get_ref()).await?;
    let next = safe_next(q.next.as_deref()).unwrap_or_default();
    ok(&SignupPage {
        ctx: Ctx::of(&session),
        email: String::new(),
        name: String::new(),
        country: String::new(),
        countries,
        next,
        error: None,
    })
}

#[derive(Deserialize)]
struct SignupForm {
    email: String,
    password: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    next: String,
}

/// A request for mail refused by its limit: the page says when to try again (429).
fn too_many_mails(session: &Session, e: &AuthError) -> Result<HttpResponse, WebError> {
    html(
        actix_web::http::StatusCode::TOO_MANY_REQUESTS,
        &MessagePage { ctx: Ctx::of(session), heading: "Too many requests".into(), message: e.to_string() },
    )
}

#[post("/signup")]
async fn signup(
    req: HttpRequest,
    session: Session,
    form: CsrfForm<SignupForm>,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, WebError> {
    let f = form.0;
    let next = safe_next(Some(&f.next));
    match auth::limit_mail_request(&pool, auth::MailRequest::SignUp, &f.email, super::remote_addr(&req)).await {
        Ok(()) => {}
        Err(e @ AuthError::TooManyMails { .. }) => return too_many_mails(&session, &e),
        Err(e) => return Err(e.into()),
    }
    let r = auth::sign_up(
        &pool,
        &settings.http.base_url,
        auth::SignUp { email: &f.email, password: &f.password, name: &f.name, country: &f.country, next: next.as_deref() },
    )
    .await;
    match r {
        Ok(_) => ok(&MessagePage {
            ctx: Ctx::of(&session),
            heading: "Check your email".into(),
            message: format!(
                "We sent a confirmation link to {}. Follow it to activate your account, then log in. \
                 (If the address already has an account, log in or reset its password instead.)",
                f.email.trim()
            ),
        }),
        Err(e) if e.is_user_error() => {
            let countries = crate::db::accounts::countries(pool.get_ref()).await?;
            invalid(&SignupPage {
                ctx: Ctx::of(&session),
                email: f.email,
                name: f.name,
                country: f.country,
                countries,
                next: next.unwrap_or_default(),
                error: Some(e.to_string()),
            })
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "confirm_token.html")]
struct ConfirmTokenPage {
    ctx: Ctx,
    heading: String,
    action: String,
    button: String,
    with_password: bool,
    error: Option<String>,
}

/// The link in the mail shows a button rather than acting on GET, so mail scanners that
/// follow links do not use the token up.
#[get("/verify/{token}")]
async fn verify_form(
    session: Session,
    token: web::Path<String>,
    pool: web::Data<PgPool>,
    q: web::Query<Done>,
) -> Result<HttpResponse, WebError> {
    if !auth::token_is_live(&pool, &token, auth::TokenPurpose::VerifyEmail).await? {
        return invalid(&MessagePage { ctx: Ctx::of(&session), heading: "Link expired".into(), message: AuthError::BadToken.to_string() });
    }
    ok(&ConfirmTokenPage {
        ctx: Ctx::of(&session),
        heading: "Confirm your email address".into(),
        action: match safe_next(q.next.as_deref()) {
            Some(next) => format!("/verify/{token}?{}", serde_urlencoded::to_string([("next", next)]).unwrap_or_default()),
            None => format!("/verify/{token}"),
        },
        button: "Confirm my address".into(),
        with_password: false,
        error: None,
    })
}

#[post("/verify/resend")]
async fn verify_resend(
    req: HttpRequest,
    session: Session,
    form: CsrfForm<EmailForm>,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, WebError> {
    match auth::limit_mail_request(&pool, auth::MailRequest::Verification, &form.0.email, super::remote_addr(&req)).await {
        Ok(()) => {}
        Err(e @ AuthError::TooManyMails { .. }) => return too_many_mails(&session, &e),
        Err(e) => return Err(e.into()),
    }
    auth::resend_verification(&pool, &settings.http.base_url, &form.0.email).await?;
    ok(&MessagePage {
        ctx: Ctx::of(&session),
        heading: "Check your email".into(),
        message: "If that address has an account awaiting confirmation, we mailed it a new link. Earlier links no longer work.".into(),
    })
}

#[post("/verify/{token}")]
async fn verify(
    session: Session,
    token: web::Path<String>,
    _form: CsrfForm<serde_json::Map<String, serde_json::Value>>,
    pool: web::Data<PgPool>,
    q: web::Query<Done>,
) -> Result<HttpResponse, WebError> {
    match auth::verify_email(&pool, &token).await {
        // Back to the plan that was clicked before signing up, through the log-in.
        Ok(_) => Ok(see_other(&match safe_next(q.next.as_deref()) {
            Some(next) => format!("/login?done=verified&{}", serde_urlencoded::to_string([("next", next)]).unwrap_or_default()),
            None => "/login?done=verified".into(),
        })),
        Err(e @ AuthError::BadToken) => {
            invalid(&MessagePage { ctx: Ctx::of(&session), heading: "Link expired".into(), message: e.to_string() })
        }
        Err(e) => Err(e.into()),
    }
}

// ------------------------------------------------------------------ log in / out

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
    let addr = super::remote_addr(&req);
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
struct CodeForm {
    /// Missing is the same as wrong (a page saying so, not a 400).
    #[serde(default)]
    code: String,
    #[serde(default)]
    next: String,
}

#[post("/login/totp")]
async fn totp(req: HttpRequest, session: Session, form: CsrfForm<CodeForm>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    let Some(account) = session.awaiting_totp else { return Ok(see_other("/login")) };
    let f = form.0;
    let addr = super::remote_addr(&req);
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
struct EmailForm {
    email: String,
}

#[post("/reset")]
async fn reset_request(
    req: HttpRequest,
    session: Session,
    form: CsrfForm<EmailForm>,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, WebError> {
    match auth::limit_mail_request(&pool, auth::MailRequest::PasswordReset, &form.0.email, super::remote_addr(&req)).await {
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
struct PasswordForm {
    password: String,
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

// ------------------------------------------------------------------ a reseller's invitation

fn invitation_page(session: &Session, token: &str, error: Option<String>) -> ConfirmTokenPage {
    ConfirmTokenPage {
        ctx: Ctx::of(session),
        heading: "Welcome: choose your password".into(),
        action: format!("/invitation/{token}"),
        button: "Set my password".into(),
        with_password: true,
        error,
    }
}

/// The invitation's link shows a form rather than acting, so a mail scanner cannot use it up.
#[get("/invitation/{token}")]
async fn invitation_form(session: Session, token: web::Path<String>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    if !auth::token_is_live(&pool, &token, auth::TokenPurpose::ResellerInvite).await.map_err(WebError::internal)? {
        return invalid(&MessagePage {
            ctx: Ctx::of(&session),
            heading: "Invitation expired".into(),
            message: "This invitation was already used or has expired. Ask your provider for a new one, or reset your password.".into(),
        });
    }
    ok(&invitation_page(&session, &token, None))
}

#[post("/invitation/{token}")]
async fn invitation_accept(
    session: Session,
    token: web::Path<String>,
    form: CsrfForm<PasswordForm>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    match auth::accept_reseller_invitation(&pool, &token, &form.0.password).await {
        Ok(_) => Ok(see_other("/login?done=invited")),
        Err(AuthError::BadToken) => invalid(&MessagePage {
            ctx: Ctx::of(&session),
            heading: "Invitation expired".into(),
            message: "This invitation was already used or has expired. Ask your provider for a new one, or reset your password.".into(),
        }),
        Err(e) if e.is_user_error() => invalid(&invitation_page(&session, &token, Some(e.to_string()))),
        Err(e) => Err(WebError::internal(e)),
    }
}

// ------------------------------------------------------------------ account & two-factor

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
    let credit = super::customer::credit_lines(pool, &a).await?;
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
    match auth::change_password(&pool, who.account.id, &f.0.current_password, &f.0.new_password, super::remote_addr(&req)).await {
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
    let addr = super::remote_addr(&req);
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
    match auth::regenerate_recovery_codes(&pool, who.account.id, &f.0.code, super::remote_addr(&req)).await {
        Ok(codes) => recovery_codes_page(&who, "New recovery codes", codes, totp_home(&who)),
        Err(e) if e.is_user_error() => totp_mistake(&who, &pool, e.to_string()).await,
        Err(e) => Err(e.into()),
    }
}

#[post("/account/totp/disable")]
async fn totp_disable(req: HttpRequest, who: AnyAccount, f: CsrfForm<CodeForm>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    match auth::disable_totp(&pool, who.account.id, &f.0.code, super::remote_addr(&req)).await {
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
