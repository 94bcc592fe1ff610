//! `panel plans sync`: upserts, versioning of plans in use, all-or-nothing on bad files.

use crate::helpers::fresh_pool;
use panel::plans::sync::{sync, Change};
use panel::plans::{load_dir, parse_plan};
use std::path::{Path, PathBuf};

fn shipped() -> Vec<(PathBuf, panel::plans::PlanDefinition)> {
    load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans")).unwrap()
}

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn sync_creates_then_is_idempotent() {
    let pool = fresh_pool().await;
    let plans = shipped();
    let report = sync(&pool, &plans).await.unwrap();
    assert!(report.changes.iter().all(|(_, c)| *c == Change::Created { version: 1 }), "{report}");
    assert_eq!(count(&pool, "SELECT count(*) FROM plans").await, plans.len() as i64);
    assert_eq!(count(&pool, "SELECT count(*) FROM plan_prices").await, plans.len() as i64 * 6);

    let again = sync(&pool, &plans).await.unwrap();
    assert!(again.changes.iter().all(|(_, c)| *c == Change::Unchanged { version: 1 }), "{again}");
    assert_eq!(count(&pool, "SELECT count(*) FROM plans").await, plans.len() as i64);
}

fn edited(
    plans: &[(PathBuf, panel::plans::PlanDefinition)],
    code: &str,
    from: &str,
    to: &str,
) -> Vec<(PathBuf, panel::plans::PlanDefinition)> {
    plans
        .iter()
        .map(|(f, d)| {
            if d.code.as_str() == code {
                let text = std::fs::read_to_string(f).unwrap().replace(from, to);
                assert!(text.contains(to));
                (f.clone(), parse_plan(f, &text).unwrap())
            } else {
                (f.clone(), d.clone())
            }
        })
        .collect()
}

#[tokio::test]
async fn a_plan_in_use_is_versioned_not_mutated() {
    let pool = fresh_pool().await;
    let plans = shipped();
    sync(&pool, &plans).await.unwrap();

    // Unused: a price change is made in place.
    let cheaper = edited(&plans, "burst-s", "monthly = 300", "monthly = 299");
    let r = sync(&pool, &cheaper).await.unwrap();
    assert!(r.changes.contains(&("burst-s".into(), Change::UpdatedInPlace { version: 1 })), "{r}");
    assert_eq!(count(&pool, "SELECT count(*) FROM plans WHERE code = 'burst-s'").await, 1);

    // In use by an order: the next change makes v2; v1 keeps its numbers for its subscriber.
    sqlx::query(
        "WITH a AS (INSERT INTO accounts (role, email) VALUES ('customer', 'ana@example.com') RETURNING id),
              t AS (INSERT INTO os_templates (name, display_name) VALUES ('debian-12', 'Debian 12') RETURNING id)
         INSERT INTO orders (account_id, plan_id, cycle, os_template_id, hostname)
         SELECT a.id, p.id, 'monthly', t.id, 'web1' FROM a, t, plans p WHERE p.code = 'burst-s'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let bigger = edited(&cheaper, "burst-s", "memory_burst_mib = 1024", "memory_burst_mib = 1536");
    let r = sync(&pool, &bigger).await.unwrap();
    assert!(r.changes.contains(&("burst-s".into(), Change::NewVersion { from: 1, to: 2, users: 1 })), "{r}");
    let rows: Vec<(i32, i64, bool)> =
        sqlx::query_as("SELECT version, memory_burst_mib, orderable FROM plans WHERE code = 'burst-s' ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows, vec![(1, 1024, false), (2, 1536, true)]);
    let v1_price: i64 = sqlx::query_scalar(
        "SELECT amount_minor FROM plan_prices pp JOIN plans p ON p.id = pp.plan_id
          WHERE p.code = 'burst-s' AND p.version = 1 AND cycle = 'monthly' AND currency = 'EUR'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(v1_price, 299, "the subscriber's version keeps its price");

    // A plan dropped from the files stops being orderable; nothing is deleted.
    let without: Vec<_> = bigger.into_iter().filter(|(_, d)| d.code.as_str() != "kvm-d4").collect();
    let r = sync(&pool, &without).await.unwrap();
    assert!(r.changes.contains(&("kvm-d4".into(), Change::Retired { version: 1 })), "{r}");
    assert_eq!(count(&pool, "SELECT count(*) FROM plans WHERE code = 'kvm-d4' AND NOT orderable").await, 1);
}

#[tokio::test]
async fn a_bad_file_writes_nothing_and_names_file_field_rule() {
    let pool = fresh_pool().await;
    let dir = tempfile::tempdir().unwrap();
    for (f, _) in shipped() {
        std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let bad = dir.path().join("burst-m.toml");
    let text = std::fs::read_to_string(&bad).unwrap().replace("memory_burst_mib = 2048", "memory_burst_mib = 512");
    std::fs::write(&bad, text).unwrap();

    let errors = load_dir(dir.path()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let msg = errors[0].to_string();
    assert!(msg.contains("burst-m.toml") && msg.contains("resources.memory_burst_mib") && msg.contains("below the guarantee"), "{msg}");

    // Through the real binary: exit status 1, the message on stderr, and an untouched database.
    let url: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&pool).await.unwrap();
    let server = std::env::var("DATABASE_URL").ok();
    let db_url = vessel_devdb::with_database(&server.unwrap_or(vessel_devdb::server_url().unwrap()), &url).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_panel"))
        .args(["plans", "sync"])
        .arg(dir.path())
        .env("DATABASE_URL", &db_url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("burst-m.toml: resources.memory_burst_mib"), "{stderr}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert_eq!(count(&pool, "SELECT count(*) FROM plans").await, 0);

    // `plans check` on the good files writes nothing either.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_panel"))
        .args(["plans", "check"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans"))
        .env("DATABASE_URL", &db_url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(count(&pool, "SELECT count(*) FROM plans").await, 0);
}
