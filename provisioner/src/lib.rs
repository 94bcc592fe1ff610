//! The provisioner: the daemon on each host that creates, runs and destroys VPS of both kinds.
//!
//! * [`store`]: the durable record of every instance on this host (spec, state, the operation
//!   in progress), which is what a restarted provisioner adopts from.
//! * [`host`]: this host's capacity and the admission check (the shared rule in
//!   `vessel_core::admission`), applied before any create or resize.
//! * [`runtime`]: the lifecycle contract each kind implements (containers, KVM machines).
//! * [`vm`]: dedicated KVM machines: the VMM (one process per machine) and its runtime.

pub mod host;
pub mod runtime;
pub mod store;
pub mod vm;
