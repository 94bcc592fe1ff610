//! `panel plans sync`: make the database's catalogue match the plan files, in one transaction.
//!
//! * a new code → version 1;
//! * a changed plan nobody uses → changed in place;
//! * a changed plan in use → version n+1, and version n stops being orderable (its
//!   subscribers keep it, unchanged);
//! * a plan no file defines any more → no longer orderable (never deleted).

use super::PlanDefinition;
use crate::db::{self, plans as sql};
use std::fmt;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Created { version: i32 },
    Unchanged { version: i32 },
    UpdatedInPlace { version: i32 },
    NewVersion { from: i32, to: i32, users: i64 },
    Retired { version: i32 },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub changes: Vec<(String, Change)>,
}

impl fmt::Display for SyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (code, c) in &self.changes {
            match c {
                Change::Created { version } => writeln!(f, "created   {code} v{version}")?,
                Change::Unchanged { version } => writeln!(f, "unchanged {code} v{version}")?,
                Change::UpdatedInPlace { version } => writeln!(f, "updated   {code} v{version} (not in use: changed in place)")?,
                Change::NewVersion { from, to, users } => {
                    writeln!(f, "versioned {code} v{from} -> v{to} (v{from} kept unchanged for {users} orders/subscriptions/instances)")?
                }
                Change::Retired { version } => writeln!(f, "retired   {code} v{version} (no file defines it: no longer orderable)")?,
            }
        }
        Ok(())
    }
}

/// Locks the catalogue for one writer (sync or an admin's edit): two concurrent writers must
/// not both create version n+1.
pub async fn lock(tx: &mut db::Tx<'_>) -> Result<(), sqlx::Error> {
    sqlx::query("LOCK TABLE plans IN SHARE ROW EXCLUSIVE MODE").execute(&mut **tx).await?;
    Ok(())
}

/// Applies one definition by the rules above (new, unchanged, changed in place, or a new
/// version when in use). The caller holds [`lock`].
pub async fn upsert_one(tx: &mut db::Tx<'_>, def: &PlanDefinition, source: Option<&str>) -> Result<Change, sqlx::Error> {
    Ok(match sql::latest(tx, def.code.as_str()).await? {
        None => {
            sql::insert(tx, def, 1, source).await?;
            Change::Created { version: 1 }
        }
        Some(current) if current.definition.as_ref() == Some(def) => {
            if !current.orderable {
                // Brought back: orderable again.
                sql::set_orderable(tx, current.id, true).await?;
            }
            Change::Unchanged { version: current.version }
        }
        Some(current) => {
            let users = sql::users(tx, current.id).await?;
            if users == 0 {
                sql::update(tx, current.id, def, source).await?;
                Change::UpdatedInPlace { version: current.version }
            } else {
                sql::set_orderable(tx, current.id, false).await?;
                let new_id = sql::insert(tx, def, current.version + 1, source).await?;
                sql::set_superseded_by(tx, current.id, new_id).await?;
                Change::NewVersion { from: current.version, to: current.version + 1, users }
            }
        }
    })
}

/// Applies the definitions; all or nothing.
pub async fn sync(pool: &sqlx::PgPool, defs: &[(PathBuf, PlanDefinition)]) -> Result<SyncReport, db::DbError> {
    let mut tx = pool.begin().await?;
    lock(&mut tx).await?;
    let mut report = SyncReport::default();
    for (file, def) in defs {
        let source = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let change = upsert_one(&mut tx, def, source.as_deref()).await?;
        report.changes.push((def.code.to_string(), change));
    }
    let defined: Vec<&str> = defs.iter().map(|(_, d)| d.code.as_str()).collect();
    for (id, code, version) in sql::orderable(&mut tx).await? {
        if !defined.contains(&code.as_str()) {
            sql::set_orderable(&mut tx, id, false).await?;
            report.changes.push((code, Change::Retired { version }));
        }
    }
    tx.commit().await?;
    Ok(report)
}
