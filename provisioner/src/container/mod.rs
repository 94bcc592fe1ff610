//! Burstable OpenVZ-style containers: namespaces for isolation, a cgroup for the plan's floor
//! and ceiling, a loop-mounted sparse ext4 image as the disk, a veth on a host bridge.
//!
//! * [`ContainerRuntime`]: the kernel-facing steps, each idempotent, implementing
//!   [`crate::runtime::Runtime`] (plus reinstall, resize, exec).
//! * [`manager::ContainerHost`]: the runtime over the store: admission, `pending` records,
//!   and the reconcile a restarted provisioner runs (adopt, finish or roll back, sweep orphans).
//! * [`init`]: the short-lived helper processes (`ct-init`, `ct-exec`).
//! * [`disk`], [`net`]: the image/loop/mount and the bridge/veth/tc parts.
//!
//! Names are derived from the instance id, never stored, so every part can be found again
//! after a crash: `<state>/containers/<id>/{disk.img,root,ids.json,log/console.log}`, the cgroup
//! `ct-<id short>` under the configured parent, the veth `<prefix><id short>` (its peer
//! `<prefix>p<id short>` is renamed `eth0` inside).

pub mod access;
pub mod cli;
pub mod disk;
pub mod init;
pub mod manager;
pub mod net;
pub mod seccomp;

use crate::cgroup::{CgroupError, CgroupLayout, InstanceCgroup, Limits};
use crate::runtime::{Runtime, Usage};
use crate::store::{InstanceRecord, PendingOp, StoreError};
use crate::template::{TemplateError, TemplateStore};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use thiserror::Error;
use vessel_core::{InstanceId, InstanceState, Refusal};

#[derive(Debug, Error)]
pub enum ContainerError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("refused by this host's admission: {0}")]
    Refused(Box<Refusal>),
    #[error("no container {0} on this host")]
    NotFound(InstanceId),
    #[error("instance {0} exists with a different spec (an id is never reused)")]
    Conflict(InstanceId),
    #[error("instance {0} is not a container")]
    WrongKind(InstanceId),
    #[error("container {0}: a systemd template needs this host's user namespaces (without one its root is host root with a writable cgroup tree); enable them or use a plain-init template")]
    SystemdNeedsUserns(InstanceId),
    #[error("cannot {action} a container that is {state:?}")]
    NotAllowed { action: &'static str, state: InstanceState },
    #[error("cannot shrink the disk from {from} GiB to {to} GiB (data would be lost)")]
    DiskShrink { from: u64, to: u64 },
    #[error("{cmd} failed ({status}): {stderr}")]
    Command { cmd: String, status: String, stderr: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{what}: {errno}")]
    Sys { what: String, errno: nix::Error },
    #[error("container init: {0}")]
    Init(String),
    #[error("no free user-namespace id range left on this host ({slots} in the pool)")]
    IdsExhausted { slots: u32 },
    #[error(transparent)]
    NotSupported(#[from] crate::runtime::NotSupported),
    #[error(transparent)]
    HostNet(#[from] crate::hostnet::HostNetError),
}

impl From<Refusal> for ContainerError {
    fn from(r: Refusal) -> Self {
        ContainerError::Refused(Box::new(r))
    }
}

/// Runs a host command, returning its stdout or an error carrying its stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<String, ContainerError> {
    let desc = format!("{:?}", cmd).replace('"', "");
    let out = cmd.stdin(Stdio::null()).output().map_err(|source| ContainerError::Io { what: desc.clone(), source })?;
    if !out.status.success() {
        return Err(ContainerError::Command {
            cmd: desc,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Fault injection for the crash tests: `VESSEL_CRASH_AT=<op>:<step>` aborts the process
/// (like a kill -9) when it reaches that step. Only in builds with the `test-hooks` feature
/// (what `./vessel test` builds); in a release build it is nothing.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn crash_point(_op: &str, _step: &str) {}

#[cfg(feature = "test-hooks")]
pub fn crash_point(op: &str, step: &str) {
    if let Ok(v) = std::env::var("VESSEL_CRASH_AT") {
        if v.split_once(':') == Some((op, step)) {
            tracing::warn!(op, step, "VESSEL_CRASH_AT: aborting");
            std::process::abort();
        }
    }
}

/// Room for a container's console logs on the host (this boot's and the previous one's).
pub const LOG_BYTES: u64 = 2 * 1024 * 1024;

/// The size of a rescue system's tmpfs (the rescue template is a few MiB; the rest is room
/// for the customer's tools and copies).
pub const RESCUE_BYTES: u64 = 128 * 1024 * 1024;

/// The steps of create and destroy, in order (the crash tests walk them).
pub const CREATE_STEPS: [&str; 8] = ["record", "image", "mkfs", "loop", "mount", "rootfs", "cgroup", "start"];
pub const DESTROY_STEPS: [&str; 7] = ["record", "stop", "cgroup", "umount", "loop", "files", "forget"];

/// Host facts and names the container runtime works with; every path is a parameter.
#[derive(Clone, Debug)]
pub struct ContainerConfig {
    /// Records and instance directories live here.
    pub state_dir: PathBuf,
    pub cgroups: CgroupLayout,
    pub templates: TemplateStore,
    /// Host bridge the containers' veths are plugged into.
    pub bridge: String,
    /// Prefix of our veth names (at most 2 bytes: names are limited to 15).
    pub veth_prefix: String,
    /// The provisioner binary, run as `ct-init` / `ct-exec`.
    pub helper_exe: PathBuf,
    /// Graceful stop: how long init gets after SIGTERM/SIGPWR before SIGKILL.
    pub stop_timeout: Duration,
    /// The host memory the guarantees are promised out of (admission's `M`), for the OOM
    /// policy: see [`oom_score_adj`].
    pub host_memory_mib: u64,
    /// Give each container a user namespace with its own range of host ids from this pool
    /// (its files are shifted into that range when its root filesystem is made). `None`
    /// (only for measurements and old hosts): root in a container is host root with reduced
    /// capabilities.
    pub userns: Option<IdPool>,
    /// Route between the outside and the containers: IPv4 and IPv6 forwarding on in the
    /// host's network namespace whenever the bridge is set up (each pool's gateway is on the
    /// bridge; a private pool's addresses are also masqueraded, see `hostnet::Port`). Off
    /// only for tests sharing the machine's own network namespace.
    pub route: bool,
}

/// Host uids/gids handed to containers, [`IDS_PER_CONTAINER`] each: slot `k` is
/// `first + k·65536 ..`. The default leaves the ids below 2^30 to the host's own users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdPool {
    pub first: u32,
    pub slots: u32,
}

impl IdPool {
    pub const DEFAULT: IdPool = IdPool { first: 1 << 30, slots: 16_384 };
}

pub const IDS_PER_CONTAINER: u32 = 65_536;

/// The range of host uids/gids one container's ids 0..count map onto: allocated from the
/// pool at create, recorded in its instance directory (`ids.json`), freed with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdRange {
    pub base: u32,
    pub count: u32,
}

/// OOM policy: every process of a container gets `oom_score_adj = 1000 · (M − g) / M`, so
/// when the host (or the parent group standing for it) runs out of memory the kernel's
/// badness of a container process is ≈ rss − g + M: the victim is the process furthest
/// *above its container's guarantee*, not simply the biggest one, and host daemons (adj 0)
/// go after every container. Non-negative on purpose: raising needs no privilege, so this
/// works even where the provisioner lacks CAP_SYS_RESOURCE (as in this project's sandboxes;
/// there a container could lower its own score back to 0, which a provisioner holding
/// CAP_SYS_RESOURCE prevents, because its write also sets the floor `oom_score_adj_min`).
pub fn oom_score_adj(guarantee_mib: u64, host_memory_mib: u64) -> i32 {
    if host_memory_mib == 0 {
        return 0;
    }
    (1000 * (host_memory_mib - guarantee_mib.min(host_memory_mib)) / host_memory_mib) as i32
}

/// The runtime facts of a running container, kept in `record.runtime`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Facts {
    /// Host pid of the container's init.
    pub pid: Option<u32>,
    /// Its start time (clock ticks after boot), so a recycled pid is never mistaken for it.
    pub start_time: Option<u64>,
}

impl Facts {
    pub fn of(record: &InstanceRecord) -> Self {
        serde_json::from_value(record.runtime.clone()).unwrap_or_default()
    }
    fn store(&self, record: &mut InstanceRecord) {
        record.runtime = serde_json::to_value(self).expect("facts serialise");
    }
}

/// This thread's filesystem uid and gid set to `id` until dropped (then root's again).
/// setfsuid(2) is per thread, so the daemon's other threads are not affected.
struct FsIds;

impl FsIds {
    fn become_(id: u32) -> FsIds {
        // SAFETY: setfsgid/setfsuid take plain integers and only change this thread's ids.
        unsafe {
            libc::setfsgid(id);
            libc::setfsuid(id);
        }
        FsIds
    }
}

impl Drop for FsIds {
    fn drop(&mut self) {
        // SAFETY: as above, back to root.
        unsafe {
            libc::setfsuid(0);
            libc::setfsgid(0);
        }
    }
}

/// The output side of a container's console: the pty master, read with a short poll so that
/// dropping the input side (which sets `stop`) lets this side close its copy of the master
/// too; only then does the login get its hang-up.
struct PtyOutput {
    master: fs::File,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::io::Read for PtyOutput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::sync::atomic::Ordering;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(0);
            }
            let mut fds = [libc::pollfd { fd: self.master.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
            // SAFETY: poll(2) on one pollfd we own, for 200 ms.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 200) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                continue;
            }
            return match std::io::Read::read(&mut self.master, buf) {
                // EIO: every slave descriptor is closed (the login ended, the container stopped).
                Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(0),
                other => other,
            };
        }
    }
}

/// The typing side of a container's console, and the owner of its helper process.
struct PtyInput {
    master: fs::File,
    child: Option<std::process::Child>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl crate::runtime::ConsoleInput for PtyInput {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        std::io::Write::write_all(&mut self.master, bytes)
    }
    fn resize(&mut self, cols: u16, rows: u16) -> std::io::Result<()> {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads a winsize we own; the kernel signals the pty's foreground group.
        if unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for PtyInput {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // The master closes with us and the output side (within its poll interval): the
        // login gets its hang-up and exits, then ct-exec does. Reaped off this thread; one
        // that does not go within 10 s is killed.
        if let Some(mut child) = self.child.take() {
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = child.kill();
                let _ = child.wait();
            });
        }
    }
}

/// Notes that the root filesystem was just made from the template, so the customer's access
/// is to be written into it (see `ensure_built`).
fn mark_access_pending(dir: &std::path::Path) -> Result<(), ContainerError> {
    let p = dir.join("access.pending");
    fs::write(&p, b"").map_err(|source| ContainerError::Io { what: format!("write {}", p.display()), source })
}

/// Creates `dir` if needed and makes it the provisioner's only (0700): nothing of a
/// container is reachable by the host's other users.
fn private_dir(dir: &std::path::Path) -> Result<(), ContainerError> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir)
        .and_then(|_| fs::set_permissions(dir, fs::Permissions::from_mode(0o700)))
        .map_err(|source| ContainerError::Io { what: format!("mkdir 0700 {}", dir.display()), source })
}

/// Start time of `pid` from /proc, if it is alive and not a zombie.
pub fn proc_start_time(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[derive(Clone, Debug)]
pub struct ContainerRuntime {
    pub cfg: ContainerConfig,
}

impl ContainerRuntime {
    pub fn new(cfg: ContainerConfig) -> Self {
        Self { cfg }
    }

    pub fn instances_dir(&self) -> PathBuf {
        self.cfg.state_dir.join("containers")
    }
    pub fn dir(&self, id: &InstanceId) -> PathBuf {
        self.instances_dir().join(id.to_string())
    }
    pub fn root(&self, id: &InstanceId) -> PathBuf {
        self.dir(id).join("root")
    }
    fn image(&self, id: &InstanceId) -> PathBuf {
        self.dir(id).join("disk.img")
    }
    /// The console log: what the container's init writes to stdout/stderr. It lives on a
    /// small tmpfs of its own (`log/`, [`LOG_BYTES`]), so a tenant flooding its console fills
    /// that and nothing of the host's; each start keeps the previous boot's as `.1`.
    pub fn console_log(&self, id: &InstanceId) -> PathBuf {
        self.log_dir(id).join("console.log")
    }
    fn log_dir(&self, id: &InstanceId) -> PathBuf {
        self.dir(id).join("log")
    }
    /// The rescue system's root (see [`ContainerRuntime::ensure_rescue_root`]).
    pub fn rescue_root(&self, id: &InstanceId) -> PathBuf {
        self.dir(id).join("rescue")
    }

    /// The rescue system of a container in rescue: a tmpfs of its own ([`RESCUE_BYTES`]: a
    /// tenant filling it fills only that), made afresh on every rescue boot from the rescue
    /// template ([`vessel_core::templates::RESCUE_CONTAINER`]), with `access` (the customer's
    /// keys and root password hash) written in, its ids shifted into the container's range,
    /// and the container's own root filesystem bind-mounted at `/mnt`. It boots with the
    /// container's cgroup, addresses and veth, so the customer reaches it as their server.
    fn ensure_rescue_root(&self, record: &InstanceRecord, access: &vessel_core::Access) -> Result<(), ContainerError> {
        use nix::mount::MsFlags;
        let id = record.spec.id;
        let root = self.rescue_root(&id);
        let t = self.cfg.templates.load(vessel_core::templates::RESCUE_CONTAINER)?;
        disk::unmount(&root)?;
        private_dir(&root)?;
        nix::mount::mount(
            Some("vessel-rescue"),
            &root,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(format!("size={RESCUE_BYTES},mode=0755").as_str()),
        )
        .map_err(|errno| ContainerError::Sys { what: format!("mount rescue tmpfs on {}", root.display()), errno })?;
        disk::copy_rootfs(&t.rootfs, &root)?;
        let ids = self.ids(&id);
        access::write_before_boot(&root, access, ids.map(|r| r.base))?;
        access::write_resolv_conf(&root, &record.spec.network.dns, std::path::Path::new("/etc/resolv.conf"), ids.map(|r| r.base))?;
        let mnt = root.join("mnt");
        fs::create_dir_all(&mnt).map_err(|source| ContainerError::Io { what: format!("mkdir {}", mnt.display()), source })?;
        if let Some(range) = ids {
            disk::shift_ids(&root, range.base, range.count)?;
        }
        // The customer's disk as it is mounted on the host (nodev, nosuid): inside, a file on
        // it is data to repair, never a setuid program the rescue shell would honour.
        nix::mount::mount(Some(&self.root(&id)), &mnt, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|errno| ContainerError::Sys { what: format!("bind the root filesystem on {}", mnt.display()), errno })?;
        Ok(())
    }

    /// Mounts the log tmpfs if needed and rotates the previous boot's console log.
    fn prepare_console_log(&self, id: &InstanceId) -> Result<(), ContainerError> {
        let dir = self.log_dir(id);
        if !disk::is_mounted(&dir) {
            private_dir(&dir)?;
            use nix::mount::MsFlags;
            nix::mount::mount(
                Some("vessel-log"),
                &dir,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some(format!("size={LOG_BYTES},mode=0700").as_str()),
            )
            .map_err(|errno| ContainerError::Sys { what: format!("mount log tmpfs on {}", dir.display()), errno })?;
        }
        let log = self.console_log(id);
        if fs::metadata(&log).map(|m| m.len() > 0).unwrap_or(false) {
            let _ = fs::rename(&log, dir.join("console.log.1"));
        }
        Ok(())
    }
    pub fn cgroup(&self, id: &InstanceId) -> InstanceCgroup {
        self.cfg.cgroups.group(&format!("ct-{}", id.short()))
    }
    pub fn veth_host(&self, id: &InstanceId) -> String {
        format!("{}{}", self.cfg.veth_prefix, id.short())
    }
    fn veth_peer(&self, id: &InstanceId) -> String {
        format!("{}p{}", self.cfg.veth_prefix, id.short())
    }

    /// The container's port as the host guards it (see [`crate::hostnet`]): its MAC, its
    /// addresses, the plan's rate both ways.
    pub fn port(&self, record: &InstanceRecord) -> crate::hostnet::Port {
        let id = record.spec.id;
        let rate = record.spec.resources.net_rate_mbit();
        crate::hostnet::Port {
            ifname: self.veth_host(&id),
            mac: crate::hostnet::MacAddr::for_instance(&id),
            ipv4: record.spec.network.ipv4.as_ref().map(|a| a.address),
            ipv6: record.spec.network.ipv6.as_ref().map(|a| a.address),
            from_guest_mbit: rate,
            to_guest_mbit: rate,
            masquerade_outside: record.spec.network.ipv4.as_ref().and_then(|a| a.masquerade_outside()),
            firewall: record.spec.firewall.clone(),
        }
    }

    /// The host id range of container `id`, if it has one (see [`IdRange`]).
    pub fn ids(&self, id: &InstanceId) -> Option<IdRange> {
        self.cfg.userns?;
        let b = fs::read(self.dir(id).join("ids.json")).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// Allocates container `id`'s id range once (the lowest slot no instance directory of
    /// this host holds), durably before any file is shifted into it, under a host-wide lock
    /// so two creates never take the same slot.
    fn ensure_ids(&self, id: &InstanceId) -> Result<Option<IdRange>, ContainerError> {
        let Some(pool) = self.cfg.userns else {
            return Ok(None);
        };
        if let Some(r) = self.ids(id) {
            return Ok(Some(r));
        }
        let io = |what: String| move |source| ContainerError::Io { what, source };
        let locks = self.cfg.state_dir.join("locks");
        fs::create_dir_all(&locks).map_err(io(format!("mkdir {}", locks.display())))?;
        let lock =
            fs::OpenOptions::new().create(true).truncate(false).write(true).open(locks.join(".ids")).map_err(io("ids lock".into()))?;
        // SAFETY: flock(2) on a descriptor we own; released when `lock` drops.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io("ids lock".into())(std::io::Error::last_os_error()));
        }
        if let Some(r) = self.ids(id) {
            return Ok(Some(r));
        }
        let mut used = std::collections::HashSet::new();
        if let Ok(rd) = fs::read_dir(self.instances_dir()) {
            for e in rd.flatten() {
                let b = fs::read(e.path().join("ids.json")).ok();
                if let Some(r) = b.and_then(|b| serde_json::from_slice::<IdRange>(&b).ok()) {
                    used.insert(r.base);
                }
            }
        }
        let base = (0..pool.slots)
            .map(|k| pool.first + k * IDS_PER_CONTAINER)
            .find(|b| !used.contains(b))
            .ok_or(ContainerError::IdsExhausted { slots: pool.slots })?;
        let r = IdRange { base, count: IDS_PER_CONTAINER };
        let path = self.dir(id).join("ids.json");
        let tmp = self.dir(id).join(".ids.json.tmp");
        let mut f = fs::File::create(&tmp).map_err(io(format!("create {}", tmp.display())))?;
        f.write_all(&serde_json::to_vec(&r).expect("serialises"))
            .and_then(|_| f.sync_all())
            .map_err(io(format!("write {}", tmp.display())))?;
        fs::rename(&tmp, &path).map_err(io(format!("rename {}", path.display())))?;
        Ok(Some(r))
    }

    /// The live init pid, if the recorded one is still the same process.
    pub fn live_pid(&self, record: &InstanceRecord) -> Option<u32> {
        let f = Facts::of(record);
        let pid = f.pid?;
        (proc_start_time(pid)? == f.start_time?).then_some(pid)
    }

    /// Disk, root filesystem and cgroup: every step idempotent (see module docs).
    fn ensure_built(&self, record: &InstanceRecord, op: &str) -> Result<(), ContainerError> {
        let id = record.spec.id;
        let dir = self.dir(&id);
        private_dir(&self.instances_dir())?;
        private_dir(&dir)?;
        let t0 = Instant::now();
        crash_point(op, "image");
        let mkfs_done = dir.join("mkfs.done");
        if !mkfs_done.exists() {
            // From the template's ready-made disk when there is one for this size: the root
            // filesystem comes with it (rootfs.done before mkfs.done, see ensure_rootfs).
            let t = self.cfg.templates.load(&record.spec.template)?;
            let sha16: String = t.manifest.sha256.chars().take(16).collect();
            let key = format!("{}-{}-{}", t.manifest.name, t.manifest.version, sha16);
            let golden = disk::golden_image(&self.cfg.templates.cache, &key, record.spec.resources.disk_gib(), &t.rootfs)?;
            disk::copy_sparse(&golden, &self.image(&id))?;
            crash_point(op, "mkfs");
            mark_access_pending(&dir)?;
            let done = dir.join("rootfs.done");
            fs::write(&done, serde_json::to_vec(&t.manifest).expect("manifest serialises"))
                .map_err(|source| ContainerError::Io { what: format!("write {}", done.display()), source })?;
            fs::write(&mkfs_done, b"").map_err(|source| ContainerError::Io { what: format!("write {}", mkfs_done.display()), source })?;
        }
        // Mounted means attached: skip the loop lookup on the common path (every start).
        let mut loop_dev = None;
        if !disk::is_mounted(&self.root(&id)) {
            crash_point(op, "loop");
            let dev = disk::attach(&self.image(&id))?;
            crash_point(op, "mount");
            disk::mount(&dev, &self.root(&id))?;
            loop_dev = Some(dev);
        }
        let t_disk = Instant::now();
        crash_point(op, "rootfs");
        self.ensure_rootfs(record)?;
        let ids = self.ensure_ids(&id)?;
        // The customer's way in and the resolver, on a root filesystem made from the template
        // in this create or reinstall (`access.pending`, written just before `rootfs.done`),
        // before its first boot: never into one a tenant has used.
        let pending = dir.join("access.pending");
        if pending.exists() {
            access::write_before_boot(&self.root(&id), &record.spec.access, ids.map(|r| r.base))?;
            access::write_resolv_conf(
                &self.root(&id),
                &record.spec.network.dns,
                std::path::Path::new("/etc/resolv.conf"),
                ids.map(|r| r.base),
            )?;
            fs::remove_file(&pending).map_err(|source| ContainerError::Io { what: format!("remove {}", pending.display()), source })?;
        }
        if let Some(range) = ids {
            // Idempotent (ids already in range stay), so a crash mid-way is finished by
            // running it again.
            let shifted = dir.join("ids.shifted");
            if !shifted.exists() {
                disk::shift_ids(&self.root(&id), range.base, range.count)?;
                fs::write(&shifted, b"").map_err(|source| ContainerError::Io { what: format!("write {}", shifted.display()), source })?;
            }
        }
        let t_rootfs = Instant::now();
        crash_point(op, "cgroup");
        self.ensure_cgroup(record)?;
        // The I/O ceilings name the loop device, which may be a new one after a host reboot.
        let dev = match loop_dev {
            Some(d) => Some(d),
            None => disk::loops_of(&self.image(&id)).into_iter().next(),
        };
        if let Some(dev) = dev {
            let rdev =
                nix::sys::stat::stat(dev.as_str()).map_err(|errno| ContainerError::Sys { what: format!("stat {dev}"), errno })?.st_rdev;
            let majmin = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
            self.cgroup(&id).set_io_limits(majmin, &record.spec.resources.io_limits())?;
        }
        let t_cgroup = Instant::now();
        // Gateways go on the bridge when it is made and on every op but a plain start (a
        // `start` after a host reboot finds no bridge and so puts them back too).
        if net::ensure_bridge(&self.cfg.bridge)? || op != "start" {
            net::ensure_gateways(&self.cfg.bridge, &record.spec.network)?;
        }
        if self.cfg.route {
            net::enable_forwarding()?;
        }
        tracing::debug!(
            op,
            disk_us = (t_disk - t0).as_micros() as u64,
            rootfs_us = (t_rootfs - t_disk).as_micros() as u64,
            cgroup_us = (t_cgroup - t_rootfs).as_micros() as u64,
            net_us = t_cgroup.elapsed().as_micros() as u64,
            "ensure_built"
        );
        Ok(())
    }

    fn ensure_rootfs(&self, record: &InstanceRecord) -> Result<(), ContainerError> {
        let id = record.spec.id;
        let done = self.dir(&id).join("rootfs.done");
        if done.exists() {
            return Ok(());
        }
        let t = self.cfg.templates.load(&record.spec.template)?;
        disk::copy_rootfs(&t.rootfs, &self.root(&id))?;
        mark_access_pending(&self.dir(&id))?;
        let init = serde_json::to_vec(&t.manifest).expect("manifest serialises");
        fs::write(&done, init).map_err(|source| ContainerError::Io { what: format!("write {}", done.display()), source })?;
        Ok(())
    }

    fn ensure_cgroup(&self, record: &InstanceRecord) -> Result<(), ContainerError> {
        let cg = self.cgroup(&record.spec.id);
        cg.create()?;
        let missing = cg.apply(&Limits::for_plan(&record.spec.resources))?;
        for m in missing.0 {
            tracing::warn!(instance = %record.spec.id, "NOT ENFORCED on this host: {m}");
        }
        Ok(())
    }

    /// The init the root filesystem was made for (its template's manifest, kept in
    /// `rootfs.done`) and what kind it is.
    /// In rescue: the rescue template's.
    fn init_of(&self, record: &InstanceRecord) -> (Vec<String>, crate::template::Boot) {
        if record.rescue.is_some() {
            if let Ok(m) = self.cfg.templates.manifest(vessel_core::templates::RESCUE_CONTAINER) {
                return (m.init, m.boot);
            }
        }
        let done = self.dir(&record.spec.id).join("rootfs.done");
        fs::read(done)
            .ok()
            .and_then(|b| serde_json::from_slice::<crate::template::Manifest>(&b).ok())
            .map(|m| (m.init, m.boot))
            .unwrap_or_else(|| (vec!["/sbin/init".into()], Default::default()))
    }

    fn spawn_init(&self, record: &mut InstanceRecord) -> Result<(), ContainerError> {
        let id = record.spec.id;
        let has_net = record.spec.network.ipv4.is_some() || record.spec.network.ipv6.is_some();
        let (init, boot) = self.init_of(record);
        let ids = self.ids(&id);
        let root = systemd_tree_owner(id, boot, ids.map(|r| r.base))?;
        if let Some(root) = root {
            // Its systemd manages its own cgroup tree (see `InstanceCgroup::delegate`).
            self.cgroup(&id).delegate(root, root)?;
        }
        let cfg = init::InitConfig {
            root: if record.rescue.is_some() { self.rescue_root(&id) } else { self.root(&id) },
            hostname: record.spec.hostname.as_str().to_string(),
            init,
            boot,
            memory_mib: record.spec.resources.memory_burst_mib(),
            veth_peer: has_net.then(|| self.veth_peer(&id)),
            network: record.spec.network.clone(),
            cgroup_join: self.cgroup(&id).join_files(),
            userns: ids.map(|r| (r.base, r.count)),
        };
        let cfg_path = self.dir(&id).join("init.json");
        fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).expect("serialises"))
            .map_err(|source| ContainerError::Io { what: format!("write {}", cfg_path.display()), source })?;
        self.prepare_console_log(&id)?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(self.console_log(&id))
            .map_err(|source| ContainerError::Io { what: "console log".into(), source })?;
        let mut cmd = Command::new(&self.cfg.helper_exe);
        cmd.arg("ct-init").arg(&cfg_path).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(log);
        // With a user namespace, ct-init makes the network namespace itself (owned by it).
        let netns_flag = if cfg.userns.is_some() { 0 } else { libc::CLONE_NEWNET };
        // SAFETY: between fork and exec only async-signal-safe syscalls (setsid, unshare),
        // no allocation and no locks.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                let flags = libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | netns_flag;
                if libc::unshare(flags) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let t0 = Instant::now();
        let mut child =
            cmd.spawn().map_err(|source| ContainerError::Io { what: format!("spawn {}", self.cfg.helper_exe.display()), source })?;
        let t_spawned = Instant::now();
        let result = (|| {
            let adj = oom_score_adj(record.spec.resources.memory_guaranteed_mib(), self.cfg.host_memory_mib);
            let adj_path = format!("/proc/{}/oom_score_adj", child.id());
            fs::write(&adj_path, adj.to_string()).map_err(|source| ContainerError::Io { what: adj_path, source })?;
            let mut out = BufReader::new(child.stdout.take().expect("piped"));
            if cfg.userns.is_some() {
                let mut ready = String::new();
                out.read_line(&mut ready).map_err(|source| ContainerError::Io { what: "read ct-init".into(), source })?;
                if ready.trim() != "ready" {
                    let tail = fs::read_to_string(self.console_log(&id)).unwrap_or_default();
                    let tail: String = tail.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                    return Err(ContainerError::Init(format!("did not start: {tail}")));
                }
            }
            if has_net {
                net::create_veth(
                    &self.veth_host(&id),
                    &self.veth_peer(&id),
                    child.id(),
                    &self.cfg.bridge,
                    crate::hostnet::MacAddr::for_instance(&id),
                )?;
                crate::hostnet::protect(&self.port(record))?;
            }
            let mut stdin = child.stdin.take().expect("piped");
            stdin.write_all(b"go\n").map_err(|source| ContainerError::Io { what: "signal ct-init".into(), source })?;
            drop(stdin);
            let t_go = Instant::now();
            let mut line = String::new();
            out.read_line(&mut line).map_err(|source| ContainerError::Io { what: "read ct-init".into(), source })?;
            line.trim()
                .strip_prefix("pid ")
                .and_then(|p| p.parse::<u32>().ok())
                .ok_or_else(|| {
                    let tail = fs::read_to_string(self.console_log(&id)).unwrap_or_default();
                    let tail: String = tail.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                    ContainerError::Init(format!("did not start: {tail}"))
                })
                .inspect(|_| {
                    tracing::debug!(
                        spawn_us = (t_spawned - t0).as_micros() as u64,
                        setup_us = (t_go - t_spawned).as_micros() as u64,
                        init_us = t_go.elapsed().as_micros() as u64,
                        "ct-init"
                    )
                })
        })();
        let _ = child.wait();
        let pid = match result {
            Ok(p) => p,
            Err(e) => {
                net::delete_link(&self.veth_host(&id));
                let _ = crate::hostnet::unprotect(&self.veth_host(&id));
                let _ = self.cgroup(&id).kill_all(Duration::from_secs(5));
                return Err(e);
            }
        };
        let facts = Facts { pid: Some(pid), start_time: proc_start_time(pid) };
        facts.store(record);
        Ok(())
    }

    /// Stops the init: the signals its kind asks for (SIGTERM and SIGPWR; systemd's
    /// SIGRTMIN+3), then SIGKILL to everything after the timeout.
    fn stop_init(&self, record: &mut InstanceRecord, graceful: bool) -> Result<(), ContainerError> {
        let cg = self.cgroup(&record.spec.id);
        if let Some(pid) = self.live_pid(record) {
            let _ = cg.thaw();
            if graceful {
                for sig in self.init_of(record).1.stop_signals() {
                    // SAFETY: kill(2) on the init pid verified against its start time.
                    unsafe { libc::kill(pid as libc::pid_t, sig) };
                }
                let deadline = Instant::now() + self.cfg.stop_timeout;
                while Instant::now() < deadline && self.live_pid(record).is_some() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        cg.kill_all(Duration::from_secs(10))?;
        net::delete_link(&self.veth_host(&record.spec.id));
        crate::hostnet::unprotect(&self.veth_host(&record.spec.id))?;
        Facts::default().store(record);
        Ok(())
    }

    /// New root filesystem from `record.spec.template`; same identity, disk image and
    /// addresses. Restarts it if it was running.
    pub fn reinstall(&self, record: &mut InstanceRecord) -> Result<(), ContainerError> {
        let was_running = self.live_pid(record).is_some() || record.should_run;
        self.stop_init(record, true)?;
        let _ = fs::remove_file(self.dir(&record.spec.id).join("rootfs.done"));
        let _ = fs::remove_file(self.dir(&record.spec.id).join("ids.shifted"));
        crash_point("reinstall", "rootfs");
        self.ensure_built(record, "reinstall")?;
        if was_running {
            self.start(record)?;
        }
        Ok(())
    }

    /// Applies `record.spec.resources` (already the new plan): limits at once, and a
    /// grown disk online. `previous` is the old plan.
    pub fn resize(&self, record: &mut InstanceRecord, previous: &vessel_core::PlanResources) -> Result<(), ContainerError> {
        let id = record.spec.id;
        let (from, to) = (previous.disk_gib(), record.spec.resources.disk_gib());
        if to < from {
            return Err(ContainerError::DiskShrink { from, to });
        }
        self.ensure_built(record, "resize")?;
        let dev = disk::attach(&self.image(&id))?;
        disk::grow(&self.image(&id), &dev, to)?;
        let fs_bytes = disk::usage(&self.root(&id)).map(|(_, total)| total).unwrap_or(0);
        if fs_bytes < to * (1 << 30) * 9 / 10 {
            // Online first; some kernels refuse online ext4 resize (EPERM, as on this
            // project's test machines): then a short stop, an offline grow, and a start.
            if disk::grow_fs(&dev, true).is_err() {
                tracing::warn!(instance = %id, "online ext4 resize refused; growing offline with a restart");
                let was_running = self.live_pid(record).is_some();
                self.stop_init(record, true)?;
                disk::unmount(&self.root(&id))?;
                crash_point("resize", "offline");
                disk::grow_fs(&dev, false)?;
                disk::mount(&dev, &self.root(&id))?;
                if was_running {
                    self.spawn_init(record)?;
                }
            }
        }
        // A changed rate applies at once to a running container (on the host side).
        if record.spec.resources.net_rate_mbit() != previous.net_rate_mbit()
            && self.live_pid(record).is_some()
            && net::link_exists(&self.veth_host(&id))
        {
            crate::hostnet::protect(&self.port(record))?;
        }
        Ok(())
    }

    /// A new root password hash on the running container: written by a shell inside (as its
    /// root, through its own view of /etc, so a symlink it planted cannot point the host at
    /// the host's files). A stopped container is refused: its files are only touched before
    /// their first boot (create, reinstall) or from inside.
    pub fn reset_password(&self, record: &InstanceRecord, hash: &vessel_core::PasswordHash) -> Result<(), ContainerError> {
        if self.live_pid(record).is_none() {
            return Err(ContainerError::NotAllowed { action: "reset the password of", state: InstanceState::Stopped });
        }
        let mut cmd = self.exec_command(record, &["/bin/sh".into(), "-c".into(), access::RESET_SCRIPT.into()])?;
        cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| ContainerError::Io { what: "password reset".into(), source })?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(format!("{}\n", hash.as_str()).as_bytes())
            .map_err(|source| ContainerError::Io { what: "password reset".into(), source })?;
        let out = child.wait_with_output().map_err(|source| ContainerError::Io { what: "password reset".into(), source })?;
        if !out.status.success() {
            return Err(ContainerError::Command {
                cmd: "password reset inside the container".into(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    /// Runs `argv` inside the running container (its namespaces, cgroup and capability set).
    pub fn exec_command(&self, record: &InstanceRecord, argv: &[String]) -> Result<Command, ContainerError> {
        let pid = self.live_pid(record).ok_or(ContainerError::NotAllowed { action: "exec in", state: InstanceState::Stopped })?;
        // A process joining a frozen group freezes with it: refuse rather than hang.
        if self.cgroup(&record.spec.id).frozen() {
            return Err(ContainerError::NotAllowed { action: "exec in", state: InstanceState::Suspended });
        }
        let mut cmd = Command::new(&self.cfg.helper_exe);
        cmd.arg("ct-exec").arg("--pid").arg(pid.to_string());
        let adj = oom_score_adj(record.spec.resources.memory_guaranteed_mib(), self.cfg.host_memory_mib);
        cmd.arg(format!("--oom-score-adj={adj}"));
        for f in self.cgroup(&record.spec.id).join_files() {
            cmd.arg("--cgroup").arg(f);
        }
        cmd.arg("--").args(argv);
        Ok(cmd)
    }

    /// An interactive console for the panel: `login` inside the container on a fresh
    /// pseudo-terminal (the template's own: busybox's or Debian's), so the customer signs in
    /// with root's password as on a real console. Nothing stays behind when the viewer leaves:
    /// dropping the [`Console`] closes the master, and the hang-up ends the login.
    pub fn console_session(&self, record: &InstanceRecord) -> Result<crate::runtime::Console, ContainerError> {
        // The pty comes from the container's own devpts instance (through its init's root),
        // so inside it is /dev/pts/N: `tty`, job control and login work as on a real console.
        // Root inside cannot replace that mount (the mount namespace is the host's user's).
        let pid =
            self.live_pid(record).ok_or(ContainerError::NotAllowed { action: "attach a console to", state: InstanceState::Stopped })?;
        let ptmx = format!("/proc/{pid}/root/dev/pts/ptmx");
        // Opened as the container's root (this thread's filesystem ids only): devpts gives
        // the new pty to the opener, and a pty owned by an id the container cannot see is
        // one Debian's `login` cannot take over ("Unable to change owner or mode of tty").
        let opener = self.ids(&record.spec.id).map(|r| r.base);
        let master = {
            let _as = opener.map(FsIds::become_);
            fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC).open(&ptmx)
        }
        .map_err(|source| ContainerError::Io { what: ptmx.clone(), source })?;
        let unlock: libc::c_int = 0;
        // SAFETY: ioctls on the master we just opened: TIOCSPTLCK reads an int we own;
        // TIOCGPTPEER returns a new descriptor for the peer, which we then own.
        let slave_fd = unsafe {
            if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0 {
                return Err(ContainerError::Io { what: "unlock pty".into(), source: std::io::Error::last_os_error() });
            }
            libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC)
        };
        if slave_fd < 0 {
            return Err(ContainerError::Io { what: "pty peer".into(), source: std::io::Error::last_os_error() });
        }
        // SAFETY: `slave_fd` is a fresh descriptor returned to us above, owned only here.
        let slave = unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(slave_fd) };
        let mut cmd = self.exec_command(record, &["login".to_string()])?;
        let clone = |f: &fs::File| f.try_clone().map_err(|source| ContainerError::Io { what: "pty".into(), source });
        cmd.stdin(clone(&slave)?).stdout(clone(&slave)?).stderr(slave);
        // SAFETY: only async-signal-safe calls between fork and exec: setsid, then making the
        // pty (already on fd 0) the controlling terminal of the new session. ct-exec's child
        // inherits both (it forks, it does not start a new session).
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| ContainerError::Io { what: "console".into(), source })?;
        drop(cmd);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = PtyOutput { master: clone(&master)?, stop: stop.clone() };
        Ok(crate::runtime::Console { output: Box::new(reader), input: Box::new(PtyInput { master, child: Some(child), stop }) })
    }

    /// Removes whatever exists of instance `id` (also used for orphans with no record).
    pub fn destroy_parts(&self, id: &InstanceId, record: Option<&mut InstanceRecord>) -> Result<(), ContainerError> {
        crash_point("destroy", "stop");
        match record {
            Some(r) => self.stop_init(r, false)?,
            None => {
                self.cgroup(id).kill_all(Duration::from_secs(10))?;
                net::delete_link(&self.veth_host(id));
                crate::hostnet::unprotect(&self.veth_host(id))?;
            }
        }
        crash_point("destroy", "cgroup");
        self.cgroup(id).delete()?;
        crash_point("destroy", "umount");
        // The root disk and the log tmpfs.
        disk::unmount(&self.dir(id))?;
        crash_point("destroy", "loop");
        disk::detach_all(&self.image(id))?;
        crash_point("destroy", "files");
        let dir = self.dir(id);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|source| ContainerError::Io { what: format!("remove {}", dir.display()), source })?;
        }
        Ok(())
    }
}

impl Runtime for ContainerRuntime {
    type Error = ContainerError;

    fn check_template(&self, template: &str) -> Result<(), ContainerError> {
        self.cfg.templates.load(template)?;
        Ok(())
    }

    fn check_resize(&self, current: &vessel_core::PlanResources, new: &vessel_core::PlanResources) -> Result<(), ContainerError> {
        let (from, to) = (current.disk_gib(), new.disk_gib());
        if to < from {
            return Err(ContainerError::DiskShrink { from, to });
        }
        Ok(())
    }

    /// Its own steps, resumable: a failure leaves `pending` for the next request or restart.
    fn reinstall(&self, record: &mut InstanceRecord, _previous_template: &str) -> Result<(), ContainerError> {
        ContainerRuntime::reinstall(self, record)
    }

    /// Limits at once, the disk grown online: no restart needed.
    fn resize(&self, record: &mut InstanceRecord, previous: &vessel_core::PlanResources) -> Result<(), ContainerError> {
        ContainerRuntime::resize(self, record, previous)
    }

    fn reset_password(&self, record: &mut InstanceRecord, hash: &vessel_core::PasswordHash) -> Result<(), ContainerError> {
        ContainerRuntime::reset_password(self, record, hash)
    }

    fn console(&self, record: &InstanceRecord) -> Result<crate::runtime::Console, ContainerError> {
        self.console_session(record)
    }

    fn port_name(&self, record: &InstanceRecord) -> String {
        self.veth_host(&record.spec.id)
    }

    /// Any container can: the rescue template is the one every container host has.
    fn check_rescue(&self, _record: &InstanceRecord) -> Result<(), ContainerError> {
        self.cfg.templates.load(vessel_core::templates::RESCUE_CONTAINER)?;
        Ok(())
    }

    fn create(&self, record: &mut InstanceRecord) -> Result<(), ContainerError> {
        self.ensure_built(record, "create")
    }

    fn start(&self, record: &mut InstanceRecord) -> Result<(), ContainerError> {
        if self.live_pid(record).is_some() {
            return Ok(());
        }
        let t0 = Instant::now();
        // Leftovers of a crashed run (processes that outlived init, the veth).
        self.stop_init(record, false)?;
        let t1 = Instant::now();
        self.ensure_built(record, "start")?;
        match &record.rescue {
            Some(access) => self.ensure_rescue_root(record, access)?,
            // Back from rescue: nothing of the rescue system stays.
            None => disk::unmount(&self.rescue_root(&record.spec.id))?,
        }
        let t2 = Instant::now();
        self.spawn_init(record)?;
        tracing::debug!(
            instance = %record.spec.id,
            cleanup_us = (t1 - t0).as_micros() as u64,
            ensure_us = (t2 - t1).as_micros() as u64,
            spawn_us = t2.elapsed().as_micros() as u64,
            "started"
        );
        Ok(())
    }

    fn stop(&self, record: &mut InstanceRecord) -> Result<(), ContainerError> {
        self.stop_init(record, true)
    }

    fn suspend(&self, record: &mut InstanceRecord) -> Result<(), ContainerError> {
        if self.live_pid(record).is_none() {
            return Err(ContainerError::NotAllowed { action: "suspend", state: InstanceState::Stopped });
        }
        Ok(self.cgroup(&record.spec.id).freeze()?)
    }

    fn resume(&self, record: &mut InstanceRecord) -> Result<(), ContainerError> {
        Ok(self.cgroup(&record.spec.id).thaw()?)
    }

    fn destroy(&self, record: &mut InstanceRecord) -> Result<(), ContainerError> {
        let id = record.spec.id;
        self.destroy_parts(&id, Some(record))
    }

    fn observe(&self, record: &InstanceRecord) -> Result<InstanceState, ContainerError> {
        Ok(match &record.pending {
            Some(PendingOp::Create) => InstanceState::Creating,
            Some(PendingOp::Destroy) => InstanceState::Destroying,
            _ => match self.live_pid(record) {
                Some(_) if self.cgroup(&record.spec.id).frozen() => InstanceState::Suspended,
                Some(_) => InstanceState::Running,
                None if record.should_run => InstanceState::Crashed,
                None => InstanceState::Stopped,
            },
        })
    }

    fn usage(&self, record: &InstanceRecord) -> Result<Usage, ContainerError> {
        let id = record.spec.id;
        let cg = self.cgroup(&id);
        let (mem, peak) = cg.memory();
        let guarantee = record.spec.resources.memory_guaranteed_mib() * 1024 * 1024;
        let (disk_used, _) = disk::usage(&self.root(&id)).filter(|_| disk::is_mounted(&self.root(&id))).unwrap_or((0, 0));
        let (rx, tx) = net::counters(&self.veth_host(&id));
        Ok(Usage {
            cpu_time_ns: cg.cpu_time_ns(),
            memory_bytes: mem,
            memory_peak_bytes: peak,
            memory_burst_bytes: mem.saturating_sub(guarantee),
            disk_used_bytes: disk_used,
            net_rx_bytes: rx,
            net_tx_bytes: tx,
        })
    }
}

/// The host uid that owns the delegated cgroup tree of a systemd container (its root's host
/// id), or None for a plain init (no tree handed over). A systemd container without a user
/// namespace is refused: its root would be host uid 0 with a writable cgroup2 tree, free to
/// lift its own limits wherever the host lacks `nsdelegate`.
fn systemd_tree_owner(id: InstanceId, boot: crate::template::Boot, userns_base: Option<u32>) -> Result<Option<u32>, ContainerError> {
    match (boot, userns_base) {
        (crate::template::Boot::Systemd, None) => Err(ContainerError::SystemdNeedsUserns(id)),
        (crate::template::Boot::Systemd, Some(base)) => Ok(Some(base)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_systemd_without_a_user_namespace_is_refused() {
        let id: InstanceId = "00000000-0000-4000-8000-000000000001".parse().unwrap();
        let e = systemd_tree_owner(id, crate::template::Boot::Systemd, None).unwrap_err();
        assert!(matches!(e, ContainerError::SystemdNeedsUserns(_)), "{e}");
        assert!(e.to_string().contains("user namespace"), "{e}");
        assert_eq!(systemd_tree_owner(id, crate::template::Boot::Systemd, Some(200_000)).unwrap(), Some(200_000));
        assert_eq!(systemd_tree_owner(id, crate::template::Boot::default(), None).unwrap(), None);
    }
}
