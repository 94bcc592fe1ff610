//! One machine in one process: builds the VM from a [`VmConfig`], locks itself down, runs the
//! vCPU threads and the control socket, and returns when the guest powers off or resets.
//!
//! Order matters: join the cgroup first (so guest RAM is charged to it), open every file and
//! create every KVM object, then install the seccomp filter (after which the process can open
//! nothing), and only then let the vCPUs run.

use super::boot;
use super::cgroup;
use super::config::{SmpBoot, VmConfig};
use super::control;
use super::devices::{Devices, IrqTrigger, RotatingLog, SerialOut, COM1_IRQ, I8042_IRQ};
use super::memory;
use super::seccomp;
use super::vcpu::{self, PauseGate, Stop};
use super::virtio;
use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::Kvm;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::thread::JoinHandleExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Barrier, Mutex};
use thiserror::Error;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

/// Where KVM may put the TSS it needs for real-mode emulation on Intel (3 pages, in the MMIO gap).
const TSS_ADDR: usize = 0xfffb_d000;

#[derive(Debug, Error)]
pub enum VmmError {
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    #[error("/dev/kvm: {0}")]
    Kvm(kvm_ioctls::Error),
    #[error("KVM {what}: {source}")]
    Setup { what: &'static str, source: kvm_ioctls::Error },
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    #[error(transparent)]
    Vcpu(#[from] vcpu::VcpuError),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("{path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("the guest triple-faulted {0} times: giving up")]
    TripleFault(u32),
    #[error("cannot reset the machine: {0}")]
    Reset(String),
}

/// How the machine ended on purpose. (A guest reset is not an end: the VMM reboots it in
/// place.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    PowerOff,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::PowerOff => "poweroff",
        }
    }
}

/// A guest that triple-faults this many times is broken, not rebooting.
const MAX_TRIPLE_FAULTS: u32 = 16;

fn setup(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
    move |source| VmmError::Setup { what, source }
}

/// Runs the machine to its end. The exit file (if configured) gets the outcome or the error.
pub fn run(cfg: &VmConfig) -> Result<Outcome, VmmError> {
    let mut exit_file = match &cfg.exit_file {
        Some(p) => {
            let _ = std::fs::remove_file(p);
            Some(
                OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(true)
                    .open(p)
                    .map_err(|source| VmmError::File { path: p.clone(), source })?,
            )
        }
        None => None,
    };
    let result = run_inner(cfg);
    if let Some(f) = exit_file.as_mut() {
        let line = match &result {
            Ok(o) => o.as_str().to_string(),
            Err(e) => format!("error: {e}"),
        };
        let _ = writeln!(f, "{line}").and_then(|_| f.sync_all());
    }
    result
}

fn run_inner(cfg: &VmConfig) -> Result<Outcome, VmmError> {
    cfg.validate()?;
    if let Some(p) = &cfg.cgroup {
        cgroup::join(p, std::process::id())?;
    }
    let log = RotatingLog::open(&cfg.serial_log, cfg.serial_log_max_bytes)
        .map_err(|source| VmmError::File { path: cfg.serial_log.clone(), source })?;
    let serial = SerialOut { log, stdout: cfg.serial_stdout, seen_first_byte: false };

    let kvm = Kvm::new().map_err(VmmError::Kvm)?;
    let vm = kvm.create_vm().map_err(setup("create_vm"))?;
    vm.set_tss_address(TSS_ADDR).map_err(setup("set_tss_address"))?;
    vm.create_irq_chip().map_err(setup("create_irq_chip"))?;
    let pit = kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
    vm.create_pit2(pit).map_err(setup("create_pit2"))?;

    let mem = memory::allocate(cfg.memory_mib, cfg.huge_pages)?;
    for (slot, region) in mem.iter().enumerate() {
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which outlives the VM (both
        // live until this process exits), and slots do not overlap.
        unsafe { vm.set_user_memory_region(r) }.map_err(setup("set_user_memory_region"))?;
    }

    // virtio devices: every file they use is opened now, before the filter.
    let file = |p: &std::path::Path, write: bool| {
        OpenOptions::new().read(true).write(write).open(p).map_err(|source| VmmError::File { path: p.into(), source })
    };
    let mut virtio: Vec<Box<dyn virtio::Device>> = Vec::new();
    let mut tap_rx = None;
    for d in cfg.disk.iter().chain(&cfg.more_disks) {
        let f = file(&d.path, true)?;
        virtio.push(Box::new(virtio::Block::new(f, d.io).map_err(|source| VmmError::File { path: d.path.clone(), source })?));
    }
    if let Some(p) = &cfg.seed {
        let f = file(p, false)?;
        virtio.push(Box::new(virtio::Block::read_only(f).map_err(|source| VmmError::File { path: p.clone(), source })?));
    }
    if let Some(n) = &cfg.net {
        let tap = virtio::open_tap(&n.tap).map_err(|source| VmmError::File { path: format!("tap {}", n.tap).into(), source })?;
        tap_rx = Some((virtio.len(), tap.try_clone().map_err(|source| VmmError::File { path: "tap".into(), source })?));
        virtio.push(Box::new(virtio::Net { tap, mac: n.mac }));
    }
    if cfg.rng {
        virtio.push(Box::new(virtio::Rng { source: file(std::path::Path::new("/dev/urandom"), false)?, served: 0 }));
    }
    let mut cmdline = cfg.cmdline.clone();
    let mut mmio = Vec::new();
    let mut acpi_devices = Vec::new();
    for (i, dev) in virtio.into_iter().enumerate() {
        let irq = EventFd::new(libc::EFD_NONBLOCK).map_err(VmmError::EventFd)?;
        vm.register_irqfd(&irq, virtio::FIRST_IRQ + i as u32).map_err(setup("register_irqfd"))?;
        mmio.push(virtio::Mmio::new(dev, IrqTrigger(irq), mem.clone()));
        acpi_devices.push(virtio::acpi_device(i));
        if cfg.virtio_cmdline {
            cmdline.push(' ');
            cmdline.push_str(&virtio::cmdline_device(i));
        }
    }

    let (mut image, mut initrd) = boot::open_images(&cfg.kernel, cfg.initrd.as_deref())?;
    let mut load = || {
        super::mptable::write(&mem, cfg.vcpus).map_err(boot::BootError::Memory)?;
        super::acpi::write(&mem, cfg.vcpus, &acpi_devices).map_err(boot::BootError::Memory)?;
        boot::load_kernel(&mem, cfg.memory_mib, &cfg.kernel, &mut image, &cmdline, initrd.as_mut())
    };
    let entry = load()?;

    let serial_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(VmmError::EventFd)?;
    let kbd_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(VmmError::EventFd)?;
    vm.register_irqfd(&serial_irq, COM1_IRQ).map_err(setup("register_irqfd"))?;
    vm.register_irqfd(&kbd_irq, I8042_IRQ).map_err(setup("register_irqfd"))?;
    let mut devs = Devices::new(serial_irq, kbd_irq, serial);
    devs.virtio = mmio;
    let devices = Arc::new(Mutex::new(devs));

    let base_cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(setup("get_supported_cpuid"))?;
    // Only a PVH guest can be started at its entry on every vCPU; Linux wakes its APs by SIPI.
    let smp_entry = cfg.smp_boot == SmpBoot::Entry && entry.pvh;
    let mut vcpus = Vec::new();
    for i in 0..cfg.vcpus {
        let fd = vm.create_vcpu(i as u64).map_err(setup("create_vcpu"))?;
        fd.set_cpuid2(&vcpu::cpuid_for(&base_cpuid, i, cfg.vcpus)).map_err(setup("set_cpuid2"))?;
        vcpu::setup_lapic(&fd, i)?;
        if i == 0 || smp_entry {
            vcpu::setup_entry(&fd, i, cfg.vcpus, entry, smp_entry)?;
        }
        vcpus.push(fd);
    }

    let listener = match &cfg.control_socket {
        Some(p) => Some(control::bind(p)?),
        None => None,
    };
    vcpu::install_kick_handler();

    let gate = Arc::new(PauseGate::default());
    // Every thread must be fully started (its start-up system calls made) before the filter
    // goes on: `ready` gathers them, `start` then lets the vCPUs run.
    let with_control = cfg.control_socket.is_some() as usize;
    let ready = Arc::new(Barrier::new(cfg.vcpus as usize + with_control + tap_rx.is_some() as usize + 1));
    if let Some((index, mut tap)) = tap_rx {
        // The network receiver: frames from the TAP into the card's receive queue.
        let (devices, ready) = (devices.clone(), ready.clone());
        std::thread::Builder::new()
            .name("net-rx".into())
            .spawn(move || {
                let dropped = seccomp::drop_capabilities();
                ready.wait();
                if dropped.is_err() {
                    return;
                }
                let mut buf = vec![0u8; 65536];
                loop {
                    use std::io::Read;
                    match tap.read(&mut buf) {
                        Ok(n) if n > 0 => {
                            let mut d = devices.lock().unwrap_or_else(|p| p.into_inner());
                            if let Some(m) = d.virtio.get_mut(index) {
                                m.deliver(&buf[..n]);
                            }
                        }
                        Ok(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "TAP read failed: the network receiver stops");
                            return;
                        }
                    }
                }
            })
            .map_err(|source| VmmError::File { path: "thread".into(), source })?;
    }
    let start = Arc::new(Barrier::new(cfg.vcpus as usize + 1));
    let (tx, rx) = mpsc::channel::<Stop>();
    let mut threads = Vec::new();
    for (i, fd) in vcpus.into_iter().enumerate() {
        let (devices, gate, ready, start, tx) = (devices.clone(), gate.clone(), ready.clone(), start.clone(), tx.clone());
        let pin = cfg.pin_cpus.get(i).copied();
        let count = cfg.vcpus;
        let h = std::thread::Builder::new()
            .name(format!("vcpu{i}"))
            .spawn(move || {
                if let Some(cpu) = pin {
                    pin_current_thread(cpu);
                }
                let dropped = seccomp::drop_capabilities();
                ready.wait();
                start.wait();
                if let Err(e) = dropped {
                    let _ = tx.send(Stop::Error(vcpu::VcpuError::Setup(e.to_string())));
                    return;
                }
                let boot = vcpu::VcpuBoot { index: i as u8, count, entry, smp_entry };
                let _ = tx.send(vcpu::run(fd, boot, &devices, &gate, &tx));
            })
            .map_err(|source| VmmError::File { path: "thread".into(), source })?;
        threads.push(h.as_pthread_t());
    }
    // The control thread serves only once told the filter is on (dropped: set-up failed).
    let (lockdown_tx, lockdown_rx) = mpsc::channel::<control::Lockdown>();
    if let Some(listener) = listener {
        let ctl = control::Control { gate: gate.clone(), threads: threads.clone(), devices: devices.clone(), require_filter: cfg.seccomp };
        let ready = ready.clone();
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                let dropped = seccomp::drop_capabilities();
                ready.wait();
                match dropped {
                    Ok(()) => control::serve(listener, ctl, lockdown_rx),
                    Err(e) => tracing::error!(error = %e, "control thread keeps its capabilities: not serving"),
                }
            })
            .map_err(|source| VmmError::File { path: "thread".into(), source })?;
    }

    seccomp::drop_capabilities()?;
    ready.wait();
    test_hooks::delay_lockdown();
    let lockdown = if cfg.seccomp {
        seccomp::install()?;
        control::Lockdown::Sealed
    } else {
        control::Lockdown::Unconfined
    };
    // Happens-after `install`: only now may the control socket answer anyone.
    let _ = lockdown_tx.send(lockdown);
    tracing::info!(name = %cfg.name, vcpus = cfg.vcpus, memory_mib = cfg.memory_mib, "machine starting");
    start.wait();

    // Keep guest memory and the VM alive until the end.
    let _keep = (&mem, &vm);
    let mut triple_faults = 0;
    let result = loop {
        match rx.recv().unwrap_or(Stop::PowerOff) {
            Stop::PowerOff => break Ok(Outcome::PowerOff),
            Stop::Error(e) => break Err(e.into()),
            Stop::Reset { triple_fault } => {
                if triple_fault {
                    triple_faults += 1;
                    if triple_faults > MAX_TRIPLE_FAULTS {
                        break Err(VmmError::TripleFault(triple_faults));
                    }
                }
                tracing::info!(triple_fault, "guest reset: rebooting in place");
                if let Err(e) = gate.pause_all(&threads) {
                    break Err(VmmError::Reset(e));
                }
                devices.lock().unwrap_or_else(|p| p.into_inner()).i8042.clear();
                if let Err(e) = load() {
                    break Err(e.into());
                }
                gate.epoch.fetch_add(1, Ordering::SeqCst);
                gate.resetting.store(false, Ordering::SeqCst);
                gate.resume();
            }
        }
    };
    if let Ok(mut d) = devices.lock() {
        let _ = d.serial.writer_mut().flush();
    }
    result
}

/// Fault injection for the tests, compiled only with the `test-hooks` feature.
mod test_hooks {
    /// `VESSEL_TEST_DELAY_LOCKDOWN_MS`: sleep between set-up and the filter, widening the window
    /// in which an early control request would be answered unconfined if serving did not wait.
    #[cfg(feature = "test-hooks")]
    pub fn delay_lockdown() {
        if let Some(ms) = std::env::var("VESSEL_TEST_DELAY_LOCKDOWN_MS").ok().and_then(|v| v.parse().ok()) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
    #[cfg(not(feature = "test-hooks"))]
    pub fn delay_lockdown() {}
}

fn pin_current_thread(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it, and
    // sched_setaffinity(0) only affects the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!(cpu, error = %std::io::Error::last_os_error(), "cannot pin vCPU thread");
        }
    }
}
