//! Customer sign-in: sign up with email verification, log in (rate-limited per account and
//! per address, counted in the database so every panel process agrees), password reset with
//! single-use expiring tokens, and optional TOTP two-factor. Free of HTTP: the web layer
//! turns the outcomes into cookies and pages.

use crate::accounts::{hash_password, verify_password, AccountError, AccountStatus, Email, Password};
use crate::db::auth::{self as sql, AccountAuth};
use base64::Engine;
use chrono::{Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::net::IpAddr;
use totp_rs::{Algorithm, Secret, TOTP};
use uuid::Uuid;

pg_enum! {
    /// What a mailed one-time token is for (`account_token_purpose` in the schema).
    pub enum TokenPurpose in "account_token_purpose" {
        VerifyEmail = "verify_email",
        PasswordReset = "password_reset",
        /// A new address waiting for its link to be followed.
        ChangeEmail = "change_email",
        /// A new reseller's invitation: choose a password, once, within days (not the hour a
        /// reset gets: an invitation waits for someone who did not ask for it).
        ResellerInvite = "reseller_invite",
    }
}

/// Failed log-ins tolerated per account *from one address* within [`WINDOW_SECS`] before that
/// address is refused for the account for the rest of the window. Low enough to stop guessing,
/// high enough for fat fingers.
pub const MAX_FAILURES_PER_ACCOUNT: i64 = 5;
/// Per account from every address together: a cap on distributed guessing, high enough that
/// an attacker's few tries do not lock the rightful owner (on another address) out.
pub const MAX_FAILURES_PER_ACCOUNT_ANYWHERE: i64 = 50;
/// Password hashes checked at once (argon2 is memory- and CPU-hard by design): more requests
/// wait for a permit instead of starving the machine.
pub const MAX_CONCURRENT_HASHES: usize = 4;
/// Per remote address: higher, since offices and NATs share one address.
pub const MAX_FAILURES_PER_ADDRESS: i64 = 30;
pub const WINDOW_SECS: i64 = 15 * 60;
/// Mail-sending requests (sign-up, password reset, new verification link) per remote address
/// within [`WINDOW_SECS`], all three together.
pub const MAX_MAILS_PER_ADDRESS: i64 = 10;
/// The same request for one target address within [`WINDOW_SECS`], from anywhere: nobody can
/// bury someone's inbox, and counting whether or not the address has an account tells nothing.
pub const MAX_MAILS_PER_TARGET: i64 = 3;
const VERIFY_TTL_HOURS: i64 = 48;
const RESET_TTL_MINUTES: i64 = 60;
const ISSUER: &str = "Vessel";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("the email address or the password is wrong")]
    BadCredentials,
    #[error("please confirm your email address first: follow the link we mailed you, or have a new one sent below")]
    NotVerified,
    #[error("this account is suspended or closed; contact support")]
    Suspended,
    #[error("too many failed attempts; try again in {minutes} minute(s)")]
    RateLimited { minutes: i64 },
    #[error("too many requests for mail from here or to that address; try again in {minutes} minute(s)")]
    TooManyMails { minutes: i64 },
    #[error("that code is not right; use the current 6-digit code from your authenticator app")]
    BadTotpCode,
    #[error("this link has expired or was already used; ask for a new one")]
    BadToken,
    #[error("that address is already in use by another account")]
    EmailTaken,
    #[error("the new password must differ from the current one")]
    SamePassword,
    #[error("a display name is at most 100 characters")]
    NameTooLong,
    /// A country not of ISO 3166-1, or a VAT ID of the wrong format ([`crate::tax`]).
    #[error(transparent)]
    Tax(#[from] crate::tax::TaxError),
    #[error("an address is at most 500 characters")]
    AddressTooLong,
    #[error("{0:?} is not a time zone; use a name such as Europe/Berlin or UTC")]
    BadTimeZone(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("outbox: {0}")]
    Outbox(String),
    #[error("password hashing failed")]
    Hashing,
}

impl AuthError {
    /// The form field at fault, for showing the message next to it.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            AuthError::Account(AccountError::BadEmail(_)) => Some("email"),
            AuthError::Account(AccountError::PasswordTooShort) => Some("password"),
            AuthError::BadTotpCode => Some("code"),
            AuthError::NameTooLong => Some("name"),
            AuthError::Tax(crate::tax::TaxError::BadCountry(_)) => Some("country"),
            AuthError::Tax(_) => Some("vat_id"),
            AuthError::AddressTooLong => Some("address"),
            AuthError::BadTimeZone(_) => Some("time_zone"),
            _ => None,
        }
    }
    /// A mistake the person can fix (shown on the form), as opposed to a failure of ours.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, AuthError::Db(_) | AuthError::Outbox(_) | AuthError::Hashing)
    }
}

/// Removes expired sessions and tokens and stale log-in failures (safe to run anywhere, any
/// number of times).
pub async fn prune(pool: &PgPool) -> Result<u64, AuthError> {
    Ok(sql::prune(pool, WINDOW_SECS).await?)
}

/// Runs [`prune`] every `every` until the process ends.
pub fn spawn_housekeeping(pool: PgPool, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match prune(&pool).await {
                Ok(n) if n > 0 => tracing::info!(removed = n, "sign-in housekeeping"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sign-in housekeeping failed"),
            }
            // API idempotency keys are kept 24 hours.
            match crate::db::idempotency::prune(&pool).await {
                Ok(n) if n > 0 => tracing::info!(removed = n, "idempotency keys pruned"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning idempotency keys failed"),
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// A random 256-bit token for a cookie or a link, URL-safe.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// What is stored instead of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub struct SignUp<'a> {
    pub email: &'a str,
    pub password: &'a str,
    pub name: &'a str,
    /// ISO 3166-1 alpha-2, for the tax rate; empty if not given.
    pub country: &'a str,
    /// Where to go after verifying and logging in (a same-origin path the caller checked,
    /// e.g. the order form of the plan that was clicked), carried in the verification link.
    pub next: Option<&'a str>,
}

/// What the profile form changes. The country and VAT ID decide the tax ([`crate::tax`]).
#[derive(Clone, Debug, Default)]
pub struct Profile<'a> {
    pub name: &'a str,
    /// An ISO 3166-1 code from the form's list; empty: not given.
    pub country: &'a str,
    pub time_zone: &'a str,
    /// The postal address printed on invoices.
    pub address: &'a str,
    /// A business's VAT ID (EU); empty: a consumer.
    pub vat_id: &'a str,
}

/// Name, country, address, VAT ID and time zone (display only: everything is stored in UTC).
/// Every field is checked before anything is written.
pub async fn update_profile(pool: &PgPool, account: Uuid, p: Profile<'_>) -> Result<(), AuthError> {
    let name = p.name.trim();
    if name.chars().count() > 100 {
        return Err(AuthError::NameTooLong);
    }
    let country = crate::tax::check_country(pool, p.country).await??;
    let address = p.address.trim().replace("\r\n", "\n");
    if address.chars().count() > 500 {
        return Err(AuthError::AddressTooLong);
    }
    let vat_id = match (p.vat_id.trim(), country.as_deref()) {
        ("", _) => None,
        (_, None) => return Err(crate::tax::TaxError::VatNeedsEuCountry.into()),
        (v, Some(c)) => Some(crate::tax::VatId::parse(c, v)?),
    };
    let tz = p.time_zone.trim();
    if tz.parse::<chrono_tz::Tz>().is_err() {
        return Err(AuthError::BadTimeZone(tz.to_string()));
    }
    sql::set_profile(pool, account, name, country.as_deref(), tz, &address, vat_id.as_ref().map(|v| v.as_str())).await?;
    Ok(())
}

/// Creates a customer awaiting verification and queues the verification mail in the same
/// transaction. An address already registered gets the same answer (no account enumeration)
/// and nothing is created. Returns the new account's id, if one was made.
pub async fn sign_up(pool: &PgPool, base_url: &str, s: SignUp<'_>) -> Result<Option<Uuid>, AuthError> {
    let email = Email::parse(s.email)?;
    let password = Password::parse(s.password)?;
    let name = s.name.trim();
    if name.chars().count() > 100 {
        return Err(AuthError::NameTooLong);
    }
    let country = crate::tax::check_country(pool, s.country).await??;
    let hash = hash_password_bounded(password).await?;
    let mut tx = pool.begin().await?;
    let Some(id) = sql::insert_customer(&mut tx, email.as_str(), &hash, name, "EUR", country.as_deref()).await? else {
        tx.rollback().await?;
        tracing::info!(%email, "sign-up for an address already registered: nothing created");
        return Ok(None);
    };
    queue_verification_to(&mut tx, base_url, id, &email, name, s.next).await.map_err(|e| AuthError::Outbox(e.to_string()))?;
    tx.commit().await?;
    tracing::info!(account = %id, "customer signed up; verification mail queued");
    Ok(Some(id))
}

/// Mails a fresh verification link to an account still awaiting verification (older links
/// stop working). The answer is the same for any address.
pub async fn resend_verification(pool: &PgPool, base_url: &str, email: &str) -> Result<(), AuthError> {
    let Ok(email) = Email::parse(email) else { return Ok(()) };
    let Some(a) = sql::account_by_email(pool, email.as_str()).await? else { return Ok(()) };
    if a.status != AccountStatus::PendingVerification {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    queue_verification(&mut tx, base_url, a.id, &email, &a.display_name).await.map_err(|e| AuthError::Outbox(e.to_string()))?;
    tx.commit().await?;
    Ok(())
}

/// Mails a fresh verification link (48 h) in the caller's transaction; earlier links of the
/// account stop working. Sign-up, the customer's "send again" and the admin's resend use it.
pub async fn queue_verification(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    base_url: &str,
    account: Uuid,
    email: &Email,
    name: &str,
) -> Result<(), sqlx::Error> {
    queue_verification_to(tx, base_url, account, email, name, None).await
}

/// As [`queue_verification`], with the page to return to after log-in in the link
/// (`?next=`, checked again when the link is followed).
pub async fn queue_verification_to(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    base_url: &str,
    account: Uuid,
    email: &Email,
    name: &str,
    next: Option<&str>,
) -> Result<(), sqlx::Error> {
    let token = new_token();
    sql::retire_tokens(tx, account, TokenPurpose::VerifyEmail).await?;
    sql::insert_token(tx, &token_hash(&token), account, TokenPurpose::VerifyEmail, Utc::now() + Duration::hours(VERIFY_TTL_HOURS)).await?;
    let mut link = format!("{}/verify/{token}", base_url.trim_end_matches('/'));
    if let Some(next) = next.filter(|n| !n.is_empty()) {
        link.push('?');
        link.push_str(&serde_urlencoded::to_string([("next", next)]).unwrap_or_default());
    }
    crate::outbox::enqueue(tx, email, "verify_email", serde_json::json!({ "link": link, "name": name }), None).await?;
    Ok(())
}

/// Confirms the address behind a verification link (once).
pub async fn verify_email(pool: &PgPool, token: &str) -> Result<Uuid, AuthError> {
    let mut tx = pool.begin().await?;
    let id = sql::consume_token(&mut tx, &token_hash(token), TokenPurpose::VerifyEmail).await?.ok_or(AuthError::BadToken)?;
    sql::mark_verified(&mut tx, id).await?;
    tx.commit().await?;
    Ok(id)
}

pub async fn token_is_live(pool: &PgPool, token: &str, purpose: TokenPurpose) -> Result<bool, AuthError> {
    Ok(sql::token_is_live(pool, &token_hash(token), purpose).await?)
}

/// The outcome of a correct password.
pub struct LoggedIn {
    pub account: AccountAuth,
    /// The session grants nothing until a TOTP code is given.
    pub needs_totp: bool,
}

/// Reserves this attempt under every limit before any password is checked (the policy is in
/// the README: 5 per account from one address, 50 per account from anywhere, 30 per address,
/// per 15 minutes). Returns the reserved rows, to give back if the password is right.
async fn reserve_attempt(pool: &PgPool, email: &str, addr: Option<IpAddr>) -> Result<Vec<i64>, AuthError> {
    let addr = addr.map(|a| a.to_string()).unwrap_or_else(|| "unknown".into());
    let pair = format!("{email}|{addr}");
    let limits = [
        sql::AttemptLimit { scope: "account_address", key: &pair, max: MAX_FAILURES_PER_ACCOUNT },
        sql::AttemptLimit { scope: "account", key: email, max: MAX_FAILURES_PER_ACCOUNT_ANYWHERE },
        sql::AttemptLimit { scope: "address", key: &addr, max: MAX_FAILURES_PER_ADDRESS },
    ];
    match sql::reserve_attempt(pool, &limits, WINDOW_SECS).await? {
        Ok(ids) => Ok(ids),
        Err((scope, oldest)) => {
            let until = oldest.unwrap_or_else(Utc::now) + Duration::seconds(WINDOW_SECS);
            let minutes = ((until - Utc::now()).num_seconds().max(0) + 59) / 60;
            tracing::warn!(scope, "log-in refused: rate limited");
            Err(AuthError::RateLimited { minutes: minutes.max(1) })
        }
    }
}

/// A request that mails someone a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailRequest {
    SignUp,
    PasswordReset,
    Verification,
    EmailChange,
}

impl MailRequest {
    fn as_str(self) -> &'static str {
        match self {
            MailRequest::SignUp => "signup",
            MailRequest::PasswordReset => "reset",
            MailRequest::Verification => "verify",
            MailRequest::EmailChange => "change_email",
        }
    }
}

/// Counts a request that mails a link, before anything is done, under the same advisory
/// locks as log-in attempts: [`MAX_MAILS_PER_ADDRESS`] per client address and
/// [`MAX_MAILS_PER_TARGET`] per request kind and target address, per [`WINDOW_SECS`]. Every
/// request counts (there is nothing to give back), so a parallel burst sends at most the limit.
/// A malformed address is not counted per target (the service refuses it anyway).
pub async fn limit_mail_request(pool: &PgPool, what: MailRequest, email: &str, addr: Option<IpAddr>) -> Result<(), AuthError> {
    let addr = addr.map(|a| a.to_string()).unwrap_or_else(|| "unknown".into());
    let target = Email::parse(email).map(|e| format!("{}|{}", what.as_str(), e.as_str())).ok();
    let mut limits = vec![sql::AttemptLimit { scope: "mail_address", key: &addr, max: MAX_MAILS_PER_ADDRESS }];
    if let Some(t) = &target {
        limits.push(sql::AttemptLimit { scope: "mail_target", key: t, max: MAX_MAILS_PER_TARGET });
    }
    match sql::reserve_attempt(pool, &limits, WINDOW_SECS).await? {
        Ok(_) => Ok(()),
        Err((scope, oldest)) => {
            let until = oldest.unwrap_or_else(Utc::now) + Duration::seconds(WINDOW_SECS);
            let minutes = ((until - Utc::now()).num_seconds().max(0) + 59) / 60;
            tracing::warn!(scope, what = what.as_str(), "mail request refused: rate limited");
            Err(AuthError::TooManyMails { minutes: minutes.max(1) })
        }
    }
}

/// Hashes a new password on the blocking pool under the same bound as checking one.
pub async fn hash_password_bounded(password: Password) -> Result<String, AuthError> {
    let _permit = hash_permits().acquire().await.map_err(|_| AuthError::Hashing)?;
    tokio::task::spawn_blocking(move || hash_password(&password)).await.map_err(|_| AuthError::Hashing)
}

fn hash_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| tokio::sync::Semaphore::new(MAX_CONCURRENT_HASHES))
}

/// Checks a password against its PHC hash on the blocking pool, at most
/// [`MAX_CONCURRENT_HASHES`] at a time, so a burst of log-ins neither stalls the async workers
/// nor exhausts the machine.
async fn verify_password_bounded(password: &str, phc: &str) -> bool {
    let Ok(_permit) = hash_permits().acquire().await else { return false };
    let (password, phc) = (password.to_string(), phc.to_string());
    tokio::task::spawn_blocking(move || verify_password(&password, &phc)).await.unwrap_or(false)
}

/// A PHC string of a password nobody has, so an unknown address costs as much time as a
/// known one and timing does not tell which addresses have accounts.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Vb0VwzX5p3S1P1l3gbm9PbXEbnK2p0TsNfTZ1WnqVEs";

/// Checks the password, under the rate limits. Any role may log in here; the pages decide
/// what each role sees.
pub async fn log_in(pool: &PgPool, email: &str, password: &str, addr: Option<IpAddr>) -> Result<LoggedIn, AuthError> {
    let email = Email::parse(email).map_err(|_| AuthError::BadCredentials)?;
    // Counted before the check: a failure row is already written, and taken back below only
    // if the password is right.
    let reserved = reserve_attempt(pool, email.as_str(), addr).await?;
    let account = sql::account_by_email(pool, email.as_str()).await?;
    let ok = match account.as_ref().and_then(|a| a.password_hash.as_deref()) {
        Some(h) => verify_password_bounded(password, h).await,
        None => {
            let _ = verify_password_bounded(password, DUMMY_HASH).await;
            false
        }
    };
    let Some(account) = account.filter(|_| ok) else {
        return Err(AuthError::BadCredentials);
    };
    sql::release_attempt(pool, &reserved).await?;
    match account.status {
        AccountStatus::PendingVerification => return Err(AuthError::NotVerified),
        AccountStatus::Suspended | AccountStatus::Closed => return Err(AuthError::Suspended),
        AccountStatus::Active => {}
    }
    let needs_totp = account.totp_enabled_at.is_some();
    if !needs_totp {
        sql::clear_failures(
            pool,
            "account_address",
            &format!("{}|{}", email.as_str(), addr.map(|a| a.to_string()).unwrap_or_else(|| "unknown".into())),
        )
        .await?;
    }
    Ok(LoggedIn { account, needs_totp })
}

fn totp_for(secret_b32: &str, email: &str) -> Option<TOTP> {
    let bytes = Secret::Encoded(secret_b32.to_string()).to_bytes().ok()?;
    TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes, Some(ISSUER.to_string()), email.to_string()).ok()
}

/// The 30-second step (within ±1 of now) whose code `code` is, if any.
fn matching_step(t: &TOTP, code: &str) -> Option<i64> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    let step = now / t.step;
    [step, step.saturating_sub(1), step + 1].into_iter().find(|s| constant_time_eq_str(&t.generate(s * t.step), code)).map(|s| s as i64)
}

fn constant_time_eq_str(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The second step of a log-in with two-factor enabled; wrong codes count as failures, and
/// each code works once.
pub async fn check_totp(pool: &PgPool, account: Uuid, code: &str, addr: Option<IpAddr>) -> Result<(), AuthError> {
    let a = sql::account_by_id(pool, account).await?.ok_or(AuthError::BadCredentials)?;
    let reserved = reserve_attempt(pool, &a.email, addr).await?;
    let ok = if a.totp_enabled_at.is_none() {
        false
    } else if let Some(recovery) = normalize_recovery_code(code) {
        // A recovery code instead of the app's code: each works once.
        sql::use_recovery_code(pool, a.id, &recovery_code_hash(&recovery)).await?
    } else {
        let step = a.totp_secret.as_deref().and_then(|s| totp_for(s, &a.email)).and_then(|t| matching_step(&t, code.trim()));
        match step {
            Some(step) => sql::use_totp_step(pool, a.id, step).await?,
            None => false,
        }
    };
    if !ok {
        return Err(AuthError::BadTotpCode);
    }
    sql::release_attempt(pool, &reserved).await?;
    sql::clear_failures(
        pool,
        "account_address",
        &format!("{}|{}", a.email, addr.map(|a| a.to_string()).unwrap_or_else(|| "unknown".into())),
    )
    .await?;
    Ok(())
}

/// Starts (or restarts) TOTP enrolment: a fresh secret, not yet enabled. Returns the secret
/// (base32, for typing in) and the otpauth:// URL (for authenticator apps).
pub async fn begin_totp(pool: &PgPool, account: &AccountAuth) -> Result<(String, String), AuthError> {
    let secret = Secret::generate_secret().to_encoded().to_string();
    sql::set_totp_secret(pool, account.id, &secret).await?;
    let url = totp_for(&secret, &account.email).map(|t| t.get_url()).unwrap_or_default();
    Ok((secret, url))
}

/// The otpauth:// URL of an enrolment in progress.
pub fn totp_url(secret: &str, email: &str) -> String {
    totp_for(secret, email).map(|t| t.get_url()).unwrap_or_default()
}

/// Recovery codes made when two-factor is turned on (and on request): each logs in once in
/// place of the app's code, for when the phone is lost.
pub const RECOVERY_CODES: usize = 10;

/// A recovery code as typed ("3f2a9-…", any case, spaces or dashes) in its stored form (20
/// lowercase hex digits, 80 random bits), or `None` if it is not shaped like one.
fn normalize_recovery_code(code: &str) -> Option<String> {
    let c: String = code.chars().filter(|c| !c.is_whitespace() && *c != '-').collect::<String>().to_ascii_lowercase();
    (c.len() == 20 && c.bytes().all(|b| b.is_ascii_hexdigit())).then_some(c)
}

/// Stored as sha256: 80 random bits cannot be guessed from the hash, so a slow hash is not needed.
fn recovery_code_hash(normalized: &str) -> String {
    hex::encode(Sha256::digest(format!("vessel-recovery:{normalized}").as_bytes()))
}

/// [`RECOVERY_CODES`] fresh recovery codes, to show once, and their hashes, to keep.
fn fresh_recovery_codes() -> (Vec<String>, Vec<String>) {
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    let mut hashes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let mut raw = [0u8; 10];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let h = hex::encode(raw);
        hashes.push(recovery_code_hash(&h));
        codes.push(format!("{}-{}-{}-{}", &h[0..5], &h[5..10], &h[10..15], &h[15..20]));
    }
    (codes, hashes)
}

/// A code from the authenticator app for a signed-in account's own changes to two-factor
/// (new recovery codes, turning it off): checked exactly like the log-in's second step — the
/// attempt is reserved under the log-in limits before the check (a stolen session cannot
/// guess its way through), and the code's step is recorded so it cannot be replayed (a
/// shoulder-surfed or already used code is refused).
async fn check_app_code(pool: &PgPool, a: &AccountAuth, code: &str, addr: Option<IpAddr>) -> Result<(), AuthError> {
    let reserved = reserve_attempt(pool, &a.email, addr).await?;
    let step = match (a.totp_enabled_at, a.totp_secret.as_deref()) {
        (Some(_), Some(secret)) => totp_for(secret, &a.email).and_then(|t| matching_step(&t, code.trim())),
        _ => None,
    };
    let ok = match step {
        Some(step) => sql::use_totp_step(pool, a.id, step).await?,
        None => false,
    };
    if !ok {
        return Err(AuthError::BadTotpCode);
    }
    sql::release_attempt(pool, &reserved).await?;
    Ok(())
}

/// Makes [`RECOVERY_CODES`] fresh recovery codes for an account with two-factor on, replacing
/// any earlier ones, and returns them to show once (only their hashes are kept). Needs a
/// current code from the app ([`check_app_code`]): a session alone must not be able to mint
/// codes that get past the second factor.
pub async fn regenerate_recovery_codes(pool: &PgPool, account: Uuid, code: &str, addr: Option<IpAddr>) -> Result<Vec<String>, AuthError> {
    let a = sql::account_by_id(pool, account).await?.ok_or(AuthError::BadCredentials)?;
    check_app_code(pool, &a, code, addr).await?;
    let (codes, hashes) = fresh_recovery_codes();
    if !sql::replace_recovery_codes(pool, account, &hashes).await? {
        return Err(AuthError::BadTotpCode);
    }
    Ok(codes)
}

/// How many unused recovery codes an account has left.
pub async fn recovery_codes_left(pool: &PgPool, account: Uuid) -> Result<i64, AuthError> {
    Ok(sql::recovery_codes_left(pool, account).await?)
}

/// An inline SVG QR code of an otpauth:// URL, for the authenticator app's camera.
pub fn totp_qr_svg(url: &str) -> String {
    use qrcode::render::svg;
    match qrcode::QrCode::new(url.as_bytes()) {
        // Inline in HTML: without the XML declaration the renderer puts first.
        Ok(code) => {
            let svg = code.render::<svg::Color>().min_dimensions(200, 200).quiet_zone(true).build();
            match svg.find("<svg") {
                Some(at) => svg[at..].to_string(),
                None => svg,
            }
        }
        Err(_) => String::new(),
    }
}

/// Whether the provider requires admins and resellers to use two-factor.
pub async fn staff_two_factor_required(pool: &PgPool) -> Result<bool, AuthError> {
    Ok(sql::staff_two_factor_required(pool).await?)
}

/// Enables two-factor once the account proves its app has the secret, and returns its
/// recovery codes (shown once). One transaction: two-factor is never on without its codes.
pub async fn confirm_totp(pool: &PgPool, account: Uuid, code: &str) -> Result<Vec<String>, AuthError> {
    let a = sql::account_by_id(pool, account).await?.ok_or(AuthError::BadCredentials)?;
    let Some(secret) = a.totp_secret.as_deref().filter(|_| a.totp_enabled_at.is_none()) else { return Err(AuthError::BadTotpCode) };
    let Some(step) = totp_for(secret, &a.email).and_then(|t| matching_step(&t, code.trim())) else { return Err(AuthError::BadTotpCode) };
    let (codes, hashes) = fresh_recovery_codes();
    // The code that turns it on is spent too; the secret must still be the one it was checked against.
    if !sql::enable_totp(pool, account, secret, step, &hashes).await? {
        return Err(AuthError::BadTotpCode);
    }
    Ok(codes)
}

/// Turning two-factor off needs a current code too ([`check_app_code`]: limited and not
/// replayable), so a stolen session cannot do it.
pub async fn disable_totp(pool: &PgPool, account: Uuid, code: &str, addr: Option<IpAddr>) -> Result<(), AuthError> {
    let a = sql::account_by_id(pool, account).await?.ok_or(AuthError::BadCredentials)?;
    check_app_code(pool, &a, code, addr).await?;
    sql::disable_totp(pool, account).await?;
    Ok(())
}

/// The current code for a secret (tests, and a CLI an operator could use for recovery).
pub fn current_totp_code(secret_b32: &str, email: &str) -> Option<String> {
    totp_for(secret_b32, email).and_then(|t| t.generate_current().ok())
}

/// The code for a secret at a Unix time (tests: the next step's code, accepted as clock skew).
pub fn totp_code_at(secret_b32: &str, email: &str, unix: u64) -> Option<String> {
    totp_for(secret_b32, email).map(|t| t.generate(unix))
}

/// Mails a reset link if the address has an account; the answer is the same either way.
pub async fn request_password_reset(pool: &PgPool, base_url: &str, email: &str) -> Result<(), AuthError> {
    let Ok(email) = Email::parse(email) else { return Ok(()) };
    let Some(a) = sql::account_by_email(pool, email.as_str()).await? else { return Ok(()) };
    if matches!(a.status, AccountStatus::Suspended | AccountStatus::Closed) || a.password_hash.is_none() {
        return Ok(());
    }
    let token = new_token();
    let mut tx = pool.begin().await?;
    sql::retire_tokens(&mut tx, a.id, TokenPurpose::PasswordReset).await?;
    sql::insert_token(&mut tx, &token_hash(&token), a.id, TokenPurpose::PasswordReset, Utc::now() + Duration::minutes(RESET_TTL_MINUTES))
        .await?;
    let link = format!("{}/reset/{token}", base_url.trim_end_matches('/'));
    crate::outbox::enqueue(
        &mut tx,
        &email,
        "password_reset",
        serde_json::json!({ "link": link, "name": a.display_name, "minutes": RESET_TTL_MINUTES }),
        None,
    )
    .await
    .map_err(|e| AuthError::Outbox(e.to_string()))?;
    tx.commit().await?;
    Ok(())
}

/// Sets a new password with a reset token (once), and signs the account out everywhere.
pub async fn reset_password(pool: &PgPool, token: &str, new_password: &str) -> Result<Uuid, AuthError> {
    set_password_with_token(pool, token, TokenPurpose::PasswordReset, new_password).await
}

/// Queues a new reseller's invitation in the transaction that made the account: its own mail
/// (`reseller_invitation`) with a single-use link to choose a password, valid `days` days.
pub async fn queue_reseller_invitation(
    tx: &mut crate::db::Tx<'_>,
    base_url: &str,
    account: Uuid,
    email: &Email,
    name: &str,
    days: i64,
) -> Result<(), AuthError> {
    let token = new_token();
    sql::retire_tokens(tx, account, TokenPurpose::ResellerInvite).await?;
    sql::insert_token(tx, &token_hash(&token), account, TokenPurpose::ResellerInvite, Utc::now() + Duration::days(days)).await?;
    let link = format!("{}/invitation/{token}", base_url.trim_end_matches('/'));
    crate::outbox::enqueue(tx, email, "reseller_invitation", serde_json::json!({ "link": link, "name": name, "days": days }), None)
        .await
        .map_err(|e| AuthError::Outbox(e.to_string()))?;
    Ok(())
}

/// A reseller accepts its invitation: the password it chose is set and the address counts as
/// verified (the mail reached it). The link works once.
pub async fn accept_reseller_invitation(pool: &PgPool, token: &str, new_password: &str) -> Result<Uuid, AuthError> {
    set_password_with_token(pool, token, TokenPurpose::ResellerInvite, new_password).await
}

async fn set_password_with_token(pool: &PgPool, token: &str, purpose: TokenPurpose, new_password: &str) -> Result<Uuid, AuthError> {
    let password = Password::parse(new_password)?;
    let hash = hash_password_bounded(password).await?;
    let mut tx = pool.begin().await?;
    let id = sql::consume_token(&mut tx, &token_hash(token), purpose).await?.ok_or(AuthError::BadToken)?;
    sql::set_password(&mut tx, id, &hash).await?;
    // Receiving the mail proves the address, too.
    sql::mark_verified(&mut tx, id).await?;
    sql::delete_sessions_of(&mut tx, id).await?;
    tx.commit().await?;
    Ok(id)
}

// ------------------------------------------------------------------ changing one's own password and address

/// Checks the current password of a logged-in account under the log-in limits (a stolen
/// session cannot guess it faster than the log-in form allows).
async fn check_current_password(pool: &PgPool, account: Uuid, password: &str, addr: Option<IpAddr>) -> Result<AccountAuth, AuthError> {
    let a = sql::account_by_id(pool, account).await?.ok_or(AuthError::BadCredentials)?;
    let reserved = reserve_attempt(pool, &a.email, addr).await?;
    let ok = match a.password_hash.as_deref() {
        Some(h) => verify_password_bounded(password, h).await,
        None => false,
    };
    if !ok {
        return Err(AuthError::BadCredentials);
    }
    sql::release_attempt(pool, &reserved).await?;
    Ok(a)
}

/// A new password, given the current one; every session of the account ends (the caller
/// starts a fresh one for the person who changed it).
pub async fn change_password(pool: &PgPool, account: Uuid, current: &str, new: &str, addr: Option<IpAddr>) -> Result<(), AuthError> {
    let password = Password::parse(new)?;
    if current == new {
        return Err(AuthError::SamePassword);
    }
    check_current_password(pool, account, current, addr).await?;
    let hash = hash_password_bounded(password).await?;
    let mut tx = pool.begin().await?;
    sql::set_password(&mut tx, account, &hash).await?;
    sql::delete_sessions_of(&mut tx, account).await?;
    tx.commit().await?;
    tracing::info!(%account, "password changed; sessions ended");
    Ok(())
}

/// Asks to move an account to a new address, given the current password: the address is
/// kept aside and a link mailed to it (48 h, once); the account keeps its old address until
/// the link is followed, so a typo cannot lock anyone out.
pub async fn request_email_change(
    pool: &PgPool,
    base_url: &str,
    account: Uuid,
    current: &str,
    new_email: &str,
    addr: Option<IpAddr>,
) -> Result<(), AuthError> {
    let email = Email::parse(new_email)?;
    check_current_password(pool, account, current, addr).await?;
    let token = new_token();
    let mut tx = pool.begin().await?;
    sql::set_pending_email(&mut tx, account, email.as_str()).await?;
    sql::retire_tokens(&mut tx, account, TokenPurpose::ChangeEmail).await?;
    sql::insert_token(&mut tx, &token_hash(&token), account, TokenPurpose::ChangeEmail, Utc::now() + Duration::hours(VERIFY_TTL_HOURS))
        .await?;
    let link = format!("{}/account/email/{token}", base_url.trim_end_matches('/'));
    crate::outbox::enqueue(&mut tx, &email, "change_email", serde_json::json!({ "link": link }), None)
        .await
        .map_err(|e| AuthError::Outbox(e.to_string()))?;
    tx.commit().await?;
    Ok(())
}

/// Follows the link mailed to a new address: the account's address becomes it (verified).
pub async fn confirm_email_change(pool: &PgPool, token: &str) -> Result<Uuid, AuthError> {
    let mut tx = pool.begin().await?;
    let id = sql::consume_token(&mut tx, &token_hash(token), TokenPurpose::ChangeEmail).await?.ok_or(AuthError::BadToken)?;
    match sql::apply_pending_email(&mut tx, id).await {
        Ok(true) => {}
        Ok(false) => return Err(AuthError::BadToken),
        Err(e) if e.as_database_error().is_some_and(|d| d.code().as_deref() == Some("23505")) => return Err(AuthError::EmailTaken),
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token();
        assert_ne!(a, new_token());
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }

    #[test]
    fn dummy_hash_parses_and_matches_nothing() {
        assert!(argon2::PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify_password("", DUMMY_HASH));
    }

    #[test]
    fn totp_round_trip() {
        let secret = Secret::generate_secret().to_encoded().to_string();
        let t = totp_for(&secret, "ana@example.com").unwrap();
        let code = current_totp_code(&secret, "ana@example.com").unwrap();
        assert!(t.check_current(&code).unwrap());
        assert!(totp_url(&secret, "ana@example.com").starts_with("otpauth://totp/Vessel:ana%40example.com?"));
    }
}
