//! Email: askama templates (`templates/email/*.txt`) rendered from an outbox row's data, sent
//! with lettre over SMTP, and the delivery worker that drains `email_outbox`.
//!
//! The worker claims due rows with `FOR UPDATE SKIP LOCKED` (so several panel processes can
//! run it without sending a row twice at the same time), sends each, and marks it sent in the
//! same transaction; a failure is retried with exponential backoff and given up after
//! [`MAX_ATTEMPTS`], the last error kept on the row. Delivery is at least once: a crash between
//! the SMTP server's acceptance and the commit sends that one mail again on restart.

use crate::config::SmtpSettings;
use crate::db::outbox_delivery as sql;
use askama::Template;
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use serde_json::Value;
use sqlx::PgPool;
use std::time::Duration;

/// Attempts before a mail is given up (the row keeps its last error for an admin to see).
pub const MAX_ATTEMPTS: i32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("unknown email template {0:?}")]
    UnknownTemplate(String),
    #[error("template: {0}")]
    Render(#[from] askama::Error),
    #[error("address: {0}")]
    Address(#[from] lettre::address::AddressError),
    #[error("message: {0}")]
    Message(#[from] lettre::error::Error),
    #[error("smtp: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// An email ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

/// What every template can read: the outbox row's data, by key.
pub struct Data<'a>(&'a Value);

impl Data<'_> {
    /// A value as text ("" when absent), so a template never fails on a missing key.
    pub fn s(&self, key: &str) -> String {
        match self.0.get(key) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        }
    }
    /// A whole number (0 when absent or not a number), for a template to choose its wording.
    pub fn n(&self, key: &str) -> i64 {
        self.0.get(key).and_then(Value::as_i64).unwrap_or(0)
    }
    /// Every (key, value) of the data, for the "details" footer.
    /// "Hello Ana," or "Hello," when the name is unknown.
    pub fn greeting(&self) -> String {
        let n = self.s("name");
        if n.trim().is_empty() {
            "Hello,".into()
        } else {
            format!("Hello {},", n.trim())
        }
    }
    pub fn all(&self) -> Vec<(String, String)> {
        match self.0 {
            Value::Object(m) => m.keys().map(|k| (k.clone(), self.s(k))).collect(),
            _ => Vec::new(),
        }
    }
}

macro_rules! email_templates {
    ($($name:literal, $path:literal => $ty:ident),* $(,)?) => {
        $(
            #[derive(Template)]
            #[template(path = $path)]
            struct $ty<'a> {
                d: Data<'a>,
            }
        )*
        /// Every template name the outbox may hold.
        pub const TEMPLATES: &[&str] = &[$($name),*];

        fn render_body(template: &str, data: &Value) -> Result<String, EmailError> {
            match template {
                $($name => Ok($ty { d: Data(data) }.render()?),)*
                other => Err(EmailError::UnknownTemplate(other.to_string())),
            }
        }
    };
}

email_templates! {
    "verify_email", "email/verify_email.txt" => VerifyEmail,
    "change_email", "email/change_email.txt" => ChangeEmail,
    "account_suspended", "email/account_suspended.txt" => AccountSuspended,
    "account_reactivated", "email/account_reactivated.txt" => AccountReactivated,
    "password_reset", "email/password_reset.txt" => PasswordReset,
    "reseller_invitation", "email/reseller_invitation.txt" => ResellerInvitation,
    "invoice_issued", "email/invoice_issued.txt" => InvoiceIssued,
    "payment_received", "email/payment_received.txt" => PaymentReceived,
    "payment_reminder_before", "email/payment_reminder_before.txt" => PaymentReminderBefore,
    "payment_reminder_after", "email/payment_reminder_after.txt" => PaymentReminderAfter,
    "service_suspended", "email/service_suspended.txt" => ServiceSuspended,
    "service_unsuspended", "email/service_unsuspended.txt" => ServiceUnsuspended,
    "service_terminated", "email/service_terminated.txt" => ServiceTerminated,
    "credit_note_issued", "email/credit_note_issued.txt" => CreditNoteIssued,
    "capacity_needed", "email/capacity_needed.txt" => CapacityNeeded,
    "capacity_refunded", "email/capacity_refunded.txt" => CapacityRefunded,
    "order_refunded", "email/order_refunded.txt" => OrderRefunded,
    "server_ready", "email/server_ready.txt" => ServerReady,
}

/// Templates whose `link` is a single-use secret (a password reset, an email verification, a new
/// reseller's invitation, or a change of address): whoever reads the link can
/// take over the account. A test holds every template that says its link "works once" to this.
pub const SECRET_LINK_TEMPLATES: &[&str] = &["verify_email", "password_reset", "change_email", "reseller_invitation"];

/// What stands in for a secret link where staff read a mail (the admin's mail page).
pub const SECRET_LINK_HIDDEN: &str = "(a single-use link was sent; it is not shown here)";

/// The mail's data as staff may see it: a single-use secret link replaced by a note that one
/// was sent. The mail itself (the worker's render) keeps the link.
pub fn without_secrets(template: &str, data: &Value) -> Value {
    let mut d = data.clone();
    if SECRET_LINK_TEMPLATES.contains(&template) {
        if let Value::Object(m) = &mut d {
            if m.contains_key("link") {
                m.insert("link".into(), Value::String(SECRET_LINK_HIDDEN.into()));
            }
        }
    }
    d
}

/// Adds what templates show but producers store raw: invoice numbers, amounts with their
/// currency, dates, links into the panel, and the server's hostname for a subscription.
pub async fn enrich(pool: &PgPool, base_url: &str, data: &Value) -> Result<Value, EmailError> {
    use crate::money::{Currency, Money};
    let mut d = match data {
        Value::Object(m) => m.clone(),
        _ => return Ok(data.clone()),
    };
    let base = base_url.trim_end_matches('/');
    let money =
        |minor: Option<i64>, cur: Option<&str>| -> Option<String> { Some(Money::new(minor?, Currency::parse(cur?).ok()?).to_string()) };
    let cur = d.get("currency").and_then(Value::as_str).map(str::to_string);
    if let (Some(y), Some(n)) = (d.get("number_year").and_then(Value::as_i64), d.get("number_seq").and_then(Value::as_i64)) {
        let cn = d.get("kind").and_then(Value::as_str) == Some("credit_note");
        d.entry("number").or_insert(Value::String(crate::billing::invoice_number(cn, y as i32, n as i32)));
    }
    if let Some(t) = money(d.get("total_minor").and_then(Value::as_i64), cur.as_deref()) {
        d.entry("total").or_insert(Value::String(t));
    }
    if let Some(a) = money(d.get("amount_minor").and_then(Value::as_i64), cur.as_deref()) {
        d.entry("amount").or_insert(Value::String(a));
    }
    for (minor, text) in [("cancelled_minor", "cancelled"), ("credited_minor", "credited")] {
        if let Some(a) = money(d.get(minor).and_then(Value::as_i64), cur.as_deref()) {
            d.entry(text).or_insert(Value::String(a));
        }
    }
    if let Some(due) = d.get("due_at").and_then(Value::as_str).and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()) {
        d.insert("due_at".into(), Value::String(due.format("%Y-%m-%d").to_string()));
    }
    if let Some(end) = d.get("period_end").and_then(Value::as_str).and_then(|s| s.parse::<chrono::NaiveDate>().ok()) {
        // Stored half-open; the mail names the last day included, as the invoice does.
        d.insert("period_last_day".into(), Value::String(crate::billing::period::last_day(end).to_string()));
    }
    if let Some(id) = d.get("instance_id").and_then(Value::as_str).map(str::to_string) {
        d.entry("link").or_insert(Value::String(format!("{base}/servers/{id}")));
    }
    if let Some(id) = d.get("invoice_id").and_then(Value::as_str).map(str::to_string) {
        d.entry("link").or_insert(Value::String(format!("{base}/invoices/{id}")));
    }
    if let Some(sub) = d.get("subscription_id").and_then(Value::as_str).and_then(|s| uuid::Uuid::parse_str(s).ok()) {
        if let Some((host, name)) = sql::subscription_facts(pool, sub).await? {
            d.entry("hostname").or_insert(Value::String(host));
            d.entry("name").or_insert(Value::String(name));
        }
        d.entry("link").or_insert(Value::String(format!("{base}/invoices")));
    }
    Ok(Value::Object(d))
}

/// Renders a template: its first line is `Subject: …`, the rest (after a blank line) the body.
pub fn render(template: &str, data: &Value) -> Result<Rendered, EmailError> {
    let text = render_body(template, data)?;
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let subject = first.strip_prefix("Subject:").unwrap_or(first).trim().to_string();
    Ok(Rendered { subject, body: rest.trim_start_matches(['\r', '\n']).to_string() })
}

/// Sends mail over SMTP.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// Where links in mails point (the panel's public URL).
    pub base_url: String,
}

impl Mailer {
    pub fn new(s: &SmtpSettings) -> Result<Self, EmailError> {
        let mut b = if s.tls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
        };
        b = b.port(s.port).timeout(Some(Duration::from_secs(20)));
        if !s.username.is_empty() {
            b = b.credentials(Credentials::new(s.username.clone(), s.password.expose_secret().to_string()));
        }
        Ok(Self { transport: b.build(), from: s.from.parse()?, base_url: String::new() })
    }

    pub async fn send(&self, to: &str, mail: &Rendered) -> Result<(), EmailError> {
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to.parse()?)
            .subject(mail.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())?;
        self.transport.send(msg).await?;
        Ok(())
    }
}

/// Backoff after the n-th failed attempt: 30 s, 1 min, 2 min, … capped at 6 hours.
pub fn backoff(attempts: i32) -> Duration {
    let secs = 30u64.saturating_mul(1u64 << attempts.clamp(0, 20).saturating_sub(1));
    Duration::from_secs(secs.min(6 * 3600))
}

/// Sends up to `batch` due mails. Returns how many were sent.
pub async fn deliver_due(pool: &PgPool, mailer: &Mailer, batch: i64) -> Result<usize, EmailError> {
    let mut tx = pool.begin().await?;
    let rows = sql::claim_due(&mut tx, batch, MAX_ATTEMPTS).await?;
    let mut sent = 0;
    for row in rows {
        let data = enrich(pool, &mailer.base_url, &row.data).await?;
        let result = match render(&row.template, &data) {
            Ok(mail) => mailer.send(&row.to_address, &mail).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                sql::mark_sent(&mut tx, row.id).await?;
                sent += 1;
                tracing::info!(id = row.id, template = %row.template, "email sent");
            }
            Err(e) => {
                // A template that does not exist will never render: give up at once.
                let attempts = if matches!(e, EmailError::UnknownTemplate(_)) { MAX_ATTEMPTS } else { row.attempts + 1 };
                let retry_in = backoff(attempts);
                tracing::warn!(id = row.id, template = %row.template, attempts, error = %e, "email not sent; will retry");
                sql::mark_failed(&mut tx, row.id, attempts, &e.to_string(), retry_in.as_secs() as i64).await?;
            }
        }
    }
    tx.commit().await?;
    Ok(sent)
}

/// Runs [`deliver_due`] every `poll` until the process ends.
pub fn spawn_worker(pool: PgPool, mailer: Mailer, poll: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match deliver_due(&pool, &mailer, 20).await {
                Ok(n) if n > 0 => continue, // more may be waiting
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "email worker: pass failed"),
            }
            tokio::time::sleep(poll).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_template_renders_with_a_subject() {
        let data = json!({"link": "http://x/verify/abc", "name": "Ana", "number": "2026-000001", "total": "12.00 EUR",
                          "due_at": "2026-12-01", "hostname": "web1.example.com", "amount": "12.00 EUR", "minutes": 60});
        for t in TEMPLATES {
            let r = render(t, &data).unwrap();
            assert!(!r.subject.is_empty() && !r.subject.contains('\n'), "{t}: {r:?}");
            assert!(r.body.len() > 20, "{t}: {r:?}");
        }
        assert!(render("verify_email", &data).unwrap().body.contains("http://x/verify/abc"));
        assert!(matches!(render("nope", &data), Err(EmailError::UnknownTemplate(_))));
        // Missing keys render as empty, never fail.
        assert!(render("invoice_issued", &json!({})).is_ok());
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(30));
        assert_eq!(backoff(2), Duration::from_secs(60));
        assert_eq!(backoff(30), Duration::from_secs(6 * 3600));
    }

    /// A new mail with a single-use link must be listed as secret, or the admin's mail page
    /// would show it.
    #[test]
    fn every_single_use_link_template_is_hidden_from_staff() {
        for t in TEMPLATES {
            let data = serde_json::json!({ "link": "https://x/secret-token", "minutes": 30 });
            let body = render(t, &data).unwrap().body;
            if body.contains("works once") {
                assert!(SECRET_LINK_TEMPLATES.contains(t), "{t} carries a single-use link: add it to SECRET_LINK_TEMPLATES");
                assert!(!render(t, &without_secrets(t, &data)).unwrap().body.contains("secret-token"), "{t}");
            }
        }
    }
}
