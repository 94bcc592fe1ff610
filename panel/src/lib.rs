//! The panel: the web pages and APIs that customers, admins and resellers use, and the
//! billing and orchestration behind them.
//!
//! Layout (one place per concept):
//! * [`config`]: settings from defaults, a TOML file and `VESSEL__*` environment variables.
//! * [`telemetry`]: structured logs (tracing).
//! * [`db`]: the connection pool, the migrations, and all SQL (one submodule per table group).
//! * [`money`], [`plans`], [`accounts`]: domain types and services, free of HTTP.
//! * [`startup`]: wires the HTTP server; [`routes`]: thin handlers.

/// A Rust enum for a PostgreSQL enum: read and bound by sqlx as the database type itself (no
/// text cast), serialised by serde under the same names, with `ALL`, `as_str`, `Display` and
/// `FromStr` (for form and query values). Each is declared beside its domain module.
macro_rules! pg_enum {
    ($(#[$meta:meta])* pub enum $name:ident in $pg:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, sqlx::Type, serde::Serialize, serde::Deserialize)]
        #[sqlx(type_name = $pg)]
        pub enum $name {
            $($(#[$vmeta])* #[sqlx(rename = $text)] #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: [$name; [$(stringify!($variant)),+].len()] = [$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| crate::UnknownValue {
                    value: s.to_string(),
                    allowed: $name::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                })
            }
        }
    };
}

/// A string that names none of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not one of {allowed}")]
pub struct UnknownValue {
    pub value: String,
    pub allowed: String,
}

pub mod access;
pub mod accounts;
pub mod admin;
pub mod api;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod capacity;
pub mod catalogue;
pub mod clock;
pub mod config;
pub mod console;
pub mod db;
pub mod email;
pub mod firewall;
pub mod hosts;
pub mod ids;
pub mod instances;
pub mod ip_pools;
pub mod jobs;
pub mod metrics;
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
pub mod usage;
pub mod vps;
pub mod web;
pub mod webhooks;
