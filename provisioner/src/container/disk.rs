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

/// Creates the sparse image and its filesystem, unless done before (marker `done`).
pub fn make_image(image: &Path, done: &Path, gib: u64) -> Result<(), ContainerError> {
    if done.exists() {
        return Ok(());
    }
    let f = fs::OpenOptions::new().create(true).write(true).truncate(true).open(image).map_err(io("create", image))?;
    f.set_len(gib * GIB).map_err(io("size", image))?;
    drop(f);
    super::crash_point("create", "mkfs");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"])
        .arg(image))?;
    fs::write(done, b"").map_err(io("write", done))?;
    Ok(())
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

pub fn detach_all(image: &Path) -> Result<(), ContainerError> {
    for dev in loops_of(image) {
        run(Command::new("losetup").arg("-d").arg(&dev))?;
    }
    Ok(())
}

/// Is something mounted exactly at `dir` (in our mount namespace)?
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return false };
    let want = dir.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4).map(unescape).as_deref() == Some(&*want))
}

/// Mount points at or under `prefix` (for the orphan sweep), deepest first.
pub fn mounts_under(prefix: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(prefix))
        .collect();
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
    nix::mount::mount(Some(dev), dir, Some("ext4"), MsFlags::MS_NODEV, None::<&str>)
        .map_err(|e| ContainerError::Sys { what: format!("mount {dev} on {}", dir.display()), errno: e })
}

/// Unmounts `dir` and anything below it; lazily if a process still holds it.
pub fn unmount(dir: &Path) -> Result<(), ContainerError> {
    use nix::mount::{umount2, MntFlags};
    for m in mounts_under(dir) {
        if umount2(&m, MntFlags::empty()).is_err() {
            umount2(&m, MntFlags::MNT_DETACH)
                .map_err(|e| ContainerError::Sys { what: format!("umount {}", m.display()), errno: e })?;
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
        // e2fsck exits 1 when it fixed something, which is fine.
        let st = Command::new("e2fsck").args(["-f", "-y"]).stdout(std::process::Stdio::null()).arg(dev).stdin(std::process::Stdio::null()).status();
        if !matches!(st.map(|s| s.code()), Ok(Some(0 | 1))) {
            return Err(ContainerError::Init(format!("e2fsck {dev} failed before resize")));
        }
    }
    run(Command::new("resize2fs").arg(dev))?;
    Ok(())
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
