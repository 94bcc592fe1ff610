//! A customer's VPS as the panel sees them, and the actions they may ask for. An action
//! records the desired state and a durable job; the orchestration makes the host follow.

use crate::clock::Clock;
use crate::db::instances as sql;
use crate::ids::{AccountId, InstanceId};
use crate::vps::{self, Refusal, Request, Scope, VpsError};
use sqlx::PgPool;
use uuid::Uuid;
use vessel_core::Action;

pub use sql::InstanceRow;

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// Also what another customer's VPS looks like: no leak that it exists.
    #[error("no such VPS")]
    NotFound,
    #[error("this VPS is suspended for an overdue invoice: pay it and the VPS starts again")]
    Suspended,
    #[error("this VPS is terminated")]
    Terminated,
    #[error("this VPS is not running: start it instead")]
    NotRunning,
    #[error("this VPS is in rescue: leave rescue first")]
    InRescue,
    #[error("this VPS is not in rescue")]
    NotInRescue,
    #[error("{0:?} is not an action customers can ask for")]
    NotAllowed(Action),
    /// A mistake in what was asked, in words the customer can act on.
    #[error("{0}")]
    Invalid(String),
    /// The price changed between the quote shown and the confirmation: nothing was done.
    #[error("the amount changed since it was shown to you ({shown} then, {now} now): nothing was changed; look at the new amount and confirm again")]
    QuoteChanged { shown: String, now: String },
    #[error(transparent)]
    Billing(#[from] crate::billing::BillingError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

pub async fn list_for(pool: &PgPool, customer: AccountId) -> Result<Vec<InstanceRow>, InstanceError> {
    Ok(sql::list_for(pool, customer).await?)
}

pub async fn get_for(pool: &PgPool, customer: AccountId, id: InstanceId) -> Result<Option<InstanceRow>, InstanceError> {
    Ok(sql::get(pool, id, Some(customer)).await?)
}

/// One address of a server with its network, as the server's page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkLine {
    pub address: String,
    pub prefix_len: i32,
    pub gateway: String,
    /// Dotted for IPv4 (`255.255.255.0`), the prefix for IPv6 (`/64`).
    pub netmask: String,
    /// The pool's resolvers.
    pub dns: Vec<String>,
}

/// The netmask of an IPv4 prefix (`24` → `255.255.255.0`), or `/len` for IPv6.
pub fn netmask(v4: bool, prefix_len: i32) -> String {
    match v4 {
        true => std::net::Ipv4Addr::from(u32::MAX.checked_shl(32 - prefix_len.clamp(0, 32) as u32).unwrap_or(0)).to_string(),
        false => format!("/{prefix_len}"),
    }
}

/// The addresses of a server its customer may see (the caller checked the ownership: the id
/// comes from [`get_for`]), IPv4 first.
pub async fn network_of(pool: &PgPool, id: InstanceId) -> Result<Vec<NetworkLine>, InstanceError> {
    Ok(crate::db::hosts::addresses_of(pool, id)
        .await?
        .into_iter()
        .map(|a| NetworkLine {
            netmask: netmask(!a.address.contains(':'), a.prefix_len),
            address: a.address,
            prefix_len: a.prefix_len,
            gateway: a.gateway,
            dns: a.dns,
        })
        .collect())
}

/// A customer asks for start / stop / restart / reinstall / rescue (and back) of one of their VPS (the rules and
/// the lock order are [`crate::vps`]'s).
pub async fn request_action(
    pool: &PgPool,
    clock: &dyn Clock,
    customer: AccountId,
    id: InstanceId,
    action: Action,
) -> Result<(), InstanceError> {
    let request = match action {
        Action::Start => Request::Start,
        Action::Stop => Request::Stop,
        Action::Restart => Request::Restart,
        Action::Reinstall => Request::Reinstall,
        Action::Rescue => Request::Rescue,
        Action::LeaveRescue => Request::LeaveRescue,
        other => return Err(InstanceError::NotAllowed(other)),
    };
    let mut tx = pool.begin().await?;
    vps::request(&mut tx, id, Scope::customer(customer), request, clock.now()).await?;
    tx.commit().await?;
    Ok(())
}

/// A customer ends one of their VPS now: the VPS and its subscription are terminated and the
/// unused part of the period comes back as a credit note, by the one rule
/// ([`crate::subscriptions::end_by_owner`]; the reseller API's `terminate` does the same).
/// Locks in the one order: the customer's balance row, the subscription, the instance.
/// Returns the amount given back (before tax).
pub async fn terminate_now(pool: &PgPool, clock: &dyn Clock, customer: AccountId, id: InstanceId) -> Result<i64, InstanceError> {
    let now = clock.now();
    let scope = Scope::customer(customer);
    let mut tx = pool.begin().await?;
    if let Some(sub) = vps::subscription_of(&mut tx, id, scope).await? {
        if let Some((payer, currency)) = crate::db::subscriptions::payer_of(&mut tx, sub, None).await? {
            crate::billing::ledger::lock_credit(&mut tx, payer.0, &currency).await?;
        }
    }
    let server = vps::request(&mut tx, id, scope, Request::Terminate, now).await?;
    let refund = crate::subscriptions::end_by_owner(&mut tx, &server, now).await?;
    tx.commit().await?;
    Ok(refund.map(|(_, a)| a).unwrap_or(0))
}

/// How a customer is told (every suspension reads as billing's to them, as before).
impl From<VpsError> for InstanceError {
    fn from(e: VpsError) -> Self {
        match e {
            VpsError::NotFound => InstanceError::NotFound,
            VpsError::Db(e) => InstanceError::Db(e),
            VpsError::Refused(Refusal::Terminated) => InstanceError::Terminated,
            VpsError::Refused(Refusal::NotRunning) => InstanceError::NotRunning,
            VpsError::Refused(Refusal::InRescue) => InstanceError::InRescue,
            VpsError::Refused(Refusal::NotInRescue) => InstanceError::NotInRescue,
            VpsError::Refused(_) => InstanceError::Suspended,
        }
    }
}

// ------------------------------------------------------------------ the customer's lifecycle pages

/// What a plan change (or an early end) costs or gives back, exactly as the invoice or credit
/// note it makes: computed by making them in a transaction that is rolled back, so the quote
/// and the document cannot differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    pub kind: QuoteKind,
    pub subtotal_minor: i64,
    pub tax_minor: i64,
    pub total_minor: i64,
    pub currency: String,
    /// The invoice or credit note made (rolled back for a quote).
    pub document_id: Option<Uuid>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuoteKind {
    /// An invoice for the difference, due now.
    Charge,
    /// A credit note: off what is still owed, then back as account credit.
    Credit,
    /// Nothing to pay or get back.
    Even,
}

impl Quote {
    fn show(&self, minor: i64) -> String {
        match crate::money::Currency::parse(&self.currency) {
            Ok(c) => crate::money::Money::new(minor, c).to_string(),
            Err(_) => format!("{} {}", minor, self.currency),
        }
    }
    pub fn total(&self) -> String {
        self.show(self.total_minor)
    }
    pub fn subtotal(&self) -> String {
        self.show(self.subtotal_minor)
    }
    pub fn tax(&self) -> String {
        self.show(self.tax_minor)
    }
}

async fn quote_of(
    tx: &mut crate::db::Tx<'_>,
    customer: AccountId,
    kind: QuoteKind,
    document: Option<Uuid>,
    currency: &str,
) -> Result<Quote, InstanceError> {
    let Some(id) = document else {
        return Ok(Quote {
            kind: QuoteKind::Even,
            subtotal_minor: 0,
            tax_minor: 0,
            total_minor: 0,
            currency: currency.to_string(),
            document_id: None,
        });
    };
    let inv = crate::db::invoices::lock(tx, id, Some(customer.0)).await?.ok_or(InstanceError::NotFound)?;
    Ok(Quote {
        kind,
        subtotal_minor: inv.subtotal_minor,
        tax_minor: inv.tax_minor,
        total_minor: inv.total_minor,
        currency: inv.currency.clone(),
        document_id: Some(id),
    })
}

/// Changes a customer's VPS to another plan of its kind in the caller's transaction: the
/// payer's balance row, then [`vps`]'s rules (a suspended or terminated VPS cannot), then
/// prorated billing (`billing::proration`, which queues the resize). Returns the quote.
async fn change_plan_in(
    tx: &mut crate::db::Tx<'_>,
    now: chrono::DateTime<chrono::Utc>,
    customer: AccountId,
    id: InstanceId,
    plan: &str,
) -> Result<Quote, InstanceError> {
    use crate::billing::proration::{self, PlanChange};
    let scope = Scope::customer(customer);
    let sub = vps::subscription_of(tx, id, scope).await?.ok_or(InstanceError::NotFound)?;
    let (payer, currency) = crate::db::subscriptions::payer_of(tx, sub, None).await?.ok_or(InstanceError::NotFound)?;
    crate::billing::ledger::lock_credit(tx, payer.0, &currency).await?;
    vps::request(tx, id, scope, Request::Resize, now).await?;
    let change = proration::change_plan_in(tx, now, payer.0, sub.0, plan.trim(), 0).await?;
    match change {
        PlanChange::Charged { invoice_id, .. } => quote_of(tx, payer, QuoteKind::Charge, Some(invoice_id), &currency).await,
        PlanChange::Credited { credit_note_id, .. } => quote_of(tx, payer, QuoteKind::Credit, Some(credit_note_id), &currency).await,
        PlanChange::Even => quote_of(tx, payer, QuoteKind::Even, None, &currency).await,
    }
}

/// What moving to `plan` would cost or give back now, without changing anything.
pub async fn quote_plan_change(
    pool: &PgPool,
    clock: &dyn Clock,
    customer: AccountId,
    id: InstanceId,
    plan: &str,
) -> Result<Quote, InstanceError> {
    let mut tx = pool.begin().await?;
    let q = change_plan_in(&mut tx, clock.now(), customer, id, plan).await;
    tx.rollback().await?;
    q
}

/// Moves a customer's VPS to `plan`, if what it costs is still the total the customer was
/// shown (`shown_total_minor`); otherwise nothing changes and the new amount is named.
pub async fn change_plan(
    pool: &PgPool,
    clock: &dyn Clock,
    customer: AccountId,
    id: InstanceId,
    plan: &str,
    shown_total_minor: i64,
) -> Result<Quote, InstanceError> {
    let mut tx = pool.begin().await?;
    let q = change_plan_in(&mut tx, clock.now(), customer, id, plan).await?;
    let signed = match q.kind {
        QuoteKind::Credit => -q.total_minor,
        _ => q.total_minor,
    };
    if signed != shown_total_minor {
        tx.rollback().await?;
        let cur = crate::money::Currency::parse(&q.currency).map_err(|e| InstanceError::Invalid(e.to_string()))?;
        return Err(InstanceError::QuoteChanged {
            shown: crate::money::Money::new(shown_total_minor, cur).to_string(),
            now: crate::money::Money::new(signed, cur).to_string(),
        });
    }
    tx.commit().await?;
    Ok(q)
}

/// What ending a VPS now would give back (the credit note of [`terminate_now`]), without ending it.
pub async fn quote_terminate(pool: &PgPool, clock: &dyn Clock, customer: AccountId, id: InstanceId) -> Result<Quote, InstanceError> {
    let now = clock.now();
    let scope = Scope::customer(customer);
    let mut tx = pool.begin().await?;
    let sub = vps::subscription_of(&mut tx, id, scope).await?.ok_or(InstanceError::NotFound)?;
    let (payer, currency) = crate::db::subscriptions::payer_of(&mut tx, sub, None).await?.ok_or(InstanceError::NotFound)?;
    crate::billing::ledger::lock_credit(&mut tx, payer.0, &currency).await?;
    let server = vps::request(&mut tx, id, scope, Request::Terminate, now).await?;
    let refund = crate::subscriptions::end_by_owner(&mut tx, &server, now).await?;
    let q = match refund {
        Some((note, _)) => quote_of(&mut tx, payer, QuoteKind::Credit, Some(note), &currency).await,
        None => quote_of(&mut tx, payer, QuoteKind::Even, None, &currency).await,
    };
    tx.rollback().await?;
    q
}

/// Ends a VPS at the end of its paid period (`on`), or takes that back: the period is not
/// renewed, and the renewal run ends the VPS when the period is over.
pub async fn cancel_at_period_end(pool: &PgPool, customer: AccountId, id: InstanceId, on: bool) -> Result<(), InstanceError> {
    let mut tx = pool.begin().await?;
    let sub = vps::subscription_of(&mut tx, id, Scope::customer(customer)).await?.ok_or(InstanceError::NotFound)?;
    if !crate::db::subscriptions::set_cancel_at_period_end(&mut tx, sub.0, customer.0, on).await? {
        return Err(InstanceError::Invalid("only a server that is live can be cancelled at the end of its period".into()));
    }
    tx.commit().await?;
    Ok(())
}

/// Reinstalls a VPS with `template` (an enabled OS template for its kind), or with its own
/// when `None`: the template is recorded in the same transaction as the job, which reads it.
pub async fn reinstall(
    pool: &PgPool,
    clock: &dyn Clock,
    customer: AccountId,
    id: InstanceId,
    template: Option<&str>,
) -> Result<(), InstanceError> {
    let mut tx = pool.begin().await?;
    let server = vps::request(&mut tx, id, Scope::customer(customer), Request::Reinstall, clock.now()).await?;
    if let Some(name) = template.map(str::trim).filter(|n| !n.is_empty()) {
        let kind = crate::db::plans::kind_of(&mut tx, server.plan_id).await?;
        let (tpl, for_ct, for_kvm) = crate::db::subscriptions::template(&mut tx, name)
            .await?
            .ok_or_else(|| InstanceError::Invalid("that operating system is not offered".into()))?;
        let fits = match kind {
            vessel_core::InstanceKind::Container => for_ct,
            vessel_core::InstanceKind::Kvm => for_kvm,
        };
        if !fits {
            return Err(InstanceError::Invalid("that operating system is not offered for this kind of server".into()));
        }
        crate::db::resellers::set_template(&mut tx, id.0, tpl).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod netmask_tests {
    #[test]
    fn netmasks() {
        assert_eq!(super::netmask(true, 24), "255.255.255.0");
        assert_eq!(super::netmask(true, 26), "255.255.255.192");
        assert_eq!(super::netmask(true, 32), "255.255.255.255");
        assert_eq!(super::netmask(true, 0), "0.0.0.0");
        assert_eq!(super::netmask(false, 64), "/64");
    }
}
