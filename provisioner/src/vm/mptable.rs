//! The Intel MultiProcessor Specification 1.4 table: how a guest without ACPI learns its
//! processors (one entry per vCPU, by local APIC id), the I/O APIC and the ISA interrupt
//! routing. Written where the specification says a BIOS puts it: in the BIOS area at
//! `0xf0000` (left out of the guest's memory map, and big enough for 64 vCPUs where the last
//! KiB of base memory is not), which Linux's `find_smp_config()` scans.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Where the floating pointer goes (the configuration table follows it).
pub const MPTABLE_START: u64 = 0xf_0000;
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
/// KVM's in-kernel I/O APIC has 24 pins.
const IOAPIC_PINS: u8 = 24;
const APIC_VERSION: u8 = 0x14;
const CPU_STEPPING: u32 = 0x600;
const CPU_FEATURES: u32 = 0x201; // FPU, APIC

const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_INTSRC: u8 = 3;
const ENTRY_LINTSRC: u8 = 4;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)).wrapping_neg()
}

/// The floating pointer and the configuration table for `vcpus` processors, as bytes to be
/// placed at [`MPTABLE_START`].
pub fn build(vcpus: u8) -> Vec<u8> {
    let table_addr = MPTABLE_START as u32 + 16;
    let ioapic_id = vcpus; // after the processors' APIC ids
    let mut entries = Vec::new();
    for id in 0..vcpus {
        let mut e = vec![ENTRY_PROCESSOR, id, APIC_VERSION, 0x01 | if id == 0 { 0x02 } else { 0 }];
        e.extend(CPU_STEPPING.to_le_bytes());
        e.extend(CPU_FEATURES.to_le_bytes());
        e.extend([0u8; 8]);
        entries.push(e);
    }
    entries.push([ENTRY_BUS, 0].iter().copied().chain(*b"ISA   ").collect());
    let mut ioapic = vec![ENTRY_IOAPIC, ioapic_id, APIC_VERSION, 0x01];
    ioapic.extend(IOAPIC_ADDR.to_le_bytes());
    entries.push(ioapic);
    // ISA IRQs 0-15 to the I/O APIC pins of the same number (IRQ 0 through pin 2, as on a PC,
    // so the timer works with both routings Linux may choose).
    for irq in 0..16u8 {
        let pin = if irq == 0 { 2 } else { irq };
        entries.push(vec![ENTRY_INTSRC, INT_TYPE_INT, 0, 0, 0, irq, ioapic_id, pin]);
    }
    let _ = IOAPIC_PINS;
    // LINT0: ExtINT (the PIC), LINT1: NMI, to every local APIC.
    entries.push(vec![ENTRY_LINTSRC, INT_TYPE_EXTINT, 0, 0, 0, 0, 0xff, 0]);
    entries.push(vec![ENTRY_LINTSRC, INT_TYPE_NMI, 0, 0, 0, 0, 0xff, 1]);

    let body: Vec<u8> = entries.iter().flatten().copied().collect();
    let mut table = Vec::with_capacity(44 + body.len());
    table.extend(b"PCMP");
    table.extend(((44 + body.len()) as u16).to_le_bytes()); // base table length
    table.push(4); // spec revision 1.4
    table.push(0); // checksum, below
    table.extend(b"VESSEL  "); // OEM id
    table.extend(b"VESSEL-VMM  "); // product id
    table.extend(0u32.to_le_bytes()); // OEM table pointer
    table.extend(0u16.to_le_bytes()); // OEM table size
    table.extend((entries.len() as u16).to_le_bytes());
    table.extend(LAPIC_ADDR.to_le_bytes());
    table.extend(0u16.to_le_bytes()); // extended table length
    table.push(0); // extended table checksum
    table.push(0); // reserved
    table.extend(&body);
    table[7] = checksum(&table);

    let mut fp = Vec::with_capacity(16);
    fp.extend(b"_MP_");
    fp.extend(table_addr.to_le_bytes());
    fp.push(1); // length in 16-byte units
    fp.push(4); // spec revision 1.4
    fp.push(0); // checksum, below
    fp.extend([0u8; 5]); // feature bytes: 0 = a configuration table is present, no IMCR
    fp[10] = checksum(&fp);
    fp.extend(table);
    fp
}

/// Writes the MP table for `vcpus` processors into guest memory.
pub fn write(mem: &GuestMemoryMmap, vcpus: u8) -> Result<(), vm_memory::GuestMemoryError> {
    mem.write_slice(&build(vcpus), GuestAddress(MPTABLE_START))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    #[test]
    fn floating_pointer_and_table_follow_the_specification() {
        for vcpus in [1u8, 2, 4, 64] {
            let t = build(vcpus);
            let fp = &t[..16];
            assert_eq!(&fp[..4], b"_MP_");
            assert_eq!(sum(fp), 0, "floating pointer checksum");
            assert_eq!(u32::from_le_bytes(fp[4..8].try_into().unwrap()), MPTABLE_START as u32 + 16);
            assert_eq!((fp[8], fp[9], fp[11]), (1, 4, 0));
            let table = &t[16..];
            assert_eq!(&table[..4], b"PCMP");
            let len = u16::from_le_bytes(table[4..6].try_into().unwrap()) as usize;
            assert_eq!(len, table.len());
            assert_eq!(sum(table), 0, "configuration table checksum");
            assert_eq!(u32::from_le_bytes(table[36..40].try_into().unwrap()), LAPIC_ADDR);
            let count = u16::from_le_bytes(table[34..36].try_into().unwrap()) as usize;
            // Walk the entries: processors (20 bytes) then 8-byte ones.
            let (mut at, mut cpus, mut boot, mut ioapics, mut irqs) = (44, 0, 0, 0, 0);
            for _ in 0..count {
                match table[at] {
                    ENTRY_PROCESSOR => {
                        assert_eq!(table[at + 1], cpus as u8, "APIC ids in order");
                        assert_eq!(table[at + 3] & 1, 1, "enabled");
                        boot += (table[at + 3] >> 1) & 1;
                        cpus += 1;
                        at += 20;
                    }
                    ENTRY_IOAPIC => {
                        assert_eq!(table[at + 1], vcpus);
                        assert_eq!(u32::from_le_bytes(table[at + 4..at + 8].try_into().unwrap()), IOAPIC_ADDR);
                        ioapics += 1;
                        at += 8;
                    }
                    ENTRY_INTSRC => {
                        irqs += 1;
                        at += 8;
                    }
                    ENTRY_BUS | ENTRY_LINTSRC => at += 8,
                    other => panic!("unknown entry type {other}"),
                }
            }
            assert_eq!(at, len, "entries fill the table exactly");
            assert_eq!((cpus, boot, ioapics, irqs), (vcpus as usize, 1, 1, 16));
            assert!(MPTABLE_START + t.len() as u64 <= 0x10_0000, "fits in the BIOS area");
        }
    }
}
