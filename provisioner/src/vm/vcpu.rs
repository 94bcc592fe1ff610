//! One vCPU: its CPUID (the host's supported set, with this machine's topology), its entry
//! state, and the thread loop that runs it and dispatches its exits to the devices.

use super::boot::{Entry, CODE_SELECTOR, DATA_SELECTOR, GDT_ADDR, GDT_ENTRIES, TSS_SELECTOR};
use super::devices::{Devices, GuestRequest};
use kvm_bindings::{kvm_segment, CpuId};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;

/// `"VSL1"`: tells the test guest the VMM started every vCPU at the entry (`SmpBoot::Entry`).
pub const SMP_MAGIC: u64 = 0x5653_4c31;

#[derive(Debug, Error)]
pub enum VcpuError {
    #[error("vCPU {index}: {what}: {source}")]
    Kvm { index: u8, what: &'static str, source: kvm_ioctls::Error },
    #[error("vCPU {index}: KVM could not enter the guest (reason {reason:#x})")]
    FailEntry { index: u8, reason: u64 },
    #[error("vCPU {index}: KVM internal error (suberror {suberror}, data {data:x?}) at rip {rip:#x}")]
    Internal { index: u8, suberror: u32, data: Vec<u64>, rip: u64 },
    #[error("vCPU thread set-up: {0}")]
    Setup(String),
}

/// What a vCPU thread reports to the VMM's main thread.
#[derive(Debug)]
pub enum Stop {
    /// The guest powered off: the machine ends.
    PowerOff,
    /// The guest asked for a reset (i8042, KVM system event) or triple-faulted (x86's way
    /// to reset): the machine reboots in place.
    Reset {
        triple_fault: bool,
    },
    Error(VcpuError),
}

/// Where and how one vCPU (re)starts.
#[derive(Clone, Copy, Debug)]
pub struct VcpuBoot {
    pub index: u8,
    pub count: u8,
    pub entry: Entry,
    pub smp_entry: bool,
}

/// CPUID for vCPU `index` of `count`: APIC ids, logical-processor count and the extended
/// topology leaves say "one package, `count` cores, one thread each".
pub fn cpuid_for(base: &CpuId, index: u8, count: u8) -> CpuId {
    let mut cpuid = base.clone();
    let shift = (count as u32).next_power_of_two().trailing_zeros();
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | ((index as u32) << 24) | ((count as u32) << 16);
                if count > 1 {
                    e.edx |= 1 << 28; // HTT: the count field is valid
                }
                e.ecx |= 1 << 31; // running under a hypervisor
            }
            4 => {
                e.eax = (e.eax & 0x03ff_ffff) | (((count as u32) - 1) << 26);
            }
            0xb | 0x1f => {
                e.edx = index as u32;
                match e.index {
                    0 => {
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = 1 << 8; // SMT level
                    }
                    1 => {
                        e.eax = shift;
                        e.ebx = count as u32;
                        e.ecx = (2 << 8) | 1; // core level
                    }
                    i => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = i;
                    }
                }
            }
            _ => {}
        }
    }
    cpuid
}

fn kvm(index: u8, what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VcpuError {
    move |source| VcpuError::Kvm { index, what, source }
}

/// Local APIC: LINT0 as ExtINT (the PIC's output) and LINT1 as NMI, as a PC's BIOS leaves it.
pub fn setup_lapic(vcpu: &VcpuFd, index: u8) -> Result<(), VcpuError> {
    let mut lapic = vcpu.get_lapic().map_err(kvm(index, "get_lapic"))?;
    let mut set = |offset: usize, mode: u32| {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[offset + i] as u8);
        let v = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
        for (i, b) in v.to_le_bytes().iter().enumerate() {
            lapic.regs[offset + i] = *b as _;
        }
    };
    set(0x350, 0x7); // LVT LINT0: ExtINT
    set(0x360, 0x4); // LVT LINT1: NMI
    vcpu.set_lapic(&lapic).map_err(kvm(index, "set_lapic"))
}

/// The entry state of both boot protocols: 32-bit flat protected mode, paging off,
/// interrupts off; `%ebx` = PVH start info or `%esi` = Linux zero page. With `smp_entry`
/// (PVH only), also `%edi`/`%esi`/`%edx` = magic/index/count for the test guest.
pub fn setup_entry(vcpu: &VcpuFd, index: u8, count: u8, entry: Entry, smp_entry: bool) -> Result<(), VcpuError> {
    let mut fpu = vcpu.get_fpu().map_err(kvm(index, "get_fpu"))?;
    fpu.fcw = 0x37f;
    fpu.mxcsr = 0x1f80;
    vcpu.set_fpu(&fpu).map_err(kvm(index, "set_fpu"))?;

    let mut regs = vcpu.get_regs().map_err(kvm(index, "get_regs"))?;
    regs.rflags = 0x2;
    regs.rip = entry.rip;
    regs.rbx = entry.rbx;
    regs.rsi = entry.rsi;
    if smp_entry && entry.pvh {
        regs.rdi = SMP_MAGIC;
        regs.rsi = index as u64;
        regs.rdx = count as u64;
    }
    vcpu.set_regs(&regs).map_err(kvm(index, "set_regs"))?;

    let mut sregs = vcpu.get_sregs().map_err(kvm(index, "get_sregs"))?;
    let code = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: CODE_SELECTOR,
        type_: 0xb,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    let data = kvm_segment { selector: DATA_SELECTOR, type_: 0x3, ..code };
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment { selector: TSS_SELECTOR, type_: 0xb, s: 0, db: 0, g: 0, limit: 0x67, ..code };
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = GDT_ENTRIES * 8 - 1;
    sregs.cr0 = 0x11; // PE | ET
    sregs.cr4 = 0;
    sregs.efer = 0;
    vcpu.set_sregs(&sregs).map_err(kvm(index, "set_sregs"))?;
    // With the in-kernel LAPIC, KVM parks every vCPU but the first in wait-for-SIPI; one we
    // start at the entry ourselves must be made runnable.
    let runnable = kvm_bindings::kvm_mp_state { mp_state: kvm_bindings::KVM_MP_STATE_RUNNABLE };
    vcpu.set_mp_state(runnable).map_err(kvm(index, "set_mp_state"))
}

/// The signal that kicks a vCPU thread out of KVM_RUN (its handler does nothing; the point
/// is the interrupted ioctl).
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int) {}

pub fn install_kick_handler() {
    // SAFETY: a zeroed sigaction with a valid handler and an empty mask is valid; the handler
    // is async-signal-safe (it does nothing). No SA_RESTART, so KVM_RUN returns EINTR.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_kick as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
    }
}

/// Pausing: the controller raises `paused`, kicks every vCPU thread out of KVM_RUN with a
/// signal until each has parked, and lowers it to resume them. A reset goes through the same
/// gate: all vCPUs parked, the kernel reloaded, `epoch` bumped so each vCPU re-enters the
/// kernel's entry when it unparks.
#[derive(Default)]
pub struct PauseGate {
    pub paused: AtomicBool,
    pub parked: AtomicUsize,
    pub epoch: AtomicU64,
    /// A reset is under way (so two vCPUs asking at once make one reset).
    pub resetting: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl PauseGate {
    fn park_if_paused(&self) {
        if !self.paused.load(Ordering::SeqCst) {
            return;
        }
        let mut g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.parked.fetch_add(1, Ordering::SeqCst);
        self.cv.notify_all();
        while self.paused.load(Ordering::SeqCst) {
            g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        self.parked.fetch_sub(1, Ordering::SeqCst);
    }

    /// Stops every vCPU thread in `threads` (returns once all are parked).
    pub fn pause_all(&self, threads: &[libc::pthread_t]) -> Result<(), String> {
        self.paused.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.parked.load(Ordering::SeqCst) < threads.len() {
            for t in threads {
                // SAFETY: the ids are of this process's vCPU threads, which never exit before
                // the process does (a vCPU that returns ends the process).
                unsafe { libc::pthread_kill(*t, kick_signal()) };
            }
            if Instant::now() > deadline {
                return Err("vCPUs did not stop within 5 s".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    pub fn resume(&self) {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.paused.store(false, Ordering::SeqCst);
        self.cv.notify_all();
    }

    fn request_reset(&self, events: &Sender<Stop>, triple_fault: bool) {
        if !self.resetting.swap(true, Ordering::SeqCst) {
            self.paused.store(true, Ordering::SeqCst);
            let _ = events.send(Stop::Reset { triple_fault });
        }
    }
}

/// Puts a vCPU back to its power-on state for a reboot in place.
fn reset(vcpu: &VcpuFd, boot: &VcpuBoot, lapic: Option<&kvm_bindings::kvm_lapic_state>) -> Result<(), VcpuError> {
    if let Some(l) = lapic {
        vcpu.set_lapic(l).map_err(kvm(boot.index, "set_lapic"))?;
    }
    if boot.index == 0 || boot.smp_entry {
        setup_entry(vcpu, boot.index, boot.count, boot.entry, boot.smp_entry)
    } else {
        let waiting = kvm_bindings::kvm_mp_state { mp_state: kvm_bindings::KVM_MP_STATE_UNINITIALIZED };
        vcpu.set_mp_state(waiting).map_err(kvm(boot.index, "set_mp_state"))
    }
}

/// `fwait` (`9b`) is an instruction the nested PVM hosts' emulation of guest kernel mode
/// does not know (Linux runs it in `fpu__drop` whenever a task exits; see
/// ../shared/design/kvm-on-pvm.md). With no unmasked x87 exception pending (the status word's
/// error-summary bit clear) it does nothing, so the VMM completes it by stepping over it; with
/// one pending it would raise #MF, which is left to fail as before. True when it did.
fn completes_fwait(vcpu: &mut VcpuFd) -> bool {
    const KVM_INTERNAL_ERROR_EMULATION: u32 = 1;
    const KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES: u64 = 1;
    const FWAIT: u8 = 0x9b;
    const FSW_ERROR_SUMMARY: u16 = 1 << 7;
    // SAFETY: after KVM_EXIT_INTERNAL_ERROR the union holds `emulation_failure` (whose
    // leading fields are `internal`'s); the instruction bytes are only read when KVM says so.
    let failure = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.emulation_failure };
    if failure.suberror != KVM_INTERNAL_ERROR_EMULATION || failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES == 0 {
        return false;
    }
    // SAFETY: the flag above says the instruction bytes are valid.
    let insn = unsafe { failure.__bindgen_anon_1.__bindgen_anon_1 };
    if insn.insn_size == 0 || insn.insn_bytes[0] != FWAIT {
        return false;
    }
    let (Ok(fpu), Ok(mut regs)) = (vcpu.get_fpu(), vcpu.get_regs()) else { return false };
    if fpu.fsw & FSW_ERROR_SUMMARY != 0 {
        return false;
    }
    regs.rip += 1;
    vcpu.set_regs(&regs).is_ok()
}

/// `int3` (`cc`) in guest kernel mode is the other instruction the nested PVM hosts' emulator
/// fails on (Linux's `int3_selftest()` at boot, and every kprobe or static-call patch later;
/// see ../shared/design/kvm-on-pvm.md). The VMM completes it as the CPU would: `#BP` is a
/// trap, so the vCPU gets the exception injected with its RIP already past the instruction
/// (what the guest's handler expects to find on its stack). True when it did.
fn completes_int3(vcpu: &mut VcpuFd) -> bool {
    const KVM_INTERNAL_ERROR_EMULATION: u32 = 1;
    const KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES: u64 = 1;
    const INT3: u8 = 0xcc;
    const BP_VECTOR: u8 = 3;
    // SAFETY: as in `completes_fwait`: the union holds `emulation_failure` after
    // KVM_EXIT_INTERNAL_ERROR, and the bytes are read only when KVM says they are valid.
    let failure = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.emulation_failure };
    if failure.suberror != KVM_INTERNAL_ERROR_EMULATION || failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES == 0 {
        return false;
    }
    // SAFETY: see above.
    let insn = unsafe { failure.__bindgen_anon_1.__bindgen_anon_1 };
    if insn.insn_size == 0 || insn.insn_bytes[0] != INT3 {
        return false;
    }
    let (Ok(mut regs), Ok(mut events)) = (vcpu.get_regs(), vcpu.get_vcpu_events()) else { return false };
    if events.exception.injected != 0 || events.exception.pending != 0 {
        return false;
    }
    regs.rip += 1;
    events.exception.injected = 1;
    events.exception.nr = BP_VECTOR;
    events.exception.has_error_code = 0;
    events.exception.error_code = 0;
    vcpu.set_regs(&regs).is_ok() && vcpu.set_vcpu_events(&events).is_ok()
}

/// VM exits that reached the VMM, by reason (and, for port and MMIO exits, by device): where
/// a boot spends its round trips to user space. Process-wide (one machine per process);
/// the control socket's `exits` reports them.
#[derive(Debug, Default)]
pub struct ExitCounts {
    pub serial: AtomicU64,
    pub i8042: AtomicU64,
    pub rtc: AtomicU64,
    pub acpi: AtomicU64,
    pub other_ports: AtomicU64,
    /// The last port in `other_ports` (what no device of ours answers: probes of absent ISA
    /// devices, the PIC's and PIT's ports when KVM does not take them).
    pub last_other_port: AtomicU64,
    /// Per virtio-mmio device (by index; the last slot counts every other address).
    pub mmio: [AtomicU64; 9],
    pub internal: AtomicU64,
    pub other: AtomicU64,
}

pub static EXITS: ExitCounts = ExitCounts {
    serial: AtomicU64::new(0),
    i8042: AtomicU64::new(0),
    rtc: AtomicU64::new(0),
    acpi: AtomicU64::new(0),
    other_ports: AtomicU64::new(0),
    last_other_port: AtomicU64::new(0),
    mmio: [const { AtomicU64::new(0) }; 9],
    internal: AtomicU64::new(0),
    other: AtomicU64::new(0),
};

impl ExitCounts {
    fn port(&self, port: u16) {
        let counter = match port {
            0x3f8..=0x3ff => &self.serial,
            0x60 | 0x64 => &self.i8042,
            0x70 | 0x71 => &self.rtc,
            0x600..=0x602 | 0xf4 => &self.acpi,
            _ => {
                self.last_other_port.store(port as u64, Ordering::Relaxed);
                &self.other_ports
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn mmio(&self, addr: u64) {
        let slot = addr
            .checked_sub(super::virtio::MMIO_BASE)
            .map(|o| (o / super::virtio::MMIO_SIZE) as usize)
            .filter(|i| *i < self.mmio.len() - 1)
            .unwrap_or(self.mmio.len() - 1);
        self.mmio[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// One line: `serial=.. i8042=.. rtc=.. acpi=.. ports=..(last 0x..) mmio=[..] internal=.. other=..`.
    pub fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mmio: Vec<String> = self.mmio.iter().map(|c| get(c).to_string()).collect();
        format!(
            "serial={} i8042={} rtc={} acpi={} ports={} (last {:#x}) mmio=[{}] internal={} other={}",
            get(&self.serial),
            get(&self.i8042),
            get(&self.rtc),
            get(&self.acpi),
            get(&self.other_ports),
            get(&self.last_other_port),
            mmio.join(","),
            get(&self.internal),
            get(&self.other),
        )
    }
}

/// Runs one vCPU until the machine ends; resets go to the main thread through `events` and
/// this loop carries on after them. Returns why the machine ends.
pub fn run(mut vcpu: VcpuFd, boot: VcpuBoot, devices: &Mutex<Devices>, gate: &PauseGate, events: &Sender<Stop>) -> Stop {
    let index = boot.index;
    let power_on_lapic = vcpu.get_lapic().ok();
    let mut epoch = gate.epoch.load(Ordering::SeqCst);
    loop {
        gate.park_if_paused();
        let now = gate.epoch.load(Ordering::SeqCst);
        if now != epoch {
            epoch = now;
            if let Err(e) = reset(&vcpu, &boot, power_on_lapic.as_ref()) {
                return Stop::Error(e);
            }
        }
        let exit = match vcpu.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
            Err(source) => return Stop::Error(VcpuError::Kvm { index, what: "KVM_RUN", source }),
        };
        let lock = || devices.lock().unwrap_or_else(|p| p.into_inner());
        let mut internal_error = false;
        match &exit {
            VcpuExit::IoIn(port, _) | VcpuExit::IoOut(port, _) => EXITS.port(*port),
            VcpuExit::MmioRead(addr, _) | VcpuExit::MmioWrite(addr, _) => EXITS.mmio(*addr),
            VcpuExit::InternalError => drop(EXITS.internal.fetch_add(1, Ordering::Relaxed)),
            _ => drop(EXITS.other.fetch_add(1, Ordering::Relaxed)),
        }
        match exit {
            VcpuExit::IoIn(port, data) => lock().pio_read(port, data),
            VcpuExit::IoOut(port, data) => match lock().pio_write(port, data) {
                Some(GuestRequest::PowerOff) => return Stop::PowerOff,
                Some(GuestRequest::Reset) => gate.request_reset(events, false),
                None => {}
            },
            VcpuExit::MmioRead(addr, data) => lock().mmio_read(addr, data),
            VcpuExit::MmioWrite(addr, data) => lock().mmio_write(addr, data),
            VcpuExit::Hlt => std::thread::sleep(Duration::from_millis(1)),
            VcpuExit::Shutdown => gate.request_reset(events, true),
            VcpuExit::SystemEvent(kind, _) => {
                if kind == kvm_bindings::KVM_SYSTEM_EVENT_RESET {
                    gate.request_reset(events, false)
                } else {
                    return Stop::PowerOff;
                }
            }
            VcpuExit::FailEntry(reason, _) => return Stop::Error(VcpuError::FailEntry { index, reason }),
            VcpuExit::InternalError => internal_error = true,
            other => tracing::debug!(index, exit = ?other, "unhandled vCPU exit"),
        }
        if internal_error && !completes_fwait(&mut vcpu) && !completes_int3(&mut vcpu) {
            // What KVM says failed (e.g. suberror 1: an instruction it could not emulate).
            // SAFETY: after KVM_EXIT_INTERNAL_ERROR the union holds `internal`.
            let internal = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal };
            let n = (internal.ndata as usize).min(internal.data.len());
            let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
            return Stop::Error(VcpuError::Internal { index, suberror: internal.suberror, data: internal.data[..n].to_vec(), rip });
        }
    }
}
