//! What admins do to the catalogue and the accounts: plans (through the same validation and
//! versioning as `plans sync`), hosts, IP pools, OS templates, customers, resellers. Every
//! change is written to the audit log in the transaction that makes it: who, what, and from
//! which address.

use crate::accounts::{hash_password, AccountStatus, Email, Password};
use crate::audit::{self, Actor};
use crate::db::{admin as sql_admin, auth as sql_auth, hosts as sql_hosts, ip_pools as sql_pools, os_templates as sql_os};
use crate::plans::sync::{self, Change};
use crate::plans::{parse_plan, BillingCycle, PlanDefinition};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use std::net::IpAddr;
use std::path::Path;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A field the admin must correct.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("not found")]
    NotFound,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

fn invalid(field: &str, message: impl Into<String>) -> AdminError {
    AdminError::Invalid { field: field.to_string(), message: message.into() }
}

/// Who is acting, and from where (for the audit log).
#[derive(Clone, Copy, Debug)]
pub struct By {
    pub admin: Uuid,
    pub addr: Option<IpAddr>,
}

impl By {
    fn actor(&self) -> Actor {
        Actor::admin(self.admin)
    }
}

fn parse_num<T: std::str::FromStr>(field: &str, v: &str, what: &str) -> Result<T, AdminError> {
    v.trim().parse().map_err(|_| invalid(field, format!("must be {what} (got {:?})", v.trim())))
}

fn opt_num<T: std::str::FromStr>(field: &str, v: &str, what: &str) -> Result<Option<T>, AdminError> {
    if v.trim().is_empty() {
        Ok(None)
    } else {
        parse_num(field, v, what).map(Some)
    }
}

fn checked(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|v| !v.is_empty() && v != "off" && v != "false")
}

// ------------------------------------------------------------------ plans

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

// ------------------------------------------------------------------ hosts

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct HostForm {
    pub name: String,
    pub api_url: String,
    pub supports_containers: Option<String>,
    pub supports_kvm: Option<String>,
    pub cpus: String,
    pub memory_mib: String,
    pub disk_gib: String,
    pub reserved_cpus: String,
    pub reserved_memory_mib: String,
    pub reserved_disk_gib: String,
    pub enabled: Option<String>,
}

impl HostForm {
    pub fn from_row(h: &sql_hosts::HostSummary) -> Self {
        let on = |b: bool| b.then(|| "on".to_string());
        HostForm {
            name: h.name.clone(),
            api_url: h.api_url.clone(),
            supports_containers: on(h.supports_containers),
            supports_kvm: on(h.supports_kvm),
            cpus: h.cpus.to_string(),
            memory_mib: h.memory_mib.to_string(),
            disk_gib: h.disk_gib.to_string(),
            reserved_cpus: h.reserved_cpus.to_string(),
            reserved_memory_mib: h.reserved_memory_mib.to_string(),
            reserved_disk_gib: h.reserved_disk_gib.to_string(),
            enabled: on(h.enabled),
        }
    }

    pub fn validate(&self) -> Result<sql_hosts::HostInput, AdminError> {
        let name = self.name.trim().to_lowercase();
        if name.is_empty() || name.len() > 63 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
            return Err(invalid("name", "use 1 to 63 letters, digits, dots or hyphens, e.g. host-fra-1"));
        }
        let api_url = self.api_url.trim().trim_end_matches('/').to_string();
        if !(api_url.starts_with("http://") || api_url.starts_with("https://")) || api_url.len() < 10 {
            return Err(invalid("api_url", "must be the provisioner's base URL, e.g. https://host-fra-1.example.net:7443"));
        }
        let cpus: i32 = parse_num("cpus", &self.cpus, "a whole number of CPUs")?;
        let memory_mib: i64 = parse_num("memory_mib", &self.memory_mib, "a whole number of MiB")?;
        let disk_gib: i64 = parse_num("disk_gib", &self.disk_gib, "a whole number of GiB")?;
        let reserved_cpus: i32 = opt_num("reserved_cpus", &self.reserved_cpus, "a whole number")?.unwrap_or(0);
        let reserved_memory_mib: i64 = opt_num("reserved_memory_mib", &self.reserved_memory_mib, "a whole number")?.unwrap_or(0);
        let reserved_disk_gib: i64 = opt_num("reserved_disk_gib", &self.reserved_disk_gib, "a whole number")?.unwrap_or(0);
        for (f, v) in [("cpus", cpus as i64), ("memory_mib", memory_mib), ("disk_gib", disk_gib)] {
            if v <= 0 {
                return Err(invalid(f, "must be more than zero"));
            }
        }
        for (f, r, c) in [
            ("reserved_cpus", reserved_cpus as i64, cpus as i64),
            ("reserved_memory_mib", reserved_memory_mib, memory_mib),
            ("reserved_disk_gib", reserved_disk_gib, disk_gib),
        ] {
            if r < 0 || r >= c {
                return Err(invalid(f, format!("must be at least 0 and below the capacity ({c})")));
            }
        }
        let supports_containers = checked(&self.supports_containers);
        let supports_kvm = checked(&self.supports_kvm);
        if !supports_containers && !supports_kvm {
            return Err(invalid("supports_containers", "a host runs containers, KVM machines, or both"));
        }
        Ok(sql_hosts::HostInput {
            name,
            api_url,
            supports_containers,
            supports_kvm,
            cpus,
            memory_mib,
            disk_gib,
            reserved_cpus,
            reserved_memory_mib,
            reserved_disk_gib,
            enabled: checked(&self.enabled),
        })
    }
}

fn unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.code().as_deref() == Some("23505"))
}

pub async fn save_host(pool: &PgPool, by: By, id: Option<Uuid>, form: &HostForm) -> Result<Uuid, AdminError> {
    let h = form.validate()?;
    let mut tx = pool.begin().await?;
    let saved = match sql_hosts::save(&mut tx, id, &h).await {
        Ok(s) => s.ok_or(AdminError::NotFound)?,
        Err(e) if unique_violation(&e) => return Err(invalid("name", "another host has this name")),
        Err(e) => return Err(e.into()),
    };
    audit::record(
        &mut *tx,
        by.actor(),
        if id.is_some() { "host.update" } else { "host.create" },
        Some(("host", saved.to_string())),
        by.addr,
        json!({ "name": h.name, "api_url": h.api_url, "cpus": h.cpus, "memory_mib": h.memory_mib, "disk_gib": h.disk_gib,
                "reserved": [h.reserved_cpus, h.reserved_memory_mib, h.reserved_disk_gib], "enabled": h.enabled }),
    )
    .await?;
    tx.commit().await?;
    Ok(saved)
}

// ------------------------------------------------------------------ IP pools

/// A network in CIDR notation whose host bits are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = s.trim().split_once('/').ok_or("write it as address/prefix, e.g. 203.0.113.0/24")?;
        let addr: IpAddr = a.parse().map_err(|_| format!("{a:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = p.parse().ok().filter(|p| *p <= max).ok_or(format!("the prefix must be 0 to {max}"))?;
        let c = Cidr { addr, prefix };
        if c.network_u128() != Self::bits(addr) {
            return Err(format!("host bits are set; the network address is {}/{prefix}", Self::from_bits(addr, c.network_u128())));
        }
        Ok(c)
    }
    fn bits(a: IpAddr) -> u128 {
        match a {
            IpAddr::V4(v) => u32::from(v) as u128,
            IpAddr::V6(v) => u128::from(v),
        }
    }
    fn from_bits(like: IpAddr, b: u128) -> IpAddr {
        match like {
            IpAddr::V4(_) => IpAddr::V4((b as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(b.into()),
        }
    }
    fn width(&self) -> u32 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }
    fn host_bits(&self) -> u32 {
        self.width() - self.prefix as u32
    }
    fn network_u128(&self) -> u128 {
        let hb = self.host_bits();
        if hb >= 128 {
            0
        } else {
            (Self::bits(self.addr) >> hb) << hb
        }
    }
    pub fn contains(&self, a: IpAddr) -> bool {
        a.is_ipv4() == self.addr.is_ipv4() && {
            let hb = self.host_bits();
            hb >= 128 || (Self::bits(a) >> hb) == (self.network_u128() >> hb)
        }
    }
    /// Usable host addresses in order, skipping the network (and for IPv4 the broadcast)
    /// address and `except`, at most `limit`.
    pub fn hosts(&self, except: IpAddr, limit: usize) -> Vec<IpAddr> {
        let hb = self.host_bits();
        let size: u128 = if hb >= 128 { u128::MAX } else { 1u128 << hb };
        let base = self.network_u128();
        let (first, last) = if self.addr.is_ipv4() && hb >= 2 {
            (1, size - 2)
        } else if hb == 0 {
            (0, 0)
        } else {
            (1, size - 1)
        };
        let mut out = Vec::new();
        let mut i = first;
        while i <= last && out.len() < limit {
            let a = Self::from_bits(self.addr, base + i);
            if a != except {
                out.push(a);
            }
            i += 1;
        }
        out
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct PoolForm {
    pub name: String,
    pub network: String,
    pub gateway: String,
    pub host_id: String,
    /// A private pool: its hosts masquerade its addresses' traffic to the outside.
    pub nat: Option<String>,
    /// The resolvers its servers use, separated by commas or spaces (empty: [`default_dns`]).
    pub dns: String,
}

/// The resolvers a pool gets when its admin names none: well-known public ones of its family.
pub fn default_dns(v4: bool) -> Vec<IpAddr> {
    let names: &[&str] = if v4 { &["1.1.1.1", "9.9.9.9"] } else { &["2606:4700:4700::1111", "2620:fe::fe"] };
    names.iter().map(|n| n.parse().expect("valid literals")).collect()
}

/// The most resolvers a pool names (a resolv.conf uses three; the schema allows four).
pub const MAX_DNS: usize = 3;

/// The admin's resolver list: addresses of the pool's family, at most [`MAX_DNS`], no
/// repeats; empty gives [`default_dns`].
pub fn parse_dns(text: &str, v4: bool) -> Result<Vec<IpAddr>, String> {
    let mut out: Vec<IpAddr> = Vec::new();
    for word in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|w| !w.is_empty()) {
        let ip: IpAddr = word.parse().map_err(|_| format!("{word:?} is not an IP address"))?;
        if ip.is_ipv4() != v4 {
            return Err(format!("{ip} is not an {} address like the pool", if v4 { "IPv4" } else { "IPv6" }));
        }
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(format!("{ip} cannot answer DNS queries"));
        }
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    if out.len() > MAX_DNS {
        return Err(format!("name at most {MAX_DNS} resolvers"));
    }
    Ok(if out.is_empty() { default_dns(v4) } else { out })
}

pub async fn create_pool(pool: &PgPool, by: By, f: &PoolForm) -> Result<Uuid, AdminError> {
    let name = f.name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err(invalid("name", "give the pool a name of up to 64 characters"));
    }
    let net = Cidr::parse(&f.network).map_err(|m| invalid("network", m))?;
    let gw: IpAddr = f.gateway.trim().parse().map_err(|_| invalid("gateway", "must be an IP address"))?;
    if !net.contains(gw) || gw == net.addr {
        return Err(invalid("gateway", format!("must be a host address inside {net}")));
    }
    let host = if f.host_id.trim().is_empty() {
        None
    } else {
        Some(Uuid::parse_str(f.host_id.trim()).map_err(|_| invalid("host_id", "pick a host from the list"))?)
    };
    let dns = parse_dns(&f.dns, gw.is_ipv4()).map_err(|m| invalid("dns", m))?;
    let dns_text: Vec<String> = dns.iter().map(|d| d.to_string()).collect();
    let mut tx = pool.begin().await?;
    let nat = checked(&f.nat);
    if nat && !matches!(gw, IpAddr::V4(_)) {
        return Err(invalid("nat", "only IPv4 pools are masqueraded"));
    }
    let id = match sql_pools::insert(&mut tx, name, &net.to_string(), &gw.to_string(), host, nat, &dns_text).await {
        Ok(id) => id,
        Err(e) if unique_violation(&e) => return Err(invalid("name", "another pool has this name")),
        Err(e) if e.as_database_error().is_some_and(|d| d.code().as_deref() == Some("23503")) => {
            return Err(invalid("host_id", "that host does not exist"))
        }
        Err(e) => return Err(e.into()),
    };
    audit::record(
        &mut *tx,
        by.actor(),
        "ip_pool.create",
        Some(("ip_pool", id.to_string())),
        by.addr,
        json!({ "name": name, "network": net.to_string(), "gateway": gw.to_string(), "host_id": host, "nat": nat, "dns": dns_text }),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// The most addresses one click adds (a /22 of IPv4; IPv6 pools are added in slices).
pub const MAX_GENERATE: usize = 1024;

/// Adds the pool's usable addresses (not the gateway), up to `count`. Idempotent: addresses
/// already there are skipped. Returns how many were added.
pub async fn generate_addresses(pool: &PgPool, by: By, pool_id: Uuid, count: usize) -> Result<u64, AdminError> {
    let mut tx = pool.begin().await?;
    let (network, gateway) = sql_pools::lock(&mut tx, pool_id).await?.ok_or(AdminError::NotFound)?;
    let net = Cidr::parse(&network).map_err(|m| invalid("network", m))?;
    let gw: IpAddr = gateway.parse().map_err(|_| invalid("gateway", "stored gateway is not an address"))?;
    let addrs: Vec<String> = net.hosts(gw, count.clamp(1, MAX_GENERATE)).into_iter().map(|a| a.to_string()).collect();
    let added = sql_pools::add_addresses(&mut tx, pool_id, &addrs).await?;
    audit::record(
        &mut *tx,
        by.actor(),
        "ip_pool.generate",
        Some(("ip_pool", pool_id.to_string())),
        by.addr,
        json!({ "requested": count, "added": added }),
    )
    .await?;
    tx.commit().await?;
    Ok(added)
}

// ------------------------------------------------------------------ OS templates

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct OsTemplateForm {
    pub name: String,
    pub display_name: String,
    pub version: String,
    pub for_containers: Option<String>,
    pub for_kvm: Option<String>,
    pub sha256: String,
}

pub async fn create_os_template(pool: &PgPool, by: By, f: &OsTemplateForm) -> Result<Uuid, AdminError> {
    let name = f.name.trim().to_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    if !ok {
        return Err(invalid("name", "use lowercase letters, digits, dots and hyphens, e.g. debian-12"));
    }
    let display = f.display_name.trim();
    if display.is_empty() {
        return Err(invalid("display_name", "is what customers see, e.g. Debian 12"));
    }
    let sha = f.sha256.trim().to_lowercase();
    if !sha.is_empty() && (sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit())) {
        return Err(invalid("sha256", "must be 64 hexadecimal characters, or empty"));
    }
    let (c, k) = (checked(&f.for_containers), checked(&f.for_kvm));
    if !c && !k {
        return Err(invalid("for_containers", "a template is for containers, KVM machines, or both"));
    }
    // Only what hosts can build is sold (vessel_core::templates, the one list).
    let Some(known) = vessel_core::templates::known(&name) else {
        return Err(invalid(
            "name",
            format!("no host builds a template of that name; the known ones are {}", vessel_core::templates::known_names()),
        ));
    };
    if (c && !known.for_containers) || (k && !known.for_kvm) {
        let what = match (known.for_containers, known.for_kvm) {
            (true, false) => "containers only",
            (false, true) => "KVM machines only",
            _ => "both kinds",
        };
        return Err(invalid(if c && !known.for_containers { "for_containers" } else { "for_kvm" }, format!("{name} is for {what}")));
    }
    let mut tx = pool.begin().await?;
    let id = sql_os::insert(&mut tx, &name, display, f.version.trim(), c, k, (!sha.is_empty()).then_some(sha.as_str()))
        .await?
        .ok_or_else(|| invalid("name", "another template has this name"))?;
    audit::record(
        &mut *tx,
        by.actor(),
        "os_template.create",
        Some(("os_template", id.to_string())),
        by.addr,
        json!({ "name": name, "display_name": display }),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

pub async fn set_os_template_enabled(pool: &PgPool, by: By, id: Uuid, enabled: bool) -> Result<(), AdminError> {
    let mut tx = pool.begin().await?;
    if !sql_os::set_enabled(&mut tx, id, enabled).await? {
        return Err(AdminError::NotFound);
    }
    audit::record(
        &mut *tx,
        by.actor(),
        if enabled { "os_template.enable" } else { "os_template.disable" },
        Some(("os_template", id.to_string())),
        by.addr,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

// ------------------------------------------------------------------ customers and resellers

/// Suspends a customer's account (they are signed out everywhere) or lifts the suspension.
/// Suspends a customer (with a reason, mailed to them and audited) or reactivates one. A
/// suspension signs them out and suspends every live server of theirs through [`crate::vps`]
/// (each remembers the state it had); reactivation returns each server to that state. All in
/// one transaction.
pub async fn set_customer_suspended(
    pool: &PgPool,
    by: By,
    id: Uuid,
    suspend: bool,
    reason: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<usize, AdminError> {
    let reason = reason.trim();
    if suspend && (reason.is_empty() || reason.chars().count() > 500) {
        return Err(invalid("reason", "say why, in 1 to 500 characters: the customer is mailed this"));
    }
    let mut tx = pool.begin().await?;
    let (from, to) =
        if suspend { (AccountStatus::Active, AccountStatus::Suspended) } else { (AccountStatus::Suspended, AccountStatus::Active) };
    if !sql_admin::set_status(&mut tx, id, from, to).await? {
        return Err(AdminError::Invalid {
            field: "status".into(),
            message: format!("only an {from} customer can be {}", if suspend { "suspended" } else { "unsuspended" }),
        });
    }
    use crate::vps::{Request, Target};
    let servers = if suspend {
        sql_auth::delete_sessions_of(&mut tx, id).await?;
        crate::vps::request_all(&mut tx, Target::Account(id), Request::AccountSuspend, now).await?
    } else {
        crate::vps::request_all(&mut tx, Target::Account(id), Request::AccountResume, now).await?
    };
    if let Some(a) = sql_auth::account_by_id_tx(&mut tx, id).await? {
        if let Ok(email) = Email::parse(&a.0) {
            let (template, data) = if suspend {
                ("account_suspended", json!({ "name": a.1, "reason": reason }))
            } else {
                ("account_reactivated", json!({ "name": a.1 }))
            };
            crate::outbox::enqueue(&mut tx, &email, template, data, None).await?;
        }
    }
    audit::record(
        &mut *tx,
        by.actor(),
        if suspend { "customer.suspend" } else { "customer.unsuspend" },
        Some(("account", id.to_string())),
        by.addr,
        json!({ "reason": reason, "servers": servers }),
    )
    .await?;
    tx.commit().await?;
    Ok(servers)
}

/// The provider's rule that admins and resellers must use two-factor (audited). Accounts
/// without it are sent to set it up before they reach their areas.
pub async fn set_staff_two_factor_required(pool: &PgPool, by: By, on: bool) -> Result<(), AdminError> {
    let mut tx = pool.begin().await?;
    sql_auth::set_staff_two_factor_required(&mut tx, on).await?;
    audit::record(&mut *tx, by.actor(), "security.staff_two_factor", None, by.addr, json!({ "required": on })).await?;
    tx.commit().await?;
    Ok(())
}

/// Marks a stuck sign-up's address as verified (the admin vouches for it), so the customer can
/// log in; its mailed links stop working. Only an account still awaiting verification.
pub async fn mark_customer_verified(pool: &PgPool, by: By, id: Uuid) -> Result<(), AdminError> {
    let mut tx = pool.begin().await?;
    let (email, _) = sql_admin::pending_signup_for_update(&mut tx, id)
        .await?
        .ok_or_else(|| invalid("status", "only a customer awaiting verification can be marked verified"))?;
    sql_auth::mark_verified(&mut tx, id).await?;
    sql_auth::retire_tokens(&mut tx, id, crate::auth::TokenPurpose::VerifyEmail).await?;
    audit::record(&mut *tx, by.actor(), "customer.mark_verified", Some(("account", id.to_string())), by.addr, json!({ "email": email }))
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Mails a stuck sign-up a fresh verification link (older ones stop working).
pub async fn resend_customer_verification(pool: &PgPool, by: By, base_url: &str, id: Uuid) -> Result<(), AdminError> {
    let mut tx = pool.begin().await?;
    let (email, name) = sql_admin::pending_signup_for_update(&mut tx, id)
        .await?
        .ok_or_else(|| invalid("status", "only a customer awaiting verification gets a verification link"))?;
    let email = Email::parse(&email).map_err(|e| invalid("email", e.to_string()))?;
    crate::auth::queue_verification(&mut tx, base_url, id, &email, &name).await?;
    audit::record(
        &mut *tx,
        by.actor(),
        "customer.resend_verification",
        Some(("account", id.to_string())),
        by.addr,
        json!({ "email": email.as_str() }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResellerForm {
    pub email: String,
    pub name: String,
}

/// Creates a reseller account and mails it a link to choose its password.
pub async fn create_reseller(pool: &PgPool, by: By, base_url: &str, f: &ResellerForm) -> Result<Uuid, AdminError> {
    let email = Email::parse(&f.email).map_err(|e| invalid("email", e.to_string()))?;
    let name = f.name.trim();
    if name.is_empty() {
        return Err(invalid("name", "the reseller's company or name"));
    }
    let mut tx = pool.begin().await?;
    // Nobody knows this password; the reseller sets their own through the mailed link.
    let hash = hash_password(&Password::generate());
    let id = sql_admin::insert_reseller(&mut tx, email.as_str(), name, &hash)
        .await?
        .ok_or_else(|| invalid("email", "an account with this address exists"))?;
    audit::record(
        &mut *tx,
        by.actor(),
        "reseller.create",
        Some(("account", id.to_string())),
        by.addr,
        json!({ "email": email.as_str(), "name": name }),
    )
    .await?;
    tx.commit().await?;
    crate::auth::request_password_reset(pool, base_url, email.as_str()).await.map_err(|e| match e {
        crate::auth::AuthError::Db(e) => AdminError::Db(e),
        other => invalid("email", other.to_string()),
    })?;
    Ok(id)
}

/// A reseller's terms as the admin types them: the discount as a percentage with up to two
/// decimals (stored as basis points, so "12.5" is 1250), the quotas as whole numbers.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResellerTermsForm {
    pub discount: String,
    pub max_servers: String,
    pub max_vcpus: String,
    pub max_memory_mib: String,
    pub max_disk_gib: String,
}

/// "12.5" → 1250 basis points; at most two decimals, between 0 and 100.
pub fn parse_percent_bp(field: &str, v: &str) -> Result<i32, AdminError> {
    let bad = || invalid(field, format!("must be a percentage from 0 to 100 with at most two decimals (got {:?})", v.trim()));
    let t = v.trim().trim_end_matches('%').trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty()
        || whole.len() > 3
        || frac.len() > 2
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: i32 = whole.parse().map_err(|_| bad())?;
    let frac: i32 = if frac.is_empty() { 0 } else { format!("{frac:0<2}").parse().map_err(|_| bad())? };
    let bp = whole * 100 + frac;
    if bp > 10_000 {
        return Err(bad());
    }
    Ok(bp)
}

fn quota<T: std::str::FromStr + PartialOrd + Default>(field: &str, v: &str) -> Result<T, AdminError> {
    let n: T = parse_num(field, v, "a whole number, 0 or more")?;
    if n < T::default() {
        return Err(invalid(field, "must be 0 or more"));
    }
    Ok(n)
}

/// Saves a reseller's terms: the row is made on the first save, changed after; the audit log
/// gets the terms before and after, in the same transaction.
pub async fn save_reseller_terms(pool: &PgPool, by: By, reseller: Uuid, f: &ResellerTermsForm) -> Result<(), AdminError> {
    let terms = crate::db::resellers::SavedTerms {
        reseller_id: reseller,
        discount_bp: parse_percent_bp("discount", &f.discount)?,
        max_servers: quota("max_servers", &f.max_servers)?,
        max_vcpus: quota("max_vcpus", &f.max_vcpus)?,
        max_memory_mib: quota("max_memory_mib", &f.max_memory_mib)?,
        max_disk_gib: quota("max_disk_gib", &f.max_disk_gib)?,
        updated_at: chrono::Utc::now(),
    };
    let mut tx = pool.begin().await?;
    if !crate::db::resellers::is_reseller(&mut tx, reseller).await? {
        return Err(AdminError::NotFound);
    }
    let before = crate::db::resellers::upsert_terms(&mut tx, &terms).await?;
    let shape = |t: &crate::db::resellers::SavedTerms| {
        json!({ "discount_bp": t.discount_bp, "max_servers": t.max_servers, "max_vcpus": t.max_vcpus,
                "max_memory_mib": t.max_memory_mib, "max_disk_gib": t.max_disk_gib })
    };
    audit::record(
        &mut *tx,
        by.actor(),
        "reseller.terms",
        Some(("account", reseller.to_string())),
        by.addr,
        json!({ "before": before.as_ref().map(shape), "after": shape(&terms) }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discounts_are_percentages_with_two_decimals() {
        for (v, bp) in [("12.5", 1250), ("12.50", 1250), ("0", 0), ("100", 10000), (" 7.05 % ", 705), ("99.99", 9999), ("3.", 300)] {
            assert_eq!(parse_percent_bp("discount", v).unwrap(), bp, "{v}");
        }
        for v in ["", "-1", "100.01", "12.345", "abc", "1e2", "1000", ".5", "12,5"] {
            assert!(matches!(parse_percent_bp("discount", v), Err(AdminError::Invalid { .. })), "{v}");
        }
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("203.0.113.0/29").unwrap();
        let gw: IpAddr = "203.0.113.1".parse().unwrap();
        let hosts: Vec<String> = c.hosts(gw, 100).iter().map(|a| a.to_string()).collect();
        assert_eq!(hosts, ["203.0.113.2", "203.0.113.3", "203.0.113.4", "203.0.113.5", "203.0.113.6"]);
        assert!(c.contains(gw));
        assert!(!c.contains("203.0.113.8".parse().unwrap()));
        assert!(Cidr::parse("203.0.113.5/24").unwrap_err().contains("203.0.113.0/24"));
        assert!(Cidr::parse("203.0.113.0").is_err());
        assert!(Cidr::parse("203.0.113.0/33").is_err());
        let v6 = Cidr::parse("2001:db8::/64").unwrap();
        assert_eq!(v6.hosts("2001:db8::1".parse().unwrap(), 3).len(), 3);
        assert_eq!(v6.hosts("2001:db8::1".parse().unwrap(), 1)[0].to_string(), "2001:db8::2");
    }

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

    #[test]
    fn host_form_rules() {
        let mut f = HostForm {
            name: "host-1".into(),
            api_url: "https://h1.example.net".into(),
            supports_containers: Some("on".into()),
            cpus: "16".into(),
            memory_mib: "65536".into(),
            disk_gib: "2000".into(),
            reserved_cpus: "16".into(),
            ..Default::default()
        };
        assert!(matches!(f.validate(), Err(AdminError::Invalid { field, .. }) if field == "reserved_cpus"));
        f.reserved_cpus = "2".into();
        assert!(f.validate().is_ok());
        f.cpus = "lots".into();
        assert!(matches!(f.validate(), Err(AdminError::Invalid { field, .. }) if field == "cpus"));
    }
}

// ------------------------------------------------------------------ money an admin types

/// "25", "25.5" or "25.50" in a currency's major unit, to minor units; never floats.
pub fn parse_amount(s: &str, currency: crate::money::Currency) -> Result<crate::money::Money, String> {
    let s = s.trim().replace(',', ".");
    let exp = currency.exponent() as usize;
    let (whole, frac) = s.split_once('.').unwrap_or((&s, ""));
    let ok = !whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit()) && frac.bytes().all(|b| b.is_ascii_digit());
    if !ok || frac.len() > exp {
        return Err(format!("write an amount such as 25 or 25.{} (at most {exp} decimals)", "0".repeat(exp.max(1))));
    }
    let whole: i64 = whole.parse().map_err(|_| "the amount is too large".to_string())?;
    let frac_val: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<exp$}").parse().map_err(|_| "bad decimals".to_string())? };
    let minor = whole.checked_mul(10i64.pow(exp as u32)).and_then(|w| w.checked_add(frac_val)).ok_or("the amount is too large")?;
    if minor <= 0 {
        return Err("the amount must be more than zero".into());
    }
    Ok(crate::money::Money::new(minor, currency))
}

/// Issues a one-off invoice (one line, the customer's tax rate) outside any subscription.
pub async fn issue_invoice(
    pool: &PgPool,
    clock: &dyn crate::clock::Clock,
    by: By,
    customer: Uuid,
    description: &str,
    amount: crate::money::Money,
) -> Result<Uuid, AdminError> {
    let description = description.trim();
    if description.is_empty() || description.len() > 200 {
        return Err(invalid("description", "describe the charge in up to 200 characters"));
    }
    let now = clock.now();
    let mut tx = pool.begin().await?;
    let rate = crate::db::invoices::tax_rate(&mut tx, customer, now.date_naive()).await?;
    let doc = crate::db::invoices::NewDocument {
        account_id: customer,
        credit_note_for: None,
        subscription_id: None,
        currency: amount.currency.as_str(),
        description,
        amount_minor: amount.minor,
        rate_bp: rate,
        tax_minor: None,
    };
    let id = crate::billing::invoices::issue_charge(&mut tx, &doc, now).await.map_err(|e| match e {
        crate::billing::BillingError::Db(e) => AdminError::Db(e),
        other => invalid("amount", other.to_string()),
    })?;
    audit::record(
        &mut *tx,
        by.actor(),
        "invoice.issue",
        Some(("invoice", id.to_string())),
        by.addr,
        json!({ "account": customer, "description": description, "amount_minor": amount.minor, "currency": amount.currency.as_str() }),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

#[cfg(test)]
mod amount_tests {
    use super::parse_amount;
    use crate::money::Currency;

    #[test]
    fn amounts_in_major_units() {
        let eur = Currency::parse("EUR").unwrap();
        assert_eq!(parse_amount("25", eur).unwrap().minor, 2500);
        assert_eq!(parse_amount("25.5", eur).unwrap().minor, 2550);
        assert_eq!(parse_amount("0,07", eur).unwrap().minor, 7);
        for bad in ["", "-1", "1.234", "abc", "0", "1e3", "99999999999999999999"] {
            assert!(parse_amount(bad, eur).is_err(), "{bad}");
        }
        assert_eq!(parse_amount("500", Currency::parse("JPY").unwrap()).unwrap().minor, 500);
        assert!(parse_amount("5.1", Currency::parse("JPY").unwrap()).is_err());
    }
}
