//! The README's quick start, for real: `./vessel up` builds, migrates, syncs the plans, makes
//! the admin whose login it prints, serves /healthz, and Ctrl-C stops it cleanly.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn vessel_up_serves_and_prints_a_working_admin_login() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let db_url = vessel_devdb::empty_database().await.unwrap();
    let state = tempfile::tempdir().unwrap();

    let mut child = Command::new(root.join("vessel"))
        .arg("up")
        .env("DATABASE_URL", &db_url)
        .env("VESSEL__HTTP__PORT", "0")
        .env("VESSEL_STATE_DIR", state.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .expect("./vessel runs");
    let pgid = child.id() as i32;

    // Read what it prints on a thread; pick out the URL, login and password.
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut url, mut login, mut password) = (None, None, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while url.is_none() || login.is_none() || password.is_none() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).expect("./vessel up printed its login and URL in time");
        let line = line.trim();
        if let Some(v) = line.strip_prefix("panel:") {
            url = v.split_whitespace().next().map(str::to_string);
        } else if let Some(v) = line.strip_prefix("login:") {
            login = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("password:") {
            password = Some(v.trim().to_string());
        }
    }
    let (url, login, password) = (url.unwrap(), login.unwrap(), password.unwrap());

    let health: serde_json::Value = reqwest::get(format!("{url}/healthz")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");

    // The printed credentials are the admin's, hashed with argon2id.
    let pool = sqlx::PgPool::connect(&db_url).await.unwrap();
    let (role, hash): (String, String) =
        sqlx::query_as("SELECT role::text, password_hash FROM accounts WHERE email = $1")
            .bind(&login)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(role, "admin");
    assert!(panel::accounts::verify_password(&password, &hash));
    // The catalogue was synced.
    let plans: i64 = sqlx::query_scalar("SELECT count(*) FROM plans WHERE orderable").fetch_one(&pool).await.unwrap();
    assert!(plans >= 6, "{plans} plans");
    pool.close().await;

    // Ctrl-C (SIGINT to the whole group, as a terminal does) stops everything cleanly.
    // SAFETY: killpg on the process group we created; no memory is involved.
    assert_eq!(unsafe { libc::killpg(pgid, libc::SIGINT) }, 0);
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("./vessel up stopped after Ctrl-C");
    assert!(status.success(), "exit status {status}");
    assert!(reqwest::get(format!("{url}/healthz")).await.is_err(), "nothing listens any more");
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
