//! Card payments against a real, stateful local Stripe server: localstripe (PyPI, pinned,
//! installed by `scripts/ensure-localstripe`), started by each test on a free port, with its
//! webhooks pointed at the panel and signed with the panel's webhook secret. The browser's
//! part (Stripe.js turning a card into a payment method) is done here with the same call
//! localstripe's Stripe.js mock makes (`POST /v1/tokens` with the publishable key); the
//! Chromium test (`tests/tests/card_payment_to_running.rs`) does it through the page.

use crate::helpers::{spawn_web_app_with, WebApp};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use uuid::Uuid;

pub const PUBLISHABLE_KEY: &str = "pk_test_vessel";
pub const SECRET_KEY: &str = "sk_test_vessel";
pub const WEBHOOK_SECRET: &str = "whsec_vessel_test";

/// The pinned localstripe, installed by the project's script if missing (never skipped).
fn localstripe_bin() -> PathBuf {
    if let Ok(p) = std::env::var("VESSEL_LOCALSTRIPE") {
        return p.into();
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ensure-localstripe");
    let out = Command::new(&script).output().expect("scripts/ensure-localstripe runs");
    assert!(out.status.success(), "installing localstripe failed:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A localstripe process of this test's own, killed (by its pid) when dropped.
pub struct LocalStripe {
    pub base: String,
    child: std::process::Child,
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LocalStripe {
    pub async fn start() -> LocalStripe {
        let bin = tokio::task::spawn_blocking(localstripe_bin).await.unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // (localstripe also pickles its store to /tmp/localstripe.pickle; `--from-scratch`
        // never reads it back, so parallel tests do not see each other's objects.)
        let child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--from-scratch"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("localstripe starts");
        let ls = LocalStripe { base: format!("http://127.0.0.1:{port}"), child };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "localstripe did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ls
    }

    /// The panel's `[stripe]` for this server.
    pub fn settings(&self) -> panel::billing::stripe::StripeSettings {
        panel::billing::stripe::StripeSettings {
            secret_key: SECRET_KEY.to_string().into(),
            publishable_key: PUBLISHABLE_KEY.into(),
            webhook_secret: WEBHOOK_SECRET.to_string().into(),
            api_base: self.base.clone(),
            js_url: format!("{}/js.stripe.com/v3/", self.base),
        }
    }

    /// Points localstripe's webhooks at `url`, signed with the panel's secret.
    pub async fn send_webhooks_to(&self, url: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}/_config/webhooks/vessel", self.base))
            .form(&[("url", url), ("secret", WEBHOOK_SECRET)])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "configuring localstripe's webhook: {}", r.status());
    }

    /// What Stripe.js does in the browser: the card to a token (with the publishable key);
    /// returns the token's card id, the payment method the form posts.
    pub async fn card(&self, number: &str) -> String {
        let r: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/v1/tokens", self.base))
            .form(&[
                ("key", PUBLISHABLE_KEY),
                ("card[number]", number),
                ("card[exp_month]", "12"),
                ("card[exp_year]", "2034"),
                ("card[cvc]", "123"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["card"]["id"].as_str().unwrap_or_else(|| panic!("a token with a card: {r}")).to_string()
    }

    /// The PaymentIntents localstripe holds (newest first).
    pub async fn payment_intents(&self) -> Vec<serde_json::Value> {
        let r: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/v1/payment_intents", self.base))
            .bearer_auth(SECRET_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["data"].as_array().cloned().unwrap_or_default()
    }
}

async fn order(app: &WebApp, c: &reqwest::Client, hostname: &str) -> Uuid {
    let (s, loc, body) = app
        .submit(
            c,
            "/order/burst-s",
            "/order/burst-s",
            &[
                ("cycle", "monthly"),
                ("os_template", "debian-12"),
                ("hostname", hostname),
                ("coupon", ""),
                ("root_password", "a root password 1"),
            ],
        )
        .await;
    assert_eq!(s, 303, "{body}");
    let (_, order) = app.get(c, &loc).await;
    order.split("/invoices/").nth(1).expect("the order links its invoice")[..36].parse().unwrap()
}

async fn scalar<T>(app: &WebApp, sql: &str, id: Uuid) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sql).bind(id).fetch_one(&app.pool).await.unwrap()
}

/// Ordering, then paying the invoice by card: localstripe charges the PaymentIntent and posts
/// the signed `payment_intent.succeeded` to the panel, which pays the invoice and activates
/// the subscription (the server is created) without an admin. A declined card is said on the
/// page and books nothing; a resubmitted form after payment is refused; a forged webhook is
/// refused.
#[tokio::test]
async fn an_invoice_paid_by_card_through_localstripe_activates_the_server() {
    let stripe = LocalStripe::start().await;
    let settings = stripe.settings();
    let app = spawn_web_app_with(|s| s.stripe = Some(settings)).await;
    stripe.send_webhooks_to(&app.url("/webhooks/stripe")).await;
    let c = app.customer("card@example.com").await;
    let invoice = order(&app, &c, "card.example.com").await;

    // The page offers the card form with Stripe.js from the configured server.
    let (s, page) = app.get(&c, &format!("/invoices/{invoice}")).await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains(&format!("src=\"{}/js.stripe.com/v3/\"", stripe.base)), "{page}");
    assert!(page.contains(&format!("data-stripe-key=\"{PUBLISHABLE_KEY}\"")), "{page}");
    assert!(page.contains("Ways to pay: your credit, card (Stripe)"), "{page}");
    let attempt = page.split("name=\"attempt\" value=\"").nth(1).unwrap()[..36].to_string();

    // A declined card (localstripe's "charge declined" test number): said plainly, nothing booked.
    let declined = stripe.card("4000000000000341").await;
    let (s, _, body) = app
        .submit(
            &c,
            &format!("/invoices/{invoice}"),
            &format!("/invoices/{invoice}/card"),
            &[("payment_method", &declined), ("attempt", &attempt)],
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("id=\"pay-error\"") && body.contains("not charged"), "{body}");
    // No payment method at all (Stripe.js did not run): refused before Stripe is asked.
    let (s, _, body) =
        app.submit(&c, &format!("/invoices/{invoice}"), &format!("/invoices/{invoice}/card"), &[("payment_method", "")]).await;
    assert_eq!(s, 422, "{body}");

    // A good card.
    let card = stripe.card("4242424242424242").await;
    let (s, loc, body) = app
        .submit(
            &c,
            &format!("/invoices/{invoice}"),
            &format!("/invoices/{invoice}/card"),
            &[("payment_method", &card), ("attempt", &attempt)],
        )
        .await;
    assert_eq!((s, loc.as_str()), (303, format!("/invoices/{invoice}?done=paid_card").as_str()), "{body}");

    // localstripe sends the webhook about a second later; the panel books it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status: String = scalar(&app, "SELECT status::text FROM invoices WHERE id = $1", invoice).await;
        if status == "paid" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the invoice was not paid by the webhook (status {status})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let total: i64 = scalar(&app, "SELECT total_minor FROM invoices WHERE id = $1", invoice).await;
    let intents = stripe.payment_intents().await;
    let succeeded: Vec<_> = intents.iter().filter(|p| p["status"] == "succeeded").collect();
    assert_eq!(succeeded.len(), 1, "one charge: {intents:?}");
    let pi = succeeded[0];
    assert_eq!(pi["amount"].as_i64(), Some(total), "the invoice's total was charged");
    assert_eq!(pi["metadata"]["invoice_id"], invoice.to_string());
    let (n, amount, reference): (i64, i64, String) =
        sqlx::query_as("SELECT count(*), sum(amount_minor)::bigint, max(external_ref) FROM payments WHERE method = 'stripe'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((n, amount, reference.as_str()), (1, total, pi["id"].as_str().unwrap()), "booked once, as the PaymentIntent");
    let sub: String =
        scalar(&app, "SELECT s.status::text FROM subscriptions s JOIN invoices i ON i.subscription_id = s.id WHERE i.id = $1", invoice)
            .await;
    assert_eq!(sub, "active");
    let servers: i64 =
        scalar(&app, "SELECT count(*) FROM instances n JOIN invoices i ON i.subscription_id = n.subscription_id WHERE i.id = $1", invoice)
            .await;
    assert_eq!(servers, 1, "the server exists, with no admin step");
    let (_, page) = app.get(&c, &format!("/invoices/{invoice}")).await;
    assert!(!page.contains("id=\"card-form\""), "a paid invoice offers no payment: {page}");

    // Paying it again by card is refused before Stripe is asked.
    let (s, _, body) =
        app.post(&c, &format!("/invoices/{invoice}/card"), &[("payment_method", &card), ("csrf", &crate::helpers::csrf_of(&page))]).await;
    assert_eq!(s, 409, "{body}");
    assert_eq!(stripe.payment_intents().await.iter().filter(|p| p["status"] == "succeeded").count(), 1);

    // A forged event (wrong secret) is refused and books nothing.
    let forged = serde_json::json!({"id": "evt_forged", "type": "payment_intent.succeeded", "data": {"object": {
        "id": "pi_forged", "amount": 100000, "currency": "eur", "status": "succeeded",
        "metadata": {"account_id": pi["metadata"]["account_id"]}}}})
    .to_string();
    let sig = panel::billing::stripe::sign(forged.as_bytes(), "whsec_not_ours", chrono::Utc::now().timestamp());
    let r = reqwest::Client::new().post(app.url("/webhooks/stripe")).header("Stripe-Signature", sig).body(forged).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM payments WHERE method = 'stripe'").fetch_one(&app.pool).await.unwrap();
    assert_eq!(n, 1);
}

/// Adding funds by card: the amount is charged and credited by the webhook; a declined card
/// and a bad amount change nothing.
#[tokio::test]
async fn funds_added_by_card_through_localstripe_become_credit() {
    let stripe = LocalStripe::start().await;
    let settings = stripe.settings();
    let app = spawn_web_app_with(|s| s.stripe = Some(settings)).await;
    stripe.send_webhooks_to(&app.url("/webhooks/stripe")).await;
    let c = app.customer("funds@example.com").await;
    let (_, page) = app.get(&c, "/account/funds").await;
    assert!(page.contains("id=\"card-form\"") && page.contains("Ways to pay here: card (Stripe)"), "{page}");

    let declined = stripe.card("4000000000000341").await;
    let (s, _, body) = app.submit(&c, "/account/funds", "/account/funds/card", &[("amount", "25.00"), ("payment_method", &declined)]).await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("not charged"), "{body}");
    let card = stripe.card("4242424242424242").await;
    let (s, _, body) = app.submit(&c, "/account/funds", "/account/funds/card", &[("amount", "0.10"), ("payment_method", &card)]).await;
    assert_eq!(s, 422, "{body}");
    let (s, loc, body) = app.submit(&c, "/account/funds", "/account/funds/card", &[("amount", "25.00"), ("payment_method", &card)]).await;
    assert_eq!((s, loc.as_str()), (303, "/account/funds?done=paid_card"), "{body}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, page) = app.get(&c, "/account/funds").await;
        if page.contains("id=\"credit\">25.00") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the credit did not arrive: {page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM payments WHERE method = 'stripe' AND amount_minor = 2500")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(stripe.payment_intents().await.iter().filter(|p| p["status"] == "succeeded").count(), 1);
}
