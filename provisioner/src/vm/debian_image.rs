//! The Debian 12 OS image for customers' KVM machines (`debian-12-kvm`): built from Debian's
//! packages by `provisioner/scripts/build-image-debian-12-kvm.sh` (mmdebstrap; cached outside
//! the repository, keyed by the script's hash): a partitioned raw disk with Debian's cloud
//! kernel, its initramfs, cloud-init and OpenSSH, and that kernel and initramfs extracted for
//! the VMM to boot directly. A machine's disk is a sparse copy grown to its plan's size
//! ([`super::runtime::DiskSource::Image`]); cloud-init reads the machine's NoCloud seed
//! ([`super::seed`]) on first boot and grows the root partition into the disk.
//!
//! A stock kernel cannot run its user space on the nested PVM hosts the tests run on (see
//! ../shared/design/kvm-on-pvm.md): there the image is proven under QEMU's software emulation
//! (`provisioner/scripts/prove-debian-image.sh`); on hosts with hardware virtualization our
//! VMM boots it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The template's name (in `vessel_core::templates::KNOWN`).
pub const TEMPLATE: &str = "debian-12-kvm";

/// The script of the source tree this crate was built from.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-image-debian-12-kvm.sh");

/// Builds the image with `script` (or finds it cached; the first build takes minutes) and
/// links it into `images_dir` as [`TEMPLATE`] when given. Returns the image's directory
/// (`image.json`, `disk.raw`, `vmlinuz`, `initrd.img`).
pub fn build(script: &Path, images_dir: Option<&Path>) -> std::io::Result<PathBuf> {
    let mut cmd = Command::new(script);
    if let Some(d) = images_dir {
        cmd.arg(d);
    }
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!("{} failed ({})", script.display(), out.status)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let dir = PathBuf::from(text.lines().last().map(str::trim).unwrap_or_default());
    if !dir.join("image.json").is_file() {
        return Err(std::io::Error::other(format!("{} printed no image directory", script.display())));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::runtime::{DiskSource, ImageSpec};

    #[test]
    fn the_template_is_one_vessel_knows_for_kvm_built_by_the_script() {
        let known = vessel_core::templates::known(TEMPLATE).expect("in vessel_core::templates::KNOWN");
        assert!(known.for_kvm && !known.for_containers);
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        assert_eq!(repo.join(known.build).canonicalize().unwrap(), Path::new(SCRIPT).canonicalize().unwrap());
        let script = std::fs::read_to_string(SCRIPT).unwrap();
        assert!(script.lines().any(|l| l == format!("NAME={TEMPLATE}")), "the script builds {TEMPLATE}");
    }

    /// The image spec the script writes is one the runtime reads (its fields are checked
    /// strictly): a copied disk image, the kernel and initramfs beside it, cloud-init's seed.
    #[test]
    fn the_scripts_image_spec_is_a_cloud_init_image_on_a_copied_disk() {
        let script = std::fs::read_to_string(SCRIPT).unwrap();
        let json = script
            .split("cat > \"$WORK/image.json\" <<J\n")
            .nth(1)
            .and_then(|r| r.split("\nJ\n").next())
            .expect("the image.json here-document");
        let spec: ImageSpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.disk, DiskSource::Image("disk.raw".into()));
        assert!(spec.cloud_init && !spec.kernel_ip);
        assert_eq!((spec.kernel.as_path(), spec.initrd.as_deref()), (Path::new("vmlinuz"), Some(Path::new("initrd.img"))));
        assert!(spec.cmdline.contains("root=/dev/vda1"), "{}", spec.cmdline);
        // Debian's cloud kernel has no VIRTIO_MMIO_CMDLINE_DEVICES: it finds the devices in
        // the ACPI DSDT only, and none are put on its command line.
        assert!(!spec.virtio_cmdline);
    }
}
