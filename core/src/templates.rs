//! The OS templates Vessel knows: the one list the panel sells from and the hosts build.
//!
//! A host serves a template named here from its `templates_dir` (`<name>.json` + tarball for
//! containers, made by the script named in [`KnownTemplate::build`]; `<name>/image.json` for
//! KVM machines). The panel's admin can only add a template whose name is in this list, so an
//! order never names something no host can make.

/// One template: its name (as orders, the API and hosts spell it) and what it is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownTemplate {
    pub name: &'static str,
    /// What customers see.
    pub display_name: &'static str,
    pub for_containers: bool,
    pub for_kvm: bool,
    /// The script (relative to the repository) that builds it on a host.
    pub build: &'static str,
}

/// Every template, in the order a catalogue lists them.
pub const KNOWN: &[KnownTemplate] = &[
    KnownTemplate {
        name: "debian-12",
        display_name: "Debian 12 (bookworm)",
        for_containers: true,
        for_kvm: false,
        build: "provisioner/scripts/build-template-debian-12.sh",
    },
    KnownTemplate {
        name: "busybox",
        display_name: "Busybox (minimal)",
        for_containers: true,
        for_kvm: false,
        build: "provisioner/scripts/build-template-busybox.sh",
    },
    KnownTemplate {
        name: "vessel-test-guest",
        display_name: "Vessel test guest",
        for_containers: false,
        for_kvm: true,
        build: "provisioner/src/vm/guest.rs (assembled by the KVM tests and the demo hosts)",
    },
    KnownTemplate {
        name: "linux-test-kernel",
        display_name: "Linux test kernel (no user space: mounts its disk, answers ping)",
        for_containers: false,
        for_kvm: true,
        build: "scripts/build-test-kernel (the image spec: provisioner/src/vm/test_kernel.rs)",
    },
    KnownTemplate {
        name: "debian-12-kvm",
        display_name: "Debian 12 (bookworm), cloud image with cloud-init and SSH",
        for_containers: false,
        for_kvm: true,
        build: "provisioner/scripts/build-image-debian-12-kvm.sh",
    },
];

/// The container template a container in rescue boots (with its own root filesystem at
/// `/mnt`): busybox, which every container host builds and which starts in a blink; its
/// console `login` takes the customer's root password.
pub const RESCUE_CONTAINER: &str = "busybox";

/// The KVM image a machine in rescue boots, on a small disk of its own with the machine's
/// disk as its second virtio disk (`vdb`): the project's test kernel, the one kernel that
/// boots on the nested PVM test hosts (see the KVM-on-PVM design note). It has no user space,
/// so it proves the rescue boot and the attached disk (its log), not a shell; a host with
/// hardware virtualization would name a Linux with a rescue user space here.
pub const RESCUE_KVM: &str = "linux-test-kernel";

/// The template of that name, if Vessel knows it.
pub fn known(name: &str) -> Option<&'static KnownTemplate> {
    KNOWN.iter().find(|t| t.name == name)
}

/// The known names, comma-separated (for error messages).
pub fn known_names() -> String {
    KNOWN.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_each_template_is_for_something() {
        for (i, t) in KNOWN.iter().enumerate() {
            assert!(t.for_containers || t.for_kvm, "{} is for nothing", t.name);
            assert!(KNOWN[i + 1..].iter().all(|o| o.name != t.name), "{} twice", t.name);
        }
        assert_eq!(known("debian-12").map(|t| t.for_containers), Some(true));
        assert!(known("debian-bookworm").is_none());
        assert_eq!(known(RESCUE_CONTAINER).map(|t| t.for_containers), Some(true));
        assert_eq!(known(RESCUE_KVM).map(|t| t.for_kvm), Some(true));
    }
}
