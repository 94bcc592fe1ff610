//! The provisioner's HTTP API (actix-web): thin handlers over [`crate::service::Service`].
//!
//! Every request must be signed with the host secret ([`vessel_core::signing`]); the signature
//! is checked before the body is parsed, so an unsigned request learns nothing but 401.
//! Bodies and answers are [`vessel_core::wire`] types; errors are problem+json.

use crate::service::{Created, Service, ServiceError};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;
use vessel_core::signing::{Presented, Verifier, VerifyError, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use vessel_core::wire::{ConsoleControl, CreateInstance, HostAction, Problem, ProblemType};
use vessel_core::InstanceId;

/// What every handler shares.
pub struct ApiState {
    pub service: Arc<Service>,
    pub verifier: Verifier,
}

/// An error answer: a problem+json body with its status.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct ApiError(pub Problem);

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).content_type(Problem::CONTENT_TYPE).json(&self.0)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        if matches!(e, ServiceError::Store(_) | ServiceError::Runtime { .. } | ServiceError::Internal(_)) {
            tracing::error!(error = %e, "request failed on the host");
        }
        ApiError(e.problem())
    }
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError(Problem::new(ProblemType::InvalidRequest, detail))
}

/// Checks the request's signature over method, path and query, and body.
fn authenticate(state: &ApiState, req: &HttpRequest, body: &[u8]) -> Result<(), ApiError> {
    let h = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let presented = Presented { timestamp: h(HEADER_TIMESTAMP), nonce: h(HEADER_NONCE), signature: h(HEADER_SIGNATURE) };
    let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    match state.verifier.verify(req.method().as_str(), pq, presented, body) {
        Ok(()) => Ok(()),
        Err(VerifyError::ReplayCacheFull) => {
            tracing::warn!("replay cache full: refusing requests until nonces expire");
            Err(ApiError(Problem::new(ProblemType::Unavailable, VerifyError::ReplayCacheFull.to_string())))
        }
        Err(e) => {
            tracing::warn!(peer = ?req.peer_addr(), method = %req.method(), path = req.path(), reason = %e, "refused an unauthenticated request");
            Err(ApiError(Problem::new(ProblemType::Unauthorized, e.to_string())))
        }
    }
}

fn instance_id(raw: &str) -> Result<InstanceId, ApiError> {
    raw.parse().map_err(|_| invalid(format!("{raw:?} is not an instance id")))
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| invalid(format!("body: {e}")))
}

type State = web::Data<ApiState>;

async fn get_host(state: State, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &req, &body)?;
    Ok(HttpResponse::Ok().json(state.service.report().await?))
}

async fn list_instances(state: State, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &req, &body)?;
    Ok(HttpResponse::Ok().json(state.service.list().await?))
}

async fn get_instance(state: State, req: HttpRequest, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &req, &body)?;
    let id = instance_id(&path)?;
    Ok(HttpResponse::Ok().json(state.service.status(id).await?))
}

async fn put_instance(state: State, req: HttpRequest, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &req, &body)?;
    let id = instance_id(&path)?;
    let spec: CreateInstance = json_body(&body)?;
    if spec.id != id {
        return Err(invalid(format!("the path's id {id} is not the spec's id {}", spec.id)));
    }
    let (created, status) = state.service.create(spec).await?;
    Ok(match created {
        Created::New => HttpResponse::Created().json(status),
        Created::Existing => HttpResponse::Ok().json(status),
    })
}

/// Replaces the instance's firewall (a [`vessel_core::Firewall`]); answers its status.
async fn put_firewall(state: State, req: HttpRequest, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &req, &body)?;
    let id = instance_id(&path)?;
    let firewall: vessel_core::Firewall = json_body(&body)?;
    Ok(HttpResponse::Ok().json(state.service.set_firewall(id, firewall).await?))
}

async fn post_action(state: State, req: HttpRequest, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &req, &body)?;
    let id = instance_id(&path)?;
    let action: HostAction = json_body(&body)?;
    Ok(match state.service.act(id, action).await? {
        Some(status) => HttpResponse::Ok().json(status),
        None => HttpResponse::NoContent().finish(),
    })
}

async fn delete_instance(state: State, req: HttpRequest, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &req, &body)?;
    let id = instance_id(&path)?;
    state.service.destroy(id).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn get_usage(state: State, req: HttpRequest, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &req, &body)?;
    let id = instance_id(&path)?;
    Ok(HttpResponse::Ok().json(state.service.usage(id).await?))
}

/// The instance's console as a WebSocket (see [`vessel_core::wire::console_path`]): signed
/// like every request (empty body), then binary frames both ways, text frames for
/// [`ConsoleControl`]. Closed by the host when the instance stops or the console ends.
async fn console(state: State, req: HttpRequest, path: web::Path<String>, body: web::Payload) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &req, &[])?;
    let id = instance_id(&path)?;
    let (response, session, stream) = actix_ws::handle(&req, body).map_err(|e| invalid(format!("not a WebSocket request: {e}")))?;
    let console = state.service.console(id).await?;
    tracing::info!(%id, "console attached");
    actix_web::rt::spawn(relay_console(state.service.clone(), id, console, session, stream));
    Ok(response)
}

enum ConsoleIn {
    Bytes(Vec<u8>),
    Resize(u16, u16),
}

/// Pumps one console: its output (a thread of its own: reads block) to the socket, the
/// socket's frames to its input (another thread: writes to a full UART wait), and ends it when
/// the instance stops, the console ends or the other side goes away.
async fn relay_console(
    service: Arc<Service>,
    id: InstanceId,
    console: crate::runtime::Console,
    mut session: actix_ws::Session,
    mut stream: actix_ws::MessageStream,
) {
    use actix_ws::{CloseCode, CloseReason, Message};
    let crate::runtime::Console { mut output, mut input } = console;
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match output.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out_tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let (in_tx, in_rx) = std::sync::mpsc::channel::<ConsoleIn>();
    std::thread::spawn(move || {
        while let Ok(m) = in_rx.recv() {
            let r = match m {
                ConsoleIn::Bytes(b) => input.write(&b),
                ConsoleIn::Resize(c, r) => input.resize(c, r),
            };
            if let Err(e) = r {
                tracing::debug!(%id, error = %e, "console input failed");
                break;
            }
        }
        // `input` dropped here: the console is detached.
    });
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let reason = loop {
        tokio::select! {
            out = out_rx.recv() => match out {
                Some(bytes) => if session.binary(bytes).await.is_err() { break None },
                None => break Some("the console ended"),
            },
            msg = stream.recv() => match msg {
                Some(Ok(Message::Binary(b))) => { let _ = in_tx.send(ConsoleIn::Bytes(b.to_vec())); }
                Some(Ok(Message::Text(t))) => {
                    if let Ok(ConsoleControl::Resize { cols, rows }) = serde_json::from_str::<ConsoleControl>(&t) {
                        let _ = in_tx.send(ConsoleIn::Resize(cols.clamp(1, 1000), rows.clamp(1, 1000)));
                    }
                }
                Some(Ok(Message::Ping(p))) => { let _ = session.pong(&p).await; }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                Some(Ok(_)) => {}
            },
            _ = tick.tick() => if !service.is_running(id).await { break Some("the server stopped") },
        }
    };
    drop(in_tx);
    tracing::info!(%id, reason = reason.unwrap_or("closed by the viewer"), "console detached");
    let _ = session.close(reason.map(|r| CloseReason { code: CloseCode::Normal, description: Some(r.to_string()) })).await;
}

async fn not_found(state: State, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &req, &body)?;
    Err(ApiError(Problem { status: 404, ..Problem::new(ProblemType::InvalidRequest, format!("no route {} {}", req.method(), req.path())) }))
}

/// `GET /healthz`, the one unauthenticated route: the daemon is up and serving its API (for
/// systemd checks, load balancers and monitoring). It says nothing about the host.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok\n")
}

/// The routes, for `App::configure`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz));
    cfg.service(
        web::scope("/v1")
            .route("/host", web::get().to(get_host))
            .route("/instances", web::get().to(list_instances))
            .route("/instances/{id}", web::get().to(get_instance))
            .route("/instances/{id}", web::put().to(put_instance))
            .route("/instances/{id}", web::delete().to(delete_instance))
            .route("/instances/{id}/actions", web::post().to(post_action))
            .route("/instances/{id}/firewall", web::put().to(put_firewall))
            .route("/instances/{id}/usage", web::get().to(get_usage))
            .route("/instances/{id}/console", web::get().to(console)),
    )
    .default_service(web::to(not_found));
}

/// Middleware: a request the panel sent with an `X-Request-Id` (the user request or job it
/// works for) is handled in a span carrying that id, logged once with its outcome, and
/// answered with the same header, so the panel's and the host's logs meet.
async fn request_id(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use vessel_core::wire::{valid_request_id, REQUEST_ID_HEADER};
    let id = req.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).filter(|v| valid_request_id(v)).map(str::to_owned);
    let Some(id) = id else { return next.call(req).await };
    let (method, path) = (req.method().to_string(), req.path().to_owned());
    let span = tracing::info_span!("request", request_id = %id);
    let mut res = tracing::Instrument::instrument(next.call(req), span.clone()).await?;
    span.in_scope(|| tracing::info!(%method, %path, status = res.status().as_u16(), "handled"));
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&id) {
        res.headers_mut().insert(actix_web::http::header::HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    Ok(res)
}

/// A rustls server config from PEM files (certificate chain, then private key).
pub fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert).and_then(|it| it.collect::<Result<_, _>>()).map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())
}

/// Serves the API until the server is stopped (SIGINT/SIGTERM). `on_bound` is called with
/// the addresses actually bound (port 0 picks a free one) before serving starts.
pub async fn serve(
    state: ApiState,
    listen: std::net::SocketAddr,
    tls: Option<rustls::ServerConfig>,
    workers: usize,
    on_bound: impl FnOnce(&[std::net::SocketAddr], bool),
) -> std::io::Result<()> {
    let data = web::Data::new(state);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(actix_web::middleware::from_fn(|req, next| vessel_http_metrics::record_http(crate::metrics::HTTP_DURATION, req, next)))
            .wrap(actix_web::middleware::from_fn(request_id))
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(1 << 20))
            .configure(routes)
    })
    .workers(workers.max(1));
    let tls_on = tls.is_some();
    let server = match tls {
        Some(cfg) => server.bind_rustls_0_23(listen, cfg)?,
        None => server.bind(listen)?,
    };
    on_bound(&server.addrs(), tls_on);
    server.run().await
}
