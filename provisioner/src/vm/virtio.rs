//! virtio 1.x devices over the virtio-mmio transport (register layout version 2), on the
//! VMM's MMIO bus, described to the guest on its command line
//! (`virtio_mmio.device=4K@<addr>:<irq>`, what Firecracker does). The split virtqueues are
//! rust-vmm's `virtio-queue`; the devices are ours and small:
//!
//! * [`Block`]: a raw (sparse) image file; read, write, flush (`fdatasync`), discard (punches
//!   holes) and get-id, with a token bucket on bytes and operations per second (the plan's
//!   I/O limits).
//! * [`Net`]: a TAP device the provisioner made and attached to the host bridge (its
//!   host-side protections sit on the TAP, out of the guest's reach); a thread reads frames
//!   from the TAP into the receive queue.
//! * [`Rng`]: entropy from the host's `/dev/urandom` (opened before the seccomp filter).
//!
//! Requests are served on the vCPU thread that writes `QueueNotify` (one device lock, no
//! extra threads but the network receiver), and completion raises the device's interrupt
//! through an irqfd.

use super::devices::IrqTrigger;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};
use vm_superio::Trigger;

/// First device's MMIO window (in the gap below 4 GiB), one 4 KiB window each.
pub const MMIO_BASE: u64 = 0xd000_0000;
pub const MMIO_SIZE: u64 = 0x1000;
/// Their interrupts: ISA lines free on this machine (COM1 is 4, the i8042 1).
pub const FIRST_IRQ: u32 = 5;

const VIRTIO_F_VERSION_1: u64 = 1 << 32;
const MAGIC: u32 = 0x7472_6976; // "virt"
const VENDOR: u32 = 0x4c53_5356; // "VSSL"
const STATUS_DRIVER_OK: u32 = 4;
const STATUS_FEATURES_OK: u32 = 8;
const STATUS_FAILED: u32 = 0x80;
const INT_USED_RING: u32 = 1;

/// What a virtio device does behind the transport.
pub trait Device: Send {
    fn device_type(&self) -> u32;
    /// Feature bits besides VIRTIO_F_VERSION_1.
    fn features(&self) -> u64;
    fn queue_sizes(&self) -> &'static [u16];
    fn config(&self) -> Vec<u8>;
    /// Serves what the driver made available on `queue`; returns whether it used any
    /// buffer (the transport then interrupts the guest).
    fn process(&mut self, queue: usize, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool;
    /// A frame from the host (network devices only); true when it went into a buffer.
    fn receive(&mut self, _frame: &[u8], _queues: &mut [Queue], _mem: &GuestMemoryMmap) -> bool {
        false
    }
}

/// One virtio-mmio device: registers, queues and its interrupt.
pub struct Mmio {
    pub device: Box<dyn Device>,
    queues: Vec<Queue>,
    queue_sel: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    status: u32,
    interrupt_status: u32,
    irq: IrqTrigger,
    mem: GuestMemoryMmap,
}

impl Mmio {
    pub fn new(device: Box<dyn Device>, irq: IrqTrigger, mem: GuestMemoryMmap) -> Self {
        let queues = device.queue_sizes().iter().map(|s| Queue::new(*s).expect("queue sizes are powers of two")).collect();
        Mmio {
            device,
            queues,
            queue_sel: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            status: 0,
            interrupt_status: 0,
            irq,
            mem,
        }
    }

    fn reset(&mut self) {
        self.queues = self.device.queue_sizes().iter().map(|s| Queue::new(*s).expect("queue sizes are powers of two")).collect();
        self.queue_sel = 0;
        self.driver_features = 0;
        self.status = 0;
        self.interrupt_status = 0;
    }

    fn features(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1
    }

    fn queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    pub fn interrupt(&mut self) {
        self.interrupt_status |= INT_USED_RING;
        if let Err(e) = self.irq.trigger() {
            tracing::warn!(error = %e, "cannot raise a virtio interrupt");
        }
    }

    pub fn ready(&self) -> bool {
        self.status & STATUS_DRIVER_OK != 0 && self.status & STATUS_FAILED == 0
    }

    /// Hands a frame from the host to the device (its receive queue), interrupting the guest.
    pub fn deliver(&mut self, frame: &[u8]) {
        if self.ready() && self.device.receive(frame, &mut self.queues, &self.mem) {
            self.interrupt();
        }
    }

    /// Runs the device on `queue` and interrupts when it used buffers.
    pub fn kick(&mut self, queue: usize) {
        if !self.ready() || queue >= self.queues.len() {
            return;
        }
        if self.device.process(queue, &mut self.queues, &self.mem) {
            self.interrupt();
        }
    }

    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= 0x100 {
            let cfg = self.device.config();
            for (i, b) in data.iter_mut().enumerate() {
                *b = cfg.get((offset - 0x100) as usize + i).copied().unwrap_or(0);
            }
            return;
        }
        let v: u32 = match offset {
            0x000 => MAGIC,
            0x004 => 2,
            0x008 => self.device.device_type(),
            0x00c => VENDOR,
            0x010 => match self.device_features_sel {
                0 => self.features() as u32,
                1 => (self.features() >> 32) as u32,
                _ => 0,
            },
            0x034 => self.queue().map(|q| q.max_size() as u32).unwrap_or(0),
            0x044 => self.queue().map(|q| q.ready() as u32).unwrap_or(0),
            0x060 => self.interrupt_status,
            0x070 => self.status,
            0x0fc => 0, // config generation: the configuration never changes
            _ => 0,
        };
        let bytes = v.to_le_bytes();
        let n = data.len().min(4);
        data[..n].copy_from_slice(&bytes[..n]);
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= 0x100 {
            return; // no writable configuration
        }
        if data.len() != 4 {
            return;
        }
        let v = u32::from_le_bytes(data.try_into().expect("4 bytes"));
        match offset {
            0x014 => self.device_features_sel = v,
            0x020 => match self.driver_features_sel {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | v as u64,
                1 => self.driver_features = (self.driver_features & 0xffff_ffff) | ((v as u64) << 32),
                _ => {}
            },
            0x024 => self.driver_features_sel = v,
            0x030 => self.queue_sel = v,
            0x038 => {
                if let Some(q) = self.queue() {
                    q.set_size(v as u16);
                }
            }
            0x044 => {
                if let Some(q) = self.queue() {
                    q.set_ready(v == 1);
                }
            }
            0x050 => self.kick(v as usize),
            0x064 => self.interrupt_status &= !v,
            0x070 => {
                if v == 0 {
                    self.reset();
                } else {
                    // A driver that takes features we do not offer fails negotiation.
                    if v & STATUS_FEATURES_OK != 0 && self.driver_features & !self.features() != 0 {
                        self.status = v & !STATUS_FEATURES_OK;
                        return;
                    }
                    self.status = v;
                }
            }
            0x080 => self.queue().into_iter().for_each(|q| q.set_desc_table_address(Some(v), None)),
            0x084 => self.queue().into_iter().for_each(|q| q.set_desc_table_address(None, Some(v))),
            0x090 => self.queue().into_iter().for_each(|q| q.set_avail_ring_address(Some(v), None)),
            0x094 => self.queue().into_iter().for_each(|q| q.set_avail_ring_address(None, Some(v))),
            0x0a0 => self.queue().into_iter().for_each(|q| q.set_used_ring_address(Some(v), None)),
            0x0a4 => self.queue().into_iter().for_each(|q| q.set_used_ring_address(None, Some(v))),
            _ => {}
        }
    }
}

/// A descriptor's guest range and direction.
#[derive(Clone, Copy, Debug)]
struct Desc {
    addr: GuestAddress,
    len: u32,
    write: bool,
}

/// Pops every available chain of `queue` as (head, descriptors).
fn pop_all(queue: &mut Queue, mem: &GuestMemoryMmap) -> Vec<(u16, Vec<Desc>)> {
    let mut out = Vec::new();
    let Ok(iter) = queue.iter(mem) else { return out };
    for chain in iter {
        let head = chain.head_index();
        let descs = chain.map(|d| Desc { addr: d.addr(), len: d.len(), write: d.is_write_only() }).collect();
        out.push((head, descs));
    }
    out
}

fn add_used(queue: &mut Queue, mem: &GuestMemoryMmap, head: u16, len: u32) {
    if let Err(e) = queue.add_used(mem, head, len) {
        tracing::warn!(error = %e, "virtio: cannot return a buffer");
    }
}

/// A token bucket: `rate` tokens a second, bursting up to one second's worth. Zero = no limit.
#[derive(Debug)]
pub struct TokenBucket {
    rate: u64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u64) -> Self {
        TokenBucket { rate, tokens: rate as f64, last: Instant::now() }
    }

    /// How long to wait before `cost` may be spent (and spends it: the bucket may go into
    /// debt, which the wait pays back).
    pub fn take(&mut self, cost: u64) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate as f64).min(self.rate as f64);
        self.last = now;
        self.tokens -= cost as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate as f64)
        }
    }
}

/// The plan's disk I/O ceilings (`PlanResources::io_limits()`; 0 = none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IoRates {
    #[serde(default)]
    pub read_bytes_per_sec: u64,
    #[serde(default)]
    pub write_bytes_per_sec: u64,
    #[serde(default)]
    pub read_iops: u64,
    #[serde(default)]
    pub write_iops: u64,
}

impl From<vessel_core::resources::IoLimits> for IoRates {
    fn from(l: vessel_core::resources::IoLimits) -> Self {
        IoRates {
            read_bytes_per_sec: l.read_bytes_per_sec.unwrap_or(0),
            write_bytes_per_sec: l.write_bytes_per_sec.unwrap_or(0),
            read_iops: l.read_iops.unwrap_or(0),
            write_iops: l.write_iops.unwrap_or(0),
        }
    }
}

const BLK_T_IN: u32 = 0;
const BLK_T_OUT: u32 = 1;
const BLK_T_FLUSH: u32 = 4;
const BLK_T_GET_ID: u32 = 8;
const BLK_T_DISCARD: u32 = 11;
const BLK_S_OK: u8 = 0;
const BLK_S_IOERR: u8 = 1;
const BLK_S_UNSUPP: u8 = 2;
const BLK_F_SEG_MAX: u64 = 1 << 2;
const BLK_F_RO: u64 = 1 << 5;
const BLK_F_FLUSH: u64 = 1 << 9;
const BLK_F_DISCARD: u64 = 1 << 13;
const SEG_MAX: u32 = 126;
const MAX_DISCARD_SECTORS: u32 = 1 << 22;

/// virtio-blk over a raw image file.
pub struct Block {
    file: File,
    sectors: u64,
    /// Read bytes, read operations, written bytes, write operations.
    buckets: [TokenBucket; 4],
    /// Time spent waiting on the I/O limit (for tests and logs).
    pub throttled: Duration,
    /// Offered to the guest as read-only (`VIRTIO_BLK_F_RO`); writes and discards fail.
    read_only: bool,
}

impl Block {
    pub fn new(file: File, rates: IoRates) -> std::io::Result<Self> {
        let sectors = file.metadata()?.len() / 512;
        let buckets = [rates.read_bytes_per_sec, rates.read_iops, rates.write_bytes_per_sec, rates.write_iops].map(TokenBucket::new);
        Ok(Block { file, sectors, buckets, throttled: Duration::ZERO, read_only: false })
    }

    /// A read-only disk (the NoCloud seed): the file is opened read-only by the caller, the
    /// guest is told, and a write or discard it sends anyway fails with an I/O error.
    pub fn read_only(file: File) -> std::io::Result<Self> {
        Ok(Block { read_only: true, ..Block::new(file, IoRates::default())? })
    }

    /// Waits until the plan's limits allow one operation of `bytes` (a read, or a write).
    fn throttle(&mut self, write: bool, bytes: u64) {
        let b = if write { 2 } else { 0 };
        let wait = self.buckets[b].take(bytes).max(self.buckets[b + 1].take(1));
        if !wait.is_zero() {
            self.throttled += wait;
            std::thread::sleep(wait);
        }
    }

    /// Serves one request; returns (status, bytes written into guest memory).
    fn request(&mut self, descs: &[Desc], mem: &GuestMemoryMmap) -> Result<(u8, u32), ()> {
        let (first, rest) = descs.split_first().ok_or(())?;
        let (status, data) = rest.split_last().ok_or(())?;
        if first.write || first.len < 16 || !status.write || status.len < 1 {
            return Err(());
        }
        let kind: u32 = mem.read_obj(first.addr).map_err(|_| ())?;
        let sector: u64 = mem.read_obj(first.addr.unchecked_add(8)).map_err(|_| ())?;
        let total: u64 = data.iter().map(|d| d.len as u64).sum();
        let disk_bytes = self.sectors * 512;
        let in_range =
            move |sector: u64, bytes: u64| sector.checked_mul(512).and_then(|s| s.checked_add(bytes)).is_some_and(|end| end <= disk_bytes);
        let mut written = 0u32;
        let st = match kind {
            BLK_T_IN | BLK_T_OUT if !in_range(sector, total) => BLK_S_IOERR,
            BLK_T_OUT | BLK_T_DISCARD if self.read_only => BLK_S_IOERR,
            BLK_T_IN => {
                self.throttle(false, total);
                let mut at = sector * 512;
                let mut ok = BLK_S_OK;
                let mut buf = chunk_buffer(total);
                'read: for d in data.iter().filter(|d| d.write) {
                    for (addr, len) in chunks(d.addr, d.len) {
                        let buf = &mut buf[..len];
                        if self.file.read_exact_at(buf, at).is_err() || mem.write_slice(buf, addr).is_err() {
                            ok = BLK_S_IOERR;
                            break 'read;
                        }
                        at += len as u64;
                    }
                    written += d.len;
                }
                ok
            }
            BLK_T_OUT => {
                self.throttle(true, total);
                let mut at = sector * 512;
                let mut ok = BLK_S_OK;
                let mut buf = chunk_buffer(total);
                'write: for d in data.iter().filter(|d| !d.write) {
                    for (addr, len) in chunks(d.addr, d.len) {
                        let buf = &mut buf[..len];
                        if mem.read_slice(buf, addr).is_err() || self.file.write_all_at(buf, at).is_err() {
                            ok = BLK_S_IOERR;
                            break 'write;
                        }
                        at += len as u64;
                    }
                }
                ok
            }
            BLK_T_FLUSH => {
                self.throttle(true, 0);
                if self.file.sync_data().is_ok() {
                    BLK_S_OK
                } else {
                    BLK_S_IOERR
                }
            }
            BLK_T_GET_ID => match data.iter().find(|d| d.write) {
                Some(d) => {
                    let mut id = [0u8; 20];
                    id[..11].copy_from_slice(b"vessel-disk");
                    let n = (d.len as usize).min(20);
                    if mem.write_slice(&id[..n], d.addr).is_ok() {
                        written = n as u32;
                        BLK_S_OK
                    } else {
                        BLK_S_IOERR
                    }
                }
                None => BLK_S_IOERR,
            },
            BLK_T_DISCARD => {
                let mut ok = BLK_S_OK;
                for d in data.iter().filter(|d| !d.write) {
                    for i in 0..(d.len / 16) {
                        let at = d.addr.unchecked_add(16 * i as u64);
                        let (Ok(s), Ok(n)) = (mem.read_obj::<u64>(at), mem.read_obj::<u32>(at.unchecked_add(8))) else {
                            ok = BLK_S_IOERR;
                            break;
                        };
                        self.throttle(true, 0);
                        if !in_range(s, n as u64 * 512) || punch_hole(&self.file, s * 512, n as u64 * 512).is_err() {
                            ok = BLK_S_IOERR;
                        }
                    }
                }
                ok
            }
            _ => BLK_S_UNSUPP,
        };
        mem.write_obj(st, status.addr).map_err(|_| ())?;
        Ok((st, written + 1))
    }
}

/// Gives a range of the image back to the host filesystem (the image stays its size).
fn punch_hole(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    // SAFETY: fallocate on a file descriptor we own, with integer arguments.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, offset as i64, len as i64) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Device for Block {
    fn device_type(&self) -> u32 {
        2
    }
    fn features(&self) -> u64 {
        if self.read_only {
            BLK_F_SEG_MAX | BLK_F_RO
        } else {
            BLK_F_SEG_MAX | BLK_F_FLUSH | BLK_F_DISCARD
        }
    }
    fn queue_sizes(&self) -> &'static [u16] {
        &[256]
    }
    fn config(&self) -> Vec<u8> {
        let mut c = vec![0u8; 60];
        c[0..8].copy_from_slice(&self.sectors.to_le_bytes());
        c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        c[36..40].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes()); // max_discard_sectors
        c[40..44].copy_from_slice(&1u32.to_le_bytes()); // max_discard_seg
        c[44..48].copy_from_slice(&8u32.to_le_bytes()); // discard_sector_alignment (4 KiB)
        c
    }
    fn process(&mut self, queue: usize, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool {
        let q = &mut queues[queue];
        let mut used = false;
        loop {
            let chains = pop_all(q, mem);
            if chains.is_empty() {
                break;
            }
            for (head, descs) in chains {
                let len = match self.request(&descs, mem) {
                    Ok((_, len)) => len,
                    Err(()) => 0,
                };
                add_used(q, mem, head, len);
                used = true;
            }
        }
        used
    }
}

const NET_F_MAC: u64 = 1 << 5;
/// `struct virtio_net_hdr_v1` (with `num_buffers`), in front of every frame.
const NET_HDR_LEN: usize = 12;
const NET_RX: usize = 0;
const NET_TX: usize = 1;

/// virtio-net on a TAP device (opened without a vnet header: the 12-byte virtio header is
/// stripped on transmit and zeroed on receive; no offloads are offered).
pub struct Net {
    pub tap: File,
    pub mac: [u8; 6],
}

impl Device for Net {
    /// Copies one frame from the TAP into the next receive buffer. False: no buffer (the
    /// frame is dropped, as a NIC with a full ring does).
    fn receive(&mut self, frame: &[u8], queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool {
        let q = &mut queues[NET_RX];
        let Some(chain) = q.pop_descriptor_chain(mem) else { return false };
        let head = chain.head_index();
        let mut hdr = [0u8; NET_HDR_LEN];
        hdr[10] = 1; // num_buffers
        let mut src: Vec<u8> = hdr.to_vec();
        src.extend_from_slice(frame);
        let mut at = 0usize;
        for d in chain.filter(|d| d.is_write_only()) {
            if at >= src.len() {
                break;
            }
            let n = (d.len() as usize).min(src.len() - at);
            if mem.write_slice(&src[at..at + n], d.addr()).is_err() {
                break;
            }
            at += n;
        }
        add_used(q, mem, head, at as u32);
        true
    }

    fn device_type(&self) -> u32 {
        1
    }
    fn features(&self) -> u64 {
        NET_F_MAC
    }
    fn queue_sizes(&self) -> &'static [u16] {
        &[256, 256]
    }
    fn config(&self) -> Vec<u8> {
        let mut c = self.mac.to_vec();
        c.extend([0u8; 2]);
        c
    }
    fn process(&mut self, queue: usize, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool {
        if queue != NET_TX {
            return false; // receive buffers are used when frames arrive
        }
        let q = &mut queues[NET_TX];
        let mut used = false;
        loop {
            let chains = pop_all(q, mem);
            if chains.is_empty() {
                break;
            }
            for (head, descs) in chains {
                let mut frame = Vec::new();
                for d in descs.iter().filter(|d| !d.write) {
                    let mut buf = vec![0u8; d.len as usize];
                    if mem.read_slice(&mut buf, d.addr).is_err() {
                        break;
                    }
                    frame.extend(buf);
                }
                if frame.len() > NET_HDR_LEN {
                    if let Err(e) = self.tap.write(&frame[NET_HDR_LEN..]) {
                        tracing::debug!(error = %e, "tap write failed");
                    }
                }
                add_used(q, mem, head, 0);
                used = true;
            }
        }
        used
    }
}

/// virtio-rng: bytes from the host's /dev/urandom.
pub struct Rng {
    pub source: File,
    /// Bytes handed to the guest so far (the first request is logged: proof the guest's
    /// driver uses the device).
    pub served: u64,
}

impl Device for Rng {
    fn device_type(&self) -> u32 {
        4
    }
    fn features(&self) -> u64 {
        0
    }
    fn queue_sizes(&self) -> &'static [u16] {
        &[64]
    }
    fn config(&self) -> Vec<u8> {
        Vec::new()
    }
    fn process(&mut self, queue: usize, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool {
        let q = &mut queues[queue];
        let mut used = false;
        for (head, descs) in pop_all(q, mem) {
            let mut n = 0u32;
            for d in descs.iter().filter(|d| d.write) {
                let mut buf = vec![0u8; (d.len as usize).min(64 * 1024)];
                if self.source.read_exact(&mut buf).is_err() || mem.write_slice(&buf, d.addr).is_err() {
                    break;
                }
                n += buf.len() as u32;
            }
            if self.served == 0 && n > 0 {
                tracing::info!(bytes = n, "virtio-rng: the guest's first entropy request served");
            }
            self.served += n as u64;
            add_used(q, mem, head, n);
            used = true;
        }
        used
    }
}

/// Opens an existing TAP device by name (the provisioner made it, attached it to the bridge
/// and put its protections on it), without packet information or vnet headers.
pub fn open_tap(name: &str) -> std::io::Result<File> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const IFF_TAP: libc::c_short = 0x0002;
    const IFF_NO_PI: libc::c_short = 0x1000;
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad TAP name"));
    }
    let f = std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
    // SAFETY: ifreq is plain data; TUNSETIFF reads its name and flags.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in name.bytes().enumerate() {
            req.ifr_name[i] = b as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI;
        if libc::ioctl(f.as_raw_fd(), TUNSETIFF as _, &req) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(f)
}

/// Disk data passes through the VMM in pieces of at most this size: a request's buffer is
/// bounded whatever lengths the guest's descriptors claim (the VMM's memory is overhead, and
/// a guest must not be able to make it allocate gigabytes).
const BLOCK_CHUNK: usize = 64 * 1024;

fn chunk_buffer(total: u64) -> Vec<u8> {
    vec![0u8; (total as usize).min(BLOCK_CHUNK)]
}

/// A descriptor's guest range in pieces of at most [`BLOCK_CHUNK`] bytes.
fn chunks(addr: GuestAddress, len: u32) -> impl Iterator<Item = (GuestAddress, usize)> {
    (0..len as usize)
        .step_by(BLOCK_CHUNK)
        .map(move |off| (addr.checked_add(off as u64).unwrap_or(GuestAddress(u64::MAX)), (len as usize - off).min(BLOCK_CHUNK)))
}

/// How the ACPI DSDT describes the `index`th device (same window and interrupt as
/// [`cmdline_device`]).
pub fn acpi_device(index: usize) -> super::acpi::MmioDevice {
    super::acpi::MmioDevice { base: (MMIO_BASE + index as u64 * MMIO_SIZE) as u32, size: MMIO_SIZE as u32, irq: FIRST_IRQ + index as u32 }
}

/// The kernel command-line word describing device `index` to Linux's virtio-mmio driver (for
/// kernels built with `VIRTIO_MMIO_CMDLINE_DEVICES`, the test kernel's only way to find them).
pub fn cmdline_device(index: usize) -> String {
    format!("virtio_mmio.device=4K@{:#x}:{}", MMIO_BASE + index as u64 * MMIO_SIZE, FIRST_IRQ + index as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_bucket_holds_the_rate() {
        let mut b = TokenBucket::new(1000);
        assert_eq!(b.take(1000), Duration::ZERO, "a second's burst is free");
        let w = b.take(500);
        assert!(w >= Duration::from_millis(450) && w <= Duration::from_millis(510), "{w:?}");
        assert_eq!(TokenBucket::new(0).take(u64::MAX), Duration::ZERO, "0 = no limit");
    }

    #[test]
    fn disk_data_passes_in_bounded_pieces() {
        let pieces: Vec<_> = chunks(GuestAddress(0x10_0000), 150_000).collect();
        assert_eq!(pieces, [(GuestAddress(0x10_0000), 65_536), (GuestAddress(0x11_0000), 65_536), (GuestAddress(0x12_0000), 18_928)]);
        assert_eq!(chunk_buffer(512).len(), 512);
        assert_eq!(chunk_buffer(u32::MAX as u64 * 3).len(), BLOCK_CHUNK, "whatever the guest claims");
        // An address that would wrap fails the copy instead of wrapping.
        let last: Vec<_> = chunks(GuestAddress(u64::MAX - 10), 100_000).collect();
        assert_eq!(last[1].0, GuestAddress(u64::MAX));
    }

    #[test]
    fn cmdline_devices_name_window_and_interrupt() {
        assert_eq!(cmdline_device(0), "virtio_mmio.device=4K@0xd0000000:5");
        assert_eq!(cmdline_device(2), "virtio_mmio.device=4K@0xd0002000:7");
    }
}
