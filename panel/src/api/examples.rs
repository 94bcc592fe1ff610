//! A request example, a response example and a `curl` line for every operation of the API,
//! added to the OpenAPI document (`example` on the request body and on the success response,
//! `x-codeSamples` with the curl line) and shown on the reference page.
//!
//! They cannot drift from the contract: each response example is a value of the operation's own
//! response type, serialized; each request body example is parsed by the same [`super::parse`]
//! the handler uses into the handler's own type (a test does it for every operation); and a test
//! refuses an operation of the document that has no entry here.

use super::models::*;
use super::webhooks::{
    NewWebhookEndpoint, WebhookDelivery, WebhookDeliveryList, WebhookEndpoint, WebhookEndpointList, WebhookEndpointWithSecret,
};
use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::{uuid, Uuid};

/// Parses a request body as the handler does; the error says why it was refused.
type Parser = fn(&[u8]) -> Result<(), String>;

/// One operation's examples.
pub(crate) struct Example {
    pub method: &'static str,
    /// As in the document, e.g. `/api/v1/servers/{id}/start`.
    pub path: &'static str,
    /// A query string for the curl line (without `?`), when the operation takes one.
    pub query: &'static str,
    /// The body sent, and the check that the handler's own parser takes it.
    pub request: Option<(Value, Parser)>,
    /// The success status and what it carries: JSON, a note for a non-JSON body, or nothing (204).
    pub status: u16,
    pub response: Response,
}

pub(crate) enum Response {
    Json(Value),
    /// A body that is not JSON (the invoice PDF): its media type and what it starts with.
    Other(&'static str, &'static str),
    Empty,
}

const SERVER_ID: Uuid = uuid!("0b9c3a52-6f1e-4b8e-9d1a-2f5e7c4a8b10");
const CUSTOMER_ID: Uuid = uuid!("7d2f4e61-3a8b-4c5d-9e0f-1a2b3c4d5e6f");
const RESELLER_ID: Uuid = uuid!("5e8a1c2b-9d3f-4a6e-8b7c-0d1e2f3a4b5c");
const ENDPOINT_ID: Uuid = uuid!("c4a1e9b2-7f3d-4e8a-b5c6-d7e8f9a0b1c2");
const INVOICE_ID: Uuid = uuid!("9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a");
const EVENT_ID: Uuid = uuid!("1a2b3c4d-5e6f-4a8b-9c0d-e1f2a3b4c5d6");

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).single().expect("a valid example time")
}

fn to<T: Serialize>(v: T) -> Response {
    Response::Json(serde_json::to_value(v).expect("the example serializes"))
}

/// Parsed exactly as the handler parses its body.
fn parses_as<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<(), String> {
    super::parse::<T>(body).map(|_| ()).map_err(|e| e.to_string())
}

fn plan() -> Plan {
    Plan {
        code: "burst-s".into(),
        name: "Burst S".into(),
        description: "1 vCPU, 1 GiB guaranteed, bursts to 2 GiB".into(),
        kind: "container".into(),
        vcpus: 1,
        memory_guaranteed_mib: 1024,
        memory_burst_mib: 2048,
        swap_mib: 512,
        disk_gib: 20,
        bandwidth_gib: Some(1000),
        prices: vec![Price { cycle: "monthly".into(), currency: "EUR".into(), retail_minor: 500, wholesale_minor: 400 }],
        available: true,
        unavailable_reason: None,
    }
}

fn customer() -> Customer {
    Customer {
        id: CUSTOMER_ID,
        email: "ana@customer.example".into(),
        name: "Ana Example".into(),
        country: Some("DE".into()),
        status: "active".into(),
        reseller_id: Some(RESELLER_ID),
        created_at: at(9, 0),
    }
}

fn server(desired: &str, observed: &str) -> Server {
    Server {
        id: SERVER_ID,
        customer_id: CUSTOMER_ID,
        plan: "burst-s".into(),
        kind: "container".into(),
        vcpus: 1,
        memory_guaranteed_mib: 1024,
        memory_burst_mib: 2048,
        disk_gib: 20,
        os_template: "debian-12".into(),
        hostname: "web1.customer.example".into(),
        desired_state: desired.into(),
        observed_state: observed.into(),
        observed_at: Some(at(9, 5)),
        last_error: None,
        billing_status: Some("active".into()),
        addresses: vec!["203.0.113.10".into()],
        created_at: at(9, 1),
        terminated_at: None,
        rescue: false,
        root_password: None,
    }
}

fn endpoint_with_secret(secret: bool) -> WebhookEndpointWithSecret {
    WebhookEndpointWithSecret {
        id: ENDPOINT_ID,
        url: "https://hooks.reseller.example/vessel".into(),
        enabled: true,
        created_at: at(8, 0),
        secret: secret.then(|| "whsec_3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e".into()),
    }
}

fn action(method: &'static str, path: &'static str, desired: &str, observed: &str) -> Example {
    Example { method, path, query: "", request: None, status: 202, response: to(server(desired, observed)) }
}

/// Every operation's examples, in the document's order.
pub(crate) fn all() -> Vec<Example> {
    let created = {
        let mut s = server("running", "pending");
        s.observed_at = None;
        s.addresses = vec![];
        s
    };
    vec![
        Example {
            method: "get",
            path: "/api/v1/plans",
            query: "",
            request: None,
            status: 200,
            response: to(PlanList { data: vec![plan()] }),
        },
        Example { method: "get", path: "/api/v1/plans/{code}", query: "", request: None, status: 200, response: to(plan()) },
        Example {
            method: "get",
            path: "/api/v1/os-templates",
            query: "",
            request: None,
            status: 200,
            response: to(OsTemplateList {
                data: vec![OsTemplate {
                    name: "debian-12".into(),
                    display_name: "Debian 12".into(),
                    version: "12".into(),
                    for_containers: true,
                    for_kvm: true,
                }],
            }),
        },
        Example {
            method: "get",
            path: "/api/v1/customers",
            query: "limit=25",
            request: None,
            status: 200,
            response: to(CustomerList { data: vec![customer()], next_cursor: None }),
        },
        Example {
            method: "post",
            path: "/api/v1/customers",
            query: "",
            request: Some((json!({ "email": "ana@customer.example", "name": "Ana Example", "country": "DE" }), parses_as::<NewCustomer>)),
            status: 201,
            response: to(customer()),
        },
        Example { method: "get", path: "/api/v1/customers/{id}", query: "", request: None, status: 200, response: to(customer()) },
        Example {
            method: "patch",
            path: "/api/v1/customers/{id}",
            query: "",
            request: Some((json!({ "status": "suspended" }), parses_as::<CustomerChange>)),
            status: 200,
            response: to(Customer { status: "suspended".into(), ..customer() }),
        },
        Example { method: "delete", path: "/api/v1/customers/{id}", query: "", request: None, status: 204, response: Response::Empty },
        Example {
            method: "get",
            path: "/api/v1/servers",
            query: "customer_id=7d2f4e61-3a8b-4c5d-9e0f-1a2b3c4d5e6f&state=running",
            request: None,
            status: 200,
            response: to(ServerList { data: vec![server("running", "running")], next_cursor: None }),
        },
        Example {
            method: "post",
            path: "/api/v1/servers",
            query: "",
            request: Some((
                json!({
                    "customer_id": CUSTOMER_ID, "plan": "burst-s", "os_template": "debian-12",
                    "hostname": "web1.customer.example", "cycle": "monthly",
                    "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOEuJDWj+k9qzUVzDM/aPy8cOscb4XVsl36ZU6j3ryV+ ana@laptop"]
                }),
                parses_as::<NewServer>,
            )),
            status: 201,
            response: to(created),
        },
        Example {
            method: "get",
            path: "/api/v1/servers/{id}",
            query: "",
            request: None,
            status: 200,
            response: to(server("running", "running")),
        },
        Example {
            method: "get",
            path: "/api/v1/servers/{id}/usage",
            query: "",
            request: None,
            status: 200,
            response: to(Usage {
                server_id: SERVER_ID,
                points: vec![UsagePoint {
                    at: at(9, 10),
                    cpu_cores: 0.25,
                    memory_mib: 1180.0,
                    burst_mib: 156.0,
                    disk_gib: 3.2,
                    rx_mbit: 1.5,
                    tx_mbit: 0.4,
                }],
            }),
        },
        action("post", "/api/v1/servers/{id}/start", "running", "stopped"),
        action("post", "/api/v1/servers/{id}/stop", "stopped", "running"),
        action("post", "/api/v1/servers/{id}/restart", "running", "running"),
        action("post", "/api/v1/servers/{id}/suspend", "suspended", "running"),
        action("post", "/api/v1/servers/{id}/unsuspend", "running", "suspended"),
        action("post", "/api/v1/servers/{id}/terminate", "terminated", "running"),
        Example {
            method: "post",
            path: "/api/v1/servers/{id}/rescue",
            query: "",
            request: None,
            status: 202,
            response: to(Server { rescue: true, ..server("running", "running") }),
        },
        action("post", "/api/v1/servers/{id}/leave-rescue", "running", "running"),
        Example {
            method: "post",
            path: "/api/v1/servers/{id}/reinstall",
            query: "",
            request: Some((json!({ "os_template": "debian-12", "root_password": "correct horse battery staple" }), parses_as::<Reinstall>)),
            status: 202,
            response: to(server("running", "running")),
        },
        Example {
            method: "post",
            path: "/api/v1/servers/{id}/reset-password",
            query: "",
            request: Some((json!({}), parses_as::<ResetPassword>)),
            status: 202,
            response: to(Server { root_password: Some("k7Rm2xTqP9vWb4NcZ3hA".into()), ..server("running", "running") }),
        },
        Example {
            method: "post",
            path: "/api/v1/servers/{id}/console",
            query: "",
            request: None,
            status: 201,
            response: to(ConsoleToken {
                token: "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE".into(),
                websocket_path: "/console/ws?token=Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE".into(),
                page_path: "/console?token=Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE".into(),
                expires_at: at(9, 11),
            }),
        },
        Example {
            method: "get",
            path: "/api/v1/servers/{id}/firewall",
            query: "",
            request: None,
            status: 200,
            response: to(Firewall::from(vessel_core::Firewall::default())),
        },
        Example {
            method: "put",
            path: "/api/v1/servers/{id}/firewall",
            query: "",
            request: Some((
                json!({ "default_policy": "drop", "rules": [
                    { "action": "accept", "protocol": "tcp", "ports": "22", "source": "203.0.113.0/24" },
                    { "action": "accept", "protocol": "tcp", "ports": "80-443" },
                    { "action": "accept", "protocol": "icmp" }
                ] }),
                parses_as::<vessel_core::Firewall>,
            )),
            status: 200,
            response: to(Firewall::from(
                vessel_core::Firewall::parse_lines(
                    vessel_core::firewall::Verdict::Drop,
                    "accept tcp 22 from 203.0.113.0/24\naccept tcp 80-443\naccept icmp",
                )
                .expect("the example's rules are valid"),
            )),
        },
        Example {
            method: "post",
            path: "/api/v1/servers/{id}/resize",
            query: "",
            request: Some((json!({ "plan": "burst-m" }), parses_as::<Resize>)),
            status: 202,
            response: to(Server {
                plan: "burst-m".into(),
                vcpus: 2,
                memory_guaranteed_mib: 2048,
                memory_burst_mib: 4096,
                disk_gib: 40,
                ..server("running", "running")
            }),
        },
        Example {
            method: "get",
            path: "/api/v1/quota",
            query: "",
            request: None,
            status: 200,
            response: to(Quota {
                reseller_id: RESELLER_ID,
                servers: QuotaItem { limit: 50, used: 12 },
                vcpus: QuotaItem { limit: 100, used: 18 },
                memory_mib: QuotaItem { limit: 102_400, used: 16_384 },
                disk_gib: QuotaItem { limit: 2000, used: 360 },
                discount_bp: 2000,
            }),
        },
        Example {
            method: "get",
            path: "/api/v1/invoices/{id}/pdf",
            query: "",
            request: None,
            status: 200,
            response: Response::Other("application/pdf", "%PDF-1.4 … (the invoice as archived, byte for byte the same on every download)"),
        },
        Example {
            method: "get",
            path: "/api/v1/webhooks",
            query: "",
            request: None,
            status: 200,
            response: to(WebhookEndpointList {
                data: vec![WebhookEndpoint {
                    id: ENDPOINT_ID,
                    url: "https://hooks.reseller.example/vessel".into(),
                    enabled: true,
                    created_at: at(8, 0),
                }],
            }),
        },
        Example {
            method: "post",
            path: "/api/v1/webhooks",
            query: "",
            request: Some((json!({ "url": "https://hooks.reseller.example/vessel" }), parses_as::<NewWebhookEndpoint>)),
            status: 201,
            response: to(endpoint_with_secret(true)),
        },
        Example {
            method: "get",
            path: "/api/v1/webhooks/{id}",
            query: "",
            request: None,
            status: 200,
            response: to(endpoint_with_secret(true)),
        },
        Example { method: "delete", path: "/api/v1/webhooks/{id}", query: "", request: None, status: 204, response: Response::Empty },
        Example {
            method: "get",
            path: "/api/v1/webhooks/{id}/deliveries",
            query: "",
            request: None,
            status: 200,
            response: to(WebhookDeliveryList {
                data: vec![WebhookDelivery {
                    id: 42,
                    event_id: EVENT_ID,
                    event_type: "server.updated".into(),
                    status: "delivered".into(),
                    attempts: 1,
                    last_status: Some(200),
                    last_error: None,
                    next_attempt_at: at(9, 5),
                    delivered_at: Some(at(9, 5)),
                    created_at: at(9, 5),
                }],
            }),
        },
    ]
}

/// The example id for a path parameter.
fn path_value(name: &str, path: &str) -> String {
    match name {
        "code" => "burst-s".into(),
        "id" if path.starts_with("/api/v1/customers") => CUSTOMER_ID.to_string(),
        "id" if path.starts_with("/api/v1/webhooks") => ENDPOINT_ID.to_string(),
        "id" if path.starts_with("/api/v1/invoices") => INVOICE_ID.to_string(),
        _ => SERVER_ID.to_string(),
    }
}

impl Example {
    /// The request as a shell command: the key from `$VESSEL_API_KEY`, the panel at `$VESSEL_URL`.
    pub fn curl(&self) -> String {
        let mut path = self.path.to_string();
        while let (Some(a), Some(b)) = (path.find('{'), path.find('}')) {
            let v = path_value(&path[a + 1..b], self.path);
            path.replace_range(a..=b, &v);
        }
        let url = if self.query.is_empty() { path } else { format!("{path}?{}", self.query) };
        let mut out =
            format!("curl -sS -X {} \"$VESSEL_URL{url}\" \\\n  -H \"Authorization: Bearer $VESSEL_API_KEY\"", self.method.to_uppercase());
        if self.method == "post" {
            out.push_str(" \\\n  -H \"Idempotency-Key: $(uuidgen)\"");
        }
        if let Some((body, _)) = &self.request {
            out.push_str(&format!(" \\\n  -H \"Content-Type: application/json\" \\\n  -d '{body}'"));
        }
        if matches!(self.response, Response::Other(..)) {
            out.push_str(" \\\n  -o invoice.pdf");
        }
        out
    }
}

/// Adds the examples and curl lines to the generated document.
pub(crate) fn add_to(doc: &mut Value) {
    for e in all() {
        let Some(op) = doc.pointer_mut(&format!("/paths/{}/{}", e.path.replace('~', "~0").replace('/', "~1"), e.method)) else { continue };
        op["x-codeSamples"] = json!([{ "lang": "curl", "label": "curl", "source": e.curl() }]);
        if let (Some((body, _)), Some(content)) = (&e.request, op.pointer_mut("/requestBody/content/application~1json")) {
            content["example"] = body.clone();
        }
        let Some(r) = op.pointer_mut(&format!("/responses/{}", e.status)) else { continue };
        match &e.response {
            Response::Json(v) => {
                if let Some(c) = r.pointer_mut("/content/application~1json") {
                    c["example"] = v.clone();
                }
            }
            Response::Other(media, text) => {
                if let Some(c) = r.pointer_mut(&format!("/content/{}", media.replace('/', "~1"))) {
                    c["example"] = json!(text);
                }
            }
            Response::Empty => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METHODS: [&str; 5] = ["get", "post", "patch", "put", "delete"];

    /// Every operation of the generated document has a curl line and a response example (or is a
    /// 204, whose example is its status); every operation with a body has a request example, and
    /// the handler's own parser takes it. An operation added without examples fails here.
    #[test]
    fn every_operation_has_a_request_and_response_example_and_a_curl_line() {
        let doc = super::super::document();
        let examples = all();
        let mut seen = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                seen += 1;
                let e = examples
                    .iter()
                    .find(|e| e.method == method && e.path == path)
                    .unwrap_or_else(|| panic!("{method} {path} has no examples in api/examples.rs"));
                let curl = op["x-codeSamples"][0]["source"].as_str().unwrap_or_else(|| panic!("{method} {path}: no curl line"));
                assert!(curl.starts_with(&format!("curl -sS -X {} \"$VESSEL_URL/api/v1/", method.to_uppercase())), "{curl}");
                assert!(!curl.contains('{') || curl.contains("-d '{"), "{method} {path}: a path parameter left in {curl}");
                let success: Vec<&String> = op["responses"].as_object().unwrap().keys().filter(|s| s.starts_with('2')).collect();
                assert_eq!(success, vec![&e.status.to_string()], "{method} {path}: the example's status is the success status");
                match &e.response {
                    Response::Json(v) => {
                        let ex = &op["responses"][e.status.to_string()]["content"]["application/json"]["example"];
                        assert_eq!(ex, v, "{method} {path}: the response example is in the document");
                        assert!(v.is_object(), "{method} {path}");
                    }
                    Response::Other(media, _) => {
                        assert!(op["responses"][e.status.to_string()]["content"][media]["example"].is_string(), "{method} {path}");
                    }
                    Response::Empty => assert_eq!(e.status, 204, "{method} {path}: only a 204 has no body"),
                }
                match (op.get("requestBody"), &e.request) {
                    (Some(rb), Some((body, parse))) => {
                        assert_eq!(&rb["content"]["application/json"]["example"], body, "{method} {path}");
                        parse(body.to_string().as_bytes())
                            .unwrap_or_else(|m| panic!("{method} {path}: the handler refuses its example: {m}"));
                        assert!(curl.contains(&format!("-d '{body}'")), "{curl}");
                    }
                    (None, None) => {}
                    (Some(_), None) => panic!("{method} {path} takes a body but has no request example"),
                    (None, Some(_)) => panic!("{method} {path} has a request example but takes no body"),
                }
            }
        }
        assert_eq!(seen, examples.len(), "an example for an operation the document does not have");
    }

    /// The check above can fail: a body the handler's type refuses is caught.
    #[test]
    fn a_request_example_the_handler_refuses_is_caught() {
        assert!(parses_as::<NewServer>(br#"{"customer_id":"x","plan":"burst-s"}"#).is_err());
        assert!(parses_as::<Resize>(br#"{"plan":"burst-m","extra":1}"#).is_err());
    }
}
