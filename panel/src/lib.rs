//! The panel: the web pages and APIs that customers, admins and resellers use, and the
//! billing and orchestration behind them.
//!
//! Layout (one place per concept):
//! * [`config`]: settings from defaults, a TOML file and `VESSEL__*` environment variables.
//! * [`telemetry`]: structured logs (tracing).
//! * [`db`]: the connection pool, the migrations, and all SQL (one submodule per table group).
//! * [`money`], [`plans`], [`accounts`]: domain types and services, free of HTTP.
//! * [`startup`]: wires the HTTP server; [`routes`]: thin handlers.

pub mod access;
pub mod accounts;
pub mod admin;
pub mod api;
pub mod api_keys;
pub mod auth;
pub mod capacity;
pub mod catalogue;
pub mod audit;
pub mod billing;
pub mod clock;
pub mod config;
pub mod console;
pub mod db;
pub mod email;
pub mod hosts;
pub mod instances;
pub mod jobs;
pub mod money;
pub mod orchestrator;
pub mod orders;
pub mod outbox;
pub mod plans;
pub mod resellers;
pub mod routes;
pub mod scheduler;
pub mod startup;
pub mod subscriptions;
pub mod tax;
pub mod telemetry;
pub mod web;
pub mod usage;
pub mod vps;
pub mod webhooks;
