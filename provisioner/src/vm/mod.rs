//! Dedicated KVM machines on a VMM of our own (kvm-ioctls + vm-memory), one process per
//! machine (`provisioner vm run --config <json>`), so a crashed guest takes nothing else down.
//!
//! * [`config`]: what a VMM process is told to build.
//! * [`memory`]: guest RAM, pre-faulted and locked.
//! * [`boot`]: PVH loading and the start info / memory map handed to the guest.
//! * [`acpi`]: minimal ACPI tables (vCPUs, power-off, reset) and the power registers.
//! * [`mptable`]: the MP table (processors, I/O APIC, ISA interrupts) for guests without ACPI.
//! * [`vcpu`]: CPUID and entry state of each vCPU, and its run loop.
//! * [`devices`]: serial console, i8042, power-off port; the MMIO bus.
//! * [`rtc`]: the CMOS real-time clock.
//! * [`virtio`]: virtio-mmio block, network and entropy devices.
//! * [`seed`]: the NoCloud `cidata` seed (hostname, SSH keys, root password hash, address),
//!   a FAT volume attached read-only as a cloud-init image's second disk.
//! * [`disk`]: the machine's raw disk image (partitioned ext4 when blank; grown, never shrunk).
//! * [`control`]: the unix socket through which the provisioner pauses, resumes and shuts down.
//! * [`seccomp`]: what the VMM may still do once set up.
//! * [`cgroup`]: the VMM's cgroup (memory limit, cpuset or weight).
//! * [`shield`]: pinned cores taken from every other task and cgroup on the host.
//! * [`vmm`]: puts the above together and runs a machine to its end.
//! * [`runtime`]: the provisioner's side: the `Runtime` lifecycle over VMM processes.
//! * [`guest`]: builds the project's test guest and checks its report.
//! * [`test_kernel`]: the project's Linux test kernel as an OS template.
//! * [`debian_image`]: the Debian 12 cloud image for customers (`debian-12-kvm`).

pub mod acpi;
pub mod boot;
pub mod cgroup;
pub mod config;
pub mod console;
pub mod control;
pub mod debian_image;
pub mod devices;
pub mod disk;
pub mod guest;
pub mod memory;
pub mod mptable;
pub mod rtc;
pub mod runtime;
pub mod seccomp;
pub mod seed;
pub mod shield;
pub mod test_kernel;
pub mod vcpu;
pub mod virtio;
pub mod vmm;
