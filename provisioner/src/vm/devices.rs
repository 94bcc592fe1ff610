//! The legacy devices a guest needs, on the port-I/O bus, plus the MMIO bus where the
//! virtio-mmio devices sit (see [`super::virtio`]).
//!
//! | ports | device |
//! | --- | --- |
//! | `0x3f8..=0x3ff` | COM1, a 16550 (vm-superio), IRQ 4, output kept in the serial log (capped and rotated: [`RotatingLog`]) |
//! | `0x70`, `0x71` | the CMOS real-time clock ([`super::rtc`]): the host's time, settable by the guest |
//! | `0x60`, `0x64` | a minimal i8042: `0xFE` written to `0x64` resets the machine (reboot); the VMM queues a Ctrl-Alt-Del on it to ask the guest to shut down |
//! | `0x600`..=`0x602` | ACPI's hardware-reduced sleep control/status and reset registers ([`super::acpi`]): power-off (`\_S5_`) and reset |
//! | `0xf4` | power-off: any write ends the machine cleanly (QEMU's isa-debug-exit port) |
//!
//! Any other port reads as all ones and ignores writes, like an empty ISA bus.

use super::acpi;
use std::fs::File;
use std::io::Write;
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

pub const COM1: u16 = 0x3f8;
pub const COM1_IRQ: u32 = 4;
pub const I8042_DATA: u16 = 0x60;
pub const I8042_COMMAND: u16 = 0x64;
pub const I8042_IRQ: u32 = 1;
pub const POWEROFF_PORT: u16 = 0xf4;
const I8042_RESET_CMD: u8 = 0xfe;
/// Status register: output buffer full, and the "system flag" (self test passed).
const I8042_STATUS_OBF: u8 = 0x01;
const I8042_STATUS_SYS: u8 = 0x04;

/// What the guest asked the machine to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestRequest {
    PowerOff,
    Reset,
}

/// Raises an interrupt line through a KVM irqfd.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// The serial log, capped and rotated: `serial.log` holds the newest output and, once it
/// would pass `cap` bytes, its content moves to `serial.log.1` (replacing the previous one)
/// and it starts empty again, so a guest flooding its console uses at most twice `cap` bytes
/// of host disk. Both files are opened before the seccomp filter goes on; rotating needs only
/// `pread64`, `write` and `ftruncate` on them (no path is opened or renamed afterwards).
pub struct RotatingLog {
    current: File,
    previous: File,
    cap: u64,
    len: u64,
}

impl RotatingLog {
    /// Opens (creating, mode 0600) `path` and `path.1` for appending.
    pub fn open(path: &std::path::Path, cap: u64) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let open = |p: &std::path::Path| std::fs::OpenOptions::new().create(true).append(true).read(true).mode(0o600).open(p);
        let current = open(path)?;
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        let previous = open(std::path::Path::new(&old))?;
        let len = current.metadata()?.len();
        Ok(RotatingLog { current, previous, cap: cap.max(1), len })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.previous.set_len(0)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut at = 0;
        loop {
            let n = self.current.read_at(&mut buf, at)?;
            if n == 0 {
                break;
            }
            self.previous.write_all(&buf[..n])?;
            at += n as u64;
        }
        self.current.set_len(0)?;
        self.len = 0;
        Ok(())
    }
}

impl Write for RotatingLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A single write larger than the cap keeps only its tail.
        let buf = &buf[buf.len().saturating_sub(self.cap as usize)..];
        if self.len + buf.len() as u64 > self.cap {
            self.rotate()?;
        }
        self.current.write_all(buf)?;
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.current.flush()
    }
}

/// Serial output: the log, and stdout when a console is attached.
pub struct SerialOut {
    pub log: RotatingLog,
    pub stdout: bool,
    /// Set once the guest has written anything (the benchmark's "first byte").
    pub seen_first_byte: bool,
}

impl Write for SerialOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.seen_first_byte && !buf.is_empty() {
            self.seen_first_byte = true;
            tracing::debug!("first serial byte");
        }
        self.log.write_all(buf)?;
        if self.stdout {
            let mut o = std::io::stdout().lock();
            o.write_all(buf)?;
            o.flush()?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.log.flush()
    }
}

/// A minimal i8042 keyboard controller: enough for reset and for a Ctrl-Alt-Del request.
pub struct I8042 {
    queue: std::collections::VecDeque<u8>,
    irq: IrqTrigger,
}

impl I8042 {
    /// Scancodes (set 1) of Ctrl-Alt-Del, press then release: the clean-shutdown request a
    /// guest without ACPI understands (Firecracker does the same).
    const CTRL_ALT_DEL: [u8; 8] = [0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d];

    pub fn send_ctrl_alt_del(&mut self) {
        self.queue.extend(Self::CTRL_ALT_DEL);
        if let Err(e) = self.irq.trigger() {
            tracing::warn!(error = %e, "cannot raise the i8042 interrupt");
        }
    }

    /// Forgets queued bytes (a reset).
    pub fn clear(&mut self) {
        self.queue.clear();
    }

    fn read(&mut self, port: u16) -> u8 {
        match port {
            I8042_DATA => {
                let b = self.queue.pop_front().unwrap_or(0);
                if !self.queue.is_empty() {
                    let _ = self.irq.trigger();
                }
                b
            }
            _ => I8042_STATUS_SYS | if self.queue.is_empty() { 0 } else { I8042_STATUS_OBF },
        }
    }
}

/// Every device of one machine. vCPU threads share it behind a mutex: port I/O is rare
/// enough (a console line, a reset) that one lock is simpler than per-device ones.
pub struct Devices {
    pub serial: Serial<IrqTrigger, NoEvents, SerialOut>,
    pub i8042: I8042,
    pub rtc: super::rtc::Rtc,
    /// virtio-mmio devices, device `i` at `virtio::MMIO_BASE + i * virtio::MMIO_SIZE`.
    pub virtio: Vec<super::virtio::Mmio>,
}

impl Devices {
    pub fn new(serial_irq: EventFd, kbd_irq: EventFd, out: SerialOut) -> Self {
        Devices {
            serial: Serial::new(IrqTrigger(serial_irq), out),
            i8042: I8042 { queue: Default::default(), irq: IrqTrigger(kbd_irq) },
            rtc: Default::default(),
            virtio: Vec::new(),
        }
    }

    /// Console input: bytes for the guest's UART receive path (as typed on a console). Takes
    /// what fits in the 16550's FIFO and says how many; the rest is for the caller to retry.
    pub fn serial_input(&mut self, bytes: &[u8]) -> usize {
        let room = self.serial.fifo_capacity().min(bytes.len());
        match self.serial.enqueue_raw_bytes(&bytes[..room]) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = ?e, "serial input failed");
                0
            }
        }
    }

    pub fn pio_read(&mut self, port: u16, data: &mut [u8]) {
        match port {
            COM1..=0x3ff if data.len() == 1 => data[0] = self.serial.read((port - COM1) as u8),
            I8042_DATA | I8042_COMMAND if data.len() == 1 => data[0] = self.i8042.read(port),
            super::rtc::INDEX_PORT | super::rtc::DATA_PORT if data.len() == 1 => data[0] = self.rtc.read(port),
            acpi::SLEEP_STATUS_PORT => data.fill(0),
            _ => data.fill(0xff),
        }
    }

    pub fn pio_write(&mut self, port: u16, data: &[u8]) -> Option<GuestRequest> {
        match port {
            COM1..=0x3ff if data.len() == 1 => {
                if let Err(e) = self.serial.write((port - COM1) as u8, data[0]) {
                    tracing::warn!(error = ?e, "serial write failed");
                }
                None
            }
            I8042_COMMAND if data.first() == Some(&I8042_RESET_CMD) => Some(GuestRequest::Reset),
            super::rtc::INDEX_PORT | super::rtc::DATA_PORT if data.len() == 1 => {
                self.rtc.write(port, data[0]);
                None
            }
            POWEROFF_PORT => Some(GuestRequest::PowerOff),
            acpi::SLEEP_CONTROL_PORT | acpi::RESET_PORT if data.len() == 1 => match acpi::power_write(port, data[0]) {
                Some(acpi::PowerRequest::PowerOff) => Some(GuestRequest::PowerOff),
                Some(acpi::PowerRequest::Reset) => Some(GuestRequest::Reset),
                None => None,
            },
            _ => None,
        }
    }

    fn virtio_at(&mut self, addr: u64) -> Option<(&mut super::virtio::Mmio, u64)> {
        use super::virtio::{MMIO_BASE, MMIO_SIZE};
        let i = addr.checked_sub(MMIO_BASE)? / MMIO_SIZE;
        let dev = self.virtio.get_mut(i as usize)?;
        Some((dev, (addr - MMIO_BASE) % MMIO_SIZE))
    }

    /// MMIO: the virtio devices; anything else reads as all ones.
    pub fn mmio_read(&mut self, addr: u64, data: &mut [u8]) {
        match self.virtio_at(addr) {
            Some((d, off)) => {
                d.read(off, data);
                tracing::trace!(addr = format_args!("{addr:#x}"), ?data, "virtio read");
            }
            None => data.fill(0xff),
        }
    }

    pub fn mmio_write(&mut self, addr: u64, data: &[u8]) {
        tracing::trace!(addr = format_args!("{addr:#x}"), ?data, "mmio write");
        if let Some((d, off)) = self.virtio_at(addr) {
            d.write(off, data);
        }
    }
}
