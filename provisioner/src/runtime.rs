//! The lifecycle contract each kind of instance implements, so the store, restart adoption
//! and (later) the HTTP API are written once for both containers and KVM machines.
//!
//! Every method is idempotent and keyed by the instance id: calling it again after a crash,
//! or for a state the instance is already in, succeeds and changes nothing more.

use crate::store::InstanceRecord;
use vessel_core::InstanceState;

/// Usage counters of one instance, sampled cheaply (monotonic counters are totals since
/// the instance was created or started; the panel derives rates).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub cpu_time_ns: u64,
    pub memory_bytes: u64,
    pub memory_peak_bytes: u64,
    /// Memory in use above the plan's guarantee: what is borrowed from idle neighbours.
    pub memory_burst_bytes: u64,
    pub disk_used_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

/// One kind's lifecycle. `record` is the store's record; a method may update
/// `record.runtime` (its own facts) and the caller persists it.
pub trait Runtime {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Builds the instance (disk, root filesystem, cgroup, network) without starting it.
    fn create(&self, record: &mut InstanceRecord) -> Result<(), Self::Error>;
    fn start(&self, record: &mut InstanceRecord) -> Result<(), Self::Error>;
    /// Graceful, then forced after the runtime's timeout.
    fn stop(&self, record: &mut InstanceRecord) -> Result<(), Self::Error>;
    fn suspend(&self, record: &mut InstanceRecord) -> Result<(), Self::Error>;
    fn resume(&self, record: &mut InstanceRecord) -> Result<(), Self::Error>;
    /// Removes every trace: nothing left of it on the host afterwards.
    fn destroy(&self, record: &mut InstanceRecord) -> Result<(), Self::Error>;
    /// What the kernel says it is now (used by adoption after a restart and by listing).
    fn observe(&self, record: &InstanceRecord) -> Result<InstanceState, Self::Error>;
    fn usage(&self, record: &InstanceRecord) -> Result<Usage, Self::Error>;
    /// Stop (graceful, then forced) and start again. A kind with a cheaper way may override it.
    fn reboot(&self, record: &mut InstanceRecord) -> Result<(), Self::Error> {
        self.stop(record)?;
        self.start(record)
    }
}
