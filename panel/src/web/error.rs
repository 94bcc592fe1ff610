//! What goes wrong while answering a page, mapped to a page that says what to do. A person's
//! mistake is never a 500.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Absent, or not yours: the same answer, so nothing leaks.
    #[error("not found")]
    NotFound,
    #[error("the form was refused: its security token is missing or out of date")]
    Csrf,
    #[error("the form could not be understood: {0}")]
    BadForm(String),
    #[error("log in to see {0}")]
    LoginRequired(String),
    /// The provider requires two-factor for this role and the account has none yet: it is
    /// sent to set it up before anything else.
    #[error("turn on two-factor authentication first")]
    TwoFactorRequired,
    #[error("{0}")]
    Conflict(String),
    /// Something we need is down (the PDF renderer): a 503 that says what still works.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl WebError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        WebError::Internal(e.to_string())
    }
}

impl From<sqlx::Error> for WebError {
    fn from(e: sqlx::Error) -> Self {
        WebError::Internal(format!("database: {e}"))
    }
}

impl From<crate::db::DbError> for WebError {
    fn from(e: crate::db::DbError) -> Self {
        WebError::Internal(e.to_string())
    }
}

// ---- the services' errors, each mapped once: "not found" is a 404, the database a 500, and
// everything else a mistake the person can act on (its message is theirs to read). A handler
// that shows the mistake on its own form matches `WebError::Conflict` (see [`WebError::mistake`]).

impl From<crate::billing::BillingError> for WebError {
    fn from(e: crate::billing::BillingError) -> Self {
        use crate::billing::BillingError as E;
        match e {
            E::InvoiceNotFound => WebError::NotFound,
            E::Db(e) => e.into(),
            e => WebError::Conflict(e.to_string()),
        }
    }
}

impl From<crate::instances::InstanceError> for WebError {
    fn from(e: crate::instances::InstanceError) -> Self {
        use crate::instances::InstanceError as E;
        match e {
            E::NotFound => WebError::NotFound,
            E::Db(e) => e.into(),
            E::Billing(e) => e.into(),
            e => WebError::Conflict(e.to_string()),
        }
    }
}

impl From<crate::admin::AdminError> for WebError {
    fn from(e: crate::admin::AdminError) -> Self {
        use crate::admin::AdminError as E;
        match e {
            E::NotFound => WebError::NotFound,
            E::Db(e) => e.into(),
            E::Invalid { message, .. } => WebError::Conflict(message),
        }
    }
}

impl From<crate::resellers::ResellerError> for WebError {
    fn from(e: crate::resellers::ResellerError) -> Self {
        use crate::resellers::ResellerError as E;
        match e {
            E::NotFound(_) => WebError::NotFound,
            E::Db(e) => e.into(),
            e => WebError::Conflict(e.to_string()),
        }
    }
}

impl From<crate::jobs::RetryError> for WebError {
    fn from(e: crate::jobs::RetryError) -> Self {
        use crate::jobs::RetryError as E;
        match e {
            E::NotFound => WebError::NotFound,
            E::Db(e) => e.into(),
            e => WebError::Conflict(e.to_string()),
        }
    }
}

impl From<crate::api_keys::ApiKeyError> for WebError {
    fn from(e: crate::api_keys::ApiKeyError) -> Self {
        use crate::api_keys::ApiKeyError as E;
        match e {
            E::NotFound | E::NotAllowed => WebError::NotFound,
            E::Db(e) => e.into(),
            e => WebError::Conflict(e.to_string()),
        }
    }
}

impl From<crate::auth::AuthError> for WebError {
    fn from(e: crate::auth::AuthError) -> Self {
        match e {
            crate::auth::AuthError::Db(e) => e.into(),
            e if e.is_user_error() => WebError::Conflict(e.to_string()),
            e => WebError::internal(e),
        }
    }
}

impl From<crate::access::AccessError> for WebError {
    fn from(e: crate::access::AccessError) -> Self {
        use crate::access::AccessError as E;
        match e {
            E::UnknownKey | E::NoServer => WebError::NotFound,
            E::Db(e) => e.into(),
            e if e.is_user_error() => WebError::Conflict(e.to_string()),
            e => WebError::internal(e),
        }
    }
}

impl From<crate::firewall::FirewallError> for WebError {
    fn from(e: crate::firewall::FirewallError) -> Self {
        use crate::firewall::FirewallError as E;
        match e {
            E::NotFound => WebError::NotFound,
            E::Db(e) => e.into(),
            e if e.is_user_error() => WebError::Conflict(e.to_string()),
            e => WebError::internal(e),
        }
    }
}

impl From<crate::orders::OrderError> for WebError {
    fn from(e: crate::orders::OrderError) -> Self {
        use crate::orders::OrderError as E;
        match e {
            E::UnknownPlan => WebError::NotFound,
            E::Db(e) => e.into(),
            E::Billing(e) => e.into(),
            e => WebError::Conflict(e.to_string()),
        }
    }
}

impl From<crate::billing::pdf::PdfError> for WebError {
    fn from(e: crate::billing::pdf::PdfError) -> Self {
        use crate::billing::pdf::PdfError as E;
        match e {
            E::NotIssued => WebError::NotFound,
            E::Unavailable(..) => {
                tracing::error!(error = %e, "invoice PDFs cannot be rendered: install chromium (billing.pdf_chromium)");
                WebError::Unavailable(
                    "PDF invoices cannot be made right now. The invoice's page shows everything it says; please try the PDF again later."
                        .into(),
                )
            }
            E::Db(e) => e.into(),
            e => WebError::internal(e),
        }
    }
}

impl WebError {
    /// A service error as a page sees it: `Ok(message)` for a mistake to show on the form,
    /// `Err` for a 404 or a failure.
    pub fn mistake(e: impl Into<WebError>) -> Result<String, WebError> {
        match e.into() {
            WebError::Conflict(message) => Ok(message),
            other => Err(other),
        }
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        WebError::Internal(format!("template: {e}"))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    ctx: super::pages::Ctx,
    heading: &'a str,
    message: &'a str,
    back: &'a str,
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebError::NotFound => StatusCode::NOT_FOUND,
            WebError::Csrf => StatusCode::FORBIDDEN,
            WebError::BadForm(_) => StatusCode::BAD_REQUEST,
            WebError::LoginRequired(_) | WebError::TwoFactorRequired => StatusCode::SEE_OTHER,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let WebError::LoginRequired(path) = self {
            let next = serde_urlencoded::to_string([("next", path)]).unwrap_or_default();
            return HttpResponse::SeeOther().insert_header((header::LOCATION, format!("/login?{next}"))).finish();
        }
        if let WebError::TwoFactorRequired = self {
            return HttpResponse::SeeOther().insert_header((header::LOCATION, "/account/security?done=need_2fa")).finish();
        }
        let (heading, message): (&str, String) = match self {
            WebError::NotFound => ("Not found", "There is nothing here. Check the address, or go back to your list.".into()),
            WebError::Csrf => (
                "Form expired",
                "This form was refused because its security token is missing or out of date, so nothing was changed. \
                 Reload the page and submit the form again."
                    .into(),
            ),
            WebError::BadForm(why) => {
                ("Form not understood", format!("The form could not be read ({why}). Reload the page and try again."))
            }
            WebError::Conflict(why) => ("Not possible", why.clone()),
            WebError::Unavailable(why) => ("Not available right now", why.clone()),
            WebError::Internal(e) => {
                tracing::error!(error = %e, "request failed");
                ("Something went wrong", "Something went wrong on our side; nothing you did. Please try again in a minute.".into())
            }
            WebError::LoginRequired(_) | WebError::TwoFactorRequired => unreachable!("handled above"),
        };
        let page = ErrorPage { ctx: super::pages::Ctx::anonymous(), heading, message: &message, back: "/" };
        let body = page.render().unwrap_or_else(|_| message.clone());
        HttpResponse::build(self.status_code()).content_type("text/html; charset=utf-8").body(body)
    }
}
