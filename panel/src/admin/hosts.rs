//! Hosts as admins register and change them (capacity, reservations, what kinds they run).

use super::{checked, invalid, opt_num, parse_num, unique_violation, AdminError, By};
use crate::audit;
use crate::db::hosts as sql_hosts;
use crate::ids::HostId;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

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

pub async fn save_host(pool: &PgPool, by: By, id: Option<HostId>, form: &HostForm) -> Result<HostId, AdminError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
