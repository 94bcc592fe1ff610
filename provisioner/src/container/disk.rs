//! A container's disk: a sparse ext4 image of the plan's size on a loop device, mounted on
//! the instance's root directory (thin provisioning like OpenVZ's ploop: blocks are only
//! allocated on the host as the container writes them, and a full disk stays inside).
//!
//! Every step is idempotent and finds its previous result in the kernel (the loop device by
//! its backing file, the mount in mountinfo), so a crash between steps is finished by
//! running the step again.

use super::{run, ContainerError};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const GIB: u64 = 1024 * 1024 * 1024;

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> ContainerError {
    let what = format!("{what} {}", path.display());
    move |source| ContainerError::Io { what, source }
}

/// Copies only the data extents of a sparse file (SEEK_DATA/SEEK_HOLE + copy_file_range),
/// so the copy is as sparse as the source and costs what the source holds, not its size.
pub fn copy_sparse(src: &Path, dst: &Path) -> Result<(), ContainerError> {
    use std::os::fd::AsRawFd;
    let fin = fs::File::open(src).map_err(io("open", src))?;
    let len = fin.metadata().map_err(io("stat", src))?.len() as i64;
    let fout = fs::OpenOptions::new().create(true).write(true).truncate(true).open(dst).map_err(io("create", dst))?;
    fout.set_len(len as u64).map_err(io("size", dst))?;
    let (fi, fo) = (fin.as_raw_fd(), fout.as_raw_fd());
    let mut pos: i64 = 0;
    while pos < len {
        // SAFETY: lseek on a descriptor we own; ENXIO (no more data) ends the loop.
        let data = unsafe { libc::lseek(fi, pos, libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fi, data, libc::SEEK_HOLE) }.min(len);
        let (mut off_in, mut off_out) = (data, data);
        while off_in < hole {
            // SAFETY: both descriptors are open regular files we own; the offsets are ours.
            let n = unsafe { libc::copy_file_range(fi, &mut off_in, fo, &mut off_out, (hole - off_in) as usize, 0) };
            if n <= 0 {
                return Err(ContainerError::Io {
                    what: format!("copy {} → {}", src.display(), dst.display()),
                    source: std::io::Error::last_os_error(),
                });
            }
        }
        pos = hole;
    }
    fout.sync_all().map_err(io("sync", dst))?;
    Ok(())
}

/// A ready-made disk per (template, size): a sparse ext4 image holding the template's root,
/// built once under `cache` (mkfs, loop, mount, copy, unmount; through a temporary name and a
/// lock), so a create is one sparse copy instead of mkfs + a file-by-file copy — the way
/// OpenVZ keeps ploop template caches.
pub fn golden_image(cache: &Path, key: &str, gib: u64, rootfs: &Path) -> Result<PathBuf, ContainerError> {
    let dir = cache.join("images");
    let image = dir.join(format!("{key}-{gib}G.img"));
    if image.exists() {
        return Ok(image);
    }
    fs::create_dir_all(&dir).map_err(io("mkdir", &dir))?;
    let lock = fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(".lock")).map_err(io("lock", &dir))?;
    // SAFETY: flock(2) on a descriptor we own; released when `lock` drops.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
        return Err(ContainerError::Io { what: "lock image cache".into(), source: std::io::Error::last_os_error() });
    }
    if image.exists() {
        return Ok(image);
    }
    let tmp = dir.join(format!(".{key}-{gib}G.tmp"));
    let mnt = dir.join(format!(".{key}-{gib}G.mnt"));
    // Leftovers of a build that crashed.
    unmount(&mnt)?;
    detach_all(&tmp)?;
    let _ = fs::remove_file(&tmp);
    let f = fs::File::create(&tmp).map_err(io("create", &tmp))?;
    f.set_len(gib * GIB).map_err(io("size", &tmp))?;
    drop(f);
    run(Command::new("mkfs.ext4").args(["-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"]).arg(&tmp))?;
    let dev = attach(&tmp)?;
    fs::create_dir_all(&mnt).map_err(io("mkdir", &mnt))?;
    // Mounted only inside a private mount namespace of a short-lived `unshare`: a container
    // starting meanwhile copies the host's mount table, and a copy of this mount would keep
    // the filesystem alive (and unflushed) after our unmount. Here the last reference goes
    // with the helper, so the image is complete when it exits.
    let mut src = rootfs.as_os_str().to_owned();
    src.push("/.");
    let r = run(Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount -t ext4 \"$1\" \"$2\" && cp -a \"$3\" \"$2\" && rm -f \"$2/.vessel-template\" && umount \"$2\"")
        .arg("sh")
        .arg(&dev)
        .arg(&mnt)
        .arg(src));
    detach_all(&tmp)?;
    let _ = fs::remove_dir(&mnt);
    r?;
    fs::rename(&tmp, &image).map_err(io("rename", &image))?;
    Ok(image)
}

/// The loop devices backed by `image` (normally one).
pub fn loops_of(image: &Path) -> Vec<String> {
    let out = Command::new("losetup").args(["-n", "-O", "NAME", "-j"]).arg(image).output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Attaches `image` to a loop device, or returns the one it is already on.
pub fn attach(image: &Path) -> Result<String, ContainerError> {
    if let Some(dev) = loops_of(image).into_iter().next() {
        return Ok(dev);
    }
    let out = run(Command::new("losetup").args(["--find", "--show"]).arg(image))?;
    Ok(out.trim().to_string())
}

/// Detaches every loop device of `image`. A container starting at the same moment may hold a
/// copy of the mount in its new mount namespace for a few milliseconds (until its pivot drops
/// it); the kernel then detaches lazily, so wait for the device to be really gone.
pub fn detach_all(image: &Path) -> Result<(), ContainerError> {
    for dev in loops_of(image) {
        run(Command::new("losetup").arg("-d").arg(&dev))?;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !loops_of(image).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(())
}

/// Is something mounted exactly at `dir` (in our mount namespace)?
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = dir.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4).map(unescape).as_deref() == Some(&*want))
}

/// Mount points at or under `prefix` (for the orphan sweep), deepest first.
pub fn mounts_under(prefix: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> =
        info.lines().filter_map(|l| l.split(' ').nth(4).map(unescape)).map(PathBuf::from).filter(|p| p.starts_with(prefix)).collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

pub fn mount(dev: &str, dir: &Path) -> Result<(), ContainerError> {
    if is_mounted(dir) {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io("mkdir", dir))?;
    use nix::mount::MsFlags;
    nix::mount::mount(
        Some(dev),
        dir,
        Some("ext4"),
        // The host never runs or opens anything a container made: a setuid file or a
        // device node on the disk is inert here (the container's own view re-allows setuid).
        MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
        None::<&str>,
    )
    .map_err(|e| ContainerError::Sys { what: format!("mount {dev} on {}", dir.display()), errno: e })
}

/// Unmounts `dir` and anything below it; lazily if a process still holds it.
pub fn unmount(dir: &Path) -> Result<(), ContainerError> {
    use nix::mount::{umount2, MntFlags};
    for m in mounts_under(dir) {
        if umount2(&m, MntFlags::empty()).is_err() {
            umount2(&m, MntFlags::MNT_DETACH).map_err(|e| ContainerError::Sys { what: format!("umount {}", m.display()), errno: e })?;
        }
    }
    Ok(())
}

/// Grows the image and its loop device to `gib` (never shrinks: shrinking a customer's disk
/// is refused before we get here). The filesystem is grown by [`grow_fs`].
pub fn grow(image: &Path, dev: &str, gib: u64) -> Result<(), ContainerError> {
    let f = fs::OpenOptions::new().write(true).open(image).map_err(io("open", image))?;
    let cur = f.metadata().map_err(io("stat", image))?.len();
    if cur >= gib * GIB {
        return Ok(());
    }
    f.set_len(gib * GIB).map_err(io("grow", image))?;
    drop(f);
    run(Command::new("losetup").arg("-c").arg(dev))?;
    Ok(())
}

/// Grows the filesystem on `dev` to the device's size: online if mounted (where the kernel
/// allows it), offline otherwise (after the mandatory e2fsck).
pub fn grow_fs(dev: &str, mounted: bool) -> Result<(), ContainerError> {
    if !mounted {
        wait_unused(dev);
        // e2fsck exits 1 when it fixed something, which is fine.
        let st = Command::new("e2fsck")
            .args(["-f", "-y"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .arg(dev)
            .stdin(std::process::Stdio::null())
            .status();
        if !matches!(st.map(|s| s.code()), Ok(Some(0 | 1))) {
            return Err(ContainerError::Init(format!("e2fsck {dev} failed before resize")));
        }
    }
    run(Command::new("resize2fs").arg(dev))?;
    Ok(())
}

/// Waits (up to 5 s) until no mount anywhere holds `dev`: a container starting at the moment
/// of our unmount holds a copy of the mount in its new mount namespace until its pivot drops
/// it, and e2fsck refuses a device in use. (An exclusive open fails while it is mounted.)
fn wait_unused(dev: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while fs::OpenOptions::new().read(true).custom_flags(libc::O_EXCL).open(dev).is_err() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Replaces the contents of the mounted root with a copy of the template's root.
pub fn copy_rootfs(template_root: &Path, root: &Path) -> Result<(), ContainerError> {
    for e in fs::read_dir(root).map_err(io("read", root))?.flatten() {
        if e.file_name() == "lost+found" {
            continue;
        }
        let p = e.path();
        let r = if e.file_type().map(|t| t.is_dir()).unwrap_or(false) { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
        r.map_err(io("remove", &p))?;
    }
    let mut src = template_root.as_os_str().to_owned();
    src.push("/.");
    run(Command::new("cp").arg("-a").arg(src).arg(root))?;
    let _ = fs::remove_file(root.join(".vessel-template"));
    Ok(())
}

/// (used, total) bytes of the filesystem mounted at `dir`.
pub fn usage(dir: &Path) -> Option<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    let frag = s.fragment_size() as u64;
    let total = s.blocks() as u64 * frag;
    let free = s.blocks_free() as u64 * frag;
    Some((total.saturating_sub(free), total))
}

/// Moves every file's owner and group into `[base, base + count)` (ids already there stay),
/// keeping setuid/setgid bits that chown clears, so the container's root (id 0 inside, `base`
/// outside) owns its files.
pub fn shift_ids(root: &Path, base: u32, count: u32) -> Result<(), ContainerError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let shift = |id: u32| {
        if id >= base && id < base + count {
            id
        } else {
            base + id % count
        }
    };
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = fs::symlink_metadata(&p).map_err(io("stat", &p))?;
        std::os::unix::fs::lchown(&p, Some(shift(meta.uid())), Some(shift(meta.gid()))).map_err(io("chown", &p))?;
        if !meta.file_type().is_symlink() && meta.mode() & 0o6000 != 0 {
            fs::set_permissions(&p, fs::Permissions::from_mode(meta.mode() & 0o7777)).map_err(io("chmod", &p))?;
        }
        if meta.is_dir() {
            for e in fs::read_dir(&p).map_err(io("read", &p))? {
                stack.push(e.map_err(io("read", &p))?.path());
            }
        }
    }
    Ok(())
}
