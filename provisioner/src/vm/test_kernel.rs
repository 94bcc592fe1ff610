//! The project's test kernel as a KVM OS template: Linux from Debian's `linux-source`, built by
//! `scripts/build-test-kernel` (cached outside the repository) for the nested PVM hosts this
//! project is tested on (see ../shared/design/kvm-on-pvm.md). It has no user space: it boots
//! from its PVH entry, mounts the machine's disk (virtio-blk, partitioned ext4 of the plan's
//! size) as its root, configures virtio-net from the `ip=` word the runtime appends, and then
//! stays up idle answering ARP and ping. The tests, the end-to-end world and `./vessel up`'s
//! demo all offer it under [`TEMPLATE`].

use super::runtime::{DiskSource, ImageSpec};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The template's name: what it is, not what it pretends to be (in `vessel_core::templates`).
pub const TEMPLATE: &str = "linux-test-kernel";
/// How the panel shows it.
pub const DISPLAY_NAME: &str = "Linux test kernel (no user space: mounts its disk, answers ping)";

/// CPU features the PVM hosts' emulation of guest kernel mode lacks, turned off on the
/// kernel's command line (masking them in CPUID did not reach the guest reliably there).
pub const PVM_FLAGS: &str = "clearcpuid=xsave,smap,fsgsbase,popcnt,avx,avx2,bmi1,bmi2,movbe,clflushopt,clwb,erms,fsrm,rdpid,cx16";

/// `scripts/build-test-kernel` of the source tree this crate was built from.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/build-test-kernel");

/// The kernel's command line (the runtime adds `ip=` and the virtio devices). A panic reboots
/// the machine, as a customer's machine should.
pub fn cmdline() -> String {
    format!("console=ttyS0 {PVM_FLAGS} root=/dev/vda1 rootfstype=ext4 rw panic=-1")
}

/// How the template boots: the ELF `vmlinux` through PVH, a blank ext4 disk of the plan's
/// size, the kernel's own IP autoconfiguration.
pub fn image_spec(vmlinux: &Path) -> ImageSpec {
    ImageSpec {
        kernel: vmlinux.to_path_buf(),
        cmdline: cmdline(),
        initrd: None,
        smp_boot: Default::default(),
        disk: DiskSource::BlankExt4,
        kernel_ip: true,
        cloud_init: false,
        virtio_cmdline: true,
    }
}

/// Writes `<images_dir>/linux-test-kernel/image.json` for `vmlinux` (an absolute path).
pub fn install(images_dir: &Path, vmlinux: &Path) -> std::io::Result<()> {
    let dir = images_dir.join(TEMPLATE);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("image.json"), serde_json::to_vec_pretty(&image_spec(vmlinux)).expect("image specs serialise"))
}

/// Builds the test kernel with `script` (or finds it cached) and returns its `vmlinux`. The
/// first build takes minutes; later calls only look in the cache.
pub fn build(script: &Path) -> std::io::Result<PathBuf> {
    let out = Command::new(script).stdin(Stdio::null()).stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!("{} failed ({})", script.display(), out.status)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let path = text.lines().last().map(str::trim).unwrap_or_default();
    if path.is_empty() || !Path::new(path).is_file() {
        return Err(std::io::Error::other(format!("{} printed no kernel path", script.display())));
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_one_vessel_knows_for_kvm() {
        let known = vessel_core::templates::known(TEMPLATE).expect("in vessel_core::templates::KNOWN");
        assert!(known.for_kvm && !known.for_containers);
        assert_eq!(known.display_name, DISPLAY_NAME);
    }

    #[test]
    fn the_template_boots_its_kernel_on_a_blank_ext4_disk_with_kernel_ip() {
        let dir = tempfile::tempdir().unwrap();
        install(dir.path(), Path::new("/cache/vmlinux")).unwrap();
        let spec: ImageSpec = serde_json::from_slice(&std::fs::read(dir.path().join(TEMPLATE).join("image.json")).unwrap()).unwrap();
        assert_eq!(spec.kernel, Path::new("/cache/vmlinux"));
        assert_eq!(spec.disk, DiskSource::BlankExt4);
        assert!(spec.kernel_ip);
        assert!(spec.cmdline.contains("root=/dev/vda1") && spec.cmdline.contains("clearcpuid="), "{}", spec.cmdline);
    }
}
