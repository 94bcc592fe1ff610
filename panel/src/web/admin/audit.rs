//! The audit log as admins read it.

use super::forms::{cell, list_page, Cell, ListView};
use crate::db::admin as sql_admin;
use crate::web::error::WebError;
use crate::web::pages::ok;
use crate::web::session::CurrentAdmin;
use actix_web::{get, web, HttpResponse};
use sqlx::PgPool;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(audit_log);
}

#[get("/admin/audit")]
async fn audit_log(a: CurrentAdmin, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    let rows = sql_admin::audit_recent(&pool, 300)
        .await?
        .iter()
        .map(|r| {
            let details = match &r.details {
                serde_json::Value::Object(m) if m.is_empty() => String::new(),
                d => {
                    let s = d.to_string();
                    if s.len() > 200 {
                        format!("{}…", &s[..s.char_indices().nth(200).map(|x| x.0).unwrap_or(s.len())])
                    } else {
                        s
                    }
                }
            };
            vec![
                cell(r.at.format("%Y-%m-%d %H:%M:%S UTC")),
                cell(format!("{} ({})", r.actor_email.as_deref().unwrap_or("—"), r.actor_kind)),
                cell(&r.action),
                cell(match (&r.target_type, &r.target_id) {
                    (Some(t), Some(i)) => format!("{t} {i}"),
                    _ => "—".into(),
                }),
                cell(r.remote_addr.as_deref().unwrap_or("—")),
                Cell { text: details, class: "mono", ..Default::default() },
            ]
        })
        .collect();
    let list = ListView {
        title: "Audit log".into(),
        intro: "Every admin and reseller action, newest first. The log is append-only.".into(),
        headers: vec!["When", "Who", "What", "On", "From", "Details"],
        rows,
        ..Default::default()
    };
    ok(&list_page(&a, list, None))
}
