//! A KVM machine's disk: a raw sparse image of the plan's size (`disk.raw` in its directory),
//! served to the guest by virtio-blk.
//!
//! A blank disk is partitioned (MBR, one Linux partition from 1 MiB to the end, by `sfdisk`)
//! and formatted ext4 (`mke2fs`, at the partition's offset), so a kernel can mount
//! `root=/dev/vda1` from it. Growing (a resize) only ever makes the file larger.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use thiserror::Error;

/// Where the one partition starts (sector 2048).
pub const PARTITION_OFFSET: u64 = 1 << 20;

#[derive(Debug, Error)]
pub enum DiskError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{tool} failed on {path}: {stderr}")]
    Tool { tool: &'static str, path: PathBuf, stderr: String },
    #[error("cannot run {tool} (install {package}): {source}")]
    Spawn { tool: &'static str, package: &'static str, source: std::io::Error },
    #[error("disk {path} is {have} bytes; it is never shrunk to {want}")]
    Shrink { path: PathBuf, have: u64, want: u64 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DiskError + '_ {
    move |source| DiskError::Io { path: path.into(), source }
}

fn run(tool: &'static str, package: &'static str, args: &[&str], stdin: Option<&str>, path: &Path) -> Result<(), DiskError> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| DiskError::Spawn { tool, package, source })?;
    if let (Some(text), Some(mut i)) = (stdin, child.stdin.take()) {
        i.write_all(text.as_bytes()).map_err(io(path))?;
    }
    let out = child.wait_with_output().map_err(io(path))?;
    if !out.status.success() {
        return Err(DiskError::Tool { tool, path: path.into(), stderr: String::from_utf8_lossy(&out.stderr).trim().into() });
    }
    Ok(())
}

/// Makes `path` a sparse disk of `bytes` with one ext4 partition filling it (replacing
/// whatever was there). `label` names the filesystem.
pub fn make_ext4(path: &Path, bytes: u64, label: &str) -> Result<(), DiskError> {
    let _ = std::fs::remove_file(path);
    let f = std::fs::OpenOptions::new().create_new(true).write(true).open(path).map_err(io(path))?;
    f.set_len(bytes).map_err(io(path))?;
    drop(f);
    let p = path.to_string_lossy();
    run("sfdisk", "fdisk", &["--quiet", "--no-reread", "--no-tell-kernel", &p], Some("label: dos\nstart=2048, type=83\n"), path)?;
    let kib = (bytes - PARTITION_OFFSET) / 1024;
    run(
        "mke2fs",
        "e2fsprogs",
        &["-q", "-F", "-t", "ext4", "-L", label, "-E", &format!("offset={PARTITION_OFFSET},lazy_itable_init=1"), &p, &format!("{kib}k")],
        None,
        path,
    )
}

/// Makes the file at least `bytes` long (never shorter).
pub fn grow(path: &Path, bytes: u64) -> Result<(), DiskError> {
    let f = std::fs::OpenOptions::new().write(true).open(path).map_err(io(path))?;
    let have = f.metadata().map_err(io(path))?.len();
    if have > bytes {
        return Err(DiskError::Shrink { path: path.into(), have, want: bytes });
    }
    f.set_len(bytes).map_err(io(path))
}

/// Grows a disk [`make_ext4`] made to `bytes`, and its partition and filesystem with it, while
/// no machine uses it: the partition is extended to the new end (`sfdisk -N 1`), the
/// filesystem checked (`e2fsck -fy`) and grown (`resize2fs`), both at the partition's offset
/// in the file (e2fsprogs' `?offset=`; no loop device). Never shrinks.
pub fn grow_ext4(path: &Path, bytes: u64) -> Result<(), DiskError> {
    grow(path, bytes)?;
    let p = path.to_string_lossy();
    run("sfdisk", "fdisk", &["--quiet", "--no-reread", "--no-tell-kernel", "-N", "1", &p], Some(", +\n"), path)?;
    let fs = format!("{p}?offset={PARTITION_OFFSET}");
    // 0: clean, 1: errors corrected; anything else is a failure.
    let out = Command::new("e2fsck").args(["-fy", &fs]).stdin(Stdio::null()).output().map_err(|source| DiskError::Spawn {
        tool: "e2fsck",
        package: "e2fsprogs",
        source,
    })?;
    if !matches!(out.status.code(), Some(0 | 1)) {
        return Err(DiskError::Tool { tool: "e2fsck", path: path.into(), stderr: String::from_utf8_lossy(&out.stdout).trim().into() });
    }
    let kib = (bytes - PARTITION_OFFSET) / 1024;
    run("resize2fs", "e2fsprogs", &[&fs, &format!("{kib}K")], None, path)?;
    // resize2fs sizes a regular file to the filesystem's end without the offset, cutting the
    // (new, empty) last MiB the partition table still counts: the disk gets it back.
    let f = std::fs::OpenOptions::new().write(true).open(path).map_err(io(path))?;
    f.set_len(bytes).map_err(io(path))
}

/// Blocks of the ext4 filesystem at `offset` in `path` (its size is this times its block size).
pub fn ext4_size(path: &Path, offset: u64) -> Result<u64, DiskError> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).map_err(io(path))?;
    let mut sb = [0u8; 1024];
    f.read_exact_at(&mut sb, offset + 1024).map_err(io(path))?;
    if u16::from_le_bytes([sb[56], sb[57]]) != 0xef53 {
        return Err(DiskError::Io {
            path: path.into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no ext4 superblock"),
        });
    }
    let blocks = u32::from_le_bytes(sb[4..8].try_into().expect("4 bytes")) as u64
        | (u32::from_le_bytes(sb[0x150..0x154].try_into().expect("4 bytes")) as u64) << 32;
    let block_size = 1024u64 << u32::from_le_bytes(sb[24..28].try_into().expect("4 bytes"));
    Ok(blocks * block_size)
}

/// What an ext4 superblock says about its mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ext4Mounts {
    /// `s_mnt_count`: mounts since the last check.
    pub count: u16,
    /// `s_mtime`: last mount time (Unix seconds).
    pub last_mount: u32,
    /// `s_last_mounted`: the directory it was last mounted on.
    pub last_mounted_on: String,
}

/// Reads the mount facts of the ext4 filesystem at `offset` in `path`.
pub fn ext4_mounts(path: &Path, offset: u64) -> Result<Ext4Mounts, DiskError> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).map_err(io(path))?;
    let mut sb = [0u8; 1024];
    f.read_exact_at(&mut sb, offset + 1024).map_err(io(path))?;
    if u16::from_le_bytes([sb[56], sb[57]]) != 0xef53 {
        return Err(DiskError::Io {
            path: path.into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no ext4 superblock"),
        });
    }
    let name = &sb[136..200];
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    Ok(Ext4Mounts {
        count: u16::from_le_bytes([sb[52], sb[53]]),
        last_mount: u32::from_le_bytes(sb[44..48].try_into().expect("4 bytes")),
        last_mounted_on: String::from_utf8_lossy(&name[..end]).into(),
    })
}

/// Files the root password reset reads from a guest's filesystem are small; a bigger
/// `/etc/shadow` (a tenant's doing) is not read: root's line is then the only one written.
const SHADOW_MAX: u64 = 1 << 20;

/// debugfs on the ext4 filesystem at `offset` in `image`, with `args`; its stdout.
fn debugfs(image: &Path, offset: u64, args: &[&str]) -> Result<String, DiskError> {
    let target = format!("{}?offset={offset}", image.display());
    let out = Command::new("debugfs").args(args).arg(&target).stdin(Stdio::null()).output().map_err(|source| DiskError::Spawn {
        tool: "debugfs",
        package: "e2fsprogs",
        source,
    })?;
    if !out.status.success() {
        return Err(DiskError::Tool { tool: "debugfs", path: image.into(), stderr: String::from_utf8_lossy(&out.stderr).trim().into() });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Sets root's password hash in `/etc/shadow` of the ext4 filesystem at `offset` in a
/// **stopped** machine's disk image (`shadow_with(current, hash)` makes the new file).
///
/// Done in user space with e2fsprogs' `debugfs`, inside the image only: the host never mounts
/// a filesystem its tenant wrote (a crafted one could attack the host's kernel), and no path
/// the tenant made (a symlink at `/etc/shadow` or `/etc`) can lead outside the image. The old
/// entry is removed (whatever it was) and a fresh regular file written, root-owned, 0640,
/// group kept from a regular old file; the result is read back and compared. A journal left
/// by a machine that was killed is replayed first (`e2fsck -E journal_only`).
pub fn set_root_password(image: &Path, offset: u64, hash: &str, shadow_with: impl Fn(&str, &str) -> String) -> Result<(), DiskError> {
    use std::os::unix::fs::FileExt;
    let bad =
        |why: &str| DiskError::Io { path: image.into(), source: std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string()) };
    let f = std::fs::File::open(image).map_err(io(image))?;
    let mut sb = [0u8; 1024];
    f.read_exact_at(&mut sb, offset + 1024).map_err(io(image))?;
    if u16::from_le_bytes([sb[56], sb[57]]) != 0xef53 {
        return Err(bad("no ext4 filesystem on the disk's first partition"));
    }
    // s_feature_incompat & RECOVER: the journal has not been replayed.
    if u32::from_le_bytes(sb[96..100].try_into().expect("4 bytes")) & 0x4 != 0 {
        let target = format!("{}?offset={offset}", image.display());
        let out = Command::new("e2fsck")
            .args(["-y", "-E", "journal_only", &target])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| DiskError::Spawn { tool: "e2fsck", package: "e2fsprogs", source })?;
        // 0: clean, 1: corrected (the journal replayed).
        if !matches!(out.status.code(), Some(0) | Some(1)) {
            return Err(DiskError::Tool { tool: "e2fsck", path: image.into(), stderr: String::from_utf8_lossy(&out.stderr).trim().into() });
        }
    }
    // What is there now: a regular file small enough to keep its other lines, or not.
    let stat = debugfs(image, offset, &["-R", "stat /etc/shadow"]).unwrap_or_default();
    let field = |name: &str| stat.split(name).nth(1).and_then(|r| r.split_whitespace().next()).map(str::to_string);
    let regular = field("Type:").as_deref() == Some("regular");
    let size: u64 = field("Size:").and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    let gid: u32 = if regular { field("Group:").and_then(|g| g.parse().ok()).unwrap_or(0) } else { 0 };
    let current = if regular && size <= SHADOW_MAX { debugfs(image, offset, &["-R", "cat /etc/shadow"])? } else { String::new() };
    let new = shadow_with(&current, hash);

    let tmp = tempfile_in_dir(image)?;
    std::fs::write(&tmp, new.as_bytes()).map_err(io(&tmp))?;
    let cmds = format!(
        "mkdir /etc\nrm /etc/shadow\nwrite {} /etc/shadow\nsif /etc/shadow mode 0100640\nsif /etc/shadow uid 0\nsif /etc/shadow gid {gid}\n",
        tmp.display()
    );
    let cmd_file = tmp.with_extension("cmds");
    std::fs::write(&cmd_file, cmds).map_err(io(&cmd_file))?;
    let written = debugfs(image, offset, &["-w", "-f", &cmd_file.to_string_lossy()]);
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_file(&cmd_file);
    written?;
    // debugfs goes on after a failed command: the file read back is the proof.
    let back = debugfs(image, offset, &["-R", "cat /etc/shadow"])?;
    if back != new {
        return Err(bad("/etc/shadow did not take the new root password (read back differs)"));
    }
    Ok(())
}

/// A private scratch file beside the image (the machine's 0700 directory).
fn tempfile_in_dir(image: &Path) -> Result<PathBuf, DiskError> {
    let dir = image.parent().unwrap_or(Path::new("/tmp"));
    let p = dir.join(format!(".shadow-{}.new", std::process::id()));
    let _ = std::fs::remove_file(&p);
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_disk_is_sparse_partitioned_ext4_of_the_size_asked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk.raw");
        make_ext4(&p, 1 << 30, "vessel").unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.len(), 1 << 30);
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() * 512 < 64 << 20, "not sparse: {} bytes used", meta.blocks() * 512);
        // The MBR: boot signature, one Linux partition from sector 2048 to the end.
        let mbr = std::fs::read(&p).map(|b| b[..512].to_vec()).unwrap();
        assert_eq!(&mbr[510..], &[0x55, 0xaa]);
        let e = &mbr[446..462];
        assert_eq!(e[4], 0x83);
        assert_eq!(u32::from_le_bytes(e[8..12].try_into().unwrap()), 2048);
        assert_eq!(u32::from_le_bytes(e[12..16].try_into().unwrap()) as u64, (1u64 << 30) / 512 - 2048);
        let m = ext4_mounts(&p, PARTITION_OFFSET).unwrap();
        assert_eq!((m.count, m.last_mount), (0, 0), "{m:?}");
        grow(&p, 2 << 30).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 2 << 30);
        assert!(matches!(grow(&p, 1 << 30), Err(DiskError::Shrink { .. })));
    }

    #[test]
    fn growing_a_disk_grows_its_partition_and_filesystem_and_never_shrinks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk.raw");
        make_ext4(&p, 1 << 30, "vessel").unwrap();
        assert_eq!(ext4_size(&p, PARTITION_OFFSET).unwrap(), (1 << 30) - PARTITION_OFFSET);
        grow_ext4(&p, 3 << 30).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 3 << 30);
        let mbr = std::fs::read(&p).map(|b| b[..512].to_vec()).unwrap();
        let e = &mbr[446..462];
        assert_eq!(u32::from_le_bytes(e[8..12].try_into().unwrap()), 2048, "the partition still starts at 1 MiB");
        assert_eq!(u32::from_le_bytes(e[12..16].try_into().unwrap()) as u64, (3u64 << 30) / 512 - 2048, "and ends at the new end");
        assert_eq!(ext4_size(&p, PARTITION_OFFSET).unwrap(), (3 << 30) - PARTITION_OFFSET, "the filesystem fills it");
        assert!(matches!(grow_ext4(&p, 2 << 30), Err(DiskError::Shrink { .. })));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 3 << 30, "a refused shrink changes nothing");
    }
}
