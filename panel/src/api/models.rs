//! The API's request and response bodies. These types are the contract (the OpenAPI schemas
//! are derived from them), kept apart from the database rows so a column change cannot change
//! the API by accident.

use crate::db::resellers::{CustomerRow, ServerRow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Cycle {
    Monthly,
    Quarterly,
    Annual,
}

impl From<Cycle> for crate::plans::BillingCycle {
    fn from(c: Cycle) -> Self {
        match c {
            Cycle::Monthly => crate::plans::BillingCycle::Monthly,
            Cycle::Quarterly => crate::plans::BillingCycle::Quarterly,
            Cycle::Annual => crate::plans::BillingCycle::Annual,
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Price {
    /// `monthly`, `quarterly` or `annual`.
    pub cycle: String,
    /// ISO 4217, e.g. `EUR`.
    pub currency: String,
    /// What the end customer pays in the panel, in minor units (cents).
    pub retail_minor: i64,
    /// What the caller pays per period, in minor units: the reseller's wholesale price.
    pub wholesale_minor: i64,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Plan {
    /// Stable identifier used to order, e.g. `burst-s`.
    pub code: String,
    pub name: String,
    pub description: String,
    /// `container` (burstable) or `kvm` (dedicated).
    pub kind: String,
    pub vcpus: i32,
    pub memory_guaranteed_mib: i64,
    /// Memory the server may borrow up to; equal to the guarantee for KVM.
    pub memory_burst_mib: i64,
    pub swap_mib: i64,
    pub disk_gib: i64,
    /// Monthly transfer included, GiB; absent: unmetered.
    pub bandwidth_gib: Option<i64>,
    pub prices: Vec<Price>,
    /// False when no host of the provider could ever run this plan: creating a server with it
    /// (or resizing to it) is refused with a validation error naming `plan`.
    pub available: bool,
    /// Why it is unavailable; absent when it is available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable_reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PlanList {
    pub data: Vec<Plan>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct OsTemplate {
    /// Identifier used to order and reinstall, e.g. `debian-12`.
    pub name: String,
    pub display_name: String,
    pub version: String,
    pub for_containers: bool,
    pub for_kvm: bool,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct OsTemplateList {
    pub data: Vec<OsTemplate>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Customer {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
    /// `active` or `suspended` (admin keys also see `pending_verification` for direct customers).
    pub status: String,
    /// The reseller the customer belongs to (absent for a direct customer).
    pub reseller_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl From<CustomerRow> for Customer {
    fn from(r: CustomerRow) -> Self {
        Customer {
            id: r.id,
            email: r.email,
            name: r.display_name,
            country: r.country,
            status: r.status.to_string(),
            reseller_id: r.reseller_id,
            created_at: r.created_at,
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CustomerList {
    pub data: Vec<Customer>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCustomer {
    #[schema(max_length = 254)]
    pub email: String,
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    #[serde(default)]
    pub country: Option<String>,
    /// Admin keys only: the reseller the customer belongs to.
    #[serde(default)]
    pub reseller_id: Option<Uuid>,
}

#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerChange {
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// ISO 3166-1 alpha-2; an empty string clears it.
    pub country: Option<String>,
    /// `active` or `suspended`.
    pub status: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Server {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub plan: String,
    /// `container` or `kvm`.
    pub kind: String,
    pub vcpus: i32,
    pub memory_guaranteed_mib: i64,
    pub memory_burst_mib: i64,
    pub disk_gib: i64,
    pub os_template: String,
    pub hostname: String,
    /// What was asked: `running`, `stopped`, `suspended` or `terminated`.
    pub desired_state: String,
    /// What the host last reported: `pending`, `waiting_for_capacity`, `creating`, `running`,
    /// `stopped`, `suspended`, `destroyed`, `unknown` (host unreachable), `error`, …
    pub observed_state: String,
    pub observed_at: Option<DateTime<Utc>>,
    /// The last error the platform met acting on this server, if any.
    pub last_error: Option<String>,
    /// The subscription's status: `pending`, `active`, `suspended` (overdue), `terminated` or
    /// `cancelled`.
    pub billing_status: Option<String>,
    pub addresses: Vec<String>,
    /// It boots its rescue system (see `POST /api/v1/servers/{id}/rescue`) until it leaves rescue.
    pub rescue: bool,
    pub created_at: DateTime<Utc>,
    pub terminated_at: Option<DateTime<Utc>>,
    /// The generated root password, **only** in the answer to the request that made it (a
    /// create, reinstall or reset-password that gave neither `root_password` nor `ssh_keys`);
    /// never stored in clear, never shown again, not in an idempotent replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "k7Rm2xTqP9vWb4NcZ3hA")]
    pub root_password: Option<String>,
}

impl From<ServerRow> for Server {
    fn from(r: ServerRow) -> Self {
        Server {
            id: r.id,
            customer_id: r.customer_id,
            plan: r.plan,
            kind: r.kind.as_str().to_string(),
            vcpus: r.vcpus,
            memory_guaranteed_mib: r.memory_guaranteed_mib,
            memory_burst_mib: r.memory_burst_mib,
            disk_gib: r.disk_gib,
            os_template: r.os_template,
            hostname: r.hostname,
            desired_state: r.desired_state.as_str().to_string(),
            observed_state: r.observed_state.to_string(),
            observed_at: r.observed_at,
            last_error: r.last_error,
            billing_status: r.billing_status.map(|s| s.as_str().to_string()),
            addresses: r.addresses,
            rescue: r.rescue,
            created_at: r.created_at,
            terminated_at: r.terminated_at,
            root_password: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ServerList {
    pub data: Vec<Server>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewServer {
    pub customer_id: Uuid,
    /// A plan code from `GET /api/v1/plans`.
    pub plan: String,
    /// A template name from `GET /api/v1/os-templates`.
    pub os_template: String,
    /// A fully qualified or short hostname, e.g. `web1.example.com`.
    #[schema(max_length = 253)]
    pub hostname: String,
    /// Billing period; monthly when absent.
    #[serde(default)]
    pub cycle: Option<Cycle>,
    /// OpenSSH public key lines (`ssh-ed25519 …`, `ecdsa-sha2-nistp256 …`, `ssh-rsa …` of at
    /// least 2048 bits) written to root's `authorized_keys`.
    #[serde(default)]
    #[schema(max_items = 32, example = json!(["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOEuJDWj+k9qzUVzDM/aPy8cOscb4XVsl36ZU6j3ryV+ alice@laptop"]))]
    pub ssh_keys: Vec<String>,
    /// Root's password (12 to 128 characters). Absent with no `ssh_keys`: one is generated and
    /// returned once, in this answer's `root_password`. Only its SHA-512 crypt hash is kept.
    #[serde(default)]
    #[schema(min_length = 12, max_length = 128, example = "correct horse battery staple")]
    pub root_password: Option<String>,
}

/// A one-time console token: open `websocket_path` (on the panel, as a WebSocket) or send the
/// customer's browser to `page_path`, once, before `expires_at`. Shown only in this answer.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ConsoleToken {
    #[schema(example = "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE")]
    pub token: String,
    #[schema(example = "/console/ws?token=Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE")]
    pub websocket_path: String,
    #[schema(example = "/console?token=Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE")]
    pub page_path: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Sets a new root password on a running server (absent: one is generated and returned once).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    #[serde(default)]
    #[schema(min_length = 12, max_length = 128, example = "correct horse battery staple")]
    pub root_password: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reinstall {
    /// Another template; absent: the current one again.
    #[serde(default)]
    pub os_template: Option<String>,
    /// New keys for the fresh system (absent: the server's current ones).
    #[serde(default)]
    #[schema(max_items = 32)]
    pub ssh_keys: Option<Vec<String>>,
    /// A new root password (absent with no keys at all: one is generated and returned once).
    #[serde(default)]
    #[schema(min_length = 12, max_length = 128)]
    pub root_password: Option<String>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resize {
    /// The new plan's code (same kind: container or KVM).
    pub plan: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UsagePoint {
    pub at: DateTime<Utc>,
    /// CPU in cores (1.0 = one core busy) since the previous point.
    pub cpu_cores: f64,
    pub memory_mib: f64,
    /// Memory above the guarantee (borrowed from idle neighbours).
    pub burst_mib: f64,
    pub disk_gib: f64,
    pub rx_mbit: f64,
    pub tx_mbit: f64,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Usage {
    pub server_id: Uuid,
    /// The last 24 hours, oldest first.
    pub points: Vec<UsagePoint>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct QuotaItem {
    pub limit: i64,
    pub used: i64,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Quota {
    pub reseller_id: Uuid,
    pub servers: QuotaItem,
    pub vcpus: QuotaItem,
    /// Guaranteed memory, MiB.
    pub memory_mib: QuotaItem,
    pub disk_gib: QuotaItem,
    /// The wholesale discount on retail prices, in basis points (2000 = 20 %).
    pub discount_bp: i32,
}

/// A server's inbound firewall: the first rule that matches decides, else `default_policy`.
/// A PUT replaces the whole list. The host's filter is stateless; what it does around the
/// rules (TCP rules match connection attempts; replies to the server's own traffic pass) is in
/// `implicit_rules` of the answer.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Firewall {
    #[schema(example = "drop")]
    pub default_policy: FirewallVerdict,
    #[schema(max_items = 64)]
    pub rules: Vec<FirewallRule>,
    /// Read-only: what the host adds around the rules.
    pub implicit_rules: Vec<String>,
}

impl From<vessel_core::Firewall> for Firewall {
    fn from(f: vessel_core::Firewall) -> Self {
        Firewall {
            default_policy: f.default_policy().into(),
            rules: f
                .rules()
                .iter()
                .map(|r| FirewallRule {
                    action: r.action().into(),
                    protocol: match r.protocol() {
                        vessel_core::firewall::Protocol::Tcp => FirewallProtocol::Tcp,
                        vessel_core::firewall::Protocol::Udp => FirewallProtocol::Udp,
                        vessel_core::firewall::Protocol::Icmp => FirewallProtocol::Icmp,
                    },
                    ports: r.ports().map(|p| p.to_string()),
                    source: r.source().map(|s| s.to_string()),
                })
                .collect(),
            implicit_rules: vessel_core::firewall::IMPLICIT_RULES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// The body of `PUT /api/v1/servers/{id}/firewall` (read as core's validated `Firewall`).
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FirewallChange {
    #[schema(example = "drop")]
    pub default_policy: FirewallVerdict,
    #[serde(default)]
    #[schema(max_items = 64)]
    pub rules: Vec<FirewallRule>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FirewallVerdict {
    Accept,
    Drop,
}

impl From<vessel_core::firewall::Verdict> for FirewallVerdict {
    fn from(v: vessel_core::firewall::Verdict) -> Self {
        match v {
            vessel_core::firewall::Verdict::Accept => FirewallVerdict::Accept,
            vessel_core::firewall::Verdict::Drop => FirewallVerdict::Drop,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FirewallProtocol {
    Tcp,
    Udp,
    /// ICMP or ICMPv6, by the source's family (both without a source).
    Icmp,
}

/// One inbound rule.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FirewallRule {
    pub action: FirewallVerdict,
    pub protocol: FirewallProtocol,
    /// `22` or `8000-8100` (TCP and UDP only; absent: every port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "22")]
    pub ports: Option<String>,
    /// An IPv4 or IPv6 network, e.g. `203.0.113.0/24` (absent: anywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "203.0.113.0/24")]
    pub source: Option<String>,
}
