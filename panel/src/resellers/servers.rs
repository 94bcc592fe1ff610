//! Servers through the API: create one for a customer (its order, subscription, first invoice,
//! instance and provisioning job in one transaction), and act on it. A reseller's server is
//! billed to the reseller at its wholesale price, per period, by the same billing engine as a
//! customer's subscription; a direct customer's server made by an admin is billed to the
//! customer at the retail price. Both run at once: the paying account owes the first invoice.

use super::{check_quota, invalid, Footprint, ResellerError};
use crate::api_keys::{Principal, Tenant};
use crate::audit;
use crate::billing::invoices::{issue_for_subscriptions, PeriodChoice};
use crate::billing::{period, proration};
use crate::db::{instances as inst_sql, jobs, resellers as sql, subscriptions as sub_sql, Tx};
use crate::plans::BillingCycle;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;
use vessel_core::{Action, Hostname, InstanceKind};

pub use sql::{ServerFilter, ServerRow};

#[derive(Clone, Debug)]
pub struct NewServer {
    pub customer_id: Uuid,
    pub plan: String,
    pub os_template: String,
    pub hostname: String,
    pub cycle: BillingCycle,
    /// The way in (keys, root password hash), already validated and hashed.
    pub access: vessel_core::Access,
}

/// What the API may ask of a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerAction {
    Start,
    Stop,
    Restart,
    /// Wipes the disk and installs the template (a new one, or the current one again).
    Reinstall { os_template: Option<String> },
    /// The reseller's own suspension (e.g. its customer did not pay it); billing goes on.
    Suspend,
    Unsuspend,
    /// Destroys the server and ends its billing at the end of the current period.
    Terminate,
    /// Moves to another plan of the same kind; billing is prorated.
    Resize { plan: String },
}

impl ServerAction {
    pub fn name(&self) -> &'static str {
        match self {
            ServerAction::Start => "start",
            ServerAction::Stop => "stop",
            ServerAction::Restart => "restart",
            ServerAction::Reinstall { .. } => "reinstall",
            ServerAction::Suspend => "suspend",
            ServerAction::Unsuspend => "unsuspend",
            ServerAction::Terminate => "terminate",
            ServerAction::Resize { .. } => "resize",
        }
    }
}

/// Who pays for a customer's servers: (account, discount in basis points).
async fn payer(tx: &mut Tx<'_>, customer: &sql::CustomerRow) -> Result<(Uuid, i32, Option<sql::TermsRow>), ResellerError> {
    match customer.reseller_id {
        Some(r) => {
            let terms = sql::lock_terms(tx, r).await?;
            Ok((r, terms.discount_bp, Some(terms)))
        }
        None => Ok((customer.id, 0, None)),
    }
}

async fn template_for(tx: &mut Tx<'_>, name: &str, kind: InstanceKind) -> Result<Uuid, ResellerError> {
    let (id, for_ct, for_kvm) = sub_sql::template(tx, name.trim()).await?.ok_or_else(|| invalid("os_template", "no such OS template"))?;
    if (kind == InstanceKind::Container && !for_ct) || (kind == InstanceKind::Kvm && !for_kvm) {
        return Err(invalid("os_template", format!("this template is not available for {} plans", kind_name(kind))));
    }
    Ok(id)
}

fn kind_name(kind: InstanceKind) -> &'static str {
    match kind {
        InstanceKind::Container => "container",
        InstanceKind::Kvm => "KVM",
    }
}

/// Creates a server inside the caller's transaction; returns its id.
pub async fn create(tx: &mut Tx<'_>, who: &Principal, now: DateTime<Utc>, s: NewServer) -> Result<Uuid, ResellerError> {
    let hostname = Hostname::parse(&s.hostname).map_err(|e| invalid("hostname", e.to_string()))?;
    let customer = sql::lock_customer(tx, who.tenant.reseller(), s.customer_id)
        .await?
        .ok_or_else(|| invalid("customer_id", "no such customer"))?;
    if customer.status != "active" {
        return Err(invalid("customer_id", format!("this customer is {}: servers are made for active customers", customer.status)));
    }
    let (payer, discount_bp, terms) = payer(tx, &customer).await?;
    let (_, _, currency) = crate::db::accounts::account_facts(&mut **tx, payer).await?.ok_or(ResellerError::NotFound("customer"))?;
    // No new server for a payer who owes past due (its balance row first: the lock order).
    crate::billing::ledger::lock_credit(tx, payer, &currency).await?;
    crate::billing::ensure_no_overdue(tx, payer, now).await?;
    let (plan_id, kind, retail) = sub_sql::orderable_plan(tx, s.plan.trim(), s.cycle, &currency)
        .await?
        .ok_or_else(|| invalid("plan", "no such plan (see GET /api/v1/plans)"))?;
    let retail = retail.ok_or_else(|| invalid("cycle", format!("this plan has no {} price in {currency}", s.cycle.as_str())))?;
    let kind: InstanceKind = kind.parse().map_err(|_| invalid("plan", "no such plan"))?;
    let template = template_for(tx, &s.os_template, kind).await?;
    if let (Some(terms), Some(reseller)) = (terms, customer.reseller_id) {
        let (vcpus, memory_mib, disk_gib) = sql::plan_size(tx, plan_id).await?;
        check_quota(&terms, &sql::quota_use(&mut **tx, reseller).await?, Footprint { servers: 1, vcpus, memory_mib, disk_gib })?;
    }
    let price = super::wholesale_price(retail, discount_bp);
    let anchor = now.date_naive();
    let (order, subscription) = sub_sql::insert_order(
        tx,
        &sub_sql::NewOrder {
            account_id: payer,
            plan_id,
            cycle: s.cycle,
            os_template_id: template,
            hostname: hostname.as_str(),
            coupon_id: None,
            currency: &currency,
            price_minor: price,
            anchor,
            period_end: period::period(anchor, s.cycle, 0).end,
        },
    )
    .await?;
    crate::db::access::set_order_access(tx, order, &s.access).await?;
    // Made by the API, the server runs at once; the payer owes the first period's invoice, and
    // dunning suspends the server if it stays unpaid, as for any subscription.
    sub_sql::set_status(tx, subscription, "active", now).await?;
    sub_sql::set_order_status(tx, order, "paid").await?;
    issue_for_subscriptions(tx, &[subscription], PeriodChoice::Current, now).await?;
    let id = Uuid::new_v4();
    sql::insert_server(tx, id, customer.id, subscription).await?;
    jobs::enqueue(tx, "instance.create", json!({ "instance_id": id }), Some(id), Some(&format!("create:{id}"))).await?;
    audit::record(
        &mut **tx,
        who.actor(),
        "server.create",
        Some(("instance", id.to_string())),
        None,
        who.details(json!({ "customer_id": customer.id, "plan": s.plan.trim(), "price_minor": price, "currency": currency })),
    )
    .await?;
    Ok(id)
}

/// Records an action on a server inside the caller's transaction: its desired state and a
/// durable job. The host follows; the server's observed state shows when it has.
pub async fn act(tx: &mut Tx<'_>, who: &Principal, now: DateTime<Utc>, id: Uuid, action: ServerAction) -> Result<(), ResellerError> {
    // Subscription first, then instance: the order billing (payment, dunning) locks them in,
    // so an action racing a payment waits instead of deadlocking.
    let subscription = sql::server_subscription(tx, who.tenant.reseller(), id).await?.ok_or(ResellerError::NotFound("server"))?;
    // A resize or a termination charges or credits the payer: its balance row comes before
    // the subscription.
    if let (ServerAction::Resize { .. } | ServerAction::Terminate, Some(sub)) = (&action, subscription) {
        if let Some((payer, currency)) = sub_sql::payer_of(tx, sub, None).await? {
            crate::billing::ledger::lock_credit(tx, payer, &currency).await?;
        }
    }
    let billing = match subscription {
        Some(sub) => sub_sql::lock(tx, sub, None).await?.map(|s| (s.status, s.account_id)),
        None => None,
    };
    let sql::LockedServer { desired_state: desired, subscription_id: subscription, plan_id, customer_id: customer, owner_suspended_from, suspended_with_account } =
        sql::lock_server(tx, who.tenant.reseller(), id).await?.ok_or(ResellerError::NotFound("server"))?;
    if desired == "terminated" {
        return Err(ResellerError::Conflict("this server is terminated".into()));
    }
    let billing_suspended = billing.as_ref().is_some_and(|(status, _)| status == "suspended");
    let running_or_stopped = || -> Result<(), ResellerError> {
        if desired == "suspended" {
            return Err(ResellerError::Conflict("this server is suspended: unsuspend it first".into()));
        }
        if billing_suspended {
            return Err(ResellerError::Conflict("this server is suspended for an overdue invoice: pay it first".into()));
        }
        Ok(())
    };
    let converge = |d: &str| json!({ "instance_id": id, "desired": d, "reason": "api" });
    match &action {
        ServerAction::Start | ServerAction::Stop => {
            running_or_stopped()?;
            let to = if action == ServerAction::Start { "running" } else { "stopped" };
            inst_sql::set_desired(tx, id, to, now).await?;
            let a = if action == ServerAction::Start { Action::Start } else { Action::Stop };
            jobs::enqueue(tx, "instance.action", json!({ "instance_id": id, "action": a }), Some(id), None).await?;
        }
        ServerAction::Restart => {
            running_or_stopped()?;
            if desired != "running" {
                return Err(ResellerError::Conflict("this server is not running: start it instead".into()));
            }
            jobs::enqueue(tx, "instance.action", json!({ "instance_id": id, "action": Action::Restart }), Some(id), None).await?;
        }
        ServerAction::Reinstall { os_template } => {
            running_or_stopped()?;
            if let Some(name) = os_template {
                let kind: InstanceKind = crate::db::plans::kind_of(tx, plan_id).await?.parse().map_err(|_| invalid("os_template", "unknown plan kind"))?;
                let template = template_for(tx, name, kind).await?;
                sql::set_template(tx, id, template).await?;
            }
            jobs::enqueue(tx, "instance.action", json!({ "instance_id": id, "action": Action::Reinstall }), Some(id), None).await?;
        }
        ServerAction::Suspend => {
            if desired == "suspended" && !billing_suspended {
                return Err(ResellerError::Conflict("this server is already suspended".into()));
            }
            // What to return to: the state before, or what billing would resume to.
            let from = if desired == "stopped" { "stopped" } else { "running" };
            inst_sql::set_desired(tx, id, "suspended", now).await?;
            inst_sql::set_owner_suspended_from(tx, id, Some(from)).await?;
            jobs::enqueue(tx, "instance.converge", converge("suspended"), Some(id), None).await?;
        }
        ServerAction::Unsuspend => {
            if desired != "suspended" {
                return Err(ResellerError::Conflict("this server is not suspended".into()));
            }
            if suspended_with_account {
                return Err(ResellerError::Conflict("this server's customer is suspended: reactivate the customer".into()));
            }
            if billing_suspended {
                return Err(ResellerError::Conflict("this server is suspended for an overdue invoice: pay it first".into()));
            }
            let back = owner_suspended_from.unwrap_or_else(|| "running".into());
            inst_sql::set_desired(tx, id, &back, now).await?;
            inst_sql::set_owner_suspended_from(tx, id, None).await?;
            jobs::enqueue(tx, "instance.converge", converge(&back), Some(id), None).await?;
        }
        ServerAction::Terminate => {
            inst_sql::set_desired(tx, id, "terminated", now).await?;
            if let Some(sub) = subscription {
                if billing.as_ref().is_some_and(|(status, _)| status == "active" || status == "suspended") {
                    crate::billing::proration::refund_unused(tx, sub, now).await?;
                }
                sub_sql::set_status(tx, sub, "terminated", now).await?;
            }
            jobs::enqueue(tx, "instance.converge", converge("terminated"), Some(id), None).await?;
        }
        ServerAction::Resize { plan } => {
            running_or_stopped()?;
            let (Some(sub), Some((status, payer))) = (subscription, billing) else {
                return Err(ResellerError::Conflict("this server has no subscription to bill".into()));
            };
            if status != "active" {
                return Err(ResellerError::Conflict(format!("a {status} server cannot change plans")));
            }
            let new_plan = sql::orderable_plan_id(tx, plan.trim()).await?.ok_or_else(|| invalid("plan", "no such plan (see GET /api/v1/plans)"))?;
            let mut discount = 0;
            if let Some(r) = sql::reseller_of(tx, customer).await? {
                let terms = sql::lock_terms(tx, r).await?;
                discount = terms.discount_bp;
                let (nv, nm, nd) = sql::plan_size(tx, new_plan).await?;
                let (ov, om, od) = sql::plan_size(tx, plan_id).await?;
                check_quota(&terms, &sql::quota_use(&mut **tx, r).await?, Footprint { servers: 0, vcpus: nv - ov, memory_mib: nm - om, disk_gib: nd - od })?;
            }
            proration::change_plan_in(tx, now, payer, sub, plan.trim(), discount).await?;
        }
    }
    audit::record(&mut **tx, who.actor(), &format!("server.{}", action.name()), Some(("instance", id.to_string())), None, who.details(json!({}))).await?;
    Ok(())
}

pub async fn get<'e, E: sqlx::PgExecutor<'e>>(e: E, tenant: Tenant, id: Uuid) -> Result<ServerRow, ResellerError> {
    sql::server(e, tenant.reseller(), id).await?.ok_or(ResellerError::NotFound("server"))
}

pub async fn list(
    pool: &PgPool,
    tenant: Tenant,
    filter: &ServerFilter<'_>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<ServerRow>, ResellerError> {
    Ok(sql::servers(pool, tenant.reseller(), filter, after, limit).await?)
}

/// The last day of a server's usage, as rates between samples.
pub async fn usage(pool: &PgPool, tenant: Tenant, id: Uuid, now: DateTime<Utc>) -> Result<Vec<crate::usage::Point>, ResellerError> {
    let server = get(pool, tenant, id).await?;
    Ok(crate::usage::last_day(pool, server.customer_id, id, now).await?)
}

/// Suspends a customer's servers with its account, each remembering the state it had, inside
/// the caller's transaction. A server its owner already suspended keeps that suspension; one
/// billing suspended is held suspended too, so paying does not resume it while the account is.
pub async fn suspend_with_account(tx: &mut Tx<'_>, now: DateTime<Utc>, customer: Uuid) -> Result<usize, ResellerError> {
    let mut n = 0;
    for (id, desired, owner_from, billing_suspended, with_account) in sql::lock_live_servers_of(tx, customer).await? {
        if with_account || owner_from.is_some() {
            continue;
        }
        let from = match desired.as_str() {
            "stopped" => "stopped",
            "running" => "running",
            // Billing's suspension: billing would resume it to running.
            "suspended" if billing_suspended => "running",
            _ => continue,
        };
        inst_sql::set_desired(tx, id, "suspended", now).await?;
        inst_sql::set_owner_suspended_from(tx, id, Some(from)).await?;
        sql::set_suspended_with_account(tx, id, true).await?;
        jobs::enqueue(tx, "instance.converge", json!({ "instance_id": id, "desired": "suspended", "reason": "customer suspended" }), Some(id), None).await?;
        n += 1;
    }
    Ok(n)
}

/// Lifts what [`suspend_with_account`] did: each server returns to the state it had, unless
/// billing holds it suspended (then billing's payment resumes it).
pub async fn resume_with_account(tx: &mut Tx<'_>, now: DateTime<Utc>, customer: Uuid) -> Result<usize, ResellerError> {
    let mut n = 0;
    for (id, _desired, owner_from, billing_suspended, with_account) in sql::lock_live_servers_of(tx, customer).await? {
        if !with_account {
            continue;
        }
        sql::set_suspended_with_account(tx, id, false).await?;
        inst_sql::set_owner_suspended_from(tx, id, None).await?;
        if !billing_suspended {
            let back = owner_from.unwrap_or_else(|| "running".into());
            inst_sql::set_desired(tx, id, &back, now).await?;
            jobs::enqueue(tx, "instance.converge", json!({ "instance_id": id, "desired": back, "reason": "customer reactivated" }), Some(id), None).await?;
        }
        n += 1;
    }
    Ok(n)
}

/// Sets a running server's root password (issue 13): the hash is recorded and a job sets it
/// on the host. Only the instance is locked, so no order against billing's locks arises.
pub async fn reset_password(tx: &mut Tx<'_>, who: &Principal, id: Uuid, hash: vessel_core::PasswordHash) -> Result<(), ResellerError> {
    let locked = sql::lock_server(tx, who.tenant.reseller(), id).await?.ok_or(ResellerError::NotFound("server"))?;
    crate::access::record_password_reset(tx, id, &locked.desired_state, hash).await.map_err(|e| match e {
        crate::access::AccessError::NotRunning => ResellerError::Conflict(e.to_string()),
        e => e.into(),
    })?;
    audit::record(&mut **tx, who.actor(), "server.reset_password", Some(("instance", id.to_string())), None, who.details(json!({}))).await?;
    Ok(())
}

/// Replaces a server's way in before a reinstall writes it into the fresh system.
pub async fn set_access(tx: &mut Tx<'_>, who: &Principal, id: Uuid, access: &vessel_core::Access) -> Result<(), ResellerError> {
    sql::lock_server(tx, who.tenant.reseller(), id).await?.ok_or(ResellerError::NotFound("server"))?;
    crate::db::access::set_instance_access(tx, id, access).await?;
    Ok(())
}
