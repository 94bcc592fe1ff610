//! Crash the renewal run (kill -9 the real `panel billing run` process) at random points,
//! 20 times: after every kill, and at the end, each period has exactly one invoice, numbers
//! have no gaps and the ledger balances; the final run leaves exactly the invoices expected.

use crate::billing_world::{check_invariants, World};
use panel::billing::period::period_start;
use panel::plans::BillingCycle;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_renewal_run_never_doubles_or_loses_an_invoice() {
    let w = World::new("2026-01-01T00:00:00Z").await;
    let first_anchor = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    panel::db::seed::subscriptions(&w.pool, 6000, "burst-s", first_anchor).await.unwrap();
    let db: String = w.scalar("SELECT current_database()").await;
    let url = vessel_devdb::with_database(&vessel_devdb::server_url().unwrap(), &db).unwrap();

    // A small deterministic generator: the same "random" kill points on every run.
    let mut seed: u64 = 0x5eed_1234_abcd;
    let mut next = move |max: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % max
    };
    let as_of = |i: i64| chrono::NaiveDate::from_ymd_opt(2026, 1, 20).unwrap() + chrono::Duration::days(9 * i);
    let run = |as_of: chrono::NaiveDate| {
        Command::new(env!("CARGO_BIN_EXE_panel"))
            .args(["billing", "run", "--as-of", &format!("{as_of}T12:00:00Z")])
            .env("DATABASE_URL", &url)
            .env("VESSEL__BILLING__RENEWAL__BATCH_SIZE", "100")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("panel runs")
    };

    let invoices = || w.scalar::<i64>("SELECT count(*) FROM invoices");
    let mut killed_mid_run = 0;
    let mut killed_mid_work = 0;
    for i in 0..20 {
        let before = invoices().await;
        let mut child = run(as_of(i));
        // Wait until this run has committed something (however loaded the machine is), then
        // kill it a random moment later: the kill lands mid-run, usually mid-batch.
        let started = Instant::now();
        while invoices().await == before && child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(next(60))).await;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL: no cleanup, no rollback handler, nothing
            killed_mid_run += 1;
        } else {
            eprintln!("run {i} finished by itself after {:?}", started.elapsed());
        }
        child.wait().unwrap();
        check_invariants(&w.pool).await;
        // Committed some batches, and (checked by a clean run) left some undone.
        let after = invoices().await;
        if after > before && run(as_of(i)).wait().unwrap().success() && invoices().await > after {
            killed_mid_work += 1;
        }
    }
    assert!(killed_mid_work >= 5, "only {killed_mid_work} kills landed between committed batches");
    assert!(killed_mid_run >= 10, "only {killed_mid_run} of 20 kills landed mid-run: make the run longer");

    // Let it finish, as of the last date: every subscription has exactly its periods.
    let last = as_of(19);
    let status = run(last).wait().unwrap();
    assert!(status.success());
    check_invariants(&w.pool).await;
    let until = last + chrono::Duration::days(7);
    let anchors: Vec<(chrono::NaiveDate, i64)> = sqlx::query_as(
        "SELECT anchor_date, count(i.id) FROM subscriptions s LEFT JOIN invoices i ON i.subscription_id = s.id GROUP BY s.id",
    )
    .fetch_all(&w.pool)
    .await
    .unwrap();
    for (anchor, got) in anchors {
        // Periods 1.. are renewals; period k is invoiced once its start is within the lead time.
        let expected = (1..).take_while(|k| period_start(anchor, BillingCycle::Monthly, *k) <= until).count() as i64;
        assert_eq!(got, expected, "subscription anchored {anchor}");
    }
    eprintln!("renewal crash test: {killed_mid_run} of 20 kills landed mid-run, {killed_mid_work} between committed batches");
}
