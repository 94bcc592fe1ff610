//! Wires the HTTP server from settings: `Application::build(settings)` then
//! `run_until_stopped()`. SIGINT and SIGTERM stop it gracefully (in-flight requests finish).

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::db;
use crate::email::Mailer;
use crate::web::session::SessionKeys;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use secrecy::ExposeSecret;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tracing_actix_web::TracingLogger;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("mail settings: {0}")]
    Mail(#[from] crate::email::EmailError),
    #[error("configuration [billing.seller]: {0}")]
    Seller(String),
    #[error("configuration [metrics] listen = {0:?}: not an IP:PORT")]
    MetricsListen(String),
}

pub struct Application {
    port: u16,
    server: Server,
    /// The metrics listener, when `[metrics] listen` is set.
    metrics: Option<(u16, Server)>,
    /// The job runners and reconciler, stopped after the HTTP server.
    orchestration: Option<(tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// As [`Application::build`], with the clock billing reads (tests pass a `FixedClock`).
    pub async fn build_with_clock(mut settings: Settings, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        let pool = db::pool(settings.database_url(), settings.database.max_connections)?;
        if settings.database.migrate_on_start {
            db::migrate(&pool).await?;
        }
        // The panel starts without its database (healthz says so); the terms are then written
        // by the next start or `panel billing` run that reaches it.
        if let Err(e) = crate::db::invoices::set_payment_terms_days(&pool, settings.billing.payment_terms_days).await {
            tracing::warn!(error = %e, "could not record the payment terms in the database");
        }
        // The seller was checked when the configuration loaded; a country code that is not on
        // the ISO list is refused here (the database has the list), and the panel does not start.
        if let Err(e) = crate::db::invoices::set_seller(&pool, &settings.billing.seller).await {
            if e.as_database_error().is_some_and(|d| d.is_foreign_key_violation()) {
                return Err(StartupError::Seller(format!("country {:?} is not an ISO 3166-1 code", settings.billing.seller.country)));
            }
            tracing::warn!(error = %e, "could not record the seller ([billing.seller]) in the database");
        }
        if !settings.billing.seller.is_set() {
            tracing::warn!("[billing.seller] is not configured: invoices name no seller (panel serve refuses this)");
        }
        let addr = format!("{}:{}", settings.http.host, settings.http.port);
        let listener = TcpListener::bind(&addr).map_err(|source| StartupError::Listen { addr: addr.clone(), source })?;
        let port = listener.local_addr().map_err(|source| StartupError::Listen { addr: addr.clone(), source })?.port();
        if settings.http.base_url.is_empty() {
            // Links in mails point at where this process really listens (tests: a free port).
            settings.http.base_url = format!("http://{}:{port}", settings.http.host);
        }
        if settings.smtp.worker {
            let mut mailer = Mailer::new(&settings.smtp)?;
            mailer.base_url = settings.http.base_url.clone();
            crate::email::spawn_worker(pool.clone(), mailer, Duration::from_millis(settings.smtp.poll_ms.max(50)));
        }
        if settings.webhooks.worker {
            crate::webhooks::spawn_worker(pool.clone(), settings.webhooks.clone());
        }
        crate::auth::spawn_housekeeping(pool.clone(), Duration::from_secs(15 * 60));
        if settings.billing.pdf_archive_interval_secs > 0 {
            let (pool, chromium, every) =
                (pool.clone(), settings.billing.pdf_chromium.clone(), Duration::from_secs(settings.billing.pdf_archive_interval_secs));
            tokio::spawn(async move {
                // Invoices whose render failed: logged, and not tried again until a restart.
                let mut failed = Vec::new();
                loop {
                    match crate::web::customer::archive_pending_pdfs(&pool, &chromium, 50, &mut failed).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(archived = n, "invoice PDFs archived"),
                        Err(e) => tracing::warn!(error = %e, "archiving invoice PDFs failed"),
                    }
                    tokio::time::sleep(every).await;
                }
            });
        }
        let metrics = match settings.metrics.listen.trim() {
            "" => None,
            listen => Some(metrics_server(listen, Some(pool.clone()))?),
        };
        let keys = web::Data::new(SessionKeys::new(
            settings.session.secret.expose_secret(),
            settings.session.cookie_secure,
            settings.session.lifetime_hours,
        ));
        let orchestration = settings.orchestration.enabled.then(|| {
            let (tx, rx) = tokio::sync::watch::channel(false);
            let ctx = crate::orchestrator::Ctx::new(pool.clone(), clock.clone(), settings.orchestration.clone());
            (tx, tokio::spawn(crate::orchestrator::run(ctx, rx)))
        });
        let pool = web::Data::new(pool);
        let clock = web::Data::new(clock);
        let limiter = web::Data::new(crate::api::ApiLimiter::new(settings.api.rate_limit_per_minute, settings.api.rate_limit_burst));
        let shared_settings = web::Data::new(settings.clone());
        // Consoles reach hosts through the same pinned clients as orchestration.
        let host_http = web::Data::new(settings.orchestration.host_http());
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(crate::web::session_cookies))
                .wrap(TracingLogger::default())
                .wrap(from_fn(|req, next| vessel_http_metrics::record_http(crate::metrics::HTTP_DURATION, req, next)))
                // Outermost: the request's id is set before anything logs.
                .wrap(from_fn(crate::telemetry::request_id))
                .app_data(pool.clone())
                .app_data(keys.clone())
                .app_data(clock.clone())
                .app_data(shared_settings.clone())
                .app_data(limiter.clone())
                .app_data(host_http.clone())
                .app_data(web::FormConfig::default().limit(64 * 1024))
                // A malformed id in a path is "not found"; a malformed query is a bad form:
                // pages, never actix's bare error bodies.
                .app_data(web::PathConfig::default().error_handler(|_, _| crate::web::error::WebError::NotFound.into()))
                .app_data(web::QueryConfig::default().error_handler(|e, _| crate::web::error::WebError::BadForm(e.to_string()).into()))
                .configure(crate::routes::configure)
                .configure(crate::api::configure)
                .configure(crate::web::configure)
                .default_service(web::to(crate::web::not_found))
        })
        .listen(listener)
        .map_err(|source| StartupError::Listen { addr, source })?
        .shutdown_timeout(10)
        .run();
        Ok(Self { port, server, metrics, orchestration })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The metrics listener's port, when `[metrics] listen` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(p, _)| *p)
    }

    /// Serves until SIGINT/SIGTERM, then drains in-flight requests and returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics = self.metrics.map(|(_, server)| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        let served = self.server.await;
        if let Some((handle, task)) = metrics {
            handle.stop(true).await;
            let _ = task.await;
        }
        if let Some((stop, task)) = self.orchestration {
            let _ = stop.send(true);
            let _ = task.await;
        }
        served
    }
}

/// `GET /metrics` on its own listener (one worker: a scrape every few seconds). With the
/// database (`panel serve`), what it says at scrape time is added to this process's own
/// measurements; without (`panel worker`), only the latter: the job latency and failures the
/// worker measured, and the database's gauges are not exported twice.
pub fn metrics_server(listen: &str, pool: Option<sqlx::PgPool>) -> Result<(u16, Server), StartupError> {
    let addr: std::net::SocketAddr = listen.parse().map_err(|_| StartupError::MetricsListen(listen.to_string()))?;
    let listener = TcpListener::bind(addr).map_err(|source| StartupError::Listen { addr: listen.to_string(), source })?;
    let port = listener.local_addr().map_err(|source| StartupError::Listen { addr: listen.to_string(), source })?.port();
    crate::metrics::handle();
    crate::metrics::register_job_kinds();
    let pool = web::Data::new(pool);
    let server = HttpServer::new(move || {
        App::new().app_data(pool.clone()).route(
            "/metrics",
            web::get().to(|pool: web::Data<Option<sqlx::PgPool>>| async move {
                let text = match pool.as_ref() {
                    Some(pool) => crate::metrics::render(pool).await,
                    None => Ok(crate::metrics::handle().render()),
                };
                match text {
                    Ok(text) => actix_web::HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text),
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics: the database did not answer");
                        actix_web::HttpResponse::ServiceUnavailable().body("the database did not answer")
                    }
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .map_err(|source| StartupError::Listen { addr: listen.to_string(), source })?
    .disable_signals()
    .run();
    tracing::info!(addr = %addr, port, "serving metrics");
    Ok((port, server))
}
