//! The outbox as admins read it: every mail, and one mail as sent (secret links withheld).

use super::forms::{cell, link, list_page, num, Cell, ListView};
use crate::config::Settings;
use crate::web::error::WebError;
use crate::web::pages::{ok, Ctx};
use crate::web::session::CurrentAdmin;
use actix_web::{get, web, HttpResponse};
use askama::Template;
use sqlx::PgPool;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(emails).service(email_show);
}

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
