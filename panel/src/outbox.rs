//! The email outbox: billing and accounts write the emails they owe into `email_outbox` in
//! the same transaction as the change that owes them, so a crash can neither lose a reminder
//! nor send one for a change that rolled back. A delivery worker sends them over SMTP.

use crate::accounts::Email;
use crate::db::{outbox as sql, Tx};
use serde_json::Value;

/// Queues an email. With a `dedupe_key`, queueing the same email twice (a retried run) is a
/// no-op; returns whether a row was added.
pub async fn enqueue(tx: &mut Tx<'_>, to: &Email, template: &str, data: Value, dedupe_key: Option<String>) -> Result<bool, sqlx::Error> {
    sql::insert(tx, to.as_str(), template, data, dedupe_key.as_deref()).await
}
