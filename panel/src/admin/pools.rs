//! IP pools as admins make them (a network of [`Cidr`] and its gateway) and fill them with addresses.

use super::{checked, invalid, unique_violation, AdminError, By};
use crate::audit;
use crate::db::ip_pools as sql_pools;
use crate::ip_pools::Cidr;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use std::net::IpAddr;
use uuid::Uuid;

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
