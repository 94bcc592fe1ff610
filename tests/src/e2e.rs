//! A world for end-to-end tests: a fresh database with the catalogue, the panel serving on
//! the test network's bridge (so hosts in their namespaces reach it), and hosts that join it
//! with an admin's token and run `provisioner serve` in their own namespace, booting the
//! project's KVM test guest.

use crate::netns::{provisioner_binary, HostNs, Network};
use panel::config::Settings;
use panel::startup::Application;
use sqlx::PgPool;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Test plans beside the shipped catalogue: a pinned and a shared tiny KVM machine, and a
/// shared one with RAM enough for the Linux test kernel and a disk size no other has.
pub const TEST_PLANS: [(&str, &str); 3] = [
    ("kvm-tiny", "code = \"kvm-tiny\"\nname = \"KVM Tiny (test)\"\n[resources]\nkind = \"kvm\"\nvcpus = 1\nmemory_burst_mib = 128\ndisk_gib = 1\ncpu_ratio = 1.0\ndisk_ratio = 1.0\n[prices.EUR]\nmonthly = 100\n"),
    ("kvm-tiny-shared", "code = \"kvm-tiny-shared\"\nname = \"KVM Tiny shared (test)\"\n[resources]\nkind = \"kvm\"\nvcpus = 1\nmemory_burst_mib = 64\ndisk_gib = 1\ncpu_ratio = 4.0\ndisk_ratio = 1.0\n[prices.EUR]\nmonthly = 50\n"),
    ("kvm-linux-shared", "code = \"kvm-linux-shared\"\nname = \"KVM Linux shared (test)\"\n[resources]\nkind = \"kvm\"\nvcpus = 1\nmemory_burst_mib = 128\ndisk_gib = 3\ncpu_ratio = 4.0\ndisk_ratio = 1.0\nnet_rate_mbit = 100\n[prices.EUR]\nmonthly = 80\n"),
];

/// Where every test host serves its metrics, on its namespace's address.
pub const HOST_METRICS_PORT: u16 = 9465;

pub struct World {
    pub net: Network,
    pub pool: PgPool,
    pub db_url: String,
    pub panel_url: String,
    /// The panel's Prometheus endpoint (`[metrics] listen` on loopback).
    pub panel_metrics_url: String,
    pub admin: Uuid,
    pub guest_elf: PathBuf,
    /// The Linux test kernel's `vmlinux`, once [`World::use_test_kernel`] built it: hosts
    /// added after that offer the `linux-test-kernel` template.
    pub test_kernel: Option<PathBuf>,
    pub scratch: tempfile::TempDir,
}

pub struct Host {
    pub ns: HostNs,
    pub id: Uuid,
    pub name: String,
    pub api_url: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    /// Its Prometheus endpoint (`http://<namespace address>:9465/metrics`).
    pub metrics_url: String,
    /// With TLS (the default): the self-signed certificate the API serves
    /// (`<dir>/state/tls/cert.pem`, its key beside it), and its SHA-256 the panel pinned at join.
    pub tls: Option<(PathBuf, String)>,
}

/// Polls `f` until it returns `Some`, failing after `secs`.
pub async fn wait_for<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {secs} s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Hosts are dropped before the world (declared after it), which kills their provisioners; the
/// disks of containers still alive at that point stay mounted on loop devices under the
/// scratch directory, and `TempDir` cannot remove a mounted tree. Release them first.
impl Drop for World {
    fn drop(&mut self) {
        crate::netns::release_storage(self.scratch.path());
    }
}

impl World {
    /// `orchestrate`: run the job runners and reconciler inside this panel (else the test runs
    /// `panel worker` processes of its own).
    pub async fn new(orchestrate: bool) -> World {
        Self::new_with(orchestrate, |_| {}).await
    }

    /// [`World::new`], with the panel's settings changed by `tune` first (benches compare
    /// settings this way).
    pub async fn new_with(orchestrate: bool, tune: impl FnOnce(&mut Settings)) -> World {
        assert!(Path::new("/dev/kvm").exists(), "FAILED LOUDLY: /dev/kvm is missing; the end-to-end tests boot the KVM test guest");
        let scratch = tempfile::Builder::new().prefix("vessel-e2e-").tempdir_in("/tmp").unwrap();
        let guest = provisioner::vm::guest::build(&scratch.path().join("guest")).expect("the test guest builds with as/ld");
        let net = Network::new().expect("the test network (root and iproute2)");
        let db_url = vessel_devdb::fresh_database(&panel::db::MIGRATOR).await.unwrap();
        let pool = PgPool::connect(&db_url).await.unwrap();
        let mut settings = Self::settings(&db_url);
        settings.http.host = net.gateway().to_string();
        settings.orchestration.enabled = orchestrate;
        tune(&mut settings);
        let app = Application::build(settings).await.unwrap();
        let panel_url = format!("http://{}:{}", net.gateway(), app.port());
        let panel_metrics_url = format!("http://127.0.0.1:{}/metrics", app.metrics_port().expect("the test settings serve metrics"));
        tokio::spawn(app.run_until_stopped());

        let mut plans = panel::plans::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans")).unwrap();
        for (code, text) in TEST_PLANS {
            let f = PathBuf::from(format!("{code}.toml"));
            plans.push((f.clone(), panel::plans::parse_plan(&f, text).unwrap()));
        }
        panel::plans::sync::sync(&pool, &plans).await.unwrap();
        sqlx::query(
            "INSERT INTO os_templates (name, display_name, for_containers, for_kvm) VALUES
               ('vessel-test-guest', 'Test guest', false, true), ('busybox', 'Busybox', true, false)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let admin = sqlx::query_scalar("INSERT INTO accounts (role, email) VALUES ('admin', 'root@example.com') RETURNING id")
            .fetch_one(&pool)
            .await
            .unwrap();
        let by = || panel::admin::By { admin, addr: None };
        let form = panel::admin::PoolForm {
            name: "test-v4".into(),
            network: "192.0.2.0/26".into(),
            gateway: "192.0.2.1".into(),
            host_id: String::new(),
            nat: None,
            dns: String::new(),
        };
        let pool_id = panel::admin::create_pool(&pool, by(), &form).await.unwrap();
        panel::admin::generate_addresses(&pool, by(), pool_id, 100).await.unwrap();
        World { net, pool, db_url, panel_url, panel_metrics_url, admin, guest_elf: guest.elf, test_kernel: None, scratch }
    }

    /// Builds (or finds cached) the Linux test kernel and offers it as the `linux-test-kernel`
    /// KVM template on hosts added from now on.
    pub async fn use_test_kernel(&mut self) {
        let script = Path::new(provisioner::vm::test_kernel::SCRIPT);
        let kernel = tokio::task::block_in_place(|| provisioner::vm::test_kernel::build(script)).expect("scripts/build-test-kernel");
        sqlx::query("INSERT INTO os_templates (name, display_name, for_containers, for_kvm) VALUES ($1, $2, false, true)")
            .bind(provisioner::vm::test_kernel::TEMPLATE)
            .bind(provisioner::vm::test_kernel::DISPLAY_NAME)
            .execute(&self.pool)
            .await
            .unwrap();
        self.test_kernel = Some(kernel);
    }

    /// The settings the tests' panels and workers run with: fast reconciling, short timeouts.
    pub fn settings(db_url: &str) -> Settings {
        let mut s = Settings::load(None).unwrap();
        s.database.url = db_url.to_string().into();
        s.http.port = 0;
        s.orchestration.reconcile_interval_secs = 1;
        s.orchestration.unreachable_after_secs = 3;
        s.orchestration.host_timeout_secs = 5;
        s.metrics.listen = "127.0.0.1:0".into();
        s
    }

    /// A host that joined with an admin's token (not serving yet: see [`World::serve`]), over
    /// TLS as in production: `provisioner join` makes its self-signed certificate and the panel
    /// pins it.
    pub async fn add_host(&mut self, name: &str, cpus: u32, memory_mib: u64) -> Host {
        self.add_host_with(name, cpus, memory_mib, true).await
    }

    /// [`World::add_host`]; `tls = false` sets `plain_http = true` in the host's config (a test
    /// that needs plain HTTP says so by calling this).
    pub async fn add_host_with(&mut self, name: &str, cpus: u32, memory_mib: u64, tls: bool) -> Host {
        let ns = self.net.add_host().unwrap();
        let api_url = format!("{}://{}:7443", if tls { "https" } else { "http" }, ns.addr);
        let (id, token) = panel::hosts::register(&self.pool, Some(self.admin), name, &api_url).await.unwrap();
        let dir = self.scratch.path().join(name);
        let plain = if tls { "" } else { "plain_http = true\n" };
        // Metrics on the namespace's own address (the test scrapes them from outside it).
        let metrics = format!("metrics_listen = \"{}:{HOST_METRICS_PORT}\"\n", ns.addr);
        // The default reservation (1 GiB) comes on top of what the test asks for.
        let capacity = format!("{plain}{metrics}[capacity]\ncpus = {cpus}\nmemory_mib = {}\ndisk_gib = 110\n", memory_mib + 1024);
        let config = ns.lay_out_host(&dir, 7443, &self.guest_elf, self.test_kernel.as_deref(), &capacity).unwrap_or_else(|e| panic!("{e}"));
        let metrics_url = format!("http://{}:{HOST_METRICS_PORT}/metrics", ns.addr);
        let mut host = Host { ns, id: id.0, name: name.to_string(), api_url, dir, config, metrics_url, tls: None };
        let join = host
            .ns
            .command(provisioner_binary().unwrap())
            .args(["join", "--config"])
            .arg(&host.config)
            .args(["--panel-url", &self.panel_url, "--token", &token, "--name", name, "--api-url", &host.api_url])
            // The test panel serves plain HTTP on the test bridge (no certificate of its own).
            .arg("--allow-http-panel")
            .output()
            .unwrap();
        assert!(join.status.success(), "join: {}", String::from_utf8_lossy(&join.stderr));
        if tls {
            let cert = host.dir.join("state/tls/cert.pem");
            let pin = provisioner::join::cert_sha256(&cert).unwrap_or_else(|e| panic!("join made no certificate: {e}"));
            host.tls = Some((cert, pin));
        }
        host
    }

    /// Starts (or restarts) `provisioner serve` in the host's namespace; waits until it listens.
    pub fn serve(&self, host: &mut Host) {
        let (config, log) = (host.config.clone(), host.dir.join("daemon.log"));
        host.ns.serve(&provisioner_binary().unwrap(), &config, &log).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The host's own view, through its API with its own secret.
    pub fn host_client(&self, host: &Host) -> panel::hosts::HostClient {
        let b64 = std::fs::read_to_string(host.dir.join("state").join("host.secret")).unwrap();
        let secret = vessel_core::signing::HostSecret::from_base64(b64.trim()).unwrap();
        let http = match &host.tls {
            Some((_, pin)) => panel::hosts::pinned_http_client(Duration::from_secs(5), pin).unwrap(),
            None => panel::hosts::http_client(Duration::from_secs(5), None),
        };
        panel::hosts::HostClient::new(&host.api_url, secret, http)
    }

    /// A verified customer with `credit` cents of account credit.
    pub async fn customer(&self, email: &str, credit: i64) -> Uuid {
        let id = sqlx::query_scalar("INSERT INTO accounts (role, email, email_verified_at) VALUES ('customer', $1, now()) RETURNING id")
            .bind(email)
            .fetch_one(&self.pool)
            .await
            .unwrap();
        panel::billing::payments::record_manual_payment(
            &self.pool,
            &panel::clock::SystemClock,
            self.admin,
            id,
            panel::money::Money::new(credit, panel::money::Currency::parse("EUR").unwrap()),
            &format!("credit-{id}"),
            None,
            None,
        )
        .await
        .unwrap();
        id
    }

    /// Orders `plan` and pays it from credit; returns the instance the payment requested.
    /// KVM plans boot the test guest, container plans the busybox template.
    pub async fn order_paid(&self, customer: Uuid, plan: &str, hostname: &str) -> Uuid {
        let template = if plan.starts_with("kvm") { "vessel-test-guest" } else { "busybox" };
        self.order_paid_with(customer, plan, template, hostname).await
    }

    /// [`World::order_paid`] with the OS template named.
    pub async fn order_paid_with(&self, customer: Uuid, plan: &str, os_template: &str, hostname: &str) -> Uuid {
        let clock = panel::clock::SystemClock;
        let req = panel::orders::OrderRequest {
            plan_code: plan.into(),
            cycle: panel::plans::BillingCycle::Monthly,
            os_template: os_template.into(),
            hostname: hostname.into(),
            coupon: None,
        };
        let placed = panel::orders::place_order(&self.pool, &clock, customer, req).await.unwrap();
        panel::billing::payments::pay_invoice_with_credit(&self.pool, &clock, customer, placed.invoice_id).await.unwrap();
        sqlx::query_scalar("SELECT id FROM instances WHERE subscription_id = $1")
            .bind(placed.subscription_id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Asks for `desired` the way the panel's users do, through the domain functions (so
    /// through the VPS transitions, the lock order and the typed jobs): `running`/`stopped` as
    /// its customer's start/stop, `suspended`/`terminated` as dunning does for an overdue
    /// invoice. Panics when the transition refuses.
    pub async fn want(&self, instance: Uuid, desired: &str) {
        let clock = panel::clock::SystemClock;
        let (customer, sub, payer): (Uuid, Uuid, Uuid) = sqlx::query_as(
            "SELECT i.account_id, s.id, s.account_id FROM instances i JOIN subscriptions s ON s.id = i.subscription_id WHERE i.id = $1",
        )
        .bind(instance)
        .fetch_one(&self.pool)
        .await
        .unwrap();
        match desired {
            "running" | "stopped" => {
                let action = if desired == "running" { vessel_core::Action::Start } else { vessel_core::Action::Stop };
                panel::instances::request_action(&self.pool, &clock, customer.into(), instance.into(), action).await.unwrap();
            }
            "suspended" | "terminated" => {
                let invoice: Uuid =
                    sqlx::query_scalar("SELECT id FROM invoices WHERE subscription_id = $1 ORDER BY issued_at DESC NULLS LAST LIMIT 1")
                        .bind(sub)
                        .fetch_one(&self.pool)
                        .await
                        .unwrap();
                let mut tx = self.pool.begin().await.unwrap();
                let now = panel::clock::Clock::now(&clock);
                if desired == "suspended" {
                    panel::subscriptions::suspend(&mut tx, sub.into(), payer.into(), invoice.into(), now).await.unwrap();
                } else {
                    panel::subscriptions::terminate(&mut tx, sub.into(), payer.into(), invoice.into(), now).await.unwrap();
                }
                tx.commit().await.unwrap();
            }
            other => panic!("no user asks for {other:?}"),
        }
    }

    pub async fn observed(&self, instance: Uuid) -> String {
        sqlx::query_scalar("SELECT observed_state::text FROM instances WHERE id = $1").bind(instance).fetch_one(&self.pool).await.unwrap()
    }
}
