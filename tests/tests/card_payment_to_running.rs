//! A new customer's whole path in Chromium, with no admin step (issue 15): from the catalogue
//! to sign-up (the plan clicked is remembered), the verification mail read from the mail
//! catcher (MailDev, as `./vessel up` runs it), the order, the invoice paid by card against a
//! real local Stripe server (localstripe: its Stripe.js mock in the page, the PaymentIntent,
//! its signed webhook to the panel), the container running on a real host; then an upgrade
//! whose invoice is exactly the proration the confirm page showed (paid by card too), and a
//! cancellation at the end of the period.

use std::time::Duration;
use uuid::Uuid;
use vessel_tests::browser::Browser;
use vessel_tests::e2e::{wait_for, World};
use vessel_tests::services::{link_in, LocalStripe, MailCatcher};

const EMAIL: &str = "newcomer@example.com";
const PASSWORD: &str = "newcomer login password";

/// Fills localstripe's card element (its mock's inputs are named by their placeholders) and pays.
async fn pay_by_card(b: &Browser, number: &str) {
    b.wait_script("the card element", "return document.querySelectorAll('#card-element input').length", 20, |v| v.as_u64() == Some(5))
        .await;
    for (field, value) in [("number", number), ("exp_month", "12"), ("exp_year", "34"), ("cvc", "123"), ("postal_code", "10115")] {
        let e = b.c.find(fantoccini::Locator::Css(&format!("#card-element input[placeholder={field}]"))).await.unwrap();
        e.send_keys(value).await.unwrap();
    }
    b.click("#pay-card").await;
    // Paid (back on the page with the notice), or the form says why not: either ends the wait.
    let v = b
        .wait_script(
            "the card payment",
            "var e = document.getElementById('card-error'); var p = document.getElementById('pay-error'); \
             var f = document.getElementById('card-form'); \
             return location.search + '|' + (e && !e.hidden ? e.textContent : '') + '|' + (p ? p.textContent : '') \
               + '|' + (f ? f.dataset.state : 'no form') + '|' + typeof Stripe",
            30,
            |v| {
                v.as_str().is_some_and(|s| {
                    let f: Vec<&str> = s.split('|').collect();
                    f[0] == "?done=paid_card" || !f[1].is_empty() || !f[2].is_empty()
                })
            },
        )
        .await;
    assert!(v.as_str().is_some_and(|s| s.starts_with("?done=paid_card")), "the card payment: {v}");
}

async fn path(b: &Browser) -> String {
    b.c.execute("return location.pathname + location.search", vec![]).await.unwrap().as_str().unwrap_or_default().to_string()
}

async fn text_of(b: &Browser, css: &str) -> String {
    b.c.find(fantoccini::Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
}

async fn invoice_status(w: &World, id: Uuid) -> String {
    sqlx::query_scalar("SELECT status::text FROM invoices WHERE id = $1").bind(id).fetch_one(&w.pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newcomer_signs_up_pays_by_card_and_gets_a_running_server_in_chromium() {
    let mail = MailCatcher::start().await;
    let stripe = LocalStripe::start().await;
    let smtp_port = mail.smtp_port;
    let mut w = World::new_with(true, |s| {
        // The panel listens on the test network's gateway (set before this runs): Stripe too.
        let gateway: std::net::Ipv4Addr = s.http.host.parse().expect("the panel's address");
        s.smtp.host = "127.0.0.1".into();
        s.smtp.port = smtp_port;
        s.smtp.poll_ms = 100;
        s.http.base_url = String::new();
        s.stripe = Some(stripe.settings(gateway));
    })
    .await;
    let mut host = w.add_host("h1", 2, 2048).await;
    w.serve(&mut host);
    stripe.send_webhooks_to(&format!("{}/webhooks/stripe", w.panel_url)).await;
    // The provider's set-up (an address pool, the host's registration) is audited as the admin's;
    // nothing an admin does may follow.
    let setup_done: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM audit_log").fetch_one(&w.pool).await.unwrap();

    let b = Browser::start().await;
    let shots = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let url = |p: &str| format!("{}{p}", w.panel_url);
    let result = tokio::time::timeout(Duration::from_secs(300), async {
        // The catalogue: "Order" on Burst S leads to the log-in, which offers sign-up for that plan.
        b.c.goto(&url("/")).await.unwrap();
        b.click("a[href='/order/burst-s']").await;
        b.wait_script("the log-in page", "return location.pathname", 10, |v| v == "/login").await;
        b.click("#signup-link").await;
        b.wait_script("the sign-up page", "return location.pathname", 10, |v| v == "/signup").await;
        b.fill("name", "Nina Newcomer").await;
        b.fill("email", EMAIL).await;
        b.fill("password", PASSWORD).await;
        b.click("main form button[type=submit]").await;
        b.wait_script("the check-your-mail page", "return document.body.innerText", 10, |v| {
            v.as_str().is_some_and(|t| t.contains("Check your email"))
        })
        .await;

        // The verification mail, from the mail catcher.
        let text = mail.wait_for(EMAIL, "Confirm your email").await;
        let link = link_in(&text, "/verify/").unwrap_or_else(|| panic!("a verification link in {text}"));
        assert!(link.starts_with(&w.panel_url), "{link}");
        b.c.goto(&link).await.unwrap();
        b.click("#confirm").await;
        b.wait_script("the log-in after verifying", "return location.pathname", 10, |v| v == "/login").await;
        b.fill("email", EMAIL).await;
        b.fill("password", PASSWORD).await;
        b.click("main form button[type=submit]").await;
        // Back at the plan that was clicked.
        b.wait_script("the order form of the plan clicked", "return location.pathname", 10, |v| v == "/order/burst-s").await;

        // Order.
        b.c.find(fantoccini::Locator::Css("#os_template")).await.unwrap().select_by_value("busybox").await.unwrap();
        b.fill("hostname", "newcomer.example.com").await;
        b.fill("root_password", "newcomer root pass 1").await;
        b.click("#place-order").await;
        b.wait_script("the order page", "return location.pathname", 10, |v| v.as_str().is_some_and(|p| p.starts_with("/orders/"))).await;
        assert_eq!(text_of(&b, "#order-status").await, "Awaiting payment");
        b.click("#order-invoice").await;
        b.wait_script("the invoice", "return location.pathname", 10, |v| v.as_str().is_some_and(|p| p.starts_with("/invoices/"))).await;
        let invoice: Uuid = path(&b).await.trim_start_matches("/invoices/").parse().unwrap();
        assert!(text_of(&b, "#methods").await.contains("card (Stripe)"));
        b.screenshot(&shots.join("card-01-invoice.png")).await;

        // Pay by card: Stripe.js (localstripe's) reads the card; the panel charges it; the webhook books it.
        pay_by_card(&b, "4242424242424242").await;
        wait_for("the webhook to pay the invoice", 30, async || (invoice_status(&w, invoice).await == "paid").then_some(())).await;
        let inst: Uuid =
            sqlx::query_scalar("SELECT n.id FROM instances n JOIN invoices i ON i.subscription_id = n.subscription_id WHERE i.id = $1")
                .bind(invoice)
                .fetch_one(&w.pool)
                .await
                .unwrap();
        wait_for("the container to run", 180, async || (w.observed(inst).await == "running").then_some(())).await;
        b.c.goto(&url(&format!("/servers/{inst}"))).await.unwrap();
        b.wait_script(
            "the server page to say running",
            "var e = document.getElementById('server-state'); return e ? e.innerText : ''",
            20,
            |v| v == "Running",
        )
        .await;
        let html = b.c.source().await.unwrap();
        // (The host is named "h1" here, which every page has as a tag: its address and API are what must not show.)
        assert!(
            !html.contains(&host.ns.addr.to_string()) && !html.contains(&host.api_url),
            "no internal host names on the customer's page"
        );
        b.screenshot(&shots.join("card-02-running.png")).await;

        // Upgrade: the confirm page's amount is the invoice's.
        b.c.goto(&url(&format!("/servers/{inst}/plan"))).await.unwrap();
        let shown: i64 =
            b.c.execute("return document.querySelector('#plan-burst-m input[name=shown_total]').value", vec![])
                .await
                .unwrap()
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
        let quote = text_of(&b, "#quote-burst-m").await;
        assert!(shown > 0 && quote.starts_with("You pay "), "an upgrade costs: {quote}");
        b.click("#choose-burst-m").await;
        b.wait_script("the upgrade's invoice", "return location.search", 20, |v| v == "?done=plan_changed").await;
        let upgrade: Uuid = path(&b).await.split('?').next().unwrap().trim_start_matches("/invoices/").parse().unwrap();
        let (total, kind): (i64, String) =
            sqlx::query_as("SELECT total_minor, kind::text FROM invoices WHERE id = $1").bind(upgrade).fetch_one(&w.pool).await.unwrap();
        assert_eq!(total, shown, "the invoice is the proration shown before confirming");
        let page_total = text_of(&b, "#pay-card").await;
        assert!(quote.contains(page_total.trim_start_matches("Pay ").trim_end_matches(" by card")), "{quote} vs {page_total} ({kind})");
        pay_by_card(&b, "4242424242424242").await;
        wait_for("the webhook to pay the upgrade", 30, async || (invoice_status(&w, upgrade).await == "paid").then_some(())).await;

        // Cancel at the end of the period.
        b.c.goto(&url(&format!("/servers/{inst}/cancel"))).await.unwrap();
        b.click("#cancel-period-end").await;
        b.wait_script("the cancellation", "return location.search", 20, |v| v == "?done=cancel_at_period_end").await;
        let renewal = text_of(&b, "#renewal").await;
        assert!(!renewal.is_empty(), "the page says what happens at the period's end");
        b.screenshot(&shots.join("card-03-cancelled.png")).await;
        inst
    })
    .await;
    b.close().await;
    let inst = result.expect("the newcomer's path finishes within 300 s");

    // Two card payments, each booked once, as their PaymentIntents; no admin did anything.
    let intents = stripe.payment_intents().await;
    let ids: Vec<&str> = intents.iter().filter(|p| p["status"] == "succeeded").filter_map(|p| p["id"].as_str()).collect();
    assert_eq!(ids.len(), 2, "{intents:?}");
    let refs: Vec<String> =
        sqlx::query_scalar("SELECT external_ref FROM payments WHERE method = 'stripe'").fetch_all(&w.pool).await.unwrap();
    assert_eq!(refs.len(), 2);
    assert!(refs.iter().all(|r| ids.contains(&r.as_str())), "{refs:?} vs {ids:?}");
    let admin_acts: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE actor_kind = 'admin' AND id > $1")
        .bind(setup_done)
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(admin_acts, 0, "no admin step");
    let cancelling: bool = sqlx::query_scalar(
        "SELECT s.cancel_at_period_end FROM subscriptions s JOIN instances i ON i.subscription_id = s.id WHERE i.id = $1",
    )
    .bind(inst)
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert!(cancelling);
    drop(host);
}
