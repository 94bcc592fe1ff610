//! Selling only what can be delivered (issue 14).
//!
//! * A plan is **unavailable** when no active host (joined, enabled, not unreachable) of its
//!   kind could take it even empty: decided by core's admission rule
//!   ([`vessel_core::admission::could_ever_admit`], [`admit`](vessel_core::admission::admit)
//!   over no load), the rule the scheduler places with. The catalogue (pages and API) marks it,
//!   and orders, API creations and resizes to it are refused. With no active host of a kind at
//!   all (a panel whose first host has not joined yet) its plans are sold: they wait, and the
//!   next rule refunds them if no host comes.
//! * An order **still waiting for capacity** `[orchestration] capacity_refund_after_secs` after
//!   it first found no room is refunded: the VPS is terminated, the order and subscription
//!   cancelled, the period given back by the one rule for service that ends before it is used
//!   ([`crate::billing::proration::refund_unused`]: never delivered, so all of it), the payer
//!   and the admins mailed; all in one transaction that re-checks under the locks, so a retry
//!   or a second runner does nothing twice. The create job runs it when it finds the time is
//!   up; `panel billing run` sweeps too.

use crate::billing::{ledger, proration, BillingError};
use crate::db::{hosts as host_sql, instances as inst_sql, plans as plan_sql, subscriptions as sub_sql, Tx};
use crate::ids::{AccountId, InstanceId};
use crate::vps::{self, DesiredState, Request, Scope, Target};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;
use vessel_core::admission::{could_ever_admit, decimal, Allocation, Refusal};
use vessel_core::{InstanceKind, PlanResources};

/// Whether any of `hosts` could ever run `plan`; `Some(why)` (for customers: no host names)
/// when none can.
fn judge(hosts: &[host_sql::ActiveHost], plan: &PlanResources) -> Option<String> {
    let kind = plan.kind();
    let mine: Vec<_> = hosts
        .iter()
        .filter(|h| match kind {
            InstanceKind::Container => h.supports_containers,
            InstanceKind::Kvm => h.supports_kvm,
        })
        .collect();
    if mine.is_empty() {
        return None;
    }
    let alloc = Allocation::from(plan);
    let mut refusal: Option<Refusal> = None;
    for h in mine {
        let cap = crate::scheduler::capacity(h.cpus, h.reserved_cpus, h.memory_mib, h.reserved_memory_mib, h.disk_gib, h.reserved_disk_gib);
        match could_ever_admit(&cap, &alloc) {
            Ok(()) => return None,
            Err(r) => {
                refusal.get_or_insert(r);
            }
        }
    }
    let r = refusal?;
    Some(format!(
        "this plan is unavailable: it needs {} {} of {}, more than any of our hosts has",
        decimal(&r.needed),
        r.resource.unit(),
        r.resource.name()
    ))
}

/// Every orderable plan no active host could ever run, with the reason.
pub async fn unavailable_plans(conn: &mut sqlx::PgConnection) -> Result<HashMap<i64, String>, sqlx::Error> {
    let hosts = host_sql::active(&mut *conn).await?;
    let plans = plan_sql::orderable_resources(&mut *conn).await?;
    Ok(plans.into_iter().filter_map(|(id, r)| judge(&hosts, &r).map(|why| (id, why))).collect())
}

/// `Some(why)` if no active host could ever run plan `plan_id`.
pub async fn unavailable(conn: &mut sqlx::PgConnection, plan_id: i64) -> Result<Option<String>, sqlx::Error> {
    let Some(r) = plan_sql::resources(&mut *conn, plan_id).await? else { return Ok(None) };
    let hosts = host_sql::active(&mut *conn).await?;
    Ok(judge(&hosts, &r))
}

/// What a refund of an undelivered order did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refunded {
    pub instance_id: InstanceId,
    pub payer: AccountId,
    /// The credit note, if anything had been paid or was owed.
    pub credit_note: Option<(Uuid, i64)>,
}

/// Refunds the order behind `instance` if it has waited for capacity `limit` or longer and is
/// still unplaced and live; otherwise does nothing (`None`). Idempotent.
pub async fn refund_if_overdue(
    pool: &PgPool,
    now: DateTime<Utc>,
    instance: InstanceId,
    limit: Duration,
) -> Result<Option<Refunded>, BillingError> {
    let mut tx = pool.begin().await?;
    let out = refund_in(&mut tx, now, instance, limit).await?;
    tx.commit().await?;
    Ok(out)
}

async fn refund_in(tx: &mut Tx<'_>, now: DateTime<Utc>, instance: InstanceId, limit: Duration) -> Result<Option<Refunded>, BillingError> {
    let Some((_, _, Some(sub))) = inst_sql::delivery(tx, instance).await? else { return Ok(None) };
    let Some((payer, currency)) = sub_sql::payer_of(tx, sub, None).await? else { return Ok(None) };
    // The one lock order: the payer's balance row, the subscription, the instance.
    ledger::lock_credit(tx, payer.0, &currency).await?;
    let Some(v) = vps::lock(tx, Target::Id(instance, Scope::ALL)).await?.into_iter().next() else { return Ok(None) };
    let Some((host, since, _)) = inst_sql::delivery(tx, instance).await? else { return Ok(None) };
    let waited_enough = since.is_some_and(|s| now - s >= limit);
    if host.is_some() || v.desired == DesiredState::Terminated || !waited_enough {
        return Ok(None);
    }
    let effect = vps::transition(&v.state(), Request::Terminate).map_err(|e| BillingError::Invalid(e.to_string()))?;
    vps::apply(tx, &v, &effect, now).await?;
    let given = proration::refund_unused(tx, sub.0, now).await?;
    let row = sub_sql::lock(tx, sub.0, None).await?.ok_or(BillingError::SubscriptionNotFound)?;
    sub_sql::set_status(tx, sub.0, crate::subscriptions::SubscriptionStatus::Cancelled, now).await?;
    sub_sql::set_order_status(tx, row.order_id, crate::orders::OrderStatus::Cancelled).await?;
    let amount = given.map(|g| g.total_minor()).unwrap_or(0);
    // What was owed and is cancelled, and what was paid and is credited, apart: the mails say
    // truthfully which (a reseller's unpaid first invoice is cancelled; nothing is credited).
    let (cancelled, credited) = given.map(|g| (g.cancelled_minor, g.credited_minor)).unwrap_or((0, 0));
    let data = json!({
        "subscription_id": sub,
        "instance_id": instance,
        "currency": currency,
        "amount_minor": amount,
        "cancelled_minor": cancelled,
        "credited_minor": credited,
        "waited_hours": (now - since.unwrap_or(now)).num_hours(),
    });
    if let Some(email) = crate::db::payments::account_email(tx, payer.0).await? {
        if let Ok(email) = crate::accounts::Email::parse(&email) {
            crate::outbox::enqueue(tx, &email, "order_refunded", data.clone(), Some(format!("order_refunded:{instance}"))).await?;
        }
    }
    crate::db::outbox::insert_for_admins(tx, "capacity_refunded", data, &format!("capacity_refunded:{instance}")).await?;
    tracing::info!(%instance, %payer, amount, "an order that waited too long for capacity was refunded");
    Ok(Some(Refunded { instance_id: instance, payer, credit_note: given.map(|g| (g.credit_note, g.total_minor())) }))
}

/// Refunds every order that has waited `limit` or longer (`panel billing run`, tests); each in
/// its own transaction. Returns what was refunded.
pub async fn refund_overdue(pool: &PgPool, now: DateTime<Utc>, limit: Duration) -> Result<Vec<Refunded>, BillingError> {
    let mut out = Vec::new();
    for id in inst_sql::waiting_since_before(pool, now - limit).await? {
        if let Some(r) = refund_if_overdue(pool, now, id, limit).await? {
            out.push(r);
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------ the admin's view of a host

/// One resource of a host as the admin's cockpit shows it: what placement's admission rule
/// counts as committed against what the host can give, exactly (core's rationals).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceUse {
    /// e.g. `vCPU, pinned`.
    pub name: &'static str,
    pub unit: &'static str,
    pub capacity: num_rational::BigRational,
    /// What admission counts (after each plan's ratio).
    pub committed: num_rational::BigRational,
    /// What is left for a newcomer by that rule (never below zero).
    pub free: num_rational::BigRational,
    /// What was sold before the ratios divide it, when that differs from `committed`.
    pub sold: Option<num_rational::BigRational>,
    /// `sold / capacity`: the host's effective overcommit of this resource.
    pub effective: Option<num_rational::BigRational>,
}

impl ResourceUse {
    /// Committed as a share of capacity, 0 to 1 (over 1 only if a host shrank under its load).
    pub fn share(&self) -> f64 {
        use num_traits::{ToPrimitive, Zero};
        if self.capacity.is_zero() {
            return if self.committed.is_zero() { 0.0 } else { 1.0 };
        }
        (&self.committed / &self.capacity).to_f64().unwrap_or(0.0)
    }
}

/// A plan a host carries, and the host's effective overcommit against the plan's own ratios.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanRatios {
    pub code: String,
    pub version: i32,
    pub kind: InstanceKind,
    pub instances: usize,
    pub pinned: bool,
    /// (the plan's ratio, the host's effective overcommit of that resource) for CPU, memory
    /// and disk. The effective CPU figure is the shared pool's; a pinned plan has none.
    pub cpu: (vessel_core::Ratio, Option<num_rational::BigRational>),
    pub memory: (vessel_core::Ratio, Option<num_rational::BigRational>),
    pub disk: (vessel_core::Ratio, Option<num_rational::BigRational>),
}

impl PlanRatios {
    /// Whether the host is more overcommitted on some resource than this plan's ratio allows
    /// (possible when plans of higher ratios share the host; admission holds either way).
    pub fn above(&self) -> Vec<&'static str> {
        let over = |(r, e): &(vessel_core::Ratio, Option<num_rational::BigRational>)| {
            e.as_ref().is_some_and(|e| {
                e * num_rational::BigRational::from_integer(1000.into()) > num_rational::BigRational::from_integer(r.milli().into())
            })
        };
        let mut out = Vec::new();
        if over(&self.cpu) {
            out.push("cpu");
        }
        if over(&self.memory) {
            out.push("memory");
        }
        if over(&self.disk) {
            out.push("disk");
        }
        out
    }
}

/// A host's committed resources against its capacity, from the scheduler's own sums.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostUse {
    pub instances: usize,
    pub resources: Vec<ResourceUse>,
    pub plans: Vec<PlanRatios>,
}

/// The numbers of [`crate::scheduler::commitment`]: nothing is summed here, only compared.
pub fn host_use(c: &crate::scheduler::Commitment) -> HostUse {
    use num_rational::BigRational;
    use num_traits::{Signed, Zero};
    let whole = |n: u64| BigRational::from_integer(n.into());
    let left = |cap: &BigRational, used: &BigRational| {
        let f = cap - used;
        if f.is_negative() {
            BigRational::zero()
        } else {
            f
        }
    };
    let ratio = |sold: u64, cap: &BigRational| (!cap.is_zero()).then(|| whole(sold) / cap);
    let l = &c.load;
    let cpus = whole(c.capacity.cpus as u64);
    let memory = whole(c.capacity.memory_mib);
    let disk = whole(c.capacity.disk_gib);
    let pinned = whole(l.pinned_cores);
    // The shared pool is what pinned instances leave; rule 1's second form counts it in whole cores.
    let pool = left(&cpus, &pinned);
    let shared_effective = ratio(l.shared_vcpus, &pool);
    let memory_effective = ratio(l.burst_memory_mib, &memory);
    let disk_effective = ratio(l.disk_gib, &disk);
    let resources = vec![
        ResourceUse {
            name: "vCPU, pinned",
            unit: "cores",
            free: left(&cpus, &(pinned.clone() + l.shared_cpu.ceil())),
            capacity: cpus.clone(),
            committed: pinned.clone(),
            sold: None,
            effective: None,
        },
        ResourceUse {
            name: "vCPU, shared pool",
            unit: "cores",
            free: left(&pool, &l.shared_cpu),
            capacity: pool.clone(),
            committed: l.shared_cpu.clone(),
            sold: Some(whole(l.shared_vcpus)),
            effective: shared_effective.clone(),
        },
        ResourceUse {
            name: "Memory, guaranteed",
            unit: "MiB",
            free: left(&memory, &whole(l.guaranteed_memory_mib)),
            capacity: memory.clone(),
            committed: whole(l.guaranteed_memory_mib),
            sold: None,
            effective: None,
        },
        ResourceUse {
            name: "Memory, burst",
            unit: "MiB",
            free: left(&memory, &l.committed_memory),
            capacity: memory.clone(),
            committed: l.committed_memory.clone(),
            sold: Some(whole(l.burst_memory_mib)),
            effective: memory_effective.clone(),
        },
        ResourceUse {
            name: "Disk",
            unit: "GiB",
            free: left(&disk, &l.committed_disk),
            capacity: disk,
            committed: l.committed_disk.clone(),
            sold: Some(whole(l.disk_gib)),
            effective: disk_effective.clone(),
        },
    ];
    let plans = c
        .plans
        .iter()
        .map(|p| {
            let r = &p.resources;
            PlanRatios {
                code: p.code.clone(),
                version: p.version,
                kind: r.kind(),
                instances: p.instances,
                pinned: r.is_pinned(),
                cpu: (r.cpu_ratio(), if r.is_pinned() { None } else { shared_effective.clone() }),
                memory: (r.memory_ratio(), memory_effective.clone()),
                disk: (r.disk_ratio(), disk_effective.clone()),
            }
        })
        .collect();
    HostUse { instances: l.instances, resources, plans }
}

/// The cockpit's chart: one bar per resource, committed against capacity, drawn with the
/// same plotters SVG backend as the usage charts (no JavaScript).
pub fn host_chart(u: &HostUse) -> String {
    use plotters::prelude::*;
    let rows = u.resources.len().max(1);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (560, 40 + 34 * rows as u32)).into_drawing_area();
        let draw = || -> Result<(), String> {
            let err = |e: &dyn std::fmt::Display| e.to_string();
            root.fill(&WHITE).map_err(|e| err(&e))?;
            let mut c = ChartBuilder::on(&root)
                .caption("Committed / capacity", ("sans-serif", 14))
                .margin(6)
                .x_label_area_size(20)
                .y_label_area_size(130)
                .build_cartesian_2d(0f64..100f64, (0..rows).into_segmented())
                .map_err(|e| err(&e))?;
            let names: Vec<&str> = u.resources.iter().map(|r| r.name).collect();
            c.configure_mesh()
                .disable_y_mesh()
                .x_labels(5)
                .x_label_formatter(&|x| format!("{x:.0} %"))
                .y_label_formatter(&|y| match y {
                    SegmentValue::CenterOf(i) => names.get(*i).map(|s| s.to_string()).unwrap_or_default(),
                    _ => String::new(),
                })
                .draw()
                .map_err(|e| err(&e))?;
            c.draw_series(u.resources.iter().enumerate().map(|(i, r)| {
                let pct = (r.share() * 100.0).clamp(0.0, 100.0);
                let colour = if pct >= 90.0 {
                    RGBColor(220, 38, 38)
                } else if pct >= 70.0 {
                    RGBColor(217, 119, 6)
                } else {
                    RGBColor(37, 99, 235)
                };
                Rectangle::new([(0.0, SegmentValue::Exact(i)), (pct, SegmentValue::Exact(i + 1))], colour.mix(0.8).filled())
            }))
            .map_err(|e| err(&e))?;
            Ok(())
        };
        if let Err(e) = draw() {
            tracing::warn!(error = %e, "host chart failed to draw");
        }
        let _ = root.present();
    }
    out
}

#[cfg(test)]
mod host_use_tests {
    use super::*;
    use crate::scheduler::{Commitment, PlanOnHost};
    use vessel_core::admission::{Allocation, HostCapacity, HostLoad};
    use vessel_core::resources::ResourceSpec;

    /// A plan's resources from the `[resources]` table of a plan file.
    fn plan(toml: &str) -> PlanResources {
        let spec: ResourceSpec = toml::from_str(toml).unwrap();
        PlanResources::try_from(spec).unwrap()
    }

    /// 8 cores, 16 GiB, 200 GiB; one pinned KVM machine (2 cores, 2 GiB, 50 GiB) and three
    /// containers (1 vCPU at 4:1, 512 MiB / 1 GiB at 1.5:1, 20 GiB at 2:1).
    #[test]
    fn the_cockpit_compares_the_schedulers_sums_exactly() {
        let kvm = plan("kind = \"kvm\"\nvcpus = 2\nmemory_burst_mib = 2048\ndisk_gib = 50\ncpu_ratio = 1.0\ndisk_ratio = 1.0\n");
        let ct = plan(
            "kind = \"container\"\nvcpus = 1\nmemory_guaranteed_mib = 512\nmemory_burst_mib = 1024\ndisk_gib = 20\n\
             cpu_ratio = 4.0\nmemory_ratio = 1.5\ndisk_ratio = 2.0\n",
        );
        let load = HostLoad::of(&[Allocation::from(&kvm), Allocation::from(&ct), Allocation::from(&ct), Allocation::from(&ct)]);
        let c = Commitment {
            capacity: HostCapacity { cpus: 8, memory_mib: 16384, disk_gib: 200 },
            load,
            plans: vec![
                PlanOnHost { code: "burst-s".into(), version: 1, resources: ct, instances: 3 },
                PlanOnHost { code: "kvm-d2".into(), version: 1, resources: kvm, instances: 1 },
            ],
        };
        let u = host_use(&c);
        let show = |r: &ResourceUse| {
            (
                r.name,
                decimal(&r.capacity),
                decimal(&r.committed),
                decimal(&r.free),
                r.sold.as_ref().map(decimal),
                r.effective.as_ref().map(decimal),
            )
        };
        let rows: Vec<_> = u.resources.iter().map(show).collect();
        let s = |x: &str| x.to_string();
        assert_eq!(
            rows,
            vec![
                // 2 pinned; free whole cores = 8 - 2 - ceil(0.75) = 5.
                ("vCPU, pinned", s("8"), s("2"), s("5"), None, None),
                // 3 vCPU at 4:1 = 0.75 of the 6-core pool; effective 3/6 = 0.5.
                ("vCPU, shared pool", s("6"), s("0.75"), s("5.25"), Some(s("3")), Some(s("0.5"))),
                ("Memory, guaranteed", s("16384"), s("3584"), s("12800"), None, None),
                // 2048 + 3 × 1024/1.5 = 4096; sold 2048 + 3072 = 5120 of 16384 = 0.3125.
                ("Memory, burst", s("16384"), s("4096"), s("12288"), Some(s("5120")), Some(s("0.313"))),
                // 50 + 3 × 10 = 80; sold 110 of 200 = 0.55.
                ("Disk", s("200"), s("80"), s("120"), Some(s("110")), Some(s("0.55"))),
            ]
        );
        assert_eq!(u.instances, 4);
        assert!(u.plans.iter().all(|p| p.above().is_empty()), "nothing above its ratio");
        assert!(host_chart(&u).starts_with("<svg"));
    }
}
