//! Schemathesis (from PyPI) against the served OpenAPI document on a live panel: generated
//! requests, valid and invalid, to every operation; no answer may be a 5xx, every response
//! must match the document (status code, content type, headers, body schema), and data the
//! document forbids must be refused. The run is
//! bounded by examples per operation and by time, so it fits the test command's budget.

use crate::helpers::spawn_web_app_with;
use panel::api_keys::{self, Scope};
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

/// The pinned Schemathesis, installed by the project's script if missing (never skipped).
fn schemathesis() -> PathBuf {
    if let Ok(p) = std::env::var("VESSEL_SCHEMATHESIS") {
        return p.into();
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ensure-schemathesis");
    let out = std::process::Command::new(&script).output().expect("scripts/ensure-schemathesis runs");
    assert!(out.status.success(), "installing Schemathesis failed:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_no_server_error_and_no_response_off_the_schema() {
    let bin = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    // Fuzzing is many requests from one key: the rate limit is not what is under test here.
    let app = spawn_web_app_with(|s| {
        s.api.rate_limit_per_minute = 1_000_000;
        s.api.rate_limit_burst = 1_000_000;
    })
    .await;
    let reseller: Uuid = sqlx::query_scalar(
        "INSERT INTO accounts (role, email, display_name, status, email_verified_at) VALUES ('reseller', 'fuzz@resell.example', 'Fuzz', 'active', now()) RETURNING id",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let token = api_keys::create(&app.pool, reseller, "fuzz", &[Scope::Read, Scope::Write], None).await.unwrap().token;
    // Something to find: a customer with a server.
    let http = reqwest::Client::new();
    let c: serde_json::Value = http
        .post(app.url("/api/v1/customers"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"email": "c@example.com", "name": "C"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = http
        .post(app.url("/api/v1/servers"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"customer_id": c["id"], "plan": "burst-s", "os_template": "debian-12", "hostname": "fuzz.example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let examples = std::env::var("VESSEL_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "50".into());
    // A fixed seed keeps the test command's run reproducible; set another (or `random`) to
    // explore: every seed is a different 2 000 requests.
    let seed = match std::env::var("VESSEL_SCHEMATHESIS_SEED").as_deref() {
        Ok("random") => None,
        Ok(s) => Some(s.to_string()),
        Err(_) => Some("20261125".to_string()),
    };
    // Schemathesis keeps caches in its working directory: a scratch one per run, so runs are
    // independent of each other and leave nothing in the source tree.
    let scratch = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(&bin)
        .current_dir(scratch.path())
        .arg("run")
        .arg(app.url("/api/v1/openapi.json"))
        .args(["--url", &app.address])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", &examples])
        // One worker: with several, Hypothesis parses lambdas' source from threads and Debian's
        // Python 3.11 fails that now and then ("AST constructor recursion depth mismatch").
        .args(["--workers", "1"])
        .args(["--suppress-health-check", "all"])
        .args(["--request-timeout", "10"])
        .args(seed.as_ref().map(|s| vec!["--seed".to_string(), s.clone()]).unwrap_or_default())
        // No example database: runs are independent of earlier ones and leave no files behind.
        .args(["--generation-database", "none"])
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(480), run)
        .await
        .expect("Schemathesis finishes within 8 minutes")
        .expect("Schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(out.status.success(), "Schemathesis found problems (exit {:?}); its report is above", out.status.code());
    assert!(stdout.contains("passed") || stdout.contains("Passed"), "Schemathesis reported no passing operation: is the document empty?");
}
