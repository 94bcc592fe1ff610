//! The provider's catalogue as files: `plans/*.toml`, validated into [`PlanDefinition`]s and
//! synced into the database (see [`sync`]). A bad file is reported with the file, the field
//! and the rule it breaks, and nothing is written.

pub mod sync;

use crate::money::{Currency, Money};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use vessel_core::resources::ResourceSpec;
use vessel_core::PlanResources;

pg_enum! {
    /// How often a subscription is billed.
    #[derive(PartialOrd, Ord)]
    pub enum BillingCycle in "billing_cycle" {
        Monthly = "monthly",
        Quarterly = "quarterly",
        Annual = "annual",
    }
}

impl BillingCycle {
    pub fn months(self) -> u32 {
        match self {
            BillingCycle::Monthly => 1,
            BillingCycle::Quarterly => 3,
            BillingCycle::Annual => 12,
        }
    }
}

/// A plan's short, stable identifier, e.g. `burst-s`: lowercase letters, digits, hyphens.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlanCode(String);

impl PlanCode {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 40
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err("must be 1 to 40 lowercase letters, digits or hyphens, not starting with a hyphen".into())
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PlanCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated plan, as a file defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanDefinition {
    pub code: PlanCode,
    pub name: String,
    pub description: String,
    pub bandwidth_gib: Option<u64>,
    pub resources: PlanResources,
    /// Sorted by (currency, cycle) so two definitions compare equal when they mean the same.
    pub prices: Vec<(BillingCycle, Money)>,
}

impl PlanDefinition {
    pub fn price(&self, cycle: BillingCycle, currency: Currency) -> Option<Money> {
        self.prices.iter().find(|(c, m)| *c == cycle && m.currency == currency).map(|(_, m)| *m)
    }
}

/// The raw shape of a plan file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    code: String,
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    bandwidth_gib: Option<u64>,
    resources: ResourceSpec,
    /// Per currency: `[prices.EUR] monthly = 500` (minor units).
    prices: BTreeMap<String, CyclePrices>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CyclePrices {
    monthly: Option<u64>,
    quarterly: Option<u64>,
    annual: Option<u64>,
}

/// What is wrong with a plan file: which file, which field, which rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {field}: {rule}", file.display())]
pub struct PlanFileError {
    pub file: PathBuf,
    pub field: String,
    pub rule: String,
}

impl PlanFileError {
    fn new(file: &Path, field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self { file: file.to_path_buf(), field: field.into(), rule: rule.into() }
    }
}

/// Parses and validates one plan file's text.
pub fn parse_plan(file: &Path, text: &str) -> Result<PlanDefinition, PlanFileError> {
    let raw: PlanFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start].lines().count().max(1));
        let field = line.map(|l| format!("line {l}")).unwrap_or_else(|| "file".into());
        PlanFileError::new(file, field, e.message().to_string())
    })?;
    let code = PlanCode::parse(&raw.code).map_err(|r| PlanFileError::new(file, "code", r))?;
    let name = raw.name.trim().to_string();
    if name.is_empty() {
        return Err(PlanFileError::new(file, "name", "must not be empty"));
    }
    let resources =
        PlanResources::try_from(raw.resources).map_err(|e| PlanFileError::new(file, format!("resources.{}", e.field), e.rule))?;
    if raw.prices.is_empty() {
        return Err(PlanFileError::new(file, "prices", "at least one currency is needed, e.g. [prices.EUR] monthly = 500"));
    }
    let mut prices = Vec::new();
    for (cur, p) in &raw.prices {
        let currency = Currency::parse(cur).map_err(|e| PlanFileError::new(file, format!("prices.{cur}"), e.to_string()))?;
        if p.monthly.is_none() {
            return Err(PlanFileError::new(file, format!("prices.{cur}.monthly"), "every currency needs a monthly price"));
        }
        for (cycle, amount) in
            [(BillingCycle::Monthly, p.monthly), (BillingCycle::Quarterly, p.quarterly), (BillingCycle::Annual, p.annual)]
        {
            if let Some(a) = amount {
                let minor =
                    i64::try_from(a).map_err(|_| PlanFileError::new(file, format!("prices.{cur}.{}", cycle.as_str()), "is too large"))?;
                prices.push((cycle, Money::new(minor, currency)));
            }
        }
    }
    prices.sort_by_key(|(c, m)| (m.currency, *c));
    Ok(PlanDefinition { code, name, description: raw.description.trim().to_string(), bandwidth_gib: raw.bandwidth_gib, resources, prices })
}

/// Reads every `*.toml` in `dir`; returns all problems at once so an admin fixes them in one go.
pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, PlanDefinition)>, Vec<PlanFileError>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return Err(vec![PlanFileError::new(dir, "folder", format!("cannot be read: {e}"))]),
    };
    let mut files: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
    files.sort();
    let mut errors = Vec::new();
    let mut plans = Vec::new();
    let mut seen: HashMap<PlanCode, PathBuf> = HashMap::new();
    for f in files {
        let parsed = std::fs::read_to_string(&f)
            .map_err(|e| PlanFileError::new(&f, "file", format!("cannot be read: {e}")))
            .and_then(|text| parse_plan(&f, &text));
        match parsed {
            Ok(def) => {
                if let Some(first) = seen.get(&def.code) {
                    errors.push(PlanFileError::new(&f, "code", format!("{} is already defined in {}", def.code, first.display())));
                } else {
                    seen.insert(def.code.clone(), f.clone());
                    plans.push((f, def));
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if plans.is_empty() && errors.is_empty() {
        errors.push(PlanFileError::new(dir, "folder", "holds no *.toml plan files"));
    }
    if errors.is_empty() {
        Ok(plans)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
code = "burst-s"
name = "Burst S"
[resources]
kind = "container"
vcpus = 1
memory_guaranteed_mib = 512
memory_burst_mib = 1024
disk_gib = 20
cpu_ratio = 4.0
memory_ratio = 1.5
disk_ratio = 2.0
[prices.EUR]
monthly = 500
annual = 5000
"#;

    #[test]
    fn parses_a_good_file() {
        let p = parse_plan(Path::new("x.toml"), GOOD).unwrap();
        assert_eq!(p.code.as_str(), "burst-s");
        let eur = Currency::parse("EUR").unwrap();
        assert_eq!(p.price(BillingCycle::Annual, eur), Some(Money::new(5000, eur)));
        assert_eq!(p.price(BillingCycle::Quarterly, eur), None);
    }

    #[test]
    fn errors_name_file_field_and_rule() {
        let bad = GOOD.replace("memory_burst_mib = 1024", "memory_burst_mib = 256");
        let e = parse_plan(Path::new("plans/x.toml"), &bad).unwrap_err();
        assert_eq!(e.field, "resources.memory_burst_mib");
        assert!(e.to_string().starts_with("plans/x.toml: resources.memory_burst_mib: burst (256 MiB) must not be below"), "{e}");

        let e = parse_plan(Path::new("x.toml"), &GOOD.replace("vcpus", "vcpu")).unwrap_err();
        assert!(e.rule.contains("vcpu"), "{e}");
        assert!(e.field.starts_with("line"), "{e}");

        let e = parse_plan(Path::new("x.toml"), &GOOD.replace("monthly = 500\n", "")).unwrap_err();
        assert_eq!(e.field, "prices.EUR.monthly");

        let e = parse_plan(Path::new("x.toml"), &GOOD.replace("prices.EUR", "prices.eur")).unwrap_err();
        assert_eq!(e.field, "prices.eur");

        let kvm = GOOD.replace("\"container\"", "\"kvm\"");
        let e = parse_plan(Path::new("x.toml"), &kvm).unwrap_err();
        assert_eq!(e.field, "resources.memory_ratio", "{e}");
    }

    #[test]
    fn the_shipped_catalogue_is_valid_and_complete() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans");
        let plans = load_dir(&dir).unwrap_or_else(|errs| panic!("{errs:#?}"));
        let count = |k| plans.iter().filter(|(_, p)| p.resources.kind() == k).count();
        assert!(count(vessel_core::InstanceKind::Container) >= 3);
        assert!(count(vessel_core::InstanceKind::Kvm) >= 3);
        for (f, p) in &plans {
            for cycle in BillingCycle::ALL {
                assert!(p.prices.iter().any(|(c, _)| *c == cycle), "{} lacks a {} price", f.display(), cycle.as_str());
            }
        }
    }
}
