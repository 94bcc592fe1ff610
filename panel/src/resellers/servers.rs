//! Servers through the API: create one for a customer (its order, subscription, first invoice,
//! instance and provisioning job in one transaction), and act on it. A reseller's server is
//! billed to the reseller at its wholesale price, per period, by the same billing engine as a
//! customer's subscription; a direct customer's server made by an admin is billed to the
//! customer at the retail price. Both run at once: the paying account owes the first invoice.

use super::{check_quota, invalid, Footprint, ResellerError};
use crate::accounts::AccountStatus;
use crate::api_keys::{Principal, Tenant};
use crate::audit;
use crate::billing::invoices::{issue_for_subscriptions, PeriodChoice};
use crate::billing::{period, proration};
use crate::db::{resellers as sql, subscriptions as sub_sql, Tx};
use crate::ids::AccountId;
use crate::jobs::{self, Job};
use crate::plans::BillingCycle;
use crate::subscriptions::SubscriptionStatus;
use crate::vps::{self, Refusal, Request, Scope, Target, VpsError};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;
use vessel_core::{Hostname, InstanceKind};

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
    Reinstall {
        os_template: Option<String>,
    },
    /// The reseller's own suspension (e.g. its customer did not pay it); billing goes on.
    Suspend,
    Unsuspend,
    /// Destroys the server and ends its billing at the end of the current period.
    Terminate,
    /// Moves to another plan of the same kind; billing is prorated.
    Resize {
        plan: String,
    },
    /// Boots the rescue system with the server's disk attached, for a server that no longer boots.
    Rescue,
    /// Boots the server's own system again.
    LeaveRescue,
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
            ServerAction::Rescue => "rescue",
            ServerAction::LeaveRescue => "leave_rescue",
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
    let customer =
        sql::lock_customer(tx, who.tenant.reseller(), s.customer_id).await?.ok_or_else(|| invalid("customer_id", "no such customer"))?;
    if customer.status != AccountStatus::Active {
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
    if let Some(why) = crate::capacity::unavailable(tx, plan_id).await? {
        return Err(invalid("plan", why));
    }
    let kind: InstanceKind = kind;
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
    sub_sql::set_status(tx, subscription, SubscriptionStatus::Active, now).await?;
    sub_sql::set_order_status(tx, order, crate::orders::OrderStatus::Paid).await?;
    issue_for_subscriptions(tx, &[subscription], PeriodChoice::Current, now).await?;
    let id = Uuid::new_v4();
    sql::insert_server(tx, id, customer.id, subscription).await?;
    jobs::enqueue(tx, Job::Create { instance_id: id.into() }).await?;
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
/// durable job (the rules and the lock order are [`crate::vps`]'s). The host follows; the
/// server's observed state shows when it has.
pub async fn act(tx: &mut Tx<'_>, who: &Principal, now: DateTime<Utc>, id: Uuid, action: ServerAction) -> Result<(), ResellerError> {
    let acting = Acting { actor: who.actor(), tenant: who.tenant, addr: None, details: who.details(json!({})) };
    act_as(tx, &acting, now, id, action).await
}

/// Who asks for a server action, for [`act_as`]: the audit log's actor, the servers it may
/// see, and what its audit entry records besides (an API key, an admin's reason).
pub struct Acting {
    pub actor: audit::Actor,
    pub tenant: Tenant,
    pub addr: Option<std::net::IpAddr>,
    pub details: serde_json::Value,
}

/// [`act`] for any caller: the reseller API (through its key) and the provider's admin pages
/// take this one path to a server's state machine, its jobs and its audit entry.
pub async fn act_as(tx: &mut Tx<'_>, who: &Acting, now: DateTime<Utc>, id: Uuid, action: ServerAction) -> Result<(), ResellerError> {
    let scope = Scope::reseller(who.tenant.reseller().map(AccountId));
    let request = match &action {
        ServerAction::Start => Request::Start,
        ServerAction::Stop => Request::Stop,
        ServerAction::Restart => Request::Restart,
        ServerAction::Reinstall { .. } => Request::Reinstall,
        ServerAction::Suspend => Request::Suspend,
        ServerAction::Unsuspend => Request::Unsuspend,
        ServerAction::Terminate => Request::Terminate,
        ServerAction::Resize { .. } => Request::Resize,
        ServerAction::Rescue => Request::Rescue,
        ServerAction::LeaveRescue => Request::LeaveRescue,
    };
    if let ServerAction::Resize { .. } | ServerAction::Terminate = &action {
        // A resize or a termination charges or credits the payer: its balance row comes
        // before the subscription and the instance (the one lock order, see `crate::vps`).
        if let Some(sub) = vps::subscription_of(tx, id.into(), scope).await? {
            if let Some((payer, currency)) = sub_sql::payer_of(tx, sub, None).await? {
                crate::billing::ledger::lock_credit(tx, payer.0, &currency).await?;
            }
        }
    }
    let server = vps::request(tx, id.into(), scope, request, now).await?;
    match &action {
        ServerAction::Reinstall { os_template: Some(name) } => {
            // In the same transaction as its job: the job reads the new template when it runs.
            let kind: InstanceKind = crate::db::plans::kind_of(tx, server.plan_id).await?;
            let template = template_for(tx, name, kind).await?;
            sql::set_template(tx, id, template).await?;
        }
        ServerAction::Terminate => {
            crate::subscriptions::end_by_owner(tx, &server, now).await?;
        }
        ServerAction::Resize { plan } => resize(tx, now, &server, plan).await?,
        _ => {}
    }
    audit::record(
        &mut **tx,
        who.actor,
        &format!("server.{}", action.name()),
        Some(("instance", id.to_string())),
        who.addr,
        who.details.clone(),
    )
    .await?;
    Ok(())
}

/// A plan change the state allows ([`Request::Resize`]): the reseller's quota, then prorated
/// billing, which queues the resize.
async fn resize(tx: &mut Tx<'_>, now: DateTime<Utc>, server: &vps::Locked, plan: &str) -> Result<(), ResellerError> {
    let (Some(sub), Some(payer)) = (server.subscription_id, server.payer_id) else {
        return Err(ResellerError::Conflict("this server has no subscription to bill".into()));
    };
    let new_plan = sql::orderable_plan_id(tx, plan.trim()).await?.ok_or_else(|| invalid("plan", "no such plan (see GET /api/v1/plans)"))?;
    let mut discount = 0;
    if let Some(r) = sql::reseller_of(tx, server.customer_id.0).await? {
        let terms = sql::lock_terms(tx, r).await?;
        discount = terms.discount_bp;
        let (nv, nm, nd) = sql::plan_size(tx, new_plan).await?;
        let (ov, om, od) = sql::plan_size(tx, server.plan_id).await?;
        check_quota(
            &terms,
            &sql::quota_use(&mut **tx, r).await?,
            Footprint { servers: 0, vcpus: nv - ov, memory_mib: nm - om, disk_gib: nd - od },
        )?;
    }
    proration::change_plan_in(tx, now, payer.0, sub.0, plan.trim(), discount).await?;
    Ok(())
}

/// How the API words a refusal.
impl From<VpsError> for ResellerError {
    fn from(e: VpsError) -> Self {
        let conflict = |m: &str| ResellerError::Conflict(m.to_string());
        match e {
            VpsError::NotFound => ResellerError::NotFound("server"),
            VpsError::Db(e) => ResellerError::Db(e),
            VpsError::Refused(r) => match r {
                Refusal::Terminated => conflict("this server is terminated"),
                Refusal::Suspended => conflict("this server is suspended: unsuspend it first"),
                Refusal::BillingSuspended => conflict("this server is suspended for an overdue invoice: pay it first"),
                Refusal::NotRunning => conflict("this server is not running: start it instead"),
                Refusal::AlreadySuspended => conflict("this server is already suspended"),
                Refusal::NotSuspended => conflict("this server is not suspended"),
                Refusal::AccountSuspended => conflict("this server's customer is suspended: reactivate the customer"),
                Refusal::NoSubscription => conflict("this server has no subscription to bill"),
                Refusal::NotActive(status) => ResellerError::Conflict(format!("a {status} server cannot change plans")),
                Refusal::InRescue => conflict("this server is in rescue: leave rescue first"),
                Refusal::NotInRescue => conflict("this server is not in rescue"),
            },
        }
    }
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
    Ok(crate::usage::last_day(pool, server.customer_id.into(), id.into(), now).await?)
}

/// Suspends a customer's servers with its account, each remembering the state it had, inside
/// the caller's transaction (the rules: [`Request::AccountSuspend`]).
pub async fn suspend_with_account(tx: &mut Tx<'_>, now: DateTime<Utc>, customer: Uuid) -> Result<usize, ResellerError> {
    Ok(vps::request_all(tx, Target::Account(customer.into()), Request::AccountSuspend, now).await?)
}

/// Lifts what [`suspend_with_account`] did (the rules: [`Request::AccountResume`]).
pub async fn resume_with_account(tx: &mut Tx<'_>, now: DateTime<Utc>, customer: Uuid) -> Result<usize, ResellerError> {
    Ok(vps::request_all(tx, Target::Account(customer.into()), Request::AccountResume, now).await?)
}

/// Sets a running server's root password (issue 13): the hash is recorded and a job sets it
/// on the host. Locked through [`vps::lock`], in the one lock order.
pub async fn reset_password(tx: &mut Tx<'_>, who: &Principal, id: Uuid, hash: vessel_core::PasswordHash) -> Result<(), ResellerError> {
    let locked = lock_one(tx, who, id).await?;
    crate::access::record_password_reset(tx, id.into(), locked.desired, hash).await.map_err(|e| match e {
        crate::access::AccessError::NotRunning => ResellerError::Conflict(e.to_string()),
        e => e.into(),
    })?;
    audit::record(&mut **tx, who.actor(), "server.reset_password", Some(("instance", id.to_string())), None, who.details(json!({})))
        .await?;
    Ok(())
}

/// Replaces a server's way in before a reinstall writes it into the fresh system.
pub async fn set_access(tx: &mut Tx<'_>, who: &Principal, id: Uuid, access: &vessel_core::Access) -> Result<(), ResellerError> {
    lock_one(tx, who, id).await?;
    crate::db::access::set_instance_access(tx, id.into(), access).await?;
    Ok(())
}

/// One server the caller may see, locked (subscription, then instance).
async fn lock_one(tx: &mut Tx<'_>, who: &Principal, id: Uuid) -> Result<vps::Locked, ResellerError> {
    vps::lock(tx, Target::Id(id.into(), Scope::reseller(who.tenant.reseller().map(AccountId))))
        .await?
        .into_iter()
        .next()
        .ok_or(ResellerError::NotFound("server"))
}

/// The reseller's own invoices for these servers (its wholesale invoices, not the end customer's),
/// grouped by server.
pub async fn invoices(
    pool: &PgPool,
    reseller: Uuid,
    servers: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Vec<crate::db::invoices::InvoiceRow>>, ResellerError> {
    let mut by: std::collections::HashMap<Uuid, Vec<_>> = std::collections::HashMap::new();
    for r in sql::invoices_of_servers(pool, reseller, servers).await? {
        by.entry(r.server_id).or_default().push(r.invoice);
    }
    Ok(by)
}
