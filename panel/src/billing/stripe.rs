//! Stripe Checkout: a hosted payment page for adding account credit (or paying an invoice),
//! and its signed webhooks.
//!
//! Signatures are checked as Stripe documents them: the `Stripe-Signature` header carries
//! `t=<unix time>` and one or more `v1=<hex>`; the expected `v1` is HMAC-SHA256 over
//! `"<t>.<raw body>"` with the endpoint's signing secret, compared in constant time, and `t`
//! must be within the tolerance (5 minutes) of now, so a captured request cannot be replayed
//! later. Each event id is processed once (`webhook_events`), and the payment's own id is the
//! payment's external reference, so a redelivered event adds no credit twice.

use super::payments::{settle, top_up, Method};
use super::BillingError;
use crate::clock::Clock;
use crate::db::payments as sql;
use crate::money::{Currency, Money};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use sqlx::PgPool;
use uuid::Uuid;

pub const TOLERANCE_SECS: i64 = 300;

/// Verifies a webhook's `Stripe-Signature` header against the raw body.
pub fn verify_signature(payload: &[u8], header: &str, secret: &str, now_unix: i64) -> Result<(), BillingError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let t = timestamp.ok_or(BillingError::BadSignature("no timestamp"))?;
    if signatures.is_empty() {
        return Err(BillingError::BadSignature("no v1 signature"));
    }
    if (now_unix - t).abs() > TOLERANCE_SECS {
        return Err(BillingError::BadSignature("timestamp outside the tolerance (a replay?)"));
    }
    for sig in signatures {
        let Ok(bytes) = hex::decode(sig) else { continue };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(payload);
        if mac.verify_slice(&bytes).is_ok() {
            return Ok(());
        }
    }
    Err(BillingError::BadSignature("no signature matches"))
}

/// Signs a payload the way Stripe does (for tests and for local tools).
pub fn sign(payload: &[u8], secret: &str, t: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct CheckoutSession {
    id: String,
    amount_total: i64,
    currency: String,
    client_reference_id: Option<String>,
    payment_status: String,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Credit added (and the invoice paid, when the session named one).
    Credited { payment_id: Uuid, invoice_paid: bool },
    /// Seen before: nothing done again.
    AlreadyProcessed,
    /// An event type we do not act on (acknowledged so Stripe stops resending it).
    Ignored,
}

/// Verifies and processes one webhook delivery.
pub async fn handle_webhook(
    pool: &PgPool,
    clock: &dyn Clock,
    secret: &str,
    payload: &[u8],
    signature: &str,
) -> Result<WebhookOutcome, BillingError> {
    let now = clock.now();
    verify_signature(payload, signature, secret, now.timestamp())?;
    let event: Event = serde_json::from_slice(payload).map_err(|e| BillingError::Invalid(format!("not a Stripe event: {e}")))?;
    let mut tx = pool.begin().await?;
    if !sql::record_webhook_event(&mut tx, "stripe", &event.id, &event.kind).await? {
        return Ok(WebhookOutcome::AlreadyProcessed);
    }
    let outcome = if event.kind == "checkout.session.completed" {
        let s: CheckoutSession =
            serde_json::from_value(event.data.object).map_err(|e| BillingError::Invalid(format!("not a checkout session: {e}")))?;
        if s.payment_status != "paid" {
            WebhookOutcome::Ignored
        } else {
            let customer: Uuid = s
                .client_reference_id
                .as_deref()
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| BillingError::Invalid("the session names no customer".into()))?;
            let currency = Currency::parse(&s.currency.to_uppercase()).map_err(|e| BillingError::Invalid(e.to_string()))?;
            match top_up(&mut tx, customer, Method::Stripe, Money::new(s.amount_total, currency), &s.id, None, now).await? {
                None => WebhookOutcome::AlreadyProcessed,
                Some(payment_id) => {
                    let invoice = s.metadata.get("invoice_id").and_then(|i| i.parse::<Uuid>().ok());
                    // The invoice it was for, then whatever else is open, oldest first, and the mail.
                    let paid =
                        settle(&mut tx, customer, Money::new(s.amount_total, currency), payment_id, invoice.map(|i| (i, false)), now)
                            .await?;
                    let invoice_paid =
                        invoice.is_some() && !paid.is_empty() && crate::db::invoices::is_paid(&mut tx, invoice.unwrap_or_default()).await?;
                    WebhookOutcome::Credited { payment_id, invoice_paid }
                }
            }
        }
    } else {
        WebhookOutcome::Ignored
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Where and how to reach Stripe.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeSettings {
    pub secret_key: secrecy::SecretString,
    pub webhook_secret: secrecy::SecretString,
    /// `https://api.stripe.com`; a local stand-in in tests.
    pub api_base: String,
}

/// Creates a Checkout session for `amount` (credit for `customer`, paying `invoice` if given);
/// returns the URL to send the customer to.
pub async fn create_checkout_session(
    settings: &StripeSettings,
    http: &reqwest::Client,
    customer: Uuid,
    amount: Money,
    invoice: Option<Uuid>,
    success_url: &str,
    cancel_url: &str,
) -> Result<String, BillingError> {
    use secrecy::ExposeSecret;
    let mut form = vec![
        ("mode".to_string(), "payment".to_string()),
        ("client_reference_id".into(), customer.to_string()),
        ("success_url".into(), success_url.to_string()),
        ("cancel_url".into(), cancel_url.to_string()),
        ("line_items[0][quantity]".into(), "1".into()),
        ("line_items[0][price_data][currency]".into(), amount.currency.as_str().to_lowercase()),
        ("line_items[0][price_data][unit_amount]".into(), amount.minor.to_string()),
        ("line_items[0][price_data][product_data][name]".into(), "Account credit".into()),
    ];
    if let Some(inv) = invoice {
        form.push(("metadata[invoice_id]".into(), inv.to_string()));
    }
    let r = http
        .post(format!("{}/v1/checkout/sessions", settings.api_base.trim_end_matches('/')))
        .bearer_auth(settings.secret_key.expose_secret())
        .form(&form)
        .send()
        .await
        .map_err(|e| BillingError::Gateway(e.to_string()))?;
    let status = r.status();
    let body: serde_json::Value = r.json().await.map_err(|e| BillingError::Gateway(e.to_string()))?;
    if !status.is_success() {
        return Err(BillingError::Gateway(format!("Stripe answered {status}: {}", body["error"]["message"])));
    }
    body["url"].as_str().map(str::to_string).ok_or_else(|| BillingError::Gateway("no url in Stripe's answer".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_as_stripe_documents() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(body, "whsec_test", 1_700_000_000);
        verify_signature(body, &header, "whsec_test", 1_700_000_010).unwrap();
        // Wrong secret, tampered body, stale or future timestamp, garbage: all refused.
        assert!(verify_signature(body, &header, "whsec_other", 1_700_000_010).is_err());
        assert!(verify_signature(br#"{"id":"evt_2"}"#, &header, "whsec_test", 1_700_000_010).is_err());
        assert!(verify_signature(body, &header, "whsec_test", 1_700_000_000 + TOLERANCE_SECS + 1).is_err());
        assert!(verify_signature(body, &header, "whsec_test", 1_700_000_000 - TOLERANCE_SECS - 1).is_err());
        assert!(verify_signature(body, "v1=abc", "whsec_test", 1_700_000_000).is_err());
        assert!(verify_signature(body, "t=1700000000", "whsec_test", 1_700_000_000).is_err());
        // Several v1 signatures (during secret rotation): any match is enough.
        let rotated = format!("t=1700000000,v1=00ff,{}", header.split_once(',').unwrap().1);
        verify_signature(body, &rotated, "whsec_test", 1_700_000_000).unwrap();
    }
}
