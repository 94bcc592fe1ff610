//! The admission rule of `resource-model.md`: may host H take one more instance?
//!
//! With the new instance added, all must hold:
//! 1. CPU: `Σ v/ρc ≤ C`, and pinned instances (KVM, ρc = 1) get whole cores:
//!    `Σ_pinned v + ceil(Σ_shared v/ρc) ≤ C`.
//! 2. Committed memory: `Σ b/ρm ≤ M`.
//! 3. Guaranteed memory is never overcommitted: `Σ g ≤ M`.
//! 4. Disk: `Σ d/ρd ≤ D`.
//!
//! Sums are exact rationals (ratios are thousandths), so the rule never refuses a set that
//! fits exactly, and never admits one that is over by a rounding error. The panel's scheduler
//! and the host's provisioner both call [`admit`]; there is no second copy.

use crate::ratio::Ratio;
use crate::resources::PlanResources;
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{Signed, ToPrimitive, Zero};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What a host can give to instances: physical capacity minus what the admin reserves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCapacity {
    /// Usable CPU threads, C.
    pub cpus: u32,
    /// Usable memory, M, in MiB.
    pub memory_mib: u64,
    /// Usable disk, D, in GiB.
    pub disk_gib: u64,
}

/// What one instance takes from its host's capacity for admission purposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Allocation {
    pub vcpus: u32,
    pub cpu_ratio: Ratio,
    /// Gets `vcpus` whole cores of its own (KVM with ρc = 1).
    pub pinned: bool,
    pub memory_guaranteed_mib: u64,
    pub memory_burst_mib: u64,
    pub memory_ratio: Ratio,
    pub disk_gib: u64,
    pub disk_ratio: Ratio,
}

impl From<&PlanResources> for Allocation {
    fn from(r: &PlanResources) -> Self {
        Allocation {
            vcpus: r.vcpus(),
            cpu_ratio: r.cpu_ratio(),
            pinned: r.is_pinned(),
            memory_guaranteed_mib: r.memory_guaranteed_mib(),
            memory_burst_mib: r.memory_burst_mib(),
            memory_ratio: r.memory_ratio(),
            disk_gib: r.disk_gib(),
            disk_ratio: r.disk_ratio(),
        }
    }
}

fn frac(amount: u64, ratio: Ratio) -> BigRational {
    BigRational::new(BigInt::from(amount) * 1000, BigInt::from(ratio.milli()))
}

fn whole(n: u64) -> BigRational {
    BigRational::from_integer(BigInt::from(n))
}

impl Allocation {
    /// This instance's share of CPU: `v/ρc` (for a pinned one, `v` whole cores).
    pub fn cpu_share(&self) -> BigRational {
        if self.pinned {
            whole(self.vcpus as u64)
        } else {
            frac(self.vcpus as u64, self.cpu_ratio)
        }
    }
    pub fn committed_memory(&self) -> BigRational {
        frac(self.memory_burst_mib, self.memory_ratio)
    }
    pub fn committed_disk(&self) -> BigRational {
        frac(self.disk_gib, self.disk_ratio)
    }
}

/// The sum of what a host's instances take: enough to decide admission without the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostLoad {
    pub instances: usize,
    pub pinned_cores: u64,
    pub shared_cpu: BigRational,
    pub committed_memory: BigRational,
    pub guaranteed_memory_mib: u64,
    pub committed_disk: BigRational,
    /// What was sold before the ratios divide it (Σv of shared instances, Σb, Σd): over the
    /// host's capacity these are the effective overcommit an admin compares with the plans'
    /// ratios. Admission itself decides on the divided sums above.
    pub shared_vcpus: u64,
    pub burst_memory_mib: u64,
    pub disk_gib: u64,
}

impl Default for HostLoad {
    fn default() -> Self {
        Self::empty()
    }
}

impl HostLoad {
    pub fn empty() -> Self {
        HostLoad {
            instances: 0,
            pinned_cores: 0,
            shared_cpu: BigRational::zero(),
            committed_memory: BigRational::zero(),
            guaranteed_memory_mib: 0,
            committed_disk: BigRational::zero(),
            shared_vcpus: 0,
            burst_memory_mib: 0,
            disk_gib: 0,
        }
    }

    pub fn of<'a>(allocations: impl IntoIterator<Item = &'a Allocation>) -> Self {
        let mut load = Self::empty();
        for a in allocations {
            load.add(a);
        }
        load
    }

    pub fn add(&mut self, a: &Allocation) {
        self.instances += 1;
        if a.pinned {
            self.pinned_cores += a.vcpus as u64;
        } else {
            self.shared_cpu += a.cpu_share();
            self.shared_vcpus += a.vcpus as u64;
        }
        self.committed_memory += a.committed_memory();
        self.guaranteed_memory_mib += a.memory_guaranteed_mib;
        self.committed_disk += a.committed_disk();
        self.burst_memory_mib += a.memory_burst_mib;
        self.disk_gib += a.disk_gib;
    }

    /// Adds `n` instances of one allocation at once: a host's load from its per-plan counts
    /// (what the panel keeps), with the same exact sums as `n` calls of [`HostLoad::add`].
    pub fn add_many(&mut self, a: &Allocation, n: u64) {
        if n == 0 {
            return;
        }
        let times = whole(n);
        self.instances += n as usize;
        if a.pinned {
            self.pinned_cores += a.vcpus as u64 * n;
        } else {
            self.shared_cpu += a.cpu_share() * &times;
            self.shared_vcpus += a.vcpus as u64 * n;
        }
        self.committed_memory += a.committed_memory() * &times;
        self.guaranteed_memory_mib += a.memory_guaranteed_mib * n;
        self.committed_disk += a.committed_disk() * &times;
        self.burst_memory_mib += a.memory_burst_mib * n;
        self.disk_gib += a.disk_gib * n;
    }

    /// Takes an instance out again: a resize is decided as "remove old, admit new".
    pub fn remove(&mut self, a: &Allocation) {
        self.instances = self.instances.saturating_sub(1);
        if a.pinned {
            self.pinned_cores = self.pinned_cores.saturating_sub(a.vcpus as u64);
        } else {
            self.shared_cpu -= a.cpu_share();
            self.shared_vcpus = self.shared_vcpus.saturating_sub(a.vcpus as u64);
        }
        self.committed_memory -= a.committed_memory();
        self.guaranteed_memory_mib = self.guaranteed_memory_mib.saturating_sub(a.memory_guaranteed_mib);
        self.committed_disk -= a.committed_disk();
        self.burst_memory_mib = self.burst_memory_mib.saturating_sub(a.memory_burst_mib);
        self.disk_gib = self.disk_gib.saturating_sub(a.disk_gib);
    }

    /// Total CPU committed, pinned cores included: the left side of rule 1.
    pub fn cpu(&self) -> BigRational {
        whole(self.pinned_cores) + self.shared_cpu.clone()
    }

    /// Does this load, as it is, fit the host? (all four rules)
    pub fn fits(&self, cap: &HostCapacity) -> bool {
        let c = whole(cap.cpus as u64);
        let m = whole(cap.memory_mib);
        self.cpu() <= c
            && whole(self.pinned_cores) + self.shared_cpu.ceil() <= c
            && self.committed_memory <= m
            && self.guaranteed_memory_mib <= cap.memory_mib
            && self.committed_disk <= whole(cap.disk_gib)
    }
}

/// The resource a refusal is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// Rule 1: CPU (shared pool and pinned cores).
    Cpu,
    /// Rule 2: memory committed after the plan's memory ratio.
    CommittedMemory,
    /// Rule 3: guaranteed memory, never overcommitted.
    GuaranteedMemory,
    /// Rule 4: disk after the plan's disk ratio.
    Disk,
}

impl Resource {
    pub fn unit(self) -> &'static str {
        match self {
            Resource::Cpu => "cores",
            Resource::CommittedMemory | Resource::GuaranteedMemory => "MiB",
            Resource::Disk => "GiB",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::CommittedMemory => "committed memory",
            Resource::GuaranteedMemory => "guaranteed memory",
            Resource::Disk => "disk",
        }
    }
}

/// Why a host cannot take an instance: the resource and the numbers.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("not enough {}: needed {} {unit}, free {} {unit}", resource.name(), decimal(needed), decimal(free), unit = resource.unit())]
pub struct Refusal {
    pub resource: Resource,
    /// What the new instance would take.
    pub needed: BigRational,
    /// What the host has left of that resource (never shown below zero).
    pub free: BigRational,
}

impl Refusal {
    pub fn needed_f64(&self) -> f64 {
        self.needed.to_f64().unwrap_or(f64::NAN)
    }
    pub fn free_f64(&self) -> f64 {
        self.free.to_f64().unwrap_or(f64::NAN)
    }
}

/// Formats an exact rational for people: whole numbers plainly, others to three decimals.
pub fn decimal(r: &BigRational) -> String {
    if r.is_integer() {
        return r.to_integer().to_string();
    }
    let sign = if r.is_negative() { "-" } else { "" };
    let thousandths = (r.abs() * whole(1000)).round().to_integer();
    let int: BigInt = &thousandths / BigInt::from(1000);
    let frac = (&thousandths % BigInt::from(1000)).to_u32().unwrap_or(0);
    let frac = format!("{frac:03}");
    format!("{sign}{int}.{}", frac.trim_end_matches('0')).trim_end_matches('.').to_string()
}

fn free(cap: impl Into<BigRational>, used: BigRational) -> BigRational {
    let f = cap.into() - used;
    if f.is_negative() {
        BigRational::zero()
    } else {
        f
    }
}

/// May a host with `cap`, already carrying `load`, take `new`? The first rule broken is named.
pub fn admit(cap: &HostCapacity, load: &HostLoad, new: &Allocation) -> Result<(), Refusal> {
    let c = whole(cap.cpus as u64);
    let m = whole(cap.memory_mib);

    // Rule 1, both forms: total share, then pinned cores plus the shared pool rounded up.
    let needed_cpu = new.cpu_share();
    let (pinned_after, shared_after) = if new.pinned {
        (load.pinned_cores + new.vcpus as u64, load.shared_cpu.clone())
    } else {
        (load.pinned_cores, load.shared_cpu.clone() + &needed_cpu)
    };
    let cpu_after = whole(pinned_after) + shared_after.clone();
    let cores_after = whole(pinned_after) + shared_after.ceil();
    if cpu_after > c || cores_after > c {
        return Err(Refusal { resource: Resource::Cpu, needed: needed_cpu, free: free(c, load.cpu()) });
    }

    // Rule 2.
    let needed = new.committed_memory();
    if load.committed_memory.clone() + &needed > m {
        return Err(Refusal { resource: Resource::CommittedMemory, needed, free: free(m, load.committed_memory.clone()) });
    }

    // Rule 3.
    if load.guaranteed_memory_mib + new.memory_guaranteed_mib > cap.memory_mib {
        return Err(Refusal {
            resource: Resource::GuaranteedMemory,
            needed: whole(new.memory_guaranteed_mib),
            free: free(m, whole(load.guaranteed_memory_mib)),
        });
    }

    // Rule 4.
    let needed = new.committed_disk();
    let d = whole(cap.disk_gib);
    if load.committed_disk.clone() + &needed > d {
        return Err(Refusal { resource: Resource::Disk, needed, free: free(d, load.committed_disk.clone()) });
    }
    Ok(())
}

/// Could a host with `cap` ever take `new`, were it empty? The same rule as [`admit`], over no
/// load: a plan that no active host passes cannot be delivered, whatever is freed later, and the
/// panel's catalogue does not sell it.
#[allow(clippy::result_large_err)] // the very Refusal `admit` returns
pub fn could_ever_admit(cap: &HostCapacity, new: &Allocation) -> Result<(), Refusal> {
    admit(cap, &HostLoad::empty(), new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{InstanceKind, ResourceSpec};
    use proptest::prelude::*;

    fn plan_a() -> PlanResources {
        PlanResources::try_from(ResourceSpec {
            kind: InstanceKind::Container,
            vcpus: 2,
            memory_guaranteed_mib: Some(1024),
            memory_burst_mib: 2048,
            swap_mib: 0,
            disk_gib: 40,
            cpu_ratio: 4.0,
            memory_ratio: 2.0,
            disk_ratio: 2.0,
            pids_max: None,
            net_rate_mbit: None,
            io_weight: None,
            io_limits: Default::default(),
        })
        .unwrap()
    }

    fn plan_b() -> PlanResources {
        PlanResources::try_from(ResourceSpec {
            kind: InstanceKind::Kvm,
            vcpus: 4,
            memory_guaranteed_mib: None,
            memory_burst_mib: 8192,
            swap_mib: 0,
            disk_gib: 80,
            cpu_ratio: 1.0,
            memory_ratio: 1.0,
            disk_ratio: 1.0,
            pids_max: None,
            net_rate_mbit: None,
            io_weight: None,
            io_limits: Default::default(),
        })
        .unwrap()
    }

    const HOST: HostCapacity = HostCapacity { cpus: 16, memory_mib: 65536, disk_gib: 2000 };

    /// Plan B (4 pinned cores) can never run on a 2-core host, however empty; on a 4-core one
    /// it can, though not beside a second B.
    #[test]
    fn could_ever_admit_is_admission_over_an_empty_host() {
        let b = Allocation::from(&plan_b());
        let small = HostCapacity { cpus: 2, memory_mib: 65536, disk_gib: 2000 };
        let r = could_ever_admit(&small, &b).unwrap_err();
        assert_eq!((r.resource, decimal(&r.needed)), (Resource::Cpu, "4".to_string()));
        let four = HostCapacity { cpus: 4, memory_mib: 65536, disk_gib: 2000 };
        could_ever_admit(&four, &b).unwrap();
        assert!(admit(&four, &HostLoad::of([b].iter()), &b).is_err());
    }

    /// The worked example of resource-model.md, number for number.
    #[test]
    fn worked_example() {
        let a = Allocation::from(&plan_a());
        let b = Allocation::from(&plan_b());
        assert!(b.pinned && !a.pinned);

        // 4 × B take all 16 cores: no A fits any more.
        let four_b = HostLoad::of([b, b, b, b].iter());
        let r = admit(&HOST, &four_b, &a).unwrap_err();
        assert_eq!(r.resource, Resource::Cpu);

        // 3 × B leave a pool of 4 cores: exactly 8 A fit, the 9th is refused for CPU.
        let mut load = HostLoad::of([b, b, b].iter());
        for i in 0..8 {
            admit(&HOST, &load, &a).unwrap_or_else(|e| panic!("A #{} refused: {e}", i + 1));
            load.add(&a);
        }
        let r = admit(&HOST, &load, &a).unwrap_err();
        assert_eq!(r.resource, Resource::Cpu);
        assert_eq!(decimal(&r.needed), "0.5");
        assert_eq!(decimal(&r.free), "0");
        assert_eq!(r.to_string(), "not enough cpu: needed 0.5 cores, free 0 cores");

        // The memory and disk bounds of the example, with CPU out of the way.
        let roomy = HostCapacity { cpus: 1000, ..HOST };
        let count = |cap: HostCapacity| {
            let mut load = HostLoad::of([b, b, b].iter());
            let mut n = 0;
            while admit(&cap, &load, &a).is_ok() {
                load.add(&a);
                n += 1;
            }
            (n, admit(&cap, &load, &a).unwrap_err().resource)
        };
        // Commitment and guarantee both allow 40.
        assert_eq!(count(roomy), (40, Resource::CommittedMemory));
        // Disk allows 88.
        let (n, res) = count(HostCapacity { cpus: 1000, memory_mib: 1 << 30, disk_gib: 2000 });
        assert_eq!((n, res), (88, Resource::Disk));
    }

    #[test]
    fn exact_thirds_fill_a_core() {
        let third = Allocation {
            vcpus: 1,
            cpu_ratio: Ratio::from_milli(3000).unwrap(),
            pinned: false,
            memory_guaranteed_mib: 64,
            memory_burst_mib: 64,
            memory_ratio: Ratio::ONE,
            disk_gib: 1,
            disk_ratio: Ratio::ONE,
        };
        let cap = HostCapacity { cpus: 1, memory_mib: 1024, disk_gib: 10 };
        let mut load = HostLoad::empty();
        for _ in 0..3 {
            admit(&cap, &load, &third).unwrap();
            load.add(&third);
        }
        assert_eq!(admit(&cap, &load, &third).unwrap_err().resource, Resource::Cpu);
    }

    #[test]
    fn resize_is_remove_then_admit() {
        let a = Allocation::from(&plan_a());
        let b = Allocation::from(&plan_b());
        let mut load = HostLoad::of([b, b, b, b].iter());
        assert!(admit(&HOST, &load, &b).is_err());
        load.remove(&b);
        admit(&HOST, &load, &b).unwrap();
        assert_eq!(load, HostLoad::of([b, b, b].iter()));
        let _ = a;
    }

    #[test]
    fn guaranteed_memory_is_never_overcommitted() {
        // Burst ratio generous, guarantee is what binds.
        let a = Allocation {
            vcpus: 1,
            cpu_ratio: Ratio::from_milli(100_000).unwrap(),
            pinned: false,
            memory_guaranteed_mib: 1000,
            memory_burst_mib: 1000,
            memory_ratio: Ratio::from_milli(100_000).unwrap(),
            disk_gib: 1,
            disk_ratio: Ratio::from_milli(100_000).unwrap(),
        };
        let cap = HostCapacity { cpus: 64, memory_mib: 2500, disk_gib: 100 };
        let load = HostLoad::of([a, a].iter());
        let r = admit(&cap, &load, &a).unwrap_err();
        assert_eq!(r.resource, Resource::GuaranteedMemory);
        assert_eq!(r.to_string(), "not enough guaranteed memory: needed 1000 MiB, free 500 MiB");
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal(&BigRational::new(1.into(), 3.into())), "0.333");
        assert_eq!(decimal(&BigRational::new(5.into(), 2.into())), "2.5");
        assert_eq!(decimal(&whole(7)), "7");
    }

    // ---- property tests against a reference written straight from the four formulas ----

    fn arb_ratio() -> impl Strategy<Value = Ratio> {
        prop_oneof![Just(1000u32), Just(1500), Just(2000), Just(3000), Just(4000), 1000u32..8000,]
            .prop_map(|m| Ratio::from_milli(m).unwrap())
    }

    prop_compose! {
        fn arb_alloc()(kvm in any::<bool>(), vcpus in 1u32..9, g in 64u64..8192, extra in 0u64..8192,
                       disk in 1u64..200, rc in arb_ratio(), rm in arb_ratio(), rd in arb_ratio()) -> Allocation {
            if kvm {
                Allocation { vcpus, cpu_ratio: rc, pinned: rc.is_one(), memory_guaranteed_mib: g,
                             memory_burst_mib: g, memory_ratio: Ratio::ONE, disk_gib: disk, disk_ratio: rd }
            } else {
                Allocation { vcpus, cpu_ratio: rc, pinned: false, memory_guaranteed_mib: g,
                             memory_burst_mib: g + extra, memory_ratio: rm, disk_gib: disk, disk_ratio: rd }
            }
        }
    }

    prop_compose! {
        fn arb_host()(cpus in 1u32..64, mem in 512u64..131072, disk in 10u64..4000) -> HostCapacity {
            HostCapacity { cpus, memory_mib: mem, disk_gib: disk }
        }
    }

    /// The four conditions, each summed from scratch over the whole set.
    fn reference_holds(cap: &HostCapacity, set: &[Allocation]) -> bool {
        let q = |n: u64, r: Ratio| BigRational::new(BigInt::from(n * 1000), BigInt::from(r.milli()));
        let c = whole(cap.cpus as u64);
        let sum_all: BigRational = set.iter().map(|a| q(a.vcpus as u64, a.cpu_ratio)).sum();
        let pinned: u64 = set.iter().filter(|a| a.pinned).map(|a| a.vcpus as u64).sum();
        let shared: BigRational = set.iter().filter(|a| !a.pinned).map(|a| q(a.vcpus as u64, a.cpu_ratio)).sum();
        let committed: BigRational = set.iter().map(|a| q(a.memory_burst_mib, a.memory_ratio)).sum();
        let guaranteed: u64 = set.iter().map(|a| a.memory_guaranteed_mib).sum();
        let disk: BigRational = set.iter().map(|a| q(a.disk_gib, a.disk_ratio)).sum();
        sum_all <= c
            && whole(pinned) + shared.ceil() <= c
            && committed <= whole(cap.memory_mib)
            && guaranteed <= cap.memory_mib
            && disk <= whole(cap.disk_gib)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Admitting one by one never builds a set that breaks a rule, and a refusal happens
        /// exactly when the set with the newcomer would break one.
        #[test]
        fn admit_agrees_with_the_four_conditions(cap in arb_host(), candidates in prop::collection::vec(arb_alloc(), 1..40)) {
            let mut admitted: Vec<Allocation> = Vec::new();
            let mut load = HostLoad::empty();
            for cand in candidates {
                let mut with = admitted.clone();
                with.push(cand);
                let holds = reference_holds(&cap, &with);
                match admit(&cap, &load, &cand) {
                    Ok(()) => {
                        prop_assert!(holds, "admitted a set that breaks a rule");
                        load.add(&cand);
                        admitted.push(cand);
                    }
                    Err(refusal) => {
                        prop_assert!(!holds, "refused a set where all rules hold: {}", refusal);
                        prop_assert!(refusal.needed > BigRational::zero());
                        prop_assert!(refusal.free < refusal.needed, "refused though needed <= free: {}", refusal);
                    }
                }
                prop_assert!(load.fits(&cap));
                prop_assert_eq!(&load, &HostLoad::of(admitted.iter()));
            }
        }

        /// Removing and re-adding (a resize to the same size) is always admitted.
        #[test]
        fn remove_then_readd_is_admitted(cap in arb_host(), candidates in prop::collection::vec(arb_alloc(), 1..20)) {
            let mut load = HostLoad::empty();
            let mut admitted = Vec::new();
            for c in candidates {
                if admit(&cap, &load, &c).is_ok() { load.add(&c); admitted.push(c); }
            }
            for a in &admitted {
                let mut l = load.clone();
                l.remove(a);
                prop_assert!(admit(&cap, &l, a).is_ok());
            }
        }
    }
    proptest! {
        // Each case adds up to a few hundred allocations one by one: fewer cases suffice.
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A load built from per-plan counts (as the panel keeps them) equals the one built
        /// instance by instance.
        #[test]
        fn add_many_equals_adding_one_by_one(groups in prop::collection::vec((arb_alloc(), 0u64..60), 0..8)) {
            let mut counted = HostLoad::empty();
            let mut one_by_one = HostLoad::empty();
            for (a, n) in &groups {
                counted.add_many(a, *n);
                for _ in 0..*n { one_by_one.add(a); }
            }
            prop_assert_eq!(counted, one_by_one);
        }
    }
}
