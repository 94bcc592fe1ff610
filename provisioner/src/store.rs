//! The durable record of the instances on this host.
//!
//! One JSON file per instance under `<state_dir>/instances/<id>.json`, replaced atomically
//! (write to a temporary file, fsync, rename, fsync the directory), so a crash at any point
//! leaves either the old record or the new one, never a torn one. A record carries the
//! operation in progress (`pending`): it is written *before* the first side effect of a
//! multi-step operation and cleared after the last, so a restarted provisioner knows what to
//! finish or roll back. Records of different instances may be written concurrently.

use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;
use vessel_core::{InstanceId, InstanceSpec, InstanceState};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("instance store at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("instance record {path} is unreadable: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
}

/// Age after which a temporary file is a crashed write's leftover (a write takes milliseconds).
const STALE_TEMPORARY: std::time::Duration = std::time::Duration::from_secs(60);

/// A multi-step operation under way; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum PendingOp {
    Create,
    Destroy,
    Reinstall { template: String },
    Resize { previous: vessel_core::PlanResources },
}

/// What the host knows of one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub spec: InstanceSpec,
    pub state: InstanceState,
    /// What the owner last asked for it to be: running or not. Adoption after a restart
    /// brings an instance back to this.
    pub should_run: bool,
    #[serde(default)]
    pub pending: Option<PendingOp>,
    /// Kind-specific facts the runtime needs to find its parts again (a VMM's pid, a loop
    /// device, a veth name), opaque to the store.
    #[serde(default)]
    pub runtime: serde_json::Value,
    /// In rescue: it boots its kind's rescue system, with its own disk attached, and this is
    /// the access written into that system. `None`: it boots its own system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescue: Option<vessel_core::Access>,
}

/// The store: a directory of records. Cheap to clone; every call goes to disk.
#[derive(Clone, Debug)]
pub struct InstanceStore {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

impl InstanceStore {
    /// Opens (and creates) the store under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let dir = state_dir.join("instances");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let store = Self { dir };
        store.remove_stale_temporaries();
        Ok(store)
    }

    /// Removes temporary files a crashed write left behind. Only old ones: a fresh one may
    /// be another writer's (another thread, or the daemon while a tool opens the store),
    /// about to be renamed into place. Leftovers are harmless meanwhile: `list` skips them.
    fn remove_stale_temporaries(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let old =
                entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age > STALE_TEMPORARY);
            if name.starts_with('.') && name.ends_with(".tmp") && old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn path(&self, id: &InstanceId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    pub fn get(&self, id: &InstanceId) -> Result<Option<InstanceRecord>, StoreError> {
        let path = self.path(id);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| StoreError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }

    /// Writes a record durably, replacing the previous one atomically.
    pub fn put(&self, record: &InstanceRecord) -> Result<(), StoreError> {
        let path = self.path(&record.spec.id);
        let tmp = self.dir.join(format!(".{}.tmp", record.spec.id));
        let bytes = serde_json::to_vec_pretty(record).expect("records always serialise");
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        self.sync_dir()
    }

    /// Forgets an instance (the last step of destroy). Absent is fine: destroy is idempotent.
    pub fn remove(&self, id: &InstanceId) -> Result<(), StoreError> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }

    /// Every record, in id order (temporary files of writes in progress are skipped, never
    /// removed here: removing one would fail a concurrent write's rename).
    pub fn list(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Some(id) = name.strip_suffix(".json").and_then(|s| s.parse::<InstanceId>().ok()) else {
                continue;
            };
            if let Some(r) = self.get(&id)? {
                out.push(r);
            }
        }
        out.sort_by_key(|r| r.spec.id);
        Ok(out)
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use vessel_core::resources::ResourceSpec;
    use vessel_core::{Hostname, InstanceKind, PlanResources};

    pub(crate) fn spec(kind: InstanceKind) -> InstanceSpec {
        let resources = PlanResources::try_from(ResourceSpec {
            kind,
            vcpus: 1,
            memory_guaranteed_mib: Some(128),
            memory_burst_mib: 128,
            swap_mib: 0,
            disk_gib: 1,
            cpu_ratio: 1.0,
            memory_ratio: 1.0,
            disk_ratio: 1.0,
            pids_max: None,
            net_rate_mbit: None,
            io_weight: None,
            io_limits: Default::default(),
        })
        .unwrap();
        InstanceSpec {
            id: InstanceId::new_random(),
            hostname: Hostname::parse("t1.example.com").unwrap(),
            template: "busybox".into(),
            resources,
            access: Default::default(),
            network: Default::default(),
            firewall: Default::default(),
        }
    }

    #[test]
    fn put_get_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = InstanceStore::open(dir.path()).unwrap();
        let rec = InstanceRecord {
            spec: spec(InstanceKind::Container),
            state: InstanceState::Creating,
            should_run: true,
            pending: Some(PendingOp::Create),
            runtime: serde_json::json!({"loop": "/dev/loop3"}),
            rescue: None,
        };
        store.put(&rec).unwrap();
        // A torn temporary file of a crashed write is ignored, and cleaned once it is old
        // (a fresh one may be a concurrent write's).
        let junk = dir.path().join("instances").join(".junk.tmp");
        fs::write(&junk, b"{").unwrap();
        assert_eq!(store.get(&rec.spec.id).unwrap().unwrap(), rec);
        assert_eq!(store.list().unwrap(), vec![rec.clone()]);
        InstanceStore::open(dir.path()).unwrap();
        assert!(junk.exists(), "a fresh temporary file is left alone");
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        fs::File::options().write(true).open(&junk).unwrap().set_modified(old).unwrap();
        InstanceStore::open(dir.path()).unwrap();
        assert!(!junk.exists());
        store.remove(&rec.spec.id).unwrap();
        store.remove(&rec.spec.id).unwrap();
        assert!(store.get(&rec.spec.id).unwrap().is_none());
    }
}
