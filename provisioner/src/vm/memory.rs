//! Guest RAM: allocated whole at start, pre-faulted and locked, so a dedicated machine's
//! memory is really its own (never swapped, never lent, never a surprise OOM later).
//!
//! Layout: RAM from 0 up to 3 GiB, the rest above 4 GiB (the gap is where 32-bit MMIO
//! devices live: LAPIC, IOAPIC, later virtio-mmio).

use thiserror::Error;
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

pub const MIB: u64 = 1 << 20;
/// Start of the 32-bit MMIO gap.
pub const MMIO_GAP_START: u64 = 3 << 30;
/// End of the 32-bit MMIO gap, where RAM above 3 GiB continues.
pub const MMIO_GAP_END: u64 = 4 << 30;

#[derive(Debug, Error)]
pub enum MemoryError {
    #[error("cannot map {size} bytes of guest RAM (huge pages: {huge}): {source}")]
    Map { size: u64, huge: bool, source: vm_memory::mmap::MmapRegionError },
    #[error("guest memory layout is invalid: {0}")]
    Layout(vm_memory::GuestRegionCollectionError),
    #[error("cannot lock guest RAM in memory (mlock): {0}")]
    Lock(std::io::Error),
}

/// The guest-physical ranges (start, size) of `memory_mib` of RAM.
pub fn ranges(memory_mib: u64) -> Vec<(u64, u64)> {
    let size = memory_mib * MIB;
    if size <= MMIO_GAP_START {
        vec![(0, size)]
    } else {
        vec![(0, MMIO_GAP_START), (MMIO_GAP_END, size - MMIO_GAP_START)]
    }
}

/// Maps, pre-faults and mlocks guest RAM. Without hugetlbfs pages the mapping asks for
/// transparent huge pages first (fewer, larger mappings for KVM to build; measured several
/// times faster first touches on a nested host), then `mlock` faults every page in.
pub fn allocate(memory_mib: u64, huge_pages: bool) -> Result<GuestMemoryMmap, MemoryError> {
    let mut regions = Vec::new();
    for (start, size) in ranges(memory_mib) {
        let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        if huge_pages {
            flags |= libc::MAP_HUGETLB;
        }
        let region = MmapRegion::<()>::build(None, size as usize, libc::PROT_READ | libc::PROT_WRITE, flags)
            .map_err(|source| MemoryError::Map { size, huge: huge_pages, source })?;
        let ptr = region.as_ptr() as *mut libc::c_void;
        if !huge_pages {
            // SAFETY: advice on exactly the mapping owned by `region`; it changes no contents.
            if unsafe { libc::madvise(ptr, size as usize, libc::MADV_HUGEPAGE) } != 0 {
                tracing::debug!(error = %std::io::Error::last_os_error(), "no transparent huge pages");
            }
        }
        // SAFETY: the range is exactly the mapping just created and owned by `region`;
        // mlock faults every page in (pre-faulting) and keeps it resident.
        if unsafe { libc::mlock(ptr, size as usize) } != 0 {
            return Err(MemoryError::Lock(std::io::Error::last_os_error()));
        }
        regions.push(GuestRegionMmap::new(region, GuestAddress(start)).expect("ranges never overflow"));
    }
    GuestMemoryMmap::from_regions(regions).map_err(MemoryError::Layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_split_around_the_mmio_gap() {
        assert_eq!(ranges(512), vec![(0, 512 * MIB)]);
        assert_eq!(ranges(3072), vec![(0, 3 << 30)]);
        assert_eq!(ranges(4096), vec![(0, 3 << 30), (4 << 30, 1 << 30)]);
    }
}
