//! The customer's own service lifecycle through the pages: the plan change shows the prorated
//! amount before confirming and that amount is exactly the invoice (or credit note) it makes;
//! cancelling at the end of the period or now (the unused part back by the one rule);
//! reinstalling with another OS; the renewal date and amount; states in plain words.

use crate::helpers::{spawn_web_app, WebApp};
use crate::web_customer::{add_credit, order_and_pay};
use uuid::Uuid;

/// The value of the hidden `shown_total` in a plan's card of the plan page, and its sentence.
fn quote_of(page: &str, code: &str) -> (i64, String) {
    let card = page.split(&format!("id=\"plan-{code}\"")).nth(1).unwrap_or_else(|| panic!("a card for {code}: {page}"));
    let said = card.split(&format!("id=\"quote-{code}\">")).nth(1).unwrap().split('<').next().unwrap().to_string();
    let total = card.split("name=\"shown_total\" value=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
    (total, said)
}

pub(crate) async fn customer_with_server(app: &WebApp, email: &str, host: &str) -> (reqwest::Client, Uuid) {
    let admin = app.admin("root@example.com").await;
    let c = app.customer(email).await;
    // Germany: the upgrade's invoice carries tax, so the quote must include it too.
    let (s, _, body) = app.submit(&c, "/account", "/account/details", &[("name", "Ana"), ("country", "DE"), ("time_zone", "UTC")]).await;
    assert_eq!(s, 303, "{body}");
    add_credit(app, &admin, email, "200", &format!("bank-{email}")).await;
    let b = order_and_pay(app, &c, host).await;
    (c, b.server)
}

#[tokio::test]
async fn a_plan_change_costs_exactly_what_was_shown() {
    let app = spawn_web_app().await;
    let (c, server) = customer_with_server(&app, "up@example.com", "up.example.com").await;
    let (s, page) = app.get(&c, &format!("/servers/{server}")).await;
    assert_eq!(s, 200);
    assert!(page.contains("id=\"renewal\"") && page.contains("renews on"), "renewal date and amount: {page}");
    assert!(page.contains("id=\"change-plan\""), "{page}");

    let plan_page = format!("/servers/{server}/plan");
    let (s, page) = app.get(&c, &plan_page).await;
    assert_eq!(s, 200, "{page}");
    let (shown, said) = quote_of(&page, "burst-m");
    assert!(shown > 0 && said.starts_with("You pay"), "an upgrade is charged: {said}");
    let invoices_before: i64 = sqlx::query_scalar("SELECT count(*) FROM invoices").fetch_one(&app.pool).await.unwrap();
    let (s, _) = app.get(&c, &plan_page).await;
    assert_eq!(s, 200);
    let after_quotes: i64 = sqlx::query_scalar("SELECT count(*) FROM invoices").fetch_one(&app.pool).await.unwrap();
    assert_eq!(after_quotes, invoices_before, "quoting makes no invoice");

    // A stale amount (the price changed since): refused, nothing changed.
    let (s, _, body) = app.submit(&c, &plan_page, &plan_page, &[("plan", "burst-m"), ("shown_total", &(shown - 1).to_string())]).await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("amount changed"), "{body}");
    let plan: String = sqlx::query_scalar("SELECT p.code FROM instances i JOIN plans p ON p.id = i.plan_id WHERE i.id = $1")
        .bind(server)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(plan, "burst-s");

    let (s, loc, body) = app.submit(&c, &plan_page, &plan_page, &[("plan", "burst-m"), ("shown_total", &shown.to_string())]).await;
    assert_eq!(s, 303, "{body}");
    let invoice: Uuid = loc.trim_start_matches("/invoices/").split('?').next().unwrap().parse().unwrap();
    let (total, tax, kind): (i64, i64, String) = sqlx::query_as("SELECT total_minor, tax_minor, kind::text FROM invoices WHERE id = $1")
        .bind(invoice)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!((total, kind.as_str()), (shown, "invoice"), "the invoice is the amount shown");
    assert!(tax > 0, "with German VAT");
    let (_, inv_page) = app.get(&c, &loc).await;
    let amount = said.trim_start_matches("You pay ").split(" now").next().unwrap().to_string();
    assert!(inv_page.contains(&amount), "the invoice page shows the same {amount}: {inv_page}");
    let (plan, resize): (String, i64) = sqlx::query_as(
        "SELECT p.code, (SELECT count(*) FROM jobs WHERE kind = 'instance.resize') FROM instances i JOIN plans p ON p.id = i.plan_id WHERE i.id = $1",
    )
    .bind(server)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((plan.as_str(), resize), ("burst-m", 1));

    // And back down: a credit note of exactly the amount shown.
    let (_, page) = app.get(&c, &plan_page).await;
    let (shown, said) = quote_of(&page, "burst-s");
    assert!(shown < 0 && said.starts_with("You get"), "{said}");
    let (s, loc, body) = app.submit(&c, &plan_page, &plan_page, &[("plan", "burst-s"), ("shown_total", &shown.to_string())]).await;
    assert_eq!((s, loc.as_str()), (303, format!("/servers/{server}?done=plan_changed").as_str()), "{body}");
    let note: i64 = sqlx::query_scalar("SELECT total_minor FROM invoices WHERE kind = 'credit_note' ORDER BY issued_at DESC LIMIT 1")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(note, -shown, "the credit note is the amount shown");

    // Another customer's server: 404 on every page and form.
    let eve = app.customer("eve@example.com").await;
    let (s, _) = app.get(&eve, &plan_page).await;
    assert_eq!(s, 404);
    let (s, _) = app.get(&eve, &format!("/servers/{server}/cancel")).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn cancel_at_the_period_end_or_now_with_the_unused_part_back() {
    let app = spawn_web_app().await;
    let (c, server) = customer_with_server(&app, "bye@example.com", "bye.example.com").await;
    let cancel = format!("/servers/{server}/cancel");
    let (s, page) = app.get(&c, &cancel).await;
    assert_eq!(s, 200, "{page}");
    let refund = page.split("id=\"cancel-refund\">").nth(1).expect("what ending now gives back").split('<').next().unwrap().to_string();

    // At the period's end: not renewed; the renewal run ends it once the period is over.
    let (s, loc, _) = app.submit(&c, &cancel, &cancel, &[("when", "period_end")]).await;
    assert_eq!((s, loc.as_str()), (303, format!("/servers/{server}?done=cancel_at_period_end").as_str()));
    let (_, page) = app.get(&c, &format!("/servers/{server}")).await;
    assert!(page.contains("not renewed"), "{page}");
    let sub: Uuid =
        sqlx::query_scalar("SELECT subscription_id FROM instances WHERE id = $1").bind(server).fetch_one(&app.pool).await.unwrap();
    let end: chrono::NaiveDate =
        sqlx::query_scalar("SELECT current_period_end FROM subscriptions WHERE id = $1").bind(sub).fetch_one(&app.pool).await.unwrap();
    let before_end = panel::clock::FixedClock::at(end.pred_opt().unwrap().and_hms_opt(12, 0, 0).unwrap().and_utc());
    let policy = panel::billing::renewal::RenewalPolicy::default();
    let r = panel::billing::renewal::run(&app.pool, &before_end, policy).await.unwrap();
    assert_eq!((r.invoices_issued, r.cancelled), (0, 0), "a cancelled subscription is not invoiced again");
    // Taken back, it would be; cancelled again, it ends at the period's end.
    let (s, _, _) = app.submit(&c, &cancel, &cancel, &[("when", "keep")]).await;
    assert_eq!(s, 303);
    let (s, _, _) = app.submit(&c, &cancel, &cancel, &[("when", "period_end")]).await;
    assert_eq!(s, 303);
    let after_end = panel::clock::FixedClock::at(end.and_hms_opt(1, 0, 0).unwrap().and_utc());
    let r = panel::billing::renewal::run(&app.pool, &after_end, policy).await.unwrap();
    assert_eq!((r.invoices_issued, r.cancelled), (0, 1));
    let (status, desired): (String, String) = sqlx::query_as(
        "SELECT s.status::text, i.desired_state::text FROM subscriptions s JOIN instances i ON i.subscription_id = s.id WHERE s.id = $1",
    )
    .bind(sub)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((status.as_str(), desired.as_str()), ("cancelled", "terminated"));
    let (_, page) = app.get(&c, &format!("/servers/{server}")).await;
    assert!(page.contains(">Cancelled<"), "in plain words: {page}");

    // Now: a second server ended at once, the amount shown comes back as a credit note.
    let b = order_and_pay(&app, &c, "now.example.com").await;
    let cancel = format!("/servers/{}/cancel", b.server);
    let (_, page) = app.get(&c, &cancel).await;
    let refund = page.split("id=\"cancel-refund\">").nth(1).map(|r| r.split('<').next().unwrap().to_string()).unwrap_or(refund);
    let (s, loc, body) = app.submit(&c, &cancel, &cancel, &[("when", "now")]).await;
    assert_eq!((s, loc.as_str()), (303, format!("/servers/{}?done=terminated", b.server).as_str()), "{body}");
    let (number, total, currency): (String, i64, String) = sqlx::query_as(
        "SELECT id::text, total_minor, currency FROM invoices WHERE kind = 'credit_note' AND subscription_id = (SELECT subscription_id FROM instances WHERE id = $1)",
    )
    .bind(b.server)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let shown = panel::money::Money::new(total, panel::money::Currency::parse(&currency).unwrap()).to_string();
    assert_eq!(shown, refund, "credit note {number} is what the page said");
    let (s, _, _) = app.submit(&c, &format!("/servers/{}", b.server), &cancel, &[("when", "now")]).await;
    assert_eq!(s, 422, "a cancelled server cannot be cancelled again");
}

#[tokio::test]
async fn reinstall_with_another_os_and_states_in_plain_words() {
    let app = spawn_web_app().await;
    sqlx::query("INSERT INTO os_templates (name, display_name, version) VALUES ('alpine-3', 'Alpine 3', '3')")
        .execute(&app.pool)
        .await
        .unwrap();
    let (c, server) = customer_with_server(&app, "os@example.com", "os.example.com").await;
    let page = format!("/servers/{server}");
    let (s, _, confirm) = app.submit(&c, &page, &format!("{page}/action"), &[("action", "reinstall")]).await;
    assert_eq!(s, 200);
    assert!(confirm.contains("value=\"alpine-3\""), "the OS to choose: {confirm}");
    // An OS that is not offered: refused, nothing queued.
    let (s, _, body) = app
        .submit(&c, &page, &format!("{page}/action"), &[("action", "reinstall"), ("confirm", "yes"), ("os_template", "windows-95")])
        .await;
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("not offered"), "{body}");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'instance.action' AND payload->>'action' = 'reinstall'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0);
    let (s, loc, body) =
        app.submit(&c, &page, &format!("{page}/action"), &[("action", "reinstall"), ("confirm", "yes"), ("os_template", "alpine-3")]).await;
    assert_eq!(s, 303, "{body}");
    assert!(loc.ends_with("done=requested"));
    let (tpl, jobs): (String, i64) = sqlx::query_as(
        "SELECT t.name, (SELECT count(*) FROM jobs WHERE kind = 'instance.action' AND payload->>'action' = 'reinstall') FROM instances i JOIN os_templates t ON t.id = i.os_template_id WHERE i.id = $1",
    )
    .bind(server)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((tpl.as_str(), jobs), ("alpine-3", 1));

    // Waiting for capacity, with an internal host name in the error: plain words, no host.
    sqlx::query("UPDATE instances SET observed_state = 'waiting_for_capacity', last_error = 'no room on host-fra-7 (memory 0 of 512 MiB free)' WHERE id = $1")
        .bind(server)
        .execute(&app.pool)
        .await
        .unwrap();
    // The order too: its list and its page (before: the raw `waiting_for_capacity`).
    let order: Uuid = sqlx::query_scalar(
        "UPDATE orders SET status = 'waiting_for_capacity' WHERE id = (SELECT o.id FROM orders o JOIN subscriptions s ON s.order_id = o.id JOIN instances i ON i.subscription_id = s.id WHERE i.id = $1) RETURNING id",
    )
    .bind(server)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    for path in [page.clone(), "/servers".to_string(), "/orders".to_string(), format!("/orders/{order}")] {
        let (_, html) = app.get(&c, &path).await;
        assert!(html.contains("Waiting for a free slot"), "{path}: {html}");
        assert!(!html.contains("waiting_for_capacity") && !html.contains("host-fra-7"), "{path}: {html}");
    }
}

#[tokio::test]
async fn a_customer_changes_password_and_email_with_reverification() {
    let app = spawn_web_app().await;
    let c = app.customer("old@example.com").await;
    let other_session = crate::helpers::client();
    let (s, _, _) =
        app.submit(&other_session, "/login", "/login", &[("email", "old@example.com"), ("password", "correct horse battery")]).await;
    assert_eq!(s, 303);

    // The wrong current password: refused, nothing changed.
    let (s, _, body) = app
        .submit(&c, "/account", "/account/password", &[("current_password", "not my password"), ("new_password", "a brand new password")])
        .await;
    assert_eq!(s, 422, "{body}");
    let (s, loc, body) = app
        .submit(
            &c,
            "/account",
            "/account/password",
            &[("current_password", "correct horse battery"), ("new_password", "a brand new password")],
        )
        .await;
    assert_eq!((s, loc.as_str()), (303, "/account?done=password_changed"), "{body}");
    let (s, _) = app.get(&c, "/account").await;
    assert_eq!(s, 200, "the one who changed it stays logged in");
    let (s, _) = app.get(&other_session, "/account").await;
    assert_eq!(s, 303, "every other session is signed out");
    let fresh = crate::helpers::client();
    let (s, _, _) = app.submit(&fresh, "/login", "/login", &[("email", "old@example.com"), ("password", "correct horse battery")]).await;
    assert_eq!(s, 422, "the old password no longer works");
    let (s, loc, _) = app.submit(&fresh, "/login", "/login", &[("email", "old@example.com"), ("password", "a brand new password")]).await;
    assert_eq!((s, loc.as_str()), (303, "/servers"));

    // A new address is confirmed by a link mailed to it; until then the old one stays.
    let (s, loc, body) = app
        .submit(&c, "/account", "/account/email", &[("current_password", "a brand new password"), ("new_email", "new@example.com")])
        .await;
    assert_eq!((s, loc.as_str()), (303, "/account?done=email_sent"), "{body}");
    let email: String = sqlx::query_scalar("SELECT email FROM accounts WHERE email IN ('old@example.com', 'new@example.com')")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(email, "old@example.com", "not changed before the link is followed");
    let mail = app.smtp.wait_for("new@example.com", "Confirm your new email address").await;
    let path = mail.link("/account/email/").unwrap().strip_prefix(&app.address).unwrap().to_string();
    let anon = crate::helpers::client();
    let (s, _) = app.get(&anon, &path).await;
    assert_eq!(s, 200, "opening the link does not use it");
    let (s, _, body) = app.submit(&anon, &path, &path, &[]).await;
    assert_eq!(s, 200, "{body}");
    let (s, _) = app.get(&anon, &path).await;
    assert_eq!(s, 422, "the link works once");
    let (s, loc, _) = app
        .submit(&crate::helpers::client(), "/login", "/login", &[("email", "new@example.com"), ("password", "a brand new password")])
        .await;
    assert_eq!((s, loc.as_str()), (303, "/servers"), "the new address logs in");

    // An address another account has: refused when the link is followed, nothing changed.
    let _taken = app.customer("taken@example.com").await;
    let (s, _, _) = app
        .submit(&c, "/account", "/account/email", &[("current_password", "a brand new password"), ("new_email", "taken@example.com")])
        .await;
    assert_eq!(s, 303);
    let mail = app.smtp.wait_for("taken@example.com", "Confirm your new email address").await;
    let path = mail.link("/account/email/").unwrap().strip_prefix(&app.address).unwrap().to_string();
    let (s, _, body) = app.submit(&anon, &path, &path, &[]).await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("already in use"), "{body}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts WHERE email = 'new@example.com'").fetch_one(&app.pool).await.unwrap();
    assert_eq!(n, 1);
}

/// Paying without an admin: the pages say which ways to pay the provider configured; bank
/// transfer shows the account and a reference per invoice (its number) or for credit (the
/// account's); a card top-up validates the amount and, when Stripe cannot be reached, says so
/// and records nothing.
#[tokio::test]
async fn the_pages_say_how_to_pay_without_an_admin() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = crate::helpers::spawn_web_app_with(|s| {
        s.billing.bank_transfer = Some(panel::config::BankTransferSettings {
            account_holder: "Vessel Hosting GmbH".into(),
            iban: "DE89370400440532013000".into(),
            bic: "COBADEFFXXX".into(),
            bank_name: "".into(),
        });
        s.stripe = Some(panel::billing::stripe::StripeSettings {
            secret_key: "sk_test_x".to_string().into(),
            publishable_key: "pk_test_x".into(),
            webhook_secret: "whsec_x".to_string().into(),
            api_base: format!("http://127.0.0.1:{closed}"),
            js_url: format!("http://127.0.0.1:{closed}/js.stripe.com/v3/"),
        });
    })
    .await;
    let c = app.customer("payer@example.com").await;
    let (s, page) = app.get(&c, "/account/funds").await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("card (Stripe), bank transfer"), "the configured methods: {page}");
    assert!(page.contains("DE89370400440532013000") && page.contains("VSL CREDIT "), "{page}");

    // An order's invoice: its own reference is its number.
    let (s, loc, body) = app
        .submit(
            &c,
            "/order/burst-s",
            "/order/burst-s",
            &[
                ("cycle", "monthly"),
                ("os_template", "debian-12"),
                ("hostname", "pay.example.com"),
                ("coupon", ""),
                ("root_password", "a root password 1"),
            ],
        )
        .await;
    assert_eq!(s, 303, "{body}");
    let (_, order) = app.get(&c, &loc).await;
    let invoice: Uuid = order.split("/invoices/").nth(1).unwrap()[..36].parse().unwrap();
    let (_, inv) = app.get(&c, &format!("/invoices/{invoice}")).await;
    let (y, n): (i32, i32) =
        sqlx::query_as("SELECT number_year, number_seq FROM invoices WHERE id = $1").bind(invoice).fetch_one(&app.pool).await.unwrap();
    let reference = inv.split("id=\"bank-reference\">").nth(1).expect("a transfer reference").split('<').next().unwrap().to_string();
    assert!(
        reference.starts_with("VSL ") && reference.contains(&y.to_string()) && reference.contains(&format!("{n}")),
        "{reference} names invoice {y}/{n}"
    );
    assert!(inv.contains("id=\"pay-card\""), "{inv}");

    // Card top-up: bad amounts and a missing card are shown on the form; Stripe down is said
    // plainly; nothing booked.
    for (amount, method, status) in [("abc", "card_x", 422), ("0.50", "card_x", 422), ("25.00", "", 422), ("25.00", "card_x", 502)] {
        let (s, _, body) = app.submit(&c, "/account/funds", "/account/funds/card", &[("amount", amount), ("payment_method", method)]).await;
        assert_eq!(s, status, "{amount}: {body}");
        assert!(body.contains("id=\"funds-error\""), "{body}");
    }
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments").fetch_one(&app.pool).await.unwrap();
    assert_eq!(payments, 0);

    // Without Stripe configured, the page offers no card.
    let plain = spawn_web_app().await;
    let c = plain.customer("plain@example.com").await;
    let (_, page) = plain.get(&c, "/account/funds").await;
    assert!(!page.contains("id=\"pay-card\"") && page.contains("none online yet"), "{page}");
    let (s, _, body) = plain.submit(&c, "/account/funds", "/account/funds/card", &[("amount", "10")]).await;
    assert_eq!(s, 422, "{body}");
}

/// The admin suspends a customer with a reason: the customer is mailed it, and every server
/// of theirs is suspended; reactivating returns each to the state it had (one running, one
/// stopped). Audited with the reason.
#[tokio::test]
async fn suspending_a_customer_suspends_their_servers_and_reactivation_restores_them() {
    let app = spawn_web_app().await;
    let (c, running) = customer_with_server(&app, "sus@example.com", "run.example.com").await;
    let stopped = order_and_pay(&app, &c, "stop.example.com").await.server;
    sqlx::query("UPDATE instances SET desired_state = 'stopped' WHERE id = $1").bind(stopped).execute(&app.pool).await.unwrap();
    let admin = app.admin("root@example.com").await;
    let id: Uuid = sqlx::query_scalar("SELECT id FROM accounts WHERE email = 'sus@example.com'").fetch_one(&app.pool).await.unwrap();
    let page = format!("/admin/customers/{id}");
    let (s, _, body) =
        app.submit(&admin, &page, &format!("{page}/status"), &[("to", "suspend"), ("reason", "Outgoing spam from run.example.com")]).await;
    assert_eq!(s, 303, "{body}");
    let states = || async {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT desired_state::text FROM instances WHERE id = ANY($1) ORDER BY hostname")
            .bind(vec![running, stopped])
            .fetch_all(&app.pool)
            .await
            .unwrap();
        rows.into_iter().map(|r| r.0).collect::<Vec<_>>()
    };
    assert_eq!(states().await, vec!["suspended", "suspended"], "both servers suspended");
    let mail = app.smtp.wait_for("sus@example.com", "account is suspended").await;
    assert!(mail.text().contains("Outgoing spam from run.example.com"), "the reason is mailed: {}", mail.text());
    let reason: String = sqlx::query_scalar("SELECT details->>'reason' FROM audit_log WHERE action = 'customer.suspend'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(reason, "Outgoing spam from run.example.com");

    let (s, _, body) = app.submit(&admin, &page, &format!("{page}/status"), &[("to", "unsuspend")]).await;
    assert_eq!(s, 303, "{body}");
    // Ordered by hostname: run.example.com, stop.example.com.
    assert_eq!(states().await, vec!["running", "stopped"], "each back to the state it had");
    app.smtp.wait_for("sus@example.com", "active again").await;
}
