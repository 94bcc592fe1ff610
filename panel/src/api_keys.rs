//! API keys: made by a reseller (or admin) in the panel, shown once, stored as a prefix and a
//! SHA-256, sent as `Authorization: Bearer vsl_xxxxxxxx_<secret>`. A key acts for its account
//! with its scopes; revoking it takes effect on the next request.

use crate::accounts::{AccountStatus, Role};
use crate::audit::{self, Actor, ActorKind};
use crate::db::api_keys as sql;
use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::net::IpAddr;
use subtle::ConstantTimeEq;
use uuid::Uuid;

pub use sql::KeyRow;

/// What a key may do. `write` does not imply `read`: a key gets exactly what it lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }
    fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            _ => None,
        }
    }
}

/// Whose resources a caller may see: everything (an admin key) or one reseller's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tenant {
    All,
    Reseller(Uuid),
}

impl Tenant {
    /// The reseller to scope queries to; `None` for an admin.
    pub fn reseller(self) -> Option<Uuid> {
        match self {
            Tenant::All => None,
            Tenant::Reseller(id) => Some(id),
        }
    }
}

/// An authenticated API caller.
#[derive(Clone, Debug)]
pub struct Principal {
    pub key_id: Uuid,
    pub account_id: Uuid,
    pub tenant: Tenant,
    pub scopes: Vec<Scope>,
}

impl Principal {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
    /// The audit log's actor: the key's account, acting through a key.
    pub fn actor(&self) -> Actor {
        Actor { id: Some(self.account_id), kind: ActorKind::ApiKey }
    }
    /// Audit details with the key added, so a leaked key's actions can be traced.
    pub fn details(&self, mut details: serde_json::Value) -> serde_json::Value {
        if let Some(o) = details.as_object_mut() {
            o.insert("api_key_id".into(), json!(self.key_id));
        }
        details
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("name: give the key a name (at most 100 characters)")]
    BadName,
    #[error("scopes: choose read, write or both")]
    NoScopes,
    #[error("only resellers and admins have API keys")]
    NotAllowed,
    #[error("no such key")]
    NotFound,
    // Why a bearer token was refused ([`ApiKeyError::refuses_token`]). The API answers all of
    // them with one 401 (plus this reason as detail), so a caller cannot probe which prefixes
    // exist.
    #[error("send an API key as `Authorization: Bearer <key>`")]
    Missing,
    #[error("this is not a valid API key")]
    InvalidKey,
    #[error("this API key has been revoked")]
    Revoked,
    #[error("this API key's account is not active")]
    AccountInactive,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl ApiKeyError {
    /// A bearer token refused (401), as opposed to a mistake in managing keys.
    pub fn refuses_token(&self) -> bool {
        matches!(self, ApiKeyError::Missing | ApiKeyError::InvalidKey | ApiKeyError::Revoked | ApiKeyError::AccountInactive)
    }
}

/// A key as made: the row, and the secret to show once.
pub struct NewKey {
    pub row: KeyRow,
    pub token: String,
}

const PREFIX_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// `vsl_` + 8 lowercase alphanumerics (the stored, displayed prefix) + `_` + 32 alphanumerics
/// (≈190 bits of secret).
fn generate() -> (String, String) {
    let mut rng = rand::thread_rng();
    let prefix: String = std::iter::repeat_with(|| PREFIX_CHARS[rng.gen_range(0..PREFIX_CHARS.len())] as char).take(8).collect();
    let prefix = format!("vsl_{prefix}");
    let secret = Alphanumeric.sample_string(&mut rng, 32);
    (prefix.clone(), format!("{prefix}_{secret}"))
}

/// Makes a key for a reseller or admin account; the token is returned once and never stored.
pub async fn create(pool: &PgPool, account: Uuid, name: &str, scopes: &[Scope], addr: Option<IpAddr>) -> Result<NewKey, ApiKeyError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiKeyError::BadName);
    }
    let mut names: Vec<String> = scopes.iter().map(|s| s.as_str().to_string()).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(ApiKeyError::NoScopes);
    }
    let mut tx = pool.begin().await?;
    let role = crate::db::accounts::account_facts(&mut *tx, account).await?.ok_or(ApiKeyError::NotFound)?.0;
    let kind = match role {
        Role::Reseller => ActorKind::Reseller,
        Role::Admin => ActorKind::Admin,
        Role::Customer => return Err(ApiKeyError::NotAllowed),
    };
    let (prefix, token) = generate();
    let row = sql::insert(&mut *tx, account, name, &prefix, &digest(&token), &names).await?;
    audit::record(
        &mut *tx,
        Actor { id: Some(account), kind },
        "api_key.create",
        Some(("api_key", row.id.to_string())),
        addr,
        json!({ "prefix": prefix, "scopes": names }),
    )
    .await?;
    tx.commit().await?;
    Ok(NewKey { row, token })
}

/// As [`create`], for the admin or reseller with this email (the `panel admin api-key` command).
pub async fn create_for_email(pool: &PgPool, email: &crate::accounts::Email, name: &str, scopes: &[Scope]) -> Result<NewKey, ApiKeyError> {
    let mut tx = pool.begin().await?;
    let (id, _) = crate::db::accounts::find_by_email(&mut tx, email.as_str()).await?.ok_or(ApiKeyError::NotFound)?;
    tx.commit().await?;
    create(pool, id, name, scopes, None).await
}

pub async fn list_for(pool: &PgPool, account: Uuid) -> Result<Vec<KeyRow>, ApiKeyError> {
    Ok(sql::list_for(pool, account).await?)
}

/// Revokes one of the account's own keys.
pub async fn revoke(pool: &PgPool, account: Uuid, id: Uuid, addr: Option<IpAddr>) -> Result<(), ApiKeyError> {
    let mut tx = pool.begin().await?;
    let role = crate::db::accounts::account_facts(&mut *tx, account).await?.ok_or(ApiKeyError::NotFound)?.0;
    let kind = if role == Role::Admin { ActorKind::Admin } else { ActorKind::Reseller };
    if !sql::revoke(&mut *tx, account, id).await? {
        return Err(ApiKeyError::NotFound);
    }
    audit::record(&mut *tx, Actor { id: Some(account), kind }, "api_key.revoke", Some(("api_key", id.to_string())), addr, json!({}))
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Checks a bearer token. Unknown prefix, wrong secret and malformed token look the same.
pub async fn authenticate(pool: &PgPool, token: &str) -> Result<Principal, ApiKeyError> {
    let token = token.trim();
    let prefix =
        token.get(..12).filter(|p| p.starts_with("vsl_") && token.as_bytes().get(12) == Some(&b'_')).ok_or(ApiKeyError::InvalidKey)?;
    let key = sql::find_by_prefix(pool, prefix).await?.ok_or(ApiKeyError::InvalidKey)?;
    if !bool::from(digest(token).ct_eq(key.secret_sha256.as_slice())) {
        return Err(ApiKeyError::InvalidKey);
    }
    if key.revoked_at.is_some() {
        return Err(ApiKeyError::Revoked);
    }
    if key.account_status != AccountStatus::Active {
        return Err(ApiKeyError::AccountInactive);
    }
    let tenant = match key.role {
        Role::Admin => Tenant::All,
        Role::Reseller => Tenant::Reseller(key.account_id),
        Role::Customer => return Err(ApiKeyError::InvalidKey),
    };
    if let Err(e) = sql::touch(pool, key.id).await {
        // Last use is a convenience for the key's owner; it never fails a request.
        tracing::warn!(error = %e, "could not record an API key's last use");
    }
    Ok(Principal {
        key_id: key.id,
        account_id: key.account_id,
        tenant,
        scopes: key.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_stored_prefix_and_enough_secret() {
        let (prefix, token) = generate();
        assert!(prefix.starts_with("vsl_") && prefix.len() == 12);
        assert!(token.starts_with(&format!("{prefix}_")));
        assert_eq!(token.len(), 12 + 1 + 32);
        assert_ne!(generate().1, token);
    }
}
