//! The provisioner: the daemon on each host that creates, runs and destroys VPS of both kinds.
//!
//! * [`store`]: the durable record of every instance on this host (spec, state, the operation
//!   in progress), which is what a restarted provisioner adopts from.
//! * [`host`]: this host's capacity and the admission check (the shared rule in
//!   `vessel_core::admission`), applied before any create or resize.
//! * [`runtime`]: the lifecycle contract each kind implements (containers, KVM machines).
//! * [`vm`]: dedicated KVM machines: the VMM (one process per machine) and its runtime.
//! * [`service`]: every API operation, transport-free: dispatch by kind, per-instance
//!   serialization, finishing what a crash interrupted.
//! * [`api`]: the signed HTTP API (actix-web, TLS with rustls) over the service.
//! * [`config`], [`daemon`], [`join`], [`tls`]: `provisioner serve` and `provisioner join`
//!   (TLS by default, with a self-signed certificate the panel pins).
//! * [`client`]: a signed client for the API (join, tests; the panel's is its own).
//! * [`container`], [`cgroup`], [`template`]: burstable containers, the cgroup v1/v2 layer
//!   (shared with the KVM side), and OS templates.

pub mod api;
pub mod cgroup;
pub mod client;
pub mod config;
pub mod container;
pub mod daemon;
pub mod host;
pub mod hostnet;
pub mod join;
pub mod metrics;
pub mod runtime;
pub mod service;
pub mod store;
pub mod template;
pub mod tls;
pub mod vm;
