//! The JSON bodies of the provisioner's HTTP API, shared by the host (server) and the panel
//! (client) so the two cannot drift apart. Paths (all under `/v1`, every request signed, see
//! [`crate::signing`]):
//!
//! | method and path                   | request body       | answer                        |
//! |-----------------------------------|--------------------|-------------------------------|
//! | `GET /v1/host`                    |                    | [`HostReport`]                |
//! | `GET /v1/instances`               |                    | `Vec<InstanceStatus>`         |
//! | `GET /v1/instances/{id}`          |                    | [`InstanceStatus`]            |
//! | `PUT /v1/instances/{id}`          | [`CreateInstance`] | [`InstanceStatus`] (201/200)  |
//! | `POST /v1/instances/{id}/actions` | [`HostAction`]     | [`InstanceStatus`]            |
//! | `DELETE /v1/instances/{id}`       |                    | 204, also when absent         |
//! | `PUT /v1/instances/{id}/firewall` | [`crate::Firewall`] | [`InstanceStatus`]           |
//! | `GET /v1/instances/{id}/usage`    |                    | [`Usage`]                     |
//!
//! An action body is tagged by `action` and carries exactly that action's fields:
//!
//! | `action`         | other fields                                                  | allowed in            |
//! |------------------|---------------------------------------------------------------|-----------------------|
//! | `start`, `stop`, `restart` |                                                     | stopped, running, crashed |
//! | `suspend`, `resume` |                                                            | running, suspended    |
//! | `reinstall`      | `template?` (absent: the current one), `access?` ([`crate::Access`]) | stopped, running, crashed |
//! | `resize`         | `resources` ([`crate::PlanResources`], same kind)             | stopped, running      |
//! | `reset_password` | `root_password_hash` ([`crate::PasswordHash`])                | running               |
//! | `rescue`         | `access?` ([`crate::Access`]: written into the rescue system) | stopped, running, crashed |
//! | `leave_rescue`   |                                                               | stopped, running, crashed |
//! | `destroy`        |                                                               | any                   |
//!
//! Unknown fields are refused. A runtime that cannot do an action yet (`reset_password` on KVM
//! until that runtime implements it) answers `runtime-failed` saying so.
//!
//! Errors are [`Problem`]s (`application/problem+json`). Joining is the other direction: the
//! host posts a [`JoinRequest`] to the panel's `/hosts/join` and gets a [`JoinResponse`].

use crate::admission::{HostCapacity, HostLoad, Refusal, Resource};
use crate::hostname::Hostname;
use crate::ids::InstanceId;
pub use crate::lifecycle::HostAction;
use crate::lifecycle::{Action, InstanceSpec, InstanceState, NetworkSpec};
use crate::resources::{InstanceKind, PlanResources};
use crate::usage::Usage;
use num_traits::ToPrimitive;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Body of `PUT /v1/instances/{id}`: the whole spec; the path's id must equal `spec.id`.
pub type CreateInstance = InstanceSpec;

/// One instance as the host sees it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub id: InstanceId,
    pub kind: InstanceKind,
    /// Observed from the kernel at the time of the answer.
    pub state: InstanceState,
    /// What the host was last asked: running or not (a crashed instance with `should_run`
    /// is what a reconciler restarts).
    pub should_run: bool,
    /// Name of the multi-step operation left unfinished (`create`, `destroy`, `resize`,
    /// `reinstall`...), if any; it is finished or rolled back by the next request or restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    pub usage: Usage,
    /// The instance's assigned addresses (from its network spec).
    pub addresses: Vec<IpAddr>,
    pub hostname: Hostname,
    pub template: String,
    /// The resources the host holds for it (after a resize: the new ones).
    pub resources: PlanResources,
    /// It boots (or runs) its rescue system, not its own (see [`Action::Rescue`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rescue: bool,
    /// The firewall the host holds for it (applied to its port whenever the port exists); the
    /// panel's reconciler sends its own when they differ.
    #[serde(default, skip_serializing_if = "crate::Firewall::is_open")]
    pub firewall: crate::Firewall,
}

impl InstanceStatus {
    /// The addresses of a network spec, IPv4 first.
    pub fn addresses_of(network: &NetworkSpec) -> Vec<IpAddr> {
        let mut v = Vec::new();
        if let Some(a) = &network.ipv4 {
            v.push(IpAddr::V4(a.address));
        }
        if let Some(a) = &network.ipv6 {
            v.push(IpAddr::V6(a.address));
        }
        v
    }
}

/// The host's committed load, as plain numbers for display and for the panel's cross-check
/// (the panel's own admission works on exact sums of its own records, not on these).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadSummary {
    pub instances: u64,
    pub pinned_cores: u64,
    /// Pinned cores plus the shared pool's `Σ v/ρc`.
    pub committed_cpu: f64,
    pub committed_memory_mib: f64,
    pub guaranteed_memory_mib: u64,
    pub committed_disk_gib: f64,
}

impl From<&HostLoad> for LoadSummary {
    fn from(l: &HostLoad) -> Self {
        LoadSummary {
            instances: l.instances as u64,
            pinned_cores: l.pinned_cores,
            committed_cpu: l.cpu().to_f64().unwrap_or(f64::NAN),
            committed_memory_mib: l.committed_memory.to_f64().unwrap_or(f64::NAN),
            guaranteed_memory_mib: l.guaranteed_memory_mib,
            committed_disk_gib: l.committed_disk.to_f64().unwrap_or(f64::NAN),
        }
    }
}

/// Answer of `GET /v1/host`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    /// What instances may use: physical capacity minus the admin's reservation.
    pub capacity: HostCapacity,
    pub load: LoadSummary,
    /// The provisioner's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// Kinds this host can run (KVM needs `/dev/kvm`).
    pub kinds: Vec<InstanceKind>,
}

/// Body the host posts to the panel's `/hosts/join`, with a one-time token an admin made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub token: String,
    /// The host's name as admins see it.
    pub name: String,
    /// Where the panel reaches this host's API, e.g. `https://10.0.0.5:8443`.
    pub api_url: String,
    pub capacity: HostCapacity,
    pub supports_containers: bool,
    pub supports_kvm: bool,
    /// SHA-256 (lowercase hex) of the certificate the host's API serves (DER of the leaf):
    /// the panel then accepts that certificate only. Absent when the API is plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert_sha256: Option<String>,
}

/// The panel's answer to a join: the host's id and its secret for signing, in standard
/// base64 (see [`crate::signing::HostSecret::from_base64`]). The secret is only ever sent
/// this once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResponse {
    pub host_id: uuid::Uuid,
    pub secret: String,
}

impl std::fmt::Debug for JoinResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinResponse").field("host_id", &self.host_id).field("secret", &"<redacted>").finish()
    }
}

/// The stable `type` of a [`Problem`]; clients match on it, never on the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemType {
    /// 401: missing, wrong, stale or replayed signature.
    Unauthorized,
    /// 400: a body or path that does not parse or does not agree with itself.
    InvalidRequest,
    /// 404: no such instance.
    NotFound,
    /// 409: another spec already holds this id.
    SpecConflict,
    /// 409: the action makes no sense in the instance's current state.
    ActionNotAllowed,
    /// 422: the host's admission rule refuses it (with `resource`, `needed`, `free`).
    AdmissionRefused,
    /// 422: this host cannot run that kind (e.g. KVM without `/dev/kvm`).
    KindUnsupported,
    /// 503: the host refuses for now (e.g. its replay cache is full); retry later.
    Unavailable,
    /// 500: the runtime failed; `detail` says what the kernel said.
    RuntimeFailed,
    /// A type this version does not know (a newer peer).
    #[serde(other)]
    Unknown,
}

impl ProblemType {
    /// The HTTP status that goes with this type.
    pub fn status(self) -> u16 {
        match self {
            ProblemType::Unauthorized => 401,
            ProblemType::InvalidRequest => 400,
            ProblemType::NotFound => 404,
            ProblemType::SpecConflict | ProblemType::ActionNotAllowed => 409,
            ProblemType::AdmissionRefused | ProblemType::KindUnsupported => 422,
            ProblemType::Unavailable => 503,
            ProblemType::RuntimeFailed | ProblemType::Unknown => 500,
        }
    }
    pub fn title(self) -> &'static str {
        match self {
            ProblemType::Unauthorized => "request not authenticated",
            ProblemType::InvalidRequest => "invalid request",
            ProblemType::NotFound => "no such instance",
            ProblemType::SpecConflict => "another spec holds this instance id",
            ProblemType::ActionNotAllowed => "action not allowed in the current state",
            ProblemType::AdmissionRefused => "the host cannot take it",
            ProblemType::KindUnsupported => "this host cannot run that kind",
            ProblemType::Unavailable => "host busy, retry later",
            ProblemType::RuntimeFailed => "the host failed to carry it out",
            ProblemType::Unknown => "unknown problem",
        }
    }
}

/// An RFC 9457 problem (`application/problem+json`), with Vessel's extension members.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: ProblemType,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// For `admission-refused`: which rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// For `admission-refused`: what the instance would take, in `unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needed: Option<f64>,
    /// For `admission-refused`: what is left on the host, in `unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// For `action-not-allowed`: the state the instance is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<InstanceState>,
}

impl Problem {
    pub const CONTENT_TYPE: &'static str = "application/problem+json";

    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Problem {
            kind,
            title: kind.title().to_string(),
            status: kind.status(),
            detail: detail.into(),
            resource: None,
            needed: None,
            free: None,
            unit: None,
            state: None,
        }
    }

    /// `admission-refused` with the refusal's numbers.
    pub fn admission(r: &Refusal) -> Self {
        let mut p = Problem::new(ProblemType::AdmissionRefused, r.to_string());
        p.resource = Some(r.resource);
        p.needed = Some(r.needed_f64());
        p.free = Some(r.free_f64());
        p.unit = Some(r.resource.unit().to_string());
        p
    }

    /// `action-not-allowed`, saying what to do instead where there is something.
    pub fn action_not_allowed(action: Action, state: InstanceState) -> Self {
        let verb = serde_plain(&action);
        let st = serde_plain(&state);
        let hint = match state {
            InstanceState::Suspended => ": resume it first",
            InstanceState::Stopped | InstanceState::Crashed => ": start it first",
            InstanceState::Creating | InstanceState::Destroying => ": wait for it to finish",
            InstanceState::Running => ": stop it first",
        };
        let mut p = Problem::new(ProblemType::ActionNotAllowed, format!("cannot {verb} a {st} instance{hint}"));
        p.state = Some(state);
        p
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.title, self.status, self.detail)
    }
}

impl std::error::Error for Problem {}

/// The snake_case name serde gives a unit variant (for messages).
fn serde_plain<T: Serialize + std::fmt::Debug>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{v:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn problem_types_are_stable_kebab_strings() {
        let p = Problem::new(ProblemType::AdmissionRefused, "x");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "admission-refused");
        assert_eq!(v["status"], 422);
        let back: Problem = serde_json::from_value(json!({
            "type": "something-newer", "title": "t", "status": 418, "detail": "d"
        }))
        .unwrap();
        assert_eq!(back.kind, ProblemType::Unknown);
    }

    #[test]
    fn action_refusal_says_what_to_do() {
        let p = Problem::action_not_allowed(Action::Reinstall, InstanceState::Suspended);
        assert_eq!(p.detail, "cannot reinstall a suspended instance: resume it first");
        assert_eq!(p.status, 409);
    }

    #[test]
    fn host_action_omits_absent_fields_and_refuses_unknown_or_missing_ones() {
        assert_eq!(serde_json::to_value(HostAction::Start).unwrap(), json!({"action": "start"}));
        let reinstall = HostAction::Reinstall { template: Some("debian-12".into()), access: Default::default() };
        assert_eq!(serde_json::to_value(&reinstall).unwrap(), json!({"action": "reinstall", "template": "debian-12"}));
        // What the panel sent before this enum existed still parses to the same request.
        assert_eq!(
            serde_json::from_value::<HostAction>(json!({"action": "reinstall"})).unwrap(),
            HostAction::Reinstall { template: None, access: Default::default() }
        );
        assert!(serde_json::from_value::<HostAction>(json!({"action": "start", "x": 1})).is_err());
        assert!(serde_json::from_value::<HostAction>(json!({"action": "start", "resources": {}})).is_err(), "a start carries nothing");
        assert!(serde_json::from_value::<HostAction>(json!({"action": "resize"})).is_err(), "a resize needs resources");
        assert!(serde_json::from_value::<HostAction>(json!({"action": "reset_password"})).is_err());
        assert!(serde_json::from_value::<HostAction>(json!({"action": "launch"})).is_err());
    }

    #[test]
    fn join_response_debug_hides_the_secret() {
        let r = JoinResponse { host_id: uuid::Uuid::nil(), secret: "c2VjcmV0".into() };
        assert!(!format!("{r:?}").contains("c2VjcmV0"));
    }
}

/// The console of one instance on the host API: `GET` (signed like every request, empty
/// body) upgraded to a WebSocket. Binary frames carry the terminal's bytes both ways; text
/// frames carry [`ConsoleControl`] as JSON, toward the host. The host closes it when the
/// instance stops; the panel relays it to the browser and is the only one that knows where
/// the host is.
pub fn console_path(id: InstanceId) -> String {
    format!("/v1/instances/{id}/console")
}

/// A control message on a console WebSocket (a text frame). Unknown messages are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleControl {
    /// The terminal's size changed (a container's pty follows it; a serial line has none).
    Resize { cols: u16, rows: u16 },
}

/// The request id a panel sends with each call it makes for one user request (or one job that
/// request queued), so a host's log lines can be found from the panel's. Not part of the
/// signature: it identifies, it authorises nothing. The host echoes it in its answer.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A request id anyone may send: 1 to 64 letters, digits, `-`, `_`, `.` or `:` (no spaces or
/// quotes, so it cannot forge a log line or a field).
pub fn valid_request_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod request_id_tests {
    #[test]
    fn request_ids_are_short_and_plain() {
        assert!(super::valid_request_id("3f2c9a-job:1.x_y"));
        for bad in ["", "a b", "a\"b", "a\nb", &"x".repeat(65)] {
            assert!(!super::valid_request_id(bad), "{bad:?}");
        }
    }
}
