//! The two short-lived helper processes, both the provisioner binary run with a hidden
//! subcommand (a freshly exec'd, single-threaded process, so forking in it is safe):
//!
//! * `provisioner ct-init <init.json>`: spawned by `start` already inside new mount, uts and
//!   ipc namespaces (unshared in `pre_exec`). It moves itself into the container's cgroup;
//!   with a user namespace (the default) it makes that namespace, maps it to the container's
//!   id range and enters a network namespace owned by it, says "ready"; then waits for "go"
//!   on stdin (the parent has moved the veth in by then), unshares the pid namespace and forks
//!   the container's init — pid 1 there, which takes a cgroup namespace, configures the
//!   network from the inside, builds the container's mounts, enters the user namespace last,
//!   seals itself (own keyring, seccomp, capabilities) and execs — reports its host pid on
//!   stdout and exits. Nothing of ours stays behind: the init *is* the container (OpenVZ's
//!   zero overhead).
//! * `provisioner ct-exec --pid P --cgroup FILE... -- argv`: joins the container's cgroup and
//!   namespaces, forks (a pid namespace applies to children), drops capabilities like the
//!   init, and runs `argv` inside; exits with its status.

use super::{net, ContainerError};
use crate::template::Boot;
use caps::{CapSet, Capability, CapsHashSet};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, CloneFlags};
use nix::sys::stat::{makedev, mknod, umask, Mode, SFlag};
use nix::unistd::{chdir, execve, fork, pivot_root, sethostname, ForkResult};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::fs;
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use vessel_core::NetworkSpec;

/// What `ct-init` needs, written by `start` into the instance directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InitConfig {
    pub root: PathBuf,
    pub hostname: String,
    pub init: Vec<String>,
    /// Name of the veth peer already moved into our namespace, if networking is on.
    pub veth_peer: Option<String>,
    pub network: NetworkSpec,
    /// Written "0" to join the container's cgroup before anything else (see
    /// `InstanceCgroup::join_files`).
    pub cgroup_join: Vec<PathBuf>,
    /// Host ids (base, count) that the container's ids 0.. map to, when it gets its own user
    /// namespace (see `ContainerConfig::userns`).
    #[serde(default)]
    pub userns: Option<(u32, u32)>,
    /// What the init is (see `template::Boot`): systemd gets the mounts it expects.
    #[serde(default)]
    pub boot: Boot,
    /// The plan's memory ceiling, which sizes the tmpfs mounts (their pages are charged to
    /// the container's memory group whatever their size).
    #[serde(default)]
    pub memory_mib: u64,
}

/// Capabilities a container keeps (Docker's default set minus CAP_MKNOD and CAP_NET_RAW is
/// kept for ping). Everything else is dropped from all sets including the bounding set, so
/// no setuid binary or file capability can bring it back: notably CAP_SYS_ADMIN (mount,
/// namespaces), CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_TIME, CAP_MKNOD, CAP_NET_ADMIN
/// (addresses and the rate limit are the host's), CAP_SYS_PTRACE, CAP_SYS_BOOT,
/// CAP_SYS_RESOURCE, CAP_DAC_READ_SEARCH, CAP_SYSLOG, CAP_BPF, CAP_PERFMON, CAP_SYS_NICE.
pub const KEPT_CAPS: [Capability; 13] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_KILL,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_NET_RAW,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_AUDIT_WRITE,
    Capability::CAP_SETFCAP,
];

/// Where the host's LXCFS is mounted, and the files of its `proc/` a container gets.
pub const LXCFS: &str = "/var/lib/lxcfs";
const LXCFS_PROC: [&str; 7] = ["cpuinfo", "diskstats", "loadavg", "meminfo", "stat", "swaps", "uptime"];

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> ContainerError {
    let what = what.into();
    move |errno| ContainerError::Sys { what, errno }
}

/// `provisioner ct-init <config>`. Returns only on failure before the fork.
pub fn ct_init_main(config: &Path) -> Result<(), ContainerError> {
    let cfg: InitConfig = serde_json::from_slice(
        &fs::read(config).map_err(|source| ContainerError::Io { what: format!("read {}", config.display()), source })?,
    )
    .map_err(|e| ContainerError::Init(format!("bad init config: {e}")))?;

    // Into the container's cgroup first: everything forked from here on is accounted to it.
    crate::cgroup::join_self(&cfg.cgroup_join)?;
    // With a user namespace: make it (and the network namespace it owns) first, and enter
    // the network namespace, so the parent moves the veth into it after "ready".
    let userns = match cfg.userns {
        Some((base, count)) => {
            let user = user_and_net_namespaces(base, count)?;
            println!("ready");
            let _ = std::io::stdout().flush();
            Some(user)
        }
        None => None,
    };
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|source| ContainerError::Io { what: "read go".into(), source })?;
    if line.trim() != "go" {
        return Err(ContainerError::Init("parent went away before go".into()));
    }
    // The next child is pid 1 of a new pid namespace (not before: the namespace helper above
    // must not be its init).
    nix::sched::unshare(CloneFlags::CLONE_NEWPID).map_err(sys("unshare pid"))?;
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    // SAFETY: this process was just exec'd and is single-threaded, so the child may run
    // arbitrary code after fork.
    match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop(rd);
            let err = become_init(&cfg, userns.as_ref()).unwrap_err();
            let mut f = fs::File::from(wr);
            let _ = write!(f, "{err}");
            drop(f);
            // SAFETY: leaving the child without running the parent's atexit handlers.
            unsafe { libc::_exit(127) };
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let mut msg = String::new();
            let _ = fs::File::from(rd).read_to_string(&mut msg);
            if !msg.is_empty() {
                return Err(ContainerError::Init(msg));
            }
            println!("pid {child}");
            let _ = std::io::stdout().flush();
            Ok(())
        }
    }
}

/// A user namespace mapping ids 0..count to host ids base.., and a network namespace owned
/// by it, which we enter. (Owned by the container's user namespace, root inside has its
/// network powers — ping, raw sockets, ports below 1024 — over that namespace only; the
/// port's guards are on the host side.) A short-lived child makes both; we write its id maps
/// while still privileged here, and keep the namespaces by their descriptors. Returns the
/// user namespace, entered last by the init.
fn user_and_net_namespaces(base: u32, count: u32) -> Result<OwnedFd, ContainerError> {
    let (made_rd, made_wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    let (done_rd, done_wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    // SAFETY: single-threaded process (fresh exec); the child only makes syscalls and exits.
    match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop(made_rd);
            drop(done_wr);
            let ok = nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET).is_ok();
            let _ = fs::File::from(made_wr).write_all(if ok { b"y" } else { b"n" });
            let mut b = [0u8; 1];
            let _ = fs::File::from(done_rd).read(&mut b);
            // SAFETY: leaving the child without running the parent's atexit handlers.
            unsafe { libc::_exit(0) };
        }
        ForkResult::Parent { child } => {
            drop(made_wr);
            drop(done_rd);
            let result = (|| {
                let mut b = [0u8; 1];
                if fs::File::from(made_rd).read(&mut b).unwrap_or(0) != 1 || b[0] != b'y' {
                    return Err(ContainerError::Init("could not make the user and network namespaces".into()));
                }
                for f in ["uid_map", "gid_map"] {
                    let p = format!("/proc/{child}/{f}");
                    fs::write(&p, format!("0 {base} {count}\n")).map_err(|source| ContainerError::Io { what: p, source })?;
                }
                let open = |ns: &str| {
                    let p = format!("/proc/{child}/ns/{ns}");
                    fs::File::open(&p).map(OwnedFd::from).map_err(|source| ContainerError::Io { what: p, source })
                };
                let (user, net) = (open("user")?, open("net")?);
                setns(&net, CloneFlags::CLONE_NEWNET).map_err(sys("setns net"))?;
                Ok(user)
            })();
            drop(done_wr);
            let _ = nix::sys::wait::waitpid(child, None);
            result
        }
    }
}

/// In pid 1 of the new pid namespace: build the container's view of the world and exec its
/// init. Only returns an error.
fn become_init(cfg: &InitConfig, userns: Option<&OwnedFd>) -> Result<std::convert::Infallible, ContainerError> {
    // Its own cgroup is the root of its view (/proc/self/cgroup, cgroupfs mounts): the host's
    // tree stays out of reach. We joined the container's group before the fork.
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).map_err(sys("unshare cgroup"))?;
    // The first process forked after unshare(CLONE_NEWPID) is the namespace's pid 1, so the
    // network is configured from here (its `ip` children live and die inside), not before.
    match &cfg.veth_peer {
        Some(peer) => net::configure_inside(peer, &cfg.network)?,
        None => net::configure_inside("", &cfg.network)?,
    }
    detach_stdio()?;
    let root = &cfg.root;
    mount_root(root)?;
    mount_proc_and_sys(root)?;
    populate_dev(root)?;

    if cfg.boot == Boot::Systemd {
        systemd_mounts(root, cfg.userns.map(|u| u.0).unwrap_or(0), cfg.memory_mib)?;
    }

    pivot_into(root)?;
    sethostname(&cfg.hostname).map_err(sys("sethostname"))?;

    if let Some(user) = userns {
        // Last step while privileged: from here root inside is an unprivileged id outside.
        // The mount, uts, ipc and pid namespaces stay the host user namespace's (root inside
        // cannot mount or rename the host); the network namespace is the container's own.
        setns(user, CloneFlags::CLONE_NEWUSER).map_err(sys("setns user"))?;
        become_root_inside()?;
    }
    seal(cfg.userns.is_some())?;
    let argv: Vec<CString> = cfg.init.iter().map(|a| CString::new(a.as_str()).unwrap_or_default()).collect();
    let env = container_env();
    execve(&argv[0], &argv, &env).map_err(sys(format!("exec init {:?}", cfg.init)))
}

/// stdout goes to the console log like stderr; stdin is nothing; a session of its own.
fn detach_stdio() -> Result<(), ContainerError> {
    let null = fs::File::open("/dev/null").map_err(|source| ContainerError::Io { what: "/dev/null".into(), source })?;
    nix::unistd::dup2(null.as_raw_fd(), 0).map_err(sys("dup2 stdin"))?;
    nix::unistd::dup2(2, 1).map_err(sys("dup2 stdout"))?;
    nix::unistd::setsid().map_err(sys("setsid"))?;
    Ok(())
}

/// The container's root, bound onto itself (what `pivot_root` needs) in a mount namespace
/// that no longer propagates to the host's.
fn mount_root(root: &Path) -> Result<(), ContainerError> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).map_err(sys("make / private"))?;
    mount(Some(root), root, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).map_err(sys("bind root"))?;
    // The disk is nosuid on the host; inside, setuid programs (sudo, su, passwd) work.
    mount(None::<&str>, root, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NODEV, None::<&str>)
        .map_err(sys("allow setuid in the container's view of its root"))?;
    Ok(())
}

/// `/proc` (with LXCFS's view of the container's own resources) and `/sys`, the kernel's
/// knobs read-only.
fn mount_proc_and_sys(root: &Path) -> Result<(), ContainerError> {
    for d in ["proc", "sys", "dev"] {
        let _ = fs::create_dir_all(root.join(d));
    }
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), &root.join("proc"), Some("proc"), nodev, None::<&str>).map_err(sys("mount /proc"))?;
    // The container's view of itself (free, top, uptime, /proc/cpuinfo: the plan's memory
    // ceiling, CPUs and its own uptime) from LXCFS, where the host runs it (Debian's lxcfs,
    // mounted on /var/lib/lxcfs; it answers by the reader's cgroup).
    for f in LXCFS_PROC {
        let src = Path::new(LXCFS).join("proc").join(f);
        let dst = root.join("proc").join(f);
        if src.exists() && dst.exists() {
            mount(Some(&src), &dst, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(sys(format!("bind {}", src.display())))?;
        }
    }
    // The kernel's knobs stay the host's: /proc/sys and friends read-only.
    for p in ["proc/sys", "proc/sysrq-trigger", "proc/irq", "proc/bus"] {
        let p = root.join(p);
        if p.exists() {
            mount(Some(&p), &p, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(sys(format!("bind {}", p.display())))?;
            mount(None::<&str>, &p, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | nodev, None::<&str>)
                .map_err(sys(format!("ro {}", p.display())))?;
        }
    }
    mount(Some("sysfs"), &root.join("sys"), Some("sysfs"), nodev | MsFlags::MS_RDONLY, None::<&str>).map_err(sys("mount /sys"))?;
    Ok(())
}

/// A `/dev` of the container's own: a tmpfs with the harmless devices, its own devpts, shm
/// and the usual links.
fn populate_dev(root: &Path) -> Result<(), ContainerError> {
    let dev = root.join("dev");
    mount(Some("tmpfs"), &dev, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME, Some("mode=755,size=1024k"))
        .map_err(sys("mount /dev"))?;
    umask(Mode::empty());
    for (name, maj, min) in [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)] {
        mknod(&dev.join(name), SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(maj, min))
            .map_err(sys(format!("mknod /dev/{name}")))?;
    }
    umask(Mode::from_bits_truncate(0o022));
    for d in ["pts", "shm"] {
        fs::create_dir_all(dev.join(d)).map_err(|source| ContainerError::Io { what: format!("mkdir /dev/{d}"), source })?;
    }
    mount(
        Some("devpts"),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(sys("mount /dev/pts"))?;
    mount(Some("shm"), &dev.join("shm"), Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777,size=65536k"))
        .map_err(sys("mount /dev/shm"))?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        // syslog(3)'s socket: journald's, where the container runs it (sshd logs there);
        // made here because /dev is the host's tmpfs, which the container cannot write.
        ("log", "/run/systemd/journal/dev-log"),
    ] {
        let _ = std::os::unix::fs::symlink(target, dev.join(link));
    }
    Ok(())
}

/// Makes `root` the root and lets go of the host's.
fn pivot_into(root: &Path) -> Result<(), ContainerError> {
    chdir(root).map_err(sys("chdir root"))?;
    let _ = fs::create_dir(root.join(".oldroot"));
    pivot_root(".", ".oldroot").map_err(sys("pivot_root"))?;
    chdir("/").map_err(sys("chdir /"))?;
    umount2("/.oldroot", MntFlags::MNT_DETACH).map_err(sys("detach old root"))?;
    let _ = fs::remove_dir("/.oldroot");
    Ok(())
}

/// What systemd as pid 1 expects to find mounted, since it cannot mount anything itself here
/// (no CAP_SYS_ADMIN over the mount namespace, which stays the host user namespace's), as
/// podman and LXC provide it:
/// * `/run` and `/run/lock` (and `/tmp`) as tmpfs owned by the container's root;
/// * `/sys/fs/cgroup`: a cgroup2 hierarchy whose root, through the cgroup namespace taken at
///   the start of `become_init`, is the container's own delegated group
///   (`InstanceCgroup::tree_dir`, chowned to its root by `start`): systemd runs in its unified
///   mode and makes init.scope, system.slice, ... there; nothing above is visible. On a v1
///   host that group carries no controllers: the plan's limits stay on the v1 groups, which
///   systemd neither sees nor can change.
fn systemd_mounts(root: &Path, root_uid: u32, memory_mib: u64) -> Result<(), ContainerError> {
    let mib = memory_mib.max(64);
    let tmpfs = |dir: &str, flags: MsFlags, opts: String| -> Result<(), ContainerError> {
        let p = root.join(dir);
        fs::create_dir_all(&p).map_err(|source| ContainerError::Io { what: format!("mkdir {}", p.display()), source })?;
        mount(Some("tmpfs"), &p, Some("tmpfs"), flags, Some(opts.as_str())).map_err(sys(format!("mount /{dir}")))
    };
    let ns = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let owner = format!("uid={root_uid},gid={root_uid}");
    // systemd's own defaults: /run 20% of memory, /tmp half of it.
    tmpfs("run", ns, format!("mode=755,size={}k,{owner}", mib * 1024 / 5))?;
    tmpfs("run/lock", ns | MsFlags::MS_NOEXEC, format!("mode=1777,size=5120k,{owner}"))?;
    tmpfs("tmp", ns, format!("mode=1777,size={}k,{owner}", mib * 1024 / 2))?;
    let cg = root.join("sys/fs/cgroup");
    mount(Some("cgroup2"), &cg, Some("cgroup2"), ns | MsFlags::MS_NOEXEC, None::<&str>).map_err(sys("mount /sys/fs/cgroup (cgroup2)"))?;
    Ok(())
}

fn container_env() -> Vec<CString> {
    ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=linux", "container=vessel"]
        .iter()
        .map(|s| CString::new(*s).expect("no NUL"))
        .collect()
}

/// In a fresh user namespace with maps written: take uid/gid 0 of it.
fn become_root_inside() -> Result<(), ContainerError> {
    let root_u = nix::unistd::Uid::from_raw(0);
    let root_g = nix::unistd::Gid::from_raw(0);
    nix::unistd::setresgid(root_g, root_g, root_g).map_err(sys("setresgid"))?;
    nix::unistd::setresuid(root_u, root_u, root_u).map_err(sys("setresuid"))?;
    nix::unistd::setgroups(&[]).map_err(sys("setgroups"))?;
    Ok(())
}

/// The last steps before a container process execs: a session keyring of its own (not the
/// provisioner's), the seccomp filter (see `seccomp.rs`), the capability sets reduced to
/// [`KEPT_CAPS`]. `no_new_privs` only without a user namespace: there root inside is host
/// root, and setuid programs must not raise anything; with one, `sudo` and `su` must work.
fn seal(in_userns: bool) -> Result<(), ContainerError> {
    // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): a new anonymous session keyring.
    if unsafe { libc::syscall(libc::SYS_keyctl, 1, std::ptr::null::<libc::c_char>()) } < 0 {
        return Err(ContainerError::Sys { what: "own session keyring".into(), errno: nix::Error::last() });
    }
    super::seccomp::install(&super::seccomp::programs()?)?;
    drop_privileges(!in_userns)
}

/// Reduces every capability set to [`KEPT_CAPS`]; sets no_new_privs if asked.
pub fn drop_privileges(no_new_privs: bool) -> Result<(), ContainerError> {
    let keep: CapsHashSet = KEPT_CAPS.iter().copied().collect();
    let err = |e: caps::errors::CapsError| ContainerError::Init(format!("dropping capabilities: {e}"));
    for c in caps::all() {
        if !keep.contains(&c) {
            // Unknown-to-this-kernel capabilities fail with EINVAL; they are not held anyway.
            let _ = caps::drop(None, CapSet::Bounding, c);
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(err)?;
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new()).map_err(err)?;
    caps::set(None, CapSet::Effective, &keep).map_err(err)?;
    caps::set(None, CapSet::Permitted, &keep).map_err(err)?;
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) takes no pointers.
    if no_new_privs && unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(ContainerError::Sys { what: "no_new_privs".into(), errno: nix::Error::last() });
    }
    Ok(())
}

/// `provisioner ct-exec`: run `argv` inside the container whose init is `pid`.
pub fn ct_exec_main(pid: u32, cgroup_join: &[PathBuf], oom_score_adj: i32, argv: &[String]) -> Result<i32, ContainerError> {
    if argv.is_empty() {
        return Err(ContainerError::Init("nothing to run".into()));
    }
    let open = |ns: &str| -> Result<OwnedFd, ContainerError> {
        let p = format!("/proc/{pid}/ns/{ns}");
        fs::File::open(&p).map(OwnedFd::from).map_err(|source| ContainerError::Io { what: p, source })
    };
    let nss = [
        (open("ipc")?, CloneFlags::CLONE_NEWIPC),
        (open("uts")?, CloneFlags::CLONE_NEWUTS),
        (open("net")?, CloneFlags::CLONE_NEWNET),
        (open("pid")?, CloneFlags::CLONE_NEWPID),
        (open("cgroup")?, CloneFlags::CLONE_NEWCGROUP),
    ];
    let mnt = open("mnt")?;
    let same_user = fs::read_link(format!("/proc/{pid}/ns/user")).ok() == fs::read_link("/proc/self/ns/user").ok();
    let user = if same_user { None } else { Some(open("user")?) };
    crate::cgroup::join_self(cgroup_join)?;
    // The container's OOM policy (see `oom_score_adj`), set while we may still lower it.
    fs::write("/proc/self/oom_score_adj", oom_score_adj.to_string())
        .map_err(|source| ContainerError::Io { what: "oom_score_adj".into(), source })?;
    for (fd, kind) in &nss {
        setns(fd, *kind).map_err(sys(format!("setns {kind:?}")))?;
    }
    let args: Vec<CString> = argv.iter().map(|a| CString::new(a.as_str()).unwrap_or_default()).collect();
    let env = container_env();
    // SAFETY: single-threaded process (fresh exec), see the module docs.
    match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            let r = (|| -> Result<std::convert::Infallible, ContainerError> {
                setns(&mnt, CloneFlags::CLONE_NEWNS).map_err(sys("setns mnt"))?;
                chdir("/").map_err(sys("chdir /"))?;
                // Its own user namespace, if it has one: joined last, like its init did.
                if let Some(user) = &user {
                    setns(user, CloneFlags::CLONE_NEWUSER).map_err(sys("setns user"))?;
                    become_root_inside()?;
                }
                seal(user.is_some())?;
                // execvpe is not in nix for all targets: search PATH ourselves.
                let prog = resolve(&argv[0]);
                execve(&prog, &args, &env).map_err(sys(format!("exec {}", argv[0])))
            })();
            eprintln!("ct-exec: {}", r.unwrap_err());
            // SAFETY: leaving the forked child without the parent's atexit handlers.
            unsafe { libc::_exit(127) };
        }
        ForkResult::Parent { child } => {
            use nix::sys::wait::{waitpid, WaitStatus};
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                    Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                    Ok(_) => continue,
                    Err(nix::Error::EINTR) => continue,
                    Err(e) => return Err(sys("waitpid")(e)),
                }
            }
        }
    }
}

fn resolve(prog: &str) -> CString {
    if !prog.contains('/') {
        for dir in ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
            let p = format!("{dir}/{prog}");
            if Path::new(&p).exists() {
                return CString::new(p).unwrap_or_default();
            }
        }
    }
    CString::new(prog).unwrap_or_default()
}
