//! Structured logs: human-readable or JSON (`[log] format = "json"`), filtered by the
//! configuration or `RUST_LOG`; and request ids: made at the panel's edge for every request
//! (or taken from a trusted proxy's `X-Request-Id`), logged on its span, answered in
//! `X-Request-Id`, stored with the jobs it queues, sent to hosts with the calls those jobs make
//! (the host logs it and echoes it back).

use crate::config::LogFormat;
use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber once; later calls (tests) are ignored.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

tokio::task_local! {
    /// The request id of the work this task is doing (a request, or a job one queued).
    static REQUEST_ID: String;
}

/// The request id of the current task, if it serves one.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

/// Runs `fut` as the work of request `id`.
pub async fn with_request_id<F: std::future::Future>(id: String, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

/// Middleware: every request gets an id — the incoming `X-Request-Id` when `[log]
/// trust_request_id` says a proxy in front sets it (and it is well-formed), else a new one —
/// on its log span, in the answer's `X-Request-Id`, and for the jobs it queues.
pub async fn request_id(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use vessel_core::wire::{valid_request_id, REQUEST_ID_HEADER};
    let trusted = req.app_data::<actix_web::web::Data<crate::config::Settings>>().is_some_and(|s| s.log.trust_request_id);
    let id = trusted
        .then(|| req.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).filter(|v| valid_request_id(v)).map(str::to_owned))
        .flatten()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let span = tracing::info_span!("request", request_id = %id);
    let mut res = tracing::Instrument::instrument(with_request_id(id.clone(), next.call(req)), span).await?;
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&id) {
        res.headers_mut().insert(actix_web::http::header::HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    Ok(res)
}
