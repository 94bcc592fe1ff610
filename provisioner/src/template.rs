//! OS templates: a root filesystem tarball plus a small manifest.
//!
//! `<dir>/<name>.json` is the manifest, naming `<dir>/<tarball>`. A template is verified
//! (sha256 of the tarball) before use and unpacked once into
//! `<cache>/<name>-<version>-<sha[..16]>/`, which creates copy from; a tarball whose size and
//! mtime have not changed since it was verified is not hashed again. Unpacking goes to a
//! temporary directory renamed into place, so a crash never leaves a half cache entry in use.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TemplateError {
    #[error("template {name:?} not found in {dir}")]
    NotFound { name: String, dir: PathBuf },
    #[error("template manifest {path} is invalid: {source}")]
    Manifest { path: PathBuf, source: serde_json::Error },
    #[error("template {name:?}: bad name (letters, digits, '.', '-', '_' only)")]
    BadName { name: String },
    #[error("template {name}: checksum mismatch (manifest {expected}, tarball {actual})")]
    Checksum { name: String, expected: String, actual: String },
    #[error("template {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TemplateError + '_ {
    move |source| TemplateError::Io { path: path.to_path_buf(), source }
}

/// The manifest written next to a tarball by the build scripts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    /// The init started when the instance starts, with its arguments.
    pub init: Vec<String>,
    /// What kind of init that is: what the container's start prepares for it and how it is
    /// asked to stop (absent in older manifests: a plain init).
    #[serde(default, skip_serializing_if = "Boot::is_plain")]
    pub boot: Boot,
    /// Hex sha256 of the tarball.
    pub sha256: String,
    /// File name of the tarball, relative to the manifest.
    pub tarball: String,
}

/// The kind of init a template boots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Boot {
    /// A small init of our own (busybox's shell loop): stops on SIGTERM/SIGPWR.
    #[default]
    Plain,
    /// systemd as pid 1: gets a cgroup2 tree of its own at /sys/fs/cgroup, tmpfs on /run,
    /// /run/lock and /tmp, `container=vessel`; stops cleanly on SIGRTMIN+3 (halt.target,
    /// which in a container ends pid 1), never SIGTERM (systemd re-executes itself on it).
    Systemd,
}

impl Boot {
    pub fn is_plain(&self) -> bool {
        *self == Boot::Plain
    }

    /// The signals a graceful stop sends to the init.
    pub fn stop_signals(&self) -> Vec<libc::c_int> {
        match self {
            Boot::Plain => vec![libc::SIGTERM, libc::SIGPWR],
            // SIGRTMIN as the C library reports it (glibc keeps the first two for itself),
            // which is what systemd counts from.
            Boot::Systemd => vec![libc::SIGRTMIN() + 3],
        }
    }
}

/// A verified template, unpacked in the cache.
#[derive(Clone, Debug)]
pub struct Template {
    pub manifest: Manifest,
    /// The unpacked root filesystem to copy from (read-only by convention).
    pub rootfs: PathBuf,
}

/// Where templates are kept and unpacked.
#[derive(Clone, Debug)]
pub struct TemplateStore {
    pub dir: PathBuf,
    pub cache: PathBuf,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl TemplateStore {
    pub fn new(dir: impl Into<PathBuf>, cache: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), cache: cache.into() }
    }

    pub fn manifest(&self, name: &str) -> Result<Manifest, TemplateError> {
        if !valid_name(name) {
            return Err(TemplateError::BadName { name: name.into() });
        }
        let path = self.dir.join(format!("{name}.json"));
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TemplateError::NotFound { name: name.into(), dir: self.dir.clone() })
            }
            Err(e) => return Err(TemplateError::Io { path, source: e }),
        };
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|source| TemplateError::Manifest { path: path.clone(), source })?;
        if !valid_name(&m.version) || !valid_name(&m.tarball) || m.init.is_empty() {
            return Err(TemplateError::BadName { name: format!("{}/{}/{}", m.name, m.version, m.tarball) });
        }
        Ok(m)
    }

    /// Verifies the template and makes sure it is unpacked; cheap when it already is.
    pub fn load(&self, name: &str) -> Result<Template, TemplateError> {
        let m = self.manifest(name)?;
        let tarball = self.dir.join(&m.tarball);
        let meta = fs::metadata(&tarball).map_err(io(&tarball))?;
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
        let stamp = format!("{} {} {}", meta.len(), mtime, m.sha256);
        let sha_short: String = m.sha256.chars().take(16).collect();
        let entry = self.cache.join(format!("{}-{}-{}", m.name, m.version, sha_short));
        let stamp_file = self.cache.join(format!("{}-{}-{}.verified", m.name, m.version, sha_short));
        let verified = fs::read_to_string(&stamp_file).map(|s| s == stamp).unwrap_or(false);
        if !verified {
            let actual = sha256_file(&tarball)?;
            if !actual.eq_ignore_ascii_case(&m.sha256) {
                return Err(TemplateError::Checksum { name: m.name.clone(), expected: m.sha256.clone(), actual });
            }
        }
        if !entry.join(".vessel-template").exists() {
            fs::create_dir_all(&self.cache).map_err(io(&self.cache))?;
            let tmp = self.cache.join(format!(".{}-{}.{}", m.name, sha_short, std::process::id()));
            let _ = fs::remove_dir_all(&tmp);
            fs::create_dir_all(&tmp).map_err(io(&tmp))?;
            let f = fs::File::open(&tarball).map_err(io(&tarball))?;
            let mut ar = tar::Archive::new(f);
            ar.set_preserve_permissions(true);
            ar.set_preserve_ownerships(true);
            ar.set_unpack_xattrs(true);
            ar.unpack(&tmp).map_err(io(&tarball))?;
            fs::write(tmp.join(".vessel-template"), &stamp).map_err(io(&tmp))?;
            // Another create may have won the race: theirs is as good as ours.
            if fs::rename(&tmp, &entry).is_err() {
                let _ = fs::remove_dir_all(&tmp);
            }
        }
        if !verified {
            fs::write(&stamp_file, &stamp).map_err(io(&stamp_file))?;
        }
        Ok(Template { manifest: m, rootfs: entry })
    }
}

pub fn sha256_file(path: &Path) -> Result<String, TemplateError> {
    let mut f = fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(dir: &Path) -> Manifest {
        let root = dir.join("src");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/hello"), b"hi").unwrap();
        let tarball = dir.join("t.tar");
        let mut b = tar::Builder::new(fs::File::create(&tarball).unwrap());
        b.append_dir_all(".", &root).unwrap();
        b.finish().unwrap();
        drop(b);
        let m = Manifest {
            name: "t".into(),
            version: "1".into(),
            init: vec!["/bin/hello".into()],
            boot: Boot::Plain,
            sha256: sha256_file(&tarball).unwrap(),
            tarball: "t.tar".into(),
        };
        fs::write(dir.join("t.json"), serde_json::to_vec(&m).unwrap()).unwrap();
        m
    }

    #[test]
    fn every_known_container_template_has_a_build_script_making_that_name() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for t in vessel_core::templates::KNOWN.iter().filter(|t| t.for_containers) {
            let script = fs::read_to_string(repo.join(t.build)).unwrap_or_else(|e| panic!("{}: {e}", t.build));
            assert!(script.lines().any(|l| l.trim() == format!("NAME={}", t.name)), "{} does not build {}", t.build, t.name);
        }
    }

    #[test]
    fn manifests_without_boot_are_plain_and_systemd_stops_on_sigrtmin_3() {
        let m: Manifest =
            serde_json::from_str(r#"{"name":"b","version":"1","init":["/sbin/vessel-init"],"sha256":"00","tarball":"b.tar"}"#).unwrap();
        assert_eq!(m.boot, Boot::Plain);
        assert_eq!(m.boot.stop_signals(), vec![libc::SIGTERM, libc::SIGPWR]);
        let m: Manifest = serde_json::from_str(
            r#"{"name":"d","version":"1","init":["/lib/systemd/systemd"],"boot":"systemd","sha256":"00","tarball":"d.tar"}"#,
        )
        .unwrap();
        assert_eq!(m.boot, Boot::Systemd);
        // systemd(1): SIGRTMIN+3 starts halt.target; glibc's SIGRTMIN is 34.
        assert_eq!(m.boot.stop_signals(), vec![37]);
    }

    #[test]
    fn verifies_unpacks_once_and_refuses_tampering() {
        let d = tempfile::tempdir().unwrap();
        let mut m = make(d.path());
        let store = TemplateStore::new(d.path(), d.path().join("cache"));
        let t = store.load("t").unwrap();
        assert_eq!(fs::read(t.rootfs.join("bin/hello")).unwrap(), b"hi");
        // Second load reuses the cache entry (a marker we drop in it survives).
        fs::write(t.rootfs.join("marker"), b"").unwrap();
        assert!(store.load("t").unwrap().rootfs.join("marker").exists());
        // A manifest whose checksum does not match is refused.
        m.sha256 = "00".repeat(32);
        fs::write(d.path().join("t.json"), serde_json::to_vec(&m).unwrap()).unwrap();
        assert!(matches!(store.load("t"), Err(TemplateError::Checksum { .. })));
        assert!(matches!(store.load("../x"), Err(TemplateError::BadName { .. })));
        assert!(matches!(store.load("nope"), Err(TemplateError::NotFound { .. })));
    }
}
