//! Hosts: an admin registers one and gets a one-time join token; the host's provisioner
//! joins with it and receives its secret (once); every later request is signed with it.

pub mod client;

use crate::audit::{self, Actor};
use crate::db::hosts as sql;
use crate::ids::HostId;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;
use vessel_core::signing::HostSecret;
use vessel_core::wire::{JoinRequest, JoinResponse};

pub use client::{http_client, pinned_http_client, ConsoleSocket, HostClient, HostError, HostHttp};

pg_enum! {
    /// Whether the reconciler hears from a host (`host_reachability` in the schema).
    #[derive(Default)]
    pub enum Reachability in "host_reachability" {
        /// Joined, not listed yet.
        #[default]
        Unknown = "unknown",
        Reachable = "reachable",
        /// Silent past the threshold: its instances are `unknown`, never re-created elsewhere.
        Unreachable = "unreachable",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("this join token is unknown, expired or was used already: ask an admin for a new one")]
    BadToken,
    #[error("{0}")]
    Invalid(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// How long a join token works unless the caller says otherwise (`[orchestration]
/// join_token_ttl_hours` for the admin page and `panel hosts add`).
pub const DEFAULT_JOIN_TOKEN_TTL: chrono::Duration = chrono::Duration::hours(24);

/// An admin expects a host: returns (host id, the join token to hand to it), valid for
/// [`DEFAULT_JOIN_TOKEN_TTL`]. Only the token's hash is stored.
pub async fn register(pool: &PgPool, admin: Option<Uuid>, name: &str, api_url: &str) -> Result<(HostId, String), JoinError> {
    register_for(pool, admin, name, api_url, DEFAULT_JOIN_TOKEN_TTL).await
}

/// As [`register`], with a token that stops working after `ttl` (a leaked token left lying
/// in a ticket or a shell history cannot make a host join later).
pub async fn register_for(
    pool: &PgPool,
    admin: Option<Uuid>,
    name: &str,
    api_url: &str,
    ttl: chrono::Duration,
) -> Result<(HostId, String), JoinError> {
    if ttl <= chrono::Duration::zero() {
        return Err(JoinError::Invalid("a join token's lifetime must be positive".into()));
    }
    let name = name.trim();
    if name.is_empty() || name.len() > 63 {
        return Err(JoinError::Invalid("a host name is 1 to 63 characters".into()));
    }
    let mut raw = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = format!("vjt_{}", hex::encode(raw));
    let mut tx = pool.begin().await?;
    let expires = chrono::Utc::now() + ttl;
    let id = sql::insert_pending(&mut tx, name, api_url, &token_hash(&token), expires).await?;
    let actor = admin.map(Actor::admin).unwrap_or(Actor::SYSTEM);
    audit::record(
        &mut *tx,
        actor,
        "host.register",
        Some(("host", id.to_string())),
        None,
        serde_json::json!({ "name": name, "token_expires_at": expires }),
    )
    .await?;
    tx.commit().await?;
    Ok((id, token))
}

/// A host joins: its token is used up, its capacity recorded, its secret made and returned
/// (never stored anywhere else, never shown again).
pub async fn join(pool: &PgPool, req: &JoinRequest) -> Result<JoinResponse, JoinError> {
    if req.capacity.cpus == 0 || req.capacity.memory_mib == 0 || req.capacity.disk_gib == 0 {
        return Err(JoinError::Invalid("the host reports no capacity".into()));
    }
    if !(req.api_url.starts_with("http://") || req.api_url.starts_with("https://")) {
        return Err(JoinError::Invalid("api_url must be an http(s) URL".into()));
    }
    let pin = match req.tls_cert_sha256.as_deref().map(str::to_ascii_lowercase) {
        Some(p) if p.len() != 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()) => {
            return Err(JoinError::Invalid("tls_cert_sha256 must be 64 hexadecimal characters".into()))
        }
        Some(_) if !req.api_url.starts_with("https://") => {
            return Err(JoinError::Invalid("a host with a TLS certificate is reached over https://".into()))
        }
        p => p,
    };
    let mut secret = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let mut tx = pool.begin().await?;
    let id = sql::complete_join(
        &mut tx,
        &token_hash(&req.token),
        &req.api_url,
        &secret,
        req.capacity.cpus as i32,
        req.capacity.memory_mib as i64,
        req.capacity.disk_gib as i64,
        req.supports_containers,
        req.supports_kvm,
        pin.as_deref(),
    )
    .await?
    .ok_or(JoinError::BadToken)?;
    audit::record(
        &mut *tx,
        Actor::SYSTEM,
        "host.join",
        Some(("host", id.to_string())),
        None,
        serde_json::json!({ "api_url": req.api_url }),
    )
    .await?;
    crate::db::jobs::wake_waiting(&mut *tx).await?;
    tx.commit().await?;
    let secret = HostSecret::from_bytes(secret).map_err(|e| JoinError::Invalid(e.to_string()))?;
    Ok(JoinResponse { host_id: id.0, secret: secret.to_base64() })
}

/// A client for a joined host: over the HTTP client pinned to its certificate when it sent
/// one at join, else over the shared one.
pub fn client_for(host: &sql::HostRow, http: &HostHttp) -> Option<HostClient> {
    let secret = HostSecret::from_bytes(host.api_secret.clone()?).ok()?;
    let http = match http.for_pin(host.tls_cert_sha256.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(host = %host.name, error = %e, "no HTTP client for the host's pinned certificate");
            return None;
        }
    };
    Some(HostClient::new(&host.api_url, secret, http))
}
