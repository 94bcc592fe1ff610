//! Minimal ACPI (6.x, hardware-reduced, as Firecracker and Cloud Hypervisor give their
//! guests): enough for a kernel to find every vCPU and to power off and reboot through ACPI.
//!
//! * RSDP (revision 2) at [`RSDP_ADDR`], in the BIOS area Linux scans (a PVH guest is also
//!   told its address in the start info), pointing at the XSDT;
//! * XSDT: the FADT and the MADT;
//! * FADT: hardware-reduced (no PM1 blocks, no SCI), a sleep control/status register pair
//!   and a reset register on the [`PowerPort`] I/O ports, the RTC's century register;
//! * DSDT: `\_S5_` (the sleep type that means "off") and, under `\_SB_`, the devices a kernel
//!   finds only through ACPI: COM1 (`PNP0501`), the i8042 (`PNP0303`) and each virtio-mmio
//!   device (`LNRO0005`, its 4 KiB window and its interrupt; what Linux's `virtio_mmio` driver
//!   matches, as Firecracker and QEMU describe theirs). Kernels without
//!   `VIRTIO_MMIO_CMDLINE_DEVICES` (Debian's cloud kernel) see the devices only here. The AML is
//!   encoded by rust-vmm's `acpi_tables`;
//! * MADT: one enabled local APIC per vCPU, the I/O APIC, IRQ 0 on GSI 2 (as in the MP
//!   table), LINT1 as NMI.
//!
//! The MP table stays beside it for kernels booted without ACPI.

use acpi_tables::{aml, Aml, AmlSink};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Where the RSDP goes; the other tables follow it (all below the MP table at `0xf0000`).
pub const RSDP_ADDR: u64 = 0xe_0000;
/// The highest address the tables may reach (where the MP table starts).
const TABLES_END: u64 = super::mptable::MPTABLE_START;

/// The hardware-reduced sleep and reset registers (one byte each, system I/O space).
pub const SLEEP_CONTROL_PORT: u16 = 0x600;
pub const SLEEP_STATUS_PORT: u16 = 0x601;
pub const RESET_PORT: u16 = 0x602;
pub const RESET_VALUE: u8 = 1;
/// `\_S5_`'s sleep type: written to the sleep control register with SLP_EN, it powers off.
pub const S5_SLEEP_TYPE: u8 = 5;
const SLP_EN: u8 = 1 << 5;
const SLP_TYP_SHIFT: u8 = 2;
const SLP_TYP_MASK: u8 = 0b111 << SLP_TYP_SHIFT;

const OEM_ID: &[u8; 6] = b"VESSEL";
const OEM_TABLE_ID: &[u8; 8] = b"VESSELVM";
const CREATOR_ID: &[u8; 4] = b"VSSL";

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)).wrapping_neg()
}

/// A table: the 36-byte header (length and checksum filled by [`finish`]) and `body`.
fn table(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(36 + body.len());
    t.extend(signature);
    t.extend(((36 + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0); // checksum, below
    t.extend(OEM_ID);
    t.extend(OEM_TABLE_ID);
    t.extend(1u32.to_le_bytes()); // OEM revision
    t.extend(CREATOR_ID);
    t.extend(1u32.to_le_bytes()); // creator revision
    t.extend(body);
    t[9] = checksum(&t);
    t
}

/// A Generic Address Structure for a one-byte register in system I/O space.
fn io_byte(port: u16) -> [u8; 12] {
    let mut g = [0u8; 12];
    g[0] = 1; // system I/O
    g[1] = 8; // bit width
    g[3] = 1; // byte access
    g[4..12].copy_from_slice(&(port as u64).to_le_bytes());
    g
}

/// A virtio-mmio device as the guest must be told of it: its register window and interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioDevice {
    pub base: u32,
    pub size: u32,
    pub irq: u32,
}

/// The definition block: `\_S5_`, then the devices under `\_SB_`.
fn dsdt(virtio: &[MmioDevice]) -> Vec<u8> {
    let mut aml = Vec::new();
    let s5 = aml::Package::new(vec![&S5_SLEEP_TYPE, &aml::ZERO]);
    aml::Name::new("_S5_".into(), &s5).to_aml_bytes(&mut aml);

    // COM1 and the i8042 at their ISA ports and IRQs (edge, active high): with ACPI a kernel
    // finds them by PnP (Debian's 8250 PnP driver, the i8042 driver's PnP probe).
    let (com1_io, com1_irq) = (aml::IO::new(0x3f8, 0x3f8, 1, 8), aml::Interrupt::new(true, true, false, false, super::devices::COM1_IRQ));
    let com1_crs = aml::ResourceTemplate::new(vec![&com1_io, &com1_irq]);
    let com1_hid = aml::EISAName::new("PNP0501");
    let com1_children =
        [aml::Name::new("_HID".into(), &com1_hid), aml::Name::new("_UID".into(), &aml::ZERO), aml::Name::new("_CRS".into(), &com1_crs)];
    let (kbd_data, kbd_cmd) = (aml::IO::new(0x60, 0x60, 1, 1), aml::IO::new(0x64, 0x64, 1, 1));
    let kbd_irq = aml::Interrupt::new(true, true, false, false, super::devices::I8042_IRQ);
    let kbd_crs = aml::ResourceTemplate::new(vec![&kbd_data, &kbd_cmd, &kbd_irq]);
    let kbd_hid = aml::EISAName::new("PNP0303");
    let kbd_children = [aml::Name::new("_HID".into(), &kbd_hid), aml::Name::new("_CRS".into(), &kbd_crs)];

    let com1 = aml::Device::new("COM1".into(), com1_children.iter().map(|c| c as &dyn Aml).collect());
    let kbd = aml::Device::new("PS2_".into(), kbd_children.iter().map(|c| c as &dyn Aml).collect());

    // One device per virtio-mmio window, named VR00, VR01, ... (a name is 4 characters).
    let virtio_devices: Vec<Vec<u8>> = virtio
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let window = aml::Memory32Fixed::new(true, d.base, d.size);
            let irq = aml::Interrupt::new(true, true, false, false, d.irq);
            let crs = aml::ResourceTemplate::new(vec![&window, &irq]);
            let (hid, uid, cca) = ("LNRO0005", i as u32, aml::ONE);
            let children = [
                aml::Name::new("_HID".into(), &hid),
                aml::Name::new("_UID".into(), &uid),
                // cache-coherent DMA, as on every x86 machine
                aml::Name::new("_CCA".into(), &cca),
                aml::Name::new("_CRS".into(), &crs),
            ];
            let name = format!("VR{:02X}", i);
            let mut bytes = Vec::new();
            aml::Device::new(name.as_str().into(), children.iter().map(|c| c as &dyn Aml).collect()).to_aml_bytes(&mut bytes);
            bytes
        })
        .collect();
    let raw: Vec<RawAml> = virtio_devices.iter().map(|b| RawAml(b)).collect();
    let mut sb: Vec<&dyn Aml> = vec![&com1, &kbd];
    sb.extend(raw.iter().map(|r| r as &dyn Aml));
    aml::Scope::new("\\_SB_".into(), sb).to_aml_bytes(&mut aml);
    table(b"DSDT", 2, &aml)
}

/// AML already encoded (a device built in a loop, whose parts cannot outlive it).
struct RawAml<'a>(&'a [u8]);

impl Aml for RawAml<'_> {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(self.0);
    }
}

fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut b = vec![0u8; 276 - 36];
    let mut put = |offset: usize, bytes: &[u8]| b[offset - 36..offset - 36 + bytes.len()].copy_from_slice(bytes);
    put(40, &(dsdt_addr as u32).to_le_bytes()); // DSDT
    put(108, &[super::rtc::CENTURY_REGISTER]); // CENTURY
                                               // IAPC_BOOT_ARCH: an 8042 is there, no VGA.
    put(109, &(0x0002u16 | 0x0004).to_le_bytes());
    // Flags: HW_REDUCED_ACPI, RESET_REG_SUP.
    put(112, &((1u32 << 20) | (1 << 10)).to_le_bytes());
    put(116, &io_byte(RESET_PORT)); // RESET_REG
    put(128, &[RESET_VALUE]);
    put(131, &[5]); // FADT minor version: 6.5
    put(140, &dsdt_addr.to_le_bytes()); // X_DSDT
    put(244, &io_byte(SLEEP_CONTROL_PORT));
    put(256, &io_byte(SLEEP_STATUS_PORT));
    put(268, b"VESSELVM"); // hypervisor vendor identity
    table(b"FACP", 6, &b)
}

fn madt(vcpus: u8) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(super::mptable::LAPIC_ADDR.to_le_bytes());
    b.extend(1u32.to_le_bytes()); // PCAT_COMPAT: there are 8259s to mask
    for id in 0..vcpus {
        b.extend([0, 8, id, id]); // processor local APIC: uid, APIC id
        b.extend(1u32.to_le_bytes()); // enabled
    }
    let ioapic_id = vcpus; // as in the MP table
    b.extend([1, 12, ioapic_id, 0]);
    b.extend(super::mptable::IOAPIC_ADDR.to_le_bytes());
    b.extend(0u32.to_le_bytes()); // GSI base
    b.extend([2, 10, 0, 0]); // interrupt source override: ISA IRQ 0...
    b.extend(2u32.to_le_bytes()); // ...is GSI 2
    b.extend(0u16.to_le_bytes()); // conforming polarity and trigger
    b.extend([4, 6, 0xff, 0, 0, 1]); // local APIC NMI: every processor, LINT1
    table(b"APIC", 5, &b)
}

/// The tables for `vcpus` processors and the `virtio` devices, laid out from [`RSDP_ADDR`]:
/// (address, bytes) each.
pub fn build(vcpus: u8, virtio: &[MmioDevice]) -> Vec<(u64, Vec<u8>)> {
    let align = |a: u64| (a + 15) & !15;
    let xsdt_addr = align(RSDP_ADDR + 36);
    let dsdt_addr = align(xsdt_addr + 36 + 16);
    let dsdt = dsdt(virtio);
    let fadt_addr = align(dsdt_addr + dsdt.len() as u64);
    let fadt = fadt(dsdt_addr);
    let madt_addr = align(fadt_addr + fadt.len() as u64);
    let madt = madt(vcpus);
    let mut entries = Vec::new();
    entries.extend(fadt_addr.to_le_bytes());
    entries.extend(madt_addr.to_le_bytes());
    let xsdt = table(b"XSDT", 1, &entries);

    let mut rsdp = Vec::with_capacity(36);
    rsdp.extend(b"RSD PTR ");
    rsdp.push(0); // checksum of the first 20 bytes, below
    rsdp.extend(OEM_ID);
    rsdp.push(2); // revision: ACPI 2.0+
    rsdp.extend(0u32.to_le_bytes()); // no RSDT
    rsdp.extend(36u32.to_le_bytes());
    rsdp.extend(xsdt_addr.to_le_bytes());
    rsdp.push(0); // extended checksum, below
    rsdp.extend([0u8; 3]);
    rsdp[8] = checksum(&rsdp[..20]);
    rsdp[32] = checksum(&rsdp);
    vec![(RSDP_ADDR, rsdp), (xsdt_addr, xsdt), (dsdt_addr, dsdt), (fadt_addr, fadt), (madt_addr, madt)]
}

/// Writes the tables for `vcpus` processors and the `virtio` devices into guest memory.
pub fn write(mem: &GuestMemoryMmap, vcpus: u8, virtio: &[MmioDevice]) -> Result<(), vm_memory::GuestMemoryError> {
    for (addr, bytes) in build(vcpus, virtio) {
        if addr + bytes.len() as u64 > TABLES_END {
            return Err(vm_memory::GuestMemoryError::InvalidGuestAddress(GuestAddress(addr + bytes.len() as u64)));
        }
        mem.write_slice(&bytes, GuestAddress(addr))?;
    }
    Ok(())
}

/// What the guest asked of the power registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerRequest {
    PowerOff,
    Reset,
}

/// The hardware-reduced sleep control and reset registers: writing `\_S5_`'s type with
/// SLP_EN powers the machine off, the reset value resets it; other sleep states are not
/// offered (no `\_S3_` in the DSDT) and are ignored.
pub fn power_write(port: u16, value: u8) -> Option<PowerRequest> {
    match port {
        SLEEP_CONTROL_PORT if value & SLP_EN != 0 && (value & SLP_TYP_MASK) >> SLP_TYP_SHIFT == S5_SLEEP_TYPE => {
            Some(PowerRequest::PowerOff)
        }
        RESET_PORT if value == RESET_VALUE => Some(PowerRequest::Reset),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }
    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// Finds the table at `addr` among the built ones and checks its header.
    fn at<'a>(tables: &'a [(u64, Vec<u8>)], addr: u64, signature: &[u8; 4]) -> &'a [u8] {
        let (_, t) = tables.iter().find(|(a, _)| *a == addr).unwrap_or_else(|| panic!("no table at {addr:#x}"));
        assert_eq!(&t[..4], signature);
        assert_eq!(u32_at(t, 4) as usize, t.len(), "{} length", String::from_utf8_lossy(signature));
        assert_eq!(sum(t), 0, "{} checksum", String::from_utf8_lossy(signature));
        assert_eq!(&t[10..16], OEM_ID);
        t
    }

    #[test]
    fn the_tables_follow_the_specification_and_describe_every_vcpu() {
        for vcpus in [1u8, 2, 4, 64] {
            let tables = build(vcpus, &[]);
            for (i, (a, t)) in tables.iter().enumerate() {
                assert_eq!(a % 16, 0, "16-byte aligned");
                assert!(a + t.len() as u64 <= TABLES_END, "below the MP table");
                if let Some((next, _)) = tables.get(i + 1) {
                    assert!(a + t.len() as u64 <= *next, "no overlap");
                }
            }
            let (addr, rsdp) = &tables[0];
            assert_eq!(*addr, RSDP_ADDR);
            assert_eq!(&rsdp[..8], b"RSD PTR ");
            assert_eq!(sum(&rsdp[..20]), 0, "RSDP checksum");
            assert_eq!(rsdp.len(), 36);
            assert_eq!(u32_at(rsdp, 20), 36);
            assert_eq!(sum(rsdp), 0, "RSDP extended checksum");
            assert_eq!(rsdp[15], 2, "revision 2: XSDT");

            let xsdt = at(&tables, u64_at(rsdp, 24), b"XSDT");
            assert_eq!(xsdt.len(), 36 + 16);
            let fadt = at(&tables, u64_at(xsdt, 36), b"FACP");
            let madt = at(&tables, u64_at(xsdt, 44), b"APIC");

            assert_eq!(fadt.len(), 276, "FADT 6.x length");
            assert_eq!(fadt[8], 6);
            assert_ne!(u32_at(fadt, 112) & (1 << 20), 0, "hardware-reduced");
            assert_ne!(u32_at(fadt, 112) & (1 << 10), 0, "reset register supported");
            let dsdt = at(&tables, u64_at(fadt, 140), b"DSDT");
            assert_eq!(u32_at(fadt, 40) as u64, u64_at(fadt, 140));
            assert!(dsdt.windows(4).any(|w| w == b"_S5_"));
            // Sleep control, sleep status and reset registers: one byte each in I/O space.
            for (offset, port) in [(244, SLEEP_CONTROL_PORT), (256, SLEEP_STATUS_PORT), (116, RESET_PORT)] {
                assert_eq!(&fadt[offset..offset + 4], &[1, 8, 0, 1]);
                assert_eq!(u64_at(fadt, offset + 4), port as u64);
            }
            assert_eq!(fadt[128], RESET_VALUE);

            assert_eq!(u32_at(madt, 36), super::super::mptable::LAPIC_ADDR);
            let (mut at_, mut cpus, mut ioapics) = (44, Vec::new(), 0);
            while at_ < madt.len() {
                let (kind, len) = (madt[at_], madt[at_ + 1] as usize);
                assert!(len >= 2 && at_ + len <= madt.len(), "entry fits");
                match kind {
                    0 => {
                        assert_eq!(u32_at(madt, at_ + 4) & 1, 1, "enabled");
                        cpus.push(madt[at_ + 3]);
                    }
                    1 => {
                        assert_eq!(madt[at_ + 2], vcpus, "I/O APIC id after the processors'");
                        assert_eq!(u32_at(madt, at_ + 4), super::super::mptable::IOAPIC_ADDR);
                        ioapics += 1;
                    }
                    2 => assert_eq!((madt[at_ + 3], u32_at(madt, at_ + 4)), (0, 2), "IRQ 0 on GSI 2"),
                    4 => assert_eq!(madt[at_ + 5], 1, "NMI on LINT1"),
                    other => panic!("unexpected MADT entry {other}"),
                }
                at_ += len;
            }
            assert_eq!(at_, madt.len(), "entries fill the MADT exactly");
            assert_eq!(cpus, (0..vcpus).collect::<Vec<_>>(), "one local APIC per vCPU");
            assert_eq!(ioapics, 1);
        }
    }

    fn devices(n: usize) -> Vec<MmioDevice> {
        (0..n).map(crate::vm::virtio::acpi_device).collect()
    }

    /// The DSDT of a machine with `n` virtio devices, checked like every table.
    fn dsdt_of(n: usize) -> Vec<u8> {
        let tables = build(2, &devices(n));
        let fadt = tables.iter().find(|(_, t)| &t[..4] == b"FACP").map(|(_, t)| t.clone()).unwrap();
        at(&tables, u64_at(&fadt, 140), b"DSDT").to_vec()
    }

    #[test]
    fn the_dsdt_names_each_virtio_device_with_its_window_and_interrupt() {
        for n in [0usize, 1, 5, 16] {
            let dsdt = dsdt_of(n);
            let hid = dsdt.windows(9).filter(|w| w == b"LNRO0005\0").count();
            assert_eq!(hid, n, "one LNRO0005 device per virtio window");
            for d in devices(n) {
                // Memory32Fixed: read-write, the window's base and size
                let mut window = vec![0x86, 9, 0, 1];
                window.extend(d.base.to_le_bytes());
                window.extend(d.size.to_le_bytes());
                assert!(dsdt.windows(window.len()).any(|w| w == window), "window at {:#x}", d.base);
                // Extended interrupt: consumer, edge, active high, exclusive; one GSI
                let mut irq = vec![0x89, 6, 0, 0b0011, 1];
                irq.extend(d.irq.to_le_bytes());
                assert!(dsdt.windows(irq.len()).any(|w| w == irq), "interrupt {}", d.irq);
            }
        }
        assert_eq!(devices(3)[2], MmioDevice { base: 0xd000_2000, size: 0x1000, irq: 7 });
    }

    /// The real check: ACPICA's own disassembler (Debian's `acpica-tools`, installed by
    /// `scripts/ensure-test-deps`) decodes the DSDT into the devices we meant, and its compiler
    /// takes the result back without an error.
    #[test]
    fn acpicas_disassembler_decodes_the_dsdt_and_its_compiler_accepts_it() {
        let dir = tempfile::tempdir().unwrap();
        let dat = dir.path().join("dsdt.dat");
        std::fs::write(&dat, dsdt_of(3)).unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("iasl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("iasl (Debian's acpica-tools) must be installed: scripts/ensure-test-deps installs it");
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "iasl {args:?} failed:\n{text}");
            text
        };
        run(&["-d", "dsdt.dat"]);
        let dsl = std::fs::read_to_string(dir.path().join("dsdt.dsl")).unwrap();
        // Without the disassembler's comments, on one line.
        let no_block_comments = dsl.split("/*").map(|part| part.split_once("*/").map_or(part, |(_, rest)| rest)).collect::<String>();
        let code = no_block_comments.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join(" ");
        let code: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
        for expected in [
            "Name (_S5, Package (0x02) { 0x05, Zero })".to_string(),
            "Scope (\\_SB) { Device (COM1) { Name (_HID, EisaId (\"PNP0501\") ) Name (_UID, Zero) Name (_CRS, ResourceTemplate () \
             { IO (Decode16, 0x03F8, 0x03F8, 0x01, 0x08, ) Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) { 0x00000004, } }) }"
                .to_string(),
            "Device (PS2) { Name (_HID, EisaId (\"PNP0303\") ) Name (_CRS, ResourceTemplate () { IO (Decode16, 0x0060, 0x0060, 0x01, 0x01, ) \
             IO (Decode16, 0x0064, 0x0064, 0x01, 0x01, ) Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) { 0x00000001, } }) }"
                .to_string(),
        ]
        .into_iter()
        .chain(devices(3).iter().enumerate().map(|(i, d)| {
            format!(
                "Device (VR{i:02}) {{ Name (_HID, \"LNRO0005\") Name (_UID, {uid}) Name (_CCA, One) Name (_CRS, ResourceTemplate () \
                 {{ Memory32Fixed (ReadWrite, 0x{base:08X}, 0x00001000, ) Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) \
                 {{ 0x{irq:08X}, }} }}) }}",
                uid = ["Zero", "One", "0x02"][i],
                base = d.base,
                irq = d.irq,
            )
        })) {
            assert!(code.contains(&expected), "expected\n{expected}\nin\n{code}");
        }
        let text = run(&["dsdt.dsl"]);
        assert!(text.contains("0 Errors"), "{text}");
    }

    #[test]
    fn the_power_registers_power_off_on_s5_and_reset_on_the_reset_value() {
        let s5 = SLP_EN | (S5_SLEEP_TYPE << SLP_TYP_SHIFT);
        assert_eq!(power_write(SLEEP_CONTROL_PORT, s5), Some(PowerRequest::PowerOff));
        assert_eq!(power_write(SLEEP_CONTROL_PORT, S5_SLEEP_TYPE << SLP_TYP_SHIFT), None, "no SLP_EN");
        assert_eq!(power_write(SLEEP_CONTROL_PORT, SLP_EN | (3 << SLP_TYP_SHIFT)), None, "S3 is not offered");
        assert_eq!(power_write(RESET_PORT, RESET_VALUE), Some(PowerRequest::Reset));
        assert_eq!(power_write(RESET_PORT, 0), None);
        assert_eq!(power_write(SLEEP_STATUS_PORT, s5), None);
    }
}
