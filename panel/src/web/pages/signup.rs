//! Signing up, verifying the address, and accepting a reseller's invitation.

use super::login::{EmailForm, PasswordForm};
use super::{html, invalid, ok, safe_next, see_other, ConfirmTokenPage, Ctx, Done, MessagePage};
use crate::auth::{self, AuthError};
use crate::config::Settings;
use crate::web::error::WebError;
use crate::web::session::{CsrfForm, Session};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(signup_form)
        .service(signup)
        .service(verify_resend)
        .service(verify_form)
        .service(verify)
        .service(invitation_form)
        .service(invitation_accept);
}

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
pub(super) fn too_many_mails(session: &Session, e: &AuthError) -> Result<HttpResponse, WebError> {
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
    match auth::limit_mail_request(&pool, auth::MailRequest::SignUp, &f.email, crate::web::remote_addr(&req)).await {
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
    match auth::limit_mail_request(&pool, auth::MailRequest::Verification, &form.0.email, crate::web::remote_addr(&req)).await {
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
