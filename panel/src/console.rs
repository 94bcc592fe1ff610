//! Browser consoles (issue 13): the customer's terminal in the browser, relayed by the panel to
//! the instance's host over the signed, pinned host channel. The browser only ever talks to
//! the panel; the host's address never leaves it.
//!
//! A console is opened with a one-time token ([`issue`]): minted by the server page for the
//! logged-in customer (the WebSocket also checks that session), or by the API for a reseller
//! to hand on. A token opens one connection ([`redeem`]: one atomic statement) within its
//! short life, and only its sha256 is stored. Every session is audited when it opens
//! (`console.open`: who, which server, from where) and when it ends (`console.close`: why,
//! how long, bytes each way). It ends when the server stops (the host closes it), when the
//! viewer leaves, or after `idle_timeout` without a keystroke.

use crate::audit::{self, Actor, ActorKind};
use crate::auth::{new_token, token_hash};
use crate::db::console as sql;
pub use crate::db::console::TokenRow;
use crate::hosts::{HostError, HostHttp};
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use sqlx::PgPool;
use std::net::IpAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as HostMessage;
use uuid::Uuid;
use vessel_core::wire::{ConsoleControl, ProblemType};
use vessel_core::InstanceId;

/// Where a token came from: the server page (bound to the customer's session) or the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Web,
    Api { key: Uuid },
}

/// A freshly minted token: shown once (page or API answer), stored only as a hash.
pub struct Issued {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl Issued {
    /// The panel's WebSocket for this token (relative: the browser's own origin).
    pub fn websocket_path(&self) -> String {
        format!("/console/ws?token={}", self.token)
    }
    /// The console page for this token (for a reseller's customer, who has no session here).
    pub fn page_path(&self) -> String {
        format!("/console?token={}", self.token)
    }
}

/// A token's shape (what [`new_token`] makes): anything else is not looked up.
pub fn plausible_token(t: &str) -> bool {
    t.len() == 43 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Mints a token for `instance`, asked by `account`. The caller has checked that the account
/// may see the instance.
pub async fn issue(
    conn: &mut sqlx::PgConnection,
    instance: InstanceId,
    account: Uuid,
    via: Via,
    ttl: Duration,
) -> Result<Issued, sqlx::Error> {
    let token = new_token();
    let expires_at = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(60));
    let (via_s, key) = match via {
        Via::Web => ("web", None),
        Via::Api { key } => ("api", Some(key)),
    };
    sql::insert(conn, &token_hash(&token), instance, account, via_s, key, expires_at).await?;
    Ok(Issued { token, expires_at })
}

/// Uses the token up: `None` when it is unknown, used or expired.
pub async fn redeem(pool: &PgPool, token: &str) -> Result<Option<TokenRow>, sqlx::Error> {
    if !plausible_token(token) {
        return Ok(None);
    }
    sql::redeem(pool, &token_hash(token)).await
}

impl TokenRow {
    fn actor(&self) -> Actor {
        let kind = if self.via == "api" { ActorKind::ApiKey } else { ActorKind::Customer };
        Actor { id: Some(self.account_id), kind }
    }
}

/// Why a console ended, as the viewer is told (a WebSocket close reason: short).
fn refusal(e: &HostError) -> String {
    match e {
        HostError::Refused(p) if p.kind == ProblemType::ActionNotAllowed => "the server is not running".into(),
        HostError::Refused(p) if p.kind == ProblemType::NotFound => "the server is not on its host".into(),
        HostError::Unreachable(_) => "the server's host cannot be reached".into(),
        _ => "the console is not available".into(),
    }
}

/// Runs one console session for a redeemed token: audits it, connects to the host, relays
/// until one side ends or the viewer is idle for `idle`, audits the end. Runs on the actix
/// worker that accepted the WebSocket.
pub async fn run(
    pool: PgPool,
    http: HostHttp,
    token: TokenRow,
    remote: Option<IpAddr>,
    idle: Duration,
    mut browser: actix_ws::Session,
    mut stream: actix_ws::MessageStream,
) {
    let started = std::time::Instant::now();
    let instance = token.instance_id;
    let target = || Some(("instance", instance.to_string()));
    let base = json!({ "via": token.via, "api_key_id": token.api_key_id });
    if let Err(e) = audit::record(&pool, token.actor(), "console.open", target(), remote, base.clone()).await {
        tracing::error!(%instance, error = %e, "console: could not audit the session; refusing it");
        let _ = browser.close(Some(close("the console is not available"))).await;
        return;
    }
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    let reason: String = match connect(&pool, &http, instance).await {
        Err(reason) => {
            let _ = browser.close(Some(close(&reason))).await;
            reason
        }
        Ok(mut host) => {
            tracing::info!(%instance, "console: relaying");
            let mut idle_until = tokio::time::Instant::now() + idle;
            let reason = loop {
                tokio::select! {
                    m = host.next() => match m {
                        Some(Ok(HostMessage::Binary(b))) => {
                            bytes_out += b.len() as u64;
                            if browser.binary(b).await.is_err() {
                                break "closed by the viewer".to_string();
                            }
                        }
                        Some(Ok(HostMessage::Ping(p))) => { let _ = host.send(HostMessage::Pong(p)).await; }
                        Some(Ok(HostMessage::Close(frame))) => {
                            break frame.map(|f| f.reason.to_string()).filter(|r| !r.is_empty()).unwrap_or_else(|| "the console ended".into());
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break "the connection to the host ended".to_string(),
                    },
                    m = stream.recv() => match m {
                        Some(Ok(actix_ws::Message::Binary(b))) => {
                            bytes_in += b.len() as u64;
                            idle_until = tokio::time::Instant::now() + idle;
                            if host.send(HostMessage::Binary(b)).await.is_err() {
                                break "the connection to the host ended".to_string();
                            }
                        }
                        // Only a well-formed control message is passed on, re-encoded.
                        Some(Ok(actix_ws::Message::Text(t))) => {
                            if let Ok(c) = serde_json::from_str::<ConsoleControl>(&t) {
                                let _ = host.send(HostMessage::Text(serde_json::to_string(&c).unwrap_or_default().into())).await;
                            }
                        }
                        Some(Ok(actix_ws::Message::Ping(p))) => { let _ = browser.pong(&p).await; }
                        Some(Ok(actix_ws::Message::Close(_))) | Some(Err(_)) | None => break "closed by the viewer".to_string(),
                        Some(Ok(_)) => {}
                    },
                    _ = tokio::time::sleep_until(idle_until) => break format!("idle for {} s", idle.as_secs()),
                }
            };
            let _ = host.close(None).await;
            let _ = browser.close(Some(close(&reason))).await;
            reason
        }
    };
    tracing::info!(%instance, %reason, "console: ended");
    let mut details = base;
    details["reason"] = json!(reason);
    details["seconds"] = json!(started.elapsed().as_secs());
    details["bytes_in"] = json!(bytes_in);
    details["bytes_out"] = json!(bytes_out);
    if let Err(e) = audit::record(&pool, token.actor(), "console.close", target(), remote, details).await {
        tracing::error!(%instance, error = %e, "console: could not audit the end of a session");
    }
}

fn close(reason: &str) -> actix_ws::CloseReason {
    actix_ws::CloseReason { code: actix_ws::CloseCode::Normal, description: Some(reason.chars().take(100).collect()) }
}

async fn connect(pool: &PgPool, http: &HostHttp, instance: InstanceId) -> Result<crate::hosts::ConsoleSocket, String> {
    let host = match sql::host_of(pool, instance).await {
        Ok(Some(h)) => h,
        Ok(None) => return Err("the server is not placed on a host yet".into()),
        Err(e) => {
            tracing::error!(%instance, error = %e, "console: looking up the host");
            return Err("the console is not available".into());
        }
    };
    let row = match crate::db::hosts::get(pool, host).await {
        Ok(Some(r)) => r,
        _ => return Err("the console is not available".into()),
    };
    let client = crate::hosts::client_for(&row, http).ok_or_else(|| "the server's host has not joined".to_string())?;
    client.console(instance).await.map_err(|e| {
        tracing::warn!(%instance, host = %row.name, error = %e, "console: the host refused or is unreachable");
        refusal(&e)
    })
}
