//! Usage counters of one instance, as a host samples them and the panel stores them.

use serde::{Deserialize, Serialize};

/// Usage counters of one instance, sampled cheaply (monotonic counters are totals since
/// the instance was created or started; the panel derives rates).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
