//! From paid order to running VPS, across a network: a real panel (job runners and
//! reconciler on) and a real provisioner that joined it with an admin's token, in a network
//! namespace of its own. Order → pay → the KVM test guest runs on the host the rule picked,
//! with its address; a stop acts on the host; the host's link is cut (its instance becomes
//! unknown, nothing is re-created elsewhere) and restored (everything converges, nothing is
//! doubled); termination destroys it and frees its address.

use panel::clock::SystemClock;
use panel::config::Settings;
use panel::orders::{place_order, OrderRequest};
use panel::plans::BillingCycle;
use panel::startup::Application;
use sqlx::PgPool;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use std::time::{Duration, Instant};
use vessel_tests::netns::{provisioner_binary, Network};

const TINY_KVM: &str = r#"
code = "kvm-tiny"
name = "KVM Tiny (test)"
[resources]
kind = "kvm"
vcpus = 1
memory_burst_mib = 128
disk_gib = 1
cpu_ratio = 1.0
disk_ratio = 1.0
[prices.EUR]
monthly = 100
"#;

async fn wait_for<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn observed(pool: &PgPool) -> String {
    sqlx::query_scalar("SELECT observed_state::text FROM instances").fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paid_order_runs_on_a_host_across_the_network() {
    if !Path::new("/dev/kvm").exists() {
        panic!("FAILED LOUDLY: /dev/kvm is missing; this end-to-end test boots the KVM test guest");
    }
    let scratch = tempfile::Builder::new().prefix("vessel-e2e-").tempdir_in("/tmp").unwrap();
    let guest = provisioner::vm::guest::build(&scratch.path().join("guest")).expect("the test guest builds with as/ld");
    let mut net = Network::new().expect("the test network (root and iproute2)");
    let mut host = net.add_host().unwrap();

    // The panel listens on the bridge, where the host's namespace can reach it.
    let db = vessel_devdb::fresh_database(&panel::db::MIGRATOR).await.unwrap();
    let pool = PgPool::connect(&db).await.unwrap();
    let mut settings = Settings::load(None).unwrap();
    settings.database.url = db.clone().into();
    settings.http.host = net.gateway().to_string();
    settings.http.port = 0;
    settings.orchestration.reconcile_interval_secs = 1;
    settings.orchestration.unreachable_after_secs = 3;
    settings.orchestration.host_timeout_secs = 3;
    let app = Application::build(settings).await.unwrap();
    let panel_url = format!("http://{}:{}", net.gateway(), app.port());
    tokio::spawn(app.run_until_stopped());

    // Catalogue, template, address pool, a customer with credit.
    let mut plans = panel::plans::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans")).unwrap();
    let tiny = Path::new("kvm-tiny.toml").to_path_buf();
    plans.push((tiny.clone(), panel::plans::parse_plan(&tiny, TINY_KVM).unwrap()));
    panel::plans::sync::sync(&pool, &plans).await.unwrap();
    sqlx::query("INSERT INTO os_templates (name, display_name, for_containers) VALUES ('vessel-test-guest', 'Test guest', false)")
        .execute(&pool)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    panel::db::hosts::create_pool(&mut tx, "test-v4", "192.0.2.0/28", "192.0.2.1", None, 100).await.unwrap();
    tx.commit().await.unwrap();
    let customer: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO accounts (role, email, email_verified_at) VALUES ('customer', 'e2e@example.com', now()) RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let admin: uuid::Uuid =
        sqlx::query_scalar("INSERT INTO accounts (role, email) VALUES ('admin', 'root@example.com') RETURNING id").fetch_one(&pool).await.unwrap();

    // The host joins with an admin's token, then serves.
    let api_url = format!("http://{}:7443", host.addr);
    let (host_id, token) = panel::hosts::register(&pool, Some(admin), "h1", &api_url).await.unwrap();
    let dir = scratch.path().join("h1");
    let images = dir.join("images").join("vessel-test-guest");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("image.json"), serde_json::json!({"kernel": guest.elf, "cmdline": "heartbeat"}).to_string()).unwrap();
    let cfg = dir.join("provisioner.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"{}:7443\"\nstate_dir = {:?}\nimages_dir = {:?}\ncgroup_parent = \"vessel-e2e-{}\"\n[capacity]\ncpus = 2\nmemory_mib = 2048\ndisk_gib = 110\n",
            host.addr,
            dir.join("state"),
            dir.join("images"),
            host.name
        ),
    )
    .unwrap();
    let bin = provisioner_binary().unwrap();
    let join = host
        .command(&bin)
        .args(["join", "--config"])
        .arg(&cfg)
        .args(["--panel-url", &panel_url, "--token", &token, "--name", "h1", "--api-url", &api_url])
        .output()
        .unwrap();
    assert!(join.status.success(), "join: {}", String::from_utf8_lossy(&join.stderr));
    // A used token cannot join a second host.
    let again = host
        .command(&bin)
        .args(["join", "--force", "--config"])
        .arg(&cfg)
        .args(["--panel-url", &panel_url, "--token", &token, "--name", "h2", "--api-url", &api_url])
        .output()
        .unwrap();
    assert!(!again.status.success(), "a join token works once");
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let mut cmd = host.command(&bin);
    cmd.args(["serve", "--config"]).arg(&cfg).stdout(Stdio::piped()).stderr(log);
    let child = host.spawn(cmd).unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    loop {
        let l = rx.recv_timeout(Duration::from_secs(60)).expect("the provisioner starts");
        if l.starts_with("listening on ") {
            break;
        }
    }

    // Order and pay: the VPS is requested, placed by the rule, created and started.
    let clock = SystemClock;
    let placed = place_order(
        &pool,
        &clock,
        customer,
        OrderRequest { plan_code: "kvm-tiny".into(), cycle: BillingCycle::Monthly, os_template: "vessel-test-guest".into(), hostname: "guest1.example.com".into(), coupon: None },
    )
    .await
    .unwrap();
    panel::billing::payments::record_manual_payment(&pool, &clock, admin, customer, panel::money::Money::new(100, panel::money::Currency::parse("EUR").unwrap()), "e2e", Some(placed.invoice_id), None)
        .await
        .unwrap();
    let pool2 = pool.clone();
    wait_for("the VPS to run", 90, async || (observed(&pool2).await == "running").then_some(())).await;
    let (inst_id, on_host, address): (uuid::Uuid, uuid::Uuid, String) = sqlx::query_as(
        "SELECT i.id, i.host_id, host(a.address) FROM instances i JOIN ip_addresses a ON a.instance_id = i.id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(on_host, host_id);
    assert_eq!(sqlx::query_scalar::<_, String>("SELECT status::text FROM orders").fetch_one(&pool).await.unwrap(), "active");

    // Checked on the host itself, through its own API with its secret.
    let secret_b64 = std::fs::read_to_string(dir.join("state").join("host.secret")).unwrap();
    let secret = vessel_core::signing::HostSecret::from_base64(secret_b64.trim()).unwrap();
    let hc = panel::hosts::HostClient::new(&api_url, secret, Duration::from_secs(5), None);
    let listed = hc.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id.0, inst_id);
    assert_eq!(listed[0].state, vessel_core::InstanceState::Running);
    assert_eq!(listed[0].addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(), vec![address.clone()]);
    // A wrong secret is refused by the host.
    let wrong = panel::hosts::HostClient::new(&api_url, vessel_core::signing::HostSecret::from_bytes(vec![7; 32]).unwrap(), Duration::from_secs(5), None);
    assert!(matches!(wrong.list().await, Err(panel::hosts::HostError::Refused(p)) if p.status == 401));

    // The customer stops it: the host follows.
    panel::instances::request_action(&pool, &clock, customer, inst_id, vessel_core::Action::Stop).await.unwrap();
    wait_for("the VPS to stop", 60, async || (observed(&pool2).await == "stopped").then_some(())).await;

    // The host is cut off: unreachable, its instance unknown; a start waits.
    host.cut().unwrap();
    wait_for("the host to be marked unreachable", 30, async || (observed(&pool2).await == "unknown").then_some(())).await;
    let reach: String = sqlx::query_scalar("SELECT reachability::text FROM hosts").fetch_one(&pool).await.unwrap();
    assert_eq!(reach, "unreachable");
    panel::instances::request_action(&pool, &clock, customer, inst_id, vessel_core::Action::Start).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(observed(&pool).await, "unknown", "nothing happens while the host is away");
    // The link returns: everything converges, nothing is doubled.
    host.restore().unwrap();
    sqlx::query("UPDATE jobs SET run_after = now() WHERE status = 'queued'").execute(&pool).await.unwrap();
    wait_for("the VPS to run again", 90, async || (observed(&pool2).await == "running").then_some(())).await;
    assert_eq!(hc.list().await.unwrap().len(), 1, "one instance on the host");
    assert_eq!(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM instances").fetch_one(&pool).await.unwrap(), 1);

    // Terminated: destroyed on the host, its address free again.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("UPDATE instances SET desired_state = 'terminated', terminated_at = now()").execute(&mut *tx).await.unwrap();
    panel::db::jobs::enqueue(&mut tx, "instance.converge", serde_json::json!({ "instance_id": inst_id }), Some(inst_id), None).await.unwrap();
    tx.commit().await.unwrap();
    wait_for("the VPS to be destroyed", 60, async || (observed(&pool2).await == "destroyed").then_some(())).await;
    assert!(hc.list().await.unwrap().is_empty());
    assert_eq!(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM ip_addresses WHERE instance_id IS NOT NULL").fetch_one(&pool).await.unwrap(), 0);
    // The usage flow brought samples back.
    assert!(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM usage_samples").fetch_one(&pool).await.unwrap() > 0);
}
