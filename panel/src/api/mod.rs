//! The reseller REST API, `/api/v1`: JSON in and out, bearer API keys, errors as
//! `application/problem+json`, `Idempotency-Key` on every POST, and an OpenAPI 3.1 document
//! generated from these handlers and types (`/api/v1/openapi.json`), rendered as a reference
//! page by the panel itself (`/api/v1/docs`, no CDN).

pub mod auth;
pub mod idempotency;
pub mod models;
pub mod pagination;
pub mod problem;

mod catalogue;
mod customers;
mod examples;
mod invoices;
mod quota;
mod reference;
mod servers;
mod webhooks;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{get, web, HttpResponse};
use problem::{ApiError, Problem};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::OnceLock;
use utoipa::OpenApi;

pub use auth::ApiLimiter;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .wrap(actix_web::middleware::from_fn(problems_only))
            // Malformed ids and queries are API errors too, never actix's plain-text bodies.
            .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::NotFound("resource").into()))
            .app_data(web::QueryConfig::default().error_handler(|e, _| ApiError::validation("query", e.to_string()).into()))
            .app_data(web::PayloadConfig::default().limit(64 * 1024))
            .service(openapi_json)
            .service(reference::page)
            .service(catalogue::plans)
            .service(catalogue::plan)
            .service(catalogue::os_templates)
            .service(customers::list)
            .service(customers::create)
            .service(customers::get)
            .service(customers::update)
            .service(customers::delete)
            .service(servers::list)
            .service(servers::create)
            .service(servers::get)
            .service(servers::usage)
            .service(servers::start)
            .service(servers::stop)
            .service(servers::restart)
            .service(servers::suspend)
            .service(servers::unsuspend)
            .service(servers::rescue)
            .service(servers::leave_rescue)
            .service(servers::terminate)
            .service(servers::reinstall)
            .service(servers::reset_password)
            .service(servers::console)
            .service(servers::resize)
            .service(servers::firewall)
            .service(servers::set_firewall)
            .service(quota::get)
            .service(invoices::pdf)
            .service(webhooks::list)
            .service(webhooks::create)
            .service(webhooks::get)
            .service(webhooks::delete)
            .service(webhooks::deliveries)
            .default_service(web::to(|| async { actix_web::ResponseError::error_response(&ApiError::NotFound("resource")) })),
    );
}

/// Keeps the API's promise that every error is problem+json: a query string with a NUL
/// character is refused up front (PostgreSQL cannot store one), and an error answered by actix
/// itself (a body over the size limit, a method the route lacks) is rewritten as a problem.
async fn problems_only(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let q = req.query_string();
    if q.contains("%00") || q.contains('\0') {
        let e = ApiError::validation("query", "the query string may not contain NUL characters");
        return Ok(req.into_response(actix_web::ResponseError::error_response(&e)));
    }
    let res = next.call(req).await?.map_into_boxed_body();
    let status = res.status();
    let is_problem =
        res.headers().get(actix_web::http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return Ok(res);
    }
    let e = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge,
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        s if s.is_server_error() => ApiError::Internal(format!("{s} from the framework")),
        _ => ApiError::Malformed(format!("the request was refused ({status})")),
    };
    Ok(res.into_response(actix_web::ResponseError::error_response(&e)))
}

/// Parses a JSON body, naming the field at fault when it is well-formed JSON of the wrong shape.
/// Text with a NUL character is refused here: PostgreSQL cannot store it.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::Malformed(e.to_string()))?;
    // Every body is an object; serde would also read a struct from an array.
    if !value.is_object() {
        return Err(ApiError::validation("body", "the body must be a JSON object"));
    }
    if let Some(field) = nul_in(&value, String::new()) {
        return Err(ApiError::validation(if field.is_empty() { "body".into() } else { field }, "text may not contain NUL characters"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde names a missing field in the message, at its parent's path (an unknown field's
        // path is already the field).
        let named = message
            .split('`')
            .nth(1)
            .filter(|_| message.starts_with("missing field") || (message.starts_with("unknown field") && path == "."));
        let field = match (path.as_str(), named) {
            (".", Some(n)) => n.to_string(),
            (".", None) => "body".to_string(),
            (p, Some(n)) => format!("{p}.{n}"),
            (p, None) => p.to_string(),
        };
        ApiError::validation(field, message)
    })
}

/// The path of the first string (or key) holding a NUL character.
fn nul_in(v: &Value, at: String) -> Option<String> {
    let join = |k: &str| if at.is_empty() { k.to_string() } else { format!("{at}.{k}") };
    match v {
        Value::String(s) => s.contains('\0').then_some(at),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, x)| nul_in(x, join(&i.to_string()))),
        Value::Object(map) => map.iter().find_map(|(k, x)| if k.contains('\0') { Some(join(k)) } else { nul_in(x, join(k)) }),
        _ => None,
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vessel reseller API",
        version = "1.0.0",
        description = "Provision and manage VPS for your own customers. Authenticate with an API key from the panel \
            (`Authorization: Bearer vsl_…`). Errors are `application/problem+json` with a stable `type`. Every POST \
            accepts an `Idempotency-Key`: a retry returns the first response."
    ),
    paths(
        catalogue::plans, catalogue::plan, catalogue::os_templates,
        customers::list, customers::create, customers::get, customers::update, customers::delete,
        servers::list, servers::create, servers::get, servers::usage,
        servers::start, servers::stop, servers::restart, servers::suspend, servers::unsuspend, servers::terminate, servers::rescue, servers::leave_rescue,
        servers::reinstall, servers::reset_password, servers::console, servers::resize, servers::firewall, servers::set_firewall,
        quota::get, invoices::pdf,
        webhooks::list, webhooks::create, webhooks::get, webhooks::delete, webhooks::deliveries,
    ),
    components(schemas(Problem)),
    tags(
        (name = "catalogue", description = "Plans (with your wholesale prices) and OS templates"),
        (name = "customers", description = "Your customers: sub-accounts that own servers"),
        (name = "servers", description = "VPS: create, list, act on, watch"),
        (name = "account", description = "Your quotas and your invoices' PDFs"),
        (name = "webhooks", description = "Signed event deliveries to your URLs: server.created, server.updated, invoice.issued, invoice.paid, invoice.void"),
    )
)]
struct ApiDoc;

/// Errors every operation may answer, documented once here rather than on each handler.
pub(crate) const COMMON_ERRORS: [(&str, &str); 8] = [
    ("400", "Malformed JSON or a bad Idempotency-Key"),
    ("401", "Missing, invalid or revoked API key"),
    ("403", "The API key lacks the scope this operation needs"),
    ("404", "No such resource, or not yours"),
    ("409", "The resource's state does not allow this now"),
    ("422", "Validation failed (`field` names it), a quota would be exceeded, or an Idempotency-Key was reused with another request"),
    ("413", "The body is over 64 KiB"),
    ("429", "Rate limited: retry after `Retry-After` seconds"),
];

/// The OpenAPI document: generated from the handlers, plus what applies to all of them.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
        doc["components"]["securitySchemes"] =
            json!({ "bearer": { "type": "http", "scheme": "bearer", "description": "An API key made in the panel" } });
        doc["security"] = json!([{ "bearer": [] }]);
        examples::add_to(&mut doc);
        let problem = json!({ "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } });
        if let Some(paths) = doc["paths"].as_object_mut() {
            for item in paths.values_mut() {
                let Some(item) = item.as_object_mut() else { continue };
                for (method, op) in item.iter_mut() {
                    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else { continue };
                    for (code, description) in COMMON_ERRORS {
                        let mut r = json!({ "description": description, "content": problem.clone() });
                        if code == "429" {
                            r["headers"] = json!({ "Retry-After": { "description": "Seconds to wait", "schema": { "type": "integer" } } });
                        }
                        if code == "401" {
                            r["headers"] = json!({ "WWW-Authenticate": { "schema": { "type": "string" } } });
                        }
                        responses.entry(code.to_string()).or_insert(r);
                    }
                    if method == "post" {
                        let params = op.as_object_mut().map(|o| o.entry("parameters").or_insert_with(|| json!([])));
                        if let Some(Value::Array(params)) = params {
                            params.push(json!({
                                "name": "Idempotency-Key", "in": "header", "required": false,
                                "description": "Makes a retry return the first response instead of acting twice (kept 24 h)",
                                "schema": { "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$" }
                            }));
                        }
                    }
                }
            }
        }
        doc
    })
}

/// The OpenAPI 3.1 document of this API.
#[get("/openapi.json")]
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(document())
}
