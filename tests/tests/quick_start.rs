//! The README's quick start, for real: `./vessel up` builds, migrates, syncs the plans, makes
//! the admin whose login it prints, serves /healthz, starts two provisioner hosts in network
//! namespaces that join the panel (as root), so a customer's order runs, and Ctrl-C stops it
//! all, leaving no namespace, link, process, cgroup, mount or loop device behind. The mail
//! catcher it starts (MailDev) shows the verification mail of a sign-up, and a second
//! `./vessel up` on the same state refuses at once, leaving the first one serving.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn vessel_up_serves_and_prints_a_working_admin_login() {
    // The demo hosts are half of the quick start: without root (network namespaces) this test
    // cannot check them, so it fails rather than pass on the other half.
    assert!(
        vessel_tests::netns::is_root(),
        "quick_start needs root for the demo hosts' network namespaces: run it as root (./vessel test does)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let db_url = vessel_devdb::empty_database().await.unwrap();
    let state = tempfile::tempdir().unwrap();

    let mut child = Command::new(root.join("vessel"))
        .arg("up")
        .env("DATABASE_URL", &db_url)
        .env("VESSEL__HTTP__PORT", "0")
        .env("VESSEL_STATE_DIR", state.path())
        // The in-process reconciler sees the hosts within a second.
        .env("VESSEL__ORCHESTRATION__RECONCILE_INTERVAL_SECS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .expect("./vessel runs");
    let pgid = child.id() as i32;
    // Should an assertion fail, Ctrl-C the whole group anyway, so nothing is left running.
    let _stop_on_panic = StopGroup(pgid);

    // Read what it prints on a thread; pick out the URL, login and password.
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut url, mut login, mut password, mut mail) = (None, None, None, None);
    // (name, address, namespace) of each demo host in the banner.
    let mut hosts: Vec<(String, String, String)> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while url.is_none() || login.is_none() || password.is_none() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).expect("./vessel up printed its login and URL in time");
        let line = line.trim();
        if let Some(v) = line.strip_prefix("host:") {
            // "demo-1 at 10.251.X.10 (API http://10.251.X.10:7443, netns vessel-abcd1234-0)"
            let w: Vec<&str> = v.split_whitespace().collect();
            hosts.push((w[0].to_string(), w[2].to_string(), w.last().unwrap().trim_end_matches(')').to_string()));
        } else if let Some(v) = line.strip_prefix("panel:") {
            url = v.split_whitespace().next().map(str::to_string);
        } else if let Some(v) = line.strip_prefix("login:") {
            login = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("password:") {
            password = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("mail:") {
            mail = v.split_whitespace().next().map(str::to_string);
        }
    }
    let (url, login, password) = (url.unwrap(), login.unwrap(), password.unwrap());
    let mail = mail.expect("the banner names the mail catcher's page (the mail line comes before the login)");
    // The host lines come after the password line.
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
        let line = line.trim().to_string();
        if let Some(v) = line.strip_prefix("host:") {
            let w: Vec<&str> = v.split_whitespace().collect();
            hosts.push((w[0].to_string(), w[2].to_string(), w.last().unwrap().trim_end_matches(')').to_string()));
        }
        if line.starts_with("Ctrl-C") {
            break;
        }
    }
    assert_eq!(hosts.len(), 2, "two demo hosts in the banner: {hosts:?}");
    eprintln!("quick start: demo hosts {hosts:?}");

    let health: serde_json::Value = reqwest::get(format!("{url}/healthz")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");

    a_second_up_refuses_and_touches_nothing(&root, &db_url, state.path(), &url).await;
    a_sign_up_mail_reaches_the_catcher(&url, &mail).await;

    // The printed credentials are the admin's, hashed with argon2id.
    let pool = sqlx::PgPool::connect(&db_url).await.unwrap();
    let (role, hash): (String, String) =
        sqlx::query_as("SELECT role::text, password_hash FROM accounts WHERE email = $1").bind(&login).fetch_one(&pool).await.unwrap();
    assert_eq!(role, "admin");
    assert!(panel::accounts::verify_password(&password, &hash));
    // The catalogue was synced.
    let plans: i64 = sqlx::query_scalar("SELECT count(*) FROM plans WHERE orderable").fetch_one(&pool).await.unwrap();
    assert!(plans >= 6, "{plans} plans");
    demo_hosts_run_a_customers_order(&pool, &hosts).await;
    pool.close().await;

    // Ctrl-C (SIGINT to the whole group, as a terminal does) stops everything cleanly.
    // SAFETY: killpg on the process group we created; no memory is involved.
    assert_eq!(unsafe { libc::killpg(pgid, libc::SIGINT) }, 0);
    let status = wait_timeout(&mut child, Duration::from_secs(60)).expect("./vessel up stopped after Ctrl-C");
    assert!(status.success(), "exit status {status}");
    assert!(reqwest::get(format!("{url}/healthz")).await.is_err(), "nothing listens any more");
    nothing_left_behind(state.path(), &hosts);
}

/// While one `./vessel up` runs, another on the same state directory exits at once with an
/// error naming the first, and the first still serves (its database untouched).
async fn a_second_up_refuses_and_touches_nothing(root: &Path, db_url: &str, state: &Path, url: &str) {
    let started = std::time::Instant::now();
    let out = Command::new(root.join("vessel"))
        .arg("up")
        .env("DATABASE_URL", db_url)
        .env("VESSEL__HTTP__PORT", "0")
        .env("VESSEL_STATE_DIR", state)
        .stdin(Stdio::null())
        .output()
        .expect("./vessel runs");
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second ./vessel up must refuse: {err}");
    assert!(err.contains("already running"), "it says why: {err}");
    assert!(took < Duration::from_secs(10), "it refuses at once, before building: {took:?}");
    let first_pid = std::fs::read_to_string(state.join("up.pid")).expect("the first up's pid file stays");
    assert!(err.contains(first_pid.trim()), "it names the running one: {err}");
    // The first one is untouched: health (which checks the database) still answers ok.
    let health: serde_json::Value = reqwest::get(format!("{url}/healthz")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok", "the first panel and its database still serve");
}

/// A sign-up on the panel mails its verification link to the mail catcher, whose web page
/// (MailDev's JSON API behind it) shows it.
async fn a_sign_up_mail_reaches_the_catcher(url: &str, mail: &str) {
    let c = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = c.get(format!("{url}/signup")).send().await.unwrap().text().await.unwrap();
    let at = page.find("name=\"csrf\" value=\"").expect("the sign-up form") + "name=\"csrf\" value=\"".len();
    let csrf = &page[at..at + page[at..].find('"').unwrap()];
    let r = c
        .post(format!("{url}/signup"))
        .form(&[("email", "newcomer@example.com"), ("password", "correct horse battery"), ("name", "New"), ("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let home = reqwest::get(mail).await.expect("the mail catcher's page answers");
    assert!(home.status().is_success());
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mails: serde_json::Value = reqwest::get(format!("{}/email", mail.trim_end_matches('/'))).await.unwrap().json().await.unwrap();
        let found = mails
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["to"].as_array().into_iter().flatten().any(|t| t["address"] == "newcomer@example.com"));
        if let Some(m) = found {
            let text = m["text"].as_str().unwrap_or_default();
            assert!(text.contains(&format!("{url}/verify/")), "the verification link: {text}");
            break;
        }
        assert!(std::time::Instant::now() < end, "no verification mail in the catcher: {mails}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Both hosts joined (secret stored) and answer the reconciler; a customer's container and
/// KVM machine, ordered and paid, run on them.
async fn demo_hosts_run_a_customers_order(pool: &sqlx::PgPool, hosts: &[(String, String, String)]) {
    let names: Vec<String> = hosts.iter().map(|h| h.0.clone()).collect();
    let end = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let rows: Vec<(String, String, bool, String)> = sqlx::query_as(
            "SELECT name, api_url, api_secret IS NOT NULL, reachability::text FROM hosts WHERE name = ANY($1) ORDER BY name",
        )
        .bind(&names)
        .fetch_all(pool)
        .await
        .unwrap();
        let ok = rows.len() == 2
            && rows.iter().all(|(name, api_url, joined, reach)| {
                let addr = &hosts.iter().find(|h| &h.0 == name).unwrap().1;
                *joined && reach == "reachable" && api_url.contains(addr.as_str())
            });
        if ok {
            break;
        }
        assert!(std::time::Instant::now() < end, "the demo hosts did not join and become reachable: {rows:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A customer orders and pays a container and a KVM machine; both run on the demo hosts.
    let clock = panel::clock::SystemClock;
    let admin: uuid::Uuid = sqlx::query_scalar("SELECT id FROM accounts WHERE role = 'admin' LIMIT 1").fetch_one(pool).await.unwrap();
    let customer: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO accounts (role, email, email_verified_at) VALUES ('customer', 'demo@example.com', now()) RETURNING id",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let eur = panel::money::Currency::parse("EUR").unwrap();
    panel::billing::payments::record_manual_payment(
        pool,
        &clock,
        admin,
        customer,
        panel::money::Money::new(100_000, eur),
        "demo-credit",
        None,
        None,
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for (plan, template, hostname) in [("burst-s", "busybox", "ct.example.com"), ("kvm-s2", "vessel-test-guest", "vm.example.com")] {
        let req = panel::orders::OrderRequest {
            plan_code: plan.into(),
            cycle: panel::plans::BillingCycle::Monthly,
            os_template: template.into(),
            hostname: hostname.into(),
            coupon: None,
        };
        let placed = panel::orders::place_order(pool, &clock, customer, req).await.unwrap();
        panel::billing::payments::pay_invoice_with_credit(pool, &clock, customer, placed.invoice_id).await.unwrap();
        let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM instances WHERE subscription_id = $1")
            .bind(placed.subscription_id)
            .fetch_one(pool)
            .await
            .unwrap();
        ids.push(id);
    }
    let end = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT i.observed_state::text, h.name, i.last_error FROM instances i LEFT JOIN hosts h ON h.id = i.host_id WHERE i.id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(pool)
        .await
        .unwrap();
        if rows.iter().all(|(state, host, _)| state == "running" && host.as_ref().is_some_and(|h| names.contains(h))) {
            eprintln!("quick start: the customer's VPS run on the demo hosts: {rows:?}");
            break;
        }
        assert!(std::time::Instant::now() < end, "the customer's VPS did not run on the demo hosts: {rows:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// After Ctrl-C: the hosts' namespaces, bridge, processes, cgroups, mounts and loop devices
/// are gone (their files stay in the state dir for the next run).
fn nothing_left_behind(state: &Path, hosts: &[(String, String, String)]) {
    let netns = String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).to_string();
    let addrs = String::from_utf8_lossy(&Command::new("ip").args(["-o", "addr", "show"]).output().unwrap().stdout).to_string();
    for (name, addr, ns) in hosts {
        assert!(!netns.lines().any(|l| l.split_whitespace().next() == Some(ns.as_str())), "namespace {ns} of {name} is left");
        let gateway = format!("{}.1/24", addr.rsplit_once('.').unwrap().0);
        assert!(!addrs.contains(&format!(" {gateway} ")), "the bridge with {gateway} is left");
        for c in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let cg = c.path().join(format!("vessel-netns-{ns}"));
            assert!(!cg.exists(), "cgroup {} is left", cg.display());
        }
    }
    let state = state.canonicalize().unwrap();
    let state_s = state.to_string_lossy().to_string();
    for l in std::fs::read_dir("/sys/block").unwrap().flatten() {
        if let Ok(back) = std::fs::read_to_string(l.path().join("loop/backing_file")) {
            assert!(!back.trim().starts_with(&state_s), "{:?} still backs {}", l.file_name(), back.trim());
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.lines().any(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&state_s))), "a mount under {state_s} is left");
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(p.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            assert!(!cmd.contains(&state_s), "process {:?} is left: {cmd}", p.file_name());
        }
    }
}

/// Sends SIGINT to `./vessel up`'s process group when dropped (by a failing assertion), and
/// gives its clean-up a moment; after a clean stop the group is gone and this does nothing.
struct StopGroup(i32);

impl Drop for StopGroup {
    fn drop(&mut self) {
        // SAFETY: killpg on the process group this test created; no memory is involved.
        if unsafe { libc::killpg(self.0, libc::SIGINT) } == 0 {
            std::thread::sleep(Duration::from_secs(20));
        }
    }
}

fn wait_timeout(child: &mut std::process::Child, d: Duration) -> Option<std::process::ExitStatus> {
    let end = std::time::Instant::now() + d;
    while std::time::Instant::now() < end {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    None
}
