//! The project's own test guest (`provisioner/guest/`): assembled and linked from source with
//! the system's `as` and `ld` when a test or the benchmark needs it; nothing binary is kept in
//! the repository. Also the report the guest prints, and what that report must say for a
//! given machine.

use super::boot::{memory_map, HIMEM_START};
use std::path::{Path, PathBuf};
use std::process::Command;
use thiserror::Error;

const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/guest/guest.s");
const LINKER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/guest/guest.ld");
const PATTERN: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Debug, Error)]
pub enum GuestError {
    #[error("cannot run {tool} (install binutils): {source}")]
    Spawn { tool: &'static str, source: std::io::Error },
    #[error("{tool} failed: {stderr}")]
    Tool { tool: &'static str, stderr: String },
    #[error("{0} has no __image_start/__image_end symbols")]
    Symbols(PathBuf),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A built test guest.
#[derive(Clone, Debug)]
pub struct TestGuest {
    pub elf: PathBuf,
    /// Guest-physical range of the image (what the guest does not write over).
    pub image: (u64, u64),
}

fn tool(name: &'static str, args: &[&str]) -> Result<String, GuestError> {
    let out = Command::new(name).args(args).output().map_err(|source| GuestError::Spawn { tool: name, source })?;
    if !out.status.success() {
        return Err(GuestError::Tool { tool: name, stderr: String::from_utf8_lossy(&out.stderr).into() });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into())
}

/// Assembles and links the guest into `out_dir/vessel-test-guest.elf`.
pub fn build(out_dir: &Path) -> Result<TestGuest, GuestError> {
    std::fs::create_dir_all(out_dir)?;
    let obj = out_dir.join("vessel-test-guest.o");
    let elf = out_dir.join("vessel-test-guest.elf");
    let (o, e) = (obj.to_string_lossy(), elf.to_string_lossy());
    tool("as", &["--64", "-o", &o, SOURCE])?;
    tool("ld", &["--no-warn-rwx-segments", "-T", LINKER_SCRIPT, "-o", &e, &o])?;
    let syms = tool("nm", &[&e])?;
    let find = |name: &str| {
        syms.lines().find_map(|l| {
            let mut it = l.split_whitespace();
            let (addr, _, sym) = (it.next()?, it.next()?, it.next()?);
            (sym == name).then(|| u64::from_str_radix(addr, 16).ok()).flatten()
        })
    };
    match (find("__image_start"), find("__image_end")) {
        (Some(s), Some(e)) => Ok(TestGuest { elf, image: (s, e) }),
        _ => Err(GuestError::Symbols(elf)),
    }
}

const BZIMAGE_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/guest/bzimage.s");

/// Builds a synthetic bzImage: a real-mode setup header (boot protocol 2.15, one setup
/// sector, loaded high at 1 MiB) in front of the flat protected-mode payload of
/// `guest/bzimage.s`. Returns its path in `out_dir`.
pub fn build_bzimage_stub(out_dir: &Path) -> Result<PathBuf, GuestError> {
    std::fs::create_dir_all(out_dir)?;
    let obj = out_dir.join("bzimage-stub.o");
    let flat = out_dir.join("bzimage-stub.bin");
    let (o, f) = (obj.to_string_lossy(), flat.to_string_lossy());
    tool("as", &["--32", "-o", &o, BZIMAGE_SOURCE])?;
    tool("ld", &["-m", "elf_i386", "-Ttext=0x100000", "--oformat", "binary", "-o", &f, &o])?;
    let payload = std::fs::read(&flat)?;
    let mut image = vec![0u8; 2 * 512];
    image[0x1f1] = 1; // setup_sects
    image[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes()); // boot_flag
    image[0x202..0x206].copy_from_slice(b"HdrS");
    image[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes()); // version
    image[0x211] = 0x01; // loadflags: LOADED_HIGH
    image[0x214..0x218].copy_from_slice(&0x100000u32.to_le_bytes()); // code32_start
    image[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes()); // cmdline_size
    image.extend_from_slice(&payload);
    let out = out_dir.join("bzimage-stub");
    std::fs::write(&out, image)?;
    Ok(out)
}

/// The report the guest prints, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub top_mib: u64,
    pub ram_kib: u64,
    pub pages: u64,
    pub vcpus: u64,
    pub checksum: u64,
    /// Boots since the machine was created (resets included).
    pub boot: u64,
    /// Enabled processors in the ACPI MADT, found through the RSDP the start info gives
    /// (0: tables missing or checksums wrong).
    pub acpi_cpus: u64,
}

impl Report {
    /// Finds the report line in serial output.
    pub fn parse(serial: &str) -> Option<Report> {
        Self::parse_all(serial).into_iter().next()
    }

    /// Every report in serial output (one per boot).
    pub fn parse_all(serial: &str) -> Vec<Report> {
        serial.lines().filter(|l| l.starts_with("VESSEL-GUEST top_mib=")).filter_map(Self::parse_line).collect()
    }

    fn parse_line(line: &str) -> Option<Report> {
        let field =
            |k: &str| -> Option<&str> { line.split_whitespace().find_map(|kv| kv.strip_prefix(k).and_then(|r| r.strip_prefix('='))) };
        Some(Report {
            top_mib: field("top_mib")?.parse().ok()?,
            ram_kib: field("ram_kib")?.parse().ok()?,
            pages: field("pages")?.parse().ok()?,
            vcpus: field("vcpus")?.parse().ok()?,
            checksum: u64::from_str_radix(field("checksum")?, 16).ok()?,
            boot: field("boot")?.parse().ok()?,
            acpi_cpus: field("acpi_cpus")?.parse().ok()?,
        })
    }

    /// What the guest must report on a machine of `vcpus` and `memory_mib`: the memory map
    /// the VMM gives, every page at or above 1 MiB (below 4 GiB) outside the image written,
    /// and the sum of what was written.
    pub fn expected(guest: &TestGuest, vcpus: u64, memory_mib: u64) -> Report {
        let map = memory_map(memory_mib);
        let (mut pages, mut checksum) = (0u64, 0u64);
        for e in &map {
            let mut p = (e.addr + 0xfff) & !0xfff;
            while p + 0x1000 <= e.addr + e.size && p < (4 << 30) {
                if p >= HIMEM_START && !(guest.image.0..guest.image.1).contains(&p) {
                    pages += 1;
                    checksum = checksum.wrapping_add(p.wrapping_mul(PATTERN));
                }
                p += 0x1000;
            }
        }
        Report {
            top_mib: map.iter().map(|e| e.addr + e.size).max().unwrap_or(0) >> 20,
            ram_kib: map.iter().map(|e| e.size).sum::<u64>() / 1024,
            pages,
            vcpus,
            checksum,
            boot: 1,
            acpi_cpus: vcpus,
        }
    }
}
