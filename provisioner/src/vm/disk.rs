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
    let out = Command::new("e2fsck").args(["-fy", &fs]).stdin(Stdio::null()).output().map_err(|source| DiskError::Spawn { tool: "e2fsck", package: "e2fsprogs", source })?;
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
        return Err(DiskError::Io { path: path.into(), source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no ext4 superblock") });
    }
    let blocks = u32::from_le_bytes(sb[4..8].try_into().expect("4 bytes")) as u64 | (u32::from_le_bytes(sb[0x150..0x154].try_into().expect("4 bytes")) as u64) << 32;
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
        return Err(DiskError::Io { path: path.into(), source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no ext4 superblock") });
    }
    let name = &sb[136..200];
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    Ok(Ext4Mounts {
        count: u16::from_le_bytes([sb[52], sb[53]]),
        last_mount: u32::from_le_bytes(sb[44..48].try_into().expect("4 bytes")),
        last_mounted_on: String::from_utf8_lossy(&name[..end]).into(),
    })
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
