//! The daemon's settings: `provisioner.toml`, overridden by `PROVISIONER__*` environment
//! variables (`PROVISIONER__LISTEN`, `PROVISIONER__CAPACITY__CPUS`, ...), with defaults for
//! everything. The host secret is not a setting: it lives in its own 0600 file in the state
//! dir (written by `provisioner join`), so the config can be shown and logged freely.

use serde::Deserialize;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;
use vessel_core::admission::HostCapacity;
use vessel_core::signing::{HostSecret, SecretError};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("no host secret at {0}: join the panel first (`provisioner join`)")]
    NotJoined(PathBuf),
    #[error("host secret {path} is readable by others (mode {mode:o}); chmod 600 it")]
    SecretExposed { path: PathBuf, mode: u32 },
    #[error("host secret {path}: {source}")]
    BadSecret { path: PathBuf, source: SecretError },
    #[error("TLS needs both tls_cert and tls_key (only one is set)")]
    HalfTls,
    #[error("plain_http = true and a TLS certificate are both configured: choose one")]
    PlainAndTls,
    #[error("TLS certificate or key: {0}")]
    Tls(String),
    #[error("host capacity: {0}")]
    Capacity(String),
}

/// What the admin keeps back from instances (the host's own processes, page cache...).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Reserved {
    pub cpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

impl Default for Reserved {
    fn default() -> Self {
        Reserved { cpus: 0, memory_mib: 1024, disk_gib: 10 }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Where the API listens (port 0: any free port, printed on start).
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    /// KVM OS images: `<images_dir>/<template>/image.json`.
    pub images_dir: PathBuf,
    /// Container OS templates.
    pub templates_dir: PathBuf,
    /// Where the cgroup hierarchies are mounted (v1 controllers under it, or v2).
    pub cgroup_root: PathBuf,
    /// cgroup under which every instance gets its own group.
    pub cgroup_parent: String,
    /// The bridge containers' network interfaces and KVM machines' TAPs join (made when missing).
    pub bridge: String,
    /// Prefix of the containers' host-side veth names (at most 2 bytes).
    pub veth_prefix: String,
    /// Give each container a user namespace of its own (default; `false` only for
    /// measurements: then root inside is host root with fewer capabilities).
    pub userns: bool,
    /// Where the host ids handed to containers start (65 536 per container, `userns_slots`
    /// of them); default 2^30, above the host's own users.
    pub userns_base: Option<u32>,
    pub userns_slots: Option<u32>,
    /// Run containers (root, cgroups and loop devices needed).
    pub containers: bool,
    /// Physical capacity given to instances; absent: measured on the host.
    pub capacity: Option<HostCapacity>,
    /// Taken off the (given or measured) capacity.
    pub reserved: Reserved,
    /// PEM certificate chain and private key the API serves. With neither set (the default)
    /// the API serves a self-signed certificate kept in `<state_dir>/tls/` (made by `provisioner
    /// join`, or by `serve` when missing), which the panel pins at join.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Serve the API over plain HTTP (signed, but readable on the wire). Off by default; only
    /// for a link already private (a tunnel, a test bridge). Logged as a warning at start-up.
    pub plain_http: bool,
    /// Where to serve Prometheus metrics (`GET /metrics`, plain HTTP, no authentication):
    /// unset (the default) = no endpoint. Bind it to loopback or a management network only.
    pub metrics_listen: Option<SocketAddr>,
    /// `pretty` (default) or `json` log lines (one object per line, with the span fields, e.g.
    /// the `request_id` of the panel request a call serves).
    pub log_format: LogFormat,
    /// Defaults to `<state_dir>/host.secret`.
    pub secret_file: Option<PathBuf>,
    /// Seconds a KVM guest gets to power off before it is killed.
    pub stop_timeout_secs: u64,
    /// HTTP worker threads.
    pub workers: usize,
    /// The registry of cores pinned machines hold: every provisioner on one machine must share
    /// it (the default). Only simulated hosts sharing a machine (tests, the demo) give each
    /// their own, with `cpu_shield_host_wide = false`.
    pub cpu_shield_dir: PathBuf,
    /// Take pinned cores away from every other task and cgroup on the machine (default).
    pub cpu_shield_host_wide: bool,
    /// Route the containers' traffic through this host (IPv4/IPv6 forwarding on; private
    /// pools masqueraded). Default true; off only for test daemons in the machine's own
    /// network namespace.
    pub route: bool,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            listen: "0.0.0.0:8443".parse().expect("a valid address"),
            state_dir: "/var/lib/vessel".into(),
            images_dir: "/var/lib/vessel/images".into(),
            templates_dir: "/var/lib/vessel/templates".into(),
            cgroup_root: "/sys/fs/cgroup".into(),
            cgroup_parent: "vessel".into(),
            bridge: "vzbr0".into(),
            veth_prefix: "vz".into(),
            userns: true,
            userns_base: None,
            userns_slots: None,
            containers: true,
            capacity: None,
            reserved: Reserved::default(),
            tls_cert: None,
            tls_key: None,
            plain_http: false,
            metrics_listen: None,
            log_format: LogFormat::Pretty,
            secret_file: None,
            stop_timeout_secs: 30,
            workers: 2,
            cpu_shield_dir: "/run/vessel/cpu-shield".into(),
            cpu_shield_host_wide: true,
            route: true,
        }
    }
}

impl DaemonConfig {
    /// Reads `path` (absent file: defaults only) and then `PROVISIONER__*` variables.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut b = config::Config::builder();
        if let Some(p) = path {
            b = b.add_source(config::File::from(p).format(config::FileFormat::Toml).required(true));
        }
        let c = b.add_source(config::Environment::with_prefix("PROVISIONER").separator("__").try_parsing(true)).build()?;
        Ok(c.try_deserialize()?)
    }

    pub fn secret_path(&self) -> PathBuf {
        self.secret_file.clone().unwrap_or_else(|| self.state_dir.join("host.secret"))
    }

    pub fn host_id_path(&self) -> PathBuf {
        self.state_dir.join("host.id")
    }

    /// Capacity minus the reservation: what admission works with.
    pub fn usable_capacity(&self) -> Result<HostCapacity, ConfigError> {
        let raw = match self.capacity {
            Some(c) => c,
            None => measure_capacity(&self.state_dir)?,
        };
        Ok(HostCapacity {
            cpus: raw.cpus.saturating_sub(self.reserved.cpus),
            memory_mib: raw.memory_mib.saturating_sub(self.reserved.memory_mib),
            disk_gib: raw.disk_gib.saturating_sub(self.reserved.disk_gib),
        })
    }

    /// How the API is served: TLS with the configured certificate, TLS with the self-signed
    /// one in the state dir (the default), or plain HTTP when `plain_http` says so.
    pub fn transport(&self) -> Result<Transport, ConfigError> {
        match (&self.tls_cert, &self.tls_key, self.plain_http) {
            (Some(_), Some(_), true) => Err(ConfigError::PlainAndTls),
            (Some(c), Some(k), false) => Ok(Transport::Tls { cert: c.clone(), key: k.clone(), self_signed: false }),
            (None, None, true) => Ok(Transport::PlainHttp),
            (None, None, false) => {
                let dir = self.state_dir.join("tls");
                Ok(Transport::Tls { cert: dir.join("cert.pem"), key: dir.join("key.pem"), self_signed: true })
            }
            _ => Err(ConfigError::HalfTls),
        }
    }

    /// Reads the host secret, refusing a file others can read.
    pub fn read_secret(&self) -> Result<HostSecret, ConfigError> {
        let path = self.secret_path();
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ConfigError::NotJoined(path)),
            Err(source) => return Err(ConfigError::Io { path, source }),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ConfigError::SecretExposed { path, mode });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io { path: path.clone(), source })?;
        HostSecret::from_base64(&text).map_err(|source| ConfigError::BadSecret { path, source })
    }
}

/// The daemon's log lines.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// How the API is served (see [`DaemonConfig::transport`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `self_signed`: the provisioner's own pair in the state dir, made when missing.
    Tls {
        cert: PathBuf,
        key: PathBuf,
        self_signed: bool,
    },
    PlainHttp,
}

impl Transport {
    /// The scheme of the URLs the API answers on.
    pub fn scheme(&self) -> &'static str {
        match self {
            Transport::Tls { .. } => "https",
            Transport::PlainHttp => "http",
        }
    }
}

/// Writes `contents` to `path` atomically with mode 0600 (temporary file, fsync, rename).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), ConfigError> {
    let io = |source| ConfigError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io)?;
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

/// Online CPUs, physical memory and the state dir's filesystem size.
pub fn measure_capacity(state_dir: &Path) -> Result<HostCapacity, ConfigError> {
    // Online CPUs, not this process's affinity (which the pinned-core shield narrows).
    let cpus = crate::vm::shield::online_cpus() as u32;
    let meminfo = std::fs::read_to_string("/proc/meminfo").map_err(|source| ConfigError::Io { path: "/proc/meminfo".into(), source })?;
    let memory_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| ConfigError::Capacity("no MemTotal in /proc/meminfo".into()))?;
    std::fs::create_dir_all(state_dir).map_err(|source| ConfigError::Io { path: state_dir.into(), source })?;
    let st = nix_statvfs(state_dir)?;
    Ok(HostCapacity { cpus, memory_mib: memory_kib / 1024, disk_gib: st >> 30 })
}

fn nix_statvfs(path: &Path) -> Result<u64, ConfigError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|e| ConfigError::Capacity(e.to_string()))?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; statvfs only writes into `st`.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(ConfigError::Io { path: path.into(), source: std::io::Error::last_os_error() });
    }
    Ok(st.f_blocks as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("provisioner.toml");
        std::fs::write(&p, "listen = \"127.0.0.1:9000\"\n[capacity]\ncpus = 8\nmemory_mib = 16384\ndisk_gib = 100\n").unwrap();
        let c = DaemonConfig::load(Some(&p)).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.bridge, "vzbr0");
        let usable = c.usable_capacity().unwrap();
        assert_eq!(usable, HostCapacity { cpus: 8, memory_mib: 15360, disk_gib: 90 });
        let dir = c.state_dir.join("tls");
        assert_eq!(c.transport().unwrap(), Transport::Tls { cert: dir.join("cert.pem"), key: dir.join("key.pem"), self_signed: true });
        let plain = DaemonConfig { plain_http: true, ..c.clone() };
        assert_eq!(plain.transport().unwrap(), Transport::PlainHttp);
        let both = DaemonConfig { tls_cert: Some("c".into()), tls_key: Some("k".into()), ..plain };
        assert!(matches!(both.transport(), Err(ConfigError::PlainAndTls)));
    }

    #[test]
    fn a_secret_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = DaemonConfig { state_dir: dir.path().into(), ..Default::default() };
        assert!(matches!(c.read_secret(), Err(ConfigError::NotJoined(_))));
        let s = HostSecret::from_bytes(vec![3; 32]).unwrap();
        write_private(&c.secret_path(), s.to_base64().as_bytes()).unwrap();
        assert_eq!(c.read_secret().unwrap(), s);
        std::fs::set_permissions(c.secret_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(c.read_secret(), Err(ConfigError::SecretExposed { .. })));
    }
}
