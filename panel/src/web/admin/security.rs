//! The provider's security settings (staff two-factor).

use super::forms::{check, form_page, FormView};
use super::{by, Done};
use crate::admin;
use crate::web::error::WebError;
use crate::web::pages::{ok, see_other};
use crate::web::session::{CsrfForm, CurrentAdmin};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use sqlx::PgPool;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(security).service(security_save);
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SecurityForm {
    require_staff_two_factor: Option<String>,
}

fn security_form(on: bool) -> FormView {
    FormView {
        title: "Security".into(),
        action: "/admin/security".into(),
        button: "Save".into(),
        intro: "With this on, admins and resellers without two-factor authentication are sent to set it up before they can \
                use their pages (log-in then asks for a code or a recovery code). Reseller API keys are not affected."
            .into(),
        fields: vec![check("require_staff_two_factor", "Require two-factor authentication for admins and resellers", on)],
        ..Default::default()
    }
}

#[get("/admin/security")]
async fn security(a: CurrentAdmin, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    let on = crate::db::auth::staff_two_factor_required(&pool).await?;
    let mut page = form_page(&a, security_form(on));
    page.ctx = page.ctx.with_notice(q.done.as_deref());
    ok(&page)
}

#[post("/admin/security")]
async fn security_save(
    req: HttpRequest,
    a: CurrentAdmin,
    f: CsrfForm<SecurityForm>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    let on = f.0.require_staff_two_factor.as_deref().is_some_and(|v| !v.is_empty() && v != "off");
    admin::set_staff_two_factor_required(&pool, by(&a, &req), on).await?;
    Ok(see_other("/admin/security?done=saved"))
}
