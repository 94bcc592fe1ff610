//! `/api/v1/docs`: the API reference as a plain page rendered from the OpenAPI document, so it
//! works without JavaScript or any CDN (operators' networks often have no internet).

use actix_web::{get, HttpResponse};
use askama::Template;
use serde_json::Value;

struct Param {
    name: String,
    location: String,
    ty: String,
    required: bool,
    description: String,
}

struct Resp {
    status: String,
    schema: String,
    description: String,
}

struct Op {
    anchor: String,
    method: String,
    path: String,
    summary: String,
    params: Vec<Param>,
    body: Option<String>,
    responses: Vec<Resp>,
    /// The examples of `api/examples.rs`, as the document carries them.
    curl: String,
    request_example: Option<String>,
    /// The success status and its example body (pretty JSON, or a note for a PDF; empty for a 204).
    response_example: (String, String),
}

struct Tag {
    name: String,
    description: String,
    operations: Vec<Op>,
}

struct Field {
    name: String,
    ty: String,
    required: bool,
    description: String,
}

struct Schema {
    name: String,
    description: String,
    fields: Vec<Field>,
}

#[derive(Template)]
#[template(path = "api_reference.html")]
struct Reference {
    title: String,
    version: String,
    description: String,
    openapi: String,
    tags: Vec<Tag>,
    errors: Vec<(String, u16, String)>,
    common: String,
    schemas: Vec<Schema>,
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Escapes text for HTML and renders `code` spans, as the descriptions are written.
fn rich(s: &str) -> String {
    let escaped = s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let mut out = String::new();
    for (i, part) in escaped.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str("<code>");
            out.push_str(part);
            out.push_str("</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// A short type for a JSON schema: `string (uuid)`, `array of Server`, `integer | null`.
fn type_of(s: &Value) -> String {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next().unwrap_or(r).to_string();
    }
    if let Some(any) = s.get("oneOf").or_else(|| s.get("anyOf")).and_then(Value::as_array) {
        return any.iter().map(type_of).collect::<Vec<_>>().join(" | ");
    }
    let base = match s.get("type") {
        Some(Value::Array(ts)) => ts.iter().map(text).collect::<Vec<_>>().join(" | "),
        Some(t) => text(t),
        None => "any".into(),
    };
    let base = if base.starts_with("array") {
        base.replacen("array", &format!("array of {}", s.get("items").map(type_of).unwrap_or_default()), 1)
    } else {
        base
    };
    let base = match s.get("enum").and_then(Value::as_array) {
        Some(values) => format!("{base}: {}", values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")),
        None => base,
    };
    match s.get("format").and_then(Value::as_str) {
        Some(f) => format!("{base} ({f})"),
        None => base,
    }
}

fn schema_name(content: Option<&Value>) -> String {
    content.and_then(|c| c.as_object()).and_then(|c| c.values().next()).and_then(|m| m.get("schema")).map(type_of).unwrap_or_default()
}

fn build() -> Reference {
    let doc = super::document();
    let mut tags: Vec<Tag> = doc["tags"]
        .as_array()
        .map(|ts| ts.iter().map(|t| Tag { name: text(&t["name"]), description: text(&t["description"]), operations: Vec::new() }).collect())
        .unwrap_or_default();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in ["get", "post", "patch", "put", "delete"] {
                let Some(op) = item.get(method) else { continue };
                let params = op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .map(|p| Param {
                                name: text(&p["name"]),
                                location: text(&p["in"]),
                                ty: type_of(&p["schema"]),
                                required: p["required"].as_bool().unwrap_or(false),
                                description: rich(&text(&p["description"])),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                // The errors every operation shares are listed once, under "Errors".
                let responses = op["responses"]
                    .as_object()
                    .map(|rs| {
                        rs.iter()
                            .filter(|(status, r)| !super::COMMON_ERRORS.iter().any(|(c, d)| c == status && r["description"] == *d))
                            .map(|(status, r)| Resp {
                                status: status.clone(),
                                schema: schema_name(r.get("content")),
                                description: rich(&text(&r["description"])),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let summary = rich(
                    &[text(&op["summary"]), text(&op["description"])].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" "),
                );
                let pretty = |v: &Value| match v {
                    Value::String(s) => s.clone(),
                    v => serde_json::to_string_pretty(v).unwrap_or_default(),
                };
                let request_example = op
                    .pointer("/requestBody/content")
                    .and_then(Value::as_object)
                    .and_then(|c| c.values().find_map(|m| m.get("example")))
                    .map(pretty);
                let response_example = op["responses"]
                    .as_object()
                    .and_then(|rs| rs.iter().find(|(s, _)| s.starts_with('2')))
                    .map(|(s, r)| {
                        let ex = r["content"].as_object().and_then(|c| c.values().find_map(|m| m.get("example"))).map(pretty);
                        (s.clone(), ex.unwrap_or_default())
                    })
                    .unwrap_or_default();
                let o = Op {
                    anchor: format!("{method}-{}", path.replace(['/', '{', '}'], "-")),
                    method: method.to_string(),
                    path: path.clone(),
                    summary,
                    params,
                    body: op.get("requestBody").map(|b| schema_name(b.get("content"))),
                    responses,
                    curl: op["x-codeSamples"][0]["source"].as_str().unwrap_or_default().to_string(),
                    request_example,
                    response_example,
                };
                let tag = op["tags"].get(0).map(text).unwrap_or_else(|| "other".into());
                match tags.iter_mut().find(|t| t.name == tag) {
                    Some(t) => t.operations.push(o),
                    None => tags.push(Tag { name: tag, description: String::new(), operations: vec![o] }),
                }
            }
        }
    }
    let schemas = doc["components"]["schemas"]
        .as_object()
        .map(|ss| {
            ss.iter()
                .map(|(name, s)| {
                    let required: Vec<&str> =
                        s["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                    Schema {
                        name: name.clone(),
                        description: rich(&text(&s["description"])),
                        fields: s["properties"]
                            .as_object()
                            .map(|ps| {
                                ps.iter()
                                    .map(|(f, p)| Field {
                                        name: f.clone(),
                                        ty: type_of(p),
                                        required: required.contains(&f.as_str()),
                                        description: rich(&text(&p["description"])),
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let errors = super::problem::ALL_KINDS
        .iter()
        .map(|(slug, status, when)| (format!("{}{slug}", super::problem::TYPE_BASE), *status, rich(when)))
        .collect();
    Reference {
        title: text(&doc["info"]["title"]),
        version: text(&doc["info"]["version"]),
        description: rich(&text(&doc["info"]["description"])),
        common: super::COMMON_ERRORS.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", "),
        openapi: text(&doc["openapi"]),
        tags,
        errors,
        schemas,
    }
}

#[get("/docs")]
pub async fn page() -> HttpResponse {
    match build().render() {
        Ok(html) => HttpResponse::Ok().content_type("text/html; charset=utf-8").body(html),
        Err(e) => {
            tracing::error!(error = %e, "API reference page failed to render");
            HttpResponse::InternalServerError().finish()
        }
    }
}
