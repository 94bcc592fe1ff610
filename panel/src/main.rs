//! `panel`: serve the web panel, migrate the database, sync the plan catalogue, manage admins.

use anyhow::Context;
use clap::{Parser, Subcommand};
use panel::accounts::{self, Email, Password};
use panel::clock::{Clock, FixedClock, SystemClock};
use panel::config::Settings;
use panel::{billing, db, plans, startup::Application, telemetry};
use std::io::Read;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "panel", about = "Vessel's web panel")]
struct Cli {
    /// A TOML settings file (else VESSEL_CONFIG; environment variables VESSEL__* override it).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the panel until SIGINT/SIGTERM.
    Serve,
    /// Apply pending database migrations.
    Migrate,
    /// The plan catalogue kept as TOML files.
    Plans {
        #[command(subcommand)]
        cmd: PlansCmd,
    },
    /// Admin accounts.
    Admin {
        #[command(subcommand)]
        cmd: AdminCmd,
    },
    /// Run only the job runners and the reconciler (no HTTP), e.g. on a second machine.
    Worker,
    /// Hosts that run the provisioner.
    Hosts {
        #[command(subcommand)]
        cmd: HostsCmd,
    },
    /// The billing runs (a scheduler such as cron or a systemd timer runs them).
    Billing {
        #[command(subcommand)]
        cmd: BillingCmd,
    },
}

#[derive(Subcommand)]
enum HostsCmd {
    /// Expect a new host: prints the one-time token its `vessel-provisioner join` (`provisioner join` from source) uses.
    Add {
        #[arg(long)]
        name: String,
        /// Where its API will listen (the join may correct it).
        #[arg(long)]
        api_url: String,
    },
}

#[derive(Subcommand)]
enum BillingCmd {
    /// Issue due renewal invoices and move subscriptions into their next period.
    Run {
        /// Run as of this time (RFC 3339) instead of now: replays and tests.
        #[arg(long)]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Send reminders, suspend and terminate for overdue invoices.
    Dunning {
        #[arg(long)]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    },
}

#[derive(Subcommand)]
enum PlansCmd {
    /// Validate the plan files without writing anything.
    Check {
        #[arg(default_value = "plans")]
        dir: PathBuf,
    },
    /// Validate and upsert the plan files (a plan in use gets a new version).
    Sync {
        #[arg(default_value = "plans")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Create an admin, or set the password of an existing one.
    SetPassword {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (else one is generated and printed).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Make an API key for an admin or reseller account and print it (shown once).
    ApiKey {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "cli")]
        name: String,
        /// Comma-separated: read, write.
        #[arg(long, default_value = "read,write")]
        scopes: String,
    },
}

fn load_plans(dir: &std::path::Path) -> anyhow::Result<Vec<(PathBuf, plans::PlanDefinition)>> {
    plans::load_dir(dir).map_err(|errors| {
        for e in &errors {
            eprintln!("error: {e}");
        }
        anyhow::anyhow!("{} problem(s) in {}; nothing was written", errors.len(), dir.display())
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(settings.log.format, &settings.log.filter);
    match cli.cmd {
        Cmd::Serve => {
            // The panel issues invoices: without a seller they would be no invoices at all.
            settings.billing.seller.required()?;
            let app = Application::build(settings.clone()).await?;
            let url = format!("http://{}:{}", settings.http.host, app.port());
            tracing::info!(%url, "panel listening");
            println!("Vessel panel listening on {url}");
            app.run_until_stopped().await?;
            tracing::info!("panel stopped");
        }
        Cmd::Migrate => {
            let pool = db::pool(settings.database_url(), 2)?;
            db::migrate(&pool).await.context("migrating")?;
            println!("migrations applied");
        }
        Cmd::Plans { cmd: PlansCmd::Check { dir } } => {
            let defs = load_plans(&dir)?;
            println!("{} plan file(s) in {} are valid", defs.len(), dir.display());
        }
        Cmd::Plans { cmd: PlansCmd::Sync { dir } } => {
            let defs = load_plans(&dir)?;
            let pool = db::pool(settings.database_url(), 2)?;
            let report = plans::sync::sync(&pool, &defs).await?;
            print!("{report}");
        }
        Cmd::Worker => {
            let pool = db::pool(settings.database_url(), settings.database.max_connections)?;
            db::migrate(&pool).await?;
            // Webhook delivery scales out with the workers (it shares its queue safely).
            if settings.webhooks.worker {
                panel::webhooks::spawn_worker(pool.clone(), settings.webhooks.clone());
            }
            // The jobs this process runs are measured here: their latency and failures are on
            // its own metrics listener (`[metrics] listen`), beside `panel serve`'s.
            let metrics = match settings.metrics.listen.trim() {
                "" => None,
                listen => {
                    let (port, server) = panel::startup::metrics_server(listen, None)?;
                    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
                    println!("worker metrics on http://{host}:{port}/metrics");
                    Some((server.handle(), tokio::spawn(server)))
                }
            };
            let (stop, rx) = tokio::sync::watch::channel(false);
            let ctx = panel::orchestrator::Ctx::new(pool, std::sync::Arc::new(SystemClock), settings.orchestration.clone());
            let task = tokio::spawn(panel::orchestrator::run(ctx, rx));
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("worker stopping");
            let _ = stop.send(true);
            task.await?;
            if let Some((handle, server)) = metrics {
                handle.stop(true).await;
                let _ = server.await;
            }
        }
        Cmd::Hosts { cmd: HostsCmd::Add { name, api_url } } => {
            let pool = db::pool(settings.database_url(), 2)?;
            let ttl = settings.orchestration.join_token_ttl();
            let (id, token) = panel::hosts::register_for(&pool, None, &name, &api_url, ttl).await?;
            println!("host {name} ({id}) is expected; within {} hours, on it run:", ttl.num_hours());
            // The panel cannot know how the host was installed: the package's binary is
            // `vessel-provisioner` (configured in /etc/vessel), a source build's is `provisioner`.
            let args = format!("--panel-url {} --token {token} --name {name} --api-url {api_url}", settings.http.base_url);
            println!("  vessel-provisioner join --config /etc/vessel/provisioner.toml {args}");
            println!("(from the vessel-provisioner package; from a source build: provisioner join --config provisioner.toml {args})");
        }
        Cmd::Billing { cmd } => {
            let pool = db::pool(settings.database_url(), 4)?;
            db::invoices::set_payment_terms_days(&pool, settings.billing.payment_terms_days).await?;
            db::invoices::set_seller(&pool, &settings.billing.seller).await?;
            let clock: Box<dyn Clock> = match &cmd {
                BillingCmd::Run { as_of: Some(t) } | BillingCmd::Dunning { as_of: Some(t) } => Box::new(FixedClock::at(*t)),
                _ => Box::new(SystemClock),
            };
            // Each run is recorded (kind, duration, success) for the panel's metrics endpoint.
            let started = chrono::Utc::now();
            let (kind, outcome): (&str, anyhow::Result<()>) = match cmd {
                BillingCmd::Run { .. } => (
                    "renewal",
                    async {
                        let r = billing::renewal::run(&pool, clock.as_ref(), settings.billing.renewal).await?;
                        println!("issued {} invoices, advanced {} periods", r.invoices_issued, r.periods_advanced);
                        let limit = chrono::Duration::seconds(settings.orchestration.capacity_refund_after_secs);
                        let refunded = panel::capacity::refund_overdue(&pool, clock.now(), limit).await?;
                        println!("refunded {} orders that waited too long for capacity", refunded.len());
                        Ok(())
                    }
                    .await,
                ),
                BillingCmd::Dunning { .. } => (
                    "dunning",
                    async {
                        let r = billing::dunning::run(&pool, clock.as_ref(), settings.billing.dunning).await?;
                        println!(
                            "reminded {} before and {} after the due date, suspended {}, terminated {}",
                            r.reminded_before, r.reminded_after, r.suspended, r.terminated
                        );
                        Ok(())
                    }
                    .await,
                ),
            };
            if let Err(e) = db::metrics::record_billing_run(&pool, kind, started, outcome.is_ok()).await {
                tracing::warn!(error = %e, "could not record the billing run for the metrics");
            }
            outcome?;
        }
        Cmd::Admin { cmd: AdminCmd::SetPassword { email, password_stdin } } => {
            let email = Email::parse(&email)?;
            let (password, generated) = if password_stdin {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                (Password::parse(s.trim_end_matches(['\n', '\r']))?, false)
            } else {
                (Password::generate(), true)
            };
            let pool = db::pool(settings.database_url(), 2)?;
            accounts::upsert_admin(&pool, &email, &password).await?;
            println!("admin {email} is ready");
            if generated {
                println!("password: {}", password.expose());
            }
        }
        Cmd::Admin { cmd: AdminCmd::ApiKey { email, name, scopes } } => {
            let pool = db::pool(settings.database_url(), 2)?;
            let scopes = scopes
                .split(',')
                .map(|s| match s.trim() {
                    "read" => Ok(panel::api_keys::Scope::Read),
                    "write" => Ok(panel::api_keys::Scope::Write),
                    other => Err(anyhow::anyhow!("unknown scope {other:?}: use read, write")),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let key = panel::api_keys::create_for_email(&pool, &Email::parse(&email)?, &name, &scopes).await?;
            println!("{}", key.token);
        }
    }
    Ok(())
}
