//! Loading a kernel and the boot information it is handed.
//!
//! PVH (the x86 boot protocol of an ELF with a `XEN_ELFNOTE_PHYS32_ENTRY` note): the image is
//! loaded at its physical addresses, a `hvm_start_info` (version 1, with the memory map, the
//! command line and an optional initrd module) is written in low memory, and vCPU 0 enters the
//! note's address in 32-bit flat protected mode with `%ebx` = the start info's address.
//!
//! bzImage (Linux's own format, through linux-loader): the protected-mode kernel is loaded at
//! 1 MiB, a zero page (`boot_params`: setup header, e820 map, command line, initrd) is
//! written, and vCPU 0 enters the 32-bit boot protocol: flat protected mode, `%esi` = zero
//! page, `__BOOT_CS` = 0x10 and `__BOOT_DS` = 0x18. (The 64-bit entry would need long mode
//! set up from outside, which triple-faults on nested `kvm_pvm` hosts.)
//!
//! Low memory layout (all below 640 KiB, which the guest is told is RAM it may reuse later):
//! `0x500` GDT, `0x6000` start info, `0x6040` memory map, `0x7000` module list (PVH) or zero
//! page (bzImage), `0x20000` command line.

use super::memory::ranges;
use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use thiserror::Error;
use vm_memory::bitmap::BitmapSlice;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, ReadVolatile, VolatileMemoryError, VolatileSlice};

pub const GDT_ADDR: u64 = 0x500;
pub const START_INFO_ADDR: u64 = 0x6000;
pub const MEMMAP_ADDR: u64 = 0x6040;
pub const MODLIST_ADDR: u64 = 0x7000;
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Segment selectors of the entry state (Linux's `__BOOT_CS`/`__BOOT_DS`, also used for PVH).
pub const CODE_SELECTOR: u16 = 0x10;
pub const DATA_SELECTOR: u16 = 0x18;
pub const TSS_SELECTOR: u16 = 0x20;
/// Entries of the boot GDT (null, unused, code, data, TSS).
pub const GDT_ENTRIES: u16 = 5;
pub const CMDLINE_ADDR: u64 = 0x20000;
pub const CMDLINE_MAX: usize = 4096;
/// Where high memory starts: kernels load at or above it.
pub const HIMEM_START: u64 = 0x100000;
/// End of usable low RAM (the EBDA and legacy ROM area above it are left out of the map).
pub const EBDA_START: u64 = 0x9fc00;

const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;

/// Where vCPU 0 starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub rip: u64,
    /// `%ebx` for PVH (the start info address).
    pub rbx: u64,
    /// `%esi` for the Linux 32-bit boot protocol (the zero page address).
    pub rsi: u64,
    /// PVH (the only protocol where the test guest's all-vCPUs-at-entry start applies).
    pub pvh: bool,
}

#[derive(Debug, Error)]
pub enum BootError {
    #[error("cannot open kernel {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("cannot load kernel {path}: {source}")]
    Load { path: PathBuf, source: linux_loader::loader::Error },
    #[error("kernel {0} has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); build it with CONFIG_PVH")]
    NoPvhNote(PathBuf),
    #[error("command line is invalid: {0}")]
    Cmdline(linux_loader::cmdline::Error),
    #[error("cannot write boot information into guest memory: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
    #[error("cannot read initrd {path}: {source}")]
    Initrd { path: PathBuf, source: std::io::Error },
    #[error("initrd of {size} bytes does not fit in guest RAM below 3 GiB above the kernel")]
    InitrdTooBig { size: u64 },
    #[error("kernel {0} is neither an ELF (PVH) nor a bzImage")]
    UnknownFormat(PathBuf),
    #[error("command line is {len} bytes; the kernel accepts at most {max}")]
    CmdlineTooLong { len: usize, max: usize },
}

/// The memory map the guest is given: low RAM up to the EBDA, then RAM from 1 MiB.
pub fn memory_map(memory_mib: u64) -> Vec<hvm_memmap_table_entry> {
    let mut out = vec![entry(0, EBDA_START)];
    for (start, size) in ranges(memory_mib) {
        let (start, size) = if start == 0 { (HIMEM_START, size - HIMEM_START) } else { (start, size) };
        out.push(entry(start, size));
    }
    out
}

fn entry(addr: u64, size: u64) -> hvm_memmap_table_entry {
    hvm_memmap_table_entry { addr, size, type_: E820_RAM, reserved: 0 }
}

/// Loads a PVH ELF kernel (and initrd) and writes its start info; returns where to enter.
/// `image` is the kernel file, opened once at setup (a reset reloads it after the seccomp
/// filter forbids opening files); `kernel` only names it in errors.
pub fn load_pvh(
    mem: &GuestMemoryMmap,
    memory_mib: u64,
    kernel: &Path,
    image: &mut ImageFile,
    cmdline: &str,
    initrd: Option<&mut ImageFile>,
) -> Result<Entry, BootError> {
    let loaded =
        Elf::load(mem, None, image, Some(GuestAddress(HIMEM_START))).map_err(|source| BootError::Load { path: kernel.into(), source })?;
    let PvhBootCapability::PvhEntryPresent(entry) = loaded.pvh_boot_cap else {
        return Err(BootError::NoPvhNote(kernel.into()));
    };

    write_cmdline(mem, kernel, cmdline)?;

    let map = memory_map(memory_mib);
    for (i, e) in map.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(MEMMAP_ADDR + (i * std::mem::size_of::<hvm_memmap_table_entry>()) as u64))?;
    }
    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE_ADDR,
        memmap_paddr: MEMMAP_ADDR,
        memmap_entries: map.len() as u32,
        rsdp_paddr: super::acpi::RSDP_ADDR,
        ..Default::default()
    };
    if let Some(data) = initrd {
        let (addr, size) = write_initrd(mem, memory_mib, data, loaded.kernel_end)?;
        mem.write_obj(hvm_modlist_entry { paddr: addr, size, cmdline_paddr: 0, reserved: 0 }, GuestAddress(MODLIST_ADDR))?;
        info.nr_modules = 1;
        info.modlist_paddr = MODLIST_ADDR;
    }
    mem.write_obj(info, GuestAddress(START_INFO_ADDR))?;
    write_gdt(mem)?;
    Ok(Entry { rip: entry.0, rbx: START_INFO_ADDR, rsi: 0, pvh: true })
}

/// A flat GDT matching the entry state the vCPU registers describe, so a kernel that reloads
/// segments before its own `lgdt` finds the same ones.
fn write_gdt(mem: &GuestMemoryMmap) -> Result<(), BootError> {
    let gdt: [u64; GDT_ENTRIES as usize] = [0, 0, 0x00cf_9b00_0000_ffff, 0x00cf_9300_0000_ffff, 0x0000_8b00_0000_0067];
    for (i, d) in gdt.iter().enumerate() {
        mem.write_obj(*d, GuestAddress(GDT_ADDR + 8 * i as u64))?;
    }
    Ok(())
}

fn write_cmdline(mem: &GuestMemoryMmap, kernel: &Path, cmdline: &str) -> Result<(), BootError> {
    let mut cl = Cmdline::new(CMDLINE_MAX).map_err(BootError::Cmdline)?;
    if !cmdline.is_empty() {
        cl.insert_str(cmdline).map_err(BootError::Cmdline)?;
    }
    linux_loader::loader::load_cmdline(mem, GuestAddress(CMDLINE_ADDR), &cl)
        .map_err(|source| BootError::Load { path: kernel.into(), source })
}

/// Puts the initrd as high as possible in RAM below 3 GiB, page aligned, above the kernel,
/// read from its file straight into guest memory.
fn write_initrd(mem: &GuestMemoryMmap, memory_mib: u64, data: &mut ImageFile, kernel_end: u64) -> Result<(u64, u64), BootError> {
    let size = data.len;
    let low_top = ranges(memory_mib)[0].1;
    let addr = low_top.checked_sub(size).map(|a| a & !0xfff).filter(|a| *a >= kernel_end);
    let addr = addr.ok_or(BootError::InitrdTooBig { size })?;
    data.pos = 0;
    mem.read_exact_volatile_from(GuestAddress(addr), data, size as usize)?;
    Ok((addr, size))
}

/// Loads a bzImage and writes its zero page; returns the 32-bit boot protocol entry.
pub fn load_bzimage(
    mem: &GuestMemoryMmap,
    memory_mib: u64,
    kernel: &Path,
    image: &mut ImageFile,
    cmdline: &str,
    initrd: Option<&mut ImageFile>,
) -> Result<Entry, BootError> {
    let loaded = BzImage::load(mem, None, image, Some(GuestAddress(HIMEM_START)))
        .map_err(|source| BootError::Load { path: kernel.into(), source })?;
    let mut hdr = loaded.setup_header.ok_or_else(|| BootError::UnknownFormat(kernel.into()))?;
    let max = if hdr.cmdline_size > 0 { hdr.cmdline_size as usize } else { 255 };
    if cmdline.len() > max {
        return Err(BootError::CmdlineTooLong { len: cmdline.len(), max });
    }
    write_cmdline(mem, kernel, cmdline)?;
    hdr.type_of_loader = 0xff; // "undefined" boot loader
    hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
    hdr.cmdline_size = cmdline.len() as u32 + 1;
    hdr.loadflags |= 0x80; // CAN_USE_HEAP
    hdr.heap_end_ptr = 0xfe00;
    if let Some(data) = initrd {
        let (addr, size) = write_initrd(mem, memory_mib, data, loaded.kernel_end)?;
        hdr.ramdisk_image = addr as u32;
        hdr.ramdisk_size = size as u32;
    }
    let mut params = boot_params { hdr, ..Default::default() };
    let map = memory_map(memory_mib);
    for (slot, e) in params.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry { addr: e.addr, size: e.size, r#type: e.type_ };
    }
    params.e820_entries = map.len() as u8;
    mem.write_obj(params, GuestAddress(ZERO_PAGE_ADDR))?;
    write_gdt(mem)?;
    Ok(Entry { rip: loaded.kernel_load.0, rbx: 0, rsi: ZERO_PAGE_ADDR, pvh: false })
}

/// Loads `kernel` by its format: an ELF must carry the PVH note.
pub fn load_kernel(
    mem: &GuestMemoryMmap,
    memory_mib: u64,
    kernel: &Path,
    image: &mut ImageFile,
    cmdline: &str,
    initrd: Option<&mut ImageFile>,
) -> Result<Entry, BootError> {
    let mut head = [0u8; 0x206];
    let n = image.read_at(&mut head, 0).map_err(|source| BootError::Open { path: kernel.into(), source })?;
    let head = &head[..n];
    if head.starts_with(b"\x7fELF") {
        load_pvh(mem, memory_mib, kernel, image, cmdline, initrd)
    } else if head.get(0x202..0x206) == Some(b"HdrS") {
        load_bzimage(mem, memory_mib, kernel, image, cmdline, initrd)
    } else {
        Err(BootError::UnknownFormat(kernel.into()))
    }
}

/// A kernel or initrd file, opened once before the process is locked down and read in place
/// (`pread` at its own position: no `lseek`, which the seccomp filter does not allow) straight
/// into guest memory, at boot and again at every reset. Nothing of it stays in the VMM's own
/// memory: reading a 15 MB `vmlinux` whole into a buffer made it most of the VMM's overhead.
#[derive(Debug)]
pub struct ImageFile {
    file: std::fs::File,
    len: u64,
    pos: u64,
}

impl ImageFile {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Self { file, len, pos: 0 })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], at + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}

impl std::io::Read for ImageFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for ImageFile {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let (base, offset) = match to {
            std::io::SeekFrom::Start(p) => (p, 0),
            std::io::SeekFrom::End(d) => (self.len, d),
            std::io::SeekFrom::Current(d) => (self.pos, d),
        };
        self.pos = base.checked_add_signed(offset).ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

impl ReadVolatile for ImageFile {
    fn read_volatile<B: BitmapSlice>(&mut self, buf: &mut VolatileSlice<B>) -> Result<usize, VolatileMemoryError> {
        let guard = buf.ptr_guard_mut();
        // SAFETY: the file descriptor is open (owned by `self.file`), and `guard` points at
        // `buf.len()` bytes of guest memory valid for writes, as `VolatileSlice` guarantees.
        let n = unsafe { libc::pread64(self.file.as_raw_fd(), guard.as_ptr().cast(), buf.len(), self.pos as libc::off64_t) };
        if n < 0 {
            buf.bitmap().mark_dirty(0, buf.len());
            return Err(VolatileMemoryError::IOError(std::io::Error::last_os_error()));
        }
        let n = n as usize;
        buf.bitmap().mark_dirty(0, n);
        self.pos += n as u64;
        Ok(n)
    }
}

/// Opens the kernel (and initrd) once, before the process is locked down.
pub fn open_images(kernel: &Path, initrd: Option<&Path>) -> Result<(ImageFile, Option<ImageFile>), BootError> {
    let k = ImageFile::open(kernel).map_err(|source| BootError::Open { path: kernel.into(), source })?;
    let i = match initrd {
        Some(p) => Some(ImageFile::open(p).map_err(|source| BootError::Initrd { path: p.into(), source })?),
        None => None,
    };
    Ok((k, i))
}

/// RAM the guest is told about, in KiB (what the test guest reports as `ram_kib`).
pub fn ram_kib(memory_mib: u64) -> u64 {
    memory_map(memory_mib).iter().map(|e| e.size).sum::<u64>() / 1024
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::memory::MIB;
    use vm_memory::Bytes;

    #[test]
    fn memory_map_leaves_out_the_legacy_hole() {
        let m = memory_map(256);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].addr, m[0].size), (0, EBDA_START));
        assert_eq!((m[1].addr, m[1].size), (HIMEM_START, 256 * MIB - HIMEM_START));
        assert_eq!(ram_kib(256), 256 * 1024 - 385);
        assert_eq!(memory_map(5120).len(), 3);
    }

    fn guest_memory(mib: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), (mib * MIB) as usize)]).unwrap()
    }

    #[test]
    fn pvh_start_info_carries_memory_map_cmdline_and_initrd() {
        let dir = tempfile::tempdir().unwrap();
        let guest = crate::vm::guest::build(dir.path()).unwrap();
        let mut image = ImageFile::open(&guest.elf).unwrap();
        let mem = guest_memory(64);
        let initrd = vec![0xa5u8; 10_000];
        let initrd_path = dir.path().join("initrd");
        std::fs::write(&initrd_path, &initrd).unwrap();
        let mut initrd_file = ImageFile::open(&initrd_path).unwrap();
        let entry = load_kernel(&mem, 64, &guest.elf, &mut image, "heartbeat x=1", Some(&mut initrd_file)).unwrap();
        assert!(entry.pvh);
        assert_eq!((entry.rip, entry.rbx), (guest.image.0, START_INFO_ADDR));
        let info: hvm_start_info = mem.read_obj(GuestAddress(START_INFO_ADDR)).unwrap();
        assert_eq!((info.magic, info.version, info.memmap_entries), (XEN_HVM_START_MAGIC, 1, 2));
        let e: hvm_memmap_table_entry = mem.read_obj(GuestAddress(info.memmap_paddr + 24)).unwrap();
        assert_eq!((e.addr, e.size, e.type_), (HIMEM_START, 63 * MIB, E820_RAM));
        let mut cmd = [0u8; 14];
        mem.read_slice(&mut cmd, GuestAddress(info.cmdline_paddr)).unwrap();
        assert_eq!(&cmd, b"heartbeat x=1\0");
        assert_eq!(info.nr_modules, 1);
        let m: hvm_modlist_entry = mem.read_obj(GuestAddress(info.modlist_paddr)).unwrap();
        assert_eq!(m.size, 10_000);
        assert_eq!(m.paddr % 4096, 0);
        assert!(m.paddr + m.size <= 64 * MIB && m.paddr >= guest.image.1);
        let mut back = vec![0u8; 10_000];
        mem.read_slice(&mut back, GuestAddress(m.paddr)).unwrap();
        assert_eq!(back, initrd);
    }

    #[test]
    fn bzimage_zero_page_has_header_e820_cmdline_and_initrd() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::vm::guest::build_bzimage_stub(dir.path()).unwrap();
        let mut image = ImageFile::open(&path).unwrap();
        let mem = guest_memory(128);
        let initrd_path = dir.path().join("initrd");
        std::fs::write(&initrd_path, [7u8; 5000]).unwrap();
        let entry = load_kernel(&mem, 128, &path, &mut image, "console=ttyS0", Some(&mut ImageFile::open(&initrd_path).unwrap())).unwrap();
        assert!(!entry.pvh);
        assert_eq!((entry.rip, entry.rsi), (HIMEM_START, ZERO_PAGE_ADDR));
        let p: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_ADDR)).unwrap();
        let hdr = p.hdr;
        assert_eq!({ hdr.header }, 0x5372_6448);
        assert_eq!(({ hdr.cmd_line_ptr }, { hdr.cmdline_size }), (CMDLINE_ADDR as u32, 14));
        assert_eq!({ hdr.type_of_loader }, 0xff);
        assert_eq!({ hdr.ramdisk_size }, 5000);
        let mut back = [0u8; 5000];
        mem.read_slice(&mut back, GuestAddress({ hdr.ramdisk_image } as u64)).unwrap();
        assert_eq!(back, [7u8; 5000]);
        assert_eq!(p.e820_entries, 2);
        let e = p.e820_table[1];
        assert_eq!(({ e.addr }, { e.size }, { e.r#type }), (HIMEM_START, 127 * MIB, E820_RAM));
    }

    #[test]
    fn unknown_images_and_long_command_lines_are_refused() {
        let mem = guest_memory(16);
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"not a kernel").unwrap();
        let err = load_kernel(&mem, 16, &junk, &mut ImageFile::open(&junk).unwrap(), "", None).unwrap_err();
        assert!(matches!(err, BootError::UnknownFormat(_)), "{err}");
        let path = crate::vm::guest::build_bzimage_stub(dir.path()).unwrap();
        let mut image = ImageFile::open(&path).unwrap();
        let long = "x".repeat(3000);
        let err = load_kernel(&mem, 16, &path, &mut image, &long, None).unwrap_err();
        assert!(matches!(err, BootError::CmdlineTooLong { len: 3000, max: 2048 }), "{err}");
    }
}
