//! The lifecycle contract each kind of instance implements, so the store, restart adoption
//! and (later) the HTTP API are written once for both containers and KVM machines.
//!
//! Every method is idempotent and keyed by the instance id: calling it again after a crash,
//! or for a state the instance is already in, succeeds and changes nothing more.

use crate::store::InstanceRecord;
use vessel_core::InstanceState;

/// Shared with the panel (it is on the wire), so it lives in core.
pub use vessel_core::Usage;

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
