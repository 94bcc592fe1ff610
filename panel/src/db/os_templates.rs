//! SQL for `os_templates` (listing is in `db::catalogue`).

use super::Tx;
use uuid::Uuid;

pub async fn insert(
    tx: &mut Tx<'_>,
    name: &str,
    display_name: &str,
    version: &str,
    for_containers: bool,
    for_kvm: bool,
    sha256: Option<&str>,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO os_templates (name, display_name, version, for_containers, for_kvm, sha256) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(name)
    .bind(display_name)
    .bind(version)
    .bind(for_containers)
    .bind(for_kvm)
    .bind(sha256)
    .fetch_optional(&mut **tx)
    .await
}

pub async fn set_enabled(tx: &mut Tx<'_>, id: Uuid, enabled: bool) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE os_templates SET enabled = $2 WHERE id = $1").bind(id).bind(enabled).execute(&mut **tx).await?;
    Ok(r.rows_affected() == 1)
}
