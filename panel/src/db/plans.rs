//! SQL for `plans` and `plan_prices`.

use super::Tx;
use crate::money::{Currency, Money};
use crate::plans::{BillingCycle, PlanCode, PlanDefinition};
use sqlx::Row;
use vessel_core::resources::{IoLimits, ResourceSpec};
use vessel_core::{InstanceKind, PlanResources, Ratio};

/// The newest version of a plan as stored.
pub struct StoredPlan {
    pub id: i64,
    pub version: i32,
    pub orderable: bool,
    /// `None` if the stored row no longer validates (then any file differs from it).
    pub definition: Option<PlanDefinition>,
}

#[derive(sqlx::FromRow)]
struct PlanRow {
    id: i64,
    code: String,
    version: i32,
    name: String,
    description: String,
    kind: InstanceKind,
    vcpus: i32,
    memory_guaranteed_mib: i64,
    memory_burst_mib: i64,
    swap_mib: i64,
    disk_gib: i64,
    cpu_ratio_milli: i32,
    memory_ratio_milli: i32,
    disk_ratio_milli: i32,
    pids_max: i32,
    net_rate_mbit: Option<i32>,
    io_weight: i32,
    io_read_bps: Option<i64>,
    io_write_bps: Option<i64>,
    io_read_iops: Option<i64>,
    io_write_iops: Option<i64>,
    bandwidth_gib: Option<i64>,
    orderable: bool,
}

fn ratio(milli: i32) -> f64 {
    Ratio::from_milli(milli as u32).map(|r| r.as_f64()).unwrap_or(0.0)
}

impl PlanRow {
    fn definition(&self, prices: Vec<(BillingCycle, Money)>) -> Option<PlanDefinition> {
        let kind = self.kind;
        let resources = PlanResources::try_from(ResourceSpec {
            kind,
            vcpus: self.vcpus as u32,
            memory_guaranteed_mib: Some(self.memory_guaranteed_mib as u64),
            memory_burst_mib: self.memory_burst_mib as u64,
            swap_mib: self.swap_mib as u64,
            disk_gib: self.disk_gib as u64,
            cpu_ratio: ratio(self.cpu_ratio_milli),
            memory_ratio: ratio(self.memory_ratio_milli),
            disk_ratio: ratio(self.disk_ratio_milli),
            pids_max: Some(self.pids_max as u32),
            net_rate_mbit: self.net_rate_mbit.map(|v| v as u32),
            io_weight: Some(self.io_weight as u16),
            io_limits: IoLimits {
                read_bytes_per_sec: self.io_read_bps.map(|v| v as u64),
                write_bytes_per_sec: self.io_write_bps.map(|v| v as u64),
                read_iops: self.io_read_iops.map(|v| v as u64),
                write_iops: self.io_write_iops.map(|v| v as u64),
            },
        })
        .ok()?;
        Some(PlanDefinition {
            code: PlanCode::parse(&self.code).ok()?,
            name: self.name.clone(),
            description: self.description.clone(),
            bandwidth_gib: self.bandwidth_gib.map(|v| v as u64),
            resources,
            prices,
        })
    }
}

const COLUMNS: &str = "id, code, version, name, description, kind, vcpus, memory_guaranteed_mib, \
    memory_burst_mib, swap_mib, disk_gib, cpu_ratio_milli, memory_ratio_milli, disk_ratio_milli, pids_max, \
    net_rate_mbit, io_weight, io_read_bps, io_write_bps, io_read_iops, io_write_iops, bandwidth_gib, orderable";

pub async fn latest(tx: &mut Tx<'_>, code: &str) -> Result<Option<StoredPlan>, sqlx::Error> {
    let row: Option<PlanRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM plans WHERE code = $1 ORDER BY version DESC LIMIT 1"))
        .bind(code)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let prices = prices(tx, row.id).await?;
    Ok(Some(StoredPlan { id: row.id, version: row.version, orderable: row.orderable, definition: row.definition(prices) }))
}

async fn prices(tx: &mut Tx<'_>, plan_id: i64) -> Result<Vec<(BillingCycle, Money)>, sqlx::Error> {
    let rows: Vec<(BillingCycle, String, i64)> = sqlx::query_as("SELECT cycle, currency, amount_minor FROM plan_prices WHERE plan_id = $1")
        .bind(plan_id)
        .fetch_all(&mut **tx)
        .await?;
    let mut out: Vec<(BillingCycle, Money)> =
        rows.into_iter().filter_map(|(c, cur, a)| Currency::parse(&cur).ok().map(|cur| (c, Money::new(a, cur)))).collect();
    out.sort_by_key(|(c, m)| (m.currency, *c));
    Ok(out)
}

fn bind_plan<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    d: &'q PlanDefinition,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let r = &d.resources;
    q.bind(d.name.as_str())
        .bind(d.description.as_str())
        .bind(r.kind().as_str())
        .bind(r.vcpus() as i32)
        .bind(r.memory_guaranteed_mib() as i64)
        .bind(r.memory_burst_mib() as i64)
        .bind(r.swap_mib() as i64)
        .bind(r.disk_gib() as i64)
        .bind(r.cpu_ratio().milli() as i32)
        .bind(r.memory_ratio().milli() as i32)
        .bind(r.disk_ratio().milli() as i32)
        .bind(r.pids_max() as i32)
        .bind(r.net_rate_mbit().map(|v| v as i32))
        .bind(r.io_weight() as i32)
        .bind(d.bandwidth_gib.map(|v| v as i64))
        .bind(r.io_limits().read_bytes_per_sec.map(|v| v as i64))
        .bind(r.io_limits().write_bytes_per_sec.map(|v| v as i64))
        .bind(r.io_limits().read_iops.map(|v| v as i64))
        .bind(r.io_limits().write_iops.map(|v| v as i64))
}

pub async fn insert(tx: &mut Tx<'_>, d: &PlanDefinition, version: i32, source: Option<&str>) -> Result<i64, sqlx::Error> {
    let q = sqlx::query(
        "INSERT INTO plans (name, description, kind, vcpus, memory_guaranteed_mib, memory_burst_mib, swap_mib, \
         disk_gib, cpu_ratio_milli, memory_ratio_milli, disk_ratio_milli, pids_max, net_rate_mbit, io_weight, \
         bandwidth_gib, io_read_bps, io_write_bps, io_read_iops, io_write_iops, code, version, source_file) \
         VALUES ($1, $2, $3::instance_kind, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
         $20, $21, $22) RETURNING id",
    );
    let row = bind_plan(q, d).bind(d.code.as_str()).bind(version).bind(source).fetch_one(&mut **tx).await?;
    let id: i64 = row.try_get("id")?;
    replace_prices(tx, id, d).await?;
    Ok(id)
}

pub async fn update(tx: &mut Tx<'_>, id: i64, d: &PlanDefinition, source: Option<&str>) -> Result<(), sqlx::Error> {
    let q = sqlx::query(
        "UPDATE plans SET name = $1, description = $2, kind = $3::instance_kind, vcpus = $4, memory_guaranteed_mib = $5, \
         memory_burst_mib = $6, swap_mib = $7, disk_gib = $8, cpu_ratio_milli = $9, memory_ratio_milli = $10, \
         disk_ratio_milli = $11, pids_max = $12, net_rate_mbit = $13, io_weight = $14, bandwidth_gib = $15, \
         io_read_bps = $16, io_write_bps = $17, io_read_iops = $18, io_write_iops = $19, \
         source_file = $20, orderable = true WHERE id = $21",
    );
    bind_plan(q, d).bind(source).bind(id).execute(&mut **tx).await?;
    replace_prices(tx, id, d).await
}

async fn replace_prices(tx: &mut Tx<'_>, id: i64, d: &PlanDefinition) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM plan_prices WHERE plan_id = $1").bind(id).execute(&mut **tx).await?;
    for (cycle, money) in &d.prices {
        sqlx::query("INSERT INTO plan_prices (plan_id, cycle, currency, amount_minor) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(cycle)
            .bind(money.currency.as_str())
            .bind(money.minor)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// How many orders, subscriptions and instances refer to this plan version.
pub async fn users(tx: &mut Tx<'_>, id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM orders WHERE plan_id = $1) \
              + (SELECT count(*) FROM subscriptions WHERE plan_id = $1) \
              + (SELECT count(*) FROM instances WHERE plan_id = $1)",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await
}

pub async fn set_orderable(tx: &mut Tx<'_>, id: i64, orderable: bool) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE plans SET orderable = $2 WHERE id = $1").bind(id).bind(orderable).execute(&mut **tx).await?;
    Ok(())
}

pub async fn set_superseded_by(tx: &mut Tx<'_>, id: i64, by: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE plans SET superseded_by = $2 WHERE id = $1").bind(id).bind(by).execute(&mut **tx).await?;
    Ok(())
}

/// (id, code, version) of every orderable plan.
pub async fn orderable(tx: &mut Tx<'_>) -> Result<Vec<(i64, String, i32)>, sqlx::Error> {
    sqlx::query_as("SELECT id, code, version FROM plans WHERE orderable ORDER BY code").fetch_all(&mut **tx).await
}

pub async fn kind_of(tx: &mut Tx<'_>, id: i64) -> Result<InstanceKind, sqlx::Error> {
    sqlx::query_scalar("SELECT kind FROM plans WHERE id = $1").bind(id).fetch_one(&mut **tx).await
}

/// A stored plan version's resources (what an instance of it is promised).
pub async fn resources<'e, E: sqlx::PgExecutor<'e>>(e: E, id: i64) -> Result<Option<vessel_core::PlanResources>, sqlx::Error> {
    let row: Option<PlanRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM plans WHERE id = $1")).bind(id).fetch_optional(e).await?;
    Ok(row.and_then(|r| r.definition(Vec::new())).map(|d| d.resources))
}

/// A plan's code and version with its resources (the admin's cockpit names the plans on a host).
pub async fn named_resources<'e, E: sqlx::PgExecutor<'e>>(
    e: E,
    id: i64,
) -> Result<Option<(String, i32, vessel_core::PlanResources)>, sqlx::Error> {
    let row: Option<PlanRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM plans WHERE id = $1")).bind(id).fetch_optional(e).await?;
    Ok(row.and_then(|r| r.definition(Vec::new()).map(|d| (r.code.clone(), r.version, d.resources))))
}

/// The resources of every orderable plan, by plan id (rows that no longer validate are left out).
pub async fn orderable_resources(conn: &mut sqlx::PgConnection) -> Result<Vec<(i64, vessel_core::PlanResources)>, sqlx::Error> {
    let rows: Vec<PlanRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM plans WHERE orderable")).fetch_all(conn).await?;
    Ok(rows.into_iter().filter_map(|r| Some((r.id, r.definition(Vec::new())?.resources))).collect())
}

/// How many live instances of one plan a host carries (kept by a trigger, see migration
/// `host_plan_load`), with the plan's code, version and resources.
pub struct PlanLoad {
    pub host_id: crate::ids::HostId,
    pub plan_id: i64,
    pub code: String,
    pub version: i32,
    /// `None` if the stored plan no longer validates.
    pub resources: Option<vessel_core::PlanResources>,
    pub instances: i64,
}

#[derive(sqlx::FromRow)]
struct PlanLoadRow {
    host_id: crate::ids::HostId,
    instances: i32,
    #[sqlx(flatten)]
    plan: PlanRow,
}

/// The per-plan load of these hosts: a few rows per host, whatever the number of instances.
pub async fn load_on<'e, E: sqlx::PgExecutor<'e>>(e: E, hosts: &[crate::ids::HostId]) -> Result<Vec<PlanLoad>, sqlx::Error> {
    let rows: Vec<PlanLoadRow> = sqlx::query_as(&format!(
        "SELECT l.host_id, l.instances, {COLUMNS} FROM host_plan_load l JOIN plans ON plans.id = l.plan_id
          WHERE l.host_id = ANY($1) AND l.instances > 0 ORDER BY l.host_id, code, version"
    ))
    .bind(hosts)
    .fetch_all(e)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| PlanLoad {
            host_id: r.host_id,
            plan_id: r.plan.id,
            resources: r.plan.definition(Vec::new()).map(|d| d.resources),
            code: r.plan.code,
            version: r.plan.version,
            instances: r.instances as i64,
        })
        .collect())
}
