//! This host's capacity and the admission check the provisioner applies on its own
//! (defence in depth: it refuses what would break a plan's promise even if the panel asked).

use crate::store::{InstanceRecord, PendingOp};
use vessel_core::admission::{admit, Allocation, HostCapacity, HostLoad, Refusal};
use vessel_core::{InstanceId, PlanResources};

/// The load of every instance recorded on this host, except `skip` (the one being resized).
/// A resize in progress counts the larger of its two sizes, so a crash mid-resize cannot
/// let a neighbour take room the instance may still need.
pub fn load_of(records: &[InstanceRecord], skip: Option<InstanceId>) -> HostLoad {
    let mut load = HostLoad::empty();
    for r in records.iter().filter(|r| Some(r.spec.id) != skip) {
        load.add(&Allocation::from(&r.spec.resources));
        if let Some(PendingOp::Resize { previous }) = &r.pending {
            // Count the previous size too while the resize is not finished.
            load.add(&Allocation::from(previous));
            load.instances -= 1;
        }
    }
    load
}

/// May this host take an instance of `resources` (a create, or a resize of `resizing`)?
pub fn check(
    capacity: &HostCapacity,
    records: &[InstanceRecord],
    resources: &PlanResources,
    resizing: Option<InstanceId>,
) -> Result<(), Refusal> {
    admit(capacity, &load_of(records, resizing), &Allocation::from(resources))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::spec;
    use vessel_core::{InstanceKind, InstanceState};

    #[test]
    fn refuses_what_does_not_fit_and_resize_excludes_itself() {
        let cap = HostCapacity { cpus: 1, memory_mib: 200, disk_gib: 10 };
        let rec = InstanceRecord {
            spec: spec(InstanceKind::Kvm),
            state: InstanceState::Running,
            should_run: true,
            pending: None,
            runtime: Default::default(),
            rescue: None,
        };
        let records = vec![rec.clone()];
        let refusal = check(&cap, &records, &rec.spec.resources, None).unwrap_err();
        assert!(refusal.to_string().contains("cpu"), "{refusal}");
        check(&cap, &records, &rec.spec.resources, Some(rec.spec.id)).unwrap();
    }
}
