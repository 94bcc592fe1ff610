//! Settings: built-in defaults, then an optional TOML file (`--config`, or `VESSEL_CONFIG`),
//! then environment variables `VESSEL__SECTION__KEY` (e.g. `VESSEL__HTTP__PORT=8080`), and
//! `DATABASE_URL` last, as every PostgreSQL tool understands it. Secrets are never printed.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::path::Path;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub log: LogSettings,
    pub billing: BillingSettings,
    pub orchestration: OrchestrationSettings,
    /// Stripe (card payments through Payment Intents, webhooks); absent = card payments are off.
    #[serde(default)]
    pub stripe: Option<crate::billing::stripe::StripeSettings>,
    pub smtp: SmtpSettings,
    pub session: SessionSettings,
    pub api: ApiSettings,
    pub webhooks: WebhookSettings,
    pub console: ConsoleSettings,
    #[serde(default)]
    pub resellers: ResellerSettings,
    pub metrics: MetricsSettings,
}

/// The Prometheus endpoint (`panel::metrics`): its own listener, never the public port.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// `IP:PORT` to serve `GET /metrics` on; empty (the default) = no endpoint. Bind it to
    /// loopback or a management network only: the endpoint has no authentication of its own.
    pub listen: String,
}

/// Browser consoles (`panel::console`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {
    /// How long a console token may wait for its one connection.
    pub token_ttl_secs: u64,
    /// A console without a keystroke for this long is closed.
    pub idle_timeout_secs: u64,
}

/// Resellers (`panel::resellers`, the admin's reseller pages).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResellerSettings {
    /// How many days a new reseller's invitation link works (once).
    pub invitation_ttl_days: i64,
}

impl Default for ResellerSettings {
    fn default() -> Self {
        ResellerSettings { invitation_ttl_days: 7 }
    }
}

/// The reseller API (`/api/v1`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Sustained requests per minute per API key (per panel process).
    pub rate_limit_per_minute: u32,
    /// Requests a key may make at once before the per-minute rate applies.
    pub rate_limit_burst: u32,
}

/// Delivery of webhook events to resellers' endpoints (`panel::webhooks`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Run the delivery worker inside `panel serve`.
    pub worker: bool,
    /// How often the worker looks for due deliveries, in milliseconds.
    pub poll_ms: u64,
    /// A delivery that has no answer after this long failed (and is retried).
    pub timeout_secs: u64,
    /// After this many failed attempts a delivery is `failed` (an owner can send it again).
    pub max_attempts: i32,
    /// The wait after the first failure, in milliseconds; it doubles per attempt (with jitter).
    pub backoff_base_ms: u64,
    /// The longest wait between two attempts, in seconds.
    pub backoff_max_secs: u64,
    /// Also deliver to loopback, private, link-local and other non-public addresses. Off by
    /// default: a reseller's URL must not reach the provider's own network (a cloud metadata
    /// service, an internal admin page) and read its answer back in the delivery log.
    pub allow_private_addresses: bool,
}

/// Where mail goes. Plain SMTP to localhost by default (a local relay); `tls = true` uses
/// STARTTLS, required before any credentials are sent.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    /// The sender, e.g. `Vessel <billing@example.com>`.
    pub from: String,
    pub tls: bool,
    pub username: String,
    pub password: SecretString,
    /// Run the outbox delivery worker inside `panel serve`.
    pub worker: bool,
    /// How often the worker looks for mail to send, in milliseconds.
    pub poll_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// The key cookies and CSRF tokens are signed with (at least 32 characters). Every panel
    /// process of one installation needs the same key; empty makes a random one per process
    /// (fine for one process, logged as a warning).
    pub secret: SecretString,
    /// Mark cookies `Secure` (only sent over HTTPS). Off for plain-HTTP development.
    pub cookie_secure: bool,
    /// How long a login lasts, in hours.
    pub lifetime_hours: i64,
}

/// The job runner and reconciler that make hosts follow the panel.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrchestrationSettings {
    /// Run the job runner and reconciler inside `panel serve` (else run `panel worker`).
    pub enabled: bool,
    /// Concurrent jobs per process.
    pub workers: usize,
    pub job_lease_secs: i64,
    /// Wake idle runners by `LISTEN vessel_jobs` the moment a job commits (else they only poll).
    #[serde(default = "default_true")]
    pub job_notify: bool,
    /// How often an idle runner looks for due jobs anyway: jobs that become due later
    /// (backoff) and notifications lost with a dropped connection.
    #[serde(default = "default_job_poll_ms")]
    pub job_poll_ms: u64,
    pub reconcile_interval_secs: u64,
    /// A request to a host fails after this long.
    pub host_timeout_secs: u64,
    /// A host silent this long is unreachable and its instances unknown.
    pub unreachable_after_secs: i64,
    /// PEM of the CA that issues the hosts' TLS certificates (beside the system roots), for
    /// hosts that joined without sending their certificate's fingerprint (else it is pinned).
    #[serde(default)]
    pub host_ca_file: Option<std::path::PathBuf>,
    /// How long a host's join token works after an admin makes it.
    #[serde(default = "default_join_token_ttl_hours")]
    pub join_token_ttl_hours: i64,
    /// A paid order still waiting for capacity this long after it first found no room is
    /// refunded to credit (issue 14; `panel::capacity`).
    pub capacity_refund_after_secs: i64,
}

fn default_true() -> bool {
    true
}

fn default_job_poll_ms() -> u64 {
    1000
}

fn default_join_token_ttl_hours() -> i64 {
    24
}

impl OrchestrationSettings {
    pub fn join_token_ttl(&self) -> chrono::Duration {
        chrono::Duration::hours(self.join_token_ttl_hours)
    }

    pub fn host_ca(&self) -> Option<reqwest::Certificate> {
        let pem = std::fs::read(self.host_ca_file.as_ref()?).ok()?;
        reqwest::Certificate::from_pem(&pem).ok()
    }

    /// The one HTTP client the orchestration talks to hosts with (reads the CA file once).
    pub fn http_client(&self) -> reqwest::Client {
        crate::hosts::http_client(std::time::Duration::from_secs(self.host_timeout_secs), self.host_ca().as_ref())
    }

    /// The clients orchestration talks to hosts with: [`Self::http_client`] for hosts that
    /// joined without a certificate, a pinned one per certificate for those that sent one.
    pub fn host_http(&self) -> crate::hosts::HostHttp {
        crate::hosts::HostHttp::new(self.http_client(), std::time::Duration::from_secs(self.host_timeout_secs))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingSettings {
    /// Net N days: an invoice is due this many days after it is issued.
    pub payment_terms_days: i32,
    /// Who sells: printed on every invoice; its country decides EU VAT ([`crate::tax`]).
    pub seller: SellerSettings,
    /// The headless Chromium that renders invoice PDFs (Debian's `chromium`).
    pub pdf_chromium: String,
    /// How often `panel serve` archives the PDFs of newly issued invoices; 0: never (each is
    /// then archived on its first download).
    pub pdf_archive_interval_secs: u64,
    pub renewal: crate::billing::renewal::RenewalPolicy,
    pub dunning: crate::billing::dunning::DunningPolicy,
    /// The provider's bank account for transfers; absent: bank transfer is not offered.
    #[serde(default)]
    pub bank_transfer: Option<BankTransferSettings>,
}

/// Where customers send bank transfers (shown on invoices and the "add funds" page, with a
/// reference that names the invoice or the account, so an admin books it to the right place).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankTransferSettings {
    pub account_holder: String,
    pub iban: String,
    #[serde(default)]
    pub bic: String,
    #[serde(default)]
    pub bank_name: String,
}

impl BankTransferSettings {
    /// The reference for paying one invoice: its number, recognisable in a bank statement.
    pub fn invoice_reference(number: &str) -> String {
        format!("VSL {number}")
    }
    /// The reference for adding credit to an account (no invoice): the account's short id.
    pub fn account_reference(account: uuid::Uuid) -> String {
        format!("VSL CREDIT {}", &account.simple().to_string()[..12].to_uppercase())
    }
}

/// The provider as the seller on invoices (`[billing.seller]`): legal name, address, an ISO
/// 3166-1 `country` (VAT depends on it) and, for a seller in the EU, its VAT ID. Checked when
/// the configuration loads ([`SellerSettings::check`]); `panel serve` needs one.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SellerSettings {
    pub legal_name: String,
    /// Postal address, lines separated by newlines.
    pub address: String,
    pub country: String,
    pub vat_id: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub host: String,
    /// 0 picks a free port (tests); the bound address is logged and printed.
    pub port: u16,
    /// The URL people reach the panel at, for links in emails. Empty: where it listens.
    pub base_url: String,
    /// Behind a reverse proxy: take the visitor's address from the last `X-Forwarded-For`
    /// entry the proxy appended (else every visitor has the proxy's address, and the
    /// per-address log-in limit would lock everyone out at once). Only when the proxy is the
    /// sole way in; otherwise visitors could claim any address.
    #[serde(default)]
    pub trust_forwarded_for: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    /// Apply pending migrations when the server starts.
    pub migrate_on_start: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `pretty` for people, `json` for log collectors.
    pub format: LogFormat,
    /// An env-filter directive, e.g. `info,panel=debug`; `RUST_LOG` overrides it.
    pub filter: String,
    /// Take a request's id from its `X-Request-Id` header (only when a proxy in front sets or
    /// strips it; otherwise anyone could plant ids in the logs). Default: a new id per request.
    #[serde(default)]
    pub trust_request_id: bool,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

const DEFAULTS: &str = r#"
[http]
host = "127.0.0.1"
port = 8000
base_url = "http://127.0.0.1:8000"

[database]
url = "postgres://postgres@127.0.0.1:5432/vessel"
max_connections = 20
migrate_on_start = true

[log]
format = "pretty"
filter = "info"

[smtp]
host = "127.0.0.1"
port = 25
from = "Vessel <noreply@localhost>"
tls = false
username = ""
password = ""
worker = true
poll_ms = 1000

[webhooks]
worker = true
poll_ms = 1000
timeout_secs = 10
max_attempts = 12
backoff_base_ms = 30000
backoff_max_secs = 3600
allow_private_addresses = false

[session]
secret = ""
cookie_secure = false
lifetime_hours = 24

[orchestration]
enabled = true
workers = 4
job_lease_secs = 120
job_notify = true
job_poll_ms = 1000
reconcile_interval_secs = 10
host_timeout_secs = 30
unreachable_after_secs = 45
capacity_refund_after_secs = 172800

[metrics]
listen = ""

[console]
token_ttl_secs = 60
idle_timeout_secs = 900

[resellers]
invitation_ttl_days = 7

[api]
rate_limit_per_minute = 600
rate_limit_burst = 200

[billing]
payment_terms_days = 14
pdf_chromium = "/usr/bin/chromium"
pdf_archive_interval_secs = 30

[billing.seller]
legal_name = ""
address = ""
country = ""
vat_id = ""

[billing.renewal]
lead_days = 7
batch_size = 500

[billing.dunning]
remind_before_days = 3
remind_after_days = 1
suspend_after_days = 7
terminate_after_days = 30
"#;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("configuration [billing.seller]: {0}")]
    Seller(String),
    #[error("configuration [resellers]: {0}")]
    Resellers(String),
}

impl SellerSettings {
    /// Is any seller configured? (None is a development set-up: see [`SellerSettings::check`].)
    pub fn is_set(&self) -> bool {
        ![&self.legal_name, &self.address, &self.country, &self.vat_id].iter().all(|f| f.trim().is_empty())
    }

    /// A configured seller must be one an invoice can name: a legal name, an address, an
    /// ISO 3166-1 code (checked against the list when written to the database), and for a
    /// seller in the EU a VAT ID of that member state's format. Nothing configured is allowed
    /// here (tests, `./vessel up` sets an example); `panel serve` refuses it
    /// ([`SellerSettings::required`]).
    pub fn check(&self) -> Result<(), ConfigError> {
        if !self.is_set() {
            return Ok(());
        }
        let bad = |m: String| Err(ConfigError::Seller(m));
        let country = self.country.trim();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return bad(format!("country must be an ISO 3166-1 alpha-2 code in capitals (such as DE), not {country:?}"));
        }
        if self.legal_name.trim().is_empty() {
            return bad("legal_name is empty: invoices must name the seller".into());
        }
        if self.address.trim().is_empty() {
            return bad("address is empty: invoices must give the seller's address".into());
        }
        if crate::tax::is_eu(country) {
            if let Err(e) = crate::tax::VatId::parse(country, &self.vat_id) {
                return bad(format!("vat_id: a seller in {country} needs its VAT ID on every invoice: {e}"));
            }
        }
        Ok(())
    }

    /// `panel serve` issues invoices: it needs a seller (an invoice without one is not a legal
    /// invoice), not a silent 0 % or an empty header.
    pub fn required(&self) -> Result<(), ConfigError> {
        self.check()?;
        if !self.is_set() {
            return Err(ConfigError::Seller(
                "no seller is configured: set legal_name, address, country (ISO 3166-1) and vat_id under [billing.seller] \
                 (or VESSEL__BILLING__SELLER__*); invoices name the seller and VAT depends on its country"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl Settings {
    /// Loads the layers in order; a missing file named explicitly is an error.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut b = config::Config::builder().add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        let from_env = std::env::var("VESSEL_CONFIG").ok();
        if let Some(path) = file.map(|p| p.to_string_lossy().into_owned()).or(from_env) {
            b = b.add_source(config::File::new(&path, config::FileFormat::Toml).required(true));
        }
        b = b.add_source(config::Environment::with_prefix("VESSEL").prefix_separator("__").separator("__").try_parsing(true));
        if let Ok(url) = std::env::var("DATABASE_URL") {
            if !url.is_empty() {
                b = b.set_override("database.url", url)?;
            }
        }
        let s: Settings = b.build()?.try_deserialize()?;
        s.billing.seller.check()?;
        if !(1..=365).contains(&s.resellers.invitation_ttl_days) {
            return Err(ConfigError::Resellers(format!("invitation_ttl_days must be 1 to 365, not {}", s.resellers.invitation_ttl_days)));
        }
        Ok(s)
    }

    pub fn database_url(&self) -> &str {
        self.database.url.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("vessel.toml");
        std::fs::write(&f, "[http]\nport = 9123\n").unwrap();
        let s = Settings::load(Some(&f)).unwrap();
        assert_eq!(s.http.port, 9123);
        assert_eq!(s.http.host, "127.0.0.1");
        // Secrets do not leak through Debug.
        assert!(!format!("{s:?}").contains("postgres://"));
    }

    #[test]
    fn a_bad_seller_is_refused_at_load_and_none_by_serve() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("vessel.toml");
        let load = |seller: &str| {
            std::fs::write(&f, format!("[billing.seller]\n{seller}\n")).unwrap();
            Settings::load(Some(&f)).map(|s| s.billing.seller)
        };
        let good = "legal_name = \"V GmbH\"\naddress = \"Str. 1\\nBerlin\"\ncountry = \"DE\"\nvat_id = \"DE811907980\"";
        load(good).unwrap().required().unwrap();
        for (seller, says) in [
            ("legal_name = \"V GmbH\"\naddress = \"Str. 1\"\ncountry = \"Germany\"\nvat_id = \"DE811907980\"", "ISO 3166-1"),
            ("legal_name = \"V GmbH\"\naddress = \"Str. 1\"\ncountry = \"DE\"\nvat_id = \"\"", "vat_id"),
            ("legal_name = \"V GmbH\"\naddress = \"Str. 1\"\ncountry = \"DE\"\nvat_id = \"DE12\"", "vat_id"),
            ("legal_name = \"\"\naddress = \"Str. 1\"\ncountry = \"DE\"\nvat_id = \"DE811907980\"", "legal_name"),
            ("legal_name = \"V\"\naddress = \"\"\ncountry = \"US\"\nvat_id = \"\"", "address"),
            ("legal_name = \"V GmbH\"", "country"),
        ] {
            let e = load(seller).unwrap_err().to_string();
            assert!(e.contains("[billing.seller]") && e.contains(says), "{seller}: {e}");
        }
        // Outside the EU no VAT ID is needed.
        load("legal_name = \"V Inc\"\naddress = \"1 Main St\"\ncountry = \"US\"\nvat_id = \"\"").unwrap().required().unwrap();
        // Nothing configured loads (tests, tools), but `panel serve` refuses it.
        let none = load("").unwrap();
        assert!(none.required().unwrap_err().to_string().contains("no seller is configured"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("vessel.toml");
        std::fs::write(&f, "[http]\nprot = 9123\n").unwrap();
        let e = Settings::load(Some(&f)).unwrap_err().to_string();
        assert!(e.contains("prot"), "{e}");
    }
}
