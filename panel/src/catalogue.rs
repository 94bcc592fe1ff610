//! The catalogue as customers see it: orderable plans grouped by kind, with the guarantee and
//! the burst said plainly and a price per billing cycle.

use crate::db::catalogue::{self as sql, PlanSummary};
use crate::money::{Currency, Money};
use crate::plans::BillingCycle;
use sqlx::PgPool;

/// A plan ready to show.
#[derive(Clone, Debug)]
pub struct PlanCard {
    pub plan: PlanSummary,
    /// (cycle, price) in the shown currency, monthly first.
    pub prices: Vec<(BillingCycle, Money)>,
    /// Why it cannot be ordered: no active host could ever run it ([`crate::capacity`]).
    pub unavailable: Option<String>,
}

impl PlanCard {
    /// "1 GiB guaranteed, bursts to 2 GiB" or "4 GiB dedicated".
    pub fn memory_text(&self) -> String {
        let p = &self.plan;
        if p.kind == vessel_core::InstanceKind::Kvm || p.memory_burst_mib == p.memory_guaranteed_mib {
            format!("{} RAM, dedicated", mib(p.memory_guaranteed_mib))
        } else {
            format!("{} RAM guaranteed, bursts to {}", mib(p.memory_guaranteed_mib), mib(p.memory_burst_mib))
        }
    }
    pub fn cpu_text(&self) -> String {
        let p = &self.plan;
        let v = if p.vcpus == 1 { "1 vCPU".to_string() } else { format!("{} vCPUs", p.vcpus) };
        if p.cpu_ratio_milli <= 1000 {
            format!("{v}, dedicated cores")
        } else {
            format!("{v}, shared (a fair share guaranteed, idle time borrowable)")
        }
    }
    pub fn disk_text(&self) -> String {
        format!("{} GiB SSD", self.plan.disk_gib)
    }
    pub fn bandwidth_text(&self) -> String {
        match self.plan.bandwidth_gib {
            Some(g) if g >= 1000 && g % 1000 == 0 => format!("{} TB transfer / month", g / 1000),
            Some(g) => format!("{g} GiB transfer / month"),
            None => "unmetered transfer".into(),
        }
    }
    pub fn monthly(&self) -> String {
        self.prices.iter().find(|(c, _)| *c == BillingCycle::Monthly).map(|(_, m)| m.to_string()).unwrap_or_else(|| "—".into())
    }
}

pub fn mib(v: i64) -> String {
    if v >= 1024 && v % 1024 == 0 {
        format!("{} GiB", v / 1024)
    } else if v >= 1024 {
        format!("{:.1} GiB", v as f64 / 1024.0)
    } else {
        format!("{v} MiB")
    }
}

/// The catalogue in one currency: (containers, kvm).
pub async fn orderable(pool: &PgPool, currency: Currency) -> Result<(Vec<PlanCard>, Vec<PlanCard>), sqlx::Error> {
    let plans = sql::orderable_plans(pool).await?;
    let unavailable = crate::capacity::unavailable_plans(&mut *pool.acquire().await?).await?;
    let ids: Vec<i64> = plans.iter().map(|p| p.id).collect();
    let prices = sql::prices_of(pool, &ids).await?;
    let mut containers = Vec::new();
    let mut kvm = Vec::new();
    for plan in plans {
        let prices: Vec<(BillingCycle, Money)> = prices
            .iter()
            .filter(|(id, _, cur, _)| *id == plan.id && cur == currency.as_str())
            .map(|(_, cycle, _, amount)| (*cycle, Money::new(*amount, currency)))
            .collect();
        if prices.is_empty() {
            continue; // not sold in this currency
        }
        let unavailable = unavailable.get(&plan.id).cloned();
        let card = PlanCard { plan, prices, unavailable };
        if card.plan.kind == vessel_core::InstanceKind::Kvm {
            kvm.push(card)
        } else {
            containers.push(card)
        }
    }
    Ok((containers, kvm))
}

pub async fn plan_card(pool: &PgPool, code: &str, currency: Currency) -> Result<Option<PlanCard>, sqlx::Error> {
    let (c, k) = orderable(pool, currency).await?;
    Ok(c.into_iter().chain(k).find(|p| p.plan.code == code))
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_sizes_read_naturally() {
        assert_eq!(super::mib(512), "512 MiB");
        assert_eq!(super::mib(2048), "2 GiB");
        assert_eq!(super::mib(1536), "1.5 GiB");
    }
}
