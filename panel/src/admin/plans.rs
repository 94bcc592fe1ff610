//! Plans as admins make and change them: one form field per key of a plan file, validated and
//! versioned by the same code as `plans sync`.

use super::{invalid, opt_num, AdminError, By};
use crate::audit;
use crate::plans::sync::{self, Change};
use crate::plans::{parse_plan, BillingCycle, PlanDefinition};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use std::path::Path;

/// The plan form: one field per key of a plan file, so validation errors name the field.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct PlanForm {
    pub code: String,
    pub name: String,
    pub description: String,
    pub bandwidth_gib: String,
    pub kind: String,
    pub vcpus: String,
    pub memory_guaranteed_mib: String,
    pub memory_burst_mib: String,
    pub swap_mib: String,
    pub disk_gib: String,
    pub cpu_ratio: String,
    pub memory_ratio: String,
    pub disk_ratio: String,
    pub pids_max: String,
    pub net_rate_mbit: String,
    pub io_weight: String,
    pub eur_monthly: String,
    pub eur_quarterly: String,
    pub eur_annual: String,
    pub usd_monthly: String,
    pub usd_quarterly: String,
    pub usd_annual: String,
}

impl PlanForm {
    /// The plan file this form describes; what `plans sync` would read.
    pub fn to_toml(&self) -> Result<String, AdminError> {
        use toml::Value;
        let mut t = toml::Table::new();
        t.insert("code".into(), Value::String(self.code.trim().to_string()));
        t.insert("name".into(), Value::String(self.name.clone()));
        t.insert("description".into(), Value::String(self.description.clone()));
        if let Some(b) = opt_num::<i64>("bandwidth_gib", &self.bandwidth_gib, "a whole number of GiB, or empty for unmetered")? {
            t.insert("bandwidth_gib".into(), Value::Integer(b));
        }
        let mut r = toml::Table::new();
        r.insert("kind".into(), Value::String(self.kind.trim().to_string()));
        let ints: [(&str, &str, bool); 8] = [
            ("vcpus", &self.vcpus, true),
            ("memory_guaranteed_mib", &self.memory_guaranteed_mib, false),
            ("memory_burst_mib", &self.memory_burst_mib, true),
            ("swap_mib", &self.swap_mib, false),
            ("disk_gib", &self.disk_gib, true),
            ("pids_max", &self.pids_max, false),
            ("net_rate_mbit", &self.net_rate_mbit, false),
            ("io_weight", &self.io_weight, false),
        ];
        for (k, v, required) in ints {
            match opt_num::<i64>(k, v, "a whole number")? {
                Some(n) => {
                    r.insert(k.into(), Value::Integer(n));
                }
                None if required => return Err(invalid(k, "is required")),
                None => {}
            }
        }
        for (k, v) in [("cpu_ratio", &self.cpu_ratio), ("memory_ratio", &self.memory_ratio), ("disk_ratio", &self.disk_ratio)] {
            let n: f64 = opt_num(k, v, "a number such as 1.0 or 2.5")?.ok_or_else(|| invalid(k, "is required (1.0 = no overcommit)"))?;
            r.insert(k.into(), Value::Float(n));
        }
        t.insert("resources".into(), Value::Table(r));
        let mut prices = toml::Table::new();
        for (cur, m, q, a) in [
            ("EUR", &self.eur_monthly, &self.eur_quarterly, &self.eur_annual),
            ("USD", &self.usd_monthly, &self.usd_quarterly, &self.usd_annual),
        ] {
            let mut c = toml::Table::new();
            for (cycle, v) in [("monthly", m), ("quarterly", q), ("annual", a)] {
                let field = format!("{}_{cycle}", cur.to_lowercase());
                if let Some(n) = opt_num::<i64>(&field, v, "a whole number of cents")? {
                    c.insert(cycle.into(), Value::Integer(n));
                }
            }
            if !c.is_empty() {
                prices.insert(cur.into(), Value::Table(c));
            }
        }
        t.insert("prices".into(), Value::Table(prices));
        toml::to_string(&t).map_err(|e| invalid("plan", e.to_string()))
    }

    /// Validated exactly as a plan file is; the error names the form field.
    pub fn definition(&self) -> Result<(String, PlanDefinition), AdminError> {
        let text = self.to_toml()?;
        let def = parse_plan(Path::new("admin"), &text).map_err(|e| {
            let field = e.field.trim_start_matches("resources.").replace("prices.", "").replace('.', "_").to_lowercase();
            invalid(&field, e.rule)
        })?;
        Ok((text, def))
    }

    pub fn from_stored(p: &crate::db::catalogue::PlanSummary, prices: &[(i64, BillingCycle, String, i64)]) -> Self {
        let ratio = |m: i32| format!("{}", m as f64 / 1000.0);
        let price = |cur: &str, cycle: BillingCycle| {
            prices.iter().find(|(id, c, cu, _)| *id == p.id && *c == cycle && cu == cur).map(|x| x.3.to_string()).unwrap_or_default()
        };
        PlanForm {
            code: p.code.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            bandwidth_gib: p.bandwidth_gib.map(|v| v.to_string()).unwrap_or_default(),
            kind: p.kind.as_str().to_string(),
            vcpus: p.vcpus.to_string(),
            memory_guaranteed_mib: p.memory_guaranteed_mib.to_string(),
            memory_burst_mib: p.memory_burst_mib.to_string(),
            swap_mib: p.swap_mib.to_string(),
            disk_gib: p.disk_gib.to_string(),
            cpu_ratio: ratio(p.cpu_ratio_milli),
            memory_ratio: ratio(p.memory_ratio_milli),
            disk_ratio: ratio(p.disk_ratio_milli),
            pids_max: p.pids_max.to_string(),
            net_rate_mbit: p.net_rate_mbit.map(|v| v.to_string()).unwrap_or_default(),
            io_weight: p.io_weight.to_string(),
            eur_monthly: price("EUR", BillingCycle::Monthly),
            eur_quarterly: price("EUR", BillingCycle::Quarterly),
            eur_annual: price("EUR", BillingCycle::Annual),
            usd_monthly: price("USD", BillingCycle::Monthly),
            usd_quarterly: price("USD", BillingCycle::Quarterly),
            usd_annual: price("USD", BillingCycle::Annual),
        }
    }
}

/// Creates or changes a plan by the rules of `plans sync`: a plan in use gets a new version.
/// `editing` is the code being edited (the code itself cannot change on edit).
pub async fn save_plan(pool: &PgPool, by: By, form: &PlanForm, editing: Option<&str>) -> Result<(String, Change), AdminError> {
    let (text, def) = form.definition()?;
    let mut tx = pool.begin().await?;
    sync::lock(&mut tx).await?;
    let existing = crate::db::plans::latest(&mut tx, def.code.as_str()).await?;
    match (editing, &existing) {
        (None, Some(_)) => return Err(invalid("code", format!("{} already exists; edit it instead", def.code))),
        (Some(code), _) if code != def.code.as_str() => return Err(invalid("code", "cannot change; create a new plan instead")),
        (Some(_), None) => return Err(AdminError::NotFound),
        _ => {}
    }
    let change = sync::upsert_one(&mut tx, &def, Some("admin")).await?;
    audit::record(
        &mut *tx,
        by.actor(),
        if editing.is_some() { "plan.update" } else { "plan.create" },
        Some(("plan", def.code.to_string())),
        by.addr,
        json!({ "change": format!("{change:?}"), "definition": text }),
    )
    .await?;
    tx.commit().await?;
    Ok((def.code.to_string(), change))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_form_is_validated_like_a_plan_file() {
        let mut f = PlanForm {
            code: "web-s".into(),
            name: "Web S".into(),
            kind: "container".into(),
            vcpus: "1".into(),
            memory_guaranteed_mib: "512".into(),
            memory_burst_mib: "1024".into(),
            disk_gib: "10".into(),
            cpu_ratio: "2".into(),
            memory_ratio: "1.5".into(),
            disk_ratio: "1".into(),
            eur_monthly: "300".into(),
            ..Default::default()
        };
        let (_, def) = f.definition().unwrap();
        assert_eq!(def.code.as_str(), "web-s");
        f.memory_burst_mib = "256".into();
        match f.definition() {
            Err(AdminError::Invalid { field, .. }) => assert_eq!(field, "memory_burst_mib"),
            other => panic!("{other:?}"),
        }
        f.memory_burst_mib = "1024\n[x]".into();
        assert!(matches!(f.definition(), Err(AdminError::Invalid { field, .. }) if field == "memory_burst_mib"));
        f.memory_burst_mib = "1024".into();
        f.eur_monthly = String::new();
        assert!(f.definition().is_err(), "a price is needed");
    }
}
