//! SQL for what the reseller API reads and writes beyond the customer's own tables: reseller
//! terms and quota use, a reseller's customers (sub-accounts), and servers as the API lists
//! them. Every query takes the tenant: `reseller = None` is an admin (everything), `Some(r)`
//! sees only accounts whose `reseller_id` is `r`.

use super::Tx;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct TermsRow {
    pub discount_bp: i32,
    pub max_servers: i32,
    pub max_vcpus: i32,
    pub max_memory_mib: i64,
    pub max_disk_gib: i64,
}

const TERMS: &str = "discount_bp, max_servers, max_vcpus, max_memory_mib, max_disk_gib";

/// Locks a reseller's terms (made with the defaults on first use): creating or resizing servers
/// for one reseller is serialised here, so two requests cannot both take the last quota.
pub async fn lock_terms(tx: &mut Tx<'_>, reseller: Uuid) -> Result<TermsRow, sqlx::Error> {
    sqlx::query("INSERT INTO reseller_terms (reseller_id) VALUES ($1) ON CONFLICT DO NOTHING").bind(reseller).execute(&mut **tx).await?;
    sqlx::query_as(&format!("SELECT {TERMS} FROM reseller_terms WHERE reseller_id = $1 FOR UPDATE"))
        .bind(reseller)
        .fetch_one(&mut **tx)
        .await
}

/// A reseller's terms, or the schema's defaults when none were saved yet.
pub async fn terms(pool: &PgPool, reseller: Uuid) -> Result<TermsRow, sqlx::Error> {
    let t = match saved_terms(pool, reseller).await? {
        Some(t) => t,
        None => default_terms(pool, reseller).await?,
    };
    Ok(TermsRow {
        discount_bp: t.discount_bp,
        max_servers: t.max_servers,
        max_vcpus: t.max_vcpus,
        max_memory_mib: t.max_memory_mib,
        max_disk_gib: t.max_disk_gib,
    })
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct QuotaUse {
    pub servers: i64,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub disk_gib: i64,
}

/// What a reseller's live (not terminated) servers hold.
pub async fn quota_use<'e, E: sqlx::PgExecutor<'e>>(e: E, reseller: Uuid) -> Result<QuotaUse, sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*) AS servers, COALESCE(sum(p.vcpus), 0)::bigint AS vcpus,
                COALESCE(sum(p.memory_guaranteed_mib), 0)::bigint AS memory_mib, COALESCE(sum(p.disk_gib), 0)::bigint AS disk_gib
           FROM instances i JOIN accounts a ON a.id = i.account_id JOIN plans p ON p.id = i.plan_id
          WHERE a.reseller_id = $1 AND i.desired_state <> 'terminated'",
    )
    .bind(reseller)
    .fetch_one(e)
    .await
}

// ------------------------------------------------------------------ customers

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CustomerRow {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub country: Option<String>,
    pub status: crate::accounts::AccountStatus,
    pub reseller_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    /// The reseller (not the provider) suspended this account.
    pub suspended_by_reseller: bool,
}

const CUSTOMER: &str = "SELECT id, email, display_name, country, status, reseller_id, created_at, suspended_by_reseller FROM accounts";

/// A live customer the tenant may see.
pub async fn customer<'e, E: sqlx::PgExecutor<'e>>(e: E, reseller: Option<Uuid>, id: Uuid) -> Result<Option<CustomerRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{CUSTOMER} WHERE id = $1 AND role = 'customer' AND status <> 'closed' AND ($2::uuid IS NULL OR reseller_id = $2)"
    ))
    .bind(id)
    .bind(reseller)
    .fetch_optional(e)
    .await
}

/// As [`customer`], locked for a change.
pub async fn lock_customer(tx: &mut Tx<'_>, reseller: Option<Uuid>, id: Uuid) -> Result<Option<CustomerRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{CUSTOMER} WHERE id = $1 AND role = 'customer' AND status <> 'closed' AND ($2::uuid IS NULL OR reseller_id = $2) FOR UPDATE"
    ))
    .bind(id)
    .bind(reseller)
    .fetch_optional(&mut **tx)
    .await
}

/// Newest first, after the cursor `(created_at, id)`.
pub async fn customers<'e, E: sqlx::PgExecutor<'e>>(
    e: E,
    reseller: Option<Uuid>,
    email: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<CustomerRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{CUSTOMER} WHERE role = 'customer' AND status <> 'closed' AND ($1::uuid IS NULL OR reseller_id = $1)
            AND ($2 IS NULL OR email = $2)
            AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
          ORDER BY created_at DESC, id DESC LIMIT $5"
    ))
    .bind(reseller)
    .bind(email)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(e)
    .await
}

pub struct NewCustomer<'a> {
    pub reseller: Option<Uuid>,
    pub email: &'a str,
    pub name: &'a str,
    pub country: Option<&'a str>,
    pub currency: &'a str,
}

/// None when the email is already taken in that namespace.
pub async fn insert_customer(tx: &mut Tx<'_>, c: &NewCustomer<'_>) -> Result<Option<CustomerRow>, sqlx::Error> {
    let conflict = if c.reseller.is_some() {
        "ON CONFLICT (reseller_id, email) WHERE reseller_id IS NOT NULL AND status <> 'closed' DO NOTHING"
    } else {
        "ON CONFLICT (email) WHERE reseller_id IS NULL DO NOTHING"
    };
    sqlx::query_as(&format!(
        "INSERT INTO accounts (role, email, display_name, country, currency, reseller_id, status)
         VALUES ('customer', $1, $2, $3, $4, $5, 'active') {conflict}
         RETURNING id, email, display_name, country, status, reseller_id, created_at, suspended_by_reseller"
    ))
    .bind(c.email)
    .bind(c.name)
    .bind(c.country)
    .bind(c.currency)
    .bind(c.reseller)
    .fetch_optional(&mut **tx)
    .await
}

pub async fn update_customer(
    tx: &mut Tx<'_>,
    id: Uuid,
    name: &str,
    country: Option<&str>,
    status: crate::accounts::AccountStatus,
    suspended_by_reseller: bool,
) -> Result<CustomerRow, sqlx::Error> {
    sqlx::query_as(
        "UPDATE accounts SET display_name = $2, country = $3, status = $4, suspended_by_reseller = $5 WHERE id = $1
         RETURNING id, email, display_name, country, status, reseller_id, created_at, suspended_by_reseller",
    )
    .bind(id)
    .bind(name)
    .bind(country)
    .bind(status)
    .bind(suspended_by_reseller)
    .fetch_one(&mut **tx)
    .await
}

pub async fn live_servers_of(tx: &mut Tx<'_>, customer: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM instances WHERE account_id = $1 AND desired_state <> 'terminated'")
        .bind(customer)
        .fetch_one(&mut **tx)
        .await
}

// ------------------------------------------------------------------ servers

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ServerRow {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub subscription_id: Option<Uuid>,
    pub plan: String,
    pub kind: vessel_core::InstanceKind,
    pub vcpus: i32,
    pub memory_guaranteed_mib: i64,
    pub memory_burst_mib: i64,
    pub disk_gib: i64,
    pub os_template: String,
    pub hostname: String,
    pub desired_state: crate::vps::DesiredState,
    pub observed_state: crate::vps::ObservedState,
    pub observed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub billing_status: Option<crate::subscriptions::SubscriptionStatus>,
    pub created_at: DateTime<Utc>,
    pub terminated_at: Option<DateTime<Utc>>,
    pub addresses: Vec<String>,
    pub rescue: bool,
    /// For the provider's and the reseller's pages (the API does not show them).
    pub customer_email: String,
    pub host_id: Option<Uuid>,
    pub host_name: Option<String>,
}

const SERVER: &str = "SELECT i.id, i.account_id AS customer_id, i.subscription_id, p.code AS plan, i.kind,
        a.email AS customer_email, i.host_id, h.name AS host_name,
        p.vcpus, p.memory_guaranteed_mib, p.memory_burst_mib, p.disk_gib, t.name AS os_template, i.hostname,
        i.desired_state, i.observed_state, i.observed_at, i.last_error,
        s.status AS billing_status, i.created_at, i.terminated_at, i.rescue,
        ARRAY(SELECT host(x.address) FROM ip_addresses x WHERE x.instance_id = i.id ORDER BY family(x.address), x.address) AS addresses
   FROM instances i JOIN accounts a ON a.id = i.account_id JOIN plans p ON p.id = i.plan_id
   JOIN os_templates t ON t.id = i.os_template_id LEFT JOIN subscriptions s ON s.id = i.subscription_id
   LEFT JOIN hosts h ON h.id = i.host_id";

pub async fn server<'e, E: sqlx::PgExecutor<'e>>(e: E, reseller: Option<Uuid>, id: Uuid) -> Result<Option<ServerRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SERVER} WHERE i.id = $1 AND ($2::uuid IS NULL OR a.reseller_id = $2)"))
        .bind(id)
        .bind(reseller)
        .fetch_optional(e)
        .await
}

#[derive(Clone, Debug, Default)]
pub struct ServerFilter<'a> {
    pub customer: Option<Uuid>,
    pub desired_state: Option<crate::vps::DesiredState>,
    pub observed_state: Option<crate::vps::ObservedState>,
    pub plan: Option<&'a str>,
    pub hostname: Option<&'a str>,
    /// The admin's filters.
    pub host: Option<Uuid>,
    pub kind: Option<vessel_core::InstanceKind>,
    pub customer_email: Option<&'a str>,
}

/// Newest first, after the cursor `(created_at, id)`.
pub async fn servers<'e, E: sqlx::PgExecutor<'e>>(
    e: E,
    reseller: Option<Uuid>,
    f: &ServerFilter<'_>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<ServerRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SERVER} WHERE ($1::uuid IS NULL OR a.reseller_id = $1)
            AND ($2::uuid IS NULL OR i.account_id = $2)
            AND ($3 IS NULL OR i.desired_state = $3)
            AND ($4 IS NULL OR i.observed_state = $4)
            AND ($5 IS NULL OR p.code = $5)
            AND ($6 IS NULL OR i.hostname = $6)
            AND ($7::timestamptz IS NULL OR (i.created_at, i.id) < ($7, $8))
            AND ($10::uuid IS NULL OR i.host_id = $10)
            AND ($11 IS NULL OR i.kind = $11)
            AND ($12 IS NULL OR a.email = $12)
          ORDER BY i.created_at DESC, i.id DESC LIMIT $9"
    ))
    .bind(reseller)
    .bind(f.customer)
    .bind(f.desired_state)
    .bind(f.observed_state)
    .bind(f.plan)
    .bind(f.hostname)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .bind(f.host)
    .bind(f.kind)
    .bind(f.customer_email)
    .fetch_all(e)
    .await
}

/// The new server's row, for the customer (not the paying reseller) named.
pub async fn insert_server(tx: &mut Tx<'_>, id: Uuid, customer: Uuid, subscription: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO instances (id, account_id, subscription_id, plan_id, kind, os_template_id, hostname, desired_state)
         SELECT $1, $2, s.id, s.plan_id, p.kind, o.os_template_id, o.hostname, 'running'
           FROM subscriptions s JOIN orders o ON o.id = s.order_id JOIN plans p ON p.id = s.plan_id
          WHERE s.id = $3",
    )
    .bind(id)
    .bind(customer)
    .bind(subscription)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn set_template(tx: &mut Tx<'_>, id: Uuid, template: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE instances SET os_template_id = $2 WHERE id = $1").bind(id).bind(template).execute(&mut **tx).await?;
    Ok(())
}

/// (vcpus, guaranteed memory, disk) of a plan, for quotas.
pub async fn plan_size(tx: &mut Tx<'_>, plan: i64) -> Result<(i64, i64, i64), sqlx::Error> {
    sqlx::query_as("SELECT vcpus::bigint, memory_guaranteed_mib, disk_gib FROM plans WHERE id = $1").bind(plan).fetch_one(&mut **tx).await
}

/// The orderable version of a plan code.
pub async fn orderable_plan_id(tx: &mut Tx<'_>, code: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM plans WHERE code = $1 AND orderable").bind(code).fetch_optional(&mut **tx).await
}

/// The reseller a customer belongs to, if any.
pub async fn reseller_of(tx: &mut Tx<'_>, customer: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar::<_, Option<Uuid>>("SELECT reseller_id FROM accounts WHERE id = $1")
        .bind(customer)
        .fetch_optional(&mut **tx)
        .await
        .map(Option::flatten)
}

// ------------------------------------------------------------------ terms as the pages edit them

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SavedTerms {
    pub reseller_id: Uuid,
    pub discount_bp: i32,
    pub max_servers: i32,
    pub max_vcpus: i32,
    pub max_memory_mib: i64,
    pub max_disk_gib: i64,
    pub updated_at: DateTime<Utc>,
}

/// The saved terms, or `None` while the reseller runs on the table's defaults.
pub async fn saved_terms(pool: &PgPool, reseller: Uuid) -> Result<Option<SavedTerms>, sqlx::Error> {
    sqlx::query_as(
        "SELECT reseller_id, discount_bp, max_servers, max_vcpus, max_memory_mib, max_disk_gib, updated_at \
         FROM reseller_terms WHERE reseller_id = $1",
    )
    .bind(reseller)
    .fetch_optional(pool)
    .await
}

/// The table's defaults, for a reseller that has no row yet (one source: the schema).
pub async fn default_terms(pool: &PgPool, reseller: Uuid) -> Result<SavedTerms, sqlx::Error> {
    sqlx::query_as(
        "SELECT $1::uuid AS reseller_id, \
           (SELECT column_default FROM information_schema.columns WHERE table_name = 'reseller_terms' AND column_name = 'discount_bp')::int AS discount_bp, \
           (SELECT column_default FROM information_schema.columns WHERE table_name = 'reseller_terms' AND column_name = 'max_servers')::int AS max_servers, \
           (SELECT column_default FROM information_schema.columns WHERE table_name = 'reseller_terms' AND column_name = 'max_vcpus')::int AS max_vcpus, \
           (SELECT column_default FROM information_schema.columns WHERE table_name = 'reseller_terms' AND column_name = 'max_memory_mib')::bigint AS max_memory_mib, \
           (SELECT column_default FROM information_schema.columns WHERE table_name = 'reseller_terms' AND column_name = 'max_disk_gib')::bigint AS max_disk_gib, \
           now() AS updated_at",
    )
    .bind(reseller)
    .fetch_one(pool)
    .await
}

/// Creates the row on first save, updates it after; returns the terms before the change
/// (`None`: there was no row) for the audit log.
pub async fn upsert_terms(tx: &mut Tx<'_>, t: &SavedTerms) -> Result<Option<SavedTerms>, sqlx::Error> {
    let before: Option<SavedTerms> = sqlx::query_as(
        "SELECT reseller_id, discount_bp, max_servers, max_vcpus, max_memory_mib, max_disk_gib, updated_at \
         FROM reseller_terms WHERE reseller_id = $1 FOR UPDATE",
    )
    .bind(t.reseller_id)
    .fetch_optional(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO reseller_terms (reseller_id, discount_bp, max_servers, max_vcpus, max_memory_mib, max_disk_gib) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (reseller_id) DO UPDATE SET discount_bp = EXCLUDED.discount_bp, max_servers = EXCLUDED.max_servers, \
           max_vcpus = EXCLUDED.max_vcpus, max_memory_mib = EXCLUDED.max_memory_mib, max_disk_gib = EXCLUDED.max_disk_gib, \
           updated_at = now()",
    )
    .bind(t.reseller_id)
    .bind(t.discount_bp)
    .bind(t.max_servers)
    .bind(t.max_vcpus)
    .bind(t.max_memory_mib)
    .bind(t.max_disk_gib)
    .execute(&mut **tx)
    .await?;
    Ok(before)
}

/// Whether `id` is a reseller account (locks it, so terms are not saved for an account
/// changing role underneath).
pub async fn is_reseller(tx: &mut Tx<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND role = 'reseller' FOR SHARE)")
        .bind(id)
        .fetch_one(&mut **tx)
        .await
}

/// What a reseller's home page counts: (customers, live servers, enabled endpoints, active keys).
pub async fn summary(pool: &PgPool, reseller: Uuid) -> Result<(i64, i64, i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM accounts WHERE reseller_id = $1 AND role = 'customer' AND status <> 'closed'), \
                (SELECT count(*) FROM instances i JOIN accounts a ON a.id = i.account_id \
                  WHERE a.reseller_id = $1 AND i.desired_state <> 'terminated'), \
                (SELECT count(*) FROM webhook_endpoints WHERE account_id = $1 AND enabled), \
                (SELECT count(*) FROM api_keys WHERE account_id = $1 AND revoked_at IS NULL)",
    )
    .bind(reseller)
    .fetch_one(pool)
    .await
}

/// An issued invoice of a server's subscription, billed to the reseller.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ServerInvoice {
    pub server_id: Uuid,
    #[sqlx(flatten)]
    pub invoice: super::invoices::InvoiceRow,
}

/// The reseller's own (wholesale) invoices and credit notes for these servers' subscriptions,
/// newest first. Scoped twice: the server must belong to one of the reseller's customers and the
/// invoice must be billed to the reseller, so neither another reseller's server nor the end
/// customer's retail invoices can appear.
pub async fn invoices_of_servers<'e, E: sqlx::PgExecutor<'e>>(
    e: E,
    reseller: Uuid,
    servers: &[Uuid],
) -> Result<Vec<ServerInvoice>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT x.server_id, v.* FROM
           (SELECT i.id AS server_id, i.subscription_id FROM instances i JOIN accounts a ON a.id = i.account_id
             WHERE i.id = ANY($2) AND a.reseller_id = $1) x
           CROSS JOIN LATERAL
           (SELECT {cols} FROM invoices
             WHERE subscription_id = x.subscription_id AND account_id = $1 AND status <> 'draft') v
          ORDER BY v.issued_at DESC, v.number_seq DESC",
        cols = super::invoices::INVOICE_COLUMNS
    ))
    .bind(reseller)
    .bind(servers)
    .fetch_all(e)
    .await
}
