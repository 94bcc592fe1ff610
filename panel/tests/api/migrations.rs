//! The schema of record: all migrations apply to an empty database, the constraints reject
//! what must never be stored, and the down migrations take it all away again.

use sqlx::{Connection, Executor, PgConnection};

/// Runs `sql` and returns the constraint it broke (SQLSTATE and constraint name).
async fn violation(c: &mut PgConnection, sql: &str) -> (String, String) {
    let mut tx = c.begin().await.unwrap();
    let err = match tx.execute(sql).await {
        Ok(_) => tx.commit().await.expect_err(&format!("accepted: {sql}")),
        Err(e) => e,
    };
    let db = err.as_database_error().unwrap_or_else(|| panic!("not a database error: {err}"));
    (db.code().unwrap_or_default().to_string(), db.constraint().unwrap_or_else(|| db.message()).to_string())
}

const PLAN: &str = "INSERT INTO plans (code, version, name, kind, vcpus, memory_guaranteed_mib, memory_burst_mib, \
    swap_mib, disk_gib, cpu_ratio_milli, memory_ratio_milli, disk_ratio_milli, pids_max, io_weight) VALUES ";

#[tokio::test]
async fn migrations_apply_constraints_hold_and_revert() {
    let url = vessel_devdb::empty_database().await.unwrap();
    let mut c = PgConnection::connect(&url).await.unwrap();
    panel::db::MIGRATOR.run(&mut c).await.expect("all migrations apply to an empty database");

    // A valid world to hang bad rows on.
    c.execute(
        format!(
            "INSERT INTO accounts (id, role, email) VALUES ('00000000-0000-0000-0000-00000000000a', 'customer', 'ana@example.com');
             {PLAN} ('burst-s', 1, 'Burst S', 'container', 1, 512, 1024, 0, 20, 4000, 1500, 2000, 1024, 500);
             INSERT INTO os_templates (id, name, display_name) VALUES ('00000000-0000-0000-0000-0000000000b0', 'debian-12', 'Debian 12');
             INSERT INTO orders (id, account_id, plan_id, cycle, os_template_id, hostname)
                  VALUES ('00000000-0000-0000-0000-0000000000c0', '00000000-0000-0000-0000-00000000000a', 1, 'monthly',
                          '00000000-0000-0000-0000-0000000000b0', 'web1.example.com');
             INSERT INTO subscriptions (id, account_id, order_id, plan_id, cycle, currency, price_minor, anchor_date,
                                        current_period_start, current_period_end)
                  VALUES ('00000000-0000-0000-0000-0000000000d0', '00000000-0000-0000-0000-00000000000a',
                          '00000000-0000-0000-0000-0000000000c0', 1, 'monthly', 'EUR', 300, '2026-01-31', '2026-01-31', '2026-02-28');
             INSERT INTO invoices (account_id, subscription_id, period_start, period_end, currency)
                  VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000d0', '2026-01-31', '2026-02-28', 'EUR');"
        )
        .as_str(),
    )
    .await
    .expect("valid rows are accepted");

    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("a second invoice for the same subscription period",
         "INSERT INTO invoices (account_id, subscription_id, period_start, period_end, currency)
               VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000d0', '2026-01-31', '2026-02-28', 'EUR')".into(),
         "23505", "invoices_one_per_subscription_period"),
        ("a plan with burst below guarantee",
         format!("{PLAN} ('bad', 1, 'Bad', 'container', 1, 1024, 512, 0, 20, 4000, 1500, 2000, 1024, 500)"),
         "23514", "plans_burst_at_least_guarantee"),
        ("a KVM plan with overcommitted memory",
         format!("{PLAN} ('bad', 1, 'Bad', 'kvm', 1, 1024, 1024, 0, 20, 1000, 1500, 1000, 1024, 500)"),
         "23514", "plans_kvm_memory_dedicated"),
        ("a ratio below one",
         format!("{PLAN} ('bad', 1, 'Bad', 'container', 1, 512, 1024, 0, 20, 999, 1500, 2000, 1024, 500)"),
         "23514", "plans_ratios_at_least_one"),
        ("a negative price",
         "INSERT INTO plan_prices (plan_id, cycle, currency, amount_minor) VALUES (1, 'monthly', 'EUR', -1)".into(),
         "23514", "plan_prices_non_negative"),
        ("a negative payment",
         "INSERT INTO payments (account_id, method, currency, amount_minor) VALUES ('00000000-0000-0000-0000-00000000000a', 'manual', 'EUR', -5)".into(),
         "23514", "payments_amount_positive"),
        ("an invoice whose total does not add up",
         "INSERT INTO invoices (account_id, currency, subtotal_minor, tax_minor, total_minor) VALUES ('00000000-0000-0000-0000-00000000000a', 'EUR', 100, 20, 100)".into(),
         "23514", "invoices_total_adds_up"),
        ("a plan version twice",
         format!("{PLAN} ('burst-s', 1, 'Dup', 'container', 1, 512, 1024, 0, 20, 4000, 1500, 2000, 1024, 500)"),
         "23505", "plans_code_version_key"),
        ("an unbalanced ledger transaction",
         "WITH a AS (INSERT INTO ledger_accounts (code, type, currency) VALUES ('revenue', 'revenue', 'EUR') RETURNING id),
               t AS (INSERT INTO ledger_transactions (description) VALUES ('x') RETURNING id)
          INSERT INTO ledger_entries (transaction_id, ledger_account_id, debit_minor) SELECT t.id, a.id, 100 FROM a, t".into(),
         "23514", "does not balance"),
        ("an email that is not normalised",
         "INSERT INTO accounts (role, email) VALUES ('customer', 'Bob@Example.com')".into(),
         "23514", "accounts_email_normalised"),
        ("a password hash that is not argon2id",
         "INSERT INTO accounts (role, email, password_hash) VALUES ('customer', 'bob@example.com', 'md5abc')".into(),
         "23514", "accounts_password_argon2id"),
    ];
    for (what, sql, code, constraint) in cases {
        let (got_code, got) = violation(&mut c, &sql).await;
        assert_eq!(got_code, code, "{what}: {got}");
        assert!(got.contains(constraint), "{what}: expected {constraint}, got {got}");
    }

    // Issued invoices are immutable, and their lines too.
    c.execute(
        "INSERT INTO invoice_number_sequences (kind, year) VALUES ('invoice', 2026);
         UPDATE invoices SET status = 'issued', issued_at = now(), number_year = 2026, number_seq = 1, subtotal_minor = 300, total_minor = 300",
    )
    .await
    .unwrap();
    let (code, msg) = violation(&mut c, "UPDATE invoices SET subtotal_minor = 1, total_minor = 1").await;
    assert_eq!(code, "23514");
    assert!(msg.contains("immutable"), "{msg}");
    let (_, msg) = violation(
        &mut c,
        "INSERT INTO invoice_lines (invoice_id, position, description, unit_price_minor, amount_minor)
         SELECT id, 1, 'x', 1, 1 FROM invoices",
    )
    .await;
    assert!(msg.contains("issued invoice"), "{msg}");
    c.execute("UPDATE invoices SET status = 'paid', paid_at = now()").await.expect("issued -> paid is allowed");

    // And every migration has a working down: the database ends empty, and up works again.
    panel::db::MIGRATOR.undo(&mut c, 0).await.expect("down migrations apply");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(left, 0, "down migrations leave nothing behind");
    panel::db::MIGRATOR.run(&mut c).await.expect("migrations apply again after a full undo");
}
