//! Sessions and CSRF.
//!
//! Every visitor carries one cookie, `vessel_session`: a random 256-bit token plus an
//! HMAC-SHA256 signature under the installation's session key (HttpOnly, SameSite=Lax,
//! Secure when configured). Logging in rotates the token and stores its sha256 in the
//! `sessions` table: server-side so that logging out, a password reset or a suspension revokes
//! a login on every panel process at once, and a stolen database holds no usable token.
//!
//! The CSRF token of a form is HMAC(key, "csrf:" + session token): tied to the visitor, so
//! anonymous forms (log in, sign up) are protected too, with no row per visitor.

use super::error::WebError;
use crate::accounts::{AccountStatus, Role};
use crate::auth::{new_token, token_hash};
use crate::db::auth::{self as sql, AccountAuth};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;
use uuid::Uuid;

pub const COOKIE: &str = "vessel_session";

/// The signing key and cookie attributes, shared by all workers.
#[derive(Clone)]
pub struct SessionKeys {
    key: Vec<u8>,
    secure: bool,
    pub lifetime_hours: i64,
}

impl SessionKeys {
    pub fn new(secret: &str, secure: bool, lifetime_hours: i64) -> Self {
        let key = if secret.is_empty() {
            tracing::warn!(
                "session.secret is empty: using a random key (sessions end when this process does, \
                            and other panel processes will not accept its cookies)"
            );
            new_token().into_bytes()
        } else {
            secret.as_bytes().to_vec()
        };
        Self { key, secure, lifetime_hours: lifetime_hours.max(1) }
    }

    fn mac(&self, purpose: &str, token: &str) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        m.update(purpose.as_bytes());
        m.update(b":");
        m.update(token.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    pub fn cookie_value(&self, token: &str) -> String {
        format!("{token}.{}", self.mac("cookie", token))
    }

    /// The token of a cookie whose signature holds.
    pub fn verify(&self, value: &str) -> Option<String> {
        let (token, sig) = value.rsplit_once('.')?;
        constant_time_eq(sig.as_bytes(), self.mac("cookie", token).as_bytes()).then(|| token.to_string())
    }

    pub fn csrf_for(&self, token: &str) -> String {
        self.mac("csrf", token)
    }

    pub fn cookie(&self, token: &str) -> Cookie<'static> {
        Cookie::build(COOKIE, self.cookie_value(token)).path("/").http_only(true).same_site(SameSite::Lax).secure(self.secure).finish()
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A token minted during this request, which the response must set as the cookie.
#[derive(Clone)]
pub struct SetToken(pub String);

/// The visitor: their token, their CSRF token, and who they are logged in as.
#[derive(Clone)]
pub struct Session {
    pub token: String,
    pub csrf: String,
    /// Fully logged in (password and, if enabled, TOTP), with an active account.
    pub account: Option<AccountAuth>,
    /// Password given, TOTP code still owed.
    pub awaiting_totp: Option<Uuid>,
}

impl Session {
    pub fn is_admin(&self) -> bool {
        self.account.as_ref().is_some_and(|a| a.role == Role::Admin)
    }
    pub fn is_customer(&self) -> bool {
        self.account.as_ref().is_some_and(|a| a.role == Role::Customer)
    }
    pub fn is_reseller(&self) -> bool {
        self.account.as_ref().is_some_and(|a| a.role == Role::Reseller)
    }

    async fn load(req: &HttpRequest) -> Result<Session, WebError> {
        if let Some(s) = req.extensions().get::<Session>() {
            return Ok(s.clone());
        }
        let keys = req.app_data::<web::Data<SessionKeys>>().ok_or_else(|| WebError::internal("no session keys"))?;
        let pool = req.app_data::<web::Data<PgPool>>().ok_or_else(|| WebError::internal("no pool"))?;
        let token = req.cookie(COOKIE).and_then(|c| keys.verify(c.value()));
        let (token, fresh) = match token {
            Some(t) => (t, false),
            None => (new_token(), true),
        };
        let mut s = Session { csrf: keys.csrf_for(&token), token: token.clone(), account: None, awaiting_totp: None };
        if fresh {
            req.extensions_mut().insert(SetToken(token));
        } else if let Some((account, awaiting)) = sql::session(pool, &token_hash(&s.token)).await? {
            if awaiting {
                s.awaiting_totp = Some(account);
            } else if let Some(a) = sql::account_by_id(pool, account).await? {
                if a.status == AccountStatus::Active {
                    s.account = Some(a);
                }
            }
        }
        req.extensions_mut().insert(s.clone());
        Ok(s)
    }

    /// Starts a login: a new token (no fixation of a token the visitor had before), stored
    /// hashed. The handler's response carries the cookie via [`SetToken`].
    pub async fn begin_login(req: &HttpRequest, account: Uuid, awaiting_totp: bool) -> Result<(), WebError> {
        let keys = req.app_data::<web::Data<SessionKeys>>().ok_or_else(|| WebError::internal("no session keys"))?;
        let pool = req.app_data::<web::Data<PgPool>>().ok_or_else(|| WebError::internal("no pool"))?;
        if let Some(old) = req.cookie(COOKIE).and_then(|c| keys.verify(c.value())) {
            sql::delete_session(pool, &token_hash(&old)).await?;
        }
        let token = new_token();
        let expires = chrono::Utc::now() + chrono::Duration::hours(keys.lifetime_hours);
        sql::insert_session(pool, &token_hash(&token), account, awaiting_totp, expires).await?;
        req.extensions_mut().insert(SetToken(token));
        Ok(())
    }

    /// Ends the login on the server and hands the visitor a fresh anonymous token.
    pub async fn end(req: &HttpRequest) -> Result<(), WebError> {
        let keys = req.app_data::<web::Data<SessionKeys>>().ok_or_else(|| WebError::internal("no session keys"))?;
        let pool = req.app_data::<web::Data<PgPool>>().ok_or_else(|| WebError::internal("no pool"))?;
        if let Some(old) = req.cookie(COOKIE).and_then(|c| keys.verify(c.value())) {
            sql::delete_session(pool, &token_hash(&old)).await?;
        }
        req.extensions_mut().insert(SetToken(new_token()));
        Ok(())
    }
}

impl FromRequest for Session {
    type Error = WebError;
    type Future = LocalBoxFuture<'static, Result<Self, WebError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Session::load(&req).await })
    }
}

/// The session of a logged-in account with `role`: nobody logged in goes to the log-in
/// page, any other role gets 404 (an area does not advertise itself to the wrong role).
async fn logged_in_as(req: HttpRequest, role: Role) -> Result<(AccountAuth, Session), WebError> {
    let session = Session::load(&req).await?;
    match &session.account {
        None => Err(WebError::LoginRequired(req.uri().path().to_string())),
        Some(a) if a.role == role => {
            // Staff accounts reach their areas only with two-factor on when the provider says so.
            if matches!(role, Role::Admin | Role::Reseller) && a.totp_enabled_at.is_none() {
                let pool = req.app_data::<web::Data<PgPool>>().ok_or_else(|| WebError::internal("no pool"))?;
                if sql::staff_two_factor_required(pool).await? {
                    return Err(WebError::TwoFactorRequired);
                }
            }
            Ok((a.clone(), session))
        }
        Some(_) => Err(WebError::NotFound),
    }
}

/// An extractor for the logged-in account of one role, by [`logged_in_as`]: the same two
/// fields and the same refusal for every area.
macro_rules! logged_in {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        pub struct $name {
            pub account: AccountAuth,
            pub session: Session,
        }

        impl FromRequest for $name {
            type Error = WebError;
            type Future = LocalBoxFuture<'static, Result<Self, WebError>>;
            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                let req = req.clone();
                Box::pin(async move { logged_in_as(req, $role).await.map(|(account, session)| $name { account, session }) })
            }
        }
    };
}

logged_in!(
    /// A logged-in customer (else: redirect to the log-in page; other roles: 404).
    CurrentCustomer,
    Role::Customer
);
logged_in!(
    /// A logged-in admin. Everybody else gets 404: the admin area does not advertise itself.
    CurrentAdmin,
    Role::Admin
);
logged_in!(
    /// A logged-in reseller: its own area (`/reseller/…`). Everybody else gets 404.
    CurrentReseller,
    Role::Reseller
);

/// Any logged-in account, whatever its role: its own security settings (two-factor).
pub struct AnyAccount {
    pub account: AccountAuth,
    pub session: Session,
}

impl FromRequest for AnyAccount {
    type Error = WebError;
    type Future = LocalBoxFuture<'static, Result<Self, WebError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let session = Session::load(&req).await?;
            match session.account.clone() {
                None => Err(WebError::LoginRequired(req.uri().path().to_string())),
                Some(account) => Ok(AnyAccount { account, session }),
            }
        })
    }
}

/// Whoever has invoices of their own: a customer, or a reseller (its wholesale invoices). The
/// invoice pages are one set for both, scoped by the account exactly as for a customer.
pub struct InvoiceHolder(pub CurrentCustomer);

impl FromRequest for InvoiceHolder {
    type Error = WebError;
    type Future = LocalBoxFuture<'static, Result<Self, WebError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let r = match logged_in_as(req.clone(), Role::Customer).await {
                Err(WebError::NotFound) => logged_in_as(req, Role::Reseller).await,
                r => r,
            };
            r.map(|(account, session)| InvoiceHolder(CurrentCustomer { account, session }))
        })
    }
}

/// A form whose CSRF token has been checked before anything else is looked at. Every POST
/// handler takes its input through this, so no form can forget the check.
pub struct CsrfForm<T>(pub T);

impl<T: serde::de::DeserializeOwned + 'static> FromRequest for CsrfForm<T> {
    type Error = WebError;
    type Future = LocalBoxFuture<'static, Result<Self, WebError>>;
    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let session = Session::load(&req).await?;
            let body = body.await.map_err(|_| WebError::BadForm("the form could not be read".into()))?;
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
            let given = pairs.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str()).unwrap_or("");
            if !constant_time_eq(given.as_bytes(), session.csrf.as_bytes()) {
                tracing::warn!(path = %req.path(), "form refused: missing or wrong CSRF token");
                return Err(WebError::Csrf);
            }
            serde_urlencoded::from_bytes(&body).map(CsrfForm).map_err(|e| WebError::BadForm(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_signed() {
        let k = SessionKeys::new("0123456789abcdef0123456789abcdef", false, 24);
        let v = k.cookie_value("tok");
        assert_eq!(k.verify(&v).as_deref(), Some("tok"));
        assert_eq!(k.verify("tok.00"), None);
        assert_eq!(k.verify(&v.replace("tok", "tik")), None);
        let other = SessionKeys::new("another key of at least 32 chars!!", false, 24);
        assert_eq!(other.verify(&v), None);
        assert_ne!(k.csrf_for("a"), k.csrf_for("b"));
        let c = k.cookie("tok");
        assert_eq!(c.http_only(), Some(true));
        assert_eq!(c.same_site(), Some(SameSite::Lax));
    }
}
