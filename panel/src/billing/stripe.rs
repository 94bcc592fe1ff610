//! Card payments through Stripe's Payment Intents, and Stripe's signed webhooks.
//!
//! The browser turns the card into a payment method with Stripe.js (the card number never
//! reaches the panel); the panel creates and confirms a PaymentIntent for the amount with the
//! account (and the invoice) in its metadata ([`charge_card`]); the signed
//! `payment_intent.succeeded` webhook credits the account and pays the invoice. The webhook is
//! the one place money is booked, so a payment confirmed later (or a page closed early) is
//! booked exactly once all the same. (`checkout.session.completed` from Stripe Checkout is
//! booked the same way, for sessions made before Payment Intents.)
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

/// The part of a PaymentIntent the webhook books.
#[derive(Debug, Deserialize)]
struct PaymentIntent {
    id: String,
    amount: i64,
    currency: String,
    status: String,
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
    let paid = match event.kind.as_str() {
        "checkout.session.completed" => {
            let s: CheckoutSession =
                serde_json::from_value(event.data.object).map_err(|e| BillingError::Invalid(format!("not a checkout session: {e}")))?;
            let customer = s.client_reference_id.as_deref().and_then(|c| c.parse().ok());
            (s.payment_status == "paid").then_some((s.id, customer, s.amount_total, s.currency, s.metadata))
        }
        "payment_intent.succeeded" => {
            let p: PaymentIntent =
                serde_json::from_value(event.data.object).map_err(|e| BillingError::Invalid(format!("not a payment intent: {e}")))?;
            let customer = p.metadata.get(META_ACCOUNT).and_then(|c| c.parse().ok());
            (p.status == "succeeded").then_some((p.id, customer, p.amount, p.currency, p.metadata))
        }
        _ => None,
    };
    let outcome = match paid {
        None => WebhookOutcome::Ignored,
        Some((reference, customer, amount, currency, metadata)) => {
            let customer: Uuid = customer.ok_or_else(|| BillingError::Invalid("the payment names no customer".into()))?;
            let currency = Currency::parse(&currency.to_uppercase()).map_err(|e| BillingError::Invalid(e.to_string()))?;
            match top_up(&mut tx, customer, Method::Stripe, Money::new(amount, currency), &reference, None, now).await? {
                None => WebhookOutcome::AlreadyProcessed,
                Some(payment_id) => {
                    let invoice = metadata.get(META_INVOICE).and_then(|i| i.parse::<Uuid>().ok());
                    // The invoice it was for, then whatever else is open, oldest first, and the mail.
                    let paid =
                        settle(&mut tx, customer, Money::new(amount, currency), payment_id, invoice.map(|i| (i, false)), now).await?;
                    let invoice_paid =
                        invoice.is_some() && !paid.is_empty() && crate::db::invoices::is_paid(&mut tx, invoice.unwrap_or_default()).await?;
                    WebhookOutcome::Credited { payment_id, invoice_paid }
                }
            }
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// The metadata keys a PaymentIntent carries: whose credit it is, and the invoice it pays.
pub const META_ACCOUNT: &str = "account_id";
pub const META_INVOICE: &str = "invoice_id";

/// Where and how to reach Stripe (`[stripe]`, or `VESSEL__STRIPE__…`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeSettings {
    pub secret_key: secrecy::SecretString,
    /// `pk_…`: what the browser's Stripe.js identifies itself with.
    pub publishable_key: String,
    pub webhook_secret: secrecy::SecretString,
    /// The API's base URL: `https://api.stripe.com`, or a local Stripe server (the tests' localstripe).
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// Stripe.js: `https://js.stripe.com/v3/`, or a local server's (localstripe serves its
    /// mock at `<base>/js.stripe.com/v3/`).
    #[serde(default = "default_js_url")]
    pub js_url: String,
}

fn default_api_base() -> String {
    "https://api.stripe.com".into()
}

fn default_js_url() -> String {
    "https://js.stripe.com/v3/".into()
}

/// A payment method id made by Stripe.js in the customer's browser: `pm_…` (a PaymentMethod)
/// or `card_…` (the card of a token). Anything else is refused before Stripe is asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentMethodId(String);

impl PaymentMethodId {
    pub fn parse(s: &str) -> Result<Self, BillingError> {
        let s = s.trim();
        let ok =
            (s.starts_with("pm_") || s.starts_with("card_")) && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(BillingError::Invalid("the card was not read (no payment method from Stripe.js); enter it again".into()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What confirming a card payment came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CardCharge {
    /// Charged (`succeeded`) or on its way (`processing`): the webhook books it.
    Accepted { payment_intent: String },
    /// The bank wants the cardholder to authenticate (3-D Secure), which this page cannot do.
    NeedsAuthentication { payment_intent: String },
    /// Declined or refused: nothing was charged. Stripe's message, for the customer.
    Declined(String),
}

/// Creates and confirms a PaymentIntent for `amount` on the card `method`, for `account`'s
/// credit (and `invoice`, when paying one). `idempotency_key` makes a resubmitted form one
/// charge at Stripe.
pub async fn charge_card(
    settings: &StripeSettings,
    http: &reqwest::Client,
    account: Uuid,
    amount: Money,
    invoice: Option<Uuid>,
    method: &PaymentMethodId,
    idempotency_key: &str,
) -> Result<CardCharge, BillingError> {
    use secrecy::ExposeSecret;
    let mut form = vec![
        ("amount".to_string(), amount.minor.to_string()),
        ("currency".into(), amount.currency.as_str().to_lowercase()),
        ("payment_method".into(), method.as_str().to_string()),
        ("payment_method_types[0]".into(), "card".into()),
        ("confirm".into(), "true".into()),
        (format!("metadata[{META_ACCOUNT}]"), account.to_string()),
    ];
    if let Some(inv) = invoice {
        form.push((format!("metadata[{META_INVOICE}]"), inv.to_string()));
    }
    let r = http
        .post(format!("{}/v1/payment_intents", settings.api_base.trim_end_matches('/')))
        .bearer_auth(settings.secret_key.expose_secret())
        .header("Idempotency-Key", idempotency_key)
        .timeout(std::time::Duration::from_secs(30))
        .form(&form)
        .send()
        .await
        .map_err(|e| BillingError::Gateway(e.to_string()))?;
    let status = r.status();
    let body: serde_json::Value = r.json().await.map_err(|e| BillingError::Gateway(e.to_string()))?;
    // 402 is a declined card; other 4xx with a card error are the card's fault too.
    if status == reqwest::StatusCode::PAYMENT_REQUIRED || (status.is_client_error() && body["error"]["type"] == "card_error") {
        let message = body["error"]["message"].as_str().unwrap_or("The card was declined.").to_string();
        return Ok(CardCharge::Declined(message));
    }
    if !status.is_success() {
        return Err(BillingError::Gateway(format!("Stripe answered {status}: {}", body["error"]["message"])));
    }
    let id = body["id"].as_str().ok_or_else(|| BillingError::Gateway("no id in Stripe's answer".into()))?.to_string();
    match body["status"].as_str() {
        Some("succeeded" | "processing") => Ok(CardCharge::Accepted { payment_intent: id }),
        Some("requires_action") => Ok(CardCharge::NeedsAuthentication { payment_intent: id }),
        Some("requires_payment_method") => {
            Ok(CardCharge::Declined(body["last_payment_error"]["message"].as_str().unwrap_or("The card was declined.").to_string()))
        }
        other => Err(BillingError::Gateway(format!("unexpected payment status {other:?}"))),
    }
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
