//! The provider's view of every server: a filtered, paged list, and actions on one server
//! (stop, start, suspend with a reason, unsuspend, terminate, reinstall). Each action goes the
//! one way every caller's does — [`crate::resellers::servers::act_as`]: the VPS state machine
//! ([`crate::vps::transition`]) under its lock order, the typed job, the billing side of a
//! termination, and one audit entry with the admin, its address and the reason.

use super::{invalid, AdminError, By};
use crate::api_keys::Tenant;
use crate::resellers::servers::{self as svc, Acting, ServerAction, ServerFilter, ServerRow};
use crate::resellers::ResellerError;
use crate::vps::DesiredState;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;
use vessel_core::InstanceKind;

/// Rows per page of the admin's server list.
pub const PAGE: i64 = 50;
/// The longest reason a suspension may carry (it is audited and may be mailed).
pub const MAX_REASON: usize = 500;

/// The list's filters as the form sends them (all optional, empty means any).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ServerQuery {
    pub state: String,
    pub host: String,
    pub customer: String,
    pub kind: String,
    pub cursor: String,
}

impl ServerQuery {
    /// The query string that keeps these filters (for the next page's link).
    pub fn keep(&self) -> String {
        let enc = |s: &str| {
            s.bytes()
                .map(|b| if b.is_ascii_alphanumeric() || b"-_.@".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect::<String>()
        };
        format!("state={}&host={}&customer={}&kind={}", enc(&self.state), enc(&self.host), enc(&self.customer), enc(&self.kind))
    }
}

/// One page of servers, newest first, and the cursor of the next page.
pub async fn list(pool: &PgPool, q: &ServerQuery) -> Result<(Vec<ServerRow>, Option<String>), AdminError> {
    let pick = |s: &str| Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_string);
    let desired_state =
        pick(&q.state).map(|s| s.parse::<DesiredState>()).transpose().map_err(|_| invalid("state", "choose one of the listed states"))?;
    let host = pick(&q.host).map(|s| s.parse::<Uuid>()).transpose().map_err(|_| invalid("host", "choose one of the listed hosts"))?;
    let kind = pick(&q.kind).map(|s| s.parse::<InstanceKind>()).transpose().map_err(|_| invalid("kind", "container or kvm"))?;
    let customer = pick(&q.customer).map(|s| s.to_lowercase());
    let after = pick(&q.cursor)
        .map(|c| crate::api::pagination::decode(&c))
        .transpose()
        .map_err(|_| invalid("cursor", "that page link is not valid; start from the first page"))?;
    let filter = ServerFilter { desired_state, host, kind, customer_email: customer.as_deref(), ..Default::default() };
    let rows = svc::list(pool, Tenant::All, &filter, after, PAGE + 1).await.map_err(from_reseller)?;
    Ok(crate::api::pagination::page(rows, PAGE, |r| (r.created_at, r.id)))
}

/// What the admin asks of a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminAction {
    Start,
    Stop,
    /// The provider's suspension; billing goes on. The reason is audited.
    Suspend {
        reason: String,
    },
    Unsuspend,
    /// Destroys it; its billing ends at the end of the period paid for.
    Terminate,
    /// Wipes the disk and installs the server's current template again.
    Reinstall,
}

impl AdminAction {
    /// The form's `action` field (and `reason` for a suspension).
    pub fn parse(action: &str, reason: &str) -> Result<Self, AdminError> {
        Ok(match action {
            "start" => AdminAction::Start,
            "stop" => AdminAction::Stop,
            "suspend" => {
                let reason = reason.trim();
                if reason.is_empty() {
                    return Err(invalid("reason", "say why the server is suspended"));
                }
                if reason.chars().count() > MAX_REASON {
                    return Err(invalid("reason", format!("at most {MAX_REASON} characters")));
                }
                AdminAction::Suspend { reason: reason.to_string() }
            }
            "unsuspend" => AdminAction::Unsuspend,
            "terminate" => AdminAction::Terminate,
            "reinstall" => AdminAction::Reinstall,
            _ => return Err(invalid("action", "start, stop, suspend, unsuspend, terminate or reinstall")),
        })
    }
}

/// Carries out an admin's action in one transaction, through the one state machine.
pub async fn act(pool: &PgPool, by: By, id: Uuid, action: AdminAction) -> Result<(), AdminError> {
    let (server_action, details) = match action {
        AdminAction::Start => (ServerAction::Start, json!({})),
        AdminAction::Stop => (ServerAction::Stop, json!({})),
        AdminAction::Suspend { reason } => (ServerAction::Suspend, json!({ "reason": reason })),
        AdminAction::Unsuspend => (ServerAction::Unsuspend, json!({})),
        AdminAction::Terminate => (ServerAction::Terminate, json!({})),
        AdminAction::Reinstall => (ServerAction::Reinstall { os_template: None }, json!({})),
    };
    let acting = Acting { actor: by.actor(), tenant: Tenant::All, addr: by.addr, details };
    let mut tx = pool.begin().await?;
    svc::act_as(&mut tx, &acting, Utc::now(), id, server_action).await.map_err(from_reseller)?;
    tx.commit().await?;
    Ok(())
}

/// The state machine's refusals as the admin's pages word them (the same words as the API's).
fn from_reseller(e: ResellerError) -> AdminError {
    match e {
        ResellerError::NotFound(_) => AdminError::NotFound,
        ResellerError::Db(e) => AdminError::Db(e),
        ResellerError::Invalid { field, message } => invalid(field, message),
        e => invalid("action", e.to_string()),
    }
}
