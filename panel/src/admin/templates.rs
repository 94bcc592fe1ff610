//! OS templates as admins sell them: only what hosts build (`vessel_core::templates`).

use super::{checked, invalid, AdminError, By};
use crate::audit;
use crate::db::os_templates as sql_os;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

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
