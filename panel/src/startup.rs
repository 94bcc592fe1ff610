//! Wires the HTTP server from settings: `Application::build(settings)` then
//! `run_until_stopped()`. SIGINT and SIGTERM stop it gracefully (in-flight requests finish).

use crate::config::Settings;
use crate::clock::{Clock, SystemClock};
use crate::db;
use std::sync::Arc;
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use std::net::TcpListener;
use tracing_actix_web::TracingLogger;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
}

pub struct Application {
    port: u16,
    server: Server,
    /// The job runners and reconciler, stopped after the HTTP server.
    orchestration: Option<(tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// As [`Application::build`], with the clock billing reads (tests move it).
    pub async fn build_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        let pool = db::pool(settings.database_url(), settings.database.max_connections)?;
        if settings.database.migrate_on_start {
            db::migrate(&pool).await?;
        }
        let addr = format!("{}:{}", settings.http.host, settings.http.port);
        let listener = TcpListener::bind(&addr).map_err(|source| StartupError::Listen { addr: addr.clone(), source })?;
        let port = listener.local_addr().map_err(|source| StartupError::Listen { addr: addr.clone(), source })?.port();
        let orchestration = settings.orchestration.enabled.then(|| {
            let (tx, rx) = tokio::sync::watch::channel(false);
            let ctx = crate::orchestrator::Ctx { pool: pool.clone(), clock: clock.clone(), settings: settings.orchestration.clone() };
            (tx, tokio::spawn(crate::orchestrator::run(ctx, rx)))
        });
        let pool = web::Data::new(pool);
        let clock = web::Data::new(clock);
        let shared_settings = web::Data::new(settings.clone());
        let server = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::default())
                .app_data(pool.clone())
                .app_data(clock.clone())
                .app_data(shared_settings.clone())
                .configure(crate::routes::configure)
        })
        .listen(listener)
        .map_err(|source| StartupError::Listen { addr, source })?
        .shutdown_timeout(10)
        .run();
        Ok(Self { port, server, orchestration })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM, then drains in-flight requests and returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        if let Some((stop, task)) = self.orchestration {
            let _ = stop.send(true);
            let _ = task.await;
        }
        served
    }
}
