//! The panel's integration tests: one binary, each test with its own database and port.

mod helpers;
mod smtp;
pub mod stripe_local;

mod access;
mod billing;
mod billing_crash;
mod billing_world;
mod browser;
mod capacity;
mod enums;
mod firewall;
mod health;
mod migrations;
mod money;
mod money_fuzz;
mod orchestration;
mod pdf;
mod plans_sync;
mod reseller_api;
mod schemathesis;
mod tax;
mod vps_locks;
mod web_admin;
mod web_auth;
mod web_cockpit;
mod web_customer;
mod web_lifecycle;
mod web_reseller;
mod webhooks;
